//! Every shape of an event Meta has sent reads as the same event: ids as strings or
//! as numbers, timestamps in milliseconds or in seconds, the older spellings of a
//! kind and of a notification status, `null` for an optional list. What cannot be
//! read is named, and the rest of the event is still read.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use messenger_types::event::{EventKind, NotificationStatus, OptinVariant, Problem, Unread};
use messenger_types::routing::RawEnvelope;
use messenger_types::{Envelope, Event, Routing, route};
use proptest::prelude::*;
use serde_json::value::RawValue;
use serde_json::{Value, json};

const PAGE: &str = "100000000000001";

fn fixtures() -> Vec<(String, Value)> {
    let text = include_str!("fixtures/events.json");
    let map: serde_json::Map<String, Value> = serde_json::from_str(text).unwrap();
    map.into_iter().collect()
}

fn parse(event: &Value) -> Event {
    serde_json::from_value(event.clone()).unwrap()
}

fn routed(event: &Value) -> Routing {
    route(
        Some(PAGE),
        &RawValue::from_string(event.to_string()).unwrap(),
    )
}

/// The person as the typed model names it, the way routing names it.
fn person(event: &Event) -> Option<String> {
    let party = event
        .user()
        .and_then(|p| p.id.clone().or(p.user_ref.clone()));
    party.or_else(|| match &event.kind {
        EventKind::Optin(o) => o.user_ref.clone(),
        _ => None,
    })
}

/// Every field that holds an id (`app_roles` names apps by its keys, always strings).
const ID_FIELDS: [&str; 7] = [
    "id",
    "user_ref",
    "ad_id",
    "app_id",
    "previous_owner_app_id",
    "new_owner_app_id",
    "requested_owner_app_id",
];

/// `v` with every id replaced by a new one made from `seed` (kept as it is without
/// one), written as a string or, where `as_number` says so, as a number. Ids that
/// are not digits (`cb-7f3a9e`) stay strings.
fn with_ids(v: &Value, seed: Option<u64>, as_number: &mut impl FnMut() -> bool) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| {
                    let digits = match v {
                        Value::String(s) if s.bytes().all(|b| b.is_ascii_digit()) => {
                            s.parse::<u64>().ok()
                        }
                        Value::Number(n) => n.as_u64(),
                        _ => None,
                    };
                    let v = match digits {
                        Some(old) if ID_FIELDS.contains(&k.as_str()) => {
                            let new =
                                seed.map_or(old, |seed| (old ^ seed) % 9_000_000_000_000_000 + 1);
                            if as_number() {
                                json!(new)
                            } else {
                                json!(new.to_string())
                            }
                        }
                        _ => with_ids(v, seed, as_number),
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(|v| with_ids(v, seed, as_number)).collect()),
        v => v.clone(),
    }
}

/// `v` with every timestamp rounded down to its second, written in seconds or in
/// milliseconds.
fn timestamps(v: &Value, in_seconds: bool) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| {
                    let v = match (k.as_str(), v.as_i64()) {
                        ("timestamp" | "watermark" | "token_expiry_timestamp", Some(ms)) => {
                            let s = ms / 1000;
                            if in_seconds {
                                json!(s)
                            } else {
                                json!(s * 1000)
                            }
                        }
                        _ => timestamps(v, in_seconds),
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(|v| timestamps(v, in_seconds)).collect()),
        v => v.clone(),
    }
}

#[test]
fn every_fixture_reads_the_same_with_its_ids_as_numbers() {
    for (name, fixture) in fixtures() {
        let strings = with_ids(&fixture, None, &mut || false);
        let numbers = with_ids(&fixture, None, &mut || true);
        assert_ne!(numbers, strings, "{name} has an id");
        let (s, n) = (parse(&strings), parse(&numbers));
        assert_eq!(s, n, "{name}");
        assert!(n.unread.is_empty(), "{name}: {:?}", n.unread);
        assert!(!matches!(n.kind, EventKind::Unknown { .. }), "{name}");
        assert_eq!(routed(&numbers), routed(&strings), "{name}");
        assert_eq!(routed(&numbers).user, person(&n), "{name}");
    }
}

