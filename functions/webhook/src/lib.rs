//! The webhook function: answers Meta's subscription check, verifies the signature
//! of every delivery over its raw bytes, and puts each event of the delivery on the
//! FIFO events queue before answering 200.
//!
//! [`accept`] holds the logic, generic over the queue and the quarantine;
//! [`http`] maps it onto HTTP; [`sqs`] and [`quarantine`] are the AWS adapters.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod accept;
pub mod credentials;
pub mod deletion;
pub mod http;
pub mod quarantine;
pub mod sqs;
pub mod testing;

use std::time::Duration;

use app_config::{ConfigError, Lookup, SdkConfig, SecretReader, Secrets, SecretsOrigin};

pub use accept::{
    AcceptError, Accepted, EventQueue, OutgoingMessage, Quarantine, Receiver, RetryPolicy,
};
pub use credentials::{AppKeys, Credentials, Refresh};
pub use http::Webhook;
pub use quarantine::S3Quarantine;
pub use sqs::SqsQueue;

/// Meta's payloads are far smaller; API Gateway's own ceiling is 10 MB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 5 * 1024 * 1024;

/// Meta batches at most 1000 updates in one delivery (Webhooks, "Event
/// Notifications"), so a body with more is not Meta's. It is also what the answer
/// budget holds: 1000 events are 100 SendMessageBatch calls in a row, one to three
/// seconds at SQS's usual 10-30 ms a call. A body of more is quarantined whole
/// instead of running into the deadline and being redelivered for hours.
pub const DEFAULT_MAX_EVENTS_PER_DELIVERY: usize = 1000;

/// How long a POST may wait on SQS and S3 before it is answered 503. Meta gives up
/// on a request after about 5 s and then redelivers; answering 503 first, with room
/// for Lambda's and API Gateway's own time, keeps every answer one we chose.
pub const DEFAULT_ANSWER_WITHIN: Duration = Duration::from_millis(3_500);

/// The webhook's own settings (the secrets come from [`Secrets`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub events_queue_url: String,
    pub quarantine_bucket: String,
    pub max_body_bytes: usize,
    pub max_events_per_delivery: usize,
    /// How long the app secret and verify token read from Secrets Manager are used
    /// before they are read again.
    pub credentials_ttl: Duration,
}

impl Config {
    pub fn from_env(env: &impl Lookup) -> Result<Self, ConfigError> {
        let max_body_bytes = app_config::optional(env, "MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES)?;
        if max_body_bytes == 0 {
            return Err(ConfigError::Invalid {
                var: "MAX_BODY_BYTES",
                reason: "must be greater than 0".to_owned(),
            });
        }
        let max_events_per_delivery = app_config::optional(
            env,
            "MAX_EVENTS_PER_DELIVERY",
            DEFAULT_MAX_EVENTS_PER_DELIVERY,
        )?;
        if max_events_per_delivery == 0 {
            return Err(ConfigError::Invalid {
                var: "MAX_EVENTS_PER_DELIVERY",
                reason: "must be greater than 0".to_owned(),
            });
        }
        Ok(Self {
            events_queue_url: app_config::required(env, "EVENTS_QUEUE_URL")?,
            quarantine_bucket: app_config::required(env, "QUARANTINE_BUCKET")?,
            max_body_bytes,
            max_events_per_delivery,
            credentials_ttl: app_config::credentials_ttl(env)?,
        })
    }
}

/// The production wiring: SQS and S3 clients from one SDK configuration.
pub type AwsWebhook = Webhook<SqsQueue, S3Quarantine>;

/// Builds the webhook from the environment, reading the secrets once (and again as
/// [`credentials`] says when they come from Secrets Manager). Fails, naming the
/// variable, when configuration is missing or malformed.
pub async fn from_env(env: &impl Lookup, sdk: &SdkConfig) -> Result<AwsWebhook, ConfigError> {
    let config = Config::from_env(env)?;
    let credentials = match SecretReader::from_env(env, sdk) {
        Some(reader) => {
            let keys = credentials::KeySource::read(&reader).await?;
            Credentials::cached(
                keys,
                Box::new(reader),
                Refresh::every(config.credentials_ttl),
            )
        }
        None => {
            let secrets = Secrets::from_env(env)?;
            let origin = SecretsOrigin::Environment;
            Credentials::fixed(AppKeys::new(
                secrets.require_app_secret(origin)?.clone(),
                secrets.require_verify_token(origin)?.clone(),
            ))
        }
    };
    // Every call a request waits on is bounded so that it is answered in time.
    let sdk = &answering_sdk_config(sdk);
    // The data deletion and deauthorize callbacks record their requests in the
    // table (only `DELETION#` keys); without one they answer 503.
    let log: Box<dyn deletion::DeletionLog> = match env.get("TABLE_NAME") {
        Some(table) if !table.trim().is_empty() => Box::new(deletion::DynamoDeletionLog::new(
            aws_sdk_dynamodb::Client::new(sdk),
            table,
        )),
        _ => Box::new(deletion::NoDeletionLog),
    };
    Ok(Webhook {
        deletion: deletion::DataDeletion {
            credentials: credentials.clone(),
            log,
        },
        receiver: Receiver {
            credentials,
            max_body_bytes: config.max_body_bytes,
            max_events: config.max_events_per_delivery,
            answer_within: DEFAULT_ANSWER_WITHIN,
            queue: SqsQueue::new(aws_sdk_sqs::Client::new(sdk), config.events_queue_url),
            quarantine: S3Quarantine::new(s3_client(sdk), config.quarantine_bucket),
            retry: RetryPolicy::default(),
        },
    })
}

/// The SDK configuration of the clients a request waits on (SQS, S3, DynamoDB).
/// One stalled call fails after at most 3 s: two attempts of 1.5 s (a connection
/// taking 1 s), the retry after at most 200 ms. [`DEFAULT_ANSWER_WITHIN`] bounds
/// the sum of a POST's calls; the bounds here keep one call from using it all, so
/// a refused batch entry still has time for its retry round.
pub fn answering_sdk_config(sdk: &SdkConfig) -> SdkConfig {
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(1))
        .operation_attempt_timeout(Duration::from_millis(1_500))
        .operation_timeout(Duration::from_secs(3))
        .build();
    let retries = aws_config::retry::RetryConfig::standard()
        .with_max_attempts(2)
        .with_initial_backoff(Duration::from_millis(200));
    sdk.to_builder()
        .timeout_config(timeouts)
        .retry_config(retries)
        .build()
}

/// An S3 client; path-style addressing when `AWS_ENDPOINT_URL` points at a local
/// emulator, whose host name cannot carry the bucket as a subdomain.
pub fn s3_client(sdk: &SdkConfig) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(sdk.endpoint_url().is_some())
        .build();
    aws_sdk_s3::Client::from_conf(config)
}
