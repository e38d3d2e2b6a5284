//! Exactly once at the edges of time, against the emulator and a fake Graph API: a
//! token spend DynamoDB applied but whose answer was lost, a crash between a spend
//! and its send (resolved by the redelivery, or by the sweeper when none comes),
//! and a redrive of a processed command long after it was processed. Every
//! assertion is on what the person receives or what the table says of their
//! tokens.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, Ordering};

use aws_sdk_dynamodb::config::interceptors::{
    BeforeDeserializationInterceptorContextMut, BeforeTransmitInterceptorContextRef,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use integration_tests::otn::*;
use integration_tests::rig::*;
use integration_tests::*;
use messenger_store::otn::OTN_LIFETIME_MS;
use messenger_store::{
    DynamoStore, NewToken, SENDING_LEASE_MS, ThreadStore as _, TokenKind, TokenRef, TokenStatus,
    TokenStore as _,
};
use messenger_types::queue::QueueMessageType;
use messenger_types::{NotifyOne, PageId, Psid, Timestamp};
use processor::MessageOutcome;
use serde_json::{Value, json};

const TOPIC: &str = "back in stock";

/// Stores an ACTIVE one-time token as the processor does when its optin arrives.
async fn seed_token(store: &DynamoStore, psid: &str, token: &str, created_ms: i64) {
    let created = Timestamp::from_millis(created_ms);
    let stored = store
        .save_token(
            &NewToken {
                page: PageId::new(PAGE_A),
                psid: Psid::new(psid),
                topic: TOPIC.to_owned(),
                token: token.to_owned(),
                kind: TokenKind::OneTime,
                created_at: created,
                expires_at: created.plus_millis(OTN_LIFETIME_MS),
            },
            true,
            created,
        )
        .await
        .unwrap();
    assert!(stored, "{token} was new");
}

/// One person's share of a notify, as the fan-out queues it.
fn notify_one(notify_id: &str, psid: &str, token_sk: &str) -> NotifyOne {
    NotifyOne {
        kind: QueueMessageType::NotifyOne,
        notify_id: notify_id.to_owned(),
        page_id: PageId::new(PAGE_A),
        psid: Psid::new(psid),
        token_sk: token_sk.to_owned(),
        topic: TOPIC.to_owned(),
        message: serde_json::from_value(json!({"text": "Back in stock"})).unwrap(),
    }
}

/// How many sends carried this one-time notification token.
async fn sends_with_token(rig: &Rig, token: &str) -> usize {
    sends(&rig.graph)
        .await
        .iter()
        .filter(|(_, _, body)| body["recipient"]["one_time_notif_token"] == token)
        .count()
}

fn token_ref(t: &messenger_store::StoredToken) -> TokenRef {
    TokenRef {
        page: t.page.clone(),
        psid: t.psid.clone(),
        sk: t.sk.clone(),
    }
}

/// Lets the first `times` token spends reach DynamoDB (which applies them) and
/// then replaces DynamoDB's answer with a 500 InternalServerError, as a dropped
/// connection after the write would leave the caller: the SDK retries the same
/// request, which then finds the token already USED.
#[derive(Debug, Default)]
struct DropSpendAnswers {
    armed: AtomicU32,
    this_attempt: AtomicBool,
    dropped: AtomicU32,
}

impl Intercept for DropSpendAnswers {
    fn name(&self) -> &'static str {
        "DropSpendAnswers"
    }

    fn read_before_transmit(
        &self,
        ctx: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let request = ctx.request();
        let target = request.headers().get("x-amz-target").unwrap_or_default();
        let body = String::from_utf8_lossy(request.body().bytes().unwrap_or_default());
        // Only the spend conditions on the token's kind.
        let spend = target.ends_with(".UpdateItem")
            && body.contains("token_kind")
            && body.contains("\"USED\"");
        self.this_attempt.store(spend, Ordering::SeqCst);
        Ok(())
    }

    fn modify_before_deserialization(
        &self,
        ctx: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if !self.this_attempt.swap(false, Ordering::SeqCst)
            || self
                .armed
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_err()
        {
            return Ok(());
        }
        assert_eq!(
            ctx.response().status().as_u16(),
            200,
            "DynamoDB applied the spend"
        );
        self.dropped.fetch_add(1, Ordering::SeqCst);
        let response = ctx.response_mut();
        *response.status_mut() = 500u16.try_into().unwrap();
        response.headers_mut().remove("content-length");
        response.headers_mut().remove("x-amz-crc32");
        *response.body_mut() = r#"{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"the connection was dropped (injected)"}"#.into();
        Ok(())
    }
}

