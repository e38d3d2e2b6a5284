//! The HTTP edge: turns API Gateway (REST v1, HTTP API v2) and function URL requests
//! into the domain calls of [`crate::accept`], and their outcomes into the answers of
//! the contract. No rule lives here besides that mapping.

use hub_signature::{SHA1_HEADER, SHA256_HEADER, SignatureError, SignatureHeaders};
use lambda_http::http::{Method, StatusCode, header};
use lambda_http::{Body, Request, RequestExt, Response};
use secrecy::ExposeSecret;
use subtle::ConstantTimeEq;

use messenger_types::Command;
use signals::Metric;

use crate::accept::{AcceptError, EventQueue, OutgoingMessage, Quarantine, Receiver};
use crate::deletion::{self, Callback, CallbackError, DataDeletion};

/// The webhook function: subscription check (GET) and event delivery (POST).
#[derive(Debug)]
pub struct Webhook<Q, S> {
    /// The POST path; its credentials give the subscription check its verify token.
    pub receiver: Receiver<Q, S>,
    /// Meta's data deletion and deauthorize callbacks.
    pub deletion: DataDeletion,
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
        let path = req.uri().path().trim_end_matches('/');
        if path.ends_with("/data-deletion") {
            return Ok(match *req.method() {
                Method::POST => self.callback(&req, Callback::DataDeletion).await,
                Method::GET => self.deletion_status(&req).await,
                _ => not_allowed("GET, POST"),
            }?);
        }
        if path.ends_with("/deauthorize") {
            return Ok(match *req.method() {
                Method::POST => self.callback(&req, Callback::Deauthorize).await,
                _ => not_allowed("POST"),
            }?);
        }
        if path.ends_with("/commands") {
            return Ok(match *req.method() {
                Method::POST => self.command(&req).await,
                _ => text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed").map(|mut r| {
                    r.headers_mut()
                        .insert(header::ALLOW, header::HeaderValue::from_static("POST"));
                    r
                }),
            }?);
        }
        Ok(match *req.method() {
            Method::GET => self.subscribe(&req).await,
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
    async fn subscribe(&self, req: &Request) -> Result<Response<Body>, lambda_http::http::Error> {
        let query = req.query_string_parameters_ref();
        let param = |name| query.and_then(|q| q.first(name));
        let mode_ok = param("hub.mode") == Some("subscribe");
        // A wrong token may be a new one the operator just saved in the secret.
        let token_ok = match param("hub.verify_token") {
            Some(t) => self
                .receiver
                .credentials
                .check(
                    |keys| {
                        let same = t
                            .as_bytes()
                            .ct_eq(keys.verify_token().expose_secret().as_bytes());
                        if bool::from(same) { Ok(()) } else { Err(()) }
                    },
                    |()| mode_ok,
                )
                .await
                .is_ok(),
            None => false,
        };
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
                    AcceptError::Enqueue { .. }
                    | AcceptError::Quarantine(_)
                    | AcceptError::OutOfTime { .. } => {
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

impl<Q: EventQueue, S: Quarantine> Webhook<Q, S> {
    /// `POST /commands`: a command from the business's own systems. The route has
    /// API Gateway's `AWS_IAM` authorization; the function also refuses a request
    /// that carries no IAM identity (a route deployed without it, a function URL).
    /// A valid command is queued in its thread's group, deduplicated by its id
    /// for SQS's five minutes (the processor's ledger beyond), then 202.
    async fn command(&self, req: &Request) -> Result<Response<Body>, lambda_http::http::Error> {
        let Some(caller) = iam_caller(req) else {
            tracing::warn!("command refused: the request carries no IAM identity");
            return json(
                StatusCode::FORBIDDEN,
                &serde_json::json!({"message": "this route takes only IAM-signed requests (AWS_IAM authorization)"}),
            );
        };
        let body: &[u8] = match req.body() {
            Body::Text(s) => s.as_bytes(),
            Body::Binary(b) => b,
            _ => b"",
        };
        if body.len() > MAX_COMMAND_BYTES {
            return json(
                StatusCode::PAYLOAD_TOO_LARGE,
                &serde_json::json!({"message": format!("a command is at most {MAX_COMMAND_BYTES} bytes")}),
            );
        }
        let command: Command = match serde_json::from_slice(body) {
            Ok(command) => command,
            Err(e) => {
                tracing::info!(caller, error_class = ?e.classify(), "command refused: unreadable");
                return json(
                    StatusCode::BAD_REQUEST,
                    &serde_json::json!({"message": format!("not a command: {e}")}),
                );
            }
        };
        if let Err(invalid) = command.validate() {
            tracing::info!(caller, field = invalid.field, "command refused: invalid");
            return json(
                StatusCode::BAD_REQUEST,
                &serde_json::json!({"message": invalid.to_string(), "field": invalid.field}),
            );
        }
        let id = command.command_id().as_str();
        let message = OutgoingMessage {
            group_id: command.queue_group(),
            dedup_id: command.dedup_id(),
            body: serde_json::to_string(&command).unwrap_or_default(),
            kind: "command",
        };
        match self
            .receiver
            .queue
            .send_batch(std::slice::from_ref(&message))
            .await
        {
            Ok(refused) if refused.is_empty() => {
                tracing::info!(
                    caller,
                    command_id = id,
                    kind = command.kind(),
                    "command queued"
                );
                json(StatusCode::ACCEPTED, &serde_json::json!({"command_id": id}))
            }
            Ok(_) | Err(_) => {
                signals::count(Metric::EnqueueFailed, 1);
                tracing::error!(caller, command_id = id, "command not queued");
                json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &serde_json::json!({"message": "the command could not be queued; send it again"}),
                )
            }
        }
    }
}

impl<Q: EventQueue, S: Quarantine> Webhook<Q, S> {
    /// `POST /data-deletion` and `POST /deauthorize`: Meta's callbacks, signed
    /// with the app secret (`signed_request`). A bad signature is 403, anything
    /// else wrong 400, and nothing is recorded for either.
    async fn callback(
        &self,
        req: &Request,
        callback: Callback,
    ) -> Result<Response<Body>, lambda_http::http::Error> {
        let body: &[u8] = match req.body() {
            Body::Text(s) => s.as_bytes(),
            Body::Binary(b) => b,
            _ => b"",
        };
        let now = messenger_types::Timestamp::now().as_millis();
        match self.deletion.accept(callback, body, now).await {
            Ok((code, verified)) => match callback {
                Callback::DataDeletion => {
                    tracing::info!(confirmation_code = %code, "data deletion request recorded");
                    let url = format!("{}?code={code}", public_url(req));
                    json(
                        StatusCode::OK,
                        &serde_json::json!({"url": url, "confirmation_code": code}),
                    )
                }
                Callback::Deauthorize => {
                    // The Page is disconnected already (its token forgotten, its
                    // events parked); the operator decides whether to connect it again.
                    tracing::warn!(
                        confirmation_code = %code,
                        page_id = verified.profile_id.as_deref().unwrap_or("-"),
                        alert = true,
                        "the app was removed (deauthorize): the Page is disconnected"
                    );
                    json(
                        StatusCode::OK,
                        &serde_json::json!({"confirmation_code": code}),
                    )
                }
            },
            Err(CallbackError::Unrecorded(error)) => {
                tracing::error!(%error, callback = callback.as_str(), "callback not recorded; Meta sends it again");
                json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &serde_json::json!({"message": "the request could not be recorded; send it again"}),
                )
            }
            Err(error) => {
                let forbidden =
                    matches!(&error, CallbackError::SignedRequest(e) if e.is_forbidden());
                if forbidden {
                    signals::count(Metric::SignatureRejected, 1);
                }
                tracing::warn!(%error, callback = callback.as_str(), "callback refused");
                let status = if forbidden {
                    StatusCode::FORBIDDEN
                } else {
                    StatusCode::BAD_REQUEST
                };
                json(status, &serde_json::json!({"message": error.to_string()}))
            }
        }
    }

    /// `GET /data-deletion?code=`: the status of a recorded request, for a person.
    async fn deletion_status(
        &self,
        req: &Request,
    ) -> Result<Response<Body>, lambda_http::http::Error> {
        let query = req.query_string_parameters_ref();
        let code = query.and_then(|q| q.first("code")).unwrap_or_default();
        if !deletion::is_code(code) {
            return text(StatusCode::NOT_FOUND, "no such request");
        }
        match self.deletion.log.find(code).await {
            Ok(Some(recorded)) => text(StatusCode::OK, deletion::status_page(code, &recorded)),
            Ok(None) => text(StatusCode::NOT_FOUND, "no such request"),
            Err(error) => {
                tracing::error!(%error, "deletion status not read");
                text(StatusCode::SERVICE_UNAVAILABLE, "try again later")
            }
        }
    }
}

/// This route's public address: `https://<host><path>` as API Gateway saw it.
fn public_url(req: &Request) -> String {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().host())
        .unwrap_or("localhost");
    let scheme = if host.starts_with("127.0.0.1") || host.starts_with("localhost") {
        "http"
    } else {
        "https"
    };
    format!("{scheme}://{host}{}", req.uri().path())
}

fn not_allowed(allow: &'static str) -> Result<Response<Body>, lambda_http::http::Error> {
    text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed").map(|mut r| {
        r.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static(allow));
        r
    })
}

