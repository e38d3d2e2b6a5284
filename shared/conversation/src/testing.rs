//! An in-memory store implementing every port, with the DynamoDB adapter's
//! semantics (conditional writes, newer-only thread fields, leases, the token
//! guard), so that the processor's pipeline is tested in milliseconds. The emulator
//! tests stay for the adapter itself. It counts its requests the way DynamoDB
//! would bill them and can be told to fail a named operation, to play a crash or
//! a throttled table at any step.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use messenger_types::{EventKey, PageId, Psid, Timestamp};

use crate::ledger::{
    CLAIM_LEASE_MS, Claim, ClaimToken, Consistency, Opened, Progress, Step, TurnKey, Version,
};
use crate::otn::{
    NewToken, SpendRefused, StalePage, StoredToken, SweepPage, TokenKind, TokenRef, TokenStatus,
    day_number, day_string, topic_key,
};
use crate::pages::{PageRecord, PageRegistry, PageStatus, Parked, ParkedMessage};
use crate::ports::{
    EventLedger, StoreError, StoreErrorKind, ThreadLedger, ThreadStore, TokenStore,
};
use crate::thread::{PageChange, PageState, ThreadChange, ThreadKey, ThreadState};

/// An event's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    pub done: bool,
    pub lease_until: Timestamp,
    pub claim: String,
    pub done_actions: u32,
    pub started_actions: u32,
    pub outcome: Option<String>,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone)]
struct TokenItem {
    token: StoredToken,
}

#[derive(Debug, Default)]
struct Inner {
    events: HashMap<String, EventRecord>,
    threads: HashMap<ThreadKey, ThreadState>,
    /// Every write to a thread moves its version on.
    versions: HashMap<ThreadKey, u64>,
    /// The ledger entries kept on threads, by entry name.
    turns: HashMap<String, EventRecord>,
    /// The thread each entry is on.
    turn_threads: HashMap<String, ThreadKey>,
    /// People forgotten, and when: events not newer are duplicates.
    forgotten: HashMap<ThreadKey, Timestamp>,
    pages: HashMap<PageId, (PageState, Option<Timestamp>, Option<Timestamp>)>,
    /// (page, psid, sk) -> token; BTreeMap so that listings are in a stable order.
    tokens: BTreeMap<(String, String, String), TokenItem>,
    /// (page, psid, token) -> the sk of the one item that token may have.
    guards: HashMap<(String, String, String), String>,
    sweep_cursor: Option<String>,
    page_records: BTreeMap<PageId, PageRecord>,
    /// (page, key) -> the parked message and the person it is about.
    parked: BTreeMap<(PageId, String), (ParkedMessage, Option<ThreadKey>)>,
    requests: u64,
    faults: Vec<(&'static str, StoreErrorKind, u32)>,
    /// Requests that apply and then fail, as if their answer was lost.
    lost_answers: Vec<(&'static str, u32)>,
    /// Threads written by "another writer" right after the next `n` turns opened.
    interfere: u32,
    /// How fresh each turn's opening read was asked to be, in order.
    turn_reads: Vec<Consistency>,
    seq: u64,
}

/// The in-memory store. Share it between tasks by reference.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A test that panicked while holding the lock has failed already.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts one request to operation `op`, failing it if a fault is armed for it.
    fn request(&self, inner: &mut Inner, op: &'static str) -> Result<(), StoreError> {
        inner.requests += 1;
        if let Some(fault) = inner.faults.iter_mut().find(|f| f.0 == op && f.2 > 0) {
            fault.2 -= 1;
            return Err(StoreError {
                op,
                kind: fault.1,
                message: "injected by the test".to_owned(),
                source: None,
            });
        }
        Ok(())
    }

    /// Makes the next `times` requests to `op` (a port method's name, e.g.
    /// `"record_progress"`) fail with `kind`.
    pub fn fail(&self, op: &'static str, kind: StoreErrorKind, times: u32) {
        self.lock().faults.push((op, kind, times));
    }

    /// Makes the next `times` requests to `op` apply and then fail as passing
    /// failures, as a write DynamoDB applied whose answer was lost does. Only
    /// `"spend_token"` honours it.
    pub fn lose_answers(&self, op: &'static str, times: u32) {
        self.lock().lost_answers.push((op, times));
    }

    /// Requests made so far (each port call is one request, as each is one
    /// DynamoDB request in the adapter, the token guard's second write aside).
    pub fn requests(&self) -> u64 {
        self.lock().requests
    }

    /// The consistency each [`ThreadLedger::open_turn`] asked for, in order. The
    /// store always answers with the latest state; a stale read is played by
    /// [`MemoryStore::interfere_after_open`] (the version read is then old).
    pub fn turn_reads(&self) -> Vec<Consistency> {
        self.lock().turn_reads.clone()
    }

    /// The record of an event, if any: its own, or its entry on its thread.
    pub fn event(&self, key: &EventKey) -> Option<EventRecord> {
        let inner = self.lock();
        inner
            .events
            .get(key.as_str())
            .cloned()
            .or_else(|| inner.turns.get(&crate::ledger::entry_name(key)).cloned())
    }

    /// Every stored token of a person, as stored.
    pub fn tokens_of(&self, page: &PageId, psid: &Psid) -> Vec<StoredToken> {
        self.lock()
            .tokens
            .values()
            .filter(|t| &t.token.page == page && &t.token.psid == psid)
            .map(|t| t.token.clone())
            .collect()
    }

    /// After each of the next `times` turns opened, writes the thread as another
    /// writer would (a notification marking the person unreachable), so that the
    /// write taking the event finds the thread changed since it was read.
    pub fn interfere_after_open(&self, times: u32) {
        self.lock().interfere = times;
    }

    /// Ends every lease now, as if the worker holding it had died long ago.
    pub fn expire_leases(&self) {
        let mut inner = self.lock();
        let Inner { events, turns, .. } = &mut *inner;
        for record in events.values_mut().chain(turns.values_mut()) {
            record.lease_until = Timestamp::from_millis(i64::MIN);
        }
    }
}

fn lost_claim(op: &'static str) -> StoreError {
    StoreError {
        op,
        kind: StoreErrorKind::LostClaim,
        message: "the event was taken over by another worker".to_owned(),
        source: None,
    }
}

fn held<'a>(
    inner: &'a mut Inner,
    key: &EventKey,
    token: &ClaimToken,
    op: &'static str,
) -> Result<&'a mut EventRecord, StoreError> {
    inner
        .events
        .get_mut(key.as_str())
        .filter(|r| r.claim == token.as_str())
        .ok_or_else(|| lost_claim(op))
}

