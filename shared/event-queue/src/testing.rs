//! An in-memory queue with fault injection, for unit and property tests,
//! benchmarks and fault drills. The SQS adapter is tested against the emulator in
//! the workspace's `tests/` crate.

use std::collections::VecDeque;
use std::sync::Mutex;

use crate::{EventQueue, FailedEntry, OutgoingMessage, QueueError};

/// A scripted answer for one `send_batch` call.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Refuse these entries (indexes into the batch) as retryable.
    Refuse(Vec<usize>),
    /// Refuse these entries as malformed (sender fault).
    Malformed(Vec<usize>),
    /// Fail the whole call.
    Down,
}

/// A queue that keeps what it accepts, in order, and answers calls from a script of
/// faults (one per call, then success).
#[derive(Debug, Default)]
pub struct MemoryQueue {
    accepted: Mutex<Vec<OutgoingMessage>>,
    calls: Mutex<Vec<usize>>,
    script: Mutex<VecDeque<Fault>>,
    fault_code: Mutex<Option<String>>,
}

impl MemoryQueue {
    pub fn new() -> Self {
        Self::default()
    }

    /// Answers the next calls with these faults, in order.
    pub fn with_faults(faults: impl IntoIterator<Item = Fault>) -> Self {
        Self {
            script: Mutex::new(faults.into_iter().collect()),
            ..Self::default()
        }
    }

    /// The error code reported for `Fault::Malformed` entries (default
    /// `InvalidMessageContents`).
    pub fn set_fault_code(&self, code: &str) {
        *lock(&self.fault_code) = Some(code.to_owned());
    }

    /// Everything accepted so far.
    pub fn accepted(&self) -> Vec<OutgoingMessage> {
        lock(&self.accepted).clone()
    }

    /// The size of every batch sent so far.
    pub fn calls(&self) -> Vec<usize> {
        lock(&self.calls).clone()
    }

    /// Forgets what was accepted (for benchmarks that reuse one queue).
    pub fn clear(&self) {
        lock(&self.accepted).clear();
        lock(&self.calls).clear();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl EventQueue for MemoryQueue {
    async fn send_batch(&self, batch: &[OutgoingMessage]) -> Result<Vec<FailedEntry>, QueueError> {
        lock(&self.calls).push(batch.len());
        let fault = lock(&self.script).pop_front();
        let (refused, sender_fault) = match fault {
            None => (Vec::new(), false),
            Some(Fault::Refuse(ix)) => (ix, false),
            Some(Fault::Malformed(ix)) => (ix, true),
            Some(Fault::Down) => {
                return Err(QueueError {
                    message: "injected: queue unavailable".to_owned(),
                    source: None,
                });
            }
        };
        let malformed_code = lock(&self.fault_code)
            .clone()
            .unwrap_or_else(|| "InvalidMessageContents".to_owned());
        let mut accepted = lock(&self.accepted);
        let mut failed = Vec::new();
        for (i, m) in batch.iter().enumerate() {
            if refused.contains(&i) {
                failed.push(FailedEntry {
                    index: i,
                    code: if sender_fault {
                        malformed_code.clone()
                    } else {
                        "InternalError".to_owned()
                    },
                    sender_fault,
                });
            } else {
                accepted.push(m.clone());
            }
        }
        Ok(failed)
    }
}
