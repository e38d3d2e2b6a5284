//! The processor, wired as in production (`processor::from_env`), against the
//! emulator's DynamoDB and a fake Graph API (wiremock), fed the queue messages the
//! webhook's own split makes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use integration_tests::rig::*;
use integration_tests::*;
use messenger_store::{DynamoStore, PageRegistry, PageStatus};
use messenger_types::PageId;
use messenger_types::send::{MessageTag, OutgoingMessage};
use processor::Processor;
use processor::bot::{Action, Bot, Turn};
use processor::policy::Basis;
use secrecy::SecretString;
use serde_json::{Value, json};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

#[tokio::test]
async fn a_text_gets_exactly_one_reply_even_delivered_three_times_and_concurrently() {
    let rig = rig().await;
    let messages = queue_messages(&[(
        PAGE_A,
        vec![text_event(
            PAGE_A,
            "2000000000000001",
            "m_once",
            "hello there",
            1000,
        )],
        vec![],
    )]);

    // Three concurrent deliveries of the same event (as SQS may do after a
    // visibility timeout, or Meta's redelivery outside the FIFO window)...
    let (a, b, c) = tokio::join!(
        rig.processor.handle(sqs_event("a", &messages), None),
        rig.processor.handle(sqs_event("b", &messages), None),
        rig.processor.handle(sqs_event("c", &messages), None),
    );
    // ...then every delivery handed back is delivered again, until none is.
    let mut retry: Vec<_> = [a, b, c].iter().flat_map(failed_ids).collect();
    for round in 0..5 {
        if retry.is_empty() {
            break;
        }
        let again = rig
            .processor
            .handle(sqs_event(&format!("r{round}"), &messages), None)
            .await;
        retry = failed_ids(&again);
    }
    assert!(retry.is_empty());
    // And a plain redelivery later changes nothing.
    let late = rig
        .processor
        .handle(sqs_event("late", &messages), None)
        .await;
    assert!(failed_ids(&late).is_empty());

    let sent = sends(&rig.graph).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    let (path, auth, body) = &sent[0];
    assert_eq!(path, &format!("/v23.0/{PAGE_A}/messages"));
    assert_eq!(auth, &format!("Bearer {TOKEN_A}"));
    assert_eq!(body["recipient"]["id"], "2000000000000001");
    assert_eq!(body["messaging_type"], "RESPONSE");
    assert!(body["message"]["text"].is_string());
    assert!(matches!(
        only_action(&outcome_of(&rig, "m_once").await),
        Outcome::Sent { .. }
    ));
}

#[tokio::test]
async fn two_pages_in_one_batch_reply_each_with_its_own_token() {
    let rig = rig().await;
    let messages = queue_messages(&[
        (
            PAGE_A,
            vec![text_event(PAGE_A, "2000000000000001", "m_a", "hi A", 1000)],
            vec![],
        ),
        (
            PAGE_B,
            vec![text_event(PAGE_B, "3000000000000001", "m_b", "hi B", 1000)],
            vec![],
        ),
    ]);
    let response = rig
        .processor
        .handle(sqs_event("two", &messages), None)
        .await;
    assert!(failed_ids(&response).is_empty());

    let mut sent: Vec<(String, String, String)> = sends(&rig.graph)
        .await
        .into_iter()
        .map(|(p, a, b)| (p, a, b["recipient"]["id"].as_str().unwrap().to_owned()))
        .collect();
    sent.sort();
    assert_eq!(
        sent,
        vec![
            (
                format!("/v23.0/{PAGE_A}/messages"),
                format!("Bearer {TOKEN_A}"),
                "2000000000000001".to_owned()
            ),
            (
                format!("/v23.0/{PAGE_B}/messages"),
                format!("Bearer {TOKEN_B}"),
                "3000000000000001".to_owned()
            ),
        ]
    );
}

#[tokio::test]
async fn a_message_from_25_hours_ago_gets_no_standard_send_and_the_refusal_is_recorded() {
    let rig = rig().await;
    let messages = queue_messages(&[(
        PAGE_A,
        vec![text_event(
            PAGE_A,
            "2000000000000001",
            "m_old",
            "hello?",
            25 * HOUR,
        )],
        vec![],
    )]);
    let response = rig
        .processor
        .handle(sqs_event("old", &messages), None)
        .await;
    assert!(failed_ids(&response).is_empty(), "a refusal is not retried");
    assert!(sends(&rig.graph).await.is_empty());
    let outcome = outcome_of(&rig, "m_old").await;
    assert!(
        matches!(
            only_action(&outcome),
            Outcome::Refused {
                reason: Refusal::OutsideWindow { .. }
            }
        ),
        "{outcome:?}"
    );
}

