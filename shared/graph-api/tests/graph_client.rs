//! The client against a fake Graph API (wiremock): the exact requests it makes and
//! how it reads Meta's answers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use graph_api::{ErrorClass, GraphClient, GraphConfig, GraphError};
use hmac::{Hmac, Mac};
use messenger_types::send::{MessageTag, OutgoingMessage, SendRequest};
use messenger_types::{AppId, PageId, Psid};
use secrecy::SecretString;
use serde_json::json;
use sha2::Sha256;
use wiremock::matchers::{body_json, header, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, ResponseTemplate};

const PAGE: &str = "282749490129311";
const PSID: &str = "1254459154682919";
const PAGE_TOKEN: &str = "EAAGm0PX4ZCpsBAPageTokenThatMustNeverLeak";
const APP_SECRET: &str = "app-secret-that-must-never-leak";

fn token() -> SecretString {
    SecretString::from(PAGE_TOKEN)
}

fn page() -> PageId {
    PageId::new(PAGE)
}

/// hex(HMAC-SHA256(app secret, page token)), computed here rather than by the client.
fn expected_proof() -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(APP_SECRET.as_bytes()).unwrap();
    mac.update(PAGE_TOKEN.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

fn client(server: &MockServer) -> GraphClient {
    GraphClient::new(GraphConfig {
        base_url: server.uri(),
        app_secret: Some(SecretString::from(APP_SECRET)),
        ..GraphConfig::default()
    })
    .unwrap()
}

fn reply(text: &str) -> SendRequest {
    SendRequest::response(Psid::new(PSID), OutgoingMessage::text(text))
}

fn graph_error(status: u16, code: i64, subcode: Option<i64>, message: &str) -> ResponseTemplate {
    let mut error = json!({
        "message": message,
        "type": "OAuthException",
        "code": code,
        "fbtrace_id": "AbCdEfGhIjK",
    });
    if let Some(subcode) = subcode {
        error["error_subcode"] = json!(subcode);
    }
    ResponseTemplate::new(status).set_body_json(json!({ "error": error }))
}

/// Sends `request` to a server that answers every call with `answer`.
async fn send_against(answer: ResponseTemplate, request: &SendRequest) -> GraphError {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(answer)
        .expect(1)
        .mount(&server)
        .await;
    client(&server)
        .send(&page(), &token(), request)
        .await
        .unwrap_err()
}

fn assert_no_secrets(text: &str) {
    assert!(!text.contains(PAGE_TOKEN), "page token in {text}");
    assert!(!text.contains(APP_SECRET), "app secret in {text}");
    assert!(
        !text.contains(&expected_proof()),
        "appsecret_proof in {text}"
    );
}

#[tokio::test]
async fn send_posts_the_request_meta_expects_and_returns_the_message_id() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("/v27.0/{PAGE}/messages")))
        .and(header("authorization", format!("Bearer {PAGE_TOKEN}").as_str()))
        .and(header("content-type", "application/json"))
        .and(query_param("appsecret_proof", expected_proof()))
        .and(query_param_is_missing("access_token"))
        .and(body_json(json!({
            "recipient": {"id": PSID},
            "messaging_type": "RESPONSE",
            "message": {"text": "Hello there"},
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "recipient_id": PSID,
            "message_id": "m_AG5Hz2Uq7tuwNEhXfYYKj8mJEM_QPpz5jdCK48PnKAjSdjfipqxqMvK8ma6AC8fplwlqLP_5cgXIbu7I3rBN0P",
        })))
        .expect(1)
        .mount(&server)
        .await;

    let answer = client(&server)
        .send(&page(), &token(), &reply("Hello there"))
        .await
        .unwrap();
    assert_eq!(answer.recipient_id.as_deref(), Some(PSID));
    assert!(answer.message_id.unwrap().starts_with("m_AG5Hz2"));

    // The token travels only in the header.
    let received = server.received_requests().await.unwrap();
    assert_eq!(received.len(), 1);
    assert!(!received[0].url.as_str().contains(PAGE_TOKEN));
}

#[tokio::test]
async fn no_appsecret_proof_is_sent_without_an_app_secret() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("/v27.0/{PAGE}/messages")))
        .and(header(
            "authorization",
            format!("Bearer {PAGE_TOKEN}").as_str(),
        ))
        .and(query_param_is_missing("appsecret_proof"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"message_id": "m_1"})))
        .expect(1)
        .mount(&server)
        .await;
    let client = GraphClient::new(GraphConfig {
        base_url: server.uri(),
        ..GraphConfig::default()
    })
    .unwrap();

    let answer = client.send(&page(), &token(), &reply("hi")).await.unwrap();
    assert_eq!(answer.message_id.as_deref(), Some("m_1"));
    let received = server.received_requests().await.unwrap();
    assert_eq!(received[0].url.query(), None);
}

