//! What became of an event and of each thing it asked for: values, not sentences.
//! One value feeds the event's record in the table, the log line, the tests'
//! assertions (and the metrics and bus events built on them); `Display` is for
//! people.

use std::fmt;

use messenger_types::AppId;
use messenger_types::send::MessagingType;
use serde::{Deserialize, Serialize};

use crate::graph_error::{ErrorClass, GraphError};
use crate::send_policy::Refusal;

/// What became of one action (a send, a pass of thread control).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// The Send API accepted the message, sent as `messaging_type` (none for a
    /// one-time notification) with `tag`.
    Sent {
        message_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        messaging_type: Option<MessagingType>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tag: Option<String>,
    },
    /// Thread control went to another app.
    ControlPassed { app_id: AppId },
    /// This app took the thread.
    ControlTaken,
    /// This app released the thread: it is idle.
    ControlReleased,
    /// This app keeps the thread from going idle for `seconds` more.
    ControlExtended { seconds: u32 },
    /// This app asked the app that holds the thread to pass it over.
    ControlRequested,
    /// A sender action (typing on/off, mark seen) was shown to the person.
    ActionShown {
        sender_action: messenger_types::templates::SenderAction,
    },
    /// The send policy refused it before any network call.
    Refused { reason: Refusal },
    /// Meta refused it for good (not retried). For a one-time notification,
    /// `token` says whether the token was kept (not its fault) or retired.
    GraphRefused {
        class: ErrorClass,
        code: Option<i64>,
        subcode: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<TokenFate>,
    },
    /// The call went out and no answer says how it ended: it may have reached the
    /// person, so it is not made again (a notification's token stays spent).
    MaybeSent,
    /// An earlier attempt at this event carried it out.
    DoneEarlier,
    /// An earlier attempt made this call and died before recording what came of
    /// it: it may have reached the person, so it is not repeated (at most once).
    NotRepeated,
}

impl Outcome {
    /// The outcome of a call Meta refused for good.
    pub fn graph_refused(e: &GraphError) -> Self {
        Self::GraphRefused {
            class: e.class,
            code: e.code,
            subcode: e.subcode,
            token: None,
        }
    }

    /// A stable name: `sent`, `refused`, `graph_refused`, ...
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Sent { .. } => "sent",
            Self::ControlPassed { .. } => "control_passed",
            Self::ControlTaken => "control_taken",
            Self::ControlReleased => "control_released",
            Self::ControlExtended { .. } => "control_extended",
            Self::ControlRequested => "control_requested",
            Self::ActionShown { .. } => "action_shown",
            Self::Refused { .. } => "refused",
            Self::GraphRefused { .. } => "graph_refused",
            Self::MaybeSent => "maybe_sent",
            Self::DoneEarlier => "done_earlier",
            Self::NotRepeated => "not_repeated",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sent { message_id, .. } => {
                write!(
                    f,
                    "sent {}",
                    message_id.as_deref().unwrap_or("(no message id)")
                )
            }
            Self::ControlPassed { app_id } => write!(f, "passed thread control to app {app_id}"),
            Self::ControlTaken => f.write_str("took thread control"),
            Self::ControlReleased => f.write_str("released thread control (idle)"),
            Self::ControlExtended { seconds } => {
                write!(f, "extended thread control by {seconds} s")
            }
            Self::ControlRequested => f.write_str("asked for thread control"),
            Self::ActionShown { sender_action } => {
                write!(f, "showed {}", sender_action.as_str())
            }
            Self::Refused { reason } => write!(f, "refused ({}): {reason}", reason.code()),
            Self::GraphRefused {
                class,
                code,
                subcode,
                token,
            } => {
                write!(
                    f,
                    "Graph API refused it ({class}, code {code:?}, subcode {subcode:?})"
                )?;
                match token {
                    Some(TokenFate::Kept) => f.write_str("; token kept"),
                    Some(TokenFate::Retired) => f.write_str("; token retired"),
                    None => Ok(()),
                }
            }
            Self::MaybeSent => f.write_str("the call went out and no answer came; not repeated"),
            Self::DoneEarlier => f.write_str("done by an earlier attempt"),
            Self::NotRepeated => f.write_str("interrupted in an earlier attempt; not repeated"),
        }
    }
}

/// What became of a one-time notification token after Meta refused its send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenFate {
    /// Not the token's fault (the Page's credentials, the message): usable again.
    Kept,
    /// Meta refused the token itself: it is never used again.
    Retired,
}

/// What became of one event, as recorded on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventOutcome {
    /// State recorded; nothing to do (a delivery, a read, an echo, a bot that
    /// chose not to answer).
    Recorded,
    /// A `standby` event: recorded, never answered (another app controls the thread).
    Standby,
    /// The actions the bot asked for, in order, each with what became of it.
    Acted { actions: Vec<Outcome> },
}

impl EventOutcome {
    /// The actions' outcomes (none for [`EventOutcome::Recorded`] and
    /// [`EventOutcome::Standby`]).
    pub fn actions(&self) -> &[Outcome] {
        match self {
            Self::Acted { actions } => actions,
            Self::Recorded | Self::Standby => &[],
        }
    }

    /// The form kept in the event's record: JSON, read back by [`EventOutcome::parse`].
    pub fn to_record(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }

    /// Reads a recorded outcome.
    pub fn parse(recorded: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(recorded)
    }
}

impl fmt::Display for EventOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Recorded => f.write_str("recorded; no action"),
            Self::Standby => f.write_str("standby: recorded, never answered"),
            Self::Acted { actions } => {
                for (i, action) in actions.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    write!(f, "{action}")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use messenger_types::{PageId, Timestamp};

    #[test]
    fn outcomes_round_trip_through_their_record() {
        let outcome = EventOutcome::Acted {
            actions: vec![
                Outcome::Sent {
                    message_id: Some("m_1".into()),
                    messaging_type: Some(MessagingType::MessageTag),
                    tag: Some("HUMAN_AGENT".into()),
                },
                Outcome::Sent {
                    message_id: None,
                    messaging_type: None,
                    tag: None,
                },
                Outcome::Refused {
                    reason: Refusal::OutsideWindow {
                        last: Some(Timestamp::from_millis(1)),
                    },
                },
                Outcome::Refused {
                    reason: Refusal::NoPageToken {
                        page: PageId::new("3"),
                    },
                },
                Outcome::GraphRefused {
                    class: ErrorClass::Unreachable,
                    code: Some(551),
                    subcode: None,
                    token: None,
                },
                Outcome::GraphRefused {
                    class: ErrorClass::InvalidRequest,
                    code: Some(100),
                    subcode: None,
                    token: Some(TokenFate::Retired),
                },
                Outcome::NotRepeated,
            ],
        };
        let record = outcome.to_record();
        assert_eq!(EventOutcome::parse(&record).unwrap(), outcome);
        assert!(record.contains(r#""code":"outside_window""#), "{record}");
        assert!(record.contains(r#""class":"unreachable""#), "{record}");
    }

    #[test]
    fn refusal_codes_are_the_serialised_names() {
        for reason in [
            Refusal::MissingTag,
            Refusal::TokenUsed,
            Refusal::NoThreadToPass,
            Refusal::OtnOutsideNotify,
            Refusal::NotThreadOwner { owner: None },
            Refusal::NoTokenForTopic {
                topic: "shoes".to_owned(),
            },
        ] {
            let json = serde_json::to_value(&reason).unwrap();
            assert_eq!(json["code"], reason.code());
        }
    }
}
