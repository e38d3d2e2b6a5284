//! Fault injection for the reliability tests: deterministic pseudo-randomness,
//! wrappers around the ports that refuse or throttle a share of the calls, a fake
//! Graph API that fails a share of the sends, and a driver that feeds messages to a
//! processor the way Lambda's SQS trigger would, redelivering what it hands back.
//!
//! Every fault is decided by a hash of what the call is about (the event, the
//! thread, how many times it was tried), never by the order calls happen to arrive
//! in: a run with concurrent invocations injects the same faults every time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use aws_lambda_events::sqs::SqsBatchResponse;
use event_queue::{EventQueue, FailedEntry, OutgoingMessage, QueueError};
use messenger_store::{
    Claim, ClaimToken, Consistency, EventLedger, NewToken, Opened, PageChange, PageRegistry,
    PageState, SpendRefused, Step, Store, StoreError, StoreErrorKind, StoredToken, SweepPage,
    ThreadChange, ThreadKey, ThreadLedger, ThreadState, ThreadStore, TokenRef, TokenStore, TurnKey,
    Version,
};
use messenger_types::{EventKey, PageId, Timestamp};
use serde_json::json;
use wiremock::{Request, Respond, ResponseTemplate};

use crate::rig::failed_ids;
use crate::sqs_event;

/// xorshift64: a tiny seeded generator, enough to shuffle deliveries reproducibly.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next_u64() % u64::try_from(n.max(1)).unwrap()).unwrap()
    }

    /// Fisher-Yates.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

