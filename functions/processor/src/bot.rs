//! The bot decides what to say; the processor records state before asking, checks
//! every action against the send policy and carries out what passes.
//!
//! Replace the bot by implementing [`Bot`] and handing it to
//! [`crate::Processor::new`]. It sees the event, the thread's state and the time,
//! and answers with actions; it makes no network call of its own to Meta, so every
//! message it asks for goes through the same policy and idempotency.

use std::future::Future;

use messenger_store::{BotState, Person, ThreadKey, ThreadState};
use messenger_types::event::{EventKind, OptinVariant};
use messenger_types::send::{InlineThreadControl, MessagingType, OutgoingMessage};
use messenger_types::templates::SenderAction;
use messenger_types::{AppId, Event, PageId, Source, Timestamp};

use crate::policy::Basis;

/// The Page Inbox: human agents answer from here (Handover Protocol).
pub use conversation::record::PAGE_INBOX_APP_ID;

/// What the bot is asked about.
#[derive(Debug, Clone, Copy)]
pub struct Turn<'a> {
    pub page: &'a PageId,
    /// The thread the event belongs to, when it names a person.
    pub thread_key: Option<&'a ThreadKey>,
    pub event: &'a Event,
    /// `Standby` events belong to a thread another app controls: the processor
    /// never asks the bot about them.
    pub source: Source,
    /// The thread's state after this event was recorded.
    pub thread: &'a ThreadState,
    pub now: Timestamp,
}

impl Turn<'_> {
    /// What the bot kept of this person with [`Action::SetState`], as its type;
    /// `None` when nothing is kept or it no longer reads as `T`.
    pub fn state<T: serde::de::DeserializeOwned>(&self) -> Option<T> {
        self.thread.bot_state.as_ref().and_then(BotState::get)
    }

    /// Keep `value` as what the bot remembers of this person (at most
    /// [`messenger_store::MAX_BOT_STATE_BYTES`] of JSON).
    pub fn remember<T: serde::Serialize>(
        &self,
        value: &T,
    ) -> Result<Action, messenger_store::BotStateError> {
        BotState::new(value).map(|state| Action::SetState(Some(state)))
    }

    /// Shows the person that a reply is being written.
    pub fn typing(&self) -> Option<Action> {
        Some(Action::SenderAction {
            to: self.thread_key?.clone(),
            action: SenderAction::TypingOn,
        })
    }

    /// Marks the person's last message as seen.
    pub fn mark_seen(&self) -> Option<Action> {
        Some(Action::SenderAction {
            to: self.thread_key?.clone(),
            action: SenderAction::MarkSeen,
        })
    }

    /// A reply to the person of this event, inside the standard window.
    pub fn reply(&self, message: OutgoingMessage) -> Option<Action> {
        Some(Action::Send {
            to: self.thread_key?.clone(),
            message,
            basis: Basis::Standard(MessagingType::Response),
            thread_control: None,
        })
    }
}

/// Something the bot wants done.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Send {
        to: ThreadKey,
        message: OutgoingMessage,
        basis: Basis,
        /// Pass the thread to an app, or release it, with the message (the Send
        /// API's inline `thread_control`): one call instead of two.
        thread_control: Option<InlineThreadControl>,
    },
    /// Hand the thread to another app (e.g. the Page Inbox); the bot stays silent
    /// on it until control comes back.
    PassThreadControl { to: AppId, metadata: Option<String> },
    /// Take the thread back from the app that holds it.
    TakeThreadControl { metadata: Option<String> },
    /// Give the thread up: it goes idle (Conversation Routing).
    ReleaseThreadControl,
    /// Keep the thread this app holds from going idle for `seconds` more (Meta
    /// allows up to 7 days).
    ExtendThreadControl { seconds: u32 },
    /// Ask the app that holds the thread to pass it to this app.
    RequestThreadControl { metadata: Option<String> },
    /// Show the person a sender action (typing on/off, mark seen); inside the
    /// 24-hour window, like a standard message.
    SenderAction { to: ThreadKey, action: SenderAction },
    /// Keep `Some(state)` as what the bot remembers of the event's person, or
    /// forget it (`None`). Kept with the turn's own write, before any call: it is
    /// not an action carried out and has no outcome. Read it back with
    /// [`Turn::state`].
    SetState(Option<BotState>),
    /// Send `message` to the event's person with their oldest one-time
    /// notification token of `topic`, spending it (refused with
    /// `no_token_for_topic` when they hold none).
    Notify {
        topic: String,
        message: OutgoingMessage,
    },
}

