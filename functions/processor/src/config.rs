//! The environment, the clients built once, and the Lambda function's `run`.

use std::collections::BTreeMap;

use event_queue::SqsQueue;
use graph_api::{GraphClient, GraphConfig};
use messenger_store::DynamoStore;

use crate::bot::{Bot, DefaultBot};
use crate::{ConfigError, Lookup, Processor, SdkConfig};

/// The processor as deployed.
pub type AwsProcessor = Processor<DynamoStore, GraphClient, DefaultBot, SqsQueue>;

/// The processor's own settings (the secrets come from [`app_config::Secrets`]).
#[derive(Debug, Clone)]
pub struct Config {
    pub table_name: String,
    /// Where the notify fan-out puts per-recipient work (the events queue itself).
    pub events_queue_url: String,
    /// `EVENTS_DLQ_URL`: the events queue's dead-letter queue, where a message that
    /// can never succeed goes on its third delivery. Unset, it is handed back until the queue's
    /// redrive policy moves it (local runs without a DLQ).
    pub events_dlq_url: Option<String>,
    pub graph_base_url: String,
    pub graph_version: String,
    /// The EventBridge bus that what happens is published on (`EVENT_BUS_NAME`);
    /// unset, nothing is published (local runs without a bus).
    pub event_bus_name: Option<String>,
    /// `BOT`: `default` (the bot decides) or `none` (it never does: events are
    /// recorded and published, commands obeyed, nothing else sent).
    pub bot_on: bool,
    /// `TOKEN_KEY_ID`: the KMS key Page tokens are sealed with in the table. Unset,
    /// only the seed's tokens (the secret's `page_access_tokens`) are used.
    pub token_key_id: Option<String>,
    /// `CREDENTIALS_TTL_SECONDS` (default 300): how long a Page's token is used
    /// before it is read from the table again.
    pub credentials_ttl: std::time::Duration,
    /// `APP_ID`: this app's numeric id (optional).
    pub app_id: Option<messenger_types::AppId>,
    /// `HUMAN_PAUSE_HOURS` (default 12, 0 = never pause).
    pub human_pause_hours: u64,
    /// `RETENTION_DAYS`: a thread expires this long after the person's last event
    /// (default 400, at least 366: longer than any notification token it holds).
    pub retention_days: i64,
}

impl Config {
    pub fn from_env(env: &impl Lookup) -> Result<Self, ConfigError> {
        Ok(Self {
            table_name: app_config::required(env, "TABLE_NAME")?,
            events_queue_url: app_config::required(env, "EVENTS_QUEUE_URL")?,
            events_dlq_url: env
                .get("EVENTS_DLQ_URL")
                .map(|url| url.trim().to_owned())
                .filter(|url| !url.is_empty()),
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
            event_bus_name: env
                .get("EVENT_BUS_NAME")
                .filter(|name| !name.trim().is_empty()),
            token_key_id: env
                .get("TOKEN_KEY_ID")
                .map(|id| id.trim().to_owned())
                .filter(|id| !id.is_empty()),
            credentials_ttl: app_config::credentials_ttl(env)?,
            retention_days: match app_config::optional(
                env,
                "RETENTION_DAYS",
                messenger_store::DEFAULT_RETENTION_DAYS,
            )? {
                days if days >= messenger_store::MIN_RETENTION_DAYS => days,
                _ => {
                    return Err(ConfigError::Invalid {
                        var: "RETENTION_DAYS",
                        reason: format!(
                            "must be at least {} (a notification token lives a year)",
                            messenger_store::MIN_RETENTION_DAYS
                        ),
                    });
                }
            },
            app_id: match env.get("APP_ID").map(|v| v.trim().to_owned()) {
                None => None,
                Some(id) if id.is_empty() => None,
                Some(id) if id.bytes().all(|b| b.is_ascii_digit()) => {
                    Some(messenger_types::AppId::new(id))
                }
                Some(_) => {
                    return Err(ConfigError::Invalid {
                        var: "APP_ID",
                        reason: "must be the app's numeric id".to_owned(),
                    });
                }
            },
            human_pause_hours: match app_config::optional(
                env,
                "HUMAN_PAUSE_HOURS",
                crate::DEFAULT_HUMAN_PAUSE_HOURS,
            )? {
                hours if hours <= 24 * 30 => hours,
                _ => {
                    return Err(ConfigError::Invalid {
                        var: "HUMAN_PAUSE_HOURS",
                        reason: "must be between 0 and 720 hours".to_owned(),
                    });
                }
            },
            bot_on: match env.get("BOT").as_deref().map(str::trim) {
                None | Some("" | "default") => true,
                Some("none") => false,
                Some(_) => {
                    return Err(ConfigError::Invalid {
                        var: "BOT",
                        reason: "must be default or none".to_owned(),
                    });
                }
            },
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
    let sdk = app_config::aws_sdk_config_with(crate::budget::SDK_TIMEOUTS).await;
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
    // The seed: Pages without a record in the table use these (local runs).
    let seed = match &config.token_key_id {
        Some(_) => secrets.page_access_tokens.clone(),
        None => secrets.require_page_tokens(origin)?.clone(),
    };
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
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(sdk), config.table_name)
        .with_retention_days(config.retention_days);
    let visibility =
        crate::backoff::SqsVisibility::new(aws_sdk_sqs::Client::new(sdk), &config.events_queue_url);
    let queue = SqsQueue::new(aws_sdk_sqs::Client::new(sdk), config.events_queue_url);
    let key: Box<dyn crate::credentials::TokenKey> = match &config.token_key_id {
        Some(id) => Box::new(crate::credentials::KmsKey::new(
            aws_sdk_kms::Client::new(sdk),
            id.clone(),
        )),
        None => Box::new(crate::credentials::NoKey),
    };
    let senders = crate::sender::Senders::from_env(env)?;
    senders.announce();
    let mut processor = Processor::new(store, graph, bot, queue, BTreeMap::new());
    processor.senders = senders;
    processor.routing = crate::routing::Routing::from_env(env)?;
    processor.visibility = Box::new(visibility);
    match config.events_dlq_url {
        Some(url) => {
            processor.dead_letters = Box::new(crate::dead_letter::SqsDeadLetters::new(
                aws_sdk_sqs::Client::new(sdk),
                url,
            ));
        }
        None => tracing::warn!(
            "EVENTS_DLQ_URL is not set: a message that can never succeed is handed back until the queue's redrive policy moves it"
        ),
    }
    processor.credentials = crate::credentials::Credentials::new(seed, key, config.credentials_ttl);
    processor.bot_on = config.bot_on;
    processor.app_id = config.app_id;
    processor.human_pause = std::time::Duration::from_secs(config.human_pause_hours * 3_600);
    match config.event_bus_name {
        Some(bus) => {
            processor.bus = Box::new(crate::publish::EventBridgeBus::new(
                aws_sdk_eventbridge::Client::new(sdk),
                bus,
            ));
        }
        None => tracing::warn!("EVENT_BUS_NAME is not set: nothing is published"),
    }
    Ok(processor)
}
