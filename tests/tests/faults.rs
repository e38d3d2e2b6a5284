//! Fault drills: the real adapters against the emulator, with a share of the calls
//! failing the way AWS and Meta fail. SQS refusing batch entries (the webhook),
//! DynamoDB throttling and the Graph API's transient and permanent errors (the
//! processor). Faults are deterministic: a hash of what each call is about.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicI64, Ordering};

use integration_tests::faults::*;
use integration_tests::rig::*;
use integration_tests::*;
use lambda_http::http::StatusCode;
use messenger_types::Timestamp;
use serde_json::{Value, json};
use wiremock::Mock;
use wiremock::matchers::{method, path_regex};

/// A text from `psid` to `page` at `ts`.
fn text(page: &str, psid: &str, mid: &str, ts: i64) -> Value {
    json!({
        "sender": {"id": psid},
        "recipient": {"id": page},
        "timestamp": ts,
        "message": {"mid": mid, "text": format!("hi, {psid} here")}
    })
}

/// A delivery body of these events for Page A, stamped `time`.
fn delivery(events: &[Value], time: i64) -> String {
    json!({"object": "page", "entry": [{"id": PAGE_A, "time": time, "messaging": events}]})
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_refusing_a_tenth_of_the_entries_loses_nothing_the_webhook_acknowledged() {
    let sdk = emulator().await;
    let queue = fifo_queue(&sdk).await;
    let bucket = bucket(&sdk).await;
    let wired = webhook::from_env(&webhook_env(&queue, &bucket), &sdk)
        .await
        .unwrap();
    let hook = webhook::Webhook {
        deletion: wired.deletion,
        receiver: webhook::Receiver {
            credentials: wired.receiver.credentials,
            max_body_bytes: wired.receiver.max_body_bytes,
            max_events: wired.receiver.max_events,
            answer_within: wired.receiver.answer_within,
            queue: RefusingQueue::new(wired.receiver.queue, "sqs-refusals"),
            quarantine: wired.receiver.quarantine,
            retry: wired.receiver.retry,
        },
    };

    // Thirty deliveries of 1 to 16 events, from distinct people. (Few enough: the
    // emulator's FIFO queue slows down with every message it holds.)
    let now = now_ms();
    let deliveries: Vec<Vec<Value>> = (0..30)
        .map(|d| {
            (0..=d % 16)
                .map(|e| {
                    let n = d * 100 + e;
                    text(
                        PAGE_A,
                        &format!("26{n:014}"),
                        &format!("m_refused_{n}"),
                        now - n,
                    )
                })
                .collect()
        })
        .collect();
    let dedup_of = |event: &Value| -> String {
        queue_messages(&[(PAGE_A, vec![event.clone()], vec![])])[0]
            .dedup_id
            .clone()
    };
    let rounds = webhook::RetryPolicy::default().rounds;

    // Four at a time; Meta delivers a refused body again, in a new envelope
    // (a new entry.time), until it is acknowledged.
    let mut answers: Vec<Vec<StatusCode>> = vec![Vec::new(); deliveries.len()];
    let mut stubborn_deliveries = 0;
    for attempt in 0..5 {
        let pending: Vec<usize> = (0..deliveries.len())
            .filter(|d| answers[*d].last() != Some(&StatusCode::OK))
            .collect();
        if pending.is_empty() {
            break;
        }
        for wave in pending.chunks(4) {
            let posts = wave.iter().map(|&d| {
                let body = delivery(&deliveries[d], now + attempt);
                let hook = &hook;
                async move { hook.handle(post(&body, Some(&sign(&body)))).await.unwrap() }
            });
            let got = futures_util::future::join_all(posts).await;
            for (&d, response) in wave.iter().zip(got) {
                answers[d].push(response.status());
                // The first delivery of a body with an entry SQS refuses more times
                // than the webhook has rounds cannot be acknowledged.
                let stubborn = deliveries[d]
                    .iter()
                    .any(|e| hook.receiver.queue.refusals_of(&dedup_of(e)) >= rounds);
                if attempt == 0 && stubborn {
                    stubborn_deliveries += 1;
                    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE, "{d}");
                }
            }
        }
    }
    for (d, statuses) in answers.iter().enumerate() {
        assert_eq!(
            statuses.last(),
            Some(&StatusCode::OK),
            "delivery {d}: {statuses:?}"
        );
        assert!(
            statuses
                .iter()
                .all(|s| [StatusCode::OK, StatusCode::SERVICE_UNAVAILABLE].contains(s)),
            "delivery {d}: {statuses:?}"
        );
    }
    let unavailable = answers.iter().filter(|a| a.len() > 1).count();
    eprintln!(
        "entries refused: {}; deliveries answered 503 at first: {unavailable} of {} \
         ({stubborn_deliveries} with an entry refused more times than the webhook has rounds)",
        hook.receiver.queue.refused(),
        deliveries.len()
    );
    assert!(hook.receiver.queue.refused() > 0);
    assert!(
        stubborn_deliveries > 0,
        "some delivery had an entry that stayed unqueued"
    );

    // Within a delivery acknowledged at once, only refused entries were sent again:
    // each event was offered once, plus once per refusal.
    for (d, statuses) in answers.iter().enumerate() {
        if statuses.len() == 1 {
            for e in &deliveries[d] {
                let id = dedup_of(e);
                let q = &hook.receiver.queue;
                assert_eq!(q.attempts_of(&id), q.refusals_of(&id) + 1, "delivery {d}");
            }
        }
    }

    // Every event of every acknowledged delivery is on the queue, exactly once.
    let queued = drain(&sdk, &queue).await;
    let mut on_queue: BTreeMap<String, usize> = BTreeMap::new();
    for q in &queued {
        let mid = q.body["event"]["message"]["mid"].as_str().unwrap();
        *on_queue.entry(mid.to_owned()).or_default() += 1;
    }
    let sent: BTreeSet<String> = deliveries
        .iter()
        .flatten()
        .map(|e| e["message"]["mid"].as_str().unwrap().to_owned())
        .collect();
    let missing: Vec<_> = sent.iter().filter(|m| !on_queue.contains_key(*m)).collect();
    assert!(
        missing.is_empty(),
        "acknowledged but not queued: {missing:?}"
    );
    let twice: Vec<_> = on_queue.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "queued more than once: {twice:?}");
    assert_eq!(on_queue.len(), sent.len());
}

