//! One-time notification tokens: what a token may still do, as captured from an
//! optin and as stored. A token is a credential: it never appears in a `Debug`
//! print, a log or an error.

use messenger_types::{PageId, Psid, Timestamp};

/// A token is good for one message within a year of its creation.
pub const OTN_LIFETIME_MS: i64 = 365 * 24 * 60 * 60 * 1000;
/// How long a finished token's record is kept after it expires (for the record
/// only: correctness never waits for TTL).
pub const OTN_RECORD_GRACE_DAYS: i64 = 30;

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
    pub topic: String,
    pub token: String,
    pub kind: TokenKind,
    pub status: TokenStatus,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

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
