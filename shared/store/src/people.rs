//! The subscriber list: the people of a Page, newest activity first, with what
//! each can be sent now. Meta has no API that lists a Page's PSIDs; the table
//! knows them. Read through the sparse `people-by-page` index (a thread item is
//! in it once the person has interacted), never by a scan: one Query per page of
//! people, and one Query per person for the topics of the tokens they hold.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use messenger_types::{PageId, Psid, Timestamp};
use serde::Serialize;

use crate::expr::{get_n, get_s, s};
use crate::keys::padded;
use crate::otn::TokenStatus;
use crate::schema::PEOPLE_BY_PAGE;
use crate::threads::thread_state;
use crate::{DynamoStore, StoreError, ThreadState};
use conversation::send_policy::{HUMAN_AGENT_WINDOW_MS, STANDARD_WINDOW_MS};

/// What the list says of one person of a Page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Subscriber {
    pub psid: Psid,
    /// The person's last interaction.
    pub last_interaction: Option<Timestamp>,
    /// Until when a standard message (RESPONSE/UPDATE) may go out; `None` when the
    /// window is closed.
    pub window_open_until: Option<Timestamp>,
    /// Until when a human-written HUMAN_AGENT message may go out.
    pub human_agent_until: Option<Timestamp>,
    /// The topics of the one-time notification tokens the person holds, in their
    /// own wording (each spendable once).
    pub otn_topics: Vec<String>,
    /// Why Meta said the person cannot be messaged, when it did.
    pub unreachable: Option<String>,
    /// Who holds the thread: `this app`, an app id, or `idle`.
    pub thread_owner: String,
    /// How the person can be messaged now: `window`, `human_agent`, `otn`; empty
    /// when not at all.
    pub can_send: Vec<&'static str>,
}

impl Subscriber {
    /// From the thread's state and the topics of the tokens held, at `now`.
    pub fn new(psid: Psid, thread: &ThreadState, otn_topics: Vec<String>, now: Timestamp) -> Self {
        let until = |last: Option<Timestamp>, window: i64| {
            last.map(|at| at.plus_millis(window))
                .filter(|until| *until > now)
        };
        let window_open_until = until(thread.last_user_interaction, STANDARD_WINDOW_MS);
        let human_agent_until = until(thread.last_user_message, HUMAN_AGENT_WINDOW_MS);
        let unreachable = thread.unreachable.as_ref().map(|u| u.reason.clone());
        let thread_owner = if thread.idle(now) {
            "idle".to_owned()
        } else {
            match &thread.control {
                Some(c) if !c.ours => c
                    .owner
                    .as_ref()
                    .map_or_else(|| "another app".to_owned(), |app| app.as_str().to_owned()),
                _ => "this app".to_owned(),
            }
        };
        let mut can_send = Vec::new();
        if unreachable.is_none() {
            if window_open_until.is_some() {
                can_send.push("window");
            }
            if human_agent_until.is_some() {
                can_send.push("human_agent");
            }
            if !otn_topics.is_empty() {
                can_send.push("otn");
            }
        }
        Self {
            psid,
            last_interaction: thread.last_user_interaction,
            window_open_until,
            human_agent_until,
            otn_topics,
            unreachable,
            thread_owner,
            can_send,
        }
    }

    /// Whether anything can be sent to the person now.
    pub fn messageable(&self) -> bool {
        !self.can_send.is_empty()
    }
}

/// One page of the list, and where the next starts (`None`: that was the last).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeoplePage {
    pub people: Vec<Subscriber>,
    pub next: Option<String>,
}

/// The index attributes of a thread item: the Page, and the person's last
/// interaction (then the PSID, so that equal times still sort).
pub(crate) fn index_fields(
    page: &PageId,
    psid: &Psid,
    last: Timestamp,
) -> [(&'static str, String); 2] {
    [
        (PEOPLE_BY_PAGE.key.partition, format!("PAGE#{page}")),
        (PEOPLE_BY_PAGE.key.sort, format!("{}#{psid}", padded(last))),
    ]
}

impl DynamoStore {
    /// Up to `limit` people of `page`, most recently active first, starting after
    /// `after` (the `next` of the page before).
    pub async fn people(
        &self,
        page: &PageId,
        after: Option<&str>,
        limit: i32,
        now: Timestamp,
    ) -> Result<PeoplePage, StoreError> {
        let start = after.map(decode_cursor).transpose()?;
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(PEOPLE_BY_PAGE.name)
            .key_condition_expression("#p = :page")
            .expression_attribute_names("#p", PEOPLE_BY_PAGE.key.partition)
            .expression_attribute_values(":page", s(&format!("PAGE#{page}")))
            .scan_index_forward(false)
            .limit(limit.max(1))
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| crate::error::from_sdk("Query(people)", e))?;
        let mut people = Vec::new();
        for item in out.items() {
            let Some(psid) = item
                .get("pk")
                .and_then(|v| v.as_s().ok())
                .and_then(|pk| pk.rsplit_once("#USER#"))
                .map(|(_, psid)| Psid::new(psid))
            else {
                continue;
            };
            let topics = self.topics_held(page, &psid, now).await?;
            people.push(Subscriber::new(psid, &thread_state(item), topics, now));
        }
        Ok(PeoplePage {
            people,
            next: out.last_evaluated_key().map(encode_cursor),
        })
    }

    /// The topics of the tokens `psid` holds that can still be spent, in the
    /// person's wording. Reads the topic, status and expiry, never the token.
    async fn topics_held(
        &self,
        page: &PageId,
        psid: &Psid,
        now: Timestamp,
    ) -> Result<Vec<String>, StoreError> {
        let thread = crate::ThreadKey::psid(page.clone(), psid.clone());
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :otn)")
            .expression_attribute_values(":pk", s(&crate::keys::thread_pk(&thread)))
            .expression_attribute_values(":otn", s("OTN#"))
            .projection_expression("topic, #s, expires_at")
            .expression_attribute_names("#s", "status")
            .send()
            .await
            .map_err(|e| crate::error::from_sdk("Query(topics)", e))?;
        let mut topics: Vec<String> = out
            .items()
            .iter()
            .filter(|item| {
                get_s(item, "status").as_deref() == Some(TokenStatus::Active.as_str())
                    && get_n(item, "expires_at").is_some_and(|at| at > now.as_millis())
            })
            .filter_map(|item| get_s(item, "topic"))
            .collect();
        topics.sort();
        topics.dedup();
        Ok(topics)
    }
}

