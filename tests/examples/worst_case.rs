//! What one call of the processor costs at its worst, measured against dependencies
//! that accept the connection and never answer: DynamoDB, SQS and EventBridge
//! through the processor's own SDK configuration (`processor::budget::SDK_TIMEOUTS`,
//! the SDK's retries included), and the Send API through its Graph client. Then the
//! processor's margins, which are sums of these bounds, beside the function's timeout.
//!
//! ```sh
//! cargo run -p integration-tests --example worst_case
//! ```
//!
//! Needs nothing running: the stalled endpoints are listeners of its own on
//! 127.0.0.1. Takes about half a minute (each call waits out its bound).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::config::{Credentials, Region};
use processor::budget;
use secrecy::SecretString;

/// A listener that takes every connection and never writes a byte back.
async fn stalled() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    url
}

async fn timed<T, E: std::fmt::Display>(
    what: &str,
    bound: Duration,
    call: impl std::future::Future<Output = Result<T, E>>,
) {
    let started = Instant::now();
    let result = call.await;
    let took = started.elapsed();
    let how = match result {
        Ok(_) => "answered (unexpected)".to_owned(),
        Err(e) => {
            let e = e.to_string();
            e.chars().take(60).collect()
        }
    };
    println!(
        "{what:<34} {:>6.2} s   bound {:>4.1} s   {how}",
        took.as_secs_f64(),
        bound.as_secs_f64()
    );
}

/// One `GetItem` of an item that does not matter: the endpoint never answers.
fn get_item(
    client: &aws_sdk_dynamodb::Client,
) -> impl std::future::Future<
    Output = Result<
        aws_sdk_dynamodb::operation::get_item::GetItemOutput,
        aws_sdk_dynamodb::error::SdkError<aws_sdk_dynamodb::operation::get_item::GetItemError>,
    >,
> {
    client
        .get_item()
        .table_name("t")
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S("x".to_owned()),
        )
        .send()
}

#[tokio::main]
async fn main() {
    let endpoint = stalled().await;
    let sdk = app_config::aws_sdk_config_with(budget::SDK_TIMEOUTS)
        .await
        .to_builder()
        .endpoint_url(&endpoint)
        .region(Region::new("us-east-1"))
        .build();
    let credentials = Credentials::new("example", "example", None, None, "worst-case");
    let dynamo = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&sdk)
            .credentials_provider(credentials.clone())
            .build(),
    );
    let sqs = aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::config::Builder::from(&sdk)
            .credentials_provider(credentials.clone())
            .build(),
    );
    let events = aws_sdk_eventbridge::Client::from_conf(
        aws_sdk_eventbridge::config::Builder::from(&sdk)
            .credentials_provider(credentials.clone())
            .build(),
    );
    println!(
        "processor SDK timeouts: connect {:?}, attempt {:?}, operation {:?}\n",
        budget::SDK_TIMEOUTS.connect,
        budget::SDK_TIMEOUTS.attempt,
        budget::SDK_TIMEOUTS.operation
    );

    timed(
        "DynamoDB GetItem (stalled)",
        budget::AWS_CALL,
        get_item(&dynamo),
    )
    .await;
    timed(
        "SQS SendMessage (stalled)",
        budget::AWS_CALL,
        sqs.send_message()
            .queue_url(format!("{endpoint}/123456789012/q.fifo"))
            .message_body("{}")
            .message_group_id("g")
            .message_deduplication_id("d")
            .send(),
    )
    .await;
    timed(
        "EventBridge PutEvents (stalled)",
        budget::AWS_CALL,
        events
            .put_events()
            .entries(
                aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                    .source("messenger-backend")
                    .detail_type("Event Received")
                    .detail("{}")
                    .build(),
            )
            .send(),
    )
    .await;

    let graph = graph_api::GraphClient::new(graph_api::GraphConfig {
        base_url: stalled().await,
        ..graph_api::GraphConfig::default()
    })
    .unwrap();
    let request: messenger_types::send::SendRequest = serde_json::from_value(
        serde_json::json!({"recipient": {"id": "2"}, "messaging_type": "RESPONSE", "message": {"text": "hi"}}),
    )
    .unwrap();
    timed(
        "Graph Send API (stalled)",
        budget::GRAPH_CALL,
        graph.send(
            &messenger_types::PageId::new("1"),
            &SecretString::from("example".to_owned()),
            &request,
        ),
    )
    .await;

    let old = app_config::DEFAULT_SDK_TIMEOUTS;
    let before = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(
            &app_config::aws_sdk_config_with(old)
                .await
                .to_builder()
                .endpoint_url(&endpoint)
                .region(Region::new("us-east-1"))
                .build(),
        )
        .credentials_provider(credentials)
        .build(),
    );
    timed(
        "DynamoDB GetItem, default timeouts",
        old.operation,
        get_item(&before),
    )
    .await;

    println!("\nmargins (sums of the bounds above; processor/src/budget.rs):");
    println!(
        "  per message     {:>5.1} s   {} AWS calls + slack",
        budget::MIN_TIME_PER_MESSAGE.as_secs_f64(),
        budget::MESSAGE_CALLS.len()
    );
    println!(
        "  per action      {:>5.1} s   {} AWS calls + a Graph call + slack",
        budget::MIN_TIME_PER_ACTION.as_secs_f64(),
        budget::ACTION_CALLS.len()
    );
    println!(
        "  per fan-out page{:>5.1} s   {} AWS calls + slack",
        budget::MIN_TIME_PER_FAN_OUT_PAGE.as_secs_f64(),
        budget::FAN_OUT_PAGE_CALLS
    );
    println!(
        "  message + first action {:.1} s of the processor's 60 s timeout",
        (budget::MIN_TIME_PER_MESSAGE + budget::MIN_TIME_PER_ACTION).as_secs_f64()
    );
}
