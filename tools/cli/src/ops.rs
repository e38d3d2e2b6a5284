//! Operator commands against a deployed stack (or the local one): the quarantine, the
//! dead-letter queue, Page subscriptions and tokens, the secret, notify commands.

use app_config::SdkConfig;
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use crate::Result;
use crate::settings::{Env, fresh_id};

pub(crate) const FROM_OUTPUTS: &str =
    "take it from the stack's Outputs (README, Deploy), or start the local stack with scripts/run";

/// The webhook fields the backend handles (MESSENGER.md §2, §9).
pub use graph_api::WEBHOOK_FIELDS;

#[derive(Debug, clap::Subcommand)]
pub enum QuarantineCommand {
    /// List kept bodies (key, size, time, reason), newest first.
    List {
        /// Only this UTC day (YYYY-MM-DD).
        #[arg(long)]
        day: Option<String>,
        /// One JSON array of {key, size, last_modified, reason}.
        #[arg(long)]
        json: bool,
    },
    /// Print one kept body, byte for byte (nothing else goes to stdout).
    Get { key: String },
}

#[derive(Debug, clap::Subcommand)]
pub enum DlqCommand {
    /// Count the messages waiting in the dead-letter queue.
    Count {
        #[arg(long)]
        json: bool,
    },
    /// Move dead-lettered messages back to the events queue, each in its own group
    /// and order, once the cause is fixed, with progress on stderr. The processor's
    /// deduplication makes a message that was in fact processed a no-op.
    ///
    /// On AWS this starts SQS's own message move task and follows it; where that
    /// is not available (the emulator) or with --max, messages are moved ten at a
    /// time (receive, send, delete).
    Redrive {
        /// Stop after this many messages (moves them ten at a time).
        #[arg(long)]
        max: Option<usize>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum SecretField {
    AppSecret,
    VerifyToken,
}

impl SecretField {
    fn key(self) -> &'static str {
        match self {
            Self::AppSecret => "app_secret",
            Self::VerifyToken => "verify_token",
        }
    }
}

/// A notify command as DESIGN.md defines it, on the events queue.
pub fn notify_command(page: &str, topic: &str, text: &str) -> Value {
    json!({"type": "notify", "page_id": page, "topic": topic, "message": {"text": text}})
}

/// A valid MessageGroupId for a topic: one group per Page and topic, whatever
/// characters the topic has.
pub fn notify_group(page: &str, topic: &str) -> String {
    let digest = hex::encode(&Sha256::digest(topic.as_bytes())[..8]);
    format!("notify:{page}:{digest}")
}

pub async fn notify(env: &Env, sdk: &SdkConfig, page: &str, topic: &str, text: &str) -> Result<()> {
    if topic.trim().is_empty() || text.trim().is_empty() {
        return Err("the topic and the text must not be empty".into());
    }
    let queue = env.require("EVENTS_QUEUE_URL", FROM_OUTPUTS)?;
    let sent = aws_sdk_sqs::Client::new(sdk)
        .send_message()
        .queue_url(&queue)
        .message_group_id(notify_group(page, topic))
        .message_deduplication_id(fresh_id())
        .message_body(notify_command(page, topic, text).to_string())
        .send()
        .await
        .map_err(|e| format!("cannot queue the notify command: {}", describe(&e)))?;
    println!(
        "queued notify for Page {page}, topic {topic:?}: message {}",
        sent.message_id().unwrap_or("?")
    );
    Ok(())
}

pub async fn quarantine(env: &Env, sdk: &SdkConfig, command: QuarantineCommand) -> Result<()> {
    let bucket = env.require("QUARANTINE_BUCKET", FROM_OUTPUTS)?;
    let s3 = webhook::s3_client(sdk);
    match command {
        QuarantineCommand::List { day, json } => {
            let prefix = match day {
                Some(day) => format!("quarantine/{day}/"),
                None => "quarantine/".to_owned(),
            };
            let mut pages = s3
                .list_objects_v2()
                .bucket(&bucket)
                .prefix(&prefix)
                .into_paginator()
                .send();
            let mut kept = Vec::new();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| format!("cannot list {bucket}: {}", describe(&e)))?;
                for object in page.contents() {
                    kept.push((
                        object.last_modified().map(|t| (t.secs(), t.subsec_nanos())),
                        object.key().unwrap_or_default().to_owned(),
                        object.size().unwrap_or(0),
                        object
                            .last_modified()
                            .map(|t| t.to_string())
                            .unwrap_or_default(),
                    ));
                }
            }
            // S3 lists keys in name order (a day, then a hash): newest first is
            // what an operator looking for the last failure wants.
            kept.sort_by(|a, b| (&b.0, &b.1).cmp(&(&a.0, &a.1)));
            let mut lines = Vec::new();
            for (_, key, size, modified) in kept {
                let reason = s3
                    .head_object()
                    .bucket(&bucket)
                    .key(&key)
                    .send()
                    .await
                    .ok()
                    .and_then(|h| h.metadata().and_then(|m| m.get("reason").cloned()))
                    .unwrap_or_default();
                if !json {
                    println!("{key}\t{size} bytes\t{modified}\t{reason}");
                }
                lines.push(
                    json!({"key": key, "size": size, "last_modified": modified, "reason": reason}),
                );
            }
            if json {
                println!("{}", Value::Array(lines.clone()));
            }
            eprintln!(
                "{} quarantined bodies under s3://{bucket}/{prefix}",
                lines.len()
            );
            Ok(())
        }
        QuarantineCommand::Get { key } => {
            let object = s3
                .get_object()
                .bucket(&bucket)
                .key(&key)
                .send()
                .await
                .map_err(|e| format!("cannot read s3://{bucket}/{key}: {}", describe(&e)))?;
            let bytes = object.body.collect().await?.into_bytes();
            use tokio::io::AsyncWriteExt;
            let mut out = tokio::io::stdout();
            out.write_all(&bytes).await?;
            out.flush().await?;
            Ok(())
        }
    }
}

