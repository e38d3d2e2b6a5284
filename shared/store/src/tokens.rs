//! One-time notification tokens on DynamoDB: the topic index for `notify`, the
//! conditional spend, and the expiry index the sweeper reads.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use messenger_types::{PageId, Timestamp};

use crate::dynamo::DynamoStore;
use crate::expr::{Expr, get_s, n_ms, s};
use crate::keys::token_pk;
use crate::otn::{self, SpendRefused, StalePage, StoredToken, SweepPage, TokenRef, TokenStatus};
use crate::{StoreError, TokenStore};

impl DynamoStore {
    /// One page of a bucket of the expiry index (`EXPIRY#<day>` or
    /// `SENDING#<shard>`): the entries due before `now`, after the cursor `after`.
    async fn due_in(
        &self,
        bucket: &str,
        now: Timestamp,
        after: Option<&str>,
        limit: i32,
        op: &'static str,
    ) -> Result<aws_sdk_dynamodb::operation::query::QueryOutput, StoreError> {
        self.client
            .query()
            .table_name(&self.table)
            .index_name(crate::schema::OTN_BY_EXPIRY.name)
            .key_condition_expression("expiry_pk = :b AND expiry_sk < :now")
            .expression_attribute_values(":b", s(bucket))
            .expression_attribute_values(":now", s(&crate::keys::padded(now)))
            .set_exclusive_start_key(decode_cursor(after)?)
            .limit(limit)
            .send()
            .await
            .map_err(|e| crate::error::from_sdk(op, e))
    }

    /// Gives back a token whose spend `spend` has been sending since before its
    /// lease ran out at `until`: ACTIVE again with its index keys, or EXPIRED
    /// (out of every index) when its year is up. Conditional on the same spend and
    /// lease, so a spender that finished meanwhile wins.
    async fn give_back(
        &self,
        token: &StoredToken,
        spend: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut expr = Expr::default();
        if token.expires_at > now {
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
        } else {
            expr.set("status", s(TokenStatus::Expired.as_str()));
            for attr in INDEX_ATTRIBUTES {
                expr.set_opt(attr, None);
            }
        }
        expr.set_opt("spend_id", None)
            .set_opt("used_at", None)
            .set_opt("sending_until", None);
        let status = expr.name("status");
        let spend_attr = expr.name("spend_id");
        let until_attr = expr.name("sending_until");
        let used = expr.value(s(TokenStatus::Used.as_str()));
        let mine = expr.value(s(spend));
        let until_v = expr.value(n_ms(until));
        expr.condition(format!(
            "{status} = {used} AND {spend_attr} = {mine} AND {until_attr} = {until_v}"
        ));
        let at = TokenRef {
            page: token.page.clone(),
            psid: token.psid.clone(),
            sk: token.sk.clone(),
        };
        Ok(self
            .update(
                "UpdateItem(give back)",
                token_pk(&at),
                &token.sk,
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
}

/// The expiry index keys of a token whose send is unfinished: its shard of the
/// unfinished sends, ordered by when the spend's lease runs out.
fn sending_keys(at: &TokenRef, until: Timestamp) -> [(&'static str, AttributeValue); 2] {
    let id = at.sk.rsplit('#').next().unwrap_or_default();
    [
        ("expiry_pk", s(&otn::sending_bucket(id))),
        (
            "expiry_sk",
            s(&format!(
                "{}#{}#{}#{id}",
                crate::keys::padded(until),
                at.page,
                at.psid
            )),
        ),
    ]
}

/// The sparse index keys of an ACTIVE token.
pub(crate) fn index_keys(
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
            s(&crate::keys::topic_pk(&PageId::new(page), topic)),
        ),
        (
            "topic_sk".to_owned(),
            s(&format!("{}#{psid}#{id}", crate::keys::padded(created_at))),
        ),
        ("expiry_pk".to_owned(), s(&otn::expiry_bucket(expires_at))),
        (
            "expiry_sk".to_owned(),
            s(&format!(
                "{}#{page}#{psid}#{id}",
                crate::keys::padded(expires_at)
            )),
        ),
    ]
}

/// DynamoDB's LastEvaluatedKey (all string attributes here) as an opaque cursor.
pub(crate) fn encode_cursor(key: Option<&HashMap<String, AttributeValue>>) -> Option<String> {
    let key = key?;
    let map: std::collections::BTreeMap<&str, &str> = key
        .iter()
        .filter_map(|(k, v)| Some((k.as_str(), v.as_s().ok()?.as_str())))
        .collect();
    serde_json::to_string(&map).ok()
}

pub(crate) fn decode_cursor(
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

/// The topic index keys a notify for `topic` reads, in order: the normalised key,
/// then, when it differs, the key of tokens stored before topics were normalised
/// with exactly this wording (they keep that key until spent, given back or
/// expired: a token given back is re-keyed to the normalised key).
fn topic_index_keys(page: &PageId, topic: &str) -> Vec<String> {
    let normalised = crate::keys::topic_pk(page, topic);
    let legacy = crate::keys::legacy_topic_pk(page, topic);
    if legacy == normalised {
        vec![normalised]
    } else {
        vec![normalised, legacy]
    }
}

/// The name, in a fan-out's cursor, of the index key it is reading.
const CURSOR_KEY: &str = "@in";

/// A fan-out's cursor: the index key it reads (`@in`) and where in it to go on
/// (DynamoDB's LastEvaluatedKey; none: from that key's start).
fn topic_cursor(key: &str, last: Option<&HashMap<String, AttributeValue>>) -> String {
    let mut map: std::collections::BTreeMap<&str, &str> = last
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.as_str(), v.as_s().ok()?.as_str())))
        .collect();
    map.insert(CURSOR_KEY, key);
    serde_json::to_string(&map).unwrap_or_default()
}

