//! Messages that can never succeed. A message the processor cannot read (not a
//! queue message, or an event that is not a JSON object) fails the same way on
//! every delivery. Handed back until the queue's `maxReceiveCount` (20 receives,
//! about 75 minutes with the back-off), it would hold its thread all that time in a
//! FIFO queue. Instead, from its [`AFTER_RECEIVES`]th delivery on, the processor
//! puts it on the dead-letter queue itself, with its reason, and acknowledges it:
//! the thread goes on, and the operator finds it where SQS would have put it
//! (`messenger dlq count` / `dlq redrive`, the dead-letter alarm). The deliveries
//! before that (5 s, then 10 s apart) let a processor being deployed catch up with
//! a newer webhook or command sender whose messages it cannot read yet.
//!
//! DynamoDB's refusals are not taken as permanent: the store files every error it
//! does not know as `Invalid`, and among them are passing ones (a transaction
//! cancelled by a conflict) and ones a deploy or an IAM fix ends (`AccessDenied`,
//! `ResourceNotFound`). Those keep the queue's retries.
//!
//! The copy keeps the message's body and FIFO group, is deduplicated on the
//! original message id (a repeated delivery within SQS's five-minute
//! deduplication window is not parked twice), and carries three message
//! attributes: `dead_letter_reason` (the error, which never quotes the body),
//! `source_message_id`, and `source_sender_id` (the original `SenderId`'s
//! principal, without the session name), by which the processor screens the
//! message again if it is redriven ([`crate::sender`]). Should the dead-letter
//! queue refuse it, the message is handed back as any failure is: slower, nothing
//! lost.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use aws_lambda_events::sqs::SqsMessage;

use crate::ProcessError;

/// The longest reason kept on the copy (SQS allows far more; a reason is a line).
pub const MAX_REASON_CHARS: usize = 500;
/// The delivery (SQS's `ApproximateReceiveCount`) from which a message that can
/// never succeed goes to the dead-letter queue instead of back to the queue.
pub const AFTER_RECEIVES: u32 = 3;
/// The message attribute naming who first sent a dead-lettered message.
pub const SOURCE_SENDER_ID: &str = "source_sender_id";

/// Whether `error` fails again on every delivery of the same processor, so that
/// retrying only holds the message's thread: an unreadable message or event.
pub fn is_permanent(error: &ProcessError) -> bool {
    matches!(
        error,
        ProcessError::Unreadable(_) | ProcessError::UnreadableEvent
    )
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
            // The id is the copy's deduplication id: without one, a second message
            // could be dropped as its duplicate. Lambda always sets it.
            let Some(id) = message.message_id.as_deref().filter(|id| !id.is_empty()) else {
                return Err("the message has no id to deduplicate its copy on".to_owned());
            };
            // The principal alone: a role session's name can be a person's.
            let sender = message
                .attributes
                .get("SenderId")
                .and_then(|s| s.split(':').next())
                .filter(|s| !s.is_empty())
                .unwrap_or("unknown");
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
                .message_attributes(SOURCE_SENDER_ID, string_attribute(sender)?)
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
        // What DynamoDB refuses may be a deploy or an IAM change away from passing.
        assert!(!is_permanent(&ProcessError::Store(StoreError::invalid(
            "PutItem(thread)",
            "AccessDeniedException"
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
