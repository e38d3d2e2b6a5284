//! Verification of Meta's `signed_request`, the credential of the Data Deletion
//! Request Callback and the Deauthorize callback.
//!
//! Those callbacks carry no `X-Hub-Signature-256` header: Meta POSTs the form
//! `signed_request=<signature>.<payload>`, where `payload` is the base64url (no
//! padding) of a JSON object such as
//! `{"algorithm":"HMAC-SHA256","expires":1700000000,"issued_at":1699990000,"user_id":"1234567890"}`
//! and `signature` is the base64url (no padding) of HMAC-SHA256(app secret, the
//! payload **text as sent**). As with the webhook signature, the MAC covers the
//! exact characters received, so it is checked on them, before the payload is
//! decoded into JSON, let alone re-encoded.
//!
//! Pass the form field's value after the form decoding (base64url needs none,
//! but a proxy may percent-encode anyway).
//!
//! ```
//! use hub_signature::signed_request::{sign, verify};
//! let secret = b"made-up-app-secret";
//! let request = sign(r#"{"algorithm":"HMAC-SHA256","user_id":"1234567890"}"#, secret);
//! let verified = verify(&request, secret, 1_700_000_000).unwrap();
//! assert_eq!(verified.user_id, "1234567890");
//! assert!(verify(&request, b"another secret", 1_700_000_000).unwrap_err().is_forbidden());
//! ```

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

/// The longest `signed_request` accepted. Meta's are a few hundred bytes; anything
/// past this is refused before a byte of it is decoded or hashed, so an oversized
/// form costs the function nothing.
pub const MAX_SIGNED_REQUEST_BYTES: usize = 8 * 1024;

/// The only `algorithm` Meta uses, spelled as Meta sends it.
pub const ALGORITHM: &str = "HMAC-SHA256";

/// base64url without padding, decoded strictly: `=` is refused, and so are
/// unused low bits set in the last character. Every byte string then has exactly
/// one accepted spelling, so no variant of a signature or payload text is
/// accepted besides the one Meta sent (the same as `URL_SAFE_NO_PAD`, spelled out
/// here because the security of the check depends on it).
const BASE64URL: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(false),
);

/// The verified content of a `signed_request`: whom the callback is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRequest {
    /// The app-scoped user id. JSON may carry it as a string or a number; it is
    /// always kept as the decimal string, the form every other API uses.
    pub user_id: String,
    /// The page-scoped id a Deauthorize callback may also carry.
    pub profile_id: Option<String>,
    pub issued_at: Option<i64>,
    pub expires: Option<i64>,
}

/// Why a `signed_request` is refused. Only a well-formed request whose signature
/// is wrong is forbidden (403); everything else is a bad request (400), as nothing
/// in it could be checked. Never contains the secret, the signature or the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignedRequestError {
    #[error("signed_request is longer than {MAX_SIGNED_REQUEST_BYTES} bytes")]
    TooLong,
    #[error("malformed signed_request: {0}")]
    Malformed(&'static str),
    #[error("signed_request signature does not match the payload")]
    BadSignature,
    #[error("signed_request algorithm is not {ALGORITHM}")]
    WrongAlgorithm,
    #[error("signed_request has expired")]
    Expired,
}

impl SignedRequestError {
    /// True for [`SignedRequestError::BadSignature`]: the request was signed, but
    /// not by this app's secret or not over this payload.
    pub fn is_forbidden(&self) -> bool {
        matches!(self, Self::BadSignature)
    }
}

