//! The trusted queue (#17): a Meta event put on the events queue by a principal
//! other than the webhook's role is refused, acknowledged and recorded, never
//! processed; the same message from the webhook's role is processed.
//!
//! moto stamps every message with one fixed `SenderId` (`AIDAIT2UOQQY3AUEKVGXU`),
//! whoever sends it; so "another principal" here is a processor told that the
//! webhook's role has another id, and the control is one told it has moto's. The
//! `SenderId` the processor checks is the one SQS (moto) put on the message, read
//! back with ReceiveMessage as Lambda's trigger reads it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use aws_sdk_sqs::types::MessageSystemAttributeName;
use integration_tests::rig::{PAGE_A, env, rig, sends};
use integration_tests::*;
use processor::MessageOutcome;
use processor::sender::SenderRefusal;
use signals::Metric;

/// A role id that is not moto's sender: the webhook's, as far as the processor knows.
const WEBHOOK_ROLE_ID: &str = "AROAWEBHOOKROLEFORTEST";
const PROCESSOR_ROLE_ID: &str = "AROAPROCESSORROLEFORTEST";

fn batch(records: Vec<SqsMessage>) -> SqsEvent {
    let mut event = SqsEvent::default();
    event.records = records;
    event
}

/// Receives the queue's messages as Lambda's SQS trigger hands them over: body,
/// id and the system attributes (`SenderId` among them).
async fn receive(sdk: &SdkConfig, queue: &str) -> Vec<SqsMessage> {
    let got = aws_sdk_sqs::Client::new(sdk)
        .receive_message()
        .queue_url(queue)
        .max_number_of_messages(10)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .visibility_timeout(0)
        .send()
        .await
        .unwrap();
    got.messages()
        .iter()
        .map(|m| {
            let mut message = SqsMessage::default();
            message.message_id = m.message_id().map(str::to_owned);
            message.body = m.body().map(str::to_owned);
            for (name, value) in m.attributes().into_iter().flatten() {
                message
                    .attributes
                    .insert(name.as_str().to_owned(), value.clone());
            }
            message
        })
        .collect()
}

#[tokio::test]
async fn a_forged_meta_event_from_another_principal_is_refused_and_recorded() {
    let rig = rig().await;
    // A Meta event as the webhook would queue it, sent by this test's principal.
    let forged = queue_messages(&[(
        PAGE_A,
        vec![text_event(
            PAGE_A,
            "2950000000000001",
            "m_forged",
            "hello",
            1_000,
        )],
        vec![],
    )]);
    aws_sdk_sqs::Client::new(&rig.sdk)
        .send_message()
        .queue_url(&rig.queue)
        .message_body(&forged[0].body)
        .message_group_id(&forged[0].group_id)
        .message_deduplication_id(&forged[0].dedup_id)
        .send()
        .await
        .unwrap();
    let received = receive(&rig.sdk, &rig.queue).await;
    assert_eq!(received.len(), 1);
    let sender = received[0].attributes["SenderId"].clone();
    assert_ne!(sender, WEBHOOK_ROLE_ID);

    let mut checking = env(&rig.table, &rig.queue, &rig.graph);
    checking.insert("WEBHOOK_SENDER_ID".to_owned(), WEBHOOK_ROLE_ID.to_owned());
    checking.insert(
        "PROCESSOR_SENDER_ID".to_owned(),
        PROCESSOR_ROLE_ID.to_owned(),
    );
    let processor = processor::from_env(&checking, &rig.sdk).await.unwrap();
    assert!(processor.senders.checked());

    // Through the handler, as Lambda calls it: acknowledged (not handed back, so
    // not retried until the dead-letter queue), counted by reason.
    let capture = signals::capture();
    let response = processor.handle(batch(received.clone()), None).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    assert_eq!(
        capture.total(Metric::MessagesRefused, Some("untrusted_sender")),
        1
    );
    assert_eq!(capture.total(Metric::EventsProcessed, None), 0);
    // The outcome is typed, naming the type and the sender's id.
    assert_eq!(
        processor.process_message(&received[0], None).await.unwrap(),
        MessageOutcome::SenderRefused(SenderRefusal::Untrusted {
            kind: "event",
            principal: sender.split(':').next().unwrap().to_owned(),
        })
    );
    // Nothing of it ran: no reply, nothing recorded for the event.
    assert!(sends(&rig.graph).await.is_empty());
    assert!(integration_tests::rig::ledger(&rig).await.is_empty());

    // The control: the same message, from what the processor knows as the
    // webhook's role, is processed and answered.
    let mut trusting = env(&rig.table, &rig.queue, &rig.graph);
    trusting.insert("WEBHOOK_SENDER_ID".to_owned(), sender);
    let processor = processor::from_env(&trusting, &rig.sdk).await.unwrap();
    let response = processor.handle(batch(received), None).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    assert_eq!(sends(&rig.graph).await.len(), 1, "the bot's reply");
}

/// A command from a principal the queue admits is not the processor's to refuse:
/// the queue policy decides who may send commands.
#[tokio::test]
async fn a_command_from_an_admitted_principal_runs_with_the_check_on() {
    let rig = rig().await;
    let forget = serde_json::json!({"type": "forget", "command_id": "tq-1", "page_id": PAGE_A, "psid": "2950000000000002"});
    aws_sdk_sqs::Client::new(&rig.sdk)
        .send_message()
        .queue_url(&rig.queue)
        .message_body(forget.to_string())
        .message_group_id(format!("{PAGE_A}:2950000000000002"))
        .message_deduplication_id("tq-1")
        .send()
        .await
        .unwrap();
    let received = receive(&rig.sdk, &rig.queue).await;
    let mut checking = env(&rig.table, &rig.queue, &rig.graph);
    checking.insert("WEBHOOK_SENDER_ID".to_owned(), WEBHOOK_ROLE_ID.to_owned());
    let processor = processor::from_env(&checking, &rig.sdk).await.unwrap();
    let outcome = processor.process_message(&received[0], None).await.unwrap();
    assert!(matches!(outcome, MessageOutcome::Command(_)), "{outcome:?}");
}
