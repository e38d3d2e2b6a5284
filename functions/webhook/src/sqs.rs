//! The events queue on SQS FIFO.

use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;

use crate::accept::{EventQueue, FailedEntry, OutgoingMessage, QueueError};

#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsQueue {
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }
}

/// The SendMessageBatch entries for a batch; each entry's id is its index.
pub fn batch_entries(
    batch: &[OutgoingMessage],
) -> Result<Vec<SendMessageBatchRequestEntry>, QueueError> {
    batch
        .iter()
        .enumerate()
        .map(|(i, m)| {
            SendMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .message_body(&m.body)
                .message_group_id(&m.group_id)
                .message_deduplication_id(&m.dedup_id)
                .build()
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| QueueError {
            message: e.to_string(),
            source: Some(Box::new(e)),
        })
}

impl EventQueue for SqsQueue {
    async fn send_batch(&self, batch: &[OutgoingMessage]) -> Result<Vec<FailedEntry>, QueueError> {
        let entries = batch_entries(batch)?;
        let out = self
            .client
            .send_message_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| QueueError {
                message: DisplayErrorContext(&e).to_string(),
                source: Some(Box::new(e)),
            })?;

        let mut failed: Vec<FailedEntry> = out
            .failed()
            .iter()
            .filter_map(|f| {
                Some(FailedEntry {
                    index: f.id().parse().ok()?,
                    code: f.code().to_owned(),
                    sender_fault: f.sender_fault(),
                })
            })
            .collect();
        // An entry SQS reports neither as successful nor as failed is not known to be
        // queued: count it as failed so it is sent again.
        for i in 0..batch.len() {
            let id = i.to_string();
            let reported = out.successful().iter().any(|s| s.id() == id)
                || failed.iter().any(|f| f.index == i);
            if !reported {
                failed.push(FailedEntry {
                    index: i,
                    code: "NotReported".to_owned(),
                    sender_fault: false,
                });
            }
        }
        Ok(failed)
    }
}
