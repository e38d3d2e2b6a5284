//! The events queue: the port the webhook and the processor write to, the
//! ordered send loop that retries only what SQS refused, and the SQS adapter.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod sqs;
pub mod testing;

use std::future::Future;
use std::time::Duration;

pub use sqs::SqsQueue;

/// One message for the events queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    /// `<page_id>:<psid or user_ref>`: one thread's events keep their order.
    pub group_id: String,
    /// Derived from the event, so Meta's redeliveries collapse inside SQS's
    /// five-minute deduplication window (the processor deduplicates beyond it).
    pub dedup_id: String,
    pub body: String,
    /// The event's kind, for logs.
    pub kind: &'static str,
}

impl OutgoingMessage {
    /// What SQS counts against its batch size limit.
    pub fn size(&self) -> usize {
        self.body.len() + self.group_id.len() + self.dedup_id.len()
    }
}

/// An entry of a batch that the queue did not accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedEntry {
    /// Index into the batch that was sent.
    pub index: usize,
    pub code: String,
    /// The queue says the entry itself is at fault: sending it again cannot succeed.
    pub sender_fault: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("the events queue refused the batch: {message}")]
pub struct QueueError {
    pub message: String,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

/// The events queue (SQS FIFO in production).
pub trait EventQueue {
    /// Sends up to ten messages; returns the entries that were not accepted. An `Err`
    /// means the call as a whole failed (after the SDK's own retries): nothing in
    /// the batch can be assumed queued.
    fn send_batch(
        &self,
        batch: &[OutgoingMessage],
    ) -> impl Future<Output = Result<Vec<FailedEntry>, QueueError>> + Send;
}

/// SQS's limits for one SendMessageBatch call.
pub const MAX_BATCH_ENTRIES: usize = 10;
/// The batch payload budget. SQS accepts 1 MiB on current accounts and 256 KiB on
/// older ones; chunking at the lower bound works on both.
pub const MAX_BATCH_BYTES: usize = 256 * 1024;

/// How often entries that the queue refused are sent again before giving up.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Rounds of sending, the first included.
    pub rounds: u32,
    /// Pause before the second round; doubled before each later one.
    pub first_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        // Meta wants an answer within seconds: three quick rounds, then 5xx and let
        // Meta redeliver.
        Self {
            rounds: 3,
            first_backoff: Duration::from_millis(50),
        }
    }
}

/// Why messages could not all be queued.
#[derive(Debug, thiserror::Error)]
#[error("{unqueued} of {total} messages could not be enqueued: {cause}")]
pub struct EnqueueError {
    pub unqueued: usize,
    pub total: usize,
    pub cause: String,
}

/// A message the queue refused for its content (`InvalidMessageContents`): sending
/// it again cannot succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// Index into the messages given to [`send_all`].
    pub index: usize,
    pub code: String,
}

