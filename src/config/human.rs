//! Small parsers for the human-friendly values in the configuration file: durations like
//! `"30d"`, `"12h"`, `"1h30m"` and sizes like `"2GiB"`, `"500MB"`.
//!
//! Both return an error text that says what was expected and what was found, ready to be put
//! after a `file:line:column: key:` prefix.

use std::time::Duration;

/// The duration units, longest suffix first so that `ms` wins over `m`.
const DURATION_UNITS: [(&str, u64); 5] = [
    ("ms", 1),
    ("s", 1_000),
    ("m", 60_000),
    ("h", 3_600_000),
    ("d", 86_400_000),
];

const DURATION_EXPECTED: &str = "expected a duration: a number with a unit ms, s, m, h or d, like \"90s\", \"12h\", \"30d\" or \"1h30m\"";

/// Parses a duration such as `"90s"`, `"12h"`, `"30d"`, `"250ms"` or `"1h30m"`.
///
/// Every number needs a unit (a bare `"90"` could mean seconds or milliseconds, so it is refused).
/// Spaces between parts are allowed (`"1h 30m"`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let fail = || format!("{DURATION_EXPECTED}, found {text:?}");
    let s = text.trim();
    if s.is_empty() {
        return Err(fail());
    }
    let mut total_ms: u64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(fail());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| fail())?;
        rest = rest[digits..].trim_start();
        let unit_len = rest.bytes().take_while(|b| b.is_ascii_alphabetic()).count();
        let unit = &rest[..unit_len];
        if unit.is_empty() {
            return Err(format!(
                "{DURATION_EXPECTED}, found {text:?} (the number {number} has no unit)"
            ));
        }
        let Some((_, ms_per_unit)) = DURATION_UNITS.iter().find(|(u, _)| *u == unit) else {
            return Err(format!(
                "{DURATION_EXPECTED}, found {text:?} (unknown unit {unit:?})"
            ));
        };
        total_ms = number
            .checked_mul(*ms_per_unit)
            .and_then(|ms| total_ms.checked_add(ms))
            .ok_or_else(|| format!("duration {text:?} is too long"))?;
        rest = rest[unit_len..].trim_start();
    }
    Ok(Duration::from_millis(total_ms))
}

/// Formats a duration the way [`parse_duration`] reads it (`"30d"`, `"1h30m"`, `"250ms"`).
pub fn format_duration(d: Duration) -> String {
    let mut ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, per) in DURATION_UNITS.iter().rev() {
        let per = u128::from(*per);
        if ms >= per {
            out.push_str(&format!("{}{unit}", ms / per));
            ms %= per;
        }
    }
    out
}

/// Size units: decimal (KB = 1000) and binary (KiB = 1024), case-insensitive.
const SIZE_UNITS: [(&str, u64); 10] = [
    ("b", 1),
    ("kb", 1_000),
    ("mb", 1_000_000),
    ("gb", 1_000_000_000),
    ("tb", 1_000_000_000_000),
    ("kib", 1 << 10),
    ("mib", 1 << 20),
    ("gib", 1 << 30),
    ("tib", 1 << 40),
    ("", 1),
];

const SIZE_EXPECTED: &str = "expected a size: a whole number of bytes or a number with a unit B, KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024), like \"500MB\" or \"2GiB\"";

/// Parses a size such as `"2GiB"`, `"500MB"`, `"1.5GB"`, `"4096"` (bytes) or `"64 KiB"`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let fail = |why: &str| format!("{SIZE_EXPECTED}, found {text:?}{why}");
    let s = text.trim();
    let number_len = s
        .bytes()
        .take_while(|b| b.is_ascii_digit() || *b == b'.')
        .count();
    let (number, unit) = s.split_at(number_len);
    if number.is_empty() {
        return Err(fail(""));
    }
    let unit_lc = unit.trim().to_ascii_lowercase();
    let Some((_, multiplier)) = SIZE_UNITS.iter().find(|(u, _)| *u == unit_lc) else {
        return Err(fail(&format!(" (unknown unit {:?})", unit.trim())));
    };
    if let Ok(whole) = number.parse::<u64>() {
        return whole
            .checked_mul(*multiplier)
            .ok_or_else(|| format!("size {text:?} is too large"));
    }
    // A fraction ("1.5GB") is fine as long as it comes out as whole bytes, near enough.
    let value: f64 = number.parse().map_err(|_| fail(""))?;
    let bytes = (value * *multiplier as f64).round();
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(format!("size {text:?} is too large"));
    }
    Ok(bytes as u64)
}

