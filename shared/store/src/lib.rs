//! Conversation state in one DynamoDB table.
//!
//! | item | pk | sk |
//! |---|---|---|
//! | thread | `PAGE#<page>#USER#<psid>` (or `#REF#<user_ref>`) | `THREAD` |
//! | page | `PAGE#<page>` | `PAGE` |
//! | processed event | `EVENT#<sha256 of the event key>` | `EVENT` |
//! | OTN token (OTN issue) | `PAGE#<page>#USER#<psid>` | `OTN#<created>#<id>` |
//! | OTN token guard: one item per token | `PAGE#<page>#USER#<psid>` | `OTNTOKEN#<id>` |
//!
//! Every field that events move forward carries the timestamp of the event that set
//! it, and is written only by a conditional update that admits newer events: Meta
//! does not guarantee order after failures, and two deliveries racing each other
//! leave the newest state whatever the order they land in. No read-modify-write.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod dynamo;
mod error;
mod keys;
pub mod otn;
pub mod schema;

pub use conversation::ledger::{CLAIM_LEASE_MS, Claim, ClaimToken, EVENT_RECORD_DAYS};
pub use conversation::otn::{
    NewToken, OTN_LIFETIME_MS, OTN_RECORD_GRACE_DAYS, SpendRefused, StoredToken, SweepPage,
    TokenKind, TokenRef, TokenStatus,
};
pub use conversation::ports::{Store, StoreError, StoreErrorKind, TokenStore};
pub use conversation::thread::{
    AccountLink, Control, EntryPoint, PageChange, PageState, Person, ThreadChange, ThreadKey,
    ThreadState, Unreachable,
};
pub use dynamo::DynamoStore;
