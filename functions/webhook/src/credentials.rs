//! The app secret and the verify token, read through a cache (contract v2, "Pages
//! and credentials"). From Secrets Manager they are read again once older than
//! `CREDENTIALS_TTL_SECONDS`, and at once when a signature or a verify token does not
//! match (at most every [`MISMATCH_REREAD_INTERVAL`] per instance), so rotating the
//! app secret needs no redeploy. From the environment (local runs) they never change.
//!
//! The hot path reads a clock, an atomic and an uncontended `RwLock`, and clones an
//! `Arc`: no allocation, no await. A re-read that fails, or takes longer than
//! [`REREAD_WITHIN`], keeps the keys in use.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use app_config::{ConfigError, SecretReader, SecretsOrigin};
use hub_signature::Verifier;
use secrecy::{ExposeSecret, SecretString};

/// A signature mismatch makes the secret be read again at most this often per
/// instance: a flood of badly signed requests costs one Secrets Manager call per
/// interval, not one each.
pub const MISMATCH_REREAD_INTERVAL: Duration = Duration::from_secs(10);

/// The longest a request waits for a re-read. Meta wants an answer within 5 s and
/// the enqueue needs most of it (see [`crate::DEFAULT_ANSWER_WITHIN`]).
pub const REREAD_WITHIN: Duration = Duration::from_secs(1);

/// One reading of the secret, with the signature verifier keyed once from it.
pub struct AppKeys {
    verifier: Verifier,
    app_secret: SecretString,
    verify_token: SecretString,
}

impl AppKeys {
    pub fn new(app_secret: SecretString, verify_token: SecretString) -> Self {
        Self {
            verifier: Verifier::new(app_secret.expose_secret().as_bytes()),
            app_secret,
            verify_token,
        }
    }

    /// Checks Meta's `X-Hub-Signature(-256)` headers.
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// Signs the data deletion and deauthorize callbacks' `signed_request`.
    pub fn app_secret(&self) -> &SecretString {
        &self.app_secret
    }

    /// The token of Meta's subscription check.
    pub fn verify_token(&self) -> &SecretString {
        &self.verify_token
    }
}

impl fmt::Debug for AppKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AppKeys { .. }")
    }
}

pub type ReadFuture<'a> = Pin<Box<dyn Future<Output = Result<AppKeys, ConfigError>> + Send + 'a>>;

/// Where the keys are read again from (Secrets Manager in production).
pub trait KeySource: Send + Sync + fmt::Debug {
    fn read(&self) -> ReadFuture<'_>;
}

impl KeySource for SecretReader {
    fn read(&self) -> ReadFuture<'_> {
        Box::pin(async move {
            let secrets = SecretReader::read(self).await?;
            let origin = SecretsOrigin::SecretsManager;
            Ok(AppKeys::new(
                secrets.require_app_secret(origin)?.clone(),
                secrets.require_verify_token(origin)?.clone(),
            ))
        })
    }
}

/// When the keys are read again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refresh {
    /// Keys older than this are read again before use.
    pub ttl: Duration,
    /// The least time between two re-reads caused by a mismatch.
    pub after_mismatch: Duration,
}

impl Refresh {
    /// Read again after `ttl`, and on a mismatch at most every
    /// [`MISMATCH_REREAD_INTERVAL`].
    pub fn every(ttl: Duration) -> Self {
        Self {
            ttl,
            after_mismatch: MISMATCH_REREAD_INTERVAL,
        }
    }
}

/// The keys in use, shared by the POST path, the subscription check and the
/// callbacks of one instance. Cloning shares the cache.
#[derive(Clone)]
pub struct Credentials(Arc<Inner>);

struct Inner {
    keys: RwLock<Arc<AppKeys>>,
    reread: Option<Reread>,
}

struct Reread {
    source: Box<dyn KeySource>,
    ttl_ms: u64,
    after_mismatch_ms: u64,
    epoch: Instant,
    /// When the keys were read, or a TTL re-read began: ms since `epoch`.
    read_at: AtomicU64,
    /// When the last re-read after a mismatch began: ms since `epoch`, plus one
    /// (0: never).
    mismatch_at: AtomicU64,
    /// Re-reads begun since start.
    reads: AtomicU64,
}

impl Reread {
    fn now_ms(&self) -> u64 {
        millis(self.epoch.elapsed())
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Credentials");
        match &self.0.reread {
            Some(r) => d
                .field("source", &r.source)
                .field("ttl_ms", &r.ttl_ms)
                .field("rereads", &r.reads.load(Ordering::Relaxed)),
            None => d.field("source", &"fixed"),
        };
        d.finish_non_exhaustive()
    }
}

