//! The DynamoDB adapter of the conversation ports: the client, the table, and the
//! request helpers the ports' implementations share (`ledger`, `threads`,
//! `tokens`).

use std::collections::HashMap;
use std::fmt;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};

use crate::expr::{Expr, s};
use crate::otn;
use crate::{Consistency, StoreError, ThreadKey};

#[derive(Clone)]
pub struct DynamoStore {
    pub(crate) client: Client,
    pub(crate) table: String,
    /// Days a thread's item lives after the person's last event (its `ttl`);
    /// `None`: threads do not expire.
    pub(crate) retention_days: Option<i64>,
}

/// `RetentionDays`' default: a little over a year after the person's last event.
pub const DEFAULT_RETENTION_DAYS: i64 = 400;
/// Never less: a one-time notification token lives a year from its optin, and an
/// optin is an event of the thread, so the thread outlives every token it holds.
pub const MIN_RETENTION_DAYS: i64 = 366;

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
            retention_days: None,
        }
    }

    /// Threads expire `days` after the person's last event (DynamoDB's TTL deletes
    /// them within days after; reads treat an expired thread as absent meanwhile).
    pub fn with_retention_days(mut self, days: i64) -> Self {
        self.retention_days = Some(days.max(MIN_RETENTION_DAYS));
        self
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Runs one UpdateItem. `Ok(None)` when its condition did not hold.
    /// An UpdateItem of one item with `expr`'s changes and condition.
    pub(crate) fn update_request(
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

    pub(crate) async fn update(
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
    pub(crate) async fn update_or_current(
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
    pub(crate) async fn put_new(
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

    pub(crate) async fn get(
        &self,
        op: &'static str,
        pk: String,
        sk: &str,
    ) -> Result<HashMap<String, AttributeValue>, StoreError> {
        self.get_with(op, pk, sk, Consistency::Strong).await
    }

    /// [`DynamoStore::get`] with the read's consistency chosen.
    pub(crate) async fn get_with(
        &self,
        op: &'static str,
        pk: String,
        sk: &str,
        read: Consistency,
    ) -> Result<HashMap<String, AttributeValue>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(pk))
            .key("sk", AttributeValue::S(sk.to_owned()))
            .consistent_read(read == Consistency::Strong)
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
