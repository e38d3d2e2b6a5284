//! One-time notifications: the `notify` command's fan-out and each person's send.
//!
//! A notify command pages through the ACTIVE tokens of its Page and topic and puts
//! one `notify_one` message per person on the events queue (a person who tapped
//! "Notify me" twice is listed twice, and queued once per page, under one
//! deduplication id), so that a topic with 100,000 waiting people depends on no
//! single invocation. Near the deadline it queues a follow-up command that
//! continues where it stopped. Every step can run twice: the per-person send reads
//! the person's tokens, does nothing if this notification already spent one of
//! them, and otherwise spends their oldest ACTIVE token of the topic with a
//! conditional write first, so whatever is queued twice, a person gets a
//! notification once and each token carries at most one message.

use std::time::SystemTime;

use conversation::otn::{AlreadyNotified, tokens_for_notification, unfinished_send};
use event_queue::{EventQueue, OutgoingMessage, RetryPolicy};
use messenger_store::{PageRegistry, SpendRefused, Store, StoredToken, TokenRef, TokenStore};
use messenger_types::queue::QueueMessageType;
use messenger_types::routing::thread_group;
use messenger_types::send::{OutgoingMessage as Message, SendRequest};
use messenger_types::{NotifyCommand, NotifyOne};
use sha2::{Digest, Sha256};

use crate::bot::Bot;
use crate::policy::Refusal;
use crate::policy::{self, Basis, Planned, TokenState};
use crate::{MessageOutcome, Messenger, Outcome, ProcessError, Processor, TokenFate, time_left};

/// Tokens read from the index per query.
pub const FAN_OUT_PAGE: i32 = 100;
/// The time a fan-out allows itself when the invocation's deadline is unknown or
/// already past (cargo-lambda's emulator hands out a deadline in 1970): the
/// processor's timeout, as if the invocation had just started.
pub const FALLBACK_BUDGET: std::time::Duration = std::time::Duration::from_secs(60);

/// Checks a notify command's `message` against the Send API's shape, so that a bad
/// command is refused once instead of failing, and costing, every token of its topic.
pub fn check_message(message: &serde_json::Map<String, serde_json::Value>) -> Result<(), String> {
    for key in message.keys() {
        if !matches!(
            key.as_str(),
            "text" | "attachment" | "quick_replies" | "metadata"
        ) {
            return Err(format!("unknown field {key:?} in message"));
        }
    }
    match (message.get("text"), message.get("attachment")) {
        (Some(serde_json::Value::String(t)), None) => {
            let chars = t.chars().count();
            if chars == 0 || chars > 2000 {
                return Err(format!("text must have 1 to 2000 characters, not {chars}"));
            }
        }
        (None, Some(serde_json::Value::Object(_))) => {}
        _ => return Err("message needs either a text string or an attachment object".to_owned()),
    }
    if let Some(q) = message.get("quick_replies")
        && q.as_array().is_none_or(|a| a.len() > 13)
    {
        return Err("quick_replies must be an array of at most 13".to_owned());
    }
    Ok(())
}

