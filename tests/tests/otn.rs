//! One-time notifications end to end, against the emulator and a fake Graph API:
//! the request, the optin that stores a token, the notify command's fan-out through
//! the real events queue, and each token spent at most once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use integration_tests::otn::*;
use integration_tests::rig::*;
use integration_tests::*;
use messenger_store::ThreadStore as _;
use messenger_store::{DynamoStore, NewToken, TokenKind, TokenStatus};
use messenger_types::{PageId, Psid, Timestamp};
use serde_json::{Value, json};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, ResponseTemplate};

const DAY: i64 = 24 * 3_600_000;

fn optin(page: &str, psid: &str, topic: &str, token: &str, age_ms: i64) -> Value {
    json!({
        "sender": {"id": psid}, "recipient": {"id": page}, "timestamp": now_ms() - age_ms,
        "optin": {"type": "one_time_notif_req", "payload": topic, "one_time_notif_token": token}
    })
}

fn store_of(rig: &Rig) -> DynamoStore {
    DynamoStore::new(aws_sdk_dynamodb::Client::new(&rig.sdk), &rig.table)
}

/// Bodies of the Send API calls that carried a one-time notification token.
async fn notifications(rig: &Rig) -> Vec<Value> {
    sends(&rig.graph)
        .await
        .into_iter()
        .map(|(_, _, body)| body)
        .filter(|b| b["recipient"]["one_time_notif_token"].is_string())
        .collect()
}

#[tokio::test]
async fn notify_me_about_asks_for_a_notification_inside_the_window() {
    let rig = rig().await;
    let psid = "2000000000000101";
    let ask = queue_messages(&[(
        PAGE_A,
        vec![text_event(
            PAGE_A,
            psid,
            "m_ask",
            "Notify me about Back in Stock",
            1000,
        )],
        vec![],
    )]);
    process(&rig, "ask", &ask).await;
    let sent = sends(&rig.graph).await;
    assert_eq!(sent.len(), 1);
    let payload = &sent[0].2["message"]["attachment"]["payload"];
    assert_eq!(payload["template_type"], "one_time_notif_req");
    assert_eq!(payload["payload"], "Back in Stock");
    assert_eq!(sent[0].2["messaging_type"], "RESPONSE");
}

#[tokio::test]
async fn an_optin_token_carries_exactly_one_notification_even_with_the_window_closed_for_days() {
    let rig = rig().await;
    let psid = "2000000000000102";
    // The person tapped "Notify me" three days ago; the window has long closed.
    let tap = queue_messages(&[(
        PAGE_A,
        vec![optin(
            PAGE_A,
            psid,
            "back in stock",
            "otn-token-102",
            3 * DAY,
        )],
        vec![],
    )]);
    process(&rig, "tap", &tap).await;
    assert!(
        sends(&rig.graph).await.is_empty(),
        "the late confirmation is refused by the window"
    );
    assert_eq!(tokens_of(&rig, PAGE_A, psid).await.len(), 1);

    process(
        &rig,
        "n1",
        &[notify(PAGE_A, "back in stock", "Back in stock!")],
    )
    .await;
    let sent = notifications(&rig).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0]["recipient"],
        json!({"one_time_notif_token": "otn-token-102"})
    );
    assert_eq!(sent[0]["message"]["text"], "Back in stock!");
    assert!(
        sent[0].get("messaging_type").is_none() && sent[0].get("tag").is_none(),
        "{}",
        sent[0]
    );
    assert_eq!(
        tokens_of(&rig, PAGE_A, psid).await[0].status,
        TokenStatus::Used
    );

    // A second notify finds no usable token.
    process(
        &rig,
        "n2",
        &[notify(PAGE_A, "back in stock", "Still in stock!")],
    )
    .await;
    assert_eq!(notifications(&rig).await.len(), 1);
}

