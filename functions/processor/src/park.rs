//! Parking: a queue message that needs its Page's token, while the Page is not
//! `ACTIVE` (`MISSING`: no token; `INVALID`: Graph refused it), is kept in the
//! table with its body and FIFO group, and acknowledged to SQS only once kept.
//! Nothing about it is recorded as done: when a token is stored, [`replay`] puts
//! the Page's parked messages back on the events queue, oldest first, and each
//! goes through the whole pipeline then (the send policy is checked at replay: a
//! window that closed meanwhile is a refusal, not a send).

use aws_lambda_events::sqs::SqsMessage;
use event_queue::{EventQueue, OutgoingMessage, RetryPolicy};
use messenger_store::{
    PageRegistry, PageStatus, Parked, ParkedMessage, Store, StoreError, ThreadKey, TokenStore,
};
use messenger_types::{Event, PageId, QueueMessage};
use sha2::{Digest, Sha256};
use signals::Metric;

use crate::bot::Bot;
use crate::credentials::PageCredential;
use crate::{MessageOutcome, Messenger, ProcessError, Processor, state};

/// The reason of a Page that is `MISSING` because its events came before any token.
pub const NO_TOKEN: &str = "no token";

/// The Page a message needs a token of, with the person it is about. `None` for
/// messages that call no Graph API (the notify fan-out, `forget`).
pub(crate) fn needs_token(message: &QueueMessage) -> Option<(PageId, Option<ThreadKey>)> {
    match message {
        QueueMessage::Event(queued) => {
            let event: Option<Event> = serde_json::from_str(queued.event.get()).ok();
            let page = queued
                .page_id
                .clone()
                .or_else(|| event.as_ref()?.page_id().map(PageId::new))?;
            let thread = event.and_then(|e| state::changes(&page, &e, queued.source).thread);
            Some((page, thread))
        }
        QueueMessage::Command(command) => match command {
            messenger_types::command::Command::Forget(_) => None,
            command => Some((
                command.page_id().clone(),
                Some(ThreadKey::psid(
                    command.page_id().clone(),
                    command.psid().clone(),
                )),
            )),
        },
        QueueMessage::NotifyOne(one) => Some((
            one.page_id.clone(),
            Some(ThreadKey::psid(one.page_id.clone(), one.psid.clone())),
        )),
        QueueMessage::Notify(_) | QueueMessage::ReplayParked(_) => None,
    }
}