/// Where a token item (or its guard) lives: page, person, sort key (or token).
fn item_key(page: &PageId, psid: &Psid, rest: &str) -> (String, String, String) {
    (
        page.as_str().to_owned(),
        psid.as_str().to_owned(),
        rest.to_owned(),
    )
}

fn padded(t: Timestamp) -> String {
    format!("{:015}", t.as_millis().max(0))
}

impl EventLedger for MemoryStore {
    async fn claim_event(&self, key: &EventKey, now: Timestamp) -> Result<Claim, StoreError> {
        let mut inner = self.lock();
        self.request(&mut inner, "claim_event")?;
        inner.seq += 1;
        let token = ClaimToken::new(format!("memory-{}", inner.seq));
        match inner.events.get_mut(key.as_str()) {
            None => {
                inner.events.insert(
                    key.as_str().to_owned(),
                    EventRecord {
                        done: false,
                        lease_until: now.plus_millis(CLAIM_LEASE_MS),
                        claim: token.as_str().to_owned(),
                        done_actions: 0,
                        started_actions: 0,
                        outcome: None,
                        last_error: None,
                    },
                );
                Ok(Claim::Acquired {
                    token,
                    done_actions: 0,
                    started_actions: 0,
                })
            }
            Some(record) if record.done => Ok(Claim::Duplicate {
                outcome: record.outcome.clone(),
            }),
            Some(record) if record.lease_until < now => {
                record.lease_until = now.plus_millis(CLAIM_LEASE_MS);
                record.claim = token.as_str().to_owned();
                Ok(Claim::Acquired {
                    token,
                    done_actions: record.done_actions,
                    started_actions: record.started_actions,
                })
            }
            Some(_) => Ok(Claim::Busy),
        }
    }

    async fn start_action(
        &self,
        key: &EventKey,
        token: &ClaimToken,
        n: u32,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        self.request(&mut inner, "start_action")?;
        held(&mut inner, key, token, "start_action")?.started_actions = n;
        Ok(())
    }

    async fn abandon_action(
        &self,
        key: &EventKey,
        token: &ClaimToken,
        n: u32,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        self.request(&mut inner, "abandon_action")?;
        held(&mut inner, key, token, "abandon_action")?.started_actions = n.saturating_sub(1);
        Ok(())
    }

    async fn record_progress(
        &self,
        key: &EventKey,
        token: &ClaimToken,
        done_actions: u32,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        self.request(&mut inner, "record_progress")?;
        let record = held(&mut inner, key, token, "record_progress")?;
        record.done_actions = done_actions;
        record.started_actions = done_actions;
        Ok(())
    }

    async fn complete_event(
        &self,
        key: &EventKey,
        token: &ClaimToken,
        outcome: &str,
        _now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        self.request(&mut inner, "complete_event")?;
        let record = held(&mut inner, key, token, "complete_event")?;
        record.done = true;
        record.outcome = Some(outcome.to_owned());
        Ok(())
    }

    async fn release_event(
        &self,
        key: &EventKey,
        token: &ClaimToken,
        reason: &str,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        self.request(&mut inner, "release_event")?;
        if let Ok(record) = held(&mut inner, key, token, "release_event") {
            record.lease_until = Timestamp::from_millis(0);
            record.last_error = Some(reason.to_owned());
        }
        Ok(())
    }
}

fn held_turn<'a>(
    inner: &'a mut Inner,
    turn: &TurnKey,
    token: &ClaimToken,
    op: &'static str,
) -> Result<&'a mut EventRecord, StoreError> {
    inner
        .turns
        .get_mut(&turn.entry())
        .filter(|r| !r.done && r.claim == token.as_str())
        .ok_or_else(|| lost_claim(op))
}

