//! The webhook's hot path: split a delivery into its events without building the
//! typed model, keeping each event's bytes exactly as Meta sent them, and derive
//! from each event the two things the queue needs: the thread it belongs to (FIFO
//! group) and a key that names the event itself (deduplication).
//!
//! The key never depends on `entry.time`: Meta redelivers the same event inside a
//! new envelope with a new `entry.time`, and the key must be the same both times.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

pub use crate::ids::LooseId;

/// `{"object": ..., "entry": [...]}` with every event left unparsed.
#[derive(Debug, Deserialize)]
pub struct RawEnvelope<'a> {
    #[serde(borrow)]
    pub object: Cow<'a, str>,
    #[serde(borrow)]
    pub entry: Vec<RawEntry<'a>>,
}

#[derive(Debug, Deserialize)]
pub struct RawEntry<'a> {
    /// The Page, read like every other id: a string or a number, as the typed
    /// [`crate::Entry`] reads it, so one odd entry does not quarantine the body.
    #[serde(borrow, default)]
    pub id: Option<LooseId<'a>>,
    #[serde(borrow, default)]
    pub messaging: Vec<&'a RawValue>,
    #[serde(borrow, default)]
    pub standby: Vec<&'a RawValue>,
}

/// Which array of the entry an event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Messaging,
    Standby,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Messaging => "messaging",
            Self::Standby => "standby",
        }
    }
}

/// The few fields of an event that routing and deduplication need, borrowed from
/// the event's bytes. Each part is read on its own and is simply absent when it
/// does not have the expected shape, so one odd field never hides the others.
#[derive(Debug, Default)]
struct EventHead<'a> {
    sender: Option<PartyHead<'a>>,
    recipient: Option<PartyHead<'a>>,
    timestamp: Option<&'a RawValue>,
    message: Option<MessageHead<'a>>,
    postback: Option<PostbackHead<'a>>,
    reaction: Option<ReactionHead<'a>>,
    message_edit: Option<EditHead<'a>>,
    delivery: Option<WatermarkHead<'a>>,
    read: Option<WatermarkHead<'a>>,
    optin: Option<OptinHead<'a>>,
    /// The checkbox plugin's `user_ref` in the optin, read on its own (as the typed
    /// model reads it): an odd field beside it does not hide the person.
    optin_user_ref: Option<LooseId<'a>>,
    /// The kind, when it is one we know.
    known_kind: Option<&'static str>,
    /// The first key besides sender/recipient/timestamp, for kinds we do not know.
    other_key: Option<Cow<'a, str>>,
}

