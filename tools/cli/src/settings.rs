//! Settings: the process environment, with defaults a local stack fills in.

use std::collections::BTreeMap;

use app_config::{Lookup, SdkConfig};

/// The environment the commands read: the process's own variables, over defaults
/// added by the local stack. What the user sets always wins.
#[derive(Debug, Clone, Default)]
pub struct Env {
    process: BTreeMap<String, String>,
    defaults: BTreeMap<String, String>,
}

impl Env {
    pub fn from_process() -> Self {
        Self {
            process: std::env::vars()
                .filter(|(_, v)| !v.trim().is_empty())
                .collect(),
            defaults: BTreeMap::new(),
        }
    }

    /// Adds `value` for `key` unless the environment sets it.
    pub fn default(&mut self, key: &str, value: impl Into<String>) {
        self.defaults.insert(key.to_owned(), value.into());
    }

    pub fn is_set(&self, key: &str) -> bool {
        self.process.contains_key(key)
    }

    /// A variable a command cannot do without, with a hint on where it comes from.
    pub fn require(&self, key: &str, hint: &str) -> crate::Result<String> {
        self.get(key)
            .ok_or_else(|| format!("{key} is not set: {hint}").into())
    }
}

impl Lookup for Env {
    fn get(&self, name: &str) -> Option<String> {
        self.process
            .get(name)
            .or_else(|| self.defaults.get(name))
            .cloned()
    }
}

/// The AWS SDK configuration from its own variables (`AWS_ENDPOINT_URL` for the
/// emulator), with the functions' timeouts.
pub async fn sdk() -> SdkConfig {
    app_config::aws_sdk_config().await
}

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A short identifier unique enough for local message ids and deduplication ids.
pub fn fresh_id() -> String {
    use sha2::{Digest, Sha256};
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let seed = format!(
        "{}:{}:{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
        N.fetch_add(1, Ordering::Relaxed)
    );
    hex::encode(&Sha256::digest(seed.as_bytes())[..12])
}
