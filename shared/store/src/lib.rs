//! The DynamoDB adapter of the `conversation` crate's ports: one table.
//!
//! | item | pk | sk |
//! |---|---|---|
//! | thread, with the ledger entries of its events (`e_<entry>`, see `turns`) | `PAGE#<page>#USER#<psid>` (or `#REF#<user_ref>`) | `THREAD` |
//! | archive of a thread's ledger: the names of processed events | `PAGE#<page>#USER#<psid>` (or `#REF#...`) | `LEDGER#<newest event time, 15 digits>#<version>` |
//! | page | `PAGE#<page>` | `PAGE` |
//! | processed event that names no person (Page events, notify commands) | `EVENT#<sha256 of the event key>` | `EVENT` |
//! | OTN token | `PAGE#<page>#USER#<psid>` | `OTN#<created, 15 digits>#<token digest>` |
//! | OTN token guard: one item per token | `PAGE#<page>#USER#<psid>` | `OTNTOKEN#<token digest>` |
//! | recurring notification token | `PAGE#<page>#USER#<psid>` | `OTN#RN#<token digest>` |
//! | the sweeper's cursor | `SWEEPER` | `CURSOR` |
//! | a Page's credentials and status (see `pages`) | `PAGES` | `PAGE#<page>` |
//! | a message parked while its Page is not `ACTIVE` | `PARKED#<page>` | `<parked at>#<message id>` |
//!
//! | index (sparse: only ACTIVE tokens carry its keys) | partition | sort |
//! |---|---|---|
//! | `otn-by-topic` | `OTN#<page>#<sha256 of the topic>` | `<created>#<psid>#<token digest>` |
//! | `otn-by-expiry` | `EXPIRY#<UTC day it expires>` | `<expires>#<page>#<psid>#<token digest>` |
//!
//! `keys` derives every key; a token itself is never part of one.
//!
//! | module | job |
//! |---|---|
//! | `keys` | every key format |
//! | `expr` | UpdateItem expressions (placeholders for every name and value), item readers |
//! | `error` | DynamoDB's errors as the ports' `StoreError`, the SDK error kept as source |
//! | `dynamo` | the client, the table, the request helpers |
//! | `turns` | `ThreadLedger`: the ledger of a person's events on their thread (1 read + 2 writes per reply), its archive |
//! | `ledger` | `EventLedger`: claim, action progress, completion, for events that name no person |
//! | `threads` | `ThreadStore`: threads, Pages, the tokens optins store |
//! | `pages` | `PageRegistry`: Page tokens (sealed) and status, parked messages |
//! | `tokens` | `TokenStore`: the topic index, the conditional spend, the expiry sweep |
//! | [`otn`] | a token item's mapping |
//! | [`schema`] | the table's definition, the one source of truth |
//!
//! Every field that events move forward carries the timestamp of the event that set
//! it, and is written either by a conditional update that admits newer events
//! only, or (`turns`) as a whole state computed by the same rule from a read and
//! written only if the thread's version (`ver`, moved on by every write) is still
//! the one read: Meta does not guarantee order after failures, and two deliveries
//! racing each other leave the newest state whatever the order they land in.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod dynamo;
mod error;
mod expr;
mod keys;
mod ledger;
pub mod otn;
mod pages;
pub mod people;
pub mod schema;
mod threads;
mod tokens;
mod turns;

pub use conversation::ledger::{
    CLAIM_LEASE_MS, Claim, ClaimToken, Consistency, EVENT_RECORD_DAYS, Opened, Progress, Step,
    TurnKey, Version, entry_name,
};
pub use conversation::otn::{
    NewToken, OTN_LIFETIME_MS, OTN_RECORD_GRACE_DAYS, SENDING_LEASE_MS, SENDING_SHARDS,
    SpendRefused, StalePage, StoredToken, SweepPage, TokenKind, TokenRef, TokenStatus,
};
pub use conversation::pages::{PageRecord, PageRegistry, PageStatus, Parked, ParkedMessage};
pub use conversation::ports::{
    EventLedger, Store, StoreError, StoreErrorKind, ThreadLedger, ThreadStore, TokenStore,
};
pub use conversation::thread::{
    AccountLink, AuthorizationCode, BotState, BotStateError, Control, EntryPoint,
    MAX_BOT_STATE_BYTES, PageChange, PageState, Person, ThreadChange, ThreadKey, ThreadState,
    Unreachable,
};
pub use dynamo::{DEFAULT_RETENTION_DAYS, DynamoStore, MIN_RETENTION_DAYS};
pub use turns::{ARCHIVE_ABOVE, LedgerEntry, item_size, ledger_entries};
