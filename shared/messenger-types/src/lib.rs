//! Wire types of the Messenger Platform as this project receives and queues them.
//!
//! - [`event`]: the typed model of webhook deliveries, for code that acts on events.
//! - [`routing`]: the webhook's zero-copy split of a delivery into events, with each
//!   event's FIFO group and deduplication key.
//! - [`queue`]: the bodies of the events queue's messages.
//! - [`command`]: the commands the business's own systems send.
//! - [`send`]: Send API requests, answers and Graph errors.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod command;
pub mod event;
pub mod ids;
pub mod queue;
pub mod routing;
pub mod send;
pub mod templates;

pub use command::{Command, CommandId, CommandInvalid};
pub use event::{Entry, Envelope, Event, EventKind};
pub use ids::{AppId, LooseId, PageId, Psid, Timestamp, UserRef};
pub use queue::{
    NotifyCommand, NotifyOne, QueueMessage, QueueMessageError, QueuedEvent, QueuedEventRef,
};
pub use routing::{EventKey, RawEntry, RawEnvelope, Routing, Source, route};
pub use send::{
    GraphErrorBody, GraphErrorEnvelope, MessageTag, MessagingType, OutgoingMessage, Recipient,
    SendRequest, SendResponse, TemplateError,
};
