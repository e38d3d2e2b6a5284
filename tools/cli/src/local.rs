//! The local stack: the four functions' own code, wired as Lambda wires them.
//!
//! - the webhook answers HTTP on 127.0.0.1 (route `/webhook`, and Meta's callbacks
//!   `/data-deletion` and `/deauthorize`), as API Gateway would;
//! - a trigger loop receives up to 10 messages from the events queue, hands them to
//!   the processor as one SQS event, deletes what succeeded and leaves the reported
//!   failures for SQS to deliver again after the visibility timeout; after the
//!   queue's maxReceiveCount receives SQS moves a message to the dead-letter queue;
//! - the OTN sweeper and the Page check run on timers;
//! - unless `GRAPH_API_BASE_URL` is set, a fake Graph API prints and records calls.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use app_config::{Lookup, SdkConfig};
use aws_lambda_events::sqs::SqsEvent;
use aws_sdk_sqs::types::QueueAttributeName;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use lambda_http::RequestExt;
use serde_json::json;
use tokio::net::TcpListener;

use crate::settings::{self, Env};
use crate::{Result, fake_graph, samples};

/// Local queues hand a failed message back after this long (360 s in AWS).
pub const LOCAL_VISIBILITY_SECONDS: i32 = 10;
/// Local queues move a message to the dead-letter queue after this many receives
/// (10 in AWS).
pub const LOCAL_MAX_RECEIVES: u32 = 5;
/// What each processor invocation gets, as the template's timeout.
const PROCESSOR_TIMEOUT: Duration = Duration::from_secs(60);
const SWEEPER_TIMEOUT: Duration = Duration::from_secs(60);
/// The Page check's timeout in the template.
const PAGE_CHECK_TIMEOUT: Duration = Duration::from_secs(120);
/// Largest request body read from a socket; the webhook itself answers 413 above
/// MAX_BODY_BYTES (default 5 MiB), as API Gateway caps requests at 10 MB.
const MAX_REQUEST_BYTES: usize = 10 * 1024 * 1024;

#[derive(Debug, clap::Args)]
pub struct Options {
    /// Port of the webhook on 127.0.0.1 (`http://127.0.0.1:<port>/webhook`).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Port of the fake Graph API (0 picks a free one). Unused when
    /// GRAPH_API_BASE_URL is set.
    #[arg(long, default_value_t = 0)]
    graph_port: u16,
    /// Seconds between two sweeper runs (hourly in AWS).
    #[arg(long, default_value_t = 60)]
    sweep_every: u64,
    /// Seconds between two Page checks (hourly in AWS).
    #[arg(long, default_value_t = 300)]
    page_check_every: u64,
    /// Seconds between two one-line summaries of the functions' metrics (counts
    /// since the start, from the EMF documents they write); 0 prints the documents
    /// themselves as the functions write them, as Lambda would log them.
    #[arg(long, default_value_t = 60)]
    metrics_every: u64,
    /// Where the stack writes stack.env and graph-calls.jsonl.
    #[arg(long, default_value = ".local")]
    state_dir: PathBuf,
    /// Suffix of the resource names it creates on the emulator.
    #[arg(long, default_value = "local")]
    name: String,
}

