//! The processor: for each queued event, in order, deduplicate, record state, let
//! the bot decide, enforce Meta's sending rules and call the Graph API. Reports the
//! messages to retry as partial batch failures.
//!
//! The rules themselves live in the pure `conversation` crate; this crate carries
//! them out against the real adapters:
//!
//! | module | job |
//! |---|---|
//! | [`batch`] | one SQS batch: FIFO groups concurrently, each group in order; partial batch failures |
//! | [`backoff`] | what is handed back comes back after a growing delay (its visibility), not after the queue's 360 s |
//! | [`pipeline`] | one event: a turn on its thread (read, decide, take with the changes, each action at most once, done: 1 read + 2 writes per reply), or a ledger item of its own for events that name no person |
//! | [`act`] | one action: the send policy, then the Graph call; Graph's refusals reflected on the thread |
//! | [`notify`] | the `notify` command: fan-out over the topic's tokens, one spend and send per person |
//! | [`command`] | commands from the business's systems: a turn on the person's thread, with the command's actions and the same policy and ledger |
//! | [`publish`] | events out: what happened, on the stack's EventBridge bus, at least once |
//! | [`bot`] | the replaceable bot and the default one |
//! | [`config`] | the environment, the clients, the Lambda function's `run` |
//!
//! Each event is taken in the table before any call is made, and each action the
//! bot asked for is recorded as started before its call and as done after it: a
//! redelivered event (Meta's retry, SQS's at-least-once delivery, a Lambda retry
//! after a timeout) finds its entry and does nothing twice.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod act;
pub mod backoff;
pub mod batch;
pub mod bot;
pub mod budget;
pub mod command;
pub mod config;
mod counts;
pub mod credentials;
pub mod dead_letter;
pub mod notify;
pub mod park;
pub mod pipeline;
pub mod publish;
pub mod recent;
pub mod router;
pub mod routing;
pub mod sender;
pub mod testing;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, SystemTime};

use event_queue::EventQueue;
use graph_api::{GraphClient, GraphError};
use messenger_store::{PageRegistry, Store, StoreError, TokenStore};
use messenger_types::send::{SendRequest, SendResponse};
use messenger_types::templates::SenderAction;
use messenger_types::{AppId, PageId, Psid, Timestamp};
use secrecy::SecretString;

use crate::bot::Bot;

pub use app_config::{ConfigError, Lookup, SdkConfig};
pub use config::{AwsProcessor, Config, from_env, from_env_with_bot, run};
/// What became of an event and of each action (in the pure `conversation` crate).
pub use conversation::outcome::{EventOutcome, Outcome, TokenFate};
/// What an event changes in the table (in the pure `conversation` crate).
pub use conversation::record as state;
/// Meta's sending rules (in the pure `conversation` crate).
pub use conversation::send_policy as policy;

/// The Graph API as the processor uses it.
pub trait Messenger: Send + Sync {
    fn send(
        &self,
        page: &PageId,
        token: &SecretString,
        request: &SendRequest,
    ) -> impl Future<Output = Result<SendResponse, GraphError>> + Send;

    fn pass_thread_control(
        &self,
        page: &PageId,
        token: &SecretString,
        psid: &Psid,
        to: &AppId,
        metadata: Option<&str>,
    ) -> impl Future<Output = Result<(), GraphError>> + Send;

    fn take_thread_control(
        &self,
        page: &PageId,
        token: &SecretString,
        psid: &Psid,
        metadata: Option<&str>,
    ) -> impl Future<Output = Result<(), GraphError>> + Send;

    fn release_thread_control(
        &self,
        page: &PageId,
        token: &SecretString,
        psid: &Psid,
    ) -> impl Future<Output = Result<(), GraphError>> + Send;

    fn extend_thread_control(
        &self,
        page: &PageId,
        token: &SecretString,
        psid: &Psid,
        duration_seconds: u32,
    ) -> impl Future<Output = Result<(), GraphError>> + Send;

    fn sender_action(
        &self,
        page: &PageId,
        token: &SecretString,
        psid: &Psid,
        action: SenderAction,
    ) -> impl Future<Output = Result<(), GraphError>> + Send;

    fn request_thread_control(
        &self,
        page: &PageId,
        token: &SecretString,
        psid: &Psid,
        metadata: Option<&str>,
    ) -> impl Future<Output = Result<(), GraphError>> + Send;
}

