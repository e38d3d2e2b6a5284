//! One-time notification tokens.
//!
//! A token lives on its thread's partition (`PAGE#<page>#USER#<psid>`,
//! `OTN#<created>#<id>`, where `<id>` is a digest of the token: the token itself,
//! a credential, is never part of a key). While it is ACTIVE it also carries the keys
//! of two sparse indexes: `otn-by-topic` (`OTN#<page>#<topic>`) for the notify
//! fan-out and `otn-by-expiry` (`EXPIRY#<day it expires>`) for the sweeper. Spending,
//! expiring or retiring a token removes those keys in the same conditional write, so
//! the indexes hold only tokens that may still be used.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use messenger_types::{PageId, Psid, Timestamp};

pub use conversation::otn::*;
use sha2::{Digest, Sha256};

pub(crate) fn token_id(token: &str) -> String {
    hex::encode(&Sha256::digest(token.as_bytes())[..10])
}

/// Zero-padded so that string order is time order.
pub(crate) fn padded(t: Timestamp) -> String {
    format!("{:015}", t.as_millis().max(0))
}

pub(crate) fn token_sk(created_at: Timestamp, token: &str) -> String {
    format!("OTN#{}#{}", padded(created_at), token_id(token))
}

/// The key of the guard item that makes a token unique on its thread whatever
/// its creation time (the token item's own key starts with that time).
pub(crate) fn token_guard_sk(token: &str) -> String {
    format!("OTNTOKEN#{}", token_id(token))
}

/// The topic index key. The topic is a person-facing string of any length; its
/// digest keeps the key short and within DynamoDB's key limits.
pub(crate) fn topic_pk(page: &PageId, topic: &str) -> String {
    format!(
        "OTN#{page}#{}",
        hex::encode(Sha256::digest(topic.as_bytes()))
    )
}

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
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_never_contain_the_token_and_sort_by_time() {
        let sk = token_sk(Timestamp::from_millis(5), "secret-token-value");
        assert!(!sk.contains("secret"));
        assert!(
            token_sk(Timestamp::from_millis(5), "a") < token_sk(Timestamp::from_millis(40), "a")
        );
    }
}