/// The dead-letter queue of the events queue, from its redrive policy.
pub(crate) async fn dead_letter_queue(sqs: &aws_sdk_sqs::Client, queue: &str) -> Result<String> {
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(queue)
        .attribute_names(QueueAttributeName::RedrivePolicy)
        .send()
        .await
        .map_err(|e| {
            format!(
                "cannot read the events queue's attributes: {}",
                describe(&e)
            )
        })?;
    let policy = attributes
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::RedrivePolicy))
        .ok_or("the events queue has no dead-letter queue (no RedrivePolicy)")?;
    let policy: Value = serde_json::from_str(policy)?;
    let arn = policy["deadLetterTargetArn"]
        .as_str()
        .ok_or("the redrive policy names no deadLetterTargetArn")?;
    // arn:aws:sqs:<region>:<account>:<name>
    let parts: Vec<&str> = arn.split(':').collect();
    let (account, name) = match parts.as_slice() {
        [.., account, name] => (*account, *name),
        _ => return Err(format!("unexpected dead-letter queue ARN {arn}").into()),
    };
    Ok(sqs
        .get_queue_url()
        .queue_name(name)
        .queue_owner_aws_account_id(account)
        .send()
        .await
        .map_err(|e| format!("cannot find the dead-letter queue {name}: {}", describe(&e)))?
        .queue_url()
        .unwrap_or_default()
        .to_owned())
}

pub async fn dlq(env: &Env, sdk: &SdkConfig, command: DlqCommand) -> Result<()> {
    let queue = env.require("EVENTS_QUEUE_URL", FROM_OUTPUTS)?;
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let dlq = dead_letter_queue(&sqs, &queue).await?;
    match command {
        DlqCommand::Count { json } => {
            let (waiting, in_flight) = counts(&sqs, &dlq).await?;
            if json {
                println!(
                    "{}",
                    json!({"queue_url": dlq, "waiting": waiting, "in_flight": in_flight})
                );
            } else {
                let shown = |n: Option<u64>| n.map_or_else(|| "?".to_owned(), |n| n.to_string());
                println!(
                    "{dlq}: {} waiting, {} in flight",
                    shown(waiting),
                    shown(in_flight)
                );
            }
            Ok(())
        }
        DlqCommand::Redrive { max, json } => {
            let (waiting, _) = counts(&sqs, &dlq).await?;
            let native = match max {
                Some(_) => None,
                None => native_redrive(&sqs, &dlq, &queue).await?,
            };
            let (moved, method) = match native {
                Some(moved) => (moved, "message-move-task"),
                None => (
                    redrive_loop(&sqs, &dlq, &queue, max.unwrap_or(usize::MAX), waiting).await?,
                    "receive-send-delete",
                ),
            };
            if json {
                println!("{}", json!({"moved": moved, "method": method}));
            } else {
                println!("moved {moved} message(s) from the dead-letter queue to the events queue");
            }
            Ok(())
        }
    }
}

/// (waiting, in flight) in a queue, as SQS approximates them.
pub(crate) async fn counts(
    sqs: &aws_sdk_sqs::Client,
    queue: &str,
) -> Result<(Option<u64>, Option<u64>)> {
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(queue)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .map_err(|e| format!("cannot read the dead-letter queue: {}", describe(&e)))?;
    let get = |name| {
        attributes
            .attributes()
            .and_then(|a| a.get(&name))
            .and_then(|v| v.parse().ok())
    };
    Ok((
        get(QueueAttributeName::ApproximateNumberOfMessages),
        get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
    ))
}

