//! One-time notification tokens: what a token may still do, as captured from an
//! optin and as stored. A token is a credential: it never appears in a `Debug`
//! print, a log or an error.

use messenger_types::{PageId, Psid, Timestamp};

/// A token is good for one message within a year of its creation.
pub const OTN_LIFETIME_MS: i64 = 365 * 24 * 60 * 60 * 1000;
/// How long a finished token's record is kept after it expires (for the record
/// only: correctness never waits for TTL).
pub const OTN_RECORD_GRACE_DAYS: i64 = 30;
/// How long a spend holds its token while the send it pays for has no recorded
/// fate ("sending"): longer than the events queue's whole retry cycle for a
/// crashing message (20 receives, each after the 360 s visibility timeout: two
/// hours), so that a redelivery of a crashed send resolves it first; after that
/// the sweeper gives the token back.
pub const SENDING_LEASE_MS: i64 = 3 * 60 * 60 * 1000;
/// How many partitions of the expiry index hold the unfinished sends, so that a
/// large fan-out's spends do not all write one index partition.
pub const SENDING_SHARDS: u32 = 4;

/// What a token may still do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TokenStatus {
    Active,
    Used,
    Expired,
    /// Meta refused it (invalid or expired on its side), or the person stopped
    /// recurring notifications.
    Retired,
}

impl TokenStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Used => "USED",
            Self::Expired => "EXPIRED",
            Self::Retired => "RETIRED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ACTIVE" => Self::Active,
            "USED" => Self::Used,
            "EXPIRED" => Self::Expired,
            "RETIRED" => Self::Retired,
            _ => return None,
        })
    }
}

/// The key a topic is matched by: trimmed, every run of whitespace inside made one
/// space, and case-folded, so that "  Back   in Stock " and "back in stock" are one
/// topic. Applied to the optin's payload at capture and to a notify's topic; the
/// person's own wording is kept beside it for display.
///
/// Case folding is Unicode's simple one as far as the standard library gives it:
/// lowercase of uppercase (so "ß" and "SS", "ﬁ" and "FI" meet), with the Greek
/// final sigma folded to σ (lowercasing alone picks ς or σ by position).
pub fn topic_key(topic: &str) -> String {
    let mut key = String::with_capacity(topic.len());
    for word in topic.split_whitespace() {
        if !key.is_empty() {
            key.push(' ');
        }
        key.extend(
            word.to_uppercase()
                .to_lowercase()
                .chars()
                .map(|c| if c == 'ς' { 'σ' } else { c }),
        );
    }
    key
}

/// Which kind of opt-in the token came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    OneTime,
    /// Recurring notifications (deprecated by Meta in February 2026).
    Recurring,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OneTime => "ONE_TIME",
            Self::Recurring => "RECURRING",
        }
    }
}

/// A token as captured from an optin.
#[derive(Clone, PartialEq, Eq)]
pub struct NewToken {
    pub page: PageId,
    pub psid: Psid,
    /// The person's own wording (the optin's payload); matched by [`topic_key`].
    pub topic: String,
    pub token: String,
    pub kind: TokenKind,
    /// The optin event's timestamp.
    pub created_at: Timestamp,
    /// One year after creation for OTN; Meta's `token_expiry_timestamp` for recurring.
    pub expires_at: Timestamp,
}

impl std::fmt::Debug for NewToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewToken")
            .field("page", &self.page)
            .field("psid", &self.psid)
            .field("topic", &self.topic)
            .field("token", &"<redacted>")
            .field("kind", &self.kind)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// A stored token.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredToken {
    pub page: PageId,
    pub psid: Psid,
    pub sk: String,
    /// The person's wording, as captured (tokens stored before topics were
    /// normalised hold the same); compare through [`topic_key`].
    pub topic: String,
    pub token: String,
    pub kind: TokenKind,
    pub status: TokenStatus,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    /// The spend that holds (or last held) the token: `<notify id>/<attempt>` for
    /// a notification. Given back, it is cleared.
    pub spend_id: Option<String>,
    /// Set while the send a spend pays for has no recorded fate (the spender may
    /// have crashed between the spend and the send): until when the spender
    /// holds it. A redelivery of the same notification sends with it again
    /// (Meta carries at most one message per token, so that cannot reach the
    /// person twice); once it has passed, the sweeper gives the token back.
    pub sending_until: Option<Timestamp>,
}

impl StoredToken {
    /// Whether this token is a one-time token of `topic` (compared by [`topic_key`]).
    pub fn is_one_time_of(&self, topic: &str) -> bool {
        self.kind == TokenKind::OneTime && topic_key(&self.topic) == topic_key(topic)
    }

