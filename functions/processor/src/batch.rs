//! One SQS batch. Messages of different FIFO groups (different threads) do not
//! wait for each other: the groups run concurrently, at most
//! [`Processor::group_concurrency`] at once ([`MAX_CONCURRENT_GROUPS`] by default), and each group's messages run in their
//! order. A message that fails is reported, and so is every later message of its
//! group in the batch, so that the group's order holds when SQS delivers them
//! again.

use std::time::{Duration, SystemTime};

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use event_queue::EventQueue;
use futures_util::StreamExt;
use messenger_store::{PageRegistry, Store, TokenStore};
use messenger_types::QueueMessage;
use tracing::Instrument;

#[cfg(doc)]
use crate::MAX_CONCURRENT_GROUPS;
use crate::bot::Bot;
use crate::{MIN_TIME_PER_MESSAGE, MessageOutcome, Messenger, ProcessError, Processor, time_left};
use crate::{backoff, budget, dead_letter};

/// The batch's messages by FIFO group (as indexes into `records`), each group in
/// the batch's order, the groups in the order of their first message. A message
/// without a group (a standard queue) is a group of its own.
fn groups(records: &[SqsMessage]) -> Vec<Vec<usize>> {
    let mut groups: Vec<(Option<&str>, Vec<usize>)> = Vec::new();
    for (i, message) in records.iter().enumerate() {
        let group = message.attributes.get("MessageGroupId").map(String::as_str);
        match groups
            .iter_mut()
            .find(|(g, _)| group.is_some() && *g == group)
        {
            Some((_, members)) => members.push(i),
            None => groups.push((group, vec![i])),
        }
    }
    groups.into_iter().map(|(_, members)| members).collect()
}

/// How many times SQS has delivered the message (`ApproximateReceiveCount`; 1
/// when absent).
fn receive_count(message: &SqsMessage) -> u32 {
    message
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
}