/// The index's last evaluated key as an opaque cursor (hex of its JSON).
fn encode_cursor(key: &HashMap<String, AttributeValue>) -> String {
    let strings: HashMap<&str, &str> = key
        .iter()
        .filter_map(|(k, v)| v.as_s().ok().map(|v| (k.as_str(), v.as_str())))
        .collect();
    let json = serde_json::to_vec(&strings).unwrap_or_default();
    hex::encode(json)
}

fn decode_cursor(cursor: &str) -> Result<HashMap<String, AttributeValue>, StoreError> {
    let bad = || {
        StoreError::invalid(
            "Query(people)",
            "the --after cursor is not one this list gave",
        )
    };
    let json = hex::decode(cursor.trim()).map_err(|_| bad())?;
    let strings: HashMap<String, String> = serde_json::from_slice(&json).map_err(|_| bad())?;
    if strings.is_empty() {
        return Err(bad());
    }
    Ok(strings
        .into_iter()
        .map(|(k, v)| (k, AttributeValue::S(v)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Control, Unreachable};
    use messenger_types::AppId;

    const HOUR: i64 = 3_600_000;
    const NOW: i64 = 1_795_269_600_000;

    fn ago(ms: i64) -> Option<Timestamp> {
        Some(Timestamp::from_millis(NOW - ms))
    }

    fn who(thread: &ThreadState, topics: &[&str]) -> Subscriber {
        Subscriber::new(
            Psid::new("1"),
            thread,
            topics.iter().map(|t| (*t).to_owned()).collect(),
            Timestamp::from_millis(NOW),
        )
    }

    #[test]
    fn each_person_shows_how_they_can_be_messaged_now() {
        let open = ThreadState {
            last_user_interaction: ago(HOUR),
            last_user_message: ago(HOUR),
            ..ThreadState::default()
        };
        let s = who(&open, &[]);
        assert_eq!(s.can_send, vec!["window", "human_agent"]);
        assert_eq!(s.window_open_until, ago(HOUR - 24 * HOUR));
        assert_eq!(s.thread_owner, "this app");

        let closed = ThreadState {
            last_user_interaction: ago(30 * 24 * HOUR),
            last_user_message: ago(30 * 24 * HOUR),
            ..ThreadState::default()
        };
        let s = who(&closed, &["Back in Stock"]);
        assert_eq!(s.can_send, vec!["otn"]);
        assert_eq!((s.window_open_until, s.human_agent_until), (None, None));
        assert_eq!(s.thread_owner, "idle");
        assert!(!who(&closed, &[]).messageable());

        let gone = ThreadState {
            unreachable: Some(Unreachable {
                reason: "the person blocked the Page (551)".to_owned(),
                at: Timestamp::from_millis(NOW - HOUR),
            }),
            ..open.clone()
        };
        let s = who(&gone, &["shoes"]);
        assert!(!s.messageable());
        assert_eq!(
            s.unreachable.as_deref(),
            Some("the person blocked the Page (551)")
        );

        let inbox = ThreadState {
            control: Some(Control {
                ours: false,
                owner: Some(AppId::new("263902037430900")),
                since: Timestamp::from_millis(NOW - HOUR),
            }),
            ..open
        };
        assert_eq!(who(&inbox, &[]).thread_owner, "263902037430900");
    }

    #[test]
    fn a_cursor_round_trips_and_a_made_up_one_is_refused() {
        let key: HashMap<String, AttributeValue> = [
            ("pk", "PAGE#1#USER#2"),
            ("sk", "THREAD"),
            ("people_pk", "PAGE#1"),
            ("people_sk", "000001795269600000#2"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), AttributeValue::S(v.to_owned())))
        .collect();
        assert_eq!(decode_cursor(&encode_cursor(&key)).unwrap(), key);
        for bad in ["", "not hex!", "7b7d"] {
            assert!(decode_cursor(bad).is_err(), "{bad}");
        }
    }
}