/// A bot that answers every text with a tagged message.
struct TaggingBot(MessageTag);

impl Bot for TaggingBot {
    async fn decide(&self, turn: &Turn<'_>) -> Vec<Action> {
        turn.thread_key
            .map(|to| Action::Send {
                to: to.clone(),
                message: OutgoingMessage::text("An agent will follow up."),
                basis: Basis::Tag(self.0.clone()),
                thread_control: None,
            })
            .into_iter()
            .collect()
    }
}

#[tokio::test]
async fn human_agent_passes_at_six_days_and_is_refused_at_eight() {
    let rig = rig().await;
    let bot = with_bot(&rig, TaggingBot(MessageTag::HumanAgent));
    let six = queue_messages(&[(
        PAGE_A,
        vec![text_event(
            PAGE_A,
            "2000000000000006",
            "m_6d",
            "hi",
            6 * DAY,
        )],
        vec![],
    )]);
    let eight = queue_messages(&[(
        PAGE_A,
        vec![text_event(
            PAGE_A,
            "2000000000000008",
            "m_8d",
            "hi",
            8 * DAY,
        )],
        vec![],
    )]);
    assert!(failed_ids(&bot.handle(sqs_event("six", &six), None).await).is_empty());
    assert!(failed_ids(&bot.handle(sqs_event("eight", &eight), None).await).is_empty());

    let sent = sends(&rig.graph).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].2["recipient"]["id"], "2000000000000006");
    assert_eq!(sent[0].2["messaging_type"], "MESSAGE_TAG");
    assert_eq!(sent[0].2["tag"], "HUMAN_AGENT");
    assert!(matches!(
        only_action(&outcome_of(&rig, "m_8d").await),
        Outcome::Refused {
            reason: Refusal::HumanAgentExpired { .. }
        }
    ));
}

#[tokio::test]
async fn a_retired_tag_is_refused_without_a_network_call() {
    let rig = rig().await;
    let bot = with_bot(&rig, TaggingBot(MessageTag::PostPurchaseUpdate));
    let messages = queue_messages(&[(
        PAGE_A,
        vec![text_event(PAGE_A, "2000000000000001", "m_tag", "hi", 1000)],
        vec![],
    )]);
    assert!(failed_ids(&bot.handle(sqs_event("tag", &messages), None).await).is_empty());
    assert!(graph_calls(&rig.graph).await.is_empty());
    let outcome = outcome_of(&rig, "m_tag").await;
    assert_eq!(
        only_action(&outcome),
        &Outcome::Refused {
            reason: Refusal::RetiredTag {
                tag: "POST_PURCHASE_UPDATE".to_owned()
            }
        }
    );
}

#[tokio::test]
async fn standby_events_and_echoes_never_cause_a_send() {
    let rig = rig().await;
    let echo = json!({
        "sender": {"id": PAGE_A}, "recipient": {"id": "2000000000000001"}, "timestamp": now_ms(),
        "message": {"mid": "m_echo", "text": "our own reply", "is_echo": true, "app_id": 1234}
    });
    let messages = queue_messages(&[(
        PAGE_A,
        vec![echo],
        vec![text_event(
            PAGE_A,
            "2000000000000002",
            "m_standby",
            "hello?",
            1000,
        )],
    )]);
    let response = rig
        .processor
        .handle(sqs_event("quiet", &messages), None)
        .await;
    assert!(failed_ids(&response).is_empty());
    assert!(graph_calls(&rig.graph).await.is_empty());
}

