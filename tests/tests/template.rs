//! The SAM template as deployed: what every function runs on, that each IAM
//! statement names only the stack's own resources (in template.yaml, and in what
//! SAM generates from it: no `Resource: "*"`, no action wildcard, no managed
//! policy), the queue settings the processor
//! relies on, the alarms, the dashboard, the log groups and the outputs the README
//! sends people to. The functions' own metrics are named through `signals::Metric`,
//! so a renamed metric fails here instead of leaving an alarm on nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_norway::Value;
use signals::{Function, Metric};

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

const FUNCTIONS: [(&str, &str); 4] = [
    ("WebhookFunction", "webhook"),
    ("ProcessorFunction", "processor"),
    ("OtnSweeperFunction", "otn-sweeper"),
    ("PageCheckFunction", "page-check"),
];

/// The statement inside `!If [condition, statement, !Ref AWS::NoValue]` (a statement
/// that exists only when a parameter is set), or the statement itself.
fn unconditional(statement: &Value) -> &Value {
    match tagged(statement) {
        Some((tag, branches)) if tag == "If" => {
            assert!(
                is_ref(&branches[2], "AWS::NoValue"),
                "a conditional statement is either there or not: {statement:?}"
            );
            &branches[1]
        }
        _ => statement,
    }
}

/// The role a function runs with: `Role: !GetAtt <id>Role.Arn`, one of the stack's.
fn role_of<'t>(t: &'t Value, function: &str) -> &'t Value {
    let role = &t["Resources"][function]["Properties"]["Role"];
    let named = referenced(role);
    assert_eq!(
        named,
        vec![format!("{function}Role")],
        "{function} must run with its own role, found {role:?}"
    );
    let resource = &t["Resources"][named[0].as_str()];
    assert_eq!(resource["Type"].as_str(), Some("AWS::IAM::Role"));
    resource
}

/// Every statement a function's role holds: its inline policies and the
/// `AWS::IAM::RolePolicy` resources attached to it (its logs).
fn statements_of<'t>(t: &'t Value, function: &str) -> Vec<&'t Value> {
    let role = role_of(t, function);
    let role_id = format!("{function}Role");
    let mut documents: Vec<&Value> = role["Properties"]["Policies"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| &p["PolicyDocument"])
        .collect();
    documents.extend(
        resources_of(t, "AWS::IAM::RolePolicy")
            .into_iter()
            .filter(|(_, p)| is_ref(&p["Properties"]["RoleName"], &role_id))
            .map(|(_, p)| &p["Properties"]["PolicyDocument"]),
    );
    documents
        .into_iter()
        .flat_map(|d| d["Statement"].as_sequence().unwrap())
        .map(unconditional)
        .collect()
}

/// A statement's actions.
fn actions(statement: &Value) -> Vec<&str> {
    match &statement["Action"] {
        Value::String(a) => vec![a.as_str()],
        Value::Sequence(a) => a.iter().map(|a| a.as_str().unwrap()).collect(),
        other => panic!("unexpected Action {other:?}"),
    }
}

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
        // Only the stack's own role, with inline statements: SAM's role would come
        // with managed policies, and a managed policy could grant anything.
        assert!(
            t["Resources"][id]["Properties"]["Policies"].is_null(),
            "{id}: SAM Policies make SAM generate a role with managed policies"
        );
        assert!(
            role_of(&t, id)["Properties"]["ManagedPolicyArns"].is_null(),
            "{id}: its role has managed policies"
        );
        for statement in statements_of(&t, id) {
            statements += 1;
            assert_eq!(statement["Effect"].as_str(), Some("Allow"), "{id}");
            let actions = actions(statement);
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
                // A parameter names the operator's own resource (DataKeyArn).
                assert!(
                    resources.contains_key(name.as_str())
                        || !t["Parameters"][name.as_str()].is_null(),
                    "{id}: {name} is not a resource of this stack"
                );
            }
        }
    }
    assert!(statements >= 14, "only {statements} statements found");
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
    // The stack's own mapping, not a SAM event (whose managed policy is on "*").
    assert!(r["ProcessorFunction"]["Properties"]["Events"].is_null());
    let trigger = &r["ProcessorFunctionQueue"];
    assert_eq!(
        trigger["Type"].as_str(),
        Some("AWS::Lambda::EventSourceMapping")
    );
    assert!(is_ref(
        &trigger["Properties"]["FunctionName"],
        "ProcessorFunction"
    ));
    assert_eq!(
        referenced(&trigger["Properties"]["EventSourceArn"]),
        vec!["EventsQueue"]
    );
    assert_eq!(trigger["Properties"]["BatchSize"].as_u64(), Some(10));
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

/// The tag of a `!Ref`/`!Sub`/... value (without the `!`) and what it holds.
fn tagged(value: &Value) -> Option<(String, &Value)> {
    match value {
        Value::Tagged(tagged) => Some((
            tagged.tag.to_string().trim_start_matches('!').to_owned(),
            &tagged.value,
        )),
        _ => None,
    }
}

/// True if `value` is exactly `!Ref <name>`.
fn is_ref(value: &Value, name: &str) -> bool {
    tagged(value).is_some_and(|(tag, v)| tag == "Ref" && v.as_str() == Some(name))
}

/// Every logical id named anywhere inside `value`, however deep.
fn all_references(value: &Value) -> Vec<String> {
    match value {
        Value::Tagged(inner) => {
            let mut found = referenced(value);
            found.extend(all_references(&inner.value));
            found
        }
        Value::Sequence(items) => items.iter().flat_map(all_references).collect(),
        Value::Mapping(map) => map.values().flat_map(all_references).collect(),
        _ => vec![],
    }
}

/// The logical ids of the resources of `kind`.
fn resources_of<'t>(t: &'t Value, kind: &str) -> Vec<(&'t str, &'t Value)> {
    t["Resources"]
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some(kind))
        .map(|(id, r)| (id.as_str().unwrap(), r))
        .collect()
}

