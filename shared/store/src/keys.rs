//! Every key format of the table, derived in one place (the table is documented
//! in the crate's doc).

use crate::{Person, ThreadKey};

/// The partition of a thread, its OTN tokens and their guards.
pub(crate) fn thread_pk(key: &ThreadKey) -> String {
    match &key.person {
        Person::Psid(p) => format!("PAGE#{}#USER#{}", key.page, p),
        Person::UserRef(r) => format!("PAGE#{}#REF#{}", key.page, r),
    }
}
