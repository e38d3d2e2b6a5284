//! DynamoDB's errors as the ports' [`StoreError`]: which failures may pass on a
//! retry, with the SDK's error kept whole as the source.

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::{StoreError, StoreErrorKind};

pub(crate) fn from_sdk<E>(op: &'static str, e: SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let server_error = e
        .raw_response()
        .is_some_and(|r| r.status().is_server_error());
    let kind = match &e {
        SdkError::ServiceError(s) => match s.err().code() {
            Some(
                "ProvisionedThroughputExceededException"
                | "ThrottlingException"
                | "RequestLimitExceeded"
                | "InternalServerError"
                | "ServiceUnavailable"
                | "TransactionConflictException",
            ) => StoreErrorKind::Transient,
            _ if server_error => StoreErrorKind::Transient,
            _ => StoreErrorKind::Invalid,
        },
        // Timeouts, connection failures, unreadable responses.
        _ => StoreErrorKind::Transient,
    };
    StoreError {
        op,
        kind,
        message: DisplayErrorContext(&e).to_string(),
        source: Some(Box::new(e)),
    }
}
