//! The sweep's stepping, cursor and time rules against an in-memory expiry index.
//! The DynamoDB adapter itself is tested against the emulator in
//! `tests/tests/otn_sweeper.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use messenger_store::{SpendRefused, StoredToken, SweepPage, TokenRef};
use messenger_types::PageId;

use std::time::UNIX_EPOCH;

use super::*;

const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;
/// 2026-11-21T12:00:00Z.
const NOON: i64 = 1_795_262_400_000;

fn at(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms)
}

fn day_of(ms: i64) -> String {
    day_string(day_number(at(ms)))
}

/// The ACTIVE tokens of the expiry index by bucket day and `(expires_at, id)`,
/// as DynamoDB pages them: a page ends after `limit` items, with the last key as
/// where to continue.
#[derive(Debug, Default)]
struct FakeIndex {
    buckets: Mutex<BTreeMap<String, BTreeSet<(i64, u32)>>>,
    cursor: Mutex<Option<String>>,
    cursor_writes: Mutex<Vec<String>>,
    queries: Mutex<Vec<String>>,
    /// Time each query takes.
    delay: Duration,
}

impl FakeIndex {
    fn with_tokens(expiries: impl IntoIterator<Item = i64>) -> Self {
        let index = Self::default();
        index.add(expiries);
        index
    }

    fn add(&self, expiries: impl IntoIterator<Item = i64>) {
        let mut buckets = self.buckets.lock().unwrap();
        for (id, ms) in expiries.into_iter().enumerate() {
            buckets
                .entry(day_of(ms))
                .or_default()
                .insert((ms, u32::try_from(id).unwrap()));
        }
    }

    fn active(&self) -> usize {
        self.buckets
            .lock()
            .unwrap()
            .values()
            .map(BTreeSet::len)
            .sum()
    }

    fn queried(&self) -> Vec<String> {
        self.queries.lock().unwrap().clone()
    }

    fn stored_cursor(&self) -> Option<String> {
        self.cursor.lock().unwrap().clone()
    }

    fn set_cursor(self, day: &str) -> Self {
        *self.cursor.lock().unwrap() = Some(day.to_owned());
        self
    }
}

impl TokenStore for FakeIndex {
    async fn active_tokens(
        &self,
        _: &PageId,
        _: &str,
        _: Option<&str>,
        _: i32,
    ) -> Result<(Vec<TokenRef>, Option<String>), StoreError> {
        unimplemented!("the sweeper does not fan out")
    }

    async fn person_tokens(
        &self,
        _: &PageId,
        _: &messenger_types::Psid,
        _: &str,
    ) -> Result<Vec<TokenRef>, StoreError> {
        unimplemented!("the sweeper does not send")
    }

    async fn tokens_held(
        &self,
        _: &PageId,
        _: &messenger_types::Psid,
    ) -> Result<Vec<StoredToken>, StoreError> {
        unimplemented!("the sweeper does not send")
    }

    async fn spend_token(
        &self,
        _: &TokenRef,
        _: &str,
        _: Timestamp,
    ) -> Result<Result<StoredToken, SpendRefused>, StoreError> {
        unimplemented!("the sweeper does not spend")
    }

    async fn unspend_token(&self, _: &StoredToken, _: &str) -> Result<bool, StoreError> {
        unimplemented!("the sweeper does not spend")
    }

    async fn finish_spend(&self, _: &TokenRef, _: &str) -> Result<bool, StoreError> {
        unimplemented!("the sweeper does not send")
    }

    async fn give_back_stale_spends(
        &self,
        _: u32,
        _: Timestamp,
        _: Option<&str>,
        _: i32,
    ) -> Result<messenger_store::StalePage, StoreError> {
        Ok(messenger_store::StalePage::default())
    }

    async fn retire_token(&self, _: &TokenRef, _: &str, _: &str) -> Result<bool, StoreError> {
        unimplemented!("the sweeper does not retire")
    }

