//! The webhook body as the webhook splits it (`RawEnvelope` + `route`, the hot path)
//! and as the processor reads it (the typed `Envelope` / `Event` model).
//!
//! Input: a webhook POST body. Checks, besides never panicking:
//! - every event the splitter yields is a slice of the input's own bytes and
//!   parses as JSON;
//! - its FIFO group id and deduplication id are valid SQS ids (1-128 ASCII
//!   letters, digits, punctuation); routing is deterministic and keeps `entry.id`;
//! - the queue message built from it, as the webhook builds it, reads back as the
//!   same event, byte for byte, with the same key, source and Page;
//! - the typed model reads every event that is a JSON object (unknown and odd
//!   shapes are kept, never refused), names the same kind as routing, names the
//!   same person (ids as strings or numbers alike), and writing it out and reading
//!   it again gives the same event;
//! - whatever the typed model reads as an envelope, the splitter reads too, with
//!   the same events in the same order.

#![no_main]

use libfuzzer_sys::fuzz_target;
use messenger_fuzz::{has_duplicate_keys, is_valid_sqs_id, json_eq};
use messenger_types::event::KNOWN_KINDS;
use messenger_types::queue::{QueueMessage, QueueMessageType, QueuedEventRef};
use messenger_types::routing::{RawEnvelope, Source, route};
use messenger_types::{Envelope, Event, EventKind};
use serde::de::IgnoredAny;
use serde_json::Value;
use serde_json::value::RawValue;

fuzz_target!(|data: &[u8]| {
    let raw = serde_json::from_slice::<RawEnvelope<'_>>(data);
    let typed = serde_json::from_slice::<Envelope>(data);

    if let Ok(typed) = &typed {
        let Ok(raw) = &raw else {
            panic!("the typed model reads this envelope, the splitter does not: {raw:?}");
        };
        assert_eq!(typed.object, raw.object);
        assert_eq!(typed.entry.len(), raw.entry.len());
        for (t, r) in typed.entry.iter().zip(&raw.entry) {
            assert_eq!(r.id.as_deref(), Some(t.id.as_str()));
            assert_eq!(t.messaging.len(), r.messaging.len());
            assert_eq!(t.standby.len(), r.standby.len());
            let pairs = t
                .messaging
                .iter()
                .zip(&r.messaging)
                .chain(t.standby.iter().zip(&r.standby));
            for (te, re) in pairs {
                let again: Event =
                    serde_json::from_str(re.get()).expect("an event the envelope read");
                assert_eq!(&again, te);
            }
        }
    }

    let Ok(envelope) = raw else { return };
    let input = data.as_ptr_range();
    let input = input.start as usize..input.end as usize;
    for entry in &envelope.entry {
        let page = entry.id.as_deref();
        let tagged = entry
            .messaging
            .iter()
            .map(|e| (Source::Messaging, *e))
            .chain(entry.standby.iter().map(|e| (Source::Standby, *e)));
        for (source, event) in tagged {
            check_event(&input, page, source, event);
        }
    }
});

fn check_event(
    input: &std::ops::Range<usize>,
    page: Option<&str>,
    source: Source,
    event: &RawValue,
) {
    let bytes = event.get().as_bytes().as_ptr_range();
    assert!(
        input.start <= bytes.start as usize && bytes.end as usize <= input.end,
        "an event is not a slice of the body"
    );
    serde_json::from_str::<IgnoredAny>(event.get()).expect("an event is JSON");

    let routing = route(page, event);
    assert_eq!(routing, route(page, event), "routing is not deterministic");
    if let Some(page) = page {
        assert_eq!(routing.page_id.as_deref(), Some(page));
    }
    let group = routing.group_id();
    assert!(is_valid_sqs_id(&group), "invalid MessageGroupId {group:?}");
    let dedup = routing.key.digest();
    assert!(
        is_valid_sqs_id(&dedup),
        "invalid MessageDeduplicationId {dedup:?}"
    );
    assert!(!routing.key.as_str().is_empty());
    assert!(routing.kind == "unknown" || KNOWN_KINDS.contains(&routing.kind));

    // The queue message, as the webhook writes it and the processor reads it.
    let body = serde_json::to_string(&QueuedEventRef {
        kind: QueueMessageType::Event,
        page_id: routing.page_id.as_deref(),
        source,
        key: routing.key.as_str(),
        event,
    })
    .expect("a queue message serialises");
    match QueueMessage::from_json(&body) {
        Ok(QueueMessage::Event(queued)) => {
            assert_eq!(
                queued.event.get(),
                event.get(),
                "the event's bytes changed on the queue"
            );
            assert_eq!(queued.key, routing.key.as_str());
            assert_eq!(queued.source, source);
            assert_eq!(
                queued.page_id.as_ref().map(|p| p.as_str()),
                routing.page_id.as_deref()
            );
        }
        other => panic!("the processor cannot read what the webhook queued: {other:?}"),
    }

    // The typed model. A number beyond f64 (`1e400`) is valid JSON the splitter
    // passes on, but no `Value` holds it: the typed model refuses such an event.
    let typed = serde_json::from_str::<Event>(event.get());
    let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(event.get()) else {
        assert!(typed.is_err());
        return;
    };
    let typed = match typed {
        Ok(typed) => typed,
        Err(e) => panic!("the typed model refuses an event object: {e}"),
    };
    let kind = typed.kind.as_str();
    if KNOWN_KINDS.contains(&kind) {
        assert_eq!(routing.kind, kind);
    } else {
        assert_eq!(routing.kind, "unknown", "typed kind {kind:?}");
    }
    // On a kind the typed model read, both name the same person, or both none,
    // whether its ids came as strings or as numbers (both read ids through one
    // reader). An odd kind is routed by what could be read, and the processor does
    // not act on it; a repeated key is read differently (see `has_duplicate_keys`).
    let read = !matches!(typed.kind, EventKind::Unknown { .. }) && !has_duplicate_keys(event.get());
    if read {
        let person = typed
            .user()
            .and_then(|p| p.id.as_deref().or(p.user_ref.as_deref()))
            .or_else(|| match &typed.kind {
                EventKind::Optin(o) => o.user_ref.as_deref(),
                _ => None,
            });
        assert_eq!(
            routing.user.as_deref(),
            person,
            "routing and the typed model disagree on the person"
        );
    }
    if fields
        .keys()
        .all(|k| matches!(k.as_str(), "sender" | "recipient" | "timestamp"))
    {
        // Nothing but the envelope fields: a kind-less event.
        assert!(kind == "unknown" || fields.contains_key(kind));
    }
    let written = serde_json::to_value(&typed).expect("an event serialises");
    let reread: Event =
        serde_json::from_value(written.clone()).expect("a written event reads back");
    let rewritten = serde_json::to_value(&reread).expect("an event serialises");
    assert!(
        json_eq(&written, &rewritten),
        "not stable: {written} then {rewritten}"
    );
    assert_eq!(reread.kind.as_str(), kind);
}
