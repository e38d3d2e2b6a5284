//! Client for the Graph API calls this project makes: the Send API and the Handover
//! Protocol (Conversation Routing), with Meta's errors classified by what the
//! caller should do about them ([`ErrorClass`]).
//!
//! Credentials never travel in a URL: the Page token goes in the `Authorization:
//! Bearer` header (sensitive, so never printed by reqwest), and the only
//! credential-derived query parameter, `appsecret_proof`, is kept out of every
//! error by stripping URLs from transport errors.
//!
//! ```no_run
//! # async fn demo() -> Result<(), graph_api::GraphError> {
//! use graph_api::{GraphClient, GraphConfig};
//! use messenger_types::send::{OutgoingMessage, SendRequest};
//! use messenger_types::{PageId, Psid};
//! use secrecy::SecretString;
//!
//! let client = GraphClient::new(GraphConfig::default())?;
//! let token = SecretString::from("page-access-token");
//! let request = SendRequest::response(Psid::new("1254459154682919"), OutgoingMessage::text("hi"));
//! let answer = client.send(&PageId::new("282749490129311"), &token, &request).await?;
//! # let _ = answer;
//! # Ok(())
//! # }
//! ```

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

use std::fmt;
use std::time::Duration;

mod connect;
pub mod profile;
pub use connect::{PageAccount, TokenInfo, WEBHOOK_FIELDS};
pub use profile::{InvalidProfile, MessengerProfile};

use hmac::{Hmac, Mac};
use messenger_types::send::{GraphErrorEnvelope, SendRequest, SendResponse};
use messenger_types::{AppId, PageId, Psid};
use reqwest::{Method, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Sha256;

pub use conversation::graph_error::{ErrorClass, GraphError};

pub const DEFAULT_BASE_URL: &str = "https://graph.facebook.com";
pub const DEFAULT_VERSION: &str = "v27.0";
/// The whole-request timeout when none is configured. The processor's Lambda
/// timeout must leave room for it.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Connecting to Graph takes milliseconds; a connect that hangs is a network
/// problem and is better failed fast and retried than waited out.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The Page Inbox, the app human agents answer from (Handover Protocol target).
pub use conversation::record::PAGE_INBOX_APP_ID;

/// Where and how to reach the Graph API.
#[derive(Debug, Clone)]
pub struct GraphConfig {
    /// `https://graph.facebook.com`, or a fake in tests. May carry a path prefix.
    pub base_url: String,
    /// `v27.0` (current in November 2026; v23.0 works until October 2027).
    pub version: String,
    /// When set, every call carries `appsecret_proof` (required when the app has
    /// "Require App Secret" switched on).
    pub app_secret: Option<SecretString>,
    /// The limit on a whole call, answer body included.
    pub timeout: Duration,
}

impl Default for GraphConfig {
    fn default() -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_owned(),
            version: DEFAULT_VERSION.to_owned(),
            app_secret: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// A Graph API client. Build it once per process (it holds the connection pool)
/// and share it; the Page token is passed per call, since one app serves many Pages.
#[derive(Clone)]
pub struct GraphClient {
    http: reqwest::Client,
    base: Url,
    version: String,
    /// HMAC keyed with the app secret once; each proof starts from a copy.
    proof_key: Option<Hmac<Sha256>>,
}

impl fmt::Debug for GraphClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GraphClient")
            .field("base_url", &self.base.as_str())
            .field("version", &self.version)
            .field(
                "app_secret",
                &if self.proof_key.is_some() {
                    "<redacted>"
                } else {
                    "none"
                },
            )
            .finish_non_exhaustive()
    }
}

