//! The [`Store`] on DynamoDB.

use std::collections::{HashMap, HashSet};
use std::fmt;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use messenger_types::{AppId, EventKey, PageId, Timestamp};

use crate::TokenStore;
use crate::otn::{self, NewToken, SpendRefused, StoredToken, SweepPage, TokenRef, TokenStatus};
use crate::{
    AccountLink, CLAIM_LEASE_MS, Claim, ClaimToken, Control, EVENT_RECORD_DAYS, EntryPoint,
    PageChange, PageState, Store, StoreError, StoreErrorKind, ThreadChange, ThreadKey, ThreadState,
    Unreachable,
};

const IN_PROGRESS: &str = "IN_PROGRESS";
const DONE: &str = "DONE";

#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

impl fmt::Debug for DynamoStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynamoStore")
            .field("table", &self.table)
            .finish()
    }
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Runs one UpdateItem. `Ok(None)` when its condition did not hold.
    /// An UpdateItem of one item with `expr`'s changes and condition.
    fn update_request(
        &self,
        pk: String,
        sk: &str,
        expr: Expr,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(pk))
            .key("sk", AttributeValue::S(sk.to_owned()))
            .update_expression(expr.update_expression())
            .set_expression_attribute_names(Some(expr.names))
            .set_expression_attribute_values(Some(expr.values))
            .set_condition_expression(expr.condition)
    }

    async fn update(
        &self,
        op: &'static str,
        pk: String,
        sk: &str,
        expr: Expr,
        return_new: bool,
    ) -> Result<Option<HashMap<String, AttributeValue>>, StoreError> {
        let mut request = self.update_request(pk, sk, expr);
        if return_new {
            request = request.return_values(ReturnValue::AllNew);
        }
        match request.send().await {
            Ok(out) => Ok(Some(out.attributes.unwrap_or_default())),
            Err(e) if is_condition_failure(&e) => Ok(None),
            Err(e) => Err(crate::error::from_sdk(op, e)),
        }
    }

    /// Like [`Self::update`] with the new item returned, but a refused condition
    /// returns the item as it stands (`ReturnValuesOnConditionCheckFailure`), so
    /// the caller needs no second request to learn why. `Err(None)` when the
    /// refusal came without the item.
    async fn update_or_current(
        &self,
        op: &'static str,
        pk: String,
        sk: &str,
        expr: Expr,
    ) -> Result<
        Result<HashMap<String, AttributeValue>, Option<HashMap<String, AttributeValue>>>,
        StoreError,
    > {
        let result = self
            .update_request(pk, sk, expr)
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(
                aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure::AllOld,
            )
            .send()
            .await;
        match result {
            Ok(out) => Ok(Ok(out.attributes.unwrap_or_default())),
            Err(e) => match e.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(refused)) => {
                    Ok(Err(refused.item().cloned()))
                }
                _ => Err(crate::error::from_sdk(op, e)),
            },
        }
    }

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
        let id = otn::token_id(&t.token);
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

    /// Marks an ACTIVE token whose time is up EXPIRED and takes it out of both
    /// indexes; `false` when it was spent or expired meanwhile.
    async fn expire_if_due(&self, at: &TokenRef, now: Timestamp) -> Result<bool, StoreError> {
        let mut expr = Expr::default();
        expr.set("status", s(TokenStatus::Expired.as_str()));
        for attr in INDEX_ATTRIBUTES {
            expr.set_opt(attr, None);
        }
        let status = expr.name("status");
        let expires = expr.name("expires_at");
        let active = expr.value(s(TokenStatus::Active.as_str()));
        let now_v = expr.value(n_ms(now));
        expr.condition(format!("{status} = {active} AND {expires} <= {now_v}"));
        Ok(self
            .update("UpdateItem(expire)", token_pk(at), &at.sk, expr, false)
            .await?
            .is_some())
    }

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

    /// Every OTN token stored on a thread, oldest first.
    pub async fn tokens_of(&self, thread: &ThreadKey) -> Result<Vec<otn::StoredToken>, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :otn)")
            .expression_attribute_values(":pk", s(&crate::keys::thread_pk(thread)))
            .expression_attribute_values(":otn", s("OTN#"))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| crate::error::from_sdk("Query(tokens)", e))?;
        Ok(out.items().iter().filter_map(otn::stored_token).collect())
    }

    /// Writes an item that must not exist yet; `false` when it already does.
    async fn put_new(
        &self,
        op: &'static str,
        item: HashMap<String, AttributeValue>,
    ) -> Result<bool, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(sk)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error().is_some_and(
                    aws_sdk_dynamodb::operation::put_item::PutItemError::is_conditional_check_failed_exception,
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(crate::error::from_sdk(op, e)),
        }
    }

    async fn get(
        &self,
        op: &'static str,
        pk: String,
        sk: &str,
    ) -> Result<HashMap<String, AttributeValue>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(pk))
            .key("sk", AttributeValue::S(sk.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| crate::error::from_sdk(op, e))?;
        Ok(out.item.unwrap_or_default())
    }
}

