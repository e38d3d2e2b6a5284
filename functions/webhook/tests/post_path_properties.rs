//! Properties of the webhook's HTTP handler over generated input, with the in-memory
//! queue and quarantine: no input makes it panic or answer outside the contract, and
//! no event of a signed delivery is ever lost.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

use hub_signature::Verifier;
use lambda_http::http::{Method, Request, StatusCode};
use lambda_http::{Body, RequestExt, Response};
use proptest::prelude::*;
use serde_json::{Value, json};
use webhook::testing::{MemoryQuarantine, MemoryQueue};
use webhook::{Receiver, RetryPolicy, Webhook};

const SECRET: &str = "property-test-secret";

fn hook() -> Webhook<MemoryQueue, MemoryQuarantine> {
    let credentials = webhook::testing::fixed_credentials(SECRET, "property-test-token");
    Webhook {
        deletion: webhook::deletion::DataDeletion {
            credentials: credentials.clone(),
            log: Box::new(webhook::deletion::NoDeletionLog),
        },
        receiver: Receiver {
            credentials,
            max_body_bytes: 16 * 1024,
            max_events: webhook::DEFAULT_MAX_EVENTS_PER_DELIVERY,
            answer_within: webhook::DEFAULT_ANSWER_WITHIN,
            queue: MemoryQueue::new(),
            quarantine: MemoryQuarantine::new(),
            retry: RetryPolicy::default(),
        },
    }
}

fn run(hook: &Webhook<MemoryQueue, MemoryQuarantine>, req: Request<Body>) -> Response<Body> {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
        .block_on(hook.handle(req))
        .unwrap()
}

fn signed_post(body: &[u8]) -> Request<Body> {
    Request::builder()
        .method(Method::POST)
        .uri("https://example.invalid/webhook")
        .header(
            "x-hub-signature-256",
            Verifier::new(SECRET.as_bytes()).sign_sha256(body),
        )
        .body(Body::Binary(body.to_vec()))
        .unwrap()
}

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Something shaped like a Messenger event, or not quite.
fn any_event() -> impl Strategy<Value = Value> {
    let kind = prop_oneof![
        Just("message"),
        Just("postback"),
        Just("optin"),
        Just("reaction"),
        Just("delivery"),
        Just("read"),
        Just("policy_enforcement"),
        Just("something_new"),
    ];
    prop_oneof![
        4 => (
            proptest::option::of("[0-9]{1,16}"),
            proptest::option::of("[0-9]{1,16}"),
            proptest::option::of(any::<i64>()),
            kind,
            any_json(),
        )
            .prop_map(|(sender, recipient, ts, kind, body)| {
                let mut e = serde_json::Map::new();
                if let Some(s) = sender {
                    e.insert("sender".into(), json!({ "id": s }));
                }
                if let Some(r) = recipient {
                    e.insert("recipient".into(), json!({ "id": r }));
                }
                if let Some(t) = ts {
                    e.insert("timestamp".into(), t.into());
                }
                e.insert(kind.into(), body);
                Value::Object(e)
            }),
        1 => any_json(),
    ]
}

fn any_envelope() -> impl Strategy<Value = Value> {
    let entry = (
        proptest::option::of("[0-9]{1,16}"),
        proptest::option::of(prop::collection::vec(any_event(), 0..5)),
        proptest::option::of(prop::collection::vec(any_event(), 0..3)),
    )
        .prop_map(|(id, messaging, standby)| {
            let mut e = serde_json::Map::new();
            if let Some(id) = id {
                e.insert("id".into(), id.into());
            }
            e.insert("time".into(), 1.into());
            if let Some(m) = messaging {
                e.insert("messaging".into(), m.into());
            }
            if let Some(s) = standby {
                e.insert("standby".into(), s.into());
            }
            Value::Object(e)
        });
    (
        prop_oneof![4 => Just("page".to_owned()), 1 => "[a-z]{0,10}"],
        prop::collection::vec(entry, 0..4),
    )
        .prop_map(|(object, entry)| json!({ "object": object, "entry": entry }))
}