impl Messenger for GraphClient {
    async fn send(
        &self,
        page: &PageId,
        token: &SecretString,
        request: &SendRequest,
    ) -> Result<SendResponse, GraphError> {
        GraphClient::send(self, page, token, request).await
    }

    async fn pass_thread_control(
        &self,
        page: &PageId,
        token: &SecretString,
        psid: &Psid,
        to: &AppId,
        metadata: Option<&str>,
    ) -> Result<(), GraphError> {
        GraphClient::pass_thread_control(self, page, token, psid, to, metadata).await
    }

    async fn take_thread_control(
        &self,
        page: &PageId,
        token: &SecretString,
        psid: &Psid,
        metadata: Option<&str>,
    ) -> Result<(), GraphError> {
        GraphClient::take_thread_control(self, page, token, psid, metadata).await
    }

    async fn release_thread_control(
        &self,
        page: &PageId,
        token: &SecretString,
        psid: &Psid,
    ) -> Result<(), GraphError> {
        GraphClient::release_thread_control(self, page, token, psid).await
    }

    async fn extend_thread_control(
        &self,
        page: &PageId,
        token: &SecretString,
        psid: &Psid,
        duration_seconds: u32,
    ) -> Result<(), GraphError> {
        GraphClient::extend_thread_control(self, page, token, psid, duration_seconds).await
    }

    async fn sender_action(
        &self,
        page: &PageId,
        token: &SecretString,
        psid: &Psid,
        action: SenderAction,
    ) -> Result<(), GraphError> {
        GraphClient::sender_action(self, page, token, psid, action.as_str()).await
    }

    async fn request_thread_control(
        &self,
        page: &PageId,
        token: &SecretString,
        psid: &Psid,
        metadata: Option<&str>,
    ) -> Result<(), GraphError> {
        GraphClient::request_thread_control(self, page, token, psid, metadata).await
    }
}

