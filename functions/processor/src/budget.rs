//! How much time each piece of the processor's work may need, worked out from the
//! timeouts that bound its calls, so that work is started only when it can finish
//! before the function's deadline instead of being cut off half-way by Lambda.
//!
//! Every AWS call (DynamoDB, SQS, EventBridge, KMS) is bounded by the SDK's
//! operation timeout, its own retries included ([`SDK_TIMEOUTS`], so one call costs
//! at most [`AWS_CALL`]); a Graph call by the client's timeout, connection included,
//! and it is never repeated ([`GRAPH_CALL`]). A piece of work's margin is the sum of
//! the calls it makes on its longest path, each at its worst:
//!
//! - [`MIN_TIME_PER_MESSAGE`]: a message is started only with time for the calls it
//!   makes before its first action (or all of them, when it has none).
//! - [`MIN_TIME_PER_ACTION`]: an action is started only with time for its calls,
//!   through the event's completion and its bus events.
//! - [`MIN_TIME_PER_FAN_OUT_PAGE`]: a notify fan-out reads another page of tokens
//!   only with time to queue all of it.
//!
//! What the processor tries again on its own (a record written after a send, bus
//! events refused) is tried again only while the invocation still has a whole
//! action's margin after the retry ([`allows_retry`]): a retry never eats the time
//! the margins promise the calls after it. A `notify_one` (one person's
//! notification: a token spent and a Graph call) is started only with an action's
//! margin, and a `notify` only with a fan-out page's.
//!
//! Two paths can make a call or two more than their margin counts: a `notify_one`
//! whose first token was spent meanwhile tries the next (one more call each), and
//! an event with more than ten bus events publishes them in several calls. Cut off
//! there, the work is still safe: every step before is recorded, and a redelivery
//! takes it up from the record (a started send is never repeated).
//! The deadline is the invocation's, set around each message by the batch
//! ([`within`]).

use std::future::Future;
use std::time::{Duration, SystemTime};

use app_config::SdkTimeouts;

/// The processor's AWS SDK timeouts: DynamoDB, SQS, EventBridge and KMS answer in
/// milliseconds, so an attempt that takes 1.5 s has stalled and is better tried
/// again (by the SDK) or given up.
pub const SDK_TIMEOUTS: SdkTimeouts = SdkTimeouts {
    connect: Duration::from_secs(1),
    attempt: Duration::from_millis(1_500),
    operation: Duration::from_secs(3),
};

/// The most one AWS call can take, the SDK's own retries included.
pub const AWS_CALL: Duration = SDK_TIMEOUTS.operation;
/// The most one Graph call can take (it is not repeated: a call that timed out may
/// have been delivered).
pub const GRAPH_CALL: Duration = graph_api::DEFAULT_TIMEOUT;
/// The processor's own work between calls: JSON, logs, scheduling on 128 MB.
pub const SLACK: Duration = Duration::from_secs(1);

/// The calls a message makes before its first action, at most.
pub const MESSAGE_CALLS: [&str; 8] = [
    "the Page's token read from the table",
    "the Page's token unsealed (KMS)",
    "the Page's last event noted",
    "the turn opened (the thread and the event's record read)",
    "the Page's record changed",
    "a notification token stored",
    "the turn taken",
    "the event's bus events published",
];

/// The AWS calls one action makes, at most, besides its Graph call.
pub const ACTION_CALLS: [&str; 9] = [
    "the action recorded as started",
    "a second progress write (an event without a thread)",
    "what the policy reads (another thread, or the person's tokens)",
    "a notification token spent",
    "the send's fate recorded (the token's, or the thread's new owner)",
    "the Page marked INVALID (Meta refused its token)",
    "Page Status Changed published",
    "the event completed (or the next action started)",
    "the event's bus events published (up to ten per call)",
];

/// The calls of one page of a notify fan-out: the page read, its up to 100
/// recipients queued ten per `SendMessageBatch`, and a follow-up command queued.
pub const FAN_OUT_PAGE_CALLS: u32 = 1 + 10 + 1;

const fn calls(n: usize) -> Duration {
    // Small constant arrays: the cast cannot truncate.
    #[allow(clippy::cast_possible_truncation)]
    AWS_CALL.saturating_mul(n as u32)
}

/// Time a message needs at the least: with less left, it is handed back to SQS
/// rather than cut off half-way by the Lambda timeout.
pub const MIN_TIME_PER_MESSAGE: Duration = calls(MESSAGE_CALLS.len()).saturating_add(SLACK);
/// Time one action needs at the least: its AWS calls and its Graph call, each at
/// its worst.
pub const MIN_TIME_PER_ACTION: Duration = calls(ACTION_CALLS.len())
    .saturating_add(GRAPH_CALL)
    .saturating_add(SLACK);