/// Formats a size the way a person would write it in the file (`"2GiB"`, `"500MB"`, `"123B"`).
pub fn format_size(bytes: u64) -> String {
    for (unit, per) in [
        ("TiB", 1u64 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
        ("TB", 1_000_000_000_000),
        ("GB", 1_000_000_000),
        ("MB", 1_000_000),
        ("KB", 1_000),
    ] {
        if bytes >= per && bytes % per == 0 {
            return format!("{}{unit}", bytes / per);
        }
    }
    format!("{bytes}B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_every_unit() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("12h"), Ok(Duration::from_secs(12 * 3600)));
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86400)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration(" 1h 30m "), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("30 d"), Ok(Duration::from_secs(30 * 86400)));
    }

    #[test]
    fn bad_durations_say_what_was_expected_and_found() {
        insta::assert_snapshot!(parse_duration("90").unwrap_err(), @r#"expected a duration: a number with a unit ms, s, m, h or d, like "90s", "12h", "30d" or "1h30m", found "90" (the number 90 has no unit)"#);
        insta::assert_snapshot!(parse_duration("30 days").unwrap_err(), @r#"expected a duration: a number with a unit ms, s, m, h or d, like "90s", "12h", "30d" or "1h30m", found "30 days" (unknown unit "days")"#);
        assert!(parse_duration("").is_err());
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("-5s").is_err());
        assert!(parse_duration("1.5h").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
        assert!(parse_duration("999999999999999d").is_err());
    }

    #[test]
    fn durations_round_trip_through_format() {
        for s in ["30d", "12h", "1h30m", "250ms", "1d2h3m4s5ms"] {
            let d = parse_duration(s).unwrap();
            assert_eq!(format_duration(d), s);
        }
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn sizes_in_every_unit() {
        assert_eq!(parse_size("123"), Ok(123));
        assert_eq!(parse_size("123B"), Ok(123));
        assert_eq!(parse_size("1KB"), Ok(1_000));
        assert_eq!(parse_size("500MB"), Ok(500_000_000));
        assert_eq!(parse_size("3GB"), Ok(3_000_000_000));
        assert_eq!(parse_size("1TB"), Ok(1_000_000_000_000));
        assert_eq!(parse_size("1KiB"), Ok(1024));
        assert_eq!(parse_size("64 MiB"), Ok(64 << 20));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("1TiB"), Ok(1 << 40));
        assert_eq!(parse_size("2gib"), Ok(2 << 30));
        assert_eq!(parse_size("1.5GB"), Ok(1_500_000_000));
    }

    #[test]
    fn bad_sizes_say_what_was_expected_and_found() {
        insta::assert_snapshot!(parse_size("2 gigs").unwrap_err(), @r#"expected a size: a whole number of bytes or a number with a unit B, KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024), like "500MB" or "2GiB", found "2 gigs" (unknown unit "gigs")"#);
        assert!(parse_size("").is_err());
        assert!(parse_size("GiB").is_err());
        assert!(parse_size("-1GiB").is_err());
        assert!(parse_size("1.2.3MB").is_err());
        assert!(parse_size("99999999TiB").is_err());
    }

    #[test]
    fn sizes_round_trip_through_format() {
        for s in ["2GiB", "4GiB", "500MB", "123B", "64KiB"] {
            assert_eq!(format_size(parse_size(s).unwrap()), s);
        }
    }
}