    async fn sweep_expired(
        &self,
        bucket_day: &str,
        now: Timestamp,
        after: Option<&str>,
        limit: i32,
    ) -> Result<SweepPage, StoreError> {
        self.queries.lock().unwrap().push(bucket_day.to_owned());
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let after: Option<(i64, u32)> = after.map(|a| serde_json::from_str(a).unwrap());
        let mut buckets = self.buckets.lock().unwrap();
        let Some(bucket) = buckets.get_mut(bucket_day) else {
            return Ok(SweepPage::default());
        };
        let due: Vec<(i64, u32)> = bucket
            .iter()
            .filter(|key| after.is_none_or(|a| **key > a) && key.0 < now.as_millis())
            .take(usize::try_from(limit).unwrap())
            .copied()
            .collect();
        for key in &due {
            bucket.remove(key);
        }
        let n = u64::try_from(due.len()).unwrap();
        Ok(SweepPage {
            expired: n,
            read: n,
            next: (due.len() == usize::try_from(limit).unwrap())
                .then(|| serde_json::to_string(due.last().unwrap()).unwrap()),
        })
    }

    async fn sweep_cursor(&self) -> Result<Option<String>, StoreError> {
        Ok(self.stored_cursor())
    }

    async fn set_sweep_cursor(&self, day: &str) -> Result<(), StoreError> {
        *self.cursor.lock().unwrap() = Some(day.to_owned());
        self.cursor_writes.lock().unwrap().push(day.to_owned());
        Ok(())
    }
}

fn config() -> SweepConfig {
    SweepConfig::default()
}

/// A deadline as Lambda gives it: well ahead.
fn plenty() -> Option<SystemTime> {
    Some(SystemTime::now() + Duration::from_secs(60))
}

#[test]
fn a_past_or_missing_deadline_means_the_fallback_budget() {
    let now = SystemTime::now();
    let fallback = Duration::from_secs(50);
    // What `cargo lambda watch` sends: Lambda-Runtime-Deadline-Ms: 600000.
    let emulator = UNIX_EPOCH + Duration::from_millis(600_000);
    assert_eq!(budget(Some(emulator), now, fallback), fallback);
    assert_eq!(budget(None, now, fallback), fallback);
    assert_eq!(budget(Some(now), now, fallback), fallback);
    assert_eq!(
        budget(Some(now + Duration::from_secs(7)), now, fallback),
        Duration::from_secs(7)
    );
    // A real deadline wins even when it leaves less than the fallback.
    assert_eq!(
        budget(Some(now + Duration::from_millis(1)), now, fallback),
        Duration::from_millis(1)
    );
}

#[tokio::test]
async fn the_first_run_looks_back_and_stops_the_cursor_at_today() {
    let store = FakeIndex::with_tokens([NOON - 3 * DAY_MS, NOON - HOUR_MS, NOON + HOUR_MS]);
    let report = sweep(&store, at(NOON), plenty(), &config()).await.unwrap();
    assert_eq!(
        report,
        SweepReport {
            expired: 2,
            read: 2,
            buckets: 8,
            complete: true,
            given_back: 0,
            next_day: "2026-11-21".to_owned(),
        }
    );
    assert_eq!(
        store.queried(),
        [
            "2026-11-14",
            "2026-11-15",
            "2026-11-16",
            "2026-11-17",
            "2026-11-18",
            "2026-11-19",
            "2026-11-20",
            "2026-11-21"
        ]
    );
    assert_eq!(store.stored_cursor().as_deref(), Some("2026-11-21"));
    // The token expiring later today is left for a later run.
    assert_eq!(store.active(), 1);
}