/// The alarms on AWS's own metrics: (alarm, namespace, metric, the resource its
/// dimension names).
const AWS_ALARMS: [(&str, &str, &str, &str); 4] = [
    (
        "DeadLetterQueueAlarm",
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
        "EventsDeadLetterQueue",
    ),
    (
        "WebhookServerErrorAlarm",
        "AWS/ApiGateway",
        "5xx",
        "WebhookApi",
    ),
    (
        "ProcessorErrorsAlarm",
        "AWS/Lambda",
        "Errors",
        "ProcessorFunction",
    ),
    (
        "QueueAgeAlarm",
        "AWS/SQS",
        "ApproximateAgeOfOldestMessage",
        "EventsQueue",
    ),
];

/// The alarms on the functions' own metrics (shared/signals).
const SIGNAL_ALARMS: [(&str, Metric); 5] = [
    ("SignatureRejectedAlarm", Metric::SignatureRejected),
    ("WebhookSilenceAlarm", Metric::EventsAccepted),
    (
        "PageCredentialsInvalidAlarm",
        Metric::PageCredentialsInvalid,
    ),
    ("ParkedEventsAlarm", Metric::EventsParked),
    ("PageCheckFailuresAlarm", Metric::PagesUnhealthy),
];

/// The one alarm where missing data (no event at all) is what it watches.
const SILENCE_ALARM: &str = "WebhookSilenceAlarm";

#[test]
fn every_alarm_watches_its_metric_in_its_namespace() {
    let t = template();
    for (id, namespace, metric, resource) in AWS_ALARMS {
        let alarm = &t["Resources"][id];
        assert_eq!(
            alarm["Type"].as_str(),
            Some("AWS::CloudWatch::Alarm"),
            "{id} missing"
        );
        let p = &alarm["Properties"];
        assert_eq!(p["Namespace"].as_str(), Some(namespace), "{id}");
        assert_eq!(p["MetricName"].as_str(), Some(metric), "{id}");
        assert!(
            p["Dimensions"]
                .as_sequence()
                .unwrap()
                .iter()
                .any(|d| referenced(&d["Value"]) == vec![resource.to_owned()]),
            "{id} does not watch {resource}"
        );
        assert_eq!(p["TreatMissingData"].as_str(), Some("notBreaching"), "{id}");
    }
    for (id, metric) in SIGNAL_ALARMS {
        let alarm = &t["Resources"][id];
        assert_eq!(
            alarm["Type"].as_str(),
            Some("AWS::CloudWatch::Alarm"),
            "{id} missing"
        );
        let p = &alarm["Properties"];
        // The metric itself, or the one of that name in the alarm's metric math.
        let m = match p["Metrics"].as_sequence() {
            Some(metrics) => metrics
                .iter()
                .map(|m| &m["MetricStat"]["Metric"])
                .find(|m| m["MetricName"].as_str() == Some(metric.name()))
                .unwrap_or_else(|| panic!("{id}: its metric math has no {}", metric.name())),
            None => p,
        };
        assert!(
            is_ref(&m["Namespace"], "MetricsNamespace"),
            "{id}: the functions' metrics are in !Ref MetricsNamespace, found {:?}",
            m["Namespace"]
        );
        assert_eq!(m["MetricName"].as_str(), Some(metric.name()), "{id}");
        // Exactly the dimensions the function writes, or CloudWatch sees another metric.
        let dimensions = m["Dimensions"].as_sequence().unwrap();
        assert_eq!(dimensions.len(), 1, "{id}: {dimensions:?}");
        assert_eq!(dimensions[0]["Name"].as_str(), Some("Function"), "{id}");
        assert_eq!(
            dimensions[0]["Value"].as_str(),
            Some(metric.function().as_str()),
            "{id}"
        );
        let missing = if id == SILENCE_ALARM {
            "breaching"
        } else {
            "notBreaching"
        };
        assert_eq!(p["TreatMissingData"].as_str(), Some(missing), "{id}");
    }
}

#[test]
fn every_alarm_notifies_the_alarm_topic_and_says_what_to_do() {
    let t = template();
    let alarms = resources_of(&t, "AWS::CloudWatch::Alarm");
    let mut listed: Vec<&str> = AWS_ALARMS
        .iter()
        .map(|a| a.0)
        .chain(SIGNAL_ALARMS.iter().map(|a| a.0))
        .collect();
    let mut found: Vec<&str> = alarms.iter().map(|(id, _)| *id).collect();
    listed.sort_unstable();
    found.sort_unstable();
    assert_eq!(
        found, listed,
        "the template's alarms and the ones these tests (and the README) know differ"
    );
    for (id, alarm) in alarms {
        let p = &alarm["Properties"];
        for actions in ["AlarmActions", "OKActions"] {
            assert_eq!(
                referenced(&p[actions]),
                vec!["AlarmTopic".to_owned()],
                "{id}: {actions} must reach the AlarmTopic"
            );
        }
        let description = p["AlarmDescription"]
            .as_str()
            .or_else(|| tagged(&p["AlarmDescription"]).and_then(|(_, v)| v.as_str()))
            .unwrap_or_else(|| panic!("{id} has no AlarmDescription"));
        // CloudWatch's limit; and long enough to say what it means and what to do.
        assert!(
            (80..=1024).contains(&description.len()),
            "{id}: description of {} characters",
            description.len()
        );
    }
}

