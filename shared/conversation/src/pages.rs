//! A Page's credentials and status, and the events kept ("parked") while the Page
//! has no usable token.
//!
//! A Page is `ACTIVE` (a token that works, or no record yet and a seed token from
//! the secret), `INVALID` (Graph refused its token: 190, or a permission error) or
//! `MISSING` (events arrive and there is no token). An event of a Page that is not
//! `ACTIVE` is parked: kept with its queue message, never acknowledged as done, and
//! put back on the queue, in order, when a token is stored.
//!
//! The store keeps a token sealed (encrypted with the stack's KMS key); it never
//! sees it in clear, and neither does anything that only reads status.

use std::fmt;
use std::future::Future;

use messenger_types::{PageId, Timestamp};

use crate::ports::StoreError;
use crate::thread::ThreadKey;

/// Where a Page's token stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PageStatus {
    Active,
    Invalid,
    Missing,
}

impl PageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Invalid => "INVALID",
            Self::Missing => "MISSING",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ACTIVE" => Some(Self::Active),
            "INVALID" => Some(Self::Invalid),
            "MISSING" => Some(Self::Missing),
            _ => None,
        }
    }
}

impl fmt::Display for PageStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the table holds for a Page's credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct PageRecord {
    pub status: PageStatus,
    /// Why the Page is not `ACTIVE` (Graph's error, `deauthorized`, `disconnected`).
    pub reason: Option<String>,
    /// When the status was set.
    pub since: Timestamp,
    /// The token, sealed with the stack's key.
    pub sealed_token: Option<Vec<u8>>,
    /// When the token was stored: a failure seen with an older token never marks a
    /// newer one `INVALID`.
    pub token_version: Option<i64>,
    /// When the hourly Page check last looked at the Page.
    pub checked_at: Option<Timestamp>,
    /// About when the Page's last event arrived (written at most every few minutes
    /// per processor instance, so it can be that much behind).
    pub last_event_at: Option<Timestamp>,
}

impl PageRecord {
    /// A record with `status` since `now`, nothing else known.
    pub fn new(status: PageStatus, reason: Option<String>, now: Timestamp) -> Self {
        Self {
            status,
            reason,
            since: now,
            sealed_token: None,
            token_version: None,
            checked_at: None,
            last_event_at: None,
        }
    }
}

impl fmt::Debug for PageRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PageRecord")
            .field("status", &self.status)
            .field("reason", &self.reason)
            .field("since", &self.since)
            .field(
                "sealed_token",
                &self.sealed_token.as_ref().map(|_| "[sealed]"),
            )
            .field("token_version", &self.token_version)
            .field("checked_at", &self.checked_at)
            .field("last_event_at", &self.last_event_at)
            .finish()
    }
}

/// A queue message kept while its Page is not `ACTIVE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParkedMessage {
    /// Orders a Page's parked messages: `<parked at, 15 digits>#<queue message id>`.
    pub key: String,
    /// The message's FIFO group (its thread), kept for the replay.
    pub group: String,
    /// The queue message's body, as it arrived.
    pub body: String,
}

impl ParkedMessage {
    pub fn key_for(at: Timestamp, message_id: &str) -> String {
        format!("{:015}#{message_id}", at.as_millis().max(0))
    }
}

/// What became of a park.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parked {
    /// Kept; the Page's status is not `ACTIVE`.
    Kept,
    /// Not kept: a token was stored meanwhile and the Page is `ACTIVE` now.
    PageActive,
}

/// Page credentials, status and parked messages.
pub trait PageRegistry: Send + Sync {
    /// The Page's record (a consistent read), `None` when it has none.
    fn page_record(
        &self,
        page: &PageId,
    ) -> impl Future<Output = Result<Option<PageRecord>, StoreError>> + Send;

    /// Every Page that has a record, in Page id order.
    fn page_records(
        &self,
    ) -> impl Future<Output = Result<Vec<(PageId, PageRecord)>, StoreError>> + Send;

    /// Stores a sealed token: the Page is `ACTIVE` from `now`, its version `now`.
    fn store_page_token(
        &self,
        page: &PageId,
        sealed: Vec<u8>,
        now: Timestamp,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Marks the Page `INVALID` because Graph refused the token of version
    /// `token_version` (`None`: a seed token from the secret). Returns `false`
    /// (nothing changed) when another token has been stored since.
    fn mark_page_invalid(
        &self,
        page: &PageId,
        token_version: Option<i64>,
        reason: &str,
        now: Timestamp,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Forgets the Page's token: `MISSING` with `reason` (`disconnected`,
    /// `deauthorized`).
    fn forget_page_token(
        &self,
        page: &PageId,
        reason: &str,
        now: Timestamp,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Notes that the Page check looked at the Page at `now`. A Page without a
    /// record is left without one.
    fn page_checked(
        &self,
        page: &PageId,
        now: Timestamp,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Notes that an event of the Page arrived at `at` (kept only when later than
    /// what is noted). A Page without a record is left without one.
    fn page_seen(
        &self,
        page: &PageId,
        at: Timestamp,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Keeps `message` while the Page is not `ACTIVE`, in one transaction with the
    /// Page's status (a Page without a record becomes `MISSING`): a token stored
    /// meanwhile makes it [`Parked::PageActive`], so no message is parked after the
    /// replay that should have taken it.
    /// `thread` is the person the message is about, so that `forget` erases it.
    fn park(
        &self,
        page: &PageId,
        message: &ParkedMessage,
        thread: Option<&ThreadKey>,
        now: Timestamp,
    ) -> impl Future<Output = Result<Parked, StoreError>> + Send;

    /// Up to `limit` of the Page's parked messages after `after`, oldest first.
    fn parked(
        &self,
        page: &PageId,
        after: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<ParkedMessage>, StoreError>> + Send;

    /// Deletes a parked message (replayed or erased).
    fn unpark(
        &self,
        page: &PageId,
        key: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}
