//! Commands from the business's own systems: each is a turn on the person's
//! thread, like an event, with the command's action instead of the bot's. The
//! ledger entry is named by `command:<command_id>`, so a repeated id finds it
//! done and does nothing twice; the action goes through the same send policy and
//! at-most-once steps as a bot's; what came of it is recorded on the entry and
//! published as `Command Completed` (and `Message Sent`, `Send Refused` or
//! `Send Failed`), with the same at-least-once publishing as events.
//!
//! A command's entry is taken as if stamped at time 0, so that a repeated id is
//! looked for in the thread's ledger archive too however late it comes (one
//! Query on a thread that has archived entries).

use std::time::SystemTime;

use event_queue::EventQueue;
use messenger_store::{PageRegistry, Store, ThreadKey, TokenStore, TurnKey};
use messenger_types::command::ThreadCommand;
use messenger_types::send::{MessageTag, MessagingType, OutgoingMessage};
use messenger_types::{Command, EventKey, Source, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::bot::{Action, Bot};
use crate::pipeline::{Decision, Found, Work};
use crate::policy::{Basis, Refusal};
use crate::publish::{self, BusEvent};
use crate::{EventOutcome, MessageOutcome, Messenger, Outcome, ProcessError, Processor, state};

/// What came of a command, as recorded and published (`outcome` of
/// `Command Completed`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum CommandOutcome {
    /// Carried out: what came of its action (sent, refused by the policy, refused
    /// by Meta, thread control passed).
    Done { action: Outcome },
    /// Not taken: `field` is wrong (a check the HTTP route makes before queueing).
    Invalid { field: String, problem: String },
    /// Not available in this version.
    NotAvailable { what: String },
    /// `forget`: everything kept about the person erased (`erased` items; 0 when
    /// a forget before had already erased it all). The code is the same for every
    /// repeat of the command.
    Forgotten {
        erased: usize,
        confirmation_code: String,
    },
}

