//! A small router for bots: handlers by text pattern, by postback payload and by
//! quick-reply payload, tried in the order they were added; a fallback for the
//! rest. A [`Router`] is a [`Bot`]: hand it to [`crate::run`].
//!
//! ```
//! use messenger_types::send::OutgoingMessage;
//! use processor::router::Router;
//!
//! # fn main() -> Result<(), processor::router::RouteError> {
//! let bot = Router::new()
//!     .on_payload("GET_STARTED", |turn, _| {
//!         turn.reply(OutgoingMessage::text("Welcome!")).into_iter().collect()
//!     })
//!     .on_text(r"(?i)^order (\d+)$", |turn, m| {
//!         let order = m.capture(1).unwrap_or("?");
//!         turn.reply(OutgoingMessage::text(&format!("Looking up order {order}")))
//!             .into_iter()
//!             .collect()
//!     })?
//!     .otherwise(|turn, _| turn.reply(OutgoingMessage::text("Say \"order 42\"")).into_iter().collect());
//! # let _ = bot;
//! # Ok(())
//! # }
//! ```
//!
//! Standby events (another app holds the thread) and echoes never reach a handler.

use messenger_types::Source;
use messenger_types::event::EventKind;
use regex_lite::Regex;

use crate::bot::{Action, Bot, Turn};

/// What matched: the pattern's capture groups for a text route, the payload for
/// a postback or quick-reply route.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Matched {
    captures: Vec<Option<String>>,
    pub payload: Option<String>,
}

impl Matched {
    /// Capture group `n` of a text route (0 is the whole match).
    pub fn capture(&self, n: usize) -> Option<&str> {
        self.captures.get(n).and_then(|c| c.as_deref())
    }
}

/// A route's handler.
pub type Handler = Box<dyn Fn(&Turn<'_>, &Matched) -> Vec<Action> + Send + Sync>;

/// A text pattern that is not a valid regular expression.
#[derive(Debug, thiserror::Error)]
#[error("route pattern {pattern:?}: {source}")]
pub struct RouteError {
    pattern: String,
    source: regex_lite::Error,
}

enum Route {
    Text(Regex),
    Payload(String),
    QuickReply(String),
}

/// Handlers by what the person did.
#[derive(Default)]
pub struct Router {
    routes: Vec<(Route, Handler)>,
    otherwise: Option<Handler>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("routes", &self.routes.len())
            .field("otherwise", &self.otherwise.is_some())
            .finish()
    }
}

impl Router {
    pub fn new() -> Self {
        Self::default()
    }

