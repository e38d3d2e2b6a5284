//! The hourly Page check, wired as deployed (`page_check::from_env`), against the
//! emulator's DynamoDB and KMS and a fake Graph API (wiremock): a subscription
//! that lost a field is subscribed again, a dead token makes its Page `INVALID`,
//! and no credential reaches a log line.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use aws_lambda_events::eventbridge::EventBridgeEvent;
use integration_tests::logs::Warnings;
use integration_tests::rig::*;
use integration_tests::*;
use messenger_store::{PageRegistry, PageStatus};
use messenger_types::{PageId, Timestamp};
use secrecy::SecretString;
use serde_json::json;
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, ResponseTemplate};

const PAGE_C: &str = "100000000000031";
const PAGE_D: &str = "100000000000032";
const TOKEN_C: &str = "page-c-token-for-the-check";
const TOKEN_D: &str = "page-d-token-that-died";
const FIELDS: &str = graph_api::WEBHOOK_FIELDS;

#[tokio::test]
async fn the_page_check_repairs_a_lost_field_and_marks_a_dead_token_invalid() {
    let rig = rig().await;
    let key_id = aws_sdk_kms::Client::new(&rig.sdk)
        .create_key()
        .description("page tokens (page check test)")
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .key_id()
        .to_owned();
    let kms = processor::credentials::KmsKey::new(aws_sdk_kms::Client::new(&rig.sdk), &key_id);
    let queue = event_queue::SqsQueue::new(aws_sdk_sqs::Client::new(&rig.sdk), &rig.queue);
    let store = dynamo_store(&rig);
    for (page, token) in [(PAGE_C, TOKEN_C), (PAGE_D, TOKEN_D)] {
        processor::park::store_token(
            &store,
            &kms,
            &queue,
            &PageId::new(page),
            &SecretString::from(token),
            Timestamp::now(),
        )
        .await
        .unwrap();
    }
    // C's token is valid, but its subscription lost `messaging_optins`.
    Mock::given(method("GET"))
        .and(path("/v23.0/debug_token"))
        .and(query_param("input_token", TOKEN_C))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": {
            "is_valid": true, "app_id": "555", "expires_at": 0, "scopes": ["pages_messaging"]
        }})))
        .mount(&rig.graph)
        .await;
    let lost: Vec<&str> = FIELDS
        .split(',')
        .filter(|f| *f != "messaging_optins")
        .collect();
    Mock::given(method("GET"))
        .and(path(format!("/v23.0/{PAGE_C}/subscribed_apps")))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"data": [{"id": "555", "name": "this app", "subscribed_fields": lost}]}),
        ))
        .mount(&rig.graph)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/v23.0/{PAGE_C}/subscribed_apps")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"success": true})))
        .mount(&rig.graph)
        .await;
    // D's admin changed their password.
    Mock::given(method("GET"))
        .and(path("/v23.0/debug_token"))
        .and(query_param("input_token", TOKEN_D))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": {
            "message": "Error validating access token: The session has been invalidated because the user changed their password.",
            "type": "OAuthException", "code": 190, "error_subcode": 460
        }})))
        .mount(&rig.graph)
        .await;

    let mut env: BTreeMap<String, String> = env(&rig.table, &rig.queue, &rig.graph);
    // Only the table's Pages: no seed tokens.
    env.remove("PAGE_ACCESS_TOKENS");
    env.insert("TOKEN_KEY_ID".into(), key_id);
    let check = page_check::from_env(&env, &rig.sdk).unwrap();
    let (logs, _guard) = Warnings::capture_from(tracing::Level::TRACE);
    let report = check
        .handle(&EventBridgeEvent::default(), None)
        .await
        .unwrap();

    assert_eq!(
        (
            report.pages,
            report.checked,
            report.repaired,
            report.invalidated,
            report.unhealthy
        ),
        (2, 2, 1, 1, 1),
        "{report:?}"
    );
    // C: subscribed again with every field, with appsecret_proof; still ACTIVE.
    let posts: Vec<_> = rig
        .graph
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.method == wiremock::http::Method::POST)
        .collect();
    assert_eq!(posts.len(), 1);
    let query: BTreeMap<String, String> = posts[0].url.query_pairs().into_owned().collect();
    assert_eq!(query["subscribed_fields"], FIELDS);
    assert!(query.contains_key("appsecret_proof"));
    let c = store
        .page_record(&PageId::new(PAGE_C))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.status, PageStatus::Active);
    assert!(c.checked_at.is_some());
    // D: INVALID with the error's codes, and only debug_token was asked.
    let d = store
        .page_record(&PageId::new(PAGE_D))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.status, PageStatus::Invalid);
    assert_eq!(d.reason.as_deref(), Some("token_invalid (Graph 190/460)"));
    assert!(
        !rig.graph
            .received_requests()
            .await
            .unwrap()
            .iter()
            .any(|r| r.url.path().starts_with(&format!("/v23.0/{PAGE_D}"))),
        "nothing asked with a dead token after debug_token"
    );
    // No token, secret or proof in any line, at any level.
    let proof = query["appsecret_proof"].clone();
    let lines = logs.all();
    assert!(!lines.is_empty(), "the check logs what it did");
    for line in lines.iter().map(|l| format!("{l:?}")) {
        for secret in [TOKEN_C, TOKEN_D, LOCAL_APP_SECRET, proof.as_str()] {
            assert!(!line.contains(secret), "a credential was logged: {line}");
        }
    }

    // A second run: D is counted unhealthy without a call, C is healthy now.
    Mock::given(method("GET"))
        .and(path(format!("/v23.0/{PAGE_C}/subscribed_apps")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": [
            {"id": "555", "name": "this app", "subscribed_fields": FIELDS.split(',').collect::<Vec<_>>()}
        ]})))
        .with_priority(1)
        .mount(&rig.graph)
        .await;
    let report = check.run(None).await.unwrap();
    assert_eq!(
        (report.healthy, report.unhealthy, report.repaired),
        (1, 1, 0)
    );
}

#[tokio::test]
async fn noting_a_check_or_an_event_never_makes_a_record_for_an_unknown_page() {
    let rig = rig().await;
    let store = dynamo_store(&rig);
    let page = PageId::new("100000000000039");
    store.page_seen(&page, Timestamp::now()).await.unwrap();
    store.page_checked(&page, Timestamp::now()).await.unwrap();
    assert!(store.page_record(&page).await.unwrap().is_none());
    assert!(scan_table(&rig).await.is_empty());

    // On a Page with a record: kept, and an older event never moves it back.
    store
        .forget_page_token(&page, "disconnected", Timestamp::from_millis(1_000))
        .await
        .unwrap();
    store
        .page_seen(&page, Timestamp::from_millis(5_000))
        .await
        .unwrap();
    store
        .page_seen(&page, Timestamp::from_millis(4_000))
        .await
        .unwrap();
    store
        .page_checked(&page, Timestamp::from_millis(6_000))
        .await
        .unwrap();
    let record = store.page_record(&page).await.unwrap().unwrap();
    assert_eq!(record.last_event_at, Some(Timestamp::from_millis(5_000)));
    assert_eq!(record.checked_at, Some(Timestamp::from_millis(6_000)));
    assert_eq!(record.status, PageStatus::Missing);
}