impl<S: Store + TokenStore + PageRegistry, M: Messenger, B: Bot, Q: EventQueue + Sync>
    Processor<S, M, B, Q>
{
    /// Processes an SQS batch and reports the messages to hand back. `deadline`
    /// is the invocation's; with too little time left, the remaining messages
    /// are handed back untouched.
    pub async fn handle(&self, event: SqsEvent, deadline: Option<SystemTime>) -> SqsBatchResponse {
        let records = &event.records;
        let failed: Vec<Vec<(usize, Duration)>> = futures_util::stream::iter(groups(records))
            .map(|group| self.process_group(records, group, deadline))
            .buffer_unordered(self.group_concurrency.max(1))
            .collect()
            .await;
        let mut response = SqsBatchResponse::default();
        let mut visibility = Vec::new();
        for (i, delay) in failed.into_iter().flatten() {
            let Some(message) = records.get(i) else {
                continue;
            };
            response.add_failure(message.message_id.clone().unwrap_or_default());
            if let Some(handle) = &message.receipt_handle {
                visibility.push((handle.clone(), delay));
            }
        }
        if !visibility.is_empty()
            && let Err(error) = self.visibility.set_visibility(&visibility).await
        {
            tracing::warn!(%error, "handed-back messages wait out the queue's visibility timeout");
        }
        // The batch's metrics, once per invocation.
        signals::flush();
        response
    }

    /// One group's messages in order; returns those to hand back (as indexes into
    /// `records`), each with the delay before its next delivery: none for a
    /// group that was out of time, else [`backoff::delay_after`] the failed
    /// message's receive count, the same for the later messages of its group.
    async fn process_group(
        &self,
        records: &[SqsMessage],
        group: Vec<usize>,
        deadline: Option<SystemTime>,
    ) -> Vec<(usize, Duration)> {
        let mut failed = Vec::new();
        let mut delay = Duration::ZERO;
        for i in group {
            let Some(message) = records.get(i) else {
                continue;
            };
            let id = message.message_id.clone().unwrap_or_default();
            let span = tracing::info_span!("sqs_message", message_id = %id);
            if !failed.is_empty() {
                span.in_scope(|| {
                    tracing::info!("an earlier message of its group failed; handed back")
                });
                failed.push(i);
                continue;
            }
            let result = if deadline.is_some_and(|d| time_left(d) < MIN_TIME_PER_MESSAGE) {
                Err(ProcessError::OutOfTime)
            } else {
                budget::within(deadline, self.process_message(message, deadline))
                    .instrument(span.clone())
                    .await
            };
            if let Err(error) = result {
                if self
                    .dead_letter(message, &error)
                    .instrument(span.clone())
                    .await
                {
                    continue;
                }
                span.in_scope(|| tracing::warn!(%error, "message handed back to the queue"));
                delay = match error {
                    ProcessError::OutOfTime => Duration::ZERO,
                    _ => backoff::delay_after(receive_count(message)),
                };
                failed.push(i);
            }
        }
        failed.into_iter().map(|i| (i, delay)).collect()
    }

    /// Puts a message that failed for good on the dead-letter queue ([`dead_letter`]);
    /// `true` when it is there and the message can be acknowledged.
    async fn dead_letter(&self, message: &SqsMessage, error: &ProcessError) -> bool {
        if !dead_letter::is_permanent(error)
            || receive_count(message) < dead_letter::AFTER_RECEIVES
            || !self.dead_letters.configured()
        {
            return false;
        }
        let reason = error.to_string();
        match self.dead_letters.put(message, &reason).await {
            Ok(()) => {
                signals::count(signals::Metric::MessagesDeadLettered, 1);
                tracing::error!(
                    %error,
                    alert = true,
                    "message can never succeed: put on the dead-letter queue with its reason and acknowledged; its thread goes on"
                );
                true
            }
            Err(put) => {
                tracing::warn!(%error, %put, "could not put a message that can never succeed on the dead-letter queue; handing it back");
                false
            }
        }
    }

    /// One message: a webhook event, a `notify` command or one person's notification.
    pub async fn process_message(
        &self,
        message: &SqsMessage,
        deadline: Option<SystemTime>,
    ) -> Result<MessageOutcome, ProcessError> {
        let body = message.body.as_deref().unwrap_or("");
        let queued = QueueMessage::from_json(body)?;
        if let Some(refused) = self.senders.screen(message, &queued) {
            return Ok(refused);
        }
        // One person's notification is a send; a notify, a page of its fan-out:
        // started only with the time they need (a message's margin is less).
        let needs = match &queued {
            QueueMessage::NotifyOne(_) => Some(budget::MIN_TIME_PER_ACTION),
            QueueMessage::Notify(_) => Some(budget::MIN_TIME_PER_FAN_OUT_PAGE),
            _ => None,
        };
        if needs.is_some_and(|needs| !budget::allows(needs)) {
            return Err(ProcessError::OutOfTime);
        }
        if let Some((page, thread)) = crate::park::needs_token(&queued) {
            let parked = self
                .park_unless_active(message, &page, thread.as_ref())
                .await?;
            if matches!(queued, QueueMessage::Event(_)) {
                self.note_seen(&page).await;
            }
            if let Some(parked) = parked {
                return Ok(parked);
            }
        }
        match queued {
            QueueMessage::Event(queued) => self.process_event(&queued, deadline).await,
            QueueMessage::Notify(command) => {
                let id = message.message_id.as_deref().unwrap_or("unknown");
                self.fan_out(&command, id, deadline).await
            }
            QueueMessage::NotifyOne(one) => self.notify_one(&one).await,
            QueueMessage::ReplayParked(replay) => {
                let done = crate::park::replay(&self.store, &self.queue, &replay.page_id)
                    .await
                    .map_err(|e| match e {
                        crate::park::ReplayError::Store(e) => ProcessError::Store(e),
                        crate::park::ReplayError::Queue(e) => ProcessError::Enqueue(e),
                        crate::park::ReplayError::Key(e) => ProcessError::Store(
                            messenger_store::StoreError::invalid("replay", e.to_string()),
                        ),
                    })?;
                tracing::info!(page_id = %replay.page_id, queued = done.queued, refused = done.refused, "parked messages replayed");
                Ok(MessageOutcome::Replayed {
                    queued: done.queued,
                    refused_by_queue: done.refused,
                })
            }
            QueueMessage::Command(command) => self.process_command(&command, deadline).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: &str, group: Option<&str>) -> SqsMessage {
        let mut m = SqsMessage::default();
        m.message_id = Some(id.to_owned());
        if let Some(group) = group {
            m.attributes
                .insert("MessageGroupId".to_owned(), group.to_owned());
        }
        m
    }

    /// Records every visibility change asked for.
    #[derive(Debug, Default)]
    struct Recorded(std::sync::Arc<std::sync::Mutex<Vec<(String, Duration)>>>);

    impl backoff::Visibility for Recorded {
        fn set_visibility<'a>(
            &'a self,
            entries: &'a [(String, Duration)],
        ) -> backoff::VisibilityFuture<'a> {
            self.0.lock().unwrap().extend_from_slice(entries);
            Box::pin(async { Ok(()) })
        }
    }

    type InMemory = Processor<
        conversation::testing::MemoryStore,
        crate::testing::FakeGraph,
        crate::bot::DefaultBot,
        event_queue::testing::MemoryQueue,
    >;

    /// The processor in memory, with Page 1's token.
    fn in_memory() -> InMemory {
        Processor::new(
            conversation::testing::MemoryStore::new(),
            crate::testing::FakeGraph::default(),
            crate::bot::DefaultBot,
            event_queue::testing::MemoryQueue::new(),
            [(
                messenger_types::PageId::new("1"),
                secrecy::SecretString::from("page-token".to_owned()),
            )]
            .into(),
        )
    }

    fn text(psid: &str, mid: &str, receive_count: u32) -> SqsMessage {
        let body = serde_json::json!({
            "type": "event", "page_id": "1", "source": "messaging", "key": format!("mid:{mid}"),
            "event": {"sender": {"id": psid}, "recipient": {"id": "1"},
                "timestamp": messenger_types::Timestamp::now().as_millis() - 1_000,
                "message": {"mid": mid, "text": "hello"}}
        });
        let mut m = message(mid, Some(&format!("1:{psid}")));
        m.body = Some(body.to_string());
        m.receipt_handle = Some(format!("rh-{mid}"));
        m.attributes.insert(
            "ApproximateReceiveCount".to_owned(),
            receive_count.to_string(),
        );
        m
    }

    #[tokio::test]
    async fn a_passing_failure_hands_its_group_back_with_a_back_off_not_the_visibility_timeout() {
        let mut p = in_memory();
        let recorded = Recorded::default();
        let seen = recorded.0.clone();
        p.visibility = Box::new(recorded);
        // Graph is down for the first send: its thread's two messages go back.
        p.graph.fail_next(graph_api::GraphError::new(
            graph_api::ErrorClass::Transient,
            "service unavailable",
        ));
        let mut event = SqsEvent::default();
        event.records = vec![
            text("21", "a1", 3),
            text("21", "a2", 1),
            text("22", "b1", 1),
        ];
        let response = p.handle(event, None).await;
        let failed: Vec<String> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect();
        assert_eq!(failed, ["a1", "a2"]);
        // Third delivery: 20 s, for the whole group; the other thread went on.
        assert_eq!(
            *seen.lock().unwrap(),
            [
                ("rh-a1".to_owned(), Duration::from_secs(20)),
                ("rh-a2".to_owned(), Duration::from_secs(20))
            ]
        );
        assert_eq!(p.graph.sends().len(), 1);

        // With no time left, everything goes back at once, without a delay.
        seen.lock().unwrap().clear();
        let mut late = SqsEvent::default();
        late.records = vec![text("23", "c1", 1)];
        let response = p
            .handle(late, Some(SystemTime::now() + Duration::from_secs(1)))
            .await;
        assert_eq!(response.batch_item_failures.len(), 1);
        assert_eq!(
            *seen.lock().unwrap(),
            [("rh-c1".to_owned(), Duration::ZERO)]
        );
    }

    /// A dead-letter queue that records what it was given, or refuses everything.
    #[derive(Debug, Default)]
    struct Parked {
        put: std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>,
        refuse: bool,
    }

    impl dead_letter::DeadLetters for Parked {
        fn put<'a>(
            &'a self,
            message: &'a SqsMessage,
            reason: &'a str,
        ) -> dead_letter::DeadLetterFuture<'a> {
            if self.refuse {
                return Box::pin(async { Err("AccessDenied".to_owned()) });
            }
            self.put.lock().unwrap().push((
                message.message_id.clone().unwrap_or_default(),
                reason.to_owned(),
            ));
            Box::pin(async { Ok(()) })
        }
    }

    #[tokio::test]
    async fn a_message_that_can_never_succeed_goes_to_the_dead_letter_queue_and_its_thread_goes_on()
    {
        let batch = |receives: u32| {
            // An unreadable message first in the thread, a readable one behind it.
            let mut junk = text("21", "j1", receives);
            junk.message_id = Some("j0".to_owned());
            junk.receipt_handle = Some("rh-j0".to_owned());
            junk.body = Some(
                r#"{"type":"event","page_id":"1","source":"messaging","key":"k","event":[1]}"#
                    .to_owned(),
            );
            let mut event = SqsEvent::default();
            event.records = vec![junk, text("21", "a1", 1)];
            event
        };

        let mut p = in_memory();
        let parked = Parked::default();
        let put = parked.put.clone();
        p.dead_letters = Box::new(parked);
        // Its first deliveries go back, its thread with it (a processor being
        // deployed may yet read it)...
        for receives in 1..dead_letter::AFTER_RECEIVES {
            let response = p.handle(batch(receives), None).await;
            assert_eq!(response.batch_item_failures.len(), 2);
        }
        assert!(put.lock().unwrap().is_empty());
        assert!(p.graph.sends().is_empty());
        // ... then it goes to the dead-letter queue, and the thread goes on.
        let response = p.handle(batch(dead_letter::AFTER_RECEIVES), None).await;
        assert!(response.batch_item_failures.is_empty(), "{response:?}");
        assert_eq!(
            *put.lock().unwrap(),
            [(
                "j0".to_owned(),
                "the queued event is not a JSON object".to_owned()
            )]
        );
        assert_eq!(
            p.graph.sends().len(),
            1,
            "the message behind it was answered"
        );

        // A passing failure is not dead-lettered: it is handed back.
        let mut p = in_memory();
        let parked = Parked::default();
        let put = parked.put.clone();
        p.dead_letters = Box::new(parked);
        p.graph.fail_next(graph_api::GraphError::new(
            graph_api::ErrorClass::Transient,
            "service unavailable",
        ));
        let mut event = SqsEvent::default();
        event.records = vec![text("22", "b1", 1)];
        let response = p.handle(event, None).await;
        assert_eq!(response.batch_item_failures.len(), 1);
        assert!(put.lock().unwrap().is_empty());

        // The dead-letter queue refuses: handed back with its thread, nothing lost.
        let mut p = in_memory();
        p.dead_letters = Box::new(Parked {
            refuse: true,
            ..Parked::default()
        });
        let response = p.handle(batch(dead_letter::AFTER_RECEIVES), None).await;
        let failed: Vec<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        assert_eq!(failed, ["j0", "a1"]);
        assert!(p.graph.sends().is_empty());

        // No dead-letter queue configured: handed back, as before.
        let p = in_memory();
        let response = p.handle(batch(dead_letter::AFTER_RECEIVES), None).await;
        assert_eq!(response.batch_item_failures.len(), 2);
    }

    #[tokio::test]
    async fn notification_work_starts_only_with_the_time_a_send_or_a_page_needs() {
        let p = in_memory();
        let mut notify = message("n1", Some("notify:1:t"));
        notify.body = Some(
            r#"{"type":"notify","page_id":"1","topic":"t","message":{"text":"hi"}}"#.to_owned(),
        );
        let mut one = message("o1", Some("1:21"));
        one.body = Some(
            r#"{"type":"notify_one","page_id":"1","psid":"21","topic":"t","token_sk":"OTN#1","notify_id":"n1","message":{"text":"hi"}}"#
                .to_owned(),
        );
        // More than a message's margin, less than a page's or a send's.
        let deadline = SystemTime::now() + budget::MIN_TIME_PER_MESSAGE + Duration::from_secs(3);
        assert!(deadline < SystemTime::now() + budget::MIN_TIME_PER_ACTION);
        for m in [notify, one] {
            let result =
                budget::within(Some(deadline), p.process_message(&m, Some(deadline))).await;
            assert!(matches!(result, Err(ProcessError::OutOfTime)), "{result:?}");
        }
        assert!(p.queue.accepted().is_empty());
        assert!(p.graph.sends().is_empty());
    }

    #[test]
    fn groups_keep_the_batch_order_inside_each_group() {
        let batch = vec![
            message("1", Some("a")),
            message("2", Some("b")),
            message("3", Some("a")),
            message("4", None),
            message("5", None),
            message("6", Some("b")),
        ];
        let ids: Vec<Vec<&str>> = groups(&batch)
            .iter()
            .map(|g| {
                g.iter()
                    .map(|&i| batch[i].message_id.as_deref().unwrap())
                    .collect()
            })
            .collect();
        assert_eq!(
            ids,
            vec![vec!["1", "3"], vec!["2", "6"], vec!["4"], vec!["5"]]
        );
    }
}
