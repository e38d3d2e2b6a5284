//! Commands from the business's own systems, on the events queue (in the thread's
//! FIFO group `<page_id>:<psid>`, so they keep their order with the
//! conversation). Each carries a caller-chosen `command_id`: a repeated id does
//! nothing twice.
//!
//! ```json
//! {"type":"send","command_id":"c1","page_id":"P","recipient":{"id":"PSID"},"message":{"text":"Your order shipped"},"messaging_type":"RESPONSE"}
//! {"type":"send","command_id":"c2","page_id":"P","recipient":{"id":"PSID"},"message":{"text":"An agent replies"},"messaging_type":"MESSAGE_TAG","tag":"HUMAN_AGENT","human":true}
//! {"type":"pass_thread_control","command_id":"c4","page_id":"P","psid":"PSID","target_app_id":"263902037430900","metadata":"agent"}
//! {"type":"forget","command_id":"c7","page_id":"P","psid":"PSID"}
//! ```

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::ids::{AppId, PageId, Psid};
use crate::send::{MessageTag, MessagingType};

/// The longest text Meta accepts in a message (characters).
pub const MAX_TEXT_CHARS: usize = 2000;

/// A caller's command id: 1 to 80 printable ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CommandId(String);

impl CommandId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for CommandId {
    type Error = String;

    fn try_from(id: String) -> Result<Self, String> {
        if id.is_empty() || id.len() > 80 || !id.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return Err("command_id must be 1 to 80 printable ASCII characters".to_owned());
        }
        Ok(Self(id))
    }
}

impl From<CommandId> for String {
    fn from(id: CommandId) -> Self {
        id.0
    }
}

impl fmt::Display for CommandId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who a `send` is for: `{"id": "<PSID>"}` (a `user_ref` recipient is not taken:
/// the checkbox plugin's first message is the business's own reply to an optin).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandRecipient {
    pub id: Psid,
}

/// `send`: one message to one person, through exactly the policy a bot's send
/// goes through.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendCommand {
    pub command_id: CommandId,
    pub page_id: PageId,
    pub recipient: CommandRecipient,
    /// A Send API `message` object (`text`, or `attachment`, and `quick_replies`).
    pub message: Map<String, Value>,
    /// `RESPONSE` (the default), `UPDATE` or `MESSAGE_TAG` (with `tag`).
    #[serde(default)]
    pub messaging_type: Option<MessagingType>,
    #[serde(default)]
    pub tag: Option<MessageTag>,
    /// The message was written by a person (required for `HUMAN_AGENT`).
    #[serde(default)]
    pub human: bool,
    /// Spend this person's one-time notification token of the topic.
    #[serde(default)]
    pub otn_topic: Option<String>,
}

/// `pass_thread_control`, `take_thread_control`, `release_thread_control` and
/// `forget`: something done to one person's thread.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThreadCommand {
    pub command_id: CommandId,
    pub page_id: PageId,
    pub psid: Psid,
    /// The app to pass the thread to (`pass_thread_control` only).
    #[serde(default)]
    pub target_app_id: Option<AppId>,
    #[serde(default)]
    pub metadata: Option<String>,
    /// Seconds to keep the thread from going idle (`extend_thread_control` only;
    /// 1 to 604800, Meta's 7 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<u32>,
}

/// The longest `extend_thread_control` Meta allows: 7 days, in seconds.
pub const MAX_EXTEND_SECONDS: u32 = 7 * 24 * 3_600;

/// A command, by its `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Command {
    Send(SendCommand),
    PassThreadControl(ThreadCommand),
    TakeThreadControl(ThreadCommand),
    ReleaseThreadControl(ThreadCommand),
    /// Keep the thread this app holds from going idle for `duration` seconds.
    ExtendThreadControl(ThreadCommand),
    /// Ask the app that holds the thread to pass it to this app.
    RequestThreadControl(ThreadCommand),
    Forget(ThreadCommand),
}

/// A command that is well-formed JSON but asks for something that cannot be
/// done as written; `field` names what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct CommandInvalid {
    pub field: &'static str,
    pub problem: String,
}

