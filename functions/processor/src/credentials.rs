//! Page tokens, live: each Page's token is read from the table, where it is kept
//! sealed with the stack's KMS key (`TOKEN_KEY_ID`), through a cache with a TTL
//! (`CREDENTIALS_TTL_SECONDS`, default 300), so a token stored or replaced is
//! used without a redeploy. A Page without a record falls back to the seed, the
//! secret's `page_access_tokens` (local runs); a Page with neither is `MISSING`.
//! What is not `ACTIVE` is cached for at most [`NOT_ACTIVE_TTL`].

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use messenger_store::{PageRecord, PageRegistry, PageStatus, StoreError};
use messenger_types::PageId;
use secrecy::{ExposeSecret, SecretString};

/// `CREDENTIALS_TTL_SECONDS`' default (shared with the webhook's secret cache).
pub use app_config::DEFAULT_CREDENTIALS_TTL;
/// A Page found without a usable token is looked up again after this at the latest.
pub const NOT_ACTIVE_TTL: Duration = Duration::from_secs(30);
/// How often an instance notes a Page's last event on its record (`page status`
/// shows it): at most one write per Page per instance in this time.
pub const SEEN_EVERY: Duration = Duration::from_secs(300);

/// Why a token could not be sealed or opened. Never holds the token.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(pub String);

pub type KeyFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, KeyError>> + Send + 'a>>;

/// The key a Page's token is sealed with in the table.
pub trait TokenKey: Send + Sync + fmt::Debug {
    fn seal<'a>(&'a self, page: &'a PageId, token: &'a SecretString) -> KeyFuture<'a, Vec<u8>>;
    fn open<'a>(&'a self, page: &'a PageId, sealed: &'a [u8]) -> KeyFuture<'a, SecretString>;
}

/// No key configured (`TOKEN_KEY_ID` unset): only the seed's tokens are usable.
#[derive(Debug, Default)]
pub struct NoKey;

impl TokenKey for NoKey {
    fn seal<'a>(&'a self, _: &'a PageId, _: &'a SecretString) -> KeyFuture<'a, Vec<u8>> {
        Box::pin(async { Err(KeyError("no TOKEN_KEY_ID is configured".to_owned())) })
    }

    fn open<'a>(&'a self, _: &'a PageId, _: &'a [u8]) -> KeyFuture<'a, SecretString> {
        Box::pin(async { Err(KeyError("no TOKEN_KEY_ID is configured".to_owned())) })
    }
}

/// The stack's KMS key (`TokenKey` in the template). The Page id is the
/// encryption context: a token sealed for one Page does not open as another's.
#[derive(Debug, Clone)]
pub struct KmsKey {
    client: aws_sdk_kms::Client,
    key_id: String,
}

impl KmsKey {
    pub fn new(client: aws_sdk_kms::Client, key_id: impl Into<String>) -> Self {
        Self {
            client,
            key_id: key_id.into(),
        }
    }
}

fn kms_error<E: std::error::Error + 'static>(what: &str, e: E) -> KeyError {
    KeyError(format!(
        "KMS could not {what} the Page token: {}",
        aws_sdk_kms::error::DisplayErrorContext(e)
    ))
}

impl TokenKey for KmsKey {
    fn seal<'a>(&'a self, page: &'a PageId, token: &'a SecretString) -> KeyFuture<'a, Vec<u8>> {
        Box::pin(async move {
            let out = self
                .client
                .encrypt()
                .key_id(&self.key_id)
                .plaintext(aws_sdk_kms::primitives::Blob::new(
                    token.expose_secret().as_bytes(),
                ))
                .encryption_context("page", page.as_str())
                .send()
                .await
                .map_err(|e| kms_error("seal", e))?;
            out.ciphertext_blob
                .map(aws_sdk_kms::primitives::Blob::into_inner)
                .ok_or_else(|| KeyError("KMS answered without a ciphertext".to_owned()))
        })
    }

    fn open<'a>(&'a self, page: &'a PageId, sealed: &'a [u8]) -> KeyFuture<'a, SecretString> {
        Box::pin(async move {
            let out = self
                .client
                .decrypt()
                .key_id(&self.key_id)
                .ciphertext_blob(aws_sdk_kms::primitives::Blob::new(sealed))
                .encryption_context("page", page.as_str())
                .send()
                .await
                .map_err(|e| kms_error("open", e))?;
            let plain = out
                .plaintext
                .map(aws_sdk_kms::primitives::Blob::into_inner)
                .ok_or_else(|| KeyError("KMS answered without the plaintext".to_owned()))?;
            String::from_utf8(plain)
                .map(SecretString::from)
                .map_err(|_| KeyError("the opened Page token is not UTF-8".to_owned()))
        })
    }
}

/// What the processor knows of a Page's token.
#[derive(Clone)]
pub enum PageCredential {
    /// A token to call Graph with. `version`: when it was stored (`None`: the seed).
    Active {
        token: SecretString,
        version: Option<i64>,
    },
    /// No usable token: the Page's events are parked.
    NotActive {
        status: PageStatus,
        reason: Option<String>,
        /// Whether the table has a record of the Page (`false`: the first park
        /// makes one, `MISSING`).
        recorded: bool,
    },
}

