//! The processor's reader of events-queue bodies (`QueueMessage::from_json`): the
//! webhook's `event` messages, the business's `notify` commands and the internal
//! `notify_one` fan-out parts, and the commands (`send`, `pass_thread_control`, ...).
//!
//! Input: a queue message body (SQS bodies are text: other bytes are skipped).
//! Checks, besides never panicking:
//! - what is read carries the `type` the body names;
//! - an event written back as the webhook writes it reads back the same, its bytes
//!   untouched; a command written back as the processor writes its follow-ups
//!   reads back equal;
//! - an error describes itself without panicking.

#![no_main]

use libfuzzer_sys::fuzz_target;
use messenger_fuzz::json_eq;
use messenger_types::queue::{QueueMessage, QueueMessageType, QueuedEventRef};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(body) = std::str::from_utf8(data) else {
        return;
    };
    let message = match QueueMessage::from_json(body) {
        Ok(message) => message,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    // The event inside is kept as raw bytes, so a number beyond f64 (`1e400`) is
    // read here though a `Value` cannot hold it: look only at the `type`.
    #[derive(serde::Deserialize)]
    struct Tag<'a> {
        #[serde(rename = "type", borrow)]
        kind: Option<std::borrow::Cow<'a, str>>,
    }
    let tag: Tag<'_> = serde_json::from_str(body).expect("a message that was read is JSON");
    let named = tag.kind.as_deref();
    match message {
        QueueMessage::Event(event) => {
            assert_eq!(named, Some("event"));
            let written = serde_json::to_string(&QueuedEventRef {
                kind: QueueMessageType::Event,
                page_id: event.page_id.as_ref().map(|p| p.as_str()),
                source: event.source,
                key: &event.key,
                event: &event.event,
            })
            .expect("an event serialises");
            let Ok(QueueMessage::Event(again)) = QueueMessage::from_json(&written) else {
                panic!("a written event does not read back: {written}");
            };
            assert_eq!(again.event.get(), event.event.get());
            assert_eq!(again.key, event.key);
            assert_eq!(again.source, event.source);
            assert_eq!(again.page_id, event.page_id);
        }
        QueueMessage::Notify(notify) => {
            assert_eq!(named, Some("notify"));
            assert_eq!(notify.kind, QueueMessageType::Notify);
            let written = serde_json::to_string(&notify).expect("a command serialises");
            let Ok(QueueMessage::Notify(again)) = QueueMessage::from_json(&written) else {
                panic!("a written notify does not read back: {written}");
            };
            assert_eq!(again.page_id, notify.page_id);
            assert_eq!(again.topic, notify.topic);
            assert_eq!(again.after, notify.after);
            assert_eq!(again.notify_id, notify.notify_id);
            assert!(json_eq(
                &Value::Object(again.message),
                &Value::Object(notify.message)
            ));
        }
        QueueMessage::NotifyOne(one) => {
            assert_eq!(named, Some("notify_one"));
            assert_eq!(one.kind, QueueMessageType::NotifyOne);
            let written = serde_json::to_string(&one).expect("a command serialises");
            let Ok(QueueMessage::NotifyOne(again)) = QueueMessage::from_json(&written) else {
                panic!("a written notify_one does not read back: {written}");
            };
            assert_eq!(
                (
                    &again.notify_id,
                    &again.page_id,
                    &again.psid,
                    &again.token_sk,
                    &again.topic
                ),
                (
                    &one.notify_id,
                    &one.page_id,
                    &one.psid,
                    &one.token_sk,
                    &one.topic
                )
            );
            assert!(json_eq(
                &Value::Object(again.message),
                &Value::Object(one.message)
            ));
        }
        QueueMessage::ReplayParked(replay) => {
            assert_eq!(named, Some("replay_parked"));
            assert_eq!(replay.kind, QueueMessageType::ReplayParked);
            let written = serde_json::to_string(&replay).expect("a replay request serialises");
            let Ok(QueueMessage::ReplayParked(again)) = QueueMessage::from_json(&written) else {
                panic!("a written replay_parked does not read back: {written}");
            };
            assert_eq!(again, replay);
        }
        QueueMessage::Command(command) => {
            assert_eq!(named, Some(command.kind()));
            // The checks before a command is taken answer, whatever it holds.
            if let Err(e) = command.validate() {
                assert!(!e.to_string().is_empty());
            }
            let written = serde_json::to_string(&command).expect("a command serialises");
            let Ok(QueueMessage::Command(again)) = QueueMessage::from_json(&written) else {
                panic!("a written command does not read back: {written}");
            };
            assert_eq!(again.command_id(), command.command_id());
            assert_eq!(again.kind(), command.kind());
            assert_eq!(again.page_id(), command.page_id());
            assert_eq!(again.psid(), command.psid());
            assert!(json_eq(
                &serde_json::to_value(&again).expect("a command is a value"),
                &serde_json::to_value(&command).expect("a command is a value")
            ));
        }
    }
});
