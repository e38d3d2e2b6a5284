//! The ledger of events that name a person, on their thread's item: one
//! strongly consistent GetItem opens the turn (the thread's state and where the
//! event stands), one UpdateItem made at the version read takes the event with
//! the thread's new state, and each later step is one UpdateItem made with the
//! claim. A replied text is 1 read and 2 writes; a duplicate, 1 read.
//!
//! Each event has an attribute of its own on the thread, `e_<entry>` (16 hex
//! characters of its key's digest), a map:
//!
//! | field | while in progress | once processed |
//! |---|---|---|
//! | `s` | `P` | `D` |
//! | `t` | the event's time | the event's time |
//! | `c`, `l` | the claim and its lease | - |
//! | `dn`, `st` | actions done, actions started | - |
//! | `e` | the last passing failure | - |
//! | `o` | - | the outcome, while the thread's newest |
//!
//! The item stays under 1 KB, so each write is one write unit: the write that
//! takes an event drops the outcome of the previous ones, and once the item
//! passes [`ARCHIVE_ABOVE`] bytes it moves the processed entries to an archive
//! item of the thread (`LEDGER#<newest time>#<version>`, the entries' names as a
//! string set, kept [`EVENT_RECORD_DAYS`] days) and raises `lg_floor`, the time of
//! the newest archived event. Only an event not newer than `lg_floor` and not on
//! the thread is looked up in the archive (one Query): an event redelivered or
//! redriven long after newer ones.
//!
//! A thread last written before the ledger moved onto threads (its item has no
//! `ver`) has its events on items of their own (`EVENT#<digest>`): its first turn
//! reads the event's item too, so that an upgrade never processes an event twice.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use messenger_types::Timestamp;

use crate::dynamo::DynamoStore;
use crate::expr::{Expr, get_n, get_ts, n, n_ms, s, ttl_after_days};
use crate::keys::{event_pk, ledger_archive_sk, thread_pk};
use crate::ledger::{lost_claim, new_claim_token};
use crate::threads::{thread_fields, thread_state};
use crate::{
    CLAIM_LEASE_MS, ClaimToken, EVENT_RECORD_DAYS, StoreError, ThreadKey, ThreadLedger, ThreadState,
};
use conversation::ledger::{Consistency, DoneEntry, Opened, Progress, Step, TurnKey, Version};

/// Above this estimated size (bytes) the thread's item archives its processed
/// entries on the next turn, which keeps it under DynamoDB's 1 KB write unit
/// with one event in progress and the newest outcome.
pub const ARCHIVE_ABOVE: usize = 640;

/// A passing failure kept on an entry is cut to this many characters.
const LAST_ERROR_CHARS: usize = 200;

const IN_PROGRESS: &str = "P";
const DONE: &str = "D";

fn entry_attr(turn: &TurnKey) -> String {
    format!("e_{}", turn.entry())
}

type Item = HashMap<String, AttributeValue>;

const FORGOTTEN_SK: &str = "FORGOTTEN";

/// A thread whose `ttl` has passed is read as a new one (DynamoDB deletes it only
/// within days): only its version is kept, so that the write that takes the
/// event holds, and that write replaces every field of the thread's state.
pub(crate) fn expired_as_absent(item: Item, now: Timestamp) -> Item {
    let expired = get_n(&item, "ttl").is_some_and(|ttl| ttl * 1000 <= now.as_millis());
    if !expired {
        return item;
    }
    item.into_iter().filter(|(k, _)| k == "ver").collect()
}

/// The forget mark's key: a digest of the thread's key, so that the mark holds
/// no id of the person.
fn forgotten_pk(thread: &ThreadKey) -> String {
    use sha2::{Digest, Sha256};
    format!(
        "FORGOTTEN#{}",
        hex::encode(Sha256::digest(thread_pk(thread).as_bytes()))
    )
}

impl DynamoStore {
    /// When the person of this thread was forgotten, if they were.
    async fn forgotten_at(
        &self,
        thread: &ThreadKey,
        read: Consistency,
    ) -> Result<Option<Timestamp>, StoreError> {
        let mark = self
            .get_with(
                "GetItem(forget-mark)",
                forgotten_pk(thread),
                FORGOTTEN_SK,
                read,
            )
            .await?;
        Ok(get_ts(&mark, "at"))
    }
}

fn field<'a>(entry: &'a Item, name: &str) -> Option<&'a AttributeValue> {
    entry.get(name)
}