impl<S: Store + TokenStore + PageRegistry, M: Messenger, B: Bot, Q: EventQueue + Sync>
    Processor<S, M, B, Q>
{
    /// Parks `message` unless its Page is `ACTIVE`. `Ok(None)`: go on with it.
    pub(crate) async fn park_unless_active(
        &self,
        message: &SqsMessage,
        page: &PageId,
        thread: Option<&ThreadKey>,
    ) -> Result<Option<MessageOutcome>, ProcessError> {
        if let PageCredential::Active { .. } = self.credentials.get(&self.store, page).await? {
            return Ok(None);
        }
        // Looked up again before parking: a token may have been stored since.
        let (status, recorded) = match self.credentials.refresh(&self.store, page).await? {
            PageCredential::Active { .. } => return Ok(None),
            PageCredential::NotActive {
                status, recorded, ..
            } => (status, recorded),
        };
        let now = (self.clock)();
        let parked = ParkedMessage {
            key: ParkedMessage::key_for(now, message.message_id.as_deref().unwrap_or("unknown")),
            group: message
                .attributes
                .get("MessageGroupId")
                .cloned()
                .unwrap_or_else(|| page.to_string()),
            body: message.body.clone().unwrap_or_default(),
        };
        match self.store.park(page, &parked, thread, now).await? {
            Parked::Kept => {
                signals::count(Metric::EventsParked, 1);
                tracing::warn!(
                    page_id = %page,
                    status = status.as_str(),
                    "parked: the Page has no usable token; kept until one is stored (messenger page store-token)"
                );
                // The park gave the Page its first record: it is MISSING from now.
                if !recorded {
                    crate::publish::page_status_changed(
                        &*self.bus,
                        page,
                        PageStatus::Missing,
                        Some(NO_TOKEN),
                    )
                    .await;
                }
                Ok(Some(MessageOutcome::Parked { status }))
            }
            // Stored between the lookup and the park: the Page is ACTIVE now.
            Parked::PageActive => match self.credentials.refresh(&self.store, page).await? {
                PageCredential::Active { .. } => Ok(None),
                PageCredential::NotActive { status, .. } => {
                    Err(ProcessError::PageNotActive(status))
                }
            },
        }
    }

    /// Notes on the Page's record that an event of it arrived (`page status`'s
    /// last event seen), at most once per [`crate::credentials::SEEN_EVERY`] per
    /// Page on this instance. A failure is logged: it never holds up the event.
    pub(crate) async fn note_seen(&self, page: &PageId) {
        if !self.credentials.seen_due(page) {
            return;
        }
        if let Err(error) = self.store.page_seen(page, (self.clock)()).await {
            tracing::warn!(page_id = %page, %error, "could not note the Page's last event");
        }
    }

    /// Graph refused the Page's token ([`refuses_token`]):
    /// the Page is `INVALID` from now, and its next messages are parked without a
    /// call. A token stored since the one that failed is left alone.
    pub(crate) async fn page_refused(&self, page: &PageId, e: &graph_api::GraphError) {
        if !refuses_token(e) {
            return;
        }
        let version = match self.credentials.last_known(page) {
            Some(PageCredential::Active { version, .. }) => version,
            _ => None,
        };
        let reason = refusal_reason(e);
        match self
            .store
            .mark_page_invalid(page, version, &reason, (self.clock)())
            .await
        {
            Ok(true) => {
                tracing::error!(page_id = %page, %reason, alert = true, "Page marked INVALID: its events are parked until a new token is stored (messenger page store-token)");
                crate::publish::page_status_changed(
                    &*self.bus,
                    page,
                    PageStatus::Invalid,
                    Some(&reason),
                )
                .await;
            }
            Ok(false) => {
                tracing::info!(page_id = %page, "a newer token was stored since; Page left as it is")
            }
            Err(error) => {
                tracing::error!(page_id = %page, %error, "could not mark the Page INVALID")
            }
        }
        self.credentials.forget(page);
    }
}

/// Whether Graph's answer says the Page's token is no longer usable: 190 (or
/// 102), a permission error of 200-299, or the Page restricted (10/1893063). The
/// processor and the Page check mark such a Page `INVALID`.
pub fn refuses_token(e: &graph_api::GraphError) -> bool {
    matches!(
        e.class,
        graph_api::ErrorClass::TokenInvalid | graph_api::ErrorClass::PageRestricted
    ) || e.code.is_some_and(|code| (200..300).contains(&code))
}

