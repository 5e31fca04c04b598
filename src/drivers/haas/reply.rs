//! Haas Machine Data Collection, bytes in and bytes out: the queries, the framing of replies
//! as controls really send them, and the parsing of each reply into keyed values. No I/O.
//!
//! A request is `?Q100` and a line end. A reply is one line:
//!
//! - over Ethernet: `>SERIAL NUMBER, 1234567` and `\r\n`; the `>` prompt is sometimes
//!   doubled (`>>`), and a reply may follow an empty line;
//! - over RS-232: the control echoes the request, then sends the data line between STX (0x02)
//!   and ETB (0x17), then `\r\n` and the `>` prompt.
//!
//! [`Framer`] takes whatever arrives and yields reply lines with all of that removed (and the
//! echo of the request skipped). [`parse`] turns a reply line into values under stable keys:
//! `Q100`, `Q104`, `Q301` …, `Q500.program` / `Q500.status` / `Q500.parts`, and `#3027` for a
//! macro variable read with `Q600 3027`. Times (`00027:50:59`) become seconds; numbers become
//! numbers; words stay words (`Q104` keeps the mode without its parentheses: `MEM`).
//!
//! Error replies (`?, ?Q105`, `UNKNOWN`, `INVALID NUMBER`) are errors for that query only.

use std::fmt;

use crate::model::Value;

/// One MDC query.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Query {
    /// Serial number.
    Q100,
    /// Control software version.
    Q101,
    /// Machine model.
    Q102,
    /// Mode (`MEM`, `MDI`, `JOG` …).
    Q104,
    /// Tool changes (total).
    Q200,
    /// Tool number in use.
    Q201,
    /// Power-on time (total).
    Q300,
    /// Motion time (total): advances only while axes move in a cycle.
    Q301,
    /// Last cycle time.
    Q303,
    /// Previous cycle time.
    Q304,
    /// M30 parts counter #1.
    Q402,
    /// M30 parts counter #2.
    Q403,
    /// Program, status and parts in one (`PROGRAM, O00110, IDLE, PARTS, 4523`), or
    /// `STATUS, BUSY` while a program runs.
    Q500,
    /// A macro or system variable (`Q600 3027`).
    Q600(u32),
}

/// The fixed queries, in the order a poll sends them (Q600 variables follow).
pub const STANDARD: [Query; 13] = [
    Query::Q500,
    Query::Q104,
    Query::Q301,
    Query::Q402,
    Query::Q403,
    Query::Q201,
    Query::Q200,
    Query::Q300,
    Query::Q303,
    Query::Q304,
    Query::Q100,
    Query::Q101,
    Query::Q102,
];

/// Keys a Q500 reply fills.
pub const Q500_PROGRAM: &str = "Q500.program";
pub const Q500_STATUS: &str = "Q500.status";
pub const Q500_PARTS: &str = "Q500.parts";

impl Query {
    /// The request's text, without the line end.
    pub fn request(self) -> String {
        match self {
            Query::Q600(var) => format!("?Q600 {var}"),
            q => format!("?{q}"),
        }
    }

    /// The keys this query's reply fills; an error reply marks the first one Bad.
    pub fn keys(self) -> Vec<String> {
        match self {
            Query::Q500 => vec![
                Q500_STATUS.to_string(),
                Q500_PROGRAM.to_string(),
                Q500_PARTS.to_string(),
            ],
            Query::Q600(var) => vec![format!("#{var}")],
            q => vec![q.to_string()],
        }
    }

    /// How the value after the reply's label reads.
    fn kind(self) -> Kind {
        match self {
            Query::Q100 | Query::Q101 | Query::Q102 => Kind::Text,
            Query::Q104 => Kind::Mode,
            Query::Q200 | Query::Q201 | Query::Q402 | Query::Q403 => Kind::Int,
            Query::Q300 | Query::Q301 | Query::Q303 | Query::Q304 => Kind::Time,
            Query::Q600(_) => Kind::Number,
            Query::Q500 => Kind::Text,
        }
    }
}

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = match self {
            Query::Q100 => 100,
            Query::Q101 => 101,
            Query::Q102 => 102,
            Query::Q104 => 104,
            Query::Q200 => 200,
            Query::Q201 => 201,
            Query::Q300 => 300,
            Query::Q301 => 301,
            Query::Q303 => 303,
            Query::Q304 => 304,
            Query::Q402 => 402,
            Query::Q403 => 403,
            Query::Q500 => 500,
            Query::Q600(var) => return write!(f, "Q600 {var}"),
        };
        write!(f, "Q{code}")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Text,
    Mode,
    Int,
    Time,
    Number,
}

