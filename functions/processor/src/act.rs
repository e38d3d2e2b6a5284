//! One action the bot asked for: the send policy first, then the Graph call. A
//! refusal or a permanent Graph error is an outcome (recorded, not retried); a
//! passing Graph failure is an error (the message is handed back).

use event_queue::EventQueue;
use graph_api::{ErrorClass, GraphError};
use messenger_store::{
    Control, PageRegistry, Person, Store, ThreadChange, ThreadKey, ThreadState, TokenStore,
    Unreachable,
};
use messenger_types::send::{MessagingType, OutgoingMessage, Recipient, SendRequest};
use messenger_types::{PageId, Psid, Timestamp};
use secrecy::SecretString;

use crate::bot::{Action, Bot};
use crate::pipeline::Work;
use crate::policy::{self, Basis, Planned, Refusal, TokenState};
use crate::{Messenger, Outcome, ProcessError, Processor};

impl<S: Store + TokenStore + PageRegistry, M: Messenger, B: Bot, Q: EventQueue + Sync>
    Processor<S, M, B, Q>
{
    /// Carries out one action. `Ok` is what came of it, a refusal or a permanent
    /// Graph error included; `Err` means try again later.
    pub(crate) async fn act(
        &self,
        w: &Work<'_>,
        event_thread: Option<&ThreadKey>,
        thread: &mut ThreadState,
        action: &Action,
    ) -> Result<Outcome, ProcessError> {
        match action {
            Action::Send {
                to,
                message,
                basis,
                thread_control,
            } => {
                if let Some(refused) = self
                    .refused(w, event_thread, thread, to, basis, Some(message))
                    .await?
                {
                    return Ok(refused);
                }
                let token = match self.page_token(w.page) {
                    Ok(token) => token,
                    Err(refused) => return Ok(refused),
                };
                let recipient = match &to.person {
                    Person::Psid(psid) => Recipient::Id(psid.clone()),
                    Person::UserRef(r) => Recipient::UserRef(r.as_str().to_owned()),
                };
                let (messaging_type, tag) = match basis {
                    Basis::Standard(t) => (Some(*t), None),
                    Basis::Tag(tag) => (Some(MessagingType::MessageTag), Some(tag.clone())),
                    Basis::OneTimeToken(_) => {
                        return Ok(Outcome::Refused {
                            reason: Refusal::OtnOutsideNotify,
                        });
                    }
                };
                let sent_tag = tag.as_ref().map(|t| t.as_str().to_owned());
                let request = SendRequest {
                    recipient,
                    messaging_type,
                    tag,
                    message: message.clone(),
                    thread_control: thread_control.clone(),
                };
                match self.graph.send(w.page, &token, &request).await {
                    Ok(sent) => {
                        if let Some(inline) = thread_control {
                            // Passed (or released) with the message: what the
                            // person writes next reaches us as standby (or goes
                            // to the Page's default app).
                            let control = Control {
                                ours: false,
                                owner: inline.app_id.clone(),
                                since: (self.clock)(),
                            };
                            if Some(to) == event_thread {
                                thread.control = Some(control.clone());
                            }
                            self.store
                                .update_thread(to, &ThreadChange::Control(control))
                                .await?;
                        }
                        Ok(Outcome::Sent {
                            message_id: sent.message_id,
                            messaging_type,
                            tag: sent_tag,
                        })
                    }
                    Err(e) => self.graph_failure(w, to, e).await,
                }
            }
            Action::PassThreadControl { to: app, metadata } => {
                let Some((key, psid)) = with_psid(event_thread) else {
                    return Ok(Outcome::Refused {
                        reason: Refusal::NoThreadToPass,
                    });
                };
                if !thread.controlled_by_us() {
                    return Ok(Outcome::Refused {
                        reason: Refusal::NotThreadOwner {
                            owner: thread.control.as_ref().and_then(|c| c.owner.clone()),
                        },
                    });
                }
                let token = match self.page_token(w.page) {
                    Ok(token) => token,
                    Err(refused) => return Ok(refused),
                };
                match self
                    .graph
                    .pass_thread_control(w.page, &token, psid, app, metadata.as_deref())
                    .await
                {
                    Ok(()) => {
                        // Stamped when Meta confirmed the pass: later than the event
                        // that asked for it; what the person writes after it reaches
                        // us as standby.
                        let control = Control {
                            ours: false,
                            owner: Some(app.clone()),
                            since: (self.clock)(),
                        };
                        thread.control = Some(control.clone());
                        self.store
                            .update_thread(key, &ThreadChange::Control(control))
                            .await?;
                        Ok(Outcome::ControlPassed {
                            app_id: app.clone(),
                        })
                    }
                    Err(e) => self.graph_failure(w, key, e).await,
                }
            }
            Action::TakeThreadControl { metadata } => {
                self.change_control(
                    w,
                    event_thread,
                    thread,
                    ControlCall::Take(metadata.as_deref()),
                )
                .await
            }
            Action::ReleaseThreadControl => {
                self.change_control(w, event_thread, thread, ControlCall::Release)
                    .await
            }
            Action::ExtendThreadControl { seconds } => {
                self.change_control(w, event_thread, thread, ControlCall::Extend(*seconds))
                    .await
            }
            Action::RequestThreadControl { metadata } => {
                self.change_control(
                    w,
                    event_thread,
                    thread,
                    ControlCall::Request(metadata.as_deref()),
                )
                .await
            }
            Action::SenderAction { to, action } => {
                let Person::Psid(psid) = &to.person else {
                    return Ok(Outcome::Refused {
                        reason: Refusal::NoThreadToPass,
                    });
                };
                let basis = Basis::Standard(MessagingType::Response);
                if let Some(refused) = self
                    .refused(w, event_thread, thread, to, &basis, None)
                    .await?
                {
                    return Ok(refused);
                }
                let token = match self.page_token(w.page) {
                    Ok(token) => token,
                    Err(refused) => return Ok(refused),
                };
                match self
                    .graph
                    .sender_action(w.page, &token, psid, *action)
                    .await
                {
                    Ok(()) => Ok(Outcome::ActionShown {
                        sender_action: *action,
                    }),
                    Err(e) => self.graph_failure(w, to, e).await,
                }
            }
            // Never reached: the pipeline keeps a state with the turn's own write
            // and leaves it out of the actions it carries out.
            Action::SetState(_) => Ok(Outcome::DoneEarlier),
            Action::Notify { topic, message } => {
                self.notify_with_token(w, event_thread, thread, topic, message)
                    .await
            }
        }
    }

    /// Sends with the person's oldest token of `topic` that can still be spent.
    /// The turn's step is marked started before this runs, so a crash after the
    /// spend never spends a second token for the same action.
    async fn notify_with_token(
        &self,
        w: &Work<'_>,
        event_thread: Option<&ThreadKey>,
        thread: &ThreadState,
        topic: &str,
        message: &OutgoingMessage,
    ) -> Result<Outcome, ProcessError> {
        let Some((_, psid)) = with_psid(event_thread) else {
            return Ok(Outcome::Refused {
                reason: Refusal::NoTokenForTopic {
                    topic: topic.to_owned(),
                },
            });
        };
        // The token's own state is what the spend checks, in the write that claims it.
        let basis = Basis::OneTimeToken(TokenState {
            used: false,
            expires_at: Timestamp::from_millis(i64::MAX),
        });
        if let Err(reason) = policy::check(&Planned {
            now: w.now,
            sending_page: w.page,
            recipient_page: w.page,
            thread,
            basis: &basis,
            message: Some(message),
            app_is_default: self.routing.app_is_default,
        }) {
            tracing::warn!(page_id = %w.page, reason = reason.code(), "notification refused by policy; token kept");
            return Ok(Outcome::Refused { reason });
        }
        let page_token = match self.page_token(w.page) {
            Ok(token) => token,
            Err(refused) => return Ok(refused),
        };
        for at in self.store.person_tokens(w.page, psid, topic).await? {
            let spend = crate::notify::spend_id(&at.sk);
            match self
                .spend_and_send(&at, &spend, &page_token, message.clone(), w.now)
                .await?
            {
                Ok(outcome) => return Ok(outcome),
                // Spent or expired since it was read: the next one.
                Err(refused) => {
                    tracing::info!(page_id = %w.page, ?refused, "token not spendable; trying the next")
                }
            }
        }
        tracing::info!(page_id = %w.page, "no token of the topic to send with");
        Ok(Outcome::Refused {
            reason: Refusal::NoTokenForTopic {
                topic: topic.to_owned(),
            },
        })
    }

    /// The send policy's answer for something going to `to` (the event's thread as
    /// it stands now, or another thread as the table has it): the refusal, or
    /// `None` when it may go.
    async fn refused(
        &self,
        w: &Work<'_>,
        event_thread: Option<&ThreadKey>,
        thread: &ThreadState,
        to: &ThreadKey,
        basis: &Basis,
        message: Option<&OutgoingMessage>,
    ) -> Result<Option<Outcome>, ProcessError> {
        let other_thread;
        let target_state: &ThreadState = if Some(to) == event_thread {
            thread
        } else {
            other_thread = self.store.thread(to).await?;
            &other_thread
        };
        Ok(policy::check(&Planned {
            now: w.now,
            sending_page: w.page,
            recipient_page: &to.page,
            thread: target_state,
            basis,
            message,
            app_is_default: self.routing.app_is_default,
        })
        .err()
        .map(|reason| {
            tracing::warn!(page_id = %w.page, reason = reason.code(), "refused by policy");
            Outcome::Refused { reason }
        }))
    }

    /// The Page's access token, or the refusal recorded when there is none.
    pub(crate) fn page_token(&self, page: &PageId) -> Result<SecretString, Outcome> {
        match self.credentials.last_known(page) {
            Some(crate::credentials::PageCredential::Active { token, .. }) => Ok(token),
            _ => Err(()),
        }
        .map_err(|()| {
            tracing::error!(page_id = %page, "no Page access token for this Page");
            Outcome::Refused {
                reason: Refusal::NoPageToken { page: page.clone() },
            }
        })
    }

    /// Takes, releases, extends or asks for the thread, and records who controls
    /// it once Meta confirmed.
    async fn change_control(
        &self,
        w: &Work<'_>,
        event_thread: Option<&ThreadKey>,
        thread: &mut ThreadState,
        call: ControlCall<'_>,
    ) -> Result<Outcome, ProcessError> {
        let Some((key, psid)) = with_psid(event_thread) else {
            return Ok(Outcome::Refused {
                reason: Refusal::NoThreadToPass,
            });
        };
        let token = match self.page_token(w.page) {
            Ok(token) => token,
            Err(refused) => return Ok(refused),
        };
        let page = w.page;
        let answered = match call {
            ControlCall::Take(metadata) => {
                self.graph
                    .take_thread_control(page, &token, psid, metadata)
                    .await
            }
            ControlCall::Release => self.graph.release_thread_control(page, &token, psid).await,
            ControlCall::Extend(seconds) => {
                self.graph
                    .extend_thread_control(page, &token, psid, seconds)
                    .await
            }
            ControlCall::Request(metadata) => {
                self.graph
                    .request_thread_control(page, &token, psid, metadata)
                    .await
            }
        };
        if let Err(e) = answered {
            return self.graph_failure(w, key, e).await;
        }
        let (ours, outcome) = match call {
            // Taken or extended: ours, counted from Meta's confirmation.
            ControlCall::Take(_) => (true, Outcome::ControlTaken),
            ControlCall::Extend(seconds) => (true, Outcome::ControlExtended { seconds }),
            // Released: nobody's (idle) until Meta routes the thread again.
            ControlCall::Release => (false, Outcome::ControlReleased),
            // The holder decides; a pass_thread_control event follows if it agrees.
            ControlCall::Request(_) => return Ok(Outcome::ControlRequested),
        };
        let control = Control {
            ours,
            owner: None,
            since: (self.clock)(),
        };
        thread.control = Some(control.clone());
        self.store
            .update_thread(key, &ThreadChange::Control(control))
            .await?;
        Ok(outcome)
    }

    /// A Graph error: retried when Meta says it may pass, otherwise recorded (and
    /// reflected in the thread's state where it tells us something about it).
    async fn graph_failure(
        &self,
        w: &Work<'_>,
        thread: &ThreadKey,
        e: GraphError,
    ) -> Result<Outcome, ProcessError> {
        if e.is_retryable() {
            return Err(ProcessError::Graph(e));
        }
        let answered_at = (self.clock)();
        let change = match e.class {
            ErrorClass::Unreachable => Some(ThreadChange::Unreachable(Unreachable {
                reason: e.to_string(),
                at: answered_at,
            })),
            ErrorClass::ThreadOwnedByOther => Some(ThreadChange::Control(Control {
                ours: false,
                owner: None,
                since: answered_at,
            })),
            _ => None,
        };
        if let Some(change) = change {
            self.store.update_thread(thread, &change).await?;
        }
        self.page_refused(w.page, &e).await;
        match e.class {
            ErrorClass::TokenInvalid
            | ErrorClass::PermissionMissing
            | ErrorClass::PageRestricted => {
                tracing::error!(page_id = %w.page, error = %e, alert = true, "Graph API refused the Page's credentials: replace the token or grant the permission");
            }
            _ => {
                tracing::warn!(page_id = %w.page, error = %e, "Graph API refused the call; not retried")
            }
        }
        Ok(Outcome::graph_refused(&e))
    }
}

/// A thread-control call other than a pass.
#[derive(Debug, Clone, Copy)]
enum ControlCall<'a> {
    Take(Option<&'a str>),
    Release,
    Extend(u32),
    Request(Option<&'a str>),
}

/// The event's thread and its person's PSID, when the event names one by PSID
/// (thread control and tokens need a PSID; a checkbox `user_ref` has none).
fn with_psid(event_thread: Option<&ThreadKey>) -> Option<(&ThreadKey, &Psid)> {
    event_thread.and_then(|key| match &key.person {
        Person::Psid(psid) => Some((key, psid)),
        Person::UserRef(_) => None,
    })
}