async fn queue_arn(sqs: &aws_sdk_sqs::Client, queue: &str) -> Result<String> {
    Ok(sqs
        .get_queue_attributes()
        .queue_url(queue)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| format!("cannot read the ARN of {queue}: {}", describe(&e)))?
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .ok_or_else(|| format!("{queue} has no ARN"))?)
}

/// SQS's own redrive (`StartMessageMoveTask`), followed until it ends, with its
/// progress on stderr. `None` when the service does not offer it (the emulator
/// answers that the operation is unknown or not implemented): then the caller
/// moves the messages itself.
async fn native_redrive(sqs: &aws_sdk_sqs::Client, dlq: &str, queue: &str) -> Result<Option<u64>> {
    use aws_sdk_sqs::error::ProvideErrorMetadata;
    let (source, destination) = (queue_arn(sqs, dlq).await?, queue_arn(sqs, queue).await?);
    let started = sqs
        .start_message_move_task()
        .source_arn(&source)
        .destination_arn(&destination)
        .send()
        .await;
    let handle = match started {
        Ok(task) => task.task_handle().unwrap_or_default().to_owned(),
        Err(e) => {
            let code = e.code().unwrap_or_default();
            let status = e.raw_response().map(|r| r.status().as_u16());
            if unsupported(code, status) {
                tracing::info!(
                    code,
                    "no message move task here: moving the messages one batch at a time"
                );
                return Ok(None);
            }
            return Err(format!("cannot start the message move task: {}", describe(&e)).into());
        }
    };
    tracing::info!(task = %handle, "message move task started");
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        let tasks = sqs
            .list_message_move_tasks()
            .source_arn(&source)
            .max_results(10)
            .send()
            .await
            .map_err(|e| format!("cannot follow the message move task: {}", describe(&e)))?;
        let Some(task) = tasks
            .results()
            .iter()
            .find(|t| t.task_handle() == Some(handle.as_str()) || t.task_handle().is_none())
        else {
            return Err("the message move task is no longer listed".into());
        };
        let moved = u64::try_from(task.approximate_number_of_messages_moved()).unwrap_or(0);
        let total = task.approximate_number_of_messages_to_move();
        let status = task.status().unwrap_or("RUNNING");
        eprintln!(
            "redrive: {moved} of {} moved ({status})",
            total.map_or_else(|| "?".to_owned(), |t| t.to_string())
        );
        match status {
            "COMPLETED" => return Ok(Some(moved)),
            "FAILED" | "CANCELLED" => {
                return Err(format!(
                    "the message move task ended {status} after {moved} message(s): {}",
                    task.failure_reason().unwrap_or("no reason given")
                )
                .into());
            }
            _ => {}
        }
    }
}

/// An answer meaning "this endpoint has no such operation", not "you may not":
/// a code saying so, or an answer that is no SQS error at all (moto answers an
/// operation it lacks with an HTML page and no code; SQS always names a code).
fn unsupported(code: &str, status: Option<u16>) -> bool {
    code.is_empty()
        || matches!(
            code,
            "UnknownOperationException"
                | "UnknownOperation"
                | "InvalidAction"
                | "NotImplemented"
                | "UnsupportedOperation"
                | "AWS.SimpleQueueService.UnsupportedOperation"
        )
        || matches!(status, Some(404 | 501))
}

