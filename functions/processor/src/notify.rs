//! One-time notifications: the `notify` command's fan-out and each recipient's send.
//!
//! A notify command pages through the ACTIVE tokens of its Page and topic and puts
//! one `notify_one` message per token on the events queue, so that a topic with
//! 100,000 waiting people depends on no single invocation. Near the deadline it
//! queues a follow-up command that continues where it stopped. Every step can run
//! twice: the per-recipient send spends its token with a conditional write first,
//! so whatever is queued twice, each token carries at most one message.

use std::time::SystemTime;

use event_queue::{EventQueue, OutgoingMessage, RetryPolicy};
use messenger_store::{SpendRefused, Store, TokenRef, TokenStore};
use messenger_types::queue::QueueMessageType;
use messenger_types::routing::thread_group;
use messenger_types::send::{OutgoingMessage as Message, SendRequest};
use messenger_types::{NotifyCommand, NotifyOne};
use sha2::{Digest, Sha256};

use crate::bot::Bot;
use crate::policy::{self, Basis, Planned, TokenState};
use crate::{MIN_TIME_PER_MESSAGE, Messenger, Outcome, ProcessError, Processor, time_left};

/// Tokens read from the index per query.
pub const FAN_OUT_PAGE: i32 = 100;

fn digest(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    hex::encode(h.finalize())
}

impl<S: Store + TokenStore, M: Messenger, B: Bot, Q: EventQueue + Sync> Processor<S, M, B, Q> {
    /// Queues one `notify_one` per ACTIVE token of the command's Page and topic.
    pub async fn fan_out(
        &self,
        command: &NotifyCommand,
        message_id: &str,
        deadline: Option<SystemTime>,
    ) -> Result<Outcome, ProcessError> {
        let notify_id = command
            .notify_id
            .clone()
            .unwrap_or_else(|| message_id.to_owned());
        let mut after = command.after.clone();
        let mut queued = 0usize;
        loop {
            if deadline.is_some_and(|d| time_left(d) < MIN_TIME_PER_MESSAGE) {
                let follow_up = NotifyCommand {
                    after: after.clone(),
                    notify_id: Some(notify_id.clone()),
                    ..command.clone()
                };
                let body = serde_json::to_string(&follow_up).unwrap_or_default();
                let message = OutgoingMessage {
                    group_id: format!(
                        "notify:{}",
                        digest(&[command.page_id.as_str(), &command.topic])[..32].to_owned()
                    ),
                    dedup_id: digest(&[&notify_id, after.as_deref().unwrap_or("")]),
                    body,
                    kind: "notify",
                };
                event_queue::send_all(&self.queue, &[message], &RetryPolicy::default()).await?;
                let outcome = format!(
                    "notify {notify_id}: {queued} recipients queued; a follow-up continues"
                );
                tracing::info!(%outcome, "notify fan-out paused before the deadline");
                return Ok(Outcome::Processed(outcome));
            }
            let (tokens, next) = self
                .store
                .active_tokens(
                    &command.page_id,
                    &command.topic,
                    after.as_deref(),
                    FAN_OUT_PAGE,
                )
                .await?;
            // Identical commands (same Page, topic and message) sent twice within
            // SQS's five-minute window collapse into one message per token; the
            // token's conditional spend is what guarantees one send in any case.
            let message_digest =
                digest(&[&serde_json::to_string(&command.message).unwrap_or_default()]);
            let work: Vec<OutgoingMessage> = tokens
                .iter()
                .map(|t| {
                    let one = NotifyOne {
                        kind: QueueMessageType::NotifyOne,
                        notify_id: notify_id.clone(),
                        page_id: t.page.clone(),
                        psid: t.psid.clone(),
                        token_sk: t.sk.clone(),
                        topic: command.topic.clone(),
                        message: command.message.clone(),
                    };
                    OutgoingMessage {
                        group_id: thread_group(t.page.as_str(), t.psid.as_str()),
                        dedup_id: digest(&[
                            t.page.as_str(),
                            &command.topic,
                            &t.sk,
                            &message_digest,
                        ]),
                        body: serde_json::to_string(&one).unwrap_or_default(),
                        kind: "notify_one",
                    }
                })
                .collect();
            if !work.is_empty() {
                event_queue::send_all(&self.queue, &work, &RetryPolicy::default()).await?;
            }
            queued += work.len();
            match next {
                Some(n) => after = Some(n),
                None => {
                    let outcome = format!(
                        "notify {notify_id}: {queued} recipients queued for Page {} topic {:?}",
                        command.page_id, command.topic
                    );
                    tracing::info!(page_id = %command.page_id, recipients = queued, "notify fan-out done");
                    return Ok(Outcome::Processed(outcome));
                }
            }
        }
    }