    /// A text message matching `pattern` (a regular expression; `(?i)` for any
    /// case). A tapped quick reply's text is matched too, after its payload routes.
    pub fn on_text(
        mut self,
        pattern: &str,
        handler: impl Fn(&Turn<'_>, &Matched) -> Vec<Action> + Send + Sync + 'static,
    ) -> Result<Self, RouteError> {
        let regex = Regex::new(pattern).map_err(|source| RouteError {
            pattern: pattern.to_owned(),
            source,
        })?;
        self.routes.push((Route::Text(regex), Box::new(handler)));
        Ok(self)
    }

    /// A postback (a button, the Get Started button, the persistent menu) whose
    /// payload is exactly `payload`.
    pub fn on_payload(
        mut self,
        payload: &str,
        handler: impl Fn(&Turn<'_>, &Matched) -> Vec<Action> + Send + Sync + 'static,
    ) -> Self {
        self.routes
            .push((Route::Payload(payload.to_owned()), Box::new(handler)));
        self
    }

    /// A tapped quick reply whose payload is exactly `payload`.
    pub fn on_quick_reply(
        mut self,
        payload: &str,
        handler: impl Fn(&Turn<'_>, &Matched) -> Vec<Action> + Send + Sync + 'static,
    ) -> Self {
        self.routes
            .push((Route::QuickReply(payload.to_owned()), Box::new(handler)));
        self
    }

    /// What to do with a message or postback no route took.
    pub fn otherwise(
        mut self,
        handler: impl Fn(&Turn<'_>, &Matched) -> Vec<Action> + Send + Sync + 'static,
    ) -> Self {
        self.otherwise = Some(Box::new(handler));
        self
    }

    /// The actions for `turn`: the first route that matches, else the fallback
    /// for a message or postback, else nothing.
    pub fn route(&self, turn: &Turn<'_>) -> Vec<Action> {
        if turn.source == Source::Standby {
            return Vec::new();
        }
        let (text, postback, quick_reply) = match &turn.event.kind {
            EventKind::Message(m) if !m.is_echo => (
                m.text.as_deref(),
                None,
                m.quick_reply.as_ref().map(|q| q.payload.as_str()),
            ),
            EventKind::Postback(p) => (None, p.payload.as_deref(), None),
            _ => return Vec::new(),
        };
        for (route, handler) in &self.routes {
            let matched = match route {
                Route::QuickReply(want) if quick_reply == Some(want.as_str()) => Some(Matched {
                    payload: quick_reply.map(str::to_owned),
                    ..Matched::default()
                }),
                Route::Payload(want) if postback == Some(want.as_str()) => Some(Matched {
                    payload: postback.map(str::to_owned),
                    ..Matched::default()
                }),
                Route::Text(regex) => text.and_then(|t| regex.captures(t)).map(|c| Matched {
                    captures: c.iter().map(|g| g.map(|g| g.as_str().to_owned())).collect(),
                    payload: quick_reply.map(str::to_owned),
                }),
                _ => None,
            };
            if let Some(matched) = matched {
                return handler(turn, &matched);
            }
        }
        self.otherwise.as_ref().map_or_else(Vec::new, |handler| {
            handler(
                turn,
                &Matched {
                    payload: postback.or(quick_reply).map(str::to_owned),
                    ..Matched::default()
                },
            )
        })
    }
}

impl Bot for Router {
    async fn decide(&self, turn: &Turn<'_>) -> Vec<Action> {
        self.route(turn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use messenger_store::{ThreadKey, ThreadState};
    use messenger_types::send::OutgoingMessage;
    use messenger_types::{Event, PageId, Psid, Timestamp};

    fn event(json: serde_json::Value) -> Event {
        serde_json::from_value(json).unwrap()
    }

    /// The text of the one reply `router` gives `event`, or `None`.
    fn said(router: &Router, event: &Event, source: Source) -> Option<String> {
        let page = PageId::new("1");
        let key = ThreadKey::psid(page.clone(), Psid::new("2"));
        let thread = ThreadState::default();
        let turn = Turn {
            page: &page,
            thread_key: Some(&key),
            event,
            source,
            thread: &thread,
            now: Timestamp::from_millis(1_000),
        };
        match router.route(&turn).as_slice() {
            [Action::Send { message, .. }] => message.as_map()["text"].as_str().map(str::to_owned),
            [] => None,
            other => panic!("more than one action: {other:?}"),
        }
    }

    fn say(text: &'static str) -> impl Fn(&Turn<'_>, &Matched) -> Vec<Action> + Send + Sync {
        move |turn, _| {
            turn.reply(OutgoingMessage::text(text))
                .into_iter()
                .collect()
        }
    }

    fn router() -> Router {
        Router::new()
            .on_quick_reply("SIZE_L", say("large it is"))
            .on_payload("GET_STARTED", say("welcome"))
            .on_text(r"(?i)^order (\d+)$", |turn, m| {
                turn.reply(OutgoingMessage::text(&format!(
                    "order {}",
                    m.capture(1).unwrap()
                )))
                .into_iter()
                .collect()
            })
            .unwrap()
            .otherwise(say("pardon?"))
    }

    fn text(body: &str) -> Event {
        event(
            serde_json::json!({"sender": {"id": "2"}, "recipient": {"id": "1"}, "timestamp": 1,
            "message": {"mid": "m", "text": body}}),
        )
    }

    #[test]
    fn each_kind_of_input_reaches_its_route_and_the_rest_the_fallback() {
        let r = router();
        let m = Source::Messaging;
        assert_eq!(said(&r, &text("ORDER 42"), m).as_deref(), Some("order 42"));
        assert_eq!(
            said(&r, &text("where is it"), m).as_deref(),
            Some("pardon?")
        );
        let started = event(
            serde_json::json!({"sender": {"id": "2"}, "recipient": {"id": "1"}, "timestamp": 1,
            "postback": {"title": "Get Started", "payload": "GET_STARTED"}}),
        );
        assert_eq!(said(&r, &started, m).as_deref(), Some("welcome"));
        let tapped = event(
            serde_json::json!({"sender": {"id": "2"}, "recipient": {"id": "1"}, "timestamp": 1,
            "message": {"mid": "m", "text": "Large", "quick_reply": {"payload": "SIZE_L"}}}),
        );
        assert_eq!(said(&r, &tapped, m).as_deref(), Some("large it is"));
        // Never on standby, never for an echo or a read.
        assert_eq!(said(&r, &text("order 1"), Source::Standby), None);
        let echo = event(
            serde_json::json!({"sender": {"id": "1"}, "recipient": {"id": "2"}, "timestamp": 1,
            "message": {"mid": "m", "text": "order 1", "is_echo": true}}),
        );
        assert_eq!(said(&r, &echo, m), None);
        let read = event(
            serde_json::json!({"sender": {"id": "2"}, "recipient": {"id": "1"}, "timestamp": 1,
            "read": {"watermark": 1}}),
        );
        assert_eq!(said(&r, &read, m), None);
    }

    #[test]
    fn a_bad_pattern_is_an_error_naming_it() {
        let err = Router::new().on_text("(unclosed", say("x")).unwrap_err();
        assert!(err.to_string().contains("(unclosed"), "{err}");
    }
}
