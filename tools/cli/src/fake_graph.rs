//! A stand-in for the Graph API: answers the Send API, the Handover Protocol,
//! `subscribed_apps` (remembering each Page's fields), `messenger_profile`
//! (remembering each Page's profile), and what `page connect` asks
//! (`oauth/access_token`, `me/accounts` with the local Pages, `debug_token`), prints
//! each call and appends it as one JSON line to a file. Access tokens are never printed
//! or recorded, only whether one came.
//!
//! A token can be declared dead, as when a Page admin changes their password:
//! `POST /_fake/dead-tokens` with `{"access_token": "..."}`. From then on every call
//! made with it is answered 190 (`OAuthException`), and `debug_token` says it is not
//! valid.

use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::Mutex;

#[derive(Debug)]
pub struct FakeGraph {
    pub url: String,
}

#[derive(Debug)]
struct Recorder {
    file: Mutex<tokio::fs::File>,
    calls: AtomicU64,
    /// The fields each Page was subscribed to (`POST subscribed_apps`).
    subscribed: Mutex<std::collections::BTreeMap<String, Vec<String>>>,
    /// Each Page's Messenger Profile (`POST messenger_profile`), field by field.
    profiles: Mutex<std::collections::BTreeMap<String, serde_json::Map<String, Value>>>,
    /// Tokens declared dead (`POST /_fake/dead-tokens`): kept in memory only.
    dead: Mutex<std::collections::BTreeSet<String>>,
}

/// The Pages `me/accounts` lists, with their made-up tokens (the local stack's).
const ACCOUNTS: [(&str, &str, &str); 2] = [
    (
        crate::samples::LOCAL_PAGE,
        "Local Page",
        "local-page-token-1",
    ),
    (
        crate::samples::LOCAL_PAGE_2,
        "Local Page 2",
        "local-page-token-2",
    ),
];

/// Starts the fake on 127.0.0.1:`port` (0 = a free port), recording into `record`.
pub async fn start(port: u16, record: &Path) -> crate::Result<FakeGraph> {
    if let Some(dir) = record.parent().filter(|d| !d.as_os_str().is_empty()) {
        tokio::fs::create_dir_all(dir).await?;
    }
    let file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(record)
        .await
        .map_err(|e| format!("cannot open {}: {e}", record.display()))?;
    let recorder = Arc::new(Recorder {
        file: Mutex::new(file),
        calls: AtomicU64::new(0),
        subscribed: Mutex::new(std::collections::BTreeMap::new()),
        profiles: Mutex::new(std::collections::BTreeMap::new()),
        dead: Mutex::new(std::collections::BTreeSet::new()),
    });
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(crate::local::serve(listener, move |req| {
        let recorder = recorder.clone();
        async move { Ok::<_, Infallible>(answer(&recorder, req).await) }
    }));
    Ok(FakeGraph { url })
}

