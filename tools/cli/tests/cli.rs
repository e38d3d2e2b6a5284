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

/// `messenger fake-graph` on a free port, recording into a file of its own:
/// (its URL, the record file, the process, kept alive while the test runs).
async fn fake_graph() -> (String, std::path::PathBuf, tokio::process::Child) {
    use tokio::io::AsyncBufReadExt;
    let record = std::env::temp_dir().join(format!("{}.jsonl", unique("graph-calls")));
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_messenger"))
        .args(["fake-graph", "--port", "0", "--record"])
        .arg(&record)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next_line().await.unwrap().unwrap();
    let url = first
        .strip_prefix("GRAPH_API_BASE_URL=")
        .unwrap()
        .to_owned();
    // Keep reading what it prints, so that it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (url, record, child)
}

fn recorded(record: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(record)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn profile_set_posts_exactly_the_fields_of_the_file_and_refuses_a_long_greeting_without_a_call()
 {
    let (graph, record, _fake) = fake_graph().await;
    let page = "100000000000001";
    let tokens = json!({ page: "page-token-for-tests" }).to_string();
    let env = [
        ("GRAPH_API_BASE_URL", graph.as_str()),
        ("APP_SECRET", "app-secret-for-tests"),
        ("PAGE_ACCESS_TOKENS", tokens.as_str()),
        ("TABLE_NAME", ""),
        ("SECRET_ARN", ""),
    ];
    let dir = std::env::temp_dir().join(unique("profile"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("messenger-profile.json");
    let profile = json!({
        "get_started": {"payload": "GET_STARTED"},
        "greeting": [{"locale": "default", "text": "Hello!"}],
        "whitelisted_domains": ["https://shop.example.com"],
    });
    std::fs::write(&file, profile.to_string()).unwrap();
    let path = file.to_str().unwrap();

    let output = messenger(&["profile", "set", "--file", path, "--page", page], &env).await;
    let printed = String::from_utf8(ok(&output).to_vec()).unwrap();
    assert!(
        printed.contains("greeting: + "),
        "no diff printed: {printed}"
    );
    let calls = recorded(&record);
    let posts: Vec<&Value> = calls
        .iter()
        .filter(|c| c["edge"] == "messenger_profile" && c["method"] == "POST")
        .collect();
    assert_eq!(posts.len(), 1, "{calls:?}");
    assert_eq!(
        posts[0]["body"], profile,
        "the POST is not the file's fields"
    );
    assert_eq!(posts[0]["page_id"], page);
    assert_eq!(posts[0]["appsecret_proof"], true);
    assert_eq!(posts[0]["authorized"], true);

    // What Graph now has, as `profile get --json` prints it.
    let output = messenger(&["profile", "get", "--json", "--page", page], &env).await;
    let got: Value = serde_json::from_slice(ok(&output)).unwrap();
    assert_eq!(got, profile);

    // Set again: nothing changed, nothing posted.
    let output = messenger(
        &["profile", "set", "--json", "--file", path, "--page", page],
        &env,
    )
    .await;
    let done: Value = serde_json::from_slice(ok(&output)).unwrap();
    assert_eq!(done["set"], false, "{done}");

    // One character over Meta's limit: refused, naming the field, no call at all.
    let before = recorded(&record).len();
    let long = json!({"greeting": [{"locale": "default", "text": "x".repeat(161)}]});
    std::fs::write(&file, long.to_string()).unwrap();
    let output = messenger(&["profile", "set", "--file", path, "--page", page], &env).await;
    assert!(!output.status.success());
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(
        error.contains("greeting[0].text: 161 characters, at most 160"),
        "{error}"
    );
    assert_eq!(recorded(&record).len(), before, "a call was made");

    // Delete one field: the rest stays.
    let output = messenger(
        &["profile", "delete", "--field", "greeting", "--page", page],
        &env,
    )
    .await;
    ok(&output);
    let output = messenger(&["profile", "get", "--json", "--page", page], &env).await;
    let got: Value = serde_json::from_slice(ok(&output)).unwrap();
    assert_eq!(
        got,
        json!({"get_started": {"payload": "GET_STARTED"}, "whitelisted_domains": ["https://shop.example.com"]})
    );
    // The token never reaches the record.
    assert!(
        !std::fs::read_to_string(&record)
            .unwrap()
            .contains("page-token-for-tests")
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `messenger local` on free ports, with resources and a state dir of its own:
/// (its stack.env as settings, the process, kept alive while the test runs).
async fn local_stack() -> (Vec<(String, String)>, tokio::process::Child) {
    let dir = std::env::temp_dir().join(unique("local-stack"));
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_messenger"));
    command
        .args(["local", "--port", "0", "--graph-port", "0", "--name"])
        .arg(unique("doctor"))
        .arg("--state-dir")
        .arg(&dir)
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    for key in SETTINGS.iter().chain(&[
        "GRAPH_API_BASE_URL",
        "APP_SECRET",
        "VERIFY_TOKEN",
        "PAGE_ACCESS_TOKENS",
    ]) {
        command.env_remove(key);
    }
    let mut child = command.spawn().unwrap();
    let stack_env = dir.join("stack.env");
    // The stack writes stack.env once its functions are built; it then checks
    // (and subscribes) its two Pages.
    loop {
        if let Ok(text) = std::fs::read_to_string(&stack_env)
            && !text.is_empty()
        {
            let settings: Vec<(String, String)> = text
                .lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            let calls = dir.join("graph-calls.jsonl");
            let subscribed = |page: &str| {
                recorded(&calls).iter().any(|c| {
                    c["edge"] == "subscribed_apps" && c["method"] == "POST" && c["page_id"] == page
                })
            };
            if subscribed("100000000000001") && subscribed("100000000000002") {
                return (settings, child);
            }
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "messenger local exited before it was up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

fn doctor_lines(output: &Output) -> Vec<(String, String)> {
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["check"].as_str().unwrap().to_owned(),
                c["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn doctor_passes_on_a_healthy_local_stack_and_fails_on_a_page_with_a_dead_token() {
    let (settings, _stack) = local_stack().await;
    let env: Vec<(&str, &str)> = settings
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();

    let output = messenger(&["doctor"], &env).await;
    let printed = String::from_utf8(ok(&output).to_vec()).unwrap();
    for line in [
        "ok   secret: app_secret set, verify_token set",
        "ok   webhook: GET ",
        "ok   page 100000000000001 token: valid",
        "ok   page 100000000000001 subscription: all 13 webhook fields",
        "ok   page 100000000000002 token: valid",
        "ok   queue: reachable",
        "ok   dlq: reachable",
        "ok   table: ",
        "skip alarms: ",
    ] {
        assert!(
            printed.lines().any(|l| l.starts_with(line)),
            "no line {line:?} in:\n{printed}"
        );
    }
    let output = messenger(&["doctor", "--json"], &env).await;
    let report: Value = serde_json::from_slice(ok(&output)).unwrap();
    assert_eq!(report["ok"], true, "{report}");

    // A Page admin changed their password: the Page's token is dead.
    let graph = &settings
        .iter()
        .find(|(k, _)| k == "GRAPH_API_BASE_URL")
        .unwrap()
        .1;
    reqwest::Client::new()
        .post(format!("{graph}/_fake/dead-tokens"))
        .json(&json!({"access_token": "local-page-token-1"}))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    let output = messenger(&["doctor", "--json"], &env).await;
    assert_eq!(output.status.code(), Some(1));
    let lines = doctor_lines(&output);
    let status = |name: &str| {
        lines
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s.as_str())
            .unwrap_or_else(|| panic!("no check {name}: {lines:?}"))
    };
    assert_eq!(status("page 100000000000001 token"), "fail");
    assert_eq!(status("page 100000000000002 token"), "ok");
    assert_eq!(status("webhook"), "ok");

    let output = messenger(&["doctor"], &env).await;
    assert_eq!(output.status.code(), Some(1));
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        printed
            .lines()
            .any(|l| l.starts_with("FAIL page 100000000000001 token: ")),
        "{printed}"
    );
    // Secrets are "set" or "missing", never shown.
    let everything = format!("{printed}{}", String::from_utf8_lossy(&output.stderr));
    for secret in ["local-app-secret", "local-verify-token", "local-page-token"] {
        assert!(
            !everything.contains(secret),
            "{secret} shown:\n{everything}"
        );
    }
}

#[tokio::test]
async fn doctor_fails_on_an_alarm_topic_nobody_is_subscribed_to() {
    let sdk = emulator().await;
    let sns = aws_sdk_sns::Client::new(&sdk);
    let topic = sns
        .create_topic()
        .name(unique("alarms"))
        .send()
        .await
        .unwrap()
        .topic_arn()
        .unwrap()
        .to_owned();
    let alarms = |output: &Output| {
        doctor_lines(output)
            .into_iter()
            .find(|(name, _)| name == "alarms")
            .map(|(_, status)| status)
    };
    let env = [("ALARM_TOPIC_ARN", topic.as_str())];
    let output = messenger(&["doctor", "--json"], &env).await;
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(alarms(&output).as_deref(), Some("fail"));

    sns.subscribe()
        .topic_arn(&topic)
        .protocol("email")
        .endpoint("alarms@example.com")
        .send()
        .await
        .unwrap();
    let output = messenger(&["doctor", "--json"], &env).await;
    assert_eq!(alarms(&output).as_deref(), Some("ok"));
}
