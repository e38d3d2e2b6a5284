//! `PageRegistry`: each Page's sealed token and status, and the messages parked
//! while a Page is not `ACTIVE`.
//!
//! | item | pk | sk |
//! |---|---|---|
//! | a Page's credentials: `st`, `why`, `at`, `tok` (sealed), `tv`; `chk` (last checked), `seen` (last event) | `PAGES` | `PAGE#<page>` |
//! | a parked queue message: `grp`, `body`, `th` (the person's thread key) | `PARKED#<page>` | `<parked at, 15 digits>#<message id>` |
//!
//! Every Page's record is in one partition, so `page status` lists them with a
//! Query; the processor reads a record once per Page per credentials TTL.

use std::collections::HashMap;

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use messenger_types::{PageId, Timestamp};

use crate::dynamo::DynamoStore;
use crate::expr::{Expr, get_n, get_s, get_ts, n, n_ms, s};
use crate::keys::thread_pk;
use crate::{PageRecord, PageRegistry, PageStatus, Parked, ParkedMessage, StoreError, ThreadKey};

pub(crate) const PAGES_PK: &str = "PAGES";

pub(crate) fn page_record_sk(page: &PageId) -> String {
    format!("PAGE#{page}")
}

pub(crate) fn parked_pk(page: &PageId) -> String {
    format!("PARKED#{page}")
}

fn record(item: &HashMap<String, AttributeValue>) -> Option<PageRecord> {
    Some(PageRecord {
        status: PageStatus::parse(&get_s(item, "st")?)?,
        reason: get_s(item, "why"),
        since: get_ts(item, "at").unwrap_or(Timestamp::from_millis(0)),
        sealed_token: match item.get("tok") {
            Some(AttributeValue::B(blob)) => Some(blob.as_ref().to_vec()),
            _ => None,
        },
        token_version: get_n(item, "tv"),
        checked_at: get_ts(item, "chk"),
        last_event_at: get_ts(item, "seen"),
    })
}

impl DynamoStore {
    /// One update of the Page's record. `None`: its condition refused it.
    async fn update_page(
        &self,
        op: &'static str,
        page: &PageId,
        expr: Expr,
    ) -> Result<Option<HashMap<String, AttributeValue>>, StoreError> {
        self.update(op, PAGES_PK.to_owned(), &page_record_sk(page), expr, false)
            .await
    }

    /// Sets `attr` to `at` on a record that exists, when later than what it holds.
    async fn note_on_page(
        &self,
        op: &'static str,
        page: &PageId,
        attr: &str,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let mut expr = Expr::default();
        let st = expr.name("st");
        let n = expr.name(attr);
        let v = expr.value(n_ms(at));
        expr.set(attr, n_ms(at)).condition(format!(
            "attribute_exists({st}) AND (attribute_not_exists({n}) OR {n} < {v})"
        ));
        self.update_page(op, page, expr).await.map(|_| ())
    }

    /// The parked messages of the person on `thread`, erased by `forget`.
    pub(crate) async fn forget_parked(&self, thread: &ThreadKey) -> Result<usize, StoreError> {
        let pk = parked_pk(&thread.page);
        let mut erased = 0;
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .filter_expression("th = :th")
            .expression_attribute_values(":pk", s(&pk))
            .expression_attribute_values(":th", s(&thread_pk(thread)))
            .projection_expression("sk")
            .consistent_read(true)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| crate::error::from_sdk("Query(forget-parked)", e))?;
            for sk in page.items().iter().filter_map(|item| item.get("sk")) {
                self.client
                    .delete_item()
                    .table_name(&self.table)
                    .key("pk", s(&pk))
                    .key("sk", sk.clone())
                    .send()
                    .await
                    .map_err(|e| crate::error::from_sdk("DeleteItem(forget-parked)", e))?;
                erased += 1;
            }
        }
        Ok(erased)
    }
}

impl PageRegistry for DynamoStore {
    async fn page_record(&self, page: &PageId) -> Result<Option<PageRecord>, StoreError> {
        let item = self
            .get(
                "GetItem(page-record)",
                PAGES_PK.to_owned(),
                &page_record_sk(page),
            )
            .await?;
        Ok(record(&item))
    }