/// The entries on a thread's item: (entry name, its map).
fn entries(item: &Item) -> impl Iterator<Item = (&str, &Item)> {
    item.iter().filter_map(|(k, v)| {
        let name = k.strip_prefix("e_")?;
        Some((name, v.as_m().ok()?))
    })
}

/// DynamoDB's size of an item: names and values, as it bills them (closely
/// enough to keep the item under a write unit).
pub fn item_size(item: &Item) -> usize {
    item.iter().map(|(k, v)| k.len() + value_size(v)).sum()
}

/// What a thread keeps for good, whatever its ledger does: an ad's context and an
/// account link's code.
const KEPT_WHOLE: [&str; 2] = ["entry_ads_context", "link_code"];

/// The item's size less [`KEPT_WHOLE`]: what archiving can shrink. Archiving is for
/// the ledger's growth; a thread holding an ad's context or a linking code (each
/// bounded) may take a second write unit per write, but never an archive write per
/// turn.
fn ledger_size(item: &Item) -> usize {
    let kept: usize = KEPT_WHOLE
        .iter()
        .filter_map(|k| item.get(*k).map(|v| k.len() + value_size(v)))
        .sum();
    item_size(item).saturating_sub(kept)
}

fn value_size(v: &AttributeValue) -> usize {
    match v {
        AttributeValue::S(s) => s.len(),
        AttributeValue::N(n) => n.trim_start_matches('-').len().div_ceil(2) + 1,
        AttributeValue::B(b) => b.as_ref().len(),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::Ss(v) => v.iter().map(String::len).sum(),
        AttributeValue::Ns(v) => v.iter().map(|n| n.len().div_ceil(2) + 1).sum(),
        AttributeValue::M(m) => {
            3 + m
                .iter()
                .map(|(k, v)| 1 + k.len() + value_size(v))
                .sum::<usize>()
        }
        AttributeValue::L(l) => 3 + l.iter().map(|v| 1 + value_size(v)).sum::<usize>(),
        _ => 0,
    }
}

/// An event's entry in its thread's ledger, as the table holds it: for operators'
/// tools and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    /// The entry's name ([`TurnKey::entry`]).
    pub name: String,
    pub done: bool,
    /// The event's time.
    pub at: Option<Timestamp>,
    /// The outcome as JSON; kept for the thread's newest processed event.
    pub outcome: Option<String>,
    /// While in progress: actions done and started, the lease, the last passing failure.
    pub done_actions: u32,
    pub started_actions: u32,
    pub lease_until: Option<Timestamp>,
    pub last_error: Option<String>,
}

/// Every ledger entry on a thread's item.
pub fn ledger_entries(item: &Item) -> Vec<LedgerEntry> {
    let text = |e: &Item, f: &str| field(e, f).and_then(|v| v.as_s().ok()).cloned();
    let time = |e: &Item, f: &str| {
        field(e, f)
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok())
            .map(Timestamp::from_millis)
    };
    let mut out: Vec<LedgerEntry> = entries(item)
        .map(|(name, e)| LedgerEntry {
            name: name.to_owned(),
            done: text(e, "s").as_deref() == Some(DONE),
            at: time(e, "t"),
            outcome: text(e, "o"),
            done_actions: count(e, "dn"),
            started_actions: count(e, "st"),
            lease_until: time(e, "l"),
            last_error: text(e, "e"),
        })
        .collect();
    out.sort_by(|a, b| (a.at, &a.name).cmp(&(b.at, &b.name)));
    out
}

impl DynamoStore {
    /// An event's entry on its thread, if the thread holds it (an archived
    /// entry is only named in the archive).
    pub async fn ledger_entry(&self, turn: &TurnKey) -> Result<Option<LedgerEntry>, StoreError> {
        let item = self
            .get("GetItem(thread)", thread_pk(&turn.thread), "THREAD")
            .await?;
        let name = turn.entry();
        Ok(ledger_entries(&item).into_iter().find(|e| e.name == name))
    }

