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

    /// Parses the ISO 8601 times machines send, fast and without allocating:
    /// `YYYY-MM-DDTHH:MM:SS[.fraction][Z|±HH:MM|±HHMM|±HH]` (`T`, `t` or a space between date
    /// and time; fractions beyond microseconds cut). Without an offset the time is UTC, as
    /// MTConnect says. None when it is not such a time.
    pub fn parse_iso8601(s: &str) -> Option<Timestamp> {
        let b = s.as_bytes();
        if b.len() < 19 {
            return None;
        }
        let num = |r: std::ops::Range<usize>| -> Option<i64> {
            let mut v = 0i64;
            for &c in b.get(r)? {
                if !c.is_ascii_digit() {
                    return None;
                }
                v = v * 10 + i64::from(c - b'0');
            }
            Some(v)
        };
        if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
            return None;
        }
        if b[13] != b':' || b[16] != b':' {
            return None;
        }
        let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if !(1..=12).contains(&month)
            || day < 1
            || day > days_in_month(year, month)
            || hour > 23
            || minute > 59
            || second > 60
        {
            return None;
        }
        let mut i = 19;
        let mut micros = 0i64;
        if b.get(i) == Some(&b'.') {
            i += 1;
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                if i - start < 6 {
                    micros = micros * 10 + i64::from(b[i] - b'0');
                }
                i += 1;
            }
            let n = i - start;
            if n == 0 {
                return None;
            }
            for _ in n..6 {
                micros *= 10;
            }
        }
        let offset_secs = match b.get(i) {
            None => 0,
            Some(b'Z' | b'z') if i + 1 == b.len() => 0,
            Some(&sign @ (b'+' | b'-')) => {
                let rest = &s[i + 1..];
                let (h, m) = match rest.len() {
                    5 if rest.as_bytes()[2] == b':' => (num(i + 1..i + 3)?, num(i + 4..i + 6)?),
                    4 => (num(i + 1..i + 3)?, num(i + 3..i + 5)?),
                    2 => (num(i + 1..i + 3)?, 0),
                    _ => return None,
                };
                if h > 23 || m > 59 {
                    return None;
                }
                let o = h * 3600 + m * 60;
                if sign == b'-' { -o } else { o }
            }
            Some(_) => return None,
        };
        let days = days_from_civil(year, month, day);
        let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
        Some(Timestamp::from_micros(secs * 1_000_000 + micros))
    }

    /// RFC 3339 in UTC with microseconds.
    pub fn to_rfc3339(self) -> String {
        // Years 0000-9999 are written by hand (every JSON record and SHDR line has times);
        // the rest by the `time` crate.
        const MAX_4_DIGIT_YEAR: i64 = 253_402_300_799_999_999; // 9999-12-31T23:59:59.999999Z
        if (0..=MAX_4_DIGIT_YEAR).contains(&(self.0 + 62_167_219_200_000_000)) {
            let secs = self.0.div_euclid(1_000_000);
            let micros = self.0.rem_euclid(1_000_000);
            let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
            let sod = secs.rem_euclid(86_400);
            let mut out = [0u8; 27];
            let mut put = |at: usize, v: i64, width: usize| {
                let mut v = v;
                for i in (at..at + width).rev() {
                    out[i] = b'0' + (v % 10) as u8;
                    v /= 10;
                }
            };
            put(0, y, 4);
            put(5, m, 2);
            put(8, d, 2);
            put(11, sod / 3600, 2);
            put(14, sod / 60 % 60, 2);
            put(17, sod % 60, 2);
            put(20, micros, 6);
            for (i, c) in [
                (4, b'-'),
                (7, b'-'),
                (10, b'T'),
                (13, b':'),
                (16, b':'),
                (19, b'.'),
                (26, b'Z'),
            ] {
                out[i] = c;
            }
            return out.iter().map(|&b| b as char).collect();
        }
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Timestamps {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Timestamp>,
    pub received: Timestamp,
    pub aligned: Timestamp,
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `time` crate's formatting, which the hand-written one must equal.
    fn reference(t: Timestamp) -> String {
        let nanos = i128::from(t.as_micros()) * 1000;
        let fmt = time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
        );
        time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
            .ok()
            .and_then(|t| t.format(&fmt).ok())
            .unwrap_or_default()
    }

    #[test]
    fn fast_formatting_equals_the_time_crate() {
        for us in [
            0,
            -1,
            1,
            951_782_400_000_000, // 2000-02-29
            1_795_622_302_123_456,
            -62_167_219_200_000_000,   // 0000-01-01
            253_402_300_799_999_999,   // 9999-12-31T23:59:59.999999
            4_102_444_800_000_000 - 1, // 2099-12-31T23:59:59.999999
        ] {
            let t = Timestamp::from_micros(us);
            assert_eq!(t.to_rfc3339(), reference(t), "{us}");
        }
    }

    proptest::proptest! {
        #[test]
        fn fast_formatting_equals_the_time_crate_anywhere(us in -62_167_219_200_000_000i64..253_402_300_799_999_999) {
            let t = Timestamp::from_micros(us);
            proptest::prop_assert_eq!(t.to_rfc3339(), reference(t));
            proptest::prop_assert_eq!(Timestamp::parse_iso8601(&t.to_rfc3339()), Some(t));
        }
    }

    #[test]
    fn rfc3339_round_trips_with_micros() {
        let t = Timestamp::parse_rfc3339("2026-11-25T13:08:46.123456Z").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-25T13:08:46.123456Z");
        let t2 = Timestamp::parse_rfc3339("2026-11-25T14:08:46.123456+01:00").unwrap();
        assert_eq!(t, t2);
        assert!(Timestamp::parse_rfc3339("yesterday").is_err());
    }
}
