//! Live Page tokens and parking, on the in-memory store: a Page without a usable
//! token keeps its messages, a stored token replays them, and Graph refusing a
//! token stops the calls for that Page.

use std::collections::BTreeMap;

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use conversation::testing::MemoryStore;
use event_queue::testing::MemoryQueue;
use graph_api::{ErrorClass, GraphError};
use messenger_store::{PageRegistry, PageStatus};
use messenger_types::{PageId, Timestamp};
use secrecy::SecretString;

use crate::bot::DefaultBot;
use crate::credentials::{Credentials, TestKey};
use crate::testing::FakeGraph;
use crate::{MessageOutcome, Processor, park};

const PAGE: &str = "100000000000009";
const NOW_MS: i64 = 1_800_000_000_000;

fn now() -> Timestamp {
    Timestamp::from_millis(NOW_MS)
}

type P = Processor<MemoryStore, FakeGraph, DefaultBot, MemoryQueue>;

/// A processor that publishes on an in-memory bus.
fn publishing() -> (P, std::sync::Arc<crate::testing::MemoryBus>) {
    let bus = std::sync::Arc::new(crate::testing::MemoryBus::default());
    let mut p = processor();
    p.bus = Box::new(bus.clone());
    (p, bus)
}

/// A processor whose Pages have no seed token: only the table's count.
fn processor() -> P {
    let mut p = Processor::new(
        MemoryStore::new(),
        FakeGraph::default(),
        DefaultBot,
        MemoryQueue::new(),
        BTreeMap::new(),
    );
    p.credentials = Credentials::new(
        BTreeMap::new(),
        Box::new(TestKey),
        std::time::Duration::from_secs(300),
    );
    p.clock = now;
    p
}

fn text(psid: &str, mid: &str, age_ms: i64) -> String {
    serde_json::json!({
        "type": "event",
        "page_id": PAGE,
        "source": "messaging",
        "key": format!("mid:{mid}"),
        "event": {
            "sender": {"id": psid},
            "recipient": {"id": PAGE},
            "timestamp": NOW_MS - age_ms,
            "message": {"mid": mid, "text": "hello"}
        }
    })
    .to_string()
}

fn sqs(bodies: &[(String, String)]) -> SqsEvent {
    let mut event = SqsEvent::default();
    for (i, (group, body)) in bodies.iter().enumerate() {
        let mut m = SqsMessage::default();
        m.message_id = Some(format!("sqs-{i}-{}", body.len()));
        m.body = Some(body.clone());
        m.attributes
            .insert("MessageGroupId".to_owned(), group.clone());
        event.records.push(m);
    }
    event
}

/// What the queue took since the last call, as the next SQS batch.
fn requeued(p: &P) -> SqsEvent {
    let batch: Vec<(String, String)> = p
        .queue
        .accepted()
        .into_iter()
        .map(|m| (m.group_id, m.body))
        .collect();
    p.queue.clear();
    sqs(&batch)
}

async fn status(p: &P) -> Option<PageStatus> {
    p.store
        .page_record(&PageId::new(PAGE))
        .await
        .unwrap()
        .map(|r| r.status)
}