#[tokio::test]
async fn a_spend_whose_first_answer_is_dropped_sends_exactly_once() {
    let rig = rig().await;
    let psid = "2700000000000001";
    let plain = dynamo_store(&rig);
    seed_token(&plain, psid, "otn-dropped-answer", now_ms() - DAY).await;
    let faults = Arc::new(DropSpendAnswers::default());
    faults.armed.store(1, Ordering::SeqCst);
    let config = aws_sdk_dynamodb::config::Builder::from(&rig.sdk)
        .interceptor(DropSpendAnswersRef(faults.clone()))
        .build();
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::from_conf(config), &rig.table);
    let processor = with_store(&rig, store);
    let held = tokens_of(&rig, PAGE_A, psid).await;

    let outcome = processor
        .notify_one(&notify_one("restock-1", psid, &held[0].sk))
        .await
        .unwrap();

    assert_eq!(
        faults.dropped.load(Ordering::SeqCst),
        1,
        "the spend's first answer was dropped after DynamoDB applied it"
    );
    assert!(
        matches!(outcome, MessageOutcome::Notified(Outcome::Sent { .. })),
        "{outcome:?}"
    );
    assert_eq!(sends_with_token(&rig, "otn-dropped-answer").await, 1);
    let after = tokens_of(&rig, PAGE_A, psid).await;
    assert_eq!(after[0].status, TokenStatus::Used);
    assert_eq!(after[0].sending_until, None, "the send's fate is recorded");

    // The same work delivered again changes nothing.
    let again = processor
        .notify_one(&notify_one("restock-1", psid, &held[0].sk))
        .await
        .unwrap();
    assert_eq!(again, MessageOutcome::Duplicate);
    assert_eq!(sends_with_token(&rig, "otn-dropped-answer").await, 1);
}

/// [`DropSpendAnswers`] shared with the test that reads its counts.
#[derive(Debug)]
struct DropSpendAnswersRef(Arc<DropSpendAnswers>);

impl Intercept for DropSpendAnswersRef {
    fn name(&self) -> &'static str {
        self.0.name()
    }

    fn read_before_transmit(
        &self,
        ctx: &BeforeTransmitInterceptorContextRef<'_>,
        rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.read_before_transmit(ctx, rc, cfg)
    }

    fn modify_before_deserialization(
        &self,
        ctx: &mut BeforeDeserializationInterceptorContextMut<'_>,
        rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.modify_before_deserialization(ctx, rc, cfg)
    }
}

#[tokio::test]
async fn a_crash_between_spend_and_send_ends_in_one_send_when_the_work_is_redelivered() {
    let rig = rig().await;
    let psid = "2700000000000002";
    let store = dynamo_store(&rig);
    seed_token(&store, psid, "otn-crashed-send", now_ms() - 2 * DAY).await;
    seed_token(&store, psid, "otn-younger", now_ms() - DAY).await;
    let held = tokens_of(&rig, PAGE_A, psid).await;
    // The crashed attempt: the oldest token spent for notification "restock-2",
    // then nothing (the function died before its Graph call, or before its answer).
    let spent = store
        .spend_token(
            &token_ref(&held[0]),
            "restock-2/crashed-attempt",
            Timestamp::now(),
        )
        .await
        .unwrap()
        .unwrap();
    assert!(
        spent.sending_until.is_some(),
        "a spend is sending until recorded"
    );

    // SQS redelivers the work.
    let processor = with_store(&rig, dynamo_store(&rig));
    let outcome = processor
        .notify_one(&notify_one("restock-2", psid, &held[0].sk))
        .await
        .unwrap();
    assert!(
        matches!(outcome, MessageOutcome::Notified(Outcome::Sent { .. })),
        "{outcome:?}"
    );
    assert_eq!(sends_with_token(&rig, "otn-crashed-send").await, 1);
    assert_eq!(
        sends_with_token(&rig, "otn-younger").await,
        0,
        "no second token spent for the same notification"
    );
    let after = tokens_of(&rig, PAGE_A, psid).await;
    assert_eq!(
        (after[0].status, after[0].sending_until),
        (TokenStatus::Used, None)
    );
    assert_eq!(after[1].status, TokenStatus::Active);

    // And delivered once more: the person already has it.
    let again = processor
        .notify_one(&notify_one("restock-2", psid, &held[0].sk))
        .await
        .unwrap();
    assert_eq!(again, MessageOutcome::Duplicate);
    assert_eq!(sends(&rig.graph).await.len(), 1);
}