/// Sends every message in order, retrying only what the queue refused.
///
/// A round sends every pending message in batches. Once an entry of a thread (a
/// message group) is refused, the thread's later messages are held back for the
/// next round, where they follow the refused entry; other threads' messages go on
/// being sent. So a thread's messages reach the queue in their order across
/// batches, and one refusal costs a retry of one thread, not of the rest of the
/// delivery. (Inside one batch SQS may accept a later entry of a thread and refuse
/// an earlier one; consumers order by event timestamps for that case.)
///
/// Entries refused for their content are returned, not retried. `Err` means some
/// messages may not be on the queue: the caller must not acknowledge them.
pub async fn send_all<Q: EventQueue>(
    queue: &Q,
    messages: &[OutgoingMessage],
    retry: &RetryPolicy,
) -> Result<Vec<Refused>, EnqueueError> {
    let total = messages.len();
    let mut refused = Vec::new();
    let mut pending: Vec<usize> = (0..total).collect();
    let mut backoff = retry.first_backoff;
    let mut last_cause = String::new();
    for round in 0..retry.rounds.max(1) {
        if round > 0 {
            tokio::time::sleep(backoff).await;
            backoff = backoff.saturating_mul(2);
        }
        // Threads with an entry refused in this round: their later messages wait.
        let mut held: std::collections::HashSet<&str> = std::collections::HashSet::new();
        let mut again = Vec::new();
        let mut next = 0;
        while next < pending.len() {
            let mut batch_ix = Vec::with_capacity(MAX_BATCH_ENTRIES);
            let mut bytes = 0;
            while let Some(&i) = pending.get(next) {
                let m = &messages[i];
                if held.contains(m.group_id.as_str()) {
                    again.push(i);
                    next += 1;
                    continue;
                }
                if batch_ix.len() == MAX_BATCH_ENTRIES
                    || (!batch_ix.is_empty() && bytes + m.size() > MAX_BATCH_BYTES)
                {
                    break;
                }
                bytes += m.size();
                batch_ix.push(i);
                next += 1;
            }
            if batch_ix.is_empty() {
                continue;
            }
            let batch: Vec<OutgoingMessage> =
                batch_ix.iter().map(|&i| messages[i].clone()).collect();
            let mut failed = queue.send_batch(&batch).await.map_err(|e| {
                tracing::error!(error = %e, "the queue refused a batch");
                EnqueueError {
                    unqueued: again.len() + batch_ix.len() + (pending.len() - next),
                    total,
                    cause: e.to_string(),
                }
            })?;
            failed.sort_by_key(|f| f.index);
            for f in failed {
                let Some(&original) = batch_ix.get(f.index) else {
                    continue;
                };
                if f.sender_fault && f.code == "InvalidMessageContents" {
                    tracing::error!(code = %f.code, kind = messages[original].kind, "the queue refused a message's content");
                    refused.push(Refused {
                        index: original,
                        code: f.code,
                    });
                } else {
                    tracing::warn!(code = %f.code, round, "the queue refused an entry; retrying it");
                    last_cause.clone_from(&f.code);
                    held.insert(messages[original].group_id.as_str());
                    again.push(original);
                }
            }
        }
        if again.is_empty() {
            return Ok(refused);
        }
        // Back in delivery order: a thread's refused entry before its held-back ones.
        again.sort_unstable();
        pending = again;
    }
    Err(EnqueueError {
        unqueued: pending.len(),
        total,
        cause: last_cause,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;
    use crate::testing::{Fault, MemoryQueue};

    fn message(group: &str, n: usize) -> OutgoingMessage {
        OutgoingMessage {
            group_id: group.to_owned(),
            dedup_id: format!("d{n}"),
            body: format!("m{n}"),
            kind: "message",
        }
    }

    fn quick(rounds: u32) -> RetryPolicy {
        RetryPolicy {
            rounds,
            first_backoff: Duration::from_millis(1),
        }
    }

    fn bodies(messages: &[OutgoingMessage]) -> Vec<&str> {
        messages.iter().map(|m| m.body.as_str()).collect()
    }

    fn run<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn batches_stay_within_the_byte_budget() {
        let big = |i: usize| OutgoingMessage {
            body: "x".repeat(100 * 1024),
            ..message(&format!("1:{i}"), i)
        };
        let queue = MemoryQueue::new();
        let messages: Vec<_> = (0..5).map(big).collect();
        run(send_all(&queue, &messages, &quick(1))).unwrap();
        assert_eq!(queue.calls(), vec![2, 2, 1]);

        // A single message over the budget still goes, alone.
        let queue = MemoryQueue::new();
        let huge = OutgoingMessage {
            body: "x".repeat(300 * 1024),
            ..big(0)
        };
        run(send_all(&queue, &[huge, big(1)], &quick(1))).unwrap();
        assert_eq!(queue.calls(), vec![1, 1]);

        let queue = MemoryQueue::new();
        run(send_all(&queue, &[], &quick(1))).unwrap();
        assert!(queue.calls().is_empty());
    }

    #[test]
    fn a_refused_entry_holds_back_its_thread_only() {
        // Threads a and b; a's first message is refused in the first batch.
        let messages: Vec<_> = (0..14)
            .map(|n| message(if n % 2 == 0 { "a" } else { "b" }, n))
            .collect();
        let queue = MemoryQueue::with_faults([Fault::Refuse(vec![0])]);
        run(send_all(&queue, &messages, &quick(3))).unwrap();
        // Round 1: ten entries (m0 refused), then b's remaining m11 and m13 while
        // a's m10 and m12 wait. Round 2: m0, m10, m12 in order.
        assert_eq!(queue.calls(), vec![10, 2, 3]);
        assert_eq!(
            bodies(&queue.accepted()),
            [
                "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "m9", "m11", "m13", "m0", "m10",
                "m12"
            ]
        );
    }

    #[test]
    fn a_failed_call_reports_everything_not_confirmed() {
        let messages: Vec<_> = (0..25).map(|n| message(&format!("t{n}"), n)).collect();
        let queue = MemoryQueue::with_faults([Fault::Refuse(vec![3]), Fault::Down]);
        let err = run(send_all(&queue, &messages, &quick(3))).unwrap_err();
        // The first batch's refused entry plus the 15 of the failed and unsent batches.
        assert_eq!((err.unqueued, err.total), (16, 25));
        assert_eq!(queue.calls(), vec![10, 10]);
    }

    /// One scripted answer per call; calls beyond the script succeed.
    struct ScriptedQueue {
        script: std::sync::Mutex<std::collections::VecDeque<Vec<usize>>>,
        log: std::sync::Mutex<Vec<(usize, OutgoingMessage)>>,
        refused: std::sync::Mutex<Vec<(usize, String)>>,
        calls: std::sync::atomic::AtomicUsize,
    }

    impl EventQueue for ScriptedQueue {
        async fn send_batch(
            &self,
            batch: &[OutgoingMessage],
        ) -> Result<Vec<FailedEntry>, QueueError> {
            let call = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let refuse = self.script.lock().unwrap().pop_front().unwrap_or_default();
            let mut failed = Vec::new();
            for (i, m) in batch.iter().enumerate() {
                if refuse.contains(&i) {
                    self.refused.lock().unwrap().push((call, m.body.clone()));
                    failed.push(FailedEntry {
                        index: i,
                        code: "InternalError".to_owned(),
                        sender_fault: false,
                    });
                } else {
                    self.log.lock().unwrap().push((call, m.clone()));
                }
            }
            Ok(failed)
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        /// Whatever the queue refuses, with rounds enough every message is queued
        /// exactly once, and a thread's message is never queued after a later one
        /// of the thread unless SQS refused it in the very call that took the
        /// later one (the one reordering SQS itself can cause).
        #[test]
        fn every_message_is_queued_once_and_threads_keep_their_order_across_calls(
            groups in prop::collection::vec(0u8..4, 0..40),
            script in prop::collection::vec(prop::collection::vec(0usize..10, 0..4), 0..6),
        ) {
            let messages: Vec<_> = groups
                .iter()
                .enumerate()
                .map(|(n, g)| message(&format!("g{g}"), n))
                .collect();
            let calls = script.len();
            let queue = ScriptedQueue {
                script: std::sync::Mutex::new(script.into()),
                log: std::sync::Mutex::new(Vec::new()),
                refused: std::sync::Mutex::new(Vec::new()),
                calls: std::sync::atomic::AtomicUsize::new(0),
            };
            // Each scripted call can fail at most one round.
            let rounds = u32::try_from(calls).unwrap() + 1;
            run(send_all(&queue, &messages, &quick(rounds))).unwrap();

            let log = queue.log.into_inner().unwrap();
            let refusals = queue.refused.into_inner().unwrap();
            let mut sent: Vec<&str> = log.iter().map(|(_, m)| m.body.as_str()).collect();
            sent.sort_unstable();
            let mut expected = bodies(&messages);
            expected.sort_unstable();
            prop_assert_eq!(sent, expected);

            let call_of: HashMap<&str, usize> =
                log.iter().map(|(c, m)| (m.body.as_str(), *c)).collect();
            for (i, earlier) in messages.iter().enumerate() {
                for later in &messages[i + 1..] {
                    if later.group_id == earlier.group_id {
                        let (a, b) = (call_of[earlier.body.as_str()], call_of[later.body.as_str()]);
                        let refused_beside = refusals.contains(&(b, earlier.body.clone()));
                        prop_assert!(a <= b || refused_beside, "{} went in call {a}, after {} in call {b}", earlier.body, later.body);
                    }
                }
            }
        }
    }
}
