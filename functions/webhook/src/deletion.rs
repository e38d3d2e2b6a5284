//! Meta's Data Deletion Request Callback (`POST /data-deletion`, with its status
//! page `GET /data-deletion?code=`) and Deauthorize callback (`POST /deauthorize`).
//!
//! Both carry a `signed_request` form field signed with the app secret
//! ([`hub_signature::signed_request`]). The `user_id` in it is a Facebook Login
//! id, not a PSID: this backend keeps nothing keyed by it, so a deletion request is
//! recorded and answered as done; the people who only message a Page are erased by
//! `forget`. The record is keyed by the confirmation code (an HMAC of the request
//! under the app secret) and holds no id of the person.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::AttributeValue;
use hmac::{Hmac, Mac};
use hub_signature::signed_request::{self, SignedRequest, SignedRequestError};
use secrecy::ExposeSecret;
use sha2::Sha256;

use crate::credentials::Credentials;

/// How long a request's record (and its status page) is kept.
pub const RECORD_DAYS: i64 = 90;
/// The largest form body these routes read; Meta's is a few hundred bytes.
pub const MAX_FORM_BYTES: usize = 16 * 1024;

/// Which callback a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Callback {
    DataDeletion,
    Deauthorize,
}

impl Callback {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DataDeletion => "data_deletion",
            Self::Deauthorize => "deauthorize",
        }
    }
}

/// A recorded request, as its status page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub callback: String,
    pub received_at_ms: i64,
}

pub type LogFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, String>> + Send + 'a>>;

/// Where the requests are recorded.
pub trait DeletionLog: Send + Sync + fmt::Debug {
    /// Records a request under its code (again: no change).
    fn record<'a>(&'a self, code: &'a str, callback: Callback, at_ms: i64) -> LogFuture<'a, ()>;
    fn find<'a>(&'a self, code: &'a str) -> LogFuture<'a, Option<Recorded>>;
    /// The app was removed from the Page: its token is forgotten and it is
    /// `MISSING` (`deauthorized`), so its events are parked, not sent.
    fn disconnect<'a>(&'a self, page: &'a str, at_ms: i64) -> LogFuture<'a, ()>;
}

/// No table configured (`TABLE_NAME` unset): the routes answer 503.
#[derive(Debug, Default)]
pub struct NoDeletionLog;

impl DeletionLog for NoDeletionLog {
    fn record<'a>(&'a self, _: &'a str, _: Callback, _: i64) -> LogFuture<'a, ()> {
        Box::pin(async { Err("no table is configured (TABLE_NAME)".to_owned()) })
    }
    fn find<'a>(&'a self, _: &'a str) -> LogFuture<'a, Option<Recorded>> {
        Box::pin(async { Err("no table is configured (TABLE_NAME)".to_owned()) })
    }
    fn disconnect<'a>(&'a self, _: &'a str, _: i64) -> LogFuture<'a, ()> {
        Box::pin(async { Err("no table is configured (TABLE_NAME)".to_owned()) })
    }
}