#[tokio::test]
async fn an_event_for_a_page_without_a_token_is_kept_and_answered_once_a_token_is_stored() {
    let p = processor();
    let group = format!("{PAGE}:2001");
    let batch = sqs(&[
        (group.clone(), text("2001", "m1", 1_000)),
        (group.clone(), text("2001", "m2", 500)),
    ]);
    let response = p.handle(batch.clone(), None).await;
    // Kept, so acknowledged: nothing in the DLQ, no Graph call.
    assert!(response.batch_item_failures.is_empty());
    assert!(p.graph.sends().is_empty());
    assert_eq!(status(&p).await, Some(PageStatus::Missing));
    let page = PageId::new(PAGE);
    let parked = p.store.parked(&page, None, 10).await.unwrap();
    assert_eq!(parked.len(), 2);
    assert!(parked.iter().all(|m| m.group == group));

    // The token stored: both messages back on the queue, in order, once.
    let token = SecretString::from("new-page-token".to_owned());
    let replayed = park::store_token(&p.store, &TestKey, &p.queue, &page, &token, now())
        .await
        .unwrap();
    assert_eq!(replayed.queued, 2);
    assert_eq!(status(&p).await, Some(PageStatus::Active));
    assert!(p.store.parked(&page, None, 10).await.unwrap().is_empty());
    let again = requeued(&p);
    assert_eq!(again.records.len(), 2);
    assert_eq!(
        again.records[0].body.as_deref(),
        batch.records[0].body.as_deref()
    );
    // This instance had cached MISSING: it looks the Page up again before parking.
    let response = p.handle(again, None).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(
        p.graph.sends().len(),
        2,
        "each parked message answered once"
    );
    assert!(p.graph.send_tokens().iter().all(|t| t == "new-page-token"));
    // A second replay finds nothing.
    let none = park::replay(&p.store, &p.queue, &page).await.unwrap();
    assert_eq!(none.queued, 0);
}

#[tokio::test]
async fn a_page_whose_token_graph_refuses_is_invalid_and_its_next_events_are_parked_without_a_call()
{
    let p = processor();
    let page = PageId::new(PAGE);
    let old = SecretString::from("old-page-token".to_owned());
    park::store_token(&p.store, &TestKey, &p.queue, &page, &old, now())
        .await
        .unwrap();
    p.graph.fail_next(GraphError {
        http_status: Some(401),
        code: Some(190),
        subcode: Some(460),
        ..GraphError::new(ErrorClass::TokenInvalid, "the session was invalidated")
    });
    let group = format!("{PAGE}:2002");
    p.handle(sqs(&[(group.clone(), text("2002", "m1", 1_000))]), None)
        .await;
    assert_eq!(status(&p).await, Some(PageStatus::Invalid));
    let record = p.store.page_record(&page).await.unwrap().unwrap();
    assert!(record.reason.unwrap().contains("190/460"));

    // The next events: no call at all, kept.
    let response = p
        .handle(
            sqs(&[
                (group.clone(), text("2002", "m2", 900)),
                (group.clone(), text("2002", "m3", 800)),
            ]),
            None,
        )
        .await;
    assert!(response.batch_item_failures.is_empty());
    assert!(p.graph.sends().is_empty());
    assert_eq!(p.store.parked(&page, None, 10).await.unwrap().len(), 2);

    // A new token: both replayed and answered with it.
    let new = SecretString::from("new-page-token".to_owned());
    park::store_token(
        &p.store,
        &TestKey,
        &p.queue,
        &page,
        &new,
        now().plus_millis(1),
    )
    .await
    .unwrap();
    p.handle(requeued(&p), None).await;
    assert_eq!(p.graph.send_tokens(), vec!["new-page-token"; 2]);
}

#[tokio::test]
async fn a_refusal_of_an_old_token_does_not_mark_a_newer_one_invalid() {
    let p = processor();
    let page = PageId::new(PAGE);
    let first = SecretString::from("first".to_owned());
    park::store_token(&p.store, &TestKey, &p.queue, &page, &first, now())
        .await
        .unwrap();
    // This instance reads the first token...
    let group = format!("{PAGE}:2003");
    p.handle(sqs(&[(group.clone(), text("2003", "m1", 1_000))]), None)
        .await;
    // ...the operator stores a second one, and a call made with the first fails.
    let second = SecretString::from("second".to_owned());
    park::store_token(
        &p.store,
        &TestKey,
        &p.queue,
        &page,
        &second,
        now().plus_millis(5),
    )
    .await
    .unwrap();
    p.graph.fail_next(GraphError {
        code: Some(190),
        ..GraphError::new(ErrorClass::TokenInvalid, "expired")
    });
    p.handle(sqs(&[(group.clone(), text("2003", "m2", 900))]), None)
        .await;
    assert_eq!(status(&p).await, Some(PageStatus::Active));
    // The next message reads the second token and is answered with it.
    p.handle(sqs(&[(group, text("2003", "m3", 800))]), None)
        .await;
    assert_eq!(
        p.graph.send_tokens().last().map(String::as_str),
        Some("second")
    );
}