pub async fn run(env: &Env, sdk: &SdkConfig, options: Options) -> Result<()> {
    let mut env = env.clone();
    let resources = ["TABLE_NAME", "EVENTS_QUEUE_URL", "QUARANTINE_BUCKET"];
    if !resources.iter().all(|k| env.is_set(k)) {
        if !env.is_set("AWS_ENDPOINT_URL") {
            return Err(
                "AWS_ENDPOINT_URL is not set, so this would create resources in a real \
                 AWS account: start the stack with scripts/run, or set TABLE_NAME, \
                 EVENTS_QUEUE_URL and QUARANTINE_BUCKET to a deployed stack's"
                    .into(),
            );
        }
        for (key, value) in create_resources(sdk, &options.name).await? {
            env.default(&key, value);
        }
    }
    tokio::fs::create_dir_all(&options.state_dir).await?;
    let calls = options.state_dir.join("graph-calls.jsonl");
    if !env.is_set("GRAPH_API_BASE_URL") {
        let graph = fake_graph::start(options.graph_port, &calls).await?;
        env.default("GRAPH_API_BASE_URL", graph.url);
    }
    let local_secrets = !env.is_set("SECRET_ARN");
    if local_secrets {
        env.default("APP_SECRET", samples::LOCAL_APP_SECRET);
        env.default("VERIFY_TOKEN", samples::LOCAL_VERIFY_TOKEN);
        env.default(
            "PAGE_ACCESS_TOKENS",
            json!({samples::LOCAL_PAGE: "local-page-token-1", samples::LOCAL_PAGE_2: "local-page-token-2"})
                .to_string(),
        );
    }
    // The functions' EMF documents are summed into a line a minute rather than
    // mixed into this output (with --metrics-every 0 they are printed as written).
    let metrics = (options.metrics_every > 0).then(signals::capture);
    let webhook = Arc::new(webhook::from_env(&env, sdk).await?);
    let processor = Arc::new(processor::from_env(&env, sdk).await?);
    let sweeper = otn_sweeper::from_env(&env, sdk)?;
    let page_check = page_check::from_env(&env, sdk)?;

    let listener = TcpListener::bind(("127.0.0.1", options.port))
        .await
        .map_err(|e| format!("cannot listen on 127.0.0.1:{}: {e}", options.port))?;
    let webhook_url = format!("http://{}/webhook", listener.local_addr()?);
    let queue_url = env.require("EVENTS_QUEUE_URL", "")?;

    let mut written = vec![
        ("WEBHOOK_URL".to_owned(), webhook_url.clone()),
        ("GRAPH_CALLS".to_owned(), calls.display().to_string()),
    ];
    for key in [
        "AWS_ENDPOINT_URL",
        "AWS_REGION",
        "TABLE_NAME",
        "EVENTS_QUEUE_URL",
        "EVENTS_DLQ_URL",
        "QUARANTINE_BUCKET",
        "GRAPH_API_BASE_URL",
        "SECRET_ARN",
        "EVENT_BUS_NAME",
        "TOKEN_KEY_ID",
    ] {
        if let Some(v) = env.get(key) {
            written.push((key.to_owned(), v));
        }
    }
    if local_secrets && env.get("APP_SECRET").as_deref() == Some(samples::LOCAL_APP_SECRET) {
        // Only the documented local secret is ever written to disk.
        written.push((
            "APP_SECRET".to_owned(),
            samples::LOCAL_APP_SECRET.to_owned(),
        ));
    }
    if local_secrets && env.get("VERIFY_TOKEN").as_deref() == Some(samples::LOCAL_VERIFY_TOKEN) {
        // The documented local verify token, for `messenger doctor`'s webhook check.
        written.push((
            "VERIFY_TOKEN".to_owned(),
            samples::LOCAL_VERIFY_TOKEN.to_owned(),
        ));
    }
    if local_secrets && !env.is_set("PAGE_ACCESS_TOKENS") {
        // The made-up local Page tokens, for `page subscribe` against the fake.
        written.push((
            "PAGE_ACCESS_TOKENS".to_owned(),
            env.get("PAGE_ACCESS_TOKENS").unwrap_or_default(),
        ));
    }
    let stack_env = options.state_dir.join("stack.env");
    let text: String = written.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    tokio::fs::write(&stack_env, text).await?;

    println!("Messenger backend running locally");
    println!(
        "  webhook      {webhook_url}  (verify token: VERIFY_TOKEN, default local-verify-token)"
    );
    println!("  events queue {queue_url}");
    if let Some(bus) = env.get("EVENT_BUS_NAME") {
        println!("  event bus    {bus}  (what is published is printed here)");
    }
    println!(
        "  table        {}",
        env.get("TABLE_NAME").unwrap_or_default()
    );
    println!(
        "  Graph API    {}  (calls recorded in {})",
        env.get("GRAPH_API_BASE_URL").unwrap_or_default(),
        calls.display()
    );
    println!(
        "  settings for scripts/cli written to {}",
        stack_env.display()
    );
    println!("Try: scripts/cli simulate message \"hello\"    (Ctrl-C stops the stack)");

    let http = {
        let webhook = webhook.clone();
        tokio::spawn(serve(listener, move |req| {
            let webhook = webhook.clone();
            async move { Ok::<_, Infallible>(bridge(&webhook, req).await) }
        }))
    };
    let trigger = tokio::spawn(trigger(sdk.clone(), queue_url, processor));
    let timer = tokio::spawn(sweep_timer(
        sweeper,
        Duration::from_secs(options.sweep_every.max(1)),
    ));
    let checker = tokio::spawn(page_check_timer(
        page_check,
        Duration::from_secs(options.page_check_every.max(1)),
    ));
    let tap = tokio::spawn(tap_bus(sdk.clone(), env.get("BUS_TAP_QUEUE_URL")));
    let summary = tokio::spawn(metrics_summary(
        metrics,
        Duration::from_secs(options.metrics_every.max(1)),
    ));
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        r = http => r?,
        r = trigger => r?,
        r = timer => r?,
        r = checker => r?,
        r = summary => r?,
        r = tap => r?,
    }
    println!("stopped");
    Ok(())
}

