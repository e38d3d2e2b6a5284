//! Verification of Meta's webhook signatures.
//!
//! Meta signs every POST with `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app
//! secret, body)>` and, for older apps, also `X-Hub-Signature: sha1=<hex
//! HMAC-SHA1>`. The signature covers the **exact bytes received**: Meta escapes
//! non-ASCII as `\u00e4` and may escape `/` as `\/`, so verifying a re-serialised
//! body fails. Always verify the raw bytes, before parsing them.
//!
//! The Data Deletion and Deauthorize callbacks carry no such header but a
//! `signed_request` form field instead: see [`signed_request`].
//!
//! ```
//! use hub_signature::{Verifier, SignatureHeaders, Algorithm};
//! let verifier = Verifier::new(b"app-secret");
//! let body = br#"{"object":"page","entry":[]}"#;
//! let header = verifier.sign_sha256(body);
//! let headers = SignatureHeaders { sha256: Some(header.as_bytes()), sha1: None };
//! assert_eq!(verifier.verify(headers, body), Ok(Algorithm::Sha256));
//! ```

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

use std::fmt;

use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::Sha256;

pub mod signed_request;

/// The header carrying HMAC-SHA256, as Meta names it.
pub const SHA256_HEADER: &str = "x-hub-signature-256";
/// The legacy header carrying HMAC-SHA1.
pub const SHA1_HEADER: &str = "x-hub-signature";

/// The raw values of the two signature headers, as received.
#[derive(Debug, Clone, Copy, Default)]
pub struct SignatureHeaders<'a> {
    pub sha256: Option<&'a [u8]>,
    pub sha1: Option<&'a [u8]>,
}

/// Which signature was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Sha256,
    Sha1,
}

/// Why a request is not authenticated. The two classes answer differently: a request
/// that carries no usable signature is unauthenticated (401); one whose signature is
/// well formed but wrong is forbidden (403). Never contains the signature or the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no X-Hub-Signature-256 or X-Hub-Signature header")]
    Missing,
    #[error("malformed {header} header: {reason}")]
    Malformed {
        header: &'static str,
        reason: &'static str,
    },
    #[error("{header} does not match the body")]
    Mismatch { header: &'static str },
}

impl SignatureError {
    /// True for [`SignatureError::Mismatch`]: the request was signed, but not by
    /// this app's secret or not over these bytes.
    pub fn is_mismatch(&self) -> bool {
        matches!(self, Self::Mismatch { .. })
    }
}

/// Verifies signatures for one app secret. Keying the HMAC is done once here, and
/// each verification starts from a copy of the keyed state.
#[derive(Clone)]
pub struct Verifier {
    sha256: Hmac<Sha256>,
    sha1: Hmac<Sha1>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Verifier { .. }")
    }
}

impl Verifier {
    pub fn new(app_secret: &[u8]) -> Self {
        Self {
            sha256: keyed(app_secret),
            sha1: keyed(app_secret),
        }
    }

    /// Checks `X-Hub-Signature-256` when present, and `X-Hub-Signature` only when it
    /// is absent: a malformed or wrong sha256 signature is never rescued by sha1.
    pub fn verify(
        &self,
        headers: SignatureHeaders<'_>,
        body: &[u8],
    ) -> Result<Algorithm, SignatureError> {
        if let Some(value) = headers.sha256 {
            let expected = parse::<32>(value, "sha256", "X-Hub-Signature-256")?;
            let mut mac = self.sha256.clone();
            mac.update(body);
            return mac
                .verify_slice(&expected)
                .map(|()| Algorithm::Sha256)
                .map_err(|_| SignatureError::Mismatch {
                    header: "X-Hub-Signature-256",
                });
        }
        if let Some(value) = headers.sha1 {
            let expected = parse::<20>(value, "sha1", "X-Hub-Signature")?;
            let mut mac = self.sha1.clone();
            mac.update(body);
            return mac
                .verify_slice(&expected)
                .map(|()| Algorithm::Sha1)
                .map_err(|_| SignatureError::Mismatch {
                    header: "X-Hub-Signature",
                });
        }
        Err(SignatureError::Missing)
    }

    /// The `X-Hub-Signature-256` value Meta would send for `body`: for tests, local
    /// tools and benchmarks that need to sign what they send.
    pub fn sign_sha256(&self, body: &[u8]) -> String {
        let mut mac = self.sha256.clone();
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    /// The legacy `X-Hub-Signature` value for `body`.
    pub fn sign_sha1(&self, body: &[u8]) -> String {
        let mut mac = self.sha1.clone();
        mac.update(body);
        format!("sha1={}", hex::encode(mac.finalize().into_bytes()))
    }
}

fn keyed<M: Mac + hmac::digest::KeyInit>(secret: &[u8]) -> M {
    // HMAC takes keys of any length (long keys are hashed first), so this cannot fail.
    match <M as hmac::digest::KeyInit>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of every length"),
    }
}

