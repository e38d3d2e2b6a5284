//! Quarantine on S3: bodies with a valid signature that are not Page deliveries are
//! kept under `quarantine/<date>/<sha256 of the body>`, with the reason as object
//! metadata, where an operator can list them (`aws s3 ls s3://<bucket>/quarantine/`).

use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_types::date_time::{DateTime, Format};
use sha2::{Digest, Sha256};

use crate::accept::{Quarantine, QuarantineError};

pub const PREFIX: &str = "quarantine/";

#[derive(Debug, Clone)]
pub struct S3Quarantine {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3Quarantine {
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
        }
    }
}

/// The object key for a body received now. The digest makes Meta's redeliveries of
/// one body land on one object.
pub fn key_for(body: &[u8], now: DateTime) -> String {
    let day = now
        .fmt(Format::DateTime)
        .ok()
        .and_then(|s| s.get(..10).map(str::to_owned))
        .unwrap_or_else(|| "undated".to_owned());
    format!("{PREFIX}{day}/{}.body", hex::encode(Sha256::digest(body)))
}

impl Quarantine for S3Quarantine {
    async fn keep(&self, body: &[u8], reason: &str) -> Result<String, QuarantineError> {
        let key = key_for(body, DateTime::from(std::time::SystemTime::now()));
        // Object metadata travels as an HTTP header: printable ASCII only.
        let reason: String = reason
            .chars()
            .map(|c| {
                if c.is_ascii_graphic() || c == ' ' {
                    c
                } else {
                    '?'
                }
            })
            .take(1024)
            .collect();
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .content_type("application/octet-stream")
            .metadata("reason", reason)
            .body(ByteStream::from(body.to_vec()))
            .send()
            .await
            .map_err(|e| QuarantineError {
                message: DisplayErrorContext(&e).to_string(),
                source: Some(Box::new(e)),
            })?;
        Ok(format!("s3://{}/{key}", self.bucket))
    }
}
