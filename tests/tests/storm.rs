//! Duplicate storm: a thousand people each write once, and every event reaches the
//! processor three times (SQS's at-least-once delivery, Meta's redeliveries after
//! the FIFO deduplication window), shuffled, in batches of ten, eight invocations at
//! once, against the emulator's DynamoDB and a fake Graph API. Each person gets
//! exactly one reply, and each event leaves exactly one trace in the table.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

use integration_tests::faults::{XorShift, deliver_until_done};
use integration_tests::rig::*;
use integration_tests::*;
use serde_json::{Value, json};

const PEOPLE: usize = 1000;
const COPIES: usize = 3;

/// One person's text: (page, psid, mid, timestamp).
type Person = (&'static str, String, String, i64);

fn people() -> Vec<Person> {
    let now = now_ms();
    (0..PEOPLE)
        .map(|i| {
            let page = if i % 2 == 0 { PAGE_A } else { PAGE_B };
            let n = i64::try_from(i).unwrap();
            // Spread over the last 17 hours: all inside the 24-hour window.
            (
                page,
                format!("25{i:014}"),
                format!("m_storm_{i}"),
                now - 1_000 - n * 61_000,
            )
        })
        .collect()
}

fn event(person: &Person) -> Value {
    let (page, psid, mid, ts) = person;
    json!({
        "sender": {"id": psid},
        "recipient": {"id": page},
        "timestamp": ts,
        "message": {"mid": mid, "text": format!("hello from {psid}")}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_texts_delivered_three_times_each_in_shuffled_concurrent_batches_get_a_thousand_replies()
 {
    let rig = rig().await;
    let people = people();
    let on =
        |page: &str| -> Vec<Value> { people.iter().filter(|p| p.0 == page).map(event).collect() };
    let messages = queue_messages(&[(PAGE_A, on(PAGE_A), vec![]), (PAGE_B, on(PAGE_B), vec![])]);
    assert_eq!(messages.len(), PEOPLE);

    let mut deliveries: Vec<_> = (0..COPIES).flat_map(|_| messages.clone()).collect();
    XorShift::new(0x5eed_2026_0611).shuffle(&mut deliveries);
    let rounds = deliver_until_done(&rig.processor, deliveries, 10, 8, 20, |_| {}).await;
    let handed_back: Vec<usize> = rounds.iter().map(|r| r.handed_back.len()).collect();
    eprintln!(
        "deliveries per round: {:?}",
        rounds.iter().map(|r| r.delivered).collect::<Vec<_>>()
    );
    eprintln!("handed back per round: {handed_back:?}");

    // Exactly one reply per person, from the person's own Page, with its token.
    let sent = sends(&rig.graph).await;
    let mut replies: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (path, auth, body) in &sent {
        let page = path.split('/').nth(2).unwrap().to_owned();
        let token = if page == PAGE_A { TOKEN_A } else { TOKEN_B };
        assert_eq!(auth, &format!("Bearer {token}"), "{path}");
        assert_eq!(body["messaging_type"], "RESPONSE");
        let to = body["recipient"]["id"].as_str().unwrap().to_owned();
        *replies.entry((page, to)).or_default() += 1;
    }
    let twice: Vec<_> = replies.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "replied more than once: {twice:?}");
    let expected: BTreeSet<(String, String)> = people
        .iter()
        .map(|(page, psid, _, _)| ((*page).to_owned(), psid.clone()))
        .collect();
    let got: BTreeSet<(String, String)> = replies.keys().cloned().collect();
    assert_eq!(got.len(), PEOPLE);
    assert_eq!(got, expected);
    assert_eq!(sent.len(), PEOPLE);

    // One ledger entry per event, on its person's thread, done, with the reply it
    // sent; and each thread's last interaction is the person's message.
    let entries = ledger(&rig).await;
    assert_eq!(entries.len(), PEOPLE);
    let names: BTreeSet<String> = entries.iter().map(|(_, e)| e.name.clone()).collect();
    let want_names: BTreeSet<String> = people
        .iter()
        .map(|(_, _, mid, _)| {
            messenger_store::entry_name(&messenger_types::EventKey::from_readable(format!(
                "message:{mid}"
            )))
        })
        .collect();
    assert_eq!(names, want_names);
    for (pk, e) in &entries {
        assert!(e.done, "{pk}: {e:?}");
        assert_eq!(
            entry_outcome(e).as_ref().map(only_action),
            Some(&Outcome::Sent {
                message_id: Some("m_sent".to_owned()),
                messaging_type: Some(messenger_types::send::MessagingType::Response),
                tag: None,
            }),
            "{pk}: {e:?}"
        );
    }
    let items = scan_table(&rig).await;
    assert!(
        !items.iter().any(|i| attr_s(i, "sk") == "EVENT"),
        "events that name a person keep no item of their own"
    );
    let threads: BTreeMap<String, Option<i64>> = items
        .iter()
        .filter(|i| attr_s(i, "sk") == "THREAD")
        .map(|i| (attr_s(i, "pk"), attr_n(i, "last_user_ts")))
        .collect();
    let want_threads: BTreeMap<String, Option<i64>> = people
        .iter()
        .map(|(page, psid, _, ts)| (format!("PAGE#{page}#USER#{psid}"), Some(*ts)))
        .collect();
    assert_eq!(threads, want_threads);
}