#[tokio::test]
async fn after_passing_control_to_the_inbox_the_bot_is_silent_until_control_returns() {
    let rig = rig().await;
    let psid = "2000000000000009";
    let step = |prefix: &'static str, messaging: Vec<Value>, standby: Vec<Value>| {
        let messages = queue_messages(&[(PAGE_A, messaging, standby)]);
        let processor = &rig.processor;
        async move {
            let response = processor.handle(sqs_event(prefix, &messages), None).await;
            assert!(failed_ids(&response).is_empty(), "{prefix}");
        }
    };

    step(
        "human",
        vec![text_event(PAGE_A, psid, "m_h1", "human", 5000)],
        vec![],
    )
    .await;
    let calls = graph_calls(&rig.graph).await;
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(calls[1].0.ends_with("/pass_thread_control"));
    assert_eq!(calls[1].2["target_app_id"], "263902037430900");
    assert_eq!(calls[1].2["recipient"]["id"], psid);

    // While the Page Inbox owns the thread, the person's messages reach us on standby.
    step(
        "standby",
        vec![],
        vec![text_event(PAGE_A, psid, "m_h2", "are you there?", 100)],
    )
    .await;
    assert_eq!(graph_calls(&rig.graph).await.len(), 2);

    // The inbox passes the thread back; the next message gets the bot again.
    let back = json!({
        "sender": {"id": psid}, "recipient": {"id": PAGE_A}, "timestamp": now_ms() + 10,
        "pass_thread_control": {"previous_owner_app_id": "263902037430900", "new_owner_app_id": "1517776481860111", "metadata": "done"}
    });
    step("back", vec![back], vec![]).await;
    assert_eq!(graph_calls(&rig.graph).await.len(), 2);
    let mut again = text_event(PAGE_A, psid, "m_h3", "thanks", 0);
    again["timestamp"] = json!(now_ms() + 20);
    step("again", vec![again], vec![]).await;
    assert_eq!(sends(&rig.graph).await.len(), 2);
}

#[tokio::test]
async fn transient_graph_errors_are_retried_and_end_in_exactly_one_reply() {
    for (status, error) in [
        (
            500,
            json!({"error": {"message": "An unexpected error has occurred.", "type": "OAuthException", "code": 2, "fbtrace_id": "T1"}}),
        ),
        (
            400,
            json!({"error": {"message": "(#613) Calls to this api have exceeded the rate limit.", "type": "OAuthException", "code": 613, "error_subcode": 2534040, "fbtrace_id": "T2"}}),
        ),
        // A proxy's answer without Meta's error body: still an answer that says
        // the call failed, so the reply is made again.
        (502, json!("Bad Gateway")),
    ] {
        let rig = rig().await;
        failing_graph(&rig, status, error.clone()).await;
        let mid = format!("m_transient_{status}");
        let messages = queue_messages(&[(
            PAGE_A,
            vec![text_event(PAGE_A, "2000000000000001", &mid, "hi", 1000)],
            vec![],
        )]);
        let first = rig
            .processor
            .handle(sqs_event("first", &messages), None)
            .await;
        assert_eq!(failed_ids(&first), vec!["first-0".to_owned()], "{error}");
        // The transient error is recorded on the event, not only logged.
        let errors: Vec<String> = ledger(&rig)
            .await
            .into_iter()
            .filter_map(|(_, e)| e.last_error)
            .collect();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("Graph API error"), "{errors:?}");

        // Meta recovers; SQS delivers the message again.
        rig.graph.reset().await;
        Mock::given(method("POST"))
            .and(path_regex(r"/messages$"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({"recipient_id": "x", "message_id": "m_ok"})),
            )
            .mount(&rig.graph)
            .await;
        let second = rig
            .processor
            .handle(sqs_event("second", &messages), None)
            .await;
        assert!(failed_ids(&second).is_empty());
        assert_eq!(sends(&rig.graph).await.len(), 1);
        assert!(matches!(
            only_action(&outcome_of(&rig, &mid).await),
            Outcome::Sent { message_id: Some(m), .. } if m.starts_with("m_ok")
        ));
    }
}