/// A name for one spend of a token, unique to this attempt: an unspend (or a retire)
/// only ever undoes its own spend, never one a duplicate copy made meanwhile.
pub(crate) fn spend_id(notify_id: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    format!(
        "{notify_id}/{}-{}-{}",
        std::process::id(),
        messenger_types::Timestamp::now().as_millis(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

fn digest(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    hex::encode(h.finalize())
}

impl<S: Store + TokenStore + PageRegistry, M: Messenger, B: Bot, Q: EventQueue + Sync>
    Processor<S, M, B, Q>
{
    /// Queues one `notify_one` per ACTIVE token of the command's Page and topic.
    pub async fn fan_out(
        &self,
        command: &NotifyCommand,
        message_id: &str,
        deadline: Option<SystemTime>,
    ) -> Result<MessageOutcome, ProcessError> {
        let notify_id = command
            .notify_id
            .clone()
            .unwrap_or_else(|| message_id.to_owned());
        if let Err(reason) = check_message(&command.message) {
            tracing::error!(page_id = %command.page_id, %reason, "notify command refused");
            return Ok(MessageOutcome::NotifyRefused { reason });
        }
        let started = SystemTime::now();
        let deadline = match deadline {
            Some(d) if d > started => d,
            _ => started + FALLBACK_BUDGET,
        };
        let topic_key = conversation::otn::topic_key(&command.topic);
        let mut after = command.after.clone();
        let mut queued = 0usize;
        let mut refused = 0usize;
        let mut first_page = true;
        loop {
            // At least one page per invocation: a follow-up always starts further
            // on than the command it continues, so its dedup id differs too.
            if !first_page && time_left(deadline) < crate::budget::MIN_TIME_PER_FAN_OUT_PAGE {
                let follow_up = NotifyCommand {
                    after: after.clone(),
                    notify_id: Some(notify_id.clone()),
                    ..command.clone()
                };
                let body = serde_json::to_string(&follow_up).unwrap_or_default();
                let message = OutgoingMessage {
                    group_id: format!(
                        "notify:{}",
                        digest(&[command.page_id.as_str(), &topic_key])[..32].to_owned()
                    ),
                    dedup_id: digest(&[&notify_id, after.as_deref().unwrap_or("")]),
                    body,
                    kind: "notify",
                };
                event_queue::send_all(&self.queue, &[message], &RetryPolicy::default()).await?;
                tracing::info!(
                    %notify_id,
                    recipients = queued,
                    refused_by_queue = refused,
                    "notify fan-out paused before the deadline; a follow-up continues"
                );
                return Ok(MessageOutcome::NotifyQueued {
                    recipients: queued,
                    refused_by_queue: refused,
                    follow_up: true,
                });
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
            // One message per person: the same person listed again (another of
            // their tokens, here or on a later page) gets the same deduplication
            // id, and identical commands (same Page, topic and message) sent twice
            // within SQS's five-minute window collapse into one message per
            // person. What guarantees one send per person in any case is the send
            // itself: it finds the token this notification already spent.
            let message_digest =
                digest(&[&serde_json::to_string(&command.message).unwrap_or_default()]);
            let mut seen = std::collections::HashSet::new();
            let work: Vec<OutgoingMessage> = tokens
                .iter()
                .filter(|t| seen.insert(t.psid.clone()))
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
                            &topic_key,
                            t.psid.as_str(),
                            &message_digest,
                        ]),
                        body: serde_json::to_string(&one).unwrap_or_default(),
                        kind: "notify_one",
                    }
                })
                .collect();
            first_page = false;
            if !work.is_empty() {
                let rejected =
                    event_queue::send_all(&self.queue, &work, &RetryPolicy::default()).await?;
                if !rejected.is_empty() {
                    tracing::error!(
                        count = rejected.len(),
                        "the queue refused per-recipient notify work"
                    );
                }
                refused += rejected.len();
                queued += work.len() - rejected.len();
            }
            match next {
                Some(n) => after = Some(n),
                None => {
                    tracing::info!(
                        %notify_id,
                        page_id = %command.page_id,
                        recipients = queued,
                        refused_by_queue = refused,
                        "notify fan-out done"
                    );
                    return Ok(MessageOutcome::NotifyQueued {
                        recipients: queued,
                        refused_by_queue: refused,
                        follow_up: false,
                    });
                }
            }
        }
    }

    /// Sends one person's notification: check the rules, spend their oldest token
    /// of the topic, send. [`MessageOutcome::Duplicate`] when this notification
    /// already spent one of their tokens.
    pub async fn notify_one(&self, one: &NotifyOne) -> Result<MessageOutcome, ProcessError> {
        let result = self.notify_one_outcome(one).await;
        match &result {
            Ok(Some(outcome)) => crate::counts::outcome(outcome),
            Err(ProcessError::Graph(e)) => crate::counts::graph_error(e.class),
            Ok(None) | Err(_) => {}
        }
        if let Ok(Some(outcome)) = &result {
            let thread = messenger_store::ThreadKey::psid(one.page_id.clone(), one.psid.clone());
            let events: Vec<_> = crate::publish::action_event(&thread, outcome, None)
                .into_iter()
                .collect();
            // Not handed back on failure: the token is spent, so a redelivery would
            // find it spent by this notification and publish nothing.
            if let Err(error) = crate::publish::publish(&*self.bus, events).await {
                tracing::error!(page_id = %one.page_id, %error, alert = true, "a notification's outcome could not be published");
            }
        }
        result.map(|outcome| outcome.map_or(MessageOutcome::Duplicate, MessageOutcome::Notified))
    }

    /// What came of one person's notification; `None`: it reached them before.
    async fn notify_one_outcome(&self, one: &NotifyOne) -> Result<Option<Outcome>, ProcessError> {
        let now = (self.clock)();
        // Everything that can refuse or fail before the send happens before the
        // spend, so that a refusal or a failure here leaves the tokens untouched.
        let page_token = match self.page_token(&one.page_id) {
            Ok(token) => token,
            Err(refused) => return Ok(Some(refused)),
        };
        let thread = self
            .store
            .thread(&messenger_store::ThreadKey::psid(
                one.page_id.clone(),
                one.psid.clone(),
            ))
            .await?;
        // The token's own state (unused, unexpired) is what the spend below checks,
        // in the same write that claims it.
        let basis = Basis::OneTimeToken(TokenState {
            used: false,
            expires_at: messenger_types::Timestamp::from_millis(i64::MAX),
        });
        if let Err(reason) = policy::check(&Planned {
            now,
            sending_page: &one.page_id,
            recipient_page: &one.page_id,
            thread: &thread,
            basis: &basis,
            message: None,
            app_is_default: self.routing.app_is_default,
        }) {
            tracing::warn!(page_id = %one.page_id, reason = reason.code(), "notification refused by policy; token kept");
            return Ok(Some(Outcome::Refused { reason }));
        }

        // The person's tokens, read consistently: the fan-out's index may be behind,
        // and `token_sk` (the token the fan-out saw first) may have been spent since.
        let held = self.store.tokens_held(&one.page_id, &one.psid).await?;
        let message = Message::from_map(one.message.clone());
        if let Some(token) = unfinished_send(&held, &one.topic, &one.notify_id) {
            // This notification spent the token and its send has no recorded fate:
            // the attempt crashed (or its spend's answer was lost). Sending with the
            // same token again cannot reach the person twice: Meta carries one
            // message per token and refuses a second.
            let spend = token.spend_id.clone().unwrap_or_default();
            tracing::warn!(page_id = %one.page_id, notify_id = %one.notify_id, "resuming a notification whose send has no recorded fate");
            return self
                .send_spent(token, &spend, &page_token, message, true)
                .await
                .map(Some);
        }
        let candidates = match tokens_for_notification(&held, &one.topic, &one.notify_id) {
            Ok(candidates) => candidates,
            Err(AlreadyNotified) => {
                tracing::info!(page_id = %one.page_id, notify_id = %one.notify_id, "this notification reached the person before");
                return Ok(None);
            }
        };
        let spend = spend_id(&one.notify_id);
        for (tried, token) in candidates.into_iter().enumerate() {
            // The next token (the one before was spent meanwhile): a send's time.
            if tried > 0 && !crate::budget::allows(crate::MIN_TIME_PER_ACTION) {
                return Err(ProcessError::OutOfTime);
            }
            let at = TokenRef {
                page: token.page.clone(),
                psid: token.psid.clone(),
                sk: token.sk.clone(),
            };
            match self
                .spend_and_send(&at, &spend, &page_token, message.clone(), now)
                .await?
            {
                Ok(outcome) => return Ok(Some(outcome)),
                // Spent or expired since it was read (expired there and then): the next.
                Err(refused) => {
                    tracing::info!(page_id = %one.page_id, ?refused, "token not spendable; trying the next");
                }
            }
        }
        tracing::info!(page_id = %one.page_id, "no token of the topic to send with");
        Ok(Some(Outcome::Refused {
            reason: Refusal::NoTokenForTopic {
                topic: one.topic.clone(),
            },
        }))
    }

    /// Spends the token at `at` and sends `message` with it. A send that certainly
    /// did not go out and is not the token's fault gives the token back; one Meta
    /// refused because of the token retires it; one whose answer was lost keeps it
    /// spent. `Err(SpendRefused)` inside: the token could not be spent (nothing sent).
    ///
    /// `spend` is the spend's request token: a spend DynamoDB applied but whose
    /// answer was lost is recognised by it when the retry finds the token USED.
    /// From the spend until the send's fate is written the token is "sending"; a
    /// crash in between is resolved by a redelivery (which sends with the same
    /// token again) or, past the spend's lease, by the sweeper (which gives it back).
    pub(crate) async fn spend_and_send(
        &self,
        at: &TokenRef,
        spend: &str,
        page_token: &secrecy::SecretString,
        message: Message,
        now: messenger_types::Timestamp,
    ) -> Result<Result<Outcome, SpendRefused>, ProcessError> {
        // A spend DynamoDB applied and whose answer was lost is retried here too
        // (besides the SDK's own retries): the retry recognises it by `spend`.
        let token =
            match crate::persist("spend the token", || self.store.spend_token(at, spend, now))
                .await?
            {
                Ok(token) => token,
                Err(refused) => return Ok(Err(refused)),
            };
        self.send_spent(&token, spend, page_token, message, false)
            .await
            .map(Ok)
    }

    /// Sends `message` with a token `spend` holds, and records the send's fate on
    /// the token. `resumed`: an earlier attempt of the same spend may have sent
    /// already, so a refusal of the token by Meta means it may have gone out.
    async fn send_spent(
        &self,
        token: &StoredToken,
        spend: &str,
        page_token: &secrecy::SecretString,
        message: Message,
        resumed: bool,
    ) -> Result<Outcome, ProcessError> {
        let page = &token.page;
        let at = TokenRef {
            page: token.page.clone(),
            psid: token.psid.clone(),
            sk: token.sk.clone(),
        };
        let request = SendRequest::one_time_notification(token.token.clone(), message);
        let finish = || async {
            // Left "sending", the sweeper would give back a token that carried a
            // message: harmless (Meta refuses its second use) but untidy.
            if let Err(error) =
                crate::persist("record the send", || self.store.finish_spend(&at, spend)).await
            {
                tracing::error!(page_id = %page, %error, "a notification's send could not be recorded on its token");
            }
        };
        match self.graph.send(page, page_token, &request).await {
            Ok(sent) => {
                finish().await;
                Ok(Outcome::Sent {
                    message_id: sent.message_id,
                    messaging_type: None,
                    tag: None,
                })
            }
            Err(e) if e.outcome_unknown => {
                crate::counts::graph_error(e.class);
                // The request went out and no answer came: it may have been
                // delivered. A token is used at most once, so it stays spent.
                tracing::warn!(page_id = %page, error = %e, "notification may have gone out; token kept spent");
                finish().await;
                Ok(Outcome::MaybeSent)
            }
            Err(e) if e.is_retryable() || keeps_the_token(&e) => {
                // Meta answered (or the request never left): nothing went out, and
                // the token is not at fault, so it stays usable.
                // Losing this write would burn the token with nothing sent.
                crate::persist("give the token back", || {
                    self.store.unspend_token(token, spend)
                })
                .await
                .inspect_err(|error| tracing::error!(page_id = %page, %error, alert = true, "a token spent for a send that did not go out could not be given back"))?;
                if e.is_retryable() {
                    return Err(ProcessError::Graph(e));
                }
                self.page_refused(page, &e).await;
                tracing::error!(page_id = %page, error = %e, alert = true, "Meta refused the Page's notification; token kept");
                Ok(with_token(&e, TokenFate::Kept))
            }
            Err(e) => {
                self.store.retire_token(&at, spend, &e.to_string()).await?;
                if resumed {
                    // Most likely the crashed attempt's message went out and Meta
                    // refuses the token's second use.
                    tracing::warn!(page_id = %page, error = %e, "Meta refused a resumed notification's token: the first attempt may have sent it");
                    crate::counts::graph_error(e.class);
                    return Ok(Outcome::MaybeSent);
                }
                tracing::warn!(page_id = %page, error = %e, "Meta refused the notification; token retired");
                Ok(with_token(&e, TokenFate::Retired))
            }
        }
    }
}

