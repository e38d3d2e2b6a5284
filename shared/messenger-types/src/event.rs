//! The typed model of a webhook delivery: envelope, entries and every event kind of
//! the Messenger Platform.
//!
//! Parsing is tolerant by design. Meta adds event kinds and fields over time, and a
//! batch must never fail because of one of them: an event whose kind is unknown is
//! kept whole as [`EventKind::Unknown`], and fields we do not model are kept in
//! `extra` maps, so serialising a parsed event gives back the JSON it came from.
//!
//! Every shape Meta has sent is read, and written back in its current form: ids
//! given as numbers (written as strings), timestamps in seconds (written in
//! milliseconds), the older key `policy-enforcement`. What cannot be read is never
//! silent: each such field is listed in [`Event::unread`]. A field the kind can do
//! without (`"attachments": null`, a malformed `quick_reply`) is set aside, kept
//! verbatim in the kind's `extra`, and the rest of the kind is read; a kind missing
//! what it cannot do without (a message without its `mid`) is kept whole as
//! [`EventKind::Unknown`] under its key.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::DeserializeOwned;
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
    /// What could not be read, in the order it was found; empty for an event read
    /// whole. Not written back: the fields themselves are kept where they were.
    pub unread: Vec<Unread>,
}

/// A field of an event that could not be read. Names the field and what was wrong
/// with it, never its content (it may be a person's text or a token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unread {
    /// From the event's top level, the kind under its current key: `sender`,
    /// `message.mid`, `message.attachments[1].type`, `policy_enforcement`.
    pub field: String,
    pub problem: Problem,
    /// Whether the event's kind was read without this field. `false` when the
    /// kind could not be read at all (it is then [`EventKind::Unknown`]).
    pub kind_read: bool,
}

/// What was wrong with an [`Unread`] field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// A field the kind cannot do without is absent.
    Missing,
    /// `null` where a value belongs.
    Null,
    /// A value of another type, or out of range.
    Invalid,
}

impl Problem {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Null => "null",
            Self::Invalid => "invalid",
        }
    }
}