/// Why a reply gave no values.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// The control answered with an error (`?, ?Q105`, `UNKNOWN`, `INVALID NUMBER`): Bad for
    /// this query's values, and polling goes on.
    #[error("the control answered {0:?}")]
    Refused(String),
    /// The reply is not what this query answers (a shape we cannot read).
    #[error("cannot read reply {reply:?} to {query}: {why}")]
    Malformed {
        query: String,
        reply: String,
        why: &'static str,
    },
}

/// Whether a reply line is one of the control's error answers.
fn refusal(line: &str) -> bool {
    let l = line.trim();
    l.starts_with('?')
        || l.eq_ignore_ascii_case("UNKNOWN")
        || l.to_ascii_uppercase().starts_with("INVALID")
}

/// `HHHHH:MM:SS` (or `H:MM:SS`, `MM:SS`) as seconds.
pub fn parse_time(s: &str) -> Option<i64> {
    let mut total: i64 = 0;
    let mut parts = 0;
    for p in s.trim().split(':') {
        let p = p.trim();
        if p.is_empty() || p.len() > 9 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let n: i64 = p.parse().ok()?;
        total = total.checked_mul(60)?.checked_add(n)?;
        parts += 1;
    }
    (2..=3).contains(&parts).then_some(total)
}

/// The values in a reply to `query`, as `(key, value)` pairs.
pub fn parse(query: Query, line: &str) -> Result<Vec<(String, Value)>, ReplyError> {
    let line = line.trim();
    if refusal(line) {
        return Err(ReplyError::Refused(line.to_string()));
    }
    let malformed = |why| ReplyError::Malformed {
        query: query.to_string(),
        reply: line.to_string(),
        why,
    };
    let fields: Vec<&str> = line.split(',').map(str::trim).collect();
    if query == Query::Q500 {
        return parse_q500(&fields).ok_or_else(|| {
            malformed("expected PROGRAM, <name>, <status>, PARTS, <n> or STATUS, <status>")
        });
    }
    // `LABEL, value`; Q600 may also answer `MACRO, <var>, <value>`: the value is last.
    let value = match fields.as_slice() {
        [_, .., v] if fields.len() >= 2 => *v,
        _ => return Err(malformed("expected `label, value`")),
    };
    let key = query.keys().remove(0);
    let v = match query.kind() {
        Kind::Text => Value::text(value),
        Kind::Mode => Value::text(value.trim_start_matches('(').trim_end_matches(')').trim()),
        Kind::Int => Value::Int(
            value
                .parse::<i64>()
                .map_err(|_| malformed("expected a whole number"))?,
        ),
        Kind::Time => Value::Int(
            parse_time(value).ok_or_else(|| malformed("expected a time like 00027:50:59"))?,
        ),
        Kind::Number => {
            let x: f64 = value.parse().map_err(|_| malformed("expected a number"))?;
            if !x.is_finite() {
                return Err(malformed("expected a finite number"));
            }
            Value::Float(x)
        }
    };
    Ok(vec![(key, v)])
}

fn parse_q500(fields: &[&str]) -> Option<Vec<(String, Value)>> {
    let label = fields.first()?;
    // Some controls leave the comma out: `STATUS BUSY`.
    if let Some(status) = label
        .strip_prefix("STATUS ")
        .or_else(|| label.strip_prefix("status "))
        .map(str::trim)
        .filter(|s| fields.len() == 1 && !s.is_empty())
    {
        return Some(vec![(Q500_STATUS.to_string(), Value::text(status))]);
    }
    if label.eq_ignore_ascii_case("STATUS") {
        let status = fields.get(1).filter(|s| !s.is_empty())?;
        return Some(vec![(Q500_STATUS.to_string(), Value::text(status))]);
    }
    if !label.eq_ignore_ascii_case("PROGRAM") {
        return None;
    }
    let program = fields.get(1).filter(|s| !s.is_empty())?;
    let status = fields.get(2).filter(|s| !s.is_empty())?;
    let mut out = vec![
        (Q500_PROGRAM.to_string(), Value::text(program)),
        (Q500_STATUS.to_string(), Value::text(status)),
    ];
    if fields
        .get(3)
        .is_some_and(|l| l.eq_ignore_ascii_case("PARTS"))
    {
        let parts = fields.get(4)?.parse::<i64>().ok()?;
        out.push((Q500_PARTS.to_string(), Value::Int(parts)));
    }
    Some(out)
}

/// Longest reply line kept; a control that never ends its line is cut here (and the rest of
/// the line is skipped), so a stuck or noisy port cannot grow memory.
pub const MAX_LINE: usize = 1024;

const STX: u8 = 0x02;
const ETB: u8 = 0x17;

