//! The processor's sample events in `events/` are exactly what the webhook queues for
//! the sample delivery, so `sam local invoke ProcessorFunction` and `cargo lambda
//! invoke processor` see what production sees. `UPDATE_EVENTS=1` rewrites them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use integration_tests::*;
use serde_json::{Value, json};

const QUEUE_ARN: &str =
    "arn:aws:sqs:us-east-1:123456789012:messenger-backend-EventsQueue-1A2B3C4D5E6F.fifo";
/// 2026-11-21T14:00:01Z, a second after the sample delivery's events.
const SENT: i64 = 1_795_269_601_000;

fn record(n: usize, group: &str, dedup: &str, body: &str) -> Value {
    json!({
        "messageId": format!("0f6e3f7a-5b1c-4d2e-9a8b-{n:012}"),
        "receiptHandle": format!("AQEB-sample-receipt-handle-{n}"),
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": SENT.to_string(),
            "SequenceNumber": format!("18889{n:015}"),
            "MessageGroupId": group,
            "SenderId": "AROAEXAMPLEROLEID:messenger-backend-WebhookFunction",
            "MessageDeduplicationId": dedup,
            "ApproximateFirstReceiveTimestamp": (SENT + 20).to_string()
        },
        "messageAttributes": {},
        "eventSource": "aws:sqs",
        "eventSourceARN": QUEUE_ARN,
        "awsRegion": "us-east-1"
    })
}

fn expected_batch() -> Value {
    let post = event_json("webhook-post.json");
    let body = post["body"].as_str().unwrap();
    let split = webhook::accept::split(body.as_bytes()).unwrap();
    let records: Vec<Value> = split
        .messages
        .iter()
        .enumerate()
        .map(|(n, m)| record(n + 1, &m.group_id, &m.dedup_id, &m.body))
        .collect();
    json!({ "Records": records })
}

fn expected_notify() -> Value {
    let command = json!({
        "type": "notify", "page_id": "100000000000002", "topic": "back in stock",
        "message": {"text": "Back in stock: the green jacket, size L"}
    });
    json!({ "Records": [record(1, "notify:100000000000002:back-in-stock", "notify-2026-11-21-back-in-stock", &command.to_string())] })
}

/// A `send` command with a misspelt field (`mesage`) on its third delivery, then
/// the same command written right, on the same thread.
fn expected_unreadable() -> Value {
    let group = "100000000000001:2000000000000001";
    let command = |id: &str, field: &str| {
        let mut c = json!({
            "type": "send", "command_id": id, "page_id": "100000000000001",
            "recipient": {"id": "2000000000000001"}, "messaging_type": "RESPONSE"
        });
        c[field] = json!({"text": "Your order shipped"});
        c.to_string()
    };
    let mut typo = record(1, group, "sample-typo", &command("sample-typo", "mesage"));
    // Its third delivery: the first two went back to the queue.
    typo["attributes"]["ApproximateReceiveCount"] = json!("3");
    json!({ "Records": [
        typo,
        record(2, group, "sample-fixed", &command("sample-fixed", "message")),
    ] })
}

fn check(name: &str, expected: Value) {
    let path = events_dir().join(name);
    if std::env::var_os("UPDATE_EVENTS").is_some() {
        let text = serde_json::to_string_pretty(&expected).unwrap() + "\n";
        std::fs::write(&path, text).unwrap();
        return;
    }
    assert_eq!(
        event_json(name),
        expected,
        "{name} is out of date: run UPDATE_EVENTS=1 cargo test -p integration-tests --test samples"
    );
}

#[test]
fn the_processor_batch_sample_is_what_the_webhook_queues_for_the_post_sample() {
    check("processor-sqs-batch.json", expected_batch());
    // And it is a valid Lambda SQS event the processor's types read, 8 messages in
    // the webhook's groups.
    let event: aws_lambda_events::sqs::SqsEvent =
        serde_json::from_value(event_json("processor-sqs-batch.json")).unwrap();
    assert_eq!(event.records.len(), 8);
    assert!(
        event
            .records
            .iter()
            .all(|r| r.attributes.contains_key("MessageGroupId"))
    );
}

#[test]
fn the_notify_sample_is_a_documented_notify_command() {
    check("processor-notify.json", expected_notify());
    let event: aws_lambda_events::sqs::SqsEvent =
        serde_json::from_value(event_json("processor-notify.json")).unwrap();
    let body = event.records[0].body.as_deref().unwrap();
    let command = messenger_types::queue::QueueMessage::from_json(body).unwrap();
    assert!(matches!(
        command,
        messenger_types::queue::QueueMessage::Notify(_)
    ));
}

#[test]
fn the_unreadable_sample_is_a_misspelt_command_then_a_good_one_on_the_same_thread() {
    check("processor-unreadable.json", expected_unreadable());
    let event: aws_lambda_events::sqs::SqsEvent =
        serde_json::from_value(event_json("processor-unreadable.json")).unwrap();
    let read: Vec<bool> = event
        .records
        .iter()
        .map(|r| {
            messenger_types::queue::QueueMessage::from_json(r.body.as_deref().unwrap()).is_ok()
        })
        .collect();
    assert_eq!(read, [false, true]);
    let group = |i: usize| event.records[i].attributes.get("MessageGroupId").cloned();
    assert_eq!(group(0), group(1));
}
