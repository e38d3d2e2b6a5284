//! Newtypes for the identifiers and instants that must not be mixed up.
//!
//! Meta sends ids as JSON strings, except `app_id` on echoes and a few Handover
//! Protocol payloads, which arrive as numbers (and older payloads, which other
//! frameworks still test against, send every id as a number). Every id is read by
//! [`LooseId`], whatever holds it: the id types here, the typed model's other id
//! fields and the webhook's routing; an id is always written as a string.
//!
//! Meta stamps events in milliseconds, but has sent some (referrals in particular)
//! in seconds: [`Timestamp`] reads both, once, where the event is read.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub fn new(id: impl Into<String>) -> Self {
                Self(id.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                LooseId::deserialize(deserializer).map(|id| Self(id.into_owned()))
            }
        }
    };
}

string_id!(
    /// A Facebook Page id (`entry.id`, `recipient.id` of an incoming event).
    PageId
);
string_id!(
    /// A Page-scoped user id. Only valid together with the Page that issued it.
    Psid
);
string_id!(
    /// A Meta app id (thread owners, echo senders, app roles).
    AppId
);
string_id!(
    /// The checkbox plugin's `user_ref`, standing in for a PSID until the person replies.
    UserRef
);

/// An id as Meta sends it, a JSON string or a non-negative JSON integer, read as
/// its text (borrowed from the input when it can be). The one reader of ids: a
/// number and the same digits as a string give the same id everywhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LooseId<'a>(Cow<'a, str>);

impl LooseId<'_> {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_owned(self) -> String {
        self.0.into_owned()
    }
}

impl std::ops::Deref for LooseId<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for LooseId<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(IdVisitor).map(LooseId)
    }
}

/// An optional id field of the typed model (`sender.id`, `user_ref`, `ad_id`):
/// read by [`LooseId`]; `null` is no id.
pub(crate) fn optional_id<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    Option::<LooseId<'de>>::deserialize(deserializer).map(|id| id.map(LooseId::into_owned))
}

struct IdVisitor;

impl<'de> serde::de::Visitor<'de> for IdVisitor {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an id as a string or a non-negative integer")
    }

    fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_string()))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
        if v < 0 {
            return Err(E::invalid_value(serde::de::Unexpected::Signed(v), &self));
        }
        Ok(Cow::Owned(v.to_string()))
    }
}

/// Milliseconds since the Unix epoch, as Meta stamps events. Read from JSON, a
/// time in seconds (some events carry one) is taken for the same instant in
/// milliseconds: see [`Timestamp::from_wire`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const fn from_millis(ms: i64) -> Self {
        Self(ms)
    }

    /// An event's time as Meta wrote it: milliseconds, or seconds for some events
    /// (referrals in particular). A value from 10^8 to 10^11 is seconds (March
    /// 1973 to the year 5138): as milliseconds it would be before March 1973, long
    /// before Messenger. Anything else is milliseconds. Below 10^8 a time is
    /// before 1973 whichever way it is read, and is kept as it is: so every time
    /// read lies outside the range, and reading it again gives it again.
    pub const fn from_wire(value: i64) -> Self {
        if value >= SECONDS.start && value < SECONDS.end {
            Self(value * 1000)
        } else {
            Self(value)
        }
    }

    /// The system clock, now.
    pub fn now() -> Self {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Self(ms)
    }

    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// The instant `ms` milliseconds later, saturating instead of overflowing on
    /// absurd input.
    pub const fn plus_millis(self, ms: i64) -> Self {
        Self(self.0.saturating_add(ms))
    }
}

/// The timestamps Meta sent in seconds (see [`Timestamp::from_wire`]): 10^8 s is
/// 10^11 ms, so no time read in milliseconds falls in here.
pub const SECONDS: std::ops::Range<i64> = 100_000_000..100_000_000_000;

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({}ms)", self.0)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a timestamp in milliseconds or seconds")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Timestamp, E> {
                Ok(Timestamp::from_wire(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Timestamp, E> {
                i64::try_from(v)
                    .map(Timestamp::from_wire)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(v), &self))
            }
        }
        deserializer.deserialize_i64(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_accept_numbers_and_serialise_as_strings() {
        let id: AppId = serde_json::from_str("1517776481860111").unwrap();
        assert_eq!(id.as_str(), "1517776481860111");
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"1517776481860111\"");
        let page: PageId = serde_json::from_str("\"282749490129311\"").unwrap();
        assert_eq!(page, PageId::new("282749490129311"));
    }

    #[test]
    fn one_reader_for_ids_borrows_text_and_reads_numbers_as_their_digits() {
        let text: LooseId<'_> = serde_json::from_str("\"2000000000000001\"").unwrap();
        assert!(matches!(text.0, Cow::Borrowed(_)));
        let number: LooseId<'_> = serde_json::from_str("2000000000000001").unwrap();
        assert_eq!(number, text);
        let escaped: LooseId<'_> = serde_json::from_str("\"a\\/b\"").unwrap();
        assert_eq!(escaped.as_str(), "a/b");
        for bad in ["-1", "1.5", "true", "[]", "{}", "null"] {
            assert!(serde_json::from_str::<LooseId<'_>>(bad).is_err(), "{bad}");
        }
        let psid: Psid = serde_json::from_str("2000000000000001").unwrap();
        assert_eq!(psid.as_str(), number.as_str());
    }

    #[test]
    fn timestamps_in_seconds_are_read_as_the_same_instant_in_milliseconds() {
        let read = |json: &str| serde_json::from_str::<Timestamp>(json).unwrap();
        // 2026-11-21T14:00:00Z, as Meta stamps referrals sometimes and usually.
        assert_eq!(read("1795269600"), read("1795269600000"));
        assert_eq!(read("1795269600").as_millis(), 1_795_269_600_000);
        // The boundaries: 10^11 ms and 10^8 s are both March 1973.
        assert_eq!(read("99999999999").as_millis(), 99_999_999_999_000);
        assert_eq!(read("100000000000").as_millis(), 100_000_000_000);
        assert_eq!(read("100000000").as_millis(), 100_000_000_000);
        // Before 1973 either way: left alone.
        for early in [99_999_999, 7, 1, 0, -5, i64::MIN] {
            assert_eq!(Timestamp::from_wire(early).as_millis(), early);
        }
        assert_eq!(Timestamp::from_wire(i64::MAX).as_millis(), i64::MAX);
    }

    proptest::proptest! {
        /// Found by fuzz/fuzz_targets/webhook_body.rs: `"timestamp": 1` read as
        /// 1000 ms was read again as 1000 s. A time read, written and read again
        /// is the same time.
        #[test]
        fn reading_a_time_again_gives_the_same_time(v in proptest::prop_oneof![
            proptest::prelude::any::<i64>(),
            -1_000_i64..200_000_000_000_000,
        ]) {
            let once = Timestamp::from_wire(v);
            proptest::prop_assert_eq!(Timestamp::from_wire(once.as_millis()), once);
            let json = serde_json::to_string(&once).unwrap();
            proptest::prop_assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), once);
        }
    }

    #[test]
    fn negative_ids_and_non_integer_timestamps_are_rejected() {
        assert!(serde_json::from_str::<AppId>("-1").is_err());
        assert!(serde_json::from_str::<Timestamp>("1.5").is_err());
        assert!(serde_json::from_str::<Timestamp>("\"1\"").is_err());
        assert!(serde_json::from_str::<Timestamp>("18446744073709551615").is_err());
    }
}
