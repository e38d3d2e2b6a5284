//! Graph API failures, classified by what the caller should do about them
//! (MESSENGER.md §7).

use std::fmt;

/// What a Graph failure means for the caller. Only [`ErrorClass::RateLimited`] and
/// [`ErrorClass::Transient`] are worth retrying; every other class fails the same
/// way again until something outside the request changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// 10 / 2018278: a standard send outside the 24-hour window.
    OutsideWindow,
    /// 10 / 2018108, 551 (any subcode), 200 / 1545041: the person can't receive
    /// messages from the Page now. Record it on the thread.
    Unreachable,
    /// 100 / 2018001: wrong PSID, or the PSID of another Page.
    NoMatchingUser,
    /// 100 on a request that carried a tag Meta retired on 27 April 2026.
    RetiredTag,
    /// Any other 100: a parameter Meta does not accept.
    InvalidRequest,
    /// 190 (and 102): the Page token is invalid or expired. Alert; nothing works
    /// for this Page until the token is replaced.
    TokenInvalid,
    /// 200 / 2018028 and the rest of 200-299, and 10 without a subcode we know:
    /// the app lacks a permission. Alert.
    PermissionMissing,
    /// 10 / 2018300: another app controls the thread (Handover Protocol); this app
    /// is on standby and must not send.
    ThreadOwnedByOther,
    /// 10 / 1893063: Meta restricted the Page for a while. Stop sending for the
    /// Page (it is marked `INVALID`, its events parked) and alert.
    PageRestricted,
    /// 10 / 1893015: the person stopped the notifications of that topic: the
    /// notification token is retired.
    NotificationsStopped,
    /// 4, 17, 32, 341, 613 and the 80000-80014 business-use-case limits.
    RateLimited,
    /// 1, 2, 1200, HTTP 5xx, timeouts and connection failures.
    Transient,
    /// Anything else: an unknown code, or a 4xx without a Graph error body.
    Permanent,
}

impl ErrorClass {
    /// Classifies a Graph error body. A code Meta documents decides on its own;
    /// only an unknown code falls back on the HTTP status, so that a 5xx Meta did
    /// not explain is retried and an unexplained 4xx is not.
    ///
    /// `request_had_retired_tag` separates a retired tag from the other causes of
    /// error 100, which Meta does not tell apart by subcode.
    pub fn classify(
        http_status: Option<u16>,
        code: i64,
        subcode: Option<i64>,
        request_had_retired_tag: bool,
    ) -> Self {
        match (code, subcode) {
            (10, Some(2018278)) => Self::OutsideWindow,
            (10, Some(2018108)) => Self::Unreachable,
            (10, Some(2018300)) => Self::ThreadOwnedByOther,
            (10, Some(1893063)) => Self::PageRestricted,
            (10, Some(1893015)) => Self::NotificationsStopped,
            // Code 10 is Graph's "permission denied"; the subcodes above are the
            // Messenger-specific refinements.
            (10, _) => Self::PermissionMissing,
            (551, _) | (200, Some(1545041)) => Self::Unreachable,
            (200..=299, _) => Self::PermissionMissing,
            (100, Some(2018001)) => Self::NoMatchingUser,
            (100, _) if request_had_retired_tag => Self::RetiredTag,
            (100, _) => Self::InvalidRequest,
            (190 | 102, _) => Self::TokenInvalid,
            (4 | 17 | 32 | 341 | 613 | 80000..=80014, _) => Self::RateLimited,
            (1 | 2 | 1200, _) => Self::Transient,
            _ => http_status.map_or(Self::Permanent, Self::from_http_status),
        }
    }

    /// The class of a failed answer that carries no readable Graph error.
    pub fn from_http_status(status: u16) -> Self {
        match status {
            429 => Self::RateLimited,
            408 | 500..=599 => Self::Transient,
            _ => Self::Permanent,
        }
    }

