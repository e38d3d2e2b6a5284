//! `messenger doctor`: whether a stack (deployed, or the local one) can work, one
//! line per check: the secret's fields, the webhook's answer to Meta's subscription
//! check, each Page's token and subscription, the queue, the dead-letter queue, the
//! table and the alarms' topic. Any failure exits 1.
//!
//! Secrets are said to be "set" or "missing", never shown: not the app secret, not
//! the verify token (sent to the webhook only), not a Page token.

use std::collections::BTreeSet;

use app_config::{Lookup, SdkConfig, Secrets, SecretsOrigin};
use aws_sdk_sqs::types::QueueAttributeName;
use messenger_store::PageRegistry;
use messenger_types::PageId;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use crate::Result;
use crate::ops::{WEBHOOK_FIELDS, describe};
use crate::settings::{Env, fresh_id};

/// What one check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    Fail,
    /// Does not apply here (the local stack has no alarm topic).
    Skip,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Fail => "FAIL",
            Self::Skip => "skip",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Check {
    pub name: String,
    pub status: Status,
    pub detail: String,
}

fn check(name: impl Into<String>, status: Status, detail: impl Into<String>) -> Check {
    Check {
        name: name.into(),
        status,
        detail: detail.into(),
    }
}

fn from(name: impl Into<String>, result: Result<String>) -> Check {
    match result {
        Ok(detail) => check(name, Status::Ok, detail),
        Err(e) => check(name, Status::Fail, e.to_string()),
    }
}

/// Runs every check, prints one line each (or one JSON document), and fails when
/// any check failed.
pub async fn doctor(env: &Env, sdk: &SdkConfig, json_out: bool) -> Result<()> {
    let checks = run(env, sdk).await;
    let failed = checks.iter().filter(|c| c.status == Status::Fail).count();
    if json_out {
        let lines: Vec<Value> = checks
            .iter()
            .map(|c| json!({"check": c.name, "status": c.status.as_str().to_lowercase(), "detail": c.detail}))
            .collect();
        println!("{}", json!({"ok": failed == 0, "checks": lines}));
    } else {
        for c in &checks {
            println!("{:<4} {}: {}", c.status.as_str(), c.name, c.detail);
        }
    }
    match failed {
        0 => Ok(()),
        n => Err(format!("{n} of {} checks failed", checks.len()).into()),
    }
}

async fn run(env: &Env, sdk: &SdkConfig) -> Vec<Check> {
    let mut checks = Vec::new();
    let secrets = Secrets::load(env, sdk).await;
    checks.push(secret_check(&secrets));
    let secrets = secrets.ok().map(|(s, _)| s).unwrap_or_default();
    checks.push(webhook_check(env, secrets.verify_token.as_ref()).await);
    checks.extend(page_checks(env, sdk, &secrets).await);
    checks.push(from(
        "queue",
        queue_check(sdk, env.get("EVENTS_QUEUE_URL"), "EVENTS_QUEUE_URL").await,
    ));
    checks.push(from(
        "dlq",
        queue_check(sdk, env.get("EVENTS_DLQ_URL"), "EVENTS_DLQ_URL").await,
    ));
    checks.push(from("table", table_check(env, sdk).await));
    checks.push(alarm_check(env, sdk).await);
    checks
}

fn secret_check(
    loaded: &std::result::Result<(Secrets, SecretsOrigin), app_config::ConfigError>,
) -> Check {
    let (secrets, origin) = match loaded {
        Ok(found) => found,
        Err(e) => return check("secret", Status::Fail, e.to_string()),
    };
    let set = |present: bool| if present { "set" } else { "missing" };
    let detail = format!(
        "app_secret {}, verify_token {}, page_access_tokens {} Page(s) ({})",
        set(secrets.app_secret.is_some()),
        set(secrets.verify_token.is_some()),
        secrets.page_access_tokens.len(),
        match origin {
            SecretsOrigin::SecretsManager => "Secrets Manager, SECRET_ARN",
            SecretsOrigin::Environment => "the environment",
        }
    );
    let status = match secrets.app_secret.is_some() && secrets.verify_token.is_some() {
        true => Status::Ok,
        false => Status::Fail,
    };
    check("secret", status, detail)
}

