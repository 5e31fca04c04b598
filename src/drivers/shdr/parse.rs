//! The SHDR line parser: bytes in, items out, no I/O (DESIGN section 4).
//!
//! SHDR is the pipe-delimited text an MTConnect *adapter* streams over TCP to an agent. This
//! parser reads it the way the reference agent (cppagent) does, and says where it is more
//! forgiving. One [`Parser`] serves one connection: it is a state machine fed one line at a
//! time (without the line end), because a multi-line asset spans many lines.
//!
//! # The grammar
//!
//! ```text
//! 2022-08-08T13:51:34.7167146Z|avail|AVAILABLE|pexecution|READY      several key|value pairs
//! 2022-08-08T13:51:34Z@60.0|Sload|12.5                                 timestamp@duration
//! |avail|AVAILABLE                                                     empty time: the receiver's
//! 2022-08-08T13:51:34Z|dev2:avail|AVAILABLE                            device-prefixed key
//! 2022-08-08T13:51:34Z|system|FAULT|2001|HIGH|HIGH|Spindle overload    condition: 5 fields
//! 2022-08-08T13:51:34Z|msg|E42|Check coolant                           message: 2 fields
//! 2022-08-08T13:51:34Z|Xts|4|100|1.0 1.1 1.2 1.3                       time series: 3 fields
//! 2022-08-08T13:51:34Z|@ASSET@|T1.1|CuttingTool|--multiline--ABCD      asset, multi-line …
//! <CuttingTool …>…</CuttingTool>
//! --multiline--ABCD                                                    … until its terminator
//! 2022-08-08T13:51:34Z|@ASSET@|T1.1|CuttingTool|<CuttingTool …/>      asset on one line
//! 2022-08-08T13:51:34Z|@REMOVE_ASSET@|T1.1
//! 2022-08-08T13:51:34Z|@REMOVE_ALL_ASSETS@|CuttingTool                 (type optional)
//! * PONG 10000                                                         protocol command
//! * uuid: 8c1b…                                                        (also `*adapterVersion:x`)
//! ```
//!
//! ## Fields
//!
//! A field is what lies between two `|`. Like cppagent, leading and trailing white space is
//! trimmed, and a field that *starts* with `"` is quoted: it ends at a `"` that is followed
//! (after optional spaces) by `|` or the end of the line, and inside it a backslash takes the
//! next character literally (`"a \"b\" \| c"` is `a "b" | c`). A quote that is not closed
//! that way leaves the field as written. Beyond cppagent, `\|` is also an escaped pipe in an
//! *unquoted* field — adapters write it, and cppagent would split there. No other backslash is
//! special outside quotes, so a Windows path such as `C:\NC\O1234.MIN` survives.
//!
//! ## The time field
//!
//! The first field is the time when it is empty (no source time: the bridge's received time
//! stands in, as the agent would use its own), or when it starts with a digit. A date-time
//! (`2022-08-08T13:51:34`, with or without fractional seconds beyond microseconds, with `Z`,
//! an offset, or nothing, which means UTC as cppagent assumes) becomes the source time. A
//! plain number is a relative time (`* relativeTime: true` adapters send milliseconds since
//! they started): it carries no wall time, so there is no source time either. A `@duration`
//! suffix (MTConnect statistics) is parsed and dropped: the raw record has no place for it,
//! and the value is the value. A first field that starts with anything else is not a time at
//! all but the first key (`avail|AVAILABLE`, `@ASSET@|…`) — forgiving adapters that omit it.
//! A first field that looks like a date but is not one yields [`ShdrError::BadTimestamp`] and
//! the line's items without a source time.
//!
//! ## Items and their shapes
//!
//! After the time come items: a key, then as many fields as its [`ItemShape`] says (one for a
//! plain value, five for a condition, two for a message, three for a time series). A key may
//! name its device (`dev2:Xact`: the device is `dev2`). Shapes come from the data items the
//! parser was given ([`Parser::with_shapes`]). For a key with no known shape the parser does
//! what real adapters make necessary: a line with *exactly one* key followed by five fields
//! whose first is a level word (`NORMAL`, `WARNING`, `FAULT`, `UNAVAILABLE`) is a condition
//! (every condition line of the Okuma OSP capture, `…|system|NORMAL||||`, is one), except
//! that `UNAVAILABLE`, which plain values say too, makes a condition only when the line could
//! not be pairs (an empty field where a key would be); anything else is key|value pairs.
//!
//! ## Values
//!
//! `UNAVAILABLE` (any case) is [`Value::Unavailable`]. A number is [`Value::Int`] or
//! [`Value::Float`] only when its text is exactly how that number prints (`42`, `-7`, `326.3`):
//! then nothing is lost and `value.to_string()` gives back the adapter's text. Anything else
//! stays [`Value::Text`] — `007`, `0.000`, `1e5`, `123456.20` (an Okuma tool asset id, which a
//! float would shorten to `123456.2`) — and normalization coerces text where a profile wants a
//! number ([`Value::as_f64`] parses text). SHDR has no booleans: `ON`/`OFF` stay text.
//!
//! A time series' values become one text of the samples separated by single spaces (`1.0 1.1
//! 1.2`), or `Unavailable`; the declared count and rate are kept on the item
//! ([`Data::TimeSeries`]), where a consumer that wants them finds them.
//!
//! ## Errors
//!
//! [`Parser::push_line`] never panics and never stops the stream: it reports what it could not
//! read as a [`ShdrError`] and hands out everything else it could. Every error names the line
//! number and, where it has one, the key.
//!
//! # Cost
//!
//! A line is split into field spans kept in a reused buffer; keys, device names and unescaped
//! values borrow from the line ([`Cow`]); only text values allocate (their `Arc<str>`), and the
//! time field is parsed by hand and cached, since lines in a burst share their time.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::drivers::ItemShape;
use crate::model::{ConditionLevel, Timestamp, Value};