#[test]
fn a_text_with_numeric_ids_names_its_person_and_page() {
    let event = json!({"sender": {"id": 2000000000000001_u64}, "recipient": {"id": 100000000000001_u64},
                       "timestamp": 1795269600100_i64, "message": {"mid": "m_1", "text": "hi"}});
    let typed = parse(&event);
    assert_eq!(
        typed.user().unwrap().id.as_deref(),
        Some("2000000000000001")
    );
    assert_eq!(typed.page_id(), Some("100000000000001"));
    assert!(typed.unread.is_empty());
    let body = json!({"object": "page", "entry": [{"id": 100000000000001_u64, "time": 1795269600200_i64, "messaging": [event]}]})
        .to_string();
    let envelope: Envelope = serde_json::from_str(&body).unwrap();
    let raw: RawEnvelope<'_> = serde_json::from_str(&body).unwrap();
    assert_eq!(envelope.entry[0].id.as_str(), PAGE);
    assert_eq!(raw.entry[0].id.as_deref(), Some(PAGE));
    assert_eq!(
        route(raw.entry[0].id.as_deref(), raw.entry[0].messaging[0]).group_id(),
        "100000000000001:2000000000000001"
    );
}

#[test]
fn every_fixture_reads_the_same_with_its_timestamps_in_seconds() {
    for (name, fixture) in fixtures() {
        let millis = timestamps(&fixture, false);
        let seconds = timestamps(&fixture, true);
        assert_ne!(millis, seconds, "{name} has a timestamp");
        assert_eq!(parse(&seconds), parse(&millis), "{name}");
    }
}

#[test]
fn both_spellings_of_policy_enforcement_are_one_kind() {
    let spelled = |key: &str| {
        let mut event = json!({"recipient": {"id": PAGE}, "timestamp": 1795269601400_i64});
        event[key] = json!({"action": "block", "reason": "spam"});
        event
    };
    let (current, older) = (spelled("policy_enforcement"), spelled("policy-enforcement"));
    let typed = parse(&older);
    assert!(matches!(&typed.kind, EventKind::PolicyEnforcement(p) if p.action == "block"));
    assert_eq!(typed, parse(&current));
    assert!(typed.extra.is_empty() && typed.unread.is_empty());
    // Written back in the current spelling; routing names the same kind and key.
    assert_eq!(serde_json::to_value(&typed).unwrap(), current);
    assert_eq!(routed(&older), routed(&current));
    assert_eq!(routed(&older).kind, "policy_enforcement");
    // Unreadable in the older spelling: named under the current one.
    let mut bad = json!({"recipient": {"id": PAGE}, "timestamp": 1795269601400_i64});
    bad["policy-enforcement"] = json!({"reason": "no action"});
    let typed = parse(&bad);
    assert_eq!(typed.kind.as_str(), "policy_enforcement");
    assert_eq!(typed.unread[0].field, "policy_enforcement.action");
    assert_eq!(routed(&bad).kind, "policy_enforcement");
}

#[test]
fn both_spellings_of_each_notification_status_are_read_and_an_unknown_one_fails_closed() {
    let status = |status: Option<&str>| {
        let mut optin = json!({"type": "notification_messages", "payload": "deals",
                               "notification_messages_token": "rn", "token_expiry_timestamp": 1810821600000_i64});
        if let Some(s) = status {
            optin["notification_messages_status"] = json!(s);
        }
        let event = parse(&json!({"sender": {"id": "2"}, "recipient": {"id": PAGE},
                                  "timestamp": 1795269600403_i64, "optin": optin}));
        let EventKind::Optin(o) = &event.kind else {
            panic!("{status:?}: {:?}", event.kind)
        };
        match o.variant() {
            OptinVariant::Recurring { status, .. } => status,
            other => panic!("{other:?}"),
        }
    };
    use NotificationStatus::*;
    for (spelled, read, allows) in [
        (None, None, true),
        (Some("STOP NOTIFICATIONS"), Some(Stop), false),
        (Some("STOP_NOTIFICATIONS"), Some(Stop), false),
        (Some("RESUME NOTIFICATIONS"), Some(Resume), true),
        (Some("RESUME_NOTIFICATIONS"), Some(Resume), true),
        (Some("PAUSE NOTIFICATIONS"), Some(Unknown), false),
        (Some("stop notifications"), Some(Unknown), false),
        (Some(""), Some(Unknown), false),
    ] {
        assert_eq!(status(spelled), read, "{spelled:?}");
        assert_eq!(
            NotificationStatus::allows_messages(read),
            allows,
            "{spelled:?}"
        );
    }
}