async fn answer(recorder: &Recorder, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    // Query parameters, without the access token if one came that way.
    let query: serde_json::Map<String, Value> = req
        .uri()
        .query()
        .map(|q| {
            form_urlencoded::parse(q.as_bytes())
                // Credentials are never recorded, only whether they came.
                .filter(|(k, _)| {
                    !matches!(
                        k.as_ref(),
                        "access_token"
                            | "appsecret_proof"
                            | "client_secret"
                            | "fb_exchange_token"
                            | "input_token"
                    )
                })
                .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
                .collect()
        })
        .unwrap_or_default();
    let authorized = req.headers().contains_key(http::header::AUTHORIZATION)
        || req
            .uri()
            .query()
            .is_some_and(|q| q.contains("access_token="));
    let proof = req
        .uri()
        .query()
        .is_some_and(|q| q.contains("appsecret_proof="));
    // The token the call is made with, and the one `debug_token` inspects.
    let token = bearer(&req).or_else(|| query_value(&req, "access_token"));
    let input_token = query_value(&req, "input_token");
    let method = req.method().clone();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    // /{version}/{page-id}/{edge}
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (page, edge) = match parts.as_slice() {
        [_version, page, edge] => (*page, *edge),
        [_version, node] => (*node, ""),
        _ => ("", ""),
    };

    if path == "/_fake/dead-tokens" && method == http::Method::POST {
        // Never recorded or printed: the body is a token.
        return match body["access_token"].as_str() {
            Some(dead) => {
                recorder.dead.lock().await.insert(dead.to_owned());
                reply(StatusCode::OK, &json!({"success": true}))
            }
            None => reply(
                StatusCode::BAD_REQUEST,
                &json!({"error": {"message": "give {\"access_token\": \"...\"}", "code": 100}}),
            ),
        };
    }
    let dead = {
        let dead = recorder.dead.lock().await;
        (
            token.as_ref().is_some_and(|t| dead.contains(t)),
            input_token.as_ref().is_some_and(|t| dead.contains(t)),
        )
    };

    let n = recorder.calls.fetch_add(1, Ordering::Relaxed) + 1;
    let (status, reply) = match (method.as_str(), edge) {
        // What Graph answers for a token invalidated by a password change.
        _ if dead.0 => (
            StatusCode::UNAUTHORIZED,
            json!({"error": {"message": "Error validating access token: The session has been invalidated because the user changed their password.",
                "type": "OAuthException", "code": 190, "error_subcode": 460}}),
        ),
        ("GET", "") if page == "debug_token" && dead.1 => (
            StatusCode::OK,
            json!({"data": {"is_valid": false, "expires_at": 0, "scopes": [],
                "error": {"code": 190, "subcode": 460, "message": "The session has been invalidated because the user changed their password."}}}),
        ),
        ("POST", "messages") => {
            let recipient = body["recipient"]["id"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| "(token)".to_owned());
            (
                StatusCode::OK,
                json!({"recipient_id": recipient, "message_id": format!("m_fake_{n}")}),
            )
        }
        ("POST", "subscribed_apps") => {
            let fields = query["subscribed_fields"]
                .as_str()
                .unwrap_or_default()
                .split(',')
                .map(str::to_owned)
                .collect();
            recorder
                .subscribed
                .lock()
                .await
                .insert(page.to_owned(), fields);
            (StatusCode::OK, json!({"success": true}))
        }
        ("GET", "subscribed_apps") => {
            let fields = recorder.subscribed.lock().await.get(page).cloned();
            let data: Vec<Value> = fields
                .into_iter()
                .map(|f| json!({"id": "local-app", "name": "local app", "subscribed_fields": f}))
                .collect();
            (StatusCode::OK, json!({"data": data}))
        }
        ("DELETE", "subscribed_apps") => {
            recorder.subscribed.lock().await.remove(page);
            (StatusCode::OK, json!({"success": true}))
        }
        ("POST", "messenger_profile") => match body.as_object() {
            Some(fields) if !fields.is_empty() => {
                let mut profiles = recorder.profiles.lock().await;
                let profile = profiles.entry(page.to_owned()).or_default();
                for (field, value) in fields {
                    profile.insert(field.clone(), value.clone());
                }
                (StatusCode::OK, json!({"result": "success"}))
            }
            _ => (
                StatusCode::BAD_REQUEST,
                json!({"error": {"message": "(#100) The parameter is missing or empty", "type": "OAuthException", "code": 100}}),
            ),
        },
        ("GET", "messenger_profile") => {
            let wanted: Vec<&str> = query
                .get("fields")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .split(',')
                .collect();
            let profile: serde_json::Map<String, Value> = recorder
                .profiles
                .lock()
                .await
                .get(page)
                .map(|p| {
                    p.iter()
                        .filter(|(f, _)| wanted.contains(&f.as_str()))
                        .map(|(f, v)| (f.clone(), v.clone()))
                        .collect()
                })
                .unwrap_or_default();
            let data: Vec<Value> = (!profile.is_empty())
                .then_some(Value::Object(profile))
                .into_iter()
                .collect();
            (StatusCode::OK, json!({"data": data}))
        }
        ("DELETE", "messenger_profile") => {
            if let Some(profile) = recorder.profiles.lock().await.get_mut(page) {
                for field in body["fields"].as_array().into_iter().flatten() {
                    profile.remove(field.as_str().unwrap_or_default());
                }
            }
            (StatusCode::OK, json!({"result": "success"}))
        }
        ("GET", "access_token") if page == "oauth" => (
            StatusCode::OK,
            json!({"access_token": "local-long-lived-user-token", "token_type": "bearer", "expires_in": 5_183_944}),
        ),
        ("GET", "accounts") if page == "me" => (
            StatusCode::OK,
            json!({"data": ACCOUNTS.iter().map(|(id, name, token)| json!({
                "id": id, "name": name, "access_token": token, "tasks": ["MESSAGING", "MODERATE"]
            })).collect::<Vec<_>>()}),
        ),
        ("GET", "") if page == "debug_token" => (
            StatusCode::OK,
            json!({"data": {"is_valid": true, "app_id": "local-app", "expires_at": 0, "scopes": ["pages_messaging", "pages_manage_metadata"]}}),
        ),
        (
            "POST",
            "pass_thread_control"
            | "take_thread_control"
            | "release_thread_control"
            | "extend_thread_control"
            | "request_thread_control",
        ) => (StatusCode::OK, json!({"success": true})),
        _ => (
            StatusCode::BAD_REQUEST,
            json!({"error": {"message": format!("the fake Graph API has no {method} {path}"),
                "type": "OAuthException", "code": 100}}),
        ),
    };
    let call = json!({
        "n": n, "method": method.as_str(), "path": path, "page_id": page, "edge": edge,
        "authorized": authorized, "appsecret_proof": proof, "query": query, "body": body, "status": status.as_u16(),
    });
    println!("{}", describe(&call));
    let mut line = call.to_string();
    line.push('\n');
    if let Err(e) = recorder.file.lock().await.write_all(line.as_bytes()).await {
        eprintln!("fake Graph API: cannot record the call: {e}");
    }
    self::reply(status, &reply)
}

fn reply(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

fn bearer(req: &Request<Incoming>) -> Option<String> {
    req.headers()
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::to_owned)
}

fn query_value(req: &Request<Incoming>, name: &str) -> Option<String> {
    form_urlencoded::parse(req.uri().query()?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// One line a person reads: who gets what, under which messaging type.
fn describe(call: &Value) -> String {
    let body = &call["body"];
    let page = call["page_id"].as_str().unwrap_or("?");
    match call["edge"].as_str().unwrap_or("") {
        "messages" => {
            let to = body["recipient"]["id"]
                .as_str()
                .map(|id| format!("PSID {id}"))
                .or_else(|| {
                    body["recipient"]["one_time_notif_token"]
                        .as_str()
                        .map(|_| "a one-time notification token".to_owned())
                })
                .unwrap_or_else(|| body["recipient"].to_string());
            let kind = body["messaging_type"].as_str().unwrap_or("(no type)");
            let tag = body["tag"]
                .as_str()
                .map(|t| format!(" tag {t}"))
                .unwrap_or_default();
            format!(
                "[graph] Page {page} -> {to} ({kind}{tag}): {}",
                body["message"]
            )
        }
        "" => format!(
            "[graph] unexpected {} {}",
            call["method"].as_str().unwrap_or("?"),
            call["path"].as_str().unwrap_or("?")
        ),
        edge if body.is_null() => format!("[graph] Page {page} {edge}: {}", call["query"]),
        edge => format!("[graph] Page {page} {edge}: {body}"),
    }
}
