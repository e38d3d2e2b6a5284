//! The hourly Page check: for every connected Page, asks Graph whether its token is
//! still valid (`debug_token`) and whether the app's webhook subscription still has
//! every field the product handles (`GET /{page}/subscribed_apps`). A subscription
//! that lost fields is repaired (`POST /{page}/subscribed_apps`, with
//! `appsecret_proof`); a token Graph refuses makes the Page `INVALID`, as a refused
//! send does in the processor, so its events are parked instead of failing.
//!
//! A Page is connected when it has a token: `ACTIVE` with a sealed token in the
//! table, or a seed token (the secret's `page_access_tokens`) and no record.
//! `INVALID` Pages are counted unhealthy without a call (only a new token mends
//! them); `MISSING` Pages have no token to check (their parked events have their
//! own alarm).
//!
//! Pages are checked least recently checked first, a few at a time, and no check
//! starts with less than [`CheckConfig::safety_margin`] left before the
//! invocation's deadline: a run that stops early leaves the rest to the next one,
//! which starts with them.
//!
//! Metrics (`Function` = `page-check`): `PagesUnhealthy` (Pages `INVALID`, or whose
//! subscription could not be repaired, after the run) and `SubscriptionsRepaired`.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

use std::collections::BTreeSet;
use std::fmt;
use std::time::{Duration, Instant, SystemTime};

use app_config::{SecretReader, Secrets};
use aws_lambda_events::eventbridge::EventBridgeEvent;
use futures_util::StreamExt;
use graph_api::{GraphClient, GraphConfig, GraphError, WEBHOOK_FIELDS};
use messenger_store::{PageRegistry, PageStatus, StoreError};
use messenger_types::{PageId, Timestamp};
use processor::credentials::TokenKey;
use processor::park::{refusal_reason, refuses_token};
use processor::publish::Bus;
use secrecy::SecretString;
use serde::Serialize;
use signals::Metric;

pub use app_config::{ConfigError, Lookup, SdkConfig};

mod config;
pub use config::{AwsPageCheck, Config, from_env};

/// What one run did: the function's output.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    /// Connected Pages (with a token, `INVALID` ones included).
    pub pages: u64,
    /// Pages whose token and subscription were asked about this run.
    pub checked: u64,
    /// Checked and found well: token valid, every field subscribed.
    pub healthy: u64,
    /// Subscriptions that had lost fields and were subscribed again.
    pub repaired: u64,
    /// Pages this run marked `INVALID` (Graph refused their token).
    pub invalidated: u64,
    /// Pages unhealthy after the run: `INVALID` (before or now), or with a
    /// subscription that could not be repaired. `PagesUnhealthy`.
    pub unhealthy: u64,
    /// Checks that could not finish (Graph unreachable, the token not opened):
    /// the Page's status is left as it was.
    pub errors: u64,
    /// Whether every connected Page was checked; `false` when the run stopped for
    /// its deadline and left the rest to the next run.
    pub complete: bool,
}

/// How a run goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckConfig {
    /// The time to work when the invocation's deadline is unknown or past.
    pub fallback_budget: Duration,
    /// No Page's check starts with less than this left: three Graph calls at their
    /// timeout, and the writes after them.
    pub safety_margin: Duration,
    /// Pages checked at once.
    pub concurrency: usize,
}

pub const DEFAULT_BUDGET_SECONDS: u64 = 100;
/// Lambda's longest timeout.
pub const MAX_BUDGET_SECONDS: u64 = 900;
/// A Page's check is at most three Graph calls.
pub const GRAPH_TIMEOUT: Duration = Duration::from_secs(5);

impl Default for CheckConfig {
    fn default() -> Self {
        Self {
            fallback_budget: Duration::from_secs(DEFAULT_BUDGET_SECONDS),
            safety_margin: GRAPH_TIMEOUT * 3 + Duration::from_secs(5),
            concurrency: 4,
        }
    }
}

/// Where the app secret comes from: read again every run, so a rotation needs no
/// redeploy.
#[derive(Debug, Clone)]
pub enum SecretSource {
    /// `SECRET_ARN`.
    Manager(SecretReader),
    /// `APP_SECRET` and `PAGE_ACCESS_TOKENS` (local runs).
    Environment(Secrets),
}

impl SecretSource {
    async fn read(&self) -> Result<Secrets, ConfigError> {
        match self {
            Self::Manager(reader) => reader.read().await,
            Self::Environment(secrets) => Ok(secrets.clone()),
        }
    }
}

/// Why a run failed as a whole (a Page's own failure is counted, not returned).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("the Graph API client could not be built: {0}")]
    Graph(GraphError),
    #[error("none of the {0} Pages checked could be checked: see the log lines before this one")]
    NothingChecked(u64),
}