/// The replaceable decision-maker. The function runs the bot it is given to
/// [`crate::run`] (`src/main.rs` gives [`DefaultBot`]):
///
/// ```no_run
/// use messenger_types::{event::EventKind, send::OutgoingMessage};
/// use processor::bot::{Action, Bot, Turn};
///
/// struct EchoBot;
///
/// impl Bot for EchoBot {
///     async fn decide(&self, turn: &Turn<'_>) -> Vec<Action> {
///         match &turn.event.kind {
///             EventKind::Message(m) if !m.is_echo => m
///                 .text
///                 .as_deref()
///                 .and_then(|t| turn.reply(OutgoingMessage::text(t)))
///                 .into_iter()
///                 .collect(),
///             _ => Vec::new(),
///         }
///     }
/// }
///
/// // functions/processor/src/main.rs runs the function with the default bot;
/// // put yours in its place:
/// #[tokio::main]
/// async fn main() -> Result<(), lambda_runtime::Error> {
///     processor::run(EchoBot).await
/// }
/// ```
pub trait Bot: Send + Sync {
    fn decide(&self, turn: &Turn<'_>) -> impl Future<Output = Vec<Action>> + Send;
}

/// The behaviour described in the README: replies to text, OTN requests on
/// "notify me about <topic>", handover on "human", confirmations of optins.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultBot;

const NOTIFY_PREFIX: &str = "notify me about ";

impl Bot for DefaultBot {
    async fn decide(&self, turn: &Turn<'_>) -> Vec<Action> {
        decide(turn)
    }
}

fn decide(turn: &Turn<'_>) -> Vec<Action> {
    if turn.source == Source::Standby {
        return Vec::new();
    }
    let is_psid = matches!(turn.thread_key.map(|k| &k.person), Some(Person::Psid(_)));
    if !is_psid {
        return Vec::new();
    }
    match &turn.event.kind {
        EventKind::Message(m) if !m.is_echo => {
            let text = m.text.as_deref().unwrap_or("").trim();
            if let Some(topic) = strip_prefix_ignore_case(text, NOTIFY_PREFIX) {
                return notify_request(turn, topic);
            }
            if text.eq_ignore_ascii_case("human") {
                return [
                    turn.reply(OutgoingMessage::text(
                        "Connecting you with a person. They will answer here.",
                    )),
                    Some(Action::PassThreadControl {
                        to: AppId::new(PAGE_INBOX_APP_ID),
                        metadata: Some("the person asked for a human".to_owned()),
                    }),
                ]
                .into_iter()
                .flatten()
                .collect();
            }
            let reply = if text.is_empty() {
                "Thanks, we got it!".to_owned()
            } else {
                "Thanks for your message! Write \"notify me about <topic>\" to be told when \
                 something happens, or \"human\" to talk to a person."
                    .to_owned()
            };
            turn.reply(OutgoingMessage::text(&reply))
                .into_iter()
                .collect()
        }
        // The Get Started button (messenger-profile.example.json sets its payload).
        EventKind::Postback(p) if p.payload.as_deref() == Some("GET_STARTED") => turn
            .reply(OutgoingMessage::text(
                "Welcome! Write anything to get an answer, \"notify me about <topic>\" to be \
                 told when something happens, or \"human\" to talk to a person.",
            ))
            .into_iter()
            .collect(),
        EventKind::Postback(p) => {
            let title = p.title.as_deref().unwrap_or("that");
            turn.reply(OutgoingMessage::text(&format!("You chose: {title}")))
                .into_iter()
                .collect()
        }
        EventKind::Optin(o) => match o.variant() {
            OptinVariant::OneTimeNotification { topic, .. } => turn
                .reply(OutgoingMessage::text(&format!(
                    "Thanks! We will message you once about {topic}."
                )))
                .into_iter()
                .collect(),
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

/// `text` without `prefix` (an ASCII prefix, compared case-insensitively),
/// trimmed; `None` when it does not start with it or nothing follows.
fn strip_prefix_ignore_case<'t>(text: &'t str, prefix: &str) -> Option<&'t str> {
    let head = text.get(..prefix.len())?;
    if !head.eq_ignore_ascii_case(prefix) {
        return None;
    }
    let topic = text[prefix.len()..].trim();
    (!topic.is_empty()).then_some(topic)
}

/// An OTN request whose payload is the topic; the title is the topic, shortened to
/// Meta's 65 characters when needed.
fn notify_request(turn: &Turn<'_>, topic: &str) -> Vec<Action> {
    let title: String = if topic.chars().count() <= 65 {
        topic.to_owned()
    } else {
        topic.chars().take(64).chain(['…']).collect()
    };
    match OutgoingMessage::otn_request(&title, topic) {
        Ok(message) => turn.reply(message).into_iter().collect(),
        Err(e) => {
            tracing::warn!(error = %e, "could not build the OTN request");
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use messenger_types::Psid;

    fn event(json: &str) -> Event {
        serde_json::from_str(json).unwrap()
    }

    fn decide_on(json: &str, source: Source) -> Vec<Action> {
        let e = event(json);
        let page = PageId::new("1");
        let key = ThreadKey::psid(page.clone(), Psid::new("2"));
        decide(&Turn {
            page: &page,
            thread_key: Some(&key),
            event: &e,
            source,
            thread: &ThreadState::default(),
            now: Timestamp::from_millis(0),
        })
    }

    fn text(t: &str) -> String {
        format!(
            r#"{{"sender":{{"id":"2"}},"recipient":{{"id":"1"}},"timestamp":1,"message":{{"mid":"m","text":{}}}}}"#,
            serde_json::to_string(t).unwrap()
        )
    }

    fn sent(actions: &[Action]) -> Vec<serde_json::Value> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Send { message, .. } => Some(serde_json::to_value(message).unwrap()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn the_get_started_button_gets_a_welcome_and_other_postbacks_their_title() {
        let postback = |payload: &str| {
            format!(
                r#"{{"sender":{{"id":"2"}},"recipient":{{"id":"1"}},"timestamp":1,"postback":{{"title":"Get Started","payload":"{payload}"}}}}"#
            )
        };
        let welcome = sent(&decide_on(&postback("GET_STARTED"), Source::Messaging));
        assert_eq!(welcome.len(), 1);
        assert!(welcome[0]["text"].as_str().unwrap().starts_with("Welcome!"));
        let other = sent(&decide_on(&postback("MENU"), Source::Messaging));
        assert_eq!(other[0]["text"], "You chose: Get Started");
    }

    #[test]
    fn text_gets_one_reply() {
        let actions = decide_on(&text("hello"), Source::Messaging);
        assert_eq!(actions.len(), 1);
        assert!(
            sent(&actions)[0]["text"]
                .as_str()
                .unwrap()
                .contains("notify me about")
        );
    }

    #[test]
    fn notify_me_about_asks_for_a_one_time_notification_in_any_case() {
        for t in [
            "notify me about back in stock",
            "Notify Me About back in stock",
            "  NOTIFY ME ABOUT back in stock ",
        ] {
            let actions = decide_on(&text(t), Source::Messaging);
            let payload = &sent(&actions)[0]["attachment"]["payload"];
            assert_eq!(payload["template_type"], "one_time_notif_req", "{t}");
            assert_eq!(payload["payload"], "back in stock");
            assert_eq!(payload["title"], "back in stock");
        }
    }

    #[test]
    fn a_long_topic_keeps_its_payload_and_shortens_its_title() {
        let topic = "x".repeat(100);
        let actions = decide_on(
            &text(&format!("notify me about {topic}")),
            Source::Messaging,
        );
        let payload = &sent(&actions)[0]["attachment"]["payload"];
        assert_eq!(payload["payload"], topic.as_str());
        assert_eq!(payload["title"].as_str().unwrap().chars().count(), 65);
    }

    #[test]
    fn human_passes_control_to_the_page_inbox() {
        let actions = decide_on(&text("Human"), Source::Messaging);
        assert_eq!(actions.len(), 2);
        assert_eq!(
            actions[1],
            Action::PassThreadControl {
                to: AppId::new(PAGE_INBOX_APP_ID),
                metadata: Some("the person asked for a human".to_owned())
            }
        );
    }

    #[test]
    fn standby_echoes_deliveries_and_reads_never_cause_a_send() {
        assert!(decide_on(&text("hello"), Source::Standby).is_empty());
        for json in [
            r#"{"sender":{"id":"1"},"recipient":{"id":"2"},"timestamp":1,"message":{"mid":"m","text":"hi","is_echo":true}}"#,
            r#"{"sender":{"id":"2"},"recipient":{"id":"1"},"timestamp":1,"delivery":{"watermark":1}}"#,
            r#"{"sender":{"id":"2"},"recipient":{"id":"1"},"timestamp":1,"read":{"watermark":1}}"#,
            r#"{"sender":{"id":"2"},"recipient":{"id":"1"},"timestamp":1,"referral":{"ref":"x","source":"SHORTLINK","type":"OPEN_THREAD"}}"#,
        ] {
            assert!(decide_on(json, Source::Messaging).is_empty(), "{json}");
        }
    }

    #[test]
    fn non_ascii_text_is_handled_without_panicking() {
        for t in [
            "İnotify me about x",
            "ǅ",
            "notify me aboutﬃ",
            "notify me about ",
        ] {
            let _ = decide_on(&text(t), Source::Messaging);
        }
    }
}