#[tokio::test]
async fn a_stored_cursor_is_where_the_sweep_starts_and_today_is_never_passed() {
    let store = FakeIndex::default().set_cursor("2026-11-21");
    let report = sweep(&store, at(NOON), plenty(), &config()).await.unwrap();
    assert_eq!(store.queried(), ["2026-11-21"]);
    assert_eq!(report.next_day, "2026-11-21");
    assert!(report.complete);
    assert!(
        store.cursor_writes.lock().unwrap().is_empty(),
        "an unchanged cursor is not rewritten"
    );
    // Late in the evening, today is still today.
    let report = sweep(
        &store,
        at(NOON + 11 * HOUR_MS + 59 * 60_000),
        plenty(),
        &config(),
    )
    .await
    .unwrap();
    assert_eq!(report.next_day, "2026-11-21");
    // After midnight (and the settling time) yesterday is finished.
    let report = sweep(&store, at(NOON + 13 * HOUR_MS), plenty(), &config())
        .await
        .unwrap();
    assert_eq!(report.next_day, "2026-11-22");
    assert_eq!(report.buckets, 2);
}

#[tokio::test]
async fn yesterday_stays_open_until_its_late_index_entries_have_settled() {
    let midnight = NOON + 12 * HOUR_MS;
    let store = FakeIndex::default().set_cursor("2026-11-21");
    let report = sweep(&store, at(midnight + 60_000), plenty(), &config())
        .await
        .unwrap();
    assert_eq!(store.queried(), ["2026-11-21", "2026-11-22"]);
    assert_eq!(report.next_day, "2026-11-21");
    // A token written just before midnight that the index showed only late.
    store.add([midnight - 1]);
    let report = sweep(&store, at(midnight + 20 * 60_000), plenty(), &config())
        .await
        .unwrap();
    assert_eq!(report.expired, 1);
    assert_eq!(report.next_day, "2026-11-22");
}

#[tokio::test]
async fn a_bucket_is_paged_to_its_end() {
    let store = FakeIndex::with_tokens((0..120).map(|i| NOON - DAY_MS + i));
    let store = store.set_cursor("2026-11-20");
    let report = sweep(&store, at(NOON), plenty(), &config()).await.unwrap();
    assert_eq!(report.expired, 120);
    assert_eq!(report.buckets, 2);
    // 50 + 50 + 20 in yesterday's bucket, then today's.
    assert_eq!(store.queried().len(), 4);
    assert_eq!(report.next_day, "2026-11-21");
    assert_eq!(store.active(), 0);
}

#[tokio::test]
async fn with_less_time_than_the_margin_nothing_is_started() {
    let store = FakeIndex::with_tokens([NOON - DAY_MS]).set_cursor("2026-11-19");
    let deadline = Some(SystemTime::now() + Duration::from_secs(2));
    let report = sweep(&store, at(NOON), deadline, &config()).await.unwrap();
    assert_eq!(
        report,
        SweepReport {
            expired: 0,
            read: 0,
            buckets: 0,
            complete: false,
            given_back: 0,
            next_day: "2026-11-19".to_owned(),
        }
    );
    assert!(store.queried().is_empty());
    assert_eq!(store.active(), 1);
}

#[tokio::test]
async fn a_sweep_out_of_time_stops_and_the_next_run_continues() {
    // 40 pages of 50 in one bucket, 20 ms a page: about 0.8 s of work.
    let mut store = FakeIndex::with_tokens((0..2_000).map(|i| NOON - 2 * DAY_MS + i));
    store.delay = Duration::from_millis(20);
    let store = store.set_cursor("2026-11-19");
    let tight = SweepConfig {
        safety_margin: Duration::from_millis(50),
        ..config()
    };
    let deadline = Some(SystemTime::now() + Duration::from_millis(250));
    let first = sweep(&store, at(NOON), deadline, &tight).await.unwrap();
    assert!(!first.complete);
    assert!(first.expired < 2_000, "{first:?}");
    assert_eq!(
        first.next_day, "2026-11-19",
        "an unfinished day keeps the cursor"
    );

    let second = sweep(&store, at(NOON), plenty(), &tight).await.unwrap();
    assert!(second.complete);
    assert_eq!(first.expired + second.expired, 2_000);
    assert_eq!(second.next_day, "2026-11-21");
}

