//! Threads, Pages and the tokens an optin stores, on DynamoDB. Every field that
//! events move forward is written by a conditional update that admits newer
//! events only.

use std::collections::{HashMap, HashSet};

use aws_sdk_dynamodb::types::AttributeValue;
use messenger_types::{AppId, PageId, Timestamp};

use crate::dynamo::DynamoStore;
use crate::expr::{Expr, get_bool, get_s, get_ts, n_ms, s, ttl_after_days};
use crate::keys::page_pk;
use crate::otn::{self, NewToken, TokenStatus};
use crate::tokens::index_keys;
use crate::{
    AccountLink, AuthorizationCode, BotState, Control, EntryPoint, PageChange, PageState,
    StoreError, ThreadChange, ThreadKey, ThreadState, ThreadStore, Unreachable,
};

impl DynamoStore {
    /// A recurring notification token: one item per token, whose status follows the
    /// newest optin (STOP retires it, RESUME makes it ACTIVE again). It is in the
    /// expiry index while ACTIVE, and never in the topic index: `notify` commands
    /// are for one-time tokens.
    async fn save_recurring(
        &self,
        t: &NewToken,
        active: bool,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let active = active && t.expires_at > now;
        let id = crate::keys::token_id(&t.token);
        let status = if active {
            TokenStatus::Active
        } else if t.expires_at > now {
            TokenStatus::Retired
        } else {
            TokenStatus::Expired
        };
        let mut expr = Expr::default();
        expr.set("page_id", s(t.page.as_str()))
            .set("psid", s(t.psid.as_str()))
            .set("topic", s(&t.topic))
            .set("token", s(&t.token))
            .set("token_kind", s(t.kind.as_str()))
            .set_if_absent("created_at", n_ms(t.created_at))
            .set("expires_at", n_ms(t.expires_at))
            .set("status", s(status.as_str()))
            .set(
                "ttl",
                ttl_after_days(t.expires_at, otn::OTN_RECORD_GRACE_DAYS),
            );
        let [_, _, (expiry_pk, pk_value), (expiry_sk, sk_value)] = index_keys(
            t.page.as_str(),
            t.psid.as_str(),
            &t.topic,
            &id,
            t.created_at,
            t.expires_at,
        );
        if active {
            expr.set(&expiry_pk, pk_value).set(&expiry_sk, sk_value);
        } else {
            expr.set_opt(&expiry_pk, None).set_opt(&expiry_sk, None);
        }
        expr.only_if_newer("status_ts", t.created_at);
        Ok(self
            .update(
                "UpdateItem(recurring token)",
                crate::keys::thread_pk(&ThreadKey::psid(t.page.clone(), t.psid.clone())),
                &format!("OTN#RN#{id}"),
                expr,
                false,
            )
            .await?
            .is_some())
    }
}

impl ThreadStore for DynamoStore {
    async fn thread(&self, key: &ThreadKey) -> Result<ThreadState, StoreError> {
        let item = self
            .get("GetItem(thread)", crate::keys::thread_pk(key), "THREAD")
            .await?;
        Ok(thread_state(&crate::turns::expired_as_absent(
            item,
            Timestamp::now(),
        )))
    }

    async fn update_thread(
        &self,
        key: &ThreadKey,
        change: &ThreadChange,
    ) -> Result<bool, StoreError> {
        let mut expr = Expr::default();
        thread_change(&mut expr, change);
        expr.bump_version();
        Ok(self
            .update(
                "UpdateItem(thread)",
                crate::keys::thread_pk(key),
                "THREAD",
                expr,
                false,
            )
            .await?
            .is_some())
    }

