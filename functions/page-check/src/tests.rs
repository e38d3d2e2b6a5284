use std::collections::BTreeMap;
use std::sync::Arc;

use conversation::testing::MemoryStore;
use processor::credentials::TestKey;
use processor::testing::MemoryBus;
use serde_json::json;
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use super::*;

const PAGE: &str = "1001";
const OTHER: &str = "1002";
const NOW: i64 = 1_780_000_000_000;

fn now() -> Timestamp {
    Timestamp::from_millis(NOW)
}

struct Rig {
    graph: MockServer,
    bus: Arc<MemoryBus>,
    check: PageCheck<MemoryStore>,
}

async fn rig(app_id: Option<&str>, seed: &[(&str, &str)]) -> Rig {
    let graph = MockServer::start().await;
    let bus = Arc::new(MemoryBus::default());
    let secrets = Secrets {
        app_secret: Some(SecretString::from("test-app-secret")),
        verify_token: None,
        page_access_tokens: seed
            .iter()
            .map(|(p, t)| (PageId::new(*p), SecretString::from(*t)))
            .collect::<BTreeMap<_, _>>(),
    };
    let check = PageCheck {
        store: MemoryStore::new(),
        key: Box::new(TestKey),
        bus: Box::new(bus.clone()),
        secrets: SecretSource::Environment(secrets),
        graph: GraphConfig {
            base_url: graph.uri(),
            version: "v23.0".to_owned(),
            app_secret: None,
            timeout: Duration::from_secs(2),
        },
        app_id: app_id.map(str::to_owned),
        config: CheckConfig::default(),
        clock: now,
    };
    Rig { graph, bus, check }
}

impl Rig {
    async fn store_token(&self, page: &str, token: &str, at: i64) {
        let page = PageId::new(page);
        let sealed = TestKey
            .seal(&page, &SecretString::from(token))
            .await
            .unwrap();
        self.check
            .store
            .store_page_token(&page, sealed, Timestamp::from_millis(at))
            .await
            .unwrap();
    }

    async fn record(&self, page: &str) -> messenger_store::PageRecord {
        self.check
            .store
            .page_record(&PageId::new(page))
            .await
            .unwrap()
            .unwrap()
    }

    /// Graph says the token is valid (asked with the token itself).
    async fn valid(&self, token: &str) {
        Mock::given(method("GET"))
            .and(path("/v23.0/debug_token"))
            .and(query_param("input_token", token))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": {
                "is_valid": true, "app_id": "555", "expires_at": 0, "scopes": ["pages_messaging"]
            }})))
            .mount(&self.graph)
            .await;
    }

    /// The Page's subscriptions: this app's (555) with `fields`, and another app's
    /// with every field.
    async fn subscribed(&self, page: &str, fields: &[&str]) {
        Mock::given(method("GET"))
            .and(path(format!("/v23.0/{page}/subscribed_apps")))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": [
                {"id": "999", "name": "another app", "subscribed_fields": WEBHOOK_FIELDS.split(',').collect::<Vec<_>>()},
                {"id": "555", "name": "this app", "subscribed_fields": fields},
            ]})))
            .mount(&self.graph)
            .await;
    }

    async fn subscribes(&self, page: &str) {
        Mock::given(method("POST"))
            .and(path(format!("/v23.0/{page}/subscribed_apps")))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"success": true})))
            .mount(&self.graph)
            .await;
    }

    async fn requests(&self) -> Vec<Request> {
        self.graph.received_requests().await.unwrap_or_default()
    }

    async fn posts(&self) -> Vec<Request> {
        self.requests()
            .await
            .into_iter()
            .filter(|r| r.method == wiremock::http::Method::POST)
            .collect()
    }
}

fn all_fields() -> Vec<&'static str> {
    WEBHOOK_FIELDS.split(',').collect()
}

fn dead_token() -> ResponseTemplate {
    ResponseTemplate::new(400).set_body_json(json!({"error": {
        "message": "Error validating access token: The session has been invalidated because the user changed their password.",
        "type": "OAuthException", "code": 190, "error_subcode": 460, "fbtrace_id": "AbC"
    }}))
}

#[tokio::test]
async fn a_healthy_page_is_left_as_it_is_and_noted_as_checked() {
    let rig = rig(None, &[]).await;
    rig.store_token(PAGE, "token-a", NOW - 60_000).await;
    rig.valid("token-a").await;
    rig.subscribed(PAGE, &all_fields()).await;

    let report = rig.check.run(None).await.unwrap();

    assert_eq!(
        report,
        CheckReport {
            pages: 1,
            checked: 1,
            healthy: 1,
            complete: true,
            ..CheckReport::default()
        }
    );
    assert!(rig.posts().await.is_empty(), "nothing to repair");
    let record = rig.record(PAGE).await;
    assert_eq!(record.status, PageStatus::Active);
    assert_eq!(record.checked_at, Some(now()));
    assert!(rig.bus.published().is_empty());
}

