//! `messenger page ...`: each Page's token (sealed in the table with the stack's
//! KMS key), its status, its parked messages and its subscription.

use std::collections::BTreeMap;

use app_config::{Lookup, SdkConfig};
use messenger_store::{DynamoStore, PageRecord, PageRegistry, PageStatus};
use messenger_types::{PageId, Timestamp};
use processor::credentials::{KmsKey, TokenKey};
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::Result;
use crate::ops::{FROM_OUTPUTS, WEBHOOK_FIELDS, read_stdin};
use crate::settings::Env;

#[derive(Debug, clap::Subcommand)]
pub enum PageCommand {
    /// Subscribe the app to the Page's webhooks (POST /{page-id}/subscribed_apps,
    /// with appsecret_proof), with the Page's token from the table (or the seed).
    Subscribe {
        #[arg(long, env = "PAGE_ID")]
        page: String,
        /// The webhook fields (comma-separated).
        #[arg(long, default_value = WEBHOOK_FIELDS)]
        fields: String,
    },
    /// Connect Pages: a user (or system user) token on stdin is made long-lived
    /// (fb_exchange_token), the Pages it manages are listed (me/accounts), and each
    /// chosen Page's token is checked (debug_token), stored sealed in the table
    /// (its parked messages replayed) and subscribed to every webhook field the
    /// backend handles, with appsecret_proof.
    Connect {
        /// The Pages to connect (repeat); default: every Page the user manages.
        #[arg(long)]
        page: Vec<String>,
        /// The Meta app's id (App settings > Basic).
        #[arg(long, env = "APP_ID")]
        app_id: String,
        #[arg(long)]
        json: bool,
    },
    /// Store the Page's access token, read from stdin so it stays out of shell
    /// history: sealed with the stack's key (TOKEN_KEY_ID) in the table, used by
    /// the running functions within CREDENTIALS_TTL_SECONDS, and the Page's parked
    /// messages put back on the queue.
    StoreToken {
        #[arg(long, env = "PAGE_ID")]
        page: String,
        #[arg(long)]
        json: bool,
    },
    /// Each Page's status (ACTIVE, INVALID, MISSING), why, since when, how many
    /// messages are parked, and the fields its subscription has (asked of Graph
    /// with the stored token).
    Status {
        /// Only this Page.
        #[arg(long)]
        page: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Ask the processor to put the Page's parked messages back on the events queue,
    /// oldest first (a `replay_parked` message: the processor re-queues them under its
    /// own role).
    Replay {
        #[arg(long, env = "PAGE_ID")]
        page: String,
        #[arg(long)]
        json: bool,
    },
    /// Unsubscribe the app from the Page's webhooks and forget its token: the Page
    /// is MISSING (disconnected) and its events are parked from now on.
    Disconnect {
        #[arg(long, env = "PAGE_ID")]
        page: String,
        #[arg(long)]
        json: bool,
    },
}

fn store(env: &Env, sdk: &SdkConfig) -> Result<DynamoStore> {
    Ok(DynamoStore::new(
        aws_sdk_dynamodb::Client::new(sdk),
        env.require("TABLE_NAME", FROM_OUTPUTS)?,
    ))
}

fn key(env: &Env, sdk: &SdkConfig) -> Result<KmsKey> {
    Ok(KmsKey::new(
        aws_sdk_kms::Client::new(sdk),
        env.require("TOKEN_KEY_ID", FROM_OUTPUTS)?,
    ))
}

fn queue(env: &Env, sdk: &SdkConfig) -> Result<event_queue::SqsQueue> {
    Ok(event_queue::SqsQueue::new(
        aws_sdk_sqs::Client::new(sdk),
        env.require("EVENTS_QUEUE_URL", FROM_OUTPUTS)?,
    ))
}

/// Up to this many parked messages are counted (`1000+` beyond).
const COUNT_UP_TO: usize = 1000;

/// One Page's line of `page status`, as JSON.
fn status_json(page: &PageId, record: Option<&PageRecord>, parked: usize) -> Value {
    json!({
        "page_id": page.as_str(),
        "status": record.map_or("UNKNOWN", |r| r.status.as_str()),
        "reason": record.and_then(|r| r.reason.clone()),
        "since_ms": record.map(|r| r.since.as_millis()),
        "token_stored": record.is_some_and(|r| r.sealed_token.is_some()),
        "last_event_ms": record.and_then(|r| r.last_event_at).map(Timestamp::as_millis),
        "last_checked_ms": record.and_then(|r| r.checked_at).map(Timestamp::as_millis),
        "parked": parked,
        "parked_counted_up_to": COUNT_UP_TO,
    })
}

/// Publishes the Page's new status on the stack's bus (`EVENT_BUS_NAME`), as the
/// functions do for the changes they make; nothing when no bus is named.
async fn publish_status(
    env: &Env,
    sdk: &SdkConfig,
    page: &PageId,
    status: PageStatus,
    reason: Option<&str>,
) {
    let Some(bus) = env.get("EVENT_BUS_NAME").filter(|b| !b.trim().is_empty()) else {
        return;
    };
    let bus = processor::publish::EventBridgeBus::new(aws_sdk_eventbridge::Client::new(sdk), bus);
    processor::publish::page_status_changed(&bus, page, status, reason).await;
}

/// `3 min ago`, for a time in the past.
fn ago(ms: Option<i64>) -> String {
    let Some(ms) = ms else {
        return "never".to_owned();
    };
    let seconds = (Timestamp::now().as_millis() - ms).max(0) / 1000;
    match seconds {
        s if s < 120 => format!("{s} s ago"),
        s if s < 7_200 => format!("{} min ago", s / 60),
        s if s < 172_800 => format!("{} h ago", s / 3_600),
        s => format!("{} days ago", s / 86_400),
    }
}

fn print(json_out: bool, value: &Value, text: impl FnOnce() -> String) {
    if json_out {
        println!("{value}");
    } else {
        println!("{}", text());
    }
}

/// The fields the Page's subscription has (`GET /{page}/subscribed_apps`, with
/// its stored token), or `null` when that cannot be asked (no token, no key, or
/// Graph refused: its error is on stderr).
async fn subscribed(
    env: &Env,
    sdk: &SdkConfig,
    page: &PageId,
    record: Option<&PageRecord>,
) -> Value {
    let Some(sealed) = record.and_then(|r| r.sealed_token.as_ref()) else {
        return Value::Null;
    };
    let asked = async {
        let token = key(env, sdk)?.open(page, sealed).await?;
        let (secrets, _) = app_config::Secrets::load(env, sdk).await?;
        let fields = graph(env, secrets.app_secret.clone())?
            .subscribed_fields(page, &token, env.get("APP_ID").as_deref())
            .await?;
        Ok::<_, crate::Error>(fields)
    };
    match asked.await {
        Ok(fields) => json!(fields),
        Err(e) => {
            eprintln!("Page {page}: cannot read its subscription: {e}");
            Value::Null
        }
    }
}

/// The Page's token as the functions would use it: the table's, else the seed's.
pub(crate) async fn page_token(env: &Env, sdk: &SdkConfig, page: &PageId) -> Result<SecretString> {
    if env.is_set("TABLE_NAME")
        && env.is_set("TOKEN_KEY_ID")
        && let Some(PageRecord {
            sealed_token: Some(sealed),
            ..
        }) = store(env, sdk)?.page_record(page).await?
    {
        return Ok(key(env, sdk)?.open(page, &sealed).await?);
    }
    let (secrets, _) = app_config::Secrets::load(env, sdk).await?;
    secrets.page_access_tokens.get(page).cloned().ok_or_else(|| {
        format!("no access token for Page {page}: store it first (messenger page store-token --page {page})").into()
    })
}

pub(crate) fn graph(env: &Env, app_secret: Option<SecretString>) -> Result<graph_api::GraphClient> {
    Ok(graph_api::GraphClient::new(graph_api::GraphConfig {
        base_url: env
            .get("GRAPH_API_BASE_URL")
            .unwrap_or_else(|| graph_api::DEFAULT_BASE_URL.to_owned()),
        version: env
            .get("GRAPH_API_VERSION")
            .unwrap_or_else(|| graph_api::DEFAULT_VERSION.to_owned()),
        // With the app secret, each call carries `appsecret_proof`.
        app_secret,
        ..graph_api::GraphConfig::default()
    })?)
}

pub async fn page(env: &Env, sdk: &SdkConfig, command: PageCommand) -> Result<()> {
    match command {
        PageCommand::Subscribe { page, fields } => {
            let page = PageId::new(&page);
            let token = page_token(env, sdk, &page).await?;
            let (secrets, _) = app_config::Secrets::load(env, sdk).await?;
            let wanted: Vec<&str> = fields.split(',').map(str::trim).collect();
            graph(env, secrets.app_secret.clone())?
                .subscribe_app(&page, &token, &wanted)
                .await?;
            println!("Page {page} subscribed to: {fields}");
            Ok(())
        }
        PageCommand::Connect {
            page: chosen,
            app_id,
            json,
        } => connect(env, sdk, &chosen, &app_id, json).await,
        PageCommand::StoreToken { page, json } => {
            let page = PageId::new(&page);
            let token = SecretString::from(read_stdin("the Page access token").await?);
            let store = store(env, sdk)?;
            let parked = store.parked(&page, None, COUNT_UP_TO).await?.len();
            processor::park::store_token_and_request_replay(
                &store,
                &key(env, sdk)?,
                &queue(env, sdk)?,
                &page,
                &token,
                Timestamp::now(),
            )
            .await?;
            publish_status(env, sdk, &page, PageStatus::Active, None).await;
            let value = json!({
                "page_id": page.as_str(), "status": PageStatus::Active.as_str(),
                "replayed": parked, "parked_counted_up_to": COUNT_UP_TO,
            });
            print(json, &value, || {
                format!(
                    "stored the access token of Page {page}: ACTIVE; the processor replays its {parked} parked message(s)"
                )
            });
            Ok(())
        }
        PageCommand::Status { page, json } => {
            let store = store(env, sdk)?;
            let records: BTreeMap<PageId, PageRecord> = match &page {
                Some(page) => {
                    let page = PageId::new(page);
                    let record = store.page_record(&page).await?;
                    record.into_iter().map(|r| (page.clone(), r)).collect()
                }
                None => store.page_records().await?.into_iter().collect(),
            };
            let mut pages: Vec<PageId> = records.keys().cloned().collect();
            if let Some(page) = &page
                && pages.is_empty()
            {
                pages.push(PageId::new(page));
            }
            let mut lines = Vec::new();
            for id in &pages {
                let parked = store.parked(id, None, COUNT_UP_TO).await?.len();
                let mut line = status_json(id, records.get(id), parked);
                line["subscribed_fields"] = subscribed(env, sdk, id, records.get(id)).await;
                lines.push(line);
            }
            if json {
                println!("{}", Value::Array(lines));
                return Ok(());
            }
            if lines.is_empty() {
                println!(
                    "no Page has a record yet (a Page gets one when its token is stored or its first event arrives)"
                );
            }
            for line in lines {
                println!(
                    "{}  {:<8} parked {}  subscribed to {}  last event {}  checked {}{}",
                    line["page_id"].as_str().unwrap_or_default(),
                    line["status"].as_str().unwrap_or_default(),
                    line["parked"],
                    match line["subscribed_fields"].as_array() {
                        Some(fields) => format!("{} fields", fields.len()),
                        None => "? fields".to_owned(),
                    },
                    ago(line["last_event_ms"].as_i64()),
                    ago(line["last_checked_ms"].as_i64()),
                    line["reason"]
                        .as_str()
                        .map(|r| format!("  ({r})"))
                        .unwrap_or_default()
                );
            }
            Ok(())
        }
        PageCommand::Replay { page, json } => {
            let page = PageId::new(&page);
            let parked = store(env, sdk)?
                .parked(&page, None, COUNT_UP_TO)
                .await?
                .len();
            processor::park::request_replay(&queue(env, sdk)?, &page, Timestamp::now()).await?;
            let value = json!({"page_id": page.as_str(), "replayed": parked, "parked_counted_up_to": COUNT_UP_TO});
            print(json, &value, || {
                format!("Page {page}: the processor replays its {parked} parked message(s)")
            });
            Ok(())
        }
        PageCommand::Disconnect { page, json } => {
            let page = PageId::new(&page);
            // Unsubscribed first, while the token still works.
            let unsubscribed = match page_token(env, sdk, &page).await {
                Ok(token) => {
                    let (secrets, _) = app_config::Secrets::load(env, sdk).await?;
                    graph(env, secrets.app_secret.clone())?
                        .unsubscribe_app(&page, &token)
                        .await
                        .map_err(|e| e.to_string())
                }
                Err(e) => Err(e.to_string()),
            };
            store(env, sdk)?
                .forget_page_token(&page, "disconnected", Timestamp::now())
                .await?;
            publish_status(env, sdk, &page, PageStatus::Missing, Some("disconnected")).await;
            let value = json!({
                "page_id": page.as_str(), "status": PageStatus::Missing.as_str(),
                "unsubscribed": unsubscribed.is_ok(),
                "unsubscribe_error": unsubscribed.as_ref().err(),
            });
            print(json, &value, || match &unsubscribed {
                Ok(()) => format!("Page {page}: unsubscribed and its token forgotten (MISSING)"),
                Err(e) => {
                    format!("Page {page}: token forgotten (MISSING); could not unsubscribe: {e}")
                }
            });
            Ok(())
        }
    }
}

/// `page connect`: see [`PageCommand::Connect`].
async fn connect(
    env: &Env,
    sdk: &SdkConfig,
    chosen: &[String],
    app_id: &str,
    json_out: bool,
) -> Result<()> {
    let user_token = SecretString::from(read_stdin("a user or system-user access token").await?);
    let (secrets, origin) = app_config::Secrets::load(env, sdk).await?;
    let app_secret = secrets.require_app_secret(origin)?.clone();
    let graph = graph(env, Some(app_secret.clone()))?;
    let long_lived = graph
        .exchange_user_token(app_id, &app_secret, &user_token)
        .await
        .map_err(|e| format!("fb_exchange_token: {e}"))?;
    let accounts = graph
        .page_accounts(&long_lived)
        .await
        .map_err(|e| format!("me/accounts: {e}"))?;
    let unknown: Vec<&String> = chosen
        .iter()
        .filter(|p| !accounts.iter().any(|a| a.id.as_str() == p.as_str()))
        .collect();
    if !unknown.is_empty() {
        return Err(format!(
            "the token does not manage Page(s) {unknown:?}; it manages: {}",
            accounts
                .iter()
                .map(|a| format!("{} ({})", a.id, a.name))
                .collect::<Vec<_>>()
                .join(", ")
        )
        .into());
    }
    let (store, key, queue) = (store(env, sdk)?, key(env, sdk)?, queue(env, sdk)?);
    let fields: Vec<&str> = WEBHOOK_FIELDS.split(',').collect();
    let mut connected = Vec::new();
    for account in accounts
        .iter()
        .filter(|a| chosen.is_empty() || chosen.iter().any(|p| p == a.id.as_str()))
    {
        let page = &account.id;
        let info = graph
            .debug_token(app_id, &app_secret, &account.access_token)
            .await
            .map_err(|e| format!("debug_token for Page {page}: {e}"))?;
        if !info.is_valid {
            connected.push(json!({"page_id": page.as_str(), "name": account.name, "status": "INVALID", "reason": "debug_token: not valid"}));
            continue;
        }
        let parked = store.parked(page, None, COUNT_UP_TO).await?.len();
        processor::park::store_token_and_request_replay(
            &store,
            &key,
            &queue,
            page,
            &account.access_token,
            Timestamp::now(),
        )
        .await?;
        publish_status(env, sdk, page, PageStatus::Active, None).await;
        graph
            .subscribe_app(page, &account.access_token, &fields)
            .await
            .map_err(|e| format!("subscribed_apps for Page {page}: {e}"))?;
        let subscribed = graph
            .subscribed_fields(page, &account.access_token, None)
            .await
            .map_err(|e| format!("subscribed_apps for Page {page}: {e}"))?;
        connected.push(json!({
            "page_id": page.as_str(), "name": account.name, "status": PageStatus::Active.as_str(),
            "subscribed_fields": subscribed, "replayed": parked,
            "token_expires_at": info.expires_at,
        }));
    }
    if json_out {
        println!("{}", Value::Array(connected));
        return Ok(());
    }
    for line in &connected {
        println!(
            "{} {:?}: {}{}",
            line["page_id"].as_str().unwrap_or_default(),
            line["name"].as_str().unwrap_or_default(),
            line["status"].as_str().unwrap_or_default(),
            match line["subscribed_fields"].as_array() {
                Some(f) => format!(
                    ", subscribed to {} fields, {} parked message(s) replayed",
                    f.len(),
                    line["replayed"]
                ),
                None => format!(" ({})", line["reason"].as_str().unwrap_or_default()),
            }
        );
    }
    Ok(())
}
