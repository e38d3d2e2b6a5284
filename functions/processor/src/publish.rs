//! Events out: what happened, published on the stack's EventBridge bus for the
//! business's own systems, after it is recorded in the table.
//!
//! | detail-type | when |
//! |---|---|
//! | `Event Received` | every webhook event processed (messaging and standby) |
//! | `Message Sent` | a Send API call succeeded |
//! | `Send Refused` | the policy refused a send before any call |
//! | `Send Failed` | Meta refused a send for good |
//! | `Thread Control Changed` | the thread's owner changed (an event, or a pass) |
//! | `Notification Token Captured` | a one-time notification optin was stored |
//! | `Page Status Changed` | a Page's token status changed (`ACTIVE`, `INVALID`, `MISSING`) |
//!
//! Delivery is at least once. The event's outcome is recorded first, then its bus
//! events are published (entries the bus refuses are sent again, a few times); if
//! they still do not go out, the queue message is handed back, and its redelivery
//! finds the event done and publishes again from the recorded outcome. Consumers
//! dedupe on `key` (the event's) and `message_id`. A detail never carries a token,
//! a secret or `appsecret_proof`: Meta's event is published without its
//! notification token or account-linking authorization code.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use messenger_types::{Event, EventKey, EventKind, PageId, QueuedEvent};
use serde_json::{Value, json};

use crate::state::Changes;
use crate::{EventOutcome, Outcome};
use conversation::thread::ThreadChange;
use conversation::thread::{Person, ThreadKey};

/// The `Source` of every entry.
pub const SOURCE: &str = "messenger-backend";
/// PutEvents takes at most 10 entries per call.
const ENTRIES_PER_CALL: usize = 10;
/// Rounds of sending the entries the bus refused, before the message is handed back.
const PUBLISH_ATTEMPTS: u32 = 3;

/// One entry for the bus.
#[derive(Debug, Clone, PartialEq)]
pub struct BusEvent {
    pub detail_type: &'static str,
    pub detail: Value,
}

/// Why a publish did not go out.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{unsent} of {total} bus events not published: {cause}")]
pub struct PublishError {
    pub unsent: usize,
    pub total: usize,
    pub cause: String,
}

/// A boxed future, so that the bus can be a trait object.
pub type BusFuture<'a> = Pin<Box<dyn Future<Output = Result<Vec<usize>, String>> + Send + 'a>>;

/// Where bus events go. `put` sends at most [`ENTRIES_PER_CALL`] entries and
/// answers the indexes of those the bus refused (an `Err` for a call that failed
/// as a whole).
pub trait Bus: Send + Sync + fmt::Debug {
    fn put<'a>(&'a self, entries: &'a [BusEvent]) -> BusFuture<'a>;
}

/// No bus configured (`EVENT_BUS_NAME` unset, e.g. a local run without one):
/// nothing is published.
#[derive(Debug, Default)]
pub struct NoBus;

impl Bus for NoBus {
    fn put<'a>(&'a self, _: &'a [BusEvent]) -> BusFuture<'a> {
        Box::pin(async { Ok(Vec::new()) })
    }
}

/// The stack's EventBridge bus.
#[derive(Debug, Clone)]
pub struct EventBridgeBus {
    client: aws_sdk_eventbridge::Client,
    bus_name: String,
}

impl EventBridgeBus {
    pub fn new(client: aws_sdk_eventbridge::Client, bus_name: impl Into<String>) -> Self {
        Self {
            client,
            bus_name: bus_name.into(),
        }
    }
}

impl Bus for EventBridgeBus {
    fn put<'a>(&'a self, entries: &'a [BusEvent]) -> BusFuture<'a> {
        Box::pin(async move {
            use aws_sdk_eventbridge::types::PutEventsRequestEntry;
            let out = self
                .client
                .put_events()
                .set_entries(Some(
                    entries
                        .iter()
                        .map(|e| {
                            PutEventsRequestEntry::builder()
                                .event_bus_name(&self.bus_name)
                                .source(SOURCE)
                                .detail_type(e.detail_type)
                                .detail(e.detail.to_string())
                                .build()
                        })
                        .collect(),
                ))
                .send()
                .await
                .map_err(|e| aws_sdk_eventbridge::error::DisplayErrorContext(e).to_string())?;
            // The answer's entries are in the request's order; a refused one has
            // an error code and no event id.
            Ok(out
                .entries()
                .iter()
                .enumerate()
                .filter(|(_, e)| e.error_code().is_some() || e.event_id().is_none())
                .map(|(i, _)| i)
                .collect())
        })
    }
}

