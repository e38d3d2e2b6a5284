//! Helpers shared by the fuzz targets: independent models the targets check the
//! product code against, and the SQS limits the webhook's output must respect.

use serde_json::Value;
use sha2::Digest;

/// SQS `MessageGroupId` / `MessageDeduplicationId`: 1 to 128 characters, each an
/// ASCII letter, digit or punctuation mark.
pub fn is_valid_sqs_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b.is_ascii_punctuation())
}

/// HMAC (RFC 2104) written out over the bare hash, independent of the `hmac` crate
/// the product uses. SHA-1 and SHA-256 both have 64-byte blocks.
pub fn reference_hmac<D: Digest>(key: &[u8], body: &[u8]) -> Vec<u8> {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        let digest = D::digest(key);
        k[..digest.len()].copy_from_slice(&digest);
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = D::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(body);
    let inner = inner.finalize();
    let mut outer = D::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner);
    outer.finalize().to_vec()
}

/// What a signature header should yield, by Meta's rules as MESSENGER.md §2 and
/// the verifier's docs state them: `<algorithm>=<hex>`, the algorithm name in any
/// case, hex in any case, surrounding ASCII whitespace ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderModel {
    Malformed,
    Matches,
    Mismatch,
}

pub fn model_header(value: &[u8], algorithm: &str, expected_mac: &[u8]) -> HeaderModel {
    let is_space = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'\x0c');
    let start = value
        .iter()
        .position(|b| !is_space(b))
        .unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !is_space(b))
        .map_or(start, |i| i + 1);
    let value = &value[start..end];
    let Some(eq) = value.iter().position(|&b| b == b'=') else {
        return HeaderModel::Malformed;
    };
    let (name, digest) = (&value[..eq], &value[eq + 1..]);
    if name.to_ascii_lowercase() != algorithm.as_bytes() {
        return HeaderModel::Malformed;
    }
    let Ok(digest) = hex::decode(digest) else {
        return HeaderModel::Malformed;
    };
    if digest.len() != expected_mac.len() {
        return HeaderModel::Malformed;
    }
    if digest == expected_mac {
        HeaderModel::Matches
    } else {
        HeaderModel::Mismatch
    }
}

/// JSON equality that forgives the last bits of a float: serde_json without its
/// `float_roundtrip` feature may read back a printed float one ulp off.
pub fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if x.is_f64() || y.is_f64() {
                match (x.as_f64(), y.as_f64()) {
                    (Some(x), Some(y)) => x == y || ((x - y).abs() <= 1e-12 * x.abs().max(y.abs())),
                    _ => false,
                }
            } else {
                x == y
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_eq(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

/// Splits a fuzz input into at most `n` newline-separated fields; the last one
/// keeps the rest of the input, newlines included.
pub fn fields(data: &[u8], n: usize) -> Vec<&[u8]> {
    data.splitn(n, |&b| b == b'\n').collect()
}

/// True when some object in the JSON text repeats a key. serde_json keeps the last
/// of them in a map and refuses them in a struct, so the typed model (which reads
/// an event into a map first) and routing (structs) read such an event differently.
/// Meta never repeats a key; the targets compare the two only when it is not done.
pub fn has_duplicate_keys(json: &str) -> bool {
    use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
    struct Check;
    impl<'de> DeserializeSeed<'de> for Check {
        type Value = bool;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
            d.deserialize_any(self)
        }
    }
    impl<'de> Visitor<'de> for Check {
        type Value = bool;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("JSON")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
            let mut keys = std::collections::HashSet::new();
            let mut repeated = false;
            while let Some(key) = map.next_key::<String>()? {
                repeated |= !keys.insert(key);
                repeated |= map.next_value_seed(Check)?;
            }
            Ok(repeated)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
            let mut repeated = false;
            while let Some(r) = seq.next_element_seed(Check)? {
                repeated |= r;
            }
            Ok(repeated)
        }
        fn visit_bool<E>(self, _: bool) -> Result<bool, E> {
            Ok(false)
        }
        fn visit_i64<E>(self, _: i64) -> Result<bool, E> {
            Ok(false)
        }
        fn visit_u64<E>(self, _: u64) -> Result<bool, E> {
            Ok(false)
        }
        fn visit_f64<E>(self, _: f64) -> Result<bool, E> {
            Ok(false)
        }
        fn visit_str<E>(self, _: &str) -> Result<bool, E> {
            Ok(false)
        }
        fn visit_unit<E>(self) -> Result<bool, E> {
            Ok(false)
        }
    }
    let mut de = serde_json::Deserializer::from_str(json);
    Check.deserialize(&mut de).unwrap_or(false)
}