#[tokio::test]
async fn forget_and_commands_that_call_no_graph_api_are_never_parked() {
    let p = processor();
    let forget = serde_json::json!({
        "type": "forget", "command_id": "f-1", "page_id": PAGE, "psid": "2004"
    })
    .to_string();
    let outcome = p
        .process_message(&sqs(&[(format!("{PAGE}:2004"), forget)]).records[0], None)
        .await
        .unwrap();
    assert!(matches!(outcome, MessageOutcome::Command(_)), "{outcome:?}");
    assert!(
        p.store
            .parked(&PageId::new(PAGE), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn forget_erases_the_persons_parked_messages_and_no_one_elses() {
    let p = processor();
    let page = PageId::new(PAGE);
    p.handle(
        sqs(&[
            (format!("{PAGE}:2005"), text("2005", "m1", 1_000)),
            (format!("{PAGE}:2006"), text("2006", "m2", 1_000)),
        ]),
        None,
    )
    .await;
    assert_eq!(p.store.parked(&page, None, 10).await.unwrap().len(), 2);
    let forget = serde_json::json!({
        "type": "forget", "command_id": "f-2", "page_id": PAGE, "psid": "2005"
    })
    .to_string();
    p.handle(sqs(&[(format!("{PAGE}:2005"), forget)]), None)
        .await;
    let left = p.store.parked(&page, None, 10).await.unwrap();
    assert_eq!(left.len(), 1);
    assert!(left[0].body.contains("2006"));
}

#[tokio::test]
async fn a_page_status_change_is_published_once_and_never_with_the_token() {
    let (p, bus) = publishing();
    let page = PageId::new(PAGE);
    let group = format!("{PAGE}:2010");
    // Events before any token: the first park makes the Page MISSING, once.
    p.handle(sqs(&[(group.clone(), text("2010", "m1", 1_000))]), None)
        .await;
    p.credentials.forget(&page);
    p.handle(sqs(&[(group.clone(), text("2010", "m2", 900))]), None)
        .await;
    assert_eq!(
        bus.details("Page Status Changed"),
        vec![serde_json::json!({"page_id": PAGE, "status": "MISSING", "reason": "no token"})]
    );

    // A token, then Graph refuses it: INVALID with the error's codes.
    let token = SecretString::from("page-token-that-dies".to_owned());
    park::store_token(&p.store, &TestKey, &p.queue, &page, &token, now())
        .await
        .unwrap();
    p.queue.clear();
    p.graph.fail_next(GraphError {
        http_status: Some(401),
        code: Some(190),
        subcode: Some(460),
        ..GraphError::new(ErrorClass::TokenInvalid, "the session was invalidated")
    });
    p.handle(sqs(&[(group.clone(), text("2010", "m3", 800))]), None)
        .await;
    let published = bus.details("Page Status Changed");
    assert_eq!(published.len(), 2);
    assert_eq!(
        published[1],
        serde_json::json!({"page_id": PAGE, "status": "INVALID", "reason": "token_invalid (Graph 190/460)"})
    );
    // Parked from now on: nothing more is published.
    p.handle(sqs(&[(group, text("2010", "m4", 700))]), None)
        .await;
    assert_eq!(bus.details("Page Status Changed").len(), 2);
    assert!(!format!("{:?}", bus.published()).contains("page-token-that-dies"));
}

#[tokio::test]
async fn the_pages_last_event_is_noted_once_per_instance_every_few_minutes() {
    let p = processor();
    let page = PageId::new(PAGE);
    let token = SecretString::from("page-token".to_owned());
    park::store_token(&p.store, &TestKey, &p.queue, &page, &token, now())
        .await
        .unwrap();
    let before = p.store.requests();
    let group = format!("{PAGE}:2011");
    p.handle(sqs(&[(group.clone(), text("2011", "m1", 1_000))]), None)
        .await;
    let first = p.store.requests() - before;
    let record = p.store.page_record(&page).await.unwrap().unwrap();
    assert_eq!(record.last_event_at, Some(now()));

    // The next event on this instance, within SEEN_EVERY: no write for it.
    let before = p.store.requests();
    p.handle(sqs(&[(group, text("2011", "m2", 900))]), None)
        .await;
    let second = p.store.requests() - before;
    assert_eq!(
        first - second,
        2,
        "the first event of the Page read its record and noted the event; the second did neither"
    );
}

#[tokio::test]
async fn a_page_meta_restricted_stops_sending_and_its_events_are_parked() {
    let (p, bus) = publishing();
    let page = PageId::new(PAGE);
    let token = SecretString::from("page-token".to_owned());
    park::store_token(&p.store, &TestKey, &p.queue, &page, &token, now())
        .await
        .unwrap();
    p.graph.fail_next(GraphError {
        http_status: Some(400),
        code: Some(10),
        subcode: Some(1893063),
        ..GraphError::new(ErrorClass::PageRestricted, "Page temporarily restricted")
    });
    let group = format!("{PAGE}:2012");
    p.handle(sqs(&[(group.clone(), text("2012", "m1", 1_000))]), None)
        .await;
    let record = p.store.page_record(&page).await.unwrap().unwrap();
    assert_eq!(record.status, PageStatus::Invalid);
    assert_eq!(
        record.reason.as_deref(),
        Some("page_restricted (Graph 10/1893063)")
    );
    assert_eq!(bus.details("Page Status Changed").len(), 1);
    // The next event: parked, no call.
    p.handle(sqs(&[(group, text("2012", "m2", 900))]), None)
        .await;
    assert!(p.graph.sends().is_empty());
    assert_eq!(p.store.parked(&page, None, 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_replay_request_puts_the_parked_messages_back_under_the_processors_own_role() {
    let p = processor();
    let page = PageId::new(PAGE);
    let group = format!("{PAGE}:2013");
    p.handle(
        sqs(&[
            (group.clone(), text("2013", "m1", 1_000)),
            (group.clone(), text("2013", "m2", 900)),
        ]),
        None,
    )
    .await;
    assert_eq!(p.store.parked(&page, None, 10).await.unwrap().len(), 2);

    // What `page store-token` does: the token stored, and one request queued.
    let token = SecretString::from("page-token".to_owned());
    park::store_token_and_request_replay(&p.store, &TestKey, &p.queue, &page, &token, now())
        .await
        .unwrap();
    let request = requeued(&p);
    assert_eq!(request.records.len(), 1);
    let body = request.records[0].body.clone().unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap(),
        serde_json::json!({"type": "replay_parked", "page_id": PAGE})
    );
    assert_eq!(
        p.store.parked(&page, None, 10).await.unwrap().len(),
        2,
        "nothing replayed before the processor takes the request"
    );

    // The processor takes it: both back on the queue, in order, and then answered.
    let response = p.handle(request, None).await;
    assert!(response.batch_item_failures.is_empty());
    assert!(p.store.parked(&page, None, 10).await.unwrap().is_empty());
    let replayed = requeued(&p);
    assert_eq!(replayed.records.len(), 2);
    assert!(
        replayed
            .records
            .iter()
            .all(|m| m.attributes["MessageGroupId"] == group)
    );
    p.handle(replayed, None).await;
    assert_eq!(p.graph.send_tokens(), vec!["page-token"; 2]);
}
