//! The OTN sweeper against the emulator: a token whose year is up is expired and
//! can no longer be spent, the cost of a sweep follows the expired tokens and not
//! the table, sweeping again changes nothing, the cursor never passes today, and
//! cargo-lambda's 1970 deadline does not stop the sweep.
//!
//! The tests run at a fixed instant (`NOW`), which the store takes as a parameter:
//! day boundaries are then the same on every run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use integration_tests::*;
use messenger_store::ThreadStore as _;
use messenger_store::otn::{OTN_LIFETIME_MS, utc_day};
use messenger_store::{
    DynamoStore, NewToken, SpendRefused, ThreadKey, TokenKind, TokenRef, TokenStatus, TokenStore,
};
use messenger_types::{PageId, Psid, Timestamp};
use otn_sweeper::{SweepConfig, SweepReport, Sweeper, sweep};

/// 2026-11-21T12:00:00Z.
const NOW: i64 = 1_795_262_400_000;
const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;
const PAGE: &str = "1234567890";
const TOPIC: &str = "back in stock";

fn at(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms)
}

async fn store() -> DynamoStore {
    let sdk = emulator().await;
    let table = table(&sdk).await;
    DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), table)
}

/// An OTN token from `psid`'s optin at `created_ms`.
fn token(psid: &str, created_ms: i64) -> NewToken {
    NewToken {
        page: PageId::new(PAGE),
        psid: Psid::new(psid),
        topic: TOPIC.to_owned(),
        token: format!("otn-token-{psid}-{created_ms}"),
        kind: TokenKind::OneTime,
        created_at: at(created_ms),
        expires_at: at(created_ms + OTN_LIFETIME_MS),
    }
}

/// Stores a token as the processor does when its optin arrives: ACTIVE.
async fn optin(store: &DynamoStore, token: &NewToken) {
    assert!(
        store
            .save_token(token, true, token.created_at)
            .await
            .unwrap()
    );
}

fn thread(psid: &str) -> ThreadKey {
    ThreadKey::psid(PageId::new(PAGE), Psid::new(psid))
}

/// A deadline as Lambda gives it: the function's 60 s timeout, from now.
fn lambda_deadline() -> Option<SystemTime> {
    Some(SystemTime::now() + Duration::from_secs(60))
}

#[tokio::test]
async fn a_token_a_year_old_is_expired_and_can_no_longer_be_spent() {
    let store = store().await;
    let old = token("psid-old", NOW - 366 * DAY_MS);
    let recent = token("psid-old", NOW - 10 * DAY_MS);
    optin(&store, &old).await;
    optin(&store, &recent).await;

    let report = sweep(&store, at(NOW), lambda_deadline(), &SweepConfig::default())
        .await
        .unwrap();
    assert_eq!(report.expired, 1, "{report:?}");
    assert!(report.complete);
    assert_eq!(report.next_day, utc_day(at(NOW)));

    let tokens = store.tokens_of(&thread("psid-old")).await.unwrap();
    let statuses: Vec<_> = tokens.iter().map(|t| (t.created_at, t.status)).collect();
    assert_eq!(
        statuses,
        [
            (old.created_at, TokenStatus::Expired),
            (recent.created_at, TokenStatus::Active)
        ]
    );
    // Gone from the notify fan-out too.
    let (fan_out, _) = store
        .active_tokens(&PageId::new(PAGE), TOPIC, None, 100)
        .await
        .unwrap();
    assert_eq!(fan_out.len(), 1);
    assert_eq!(fan_out[0].sk, tokens[1].sk);

    let expired = TokenRef {
        page: PageId::new(PAGE),
        psid: Psid::new("psid-old"),
        sk: tokens[0].sk.clone(),
    };
    let spend = store
        .spend_token(&expired, "notify-1", at(NOW))
        .await
        .unwrap();
    assert!(
        matches!(
            spend,
            Err(SpendRefused::NotActive(TokenStatus::Expired) | SpendRefused::Expired)
        ),
        "{spend:?}"
    );
    assert_eq!(
        store.tokens_of(&thread("psid-old")).await.unwrap()[0].status,
        TokenStatus::Expired
    );
}