    async fn page_records(&self) -> Result<Vec<(PageId, PageRecord)>, StoreError> {
        let mut records = Vec::new();
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(PAGES_PK))
            .consistent_read(true)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| crate::error::from_sdk("Query(page-records)", e))?;
            for item in page.items() {
                let id = get_s(item, "sk").and_then(|sk| sk.strip_prefix("PAGE#").map(PageId::new));
                if let (Some(id), Some(r)) = (id, record(item)) {
                    records.push((id, r));
                }
            }
        }
        Ok(records)
    }

    async fn store_page_token(
        &self,
        page: &PageId,
        sealed: Vec<u8>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut expr = Expr::default();
        expr.set("st", s(PageStatus::Active.as_str()))
            .set("at", n_ms(now))
            .set("tok", AttributeValue::B(Blob::new(sealed)))
            .set("tv", n(now.as_millis()))
            .set_opt("why", None);
        self.update_page("UpdateItem(page-token)", page, expr)
            .await?;
        Ok(())
    }

    async fn mark_page_invalid(
        &self,
        page: &PageId,
        token_version: Option<i64>,
        reason: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut expr = Expr::default();
        expr.set("st", s(PageStatus::Invalid.as_str()))
            .set("why", s(reason))
            .set("at", n_ms(now));
        let tv = expr.name("tv");
        let condition = match token_version {
            Some(version) => {
                let v = expr.value(n(version));
                format!("{tv} = {v}")
            }
            None => format!("attribute_not_exists({tv})"),
        };
        expr.condition(condition);
        let applied = self
            .update_page("UpdateItem(page-invalid)", page, expr)
            .await?;
        Ok(applied.is_some())
    }

    async fn forget_page_token(
        &self,
        page: &PageId,
        reason: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut expr = Expr::default();
        expr.set("st", s(PageStatus::Missing.as_str()))
            .set("why", s(reason))
            .set("at", n_ms(now))
            .set_opt("tok", None)
            .set_opt("tv", None);
        self.update_page("UpdateItem(page-forget-token)", page, expr)
            .await?;
        Ok(())
    }

    async fn page_checked(&self, page: &PageId, now: Timestamp) -> Result<(), StoreError> {
        self.note_on_page("UpdateItem(page-checked)", page, "chk", now)
            .await
    }

    async fn page_seen(&self, page: &PageId, at: Timestamp) -> Result<(), StoreError> {
        self.note_on_page("UpdateItem(page-seen)", page, "seen", at)
            .await
    }

    async fn park(
        &self,
        page: &PageId,
        message: &ParkedMessage,
        thread: Option<&ThreadKey>,
        now: Timestamp,
    ) -> Result<Parked, StoreError> {
        // The Page's status, in the same transaction: `MISSING` when it has no
        // record yet; refused when a token was stored meanwhile.
        let mut expr = Expr::default();
        expr.set_if_absent("st", s(PageStatus::Missing.as_str()))
            .set_if_absent("why", s("no token"))
            .set_if_absent("at", n_ms(now));
        let st = expr.name("st");
        let active = expr.value(s(PageStatus::Active.as_str()));
        expr.condition(format!("attribute_not_exists({st}) OR {st} <> {active}"));
        let status = Update::builder()
            .table_name(&self.table)
            .key("pk", s(PAGES_PK))
            .key("sk", s(&page_record_sk(page)))
            .update_expression(expr.update_expression())
            .set_expression_attribute_names(Some(expr.names))
            .set_expression_attribute_values(Some(expr.values))
            .set_condition_expression(expr.condition)
            .build()
            .map_err(|e| StoreError::invalid("TransactWriteItems(park)", e))?;
        let mut item = HashMap::from([
            ("pk".to_owned(), s(&parked_pk(page))),
            ("sk".to_owned(), s(&message.key)),
            ("grp".to_owned(), s(&message.group)),
            ("body".to_owned(), s(&message.body)),
        ]);
        if let Some(thread) = thread {
            item.insert("th".to_owned(), s(&thread_pk(thread)));
        }
        let kept = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .build()
            .map_err(|e| StoreError::invalid("TransactWriteItems(park)", e))?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(status).build())
            .transact_items(TransactWriteItem::builder().put(kept).build())
            .send()
            .await;
        match result {
            Ok(_) => Ok(Parked::Kept),
            Err(e) => match e.as_service_error() {
                // Only the status update has a condition.
                Some(TransactWriteItemsError::TransactionCanceledException(cancel))
                    if cancel.cancellation_reasons().first().and_then(|r| r.code())
                        == Some("ConditionalCheckFailed") =>
                {
                    Ok(Parked::PageActive)
                }
                _ => Err(crate::error::from_sdk("TransactWriteItems(park)", e)),
            },
        }
    }

    async fn parked(
        &self,
        page: &PageId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ParkedMessage>, StoreError> {
        let pk = parked_pk(page);
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression(if after.is_some() {
                "pk = :pk AND sk > :after"
            } else {
                "pk = :pk"
            })
            .set_expression_attribute_values(Some(match after {
                Some(a) => HashMap::from([(":pk".to_owned(), s(&pk)), (":after".to_owned(), s(a))]),
                None => HashMap::from([(":pk".to_owned(), s(&pk))]),
            }))
            .consistent_read(true)
            .limit(i32::try_from(limit.clamp(1, 1000)).unwrap_or(1000))
            .send()
            .await
            .map_err(|e| crate::error::from_sdk("Query(parked)", e))?;
        Ok(out
            .items()
            .iter()
            .filter_map(|item| {
                Some(ParkedMessage {
                    key: get_s(item, "sk")?,
                    group: get_s(item, "grp")?,
                    body: get_s(item, "body")?,
                })
            })
            .collect())
    }

    async fn unpark(&self, page: &PageId, key: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(&parked_pk(page)))
            .key("sk", s(key))
            .send()
            .await
            .map_err(|e| crate::error::from_sdk("DeleteItem(parked)", e))?;
        Ok(())
    }
}
