//! The bodies of messages on the events queue. Two producers write to the queue:
//! the webhook (`"type": "event"`, one message per webhook event) and the business's
//! own backend (`"type": "notify"`, see the README). The processor reads both.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::ids::PageId;
use crate::routing::Source;

/// What the webhook enqueues for one event, serialised without copying the event:
/// `event` is the event's bytes exactly as Meta sent them.
#[derive(Debug, Serialize)]
pub struct QueuedEventRef<'a> {
    #[serde(rename = "type")]
    pub kind: QueueMessageType,
    /// `entry.id`; absent only when neither the entry nor the event named a Page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page_id: Option<&'a str>,
    pub source: Source,
    /// [`crate::EventKey`] in readable form.
    pub key: &'a str,
    pub event: &'a RawValue,
}

/// A queued webhook event, as the processor reads it.
#[derive(Debug, Deserialize)]
pub struct QueuedEvent {
    #[serde(default)]
    pub page_id: Option<PageId>,
    pub source: Source,
    pub key: String,
    pub event: Box<RawValue>,
}

/// `{"type":"notify","page_id":"…","topic":"…","message":{"text":"Back in stock"}}`:
/// send `message` once to every person holding an active one-time notification
/// token of that Page and topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyCommand {
    #[serde(rename = "type")]
    pub kind: QueueMessageType,
    pub page_id: PageId,
    pub topic: String,
    /// A Send API `message` object (`text`, or `attachment`, and `quick_replies`).
    pub message: serde_json::Map<String, serde_json::Value>,
    /// Internal, set by the processor on the follow-up command of a fan-out that
    /// did not finish in one invocation: where to continue in the token index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// Internal: the fan-out this follow-up belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_id: Option<String>,
}

/// Internal: one recipient's part of a notify fan-out. The token is named by
/// where it is stored, never carried in the message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotifyOne {
    #[serde(rename = "type")]
    pub kind: QueueMessageType,
    pub notify_id: String,
    pub page_id: PageId,
    pub psid: crate::Psid,
    pub token_sk: String,
    pub topic: String,
    pub message: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueMessageType {
    Event,
    Notify,
    NotifyOne,
    ReplayParked,
}

/// `{"type":"replay_parked","page_id":"…"}`: the processor puts the Page's parked
/// messages back on the queue (sent by `messenger page store-token` and
/// `page replay`). It names the Page only: what is replayed comes from the table,
/// and the processor re-queues it under its own role, so a replay passes the
/// queue's sender check however the operator is signed in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayParked {
    #[serde(rename = "type")]
    pub kind: QueueMessageType,
    pub page_id: PageId,
}

/// Any message body on the events queue.
#[derive(Debug)]
pub enum QueueMessage {
    Event(QueuedEvent),
    Notify(NotifyCommand),
    NotifyOne(NotifyOne),
    /// A command from the business's own systems (`send`, `pass_thread_control`, ...).
    Command(crate::command::Command),
    ReplayParked(ReplayParked),
}

/// Why a queue message could not be read. Holds no part of the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueMessageError {
    reason: String,
}

impl fmt::Display for QueueMessageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unreadable queue message: {}", self.reason)
    }
}

impl std::error::Error for QueueMessageError {}

impl QueueMessage {
    pub fn from_json(body: &str) -> Result<Self, QueueMessageError> {
        #[derive(Deserialize)]
        struct Tag {
            #[serde(rename = "type")]
            kind: Option<String>,
        }
        // serde_json's own message can quote the offending value (a person's text):
        // keep only the class of error, the position and, when it names one, the field.
        let fail = |e: serde_json::Error| {
            let text = e.to_string();
            let field = text
                .split('`')
                .nth(1)
                .filter(|_| text.starts_with("missing field") || text.starts_with("unknown field"))
                .map(|f| format!(" (field `{f}`)"))
                .unwrap_or_default();
            QueueMessageError {
                reason: format!(
                    "{:?} error at line {}, column {}{field}",
                    e.classify(),
                    e.line(),
                    e.column()
                ),
            }
        };
        let tag: Tag = serde_json::from_str(body).map_err(fail)?;
        match tag.kind.as_deref() {
            Some("event") => serde_json::from_str(body).map(Self::Event).map_err(fail),
            Some("notify") => serde_json::from_str(body).map(Self::Notify).map_err(fail),
            Some("notify_one") => serde_json::from_str(body)
                .map(Self::NotifyOne)
                .map_err(fail),
            Some("replay_parked") => serde_json::from_str(body)
                .map(Self::ReplayParked)
                .map_err(fail),
            Some(
                "send"
                | "pass_thread_control"
                | "take_thread_control"
                | "release_thread_control"
                | "extend_thread_control"
                | "request_thread_control"
                | "forget",
            ) => serde_json::from_str(body).map(Self::Command).map_err(fail),
            Some(other) => Err(QueueMessageError {
                reason: format!(
                    "unknown \"type\" {:?} (expected \"event\", \"notify\" or a command: \"send\", \"pass_thread_control\", \"take_thread_control\", \"release_thread_control\", \"extend_thread_control\", \"request_thread_control\", \"forget\")",
                    other.chars().take(40).collect::<String>()
                ),
            }),
            None => Err(QueueMessageError {
                reason: "missing \"type\" (expected \"event\" or \"notify\")".to_owned(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_round_trips_with_its_bytes_untouched() {
        let event = RawValue::from_string(r#"{"a":"\u00e4\/"}"#.to_owned()).unwrap();
        let body = serde_json::to_string(&QueuedEventRef {
            kind: QueueMessageType::Event,
            page_id: Some("1"),
            source: Source::Standby,
            key: "message:m",
            event: &event,
        })
        .unwrap();
        assert!(body.contains(r#""event":{"a":"\u00e4\/"}"#), "{body}");
        let QueueMessage::Event(e) = QueueMessage::from_json(&body).unwrap() else {
            panic!("not an event");
        };
        assert_eq!(e.event.get(), r#"{"a":"\u00e4\/"}"#);
        assert_eq!(e.source, Source::Standby);
        assert_eq!(e.page_id, Some(PageId::new("1")));
    }

    #[test]
    fn notify_command_parses_as_documented() {
        let body = r#"{"type": "notify", "page_id": "<page id>", "topic": "<OTN payload>", "message": {"text": "Back in stock"}}"#;
        let QueueMessage::Notify(n) = QueueMessage::from_json(body).unwrap() else {
            panic!("not a notify");
        };
        assert_eq!(n.topic, "<OTN payload>");
        assert_eq!(n.message["text"], "Back in stock");
    }

    #[test]
    fn bad_commands_say_what_is_wrong() {
        let err = QueueMessage::from_json(r#"{"type":"nofity"}"#).unwrap_err();
        assert!(
            err.to_string().contains("unknown \"type\" \"nofity\""),
            "{err}"
        );
        let err = QueueMessage::from_json(r#"{"page_id":"1"}"#).unwrap_err();
        assert!(err.to_string().contains("missing \"type\""), "{err}");
        let err = QueueMessage::from_json(r#"{"type":"notify","page_id":"1"}"#).unwrap_err();
        assert!(err.to_string().contains("topic"), "{err}");
        assert!(QueueMessage::from_json("not json").is_err());
        let err = QueueMessage::from_json(
            r#"{"type":"notify","page_id":"1","topic":["secret text"],"message":{}}"#,
        )
        .unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
    }
}