#[tokio::test]
async fn a_subscription_that_lost_a_field_is_subscribed_again_with_every_field_and_proof() {
    let rig = rig(None, &[]).await;
    rig.store_token(PAGE, "token-a", NOW - 60_000).await;
    rig.valid("token-a").await;
    // This app lost `messaging_postbacks`; another app's full subscription must
    // not be taken for ours.
    let lost: Vec<&str> = all_fields()
        .into_iter()
        .filter(|f| *f != "messaging_postbacks")
        .collect();
    rig.subscribed(PAGE, &lost).await;
    rig.subscribes(PAGE).await;

    let report = rig.check.run(None).await.unwrap();

    assert_eq!(
        (report.repaired, report.unhealthy, report.checked),
        (1, 0, 1)
    );
    let posts = rig.posts().await;
    assert_eq!(posts.len(), 1);
    let query: BTreeMap<String, String> = posts[0].url.query_pairs().into_owned().collect();
    assert_eq!(query["subscribed_fields"], WEBHOOK_FIELDS);
    assert!(
        query.contains_key("appsecret_proof"),
        "the subscription carries appsecret_proof"
    );
    assert_eq!(rig.record(PAGE).await.status, PageStatus::Active);
}

#[tokio::test]
async fn a_dead_token_makes_the_page_invalid_and_is_published_without_the_token() {
    let rig = rig(None, &[]).await;
    rig.store_token(PAGE, "token-dead", NOW - 60_000).await;
    Mock::given(method("GET"))
        .and(path("/v23.0/debug_token"))
        .respond_with(dead_token())
        .mount(&rig.graph)
        .await;

    let report = rig.check.run(None).await.unwrap();

    assert_eq!(
        (report.invalidated, report.unhealthy, report.checked),
        (1, 1, 1)
    );
    let record = rig.record(PAGE).await;
    assert_eq!(record.status, PageStatus::Invalid);
    assert_eq!(
        record.reason.as_deref(),
        Some("token_invalid (Graph 190/460)")
    );
    assert_eq!(record.since, now());
    // Nothing else was asked with a token Graph refused.
    assert_eq!(rig.requests().await.len(), 1);
    let published = rig.bus.details("Page Status Changed");
    assert_eq!(
        published,
        vec![
            json!({"page_id": PAGE, "status": "INVALID", "reason": "token_invalid (Graph 190/460)"})
        ]
    );
    assert!(!format!("{:?}", rig.bus.published()).contains("token-dead"));
}

#[tokio::test]
async fn with_the_app_id_debug_token_is_asked_with_the_app_token_and_not_valid_is_invalid() {
    let rig = rig(Some("555"), &[]).await;
    rig.store_token(PAGE, "token-a", NOW - 60_000).await;
    Mock::given(method("GET"))
        .and(path("/v23.0/debug_token"))
        .and(query_param("input_token", "token-a"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": {
            "is_valid": false, "app_id": "555", "expires_at": 0, "scopes": []
        }})))
        .mount(&rig.graph)
        .await;

    let report = rig.check.run(None).await.unwrap();

    assert_eq!(report.invalidated, 1);
    let asked = &rig.requests().await[0];
    let bearer = asked
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap();
    assert_eq!(
        bearer, "Bearer 555|test-app-secret",
        "the app's own token asks"
    );
    let record = rig.record(PAGE).await;
    assert_eq!(record.status, PageStatus::Invalid);
    assert_eq!(record.reason.as_deref(), Some("debug_token: not valid"));
}

#[tokio::test]
async fn invalid_pages_count_as_unhealthy_without_a_call_and_missing_pages_are_not_checked() {
    let rig = rig(None, &[]).await;
    rig.store_token(PAGE, "token-a", NOW - 60_000).await;
    rig.check
        .store
        .mark_page_invalid(
            &PageId::new(PAGE),
            Some(NOW - 60_000),
            "token_invalid (Graph 190)",
            now(),
        )
        .await
        .unwrap();
    rig.check
        .store
        .forget_page_token(&PageId::new(OTHER), "disconnected", now())
        .await
        .unwrap();

    let report = rig.check.run(None).await.unwrap();

    assert_eq!(
        report,
        CheckReport {
            pages: 1,
            unhealthy: 1,
            complete: true,
            ..CheckReport::default()
        }
    );
    assert!(rig.requests().await.is_empty());
}

