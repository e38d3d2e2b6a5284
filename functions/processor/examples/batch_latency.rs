//! How long one SQS batch of 10 texts from 10 people takes when the Graph API
//! answers each call after 200 ms: the FIFO groups one after another (as the
//! processor did before), and concurrently (as it does now). The store is the
//! in-memory one, so the figure is the pipeline's own, without DynamoDB's latency.
//!
//!   cargo run --release -p processor --example batch_latency
//!
//! Prints one line per mode: the median and the slowest of several runs.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use conversation::testing::MemoryStore;
use event_queue::testing::MemoryQueue;
use messenger_types::{PageId, Timestamp};
use processor::Processor;
use processor::bot::DefaultBot;
use processor::testing::FakeGraph;
use secrecy::SecretString;

const PAGE: &str = "100000000000001";
const GRAPH_DELAY: Duration = Duration::from_millis(200);
const RUNS: usize = 5;

fn batch(now_ms: i64, round: usize) -> SqsEvent {
    let mut event = SqsEvent::default();
    for person in 0..10 {
        let psid = format!("2000000000000{person:03}");
        let mid = format!("m_{round}_{person}");
        let body = serde_json::json!({
            "type": "event", "page_id": PAGE, "source": "messaging", "key": format!("message:{mid}"),
            "event": {"sender": {"id": psid}, "recipient": {"id": PAGE}, "timestamp": now_ms - 1_000,
                      "message": {"mid": mid, "text": "hello"}}
        });
        let mut m = SqsMessage::default();
        m.message_id = Some(format!("sqs-{round}-{person}"));
        m.body = Some(body.to_string());
        m.attributes
            .insert("MessageGroupId".to_owned(), format!("{PAGE}:{psid}"));
        event.records.push(m);
    }
    event
}

async fn measure(concurrency: usize) -> Vec<Duration> {
    let mut times = Vec::with_capacity(RUNS);
    for round in 0..RUNS {
        let tokens = BTreeMap::from([(PageId::new(PAGE), SecretString::from("t".to_owned()))]);
        let mut p = Processor::new(
            MemoryStore::new(),
            FakeGraph::answering_after(GRAPH_DELAY),
            DefaultBot,
            MemoryQueue::new(),
            tokens,
        );
        p.group_concurrency = concurrency;
        let event = batch(Timestamp::now().as_millis(), round);
        let started = Instant::now();
        let response = p.handle(event, None).await;
        times.push(started.elapsed());
        assert!(response.batch_item_failures.is_empty());
        assert_eq!(p.graph.sends().len(), 10);
    }
    times.sort();
    times
}

#[tokio::main]
async fn main() {
    println!(
        "batch of 10 texts from 10 people, Graph answering in {GRAPH_DELAY:?}, {RUNS} runs each"
    );
    for (label, concurrency) in [
        ("groups one after another (before)", 1),
        (
            "groups concurrently (after)",
            processor::MAX_CONCURRENT_GROUPS,
        ),
    ] {
        let times = measure(concurrency).await;
        println!(
            "{label:<36} median {:>7.1} ms   slowest {:>7.1} ms",
            times[RUNS / 2].as_secs_f64() * 1e3,
            times[RUNS - 1].as_secs_f64() * 1e3
        );
    }
}