/// Which of `keys` a cursor continues in, and where. A cursor made before it
/// named its key (a fan-out queued before topics were normalised) continues in
/// the key its LastEvaluatedKey holds.
#[allow(clippy::type_complexity)]
fn decode_topic_cursor(
    cursor: Option<&str>,
    keys: &[String],
) -> Result<(usize, Option<HashMap<String, AttributeValue>>), StoreError> {
    let Some(mut start) = decode_cursor(cursor)? else {
        return Ok((0, None));
    };
    let named = match start.remove(CURSOR_KEY) {
        Some(AttributeValue::S(key)) => Some(key),
        _ => start.get("topic_pk").and_then(|v| v.as_s().ok()).cloned(),
    };
    let at = named
        .and_then(|key| keys.iter().position(|k| *k == key))
        .ok_or_else(|| StoreError::invalid("Query", "the paging cursor is for another topic"))?;
    Ok((at, (!start.is_empty()).then_some(start)))
}

/// A token's place, from an item of either OTN index: reads only the keys and what
/// the indexes project ([`crate::schema::TOKEN_OWNER`]).
pub(crate) fn token_ref(item: &HashMap<String, AttributeValue>) -> Option<TokenRef> {
    Some(TokenRef {
        page: PageId::new(get_s(item, "page_id")?),
        psid: messenger_types::Psid::new(get_s(item, "psid")?),
        sk: get_s(item, "sk")?,
    })
}

pub(crate) const INDEX_ATTRIBUTES: [&str; 4] = ["topic_pk", "topic_sk", "expiry_pk", "expiry_sk"];