#[tokio::test]
async fn otn_and_tagged_sends_carry_their_recipient_and_tag() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("/v27.0/{PAGE}/messages")))
        .and(body_json(json!({
            "recipient": {"one_time_notif_token": "otn-token-1"},
            "message": {"text": "Back in stock"},
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"message_id": "m_otn"})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/v27.0/{PAGE}/messages")))
        .and(body_json(json!({
            "recipient": {"id": PSID},
            "messaging_type": "MESSAGE_TAG",
            "tag": "HUMAN_AGENT",
            "message": {"text": "An agent here"},
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"message_id": "m_tag"})))
        .expect(1)
        .mount(&server)
        .await;
    let client = client(&server);

    let otn =
        SendRequest::one_time_notification("otn-token-1", OutgoingMessage::text("Back in stock"));
    let sent = client.send(&page(), &token(), &otn).await.unwrap();
    assert_eq!(sent.message_id.as_deref(), Some("m_otn"));
    assert_eq!(sent.recipient_id, None);

    let tagged = SendRequest::tagged(
        Psid::new(PSID),
        MessageTag::HumanAgent,
        OutgoingMessage::text("An agent here"),
    );
    let sent = client.send(&page(), &token(), &tagged).await.unwrap();
    assert_eq!(sent.message_id.as_deref(), Some("m_tag"));
}

#[tokio::test]
async fn a_base_url_with_a_path_prefix_keeps_it() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("/graph/v27.0/{PAGE}/messages")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"message_id": "m_1"})))
        .expect(1)
        .mount(&server)
        .await;
    let client = GraphClient::new(GraphConfig {
        base_url: format!("{}/graph/", server.uri()),
        ..GraphConfig::default()
    })
    .unwrap();
    client.send(&page(), &token(), &reply("hi")).await.unwrap();
}

#[tokio::test]
async fn outside_the_window_is_permanent_and_keeps_metas_details() {
    let error = send_against(
        graph_error(
            400,
            10,
            Some(2018278),
            "(#10) This message is sent outside of allowed window.",
        ),
        &reply("too late"),
    )
    .await;
    assert_eq!(
        error,
        GraphError {
            class: ErrorClass::OutsideWindow,
            http_status: Some(400),
            code: Some(10),
            subcode: Some(2018278),
            message: "(#10) This message is sent outside of allowed window.".to_owned(),
            fbtrace_id: Some("AbCdEfGhIjK".to_owned()),
            outcome_unknown: false,
        }
    );
    assert!(!error.is_retryable());
    assert!(error.to_string().contains("AbCdEfGhIjK"));
}

#[tokio::test]
async fn a_person_who_cannot_receive_messages_is_unreachable() {
    for (code, subcode, message) in [
        (
            10,
            Some(2018108),
            "(#10) This person isn't receiving messages from you right now.",
        ),
        (551, None, "This person isn't available right now."),
        (551, Some(1545041), "This person isn't available right now."),
        (
            200,
            Some(1545041),
            "(#200) Message Not Sent: This person isn't available right now.",
        ),
    ] {
        let error = send_against(graph_error(400, code, subcode, message), &reply("hi")).await;
        assert_eq!(error.class, ErrorClass::Unreachable, "{code}/{subcode:?}");
        assert!(!error.is_retryable());
    }
}

#[tokio::test]
async fn an_unknown_psid_is_no_matching_user() {
    let error = send_against(
        graph_error(400, 100, Some(2018001), "(#100) No matching user found"),
        &reply("hi"),
    )
    .await;
    assert_eq!(error.class, ErrorClass::NoMatchingUser);
    assert_eq!(error.fbtrace_id.as_deref(), Some("AbCdEfGhIjK"));
}

#[tokio::test]
async fn error_100_on_a_retired_tag_is_retired_tag() {
    let retired = SendRequest::tagged(
        Psid::new(PSID),
        MessageTag::PostPurchaseUpdate,
        OutgoingMessage::text("Your order shipped"),
    );
    let error = send_against(
        graph_error(400, 100, None, "(#100) Tag is no longer supported"),
        &retired,
    )
    .await;
    assert_eq!(error.class, ErrorClass::RetiredTag);
    assert!(!error.is_retryable());
}