/// The longest line (and the largest multi-line asset document) the parser accepts.
pub const MAX_LINE: usize = 1 << 20;

/// What could not be read. The line number is the parser's count of lines fed to it (1-based).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ShdrError {
    #[error("line {line}: {len} bytes, more than the {max}-byte limit; skipped")]
    LineTooLong { line: u64, len: usize, max: usize },
    #[error("line {line}: expected a date-time like 2022-08-08T13:51:34Z, found {found:?}")]
    BadTimestamp { line: u64, found: String },
    #[error("line {line}: key {key:?} has no value (the line ends after it)")]
    MissingValue { line: u64, key: String },
    #[error("line {line}: a value {value:?} has an empty key")]
    EmptyKey { line: u64, value: String },
    #[error(
        "line {line}: condition {key:?}: expected a level NORMAL, WARNING, FAULT or UNAVAILABLE, found {found:?}"
    )]
    BadConditionLevel {
        line: u64,
        key: String,
        found: String,
    },
    #[error("line {line}: {command}: expected {expected}")]
    BadAsset {
        line: u64,
        command: &'static str,
        expected: &'static str,
    },
    #[error(
        "line {line}: multi-line asset {asset_id:?} not terminated by {terminator:?} ({reason})"
    )]
    UnterminatedAsset {
        line: u64,
        asset_id: String,
        terminator: String,
        reason: &'static str,
    },
    #[error("line {line}: {what} is not supported; skipped")]
    Unsupported { line: u64, what: String },
}

/// One thing an SHDR line says.
#[derive(Clone, Debug, PartialEq)]
pub enum ShdrItem<'a> {
    /// A data item's value, condition, message or time series.
    Data(DataItem<'a>),
    /// `@ASSET@`, `@REMOVE_ASSET@`, `@REMOVE_ALL_ASSETS@`.
    Asset(AssetItem<'a>),
    /// A `*` line.
    Command(Command<'a>),
}

/// A data item's report.
#[derive(Clone, Debug, PartialEq)]
pub struct DataItem<'a> {
    /// The line's time; None when it had none (or only a relative one).
    pub time: Option<Timestamp>,
    /// The `dev` of `dev:key`.
    pub device: Option<&'a str>,
    pub key: &'a str,
    pub data: Data<'a>,
}

/// What a data item reported, by its shape.
#[derive(Clone, Debug, PartialEq)]
pub enum Data<'a> {
    Value(Value),
    Condition(Condition<'a>),
    /// A MESSAGE event: `native_code|text`; `text` is `Unavailable` for `UNAVAILABLE`.
    Message {
        native_code: Option<Cow<'a, str>>,
        text: Value,
    },
    /// A TIME_SERIES sample: the samples as one text (`1.0 1.1 1.2`) or `Unavailable`.
    TimeSeries {
        count: Option<u64>,
        rate: Option<f64>,
        values: Value,
    },
}

/// `level|native_code|native_severity|qualifier|message`; empty fields are None.
#[derive(Clone, Debug, PartialEq)]
pub struct Condition<'a> {
    pub level: ConditionLevel,
    pub native_code: Option<Cow<'a, str>>,
    pub native_severity: Option<Cow<'a, str>>,
    pub qualifier: Option<Cow<'a, str>>,
    pub message: Option<Cow<'a, str>>,
}

