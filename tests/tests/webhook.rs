//! The webhook function, wired as in production (`webhook::from_env`), against the
//! emulator's SQS FIFO queue, S3 bucket and Secrets Manager, driven with the API
//! Gateway and function URL events of `events/`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

use integration_tests::*;
use lambda_http::http::StatusCode;
use serde_json::json;

async fn webhook_for(sdk: &SdkConfig, env: &BTreeMap<String, String>) -> webhook::AwsWebhook {
    webhook::from_env(env, sdk).await.unwrap()
}

/// A fresh queue and bucket, and a webhook writing to them.
async fn setup() -> (SdkConfig, String, String, webhook::AwsWebhook) {
    let sdk = emulator().await;
    let queue = fifo_queue(&sdk).await;
    let bucket = bucket(&sdk).await;
    let hook = webhook_for(&sdk, &webhook_env(&queue, &bucket)).await;
    (sdk, queue, bucket, hook)
}

/// The GET verification sample with one query parameter changed, in both places
/// API Gateway v2 puts the query (lambda_http reads `rawQueryString`).
fn verification_with(param: &str, value: &str) -> lambda_http::Request {
    let mut event = event_json("webhook-get-verify.json");
    event["queryStringParameters"][param] = value.into();
    let query = event["queryStringParameters"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap()))
        .collect::<Vec<_>>()
        .join("&");
    event["rawQueryString"] = query.into();
    request(&event)
}

fn raw_body(event_file: &str) -> String {
    event_json(event_file)["body"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn subscription_check_with_the_verify_token_echoes_the_challenge() {
    let (_, _, _, hook) = setup().await;
    let response = hook
        .handle(request(&event_json("webhook-get-verify.json")))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body_text(&response), "1158201444");
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
}

/// The subscription check as the REST API (payload 1.0) and a function URL deliver
/// it, built from the POST samples of those integrations.
#[tokio::test]
async fn subscription_check_works_behind_the_rest_api_and_a_function_url() {
    let (_, _, _, hook) = setup().await;
    let query = |token: &str| json!({"hub.mode": "subscribe", "hub.verify_token": token, "hub.challenge": "1158201444"});
    let multi = |token: &str| json!({"hub.mode": ["subscribe"], "hub.verify_token": [token], "hub.challenge": ["1158201444"]});
    for (token, status) in [
        ("local-verify-token", StatusCode::OK),
        ("not-the-token", StatusCode::FORBIDDEN),
    ] {
        let mut rest = event_json("webhook-post-rest-api.json");
        rest["httpMethod"] = json!("GET");
        rest["requestContext"]["httpMethod"] = json!("GET");
        rest["body"] = serde_json::Value::Null;
        rest["queryStringParameters"] = query(token);
        rest["multiValueQueryStringParameters"] = multi(token);

        let mut url = event_json("webhook-post-function-url.json");
        url["requestContext"]["http"]["method"] = json!("GET");
        url["body"] = serde_json::Value::Null;
        url["rawQueryString"] = json!(format!(
            "hub.mode=subscribe&hub.verify_token={token}&hub.challenge=1158201444"
        ));
        url["queryStringParameters"] = query(token);

        for (name, event) in [("REST API", rest), ("function URL", url)] {
            let response = hook.handle(request(&event)).await.unwrap();
            assert_eq!(response.status(), status, "{name} with {token}");
            assert_eq!(
                body_text(&response) == "1158201444",
                status == StatusCode::OK,
                "{name} with {token}"
            );
        }
    }
}

#[tokio::test]
async fn subscription_check_with_a_wrong_token_or_mode_is_forbidden() {
    let (_, _, _, hook) = setup().await;
    for (param, value) in [
        ("hub.verify_token", "not-the-token"),
        ("hub.verify_token", ""),
        ("hub.mode", "unsubscribe"),
    ] {
        let response = hook.handle(verification_with(param, value)).await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{param}={value}");
        assert_ne!(body_text(&response), "1158201444");
    }
}

#[tokio::test]
async fn two_entries_of_three_messaging_and_one_standby_become_eight_fifo_messages() {
    let (sdk, queue, _, hook) = setup().await;
    let response = hook
        .handle(request(&event_json("webhook-post.json")))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body_text(&response), "EVENT_RECEIVED");

    let queued = drain(&sdk, &queue).await;
    assert_eq!(queued.len(), 8);

    let mut groups: BTreeMap<&str, usize> = BTreeMap::new();
    for q in &queued {
        *groups.entry(q.group_id.as_str()).or_default() += 1;
    }
    let expected: BTreeMap<&str, usize> = [
        ("100000000000001:2000000000000001", 2),
        ("100000000000001:2000000000000002", 1),
        ("100000000000001:2000000000000003", 1),
        ("100000000000002:3000000000000001", 3),
        ("100000000000002:3000000000000002", 1),
    ]
    .into();
    assert_eq!(groups, expected);

    let standby: Vec<_> = queued
        .iter()
        .filter(|q| q.body["source"] == "standby")
        .map(|q| q.body["event"]["message"]["mid"].as_str().unwrap())
        .collect();
    assert_eq!(standby.len(), 2);
    assert!(standby.contains(&"m_local_A4") && standby.contains(&"m_local_B4"));

    // Each queued event is the event Meta sent, and names its Page.
    let sent: serde_json::Value = serde_json::from_str(&raw_body("webhook-post.json")).unwrap();
    for entry in sent["entry"].as_array().unwrap() {
        for event in entry["messaging"].as_array().unwrap() {
            let q = queued.iter().find(|q| &q.body["event"] == event).unwrap();
            assert_eq!(q.body["type"], "event");
            assert_eq!(q.body["page_id"], entry["id"]);
            assert_eq!(q.body["source"], "messaging");
        }
    }
    // The dedup ids are distinct: no two events collapse into one.
    let ids: BTreeSet<_> = queued.iter().map(|q| q.dedup_id.clone()).collect();
    assert_eq!(ids.len(), 8);
}