/// The stack's table: one item `DELETION#<code>` per request, expiring after
/// [`RECORD_DAYS`]. The webhook's role may touch only those keys.
#[derive(Debug, Clone)]
pub struct DynamoDeletionLog {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoDeletionLog {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

fn record_pk(code: &str) -> AttributeValue {
    AttributeValue::S(format!("DELETION#{code}"))
}

const RECORD_SK: &str = "DELETION";

impl DeletionLog for DynamoDeletionLog {
    fn disconnect<'a>(&'a self, page: &'a str, at_ms: i64) -> LogFuture<'a, ()> {
        use messenger_store::PageRegistry;
        Box::pin(async move {
            messenger_store::DynamoStore::new(self.client.clone(), &self.table)
                .forget_page_token(
                    &messenger_types::PageId::new(page),
                    "deauthorized",
                    messenger_types::Timestamp::from_millis(at_ms),
                )
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn record<'a>(&'a self, code: &'a str, callback: Callback, at_ms: i64) -> LogFuture<'a, ()> {
        Box::pin(async move {
            let ttl = at_ms / 1000 + RECORD_DAYS * 86_400;
            self.client
                .update_item()
                .table_name(&self.table)
                .key("pk", record_pk(code))
                .key("sk", AttributeValue::S(RECORD_SK.to_owned()))
                .update_expression(
                    "SET callback = if_not_exists(callback, :c), received_at = if_not_exists(received_at, :t), #ttl = if_not_exists(#ttl, :ttl)",
                )
                .expression_attribute_names("#ttl", "ttl")
                .expression_attribute_values(":c", AttributeValue::S(callback.as_str().to_owned()))
                .expression_attribute_values(":t", AttributeValue::N(at_ms.to_string()))
                .expression_attribute_values(":ttl", AttributeValue::N(ttl.to_string()))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| format!("UpdateItem(deletion): {}", DisplayErrorContext(&e)))
        })
    }

    fn find<'a>(&'a self, code: &'a str) -> LogFuture<'a, Option<Recorded>> {
        Box::pin(async move {
            let out = self
                .client
                .get_item()
                .table_name(&self.table)
                .key("pk", record_pk(code))
                .key("sk", AttributeValue::S(RECORD_SK.to_owned()))
                .send()
                .await
                .map_err(|e| format!("GetItem(deletion): {}", DisplayErrorContext(&e)))?;
            let Some(item) = out.item else {
                return Ok(None);
            };
            let s = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
            let n = |k: &str| {
                item.get(k)
                    .and_then(|v| v.as_n().ok())
                    .and_then(|v| v.parse::<i64>().ok())
            };
            // DynamoDB deletes expired items within days: an expired one is gone.
            if n("ttl").is_some_and(|ttl| ttl * 1000 < now_ms()) {
                return Ok(None);
            }
            Ok(Some(Recorded {
                callback: s("callback").unwrap_or_default(),
                received_at_ms: n("received_at").unwrap_or(0),
            }))
        })
    }
}

/// The callbacks' settings: the credentials whose app secret signs
/// `signed_request`, and the log.
#[derive(Debug)]
pub struct DataDeletion {
    pub credentials: Credentials,
    pub log: Box<dyn DeletionLog>,
}

/// Why a callback was refused.
#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
    #[error("the form is over {MAX_FORM_BYTES} bytes")]
    TooLarge,
    #[error("the form has no signed_request field")]
    NoSignedRequest,
    #[error("signed_request: {0}")]
    SignedRequest(#[from] SignedRequestError),
    #[error("the request could not be recorded: {0}")]
    Unrecorded(String),
}

impl DataDeletion {
    /// Verifies the form's `signed_request` and records it; answers the
    /// confirmation code (the same for the same request, whatever the repeats).
    pub async fn accept(
        &self,
        callback: Callback,
        form: &[u8],
        now_ms: i64,
    ) -> Result<(String, SignedRequest), CallbackError> {
        if form.len() > MAX_FORM_BYTES {
            return Err(CallbackError::TooLarge);
        }
        let field = form_urlencoded::parse(form)
            .find(|(k, _)| k == "signed_request")
            .map(|(_, v)| v.into_owned())
            .ok_or(CallbackError::NoSignedRequest)?;
        // Like the webhook's signature: a mismatch may mean a rotated app secret.
        let (verified, code) = self
            .credentials
            .check(
                |keys| {
                    let secret = keys.app_secret().expose_secret().as_bytes();
                    let verified = signed_request::verify(&field, secret, now_ms / 1000)?;
                    Ok::<_, SignedRequestError>((
                        verified,
                        confirmation_code(secret, callback, &field),
                    ))
                },
                SignedRequestError::is_forbidden,
            )
            .await?;
        // A Page that removed the app: disconnected before the request is
        // recorded, so a failure here is answered 503 and Meta sends it again.
        if callback == Callback::Deauthorize
            && let Some(page) = verified.profile_id.as_deref()
        {
            self.log
                .disconnect(page, now_ms)
                .await
                .map_err(CallbackError::Unrecorded)?;
        }
        self.log
            .record(&code, callback, now_ms)
            .await
            .map_err(CallbackError::Unrecorded)?;
        Ok((code, verified))
    }
}

/// 16 hex characters of HMAC-SHA256(app secret, callback + the signed request):
/// unguessable, the same for a repeated request, and revealing nothing of it.
fn confirmation_code(secret: &[u8], callback: Callback, signed_request: &str) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(callback.as_str().as_bytes());
    mac.update(&[0]);
    mac.update(signed_request.as_bytes());
    hex::encode(&mac.finalize().into_bytes()[..8])
}

/// Whether `code` has the shape of a confirmation code (looked up only then).
pub fn is_code(code: &str) -> bool {
    code.len() == 16
        && code
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// The status page of a recorded request: plain text, for a person to read.
pub fn status_page(code: &str, recorded: &Recorded) -> String {
    let when = time_text(recorded.received_at_ms);
    match recorded.callback.as_str() {
        "deauthorize" => format!(
            "Request {code}: the app was removed ({when}). The Pages it served are disconnected.\n"
        ),
        _ => format!(
            "Data deletion request {code}: received {when}, completed.\n\n\
             This service keeps no data keyed by your Facebook account. Conversations you \
             had with a Page through Messenger are kept by the business that runs the \
             Page: ask it to erase them, and it will (they are erased by Page and person).\n"
        ),
    }
}

/// `2026-12-01 10:00 UTC` from milliseconds since the epoch.
fn time_text(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let minutes = ms.rem_euclid(86_400_000) / 60_000;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        minutes / 60,
        minutes % 60
    )
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_written_as_utc_dates() {
        assert_eq!(time_text(0), "1970-01-01 00:00 UTC");
        assert_eq!(time_text(1_796_167_877_726), "2026-12-01 23:31 UTC");
        assert_eq!(time_text(951_782_400_000), "2000-02-29 00:00 UTC");
    }

    #[test]
    fn codes_are_sixteen_lowercase_hex_and_depend_on_the_request() {
        let a = confirmation_code(b"s", Callback::DataDeletion, "x.y");
        assert!(is_code(&a), "{a}");
        assert_eq!(a, confirmation_code(b"s", Callback::DataDeletion, "x.y"));
        assert_ne!(a, confirmation_code(b"s", Callback::Deauthorize, "x.y"));
        assert_ne!(a, confirmation_code(b"t", Callback::DataDeletion, "x.y"));
        assert!(!is_code("ABCDEF0123456789"));
        assert!(!is_code("abc"));
        assert!(!is_code("../../etc/passwd"));
    }
}