/// The retention periods CloudWatch Logs accepts.
const RETENTION_DAYS: [u64; 22] = [
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

#[test]
fn every_function_keeps_logs_for_log_retention_days_is_not_traced_and_names_its_metrics_namespace()
{
    let t = template();
    let retention = &t["Parameters"]["LogRetentionDays"];
    let allowed: Vec<u64> = retention["AllowedValues"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(allowed, RETENTION_DAYS);
    assert!(RETENTION_DAYS.contains(&retention["Default"].as_u64().unwrap()));

    let namespace = &t["Parameters"]["MetricsNamespace"];
    assert_eq!(
        namespace["Default"].as_str(),
        Some(signals::DEFAULT_NAMESPACE)
    );

    let globals = &t["Globals"]["Function"];
    // X-Ray's PutTraceSegments takes no resource-level permission: tracing would
    // need an Allow on "*" (README, "Logs and tracing").
    assert!(globals["Tracing"].is_null(), "tracing is on");
    assert!(
        is_ref(
            &globals["Environment"]["Variables"][signals::NAMESPACE_VAR],
            "MetricsNamespace"
        ),
        "Globals must set {} to !Ref MetricsNamespace",
        signals::NAMESPACE_VAR
    );

    let functions = resources_of(&t, "AWS::Serverless::Function");
    assert!(functions.len() >= FUNCTIONS.len());
    let log_groups = resources_of(&t, "AWS::Logs::LogGroup");
    for (id, function) in functions {
        let p = &function["Properties"];
        assert!(p["Tracing"].is_null(), "{id} turns tracing on");
        let own = &p["Environment"]["Variables"][signals::NAMESPACE_VAR];
        assert!(
            own.is_null() || is_ref(own, "MetricsNamespace"),
            "{id} sets another metrics namespace"
        );
        let expected = format!("/aws/lambda/${{{id}}}");
        let groups: Vec<&Value> = log_groups
            .iter()
            .filter(|(_, g)| {
                tagged(&g["Properties"]["LogGroupName"])
                    .is_some_and(|(tag, name)| tag == "Sub" && name.as_str() == Some(&expected))
            })
            .map(|(_, g)| *g)
            .collect();
        assert_eq!(groups.len(), 1, "{id}: no log group named {expected}");
        // Its role writes to that group and to no other.
        if FUNCTIONS.iter().any(|(f, _)| *f == id) {
            let group = log_groups
                .iter()
                .find(|(_, g)| std::ptr::eq(*g, groups[0]))
                .unwrap()
                .0;
            let logs: Vec<&Value> = statements_of(&t, id)
                .into_iter()
                .filter(|s| actions(s).iter().any(|a| a.starts_with("logs:")))
                .collect();
            assert_eq!(logs.len(), 1, "{id}: {logs:?}");
            assert_eq!(referenced(&logs[0]["Resource"]), vec![group.to_owned()]);
        }
        assert!(
            is_ref(
                &groups[0]["Properties"]["RetentionInDays"],
                "LogRetentionDays"
            ),
            "{id}: its log group's RetentionInDays is not !Ref LogRetentionDays"
        );
    }
}

/// The dashboard's body as JSON (the `${...}` of its `!Sub` are all inside strings).
fn dashboard(t: &Value) -> serde_json::Value {
    let (tag, body) = tagged(&t["Resources"]["Dashboard"]["Properties"]["DashboardBody"])
        .expect("Dashboard's DashboardBody must be a !Sub string");
    assert_eq!(tag, "Sub");
    serde_json::from_str(body.as_str().unwrap()).expect("DashboardBody is not JSON")
}

/// The metric rows of every metric widget, with CloudWatch's "." (same as the
/// row above) resolved; and the SEARCH expressions.
fn dashboard_metrics(body: &serde_json::Value) -> (Vec<Vec<serde_json::Value>>, Vec<String>) {
    let (mut rows, mut searches) = (Vec::new(), Vec::new());
    for widget in body["widgets"].as_array().unwrap() {
        let Some(metrics) = widget["properties"]["metrics"].as_array() else {
            continue;
        };
        let mut previous: Vec<serde_json::Value> = Vec::new();
        for row in metrics {
            let row = row.as_array().unwrap();
            if let Some(expression) = row.first().and_then(|r| r["expression"].as_str()) {
                if expression.starts_with("SEARCH(") {
                    searches.push(expression.to_owned());
                }
                continue;
            }
            let resolved: Vec<serde_json::Value> = row
                .iter()
                .enumerate()
                .map(|(i, v)| match v.as_str() {
                    Some(".") => previous[i].clone(),
                    _ => v.clone(),
                })
                .collect();
            previous.clone_from(&resolved);
            rows.push(resolved);
        }
    }
    (rows, searches)
}

/// The `Name` dimension's value in a metric row (`[namespace, metric, name, value, ...]`).
fn dimension<'r>(row: &'r [serde_json::Value], name: &str) -> Option<&'r str> {
    let pairs: Vec<&str> = row[2..].iter().map_while(|v| v.as_str()).collect();
    pairs
        .chunks(2)
        .find(|pair| pair[0] == name)
        .and_then(|pair| pair.get(1).copied())
}

/// The `{namespace,dimension,...}` of a SEARCH expression (a `${...}` inside it
/// does not end it).
fn search_schema(expression: &str) -> &str {
    let start = expression.find('{').expect("a SEARCH with a schema");
    let mut at = start + 1;
    loop {
        let rest = &expression[at..];
        if rest.starts_with("${") {
            at += rest.find('}').unwrap() + 1;
        } else if rest.starts_with('}') {
            return &expression[start..=at];
        } else {
            at += rest.chars().next().unwrap().len_utf8();
        }
    }
}

/// The values of `key="..."` in a SEARCH expression.
fn search_term<'e>(expression: &'e str, key: &str) -> Vec<&'e str> {
    let needle = format!("{key}=\"");
    expression
        .match_indices(&needle)
        .map(|(at, _)| {
            let rest = &expression[at + needle.len()..];
            &rest[..rest.find('"').unwrap()]
        })
        .collect()
}

#[test]
fn the_dashboard_shows_every_function_metric_by_its_contract_name() {
    let t = template();
    let body = dashboard(&t);
    let (rows, searches) = dashboard_metrics(&body);
    let ours = "${MetricsNamespace}";
    let named = |name: &str| {
        Metric::ALL
            .into_iter()
            .find(|m| m.name() == name)
            .unwrap_or_else(|| panic!("the dashboard shows {name}, which no function emits"))
    };
    let mut shown = Vec::new();
    for row in rows.iter().filter(|r| r[0].as_str() == Some(ours)) {
        let metric = named(row[1].as_str().unwrap());
        assert_eq!(
            dimension(row, "Function"),
            Some(metric.function().as_str()),
            "{row:?}"
        );
        shown.push(metric);
    }
    for search in &searches {
        let schema = search_schema(search);
        if !schema.contains(ours) {
            continue;
        }
        let names = search_term(search, "MetricName");
        assert!(!names.is_empty(), "{search} names no metric");
        for name in names {
            let metric = named(name);
            assert_eq!(
                search_term(search, "Function"),
                vec![metric.function().as_str()],
                "{search}"
            );
            if let Some(by) = metric.dimension() {
                assert!(schema.contains(by), "{search}: {name} is counted by {by}");
            }
            shown.push(metric);
        }
    }
    for metric in Metric::ALL {
        // The page check is alarmed on, not charted: it runs hourly over a few Pages.
        if metric.function() != Function::PageCheck {
            assert!(
                shown.contains(&metric),
                "the dashboard lacks {}",
                metric.name()
            );
        }
    }
}