    /// Whether the thread's archive names `entry`.
    async fn archived(&self, pk: &str, entry: &str) -> Result<bool, StoreError> {
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :ledger)")
                .expression_attribute_values(":pk", s(pk))
                .expression_attribute_values(":ledger", s("LEDGER#"))
                .set_exclusive_start_key(start)
                .consistent_read(true)
                .send()
                .await
                .map_err(|e| crate::error::from_sdk("Query(ledger archive)", e))?;
            if out.items().iter().any(|item| {
                item.get("ev")
                    .and_then(|v| v.as_ss().ok())
                    .is_some_and(|names| names.iter().any(|n| n == entry))
            }) {
                return Ok(true);
            }
            match out.last_evaluated_key {
                Some(key) => start = Some(key),
                None => return Ok(false),
            }
        }
    }

    /// Writes the archive item that names `done`, before the write that removes
    /// them from the thread. Writing it twice (a take that lost its version and
    /// was made again) changes nothing that matters: names are only looked up.
    async fn archive(&self, pk: &str, version: &Version, now: Timestamp) -> Result<(), StoreError> {
        let newest = version
            .done
            .iter()
            .map(|d| d.at)
            .max()
            .unwrap_or(Timestamp::from_millis(0));
        let item = HashMap::from([
            ("pk".to_owned(), s(pk)),
            (
                "sk".to_owned(),
                s(&ledger_archive_sk(newest, version.number)),
            ),
            (
                "ev".to_owned(),
                AttributeValue::Ss(version.done.iter().map(|d| d.name.clone()).collect()),
            ),
            ("ttl".to_owned(), ttl_after_days(now, EVENT_RECORD_DAYS)),
        ]);
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| crate::error::from_sdk("PutItem(ledger archive)", e))?;
        Ok(())
    }
}

/// What an event's own item (the ledger before it moved onto threads) says.
enum Legacy {
    Open(Progress),
    Done { outcome: Option<String> },
    Busy,
}

impl DynamoStore {
    /// Reads the event's own item, as the ledger kept it before it moved onto
    /// threads, so that a delivery processed before the upgrade is not processed
    /// again after it. Read only for a thread no turn has written yet.
    async fn legacy_entry(&self, turn: &TurnKey, now: Timestamp) -> Result<Legacy, StoreError> {
        let item = self
            .get("GetItem(event)", event_pk(&turn.event), "EVENT")
            .await?;
        let number = |attr| {
            get_n(&item, attr)
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(0)
        };
        Ok(
            match item
                .get("status")
                .and_then(|v| v.as_s().ok())
                .map(String::as_str)
            {
                Some("DONE") => Legacy::Done {
                    outcome: item.get("outcome").and_then(|v| v.as_s().ok()).cloned(),
                },
                Some(_) if get_n(&item, "lease_until").unwrap_or(0) >= now.as_millis() => {
                    Legacy::Busy
                }
                Some(_) => Legacy::Open(Progress {
                    done_actions: number("done_actions"),
                    started_actions: number("started_actions"),
                }),
                None => Legacy::Open(Progress::default()),
            },
        )
    }
}

/// The entry's map for `step`, written whole.
fn entry_value(
    turn: &TurnKey,
    step: Step<'_>,
    token: &ClaimToken,
    now: Timestamp,
) -> AttributeValue {
    let mut m: Item = HashMap::from([("t".to_owned(), n_ms(turn.at))]);
    match step {
        Step::Done { outcome } => {
            m.insert("s".to_owned(), s(DONE));
            m.insert("o".to_owned(), s(outcome));
        }
        Step::Working { done, started } => {
            m.insert("s".to_owned(), s(IN_PROGRESS));
            m.insert("c".to_owned(), s(token.as_str()));
            m.insert("l".to_owned(), n_ms(now.plus_millis(CLAIM_LEASE_MS)));
            m.insert("dn".to_owned(), n(i64::from(done)));
            m.insert("st".to_owned(), n(i64::from(started)));
        }
        Step::Released {
            done,
            started,
            reason,
        } => {
            m.insert("s".to_owned(), s(IN_PROGRESS));
            m.insert("c".to_owned(), s(token.as_str()));
            m.insert("l".to_owned(), n(0));
            m.insert("dn".to_owned(), n(i64::from(done)));
            m.insert("st".to_owned(), n(i64::from(started)));
            m.insert("e".to_owned(), s(&cut(reason)));
        }
    }
    AttributeValue::M(m)
}

fn cut(reason: &str) -> String {
    reason.chars().take(LAST_ERROR_CHARS).collect()
}

