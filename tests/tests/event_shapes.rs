//! The event shapes other frameworks' fixtures carry (ids as numbers, timestamps in
//! seconds, older spellings, a field of the wrong shape) through the real webhook
//! and processor: a signed POST to the webhook (`webhook::from_env`) queues the
//! events on the emulator's FIFO queue, and the processor (`processor::from_env`)
//! takes them from there against the emulator's DynamoDB and a fake Graph API.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use integration_tests::logs::{Logged, Warnings};
use integration_tests::otn::tokens_of;
use integration_tests::rig::*;
use integration_tests::*;
use lambda_http::http::StatusCode;
use messenger_store::ThreadStore as _;
use messenger_store::{ThreadKey, ThreadState, TokenStatus};
use messenger_types::{PageId, Psid};
use serde_json::{Value, json};

/// The webhook as deployed, writing to the rig's events queue.
async fn webhook(rig: &Rig) -> webhook::AwsWebhook {
    let bucket = bucket(&rig.sdk).await;
    webhook::from_env(&webhook_env(&rig.queue, &bucket), &rig.sdk)
        .await
        .unwrap()
}

/// Meta's POST of `events` in one entry named `entry_id` (a string or a number),
/// signed; then the events queue runs through the processor.
async fn deliver(rig: &Rig, hook: &webhook::AwsWebhook, entry_id: Value, events: Vec<Value>) {
    let body = json!({"object": "page", "entry": [{"id": entry_id, "time": now_ms(), "messaging": events}]})
        .to_string();
    let response = hook.handle(post(&body, Some(&sign(&body)))).await.unwrap();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "{}",
        body_text(&response)
    );
    run_queue(rig, 1).await;
}

async fn thread(rig: &Rig, psid: &str) -> ThreadState {
    dynamo_store(rig)
        .thread(&ThreadKey::psid(PageId::new(PAGE_A), Psid::new(psid)))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_text_with_numeric_ids_gets_exactly_one_reply() {
    let rig = rig().await;
    let hook = webhook(&rig).await;
    let page: u64 = PAGE_A.parse().unwrap();
    let text = json!({"sender": {"id": 2_000_000_000_000_011_u64}, "recipient": {"id": page},
                      "timestamp": now_ms() - 1000, "message": {"mid": "m_numeric_ids", "text": "hello"}});
    deliver(&rig, &hook, json!(page), vec![text]).await;

    let sent = sends(&rig.graph).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].0, format!("/v23.0/{PAGE_A}/messages"));
    assert_eq!(sent[0].1, format!("Bearer {TOKEN_A}"));
    assert_eq!(sent[0].2["recipient"]["id"], "2000000000000011");
    assert!(matches!(
        only_action(&outcome_of(&rig, "m_numeric_ids").await),
        Outcome::Sent { .. }
    ));
    // The thread is the one the same ids as strings name.
    assert!(
        thread(&rig, "2000000000000011")
            .await
            .last_user_message
            .is_some()
    );
}

#[tokio::test]
async fn an_m_me_referral_stamped_in_seconds_a_minute_after_get_started_is_the_threads_entry_point()
{
    let rig = rig().await;
    let hook = webhook(&rig).await;
    let psid = "2000000000000012";
    let started = now_ms() - 5 * 60_000;
    let get_started = json!({"sender": {"id": psid}, "recipient": {"id": PAGE_A}, "timestamp": started,
        "postback": {"title": "Get Started", "payload": "GET_STARTED",
                     "referral": {"ref": "winter-ad", "source": "ADS", "type": "OPEN_THREAD"}}});
    // A minute later the person follows an m.me link; Meta stamps it in seconds.
    let a_minute_later = started / 1000 + 60;
    let referral = json!({"sender": {"id": psid}, "recipient": {"id": PAGE_A}, "timestamp": a_minute_later,
        "referral": {"ref": "spring-link", "source": "SHORTLINK", "type": "OPEN_THREAD"}});
    deliver(&rig, &hook, json!(PAGE_A), vec![get_started]).await;
    deliver(&rig, &hook, json!(PAGE_A), vec![referral]).await;

    let state = thread(&rig, psid).await;
    let entry = state.entry_point.unwrap();
    assert_eq!(
        (entry.reference.as_deref(), entry.source.as_deref()),
        (Some("spring-link"), Some("SHORTLINK"))
    );
    assert_eq!(entry.at.as_millis(), a_minute_later * 1000);
    // The window runs from the referral too, not from January 1970.
    assert_eq!(
        state.last_user_interaction.unwrap().as_millis(),
        a_minute_later * 1000
    );
    // Get Started got its one reply; a referral gets none.
    assert_eq!(sends(&rig.graph).await.len(), 1);
}

