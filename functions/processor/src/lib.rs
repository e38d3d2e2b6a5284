//! The processor: for each queued event, in order, deduplicate, record state, let
//! the bot decide, enforce Meta's sending rules and call the Graph API. Reports the
//! messages to retry as partial batch failures.
//!
//! Each event is claimed in the table before anything is done, and each action the
//! bot asked for is recorded as done once it is: a redelivered event (Meta's retry,
//! SQS's at-least-once delivery, a Lambda retry after a timeout) finds its claim
//! and does nothing twice.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod bot;
pub mod notify;
pub mod policy;
pub mod state;

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::time::{Duration, SystemTime};

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use event_queue::{EventQueue, SqsQueue};
use graph_api::{ErrorClass, GraphClient, GraphConfig, GraphError};
use messenger_store::{
    Claim, ClaimToken, Control, DynamoStore, Person, Store, StoreError, ThreadChange, ThreadKey,
    ThreadState, TokenStore, Unreachable,
};
use messenger_types::send::{MessagingType, Recipient, SendRequest, SendResponse};
use messenger_types::{
    AppId, Event, EventKey, PageId, Psid, QueueMessage, QueuedEvent, Source, Timestamp,
};
use secrecy::SecretString;
use tracing::Instrument;

use crate::bot::{Action, Bot, DefaultBot, Turn};
use crate::policy::{Basis, Planned};

pub use app_config::{ConfigError, Lookup, SdkConfig};

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
    #[error("not started: too little time left before the function's deadline")]
    OutOfTime,
}

/// What became of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Processed now; the text is what was recorded on the event.
    Processed(String),
    /// Processed before: nothing was done.
    Duplicate,
}

/// Time a message needs at the least: with less left, it is handed back to SQS
/// rather than cut off half-way by the Lambda timeout.
pub const MIN_TIME_PER_MESSAGE: Duration = Duration::from_secs(6);
/// Time one action needs at the least: a Graph call (5 s timeout) and the
/// DynamoDB writes around it.
pub const MIN_TIME_PER_ACTION: Duration = Duration::from_secs(8);

/// Whether a failed Graph call may still have delivered its message: the request
/// went out and no answer came (a timeout, a connection lost after sending). Such
/// a call is not repeated. Any answer, a 5xx without Meta's error body included,
/// says the call failed (MESSENGER.md §7: retry 5xx), and a connection that was
/// never made sent nothing.
fn may_have_been_delivered(e: &GraphError) -> bool {
    e.outcome_unknown
}

/// Runs a store write whose loss would cost a person something (a message sent
/// twice, a notification token burned): up to four attempts, 50, 200 and 800 ms
/// apart, while DynamoDB's failures are passing ones.
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
            Err(e) if attempt < 4 && e.kind == messenger_store::StoreErrorKind::Transient => {
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
    pub tokens: BTreeMap<PageId, SecretString>,
    pub clock: fn() -> Timestamp,
}

