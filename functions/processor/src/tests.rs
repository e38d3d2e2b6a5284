//! The pipeline on the in-memory store, a fake Graph API and an in-memory queue:
//! every rule of at-most-once and every refusal, in milliseconds. The same
//! behaviours run against the emulator in `tests/` (the DynamoDB adapter).

use std::collections::BTreeMap;
use std::time::Duration;

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use conversation::testing::MemoryStore;
use event_queue::testing::MemoryQueue;
use graph_api::{ErrorClass, GraphError};
use messenger_store::{
    Consistency, Control, StoreErrorKind, ThreadChange, ThreadKey, ThreadState, ThreadStore,
};
use messenger_types::send::{MessageTag, MessagingType, OutgoingMessage};
use messenger_types::{AppId, PageId, Psid, QueueMessage, QueuedEvent, Timestamp};
use secrecy::SecretString;

use crate::bot::{Action, Bot, DefaultBot, Turn};
use crate::policy::{Basis, Refusal, TokenState};
use crate::testing::FakeGraph;
use crate::{EventOutcome, MessageOutcome, Outcome, ProcessError, Processor};

const PAGE: &str = "100000000000001";
const NOW_MS: i64 = 1_800_000_000_000;

fn now() -> Timestamp {
    Timestamp::from_millis(NOW_MS)
}

type TestProcessor<B> = Processor<MemoryStore, FakeGraph, B, MemoryQueue>;

fn processor<B: Bot>(bot: B) -> TestProcessor<B> {
    let tokens = BTreeMap::from([(
        PageId::new(PAGE),
        SecretString::from("test-page-token".to_owned()),
    )]);
    let mut p = Processor::new(
        MemoryStore::new(),
        FakeGraph::default(),
        bot,
        MemoryQueue::new(),
        tokens,
    );
    p.clock = now;
    p
}

/// A queued text message from `psid`, `age_ms` before now.
fn text(psid: &str, mid: &str, body: &str, age_ms: i64) -> String {
    let event = serde_json::json!({
        "sender": {"id": psid},
        "recipient": {"id": PAGE},
        "timestamp": NOW_MS - age_ms,
        "message": {"mid": mid, "text": body}
    });
    serde_json::json!({
        "type": "event",
        "page_id": PAGE,
        "source": "messaging",
        "key": format!("mid:{mid}"),
        "event": event
    })
    .to_string()
}

fn queued(body: &str) -> QueuedEvent {
    match QueueMessage::from_json(body).unwrap() {
        QueueMessage::Event(e) => e,
        other => panic!("not an event: {other:?}"),
    }
}

fn sqs(messages: &[(String, String)]) -> SqsEvent {
    let mut event = SqsEvent::default();
    for (i, (group, body)) in messages.iter().enumerate() {
        let mut m = SqsMessage::default();
        m.message_id = Some(format!("sqs-{i}"));
        m.body = Some(body.clone());
        m.attributes
            .insert("MessageGroupId".to_owned(), group.clone());
        event.records.push(m);
    }
    event
}

fn acted(outcome: MessageOutcome) -> Vec<Outcome> {
    match outcome {
        MessageOutcome::Event(EventOutcome::Acted { actions }) => actions,
        other => panic!("no actions: {other:?}"),
    }
}

#[tokio::test]
async fn a_text_gets_one_reply_and_its_outcome_is_recorded_typed() {
    let p = processor(DefaultBot);
    let event = queued(&text("2001", "m1", "hello", 1_000));
    let outcome = p.process_event(&event, None).await.unwrap();
    assert_eq!(
        acted(outcome),
        vec![Outcome::Sent {
            message_id: Some("m_1".into()),
            messaging_type: Some(MessagingType::Response),
            tag: None,
        }]
    );
    assert_eq!(p.graph.sends().len(), 1);
    let key = messenger_types::route(Some(PAGE), &event.event).key;
    let recorded = p.store.event(&key).unwrap();
    assert!(recorded.done);
    assert_eq!(
        EventOutcome::parse(recorded.outcome.as_deref().unwrap()).unwrap(),
        EventOutcome::Acted {
            actions: vec![Outcome::Sent {
                message_id: Some("m_1".into()),
                messaging_type: Some(MessagingType::Response),
                tag: None,
            }]
        }
    );
}

#[tokio::test]
async fn a_duplicate_delivery_sends_nothing() {
    let p = processor(DefaultBot);
    let body = text("2001", "m1", "hello", 1_000);
    p.process_event(&queued(&body), None).await.unwrap();
    let again = p.process_event(&queued(&body), None).await.unwrap();
    assert_eq!(again, MessageOutcome::Duplicate);
    assert_eq!(p.graph.sends().len(), 1);
}

#[tokio::test]
async fn a_replied_text_is_one_read_and_two_writes_and_a_duplicate_one_read() {
    let p = processor(DefaultBot);
    let body = text("2001", "m1", "hello", 1_000);
    p.process_event(&queued(&body), None).await.unwrap();
    assert_eq!(p.store.requests(), 3, "open, take (action started), done");
    p.process_event(&queued(&body), None).await.unwrap();
    assert_eq!(p.store.requests(), 4, "the duplicate: open only");
}

#[tokio::test]
async fn a_thread_written_between_the_read_and_the_take_is_read_again_and_replied_once() {
    let p = processor(DefaultBot);
    p.store.interfere_after_open(2);
    let outcome = p
        .process_event(&queued(&text("2001", "m1", "hello", 1_000)), None)
        .await
        .unwrap();
    assert!(matches!(acted(outcome)[..], [Outcome::Sent { .. }]));
    assert_eq!(p.graph.sends().len(), 1);
    // Three opens, two refused takes, one take, done.
    assert_eq!(p.store.requests(), 7);
}