    /// Whether the notification `notify_id` spent it (and did not give it back).
    pub fn spent_by_notify(&self, notify_id: &str) -> bool {
        self.spend_id.as_deref().is_some_and(|spend| {
            spend
                .strip_prefix(notify_id)
                .is_some_and(|rest| rest.starts_with('/'))
        })
    }
}

/// The token a notification `notify_id` spent for this person whose send has no
/// recorded fate: a crash came between the spend and the send's answer. The
/// redelivery sends with this token again rather than with a new one.
pub fn unfinished_send<'a>(
    held: &'a [StoredToken],
    topic: &str,
    notify_id: &str,
) -> Option<&'a StoredToken> {
    let key = topic_key(topic);
    held.iter().find(|t| {
        t.kind == TokenKind::OneTime
            && t.status == TokenStatus::Used
            && t.sending_until.is_some()
            && t.spent_by_notify(notify_id)
            && topic_key(&t.topic) == key
    })
}

/// The expiry index partition that lists a token while its send is unfinished
/// (`SENDING#<shard>`, the shard from the token's id).
pub fn sending_bucket(token_id: &str) -> String {
    let shard = token_id
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)))
        % SENDING_SHARDS;
    format!("SENDING#{shard}")
}

/// The tokens one person's notification may spend, in the order to try them: the
/// ACTIVE one-time tokens of the topic, oldest first (one past its year is refused
/// by the spend, which expires it, and the next is tried), or [`AlreadyNotified`]
/// when the notification `notify_id` already spent one of theirs: a notification
/// reaches a person once, however often it is queued for them. `held` is every
/// token the person holds.
pub fn tokens_for_notification<'a>(
    held: &'a [StoredToken],
    topic: &str,
    notify_id: &str,
) -> Result<Vec<&'a StoredToken>, AlreadyNotified> {
    let key = topic_key(topic);
    let of_topic: Vec<&StoredToken> = held
        .iter()
        .filter(|t| t.kind == TokenKind::OneTime && topic_key(&t.topic) == key)
        .collect();
    if of_topic.iter().any(|t| t.spent_by_notify(notify_id)) {
        return Err(AlreadyNotified);
    }
    let mut active: Vec<&StoredToken> = of_topic
        .into_iter()
        .filter(|t| t.status == TokenStatus::Active)
        .collect();
    active.sort_by(|a, b| (a.created_at, &a.sk).cmp(&(b.created_at, &b.sk)));
    Ok(active)
}

/// The person already got (or may have got) this notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlreadyNotified;

impl std::fmt::Debug for StoredToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredToken")
            .field("page", &self.page)
            .field("psid", &self.psid)
            .field("sk", &self.sk)
            .field("topic", &self.topic)
            .field("token", &"<redacted>")
            .field("status", &self.status)
            .field("expires_at", &self.expires_at)
            .field("spend_id", &self.spend_id)
            .field("sending_until", &self.sending_until)
            .finish()
    }
}

/// Where a token is: its thread's partition and its sort key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct TokenRef {
    pub page: PageId,
    pub psid: Psid,
    pub sk: String,
}

/// Why a token could not be spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpendRefused {
    /// No such token.
    Unknown,
    /// Already used, expired or retired (by anyone, including a concurrent spend).
    NotActive(TokenStatus),
    /// Past its expiry, whatever the sweeper has done yet.
    Expired,
}

/// One page of the sweeper's pass over the unfinished sends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StalePage {
    /// Tokens given back (ACTIVE again), or expired when their year ran out meanwhile.
    pub given_back: u64,
    /// Items DynamoDB read for this page (its `ScannedCount`).
    pub read: u64,
    /// Where to continue in the same shard, if anything is left.
    pub next: Option<String>,
}

/// One page of a sweep of the expiry index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepPage {
    pub expired: u64,
    /// Items DynamoDB read for this page (its `ScannedCount`).
    pub read: u64,
    /// Where to continue in the same bucket, if anything is left.
    pub next: Option<String>,
}

/// The expiry bucket (a UTC day, `EXPIRY#YYYY-MM-DD`) of an instant.
pub fn expiry_bucket(t: Timestamp) -> String {
    format!("EXPIRY#{}", utc_day(t))
}

/// `YYYY-MM-DD` of an instant, in UTC.
pub fn utc_day(t: Timestamp) -> String {
    day_string(day_number(t))
}

const MS_PER_DAY: i64 = 86_400_000;

/// The UTC day of an instant, counted in days since 1970-01-01 (negative before).
pub fn day_number(t: Timestamp) -> i64 {
    t.as_millis().div_euclid(MS_PER_DAY)
}

/// The first millisecond of a UTC day.
pub fn day_start(day: i64) -> Timestamp {
    Timestamp::from_millis(day.saturating_mul(MS_PER_DAY))
}

