//! Who may put what on the events queue. SQS stamps every message with its sender's
//! unique id (`SenderId`: `AROA…:<session>` for a role, `AIDA…` for a user), which
//! the sender cannot choose. The queue policy (template: `EventsQueuePolicy`) lets
//! only the stack's roles and the `CommandSenderArns` principals send at all; this
//! module checks, per message, that a type only the stack writes came from the
//! stack:
//!
//! | type | accepted from |
//! |---|---|
//! | `event` (a Meta event, as the webhook splits a delivery) | the webhook's role, the processor's own role, `REPLAY_SENDER_IDS` |
//! | `notify_one` (one person's share of a fan-out) | the processor's own role, `REPLAY_SENDER_IDS` |
//! | commands (`send`, `forget`, thread control, `notify`) | any sender the queue policy admits: the webhook (`POST /commands`), the processor, `CommandSenderArns` |
//!
//! A message refused here is acknowledged (taken off the queue: sending it again
//! cannot make it trusted), counted (`MessagesRefused`, `Reason`), logged with the
//! sender's id (never the session name, which can be a person's name, nor the
//! body), and returned as [`MessageOutcome::SenderRefused`]. Nothing of it runs.
//!
//! A copy the processor put on the dead-letter queue itself ([`crate::dead_letter`])
//! and that SQS redrove keeps the processor's `SenderId`: it is judged by its first
//! sender, which the copy carries in the `source_sender_id` attribute.
//!
//! `WEBHOOK_SENDER_ID` unset (local runs, moto, tests): no check; said once at start.

use aws_lambda_events::sqs::SqsMessage;
use messenger_types::QueueMessage;
use signals::Metric;

use crate::dead_letter::SOURCE_SENDER_ID;
use crate::{ConfigError, Lookup, MessageOutcome};

/// The role id of the webhook (the template: `!GetAtt WebhookFunctionRole.RoleId`).
pub const WEBHOOK_SENDER_ID: &str = "WEBHOOK_SENDER_ID";
/// The processor's own role id (`!GetAtt ProcessorFunctionRole.RoleId`): the
/// fan-out's `notify_one` work and replayed parked messages come from it.
pub const PROCESSOR_SENDER_ID: &str = "PROCESSOR_SENDER_ID";
/// Further unique ids (comma list) allowed to send the stack's own types again: the
/// operators who run `messenger page replay` / `page store-token` (replaying parked
/// messages) and `messenger dlq redrive`.
pub const REPLAY_SENDER_IDS: &str = "REPLAY_SENDER_IDS";

/// The ids trusted to send what only the stack writes; unchecked when unset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Senders {
    trusted: Option<Trusted>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Trusted {
    webhook: String,
    processor: Option<String>,
    replay: Vec<String>,
}

/// Why a message was refused for its sender. [`SenderRefusal::code`] is the metric's
/// `Reason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SenderRefusal {
    /// A type only the stack's roles write, sent by another principal (its unique
    /// id, without the session name).
    Untrusted {
        kind: &'static str,
        principal: String,
    },
    /// The message carries no `SenderId` (SQS always sets one): nobody vouches for it.
    NoSenderId { kind: &'static str },
}

impl SenderRefusal {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Untrusted { .. } => "untrusted_sender",
            Self::NoSenderId { .. } => "no_sender_id",
        }
    }
}

/// What a message's type asks of its sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Needs {
    /// Written by the webhook (or replayed by the stack).
    Webhook,
    /// Written by the processor itself (or replayed).
    Processor,
    /// Whoever the queue policy admits.
    Admitted,
}

fn needs(message: &QueueMessage) -> (&'static str, Needs) {
    match message {
        QueueMessage::Event(_) => ("event", Needs::Webhook),
        QueueMessage::NotifyOne(_) => ("notify_one", Needs::Processor),
        QueueMessage::Notify(_) => ("notify", Needs::Admitted),
        // It names a Page; what it replays comes from the table.
        QueueMessage::ReplayParked(_) => ("replay_parked", Needs::Admitted),
        QueueMessage::Command(_) => ("command", Needs::Admitted),
    }
}