#[tokio::test]
async fn other_error_100s_are_invalid_requests() {
    let error = send_against(
        graph_error(400, 100, None, "(#100) Param message must be non-empty"),
        &reply(""),
    )
    .await;
    assert_eq!(error.class, ErrorClass::InvalidRequest);
    assert!(!error.is_retryable());
}

#[tokio::test]
async fn an_expired_page_token_is_token_invalid() {
    let error = send_against(
        graph_error(
            401,
            190,
            Some(463),
            "Error validating access token: Session has expired on Tuesday, 01-Jul-25 10:00:00 PDT.",
        ),
        &reply("hi"),
    )
    .await;
    assert_eq!(error.class, ErrorClass::TokenInvalid);
    assert_eq!(error.subcode, Some(463));
    assert!(!error.is_retryable());
}

#[tokio::test]
async fn a_missing_permission_is_permission_missing() {
    let error = send_against(
        graph_error(
            403,
            200,
            Some(2018028),
            "(#200) Cannot message users who are not admins, developers or testers of the app until pages_messaging permission is reviewed and the app is live.",
        ),
        &reply("hi"),
    )
    .await;
    assert_eq!(error.class, ErrorClass::PermissionMissing);
}

#[tokio::test]
async fn a_thread_owned_by_another_app_is_not_retried() {
    let error = send_against(
        graph_error(
            400,
            10,
            Some(2018300),
            "(#10) Message failed to send because another app is controlling this thread now.",
        ),
        &reply("hi"),
    )
    .await;
    assert_eq!(error.class, ErrorClass::ThreadOwnedByOther);
    assert!(!error.is_retryable());
}

#[tokio::test]
async fn rate_limits_are_retryable() {
    for (code, subcode, message) in [
        (4, None, "(#4) Application request limit reached"),
        (
            613,
            Some(2534040),
            "(#613) Calls to this api have exceeded the rate limit.",
        ),
        (32, None, "(#32) Page request limit reached"),
        (
            80006,
            None,
            "(#80006) There have been too many messages sent to this user.",
        ),
    ] {
        let error = send_against(graph_error(400, code, subcode, message), &reply("hi")).await;
        assert_eq!(error.class, ErrorClass::RateLimited, "{code}");
        assert!(error.is_retryable());
    }
}

#[tokio::test]
async fn metas_transient_codes_are_retryable() {
    for (status, code, message) in [
        (500, 1, "An unknown error occurred"),
        (
            503,
            2,
            "An unexpected error has occurred. Please retry your request later.",
        ),
        (
            500,
            1200,
            "Temporary send message failure. Please try again later",
        ),
    ] {
        let error = send_against(graph_error(status, code, None, message), &reply("hi")).await;
        assert_eq!(error.class, ErrorClass::Transient, "{code}");
        assert!(error.is_retryable());
    }
}

#[tokio::test]
async fn an_unknown_4xx_code_is_permanent() {
    let error = send_against(
        graph_error(
            400,
            368,
            Some(1390008),
            "(#368) The action attempted has been deemed abusive",
        ),
        &reply("hi"),
    )
    .await;
    assert_eq!(error.class, ErrorClass::Permanent);
    assert!(!error.is_retryable());
}

#[tokio::test]
async fn http_500_with_an_html_body_is_transient() {
    let html = "<!DOCTYPE html><html><body><h1>Sorry, something went wrong.</h1></body></html>";
    let error = send_against(
        ResponseTemplate::new(500).set_body_raw(html, "text/html"),
        &reply("hi"),
    )
    .await;
    assert_eq!(error.class, ErrorClass::Transient);
    assert_eq!(error.http_status, Some(500));
    assert_eq!(error.code, None);
    assert!(!error.message.contains("<html>"), "{error}");
    // An answer that says the call failed: nothing to fear from repeating it.
    assert!(!error.outcome_unknown);
}

#[tokio::test]
async fn a_gateway_timeout_is_transient_with_its_outcome_unknown() {
    let error = send_against(
        ResponseTemplate::new(504).set_body_raw("<html>Gateway Timeout</html>", "text/html"),
        &reply("hi"),
    )
    .await;
    assert_eq!(error.class, ErrorClass::Transient);
    assert_eq!(error.http_status, Some(504));
    // The gateway gave up waiting; Graph may have sent the message.
    assert!(error.outcome_unknown);
}

