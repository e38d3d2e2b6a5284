//! The events queue on SQS FIFO.

use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::operation::send_message_batch::SendMessageBatchOutput;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;

use crate::{EventQueue, FailedEntry, OutgoingMessage, QueueError};

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

        Ok(failures(batch.len(), &out))
    }
}

/// The entries of a batch of `len` that SQS did not accept. An entry it reports
/// neither as successful nor as failed is not known to be queued: it counts as
/// failed, so it is sent again.
pub fn failures(len: usize, out: &SendMessageBatchOutput) -> Vec<FailedEntry> {
    let mut failed: Vec<FailedEntry> = out
        .failed()
        .iter()
        .filter_map(|f| {
            Some(FailedEntry {
                index: f.id().parse().ok().filter(|i| *i < len)?,
                code: f.code().to_owned(),
                sender_fault: f.sender_fault(),
            })
        })
        .collect();
    for i in 0..len {
        let id = i.to_string();
        let reported =
            out.successful().iter().any(|s| s.id() == id) || failed.iter().any(|f| f.index == i);
        if !reported {
            failed.push(FailedEntry {
                index: i,
                code: "NotReported".to_owned(),
                sender_fault: false,
            });
        }
    }
    failed
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sqs::types::{BatchResultErrorEntry, SendMessageBatchResultEntry};

    fn ok(id: &str) -> SendMessageBatchResultEntry {
        SendMessageBatchResultEntry::builder()
            .id(id)
            .message_id(format!("msg-{id}"))
            .md5_of_message_body("d41d8cd98f00b204e9800998ecf8427e")
            .build()
            .unwrap()
    }

    fn refused(id: &str, code: &str, sender_fault: bool) -> BatchResultErrorEntry {
        BatchResultErrorEntry::builder()
            .id(id)
            .code(code)
            .sender_fault(sender_fault)
            .build()
            .unwrap()
    }

    #[test]
    fn refused_entries_keep_their_index_code_and_fault() {
        let out = SendMessageBatchOutput::builder()
            .successful(ok("0"))
            .successful(ok("2"))
            .failed(refused("1", "InternalError", false))
            .failed(refused("3", "InvalidMessageContents", true))
            .build()
            .unwrap();
        assert_eq!(
            failures(4, &out),
            vec![
                FailedEntry {
                    index: 1,
                    code: "InternalError".into(),
                    sender_fault: false
                },
                FailedEntry {
                    index: 3,
                    code: "InvalidMessageContents".into(),
                    sender_fault: true
                },
            ]
        );
    }

    #[test]
    fn entries_sqs_did_not_mention_count_as_failed() {
        let out = SendMessageBatchOutput::builder()
            .successful(ok("0"))
            .failed(refused("7", "InternalError", false))
            .build()
            .unwrap();
        let failed = failures(2, &out);
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].index, 1);
        assert_eq!(failed[0].code, "NotReported");
        assert!(!failed[0].sender_fault);
    }
}
