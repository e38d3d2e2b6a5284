//! What `messenger page connect` asks of the Graph API, against a fake (wiremock):
//! the exact requests, the answers read, and no credential in any error.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use graph_api::{GraphClient, GraphConfig};
use messenger_types::PageId;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use wiremock::matchers::{method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, ResponseTemplate};

const APP_ID: &str = "1234567890";
const APP_SECRET: &str = "app-secret-that-must-never-leak";
const USER_TOKEN: &str = "EAAUserTokenThatMustNeverLeak";

fn client(server: &MockServer) -> GraphClient {
    GraphClient::new(GraphConfig {
        base_url: server.uri(),
        app_secret: Some(SecretString::from(APP_SECRET)),
        ..GraphConfig::default()
    })
    .unwrap()
}

fn secret(s: &str) -> SecretString {
    SecretString::from(s.to_owned())
}

#[tokio::test]
async fn a_user_token_is_exchanged_for_a_long_lived_one() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v27.0/oauth/access_token"))
        .and(query_param("grant_type", "fb_exchange_token"))
        .and(query_param("client_id", APP_ID))
        .and(query_param("client_secret", APP_SECRET))
        .and(query_param("fb_exchange_token", USER_TOKEN))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"access_token": "long-lived", "token_type": "bearer", "expires_in": 5_183_944}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    let long = client(&server)
        .exchange_user_token(APP_ID, &secret(APP_SECRET), &secret(USER_TOKEN))
        .await
        .unwrap();
    assert_eq!(long.expose_secret(), "long-lived");
}

#[tokio::test]
async fn a_refused_exchange_names_no_credential() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v27.0/oauth/access_token"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": {
            "message": format!("Error validating access token {USER_TOKEN}"),
            "type": "OAuthException", "code": 190
        }})))
        .mount(&server)
        .await;
    let e = client(&server)
        .exchange_user_token(APP_ID, &secret(APP_SECRET), &secret(USER_TOKEN))
        .await
        .unwrap_err();
    let text = format!("{e} {e:?}");
    assert!(!text.contains(USER_TOKEN), "{text}");
    assert!(!text.contains(APP_SECRET), "{text}");
    assert_eq!(e.code, Some(190));
}

#[tokio::test]
async fn every_page_the_user_manages_is_listed_across_pages_of_the_answer() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v27.0/me/accounts"))
        .and(query_param_is_missing("after"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [{"id": "101", "name": "One", "access_token": "t1", "tasks": ["MESSAGING"]}],
            "paging": {"cursors": {"after": "c1"}, "next": "https://graph.facebook.com/next"}
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v27.0/me/accounts"))
        .and(query_param("after", "c1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [{"id": "102", "name": "Two", "access_token": "t2"}],
            "paging": {"cursors": {"after": "c2"}}
        })))
        .mount(&server)
        .await;
    let pages = client(&server)
        .page_accounts(&secret(USER_TOKEN))
        .await
        .unwrap();
    let ids: Vec<&str> = pages.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["101", "102"]);
    assert_eq!(pages[1].access_token.expose_secret(), "t2");
    assert!(!format!("{pages:?}").contains("t1"));
}

#[tokio::test]
async fn debug_token_is_asked_with_the_apps_own_token() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v27.0/debug_token"))
        .and(query_param("input_token", "page-token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": {"is_valid": false, "expires_at": 0, "scopes": ["pages_messaging"]}
        })))
        .expect(1)
        .mount(&server)
        .await;
    let info = client(&server)
        .debug_token(APP_ID, &secret(APP_SECRET), &secret("page-token"))
        .await
        .unwrap();
    assert!(!info.is_valid);
    assert_eq!(info.scopes, ["pages_messaging"]);
    let requests = server.received_requests().await.unwrap();
    let auth = requests[0].headers.get("authorization").unwrap();
    assert_eq!(
        auth.to_str().unwrap(),
        format!("Bearer {APP_ID}|{APP_SECRET}")
    );
}

#[tokio::test]
async fn the_subscribed_fields_are_this_apps() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v27.0/555/subscribed_apps"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": [
            {"id": "other", "subscribed_fields": ["feed"]},
            {"id": APP_ID, "subscribed_fields": ["messages", "messaging_postbacks"]}
        ]})))
        .mount(&server)
        .await;
    let fields = client(&server)
        .subscribed_fields(&PageId::new("555"), &secret("page-token"), Some(APP_ID))
        .await
        .unwrap();
    assert_eq!(fields, ["messages", "messaging_postbacks"]);
}

#[tokio::test]
async fn unsubscribing_deletes_the_subscription() {
    let server = MockServer::start().await;
    Mock::given(method("DELETE"))
        .and(path("/v27.0/555/subscribed_apps"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"success": true})))
        .expect(1)
        .mount(&server)
        .await;
    client(&server)
        .unsubscribe_app(&PageId::new("555"), &secret("page-token"))
        .await
        .unwrap();
}
