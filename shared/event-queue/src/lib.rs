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

/// Groups messages into SendMessageBatch calls, in order, within SQS's limits.
pub fn chunk(messages: &[OutgoingMessage]) -> Vec<&[OutgoingMessage]> {
    let mut chunks = Vec::with_capacity(messages.len().div_ceil(MAX_BATCH_ENTRIES));
    let mut start = 0;
    let mut bytes = 0;
    for (i, m) in messages.iter().enumerate() {
        let full =
            i - start == MAX_BATCH_ENTRIES || (i > start && bytes + m.size() > MAX_BATCH_BYTES);
        if full {
            chunks.push(&messages[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += m.size();
    }
    if start < messages.len() {
        chunks.push(&messages[start..]);
    }
    chunks
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
/// A round sends batches until one comes back with refused entries; the next
/// round starts with those entries followed by everything not yet sent, so a
/// thread's messages reach the queue in their order across batches. (Inside one
/// batch SQS may accept a later entry of a thread and refuse an earlier one;
/// consumers order by event timestamps for that case.)
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
        let batch_messages: Vec<OutgoingMessage> =
            pending.iter().map(|&i| messages[i].clone()).collect();
        let mut sent = 0;
        let mut again = Vec::new();
        for batch in chunk(&batch_messages) {
            let failed = queue.send_batch(batch).await.map_err(|e| {
                tracing::error!(error = %e, "the queue refused a batch");
                EnqueueError {
                    unqueued: pending.len() - sent,
                    total,
                    cause: e.to_string(),
                }
            })?;
            let start = sent;
            sent += batch.len();
            let mut failed = failed;
            failed.sort_by_key(|f| f.index);
            for f in failed {
                let Some(&original) = pending.get(start + f.index) else {
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
                    again.push(original);
                }
            }
            if !again.is_empty() {
                break;
            }
        }
        again.extend_from_slice(&pending[sent..]);
        if again.is_empty() {
            return Ok(refused);
        }
        pending = again;
    }
    Err(EnqueueError {
        unqueued: pending.len(),
        total,
        cause: last_cause,
    })
}
