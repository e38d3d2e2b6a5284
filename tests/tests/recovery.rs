//! Recovery from a processor that died holding an event: the claim it left in the
//! table (IN_PROGRESS, with a lease) is taken over once the lease has run out, and
//! the person gets the reply the dead invocation never sent; while the lease still
//! holds, a delivery is handed back to SQS and nothing is sent.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use integration_tests::rig::*;
use integration_tests::*;
use messenger_store::EventLedger as _;
use messenger_store::{CLAIM_LEASE_MS, Claim, ClaimToken, StoreErrorKind};
use messenger_types::{EventKey, Timestamp};
use processor::Processor;

/// The key the processor claims a message event under.
fn message_key(mid: &str) -> EventKey {
    EventKey::from_readable(format!("message:{mid}"))
}

/// The processed-event record of the message with this mid.
async fn event_record(rig: &Rig, mid: &str) -> HashMap<String, AttributeValue> {
    aws_sdk_dynamodb::Client::new(&rig.sdk)
        .get_item()
        .table_name(&rig.table)
        .key(
            "pk",
            AttributeValue::S(format!("EVENT#{}", message_key(mid).digest())),
        )
        .key("sk", AttributeValue::S("EVENT".to_owned()))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .unwrap_or_default()
}

/// Claims the event as an invocation does before its first Graph call, at `at`.
async fn claim(rig: &Rig, mid: &str, at: i64) -> ClaimToken {
    match dynamo_store(rig)
        .claim_event(&message_key(mid), Timestamp::from_millis(at))
        .await
        .unwrap()
    {
        Claim::Acquired {
            token,
            done_actions: 0,
            started_actions: 0,
        } => token,
        other => panic!("the event was not free: {other:?}"),
    }
}

/// A text message from `psid`, as the webhook queues it.
fn hello(psid: &str, mid: &str) -> Vec<webhook::OutgoingMessage> {
    queue_messages(&[(
        PAGE_A,
        vec![text_event(PAGE_A, psid, mid, "hello?", 1000)],
        vec![],
    )])
}

/// The replies the fake Graph API received for `psid`.
async fn replies_to(rig: &Rig, psid: &str) -> Vec<serde_json::Value> {
    sends(&rig.graph)
        .await
        .into_iter()
        .map(|(_, _, body)| body)
        .filter(|b| b["recipient"]["id"] == psid)
        .collect()
}

#[tokio::test]
async fn an_event_left_claimed_by_a_crash_before_any_send_is_answered_once_when_redelivered() {
    let rig = rig().await;
    let (psid, mid) = ("2000000000003001", "m_crashed");
    let messages = hello(psid, mid);
    // An invocation claimed the event a lease and a second ago and died before
    // calling Graph: the record is IN_PROGRESS and its lease has run out.
    let crashed = claim(&rig, mid, now_ms() - CLAIM_LEASE_MS - 1_000).await;
    assert_eq!(
        attr_s(&event_record(&rig, mid).await, "status"),
        "IN_PROGRESS"
    );

    // SQS delivers the message again (its visibility timeout outlasts the lease).
    let response = rig
        .processor
        .handle(sqs_event("redelivery", &messages), None)
        .await;
    assert!(
        failed_ids(&response).is_empty(),
        "{:?}",
        failed_ids(&response)
    );

    let replies = replies_to(&rig, psid).await;
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert_eq!(replies[0]["messaging_type"], "RESPONSE");
    assert!(replies[0]["message"]["text"].is_string());
    let record = event_record(&rig, mid).await;
    assert_eq!(attr_s(&record, "status"), "DONE");
    assert!(
        matches!(
            recorded_outcome(&record).as_ref().map(only_action),
            Some(Outcome::Sent { .. })
        ),
        "{record:?}"
    );

    // The dead invocation, should it wake up, cannot overwrite what was done.
    let late = dynamo_store(&rig)
        .complete_event(
            &message_key(mid),
            &crashed,
            "late",
            Timestamp::from_millis(now_ms()),
        )
        .await
        .unwrap_err();
    assert_eq!(late.kind, StoreErrorKind::LostClaim);
    // And a further redelivery is a duplicate.
    let again = rig
        .processor
        .handle(sqs_event("again", &messages), None)
        .await;
    assert!(failed_ids(&again).is_empty());
    assert_eq!(replies_to(&rig, psid).await.len(), 1);
    assert!(matches!(
        recorded_outcome(&event_record(&rig, mid).await)
            .as_ref()
            .map(only_action),
        Some(Outcome::Sent { .. })
    ));
}

#[tokio::test]
async fn while_another_invocation_holds_the_event_a_delivery_is_handed_back_and_nothing_is_sent() {
    let rig = rig().await;
    let (psid, mid) = ("2000000000003002", "m_held");
    let messages = hello(psid, mid);
    // Another invocation claimed it a moment ago and is still at work (or not yet
    // known to be dead): its lease runs for another CLAIM_LEASE_MS.
    claim(&rig, mid, now_ms()).await;

    let response = rig
        .processor
        .handle(sqs_event("busy", &messages), None)
        .await;
    assert_eq!(failed_ids(&response), vec!["busy-0".to_owned()]);
    assert!(graph_calls(&rig.graph).await.is_empty());
    let record = event_record(&rig, mid).await;
    assert_eq!(attr_s(&record, "status"), "IN_PROGRESS");
    assert_eq!(recorded_outcome(&record), None);

    // The holder never finishes; SQS delivers again after the lease is over (the
    // processor's clock moved past it).
    let later = Processor {
        clock: || Timestamp::from_millis(now_ms() + CLAIM_LEASE_MS + 1_000),
        ..with_store(&rig, dynamo_store(&rig))
    };
    let response = later.handle(sqs_event("after", &messages), None).await;
    assert!(
        failed_ids(&response).is_empty(),
        "{:?}",
        failed_ids(&response)
    );
    assert_eq!(replies_to(&rig, psid).await.len(), 1);
    assert_eq!(attr_s(&event_record(&rig, mid).await, "status"), "DONE");
}