#[tokio::test]
async fn fifty_concurrent_notify_commands_for_twenty_tokens_send_twenty_messages() {
    let rig = rig().await;
    save_tokens(&rig, PAGE_A, "price drop", 20).await;
    // 50 different notify commands for the topic, each its own invocation, all at
    // once: 1,000 sends race for 20 tokens.
    let commands: Vec<_> = (0..50)
        .map(|i| notify(PAGE_A, "price drop", &format!("Price drop #{i}!")))
        .collect();
    let responses = futures_util::future::join_all(commands.iter().enumerate().map(|(i, c)| {
        rig.processor
            .handle(sqs_event(&format!("c{i}"), std::slice::from_ref(c)), None)
    }))
    .await;
    let handed_back: Vec<String> = responses.iter().flat_map(failed_ids).collect();
    assert!(handed_back.is_empty(), "{handed_back:?}");
    // 50 x 20 per-recipient messages, processed by 8 concurrent invocations. Under
    // load a fan-out may hand over to a follow-up and a message may be handed back,
    // so more than 1,000 deliveries is fine; fewer would mean lost work.
    let processed = run_queue(&rig, 8).await;
    assert!(
        processed >= 1000,
        "only {processed} messages were processed"
    );

    let sent = notifications(&rig).await;
    let distinct: BTreeSet<_> = sent
        .iter()
        .map(|b| {
            b["recipient"]["one_time_notif_token"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        sent.len(),
        20,
        "{} sends for {} tokens",
        sent.len(),
        distinct.len()
    );
    assert_eq!(distinct.len(), 20);
}

#[tokio::test]
async fn a_token_created_366_days_ago_is_never_used() {
    let rig = rig().await;
    let created = Timestamp::from_millis(now_ms() - 366 * DAY);
    let psid = "2000000000000366";
    // Stored a year and a day ago, when it was new; no sweep has run since.
    store_of(&rig)
        .save_token(
            &NewToken {
                page: PageId::new(PAGE_A),
                psid: Psid::new(psid),
                topic: "tickets".to_owned(),
                token: "otn-token-old".to_owned(),
                kind: TokenKind::OneTime,
                created_at: created,
                expires_at: created.plus_millis(messenger_store::otn::OTN_LIFETIME_MS),
            },
            true,
            created,
        )
        .await
        .unwrap();
    process(&rig, "old", &[notify(PAGE_A, "tickets", "Tickets on sale")]).await;
    assert!(notifications(&rig).await.is_empty());
    // Refused at use, it is expired there and then, out of the fan-out index.
    assert_eq!(
        tokens_of(&rig, PAGE_A, psid).await[0].status,
        TokenStatus::Expired
    );
}

#[tokio::test]
async fn a_notify_for_an_unknown_topic_or_another_page_spends_nothing_of_others() {
    let rig = rig().await;
    let both = queue_messages(&[
        (
            PAGE_A,
            vec![optin(
                PAGE_A,
                "2000000000000201",
                "restock",
                "otn-token-a",
                1000,
            )],
            vec![],
        ),
        (
            PAGE_B,
            vec![optin(
                PAGE_B,
                "3000000000000201",
                "restock",
                "otn-token-b",
                1000,
            )],
            vec![],
        ),
    ]);
    process(&rig, "taps", &both).await;
    let confirmations = sends(&rig.graph).await.len();

    process(&rig, "nobody", &[notify(PAGE_A, "nobody asked", "hello")]).await;
    assert!(notifications(&rig).await.is_empty());

    process(&rig, "a", &[notify(PAGE_A, "restock", "Restocked")]).await;
    let sent: Vec<_> = sends(&rig.graph)
        .await
        .into_iter()
        .skip(confirmations)
        .collect();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, format!("/v23.0/{PAGE_A}/messages"));
    assert_eq!(sent[0].1, format!("Bearer {TOKEN_A}"));
    assert_eq!(
        sent[0].2["recipient"]["one_time_notif_token"],
        "otn-token-a"
    );
    assert_eq!(
        tokens_of(&rig, PAGE_B, "3000000000000201").await[0].status,
        TokenStatus::Active
    );
}

#[tokio::test]
async fn a_transient_failure_keeps_the_token_for_the_retry_and_a_permanent_one_retires_it() {
    let rig = rig().await;
    let store = store_of(&rig);
    let now = Timestamp::from_millis(now_ms());
    for (psid, token) in [
        ("2000000000000301", "otn-token-retry"),
        ("2000000000000302", "otn-token-bad"),
    ] {
        store
            .save_token(
                &NewToken {
                    page: PageId::new(PAGE_A),
                    psid: Psid::new(psid),
                    topic: if psid.ends_with('1') { "retry" } else { "bad" }.to_owned(),
                    token: token.to_owned(),
                    kind: TokenKind::OneTime,
                    created_at: now,
                    expires_at: now.plus_millis(messenger_store::otn::OTN_LIFETIME_MS),
                },
                true,
                now,
            )
            .await
            .unwrap();
    }
    rig.graph.reset().await;
    // Meta fails once with a passing error, then accepts.
    fail_once_then_accept(
        &rig,
        ResponseTemplate::new(500)
            .set_body_json(json!({"error": {"message": "Please retry", "code": 2}})),
    )
    .await;
    process(
        &rig,
        "retry",
        &[notify(PAGE_A, "retry", "Your order shipped")],
    )
    .await;
    assert_eq!(sends(&rig.graph).await.len(), 2, "failed once, then sent");
    assert_eq!(
        tokens_of(&rig, PAGE_A, "2000000000000301").await[0].status,
        TokenStatus::Used
    );

    rig.graph.reset().await;
    Mock::given(method("POST"))
        .and(path_regex(r"/messages$"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": {"message": "(#100) Invalid one-time notification token", "type": "OAuthException", "code": 100, "fbtrace_id": "X"}})))
        .mount(&rig.graph)
        .await;
    process(&rig, "bad", &[notify(PAGE_A, "bad", "Hello")]).await;
    assert_eq!(sends(&rig.graph).await.len(), 1, "not retried");
    assert_eq!(
        tokens_of(&rig, PAGE_A, "2000000000000302").await[0].status,
        TokenStatus::Retired
    );
    let retired = scan_table(&rig)
        .await
        .into_iter()
        .find(|item| attr_s(item, "token") == "otn-token-bad")
        .unwrap();
    assert!(
        attr_s(&retired, "retired_reason").contains("Invalid one-time notification token"),
        "{retired:?}"
    );
}

#[tokio::test]
async fn a_hundred_concurrent_sends_on_one_token_make_exactly_one_graph_call() {
    let rig = rig().await;
    let now = Timestamp::from_millis(now_ms());
    let token = NewToken {
        page: PageId::new(PAGE_A),
        psid: Psid::new("2000000000000777"),
        topic: "race".to_owned(),
        token: "otn-token-race".to_owned(),
        kind: TokenKind::OneTime,
        created_at: now,
        expires_at: now.plus_millis(messenger_store::otn::OTN_LIFETIME_MS),
    };
    store_of(&rig).save_token(&token, true, now).await.unwrap();
    let sk = tokens_of(&rig, PAGE_A, "2000000000000777").await[0]
        .sk
        .clone();
    // A hundred different fan-outs reaching the same token at the same moment.
    let work: Vec<messenger_types::NotifyOne> = (0..100)
        .map(|i| messenger_types::NotifyOne {
            kind: messenger_types::queue::QueueMessageType::NotifyOne,
            notify_id: format!("race-{i}"),
            page_id: PageId::new(PAGE_A),
            psid: Psid::new("2000000000000777"),
            token_sk: sk.clone(),
            topic: "race".to_owned(),
            message: serde_json::from_value(json!({"text": "You won the race"})).unwrap(),
        })
        .collect();
    let results =
        futures_util::future::join_all(work.iter().map(|w| rig.processor.notify_one(w))).await;
    let errors: Vec<String> = results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .map(ToString::to_string)
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(notifications(&rig).await.len(), 1);
}

#[tokio::test]
async fn a_recurring_optin_follows_stop_and_resume_and_is_never_notified() {
    let rig = rig().await;
    let psid = "2000000000000888";
    // One base time for every optin: their order must not depend on how long the
    // steps between them take on a loaded machine.
    let base = now_ms();
    let recurring = |status: &str, age_ms: i64| {
        json!({
            "sender": {"id": psid}, "recipient": {"id": PAGE_A}, "timestamp": base - age_ms,
            "optin": {"type": "notification_messages", "payload": "weekly deals", "title": "Weekly deals",
                      "notification_messages_token": "rn-token-888", "token_expiry_timestamp": now_ms() + 30 * DAY,
                      "notification_messages_status": status}
        })
    };
    process(
        &rig,
        "on",
        &queue_messages(&[(
            PAGE_A,
            vec![recurring("RESUME NOTIFICATIONS", 3000)],
            vec![],
        )]),
    )
    .await;
    assert_eq!(statuses(&rig, psid).await, vec![TokenStatus::Active]);
    process(
        &rig,
        "stop",
        &queue_messages(&[(PAGE_A, vec![recurring("STOP NOTIFICATIONS", 2000)], vec![])]),
    )
    .await;
    assert_eq!(statuses(&rig, psid).await, vec![TokenStatus::Retired]);
    // A late copy of the older optin does not undo the STOP.
    process(
        &rig,
        "late",
        &queue_messages(&[(
            PAGE_A,
            vec![recurring("RESUME NOTIFICATIONS", 2500)],
            vec![],
        )]),
    )
    .await;
    assert_eq!(statuses(&rig, psid).await, vec![TokenStatus::Retired]);
    process(
        &rig,
        "resume",
        &queue_messages(&[(
            PAGE_A,
            vec![recurring("RESUME NOTIFICATIONS", 1000)],
            vec![],
        )]),
    )
    .await;
    assert_eq!(statuses(&rig, psid).await, vec![TokenStatus::Active]);

    process(&rig, "notify", &[notify(PAGE_A, "weekly deals", "Deals!")]).await;
    assert!(
        notifications(&rig).await.is_empty(),
        "notify is for one-time tokens"
    );
}

/// One bad notification (Meta refuses its content with a code 100 that is not
/// about the token) must not cost every person of the topic their token.
#[tokio::test]
async fn a_notification_meta_refuses_for_its_content_keeps_the_tokens() {
    let rig = rig().await;
    save_tokens(&rig, PAGE_A, "content", 3).await;
    rig.graph.reset().await;
    Mock::given(method("POST"))
        .and(path_regex(r"/messages$"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": {"message": "(#100) Param message[attachment][payload][url] must be a valid URL", "type": "OAuthException", "code": 100, "fbtrace_id": "X"}})))
        .mount(&rig.graph)
        .await;
    process(&rig, "content", &[notify(PAGE_A, "content", "See it")]).await;
    assert_eq!(
        sends(&rig.graph).await.len(),
        3,
        "one call each, not retried"
    );
    for i in 0..3 {
        let psid = format!("40000000000{i:05}");
        assert_eq!(statuses(&rig, &psid).await, [TokenStatus::Active], "{psid}");
    }
}

/// A 502 page without Meta's error body is an answer: nothing went out, so the
/// token is kept for the retry, which sends the notification. A timeout leaves
/// the outcome unknown: the notification may have gone out, so the token stays
/// spent and nothing is sent again (a token is used at most once).
#[tokio::test]
async fn a_bodiless_502_keeps_the_token_for_the_retry_and_a_timeout_spends_it() {
    let cases = [
        (
            "gateway",
            ResponseTemplate::new(502).set_body_raw("<html>Bad Gateway</html>", "text/html"),
            2,
        ),
        (
            "slow",
            ResponseTemplate::new(200)
                .set_body_json(json!({"recipient_id": "x", "message_id": "m_late"}))
                .set_delay(std::time::Duration::from_secs(7)),
            1,
        ),
    ];
    for (topic, failure, calls) in cases {
        let rig = rig().await;
        save_tokens(&rig, PAGE_A, topic, 1).await;
        rig.graph.reset().await;
        fail_once_then_accept(&rig, failure).await;
        process(&rig, topic, &[notify(PAGE_A, topic, "Back in stock")]).await;
        let sent = notifications(&rig).await;
        assert_eq!(sent.len(), calls, "{topic}: {sent:?}");
        assert!(sent.iter().all(|b| *b == sent[0]), "{topic}: one token");
        assert_eq!(
            statuses(&rig, "4000000000000000").await,
            [TokenStatus::Used],
            "{topic}"
        );
    }
}

/// The fake Send API answers the first call with `failure`, every later one with
/// success.
async fn fail_once_then_accept(rig: &Rig, failure: ResponseTemplate) {
    Mock::given(method("POST"))
        .and(path_regex(r"/messages$"))
        .respond_with(failure)
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&rig.graph)
        .await;
    Mock::given(method("POST"))
        .and(path_regex(r"/messages$"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"recipient_id": "x", "message_id": "m_otn"})),
        )
        .with_priority(2)
        .mount(&rig.graph)
        .await;
}

async fn save_tokens(rig: &Rig, page: &str, topic: &str, count: usize) {
    let store = store_of(rig);
    let now = Timestamp::from_millis(now_ms());
    for i in 0..count {
        store
            .save_token(
                &NewToken {
                    page: PageId::new(page),
                    psid: Psid::new(format!("40000000000{i:05}")),
                    topic: topic.to_owned(),
                    token: format!("otn-token-{topic}-{i}"),
                    kind: TokenKind::OneTime,
                    created_at: now,
                    expires_at: now.plus_millis(messenger_store::otn::OTN_LIFETIME_MS),
                },
                true,
                now,
            )
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_fan_out_pages_past_one_query_and_continues_in_a_follow_up_near_the_deadline() {
    let rig = rig().await;
    save_tokens(&rig, PAGE_A, "tickets", 120).await;
    let command = messenger_types::NotifyCommand {
        kind: messenger_types::queue::QueueMessageType::Notify,
        page_id: PageId::new(PAGE_A),
        topic: "tickets".to_owned(),
        message: serde_json::from_value(json!({"text": "Tickets on sale"})).unwrap(),
        after: None,
        notify_id: None,
    };
    // Less time left than a page needs (MIN_TIME_PER_FAN_OUT_PAGE), but not yet
    // past (a past deadline counts as unknown): one page of 100, then a follow-up
    // command for the rest.
    let soon = std::time::SystemTime::now() + std::time::Duration::from_millis(5_500);
    let outcome = rig
        .processor
        .fan_out(&command, "cmd-1", Some(soon))
        .await
        .unwrap();
    assert_eq!(
        outcome,
        processor::MessageOutcome::NotifyQueued {
            recipients: 100,
            refused_by_queue: 0,
            follow_up: true
        }
    );
    run_queue(&rig, 4).await;
    let sent = notifications(&rig).await;
    let distinct: BTreeSet<_> = sent
        .iter()
        .map(|b| b["recipient"]["one_time_notif_token"].to_string())
        .collect();
    assert_eq!((sent.len(), distinct.len()), (120, 120));
}

#[tokio::test]
async fn without_a_page_token_or_with_the_pages_token_refused_the_tokens_are_kept() {
    let rig = rig().await;
    let page_c = "100000000000003";
    save_tokens(&rig, page_c, "restock", 1).await;
    process(&rig, "c", &[notify(page_c, "restock", "Restocked")]).await;
    assert!(graph_calls(&rig.graph).await.is_empty());
    assert_eq!(
        statuses_on(&rig, page_c, "4000000000000000").await,
        vec![TokenStatus::Active]
    );

    save_tokens(&rig, PAGE_A, "restock", 1).await;
    failing_graph(&rig, 400, json!({"error": {"message": "Error validating access token: Session has expired", "type": "OAuthException", "code": 190, "error_subcode": 463, "fbtrace_id": "T"}})).await;
    process(&rig, "a", &[notify(PAGE_A, "restock", "Restocked")]).await;
    assert_eq!(sends(&rig.graph).await.len(), 1);
    assert_eq!(
        statuses_on(&rig, PAGE_A, "4000000000000000").await,
        vec![TokenStatus::Active]
    );
}

#[tokio::test]
async fn a_malformed_notify_message_is_refused_before_touching_any_token() {
    let rig = rig().await;
    save_tokens(&rig, PAGE_A, "restock", 2).await;
    for message in [
        json!({"text": ""}),
        json!({"txt": "typo"}),
        json!({"text": "x".repeat(2001)}),
    ] {
        let bad = webhook::OutgoingMessage {
            group_id: "notify".to_owned(),
            dedup_id: unique("bad"),
            body:
                json!({"type": "notify", "page_id": PAGE_A, "topic": "restock", "message": message})
                    .to_string(),
            kind: "notify",
        };
        process(&rig, "bad", &[bad]).await;
    }
    assert!(graph_calls(&rig.graph).await.is_empty());
    assert_eq!(
        statuses_on(&rig, PAGE_A, "4000000000000001").await,
        vec![TokenStatus::Active]
    );
}

async fn statuses_on(rig: &Rig, page: &str, psid: &str) -> Vec<TokenStatus> {
    tokens_of(rig, page, psid)
        .await
        .iter()
        .map(|t| t.status)
        .collect()
}

async fn statuses(rig: &Rig, psid: &str) -> Vec<TokenStatus> {
    tokens_of(rig, PAGE_A, psid)
        .await
        .iter()
        .map(|t| t.status)
        .collect()
}

/// Done when (issue 14): a person with two tokens for "Back in Stock" and a
/// notify for "back in stock" gets exactly one message, with the older token;
/// the other stays held.
#[tokio::test]
async fn a_person_with_two_tokens_for_back_in_stock_gets_one_notification_for_back_in_stock() {
    let rig = rig().await;
    let psid = "2000000000000141";
    let taps = queue_messages(&[(
        PAGE_A,
        vec![
            optin(PAGE_A, psid, "Back in Stock", "otn-token-141-a", 3 * DAY),
            optin(PAGE_A, psid, "Back in Stock", "otn-token-141-b", 2 * DAY),
        ],
        vec![],
    )]);
    process(&rig, "taps", &taps).await;
    let held = tokens_of(&rig, PAGE_A, psid).await;
    assert_eq!(held.len(), 2);
    assert!(
        held.iter().all(|t| t.topic == "Back in Stock"),
        "the person's wording is kept"
    );

    process(
        &rig,
        "notify",
        &[notify(PAGE_A, "back in stock", "Back in stock!")],
    )
    .await;
    let sent = notifications(&rig).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(
        sent[0]["recipient"],
        json!({"one_time_notif_token": "otn-token-141-a"}),
        "the oldest token"
    );
    let statuses: Vec<(String, TokenStatus)> = tokens_of(&rig, PAGE_A, psid)
        .await
        .into_iter()
        .map(|t| (t.token, t.status))
        .collect();
    assert_eq!(
        statuses,
        [
            ("otn-token-141-a".to_owned(), TokenStatus::Used),
            ("otn-token-141-b".to_owned(), TokenStatus::Active)
        ]
    );

    // The token still held carries the next notify, worded another way again.
    process(
        &rig,
        "again",
        &[notify(PAGE_A, "  BACK in   stock", "Back again!")],
    )
    .await;
    let sent = notifications(&rig).await;
    assert_eq!(sent.len(), 2);
    assert_eq!(
        sent[1]["recipient"]["one_time_notif_token"],
        "otn-token-141-b"
    );
}

/// Tokens stored before topics were normalised sit in the topic index under a
/// digest of their exact wording: a notify with that wording still reaches them
/// (after the normalised key's tokens, paging through both), and the person's
/// tokens of both kinds count as one person.
#[tokio::test]
async fn tokens_stored_before_topics_were_normalised_are_listed_by_their_exact_wording() {
    use messenger_store::TokenStore as _;
    let rig = rig().await;
    let store = store_of(&rig);
    let now = Timestamp::from_millis(now_ms());
    let page = PageId::new(PAGE_A);
    let save = |psid: &str, token: &str, age: i64| NewToken {
        page: page.clone(),
        psid: Psid::new(psid),
        topic: "Back in Stock".to_owned(),
        token: token.to_owned(),
        kind: TokenKind::OneTime,
        created_at: Timestamp::from_millis(now.as_millis() - age),
        expires_at: Timestamp::from_millis(now.as_millis() - age)
            .plus_millis(messenger_store::otn::OTN_LIFETIME_MS),
    };
    // Two people with a token stored the old way; one of them, and two others,
    // with tokens stored since.
    let old = [
        ("2000000000000151", "otn-legacy-1", 5 * DAY),
        ("2000000000000152", "otn-legacy-2", 5 * DAY),
    ];
    let new = [
        ("2000000000000151", "otn-new-1", DAY),
        ("2000000000000153", "otn-new-3", DAY),
        ("2000000000000154", "otn-new-4", DAY),
    ];
    for (psid, token, age) in old.iter().chain(&new) {
        store
            .save_token(&save(psid, token, *age), true, now)
            .await
            .unwrap();
    }
    let legacy_key = format!(
        "OTN#{PAGE_A}#{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"Back in Stock"))
    );
    let dynamo = aws_sdk_dynamodb::Client::new(&rig.sdk);
    for item in scan_table(&rig).await {
        if attr_s(&item, "token").starts_with("otn-legacy") {
            dynamo
                .update_item()
                .table_name(&rig.table)
                .key("pk", item["pk"].clone())
                .key("sk", item["sk"].clone())
                .update_expression("SET topic_pk = :k")
                .expression_attribute_values(
                    ":k",
                    aws_sdk_dynamodb::types::AttributeValue::S(legacy_key.clone()),
                )
                .send()
                .await
                .unwrap();
        }
    }

    // Two at a time: the normalised key's pages, then the old wording's.
    let mut listed = Vec::new();
    let mut after = None;
    loop {
        let (page_of, next) = store
            .active_tokens(&page, "Back in Stock", after.as_deref(), 2)
            .await
            .unwrap();
        listed.extend(page_of.into_iter().map(|t| t.psid.as_str().to_owned()));
        match next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    listed.sort();
    assert_eq!(
        listed,
        [
            "2000000000000151",
            "2000000000000151",
            "2000000000000152",
            "2000000000000153",
            "2000000000000154"
        ]
    );
    // Another wording reaches only the tokens stored since.
    let (others, _) = store
        .active_tokens(&page, "back in stock", None, 10)
        .await
        .unwrap();
    assert_eq!(others.len(), 3);

    // One notification per person; 151's oldest token is the old one.
    process(&rig, "n", &[notify(PAGE_A, "Back in Stock", "It's back")]).await;
    let mut sent: Vec<String> = notifications(&rig)
        .await
        .iter()
        .map(|b| {
            b["recipient"]["one_time_notif_token"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    sent.sort();
    assert_eq!(
        sent,
        ["otn-legacy-1", "otn-legacy-2", "otn-new-3", "otn-new-4"]
    );
    assert_eq!(
        statuses(&rig, "2000000000000151").await,
        [TokenStatus::Used, TokenStatus::Active]
    );
}