impl<S: Store + TokenStore, M: Messenger, B: Bot, Q: EventQueue + Sync> Processor<S, M, B, Q> {
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
            tokens,
            clock: Timestamp::now,
        }
    }

    /// Processes an SQS batch in order. A message that fails is reported, and so
    /// is every later message of its FIFO group in the batch, so that the group's
    /// order holds when SQS delivers them again. `deadline` is the invocation's;
    /// with too little time left, the remaining messages are handed back untouched.
    pub async fn handle(&self, event: SqsEvent, deadline: Option<SystemTime>) -> SqsBatchResponse {
        let mut failed_groups: HashSet<String> = HashSet::new();
        let mut failures = Vec::new();
        for message in &event.records {
            let id = message.message_id.clone().unwrap_or_default();
            let group = message.attributes.get("MessageGroupId").cloned();
            let span = tracing::info_span!("sqs_message", message_id = %id);
            let result = if group.as_ref().is_some_and(|g| failed_groups.contains(g)) {
                span.in_scope(|| {
                    tracing::info!("an earlier message of its group failed; handed back")
                });
                Err(None)
            } else if deadline.is_some_and(|d| time_left(d) < MIN_TIME_PER_MESSAGE) {
                Err(Some(ProcessError::OutOfTime))
            } else {
                self.process_message(message, deadline)
                    .instrument(span.clone())
                    .await
                    .map_err(Some)
            };
            if let Err(error) = result {
                if let Some(error) = error {
                    span.in_scope(|| tracing::warn!(%error, "message handed back to the queue"));
                }
                if let Some(group) = group {
                    failed_groups.insert(group);
                }
                failures.push(id);
            }
        }
        let mut response = SqsBatchResponse::default();
        response.batch_item_failures = failures
            .into_iter()
            .map(|id| {
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = id;
                failure
            })
            .collect();
        response
    }

    async fn process_message(
        &self,
        message: &SqsMessage,
        deadline: Option<SystemTime>,
    ) -> Result<Outcome, ProcessError> {
        let body = message.body.as_deref().unwrap_or("");
        match QueueMessage::from_json(body)? {
            QueueMessage::Event(queued) => self.process_event(&queued, deadline).await,
            QueueMessage::Notify(command) => {
                let id = message.message_id.as_deref().unwrap_or("unknown");
                self.fan_out(&command, id, deadline).await
            }
            QueueMessage::NotifyOne(one) => self.notify_one(&one).await,
        }
    }

    /// Processes one queued webhook event, at most once.
    pub async fn process_event(
        &self,
        queued: &QueuedEvent,
        deadline: Option<SystemTime>,
    ) -> Result<Outcome, ProcessError> {
        let event: Event =
            serde_json::from_str(queued.event.get()).map_err(|_| ProcessError::UnreadableEvent)?;
        let page = queued
            .page_id
            .clone()
            .or_else(|| event.page_id().map(PageId::new))
            .unwrap_or_else(|| PageId::new("unknown"));
        let key = messenger_types::route(Some(page.as_str()), &queued.event).key;
        let now = (self.clock)();

        let (claim, done_actions, started_actions) = match self.store.claim_event(&key, now).await?
        {
            Claim::Acquired {
                token,
                done_actions,
                started_actions,
            } => (token, done_actions, started_actions),
            Claim::Duplicate { outcome } => {
                tracing::info!(event_key = %key, outcome = outcome.as_deref().unwrap_or(""), "duplicate event; nothing done");
                return Ok(Outcome::Duplicate);
            }
            Claim::Busy => return Err(ProcessError::Busy),
        };

        let work = Work {
            page: &page,
            event: &event,
            source: queued.source,
            key: &key,
            claim: &claim,
            done_actions,
            started_actions,
            now,
            deadline,
        };
        match self.run(&work).await {
            Ok(outcome) => {
                self.store
                    .complete_event(&key, &claim, &outcome, now)
                    .await?;
                tracing::info!(
                    page_id = %page,
                    event_kind = event.kind.as_str(),
                    source = queued.source.as_str(),
                    %outcome,
                    "event processed"
                );
                // What the model could not read is never silent. Not counted yet:
                // the EventsUnreadable metric comes with the processor's metrics.
                for unread in &event.unread {
                    tracing::warn!(
                        page_id = %page,
                        event_kind = event.kind.as_str(),
                        field = %unread.field,
                        problem = unread.problem.as_str(),
                        kind_read = unread.kind_read,
                        "a field of the event could not be read"
                    );
                }
                Ok(Outcome::Processed(outcome))
            }
            Err(e) => {
                if let Err(release) = self.store.release_event(&key, &claim, &e.to_string()).await {
                    tracing::warn!(error = %release, "could not release the event's claim; it frees itself when the lease ends");
                }
                Err(e)
            }
        }
    }

    async fn run(&self, w: &Work<'_>) -> Result<String, ProcessError> {
        let changes = state::changes(w.page, w.event, w.source);
        if let Some(thread) = &changes.thread
            && !changes.thread_changes.is_empty()
        {
            self.store
                .update_thread_all(thread, &changes.thread_changes)
                .await?;
        }
        for change in &changes.page_changes {
            self.store.update_page(w.page, change).await?;
        }
        for (token, active) in &changes.tokens {
            self.store.save_token(token, *active, w.now).await?;
        }
        if w.source == Source::Standby {
            return Ok("standby: recorded, never answered".to_owned());
        }

        let mut thread = match &changes.thread {
            Some(key) => self.store.thread(key).await?,
            None => ThreadState::default(),
        };
        let actions = self
            .bot
            .decide(&Turn {
                page: w.page,
                thread_key: changes.thread.as_ref(),
                event: w.event,
                source: w.source,
                thread: &thread,
                now: w.now,
            })
            .await;
        if actions.is_empty() {
            return Ok("recorded; no action".to_owned());
        }

        let mut outcomes = Vec::with_capacity(actions.len());
        for (i, action) in actions.iter().enumerate() {
            let n = u32::try_from(i + 1).unwrap_or(u32::MAX);
            if n <= w.done_actions {
                outcomes.push("done by an earlier attempt".to_owned());
                continue;
            }
            if n <= w.started_actions {
                // An earlier attempt made this call and died before recording what
                // came of it. It may have reached the person: at most once, so skip.
                tracing::warn!(
                    action = n,
                    "an interrupted attempt made this call; not repeated"
                );
                outcomes.push("interrupted in an earlier attempt; not repeated".to_owned());
                self.record_done(w, n).await?;
                continue;
            }
            if w.deadline
                .is_some_and(|d| time_left(d) < MIN_TIME_PER_ACTION)
            {
                return Err(ProcessError::OutOfTime);
            }
            self.store.start_action(w.key, w.claim, n).await?;
            let outcome = match self
                .act(w, changes.thread.as_ref(), &mut thread, action)
                .await
            {
                Ok(outcome) => outcome,
                Err(ProcessError::Graph(e)) if !may_have_been_delivered(&e) => {
                    // Meta answered with an error: the call did nothing, try again later.
                    self.store.abandon_action(w.key, w.claim, n).await?;
                    return Err(ProcessError::Graph(e));
                }
                // Anything else leaves the action started: a retry will not repeat it.
                Err(e) => return Err(e),
            };
            outcomes.push(outcome);
            self.record_done(w, n).await?;
        }
        Ok(outcomes.join("; "))
    }

    /// Records action `n` as done, trying a few times: once a message has gone out,
    /// losing this record is what could make a retry send it again.
    async fn record_done(&self, w: &Work<'_>, n: u32) -> Result<(), ProcessError> {
        persist("record progress", || {
            self.store.record_progress(w.key, w.claim, n)
        })
        .await
        .map_err(Into::into)
    }

    /// Carries out one action. `Ok` is what came of it, a refusal or a permanent
    /// Graph error included; `Err` means try again later.
    async fn act(
        &self,
        w: &Work<'_>,
        event_thread: Option<&ThreadKey>,
        thread: &mut ThreadState,
        action: &Action,
    ) -> Result<String, ProcessError> {
        match action {
            Action::Send { to, message, basis } => {
                let other_thread;
                let target_state: &ThreadState = if Some(to) == event_thread {
                    thread
                } else {
                    other_thread = self.store.thread(to).await?;
                    &other_thread
                };
                if let Err(refusal) = policy::check(&Planned {
                    now: w.now,
                    sending_page: w.page,
                    recipient_page: &to.page,
                    thread: target_state,
                    basis,
                }) {
                    tracing::warn!(page_id = %w.page, %refusal, "send refused by policy");
                    return Ok(format!("refused: {refusal}"));
                }
                let Some(token) = self.tokens.get(w.page) else {
                    tracing::error!(page_id = %w.page, "no Page access token for this Page");
                    return Ok(format!(
                        "not sent: no Page access token for Page {}",
                        w.page
                    ));
                };
                let recipient = match &to.person {
                    Person::Psid(psid) => Recipient::Id(psid.clone()),
                    Person::UserRef(r) => Recipient::UserRef(r.as_str().to_owned()),
                };
                let (messaging_type, tag) = match basis {
                    Basis::Standard(t) => (Some(*t), None),
                    Basis::Tag(tag) => (Some(MessagingType::MessageTag), Some(tag.clone())),
                    Basis::OneTimeToken(_) => {
                        return Ok(
                            "refused: one-time notifications are sent by notify commands"
                                .to_owned(),
                        );
                    }
                };
                let request = SendRequest {
                    recipient,
                    messaging_type,
                    tag,
                    message: message.clone(),
                };
                match self.graph.send(w.page, token, &request).await {
                    Ok(sent) => Ok(format!(
                        "sent {}",
                        sent.message_id.as_deref().unwrap_or("(no message id)")
                    )),
                    Err(e) => self.graph_failure(w, to, e).await,
                }
            }
            Action::PassThreadControl { to: app, metadata } => {
                let Some(key) = event_thread else {
                    return Ok("refused: no thread to pass".to_owned());
                };
                let Person::Psid(psid) = &key.person else {
                    return Ok("refused: thread control needs a PSID".to_owned());
                };
                if !thread.controlled_by_us() {
                    return Ok("refused: this app does not control the thread".to_owned());
                }
                let Some(token) = self.tokens.get(w.page) else {
                    tracing::error!(page_id = %w.page, "no Page access token for this Page");
                    return Ok(format!(
                        "not passed: no Page access token for Page {}",
                        w.page
                    ));
                };
                match self
                    .graph
                    .pass_thread_control(w.page, token, psid, app, metadata.as_deref())
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
                        Ok(format!("passed thread control to app {app}"))
                    }
                    Err(e) => self.graph_failure(w, key, e).await,
                }
            }
        }
    }

    /// A Graph error: retried when Meta says it may pass, otherwise recorded (and
    /// reflected in the thread's state where it tells us something about it).
    async fn graph_failure(
        &self,
        w: &Work<'_>,
        thread: &ThreadKey,
        e: GraphError,
    ) -> Result<String, ProcessError> {
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
        match e.class {
            ErrorClass::TokenInvalid | ErrorClass::PermissionMissing => {
                tracing::error!(page_id = %w.page, error = %e, alert = true, "Graph API refused the Page's credentials: replace the token or grant the permission");
            }
            _ => {
                tracing::warn!(page_id = %w.page, error = %e, "Graph API refused the call; not retried")
            }
        }
        Ok(format!("Graph error: {e}"))
    }
}

