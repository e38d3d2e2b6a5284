//! The webhook function: answers Meta's subscription check, verifies the signature
//! of every delivery over its raw bytes, and puts each event of the delivery on the
//! FIFO events queue before answering 200.
//!
//! [`accept`] holds the logic, generic over the queue and the quarantine;
//! [`http`] maps it onto HTTP; [`sqs`] and [`quarantine`] are the AWS adapters.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod accept;
pub mod deletion;
pub mod http;
pub mod quarantine;
pub mod sqs;
pub mod testing;

use app_config::{ConfigError, Lookup, SdkConfig, Secrets};
use hub_signature::Verifier;
use secrecy::ExposeSecret;

pub use accept::{
    AcceptError, Accepted, EventQueue, OutgoingMessage, Quarantine, Receiver, RetryPolicy,
};
pub use http::Webhook;
pub use quarantine::S3Quarantine;
pub use sqs::SqsQueue;

/// Meta's payloads are far smaller; API Gateway's own ceiling is 10 MB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 5 * 1024 * 1024;

/// The webhook's own settings (the secrets come from [`Secrets`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub events_queue_url: String,
    pub quarantine_bucket: String,
    pub max_body_bytes: usize,
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
        Ok(Self {
            events_queue_url: app_config::required(env, "EVENTS_QUEUE_URL")?,
            quarantine_bucket: app_config::required(env, "QUARANTINE_BUCKET")?,
            max_body_bytes,
        })
    }
}

/// The production wiring: SQS and S3 clients from one SDK configuration.
pub type AwsWebhook = Webhook<SqsQueue, S3Quarantine>;

/// Builds the webhook from the environment, reading the secrets once. Fails, naming
/// the variable, when configuration is missing or malformed.
pub async fn from_env(env: &impl Lookup, sdk: &SdkConfig) -> Result<AwsWebhook, ConfigError> {
    let config = Config::from_env(env)?;
    let (secrets, origin) = Secrets::load(env, sdk).await?;
    let app_secret = secrets.require_app_secret(origin)?.clone();
    let verifier = Verifier::new(app_secret.expose_secret().as_bytes());
    let verify_token = secrets.require_verify_token(origin)?.clone();
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
        verify_token,
        deletion: deletion::DataDeletion { app_secret, log },
        receiver: Receiver {
            verifier,
            max_body_bytes: config.max_body_bytes,
            queue: SqsQueue::new(aws_sdk_sqs::Client::new(sdk), config.events_queue_url),
            quarantine: S3Quarantine::new(s3_client(sdk), config.quarantine_bucket),
            retry: RetryPolicy::default(),
        },
    })
}

/// An S3 client; path-style addressing when `AWS_ENDPOINT_URL` points at a local
/// emulator, whose host name cannot carry the bucket as a subdomain.
pub fn s3_client(sdk: &SdkConfig) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(sdk.endpoint_url().is_some())
        .build();
    aws_sdk_s3::Client::from_conf(config)
}
