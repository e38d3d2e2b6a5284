//! The Send API's wire format: the body of `POST /{page-id}/messages`, its answer,
//! and the error envelope every Graph call fails with.
//!
//! Serialisation follows Meta's JSON exactly (absent fields are omitted, never sent
//! as `null`), so a request built here can be compared byte for byte with what a
//! fake Graph API receives.
//!
//! ```
//! use messenger_types::send::{OutgoingMessage, SendRequest};
//! use messenger_types::Psid;
//! let request = SendRequest::response(Psid::new("1254459154682919"), OutgoingMessage::text("hi"));
//! assert_eq!(
//!     serde_json::to_string(&request).unwrap(),
//!     r#"{"recipient":{"id":"1254459154682919"},"messaging_type":"RESPONSE","message":{"text":"hi"}}"#
//! );
//! ```

use std::convert::Infallible;
use std::fmt;
use std::str::FromStr;

use serde::de::Error as _;
use serde::ser::SerializeMap as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::ids::Psid;

/// The body of `POST /{page-id}/messages`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendRequest {
    pub recipient: Recipient,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messaging_type: Option<MessagingType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<MessageTag>,
    pub message: OutgoingMessage,
    /// Conversation Routing's inline hand-over: the thread is passed to an app, or
    /// released, as the message goes out (one call instead of two).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_control: Option<InlineThreadControl>,
}

/// The Send API's `thread_control` object: `{"app_id": "<app>", "control_type":
/// "pass"}`, or `{"control_type": "release"}` (the thread goes idle).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InlineThreadControl {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<crate::ids::AppId>,
    pub control_type: ControlType,
}

impl InlineThreadControl {
    /// Hands the thread to `app` with the message.
    pub fn pass(app: crate::ids::AppId) -> Self {
        Self {
            app_id: Some(app),
            control_type: ControlType::Pass,
        }
    }

    /// Gives the thread up with the message: it goes idle.
    pub fn release() -> Self {
        Self {
            app_id: None,
            control_type: ControlType::Release,
        }
    }
}

/// What an inline `thread_control` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ControlType {
    Pass,
    Release,
}

impl SendRequest {
    /// A reply inside the 24-hour window (`messaging_type: RESPONSE`).
    pub fn response(psid: Psid, message: OutgoingMessage) -> Self {
        Self {
            recipient: Recipient::Id(psid),
            messaging_type: Some(MessagingType::Response),
            tag: None,
            message,
            thread_control: None,
        }
    }

    /// A tagged message outside the window (`messaging_type: MESSAGE_TAG`). Whether
    /// the tag is still allowed is the caller's policy: see [`MessageTag::is_retired`].
    pub fn tagged(psid: Psid, tag: MessageTag, message: OutgoingMessage) -> Self {
        Self {
            recipient: Recipient::Id(psid),
            messaging_type: Some(MessagingType::MessageTag),
            tag: Some(tag),
            message,
            thread_control: None,
        }
    }

    /// The one message a one-time notification token allows. Meta's OTN sends carry
    /// neither `messaging_type` nor `tag`: the token is the permission.
    pub fn one_time_notification(token: impl Into<String>, message: OutgoingMessage) -> Self {
        Self {
            recipient: Recipient::OneTimeNotifToken(token.into()),
            messaging_type: None,
            tag: None,
            message,
            thread_control: None,
        }
    }

    /// True when the request carries a tag Meta rejects with error 100 since 27 April 2026.
    pub fn uses_retired_tag(&self) -> bool {
        self.tag.as_ref().is_some_and(MessageTag::is_retired)
    }
}

/// Whom a message goes to: `{"id": PSID}` or one of the tokens that stand in for a
/// PSID. Exactly one key is sent.
///
/// `Debug` prints PSIDs and user refs but never a token: an OTN token (and a recurring
/// notification token) lets whoever holds it, with the Page token, send a message
/// outside the window, so it is treated like a credential.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Recipient {
    Id(Psid),
    OneTimeNotifToken(String),
    /// The checkbox plugin's `user_ref`.
    UserRef(String),
    /// A recurring notification token (deprecated by Meta in February 2026).
    NotificationMessagesToken(String),
}