/// Finds reply lines in what a control sends, over Ethernet or RS-232.
#[derive(Debug, Default)]
pub struct Framer {
    buf: Vec<u8>,
    /// A line longer than [`MAX_LINE`] is being skipped up to its end.
    skipping: bool,
    /// Lines cut for being too long.
    pub overlong: u64,
}

impl Framer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets anything half-received (before a new request).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.skipping = false;
    }

    /// Adds bytes as they arrived.
    pub fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.skipping {
                if b == b'\n' || b == ETB {
                    self.skipping = false;
                }
                continue;
            }
            if self.buf.len() >= MAX_LINE && b != b'\n' && b != ETB {
                self.buf.clear();
                self.skipping = true;
                self.overlong += 1;
                continue;
            }
            self.buf.push(b);
        }
    }

    /// The next reply line to `request` (its echo skipped), if one is complete.
    pub fn next_reply(&mut self, request: &str) -> Option<String> {
        loop {
            // A line ends at LF, or at ETB (serial data lines; the CR LF after it is then an
            // empty line, skipped).
            let end = self.buf.iter().position(|&b| b == b'\n' || b == ETB)?;
            let raw: Vec<u8> = self.buf.drain(..=end).collect();
            let text: String = raw
                .iter()
                .filter(|&&b| b != STX && b != ETB && b >= 0x20 && b != 0x7f)
                .map(|&b| if b.is_ascii() { b as char } else { '?' })
                .collect();
            let text = text.trim().trim_start_matches('>').trim();
            if text.is_empty() || text.eq_ignore_ascii_case(request.trim()) {
                continue;
            }
            return Some(text.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(q: Query, line: &str) -> Vec<(String, Value)> {
        parse(q, line).unwrap()
    }

    #[test]
    fn replies_become_keyed_values() {
        assert_eq!(
            one(Query::Q100, "SERIAL NUMBER, 1234567"),
            vec![("Q100".into(), Value::text("1234567"))]
        );
        assert_eq!(
            one(Query::Q101, "SOFTWARE VERSION, 100.17.000.2037"),
            vec![("Q101".into(), Value::text("100.17.000.2037"))]
        );
        assert_eq!(
            one(Query::Q104, "MODE, (MEM)"),
            vec![("Q104".into(), Value::text("MEM"))]
        );
        assert_eq!(
            one(Query::Q104, "MODE, (ZERO RET)"),
            vec![("Q104".into(), Value::text("ZERO RET"))]
        );
        assert_eq!(
            one(Query::Q300, "P.O. TIME, 00027:50:59"),
            vec![("Q300".into(), Value::Int(27 * 3600 + 50 * 60 + 59))]
        );
        assert_eq!(
            one(Query::Q303, "LAST CYCLE, 000:00:42"),
            vec![("Q303".into(), Value::Int(42))]
        );
        assert_eq!(
            one(Query::Q402, "M30 #1, 553"),
            vec![("Q402".into(), Value::Int(553))]
        );
        assert_eq!(
            one(Query::Q600(3027), "MACRO, 4500.000000"),
            vec![("#3027".into(), Value::Float(4500.0))]
        );
        assert_eq!(
            one(Query::Q600(5021), "MACRO, 5021, -12.5"),
            vec![("#5021".into(), Value::Float(-12.5))]
        );
    }

    #[test]
    fn q500_has_two_shapes() {
        assert_eq!(
            one(Query::Q500, "PROGRAM, O00110, IDLE, PARTS, 4523"),
            vec![
                (Q500_PROGRAM.into(), Value::text("O00110")),
                (Q500_STATUS.into(), Value::text("IDLE")),
                (Q500_PARTS.into(), Value::Int(4523)),
            ]
        );
        assert_eq!(
            one(Query::Q500, "PROGRAM, MDI, ALARM ON, PARTS, 380"),
            vec![
                (Q500_PROGRAM.into(), Value::text("MDI")),
                (Q500_STATUS.into(), Value::text("ALARM ON")),
                (Q500_PARTS.into(), Value::Int(380)),
            ]
        );
        assert_eq!(
            one(Query::Q500, "STATUS, BUSY"),
            vec![(Q500_STATUS.into(), Value::text("BUSY"))]
        );
        assert_eq!(
            one(Query::Q500, "STATUS BUSY"),
            vec![(Q500_STATUS.into(), Value::text("BUSY"))]
        );
        assert!(matches!(
            parse(Query::Q500, "PARTS, 12"),
            Err(ReplyError::Malformed { .. })
        ));
    }

    #[test]
    fn error_replies_are_refusals_of_that_query() {
        for line in [
            "?, ?Q105",
            "?, BAD VARIABLE NUMBER",
            "UNKNOWN",
            "INVALID NUMBER",
            "?",
        ] {
            assert!(
                matches!(parse(Query::Q600(99999), line), Err(ReplyError::Refused(_))),
                "{line}"
            );
        }
        let e = parse(Query::Q300, "P.O. TIME, soon").unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot read reply \"P.O. TIME, soon\" to Q300: expected a time like 00027:50:59"
        );
    }

    #[test]
    fn times_read_as_seconds() {
        assert_eq!(parse_time("00027:50:59"), Some(100_259));
        assert_eq!(parse_time("0:00:01"), Some(1));
        assert_eq!(parse_time("12:30"), Some(750));
        assert_eq!(parse_time("12"), None);
        assert_eq!(parse_time("1:2:3:4"), None);
        assert_eq!(parse_time("a:00:00"), None);
    }

    #[test]
    fn ethernet_framing_with_doubled_prompts() {
        let mut f = Framer::new();
        f.push(b">>SERIAL NUMBER, 1234");
        assert_eq!(f.next_reply("?Q100"), None);
        f.push(b"567\r\n");
        assert_eq!(
            f.next_reply("?Q100").as_deref(),
            Some("SERIAL NUMBER, 1234567")
        );
        f.push(b"\r\n>PROGRAM, O00110, IDLE, PARTS, 4523\r\n");
        assert_eq!(
            f.next_reply("?Q500").as_deref(),
            Some("PROGRAM, O00110, IDLE, PARTS, 4523")
        );
        assert_eq!(f.next_reply("?Q500"), None);
    }

    #[test]
    fn serial_framing_skips_the_echo_and_unwraps_stx_etb() {
        let mut f = Framer::new();
        f.push(b"?Q500\r\n\x02PROGRAM, O00110, BUSY, PARTS, 7\x17\r\n>");
        assert_eq!(
            f.next_reply("?Q500").as_deref(),
            Some("PROGRAM, O00110, BUSY, PARTS, 7")
        );
        // The prompt that followed is not a reply; the next reply arrives after it.
        f.push(b"?Q104\r\n\x02MODE, (MDI)\x17\r\n>");
        assert_eq!(f.next_reply("?Q104").as_deref(), Some("MODE, (MDI)"));
    }

    #[test]
    fn an_endless_line_is_cut_not_kept() {
        let mut f = Framer::new();
        f.push(&vec![b'x'; MAX_LINE * 3]);
        assert!(f.buf.len() <= MAX_LINE);
        f.push(b"tail\r\n>MODE, (JOG)\r\n");
        assert_eq!(f.next_reply("?Q104").as_deref(), Some("MODE, (JOG)"));
        assert_eq!(f.overlong, 1);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn queries() -> impl Strategy<Value = Query> {
            prop_oneof![
                proptest::sample::select(STANDARD.to_vec()),
                (0u32..200_000).prop_map(Query::Q600),
            ]
        }

        proptest! {
            #[test]
            fn parsing_never_panics(q in queries(), line in ".{0,200}") {
                let _ = parse(q, &line);
            }

            #[test]
            fn framing_never_panics_and_stays_bounded(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..20)) {
                let mut f = Framer::new();
                for c in &chunks {
                    f.push(c);
                    while let Some(line) = f.next_reply("?Q500") {
                        prop_assert!(line.len() <= MAX_LINE);
                        let _ = parse(Query::Q500, &line);
                    }
                    prop_assert!(f.buf.len() <= MAX_LINE + 1);
                }
            }

            #[test]
            fn a_reply_survives_any_split(parts in 0i64..1_000_000, split in 0usize..60, doubled in any::<bool>(), serial in any::<bool>()) {
                let body = format!("PROGRAM, O{:05}, IDLE, PARTS, {parts}", parts % 100_000);
                let bytes = if serial {
                    format!("?Q500\r\n\x02{body}\x17\r\n>").into_bytes()
                } else {
                    format!("{}{body}\r\n", if doubled { ">>" } else { ">" }).into_bytes()
                };
                let at = split.min(bytes.len());
                let mut f = Framer::new();
                f.push(&bytes[..at]);
                let first = f.next_reply("?Q500");
                f.push(&bytes[at..]);
                let got = first.or_else(|| f.next_reply("?Q500"));
                prop_assert_eq!(got.as_deref(), Some(body.as_str()));
                let vals = parse(Query::Q500, &body).unwrap();
                prop_assert_eq!(&vals[2].1, &Value::Int(parts));
            }

            #[test]
            fn times_round_trip(h in 0i64..99_999, m in 0i64..60, s in 0i64..60) {
                prop_assert_eq!(parse_time(&format!("{h:05}:{m:02}:{s:02}")), Some(h * 3600 + m * 60 + s));
            }
        }
    }
}
