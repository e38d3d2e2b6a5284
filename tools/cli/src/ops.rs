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

/// The webhook fields the backend handles (MESSENGER.md §2).
pub const WEBHOOK_FIELDS: &str = "messages,messaging_postbacks,messaging_optins,messaging_referrals,message_deliveries,message_reads,message_reactions,message_edits,messaging_account_linking,messaging_handovers,standby,messaging_policy_enforcement";

#[derive(Debug, clap::Subcommand)]
pub enum QuarantineCommand {
    /// List kept bodies (key, size, time, reason), newest day first.
    List {
        /// Only this UTC day (YYYY-MM-DD).
        #[arg(long)]
        day: Option<String>,
    },
    /// Print one kept body, byte for byte.
    Get { key: String },
}

#[derive(Debug, clap::Subcommand)]
pub enum DlqCommand {
    /// Count the messages waiting in the dead-letter queue.
    Count,
    /// Move dead-lettered messages back to the events queue, each in its own group
    /// and order, once the cause is fixed. The processor's deduplication makes a
    /// message that was in fact processed a no-op.
    Redrive {
        /// Stop after this many messages.
        #[arg(long, default_value_t = 10_000)]
        max: usize,
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
        QuarantineCommand::List { day } => {
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
            let mut count = 0;
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| format!("cannot list {bucket}: {}", describe(&e)))?;
                for object in page.contents() {
                    let key = object.key().unwrap_or_default();
                    let reason = s3
                        .head_object()
                        .bucket(&bucket)
                        .key(key)
                        .send()
                        .await
                        .ok()
                        .and_then(|h| h.metadata().and_then(|m| m.get("reason").cloned()))
                        .unwrap_or_default();
                    println!(
                        "{key}\t{} bytes\t{}\t{reason}",
                        object.size().unwrap_or(0),
                        object
                            .last_modified()
                            .map(|t| t.to_string())
                            .unwrap_or_default()
                    );
                    count += 1;
                }
            }
            eprintln!("{count} quarantined bodies under s3://{bucket}/{prefix}");
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
async fn dead_letter_queue(sqs: &aws_sdk_sqs::Client, queue: &str) -> Result<String> {
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
        DlqCommand::Count => {
            let attributes = sqs
                .get_queue_attributes()
                .queue_url(&dlq)
                .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
                .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
                .send()
                .await
                .map_err(|e| format!("cannot read the dead-letter queue: {}", describe(&e)))?;
            let get = |name| {
                attributes
                    .attributes()
                    .and_then(|a| a.get(&name).cloned())
                    .unwrap_or_else(|| "?".to_owned())
            };
            println!(
                "{dlq}: {} waiting, {} in flight",
                get(QueueAttributeName::ApproximateNumberOfMessages),
                get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            );
            Ok(())
        }
        DlqCommand::Redrive { max } => {
            let mut moved = 0;
            while moved < max {
                let got = sqs
                    .receive_message()
                    .queue_url(&dlq)
                    .max_number_of_messages(10)
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
                for m in messages.iter().take(max - moved) {
                    let attr = |name: MessageSystemAttributeName| {
                        m.attributes().and_then(|a| a.get(&name).cloned())
                    };
                    let group = attr(MessageSystemAttributeName::MessageGroupId)
                        .unwrap_or_else(|| "redrive".to_owned());
                    let original = attr(MessageSystemAttributeName::MessageDeduplicationId)
                        .unwrap_or_default();
                    // A new deduplication id: SQS would drop a copy carrying the
                    // original id within its 5-minute window, and the message would
                    // then be deleted below and lost.
                    let dedup = hex::encode(Sha256::digest(
                        format!("{original}:redrive:{}", fresh_id()).as_bytes(),
                    ));
                    // Sent, then deleted: a crash in between leaves a duplicate,
                    // which the processor acknowledges, never a loss.
                    sqs.send_message()
                        .queue_url(&queue)
                        .message_group_id(&group)
                        .message_deduplication_id(dedup)
                        .message_body(m.body().unwrap_or_default())
                        .send()
                        .await
                        .map_err(|e| {
                            format!("cannot send to the events queue: {}", describe(&e))
                        })?;
                    sqs.delete_message()
                        .queue_url(&dlq)
                        .receipt_handle(m.receipt_handle().unwrap_or_default())
                        .send()
                        .await
                        .map_err(|e| format!("cannot delete from {dlq}: {}", describe(&e)))?;
                    moved += 1;
                }
            }
            println!("moved {moved} message(s) from the dead-letter queue to the events queue");
            Ok(())
        }
    }
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
