//! Test doubles for the processor's Graph port, for unit tests, examples and the
//! bot developer's own tests: a fake Send API that records every call.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use graph_api::GraphError;
use messenger_types::send::{SendRequest, SendResponse};
use messenger_types::{AppId, PageId, Psid};
use secrecy::SecretString;

use crate::Messenger;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A fake Send API: records every call, answers after `delay`, fails the next
/// calls as told, and notes how many calls were in flight at once.
#[derive(Debug, Default)]
pub struct FakeGraph {
    sends: Mutex<Vec<SendRequest>>,
    /// The Page token each send was made with, in order.
    send_tokens: Mutex<Vec<String>>,
    passes: Mutex<Vec<(Psid, AppId)>>,
    controls: Mutex<Vec<(&'static str, Psid)>>,
    sender_actions: Mutex<Vec<(Psid, messenger_types::templates::SenderAction)>>,
    failures: Mutex<Vec<GraphError>>,
    delay: Duration,
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
}

impl FakeGraph {
    /// A fake that answers every call after `delay`.
    pub fn answering_after(delay: Duration) -> Self {
        Self {
            delay,
            ..Self::default()
        }
    }

    /// The most calls that were in flight at once.
    pub fn most_in_flight(&self) -> usize {
        self.most_in_flight.load(Ordering::SeqCst)
    }

    /// Every sender action shown (typing, mark seen), in order.
    pub fn sender_actions(&self) -> Vec<(Psid, messenger_types::templates::SenderAction)> {
        lock(&self.sender_actions).clone()
    }

    /// Every pass of thread control: (PSID, the app it went to).
    pub fn passes(&self) -> Vec<(Psid, AppId)> {
        lock(&self.passes).clone()
    }

    /// Every message sent, in the order the calls ended.
    pub fn sends(&self) -> Vec<SendRequest> {
        lock(&self.sends).clone()
    }

    /// The Page token of every send, in the order the calls ended.
    pub fn send_tokens(&self) -> Vec<String> {
        lock(&self.send_tokens).clone()
    }

    /// Every take, release, extend and request of thread control: ("take" |
    /// "release" | "extend" | "request", PSID).
    pub fn controls(&self) -> Vec<(&'static str, Psid)> {
        lock(&self.controls).clone()
    }

    /// Makes the next call fail with `e` (several: the last one given first).
    pub fn fail_next(&self, e: GraphError) {
        lock(&self.failures).push(e);
    }

    async fn call(&self) -> Result<(), GraphError> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_in_flight.fetch_max(now, Ordering::SeqCst);
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        match lock(&self.failures).pop() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl Messenger for FakeGraph {
    async fn send(
        &self,
        _page: &PageId,
        token: &SecretString,
        request: &SendRequest,
    ) -> Result<SendResponse, GraphError> {
        self.call().await?;
        lock(&self.send_tokens).push(secrecy::ExposeSecret::expose_secret(token).to_owned());
        let mut sends = lock(&self.sends);
        sends.push(request.clone());
        Ok(SendResponse {
            recipient_id: None,
            message_id: Some(format!("m_{}", sends.len())),
        })
    }

    async fn pass_thread_control(
        &self,
        _page: &PageId,
        _token: &SecretString,
        psid: &Psid,
        to: &AppId,
        _metadata: Option<&str>,
    ) -> Result<(), GraphError> {
        self.call().await?;
        lock(&self.passes).push((psid.clone(), to.clone()));
        Ok(())
    }

    async fn take_thread_control(
        &self,
        _page: &PageId,
        _token: &SecretString,
        psid: &Psid,
        _metadata: Option<&str>,
    ) -> Result<(), GraphError> {
        self.call().await?;
        lock(&self.controls).push(("take", psid.clone()));
        Ok(())
    }

    async fn release_thread_control(
        &self,
        _page: &PageId,
        _token: &SecretString,
        psid: &Psid,
    ) -> Result<(), GraphError> {
        self.call().await?;
        lock(&self.controls).push(("release", psid.clone()));
        Ok(())
    }

    async fn extend_thread_control(
        &self,
        _page: &PageId,
        _token: &SecretString,
        psid: &Psid,
        _duration_seconds: u32,
    ) -> Result<(), GraphError> {
        self.call().await?;
        lock(&self.controls).push(("extend", psid.clone()));
        Ok(())
    }

    async fn sender_action(
        &self,
        _page: &PageId,
        _token: &SecretString,
        psid: &Psid,
        action: messenger_types::templates::SenderAction,
    ) -> Result<(), GraphError> {
        self.call().await?;
        lock(&self.sender_actions).push((psid.clone(), action));
        Ok(())
    }

    async fn request_thread_control(
        &self,
        _page: &PageId,
        _token: &SecretString,
        psid: &Psid,
        _metadata: Option<&str>,
    ) -> Result<(), GraphError> {
        self.call().await?;
        lock(&self.controls).push(("request", psid.clone()));
        Ok(())
    }
}

/// An in-memory bus: keeps what is published, and can refuse every entry of the
/// next `n` calls (as EventBridge answers `FailedEntryCount` on a bad day).
#[derive(Debug, Default)]
pub struct MemoryBus {
    published: Mutex<Vec<crate::publish::BusEvent>>,
    refuse_calls: Mutex<u32>,
}

impl MemoryBus {
    /// Every entry of the next `calls` calls is refused.
    pub fn refuse_next(&self, calls: u32) {
        *lock(&self.refuse_calls) = calls;
    }

    /// What was published, in order.
    pub fn published(&self) -> Vec<crate::publish::BusEvent> {
        lock(&self.published).clone()
    }

    /// The details published under `detail_type`.
    pub fn details(&self, detail_type: &str) -> Vec<serde_json::Value> {
        lock(&self.published)
            .iter()
            .filter(|e| e.detail_type == detail_type)
            .map(|e| e.detail.clone())
            .collect()
    }
}

impl crate::publish::Bus for std::sync::Arc<MemoryBus> {
    fn put<'a>(&'a self, entries: &'a [crate::publish::BusEvent]) -> crate::publish::BusFuture<'a> {
        Box::pin(async move {
            let mut refuse = lock(&self.refuse_calls);
            if *refuse > 0 {
                *refuse -= 1;
                return Ok((0..entries.len()).collect());
            }
            lock(&self.published).extend(entries.iter().cloned());
            Ok(Vec::new())
        })
    }
}
