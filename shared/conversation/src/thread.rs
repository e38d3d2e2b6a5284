//! The thread: a Page and a person, and what is known of their conversation.
//! Every field that events move forward carries the time of the event that set it:
//! a change applies only when it is newer than what the field holds, so events
//! arriving out of order leave the newest state.

use messenger_types::{AppId, PageId, Psid, Timestamp, UserRef};

/// Whom a thread is with: a PSID, or the checkbox plugin's `user_ref` before the
/// person has written.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Person {
    Psid(Psid),
    UserRef(UserRef),
}

/// One conversation: a Page and a person.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ThreadKey {
    pub page: PageId,
    pub person: Person,
}

impl ThreadKey {
    pub fn psid(page: PageId, psid: Psid) -> Self {
        Self {
            page,
            person: Person::Psid(psid),
        }
    }
}

/// Conversation Routing (2025): thread control expires to idle after 24 hours
/// without activity.
pub const IDLE_AFTER_MS: i64 = 24 * 60 * 60 * 1000;

/// What the table knows of a thread. A thread never seen has the default state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ThreadState {
    /// The newest user message, postback, reaction, optin or referral: the 24-hour
    /// window runs from here.
    pub last_user_interaction: Option<Timestamp>,
    /// The newest message the person wrote: HUMAN_AGENT's 7 days run from here
    /// (MESSENGER.md §5: "up to 7 days after the user's last message").
    pub last_user_message: Option<Timestamp>,
    pub control: Option<Control>,
    pub entry_point: Option<EntryPoint>,
    pub account_link: Option<AccountLink>,
    /// Set when Meta said the person cannot receive messages (551, 2018108, ...).
    pub unreachable: Option<Unreachable>,
    /// When the person wrote again after being unreachable: with
    /// `unreachable.at`, the time reachability last changed.
    pub reachable_since: Option<Timestamp>,
    /// The newest message a human wrote to the person from the Page (Page Inbox,
    /// Business Suite) or another app wrote: the bot stays quiet on the thread for
    /// `HUMAN_PAUSE_HOURS` after it.
    pub human_reply_at: Option<Timestamp>,
    /// What the bot remembers of the person (its own typed state, as JSON).
    pub bot_state: Option<BotState>,
}

/// The most a bot's state for one person may take, in bytes of JSON: it lives on
/// the thread's item, which every event of the person reads and writes.
pub const MAX_BOT_STATE_BYTES: usize = 4096;

/// A bot's own state for one person, kept on the thread's item and written with
/// the turn that set it (so it is never ahead of, or behind, what the turn did).
/// Any serde type, at most [`MAX_BOT_STATE_BYTES`] of JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BotState(String);

/// Why a bot state cannot be kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BotStateError {
    #[error("the bot state is {bytes} bytes of JSON; at most {MAX_BOT_STATE_BYTES} are kept")]
    TooLarge { bytes: usize },
    #[error("the bot state cannot be written as JSON: {0}")]
    NotJson(String),
}

impl BotState {
    /// `value` as JSON, if it fits.
    pub fn new<T: serde::Serialize>(value: &T) -> Result<Self, BotStateError> {
        let json =
            serde_json::to_string(value).map_err(|e| BotStateError::NotJson(e.to_string()))?;
        if json.len() > MAX_BOT_STATE_BYTES {
            return Err(BotStateError::TooLarge { bytes: json.len() });
        }
        Ok(Self(json))
    }

    /// The state as the bot's type; `None` when it no longer reads as one (the
    /// bot's type changed since it was written).
    pub fn get<T: serde::de::DeserializeOwned>(&self) -> Option<T> {
        serde_json::from_str(&self.0).ok()
    }

    /// The JSON as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A state read back from the table (it was checked when written).
    pub fn from_stored(json: String) -> Self {
        Self(json)
    }
}

impl ThreadState {
    /// Whether this app controls the thread. With no Handover Protocol events seen,
    /// the app that receives `messaging` events is the owner.
    pub fn controlled_by_us(&self) -> bool {
        self.control.as_ref().is_none_or(|c| c.ours)
    }

