//! The table's schema, defined once. The tests create their tables from it, and a
//! test compares it with the `Table` resource of `template.yaml`, so the deployed
//! table and the code cannot drift apart.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};

use crate::StoreError;

/// One key attribute (all keys of this table are strings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    pub partition: &'static str,
    pub sort: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Index {
    pub name: &'static str,
    pub key: Key,
    /// The attributes it copies besides the keys (DynamoDB's `INCLUDE`): only what
    /// the queries through it read.
    pub projected: &'static [&'static str],
}

/// What a query through either OTN index reads of an item: the table's keys (always
/// projected) and who the token is for (`tokens::token_ref`). Never the
/// token or its topic: an index is a copy, and a copy of a credential is one more
/// place it can leak from.
pub const TOKEN_OWNER: &[&str] = &["page_id", "psid"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableSchema {
    pub key: Key,
    /// Sparse global secondary indexes, each projecting only what is read through it.
    pub indexes: &'static [Index],
    /// Epoch seconds after which DynamoDB may delete the item. Cleanup only:
    /// correctness never waits for it (expiry is checked on read).
    pub ttl_attribute: &'static str,
}

/// The OTN fan-out index: an item is in it only while its token is ACTIVE.
pub const OTN_BY_TOPIC: Index = Index {
    name: "otn-by-topic",
    key: Key {
        partition: "topic_pk",
        sort: "topic_sk",
    },
    projected: TOKEN_OWNER,
};

/// The OTN expiry index, bucketed by expiry day: the sweeper reads only the
/// buckets that are due, so its cost follows the expired tokens, not the table.
pub const OTN_BY_EXPIRY: Index = Index {
    name: "otn-by-expiry",
    key: Key {
        partition: "expiry_pk",
        sort: "expiry_sk",
    },
    projected: TOKEN_OWNER,
};

/// What the subscriber list reads of a thread ([`crate::people`]): the thread's
/// state fields that say how the person can be messaged. Never an entry point,
/// an account link or the ledger.
pub const THREAD_SUMMARY: &[&str] = &[
    "last_user_ts",
    "last_message_ts",
    "control_ts",
    "control_ours",
    "control_owner",
    "human_ts",
    "reach_ts",
    "unreachable_reason",
];

/// The subscriber list: a thread item is in it once its person has interacted
/// (PSID threads only), keyed by Page and last interaction.
pub const PEOPLE_BY_PAGE: Index = Index {
    name: "people-by-page",
    key: Key {
        partition: "people_pk",
        sort: "people_sk",
    },
    projected: THREAD_SUMMARY,
};

pub const SCHEMA: TableSchema = TableSchema {
    key: Key {
        partition: "pk",
        sort: "sk",
    },
    indexes: &[OTN_BY_TOPIC, OTN_BY_EXPIRY, PEOPLE_BY_PAGE],
    ttl_attribute: "ttl",
};

impl TableSchema {
    /// Every key attribute of the table and its indexes, once each.
    pub fn key_attributes(&self) -> Vec<&'static str> {
        let mut names = vec![self.key.partition, self.key.sort];
        for index in self.indexes {
            for name in [index.key.partition, index.key.sort] {
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
        names
    }
}

fn key_schema(key: Key) -> Result<Vec<KeySchemaElement>, StoreError> {
    [(key.partition, KeyType::Hash), (key.sort, KeyType::Range)]
        .into_iter()
        .map(|(name, kind)| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .map_err(|e| StoreError::invalid("CreateTable", e))
        })
        .collect()
}

/// Creates the table as the template declares it (on-demand, TTL on, the indexes'
/// minimal projection), for tests and the local stack.
pub async fn create_table(client: &Client, name: &str) -> Result<(), StoreError> {
    let schema = SCHEMA;
    let mut request = client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .set_key_schema(Some(key_schema(schema.key)?));
    for attribute in schema.key_attributes() {
        request = request.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(attribute)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(|e| StoreError::invalid("CreateTable", e))?,
        );
    }
    for index in schema.indexes {
        request = request.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(index.name)
                .set_key_schema(Some(key_schema(index.key)?))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::Include)
                        .set_non_key_attributes(Some(
                            index.projected.iter().map(|a| (*a).to_owned()).collect(),
                        ))
                        .build(),
                )
                .build()
                .map_err(|e| StoreError::invalid("CreateTable", e))?,
        );
    }
    request
        .send()
        .await
        .map_err(|e| crate::error::from_sdk("CreateTable", e))?;
    client
        .update_time_to_live()
        .table_name(name)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .attribute_name(schema.ttl_attribute)
                .enabled(true)
                .build()
                .map_err(|e| StoreError::invalid("UpdateTimeToLive", e))?,
        )
        .send()
        .await
        .map_err(|e| crate::error::from_sdk("UpdateTimeToLive", e))?;
    Ok(())
}
