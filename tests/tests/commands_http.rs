//! `POST /commands`: the webhook function, wired as in production, behind the
//! HTTP API's `AWS_IAM` authorization (an IAM identity in the request context),
//! queueing commands on the emulator's events queue; then the processor obeys.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use integration_tests::rig::{self, PAGE_A, failed_ids, sends};
use integration_tests::*;
use lambda_http::http::StatusCode;
use serde_json::{Value, json};

/// An HTTP API request for `POST /commands` with `body`, signed by `caller` (an
/// IAM ARN API Gateway checked), or unsigned.
fn command_request(body: &str, caller: Option<&str>) -> lambda_http::Request {
    let mut event = event_json("webhook-post.json");
    event["routeKey"] = "POST /commands".into();
    event["rawPath"] = "/commands".into();
    event["requestContext"]["routeKey"] = "POST /commands".into();
    event["requestContext"]["http"]["path"] = "/commands".into();
    let headers = event["headers"].as_object_mut().unwrap();
    headers.remove("x-hub-signature");
    headers.remove("x-hub-signature-256");
    if let Some(arn) = caller {
        event["requestContext"]["authorizer"] = json!({"iam": {
            "accessKey": "ASIAEXAMPLEEXAMPLE", "accountId": "123456789012",
            "callerId": "AROAEXAMPLE:orders", "userArn": arn, "userId": "AROAEXAMPLE:orders"
        }});
    }
    event["body"] = body.into();
    request(&event)
}

const CALLER: &str = "arn:aws:sts::123456789012:assumed-role/orders/orders";

fn send(id: &str, psid: &str) -> Value {
    json!({"type": "send", "command_id": id, "page_id": PAGE_A, "recipient": {"id": psid},
        "message": {"text": "Your order shipped"}, "messaging_type": "RESPONSE"})
}

#[tokio::test]
async fn an_unsigned_or_bad_command_is_refused_and_nothing_is_queued() {
    let sdk = emulator().await;
    let queue = fifo_queue(&sdk).await;
    let bucket = bucket(&sdk).await;
    let hook = webhook::from_env(&webhook_env(&queue, &bucket), &sdk)
        .await
        .unwrap();

    let unsigned = hook
        .handle(command_request(
            &send("c1", "2700000000000001").to_string(),
            None,
        ))
        .await
        .unwrap();
    assert_eq!(unsigned.status(), StatusCode::FORBIDDEN);
    assert!(body_text(&unsigned).contains("IAM"));

    let long = "x".repeat(2001);
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"type": "sned", "command_id": "c", "page_id": PAGE_A}),
            "sned",
        ),
        (
            json!({"type": "send", "command_id": "c", "page_id": PAGE_A, "message": {"text": "x"}}),
            "recipient",
        ),
        (
            json!({"type": "send", "command_id": "c", "page_id": PAGE_A, "recipient": {"id": "2"}, "message": {"text": long}}),
            "message.text",
        ),
        (
            json!({"type": "send", "command_id": "c", "page_id": PAGE_A, "recipient": {"id": "2"}, "message": {"text": "x"}, "messaging_type": "MESSAGE_TAG", "tag": "ACCOUNT_UPDATE"}),
            "tag",
        ),
        (
            json!({"type": "send", "command_id": "é", "page_id": PAGE_A, "recipient": {"id": "2"}, "message": {"text": "x"}}),
            "command_id",
        ),
        (
            json!({"type": "send", "command_id": "c", "page_id": PAGE_A, "recipient": {"id": "2"}, "message": {"text": "x"}, "colour": "red"}),
            "colour",
        ),
        (
            json!({"type": "pass_thread_control", "command_id": "c", "page_id": PAGE_A, "psid": "2"}),
            "target_app_id",
        ),
    ];
    for (body, field) in cases {
        let response = hook
            .handle(command_request(&body.to_string(), Some(CALLER)))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
        let answer: Value = serde_json::from_str(&body_text(&response)).unwrap();
        assert!(
            answer["message"].as_str().unwrap().contains(field),
            "{body}: {answer}"
        );
    }
    let not_json = hook
        .handle(command_request("{not json", Some(CALLER)))
        .await
        .unwrap();
    assert_eq!(not_json.status(), StatusCode::BAD_REQUEST);
    assert!(drain(&sdk, &queue).await.is_empty(), "nothing queued");
}

#[tokio::test]
async fn a_signed_command_is_accepted_queued_in_its_thread_and_then_sent() {
    let r = rig::rig().await;
    let bucket = bucket(&r.sdk).await;
    let hook = webhook::from_env(&webhook_env(&r.queue, &bucket), &r.sdk)
        .await
        .unwrap();
    let psid = "2700000000000002";
    // The person wrote a minute ago; the bot replied.
    let text = queue_messages(&[(
        PAGE_A,
        vec![text_event(
            PAGE_A,
            psid,
            "m_cmd_1",
            "where is my order?",
            60_000,
        )],
        vec![],
    )]);
    r.processor.handle(sqs_event("t", &text), None).await;
    assert_eq!(sends(&r.graph).await.len(), 1);

    let response = hook
        .handle(command_request(
            &send("order-7", psid).to_string(),
            Some(CALLER),
        ))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let answer: Value = serde_json::from_str(&body_text(&response)).unwrap();
    assert_eq!(answer, json!({"command_id": "order-7"}));

    let queued = drain(&r.sdk, &r.queue).await;
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].group_id, format!("{PAGE_A}:{psid}"));
    let messages: Vec<webhook::OutgoingMessage> = queued
        .iter()
        .map(|q| webhook::OutgoingMessage {
            group_id: q.group_id.clone(),
            dedup_id: q.dedup_id.clone(),
            body: q.body.to_string(),
            kind: "command",
        })
        .collect();
    let done = r.processor.handle(sqs_event("c", &messages), None).await;
    assert!(failed_ids(&done).is_empty());
    let calls = sends(&r.graph).await;
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1].2["message"]["text"], "Your order shipped");
    assert_eq!(calls[1].2["recipient"]["id"], psid);
}
