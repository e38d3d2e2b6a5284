//! Builders for the Send API's richer messages: quick replies, the button, generic
//! and media templates, and sender actions (typing, mark seen). Each checks Meta's
//! limits before anything is sent, so a message too long or with too many parts
//! is an error the bot sees, not a Graph error 100 at send time.
//!
//! ```
//! use messenger_types::send::OutgoingMessage;
//! use messenger_types::templates::{Button, QuickReply};
//!
//! let menu = OutgoingMessage::buttons(
//!     "What would you like to do?",
//!     vec![
//!         Button::postback("Track my order", "TRACK"),
//!         Button::url("Our shop", "https://shop.example.com"),
//!     ],
//! )
//! .unwrap();
//! let ask = OutgoingMessage::text("Small or large?")
//!     .with_quick_replies(vec![QuickReply::text("Small", "SIZE_S"), QuickReply::text("Large", "SIZE_L")])
//!     .unwrap();
//! assert_eq!(ask.as_map()["quick_replies"][1]["payload"], "SIZE_L");
//! # let _ = menu;
//! ```

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::send::{OutgoingMessage, TemplateError};

/// Meta's limits, in characters (or items).
pub mod limits {
    pub const QUICK_REPLIES: usize = 13;
    pub const QUICK_REPLY_TITLE: usize = 20;
    pub const PAYLOAD: usize = 1000;
    pub const BUTTON_TEXT: usize = 640;
    pub const BUTTONS: usize = 3;
    pub const BUTTON_TITLE: usize = 20;
    pub const ELEMENTS: usize = 10;
    pub const ELEMENT_TITLE: usize = 80;
    pub const ELEMENT_SUBTITLE: usize = 80;
}

/// A quick reply: a chip under the message that sends `payload` back when tapped
/// (a `message` event whose `quick_reply.payload` is it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuickReply {
    pub content_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
}

impl QuickReply {
    pub fn text(title: &str, payload: &str) -> Self {
        Self {
            content_type: "text".to_owned(),
            title: Some(title.to_owned()),
            payload: Some(payload.to_owned()),
        }
    }

    /// Offers the person's email address (Meta fills it in).
    pub fn user_email() -> Self {
        Self {
            content_type: "user_email".to_owned(),
            title: None,
            payload: None,
        }
    }

    /// Offers the person's phone number (Meta fills it in).
    pub fn user_phone_number() -> Self {
        Self {
            content_type: "user_phone_number".to_owned(),
            title: None,
            payload: None,
        }
    }

    fn check(&self) -> Result<(), TemplateError> {
        if self.content_type == "text" {
            let title = self.title.as_deref().unwrap_or("");
            not_empty("quick reply title", title)?;
            at_most("quick reply title", title, limits::QUICK_REPLY_TITLE)?;
            at_most(
                "quick reply payload",
                self.payload.as_deref().unwrap_or(""),
                limits::PAYLOAD,
            )?;
        }
        Ok(())
    }
}

/// A button of a button, generic or media template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Button {
    /// Sends `payload` back as a `messaging_postbacks` event.
    Postback { title: String, payload: String },
    /// Opens `url` (https).
    WebUrl { title: String, url: String },
    /// Calls `payload`, a phone number starting with `+`.
    PhoneNumber { title: String, payload: String },
}

impl Button {
    pub fn postback(title: &str, payload: &str) -> Self {
        Self::Postback {
            title: title.to_owned(),
            payload: payload.to_owned(),
        }
    }

    pub fn url(title: &str, url: &str) -> Self {
        Self::WebUrl {
            title: title.to_owned(),
            url: url.to_owned(),
        }
    }

    pub fn call(title: &str, number: &str) -> Self {
        Self::PhoneNumber {
            title: title.to_owned(),
            payload: number.to_owned(),
        }
    }

    fn check(&self) -> Result<(), TemplateError> {
        let (title, rest) = match self {
            Self::Postback { title, payload } => {
                (title, at_most("button payload", payload, limits::PAYLOAD))
            }
            Self::WebUrl { title, url } => (title, https("button url", url)),
            Self::PhoneNumber { title, payload } => (
                title,
                if payload.starts_with('+') && payload.len() > 1 {
                    Ok(())
                } else {
                    Err(TemplateError::Invalid {
                        what: "button phone number",
                        problem: "must start with + and the country code".to_owned(),
                    })
                },
            ),
        };
        not_empty("button title", title)?;
        at_most("button title", title, limits::BUTTON_TITLE)?;
        rest
    }
}

fn check_buttons(buttons: &[Button], at_least_one: bool) -> Result<(), TemplateError> {
    if at_least_one && buttons.is_empty() {
        return Err(TemplateError::Invalid {
            what: "buttons",
            problem: "at least one is needed".to_owned(),
        });
    }
    at_most_items("buttons", buttons.len(), limits::BUTTONS)?;
    buttons.iter().try_for_each(Button::check)
}