impl GraphClient {
    pub fn new(config: GraphConfig) -> Result<Self, GraphError> {
        let invalid = |what: &str| {
            GraphError::new(
                ErrorClass::Permanent,
                format!("invalid Graph API configuration: {what}"),
            )
        };
        let base = Url::parse(&config.base_url)
            .map_err(|e| invalid(&format!("base URL {:?}: {e}", config.base_url)))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(invalid(&format!(
                "base URL {:?} is not an http(s) URL",
                config.base_url
            )));
        }
        // Credentials belong in headers; a base URL is printed by Debug.
        if !base.username().is_empty()
            || base.password().is_some()
            || base.query().is_some()
            || base.fragment().is_some()
        {
            return Err(invalid(
                "base URL must not carry credentials, a query or a fragment",
            ));
        }
        let version = config.version.trim().trim_matches('/').to_owned();
        if version.is_empty() || version.contains('/') {
            return Err(invalid(&format!("version {:?}", config.version)));
        }
        if config.timeout.is_zero() {
            return Err(invalid("timeout must be above zero"));
        }
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(CONNECT_TIMEOUT.min(config.timeout))
            // Graph does not redirect; following one would carry the token and
            // the proof to wherever it points.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| invalid(&format!("HTTP client: {}", e.without_url())))?;
        let proof_key = match &config.app_secret {
            Some(secret) => Some(
                <Hmac<Sha256> as Mac>::new_from_slice(secret.expose_secret().as_bytes())
                    .map_err(|_| invalid("app secret unusable as an HMAC key"))?,
            ),
            None => None,
        };
        Ok(Self {
            http,
            base,
            version,
            proof_key,
        })
    }

    /// `POST /{page-id}/messages`.
    ///
    /// Error 100 is classified [`ErrorClass::RetiredTag`] when `request` carries a
    /// retired tag. A 2xx answer whose body cannot be read still means Meta took
    /// the message: it is returned as a [`SendResponse`] without ids rather than
    /// as an error, so that no caller retries it into a duplicate.
    pub async fn send(
        &self,
        page: &PageId,
        token: &SecretString,
        request: &SendRequest,
    ) -> Result<SendResponse, GraphError> {
        let call = Call {
            method: Method::POST,
            page,
            edge: "messages",
            query: &[],
            body: Some(Body::Send(request)),
            retired_tag: request.uses_retired_tag(),
        };
        match self.call(call, token).await? {
            Some(body) => Ok(serde_json::from_slice(&body).unwrap_or_else(|_| {
                tracing::warn!(page_id = %page, "Send API accepted the message with an unreadable answer");
                SendResponse::default()
            })),
            None => Ok(SendResponse::default()),
        }
    }

    /// `POST /{page-id}/pass_thread_control`: hands the thread to another app (the
    /// Page Inbox for a human agent: [`PAGE_INBOX_APP_ID`]).
    pub async fn pass_thread_control(
        &self,
        page: &PageId,
        token: &SecretString,
        psid: &Psid,
        target_app_id: &AppId,
        metadata: Option<&str>,
    ) -> Result<(), GraphError> {
        let mut body = json!({ "recipient": { "id": psid }, "target_app_id": target_app_id });
        if let Some(metadata) = metadata {
            body["metadata"] = Value::from(metadata);
        }
        self.post_for_success(page, token, "pass_thread_control", &[], Some(&body))
            .await
    }

    /// `POST /{page-id}/take_thread_control`: the primary receiver takes the
    /// thread back.
    pub async fn take_thread_control(
        &self,
        page: &PageId,
        token: &SecretString,
        psid: &Psid,
        metadata: Option<&str>,
    ) -> Result<(), GraphError> {
        self.post_control(page, token, "take_thread_control", psid, metadata)
            .await
    }

    /// `POST /{page-id}/<edge>` with `{"recipient": {"id": psid}, "metadata"?}`,
    /// answered `{"success": true}`.
    async fn post_control(
        &self,
        page: &PageId,
        token: &SecretString,
        edge: &'static str,
        psid: &Psid,
        metadata: Option<&str>,
    ) -> Result<(), GraphError> {
        let mut body = json!({ "recipient": { "id": psid } });
        if let Some(metadata) = metadata {
            body["metadata"] = Value::from(metadata);
        }
        self.post_for_success(page, token, edge, &[], Some(&body))
            .await
    }

    /// `POST /{page-id}/release_thread_control`: this app gives the thread up; it
    /// goes idle (Conversation Routing; no webhook is sent).
    pub async fn release_thread_control(
        &self,
        page: &PageId,
        token: &SecretString,
        psid: &Psid,
    ) -> Result<(), GraphError> {
        let body = json!({ "recipient": { "id": psid } });
        self.post_for_success(page, token, "release_thread_control", &[], Some(&body))
            .await
    }

    /// `POST /{page-id}/messages` with a `sender_action` (`typing_on`,
    /// `typing_off`, `mark_seen`) instead of a message.
    pub async fn sender_action(
        &self,
        page: &PageId,
        token: &SecretString,
        psid: &Psid,
        action: &str,
    ) -> Result<(), GraphError> {
        let body = json!({ "recipient": { "id": psid }, "sender_action": action });
        let call = Call {
            method: Method::POST,
            page,
            edge: "messages",
            query: &[],
            body: Some(Body::Json(&body)),
            retired_tag: false,
        };
        self.call(call, token).await.map(|_| ())
    }

    /// `POST /{page-id}/extend_thread_control`: keeps the thread this app holds
    /// from going idle for `duration` more seconds (Meta allows up to 7 days).
    pub async fn extend_thread_control(
        &self,
        page: &PageId,
        token: &SecretString,
        psid: &Psid,
        duration_seconds: u32,
    ) -> Result<(), GraphError> {
        let body = json!({ "recipient": { "id": psid }, "duration": duration_seconds });
        self.post_for_success(page, token, "extend_thread_control", &[], Some(&body))
            .await
    }

    /// `POST /{page-id}/request_thread_control`: asks the app that holds the
    /// thread to pass it to this app (it receives a `request_thread_control`).
    pub async fn request_thread_control(
        &self,
        page: &PageId,
        token: &SecretString,
        psid: &Psid,
        metadata: Option<&str>,
    ) -> Result<(), GraphError> {
        self.post_control(page, token, "request_thread_control", psid, metadata)
            .await
    }

    /// `GET /{page-id}/thread_owner?recipient=PSID`: the app that owns the thread,
    /// or None when Meta names none.
    pub async fn thread_owner(
        &self,
        page: &PageId,
        token: &SecretString,
        psid: &Psid,
    ) -> Result<Option<AppId>, GraphError> {
        #[derive(Deserialize)]
        struct Answer {
            #[serde(default)]
            data: Vec<Item>,
        }
        #[derive(Deserialize)]
        struct Item {
            #[serde(default)]
            thread_owner: Option<Owner>,
        }
        #[derive(Deserialize)]
        struct Owner {
            app_id: AppId,
        }

        let call = Call {
            method: Method::GET,
            page,
            edge: "thread_owner",
            query: &[("recipient", psid.as_str())],
            body: None,
            retired_tag: false,
        };
        let Some(body) = self.call(call, token).await? else {
            // Reading again is harmless.
            return Err(GraphError::new(
                ErrorClass::Transient,
                "thread_owner answer could not be read",
            ));
        };
        let answer: Answer = serde_json::from_slice(&body).map_err(|e| {
            GraphError::new(
                ErrorClass::Permanent,
                format!("unexpected thread_owner answer: {e}"),
            )
        })?;
        Ok(answer
            .data
            .into_iter()
            .find_map(|item| item.thread_owner)
            .map(|owner| owner.app_id))
    }

    /// `POST /{page-id}/subscribed_apps?subscribed_fields=a,b`: (re)subscribes the
    /// app to the Page's webhooks, which Meta undoes after an hour of failed
    /// deliveries.
    pub async fn subscribe_app(
        &self,
        page: &PageId,
        token: &SecretString,
        fields: &[&str],
    ) -> Result<(), GraphError> {
        let fields = fields.join(",");
        self.post_for_success(
            page,
            token,
            "subscribed_apps",
            &[("subscribed_fields", &fields)],
            None,
        )
        .await
    }

    /// `DELETE /{page-id}/subscribed_apps`: the app no longer gets the Page's
    /// webhooks (`page disconnect`).
    pub async fn unsubscribe_app(
        &self,
        page: &PageId,
        token: &SecretString,
    ) -> Result<(), GraphError> {
        let call = Call {
            method: Method::DELETE,
            page,
            edge: "subscribed_apps",
            query: &[],
            body: None,
            retired_tag: false,
        };
        self.call(call, token).await.map(|_| ())
    }

    /// A POST answered with `{"success": true}`.
    async fn post_for_success(
        &self,
        page: &PageId,
        token: &SecretString,
        edge: &'static str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<(), GraphError> {
        #[derive(Deserialize)]
        struct Answer {
            success: bool,
        }
        let call = Call {
            method: Method::POST,
            page,
            edge,
            query,
            body: body.map(Body::Json),
            retired_tag: false,
        };
        // A 2xx whose body says nothing readable still means done; only an
        // explicit `"success": false` is a failure.
        let body = self.call(call, token).await?;
        match body.and_then(|b| serde_json::from_slice::<Answer>(&b).ok()) {
            Some(Answer { success: false }) => Err(GraphError::new(
                ErrorClass::Permanent,
                format!("{edge} answered \"success\": false"),
            )),
            _ => Ok(()),
        }
    }

    /// Makes one call. `Ok(Some(body))` for a 2xx answer, `Ok(None)` for a 2xx
    /// whose body could not be read, `Err` for everything else.
    pub(crate) async fn call(
        &self,
        call: Call<'_>,
        token: &SecretString,
    ) -> Result<Option<Vec<u8>>, GraphError> {
        let token = token.expose_secret();
        let proof = self.proof_key.as_ref().map(|key| {
            let mut mac = key.clone();
            mac.update(token.as_bytes());
            hex::encode(mac.finalize().into_bytes())
        });
        let secrets = Secrets {
            token,
            proof: proof.as_deref(),
        };

        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| GraphError::new(ErrorClass::Permanent, "base URL cannot take a path"))?
            .pop_if_empty()
            .extend(
                [self.version.as_str(), call.page.as_str(), call.edge]
                    .into_iter()
                    .filter(|segment| !segment.is_empty()),
            );
        if !call.query.is_empty() || proof.is_some() {
            let mut pairs = url.query_pairs_mut();
            pairs.extend_pairs(call.query);
            if let Some(proof) = &proof {
                pairs.append_pair("appsecret_proof", proof);
            }
        }

        let mut builder = self.http.request(call.method, url).bearer_auth(token);
        builder = match call.body {
            Some(Body::Send(request)) => builder.json(request),
            Some(Body::Json(value)) => builder.json(value),
            None => builder,
        };

        let response = match builder.send().await {
            Ok(response) => response,
            Err(e) => {
                let error = transport_error(e, &secrets);
                tracing::debug!(page_id = %call.page, edge = call.edge, class = %error.class, "Graph call failed before an answer");
                return Err(error);
            }
        };
        let status = response.status();
        let body = response.bytes().await;

        if status.is_success() {
            tracing::debug!(page_id = %call.page, edge = call.edge, status = status.as_u16(), "Graph call succeeded");
            return Ok(body.ok().map(|b| b.to_vec()));
        }

        let status = status.as_u16();
        let envelope = body
            .as_ref()
            .ok()
            .and_then(|b| serde_json::from_slice::<GraphErrorEnvelope>(b).ok());
        let error = match envelope {
            Some(GraphErrorEnvelope { error: body }) => GraphError {
                class: ErrorClass::classify(
                    Some(status),
                    body.code,
                    body.error_subcode,
                    call.retired_tag,
                ),
                http_status: Some(status),
                code: Some(body.code),
                subcode: body.error_subcode,
                message: secrets.redact(body.message),
                fbtrace_id: body.fbtrace_id,
                outcome_unknown: false,
            },
            None => GraphError {
                class: ErrorClass::from_http_status(status),
                http_status: Some(status),
                code: None,
                subcode: None,
                // Never the body itself: an HTML error page may echo the request.
                message: match body {
                    Ok(_) => format!("HTTP {status} without a Graph error body"),
                    Err(_) => format!("HTTP {status} with an unreadable body"),
                },
                fbtrace_id: None,
                // A gateway that timed out waiting for Graph: Graph may still
                // have acted on the request. Any other answer says it failed.
                outcome_unknown: status == 504,
            },
        };
        tracing::debug!(
            page_id = %call.page,
            edge = call.edge,
            status,
            code = error.code,
            subcode = error.subcode,
            class = %error.class,
            fbtrace_id = error.fbtrace_id.as_deref(),
            "Graph call failed"
        );
        Err(error)
    }
}

