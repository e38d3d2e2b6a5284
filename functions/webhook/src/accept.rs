//! What the webhook does with a POST, independent of HTTP and of AWS: check the
//! size, verify the signature over the raw bytes, split the delivery into one queue
//! message per event, and enqueue them all (retrying only what the queue refused),
//! or keep the body in quarantine when it is not a Page delivery.

use std::future::Future;
use std::time::Duration;

use hub_signature::{SignatureError, SignatureHeaders};
use messenger_types::queue::{QueueMessageType, QueuedEventRef};
use messenger_types::routing::{RawEnvelope, Source, check_readable, route};

pub use event_queue::{
    EventQueue, FailedEntry, MAX_BATCH_BYTES, MAX_BATCH_ENTRIES, OutgoingMessage, QueueError,
    RetryPolicy,
};

use crate::credentials::Credentials;

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
    /// The queue or the quarantine did not answer in time: answered 503 before
    /// Meta gives up on the request, so Meta redelivers.
    #[error("the delivery was not queued within {}ms", within.as_millis())]
    OutOfTime { within: Duration },
}

/// A delivery split into queue messages.
#[derive(Debug, Default)]
pub struct Split {
    pub messages: Vec<OutgoingMessage>,
    /// Parts of a Page delivery that carried no events we can queue (e.g. an entry
    /// with only `changes`): the body is quarantined for them too. The first
    /// [`MAX_LEFTOVERS_DESCRIBED`] are described, the rest counted in one last line.
    pub leftovers: Vec<String>,
}

/// Why a body as a whole cannot be routed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unroutable {
    #[error("body is not a JSON webhook envelope: {0}")]
    NotAnEnvelope(String),
    #[error("object is {0:?}, not \"page\"")]
    NotPage(String),
    #[error(
        "the delivery has {events} events, over the limit of {limit} per delivery (MAX_EVENTS_PER_DELIVERY)"
    )]
    TooManyEvents { events: usize, limit: usize },
}

/// Describes a JSON error by its class and position. serde_json's own message can
/// quote the offending value (a person's text), which must not reach logs.
pub fn describe_json_error(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Io => "unreadable",
        Category::Syntax => "not valid JSON",
        Category::Data => "JSON of an unexpected shape",
        Category::Eof => "JSON that ends early",
    };
    format!("{what} (line {}, column {})", e.line(), e.column())
}

/// The largest queue message the webhook sends: SQS's limit on older accounts
/// (current ones take 1 MiB). Meta's events are a few KB; a larger one is kept in
/// quarantine rather than refused by SQS on every redelivery.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// How many unroutable parts of one body are described one by one; the rest are
/// counted. A 5 MiB body of empty entries (`[{},{},...]`) would otherwise become
/// 1.7 million strings and an 88 MB reason, over the function's memory, and the body
/// would never reach quarantine.
pub const MAX_LEFTOVERS_DESCRIBED: usize = 10;

/// Splits a verified body into one queue message per item of every entry's
/// `messaging` and `standby` arrays. Each event is copied byte for byte.
pub fn split(body: &[u8]) -> Result<Split, Unroutable> {
    split_at_most(body, usize::MAX)
}