impl TokenStore for DynamoStore {
    async fn active_tokens(
        &self,
        page: &PageId,
        topic: &str,
        after: Option<&str>,
        limit: i32,
    ) -> Result<(Vec<TokenRef>, Option<String>), StoreError> {
        let keys = topic_index_keys(page, topic);
        let (at, start) = decode_topic_cursor(after, &keys)?;
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(crate::schema::OTN_BY_TOPIC.name)
            .key_condition_expression("topic_pk = :t")
            .expression_attribute_values(":t", s(&keys[at]))
            .set_exclusive_start_key(start)
            .limit(limit)
            .send()
            .await
            .map_err(|e| crate::error::from_sdk("Query(otn-by-topic)", e))?;
        let refs = out.items().iter().filter_map(token_ref).collect();
        let next = match out.last_evaluated_key() {
            Some(last) => Some(topic_cursor(&keys[at], Some(last))),
            None => keys.get(at + 1).map(|next| topic_cursor(next, None)),
        };
        Ok((refs, next))
    }

    async fn person_tokens(
        &self,
        page: &PageId,
        psid: &messenger_types::Psid,
        topic: &str,
    ) -> Result<Vec<TokenRef>, StoreError> {
        let thread = crate::ThreadKey::psid(page.clone(), psid.clone());
        // Compared by key here, so tokens stored with their wording before topics
        // were normalised match too.
        let key = otn::topic_key(topic);
        Ok(self
            .tokens_of(&thread)
            .await?
            .into_iter()
            .filter(|t| t.status == TokenStatus::Active && otn::topic_key(&t.topic) == key)
            .map(|t| TokenRef {
                page: t.page,
                psid: t.psid,
                sk: t.sk,
            })
            .collect())
    }

    async fn tokens_held(
        &self,
        page: &PageId,
        psid: &messenger_types::Psid,
    ) -> Result<Vec<StoredToken>, StoreError> {
        self.tokens_of(&crate::ThreadKey::psid(page.clone(), psid.clone()))
            .await
    }