impl<'a> EventHead<'a> {
    fn read(event: &'a RawValue) -> Self {
        let Ok(fields) = serde_json::from_str::<BTreeMap<Cow<'a, str>, &'a RawValue>>(event.get())
        else {
            return Self::default();
        };
        // Every part is an object. serde's derived structs also read an array as
        // their fields in order; the typed model does not, and neither does this.
        fn part<'a, T: Deserialize<'a>>(raw: Option<&&'a RawValue>) -> Option<T> {
            raw.filter(|r| r.get().starts_with('{'))
                .and_then(|r| serde_json::from_str(r.get()).ok())
        }
        #[derive(Deserialize)]
        struct UserRef<'a> {
            #[serde(borrow)]
            user_ref: Option<LooseId<'a>>,
        }
        let known_kind = crate::event::find_kind(|k| fields.contains_key(k)).map(|(kind, _)| kind);
        // Read only on an optin, as the typed model reads it.
        let optin = fields.get("optin").filter(|_| known_kind == Some("optin"));
        let other_key = fields
            .keys()
            .find(|k| !matches!(k.as_ref(), "sender" | "recipient" | "timestamp"))
            .cloned();
        Self {
            sender: part(fields.get("sender")),
            recipient: part(fields.get("recipient")),
            timestamp: fields.get("timestamp").copied(),
            message: part(fields.get("message")),
            postback: part(fields.get("postback")),
            reaction: part(fields.get("reaction")),
            message_edit: part(fields.get("message_edit")),
            delivery: part(fields.get("delivery")),
            read: part(fields.get("read")),
            optin: part(optin),
            optin_user_ref: part::<UserRef<'a>>(optin).and_then(|o| o.user_ref),
            known_kind,
            other_key,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PartyHead<'a> {
    #[serde(borrow)]
    id: Option<LooseId<'a>>,
    #[serde(borrow)]
    user_ref: Option<LooseId<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct MessageHead<'a> {
    #[serde(borrow)]
    mid: Option<Cow<'a, str>>,
    is_echo: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PostbackHead<'a> {
    #[serde(borrow)]
    mid: Option<Cow<'a, str>>,
    #[serde(borrow)]
    payload: Option<&'a RawValue>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ReactionHead<'a> {
    #[serde(borrow)]
    mid: Option<Cow<'a, str>>,
    #[serde(borrow)]
    action: Option<Cow<'a, str>>,
    #[serde(borrow)]
    reaction: Option<Cow<'a, str>>,
    #[serde(borrow)]
    emoji: Option<Cow<'a, str>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct EditHead<'a> {
    #[serde(borrow)]
    mid: Option<Cow<'a, str>>,
    #[serde(borrow)]
    num_edit: Option<&'a RawValue>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WatermarkHead<'a> {
    #[serde(borrow)]
    watermark: Option<&'a RawValue>,
    #[serde(borrow)]
    mids: Option<Vec<Cow<'a, str>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct OptinHead<'a> {
    #[serde(borrow, rename = "type")]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    one_time_notif_token: Option<Cow<'a, str>>,
    #[serde(borrow)]
    notification_messages_token: Option<Cow<'a, str>>,
    #[serde(borrow)]
    notification_messages_status: Option<Cow<'a, str>>,
    #[serde(borrow, rename = "ref")]
    reference: Option<Cow<'a, str>>,
}

/// What routing learnt about one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routing {
    /// The event's kind, as its JSON key (`unknown` if it is none we know).
    pub kind: &'static str,
    /// The Page: `entry.id`, else the event's own Page field.
    pub page_id: Option<String>,
    /// The person: PSID, or the checkbox plugin's `user_ref`. `None` for page-level
    /// events (`app_roles`, `policy_enforcement`).
    pub user: Option<String>,
    /// Identifies the event itself; equal for every redelivery of it.
    pub key: EventKey,
}

impl Routing {
    /// The SQS FIFO group, `<page_id>:<psid or user_ref>`: one thread's events stay in
    /// order, different threads proceed in parallel. Page-level events use `page`
    /// in place of the person. SQS allows at most 128 characters of ASCII letters,
    /// digits and punctuation; a part outside that (a long or exotic `user_ref`) is
    /// replaced by a digest of itself so the group stays stable (each part is at
    /// most 60 characters, so the group stays within SQS's 128).
    pub fn group_id(&self) -> String {
        let page = self.page_id.as_deref().unwrap_or("unknown-page");
        let user = self.user.as_deref().unwrap_or("page");
        thread_group(page, user)
    }
}

/// The FIFO group of a thread, as [`Routing::group_id`] makes it.
pub fn thread_group(page: &str, user: &str) -> String {
    format!("{}:{}", sqs_safe(page), sqs_safe(user))
}

fn sqs_safe(part: &str) -> Cow<'_, str> {
    let ok = part.len() <= 60
        && !part.is_empty()
        && part.bytes().all(|b| b.is_ascii_graphic() && b != b':');
    if ok {
        Cow::Borrowed(part)
    } else {
        Cow::Owned(format!("h{}", &hex_sha256(part.as_bytes())[..40]))
    }
}

fn hex_sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A key naming one event, the same for every delivery of it: the `mid` where the
/// event has one, otherwise kind, Page, person, timestamp and the kind's own ids.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct EventKey(String);

impl EventKey {
    /// A key from its readable form, as [`route`] makes it and the queue carries it.
    pub fn from_readable(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    /// The readable form, e.g. `message:m_abc` or `read:123:456:1700000000000`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// 64 hex characters: fits SQS's `MessageDeduplicationId` (at most 128 characters)
    /// whatever the ids inside the key look like.
    pub fn digest(&self) -> String {
        hex_sha256(self.0.as_bytes())
    }
}

impl fmt::Debug for EventKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventKey({})", self.0)
    }
}

impl fmt::Display for EventKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Reads the routing of one event. `page_id` is the entry's id, when it had one.
///
/// Never fails: an event that is not an object, or whose fields have unexpected
/// types, is routed by what could be read, and keyed by a digest of its bytes.
pub fn route(page_id: Option<&str>, event: &RawValue) -> Routing {
    let head = EventHead::read(event);
    let kind = head.known_kind.unwrap_or("unknown");
    let is_echo = head.message.as_ref().is_some_and(|m| m.is_echo);

    // On echoes the sender is the Page and the recipient the person.
    let (page_party, user_party) = if is_echo {
        (head.sender.as_ref(), head.recipient.as_ref())
    } else {
        (head.recipient.as_ref(), head.sender.as_ref())
    };
    let page_id = page_id
        .map(str::to_owned)
        .or_else(|| page_party.and_then(|p| p.id.as_deref().map(str::to_owned)));
    let user = user_party
        .and_then(|p| p.id.as_deref().or(p.user_ref.as_deref()))
        .or(head.optin_user_ref.as_deref())
        .map(str::to_owned);

    let key = head.key(kind, page_id.as_deref(), user.as_deref(), event.get());
    Routing {
        kind,
        page_id,
        user,
        key,
    }
}

impl EventHead<'_> {
    fn key(&self, kind: &str, page: Option<&str>, user: Option<&str>, raw: &str) -> EventKey {
        let page = page.unwrap_or("-");
        let user = user.unwrap_or("-");
        let ts = self.timestamp.map_or("-", |t| t.get());
        let by_mid = |prefix: &str, mid: &Option<Cow<'_, str>>| {
            mid.as_deref()
                .filter(|m| !m.is_empty())
                .map(|m| format!("{prefix}:{m}"))
        };
        let key = match kind {
            "message" => self
                .message
                .as_ref()
                .and_then(|m| by_mid("message", &m.mid)),
            "postback" => self.postback.as_ref().map(|p| {
                by_mid("postback", &p.mid).unwrap_or_else(|| {
                    let payload = p.payload.map_or("", |v| v.get());
                    let digest = &hex_sha256(payload.as_bytes())[..16];
                    format!("postback:{page}:{user}:{ts}:{digest}")
                })
            }),
            // A reaction names the message reacted to; the same person may react,
            // unreact and react again to it.
            "reaction" => self.reaction.as_ref().map(|r| {
                let mid = r.mid.as_deref().unwrap_or("-");
                let action = r.action.as_deref().unwrap_or("-");
                let what = r.reaction.as_deref().or(r.emoji.as_deref()).unwrap_or("-");
                format!("reaction:{mid}:{action}:{what}:{user}:{ts}")
            }),
            "message_edit" => self.message_edit.as_ref().map(|e| {
                let mid = e.mid.as_deref().unwrap_or("-");
                let n = e.num_edit.map_or("-", |v| v.get());
                format!("message_edit:{mid}:{n}")
            }),
            "delivery" | "read" => {
                let head = if kind == "read" {
                    &self.read
                } else {
                    &self.delivery
                };
                head.as_ref().map(|w| {
                    let watermark = w.watermark.map_or("-", |v| v.get());
                    let mids = w.mids.as_ref().map_or(String::new(), |mids| {
                        let joined = mids.join(",");
                        format!(":{}", &hex_sha256(joined.as_bytes())[..16])
                    });
                    format!("{kind}:{page}:{user}:{watermark}{mids}")
                })
            }
            "optin" => self.optin.as_ref().map(|o| {
                let variant = o.kind.as_deref().unwrap_or("plugin");
                let id = o
                    .one_time_notif_token
                    .as_deref()
                    .or(o.notification_messages_token.as_deref())
                    .or(o.reference.as_deref())
                    .unwrap_or("-");
                let status = o.notification_messages_status.as_deref().unwrap_or("");
                let digest = &hex_sha256(format!("{id}|{status}").as_bytes())[..16];
                format!("optin:{variant}:{page}:{user}:{ts}:{digest}")
            }),
            _ => None,
        };
        let key = key.unwrap_or_else(|| {
            if kind == "unknown" {
                // A kind we do not know may carry no id we could pick out: name it by
                // its key and its bytes, so two new kinds at one instant stay two events.
                let name = self.other_key.as_deref().unwrap_or("none");
                let digest = &hex_sha256(raw.as_bytes())[..32];
                format!("unknown:{name}:{page}:{user}:{ts}:{digest}")
            } else {
                format!("{kind}:{page}:{user}:{ts}")
            }
        });
        EventKey(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(json: &str) -> Box<RawValue> {
        RawValue::from_string(json.to_owned()).unwrap()
    }

    #[test]
    fn message_is_keyed_by_mid_and_grouped_by_sender() {
        let r = route(
            Some("111"),
            &raw(
                r#"{"sender":{"id":"222"},"recipient":{"id":"111"},"timestamp":5,"message":{"mid":"m_1","text":"hi"}}"#,
            ),
        );
        assert_eq!(r.kind, "message");
        assert_eq!(r.key.as_str(), "message:m_1");
        assert_eq!(r.group_id(), "111:222");
    }

    #[test]
    fn echo_is_grouped_by_its_recipient_the_person() {
        let r = route(
            Some("111"),
            &raw(
                r#"{"sender":{"id":"111"},"recipient":{"id":"222"},"timestamp":5,"message":{"mid":"m_2","is_echo":true,"app_id":42}}"#,
            ),
        );
        assert_eq!(r.group_id(), "111:222");
    }

    #[test]
    fn checkbox_optin_without_sender_is_grouped_by_user_ref() {
        let r = route(
            Some("111"),
            &raw(
                r#"{"recipient":{"id":"111"},"timestamp":5,"optin":{"ref":"cart","user_ref":"ref-abc"}}"#,
            ),
        );
        assert_eq!(r.user.as_deref(), Some("ref-abc"));
        assert_eq!(r.group_id(), "111:ref-abc");
    }

    #[test]
    fn page_level_events_share_the_page_group() {
        let r = route(
            Some("111"),
            &raw(
                r#"{"recipient":{"id":"111"},"timestamp":5,"policy_enforcement":{"action":"block","reason":"spam"}}"#,
            ),
        );
        assert_eq!(r.kind, "policy_enforcement");
        assert_eq!(r.group_id(), "111:page");
        assert_eq!(r.key.as_str(), "policy_enforcement:111:-:5");
    }

    #[test]
    fn exotic_user_refs_become_a_stable_valid_group() {
        let long = "é".repeat(200);
        let event = format!(r#"{{"recipient":{{"id":"111"}},"optin":{{"user_ref":"{long}"}}}}"#);
        let a = route(Some("111"), &raw(&event)).group_id();
        let b = route(Some("111"), &raw(&event)).group_id();
        assert_eq!(a, b);
        assert!(a.len() <= 128 && a.bytes().all(|b| b.is_ascii_graphic()));
    }

    #[test]
    fn unreadable_events_are_keyed_by_their_bytes() {
        let a = route(None, &raw("[1,2,3]"));
        let b = route(None, &raw("[1,2,4]"));
        assert_eq!(a.kind, "unknown");
        assert_ne!(a.key, b.key);
        assert_eq!(a.group_id(), "unknown-page:page");
    }

    #[test]
    fn two_unknown_kinds_at_one_instant_are_two_events() {
        let a = route(
            Some("1"),
            &raw(
                r#"{"sender":{"id":"2"},"recipient":{"id":"1"},"timestamp":5,"response_feedback":{"x":1}}"#,
            ),
        );
        let b = route(
            Some("1"),
            &raw(
                r#"{"sender":{"id":"2"},"recipient":{"id":"1"},"timestamp":5,"messaging_feedback":{"x":1}}"#,
            ),
        );
        assert_eq!(a.kind, "unknown");
        assert_ne!(a.key, b.key);
        assert!(
            a.key
                .as_str()
                .starts_with("unknown:response_feedback:1:2:5:")
        );
    }

    #[test]
    fn numeric_entry_ids_are_read_like_string_ids() {
        // Found by fuzz/fuzz_targets/webhook_body.rs: the typed `Entry` reads a
        // numeric `entry.id`, the splitter refused the whole body for it.
        let body = r#"{"object":"page","entry":[{"id":111,"time":9,"messaging":[{"sender":{"id":"222"},"recipient":{"id":"111"},"timestamp":5,"message":{"mid":"m_1"}}]},{"id":null,"time":9,"standby":[]}]}"#;
        let envelope: RawEnvelope<'_> = serde_json::from_str(body).unwrap();
        assert_eq!(envelope.entry[0].id.as_deref(), Some("111"));
        assert_eq!(envelope.entry[1].id.as_deref(), None);
        let r = route(
            envelope.entry[0].id.as_deref(),
            envelope.entry[0].messaging[0],
        );
        assert_eq!(r.group_id(), "111:222");
        let typed: crate::Envelope =
            serde_json::from_str(body.replace("null", "\"1\"").as_str()).unwrap();
        assert_eq!(typed.entry[0].id.as_str(), "111");
        assert!(
            serde_json::from_str::<RawEnvelope<'_>>(r#"{"object":"page","entry":[{"id":-1}]}"#)
                .is_err()
        );
    }

    #[test]
    fn one_odd_field_does_not_hide_the_others() {
        // A numeric sender id and a malformed `read` still route to the thread.
        let r = route(
            Some("1"),
            &raw(
                r#"{"sender":{"id":2},"recipient":{"id":"1"},"timestamp":"soon","message":{"mid":"m_9","attachments":"x"}}"#,
            ),
        );
        assert_eq!(r.group_id(), "1:2");
        assert_eq!(r.key.as_str(), "message:m_9");
    }

    #[test]
    fn parties_are_objects_and_an_optins_user_ref_is_read_on_its_own() {
        // As the typed model reads them: an array is not a party, and a numeric
        // `user_ref` beside an odd `ref` still names the person.
        let r = route(
            Some("1"),
            &raw(r#"{"sender":[2],"recipient":{"id":"1"},"timestamp":5,"read":{"watermark":4}}"#),
        );
        assert_eq!(r.user, None);
        let r = route(
            Some("1"),
            &raw(r#"{"recipient":{"id":1},"timestamp":5,"optin":{"ref":5,"user_ref":77}}"#),
        );
        assert_eq!(r.user.as_deref(), Some("77"));
        let typed: crate::Event = serde_json::from_str(
            r#"{"recipient":{"id":1},"timestamp":5,"optin":{"ref":5,"user_ref":77}}"#,
        )
        .unwrap();
        assert!(
            matches!(typed.kind, crate::EventKind::Optin(o) if o.user_ref.as_deref() == Some("77"))
        );
    }

    #[test]
    fn reactions_to_one_message_at_different_times_are_different_events() {
        let at = |ts: u64, action: &str| {
            route(
                Some("1"),
                &raw(&format!(
                    r#"{{"sender":{{"id":"2"}},"recipient":{{"id":"1"}},"timestamp":{ts},"reaction":{{"mid":"m","action":"{action}","reaction":"love"}}}}"#
                )),
            )
            .key
        };
        assert_ne!(at(1, "react"), at(2, "unreact"));
        assert_ne!(at(1, "react"), at(3, "react"));
        assert_eq!(at(1, "react"), at(1, "react"));
    }
}

/// Whether every value of `raw` can be read, numbers included. The envelope is read
/// without interpreting the events, and that reading accepts JSON that the
/// processor's model (or any `serde_json::Value`) cannot read: a number no `f64`
/// holds (`1e400`), a lone surrogate escape, nesting over 128 levels. Checked
/// without allocating; the error says what and where, never the content.
pub fn check_readable(raw: &RawValue) -> Result<(), serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(raw.get());
    Readable::deserialize(&mut de)?;
    de.end()
}

/// Visits every value through `deserialize_any`, which reads numbers as numbers.
struct Readable;

impl<'de> Deserialize<'de> for Readable {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ReadableVisitor)
    }
}

struct ReadableVisitor;

impl<'de> serde::de::Visitor<'de> for ReadableVisitor {
    type Value = Readable;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Readable, E> {
        Ok(Readable)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Readable, E> {
        Ok(Readable)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Readable, E> {
        Ok(Readable)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Readable, E> {
        Ok(Readable)
    }
    fn visit_str<E>(self, _: &str) -> Result<Readable, E> {
        Ok(Readable)
    }
    fn visit_unit<E>(self) -> Result<Readable, E> {
        Ok(Readable)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Readable, A::Error> {
        while seq.next_element::<Readable>()?.is_some() {}
        Ok(Readable)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Readable, A::Error> {
        while map
            .next_entry::<serde::de::IgnoredAny, Readable>()?
            .is_some()
        {}
        Ok(Readable)
    }
}

#[cfg(test)]
mod readable_tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).unwrap()
    }

    #[test]
    fn numbers_beyond_f64_are_not_readable() {
        for ok in [
            r#"{"a":[1,-2,3.5e10,1e308,null,true,"x\u00e4"],"b":{}}"#,
            "18446744073709551615",
            "-9223372036854775808",
        ] {
            assert!(check_readable(&raw(ok)).is_ok(), "{ok}");
        }
        for bad in [
            r#"{"timestamp":1e400}"#,
            r#"[1,{"a":-1e309}]"#,
            "10000000000000E0296",
        ] {
            let e = check_readable(&raw(bad)).unwrap_err();
            assert!(e.to_string().contains("number out of range"), "{bad}: {e}");
            assert!(serde_json::from_str::<serde_json::Value>(bad).is_err());
        }
    }
}
