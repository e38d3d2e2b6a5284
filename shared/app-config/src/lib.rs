//! Configuration shared by the functions: environment variables, the app's secrets
//! (from Secrets Manager when `SECRET_ARN` is set, from the environment otherwise)
//! and the AWS SDK configuration.
//!
//! Every error names the variable or secret field at fault and never its value.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use messenger_types::PageId;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

pub use aws_config::SdkConfig;

/// Reads one environment variable. Functions read `std::env::var`; tests pass a map.
pub trait Lookup {
    fn get(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Lookup for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Lookup for BTreeMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        BTreeMap::get(self, name).cloned()
    }
}

impl<const N: usize> Lookup for [(&str, &str); N] {
    fn get(&self, name: &str) -> Option<String> {
        self.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("missing configuration: {0} is not set")]
    Missing(&'static str),
    #[error("invalid configuration: {var} {reason}")]
    Invalid { var: &'static str, reason: String },
    #[error("could not read the secret named by SECRET_ARN: {0}")]
    SecretUnavailable(String),
}

/// A non-empty variable, or the error naming it.
pub fn required(env: &impl Lookup, var: &'static str) -> Result<String, ConfigError> {
    env.get(var)
        .filter(|v| !v.trim().is_empty())
        .ok_or(ConfigError::Missing(var))
}

/// A variable parsed as `T`, or `default` when it is unset or empty.
pub fn optional<T: FromStr>(
    env: &impl Lookup,
    var: &'static str,
    default: T,
) -> Result<T, ConfigError>
where
    T::Err: fmt::Display,
{
    match env.get(var).filter(|v| !v.trim().is_empty()) {
        None => Ok(default),
        Some(v) => v.trim().parse().map_err(|e| ConfigError::Invalid {
            var,
            reason: format!("is not valid: {e}"),
        }),
    }
}

/// A comma-separated list (`WEBHOOK_SENDER_ID`-style ids, ARNs): its items
/// trimmed, empty ones dropped; unset or empty is an empty list. An item with a
/// space or a comma inside cannot be one id, so none is accepted.
pub fn list(env: &impl Lookup, var: &'static str) -> Result<Vec<String>, ConfigError> {
    let items: Vec<String> = env
        .get(var)
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect();
    match items.iter().find(|item| item.contains(char::is_whitespace)) {
        Some(_) => Err(ConfigError::Invalid {
            var,
            reason: "must be a comma-separated list of ids without spaces".to_owned(),
        }),
        None => Ok(items),
    }
}

/// The app's secrets. `Debug` shows which are present, never their values.
#[derive(Clone, Default)]
pub struct Secrets {
    pub app_secret: Option<SecretString>,
    pub verify_token: Option<SecretString>,
    pub page_access_tokens: BTreeMap<PageId, SecretString>,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secrets")
            .field("app_secret", &self.app_secret.as_ref().map(|_| "<set>"))
            .field("verify_token", &self.verify_token.as_ref().map(|_| "<set>"))
            .field(
                "page_access_tokens",
                &self.page_access_tokens.keys().collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Where the secrets were read from, so errors can name the right thing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretsOrigin {
    SecretsManager,
    Environment,
}

/// The secret's JSON in Secrets Manager (see the README).
#[derive(Deserialize)]
struct SecretDocument {
    #[serde(default)]
    app_secret: Option<SecretString>,
    #[serde(default)]
    verify_token: Option<SecretString>,
    #[serde(default)]
    page_access_tokens: BTreeMap<PageId, SecretString>,
}

impl Secrets {
    /// Reads the secrets: from the Secrets Manager secret named by `SECRET_ARN` when
    /// it is set (it wins), else from `APP_SECRET`, `VERIFY_TOKEN` and
    /// `PAGE_ACCESS_TOKENS`.
    pub async fn load(
        env: &impl Lookup,
        sdk: &SdkConfig,
    ) -> Result<(Self, SecretsOrigin), ConfigError> {
        match SecretReader::from_env(env, sdk) {
            Some(reader) => Ok((reader.read().await?, SecretsOrigin::SecretsManager)),
            None => Ok((Self::from_env(env)?, SecretsOrigin::Environment)),
        }
    }

    /// Parses the Secrets Manager document
    /// `{"app_secret": "...", "verify_token": "...", "page_access_tokens": {"<page id>": "..."}}`.
    pub fn from_secret_json(text: &str) -> Result<Self, ConfigError> {
        let doc: SecretDocument = serde_json::from_str(text).map_err(|e| {
            // serde_json's message names the line and column, not the content.
            ConfigError::SecretUnavailable(format!(
                "the secret is not the documented JSON object (line {}, column {})",
                e.line(),
                e.column()
            ))
        })?;
        Ok(Self {
            app_secret: doc.app_secret.filter(non_empty),
            verify_token: doc.verify_token.filter(non_empty),
            page_access_tokens: doc.page_access_tokens,
        })
    }

    pub fn from_env(env: &impl Lookup) -> Result<Self, ConfigError> {
        let tokens =
            match env
                .get("PAGE_ACCESS_TOKENS")
                .filter(|v| !v.trim().is_empty())
            {
                None => BTreeMap::new(),
                Some(json) => serde_json::from_str::<BTreeMap<PageId, SecretString>>(&json)
                    .map_err(|_| ConfigError::Invalid {
                        var: "PAGE_ACCESS_TOKENS",
                        reason: "must be a JSON object {\"<page id>\": \"<page access token>\"}"
                            .to_owned(),
                    })?,
            };
        Ok(Self {
            app_secret: env
                .get("APP_SECRET")
                .map(SecretString::from)
                .filter(non_empty),
            verify_token: env
                .get("VERIFY_TOKEN")
                .map(SecretString::from)
                .filter(non_empty),
            page_access_tokens: tokens,
        })
    }

    /// The app secret, or an error naming where it should have been.
    pub fn require_app_secret(&self, origin: SecretsOrigin) -> Result<&SecretString, ConfigError> {
        self.app_secret.as_ref().ok_or(match origin {
            SecretsOrigin::SecretsManager => {
                ConfigError::SecretUnavailable("the secret has no \"app_secret\" field".to_owned())
            }
            SecretsOrigin::Environment => ConfigError::Missing("APP_SECRET"),
        })
    }

    /// The Page access tokens (at least one), or an error naming where they should
    /// have been.
    pub fn require_page_tokens(
        &self,
        origin: SecretsOrigin,
    ) -> Result<&BTreeMap<PageId, SecretString>, ConfigError> {
        if self.page_access_tokens.is_empty() {
            return Err(match origin {
                SecretsOrigin::SecretsManager => ConfigError::SecretUnavailable(
                    "the secret's \"page_access_tokens\" object is empty".to_owned(),
                ),
                SecretsOrigin::Environment => ConfigError::Missing("PAGE_ACCESS_TOKENS"),
            });
        }
        Ok(&self.page_access_tokens)
    }

    /// The webhook verify token, or an error naming where it should have been.
    pub fn require_verify_token(
        &self,
        origin: SecretsOrigin,
    ) -> Result<&SecretString, ConfigError> {
        self.verify_token.as_ref().ok_or(match origin {
            SecretsOrigin::SecretsManager => ConfigError::SecretUnavailable(
                "the secret has no \"verify_token\" field".to_owned(),
            ),
            SecretsOrigin::Environment => ConfigError::Missing("VERIFY_TOKEN"),
        })
    }
}

/// The Secrets Manager secret named by `SECRET_ARN`, read as often as asked: once at
/// start by [`Secrets::load`], and again by a function's credentials cache.
#[derive(Debug, Clone)]
pub struct SecretReader {
    client: aws_sdk_secretsmanager::Client,
    arn: String,
}

impl SecretReader {
    /// The reader of the secret `SECRET_ARN` names, or `None` when it is not set
    /// (the secrets then come from the environment).
    pub fn from_env(env: &impl Lookup, sdk: &SdkConfig) -> Option<Self> {
        let arn = env.get("SECRET_ARN").filter(|v| !v.trim().is_empty())?;
        Some(Self {
            client: aws_sdk_secretsmanager::Client::new(sdk),
            arn: arn.trim().to_owned(),
        })
    }

    /// Reads the secret's current value.
    pub async fn read(&self) -> Result<Secrets, ConfigError> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(&self.arn)
            .send()
            .await
            .map_err(|e| {
                ConfigError::SecretUnavailable(
                    aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string(),
                )
            })?;
        let text = out.secret_string().ok_or_else(|| {
            ConfigError::SecretUnavailable("the secret has no SecretString".to_owned())
        })?;
        Secrets::from_secret_json(text)
    }
}

/// How long credentials read from Secrets Manager are used before they are read
/// again, unless `CREDENTIALS_TTL_SECONDS` says otherwise.
pub const DEFAULT_CREDENTIALS_TTL: Duration = Duration::from_secs(300);
/// The longest `CREDENTIALS_TTL_SECONDS` taken: a rotated secret shows within a day
/// even where nothing else makes a function read it again.
pub const MAX_CREDENTIALS_TTL: Duration = Duration::from_secs(86_400);

/// `CREDENTIALS_TTL_SECONDS`: whole seconds from 0 (read on every use) to a day;
/// [`DEFAULT_CREDENTIALS_TTL`] when unset or empty.
pub fn credentials_ttl(env: &impl Lookup) -> Result<Duration, ConfigError> {
    const VAR: &str = "CREDENTIALS_TTL_SECONDS";
    let Some(value) = env.get(VAR).filter(|v| !v.trim().is_empty()) else {
        return Ok(DEFAULT_CREDENTIALS_TTL);
    };
    value
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
        .filter(|ttl| *ttl <= MAX_CREDENTIALS_TTL)
        .ok_or_else(|| ConfigError::Invalid {
            var: VAR,
            reason: format!(
                "must be a whole number of seconds from 0 (read on every use) to {}",
                MAX_CREDENTIALS_TTL.as_secs()
            ),
        })
}

fn non_empty(s: &SecretString) -> bool {
    !s.expose_secret().trim().is_empty()
}

/// How long an AWS call may take: to connect, per attempt, and in all (the SDK's
/// own retries included). `operation` is the most one call can cost a function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SdkTimeouts {
    pub connect: Duration,
    pub attempt: Duration,
    pub operation: Duration,
}

/// The timeouts of the functions that do not set their own.
pub const DEFAULT_SDK_TIMEOUTS: SdkTimeouts = SdkTimeouts {
    connect: Duration::from_secs(2),
    attempt: Duration::from_secs(4),
    operation: Duration::from_secs(10),
};

/// The AWS SDK configuration every function shares: region, credentials and
/// `AWS_ENDPOINT_URL` from the SDK's own variables, with bounded timeouts so a
/// stalled dependency turns into an error well inside the function's own timeout.
pub async fn aws_sdk_config() -> SdkConfig {
    aws_sdk_config_with(DEFAULT_SDK_TIMEOUTS).await
}

/// [`aws_sdk_config`] with a function's own timeouts.
pub async fn aws_sdk_config_with(t: SdkTimeouts) -> SdkConfig {
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(t.connect)
        .operation_attempt_timeout(t.attempt)
        .operation_timeout(t.operation)
        .build();
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .timeout_config(timeouts)
        .load()
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_invalid_variables_are_named() {
        let env = [("MAX_BODY_BYTES", "five"), ("EMPTY", "  ")];
        assert_eq!(
            required(&env, "EVENTS_QUEUE_URL").unwrap_err().to_string(),
            "missing configuration: EVENTS_QUEUE_URL is not set"
        );
        assert!(matches!(
            required(&env, "EMPTY"),
            Err(ConfigError::Missing("EMPTY"))
        ));
        let err = optional(&env, "MAX_BODY_BYTES", 5usize).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid configuration: MAX_BODY_BYTES")
        );
        assert_eq!(optional(&env, "UNSET", 7usize).unwrap(), 7);
    }

    #[test]
    fn credentials_ttl_defaults_to_five_minutes_and_refuses_what_is_not_whole_seconds() {
        assert_eq!(
            credentials_ttl(&[("X", "1")]).unwrap(),
            DEFAULT_CREDENTIALS_TTL
        );
        assert_eq!(
            credentials_ttl(&[("CREDENTIALS_TTL_SECONDS", " ")]).unwrap(),
            DEFAULT_CREDENTIALS_TTL
        );
        assert_eq!(
            credentials_ttl(&[("CREDENTIALS_TTL_SECONDS", "60")]).unwrap(),
            Duration::from_secs(60)
        );
        assert_eq!(
            credentials_ttl(&[("CREDENTIALS_TTL_SECONDS", "0")]).unwrap(),
            Duration::ZERO
        );
        for bad in ["-1", "1.5", "5m", "86401", "99999999999999999999"] {
            let err = credentials_ttl(&[("CREDENTIALS_TTL_SECONDS", bad)]).unwrap_err();
            assert!(
                matches!(
                    err,
                    ConfigError::Invalid {
                        var: "CREDENTIALS_TTL_SECONDS",
                        ..
                    }
                ),
                "{bad}: {err}"
            );
            assert!(err.to_string().contains("whole number of seconds"), "{err}");
        }
    }

    #[test]
    fn secrets_from_env_and_their_debug_hides_values() {
        let env = [
            ("APP_SECRET", "shh-app"),
            ("VERIFY_TOKEN", "shh-verify"),
            ("PAGE_ACCESS_TOKENS", r#"{"111":"shh-page"}"#),
        ];
        let s = Secrets::from_env(&env).unwrap();
        assert_eq!(s.app_secret.as_ref().unwrap().expose_secret(), "shh-app");
        assert_eq!(
            s.page_access_tokens[&PageId::new("111")].expose_secret(),
            "shh-page"
        );
        let debug = format!("{s:?}");
        assert!(!debug.contains("shh"), "{debug}");
        assert!(debug.contains("111"));
    }

    #[test]
    fn malformed_page_tokens_are_refused_without_echoing_them() {
        let env = [("PAGE_ACCESS_TOKENS", r#"{"111": ["shh-page"]}"#)];
        let err = Secrets::from_env(&env).unwrap_err().to_string();
        assert!(err.contains("PAGE_ACCESS_TOKENS"));
        assert!(!err.contains("shh"), "{err}");
    }

    #[test]
    fn secret_document_is_parsed_and_errors_hide_content() {
        let s = Secrets::from_secret_json(
            r#"{"app_secret":"a","verify_token":"","page_access_tokens":{"1":"t"}}"#,
        )
        .unwrap();
        assert!(s.app_secret.is_some());
        assert!(s.verify_token.is_none(), "an empty value counts as missing");
        let err = s
            .require_verify_token(SecretsOrigin::SecretsManager)
            .unwrap_err();
        assert!(err.to_string().contains("\"verify_token\""));

        let err = Secrets::from_secret_json(r#"{"app_secret": shh-not-json}"#)
            .unwrap_err()
            .to_string();
        assert!(!err.contains("shh"), "{err}");
        let err = Secrets::default()
            .require_app_secret(SecretsOrigin::Environment)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "missing configuration: APP_SECRET is not set"
        );
    }
}
