//! One-time notification tokens.
//!
//! A token lives on its thread's partition (`PAGE#<page>#USER#<psid>`,
//! `OTN#<created>#<id>`, where `<id>` is a digest of the token: the token itself,
//! a credential, is never part of a key). While it is ACTIVE it also carries the keys
//! of two sparse indexes: `otn-by-topic` (`OTN#<page>#<digest of the topic's key>`,
//! the key being [`topic_key`]: trimmed, spaces collapsed, case-folded) for the notify
//! fan-out and `otn-by-expiry` (`EXPIRY#<day it expires>`) for the sweeper. Spending,
//! expiring or retiring a token removes those keys in the same conditional write, so
//! the indexes hold only tokens that may still be used; one exception: from the
//! spend until the send's fate is recorded, the token is "sending" and listed in
//! the expiry index under `SENDING#<shard>`, due when the spend's lease runs out,
//! so that the sweeper finds (without a scan) a spend whose spender crashed.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use messenger_types::{PageId, Psid, Timestamp};

pub use conversation::otn::*;

pub(crate) fn stored_token(item: &HashMap<String, AttributeValue>) -> Option<StoredToken> {
    let s = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
    let n = |k: &str| {
        item.get(k)
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse::<i64>().ok())
            .map(Timestamp::from_millis)
    };
    Some(StoredToken {
        page: PageId::new(s("page_id")?),
        psid: Psid::new(s("psid")?),
        sk: s("sk")?,
        topic: s("topic")?,
        token: s("token")?,
        kind: if s("token_kind").as_deref() == Some("RECURRING") {
            TokenKind::Recurring
        } else {
            TokenKind::OneTime
        },
        status: TokenStatus::parse(&s("status")?)?,
        created_at: n("created_at")?,
        expires_at: n("expires_at")?,
        spend_id: s("spend_id"),
        sending_until: n("sending_until"),
    })
}