/// An asset command.
#[derive(Clone, Debug, PartialEq)]
pub enum AssetItem<'a> {
    /// Added or changed: the asset's XML as the adapter sent it (a multi-line document's lines
    /// joined with `\n`).
    Changed {
        time: Option<Timestamp>,
        id: Cow<'a, str>,
        asset_type: Option<Cow<'a, str>>,
        document: Cow<'a, str>,
    },
    Removed {
        time: Option<Timestamp>,
        id: Cow<'a, str>,
    },
    /// Every asset (of `asset_type`, when given) was removed.
    RemovedAll {
        time: Option<Timestamp>,
        asset_type: Option<Cow<'a, str>>,
    },
}

/// A protocol command (`* …` line).
#[derive(Clone, Debug, PartialEq)]
pub enum Command<'a> {
    /// `* PONG <ms>`: the adapter answers a ping and says how often it wants them.
    Pong { heartbeat: Option<Duration> },
    /// `* PING` (what a client sends; an adapter never should).
    Ping,
    /// `* name: value` (`uuid`, `manufacturer`, `device`, `shdrVersion`, …); both trimmed.
    Set { name: &'a str, value: &'a str },
}

/// A field's place in the line: `start..end` after trimming.
#[derive(Clone, Copy, Debug)]
struct Span {
    start: usize,
    end: usize,
    /// Starts and ends with a `"` that close as cppagent's tokenizer closes them.
    quoted: bool,
    /// Holds a backslash that may need unescaping.
    escaped: bool,
}

#[derive(Debug)]
struct Multiline {
    terminator: String,
    time: Option<Timestamp>,
    id: String,
    asset_type: Option<String>,
    document: String,
    started: u64,
}

/// The SHDR state machine of one connection. See the module documentation.
#[derive(Debug)]
pub struct Parser {
    shapes: HashMap<String, ItemShape, FastHash>,
    spans: Vec<Span>,
    multiline: Option<Multiline>,
    /// The last time field's text and what it parsed to (a burst of lines shares its time).
    last_time: String,
    last_parsed: Option<Option<Timestamp>>,
    empty: Arc<str>,
    line: u64,
}

impl Default for Parser {
    fn default() -> Self {
        Self::new()
    }
}

impl Parser {
    /// A parser that knows no item shapes (heuristics only).
    pub fn new() -> Self {
        Self {
            shapes: HashMap::default(),
            spans: Vec::with_capacity(64),
            multiline: None,
            last_time: String::with_capacity(40),
            last_parsed: None,
            empty: Arc::from(""),
            line: 0,
        }
    }

    /// A parser that reads the given keys by their shape (from a Devices file: conditions,
    /// messages, time series). Keys are SHDR keys without a device prefix.
    pub fn with_shapes(shapes: impl IntoIterator<Item = (String, ItemShape)>) -> Self {
        let mut p = Self::new();
        p.shapes = shapes
            .into_iter()
            .filter(|(_, s)| *s != ItemShape::Value)
            .collect();
        p
    }

    /// Lines fed so far.
    pub fn lines(&self) -> u64 {
        self.line
    }

    /// True while inside a multi-line asset.
    pub fn in_multiline(&self) -> bool {
        self.multiline.is_some()
    }

    /// Forgets a half-read multi-line asset (the connection ended); reports it if there was one.
    pub fn reset(&mut self) -> Option<ShdrError> {
        let m = self.multiline.take()?;
        Some(ShdrError::UnterminatedAsset {
            line: m.started,
            asset_id: m.id,
            terminator: m.terminator,
            reason: "the connection ended first",
        })
    }

