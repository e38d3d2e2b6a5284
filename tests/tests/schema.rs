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

/// An index's projection: its type and the non-key attributes it copies.
type Projection = (String, BTreeSet<String>);

/// The projection the template gives a new stack: `!If [ProjectsAll, ALL, <this>]`
/// (`IndexProjection=all` keeps the full copy of stacks made before, which
/// CloudFormation cannot change in place).
fn projection(v: &Value) -> Projection {
    let chosen = match v {
        Value::Tagged(tagged) if tagged.tag.to_string().trim_start_matches('!') == "If" => {
            let branches = tagged.value.as_sequence().unwrap();
            assert_eq!(str_of(&branches[0]), "ProjectsAll");
            assert_eq!(str_of(&branches[1]["ProjectionType"]), "ALL");
            &branches[2]
        }
        other => other,
    };
    (
        str_of(&chosen["ProjectionType"]).to_owned(),
        chosen["NonKeyAttributes"]
            .as_sequence()
            .map(|a| a.iter().map(|a| str_of(a).to_owned()).collect())
            .unwrap_or_default(),
    )
}

#[test]
fn the_template_declares_the_table_the_code_uses() {
    matches_schema(&template_table());
}

/// Panics, saying what differs, unless `table` declares the code's schema.
fn matches_schema(table: &Value) {
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

    let indexes: BTreeMap<String, (Key, Projection)> = table["GlobalSecondaryIndexes"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|i| {
            (
                str_of(&i["IndexName"]).to_owned(),
                (key_schema(&i["KeySchema"]), projection(&i["Projection"])),
            )
        })
        .collect();
    let expected: BTreeMap<String, (Key, Projection)> = SCHEMA
        .indexes
        .iter()
        .map(|i| {
            (
                i.name.to_owned(),
                (
                    i.key,
                    (
                        "INCLUDE".to_owned(),
                        i.projected.iter().map(|a| (*a).to_owned()).collect(),
                    ),
                ),
            )
        })
        .collect();
    assert_eq!(indexes, expected);
    for (name, (_, (_, attributes))) in &indexes {
        for never in ["token", "topic"] {
            assert!(
                !attributes.contains(never),
                "the index {name} copies the token's {never}"
            );
        }
    }

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
    // The comparison must be able to fail: break a copy of the template's table in
    // each way it could drift and run the same comparison on it.
    type Drift = fn(&mut Value);
    let drifts: [(&str, Drift); 4] = [
        ("the token copied into an index", |t| {
            t["GlobalSecondaryIndexes"][1]["Projection"] = serde_norway::from_str(
                "ProjectionType: INCLUDE\nNonKeyAttributes: [page_id, psid, token]",
            )
            .unwrap()
        }),
        ("index key renamed", |t| {
            t["GlobalSecondaryIndexes"][0]["KeySchema"][0]["AttributeName"] =
                Value::String("renamed".into())
        }),
        ("TTL attribute renamed", |t| {
            t["TimeToLiveSpecification"]["AttributeName"] = Value::String("expires".into())
        }),
        ("sort key dropped", |t| {
            t["KeySchema"].as_sequence_mut().unwrap().pop();
        }),
    ];
    for (what, drift) in drifts {
        let mut table = template_table();
        drift(&mut table);
        let caught = std::panic::catch_unwind(|| matches_schema(&table)).is_err();
        assert!(caught, "{what} went unnoticed");
    }
}

#[test]
fn the_claim_lease_outlives_an_invocation_and_expires_before_redelivery() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml");
    let template: Value = serde_norway::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let timeout_ms = template["Resources"]["ProcessorFunction"]["Properties"]["Timeout"]
        .as_i64()
        .unwrap()
        * 1000;
    let visibility_ms = template["Resources"]["EventsQueue"]["Properties"]["VisibilityTimeout"]
        .as_i64()
        .unwrap()
        * 1000;
    let lease = messenger_store::CLAIM_LEASE_MS;
    assert!(
        timeout_ms < lease,
        "a live invocation could lose its claims"
    );
    assert!(
        lease < visibility_ms,
        "a redelivery would find a crashed claim still held"
    );
    assert!(
        visibility_ms >= 6 * timeout_ms,
        "AWS asks for 6 x the function timeout"
    );
}