/// The reason an `INVALID` Page is kept with: the error's class and codes, never
/// Meta's message (which may quote the request).
pub fn refusal_reason(e: &graph_api::GraphError) -> String {
    match (e.code, e.subcode) {
        (Some(code), Some(sub)) => format!("{} (Graph {code}/{sub})", e.class.as_str()),
        (Some(code), None) => format!("{} (Graph {code})", e.class.as_str()),
        _ => e.class.as_str().to_owned(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] event_queue::EnqueueError),
    #[error(transparent)]
    Key(#[from] crate::credentials::KeyError),
}

/// Stores a Page's token, sealed with `key`: the Page is `ACTIVE` from `now`.
pub async fn seal_and_store<R: PageRegistry>(
    store: &R,
    key: &dyn crate::credentials::TokenKey,
    page: &PageId,
    token: &secrecy::SecretString,
    now: messenger_types::Timestamp,
) -> Result<(), ReplayError> {
    let sealed = key.seal(page, token).await?;
    store.store_page_token(page, sealed, now).await?;
    Ok(())
}

/// Stores a Page's token ([`seal_and_store`]) and puts its parked messages back on
/// the queue at once, under the caller's own identity: right where the queue's
/// sender check is off (local runs, tests). Operators' commands use
/// [`store_token_and_request_replay`], whose replay the processor makes.
pub async fn store_token<R: PageRegistry, Q: EventQueue + Sync>(
    store: &R,
    key: &dyn crate::credentials::TokenKey,
    queue: &Q,
    page: &PageId,
    token: &secrecy::SecretString,
    now: messenger_types::Timestamp,
) -> Result<Replayed, ReplayError> {
    seal_and_store(store, key, page, token, now).await?;
    replay(store, queue, page).await
}

/// Asks the processor to replay the Page's parked messages (`page store-token`,
/// `page replay`): one `replay_parked` message on the events queue. The processor
/// re-queues them under its own role, which the queue's sender check trusts with
/// Meta events; an operator re-sending them would not be.
pub async fn request_replay<Q: EventQueue + Sync>(
    queue: &Q,
    page: &PageId,
    now: messenger_types::Timestamp,
) -> Result<(), ReplayError> {
    let body = serde_json::to_string(&messenger_types::queue::ReplayParked {
        kind: messenger_types::queue::QueueMessageType::ReplayParked,
        page_id: page.clone(),
    })
    .unwrap_or_default();
    let message = OutgoingMessage {
        group_id: format!("replay:{page}"),
        dedup_id: hex::encode(Sha256::digest(format!(
            "replay-request:{page}:{}",
            now.as_millis()
        ))),
        body,
        kind: "replay_parked",
    };
    let refused = event_queue::send_all(
        queue,
        std::slice::from_ref(&message),
        &RetryPolicy::default(),
    )
    .await?;
    match refused.first() {
        None => Ok(()),
        Some(r) => Err(ReplayError::Store(StoreError::invalid(
            "SendMessage(replay_parked)",
            format!("the queue refused the replay request: {}", r.code),
        ))),
    }
}

/// Stores a Page's token, sealed with `key` (the Page is `ACTIVE` from `now`), and
/// asks the processor to replay its parked messages: what the operator's commands
/// do.
pub async fn store_token_and_request_replay<R: PageRegistry, Q: EventQueue + Sync>(
    store: &R,
    key: &dyn crate::credentials::TokenKey,
    queue: &Q,
    page: &PageId,
    token: &secrecy::SecretString,
    now: messenger_types::Timestamp,
) -> Result<(), ReplayError> {
    seal_and_store(store, key, page, token, now).await?;
    request_replay(queue, page, now).await
}

/// What a replay did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Put back on the events queue (and no longer parked).
    pub queued: usize,
    /// Refused by the queue for their content: still parked.
    pub refused: usize,
}

/// Puts the Page's parked messages back on the events queue, oldest first (so each
/// thread's keep their order), each deleted once queued. A message queued twice
/// (a replay cut short and run again) is a duplicate for the processor.
pub async fn replay<R: PageRegistry, Q: EventQueue + Sync>(
    store: &R,
    queue: &Q,
    page: &PageId,
) -> Result<Replayed, ReplayError> {
    let mut done = Replayed::default();
    let mut after: Option<String> = None;
    loop {
        let batch = store
            .parked(page, after.as_deref(), event_queue::MAX_BATCH_ENTRIES)
            .await?;
        let Some(last) = batch.last() else {
            return Ok(done);
        };
        after = Some(last.key.clone());
        let messages: Vec<OutgoingMessage> = batch
            .iter()
            .map(|m| OutgoingMessage {
                group_id: m.group.clone(),
                dedup_id: hex::encode(Sha256::digest(format!("replay:{page}:{}", m.key))),
                body: m.body.clone(),
                kind: "replay",
            })
            .collect();
        let refused = event_queue::send_all(queue, &messages, &RetryPolicy::default()).await?;
        for (i, m) in batch.iter().enumerate() {
            if let Some(r) = refused.iter().find(|r| r.index == i) {
                tracing::error!(page_id = %page, parked = %m.key, code = %r.code, "the queue refused a parked message; it stays parked");
                done.refused += 1;
                continue;
            }
            store.unpark(page, &m.key).await?;
            done.queued += 1;
        }
    }
}
