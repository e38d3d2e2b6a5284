//! The `messenger` binary as an operator runs it, against the local AWS emulator
//! (scripts/test starts it and sets AWS_ENDPOINT_URL): what it prints on stdout,
//! where its logs go, and where it finds its settings.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Output;

use aws_sdk_sqs::types::QueueAttributeName;
use integration_tests::{SdkConfig, bucket, drain, emulator, fifo_queue, unique};
use serde_json::{Value, json};

/// The settings a test must give itself, never inherit from the shell.
const SETTINGS: [&str; 10] = [
    "EVENTS_QUEUE_URL",
    "EVENTS_DLQ_URL",
    "TABLE_NAME",
    "QUARANTINE_BUCKET",
    "TOKEN_KEY_ID",
    "SECRET_ARN",
    "EVENT_BUS_NAME",
    "WEBHOOK_URL",
    "ALARM_TOPIC_ARN",
    "STACK_NAME",
];

/// Runs `messenger` with `args` and `env` (over the emulator's AWS variables).
async fn messenger(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_messenger"));
    command.args(args).env_remove("RUST_LOG");
    for key in SETTINGS {
        command.env_remove(key);
    }
    command.envs(env.iter().copied());
    command.output().await.unwrap()
}

fn ok(output: &Output) -> &[u8] {
    assert!(
        output.status.success(),
        "messenger failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    &output.stdout
}

/// A body as the webhook keeps it, with bytes no text re-encoding survives.
async fn quarantine(sdk: &SdkConfig, bucket: &str, day: &str, body: &[u8]) -> String {
    let key = format!("quarantine/{day}/{}", unique("body"));
    webhook::s3_client(sdk)
        .put_object()
        .bucket(bucket)
        .key(&key)
        .metadata("reason", "object is \"instagram\"")
        .body(body.to_vec().into())
        .send()
        .await
        .unwrap();
    key
}

const BODY: &[u8] = b"{\"object\":\"instagram\",\"text\":\"\\u00e4 \\/ \xff\xfe\"}\r\n\x00tail";

#[tokio::test]
async fn quarantine_get_prints_the_body_byte_for_byte_even_with_every_log_line_on() {
    let sdk = emulator().await;
    let bucket = bucket(&sdk).await;
    let key = quarantine(&sdk, &bucket, "2026-12-01", BODY).await;
    for verbosity in [None, Some("-v"), Some("-vvv")] {
        let mut args: Vec<&str> = verbosity.into_iter().collect();
        args.extend(["quarantine", "get", &key]);
        let output = messenger(&args, &[("QUARANTINE_BUCKET", &bucket)]).await;
        assert_eq!(ok(&output), BODY, "with {verbosity:?}");
        if verbosity == Some("-vvv") {
            // The logs were written, and went to stderr.
            assert!(
                String::from_utf8_lossy(&output.stderr).contains("TRACE"),
                "no trace lines on stderr with -vvv"
            );
        }
    }
}

#[tokio::test]
async fn quarantine_list_shows_the_newest_body_first_and_its_json_parses() {
    let sdk = emulator().await;
    let bucket = bucket(&sdk).await;
    let older = quarantine(&sdk, &bucket, "2026-11-30", b"older").await;
    // S3 keeps last-modified times to the second.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let newer = quarantine(&sdk, &bucket, "2026-11-29", b"newer!").await;

    let output = messenger(&["quarantine", "list"], &[("QUARANTINE_BUCKET", &bucket)]).await;
    let text = String::from_utf8(ok(&output).to_vec()).unwrap();
    let keys: Vec<&str> = text.lines().filter_map(|l| l.split('\t').next()).collect();
    assert_eq!(keys, [newer.as_str(), older.as_str()], "{text}");

    let output = messenger(
        &["-v", "quarantine", "list", "--json"],
        &[("QUARANTINE_BUCKET", &bucket)],
    )
    .await;
    let listed: Value = serde_json::from_slice(ok(&output)).unwrap();
    assert_eq!(listed[0]["key"], newer.as_str());
    assert_eq!(listed[0]["size"], 6);
    assert_eq!(listed[0]["reason"], "object is \"instagram\"");
    assert_eq!(listed[1]["key"], older.as_str());
}

/// A FIFO events queue whose redrive policy names a FIFO dead-letter queue, as
/// the template makes them: (events queue, dead-letter queue).
async fn queues_with_dlq(sdk: &SdkConfig) -> (String, String) {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let dlq = fifo_queue(sdk).await;
    let dlq_arn = sqs
        .get_queue_attributes()
        .queue_url(&dlq)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes()
        .unwrap()[&QueueAttributeName::QueueArn]
        .clone();
    let queue = fifo_queue(sdk).await;
    sqs.set_queue_attributes()
        .queue_url(&queue)
        .attributes(
            QueueAttributeName::RedrivePolicy,
            json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 5}).to_string(),
        )
        .send()
        .await
        .unwrap();
    (queue, dlq)
}