/// Prints, every `every`, the metrics counted since the start in one line
/// (`metrics since start: EventsAccepted 3, EventsProcessed 3, MessagesSent 2, ...`).
/// Without a capture (the documents go to stdout) it does nothing.
async fn metrics_summary(capture: Option<signals::Capture>, every: Duration) {
    let Some(capture) = capture else {
        return std::future::pending().await;
    };
    let mut totals = signals::Totals::default();
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        for document in capture.drain() {
            totals.add(&document);
        }
        println!("metrics since start: {totals}");
    }
}

/// Creates what the template creates, on the emulator, named after `name`: the table
/// (from the code's single schema), the FIFO events queue with its dead-letter queue,
/// and the quarantine bucket. Existing ones are kept. Returns their settings.
pub async fn create_resources(sdk: &SdkConfig, name: &str) -> Result<Vec<(String, String)>> {
    let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
    let table = format!("messenger-{name}");
    if dynamodb
        .describe_table()
        .table_name(&table)
        .send()
        .await
        .is_err()
    {
        messenger_store::schema::create_table(&dynamodb, &table)
            .await
            .map_err(|e| format!("cannot create table {table}: {e}"))?;
    }

    let sqs = aws_sdk_sqs::Client::new(sdk);
    let dlq = sqs
        .create_queue()
        .queue_name(format!("events-{name}-dlq.fifo"))
        .attributes(QueueAttributeName::FifoQueue, "true")
        .send()
        .await
        .map_err(|e| format!("cannot create the dead-letter queue: {e}"))?;
    let dlq_url = dlq.queue_url().unwrap_or_default().to_owned();
    let dlq_arn = sqs
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await?
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .ok_or("the emulator did not tell the dead-letter queue's ARN")?;
    let queue = sqs
        .create_queue()
        .queue_name(format!("events-{name}.fifo"))
        .attributes(QueueAttributeName::FifoQueue, "true")
        .attributes(QueueAttributeName::ContentBasedDeduplication, "false")
        .attributes(
            QueueAttributeName::VisibilityTimeout,
            LOCAL_VISIBILITY_SECONDS.to_string(),
        )
        .attributes(
            QueueAttributeName::RedrivePolicy,
            json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": LOCAL_MAX_RECEIVES})
                .to_string(),
        )
        .send()
        .await
        .map_err(|e| format!("cannot create the events queue: {e}"))?;

    // The stack's bus, with a rule on the backend's source that sends everything
    // to a queue this command prints from (what a business would subscribe).
    let events = aws_sdk_eventbridge::Client::new(sdk);
    let bus = format!("messenger-{name}-events");
    if events.describe_event_bus().name(&bus).send().await.is_err() {
        events
            .create_event_bus()
            .name(&bus)
            .send()
            .await
            .map_err(|e| format!("cannot create the event bus {bus}: {e}"))?;
    }
    let tap = sqs
        .create_queue()
        .queue_name(format!("events-{name}-bus-tap"))
        .send()
        .await
        .map_err(|e| format!("cannot create the bus's tap queue: {e}"))?;
    let tap_url = tap.queue_url().unwrap_or_default().to_owned();
    let tap_arn = sqs
        .get_queue_attributes()
        .queue_url(&tap_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await?
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .ok_or("the emulator did not tell the tap queue's ARN")?;
    events
        .put_rule()
        .name("local-tap")
        .event_bus_name(&bus)
        .event_pattern(json!({"source": [processor::publish::SOURCE]}).to_string())
        .send()
        .await
        .map_err(|e| format!("cannot create the bus's rule: {e}"))?;
    events
        .put_targets()
        .rule("local-tap")
        .event_bus_name(&bus)
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("local-tap")
                .arn(tap_arn)
                .build()
                .map_err(|e| format!("cannot target the tap queue: {e}"))?,
        )
        .send()
        .await
        .map_err(|e| format!("cannot target the tap queue: {e}"))?;

    // The key Page tokens are sealed with (the template's TokenKey), found again
    // by its alias on the next start.
    let kms = aws_sdk_kms::Client::new(sdk);
    let alias = format!("alias/messenger-{name}-tokens");
    let key_id = match kms.describe_key().key_id(&alias).send().await {
        Ok(found) => found
            .key_metadata()
            .map(|m| m.key_id().to_owned())
            .ok_or("the emulator described the token key without its id")?,
        Err(_) => {
            let created = kms
                .create_key()
                .description("Seals the Page access tokens kept in the table (local)")
                .send()
                .await
                .map_err(|e| format!("cannot create the token key: {e}"))?;
            let id = created
                .key_metadata()
                .map(|m| m.key_id().to_owned())
                .ok_or("the emulator created the token key without an id")?;
            kms.create_alias()
                .alias_name(&alias)
                .target_key_id(&id)
                .send()
                .await
                .map_err(|e| format!("cannot name the token key: {e}"))?;
            id
        }
    };

    let bucket = format!("messenger-quarantine-{name}").to_lowercase();
    let s3 = webhook::s3_client(sdk);
    if s3.head_bucket().bucket(&bucket).send().await.is_err() {
        s3.create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .map_err(|e| format!("cannot create bucket {bucket}: {e}"))?;
    }
    Ok(vec![
        ("TABLE_NAME".to_owned(), table),
        (
            "EVENTS_QUEUE_URL".to_owned(),
            queue.queue_url().unwrap_or_default().to_owned(),
        ),
        ("EVENTS_DLQ_URL".to_owned(), dlq_url),
        ("QUARANTINE_BUCKET".to_owned(), bucket),
        ("TOKEN_KEY_ID".to_owned(), key_id),
        ("EVENT_BUS_NAME".to_owned(), bus),
        ("BUS_TAP_QUEUE_URL".to_owned(), tap_url),
    ])
}

