//! Every key format of the table, derived in one place (the table is documented
//! in the crate's doc).

use messenger_types::{EventKey, PageId, Timestamp};
use sha2::{Digest, Sha256};

use crate::{Person, ThreadKey, TokenRef};

/// The partition of a thread, its OTN tokens and their guards.
pub(crate) fn thread_pk(key: &ThreadKey) -> String {
    match &key.person {
        Person::Psid(p) => format!("PAGE#{}#USER#{}", key.page, p),
        Person::UserRef(r) => format!("PAGE#{}#REF#{}", key.page, r),
    }
}

pub(crate) fn event_pk(key: &EventKey) -> String {
    format!("EVENT#{}", key.digest())
}

pub(crate) fn page_pk(page: &PageId) -> String {
    format!("PAGE#{page}")
}

pub(crate) fn token_pk(at: &TokenRef) -> String {
    crate::keys::thread_pk(&ThreadKey::psid(at.page.clone(), at.psid.clone()))
}

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

/// An archive item of a thread's ledger: the newest event time it holds, and the
/// thread's version when it was written (so that two archives never share a key).
pub(crate) fn ledger_archive_sk(newest: Timestamp, version: u64) -> String {
    format!("LEDGER#{}#{version}", padded(newest))
}

/// The key of the guard item that makes a token unique on its thread whatever
/// its creation time (the token item's own key starts with that time).
pub(crate) fn token_guard_sk(token: &str) -> String {
    format!("OTNTOKEN#{}", token_id(token))
}

/// The topic index key: a digest of the topic's [`topic_key`] (trimmed, spaces
/// collapsed, case-folded), so that every wording of a topic meets under one key.
/// The topic is a person-facing string of any length; its digest keeps the key
/// short and within DynamoDB's key limits.
pub(crate) fn topic_pk(page: &PageId, topic: &str) -> String {
    legacy_topic_pk(page, &crate::otn::topic_key(topic))
}

/// The topic index key of a token stored before topics were normalised: a digest
/// of its exact wording. Equal to [`topic_pk`] for a wording that is its own key.
pub(crate) fn legacy_topic_pk(page: &PageId, wording: &str) -> String {
    format!(
        "OTN#{page}#{}",
        hex::encode(Sha256::digest(wording.as_bytes()))
    )
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

    #[test]
    fn every_wording_of_a_topic_has_one_index_key_and_old_tokens_keep_theirs() {
        let page = PageId::new("1");
        let key = topic_pk(&page, "back in stock");
        assert_eq!(topic_pk(&page, "  Back   in Stock "), key);
        assert_eq!(legacy_topic_pk(&page, "back in stock"), key);
        assert_ne!(legacy_topic_pk(&page, "Back in Stock"), key);
        assert_ne!(topic_pk(&PageId::new("2"), "back in stock"), key);
    }
}