impl Recipient {
    /// The JSON key Meta expects for this kind of recipient.
    pub fn key(&self) -> &'static str {
        match self {
            Self::Id(_) => "id",
            Self::OneTimeNotifToken(_) => "one_time_notif_token",
            Self::UserRef(_) => "user_ref",
            Self::NotificationMessagesToken(_) => "notification_messages_token",
        }
    }

    fn value(&self) -> &str {
        match self {
            Self::Id(psid) => psid.as_str(),
            Self::OneTimeNotifToken(v) | Self::UserRef(v) | Self::NotificationMessagesToken(v) => v,
        }
    }

    /// The PSID, when the message is addressed by one.
    pub fn psid(&self) -> Option<&Psid> {
        match self {
            Self::Id(psid) => Some(psid),
            _ => None,
        }
    }
}

impl fmt::Debug for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Id(psid) => f.debug_tuple("Id").field(psid).finish(),
            Self::UserRef(user_ref) => f.debug_tuple("UserRef").field(user_ref).finish(),
            Self::OneTimeNotifToken(_) => f.write_str("OneTimeNotifToken(<redacted>)"),
            Self::NotificationMessagesToken(_) => {
                f.write_str("NotificationMessagesToken(<redacted>)")
            }
        }
    }
}

impl Serialize for Recipient {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1))?;
        map.serialize_entry(self.key(), self.value())?;
        map.end()
    }
}

impl<'de> Deserialize<'de> for Recipient {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Wire {
            #[serde(default)]
            id: Option<Psid>,
            #[serde(default)]
            one_time_notif_token: Option<String>,
            #[serde(default)]
            user_ref: Option<String>,
            #[serde(default)]
            notification_messages_token: Option<String>,
        }
        let wire = Wire::deserialize(deserializer)?;
        let mut found = [
            wire.id.map(Self::Id),
            wire.one_time_notif_token.map(Self::OneTimeNotifToken),
            wire.user_ref.map(Self::UserRef),
            wire.notification_messages_token
                .map(Self::NotificationMessagesToken),
        ]
        .into_iter()
        .flatten();
        match (found.next(), found.next()) {
            (Some(recipient), None) => Ok(recipient),
            _ => Err(D::Error::custom(
                "recipient must have exactly one of id, one_time_notif_token, user_ref, \
                 notification_messages_token",
            )),
        }
    }
}

/// `messaging_type`: why the Page may send this message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MessagingType {
    /// A reply inside the 24-hour window.
    Response,
    /// A message the Page starts, still inside the window.
    Update,
    /// Outside the window, under the permission of `tag`.
    MessageTag,
}

/// `tag`, sent with `messaging_type: MESSAGE_TAG`. Tags Meta may add later, or that
/// this model does not name, are kept as [`MessageTag::Other`] so a request can
/// still be built and read back.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MessageTag {
    /// A person's reply, up to 7 days after the user's last message.
    HumanAgent,
    /// The `customer_feedback` template only, up to 7 days after the user's last
    /// message.
    CustomerFeedback,
    /// Retired: rejected with error 100 since 27 April 2026.
    ConfirmedEventUpdate,
    /// Retired: rejected with error 100 since 27 April 2026.
    PostPurchaseUpdate,
    /// Retired: rejected with error 100 since 27 April 2026.
    AccountUpdate,
    Other(String),
}

impl MessageTag {
    pub fn as_str(&self) -> &str {
        match self {
            Self::HumanAgent => "HUMAN_AGENT",
            Self::CustomerFeedback => "CUSTOMER_FEEDBACK",
            Self::ConfirmedEventUpdate => "CONFIRMED_EVENT_UPDATE",
            Self::PostPurchaseUpdate => "POST_PURCHASE_UPDATE",
            Self::AccountUpdate => "ACCOUNT_UPDATE",
            Self::Other(tag) => tag,
        }
    }

    /// True for the tags Meta rejects (error 100) since 27 April 2026. Decided on the
    /// string, so `Other("ACCOUNT_UPDATE")` built by hand is retired too.
    pub fn is_retired(&self) -> bool {
        matches!(
            self.as_str(),
            "CONFIRMED_EVENT_UPDATE" | "POST_PURCHASE_UPDATE" | "ACCOUNT_UPDATE"
        )
    }
}