/// The processor's clock, moved forward by the test to stand for time passing
/// between SQS's redeliveries.
static SHIFT_MS: AtomicI64 = AtomicI64::new(0);

fn shifted_clock() -> Timestamp {
    Timestamp::from_millis(now_ms() + SHIFT_MS.load(Ordering::SeqCst))
}

/// The queue's visibility timeout (template.yaml): a handed-back message comes
/// back after it.
const VISIBILITY_TIMEOUT_MS: i64 = 360_000;

/// One person's text: (page, psid, mid, timestamp).
type Person = (&'static str, String, String, i64);

/// `n` people, alternately on Page A and B, each with one text inside the window:
/// (page, psid, mid, timestamp), and their queue messages.
fn texts(n: usize, prefix: &str) -> (Vec<Person>, Vec<webhook::OutgoingMessage>) {
    let now = now_ms();
    let people: Vec<_> = (0..n)
        .map(|i| {
            let page = if i % 2 == 0 { PAGE_A } else { PAGE_B };
            let ms = i64::try_from(i).unwrap();
            (
                page,
                format!("{prefix}{i:013}"),
                format!("m_{prefix}_{i}"),
                now - 5_000 - ms * 1_000,
            )
        })
        .collect();
    let on = |page: &str| -> Vec<Value> {
        people
            .iter()
            .filter(|p| p.0 == page)
            .map(|(page, psid, mid, ts)| text(page, psid, mid, *ts))
            .collect()
    };
    let messages = queue_messages(&[(PAGE_A, on(PAGE_A), vec![]), (PAGE_B, on(PAGE_B), vec![])]);
    (people, messages)
}

fn mid_of(m: &webhook::OutgoingMessage) -> String {
    let body: Value = serde_json::from_str(&m.body).unwrap();
    body["event"]["message"]["mid"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_throttling_a_tenth_of_the_calls_fails_only_those_messages_until_redelivered() {
    let rig = rig().await;
    let mut processor = with_store(
        &rig,
        ThrottlingStore::new(dynamo_store(&rig), "throttle", 10),
    );
    processor.clock = shifted_clock;
    let (people, messages) = texts(200, "301");
    let psid_of: BTreeMap<String, String> = people
        .iter()
        .map(|(_, psid, mid, _)| (mid.clone(), psid.clone()))
        .collect();

    let first = deliver(&processor, &messages, 10, 8, "first").await;
    let injected = processor.store.injected();
    eprintln!(
        "first delivery: {} calls throttled, {} of {} messages handed back",
        injected.len(),
        first.handed_back.len(),
        messages.len()
    );
    assert!(!first.handed_back.is_empty());
    // Every person has a thread (and a FIFO group) of their own: a message handed
    // back is one whose own calls were throttled, never a bystander.
    let touched = |mid: &str| {
        let psid = &psid_of[mid];
        injected.iter().any(|(_, subject)| {
            subject == &format!("message:{mid}") || subject.contains(psid.as_str())
        })
    };
    for m in &first.handed_back {
        assert!(
            touched(&mid_of(m)),
            "{} handed back without a fault",
            mid_of(m)
        );
    }
    // A throttled claim certainly fails its message.
    let back: BTreeSet<String> = first.handed_back.iter().map(mid_of).collect();
    for (op, subject) in &injected {
        if *op == "open_turn" || *op == "take_turn" {
            let mid = subject.trim_start_matches("message:");
            assert!(
                back.contains(mid),
                "{mid} was throttled at its claim yet acknowledged"
            );
        }
    }

    // SQS delivers what was handed back after the visibility timeout, until nothing is.
    SHIFT_MS.fetch_add(VISIBILITY_TIMEOUT_MS, Ordering::SeqCst);
    let rounds = deliver_until_done(&processor, first.handed_back, 10, 8, 20, |_| {
        SHIFT_MS.fetch_add(VISIBILITY_TIMEOUT_MS, Ordering::SeqCst);
    })
    .await;
    eprintln!(
        "redeliveries: {:?}",
        rounds.iter().map(|r| r.delivered).collect::<Vec<_>>()
    );
    assert!(
        processor.store.injected().len() > injected.len(),
        "redeliveries met throttling too"
    );

    // Exactly one reply per person, and every event recorded as done.
    let mut replies: BTreeMap<String, usize> = BTreeMap::new();
    for (_, _, body) in sends(&rig.graph).await {
        *replies
            .entry(body["recipient"]["id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    let expected: BTreeMap<String, usize> = people.iter().map(|p| (p.1.clone(), 1)).collect();
    assert_eq!(replies, expected);
    let entries = ledger(&rig).await;
    assert_eq!(entries.len(), people.len());
    for (pk, e) in &entries {
        assert!(e.done, "{pk}: {e:?}");
        let outcome = entry_outcome(e).unwrap();
        // A reply whose completion was throttled at every attempt is completed by
        // the redelivery, which finds it started and does not send it again.
        assert!(
            matches!(
                only_action(&outcome),
                Outcome::Sent { message_id: Some(m), .. } if m == "m_sent"
            ) || only_action(&outcome) == &Outcome::NotRepeated,
            "{outcome:?}"
        );
    }
    let items = scan_table(&rig).await;
    let threads: BTreeMap<String, Option<i64>> = items
        .iter()
        .filter(|i| attr_s(i, "sk") == "THREAD")
        .map(|i| (attr_s(i, "pk"), attr_n(i, "last_user_ts")))
        .collect();
    let want: BTreeMap<String, Option<i64>> = people
        .iter()
        .map(|(page, psid, _, ts)| (format!("PAGE#{page}#USER#{psid}"), Some(*ts)))
        .collect();
    assert_eq!(threads, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graph_5xx_and_613_are_retried_to_one_reply_and_551_is_recorded_once() {
    let rig = rig().await;
    let (people, messages) = texts(200, "302");
    let unavailable: Vec<String> = people.iter().step_by(23).map(|p| p.1.clone()).collect();
    let graph = FlakyGraph::new("graph-faults", unavailable.clone());
    rig.graph.reset().await;
    Mock::given(method("POST"))
        .and(path_regex(r"^/v23\.0/[0-9]+/messages$"))
        .respond_with(graph.clone())
        .mount(&rig.graph)
        .await;
    let transient =
        |psid: &str| !graph.plan(psid).is_empty() && !unavailable.iter().any(|u| u == psid);
    let flaky: BTreeSet<String> = people
        .iter()
        .filter(|p| transient(&p.1))
        .map(|p| p.2.clone())
        .collect();
    assert!(
        flaky.len() * 100 >= people.len() * 5,
        "about a tenth fail at first: {}",
        flaky.len()
    );

    let first = deliver(&rig.processor, &messages, 10, 8, "first").await;
    // Handed back: exactly the messages whose send met a transient error.
    let back: BTreeSet<String> = first.handed_back.iter().map(mid_of).collect();
    assert_eq!(back, flaky);

    let rounds = deliver_until_done(&rig.processor, first.handed_back, 10, 8, 10, |_| {}).await;
    eprintln!(
        "first delivery handed back {}; redeliveries: {:?}",
        back.len(),
        rounds.iter().map(|r| r.delivered).collect::<Vec<_>>()
    );

    // Each person was tried once per planned failure, then once with success; the
    // unavailable ones once, never again.
    let log = graph.log();
    for (_, psid, mid, _) in &people {
        let tried = log.get(psid).cloned().unwrap_or_default();
        let outcome = outcome_of(&rig, mid).await;
        if unavailable.contains(psid) {
            assert_eq!(tried, vec![GraphAnswer::Unavailable], "{psid}");
            assert!(
                matches!(
                    only_action(&outcome),
                    Outcome::GraphRefused {
                        code: Some(551),
                        ..
                    }
                ),
                "{outcome:?}"
            );
        } else {
            let mut want = graph.plan(psid);
            want.push(GraphAnswer::Ok);
            assert_eq!(tried, want, "{psid}");
            assert_eq!(
                only_action(&outcome),
                &Outcome::Sent {
                    message_id: Some(format!("m_sent_{psid}_{}", want.len())),
                    messaging_type: Some(messenger_types::send::MessagingType::Response),
                    tag: None,
                },
                "{psid}"
            );
        }
    }
    assert_eq!(log.len(), people.len());
    assert_eq!(
        sends(&rig.graph).await.len(),
        log.values().map(Vec::len).sum::<usize>()
    );
    // The people Meta cannot reach are marked so on their thread.
    let items = scan_table(&rig).await;
    let unreachable: BTreeSet<String> = items
        .iter()
        .filter(|i| attr_s(i, "sk") == "THREAD" && !attr_s(i, "unreachable_reason").is_empty())
        .map(|i| attr_s(i, "pk").rsplit('#').next().unwrap().to_owned())
        .collect();
    assert_eq!(unreachable, unavailable.iter().cloned().collect());
}