/// The largest command body taken: SQS's message limit.
pub const MAX_COMMAND_BYTES: usize = 256 * 1024;

/// The IAM identity API Gateway put on the request (`AWS_IAM` authorization):
/// the caller's ARN, or its account when the ARN is absent.
fn iam_caller(req: &Request) -> Option<String> {
    use lambda_http::request::RequestContext;
    let RequestContext::ApiGatewayV2(ctx) = req.request_context_ref()? else {
        return None;
    };
    let iam = ctx.authorizer.as_ref()?.iam.as_ref()?;
    iam.user_arn
        .clone()
        .or_else(|| iam.caller_id.clone())
        .or_else(|| iam.account_id.clone())
        .filter(|c| !c.is_empty())
}

fn json(
    status: StatusCode,
    body: &serde_json::Value,
) -> Result<Response<Body>, lambda_http::http::Error> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .body(Body::Text(body.to_string()))
}

/// The contract's answer for each way a POST can fail.
pub fn status_of(err: &AcceptError) -> StatusCode {
    match err {
        AcceptError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        AcceptError::Signature(SignatureError::Mismatch { .. }) => StatusCode::FORBIDDEN,
        AcceptError::Signature(_) => StatusCode::UNAUTHORIZED,
        // 503 rather than 500: the request was fine, a dependency was not; Meta retries.
        AcceptError::Enqueue { .. }
        | AcceptError::Quarantine(_)
        | AcceptError::OutOfTime { .. } => StatusCode::SERVICE_UNAVAILABLE,
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