/// Writes `step` into `record`, as the adapter writes it into the entry.
fn write_step(record: &mut EventRecord, step: Step<'_>, now: Timestamp) {
    match step {
        Step::Working { done, started } => {
            record.done_actions = done;
            record.started_actions = started;
            record.lease_until = now.plus_millis(CLAIM_LEASE_MS);
        }
        Step::Done { outcome } => {
            record.done = true;
            record.outcome = Some(outcome.to_owned());
        }
        Step::Released {
            done,
            started,
            reason,
        } => {
            record.done_actions = done;
            record.started_actions = started;
            record.lease_until = Timestamp::from_millis(0);
            record.last_error = Some(reason.to_owned());
        }
    }
}

impl ThreadLedger for MemoryStore {
    async fn open_turn(
        &self,
        turn: &TurnKey,
        now: Timestamp,
        read: Consistency,
    ) -> Result<Opened, StoreError> {
        let mut inner = self.lock();
        self.request(&mut inner, "open_turn")?;
        inner.turn_reads.push(read);
        let progress = match inner.turns.get(&turn.entry()) {
            Some(record) if record.done => {
                return Ok(Opened::Duplicate {
                    outcome: record.outcome.clone(),
                });
            }
            Some(record) if record.lease_until >= now => return Ok(Opened::Busy),
            Some(record) => Progress {
                done_actions: record.done_actions,
                started_actions: record.started_actions,
            },
            None => {
                // Commands are stamped at time 0 and are never a copy of an event.
                let forgotten = inner.forgotten.get(&turn.thread).copied();
                if turn.at.as_millis() > 0 && forgotten.is_some_and(|f| turn.at <= f) {
                    return Ok(Opened::Duplicate { outcome: None });
                }
                Progress::default()
            }
        };
        let thread = inner.threads.get(&turn.thread).cloned().unwrap_or_default();
        let number = inner.versions.get(&turn.thread).copied().unwrap_or(0);
        if inner.interfere > 0 {
            inner.interfere -= 1;
            *inner.versions.entry(turn.thread.clone()).or_default() += 1;
        }
        Ok(Opened::Open {
            thread,
            progress,
            version: Version {
                number,
                ..Version::default()
            },
        })
    }

    async fn take_turn(
        &self,
        turn: &TurnKey,
        version: Version,
        thread: &ThreadState,
        step: Step<'_>,
        now: Timestamp,
    ) -> Result<Option<ClaimToken>, StoreError> {
        let mut inner = self.lock();
        self.request(&mut inner, "take_turn")?;
        if inner.versions.get(&turn.thread).copied().unwrap_or(0) != version.number {
            return Ok(None);
        }
        inner.seq += 1;
        let token = ClaimToken::new(format!("memory-{}", inner.seq));
        let mut record = inner.turns.remove(&turn.entry()).unwrap_or(EventRecord {
            done: false,
            lease_until: now,
            claim: String::new(),
            done_actions: 0,
            started_actions: 0,
            outcome: None,
            last_error: None,
        });
        record.claim = token.as_str().to_owned();
        record.lease_until = now.plus_millis(CLAIM_LEASE_MS);
        write_step(&mut record, step, now);
        inner.turns.insert(turn.entry(), record);
        inner.turn_threads.insert(turn.entry(), turn.thread.clone());
        inner.threads.insert(turn.thread.clone(), thread.clone());
        *inner.versions.entry(turn.thread.clone()).or_default() += 1;
        Ok(Some(token))
    }

    async fn forget_person(&self, thread: &ThreadKey, at: Timestamp) -> Result<usize, StoreError> {
        let mut inner = self.lock();
        self.request(&mut inner, "forget_person")?;
        let mark = inner.forgotten.entry(thread.clone()).or_insert(at);
        *mark = (*mark).max(at);
        let mut erased = usize::from(inner.threads.remove(thread).is_some());
        let entries: Vec<String> = inner
            .turn_threads
            .iter()
            .filter(|(_, t)| *t == thread)
            .map(|(name, _)| name.clone())
            .collect();
        for name in entries {
            inner.turn_threads.remove(&name);
            erased += usize::from(inner.turns.remove(&name).is_some());
        }
        if let crate::thread::Person::Psid(psid) = &thread.person {
            let page = thread.page.as_str();
            let before = inner.tokens.len();
            inner
                .tokens
                .retain(|(p, person, _), _| !(p == page && person == psid.as_str()));
            erased += before - inner.tokens.len();
            inner
                .guards
                .retain(|(p, person, _), _| !(p == page && person == psid.as_str()));
        }
        let before = inner.parked.len();
        inner
            .parked
            .retain(|_, (_, person)| person.as_ref() != Some(thread));
        erased += before - inner.parked.len();
        // Every write to a thread moves its version on, an erasure too.
        *inner.versions.entry(thread.clone()).or_default() += 1;
        Ok(erased)
    }