pub(crate) struct Call<'a> {
    pub(crate) method: Method,
    pub(crate) page: &'a PageId,
    pub(crate) edge: &'static str,
    pub(crate) query: &'a [(&'a str, &'a str)],
    pub(crate) body: Option<Body<'a>>,
    /// Error 100 means "retired tag" for this call.
    pub(crate) retired_tag: bool,
}

pub(crate) enum Body<'a> {
    Send(&'a SendRequest),
    Json(&'a Value),
}

/// The credential strings of one call, to scrub from any text that leaves it.
struct Secrets<'a> {
    token: &'a str,
    proof: Option<&'a str>,
}

impl Secrets<'_> {
    /// Replaces every occurrence of the token or the proof. Strings under 8
    /// characters are left alone: no real credential is that short, and scrubbing
    /// them would mangle ordinary words.
    fn redact(&self, mut text: String) -> String {
        for secret in [Some(self.token), self.proof].into_iter().flatten() {
            if secret.len() >= 8 && text.contains(secret) {
                text = text.replace(secret, "<redacted>");
            }
        }
        text
    }
}

/// A failure before any answer arrived. reqwest names the URL in its errors (and
/// ours may carry `appsecret_proof`), so the URL is stripped before the error and
/// its causes are described. Only a request that never connected (or was never
/// built) certainly did nothing; any other failure leaves the outcome unknown.
fn transport_error(error: reqwest::Error, secrets: &Secrets<'_>) -> GraphError {
    let outcome_unknown = !error.is_connect() && !error.is_builder();
    let class = if error.is_builder() {
        ErrorClass::Permanent
    } else {
        ErrorClass::Transient
    };
    let what = if error.is_timeout() {
        "request timed out"
    } else if error.is_connect() {
        "could not connect"
    } else if error.is_builder() {
        "request could not be built"
    } else {
        "request failed"
    };
    let error = error.without_url();
    let mut message = format!("{what}: {error}");
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    GraphError {
        outcome_unknown,
        ..GraphError::new(class, secrets.redact(message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_removes_token_and_proof_but_not_short_strings() {
        let secrets = Secrets {
            token: "EAAGpagetoken123",
            proof: Some("abcdef0123456789"),
        };
        assert_eq!(
            secrets.redact("bad EAAGpagetoken123 and abcdef0123456789".to_owned()),
            "bad <redacted> and <redacted>"
        );
        let short = Secrets {
            token: "a",
            proof: None,
        };
        assert_eq!(short.redact("a cat".to_owned()), "a cat");
    }

    #[test]
    fn bad_configuration_is_refused_at_construction() {
        for config in [
            GraphConfig {
                base_url: "not a url".to_owned(),
                ..GraphConfig::default()
            },
            GraphConfig {
                base_url: "ftp://graph.example".to_owned(),
                ..GraphConfig::default()
            },
            GraphConfig {
                base_url: "https://user:pw@graph.example".to_owned(),
                ..GraphConfig::default()
            },
            GraphConfig {
                base_url: "https://graph.example/?access_token=x".to_owned(),
                ..GraphConfig::default()
            },
            GraphConfig {
                version: " ".to_owned(),
                ..GraphConfig::default()
            },
            GraphConfig {
                timeout: Duration::ZERO,
                ..GraphConfig::default()
            },
        ] {
            let err = GraphClient::new(config).unwrap_err();
            assert_eq!(err.class, ErrorClass::Permanent);
            assert!(
                err.message.starts_with("invalid Graph API configuration"),
                "{err}"
            );
        }
    }
}
