//! The event ledger on DynamoDB: one item per event (`EVENT#<digest>`), claimed
//! by a conditional write before anything is done, then action progress and
//! completion written only with the claim.

use messenger_types::{EventKey, Timestamp};

use crate::dynamo::DynamoStore;
use crate::expr::{Expr, get_n, get_s, n, n_ms, s, ttl_after_days};
use crate::keys::event_pk;
use crate::{
    CLAIM_LEASE_MS, Claim, ClaimToken, EVENT_RECORD_DAYS, EventLedger, StoreError, StoreErrorKind,
};

impl DynamoStore {
    /// Sets how many of an event's actions were started, holding its claim.
    async fn set_started(
        &self,
        key: &EventKey,
        token: &ClaimToken,
        started: u32,
        op: &'static str,
    ) -> Result<(), StoreError> {
        let mut expr = Expr::default();
        expr.set("started_actions", n(i64::from(started)));
        held_by(&mut expr, token);
        self.update(op, event_pk(key), "EVENT", expr, false)
            .await?
            .map(|_| ())
            .ok_or_else(|| lost_claim(op))
    }
}

pub(crate) fn new_claim_token(now: Timestamp) -> ClaimToken {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    ClaimToken::new(format!(
        "{}-{}-{}-{nanos}",
        std::process::id(),
        now.as_millis(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ))
}

impl EventLedger for DynamoStore {
    async fn claim_event(&self, key: &EventKey, now: Timestamp) -> Result<Claim, StoreError> {
        let token = new_claim_token(now);
        let mut expr = Expr::default();
        expr.set("status", s(IN_PROGRESS))
            .set("lease_until", n_ms(now.plus_millis(CLAIM_LEASE_MS)))
            .set("claim", s(token.as_str()))
            .set_if_absent("event_key", s(key.as_str()))
            .set_if_absent("done_actions", n(0))
            .set_if_absent("started_actions", n(0))
            .set_if_absent("ttl", ttl_after_days(now, EVENT_RECORD_DAYS));
        let status = expr.name("status");
        let lease = expr.name("lease_until");
        let in_progress = expr.value(s(IN_PROGRESS));
        let now_v = expr.value(n_ms(now));
        // New, or left in progress by a worker whose lease has run out.
        expr.condition(format!(
            "attribute_not_exists({status}) OR ({status} = {in_progress} AND {lease} < {now_v})"
        ));
        match self
            .update_or_current("UpdateItem(claim)", event_pk(key), "EVENT", expr)
            .await?
        {
            Ok(item) => {
                let count = |attr| {
                    get_n(&item, attr)
                        .and_then(|n| u32::try_from(n).ok())
                        .unwrap_or(0)
                };
                Ok(Claim::Acquired {
                    token,
                    done_actions: count("done_actions"),
                    started_actions: count("started_actions"),
                })
            }
            Err(current) => {
                // The record as it stood when the claim was refused; read it only
                // when DynamoDB did not return it.
                let item = match current {
                    Some(item) if item.contains_key("status") => item,
                    _ => self.get("GetItem(event)", event_pk(key), "EVENT").await?,
                };
                Ok(match get_s(&item, "status").as_deref() {
                    Some(DONE) => Claim::Duplicate {
                        outcome: get_s(&item, "outcome"),
                    },
                    _ => Claim::Busy,
                })
            }
        }
    }

    async fn start_action(
        &self,
        key: &EventKey,
        token: &ClaimToken,
        n: u32,
    ) -> Result<(), StoreError> {
        self.set_started(key, token, n, "UpdateItem(start)").await
    }

    async fn abandon_action(
        &self,
        key: &EventKey,
        token: &ClaimToken,
        n: u32,
    ) -> Result<(), StoreError> {
        self.set_started(key, token, n.saturating_sub(1), "UpdateItem(abandon)")
            .await
    }

    async fn record_progress(
        &self,
        key: &EventKey,
        token: &ClaimToken,
        done_actions: u32,
    ) -> Result<(), StoreError> {
        let mut expr = Expr::default();
        expr.set("done_actions", n(i64::from(done_actions)))
            .set("started_actions", n(i64::from(done_actions)));
        held_by(&mut expr, token);
        self.update("UpdateItem(progress)", event_pk(key), "EVENT", expr, false)
            .await?
            .map(|_| ())
            .ok_or_else(|| lost_claim("UpdateItem(progress)"))
    }

    async fn complete_event(
        &self,
        key: &EventKey,
        token: &ClaimToken,
        outcome: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut expr = Expr::default();
        expr.set("status", s(DONE))
            .set("outcome", s(outcome))
            .set("completed_at", n_ms(now))
            .set("ttl", ttl_after_days(now, EVENT_RECORD_DAYS));
        held_by(&mut expr, token);
        self.update("UpdateItem(complete)", event_pk(key), "EVENT", expr, false)
            .await?
            .map(|_| ())
            .ok_or_else(|| lost_claim("UpdateItem(complete)"))
    }

    async fn release_event(
        &self,
        key: &EventKey,
        token: &ClaimToken,
        reason: &str,
    ) -> Result<(), StoreError> {
        let mut expr = Expr::default();
        expr.set("lease_until", n(0)).set("last_error", s(reason));
        held_by(&mut expr, token);
        // A lost claim here needs no action: someone else has the event.
        self.update("UpdateItem(release)", event_pk(key), "EVENT", expr, false)
            .await
            .map(|_| ())
    }
}

pub(crate) fn held_by(expr: &mut Expr, token: &ClaimToken) {
    let claim = expr.name("claim");
    let v = expr.value(s(token.as_str()));
    expr.condition(format!("{claim} = {v}"));
}

pub(crate) fn lost_claim(op: &'static str) -> StoreError {
    StoreError {
        op,
        kind: StoreErrorKind::LostClaim,
        message: "the event was taken over by another worker after this one's lease ran out"
            .to_owned(),
        source: None,
    }
}

pub(crate) const IN_PROGRESS: &str = "IN_PROGRESS";

pub(crate) const DONE: &str = "DONE";
