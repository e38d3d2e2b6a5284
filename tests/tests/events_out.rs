//! Events out: the processor, wired from the environment as in production
//! (`EVENT_BUS_NAME`), publishes on an EventBridge bus of the emulator; a rule on
//! `source` sends everything to an SQS queue, as a business would subscribe.
//! Every detail read there is checked against its schema in `schemas/`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Mutex;

use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::AttributeValue;
use integration_tests::bus::*;
use integration_tests::rig::{self, DAY, HOUR, PAGE_A, failed_ids, sends};
use integration_tests::*;
use processor::publish::{Bus, BusEvent, BusFuture, EventBridgeBus};
use serde_json::{Value, json};

#[tokio::test]
async fn a_text_and_its_reply_are_published_to_a_subscribed_queue() {
    let r = rig::rig().await;
    let (bus, subscriber) = subscribed_bus(&r.sdk).await;
    let mut env = rig::env(&r.table, &r.queue, &r.graph);
    env.insert("EVENT_BUS_NAME".to_owned(), bus);
    let processor = processor::from_env(&env, &r.sdk).await.unwrap();

    let messages = queue_messages(&[(
        PAGE_A,
        vec![
            text_event(PAGE_A, "2800000000000001", "m_out_1", "hello", 1_000),
            text_event(PAGE_A, "2800000000000002", "m_out_2", "late", DAY + HOUR),
        ],
        vec![],
    )]);
    let response = processor.handle(sqs_event("s", &messages), None).await;
    assert!(failed_ids(&response).is_empty());

    let events = received(&r.sdk, &subscriber).await;
    check(&events);
    let received_events = of_type(&events, "Event Received");
    assert_eq!(received_events.len(), 2, "{events:#?}");
    let first = received_events
        .iter()
        .find(|d| d["psid"] == "2800000000000001")
        .unwrap();
    assert_eq!(first["event"]["message"]["mid"], "m_out_1");
    assert_eq!(first["kind"], "message");
    let sent = of_type(&events, "Message Sent");
    assert_eq!(sent.len(), 1, "{events:#?}");
    assert_eq!(
        sent[0]["message_id"], "m_sent",
        "the id the fake Graph answered"
    );
    assert_eq!(sent[0]["psid"], "2800000000000001");
    assert_eq!(sent[0]["messaging_type"], "RESPONSE");
    let refused = of_type(&events, "Send Refused");
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0]["reason"], "outside_window");
    assert_eq!(refused[0]["psid"], "2800000000000002");
    assert_eq!(sends(&r.graph).await.len(), 1);
}

/// The emulator's bus, refusing every entry of its first `refuse` calls.
#[derive(Debug)]
struct Refusing {
    inner: EventBridgeBus,
    refuse: Mutex<u32>,
}

impl Bus for Refusing {
    fn put<'a>(&'a self, entries: &'a [BusEvent]) -> BusFuture<'a> {
        let refuse = {
            let mut left = self.refuse.lock().unwrap();
            let refuse = *left > 0;
            *left = left.saturating_sub(1);
            refuse
        };
        if refuse {
            return Box::pin(async move { Ok((0..entries.len()).collect()) });
        }
        self.inner.put(entries)
    }
}

#[tokio::test]
async fn a_bus_refusing_entries_loses_no_event_and_the_reply_is_sent_once() {
    let r = rig::rig().await;
    let (bus, subscriber) = subscribed_bus(&r.sdk).await;
    let env = rig::env(&r.table, &r.queue, &r.graph);
    let processor = processor::Processor {
        bus: Box::new(Refusing {
            inner: EventBridgeBus::new(aws_sdk_eventbridge::Client::new(&r.sdk), bus),
            // The three rounds of the first delivery.
            refuse: Mutex::new(3),
        }),
        ..processor::from_env(&env, &r.sdk).await.unwrap()
    };
    let messages = queue_messages(&[(
        PAGE_A,
        vec![text_event(
            PAGE_A,
            "2800000000000003",
            "m_out_3",
            "hello",
            1_000,
        )],
        vec![],
    )]);
    let first = processor.handle(sqs_event("s", &messages), None).await;
    assert_eq!(failed_ids(&first), vec!["s-0".to_owned()], "handed back");
    assert!(received(&r.sdk, &subscriber).await.is_empty());
    // SQS delivers it again: the event is done, so nothing is sent again, and
    // what it published is published now.
    let second = processor.handle(sqs_event("s", &messages), None).await;
    assert!(failed_ids(&second).is_empty());
    let events = received(&r.sdk, &subscriber).await;
    check(&events);
    assert_eq!(of_type(&events, "Event Received").len(), 1);
    assert_eq!(of_type(&events, "Message Sent").len(), 1);
    assert_eq!(of_type(&events, "Message Sent")[0]["message_id"], "m_sent");
    assert_eq!(sends(&r.graph).await.len(), 1);
}

