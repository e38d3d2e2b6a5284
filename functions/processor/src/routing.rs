//! Conversation Routing (Meta's 2025 model): what the processor does about thread
//! control on its own, before the bot is asked.
//!
//! - A `request_thread_control` from an app in `HANDOVER_ALLOWED_APPS` is
//!   honoured: the thread is passed to it. Any other request goes to the bot like
//!   any event (the default bot ignores it) and is published as `Event Received`.
//! - After the bot passed a thread to the Page Inbox, if the Inbox neither
//!   replied nor handed it back within `INBOX_TAKE_BACK_HOURS` (0 = never), the
//!   person's next message (a standby event) takes the thread back and the bot
//!   answers it.
//! - `APP_IS_DEFAULT` says whether this app is the Page's default app: only that
//!   app may message a thread gone idle (the send policy checks it).

use std::time::Duration;

use app_config::{ConfigError, Lookup};
use messenger_store::{Control, ThreadState};
use messenger_types::event::EventKind;
use messenger_types::{AppId, Event, Source, Timestamp};

use crate::bot::{Action, PAGE_INBOX_APP_ID};

/// The routing settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routing {
    /// `APP_IS_DEFAULT` (default true): this app is the Page's default app in
    /// Conversation Routing, so it may message idle threads.
    pub app_is_default: bool,
    /// `HANDOVER_ALLOWED_APPS`: the apps (comma-separated ids) whose
    /// `request_thread_control` is honoured at once.
    pub handover_allowed_apps: Vec<AppId>,
    /// `INBOX_TAKE_BACK_HOURS` (default 0 = never): how long the Page Inbox may
    /// hold a thread the bot passed it without a word before the bot takes it
    /// back.
    pub inbox_take_back: Duration,
}

impl Default for Routing {
    fn default() -> Self {
        Self {
            app_is_default: true,
            handover_allowed_apps: Vec::new(),
            inbox_take_back: Duration::ZERO,
        }
    }
}

/// The most `INBOX_TAKE_BACK_HOURS` may be: 30 days.
const MAX_TAKE_BACK_HOURS: u64 = 24 * 30;

impl Routing {
    pub fn from_env(env: &impl Lookup) -> Result<Self, ConfigError> {
        let app_is_default = match env.get("APP_IS_DEFAULT").as_deref().map(str::trim) {
            None | Some("" | "true") => true,
            Some("false") => false,
            Some(_) => {
                return Err(ConfigError::Invalid {
                    var: "APP_IS_DEFAULT",
                    reason: "must be true or false".to_owned(),
                });
            }
        };
        let mut handover_allowed_apps = Vec::new();
        for id in env
            .get("HANDOVER_ALLOWED_APPS")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|id| !id.is_empty())
        {
            if !id.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ConfigError::Invalid {
                    var: "HANDOVER_ALLOWED_APPS",
                    reason: "must be app ids (digits), separated by commas".to_owned(),
                });
            }
            handover_allowed_apps.push(AppId::new(id));
        }
        let hours: u64 = app_config::optional(env, "INBOX_TAKE_BACK_HOURS", 0)?;
        if hours > MAX_TAKE_BACK_HOURS {
            return Err(ConfigError::Invalid {
                var: "INBOX_TAKE_BACK_HOURS",
                reason: format!("must be between 0 and {MAX_TAKE_BACK_HOURS} hours"),
            });
        }
        Ok(Self {
            app_is_default,
            handover_allowed_apps,
            inbox_take_back: Duration::from_secs(hours * 3_600),
        })
    }

    /// What routing itself does about `event`, before (or instead of) the bot.
    pub(crate) fn decide(
        &self,
        event: &Event,
        source: Source,
        thread: &ThreadState,
        now: Timestamp,
    ) -> Routed {
        match &event.kind {
            EventKind::RequestThreadControl(request) if source == Source::Messaging => {
                let requester = &request.requested_owner_app_id;
                if self.handover_allowed_apps.contains(requester) && thread.controlled_by_us() {
                    return Routed::Instead(Action::PassThreadControl {
                        to: requester.clone(),
                        metadata: request.metadata.clone(),
                    });
                }
                Routed::AskBot
            }
            EventKind::Message(m) if source == Source::Standby && !m.is_echo => {
                if self.take_back_due(thread, now) {
                    Routed::TakeBack(Action::TakeThreadControl {
                        metadata: Some(
                            "the Page Inbox did not answer within INBOX_TAKE_BACK_HOURS".to_owned(),
                        ),
                    })
                } else {
                    Routed::AskBot
                }
            }
            _ => Routed::AskBot,
        }
    }

    /// Whether the Page Inbox has held the thread for `INBOX_TAKE_BACK_HOURS`
    /// without anyone writing from it.
    fn take_back_due(&self, thread: &ThreadState, now: Timestamp) -> bool {
        let window = i64::try_from(self.inbox_take_back.as_millis()).unwrap_or(i64::MAX);
        let Some(Control {
            ours: false,
            owner: Some(owner),
            since,
        }) = &thread.control
        else {
            return false;
        };
        window > 0
            && owner.as_str() == PAGE_INBOX_APP_ID
            && now.as_millis().saturating_sub(since.as_millis()) >= window
            && thread.human_reply_at.is_none_or(|at| at < *since)
    }
}

