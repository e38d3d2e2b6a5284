//! Harness for the end-to-end tests: AWS clients bound to the local emulator that
//! `scripts/test` starts, fresh resources per test, and the sample events of
//! `events/`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod bus;
pub mod faults;
pub mod logs;
pub mod otn;
pub mod rig;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub use app_config::SdkConfig;

/// The app secret and verify token the samples in `events/` are made for.
pub const LOCAL_APP_SECRET: &str = "local-app-secret";
pub const LOCAL_VERIFY_TOKEN: &str = "local-verify-token";

/// The SDK configuration for the emulator. Refuses to run against anything but a
/// loopback endpoint, so a test can never touch a real AWS account.
pub async fn emulator() -> SdkConfig {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
    assert!(
        endpoint.starts_with("http://127.0.0.1:") || endpoint.starts_with("http://localhost:"),
        "AWS_ENDPOINT_URL is {endpoint:?}: these tests need the local AWS emulator; run them with scripts/test"
    );
    // The emulator shares two cores with the test run (and a first call to a
    // service imports its whole backend): give it more time than AWS gets.
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(std::time::Duration::from_secs(5))
        .operation_attempt_timeout(std::time::Duration::from_secs(60))
        .operation_timeout(std::time::Duration::from_secs(120))
        .build();
    app_config::aws_sdk_config()
        .await
        .to_builder()
        .timeout_config(timeouts)
        .build()
}

/// A name no other test (or earlier run against the same emulator) uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Creates a FIFO queue as the template does (content-based deduplication off:
/// the webhook supplies the deduplication id) and returns its URL.
pub async fn fifo_queue(sdk: &SdkConfig) -> String {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    sqs.create_queue()
        .queue_name(format!("{}.fifo", unique("events")))
        .attributes(QueueAttributeName::FifoQueue, "true")
        .attributes(QueueAttributeName::ContentBasedDeduplication, "false")
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_owned()
}

pub async fn bucket(sdk: &SdkConfig) -> String {
    let name = unique("quarantine").to_lowercase();
    webhook::s3_client(sdk)
        .create_bucket()
        .bucket(&name)
        .send()
        .await
        .unwrap();
    name
}

/// A message as it sits on the queue.
#[derive(Debug, Clone)]
pub struct Queued {
    pub body: serde_json::Value,
    pub group_id: String,
    pub dedup_id: String,
}

/// Every body kept in the quarantine bucket: (key, bytes, reason).
pub async fn quarantined(sdk: &SdkConfig, bucket: &str) -> Vec<(String, Vec<u8>, String)> {
    let s3 = webhook::s3_client(sdk);
    let listed = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix("quarantine/")
        .send()
        .await
        .unwrap();
    let mut out = Vec::new();
    for object in listed.contents() {
        let key = object.key().unwrap().to_owned();
        let got = s3
            .get_object()
            .bucket(bucket)
            .key(&key)
            .send()
            .await
            .unwrap();
        let reason = got
            .metadata()
            .and_then(|m| m.get("reason"))
            .cloned()
            .unwrap_or_default();
        let bytes = got.body.collect().await.unwrap().into_bytes().to_vec();
        out.push((key, bytes, reason));
    }
    out
}

/// Receives and deletes everything on the queue, in the order SQS hands it out.
pub async fn drain(sdk: &SdkConfig, queue_url: &str) -> Vec<Queued> {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let mut out = Vec::new();
    loop {
        let got = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .visibility_timeout(60)
            .send()
            .await
            .unwrap();
        let messages = got.messages();
        if messages.is_empty() {
            return out;
        }
        let mut handles = Vec::new();
        for m in messages {
            let attr = |name: MessageSystemAttributeName| {
                m.attributes()
                    .and_then(|a| a.get(&name))
                    .cloned()
                    .unwrap_or_default()
            };
            out.push(Queued {
                body: serde_json::from_str(m.body().unwrap()).unwrap(),
                group_id: attr(MessageSystemAttributeName::MessageGroupId),
                dedup_id: attr(MessageSystemAttributeName::MessageDeduplicationId),
            });
            handles.push(
                aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                    .id(handles.len().to_string())
                    .receipt_handle(m.receipt_handle().unwrap())
                    .build()
                    .unwrap(),
            );
        }
        sqs.delete_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(handles))
            .send()
            .await
            .unwrap();
    }
}