    async fn spend_token(
        &self,
        at: &TokenRef,
        spend_id: &str,
        now: Timestamp,
    ) -> Result<Result<StoredToken, SpendRefused>, StoreError> {
        let sending_until = now.plus_millis(otn::SENDING_LEASE_MS);
        let mut expr = Expr::default();
        expr.set("status", s(TokenStatus::Used.as_str()))
            .set("used_at", n_ms(now))
            .set("spend_id", s(spend_id))
            .set("sending_until", n_ms(sending_until));
        for attr in ["topic_pk", "topic_sk"] {
            expr.set_opt(attr, None);
        }
        // While its send has no recorded fate the token is listed in the expiry
        // index under the unfinished sends, due when the spend's lease runs out.
        for (attr, value) in sending_keys(at, sending_until) {
            expr.set(attr, value);
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
        let item = match self
            .update_or_current("UpdateItem(spend)", token_pk(at), &at.sk, expr)
            .await?
        {
            Ok(item) => {
                return otn::stored_token(&item).map(Ok).ok_or_else(|| {
                    StoreError::invalid("UpdateItem(spend)", "the token item is incomplete")
                });
            }
            Err(Some(item)) if item.contains_key("status") => item,
            Err(_) => self.get("GetItem(token)", token_pk(at), &at.sk).await?,
        };
        Ok(Err(match otn::stored_token(&item) {
            None => SpendRefused::Unknown,
            Some(t) if t.kind != otn::TokenKind::OneTime => SpendRefused::Unknown,
            // DynamoDB applied this very spend and its answer was lost: the SDK's
            // retry (or the caller's) then finds the token USED, by this spend.
            Some(t) if t.status == TokenStatus::Used && t.spend_id.as_deref() == Some(spend_id) => {
                return Ok(Ok(t));
            }
            Some(t) if t.status != TokenStatus::Active => SpendRefused::NotActive(t.status),
            Some(_) => {
                // Past its year: take it out of the indexes now rather than leave it
                // to be listed by every notify until a sweep reaches its day.
                self.expire_if_due(at, now).await?;
                SpendRefused::Expired
            }
        }))
    }

    async fn finish_spend(&self, at: &TokenRef, spend_id: &str) -> Result<bool, StoreError> {
        let mut expr = Expr::default();
        for attr in ["sending_until", "expiry_pk", "expiry_sk"] {
            expr.set_opt(attr, None);
        }
        let status = expr.name("status");
        let spend = expr.name("spend_id");
        let used = expr.value(s(TokenStatus::Used.as_str()));
        let mine = expr.value(s(spend_id));
        expr.condition(format!("{status} = {used} AND {spend} = {mine}"));
        Ok(self
            .update(
                "UpdateItem(finish spend)",
                token_pk(at),
                &at.sk,
                expr,
                false,
            )
            .await?
            .is_some())
    }

    async fn give_back_stale_spends(
        &self,
        shard: u32,
        now: Timestamp,
        after: Option<&str>,
        limit: i32,
    ) -> Result<StalePage, StoreError> {
        let out = self
            .due_in(
                &format!("SENDING#{shard}"),
                now,
                after,
                limit,
                "Query(otn-sending)",
            )
            .await?;
        let mut page = StalePage {
            read: u64::try_from(out.scanned_count()).unwrap_or(0),
            next: encode_cursor(out.last_evaluated_key()),
            ..StalePage::default()
        };
        for at in out.items().iter().filter_map(token_ref) {
            // The index is eventually consistent: the token as it stands decides.
            let item = self.get("GetItem(token)", token_pk(&at), &at.sk).await?;
            let Some(token) = otn::stored_token(&item) else {
                continue;
            };
            let (Some(spend), Some(until)) = (token.spend_id.clone(), token.sending_until) else {
                continue;
            };
            if token.status != TokenStatus::Used || until > now {
                continue;
            }
            if self.give_back(&token, &spend, until, now).await? {
                page.given_back += 1;
            }
        }
        Ok(page)
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
        expr.set_opt("spend_id", None)
            .set_opt("used_at", None)
            .set_opt("sending_until", None);
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
        for attr in ["sending_until", "expiry_pk", "expiry_sk"] {
            expr.set_opt(attr, None);
        }
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
            .due_in(
                &format!("EXPIRY#{bucket_day}"),
                now,
                after,
                limit,
                "Query(otn-by-expiry)",
            )
            .await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notify_reads_the_normalised_key_then_the_exact_wording_of_older_tokens() {
        let page = PageId::new("1");
        let keys = topic_index_keys(&page, "Back in Stock");
        assert_eq!(
            keys,
            [
                crate::keys::topic_pk(&page, "back in stock"),
                crate::keys::legacy_topic_pk(&page, "Back in Stock")
            ]
        );
        // A topic already in its normalised form has one key: old tokens are under it.
        assert_eq!(topic_index_keys(&page, "back in stock").len(), 1);
    }

    #[test]
    fn a_fan_out_cursor_says_which_key_it_reads_and_where() {
        let keys = vec!["K0".to_owned(), "K1".to_owned()];
        assert_eq!(decode_topic_cursor(None, &keys).unwrap(), (0, None));
        let last = HashMap::from([
            ("topic_pk".to_owned(), s("K0")),
            ("topic_sk".to_owned(), s("0001#2#ab")),
        ]);
        let (at, start) =
            decode_topic_cursor(Some(&topic_cursor("K0", Some(&last))), &keys).unwrap();
        assert_eq!((at, start), (0, Some(last.clone())));
        // The next key from its start.
        assert_eq!(
            decode_topic_cursor(Some(&topic_cursor("K1", None)), &keys).unwrap(),
            (1, None)
        );
        // A cursor queued before cursors named their key: the key its position holds.
        let old = encode_cursor(Some(&HashMap::from([
            ("topic_pk".to_owned(), s("K1")),
            ("topic_sk".to_owned(), s("0001#2#ab")),
        ])));
        assert_eq!(decode_topic_cursor(old.as_deref(), &keys).unwrap().0, 1);
        // Another topic's cursor is refused rather than read in the wrong place.
        assert!(decode_topic_cursor(Some(&topic_cursor("K9", None)), &keys).is_err());
    }
}
