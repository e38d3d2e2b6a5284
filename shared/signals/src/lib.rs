//! The functions' CloudWatch metrics, in the Embedded Metric Format (EMF).
//!
//! Each function counts what happens with [`count`] (or [`count_by`] for a metric
//! with a `Reason` or `ErrorClass` dimension) and writes its counts once, at the
//! end of each invocation, with [`flush`]: one JSON document per dimension set on
//! stdout, which Lambda sends to CloudWatch Logs and CloudWatch turns into metrics.
//! No API call, no extra permission, nothing on the hot path but an atomic add.
//!
//! The documents are written by `metrics_cloudwatch_embedded`, a recorder for the
//! `metrics` facade (see the README, "Signals", for why this crate).
//!
//! | metric | function | dimensions |
//! |---|---|---|
//! | `EventsAccepted`, `EventsQuarantined`, `SignatureRejected`, `EnqueueFailed` | webhook | `Function` |
//! | `EventsProcessed`, `EventsUnreadable`, `DuplicatesSkipped`, `MessagesSent`, `EventsParked`, `PageCredentialsInvalid`, `MessagesDeadLettered` | processor | `Function` |
//! | `SendsRefused`, `MessagesRefused` | processor | `Function`, `Reason` |
//! | `GraphErrors` | processor | `Function`, `ErrorClass` |
//! | `TokensExpired` | otn-sweeper | `Function` |
//! | `PagesUnhealthy`, `SubscriptionsRepaired` | page-check | `Function` |
//!
//! Dimensions never carry a Page or a person id: each distinct value is a metric
//! CloudWatch bills by the month, and the ids are personal data.

use std::io::Write;
use std::sync::{Mutex, OnceLock, PoisonError};

use metrics_cloudwatch_embedded::Collector;

/// The environment variable naming the metrics' namespace.
pub const NAMESPACE_VAR: &str = "METRICS_NAMESPACE";
/// The namespace when [`NAMESPACE_VAR`] is not set.
pub const DEFAULT_NAMESPACE: &str = "MessengerBackend";

/// The function a metric comes from: the value of its `Function` dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Function {
    Webhook,
    Processor,
    OtnSweeper,
    PageCheck,
}

impl Function {
    /// The `Function` dimension's value (the function's package name).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Webhook => "webhook",
            Self::Processor => "processor",
            Self::OtnSweeper => "otn-sweeper",
            Self::PageCheck => "page-check",
        }
    }
}

/// Every metric the backend emits. Names are part of the public contract
/// (alarms and dashboards name them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    /// Events the webhook queued (one per event of a signed delivery).
    EventsAccepted,
    /// Signed bodies kept in the quarantine bucket instead of queued.
    EventsQuarantined,
    /// Deliveries refused for a missing or wrong signature (401/403).
    SignatureRejected,
    /// Deliveries answered 5xx because their events could not all be queued.
    EnqueueFailed,
    /// Events the processor finished (acted on, recorded, refused or failed for good).
    EventsProcessed,
    /// Fields of an event the typed model could not read (the event still ran).
    EventsUnreadable,
    /// Deliveries of an event already processed: nothing done.
    DuplicatesSkipped,
    /// Send API calls that Meta accepted.
    MessagesSent,
    /// Sends the policy refused before any call; dimension `Reason`.
    SendsRefused,
    /// Graph API errors; dimension `ErrorClass`.
    GraphErrors,
    /// Events kept aside because their Page cannot be served.
    EventsParked,
    /// Queue messages refused for who sent them (a type only the stack's roles may
    /// send, from another principal); dimension `Reason`.
    MessagesRefused,
    /// Queue messages that can never succeed (unreadable), put on the dead-letter
    /// queue on their third delivery instead of handed back until the twentieth.
    MessagesDeadLettered,
    /// Graph answers saying a Page's token is no longer valid.
    PageCredentialsInvalid,
    /// One-time notification tokens the sweeper marked expired.
    TokensExpired,
    /// Pages the scheduled check found unhealthy.
    PagesUnhealthy,
    /// Webhook subscriptions the scheduled check repaired.
    SubscriptionsRepaired,
}

impl Metric {
    /// Every metric, in the order of the table above.
    pub const ALL: [Self; 17] = [
        Self::EventsAccepted,
        Self::EventsQuarantined,
        Self::SignatureRejected,
        Self::EnqueueFailed,
        Self::EventsProcessed,
        Self::EventsUnreadable,
        Self::DuplicatesSkipped,
        Self::MessagesSent,
        Self::SendsRefused,
        Self::GraphErrors,
        Self::EventsParked,
        Self::MessagesRefused,
        Self::MessagesDeadLettered,
        Self::PageCredentialsInvalid,
        Self::TokensExpired,
        Self::PagesUnhealthy,
        Self::SubscriptionsRepaired,
    ];