fn is_condition_failure(e: &SdkError<UpdateItemError>) -> bool {
    e.as_service_error()
        .is_some_and(UpdateItemError::is_conditional_check_failed_exception)
}

/// An UpdateItem expression whose attribute names all go through placeholders
/// (`status`, `ttl`, `owner`, `source` and `action` are reserved words).
#[derive(Default)]
struct Expr {
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
    sets: Vec<String>,
    removes: Vec<String>,
    condition: Option<String>,
}

impl Expr {
    fn name(&mut self, attr: &str) -> String {
        if let Some((placeholder, _)) = self.names.iter().find(|(_, a)| *a == attr) {
            return placeholder.clone();
        }
        let placeholder = format!("#n{}", self.names.len());
        self.names.insert(placeholder.clone(), attr.to_owned());
        placeholder
    }

    fn value(&mut self, v: AttributeValue) -> String {
        let placeholder = format!(":v{}", self.values.len());
        self.values.insert(placeholder.clone(), v);
        placeholder
    }

    fn set(&mut self, attr: &str, v: AttributeValue) -> &mut Self {
        let (n, v) = (self.name(attr), self.value(v));
        self.sets.push(format!("{n} = {v}"));
        self
    }

    fn set_opt(&mut self, attr: &str, v: Option<&str>) -> &mut Self {
        match v {
            Some(v) => self.set(attr, s(v)),
            None => {
                let n = self.name(attr);
                self.removes.push(n);
                self
            }
        }
    }

    fn set_if_absent(&mut self, attr: &str, v: AttributeValue) -> &mut Self {
        let (n, v) = (self.name(attr), self.value(v));
        self.sets.push(format!("{n} = if_not_exists({n}, {v})"));
        self
    }

    fn condition(&mut self, condition: String) -> &mut Self {
        self.condition = Some(condition);
        self
    }

    /// Sets `ts_attr` to `at` and makes the whole update conditional on `at` being
    /// newer than what `ts_attr` holds.
    fn only_if_newer(&mut self, ts_attr: &str, at: Timestamp) -> &mut Self {
        let n = self.name(ts_attr);
        let v = self.value(n_ms(at));
        self.sets.push(format!("{n} = {v}"));
        self.condition(format!("attribute_not_exists({n}) OR {n} < {v}"))
    }