#[tokio::test]
async fn a_4xx_without_a_graph_error_is_permanent_and_429_is_rate_limited() {
    let error = send_against(
        ResponseTemplate::new(404).set_body_string("Not Found"),
        &reply("hi"),
    )
    .await;
    assert_eq!(error.class, ErrorClass::Permanent);
    let error = send_against(ResponseTemplate::new(429), &reply("hi")).await;
    assert_eq!(error.class, ErrorClass::RateLimited);
}

#[tokio::test]
async fn a_slow_answer_times_out_as_transient() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"message_id": "m_late"}))
                .set_delay(Duration::from_secs(5)),
        )
        .mount(&server)
        .await;
    let client = GraphClient::new(GraphConfig {
        base_url: server.uri(),
        app_secret: Some(SecretString::from(APP_SECRET)),
        timeout: Duration::from_millis(200),
        ..GraphConfig::default()
    })
    .unwrap();

    let error = client
        .send(&page(), &token(), &reply("hi"))
        .await
        .unwrap_err();
    assert_eq!(error.class, ErrorClass::Transient);
    assert_eq!(error.http_status, None);
    assert!(error.message.contains("timed out"), "{error}");
    // The request went out: Meta may have delivered it.
    assert!(error.outcome_unknown);
    assert_no_secrets(&error.to_string());
    assert_no_secrets(&format!("{error:?}"));
}

#[tokio::test]
async fn a_refused_connection_is_transient_and_names_no_secret() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let client = GraphClient::new(GraphConfig {
        base_url: format!("http://127.0.0.1:{port}"),
        app_secret: Some(SecretString::from(APP_SECRET)),
        ..GraphConfig::default()
    })
    .unwrap();

    let error = client
        .send(&page(), &token(), &reply("hi"))
        .await
        .unwrap_err();
    assert_eq!(error.class, ErrorClass::Transient);
    assert!(error.is_retryable());
    assert!(error.message.contains("could not connect"), "{error}");
    // Nothing left this machine: the send certainly did nothing.
    assert!(!error.outcome_unknown);
    assert!(!error.to_string().contains("appsecret_proof"), "{error}");
    assert_no_secrets(&error.to_string());
    assert_no_secrets(&format!("{error:?}"));
}

#[tokio::test]
async fn a_token_echoed_by_meta_is_redacted() {
    let message = format!("Invalid OAuth access token - Cannot parse access token {PAGE_TOKEN}");
    let error = send_against(graph_error(400, 190, None, &message), &reply("hi")).await;
    assert_eq!(error.class, ErrorClass::TokenInvalid);
    assert!(error.message.contains("<redacted>"), "{error}");
    assert_no_secrets(&error.to_string());
    assert_no_secrets(&format!("{error:?}"));
}

#[tokio::test]
async fn the_client_never_shows_the_app_secret() {
    let server = MockServer::start().await;
    let client = client(&server);
    let debug = format!("{client:?}");
    assert_no_secrets(&debug);
    assert!(debug.contains("<redacted>"), "{debug}");
    assert!(debug.contains("v27.0"), "{debug}");
}

#[tokio::test]
async fn an_unreadable_success_answer_is_still_a_sent_message() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_string("OK"))
        .expect(1)
        .mount(&server)
        .await;
    let answer = client(&server)
        .send(&page(), &token(), &reply("hi"))
        .await
        .unwrap();
    assert_eq!(answer.message_id, None);
}

#[tokio::test]
async fn pass_thread_control_posts_recipient_target_and_metadata() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("/v27.0/{PAGE}/pass_thread_control")))
        .and(header(
            "authorization",
            format!("Bearer {PAGE_TOKEN}").as_str(),
        ))
        .and(query_param("appsecret_proof", expected_proof()))
        .and(body_json(json!({
            "recipient": {"id": PSID},
            "target_app_id": "263902037430900",
            "metadata": "user asked for a human",
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"success": true})))
        .expect(1)
        .mount(&server)
        .await;
    client(&server)
        .pass_thread_control(
            &page(),
            &token(),
            &Psid::new(PSID),
            &AppId::new(graph_api::PAGE_INBOX_APP_ID),
            Some("user asked for a human"),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn take_thread_control_omits_absent_metadata() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("/v27.0/{PAGE}/take_thread_control")))
        .and(header(
            "authorization",
            format!("Bearer {PAGE_TOKEN}").as_str(),
        ))
        .and(query_param("appsecret_proof", expected_proof()))
        .and(body_json(json!({"recipient": {"id": PSID}})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"success": true})))
        .expect(1)
        .mount(&server)
        .await;
    client(&server)
        .take_thread_control(&page(), &token(), &Psid::new(PSID), None)
        .await
        .unwrap();
}