/// Prints what the processor publishes on the bus, one line per event
/// (`published Message Sent {...}`), read from the tap queue.
async fn tap_bus(sdk: SdkConfig, queue_url: Option<String>) {
    let Some(queue_url) = queue_url else {
        return std::future::pending().await;
    };
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    loop {
        let received = sqs
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await;
        let Ok(received) = received else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        for message in received.messages() {
            if let Some(body) = message.body()
                && let Ok(event) = serde_json::from_str::<serde_json::Value>(body)
            {
                let detail = event["detail"].to_string();
                let shown: String = detail.chars().take(300).collect();
                let more = if shown.len() < detail.len() {
                    " ..."
                } else {
                    ""
                };
                println!(
                    "published {}: {shown}{more}",
                    event["detail-type"].as_str().unwrap_or("?")
                );
            }
            if let Some(handle) = message.receipt_handle() {
                let _ = sqs
                    .delete_message()
                    .queue_url(&queue_url)
                    .receipt_handle(handle)
                    .send()
                    .await;
            }
        }
    }
}

/// Serves HTTP/1.1 on `listener`, one task per connection.
pub async fn serve<F, Fut>(listener: TcpListener, handler: F)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send + 'static,
{
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                eprintln!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(&handler);
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                eprintln!("connection error: {e}");
            }
        });
    }
}