#[tokio::test]
async fn permanent_graph_errors_are_recorded_and_not_retried() {
    for (subject, error, expect) in [
        (
            "551",
            json!({"error": {"message": "(#551) This person isn't available right now.", "type": "OAuthException", "code": 551, "error_subcode": 1545041, "fbtrace_id": "P1"}}),
            "551",
        ),
        (
            "window",
            json!({"error": {"message": "(#10) This message is sent outside of allowed window.", "type": "OAuthException", "code": 10, "error_subcode": 2018278, "fbtrace_id": "P2"}}),
            "2018278",
        ),
    ] {
        let rig = rig().await;
        failing_graph(&rig, 400, error).await;
        let mid = format!("m_permanent_{subject}");
        let messages = queue_messages(&[(
            PAGE_A,
            vec![text_event(PAGE_A, "2000000000000001", &mid, "hi", 1000)],
            vec![],
        )]);
        let response = rig.processor.handle(sqs_event("p", &messages), None).await;
        assert!(
            failed_ids(&response).is_empty(),
            "{subject}: acknowledged, not retried"
        );
        let outcome = outcome_of(&rig, &mid).await;
        assert!(
            matches!(
                only_action(&outcome),
                Outcome::GraphRefused { code, subcode, .. }
                    if code.map(|c| c.to_string()).as_deref() == Some(expect)
                        || subcode.map(|c| c.to_string()).as_deref() == Some(expect)
            ),
            "{outcome:?}"
        );
        // A redelivery does not try again.
        rig.processor.handle(sqs_event("p2", &messages), None).await;
        assert_eq!(sends(&rig.graph).await.len(), 1, "{subject}");
    }
}

#[tokio::test]
async fn a_failed_message_hands_back_the_rest_of_its_group_and_only_that() {
    let rig = rig().await;
    failing_graph(
        &rig,
        503,
        json!({"error": {"message": "Service temporarily unavailable", "code": 2}}),
    )
    .await;
    let messages = queue_messages(&[(
        PAGE_A,
        vec![
            text_event(PAGE_A, "2000000000000001", "m_g1", "first", 3000),
            text_event(PAGE_A, "2000000000000001", "m_g2", "second", 2000),
            json!({"sender": {"id": "2000000000000002"}, "recipient": {"id": PAGE_A}, "timestamp": now_ms(), "read": {"watermark": now_ms()}}),
        ],
        vec![],
    )]);
    let response = rig.processor.handle(sqs_event("g", &messages), None).await;
    // m_g1 failed; m_g2 shares its thread and waits; the other thread's read is done.
    assert_eq!(
        failed_ids(&response),
        vec!["g-0".to_owned(), "g-1".to_owned()]
    );
    assert_eq!(sends(&rig.graph).await.len(), 1, "m_g2 was never tried");
}

/// A KMS key in the emulator, as the template's `TokenKey`.
async fn token_key(rig: &Rig) -> String {
    aws_sdk_kms::Client::new(&rig.sdk)
        .create_key()
        .description("page tokens (test)")
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .key_id()
        .to_owned()
}

#[tokio::test]
async fn an_event_for_a_page_without_a_token_is_kept_and_answered_once_its_token_is_stored() {
    let rig = rig().await;
    let key_id = token_key(&rig).await;
    let mut env = env(&rig.table, &rig.queue, &rig.graph);
    env.insert("TOKEN_KEY_ID".into(), key_id.clone());
    let processor = processor::from_env(&env, &rig.sdk).await.unwrap();
    let page_c = "100000000000003";
    let messages = queue_messages(&[(
        page_c,
        vec![
            text_event(page_c, "4000000000000001", "m_no_token", "hi", 1000),
            text_event(page_c, "4000000000000001", "m_no_token_2", "again", 900),
        ],
        vec![],
    )]);
    let response = processor.handle(sqs_event("c", &messages), None).await;
    // Kept, not retried (so never in the DLQ), and no Graph call.
    assert!(failed_ids(&response).is_empty());
    assert!(graph_calls(&rig.graph).await.is_empty());
    let store = dynamo_store(&rig);
    let page = PageId::new(page_c);
    let record = store.page_record(&page).await.unwrap().unwrap();
    assert_eq!(record.status, PageStatus::Missing);
    assert_eq!(store.parked(&page, None, 10).await.unwrap().len(), 2);

    // `page store-token`: sealed with the KMS key, then the parked events replayed.
    let kms = processor::credentials::KmsKey::new(aws_sdk_kms::Client::new(&rig.sdk), key_id);
    let queue = event_queue::SqsQueue::new(aws_sdk_sqs::Client::new(&rig.sdk), &rig.queue);
    let token = SecretString::from("page-c-token-for-tests".to_owned());
    let replayed = processor::park::store_token(
        &store,
        &kms,
        &queue,
        &page,
        &token,
        messenger_types::Timestamp::now(),
    )
    .await
    .unwrap();
    assert_eq!(replayed.queued, 2);
    // The table holds the token sealed, never in clear.
    let items = scan_table(&rig).await;
    assert!(!format!("{items:?}").contains("page-c-token-for-tests"));

    // The same warm processor (it had cached MISSING) answers each once, with T.
    let requeued: Vec<webhook::OutgoingMessage> = drain(&rig.sdk, &rig.queue)
        .await
        .into_iter()
        .map(|q| webhook::OutgoingMessage {
            group_id: q.group_id,
            dedup_id: q.dedup_id,
            body: q.body.to_string(),
            kind: "replay",
        })
        .collect();
    assert_eq!(requeued.len(), 2);
    let response = processor.handle(sqs_event("c2", &requeued), None).await;
    assert!(failed_ids(&response).is_empty());
    let sent = sends(&rig.graph).await;
    assert_eq!(sent.len(), 2);
    assert!(
        sent.iter()
            .all(|(_, auth, _)| auth == "Bearer page-c-token-for-tests")
    );
    assert!(store.parked(&page, None, 10).await.unwrap().is_empty());
    // Replayed again (a lost delete, an operator's second replay): no second answer.
    let again = processor.handle(sqs_event("c3", &requeued), None).await;
    assert!(failed_ids(&again).is_empty());
    assert_eq!(sends(&rig.graph).await.len(), 2);
}