#[tokio::test]
async fn events_keep_their_bytes_on_the_queue() {
    let (sdk, queue, _, hook) = setup().await;
    hook.handle(request(&event_json("webhook-post.json")))
        .await
        .unwrap();
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let got = sqs
        .receive_message()
        .queue_url(&queue)
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap();
    let bodies: Vec<&str> = got.messages().iter().filter_map(|m| m.body()).collect();
    // Escapes exactly as Meta sent them: the processor sees what was signed.
    assert!(
        bodies
            .iter()
            .any(|b| b.contains(r"Gr\u00fc\u00dfe aus M\u00fcnchen"))
    );
    assert!(
        bodies
            .iter()
            .any(|b| b.contains(r"https:\/\/scontent.example.invalid\/v\/"))
    );
}

#[tokio::test]
async fn a_redelivery_with_a_new_entry_time_carries_the_same_dedup_ids() {
    let sdk = emulator().await;
    let bucket = bucket(&sdk).await;
    let first_queue = fifo_queue(&sdk).await;
    let again_queue = fifo_queue(&sdk).await;
    let first = webhook_for(&sdk, &webhook_env(&first_queue, &bucket)).await;
    let again = webhook_for(&sdk, &webhook_env(&again_queue, &bucket)).await;

    assert_ne!(
        raw_body("webhook-post.json"),
        raw_body("webhook-post-redelivered.json"),
        "the redelivery differs in entry.time"
    );
    let a = first
        .handle(request(&event_json("webhook-post.json")))
        .await
        .unwrap();
    let b = again
        .handle(request(&event_json("webhook-post-redelivered.json")))
        .await
        .unwrap();
    assert_eq!((a.status(), b.status()), (StatusCode::OK, StatusCode::OK));

    let ids = |q: Vec<Queued>| {
        q.into_iter()
            .map(|q| (q.group_id, q.dedup_id))
            .collect::<BTreeSet<_>>()
    };
    let first_ids = ids(drain(&sdk, &first_queue).await);
    assert_eq!(first_ids.len(), 8);
    assert_eq!(first_ids, ids(drain(&sdk, &again_queue).await));
}