    /// True only for [`ErrorClass::RateLimited`] and [`ErrorClass::Transient`].
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::RateLimited | Self::Transient)
    }

    /// A stable name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OutsideWindow => "outside_window",
            Self::Unreachable => "unreachable",
            Self::NoMatchingUser => "no_matching_user",
            Self::RetiredTag => "retired_tag",
            Self::InvalidRequest => "invalid_request",
            Self::TokenInvalid => "token_invalid",
            Self::PermissionMissing => "permission_missing",
            Self::ThreadOwnedByOther => "thread_owned_by_other",
            Self::PageRestricted => "page_restricted",
            Self::NotificationsStopped => "notifications_stopped",
            Self::RateLimited => "rate_limited",
            Self::Transient => "transient",
            Self::Permanent => "permanent",
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed Graph call. `message` is Meta's message, or a description of the
/// transport failure; it never holds the Page token, the app secret or the
/// `appsecret_proof` (URLs are stripped from transport errors, and any echo of
/// the credentials is redacted).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "Graph API error ({class}): {message}{}",
    details(*.http_status, *.code, *.subcode, .fbtrace_id.as_deref())
)]
pub struct GraphError {
    pub class: ErrorClass,
    /// None when no answer arrived (timeout, connection failure) or the request
    /// was never sent.
    pub http_status: Option<u16>,
    pub code: Option<i64>,
    pub subcode: Option<i64>,
    pub message: String,
    /// Meta's request id, for support tickets.
    pub fbtrace_id: Option<String>,
    /// The request went out but no answer says how it ended (a timeout, a
    /// connection lost after sending, a gateway's 504 without Meta's error body):
    /// Meta may have acted on it. False when an answer says the call failed or
    /// the request never left.
    pub outcome_unknown: bool,
}

impl GraphError {
    /// An error without HTTP status or Graph code: for failures before or around
    /// the request, and for fakes of the Graph API in tests.
    pub fn new(class: ErrorClass, message: impl Into<String>) -> Self {
        Self {
            class,
            http_status: None,
            code: None,
            subcode: None,
            message: message.into(),
            fbtrace_id: None,
            outcome_unknown: false,
        }
    }

    /// True only for [`ErrorClass::RateLimited`] and [`ErrorClass::Transient`].
    pub fn is_retryable(&self) -> bool {
        self.class.is_retryable()
    }
}