/// The parts of one event's processing that the steps share.
struct Work<'a> {
    page: &'a PageId,
    event: &'a Event,
    source: Source,
    key: &'a EventKey,
    claim: &'a ClaimToken,
    done_actions: u32,
    started_actions: u32,
    now: Timestamp,
    deadline: Option<SystemTime>,
}

/// Time until `deadline`. A deadline already past is taken as unknown, not as no
/// time at all: cargo-lambda's local emulator hands every invocation a deadline in
/// 1970.
pub(crate) fn time_left(deadline: SystemTime) -> Duration {
    deadline
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::MAX)
}

/// The processor as deployed.
pub type AwsProcessor = Processor<DynamoStore, GraphClient, DefaultBot, SqsQueue>;

/// The processor's own settings (the secrets come from [`app_config::Secrets`]).
#[derive(Debug, Clone)]
pub struct Config {
    pub table_name: String,
    /// Where the notify fan-out puts per-recipient work (the events queue itself).
    pub events_queue_url: String,
    pub graph_base_url: String,
    pub graph_version: String,
}

impl Config {
    pub fn from_env(env: &impl Lookup) -> Result<Self, ConfigError> {
        Ok(Self {
            table_name: app_config::required(env, "TABLE_NAME")?,
            events_queue_url: app_config::required(env, "EVENTS_QUEUE_URL")?,
            graph_base_url: app_config::optional(
                env,
                "GRAPH_API_BASE_URL",
                graph_api::DEFAULT_BASE_URL.to_owned(),
            )?,
            graph_version: app_config::optional(
                env,
                "GRAPH_API_VERSION",
                graph_api::DEFAULT_VERSION.to_owned(),
            )?,
        })
    }
}

