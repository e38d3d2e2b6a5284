//! Conversation Routing (Meta's 2025 model) and the tags in force, end to end:
//! the processor wired from the environment as in production, the emulator's
//! table and bus, a fake Graph API (wiremock).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use integration_tests::bus::*;
use integration_tests::rig::{self, DAY, HOUR, PAGE_A, failed_ids, graph_calls, sends};
use integration_tests::*;
use messenger_store::{Control, ThreadChange, ThreadKey, ThreadStore};
use messenger_types::{AppId, PageId, Psid, Timestamp};
use serde_json::{Value, json};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, ResponseTemplate};

const INBOX: &str = "263902037430900";

/// The rig's processor with `vars` added to its environment and a subscriber on
/// its bus: (rig, processor, subscriber queue). The fake Graph API answers every
/// thread-control call with `{"success": true}`.
async fn wired(vars: &[(&str, &str)]) -> (rig::Rig, processor::AwsProcessor, String) {
    let r = rig::rig().await;
    Mock::given(method("POST"))
        .and(path_regex(
            r"^/v23\.0/[0-9]+/(take|release|extend|request)_thread_control$",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"success": true})))
        .mount(&r.graph)
        .await;
    let (bus, subscriber) = subscribed_bus(&r.sdk).await;
    let mut env = rig::env(&r.table, &r.queue, &r.graph);
    env.insert("EVENT_BUS_NAME".to_owned(), bus);
    for (k, v) in vars {
        env.insert((*k).to_owned(), (*v).to_owned());
    }
    let processor = processor::from_env(&env, &r.sdk).await.unwrap();
    (r, processor, subscriber)
}

/// Hands `messages` to `processor` and checks none is handed back.
async fn deliver(
    processor: &processor::AwsProcessor,
    prefix: &str,
    messages: &[webhook::OutgoingMessage],
) {
    let response = processor.handle(sqs_event(prefix, messages), None).await;
    assert!(failed_ids(&response).is_empty(), "{prefix}");
}

/// One webhook event from `psid` on `PAGE_A`, delivered on `messaging`.
fn messaging(event: Value) -> Vec<webhook::OutgoingMessage> {
    queue_messages(&[(PAGE_A, vec![event], vec![])])
}

fn request_from(psid: &str, app: &str) -> Value {
    json!({
        "sender": {"id": psid}, "recipient": {"id": PAGE_A}, "timestamp": now_ms(),
        "request_thread_control": {"requested_owner_app_id": app, "metadata": "an agent is free"}
    })
}

/// The code of the refusal a `Command Completed` reports.
fn refusal_code(completed: &Value) -> &str {
    completed["outcome"]["action"]["reason"]["code"]
        .as_str()
        .unwrap_or("")
}

#[tokio::test]
async fn a_request_from_an_allowed_app_gets_the_thread_and_any_other_is_only_published() {
    let allowed = "1111111111111111";
    let (r, processor, subscriber) = wired(&[("HANDOVER_ALLOWED_APPS", allowed)]).await;
    let (first, second) = ("2900000000000001", "2900000000000002");
    for (n, psid) in [first, second].into_iter().enumerate() {
        deliver(
            &processor,
            &format!("t{n}"),
            &messaging(text_event(PAGE_A, psid, &format!("m_r{n}"), "hi", 60_000)),
        )
        .await;
    }
    assert_eq!(sends(&r.graph).await.len(), 2);
    received(&r.sdk, &subscriber).await;

    deliver(
        &processor,
        "allowed",
        &messaging(request_from(first, allowed)),
    )
    .await;
    let calls = graph_calls(&r.graph).await;
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert_eq!(calls[2].0, format!("/v23.0/{PAGE_A}/pass_thread_control"));
    assert_eq!(calls[2].2["target_app_id"], allowed);
    assert_eq!(calls[2].2["recipient"]["id"], first);
    let events = received(&r.sdk, &subscriber).await;
    check(&events);
    let changed = of_type(&events, "Thread Control Changed");
    assert_eq!(changed.len(), 1, "{events:#?}");
    assert_eq!(changed[0]["owner_app_id"], allowed);
    assert_eq!(changed[0]["ours"], false);

    deliver(
        &processor,
        "other",
        &messaging(request_from(second, "2222222222222222")),
    )
    .await;
    assert_eq!(
        graph_calls(&r.graph).await.len(),
        3,
        "no call for another app"
    );
    let events = received(&r.sdk, &subscriber).await;
    check(&events);
    let requests: Vec<&Value> = of_type(&events, "Event Received")
        .into_iter()
        .filter(|e| e["kind"] == "request_thread_control")
        .collect();
    assert_eq!(requests.len(), 1, "{events:#?}");
    assert_eq!(requests[0]["psid"], second);
    assert_eq!(
        requests[0]["event"]["request_thread_control"]["requested_owner_app_id"],
        "2222222222222222"
    );
    assert!(of_type(&events, "Thread Control Changed").is_empty());
}