impl Command {
    /// The `type`, as written.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Send(_) => "send",
            Self::PassThreadControl(_) => "pass_thread_control",
            Self::TakeThreadControl(_) => "take_thread_control",
            Self::ReleaseThreadControl(_) => "release_thread_control",
            Self::ExtendThreadControl(_) => "extend_thread_control",
            Self::RequestThreadControl(_) => "request_thread_control",
            Self::Forget(_) => "forget",
        }
    }

    pub fn command_id(&self) -> &CommandId {
        match self {
            Self::Send(c) => &c.command_id,
            Self::PassThreadControl(c)
            | Self::TakeThreadControl(c)
            | Self::ReleaseThreadControl(c)
            | Self::ExtendThreadControl(c)
            | Self::RequestThreadControl(c)
            | Self::Forget(c) => &c.command_id,
        }
    }

    pub fn page_id(&self) -> &PageId {
        match self {
            Self::Send(c) => &c.page_id,
            Self::PassThreadControl(c)
            | Self::TakeThreadControl(c)
            | Self::ReleaseThreadControl(c)
            | Self::ExtendThreadControl(c)
            | Self::RequestThreadControl(c)
            | Self::Forget(c) => &c.page_id,
        }
    }

    /// The person the command is about.
    pub fn psid(&self) -> &Psid {
        match self {
            Self::Send(c) => &c.recipient.id,
            Self::PassThreadControl(c)
            | Self::TakeThreadControl(c)
            | Self::ReleaseThreadControl(c)
            | Self::ExtendThreadControl(c)
            | Self::RequestThreadControl(c)
            | Self::Forget(c) => &c.psid,
        }
    }

    /// The thread command's fields (every type but `send`).
    fn thread_command(&self) -> Option<&ThreadCommand> {
        match self {
            Self::Send(_) => None,
            Self::PassThreadControl(c)
            | Self::TakeThreadControl(c)
            | Self::ReleaseThreadControl(c)
            | Self::ExtendThreadControl(c)
            | Self::RequestThreadControl(c)
            | Self::Forget(c) => Some(c),
        }
    }

    /// The FIFO group it is queued in: its thread's, so it keeps its place in the
    /// conversation.
    pub fn queue_group(&self) -> String {
        crate::routing::thread_group(self.page_id().as_str(), self.psid().as_str())
    }

    /// The queue's deduplication id: the same `command_id` for the same thread
    /// within SQS's five minutes is queued once (the processor's ledger does the
    /// rest).
    pub fn dedup_id(&self) -> String {
        use sha2::{Digest, Sha256};
        hex::encode(Sha256::digest(format!(
            "command:{}:{}",
            self.queue_group(),
            self.command_id()
        )))
    }

    /// What the queue and the HTTP route check before taking a command: Meta's
    /// limits on the message, a tag only with `MESSAGE_TAG` (and one in force),
    /// a target for a pass. The policy checks the rest (the window, `human`).
    pub fn validate(&self) -> Result<(), CommandInvalid> {
        let invalid = |field, problem: &str| {
            Err(CommandInvalid {
                field,
                problem: problem.to_owned(),
            })
        };
        if !matches!(self, Self::ExtendThreadControl(_))
            && self.thread_command().is_some_and(|c| c.duration.is_some())
        {
            return invalid("duration", "goes only with extend_thread_control");
        }
        match self {
            Self::Send(c) => {
                match (c.message.get("text"), c.message.get("attachment")) {
                    (Some(Value::String(text)), None) => {
                        if text.is_empty() {
                            return invalid("message.text", "is empty");
                        }
                        if text.chars().count() > MAX_TEXT_CHARS {
                            return invalid("message.text", "is over Meta's 2000 characters");
                        }
                    }
                    (None, Some(Value::Object(_))) => {}
                    (Some(_), Some(_)) => {
                        return invalid("message", "has both text and attachment");
                    }
                    _ => {
                        return invalid(
                            "message",
                            "needs a text (string) or an attachment (object)",
                        );
                    }
                }
                if let Some(key) = c.message.keys().find(|k| {
                    !matches!(
                        k.as_str(),
                        "text" | "attachment" | "quick_replies" | "metadata"
                    )
                }) {
                    return Err(CommandInvalid {
                        field: "message",
                        problem: format!(
                            "unknown field {:?}",
                            key.chars().take(40).collect::<String>()
                        ),
                    });
                }
                match (c.messaging_type, &c.tag, &c.otn_topic) {
                    (_, Some(_), Some(_)) => invalid("otn_topic", "cannot go with a tag"),
                    (Some(_), _, Some(_)) => {
                        invalid("otn_topic", "a notification has no messaging_type")
                    }
                    (Some(MessagingType::MessageTag), None, None) => {
                        invalid("tag", "is required with MESSAGE_TAG")
                    }
                    (Some(MessagingType::MessageTag), Some(tag), None) if tag.is_retired() => {
                        invalid("tag", "is retired by Meta")
                    }
                    (
                        Some(MessagingType::Response | MessagingType::Update) | None,
                        Some(_),
                        None,
                    ) => invalid("tag", "goes only with messaging_type MESSAGE_TAG"),
                    (_, _, Some(topic)) if topic.trim().is_empty() => {
                        invalid("otn_topic", "is empty")
                    }
                    _ => Ok(()),
                }
            }
            Self::PassThreadControl(c) if c.target_app_id.is_none() => {
                invalid("target_app_id", "is required to pass the thread")
            }
            Self::TakeThreadControl(c)
            | Self::ReleaseThreadControl(c)
            | Self::ExtendThreadControl(c)
            | Self::RequestThreadControl(c)
            | Self::Forget(c)
                if c.target_app_id.is_some() =>
            {
                invalid("target_app_id", "goes only with pass_thread_control")
            }
            Self::ExtendThreadControl(c) => match c.duration {
                None => invalid("duration", "is required to extend thread control"),
                Some(0) => invalid("duration", "must be at least 1 second"),
                Some(d) if d > MAX_EXTEND_SECONDS => {
                    invalid("duration", "is over Meta's 7 days (604800 seconds)")
                }
                Some(_) => Ok(()),
            },
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Command, String> {
        serde_json::from_str::<Command>(json).map_err(|e| e.to_string())
    }

    #[test]
    fn the_documented_commands_parse() {
        let c = parse(r#"{"type":"send","command_id":"c1","page_id":"1","recipient":{"id":"2"},"message":{"text":"Your order shipped"},"messaging_type":"RESPONSE"}"#).unwrap();
        assert_eq!(c.kind(), "send");
        assert_eq!(c.command_id().as_str(), "c1");
        assert_eq!(c.psid().as_str(), "2");
        c.validate().unwrap();
        let c = parse(r#"{"type":"send","command_id":"c2","page_id":"1","recipient":{"id":"2"},"message":{"text":"An agent replies"},"messaging_type":"MESSAGE_TAG","tag":"HUMAN_AGENT","human":true}"#).unwrap();
        c.validate().unwrap();
        let c = parse(r#"{"type":"pass_thread_control","command_id":"c4","page_id":"1","psid":"2","target_app_id":"263902037430900","metadata":"agent"}"#).unwrap();
        assert_eq!(c.kind(), "pass_thread_control");
        c.validate().unwrap();
        let c = parse(r#"{"type":"extend_thread_control","command_id":"c8","page_id":"1","psid":"2","duration":86400}"#).unwrap();
        assert_eq!(c.kind(), "extend_thread_control");
        c.validate().unwrap();
        for (json, field) in [
            (
                r#"{"type":"extend_thread_control","command_id":"c8","page_id":"1","psid":"2"}"#,
                "duration",
            ),
            (
                r#"{"type":"extend_thread_control","command_id":"c8","page_id":"1","psid":"2","duration":604801}"#,
                "duration",
            ),
            (
                r#"{"type":"extend_thread_control","command_id":"c8","page_id":"1","psid":"2","duration":0}"#,
                "duration",
            ),
            (
                r#"{"type":"take_thread_control","command_id":"c8","page_id":"1","psid":"2","duration":60}"#,
                "duration",
            ),
        ] {
            assert_eq!(
                parse(json).unwrap().validate().unwrap_err().field,
                field,
                "{json}"
            );
        }
        for kind in [
            "take_thread_control",
            "release_thread_control",
            "request_thread_control",
            "forget",
        ] {
            let c = parse(&format!(
                r#"{{"type":"{kind}","command_id":"c5","page_id":"1","psid":"2"}}"#
            ))
            .unwrap();
            assert_eq!(c.kind(), kind);
            c.validate().unwrap();
        }
    }

    #[test]
    fn bad_commands_name_the_field() {
        let unknown = parse(r#"{"type":"send","command_id":"c1","page_id":"1","recipient":{"id":"2"},"message":{"text":"x"},"colour":"red"}"#).unwrap_err();
        assert!(unknown.contains("colour"), "{unknown}");
        for id in ["", "é", &"x".repeat(81), "tab\there"] {
            let body =
                serde_json::json!({"type":"forget","command_id":id,"page_id":"1","psid":"2"});
            let e = serde_json::from_value::<Command>(body)
                .unwrap_err()
                .to_string();
            assert!(e.contains("command_id"), "{id:?}: {e}");
        }
        assert!(
            parse(r#"{"type":"forget","page_id":"1","psid":"2"}"#)
                .unwrap_err()
                .contains("command_id")
        );
        let field = |json: &str| parse(json).unwrap().validate().unwrap_err().field;
        let long = "x".repeat(2001);
        assert_eq!(
            field(&format!(
                r#"{{"type":"send","command_id":"c","page_id":"1","recipient":{{"id":"2"}},"message":{{"text":"{long}"}}}}"#
            )),
            "message.text"
        );
        assert_eq!(
            field(
                r#"{"type":"send","command_id":"c","page_id":"1","recipient":{"id":"2"},"message":{}}"#
            ),
            "message"
        );
        assert_eq!(
            field(
                r#"{"type":"send","command_id":"c","page_id":"1","recipient":{"id":"2"},"message":{"text":"x"},"messaging_type":"MESSAGE_TAG"}"#
            ),
            "tag"
        );
        assert_eq!(
            field(
                r#"{"type":"send","command_id":"c","page_id":"1","recipient":{"id":"2"},"message":{"text":"x"},"messaging_type":"MESSAGE_TAG","tag":"POST_PURCHASE_UPDATE"}"#
            ),
            "tag"
        );
        assert_eq!(
            field(
                r#"{"type":"send","command_id":"c","page_id":"1","recipient":{"id":"2"},"message":{"text":"x"},"tag":"HUMAN_AGENT"}"#
            ),
            "tag"
        );
        assert_eq!(
            field(r#"{"type":"pass_thread_control","command_id":"c","page_id":"1","psid":"2"}"#),
            "target_app_id"
        );
    }

    #[test]
    fn a_command_round_trips() {
        let c = parse(r#"{"type":"send","command_id":"c1","page_id":"1","recipient":{"id":"2"},"message":{"text":"hi"},"messaging_type":"UPDATE"}"#).unwrap();
        let again = parse(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(c, again);
    }
}
