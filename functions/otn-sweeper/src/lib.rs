//! The OTN sweeper: on a schedule, marks EXPIRED every one-time notification token
//! whose year is up (MESSENGER.md §6), so that the tables and the notify fan-out
//! see only tokens that may still be used.
//!
//! It never scans. Tokens sit, while ACTIVE, in the sparse `otn-by-expiry` index
//! bucketed by the UTC day they expire; the sweeper queries only the buckets that
//! are due (from its cursor, the first day not yet finished, through today), and
//! expiring a token takes it out of the index. Its cost therefore follows the
//! number of tokens that expired, not the size of the table.
//!
//! Expiring is a conditional write (ACTIVE and due becomes EXPIRED), so a sweep is
//! idempotent and races neither a spend nor another sweep. Correctness never waits
//! for the sweeper: spending checks `expires_at` itself.
//!
//! Each run first gives back the tokens whose spend has been "sending" past its
//! lease (three hours, longer than the events queue's whole retry cycle): the
//! processor spent them and crashed before the send's fate was recorded, and no
//! redelivery resolved it. They sit in the same index under `SENDING#<shard>`,
//! so this too reads only what it changes. Meta carries at most one message per
//! token, so a token given back after its send did go out cannot reach the person
//! twice: its next use is refused by Meta and retires it.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

use std::time::{Duration, Instant, SystemTime};

use aws_lambda_events::eventbridge::EventBridgeEvent;
use messenger_store::otn::{day_from_str, day_number, day_string};
use messenger_store::{DynamoStore, StoreError, TokenStore};
use messenger_types::Timestamp;
use serde::Serialize;

pub use app_config::{ConfigError, Lookup, SdkConfig};

/// What one run did: the function's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    /// Tokens this run marked EXPIRED.
    pub expired: u64,
    /// Items DynamoDB read for it (the queries' `ScannedCount`).
    pub read: u64,
    /// Day buckets queried.
    pub buckets: u64,
    /// Whether every due bucket was swept to its end; `false` when the run stopped
    /// for its deadline and left the rest to the next run.
    pub complete: bool,
    /// The first day not yet finished (`YYYY-MM-DD`): where the next run starts.
    pub next_day: String,
    /// Tokens given back whose spend was left "sending" by a crashed send (in the
    /// output only when some were).
    #[serde(skip_serializing_if = "is_zero")]
    pub given_back: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What one pass over the unfinished sends did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StaleReport {
    /// Tokens given back (or expired, when their year ran out meanwhile).
    pub given_back: u64,
    /// Items DynamoDB read for it.
    pub read: u64,
    /// Whether every shard was read to its end.
    pub complete: bool,
}

/// Gives back every token whose spend has been "sending" past its lease at `now`
/// (see the module's introduction), shard by shard, page by page, until done or
/// the time left falls below the safety margin.
pub async fn give_back_stale<S: TokenStore>(
    store: &S,
    now: Timestamp,
    deadline: Option<SystemTime>,
    config: &SweepConfig,
) -> Result<StaleReport, StoreError> {
    let started = Instant::now();
    let budget = budget(deadline, SystemTime::now(), config.fallback_budget);
    let mut report = StaleReport {
        complete: true,
        ..StaleReport::default()
    };
    for shard in 0..messenger_store::SENDING_SHARDS {
        let mut after: Option<String> = None;
        loop {
            if budget.saturating_sub(started.elapsed()) < config.safety_margin {
                report.complete = false;
                return Ok(report);
            }
            let page = store
                .give_back_stale_spends(shard, now, after.as_deref(), config.page_size)
                .await?;
            report.given_back += page.given_back;
            report.read += page.read;
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
    }
    Ok(report)
}

/// How a sweep runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepConfig {
    /// Days before today to start from when no cursor is stored (the first run).
    pub lookback_days: u32,
    /// The time to work when the invocation's deadline is unknown or already past.
    pub fallback_budget: Duration,
    /// Time kept in hand before the deadline: no query starts with less left.
    pub safety_margin: Duration,
    /// Tokens per query (each one then gets its own conditional write).
    pub page_size: i32,
    /// How long after midnight UTC a day counts as finished. The expiry index is
    /// eventually consistent: a token written just before midnight may not be
    /// visible in its bucket at once, so the cursor leaves a day only once it has
    /// been over for this long.
    pub settle: Duration,
}