#[tokio::test]
async fn a_thread_idle_for_25_hours_takes_a_send_only_from_the_pages_default_app() {
    let (r, not_default, subscriber) = wired(&[("APP_IS_DEFAULT", "false")]).await;
    let psid = "2900000000000003";
    // The person last wrote 25 hours ago (the bot's late reply is refused).
    deliver(
        &not_default,
        "old",
        &messaging(text_event(PAGE_A, psid, "m_idle", "anyone?", DAY + HOUR)),
    )
    .await;
    received(&r.sdk, &subscriber).await;
    let agent = |id: &str| {
        command_message(
            json!({"type": "send", "command_id": id, "page_id": PAGE_A, "recipient": {"id": psid},
                "message": {"text": "Sorry for the wait: an agent here."},
                "messaging_type": "MESSAGE_TAG", "tag": "HUMAN_AGENT", "human": true}),
            psid,
        )
    };

    deliver(&not_default, "c1", &[agent("agent-1")]).await;
    assert!(sends(&r.graph).await.is_empty());
    let events = received(&r.sdk, &subscriber).await;
    check(&events);
    let completed = of_type(&events, "Command Completed");
    assert_eq!(refusal_code(completed[0]), "thread_idle", "{events:#?}");
    assert_eq!(of_type(&events, "Send Refused")[0]["reason"], "thread_idle");

    // The same send from the Page's default app (APP_IS_DEFAULT's default) goes out.
    let mut env = rig::env(&r.table, &r.queue, &r.graph);
    env.insert("APP_IS_DEFAULT".to_owned(), "true".to_owned());
    let default = processor::from_env(&env, &r.sdk).await.unwrap();
    deliver(&default, "c2", &[agent("agent-2")]).await;
    let sent = sends(&r.graph).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].2["tag"], "HUMAN_AGENT");
}

#[tokio::test]
async fn customer_feedback_goes_as_its_template_within_7_days_and_a_plain_text_is_refused() {
    let (r, processor, subscriber) = wired(&[]).await;
    let psid = "2900000000000004";
    deliver(
        &processor,
        "t",
        &messaging(text_event(
            PAGE_A,
            psid,
            "m_fb",
            "thanks, all good",
            3 * DAY,
        )),
    )
    .await;
    received(&r.sdk, &subscriber).await;
    let feedback = |id: &str, message: Value| {
        command_message(
            json!({"type": "send", "command_id": id, "page_id": PAGE_A, "recipient": {"id": psid},
                "message": message, "messaging_type": "MESSAGE_TAG", "tag": "CUSTOMER_FEEDBACK"}),
            psid,
        )
    };

    deliver(
        &processor,
        "text",
        &[feedback("fb-text", json!({"text": "How did we do?"}))],
    )
    .await;
    assert!(sends(&r.graph).await.is_empty(), "no call for a plain text");
    let events = received(&r.sdk, &subscriber).await;
    check(&events);
    assert_eq!(
        refusal_code(of_type(&events, "Command Completed")[0]),
        "not_feedback_template"
    );

    let template = json!({"attachment": {"type": "template", "payload": {
        "template_type": "customer_feedback", "title": "Rate your experience",
        "subtitle": "Let us know how we did", "button_title": "Rate",
        "feedback_screens": [{"questions": [{"id": "csat", "type": "csat", "title": "How satisfied are you?", "score_label": "neg_pos", "score_option": "five_stars"}]}],
        "business_privacy": {"url": "https://example.com/privacy"}, "expires_in_days": 3
    }}});
    deliver(&processor, "tpl", &[feedback("fb-template", template)]).await;
    let sent = sends(&r.graph).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].2["messaging_type"], "MESSAGE_TAG");
    assert_eq!(sent[0].2["tag"], "CUSTOMER_FEEDBACK");
    assert_eq!(
        sent[0].2["message"]["attachment"]["payload"]["template_type"],
        "customer_feedback"
    );
}