/// `Page Status Changed`: the Page is `status` now, for `reason`. Never the token.
pub fn page_status_event(
    page: &PageId,
    status: messenger_store::PageStatus,
    reason: Option<&str>,
) -> BusEvent {
    let mut detail = json!({"page_id": page.as_str(), "status": status.as_str()});
    if let Some(reason) = reason {
        detail["reason"] = json!(reason);
    }
    BusEvent {
        detail_type: "Page Status Changed",
        detail,
    }
}

/// Publishes a Page's new status. A status is recorded in the table before it is
/// published, and what publishes it has no message to hand back: a failure is
/// logged (the table and the alarms still tell), not retried later.
pub async fn page_status_changed(
    bus: &dyn Bus,
    page: &PageId,
    status: messenger_store::PageStatus,
    reason: Option<&str>,
) {
    if let Err(error) = publish(bus, vec![page_status_event(page, status, reason)]).await {
        tracing::error!(page_id = %page, status = status.as_str(), %error, "Page Status Changed not published");
    }
}

/// Publishes `events`, sending again those refused (50, then 200 ms later, while
/// the invocation has the time: [`crate::budget::allows_retry`]).
pub async fn publish(bus: &dyn Bus, events: Vec<BusEvent>) -> Result<(), PublishError> {
    let total = events.len();
    let mut pending = events;
    let mut pause = Duration::from_millis(50);
    let mut cause = String::new();
    for attempt in 1..=PUBLISH_ATTEMPTS {
        let mut refused = Vec::new();
        for chunk in pending.chunks(ENTRIES_PER_CALL) {
            match bus.put(chunk).await {
                Ok(indexes) => {
                    if !indexes.is_empty() {
                        cause = format!("the bus refused {} entries", indexes.len());
                    }
                    refused.extend(indexes.into_iter().filter_map(|i| chunk.get(i).cloned()));
                }
                Err(e) => {
                    cause = e;
                    refused.extend(chunk.iter().cloned());
                }
            }
        }
        if refused.is_empty() {
            return Ok(());
        }
        pending = refused;
        // Tried again only while the invocation has the time for it.
        if attempt == PUBLISH_ATTEMPTS || !crate::budget::allows_retry(pause) {
            break;
        }
        tracing::warn!(unsent = pending.len(), %cause, attempt, "bus events not published; sending them again");
        tokio::time::sleep(pause).await;
        pause *= 4;
    }
    Err(PublishError {
        unsent: pending.len(),
        total,
        cause,
    })
}

/// Meta's event as sent, less what is a credential: a notification token (one-time
/// or recurring) and an account-linking authorization code.
fn without_secrets(mut event: Value) -> Value {
    if let Some(optin) = event.get_mut("optin").and_then(Value::as_object_mut) {
        optin.remove("one_time_notif_token");
        optin.remove("notification_messages_token");
    }
    if let Some(link) = event
        .get_mut("account_linking")
        .and_then(Value::as_object_mut)
    {
        link.remove("authorization_code");
    }
    event
}

/// The person's fields of a detail: `psid` or `user_ref`.
fn person(detail: &mut Value, thread: &ThreadKey) {
    match &thread.person {
        Person::Psid(psid) => detail["psid"] = json!(psid.as_str()),
        Person::UserRef(r) => detail["user_ref"] = json!(r.as_str()),
    }
}