    /// Reads one line (without its `\n`; a trailing `\r` is ignored) and appends what it says
    /// to `out`. `Err` reports what could not be read; everything that could is in `out` all
    /// the same, so the caller counts the error and goes on.
    pub fn push_line<'a>(
        &mut self,
        line: &'a str,
        out: &mut Vec<ShdrItem<'a>>,
    ) -> Result<(), ShdrError> {
        self.push_line_with(line, &mut |item| out.push(item))
    }

    /// [`Parser::push_line`] handing each item to `out` as it is read: what the driver uses,
    /// so that no line costs a `Vec`.
    pub fn push_line_with<'a>(
        &mut self,
        line: &'a str,
        out: &mut impl FnMut(ShdrItem<'a>),
    ) -> Result<(), ShdrError> {
        self.line += 1;
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.len() > MAX_LINE {
            return Err(ShdrError::LineTooLong {
                line: self.line,
                len: line.len(),
                max: MAX_LINE,
            });
        }
        if self.multiline.is_some() {
            return self.multiline_line(line, out);
        }
        let trimmed = line.trim_start();
        if let Some(cmd) = trimmed.strip_prefix('*') {
            out(ShdrItem::Command(command(cmd)));
            return Ok(());
        }
        if trimmed.is_empty() {
            return Ok(());
        }
        self.split(line);
        self.items(line, out)
    }

    fn multiline_line<'a>(
        &mut self,
        line: &'a str,
        out: &mut impl FnMut(ShdrItem<'a>),
    ) -> Result<(), ShdrError> {
        let Some(m) = self.multiline.as_mut() else {
            return Ok(());
        };
        if line.trim() == m.terminator {
            if let Some(m) = self.multiline.take() {
                out(ShdrItem::Asset(AssetItem::Changed {
                    time: m.time,
                    id: Cow::Owned(m.id),
                    asset_type: m.asset_type.map(Cow::Owned),
                    document: Cow::Owned(m.document),
                }));
            }
            return Ok(());
        }
        if m.document.len() + line.len() + 1 > MAX_LINE {
            let started = m.started;
            if let Some(m) = self.multiline.take() {
                return Err(ShdrError::UnterminatedAsset {
                    line: started,
                    asset_id: m.id,
                    terminator: m.terminator,
                    reason: "the document grew past the size limit; dropped",
                });
            }
            return Ok(());
        }
        if !m.document.is_empty() {
            m.document.push('\n');
        }
        m.document.push_str(line);
        Ok(())
    }

    /// Splits `line` into trimmed field spans (cppagent's tokenizer, plus unquoted `\|`).
    fn split(&mut self, line: &str) {
        self.spans.clear();
        let b = line.as_bytes();
        let mut pos = 0;
        loop {
            // Skip leading white space.
            let mut start = pos;
            while start < b.len() && b[start].is_ascii_whitespace() && b[start] != b'|' {
                start += 1;
            }
            let mut escaped = false;
            let mut quoted = false;
            let mut end = None;
            let mut next = None; // index of the separating '|', if any
            if b.get(start) == Some(&b'"') {
                // A quoted field: find the closing quote that is followed by `|` or the end.
                let mut i = start + 1;
                while i < b.len() {
                    match b[i] {
                        b'\\' => {
                            escaped = true;
                            i += 2;
                            continue;
                        }
                        b'|' => break,
                        b'"' => {
                            let mut j = i + 1;
                            while j < b.len() && b[j].is_ascii_whitespace() {
                                j += 1;
                            }
                            if j == b.len() || b[j] == b'|' {
                                end = Some(i + 1);
                                next = (j < b.len()).then_some(j);
                                quoted = true;
                                break;
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
                if !quoted {
                    escaped = false;
                }
            }
            if !quoted {
                // Unquoted: up to the next `|` that is not escaped as `\|`.
                let mut i = start;
                next = None;
                while i < b.len() {
                    match b[i] {
                        b'\\' if b.get(i + 1) == Some(&b'|') => {
                            escaped = true;
                            i += 2;
                            continue;
                        }
                        b'|' => {
                            next = Some(i);
                            break;
                        }
                        _ => i += 1,
                    }
                }
                let mut e = next.unwrap_or(b.len());
                while e > start && b[e - 1].is_ascii_whitespace() {
                    e -= 1;
                }
                end = Some(e);
            }
            let end = end.unwrap_or(start).max(start);
            self.spans.push(Span {
                start,
                end,
                quoted,
                escaped,
            });
            match next {
                Some(n) => pos = n + 1,
                None => break,
            }
        }
    }

    fn text<'a>(&self, line: &'a str, s: Span) -> Cow<'a, str> {
        field_text(line, s)
    }

    fn items<'a>(
        &mut self,
        line: &'a str,
        out: &mut impl FnMut(ShdrItem<'a>),
    ) -> Result<(), ShdrError> {
        let mut err = None;
        let n = self.spans.len();
        let mut i = 0;
        let mut time = None;
        // The time field.
        if let Some(first) = self.spans.first().copied() {
            let raw = &line[first.start..first.end];
            if raw.is_empty() {
                i = 1;
            } else if raw.as_bytes()[0].is_ascii_digit() {
                i = 1;
                match self.time(raw) {
                    Some(t) => time = t,
                    None => {
                        err = Some(ShdrError::BadTimestamp {
                            line: self.line,
                            found: truncate(raw, 64).to_string(),
                        })
                    }
                }
            }
        }
        let first_item = i;
        while i < n {
            let ks = self.spans[i];
            let key = &line[ks.start..ks.end];
            i += 1;
            if key.is_empty() {
                if i < n {
                    let v = self.text(line, self.spans[i]).into_owned();
                    i += 1;
                    err.get_or_insert(ShdrError::EmptyKey {
                        line: self.line,
                        value: truncate(&v, 64).to_string(),
                    });
                }
                // A trailing `|` leaves an empty last field: nothing to say.
                continue;
            }
            if key.starts_with('@') {
                // Asset commands take the rest of the line.
                if let Err(e) = self.asset(line, key, time, i, out) {
                    err.get_or_insert(e);
                }
                break;
            }
            if i == first_item + 1 && key.starts_with('*') {
                // `ts|*uuid: x`: a command behind a time field.
                out(ShdrItem::Command(command(&line[ks.start + 1..])));
                break;
            }
            // A byte scan: keys are short, and this runs for every one of them.
            let (device, key) = match key.bytes().position(|c| c == b':') {
                Some(i) => (Some(key[..i].trim_end()), key[i + 1..].trim_start()),
                None => (None, key),
            };
            let shape = if self.shapes.is_empty() {
                None
            } else {
                self.shapes.get(key).copied()
            };
            let shape = shape.unwrap_or_else(|| {
                // The heuristic: one key, then exactly five fields led by a level word. A
                // plain value can be UNAVAILABLE too (`|p1Fcmd|UNAVAILABLE|p1Fract|861.4|
                // p1Frcmd|5` in the Okuma capture), so with that word the line is a condition
                // only when it cannot be pairs: a key (fields 2 or 4) is empty.
                let is_condition = i == first_item + 1
                    && n - i == 5
                    && match ConditionLevel::parse(&line[self.spans[i].start..self.spans[i].end]) {
                        Some(ConditionLevel::Unavailable) => {
                            let empty = |k: usize| self.spans[i + k].start == self.spans[i + k].end;
                            empty(1) || empty(3)
                        }
                        Some(_) => true,
                        None => false,
                    };
                if is_condition {
                    ItemShape::Condition
                } else {
                    ItemShape::Value
                }
            });
            let want = shape.fields();
            if i >= n {
                err.get_or_insert(ShdrError::MissingValue {
                    line: self.line,
                    key: truncate(key, 64).to_string(),
                });
                break;
            }
            let have = want.min(n - i);
            let fields = &self.spans[i..i + have];
            i += have;
            let data = match shape {
                ItemShape::Value => Data::Value(self.value(self.text(line, fields[0]))),
                ItemShape::Condition => {
                    let level_text = self.text(line, fields[0]);
                    let Some(level) = ConditionLevel::parse(&level_text) else {
                        err.get_or_insert(ShdrError::BadConditionLevel {
                            line: self.line,
                            key: truncate(key, 64).to_string(),
                            found: truncate(&level_text, 64).to_string(),
                        });
                        continue;
                    };
                    let opt = |k: usize| {
                        fields
                            .get(k)
                            .map(|s| field_text(line, *s))
                            .filter(|t| !t.is_empty())
                    };
                    Data::Condition(Condition {
                        level,
                        native_code: opt(1),
                        native_severity: opt(2),
                        qualifier: opt(3),
                        message: opt(4),
                    })
                }
                ItemShape::Message => {
                    let (code, text) = match fields {
                        [text] => (None, self.text(line, *text)),
                        [code, text, ..] => (Some(self.text(line, *code)), self.text(line, *text)),
                        [] => (None, Cow::Borrowed("")),
                    };
                    Data::Message {
                        native_code: code.filter(|c| !c.is_empty()),
                        text: if is_unavailable(&text) {
                            Value::Unavailable
                        } else {
                            Value::Text(Arc::from(&*text))
                        },
                    }
                }
                ItemShape::TimeSeries => {
                    let get = |k: usize| fields.get(k).map(|s| field_text(line, *s));
                    let count = get(0).and_then(|c| c.trim().parse().ok());
                    let rate = get(1).and_then(|r| r.trim().parse().ok());
                    let raw = get(2).unwrap_or(Cow::Borrowed(""));
                    let values = if is_unavailable(&raw) {
                        Value::Unavailable
                    } else {
                        let mut s = String::with_capacity(raw.len());
                        for (k, v) in raw.split_ascii_whitespace().enumerate() {
                            if k > 0 {
                                s.push(' ');
                            }
                            s.push_str(v);
                        }
                        Value::Text(Arc::from(s))
                    };
                    Data::TimeSeries {
                        count,
                        rate,
                        values,
                    }
                }
            };
            out(ShdrItem::Data(DataItem {
                time,
                device,
                key,
                data,
            }));
        }
        match err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// `@ASSET@|id|type|doc`, `@REMOVE_ASSET@|id`, `@REMOVE_ALL_ASSETS@|type?`; `i` is the
    /// index of the field after the command.
    fn asset<'a>(
        &mut self,
        line: &'a str,
        command: &str,
        time: Option<Timestamp>,
        i: usize,
        out: &mut impl FnMut(ShdrItem<'a>),
    ) -> Result<(), ShdrError> {
        let field = |k: usize| {
            self.spans
                .get(i + k)
                .map(|s| field_text(line, *s))
                .filter(|t| !t.is_empty())
        };
        match command {
            "@ASSET@" => {
                let (Some(id), asset_type) = (field(0), field(1)) else {
                    return Err(ShdrError::BadAsset {
                        line: self.line,
                        command: "@ASSET@",
                        expected: "an asset id, a type and a document",
                    });
                };
                // The document is the rest of the line as written: XML may hold `|`.
                let Some(doc) = self.spans.get(i + 2) else {
                    return Err(ShdrError::BadAsset {
                        line: self.line,
                        command: "@ASSET@",
                        expected: "a document after the asset id and type",
                    });
                };
                let document = line[doc.start..].trim_end();
                if let Some(tag) = document.strip_prefix("--multiline--") {
                    self.multiline = Some(Multiline {
                        terminator: format!("--multiline--{}", tag.trim()),
                        time,
                        id: id.into_owned(),
                        asset_type: asset_type.map(Cow::into_owned),
                        document: String::new(),
                        started: self.line,
                    });
                    return Ok(());
                }
                out(ShdrItem::Asset(AssetItem::Changed {
                    time,
                    id,
                    asset_type,
                    document: Cow::Borrowed(document),
                }));
                Ok(())
            }
            "@REMOVE_ASSET@" => {
                let Some(id) = field(0) else {
                    return Err(ShdrError::BadAsset {
                        line: self.line,
                        command: "@REMOVE_ASSET@",
                        expected: "an asset id",
                    });
                };
                out(ShdrItem::Asset(AssetItem::Removed { time, id }));
                Ok(())
            }
            "@REMOVE_ALL_ASSETS@" => {
                out(ShdrItem::Asset(AssetItem::RemovedAll {
                    time,
                    asset_type: field(0),
                }));
                Ok(())
            }
            other => Err(ShdrError::Unsupported {
                line: self.line,
                what: format!("asset command {}", truncate(other, 64)),
            }),
        }
    }

    /// The time field: `Some(t)` when it is a time (or a relative one, `Some(None)`), None
    /// when it looked like a date and was not.
    fn time(&mut self, raw: &str) -> Option<Option<Timestamp>> {
        if let Some(p) = self.last_parsed
            && self.last_time == raw
        {
            return Some(p);
        }
        let (stamp, _duration) = match raw.bytes().position(|c| c == b'@') {
            Some(i) => (raw[..i].trim_end(), raw[i + 1..].trim().parse::<f64>().ok()),
            None => (raw, None),
        };
        let parsed = if stamp.bytes().all(|c| c.is_ascii_digit() || c == b'.') {
            // A relative time (ms since the adapter started): no wall time.
            Some(None)
        } else {
            parse_time(stamp).map(Some)
        };
        if let Some(p) = parsed {
            self.last_time.clear();
            self.last_time.push_str(raw);
            self.last_parsed = Some(p);
        }
        parsed
    }

    fn value(&self, text: Cow<'_, str>) -> Value {
        if text.is_empty() {
            return Value::Text(self.empty.clone());
        }
        if is_unavailable(&text) {
            return Value::Unavailable;
        }
        if let Some(v) = exact_number(&text) {
            return v;
        }
        Value::Text(Arc::from(&*text))
    }
}

/// A field's text: unescaped (quoted: any `\x` is `x`; unquoted: `\|` is `|`), quotes removed.
fn field_text(line: &str, s: Span) -> Cow<'_, str> {
    let raw = &line[s.start..s.end];
    if s.quoted {
        let inner = raw
            .strip_prefix('"')
            .and_then(|r| r.strip_suffix('"'))
            .unwrap_or(raw);
        if !s.escaped {
            return Cow::Borrowed(inner);
        }
        let mut out = String::with_capacity(inner.len());
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            } else {
                out.push(c);
            }
        }
        return Cow::Owned(out);
    }
    if s.escaped {
        Cow::Owned(raw.replace("\\|", "|"))
    } else {
        Cow::Borrowed(raw)
    }
}