#[tokio::test]
async fn the_emulators_1970_deadline_falls_back_to_the_budget() {
    let store = FakeIndex::with_tokens([NOON - DAY_MS]);
    let emulator = Some(UNIX_EPOCH + Duration::from_millis(600_000));
    let report = sweep(&store, at(NOON), emulator, &config()).await.unwrap();
    assert_eq!(report.expired, 1);
    assert!(report.complete);
}

#[tokio::test]
async fn an_unreadable_cursor_restarts_from_the_lookback_and_is_replaced() {
    let store = FakeIndex::with_tokens([NOON - 2 * DAY_MS]).set_cursor("yesterday");
    let report = sweep(&store, at(NOON), plenty(), &config()).await.unwrap();
    assert_eq!(report.expired, 1);
    assert_eq!(
        store.queried().first().map(String::as_str),
        Some("2026-11-14")
    );
    assert_eq!(store.stored_cursor().as_deref(), Some("2026-11-21"));
}

#[tokio::test]
async fn a_cursor_in_the_future_is_brought_back_to_today() {
    let store = FakeIndex::with_tokens([NOON - HOUR_MS]).set_cursor("2027-01-01");
    let report = sweep(&store, at(NOON), plenty(), &config()).await.unwrap();
    assert_eq!(report.expired, 1);
    assert_eq!(store.queried(), ["2026-11-21"]);
    assert_eq!(store.stored_cursor().as_deref(), Some("2026-11-21"));
}

#[tokio::test]
async fn a_first_run_out_of_time_still_anchors_its_start() {
    let store = FakeIndex::default();
    let lookback = SweepConfig {
        lookback_days: 2,
        ..config()
    };
    let deadline = Some(SystemTime::now() + Duration::from_secs(1));
    let report = sweep(&store, at(NOON), deadline, &lookback).await.unwrap();
    assert!(!report.complete);
    assert_eq!(store.stored_cursor().as_deref(), Some("2026-11-19"));
}

#[tokio::test]
async fn the_handler_reports_the_documented_json() {
    let event: EventBridgeEvent<serde_json::Value> =
        serde_json::from_str(include_str!("../../../events/otn-sweeper-scheduled.json")).unwrap();
    assert_eq!(event.detail_type, "Scheduled Event");
    let sweeper = Sweeper {
        clock: || Timestamp::from_millis(NOON),
        ..Sweeper::new(FakeIndex::with_tokens([NOON - DAY_MS]), config())
    };
    let report = sweeper.handle(&event, plenty()).await.unwrap();
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
fn configuration_defaults_and_errors_name_the_variable() {
    let config = Config::from_env(&[("TABLE_NAME", "messenger")]).unwrap();
    assert_eq!(config.table_name, "messenger");
    assert_eq!(config.sweep, SweepConfig::default());
    assert_eq!(config.sweep.lookback_days, 7);
    assert_eq!(config.sweep.fallback_budget, Duration::from_secs(50));

    let config = Config::from_env(&[
        ("TABLE_NAME", "messenger"),
        ("SWEEP_BUDGET_SECONDS", "20"),
        ("SWEEP_LOOKBACK_DAYS", "400"),
    ])
    .unwrap();
    assert_eq!(config.sweep.fallback_budget, Duration::from_secs(20));
    assert_eq!(config.sweep.lookback_days, 400);

    let err = Config::from_env(&[("SWEEP_BUDGET_SECONDS", "20")]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "missing configuration: TABLE_NAME is not set"
    );
    for (var, value) in [
        ("SWEEP_BUDGET_SECONDS", "fifty"),
        ("SWEEP_BUDGET_SECONDS", "0"),
        ("SWEEP_BUDGET_SECONDS", "901"),
        ("SWEEP_LOOKBACK_DAYS", "-1"),
        ("SWEEP_LOOKBACK_DAYS", "3661"),
    ] {
        let err = Config::from_env(&[("TABLE_NAME", "messenger"), (var, value)]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("invalid configuration: {var}")),
            "{var}={value}: {err}"
        );
    }
}