/// Meta's subscription check, as Meta sends it: the webhook must answer 200 with
/// the challenge.
async fn webhook_check(env: &Env, verify_token: Option<&SecretString>) -> Check {
    let Some(url) = env.get("WEBHOOK_URL") else {
        return check(
            "webhook",
            Status::Fail,
            "WEBHOOK_URL is not set (the stack's WebhookUrl output)",
        );
    };
    let Some(token) = verify_token else {
        return check(
            "webhook",
            Status::Fail,
            "not asked: the secret has no verify_token",
        );
    };
    let challenge = fresh_id();
    let answer = async {
        let response = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()?
            .get(&url)
            .query(&[
                ("hub.mode", "subscribe"),
                ("hub.verify_token", token.expose_secret()),
                ("hub.challenge", challenge.as_str()),
            ])
            .send()
            .await?;
        let status = response.status();
        let body = response.text().await?;
        Ok::<_, reqwest::Error>((status, body))
    };
    match answer.await {
        Ok((status, body)) if status == reqwest::StatusCode::OK && body == challenge => check(
            "webhook",
            Status::Ok,
            format!("GET {url} answers the verify token with the challenge"),
        ),
        Ok((status, _)) => check(
            "webhook",
            Status::Fail,
            format!(
                "GET {url} answered {status}, not 200 with the challenge (is the secret's verify_token the one the webhook reads?)"
            ),
        ),
        // The request's URL (with the token in its query) is left out of the error.
        Err(e) => check(
            "webhook",
            Status::Fail,
            format!("GET {url} failed: {}", describe(&e.without_url())),
        ),
    }
}

/// Every Page the stack knows (the secret's and the table's), each with two
/// checks: its token (`debug_token`) and its subscription (every field).
async fn page_checks(env: &Env, sdk: &SdkConfig, secrets: &Secrets) -> Vec<Check> {
    let mut pages: BTreeSet<PageId> = secrets.page_access_tokens.keys().cloned().collect();
    if let Some(table) = env.get("TABLE_NAME") {
        let store = messenger_store::DynamoStore::new(aws_sdk_dynamodb::Client::new(sdk), table);
        match store.page_records().await {
            Ok(records) => pages.extend(records.into_iter().map(|(page, _)| page)),
            Err(e) => {
                return vec![check(
                    "pages",
                    Status::Fail,
                    format!("cannot list the Pages in the table: {e}"),
                )];
            }
        }
    }
    if pages.is_empty() {
        return vec![check(
            "pages",
            Status::Fail,
            "no Page has a token: connect one (messenger page connect)",
        )];
    }
    let graph = match crate::pages::graph(env, secrets.app_secret.clone()) {
        Ok(graph) => graph,
        Err(e) => return vec![check("pages", Status::Fail, e.to_string())],
    };
    let app_id = env.get("APP_ID").filter(|id| !id.trim().is_empty());
    let wanted: Vec<&str> = WEBHOOK_FIELDS.split(',').collect();
    let mut checks = Vec::new();
    for page in pages {
        let token = match crate::pages::page_token(env, sdk, &page).await {
            Ok(token) => token,
            Err(e) => {
                checks.push(check(
                    format!("page {page} token"),
                    Status::Fail,
                    e.to_string(),
                ));
                continue;
            }
        };
        let info = match (&app_id, &secrets.app_secret) {
            (Some(app_id), Some(secret)) => graph.debug_token(app_id, secret, &token).await,
            _ => graph.debug_own_token(&token).await,
        };
        checks.push(match info {
            Ok(info) if info.is_valid => check(
                format!("page {page} token"),
                Status::Ok,
                match info.expires_at {
                    0 => "valid, does not expire".to_owned(),
                    at => format!("valid, expires at {at} (seconds since the epoch)"),
                },
            ),
            Ok(_) => check(
                format!("page {page} token"),
                Status::Fail,
                "not valid (debug_token): connect the Page again (messenger page connect)",
            ),
            Err(e) => check(
                format!("page {page} token"),
                Status::Fail,
                format!("debug_token failed: {e}"),
            ),
        });
        let subscribed = graph
            .subscribed_fields(&page, &token, app_id.as_deref())
            .await;
        checks.push(match subscribed {
            Ok(fields) => {
                let missing: Vec<&str> = wanted
                    .iter()
                    .copied()
                    .filter(|f| !fields.iter().any(|have| have == f))
                    .collect();
                match missing.as_slice() {
                    [] => check(
                        format!("page {page} subscription"),
                        Status::Ok,
                        format!("all {} webhook fields", wanted.len()),
                    ),
                    _ => check(
                        format!("page {page} subscription"),
                        Status::Fail,
                        format!(
                            "missing {} (messenger page subscribe --page {page})",
                            missing.join(",")
                        ),
                    ),
                }
            }
            Err(e) => check(
                format!("page {page} subscription"),
                Status::Fail,
                format!("subscribed_apps failed: {e}"),
            ),
        });
    }
    checks
}