/// What routing decided.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Routed {
    /// Nothing of its own: the bot decides as usual.
    AskBot,
    /// This action, and the bot is not asked.
    Instead(Action),
    /// Take the thread back with this action, then let the bot answer the event
    /// as the thread's owner.
    TakeBack(Action),
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    const HOUR: i64 = 3_600_000;
    const NOW: i64 = 1_795_269_600_000;

    fn routing(vars: &[(&str, &str)]) -> Result<Routing, ConfigError> {
        let env: BTreeMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Routing::from_env(&env)
    }

    fn event(json: &str) -> Event {
        serde_json::from_str(json).unwrap()
    }

    fn request_from(app: &str) -> Event {
        event(&format!(
            r#"{{"sender":{{"id":"2001"}},"recipient":{{"id":"1"}},"timestamp":{NOW},"request_thread_control":{{"requested_owner_app_id":{app},"metadata":"let me"}}}}"#
        ))
    }

    fn text() -> Event {
        event(&format!(
            r#"{{"sender":{{"id":"2001"}},"recipient":{{"id":"1"}},"timestamp":{NOW},"message":{{"mid":"m1","text":"hello?"}}}}"#
        ))
    }

    fn held_by_inbox(hours_ago: i64) -> ThreadState {
        ThreadState {
            control: Some(Control {
                ours: false,
                owner: Some(AppId::new(PAGE_INBOX_APP_ID)),
                since: Timestamp::from_millis(NOW - hours_ago * HOUR),
            }),
            ..ThreadState::default()
        }
    }

    #[test]
    fn the_settings_have_safe_defaults_and_refuse_what_they_cannot_read() {
        assert_eq!(routing(&[]).unwrap(), Routing::default());
        let r = routing(&[
            ("APP_IS_DEFAULT", "false"),
            ("HANDOVER_ALLOWED_APPS", " 123, 456 ,"),
            ("INBOX_TAKE_BACK_HOURS", "4"),
        ])
        .unwrap();
        assert!(!r.app_is_default);
        assert_eq!(
            r.handover_allowed_apps,
            vec![AppId::new("123"), AppId::new("456")]
        );
        assert_eq!(r.inbox_take_back, Duration::from_secs(4 * 3_600));
        for (var, value) in [
            ("APP_IS_DEFAULT", "yes"),
            ("HANDOVER_ALLOWED_APPS", "123,inbox"),
            ("INBOX_TAKE_BACK_HOURS", "721"),
            ("INBOX_TAKE_BACK_HOURS", "soon"),
        ] {
            let err = routing(&[(var, value)]).unwrap_err().to_string();
            assert!(err.contains(var), "{err}");
        }
    }

    #[test]
    fn a_request_from_an_allowed_app_is_honoured_and_any_other_goes_to_the_bot() {
        let r = routing(&[("HANDOVER_ALLOWED_APPS", "123")]).unwrap();
        let ours = ThreadState::default();
        let now = Timestamp::from_millis(NOW);
        assert_eq!(
            r.decide(&request_from("123"), Source::Messaging, &ours, now),
            Routed::Instead(Action::PassThreadControl {
                to: AppId::new("123"),
                metadata: Some("let me".to_owned()),
            })
        );
        assert_eq!(
            r.decide(&request_from("999"), Source::Messaging, &ours, now),
            Routed::AskBot
        );
        // Not ours to pass.
        assert_eq!(
            r.decide(
                &request_from("123"),
                Source::Messaging,
                &held_by_inbox(1),
                now
            ),
            Routed::AskBot
        );
    }

    #[test]
    fn the_inbox_loses_a_silent_thread_after_the_take_back_hours_and_never_a_busy_one() {
        let now = Timestamp::from_millis(NOW);
        let r = routing(&[("INBOX_TAKE_BACK_HOURS", "4")]).unwrap();
        assert!(matches!(
            r.decide(&text(), Source::Standby, &held_by_inbox(5), now),
            Routed::TakeBack(Action::TakeThreadControl { .. })
        ));
        assert_eq!(
            r.decide(&text(), Source::Standby, &held_by_inbox(3), now),
            Routed::AskBot
        );
        // Staff answered after taking it: theirs as long as they like.
        let mut answered = held_by_inbox(5);
        answered.human_reply_at = Some(Timestamp::from_millis(NOW - 4 * HOUR));
        assert_eq!(
            r.decide(&text(), Source::Standby, &answered, now),
            Routed::AskBot
        );
        // Another app's thread is not the Inbox's to lose.
        let mut other = held_by_inbox(5);
        other.control.as_mut().unwrap().owner = Some(AppId::new("123"));
        assert_eq!(
            r.decide(&text(), Source::Standby, &other, now),
            Routed::AskBot
        );
        // 0 = never.
        assert_eq!(
            Routing::default().decide(&text(), Source::Standby, &held_by_inbox(500), now),
            Routed::AskBot
        );
    }
}
