//! Helpers shared by the one-time notification tests: a notify command as the
//! business puts it on the queue, a thread's stored tokens, and a delivery run
//! through the processor with everything it queues after it.

use messenger_store::StoredToken;
use messenger_types::{PageId, Psid};
use serde_json::json;

use crate::rig::{Rig, dynamo_store, failed_ids, run_queue};
use crate::{sqs_event, unique};

/// A notify command as the business's backend puts it on the events queue.
pub fn notify(page: &str, topic: &str, text: &str) -> webhook::OutgoingMessage {
    webhook::OutgoingMessage {
        group_id: format!("notify-{page}"),
        dedup_id: unique("notify"),
        body: json!({"type": "notify", "page_id": page, "topic": topic, "message": {"text": text}})
            .to_string(),
        kind: "notify",
    }
}

/// Every OTN token stored on the person's thread, oldest first.
pub async fn tokens_of(rig: &Rig, page: &str, psid: &str) -> Vec<StoredToken> {
    dynamo_store(rig)
        .tokens_of(&messenger_store::ThreadKey::psid(
            PageId::new(page),
            Psid::new(psid),
        ))
        .await
        .unwrap()
}

/// Hands `messages` to the processor as one SQS delivery, expects none handed
/// back, then runs whatever that put on the events queue.
pub async fn process(rig: &Rig, prefix: &str, messages: &[webhook::OutgoingMessage]) {
    let response = rig
        .processor
        .handle(sqs_event(prefix, messages), None)
        .await;
    assert!(
        failed_ids(&response).is_empty(),
        "{prefix}: {:?}",
        failed_ids(&response)
    );
    run_queue(rig, 4).await;
}