#[test]
fn the_dashboard_shows_the_webhook_the_queues_the_processor_and_the_table() {
    let t = template();
    let (rows, searches) = dashboard_metrics(&dashboard(&t));
    let shows = |namespace: &str, metric: &str, resource: &str| {
        rows.iter().any(|r| {
            r[0].as_str() == Some(namespace)
                && r[1].as_str() == Some(metric)
                && r[2..].iter().filter_map(|v| v.as_str()).any(|v| {
                    v == format!("${{{resource}}}") || v.starts_with(&format!("${{{resource}."))
                })
        }) || searches.iter().any(|s| {
            s.contains(&format!("{{{namespace},"))
                && search_term(s, "MetricName").contains(&metric)
                && s.contains(&format!("${{{resource}}}"))
        })
    };
    for (namespace, metric, resource) in [
        ("AWS/ApiGateway", "Count", "WebhookApi"),
        ("AWS/ApiGateway", "Latency", "WebhookApi"),
        ("AWS/ApiGateway", "4xx", "WebhookApi"),
        ("AWS/ApiGateway", "5xx", "WebhookApi"),
        (
            "AWS/SQS",
            "ApproximateNumberOfMessagesVisible",
            "EventsQueue",
        ),
        ("AWS/SQS", "ApproximateAgeOfOldestMessage", "EventsQueue"),
        (
            "AWS/SQS",
            "ApproximateNumberOfMessagesVisible",
            "EventsDeadLetterQueue",
        ),
        ("AWS/Lambda", "Duration", "ProcessorFunction"),
        ("AWS/Lambda", "Errors", "ProcessorFunction"),
        ("AWS/Lambda", "ConcurrentExecutions", "ProcessorFunction"),
        ("AWS/DynamoDB", "ThrottledRequests", "Table"),
        ("AWS/DynamoDB", "ReadThrottleEvents", "Table"),
        ("AWS/DynamoDB", "WriteThrottleEvents", "Table"),
    ] {
        assert!(
            shows(namespace, metric, resource),
            "the dashboard lacks {namespace} {metric} of {resource}"
        );
    }
    // Every name in the body is the stack's; none is a resource that may not exist.
    let resources = t["Resources"].as_mapping().unwrap();
    for name in referenced(&t["Resources"]["Dashboard"]["Properties"]["DashboardBody"]) {
        if name.starts_with("AWS::") || !t["Parameters"][name.as_str()].is_null() {
            continue;
        }
        let resource = resources
            .get(name.as_str())
            .unwrap_or_else(|| panic!("the dashboard names {name}, not in the stack"));
        assert!(
            resource["Condition"].is_null(),
            "the dashboard names {name}, which exists only under a condition"
        );
    }
    assert_eq!(
        referenced(&t["Outputs"]["DashboardUrl"]["Value"]),
        vec!["AWS::Region", "AWS::Region", "Dashboard"]
    );
}

