//! The typed model of a webhook delivery: envelope, entries and every event kind of
//! the Messenger Platform.
//!
//! Parsing is tolerant by design. Meta adds event kinds and fields over time, and a
//! batch must never fail because of one of them: an event whose kind is unknown, or
//! whose known kind has a shape we do not expect, is kept whole as
//! [`EventKind::Unknown`], and fields we do not model are kept in `extra` maps, so
//! serialising a parsed event gives back the JSON it came from, in its current
//! form: ids given as numbers are written as strings, timestamps in seconds in
//! milliseconds, the older key `policy-enforcement` as `policy_enforcement`.

use std::collections::BTreeMap;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::ids::{AppId, PageId, Timestamp, optional_id};

/// Extra fields Meta sent that this model does not name.
pub type Extra = Map<String, Value>;

/// `{"object":"page","entry":[...]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub object: String,
    pub entry: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub id: PageId,
    pub time: Timestamp,
    /// Events for the app that owns the thread.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub messaging: Vec<Event>,
    /// Events for apps that do not own the thread (Handover Protocol): never answer these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub standby: Vec<Event>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `sender` or `recipient`. Usually `{"id": ...}`; the checkbox plugin identifies a
/// person by `user_ref` instead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Party {
    /// A string or, in older payloads, a number: read like every id.
    #[serde(
        default,
        deserialize_with = "optional_id",
        skip_serializing_if = "Option::is_none"
    )]
    pub id: Option<String>,
    #[serde(
        default,
        deserialize_with = "optional_id",
        skip_serializing_if = "Option::is_none"
    )]
    pub user_ref: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// One item of `entry[].messaging[]` or `entry[].standby[]`.
///
/// `sender` is absent on page-level events (`app_roles`, `policy_enforcement`) and on
/// checkbox-plugin optins; on echoes it is the Page itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub sender: Option<Party>,
    pub recipient: Option<Party>,
    pub timestamp: Option<Timestamp>,
    pub kind: EventKind,
    /// Top-level fields besides the envelope fields and the kind's own key.
    pub extra: Extra,
}

/// What happened. The variant name matches the event's JSON key.
#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    Message(Message),
    Postback(Postback),
    Referral(Referral),
    Optin(Optin),
    AccountLinking(AccountLinking),
    Delivery(Delivery),
    Read(Read),
    Reaction(Reaction),
    MessageEdit(MessageEdit),
    PassThreadControl(PassThreadControl),
    TakeThreadControl(TakeThreadControl),
    RequestThreadControl(RequestThreadControl),
    AppRoles(BTreeMap<AppId, Vec<String>>),
    PolicyEnforcement(PolicyEnforcement),
    /// A kind this model does not know, or a known kind in a shape it does not
    /// expect: `key` is the event's JSON key (`None` when there was none) and `value`
    /// its content, kept verbatim.
    Unknown {
        key: Option<String>,
        value: Value,
    },
}

/// The JSON keys of the kinds modelled above, in [`EventKind`] order. An event with
/// several of them is of the first.
pub const KNOWN_KINDS: [&str; 14] = [
    "message",
    "postback",
    "referral",
    "optin",
    "account_linking",
    "delivery",
    "read",
    "reaction",
    "message_edit",
    "pass_thread_control",
    "take_thread_control",
    "request_thread_control",
    "app_roles",
    "policy_enforcement",
];

/// Older keys Meta has used for a kind (its older reference, still in several
/// frameworks' fixtures), with the key each stands for.
pub const OLDER_SPELLINGS: [(&str, &str); 1] = [("policy-enforcement", "policy_enforcement")];

/// The kind of an event whose top-level keys `has` tells: the first of
/// [`KNOWN_KINDS`] present under its key or an older spelling of it (the current
/// key first), as `(kind, key as spelled in the event)`. Routing and the typed
/// model both find the kind here.
pub fn find_kind(has: impl Fn(&str) -> bool) -> Option<(&'static str, &'static str)> {
    KNOWN_KINDS.iter().find_map(|&kind| {
        if has(kind) {
            return Some((kind, kind));
        }
        OLDER_SPELLINGS
            .iter()
            .find(|(older, current)| *current == kind && has(older))
            .map(|&(older, _)| (kind, older))
    })
}

