//! A shop's order assistant, built with the bot kit: a [`Router`] of handlers,
//! the button template and quick replies, and a memory per person kept on the
//! thread ([`Turn::state`] / [`Turn::remember`]). The processor still records
//! state, enforces Meta's rules and calls the Graph API; this crate only decides.
//!
//! - Get Started, or anything it does not understand: a menu (button template).
//! - "Track my order" (a button) asks for the order number and remembers that it
//!   asked; the next number the person writes is taken as the order.
//! - "order 42" at any time looks the order up directly.
//! - After a lookup, "Anything else?" with Yes/No quick replies.

use messenger_types::send::OutgoingMessage;
use messenger_types::templates::{Button, QuickReply};
use processor::bot::{Action, Turn};
use processor::router::{Matched, RouteError, Router};
use serde::{Deserialize, Serialize};

/// What the bot remembers of a person.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Memory {
    /// The bot asked for an order number and waits for it.
    pub awaiting_order: bool,
    /// The last order the person asked about.
    pub last_order: Option<String>,
}

/// The bot, ready for [`processor::run`].
pub fn bot() -> Result<Router, RouteError> {
    Ok(Router::new()
        .on_payload("GET_STARTED", |turn, _| {
            menu(turn, "Hi! I can track your orders.")
        })
        .on_payload("TRACK", ask_for_order)
        .on_quick_reply("MORE_YES", |turn, _| menu(turn, "Sure, what next?"))
        .on_quick_reply("MORE_NO", |turn, _| {
            reply(turn, OutgoingMessage::text("Thanks, bye!"))
        })
        .on_text(r"(?i)^\s*order\s+#?(\d{1,12})\s*$", look_up)?
        .on_text(r"^\s*#?(\d{1,12})\s*$", |turn, m| {
            if turn.state::<Memory>().is_some_and(|s| s.awaiting_order) {
                look_up(turn, m)
            } else {
                menu(turn, "Which order? Say \"order 42\", or tap Track.")
            }
        })?
        .otherwise(|turn, _| menu(turn, "I can track your orders.")))
}

fn reply(turn: &Turn<'_>, message: OutgoingMessage) -> Vec<Action> {
    turn.reply(message).into_iter().collect()
}

/// The menu: a button template under `text`.
fn menu(turn: &Turn<'_>, text: &str) -> Vec<Action> {
    match OutgoingMessage::buttons(
        text,
        vec![
            Button::postback("Track my order", "TRACK"),
            Button::url("Visit the shop", "https://shop.example.com"),
        ],
    ) {
        Ok(message) => reply(turn, message),
        Err(_) => reply(turn, OutgoingMessage::text(text)),
    }
}

fn ask_for_order(turn: &Turn<'_>, _: &Matched) -> Vec<Action> {
    let memory = Memory {
        awaiting_order: true,
        ..turn.state().unwrap_or_default()
    };
    turn.remember(&memory)
        .into_iter()
        .chain(turn.reply(OutgoingMessage::text("What is your order number?")))
        .collect()
}