/// Meta's refusal of a notification, with what became of its token.
fn with_token(e: &graph_api::GraphError, fate: TokenFate) -> Outcome {
    Outcome::GraphRefused {
        class: e.class,
        code: e.code,
        subcode: e.subcode,
        token: Some(fate),
    }
}

/// Errors that are not the token's fault, so it is kept: errors about the Page or
/// its app (kept for when the Page is fixed), and an invalid parameter (code 100)
/// whose message does not mention a token, which is the message's fault: one bad
/// notification must not retire every token of its topic. Any other permanent
/// refusal (the token unknown, spent or expired at Meta, the person gone) retires
/// the token.
fn keeps_the_token(e: &graph_api::GraphError) -> bool {
    match e.class {
        graph_api::ErrorClass::TokenInvalid
        | graph_api::ErrorClass::PermissionMissing
        | graph_api::ErrorClass::PageRestricted
        | graph_api::ErrorClass::ThreadOwnedByOther => true,
        graph_api::ErrorClass::InvalidRequest => !e.message.to_ascii_lowercase().contains("token"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn notify_messages_are_checked_before_any_token_is_spent() {
        assert!(check_message(&map(serde_json::json!({"text": "Back in stock"}))).is_ok());
        assert!(check_message(&map(serde_json::json!({"attachment": {"type": "image", "payload": {"url": "https://example.invalid/a.jpg"}}}))).is_ok());
        assert!(check_message(&map(serde_json::json!({"text": "ü".repeat(2000)}))).is_ok());
        for bad in [
            serde_json::json!({}),
            serde_json::json!({"text": ""}),
            serde_json::json!({"text": "x".repeat(2001)}),
            serde_json::json!({"text": 5}),
            serde_json::json!({"text": "a", "attachment": {}}),
            serde_json::json!({"txt": "typo"}),
            serde_json::json!({"text": "a", "quick_replies": vec![serde_json::json!({}); 14]}),
        ] {
            assert!(check_message(&map(bad.clone())).is_err(), "{bad}");
        }
    }
}