impl<S: Store + TokenStore + PageRegistry, M: Messenger, B: Bot, Q: EventQueue + Sync>
    Processor<S, M, B, Q>
{
    /// Carries out one command, at most once per `command_id`.
    pub async fn process_command(
        &self,
        command: &Command,
        deadline: Option<SystemTime>,
    ) -> Result<MessageOutcome, ProcessError> {
        let id = command.command_id();
        if let Command::Forget(forget) = command
            && command.validate().is_ok()
        {
            return self.forget(command, forget).await;
        }
        let outcome = match self.command_action(command) {
            Err(outcome) => outcome,
            Ok(action) => {
                let thread = ThreadKey::psid(command.page_id().clone(), command.psid().clone());
                let turn = TurnKey {
                    thread: thread.clone(),
                    event: EventKey::from_readable(format!("command:{id}")),
                    at: Timestamp::from_millis(0),
                };
                let changes = state::Changes {
                    thread: Some(thread),
                    ..state::Changes::default()
                };
                let work = Work {
                    page: command.page_id(),
                    event: None,
                    source: Source::Messaging,
                    now: (self.clock)(),
                    deadline,
                };
                let actions = [action];
                let found = self
                    .process_turn(&work, &turn, &changes, Decision::Given(&actions))
                    .await?;
                match found {
                    Found::Now(event_outcome) => done(&event_outcome),
                    Found::Before(recorded) => {
                        tracing::info!(command_id = %id, "command done before; nothing done");
                        // Published again from the record: its first publish may
                        // have failed. Consumers dedupe on command_id.
                        if let Some(outcome) = recorded
                            .as_deref()
                            .and_then(|r| EventOutcome::parse(r).ok())
                        {
                            publish::publish(&*self.bus, events(command, &done(&outcome))).await?;
                        }
                        return Ok(MessageOutcome::CommandRepeated);
                    }
                }
            }
        };
        tracing::info!(command_id = %id, kind = command.kind(), outcome = ?outcome, "command processed");
        publish::publish(&*self.bus, events(command, &outcome)).await?;
        Ok(MessageOutcome::Command(outcome))
    }

    /// The action a command asks for, or why it is not taken.
    fn command_action(&self, command: &Command) -> Result<Action, CommandOutcome> {
        if let Err(invalid) = command.validate() {
            return Err(CommandOutcome::Invalid {
                field: invalid.field.to_owned(),
                problem: invalid.problem,
            });
        }
        let not_available = |what: &str| {
            Err(CommandOutcome::NotAvailable {
                what: what.to_owned(),
            })
        };
        match command {
            Command::Send(send) => {
                if let Some(topic) = &send.otn_topic {
                    return Ok(Action::Notify {
                        topic: topic.clone(),
                        message: OutgoingMessage::from_map(send.message.clone()),
                    });
                }
                let basis = match (send.messaging_type, &send.tag) {
                    (Some(MessagingType::MessageTag), Some(tag)) => {
                        if *tag == MessageTag::HumanAgent && !send.human {
                            return Err(CommandOutcome::Done {
                                action: Outcome::Refused {
                                    reason: Refusal::NotHumanWritten,
                                },
                            });
                        }
                        Basis::Tag(tag.clone())
                    }
                    (Some(t), _) => Basis::Standard(t),
                    (None, _) => Basis::Standard(MessagingType::Response),
                };
                Ok(Action::Send {
                    to: ThreadKey::psid(send.page_id.clone(), send.recipient.id.clone()),
                    message: OutgoingMessage::from_map(send.message.clone()),
                    basis,
                    thread_control: None,
                })
            }
            Command::PassThreadControl(pass) => Ok(Action::PassThreadControl {
                // validate() made sure it is there.
                to: pass
                    .target_app_id
                    .clone()
                    .ok_or_else(|| CommandOutcome::Invalid {
                        field: "target_app_id".to_owned(),
                        problem: "is required to pass the thread".to_owned(),
                    })?,
                metadata: pass.metadata.clone(),
            }),
            Command::TakeThreadControl(take) => Ok(Action::TakeThreadControl {
                metadata: take.metadata.clone(),
            }),
            Command::ReleaseThreadControl(_) => Ok(Action::ReleaseThreadControl),
            Command::ExtendThreadControl(extend) => Ok(Action::ExtendThreadControl {
                // validate() made sure it is there.
                seconds: extend
                    .duration
                    .unwrap_or(messenger_types::command::MAX_EXTEND_SECONDS),
            }),
            Command::RequestThreadControl(request) => Ok(Action::RequestThreadControl {
                metadata: request.metadata.clone(),
            }),
            // Carried out by `forget` (not a turn: it erases the ledger too).
            Command::Forget(_) => not_available("forget as an action"),
        }
    }

    /// Erases everything kept about one person of one Page, then publishes
    /// `Person Forgotten` and `Command Completed`. Not a turn on the thread (the
    /// erasure takes the thread's ledger with it), so a repeated `command_id` runs
    /// again, finds nothing and succeeds with the same confirmation code.
    async fn forget(
        &self,
        command: &Command,
        forget: &ThreadCommand,
    ) -> Result<MessageOutcome, ProcessError> {
        let thread = ThreadKey::psid(forget.page_id.clone(), forget.psid.clone());
        let erased = self.store.forget_person(&thread, (self.clock)()).await?;
        let confirmation_code = confirmation_code(forget);
        tracing::info!(command_id = %forget.command_id, erased, %confirmation_code, "person forgotten");
        let outcome = CommandOutcome::Forgotten {
            erased,
            confirmation_code: confirmation_code.clone(),
        };
        let mut out = vec![BusEvent {
            detail_type: "Person Forgotten",
            detail: json!({
                "page_id": forget.page_id.as_str(),
                "psid": forget.psid.as_str(),
                "confirmation_code": confirmation_code,
            }),
        }];
        out.extend(events(command, &outcome));
        publish::publish(&*self.bus, out).await?;
        Ok(MessageOutcome::Command(outcome))
    }
}

/// A forget's confirmation code: derived from the command (the same for every
/// repeat), and revealing nothing of the person.
fn confirmation_code(forget: &ThreadCommand) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!(
        "forget\0{}\0{}\0{}",
        forget.page_id, forget.psid, forget.command_id
    ));
    hex::encode(&digest[..8])
}

/// A carried-out command's outcome from its turn's.
fn done(outcome: &EventOutcome) -> CommandOutcome {
    CommandOutcome::Done {
        action: outcome
            .actions()
            .first()
            .cloned()
            .unwrap_or(Outcome::DoneEarlier),
    }
}

/// What a command publishes: its action's bus event (with `command_id`) and
/// `Command Completed`.
fn events(command: &Command, outcome: &CommandOutcome) -> Vec<BusEvent> {
    let id = command.command_id().as_str();
    let mut out = Vec::new();
    if let CommandOutcome::Done { action } = outcome {
        let thread = ThreadKey::psid(command.page_id().clone(), command.psid().clone());
        if let Some(mut event) = publish::action_event(&thread, action, None) {
            if event.detail_type != "Thread Control Changed" {
                event.detail["command_id"] = json!(id);
            }
            out.push(event);
        }
    }
    out.push(BusEvent {
        detail_type: "Command Completed",
        detail: json!({
            "command_id": id,
            "type": command.kind(),
            "outcome": serde_json::to_value(outcome).unwrap_or(Value::Null),
        }),
    });
    out
}