    async fn update_thread_all(
        &self,
        key: &ThreadKey,
        changes: &[ThreadChange],
    ) -> Result<(), StoreError> {
        // Events mostly arrive in order, and then every change is newer than what the
        // thread holds: one write. If any field already holds something newer, that
        // write changes nothing and each change is applied on its own.
        if changes.len() > 1
            && let Some(expr) = merged_thread_update(changes)
            && self
                .update(
                    "UpdateItem(thread)",
                    crate::keys::thread_pk(key),
                    "THREAD",
                    expr,
                    false,
                )
                .await?
                .is_some()
        {
            return Ok(());
        }
        for change in changes {
            self.update_thread(key, change).await?;
        }
        Ok(())
    }

    async fn page(&self, page: &PageId) -> Result<PageState, StoreError> {
        let item = self.get("GetItem(page)", page_pk(page), "PAGE").await?;
        Ok(PageState {
            policy_action: get_s(&item, "policy_action"),
            policy_reason: get_s(&item, "policy_reason"),
            app_roles: get_s(&item, "app_roles"),
        })
    }

    async fn save_token(
        &self,
        t: &NewToken,
        active: bool,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        if t.kind == otn::TokenKind::Recurring {
            return self.save_recurring(t, active, now).await;
        }
        let active = active && t.expires_at > now;
        let sk = crate::keys::token_sk(t.created_at, &t.token);
        let id = crate::keys::token_id(&t.token);
        let mut item = HashMap::from([
            (
                "pk".to_owned(),
                s(&crate::keys::thread_pk(&ThreadKey::psid(
                    t.page.clone(),
                    t.psid.clone(),
                ))),
            ),
            ("sk".to_owned(), s(&sk)),
            ("page_id".to_owned(), s(t.page.as_str())),
            ("psid".to_owned(), s(t.psid.as_str())),
            ("topic".to_owned(), s(&t.topic)),
            ("token".to_owned(), s(&t.token)),
            ("token_kind".to_owned(), s(t.kind.as_str())),
            ("created_at".to_owned(), n_ms(t.created_at)),
            ("expires_at".to_owned(), n_ms(t.expires_at)),
            (
                "ttl".to_owned(),
                ttl_after_days(t.expires_at, otn::OTN_RECORD_GRACE_DAYS),
            ),
        ]);
        if active {
            item.extend(index_keys(
                t.page.as_str(),
                t.psid.as_str(),
                &t.topic,
                &id,
                t.created_at,
                t.expires_at,
            ));
            item.insert("status".to_owned(), s(TokenStatus::Active.as_str()));
        } else {
            let status = if t.expires_at > now {
                TokenStatus::Retired
            } else {
                TokenStatus::Expired
            };
            item.insert("status".to_owned(), s(status.as_str()));
        }
        // The token item's key starts with its creation time, so an optin replayed
        // with the same token and another timestamp would make a second, ACTIVE
        // item. A guard keyed by the token alone is claimed first and names the
        // one item this token may have; a retry of the same save (a crash between
        // the two writes) finds its own item named and finishes.
        let pk = item["pk"].clone();
        let guard_sk = crate::keys::token_guard_sk(&t.token);
        let guard = HashMap::from([
            ("pk".to_owned(), pk.clone()),
            ("sk".to_owned(), s(&guard_sk)),
            ("token_sk".to_owned(), s(&sk)),
            (
                "ttl".to_owned(),
                ttl_after_days(t.expires_at, otn::OTN_RECORD_GRACE_DAYS),
            ),
        ]);
        if !self.put_new("PutItem(token guard)", guard).await? {
            let pk = pk.as_s().cloned().unwrap_or_default();
            let existing = self.get("GetItem(token guard)", pk, &guard_sk).await?;
            if get_s(&existing, "token_sk").as_deref() != Some(sk.as_str()) {
                return Ok(false);
            }
        }
        self.put_new("PutItem(token)", item).await
    }

