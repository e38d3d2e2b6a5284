//! One-time notifications where things meet: a request asked for too late, the same
//! notify command delivered again and again, a person writing while their
//! notification goes out, the sweeper expiring tokens while notify commands spend
//! them, and an optin replayed after its token was spent. Against the emulator and
//! a fake Graph API; every assertion is on what the person would receive or what
//! the table says of their tokens.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use integration_tests::otn::*;
use integration_tests::rig::*;
use integration_tests::*;
use messenger_store::ThreadStore as _;
use messenger_store::otn::OTN_LIFETIME_MS;
use messenger_store::{NewToken, TokenKind, TokenStatus};
use messenger_types::{PageId, Psid, Timestamp};
use serde_json::{Value, json};

fn optin_at(page: &str, psid: &str, topic: &str, token: &str, timestamp: i64) -> Value {
    json!({
        "sender": {"id": psid}, "recipient": {"id": page}, "timestamp": timestamp,
        "optin": {"type": "one_time_notif_req", "payload": topic, "one_time_notif_token": token}
    })
}

/// The one-time notification tokens the fake Graph API was sent, one entry per send.
async fn notified_tokens(rig: &Rig) -> Vec<String> {
    sends(&rig.graph)
        .await
        .into_iter()
        .filter_map(|(_, _, body)| {
            body["recipient"]["one_time_notif_token"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

/// How many sends each one-time notification token carried.
async fn sends_per_token(rig: &Rig) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for token in notified_tokens(rig).await {
        *counts.entry(token).or_insert(0) += 1;
    }
    counts
}

/// Stores an ACTIVE one-time token as the processor does when its optin arrives.
async fn seed_token(rig: &Rig, psid: &str, topic: &str, token: &str, created_ms: i64) {
    let created = Timestamp::from_millis(created_ms);
    let stored = dynamo_store(rig)
        .save_token(
            &NewToken {
                page: PageId::new(PAGE_A),
                psid: Psid::new(psid),
                topic: topic.to_owned(),
                token: token.to_owned(),
                kind: TokenKind::OneTime,
                created_at: created,
                expires_at: created.plus_millis(OTN_LIFETIME_MS),
            },
            true,
            created,
        )
        .await
        .unwrap();
    assert!(stored, "{token} was new");
}

#[tokio::test]
async fn notify_me_about_outside_the_24_hour_window_sends_no_request_and_records_the_refusal() {
    let rig = rig().await;
    // Just past the window, and a full day past it.
    for (psid, mid, age) in [
        ("2000000000001001", "m_notify_late_1", DAY + 60_000),
        ("2000000000001002", "m_notify_late_2", 25 * HOUR),
    ] {
        let messages = queue_messages(&[(
            PAGE_A,
            vec![text_event(
                PAGE_A,
                psid,
                mid,
                "notify me about Back in Stock",
                age,
            )],
            vec![],
        )]);
        let response = rig.processor.handle(sqs_event(mid, &messages), None).await;
        assert!(failed_ids(&response).is_empty(), "a refusal is not retried");
        let outcome = outcome_of(&rig, mid).await;
        assert!(
            matches!(
                only_action(&outcome),
                Outcome::Refused { reason } if reason.code() == "outside_window"
            ),
            "{mid}: {outcome:?}"
        );
    }
    assert!(
        graph_calls(&rig.graph).await.is_empty(),
        "no OTN request (or anything else) went out"
    );
}

#[tokio::test]
async fn one_notify_command_delivered_five_times_at_once_and_again_later_sends_once_per_token() {
    let rig = rig().await;
    let now = now_ms();
    let tokens: Vec<String> = (0..12).map(|i| format!("otn-token-dup-{i}")).collect();
    for (i, token) in tokens.iter().enumerate() {
        seed_token(&rig, &format!("50000000000{i:05}"), "restock", token, now).await;
    }
    // Another topic's person must not hear of it.
    seed_token(&rig, "5000000000099999", "other", "otn-token-other", now).await;

    // The very same SQS message (same id, same body): Lambda invoked five times at
    // once with it, as after a visibility timeout during a slow fan-out.
    let command = [notify(PAGE_A, "restock", "Back in stock!")];
    let delivery = sqs_event("dup", &command);
    let responses = futures_util::future::join_all(
        (0..5).map(|_| rig.processor.handle(delivery.clone(), None)),
    )
    .await;
    for response in &responses {
        assert!(
            failed_ids(response).is_empty(),
            "{:?}",
            failed_ids(response)
        );
    }
    run_queue(&rig, 4).await;
    // Then once more, long after the first copies' work has left the queue.
    process(&rig, "dup", &command).await;

    let counts = sends_per_token(&rig).await;
    let expected: BTreeMap<String, usize> = tokens.iter().map(|t| (t.clone(), 1)).collect();
    assert_eq!(counts, expected);
    for (i, _) in tokens.iter().enumerate() {
        let stored = tokens_of(&rig, PAGE_A, &format!("50000000000{i:05}")).await;
        assert_eq!(stored[0].status, TokenStatus::Used, "token {i}");
    }
    assert_eq!(
        tokens_of(&rig, PAGE_A, "5000000000099999").await[0].status,
        TokenStatus::Active
    );
}

#[tokio::test]
async fn a_person_writing_while_their_notification_goes_out_gets_one_reply_and_one_notification() {
    let rig = rig().await;
    for round in 0..6 {
        let psid = format!("600000000000{round:04}");
        let topic = format!("price drop {round}");
        let token = format!("otn-token-meet-{round}");
        let mid = format!("m_meet_{round}");
        seed_token(&rig, &psid, &topic, &token, now_ms() - 2 * DAY).await;
        let before = sends(&rig.graph).await.len();

        let text = queue_messages(&[(
            PAGE_A,
            vec![text_event(PAGE_A, &psid, &mid, "any news?", 500)],
            vec![],
        )]);
        let command = [notify(PAGE_A, &topic, "The price dropped!")];
        let reply = rig
            .processor
            .handle(sqs_event(&format!("text{round}"), &text), None);
        let notification = async {
            let response = rig
                .processor
                .handle(sqs_event(&format!("notify{round}"), &command), None)
                .await;
            run_queue(&rig, 4).await;
            response
        };
        let (reply, notification) = tokio::join!(reply, notification);
        assert!(failed_ids(&reply).is_empty(), "round {round}");
        assert!(failed_ids(&notification).is_empty(), "round {round}");

        let sent: Vec<Value> = sends(&rig.graph)
            .await
            .into_iter()
            .skip(before)
            .map(|(_, _, body)| body)
            .collect();
        let replies = sent
            .iter()
            .filter(|b| b["recipient"]["id"] == psid.as_str())
            .count();
        let notifications = sent
            .iter()
            .filter(|b| b["recipient"]["one_time_notif_token"] == token.as_str())
            .count();
        assert_eq!(
            (replies, notifications, sent.len()),
            (1, 1, 2),
            "round {round}: {sent:?}"
        );
        assert!(
            matches!(
                only_action(&outcome_of(&rig, &mid).await),
                Outcome::Sent { .. }
            ),
            "round {round}"
        );
        let stored = tokens_of(&rig, PAGE_A, &psid).await;
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].status, TokenStatus::Used, "round {round}");
    }
}

#[tokio::test]
async fn the_sweeper_racing_notify_commands_never_lets_an_expired_token_out() {
    let rig = rig().await;
    let now = now_ms();
    let topic = "tickets on sale";
    // Whose year is up: a minute ago, an hour ago, days ago (inside the sweeper's
    // first-run lookback of 7 days) and 30 days ago (outside it).
    let expired_ago = [60_000, HOUR, 2 * DAY, 6 * DAY, 30 * DAY];
    // Still good: for another hour, another day, or most of the year.
    let good_for = [HOUR, DAY, 200 * DAY, OTN_LIFETIME_MS - 60_000];
    let mut expired = BTreeMap::new();
    let mut live = BTreeMap::new();
    for copy in 0..3 {
        for (i, ago) in expired_ago.iter().enumerate() {
            let psid = format!("7000000000{copy}{i:05}");
            let token = format!("otn-token-gone-{copy}-{i}");
            seed_token(&rig, &psid, topic, &token, now - ago - OTN_LIFETIME_MS).await;
            expired.insert(token, psid);
        }
        for (i, left) in good_for.iter().enumerate() {
            let psid = format!("7100000000{copy}{i:05}");
            let token = format!("otn-token-live-{copy}-{i}");
            seed_token(&rig, &psid, topic, &token, now + left - OTN_LIFETIME_MS).await;
            live.insert(token, psid);
        }
    }

    let sweeper =
        otn_sweeper::Sweeper::new(dynamo_store(&rig), otn_sweeper::SweepConfig::default());
    let scheduled: aws_lambda_events::eventbridge::EventBridgeEvent<Value> =
        serde_json::from_value(event_json("otn-sweeper-scheduled.json")).unwrap();
    let deadline = Some(SystemTime::now() + Duration::from_secs(60));
    let sweeps =
        futures_util::future::join_all((0..2).map(|_| sweeper.handle(&scheduled, deadline)));
    let notifies = async {
        let responses = futures_util::future::join_all((0..3).map(|i| {
            rig.processor.handle(
                sqs_event(
                    &format!("tickets{i}"),
                    &[notify(PAGE_A, topic, &format!("Tickets on sale ({i})"))],
                ),
                None,
            )
        }))
        .await;
        run_queue(&rig, 4).await;
        responses
    };
    let (reports, responses) = tokio::join!(sweeps, notifies);
    for report in reports {
        report.unwrap();
    }
    for response in &responses {
        assert!(
            failed_ids(response).is_empty(),
            "{:?}",
            failed_ids(response)
        );
    }

    let counts = sends_per_token(&rig).await;
    let sent_expired: Vec<&String> = counts.keys().filter(|t| expired.contains_key(*t)).collect();
    assert!(
        sent_expired.is_empty(),
        "expired tokens sent: {sent_expired:?}"
    );
    let expected: BTreeMap<String, usize> = live.keys().map(|t| (t.clone(), 1)).collect();
    assert_eq!(counts, expected);
    for (token, psid) in &expired {
        let stored = tokens_of(&rig, PAGE_A, psid).await;
        assert_eq!(stored[0].status, TokenStatus::Expired, "{token}");
    }
    for (token, psid) in &live {
        let stored = tokens_of(&rig, PAGE_A, psid).await;
        assert_eq!(stored[0].status, TokenStatus::Used, "{token}");
    }
}

#[tokio::test]
async fn an_optin_token_is_captured_exactly_and_a_replayed_optin_does_not_revive_it_once_spent() {
    let rig = rig().await;
    let psid = "2000000000002001";
    let token = "otn-token-capture-1";
    let created = now_ms() - 10_000;
    process(
        &rig,
        "tap",
        &queue_messages(&[(
            PAGE_A,
            vec![optin_at(PAGE_A, psid, "topic", token, created)],
            vec![],
        )]),
    )
    .await;

    let stored = tokens_of(&rig, PAGE_A, psid).await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    let t = &stored[0];
    assert_eq!(t.page, PageId::new(PAGE_A));
    assert_eq!(t.psid, Psid::new(psid));
    assert_eq!(t.topic, "topic");
    assert_eq!(t.token, token);
    assert_eq!(t.kind, TokenKind::OneTime);
    assert_eq!(t.created_at, Timestamp::from_millis(created));
    assert_eq!(
        t.expires_at,
        Timestamp::from_millis(created + 365 * 24 * 60 * 60 * 1000)
    );
    assert_eq!(t.status, TokenStatus::Active);
    let spent_sk = t.sk.clone();

    process(&rig, "n1", &[notify(PAGE_A, "topic", "It happened")]).await;
    assert_eq!(notified_tokens(&rig).await, vec![token.to_owned()]);
    assert_eq!(
        tokens_of(&rig, PAGE_A, psid).await[0].status,
        TokenStatus::Used
    );

    // The same token again, in an optin event of its own (another timestamp, so the
    // event is not a duplicate of the first).
    process(
        &rig,
        "replay",
        &queue_messages(&[(
            PAGE_A,
            vec![optin_at(PAGE_A, psid, "topic", token, created + 5_000)],
            vec![],
        )]),
    )
    .await;
    let after: Vec<(String, TokenStatus)> = tokens_of(&rig, PAGE_A, psid)
        .await
        .iter()
        .filter(|t| t.token == token)
        .map(|t| (t.sk.clone(), t.status))
        .collect();
    assert!(
        after.contains(&(spent_sk, TokenStatus::Used)),
        "the spent record is kept USED: {after:?}"
    );
    assert!(
        after
            .iter()
            .all(|(_, status)| *status != TokenStatus::Active),
        "a spent token is ACTIVE again: {after:?}"
    );

    process(&rig, "n2", &[notify(PAGE_A, "topic", "It happened again")]).await;
    assert_eq!(
        notified_tokens(&rig).await,
        vec![token.to_owned()],
        "a spent token carried a second notification"
    );
}
