//! The DynamoDB state adapter against the emulator: event claims (duplicates,
//! concurrent deliveries, recovery after a crash) and order-proof thread updates.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use integration_tests::*;
use messenger_store::{
    CLAIM_LEASE_MS, Claim, Control, DynamoStore, StoreErrorKind, ThreadChange, ThreadKey,
};
use messenger_store::{EventLedger as _, ThreadStore as _};
use messenger_types::{AppId, EventKey, PageId, Psid, Timestamp};

async fn store() -> DynamoStore {
    let sdk = emulator().await;
    let table = table(&sdk).await;
    DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), table)
}

fn at(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms)
}

#[tokio::test]
async fn an_event_is_claimed_once_then_is_a_duplicate() {
    let store = store().await;
    let key = EventKey::from_readable("message:m_claim");
    let Claim::Acquired {
        token,
        done_actions,
        ..
    } = store.claim_event(&key, at(1_000)).await.unwrap()
    else {
        panic!("first claim must succeed");
    };
    assert_eq!(done_actions, 0);
    // A concurrent delivery while the claim holds: try later.
    assert_eq!(
        store.claim_event(&key, at(2_000)).await.unwrap(),
        Claim::Busy
    );
    store
        .complete_event(&key, &token, "sent m_1", at(3_000))
        .await
        .unwrap();
    assert_eq!(
        store.claim_event(&key, at(4_000)).await.unwrap(),
        Claim::Duplicate {
            outcome: Some("sent m_1".to_owned())
        }
    );
    // Even long after the lease would have run out.
    assert!(matches!(
        store
            .claim_event(&key, at(10 * CLAIM_LEASE_MS))
            .await
            .unwrap(),
        Claim::Duplicate { .. }
    ));
}

#[tokio::test]
async fn a_claim_left_by_a_crash_is_taken_over_with_its_progress() {
    let store = store().await;
    let key = EventKey::from_readable("message:m_crash");
    let Claim::Acquired { token: crashed, .. } = store.claim_event(&key, at(1_000)).await.unwrap()
    else {
        panic!();
    };
    store.record_progress(&key, &crashed, 1).await.unwrap();
    // The worker dies here. Before the lease ends, the event stays taken...
    assert_eq!(
        store
            .claim_event(&key, at(1_000 + CLAIM_LEASE_MS - 1))
            .await
            .unwrap(),
        Claim::Busy
    );
    // ...after it, a redelivery takes it over and skips the action already done.
    let Claim::Acquired {
        token,
        done_actions,
        ..
    } = store
        .claim_event(&key, at(1_001 + CLAIM_LEASE_MS))
        .await
        .unwrap()
    else {
        panic!("an expired claim must be taken over");
    };
    assert_eq!(done_actions, 1);
    // The crashed worker, should it wake up, can no longer write.
    let err = store
        .complete_event(&key, &crashed, "late", at(2_000))
        .await
        .unwrap_err();
    assert_eq!(err.kind, StoreErrorKind::LostClaim);
    store
        .complete_event(&key, &token, "sent", at(3_000))
        .await
        .unwrap();
}

#[tokio::test]
async fn an_action_started_by_a_crashed_attempt_is_reported_to_the_next() {
    let store = store().await;
    let key = EventKey::from_readable("message:m_started");
    let Claim::Acquired { token, .. } = store.claim_event(&key, at(1_000)).await.unwrap() else {
        panic!();
    };
    store.record_progress(&key, &token, 1).await.unwrap();
    store.start_action(&key, &token, 2).await.unwrap();
    // Dies during the second call.
    let Claim::Acquired {
        done_actions,
        started_actions,
        token,
    } = store
        .claim_event(&key, at(1_001 + CLAIM_LEASE_MS))
        .await
        .unwrap()
    else {
        panic!();
    };
    assert_eq!((done_actions, started_actions), (1, 2));
    // A call that certainly failed is taken back, so the next attempt makes it.
    store.start_action(&key, &token, 2).await.unwrap();
    store.abandon_action(&key, &token, 2).await.unwrap();
    store
        .release_event(&key, &token, "test: a passing failure")
        .await
        .unwrap();
    let Claim::Acquired {
        done_actions,
        started_actions,
        ..
    } = store
        .claim_event(&key, at(2_000 + CLAIM_LEASE_MS))
        .await
        .unwrap()
    else {
        panic!();
    };
    assert_eq!((done_actions, started_actions), (1, 1));
}

#[tokio::test]
async fn a_released_claim_can_be_taken_again_at_once() {
    let store = store().await;
    let key = EventKey::from_readable("message:m_release");
    let Claim::Acquired { token, .. } = store.claim_event(&key, at(1_000)).await.unwrap() else {
        panic!();
    };
    store
        .release_event(&key, &token, "test: a passing failure")
        .await
        .unwrap();
    assert!(matches!(
        store.claim_event(&key, at(1_001)).await.unwrap(),
        Claim::Acquired { .. }
    ));
}