#[tokio::test]
async fn a_resumed_send_whose_token_meta_already_used_is_not_sent_again_or_given_back() {
    let rig = rig().await;
    let psid = "2700000000000005";
    let store = dynamo_store(&rig);
    seed_token(&store, psid, "otn-sent-before-crash", now_ms() - DAY).await;
    let held = tokens_of(&rig, PAGE_A, psid).await;
    store
        .spend_token(&token_ref(&held[0]), "restock-5/crashed", Timestamp::now())
        .await
        .unwrap()
        .unwrap();
    // The crashed attempt's message did go out: Meta refuses the token's second use.
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .and(wiremock::matchers::body_partial_json(
            json!({"recipient": {"one_time_notif_token": "otn-sent-before-crash"}}),
        ))
        .respond_with(
            wiremock::ResponseTemplate::new(400).set_body_json(json!({"error": {
            "message": "(#100) The one-time notification token has already been used",
            "type": "OAuthException", "code": 100, "fbtrace_id": "x"}})),
        )
        .with_priority(1)
        .mount(&rig.graph)
        .await;

    let processor = with_store(&rig, dynamo_store(&rig));
    let outcome = processor
        .notify_one(&notify_one("restock-5", psid, &held[0].sk))
        .await
        .unwrap();
    assert_eq!(outcome, MessageOutcome::Notified(Outcome::MaybeSent));
    let after = tokens_of(&rig, PAGE_A, psid).await;
    assert_eq!(
        (after[0].status, after[0].sending_until),
        (TokenStatus::Retired, None),
        "neither given back nor left for the sweeper"
    );
}

fn four_hours_on() -> Timestamp {
    Timestamp::from_millis(now_ms() + 4 * HOUR)
}

#[tokio::test]
async fn a_crash_no_redelivery_resolves_is_given_back_by_the_sweeper_and_then_sent_once() {
    let rig = rig().await;
    let store = dynamo_store(&rig);
    let (crashed, live) = ("2700000000000003", "2700000000000004");
    seed_token(&store, crashed, "otn-stale-spend", now_ms() - DAY).await;
    seed_token(&store, live, "otn-live-spend", now_ms() - DAY).await;
    let stale = tokens_of(&rig, PAGE_A, crashed).await;
    let fresh = tokens_of(&rig, PAGE_A, live).await;
    // Spent four hours ago by an attempt that died, and just now by one that is
    // still sending.
    store
        .spend_token(&token_ref(&stale[0]), "restock-3/crashed", Timestamp::now())
        .await
        .unwrap()
        .unwrap();
    let sweeper_now = four_hours_on();
    store
        .spend_token(
            &token_ref(&fresh[0]),
            "restock-3/live",
            sweeper_now.plus_millis(-60_000),
        )
        .await
        .unwrap()
        .unwrap();
    // The first spend's lease ran out by then.
    const { assert!(4 * HOUR > SENDING_LEASE_MS) };

    let env = [("TABLE_NAME", rig.table.as_str())];
    let sweeper = otn_sweeper::Sweeper {
        clock: four_hours_on,
        ..otn_sweeper::from_env(&env, &rig.sdk).unwrap()
    };
    let event = serde_json::from_value(event_json("otn-sweeper-scheduled.json")).unwrap();
    let report = sweeper.handle(&event, None).await.unwrap();
    assert_eq!(report.given_back, 1, "{report:?}");
    assert_eq!(serde_json::to_value(&report).unwrap()["given_back"], 1);

    let given_back = tokens_of(&rig, PAGE_A, crashed).await;
    assert_eq!(
        (
            given_back[0].status,
            given_back[0].spend_id.as_deref(),
            given_back[0].sending_until
        ),
        (TokenStatus::Active, None, None)
    );
    let still_held = tokens_of(&rig, PAGE_A, live).await;
    assert_eq!(
        still_held[0].status,
        TokenStatus::Used,
        "a live spend is left alone"
    );
    assert!(still_held[0].sending_until.is_some());
    // A second run finds nothing more to give back.
    assert_eq!(sweeper.handle(&event, None).await.unwrap().given_back, 0);

    // The token is back in the topic index: the next notify reaches the person once.
    process(&rig, "n", &[notify(PAGE_A, TOPIC, "Back in stock")]).await;
    assert_eq!(sends_with_token(&rig, "otn-stale-spend").await, 1);
    assert_eq!(sends_with_token(&rig, "otn-live-spend").await, 0);
}