/// Time one more page of a notify fan-out needs at the least.
pub const MIN_TIME_PER_FAN_OUT_PAGE: Duration = AWS_CALL
    .saturating_mul(FAN_OUT_PAGE_CALLS)
    .saturating_add(SLACK);

tokio::task_local! {
    static DEADLINE: Option<SystemTime>;
}

/// Runs `work` with `deadline` (the invocation's) as the one [`allows`] reads.
pub async fn within<F: Future>(deadline: Option<SystemTime>, work: F) -> F::Output {
    DEADLINE.scope(deadline, work).await
}

/// Whether the invocation has `need` left: always when the deadline is unknown
/// (outside [`within`], or a deadline already past, see [`crate::time_left`]).
pub fn allows(need: Duration) -> bool {
    DEADLINE
        .try_with(|deadline| deadline.is_none_or(|d| crate::time_left(d) >= need))
        .unwrap_or(true)
}

/// Whether another attempt of a write, after `pause`, still fits, leaving a whole
/// action's margin after it: a retry never eats the time the calls after it were
/// promised, whichever they are.
pub fn allows_retry(pause: Duration) -> bool {
    allows(pause.saturating_add(MIN_TIME_PER_ACTION))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_retry_is_allowed_only_with_the_time_for_it() {
        // Outside an invocation, or with its deadline unknown: always.
        assert!(allows_retry(Duration::from_millis(50)));
        assert!(within(None, async { allows_retry(Duration::from_secs(60)) }).await);
        // A deadline already past is taken as unknown (cargo-lambda's emulator).
        let emulator = SystemTime::UNIX_EPOCH + Duration::from_secs(600);
        assert!(within(Some(emulator), async { allows_retry(Duration::ZERO) }).await);

        let soon = Some(SystemTime::now() + Duration::from_secs(2));
        assert!(!within(soon, async { allows_retry(Duration::ZERO) }).await);
        let later = Some(SystemTime::now() + Duration::from_secs(50));
        assert!(within(later, async { allows_retry(Duration::from_millis(800)) }).await);
        // A retry leaves a whole action's margin behind it.
        let short = Some(SystemTime::now() + Duration::from_secs(20));
        assert!(within(short, async { allows(Duration::from_secs(10)) }).await);
        assert!(!within(short, async { allows_retry(Duration::ZERO) }).await);
        let page = Some(SystemTime::now() + Duration::from_secs(30));
        assert!(!within(page, async { allows(MIN_TIME_PER_FAN_OUT_PAGE) }).await);
    }

    /// A write DynamoDB keeps refusing as passing: how many times `persist` tries
    /// it under `deadline`.
    async fn persist_attempts(deadline: Option<SystemTime>) -> u32 {
        let attempts = std::sync::atomic::AtomicU32::new(0);
        let result = within(
            deadline,
            crate::persist("record progress", || {
                attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                async {
                    Err::<(), _>(messenger_store::StoreError {
                        op: "UpdateItem(thread)",
                        kind: messenger_store::StoreErrorKind::Transient,
                        message: "throttled".to_owned(),
                        source: None,
                    })
                }
            }),
        )
        .await;
        assert!(result.is_err());
        attempts.into_inner()
    }

    #[tokio::test]
    async fn a_record_is_tried_again_only_while_the_invocation_has_the_time() {
        assert_eq!(persist_attempts(None).await, 4);
        let later = SystemTime::now() + Duration::from_secs(60);
        assert_eq!(persist_attempts(Some(later)).await, 4);
        // 20 s left: a retry would leave less than an action's margin behind it.
        let none_left = SystemTime::now() + Duration::from_secs(20);
        assert_eq!(persist_attempts(Some(none_left)).await, 1);
    }

    /// A bus that refuses every entry, counting its calls.
    #[derive(Debug, Default)]
    struct Refusing(std::sync::atomic::AtomicU32);

    impl crate::publish::Bus for Refusing {
        fn put<'a>(
            &'a self,
            entries: &'a [crate::publish::BusEvent],
        ) -> crate::publish::BusFuture<'a> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let all = (0..entries.len()).collect();
            Box::pin(async move { Ok(all) })
        }
    }

    #[tokio::test]
    async fn bus_events_are_sent_again_only_while_the_invocation_has_the_time() {
        for (deadline, calls) in [
            (None, 3),
            (Some(SystemTime::now() + Duration::from_secs(60)), 3),
            (Some(SystemTime::now() + Duration::from_secs(20)), 1),
        ] {
            let bus = Refusing::default();
            let events = vec![crate::publish::BusEvent {
                detail_type: "Event Received",
                detail: serde_json::json!({}),
            }];
            let error = within(deadline, crate::publish::publish(&bus, events))
                .await
                .unwrap_err();
            assert_eq!((error.unsent, error.total), (1, 1));
            assert_eq!(bus.0.into_inner(), calls, "{deadline:?}");
        }
    }
}