#[tokio::test]
async fn rest_api_base64_and_function_url_requests_are_handled_alike() {
    let sdk = emulator().await;
    let bucket = bucket(&sdk).await;
    let mut seen = Vec::new();
    for file in [
        "webhook-post.json",
        "webhook-post-rest-api.json",
        "webhook-post-base64.json",
        "webhook-post-function-url.json",
    ] {
        let queue = fifo_queue(&sdk).await;
        let hook = webhook_for(&sdk, &webhook_env(&queue, &bucket)).await;
        let response = hook.handle(request(&event_json(file))).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{file}");
        let ids: BTreeSet<_> = drain(&sdk, &queue)
            .await
            .into_iter()
            .map(|q| q.dedup_id)
            .collect();
        assert_eq!(ids.len(), 8, "{file}");
        seen.push(ids);
    }
    assert!(seen.windows(2).all(|w| w[0] == w[1]));
}

#[tokio::test]
async fn unsigned_or_badly_signed_posts_are_refused_and_queue_nothing() {
    let (sdk, queue, bucket, hook) = setup().await;
    let body = raw_body("webhook-post.json");
    let cases = [
        (
            request(&event_json("webhook-post-unsigned.json")),
            StatusCode::UNAUTHORIZED,
        ),
        (
            request(&event_json("webhook-post-bad-signature.json")),
            StatusCode::FORBIDDEN,
        ),
        (post(&body, Some("sha256=abc")), StatusCode::UNAUTHORIZED),
        (
            post(&body, Some(&sign("another body"))),
            StatusCode::FORBIDDEN,
        ),
        (
            post(&format!("{body} "), Some(&sign(&body))),
            StatusCode::FORBIDDEN,
        ),
    ];
    for (i, (req, want)) in cases.into_iter().enumerate() {
        let response = hook.handle(req).await.unwrap();
        assert_eq!(response.status(), want, "case {i}");
    }
    assert!(drain(&sdk, &queue).await.is_empty());
    assert!(quarantined(&sdk, &bucket).await.is_empty());
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_before_the_signature_is_checked() {
    let sdk = emulator().await;
    let queue = fifo_queue(&sdk).await;
    let bucket = bucket(&sdk).await;
    let mut env = webhook_env(&queue, &bucket);
    env.insert("MAX_BODY_BYTES".into(), "1024".into());
    let hook = webhook_for(&sdk, &env).await;

    let body = raw_body("webhook-post.json");
    assert!(body.len() > 1024);
    for signature in [Some(sign(&body)), None, Some("garbage".to_owned())] {
        let response = hook
            .handle(post(&body, signature.as_deref()))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }
    assert!(drain(&sdk, &queue).await.is_empty());
}

#[tokio::test]
async fn signed_bodies_that_are_not_page_deliveries_are_kept_in_quarantine() {
    let (sdk, queue, bucket, hook) = setup().await;
    let response = hook
        .handle(request(&event_json("webhook-post-not-page.json")))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let not_json = "this is not json \u{00e4}";
    let response = hook
        .handle(post(not_json, Some(&sign(not_json))))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    assert!(drain(&sdk, &queue).await.is_empty());
    let kept = quarantined(&sdk, &bucket).await;
    assert_eq!(kept.len(), 2, "{kept:?}");
    let instagram = raw_body("webhook-post-not-page.json");
    let (key, bytes, reason) = kept
        .iter()
        .find(|(_, b, _)| b == instagram.as_bytes())
        .expect("the instagram body is kept byte for byte");
    assert!(key.starts_with("quarantine/") && key.ends_with(".body"));
    assert!(reason.contains("instagram"), "{reason}");
    assert_eq!(bytes, instagram.as_bytes());
    assert!(
        kept.iter()
            .any(|(_, b, r)| b == not_json.as_bytes() && r.contains("not a JSON"))
    );

    // Meta redelivering the same body keeps one copy.
    hook.handle(request(&event_json("webhook-post-not-page.json")))
        .await
        .unwrap();
    assert_eq!(quarantined(&sdk, &bucket).await.len(), 2);
}

#[tokio::test]
async fn an_entry_without_messaging_events_is_quarantined_and_the_rest_still_queued() {
    let (sdk, queue, bucket, hook) = setup().await;
    let body = r#"{"object":"page","entry":[{"id":"100000000000001","time":1,"changes":[{"field":"feed","value":{}}]},{"id":"100000000000001","time":1,"messaging":[{"sender":{"id":"7"},"recipient":{"id":"100000000000001"},"timestamp":5,"message":{"mid":"m_x","text":"hi"}}]}]}"#;
    let response = hook.handle(post(body, Some(&sign(body)))).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(drain(&sdk, &queue).await.len(), 1);
    let kept = quarantined(&sdk, &bucket).await;
    assert_eq!(kept.len(), 1);
    assert!(kept[0].2.contains("entry[0]"), "{}", kept[0].2);
}

#[tokio::test]
async fn a_queue_that_does_not_exist_gets_503_never_200() {
    let sdk = emulator().await;
    let bucket = bucket(&sdk).await;
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap();
    let missing = format!("{endpoint}/123456789012/{}.fifo", unique("missing"));
    let hook = webhook_for(&sdk, &webhook_env(&missing, &bucket)).await;
    let response = hook
        .handle(request(&event_json("webhook-post.json")))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn a_stopped_emulator_gets_503_never_200() {
    // A port nothing listens on stands for an emulator (or SQS) that is down.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let sdk = at_endpoint(&format!("http://127.0.0.1:{closed}")).await;
    let queue = format!("http://127.0.0.1:{closed}/123456789012/events.fifo");
    let hook = webhook_for(&sdk, &webhook_env(&queue, "unused-bucket")).await;
    let response = hook
        .handle(request(&event_json("webhook-post.json")))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_ne!(body_text(&response), "EVENT_RECEIVED");
}

#[tokio::test]
async fn the_fifty_event_benchmark_batch_yields_fifty_messages() {
    let sdk = emulator().await;
    let queue = fifo_queue(&sdk).await;
    let bucket = bucket(&sdk).await;
    let mut env = webhook_env(&queue, &bucket);
    env.insert("APP_SECRET".into(), "bench-secret".into());
    let hook = webhook_for(&sdk, &env).await;

    let data =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../functions/webhook/benches/data");
    let body = std::fs::read_to_string(data.join("batch50.body")).unwrap();
    let headers: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("batch50.headers.json")).unwrap())
            .unwrap();
    let response = hook
        .handle(post(&body, headers["x-hub-signature-256"].as_str()))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let queued = drain(&sdk, &queue).await;
    assert_eq!(queued.len(), 50);
    assert_eq!(
        queued
            .iter()
            .filter(|q| q.body["source"] == "standby")
            .count(),
        10
    );
}