/// One card of a generic template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Element {
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtitle: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_url: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub buttons: Vec<Button>,
}

impl Element {
    pub fn new(title: &str) -> Self {
        Self {
            title: title.to_owned(),
            subtitle: None,
            image_url: None,
            buttons: Vec::new(),
        }
    }

    pub fn subtitle(mut self, subtitle: &str) -> Self {
        self.subtitle = Some(subtitle.to_owned());
        self
    }

    pub fn image(mut self, url: &str) -> Self {
        self.image_url = Some(url.to_owned());
        self
    }

    pub fn button(mut self, button: Button) -> Self {
        self.buttons.push(button);
        self
    }

    fn check(&self) -> Result<(), TemplateError> {
        not_empty("element title", &self.title)?;
        at_most("element title", &self.title, limits::ELEMENT_TITLE)?;
        if let Some(subtitle) = &self.subtitle {
            at_most("element subtitle", subtitle, limits::ELEMENT_SUBTITLE)?;
        }
        if let Some(url) = &self.image_url {
            https("element image_url", url)?;
        }
        check_buttons(&self.buttons, false)
    }
}

/// What a media template shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaType {
    Image,
    Video,
}

/// What a sender action shows the person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SenderAction {
    TypingOn,
    TypingOff,
    MarkSeen,
}

impl SenderAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TypingOn => "typing_on",
            Self::TypingOff => "typing_off",
            Self::MarkSeen => "mark_seen",
        }
    }
}

impl OutgoingMessage {
    /// This message with quick replies under it (1 to 13; text titles up to 20
    /// characters).
    pub fn with_quick_replies(mut self, replies: Vec<QuickReply>) -> Result<Self, TemplateError> {
        if replies.is_empty() {
            return Err(TemplateError::Invalid {
                what: "quick replies",
                problem: "at least one is needed".to_owned(),
            });
        }
        at_most_items("quick replies", replies.len(), limits::QUICK_REPLIES)?;
        replies.iter().try_for_each(QuickReply::check)?;
        let mut map = self.into_map();
        map.insert("quick_replies".to_owned(), json!(replies));
        self = Self::from_map(map);
        Ok(self)
    }

    /// The button template: `text` (up to 640 characters) and 1 to 3 buttons.
    pub fn buttons(text: &str, buttons: Vec<Button>) -> Result<Self, TemplateError> {
        not_empty("button template text", text)?;
        at_most("button template text", text, limits::BUTTON_TEXT)?;
        check_buttons(&buttons, true)?;
        Ok(template(json!({
            "template_type": "button",
            "text": text,
            "buttons": buttons,
        })))
    }

    /// The generic template: a carousel of 1 to 10 cards.
    pub fn generic(elements: Vec<Element>) -> Result<Self, TemplateError> {
        if elements.is_empty() {
            return Err(TemplateError::Invalid {
                what: "elements",
                problem: "at least one is needed".to_owned(),
            });
        }
        at_most_items("elements", elements.len(), limits::ELEMENTS)?;
        elements.iter().try_for_each(Element::check)?;
        Ok(template(json!({
            "template_type": "generic",
            "elements": elements,
        })))
    }

    /// The media template: an image or a video (by https URL) with up to 3 buttons.
    pub fn media(
        media_type: MediaType,
        url: &str,
        buttons: Vec<Button>,
    ) -> Result<Self, TemplateError> {
        https("media url", url)?;
        check_buttons(&buttons, false)?;
        let mut element = json!({"media_type": media_type, "url": url});
        if !buttons.is_empty() {
            element["buttons"] = json!(buttons);
        }
        Ok(template(json!({
            "template_type": "media",
            "elements": [element],
        })))
    }
}

fn template(payload: Value) -> OutgoingMessage {
    let mut map = serde_json::Map::new();
    map.insert(
        "attachment".to_owned(),
        json!({"type": "template", "payload": payload}),
    );
    OutgoingMessage::from_map(map)
}

fn not_empty(what: &'static str, text: &str) -> Result<(), TemplateError> {
    if text.trim().is_empty() {
        return Err(TemplateError::Invalid {
            what,
            problem: "is empty".to_owned(),
        });
    }
    Ok(())
}

fn at_most(what: &'static str, text: &str, max: usize) -> Result<(), TemplateError> {
    let chars = text.chars().count();
    if chars > max {
        return Err(TemplateError::Invalid {
            what,
            problem: format!("has {chars} characters; Meta accepts at most {max}"),
        });
    }
    Ok(())
}

fn at_most_items(what: &'static str, count: usize, max: usize) -> Result<(), TemplateError> {
    if count > max {
        return Err(TemplateError::Invalid {
            what,
            problem: format!("{count} given; Meta accepts at most {max}"),
        });
    }
    Ok(())
}