pub const DEFAULT_LOOKBACK_DAYS: u32 = 7;
pub const DEFAULT_BUDGET_SECONDS: u64 = 50;
/// Lambda's longest timeout.
pub const MAX_BUDGET_SECONDS: u64 = 900;
/// Ten years of empty buckets is already a long first run.
pub const MAX_LOOKBACK_DAYS: u32 = 3_660;

impl Default for SweepConfig {
    fn default() -> Self {
        Self {
            lookback_days: DEFAULT_LOOKBACK_DAYS,
            fallback_budget: Duration::from_secs(DEFAULT_BUDGET_SECONDS),
            // A page is one query and up to `page_size` single-item writes, a few
            // hundred milliseconds, and the cursor write follows it.
            safety_margin: Duration::from_secs(5),
            page_size: 50,
            settle: Duration::from_secs(15 * 60),
        }
    }
}

/// How long this run may work: until the invocation's deadline, or for `fallback`
/// when there is none or it has already passed. A past deadline is taken as
/// unknown, not as no time at all: cargo-lambda's local emulator hands every
/// invocation a deadline in 1970.
pub fn budget(deadline: Option<SystemTime>, now: SystemTime, fallback: Duration) -> Duration {
    deadline
        .and_then(|d| d.duration_since(now).ok())
        .filter(|left| !left.is_zero())
        .unwrap_or(fallback)
}

/// Sweeps the due expiry buckets: from the stored cursor (or, on the first run,
/// `lookback_days` before today) through today, page by page, until everything
/// due at `now` is expired or the time left falls below the safety margin.
///
/// A day before today whose bucket was swept to its end moves the cursor past it.
/// Today's bucket is never finished (more tokens expire later today), so the
/// cursor never passes today.
pub async fn sweep<S: TokenStore>(
    store: &S,
    now: Timestamp,
    deadline: Option<SystemTime>,
    config: &SweepConfig,
) -> Result<SweepReport, StoreError> {
    let started = Instant::now();
    let budget = budget(deadline, SystemTime::now(), config.fallback_budget);
    let time_left = || budget.saturating_sub(started.elapsed());

    let today = day_number(now);
    let settle = i64::try_from(config.settle.as_millis()).unwrap_or(i64::MAX);
    // Days before this one have been over for `settle`: they can be finished.
    let settled = day_number(now.plus_millis(-settle)).min(today);

    let stored = store.sweep_cursor().await?;
    let stored_day = stored.as_deref().and_then(|s| {
        let day = day_from_str(s);
        if day.is_none() {
            tracing::warn!(
                cursor = s,
                lookback_days = config.lookback_days,
                "the stored sweep cursor is not a date: starting from the lookback"
            );
        }
        day
    });
    let mut in_table = stored_day;
    let mut cursor = stored_day
        .unwrap_or(today - i64::from(config.lookback_days))
        .min(today);

    let mut report = SweepReport {
        expired: 0,
        read: 0,
        buckets: 0,
        complete: true,
        next_day: String::new(),
        given_back: 0,
    };
    let mut day = cursor;
    'days: while day <= today {
        let bucket = day_string(day);
        let mut after: Option<String> = None;
        let mut first_page = true;
        loop {
            if time_left() < config.safety_margin {
                report.complete = false;
                break 'days;
            }
            let page = store
                .sweep_expired(&bucket, now, after.as_deref(), config.page_size)
                .await?;
            if first_page {
                report.buckets += 1;
                first_page = false;
            }
            report.expired += page.expired;
            // Counted as they are written, so a sweep that fails later still says
            // what it expired.
            signals::count(signals::Metric::TokensExpired, page.expired);
            report.read += page.read;
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        if day < settled && cursor == day {
            cursor = day + 1;
            store.set_sweep_cursor(&day_string(cursor)).await?;
            in_table = Some(cursor);
        }
        day += 1;
    }
    // The first run (or one after an unreadable cursor) anchors where it started,
    // so that its successors do not recompute the start from a later today.
    if in_table != Some(cursor) {
        store.set_sweep_cursor(&day_string(cursor)).await?;
    }
    report.next_day = day_string(cursor);
    Ok(report)
}