#[tokio::test]
async fn an_optin_publishes_the_captured_topic_and_never_the_token() {
    let r = rig::rig().await;
    let (bus, subscriber) = subscribed_bus(&r.sdk).await;
    let mut env = rig::env(&r.table, &r.queue, &r.graph);
    env.insert("EVENT_BUS_NAME".to_owned(), bus);
    let processor = processor::from_env(&env, &r.sdk).await.unwrap();
    let optin = json!({
        "sender": {"id": "2800000000000004"}, "recipient": {"id": PAGE_A}, "timestamp": now_ms() - 1_000,
        "optin": {"type": "one_time_notif_req", "payload": "shoes", "one_time_notif_token": "test-otn-token-4"}
    });
    let messages = queue_messages(&[(PAGE_A, vec![optin], vec![])]);
    processor.handle(sqs_event("s", &messages), None).await;
    let events = received(&r.sdk, &subscriber).await;
    check(&events);
    let captured = of_type(&events, "Notification Token Captured");
    assert_eq!(captured.len(), 1, "{events:#?}");
    assert_eq!(captured[0]["topic"], "shoes");
    assert_eq!(captured[0]["psid"], "2800000000000004");
    // Meta's event is published without the token.
    let received_events = of_type(&events, "Event Received");
    assert_eq!(received_events[0]["event"]["optin"]["payload"], "shoes");
    for e in &events {
        assert!(!e.to_string().contains("test-otn-token-4"), "{e}");
    }
}

#[tokio::test]
async fn a_send_command_is_sent_once_under_the_policy_and_completed_on_the_bus() {
    let r = rig::rig().await;
    let (bus, subscriber) = subscribed_bus(&r.sdk).await;
    let mut env = rig::env(&r.table, &r.queue, &r.graph);
    env.insert("EVENT_BUS_NAME".to_owned(), bus);
    let processor = processor::from_env(&env, &r.sdk).await.unwrap();
    let psid = "2800000000000005";
    // The person wrote ten minutes ago; the bot answered.
    let text = queue_messages(&[(
        PAGE_A,
        vec![text_event(
            PAGE_A,
            psid,
            "m_out_5",
            "where is my order?",
            600_000,
        )],
        vec![],
    )]);
    processor.handle(sqs_event("t", &text), None).await;
    assert_eq!(sends(&r.graph).await.len(), 1);
    received(&r.sdk, &subscriber).await;

    let send = json!({"type": "send", "command_id": "order-42-shipped", "page_id": PAGE_A,
        "recipient": {"id": psid}, "message": {"text": "Your order shipped"}, "messaging_type": "RESPONSE"});
    let first = processor
        .handle(sqs_event("c", &[command_message(send.clone(), psid)]), None)
        .await;
    assert!(failed_ids(&first).is_empty());
    let calls = sends(&r.graph).await;
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1].2["message"]["text"], "Your order shipped");
    assert_eq!(calls[1].2["messaging_type"], "RESPONSE");
    let events = received(&r.sdk, &subscriber).await;
    check(&events);
    let completed = of_type(&events, "Command Completed");
    assert_eq!(completed.len(), 1, "{events:#?}");
    assert_eq!(completed[0]["command_id"], "order-42-shipped");
    assert_eq!(completed[0]["outcome"]["action"]["outcome"], "sent");
    let sent = of_type(&events, "Message Sent");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["command_id"], "order-42-shipped");

    // The same command again (the business retried): nothing sent again.
    processor
        .handle(sqs_event("d", &[command_message(send, psid)]), None)
        .await;
    assert_eq!(sends(&r.graph).await.len(), 2);

    // 25 hours after the person's last message: refused, no call.
    let old = queue_messages(&[(
        PAGE_A,
        vec![text_event(
            PAGE_A,
            "2800000000000006",
            "m_out_6",
            "hi",
            DAY + HOUR,
        )],
        vec![],
    )]);
    processor.handle(sqs_event("o", &old), None).await;
    received(&r.sdk, &subscriber).await;
    let late = json!({"type": "send", "command_id": "late-1", "page_id": PAGE_A,
        "recipient": {"id": "2800000000000006"}, "message": {"text": "Still there?"}});
    processor
        .handle(
            sqs_event("l", &[command_message(late, "2800000000000006")]),
            None,
        )
        .await;
    assert_eq!(sends(&r.graph).await.len(), 2);
    let events = received(&r.sdk, &subscriber).await;
    check(&events);
    let refused = of_type(&events, "Send Refused");
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0]["reason"], "outside_window");
    assert_eq!(refused[0]["command_id"], "late-1");
}