#[tokio::test]
async fn a_turn_opens_with_an_eventual_read_unless_the_thread_was_just_written_or_the_read_was_stale()
 {
    use Consistency::{Eventual, Strong};
    let p = processor(DefaultBot);
    p.process_event(&queued(&text("2001", "m1", "hello", 2_000)), None)
        .await
        .unwrap();
    assert_eq!(
        p.store.turn_reads(),
        vec![Eventual],
        "a thread not written lately"
    );
    // The same person's next message, right after: a replica could still miss
    // the write just made, so the read is strongly consistent.
    p.process_event(&queued(&text("2001", "m2", "again", 1_000)), None)
        .await
        .unwrap();
    assert_eq!(p.store.turn_reads(), vec![Eventual, Strong]);
    // Another person, and the first read misses a write (the take is refused at
    // the version read): read again, strongly, and reply once.
    p.store.interfere_after_open(1);
    let outcome = p
        .process_event(&queued(&text("2002", "m3", "hello", 1_000)), None)
        .await
        .unwrap();
    assert!(matches!(acted(outcome)[..], [Outcome::Sent { .. }]));
    assert_eq!(
        p.store.turn_reads(),
        vec![Eventual, Strong, Eventual, Strong]
    );
    assert_eq!(p.graph.sends().len(), 3);
    // An optin stores its token before the take: never on a read that may be stale.
    let optin = serde_json::json!({
        "type": "event", "page_id": PAGE, "source": "messaging", "key": "optin:2003:1",
        "event": {
            "sender": {"id": "2003"}, "recipient": {"id": PAGE}, "timestamp": NOW_MS - 1_000,
            "optin": {"type": "one_time_notif_req", "payload": "shoes", "one_time_notif_token": "test-otn"}
        }
    })
    .to_string();
    p.process_event(&queued(&optin), None).await.unwrap();
    assert_eq!(p.store.turn_reads().last(), Some(&Strong));
}

#[tokio::test]
async fn a_thread_that_keeps_changing_hands_the_message_back_without_sending() {
    let p = processor(DefaultBot);
    p.store.interfere_after_open(u32::MAX);
    assert!(matches!(
        p.process_event(&queued(&text("2001", "m1", "hello", 1_000)), None)
            .await,
        Err(ProcessError::Busy)
    ));
    assert!(p.graph.sends().is_empty());
}

#[tokio::test]
async fn two_concurrent_deliveries_of_one_event_send_once() {
    let mut p = processor(DefaultBot);
    p.graph = FakeGraph::answering_after(Duration::from_millis(20));
    let body = text("2001", "m1", "hello", 1_000);
    let (first, second) = (queued(&body), queued(&body));
    let (a, b) = tokio::join!(
        p.process_event(&first, None),
        p.process_event(&second, None)
    );
    // One sends; the other finds the event claimed and is handed back (Busy), or
    // finds it done.
    let results = [a, b];
    assert_eq!(
        results
            .iter()
            .filter(|r| matches!(r, Ok(MessageOutcome::Event(_))))
            .count(),
        1,
        "{results:?}"
    );
    assert!(
        results
            .iter()
            .any(|r| matches!(r, Err(ProcessError::Busy) | Ok(MessageOutcome::Duplicate)))
    );
    assert_eq!(p.graph.sends().len(), 1);
}

#[tokio::test]
async fn a_crash_after_the_send_and_before_done_never_sends_twice() {
    let p = processor(DefaultBot);
    let body = text("2001", "m1", "hello", 1_000);
    // The send succeeds; recording it as done fails for good (a crash here).
    p.store.fail("step_turn", StoreErrorKind::Invalid, 1);
    assert!(p.process_event(&queued(&body), None).await.is_err());
    assert_eq!(p.graph.sends().len(), 1);
    // The redelivery finds the action started and not done: not repeated.
    p.store.expire_leases();
    let outcome = p.process_event(&queued(&body), None).await.unwrap();
    assert_eq!(acted(outcome), vec![Outcome::NotRepeated]);
    assert_eq!(p.graph.sends().len(), 1);
}

#[tokio::test]
async fn a_graph_error_meta_answered_is_retried_and_then_sends_once() {
    let p = processor(DefaultBot);
    let body = text("2001", "m1", "hello", 1_000);
    p.graph.fail_next(GraphError::new(
        ErrorClass::Transient,
        "service unavailable",
    ));
    assert!(matches!(
        p.process_event(&queued(&body), None).await,
        Err(ProcessError::Graph(_))
    ));
    let outcome = p.process_event(&queued(&body), None).await.unwrap();
    assert!(matches!(acted(outcome)[0], Outcome::Sent { .. }));
    assert_eq!(p.graph.sends().len(), 1);
}

#[tokio::test]
async fn a_permanent_graph_error_is_an_outcome_and_marks_the_person_unreachable() {
    let p = processor(DefaultBot);
    let mut e = GraphError::new(ErrorClass::Unreachable, "person unavailable");
    e.code = Some(551);
    p.graph.fail_next(e);
    let outcome = p
        .process_event(&queued(&text("2001", "m1", "hello", 1_000)), None)
        .await
        .unwrap();
    assert_eq!(
        acted(outcome),
        vec![Outcome::GraphRefused {
            class: ErrorClass::Unreachable,
            code: Some(551),
            subcode: None,
            token: None
        }]
    );
    let thread = messenger_store::ThreadStore::thread(
        &p.store,
        &ThreadKey::psid(PageId::new(PAGE), Psid::new("2001")),
    )
    .await
    .unwrap();
    assert!(thread.unreachable.is_some());
}

#[tokio::test]
async fn an_older_event_arriving_late_leaves_the_newer_window() {
    let p = processor(DefaultBot);
    p.process_event(&queued(&text("2001", "m2", "newer", 1_000)), None)
        .await
        .unwrap();
    // A day-old message delivered late: the window stays the newer message's, so
    // the late one's reply still goes out (the window is open).
    let outcome = p
        .process_event(&queued(&text("2001", "m1", "older", 25 * 3_600_000)), None)
        .await
        .unwrap();
    assert!(matches!(acted(outcome)[0], Outcome::Sent { .. }));
    let thread = messenger_store::ThreadStore::thread(
        &p.store,
        &ThreadKey::psid(PageId::new(PAGE), Psid::new("2001")),
    )
    .await
    .unwrap();
    assert_eq!(
        thread.last_user_interaction,
        Some(Timestamp::from_millis(NOW_MS - 1_000))
    );
}

/// A bot that asks for every kind of send the policy must refuse.
#[derive(Debug)]
struct RuleBreaker;