    /// The newest activity on the thread the table knows of: the person's, a
    /// change of control, a human's reply.
    pub fn last_activity(&self) -> Option<Timestamp> {
        [
            self.last_user_interaction,
            self.control.as_ref().map(|c| c.since),
            self.human_reply_at,
        ]
        .into_iter()
        .flatten()
        .max()
    }

    /// Whether Conversation Routing has let the thread go idle: no activity for
    /// [`IDLE_AFTER_MS`]. Whoever held it then holds it no more, and only the
    /// Page's default app may message it. A thread with no recorded activity is
    /// not idle (nothing is known of it).
    pub fn idle(&self, now: Timestamp) -> bool {
        self.last_activity()
            .is_some_and(|at| now.as_millis().saturating_sub(at.as_millis()) >= IDLE_AFTER_MS)
    }

    /// Whether a human (or another app) wrote on the thread less than `pause` before
    /// `now`: the bot does not answer then. A zero `pause` never pauses.
    pub fn paused_for_human(&self, now: Timestamp, pause: std::time::Duration) -> bool {
        let pause = i64::try_from(pause.as_millis()).unwrap_or(i64::MAX);
        pause > 0
            && self
                .human_reply_at
                .is_some_and(|at| now.as_millis() < at.as_millis().saturating_add(pause))
    }

    /// When reachability last changed, either way.
    pub fn reachability_at(&self) -> Option<Timestamp> {
        self.unreachable
            .as_ref()
            .map(|u| u.at)
            .max(self.reachable_since)
    }

    /// Applies `change` if it is newer than the field it sets; returns whether it
    /// did. The store's conditional writes follow the same rule.
    pub fn apply(&mut self, change: &ThreadChange) -> bool {
        fn newer(held: Option<Timestamp>, at: Timestamp) -> bool {
            held.is_none_or(|held| held < at)
        }
        match change {
            ThreadChange::UserInteraction { at } => {
                let ok = newer(self.last_user_interaction, *at);
                if ok {
                    self.last_user_interaction = Some(*at);
                }
                ok
            }
            ThreadChange::UserMessage { at } => {
                let ok = newer(self.last_user_message, *at);
                if ok {
                    self.last_user_message = Some(*at);
                }
                ok
            }
            ThreadChange::Control(c) => {
                let ok = newer(self.control.as_ref().map(|c| c.since), c.since)
                    // A standby event only confirms that someone else holds the
                    // thread: `since` stays when it went to them (the Inbox's
                    // take-back hours run from there).
                    && !(c.owner.is_none()
                        && !c.ours
                        && self.control.as_ref().is_some_and(|held| !held.ours));
                if ok {
                    let owner = match (&c.owner, c.ours) {
                        (Some(owner), _) => Some(owner.clone()),
                        (None, true) => None,
                        // Someone else's, unnamed (a standby event): keep the owner we know.
                        (None, false) => self.control.as_ref().and_then(|c| c.owner.clone()),
                    };
                    self.control = Some(Control {
                        ours: c.ours,
                        owner,
                        since: c.since,
                    });
                }
                ok
            }
            ThreadChange::EntryPoint(e) => {
                let ok = newer(self.entry_point.as_ref().map(|e| e.at), e.at);
                if ok {
                    self.entry_point = Some(e.clone());
                }
                ok
            }
            ThreadChange::AccountLink(l) => {
                let ok = newer(self.account_link.as_ref().map(|l| l.at), l.at);
                if ok {
                    self.account_link = Some(l.clone());
                }
                ok
            }
            ThreadChange::Unreachable(u) => {
                let ok = newer(self.reachability_at(), u.at);
                if ok {
                    self.unreachable = Some(u.clone());
                    self.reachable_since = None;
                }
                ok
            }
            ThreadChange::Reachable { at } => {
                let ok = newer(self.reachability_at(), *at);
                if ok {
                    self.unreachable = None;
                    self.reachable_since = Some(*at);
                }
                ok
            }
            ThreadChange::HumanReply { at } => {
                let ok = newer(self.human_reply_at, *at);
                if ok {
                    self.human_reply_at = Some(*at);
                }
                ok
            }
        }
    }
}

/// Thread control under the Handover Protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Control {
    pub ours: bool,
    /// The owning app, when known (pass/take events and our own passes name it).
    pub owner: Option<AppId>,
    pub since: Timestamp,
}