impl From<&str> for MessageTag {
    fn from(tag: &str) -> Self {
        match tag {
            "HUMAN_AGENT" => Self::HumanAgent,
            "CUSTOMER_FEEDBACK" => Self::CustomerFeedback,
            "CONFIRMED_EVENT_UPDATE" => Self::ConfirmedEventUpdate,
            "POST_PURCHASE_UPDATE" => Self::PostPurchaseUpdate,
            "ACCOUNT_UPDATE" => Self::AccountUpdate,
            other => Self::Other(other.to_owned()),
        }
    }
}

impl From<String> for MessageTag {
    fn from(tag: String) -> Self {
        match Self::from(tag.as_str()) {
            Self::Other(_) => Self::Other(tag),
            known => known,
        }
    }
}

impl FromStr for MessageTag {
    type Err = Infallible;

    fn from_str(tag: &str) -> Result<Self, Infallible> {
        Ok(Self::from(tag))
    }
}

impl fmt::Display for MessageTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for MessageTag {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for MessageTag {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::from)
    }
}

/// The longest OTN request title Meta accepts, in characters.
pub const OTN_TITLE_MAX_CHARS: usize = 65;

/// Meta's `message` object (`text`, or `attachment`, and `quick_replies`), kept as
/// JSON: the Send API has many message shapes and the project builds only a few of
/// them, while the business's `notify` commands may carry any.
///
/// `Debug` names the fields but not their values: message text is the user's
/// conversation and must not reach the logs.
#[derive(Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OutgoingMessage(Map<String, Value>);

impl OutgoingMessage {
    /// `{"text": text}`.
    pub fn text(text: &str) -> Self {
        let mut map = Map::new();
        map.insert("text".to_owned(), Value::String(text.to_owned()));
        Self(map)
    }

    /// The one-time notification request template. `payload` comes back in the
    /// `messaging_optins` webhook when the person taps "Notify me" (this project uses
    /// the topic). Meta refuses titles over 65 characters; refusing here gives a clear
    /// error instead of a Graph error 100.
    pub fn otn_request(title: &str, payload: &str) -> Result<Self, TemplateError> {
        if title.trim().is_empty() {
            return Err(TemplateError::EmptyTitle);
        }
        let chars = title.chars().count();
        if chars > OTN_TITLE_MAX_CHARS {
            return Err(TemplateError::TitleTooLong {
                chars,
                max: OTN_TITLE_MAX_CHARS,
            });
        }
        let attachment = serde_json::json!({
            "type": "template",
            "payload": {
                "template_type": "one_time_notif_req",
                "title": title,
                "payload": payload,
            },
        });
        let mut map = Map::new();
        map.insert("attachment".to_owned(), attachment);
        Ok(Self(map))
    }

    pub fn from_map(map: Map<String, Value>) -> Self {
        Self(map)
    }

    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }

    pub fn into_map(self) -> Map<String, Value> {
        self.0
    }

    /// The `template_type` of a template attachment (`customer_feedback`,
    /// `button`, ...); `None` for any other message.
    pub fn template_type(&self) -> Option<&str> {
        let attachment = self.0.get("attachment")?;
        if attachment.get("type")?.as_str()? != "template" {
            return None;
        }
        attachment.get("payload")?.get("template_type")?.as_str()
    }
}

impl From<Map<String, Value>> for OutgoingMessage {
    fn from(map: Map<String, Value>) -> Self {
        Self(map)
    }
}

impl fmt::Debug for OutgoingMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutgoingMessage")
            .field("fields", &self.0.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Why a message template could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateError {
    EmptyTitle,
    TitleTooLong {
        chars: usize,
        max: usize,
    },
    /// A part of a richer message (`crate::templates`) Meta would refuse.
    Invalid {
        what: &'static str,
        problem: String,
    },
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EmptyTitle => f.write_str("the one-time notification request title is empty"),
            Self::TitleTooLong { chars, max } => write!(
                f,
                "the one-time notification request title has {chars} characters; \
                 Meta accepts at most {max}"
            ),
            Self::Invalid { what, problem } => write!(f, "{what}: {problem}"),
        }
    }
}

impl std::error::Error for TemplateError {}

/// The Send API's answer: `{"recipient_id": PSID, "message_id": "m_..."}`. Both are
/// optional because sends to a token or `user_ref` may answer without a
/// `recipient_id`, and a reader must not fail on a sent message.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SendResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
}

/// `{"error": {...}}`: how every Graph call reports failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GraphErrorEnvelope {
    pub error: GraphErrorBody,
}