/// The whole life of a Page's token: a 190 marks the Page INVALID after one call,
/// its next events are parked without one, a new token replays them; and no token
/// is ever in a log line (any level), a queue message or the table in clear.
#[tokio::test]
async fn a_page_whose_token_graph_refuses_is_parked_until_a_new_token_and_no_token_is_ever_logged()
{
    let (logs, _guard) = integration_tests::logs::Warnings::capture_from(tracing::Level::TRACE);
    let rig = rig().await;
    let key_id = token_key(&rig).await;
    let mut env = env(&rig.table, &rig.queue, &rig.graph);
    env.insert("TOKEN_KEY_ID".into(), key_id.clone());
    let processor = processor::from_env(&env, &rig.sdk).await.unwrap();
    let store = dynamo_store(&rig);
    let kms = processor::credentials::KmsKey::new(aws_sdk_kms::Client::new(&rig.sdk), key_id);
    let queue = event_queue::SqsQueue::new(aws_sdk_sqs::Client::new(&rig.sdk), &rig.queue);
    let page_d = "100000000000004";
    let page = PageId::new(page_d);
    let (dead, fresh) = ("page-d-token-that-died", "page-d-token-stored-after");
    processor::park::store_token(
        &store,
        &kms,
        &queue,
        &page,
        &SecretString::from(dead.to_owned()),
        messenger_types::Timestamp::now(),
    )
    .await
    .unwrap();

    failing_graph(
        &rig,
        401,
        json!({"error": {"message": format!("Error validating access token: {dead}"),
                         "type": "OAuthException", "code": 190, "error_subcode": 460}}),
    )
    .await;
    let psid = "5000000000000001";
    let first = queue_messages(&[(
        page_d,
        vec![text_event(page_d, psid, "m_d1", "hi", 3000)],
        vec![],
    )]);
    processor.handle(sqs_event("d1", &first), None).await;
    assert_eq!(graph_calls(&rig.graph).await.len(), 1);
    let record = store.page_record(&page).await.unwrap().unwrap();
    assert_eq!(record.status, PageStatus::Invalid);
    assert!(record.reason.unwrap().contains("190/460"));

    // The next two: no call at all, kept in order.
    let next = queue_messages(&[(
        page_d,
        vec![
            text_event(page_d, psid, "m_d2", "still there?", 2000),
            text_event(page_d, psid, "m_d3", "hello?", 1000),
        ],
        vec![],
    )]);
    let response = processor.handle(sqs_event("d2", &next), None).await;
    assert!(failed_ids(&response).is_empty());
    assert_eq!(
        graph_calls(&rig.graph).await.len(),
        1,
        "parked without a call"
    );
    assert_eq!(store.parked(&page, None, 10).await.unwrap().len(), 2);

    // A new token: the two replayed in order and answered with it, once each.
    rig.graph.reset().await;
    Mock::given(method("POST"))
        .and(path_regex(r"^/v23\.0/[0-9]+/messages$"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"recipient_id": psid, "message_id": "m_ok"})),
        )
        .mount(&rig.graph)
        .await;
    let replayed = processor::park::store_token(
        &store,
        &kms,
        &queue,
        &page,
        &SecretString::from(fresh.to_owned()),
        messenger_types::Timestamp::now(),
    )
    .await
    .unwrap();
    assert_eq!(replayed.queued, 2);
    let queued = drain(&rig.sdk, &rig.queue).await;
    let bodies = format!("{queued:?}");
    let requeued: Vec<webhook::OutgoingMessage> = queued
        .into_iter()
        .map(|q| webhook::OutgoingMessage {
            group_id: q.group_id,
            dedup_id: q.dedup_id,
            body: q.body.to_string(),
            kind: "replay",
        })
        .collect();
    assert!(requeued[0].body.contains("m_d2") && requeued[1].body.contains("m_d3"));
    processor.handle(sqs_event("d3", &requeued), None).await;
    let sent = sends(&rig.graph).await;
    assert_eq!(sent.len(), 2);
    assert!(
        sent.iter()
            .all(|(_, auth, _)| *auth == format!("Bearer {fresh}"))
    );

    // No token anywhere it must not be.
    let logged = format!("{:?}", logs.all());
    assert!(logged.contains("INVALID"), "the logs were captured");
    let table = format!("{:?}", scan_table(&rig).await);
    for token in [dead, fresh] {
        assert!(!logged.contains(token), "{token} was logged");
        assert!(!bodies.contains(token), "{token} was in a queue message");
        assert!(!table.contains(token), "{token} is in the table in clear");
    }
}