/// How the person arrived: an m.me ref, an ad, a plugin's data-ref, kept whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryPoint {
    pub reference: Option<String>,
    pub source: Option<String>,
    /// The ad the person came from (click-to-Messenger).
    pub ad_id: Option<String>,
    /// The ad's context as Meta sent it, a JSON object of at most
    /// [`ADS_CONTEXT_MAX_BYTES`] (see [`bounded_ads_context`]).
    pub ads_context_data: Option<serde_json::Map<String, serde_json::Value>>,
    pub at: Timestamp,
}

/// The most an ad's context takes on the thread, as JSON: the thread's item is
/// written by every event, so what it keeps for good stays small.
pub const ADS_CONTEXT_MAX_BYTES: usize = 512;

/// The most an account-linking `authorization_code` takes on the thread; a longer
/// one is not kept (the link itself is).
pub const AUTHORIZATION_CODE_MAX_BYTES: usize = 256;

/// An ad's context as kept on the thread: an object, whole if its JSON fits in
/// [`ADS_CONTEXT_MAX_BYTES`]; otherwise its largest fields (media URLs, usually)
/// are left out until it fits, so the ids and the title are kept. `None` for
/// anything that is not an object, or an object left empty.
pub fn bounded_ads_context(
    data: Option<&serde_json::Value>,
) -> Option<serde_json::Map<String, serde_json::Value>> {
    let object = data?.as_object()?;
    let size = |m: &serde_json::Map<String, serde_json::Value>| {
        serde_json::to_string(m).map_or(usize::MAX, |s| s.len())
    };
    if size(object) <= ADS_CONTEXT_MAX_BYTES {
        return (!object.is_empty()).then(|| object.clone());
    }
    let mut fields: Vec<(&String, &serde_json::Value, usize)> = object
        .iter()
        .map(|(k, v)| {
            let one = serde_json::Map::from_iter([(k.clone(), v.clone())]);
            (k, v, size(&one))
        })
        .collect();
    fields.sort_by(|a, b| (a.2, a.0).cmp(&(b.2, b.0)));
    let mut kept = serde_json::Map::new();
    for (k, v, _) in fields {
        kept.insert(k.clone(), v.clone());
        if size(&kept) > ADS_CONTEXT_MAX_BYTES {
            kept.remove(k);
            break;
        }
    }
    (!kept.is_empty()).then_some(kept)
}

/// The `authorization_code` of an account link: what the business's linking flow
/// handed Meta, which names the business's account of this person. A credential:
/// it never appears in a `Debug` print, a log, an error or a published event.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthorizationCode(String);

impl AuthorizationCode {
    /// The code, when it is not empty and fits in [`AUTHORIZATION_CODE_MAX_BYTES`].
    pub fn new(code: &str) -> Option<Self> {
        (!code.is_empty() && code.len() <= AUTHORIZATION_CODE_MAX_BYTES)
            .then(|| Self(code.to_owned()))
    }

    /// The code itself, for the store and the business's own reads.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for AuthorizationCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthorizationCode(<redacted>)")
    }
}

/// Whether the person linked an account on the business's site, with the
/// `authorization_code` Meta passed on from the business's linking flow (which of
/// its accounts the thread belongs to) and the time of the link. Unlinking clears
/// the code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountLink {
    pub linked: bool,
    pub authorization_code: Option<AuthorizationCode>,
    pub at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreachable {
    pub reason: String,
    pub at: Timestamp,
}

/// A change to a thread, applied only if `at` is newer than what the field holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ThreadChange {
    UserInteraction {
        at: Timestamp,
    },
    /// The person wrote a message (not an echo).
    UserMessage {
        at: Timestamp,
    },
    Control(Control),
    EntryPoint(EntryPoint),
    AccountLink(AccountLink),
    Unreachable(Unreachable),
    /// The person wrote again after being unreachable.
    Reachable {
        at: Timestamp,
    },
    /// A message to the person written by staff (Page Inbox, Business Suite) or by
    /// another app: an echo not written by this app.
    HumanReply {
        at: Timestamp,
    },
}

/// A change to a Page's own record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageChange {
    /// `policy_enforcement`: warning, block or unblock.
    PolicyEnforcement {
        action: String,
        reason: Option<String>,
        at: Timestamp,
    },
    /// `app_roles`, as the JSON Meta sent.
    AppRoles { roles: String, at: Timestamp },
}