    /// The metric's name in CloudWatch.
    pub const fn name(self) -> &'static str {
        match self {
            Self::EventsAccepted => "EventsAccepted",
            Self::EventsQuarantined => "EventsQuarantined",
            Self::SignatureRejected => "SignatureRejected",
            Self::EnqueueFailed => "EnqueueFailed",
            Self::EventsProcessed => "EventsProcessed",
            Self::EventsUnreadable => "EventsUnreadable",
            Self::DuplicatesSkipped => "DuplicatesSkipped",
            Self::MessagesSent => "MessagesSent",
            Self::SendsRefused => "SendsRefused",
            Self::GraphErrors => "GraphErrors",
            Self::EventsParked => "EventsParked",
            Self::MessagesRefused => "MessagesRefused",
            Self::MessagesDeadLettered => "MessagesDeadLettered",
            Self::PageCredentialsInvalid => "PageCredentialsInvalid",
            Self::TokensExpired => "TokensExpired",
            Self::PagesUnhealthy => "PagesUnhealthy",
            Self::SubscriptionsRepaired => "SubscriptionsRepaired",
        }
    }

    /// The function that emits it.
    pub const fn function(self) -> Function {
        match self {
            Self::EventsAccepted
            | Self::EventsQuarantined
            | Self::SignatureRejected
            | Self::EnqueueFailed => Function::Webhook,
            Self::EventsProcessed
            | Self::EventsUnreadable
            | Self::DuplicatesSkipped
            | Self::MessagesSent
            | Self::SendsRefused
            | Self::GraphErrors
            | Self::EventsParked
            | Self::MessagesRefused
            | Self::MessagesDeadLettered
            | Self::PageCredentialsInvalid => Function::Processor,
            Self::TokensExpired => Function::OtnSweeper,
            Self::PagesUnhealthy | Self::SubscriptionsRepaired => Function::PageCheck,
        }
    }

    /// The dimension beside `Function` that the metric is counted by, if any.
    pub const fn dimension(self) -> Option<&'static str> {
        match self {
            Self::SendsRefused | Self::MessagesRefused => Some("Reason"),
            Self::GraphErrors => Some("ErrorClass"),
            _ => None,
        }
    }
}

/// Where [`flush`] writes: stdout, or the buffer of a [`capture`].
static CAPTURED: Mutex<Option<Vec<u8>>> = Mutex::new(None);

/// The process's collector, installed as the `metrics` recorder on first use.
/// `None` if another recorder was installed first (then nothing is counted here).
fn collector() -> Option<&'static Collector> {
    static COLLECTOR: OnceLock<Option<&'static Collector>> = OnceLock::new();
    *COLLECTOR.get_or_init(|| {
        let namespace = std::env::var(NAMESPACE_VAR)
            .ok()
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned());
        match metrics_cloudwatch_embedded::Builder::new()
            .cloudwatch_namespace(namespace)
            .init()
        {
            Ok(collector) => Some(collector),
            Err(error) => {
                tracing::warn!(%error, "metrics are off: another recorder is installed");
                None
            }
        }
    })
}

/// Counts `n` occurrences of `metric` (one without a second dimension).
pub fn count(metric: Metric, n: u64) {
    debug_assert!(
        metric.dimension().is_none(),
        "{} needs a dimension",
        metric.name()
    );
    if n == 0 || collector().is_none() {
        return;
    }
    // The handle is registered once; each count is then one atomic add.
    static COUNTERS: [OnceLock<metrics::Counter>; Metric::ALL.len()] =
        [const { OnceLock::new() }; Metric::ALL.len()];
    COUNTERS[metric as usize]
        .get_or_init(|| metrics::counter!(metric.name(), "Function" => metric.function().as_str()))
        .increment(n);
}

/// Counts `n` occurrences of `metric` under `value` of its second dimension
/// (`Reason` of [`Metric::SendsRefused`], `ErrorClass` of [`Metric::GraphErrors`]):
/// a stable code, never an id.
pub fn count_by(metric: Metric, value: &'static str, n: u64) {
    let Some(dimension) = metric.dimension() else {
        count(metric, n);
        return;
    };
    if n == 0 || collector().is_none() {
        return;
    }
    metrics::counter!(
        metric.name(),
        "Function" => metric.function().as_str(),
        dimension => value
    )
    .increment(n);
}