impl Bot for RuleBreaker {
    async fn decide(&self, turn: &Turn<'_>) -> Vec<Action> {
        let Some(me) = turn.thread_key.cloned() else {
            return vec![Action::PassThreadControl {
                to: AppId::new("263902037430900"),
                metadata: None,
            }];
        };
        let message = OutgoingMessage::text("hi");
        let send = |to: ThreadKey, basis: Basis| Action::Send {
            to,
            message: message.clone(),
            basis,
            thread_control: None,
        };
        let stranger = ThreadKey::psid(PageId::new(PAGE), Psid::new("9999"));
        let other_page = ThreadKey::psid(PageId::new("100000000000002"), Psid::new("2001"));
        let taken = ThreadKey::psid(PageId::new(PAGE), Psid::new("3001"));
        vec![
            send(stranger, Basis::Standard(MessagingType::Response)),
            send(me.clone(), Basis::Tag(MessageTag::PostPurchaseUpdate)),
            send(me.clone(), Basis::Standard(MessagingType::MessageTag)),
            send(
                me.clone(),
                Basis::Tag(MessageTag::Other("NON_PROMOTIONAL_SUBSCRIPTION".into())),
            ),
            send(other_page, Basis::Standard(MessagingType::Response)),
            send(
                me.clone(),
                Basis::OneTimeToken(TokenState {
                    used: false,
                    expires_at: Timestamp::from_millis(i64::MAX),
                }),
            ),
            send(taken, Basis::Standard(MessagingType::Response)),
        ]
    }
}

#[tokio::test]
async fn every_refusal_reason_is_a_typed_outcome_and_nothing_reaches_graph() {
    let p = processor(RuleBreaker);
    // Another app controls person 3001's thread.
    messenger_store::ThreadStore::update_thread(
        &p.store,
        &ThreadKey::psid(PageId::new(PAGE), Psid::new("3001")),
        &ThreadChange::Control(Control {
            ours: false,
            owner: Some(AppId::new("263902037430900")),
            since: now(),
        }),
    )
    .await
    .unwrap();
    let outcome = p
        .process_event(&queued(&text("2001", "m1", "hello", 1_000)), None)
        .await
        .unwrap();
    let codes: Vec<&str> = acted(outcome)
        .iter()
        .map(|o| match o {
            Outcome::Refused { reason } => reason.code(),
            other => panic!("not refused: {other:?}"),
        })
        .collect();
    assert_eq!(
        codes,
        vec![
            "outside_window",
            "retired_tag",
            "missing_tag",
            "unsupported_tag",
            "wrong_page",
            "otn_outside_notify",
            "not_thread_owner",
        ]
    );
    assert!(p.graph.sends().is_empty());
}

#[tokio::test]
async fn a_page_without_a_token_and_a_pass_without_a_person_are_refused() {
    let p = processor(DefaultBot);
    let body = text("2001", "m1", "hello", 1_000).replace(PAGE, "100000000000003");
    let outcome = p.process_event(&queued(&body), None).await.unwrap();
    assert_eq!(
        acted(outcome),
        vec![Outcome::Refused {
            reason: Refusal::NoPageToken {
                page: PageId::new("100000000000003")
            }
        }]
    );
    // An event that names no person (a Page-level event) has no thread to pass.
    let p = processor(RuleBreaker);
    let event = serde_json::json!({
        "type": "event", "page_id": PAGE, "source": "messaging", "key": "policy:1",
        "event": {"recipient": {"id": PAGE}, "timestamp": NOW_MS,
                  "policy_enforcement": {"action": "warning", "reason": "test"}}
    })
    .to_string();
    let outcome = p.process_event(&queued(&event), None).await.unwrap();
    assert_eq!(
        acted(outcome),
        vec![Outcome::Refused {
            reason: Refusal::NoThreadToPass
        }]
    );
}

#[tokio::test]
async fn groups_of_a_batch_run_concurrently() {
    let mut p = processor(DefaultBot);
    p.graph = FakeGraph::answering_after(Duration::from_millis(30));
    let mut messages: Vec<(String, String)> = (0..8)
        .map(|i| {
            (
                format!("{PAGE}:20{i:02}"),
                text(&format!("20{i:02}"), &format!("m{i}"), "hi", 1_000),
            )
        })
        .collect();
    // Two more messages of the first person, behind the first.
    messages.push((format!("{PAGE}:2000"), text("2000", "m8", "again", 900)));
    messages.push((format!("{PAGE}:2000"), text("2000", "m9", "and again", 800)));
    let response = p.handle(sqs(&messages), None).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(p.graph.sends().len(), 10);
    assert!(p.graph.most_in_flight() > 1, "groups ran one after another");
}

#[tokio::test]
async fn a_failed_message_hands_back_the_rest_of_its_group_only() {
    let p = processor(DefaultBot);
    let messages = vec![
        (format!("{PAGE}:2001"), "not json".to_owned()),
        (format!("{PAGE}:2001"), text("2001", "m2", "hello", 1_000)),
        (format!("{PAGE}:2002"), text("2002", "m3", "hello", 1_000)),
    ];
    let response = p.handle(sqs(&messages), None).await;
    let mut failed: Vec<String> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    failed.sort();
    assert_eq!(failed, vec!["sqs-0", "sqs-1"]);
    assert_eq!(p.graph.sends().len(), 1);
}

fn with_bus<B: Bot>(
    p: TestProcessor<B>,
) -> (TestProcessor<B>, std::sync::Arc<crate::testing::MemoryBus>) {
    let bus = std::sync::Arc::new(crate::testing::MemoryBus::default());
    let p = Processor {
        bus: Box::new(bus.clone()),
        ..p
    };
    (p, bus)
}

#[tokio::test]
async fn a_replied_text_publishes_the_event_received_and_the_message_sent() {
    let (p, bus) = with_bus(processor(DefaultBot));
    let event = queued(&text("2001", "m1", "hello", 1_000));
    p.process_event(&event, None).await.unwrap();
    let types: Vec<&str> = bus.published().iter().map(|e| e.detail_type).collect();
    assert_eq!(types, vec!["Event Received", "Message Sent"]);
    let received = &bus.details("Event Received")[0];
    assert_eq!(received["page_id"], PAGE);
    assert_eq!(received["psid"], "2001");
    assert_eq!(received["kind"], "message");
    assert_eq!(received["source"], "messaging");
    let key = messenger_types::route(Some(PAGE), &event.event).key;
    assert_eq!(received["key"], key.as_str());
    assert_eq!(received["timestamp"], NOW_MS - 1_000);
    assert_eq!(received["event"]["message"]["text"], "hello");
    let sent = &bus.details("Message Sent")[0];
    assert_eq!(sent["message_id"], "m_1");
    assert_eq!(sent["messaging_type"], "RESPONSE");
    assert_eq!(sent["psid"], "2001");
    assert_eq!(sent["event_key"], key.as_str());
    assert!(sent.get("tag").is_none());
}