impl EventKind {
    /// The event's JSON key, for logs and metrics (`"unknown"` if it had none).
    pub fn as_str(&self) -> &str {
        match self {
            Self::Message(_) => "message",
            Self::Postback(_) => "postback",
            Self::Referral(_) => "referral",
            Self::Optin(_) => "optin",
            Self::AccountLinking(_) => "account_linking",
            Self::Delivery(_) => "delivery",
            Self::Read(_) => "read",
            Self::Reaction(_) => "reaction",
            Self::MessageEdit(_) => "message_edit",
            Self::PassThreadControl(_) => "pass_thread_control",
            Self::TakeThreadControl(_) => "take_thread_control",
            Self::RequestThreadControl(_) => "request_thread_control",
            Self::AppRoles(_) => "app_roles",
            Self::PolicyEnforcement(_) => "policy_enforcement",
            Self::Unknown { key, .. } => key.as_deref().unwrap_or("unknown"),
        }
    }

    fn from_key(key: &str, value: Value) -> Result<Self, serde_json::Error> {
        fn typed<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, serde_json::Error> {
            serde_json::from_value(value)
        }
        Ok(match key {
            "message" => Self::Message(typed(value)?),
            "postback" => Self::Postback(typed(value)?),
            "referral" => Self::Referral(typed(value)?),
            "optin" => Self::Optin(typed(value)?),
            "account_linking" => Self::AccountLinking(typed(value)?),
            "delivery" => Self::Delivery(typed(value)?),
            "read" => Self::Read(typed(value)?),
            "reaction" => Self::Reaction(typed(value)?),
            "message_edit" => Self::MessageEdit(typed(value)?),
            "pass_thread_control" => Self::PassThreadControl(typed(value)?),
            "take_thread_control" => Self::TakeThreadControl(typed(value)?),
            "request_thread_control" => Self::RequestThreadControl(typed(value)?),
            "app_roles" => Self::AppRoles(typed(value)?),
            "policy_enforcement" => Self::PolicyEnforcement(typed(value)?),
            _ => {
                return Err(serde_json::Error::custom("unknown kind"));
            }
        })
    }

    fn to_value(&self) -> Result<Value, serde_json::Error> {
        match self {
            Self::Message(v) => serde_json::to_value(v),
            Self::Postback(v) => serde_json::to_value(v),
            Self::Referral(v) => serde_json::to_value(v),
            Self::Optin(v) => serde_json::to_value(v),
            Self::AccountLinking(v) => serde_json::to_value(v),
            Self::Delivery(v) => serde_json::to_value(v),
            Self::Read(v) => serde_json::to_value(v),
            Self::Reaction(v) => serde_json::to_value(v),
            Self::MessageEdit(v) => serde_json::to_value(v),
            Self::PassThreadControl(v) => serde_json::to_value(v),
            Self::TakeThreadControl(v) => serde_json::to_value(v),
            Self::RequestThreadControl(v) => serde_json::to_value(v),
            Self::AppRoles(v) => serde_json::to_value(v),
            Self::PolicyEnforcement(v) => serde_json::to_value(v),
            Self::Unknown { value, .. } => Ok(value.clone()),
        }
    }
}

impl Event {
    /// The person this event is about: the sender, except on echoes, where the
    /// sender is the Page and the person is the recipient.
    pub fn user(&self) -> Option<&Party> {
        match &self.kind {
            EventKind::Message(m) if m.is_echo => self.recipient.as_ref(),
            _ => self.sender.as_ref(),
        }
    }

    /// The Page the event belongs to, when the event names one (echoes name it as sender).
    pub fn page_id(&self) -> Option<&str> {
        let page = match &self.kind {
            EventKind::Message(m) if m.is_echo => self.sender.as_ref(),
            _ => self.recipient.as_ref(),
        };
        page.and_then(|p| p.id.as_deref())
    }
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut map = Map::deserialize(deserializer)?;
        // A field of an unexpected shape is kept verbatim in `extra` (and written
        // back from there) rather than failing the event.
        let mut malformed = Map::new();
        let sender = take_typed(&mut map, &mut malformed, "sender");
        let recipient = take_typed(&mut map, &mut malformed, "recipient");
        let timestamp = take_typed(&mut map, &mut malformed, "timestamp");

