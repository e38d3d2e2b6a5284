//! The warnings the code under test logs, captured on the test's thread so a test
//! can assert that a problem was reported, not only that nothing broke.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// One warning (or error): its fields by name, the text under `message`.
pub type Logged = BTreeMap<String, String>;

/// Collects every warning and error logged on this thread while its guard lives.
/// A `#[tokio::test]` runs on one thread, the code under test included.
#[derive(Debug, Clone)]
pub struct Warnings(Arc<Mutex<Vec<Logged>>>, Level);

impl Default for Warnings {
    fn default() -> Self {
        Self(Arc::default(), Level::WARN)
    }
}

impl Warnings {
    pub fn capture() -> (Self, tracing::subscriber::DefaultGuard) {
        Self::capture_from(Level::WARN)
    }

    /// Every line at `level` or more severe (`TRACE`: every line), e.g. to check
    /// that no credential is ever logged at any level.
    pub fn capture_from(level: Level) -> (Self, tracing::subscriber::DefaultGuard) {
        let warnings = Self(Arc::default(), level);
        let guard = tracing::subscriber::set_default(warnings.clone());
        (warnings, guard)
    }

    pub fn all(&self) -> Vec<Logged> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

struct Fields<'a>(&'a mut Logged);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl Subscriber for Warnings {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.is_event() && *metadata.level() <= self.1
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut logged = Logged::new();
        event.record(&mut Fields(&mut logged));
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(logged);
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}