    fn update_expression(&self) -> String {
        let mut out = format!("SET {}", self.sets.join(", "));
        if !self.removes.is_empty() {
            out.push_str(" REMOVE ");
            out.push_str(&self.removes.join(", "));
        }
        out
    }
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn n_ms(t: Timestamp) -> AttributeValue {
    n(t.as_millis())
}

fn get_s(item: &HashMap<String, AttributeValue>, attr: &str) -> Option<String> {
    item.get(attr).and_then(|v| v.as_s().ok()).cloned()
}

fn get_n(item: &HashMap<String, AttributeValue>, attr: &str) -> Option<i64> {
    item.get(attr)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

fn get_ts(item: &HashMap<String, AttributeValue>, attr: &str) -> Option<Timestamp> {
    get_n(item, attr).map(Timestamp::from_millis)
}

fn get_bool(item: &HashMap<String, AttributeValue>, attr: &str) -> Option<bool> {
    item.get(attr).and_then(|v| v.as_bool().ok()).copied()
}

fn event_pk(key: &EventKey) -> String {
    format!("EVENT#{}", key.digest())
}

fn page_pk(page: &PageId) -> String {
    format!("PAGE#{page}")
}

fn ttl_after_days(now: Timestamp, days: i64) -> AttributeValue {
    n(now.as_millis() / 1000 + days * 86_400)
}

fn new_claim_token(now: Timestamp) -> ClaimToken {
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

impl Store for DynamoStore {
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

    async fn thread(&self, key: &ThreadKey) -> Result<ThreadState, StoreError> {
        let item = self
            .get("GetItem(thread)", crate::keys::thread_pk(key), "THREAD")
            .await?;
        Ok(ThreadState {
            last_user_interaction: get_ts(&item, "last_user_ts"),
            last_user_message: get_ts(&item, "last_message_ts"),
            control: get_ts(&item, "control_ts").map(|since| Control {
                ours: get_bool(&item, "control_ours").unwrap_or(true),
                owner: get_s(&item, "control_owner").map(AppId::new),
                since,
            }),
            entry_point: get_ts(&item, "entry_ts").map(|at| EntryPoint {
                reference: get_s(&item, "entry_ref"),
                source: get_s(&item, "entry_source"),
                at,
            }),
            account_link: get_ts(&item, "link_ts").map(|at| AccountLink {
                linked: get_bool(&item, "link_linked").unwrap_or(false),
                at,
            }),
            unreachable: match (
                get_s(&item, "unreachable_reason"),
                get_ts(&item, "reach_ts"),
            ) {
                (Some(reason), Some(at)) => Some(Unreachable { reason, at }),
                _ => None,
            },
        })
    }

    async fn update_thread(
        &self,
        key: &ThreadKey,
        change: &ThreadChange,
    ) -> Result<bool, StoreError> {
        let mut expr = Expr::default();
        thread_change(&mut expr, change);
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
        let sk = otn::token_sk(t.created_at, &t.token);
        let id = otn::token_id(&t.token);
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
        let guard_sk = otn::token_guard_sk(&t.token);
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

/// The sparse index keys of an ACTIVE token.
fn index_keys(
    page: &str,
    psid: &str,
    topic: &str,
    id: &str,
    created_at: Timestamp,
    expires_at: Timestamp,
) -> [(String, AttributeValue); 4] {
    [
        (
            "topic_pk".to_owned(),
            s(&otn::topic_pk(&PageId::new(page), topic)),
        ),
        (
            "topic_sk".to_owned(),
            s(&format!("{}#{psid}#{id}", otn::padded(created_at))),
        ),
        ("expiry_pk".to_owned(), s(&otn::expiry_bucket(expires_at))),
        (
            "expiry_sk".to_owned(),
            s(&format!("{}#{page}#{psid}#{id}", otn::padded(expires_at))),
        ),
    ]
}

fn held_by(expr: &mut Expr, token: &ClaimToken) {
    let claim = expr.name("claim");
    let v = expr.value(s(token.as_str()));
    expr.condition(format!("{claim} = {v}"));
}

fn lost_claim(op: &'static str) -> StoreError {
    StoreError {
        op,
        kind: StoreErrorKind::LostClaim,
        message: "the event was taken over by another worker after this one's lease ran out"
            .to_owned(),
        source: None,
    }
}

const INDEX_ATTRIBUTES: [&str; 4] = ["topic_pk", "topic_sk", "expiry_pk", "expiry_sk"];

/// DynamoDB's LastEvaluatedKey (all string attributes here) as an opaque cursor.
fn encode_cursor(key: Option<&HashMap<String, AttributeValue>>) -> Option<String> {
    let key = key?;
    let map: std::collections::BTreeMap<&str, &str> = key
        .iter()
        .filter_map(|(k, v)| Some((k.as_str(), v.as_s().ok()?.as_str())))
        .collect();
    serde_json::to_string(&map).ok()
}

fn decode_cursor(
    cursor: Option<&str>,
) -> Result<Option<HashMap<String, AttributeValue>>, StoreError> {
    let Some(cursor) = cursor else {
        return Ok(None);
    };
    let map: HashMap<String, String> = serde_json::from_str(cursor).map_err(|_| {
        StoreError::invalid("Query", "the paging cursor is not one this store made")
    })?;
    Ok(Some(
        map.into_iter()
            .map(|(k, v)| (k, AttributeValue::S(v)))
            .collect(),
    ))
}

fn token_ref(item: &HashMap<String, AttributeValue>) -> Option<TokenRef> {
    Some(TokenRef {
        page: PageId::new(get_s(item, "page_id")?),
        psid: messenger_types::Psid::new(get_s(item, "psid")?),
        sk: get_s(item, "sk")?,
    })
}

fn token_pk(at: &TokenRef) -> String {
    crate::keys::thread_pk(&ThreadKey::psid(at.page.clone(), at.psid.clone()))
}

impl TokenStore for DynamoStore {
    async fn active_tokens(
        &self,
        page: &PageId,
        topic: &str,
        after: Option<&str>,
        limit: i32,
    ) -> Result<(Vec<TokenRef>, Option<String>), StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(crate::schema::OTN_BY_TOPIC.name)
            .key_condition_expression("topic_pk = :t")
            .expression_attribute_values(":t", s(&otn::topic_pk(page, topic)))
            .set_exclusive_start_key(decode_cursor(after)?)
            .limit(limit)
            .send()
            .await
            .map_err(|e| crate::error::from_sdk("Query(otn-by-topic)", e))?;
        let refs = out.items().iter().filter_map(token_ref).collect();
        Ok((refs, encode_cursor(out.last_evaluated_key())))
    }

    async fn spend_token(
        &self,
        at: &TokenRef,
        spend_id: &str,
        now: Timestamp,
    ) -> Result<Result<StoredToken, SpendRefused>, StoreError> {
        let mut expr = Expr::default();
        expr.set("status", s(TokenStatus::Used.as_str()))
            .set("used_at", n_ms(now))
            .set("spend_id", s(spend_id));
        for attr in INDEX_ATTRIBUTES {
            expr.set_opt(attr, None);
        }
        let status = expr.name("status");
        let expires = expr.name("expires_at");
        let kind = expr.name("token_kind");
        let active = expr.value(s(TokenStatus::Active.as_str()));
        let now_v = expr.value(n_ms(now));
        let one_time = expr.value(s(otn::TokenKind::OneTime.as_str()));
        expr.condition(format!(
            "{status} = {active} AND {expires} > {now_v} AND {kind} = {one_time}"
        ));
        if let Some(item) = self
            .update("UpdateItem(spend)", token_pk(at), &at.sk, expr, true)
            .await?
        {
            return otn::stored_token(&item).map(Ok).ok_or_else(|| {
                StoreError::invalid("UpdateItem(spend)", "the token item is incomplete")
            });
        }
        let item = self.get("GetItem(token)", token_pk(at), &at.sk).await?;
        Ok(Err(match otn::stored_token(&item) {
            None => SpendRefused::Unknown,
            Some(t) if t.kind != otn::TokenKind::OneTime => SpendRefused::Unknown,
            Some(t) if t.status != TokenStatus::Active => SpendRefused::NotActive(t.status),
            Some(_) => {
                // Past its year: take it out of the indexes now rather than leave it
                // to be listed by every notify until a sweep reaches its day.
                self.expire_if_due(at, now).await?;
                SpendRefused::Expired
            }
        }))
    }

    async fn unspend_token(&self, token: &StoredToken, spend_id: &str) -> Result<bool, StoreError> {
        let mut expr = Expr::default();
        expr.set("status", s(TokenStatus::Active.as_str()));
        let id = token.sk.rsplit('#').next().unwrap_or_default();
        for (attr, value) in index_keys(
            token.page.as_str(),
            token.psid.as_str(),
            &token.topic,
            id,
            token.created_at,
            token.expires_at,
        ) {
            expr.set(&attr, value);
        }
        expr.set_opt("spend_id", None).set_opt("used_at", None);
        let status = expr.name("status");
        let spend = expr.name("spend_id");
        let used = expr.value(s(TokenStatus::Used.as_str()));
        let mine = expr.value(s(spend_id));
        expr.condition(format!("{status} = {used} AND {spend} = {mine}"));
        let at = TokenRef {
            page: token.page.clone(),
            psid: token.psid.clone(),
            sk: token.sk.clone(),
        };
        Ok(self
            .update("UpdateItem(unspend)", token_pk(&at), &token.sk, expr, false)
            .await?
            .is_some())
    }

    async fn retire_token(
        &self,
        at: &TokenRef,
        spend_id: &str,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let mut expr = Expr::default();
        expr.set("status", s(TokenStatus::Retired.as_str()))
            .set("retired_reason", s(reason));
        let spend = expr.name("spend_id");
        let mine = expr.value(s(spend_id));
        expr.condition(format!("{spend} = {mine}"));
        Ok(self
            .update("UpdateItem(retire)", token_pk(at), &at.sk, expr, false)
            .await?
            .is_some())
    }

    async fn sweep_expired(
        &self,
        bucket_day: &str,
        now: Timestamp,
        after: Option<&str>,
        limit: i32,
    ) -> Result<SweepPage, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(crate::schema::OTN_BY_EXPIRY.name)
            .key_condition_expression("expiry_pk = :b AND expiry_sk < :now")
            .expression_attribute_values(":b", s(&format!("EXPIRY#{bucket_day}")))
            .expression_attribute_values(":now", s(&otn::padded(now)))
            .set_exclusive_start_key(decode_cursor(after)?)
            .limit(limit)
            .send()
            .await
            .map_err(|e| crate::error::from_sdk("Query(otn-by-expiry)", e))?;
        let mut page = SweepPage {
            read: u64::try_from(out.scanned_count()).unwrap_or(0),
            next: encode_cursor(out.last_evaluated_key()),
            ..SweepPage::default()
        };
        for at in out.items().iter().filter_map(token_ref) {
            if self.expire_if_due(&at, now).await? {
                page.expired += 1;
            }
        }
        Ok(page)
    }

    async fn sweep_cursor(&self) -> Result<Option<String>, StoreError> {
        let item = self
            .get("GetItem(sweeper)", "SWEEPER".to_owned(), "CURSOR")
            .await?;
        Ok(get_s(&item, "day"))
    }

    async fn set_sweep_cursor(&self, day: &str) -> Result<(), StoreError> {
        let mut expr = Expr::default();
        expr.set("day", s(day));
        self.update(
            "UpdateItem(sweeper)",
            "SWEEPER".to_owned(),
            "CURSOR",
            expr,
            false,
        )
        .await
        .map(|_| ())
    }
}

/// Adds `change` to `expr`: its fields, and the condition that it is newer than
/// what the thread holds.
fn thread_change(expr: &mut Expr, change: &ThreadChange) {
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
                .only_if_newer("entry_ts", e.at);
        }
        ThreadChange::AccountLink(l) => {
            expr.set("link_linked", AttributeValue::Bool(l.linked))
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
    }
}

/// The changes of one event as one conditional write, when no two of them touch the
/// same field (DynamoDB refuses overlapping paths in one update).
fn merged_thread_update(changes: &[ThreadChange]) -> Option<Expr> {
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
    Some(expr)
}
