//! A stand-in for the Graph API: answers the Send API, the Handover Protocol and
//! `subscribed_apps` with success, prints each call and appends it as one JSON line
//! to a file. Access tokens are never printed or recorded, only whether one came.

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
}

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
                .filter(|(k, _)| k != "access_token" && k != "appsecret_proof")
                .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
                .collect()
        })
        .unwrap_or_default();
    let authorized = req.headers().contains_key(http::header::AUTHORIZATION)
        || req
            .uri()
            .query()
            .is_some_and(|q| q.contains("access_token="));
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
        _ => ("", ""),
    };
    let n = recorder.calls.fetch_add(1, Ordering::Relaxed) + 1;
    let (status, reply) = match (method.as_str(), edge) {
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
        (
            "POST",
            "pass_thread_control"
            | "take_thread_control"
            | "release_thread_control"
            | "extend_thread_control"
            | "request_thread_control"
            | "subscribed_apps",
        )
        | ("DELETE", "subscribed_apps") => (StatusCode::OK, json!({"success": true})),
        _ => (
            StatusCode::BAD_REQUEST,
            json!({"error": {"message": format!("the fake Graph API has no {method} {path}"),
                "type": "OAuthException", "code": 100}}),
        ),
    };
    let call = json!({
        "n": n, "method": method.as_str(), "path": path, "page_id": page, "edge": edge,
        "authorized": authorized, "query": query, "body": body, "status": status.as_u16(),
    });
    println!("{}", describe(&call));
    let mut line = call.to_string();
    line.push('\n');
    if let Err(e) = recorder.file.lock().await.write_all(line.as_bytes()).await {
        eprintln!("fake Graph API: cannot record the call: {e}");
    }
    let mut response = Response::new(Full::new(Bytes::from(reply.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
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
