use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A point in time: microseconds since the Unix epoch, UTC.
///
/// Microseconds are what MTConnect and most controls resolve; an `i64` of them spans ±292,000
/// years. Serialized as RFC 3339 text (`2026-11-25T13:08:46.123456Z`) in JSON.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const MIN: Timestamp = Timestamp(i64::MIN);
    pub const MAX: Timestamp = Timestamp(i64::MAX);

    pub const fn from_micros(us: i64) -> Self {
        Self(us)
    }
    pub const fn as_micros(self) -> i64 {
        self.0
    }
    pub fn from_millis(ms: i64) -> Self {
        Self(ms.saturating_mul(1000))
    }
    pub fn as_millis(self) -> i64 {
        self.0.div_euclid(1000)
    }

    /// Parses RFC 3339 (`2026-11-25T13:08:46Z`, `…46.123+01:00`).
    pub fn parse_rfc3339(s: &str) -> Result<Self, String> {
        let t =
            time::OffsetDateTime::parse(s.trim(), &time::format_description::well_known::Rfc3339)
                .map_err(|e| {
                format!("expected an RFC 3339 time like 2026-11-25T06:00:00Z, found {s:?}: {e}")
            })?;
        let us = t.unix_timestamp_nanos() / 1000;
        i64::try_from(us)
            .map(Self)
            .map_err(|_| format!("time {s:?} is out of range"))
    }

    /// RFC 3339 in UTC with microseconds.
    pub fn to_rfc3339(self) -> String {
        let nanos = i128::from(self.0) * 1000;
        match time::OffsetDateTime::from_unix_timestamp_nanos(nanos) {
            Ok(t) => {
                let fmt = time::macros::format_description!(
                    "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
                );
                t.format(&fmt).unwrap_or_else(|_| format!("@{}us", self.0))
            }
            Err(_) => format!("@{}us", self.0),
        }
    }

    pub fn saturating_add(self, d: Duration) -> Self {
        Self(
            self.0
                .saturating_add(i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
        )
    }
    pub fn saturating_sub(self, d: Duration) -> Self {
        Self(
            self.0
                .saturating_sub(i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
        )
    }
    /// Signed difference `self - earlier` in microseconds.
    pub fn micros_since(self, earlier: Timestamp) -> i64 {
        self.0.saturating_sub(earlier.0)
    }
    /// `self - earlier`, zero when `earlier` is later.
    pub fn duration_since(self, earlier: Timestamp) -> Duration {
        Duration::from_micros(u64::try_from(self.micros_since(earlier)).unwrap_or(0))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({})", self.to_rfc3339())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Timestamp::parse_rfc3339(&s).map_err(serde::de::Error::custom)
    }
}

/// The three times every observation carries (DESIGN section 1, normalization).
///
/// - `source`: what the machine said, if it said anything (its own clock, possibly wrong);
/// - `received`: when the bridge read it, from the bridge's clock;
/// - `aligned`: the source time corrected by the machine's estimated clock offset (or the
///   received time when the source gave none), never earlier than the machine's previous aligned
///   time. This is the time planners compare across machines and shifts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timestamps {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Timestamp>,
    pub received: Timestamp,
    pub aligned: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips_with_micros() {
        let t = Timestamp::parse_rfc3339("2026-11-25T13:08:46.123456Z").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-25T13:08:46.123456Z");
        let t2 = Timestamp::parse_rfc3339("2026-11-25T14:08:46.123456+01:00").unwrap();
        assert_eq!(t, t2);
        assert!(Timestamp::parse_rfc3339("yesterday").is_err());
    }
}
