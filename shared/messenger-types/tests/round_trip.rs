//! The typed model against realistic payloads of every kind Meta sends: each parses
//! to its kind, loses nothing when written back, and agrees with the webhook's
//! routing view.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use messenger_types::event::{EventKind, NotificationStatus, OptinVariant, Problem, Unread};
use messenger_types::{Envelope, Event, route};
use proptest::prelude::*;
use serde_json::Value;
use serde_json::value::RawValue;

fn fixtures() -> Vec<(String, String)> {
    let text = include_str!("fixtures/events.json");
    let map: serde_json::Map<String, Value> = serde_json::from_str(text).unwrap();
    map.into_iter()
        .map(|(name, v)| (name, serde_json::to_string(&v).unwrap()))
        .collect()
}

/// Ids are read from strings or numbers and always written as strings.
fn ids_as_strings(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| match v {
                    Value::Number(n) if k.ends_with("app_id") => (k, Value::String(n.to_string())),
                    v => (k, ids_as_strings(v)),
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(ids_as_strings).collect()),
        v => v,
    }
}

fn parse(json: &str) -> Event {
    serde_json::from_str(json).unwrap()
}

#[test]
fn every_kind_parses_to_its_variant_and_round_trips() {
    let fixtures = fixtures();
    assert_eq!(fixtures.len(), 22);
    for (name, json) in &fixtures {
        let event = parse(json);
        let expected_kind = name.split('_').next().unwrap();
        assert!(
            !matches!(event.kind, EventKind::Unknown { .. }),
            "{name} parsed as Unknown"
        );
        assert!(
            event.kind.as_str().starts_with(expected_kind),
            "{name} parsed as {}",
            event.kind.as_str()
        );
        let original: Value = serde_json::from_str(json).unwrap();
        assert_eq!(
            serde_json::to_value(&event).unwrap(),
            ids_as_strings(original),
            "{name}"
        );
    }
}

#[test]
fn the_routing_view_agrees_with_the_typed_model() {
    for (name, json) in fixtures() {
        let event = parse(&json);
        let raw = RawValue::from_string(json.clone()).unwrap();
        let routing = route(Some("100000000000001"), &raw);
        assert_eq!(routing.kind, event.kind.as_str(), "{name}");
        let user = event
            .user()
            .and_then(|p| p.id.clone().or(p.user_ref.clone()));
        let user = user.or_else(|| match &event.kind {
            EventKind::Optin(o) => o.user_ref.clone(),
            _ => None,
        });
        assert_eq!(routing.user, user, "{name}");
    }
}

#[test]
fn optins_are_told_apart_by_type() {
    let by_name = |n: &str| {
        let json = fixtures().into_iter().find(|(k, _)| k == n).unwrap().1;
        match parse(&json).kind {
            EventKind::Optin(o) => o,
            other => panic!("{n} is {other:?}"),
        }
    };
    assert_eq!(
        by_name("optin_otn").variant(),
        OptinVariant::OneTimeNotification {
            topic: "back in stock",
            token: "otn-token-for-tests-only"
        }
    );
    assert!(matches!(
        by_name("optin_recurring").variant(),
        OptinVariant::Recurring {
            topic: Some("weekly deals"),
            status: Some(NotificationStatus::Resume),
            expires_at: Some(_),
            ..
        }
    ));
    assert_eq!(
        by_name("optin_checkbox").variant(),
        OptinVariant::Plugin {
            reference: Some("checkout"),
            user_ref: Some("cb-7f3a9e")
        }
    );
}

#[test]
fn debug_output_never_shows_notification_tokens() {
    for name in ["optin_otn", "optin_recurring"] {
        let json = fixtures().into_iter().find(|(k, _)| k == name).unwrap().1;
        let event = parse(&json);
        let EventKind::Optin(o) = &event.kind else {
            panic!()
        };
        for shown in [format!("{event:?}"), format!("{:?}", o.variant())] {
            assert!(!shown.contains("token-for-tests-only"), "{shown}");
        }
    }
}

#[test]
fn echoes_name_the_person_as_recipient_and_the_page_as_sender() {
    let json = fixtures()
        .into_iter()
        .find(|(k, _)| k == "message_echo")
        .unwrap()
        .1;
    let event = parse(&json);
    assert_eq!(
        event.user().unwrap().id.as_deref(),
        Some("2000000000000001")
    );
    assert_eq!(event.page_id(), Some("100000000000001"));
}

#[test]
fn unknown_kinds_are_kept_whole() {
    let json = r#"{"sender":{"id":"1"},"recipient":{"id":"2"},"timestamp":1795269600000,"messaging_feedback":{"feedback_screens":[{"screen_id":0,"questions":{"q":{"type":"csat","payload":"5"}}}]}}"#;
    let event = parse(json);
    assert_eq!(event.kind.as_str(), "messaging_feedback");
    assert!(matches!(event.kind, EventKind::Unknown { .. }));
    let original: Value = serde_json::from_str(json).unwrap();
    assert_eq!(serde_json::to_value(&event).unwrap(), original);
}