fn events_in(envelope: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for entry in envelope["entry"].as_array().into_iter().flatten() {
        for key in ["messaging", "standby"] {
            out.extend(entry[key].as_array().into_iter().flatten().cloned());
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_requests_get_a_documented_answer(
        method in prop_oneof![Just(Method::GET), Just(Method::POST), Just(Method::PUT), Just(Method::DELETE)],
        body in prop::collection::vec(any::<u8>(), 0..20_000),
        sha256 in proptest::option::of(prop::collection::vec(32u8..127, 0..80)),
        sha1 in proptest::option::of(prop::collection::vec(32u8..127, 0..60)),
        mode in proptest::option::of(prop_oneof![Just("subscribe".to_owned()), ".{0,12}"]),
        token in proptest::option::of(".{0,24}"),
        challenge in proptest::option::of(".{0,24}"),
    ) {
        let hook = hook();
        let mut req = Request::builder()
            .method(method.clone())
            .uri("https://example.invalid/webhook");
        if let Some(v) = &sha256 {
            req = req.header("x-hub-signature-256", v.as_slice());
        }
        if let Some(v) = &sha1 {
            req = req.header("x-hub-signature", v.as_slice());
        }
        let too_big = body.len() > 16 * 1024;
        let mut query = HashMap::new();
        for (name, value) in [("hub.mode", &mode), ("hub.verify_token", &token), ("hub.challenge", &challenge)] {
            if let Some(v) = value {
                query.insert(name.to_owned(), v.clone());
            }
        }
        let req = req.body(Body::Binary(body)).unwrap().with_query_string_parameters(query);
        let response = run(&hook, req);
        let status = response.status();
        let allowed: &[StatusCode] = match method {
            Method::GET => &[StatusCode::FORBIDDEN],
            Method::POST if too_big => &[StatusCode::PAYLOAD_TOO_LARGE],
            Method::POST => &[StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN],
            _ => &[StatusCode::METHOD_NOT_ALLOWED],
        };
        prop_assert!(allowed.contains(&status), "{method} answered {status}");
        prop_assert!(hook.receiver.queue.accepted().is_empty());
    }

    #[test]
    fn the_challenge_is_echoed_only_with_the_token(
        challenge in "[0-9a-zA-Z]{1,24}",
        token in prop_oneof![Just("property-test-token".to_owned()), ".{0,24}"],
    ) {
        let hook = hook();
        let query = HashMap::from([
            ("hub.mode".to_owned(), "subscribe".to_owned()),
            ("hub.verify_token".to_owned(), token.clone()),
            ("hub.challenge".to_owned(), challenge.clone()),
        ]);
        let req = Request::builder()
            .method(Method::GET)
            .uri("https://example.invalid/webhook")
            .body(Body::Empty)
            .unwrap()
            .with_query_string_parameters(query);
        let response = run(&hook, req);
        if token == "property-test-token" {
            prop_assert_eq!(response.status(), StatusCode::OK);
            let echoed = matches!(response.body(), Body::Text(t) if *t == challenge);
            prop_assert!(echoed);
        } else {
            prop_assert_eq!(response.status(), StatusCode::FORBIDDEN);
        }
    }

    #[test]
    fn every_event_of_a_signed_delivery_is_queued_or_the_body_is_kept(envelope in any_envelope()) {
        let body = serde_json::to_vec(&envelope).unwrap();
        prop_assume!(body.len() <= 16 * 1024);
        let hook = hook();
        let response = run(&hook, signed_post(&body));
        prop_assert_eq!(response.status(), StatusCode::OK);

        let queued = hook.receiver.queue.accepted();
        let kept = hook.receiver.quarantine.kept();
        let expected = events_in(&envelope);
        if envelope["object"] != "page" {
            prop_assert!(queued.is_empty());
            prop_assert_eq!(kept.len(), 1);
        }
        if queued.is_empty() && !expected.is_empty() {
            // Not a routable Page delivery: kept whole, byte for byte.
            prop_assert_eq!(kept.len(), 1);
            prop_assert_eq!(&kept[0].0, &body);
        } else {
            prop_assert_eq!(queued.len(), expected.len());
            // Byte for byte: the body was serialised compactly, so each event's
            // bytes in it are exactly its compact serialisation.
            #[derive(serde::Deserialize)]
            struct Queued<'a> {
                #[serde(borrow)]
                event: &'a serde_json::value::RawValue,
            }
            for (message, event) in queued.iter().zip(&expected) {
                let message: Queued<'_> = serde_json::from_str(&message.body).unwrap();
                prop_assert_eq!(message.event.get(), serde_json::to_string(event).unwrap());
            }
        }
        for m in &queued {
            prop_assert!(m.group_id.len() <= 128 && m.group_id.bytes().all(|b| b.is_ascii_graphic()));
            prop_assert!(m.dedup_id.len() <= 128 && m.dedup_id.bytes().all(|b| b.is_ascii_alphanumeric()));
        }
    }

    #[test]
    fn a_redelivery_in_a_new_envelope_has_the_same_dedup_ids(
        envelope in any_envelope(),
        new_time in any::<i64>(),
    ) {
        let first = serde_json::to_vec(&envelope).unwrap();
        let mut again = envelope.clone();
        for entry in again["entry"].as_array_mut().into_iter().flatten() {
            entry["time"] = new_time.into();
        }
        let again = serde_json::to_vec(&again).unwrap();
        prop_assume!(first.len().max(again.len()) <= 16 * 1024);

        let (a, b) = (hook(), hook());
        run(&a, signed_post(&first));
        run(&b, signed_post(&again));
        let ids = |h: &Webhook<MemoryQueue, MemoryQuarantine>| {
            h.receiver.queue.accepted().into_iter().map(|m| (m.group_id, m.dedup_id)).collect::<Vec<_>>()
        };
        prop_assert_eq!(ids(&a), ids(&b));
    }

    /// Signed bodies that are anything at all (random bytes, or a Page delivery
    /// cut short or with bytes overwritten) get past the signature check to the
    /// splitter: the answer is 200, a body that is not JSON is kept whole, and
    /// every event queued is one the processor can read (no number out of range).
    /// (Parts of a delivery that are not events, such as an unknown key, are not
    /// read, so bytes there that no `Value` holds do not matter.)
    #[test]
    fn signed_arbitrary_bytes_are_answered_and_never_lost(
        body in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..4_000),
            (any_envelope(), any::<prop::sample::Index>(), prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6))
                .prop_map(|(envelope, cut, flips)| {
                    let mut bytes = serde_json::to_vec(&envelope).unwrap();
                    for (at, byte) in flips {
                        let i = at.index(bytes.len());
                        bytes[i] = byte;
                    }
                    let keep = cut.index(bytes.len() + 1);
                    if keep % 3 == 0 { bytes.truncate(keep); }
                    bytes
                }),
        ],
    ) {
        prop_assume!(body.len() <= 16 * 1024);
        let hook = hook();
        let response = run(&hook, signed_post(&body));
        prop_assert_eq!(response.status(), StatusCode::OK);
        let queued = hook.receiver.queue.accepted();
        let kept = hook.receiver.quarantine.kept();
        if serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_err() {
            prop_assert_eq!(kept.len(), 1);
            prop_assert_eq!(&kept[0].0, &body);
        }
        for m in &queued {
            prop_assert!(serde_json::from_str::<Value>(&m.body).is_ok(), "{}", m.body);
        }
    }
}