#[tokio::test]
async fn an_unreadable_message_goes_to_the_dead_letter_queue_on_its_third_delivery_and_its_thread_goes_on()
 {
    let rig = rig().await;
    let dlq = fifo_queue(&rig.sdk).await;
    let mut e = env(&rig.table, &rig.queue, &rig.graph);
    e.insert("EVENTS_DLQ_URL".into(), dlq.clone());
    let processor = processor::from_env(&e, &rig.sdk).await.unwrap();
    const PSID: &str = "2000000000000001";
    let group = format!("{PAGE_A}:{PSID}");
    let junk = webhook::OutgoingMessage {
        group_id: group.clone(),
        dedup_id: "d".to_owned(),
        body: "{\"type\":\"nonsense\"}".to_owned(),
        kind: "unknown",
    };
    let mut messages = vec![junk];
    messages.extend(queue_messages(&[(
        PAGE_A,
        vec![text_event(PAGE_A, PSID, "m_after_junk", "hello", 1_000)],
        vec![],
    )]));
    assert_eq!(messages[1].group_id, group, "the same thread");
    // Its third delivery (the first two went back with the back-off).
    let third = |prefix: &str, messages: &[webhook::OutgoingMessage]| {
        let mut event = sqs_event(prefix, messages);
        event.records[0]
            .attributes
            .insert("ApproximateReceiveCount".into(), "3".into());
        event.records[0]
            .attributes
            .insert("SenderId".into(), "AROAEXAMPLE:jane.doe".into());
        event
    };
    let response = processor.handle(third("junk", &messages), None).await;
    // Nothing handed back: the junk is on the DLQ, the message behind it answered.
    assert_eq!(failed_ids(&response), Vec::<String>::new());
    assert_eq!(sends(&rig.graph).await.len(), 1);
    // A second delivery of the same message is not parked twice.
    let response = processor.handle(third("junk", &messages[..1]), None).await;
    assert_eq!(failed_ids(&response), Vec::<String>::new());

    let got = aws_sdk_sqs::Client::new(&rig.sdk)
        .receive_message()
        .queue_url(&dlq)
        .max_number_of_messages(10)
        .message_attribute_names("All")
        .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
        .send()
        .await
        .unwrap();
    let parked = got.messages();
    assert_eq!(parked.len(), 1);
    let m = &parked[0];
    assert_eq!(m.body(), Some("{\"type\":\"nonsense\"}"));
    let system = m.attributes().unwrap();
    assert_eq!(
        system[&aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId],
        group
    );
    let attribute = |name: &str| {
        m.message_attributes()
            .and_then(|a| a.get(name))
            .and_then(|v| v.string_value())
            .map(str::to_owned)
    };
    assert_eq!(attribute("source_message_id").as_deref(), Some("junk-0"));
    // Who sent it, without the session name (which can be a person's).
    assert_eq!(
        attribute("source_sender_id").as_deref(),
        Some("AROAEXAMPLE")
    );
    let reason = attribute("dead_letter_reason").unwrap();
    assert!(reason.starts_with("unreadable queue message"), "{reason}");

    // Without EVENTS_DLQ_URL it is handed back, and its thread with it.
    let response = rig.processor.handle(third("again", &messages), None).await;
    assert_eq!(
        failed_ids(&response),
        vec!["again-0".to_owned(), "again-1".to_owned()]
    );
}