fn count(entry: &Item, name: &str) -> u32 {
    field(entry, name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(0)
}

impl ThreadLedger for DynamoStore {
    async fn open_turn(
        &self,
        turn: &TurnKey,
        now: Timestamp,
        read: Consistency,
    ) -> Result<Opened, StoreError> {
        let pk = thread_pk(&turn.thread);
        let item = expired_as_absent(
            self.get_with("GetItem(thread)", pk.clone(), "THREAD", read)
                .await?,
            now,
        );
        let name = turn.entry();
        let archived_until = get_ts(&item, "lg_floor");
        // A person forgotten: the mark, read only when there is no thread (as
        // fresh as the turn's read); a thread created again after the forget
        // carries it as `fg`.
        let forgotten = if item.is_empty() {
            self.forgotten_at(&turn.thread, read).await?
        } else {
            get_ts(&item, "fg")
        };
        let progress = match item.get(&entry_attr(turn)).and_then(|v| v.as_m().ok()) {
            Some(entry)
                if field(entry, "s")
                    .and_then(|v| v.as_s().ok())
                    .map(String::as_str)
                    == Some(DONE) =>
            {
                return Ok(Opened::Duplicate {
                    outcome: field(entry, "o").and_then(|v| v.as_s().ok()).cloned(),
                });
            }
            Some(entry) => {
                let lease = field(entry, "l")
                    .and_then(|v| v.as_n().ok())
                    .and_then(|v| v.parse::<i64>().ok())
                    .unwrap_or(0);
                if lease >= now.as_millis() {
                    return Ok(Opened::Busy);
                }
                Progress {
                    done_actions: count(entry, "dn"),
                    started_actions: count(entry, "st"),
                }
            }
            None => {
                // Commands are stamped at time 0 and are never a copy of an event.
                if turn.at.as_millis() > 0 && forgotten.is_some_and(|f| turn.at <= f) {
                    return Ok(Opened::Duplicate { outcome: None });
                }
                if archived_until.is_some_and(|floor| turn.at <= floor)
                    && self.archived(&pk, &name).await?
                {
                    return Ok(Opened::Duplicate { outcome: None });
                }
                if !item.is_empty() && !item.contains_key("ver") {
                    // A thread last written before the ledger moved onto threads:
                    // its events were recorded on items of their own.
                    match self.legacy_entry(turn, now).await? {
                        Legacy::Open(progress) => progress,
                        Legacy::Done { outcome } => return Ok(Opened::Duplicate { outcome }),
                        Legacy::Busy => return Ok(Opened::Busy),
                    }
                } else {
                    Progress::default()
                }
            }
        };
        let done: Vec<DoneEntry> = entries(&item)
            .filter(|(_, e)| {
                field(e, "s")
                    .and_then(|v| v.as_s().ok())
                    .map(String::as_str)
                    == Some(DONE)
            })
            .map(|(name, e)| DoneEntry {
                name: name.to_owned(),
                at: field(e, "t")
                    .and_then(|v| v.as_n().ok())
                    .and_then(|v| v.parse().ok())
                    .map(Timestamp::from_millis)
                    .unwrap_or(Timestamp::from_millis(0)),
                has_outcome: e.contains_key("o"),
            })
            .collect();
        let archive = ledger_size(&item) > ARCHIVE_ABOVE && !done.is_empty();
        Ok(Opened::Open {
            thread: thread_state(&item),
            progress,
            version: Version {
                number: get_n(&item, "ver")
                    .and_then(|v| u64::try_from(v).ok())
                    .unwrap_or(0),
                done,
                archived_until,
                archive,
                forgotten_until: forgotten,
            },
        })
    }

    async fn forget_person(&self, thread: &ThreadKey, at: Timestamp) -> Result<usize, StoreError> {
        // The mark first: from here on, a copy of an older event recreates nothing.
        let mut expr = Expr::default();
        expr.set("at", n_ms(at))
            .set("ttl", ttl_after_days(at, EVENT_RECORD_DAYS));
        let at_name = expr.name("at");
        let at_value = expr.value(n_ms(at));
        expr.condition(format!(
            "attribute_not_exists({at_name}) OR {at_name} < {at_value}"
        ));
        self.update(
            "UpdateItem(forget-mark)",
            forgotten_pk(thread),
            FORGOTTEN_SK,
            expr,
            false,
        )
        .await?;
        // Then every item under the person's key: the thread, its ledger's
        // archive, the notification tokens.
        let pk = thread_pk(thread);
        let mut erased = 0;
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(&pk))
                .projection_expression("pk, sk")
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| crate::error::from_sdk("Query(forget)", e))?;
            for item in out.items() {
                let Some(sk) = item.get("sk").cloned() else {
                    continue;
                };
                self.client
                    .delete_item()
                    .table_name(&self.table)
                    .key("pk", s(&pk))
                    .key("sk", sk)
                    .send()
                    .await
                    .map_err(|e| crate::error::from_sdk("DeleteItem(forget)", e))?;
                erased += 1;
            }
            start = out.last_evaluated_key;
            if start.is_none() {
                // And the messages of theirs parked while the Page had no token.
                return Ok(erased + self.forget_parked(thread).await?);
            }
        }
    }

    async fn take_turn(
        &self,
        turn: &TurnKey,
        version: Version,
        thread: &ThreadState,
        step: Step<'_>,
        now: Timestamp,
    ) -> Result<Option<ClaimToken>, StoreError> {
        let pk = thread_pk(&turn.thread);
        if version.archive {
            self.archive(&pk, &version, now).await?;
        }
        let token = new_claim_token(now);
        let mut expr = Expr::default();
        thread_fields(&mut expr, thread);
        if let (crate::Person::Psid(psid), Some(last)) =
            (&turn.thread.person, thread.last_user_interaction)
        {
            for (attr, value) in crate::people::index_fields(&turn.thread.page, psid, last) {
                expr.set(attr, s(&value));
            }
        }
        let entry = expr.name(&entry_attr(turn));
        let value = entry_value(turn, step, &token, now);
        expr.set_path(&entry, value);
        if version.archive {
            for done in &version.done {
                let path = expr.name(&format!("e_{}", done.name));
                expr.remove_path(path);
            }
            let newest = version.done.iter().map(|d| d.at).max();
            if let Some(floor) = newest.max(version.archived_until) {
                expr.set("lg_floor", n_ms(floor));
            }
        } else {
            // Only the newest processed event keeps its outcome.
            for done in version.done.iter().filter(|d| d.has_outcome) {
                let path = expr.path(&[&format!("e_{}", done.name), "o"]);
                expr.remove_path(path);
            }
        }
        if version.number == 0
            && let Some(forgotten) = version.forgotten_until
        {
            expr.set("fg", n_ms(forgotten));
        }
        if let Some(days) = self.retention_days {
            expr.set("ttl", ttl_after_days(now, days));
        }
        let ver = expr.name("ver");
        let next = expr.value(n(i64::try_from(version.number + 1).unwrap_or(i64::MAX)));
        expr.sets.push(format!("{ver} = {next}"));
        if version.number == 0 {
            expr.condition(format!("attribute_not_exists({ver})"));
        } else {
            let read = expr.value(n(i64::try_from(version.number).unwrap_or(i64::MAX)));
            expr.condition(format!("{ver} = {read}"));
        }
        Ok(self
            .update("UpdateItem(take)", pk, "THREAD", expr, false)
            .await?
            .map(|_| token))
    }

    async fn step_turn(
        &self,
        turn: &TurnKey,
        token: &ClaimToken,
        step: Step<'_>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut expr = Expr::default();
        let entry = expr.name(&entry_attr(turn));
        let value = entry_value(turn, step, token, now);
        expr.set_path(&entry, value);
        expr.bump_version();
        let claim = expr.path(&[&entry_attr(turn), "c"]);
        let held = expr.value(s(token.as_str()));
        expr.condition(format!("{claim} = {held}"));
        let op = match step {
            Step::Working { .. } => "UpdateItem(step)",
            Step::Done { .. } => "UpdateItem(done)",
            Step::Released { .. } => "UpdateItem(release)",
        };
        match self
            .update(op, thread_pk(&turn.thread), "THREAD", expr, false)
            .await?
        {
            Some(_) => Ok(()),
            // Someone else has the event: releasing it needs nothing more.
            None if matches!(step, Step::Released { .. }) => Ok(()),
            None => Err(lost_claim(op)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_size_counts_names_and_values() {
        let item: Item = HashMap::from([
            ("pk".to_owned(), s("abcd")),
            ("n".to_owned(), n(12345)),
            (
                "e_x".to_owned(),
                AttributeValue::M(HashMap::from([("s".to_owned(), s("D"))])),
            ),
        ]);
        // pk 2 + 4; n 1 + 4; e_x 3 + (3 + 1 + 1 + 1)
        assert_eq!(item_size(&item), 6 + 5 + 9);
    }
}