fn warned<'a>(warnings: &'a [Logged], field: &str) -> Option<&'a Logged> {
    warnings.iter().find(|w| {
        w.get("message").map(String::as_str) == Some("a field of the event could not be read")
            && w.get("field").map(String::as_str) == Some(field)
    })
}

#[tokio::test]
async fn what_cannot_be_read_is_a_warning_naming_kind_and_field_and_the_rest_is_still_read() {
    let (warnings, _guard) = Warnings::capture();
    let rig = rig().await;
    let hook = webhook(&rig).await;
    let null_list = json!({"sender": {"id": "2000000000000013"}, "recipient": {"id": PAGE_A},
                           "timestamp": now_ms() - 2000,
                           "message": {"mid": "m_null_list", "text": "hello", "attachments": null}});
    let no_mid = json!({"sender": {"id": "2000000000000014"}, "recipient": {"id": PAGE_A},
                        "timestamp": now_ms() - 1000, "message": {"text": "hello"}});
    deliver(&rig, &hook, json!(PAGE_A), vec![null_list, no_mid]).await;

    // A text with `"attachments": null` is still a text: it gets its reply.
    let sent = sends(&rig.graph).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].2["recipient"]["id"], "2000000000000013");

    let warnings = warnings.all();
    let attachments = warned(&warnings, "message.attachments").unwrap();
    assert_eq!(attachments["event_kind"], "message");
    assert_eq!(attachments["problem"], "null");
    assert_eq!(attachments["kind_read"], "true");
    let mid = warned(&warnings, "message.mid").unwrap();
    assert_eq!(mid["event_kind"], "message");
    assert_eq!(mid["problem"], "missing");
    assert_eq!(mid["kind_read"], "false");
    // Never the content.
    assert!(
        warnings
            .iter()
            .all(|w| w.values().all(|v| !v.contains("hello"))),
        "{warnings:?}"
    );
}

#[tokio::test]
async fn a_policy_enforcement_block_in_the_older_spelling_is_recorded() {
    let rig = rig().await;
    let hook = webhook(&rig).await;
    let block = json!({"recipient": {"id": PAGE_A}, "timestamp": now_ms() - 1000,
                       "policy-enforcement": {"action": "block", "reason": "spam"}});
    deliver(&rig, &hook, json!(PAGE_A), vec![block]).await;
    let page = dynamo_store(&rig).page(&PageId::new(PAGE_A)).await.unwrap();
    assert_eq!(page.policy_action.as_deref(), Some("block"));
    assert_eq!(page.policy_reason.as_deref(), Some("spam"));
}

#[tokio::test]
async fn a_recurring_token_follows_the_underscore_spelling_and_an_unknown_status_retires_it() {
    let rig = rig().await;
    let hook = webhook(&rig).await;
    let psid = "2000000000000015";
    let optin = |status: &str, age_ms: i64| {
        json!({"sender": {"id": psid}, "recipient": {"id": PAGE_A}, "timestamp": now_ms() - age_ms,
               "optin": {"type": "notification_messages", "payload": "weekly deals",
                         "notification_messages_token": "rn-token-15", "token_expiry_timestamp": now_ms() + 30 * DAY,
                         "notification_messages_status": status}})
    };
    let status = || async {
        let tokens = tokens_of(&rig, PAGE_A, psid).await;
        assert_eq!(tokens.len(), 1);
        tokens[0].status
    };
    deliver(
        &rig,
        &hook,
        json!(PAGE_A),
        vec![optin("RESUME_NOTIFICATIONS", 4000)],
    )
    .await;
    assert_eq!(status().await, TokenStatus::Active);
    deliver(
        &rig,
        &hook,
        json!(PAGE_A),
        vec![optin("STOP_NOTIFICATIONS", 3000)],
    )
    .await;
    assert_eq!(status().await, TokenStatus::Retired);
    deliver(
        &rig,
        &hook,
        json!(PAGE_A),
        vec![optin("RESUME NOTIFICATIONS", 2000)],
    )
    .await;
    assert_eq!(status().await, TokenStatus::Active);
    // A status Meta never documented fails closed.
    deliver(
        &rig,
        &hook,
        json!(PAGE_A),
        vec![optin("PAUSE_NOTIFICATIONS", 1000)],
    )
    .await;
    assert_eq!(status().await, TokenStatus::Retired);
}

