//! The `signed_request` check (Data Deletion and Deauthorize callbacks) against
//! arbitrary input.
//!
//! Input: `<app secret>\n<now, decimal Unix seconds>\n<signed_request>`, the last
//! field read as lossy UTF-8 (a missing field is empty; an unreadable `now` is 0).
//! Checks, besides never panicking:
//! - whatever verifies re-signs to exactly the input: `sign` over the decoded
//!   payload with the same secret gives back its signature part and its payload
//!   part, and the signature is the independent model's HMAC over the payload text;
//! - the input's payload part under its correct signature (the model's) is never
//!   refused as `BadSignature`, so the fuzzer reaches the JSON behind the MAC;
//!   what verifies there carries `algorithm` "HMAC-SHA256" and the `user_id` of
//!   the JSON, and with one byte changed no longer verifies;
//! - error texts are short, and only `BadSignature` is forbidden.

#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hub_signature::signed_request::{SignedRequest, SignedRequestError, sign, verify};
use libfuzzer_sys::fuzz_target;
use messenger_fuzz::{fields, reference_hmac};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let parts = fields(data, 3);
    let secret = parts.first().copied().unwrap_or_default();
    let now = parts
        .get(1)
        .and_then(|n| std::str::from_utf8(n).ok())
        .and_then(|n| n.trim().parse::<i64>().ok())
        .unwrap_or(0);
    let request = String::from_utf8_lossy(parts.get(2).copied().unwrap_or_default());

    // The input as received.
    let got = verify(&request, secret, now);
    check_error(&got);
    if let Ok(verified) = &got {
        resigns_to_itself(&request, secret, verified);
    }

    // The same payload text under the signature the model computes for it.
    let payload = request.split_once('.').map_or(&*request, |(_, p)| p);
    let signature =
        URL_SAFE_NO_PAD.encode(reference_hmac::<sha2::Sha256>(secret, payload.as_bytes()));
    let good = format!("{signature}.{payload}");
    let got = verify(&good, secret, now);
    check_error(&got);
    assert_ne!(got, Err(SignedRequestError::BadSignature), "{good}");
    if let Ok(verified) = &got {
        resigns_to_itself(&good, secret, verified);

        // One byte changed (the secret's first byte picks which) never verifies.
        let mut bytes = good.clone().into_bytes();
        let i = usize::from(secret.first().copied().unwrap_or(0)) % bytes.len();
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        let changed = String::from_utf8_lossy(&bytes);
        assert!(verify(&changed, secret, now).is_err(), "{changed}");
    }
});

fn check_error(got: &Result<SignedRequest, SignedRequestError>) {
    if let Err(e) = got {
        let text = e.to_string();
        assert!(text.len() < 120, "error text too long: {text}");
        assert_eq!(e.is_forbidden(), *e == SignedRequestError::BadSignature);
    }
}

/// `request` verified as `verified`: signing its decoded payload again gives the
/// same text, the signature is the model's, and the fields are the JSON's.
fn resigns_to_itself(request: &str, secret: &[u8], verified: &SignedRequest) {
    let Some((signature, payload)) = request.split_once('.') else {
        panic!("verified without a '.': {request}");
    };
    let json = URL_SAFE_NO_PAD
        .decode(payload)
        .expect("a verified payload is base64url");
    let json = String::from_utf8(json).expect("a verified payload is UTF-8 JSON");
    let resigned = sign(&json, secret);
    let Some((resigned_signature, resigned_payload)) = resigned.split_once('.') else {
        panic!("sign gave no '.': {resigned}");
    };
    assert_eq!(resigned_signature, signature);
    assert_eq!(resigned_payload, payload);
    assert_eq!(
        URL_SAFE_NO_PAD.decode(signature).ok(),
        Some(reference_hmac::<sha2::Sha256>(secret, payload.as_bytes()))
    );

    let value: Value = serde_json::from_str(&json).expect("a verified payload is JSON");
    assert_eq!(value["algorithm"], "HMAC-SHA256");
    let user_id = match &value["user_id"] {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => panic!("verified with user_id {other}"),
    };
    assert!(!user_id.is_empty());
    assert_eq!(verified.user_id, user_id);
}
