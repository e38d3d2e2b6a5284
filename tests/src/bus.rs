//! A subscriber to the stack's bus, as a business would have one: a bus on the
//! emulator with a rule on `source` that sends everything to an SQS queue, and
//! what it received.

use aws_config::SdkConfig;
use serde_json::{Value, json};

use crate::rig::{self, PAGE_A};
use crate::{LOCAL_APP_SECRET, check_detail_schema, unique};

/// A bus on the emulator with a rule on `source` that sends to a new queue:
/// (bus name, the queue's URL).
pub async fn subscribed_bus(sdk: &SdkConfig) -> (String, String) {
    let events = aws_sdk_eventbridge::Client::new(sdk);
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let bus = unique("bus");
    events.create_event_bus().name(&bus).send().await.unwrap();
    let queue = sqs
        .create_queue()
        .queue_name(unique("subscriber"))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&queue)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    events
        .put_rule()
        .name("everything")
        .event_bus_name(&bus)
        .event_pattern(json!({"source": [processor::publish::SOURCE]}).to_string())
        .send()
        .await
        .unwrap();
    events
        .put_targets()
        .rule("everything")
        .event_bus_name(&bus)
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("subscriber")
                .arn(arn)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    (bus, queue)
}

/// Every EventBridge event the subscriber queue holds, read until it is empty.
pub async fn received(sdk: &SdkConfig, queue: &str) -> Vec<Value> {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let mut out = Vec::new();
    loop {
        let batch = sqs
            .receive_message()
            .queue_url(queue)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        let messages = batch.messages.unwrap_or_default();
        if messages.is_empty() {
            return out;
        }
        for m in messages {
            out.push(serde_json::from_str(m.body().unwrap()).unwrap());
            sqs.delete_message()
                .queue_url(queue)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
}

pub fn of_type<'a>(events: &'a [Value], detail_type: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["detail-type"] == detail_type)
        .map(|e| &e["detail"])
        .collect()
}

/// Every event is the backend's, and its detail matches its schema and carries
/// no token.
pub fn check(events: &[Value]) {
    for e in events {
        assert_eq!(e["source"], processor::publish::SOURCE, "{e}");
        let text = e["detail"].to_string();
        for secret in [
            rig::TOKEN_A,
            rig::TOKEN_B,
            LOCAL_APP_SECRET,
            "appsecret_proof",
        ] {
            assert!(!text.contains(secret), "{e}");
        }
        check_detail_schema(e["detail-type"].as_str().unwrap(), &e["detail"]);
    }
}

/// A command on the events queue, as the business's backend puts it there (in
/// the thread's group), in the shape the processor's trigger hands over.
pub fn command_message(body: Value, psid: &str) -> webhook::OutgoingMessage {
    webhook::OutgoingMessage {
        group_id: format!("{PAGE_A}:{psid}"),
        dedup_id: unique("cmd"),
        body: body.to_string(),
        kind: "command",
    }
}
