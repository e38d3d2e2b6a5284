//! Conversation state in one DynamoDB table.
//!
//! | item | pk | sk |
//! |---|---|---|
//! | thread | `PAGE#<page>#USER#<psid>` (or `#REF#<user_ref>`) | `THREAD` |
//! | page | `PAGE#<page>` | `PAGE` |
//! | processed event | `EVENT#<sha256 of the event key>` | `EVENT` |
//! | OTN token (OTN issue) | `PAGE#<page>#USER#<psid>` | `OTN#<created>#<id>` |
//! | OTN token guard: one item per token | `PAGE#<page>#USER#<psid>` | `OTNTOKEN#<id>` |
//!
//! Every field that events move forward carries the timestamp of the event that set
//! it, and is written only by a conditional update that admits newer events: Meta
//! does not guarantee order after failures, and two deliveries racing each other
//! leave the newest state whatever the order they land in. No read-modify-write.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod dynamo;
pub mod otn;
pub mod schema;

use std::fmt;
use std::future::Future;

use messenger_types::{AppId, EventKey, PageId, Psid, Timestamp, UserRef};

pub use dynamo::DynamoStore;
pub use otn::{NewToken, SpendRefused, StoredToken, SweepPage, TokenKind, TokenRef, TokenStatus};

/// Whom a thread is with: a PSID, or the checkbox plugin's `user_ref` before the
/// person has written.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Person {
    Psid(Psid),
    UserRef(UserRef),
}

/// One conversation: a Page and a person.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ThreadKey {
    pub page: PageId,
    pub person: Person,
}

impl ThreadKey {
    pub fn psid(page: PageId, psid: Psid) -> Self {
        Self {
            page,
            person: Person::Psid(psid),
        }
    }

    pub(crate) fn pk(&self) -> String {
        match &self.person {
            Person::Psid(p) => format!("PAGE#{}#USER#{}", self.page, p),
            Person::UserRef(r) => format!("PAGE#{}#REF#{}", self.page, r),
        }
    }
}

/// What the table knows of a thread. A thread never seen has the default state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ThreadState {
    /// The newest user message, postback, reaction, optin or referral: the 24-hour
    /// window runs from here.
    pub last_user_interaction: Option<Timestamp>,
    /// The newest message the person wrote: HUMAN_AGENT's 7 days run from here
    /// (MESSENGER.md §5: "up to 7 days after the user's last message").
    pub last_user_message: Option<Timestamp>,
    pub control: Option<Control>,
    pub entry_point: Option<EntryPoint>,
    pub account_link: Option<AccountLink>,
    /// Set when Meta said the person cannot receive messages (551, 2018108, ...).
    pub unreachable: Option<Unreachable>,
}

impl ThreadState {
    /// Whether this app controls the thread. With no Handover Protocol events seen,
    /// the app that receives `messaging` events is the owner.
    pub fn controlled_by_us(&self) -> bool {
        self.control.as_ref().is_none_or(|c| c.ours)
    }
}

/// Thread control under the Handover Protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Control {
    pub ours: bool,
    /// The owning app, when known (pass/take events and our own passes name it).
    pub owner: Option<AppId>,
    pub since: Timestamp,
}

/// How the person arrived: an m.me ref, an ad, a plugin's data-ref.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryPoint {
    pub reference: Option<String>,
    pub source: Option<String>,
    pub at: Timestamp,
}

/// Whether the person linked an account on the business's site. The
/// `authorization_code` Meta sends with it is a short-lived credential for the
/// business's own linking flow and is not kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountLink {
    pub linked: bool,
    pub at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreachable {
    pub reason: String,
    pub at: Timestamp,
}

/// A change to a thread, applied only if `at` is newer than what the field holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ThreadChange {
    UserInteraction {
        at: Timestamp,
    },
    /// The person wrote a message (not an echo).
    UserMessage {
        at: Timestamp,
    },
    Control(Control),
    EntryPoint(EntryPoint),
    AccountLink(AccountLink),
    Unreachable(Unreachable),
    /// The person wrote again after being unreachable.
    Reachable {
        at: Timestamp,
    },
}

/// A change to a Page's own record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageChange {
    /// `policy_enforcement`: warning, block or unblock.
    PolicyEnforcement {
        action: String,
        reason: Option<String>,
        at: Timestamp,
    },
    /// `app_roles`, as the JSON Meta sent.
    AppRoles { roles: String, at: Timestamp },
}

/// What the table knows of a Page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageState {
    pub policy_action: Option<String>,
    pub policy_reason: Option<String>,
    pub app_roles: Option<String>,
}

/// Proof that this worker holds an event: progress and completion are written only
/// with it, so a worker whose lease ran out cannot overwrite another's work.
#[derive(Clone, PartialEq, Eq)]
pub struct ClaimToken(String);

impl fmt::Debug for ClaimToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClaimToken({})", self.0)
    }
}