#[tokio::test]
async fn the_inbox_loses_a_thread_it_left_unanswered_past_the_take_back_hours() {
    let (r, processor, _) = wired(&[("INBOX_TAKE_BACK_HOURS", "1")]).await;
    let store = rig::dynamo_store(&r);
    let hand_to_inbox = |psid: &'static str, ago: i64| {
        let store = &store;
        async move {
            store
                .update_thread(
                    &ThreadKey::psid(PageId::new(PAGE_A), Psid::new(psid)),
                    &ThreadChange::Control(Control {
                        ours: false,
                        owner: Some(AppId::new(INBOX)),
                        since: Timestamp::from_millis(now_ms() - ago),
                    }),
                )
                .await
                .unwrap();
        }
    };
    let standby = |psid: &str, mid: &str| {
        queue_messages(&[(
            PAGE_A,
            vec![],
            vec![text_event(PAGE_A, psid, mid, "hello? anyone?", 1_000)],
        )])
    };
    let (silent, busy, recent) = ("2900000000000005", "2900000000000006", "2900000000000007");
    hand_to_inbox(silent, 2 * HOUR).await;
    hand_to_inbox(busy, 2 * HOUR).await;
    hand_to_inbox(recent, 10 * 60_000).await;
    // Staff answered `busy` after taking it (an echo without this app's id).
    let echo = json!({
        "sender": {"id": PAGE_A}, "recipient": {"id": busy}, "timestamp": now_ms() - HOUR,
        "message": {"mid": "m_staff", "text": "Looking into it", "is_echo": true, "app_id": INBOX}
    });
    deliver(
        &processor,
        "echo",
        &queue_messages(&[(PAGE_A, vec![], vec![echo])]),
    )
    .await;

    deliver(&processor, "busy", &standby(busy, "m_tb_busy")).await;
    deliver(&processor, "recent", &standby(recent, "m_tb_recent")).await;
    assert!(
        graph_calls(&r.graph).await.is_empty(),
        "the Inbox keeps those"
    );

    deliver(&processor, "silent", &standby(silent, "m_tb_silent")).await;
    let calls = graph_calls(&r.graph).await;
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[0].0, format!("/v23.0/{PAGE_A}/take_thread_control"));
    assert_eq!(calls[0].2["recipient"]["id"], silent);
    assert_eq!(calls[1].0, format!("/v23.0/{PAGE_A}/messages"));
    assert_eq!(calls[1].2["recipient"]["id"], silent);
    let thread = store
        .thread(&ThreadKey::psid(PageId::new(PAGE_A), Psid::new(silent)))
        .await
        .unwrap();
    assert!(thread.controlled_by_us());
}

#[tokio::test]
async fn extend_and_request_commands_reach_graph_and_complete() {
    let (r, processor, subscriber) = wired(&[]).await;
    let psid = "2900000000000008";
    let command = |body: Value| command_message(body, psid);
    deliver(
        &processor,
        "cmds",
        &[
            command(
                json!({"type": "extend_thread_control", "command_id": "ext-1",
                "page_id": PAGE_A, "psid": psid, "duration": 86400}),
            ),
            command(
                json!({"type": "request_thread_control", "command_id": "req-1",
                "page_id": PAGE_A, "psid": psid, "metadata": "the bot can take it"}),
            ),
        ],
    )
    .await;
    let calls = graph_calls(&r.graph).await;
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[0].0, format!("/v23.0/{PAGE_A}/extend_thread_control"));
    assert_eq!(
        calls[0].2,
        json!({"recipient": {"id": psid}, "duration": 86400})
    );
    assert_eq!(
        calls[1].0,
        format!("/v23.0/{PAGE_A}/request_thread_control")
    );
    assert_eq!(calls[1].2["metadata"], "the bot can take it");
    let events = received(&r.sdk, &subscriber).await;
    check(&events);
    let outcomes: Vec<&str> = of_type(&events, "Command Completed")
        .iter()
        .map(|c| c["outcome"]["action"]["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, vec!["control_extended", "control_requested"]);
}