fn look_up(turn: &Turn<'_>, m: &Matched) -> Vec<Action> {
    let Some(order) = m.capture(1) else {
        return menu(turn, "Which order?");
    };
    let memory = Memory {
        awaiting_order: false,
        last_order: Some(order.to_owned()),
    };
    let answer = OutgoingMessage::text(&format!("Order {order} is on its way. Anything else?"))
        .with_quick_replies(vec![
            QuickReply::text("Yes", "MORE_YES"),
            QuickReply::text("No", "MORE_NO"),
        ]);
    turn.typing()
        .into_iter()
        .chain(turn.remember(&memory))
        .chain(answer.ok().and_then(|a| turn.reply(a)))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use conversation::testing::MemoryStore;
    use event_queue::testing::MemoryQueue;
    use messenger_store::{ThreadKey, ThreadStore};
    use messenger_types::templates::SenderAction;
    use messenger_types::{PageId, Psid, QueueMessage, QueuedEvent, Timestamp};
    use processor::Processor;
    use processor::testing::FakeGraph;
    use serde_json::{Value, json};

    const PAGE: &str = "100000000000001";
    const PSID: &str = "2000000000000042";

    fn processor() -> Processor<MemoryStore, FakeGraph, Router, MemoryQueue> {
        Processor::new(
            MemoryStore::new(),
            FakeGraph::default(),
            bot().unwrap(),
            MemoryQueue::new(),
            [(
                PageId::new(PAGE),
                secrecy::SecretString::from("test-page-token"),
            )]
            .into(),
        )
    }

    /// A webhook event from the person, as the webhook queues it.
    fn queued(key: &str, kind: &str, body: Value) -> QueuedEvent {
        let mut event = json!({"sender": {"id": PSID}, "recipient": {"id": PAGE},
            "timestamp": Timestamp::now().as_millis()});
        event[kind] = body;
        let message = json!({"type": "event", "page_id": PAGE, "source": "messaging",
            "key": key, "event": event});
        match QueueMessage::from_json(&message.to_string()).unwrap() {
            QueueMessage::Event(e) => e,
            other => panic!("not an event: {other:?}"),
        }
    }

    async fn memory(p: &Processor<MemoryStore, FakeGraph, Router, MemoryQueue>) -> Memory {
        p.store
            .thread(&ThreadKey::psid(PageId::new(PAGE), Psid::new(PSID)))
            .await
            .unwrap()
            .bot_state
            .and_then(|s| s.get())
            .unwrap_or_default()
    }

    fn last_sent(p: &Processor<MemoryStore, FakeGraph, Router, MemoryQueue>) -> Value {
        serde_json::to_value(p.graph.sends().last().unwrap()).unwrap()["message"].clone()
    }

    #[tokio::test]
    async fn track_asks_for_the_number_remembers_asking_and_answers_the_next_number() {
        let p = processor();
        p.process_event(
            &queued(
                "p1",
                "postback",
                json!({"title": "Get Started", "payload": "GET_STARTED"}),
            ),
            None,
        )
        .await
        .unwrap();
        assert_eq!(
            last_sent(&p)["attachment"]["payload"]["template_type"],
            "button"
        );

        p.process_event(
            &queued(
                "p2",
                "postback",
                json!({"title": "Track my order", "payload": "TRACK"}),
            ),
            None,
        )
        .await
        .unwrap();
        assert_eq!(last_sent(&p)["text"], "What is your order number?");
        assert!(memory(&p).await.awaiting_order, "kept with the turn");

        p.process_event(
            &queued("m3", "message", json!({"mid": "m3", "text": "4711"})),
            None,
        )
        .await
        .unwrap();
        let answer = last_sent(&p);
        assert_eq!(answer["text"], "Order 4711 is on its way. Anything else?");
        assert_eq!(answer["quick_replies"][1]["payload"], "MORE_NO");
        assert_eq!(
            memory(&p).await,
            Memory {
                awaiting_order: false,
                last_order: Some("4711".to_owned())
            }
        );
        assert_eq!(
            p.graph.sender_actions(),
            vec![(Psid::new(PSID), SenderAction::TypingOn)],
            "typing shown before the answer"
        );

        // A bare number when nothing was asked gets the menu, not a lookup.
        p.process_event(
            &queued("m4", "message", json!({"mid": "m4", "text": "99"})),
            None,
        )
        .await
        .unwrap();
        assert_eq!(
            last_sent(&p)["attachment"]["payload"]["template_type"],
            "button"
        );
        assert_eq!(memory(&p).await.last_order.as_deref(), Some("4711"));

        p.process_event(
            &queued(
                "m5",
                "message",
                json!({"mid": "m5", "text": "No", "quick_reply": {"payload": "MORE_NO"}}),
            ),
            None,
        )
        .await
        .unwrap();
        assert_eq!(last_sent(&p)["text"], "Thanks, bye!");
    }

    #[tokio::test]
    async fn order_n_looks_up_at_any_time_and_a_repeat_delivery_sends_nothing_twice() {
        let p = processor();
        let event = queued("m1", "message", json!({"mid": "m1", "text": "Order #42"}));
        p.process_event(&event, None).await.unwrap();
        p.process_event(&event, None).await.unwrap();
        assert_eq!(p.graph.sends().len(), 1);
        assert_eq!(
            last_sent(&p)["text"],
            "Order 42 is on its way. Anything else?"
        );
    }
}
