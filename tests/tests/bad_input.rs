//! Bad input, one table: every kind of malformed, hostile or odd POST the webhook
//! may get, with the answer the README's HTTP contract gives it, what must reach
//! the events queue (every valid event of the body) and whether the body is kept in
//! quarantine. Each case gets a fresh queue and bucket in the emulator.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use integration_tests::rig::PAGE_A;
use integration_tests::*;
use lambda_http::http::StatusCode;
use serde_json::{Value, json};
use sha2::Sha256;

/// `X-Hub-Signature-256` over raw bytes, computed here.
fn sign_bytes(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(LOCAL_APP_SECRET.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A POST of raw bytes with these headers, as lambda_http hands it over after
/// API Gateway's base64 decoding.
fn raw_post(body: Vec<u8>, headers: &[(&str, String)]) -> lambda_http::Request {
    let mut request = http::Request::builder()
        .method("POST")
        .uri("https://abc123.execute-api.us-east-1.amazonaws.com/webhook")
        .header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    request.body(lambda_http::Body::Binary(body)).unwrap()
}

fn signed(body: Vec<u8>) -> lambda_http::Request {
    let signature = sign_bytes(&body);
    raw_post(body, &[("x-hub-signature-256", signature)])
}

fn text(psid: &str, mid: &str) -> Value {
    json!({"sender": {"id": psid}, "recipient": {"id": PAGE_A}, "timestamp": 1_795_269_600_000_i64,
           "message": {"mid": mid, "text": "hello"}})
}

fn envelope(messaging: &[Value]) -> Vec<u8> {
    json!({"object": "page", "entry": [{"id": PAGE_A, "time": 1_795_269_600_500_i64, "messaging": messaging}]})
        .to_string()
        .into_bytes()
}

/// What the queue should hold after a case: the queued events, by what names them.
#[derive(Debug)]
enum Queued {
    Nothing,
    /// The events with these mids (message events).
    Mids(Vec<String>),
    /// This many events, each its own (distinct deduplication ids), of these kinds.
    Events(Vec<&'static str>),
}

#[derive(Debug)]
struct Case {
    name: &'static str,
    request: lambda_http::Request,
    status: StatusCode,
    queued: Queued,
    /// The body is kept in quarantine, byte for byte, with a reason saying this.
    quarantined: Option<(Vec<u8>, &'static str)>,
}

fn case(
    name: &'static str,
    request: lambda_http::Request,
    status: StatusCode,
    queued: Queued,
    quarantined: Option<(Vec<u8>, &'static str)>,
) -> Case {
    Case {
        name,
        request,
        status,
        queued,
        quarantined,
    }
}

fn mids(mids: &[&str]) -> Queued {
    Queued::Mids(mids.iter().map(|m| (*m).to_owned()).collect())
}

/// The string at `path` in a queued message's JSON text.
fn lookup(json: &str, path: &[&str]) -> Option<String> {
    let mut value: &Value = &serde_json::from_str(json).ok()?;
    for key in path {
        value = value.get(*key)?;
    }
    value.as_str().map(str::to_owned)
}

fn cases() -> Vec<Case> {
    let one = envelope(&[text("2100000000000001", "m_bad_one")]);
    let sample = event_json("webhook-post.json");
    let sample_body = sample["body"].as_str().unwrap().as_bytes().to_vec();
    let sample_sha1 = sample["headers"]["x-hub-signature"]
        .as_str()
        .unwrap()
        .to_owned();

    // One byte over the default limit (5 MiB), signed correctly.
    let huge = {
        let mut body = envelope(&[text("2100000000000002", "m_bad_huge")]);
        let pad = webhook::DEFAULT_MAX_BODY_BYTES + 1 - body.len();
        body.splice(1..1, std::iter::repeat_n(b' ', pad));
        assert_eq!(body.len(), webhook::DEFAULT_MAX_BODY_BYTES + 1);
        body
    };
    // A valid event whose text holds bytes that are not UTF-8.
    let invalid_utf8 = {
        let body = String::from_utf8(envelope(&[text("2100000000000003", "m_bad_utf8")])).unwrap();
        let mut bytes = body.replace("hello", "\u{1}").into_bytes();
        let at = bytes.iter().position(|b| *b == 1).unwrap();
        bytes.splice(at..=at, [0xff, 0xfe, 0xc3]);
        bytes
    };
    // Nesting far beyond any parser's recursion limit, as the body...
    let deep_body = format!(
        r#"{{"object":"page","entry":{}{}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    )
    .into_bytes();
    // ...and inside one event of an otherwise good delivery.
    let deep_event = {
        let mut bomb = text("2100000000000004", "m_bad_deep");
        bomb["message"]["attachments"] = json!("@");
        let deep = format!("{}{}", "[".repeat(50_000), "]".repeat(50_000));
        let body = String::from_utf8(envelope(&[bomb, text("2100000000000005", "m_bad_next")]))
            .unwrap()
            .replace(r#""@""#, &deep);
        body.into_bytes()
    };
    // As many empty entries as the size limit allows (1.7 million): little to
    // parse, and once was 300 MB of reasons to report.
    let many_entries = format!(
        r#"{{"object":"page","entry":[{}]}}"#,
        vec!["{}"; (webhook::DEFAULT_MAX_BODY_BYTES - 40) / 3].join(",")
    )
    .into_bytes();

    let no_sender = vec![
        json!({"recipient": {"id": PAGE_A}, "timestamp": 1_795_269_600_001_i64, "app_roles": {"1517776481860111": ["primary_receiver"]}}),
        json!({"recipient": {"id": PAGE_A}, "timestamp": 1_795_269_600_002_i64, "policy_enforcement": {"action": "warning", "reason": "spam"}}),
        json!({"recipient": {"id": PAGE_A}, "timestamp": 1_795_269_600_003_i64, "optin": {"ref": "cart-42", "user_ref": "ref-abc-123"}}),
        json!({"recipient": {"id": PAGE_A}, "timestamp": 1_795_269_600_004_i64, "message": {"mid": "m_bad_nosender", "text": "who?"}}),
    ];
    let unknown = vec![
        json!({"sender": {"id": "2100000000000006"}, "recipient": {"id": PAGE_A}, "timestamp": 1_795_269_600_005_i64, "brand_new_kind": {"x": 1}}),
        json!({"sender": {"id": "2100000000000006"}, "recipient": {"id": PAGE_A}, "timestamp": 1_795_269_600_005_i64, "another_new_kind": {"x": 1}}),
        json!(["not", "an", "object"]),
        Value::Null,
    ];
    let timestamps: Vec<Value> = [
        json!(-1),
        json!(0),
        json!(1e300),
        json!(u64::MAX),
        json!("tomorrow"),
        Value::Null,
    ]
    .into_iter()
    .enumerate()
    .map(|(i, ts)| {
        json!({"sender": {"id": "2100000000000007"}, "recipient": {"id": PAGE_A}, "timestamp": ts,
               "read": {"watermark": i}})
    })
    .collect();
    let cap = webhook::DEFAULT_MAX_EVENTS_PER_DELIVERY;
    let batch: Vec<Value> = (0..=cap)
        .map(|i| text(&format!("22{i:014}"), &format!("m_bad_batch_{i}")))
        .collect();
    let batch_mids: Vec<String> = (0..cap).map(|i| format!("m_bad_batch_{i}")).collect();
    let over_the_cap = envelope(&batch);

    vec![
        case(
            "no signature",
            raw_post(one.clone(), &[]),
            StatusCode::UNAUTHORIZED,
            Queued::Nothing,
            None,
        ),
        case(
            "malformed signature",
            raw_post(one.clone(), &[("x-hub-signature-256", "sha256=zz".into())]),
            StatusCode::UNAUTHORIZED,
            Queued::Nothing,
            None,
        ),
        case(
            "signature of another body",
            raw_post(
                one.clone(),
                &[("x-hub-signature-256", sign_bytes(b"another body"))],
            ),
            StatusCode::FORBIDDEN,
            Queued::Nothing,
            None,
        ),
        case(
            "signature by another secret",
            raw_post(
                one.clone(),
                &[("x-hub-signature-256", format!("sha256={}", "ab".repeat(32)))],
            ),
            StatusCode::FORBIDDEN,
            Queued::Nothing,
            None,
        ),
        case(
            "sha1 only, valid: accepted when sha256 is absent",
            raw_post(
                sample_body.clone(),
                &[("x-hub-signature", sample_sha1.clone())],
            ),
            StatusCode::OK,
            // The sample's eight events: five messages, a postback, a delivery, a read.
            Queued::Events(vec![
                "message", "message", "message", "message", "message", "postback", "delivery",
                "read",
            ]),
            None,
        ),
        case(
            "valid sha1 never rescues a wrong sha256",
            raw_post(
                sample_body.clone(),
                &[
                    ("x-hub-signature", sample_sha1.clone()),
                    ("x-hub-signature-256", sign_bytes(b"another body")),
                ],
            ),
            StatusCode::FORBIDDEN,
            Queued::Nothing,
            None,
        ),
        case(
            "valid sha1 never rescues a malformed sha256",
            raw_post(
                sample_body.clone(),
                &[
                    ("x-hub-signature", sample_sha1),
                    ("x-hub-signature-256", "md5=123".into()),
                ],
            ),
            StatusCode::UNAUTHORIZED,
            Queued::Nothing,
            None,
        ),
        case(
            "body over MAX_BODY_BYTES",
            signed(huge),
            StatusCode::PAYLOAD_TOO_LARGE,
            Queued::Nothing,
            None,
        ),
        case(
            "invalid UTF-8",
            signed(invalid_utf8.clone()),
            StatusCode::OK,
            Queued::Nothing,
            Some((invalid_utf8, "not valid JSON")),
        ),
        // Refused at its first entry, an array where an entry object belongs,
        // without descending into the nesting.
        case(
            "nesting 100,000 deep",
            signed(deep_body.clone()),
            StatusCode::OK,
            Queued::Nothing,
            Some((deep_body, "unexpected shape (line 1, column 28)")),
        ),
        // Valid JSON, but deeper than the processor (serde_json, 128 levels) could
        // ever read: kept with the body, and the delivery's other event is queued.
        case(
            "nesting 50,000 deep inside one event",
            signed(deep_event.clone()),
            StatusCode::OK,
            mids(&["m_bad_next"]),
            Some((deep_event, "cannot be read: recursion limit exceeded")),
        ),
        case(
            "1.7 million empty entries",
            signed(many_entries.clone()),
            StatusCode::OK,
            Queued::Nothing,
            Some((many_entries, "more parts like these")),
        ),
        case(
            "object other than page",
            signed(br#"{"object":"instagram","entry":[]}"#.to_vec()),
            StatusCode::OK,
            Queued::Nothing,
            Some((
                br#"{"object":"instagram","entry":[]}"#.to_vec(),
                r#"object is "instagram", not "page""#,
            )),
        ),
        case(
            "no entry",
            signed(br#"{"object":"page"}"#.to_vec()),
            StatusCode::OK,
            Queued::Nothing,
            Some((br#"{"object":"page"}"#.to_vec(), "unexpected shape")),
        ),
        case(
            "events without a sender",
            signed(envelope(&no_sender)),
            StatusCode::OK,
            Queued::Events(vec!["app_roles", "policy_enforcement", "optin", "message"]),
            None,
        ),
        case(
            "unknown event kinds and events that are not objects",
            signed(envelope(&unknown)),
            StatusCode::OK,
            Queued::Events(vec!["unknown"; 4]),
            None,
        ),
        case(
            "absurd timestamps",
            signed(envelope(&timestamps)),
            StatusCode::OK,
            Queued::Events(vec!["read"; 6]),
            None,
        ),
        case(
            "as many events as MAX_EVENTS_PER_DELIVERY's default (1000)",
            signed(envelope(&batch[..cap])),
            StatusCode::OK,
            Queued::Mids(batch_mids),
            None,
        ),
        case(
            "one event more than MAX_EVENTS_PER_DELIVERY's default",
            signed(over_the_cap.clone()),
            StatusCode::OK,
            Queued::Nothing,
            Some((
                over_the_cap,
                "the delivery has 1001 events, over the limit of 1000 per delivery",
            )),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_bad_input_gets_its_documented_answer_and_loses_nothing_valid() {
    let sdk = emulator().await;
    let mut failures = Vec::new();
    for case in cases() {
        let queue = fifo_queue(&sdk).await;
        let bucket = bucket(&sdk).await;
        let wired = webhook::from_env(&webhook_env(&queue, &bucket), &sdk)
            .await
            .unwrap();
        // The 1000-event delivery goes to an in-memory queue: the emulator's FIFO
        // queue slows down with every message it holds. The SQS adapter itself is
        // covered by the other cases and by tests/tests/webhook.rs.
        let memory = matches!(&case.queued, Queued::Mids(m) if m.len() >= 1000);
        let (status, on_queue) = if memory {
            let hook = webhook::Webhook {
                deletion: wired.deletion,
                receiver: webhook::Receiver {
                    credentials: wired.receiver.credentials,
                    max_body_bytes: wired.receiver.max_body_bytes,
                    max_events: wired.receiver.max_events,
                    answer_within: wired.receiver.answer_within,
                    queue: webhook::testing::MemoryQueue::new(),
                    quarantine: wired.receiver.quarantine,
                    retry: wired.receiver.retry,
                },
            };
            let response = hook.handle(case.request).await.unwrap();
            let bodies: Vec<(String, String)> = hook
                .receiver
                .queue
                .accepted()
                .into_iter()
                .map(|m| (m.dedup_id, m.body))
                .collect();
            (response.status(), bodies)
        } else {
            let response = wired.handle(case.request).await.unwrap();
            let queued = drain(&sdk, &queue).await;
            let bodies = queued
                .into_iter()
                .map(|q| (q.dedup_id, q.body.to_string()))
                .collect();
            (response.status(), bodies)
        };
        let name = case.name;
        if status != case.status {
            failures.push(format!("{name}: answered {status}, not {}", case.status));
        }

        let mut by_dedup: BTreeMap<&str, usize> = BTreeMap::new();
        for (dedup, _) in &on_queue {
            *by_dedup.entry(dedup.as_str()).or_default() += 1;
        }
        if by_dedup.len() != on_queue.len() {
            failures.push(format!("{name}: two queued events share a dedup id"));
        }
        match &case.queued {
            Queued::Nothing if !on_queue.is_empty() => {
                failures.push(format!("{name}: {} events queued", on_queue.len()));
            }
            Queued::Nothing => {}
            Queued::Mids(want) => {
                let mut got: Vec<String> = on_queue
                    .iter()
                    .map(|(_, b)| lookup(b, &["event", "message", "mid"]).unwrap_or_default())
                    .collect();
                got.sort();
                let mut want = want.clone();
                want.sort();
                if got != want {
                    failures.push(format!(
                        "{name}: queued {} events, {} expected",
                        got.len(),
                        want.len()
                    ));
                }
            }
            Queued::Events(kinds) => {
                let mut got: Vec<String> = on_queue
                    .iter()
                    .map(|(_, b)| {
                        let key = lookup(b, &["key"]).unwrap_or_default();
                        key.split(':').next().unwrap_or_default().to_owned()
                    })
                    .collect();
                got.sort();
                let mut want: Vec<String> = kinds.iter().map(|k| (*k).to_owned()).collect();
                want.sort();
                if got != want {
                    failures.push(format!("{name}: queued kinds {got:?}, not {want:?}"));
                }
            }
        }

        let kept: Vec<(Vec<u8>, String)> = quarantined(&sdk, &bucket)
            .await
            .into_iter()
            .map(|(_, bytes, reason)| (bytes, reason))
            .collect();
        match &case.quarantined {
            None if !kept.is_empty() => {
                failures.push(format!("{name}: {} bodies quarantined", kept.len()));
            }
            None => {}
            Some((body, reason)) => {
                if kept.len() != 1 || &kept[0].0 != body {
                    failures.push(format!(
                        "{name}: quarantine holds {} bodies, not this one",
                        kept.len()
                    ));
                } else if !kept[0].1.contains(reason) {
                    failures.push(format!("{name}: quarantined for {:?}", kept[0].1));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