#[tokio::test]
async fn thread_updates_keep_the_newest_whatever_order_they_arrive_in() {
    let store = store().await;
    let thread = ThreadKey::psid(PageId::new("1"), Psid::new("2"));
    assert!(
        store
            .update_thread(&thread, &ThreadChange::UserInteraction { at: at(500) })
            .await
            .unwrap()
    );
    assert!(
        !store
            .update_thread(&thread, &ThreadChange::UserInteraction { at: at(400) })
            .await
            .unwrap()
    );
    assert!(
        !store
            .update_thread(&thread, &ThreadChange::UserInteraction { at: at(500) })
            .await
            .unwrap()
    );
    assert_eq!(
        store.thread(&thread).await.unwrap().last_user_interaction,
        Some(at(500))
    );

    let inbox = AppId::new("263902037430900");
    let pass = ThreadChange::Control(Control {
        ours: false,
        owner: Some(inbox.clone()),
        since: at(600),
    });
    let stale = ThreadChange::Control(Control {
        ours: true,
        owner: None,
        since: at(550),
    });
    store.update_thread(&thread, &pass).await.unwrap();
    store.update_thread(&thread, &stale).await.unwrap();
    let state = store.thread(&thread).await.unwrap();
    assert!(!state.controlled_by_us());
    assert_eq!(state.control.unwrap().owner, Some(inbox.clone()));

    // A standby event says "not ours" without naming the owner: the owner is kept.
    let standby = ThreadChange::Control(Control {
        ours: false,
        owner: None,
        since: at(700),
    });
    store.update_thread(&thread, &standby).await.unwrap();
    assert_eq!(
        store.thread(&thread).await.unwrap().control.unwrap().owner,
        Some(inbox)
    );
}

#[tokio::test]
async fn a_thread_never_seen_has_the_default_state() {
    let store = store().await;
    let thread = ThreadKey::psid(PageId::new("1"), Psid::new("never"));
    let state = store.thread(&thread).await.unwrap();
    assert_eq!(state, Default::default());
    assert!(state.controlled_by_us());
}

#[tokio::test]
async fn an_events_thread_changes_land_together_or_each_on_its_own_merit() {
    let store = store().await;
    let thread = ThreadKey::psid(PageId::new("1"), Psid::new("merged"));
    let message = |t: i64| {
        [
            ThreadChange::UserInteraction { at: at(t) },
            ThreadChange::Reachable { at: at(t) },
            ThreadChange::Control(Control {
                ours: true,
                owner: None,
                since: at(t),
            }),
        ]
    };
    // In order: all three in one write.
    store
        .update_thread_all(&thread, &message(100))
        .await
        .unwrap();
    let state = store.thread(&thread).await.unwrap();
    assert_eq!(state.last_user_interaction, Some(at(100)));
    assert!(state.controlled_by_us());

    // Meta said at 300 that the person cannot be reached; a message sent at 200
    // arrives after that: its interaction counts, the newer reachability stays.
    store
        .update_thread(
            &thread,
            &ThreadChange::Unreachable(messenger_store::Unreachable {
                reason: "551: person unavailable".to_owned(),
                at: at(300),
            }),
        )
        .await
        .unwrap();
    store
        .update_thread_all(&thread, &message(200))
        .await
        .unwrap();
    let state = store.thread(&thread).await.unwrap();
    assert_eq!(state.last_user_interaction, Some(at(200)));
    assert_eq!(state.control.unwrap().since, at(200));
    assert_eq!(state.unreachable.unwrap().at, at(300));

    // Changes touching one field twice are applied one by one, newest wins.
    store
        .update_thread_all(
            &thread,
            &[
                ThreadChange::Reachable { at: at(400) },
                ThreadChange::Unreachable(messenger_store::Unreachable {
                    reason: "551: again".to_owned(),
                    at: at(450),
                }),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .thread(&thread)
            .await
            .unwrap()
            .unreachable
            .unwrap()
            .reason,
        "551: again"
    );
}

#[tokio::test]
async fn a_token_is_stored_once_whatever_the_timestamp_and_a_half_done_save_finishes() {
    use aws_sdk_dynamodb::types::AttributeValue;
    use messenger_store::{NewToken, TokenKind, TokenStatus};

    let sdk = emulator().await;
    let table = table(&sdk).await;
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
    let store = DynamoStore::new(dynamo.clone(), table.clone());
    let thread = ThreadKey::psid(PageId::new("1"), Psid::new("2"));
    let token = |created: i64| NewToken {
        page: PageId::new("1"),
        psid: Psid::new("2"),
        topic: "restock".to_owned(),
        token: "otn-token-once".to_owned(),
        kind: TokenKind::OneTime,
        created_at: at(created),
        expires_at: at(created + messenger_store::otn::OTN_LIFETIME_MS),
    };
    let now = at(1_000);
    assert!(store.save_token(&token(500), true, now).await.unwrap());
    assert!(!store.save_token(&token(500), true, now).await.unwrap());
    // The same token in an optin with another timestamp: not a second token.
    assert!(!store.save_token(&token(900), true, now).await.unwrap());
    let saved = store.tokens_of(&thread).await.unwrap();
    assert_eq!(saved.len(), 1);
    assert_eq!(saved[0].created_at, at(500));
    assert_eq!(saved[0].status, TokenStatus::Active);

    // A save that died after its guard and before its item: the retry finishes it.
    dynamo
        .delete_item()
        .table_name(&table)
        .key("pk", AttributeValue::S("PAGE#1#USER#2".to_owned()))
        .key("sk", AttributeValue::S(saved[0].sk.clone()))
        .send()
        .await
        .unwrap();
    assert!(store.tokens_of(&thread).await.unwrap().is_empty());
    assert!(!store.save_token(&token(900), true, now).await.unwrap());
    assert!(store.save_token(&token(500), true, now).await.unwrap());
    assert_eq!(store.tokens_of(&thread).await.unwrap().len(), 1);
}