#[tokio::test]
async fn missing_configuration_fails_at_start_and_names_the_variable() {
    let sdk = emulator().await;
    let graph = MockServer::start().await;
    for var in ["TABLE_NAME", "PAGE_ACCESS_TOKENS"] {
        let mut e = env("t", "q", &graph);
        e.remove(var);
        let err = processor::from_env(&e, &sdk).await.unwrap_err().to_string();
        assert!(err.contains(var), "{var}: {err}");
        assert!(!err.contains(TOKEN_A), "{err}");
    }
    let mut e = env("t", "q", &graph);
    e.insert("PAGE_ACCESS_TOKENS".into(), format!("[\"{TOKEN_A}\"]"));
    let err = processor::from_env(&e, &sdk).await.unwrap_err().to_string();
    assert!(
        err.contains("PAGE_ACCESS_TOKENS") && !err.contains(TOKEN_A),
        "{err}"
    );
}

#[tokio::test]
async fn a_failed_handover_is_retried_without_repeating_the_reply_before_it() {
    let rig = rig().await;
    rig.graph.reset().await;
    Mock::given(method("POST"))
        .and(path_regex(r"/messages$"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"recipient_id": "x", "message_id": "m_ok"})),
        )
        .mount(&rig.graph)
        .await;
    // The first pass fails with Meta's transient error, the next one succeeds.
    Mock::given(method("POST"))
        .and(path_regex(r"/pass_thread_control$"))
        .respond_with(
            ResponseTemplate::new(500)
                .set_body_json(json!({"error": {"message": "Please retry", "code": 2}})),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&rig.graph)
        .await;
    Mock::given(method("POST"))
        .and(path_regex(r"/pass_thread_control$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"success": true})))
        .with_priority(2)
        .mount(&rig.graph)
        .await;

    let messages = queue_messages(&[(
        PAGE_A,
        vec![text_event(
            PAGE_A,
            "2000000000000001",
            "m_human",
            "human",
            1000,
        )],
        vec![],
    )]);
    let first = rig.processor.handle(sqs_event("h1", &messages), None).await;
    assert_eq!(failed_ids(&first), vec!["h1-0".to_owned()]);
    let second = rig.processor.handle(sqs_event("h2", &messages), None).await;
    assert!(failed_ids(&second).is_empty());

    let calls = graph_calls(&rig.graph).await;
    let replies = calls
        .iter()
        .filter(|(p, _, _)| p.ends_with("/messages"))
        .count();
    let passes = calls
        .iter()
        .filter(|(p, _, _)| p.ends_with("/pass_thread_control"))
        .count();
    assert_eq!((replies, passes), (1, 2), "one reply; the pass tried twice");
    let outcome = outcome_of(&rig, "m_human").await;
    assert!(
        matches!(
            outcome.actions(),
            [Outcome::DoneEarlier, Outcome::ControlPassed { .. }]
        ),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn a_send_whose_answer_never_came_is_not_repeated() {
    let rig = rig().await;
    rig.graph.reset().await;
    Mock::given(method("POST"))
        .and(path_regex(r"/messages$"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"recipient_id": "x", "message_id": "m_slow"}))
                .set_delay(std::time::Duration::from_secs(2)),
        )
        .mount(&rig.graph)
        .await;
    // The same table and Graph API, with a Graph timeout shorter than Meta's answer.
    let graph = graph_api::GraphClient::new(graph_api::GraphConfig {
        base_url: rig.graph.uri(),
        version: "v23.0".to_owned(),
        app_secret: None,
        timeout: std::time::Duration::from_millis(300),
    })
    .unwrap();
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&rig.sdk), &rig.table);
    let tokens = [(
        messenger_types::PageId::new(PAGE_A),
        SecretString::from(TOKEN_A),
    )]
    .into();
    let queue = event_queue::SqsQueue::new(aws_sdk_sqs::Client::new(&rig.sdk), &rig.queue);
    let impatient = Processor::new(store, graph, processor::bot::DefaultBot, queue, tokens);

    let messages = queue_messages(&[(
        PAGE_A,
        vec![text_event(PAGE_A, "2000000000000001", "m_slow", "hi", 1000)],
        vec![],
    )]);
    let first = impatient.handle(sqs_event("s1", &messages), None).await;
    assert_eq!(failed_ids(&first), vec!["s1-0".to_owned()]);
    // The request reached Meta; whether the message went out is unknown. The
    // redelivery (after the claim's lease, here: at once, since nothing holds it
    // but the lease) must not send it again.
    let later = Processor {
        clock: || {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis();
            messenger_types::Timestamp::from_millis(
                i64::try_from(now).unwrap() + messenger_store::CLAIM_LEASE_MS + 1,
            )
        },
        ..impatient
    };
    let second = later.handle(sqs_event("s2", &messages), None).await;
    assert!(failed_ids(&second).is_empty());
    assert_eq!(sends(&rig.graph).await.len(), 1);
    assert_eq!(
        only_action(&outcome_of(&rig, "m_slow").await),
        &Outcome::NotRepeated
    );
}