        let kind = match find_kind(|k| map.contains_key(k)) {
            Some((kind, spelled)) => {
                let value = map.remove(spelled).unwrap_or(Value::Null);
                // A known kind whose content we cannot read is kept as Unknown,
                // whole, rather than failing the batch it arrived in.
                EventKind::from_key(kind, value.clone()).unwrap_or(EventKind::Unknown {
                    key: Some(kind.to_owned()),
                    value,
                })
            }
            None => match map.keys().next().cloned() {
                Some(key) => EventKind::Unknown {
                    value: map.remove(&key).unwrap_or(Value::Null),
                    key: Some(key),
                },
                None => EventKind::Unknown {
                    key: None,
                    value: Value::Null,
                },
            },
        };
        map.extend(malformed);
        Ok(Self {
            sender,
            recipient,
            timestamp,
            kind,
            extra: map,
        })
    }
}

/// Reads a field that is present (even as `null`) as `Some`.
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

fn take_typed<T: serde::de::DeserializeOwned>(
    map: &mut Map<String, Value>,
    malformed: &mut Map<String, Value>,
    key: &str,
) -> Option<T> {
    let value = map.remove(key)?;
    match serde_json::from_value(value.clone()) {
        Ok(v) => Some(v),
        Err(_) => {
            malformed.insert(key.to_owned(), value);
            None
        }
    }
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error as _, SerializeMap};
        let mut map = serializer.serialize_map(None)?;
        if let Some(sender) = &self.sender {
            map.serialize_entry("sender", sender)?;
        }
        if let Some(recipient) = &self.recipient {
            map.serialize_entry("recipient", recipient)?;
        }
        if let Some(ts) = &self.timestamp {
            map.serialize_entry("timestamp", ts)?;
        }
        match &self.kind {
            EventKind::Unknown { key: None, .. } => {}
            kind => {
                let value = kind.to_value().map_err(S::Error::custom)?;
                map.serialize_entry(kind.as_str(), &value)?;
            }
        }
        for (k, v) in &self.extra {
            // An envelope field held in `extra` is one that did not parse.
            let parsed = match k.as_str() {
                "sender" => self.sender.is_some(),
                "recipient" => self.recipient.is_some(),
                "timestamp" => self.timestamp.is_some(),
                _ => false,
            };
            if !parsed {
                map.serialize_entry(k, v)?;
            }
        }
        map.end()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub mid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quick_reply: Option<QuickReply>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<ReplyTo>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
    /// True on the copy of a message the Page sent (`message_echoes` field).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_echo: bool,
    /// On echoes: the app that sent the message (absent for Page Inbox replies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<AppId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuickReply {
    pub payload: String,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplyTo {
    pub mid: String,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `image`, `video`, `audio`, `file`, `template`, `fallback`, `location`, ... The
/// payload's shape depends on the type (url, sticker_id, coordinates, elements) and
/// is kept as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    #[serde(rename = "type")]
    pub kind: String,
    /// `None` when absent; `Some(Value::Null)` when Meta sent `"payload": null`
    /// (fallback attachments do), so writing the event back gives what came in.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub payload: Option<Value>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Postback {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    /// Get Started from an m.me link or an ad carries the entry point here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referral: Option<Referral>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Referral {
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// `SHORTLINK`, `ADS`, `CUSTOMER_CHAT_PLUGIN`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// `OPEN_THREAD`, ...
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(
        default,
        deserialize_with = "optional_id",
        skip_serializing_if = "Option::is_none"
    )]
    pub ad_id: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// The three optins share one key and are told apart by `type`: see [`Optin::variant`].
/// `Debug` never shows the notification tokens: they let a Page message the person.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Optin {
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Plugin optins: the `data-ref` of "Send to Messenger" / the checkbox.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    #[serde(
        default,
        deserialize_with = "optional_id",
        skip_serializing_if = "Option::is_none"
    )]
    pub user_ref: Option<String>,
    /// OTN and recurring optins: what the request carried (our topic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub one_time_notif_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification_messages_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_expiry_timestamp: Option<Timestamp>,
    /// `STOP NOTIFICATIONS` / `RESUME NOTIFICATIONS`, as Meta spelt it (read it
    /// through [`Optin::variant`], which knows every spelling).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification_messages_status: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// The optin, read according to its `type`. `Debug` never shows the token.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum OptinVariant<'a> {
    /// "Notify me" tapped on a one-time notification request.
    OneTimeNotification { topic: &'a str, token: &'a str },
    /// Recurring notifications (deprecated by Meta in February 2026, still delivered).
    Recurring {
        topic: Option<&'a str>,
        token: Option<&'a str>,
        expires_at: Option<Timestamp>,
        /// Absent on the optin that first grants the token.
        status: Option<NotificationStatus>,
    },
    /// "Send to Messenger" or checkbox plugin.
    Plugin {
        reference: Option<&'a str>,
        user_ref: Option<&'a str>,
    },
    /// An OTN optin without its token or payload, or a `type` we do not know.
    Other,
}