#[tokio::test]
async fn the_secret_named_by_secret_arn_wins_over_the_environment() {
    let sdk = emulator().await;
    let queue = fifo_queue(&sdk).await;
    let bucket = bucket(&sdk).await;
    let arn = aws_sdk_secretsmanager_arn(
        &sdk,
        r#"{"app_secret":"from-secrets-manager","verify_token":"sm-token","page_access_tokens":{}}"#,
    )
    .await;
    let mut env = webhook_env(&queue, &bucket);
    env.insert("SECRET_ARN".into(), arn);
    let hook = webhook_for(&sdk, &env).await;

    // The environment's app secret no longer signs valid requests...
    let body = raw_body("webhook-post.json");
    let response = hook.handle(post(&body, Some(&sign(&body)))).await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    // ...and the secret's verify token is the one that subscribes.
    let response = hook
        .handle(verification_with("hub.verify_token", "sm-token"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn missing_configuration_fails_at_start_and_names_the_variable() {
    let sdk = emulator().await;
    let full = webhook_env("http://127.0.0.1:1/q.fifo", "b");
    for var in [
        "EVENTS_QUEUE_URL",
        "QUARANTINE_BUCKET",
        "APP_SECRET",
        "VERIFY_TOKEN",
    ] {
        let mut env = full.clone();
        env.remove(var);
        let err = webhook::from_env(&env, &sdk).await.unwrap_err().to_string();
        assert!(err.contains(var), "{var}: {err}");
        assert!(!err.contains(LOCAL_APP_SECRET), "{err}");
    }
    for (var, bad) in [
        ("MAX_BODY_BYTES", "lots"),
        ("MAX_EVENTS_PER_DELIVERY", "0"),
        ("MAX_EVENTS_PER_DELIVERY", "many"),
        ("CREDENTIALS_TTL_SECONDS", "5m"),
        ("CREDENTIALS_TTL_SECONDS", "-1"),
    ] {
        let mut env = full.clone();
        env.insert(var.into(), bad.into());
        let err = webhook::from_env(&env, &sdk).await.unwrap_err().to_string();
        assert!(err.contains(var), "{var}={bad}: {err}");
    }

    let mut env = full;
    env.insert(
        "SECRET_ARN".into(),
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:does-not-exist".into(),
    );
    let err = webhook::from_env(&env, &sdk).await.unwrap_err().to_string();
    assert!(err.contains("SECRET_ARN"), "{err}");
}

async fn aws_sdk_secretsmanager_arn(sdk: &SdkConfig, document: &str) -> String {
    aws_sdk_secretsmanager::Client::new(sdk)
        .create_secret()
        .name(unique("messenger"))
        .secret_string(document)
        .send()
        .await
        .unwrap()
        .arn()
        .unwrap()
        .to_owned()
}

/// An HTTP API request to the data deletion or deauthorize route.
fn callback_request(method: &str, path: &str, query: &str, form: &str) -> lambda_http::Request {
    let mut event = event_json("webhook-post.json");
    event["routeKey"] = format!("{method} {path}").into();
    event["rawPath"] = path.into();
    event["rawQueryString"] = query.into();
    event["requestContext"]["http"]["method"] = method.into();
    event["requestContext"]["http"]["path"] = path.into();
    event["requestContext"]["routeKey"] = format!("{method} {path}").into();
    event["headers"] = json!({
        "host": "abcdefghij.execute-api.us-east-1.amazonaws.com",
        "content-type": "application/x-www-form-urlencoded"
    });
    if !query.is_empty() {
        let params: serde_json::Map<String, serde_json::Value> = query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.into()))
            .collect();
        event["queryStringParameters"] = params.into();
    }
    event["body"] = form.into();
    request(&event)
}

/// How many deletion records the table holds.
async fn deletion_records(sdk: &SdkConfig, table: &str) -> usize {
    aws_sdk_dynamodb::Client::new(sdk)
        .scan()
        .table_name(table)
        .send()
        .await
        .unwrap()
        .items()
        .iter()
        .filter(|i| {
            i.get("pk")
                .and_then(|v| v.as_s().ok())
                .is_some_and(|pk| pk.starts_with("DELETION#"))
        })
        .count()
}

#[tokio::test]
async fn a_signed_data_deletion_request_is_recorded_and_its_status_page_answers() {
    use hub_signature::signed_request::sign;
    let sdk = emulator().await;
    let queue = fifo_queue(&sdk).await;
    let bucket = bucket(&sdk).await;
    let table = table(&sdk).await;
    let mut env = webhook_env(&queue, &bucket);
    env.insert("TABLE_NAME".to_owned(), table.clone());
    let hook = webhook_for(&sdk, &env).await;
    let expires = now_ms() / 1000 + 3600;
    let payload = format!(
        r#"{{"algorithm":"HMAC-SHA256","expires":{expires},"issued_at":{},"user_id":"1234567890"}}"#,
        expires - 3600
    );
    let signed = sign(&payload, LOCAL_APP_SECRET.as_bytes());
    let answer = |form: String| {
        let hook = &hook;
        async move {
            let r = hook
                .handle(callback_request("POST", "/data-deletion", "", &form))
                .await
                .unwrap();
            (r.status(), body_text(&r))
        }
    };

    // Refused, and nothing recorded: each a 403 (signature) or a 400.
    let (sig, body) = signed.split_once('.').unwrap();
    let tampered = format!("{sig}.{}", &body[..body.len() - 2]);
    let other_secret = sign(&payload, b"not-the-app-secret");
    let sha1 = sign(
        &payload.replace("HMAC-SHA256", "HMAC-SHA1"),
        LOCAL_APP_SECRET.as_bytes(),
    );
    let padded = format!("{signed}=");
    let expired = sign(
        &payload.replace(&expires.to_string(), "1000"),
        LOCAL_APP_SECRET.as_bytes(),
    );
    let huge = "A".repeat(1024 * 1024);
    for (form, status) in [
        (format!("signed_request={tampered}"), StatusCode::FORBIDDEN),
        (
            format!("signed_request={other_secret}"),
            StatusCode::FORBIDDEN,
        ),
        (format!("signed_request={sha1}"), StatusCode::BAD_REQUEST),
        (format!("signed_request={padded}"), StatusCode::BAD_REQUEST),
        (format!("signed_request={expired}"), StatusCode::BAD_REQUEST),
        (format!("signed_request={huge}"), StatusCode::BAD_REQUEST),
        ("user_id=1234567890".to_owned(), StatusCode::BAD_REQUEST),
    ] {
        let (got, text) = answer(form.clone()).await;
        assert_eq!(got, status, "{}: {text}", &form[..form.len().min(60)]);
        assert!(!text.contains(LOCAL_APP_SECRET), "{text}");
    }
    assert_eq!(deletion_records(&sdk, &table).await, 0);

    // Accepted: the URL of its status page and the code; recorded once however
    // often Meta sends it.
    let (status, text) = answer(format!("signed_request={signed}")).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let answer_json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let code = answer_json["confirmation_code"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(code.len(), 16);
    assert_eq!(
        answer_json["url"],
        format!("https://abcdefghij.execute-api.us-east-1.amazonaws.com/data-deletion?code={code}")
    );
    let (_, again) = answer(format!("signed_request={signed}")).await;
    assert!(again.contains(&code));
    assert_eq!(deletion_records(&sdk, &table).await, 1);
    // The record holds no id of the person.
    let items = aws_sdk_dynamodb::Client::new(&sdk)
        .scan()
        .table_name(&table)
        .send()
        .await
        .unwrap();
    assert!(!format!("{:?}", items.items()).contains("1234567890"));

    let status_page = hook
        .handle(callback_request(
            "GET",
            "/data-deletion",
            &format!("code={code}"),
            "",
        ))
        .await
        .unwrap();
    assert_eq!(status_page.status(), StatusCode::OK);
    assert!(body_text(&status_page).contains(&code));
    assert!(body_text(&status_page).contains("completed"));
    for unknown in ["0123456789abcdef", "../../etc", ""] {
        let r = hook
            .handle(callback_request(
                "GET",
                "/data-deletion",
                &format!("code={unknown}"),
                "",
            ))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{unknown}");
    }

    // Deauthorize: the same signature rules, recorded under its own code, and the
    // Page disconnected: its token forgotten, its events parked from now on.
    use messenger_store::PageRegistry;
    let store = messenger_store::DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), &table);
    let page = messenger_types::PageId::new("100000000000001");
    store
        .store_page_token(&page, b"sealed".to_vec(), messenger_types::Timestamp::now())
        .await
        .unwrap();
    let deauth = sign(
        r#"{"algorithm":"HMAC-SHA256","user_id":"1234567890","profile_id":"100000000000001"}"#,
        LOCAL_APP_SECRET.as_bytes(),
    );
    let r = hook
        .handle(callback_request(
            "POST",
            "/deauthorize",
            "",
            &format!("signed_request={deauth}"),
        ))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", body_text(&r));
    let record = store.page_record(&page).await.unwrap().unwrap();
    assert_eq!(record.status, messenger_store::PageStatus::Missing);
    assert_eq!(record.reason.as_deref(), Some("deauthorized"));
    assert!(record.sealed_token.is_none());
    let bad = hook
        .handle(callback_request(
            "POST",
            "/deauthorize",
            "",
            &format!("signed_request={other_secret}"),
        ))
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::FORBIDDEN);
    assert_eq!(deletion_records(&sdk, &table).await, 2);
}