/// The environment of a webhook function wired to these resources.
pub fn webhook_env(queue_url: &str, bucket: &str) -> BTreeMap<String, String> {
    [
        ("EVENTS_QUEUE_URL", queue_url),
        ("QUARANTINE_BUCKET", bucket),
        ("APP_SECRET", LOCAL_APP_SECRET),
        ("VERIFY_TOKEN", LOCAL_VERIFY_TOKEN),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

pub fn events_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../events")
}

/// A sample event file as the raw JSON Lambda would hand the function.
pub fn event_json(name: &str) -> serde_json::Value {
    let path = events_dir().join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// Turns an API Gateway / function URL event into the request lambda_http would build.
pub fn request(event: &serde_json::Value) -> lambda_http::Request {
    lambda_http::request::from_str(&event.to_string()).unwrap()
}

/// `X-Hub-Signature-256` for `body` under the local app secret, computed here
/// rather than by the code under test.
pub fn sign(body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(LOCAL_APP_SECRET.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// An API Gateway v2 POST of `body` with the given signature header (or none).
pub fn post(body: &str, signature: Option<&str>) -> lambda_http::Request {
    let mut event = event_json("webhook-post.json");
    let headers = event["headers"].as_object_mut().unwrap();
    headers.remove("x-hub-signature");
    match signature {
        Some(sig) => headers.insert("x-hub-signature-256".into(), sig.into()),
        None => headers.remove("x-hub-signature-256"),
    };
    event["body"] = body.into();
    request(&event)
}

pub fn body_text(response: &http::Response<lambda_http::Body>) -> String {
    match response.body() {
        lambda_http::Body::Text(s) => s.clone(),
        lambda_http::Body::Binary(b) => String::from_utf8_lossy(b).into_owned(),
        _ => String::new(),
    }
}

/// Creates a table from the code's single schema definition.
pub async fn table(sdk: &SdkConfig) -> String {
    let name = unique("messenger");
    messenger_store::schema::create_table(&aws_sdk_dynamodb::Client::new(sdk), &name)
        .await
        .unwrap();
    name
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// A Lambda SQS event carrying `messages` as the events queue would hand them to
/// the processor: ids `<prefix>-<n>`, the FIFO group as an attribute.
pub fn sqs_event(
    prefix: &str,
    messages: &[webhook::OutgoingMessage],
) -> aws_lambda_events::sqs::SqsEvent {
    let records: Vec<serde_json::Value> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            serde_json::json!({
                "messageId": format!("{prefix}-{i}"),
                "receiptHandle": format!("rh-{prefix}-{i}"),
                "body": m.body,
                "attributes": {
                    "MessageGroupId": m.group_id,
                    "MessageDeduplicationId": m.dedup_id,
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": "0"
                },
                "messageAttributes": {},
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:events.fifo",
                "awsRegion": "us-east-1"
            })
        })
        .collect();
    serde_json::from_value(serde_json::json!({ "Records": records })).unwrap()
}

/// The queue messages the webhook would make of a delivery with these entries
/// (`(page id, messaging events, standby events)`), through its own split.
pub fn queue_messages(
    entries: &[(&str, Vec<serde_json::Value>, Vec<serde_json::Value>)],
) -> Vec<webhook::OutgoingMessage> {
    let entry: Vec<serde_json::Value> = entries
        .iter()
        .map(|(page, messaging, standby)| {
            serde_json::json!({"id": page, "time": now_ms(), "messaging": messaging, "standby": standby})
        })
        .collect();
    let body = serde_json::json!({"object": "page", "entry": entry}).to_string();
    webhook::accept::split(body.as_bytes()).unwrap().messages
}

/// A text message from `psid` to `page`, `age_ms` old.
pub fn text_event(page: &str, psid: &str, mid: &str, text: &str, age_ms: i64) -> serde_json::Value {
    serde_json::json!({
        "sender": {"id": psid},
        "recipient": {"id": page},
        "timestamp": now_ms() - age_ms,
        "message": {"mid": mid, "text": text}
    })
}

/// Checks `detail` against the repository's JSON Schema of `detail_type`
/// (`schemas/<detail-type in kebab case>.json`) with the `jsonschema` package of
/// the project's virtualenv (installed with cfn-lint), Draft 2020-12. Panics with
/// the validator's message when it does not conform.
pub fn check_detail_schema(detail_type: &str, detail: &serde_json::Value) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let schema = root.join("schemas").join(format!(
        "{}.json",
        detail_type.to_lowercase().replace(' ', "-")
    ));
    assert!(
        schema.exists(),
        "no schema for {detail_type}: {}",
        schema.display()
    );
    let python = root.join(".venv/bin/python");
    let out = std::process::Command::new(&python)
        .arg("-c")
        .arg(
            "import json, sys, jsonschema\n\
             schema = json.load(open(sys.argv[1]))\n\
             jsonschema.Draft202012Validator.check_schema(schema)\n\
             jsonschema.Draft202012Validator(schema).validate(json.loads(sys.argv[2]))",
        )
        .arg(&schema)
        .arg(detail.to_string())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {}: {e} (scripts/test installs it)",
                python.display()
            )
        });
    assert!(
        out.status.success(),
        "{detail_type} does not match {}: {}\n{detail}",
        schema.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}