/// The body of a Graph error. Only `code` is always present; Meta omits the others
/// on some errors, and adds fields (`error_user_msg`, `is_transient`) that are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GraphErrorBody {
    #[serde(default)]
    pub message: String,
    /// `OAuthException`, `GraphMethodException`, ...
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub code: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_subcode: Option<i64>,
    /// Meta's request id, for support tickets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fbtrace_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn to_json<T: Serialize>(value: &T) -> String {
        serde_json::to_string(value).unwrap()
    }

    #[test]
    fn response_serialises_exactly_as_meta_expects() {
        let request =
            SendRequest::response(Psid::new("1254459154682919"), OutgoingMessage::text("hi"));
        assert_eq!(
            to_json(&request),
            r#"{"recipient":{"id":"1254459154682919"},"messaging_type":"RESPONSE","message":{"text":"hi"}}"#
        );
    }

    #[test]
    fn every_recipient_kind_serialises_to_its_own_key() {
        let cases = [
            (Recipient::Id(Psid::new("42")), r#"{"id":"42"}"#),
            (
                Recipient::OneTimeNotifToken("otn-1".to_owned()),
                r#"{"one_time_notif_token":"otn-1"}"#,
            ),
            (
                Recipient::UserRef("ref-1".to_owned()),
                r#"{"user_ref":"ref-1"}"#,
            ),
            (
                Recipient::NotificationMessagesToken("nm-1".to_owned()),
                r#"{"notification_messages_token":"nm-1"}"#,
            ),
        ];
        for (recipient, wire) in cases {
            assert_eq!(to_json(&recipient), wire);
            assert_eq!(serde_json::from_str::<Recipient>(wire).unwrap(), recipient);
        }
    }

    #[test]
    fn a_recipient_needs_exactly_one_key() {
        assert!(serde_json::from_str::<Recipient>("{}").is_err());
        assert!(serde_json::from_str::<Recipient>(r#"{"id":"1","user_ref":"r"}"#).is_err());
        assert!(serde_json::from_str::<Recipient>(r#"{"phone_number":"+1"}"#).is_err());
    }

    #[test]
    fn messaging_types_serialise_in_screaming_case() {
        assert_eq!(to_json(&MessagingType::Response), r#""RESPONSE""#);
        assert_eq!(to_json(&MessagingType::Update), r#""UPDATE""#);
        assert_eq!(to_json(&MessagingType::MessageTag), r#""MESSAGE_TAG""#);
        assert_eq!(
            serde_json::from_str::<MessagingType>(r#""MESSAGE_TAG""#).unwrap(),
            MessagingType::MessageTag
        );
    }

    #[test]
    fn a_template_message_names_its_template_type_and_a_text_names_none() {
        let feedback: OutgoingMessage = serde_json::from_str(
            r#"{"attachment":{"type":"template","payload":{"template_type":"customer_feedback","title":"Rate us"}}}"#,
        )
        .unwrap();
        assert_eq!(feedback.template_type(), Some("customer_feedback"));
        assert_eq!(OutgoingMessage::text("hi").template_type(), None);
        let image: OutgoingMessage = serde_json::from_str(
            r#"{"attachment":{"type":"image","payload":{"template_type":"customer_feedback"}}}"#,
        )
        .unwrap();
        assert_eq!(image.template_type(), None);
    }

    #[test]
    fn an_inline_thread_control_rides_on_the_send_as_meta_spells_it() {
        let mut request = SendRequest::response(
            Psid::new("42"),
            OutgoingMessage::text("An agent will answer"),
        );
        request.thread_control = Some(InlineThreadControl::pass(crate::ids::AppId::new(
            "263902037430900",
        )));
        assert_eq!(
            to_json(&request),
            r#"{"recipient":{"id":"42"},"messaging_type":"RESPONSE","message":{"text":"An agent will answer"},"thread_control":{"app_id":"263902037430900","control_type":"pass"}}"#
        );
        request.thread_control = Some(InlineThreadControl::release());
        assert!(to_json(&request).ends_with(r#""thread_control":{"control_type":"release"}}"#));
    }

    #[test]
    fn tags_round_trip_through_meta_strings() {
        for (tag, wire) in [
            (MessageTag::HumanAgent, "HUMAN_AGENT"),
            (MessageTag::ConfirmedEventUpdate, "CONFIRMED_EVENT_UPDATE"),
            (MessageTag::PostPurchaseUpdate, "POST_PURCHASE_UPDATE"),
            (MessageTag::AccountUpdate, "ACCOUNT_UPDATE"),
            (MessageTag::CustomerFeedback, "CUSTOMER_FEEDBACK"),
            (
                MessageTag::Other("NON_PROMOTIONAL_SUBSCRIPTION".to_owned()),
                "NON_PROMOTIONAL_SUBSCRIPTION",
            ),
        ] {
            assert_eq!(to_json(&tag), format!("\"{wire}\""));
            assert_eq!(
                serde_json::from_str::<MessageTag>(&format!("\"{wire}\"")).unwrap(),
                tag
            );
            assert_eq!(wire.parse::<MessageTag>().unwrap(), tag);
            assert_eq!(MessageTag::from(wire.to_owned()), tag);
        }
    }

    #[test]
    fn tagged_request_carries_messaging_type_and_tag() {
        let request = SendRequest::tagged(
            Psid::new("42"),
            MessageTag::HumanAgent,
            OutgoingMessage::text("An agent will reply"),
        );
        assert_eq!(
            serde_json::to_value(&request).unwrap(),
            json!({
                "recipient": {"id": "42"},
                "messaging_type": "MESSAGE_TAG",
                "tag": "HUMAN_AGENT",
                "message": {"text": "An agent will reply"},
            })
        );
    }

    #[test]
    fn otn_send_has_no_messaging_type_and_no_tag() {
        let request =
            SendRequest::one_time_notification("otn-token", OutgoingMessage::text("Back in stock"));
        assert_eq!(
            to_json(&request),
            r#"{"recipient":{"one_time_notif_token":"otn-token"},"message":{"text":"Back in stock"}}"#
        );
        let parsed: SendRequest = serde_json::from_str(&to_json(&request)).unwrap();
        assert_eq!(parsed, request);
    }

    #[test]
    fn only_the_three_retired_tags_are_retired() {
        assert!(MessageTag::ConfirmedEventUpdate.is_retired());
        assert!(MessageTag::PostPurchaseUpdate.is_retired());
        assert!(MessageTag::AccountUpdate.is_retired());
        assert!(MessageTag::Other("ACCOUNT_UPDATE".to_owned()).is_retired());
        assert!(!MessageTag::HumanAgent.is_retired());
        assert!(!MessageTag::CustomerFeedback.is_retired());

        let retired = SendRequest::tagged(
            Psid::new("42"),
            MessageTag::PostPurchaseUpdate,
            OutgoingMessage::text("Shipped"),
        );
        assert!(retired.uses_retired_tag());
        let human = SendRequest::tagged(
            Psid::new("42"),
            MessageTag::HumanAgent,
            OutgoingMessage::text("x"),
        );
        assert!(!human.uses_retired_tag());
        assert!(
            !SendRequest::response(Psid::new("42"), OutgoingMessage::text("x")).uses_retired_tag()
        );
    }

    #[test]
    fn otn_request_builds_meta_template() {
        let message =
            OutgoingMessage::otn_request("Back in stock: red shoes", "red shoes").unwrap();
        assert_eq!(
            serde_json::to_value(&message).unwrap(),
            json!({"attachment": {"type": "template", "payload": {
                "template_type": "one_time_notif_req",
                "title": "Back in stock: red shoes",
                "payload": "red shoes",
            }}})
        );
    }

    #[test]
    fn otn_title_of_65_chars_is_accepted_and_66_refused() {
        let max = "a".repeat(65);
        assert!(OutgoingMessage::otn_request(&max, "topic").is_ok());
        let over = "a".repeat(66);
        let err = OutgoingMessage::otn_request(&over, "topic").unwrap_err();
        assert_eq!(err, TemplateError::TitleTooLong { chars: 66, max: 65 });
        assert!(err.to_string().contains("66 characters"), "{err}");
    }

    #[test]
    fn otn_title_length_counts_characters_not_bytes() {
        // 65 × "ü" is 130 bytes but 65 characters.
        let umlauts = "ü".repeat(65);
        assert_eq!(umlauts.len(), 130);
        assert!(OutgoingMessage::otn_request(&umlauts, "topic").is_ok());
        let emoji = "🔔".repeat(66);
        assert_eq!(
            OutgoingMessage::otn_request(&emoji, "topic").unwrap_err(),
            TemplateError::TitleTooLong { chars: 66, max: 65 }
        );
    }

    #[test]
    fn empty_or_blank_otn_title_is_refused() {
        assert_eq!(
            OutgoingMessage::otn_request("", "topic").unwrap_err(),
            TemplateError::EmptyTitle
        );
        assert_eq!(
            OutgoingMessage::otn_request("  \t", "topic").unwrap_err(),
            TemplateError::EmptyTitle
        );
    }

    #[test]
    fn any_message_object_is_kept_as_given() {
        let map = json!({"text": "Pick one", "quick_replies": [{"content_type": "text", "title": "A", "payload": "A"}]})
            .as_object()
            .unwrap()
            .clone();
        let message = OutgoingMessage::from_map(map.clone());
        assert_eq!(message.as_map(), &map);
        assert_eq!(
            serde_json::to_value(&message).unwrap(),
            Value::Object(map.clone())
        );
        assert_eq!(message.into_map(), map);
    }

    #[test]
    fn send_response_tolerates_missing_fields() {
        let full: SendResponse = serde_json::from_str(
            r#"{"recipient_id":"1254477777772919","message_id":"m_AG5Hz2Uq7tuwNEhXfYYKj8mJEM_QPpz5jdCK48PnKAjSdjfipqxqMvK8ma6AC8fplwlqLP_5cgXIbu7I3rBN0P"}"#,
        )
        .unwrap();
        assert_eq!(full.recipient_id.as_deref(), Some("1254477777772919"));
        assert!(full.message_id.unwrap().starts_with("m_"));
        let only_mid: SendResponse = serde_json::from_str(r#"{"message_id":"m_1"}"#).unwrap();
        assert_eq!(only_mid.recipient_id, None);
    }

    #[test]
    fn graph_error_body_is_parsed_from_meta_json() {
        let body = r#"{"error":{"message":"(#10) This message is sent outside of allowed window.","type":"OAuthException","code":10,"error_subcode":2018278,"fbtrace_id":"AbCdEfGhIjK"}}"#;
        let envelope: GraphErrorEnvelope = serde_json::from_str(body).unwrap();
        assert_eq!(
            envelope.error,
            GraphErrorBody {
                message: "(#10) This message is sent outside of allowed window.".to_owned(),
                kind: Some("OAuthException".to_owned()),
                code: 10,
                error_subcode: Some(2018278),
                fbtrace_id: Some("AbCdEfGhIjK".to_owned()),
            }
        );
    }

    #[test]
    fn graph_error_body_tolerates_missing_and_extra_fields() {
        let body = r#"{"error":{"code":1200,"is_transient":true,"error_user_msg":"Try again"}}"#;
        let envelope: GraphErrorEnvelope = serde_json::from_str(body).unwrap();
        assert_eq!(envelope.error.code, 1200);
        assert_eq!(envelope.error.message, "");
        assert_eq!(envelope.error.kind, None);
        assert_eq!(envelope.error.error_subcode, None);
        assert_eq!(envelope.error.fbtrace_id, None);
        assert!(
            serde_json::from_str::<GraphErrorEnvelope>(r#"{"error":{"message":"x"}}"#).is_err()
        );
    }

    #[test]
    fn debug_never_prints_tokens_or_message_text() {
        let otn = Recipient::OneTimeNotifToken("secret-otn-token".to_owned());
        assert_eq!(format!("{otn:?}"), "OneTimeNotifToken(<redacted>)");
        let recurring = Recipient::NotificationMessagesToken("secret-nm-token".to_owned());
        assert_eq!(
            format!("{recurring:?}"),
            "NotificationMessagesToken(<redacted>)"
        );
        assert_eq!(
            format!("{:?}", Recipient::Id(Psid::new("42"))),
            "Id(Psid(42))"
        );

        let request = SendRequest::one_time_notification(
            "secret-otn-token",
            OutgoingMessage::text("private words"),
        );
        let debug = format!("{request:?}");
        assert!(!debug.contains("secret-otn-token"), "{debug}");
        assert!(!debug.contains("private words"), "{debug}");
        assert!(debug.contains("text"), "{debug}");
    }
}