#[tokio::test]
async fn cost_follows_the_expired_tokens_not_the_table_and_a_second_sweep_does_nothing() {
    let store = store().await;
    let started = Instant::now();
    // 10,000 live tokens expiring from an hour from now (today's bucket, not yet
    // due) over the next 347 days, written 16 at a time.
    let live = (0..10_000i64).map(|i| {
        token(
            &format!("psid-live-{i}"),
            NOW - OTN_LIFETIME_MS + HOUR_MS + i * 50 * 60_000,
        )
    });
    let mut writes = tokio::task::JoinSet::new();
    for t in live {
        if writes.len() == 16 {
            writes.join_next().await.unwrap().unwrap();
        }
        let store = store.clone();
        writes.spawn(async move { optin(&store, &t).await });
    }
    while let Some(done) = writes.join_next().await {
        done.unwrap();
    }
    // 10 whose year is up: from a minute ago (today's bucket) back over 4 days.
    for j in 0..10 {
        optin(
            &store,
            &token(
                &format!("psid-due-{j}"),
                NOW - OTN_LIFETIME_MS - 60_000 - j * 10 * HOUR_MS,
            ),
        )
        .await;
    }
    let written = started.elapsed();

    let started = Instant::now();
    let first = sweep(&store, at(NOW), lambda_deadline(), &SweepConfig::default())
        .await
        .unwrap();
    let swept = started.elapsed();
    assert_eq!(first.expired, 10, "{first:?}");
    assert!(
        first.read <= 20,
        "a sweep reads the due tokens, not the table: {first:?}"
    );
    assert_eq!(first.buckets, 8, "the 7-day lookback and today");
    assert!(first.complete);

    let started = Instant::now();
    let second = sweep(&store, at(NOW), lambda_deadline(), &SweepConfig::default())
        .await
        .unwrap();
    let swept_again = started.elapsed();
    assert_eq!(
        second,
        SweepReport {
            expired: 0,
            read: 0,
            buckets: 1,
            complete: true,
            next_day: utc_day(at(NOW)),
            given_back: 0,
        }
    );
    eprintln!(
        "10,010 tokens written in {written:?}; first sweep {swept:?} ({first:?}); second {swept_again:?}"
    );
    for j in 0..10 {
        let tokens = store
            .tokens_of(&thread(&format!("psid-due-{j}")))
            .await
            .unwrap();
        assert_eq!(tokens[0].status, TokenStatus::Expired);
    }
    for i in [0, 12, 13, 9_999] {
        let tokens = store
            .tokens_of(&thread(&format!("psid-live-{i}")))
            .await
            .unwrap();
        assert_eq!(tokens[0].status, TokenStatus::Active, "live token {i}");
    }
    // The emulator keeps every table in memory: give these 10,010 items back.
    store
        .client()
        .delete_table()
        .table_name(store.table())
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn the_cursor_moves_past_swept_days_and_never_past_today() {
    let store = store().await;
    store
        .set_sweep_cursor(&utc_day(at(NOW - 3 * DAY_MS)))
        .await
        .unwrap();
    for (n, expires) in [
        NOW - 3 * DAY_MS,
        NOW - 2 * DAY_MS,
        NOW - DAY_MS,
        NOW + 2 * HOUR_MS,
    ]
    .into_iter()
    .enumerate()
    {
        optin(
            &store,
            &token(&format!("psid-{n}"), expires - OTN_LIFETIME_MS),
        )
        .await;
    }
    let config = SweepConfig::default();

    let report = sweep(&store, at(NOW), lambda_deadline(), &config)
        .await
        .unwrap();
    assert_eq!((report.expired, report.buckets), (3, 4), "{report:?}");
    assert_eq!(
        store.sweep_cursor().await.unwrap(),
        Some("2026-11-21".to_owned())
    );
    assert_eq!(report.next_day, "2026-11-21");

    // Later the same day: the token due at 14:00 is expired, the cursor stays.
    let report = sweep(&store, at(NOW + 3 * HOUR_MS), lambda_deadline(), &config)
        .await
        .unwrap();
    assert_eq!((report.expired, report.buckets), (1, 1));
    assert_eq!(
        store.sweep_cursor().await.unwrap(),
        Some("2026-11-21".to_owned())
    );

    // The next day, the finished day is left behind; the new today is not.
    let report = sweep(&store, at(NOW + DAY_MS), lambda_deadline(), &config)
        .await
        .unwrap();
    assert_eq!(report.next_day, "2026-11-22");
    assert_eq!(
        store.sweep_cursor().await.unwrap(),
        Some("2026-11-22".to_owned())
    );
}

#[tokio::test]
async fn a_deadline_in_1970_means_the_fallback_budget_and_the_sweep_runs() {
    let sdk = emulator().await;
    let table = table(&sdk).await;
    let env = [
        ("TABLE_NAME", table.as_str()),
        ("SWEEP_BUDGET_SECONDS", "20"),
    ];
    let sweeper = Sweeper {
        clock: || Timestamp::from_millis(NOW),
        ..otn_sweeper::from_env(&env, &sdk).unwrap()
    };
    optin(&sweeper.store, &token("psid-emulated", NOW - 366 * DAY_MS)).await;
    let event = serde_json::from_value(event_json("otn-sweeper-scheduled.json")).unwrap();

    // A real deadline a second away leaves less than the safety margin: no work.
    let hurried = sweeper
        .handle(&event, Some(SystemTime::now() + Duration::from_secs(1)))
        .await
        .unwrap();
    assert_eq!((hurried.expired, hurried.complete), (0, false));

    // What `cargo lambda watch` sends: Lambda-Runtime-Deadline-Ms: 600000.
    let emulated = Some(UNIX_EPOCH + Duration::from_millis(600_000));
    let report = sweeper.handle(&event, emulated).await.unwrap();
    assert_eq!(
        serde_json::to_value(&report).unwrap(),
        serde_json::json!({
            "expired": 1,
            "read": 1,
            "buckets": 8,
            "complete": true,
            "next_day": "2026-11-21"
        })
    );
}

#[test]
fn the_template_runs_the_sweeper_hourly_with_only_the_access_it_needs() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml");
    let template: serde_norway::Value =
        serde_norway::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let function = &template["Resources"]["OtnSweeperFunction"];
    assert_eq!(
        function["Metadata"]["BuildProperties"]["Binary"].as_str(),
        Some("otn-sweeper")
    );
    let properties = &function["Properties"];
    let timeout = Duration::from_secs(properties["Timeout"].as_u64().unwrap());
    let defaults = SweepConfig::default();
    assert!(
        timeout > defaults.safety_margin + Duration::from_secs(10),
        "the sweep needs time to work before its safety margin"
    );
    assert!(
        !properties["Environment"]["Variables"]["TABLE_NAME"].is_null(),
        "TABLE_NAME is required"
    );
    let events = properties["Events"].as_mapping().unwrap();
    assert!(
        events
            .values()
            .any(|e| e["Type"].as_str() == Some("Schedule")),
        "the sweeper runs on a schedule"
    );
    // Its own role's statements (tests/tests/template.rs checks the role is its).
    let policies = serde_norway::to_string(
        &template["Resources"]["OtnSweeperFunctionRole"]["Properties"]["Policies"],
    )
    .unwrap();
    let index = messenger_store::schema::OTN_BY_EXPIRY.name;
    assert!(policies.contains(&format!("/index/{index}")), "{policies}");
    for action in ["dynamodb:Query", "dynamodb:GetItem", "dynamodb:UpdateItem"] {
        assert!(policies.contains(action), "{action} missing: {policies}");
    }
    for never in ["dynamodb:Scan", "dynamodb:PutItem", "dynamodb:DeleteItem"] {
        assert!(!policies.contains(never), "{never} granted: {policies}");
    }
}
