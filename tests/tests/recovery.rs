//! Recovery from a processor that died holding an event: the claim it left on the
//! thread's ledger (in progress, with a lease) is taken over once the lease has run out, and
//! the person gets the reply the dead invocation never sent; while the lease still
//! holds, a delivery is handed back to SQS and nothing is sent.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use integration_tests::rig::*;
use integration_tests::*;
use messenger_store::{
    CLAIM_LEASE_MS, ClaimToken, Consistency, LedgerEntry, Opened, Step, StoreErrorKind, ThreadKey,
    ThreadLedger as _, TurnKey,
};
use messenger_types::{EventKey, PageId, Psid, Timestamp};
use processor::Processor;

/// The message event with this mid on `psid`'s thread, as the processor names it.
fn turn(psid: &str, mid: &str) -> TurnKey {
    TurnKey {
        thread: ThreadKey::psid(PageId::new(PAGE_A), Psid::new(psid)),
        event: EventKey::from_readable(format!("message:{mid}")),
        at: Timestamp::from_millis(now_ms()),
    }
}

/// The event's entry in its thread's ledger.
async fn entry(rig: &Rig, psid: &str, mid: &str) -> LedgerEntry {
    dynamo_store(rig)
        .ledger_entry(&turn(psid, mid))
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("no ledger entry for {mid}"))
}

/// Takes the event as an invocation does, at `at`, and leaves it with no action
/// started (the invocation dies before its first Graph call).
async fn claim(rig: &Rig, psid: &str, mid: &str, at: i64) -> ClaimToken {
    let store = dynamo_store(rig);
    let at = Timestamp::from_millis(at);
    let turn = turn(psid, mid);
    let Opened::Open {
        thread, version, ..
    } = store
        .open_turn(&turn, at, Consistency::Strong)
        .await
        .unwrap()
    else {
        panic!("the event was not free");
    };
    let step = Step::Working {
        done: 0,
        started: 0,
    };
    store
        .take_turn(&turn, version, &thread, step, at)
        .await
        .unwrap()
        .expect("the thread changed under the claim")
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
    let crashed = claim(&rig, psid, mid, now_ms() - CLAIM_LEASE_MS - 1_000).await;
    assert!(!entry(&rig, psid, mid).await.done);

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
    let record = entry(&rig, psid, mid).await;
    assert!(record.done);
    assert!(
        matches!(
            entry_outcome(&record).as_ref().map(only_action),
            Some(Outcome::Sent { .. })
        ),
        "{record:?}"
    );

    // The dead invocation, should it wake up, cannot overwrite what was done.
    let late = dynamo_store(&rig)
        .step_turn(
            &turn(psid, mid),
            &crashed,
            Step::Done { outcome: "late" },
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
        entry_outcome(&entry(&rig, psid, mid).await)
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
    claim(&rig, psid, mid, now_ms()).await;

    let response = rig
        .processor
        .handle(sqs_event("busy", &messages), None)
        .await;
    assert_eq!(failed_ids(&response), vec!["busy-0".to_owned()]);
    assert!(graph_calls(&rig.graph).await.is_empty());
    let record = entry(&rig, psid, mid).await;
    assert!(!record.done);
    assert_eq!(record.outcome, None);

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
    assert!(entry(&rig, psid, mid).await.done);
}