#[tokio::test]
async fn a_refusal_is_published_with_its_reason_code() {
    let (p, bus) = with_bus(processor(DefaultBot));
    p.process_event(&queued(&text("2001", "m1", "hello", 25 * 3_600_000)), None)
        .await
        .unwrap();
    assert!(p.graph.sends().is_empty());
    let refused = bus.details("Send Refused");
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0]["reason"], "outside_window");
    assert_eq!(refused[0]["psid"], "2001");
}

#[tokio::test]
async fn a_bus_that_refuses_loses_no_event_and_the_redelivery_publishes_without_sending_again() {
    let (p, bus) = with_bus(processor(DefaultBot));
    // Every round of the first delivery's publish is refused.
    bus.refuse_next(3);
    let event = queued(&text("2001", "m1", "hello", 1_000));
    let first = p.process_event(&event, None).await;
    assert!(matches!(first, Err(ProcessError::Publish(_))), "{first:?}");
    assert!(bus.published().is_empty());
    // The reply went out once and the event is recorded done.
    assert_eq!(p.graph.sends().len(), 1);
    let key = messenger_types::route(Some(PAGE), &event.event).key;
    assert!(p.store.event(&key).unwrap().done);
    // The message is handed back; its redelivery is a duplicate that publishes.
    let again = p.process_event(&event, None).await.unwrap();
    assert_eq!(again, MessageOutcome::Duplicate);
    assert_eq!(p.graph.sends().len(), 1);
    let types: Vec<&str> = bus.published().iter().map(|e| e.detail_type).collect();
    assert_eq!(types, vec!["Event Received", "Message Sent"]);
    assert_eq!(bus.details("Message Sent")[0]["message_id"], "m_1");
}

#[tokio::test]
async fn entries_the_bus_refused_once_are_sent_again_in_the_same_delivery() {
    let (p, bus) = with_bus(processor(DefaultBot));
    bus.refuse_next(1);
    p.process_event(&queued(&text("2001", "m1", "hello", 1_000)), None)
        .await
        .unwrap();
    assert_eq!(bus.published().len(), 2);
}

#[tokio::test]
async fn a_handover_publishes_thread_control_changed_and_a_text_does_not() {
    let (p, bus) = with_bus(processor(DefaultBot));
    let pass = serde_json::json!({
        "type": "event", "page_id": PAGE, "source": "messaging", "key": "pass:2001:1",
        "event": {
            "sender": {"id": "2001"}, "recipient": {"id": PAGE}, "timestamp": NOW_MS - 1_000,
            "pass_thread_control": {"new_owner_app_id": "263902037430900", "metadata": "back"}
        }
    })
    .to_string();
    p.process_event(&queued(&pass), None).await.unwrap();
    let changed = bus.details("Thread Control Changed");
    assert_eq!(changed.len(), 1, "{:?}", bus.published());
    assert_eq!(changed[0]["owner_app_id"], "263902037430900");
    assert_eq!(changed[0]["ours"], true);
    assert_eq!(changed[0]["psid"], "2001");
    p.process_event(&queued(&text("2001", "m2", "hello", 500)), None)
        .await
        .unwrap();
    assert_eq!(bus.details("Thread Control Changed").len(), 1);
}

fn command(json: serde_json::Value) -> messenger_types::Command {
    match QueueMessage::from_json(&json.to_string()).unwrap() {
        QueueMessage::Command(c) => c,
        other => panic!("not a command: {other:?}"),
    }
}