/// Turns an HTTP request into the request lambda_http hands the webhook behind API
/// Gateway, and the webhook's answer back into HTTP.
async fn bridge(webhook: &webhook::AwsWebhook, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if !matches!(
        req.uri().path(),
        "/webhook" | "/data-deletion" | "/deauthorize"
    ) {
        return plain(
            StatusCode::NOT_FOUND,
            "not found: the webhook is at /webhook (and Meta's callbacks at /data-deletion, /deauthorize)",
        );
    }
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_REQUEST_BYTES).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return plain(StatusCode::PAYLOAD_TOO_LARGE, "request body too large"),
    };
    let query: HashMap<String, String> = parts
        .uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let request = Request::from_parts(parts, lambda_http::Body::Binary(body.to_vec()))
        .with_query_string_parameters(query);
    match webhook.handle(request).await {
        Ok(response) => {
            let (parts, body) = response.into_parts();
            let bytes = match body {
                lambda_http::Body::Text(s) => Bytes::from(s),
                lambda_http::Body::Binary(b) => Bytes::from(b),
                _ => Bytes::new(),
            };
            Response::from_parts(parts, Full::new(bytes))
        }
        Err(e) => {
            eprintln!("webhook failed: {e}");
            plain(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response
}

/// Lambda's SQS trigger, one poller: batches of up to 10, partial batch failures
/// left on the queue for redelivery.
async fn trigger(sdk: SdkConfig, queue_url: String, processor: Arc<processor::AwsProcessor>) {
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let arn = queue_arn(&sqs, &queue_url).await;
    loop {
        let received = sqs
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await;
        let messages = match received {
            Ok(r) => r.messages.unwrap_or_default(),
            Err(e) => {
                eprintln!("[trigger] cannot receive from the events queue: {e}");
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
        };
        if messages.is_empty() {
            continue;
        }
        let records: Vec<serde_json::Value> = messages
            .iter()
            .map(|m| {
                let attributes: HashMap<&str, &str> = m
                    .attributes()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                json!({
                    "messageId": m.message_id(),
                    "receiptHandle": m.receipt_handle(),
                    "body": m.body(),
                    "attributes": attributes,
                    "messageAttributes": {},
                    "md5OfBody": m.md5_of_body(),
                    "eventSource": "aws:sqs",
                    "eventSourceARN": arn,
                    "awsRegion": sdk.region().map(|r| r.to_string()),
                })
            })
            .collect();
        let event: SqsEvent = match serde_json::from_value(json!({ "Records": records })) {
            Ok(e) => e,
            Err(e) => {
                eprintln!("[trigger] cannot build the SQS event: {e}");
                continue;
            }
        };
        let response = processor
            .handle(event, Some(SystemTime::now() + PROCESSOR_TIMEOUT))
            .await;
        let failed: Vec<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        println!(
            "[trigger] processed {} message(s), {} handed back for redelivery",
            messages.len(),
            failed.len()
        );
        let done: Vec<DeleteMessageBatchRequestEntry> = messages
            .iter()
            .enumerate()
            .filter(|(_, m)| !failed.contains(&m.message_id().unwrap_or_default()))
            .filter_map(|(i, m)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .set_receipt_handle(m.receipt_handle.clone())
                    .build()
                    .ok()
            })
            .collect();
        if done.is_empty() {
            continue;
        }
        if let Err(e) = sqs
            .delete_message_batch()
            .queue_url(&queue_url)
            .set_entries(Some(done))
            .send()
            .await
        {
            // As in Lambda: undeleted messages come back and the processor's
            // deduplication acknowledges them.
            eprintln!("[trigger] cannot delete processed messages: {e}");
        }
    }
}

async fn queue_arn(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> Option<String> {
    sqs.get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .ok()?
        .attributes()?
        .get(&QueueAttributeName::QueueArn)
        .cloned()
}

/// What EventBridge's schedule hands a function.
fn scheduled_event() -> std::result::Result<
    aws_lambda_events::eventbridge::EventBridgeEvent<serde_json::Value>,
    serde_json::Error,
> {
    serde_json::from_value(json!({
        "version": "0", "id": settings::fresh_id(), "detail-type": "Scheduled Event",
        "source": "aws.events", "account": "000000000000",
        "time": "1970-01-01T00:00:00Z", "region": "us-east-1", "resources": [], "detail": {}
    }))
}

/// EventBridge's schedule: the Page check now and then every `every`. A run that
/// found something to do (a subscription repaired, a token refused) is printed.
async fn page_check_timer(check: page_check::AwsPageCheck, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    loop {
        ticks.tick().await;
        let event = match scheduled_event() {
            Ok(e) => e,
            Err(e) => {
                eprintln!("[page-check] cannot build the scheduled event: {e}");
                continue;
            }
        };
        match check
            .handle(&event, Some(SystemTime::now() + PAGE_CHECK_TIMEOUT))
            .await
        {
            Ok(report) if report.repaired + report.invalidated + report.errors > 0 => {
                println!(
                    "[page-check] {}",
                    serde_json::to_string(&report).unwrap_or_default()
                );
            }
            Ok(_) => {}
            Err(e) => eprintln!("[page-check] failed: {e}"),
        }
    }
}

/// EventBridge's schedule: the sweeper now and then every `every`.
async fn sweep_timer(sweeper: otn_sweeper::AwsSweeper, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    loop {
        ticks.tick().await;
        let event = match scheduled_event() {
            Ok(e) => e,
            Err(e) => {
                eprintln!("[sweeper] cannot build the scheduled event: {e}");
                continue;
            }
        };
        match sweeper
            .handle(&event, Some(SystemTime::now() + SWEEPER_TIMEOUT))
            .await
        {
            Ok(report) if report.expired > 0 => {
                println!(
                    "[sweeper] {}",
                    serde_json::to_string(&report).unwrap_or_default()
                );
            }
            Ok(_) => {}
            Err(e) => eprintln!("[sweeper] failed: {e}"),
        }
    }
}
