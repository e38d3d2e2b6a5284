//! The table in `template.yaml` and the schema in the code are one definition:
//! this test fails as soon as either changes without the other.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

use messenger_store::schema::{Key, SCHEMA};
use serde_norway::Value;

fn template_table() -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml");
    let template: Value = serde_norway::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    template["Resources"]["Table"]["Properties"].clone()
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v:?}"))
}

fn key_schema(v: &Value) -> Key {
    let mut partition = None;
    let mut sort = None;
    for element in v.as_sequence().unwrap() {
        let name = str_of(&element["AttributeName"]).to_owned().leak();
        match str_of(&element["KeyType"]) {
            "HASH" => partition = Some(&*name),
            "RANGE" => sort = Some(&*name),
            other => panic!("unknown KeyType {other}"),
        }
    }
    Key {
        partition: partition.unwrap(),
        sort: sort.unwrap(),
    }
}

#[test]
fn the_template_declares_the_table_the_code_uses() {
    let table = template_table();
    assert_eq!(str_of(&table["BillingMode"]), "PAY_PER_REQUEST");
    assert_eq!(key_schema(&table["KeySchema"]), SCHEMA.key);

    let attributes: BTreeSet<(String, String)> = table["AttributeDefinitions"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| {
            (
                str_of(&a["AttributeName"]).to_owned(),
                str_of(&a["AttributeType"]).to_owned(),
            )
        })
        .collect();
    let expected: BTreeSet<(String, String)> = SCHEMA
        .key_attributes()
        .into_iter()
        .map(|a| (a.to_owned(), "S".to_owned()))
        .collect();
    assert_eq!(attributes, expected);

    let indexes: BTreeMap<String, (Key, String)> = table["GlobalSecondaryIndexes"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|i| {
            (
                str_of(&i["IndexName"]).to_owned(),
                (
                    key_schema(&i["KeySchema"]),
                    str_of(&i["Projection"]["ProjectionType"]).to_owned(),
                ),
            )
        })
        .collect();
    let expected: BTreeMap<String, (Key, String)> = SCHEMA
        .indexes
        .iter()
        .map(|i| (i.name.to_owned(), (i.key, "ALL".to_owned())))
        .collect();
    assert_eq!(indexes, expected);

    assert_eq!(
        str_of(&table["TimeToLiveSpecification"]["AttributeName"]),
        SCHEMA.ttl_attribute
    );
    assert_eq!(
        table["TimeToLiveSpecification"]["Enabled"],
        Value::Bool(true)
    );
}

#[test]
fn a_drifted_template_is_caught() {
    // The comparison itself must be able to fail: rename one index key in a copy.
    let mut table = template_table();
    let index = &mut table["GlobalSecondaryIndexes"][0]["KeySchema"][0]["AttributeName"];
    *index = Value::String("renamed".to_owned());
    assert_ne!(
        key_schema(&table["GlobalSecondaryIndexes"][0]["KeySchema"]),
        SCHEMA.indexes[0].key
    );
}