#[test]
fn the_silence_alarm_exists_only_when_silence_alarm_hours_is_set() {
    let t = template();
    let alarm = &t["Resources"][SILENCE_ALARM];
    let condition = alarm["Condition"]
        .as_str()
        .expect("the silence alarm must have a Condition");
    // Not(Equals(Ref SilenceAlarmHours, 0)): the alarm exists for any other value.
    let (not, inner) = tagged(&t["Conditions"][condition])
        .unwrap_or_else(|| panic!("condition {condition} missing"));
    assert_eq!(not, "Not");
    let (equals, operands) = tagged(&inner[0]).expect("Not [!Equals [...]]");
    assert_eq!(equals, "Equals");
    let (parameter, off) = (&operands[0], &operands[1]);
    assert!(is_ref(parameter, "SilenceAlarmHours"), "{parameter:?}");
    let off = off
        .as_str()
        .map(str::to_owned)
        .or_else(|| off.as_u64().map(|n| n.to_string()));
    assert_eq!(off.as_deref(), Some("0"));
    let hours = &t["Parameters"]["SilenceAlarmHours"];
    assert_eq!(hours["Default"].as_u64(), Some(0), "off unless asked for");

    let p = &alarm["Properties"];
    assert!(is_ref(&p["EvaluationPeriods"], "SilenceAlarmHours"));
    let period = p["Period"].as_u64().unwrap();
    assert_eq!(period, 3600, "one period per hour of silence");
    // CloudWatch evaluates at most 7 days for periods of an hour or more.
    assert!(hours["MaxValue"].as_u64().unwrap() * period <= 7 * 24 * 3600);
    assert_eq!(hours["MinValue"].as_u64(), Some(0));
    assert_eq!(p["ComparisonOperator"].as_str(), Some("LessThanThreshold"));
    assert_eq!(p["Statistic"].as_str(), Some("Sum"));
    assert_eq!(p["Threshold"].as_u64(), Some(1));

    // Nothing that exists without the condition names the alarm (a deploy with 0
    // would fail on the dangling reference).
    for section in ["Resources", "Outputs"] {
        for (id, item) in t[section].as_mapping().unwrap() {
            if item["Condition"].as_str() == Some(condition) {
                continue;
            }
            assert!(
                !all_references(item).iter().any(|r| r == SILENCE_ALARM),
                "{section} {id:?} names {SILENCE_ALARM}, which exists only under {condition}"
            );
        }
    }
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
        "DashboardUrl",
        "EventBusName",
        "CommandsUrl",
        "DataDeletionUrl",
        "DeauthorizeUrl",
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

/// Every route of the HTTP API, with its method and authorization: Meta's
/// routes open (their requests are signed by Meta), the commands IAM-only.
#[test]
fn the_http_api_routes_are_the_contracts_with_their_methods_and_auth() {
    let t = template();
    let events = t["Resources"]["WebhookFunction"]["Properties"]["Events"]
        .as_mapping()
        .unwrap();
    let mut routes: Vec<(String, String, String)> = events
        .values()
        .filter(|e| e["Type"].as_str() == Some("HttpApi"))
        .map(|e| {
            let p = &e["Properties"];
            (
                p["Path"].as_str().unwrap().to_owned(),
                p["Method"].as_str().unwrap().to_owned(),
                p["Auth"]["Authorizer"]
                    .as_str()
                    .unwrap_or("NONE")
                    .to_owned(),
            )
        })
        .collect();
    routes.sort();
    let expected: Vec<(String, String, String)> = [
        ("/commands", "POST", "AWS_IAM"),
        ("/data-deletion", "GET", "NONE"),
        ("/data-deletion", "POST", "NONE"),
        ("/deauthorize", "POST", "NONE"),
        ("/webhook", "GET", "NONE"),
        ("/webhook", "POST", "NONE"),
    ]
    .iter()
    .map(|(a, b, c)| ((*a).to_owned(), (*b).to_owned(), (*c).to_owned()))
    .collect();
    assert_eq!(routes, expected);
    // The webhook's table access is limited to the deletion records.
    let statements = statements_of(&t, "WebhookFunction");
    let table = statements
        .iter()
        .find(|s| s["Sid"].as_str() == Some("RecordDeletionRequests"))
        .unwrap();
    assert_eq!(
        table["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"][0].as_str(),
        Some("DELETION#*")
    );
}

/// Quarantined bodies (which can hold message text) expire after
/// `QuarantineRetentionDays`.
#[test]
fn quarantined_bodies_expire_after_quarantine_retention_days() {
    let t = template();
    let parameter = &t["Parameters"]["QuarantineRetentionDays"];
    assert_eq!(parameter["Default"].as_u64(), Some(30));
    let rules = t["Resources"]["QuarantineBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
        .as_sequence()
        .unwrap();
    let rule = rules
        .iter()
        .find(|r| {
            r["Status"].as_str() == Some("Enabled") && r["Prefix"].as_str() == Some("quarantine/")
        })
        .expect("a lifecycle rule on quarantine/");
    assert!(
        is_ref(&rule["ExpirationInDays"], "QuarantineRetentionDays"),
        "{rule:?}"
    );
}

/// Threads expire `RetentionDays` after the person's last event, through the
/// table's TTL attribute, never before a notification token they hold.
#[test]
fn threads_expire_after_retention_days_through_the_tables_ttl() {
    let t = template();
    let parameter = &t["Parameters"]["RetentionDays"];
    assert_eq!(parameter["Default"].as_u64(), Some(400));
    assert_eq!(
        parameter["MinValue"].as_i64(),
        Some(messenger_store::MIN_RETENTION_DAYS)
    );
    assert!(is_ref(
        &t["Resources"]["ProcessorFunction"]["Properties"]["Environment"]["Variables"]["RETENTION_DAYS"],
        "RetentionDays"
    ));
    let ttl = &t["Resources"]["Table"]["Properties"]["TimeToLiveSpecification"];
    assert_eq!(ttl["Enabled"].as_bool(), Some(true));
    assert_eq!(
        ttl["AttributeName"].as_str(),
        Some(messenger_store::schema::SCHEMA.ttl_attribute)
    );
}

/// The edge: the HTTP API throttles every route (parameters), the webhook's
/// concurrency can be reserved, and the secret outlives the stack like the table.
#[test]
fn the_edge_is_throttled_and_the_secret_and_table_are_retained() {
    let t = template();
    let settings = &t["Resources"]["WebhookApi"]["Properties"]["DefaultRouteSettings"];
    assert!(is_ref(&settings["ThrottlingRateLimit"], "ApiRateLimit"));
    assert!(is_ref(&settings["ThrottlingBurstLimit"], "ApiBurstLimit"));
    assert!(
        t["Parameters"]["ApiRateLimit"]["Default"]
            .as_u64()
            .is_some()
    );
    let (tag, reserved) =
        tagged(&t["Resources"]["WebhookFunction"]["Properties"]["ReservedConcurrentExecutions"])
            .unwrap();
    assert_eq!(tag, "If");
    assert_eq!(reserved[0].as_str(), Some("ReservesWebhookConcurrency"));
    assert!(is_ref(&reserved[1], "WebhookReservedConcurrency"));
    assert!(is_ref(&reserved[2], "AWS::NoValue"));
    for id in ["Table", "AppSecret", "QuarantineBucket", "TokenKey"] {
        assert_eq!(
            t["Resources"][id]["DeletionPolicy"].as_str(),
            Some("Retain"),
            "{id}"
        );
        assert_eq!(
            t["Resources"][id]["UpdateReplacePolicy"].as_str(),
            Some("Retain"),
            "{id}"
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

/// The IAM actions a function's inline statements allow on `resource` (a logical id).
fn allowed_on(t: &Value, function: &str, resource: &str) -> Vec<String> {
    let mut allowed = Vec::new();
    for statement in statements_of(t, function) {
        if referenced(&statement["Resource"])
            .iter()
            .any(|r| r == resource)
        {
            allowed.extend(actions(statement).into_iter().map(str::to_owned));
        }
    }
    allowed
}

/// Page tokens are sealed with the stack's key: only the processor may open them
/// (the webhook and the sweeper get no KMS action), and the key is retained with
/// the table that holds what it sealed.
#[test]
fn page_tokens_are_sealed_with_the_stacks_key_and_only_the_processor_and_page_check_open_them() {
    let t = template();
    let key = &t["Resources"]["TokenKey"];
    assert_eq!(key["Type"].as_str(), Some("AWS::KMS::Key"));
    assert_eq!(key["DeletionPolicy"].as_str(), Some("Retain"));
    assert_eq!(key["Properties"]["EnableKeyRotation"].as_bool(), Some(true));
    let env = &t["Resources"]["ProcessorFunction"]["Properties"]["Environment"]["Variables"];
    assert!(is_ref(&env["TOKEN_KEY_ID"], "TokenKey"));
    assert!(is_ref(
        &env["CREDENTIALS_TTL_SECONDS"],
        "CredentialsTtlSeconds"
    ));
    for id in ["ProcessorFunction", "PageCheckFunction"] {
        assert_eq!(allowed_on(&t, id, "TokenKey"), vec!["kms:Decrypt"], "{id}");
        let env = &t["Resources"][id]["Properties"]["Environment"]["Variables"];
        assert!(is_ref(&env["TOKEN_KEY_ID"], "TokenKey"), "{id}");
    }
    for id in ["WebhookFunction", "OtnSweeperFunction"] {
        assert!(allowed_on(&t, id, "TokenKey").is_empty(), "{id}");
        // Their only KMS statement is the optional data key's, usable only through
        // the services that encrypt with it: never a Decrypt of their own.
        for statement in statements_of(&t, id) {
            if actions(statement).iter().any(|a| a.starts_with("kms:")) {
                assert!(is_ref(&statement["Resource"], "DataKeyArn"), "{id}");
                assert!(
                    !statement["Condition"]["StringEquals"]["kms:ViaService"].is_null(),
                    "{id}: the data key outside its services"
                );
            }
        }
    }
    assert!(tagged(&t["Outputs"]["TokenKeyId"]["Value"]).is_some());
}

/// The processor puts a message that can never succeed on the dead-letter queue
/// itself: it is told the queue and may send to it, and to nothing else of it.
#[test]
fn the_processor_may_send_to_the_dead_letter_queue_it_is_told_of_and_nothing_more() {
    let t = template();
    let env = &t["Resources"]["ProcessorFunction"]["Properties"]["Environment"]["Variables"];
    assert!(is_ref(&env["EVENTS_DLQ_URL"], "EventsDeadLetterQueue"));
    assert_eq!(
        allowed_on(&t, "ProcessorFunction", "EventsDeadLetterQueue"),
        vec!["sqs:SendMessage"]
    );
    // The other functions neither know nor touch it.
    for id in ["WebhookFunction", "OtnSweeperFunction", "PageCheckFunction"] {
        assert!(
            allowed_on(&t, id, "EventsDeadLetterQueue").is_empty(),
            "{id}"
        );
    }
}

/// Every DynamoDB request the store makes is one the processor's role allows: a
/// request added to the store without its action fails here, not in production
/// (the emulator does not check IAM).
#[test]
fn the_processor_may_make_every_dynamodb_request_the_store_makes() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/store/src");
    let mut source = String::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        source.push_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap());
    }
    let calls = [
        (".get_item()", vec!["dynamodb:GetItem"]),
        (".put_item()", vec!["dynamodb:PutItem"]),
        (".update_item()", vec!["dynamodb:UpdateItem"]),
        (".delete_item()", vec!["dynamodb:DeleteItem"]),
        (".query()", vec!["dynamodb:Query"]),
        // A transaction's items are checked by their own actions.
        (
            ".transact_write_items()",
            vec!["dynamodb:PutItem", "dynamodb:UpdateItem"],
        ),
        (".scan()", vec!["dynamodb:Scan"]),
        (".batch_write_item()", vec!["dynamodb:BatchWriteItem"]),
    ];
    let t = template();
    let allowed = allowed_on(&t, "ProcessorFunction", "Table");
    let mut checked = 0;
    for (call, actions) in calls {
        if !source.contains(call) {
            continue;
        }
        checked += 1;
        for action in actions {
            assert!(
                allowed.iter().any(|a| a == action),
                "the store calls {call} but the processor may not {action}: {allowed:?}"
            );
        }
    }
    assert!(checked >= 5, "found only {checked} kinds of request");
    // The store never scans the table.
    assert!(!source.contains(".scan()"));
}

/// The template CloudFormation receives: template.yaml through the SAM translator
/// (`scripts/sam-transform.py`, in the project's `.venv`), with whatever SAM adds
/// on its own (roles, managed policies, permissions, mappings).
fn transformed() -> &'static serde_json::Value {
    static TRANSFORMED: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();
    TRANSFORMED.get_or_init(|| {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let python = root.join(".venv/bin/python");
        let out = std::process::Command::new(&python)
            .arg(root.join("scripts/sam-transform.py"))
            .arg(root.join("template.yaml"))
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {}: {e} (source scripts/lib.sh && ensure_venv installs it)",
                    python.display()
                )
            });
        assert!(
            out.status.success(),
            "the SAM translator refused the template:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    })
}

/// Every way a policy in a transformed template grants more than the stack's own
/// resources: a statement on `Resource: "*"` (or `NotResource`), an action
/// wildcard (or `NotAction`), a managed policy. One line each, naming where.
fn broad_grants(t: &serde_json::Value) -> Vec<String> {
    use serde_json::Value as J;
    /// The statement inside `Fn::If [cond, statement, AWS::NoValue]`, or itself.
    fn statements(document: &J) -> Vec<&J> {
        let list: Vec<&J> = match &document["Statement"] {
            J::Array(list) => list.iter().collect(),
            J::Null => vec![],
            one => vec![one],
        };
        list.into_iter()
            .map(|s| match s["Fn::If"].as_array() {
                Some(branches) => &branches[1],
                None => s,
            })
            .collect()
    }
    fn strings(v: &J) -> Vec<&str> {
        match v {
            J::String(s) => vec![s.as_str()],
            J::Array(list) => list.iter().filter_map(J::as_str).collect(),
            _ => vec![],
        }
    }
    /// Every policy document in a resource's properties, however deep.
    fn documents<'v>(v: &'v J, at: &str, found: &mut Vec<(String, &'v J)>) {
        match v {
            J::Object(map) => {
                if map.contains_key("Statement") {
                    found.push((at.to_owned(), v));
                }
                for (k, inner) in map {
                    documents(inner, &format!("{at}.{k}"), found);
                }
            }
            J::Array(list) => {
                for (i, inner) in list.iter().enumerate() {
                    documents(inner, &format!("{at}[{i}]"), found);
                }
            }
            _ => {}
        }
    }
    let mut broad = Vec::new();
    for (id, resource) in t["Resources"].as_object().unwrap() {
        let kind = resource["Type"].as_str().unwrap_or_default();
        for arn in strings(&resource["Properties"]["ManagedPolicyArns"]) {
            broad.push(format!("{id}: managed policy {arn}"));
        }
        if !resource["Properties"]["ManagedPolicyArns"].is_null()
            && strings(&resource["Properties"]["ManagedPolicyArns"]).is_empty()
        {
            broad.push(format!(
                "{id}: managed policies {:?}",
                resource["Properties"]["ManagedPolicyArns"]
            ));
        }
        let mut found = Vec::new();
        documents(&resource["Properties"], id, &mut found);
        for (at, document) in found {
            for statement in statements(document) {
                let sid = statement["Sid"].as_str().unwrap_or("-");
                // A key policy's Resource "*" means "this key" (the only way a key
                // policy names its key), and AWS's default key policy lets the
                // account's IAM policies grant the key: those policies are the
                // ones checked here.
                let key_delegates_to_iam = kind == "AWS::KMS::Key"
                    && at.starts_with(&format!("{id}.KeyPolicy"))
                    && statement["Principal"]["AWS"]["Fn::Sub"]
                        .as_str()
                        .is_some_and(|p| p.ends_with(":root"));
                if key_delegates_to_iam {
                    continue;
                }
                for field in ["NotResource", "NotAction"] {
                    if !statement[field].is_null() {
                        broad.push(format!("{at} {sid}: {field}"));
                    }
                }
                if strings(&statement["Resource"]).contains(&"*") {
                    broad.push(format!("{at} {sid}: Resource \"*\""));
                }
                for action in strings(&statement["Action"]) {
                    if action.contains('*') {
                        broad.push(format!("{at} {sid}: action {action}"));
                    }
                }
            }
        }
    }
    broad
}

/// What SAM generates holds no grant on "*": not in the stack's statements, not in
/// a managed policy SAM attaches for an event source, tracing or logs.
#[test]
fn the_transformed_template_grants_nothing_on_every_resource() {
    let t = transformed();
    assert_eq!(
        broad_grants(t),
        Vec::<String>::new(),
        "grants beyond the stack's resources in the template SAM generates"
    );
    // It did look at the functions' roles and their logs policies.
    let resources = t["Resources"].as_object().unwrap();
    for (id, _) in FUNCTIONS {
        let role = &resources[&format!("{id}Role")];
        assert_eq!(role["Type"], "AWS::IAM::Role");
        assert!(role["Properties"]["ManagedPolicyArns"].is_null(), "{id}");
        assert!(
            resources[id]["Properties"]["TracingConfig"].is_null(),
            "{id}"
        );
    }
    assert_eq!(
        resources["ProcessorFunctionQueue"]["Type"],
        "AWS::Lambda::EventSourceMapping"
    );
    // SAM makes no other mapping (a second trigger on the queue).
    let mappings = resources
        .values()
        .filter(|r| r["Type"] == "AWS::Lambda::EventSourceMapping")
        .count();
    assert_eq!(mappings, 1);
}

/// The check above can fail: each broad grant, put into a copy of the transformed
/// template, is found.
#[test]
fn a_grant_on_every_resource_is_caught() {
    type Broaden = fn(&mut serde_json::Value);
    let broadenings: [(&str, Broaden); 5] = [
        ("Resource \"*\"", |t| {
            t["Resources"]["OtnSweeperFunctionRole"]["Properties"]["Policies"][0]["PolicyDocument"]
                ["Statement"][0]["Resource"] = "*".into();
        }),
        ("an action wildcard", |t| {
            t["Resources"]["WebhookFunctionRole"]["Properties"]["Policies"][0]["PolicyDocument"]
                ["Statement"][0]["Action"] = serde_json::json!(["sqs:*"]);
        }),
        ("SAM's managed policy of an SQS event source", |t| {
            t["Resources"]["ProcessorFunctionRole"]["Properties"]["ManagedPolicyArns"] =
                serde_json::json!([
                    "arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole"
                ]);
        }),
        ("a conditional statement on \"*\"", |t| {
            let statements = t["Resources"]["ProcessorFunctionRole"]["Properties"]["Policies"][0]
                ["PolicyDocument"]["Statement"]
                .as_array_mut()
                .unwrap();
            statements.push(serde_json::json!({"Fn::If": ["HasDataKey",
                {"Effect": "Allow", "Action": "kms:Decrypt", "Resource": "*"},
                {"Ref": "AWS::NoValue"}]}));
        }),
        ("a logs policy on every log group", |t| {
            t["Resources"]["ProcessorLogsPolicy"]["Properties"]["PolicyDocument"]["Statement"][0]
                ["Resource"] = serde_json::json!(["*"]);
        }),
    ];
    for (what, broaden) in broadenings {
        let mut copy = transformed().clone();
        broaden(&mut copy);
        assert!(!broad_grants(&copy).is_empty(), "{what} went unnoticed");
    }
}

/// The optional data key: a parameter, empty by default (AWS's keys); when set, the
/// table, both queues and the bucket are encrypted with it.
#[test]
fn the_table_queues_and_bucket_use_the_data_key_when_one_is_given() {
    let t = template();
    let parameter = &t["Parameters"]["DataKeyArn"];
    assert_eq!(parameter["Default"].as_str(), Some(""));
    let r = &t["Resources"];
    let with_key = |value: &Value| {
        tagged(value).is_some_and(|(tag, v)| {
            tag == "If" && v[0].as_str() == Some("HasDataKey") && is_ref(&v[1], "DataKeyArn")
        })
    };
    assert!(with_key(
        &r["Table"]["Properties"]["SSESpecification"]["KMSMasterKeyId"]
    ));
    for queue in ["EventsQueue", "EventsDeadLetterQueue"] {
        assert!(
            with_key(&r[queue]["Properties"]["KmsMasterKeyId"]),
            "{queue}"
        );
    }
    assert!(with_key(
        &r["QuarantineBucket"]["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"]
            [0]["ServerSideEncryptionByDefault"]["KMSMasterKeyID"]
    ));
}

/// The trusted queue: only the stack's two roles (and the principals named in
/// `CommandSenderArns`) may send to the events queue, everyone else is denied
/// SendMessage alone (so nobody loses the queue itself), and the processor knows
/// the roles' ids to check each message's sender against its type.
#[test]
fn only_the_stacks_roles_and_the_named_principals_may_send_to_the_events_queue() {
    let t = template();
    let policy = &t["Resources"]["EventsQueuePolicy"];
    assert_eq!(policy["Type"].as_str(), Some("AWS::SQS::QueuePolicy"));
    assert!(
        policy["Condition"].is_null(),
        "the policy must always exist"
    );
    assert!(is_ref(&policy["Properties"]["Queues"][0], "EventsQueue"));
    let statements: Vec<&Value> = policy["Properties"]["PolicyDocument"]["Statement"]
        .as_sequence()
        .unwrap()
        .iter()
        .collect();
    let deny = statements
        .iter()
        .copied()
        .find(|s| s["Effect"].as_str() == Some("Deny"))
        .expect("a Deny for every other sender");
    assert_eq!(deny["Principal"].as_str(), Some("*"));
    // SendMessage only: an administrator can still change the policy, or purge.
    assert_eq!(actions(deny), vec!["sqs:SendMessage"]);
    assert_eq!(referenced(&deny["Resource"]), vec!["EventsQueue"]);
    let (tag, branches) =
        tagged(&deny["Condition"]["StringNotEquals"]["aws:PrincipalArn"]).unwrap();
    assert_eq!(tag, "If");
    assert_eq!(branches[0].as_str(), Some("HasCommandSenders"));
    // Without CommandSenderArns: exactly the two roles.
    let alone: Vec<String> = branches[2]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(referenced)
        .collect();
    assert_eq!(alone, vec!["WebhookFunctionRole", "ProcessorFunctionRole"]);
    // With it: the two roles and the list.
    let (split, args) = tagged(&branches[1]).unwrap();
    assert_eq!(split, "Split");
    assert_eq!(
        referenced(&args[1]),
        vec![
            "WebhookFunctionRole",
            "ProcessorFunctionRole",
            "CommandSenderArns"
        ]
    );
    let allow = unconditional(
        statements
            .iter()
            .copied()
            .find(|s| tagged(s).is_some())
            .expect("a conditional Allow for the named principals"),
    );
    assert_eq!(allow["Effect"].as_str(), Some("Allow"));
    assert_eq!(actions(allow), vec!["sqs:SendMessage"]);
    assert_eq!(
        all_references(&allow["Principal"]["AWS"]),
        vec!["CommandSenderArns"]
    );
    assert_eq!(
        t["Parameters"]["CommandSenderArns"]["Default"].as_str(),
        Some("")
    );

    let env = &t["Resources"]["ProcessorFunction"]["Properties"]["Environment"]["Variables"];
    for (var, role) in [
        ("WEBHOOK_SENDER_ID", "WebhookFunctionRole.RoleId"),
        ("PROCESSOR_SENDER_ID", "ProcessorFunctionRole.RoleId"),
    ] {
        let (tag, value) = tagged(&env[var]).unwrap_or_else(|| panic!("{var} missing"));
        assert_eq!((tag.as_str(), value.as_str()), ("GetAtt", Some(role)));
    }
    assert!(is_ref(&env["REPLAY_SENDER_IDS"], "ReplaySenderIds"));
}

/// The hourly Page check: scheduled, bounded, and allowed only the Pages' records
/// (the partition `PAGES`), never a thread, a token item or the ledger.
#[test]
fn the_page_check_runs_hourly_on_the_pages_records_only() {
    let t = template();
    let f = &t["Resources"]["PageCheckFunction"]["Properties"];
    assert_eq!(
        f["Events"]["Hourly"]["Properties"]["Schedule"].as_str(),
        Some("rate(1 hour)")
    );
    // Its last Page starts with 20 s left (three Graph calls at their 5 s timeout).
    assert!(f["Timeout"].as_u64().unwrap() >= 60);
    let env = &f["Environment"]["Variables"];
    for (var, param) in [
        ("TABLE_NAME", "Table"),
        ("SECRET_ARN", "AppSecret"),
        ("GRAPH_API_VERSION", "GraphApiVersion"),
        ("APP_ID", "AppId"),
    ] {
        assert!(is_ref(&env[var], param), "{var}");
    }
    let table: Vec<&Value> = statements_of(&t, "PageCheckFunction")
        .into_iter()
        .filter(|s| referenced(&s["Resource"]).iter().any(|r| r == "Table"))
        .collect();
    assert_eq!(table.len(), 1, "{table:?}");
    let mut allowed = actions(table[0]);
    allowed.sort_unstable();
    assert_eq!(allowed, ["dynamodb:Query", "dynamodb:UpdateItem"]);
    let keys = &table[0]["Condition"]["ForAllValues:StringEquals"]["dynamodb:LeadingKeys"];
    assert_eq!(keys[0].as_str(), Some("PAGES"));
    assert_eq!(keys.as_sequence().map(Vec::len), Some(1));
    // The alarm counts unhealthy Pages and the check's own failures.
    let alarm = &t["Resources"]["PageCheckFailuresAlarm"]["Properties"];
    let metrics = alarm["Metrics"].as_sequence().unwrap();
    assert!(
        metrics
            .iter()
            .any(|m| m["MetricStat"]["Metric"]["MetricName"].as_str() == Some("PagesUnhealthy"))
    );
    assert!(
        metrics.iter().any(
            |m| m["MetricStat"]["Metric"]["MetricName"].as_str() == Some("Errors")
                && is_ref(
                    &m["MetricStat"]["Metric"]["Dimensions"][0]["Value"],
                    "PageCheckFunction"
                )
        )
    );
}
