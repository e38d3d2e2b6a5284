//! The metrics each function writes, read from what its real handler flushes at
//! the end of an invocation (the EMF documents it would print on stdout), with
//! the handler wired as in production against the emulator and a fake Graph API.
//! Each test is its own process (nextest), so each reads only its own counts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, UNIX_EPOCH};

use integration_tests::rig::{DAY, HOUR, PAGE_A, failed_ids, failing_graph, rig, sends};
use integration_tests::*;
use lambda_http::http::StatusCode;
use messenger_store::{NewToken, ThreadStore as _, TokenKind};
use messenger_types::{PageId, Psid, Timestamp};
use serde_json::{Value, json};
use signals::{Capture, Metric};

/// The documents written for `function`, each checked to be a well-formed EMF
/// document of the backend's namespace whose declared metrics are all present.
fn documents_of(capture: &Capture, function: &str) -> Vec<Value> {
    let documents: Vec<Value> = capture
        .documents()
        .into_iter()
        .filter(|d| d["Function"] == function)
        .collect();
    for d in &documents {
        let spec = &d["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(spec["Namespace"], "MessengerBackend", "{d}");
        assert!(d["_aws"]["Timestamp"].as_u64().is_some(), "{d}");
        let dimensions = spec["Dimensions"][0].as_array().unwrap();
        assert_eq!(dimensions[0], "Function", "{d}");
        for dimension in dimensions {
            let value = d[dimension.as_str().unwrap()].as_str().unwrap();
            // Never an id: a Page id or PSID is all digits.
            assert!(!value.chars().all(|c| c.is_ascii_digit()), "{d}");
        }
        for metric in spec["Metrics"].as_array().unwrap() {
            assert!(d[metric["Name"].as_str().unwrap()].is_number(), "{d}");
        }
    }
    documents
}

#[tokio::test]
async fn a_replied_text_counts_one_event_processed_and_one_message_sent_in_one_flush() {
    let rig = rig().await;
    let capture = signals::capture();
    let messages = queue_messages(&[(
        PAGE_A,
        vec![text_event(
            PAGE_A,
            "2900000000000001",
            "m_sig_1",
            "hello",
            1_000,
        )],
        vec![],
    )]);
    let response = rig.processor.handle(sqs_event("s", &messages), None).await;
    assert!(failed_ids(&response).is_empty());
    let documents = documents_of(&capture, "processor");
    assert_eq!(
        documents.len(),
        1,
        "one document per invocation: {documents:?}"
    );
    assert_eq!(capture.total(Metric::EventsProcessed, None), 1);
    assert_eq!(capture.total(Metric::MessagesSent, None), 1);
    assert_eq!(capture.total(Metric::DuplicatesSkipped, None), 0);

    // The same delivery again: a duplicate, nothing sent.
    rig.processor.handle(sqs_event("t", &messages), None).await;
    assert_eq!(capture.total(Metric::DuplicatesSkipped, None), 1);
    assert_eq!(capture.total(Metric::EventsProcessed, None), 1);
    assert_eq!(capture.total(Metric::MessagesSent, None), 1);
}

#[tokio::test]
async fn a_message_25_hours_old_counts_a_send_refused_outside_the_window() {
    let rig = rig().await;
    let capture = signals::capture();
    let messages = queue_messages(&[(
        PAGE_A,
        vec![text_event(
            PAGE_A,
            "2900000000000002",
            "m_sig_2",
            "hello",
            DAY + HOUR,
        )],
        vec![],
    )]);
    rig.processor.handle(sqs_event("s", &messages), None).await;
    assert!(sends(&rig.graph).await.is_empty());
    let refused: Vec<Value> = documents_of(&capture, "processor")
        .into_iter()
        .filter(|d| d.get("SendsRefused").is_some())
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0]["Reason"], "outside_window");
    assert_eq!(
        refused[0]["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
        json!([["Function", "Reason"]])
    );
    assert_eq!(
        capture.total(Metric::SendsRefused, Some("outside_window")),
        1
    );
    assert_eq!(capture.total(Metric::MessagesSent, None), 0);
    assert_eq!(capture.total(Metric::EventsProcessed, None), 1);
}