/// Why a message is to be retried (reported as a batch item failure). Permanent
/// problems are not errors: they are recorded as the event's outcome and the
/// message is acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error(transparent)]
    Unreadable(#[from] messenger_types::QueueMessageError),
    #[error("the queued event is not a JSON object")]
    UnreadableEvent,
    #[error("could not queue the notify fan-out: {0}")]
    Enqueue(#[from] event_queue::EnqueueError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0} (will be retried)")]
    Graph(GraphError),
    #[error("another delivery of this event is being processed")]
    Busy,
    #[error("processed, but {0}; handed back so that its redelivery publishes them")]
    Publish(#[from] publish::PublishError),
    #[error("not started: too little time left before the function's deadline")]
    OutOfTime,
    #[error("could not read the Page's token: {0}")]
    Credentials(#[from] credentials::CredentialsError),
    #[error("the Page is {0} although a token was just stored for it")]
    PageNotActive(messenger_store::PageStatus),
}

/// What became of one queue message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageOutcome {
    /// A webhook event processed now, with what came of it (also recorded on the
    /// event in the table).
    Event(EventOutcome),
    /// Processed before: nothing was done.
    Duplicate,
    /// A `notify` command: per-recipient work queued. `follow_up` when a follow-up
    /// command continues the fan-out (the invocation's time ran short).
    NotifyQueued {
        recipients: usize,
        refused_by_queue: usize,
        follow_up: bool,
    },
    /// A `notify` command refused before any token was touched.
    NotifyRefused { reason: String },
    /// One person's notification.
    Notified(Outcome),
    /// A command, with what came of it.
    Command(command::CommandOutcome),
    /// A command done before (its `command_id` was seen): nothing was done.
    CommandRepeated,
    /// Kept in the table until the Page has a usable token (see [`park`]).
    Parked { status: messenger_store::PageStatus },
    /// A `replay_parked` request: the Page's parked messages put back on the queue.
    Replayed {
        queued: usize,
        refused_by_queue: usize,
    },
    /// Refused for who sent it (a type only the stack's roles write): acknowledged,
    /// not processed (see [`sender`]).
    SenderRefused(sender::SenderRefusal),
}

pub use budget::{MIN_TIME_PER_ACTION, MIN_TIME_PER_MESSAGE};
/// How many FIFO groups of one batch are processed at once. A FIFO trigger hands
/// at most 10 messages per batch, so this is the batch's whole width.
pub const MAX_CONCURRENT_GROUPS: usize = 10;

/// Runs a store write whose loss would cost a person something (a message sent
/// twice, a notification token burned): up to four attempts, 50, 200 and 800 ms
/// apart, while DynamoDB's failures are passing ones and the invocation has the
/// time for another ([`budget::allows_retry`]).
pub(crate) async fn persist<T, F, Fut>(what: &str, mut write: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut pause = Duration::from_millis(50);
    let mut attempt = 1;
    loop {
        match write().await {
            Ok(done) => return Ok(done),
            Err(e)
                if attempt < 4
                    && e.kind == messenger_store::StoreErrorKind::Transient
                    && budget::allows_retry(pause) =>
            {
                tracing::warn!(error = %e, attempt, "could not {what}; trying again");
                tokio::time::sleep(pause).await;
                pause *= 4;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// The processor, generic over its state store, the Graph API, the bot and the
/// events queue (where the notify fan-out puts per-recipient work).
#[derive(Debug)]
pub struct Processor<S, M, B, Q> {
    pub store: S,
    pub graph: M,
    pub bot: B,
    pub queue: Q,
    /// Each Page's token: the table's (sealed), through a cache with a TTL; the
    /// seed (the secret's `page_access_tokens`) for Pages without a record.
    pub credentials: credentials::Credentials,
    pub clock: fn() -> Timestamp,
    /// How many FIFO groups of a batch run at once (default
    /// [`MAX_CONCURRENT_GROUPS`]; 1 runs them one after another).
    pub group_concurrency: usize,
    /// Threads this instance wrote a moment ago (their next turn reads strongly).
    pub recent_writes: recent::RecentWrites,
    /// Where what happened is published ([`publish::NoBus`] by default).
    pub bus: Box<dyn publish::Bus>,
    /// `BOT=none` turns the bot off: events are recorded and published, commands
    /// obeyed, and nothing is sent on the processor's own.
    pub bot_on: bool,
    /// `APP_ID`: this app's id, so that an echo another app wrote is told from
    /// this app's own (the Page Inbox's are told apart without it).
    pub app_id: Option<messenger_types::AppId>,
    /// `HUMAN_PAUSE_HOURS`: how long the bot stays quiet on a thread after a human
    /// (or another app) wrote on it (zero: never).
    pub human_pause: Duration,
    /// Who may queue what ([`sender`]); unchecked unless configured.
    pub senders: sender::Senders,
    /// Conversation Routing: the default app, honoured requests, take-back.
    pub routing: routing::Routing,
    /// Where the visibility of handed-back messages is set ([`backoff`]); by
    /// default they wait out the queue's visibility timeout.
    pub visibility: Box<dyn backoff::Visibility>,
    /// Where a message that can never succeed goes on its third delivery
    /// ([`dead_letter`]); by
    /// default it is handed back until the queue's redrive policy moves it.
    pub dead_letters: Box<dyn dead_letter::DeadLetters>,
}

/// `HUMAN_PAUSE_HOURS`' default.
pub const DEFAULT_HUMAN_PAUSE_HOURS: u64 = 12;

impl<S: Store + TokenStore + PageRegistry, M: Messenger, B: Bot, Q: EventQueue + Sync>
    Processor<S, M, B, Q>
{
    pub fn new(
        store: S,
        graph: M,
        bot: B,
        queue: Q,
        tokens: BTreeMap<PageId, SecretString>,
    ) -> Self {
        Self {
            store,
            graph,
            bot,
            queue,
            credentials: credentials::Credentials::seeded(tokens),
            clock: Timestamp::now,
            group_concurrency: MAX_CONCURRENT_GROUPS,
            recent_writes: recent::RecentWrites::default(),
            bus: Box::new(publish::NoBus),
            bot_on: true,
            app_id: None,
            human_pause: Duration::from_secs(DEFAULT_HUMAN_PAUSE_HOURS * 3_600),
            senders: sender::Senders::default(),
            routing: routing::Routing::default(),
            visibility: Box::new(backoff::QueueTimeout),
            dead_letters: Box::new(dead_letter::HandBack),
        }
    }
}

/// Time until `deadline`. A deadline already past is taken as unknown, not as no
/// time at all: cargo-lambda's local emulator hands every invocation a deadline in
/// 1970.
pub(crate) fn time_left(deadline: SystemTime) -> Duration {
    deadline
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::MAX)
}

#[cfg(test)]
mod park_tests;
#[cfg(test)]
mod tests;