/// Done when (issue 14): an ad referral and an account link are kept whole on the
/// thread (`ad_id`, `ads_context_data` as its JSON object, the linking
/// `authorization_code` and its time), read back from the table; `unlinked` clears
/// the code. The code is never in a warning.
#[tokio::test]
async fn an_ad_referral_and_an_account_link_are_kept_whole_on_the_thread_and_unlinking_clears_the_code()
 {
    let (warnings, _guard) = Warnings::capture();
    let rig = rig().await;
    let hook = webhook(&rig).await;
    let psid = "2000000000000015";
    let base = now_ms() - 10 * 60_000;
    let context = json!({"ad_title": "Winter boots", "photo_url": "https://scontent.example/boots.jpg",
                         "post_id": "1234567890_987654321", "product_id": "551"});
    let referral = json!({"sender": {"id": psid}, "recipient": {"id": PAGE_A}, "timestamp": base,
        "referral": {"ref": "winter-ad", "ad_id": 6_045_246_247_433_u64, "source": "ADS", "type": "OPEN_THREAD",
                     "ads_context_data": context}});
    let linked = json!({"sender": {"id": psid}, "recipient": {"id": PAGE_A}, "timestamp": base + 60_000,
        "account_linking": {"status": "linked", "authorization_code": "acct-4711-code"}});
    deliver(&rig, &hook, json!(PAGE_A), vec![referral, linked]).await;

    let state = thread(&rig, psid).await;
    let entry = state.entry_point.clone().unwrap();
    assert_eq!(entry.reference.as_deref(), Some("winter-ad"));
    assert_eq!(entry.source.as_deref(), Some("ADS"));
    assert_eq!(entry.ad_id.as_deref(), Some("6045246247433"));
    assert_eq!(Value::Object(entry.ads_context_data.unwrap()), context);
    let link = state.account_link.clone().unwrap();
    assert!(link.linked);
    assert_eq!(
        link.authorization_code.as_ref().map(|c| c.expose()),
        Some("acct-4711-code")
    );
    assert_eq!(link.at.as_millis(), base + 60_000);
    // The thread's item holds them under their own names (the context as JSON text).
    let item = scan_table(&rig)
        .await
        .into_iter()
        .find(|i| {
            attr_s(i, "pk") == format!("PAGE#{PAGE_A}#USER#{psid}") && attr_s(i, "sk") == "THREAD"
        })
        .unwrap();
    assert_eq!(attr_s(&item, "entry_ad_id"), "6045246247433");
    assert_eq!(
        serde_json::from_str::<Value>(&attr_s(&item, "entry_ads_context")).unwrap(),
        context
    );
    assert_eq!(attr_s(&item, "link_code"), "acct-4711-code");

    let unlinked = json!({"sender": {"id": psid}, "recipient": {"id": PAGE_A}, "timestamp": base + 120_000,
        "account_linking": {"status": "unlinked"}});
    deliver(&rig, &hook, json!(PAGE_A), vec![unlinked]).await;
    let state = thread(&rig, psid).await;
    let link = state.account_link.unwrap();
    assert!(!link.linked);
    assert_eq!(link.authorization_code, None);
    assert_eq!(link.at.as_millis(), base + 120_000);
    // The entry point is untouched by the link's changes.
    assert_eq!(
        state.entry_point.unwrap().ad_id.as_deref(),
        Some("6045246247433")
    );
    let item = scan_table(&rig)
        .await
        .into_iter()
        .find(|i| {
            attr_s(i, "pk") == format!("PAGE#{PAGE_A}#USER#{psid}") && attr_s(i, "sk") == "THREAD"
        })
        .unwrap();
    assert!(!item.contains_key("link_code"), "{item:?}");
    assert!(
        warnings
            .all()
            .iter()
            .all(|w| w.values().all(|v| !v.contains("acct-4711-code"))),
        "{:?}",
        warnings.all()
    );
}
