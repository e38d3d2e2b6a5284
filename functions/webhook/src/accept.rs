//! What the webhook does with a POST, independent of HTTP and of AWS: check the
//! size, verify the signature over the raw bytes, split the delivery into one queue
//! message per event, and enqueue them all (retrying only what the queue refused),
//! or keep the body in quarantine when it is not a Page delivery.

use std::future::Future;
use std::time::Duration;

use hub_signature::{SignatureError, SignatureHeaders, Verifier};
use messenger_types::queue::{QueueMessageType, QueuedEventRef};
use messenger_types::routing::{RawEnvelope, Source, route};

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
    fn size(&self) -> usize {
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

#[derive(Debug, thiserror::Error)]
#[error("could not keep the body in quarantine: {message}")]
pub struct QuarantineError {
    pub message: String,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

/// Where bodies that cannot be routed are kept for an operator (S3 in production).
pub trait Quarantine {
    /// Keeps `body` with the `reason` it could not be routed; returns where it is.
    /// Keeping the same body twice keeps one copy.
    fn keep(
        &self,
        body: &[u8],
        reason: &str,
    ) -> impl Future<Output = Result<String, QuarantineError>> + Send;
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

/// The outcome of a POST that was authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// Events now on the queue.
    pub enqueued: usize,
    /// Where the body was kept, when some or all of it could not be routed.
    pub quarantined: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    #[error("body of {len} bytes is over the {limit}-byte limit")]
    TooLarge { len: usize, limit: usize },
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error("{unqueued} of {total} events could not be enqueued: {cause}")]
    Enqueue {
        unqueued: usize,
        total: usize,
        cause: String,
    },
    #[error(transparent)]
    Quarantine(#[from] QuarantineError),
}

/// A delivery split into queue messages.
#[derive(Debug, Default)]
pub struct Split {
    pub messages: Vec<OutgoingMessage>,
    /// Parts of a Page delivery that carried no events we can queue (e.g. an entry
    /// with only `changes`): the body is quarantined for them too.
    pub leftovers: Vec<String>,
}

/// Why a body as a whole cannot be routed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unroutable {
    #[error("body is not a JSON webhook envelope: {0}")]
    NotAnEnvelope(String),
    #[error("object is {0:?}, not \"page\"")]
    NotPage(String),
}

/// Splits a verified body into one queue message per item of every entry's
/// `messaging` and `standby` arrays. Each event is copied byte for byte.
pub fn split(body: &[u8]) -> Result<Split, Unroutable> {
    let envelope: RawEnvelope<'_> = serde_json::from_slice(body)
        // serde_json's message gives the position and what was expected, never content.
        .map_err(|e| Unroutable::NotAnEnvelope(e.to_string()))?;
    if envelope.object != "page" {
        let object: String = envelope.object.chars().take(40).collect();
        return Err(Unroutable::NotPage(object));
    }
    let events = envelope
        .entry
        .iter()
        .map(|e| e.messaging.len() + e.standby.len())
        .sum();
    let mut split = Split {
        messages: Vec::with_capacity(events),
        leftovers: Vec::new(),
    };
    for (i, entry) in envelope.entry.iter().enumerate() {
        if entry.messaging.is_empty() && entry.standby.is_empty() {
            split
                .leftovers
                .push(format!("entry[{i}] has no messaging or standby events"));
            continue;
        }
        let page = entry.id.as_deref();
        let tagged = entry
            .messaging
            .iter()
            .map(|e| (Source::Messaging, *e))
            .chain(entry.standby.iter().map(|e| (Source::Standby, *e)));
        for (source, event) in tagged {
            let routing = route(page, event);
            let body = serde_json::to_string(&QueuedEventRef {
                kind: QueueMessageType::Event,
                page_id: routing.page_id.as_deref(),
                source,
                key: routing.key.as_str(),
                event,
            })
            .map_err(|e| Unroutable::NotAnEnvelope(e.to_string()))?;
            split.messages.push(OutgoingMessage {
                group_id: routing.group_id(),
                dedup_id: routing.key.digest(),
                body,
                kind: routing.kind,
            });
        }
    }
    Ok(split)
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

/// Everything the POST path needs, built once per container.
#[derive(Debug)]
pub struct Receiver<Q, S> {
    pub verifier: Verifier,
    pub max_body_bytes: usize,
    pub queue: Q,
    pub quarantine: S,
    pub retry: RetryPolicy,
}

impl<Q: EventQueue, S: Quarantine> Receiver<Q, S> {
    /// Authenticates and queues one webhook POST. `Ok` means every event is durably
    /// on the queue (or the body is in quarantine): only then may Meta be told 200.
    pub async fn accept(
        &self,
        headers: SignatureHeaders<'_>,
        body: &[u8],
    ) -> Result<Accepted, AcceptError> {
        // The size check comes before any HMAC or JSON work.
        if body.len() > self.max_body_bytes {
            return Err(AcceptError::TooLarge {
                len: body.len(),
                limit: self.max_body_bytes,
            });
        }
        self.verifier.verify(headers, body)?;

        let split = match split(body) {
            Ok(split) => split,
            Err(unroutable) => {
                let reason = unroutable.to_string();
                let at = self.quarantine.keep(body, &reason).await?;
                tracing::warn!(%reason, quarantined_at = %at, "webhook body quarantined");
                return Ok(Accepted {
                    enqueued: 0,
                    quarantined: Some(at),
                });
            }
        };

        let mut sender_faults = Vec::new();
        self.enqueue(&split.messages, &mut sender_faults).await?;

        let mut leftovers = split.leftovers;
        leftovers.extend(sender_faults);
        let quarantined = if leftovers.is_empty() {
            None
        } else {
            let reason = leftovers.join("; ");
            let at = self.quarantine.keep(body, &reason).await?;
            tracing::warn!(%reason, quarantined_at = %at, "part of a webhook body quarantined");
            Some(at)
        };
        Ok(Accepted {
            enqueued: split.messages.len(),
            quarantined,
        })
    }

    /// Sends every message, retrying only the entries the queue refused for a
    /// reason that may pass. Entries refused as malformed (sender fault) cannot be
    /// queued by retrying: they are reported in `sender_faults` so the body is kept
    /// in quarantine instead of being retried by Meta for an hour.
    async fn enqueue(
        &self,
        messages: &[OutgoingMessage],
        sender_faults: &mut Vec<String>,
    ) -> Result<(), AcceptError> {
        let total = messages.len();
        let mut pending: Vec<OutgoingMessage> = messages.to_vec();
        let mut backoff = self.retry.first_backoff;
        let mut last_cause = String::new();
        for round in 0..self.retry.rounds.max(1) {
            if round > 0 {
                tokio::time::sleep(backoff).await;
                backoff = backoff.saturating_mul(2);
            }
            let mut retry = Vec::new();
            let batches = chunk(&pending);
            for (k, batch) in batches.iter().enumerate() {
                let failed = self.queue.send_batch(batch).await.map_err(|e| {
                    tracing::error!(error = %e, "events queue refused a batch");
                    AcceptError::Enqueue {
                        unqueued: retry.len() + batches[k..].iter().map(|b| b.len()).sum::<usize>(),
                        total,
                        cause: e.to_string(),
                    }
                })?;
                for f in failed {
                    let Some(message) = batch.get(f.index) else {
                        continue;
                    };
                    if f.sender_fault {
                        tracing::error!(code = %f.code, event_kind = message.kind, "queue refused an event as malformed");
                        sender_faults.push(format!(
                            "the events queue refused a {} event: {}",
                            message.kind, f.code
                        ));
                    } else {
                        tracing::warn!(code = %f.code, round, "queue refused an entry; retrying it");
                        last_cause = f.code;
                        retry.push(message.clone());
                    }
                }
            }
            if retry.is_empty() {
                return Ok(());
            }
            pending = retry;
        }
        Err(AcceptError::Enqueue {
            unqueued: pending.len(),
            total,
            cause: last_cause,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Fault, MemoryQuarantine, MemoryQueue};

    const SECRET: &[u8] = b"unit-test-secret";

    fn receiver(
        queue: MemoryQueue,
        quarantine: MemoryQuarantine,
    ) -> Receiver<MemoryQueue, MemoryQuarantine> {
        Receiver {
            verifier: Verifier::new(SECRET),
            max_body_bytes: 64 * 1024,
            queue,
            quarantine,
            retry: RetryPolicy {
                rounds: 3,
                first_backoff: Duration::from_millis(1),
            },
        }
    }

    /// A signed delivery of `n` text messages from `n` different people.
    fn delivery(n: usize) -> (String, String) {
        let events: Vec<String> = (0..n)
            .map(|i| {
                format!(
                    r#"{{"sender":{{"id":"{}"}},"recipient":{{"id":"1"}},"timestamp":{i},"message":{{"mid":"m_{i}","text":"t"}}}}"#,
                    1000 + i
                )
            })
            .collect();
        let body = format!(
            r#"{{"object":"page","entry":[{{"id":"1","time":9,"messaging":[{}]}}]}}"#,
            events.join(",")
        );
        let sig = Verifier::new(SECRET).sign_sha256(body.as_bytes());
        (body, sig)
    }

    fn headers(sig: &str) -> SignatureHeaders<'_> {
        SignatureHeaders {
            sha256: Some(sig.as_bytes()),
            sha1: None,
        }
    }

    fn mids(messages: &[OutgoingMessage]) -> Vec<String> {
        messages
            .iter()
            .map(|m| {
                let v: serde_json::Value = serde_json::from_str(&m.body).unwrap();
                v["event"]["message"]["mid"].as_str().unwrap().to_owned()
            })
            .collect()
    }

    #[tokio::test]
    async fn twenty_five_events_go_in_three_batches() {
        let r = receiver(MemoryQueue::new(), MemoryQuarantine::new());
        let (body, sig) = delivery(25);
        let accepted = r.accept(headers(&sig), body.as_bytes()).await.unwrap();
        assert_eq!(accepted.enqueued, 25);
        assert_eq!(r.queue.calls(), vec![10, 10, 5]);
        let expected: Vec<String> = (0..25).map(|i| format!("m_{i}")).collect();
        assert_eq!(mids(&r.queue.accepted()), expected);
    }

    #[tokio::test]
    async fn only_the_refused_entries_are_sent_again() {
        let queue = MemoryQueue::with_faults([Fault::Refuse(vec![1, 3])]);
        let r = receiver(queue, MemoryQuarantine::new());
        let (body, sig) = delivery(5);
        let accepted = r.accept(headers(&sig), body.as_bytes()).await.unwrap();
        assert_eq!(accepted.enqueued, 5);
        assert_eq!(r.queue.calls(), vec![5, 2]);
        assert_eq!(
            mids(&r.queue.accepted()),
            ["m_0", "m_2", "m_4", "m_1", "m_3"]
        );
    }

    #[tokio::test]
    async fn entries_still_refused_after_the_last_round_fail_the_request() {
        let queue = MemoryQueue::with_faults([
            Fault::Refuse(vec![0, 2]),
            Fault::Refuse(vec![1]),
            Fault::Refuse(vec![0]),
        ]);
        let r = receiver(queue, MemoryQuarantine::new());
        let (body, sig) = delivery(3);
        let err = r.accept(headers(&sig), body.as_bytes()).await.unwrap_err();
        assert!(
            matches!(
                err,
                AcceptError::Enqueue {
                    unqueued: 1,
                    total: 3,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(r.queue.calls(), vec![3, 2, 1]);
    }

    #[tokio::test]
    async fn a_failed_call_is_not_retried_by_hand_and_fails_the_request() {
        let r = receiver(
            MemoryQueue::with_faults([Fault::Down]),
            MemoryQuarantine::new(),
        );
        let (body, sig) = delivery(12);
        let err = r.accept(headers(&sig), body.as_bytes()).await.unwrap_err();
        assert!(
            matches!(
                err,
                AcceptError::Enqueue {
                    unqueued: 12,
                    total: 12,
                    ..
                }
            ),
            "{err:?}"
        );
        // The second batch is never sent once the first call failed.
        assert_eq!(r.queue.calls(), vec![10]);
    }

    #[tokio::test]
    async fn an_entry_refused_as_malformed_is_quarantined_not_retried() {
        let queue = MemoryQueue::with_faults([Fault::Malformed(vec![1])]);
        let r = receiver(queue, MemoryQuarantine::new());
        let (body, sig) = delivery(3);
        let accepted = r.accept(headers(&sig), body.as_bytes()).await.unwrap();
        assert_eq!(r.queue.calls(), vec![3]);
        assert!(accepted.quarantined.is_some());
        let kept = r.quarantine.kept();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].0, body.as_bytes());
        assert!(kept[0].1.contains("InvalidMessageContents"));
    }

    #[tokio::test]
    async fn a_quarantine_that_fails_fails_the_request() {
        let r = receiver(MemoryQueue::new(), MemoryQuarantine::broken());
        let body = r#"{"object":"user","entry":[]}"#;
        let sig = Verifier::new(SECRET).sign_sha256(body.as_bytes());
        let err = r.accept(headers(&sig), body.as_bytes()).await.unwrap_err();
        assert!(matches!(err, AcceptError::Quarantine(_)));
    }

    #[tokio::test]
    async fn size_is_checked_before_the_signature() {
        let r = receiver(MemoryQueue::new(), MemoryQuarantine::new());
        let body = vec![b' '; 64 * 1024 + 1];
        let err = r
            .accept(SignatureHeaders::default(), &body)
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            AcceptError::TooLarge {
                len: 65537,
                limit: 65536
            }
        ));
    }

    #[test]
    fn batches_stay_within_the_byte_budget() {
        let big = |i: usize| OutgoingMessage {
            group_id: format!("1:{i}"),
            dedup_id: "d".repeat(64),
            body: "x".repeat(100 * 1024),
            kind: "message",
        };
        let messages: Vec<_> = (0..5).map(big).collect();
        let sizes: Vec<usize> = chunk(&messages).iter().map(|c| c.len()).collect();
        assert_eq!(sizes, vec![2, 2, 1]);
        // A single message over the budget still goes, alone.
        let huge = vec![OutgoingMessage {
            body: "x".repeat(300 * 1024),
            ..big(0)
        }];
        assert_eq!(chunk(&huge).len(), 1);
        assert!(chunk(&[]).is_empty());
    }

    #[test]
    fn split_rejects_what_is_not_a_page_delivery() {
        assert!(matches!(
            split(b"not json"),
            Err(Unroutable::NotAnEnvelope(_))
        ));
        assert!(matches!(split(b"{}"), Err(Unroutable::NotAnEnvelope(_))));
        assert!(matches!(
            split(br#"{"object":"page","entry":{}}"#),
            Err(Unroutable::NotAnEnvelope(_))
        ));
        assert_eq!(
            split(br#"{"object":"instagram","entry":[]}"#).unwrap_err(),
            Unroutable::NotPage("instagram".to_owned())
        );
        let s = split(br#"{"object":"page","entry":[]}"#).unwrap();
        assert!(s.messages.is_empty() && s.leftovers.is_empty());
    }
}
