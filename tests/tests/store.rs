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

mod thread_ledger {
    //! The ledger of a person's events on their thread: one read opens a turn, one
    //! write at the version read takes it, each later step one write with the claim.

    use super::*;
    use messenger_store::{
        ARCHIVE_ABOVE, ClaimToken, Consistency, Opened, Step, ThreadLedger as _, ThreadState,
        TurnKey, item_size,
    };

    fn thread() -> ThreadKey {
        ThreadKey::psid(
            PageId::new("100000000000001"),
            Psid::new("2000000000000001"),
        )
    }

    fn turn(mid: &str, ms: i64) -> TurnKey {
        TurnKey {
            thread: thread(),
            event: EventKey::from_readable(format!("message:{mid}")),
            at: at(ms),
        }
    }

    async fn open(store: &DynamoStore, turn: &TurnKey, now: i64) -> Opened {
        store
            .open_turn(turn, at(now), Consistency::Strong)
            .await
            .unwrap()
    }

    /// Opens, applies the message, takes with `step`; the claim.
    async fn take(store: &DynamoStore, turn: &TurnKey, now: i64, step: Step<'_>) -> ClaimToken {
        let Opened::Open {
            mut thread,
            version,
            ..
        } = open(store, turn, now).await
        else {
            panic!("{} not open", turn.event.as_str());
        };
        thread.apply(&ThreadChange::UserInteraction { at: turn.at });
        store
            .take_turn(turn, version, &thread, step, at(now))
            .await
            .unwrap()
            .expect("the thread changed under the take")
    }

    /// The thread's item, raw.
    async fn item(
        store: &DynamoStore,
    ) -> std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue> {
        store
            .client()
            .get_item()
            .table_name(store.table())
            .key(
                "pk",
                aws_sdk_dynamodb::types::AttributeValue::S(
                    "PAGE#100000000000001#USER#2000000000000001".into(),
                ),
            )
            .key(
                "sk",
                aws_sdk_dynamodb::types::AttributeValue::S("THREAD".into()),
            )
            .consistent_read(true)
            .send()
            .await
            .unwrap()
            .item
            .unwrap_or_default()
    }