/// The Page check, generic over where Page records are kept.
pub struct PageCheck<R> {
    pub store: R,
    pub key: Box<dyn TokenKey>,
    pub bus: Box<dyn Bus>,
    pub secrets: SecretSource,
    pub graph: GraphConfig,
    /// `APP_ID`: asks `debug_token` with the app's token and picks this app's
    /// subscription. Unset, each token inspects itself and names its app.
    pub app_id: Option<String>,
    pub config: CheckConfig,
    pub clock: fn() -> Timestamp,
}

impl<R> fmt::Debug for PageCheck<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PageCheck")
            .field("graph_base_url", &self.graph.base_url)
            .field("app_id", &self.app_id)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A connected Page's token, as the table or the seed holds it.
enum Held {
    Sealed {
        sealed: Vec<u8>,
        version: Option<i64>,
    },
    Seed(SecretString),
}

/// How one Page's check ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Health {
    Healthy,
    Repaired,
    Invalidated,
    /// A newer token was stored while the old one was checked: left alone.
    Superseded,
    Unrepaired,
    Error,
}

/// How long this run may work: until the deadline, or `fallback` when there is
/// none or it is past (cargo-lambda's emulator gives deadlines in 1970).
fn budget(deadline: Option<SystemTime>, now: SystemTime, fallback: Duration) -> Duration {
    deadline
        .and_then(|d| d.duration_since(now).ok())
        .filter(|left| !left.is_zero())
        .unwrap_or(fallback)
}

impl<R: PageRegistry> PageCheck<R> {
    /// Handles one scheduled event (it carries nothing the check needs).
    pub async fn handle(
        &self,
        event: &EventBridgeEvent<serde_json::Value>,
        deadline: Option<SystemTime>,
    ) -> Result<CheckReport, CheckError> {
        let result = self.run(deadline).await;
        let event_id = event.id.as_deref().unwrap_or("-");
        match &result {
            Ok(r) => tracing::info!(
                event_id,
                pages = r.pages,
                checked = r.checked,
                healthy = r.healthy,
                repaired = r.repaired,
                invalidated = r.invalidated,
                unhealthy = r.unhealthy,
                errors = r.errors,
                complete = r.complete,
                "page check done"
            ),
            Err(e) => tracing::error!(event_id, error = %e, "page check failed"),
        }
        signals::flush();
        result
    }

    /// Checks the connected Pages, least recently checked first, until done or
    /// the deadline is near.
    pub async fn run(&self, deadline: Option<SystemTime>) -> Result<CheckReport, CheckError> {
        let started = Instant::now();
        let budget = budget(deadline, SystemTime::now(), self.config.fallback_budget);
        let secrets = self.secrets.read().await?;
        let graph = GraphClient::new(GraphConfig {
            app_secret: secrets.app_secret.clone(),
            timeout: GRAPH_TIMEOUT.min(self.graph.timeout),
            ..self.graph.clone()
        })
        .map_err(CheckError::Graph)?;

        let records = self.store.page_records().await?;
        let recorded: BTreeSet<&PageId> = records.iter().map(|(page, _)| page).collect();
        let mut report = CheckReport {
            complete: true,
            ..CheckReport::default()
        };
        let mut due: Vec<(Option<Timestamp>, PageId, Held)> = Vec::new();
        for (page, record) in &records {
            match (record.status, &record.sealed_token) {
                (PageStatus::Active, Some(sealed)) => due.push((
                    record.checked_at,
                    page.clone(),
                    Held::Sealed {
                        sealed: sealed.clone(),
                        version: record.token_version,
                    },
                )),
                (PageStatus::Invalid, _) => {
                    report.pages += 1;
                    report.unhealthy += 1;
                }
                _ => {}
            }
        }
        for (page, token) in &secrets.page_access_tokens {
            if !recorded.contains(page) {
                due.push((None, page.clone(), Held::Seed(token.clone())));
            }
        }
        // Never checked first, then the longest ago.
        due.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        report.pages += due.len() as u64;

        let (graph, secrets) = (&graph, &secrets);
        let margin = self.config.safety_margin;
        let results: Vec<Option<Health>> = futures_util::stream::iter(due)
            .map(|(_, page, held)| async move {
                // Checked when its turn comes, not when the run starts.
                if budget.saturating_sub(started.elapsed()) < margin {
                    return None;
                }
                Some(self.check_page(graph, secrets, &page, held).await)
            })
            .buffered(self.config.concurrency.max(1))
            .collect()
            .await;
        for health in results {
            let Some(health) = health else {
                report.complete = false;
                continue;
            };
            report.checked += 1;
            match health {
                Health::Healthy => report.healthy += 1,
                Health::Repaired => report.repaired += 1,
                Health::Invalidated => {
                    report.invalidated += 1;
                    report.unhealthy += 1;
                }
                Health::Unrepaired => report.unhealthy += 1,
                Health::Superseded => {}
                Health::Error => report.errors += 1,
            }
        }
        signals::count(Metric::SubscriptionsRepaired, report.repaired);
        signals::count(Metric::PagesUnhealthy, report.unhealthy);
        if report.checked > 0 && report.errors == report.checked {
            return Err(CheckError::NothingChecked(report.checked));
        }
        Ok(report)
    }