    /// Sends one recipient's notification: spend the token, check the rules, send.
    pub async fn notify_one(&self, one: &NotifyOne) -> Result<Outcome, ProcessError> {
        let at = TokenRef {
            page: one.page_id.clone(),
            psid: one.psid.clone(),
            sk: one.token_sk.clone(),
        };
        let now = (self.clock)();
        // Everything that can fail before the send is done before the spend, so a
        // failure here leaves the token untouched for the retry.
        let thread = self
            .store
            .thread(&messenger_store::ThreadKey::psid(
                one.page_id.clone(),
                one.psid.clone(),
            ))
            .await?;
        let token = match self.store.spend_token(&at, &one.notify_id, now).await? {
            Ok(token) => token,
            Err(refused) => {
                let why = match refused {
                    SpendRefused::Unknown => "no such token".to_owned(),
                    SpendRefused::NotActive(status) => format!("token is {}", status.as_str()),
                    SpendRefused::Expired => "token expired".to_owned(),
                };
                tracing::info!(page_id = %one.page_id, %why, "notification not sent");
                return Ok(Outcome::Processed(format!("not sent: {why}")));
            }
        };
        let basis = Basis::OneTimeToken(TokenState {
            used: false,
            expires_at: token.expires_at,
        });
        let refusal = policy::check(&Planned {
            now,
            sending_page: &one.page_id,
            recipient_page: &token.page,
            thread: &thread,
            basis: &basis,
        });
        let page_token = self.tokens.get(&one.page_id);
        if let Err(refusal) = &refusal {
            self.store.unspend_token(&token, &one.notify_id).await?;
            tracing::warn!(page_id = %one.page_id, %refusal, "notification refused by policy; token kept");
            return Ok(Outcome::Processed(format!("refused: {refusal}")));
        }
        let Some(page_token) = page_token else {
            self.store.unspend_token(&token, &one.notify_id).await?;
            tracing::error!(page_id = %one.page_id, "no Page access token for this Page");
            return Ok(Outcome::Processed(format!(
                "not sent: no Page access token for Page {}",
                one.page_id
            )));
        };
        let request = SendRequest::one_time_notification(
            token.token.clone(),
            Message::from_map(one.message.clone()),
        );
        match self.graph.send(&one.page_id, page_token, &request).await {
            Ok(sent) => Ok(Outcome::Processed(format!(
                "sent {}",
                sent.message_id.as_deref().unwrap_or("(no message id)")
            ))),
            Err(e) if e.is_retryable() && !crate::may_have_been_delivered_pub(&e) => {
                // Meta answered with a passing error: nothing went out; the token
                // stays usable for the retry.
                self.store.unspend_token(&token, &one.notify_id).await?;
                Err(ProcessError::Graph(e))
            }
            Err(e) if e.is_retryable() => {
                tracing::warn!(page_id = %one.page_id, error = %e, "notification may have gone out; token kept spent");
                Ok(Outcome::Processed(format!(
                    "outcome unknown, token kept spent: {e}"
                )))
            }
            Err(e) => {
                self.store
                    .retire_token(&at, &one.notify_id, &e.to_string())
                    .await?;
                tracing::warn!(page_id = %one.page_id, error = %e, "Meta refused the notification; token retired");
                Ok(Outcome::Processed(format!(
                    "Graph error: {e}; token retired"
                )))
            }
        }
    }
}