/// `X-Hub-Signature-256` for `body` under `secret`.
fn sign_with(secret: &str, body: &str) -> String {
    hub_signature::Verifier::new(secret.as_bytes()).sign_sha256(body.as_bytes())
}

/// A webhook reading its secret from Secrets Manager (app secret `app_secret`),
/// with these extra variables; and the secret's ARN.
async fn webhook_with_secret(
    sdk: &SdkConfig,
    app_secret: &str,
    extra: &[(&str, &str)],
) -> (String, String, webhook::AwsWebhook) {
    let queue = fifo_queue(sdk).await;
    let bucket = bucket(sdk).await;
    let arn = aws_sdk_secretsmanager_arn(sdk, &secret_document(app_secret)).await;
    let mut env = webhook_env(&queue, &bucket);
    env.insert("SECRET_ARN".into(), arn.clone());
    for (k, v) in extra {
        env.insert((*k).into(), (*v).into());
    }
    (queue, arn, webhook_for(sdk, &env).await)
}

fn secret_document(app_secret: &str) -> String {
    json!({"app_secret": app_secret, "verify_token": "sm-token", "page_access_tokens": {}})
        .to_string()
}

/// Rotates the secret: a new version with this app secret.
async fn rotate(sdk: &SdkConfig, arn: &str, app_secret: &str) {
    aws_sdk_secretsmanager::Client::new(sdk)
        .put_secret_value()
        .secret_id(arn)
        .secret_string(secret_document(app_secret))
        .send()
        .await
        .unwrap();
}