fn https(what: &'static str, url: &str) -> Result<(), TemplateError> {
    let ok = url
        .strip_prefix("https://")
        .is_some_and(|rest| !rest.is_empty() && !rest.contains(char::is_whitespace));
    if !ok {
        return Err(TemplateError::Invalid {
            what,
            problem: "must be an https URL".to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_button_template_is_meta_json() {
        let m = OutgoingMessage::buttons(
            "Pick one",
            vec![
                Button::postback("Track", "TRACK"),
                Button::url("Shop", "https://shop.example.com"),
                Button::call("Call us", "+15550100"),
            ],
        )
        .unwrap();
        assert_eq!(
            serde_json::to_value(&m).unwrap(),
            json!({"attachment": {"type": "template", "payload": {
            "template_type": "button", "text": "Pick one", "buttons": [
                {"type": "postback", "title": "Track", "payload": "TRACK"},
                {"type": "web_url", "title": "Shop", "url": "https://shop.example.com"},
                {"type": "phone_number", "title": "Call us", "payload": "+15550100"}
            ]}}})
        );
        assert_eq!(m.template_type(), Some("button"));
    }

    #[test]
    fn generic_and_media_templates_are_meta_json() {
        let g = OutgoingMessage::generic(vec![
            Element::new("Boots")
                .subtitle("Waterproof")
                .image("https://cdn.example.com/boots.jpg")
                .button(Button::postback("Buy", "BUY_BOOTS")),
        ])
        .unwrap();
        assert_eq!(
            serde_json::to_value(&g).unwrap()["attachment"]["payload"],
            json!({"template_type": "generic", "elements": [{"title": "Boots", "subtitle": "Waterproof",
                "image_url": "https://cdn.example.com/boots.jpg",
                "buttons": [{"type": "postback", "title": "Buy", "payload": "BUY_BOOTS"}]}]})
        );
        let media =
            OutgoingMessage::media(MediaType::Video, "https://cdn.example.com/a.mp4", vec![])
                .unwrap();
        assert_eq!(
            serde_json::to_value(&media).unwrap()["attachment"]["payload"]["elements"][0],
            json!({"media_type": "video", "url": "https://cdn.example.com/a.mp4"})
        );
    }

    #[test]
    fn meta_limits_are_refused_before_any_call() {
        let long = "x".repeat(21);
        let cases: Vec<Result<OutgoingMessage, TemplateError>> = vec![
            OutgoingMessage::text("?").with_quick_replies(vec![]),
            OutgoingMessage::text("?").with_quick_replies(vec![QuickReply::text(&long, "P")]),
            OutgoingMessage::text("?").with_quick_replies(vec![QuickReply::text("a", "P"); 14]),
            OutgoingMessage::buttons("", vec![Button::postback("a", "b")]),
            OutgoingMessage::buttons(&"t".repeat(641), vec![Button::postback("a", "b")]),
            OutgoingMessage::buttons("t", vec![]),
            OutgoingMessage::buttons("t", vec![Button::postback("a", "b"); 4]),
            OutgoingMessage::buttons("t", vec![Button::url("a", "http://plain.example")]),
            OutgoingMessage::buttons("t", vec![Button::call("a", "5550100")]),
            OutgoingMessage::generic(vec![]),
            OutgoingMessage::generic(vec![Element::new("a"); 11]),
            OutgoingMessage::generic(vec![Element::new(&"t".repeat(81))]),
            OutgoingMessage::media(MediaType::Image, "ftp://x", vec![]),
        ];
        for (n, case) in cases.into_iter().enumerate() {
            let err = case.expect_err(&format!("case {n} should be refused"));
            assert!(!err.to_string().is_empty());
        }
        let ok = OutgoingMessage::text("?")
            .with_quick_replies(vec![QuickReply::user_email(), QuickReply::text("No", "NO")])
            .unwrap();
        assert_eq!(
            ok.as_map()["quick_replies"],
            json!([{"content_type": "user_email"}, {"content_type": "text", "title": "No", "payload": "NO"}])
        );
    }

    proptest! {
        #[test]
        fn a_button_template_is_built_exactly_when_meta_would_take_it(
            text in "\\PC{0,700}",
            titles in proptest::collection::vec("\\PC{0,25}", 0..5),
        ) {
            let buttons: Vec<Button> = titles.iter().map(|t| Button::postback(t, "P")).collect();
            let fits = !text.trim().is_empty()
                && text.chars().count() <= limits::BUTTON_TEXT
                && (1..=limits::BUTTONS).contains(&buttons.len())
                && titles.iter().all(|t| !t.trim().is_empty() && t.chars().count() <= limits::BUTTON_TITLE);
            prop_assert_eq!(OutgoingMessage::buttons(&text, buttons).is_ok(), fits);
        }
    }
}
