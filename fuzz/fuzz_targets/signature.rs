//! The signature check against arbitrary headers and bodies.
//!
//! Input: `<app secret>\n<X-Hub-Signature-256>\n<X-Hub-Signature>\n<body>`, where
//! a header line that is exactly `-` means the header is absent (a missing field
//! means absent too). Checks, besides never panicking:
//! - the verdict equals that of an independent model (hand-written HMAC over the
//!   bare hashes, Meta's header syntax), class and header for class;
//! - a body signed with the secret always verifies, by sha256, and by sha1 when
//!   sha256 is absent, including with the prefix and hex in upper case and padded;
//! - the same signature over the body with one bit flipped is a mismatch.

#![no_main]

use hub_signature::{Algorithm, SignatureError, SignatureHeaders, Verifier};
use libfuzzer_sys::fuzz_target;
use messenger_fuzz::{HeaderModel, fields, model_header, reference_hmac};

fuzz_target!(|data: &[u8]| {
    let parts = fields(data, 4);
    let secret = parts.first().copied().unwrap_or_default();
    let header = |i: usize| parts.get(i).copied().filter(|h| *h != b"-");
    let headers = SignatureHeaders {
        sha256: header(1),
        sha1: header(2),
    };
    let body = parts.get(3).copied().unwrap_or_default();
    let verifier = Verifier::new(secret);

    // The verdict on what was received, against the model.
    let got = verifier.verify(headers, body);
    let sha256_mac = reference_hmac::<sha2::Sha256>(secret, body);
    let sha1_mac = reference_hmac::<sha1::Sha1>(secret, body);
    let want = match (headers.sha256, headers.sha1) {
        (Some(v), _) => Some((
            "X-Hub-Signature-256",
            Algorithm::Sha256,
            model_header(v, "sha256", &sha256_mac),
        )),
        (None, Some(v)) => Some((
            "X-Hub-Signature",
            Algorithm::Sha1,
            model_header(v, "sha1", &sha1_mac),
        )),
        (None, None) => None,
    };
    match (want, got) {
        (None, Err(SignatureError::Missing)) => {}
        (Some((_, algorithm, HeaderModel::Matches)), Ok(got)) => assert_eq!(got, algorithm),
        (Some((name, _, HeaderModel::Mismatch)), Err(SignatureError::Mismatch { header })) => {
            assert_eq!(header, name)
        }
        (
            Some((name, _, HeaderModel::Malformed)),
            Err(SignatureError::Malformed { header, .. }),
        ) => {
            assert_eq!(header, name)
        }
        (want, got) => panic!("verifier and model disagree: model {want:?}, verifier {got:?}"),
    }
    // The error's text never carries the header's digest or the body.
    if let Err(e) = got {
        let text = e.to_string();
        assert!(text.len() < 120, "error text too long: {text}");
    }

    // A correctly signed body always verifies, whatever the other header says.
    let signed = verifier.sign_sha256(body);
    assert_eq!(signed, format!("sha256={}", hex::encode(&sha256_mac)));
    let with = |sha256: Option<&[u8]>, sha1: Option<&[u8]>| {
        verifier.verify(SignatureHeaders { sha256, sha1 }, body)
    };
    assert_eq!(
        with(Some(signed.as_bytes()), headers.sha1),
        Ok(Algorithm::Sha256)
    );
    let shouted = format!(" \tSHA256={}\r\n", hex::encode_upper(&sha256_mac));
    assert_eq!(
        with(Some(shouted.as_bytes()), headers.sha1),
        Ok(Algorithm::Sha256)
    );
    let signed1 = verifier.sign_sha1(body);
    assert_eq!(signed1, format!("sha1={}", hex::encode(&sha1_mac)));
    assert_eq!(with(None, Some(signed1.as_bytes())), Ok(Algorithm::Sha1));
    // A correct sha1 never rescues a sha256 header that is there.
    if let Some(v) = headers.sha256 {
        let ok = model_header(v, "sha256", &sha256_mac) == HeaderModel::Matches;
        assert_eq!(with(Some(v), Some(signed1.as_bytes())).is_ok(), ok);
    }

    // Other bytes under the same signature are a mismatch.
    if !body.is_empty() {
        let mut other = body.to_vec();
        let i = usize::from(secret.first().copied().unwrap_or(0)) % other.len();
        other[i] ^= 1;
        let got = verifier.verify(
            SignatureHeaders {
                sha256: Some(signed.as_bytes()),
                sha1: Some(signed1.as_bytes()),
            },
            &other,
        );
        assert_eq!(
            got,
            Err(SignatureError::Mismatch {
                header: "X-Hub-Signature-256"
            })
        );
    }
});