    async fn step_turn(
        &self,
        turn: &TurnKey,
        token: &ClaimToken,
        step: Step<'_>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        self.request(&mut inner, "step_turn")?;
        match held_turn(&mut inner, turn, token, "step_turn") {
            Ok(record) => write_step(record, step, now),
            Err(_) if matches!(step, Step::Released { .. }) => return Ok(()),
            Err(e) => return Err(e),
        }
        *inner.versions.entry(turn.thread.clone()).or_default() += 1;
        Ok(())
    }
}

impl ThreadStore for MemoryStore {
    async fn thread(&self, key: &ThreadKey) -> Result<ThreadState, StoreError> {
        let mut inner = self.lock();
        self.request(&mut inner, "thread")?;
        Ok(inner.threads.get(key).cloned().unwrap_or_default())
    }

    async fn update_thread(
        &self,
        key: &ThreadKey,
        change: &ThreadChange,
    ) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        self.request(&mut inner, "update_thread")?;
        let applied = inner.threads.entry(key.clone()).or_default().apply(change);
        if applied {
            *inner.versions.entry(key.clone()).or_default() += 1;
        }
        Ok(applied)
    }

    async fn update_thread_all(
        &self,
        key: &ThreadKey,
        changes: &[ThreadChange],
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        self.request(&mut inner, "update_thread_all")?;
        let thread = inner.threads.entry(key.clone()).or_default();
        for change in changes {
            thread.apply(change);
        }
        *inner.versions.entry(key.clone()).or_default() += 1;
        Ok(())
    }

    async fn page(&self, page: &PageId) -> Result<PageState, StoreError> {
        let mut inner = self.lock();
        self.request(&mut inner, "page")?;
        Ok(inner
            .pages
            .get(page)
            .map(|p| p.0.clone())
            .unwrap_or_default())
    }

    async fn save_token(
        &self,
        t: &NewToken,
        active: bool,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        self.request(&mut inner, "save_token")?;
        let id = crate::testing::token_digest(&t.token);
        let sk = format!("OTN#{}#{id}", padded(t.created_at));
        let guard = item_key(&t.page, &t.psid, &t.token);
        match inner.guards.get(&guard) {
            Some(existing) if existing != &sk => return Ok(false),
            Some(_) => {}
            None => {
                inner.guards.insert(guard, sk.clone());
            }
        }
        let slot = item_key(&t.page, &t.psid, &sk);
        if inner.tokens.contains_key(&slot) {
            return Ok(false);
        }
        let status = if t.kind == TokenKind::Recurring && !active {
            TokenStatus::Retired
        } else if !(active && t.expires_at > now) {
            if t.expires_at > now {
                TokenStatus::Retired
            } else {
                TokenStatus::Expired
            }
        } else {
            TokenStatus::Active
        };
        inner.tokens.insert(
            slot,
            TokenItem {
                token: StoredToken {
                    page: t.page.clone(),
                    psid: t.psid.clone(),
                    sk,
                    topic: t.topic.clone(),
                    token: t.token.clone(),
                    kind: t.kind,
                    status,
                    created_at: t.created_at,
                    expires_at: t.expires_at,
                    spend_id: None,
                    sending_until: None,
                },
            },
        );
        Ok(true)
    }

    async fn update_page(&self, page: &PageId, change: &PageChange) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        self.request(&mut inner, "update_page")?;
        let entry = inner.pages.entry(page.clone()).or_default();
        match change {
            PageChange::PolicyEnforcement { action, reason, at } => {
                if entry.1.is_some_and(|held| held >= *at) {
                    return Ok(false);
                }
                entry.0.policy_action = Some(action.clone());
                entry.0.policy_reason = reason.clone();
                entry.1 = Some(*at);
            }
            PageChange::AppRoles { roles, at } => {
                if entry.2.is_some_and(|held| held >= *at) {
                    return Ok(false);
                }
                entry.0.app_roles = Some(roles.clone());
                entry.2 = Some(*at);
            }
        }
        Ok(true)
    }
}