impl Senders {
    /// Checks on `WEBHOOK_SENDER_ID`; `PROCESSOR_SENDER_ID` and `REPLAY_SENDER_IDS`
    /// add to it. Either of those without `WEBHOOK_SENDER_ID` is a mistake, refused.
    pub fn from_env(env: &impl Lookup) -> Result<Self, ConfigError> {
        let id = |var| -> Result<Option<String>, ConfigError> {
            let ids = app_config::list(env, var)?;
            match ids.as_slice() {
                [] => Ok(None),
                [one] => Ok(Some(one.clone())),
                _ => Err(ConfigError::Invalid {
                    var,
                    reason: "must be one role id".to_owned(),
                }),
            }
        };
        let webhook = id(WEBHOOK_SENDER_ID)?;
        let processor = id(PROCESSOR_SENDER_ID)?;
        let replay = app_config::list(env, REPLAY_SENDER_IDS)?;
        match webhook {
            Some(webhook) => Ok(Self {
                trusted: Some(Trusted {
                    webhook,
                    processor,
                    replay,
                }),
            }),
            None if processor.is_some() || !replay.is_empty() => {
                Err(ConfigError::Missing(WEBHOOK_SENDER_ID))
            }
            None => Ok(Self::default()),
        }
    }

    /// Whether messages are checked at all.
    pub fn checked(&self) -> bool {
        self.trusted.is_some()
    }

    /// `Ok` when `sender` (SQS's `SenderId`) may send `message`.
    pub fn check(&self, sender: Option<&str>, message: &QueueMessage) -> Result<(), SenderRefusal> {
        let Some(trusted) = &self.trusted else {
            return Ok(());
        };
        let (kind, needs) = needs(message);
        if needs == Needs::Admitted {
            return Ok(());
        }
        let Some(sender) = sender.filter(|s| !s.is_empty()) else {
            return Err(SenderRefusal::NoSenderId { kind });
        };
        // A role's sessions are `<role id>:<session name>`; a user is its id alone.
        let principal = sender.split(':').next().unwrap_or(sender);
        let from_webhook = principal == trusted.webhook;
        let from_processor = trusted.processor.as_deref() == Some(principal);
        let from_replay = trusted.replay.iter().any(|id| id == principal);
        let accepted = match needs {
            Needs::Webhook => from_webhook || from_processor || from_replay,
            Needs::Processor => from_processor || from_replay,
            Needs::Admitted => true,
        };
        if accepted {
            Ok(())
        } else {
            Err(SenderRefusal::Untrusted {
                kind,
                principal: principal.to_owned(),
            })
        }
    }