/// The processor's margins (processor/src/budget.rs: each the sum of the calls it
/// guards, at their SDK and Graph timeouts) fit in the function's timeout: a message
/// started with its margin can reach its first action, and a fan-out page fits.
#[test]
fn a_message_and_its_first_action_fit_in_the_processors_timeout() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml");
    let template: Value = serde_norway::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let timeout = std::time::Duration::from_secs(
        template["Resources"]["ProcessorFunction"]["Properties"]["Timeout"]
            .as_u64()
            .unwrap(),
    );
    let (message, action) = (
        processor::MIN_TIME_PER_MESSAGE,
        processor::MIN_TIME_PER_ACTION,
    );
    assert!(
        message + action <= timeout,
        "{message:?} + {action:?} > {timeout:?}"
    );
    assert!(processor::budget::MIN_TIME_PER_FAN_OUT_PAGE < timeout);
    // Each margin covers at least one of the calls it guards at its worst.
    assert!(action > processor::budget::GRAPH_CALL + processor::budget::AWS_CALL);
    assert!(message > processor::budget::AWS_CALL);
    // Without a deadline (the emulator's), a fan-out allows itself one invocation.
    assert_eq!(processor::notify::FALLBACK_BUDGET, timeout);
}

/// The table `create_table` makes (for the tests and the local stack), read back
/// from the emulator, is the template's table: billing, keys, attribute types,
/// each index's keys and projection, and TTL. And the template declares nothing
/// about the table's data that the code does not know of.
#[tokio::test]
async fn the_table_the_code_creates_is_the_templates_table() {
    let sdk = integration_tests::emulator().await;
    let name = integration_tests::table(&sdk).await;
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
    let described = dynamo
        .describe_table()
        .table_name(&name)
        .send()
        .await
        .unwrap()
        .table
        .unwrap();
    let ttl = dynamo
        .describe_time_to_live()
        .table_name(&name)
        .send()
        .await
        .unwrap()
        .time_to_live_description
        .unwrap();

    let mut created = serde_norway::Mapping::new();
    let key_schema = |keys: &[aws_sdk_dynamodb::types::KeySchemaElement]| {
        Value::Sequence(
            keys.iter()
                .map(|k| {
                    let mut m = serde_norway::Mapping::new();
                    m.insert("AttributeName".into(), k.attribute_name().into());
                    m.insert("KeyType".into(), k.key_type().as_str().into());
                    Value::Mapping(m)
                })
                .collect(),
        )
    };
    created.insert(
        "BillingMode".into(),
        described
            .billing_mode_summary()
            .and_then(|b| b.billing_mode())
            .map_or("PROVISIONED", |b| b.as_str())
            .into(),
    );
    created.insert("KeySchema".into(), key_schema(described.key_schema()));
    created.insert(
        "AttributeDefinitions".into(),
        Value::Sequence(
            described
                .attribute_definitions()
                .iter()
                .map(|a| {
                    let mut m = serde_norway::Mapping::new();
                    m.insert("AttributeName".into(), a.attribute_name().into());
                    m.insert("AttributeType".into(), a.attribute_type().as_str().into());
                    Value::Mapping(m)
                })
                .collect(),
        ),
    );
    created.insert(
        "GlobalSecondaryIndexes".into(),
        Value::Sequence(
            described
                .global_secondary_indexes()
                .iter()
                .map(|i| {
                    let mut projection = serde_norway::Mapping::new();
                    projection.insert(
                        "ProjectionType".into(),
                        i.projection()
                            .and_then(|p| p.projection_type())
                            .map_or("", |p| p.as_str())
                            .into(),
                    );
                    projection.insert(
                        "NonKeyAttributes".into(),
                        Value::Sequence(
                            i.projection()
                                .map(|p| p.non_key_attributes())
                                .unwrap_or_default()
                                .iter()
                                .map(|a| a.as_str().into())
                                .collect(),
                        ),
                    );
                    let mut m = serde_norway::Mapping::new();
                    m.insert(
                        "IndexName".into(),
                        i.index_name().unwrap_or_default().into(),
                    );
                    m.insert("KeySchema".into(), key_schema(i.key_schema()));
                    m.insert("Projection".into(), Value::Mapping(projection));
                    Value::Mapping(m)
                })
                .collect(),
        ),
    );
    let mut ttl_spec = serde_norway::Mapping::new();
    ttl_spec.insert(
        "AttributeName".into(),
        ttl.attribute_name().unwrap_or_default().into(),
    );
    ttl_spec.insert(
        "Enabled".into(),
        Value::Bool(ttl.time_to_live_status().map(|s| s.as_str()) == Some("ENABLED")),
    );
    created.insert("TimeToLiveSpecification".into(), Value::Mapping(ttl_spec));

    // The same comparison as the template's against the code's schema, so both
    // are held to one definition...
    let created = Value::Mapping(created);
    matches_schema(&created);
    // ...and nothing in the template changes the data model behind the code's back
    // (a local index, a stream, another key): only operational settings may be
    // added there.
    let template = template_table();
    let extra: Vec<&str> = template
        .as_mapping()
        .unwrap()
        .keys()
        .map(str_of)
        .filter(|k| created.get(*k).is_none())
        .collect();
    assert_eq!(
        extra,
        ["PointInTimeRecoverySpecification", "SSESpecification"],
        "template properties the code does not create"
    );
}