/// How far the processor's clock is ahead of the wall clock.
static CLOCK_AHEAD_MS: AtomicI64 = AtomicI64::new(0);

fn shifted_clock() -> Timestamp {
    Timestamp::from_millis(now_ms() + CLOCK_AHEAD_MS.load(Ordering::SeqCst))
}

/// What DynamoDB's TTL does, at its quickest: deletes every item whose `ttl`
/// (epoch seconds) has passed at `now`.
async fn expire_by_ttl(rig: &Rig, now: Timestamp) -> usize {
    let dynamo = aws_sdk_dynamodb::Client::new(&rig.sdk);
    let mut deleted = 0;
    for item in scan_table(rig).await {
        if attr_n(&item, "ttl").is_some_and(|ttl| ttl * 1000 <= now.as_millis()) {
            dynamo
                .delete_item()
                .table_name(&rig.table)
                .key("pk", item["pk"].clone())
                .key("sk", item["sk"].clone())
                .send()
                .await
                .unwrap();
            deleted += 1;
        }
    }
    deleted
}

fn command(body: Value, psid: &str) -> webhook::OutgoingMessage {
    webhook::OutgoingMessage {
        group_id: format!("{PAGE_A}:{psid}"),
        dedup_id: unique("cmd"),
        body: body.to_string(),
        kind: "command",
    }
}

fn text_at(psid: &str, mid: &str, ahead_ms: i64) -> webhook::OutgoingMessage {
    queue_messages(&[(
        PAGE_A,
        vec![text_event(
            PAGE_A,
            psid,
            mid,
            "and another thing",
            -ahead_ms,
        )],
        vec![],
    )])
    .remove(0)
}

#[tokio::test]
async fn a_redrive_of_a_command_older_than_the_old_ttl_does_not_send_twice() {
    let rig = rig().await;
    let mut processor = processor::from_env(&env(&rig.table, &rig.queue, &rig.graph), &rig.sdk)
        .await
        .unwrap();
    processor.clock = shifted_clock;
    let psid = "2700000000000010";
    let shipped = json!({"type": "send", "command_id": "order-7-shipped", "page_id": PAGE_A,
        "recipient": {"id": psid}, "message": {"text": "Your order 7 shipped"}, "messaging_type": "RESPONSE"});
    let shipped_sends = || async {
        sends(&rig.graph)
            .await
            .iter()
            .filter(|(_, _, b)| b["message"]["text"] == "Your order 7 shipped")
            .count()
    };

    // Day 0: the person writes, the command is sent, the conversation goes on long
    // enough for the command's ledger entry to move to an archive item.
    let first = processor
        .handle(sqs_event("t0", &[text_at(psid, "m_edge_0", 0)]), None)
        .await;
    assert!(failed_ids(&first).is_empty());
    let sent = processor
        .handle(sqs_event("c0", &[command(shipped.clone(), psid)]), None)
        .await;
    assert!(failed_ids(&sent).is_empty());
    assert_eq!(shipped_sends().await, 1);
    for i in 1..=15 {
        let mid = format!("m_edge_{i}");
        let r = processor
            .handle(sqs_event(&mid, &[text_at(psid, &mid, i)]), None)
            .await;
        assert!(failed_ids(&r).is_empty());
    }
    let archives = scan_table(&rig)
        .await
        .iter()
        .filter(|item| attr_s(item, "sk").starts_with("LEDGER#"))
        .count();
    assert!(archives > 0, "the command's entry was archived");

    // Day 22 (past the 21 days processed events used to be kept): the person
    // writes again, DynamoDB's TTL has done its work, and an operator redrives the
    // dead-letter queue, which still held a copy of the command.
    let day_22 = 22 * DAY;
    CLOCK_AHEAD_MS.store(day_22, Ordering::SeqCst);
    let later = processor
        .handle(
            sqs_event("t22", &[text_at(psid, "m_edge_22", day_22)]),
            None,
        )
        .await;
    assert!(failed_ids(&later).is_empty());
    expire_by_ttl(&rig, shifted_clock()).await;

    let redriven = processor
        .handle(sqs_event("c22", &[command(shipped, psid)]), None)
        .await;
    assert!(failed_ids(&redriven).is_empty());
    assert_eq!(
        shipped_sends().await,
        1,
        "the redriven command is known as processed"
    );
}

