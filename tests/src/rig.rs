//! A processor wired as in production against a fresh table, a fresh FIFO events
//! queue and a fake Graph API, with helpers to drive it the way Lambda's SQS
//! trigger would.

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub use conversation::outcome::{EventOutcome, Outcome};
pub use conversation::send_policy::Refusal;
use std::collections::BTreeMap;

use aws_sdk_dynamodb::types::AttributeValue;
use messenger_store::DynamoStore;
use processor::bot::Bot;
use processor::{AwsProcessor, Processor};
use secrecy::SecretString;
use serde_json::{Value, json};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::*;

pub const PAGE_A: &str = "100000000000001";
pub const PAGE_B: &str = "100000000000002";
pub const TOKEN_A: &str = "page-a-token-for-tests";
pub const TOKEN_B: &str = "page-b-token-for-tests";
pub const HOUR: i64 = 3_600_000;
pub const DAY: i64 = 24 * HOUR;

#[derive(Debug)]
pub struct Rig {
    pub sdk: SdkConfig,
    pub table: String,
    pub queue: String,
    pub graph: MockServer,
    pub processor: AwsProcessor,
}

pub fn env(table: &str, queue: &str, graph: &MockServer) -> BTreeMap<String, String> {
    [
        ("TABLE_NAME", table.to_owned()),
        ("EVENTS_QUEUE_URL", queue.to_owned()),
        ("GRAPH_API_BASE_URL", graph.uri()),
        ("GRAPH_API_VERSION", "v23.0".to_owned()),
        ("APP_SECRET", LOCAL_APP_SECRET.to_owned()),
        (
            "PAGE_ACCESS_TOKENS",
            json!({ PAGE_A: TOKEN_A, PAGE_B: TOKEN_B }).to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// A fresh table, a fake Graph API answering every call with success, and a
/// processor wired to both.
pub async fn rig() -> Rig {
    let sdk = emulator().await;
    let table = table(&sdk).await;
    let queue = fifo_queue(&sdk).await;
    let graph = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path_regex(r"^/v23\.0/[0-9]+/messages$"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"recipient_id": "x", "message_id": "m_sent"})),
        )
        .with_priority(10)
        .mount(&graph)
        .await;
    Mock::given(method("POST"))
        .and(path_regex(r"^/v23\.0/[0-9]+/pass_thread_control$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"success": true})))
        .with_priority(10)
        .mount(&graph)
        .await;
    let processor = processor::from_env(&env(&table, &queue, &graph), &sdk)
        .await
        .unwrap();
    Rig {
        sdk,
        table,
        queue,
        graph,
        processor,
    }
}

/// A Graph API client for the rig's fake Graph API.
fn graph_client(rig: &Rig) -> graph_api::GraphClient {
    graph_api::GraphClient::new(graph_api::GraphConfig {
        base_url: rig.graph.uri(),
        version: "v23.0".to_owned(),
        app_secret: None,
        ..graph_api::GraphConfig::default()
    })
    .unwrap()
}

/// A processor with another bot, on the same table and Graph API.
pub fn with_bot<B: Bot>(
    rig: &Rig,
    bot: B,
) -> Processor<DynamoStore, graph_api::GraphClient, B, event_queue::SqsQueue> {
    let graph = graph_client(rig);
    let store = dynamo_store(rig);
    let tokens = [(
        messenger_types::PageId::new(PAGE_A),
        SecretString::from(TOKEN_A),
    )]
    .into();
    let queue = event_queue::SqsQueue::new(aws_sdk_sqs::Client::new(&rig.sdk), &rig.queue);
    Processor::new(store, graph, bot, queue, tokens)
}

/// Every call the fake Graph API received: (path, Authorization header, JSON body).
pub async fn graph_calls(graph: &MockServer) -> Vec<(String, String, Value)> {
    graph
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|r| {
            let auth = r
                .headers
                .get("authorization")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            let body = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
            (r.url.path().to_owned(), auth, body)
        })
        .collect()
}

pub async fn sends(graph: &MockServer) -> Vec<(String, String, Value)> {
    graph_calls(graph)
        .await
        .into_iter()
        .filter(|(p, _, _)| p.ends_with("/messages"))
        .collect()
}

pub fn failed_ids(response: &aws_lambda_events::sqs::SqsBatchResponse) -> Vec<String> {
    response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect()
}

/// The outcome recorded for the event with this mid (typed, read back from its
/// record). Panics when the event has no recorded outcome.
pub async fn outcome_of(rig: &Rig, mid: &str) -> EventOutcome {
    let key = messenger_types::EventKey::from_readable(format!("message:{mid}"));
    let entry = ledger(rig)
        .await
        .into_iter()
        .find(|(_, e)| e.name == messenger_store::entry_name(&key))
        .unwrap_or_else(|| panic!("no ledger entry for {mid}"))
        .1;
    entry_outcome(&entry).unwrap_or_else(|| panic!("no outcome recorded for {mid}: {entry:?}"))
}

/// Every ledger entry on the table's threads, with its thread's `pk`.
pub async fn ledger(rig: &Rig) -> Vec<(String, messenger_store::LedgerEntry)> {
    scan_table(rig)
        .await
        .iter()
        .filter(|i| attr_s(i, "sk") == "THREAD")
        .flat_map(|i| {
            let pk = attr_s(i, "pk");
            messenger_store::ledger_entries(i)
                .into_iter()
                .map(move |e| (pk.clone(), e))
        })
        .collect()
}

/// The outcome recorded on a thread's ledger entry.
pub fn entry_outcome(entry: &messenger_store::LedgerEntry) -> Option<EventOutcome> {
    let text = entry.outcome.as_deref()?;
    Some(EventOutcome::parse(text).unwrap_or_else(|e| panic!("unreadable outcome {text}: {e}")))
}

/// The outcome recorded on a processed event's own item (events that name no
/// person).
pub fn recorded_outcome(
    item: &std::collections::HashMap<String, AttributeValue>,
) -> Option<EventOutcome> {
    let text = item.get("outcome")?.as_s().ok()?;
    Some(EventOutcome::parse(text).unwrap_or_else(|e| panic!("unreadable outcome {text}: {e}")))
}

/// The outcome of an event's only action.
pub fn only_action(outcome: &EventOutcome) -> &Outcome {
    match outcome.actions() {
        [one] => one,
        other => panic!("expected one action, got {other:?}"),
    }
}

/// A fake Graph API whose message sends fail with `status` and `body`.
pub async fn failing_graph(rig: &Rig, status: u16, body: Value) {
    rig.graph.reset().await;
    Mock::given(method("POST"))
        .and(path_regex(r"/messages$"))
        .respond_with(ResponseTemplate::new(status).set_body_json(body))
        .mount(&rig.graph)
        .await;
}

/// Runs the events queue through the processor until it is empty, as the SQS
/// trigger would (batches of 10, handed-back messages delivered again), with up
/// to `workers` invocations at once. Returns how many messages were processed.
pub async fn run_queue(rig: &Rig, workers: usize) -> usize {
    let mut processed = 0;
    for round in 0..50 {
        let queued = drain(&rig.sdk, &rig.queue).await;
        if queued.is_empty() {
            return processed;
        }
        let messages: Vec<webhook::OutgoingMessage> = queued
            .into_iter()
            .map(|q| webhook::OutgoingMessage {
                group_id: q.group_id,
                dedup_id: q.dedup_id,
                body: q.body.to_string(),
                kind: "queued",
            })
            .collect();
        processed += messages.len();
        let batches: Vec<&[webhook::OutgoingMessage]> = messages.chunks(10).collect();
        for wave in batches.chunks(workers.max(1)) {
            let handled =
                futures_util::future::join_all(wave.iter().enumerate().map(|(i, batch)| {
                    let event = sqs_event(&format!("run{round}-{i}"), batch);
                    rig.processor.handle(event, None)
                }))
                .await;
            // Messages handed back go on the queue again, as SQS would redeliver them.
            for (batch, response) in wave.iter().zip(handled) {
                for failed in failed_ids(&response) {
                    let index: usize = failed.rsplit('-').next().unwrap().parse().unwrap();
                    let m = &batch[index];
                    aws_sdk_sqs::Client::new(&rig.sdk)
                        .send_message()
                        .queue_url(&rig.queue)
                        .message_body(&m.body)
                        .message_group_id(&m.group_id)
                        .message_deduplication_id(format!("{}-{round}", m.dedup_id))
                        .send()
                        .await
                        .unwrap();
                }
            }
        }
    }
    panic!("the queue did not empty in 50 rounds");
}

/// Every item of the rig's table (a consistent scan, page after page).
pub async fn scan_table(rig: &Rig) -> Vec<std::collections::HashMap<String, AttributeValue>> {
    let dynamo = aws_sdk_dynamodb::Client::new(&rig.sdk);
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let page = dynamo
            .scan()
            .table_name(&rig.table)
            .consistent_read(true)
            .set_exclusive_start_key(start)
            .send()
            .await
            .unwrap();
        items.extend(page.items().iter().cloned());
        start = page.last_evaluated_key().cloned();
        if start.is_none() {
            return items;
        }
    }
}

