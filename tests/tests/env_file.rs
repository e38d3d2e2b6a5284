//! `events/env.json`, the environment `sam local invoke --env-vars` gives each
//! function, kept in step with template.yaml: SAM overrides only the variables a
//! function declares, so a variable the file sets and the template does not declare
//! is silently dropped. scripts/lambda-tier runs the real binaries with this file.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_norway::Value;

fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn template() -> Value {
    serde_norway::from_str(&std::fs::read_to_string(root().join("template.yaml")).unwrap()).unwrap()
}

fn env_file() -> serde_json::Map<String, serde_json::Value> {
    let text = std::fs::read_to_string(root().join("events/env.json")).unwrap();
    match serde_json::from_str(&text).unwrap() {
        serde_json::Value::Object(functions) => functions,
        other => panic!("events/env.json must be an object of functions, found {other}"),
    }
}

/// The variables a function declares: its own and the Globals' (SAM merges them).
fn declared(t: &Value, function: &str) -> Vec<(String, Value)> {
    let own = &t["Resources"][function]["Properties"]["Environment"]["Variables"];
    let global = &t["Globals"]["Function"]["Environment"]["Variables"];
    [global, own]
        .into_iter()
        .filter_map(Value::as_mapping)
        .flat_map(|vars| vars.iter())
        .map(|(k, v)| (k.as_str().unwrap().to_owned(), v.clone()))
        .collect()
}

fn functions(t: &Value) -> Vec<String> {
    t["Resources"]
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some("AWS::Serverless::Function"))
        .map(|(id, _)| id.as_str().unwrap().to_owned())
        .collect()
}

/// The names a value `!Ref`s, inside `!If` branches too (SAM local resolves both).
fn refs(value: &Value) -> Vec<String> {
    match value {
        Value::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            match (tag.trim_start_matches('!'), &tagged.value) {
                ("Ref", Value::String(name)) => vec![name.clone()],
                (_, inner) => refs(inner),
            }
        }
        Value::Sequence(items) => items.iter().flat_map(refs).collect(),
        _ => vec![],
    }
}

fn is_no_value(value: &Value) -> bool {
    refs(value) == ["AWS::NoValue"] && matches!(value, Value::Tagged(_))
}

#[test]
fn every_variable_the_env_file_sets_is_declared_on_its_function() {
    let t = template();
    let known = functions(&t);
    for (function, vars) in env_file() {
        assert!(
            known.contains(&function),
            "events/env.json names {function}, which is not a function of template.yaml ({known:?})"
        );
        let names: Vec<String> = declared(&t, &function)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        for (var, value) in vars.as_object().unwrap() {
            assert!(
                names.contains(var),
                "events/env.json sets {var} for {function}, which template.yaml does not \
                 declare on it: `sam local invoke --env-vars` would drop it"
            );
            assert!(
                value.is_string(),
                "{function}'s {var} must be a string, as Lambda passes it"
            );
        }
    }
}

#[test]
fn the_env_file_replaces_every_stack_resource_sam_local_would_pass_by_its_logical_id() {
    // Under `sam local invoke`, `!Ref Table` is the string "Table": a function given
    // that would call a table named Table (or read a secret named AppSecret).
    let t = template();
    let resources = t["Resources"].as_mapping().unwrap();
    let file = env_file();
    for function in functions(&t) {
        let set = file
            .get(&function)
            .and_then(|v| v.as_object())
            .unwrap_or_else(|| panic!("events/env.json has no object for {function}"));
        for (var, value) in declared(&t, &function) {
            let names_a_resource = refs(&value)
                .iter()
                .any(|name| resources.contains_key(name.as_str()));
            if names_a_resource {
                assert!(
                    set.contains_key(&var),
                    "{function}'s {var} names a stack resource; events/env.json must give \
                     it the local stack's"
                );
            }
        }
    }
}

#[test]
fn the_local_only_variables_are_left_out_of_the_deployed_functions() {
    // Secrets and endpoints are declared for the env file only: on AWS the secrets
    // come from SECRET_ARN and the endpoints are AWS's and Graph's own.
    let t = template();
    for function in functions(&t) {
        let vars = declared(&t, &function);
        for local_only in [
            "AWS_ENDPOINT_URL",
            "GRAPH_API_BASE_URL",
            "APP_SECRET",
            "VERIFY_TOKEN",
            "PAGE_ACCESS_TOKENS",
        ] {
            let (_, value) = vars
                .iter()
                .find(|(k, _)| k == local_only)
                .unwrap_or_else(|| panic!("{function} does not declare {local_only}"));
            assert!(
                is_no_value(value),
                "{function}'s {local_only} must be `!Ref AWS::NoValue`, found {value:?}"
            );
        }
    }
}

#[test]
fn the_env_file_reads_secrets_from_itself_with_the_samples_local_placeholders() {
    let file = env_file();
    for (function, vars) in &file {
        let vars = vars.as_object().unwrap();
        if vars.contains_key("APP_SECRET") {
            // SECRET_ARN would win over the variables (SAM local: "AppSecret").
            assert_eq!(vars.get("SECRET_ARN").and_then(|v| v.as_str()), Some(""));
        }
        for (var, value) in vars {
            let value = value.as_str().unwrap();
            if ["APP_SECRET", "VERIFY_TOKEN"].contains(&var.as_str()) {
                assert!(
                    value.starts_with("local-"),
                    "{function}'s {var} must be an obvious local placeholder"
                );
            }
        }
    }
    // events/webhook-post*.json are signed with this secret (scripts/gen-events).
    assert_eq!(
        file["WebhookFunction"]["APP_SECRET"].as_str(),
        Some("local-app-secret")
    );
    let tokens: serde_json::Map<String, serde_json::Value> = serde_json::from_str(
        file["ProcessorFunction"]["PAGE_ACCESS_TOKENS"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert!(
        tokens
            .values()
            .all(|t| t.as_str().unwrap().starts_with("local-page-token")),
        "{tokens:?}"
    );
}