impl fmt::Debug for PageCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Active { version, .. } => f
                .debug_struct("Active")
                .field("token", &"[redacted]")
                .field("version", version)
                .finish(),
            Self::NotActive {
                status,
                reason,
                recorded,
            } => f
                .debug_struct("NotActive")
                .field("status", status)
                .field("reason", reason)
                .field("recorded", recorded)
                .finish(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// The cache of Page tokens (one per instance).
#[derive(Debug)]
pub struct Credentials {
    seed: BTreeMap<PageId, SecretString>,
    key: Box<dyn TokenKey>,
    ttl: Duration,
    cache: Mutex<HashMap<PageId, (Instant, PageCredential)>>,
    /// One lookup at a time: the groups of a batch that all miss a cold cache
    /// wait for the first one's answer instead of each reading the table.
    looking_up: tokio::sync::Mutex<()>,
    /// When this instance last noted each Page's last event.
    seen: Mutex<HashMap<PageId, Instant>>,
}

impl Credentials {
    pub fn new(
        seed: BTreeMap<PageId, SecretString>,
        key: Box<dyn TokenKey>,
        ttl: Duration,
    ) -> Self {
        Self {
            seed,
            key,
            ttl,
            cache: Mutex::new(HashMap::new()),
            looking_up: tokio::sync::Mutex::new(()),
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Whether the Page's last event is due to be noted (true at most once per
    /// [`SEEN_EVERY`] per Page on this instance).
    pub fn seen_due(&self, page: &PageId) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        match seen.get(page) {
            Some(at) if at.elapsed() < SEEN_EVERY => false,
            _ => {
                seen.insert(page.clone(), Instant::now());
                true
            }
        }
    }

    /// Only the seed's tokens (no key): what tests and runs without a table token start with.
    pub fn seeded(seed: BTreeMap<PageId, SecretString>) -> Self {
        Self::new(seed, Box::new(NoKey), DEFAULT_CREDENTIALS_TTL)
    }

    pub fn key(&self) -> &dyn TokenKey {
        &*self.key
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PageId, (Instant, PageCredential)>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The Page's credential as last looked up, however old; the seed's token
    /// when it was never looked up.
    pub fn last_known(&self, page: &PageId) -> Option<PageCredential> {
        if let Some((_, credential)) = self.lock().get(page) {
            return Some(credential.clone());
        }
        self.seed.get(page).map(|token| PageCredential::Active {
            token: token.clone(),
            version: None,
        })
    }

    /// The Page's credential: from the cache while fresh, else from the table.
    pub async fn get<R: PageRegistry>(
        &self,
        store: &R,
        page: &PageId,
    ) -> Result<PageCredential, CredentialsError> {
        if let Some(fresh) = self.fresh(page) {
            return Ok(fresh);
        }
        let _one_lookup = self.looking_up.lock().await;
        // Looked up by another task while this one waited?
        if let Some(fresh) = self.fresh(page) {
            return Ok(fresh);
        }
        self.refresh(store, page).await
    }

    fn fresh(&self, page: &PageId) -> Option<PageCredential> {
        let now = Instant::now();
        match self.lock().get(page) {
            Some((until, credential)) if *until > now => Some(credential.clone()),
            _ => None,
        }
    }

    /// Looks the Page up in the table now, whatever the cache holds.
    pub async fn refresh<R: PageRegistry>(
        &self,
        store: &R,
        page: &PageId,
    ) -> Result<PageCredential, CredentialsError> {
        let credential = match store.page_record(page).await? {
            Some(PageRecord {
                status: PageStatus::Active,
                sealed_token: Some(sealed),
                token_version,
                ..
            }) => PageCredential::Active {
                token: self.key.open(page, &sealed).await?,
                version: token_version,
            },
            Some(record) => PageCredential::NotActive {
                status: match record.status {
                    // ACTIVE without a token: nothing to call Graph with.
                    PageStatus::Active => PageStatus::Missing,
                    status => status,
                },
                reason: record.reason,
                recorded: true,
            },
            None => match self.seed.get(page) {
                Some(token) => PageCredential::Active {
                    token: token.clone(),
                    version: None,
                },
                None => PageCredential::NotActive {
                    status: PageStatus::Missing,
                    reason: Some(crate::park::NO_TOKEN.to_owned()),
                    recorded: false,
                },
            },
        };
        let ttl = match credential {
            PageCredential::Active { .. } => self.ttl,
            PageCredential::NotActive { .. } => self.ttl.min(NOT_ACTIVE_TTL),
        };
        self.lock()
            .insert(page.clone(), (Instant::now() + ttl, credential.clone()));
        Ok(credential)
    }

    /// Drops what the cache knows of the Page (its token was refused).
    pub fn forget(&self, page: &PageId) {
        self.lock().remove(page);
    }
}

/// A key for tests: "seals" by reversing the bytes and prefixing the Page id, so a
/// token sealed for one Page does not open as another's. Never for production.
#[derive(Debug, Default)]
pub struct TestKey;

impl TokenKey for TestKey {
    fn seal<'a>(&'a self, page: &'a PageId, token: &'a SecretString) -> KeyFuture<'a, Vec<u8>> {
        Box::pin(async move {
            let mut sealed = format!("{page}:").into_bytes();
            sealed.extend(token.expose_secret().bytes().rev());
            Ok(sealed)
        })
    }

    fn open<'a>(&'a self, page: &'a PageId, sealed: &'a [u8]) -> KeyFuture<'a, SecretString> {
        Box::pin(async move {
            let prefix = format!("{page}:");
            let rest = sealed
                .strip_prefix(prefix.as_bytes())
                .ok_or_else(|| KeyError("sealed for another Page".to_owned()))?;
            let plain: Vec<u8> = rest.iter().rev().copied().collect();
            String::from_utf8(plain)
                .map(SecretString::from)
                .map_err(|_| KeyError("not UTF-8".to_owned()))
        })
    }
}