#[tokio::test]
async fn a_send_with_otn_topic_spends_the_held_token_once() {
    let r = rig::rig().await;
    let (bus, subscriber) = subscribed_bus(&r.sdk).await;
    let mut env = rig::env(&r.table, &r.queue, &r.graph);
    env.insert("EVENT_BUS_NAME".to_owned(), bus);
    let processor = processor::from_env(&env, &r.sdk).await.unwrap();
    let psid = "2800000000000008";
    // The person tapped "Notify me" for shoes three days ago: the window is closed.
    let optin = json!({
        "sender": {"id": psid}, "recipient": {"id": PAGE_A}, "timestamp": now_ms() - 3 * DAY,
        "optin": {"type": "one_time_notif_req", "payload": "shoes", "one_time_notif_token": "test-otn-token-8"}
    });
    let messages = queue_messages(&[(PAGE_A, vec![optin], vec![])]);
    processor.handle(sqs_event("s", &messages), None).await;
    received(&r.sdk, &subscriber).await;
    let before = sends(&r.graph).await.len();

    let send = json!({"type": "send", "command_id": "shoes-back-8", "page_id": PAGE_A,
        "recipient": {"id": psid}, "message": {"text": "Back in stock"}, "otn_topic": "shoes"});
    let first = processor
        .handle(sqs_event("c", &[command_message(send.clone(), psid)]), None)
        .await;
    assert!(failed_ids(&first).is_empty());
    let calls = sends(&r.graph).await;
    assert_eq!(calls.len(), before + 1);
    assert_eq!(
        calls[before].2["recipient"]["one_time_notif_token"],
        "test-otn-token-8"
    );
    assert_eq!(calls[before].2["message"]["text"], "Back in stock");
    let tokens = integration_tests::otn::tokens_of(&r, PAGE_A, psid).await;
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0].status, messenger_store::TokenStatus::Used);
    let events = received(&r.sdk, &subscriber).await;
    check(&events);
    let sent = of_type(&events, "Message Sent");
    assert_eq!(sent.len(), 1, "{events:#?}");
    assert_eq!(sent[0]["command_id"], "shoes-back-8");
    assert_eq!(sent[0]["messaging_type"], Value::Null);
    let completed = of_type(&events, "Command Completed");
    assert_eq!(completed[0]["outcome"]["action"]["outcome"], "sent");

    // Again: nothing sent; with a new id: no token left, refused without a call.
    processor
        .handle(sqs_event("d", &[command_message(send, psid)]), None)
        .await;
    let again = json!({"type": "send", "command_id": "shoes-back-9", "page_id": PAGE_A,
        "recipient": {"id": psid}, "message": {"text": "Back in stock"}, "otn_topic": "shoes"});
    processor
        .handle(sqs_event("e", &[command_message(again, psid)]), None)
        .await;
    assert_eq!(sends(&r.graph).await.len(), before + 1);
    let events = received(&r.sdk, &subscriber).await;
    check(&events);
    let refused = of_type(&events, "Send Refused");
    assert_eq!(refused.len(), 1, "{events:#?}");
    assert_eq!(refused[0]["reason"], "no_token_for_topic");
    assert_eq!(refused[0]["command_id"], "shoes-back-9");
}