/// A delivery of one text whose mid is `mid`.
fn one_text(mid: &str) -> String {
    json!({"object": "page", "entry": [{"id": "100000000000001", "time": 1, "messaging": [
        {"sender": {"id": "2000000000000009"}, "recipient": {"id": "100000000000001"},
         "timestamp": 5, "message": {"mid": mid, "text": "hi"}}]}]})
    .to_string()
}

#[tokio::test]
async fn a_rotated_app_secret_is_read_again_on_a_mismatch_without_a_new_instance() {
    let sdk = emulator().await;
    let (queue, arn, hook) = webhook_with_secret(&sdk, "secret-v1", &[]).await;
    let status = |body: String, secret: &str| {
        let request = post(&body, Some(&sign_with(secret, &body)));
        let hook = &hook;
        async move { hook.handle(request).await.unwrap().status() }
    };

    assert_eq!(status(one_text("m_v1"), "secret-v1").await, StatusCode::OK);
    rotate(&sdk, &arn, "secret-v2").await;
    // The same warm instance: the first request signed with the new secret
    // mismatches, the webhook reads the secret again and verifies once more.
    assert_eq!(status(one_text("m_v2"), "secret-v2").await, StatusCode::OK);
    assert_eq!(status(one_text("m_v2b"), "secret-v2").await, StatusCode::OK);
    assert_eq!(
        status(one_text("m_wrong"), "not-the-secret").await,
        StatusCode::FORBIDDEN
    );
    // The old secret no longer signs anything.
    assert_eq!(
        status(one_text("m_old"), "secret-v1").await,
        StatusCode::FORBIDDEN
    );

    let mut mids: Vec<String> = drain(&sdk, &queue)
        .await
        .iter()
        .map(|q| {
            q.body["event"]["message"]["mid"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    mids.sort();
    assert_eq!(mids, ["m_v1", "m_v2", "m_v2b"]);
}

#[tokio::test]
async fn a_second_mismatch_within_ten_seconds_does_not_read_the_secret_again() {
    let sdk = emulator().await;
    let (_, arn, hook) = webhook_with_secret(&sdk, "secret-v1", &[]).await;
    let body = one_text("m_rate");
    let credentials = hook.receiver.credentials.clone();
    assert_eq!(credentials.rereads(), 0);

    let r = hook
        .handle(post(&body, Some(&sign_with("not-the-secret", &body))))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(credentials.rereads(), 1, "the first mismatch reads again");

    // Rotated since, but the last re-read was moments ago: a signature under the
    // new secret is refused until the interval (or the TTL) has passed.
    rotate(&sdk, &arn, "secret-v2").await;
    for secret in ["secret-v2", "not-the-secret"] {
        let r = hook
            .handle(post(&body, Some(&sign_with(secret, &body))))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{secret}");
    }
    assert_eq!(credentials.rereads(), 1);
}

#[tokio::test]
async fn past_the_credentials_ttl_the_secret_is_read_before_verifying() {
    let sdk = emulator().await;
    // TTL 0: read before every request.
    let (_, arn, hook) =
        webhook_with_secret(&sdk, "secret-v1", &[("CREDENTIALS_TTL_SECONDS", "0")]).await;
    let body = one_text("m_ttl");
    let signed = |secret: &str| post(&body, Some(&sign_with(secret, &body)));
    let r = hook.handle(signed("not-the-secret")).await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let after_mismatch = hook.receiver.credentials.rereads();

    // A re-read on mismatch is not due for 10 s: only the TTL reads the new secret.
    rotate(&sdk, &arn, "secret-v2").await;
    let r = hook.handle(signed("secret-v2")).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(hook.receiver.credentials.rereads(), after_mismatch + 1);
}

#[tokio::test]
async fn a_delivery_over_max_events_per_delivery_is_quarantined_and_nothing_queued() {
    let sdk = emulator().await;
    let queue = fifo_queue(&sdk).await;
    let bucket = bucket(&sdk).await;
    let mut env = webhook_env(&queue, &bucket);
    env.insert("MAX_EVENTS_PER_DELIVERY".into(), "5".into());
    let hook = webhook_for(&sdk, &env).await;
    let delivery = |n: usize, prefix: &str| {
        let events: Vec<serde_json::Value> = (0..n)
            .map(|i| {
                json!({"sender": {"id": format!("20000000000001{i:02}")}, "recipient": {"id": "100000000000001"},
                       "timestamp": 5, "message": {"mid": format!("m_{prefix}_{i}"), "text": "hi"}})
            })
            .collect();
        // Four in messaging, the rest in standby: both count.
        let (messaging, standby) = events.split_at(4.min(n));
        json!({"object": "page", "entry": [
            {"id": "100000000000001", "time": 1, "messaging": messaging},
            {"id": "100000000000001", "time": 1, "standby": standby}]})
        .to_string()
    };

    let over = delivery(6, "over");
    let r = hook.handle(post(&over, Some(&sign(&over)))).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(body_text(&r), "EVENT_RECEIVED");
    assert!(drain(&sdk, &queue).await.is_empty());
    let kept = quarantined(&sdk, &bucket).await;
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].1, over.as_bytes());
    assert_eq!(
        kept[0].2,
        "the delivery has 6 events, over the limit of 5 per delivery (MAX_EVENTS_PER_DELIVERY)"
    );

    let at = delivery(5, "at");
    let r = hook.handle(post(&at, Some(&sign(&at)))).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(drain(&sdk, &queue).await.len(), 5);
    assert_eq!(quarantined(&sdk, &bucket).await.len(), 1);
}

/// The emulator's SDK settings with every client sent to `endpoint` instead.
/// `SdkConfig::to_builder().endpoint_url()` does not do: a client prefers
/// `AWS_ENDPOINT_URL` from the environment (the emulator's, here) to an endpoint
/// set on a loaded configuration; one given to the loader wins.
async fn at_endpoint(endpoint: &str) -> SdkConfig {
    emulator().await;
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .load()
        .await
}

/// An endpoint that accepts connections and never answers: a stalled SQS or
/// DynamoDB. Its address as an endpoint URL, and how many connections it took.
async fn stalled_endpoint() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            held.push(socket);
        }
    });
    (format!("http://{address}"), accepted)
}