    async fn update_page(&self, page: &PageId, change: &PageChange) -> Result<bool, StoreError> {
        let mut expr = Expr::default();
        match change {
            PageChange::PolicyEnforcement { action, reason, at } => {
                expr.set("policy_action", s(action))
                    .set_opt("policy_reason", reason.as_deref())
                    .only_if_newer("policy_ts", *at);
            }
            PageChange::AppRoles { roles, at } => {
                expr.set("app_roles", s(roles))
                    .only_if_newer("roles_ts", *at);
            }
        }
        Ok(self
            .update("UpdateItem(page)", page_pk(page), "PAGE", expr, false)
            .await?
            .is_some())
    }
}

/// A thread's state from its item.
pub(crate) fn thread_state(item: &HashMap<String, AttributeValue>) -> ThreadState {
    let reach_ts = get_ts(item, "reach_ts");
    let unreachable_reason = get_s(item, "unreachable_reason");
    ThreadState {
        last_user_interaction: get_ts(item, "last_user_ts"),
        last_user_message: get_ts(item, "last_message_ts"),
        control: get_ts(item, "control_ts").map(|since| Control {
            ours: get_bool(item, "control_ours").unwrap_or(true),
            owner: get_s(item, "control_owner").map(AppId::new),
            since,
        }),
        entry_point: get_ts(item, "entry_ts").map(|at| EntryPoint {
            reference: get_s(item, "entry_ref"),
            source: get_s(item, "entry_source"),
            ad_id: get_s(item, "entry_ad_id"),
            ads_context_data: get_s(item, "entry_ads_context")
                .and_then(|json| serde_json::from_str(&json).ok()),
            at,
        }),
        account_link: get_ts(item, "link_ts").map(|at| AccountLink {
            linked: get_bool(item, "link_linked").unwrap_or(false),
            authorization_code: get_s(item, "link_code")
                .as_deref()
                .and_then(AuthorizationCode::new),
            at,
        }),
        reachable_since: reach_ts.filter(|_| unreachable_reason.is_none()),
        human_reply_at: get_ts(item, "human_ts"),
        bot_state: get_s(item, "bot_state").map(BotState::from_stored),
        unreachable: match (unreachable_reason, reach_ts) {
            (Some(reason), Some(at)) => Some(Unreachable { reason, at }),
            _ => None,
        },
    }
}

/// Adds every field of `state` to `expr`, removing those it does not hold: the
/// thread's item as `state` says, for a write made at the version it was read at.
pub(crate) fn thread_fields(expr: &mut Expr, state: &ThreadState) {
    let ts = |t: Option<Timestamp>| t.map(|t| t.as_millis().to_string());
    let number = |expr: &mut Expr, attr: &str, v: Option<String>| match v {
        Some(v) => {
            expr.set(attr, AttributeValue::N(v));
        }
        None => {
            expr.set_opt(attr, None);
        }
    };
    number(expr, "last_user_ts", ts(state.last_user_interaction));
    number(expr, "last_message_ts", ts(state.last_user_message));
    let control = state.control.as_ref();
    number(expr, "control_ts", ts(control.map(|c| c.since)));
    match control {
        Some(c) => {
            expr.set("control_ours", AttributeValue::Bool(c.ours));
        }
        None => {
            expr.set_opt("control_ours", None);
        }
    }
    expr.set_opt(
        "control_owner",
        control.and_then(|c| c.owner.as_ref()).map(AppId::as_str),
    );
    let entry = state.entry_point.as_ref();
    number(expr, "entry_ts", ts(entry.map(|e| e.at)));
    expr.set_opt("entry_ref", entry.and_then(|e| e.reference.as_deref()))
        .set_opt("entry_source", entry.and_then(|e| e.source.as_deref()))
        .set_opt("entry_ad_id", entry.and_then(|e| e.ad_id.as_deref()))
        .set_opt(
            "entry_ads_context",
            entry.and_then(ads_context_json).as_deref(),
        );
    let link = state.account_link.as_ref();
    number(expr, "link_ts", ts(link.map(|l| l.at)));
    expr.set_opt(
        "link_code",
        link.and_then(|l| l.authorization_code.as_ref())
            .map(AuthorizationCode::expose),
    );
    match link {
        Some(l) => {
            expr.set("link_linked", AttributeValue::Bool(l.linked));
        }
        None => {
            expr.set_opt("link_linked", None);
        }
    }
    number(expr, "reach_ts", ts(state.reachability_at()));
    number(expr, "human_ts", ts(state.human_reply_at));
    expr.set_opt("bot_state", state.bot_state.as_ref().map(BotState::as_str));
    expr.set_opt(
        "unreachable_reason",
        state.unreachable.as_ref().map(|u| u.reason.as_str()),
    );
}