    const WORKING: Step<'static> = Step::Working {
        done: 0,
        started: 1,
    };

    #[tokio::test]
    async fn a_turn_is_taken_once_with_its_changes_then_is_a_duplicate() {
        let store = store().await;
        let t = turn("m_1", 1_000);
        let token = take(&store, &t, 1_000, WORKING).await;
        assert_eq!(open(&store, &t, 2_000).await, Opened::Busy);
        let outcome = r#"{"acted":{"actions":[{"sent":{"message_id":"m_x"}}]}}"#;
        store
            .step_turn(&t, &token, Step::Done { outcome }, at(2_000))
            .await
            .unwrap();
        assert_eq!(
            open(&store, &t, 3_000).await,
            Opened::Duplicate {
                outcome: Some(outcome.to_owned())
            }
        );
        // Long after any lease, still a duplicate.
        assert!(matches!(
            open(&store, &t, 10 * CLAIM_LEASE_MS).await,
            Opened::Duplicate { .. }
        ));
        assert_eq!(
            store.thread(&thread()).await.unwrap().last_user_interaction,
            Some(at(1_000))
        );
    }

    #[tokio::test]
    async fn a_thread_expires_retention_days_after_its_last_event_and_reads_as_new() {
        let store = store().await.with_retention_days(400);
        let now = messenger_types::Timestamp::now().as_millis();
        let t = turn("m_1", now);
        let token = take(&store, &t, now, WORKING).await;
        store
            .step_turn(&t, &token, Step::Done { outcome: "{}" }, at(now))
            .await
            .unwrap();
        let ttl = item(&store).await["ttl"]
            .as_n()
            .unwrap()
            .parse::<i64>()
            .unwrap();
        assert!((ttl - (now / 1000 + 400 * 86_400)).abs() < 60, "ttl {ttl}");
        assert!(
            store
                .thread(&thread())
                .await
                .unwrap()
                .last_user_interaction
                .is_some()
        );

        // Past its ttl (DynamoDB has not deleted it yet): read as a new thread,
        // and the next event's take replaces every field of the old state.
        store
            .client()
            .update_item()
            .table_name(store.table())
            .key(
                "pk",
                aws_sdk_dynamodb::types::AttributeValue::S(
                    "PAGE#100000000000001#USER#2000000000000001".into(),
                ),
            )
            .key(
                "sk",
                aws_sdk_dynamodb::types::AttributeValue::S("THREAD".into()),
            )
            .update_expression("SET #ttl = :past, entry_ref = :r, entry_ts = :t")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(
                ":past",
                aws_sdk_dynamodb::types::AttributeValue::N((now / 1000 - 1).to_string()),
            )
            .expression_attribute_values(
                ":r",
                aws_sdk_dynamodb::types::AttributeValue::S("old-campaign".into()),
            )
            .expression_attribute_values(
                ":t",
                aws_sdk_dynamodb::types::AttributeValue::N(now.to_string()),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(
            store.thread(&thread()).await.unwrap(),
            ThreadState::default()
        );
        let later = turn("m_2", now + 1_000);
        let Opened::Open { thread: read, .. } = open(&store, &later, now + 1_000).await else {
            panic!("not open");
        };
        assert_eq!(read, ThreadState::default());
        take(&store, &later, now + 1_000, WORKING).await;
        let state = store.thread(&thread()).await.unwrap();
        assert_eq!(state.entry_point, None);
        assert_eq!(state.last_user_interaction, Some(at(now + 1_000)));
        assert!(!item(&store).await.contains_key("entry_ref"));
    }

    #[tokio::test]
    async fn a_take_at_a_stale_version_is_refused_and_changes_nothing() {
        let store = store().await;
        let t = turn("m_1", 1_000);
        let Opened::Open {
            thread: read,
            version,
            ..
        } = open(&store, &t, 1_000).await
        else {
            panic!("not open");
        };
        // Another writer marks the person unreachable after the read.
        store
            .update_thread(
                &thread(),
                &ThreadChange::Unreachable(messenger_store::Unreachable {
                    reason: "551".into(),
                    at: at(1_500),
                }),
            )
            .await
            .unwrap();
        assert_eq!(
            store
                .take_turn(&t, version, &read, WORKING, at(1_000))
                .await
                .unwrap(),
            None
        );
        // The other writer's change stands, and the event is still free.
        let state = store.thread(&thread()).await.unwrap();
        assert_eq!(state.unreachable.map(|u| u.reason), Some("551".to_owned()));
        assert!(matches!(open(&store, &t, 1_000).await, Opened::Open { .. }));
    }

    #[tokio::test]
    async fn an_expired_turn_passes_on_with_its_progress_and_the_dead_claim_is_refused() {
        let store = store().await;
        let t = turn("m_1", 1_000);
        let dead = take(&store, &t, 1_000, WORKING).await;
        let later = 1_001 + CLAIM_LEASE_MS;
        let Opened::Open { progress, .. } = open(&store, &t, later).await else {
            panic!("the lease did not end");
        };
        assert_eq!((progress.done_actions, progress.started_actions), (0, 1));
        let next = take(
            &store,
            &t,
            later,
            Step::Working {
                done: 1,
                started: 1,
            },
        )
        .await;
        let lost = store
            .step_turn(&t, &dead, Step::Done { outcome: "{}" }, at(later))
            .await
            .unwrap_err();
        assert_eq!(lost.kind, StoreErrorKind::LostClaim);
        // The dead claim's release is no error and changes nothing.
        let release = Step::Released {
            done: 0,
            started: 0,
            reason: "late",
        };
        store
            .step_turn(&t, &dead, release, at(later))
            .await
            .unwrap();
        store
            .step_turn(&t, &next, Step::Done { outcome: "{}" }, at(later))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_released_turn_is_taken_again_at_once_with_its_last_error() {
        let store = store().await;
        let t = turn("m_1", 1_000);
        let token = take(&store, &t, 1_000, WORKING).await;
        let release = Step::Released {
            done: 0,
            started: 0,
            reason: "Graph API error 500",
        };
        store
            .step_turn(&t, &token, release, at(1_000))
            .await
            .unwrap();
        let entry = store.ledger_entry(&t).await.unwrap().unwrap();
        assert_eq!(entry.last_error.as_deref(), Some("Graph API error 500"));
        let Opened::Open { progress, .. } = open(&store, &t, 1_001).await else {
            panic!("a released turn is not open");
        };
        assert_eq!((progress.done_actions, progress.started_actions), (0, 0));
    }

    #[tokio::test]
    async fn an_event_processed_before_the_ledger_moved_onto_threads_is_still_a_duplicate() {
        let store = store().await;
        // The previous version: the thread's item without a version, the event on
        // an item of its own, done.
        store
            .client()
            .put_item()
            .table_name(store.table())
            .item(
                "pk",
                aws_sdk_dynamodb::types::AttributeValue::S(
                    "PAGE#100000000000001#USER#2000000000000001".into(),
                ),
            )
            .item(
                "sk",
                aws_sdk_dynamodb::types::AttributeValue::S("THREAD".into()),
            )
            .item(
                "last_user_ts",
                aws_sdk_dynamodb::types::AttributeValue::N("1000".into()),
            )
            .send()
            .await
            .unwrap();
        let old = turn("m_before", 1_000);
        let Claim::Acquired { token, .. } = store.claim_event(&old.event, at(1_000)).await.unwrap()
        else {
            panic!("not claimed");
        };
        store
            .complete_event(&old.event, &token, "{\"recorded\":null}", at(1_000))
            .await
            .unwrap();
        assert!(matches!(
            open(&store, &old, 2_000).await,
            Opened::Duplicate { outcome: Some(_) }
        ));
        // A new event on that thread is open, and once a turn has written the thread
        // its events are looked up on it alone.
        let new = turn("m_after", 2_000);
        let token = take(&store, &new, 2_000, WORKING).await;
        store
            .step_turn(&new, &token, Step::Done { outcome: "{}" }, at(2_000))
            .await
            .unwrap();
        assert!(matches!(
            open(&store, &new, 3_000).await,
            Opened::Duplicate { .. }
        ));
    }

    #[tokio::test]
    async fn a_long_conversation_keeps_the_thread_under_a_write_unit_and_forgets_no_event() {
        let store = store().await;
        // A long entry point, as an ad's ref can be, and a long message id.
        store
            .update_thread(
                &thread(),
                &ThreadChange::EntryPoint(messenger_store::EntryPoint {
                    reference: Some("campaign-".repeat(12)),
                    source: Some("ADS".into()),
                    ad_id: None,
                    ads_context_data: None,
                    at: at(500),
                }),
            )
            .await
            .unwrap();
        let sent = format!(
            r#"{{"acted":{{"actions":[{{"sent":{{"message_id":"m_{}"}}}}]}}}}"#,
            "x".repeat(90)
        );
        let mut largest = 0;
        for i in 0..40 {
            let t = turn(&format!("m_{i}"), 1_000 + i * 1_000);
            let now = 1_000 + i * 1_000;
            let token = take(&store, &t, now, WORKING).await;
            largest = largest.max(item_size(&item(&store).await));
            store
                .step_turn(&t, &token, Step::Done { outcome: &sent }, at(now))
                .await
                .unwrap();
            largest = largest.max(item_size(&item(&store).await));
        }
        assert!(largest < 1024, "the thread's item reached {largest} bytes");
        assert!(
            largest > ARCHIVE_ABOVE,
            "{largest}: the archive was never needed"
        );
        let archives = store
            .client()
            .query()
            .table_name(store.table())
            .key_condition_expression("pk = :pk AND begins_with(sk, :ledger)")
            .expression_attribute_values(
                ":pk",
                aws_sdk_dynamodb::types::AttributeValue::S(
                    "PAGE#100000000000001#USER#2000000000000001".into(),
                ),
            )
            .expression_attribute_values(
                ":ledger",
                aws_sdk_dynamodb::types::AttributeValue::S("LEDGER#".into()),
            )
            .send()
            .await
            .unwrap()
            .count;
        eprintln!("40 events, the thread's item at most {largest} bytes, {archives} archive items");
        assert!(archives >= 3, "archived {archives} times");
        // Every event is still known: the archived ones too, after all leases.
        for i in 0..40 {
            let t = turn(&format!("m_{i}"), 1_000 + i * 1_000);
            assert!(
                matches!(
                    open(&store, &t, 10 * CLAIM_LEASE_MS).await,
                    Opened::Duplicate { .. }
                ),
                "m_{i} forgotten"
            );
        }
        // Only the newest keeps its outcome.
        assert_eq!(
            open(&store, &turn("m_39", 40_000), 10 * CLAIM_LEASE_MS).await,
            Opened::Duplicate {
                outcome: Some(sent.clone())
            }
        );
        // An event older than the archived ones that was never processed (a
        // redriven message) is open, not mistaken for a duplicate.
        assert!(matches!(
            open(&store, &turn("m_redriven", 1_500), 10 * CLAIM_LEASE_MS).await,
            Opened::Open { .. }
        ));
        let state: ThreadState = store.thread(&thread()).await.unwrap();
        assert_eq!(state.last_user_interaction, Some(at(40_000)));
        assert_eq!(
            state.entry_point.and_then(|e| e.reference),
            Some("campaign-".repeat(12))
        );
    }
}