    async fn check_page(
        &self,
        graph: &GraphClient,
        secrets: &Secrets,
        page: &PageId,
        held: Held,
    ) -> Health {
        let (token, version) = match held {
            Held::Seed(token) => (token, None),
            Held::Sealed { sealed, version } => match self.key.open(page, &sealed).await {
                Ok(token) => (token, version),
                Err(error) => {
                    tracing::error!(page_id = %page, %error, "the Page's token could not be opened: not checked");
                    return Health::Error;
                }
            },
        };
        let asked = match (&self.app_id, &secrets.app_secret) {
            (Some(app_id), Some(secret)) => graph.debug_token(app_id, secret, &token).await,
            _ => graph.debug_own_token(&token).await,
        };
        let info = match asked {
            Ok(info) if info.is_valid => info,
            Ok(_) => {
                return self
                    .invalidate(page, version, "debug_token: not valid")
                    .await;
            }
            Err(e) => return self.graph_failed(page, version, "debug_token", &e).await,
        };
        let app = self.app_id.as_deref().or(info.app_id.as_deref());
        let fields = match graph.subscribed_fields(page, &token, app).await {
            Ok(fields) => fields,
            Err(e) => {
                return self
                    .graph_failed(page, version, "subscribed_apps", &e)
                    .await;
            }
        };
        let missing: Vec<&str> = WEBHOOK_FIELDS
            .split(',')
            .filter(|f| !fields.iter().any(|have| have == f))
            .collect();
        let health = if missing.is_empty() {
            Health::Healthy
        } else {
            let all: Vec<&str> = WEBHOOK_FIELDS.split(',').collect();
            match graph.subscribe_app(page, &token, &all).await {
                Ok(()) => {
                    tracing::warn!(page_id = %page, missing = %missing.join(","), "the Page's subscription had lost fields: subscribed again");
                    Health::Repaired
                }
                Err(e) if refuses_token(&e) => {
                    return self.invalidate(page, version, &refusal_reason(&e)).await;
                }
                Err(e) => {
                    tracing::error!(page_id = %page, missing = %missing.join(","), error = %e, alert = true, "the Page's subscription lacks fields and could not be repaired");
                    Health::Unrepaired
                }
            }
        };
        self.checked(page).await;
        health
    }

    /// A Graph call of the check failed: a refused token makes the Page
    /// `INVALID`; anything else leaves it as it was.
    async fn graph_failed(
        &self,
        page: &PageId,
        version: Option<i64>,
        call: &str,
        e: &GraphError,
    ) -> Health {
        if refuses_token(e) {
            return self.invalidate(page, version, &refusal_reason(e)).await;
        }
        tracing::warn!(page_id = %page, call, error = %e, "the Page could not be checked; its status is left as it was");
        Health::Error
    }

    async fn invalidate(&self, page: &PageId, version: Option<i64>, reason: &str) -> Health {
        let now = (self.clock)();
        match self
            .store
            .mark_page_invalid(page, version, reason, now)
            .await
        {
            Ok(true) => {
                tracing::error!(page_id = %page, %reason, alert = true, "Page marked INVALID by the Page check: its events are parked until a new token is stored (messenger page store-token)");
                processor::publish::page_status_changed(
                    &*self.bus,
                    page,
                    PageStatus::Invalid,
                    Some(reason),
                )
                .await;
                self.checked(page).await;
                Health::Invalidated
            }
            Ok(false) => {
                tracing::info!(page_id = %page, "a newer token was stored during the check; Page left as it is");
                Health::Superseded
            }
            Err(error) => {
                tracing::error!(page_id = %page, %reason, %error, "could not mark the Page INVALID");
                Health::Error
            }
        }
    }

    async fn checked(&self, page: &PageId) {
        if let Err(error) = self.store.page_checked(page, (self.clock)()).await {
            tracing::warn!(page_id = %page, %error, "could not note when the Page was checked");
        }
    }
}

#[cfg(test)]
mod tests;
