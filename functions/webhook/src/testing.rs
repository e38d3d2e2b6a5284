//! In-memory implementations of the webhook's ports, with fault injection: for unit
//! and property tests, benchmarks and fault drills. The AWS adapters are tested
//! against the emulator in the workspace's `tests/` crate.

use std::sync::Mutex;

pub use event_queue::testing::{Fault, MemoryQueue};

use crate::accept::{Quarantine, QuarantineError};
use crate::credentials::{AppKeys, Credentials};

/// Credentials that never change: this app secret and verify token.
pub fn fixed_credentials(app_secret: &str, verify_token: &str) -> Credentials {
    Credentials::fixed(AppKeys::new(
        app_secret.to_owned().into(),
        verify_token.to_owned().into(),
    ))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A quarantine that keeps bodies in memory, or fails every call when `broken`.
#[derive(Debug, Default)]
pub struct MemoryQuarantine {
    broken: bool,
    kept: Mutex<Vec<(Vec<u8>, String)>>,
}

impl MemoryQuarantine {
    pub fn new() -> Self {
        Self::default()
    }

    /// A quarantine whose every call fails.
    pub fn broken() -> Self {
        Self {
            broken: true,
            ..Self::default()
        }
    }

    /// `(body, reason)` for everything kept so far.
    pub fn kept(&self) -> Vec<(Vec<u8>, String)> {
        lock(&self.kept).clone()
    }
}

impl Quarantine for MemoryQuarantine {
    async fn keep(&self, body: &[u8], reason: &str) -> Result<String, QuarantineError> {
        if self.broken {
            return Err(QuarantineError {
                message: "injected: quarantine unavailable".to_owned(),
                source: None,
            });
        }
        let mut kept = lock(&self.kept);
        kept.push((body.to_vec(), reason.to_owned()));
        Ok(format!("memory://{}", kept.len()))
    }
}