async fn queue_check(sdk: &SdkConfig, url: Option<String>, var: &str) -> Result<String> {
    let url = url.ok_or_else(|| format!("{var} is not set (the stack's outputs)"))?;
    let attributes = aws_sdk_sqs::Client::new(sdk)
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .map_err(|e| format!("{url}: {}", describe(&e)))?;
    let waiting = attributes
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::ApproximateNumberOfMessages))
        .cloned()
        .unwrap_or_else(|| "?".to_owned());
    Ok(format!("reachable, {waiting} message(s) waiting"))
}

async fn table_check(env: &Env, sdk: &SdkConfig) -> Result<String> {
    let table = env
        .get("TABLE_NAME")
        .ok_or("TABLE_NAME is not set (the stack's outputs)")?;
    let described = aws_sdk_dynamodb::Client::new(sdk)
        .describe_table()
        .table_name(&table)
        .send()
        .await
        .map_err(|e| format!("{table}: {}", describe(&e)))?;
    let status = described
        .table()
        .and_then(|t| t.table_status())
        .map(|s| s.as_str().to_owned())
        .unwrap_or_default();
    match status.as_str() {
        "ACTIVE" => Ok(format!("{table} ACTIVE")),
        other => Err(format!("{table} is {other}, not ACTIVE").into()),
    }
}

/// The alarms' SNS topic has at least one confirmed subscription: an alarm nobody
/// receives is no alarm.
async fn alarm_check(env: &Env, sdk: &SdkConfig) -> Check {
    let Some(topic) = env.get("ALARM_TOPIC_ARN") else {
        return match env.is_set("AWS_ENDPOINT_URL") {
            true => check(
                "alarms",
                Status::Skip,
                "no alarm topic (the local stack has no alarms)",
            ),
            false => check(
                "alarms",
                Status::Fail,
                "ALARM_TOPIC_ARN is not set (the stack's AlarmTopicArn output)",
            ),
        };
    };
    let listed = aws_sdk_sns::Client::new(sdk)
        .list_subscriptions_by_topic()
        .topic_arn(&topic)
        .send()
        .await;
    let subscriptions = match listed {
        Ok(listed) => listed.subscriptions().to_vec(),
        Err(e) => return check("alarms", Status::Fail, format!("{topic}: {}", describe(&e))),
    };
    // A subscription not yet confirmed has no ARN of its own.
    let confirmed: Vec<&str> = subscriptions
        .iter()
        .filter(|s| {
            s.subscription_arn()
                .is_some_and(|arn| arn.starts_with("arn:"))
        })
        .filter_map(|s| s.protocol())
        .collect();
    match (confirmed.len(), subscriptions.len()) {
        (0, 0) => check(
            "alarms",
            Status::Fail,
            "the alarm topic has no subscription: deploy with AlarmEmail, or subscribe to AlarmTopicArn",
        ),
        (0, pending) => check(
            "alarms",
            Status::Fail,
            format!("{pending} subscription(s), none confirmed: confirm the email AWS sent"),
        ),
        (n, _) => check(
            "alarms",
            Status::Ok,
            format!("{n} confirmed subscription(s) ({})", confirmed.join(", ")),
        ),
    }
}