/// An entry point's ad context as stored: its JSON text.
fn ads_context_json(e: &EntryPoint) -> Option<String> {
    e.ads_context_data
        .as_ref()
        .and_then(|m| serde_json::to_string(m).ok())
}

/// Adds `change` to `expr`: its fields, and the condition that it is newer than
/// what the thread holds.
pub(crate) fn thread_change(expr: &mut Expr, change: &ThreadChange) {
    match change {
        ThreadChange::UserInteraction { at } => {
            expr.only_if_newer("last_user_ts", *at);
        }
        ThreadChange::UserMessage { at } => {
            expr.only_if_newer("last_message_ts", *at);
        }
        ThreadChange::Control(c) => {
            expr.set("control_ours", AttributeValue::Bool(c.ours));
            match (&c.owner, c.ours) {
                (Some(owner), _) => {
                    expr.set("control_owner", s(owner.as_str()));
                }
                // Ours again: whoever owned it before no longer does.
                (None, true) => {
                    expr.set_opt("control_owner", None);
                }
                // Someone else's, unnamed (a standby event): keep the owner we know.
                (None, false) => {}
            }
            expr.only_if_newer("control_ts", c.since);
        }
        ThreadChange::EntryPoint(e) => {
            expr.set_opt("entry_ref", e.reference.as_deref())
                .set_opt("entry_source", e.source.as_deref())
                .set_opt("entry_ad_id", e.ad_id.as_deref())
                .set_opt("entry_ads_context", ads_context_json(e).as_deref())
                .only_if_newer("entry_ts", e.at);
        }
        ThreadChange::AccountLink(l) => {
            // `unlinked` carries no code: the one kept is removed.
            expr.set("link_linked", AttributeValue::Bool(l.linked))
                .set_opt(
                    "link_code",
                    l.authorization_code.as_ref().map(AuthorizationCode::expose),
                )
                .only_if_newer("link_ts", l.at);
        }
        ThreadChange::Unreachable(u) => {
            expr.set("unreachable_reason", s(&u.reason))
                .only_if_newer("reach_ts", u.at);
        }
        ThreadChange::Reachable { at } => {
            expr.set_opt("unreachable_reason", None)
                .only_if_newer("reach_ts", *at);
        }
        ThreadChange::HumanReply { at } => {
            expr.only_if_newer("human_ts", *at);
        }
    }
}

/// The changes of one event as one conditional write, when no two of them touch the
/// same field (DynamoDB refuses overlapping paths in one update).
pub(crate) fn merged_thread_update(changes: &[ThreadChange]) -> Option<Expr> {
    let mut expr = Expr::default();
    let mut conditions = Vec::new();
    let mut fields: HashSet<String> = HashSet::new();
    for change in changes {
        let mut alone = Expr::default();
        thread_change(&mut alone, change);
        if alone.names.values().any(|f| fields.contains(f)) {
            return None;
        }
        fields.extend(alone.names.into_values());
        thread_change(&mut expr, change);
        if let Some(c) = expr.condition.take() {
            conditions.push(format!("({c})"));
        }
    }
    expr.condition = (!conditions.is_empty()).then(|| conditions.join(" AND "));
    expr.bump_version();
    Some(expr)
}
