//! Handing a message back with a back-off. A message reported as a batch item
//! failure stays invisible for the queue's whole visibility timeout (360 s), and
//! in a FIFO queue its thread waits with it. Instead, the processor sets the
//! visibility of what it hands back itself: at once for a message it had no time
//! to start, and for a passing failure a delay that grows with the message's
//! receive count (5 s, 10 s, 20 s, ... at most [`MAX_DELAY`]). Every message of
//! the group handed back with it gets the same delay, so the group comes back
//! together and in order. Should the call fail, the message simply waits out the
//! visibility timeout: slower, nothing lost.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// The first retry's delay.
pub const FIRST_DELAY: Duration = Duration::from_secs(5);
/// The longest delay: below the queue's visibility timeout (360 s).
pub const MAX_DELAY: Duration = Duration::from_secs(300);

/// The delay before the next delivery of a message that failed on its
/// `receive_count`-th delivery (SQS's `ApproximateReceiveCount`, from 1).
pub fn delay_after(receive_count: u32) -> Duration {
    let doublings = receive_count.saturating_sub(1).min(16);
    FIRST_DELAY.saturating_mul(1 << doublings).min(MAX_DELAY)
}

/// A boxed future, so that the port can be a trait object.
pub type VisibilityFuture<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// Where the visibility of handed-back messages is set: `(receipt handle, delay)`.
pub trait Visibility: Send + Sync + fmt::Debug {
    fn set_visibility<'a>(&'a self, entries: &'a [(String, Duration)]) -> VisibilityFuture<'a>;
}

/// Leaves handed-back messages to the queue's visibility timeout.
#[derive(Debug, Default)]
pub struct QueueTimeout;

impl Visibility for QueueTimeout {
    fn set_visibility<'a>(&'a self, _: &'a [(String, Duration)]) -> VisibilityFuture<'a> {
        Box::pin(async { Ok(()) })
    }
}

/// The events queue's `ChangeMessageVisibilityBatch`.
#[derive(Debug, Clone)]
pub struct SqsVisibility {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsVisibility {
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }
}

impl Visibility for SqsVisibility {
    fn set_visibility<'a>(&'a self, entries: &'a [(String, Duration)]) -> VisibilityFuture<'a> {
        Box::pin(async move {
            let mut refused = 0usize;
            for chunk in entries.chunks(10) {
                let batch = chunk
                    .iter()
                    .enumerate()
                    .map(|(i, (handle, delay))| {
                        aws_sdk_sqs::types::ChangeMessageVisibilityBatchRequestEntry::builder()
                            .id(i.to_string())
                            .receipt_handle(handle)
                            .visibility_timeout(i32::try_from(delay.as_secs()).unwrap_or(i32::MAX))
                            .build()
                            .map_err(|e| e.to_string())
                    })
                    .collect::<Result<Vec<_>, String>>()?;
                let out = self
                    .client
                    .change_message_visibility_batch()
                    .queue_url(&self.queue_url)
                    .set_entries(Some(batch))
                    .send()
                    .await
                    .map_err(|e| {
                        format!(
                            "ChangeMessageVisibilityBatch failed: {}",
                            aws_sdk_sqs::error::DisplayErrorContext(e)
                        )
                    })?;
                refused += out.failed().len();
            }
            if refused > 0 {
                return Err(format!(
                    "the queue refused to change the visibility of {refused} messages"
                ));
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_doubles_with_each_delivery_and_stays_under_the_visibility_timeout() {
        let delays: Vec<u64> = (0..=12).map(|n| delay_after(n).as_secs()).collect();
        assert_eq!(
            delays,
            [5, 5, 10, 20, 40, 80, 160, 300, 300, 300, 300, 300, 300]
        );
        assert_eq!(delay_after(u32::MAX), MAX_DELAY);
        // The first retries come within a minute, where each used to wait 360 s.
        let first_three: Duration = (1..=3).map(delay_after).sum();
        assert!(first_three < Duration::from_secs(60), "{first_three:?}");
    }
}