/// Writes the counts since the last flush as EMF documents (none when nothing
/// was counted) and starts counting again. Call it once at the end of each
/// invocation. A write that fails is logged: metrics never fail a request.
pub fn flush() {
    let Some(collector) = collector() else {
        return;
    };
    let mut captured = CAPTURED.lock().unwrap_or_else(PoisonError::into_inner);
    let result = match captured.as_mut() {
        Some(buffer) => collector.flush(&mut *buffer),
        None => {
            // Written whole, then in one go: one line per document even with
            // other output around.
            let mut out = Vec::new();
            collector.flush(&mut out).and_then(|()| {
                if out.is_empty() {
                    return Ok(());
                }
                let mut stdout = std::io::stdout().lock();
                stdout.write_all(&out).and_then(|()| stdout.flush())
            })
        }
    };
    if let Err(error) = result {
        tracing::warn!(%error, "metrics could not be written");
    }
}

/// [`flush`] into `writer` instead (the benchmarks measure the documents'
/// cost with [`std::io::sink`]).
pub fn flush_to(writer: impl Write) -> std::io::Result<()> {
    match collector() {
        Some(collector) => collector.flush(writer),
        None => Ok(()),
    }
}

/// From now on, [`flush`] writes into memory instead of stdout, for tests that
/// run the real handlers in-process and read what they would have printed.
/// Counts made before are dropped.
pub fn capture() -> Capture {
    if let Some(collector) = collector() {
        let _ = collector.flush(std::io::sink());
    }
    *CAPTURED.lock().unwrap_or_else(PoisonError::into_inner) = Some(Vec::new());
    Capture(())
}

/// What the handlers flushed since [`capture`].
#[derive(Debug)]
pub struct Capture(());

impl Capture {
    /// The EMF documents flushed so far, one JSON value per line written.
    pub fn documents(&self) -> Vec<serde_json::Value> {
        let captured = CAPTURED.lock().unwrap_or_else(PoisonError::into_inner);
        let bytes = captured.as_deref().unwrap_or_default();
        String::from_utf8_lossy(bytes)
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| serde_json::from_str(line).unwrap_or(serde_json::Value::Null))
            .collect()
    }

    /// Takes the documents flushed so far out of the buffer (later calls see
    /// only what was flushed after), for a reader that keeps running totals.
    pub fn drain(&self) -> Vec<serde_json::Value> {
        let mut captured = CAPTURED.lock().unwrap_or_else(PoisonError::into_inner);
        let bytes = captured.as_mut().map(std::mem::take).unwrap_or_default();
        drop(captured);
        String::from_utf8_lossy(&bytes)
            .lines()
            .filter(|line| !line.trim().is_empty())
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// The sum of `metric`'s values across the documents flushed so far, for
    /// the documents whose extra dimension (if `value` is given) has that value.
    pub fn total(&self, metric: Metric, value: Option<&str>) -> u64 {
        self.documents()
            .iter()
            .filter(|d| d["Function"] == metric.function().as_str())
            .filter(|d| match (metric.dimension(), value) {
                (Some(dimension), Some(value)) => d[dimension] == value,
                _ => true,
            })
            .filter_map(|d| d[metric.name()].as_u64())
            .sum()
    }
}

/// Running totals of EMF documents, by metric and by its second dimension's
/// value: what the local stack prints once a minute.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Totals(std::collections::BTreeMap<(&'static str, Option<String>), u64>);

impl Totals {
    /// Adds the values of one EMF document (metrics this crate does not name are
    /// left out).
    pub fn add(&mut self, document: &serde_json::Value) {
        for metric in Metric::ALL {
            let Some(value) = document[metric.name()].as_u64() else {
                continue;
            };
            let by = metric
                .dimension()
                .and_then(|d| document[d].as_str())
                .map(str::to_owned);
            *self.0.entry((metric.name(), by)).or_default() += value;
        }
    }

    /// The total of `metric` (all values of its second dimension).
    pub fn get(&self, metric: Metric) -> u64 {
        self.0
            .iter()
            .filter(|((name, _), _)| *name == metric.name())
            .map(|(_, n)| n)
            .sum()
    }
}

/// One line: `EventsAccepted 3, MessagesSent 2, SendsRefused 1 (outside_window 1)`,
/// in the order of [`Metric::ALL`]; `no metrics yet` before any.
impl std::fmt::Display for Totals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        for metric in Metric::ALL {
            let total = self.get(metric);
            if total == 0 {
                continue;
            }
            let by: Vec<String> = self
                .0
                .iter()
                .filter_map(|((name, value), n)| {
                    (*name == metric.name())
                        .then(|| value.as_ref().map(|v| format!("{v} {n}")))
                        .flatten()
                })
                .collect();
            if by.is_empty() {
                parts.push(format!("{} {total}", metric.name()));
            } else {
                parts.push(format!("{} {total} ({})", metric.name(), by.join(", ")));
            }
        }
        if parts.is_empty() {
            f.write_str("no metrics yet")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

#[cfg(test)]
mod tests;