/// The sweeper's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub table_name: String,
    pub sweep: SweepConfig,
}

impl Config {
    /// `TABLE_NAME` (required), `SWEEP_BUDGET_SECONDS` (1 to 900, default 50) and
    /// `SWEEP_LOOKBACK_DAYS` (0 to 3660, default 7).
    pub fn from_env(env: &impl Lookup) -> Result<Self, ConfigError> {
        let table_name = app_config::required(env, "TABLE_NAME")?.trim().to_owned();
        let budget = app_config::optional(env, "SWEEP_BUDGET_SECONDS", DEFAULT_BUDGET_SECONDS)?;
        if !(1..=MAX_BUDGET_SECONDS).contains(&budget) {
            return Err(ConfigError::Invalid {
                var: "SWEEP_BUDGET_SECONDS",
                reason: format!("must be between 1 and {MAX_BUDGET_SECONDS} seconds"),
            });
        }
        let lookback_days =
            app_config::optional(env, "SWEEP_LOOKBACK_DAYS", DEFAULT_LOOKBACK_DAYS)?;
        if lookback_days > MAX_LOOKBACK_DAYS {
            return Err(ConfigError::Invalid {
                var: "SWEEP_LOOKBACK_DAYS",
                reason: format!("must be between 0 and {MAX_LOOKBACK_DAYS} days"),
            });
        }
        Ok(Self {
            table_name,
            sweep: SweepConfig {
                lookback_days,
                fallback_budget: Duration::from_secs(budget),
                ..SweepConfig::default()
            },
        })
    }
}

/// The sweeper, generic over its token store.
#[derive(Debug)]
pub struct Sweeper<S> {
    pub store: S,
    pub config: SweepConfig,
    pub clock: fn() -> Timestamp,
}

impl<S: TokenStore> Sweeper<S> {
    pub fn new(store: S, config: SweepConfig) -> Self {
        Self {
            store,
            config,
            clock: Timestamp::now,
        }
    }

    /// Handles one scheduled event. The event carries nothing the sweep needs: the
    /// work is whatever is due now. `deadline` is the invocation's.
    pub async fn handle(
        &self,
        event: &EventBridgeEvent<serde_json::Value>,
        deadline: Option<SystemTime>,
    ) -> Result<SweepReport, StoreError> {
        let now = (self.clock)();
        let event_id = event.id.as_deref().unwrap_or("-");
        // The unfinished sends first: few, and a token held by a crashed send is
        // one a person is waiting for.
        let result = match give_back_stale(&self.store, now, deadline, &self.config).await {
            Ok(stale) => {
                if stale.given_back > 0 {
                    tracing::warn!(
                        event_id,
                        given_back = stale.given_back,
                        complete = stale.complete,
                        "tokens held by crashed sends given back"
                    );
                }
                sweep(&self.store, now, deadline, &self.config)
                    .await
                    .map(|r| SweepReport {
                        given_back: stale.given_back,
                        complete: r.complete && stale.complete,
                        ..r
                    })
            }
            Err(e) => Err(e),
        };
        match &result {
            Ok(r) => tracing::info!(
                event_id,
                given_back = r.given_back,
                expired = r.expired,
                read = r.read,
                buckets = r.buckets,
                complete = r.complete,
                next_day = %r.next_day,
                "otn sweep done"
            ),
            Err(e) => tracing::error!(event_id, error = %e, "otn sweep failed"),
        }
        signals::flush();
        result
    }
}

/// The sweeper as deployed.
pub type AwsSweeper = Sweeper<DynamoStore>;

/// Builds the sweeper from the environment.
pub fn from_env(env: &impl Lookup, sdk: &SdkConfig) -> Result<AwsSweeper, ConfigError> {
    let config = Config::from_env(env)?;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(sdk), config.table_name);
    Ok(Sweeper::new(store, config.sweep))
}

#[cfg(test)]
mod tests;