#[tokio::test]
async fn a_graph_190_counts_page_credentials_invalid_and_a_token_invalid_graph_error() {
    let rig = rig().await;
    failing_graph(
        &rig,
        400,
        json!({"error": {"message": "Error validating access token", "type": "OAuthException", "code": 190, "fbtrace_id": "t"}}),
    )
    .await;
    let capture = signals::capture();
    let messages = queue_messages(&[(
        PAGE_A,
        vec![text_event(
            PAGE_A,
            "2900000000000003",
            "m_sig_3",
            "hello",
            1_000,
        )],
        vec![],
    )]);
    rig.processor.handle(sqs_event("s", &messages), None).await;
    documents_of(&capture, "processor");
    assert_eq!(capture.total(Metric::PageCredentialsInvalid, None), 1);
    assert_eq!(capture.total(Metric::GraphErrors, Some("token_invalid")), 1);
    assert_eq!(capture.total(Metric::GraphErrors, None), 1);
    assert_eq!(capture.total(Metric::MessagesSent, None), 0);
}

#[tokio::test]
async fn the_webhook_counts_accepted_events_and_signature_rejections() {
    let sdk = emulator().await;
    let queue = fifo_queue(&sdk).await;
    let bucket = bucket(&sdk).await;
    let hook = webhook::from_env(&webhook_env(&queue, &bucket), &sdk)
        .await
        .unwrap();
    let capture = signals::capture();
    let body = json!({"object": "page", "entry": [{"id": PAGE_A, "time": now_ms(), "messaging": [
        text_event(PAGE_A, "2900000000000004", "m_sig_4", "one", 2_000),
        text_event(PAGE_A, "2900000000000005", "m_sig_5", "two", 1_000),
    ]}]})
    .to_string();
    let ok = hook.handle(post(&body, Some(&sign(&body)))).await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(documents_of(&capture, "webhook").len(), 1);
    assert_eq!(capture.total(Metric::EventsAccepted, None), 2);

    let wrong = format!("sha256={}", "0".repeat(64));
    let refused = hook.handle(post(&body, Some(&wrong))).await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let unsigned = hook.handle(post(&body, None)).await.unwrap();
    assert_eq!(unsigned.status(), StatusCode::UNAUTHORIZED);
    documents_of(&capture, "webhook");
    assert_eq!(capture.total(Metric::SignatureRejected, None), 2);
    assert_eq!(capture.total(Metric::EventsAccepted, None), 2);
    assert_eq!(capture.total(Metric::EnqueueFailed, None), 0);
}

#[tokio::test]
async fn the_sweeper_counts_the_tokens_it_expired() {
    const NOW: i64 = 1_795_262_400_000;
    let sdk = emulator().await;
    let table = table(&sdk).await;
    let env = [("TABLE_NAME", table.as_str())];
    let sweeper = otn_sweeper::Sweeper {
        clock: || Timestamp::from_millis(NOW),
        ..otn_sweeper::from_env(&env, &sdk).unwrap()
    };
    for (psid, age_days) in [
        ("2900000000000006", 366),
        ("2900000000000007", 367),
        ("2900000000000008", 10),
    ] {
        let created = Timestamp::from_millis(NOW - age_days * DAY);
        let token = NewToken {
            page: PageId::new(PAGE_A),
            psid: Psid::new(psid),
            topic: "shoes".to_owned(),
            token: format!("test-otn-{psid}"),
            kind: TokenKind::OneTime,
            created_at: created,
            expires_at: Timestamp::from_millis(
                created.as_millis() + messenger_store::OTN_LIFETIME_MS,
            ),
        };
        assert!(
            sweeper
                .store
                .save_token(&token, true, created)
                .await
                .unwrap()
        );
    }
    let capture = signals::capture();
    let event = serde_json::from_value(event_json("otn-sweeper-scheduled.json")).unwrap();
    // What `cargo lambda watch` sends as the deadline: the fallback budget applies.
    let report = sweeper
        .handle(&event, Some(UNIX_EPOCH + Duration::from_millis(600_000)))
        .await
        .unwrap();
    assert_eq!(report.expired, 2);
    assert_eq!(documents_of(&capture, "otn-sweeper").len(), 1);
    assert_eq!(capture.total(Metric::TokensExpired, None), 2);
}