/// ` [HTTP 400, code 10/2018278, fbtrace_id AbCdEf]`, or nothing when none is known.
fn details(
    http_status: Option<u16>,
    code: Option<i64>,
    subcode: Option<i64>,
    fbtrace_id: Option<&str>,
) -> String {
    let mut details = Vec::new();
    if let Some(status) = http_status {
        details.push(format!("HTTP {status}"));
    }
    match (code, subcode) {
        (Some(code), Some(subcode)) => details.push(format!("code {code}/{subcode}")),
        (Some(code), None) => details.push(format!("code {code}")),
        _ => {}
    }
    if let Some(trace) = fbtrace_id {
        details.push(format!("fbtrace_id {trace}"));
    }
    if details.is_empty() {
        String::new()
    } else {
        format!(" [{}]", details.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messenger_error_table_is_classified() {
        let cases = [
            (400, 10, Some(2018278), ErrorClass::OutsideWindow),
            (400, 10, Some(2018108), ErrorClass::Unreachable),
            (400, 551, None, ErrorClass::Unreachable),
            (400, 551, Some(1545041), ErrorClass::Unreachable),
            (400, 200, Some(1545041), ErrorClass::Unreachable),
            (400, 100, Some(2018001), ErrorClass::NoMatchingUser),
            (400, 100, None, ErrorClass::InvalidRequest),
            (401, 190, Some(460), ErrorClass::TokenInvalid),
            (401, 190, Some(463), ErrorClass::TokenInvalid),
            (403, 200, Some(2018028), ErrorClass::PermissionMissing),
            (403, 230, None, ErrorClass::PermissionMissing),
            (403, 10, None, ErrorClass::PermissionMissing),
            (400, 10, Some(2018300), ErrorClass::ThreadOwnedByOther),
            (400, 10, Some(1893063), ErrorClass::PageRestricted),
            (400, 10, Some(1893015), ErrorClass::NotificationsStopped),
            (400, 4, None, ErrorClass::RateLimited),
            (400, 613, Some(2534040), ErrorClass::RateLimited),
            (400, 32, None, ErrorClass::RateLimited),
            (400, 80006, None, ErrorClass::RateLimited),
            (500, 1, None, ErrorClass::Transient),
            (500, 2, None, ErrorClass::Transient),
            (400, 1200, None, ErrorClass::Transient),
            (400, 368, Some(1390008), ErrorClass::Permanent),
            (503, 99999, None, ErrorClass::Transient),
        ];
        for (status, code, subcode, class) in cases {
            assert_eq!(
                ErrorClass::classify(Some(status), code, subcode, false),
                class,
                "{status} {code}/{subcode:?}"
            );
        }
    }

    #[test]
    fn error_100_is_a_retired_tag_only_when_the_request_had_one() {
        assert_eq!(
            ErrorClass::classify(Some(400), 100, None, true),
            ErrorClass::RetiredTag
        );
        assert_eq!(
            ErrorClass::classify(Some(400), 100, None, false),
            ErrorClass::InvalidRequest
        );
        // A wrong PSID stays a wrong PSID even on a tagged request.
        assert_eq!(
            ErrorClass::classify(Some(400), 100, Some(2018001), true),
            ErrorClass::NoMatchingUser
        );
    }

    #[test]
    fn answers_without_a_graph_error_are_classified_by_status() {
        assert_eq!(ErrorClass::from_http_status(500), ErrorClass::Transient);
        assert_eq!(ErrorClass::from_http_status(502), ErrorClass::Transient);
        assert_eq!(ErrorClass::from_http_status(429), ErrorClass::RateLimited);
        assert_eq!(ErrorClass::from_http_status(404), ErrorClass::Permanent);
        assert_eq!(ErrorClass::from_http_status(400), ErrorClass::Permanent);
    }

    #[test]
    fn only_rate_limits_and_transient_failures_are_retryable() {
        let all = [
            ErrorClass::OutsideWindow,
            ErrorClass::Unreachable,
            ErrorClass::NoMatchingUser,
            ErrorClass::RetiredTag,
            ErrorClass::InvalidRequest,
            ErrorClass::TokenInvalid,
            ErrorClass::PermissionMissing,
            ErrorClass::ThreadOwnedByOther,
            ErrorClass::PageRestricted,
            ErrorClass::NotificationsStopped,
            ErrorClass::RateLimited,
            ErrorClass::Transient,
            ErrorClass::Permanent,
        ];
        let retryable: Vec<_> = all.into_iter().filter(|c| c.is_retryable()).collect();
        assert_eq!(retryable, [ErrorClass::RateLimited, ErrorClass::Transient]);
    }

    #[test]
    fn display_names_class_status_code_and_trace() {
        let error = GraphError {
            class: ErrorClass::OutsideWindow,
            http_status: Some(400),
            code: Some(10),
            subcode: Some(2018278),
            message: "(#10) This message is sent outside of allowed window.".to_owned(),
            fbtrace_id: Some("AbCdEf".to_owned()),
            outcome_unknown: false,
        };
        assert_eq!(
            error.to_string(),
            "Graph API error (outside_window): (#10) This message is sent outside of allowed \
             window. [HTTP 400, code 10/2018278, fbtrace_id AbCdEf]"
        );
        let bare = GraphError::new(ErrorClass::Transient, "request timed out");
        assert_eq!(
            bare.to_string(),
            "Graph API error (transient): request timed out"
        );
        assert!(bare.is_retryable());
    }
}