/// What the table knows of a Page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageState {
    pub policy_action: Option<String>,
    pub policy_reason: Option<String>,
    pub app_roles: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_ads_context_is_kept_whole_when_small_and_without_its_largest_fields_when_not() {
        let small = json!({"ad_title": "Boots", "post_id": "12_34", "product_id": "551"});
        assert_eq!(
            bounded_ads_context(Some(&small)).map(serde_json::Value::Object),
            Some(small)
        );
        let large = json!({
            "ad_title": "Boots",
            "post_id": "12_34",
            "photo_url": format!("https://scontent.example/{}", "p".repeat(300)),
            "video_url": format!("https://video.example/{}", "v".repeat(400)),
        });
        let kept = bounded_ads_context(Some(&large)).unwrap();
        assert!(serde_json::to_string(&kept).unwrap().len() <= ADS_CONTEXT_MAX_BYTES);
        let mut keys: Vec<&str> = kept.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["ad_title", "photo_url", "post_id"],
            "the largest field left out"
        );
        for not_kept in [json!("a string"), json!(null), json!({}), json!([1])] {
            assert_eq!(bounded_ads_context(Some(&not_kept)), None, "{not_kept}");
        }
        let one_huge = json!({"photo_url": "x".repeat(2 * ADS_CONTEXT_MAX_BYTES)});
        assert_eq!(bounded_ads_context(Some(&one_huge)), None);
    }

    #[test]
    fn a_standby_event_confirms_another_apps_control_without_moving_its_start() {
        let inbox = AppId::new("263902037430900");
        let at = |ms| Timestamp::from_millis(ms);
        let mut t = ThreadState::default();
        assert!(t.apply(&ThreadChange::Control(Control {
            ours: false,
            owner: Some(inbox.clone()),
            since: at(1_000),
        })));
        let standby = |ms| {
            ThreadChange::Control(Control {
                ours: false,
                owner: None,
                since: at(ms),
            })
        };
        assert!(!t.apply(&standby(5_000)));
        assert_eq!(
            t.control,
            Some(Control {
                ours: false,
                owner: Some(inbox),
                since: at(1_000),
            })
        );
        // Ours, then standby: that is a change, dated by the event.
        t.apply(&ThreadChange::Control(Control {
            ours: true,
            owner: None,
            since: at(6_000),
        }));
        assert!(t.apply(&standby(7_000)));
        assert_eq!(
            t.control.as_ref().map(|c| (c.ours, c.since)),
            Some((false, at(7_000)))
        );
    }

    #[test]
    fn a_thread_goes_idle_24_hours_after_its_last_activity() {
        let day = IDLE_AFTER_MS;
        let t = ThreadState {
            last_user_interaction: Some(Timestamp::from_millis(1_000)),
            human_reply_at: Some(Timestamp::from_millis(2_000)),
            ..ThreadState::default()
        };
        assert_eq!(t.last_activity(), Some(Timestamp::from_millis(2_000)));
        assert!(!t.idle(Timestamp::from_millis(2_000 + day - 1)));
        assert!(t.idle(Timestamp::from_millis(2_000 + day)));
    }

    #[test]
    fn a_bot_state_round_trips_and_one_too_large_is_refused() {
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct Cart {
            items: Vec<String>,
        }
        let cart = Cart {
            items: vec!["boots".to_owned()],
        };
        let state = BotState::new(&cart).unwrap();
        assert_eq!(state.get::<Cart>(), Some(cart));
        assert_eq!(state.get::<u32>(), None, "another type reads nothing");
        let big = Cart {
            items: vec!["x".repeat(MAX_BOT_STATE_BYTES)],
        };
        assert!(matches!(
            BotState::new(&big),
            Err(BotStateError::TooLarge { .. })
        ));
    }

    #[test]
    fn an_authorization_code_never_shows_in_debug() {
        let code = AuthorizationCode::new("secret-code").unwrap();
        assert_eq!(code.expose(), "secret-code");
        assert!(!format!("{code:?}").contains("secret"));
        assert_eq!(AuthorizationCode::new(""), None);
    }
}