/// Checks `signed_request` against the app secret and returns its payload.
///
/// In order: the length; the shape `<signature>.<payload>` (exactly one `.`);
/// both parts strict base64url; a 32-byte signature; the HMAC over the payload
/// text, in constant time; only then the JSON, its `algorithm` (exactly
/// `HMAC-SHA256`), its `expires` (when present and non-zero, it must be later
/// than `now_unix_seconds`) and its `user_id` (present, not empty).
pub fn verify(
    signed_request: &str,
    app_secret: &[u8],
    now_unix_seconds: i64,
) -> Result<SignedRequest, SignedRequestError> {
    use SignedRequestError::Malformed;

    if signed_request.len() > MAX_SIGNED_REQUEST_BYTES {
        return Err(SignedRequestError::TooLong);
    }
    let Some((signature, payload)) = signed_request.split_once('.') else {
        return Err(Malformed("expected <signature>.<payload>"));
    };
    if payload.contains('.') {
        return Err(Malformed("more than one '.'"));
    }
    if signature.is_empty() {
        return Err(Malformed("empty signature"));
    }
    if payload.is_empty() {
        return Err(Malformed("empty payload"));
    }
    let signature = BASE64URL
        .decode(signature)
        .map_err(|_| Malformed("signature is not unpadded base64url"))?;
    if signature.len() != 32 {
        return Err(Malformed("signature is not 32 bytes"));
    }
    let json = BASE64URL
        .decode(payload)
        .map_err(|_| Malformed("payload is not unpadded base64url"))?;

    let mut mac = crate::keyed::<Hmac<Sha256>>(app_secret);
    mac.update(payload.as_bytes());
    mac.verify_slice(&signature)
        .map_err(|_| SignedRequestError::BadSignature)?;

    let fields: Map<String, Value> =
        serde_json::from_slice(&json).map_err(|_| Malformed("payload is not a JSON object"))?;
    match fields.get("algorithm") {
        Some(Value::String(algorithm)) if algorithm == ALGORITHM => {}
        _ => return Err(SignedRequestError::WrongAlgorithm),
    }
    let expires = timestamp(&fields, "expires", "expires is not an integer")?;
    if let Some(expires) = expires
        && expires != 0
        && expires <= now_unix_seconds
    {
        return Err(SignedRequestError::Expired);
    }
    let user_id = id(&fields, "user_id", "user_id is not a string or an integer")?
        .ok_or(Malformed("no user_id"))?;
    Ok(SignedRequest {
        user_id,
        profile_id: id(
            &fields,
            "profile_id",
            "profile_id is not a string or an integer",
        )?,
        issued_at: timestamp(&fields, "issued_at", "issued_at is not an integer")?,
        expires,
    })
}

/// The `signed_request` Meta would send with this payload: for tests, the CLI and
/// fixtures that need to sign what they send. `payload_json` is encoded as given.
pub fn sign(payload_json: &str, app_secret: &[u8]) -> String {
    let payload = BASE64URL.encode(payload_json);
    let mut mac = crate::keyed::<Hmac<Sha256>>(app_secret);
    mac.update(payload.as_bytes());
    let signature = BASE64URL.encode(mac.finalize().into_bytes());
    format!("{signature}.{payload}")
}

/// An id Meta may write as a string or as a number; `null`, an absent field and
/// an empty string all mean no id.
fn id(
    fields: &Map<String, Value>,
    name: &str,
    wrong_type: &'static str,
) -> Result<Option<String>, SignedRequestError> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        // Only whole non-negative numbers: a float would print as `1.0` or `1e20`.
        Some(Value::Number(n)) => n
            .as_u64()
            .map(|n| Some(n.to_string()))
            .ok_or(SignedRequestError::Malformed(wrong_type)),
        Some(_) => Err(SignedRequestError::Malformed(wrong_type)),
    }
}