    /// Who vouches for `message`: its `SenderId`, except for a copy the processor
    /// put on the dead-letter queue and that came back with SQS's redrive, which
    /// keeps its attributes: that one is judged by who first sent it (the copy's
    /// [`SOURCE_SENDER_ID`] attribute), so a redrive cannot make a stranger's
    /// message the processor's own. The attribute is read only on messages the
    /// processor's role sent: nobody else can vouch with it.
    fn sender_of<'m>(&self, message: &'m SqsMessage) -> Option<&'m str> {
        let sender = message.attributes.get("SenderId").map(String::as_str);
        let from_processor = self.trusted.as_ref().is_some_and(|t| {
            t.processor.is_some()
                && t.processor.as_deref() == sender.and_then(|s| s.split(':').next())
        });
        if !from_processor {
            return sender;
        }
        message
            .message_attributes
            .get(SOURCE_SENDER_ID)
            .and_then(|a| a.string_value.as_deref())
            .or(sender)
    }

    /// The outcome of a message refused for its sender, counted and logged; `None`
    /// when it may run.
    pub(crate) fn screen(
        &self,
        message: &SqsMessage,
        queued: &QueueMessage,
    ) -> Option<MessageOutcome> {
        let refusal = self.check(self.sender_of(message), queued).err()?;
        signals::count_by(Metric::MessagesRefused, refusal.code(), 1);
        match &refusal {
            SenderRefusal::Untrusted { kind, principal } => tracing::error!(
                kind,
                sender = %principal,
                reason = refusal.code(),
                alert = true,
                "refused: only the stack's own roles may queue this type; acknowledged, not processed"
            ),
            SenderRefusal::NoSenderId { kind } => tracing::error!(
                kind,
                reason = refusal.code(),
                alert = true,
                "refused: the message has no SenderId; acknowledged, not processed"
            ),
        }
        Some(MessageOutcome::SenderRefused(refusal))
    }

    /// Says once, at start, whether messages are checked.
    pub fn announce(&self) {
        match &self.trusted {
            Some(t) => tracing::info!(
                webhook = %t.webhook,
                processor = t.processor.as_deref().unwrap_or("-"),
                replay_senders = t.replay.len(),
                "queue senders are checked: Meta events only from the webhook's role"
            ),
            None => tracing::warn!(
                "WEBHOOK_SENDER_ID is not set: queue messages are not checked for their sender (local runs only)"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    const WEBHOOK: &str = "AROAWEBHOOKROLE00001";
    const PROCESSOR: &str = "AROAPROCESSORROLE001";
    const OPERATOR: &str = "AROAOPERATORROLE0001";
    const OTHER: &str = "AIDAANOTHERUSER00001";

    fn env(vars: &[(&str, &str)]) -> BTreeMap<String, String> {
        vars.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn checked() -> Senders {
        Senders::from_env(&env(&[
            (WEBHOOK_SENDER_ID, WEBHOOK),
            (PROCESSOR_SENDER_ID, PROCESSOR),
            (REPLAY_SENDER_IDS, OPERATOR),
        ]))
        .unwrap()
    }

    fn event() -> QueueMessage {
        QueueMessage::from_json(
            r#"{"type":"event","source":"messaging","page_id":"1","key":"k","event":{"sender":{"id":"2"},"recipient":{"id":"1"},"timestamp":1,"message":{"mid":"m","text":"hi"}}}"#,
        )
        .unwrap()
    }

    fn notify_one() -> QueueMessage {
        QueueMessage::from_json(
            r#"{"type":"notify_one","notify_id":"n","page_id":"1","psid":"2","token_sk":"OTN#1#a","topic":"shoes","message":{"text":"Back in stock"}}"#,
        )
        .unwrap()
    }

    fn command() -> QueueMessage {
        QueueMessage::from_json(r#"{"type":"forget","command_id":"c1","page_id":"1","psid":"2"}"#)
            .unwrap()
    }

    fn session(role: &str) -> String {
        format!("{role}:a-session")
    }

    #[test]
    fn a_meta_event_is_taken_only_from_the_webhook_the_processor_or_a_replay_sender() {
        let senders = checked();
        for ok in [WEBHOOK, PROCESSOR, OPERATOR] {
            assert_eq!(senders.check(Some(&session(ok)), &event()), Ok(()), "{ok}");
        }
        assert_eq!(
            senders.check(Some(OTHER), &event()),
            Err(SenderRefusal::Untrusted {
                kind: "event",
                principal: OTHER.to_owned()
            })
        );
        // The session name is not part of what is compared, nor of what is logged.
        let forged = senders
            .check(Some("AROAOTHERROLE0000001:AROAWEBHOOKROLE00001"), &event())
            .unwrap_err();
        assert_eq!(forged.code(), "untrusted_sender");
        assert_eq!(
            forged,
            SenderRefusal::Untrusted {
                kind: "event",
                principal: "AROAOTHERROLE0000001".to_owned()
            }
        );
        // A prefix of a trusted id is another id.
        assert!(senders.check(Some("AROAWEBHOOK"), &event()).is_err());
    }

    #[test]
    fn a_fan_out_share_is_taken_only_from_the_processor_or_a_replay_sender() {
        let senders = checked();
        assert_eq!(
            senders.check(Some(&session(PROCESSOR)), &notify_one()),
            Ok(())
        );
        assert_eq!(
            senders.check(Some(&session(OPERATOR)), &notify_one()),
            Ok(())
        );
        for refused in [WEBHOOK, OTHER] {
            assert!(
                senders
                    .check(Some(&session(refused)), &notify_one())
                    .is_err(),
                "{refused}"
            );
        }
    }

    #[test]
    fn commands_are_taken_from_whoever_the_queue_admits() {
        let senders = checked();
        for sender in [WEBHOOK, PROCESSOR, OTHER] {
            assert_eq!(senders.check(Some(sender), &command()), Ok(()));
        }
    }

    #[test]
    fn a_replay_request_is_taken_from_an_operator_not_listed_for_meta_events() {
        let senders = checked();
        let replay = QueueMessage::from_json(r#"{"type":"replay_parked","page_id":"1"}"#).unwrap();
        // An operator outside REPLAY_SENDER_IDS: its replay request passes, and the
        // events the processor then re-queues come from the processor's own role.
        assert_eq!(senders.check(Some(&session(OTHER)), &replay), Ok(()));
        assert!(senders.check(Some(&session(OTHER)), &event()).is_err());
        assert_eq!(senders.check(Some(&session(PROCESSOR)), &event()), Ok(()));
    }

    #[test]
    fn without_a_sender_id_a_stack_type_is_refused() {
        let senders = checked();
        assert_eq!(
            senders.check(None, &event()).unwrap_err().code(),
            "no_sender_id"
        );
        assert_eq!(
            senders.check(Some(""), &notify_one()).unwrap_err().code(),
            "no_sender_id"
        );
    }

    #[test]
    fn unset_means_unchecked_and_half_set_is_refused_at_start() {
        let unchecked = Senders::from_env(&env(&[])).unwrap();
        assert!(!unchecked.checked());
        assert_eq!(unchecked.check(Some(OTHER), &event()), Ok(()));
        assert_eq!(unchecked.check(None, &notify_one()), Ok(()));
        assert!(matches!(
            Senders::from_env(&env(&[(PROCESSOR_SENDER_ID, PROCESSOR)])),
            Err(ConfigError::Missing(WEBHOOK_SENDER_ID))
        ));
        assert!(matches!(
            Senders::from_env(&env(&[(WEBHOOK_SENDER_ID, "AROA1,AROA2")])),
            Err(ConfigError::Invalid {
                var: WEBHOOK_SENDER_ID,
                ..
            })
        ));
        assert!(matches!(
            Senders::from_env(&env(&[
                (WEBHOOK_SENDER_ID, WEBHOOK),
                (REPLAY_SENDER_IDS, "AROA1, AROA 2")
            ])),
            Err(ConfigError::Invalid {
                var: REPLAY_SENDER_IDS,
                ..
            })
        ));
        assert!(checked().checked());
    }

    #[test]
    fn a_refused_message_is_an_outcome_and_a_counted_reason() {
        let senders = checked();
        let mut message = SqsMessage::default();
        message
            .attributes
            .insert("SenderId".to_owned(), OTHER.to_owned());
        let metrics = signals::capture();
        let outcome = senders.screen(&message, &event());
        signals::flush();
        assert_eq!(
            outcome,
            Some(MessageOutcome::SenderRefused(SenderRefusal::Untrusted {
                kind: "event",
                principal: OTHER.to_owned()
            }))
        );
        assert_eq!(
            metrics.total(Metric::MessagesRefused, Some("untrusted_sender")),
            1
        );
        message
            .attributes
            .insert("SenderId".to_owned(), session(WEBHOOK));
        assert_eq!(senders.screen(&message, &event()), None);
    }

    #[test]
    fn a_dead_lettered_copy_that_comes_back_is_judged_by_who_first_sent_it() {
        let senders = checked();
        let copy = |first: &str| {
            let mut message = SqsMessage::default();
            message
                .attributes
                .insert("SenderId".to_owned(), session(PROCESSOR));
            let mut attribute = aws_lambda_events::sqs::SqsMessageAttribute::default();
            attribute.string_value = Some(first.to_owned());
            attribute.data_type = Some("String".to_owned());
            message
                .message_attributes
                .insert(SOURCE_SENDER_ID.to_owned(), attribute);
            message
        };
        // A stranger's event, dead-lettered by the processor and redriven: refused.
        assert!(matches!(
            senders.screen(&copy(OTHER), &event()),
            Some(MessageOutcome::SenderRefused(
                SenderRefusal::Untrusted { .. }
            ))
        ));
        // The webhook's event: taken.
        assert_eq!(senders.screen(&copy(WEBHOOK), &event()), None);
        // Anyone else claiming a first sender is judged by its own SenderId.
        let mut forged = copy(WEBHOOK);
        forged
            .attributes
            .insert("SenderId".to_owned(), OTHER.to_owned());
        assert!(senders.screen(&forged, &event()).is_some());
    }
}
