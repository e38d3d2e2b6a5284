//! How many AWS requests one webhook event costs: SQS calls per POST for the two
//! reference bodies of `functions/webhook/benches/data`, and DynamoDB requests per
//! event the processor handles, counted at the real SDK clients (an interceptor on
//! each) against the local emulator.
//!
//! ```sh
//! source scripts/lib.sh && ensure_venv && start_moto
//! cargo run -p integration-tests --example requests_per_event
//! stop_moto
//! ```
//!
//! DynamoDB requests ask for `ReturnConsumedCapacity: TOTAL` (added by the
//! interceptor); the capacity shown is what moto reports, which is not DynamoDB's
//! arithmetic (moto answers 0.5 for every item request).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::interceptors::{
    BeforeSerializationInterceptorContextMut, BeforeTransmitInterceptorContextRef,
    FinalizerInterceptorContextRef,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::types::ReturnConsumedCapacity;
use integration_tests::rig::{PAGE_A, rig, with_store};
use integration_tests::*;
use messenger_store::DynamoStore;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Requests by operation: (attempts sent, capacity units reported).
#[derive(Debug, Clone, Default)]
struct Counter(Arc<Mutex<BTreeMap<String, (u64, f64)>>>);

impl Counter {
    fn snapshot(&self) -> BTreeMap<String, (u64, f64)> {
        self.0.lock().unwrap().clone()
    }

    /// What was counted since `before`.
    fn since(&self, before: &BTreeMap<String, (u64, f64)>) -> BTreeMap<String, (u64, f64)> {
        self.snapshot()
            .into_iter()
            .map(|(op, (n, c))| {
                let (n0, c0) = before.get(&op).copied().unwrap_or_default();
                (op, (n - n0, c - c0))
            })
            .filter(|(_, (n, c))| *n > 0 || *c > 0.0)
            .collect()
    }
}

impl Intercept for Counter {
    fn name(&self) -> &'static str {
        "RequestCounter"
    }

    fn modify_before_serialization(
        &self,
        context: &mut BeforeSerializationInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        use aws_sdk_dynamodb::operation::*;
        let input = context.input_mut();
        let total = Some(ReturnConsumedCapacity::Total);
        if let Some(i) = input.downcast_mut::<update_item::UpdateItemInput>() {
            i.return_consumed_capacity = total;
        } else if let Some(i) = input.downcast_mut::<get_item::GetItemInput>() {
            i.return_consumed_capacity = total;
            if i.consistent_read != Some(true) {
                self.0
                    .lock()
                    .unwrap()
                    .entry(EVENTUAL.to_owned())
                    .or_default()
                    .0 += 1;
            }
        } else if let Some(i) = input.downcast_mut::<put_item::PutItemInput>() {
            i.return_consumed_capacity = total;
        } else if let Some(i) = input.downcast_mut::<query::QueryInput>() {
            i.return_consumed_capacity = total;
        } else if let Some(i) = input.downcast_mut::<delete_item::DeleteItemInput>() {
            i.return_consumed_capacity = total;
        }
        Ok(())
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let op = context
            .request()
            .headers()
            .get("x-amz-target")
            .and_then(|t| t.rsplit('.').next())
            .unwrap_or("other")
            .to_owned();
        self.0.lock().unwrap().entry(op).or_default().0 += 1;
        Ok(())
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // The request has gone by now: the answer is tallied on its own.
        let body: serde_json::Value = context
            .response()
            .and_then(|r| r.body().bytes())
            .and_then(|b| serde_json::from_slice(b).ok())
            .unwrap_or_default();
        let mut map = self.0.lock().unwrap();
        if body["__type"]
            .as_str()
            .is_some_and(|t| t.ends_with("ConditionalCheckFailedException"))
        {
            map.entry(CONDITION_FAILED.to_owned()).or_default().0 += 1;
        }
        if let Some(capacity) = body["ConsumedCapacity"]["CapacityUnits"].as_f64() {
            map.entry(CAPACITY.to_owned()).or_default().1 += capacity;
        }
        Ok(())
    }
}

/// Pseudo-operations: answers that were a failed condition, the capacity sum.
const CONDITION_FAILED: &str = "~of which refused by their condition";
const CAPACITY: &str = "~capacity";
/// GetItems read eventually consistent: half a read unit each on DynamoDB.
const EVENTUAL: &str = "~of which eventually consistent";

fn bench(name: &str) -> (String, String) {
    let data =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../functions/webhook/benches/data");
    let body = std::fs::read_to_string(data.join(format!("{name}.body"))).unwrap();
    let headers: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(data.join(format!("{name}.headers.json"))).unwrap(),
    )
    .unwrap();
    let sig = headers["x-hub-signature-256"].as_str().unwrap().to_owned();
    (body, sig)
}

fn describe(counts: &BTreeMap<String, (u64, f64)>, events: usize) -> (String, u64, f64) {
    let per = |n: u64| n as f64 / events as f64;
    let ops = counts
        .iter()
        .filter(|(op, _)| op.as_str() != CAPACITY)
        .map(|(op, (n, _))| format!("{} {:.2}", op.trim_start_matches('~'), per(*n)))
        .collect::<Vec<_>>()
        .join(", ");
    let total: u64 = counts
        .iter()
        .filter(|(op, _)| !op.starts_with('~'))
        .map(|(_, (n, _))| n)
        .sum();
    let capacity = counts.get(CAPACITY).map_or(0.0, |(_, c)| *c) / events as f64;
    (ops, total, capacity)
}

