//! The event ledger: each event is claimed before anything is done, each action
//! is recorded as started and as done, and the event as completed with its
//! outcome. A redelivered event (Meta's retry, SQS's at-least-once delivery, a
//! Lambda retry after a timeout) finds its record and does nothing twice; an
//! action started but never recorded as done may have reached the person and is
//! not repeated either.

use std::fmt;

/// Proof that this worker holds an event: progress and completion are written only
/// with it, so a worker whose lease ran out cannot overwrite another's work.
#[derive(Clone, PartialEq, Eq)]
pub struct ClaimToken(String);

impl ClaimToken {
    /// Wraps the store's claim value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ClaimToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClaimToken({})", self.0)
    }
}

/// The result of trying to take an event for processing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Ours to process. An earlier attempt that failed part-way carried out the
    /// first `done_actions` actions, and had started `started_actions`: an action
    /// started but not recorded as done may have reached the person (the attempt
    /// died during or right after the call), so it is not repeated either.
    Acquired {
        token: ClaimToken,
        done_actions: u32,
        started_actions: u32,
    },
    /// Processed before: acknowledge without doing anything.
    Duplicate { outcome: Option<String> },
    /// Another worker holds it right now: try again later.
    Busy,
}

/// How long a claim holds before a redelivery may take the event over. Shorter than
/// the queue's visibility timeout, so SQS's redelivery after a crash finds it free.
pub const CLAIM_LEASE_MS: i64 = 90_000;
/// How long processed-event records are kept: Meta redelivers for about an hour.
pub const EVENT_RECORD_DAYS: i64 = 7;