/// Moves up to `max` messages ten at a time: received from the dead-letter queue,
/// sent to the events queue in one batch, then deleted in one batch.
async fn redrive_loop(
    sqs: &aws_sdk_sqs::Client,
    dlq: &str,
    queue: &str,
    max: usize,
    waiting: Option<u64>,
) -> Result<u64> {
    use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, SendMessageBatchRequestEntry};
    let mut moved: u64 = 0;
    let mut left = max;
    let total = waiting.map_or_else(|| "?".to_owned(), |n| n.to_string());
    while left > 0 {
        let got = sqs
            .receive_message()
            .queue_url(dlq)
            .max_number_of_messages(i32::try_from(left.min(10)).unwrap_or(10))
            .wait_time_seconds(1)
            .visibility_timeout(60)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .map_err(|e| format!("cannot receive from {dlq}: {}", describe(&e)))?;
        let messages = got.messages();
        if messages.is_empty() {
            break;
        }
        let mut sends = Vec::new();
        for (i, m) in messages.iter().enumerate() {
            let attr = |name: MessageSystemAttributeName| {
                m.attributes().and_then(|a| a.get(&name).cloned())
            };
            let group = attr(MessageSystemAttributeName::MessageGroupId)
                .unwrap_or_else(|| "redrive".to_owned());
            let original =
                attr(MessageSystemAttributeName::MessageDeduplicationId).unwrap_or_default();
            // A new deduplication id: SQS would drop a copy carrying the original
            // id within its 5-minute window, and the message would then be deleted
            // below and lost.
            let dedup = hex::encode(Sha256::digest(
                format!("{original}:redrive:{}", fresh_id()).as_bytes(),
            ));
            sends.push(
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_group_id(group)
                    .message_deduplication_id(dedup)
                    .message_body(m.body().unwrap_or_default())
                    .build()
                    .map_err(|e| format!("cannot build the batch: {e}"))?,
            );
        }
        // Sent, then deleted: a crash in between leaves a duplicate, which the
        // processor acknowledges, never a loss. Only what was sent is deleted.
        let sent = sqs
            .send_message_batch()
            .queue_url(queue)
            .set_entries(Some(sends))
            .send()
            .await
            .map_err(|e| format!("cannot send to the events queue: {}", describe(&e)))?;
        let mut deletes = Vec::new();
        for ok in sent.successful() {
            let Some(m) = ok.id().parse::<usize>().ok().and_then(|i| messages.get(i)) else {
                continue;
            };
            deletes.push(
                DeleteMessageBatchRequestEntry::builder()
                    .id(ok.id())
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .build()
                    .map_err(|e| format!("cannot build the batch: {e}"))?,
            );
        }
        if !deletes.is_empty() {
            let deleted = sqs
                .delete_message_batch()
                .queue_url(dlq)
                .set_entries(Some(deletes))
                .send()
                .await
                .map_err(|e| format!("cannot delete from {dlq}: {}", describe(&e)))?;
            if let Some(f) = deleted.failed().first() {
                eprintln!(
                    "redrive: {} message(s) sent but not deleted from the dead-letter queue ({}): they will be moved again, and the processor skips the duplicates",
                    deleted.failed().len(),
                    f.message().unwrap_or_else(|| f.code())
                );
            }
        }
        moved += sent.successful().len() as u64;
        left = left.saturating_sub(messages.len());
        eprintln!("redrive: {moved} of {total} moved");
        if let Some(f) = sent.failed().first() {
            return Err(format!(
                "the events queue refused {} message(s) ({}); they stay in the dead-letter queue ({moved} moved)",
                sent.failed().len(),
                f.message().unwrap_or_else(|| f.code())
            )
            .into());
        }
    }
    Ok(moved)
}

pub async fn set_secret(env: &Env, sdk: &SdkConfig, field: SecretField) -> Result<()> {
    let value = read_stdin(field.key()).await?;
    update_secret(env, sdk, |secret| {
        secret.insert(field.key().to_owned(), Value::String(value));
        Ok(())
    })
    .await?;
    println!("stored {}", field.key());
    Ok(())
}

pub(crate) async fn read_stdin(what: &str) -> Result<String> {
    eprintln!("reading {what} from stdin (end with Ctrl-D)...");
    let mut text = String::new();
    tokio::io::stdin().read_to_string(&mut text).await?;
    let text = text.trim().to_owned();
    if text.is_empty() {
        return Err(format!("{what} is empty").into());
    }
    Ok(text)
}

/// Read-modify-write of the JSON secret; the values are never printed.
async fn update_secret(
    env: &Env,
    sdk: &SdkConfig,
    change: impl FnOnce(&mut Map<String, Value>) -> Result<()>,
) -> Result<()> {
    let arn = env.require("SECRET_ARN", FROM_OUTPUTS)?;
    let client = aws_sdk_secretsmanager::Client::new(sdk);
    let current = client
        .get_secret_value()
        .secret_id(&arn)
        .send()
        .await
        .map_err(|e| format!("cannot read the secret: {}", describe(&e)))?;
    let mut secret: Map<String, Value> = match current.secret_string() {
        Some(s) if !s.trim().is_empty() => serde_json::from_str(s)
            .map_err(|_| "the secret is not a JSON object; see the README for its shape")?,
        _ => Map::new(),
    };
    change(&mut secret)?;
    client
        .put_secret_value()
        .secret_id(&arn)
        .secret_string(Value::Object(secret).to_string())
        .send()
        .await
        .map_err(|e| format!("cannot write the secret: {}", describe(&e)))?;
    Ok(())
}

/// The SDK error with its service message, without the debug dump.
pub(crate) fn describe<E: std::error::Error + 'static>(e: &E) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