#[tokio::main]
async fn main() {
    // The handlers' EMF metric documents are kept in memory, off this table.
    let _metrics = signals::capture();
    let sdk = emulator().await;
    let counter = Counter::default();

    println!("webhook: SQS requests per POST (reference bodies, real SQS adapter)");
    println!("| body | events | SQS requests | per event | by operation |");
    println!("|---|---|---|---|---|");
    for name in ["single", "batch50"] {
        let queue = fifo_queue(&sdk).await;
        let bucket = bucket(&sdk).await;
        let mut env = webhook_env(&queue, &bucket);
        env.insert("APP_SECRET".into(), "bench-secret".into());
        let wired = webhook::from_env(&env, &sdk).await.unwrap();
        let sqs = aws_sdk_sqs::Client::from_conf(
            aws_sdk_sqs::config::Builder::from(&sdk)
                .interceptor(counter.clone())
                .build(),
        );
        let hook = webhook::Webhook {
            deletion: wired.deletion,
            receiver: webhook::Receiver {
                queue: webhook::SqsQueue::new(sqs, &queue),
                ..wired.receiver
            },
        };
        let (body, sig) = bench(name);
        let events = webhook::accept::split(body.as_bytes())
            .unwrap()
            .messages
            .len();
        let before = counter.snapshot();
        let response = hook.handle(post(&body, Some(&sig))).await.unwrap();
        assert_eq!(response.status(), 200, "{name}");
        let counts = counter.since(&before);
        let (ops, total, _) = describe(&counts, events);
        let per_event = total as f64 / events as f64;
        println!("| {name}.body | {events} | {total} | {per_event:.2} | {ops} |");
        assert_eq!(drain(&sdk, &queue).await.len(), events);
    }

    let rig = rig().await;
    let dynamo = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&rig.sdk)
            .interceptor(counter.clone())
            .build(),
    );
    let mut processor = with_store(&rig, DynamoStore::new(dynamo, &rig.table));
    // Seed tokens for every Page of the bodies (batch50's three): with none, a
    // Page's events would be parked, not processed.
    processor.credentials = processor::credentials::Credentials::seeded(
        [
            PAGE_A,
            "108801460350462",
            "282749490129311",
            "723422806798965",
        ]
        .into_iter()
        .map(|page| {
            (
                messenger_types::PageId::new(page),
                secrecy::SecretString::from(format!("token-of-{page}")),
            )
        })
        .collect(),
    );
    let process = |messages: Vec<webhook::OutgoingMessage>, label: &'static str| {
        let processor = &processor;
        async move {
            for (i, batch) in messages.chunks(10).enumerate() {
                let response = processor
                    .handle(sqs_event(&format!("{label}{i}"), batch), None)
                    .await;
                assert!(response.batch_item_failures.is_empty(), "{label}");
            }
        }
    };

    let texts: Vec<serde_json::Value> = (0..20)
        .map(|i| {
            text_event(
                PAGE_A,
                &format!("27{i:014}"),
                &format!("m_count_{i}"),
                "hello",
                60_000,
            )
        })
        .collect();
    let texts = queue_messages(&[(PAGE_A, texts, vec![])]);
    // One person writing 100 times: the thread's ledger archives its processed
    // entries now and then, and that write is counted here.
    let conversation: Vec<serde_json::Value> = (0..100)
        .map(|i| {
            text_event(
                PAGE_A,
                "2700000000000999",
                &format!("m_chat_{i}"),
                "hello again",
                200_000 - i * 1_000,
            )
        })
        .collect();
    let conversation = queue_messages(&[(PAGE_A, conversation, vec![])]);
    let (batch50, _) = bench("batch50");
    let batch50 = webhook::accept::split(batch50.as_bytes()).unwrap().messages;
    let scenarios: [(&str, Vec<webhook::OutgoingMessage>); 4] = [
        ("text inside the window, one reply sent", texts.clone()),
        ("the same texts delivered again (duplicates)", texts),
        (
            "one person's 100 texts in order, one reply each (the ledger's archive included)",
            conversation,
        ),
        (
            "batch50.body's 50 events (mixed kinds; outside the window now, no sends)",
            batch50,
        ),
    ];
    println!();
    println!("processor: DynamoDB requests per processed event (real DynamoDB adapter)");
    println!(
        "| scenario | events | requests per event | by operation, per event | capacity per event (moto) |"
    );
    println!("|---|---|---|---|---|");
    for (label, messages) in scenarios {
        let events = messages.len();
        let before = counter.snapshot();
        process(messages, "p").await;
        let counts = counter.since(&before);
        let (ops, total, capacity) = describe(&counts, events);
        let per_event = total as f64 / events as f64;
        println!("| {label} | {events} | {per_event:.2} | {ops} | {capacity:.2} |");
    }
}