/// [`split`], refusing as a whole a body of more than `max_events` events (items of
/// `messaging` and `standby`; entries without them are not events), before any
/// event is routed or copied.
pub fn split_at_most(body: &[u8], max_events: usize) -> Result<Split, Unroutable> {
    let envelope: RawEnvelope<'_> = serde_json::from_slice(body)
        .map_err(|e| Unroutable::NotAnEnvelope(describe_json_error(&e)))?;
    if envelope.object != "page" {
        let object: String = envelope.object.chars().take(40).collect();
        return Err(Unroutable::NotPage(object));
    }
    let events = envelope
        .entry
        .iter()
        .map(|e| e.messaging.len() + e.standby.len())
        .sum();
    if events > max_events {
        return Err(Unroutable::TooManyEvents {
            events,
            limit: max_events,
        });
    }
    let mut split = Split {
        messages: Vec::with_capacity(events),
        leftovers: Vec::new(),
    };
    let mut undescribed = 0_usize;
    let mut leftover = |leftovers: &mut Vec<String>, describe: &dyn Fn() -> String| {
        if leftovers.len() < MAX_LEFTOVERS_DESCRIBED {
            leftovers.push(describe());
        } else {
            undescribed += 1;
        }
    };
    for (i, entry) in envelope.entry.iter().enumerate() {
        if entry.messaging.is_empty() && entry.standby.is_empty() {
            leftover(&mut split.leftovers, &|| {
                format!("entry[{i}] has no messaging or standby events")
            });
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
            if let Err(e) = check_readable(event) {
                // Valid JSON to the envelope's reader (a number no f64 holds, say),
                // but the processor could never read it. Kept with the body instead.
                leftover(&mut split.leftovers, &|| {
                    format!("a {} event in entry[{i}] cannot be read: {e}", routing.kind)
                });
                continue;
            }
            let body = serde_json::to_string(&QueuedEventRef {
                kind: QueueMessageType::Event,
                page_id: routing.page_id.as_deref(),
                source,
                key: routing.key.as_str(),
                event,
            })
            .map_err(|e| Unroutable::NotAnEnvelope(describe_json_error(&e)))?;
            let message = OutgoingMessage {
                group_id: routing.group_id(),
                dedup_id: routing.key.digest(),
                body,
                kind: routing.kind,
            };
            if message.size() > MAX_MESSAGE_BYTES {
                leftover(&mut split.leftovers, &|| {
                    format!(
                        "a {} event in entry[{i}] is over the {MAX_MESSAGE_BYTES}-byte queue message limit",
                        routing.kind
                    )
                });
                continue;
            }
            split.messages.push(message);
        }
    }
    if undescribed > 0 {
        split
            .leftovers
            .push(format!("and {undescribed} more parts like these"));
    }
    Ok(split)
}

