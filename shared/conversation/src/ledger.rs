//! The event ledger: each event is claimed before anything is done, each action
//! is recorded as started and as done, and the event as completed with its
//! outcome. A redelivered event (Meta's retry, SQS's at-least-once delivery, a
//! Lambda retry after a timeout) finds its record and does nothing twice; an
//! action started but never recorded as done may have reached the person and is
//! not repeated either.
//!
//! An event that names a person keeps its ledger entry on the person's thread
//! ([`ThreadLedger`](crate::ports::ThreadLedger)): the events of one thread are
//! serialised by their FIFO group, so one read gives the thread's state and
//! where the event stands, and one conditional write takes the event and applies
//! what it changes. Other events keep an item of their own
//! ([`EventLedger`](crate::ports::EventLedger)).

use std::fmt;

use messenger_types::{EventKey, Timestamp};

use crate::thread::{ThreadKey, ThreadState};

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

/// How fresh the read that opens a turn must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    /// Sees every write acknowledged before it (DynamoDB: one read unit).
    Strong,
    /// May miss a write of the last moments (DynamoDB: half a read unit). Safe
    /// for opening a turn because the write that takes the event is made only at
    /// the version read: a stale read costs a second read, never a wrong write.
    /// Not for events with writes of their own before that (tokens, the Page).
    Eventual,
}

/// Where an event stands on its thread, read together with the thread.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // one per event, never stored in bulk
pub enum Opened {
    /// Ours to take: the thread as it stands, what an earlier attempt did, and the
    /// thread's version (the write that takes the event holds only if the thread
    /// is still at it).
    Open {
        thread: ThreadState,
        progress: Progress,
        version: Version,
    },
    /// Processed before: acknowledge without doing anything. The outcome is kept
    /// for the thread's newest event only.
    Duplicate { outcome: Option<String> },
    /// Another worker holds it right now: try again later.
    Busy,
}

/// What an earlier attempt did: it carried out the first `done_actions` actions
/// and had started `started_actions` (an action started and not recorded as done
/// may have reached the person, so it is not repeated).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    pub done_actions: u32,
    pub started_actions: u32,
}

/// A thread as read: its version (every write to the thread changes it), and
/// what its ledger held, for the write that takes the event to fold: only the
/// newest processed event keeps its outcome, and when the thread's item grows
/// toward the size where a write costs twice, the entries of processed events
/// move to an archive of the thread (looked up only for events not newer than the
/// newest archived one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Version {
    pub number: u64,
    /// The entries of processed events the thread held.
    pub done: Vec<DoneEntry>,
    /// The time of the newest event archived so far.
    pub archived_until: Option<Timestamp>,
    /// Whether the write that takes the event archives the `done` entries.
    pub archive: bool,
    /// The person was forgotten at this time: an event not newer is a copy of one
    /// from before (a redelivery, a redrive) and is not processed again. Kept on a
    /// thread that is created again after the forget.
    pub forgotten_until: Option<Timestamp>,
}

/// A processed event's entry on its thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoneEntry {
    /// The entry's name ([`TurnKey::entry`]).
    pub name: String,
    /// The event's time.
    pub at: Timestamp,
    /// Whether it still keeps its outcome.
    pub has_outcome: bool,
}

/// An event on its thread: which thread, which event, and the event's own time
/// (the ledger archives old entries by it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnKey {
    pub thread: ThreadKey,
    pub event: EventKey,
    pub at: Timestamp,
}

impl TurnKey {
    /// The event's name in its thread's ledger: 16 hex characters of the key's
    /// digest (64 bits; two events of one thread sharing it is a 1 in 10^16 chance
    /// for a thread of a hundred thousand events).
    pub fn entry(&self) -> String {
        entry_name(&self.event)
    }
}

/// An event's name in its thread's ledger (see [`TurnKey::entry`]).
pub fn entry_name(event: &EventKey) -> String {
    let mut digest = event.digest();
    digest.truncate(16);
    digest
}

/// One write of an event's ledger entry: how it stands after the write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step<'a> {
    /// Work goes on: `started` actions begun, the first `done` carried out.
    Working { done: u32, started: u32 },
    /// Processed, with what came of it.
    Done { outcome: &'a str },
    /// Given up after a failure that may pass: the lease ends now so that the
    /// redelivery can take it at once; `reason` is kept as the entry's last error.
    Released {
        done: u32,
        started: u32,
        reason: &'a str,
    },
}

/// How long a claim holds before a redelivery may take the event over. Shorter than
/// the queue's visibility timeout, so SQS's redelivery after a crash finds it free.
pub const CLAIM_LEASE_MS: i64 = 90_000;
/// The events queue's and its dead-letter queue's message retention
/// (`MessageRetentionPeriod` in template.yaml, the most SQS allows).
pub const QUEUE_RETENTION_DAYS: i64 = 14;
/// How long processed events are remembered: longer than a copy of a processed
/// event can still come back. A FIFO queue's message moved to the dead-letter
/// queue starts its retention there afresh (up to 14 days), a redrive puts it back
/// on the events queue, where it may wait up to 14 days more; at most two hours
/// of redeliveries before the move and two days of slack on top. A record that
/// expired sooner would let a redriven command (a `send` whose person wrote since)
/// go out twice.
pub const EVENT_RECORD_DAYS: i64 = 2 * QUEUE_RETENTION_DAYS + 2;