/// What one processed webhook event publishes: `Event Received`, what its
/// changes did to the thread, and each action's outcome.
pub fn event_events(
    page: &PageId,
    queued: &QueuedEvent,
    event: &Event,
    key: &EventKey,
    changes: &Changes,
    outcome: &EventOutcome,
) -> Vec<BusEvent> {
    let mut out = Vec::new();
    let mut received = json!({
        "page_id": page.as_str(),
        "kind": event.kind.as_str(),
        "source": queued.source.as_str(),
        "key": key.as_str(),
        "timestamp": event.timestamp.map(|t| t.as_millis()),
        "event": without_secrets(serde_json::from_str::<Value>(queued.event.get()).unwrap_or(Value::Null)),
    });
    if let Some(thread) = &changes.thread {
        person(&mut received, thread);
    }
    out.push(BusEvent {
        detail_type: "Event Received",
        detail: received,
    });
    if let Some(thread) = &changes.thread {
        // A handover event changes who controls the thread; every other event
        // only says who does (messaging to the owner, standby to the others).
        let handover = matches!(
            event.kind,
            EventKind::PassThreadControl(_) | EventKind::TakeThreadControl(_)
        );
        for change in changes.thread_changes.iter().filter(|_| handover) {
            if let ThreadChange::Control(control) = change {
                out.push(control_changed(
                    thread,
                    control.owner.as_ref().map(|a| a.as_str()),
                    control.ours,
                    false,
                ));
            }
        }
        for (token, _) in &changes.tokens {
            let mut detail = json!({"page_id": token.page.as_str(), "topic": token.topic});
            detail["psid"] = json!(token.psid.as_str());
            out.push(BusEvent {
                detail_type: "Notification Token Captured",
                detail,
            });
        }
        for action in outcome.actions() {
            out.extend(action_event(thread, action, Some(key)));
        }
    }
    out
}

fn control_changed(thread: &ThreadKey, owner: Option<&str>, ours: bool, idle: bool) -> BusEvent {
    let mut detail = json!({
        "page_id": thread.page.as_str(),
        "owner_app_id": owner,
        "ours": ours,
        // Idle after this app released the thread; control expiring after 24 h
        // of inactivity comes with Conversation Routing.
        "idle": idle,
    });
    person(&mut detail, thread);
    BusEvent {
        detail_type: "Thread Control Changed",
        detail,
    }
}

/// The bus event of one action's outcome on `thread`, if it has one.
pub fn action_event(
    thread: &ThreadKey,
    outcome: &Outcome,
    event_key: Option<&EventKey>,
) -> Option<BusEvent> {
    let mut detail = json!({"page_id": thread.page.as_str()});
    person(&mut detail, thread);
    if let Some(key) = event_key {
        detail["event_key"] = json!(key.as_str());
    }
    let detail_type = match outcome {
        Outcome::Sent {
            message_id,
            messaging_type,
            tag,
        } => {
            detail["message_id"] = json!(message_id);
            detail["messaging_type"] = json!(messaging_type);
            if let Some(tag) = tag {
                detail["tag"] = json!(tag);
            }
            "Message Sent"
        }
        Outcome::Refused { reason } => {
            detail["reason"] = json!(reason.code());
            "Send Refused"
        }
        Outcome::GraphRefused {
            class,
            code,
            subcode,
            ..
        } => {
            detail["error_class"] = json!(class.as_str());
            detail["code"] = json!(code);
            if let Some(subcode) = subcode {
                detail["subcode"] = json!(subcode);
            }
            "Send Failed"
        }
        Outcome::ControlPassed { app_id } => {
            return Some(control_changed(thread, Some(app_id.as_str()), false, false));
        }
        Outcome::ControlTaken => return Some(control_changed(thread, None, true, false)),
        Outcome::ControlReleased => return Some(control_changed(thread, None, false, true)),
        // Nobody's control changed (yet): an extension keeps it, a request asks.
        Outcome::ControlExtended { .. }
        | Outcome::ControlRequested
        | Outcome::ActionShown { .. }
        | Outcome::MaybeSent
        | Outcome::DoneEarlier
        | Outcome::NotRepeated => return None,
    };
    Some(BusEvent {
        detail_type,
        detail,
    })
}