#[tokio::test]
async fn a_graph_outage_leaves_the_status_alone_and_a_run_that_checked_nothing_fails() {
    let rig = rig(None, &[]).await;
    rig.store_token(PAGE, "token-a", NOW - 60_000).await;
    Mock::given(method("GET"))
        .and(path("/v23.0/debug_token"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&rig.graph)
        .await;

    let error = rig.check.run(None).await.unwrap_err();

    assert!(matches!(error, CheckError::NothingChecked(1)), "{error}");
    let record = rig.record(PAGE).await;
    assert_eq!(record.status, PageStatus::Active);
    assert_eq!(
        record.checked_at, None,
        "not checked: checked first next run"
    );
    assert!(rig.bus.published().is_empty());
}

#[tokio::test]
async fn one_page_failing_does_not_stop_the_others() {
    let rig = rig(None, &[]).await;
    rig.store_token(PAGE, "token-a", NOW - 60_000).await;
    rig.store_token(OTHER, "token-b", NOW - 60_000).await;
    Mock::given(method("GET"))
        .and(path("/v23.0/debug_token"))
        .and(query_param("input_token", "token-a"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&rig.graph)
        .await;
    rig.valid("token-b").await;
    rig.subscribed(OTHER, &all_fields()).await;

    let report = rig.check.run(None).await.unwrap();

    assert_eq!((report.checked, report.errors, report.healthy), (2, 1, 1));
}

#[tokio::test]
async fn a_seed_token_without_a_record_is_checked_too() {
    let rig = rig(None, &[(PAGE, "seed-token")]).await;
    Mock::given(method("GET"))
        .and(path("/v23.0/debug_token"))
        .and(query_param("input_token", "seed-token"))
        .respond_with(dead_token())
        .mount(&rig.graph)
        .await;

    let report = rig.check.run(None).await.unwrap();

    assert_eq!((report.pages, report.invalidated), (1, 1));
    assert_eq!(rig.record(PAGE).await.status, PageStatus::Invalid);
}

#[tokio::test]
async fn out_of_time_nothing_starts_and_the_least_recently_checked_go_first() {
    let mut rig = rig(None, &[]).await;
    rig.store_token(PAGE, "token-a", NOW - 60_000).await;
    rig.store_token(OTHER, "token-b", NOW - 60_000).await;
    // PAGE was checked an hour ago; OTHER never.
    rig.check
        .store
        .page_checked(&PageId::new(PAGE), Timestamp::from_millis(NOW - 3_600_000))
        .await
        .unwrap();
    rig.valid("token-a").await;
    rig.valid("token-b").await;
    rig.subscribed(PAGE, &all_fields()).await;
    rig.subscribed(OTHER, &all_fields()).await;

    rig.check.config.fallback_budget = Duration::from_secs(1);
    let report = rig.check.run(None).await.unwrap();
    assert_eq!((report.checked, report.complete), (0, false));
    assert!(rig.requests().await.is_empty());

    rig.check.config = CheckConfig {
        concurrency: 1,
        ..CheckConfig::default()
    };
    rig.check.run(None).await.unwrap();
    let inspected: Vec<String> = rig
        .requests()
        .await
        .iter()
        .filter(|r| r.url.path() == "/v23.0/debug_token")
        .filter_map(|r| {
            r.url
                .query_pairs()
                .find(|(k, _)| k == "input_token")
                .map(|(_, v)| v.into_owned())
        })
        .collect();
    assert_eq!(inspected, ["token-b", "token-a"]);
}

#[tokio::test]
async fn a_subscription_that_cannot_be_repaired_is_unhealthy() {
    let rig = rig(None, &[]).await;
    rig.store_token(PAGE, "token-a", NOW - 60_000).await;
    rig.valid("token-a").await;
    rig.subscribed(PAGE, &["messages"]).await;
    Mock::given(method("POST"))
        .and(path(format!("/v23.0/{PAGE}/subscribed_apps")))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": {
            "message": "(#100) Invalid parameter", "type": "OAuthException", "code": 100
        }})))
        .mount(&rig.graph)
        .await;

    let report = rig.check.run(None).await.unwrap();

    assert_eq!((report.unhealthy, report.repaired), (1, 0));
    assert_eq!(rig.record(PAGE).await.status, PageStatus::Active);
}

#[test]
fn the_configuration_is_read_and_checked() {
    let env = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<BTreeMap<String, String>>()
    };
    let ok = Config::from_env(&env(&[
        ("TABLE_NAME", "t"),
        ("TOKEN_KEY_ID", "k"),
        ("APP_ID", " 555 "),
    ]))
    .unwrap();
    assert_eq!(ok.app_id.as_deref(), Some("555"));
    assert_eq!(ok.event_bus_name, None);
    assert_eq!(
        ok.check.fallback_budget,
        Duration::from_secs(DEFAULT_BUDGET_SECONDS)
    );
    let missing_key = Config::from_env(&env(&[("TABLE_NAME", "t")])).unwrap_err();
    assert!(
        missing_key.to_string().contains("TOKEN_KEY_ID"),
        "{missing_key}"
    );
    let bad_app = Config::from_env(&env(&[
        ("TABLE_NAME", "t"),
        ("TOKEN_KEY_ID", "k"),
        ("APP_ID", "my-app"),
    ]))
    .unwrap_err();
    assert!(bad_app.to_string().contains("APP_ID"), "{bad_app}");
    let bad_budget = Config::from_env(&env(&[
        ("TABLE_NAME", "t"),
        ("TOKEN_KEY_ID", "k"),
        ("PAGE_CHECK_BUDGET_SECONDS", "0"),
    ]))
    .unwrap_err();
    assert!(
        bad_budget.to_string().contains("PAGE_CHECK_BUDGET_SECONDS"),
        "{bad_budget}"
    );
}
