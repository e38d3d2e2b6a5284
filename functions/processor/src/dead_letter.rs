//! Messages that can never succeed. A message the processor cannot read (not a
//! queue message, or an event that is not a JSON object), or one DynamoDB refuses
//! as built, fails the same way on every delivery. Handed back, it would be tried
//! until the queue's `maxReceiveCount` (20 receives, about 75 minutes with the
//! back-off) and, in a FIFO queue, its thread would wait behind it all that time.
//! Instead the processor puts it on the dead-letter queue itself, at once, with
//! its reason, and acknowledges it: the thread goes on, and the operator finds it
//! where SQS would have put it (`messenger dlq count` / `dlq redrive`, the
//! dead-letter alarm).
//!
//! The copy keeps the message's body and FIFO group, is deduplicated on the
//! original message id (a repeated delivery is not parked twice), and carries two
//! message attributes: `dead_letter_reason` (the error, which never quotes the
//! body) and `source_message_id`. Should the dead-letter queue refuse it, the
//! message is handed back as any failure is: slower, nothing lost.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use aws_lambda_events::sqs::SqsMessage;

use crate::ProcessError;

/// The longest reason kept on the copy (SQS allows far more; a reason is a line).
pub const MAX_REASON_CHARS: usize = 500;

/// Whether `error` fails again on every delivery, so that retrying only holds the
/// message's thread: an unreadable message, an unreadable event, a request
/// DynamoDB refuses as built (or an item that is not what this code writes).
pub fn is_permanent(error: &ProcessError) -> bool {
    match error {
        ProcessError::Unreadable(_) | ProcessError::UnreadableEvent => true,
        ProcessError::Store(e) => e.kind == messenger_store::StoreErrorKind::Invalid,
        _ => false,
    }
}

/// A boxed future, so that the port can be a trait object.
pub type DeadLetterFuture<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// Where messages that can never succeed are put.
pub trait DeadLetters: Send + Sync + fmt::Debug {
    /// Whether there is a dead-letter queue to put them on at all.
    fn configured(&self) -> bool {
        true
    }
    fn put<'a>(&'a self, message: &'a SqsMessage, reason: &'a str) -> DeadLetterFuture<'a>;
}

/// No dead-letter queue (`EVENTS_DLQ_URL` unset): such messages are handed back
/// and reach the DLQ through the queue's redrive policy.
#[derive(Debug, Default)]
pub struct HandBack;

impl DeadLetters for HandBack {
    fn configured(&self) -> bool {
        false
    }
    fn put<'a>(&'a self, _: &'a SqsMessage, _: &'a str) -> DeadLetterFuture<'a> {
        Box::pin(async { Err("no dead-letter queue is configured (EVENTS_DLQ_URL)".to_owned()) })
    }
}

/// The events queue's dead-letter queue (`EVENTS_DLQ_URL`, FIFO).
#[derive(Debug, Clone)]
pub struct SqsDeadLetters {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsDeadLetters {
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }
}

/// `reason` cut to [`MAX_REASON_CHARS`] characters.
fn short(reason: &str) -> String {
    reason.chars().take(MAX_REASON_CHARS).collect()
}

fn string_attribute(value: &str) -> Result<aws_sdk_sqs::types::MessageAttributeValue, String> {
    aws_sdk_sqs::types::MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .map_err(|e| e.to_string())
}

impl DeadLetters for SqsDeadLetters {
    fn put<'a>(&'a self, message: &'a SqsMessage, reason: &'a str) -> DeadLetterFuture<'a> {
        Box::pin(async move {
            let id = message.message_id.as_deref().unwrap_or("unknown");
            // A message from a standard queue has no group; the DLQ is FIFO.
            let group = message
                .attributes
                .get("MessageGroupId")
                .map_or("ungrouped", String::as_str);
            // An empty body cannot be sent: SQS wants at least one character.
            let body = match message.body.as_deref() {
                Some(body) if !body.is_empty() => body,
                _ => "(empty)",
            };
            self.client
                .send_message()
                .queue_url(&self.queue_url)
                .message_body(body)
                .message_group_id(group)
                .message_deduplication_id(id)
                .message_attributes("dead_letter_reason", string_attribute(&short(reason))?)
                .message_attributes("source_message_id", string_attribute(id)?)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| {
                    format!(
                        "SendMessage to the dead-letter queue failed: {}",
                        aws_sdk_sqs::error::DisplayErrorContext(e)
                    )
                })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use messenger_store::StoreError;

    #[test]
    fn only_what_fails_on_every_delivery_is_permanent() {
        let unreadable = messenger_types::QueueMessage::from_json("{").unwrap_err();
        assert!(is_permanent(&ProcessError::Unreadable(unreadable)));
        assert!(is_permanent(&ProcessError::UnreadableEvent));
        assert!(is_permanent(&ProcessError::Store(StoreError::invalid(
            "PutItem(thread)",
            "ValidationException: item too large"
        ))));
        assert!(!is_permanent(&ProcessError::Busy));
        assert!(!is_permanent(&ProcessError::OutOfTime));
        let mut passing = StoreError::invalid("GetItem(thread)", "throttled");
        passing.kind = messenger_store::StoreErrorKind::Transient;
        assert!(!is_permanent(&ProcessError::Store(passing)));
    }

    #[test]
    fn a_long_reason_is_cut_on_a_character_boundary() {
        let reason = "é".repeat(MAX_REASON_CHARS + 10);
        assert_eq!(short(&reason).chars().count(), MAX_REASON_CHARS);
        assert_eq!(short("short"), "short");
    }
}