#[tokio::test]
async fn release_thread_control_names_the_recipient_only() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("/v27.0/{PAGE}/release_thread_control")))
        .and(header(
            "authorization",
            format!("Bearer {PAGE_TOKEN}").as_str(),
        ))
        .and(query_param("appsecret_proof", expected_proof()))
        .and(body_json(json!({"recipient": {"id": PSID}})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"success": true})))
        .expect(1)
        .mount(&server)
        .await;
    client(&server)
        .release_thread_control(&page(), &token(), &Psid::new(PSID))
        .await
        .unwrap();
}

#[tokio::test]
async fn extend_and_request_thread_control_post_what_meta_documents() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("/v27.0/{PAGE}/extend_thread_control")))
        .and(query_param("appsecret_proof", expected_proof()))
        .and(body_json(
            json!({"recipient": {"id": PSID}, "duration": 3600}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"success": true})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/v27.0/{PAGE}/request_thread_control")))
        .and(query_param("appsecret_proof", expected_proof()))
        .and(body_json(
            json!({"recipient": {"id": PSID}, "metadata": "the bot can answer"}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"success": true})))
        .expect(1)
        .mount(&server)
        .await;
    let graph = client(&server);
    graph
        .extend_thread_control(&page(), &token(), &Psid::new(PSID), 3600)
        .await
        .unwrap();
    graph
        .request_thread_control(
            &page(),
            &token(),
            &Psid::new(PSID),
            Some("the bot can answer"),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn a_handover_answered_with_success_false_fails() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"success": false})))
        .mount(&server)
        .await;
    let error = client(&server)
        .take_thread_control(&page(), &token(), &Psid::new(PSID), None)
        .await
        .unwrap_err();
    assert_eq!(error.class, ErrorClass::Permanent);
}

#[tokio::test]
async fn thread_owner_reads_the_owning_app() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!("/v27.0/{PAGE}/thread_owner")))
        .and(header(
            "authorization",
            format!("Bearer {PAGE_TOKEN}").as_str(),
        ))
        .and(query_param("recipient", PSID))
        .and(query_param("appsecret_proof", expected_proof()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [{"thread_owner": {"app_id": "263902037430900"}}]
        })))
        .expect(1)
        .mount(&server)
        .await;
    let owner = client(&server)
        .thread_owner(&page(), &token(), &Psid::new(PSID))
        .await
        .unwrap();
    assert_eq!(owner, Some(AppId::new("263902037430900")));
}

#[tokio::test]
async fn thread_owner_accepts_numeric_ids_and_no_owner() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(query_param("recipient", "1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [{"thread_owner": {"app_id": 1517776481860111_u64}}]
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(query_param("recipient", "2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": []})))
        .mount(&server)
        .await;
    let client = client(&server);
    assert_eq!(
        client
            .thread_owner(&page(), &token(), &Psid::new("1"))
            .await
            .unwrap(),
        Some(AppId::new("1517776481860111"))
    );
    assert_eq!(
        client
            .thread_owner(&page(), &token(), &Psid::new("2"))
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn thread_owner_errors_are_classified_like_sends() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(graph_error(
            400,
            190,
            Some(460),
            "Error validating access token: The session has been invalidated because the user changed their password.",
        ))
        .mount(&server)
        .await;
    let error = client(&server)
        .thread_owner(&page(), &token(), &Psid::new(PSID))
        .await
        .unwrap_err();
    assert_eq!(error.class, ErrorClass::TokenInvalid);
}

#[tokio::test]
async fn subscribe_app_posts_the_fields_comma_joined() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("/v27.0/{PAGE}/subscribed_apps")))
        .and(header(
            "authorization",
            format!("Bearer {PAGE_TOKEN}").as_str(),
        ))
        .and(query_param(
            "subscribed_fields",
            "messages,messaging_postbacks,messaging_optins",
        ))
        .and(query_param("appsecret_proof", expected_proof()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"success": true})))
        .expect(1)
        .mount(&server)
        .await;
    client(&server)
        .subscribe_app(
            &page(),
            &token(),
            &["messages", "messaging_postbacks", "messaging_optins"],
        )
        .await
        .unwrap();
}