#[tokio::test]
async fn near_the_deadline_messages_are_handed_back_untouched_and_a_1970_deadline_means_unknown() {
    let rig = rig().await;
    let messages = queue_messages(&[(
        PAGE_A,
        vec![text_event(
            PAGE_A,
            "2000000000000001",
            "m_deadline",
            "hi",
            1000,
        )],
        vec![],
    )]);
    let soon = std::time::SystemTime::now() + std::time::Duration::from_secs(2);
    let response = rig
        .processor
        .handle(sqs_event("d1", &messages), Some(soon))
        .await;
    assert_eq!(failed_ids(&response), vec!["d1-0".to_owned()]);
    assert!(graph_calls(&rig.graph).await.is_empty());

    // cargo-lambda's emulator hands every invocation a deadline in 1970.
    let emulator_deadline = std::time::UNIX_EPOCH + std::time::Duration::from_millis(600_000);
    let response = rig
        .processor
        .handle(sqs_event("d2", &messages), Some(emulator_deadline))
        .await;
    assert!(failed_ids(&response).is_empty());
    assert_eq!(sends(&rig.graph).await.len(), 1);
}

#[tokio::test]
async fn an_otn_optin_stores_its_token_once_and_is_confirmed() {
    let rig = rig().await;
    let psid = "2000000000000007";
    let optin = json!({
        "sender": {"id": psid}, "recipient": {"id": PAGE_A}, "timestamp": now_ms(),
        "optin": {"type": "one_time_notif_req", "payload": "back in stock", "one_time_notif_token": "otn-token-for-tests-1"}
    });
    let messages = queue_messages(&[(PAGE_A, vec![optin], vec![])]);
    for round in ["o1", "o2"] {
        let response = rig
            .processor
            .handle(sqs_event(round, &messages), None)
            .await;
        assert!(failed_ids(&response).is_empty());
    }
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&rig.sdk), &rig.table);
    let thread = messenger_store::ThreadKey::psid(
        messenger_types::PageId::new(PAGE_A),
        messenger_types::Psid::new(psid),
    );
    let tokens = store.tokens_of(&thread).await.unwrap();
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0].topic, "back in stock");
    assert_eq!(tokens[0].token, "otn-token-for-tests-1");
    assert_eq!(tokens[0].status, messenger_store::TokenStatus::Active);
    assert_eq!(
        tokens[0].expires_at.as_millis() - tokens[0].created_at.as_millis(),
        messenger_store::otn::OTN_LIFETIME_MS
    );
    let sent = sends(&rig.graph).await;
    assert_eq!(sent.len(), 1);
    assert!(
        sent[0].2["message"]["text"]
            .as_str()
            .unwrap()
            .contains("back in stock")
    );
}
