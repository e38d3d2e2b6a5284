//! The SAM template as deployed: what every function runs on, that each IAM
//! statement names only the stack's own resources, the queue settings the processor
//! relies on, the alarms and the outputs the README sends people to.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_norway::Value;

fn template() -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml");
    serde_norway::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The logical ids a `!Ref`, `!GetAtt` or `!Sub` names.
fn referenced(value: &Value) -> Vec<String> {
    match value {
        Value::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let tag = tag.trim_start_matches('!');
            let text = tagged.value.as_str().unwrap_or_default();
            match tag {
                "Ref" => vec![text.to_owned()],
                "GetAtt" => vec![text.split('.').next().unwrap_or_default().to_owned()],
                "Sub" => text
                    .split("${")
                    .skip(1)
                    .map(|s| s.split(['.', '}']).next().unwrap_or_default().to_owned())
                    .collect(),
                _ => vec![],
            }
        }
        Value::Sequence(items) => items.iter().flat_map(referenced).collect(),
        _ => vec![],
    }
}

const FUNCTIONS: [(&str, &str); 3] = [
    ("WebhookFunction", "webhook"),
    ("ProcessorFunction", "processor"),
    ("OtnSweeperFunction", "otn-sweeper"),
];

#[test]
fn every_function_is_a_cargo_lambda_build_on_al2023_arm64_with_json_logs() {
    let t = template();
    let globals = &t["Globals"]["Function"];
    assert_eq!(globals["Runtime"].as_str(), Some("provided.al2023"));
    assert_eq!(globals["Architectures"][0].as_str(), Some("arm64"));
    assert_eq!(globals["LoggingConfig"]["LogFormat"].as_str(), Some("JSON"));
    for (id, binary) in FUNCTIONS {
        let f = &t["Resources"][id];
        assert_eq!(
            f["Type"].as_str(),
            Some("AWS::Serverless::Function"),
            "{id}"
        );
        assert_eq!(
            f["Metadata"]["BuildMethod"].as_str(),
            Some("rust-cargolambda"),
            "{id}"
        );
        assert_eq!(
            f["Metadata"]["BuildProperties"]["Binary"].as_str(),
            Some(binary),
            "{id}"
        );
        for key in ["Runtime", "Architectures"] {
            assert!(
                f["Properties"][key].is_null(),
                "{id} overrides the global {key}"
            );
        }
    }
}

#[test]
fn every_iam_statement_names_only_this_stacks_resources() {
    let t = template();
    let resources = t["Resources"].as_mapping().unwrap();
    let mut statements = 0;
    for (id, _) in FUNCTIONS {
        let policies = t["Resources"][id]["Properties"]["Policies"]
            .as_sequence()
            .unwrap();
        for policy in policies {
            // Only inline statements: a managed policy name could grant anything.
            let list = policy["Statement"].as_sequence().unwrap_or_else(|| {
                panic!("{id}: policies must be inline statements, found {policy:?}")
            });
            for statement in list {
                statements += 1;
                assert_eq!(statement["Effect"].as_str(), Some("Allow"), "{id}");
                let actions: Vec<&str> = match &statement["Action"] {
                    Value::String(a) => vec![a.as_str()],
                    Value::Sequence(a) => a.iter().map(|a| a.as_str().unwrap()).collect(),
                    other => panic!("{id}: unexpected Action {other:?}"),
                };
                assert!(
                    actions.iter().all(|a| !a.contains('*')),
                    "{id}: wildcard action in {actions:?}"
                );
                let named = referenced(&statement["Resource"]);
                assert!(
                    !named.is_empty(),
                    "{id}: statement {:?} does not name one of the stack's resources",
                    statement["Sid"]
                );
                for name in named {
                    assert!(
                        resources.contains_key(name.as_str()),
                        "{id}: {name} is not a resource of this stack"
                    );
                }
            }
        }
    }
    assert!(statements >= 8, "only {statements} statements found");
}