/// Meta gives up on a request after 5 s; the webhook must have answered by then.
const META_WAITS: std::time::Duration = std::time::Duration::from_millis(4_500);

#[tokio::test]
async fn a_queue_that_never_answers_gets_503_before_meta_gives_up() {
    let (stalled, connections) = stalled_endpoint().await;
    let sdk = at_endpoint(&stalled).await;
    let queue = format!("{stalled}/123456789012/events.fifo");
    let hook = webhook_for(&sdk, &webhook_env(&queue, "unused-bucket")).await;

    let started = std::time::Instant::now();
    let response = hook
        .handle(request(&event_json("webhook-post.json")))
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(took < META_WAITS, "answered after {took:?}");
    assert!(connections.load(std::sync::atomic::Ordering::SeqCst) > 0);
}

#[tokio::test]
async fn a_table_that_never_answers_gets_the_deletion_callback_503_before_meta_gives_up() {
    use hub_signature::signed_request::sign;
    let (stalled, connections) = stalled_endpoint().await;
    let sdk = at_endpoint(&stalled).await;
    let mut env = webhook_env(&format!("{stalled}/123456789012/events.fifo"), "unused");
    env.insert("TABLE_NAME".into(), "stalled-table".into());
    let hook = webhook_for(&sdk, &env).await;
    let signed = sign(
        r#"{"algorithm":"HMAC-SHA256","user_id":"1234567890"}"#,
        LOCAL_APP_SECRET.as_bytes(),
    );

    let started = std::time::Instant::now();
    let response = hook
        .handle(callback_request(
            "POST",
            "/data-deletion",
            "",
            &format!("signed_request={signed}"),
        ))
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(took < META_WAITS, "answered after {took:?}");
    assert!(connections.load(std::sync::atomic::Ordering::SeqCst) > 0);
}