#[test]
fn null_for_an_optional_list_still_reads_the_event() {
    let text = json!({"sender": {"id": "2"}, "recipient": {"id": PAGE}, "timestamp": 1795269600100_i64,
                      "message": {"mid": "m_1", "text": "hi", "attachments": null}});
    let typed = parse(&text);
    let EventKind::Message(m) = &typed.kind else {
        panic!("{:?}", typed.kind)
    };
    assert_eq!(m.text.as_deref(), Some("hi"));
    assert!(m.attachments.is_empty());
    assert_eq!(
        typed.unread,
        vec![Unread {
            field: "message.attachments".to_owned(),
            problem: Problem::Null,
            kind_read: true
        }]
    );
    // Kept, and written back as it came.
    assert_eq!(serde_json::to_value(&typed).unwrap(), text);

    let delivery = json!({"sender": {"id": "2"}, "recipient": {"id": PAGE}, "timestamp": 1795269600600_i64,
                          "delivery": {"mids": null, "watermark": 1795269600550_i64}});
    let typed = parse(&delivery);
    assert!(matches!(&typed.kind, EventKind::Delivery(d) if d.mids.is_none()));
    assert!(typed.unread.is_empty());
}

#[test]
fn a_field_the_kind_can_do_without_is_set_aside_and_named_and_the_rest_is_read() {
    let event = json!({"sender": {"id": "2"}, "recipient": {"id": PAGE}, "timestamp": 1795269600100_i64,
                       "message": {"mid": "m_1", "text": "secret words", "quick_reply": "secret words",
                                   "attachments": [{"type": "image", "payload": {}}, {"payload": {"url": "secret words"}}]}});
    let typed = parse(&event);
    let EventKind::Message(m) = &typed.kind else {
        panic!("{:?}", typed.kind)
    };
    assert_eq!(
        (m.mid.as_str(), m.text.as_deref()),
        ("m_1", Some("secret words"))
    );
    let named: Vec<String> = typed.unread.iter().map(ToString::to_string).collect();
    assert_eq!(
        named,
        vec![
            "message.attachments[1].type: missing; read without it",
            "message.quick_reply: invalid; read without it"
        ]
    );
    assert!(named.iter().all(|n| !n.contains("secret")));
    assert_eq!(serde_json::to_value(&typed).unwrap(), event);
    // Routing and the typed model still agree on the event.
    assert_eq!(routed(&event).key.as_str(), "message:m_1");
    assert_eq!(routed(&event).user, person(&typed));

    // A Get Started whose referral cannot be read is still a postback.
    let postback = json!({"sender": {"id": "2"}, "recipient": {"id": PAGE}, "timestamp": 1795269600200_i64,
                          "postback": {"title": "Get Started", "payload": "GS", "referral": {"ref": 7, "source": "SHORTLINK"}}});
    let typed = parse(&postback);
    assert!(
        matches!(&typed.kind, EventKind::Postback(p) if p.referral.is_none() && p.title.as_deref() == Some("Get Started"))
    );
    assert_eq!(typed.unread[0].field, "postback.referral.ref");
    assert_eq!(serde_json::to_value(&typed).unwrap(), postback);
}

#[test]
fn an_ad_referral_reads_its_ad_and_context_and_writes_back_the_same() {
    let context = json!({"ad_title": "Boots", "photo_url": "https://scontent.example/b.jpg",
                         "video_url": "https://video.example/b.mp4", "post_id": "12_34", "product_id": "551"});
    for (ads_context_data, ad_id) in [
        (context.clone(), json!("6045246247433")),
        (context.clone(), json!(6_045_246_247_433_u64)),
        // Not the object Meta documents: read as it is, never a reason to drop the event.
        (json!(null), json!("6045246247433")),
        (json!("text"), json!("6045246247433")),
    ] {
        let event = json!({"sender": {"id": "2"}, "recipient": {"id": PAGE}, "timestamp": 1795269600300_i64,
                           "referral": {"ref": "winter", "ad_id": ad_id, "source": "ADS", "type": "OPEN_THREAD",
                                        "ads_context_data": ads_context_data}});
        let typed = parse(&event);
        let EventKind::Referral(r) = &typed.kind else {
            panic!("not a referral: {typed:?}");
        };
        assert_eq!(r.ad_id.as_deref(), Some("6045246247433"));
        assert_eq!(r.ads_context_data.as_ref(), Some(&ads_context_data));
        assert!(r.extra.is_empty(), "{:?}", r.extra);
        assert!(typed.unread.is_empty(), "{:?}", typed.unread);
        if ad_id.is_string() {
            assert_eq!(serde_json::to_value(&typed).unwrap(), event);
        }
    }
}