/// Unix seconds; `null` or an absent field mean none.
fn timestamp(
    fields: &Map<String, Value>,
    name: &str,
    wrong_type: &'static str,
) -> Result<Option<i64>, SignedRequestError> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or(SignedRequestError::Malformed(wrong_type)),
        Some(_) => Err(SignedRequestError::Malformed(wrong_type)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use SignedRequestError::*;
    use proptest::prelude::*;

    const SECRET: &[u8] = b"made-up-app-secret";
    const NOW: i64 = 1_699_995_000;
    const META_SHAPE: &str = r#"{"algorithm":"HMAC-SHA256","expires":1700000000,"issued_at":1699990000,"user_id":"1234567890"}"#;

    fn signed(json: &str) -> String {
        sign(json, SECRET)
    }

    fn check(request: &str) -> Result<SignedRequest, SignedRequestError> {
        verify(request, SECRET, NOW)
    }

    fn parts(request: &str) -> (&str, &str) {
        request.split_once('.').unwrap()
    }

    #[test]
    fn sign_matches_an_independent_implementation() {
        // Computed with Python's hmac and base64 modules:
        //   p = urlsafe_b64encode(META_SHAPE).rstrip(b"=")
        //   urlsafe_b64encode(hmac.new(SECRET, p, sha256).digest()).rstrip(b"=") + b"." + p
        let expected = "NI4BKRkHjiK_BWl8Pykam1FKJX3Z-cKTqg1umMhBhVE.eyJhbGdvcml0aG0iOiJITUFDLVNIQTI1NiIsImV4cGlyZXMiOjE3MDAwMDAwMDAsImlzc3VlZF9hdCI6MTY5OTk5MDAwMCwidXNlcl9pZCI6IjEyMzQ1Njc4OTAifQ";
        assert_eq!(signed(META_SHAPE), expected);
    }

    #[test]
    fn metas_shape_verifies() {
        assert_eq!(
            check(&signed(META_SHAPE)),
            Ok(SignedRequest {
                user_id: "1234567890".into(),
                profile_id: None,
                issued_at: Some(1_699_990_000),
                expires: Some(1_700_000_000),
            })
        );
    }

    #[test]
    fn numeric_ids_profile_id_and_unknown_fields_are_read() {
        let json = r#"{"algorithm":"HMAC-SHA256","issued_at":1699990000,"user_id":1234567890,"profile_id":"9876543210","oauth_token":"x","nested":{"a":[1,2]}}"#;
        let got = check(&signed(json)).unwrap();
        assert_eq!(got.user_id, "1234567890");
        assert_eq!(got.profile_id.as_deref(), Some("9876543210"));
        assert_eq!(got.expires, None);
        let json = r#"{"algorithm":"HMAC-SHA256","expires":0,"user_id":"1","profile_id":42}"#;
        let got = check(&signed(json)).unwrap();
        assert_eq!(got.profile_id.as_deref(), Some("42"));
        assert_eq!(got.expires, Some(0), "0 means it does not expire");
    }

    #[test]
    fn a_tampered_payload_or_the_wrong_secret_is_forbidden() {
        let request = signed(META_SHAPE);
        let (sig, payload) = parts(&request);
        // A character in the middle, so the payload stays canonical base64url.
        let mut tampered = payload.to_owned().into_bytes();
        let i = tampered.len() / 2;
        tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
        let tampered = format!("{sig}.{}", String::from_utf8(tampered).unwrap());
        assert_eq!(check(&tampered), Err(BadSignature));
        let err = verify(&request, b"someone else's secret", NOW).unwrap_err();
        assert_eq!(err, BadSignature);
        assert!(err.is_forbidden());
        // A signature over a valid payload, moved to another payload.
        let other = signed(r#"{"algorithm":"HMAC-SHA256","user_id":"2"}"#);
        assert_eq!(
            check(&format!("{sig}.{}", parts(&other).1)),
            Err(BadSignature)
        );
    }

    #[test]
    fn only_hmac_sha256_as_meta_spells_it_is_accepted() {
        for algorithm in [
            r#""HMAC-SHA1""#,
            r#""hmac-sha256""#,
            r#""HMAC-SHA256 ""#,
            r#""""#,
            "null",
            "256",
        ] {
            let json = format!(r#"{{"algorithm":{algorithm},"user_id":"1"}}"#);
            assert_eq!(check(&signed(&json)), Err(WrongAlgorithm), "{algorithm}");
        }
        assert_eq!(check(&signed(r#"{"user_id":"1"}"#)), Err(WrongAlgorithm));
    }

    #[test]
    fn padding_and_standard_base64_are_malformed() {
        let request = signed(META_SHAPE);
        let (sig, payload) = parts(&request);
        for bad in [
            format!("{sig}=.{payload}"),
            format!("{sig}==.{payload}"),
            format!("{sig}.{payload}="),
            format!("{sig}.{payload}=="),
            format!("+{}.{payload}", &sig[1..]),
            format!("/{}.{payload}", &sig[1..]),
            format!("{sig}.+{}", &payload[1..]),
            format!("{sig}.{}/", &payload[..payload.len() - 1]),
        ] {
            let err = check(&bad).unwrap_err();
            assert!(matches!(err, Malformed(_)), "{bad}: {err:?}");
            assert!(!err.is_forbidden());
        }
        // Padding is refused by the decoding rule, even when it was signed.
        let padded = format!("{}=", parts(&request).1);
        let mut mac = crate::keyed::<Hmac<Sha256>>(SECRET);
        mac.update(padded.as_bytes());
        let sig = BASE64URL.encode(mac.finalize().into_bytes());
        assert!(matches!(
            check(&format!("{sig}.{padded}")),
            Err(Malformed(_))
        ));
    }

    #[test]
    fn non_canonical_trailing_bits_are_malformed() {
        // 32 bytes are 43 characters whose last carries 2 unused bits; setting
        // them spells the same bytes another way.
        let request = signed(META_SHAPE);
        let (sig, payload) = parts(&request);
        let last = sig.as_bytes()[42];
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let index = alphabet.iter().position(|&c| c == last).unwrap();
        assert_eq!(index & 0b11, 0);
        let other = char::from(alphabet[index | 1]);
        let bad = format!("{}{other}.{payload}", &sig[..42]);
        assert_eq!(
            check(&bad),
            Err(Malformed("signature is not unpadded base64url"))
        );
    }

    #[test]
    fn the_shape_is_one_signature_one_dot_one_payload() {
        let request = signed(META_SHAPE);
        let (sig, payload) = parts(&request);
        let cases = [
            (format!("{sig}{payload}"), "expected <signature>.<payload>"),
            (String::new(), "expected <signature>.<payload>"),
            (format!("{sig}.{payload}."), "more than one '.'"),
            (format!("{sig}..{payload}"), "more than one '.'"),
            (format!("{sig}.{payload}.{payload}"), "more than one '.'"),
            (format!(".{payload}"), "empty signature"),
            (format!("{sig}."), "empty payload"),
            (".".to_owned(), "empty signature"),
            (
                format!("{}.{payload}", &sig[..40]),
                "signature is not 32 bytes",
            ),
            (format!("{sig}AAAA.{payload}"), "signature is not 32 bytes"),
        ];
        for (bad, reason) in cases {
            assert_eq!(check(&bad), Err(Malformed(reason)), "{bad}");
        }
    }

    #[test]
    fn a_megabyte_is_refused_before_decoding() {
        let huge = format!("{}.{}", "A".repeat(43), "A".repeat(1 << 20));
        let started = std::time::Instant::now();
        assert_eq!(check(&huge), Err(TooLong));
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        // The limit itself: exactly MAX bytes are read, one more is not.
        let at_limit = "A".repeat(MAX_SIGNED_REQUEST_BYTES);
        assert_ne!(check(&at_limit), Err(TooLong));
        assert_eq!(check(&format!("{at_limit}A")), Err(TooLong));
    }

    #[test]
    fn expiry_is_checked_against_now() {
        let request = signed(META_SHAPE);
        assert!(verify(&request, SECRET, 1_699_999_999).is_ok());
        assert_eq!(verify(&request, SECRET, 1_700_000_000), Err(Expired));
        assert_eq!(verify(&request, SECRET, 1_800_000_000), Err(Expired));
        assert!(!Expired.is_forbidden());
    }

    #[test]
    fn payloads_without_a_usable_user_id_are_malformed() {
        for json in [
            r#"{"algorithm":"HMAC-SHA256"}"#,
            r#"{"algorithm":"HMAC-SHA256","user_id":""}"#,
            r#"{"algorithm":"HMAC-SHA256","user_id":null}"#,
            r#"{"algorithm":"HMAC-SHA256","user_id":-1}"#,
            r#"{"algorithm":"HMAC-SHA256","user_id":1.5}"#,
            r#"{"algorithm":"HMAC-SHA256","user_id":["1"]}"#,
            r#"{"algorithm":"HMAC-SHA256","user_id":"1","expires":"soon"}"#,
            r#"{"algorithm":"HMAC-SHA256","user_id":"1","issued_at":1.5}"#,
            r#"{"algorithm":"HMAC-SHA256","user_id":"1","profile_id":true}"#,
            r#"["HMAC-SHA256","1"]"#,
            r#"{"algorithm":"HMAC-SHA256","user_id":"1""#,
            "not json",
        ] {
            let err = check(&signed(json)).unwrap_err();
            assert!(matches!(err, Malformed(_)), "{json}: {err:?}");
            assert!(!err.is_forbidden());
        }
    }

    #[test]
    fn errors_reveal_neither_secret_nor_signature() {
        let request = signed(META_SHAPE);
        let (sig, _) = parts(&request);
        let err = verify(&request, b"another-made-up-secret", NOW).unwrap_err();
        let text = err.to_string();
        assert!(!text.contains(sig) && !text.contains("made-up"), "{text}");
    }

    /// A JSON value that is not an object key Meta defines.
    fn extra_value() -> impl Strategy<Value = Value> {
        prop_oneof![
            any::<String>().prop_map(Value::String),
            any::<i64>().prop_map(Value::from),
            any::<bool>().prop_map(Value::Bool),
            Just(Value::Null),
        ]
    }

    fn id_value() -> impl Strategy<Value = (Value, String)> {
        prop_oneof![
            "[0-9]{1,20}".prop_map(|s| (Value::String(s.clone()), s)),
            any::<String>()
                .prop_filter("non-empty", |s| !s.is_empty())
                .prop_map(|s| (Value::String(s.clone()), s)),
            any::<u64>().prop_map(|n| (Value::from(n), n.to_string())),
        ]
    }

    proptest! {
        #[test]
        fn every_signed_payload_verifies_and_no_single_byte_change_does(
            user in id_value(),
            profile in proptest::option::of(id_value()),
            issued_at in proptest::option::of(any::<i64>()),
            expires in proptest::option::of(prop_oneof![Just(0i64), NOW + 1..i64::MAX]),
            extra in proptest::collection::btree_map("[a-z_]{1,12}", extra_value(), 0..6),
            secret in proptest::collection::vec(any::<u8>(), 0..100),
            flip in any::<usize>(),
            replacement in any::<u8>(),
        ) {
            let mut fields: Map<String, Value> = extra.into_iter().collect();
            fields.insert("algorithm".into(), ALGORITHM.into());
            fields.insert("user_id".into(), user.0);
            fields.remove("profile_id");
            if let Some((value, _)) = &profile {
                fields.insert("profile_id".into(), value.clone());
            }
            match issued_at {
                Some(t) => { fields.insert("issued_at".into(), t.into()); }
                None => { fields.remove("issued_at"); }
            }
            match expires {
                Some(t) => { fields.insert("expires".into(), t.into()); }
                None => { fields.remove("expires"); }
            }
            let json = Value::Object(fields).to_string();
            let request = sign(&json, &secret);
            prop_assert_eq!(
                verify(&request, &secret, NOW),
                Ok(SignedRequest {
                    user_id: user.1,
                    profile_id: profile.map(|p| p.1),
                    issued_at,
                    expires,
                })
            );

            let mut bytes = request.clone().into_bytes();
            let i = flip % bytes.len();
            prop_assume!(bytes[i] != replacement);
            bytes[i] = replacement;
            let changed = String::from_utf8_lossy(&bytes);
            prop_assert_ne!(changed.as_ref(), request.as_str());
            prop_assert!(verify(&changed, &secret, NOW).is_err());
        }

        #[test]
        fn arbitrary_strings_never_panic(
            text in prop_oneof![any::<String>(), "[A-Za-z0-9_=+/.-]{0,120}"],
            secret in proptest::collection::vec(any::<u8>(), 0..40),
            now in any::<i64>(),
        ) {
            // Random text essentially never carries a valid signature.
            prop_assert!(verify(&text, &secret, now).is_err());
        }

        #[test]
        fn arbitrary_signed_payloads_never_panic(
            payload in prop_oneof![any::<String>(), r#"\{"[a-z_]{0,10}":("[0-9]{0,5}"|[0-9-]{1,25}|null|\[\]),?\}"#],
            now in any::<i64>(),
        ) {
            // Correctly signed, so everything after the MAC is exercised.
            let _ = verify(&sign(&payload, SECRET), SECRET, now);
        }
    }
}