/// Parses `<prefix>=<hex>` into the digest bytes. The prefix is matched without
/// regard to case and surrounding whitespace is ignored (proxies fold and pad
/// headers); the hex digits may be upper or lower case.
fn parse<const N: usize>(
    value: &[u8],
    prefix: &str,
    header: &'static str,
) -> Result<[u8; N], SignatureError> {
    let malformed = |reason| SignatureError::Malformed { header, reason };
    let value = value.trim_ascii();
    let (algo, digest) = match value.iter().position(|&b| b == b'=') {
        Some(i) => (&value[..i], &value[i + 1..]),
        None => return Err(malformed("expected <algorithm>=<hex digest>")),
    };
    if !algo.eq_ignore_ascii_case(prefix.as_bytes()) {
        return Err(malformed("unexpected algorithm prefix"));
    }
    if digest.len() != N * 2 {
        return Err(malformed("digest has the wrong length"));
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(digest, &mut out).map_err(|_| malformed("digest is not hexadecimal"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"test-app-secret";

    fn sha256_only(value: &str) -> SignatureHeaders<'_> {
        SignatureHeaders {
            sha256: Some(value.as_bytes()),
            sha1: None,
        }
    }

    /// HMAC-SHA256 of the bytes computed independently of `Verifier` (RFC 2104 by
    /// hand over the sha2 primitive), so the tests do not check the code against itself.
    fn reference_sha256(key: &[u8], body: &[u8]) -> String {
        use sha2::Digest;
        let mut k = [0u8; 64];
        if key.len() > 64 {
            k[..32].copy_from_slice(&Sha256::digest(key));
        } else {
            k[..key.len()].copy_from_slice(key);
        }
        let inner: Vec<u8> = k
            .iter()
            .map(|b| b ^ 0x36)
            .chain(body.iter().copied())
            .collect();
        let inner = Sha256::digest(&inner);
        let outer: Vec<u8> = k
            .iter()
            .map(|b| b ^ 0x5c)
            .chain(inner.iter().copied())
            .collect();
        format!("sha256={}", hex::encode(Sha256::digest(&outer)))
    }

    #[test]
    fn rfc4231_test_case_2() {
        // RFC 4231 §4.3: key "Jefe", data "what do ya want for nothing?".
        let v = Verifier::new(b"Jefe");
        let sig = "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        assert_eq!(v.sign_sha256(b"what do ya want for nothing?"), sig);
        assert_eq!(
            v.verify(sha256_only(sig), b"what do ya want for nothing?"),
            Ok(Algorithm::Sha256)
        );
    }

    #[test]
    fn escaped_unicode_is_verified_over_the_bytes_as_sent() {
        let body = br#"{"object":"page","entry":[{"messaging":[{"message":{"text":"Gr\u00fc\u00dfe aus M\u00fcnchen"}}]}]}"#;
        let sig = reference_sha256(SECRET, body);
        let v = Verifier::new(SECRET);
        assert_eq!(v.verify(sha256_only(&sig), body), Ok(Algorithm::Sha256));
        // The same JSON re-serialised with the characters unescaped is other bytes.
        let reserialised = r#"{"object":"page","entry":[{"messaging":[{"message":{"text":"Grüße aus München"}}]}]}"#;
        assert_eq!(
            v.verify(sha256_only(&sig), reserialised.as_bytes()),
            Err(SignatureError::Mismatch {
                header: "X-Hub-Signature-256"
            })
        );
    }

    #[test]
    fn escaped_slashes_are_verified_over_the_bytes_as_sent() {
        let body = br#"{"url":"https:\/\/scontent.xx.fbcdn.net\/v\/t1.15752-9\/x.jpg"}"#;
        let sig = reference_sha256(SECRET, body);
        let v = Verifier::new(SECRET);
        assert_eq!(v.verify(sha256_only(&sig), body), Ok(Algorithm::Sha256));
        let unescaped = br#"{"url":"https://scontent.xx.fbcdn.net/v/t1.15752-9/x.jpg"}"#;
        assert!(
            v.verify(sha256_only(&sig), unescaped)
                .unwrap_err()
                .is_mismatch()
        );
    }

    #[test]
    fn base64_encoded_gateway_body_is_verified_after_decoding() {
        use base64::Engine as _;
        let body = br#"{"object":"page","entry":[{"id":"1","time":2,"messaging":[]}]}"#;
        let sig = reference_sha256(SECRET, body);
        let as_gateway_sends_it = base64::engine::general_purpose::STANDARD.encode(body);
        let v = Verifier::new(SECRET);
        assert!(
            v.verify(sha256_only(&sig), as_gateway_sends_it.as_bytes())
                .unwrap_err()
                .is_mismatch()
        );
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(as_gateway_sends_it)
            .unwrap();
        assert_eq!(v.verify(sha256_only(&sig), &decoded), Ok(Algorithm::Sha256));
    }

    #[test]
    fn uppercase_hex_and_prefix_and_padding_are_accepted() {
        let body = b"{}";
        let sig = reference_sha256(SECRET, body);
        let upper = format!("  SHA256={}\t", sig["sha256=".len()..].to_ascii_uppercase());
        let v = Verifier::new(SECRET);
        assert_eq!(v.verify(sha256_only(&upper), body), Ok(Algorithm::Sha256));
    }

    #[test]
    fn truncated_or_garbled_headers_are_malformed_not_mismatched() {
        let body = b"{}";
        let sig = reference_sha256(SECRET, body);
        let v = Verifier::new(SECRET);
        for bad in [
            &sig[..sig.len() - 1],                           // truncated
            &sig["sha256=".len()..],                         // no prefix
            "sha256=",                                       // no digest
            "sha1=0000000000000000000000000000000000000000", // wrong algorithm
            "",
        ] {
            let err = v.verify(sha256_only(bad), body).unwrap_err();
            assert!(
                matches!(err, SignatureError::Malformed { .. }),
                "{bad:?} gave {err:?}"
            );
        }
        let not_hex = format!("sha256={}", "zz".repeat(32));
        assert!(matches!(
            v.verify(sha256_only(&not_hex), body),
            Err(SignatureError::Malformed { .. })
        ));
    }

    #[test]
    fn empty_body_has_a_signature_like_any_other() {
        let v = Verifier::new(SECRET);
        let sig = reference_sha256(SECRET, b"");
        assert_eq!(v.verify(sha256_only(&sig), b""), Ok(Algorithm::Sha256));
        assert!(v.verify(sha256_only(&sig), b" ").unwrap_err().is_mismatch());
    }

    #[test]
    fn sha1_is_used_only_when_sha256_is_absent() {
        let body = b"{\"object\":\"page\"}";
        let v = Verifier::new(SECRET);
        let sha1 = v.sign_sha1(body);
        let only_sha1 = SignatureHeaders {
            sha256: None,
            sha1: Some(sha1.as_bytes()),
        };
        assert_eq!(v.verify(only_sha1, body), Ok(Algorithm::Sha1));

        let wrong256 = reference_sha256(b"another secret", body);
        let both = SignatureHeaders {
            sha256: Some(wrong256.as_bytes()),
            sha1: Some(sha1.as_bytes()),
        };
        assert!(v.verify(both, body).unwrap_err().is_mismatch());

        let malformed_256 = SignatureHeaders {
            sha256: Some(b"sha256=abc"),
            sha1: Some(sha1.as_bytes()),
        };
        assert!(matches!(
            v.verify(malformed_256, body),
            Err(SignatureError::Malformed { .. })
        ));
    }

    #[test]
    fn a_request_without_signature_is_missing() {
        let v = Verifier::new(SECRET);
        assert_eq!(
            v.verify(SignatureHeaders::default(), b"{}"),
            Err(SignatureError::Missing)
        );
    }

    #[test]
    fn the_wrong_secret_is_a_mismatch() {
        let body = b"{}";
        let sig = reference_sha256(b"someone else", body);
        let err = Verifier::new(SECRET)
            .verify(sha256_only(&sig), body)
            .unwrap_err();
        assert!(err.is_mismatch());
        assert!(!err.to_string().contains(&sig[7..]));
    }

    #[test]
    fn debug_does_not_reveal_the_key() {
        assert_eq!(format!("{:?}", Verifier::new(SECRET)), "Verifier { .. }");
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_headers_and_bodies_never_panic(
            sha256 in proptest::option::of(proptest::collection::vec(proptest::num::u8::ANY, 0..100)),
            sha1 in proptest::option::of(proptest::collection::vec(proptest::num::u8::ANY, 0..60)),
            body in proptest::collection::vec(proptest::num::u8::ANY, 0..512),
        ) {
            let v = Verifier::new(SECRET);
            let result = v.verify(SignatureHeaders { sha256: sha256.as_deref(), sha1: sha1.as_deref() }, &body);
            // Random bytes essentially never form a valid signature.
            proptest::prop_assert!(result.is_err());
        }

        #[test]
        fn every_body_verifies_against_its_own_signature_only(
            body in proptest::collection::vec(proptest::num::u8::ANY, 0..2048),
            flip in proptest::num::usize::ANY,
        ) {
            let v = Verifier::new(SECRET);
            let sig = reference_sha256(SECRET, &body);
            proptest::prop_assert_eq!(v.verify(sha256_only(&sig), &body), Ok(Algorithm::Sha256));
            if !body.is_empty() {
                let mut other = body.clone();
                let i = flip % other.len();
                other[i] ^= 0x01;
                proptest::prop_assert!(v.verify(sha256_only(&sig), &other).unwrap_err().is_mismatch());
            }
        }
    }
}