/// Builds the processor from the environment, with the default bot.
pub async fn from_env(env: &impl Lookup, sdk: &SdkConfig) -> Result<AwsProcessor, ConfigError> {
    from_env_with_bot(env, sdk, DefaultBot).await
}

/// Runs the processor as the Lambda function, with `bot` deciding: reads the
/// configuration (failing before the runtime starts when it is incomplete) and
/// serves SQS batches until the runtime stops. The deployed binary is
/// `run(DefaultBot)`; a bot of your own goes in its place (see the README). It
/// installs Lambda's default tracing subscriber (JSON logs under the template's
/// logging config) itself, so `main` must not install one first.
pub async fn run<B: Bot>(bot: B) -> Result<(), lambda_runtime::Error> {
    use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
    use lambda_runtime::{LambdaEvent, service_fn};

    lambda_runtime::tracing::init_default_subscriber();
    let sdk = app_config::aws_sdk_config().await;
    let processor = from_env_with_bot(&app_config::ProcessEnv, &sdk, bot)
        .await
        .inspect_err(|e| tracing::error!(error = %e, "processor cannot start"))?;
    let processor = &processor;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let deadline = event.context.deadline();
        Ok::<SqsBatchResponse, lambda_runtime::Error>(
            processor.handle(event.payload, Some(deadline)).await,
        )
    }))
    .await
}

/// Builds the processor from the environment, with `bot` deciding.
pub async fn from_env_with_bot<B: Bot>(
    env: &impl Lookup,
    sdk: &SdkConfig,
    bot: B,
) -> Result<Processor<DynamoStore, GraphClient, B, SqsQueue>, ConfigError> {
    let config = Config::from_env(env)?;
    let (secrets, origin) = app_config::Secrets::load(env, sdk).await?;
    let tokens = secrets.require_page_tokens(origin)?.clone();
    let graph = GraphClient::new(GraphConfig {
        base_url: config.graph_base_url,
        version: config.graph_version,
        app_secret: secrets.app_secret.clone(),
        ..GraphConfig::default()
    })
    .map_err(|e| ConfigError::Invalid {
        var: "GRAPH_API_BASE_URL",
        reason: e.to_string(),
    })?;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(sdk), config.table_name);
    let queue = SqsQueue::new(aws_sdk_sqs::Client::new(sdk), config.events_queue_url);
    Ok(Processor::new(store, graph, bot, queue, tokens))
}