/// An item written out with its attributes (and those of nested maps) in order.
fn canonical(item: &std::collections::HashMap<String, AttributeValue>) -> String {
    fn value(v: &AttributeValue) -> String {
        match v {
            AttributeValue::M(m) => canonical(m),
            AttributeValue::L(l) => format!("{:?}", l.iter().map(value).collect::<Vec<_>>()),
            other => format!("{other:?}"),
        }
    }
    let sorted: std::collections::BTreeMap<&String, String> =
        item.iter().map(|(k, v)| (k, value(v))).collect();
    format!("{sorted:?}")
}

/// Every item of the table, each attribute value written out (nested maps,
/// lists and sets included), to look for an id in any of them.
async fn every_item(sdk: &SdkConfig, table: &str) -> Vec<String> {
    let client = aws_sdk_dynamodb::Client::new(sdk);
    let mut out = Vec::new();
    let mut start = None;
    loop {
        let page = client
            .scan()
            .table_name(table)
            .set_exclusive_start_key(start)
            .send()
            .await
            .unwrap();
        out.extend(page.items().iter().map(canonical));
        start = page.last_evaluated_key;
        if start.is_none() {
            return out;
        }
    }
}

#[tokio::test]
async fn forget_erases_every_trace_of_the_person_and_nothing_of_anyone_else() {
    let r = rig::rig().await;
    let (bus, subscriber) = subscribed_bus(&r.sdk).await;
    let mut env = rig::env(&r.table, &r.queue, &r.graph);
    env.insert("EVENT_BUS_NAME".to_owned(), bus);
    let processor = processor::from_env(&env, &r.sdk).await.unwrap();
    let (psid, other) = ("2800000000000011", "2800000000000012");
    // A conversation long enough to have archived part of its ledger, an optin
    // with its token (in both indexes), and another person of the same Page.
    let mut events: Vec<Value> = (0..40)
        .map(|i| {
            text_event(
                PAGE_A,
                psid,
                &format!("m_forget_{i}_{}", "x".repeat(60)),
                "hello",
                600_000 - i * 1_000,
            )
        })
        .collect();
    events.push(json!({
        "sender": {"id": psid}, "recipient": {"id": PAGE_A}, "timestamp": now_ms() - 100_000,
        "optin": {"type": "one_time_notif_req", "payload": "shoes", "one_time_notif_token": "test-otn-token-11"}
    }));
    let first = queue_messages(&[(PAGE_A, events, vec![])]);
    for (i, batch) in first.chunks(10).enumerate() {
        processor
            .handle(sqs_event(&format!("a{i}"), batch), None)
            .await;
    }
    let other_text = queue_messages(&[(
        PAGE_A,
        vec![text_event(PAGE_A, other, "m_forget_other", "hi", 60_000)],
        vec![],
    )]);
    processor.handle(sqs_event("b", &other_text), None).await;
    // A message of each person parked while the Page had no token; then the Page's
    // record is removed again, so the seed token serves the rest of this test.
    {
        use messenger_store::PageRegistry;
        let store = rig::dynamo_store(&r);
        let page = messenger_types::PageId::new(PAGE_A);
        for (who, message) in [(psid, &first[0]), (other, &other_text[0])] {
            let parked = messenger_store::ParkedMessage {
                key: messenger_store::ParkedMessage::key_for(
                    messenger_types::Timestamp::now(),
                    &format!("sqs-{who}"),
                ),
                group: message.group_id.clone(),
                body: message.body.clone(),
            };
            let thread =
                messenger_store::ThreadKey::psid(page.clone(), messenger_types::Psid::new(who));
            let kept = store
                .park(
                    &page,
                    &parked,
                    Some(&thread),
                    messenger_types::Timestamp::now(),
                )
                .await
                .unwrap();
            assert_eq!(kept, messenger_store::Parked::Kept);
        }
        aws_sdk_dynamodb::Client::new(&r.sdk)
            .delete_item()
            .table_name(&r.table)
            .key("pk", AttributeValue::S("PAGES".to_owned()))
            .key("sk", AttributeValue::S(format!("PAGE#{PAGE_A}")))
            .send()
            .await
            .unwrap();
    }
    let before = every_item(&r.sdk, &r.table).await;
    assert!(
        before.iter().filter(|i| i.contains(psid)).count() >= 4,
        "the thread, an archive, the token, the parked message"
    );
    let others_before: Vec<&String> = before.iter().filter(|i| i.contains(other)).collect();
    assert!(!others_before.is_empty());
    received(&r.sdk, &subscriber).await;

    let forget =
        json!({"type": "forget", "command_id": "gdpr-11", "page_id": PAGE_A, "psid": psid});
    let done = processor
        .handle(
            sqs_event("f", &[command_message(forget.clone(), psid)]),
            None,
        )
        .await;
    assert!(failed_ids(&done).is_empty());
    let after = every_item(&r.sdk, &r.table).await;
    let left: Vec<&String> = after.iter().filter(|i| i.contains(psid)).collect();
    assert!(left.is_empty(), "items still holding the PSID: {left:#?}");
    let others_after: Vec<&String> = after.iter().filter(|i| i.contains(other)).collect();
    assert_eq!(
        others_after, others_before,
        "another person's items changed"
    );
    let events = received(&r.sdk, &subscriber).await;
    check(&events);
    let forgotten = of_type(&events, "Person Forgotten");
    assert_eq!(forgotten.len(), 1, "{events:#?}");
    assert_eq!(forgotten[0]["psid"], psid);
    let completed = of_type(&events, "Command Completed");
    assert_eq!(completed[0]["outcome"]["outcome"], "forgotten");
    let code = completed[0]["outcome"]["confirmation_code"].clone();
    assert_eq!(forgotten[0]["confirmation_code"], code);

    // A redrive of the person's old messages recreates nothing and sends nothing.
    let sends_before = sends(&r.graph).await.len();
    processor.handle(sqs_event("r", &first[..10]), None).await;
    assert_eq!(sends(&r.graph).await.len(), sends_before);
    let after_redrive = every_item(&r.sdk, &r.table).await;
    assert!(after_redrive.iter().all(|i| !i.contains(psid)));

    // Forget again: a success with nothing to do, the same code.
    processor
        .handle(sqs_event("g", &[command_message(forget, psid)]), None)
        .await;
    let events = received(&r.sdk, &subscriber).await;
    check(&events);
    let completed = of_type(&events, "Command Completed");
    assert_eq!(completed[0]["outcome"]["erased"], 0);
    assert_eq!(completed[0]["outcome"]["confirmation_code"], code);

    // The person writes again: a new thread, answered; an old copy still does nothing.
    let again = queue_messages(&[(
        PAGE_A,
        vec![text_event(PAGE_A, psid, "m_forget_new", "back", 0)],
        vec![],
    )]);
    processor.handle(sqs_event("n", &again), None).await;
    assert_eq!(sends(&r.graph).await.len(), sends_before + 1);
    processor.handle(sqs_event("o", &first[..1]), None).await;
    assert_eq!(sends(&r.graph).await.len(), sends_before + 1);
}

#[tokio::test]
async fn with_bot_none_a_text_is_published_and_nothing_is_sent() {
    let r = rig::rig().await;
    let (bus, subscriber) = subscribed_bus(&r.sdk).await;
    let mut env = rig::env(&r.table, &r.queue, &r.graph);
    env.insert("EVENT_BUS_NAME".to_owned(), bus);
    env.insert("BOT".to_owned(), "none".to_owned());
    let processor = processor::from_env(&env, &r.sdk).await.unwrap();
    let messages = queue_messages(&[(
        PAGE_A,
        vec![text_event(
            PAGE_A,
            "2800000000000007",
            "m_out_7",
            "hello",
            1_000,
        )],
        vec![],
    )]);
    processor.handle(sqs_event("s", &messages), None).await;
    assert!(sends(&r.graph).await.is_empty());
    let events = received(&r.sdk, &subscriber).await;
    check(&events);
    assert_eq!(of_type(&events, "Event Received").len(), 1);
    assert!(of_type(&events, "Message Sent").is_empty());

    env.insert("BOT".to_owned(), "robot".to_owned());
    let err = processor::from_env(&env, &r.sdk)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("BOT"), "{err}");
}