fn is_unavailable(s: &str) -> bool {
    s.len() == 11 && s.eq_ignore_ascii_case("UNAVAILABLE")
}

/// `Int`/`Float` when `s` is exactly how that number prints; None otherwise (see module doc).
fn exact_number(s: &str) -> Option<Value> {
    let b = s.as_bytes();
    let digits = b.strip_prefix(b"-").unwrap_or(b);
    let (int, frac) = match digits.iter().position(|&c| c == b'.') {
        Some(p) => (&digits[..p], Some(&digits[p + 1..])),
        None => (digits, None),
    };
    if int.is_empty() || !int.iter().all(u8::is_ascii_digit) || (int.len() > 1 && int[0] == b'0') {
        return None;
    }
    match frac {
        None => {
            if int.len() > 18 || (b[0] == b'-' && int == b"0") {
                return None;
            }
            s.parse().ok().map(Value::Int)
        }
        Some(f) => {
            // No trailing zero, at most 15 significant digits: such a decimal is exactly what
            // the nearest f64 prints as.
            if f.is_empty() || !f.iter().all(u8::is_ascii_digit) || f.last() == Some(&b'0') {
                return None;
            }
            let significant = if int == b"0" {
                f.len() - f.iter().take_while(|&&c| c == b'0').count()
            } else {
                int.len() + f.len()
            };
            if significant > 15 {
                return None;
            }
            s.parse().ok().map(Value::Float)
        }
    }
}