/// Everything the POST path needs, built once per container.
#[derive(Debug)]
pub struct Receiver<Q, S> {
    /// The app secret (and verify token), read again when rotated.
    pub credentials: Credentials,
    pub max_body_bytes: usize,
    /// A signed Page delivery of more events is quarantined whole.
    pub max_events: usize,
    /// The longest a POST waits for the queue and the quarantine before it is
    /// answered 503 (the SDK clients' own timeouts bound each call inside it).
    pub answer_within: Duration,
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
        // Dropping the work at the deadline leaves at most some events queued
        // without a 200: Meta redelivers, and their dedup ids collapse the copies.
        tokio::time::timeout(self.answer_within, self.verify_and_queue(headers, body))
            .await
            .map_err(|_| AcceptError::OutOfTime {
                within: self.answer_within,
            })?
    }

    async fn verify_and_queue(
        &self,
        headers: SignatureHeaders<'_>,
        body: &[u8],
    ) -> Result<Accepted, AcceptError> {
        // A mismatch may mean the app secret was rotated: read again, verify again.
        self.credentials
            .check(
                |keys| keys.verifier().verify(headers, body),
                SignatureError::is_mismatch,
            )
            .await?;

        let split = match split_at_most(body, self.max_events) {
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

        let mut refused = Vec::new();
        self.enqueue(&split.messages, &mut refused).await?;
        let enqueued = split.messages.len() - refused.len();

        let mut leftovers = split.leftovers;
        leftovers.extend(refused);
        let quarantined = if leftovers.is_empty() {
            None
        } else {
            let reason = leftovers.join("; ");
            let at = self.quarantine.keep(body, &reason).await?;
            tracing::warn!(%reason, quarantined_at = %at, "part of a webhook body quarantined");
            Some(at)
        };
        Ok(Accepted {
            enqueued,
            quarantined,
        })
    }

    /// Sends every message in order (see [`event_queue::send_all`]). Messages refused
    /// for their content are reported in `refused`, so the body is kept in
    /// quarantine instead of being retried by Meta for an hour.
    async fn enqueue(
        &self,
        messages: &[OutgoingMessage],
        refused: &mut Vec<String>,
    ) -> Result<(), AcceptError> {
        let rejected = event_queue::send_all(&self.queue, messages, &self.retry)
            .await
            .map_err(|e| AcceptError::Enqueue {
                unqueued: e.unqueued,
                total: e.total,
                cause: e.cause,
            })?;
        refused.extend(rejected.into_iter().map(|r| {
            let kind = messages.get(r.index).map_or("unknown", |m| m.kind);
            format!("the events queue refused a {kind} event: {}", r.code)
        }));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use hub_signature::Verifier;

    use super::*;
    use crate::testing::{Fault, MemoryQuarantine, MemoryQueue, fixed_credentials};

    const SECRET: &[u8] = b"unit-test-secret";

    fn receiver(
        queue: MemoryQueue,
        quarantine: MemoryQuarantine,
    ) -> Receiver<MemoryQueue, MemoryQuarantine> {
        Receiver {
            credentials: fixed_credentials("unit-test-secret", "unit-test-token"),
            max_body_bytes: 64 * 1024,
            max_events: 100,
            answer_within: crate::DEFAULT_ANSWER_WITHIN,
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
    async fn after_a_refusal_other_threads_go_on_and_the_refused_entry_follows() {
        let queue = MemoryQueue::with_faults([Fault::Refuse(vec![1])]);
        let r = receiver(queue, MemoryQuarantine::new());
        let (body, sig) = delivery(25);
        r.accept(headers(&sig), body.as_bytes()).await.unwrap();
        // Batch 1 loses m_1; the other people's events go on, m_1 follows alone.
        assert_eq!(r.queue.calls(), vec![10, 10, 5, 1]);
        let mut expected: Vec<String> = (0..25)
            .filter(|i| *i != 1)
            .map(|i| format!("m_{i}"))
            .collect();
        expected.push("m_1".to_owned());
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
        assert_eq!(accepted.enqueued, 2);
        assert!(accepted.quarantined.is_some());
        let kept = r.quarantine.kept();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].0, body.as_bytes());
        assert!(kept[0].1.contains("InvalidMessageContents"));
    }

    #[tokio::test]
    async fn other_sender_faults_are_not_quarantined_but_fail_the_request() {
        let queue = MemoryQueue::with_faults([
            Fault::Malformed(vec![0]),
            Fault::Malformed(vec![0]),
            Fault::Malformed(vec![0]),
        ]);
        let r = receiver(queue, MemoryQuarantine::new());
        r.queue.set_fault_code("AccessDenied");
        let (body, sig) = delivery(1);
        let err = r.accept(headers(&sig), body.as_bytes()).await.unwrap_err();
        assert!(
            matches!(err, AcceptError::Enqueue { unqueued: 1, .. }),
            "{err:?}"
        );
        assert!(r.quarantine.kept().is_empty());
    }

    #[tokio::test]
    async fn an_event_over_the_message_limit_is_quarantined_and_the_rest_queued() {
        let r = receiver(MemoryQueue::new(), MemoryQuarantine::new());
        let big = "x".repeat(MAX_MESSAGE_BYTES);
        let body = format!(
            r#"{{"object":"page","entry":[{{"id":"1","time":9,"messaging":[{{"sender":{{"id":"2"}},"timestamp":1,"message":{{"mid":"m_big","text":"{big}"}}}},{{"sender":{{"id":"2"}},"timestamp":2,"message":{{"mid":"m_small","text":"hi"}}}}]}}]}}"#
        );
        let mut r = r;
        r.max_body_bytes = body.len();
        let sig = Verifier::new(SECRET).sign_sha256(body.as_bytes());
        let accepted = r.accept(headers(&sig), body.as_bytes()).await.unwrap();
        assert_eq!(accepted.enqueued, 1);
        assert_eq!(mids(&r.queue.accepted()), ["m_small"]);
        let kept = r.quarantine.kept();
        assert_eq!(kept.len(), 1);
        assert!(kept[0].1.contains("over the"), "{}", kept[0].1);
    }

    #[tokio::test]
    async fn a_delivery_over_the_event_cap_is_quarantined_whole_and_nothing_queued() {
        let r = receiver(MemoryQueue::new(), MemoryQuarantine::new());
        let (body, sig) = delivery(101);
        let accepted = r.accept(headers(&sig), body.as_bytes()).await.unwrap();
        assert_eq!(accepted.enqueued, 0);
        assert!(accepted.quarantined.is_some());
        assert!(r.queue.calls().is_empty());
        let kept = r.quarantine.kept();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].0, body.as_bytes());
        assert_eq!(
            kept[0].1,
            "the delivery has 101 events, over the limit of 100 per delivery (MAX_EVENTS_PER_DELIVERY)"
        );

        let r = receiver(MemoryQueue::new(), MemoryQuarantine::new());
        let (body, sig) = delivery(100);
        let accepted = r.accept(headers(&sig), body.as_bytes()).await.unwrap();
        assert_eq!((accepted.enqueued, accepted.quarantined), (100, None));
    }

    #[test]
    fn standby_events_count_toward_the_cap_and_entries_without_events_do_not() {
        let event = r#"{"sender":{"id":"2"},"recipient":{"id":"1"},"timestamp":1,"message":{"mid":"m","text":"t"}}"#;
        let body = format!(
            r#"{{"object":"page","entry":[{{"id":"1","time":1,"messaging":[{event},{event}]}},{{"id":"1","time":1,"standby":[{event}]}},{{"id":"1","time":1,"changes":[{{}}]}}]}}"#
        );
        assert_eq!(
            split_at_most(body.as_bytes(), 2).unwrap_err(),
            Unroutable::TooManyEvents {
                events: 3,
                limit: 2
            }
        );
        let s = split_at_most(body.as_bytes(), 3).unwrap();
        assert_eq!((s.messages.len(), s.leftovers.len()), (3, 1));
    }

    /// A queue whose calls never end, as SQS behind a stalled connection.
    struct Stalled;

    impl EventQueue for Stalled {
        async fn send_batch(&self, _: &[OutgoingMessage]) -> Result<Vec<FailedEntry>, QueueError> {
            std::future::pending().await
        }
    }

    #[tokio::test]
    async fn a_queue_that_never_answers_fails_the_request_at_the_deadline() {
        let r = receiver(MemoryQueue::new(), MemoryQuarantine::new());
        let r = Receiver {
            credentials: r.credentials,
            max_body_bytes: r.max_body_bytes,
            max_events: r.max_events,
            answer_within: Duration::from_millis(20),
            queue: Stalled,
            quarantine: r.quarantine,
            retry: r.retry,
        };
        let (body, sig) = delivery(3);
        let err = r.accept(headers(&sig), body.as_bytes()).await.unwrap_err();
        assert!(
            matches!(err, AcceptError::OutOfTime { within } if within == Duration::from_millis(20)),
            "{err:?}"
        );
    }

    #[test]
    fn json_errors_are_described_without_their_content() {
        let err = split(br#"{"object":"page","entry":"secret user text"}"#).unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
        assert!(err.to_string().contains("unexpected shape"), "{err}");
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
    fn a_body_of_countless_empty_entries_is_described_briefly() {
        let body = format!(
            r#"{{"object":"page","entry":[{}]}}"#,
            vec!["{}"; 100_000].join(",")
        );
        let s = split(body.as_bytes()).unwrap();
        assert!(s.messages.is_empty());
        assert_eq!(s.leftovers.len(), MAX_LEFTOVERS_DESCRIBED + 1);
        assert_eq!(
            s.leftovers[0],
            "entry[0] has no messaging or standby events"
        );
        assert_eq!(
            s.leftovers.last().unwrap(),
            &format!(
                "and {} more parts like these",
                100_000 - MAX_LEFTOVERS_DESCRIBED
            )
        );
    }

    #[tokio::test]
    async fn an_event_with_a_number_no_f64_holds_is_kept_with_the_body_not_queued() {
        let r = receiver(MemoryQueue::new(), MemoryQuarantine::new());
        let body = r#"{"object":"page","entry":[{"id":"1","time":9,"messaging":[
            {"sender":{"id":"7"},"recipient":{"id":"1"},"timestamp":1,"message":{"mid":"m_ok","text":"t"}},
            {"sender":{"id":"8"},"recipient":{"id":"1"},"timestamp":1e400,"read":{"watermark":1}}]}]}"#;
        let sig = Verifier::new(SECRET).sign_sha256(body.as_bytes());
        let accepted = r.accept(headers(&sig), body.as_bytes()).await.unwrap();
        assert_eq!(accepted.enqueued, 1);
        assert_eq!(mids(&r.queue.accepted()), ["m_ok"]);
        let kept = r.quarantine.kept();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].0, body.as_bytes());
        assert!(kept[0].1.contains("number out of range"), "{}", kept[0].1);
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