impl fmt::Display for Unread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let effect = if self.kind_read {
            "read without it"
        } else {
            "the kind could not be read"
        };
        write!(f, "{}: {}; {effect}", self.field, self.problem.as_str())
    }
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

    /// Reads the content of a known kind (`kind` is its current key), noting in
    /// `unread` what it read without; `Err` names what it could not do without.
    fn read(kind: &str, value: Value, unread: &mut Vec<Unread>) -> Result<Self, Unread> {
        Ok(match kind {
            "message" => Self::Message(read_kind(kind, value, unread)?),
            "postback" => Self::Postback(read_kind(kind, value, unread)?),
            "referral" => Self::Referral(read_kind(kind, value, unread)?),
            "optin" => Self::Optin(read_kind(kind, value, unread)?),
            "account_linking" => Self::AccountLinking(read_kind(kind, value, unread)?),
            "delivery" => Self::Delivery(read_kind(kind, value, unread)?),
            "read" => Self::Read(read_kind(kind, value, unread)?),
            "reaction" => Self::Reaction(read_kind(kind, value, unread)?),
            "message_edit" => Self::MessageEdit(read_kind(kind, value, unread)?),
            "pass_thread_control" => Self::PassThreadControl(read_kind(kind, value, unread)?),
            "take_thread_control" => Self::TakeThreadControl(read_kind(kind, value, unread)?),
            "request_thread_control" => Self::RequestThreadControl(read_kind(kind, value, unread)?),
            "app_roles" => Self::AppRoles(read_kind(kind, value, unread)?),
            "policy_enforcement" => Self::PolicyEnforcement(read_kind(kind, value, unread)?),
            _ => {
                return Err(Unread {
                    field: kind.to_owned(),
                    problem: Problem::Invalid,
                    kind_read: false,
                });
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
        let mut unread = Vec::new();
        // A field of an unexpected shape is kept verbatim in `extra` (and written
        // back from there) rather than failing the event.
        let mut malformed = Map::new();
        let sender = take_typed(&mut map, &mut malformed, &mut unread, "sender");
        let recipient = take_typed(&mut map, &mut malformed, &mut unread, "recipient");
        let timestamp = take_typed(&mut map, &mut malformed, &mut unread, "timestamp");

        let kind = match find_kind(|k| map.contains_key(k)) {
            Some((kind, spelled)) => {
                let value = map.remove(spelled).unwrap_or(Value::Null);
                // A known kind whose content we cannot read is kept as Unknown,
                // whole, rather than failing the batch it arrived in.
                EventKind::read(kind, value.clone(), &mut unread).unwrap_or_else(|why| {
                    unread.push(why);
                    EventKind::Unknown {
                        key: Some(kind.to_owned()),
                        value,
                    }
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
            unread,
        })
    }
}

/// Reads a field that is present (even as `null`) as `Some`.
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

fn take_typed<T: DeserializeOwned>(
    map: &mut Map<String, Value>,
    malformed: &mut Map<String, Value>,
    unread: &mut Vec<Unread>,
    key: &str,
) -> Option<T> {
    let value = map.remove(key)?;
    match serde_path_to_error::deserialize(&value) {
        Ok(v) => Some(v),
        Err(e) => {
            let (path, problem) = locate(&e, &value);
            unread.push(Unread {
                field: join(key, &path),
                problem,
                kind_read: true,
            });
            malformed.insert(key.to_owned(), value);
            None
        }
    }
}

/// The kinds' structs keep the fields they do not name in `extra`; a field set
/// aside because it could not be read goes there too, so it is written back.
trait Extras {
    const HAS_EXTRA: bool = true;
    fn extra_mut(&mut self) -> Option<&mut Extra>;
}

macro_rules! extras {
    ($($t:ty),*) => {$(
        impl Extras for $t {
            fn extra_mut(&mut self) -> Option<&mut Extra> {
                Some(&mut self.extra)
            }
        }
    )*};
}

extras!(
    Message,
    Postback,
    Referral,
    Optin,
    AccountLinking,
    Delivery,
    Read,
    Reaction,
    MessageEdit,
    PassThreadControl,
    TakeThreadControl,
    RequestThreadControl,
    PolicyEnforcement
);

/// `app_roles` has no place for a field set aside: it is read whole or not at all.
impl Extras for BTreeMap<AppId, Vec<String>> {
    const HAS_EXTRA: bool = false;
    fn extra_mut(&mut self) -> Option<&mut Extra> {
        None
    }
}

/// Reads a kind's content as `T`. A top-level field `T` cannot read is set aside
/// (into `T`'s `extra`, so it is written back) and noted in `unread`, and the rest
/// is read again. When what is left still cannot be read, because a field `T`
/// cannot do without is missing or unreadable, the error names that field.
fn read_kind<T: DeserializeOwned + Extras>(
    kind: &str,
    mut value: Value,
    unread: &mut Vec<Unread>,
) -> Result<T, Unread> {
    let unreadable = |field: String, problem| Unread {
        field,
        problem,
        kind_read: false,
    };
    if !value.is_object() {
        let problem = if value.is_null() {
            Problem::Null
        } else {
            Problem::Invalid
        };
        return Err(unreadable(kind.to_owned(), problem));
    }
    let mut set_aside = Map::new();
    // (top-level field, what was wrong under it)
    let mut noted: Vec<(String, Unread)> = Vec::new();
    loop {
        let e = match serde_path_to_error::deserialize::<_, T>(&value) {
            Ok(mut read) => {
                if let Some(extra) = read.extra_mut() {
                    extra.extend(set_aside);
                }
                unread.extend(noted.into_iter().map(|(_, u)| u));
                return Ok(read);
            }
            Err(e) => e,
        };
        let (path, problem) = locate(&e, &value);
        let field = join(kind, &path);
        let Some(fields) = value.as_object_mut() else {
            return Err(unreadable(field, problem));
        };
        let top = match path.first() {
            Some(Step::Key(top)) if fields.contains_key(top) => top.clone(),
            // The kind itself: a field it cannot do without is missing. If that
            // field was set aside, say what was wrong with it, not that it is missing.
            Some(Step::Key(top)) if path.len() == 1 && problem == Problem::Missing => {
                let earlier = noted.iter().position(|(name, _)| name == top);
                return Err(match earlier {
                    Some(i) => Unread {
                        kind_read: false,
                        ..noted.swap_remove(i).1
                    },
                    None => unreadable(field, problem),
                });
            }
            _ => return Err(unreadable(field, problem)),
        };
        if !T::HAS_EXTRA {
            return Err(unreadable(field, problem));
        }
        if let Some(v) = fields.remove(&top) {
            set_aside.insert(top.clone(), v);
        }
        noted.push((
            top,
            Unread {
                field,
                problem,
                kind_read: true,
            },
        ));
    }
}

/// One step of the path to a field: an object's key or an array's index.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

/// Where in `value` reading failed, and how. A missing field is named by its
/// parent's path and the field's name (serde's "missing field `x`").
fn locate(
    e: &serde_path_to_error::Error<serde_json::Error>,
    value: &Value,
) -> (Vec<Step>, Problem) {
    use serde_path_to_error::Segment;
    let mut path: Vec<Step> = e
        .path()
        .iter()
        .filter_map(|segment| match segment {
            Segment::Map { key } => Some(Step::Key(key.clone())),
            Segment::Seq { index } => Some(Step::Index(*index)),
            Segment::Enum { variant } => Some(Step::Key(variant.clone())),
            Segment::Unknown => None,
        })
        .collect();
    let message = e.inner().to_string();
    if let Some(name) = message
        .strip_prefix("missing field `")
        .and_then(|m| m.strip_suffix('`'))
    {
        path.push(Step::Key(name.to_owned()));
        return (path, Problem::Missing);
    }
    let mut at = Some(value);
    for step in &path {
        at = at.and_then(|v| match step {
            Step::Key(k) => v.get(k),
            Step::Index(i) => v.get(i),
        });
    }
    let problem = match at {
        Some(Value::Null) => Problem::Null,
        _ => Problem::Invalid,
    };
    (path, problem)
}

/// `message.attachments[1].type`, from the top-level name and the path under it.
fn join(top: &str, path: &[Step]) -> String {
    let mut out = top.to_owned();
    for step in path {
        match step {
            Step::Key(k) => {
                out.push('.');
                out.push_str(k);
            }
            Step::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
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
    /// A click-to-Messenger ad's context (`ad_title`, `photo_url`, `video_url`,
    /// `post_id`, `product_id`, ...), as JSON: an object as Meta documents it, kept
    /// as sent whatever it is (`null` included, so the event writes back the same).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub ads_context_data: Option<Value>,
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
