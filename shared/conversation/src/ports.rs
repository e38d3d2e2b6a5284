//! The small ports the rules need from storage. The DynamoDB adapter
//! (`messenger-store`) implements them, and so does the in-memory store of
//! [`crate::testing`].

use std::fmt;
use std::future::Future;

use messenger_types::{EventKey, PageId, Psid, Timestamp};

use crate::ledger::{Claim, ClaimToken, Consistency, Opened, Step, TurnKey, Version};
use crate::otn::{NewToken, SpendRefused, StalePage, StoredToken, SweepPage, TokenRef};
use crate::thread::{PageChange, PageState, ThreadChange, ThreadKey, ThreadState};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// Throttled, unavailable, timed out: the same call may pass later.
    Transient,
    /// The claim on an event was lost to another worker (lease expired).
    LostClaim,
    /// A request this code built was refused, or an item is not what it wrote.
    Invalid,
}

/// A storage failure. `op` names the request (`UpdateItem(thread)`), `message`
/// says what went wrong for people, and `source` keeps the adapter's own error
/// (the AWS SDK's) whole.
#[derive(Debug, thiserror::Error)]
#[error("{op} failed: {message}")]
pub struct StoreError {
    pub op: &'static str,
    pub kind: StoreErrorKind,
    pub message: String,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl StoreError {
    pub fn invalid(op: &'static str, e: impl fmt::Display) -> Self {
        Self {
            op,
            kind: StoreErrorKind::Invalid,
            message: e.to_string(),
            source: None,
        }
    }
}

/// The event ledger: each event claimed before anything is done, each action
/// recorded as started and as done, the event completed with its outcome.
pub trait EventLedger: Send + Sync {
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
}

/// The ledger of events that name a person, kept on their thread: one read opens
/// the turn, one conditional write takes the event with what it changes, and each
/// later step is one write made only with the claim.
pub trait ThreadLedger: Send + Sync {
    /// Reads the thread and where the event stands on it, as fresh as `read` asks.
    fn open_turn(
        &self,
        turn: &TurnKey,
        now: Timestamp,
        read: Consistency,
    ) -> impl Future<Output = Result<Opened, StoreError>> + Send;

    /// Takes the event: writes `thread` (the state read, with the event's changes
    /// applied) and the entry as `step` says, only if the thread is still at
    /// `version`. `None` when it was written since: open the turn again.
    fn take_turn(
        &self,
        turn: &TurnKey,
        version: Version,
        thread: &ThreadState,
        step: Step<'_>,
        now: Timestamp,
    ) -> impl Future<Output = Result<Option<ClaimToken>, StoreError>> + Send;

    /// Erases everything kept about one person of a Page: the thread with its
    /// ledger and its archive, and their notification tokens (spent or not). It
    /// first leaves a mark keyed by a digest of the thread's key (never the
    /// person's id) that turns an event not newer than `at` into a duplicate, so a
    /// copy of an event from before the forget (an SQS redelivery, a redrive from
    /// the dead-letter queue) recreates nothing. Returns how many items were
    /// erased: 0 when nothing was kept (a repeated forget).
    fn forget_person(
        &self,
        thread: &ThreadKey,
        at: Timestamp,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send;

    /// Writes a later step of a turn this worker holds. A lost claim is an error,
    /// except for [`Step::Released`], which then changes nothing.
    fn step_turn(
        &self,
        turn: &TurnKey,
        token: &ClaimToken,
        step: Step<'_>,
        now: Timestamp,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// What the table knows of threads and Pages, and the tokens optins store.
pub trait ThreadStore: Send + Sync {
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

/// The processor's state: both ledgers and the threads. Implemented by every type
/// that implements all three.
pub trait Store: EventLedger + ThreadLedger + ThreadStore {}

impl<T: EventLedger + ThreadLedger + ThreadStore> Store for T {}

/// One-time notification tokens: the notify fan-out and the sweeper.
pub trait TokenStore: Send + Sync {
    /// A page of the ACTIVE tokens of a Page and topic (the sparse topic index),
    /// and where the next page starts. Topics match by [`crate::otn::topic_key`]
    /// (case and spacing aside); a token stored before topics were normalised is
    /// listed when its wording is exactly `topic`. A person with several tokens
    /// may be listed several times. The index is eventually consistent: a token
    /// listed here may have been spent since, which spending checks.
    fn active_tokens(
        &self,
        page: &PageId,
        topic: &str,
        after: Option<&str>,
        limit: i32,
    ) -> impl Future<Output = Result<(Vec<TokenRef>, Option<String>), StoreError>> + Send;

    /// The ACTIVE tokens one person of a Page holds for a topic (compared by
    /// [`crate::otn::topic_key`], whenever they were stored), oldest first, read
    /// consistently from the person's own items (a `send` with `otn_topic` spends
    /// the first that can still be spent).
    fn person_tokens(
        &self,
        page: &PageId,
        psid: &Psid,
        topic: &str,
    ) -> impl Future<Output = Result<Vec<TokenRef>, StoreError>> + Send;

    /// Every notification token one person of a Page holds, whatever its topic,
    /// kind or status, with the spend that holds it, read consistently from the
    /// person's own items (one request).
    fn tokens_held(
        &self,
        page: &PageId,
        psid: &Psid,
    ) -> impl Future<Output = Result<Vec<StoredToken>, StoreError>> + Send;

    /// Spends a token: ACTIVE and unexpired becomes USED, in one conditional write,
    /// so that under any concurrency one caller gets it. `spend_id` names this spend
    /// (a request token): a spend the store applied but whose answer was lost, which
    /// a retry of the same request then finds already USED, is recognised by it as
    /// this caller's own and returned as spent. The token is marked "sending" (see
    /// [`StoredToken::sending_until`]) until [`TokenStore::finish_spend`],
    /// [`TokenStore::unspend_token`] or [`TokenStore::retire_token`] records what
    /// came of the send.
    fn spend_token(
        &self,
        at: &TokenRef,
        spend_id: &str,
        now: Timestamp,
    ) -> impl Future<Output = Result<Result<StoredToken, SpendRefused>, StoreError>> + Send;

    /// Records that the send this spend paid for went out (or may have): the token
    /// stays USED and is no longer "sending". `false` when the spend is not (or no
    /// longer) this one's.
    fn finish_spend(
        &self,
        at: &TokenRef,
        spend_id: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Gives back one page of the tokens in a shard ([`crate::otn::sending_bucket`])
    /// whose spend has been "sending" past its lease at `now`: the spender crashed
    /// and no redelivery resolved it. Each goes back to ACTIVE (EXPIRED if its year
    /// ran out meanwhile) in a write conditional on the spend still being the same
    /// one. Meta carries at most one message per token, so a token given back after
    /// its send did go out can never reach the person a second time.
    fn give_back_stale_spends(
        &self,
        shard: u32,
        now: Timestamp,
        after: Option<&str>,
        limit: i32,
    ) -> impl Future<Output = Result<StalePage, StoreError>> + Send;

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
