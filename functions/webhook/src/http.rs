//! The HTTP edge: turns API Gateway (REST v1, HTTP API v2) and function URL requests
//! into the domain calls of [`crate::accept`], and their outcomes into the answers of
//! the contract. No rule lives here besides that mapping.

use hub_signature::{SHA1_HEADER, SHA256_HEADER, SignatureError, SignatureHeaders};
use lambda_http::http::{Method, StatusCode, header};
use lambda_http::{Body, Request, RequestExt, Response};
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use signals::Metric;

use crate::accept::{AcceptError, EventQueue, Quarantine, Receiver};

/// The webhook function: subscription check (GET) and event delivery (POST).
#[derive(Debug)]
pub struct Webhook<Q, S> {
    pub verify_token: SecretString,
    pub receiver: Receiver<Q, S>,
}

impl<Q: EventQueue, S: Quarantine> Webhook<Q, S> {
    /// Answers one request. Never fails: every outcome is an HTTP answer.
    /// One request. Its metrics are written when it ends (one flush per invocation).
    pub async fn handle(&self, req: Request) -> Result<Response<Body>, lambda_http::Error> {
        let response = self.route(req).await;
        signals::flush();
        response
    }

    async fn route(&self, req: Request) -> Result<Response<Body>, lambda_http::Error> {
        Ok(match *req.method() {
            Method::GET => self.subscribe(&req),
            Method::POST => self.receive(&req).await,
            _ => text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed").map(|mut r| {
                r.headers_mut()
                    .insert(header::ALLOW, header::HeaderValue::from_static("GET, POST"));
                r
            }),
        }?)
    }

    /// Meta's subscription check: `hub.mode=subscribe`, the verify token typed in
    /// the app dashboard, and a challenge to echo back.
    fn subscribe(&self, req: &Request) -> Result<Response<Body>, lambda_http::http::Error> {
        let query = req.query_string_parameters_ref();
        let param = |name| query.and_then(|q| q.first(name));
        let mode_ok = param("hub.mode") == Some("subscribe");
        let token_ok = param("hub.verify_token").is_some_and(|t| {
            bool::from(
                t.as_bytes()
                    .ct_eq(self.verify_token.expose_secret().as_bytes()),
            )
        });
        match param("hub.challenge") {
            Some(challenge) if mode_ok && token_ok => {
                tracing::info!("webhook subscription verified");
                text(StatusCode::OK, challenge)
            }
            _ => {
                tracing::warn!(mode_ok, token_ok, "webhook subscription check refused");
                text(StatusCode::FORBIDDEN, "forbidden")
            }
        }
    }

    async fn receive(&self, req: &Request) -> Result<Response<Body>, lambda_http::http::Error> {
        // lambda_http has already base64-decoded an `isBase64Encoded` body: these
        // are the bytes Meta signed.
        let body: &[u8] = match req.body() {
            Body::Empty => b"",
            Body::Text(s) => s.as_bytes(),
            Body::Binary(b) => b,
            _ => b"",
        };
        let header = |name| req.headers().get(name).map(|v| v.as_bytes());
        let signatures = SignatureHeaders {
            sha256: header(SHA256_HEADER),
            sha1: header(SHA1_HEADER),
        };
        match self.receiver.accept(signatures, body).await {
            Ok(accepted) => {
                signals::count(Metric::EventsAccepted, count(accepted.enqueued));
                if accepted.quarantined.is_some() {
                    signals::count(Metric::EventsQuarantined, 1);
                }
                tracing::info!(
                    events = accepted.enqueued,
                    quarantined = accepted.quarantined.is_some(),
                    "webhook delivery accepted"
                );
                text(StatusCode::OK, "EVENT_RECEIVED")
            }
            Err(err) => {
                match &err {
                    AcceptError::Signature(_) => signals::count(Metric::SignatureRejected, 1),
                    AcceptError::Enqueue { .. } | AcceptError::Quarantine(_) => {
                        signals::count(Metric::EnqueueFailed, 1);
                    }
                    AcceptError::TooLarge { .. } => {}
                }
                let status = status_of(&err);
                if status.is_server_error() {
                    tracing::error!(error = %err, "webhook delivery not accepted; Meta will redeliver");
                } else {
                    tracing::warn!(error = %err, status = status.as_u16(), "webhook delivery refused");
                }
                text(status, reason_of(status))
            }
        }
    }
}

/// The contract's answer for each way a POST can fail.
pub fn status_of(err: &AcceptError) -> StatusCode {
    match err {
        AcceptError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        AcceptError::Signature(SignatureError::Mismatch { .. }) => StatusCode::FORBIDDEN,
        AcceptError::Signature(_) => StatusCode::UNAUTHORIZED,
        // 503 rather than 500: the request was fine, a dependency was not; Meta retries.
        AcceptError::Enqueue { .. } | AcceptError::Quarantine(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

fn reason_of(status: StatusCode) -> &'static str {
    status.canonical_reason().unwrap_or("error")
}

fn text(
    status: StatusCode,
    body: impl Into<String>,
) -> Result<Response<Body>, lambda_http::http::Error> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .body(Body::Text(body.into()))
}