fn send_command(id: &str, psid: &str, extra: serde_json::Value) -> messenger_types::Command {
    let mut body = serde_json::json!({
        "type": "send", "command_id": id, "page_id": PAGE,
        "recipient": {"id": psid}, "message": {"text": "Your order shipped"}
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    command(body)
}

fn completed(outcome: MessageOutcome) -> crate::command::CommandOutcome {
    match outcome {
        MessageOutcome::Command(c) => c,
        other => panic!("not a command outcome: {other:?}"),
    }
}

#[tokio::test]
async fn a_send_command_inside_the_window_sends_once_and_a_repeated_id_does_nothing() {
    use crate::command::CommandOutcome;
    let (p, bus) = with_bus(processor(DefaultBot));
    // The person wrote an hour ago (the bot replied).
    p.process_event(&queued(&text("2001", "m1", "hello", 3_600_000)), None)
        .await
        .unwrap();
    let sends_before = p.graph.sends().len();
    let c = send_command(
        "c1",
        "2001",
        serde_json::json!({"messaging_type": "RESPONSE"}),
    );
    let outcome = completed(p.process_command(&c, None).await.unwrap());
    assert!(
        matches!(
            &outcome,
            CommandOutcome::Done {
                action: Outcome::Sent {
                    messaging_type: Some(MessagingType::Response),
                    ..
                }
            }
        ),
        "{outcome:?}"
    );
    let sends = p.graph.sends();
    assert_eq!(sends.len(), sends_before + 1);
    assert_eq!(
        serde_json::to_value(&sends[sends_before]).unwrap()["message"]["text"],
        "Your order shipped"
    );
    let done = bus.details("Command Completed");
    assert_eq!(done.len(), 1);
    assert_eq!(done[0]["command_id"], "c1");
    assert_eq!(done[0]["type"], "send");
    assert_eq!(done[0]["outcome"]["outcome"], "done");
    assert_eq!(done[0]["outcome"]["action"]["outcome"], "sent");
    let sent: Vec<_> = bus
        .details("Message Sent")
        .into_iter()
        .filter(|d| d.get("command_id").is_some())
        .collect();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["command_id"], "c1");

    // The same command again: no second call, published again for a consumer
    // that missed it.
    let again = p.process_command(&c, None).await.unwrap();
    assert_eq!(again, MessageOutcome::CommandRepeated);
    assert_eq!(p.graph.sends().len(), sends_before + 1);
    assert_eq!(bus.details("Command Completed").len(), 2);
}

#[tokio::test]
async fn a_send_command_follows_the_window_and_human_agent_needs_a_human() {
    use crate::command::CommandOutcome;
    let p = processor(DefaultBot);
    // Last message 25 hours ago: outside the window, no call.
    p.process_event(&queued(&text("2001", "m1", "hello", 25 * 3_600_000)), None)
        .await
        .unwrap();
    let late = completed(
        p.process_command(&send_command("c1", "2001", serde_json::json!({})), None)
            .await
            .unwrap(),
    );
    assert!(
        matches!(&late, CommandOutcome::Done { action: Outcome::Refused { reason } } if reason.code() == "outside_window"),
        "{late:?}"
    );
    // HUMAN_AGENT at 6 days: sent when a person wrote it, refused otherwise.
    p.process_event(
        &queued(&text("2002", "m2", "help", 6 * 24 * 3_600_000)),
        None,
    )
    .await
    .unwrap();
    let tag = serde_json::json!({"messaging_type": "MESSAGE_TAG", "tag": "HUMAN_AGENT"});
    let robot = completed(
        p.process_command(&send_command("c2", "2002", tag.clone()), None)
            .await
            .unwrap(),
    );
    assert!(
        matches!(&robot, CommandOutcome::Done { action: Outcome::Refused { reason } } if reason.code() == "not_human_written"),
        "{robot:?}"
    );
    let mut human = tag;
    human["human"] = true.into();
    let agent = completed(
        p.process_command(&send_command("c3", "2002", human), None)
            .await
            .unwrap(),
    );
    assert!(
        matches!(&agent, CommandOutcome::Done { action: Outcome::Sent { tag: Some(t), .. } } if t == "HUMAN_AGENT"),
        "{agent:?}"
    );
    let sends = p.graph.sends();
    assert_eq!(sends.len(), 1, "only the human agent's message");
    let body = serde_json::to_value(&sends[0]).unwrap();
    assert_eq!(body["messaging_type"], "MESSAGE_TAG");
    assert_eq!(body["tag"], "HUMAN_AGENT");
}

fn otn_optin(psid: &str, topic: &str, token: &str, age_ms: i64) -> String {
    serde_json::json!({
        "type": "event", "page_id": PAGE, "source": "messaging",
        "key": format!("optin:{psid}:{token}"),
        "event": {
            "sender": {"id": psid}, "recipient": {"id": PAGE}, "timestamp": NOW_MS - age_ms,
            "optin": {"type": "one_time_notif_req", "payload": topic, "one_time_notif_token": token}
        }
    })
    .to_string()
}

#[tokio::test]
async fn a_send_with_otn_topic_spends_the_persons_oldest_token_once_per_command_id() {
    use crate::command::CommandOutcome;
    use messenger_store::TokenStatus;
    let (p, bus) = with_bus(processor(DefaultBot));
    // Two optins for "shoes", three and two days ago: the window is long closed.
    const DAY: i64 = 86_400_000;
    for (token, age) in [("otn-older", 3 * DAY), ("otn-newer", 2 * DAY)] {
        p.process_event(&queued(&otn_optin("2003", "shoes", token, age)), None)
            .await
            .unwrap();
    }
    let sends_before = p.graph.sends().len();
    let with_topic = serde_json::json!({"otn_topic": "shoes"});
    let first = send_command("n1", "2003", with_topic.clone());
    assert!(matches!(
        completed(p.process_command(&first, None).await.unwrap()),
        CommandOutcome::Done {
            action: Outcome::Sent {
                messaging_type: None,
                ..
            }
        }
    ));
    let sends = p.graph.sends();
    assert_eq!(sends.len(), sends_before + 1);
    let sent = serde_json::to_value(&sends[sends_before]).unwrap();
    assert_eq!(sent["recipient"]["one_time_notif_token"], "otn-older");
    assert_eq!(sent["message"]["text"], "Your order shipped");
    let status = |token: &str| {
        p.store
            .tokens_of(&PageId::new(PAGE), &messenger_types::Psid::new("2003"))
            .into_iter()
            .find(|t| t.token == token)
            .map(|t| t.status)
    };
    assert_eq!(status("otn-older"), Some(TokenStatus::Used));
    assert_eq!(status("otn-newer"), Some(TokenStatus::Active));

    // The same command again spends nothing more.
    assert_eq!(
        p.process_command(&first, None).await.unwrap(),
        MessageOutcome::CommandRepeated
    );
    assert_eq!(p.graph.sends().len(), sends_before + 1);
    assert_eq!(status("otn-newer"), Some(TokenStatus::Active));

    // A second command takes the other token; a third finds none.
    p.process_command(&send_command("n2", "2003", with_topic.clone()), None)
        .await
        .unwrap();
    assert_eq!(status("otn-newer"), Some(TokenStatus::Used));
    let third = completed(
        p.process_command(&send_command("n3", "2003", with_topic), None)
            .await
            .unwrap(),
    );
    assert_eq!(
        third,
        CommandOutcome::Done {
            action: Outcome::Refused {
                reason: crate::policy::Refusal::NoTokenForTopic {
                    topic: "shoes".to_owned()
                }
            }
        }
    );
    assert_eq!(p.graph.sends().len(), sends_before + 2);
    // Another topic's or another person's tokens are never used.
    p.process_event(
        &queued(&otn_optin("2004", "shoes", "otn-other-person", DAY)),
        None,
    )
    .await
    .unwrap();
    let other_topic = send_command("n4", "2003", serde_json::json!({"otn_topic": "boots"}));
    assert!(matches!(
        completed(p.process_command(&other_topic, None).await.unwrap()),
        CommandOutcome::Done {
            action: Outcome::Refused { .. }
        }
    ));
    // (The bot's confirmations of the old optins were refused outside the window.)
    let refused: Vec<_> = bus
        .details("Send Refused")
        .into_iter()
        .filter(|d| d.get("command_id").is_some())
        .map(|d| (d["command_id"].clone(), d["reason"].clone()))
        .collect();
    assert_eq!(
        refused,
        vec![
            (
                serde_json::json!("n3"),
                serde_json::json!("no_token_for_topic")
            ),
            (
                serde_json::json!("n4"),
                serde_json::json!("no_token_for_topic")
            )
        ]
    );
    let sent_with_token: Vec<_> = bus
        .details("Message Sent")
        .into_iter()
        .filter(|d| d.get("command_id").is_some())
        .collect();
    // n1 published twice (its repeat publishes again from the record), n2 once.
    let ids: std::collections::BTreeSet<_> = sent_with_token
        .iter()
        .map(|d| d["command_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["n1", "n2"].into());
    assert!(
        sent_with_token
            .iter()
            .all(|d| d["messaging_type"].is_null())
    );
}

#[tokio::test]
async fn a_token_send_meta_fails_for_a_moment_gives_the_token_back_and_the_redelivery_sends_once() {
    let p = processor(DefaultBot);
    p.process_event(
        &queued(&otn_optin("2003", "shoes", "otn-only", 86_400_000)),
        None,
    )
    .await
    .unwrap();
    let sends_before = p.graph.sends().len();
    p.graph.fail_next(GraphError::new(
        ErrorClass::Transient,
        "service unavailable",
    ));
    let c = send_command("n1", "2003", serde_json::json!({"otn_topic": "shoes"}));
    assert!(matches!(
        p.process_command(&c, None).await,
        Err(ProcessError::Graph(_))
    ));
    // Nothing went out, and the token was given back for the redelivery.
    assert_eq!(p.graph.sends().len(), sends_before);
    p.store.expire_leases();
    p.process_command(&c, None).await.unwrap();
    let sends = p.graph.sends();
    assert_eq!(sends.len(), sends_before + 1);
    assert_eq!(
        serde_json::to_value(&sends[sends_before]).unwrap()["recipient"]["one_time_notif_token"],
        "otn-only"
    );
    p.process_command(&c, None).await.unwrap();
    assert_eq!(p.graph.sends().len(), sends_before + 1);
}

#[tokio::test]
async fn an_invalid_command_says_which_field_and_calls_nothing() {
    use crate::command::CommandOutcome;
    let (p, bus) = with_bus(processor(DefaultBot));
    let pass = command(
        serde_json::json!({"type": "pass_thread_control", "command_id": "p1", "page_id": PAGE, "psid": "2001"}),
    );
    assert!(matches!(
        completed(p.process_command(&pass, None).await.unwrap()),
        CommandOutcome::Invalid { field, .. } if field == "target_app_id"
    ));
    assert!(p.graph.sends().is_empty());
    assert_eq!(bus.details("Command Completed").len(), 1);
}

#[tokio::test]
async fn forget_erases_the_person_and_a_copy_of_an_older_event_recreates_nothing() {
    use crate::command::CommandOutcome;
    let (p, bus) = with_bus(processor(DefaultBot));
    let hello = text("2001", "m1", "hello", 60_000);
    p.process_event(&queued(&hello), None).await.unwrap();
    p.process_event(
        &queued(&otn_optin("2001", "shoes", "otn-2001", 30_000)),
        None,
    )
    .await
    .unwrap();
    p.process_event(&queued(&text("2002", "m2", "hi", 60_000)), None)
        .await
        .unwrap();
    let page = PageId::new(PAGE);
    let person = |psid: &str| {
        messenger_store::ThreadKey::psid(page.clone(), messenger_types::Psid::new(psid))
    };
    let other_before = p.store.thread(&person("2002")).await.unwrap();
    let sends_before = p.graph.sends().len();

    let forget = command(
        serde_json::json!({"type": "forget", "command_id": "gdpr-1", "page_id": PAGE, "psid": "2001"}),
    );
    let CommandOutcome::Forgotten {
        erased,
        confirmation_code,
    } = completed(p.process_command(&forget, None).await.unwrap())
    else {
        panic!("not forgotten");
    };
    // The thread, its two ledger entries and the token.
    assert_eq!(erased, 4);
    assert_eq!(
        p.store.thread(&person("2001")).await.unwrap(),
        ThreadState::default()
    );
    assert!(
        p.store
            .tokens_of(&page, &messenger_types::Psid::new("2001"))
            .is_empty()
    );
    assert_eq!(p.store.thread(&person("2002")).await.unwrap(), other_before);

    // A copy of the person's earlier message (a redrive) is a duplicate: no
    // reply, no thread.
    assert_eq!(
        p.process_event(&queued(&hello), None).await.unwrap(),
        MessageOutcome::Duplicate
    );
    assert_eq!(p.graph.sends().len(), sends_before);
    assert_eq!(
        p.store.thread(&person("2001")).await.unwrap(),
        ThreadState::default()
    );

    // Forget again: nothing to erase, the same code.
    assert_eq!(
        completed(p.process_command(&forget, None).await.unwrap()),
        CommandOutcome::Forgotten {
            erased: 0,
            confirmation_code: confirmation_code.clone()
        }
    );
    let forgotten = bus.details("Person Forgotten");
    assert_eq!(forgotten.len(), 2);
    assert_eq!(forgotten[0]["psid"], "2001");
    assert_eq!(
        forgotten[1]["confirmation_code"],
        confirmation_code.as_str()
    );

    // The person writes again: a new conversation, and old copies still do nothing.
    p.process_event(&queued(&text("2001", "m3", "back again", -1_000)), None)
        .await
        .unwrap();
    assert_eq!(p.graph.sends().len(), sends_before + 1);
    assert_eq!(
        p.process_event(&queued(&hello), None).await.unwrap(),
        MessageOutcome::Duplicate
    );
    assert_eq!(p.graph.sends().len(), sends_before + 1);
}

#[tokio::test]
async fn with_the_bot_off_a_text_is_recorded_and_published_and_nothing_is_sent() {
    let (mut p, bus) = with_bus(processor(DefaultBot));
    p.bot_on = false;
    let outcome = p
        .process_event(&queued(&text("2001", "m1", "hello", 1_000)), None)
        .await
        .unwrap();
    assert_eq!(outcome, MessageOutcome::Event(EventOutcome::Recorded));
    assert!(p.graph.sends().is_empty());
    assert_eq!(bus.details("Event Received").len(), 1);
    // Commands are still obeyed.
    let c = send_command("c1", "2001", serde_json::json!({}));
    p.process_command(&c, None).await.unwrap();
    assert_eq!(p.graph.sends().len(), 1);
}

#[tokio::test]
async fn take_and_release_commands_call_graph_record_control_and_publish_it() {
    use crate::command::CommandOutcome;
    use std::sync::atomic::{AtomicI64, Ordering};
    // A clock that moves, so that the release is later than the take.
    fn ticking() -> Timestamp {
        static NOW: AtomicI64 = AtomicI64::new(NOW_MS);
        Timestamp::from_millis(NOW.fetch_add(1, Ordering::SeqCst))
    }
    let (mut p, bus) = with_bus(processor(DefaultBot));
    p.clock = ticking;
    let take = command(
        serde_json::json!({"type": "take_thread_control", "command_id": "t1", "page_id": PAGE, "psid": "2001"}),
    );
    assert_eq!(
        completed(p.process_command(&take, None).await.unwrap()),
        CommandOutcome::Done {
            action: Outcome::ControlTaken
        }
    );
    let release = command(
        serde_json::json!({"type": "release_thread_control", "command_id": "r1", "page_id": PAGE, "psid": "2001"}),
    );
    assert_eq!(
        completed(p.process_command(&release, None).await.unwrap()),
        CommandOutcome::Done {
            action: Outcome::ControlReleased
        }
    );
    assert_eq!(
        p.graph.controls(),
        vec![
            ("take", messenger_types::Psid::new("2001")),
            ("release", messenger_types::Psid::new("2001"))
        ]
    );
    let changed = bus.details("Thread Control Changed");
    assert_eq!(changed.len(), 2);
    assert_eq!(
        (&changed[0]["ours"], &changed[0]["idle"]),
        (&true.into(), &false.into())
    );
    assert_eq!(
        (&changed[1]["ours"], &changed[1]["idle"]),
        (&false.into(), &true.into())
    );
    // Released: the bot does not answer the thread until Meta routes it back.
    let thread = messenger_store::ThreadStore::thread(
        &p.store,
        &ThreadKey::psid(PageId::new(PAGE), messenger_types::Psid::new("2001")),
    )
    .await
    .unwrap();
    assert!(!thread.controlled_by_us());
    // Repeated: nothing called again.
    p.process_command(&release, None).await.unwrap();
    assert_eq!(p.graph.controls().len(), 2);
}

#[tokio::test]
async fn a_notify_reaches_each_person_once_with_their_oldest_token_whatever_the_topics_wording() {
    use messenger_store::TokenStatus;
    use messenger_types::{NotifyCommand, NotifyOne};
    const DAY: i64 = 86_400_000;
    let p = processor(DefaultBot);
    // 2005 tapped "Notify me" twice, worded two ways; 2006 once.
    for (psid, topic, token, age) in [
        ("2005", "Back in Stock", "otn-2005-older", 3 * DAY),
        ("2005", "  back   in STOCK ", "otn-2005-newer", 2 * DAY),
        ("2006", "back in stock", "otn-2006", DAY),
    ] {
        p.process_event(&queued(&otn_optin(psid, topic, token, age)), None)
            .await
            .unwrap();
    }
    let sends_before = p.graph.sends().len();
    let command: NotifyCommand = serde_json::from_value(serde_json::json!({
        "type": "notify", "page_id": PAGE, "topic": "back in stock",
        "message": {"text": "It's back!"}
    }))
    .unwrap();
    let outcome = p.fan_out(&command, "notify-1", None).await.unwrap();
    assert_eq!(
        outcome,
        MessageOutcome::NotifyQueued {
            recipients: 2,
            refused_by_queue: 0,
            follow_up: false
        }
    );
    let work: Vec<NotifyOne> = p
        .queue
        .accepted()
        .iter()
        .map(|m| serde_json::from_str(&m.body).unwrap())
        .collect();
    assert_eq!(
        work.iter().map(|w| w.psid.as_str()).collect::<Vec<_>>(),
        ["2005", "2006"]
    );
    // Each person's work delivered twice (SQS's deduplication lasts five minutes):
    // the copy finds the token this notification spent and sends nothing.
    for one in work.iter().chain(&work) {
        p.notify_one(one).await.unwrap();
    }
    let sent: Vec<String> = p.graph.sends()[sends_before..]
        .iter()
        .map(|s| serde_json::to_value(s).unwrap()["recipient"]["one_time_notif_token"].to_string())
        .collect();
    assert_eq!(sent, ["\"otn-2005-older\"", "\"otn-2006\""]);
    assert_eq!(
        p.notify_one(&work[0]).await.unwrap(),
        MessageOutcome::Duplicate
    );
    let status = |psid: &str, token: &str| {
        p.store
            .tokens_of(&PageId::new(PAGE), &messenger_types::Psid::new(psid))
            .into_iter()
            .find(|t| t.token == token)
            .map(|t| t.status)
    };
    assert_eq!(status("2005", "otn-2005-older"), Some(TokenStatus::Used));
    assert_eq!(status("2005", "otn-2005-newer"), Some(TokenStatus::Active));
    assert_eq!(status("2006", "otn-2006"), Some(TokenStatus::Used));

    // Another notify spends the person's next token; one more finds none left.
    let again = NotifyOne {
        notify_id: "notify-2".to_owned(),
        topic: "BACK IN STOCK".to_owned(),
        ..work[0].clone()
    };
    assert!(matches!(
        p.notify_one(&again).await.unwrap(),
        MessageOutcome::Notified(Outcome::Sent { .. })
    ));
    assert_eq!(status("2005", "otn-2005-newer"), Some(TokenStatus::Used));
    let third = NotifyOne {
        notify_id: "notify-3".to_owned(),
        ..again
    };
    assert!(matches!(
        p.notify_one(&third).await.unwrap(),
        MessageOutcome::Notified(Outcome::Refused {
            reason: Refusal::NoTokenForTopic { .. }
        })
    ));
    assert_eq!(p.graph.sends().len(), sends_before + 3);
}

#[tokio::test]
async fn a_notification_meta_could_not_take_for_a_moment_is_sent_by_the_redelivery_with_the_same_token()
 {
    use messenger_types::{NotifyCommand, NotifyOne};
    let p = processor(DefaultBot);
    for (token, age) in [("otn-first", 200_000_000), ("otn-second", 100_000_000)] {
        p.process_event(&queued(&otn_optin("2007", "restock", token, age)), None)
            .await
            .unwrap();
    }
    let sends_before = p.graph.sends().len();
    let command: NotifyCommand = serde_json::from_value(serde_json::json!({
        "type": "notify", "page_id": PAGE, "topic": "Restock", "message": {"text": "Restocked"}
    }))
    .unwrap();
    p.fan_out(&command, "notify-r", None).await.unwrap();
    let one: NotifyOne = serde_json::from_str(&p.queue.accepted()[0].body).unwrap();
    p.graph.fail_next(GraphError::new(
        ErrorClass::Transient,
        "service unavailable",
    ));
    assert!(matches!(
        p.notify_one(&one).await,
        Err(ProcessError::Graph(_))
    ));
    // The token was given back, so the redelivery is not taken for a duplicate.
    p.notify_one(&one).await.unwrap();
    p.notify_one(&one).await.unwrap();
    let sends = p.graph.sends();
    assert_eq!(sends.len(), sends_before + 1);
    assert_eq!(
        serde_json::to_value(&sends[sends_before]).unwrap()["recipient"]["one_time_notif_token"],
        "otn-first"
    );
}

#[tokio::test]
async fn an_account_links_code_is_kept_on_the_thread_and_never_published() {
    let (p, bus) = with_bus(processor(DefaultBot));
    let linked = serde_json::json!({
        "type": "event", "page_id": PAGE, "source": "messaging", "key": "account_linking:2008:1",
        "event": {"sender": {"id": "2008"}, "recipient": {"id": PAGE}, "timestamp": NOW_MS - 1_000,
                  "account_linking": {"status": "linked", "authorization_code": "acct-code-2008"}}
    })
    .to_string();
    p.process_event(&queued(&linked), None).await.unwrap();
    let thread = p
        .store
        .thread(&ThreadKey::psid(PageId::new(PAGE), Psid::new("2008")))
        .await
        .unwrap();
    let link = thread.account_link.unwrap();
    assert_eq!(
        link.authorization_code.as_ref().map(|c| c.expose()),
        Some("acct-code-2008")
    );
    let received = &bus.details("Event Received")[0];
    assert_eq!(received["event"]["account_linking"]["status"], "linked");
    for published in bus.published() {
        let text = serde_json::to_string(&published.detail).unwrap();
        assert!(!text.contains("acct-code-2008"), "{text}");
    }
}

/// A queued echo of a message the Page sent to `psid`, `age_ms` before now, written
/// by `app_id` (none: the Page Inbox).
fn echo(psid: &str, mid: &str, app_id: Option<&str>, age_ms: i64) -> String {
    let mut message = serde_json::json!({"mid": mid, "text": "an agent writes", "is_echo": true});
    if let Some(app) = app_id {
        message["app_id"] = serde_json::json!(app);
    }
    serde_json::json!({
        "type": "event",
        "page_id": PAGE,
        "source": "messaging",
        "key": format!("mid:{mid}"),
        "event": {
            "sender": {"id": PAGE},
            "recipient": {"id": psid},
            "timestamp": NOW_MS - age_ms,
            "message": message
        }
    })
    .to_string()
}

#[tokio::test]
async fn a_human_reply_quiets_the_bot_on_that_thread_for_the_pause_and_this_apps_echo_does_not() {
    let mut p = processor(DefaultBot);
    p.app_id = Some(messenger_types::AppId::new("555"));
    let hour = 3_600_000;
    // Staff replied from the Page Inbox an hour ago (no app_id), another app two
    // hours ago, this app itself an hour ago, and the Inbox 13 hours ago.
    let cases = [
        ("3001", None, hour, false),
        ("3002", Some("999"), 2 * hour, false),
        ("3003", Some("555"), hour, true),
        ("3004", None, 13 * hour, true),
    ];
    for (psid, app, age, _) in cases {
        p.process_event(&queued(&echo(psid, &format!("e{psid}"), app, age)), None)
            .await
            .unwrap();
    }
    assert!(p.graph.sends().is_empty(), "an echo is never answered");
    for (psid, _, _, replied) in cases {
        let before = p.graph.sends().len();
        p.process_event(
            &queued(&text(psid, &format!("t{psid}"), "hello?", 1_000)),
            None,
        )
        .await
        .unwrap();
        assert_eq!(
            p.graph.sends().len() - before,
            usize::from(replied),
            "person {psid}"
        );
    }
    // Commands from the business still go out on a paused thread.
    let outcome = p
        .process_command(
            &send_command("c-paused", "3001", serde_json::json!({})),
            None,
        )
        .await
        .unwrap();
    assert!(matches!(outcome, MessageOutcome::Command(_)), "{outcome:?}");
    assert_eq!(
        p.graph.sends().last().map(|s| s.recipient.clone()),
        Some(messenger_types::send::Recipient::Id(
            messenger_types::Psid::new("3001")
        ))
    );
}

#[tokio::test]
async fn with_no_pause_a_human_reply_never_quiets_the_bot() {
    let mut p = processor(DefaultBot);
    p.human_pause = std::time::Duration::ZERO;
    p.process_event(&queued(&echo("3005", "e5", None, 60_000)), None)
        .await
        .unwrap();
    p.process_event(&queued(&text("3005", "t5", "hello?", 1_000)), None)
        .await
        .unwrap();
    assert_eq!(p.graph.sends().len(), 1);
}

/// A bot that answers every text and hands the thread to the Page Inbox with the
/// same call (the Send API's inline `thread_control`).
struct HandOverWithTheReply;

impl Bot for HandOverWithTheReply {
    async fn decide(&self, turn: &Turn<'_>) -> Vec<Action> {
        turn.thread_key
            .map(|to| Action::Send {
                to: to.clone(),
                message: OutgoingMessage::text("A person will answer here."),
                basis: Basis::Standard(MessagingType::Response),
                thread_control: Some(messenger_types::send::InlineThreadControl::pass(
                    AppId::new(crate::bot::PAGE_INBOX_APP_ID),
                )),
            })
            .into_iter()
            .collect()
    }
}

#[tokio::test]
async fn a_reply_with_an_inline_pass_is_one_call_and_leaves_the_thread_with_the_inbox() {
    let p = processor(HandOverWithTheReply);
    let outcome = p
        .process_event(&queued(&text("2001", "m1", "help", 1_000)), None)
        .await
        .unwrap();
    assert!(matches!(acted(outcome).as_slice(), [Outcome::Sent { .. }]));
    let sends = p.graph.sends();
    assert_eq!(sends.len(), 1);
    assert_eq!(
        serde_json::to_value(&sends[0]).unwrap()["thread_control"],
        serde_json::json!({"app_id": crate::bot::PAGE_INBOX_APP_ID, "control_type": "pass"})
    );
    assert!(p.graph.passes().is_empty(), "no second call");
    let thread = p
        .store
        .thread(&ThreadKey::psid(PageId::new(PAGE), Psid::new("2001")))
        .await
        .unwrap();
    let control = thread.control.unwrap();
    assert!(!control.ours);
    assert_eq!(
        control.owner.as_ref().map(AppId::as_str),
        Some(crate::bot::PAGE_INBOX_APP_ID)
    );
}