#[test]
fn processed_events_are_kept_longer_than_both_queues_can_hold_a_copy() {
    let template: serde_norway::Value = serde_norway::from_str(
        &std::fs::read_to_string(repo_root().join("template.yaml")).unwrap(),
    )
    .unwrap();
    let resources = &template["Resources"];
    let retention = |queue: &str| {
        resources[queue]["Properties"]["MessageRetentionPeriod"]
            .as_i64()
            .unwrap()
    };
    let held_days = (retention("EventsQueue") + retention("EventsDeadLetterQueue")) / 86_400;
    assert!(
        messenger_store::EVENT_RECORD_DAYS > held_days,
        "{} days of records, {held_days} days of queues",
        messenger_store::EVENT_RECORD_DAYS
    );
    // Back-off by visibility still leaves a Graph outage at least the hour ten
    // visibility timeouts gave it, and a crashed send's token is given back only
    // after every redelivery of its work had its chance.
    let events = &resources["EventsQueue"]["Properties"];
    let receives =
        u32::try_from(events["RedrivePolicy"]["maxReceiveCount"].as_u64().unwrap()).unwrap();
    let backed_off: std::time::Duration = (1..=receives).map(processor::backoff::delay_after).sum();
    assert!(
        backed_off >= std::time::Duration::from_secs(3_600),
        "{backed_off:?}"
    );
    let crash_cycle_ms =
        i64::from(receives) * events["VisibilityTimeout"].as_i64().unwrap() * 1_000;
    assert!(SENDING_LEASE_MS > crash_cycle_ms, "{crash_cycle_ms} ms");
    // The processor queues onto its own queue (notify fan-out): Lambda's loop
    // detection must not cut a large fan-out off.
    assert_eq!(
        resources["ProcessorFunction"]["Properties"]["RecursiveLoop"].as_str(),
        Some("Allow")
    );
}

fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

#[tokio::test]
async fn a_token_given_back_after_its_year_ran_out_is_expired_not_reactivated() {
    let rig = rig().await;
    let store = dynamo_store(&rig);
    let psid = "2700000000000006";
    // Created a year ago less an hour: spent now, its year runs out before the
    // spend's lease does.
    seed_token(
        &store,
        psid,
        "otn-nearly-a-year",
        now_ms() - OTN_LIFETIME_MS + HOUR,
    )
    .await;
    let held = tokens_of(&rig, PAGE_A, psid).await;
    store
        .spend_token(&token_ref(&held[0]), "restock-6/crashed", Timestamp::now())
        .await
        .unwrap()
        .unwrap();
    let page = store
        .give_back_stale_spends(
            messenger_store::otn::sending_bucket(held[0].sk.rsplit('#').next().unwrap())
                .trim_start_matches("SENDING#")
                .parse()
                .unwrap(),
            four_hours_on(),
            None,
            50,
        )
        .await
        .unwrap();
    assert_eq!(page.given_back, 1);
    let after = tokens_of(&rig, PAGE_A, psid).await;
    assert_eq!(after[0].status, TokenStatus::Expired);
    let (listed, _) = store
        .active_tokens(&PageId::new(PAGE_A), TOPIC, None, 10)
        .await
        .unwrap();
    assert!(listed.is_empty(), "not listed for a notify");
}

#[tokio::test]
async fn a_handed_back_message_comes_back_when_its_visibility_is_changed_not_after_360_s() {
    use processor::backoff::{SqsVisibility, Visibility as _};
    let rig = rig().await;
    let sqs = aws_sdk_sqs::Client::new(&rig.sdk);
    sqs.send_message()
        .queue_url(&rig.queue)
        .message_body("{\"type\":\"notify\"}")
        .message_group_id("g")
        .message_deduplication_id(unique("d"))
        .send()
        .await
        .unwrap();
    let receive = || async {
        sqs.receive_message()
            .queue_url(&rig.queue)
            .visibility_timeout(360)
            .send()
            .await
            .unwrap()
            .messages
            .unwrap_or_default()
    };
    let first = receive().await;
    assert_eq!(first.len(), 1);
    assert!(receive().await.is_empty(), "in flight for 360 s");

    let visibility = SqsVisibility::new(sqs.clone(), &rig.queue);
    let handle = first[0].receipt_handle.clone().unwrap();
    visibility
        .set_visibility(&[(handle, std::time::Duration::ZERO)])
        .await
        .unwrap();
    let again = receive().await;
    assert_eq!(again.len(), 1, "back at once");
    assert_eq!(again[0].message_id, first[0].message_id);

    // A handle the queue does not know is an error, not a panic.
    assert!(
        visibility
            .set_visibility(&[("not-a-handle".to_owned(), std::time::Duration::ZERO)])
            .await
            .is_err()
    );
}