/// A processor with the default bot on the rig's Graph API and queue, over another
/// store (a wrapper around the rig's table, say), with both Pages' tokens.
pub fn with_store<
    S: messenger_store::Store + messenger_store::TokenStore + messenger_store::PageRegistry,
>(
    rig: &Rig,
    store: S,
) -> Processor<S, graph_api::GraphClient, processor::bot::DefaultBot, event_queue::SqsQueue> {
    let graph = graph_client(rig);
    let tokens = [
        (
            messenger_types::PageId::new(PAGE_A),
            SecretString::from(TOKEN_A),
        ),
        (
            messenger_types::PageId::new(PAGE_B),
            SecretString::from(TOKEN_B),
        ),
    ]
    .into();
    let queue = event_queue::SqsQueue::new(aws_sdk_sqs::Client::new(&rig.sdk), &rig.queue);
    Processor::new(store, graph, processor::bot::DefaultBot, queue, tokens)
}

/// The rig's table as the processor's store.
pub fn dynamo_store(rig: &Rig) -> DynamoStore {
    DynamoStore::new(aws_sdk_dynamodb::Client::new(&rig.sdk), &rig.table)
}

/// A string attribute of an item ("" when absent).
pub fn attr_s(item: &std::collections::HashMap<String, AttributeValue>, name: &str) -> String {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .cloned()
        .unwrap_or_default()
}

/// A number attribute of an item.
pub fn attr_n(item: &std::collections::HashMap<String, AttributeValue>, name: &str) -> Option<i64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
}