/// A short digest naming a token without holding it (FNV-1a: the memory store
/// needs no cryptographic digest, only distinct names).
fn token_digest(token: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in token.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

fn token_ref(t: &StoredToken) -> TokenRef {
    TokenRef {
        page: t.page.clone(),
        psid: t.psid.clone(),
        sk: t.sk.clone(),
    }
}

impl TokenStore for MemoryStore {
    async fn active_tokens(
        &self,
        page: &PageId,
        topic: &str,
        after: Option<&str>,
        limit: i32,
    ) -> Result<(Vec<TokenRef>, Option<String>), StoreError> {
        let mut inner = self.lock();
        self.request(&mut inner, "active_tokens")?;
        let limit = usize::try_from(limit.max(1)).unwrap_or(1);
        // Ordered as the topic index orders them: by creation, then person.
        let mut active: Vec<(String, TokenRef)> = inner
            .tokens
            .values()
            .filter(|t| {
                &t.token.page == page
                    && topic_key(&t.token.topic) == topic_key(topic)
                    && t.token.status == TokenStatus::Active
            })
            .map(|t| {
                (
                    format!(
                        "{}#{}#{}",
                        padded(t.token.created_at),
                        t.token.psid,
                        t.token.sk
                    ),
                    token_ref(&t.token),
                )
            })
            .filter(|(sort, _)| after.is_none_or(|after| sort.as_str() > after))
            .collect();
        active.sort_by(|a, b| a.0.cmp(&b.0));
        let next = (active.len() > limit).then(|| active[limit - 1].0.clone());
        Ok((
            active.into_iter().take(limit).map(|(_, r)| r).collect(),
            next,
        ))
    }

    async fn person_tokens(
        &self,
        page: &PageId,
        psid: &Psid,
        topic: &str,
    ) -> Result<Vec<TokenRef>, StoreError> {
        let mut inner = self.lock();
        self.request(&mut inner, "person_tokens")?;
        // Keyed by Page, person and sort key: oldest first, as on the table.
        Ok(inner
            .tokens
            .values()
            .filter(|t| {
                &t.token.page == page
                    && &t.token.psid == psid
                    && topic_key(&t.token.topic) == topic_key(topic)
                    && t.token.status == TokenStatus::Active
            })
            .map(|t| token_ref(&t.token))
            .collect())
    }

    async fn tokens_held(
        &self,
        page: &PageId,
        psid: &Psid,
    ) -> Result<Vec<StoredToken>, StoreError> {
        let mut inner = self.lock();
        self.request(&mut inner, "tokens_held")?;
        Ok(inner
            .tokens
            .values()
            .filter(|t| &t.token.page == page && &t.token.psid == psid)
            .map(|t| t.token.clone())
            .collect())
    }

    async fn spend_token(
        &self,
        at: &TokenRef,
        spend_id: &str,
        now: Timestamp,
    ) -> Result<Result<StoredToken, SpendRefused>, StoreError> {
        let mut inner = self.lock();
        self.request(&mut inner, "spend_token")?;
        let key = item_key(&at.page, &at.psid, &at.sk);
        let Some(item) = inner.tokens.get_mut(&key) else {
            return Ok(Err(SpendRefused::Unknown));
        };
        if item.token.kind != TokenKind::OneTime {
            return Ok(Err(SpendRefused::Unknown));
        }
        if item.token.status == TokenStatus::Used
            && item.token.spend_id.as_deref() == Some(spend_id)
        {
            // This very spend, applied before and its answer lost.
            return Ok(Ok(item.token.clone()));
        }
        if item.token.status != TokenStatus::Active {
            return Ok(Err(SpendRefused::NotActive(item.token.status)));
        }
        if item.token.expires_at <= now {
            item.token.status = TokenStatus::Expired;
            return Ok(Err(SpendRefused::Expired));
        }
        item.token.status = TokenStatus::Used;
        item.token.spend_id = Some(spend_id.to_owned());
        item.token.sending_until = Some(now.plus_millis(crate::otn::SENDING_LEASE_MS));
        let spent = item.token.clone();
        if let Some(lost) = inner
            .lost_answers
            .iter_mut()
            .find(|l| l.0 == "spend_token" && l.1 > 0)
        {
            lost.1 -= 1;
            return Err(StoreError {
                op: "spend_token",
                kind: StoreErrorKind::Transient,
                message: "applied, and the answer lost (injected by the test)".to_owned(),
                source: None,
            });
        }
        Ok(Ok(spent))
    }

    async fn finish_spend(&self, at: &TokenRef, spend_id: &str) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        self.request(&mut inner, "finish_spend")?;
        let key = item_key(&at.page, &at.psid, &at.sk);
        match inner.tokens.get_mut(&key) {
            Some(item)
                if item.token.status == TokenStatus::Used
                    && item.token.spend_id.as_deref() == Some(spend_id) =>
            {
                item.token.sending_until = None;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn give_back_stale_spends(
        &self,
        shard: u32,
        now: Timestamp,
        after: Option<&str>,
        limit: i32,
    ) -> Result<StalePage, StoreError> {
        let mut inner = self.lock();
        self.request(&mut inner, "give_back_stale_spends")?;
        let limit = usize::try_from(limit.max(1)).unwrap_or(1);
        let mut due: Vec<(String, (String, String, String))> = inner
            .tokens
            .iter()
            .filter(|(_, t)| {
                let id = t.token.sk.rsplit('#').next().unwrap_or_default();
                t.token.status == TokenStatus::Used
                    && t.token.sending_until.is_some_and(|until| until < now)
                    && crate::otn::sending_bucket(id) == format!("SENDING#{shard}")
            })
            .map(|(k, t)| {
                let until = t.token.sending_until.unwrap_or(now);
                (format!("{}#{}#{}", padded(until), k.0, k.2), k.clone())
            })
            .filter(|(sort, _)| after.is_none_or(|after| sort.as_str() > after))
            .collect();
        due.sort();
        let next = (due.len() > limit).then(|| due[limit - 1].0.clone());
        let mut page = StalePage {
            next,
            ..StalePage::default()
        };
        for (_, key) in due.into_iter().take(limit) {
            page.read += 1;
            if let Some(item) = inner.tokens.get_mut(&key) {
                item.token.status = if item.token.expires_at > now {
                    TokenStatus::Active
                } else {
                    TokenStatus::Expired
                };
                item.token.spend_id = None;
                item.token.sending_until = None;
                page.given_back += 1;
            }
        }
        Ok(page)
    }

    async fn unspend_token(&self, token: &StoredToken, spend_id: &str) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        self.request(&mut inner, "unspend_token")?;
        let key = item_key(&token.page, &token.psid, &token.sk);
        match inner.tokens.get_mut(&key) {
            Some(item)
                if item.token.status == TokenStatus::Used
                    && item.token.spend_id.as_deref() == Some(spend_id) =>
            {
                item.token.status = TokenStatus::Active;
                item.token.spend_id = None;
                item.token.sending_until = None;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn retire_token(
        &self,
        at: &TokenRef,
        spend_id: &str,
        _reason: &str,
    ) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        self.request(&mut inner, "retire_token")?;
        let key = item_key(&at.page, &at.psid, &at.sk);
        match inner.tokens.get_mut(&key) {
            Some(item) if item.token.spend_id.as_deref() == Some(spend_id) => {
                item.token.status = TokenStatus::Retired;
                item.token.sending_until = None;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn sweep_expired(
        &self,
        bucket_day: &str,
        now: Timestamp,
        after: Option<&str>,
        limit: i32,
    ) -> Result<SweepPage, StoreError> {
        let mut inner = self.lock();
        self.request(&mut inner, "sweep_expired")?;
        let limit = usize::try_from(limit.max(1)).unwrap_or(1);
        let mut due: Vec<(String, (String, String, String))> = inner
            .tokens
            .iter()
            .filter(|(_, t)| {
                t.token.status == TokenStatus::Active
                    && day_string(day_number(t.token.expires_at)) == bucket_day
                    && t.token.expires_at < now
            })
            .map(|(k, t)| {
                (
                    format!("{}#{}#{}", padded(t.token.expires_at), k.0, k.2),
                    k.clone(),
                )
            })
            .filter(|(sort, _)| after.is_none_or(|after| sort.as_str() > after))
            .collect();
        due.sort();
        let next = (due.len() > limit).then(|| due[limit - 1].0.clone());
        let mut page = SweepPage {
            next,
            ..SweepPage::default()
        };
        for (_, key) in due.into_iter().take(limit) {
            page.read += 1;
            if let Some(item) = inner.tokens.get_mut(&key) {
                item.token.status = TokenStatus::Expired;
                page.expired += 1;
            }
        }
        Ok(page)
    }

    async fn sweep_cursor(&self) -> Result<Option<String>, StoreError> {
        let mut inner = self.lock();
        self.request(&mut inner, "sweep_cursor")?;
        Ok(inner.sweep_cursor.clone())
    }

    async fn set_sweep_cursor(&self, day: &str) -> Result<(), StoreError> {
        let mut inner = self.lock();
        self.request(&mut inner, "set_sweep_cursor")?;
        inner.sweep_cursor = Some(day.to_owned());
        Ok(())
    }
}

impl PageRegistry for MemoryStore {
    async fn page_record(&self, page: &PageId) -> Result<Option<PageRecord>, StoreError> {
        let mut inner = self.lock();
        self.request(&mut inner, "page_record")?;
        Ok(inner.page_records.get(page).cloned())
    }

    async fn page_records(&self) -> Result<Vec<(PageId, PageRecord)>, StoreError> {
        let mut inner = self.lock();
        self.request(&mut inner, "page_records")?;
        Ok(inner
            .page_records
            .iter()
            .map(|(p, r)| (p.clone(), r.clone()))
            .collect())
    }

    async fn store_page_token(
        &self,
        page: &PageId,
        sealed: Vec<u8>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        self.request(&mut inner, "store_page_token")?;
        let record = inner
            .page_records
            .entry(page.clone())
            .or_insert_with(|| PageRecord::new(PageStatus::Active, None, now));
        record.status = PageStatus::Active;
        record.reason = None;
        record.since = now;
        record.sealed_token = Some(sealed);
        record.token_version = Some(now.as_millis());
        Ok(())
    }

    async fn mark_page_invalid(
        &self,
        page: &PageId,
        token_version: Option<i64>,
        reason: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        self.request(&mut inner, "mark_page_invalid")?;
        let current = inner.page_records.get(page).and_then(|r| r.token_version);
        if current != token_version {
            return Ok(false);
        }
        let record = inner
            .page_records
            .entry(page.clone())
            .or_insert_with(|| PageRecord::new(PageStatus::Invalid, None, now));
        record.status = PageStatus::Invalid;
        record.reason = Some(reason.to_owned());
        record.since = now;
        Ok(true)
    }

    async fn forget_page_token(
        &self,
        page: &PageId,
        reason: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        self.request(&mut inner, "forget_page_token")?;
        let record = inner
            .page_records
            .entry(page.clone())
            .or_insert_with(|| PageRecord::new(PageStatus::Missing, None, now));
        record.status = PageStatus::Missing;
        record.reason = Some(reason.to_owned());
        record.since = now;
        record.sealed_token = None;
        record.token_version = None;
        Ok(())
    }

    async fn page_checked(&self, page: &PageId, now: Timestamp) -> Result<(), StoreError> {
        let mut inner = self.lock();
        self.request(&mut inner, "page_checked")?;
        if let Some(record) = inner.page_records.get_mut(page) {
            record.checked_at = Some(now);
        }
        Ok(())
    }

    async fn page_seen(&self, page: &PageId, at: Timestamp) -> Result<(), StoreError> {
        let mut inner = self.lock();
        self.request(&mut inner, "page_seen")?;
        if let Some(record) = inner.page_records.get_mut(page)
            && record.last_event_at.is_none_or(|seen| seen < at)
        {
            record.last_event_at = Some(at);
        }
        Ok(())
    }

    async fn park(
        &self,
        page: &PageId,
        message: &ParkedMessage,
        thread: Option<&ThreadKey>,
        now: Timestamp,
    ) -> Result<Parked, StoreError> {
        let mut inner = self.lock();
        self.request(&mut inner, "park")?;
        let record = inner.page_records.entry(page.clone()).or_insert_with(|| {
            PageRecord::new(PageStatus::Missing, Some("no token".to_owned()), now)
        });
        if record.status == PageStatus::Active {
            return Ok(Parked::PageActive);
        }
        inner.parked.insert(
            (page.clone(), message.key.clone()),
            (message.clone(), thread.cloned()),
        );
        Ok(Parked::Kept)
    }

    async fn parked(
        &self,
        page: &PageId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ParkedMessage>, StoreError> {
        let mut inner = self.lock();
        self.request(&mut inner, "parked")?;
        Ok(inner
            .parked
            .iter()
            .filter(|((p, key), _)| p == page && after.is_none_or(|a| key.as_str() > a))
            .take(limit)
            .map(|(_, (m, _))| m.clone())
            .collect())
    }

    async fn unpark(&self, page: &PageId, key: &str) -> Result<(), StoreError> {
        let mut inner = self.lock();
        self.request(&mut inner, "unpark")?;
        inner.parked.remove(&(page.clone(), key.to_owned()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::thread::Control;
    use futures_executor::block_on;
    use messenger_types::AppId;

    fn key() -> ThreadKey {
        ThreadKey::psid(PageId::new("1"), Psid::new("2"))
    }

    #[test]
    fn a_claim_is_taken_once_and_a_done_event_is_a_duplicate() {
        let store = MemoryStore::new();
        let event = EventKey::from_readable("e1");
        let now = Timestamp::from_millis(1_000);
        let Claim::Acquired { token, .. } = block_on(store.claim_event(&event, now)).unwrap()
        else {
            panic!("first claim refused");
        };
        assert_eq!(
            block_on(store.claim_event(&event, now)).unwrap(),
            Claim::Busy
        );
        block_on(store.complete_event(&event, &token, "{}", now)).unwrap();
        assert!(matches!(
            block_on(store.claim_event(&event, now)).unwrap(),
            Claim::Duplicate { .. }
        ));
    }

    #[test]
    fn an_expired_lease_passes_the_event_on_with_its_progress() {
        let store = MemoryStore::new();
        let event = EventKey::from_readable("e1");
        let now = Timestamp::from_millis(1_000);
        let Claim::Acquired { token, .. } = block_on(store.claim_event(&event, now)).unwrap()
        else {
            panic!("first claim refused");
        };
        block_on(store.start_action(&event, &token, 1)).unwrap();
        let later = now.plus_millis(CLAIM_LEASE_MS + 1);
        let Claim::Acquired {
            token: second,
            done_actions,
            started_actions,
        } = block_on(store.claim_event(&event, later)).unwrap()
        else {
            panic!("the lease did not end");
        };
        assert_eq!((done_actions, started_actions), (0, 1));
        // The first worker lost its claim: its writes are refused.
        let lost = block_on(store.record_progress(&event, &token, 1)).unwrap_err();
        assert_eq!(lost.kind, StoreErrorKind::LostClaim);
        block_on(store.record_progress(&event, &second, 1)).unwrap();
    }

    fn turn(mid: &str) -> TurnKey {
        TurnKey {
            thread: key(),
            event: EventKey::from_readable(format!("message:{mid}")),
            at: Timestamp::from_millis(1_000),
        }
    }

    fn open(
        store: &MemoryStore,
        turn: &TurnKey,
        now: Timestamp,
    ) -> (ThreadState, Progress, Version) {
        match block_on(store.open_turn(turn, now, Consistency::Strong)).unwrap() {
            Opened::Open {
                thread,
                progress,
                version,
            } => (thread, progress, version),
            other => panic!("not open: {other:?}"),
        }
    }

    #[test]
    fn a_turn_is_taken_once_at_the_version_read_and_a_done_turn_is_a_duplicate() {
        let store = MemoryStore::new();
        let now = Timestamp::from_millis(1_000);
        let t = turn("m1");
        let (mut thread, _, version) = open(&store, &t, now);
        thread.apply(&ThreadChange::UserInteraction { at: now });
        let working = Step::Working {
            done: 0,
            started: 1,
        };
        let token = block_on(store.take_turn(&t, version.clone(), &thread, working, now))
            .unwrap()
            .unwrap();
        // A second worker that read the same version loses.
        assert_eq!(
            block_on(store.take_turn(&t, version, &thread, working, now)).unwrap(),
            None
        );
        assert_eq!(
            block_on(store.open_turn(&t, now, Consistency::Strong)).unwrap(),
            Opened::Busy
        );
        block_on(store.step_turn(&t, &token, Step::Done { outcome: "{}" }, now)).unwrap();
        assert_eq!(
            block_on(store.open_turn(&t, now, Consistency::Strong)).unwrap(),
            Opened::Duplicate {
                outcome: Some("{}".to_owned())
            }
        );
        assert_eq!(
            block_on(store.thread(&key()))
                .unwrap()
                .last_user_interaction,
            Some(now)
        );
    }

    #[test]
    fn an_expired_turn_passes_on_with_its_progress_and_the_old_claim_is_refused() {
        let store = MemoryStore::new();
        let now = Timestamp::from_millis(1_000);
        let t = turn("m1");
        let (thread, _, version) = open(&store, &t, now);
        let first = block_on(store.take_turn(
            &t,
            version,
            &thread,
            Step::Working {
                done: 0,
                started: 1,
            },
            now,
        ))
        .unwrap()
        .unwrap();
        let later = now.plus_millis(CLAIM_LEASE_MS + 1);
        let (thread, progress, version) = open(&store, &t, later);
        assert_eq!(
            progress,
            Progress {
                done_actions: 0,
                started_actions: 1
            }
        );
        let working = Step::Working {
            done: 1,
            started: 1,
        };
        let second = block_on(store.take_turn(&t, version, &thread, working, later))
            .unwrap()
            .unwrap();
        let lost =
            block_on(store.step_turn(&t, &first, Step::Done { outcome: "{}" }, later)).unwrap_err();
        assert_eq!(lost.kind, StoreErrorKind::LostClaim);
        // Releasing a lost claim changes nothing and is no error.
        let release = Step::Released {
            done: 0,
            started: 0,
            reason: "late",
        };
        block_on(store.step_turn(&t, &first, release, later)).unwrap();
        block_on(store.step_turn(&t, &second, Step::Done { outcome: "{}" }, later)).unwrap();
    }

    #[test]
    fn thread_fields_move_forward_only() {
        let store = MemoryStore::new();
        let at = |ms| Timestamp::from_millis(ms);
        assert!(
            block_on(store.update_thread(&key(), &ThreadChange::UserInteraction { at: at(20) }))
                .unwrap()
        );
        assert!(
            !block_on(store.update_thread(&key(), &ThreadChange::UserInteraction { at: at(10) }))
                .unwrap()
        );
        let theirs = Control {
            ours: false,
            owner: Some(AppId::new("263902037430900")),
            since: at(30),
        };
        block_on(store.update_thread(&key(), &ThreadChange::Control(theirs))).unwrap();
        // A later standby event names no owner: the known owner stays.
        let standby = Control {
            ours: false,
            owner: None,
            since: at(40),
        };
        block_on(store.update_thread(&key(), &ThreadChange::Control(standby))).unwrap();
        let state = block_on(store.thread(&key())).unwrap();
        assert_eq!(state.last_user_interaction, Some(at(20)));
        assert_eq!(
            state.control.and_then(|c| c.owner),
            Some(AppId::new("263902037430900"))
        );
    }

    #[test]
    fn a_token_is_spent_once_and_a_replayed_optin_makes_no_second_token() {
        let store = MemoryStore::new();
        let now = Timestamp::from_millis(1_000);
        let token = NewToken {
            page: PageId::new("1"),
            psid: Psid::new("2"),
            topic: "shoes".into(),
            token: "secret".into(),
            kind: TokenKind::OneTime,
            created_at: now,
            expires_at: now.plus_millis(crate::otn::OTN_LIFETIME_MS),
        };
        assert!(block_on(store.save_token(&token, true, now)).unwrap());
        let replayed = NewToken {
            created_at: now.plus_millis(5),
            ..token.clone()
        };
        assert!(!block_on(store.save_token(&replayed, true, now)).unwrap());
        let (refs, next) =
            block_on(store.active_tokens(&PageId::new("1"), "shoes", None, 10)).unwrap();
        assert_eq!((refs.len(), next), (1, None));
        assert!(
            block_on(store.spend_token(&refs[0], "a", now))
                .unwrap()
                .is_ok()
        );
        assert_eq!(
            block_on(store.spend_token(&refs[0], "b", now)).unwrap(),
            Err(SpendRefused::NotActive(TokenStatus::Used))
        );
    }

    #[test]
    fn injected_faults_fail_the_named_operation_only() {
        let store = MemoryStore::new();
        store.fail("thread", StoreErrorKind::Transient, 1);
        assert_eq!(
            block_on(store.thread(&key())).unwrap_err().kind,
            StoreErrorKind::Transient
        );
        assert!(block_on(store.thread(&key())).is_ok());
        assert_eq!(store.requests(), 2);
    }
}