#[test]
fn a_known_kind_in_an_unexpected_shape_is_kept_as_unknown_and_says_why() {
    // `message` without its mid, `read` with a string watermark.
    for (json, field, problem) in [
        (
            r#"{"sender":{"id":"1"},"recipient":{"id":"2"},"timestamp":1795269600000,"message":{"text":"no mid"}}"#,
            "message.mid",
            Problem::Missing,
        ),
        (
            r#"{"sender":{"id":"1"},"recipient":{"id":"2"},"timestamp":1795269600000,"read":{"watermark":"soon"}}"#,
            "read.watermark",
            Problem::Invalid,
        ),
    ] {
        let event = parse(json);
        assert!(
            matches!(event.kind, EventKind::Unknown { key: Some(_), .. }),
            "{json}"
        );
        assert_eq!(
            event.unread,
            vec![Unread {
                field: field.to_owned(),
                problem,
                kind_read: false
            }]
        );
        let original: Value = serde_json::from_str(json).unwrap();
        assert_eq!(serde_json::to_value(&event).unwrap(), original);
    }
}

#[test]
fn envelope_fields_of_an_unexpected_shape_are_kept_not_fatal() {
    let json = r#"{"sender":{"id":["x"]},"recipient":{"id":"2"},"timestamp":"soon","message":{"mid":"m","text":"hi"}}"#;
    let event = parse(json);
    assert!(event.sender.is_none() && event.timestamp.is_none());
    assert!(matches!(event.kind, EventKind::Message(_)));
    let unread: Vec<(&str, Problem, bool)> = event
        .unread
        .iter()
        .map(|u| (u.field.as_str(), u.problem, u.kind_read))
        .collect();
    assert_eq!(
        unread,
        vec![
            ("sender.id", Problem::Invalid, true),
            ("timestamp", Problem::Invalid, true)
        ]
    );
    let original: Value = serde_json::from_str(json).unwrap();
    assert_eq!(serde_json::to_value(&event).unwrap(), original);
}

#[test]
fn the_fifty_event_benchmark_batch_is_fully_typed() {
    let body = include_str!("../../../functions/webhook/benches/data/batch50.body");
    let envelope: Envelope = serde_json::from_str(body).unwrap();
    let events: Vec<&Event> = envelope
        .entry
        .iter()
        .flat_map(|e| e.messaging.iter().chain(&e.standby))
        .collect();
    assert_eq!(events.len(), 50);
    for e in events {
        assert!(!matches!(e.kind, EventKind::Unknown { .. }), "{e:?}");
    }
    let original: Value = serde_json::from_str(body).unwrap();
    assert_eq!(
        serde_json::to_value(&envelope).unwrap(),
        ids_as_strings(original)
    );
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1_000_i64..200_000_000_000_000).prop_map(Value::from),
        any::<u64>().prop_map(|n| Value::from(n.to_string())),
        "[a-z0-9 ]{0,8}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("sender".to_owned()),
                    Just("recipient".to_owned()),
                    Just("timestamp".to_owned()),
                    Just("message".to_owned()),
                    Just("mid".to_owned()),
                    Just("optin".to_owned()),
                    Just("id".to_owned()),
                    Just("user_ref".to_owned()),
                    Just("is_echo".to_owned()),
                    Just("policy-enforcement".to_owned()),
                    "[a-z_]{1,8}",
                ],
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn parsing_any_object_never_panics_and_is_stable(value in any_json()) {
        let json = serde_json::to_string(&value).unwrap();
        let raw = RawValue::from_string(json.clone()).unwrap();
        let routing = route(None, &raw);
        prop_assert!(routing.group_id().len() <= 128);
        if let Ok(event) = serde_json::from_str::<Event>(&json) {
            let written = serde_json::to_string(&event).unwrap();
            let again: Event = serde_json::from_str(&written).unwrap();
            prop_assert_eq!(&again, &event);
            // On a kind the typed model read, routing names the same person,
            // whether its ids came as strings or as numbers.
            if !matches!(event.kind, EventKind::Unknown { .. }) {
                let person = event
                    .user()
                    .and_then(|p| p.id.clone().or(p.user_ref.clone()))
                    .or_else(|| match &event.kind {
                        EventKind::Optin(o) => o.user_ref.clone(),
                        _ => None,
                    });
                prop_assert_eq!(&routing.user, &person, "{}", json);
                prop_assert_eq!(routing.kind, event.kind.as_str());
            }
        }
    }
}