impl std::fmt::Debug for Optin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = |t: &Option<String>| t.as_ref().map(|_| "<redacted>");
        f.debug_struct("Optin")
            .field("kind", &self.kind)
            .field("reference", &self.reference)
            .field("user_ref", &self.user_ref)
            .field("payload", &self.payload)
            .field("title", &self.title)
            .field(
                "one_time_notif_token",
                &redacted(&self.one_time_notif_token),
            )
            .field(
                "notification_messages_token",
                &redacted(&self.notification_messages_token),
            )
            .field("token_expiry_timestamp", &self.token_expiry_timestamp)
            .field(
                "notification_messages_status",
                &self.notification_messages_status,
            )
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for OptinVariant<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::OneTimeNotification { topic, .. } => f
                .debug_struct("OneTimeNotification")
                .field("topic", topic)
                .field("token", &"<redacted>")
                .finish(),
            Self::Recurring {
                topic,
                expires_at,
                status,
                ..
            } => f
                .debug_struct("Recurring")
                .field("topic", topic)
                .field("token", &"<redacted>")
                .field("expires_at", expires_at)
                .field("status", status)
                .finish(),
            Self::Plugin {
                reference,
                user_ref,
            } => f
                .debug_struct("Plugin")
                .field("reference", reference)
                .field("user_ref", user_ref)
                .finish(),
            Self::Other => f.write_str("Other"),
        }
    }
}

impl Optin {
    pub fn variant(&self) -> OptinVariant<'_> {
        match self.kind.as_deref() {
            Some("one_time_notif_req") => match (&self.payload, &self.one_time_notif_token) {
                (Some(topic), Some(token)) => OptinVariant::OneTimeNotification { topic, token },
                _ => OptinVariant::Other,
            },
            Some("notification_messages") => OptinVariant::Recurring {
                topic: self.payload.as_deref(),
                token: self.notification_messages_token.as_deref(),
                expires_at: self.token_expiry_timestamp,
                status: self
                    .notification_messages_status
                    .as_deref()
                    .map(NotificationStatus::parse),
            },
            None => OptinVariant::Plugin {
                reference: self.reference.as_deref(),
                user_ref: self.user_ref.as_deref(),
            },
            Some(_) => OptinVariant::Other,
        }
    }
}

/// `notification_messages_status` of a recurring notifications optin. Meta's
/// reference spells it with a space; some deliveries (and frameworks) with an
/// underscore: both are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotificationStatus {
    /// `STOP NOTIFICATIONS`: the person turned the notifications off.
    Stop,
    /// `RESUME NOTIFICATIONS`: the person turned them on again.
    Resume,
    /// A status this model does not know.
    Unknown,
}

impl NotificationStatus {
    pub fn parse(status: &str) -> Self {
        match status {
            "STOP NOTIFICATIONS" | "STOP_NOTIFICATIONS" => Self::Stop,
            "RESUME NOTIFICATIONS" | "RESUME_NOTIFICATIONS" => Self::Resume,
            _ => Self::Unknown,
        }
    }

    /// Whether the token of a recurring optin with this status may be used: with no
    /// status (the optin that grants it) or RESUME. STOP, and a status we do not
    /// know, fail closed: better a notification not sent than one the person
    /// stopped.
    pub fn allows_messages(status: Option<Self>) -> bool {
        matches!(status, None | Some(Self::Resume))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountLinking {
    /// `linked` or `unlinked`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_code: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mids: Option<Vec<String>>,
    pub watermark: Timestamp,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Read {
    pub watermark: Timestamp,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reaction {
    /// `react` or `unreact`.
    pub action: String,
    pub mid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reaction: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emoji: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageEdit {
    pub mid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    pub num_edit: u32,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PassThreadControl {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_owner_app_id: Option<AppId>,
    pub new_owner_app_id: AppId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TakeThreadControl {
    pub previous_owner_app_id: AppId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_owner_app_id: Option<AppId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestThreadControl {
    pub requested_owner_app_id: AppId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyEnforcement {
    /// `warning`, `block` or `unblock`.
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}