/// Days from the Julian day count's origin to 1970-01-01.
const UNIX_EPOCH_JULIAN_DAY: i64 = 2_440_588;

/// The calendar date of a day number, clamped to the years the date crate
/// knows (-9999 to 9999): only an absurd timestamp falls outside them.
fn date_of(day: i64) -> time::Date {
    let julian = day.saturating_add(UNIX_EPOCH_JULIAN_DAY).clamp(
        i64::from(time::Date::MIN.to_julian_day()),
        i64::from(time::Date::MAX.to_julian_day()),
    );
    i32::try_from(julian)
        .ok()
        .and_then(|j| time::Date::from_julian_day(j).ok())
        .unwrap_or(time::Date::MIN)
}

/// `YYYY-MM-DD` of a day number.
pub fn day_string(day: i64) -> String {
    let date = date_of(day);
    format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

/// The day number of a `YYYY-MM-DD` date (years 0000 to 9999), or `None` when the
/// text is not exactly such a date or names a day the calendar does not have.
pub fn day_from_str(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return None;
    }
    let number = |part: &[u8]| -> Option<i32> {
        part.iter().try_fold(0i32, |n, b| {
            b.is_ascii_digit().then(|| n * 10 + i32::from(b - b'0'))
        })
    };
    let year = number(&bytes[0..4])?;
    let month = time::Month::try_from(u8::try_from(number(&bytes[5..7])?).ok()?).ok()?;
    let day = u8::try_from(number(&bytes[8..10])?).ok()?;
    let date = time::Date::from_calendar_date(year, month, day).ok()?;
    Some(i64::from(date.to_julian_day()) - UNIX_EPOCH_JULIAN_DAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_are_trimmed_collapsed_and_case_folded() {
        assert_eq!(topic_key("  Back   in Stock "), "back in stock");
        assert_eq!(topic_key("back\tin\n stock"), "back in stock");
        assert_eq!(topic_key("BACK IN STOCK"), topic_key("back in stock"));
        assert_eq!(topic_key("Straße"), topic_key("STRASSE"));
        assert_eq!(topic_key("ΟΔΟΣ"), topic_key("οδοσ"));
        assert_eq!(topic_key(" \u{3000} "), "");
        assert_ne!(topic_key("back in stock"), topic_key("backinstock"));
    }

    fn held(psid_sk: &str, topic: &str, created: i64, status: TokenStatus) -> StoredToken {
        StoredToken {
            page: PageId::new("1"),
            psid: Psid::new("2"),
            sk: format!("OTN#{created:015}#{psid_sk}"),
            topic: topic.to_owned(),
            token: format!("tok-{psid_sk}"),
            kind: TokenKind::OneTime,
            status,
            created_at: Timestamp::from_millis(created),
            expires_at: Timestamp::from_millis(created + OTN_LIFETIME_MS),
            spend_id: None,
            sending_until: None,
        }
    }

    #[test]
    fn a_notification_spends_the_oldest_active_token_of_the_topic_whatever_its_wording() {
        let tokens = vec![
            held("a", "Back in Stock", 300, TokenStatus::Active),
            held("b", "back  in stock", 200, TokenStatus::Active),
            held("c", "BACK IN STOCK", 100, TokenStatus::Used),
            held("d", "price drop", 50, TokenStatus::Active),
            held("e", "back in stock", 20, TokenStatus::Expired),
        ];
        let order: Vec<&str> = tokens_for_notification(&tokens, " back in STOCK", "n1")
            .unwrap()
            .iter()
            .map(|t| t.token.as_str())
            .collect();
        assert_eq!(
            order,
            ["tok-b", "tok-a"],
            "oldest first; used and expired left out"
        );

        let mut recurring = held("r", "back in stock", 10, TokenStatus::Active);
        recurring.kind = TokenKind::Recurring;
        assert!(
            tokens_for_notification(&[recurring], "back in stock", "n1")
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_notification_reaches_a_person_once_however_often_it_is_queued_for_them() {
        let mut tokens = vec![
            held("a", "Back in Stock", 100, TokenStatus::Used),
            held("b", "Back in Stock", 200, TokenStatus::Active),
        ];
        tokens[0].spend_id = Some("n1/17-5-0".to_owned());
        assert_eq!(
            tokens_for_notification(&tokens, "back in stock", "n1"),
            Err(AlreadyNotified)
        );
        // Another notification, or one whose id only starts the same, spends the next.
        for other in ["n2", "n"] {
            let next = tokens_for_notification(&tokens, "back in stock", other).unwrap();
            assert_eq!(next.len(), 1, "{other}");
            assert_eq!(next[0].token, "tok-b");
        }
        // A spend given back leaves no mark: the retry sends.
        tokens[0].spend_id = None;
        tokens[0].status = TokenStatus::Active;
        assert_eq!(
            tokens_for_notification(&tokens, "back in stock", "n1").unwrap()[0].token,
            "tok-a"
        );
    }

    #[test]
    fn a_spend_whose_send_has_no_fate_is_resumed_only_by_its_own_notification() {
        let mut tokens = vec![
            held("a", "Back in Stock", 100, TokenStatus::Used),
            held("b", "Back in Stock", 200, TokenStatus::Active),
        ];
        tokens[0].spend_id = Some("n1/17-5-0".to_owned());
        tokens[0].sending_until = Some(Timestamp::from_millis(5_000));
        let resumed = unfinished_send(&tokens, "back in stock", "n1").unwrap();
        assert_eq!(resumed.token, "tok-a");
        // Another notification does not touch it; another topic is not it.
        assert!(unfinished_send(&tokens, "back in stock", "n2").is_none());
        assert!(unfinished_send(&tokens, "price drop", "n1").is_none());
        // Once the send's fate is recorded, the notification reached the person.
        tokens[0].sending_until = None;
        assert!(unfinished_send(&tokens, "back in stock", "n1").is_none());
        assert_eq!(
            tokens_for_notification(&tokens, "back in stock", "n1"),
            Err(AlreadyNotified)
        );
    }

    #[test]
    fn unfinished_sends_spread_over_every_shard() {
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..64 {
            seen.insert(sending_bucket(&format!("{i:016x}")));
        }
        assert_eq!(seen.len(), SENDING_SHARDS as usize, "{seen:?}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 512, failure_persistence: None, ..Default::default() })]

        #[test]
        fn topic_keys_are_idempotent_and_blind_to_case_and_spacing(
            words in proptest::collection::vec("\\PC{0,12}", 0..6),
            gaps in proptest::collection::vec("[ \t\n\u{a0}\u{3000}]{1,3}", 7),
        ) {
            let spaced: String = words
                .iter()
                .zip(&gaps)
                .map(|(w, g)| format!("{g}{w}"))
                .collect::<String>()
                + &gaps[6];
            let plain = words.join(" ");
            let key = topic_key(&spaced);
            proptest::prop_assert_eq!(&topic_key(&key), &key);
            proptest::prop_assert_eq!(&topic_key(&spaced.to_uppercase()), &key);
            proptest::prop_assert_eq!(&topic_key(&spaced.to_lowercase()), &key);
            proptest::prop_assert_eq!(&topic_key(&plain), &key);
            proptest::prop_assert!(!key.starts_with(' ') && !key.ends_with(' ') && !key.contains("  "));
        }
    }

    #[test]
    fn utc_days_are_civil_dates() {
        assert_eq!(utc_day(Timestamp::from_millis(0)), "1970-01-01");
        assert_eq!(
            utc_day(Timestamp::from_millis(1_795_269_600_000)),
            "2026-11-21"
        );
        assert_eq!(
            utc_day(Timestamp::from_millis(951_782_400_000)),
            "2000-02-29"
        );
        assert_eq!(utc_day(Timestamp::from_millis(-1)), "1969-12-31");
    }

    #[test]
    fn day_numbers_round_trip_through_dates() {
        assert_eq!(day_number(Timestamp::from_millis(0)), 0);
        assert_eq!(day_number(Timestamp::from_millis(86_399_999)), 0);
        assert_eq!(day_number(Timestamp::from_millis(86_400_000)), 1);
        assert_eq!(day_number(Timestamp::from_millis(-1)), -1);
        assert_eq!(day_string(0), "1970-01-01");
        assert_eq!(day_string(-1), "1969-12-31");
        assert_eq!(day_from_str("1970-01-01"), Some(0));
        assert_eq!(day_from_str("2000-02-29"), Some(11_016));
        assert_eq!(day_start(11_016), Timestamp::from_millis(951_782_400_000));
        // Every day of about eleven centuries, leap years and month ends included.
        for day in -200_000..200_000 {
            assert_eq!(day_from_str(&day_string(day)), Some(day), "{day}");
        }
    }

    #[test]
    fn malformed_or_impossible_dates_are_refused() {
        for text in [
            "",
            "2026-1-01",
            "2026-01-1",
            "2026/01/01",
            "2026-00-10",
            "2026-13-01",
            "2026-02-29",
            "2100-02-29",
            "2026-04-31",
            "2026-01-00",
            "2026-01-+1",
            "+026-01-01",
            "2026-01-01 ",
            "2026-01-\u{661}",
        ] {
            assert_eq!(day_from_str(text), None, "{text:?}");
        }
        assert!(day_from_str("2024-02-29").is_some());
    }
}