/// A command line after its `*`.
fn command(body: &str) -> Command<'_> {
    let body = body.trim();
    if let Some(rest) = body.strip_prefix("PONG") {
        let heartbeat = rest
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|ms| *ms > 0)
            .map(Duration::from_millis);
        return Command::Pong { heartbeat };
    }
    if body == "PING" {
        return Command::Ping;
    }
    match body.split_once(':') {
        Some((name, value)) => Command::Set {
            name: name.trim(),
            value: value.trim(),
        },
        None => Command::Set {
            name: body,
            value: "",
        },
    }
}

/// A fast, unkeyed hash for the small maps of short keys the parser and driver look up per
/// value (FxHash's multiply-rotate, 8 bytes at a time). std's SipHash would cost more than the
/// rest of a value's parsing. Unkeyed means an adversary could pick colliding keys; the keys
/// come from a configured machine and every such map is bounded, so the worst case is slow,
/// never unbounded.
#[derive(Clone, Copy, Debug, Default)]
pub struct FastHash;

impl std::hash::BuildHasher for FastHash {
    type Hasher = FastHasher;
    fn build_hasher(&self) -> FastHasher {
        FastHasher(0)
    }
}

/// See [`FastHash`].
#[derive(Clone, Copy, Debug)]
pub struct FastHasher(u64);

impl FastHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl std::hash::Hasher for FastHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary (for error messages and logs).
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction][Z|±HH:MM|±HHMM]`, no offset meaning UTC.
fn parse_time(s: &str) -> Option<Timestamp> {
    Timestamp::parse_iso8601(s)
}

#[cfg(test)]
mod tests;