#[test]
fn a_kind_missing_what_it_cannot_do_without_is_kept_whole_and_the_field_named() {
    for (kind, content, field, problem) in [
        (
            "message",
            json!({"text": "hi"}),
            "message.mid",
            Problem::Missing,
        ),
        (
            "message",
            json!({"mid": 5, "attachments": null}),
            "message.mid",
            Problem::Invalid,
        ),
        (
            "message",
            json!({"mid": null, "text": "hi"}),
            "message.mid",
            Problem::Null,
        ),
        ("message", json!(null), "message", Problem::Null),
        ("message", json!("hi"), "message", Problem::Invalid),
        (
            "read",
            json!({"watermark": "soon"}),
            "read.watermark",
            Problem::Invalid,
        ),
        (
            "reaction",
            json!({"action": "react"}),
            "reaction.mid",
            Problem::Missing,
        ),
        (
            "app_roles",
            json!({"1517776481860111": "primary_receiver"}),
            "app_roles.1517776481860111",
            Problem::Invalid,
        ),
    ] {
        let mut event = json!({"sender": {"id": "2"}, "recipient": {"id": PAGE}, "timestamp": 1795269600100_i64});
        event[kind] = content.clone();
        let typed = parse(&event);
        assert_eq!(
            typed.kind,
            EventKind::Unknown {
                key: Some(kind.to_owned()),
                value: content
            },
            "{event}"
        );
        assert_eq!(
            typed.unread,
            vec![Unread {
                field: field.to_owned(),
                problem,
                kind_read: false
            }],
            "{event}"
        );
        assert_eq!(serde_json::to_value(&typed).unwrap(), event);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    /// Any ids, each written as a string or a number: the same event, the same
    /// routing, and routing and the typed model name the same person.
    #[test]
    fn every_id_field_reads_a_number_as_the_same_id(seed in any::<u64>(), pattern in any::<u64>()) {
        for (name, fixture) in fixtures() {
            let strings = with_ids(&fixture, Some(seed), &mut || false);
            let mut bit = 0;
            let mixed = with_ids(&fixture, Some(seed), &mut || {
                bit += 1;
                (pattern >> (bit % 64)) & 1 == 1
            });
            let (s, m) = (parse(&strings), parse(&mixed));
            prop_assert_eq!(&s, &m, "{}", name);
            prop_assert!(m.unread.is_empty(), "{}: {:?}", name, m.unread);
            prop_assert_eq!(routed(&mixed), routed(&strings), "{}", name);
            prop_assert_eq!(routed(&mixed).user, person(&m), "{}", name);
        }
    }

    /// Any instant from 1973 to the year 5138, in seconds or in milliseconds, in
    /// any of an event's timestamps: the same `Timestamp`.
    #[test]
    fn a_time_in_seconds_and_the_same_instant_in_milliseconds_read_alike(
        seconds in 100_000_000_i64..100_000_000_000,
        millis_part in 0_i64..1000,
    ) {
        for (name, fixture) in fixtures() {
            // The event's timestamp, and the watermark of a delivery or read.
            let at = |v: &Value, ts: i64| {
                let mut v = v.clone();
                v["timestamp"] = json!(ts);
                for kind in ["delivery", "read"] {
                    if let Some(k) = v.get_mut(kind) {
                        k["watermark"] = json!(ts);
                    }
                }
                v
            };
            let s = parse(&at(&fixture, seconds));
            let ms = parse(&at(&fixture, seconds * 1000));
            prop_assert_eq!(&s, &ms, "{}", name);
            prop_assert_eq!(s.timestamp.unwrap().as_millis(), seconds * 1000);
            // Milliseconds are read as they are.
            let exact = parse(&at(&fixture, seconds * 1000 + millis_part));
            prop_assert_eq!(exact.timestamp.unwrap().as_millis(), seconds * 1000 + millis_part);
        }
    }
}