impl Credentials {
    /// Keys that never change (from the environment, or a test's).
    pub fn fixed(keys: AppKeys) -> Self {
        Self(Arc::new(Inner {
            keys: RwLock::new(Arc::new(keys)),
            reread: None,
        }))
    }

    /// `keys` just read from `source`, read again from it as `refresh` says.
    pub fn cached(keys: AppKeys, source: Box<dyn KeySource>, refresh: Refresh) -> Self {
        Self(Arc::new(Inner {
            keys: RwLock::new(Arc::new(keys)),
            reread: Some(Reread {
                source,
                ttl_ms: millis(refresh.ttl),
                after_mismatch_ms: millis(refresh.after_mismatch),
                epoch: Instant::now(),
                read_at: AtomicU64::new(0),
                mismatch_at: AtomicU64::new(0),
                reads: AtomicU64::new(0),
            }),
        }))
    }

    /// How many times the keys were read again since start (0 when fixed).
    pub fn rereads(&self) -> u64 {
        self.0
            .reread
            .as_ref()
            .map_or(0, |r| r.reads.load(Ordering::Relaxed))
    }

    /// The keys to use now, read again first when older than the TTL.
    pub async fn current(&self) -> Arc<AppKeys> {
        if let Some(r) = &self.0.reread {
            let now = r.now_ms();
            let at = r.read_at.load(Ordering::Acquire);
            // One caller wins the re-read; others go on with the keys in use.
            if now.saturating_sub(at) >= r.ttl_ms
                && r.read_at
                    .compare_exchange(at, now, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
            {
                self.reread(r, "ttl").await;
            }
        }
        self.in_use()
    }

    /// Runs `check` with the current keys. When it fails and `is_mismatch` says the
    /// keys may be stale (a rotated secret), reads them again, unless that was done
    /// less than the mismatch interval ago, and runs `check` once more.
    pub async fn check<T, E>(
        &self,
        check: impl Fn(&AppKeys) -> Result<T, E>,
        is_mismatch: impl Fn(&E) -> bool,
    ) -> Result<T, E> {
        let keys = self.current().await;
        match check(&keys) {
            Err(e) if is_mismatch(&e) && self.reread_after_mismatch().await => {
                check(&self.in_use())
            }
            outcome => outcome,
        }
    }

    fn in_use(&self) -> Arc<AppKeys> {
        Arc::clone(&self.0.keys.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// True when the keys were read again (and may differ).
    async fn reread_after_mismatch(&self) -> bool {
        let Some(r) = &self.0.reread else {
            return false;
        };
        let now = r.now_ms();
        let last = r.mismatch_at.load(Ordering::Acquire);
        let due = last == 0 || now.saturating_sub(last - 1) >= r.after_mismatch_ms;
        if !due
            || r.mismatch_at
                .compare_exchange(last, now + 1, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
        {
            return false;
        }
        r.read_at.fetch_max(now, Ordering::AcqRel);
        self.reread(r, "mismatch").await
    }

    /// Reads the keys from the source; keeps those in use when that fails.
    async fn reread(&self, r: &Reread, cause: &'static str) -> bool {
        r.reads.fetch_add(1, Ordering::Relaxed);
        match tokio::time::timeout(REREAD_WITHIN, r.source.read()).await {
            Ok(Ok(keys)) => {
                *self.0.keys.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(keys);
                tracing::info!(cause, "credentials read again");
                true
            }
            Ok(Err(error)) => {
                tracing::warn!(cause, %error, "credentials not read again; the ones in use stay");
                false
            }
            Err(_) => {
                tracing::warn!(
                    cause,
                    within_ms = millis(REREAD_WITHIN),
                    "credentials not read again in time; the ones in use stay"
                );
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use hub_signature::SignatureHeaders;

    use super::*;

    /// A source that answers its script, one reading per call, then fails.
    #[derive(Debug, Default)]
    struct Script {
        answers: Mutex<Vec<Option<(&'static str, &'static str)>>>,
        calls: AtomicU64,
    }

    impl Script {
        fn new(answers: &[Option<(&'static str, &'static str)>]) -> Arc<Self> {
            let mut answers = answers.to_vec();
            answers.reverse();
            Arc::new(Self {
                answers: Mutex::new(answers),
                calls: AtomicU64::new(0),
            })
        }
        fn calls(&self) -> u64 {
            self.calls.load(Ordering::SeqCst)
        }
    }

    impl KeySource for Arc<Script> {
        fn read(&self) -> ReadFuture<'_> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let next = self.answers.lock().unwrap().pop().flatten();
            Box::pin(async move {
                next.map(|(s, t)| keys(s, t))
                    .ok_or_else(|| ConfigError::SecretUnavailable("injected".to_owned()))
            })
        }
    }

    fn keys(secret: &str, token: &str) -> AppKeys {
        AppKeys::new(
            SecretString::from(secret.to_owned()),
            SecretString::from(token.to_owned()),
        )
    }

    fn cached(source: &Arc<Script>, ttl: Duration, after_mismatch: Duration) -> Credentials {
        Credentials::cached(
            keys("old", "old-token"),
            Box::new(Arc::clone(source)),
            Refresh {
                ttl,
                after_mismatch,
            },
        )
    }

    /// Verifies a body signed with `signer` the way the POST path does.
    async fn verify(credentials: &Credentials, signer: &str) -> bool {
        let body = b"{}";
        let sig = Verifier::new(signer.as_bytes()).sign_sha256(body);
        let headers = SignatureHeaders {
            sha256: Some(sig.as_bytes()),
            sha1: None,
        };
        credentials
            .check(
                |k| k.verifier().verify(headers, body),
                hub_signature::SignatureError::is_mismatch,
            )
            .await
            .is_ok()
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[tokio::test]
    async fn a_mismatch_reads_the_secret_again_and_verifies_with_the_new_one() {
        let source = Script::new(&[Some(("new", "new-token"))]);
        let c = cached(&source, HOUR, MISMATCH_REREAD_INTERVAL);
        assert!(verify(&c, "old").await);
        assert_eq!(source.calls(), 0, "fresh keys are not read again");
        assert!(verify(&c, "new").await);
        assert_eq!(source.calls(), 1);
        // The new keys are the ones in use now, the token included.
        assert!(verify(&c, "new").await);
        assert_eq!(
            c.current().await.verify_token().expose_secret(),
            "new-token"
        );
        assert_eq!(source.calls(), 1);
    }

    #[tokio::test]
    async fn a_second_mismatch_within_the_interval_does_not_read_again() {
        let source = Script::new(&[Some(("old", "t")), Some(("new", "t"))]);
        let c = cached(&source, HOUR, MISMATCH_REREAD_INTERVAL);
        assert!(!verify(&c, "wrong").await);
        assert_eq!(source.calls(), 1);
        // The secret has rotated since, but the last re-read was just now.
        assert!(!verify(&c, "new").await);
        assert!(!verify(&c, "wrong").await);
        assert_eq!(source.calls(), 1);
        assert_eq!(c.rereads(), 1);
    }

    #[tokio::test]
    async fn past_the_interval_a_mismatch_reads_again() {
        let source = Script::new(&[Some(("old", "t")), Some(("new", "t"))]);
        let c = cached(&source, HOUR, Duration::ZERO);
        assert!(!verify(&c, "wrong").await);
        assert!(verify(&c, "new").await);
        assert_eq!(source.calls(), 2);
    }

    #[tokio::test]
    async fn a_failed_reread_keeps_the_keys_in_use() {
        let source = Script::new(&[None, None]);
        let c = cached(&source, Duration::ZERO, Duration::ZERO);
        // TTL 0: read before every use; the failures leave the old keys.
        assert!(verify(&c, "old").await);
        assert!(!verify(&c, "wrong").await);
        assert!(verify(&c, "old").await);
        assert!(source.calls() >= 3, "{}", source.calls());
    }

    #[tokio::test]
    async fn keys_older_than_the_ttl_are_read_before_use() {
        let source = Script::new(&[Some(("new", "rotated-token"))]);
        let c = cached(&source, Duration::ZERO, HOUR);
        assert_eq!(
            c.current().await.verify_token().expose_secret(),
            "rotated-token"
        );
        assert_eq!(source.calls(), 1);

        let source = Script::new(&[Some(("new", "rotated-token"))]);
        let c = cached(&source, HOUR, HOUR);
        assert_eq!(
            c.current().await.verify_token().expose_secret(),
            "old-token"
        );
        assert_eq!(source.calls(), 0);
    }

    #[tokio::test]
    async fn fixed_keys_are_never_read_again() {
        let c = Credentials::fixed(keys("old", "t"));
        assert!(!verify(&c, "wrong").await);
        assert!(verify(&c, "old").await);
        assert_eq!(c.rereads(), 0);
    }

    #[test]
    fn debug_shows_no_secret() {
        let c = Credentials::fixed(keys("shh-secret", "shh-token"));
        let text = format!("{c:?} {:?}", keys("shh-secret", "shh-token"));
        assert!(!text.contains("shh"), "{text}");
    }
}
