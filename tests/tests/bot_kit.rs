//! The bot kit against the emulator's table: a bot's memory of a person is kept
//! on the thread's item with the turn (DynamoDB), read back on the person's next
//! event, and its sender actions and quick replies reach the Send API as Meta
//! documents them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use integration_tests::rig::{self, PAGE_A, failed_ids, graph_calls};
use integration_tests::*;
use messenger_store::{ThreadKey, ThreadStore};
use messenger_types::send::OutgoingMessage;
use messenger_types::templates::QuickReply;
use messenger_types::{PageId, Psid};
use processor::router::Router;
use serde_json::json;

/// Counts each person's messages in its own state and answers with the count.
fn counting_bot() -> Router {
    Router::new().otherwise(|turn, _| {
        let seen = turn.state::<u32>().unwrap_or(0) + 1;
        let answer = OutgoingMessage::text(&format!("message {seen}"))
            .with_quick_replies(vec![QuickReply::text("Again", "AGAIN")])
            .unwrap();
        turn.typing()
            .into_iter()
            .chain(turn.remember(&seen).ok())
            .chain(turn.reply(answer))
            .collect()
    })
}

#[tokio::test]
async fn a_bots_memory_of_a_person_is_kept_on_the_thread_and_read_on_the_next_event() {
    let r = rig::rig().await;
    let bot = rig::with_bot(&r, counting_bot());
    let psid = "2970000000000001";
    for n in 1..=3 {
        let messages = queue_messages(&[(
            PAGE_A,
            vec![text_event(
                PAGE_A,
                psid,
                &format!("m_kit{n}"),
                "hi",
                1_000 - n,
            )],
            vec![],
        )]);
        let response = bot
            .handle(sqs_event(&format!("k{n}"), &messages), None)
            .await;
        assert!(failed_ids(&response).is_empty());
    }
    let calls = graph_calls(&r.graph).await;
    assert_eq!(calls.len(), 6, "typing and a reply for each: {calls:?}");
    assert_eq!(
        calls[4].2,
        json!({"recipient": {"id": psid}, "sender_action": "typing_on"})
    );
    assert_eq!(calls[5].2["message"]["text"], "message 3");
    assert_eq!(
        calls[5].2["message"]["quick_replies"],
        json!([{"content_type": "text", "title": "Again", "payload": "AGAIN"}])
    );
    let thread = rig::dynamo_store(&r)
        .thread(&ThreadKey::psid(PageId::new(PAGE_A), Psid::new(psid)))
        .await
        .unwrap();
    assert_eq!(thread.bot_state.and_then(|s| s.get::<u32>()), Some(3));
}
