//! Timestamps as machine PCs write them, turned into RFC 3339.
//!
//! Accepted: RFC 3339 (`2026-11-26T10:00:00.123Z`, `2026-11-26 10:00:00+01:00`) and the naive
//! `YYYY-MM-DD HH:MM:SS[.fff]` (or with `T`), to which the configured offset is added. The date
//! and time are kept as written; only the separator becomes `T`. Nothing is converted between
//! zones, so no time-zone database is needed.

/// A fixed UTC offset, kept as its RFC 3339 text (`Z` or `±HH:MM`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offset(String);

impl Offset {
    /// UTC, written `Z`.
    pub const UTC: Offset = Offset(String::new());

    /// Parses `Z`, `UTC`, `+HH:MM`, `-HH:MM` or `+HHMM`.
    pub fn parse(text: &str) -> Option<Offset> {
        let t = text.trim();
        if t.eq_ignore_ascii_case("z") || t.eq_ignore_ascii_case("utc") {
            return Some(Offset::UTC);
        }
        let b = t.as_bytes();
        let (sign, rest) = match b.first()? {
            b'+' | b'-' => (b[0] as char, &t[1..]),
            _ => return None,
        };
        let digits: String = rest.chars().filter(|c| *c != ':').collect();
        if digits.len() != 4 || !digits.bytes().all(|d| d.is_ascii_digit()) {
            return None;
        }
        if rest.len() == 5 && rest.as_bytes()[2] != b':' {
            return None;
        }
        let (h, m) = (num(&digits[..2])?, num(&digits[2..])?);
        (h <= 23 && m <= 59).then(|| Offset(format!("{sign}{:02}:{:02}", h, m)))
    }

    fn as_str(&self) -> &str {
        if self.0.is_empty() { "Z" } else { &self.0 }
    }
}

fn num(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// What a time cell turned into.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// It carried its own offset.
    Zoned(String),
    /// It had none; the configured offset was added.
    Naive(String),
}

impl Parsed {
    /// The RFC 3339 text.
    pub fn text(&self) -> &str {
        match self {
            Parsed::Zoned(t) | Parsed::Naive(t) => t,
        }
    }
}

/// Parses a time cell; `None` if it is not a date and time this plugin understands.
pub fn parse(cell: &str, offset: &Offset) -> Option<Parsed> {
    let s = cell.trim();
    if s.len() < 19 || !s.as_bytes()[..19].is_ascii() {
        return None;
    }
    let (date, sep, time) = (&s[..10], s.as_bytes()[10], &s[11..19]);
    if !matches!(sep, b'T' | b't' | b' ') {
        return None;
    }
    let d = date.as_bytes();
    if d[4] != b'-' || d[7] != b'-' {
        return None;
    }
    let (year, month, day) = (num(&date[..4])?, num(&date[5..7])?, num(&date[8..10])?);
    let t = time.as_bytes();
    if t[2] != b':' || t[5] != b':' {
        return None;
    }
    let (h, mi, sec) = (num(&time[..2])?, num(&time[3..5])?, num(&time[6..8])?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if day == 0 || day > days_in_month || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut fraction = "";
    if let Some(r) = rest.strip_prefix(['.', ',']) {
        let n = r.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 || n > 9 {
            return None;
        }
        fraction = &r[..n];
        rest = &r[n..];
    }
    let base = if fraction.is_empty() {
        format!("{date}T{time}")
    } else {
        format!("{date}T{time}.{fraction}")
    };
    if rest.is_empty() {
        return Some(Parsed::Naive(format!("{base}{}", offset.as_str())));
    }
    let own = Offset::parse(rest)?;
    Some(Parsed::Zoned(format!("{base}{}", own.as_str())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets() {
        assert_eq!(Offset::parse("Z"), Some(Offset::UTC));
        assert_eq!(Offset::parse("+01:00").unwrap().as_str(), "+01:00");
        assert_eq!(Offset::parse("-0530").unwrap().as_str(), "-05:30");
        assert_eq!(Offset::parse("CET"), None);
        assert_eq!(Offset::parse("+25:00"), None);
        assert_eq!(Offset::parse("+1:00"), None);
    }

    #[test]
    fn rfc3339_passes_through_with_t() {
        let z = Offset::UTC;
        assert_eq!(
            parse("2026-11-26T10:00:00.123Z", &z),
            Some(Parsed::Zoned("2026-11-26T10:00:00.123Z".into()))
        );
        assert_eq!(
            parse("2026-11-26 10:00:00+01:00", &z),
            Some(Parsed::Zoned("2026-11-26T10:00:00+01:00".into()))
        );
    }

    #[test]
    fn naive_times_get_the_configured_offset() {
        let cet = Offset::parse("+01:00").unwrap();
        assert_eq!(
            parse(" 2026-11-26 10:00:00 ", &cet),
            Some(Parsed::Naive("2026-11-26T10:00:00+01:00".into()))
        );
        assert_eq!(
            parse("2026-11-26 10:00:00,5", &Offset::UTC),
            Some(Parsed::Naive("2026-11-26T10:00:00.5Z".into()))
        );
    }

    #[test]
    fn nonsense_is_refused() {
        for bad in [
            "",
            "yesterday",
            "2026-02-30 10:00:00",
            "2026-13-01 10:00:00",
            "2026-11-26 24:00:00",
            "2026-11-26/10:00:00",
            "2026-11-26 10:00:00.",
            "2026-11-26 10:00:00 CET",
            "26.11.2026 10:00:00",
            "2026-11-26 10:00:ü0",
        ] {
            assert_eq!(parse(bad, &Offset::UTC), None, "{bad:?}");
        }
        assert!(parse("2028-02-29 00:00:00", &Offset::UTC).is_some());
    }
}