/// FNV-1a over the parts (with a separator), stable across Rust versions.
pub fn fnv(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.bytes().chain([0xff]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// Whether a call about `parts` falls in the `percent` share that fails.
pub fn hit(percent: u64, parts: &[&str]) -> bool {
    fnv(parts) % 100 < percent
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Counts the attempts at each subject, to make each attempt's fault its own draw.
#[derive(Debug, Default)]
struct Attempts(Mutex<HashMap<String, u32>>);

impl Attempts {
    /// The number of this attempt at `subject`, from 0.
    fn next(&self, subject: &str) -> u32 {
        let mut map = lock(&self.0);
        let n = map.entry(subject.to_owned()).or_default();
        let this = *n;
        *n += 1;
        this
    }
}

/// An events queue that refuses a share of the entries of every batch, as SQS does
/// under internal errors (retryable, not the sender's fault), and sends the rest to
/// the real queue behind it.
///
/// Each event (by its deduplication id) is refused on its first `k` attempts: `k` is
/// 0 for nine events in ten, 1 or 2 for most of the rest, and 5 for one in a hundred,
/// longer than the webhook's three rounds.
#[derive(Debug)]
pub struct RefusingQueue<Q> {
    inner: Q,
    seed: String,
    attempts: Attempts,
    refused: AtomicUsize,
}

impl<Q> RefusingQueue<Q> {
    pub fn new(inner: Q, seed: &str) -> Self {
        Self {
            inner,
            seed: seed.to_owned(),
            attempts: Attempts::default(),
            refused: AtomicUsize::new(0),
        }
    }

    /// How many times the event with this deduplication id is refused before SQS
    /// takes it.
    pub fn refusals_of(&self, dedup_id: &str) -> u32 {
        match fnv(&[&self.seed, dedup_id]) % 100 {
            0 => 5,
            1..=2 => 2,
            3..=9 => 1,
            _ => 0,
        }
    }

    /// How many times the event with this deduplication id was offered so far.
    pub fn attempts_of(&self, dedup_id: &str) -> u32 {
        lock(&self.attempts.0).get(dedup_id).copied().unwrap_or(0)
    }

    /// Entries refused so far.
    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::Relaxed)
    }
}

impl<Q: EventQueue + Sync> EventQueue for RefusingQueue<Q> {
    async fn send_batch(&self, batch: &[OutgoingMessage]) -> Result<Vec<FailedEntry>, QueueError> {
        let mut passed = Vec::new();
        let mut indexes = Vec::new();
        let mut failed = Vec::new();
        for (i, m) in batch.iter().enumerate() {
            if self.attempts.next(&m.dedup_id) < self.refusals_of(&m.dedup_id) {
                failed.push(FailedEntry {
                    index: i,
                    code: "InternalError".to_owned(),
                    sender_fault: false,
                });
            } else {
                passed.push(m.clone());
                indexes.push(i);
            }
        }
        self.refused.fetch_add(failed.len(), Ordering::Relaxed);
        if !passed.is_empty() {
            for f in self.inner.send_batch(&passed).await? {
                failed.push(FailedEntry {
                    index: indexes[f.index],
                    ..f
                });
            }
        }
        Ok(failed)
    }
}

/// A store that answers a share of its calls with DynamoDB's throttling error, as
/// the SDK reports it once its own retries are spent; the call does nothing. Each
/// attempt at a call about one subject (an event, a thread) is its own draw.
#[derive(Debug)]
pub struct ThrottlingStore<S> {
    pub inner: S,
    seed: String,
    percent: u64,
    attempts: Attempts,
    injected: Mutex<Vec<(&'static str, String)>>,
}

impl<S> ThrottlingStore<S> {
    pub fn new(inner: S, seed: &str, percent: u64) -> Self {
        Self {
            inner,
            seed: seed.to_owned(),
            percent,
            attempts: Attempts::default(),
            injected: Mutex::new(Vec::new()),
        }
    }

    /// `(operation, subject)` of every call throttled so far.
    pub fn injected(&self) -> Vec<(&'static str, String)> {
        lock(&self.injected).clone()
    }

    /// Forgets the calls throttled so far (between delivery rounds).
    pub fn clear_injected(&self) {
        lock(&self.injected).clear();
    }

    fn check(&self, op: &'static str, subject: &str) -> Result<(), StoreError> {
        let n = self.attempts.next(&format!("{op}|{subject}")).to_string();
        if hit(self.percent, &[&self.seed, op, subject, &n]) {
            lock(&self.injected).push((op, subject.to_owned()));
            return Err(StoreError {
                op,
                kind: StoreErrorKind::Transient,
                message: "ProvisionedThroughputExceededException: injected throttling".to_owned(),
                source: None,
            });
        }
        Ok(())
    }
}

fn thread_subject(key: &ThreadKey) -> String {
    format!("{}|{:?}", key.page, key.person)
}

impl<S: Store> EventLedger for ThrottlingStore<S> {
    async fn claim_event(&self, key: &EventKey, now: Timestamp) -> Result<Claim, StoreError> {
        self.check("claim_event", key.as_str())?;
        self.inner.claim_event(key, now).await
    }

    async fn start_action(
        &self,
        key: &EventKey,
        token: &ClaimToken,
        n: u32,
    ) -> Result<(), StoreError> {
        self.check("start_action", key.as_str())?;
        self.inner.start_action(key, token, n).await
    }

    async fn abandon_action(
        &self,
        key: &EventKey,
        token: &ClaimToken,
        n: u32,
    ) -> Result<(), StoreError> {
        self.check("abandon_action", key.as_str())?;
        self.inner.abandon_action(key, token, n).await
    }

    async fn record_progress(
        &self,
        key: &EventKey,
        token: &ClaimToken,
        done_actions: u32,
    ) -> Result<(), StoreError> {
        self.check("record_progress", key.as_str())?;
        self.inner.record_progress(key, token, done_actions).await
    }

    async fn complete_event(
        &self,
        key: &EventKey,
        token: &ClaimToken,
        outcome: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.check("complete_event", key.as_str())?;
        self.inner.complete_event(key, token, outcome, now).await
    }

    async fn release_event(
        &self,
        key: &EventKey,
        token: &ClaimToken,
        reason: &str,
    ) -> Result<(), StoreError> {
        self.check("release_event", key.as_str())?;
        self.inner.release_event(key, token, reason).await
    }
}

impl<S: Store> ThreadLedger for ThrottlingStore<S> {
    async fn open_turn(
        &self,
        turn: &TurnKey,
        now: Timestamp,
        read: Consistency,
    ) -> Result<Opened, StoreError> {
        self.check("open_turn", turn.event.as_str())?;
        self.inner.open_turn(turn, now, read).await
    }

    async fn take_turn(
        &self,
        turn: &TurnKey,
        version: Version,
        thread: &ThreadState,
        step: Step<'_>,
        now: Timestamp,
    ) -> Result<Option<ClaimToken>, StoreError> {
        self.check("take_turn", turn.event.as_str())?;
        self.inner.take_turn(turn, version, thread, step, now).await
    }

    async fn forget_person(&self, thread: &ThreadKey, at: Timestamp) -> Result<usize, StoreError> {
        self.check("forget_person", "forget")?;
        self.inner.forget_person(thread, at).await
    }

    async fn step_turn(
        &self,
        turn: &TurnKey,
        token: &ClaimToken,
        step: Step<'_>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.check("step_turn", turn.event.as_str())?;
        self.inner.step_turn(turn, token, step, now).await
    }
}

impl<S: Store> ThreadStore for ThrottlingStore<S> {
    async fn thread(&self, key: &ThreadKey) -> Result<ThreadState, StoreError> {
        self.check("thread", &thread_subject(key))?;
        self.inner.thread(key).await
    }

    async fn update_thread(
        &self,
        key: &ThreadKey,
        change: &ThreadChange,
    ) -> Result<bool, StoreError> {
        self.check("update_thread", &thread_subject(key))?;
        self.inner.update_thread(key, change).await
    }

    async fn page(&self, page: &PageId) -> Result<PageState, StoreError> {
        self.check("page", page.as_str())?;
        self.inner.page(page).await
    }

    async fn save_token(
        &self,
        token: &NewToken,
        active: bool,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.check("save_token", &token.token)?;
        self.inner.save_token(token, active, now).await
    }

    async fn update_page(&self, page: &PageId, change: &PageChange) -> Result<bool, StoreError> {
        self.check("update_page", page.as_str())?;
        self.inner.update_page(page, change).await
    }
}

/// Page records and parked messages pass through untouched.
impl<S: PageRegistry> PageRegistry for ThrottlingStore<S> {
    async fn page_record(
        &self,
        page: &PageId,
    ) -> Result<Option<messenger_store::PageRecord>, StoreError> {
        self.inner.page_record(page).await
    }

    async fn page_records(&self) -> Result<Vec<(PageId, messenger_store::PageRecord)>, StoreError> {
        self.inner.page_records().await
    }

    async fn store_page_token(
        &self,
        page: &PageId,
        sealed: Vec<u8>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.inner.store_page_token(page, sealed, now).await
    }

    async fn mark_page_invalid(
        &self,
        page: &PageId,
        token_version: Option<i64>,
        reason: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.inner
            .mark_page_invalid(page, token_version, reason, now)
            .await
    }

    async fn forget_page_token(
        &self,
        page: &PageId,
        reason: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.inner.forget_page_token(page, reason, now).await
    }

    async fn page_checked(&self, page: &PageId, now: Timestamp) -> Result<(), StoreError> {
        self.inner.page_checked(page, now).await
    }

    async fn page_seen(&self, page: &PageId, at: Timestamp) -> Result<(), StoreError> {
        self.inner.page_seen(page, at).await
    }

    async fn park(
        &self,
        page: &PageId,
        message: &messenger_store::ParkedMessage,
        thread: Option<&ThreadKey>,
        now: Timestamp,
    ) -> Result<messenger_store::Parked, StoreError> {
        self.inner.park(page, message, thread, now).await
    }

    async fn parked(
        &self,
        page: &PageId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<messenger_store::ParkedMessage>, StoreError> {
        self.inner.parked(page, after, limit).await
    }

    async fn unpark(&self, page: &PageId, key: &str) -> Result<(), StoreError> {
        self.inner.unpark(page, key).await
    }
}

impl<S: TokenStore> TokenStore for ThrottlingStore<S> {
    async fn active_tokens(
        &self,
        page: &PageId,
        topic: &str,
        after: Option<&str>,
        limit: i32,
    ) -> Result<(Vec<TokenRef>, Option<String>), StoreError> {
        self.check("active_tokens", topic)?;
        self.inner.active_tokens(page, topic, after, limit).await
    }

    async fn person_tokens(
        &self,
        page: &PageId,
        psid: &messenger_types::Psid,
        topic: &str,
    ) -> Result<Vec<TokenRef>, StoreError> {
        self.check("person_tokens", topic)?;
        self.inner.person_tokens(page, psid, topic).await
    }

    async fn tokens_held(
        &self,
        page: &PageId,
        psid: &messenger_types::Psid,
    ) -> Result<Vec<StoredToken>, StoreError> {
        self.check("tokens_held", psid.as_str())?;
        self.inner.tokens_held(page, psid).await
    }

    async fn spend_token(
        &self,
        at: &TokenRef,
        spend_id: &str,
        now: Timestamp,
    ) -> Result<Result<StoredToken, SpendRefused>, StoreError> {
        self.check("spend_token", spend_id)?;
        self.inner.spend_token(at, spend_id, now).await
    }

    async fn finish_spend(&self, at: &TokenRef, spend_id: &str) -> Result<bool, StoreError> {
        self.check("finish_spend", spend_id)?;
        self.inner.finish_spend(at, spend_id).await
    }

    async fn give_back_stale_spends(
        &self,
        shard: u32,
        now: Timestamp,
        after: Option<&str>,
        limit: i32,
    ) -> Result<messenger_store::StalePage, StoreError> {
        self.check("give_back_stale_spends", &shard.to_string())?;
        self.inner
            .give_back_stale_spends(shard, now, after, limit)
            .await
    }

    async fn unspend_token(&self, token: &StoredToken, spend_id: &str) -> Result<bool, StoreError> {
        self.check("unspend_token", spend_id)?;
        self.inner.unspend_token(token, spend_id).await
    }

    async fn retire_token(
        &self,
        at: &TokenRef,
        spend_id: &str,
        reason: &str,
    ) -> Result<bool, StoreError> {
        self.check("retire_token", spend_id)?;
        self.inner.retire_token(at, spend_id, reason).await
    }

    async fn sweep_expired(
        &self,
        bucket_day: &str,
        now: Timestamp,
        after: Option<&str>,
        limit: i32,
    ) -> Result<SweepPage, StoreError> {
        self.check("sweep_expired", bucket_day)?;
        self.inner
            .sweep_expired(bucket_day, now, after, limit)
            .await
    }

    async fn sweep_cursor(&self) -> Result<Option<String>, StoreError> {
        self.check("sweep_cursor", "cursor")?;
        self.inner.sweep_cursor().await
    }

    async fn set_sweep_cursor(&self, day: &str) -> Result<(), StoreError> {
        self.check("set_sweep_cursor", day)?;
        self.inner.set_sweep_cursor(day).await
    }
}

/// What the flaky Graph API answers one send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphAnswer {
    Ok,
    /// HTTP 500 with Meta's error body, code 2 (temporary).
    ServerError,
    /// HTTP 400, code 613 / 2534040 (rate limited).
    RateLimited,
    /// HTTP 400, code 551 / 1545041 (the person isn't available).
    Unavailable,
}

/// The sends the flaky Graph API saw for one recipient, with its answers.
pub type SendLog = BTreeMap<String, Vec<GraphAnswer>>;

/// A fake Send API that answers each recipient from a plan: recipients in
/// `unavailable` always get 551; about one in ten of the others first get one or
/// two transient errors (5xx or 613), then success.
#[derive(Debug, Clone)]
pub struct FlakyGraph {
    seed: String,
    unavailable: Arc<Vec<String>>,
    log: Arc<Mutex<SendLog>>,
}

impl FlakyGraph {
    pub fn new(seed: &str, unavailable: Vec<String>) -> Self {
        Self {
            seed: seed.to_owned(),
            unavailable: Arc::new(unavailable),
            log: Arc::default(),
        }
    }

    /// The answers planned for `recipient`, attempt by attempt; every attempt after
    /// the listed ones succeeds.
    pub fn plan(&self, recipient: &str) -> Vec<GraphAnswer> {
        use GraphAnswer::*;
        if self.unavailable.iter().any(|u| u == recipient) {
            return vec![Unavailable];
        }
        match fnv(&[&self.seed, recipient]) % 100 {
            0..=3 => vec![ServerError],
            4..=7 => vec![RateLimited],
            8 => vec![ServerError, RateLimited],
            9 => vec![RateLimited, ServerError],
            _ => vec![],
        }
    }

    /// Every send seen so far, by recipient.
    pub fn log(&self) -> SendLog {
        lock(&self.log).clone()
    }
}

impl Respond for FlakyGraph {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap_or_default();
        let recipient = body["recipient"]["id"].as_str().unwrap_or("").to_owned();
        let mut log = lock(&self.log);
        let attempts = log.entry(recipient.clone()).or_default();
        let plan = self.plan(&recipient);
        let answer = if self.unavailable.contains(&recipient) {
            GraphAnswer::Unavailable
        } else {
            plan.get(attempts.len()).copied().unwrap_or(GraphAnswer::Ok)
        };
        attempts.push(answer);
        let n = attempts.len();
        match answer {
            GraphAnswer::Ok => ResponseTemplate::new(200).set_body_json(
                json!({"recipient_id": recipient, "message_id": format!("m_sent_{recipient}_{n}")}),
            ),
            GraphAnswer::ServerError => ResponseTemplate::new(500).set_body_json(
                json!({"error": {"message": "An unexpected error has occurred. Please retry your request later.", "type": "OAuthException", "code": 2, "is_transient": true, "fbtrace_id": "Fault5xx"}}),
            ),
            GraphAnswer::RateLimited => ResponseTemplate::new(400).set_body_json(
                json!({"error": {"message": "(#613) Calls to this api have exceeded the rate limit.", "type": "OAuthException", "code": 613, "error_subcode": 2534040, "fbtrace_id": "Fault613"}}),
            ),
            GraphAnswer::Unavailable => ResponseTemplate::new(400).set_body_json(
                json!({"error": {"message": "(#551) This person isn't available right now.", "type": "OAuthException", "code": 551, "error_subcode": 1545041, "fbtrace_id": "Fault551"}}),
            ),
        }
    }
}

/// A processor as the driver sees it: one SQS batch in, the batch response out.
pub trait Handler: Sync {
    fn handle_batch(
        &self,
        event: aws_lambda_events::sqs::SqsEvent,
    ) -> impl std::future::Future<Output = SqsBatchResponse>;
}

impl<S, M, B, Q> Handler for processor::Processor<S, M, B, Q>
where
    S: Store + TokenStore + PageRegistry,
    M: processor::Messenger,
    B: processor::bot::Bot + Sync,
    Q: EventQueue + Sync,
{
    fn handle_batch(
        &self,
        event: aws_lambda_events::sqs::SqsEvent,
    ) -> impl std::future::Future<Output = SqsBatchResponse> {
        self.handle(event, None::<SystemTime>)
    }
}

/// One round of deliveries: what was handed back.
#[derive(Debug, Clone, Default)]
pub struct Round {
    pub delivered: usize,
    /// The messages handed back, in their order of delivery.
    pub handed_back: Vec<OutgoingMessage>,
}

/// Delivers `messages` in batches of `batch` with up to `workers` invocations at
/// once, as Lambda's SQS trigger would; returns what was handed back.
pub async fn deliver<H: Handler>(
    processor: &H,
    messages: &[OutgoingMessage],
    batch: usize,
    workers: usize,
    label: &str,
) -> Round {
    let batches: Vec<&[OutgoingMessage]> = messages.chunks(batch.max(1)).collect();
    let next = AtomicUsize::new(0);
    let handed_back: Mutex<Vec<(usize, usize)>> = Mutex::new(Vec::new());
    let worker = || async {
        loop {
            let b = next.fetch_add(1, Ordering::Relaxed);
            let Some(chunk) = batches.get(b) else {
                return;
            };
            let prefix = format!("{label}-b{b}");
            let response = processor.handle_batch(sqs_event(&prefix, chunk)).await;
            let mut back = lock(&handed_back);
            for id in failed_ids(&response) {
                let index: usize = id.rsplit('-').next().unwrap().parse().unwrap();
                back.push((b, index));
            }
        }
    };
    futures_util::future::join_all((0..workers.max(1)).map(|_| worker())).await;
    let mut back = handed_back.into_inner().unwrap();
    back.sort_unstable();
    Round {
        delivered: messages.len(),
        handed_back: back
            .into_iter()
            .map(|(b, i)| batches[b][i].clone())
            .collect(),
    }
}

/// Delivers `messages`, then whatever is handed back, round after round, until
/// nothing is (at most `max_rounds`); `between` runs before each redelivery (the
/// visibility timeout passing, say). Returns every round.
pub async fn deliver_until_done<H: Handler>(
    processor: &H,
    messages: Vec<OutgoingMessage>,
    batch: usize,
    workers: usize,
    max_rounds: usize,
    mut between: impl FnMut(usize),
) -> Vec<Round> {
    let mut rounds = Vec::new();
    let mut pending = messages;
    for round in 0..max_rounds {
        if pending.is_empty() {
            return rounds;
        }
        if round > 0 {
            between(round);
        }
        let r = deliver(processor, &pending, batch, workers, &format!("r{round}")).await;
        pending = r.handed_back.clone();
        rounds.push(r);
    }
    assert!(
        pending.is_empty(),
        "{} messages still handed back after {max_rounds} rounds",
        pending.len()
    );
    rounds
}
