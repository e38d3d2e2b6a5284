//! Meta Messenger's conversation rules, pure: no AWS SDK, no async runtime, no HTTP
//! client. The processor carries them out; adapters (DynamoDB, Graph) implement
//! the small ports they need, and so does the in-memory store of [`testing`].
//!
//! | platform rule | module |
//! |---|---|
//! | the thread: a Page and a person, fields moved forward by newer events only | [`thread`] |
//! | what an event changes (window, control, entry point, account link, tokens) | [`record`] |
//! | the 24-hour window, HUMAN_AGENT's 7 days, tags in force and retired, thread control, OTN token state: one check before any call | [`send_policy`] |
//! | a one-time notification token's life (ACTIVE, USED, EXPIRED, RETIRED) | [`otn`] |
//! | the event ledger: claim, action started / done, completed; at most once; on the thread for events that name a person | [`ledger`] |
//! | Meta's errors and what to do about each | [`graph_error`] |
//! | what became of an event and of each action, as values | [`outcome`] |
//! | what the rules need from storage | [`ports`] |
//! | an in-memory store implementing every port, for tests | [`testing`] |

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod graph_error;
pub mod ledger;
pub mod otn;
pub mod outcome;
pub mod pages;
pub mod ports;
pub mod record;
pub mod send_policy;
pub mod testing;
pub mod thread;

pub use graph_error::{ErrorClass, GraphError};
pub use ledger::{
    Claim, ClaimToken, Consistency, DoneEntry, Opened, Progress, Step, TurnKey, Version,
};
pub use outcome::{EventOutcome, Outcome, TokenFate};
pub use pages::{PageRecord, PageRegistry, PageStatus, Parked, ParkedMessage};
pub use ports::{
    EventLedger, Store, StoreError, StoreErrorKind, ThreadLedger, ThreadStore, TokenStore,
};
pub use send_policy::{Basis, Refusal};
pub use thread::{Person, ThreadChange, ThreadKey, ThreadState};