#[test]
fn the_events_queue_outlives_the_processor_and_dead_letters_after_retries() {
    let t = template();
    let r = &t["Resources"];
    let processor_timeout = r["ProcessorFunction"]["Properties"]["Timeout"]
        .as_u64()
        .unwrap();
    let queue = &r["EventsQueue"]["Properties"];
    assert_eq!(queue["FifoQueue"].as_bool(), Some(true));
    assert_eq!(queue["ContentBasedDeduplication"].as_bool(), Some(false));
    assert!(queue["VisibilityTimeout"].as_u64().unwrap() >= 6 * processor_timeout);
    assert!(
        queue["RedrivePolicy"]["maxReceiveCount"].as_u64().unwrap() >= 5,
        "a message deserves several attempts before the dead-letter queue"
    );
    assert_eq!(
        referenced(&queue["RedrivePolicy"]["deadLetterTargetArn"]),
        vec!["EventsDeadLetterQueue"]
    );
    let trigger = &r["ProcessorFunction"]["Properties"]["Events"]["Queue"];
    assert_eq!(trigger["Type"].as_str(), Some("SQS"));
    assert_eq!(
        trigger["Properties"]["FunctionResponseTypes"][0].as_str(),
        Some("ReportBatchItemFailures")
    );
    // The trigger's concurrency is bounded by a parameter SQS accepts (2 to 1000).
    let limit = referenced(&trigger["Properties"]["ScalingConfig"]["MaximumConcurrency"]);
    assert_eq!(limit, vec!["ProcessorMaxConcurrency"]);
    let parameter = &t["Parameters"]["ProcessorMaxConcurrency"];
    let (min, max) = (
        parameter["MinValue"].as_u64().unwrap(),
        parameter["MaxValue"].as_u64().unwrap(),
    );
    assert!(min >= 2 && max <= 1000 && min <= max);
    assert!((min..=max).contains(&parameter["Default"].as_u64().unwrap()));
}

#[test]
fn alarms_watch_the_dead_letter_queue_and_the_webhooks_5xx() {
    let t = template();
    let alarms: Vec<&Value> = t["Resources"]
        .as_mapping()
        .unwrap()
        .values()
        .filter(|r| r["Type"].as_str() == Some("AWS::CloudWatch::Alarm"))
        .collect();
    let watches = |namespace: &str, metric: &str, resource: &str| {
        alarms.iter().any(|a| {
            let p = &a["Properties"];
            p["Namespace"].as_str() == Some(namespace)
                && p["MetricName"].as_str() == Some(metric)
                && p["Dimensions"]
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .any(|d| referenced(&d["Value"]) == vec![resource.to_owned()])
                && !p["AlarmActions"].is_null()
        })
    };
    assert!(watches(
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
        "EventsDeadLetterQueue"
    ));
    assert!(watches("AWS/ApiGateway", "5xx", "WebhookApi"));
}

#[test]
fn the_outputs_the_readme_names_exist() {
    let t = template();
    for output in [
        "WebhookUrl",
        "EventsQueueUrl",
        "EventsDeadLetterQueueUrl",
        "TableName",
        "QuarantineBucketName",
        "AppSecretArn",
        "AlarmTopicArn",
    ] {
        assert!(!t["Outputs"][output].is_null(), "{output} missing");
        assert!(
            std::fs::read_to_string(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md")
            )
            .unwrap()
            .contains(output),
            "the README does not mention the {output} output"
        );
    }
}

/// The README's bot example is the one compiled as the doc test of `Bot`.
#[test]
fn the_readme_bot_example_is_the_compiled_one() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let bot = std::fs::read_to_string(root.join("functions/processor/src/bot.rs")).unwrap();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let start = bot.find("/// ```no_run\n").expect("the Bot doc test") + "/// ```no_run\n".len();
    let end = start + bot[start..].find("/// ```\n").unwrap();
    let example: String = bot[start..end]
        .lines()
        .map(|l| {
            l.strip_prefix("/// ")
                .unwrap_or(l.trim_start_matches("///"))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(example.contains("impl Bot for") && example.contains("processor::run("));
    assert!(
        readme.contains(&format!("```rust\n{example}```")),
        "README's bot example differs from the doc test in bot.rs:\n{example}"
    );
}
