//! The threads this instance wrote a moment ago: their next turn opens with a
//! strongly consistent read (see [`crate::pipeline`]).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use messenger_store::ThreadKey;

/// How long after this instance wrote a thread the next turn on it opens with a
/// strongly consistent read: DynamoDB's replicas usually agree within a second.
pub const RECENT_WRITE: Duration = Duration::from_secs(1);

/// At most this many threads are remembered as recently written (a batch holds
/// at most 10 messages; the rest is a bound, not a tuning).
const RECENT_WRITES_KEPT: usize = 256;

/// The threads this instance wrote in the last [`RECENT_WRITE`].
#[derive(Debug, Default)]
pub struct RecentWrites(Mutex<VecDeque<(ThreadKey, Instant)>>);

impl RecentWrites {
    pub(crate) fn note(&self, thread: &ThreadKey) {
        let now = Instant::now();
        let mut recent = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        recent.retain(|(t, at)| t != thread && now.duration_since(*at) < RECENT_WRITE);
        if recent.len() >= RECENT_WRITES_KEPT {
            recent.pop_front();
        }
        recent.push_back((thread.clone(), now));
    }

    pub(crate) fn contains(&self, thread: &ThreadKey) -> bool {
        let now = Instant::now();
        let recent = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        recent
            .iter()
            .any(|(t, at)| t == thread && now.duration_since(*at) < RECENT_WRITE)
    }
}