#[tokio::test]
async fn dlq_redrive_moves_every_message_in_batches_keeping_each_groups_order() {
    let sdk = emulator().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let (queue, dlq) = queues_with_dlq(&sdk).await;
    for n in 0..23 {
        sqs.send_message()
            .queue_url(&dlq)
            .message_group_id(format!("page:{}", n % 2))
            .message_deduplication_id(format!("d{n}"))
            .message_body(json!({"n": n}).to_string())
            .send()
            .await
            .unwrap();
    }
    let env = [("EVENTS_QUEUE_URL", queue.as_str())];

    let output = messenger(&["dlq", "count", "--json"], &env).await;
    let count: Value = serde_json::from_slice(ok(&output)).unwrap();
    assert_eq!(count["waiting"], 23, "{count}");

    let output = messenger(&["dlq", "redrive", "--json"], &env).await;
    let done: Value = serde_json::from_slice(ok(&output)).unwrap();
    assert_eq!(done, json!({"moved": 23, "method": "receive-send-delete"}));
    let progress = String::from_utf8_lossy(&output.stderr);
    assert!(
        progress.contains("redrive: 10 of 23 moved")
            && progress.contains("redrive: 23 of 23 moved"),
        "no progress in batches of ten: {progress}"
    );

    let moved = drain(&sdk, &queue).await;
    assert_eq!(moved.len(), 23);
    for group in ["page:0", "page:1"] {
        let ns: Vec<i64> = moved
            .iter()
            .filter(|m| m.group_id == group)
            .map(|m| m.body["n"].as_i64().unwrap())
            .collect();
        let mut sorted = ns.clone();
        sorted.sort_unstable();
        assert_eq!(ns, sorted, "group {group} out of order");
    }
    let output = messenger(&["dlq", "count", "--json"], &env).await;
    let count: Value = serde_json::from_slice(ok(&output)).unwrap();
    assert_eq!(count["waiting"], 0, "{count}");
}

/// A stack in the emulator's CloudFormation whose Outputs name these resources,
/// as the template's do.
async fn stack(sdk: &SdkConfig, outputs: &[(&str, &str)]) -> String {
    let name = unique("messenger-stack");
    let outputs: serde_json::Map<String, Value> = outputs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!({"Value": v})))
        .collect();
    let template = json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Resources": {"Placeholder": {"Type": "AWS::SNS::Topic"}},
        "Outputs": outputs,
    });
    aws_sdk_cloudformation::Client::new(sdk)
        .create_stack()
        .stack_name(&name)
        .template_body(template.to_string())
        .send()
        .await
        .unwrap();
    name
}

#[tokio::test]
async fn stack_name_fills_in_the_settings_from_the_stacks_outputs_and_the_environment_wins() {
    let sdk = emulator().await;
    let from_stack = bucket(&sdk).await;
    let from_env = bucket(&sdk).await;
    let key = quarantine(&sdk, &from_stack, "2026-12-01", BODY).await;
    quarantine(&sdk, &from_env, "2026-12-01", b"the environment's").await;
    let (queue, _) = queues_with_dlq(&sdk).await;
    let name = stack(
        &sdk,
        &[
            ("QuarantineBucketName", &from_stack),
            ("EventsQueueUrl", &queue),
        ],
    )
    .await;

    // Nothing in the environment: the stack's outputs are used.
    let output = messenger(&["--stack-name", &name, "quarantine", "get", &key], &[]).await;
    assert_eq!(ok(&output), BODY);
    let output = messenger(&["dlq", "count", "--json", "--stack-name", &name], &[]).await;
    let count: Value = serde_json::from_slice(ok(&output)).unwrap();
    assert_eq!(count["waiting"], 0, "{count}");

    // The environment wins over the stack.
    let output = messenger(
        &["--stack-name", &name, "quarantine", "list", "--json"],
        &[("QUARANTINE_BUCKET", &from_env)],
    )
    .await;
    let listed: Value = serde_json::from_slice(ok(&output)).unwrap();
    assert_eq!(listed[0]["size"], b"the environment's".len());

    // A stack that does not exist is named in the error.
    let output = messenger(
        &["--stack-name", "no-such-stack", "quarantine", "get", &key],
        &[],
    )
    .await;
    assert!(!output.status.success());
    assert!(output.stdout.is_empty());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("no-such-stack"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
