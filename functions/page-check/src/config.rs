//! The Page check's settings, and the check wired as deployed.

use std::time::Duration;

use app_config::{SecretReader, Secrets};
use graph_api::GraphConfig;
use messenger_store::DynamoStore;
use messenger_types::Timestamp;
use processor::credentials::KmsKey;
use processor::publish::{Bus, EventBridgeBus, NoBus};

use crate::{
    CheckConfig, ConfigError, DEFAULT_BUDGET_SECONDS, GRAPH_TIMEOUT, Lookup, MAX_BUDGET_SECONDS,
    PageCheck, SdkConfig, SecretSource,
};

/// The check's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub table_name: String,
    pub token_key_id: String,
    pub graph_base_url: String,
    pub graph_version: String,
    pub event_bus_name: Option<String>,
    pub app_id: Option<String>,
    pub check: CheckConfig,
}

impl Config {
    /// `TABLE_NAME` and `TOKEN_KEY_ID` (required), `GRAPH_API_BASE_URL`,
    /// `GRAPH_API_VERSION`, `EVENT_BUS_NAME`, `APP_ID` (optional),
    /// `PAGE_CHECK_BUDGET_SECONDS` (1 to 900, default 100: used when the
    /// invocation's deadline is unknown).
    pub fn from_env(env: &impl Lookup) -> Result<Self, ConfigError> {
        let optional_text = |var: &str| {
            env.get(var)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let budget =
            app_config::optional(env, "PAGE_CHECK_BUDGET_SECONDS", DEFAULT_BUDGET_SECONDS)?;
        if !(1..=MAX_BUDGET_SECONDS).contains(&budget) {
            return Err(ConfigError::Invalid {
                var: "PAGE_CHECK_BUDGET_SECONDS",
                reason: format!("must be between 1 and {MAX_BUDGET_SECONDS} seconds"),
            });
        }
        let app_id = optional_text("APP_ID");
        if let Some(id) = &app_id
            && !id.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(ConfigError::Invalid {
                var: "APP_ID",
                reason: "must be the app's numeric id".to_owned(),
            });
        }
        Ok(Self {
            table_name: app_config::required(env, "TABLE_NAME")?.trim().to_owned(),
            token_key_id: app_config::required(env, "TOKEN_KEY_ID")?.trim().to_owned(),
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
            event_bus_name: optional_text("EVENT_BUS_NAME"),
            app_id,
            check: CheckConfig {
                fallback_budget: Duration::from_secs(budget),
                ..CheckConfig::default()
            },
        })
    }
}

/// The check as deployed.
pub type AwsPageCheck = PageCheck<DynamoStore>;

/// Builds the check from the environment.
pub fn from_env(env: &impl Lookup, sdk: &SdkConfig) -> Result<AwsPageCheck, ConfigError> {
    let config = Config::from_env(env)?;
    let secrets = match SecretReader::from_env(env, sdk) {
        Some(reader) => SecretSource::Manager(reader),
        None => SecretSource::Environment(Secrets::from_env(env)?),
    };
    let bus: Box<dyn Bus> = match &config.event_bus_name {
        Some(name) => Box::new(EventBridgeBus::new(
            aws_sdk_eventbridge::Client::new(sdk),
            name,
        )),
        None => Box::new(NoBus),
    };
    Ok(PageCheck {
        store: DynamoStore::new(aws_sdk_dynamodb::Client::new(sdk), config.table_name),
        key: Box::new(KmsKey::new(
            aws_sdk_kms::Client::new(sdk),
            config.token_key_id,
        )),
        bus,
        secrets,
        graph: GraphConfig {
            base_url: config.graph_base_url,
            version: config.graph_version,
            app_secret: None,
            timeout: GRAPH_TIMEOUT,
        },
        app_id: config.app_id,
        config: config.check,
        clock: Timestamp::now,
    })
}
