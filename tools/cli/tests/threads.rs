//! `messenger threads list`: the subscriber list, read from the table the
//! processor wrote (against the local AWS emulator), through Queries only.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use integration_tests::rig::{self, DAY, HOUR, PAGE_A, failed_ids};
use integration_tests::{now_ms, queue_messages, sqs_event, text_event};
use messenger_store::{DynamoStore, ThreadChange, ThreadKey, ThreadStore, Unreachable};
use messenger_types::{PageId, Psid, Timestamp};
use serde_json::{Value, json};

/// Every DynamoDB operation a client sends, by name (`Query`, `Scan`, ...).
#[derive(Debug, Clone, Default)]
struct Operations(Arc<Mutex<Vec<String>>>);

impl Intercept for Operations {
    fn name(&self) -> &'static str {
        "Operations"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let op = context
            .request()
            .headers()
            .get("x-amz-target")
            .and_then(|t| t.rsplit('.').next())
            .unwrap_or("other")
            .to_owned();
        self.0.lock().unwrap().push(op);
        Ok(())
    }
}

#[tokio::test]
async fn threads_list_messageable_shows_the_open_window_and_the_held_token_and_not_the_unreachable()
{
    let r = rig::rig().await;
    let (open, token, gone) = ("2950000000000001", "2950000000000002", "2950000000000003");
    let optin = json!({
        "sender": {"id": token}, "recipient": {"id": PAGE_A}, "timestamp": now_ms() - 3 * DAY,
        "optin": {"type": "one_time_notif_req", "payload": "Back in Stock",
                  "one_time_notif_token": "test-otn-token-people"}
    });
    let messages = queue_messages(&[(
        PAGE_A,
        vec![
            text_event(PAGE_A, open, "m_p1", "hi", HOUR),
            optin,
            text_event(PAGE_A, gone, "m_p3", "hi", 2 * HOUR),
        ],
        vec![],
    )]);
    let response = r
        .processor
        .handle(sqs_event("people", &messages), None)
        .await;
    assert!(failed_ids(&response).is_empty());
    // Meta said the third person cannot be reached (as a 551 on a send records it).
    rig::dynamo_store(&r)
        .update_thread(
            &ThreadKey::psid(PageId::new(PAGE_A), Psid::new(gone)),
            &ThreadChange::Unreachable(Unreachable {
                reason: "This person isn't available right now (551)".to_owned(),
                at: Timestamp::from_millis(now_ms()),
            }),
        )
        .await
        .unwrap();

    // What the CLI calls, through a client that notes every request.
    let operations = Operations::default();
    let config = aws_sdk_dynamodb::config::Builder::from(&r.sdk)
        .interceptor(operations.clone())
        .build();
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::from_conf(config), &r.table);
    let listed = store
        .people(&PageId::new(PAGE_A), None, 50, Timestamp::now())
        .await
        .unwrap();
    let psids: Vec<&str> = listed.people.iter().map(|p| p.psid.as_str()).collect();
    assert_eq!(psids, vec![open, gone, token], "newest activity first");
    assert_eq!(
        *operations.0.lock().unwrap(),
        vec!["Query"; 4],
        "one Query for the list, one per person for their topics; never a Scan"
    );

    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_messenger"))
        .args([
            "threads",
            "list",
            "--page",
            PAGE_A,
            "--messageable",
            "--json",
        ])
        .env("TABLE_NAME", &r.table)
        .env_remove("STACK_NAME")
        .env_remove("RUST_LOG")
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let listed: Value = serde_json::from_slice(&output.stdout).unwrap();
    let people = listed["people"].as_array().unwrap();
    assert_eq!(people.len(), 2, "{listed:#}");
    assert_eq!(people[0]["psid"], open);
    assert_eq!(people[0]["can_send"], json!(["window", "human_agent"]));
    assert!(people[0]["window_open_until"].as_i64().unwrap() > now_ms());
    assert_eq!(people[0]["thread_owner"], "this app");
    assert_eq!(people[1]["psid"], token);
    assert_eq!(
        people[1]["can_send"],
        json!(["otn"]),
        "an optin is no message: no HUMAN_AGENT"
    );
    assert_eq!(people[1]["window_open_until"], Value::Null);
    assert_eq!(people[1]["otn_topics"], json!(["Back in Stock"]));
    assert_eq!(listed["next"], Value::Null);
    assert!(
        !String::from_utf8_lossy(&output.stdout).contains("test-otn-token-people"),
        "the list never shows a token"
    );
}

#[tokio::test]
async fn threads_list_pages_through_the_index_with_its_cursor() {
    let r = rig::rig().await;
    let events: Vec<Value> = (0..5)
        .map(|n| {
            text_event(
                PAGE_A,
                &format!("296000000000000{n}"),
                &format!("m_pg{n}"),
                "hi",
                (n + 1) * 60_000,
            )
        })
        .collect();
    let response = r
        .processor
        .handle(
            sqs_event("pages", &queue_messages(&[(PAGE_A, events, vec![])])),
            None,
        )
        .await;
    assert!(failed_ids(&response).is_empty());
    let store = rig::dynamo_store(&r);
    let page = PageId::new(PAGE_A);
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let listed = store
            .people(&page, cursor.as_deref(), 2, Timestamp::now())
            .await
            .unwrap();
        assert!(listed.people.len() <= 2);
        seen.extend(
            listed
                .people
                .into_iter()
                .map(|p| p.psid.as_str().to_owned()),
        );
        cursor = listed.next;
        if cursor.is_none() {
            break;
        }
    }
    let expected: Vec<String> = (0..5).map(|n| format!("296000000000000{n}")).collect();
    assert_eq!(seen, expected, "each person once, newest first");
    assert!(
        store
            .people(&page, Some("not-a-cursor"), 2, Timestamp::now())
            .await
            .is_err()
    );
}