/// The result of trying to take an event for processing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Ours to process. An earlier attempt that failed part-way carried out the
    /// first `done_actions` actions, and had started `started_actions`: an action
    /// started but not recorded as done may have reached the person (the attempt
    /// died during or right after the call), so it is not repeated either.
    Acquired {
        token: ClaimToken,
        done_actions: u32,
        started_actions: u32,
    },
    /// Processed before: acknowledge without doing anything.
    Duplicate { outcome: Option<String> },
    /// Another worker holds it right now: try again later.
    Busy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// Throttled, unavailable, timed out: the same call may pass later.
    Transient,
    /// The claim on an event was lost to another worker (lease expired).
    LostClaim,
    /// A request this code built was refused, or an item is not what it wrote.
    Invalid,
}

#[derive(Debug, thiserror::Error)]
#[error("DynamoDB {op} failed: {message}")]
pub struct StoreError {
    pub op: &'static str,
    pub kind: StoreErrorKind,
    pub message: String,
}

impl StoreError {
    pub(crate) fn invalid(op: &'static str, e: impl fmt::Display) -> Self {
        Self {
            op,
            kind: StoreErrorKind::Invalid,
            message: e.to_string(),
        }
    }
}

/// How long a claim holds before a redelivery may take the event over. Shorter than
/// the queue's visibility timeout, so SQS's redelivery after a crash finds it free.
pub const CLAIM_LEASE_MS: i64 = 90_000;
/// How long processed-event records are kept: Meta redelivers for about an hour.
pub const EVENT_RECORD_DAYS: i64 = 7;

/// The processor's state port.
pub trait Store: Send + Sync {
    /// Takes `key` for processing, unless it was processed or is being processed.
    fn claim_event(
        &self,
        key: &EventKey,
        now: Timestamp,
    ) -> impl Future<Output = Result<Claim, StoreError>> + Send;

    /// Records that action `n` (counting from 1) is about to make its call.
    fn start_action(
        &self,
        key: &EventKey,
        token: &ClaimToken,
        n: u32,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Takes back [`Store::start_action`] after a call that certainly did not
    /// reach Meta, so a retry makes it again.
    fn abandon_action(
        &self,
        key: &EventKey,
        token: &ClaimToken,
        n: u32,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Records that the first `done_actions` actions of the event were carried out.
    fn record_progress(
        &self,
        key: &EventKey,
        token: &ClaimToken,
        done_actions: u32,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Marks the event processed, with what came of it.
    fn complete_event(
        &self,
        key: &EventKey,
        token: &ClaimToken,
        outcome: &str,
        now: Timestamp,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Gives the event up after a transient failure, keeping its progress, so the
    /// redelivery can take it at once; records `reason` as the event's `last_error`.
    fn release_event(
        &self,
        key: &EventKey,
        token: &ClaimToken,
        reason: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    fn thread(
        &self,
        key: &ThreadKey,
    ) -> impl Future<Output = Result<ThreadState, StoreError>> + Send;

    /// Applies `change` if it is newer than the field it sets; returns whether it did.
    fn update_thread(
        &self,
        key: &ThreadKey,
        change: &ThreadChange,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Applies every change one event makes to a thread, each only if it is newer
    /// than the field it sets (as [`Store::update_thread`] one by one would).
    fn update_thread_all(
        &self,
        key: &ThreadKey,
        changes: &[ThreadChange],
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        async move {
            for change in changes {
                self.update_thread(key, change).await?;
            }
            Ok(())
        }
    }

    fn page(&self, page: &PageId) -> impl Future<Output = Result<PageState, StoreError>> + Send;

    /// Stores a token from an optin; storing the same optin again changes nothing.
    /// Returns whether it was new.
    fn save_token(
        &self,
        token: &NewToken,
        active: bool,
        now: Timestamp,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    fn update_page(
        &self,
        page: &PageId,
        change: &PageChange,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// One-time notification tokens: the notify fan-out and the sweeper.
pub trait TokenStore: Send + Sync {
    /// A page of the ACTIVE tokens of a Page and topic (the sparse topic index),
    /// and where the next page starts. The index is eventually consistent: a
    /// token listed here may have been spent since, which spending checks.
    fn active_tokens(
        &self,
        page: &PageId,
        topic: &str,
        after: Option<&str>,
        limit: i32,
    ) -> impl Future<Output = Result<(Vec<TokenRef>, Option<String>), StoreError>> + Send;

    /// Spends a token: ACTIVE and unexpired becomes USED, in one conditional write,
    /// so that under any concurrency one caller gets it. `spend_id` names this spend.
    fn spend_token(
        &self,
        at: &TokenRef,
        spend_id: &str,
        now: Timestamp,
    ) -> impl Future<Output = Result<Result<StoredToken, SpendRefused>, StoreError>> + Send;

    /// Undoes this spend after a send that certainly did not go out.
    fn unspend_token(
        &self,
        token: &StoredToken,
        spend_id: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Retires a token this spend holds, after Meta refused it for good.
    fn retire_token(
        &self,
        at: &TokenRef,
        spend_id: &str,
        reason: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Expires one page of the ACTIVE tokens in an expiry bucket whose time is up.
    fn sweep_expired(
        &self,
        bucket_day: &str,
        now: Timestamp,
        after: Option<&str>,
        limit: i32,
    ) -> impl Future<Output = Result<SweepPage, StoreError>> + Send;

    /// The first day the sweeper has not finished.
    fn sweep_cursor(&self) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;

    fn set_sweep_cursor(&self, day: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
}
