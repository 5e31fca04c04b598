//! Streaming readers for the three MTConnect documents an agent sends: `MTConnectDevices`
//! (`/probe`), `MTConnectStreams` (`/current`, `/sample`) and `MTConnectError`.
//!
//! # How it reads
//!
//! quick-xml's pull reader walks the bytes once; there is no DOM. Element and attribute names
//! are matched by their *local* name, so any namespace prefix and any schema version reads the
//! same (`urn:mtconnect.org:MTConnectStreams:1.3` … `:2.x`). A small stack of frames says where
//! the reader is (header, device stream, `Samples`/`Events`/`Condition` section, observation,
//! data set entry), and everything outside what we read is skipped unparsed.
//!
//! Streams are the hot path (a busy agent sends tens of thousands of observations a second), so
//! [`parse_streams`] does not build a document either: it hands each observation to a
//! [`StreamsSink`] as an [`Obs`] that *borrows* from the input (attribute values are slices of
//! it unless they hold escapes) and from one reused text buffer. The sink decides what to keep;
//! the driver looks the data item id up in its own table and clones an `Arc`, so a steady stream
//! allocates only for text values.
//!
//! # Values
//!
//! - `UNAVAILABLE` (the exact text, on a sample or event) is [`Value::Unavailable`].
//! - A *clean* number is [`Value::Int`] or [`Value::Float`]: one that reads back as written
//!   (`42`, `-3.5`, `1e-3`), so `0042` or `+5` stay text and keep their spelling.
//! - Time series (`…TimeSeries` elements) keep their space-separated values as text.
//! - Data sets and tables (`…DataSet`, `…Table` elements) are written the way SHDR writes them:
//!   `key=value key2=value2`, a table row as `row={cell=1 cell2=2}`, a removed entry as
//!   `key=`, and a value holding spaces in double quotes. Profiles split that if they care.
//! - Conditions carry their level in the element name (`Normal`, `Warning`, `Fault`,
//!   `Unavailable`); their text is the message.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use quick_xml::Reader;
use quick_xml::XmlVersion;
use quick_xml::events::{BytesRef, BytesStart, Event};

use crate::drivers::{DataItemMeta, ItemCategory};
use crate::model::{ConditionLevel, Timestamp, Value};

/// Why a document could not be read.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum XmlError {
    #[error("malformed XML at byte {position}: {message}")]
    Malformed { position: u64, message: String },
    #[error("expected an {expected} document, found root element <{found}>")]
    UnexpectedRoot {
        expected: &'static str,
        found: String,
    },
    #[error("the document is empty (no root element)")]
    Empty,
    #[error("the document ended before its root element closed")]
    Truncated,
    #[error("Header attribute {attribute}: expected a whole number, found {found:?}")]
    BadHeader {
        attribute: &'static str,
        found: String,
    },
    #[error("the document has no Header {0}")]
    MissingHeader(&'static str),
    /// The agent answered with an `MTConnectError` document.
    #[error("the agent answered with an error: {}", ErrorList(.0))]
    Agent(Vec<AgentError>),
}

impl XmlError {
    /// The agent's error codes, when this is an error document.
    pub fn agent_codes(&self) -> impl Iterator<Item = &ErrorCode> {
        let list: &[AgentError] = match self {
            XmlError::Agent(v) => v,
            _ => &[],
        };
        list.iter().map(|e| &e.code)
    }

    /// True when the agent said `OUT_OF_RANGE` (a `from` that fell out of its buffer).
    pub fn is_out_of_range(&self) -> bool {
        self.agent_codes().any(|c| *c == ErrorCode::OutOfRange)
    }
}

struct ErrorList<'a>(&'a [AgentError]);

impl fmt::Display for ErrorList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// One error of an `MTConnectError` document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentError {
    pub code: ErrorCode,
    pub message: String,
}

impl fmt::Display for AgentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.message.is_empty() {
            write!(f, "{}", self.code)
        } else {
            write!(f, "{}: {}", self.code, self.message)
        }
    }
}

/// MTConnect error codes. 1.x writes them as `errorCode="OUT_OF_RANGE"`, 2.x (from 2.6 on) as
/// element names (`<OutOfRange>`); both read the same.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    OutOfRange,
    InvalidRequest,
    NoDevice,
    InvalidXPath,
    TooMany,
    AssetNotFound,
    Unsupported,
    InternalError,
    InvalidUri,
    InvalidParameterValue,
    InvalidQueryParameter,
    Other(String),
}

impl ErrorCode {
    /// Reads `OUT_OF_RANGE` or `OutOfRange` (case and underscores do not matter).
    pub fn parse(s: &str) -> Self {
        let key: String = s
            .chars()
            .filter(|c| *c != '_')
            .map(|c| c.to_ascii_uppercase())
            .collect();
        match key.as_str() {
            "OUTOFRANGE" => Self::OutOfRange,
            "INVALIDREQUEST" => Self::InvalidRequest,
            "NODEVICE" => Self::NoDevice,
            "INVALIDXPATH" => Self::InvalidXPath,
            "TOOMANY" => Self::TooMany,
            "ASSETNOTFOUND" => Self::AssetNotFound,
            "UNSUPPORTED" => Self::Unsupported,
            "INTERNALERROR" => Self::InternalError,
            "INVALIDURI" => Self::InvalidUri,
            "INVALIDPARAMETERVALUE" => Self::InvalidParameterValue,
            "INVALIDQUERYPARAMETER" => Self::InvalidQueryParameter,
            _ => Self::Other(s.to_string()),
        }
    }

    /// The 1.x spelling (`OUT_OF_RANGE`).
    pub fn as_str(&self) -> &str {
        match self {
            Self::OutOfRange => "OUT_OF_RANGE",
            Self::InvalidRequest => "INVALID_REQUEST",
            Self::NoDevice => "NO_DEVICE",
            Self::InvalidXPath => "INVALID_XPATH",
            Self::TooMany => "TOO_MANY",
            Self::AssetNotFound => "ASSET_NOT_FOUND",
            Self::Unsupported => "UNSUPPORTED",
            Self::InternalError => "INTERNAL_ERROR",
            Self::InvalidUri => "INVALID_URI",
            Self::InvalidParameterValue => "INVALID_PARAMETER_VALUE",
            Self::InvalidQueryParameter => "INVALID_QUERY_PARAMETER",
            Self::Other(s) => s,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// ---------------------------------------------------------------------------------------------
// Shared reading helpers
// ---------------------------------------------------------------------------------------------

fn reader(xml: &[u8]) -> Reader<&[u8]> {
    // No text trimming: trimming happens per value, after entity references are joined back
    // (quick-xml reports `&amp;` as its own event, and trimming each piece would eat spaces).
    Reader::from_reader(xml)
}

fn malformed(r: &Reader<&[u8]>, e: impl fmt::Display) -> XmlError {
    XmlError::Malformed {
        position: r.buffer_position(),
        message: e.to_string(),
    }
}

fn local<'e>(e: &'e BytesStart<'_>) -> &'e [u8] {
    e.local_name().into_inner()
}

/// Calls `f(local attribute name, value)` for each attribute of `e`.
fn each_attr(
    r: &Reader<&[u8]>,
    e: &BytesStart<'_>,
    mut f: impl FnMut(&[u8], Cow<'_, str>),
) -> Result<(), XmlError> {
    for a in e.attributes().with_checks(false) {
        let a = a.map_err(|err| malformed(r, err))?;
        let v = a
            .normalized_value(XmlVersion::Implicit1_0)
            .map_err(|err| malformed(r, err))?;
        f(a.key.local_name().into_inner(), v);
    }
    Ok(())
}

fn attr_of(r: &Reader<&[u8]>, e: &BytesStart<'_>, name: &[u8]) -> Result<Option<String>, XmlError> {
    let mut out = None;
    each_attr(r, e, |k, v| {
        if k == name {
            out = Some(v.into_owned());
        }
    })?;
    Ok(out)
}

/// Appends a resolved entity or character reference (`&amp;`, `&#x41;`) to `buf`.
fn push_ref(buf: &mut String, r: &BytesRef<'_>) {
    if let Ok(Some(c)) = r.resolve_char_ref() {
        buf.push(c);
        return;
    }
    match &**r {
        b"amp" => buf.push('&'),
        b"lt" => buf.push('<'),
        b"gt" => buf.push('>'),
        b"quot" => buf.push('"'),
        b"apos" => buf.push('\''),
        other => {
            // An entity we do not know: keep it as written rather than drop text.
            buf.push('&');
            buf.push_str(&String::from_utf8_lossy(other));
            buf.push(';');
        }
    }
}

fn name_str(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

// ---------------------------------------------------------------------------------------------
// MTConnectError
// ---------------------------------------------------------------------------------------------

/// Reads the rest of an `MTConnectError` document (the root's start was just read) into its
/// errors. 1.x: `<Errors><Error errorCode="OUT_OF_RANGE">message</Error></Errors>`; 2.6+:
/// `<Errors><OutOfRange><ErrorMessage>message</ErrorMessage>…</OutOfRange></Errors>`.
fn read_error_body(r: &mut Reader<&[u8]>) -> XmlError {
    struct St {
        errors: Vec<AgentError>,
        errors_depth: Option<usize>,
        current: Option<(usize, ErrorCode, String)>,
        collect_depth: Option<usize>,
    }
    fn open(r: &Reader<&[u8]>, st: &mut St, e: &BytesStart<'_>, d: usize) -> Result<(), XmlError> {
        let name = local(e);
        if name == b"Errors" && st.errors_depth.is_none() {
            st.errors_depth = Some(d);
        } else if st.current.is_none()
            && (st.errors_depth == Some(d - 1) || (name == b"Error" && st.errors_depth.is_none()))
        {
            let code = if name == b"Error" {
                attr_of(r, e, b"errorCode")?.unwrap_or_default()
            } else {
                name_str(name)
            };
            st.current = Some((d, ErrorCode::parse(&code), String::new()));
            if name == b"Error" {
                st.collect_depth = Some(d);
            }
        } else if let Some((cd, _, _)) = &st.current {
            if d == cd + 1 && name == b"ErrorMessage" {
                st.collect_depth = Some(d);
            }
        }
        Ok(())
    }
    fn close(st: &mut St, d: usize) {
        if st.collect_depth == Some(d) {
            st.collect_depth = None;
        }
        if st.current.as_ref().is_some_and(|c| c.0 == d) {
            if let Some((_, code, msg)) = st.current.take() {
                st.errors.push(AgentError {
                    code,
                    message: msg.trim().to_string(),
                });
            }
        }
        if st.errors_depth == Some(d) {
            st.errors_depth = None;
        }
    }
    let mut st = St {
        errors: Vec::new(),
        errors_depth: None,
        current: None,
        collect_depth: None,
    };
    let mut depth = 0usize;
    loop {
        let ev = match r.read_event() {
            Ok(ev) => ev,
            Err(e) => return malformed(r, e),
        };
        let res = match ev {
            Event::Start(e) => {
                depth += 1;
                open(r, &mut st, &e, depth)
            }
            Event::Empty(e) => {
                let res = open(r, &mut st, &e, depth + 1);
                close(&mut st, depth + 1);
                res
            }
            Event::End(_) => {
                if depth == 0 {
                    break; // the root closed
                }
                close(&mut st, depth);
                depth -= 1;
                Ok(())
            }
            Event::Text(t) => {
                if let (Some(_), Some((_, _, msg)), Ok(s)) =
                    (st.collect_depth, st.current.as_mut(), t.xml10_content())
                {
                    msg.push_str(&s);
                }
                Ok(())
            }
            Event::GeneralRef(g) => {
                if let (Some(_), Some((_, _, msg))) = (st.collect_depth, st.current.as_mut()) {
                    push_ref(msg, &g);
                }
                Ok(())
            }
            Event::Eof => break,
            _ => Ok(()),
        };
        if let Err(e) = res {
            return e;
        }
    }
    XmlError::Agent(st.errors)
}

/// Reads up to the root element. Returns its local name, or the agent's error for an
/// `MTConnectError` document.
fn read_root(r: &mut Reader<&[u8]>, expected: &'static str) -> Result<(), XmlError> {
    loop {
        match r.read_event().map_err(|e| malformed(r, e))? {
            Event::Start(e) => {
                let name = local(&e);
                if name == expected.as_bytes() {
                    return Ok(());
                }
                if name == b"MTConnectError" {
                    return Err(read_error_body(r));
                }
                return Err(XmlError::UnexpectedRoot {
                    expected,
                    found: name_str(name),
                });
            }
            Event::Empty(e) => {
                let name = local(&e);
                if name == b"MTConnectError" {
                    return Err(XmlError::Agent(Vec::new()));
                }
                return Err(XmlError::UnexpectedRoot {
                    expected,
                    found: name_str(name),
                });
            }
            Event::Eof => return Err(XmlError::Empty),
            _ => {}
        }
    }
}

/// Parses an `MTConnectError` document on its own (an HTTP error reply's body).
pub fn parse_error(xml: &[u8]) -> XmlError {
    let mut r = reader(xml);
    match read_root(&mut r, "MTConnectError") {
        Ok(()) => read_error_body(&mut r),
        Err(e) => e,
    }
}

// ---------------------------------------------------------------------------------------------
// MTConnectDevices
// ---------------------------------------------------------------------------------------------

/// A device of a probe document, with every data item it holds (its own and its components').
#[derive(Clone, Debug, PartialEq)]
pub struct Device {
    pub name: String,
    pub uuid: Option<String>,
    pub id: String,
    /// True for the `<Agent>` device a 2.x agent describes itself with.
    pub agent: bool,
    pub items: Vec<Arc<DataItemMeta>>,
}

enum DFrame {
    Devices,
    Device,
    Components,
    /// A component: its type and name are on `comp_stack`.
    Component,
    DataItems,
}

/// Reads a Devices document (a `/probe` reply or a Devices file).
pub fn parse_devices(xml: &[u8]) -> Result<Vec<Device>, XmlError> {
    let mut r = reader(xml);
    read_root(&mut r, "MTConnectDevices")?;
    let mut devices: Vec<Device> = Vec::new();
    let mut stack: Vec<DFrame> = Vec::new();
    // (component type, component name) of the open components, innermost last.
    let mut comp_stack: Vec<(String, Option<String>)> = Vec::new();
    loop {
        let ev = r.read_event().map_err(|e| malformed(&r, e))?;
        let (e, empty) = match ev {
            Event::Start(e) => (e, false),
            Event::Empty(e) => (e, true),
            Event::End(_) => {
                match stack.pop() {
                    None => return Ok(devices), // the root closed
                    Some(DFrame::Component) => {
                        comp_stack.pop();
                    }
                    Some(_) => {}
                }
                continue;
            }
            Event::Eof => return Err(XmlError::Truncated),
            _ => continue,
        };
        let name = local(&e);
        let frame = match (stack.last(), name) {
            (None, b"Devices") => Some(DFrame::Devices),
            (Some(DFrame::Devices), b"Device" | b"Agent") => {
                let mut d = Device {
                    name: String::new(),
                    uuid: None,
                    id: String::new(),
                    agent: name == b"Agent",
                    items: Vec::new(),
                };
                each_attr(&r, &e, |k, v| match k {
                    b"name" => d.name = v.into_owned(),
                    b"uuid" => d.uuid = Some(v.into_owned()),
                    b"id" => d.id = v.into_owned(),
                    _ => {}
                })?;
                comp_stack.clear();
                devices.push(d);
                Some(DFrame::Device)
            }
            (Some(DFrame::Device | DFrame::Component), b"Components") => Some(DFrame::Components),
            (Some(DFrame::Device | DFrame::Component), b"DataItems") => Some(DFrame::DataItems),
            (Some(DFrame::Components), _) => {
                // Any element under Components is a component; its element name is its type
                // (`Controller`, `Path`, `Rotary`…), or its `type` attribute on a generic
                // `Component` element.
                let mut ty = name_str(name);
                let generic = name == b"Component";
                let mut cname = None;
                each_attr(&r, &e, |k, v| match k {
                    b"name" => cname = Some(v.into_owned()),
                    b"type" if generic => ty = v.into_owned(),
                    _ => {}
                })?;
                comp_stack.push((ty, cname));
                Some(DFrame::Component)
            }
            (Some(DFrame::DataItems), b"DataItem") => {
                let Some(device) = devices.last_mut() else {
                    return Err(malformed(&r, "DataItem outside a Device"));
                };
                let mut m = DataItemMeta::default();
                each_attr(&r, &e, |k, v| match k {
                    b"id" => m.id = v.into_owned(),
                    b"name" => m.name = Some(v.into_owned()),
                    b"type" => m.item_type = v.into_owned(),
                    b"subType" => m.sub_type = Some(v.into_owned()),
                    b"units" => m.units = Some(v.into_owned()),
                    b"representation" => m.representation = Some(v.into_owned()),
                    b"category" => m.category = parse_category(&v),
                    _ => {}
                })?;
                match comp_stack.last() {
                    Some((ty, n)) => {
                        m.component = Some(ty.clone());
                        m.component_name = n.clone();
                    }
                    None => {
                        m.component = Some(if device.agent { "Agent" } else { "Device" }.into());
                        m.component_name = Some(device.name.clone());
                    }
                }
                device.items.push(Arc::new(m));
                None
            }
            _ => None,
        };
        match frame {
            Some(f) if !empty => stack.push(f),
            Some(DFrame::Component) => {
                comp_stack.pop();
            }
            Some(_) => {}
            None if !empty => {
                // Not ours (Description, Configuration, a DataItem's Constraints…): skip it
                // whole without looking inside.
                let end = e.to_end().into_owned();
                r.read_to_end(end.name())
                    .map_err(|err| malformed(&r, err))?;
            }
            None => {}
        }
    }
}

fn parse_category(s: &str) -> Option<ItemCategory> {
    if s.eq_ignore_ascii_case("SAMPLE") {
        Some(ItemCategory::Sample)
    } else if s.eq_ignore_ascii_case("EVENT") {
        Some(ItemCategory::Event)
    } else if s.eq_ignore_ascii_case("CONDITION") {
        Some(ItemCategory::Condition)
    } else {
        None
    }
}

// ---------------------------------------------------------------------------------------------
// MTConnectStreams
// ---------------------------------------------------------------------------------------------

/// The sequence bookkeeping of a Streams document's `Header`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamsHeader {
    /// Changes when the agent restarts; sequence numbers start over then.
    pub instance_id: u64,
    /// The oldest sequence number still in the agent's buffer.
    pub first_sequence: u64,
    /// The newest sequence number in the buffer.
    pub last_sequence: u64,
    /// Where the next request should start (`from`) to miss nothing.
    pub next_sequence: u64,
    pub buffer_size: u64,
}

/// What kind of observation an element is, by the section that holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObsKind {
    Sample,
    Event,
    /// A condition; the level is the element's name.
    Condition(ConditionLevel),
}

/// How an observation's value is laid out, read from its element name's suffix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObsLayout {
    Value,
    /// `…TimeSeries`: space-separated samples; `sample_count` says how many.
    TimeSeries,
    /// `…DataSet`: `<Entry key="…">` children, given as `key=value …`.
    DataSet,
    /// `…Table`: entries of `<Cell key="…">`, given as `row={cell=value …} …`.
    Table,
}

/// One observation as read, borrowing from the document and the parser's buffers.
#[derive(Clone, Debug, PartialEq)]
pub struct Obs<'a> {
    pub kind: ObsKind,
    pub layout: ObsLayout,
    /// The element's local name (`Execution`, `PartCount`, `Fault`, `AssetChanged`…).
    pub element: &'a str,
    pub data_item_id: &'a str,
    pub name: Option<&'a str>,
    pub sub_type: Option<&'a str>,
    /// `None` when absent or not a time.
    pub timestamp: Option<Timestamp>,
    pub sequence: Option<u64>,
    /// The value (or a condition's message), trimmed; data sets and tables as described in the
    /// module doc.
    pub text: &'a str,
    pub native_code: Option<&'a str>,
    pub native_severity: Option<&'a str>,
    pub qualifier: Option<&'a str>,
    /// A condition's `type` (`ACTUATOR`, `SYSTEM`…).
    pub condition_type: Option<&'a str>,
    /// `AssetChanged`/`AssetRemoved`: the asset's type.
    pub asset_type: Option<&'a str>,
    pub sample_count: Option<u64>,
}

impl Obs<'_> {
    /// True when the agent says it does not know this value (`UNAVAILABLE`, or a condition
    /// element `Unavailable`).
    pub fn is_unavailable(&self) -> bool {
        match self.kind {
            ObsKind::Condition(level) => level == ConditionLevel::Unavailable,
            ObsKind::Sample | ObsKind::Event => self.text == "UNAVAILABLE",
        }
    }

    /// The value as the model holds it (see the module doc for the rules).
    pub fn value(&self) -> Value {
        if self.is_unavailable() {
            return Value::Unavailable;
        }
        match self.layout {
            ObsLayout::Value => typed_value(self.text),
            ObsLayout::TimeSeries | ObsLayout::DataSet | ObsLayout::Table => Value::text(self.text),
        }
    }
}

/// `Int` or `Float` for a clean number (one that reads back as written), `Text` otherwise.
pub fn typed_value(text: &str) -> Value {
    let b = text.as_bytes();
    let first_ok = match b.first() {
        Some(b'-') => b.get(1).is_some_and(u8::is_ascii_digit),
        Some(c) => c.is_ascii_digit(),
        None => false,
    };
    if !first_ok {
        return Value::text(text);
    }
    let digits = if b[0] == b'-' { &b[1..] } else { b };
    // A leading zero is only clean alone or before a fraction (`0`, `0.5`, not `007`).
    if digits.len() > 1 && digits[0] == b'0' && digits[1].is_ascii_digit() {
        return Value::text(text);
    }
    if digits.iter().all(u8::is_ascii_digit) {
        if let Ok(i) = text.parse::<i64>() {
            return Value::Int(i);
        }
        return Value::text(text);
    }
    // Float syntax: digits [. digits] [e [+-] digits]; nothing else (no `inf`, `nan`, `1.`).
    let mut i = 0;
    while i < digits.len() && digits[i].is_ascii_digit() {
        i += 1;
    }
    if i < digits.len() && digits[i] == b'.' {
        let s = i + 1;
        i += 1;
        while i < digits.len() && digits[i].is_ascii_digit() {
            i += 1;
        }
        if i == s {
            return Value::text(text);
        }
    }
    if i < digits.len() && (digits[i] == b'e' || digits[i] == b'E') {
        i += 1;
        if i < digits.len() && (digits[i] == b'+' || digits[i] == b'-') {
            i += 1;
        }
        let s = i;
        while i < digits.len() && digits[i].is_ascii_digit() {
            i += 1;
        }
        if i == s {
            return Value::text(text);
        }
    }
    if i != digits.len() {
        return Value::text(text);
    }
    match text.parse::<f64>() {
        Ok(f) if f.is_finite() => Value::Float(f),
        _ => Value::text(text),
    }
}

/// Parses an agent timestamp. The common shape `2024-05-01T12:00:00.123456Z` is read by hand
/// (this runs once per observation); anything else goes to the RFC 3339 parser. A time without
/// a zone (some 1.x adapters) is taken as UTC, as agents do.
pub fn parse_timestamp(s: &str) -> Option<Timestamp> {
    Timestamp::parse_iso8601(s).or_else(|| Timestamp::parse_rfc3339(s).ok())
}

/// Receives what [`parse_streams`] reads, in document order.
pub trait StreamsSink {
    /// A `DeviceStream` begins; the observations that follow are its.
    fn device_stream(&mut self, name: &str, uuid: Option<&str>);
    fn observation(&mut self, obs: &Obs<'_>);
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum SFrame {
    Header,
    Streams,
    DeviceStream,
    ComponentStream,
    Section(Section),
    Obs,
    Entry,
    Cell,
    Other,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Section {
    Samples,
    Events,
    Condition,
}

/// Reusable buffers for [`parse_streams`]; keep one per stream so that a steady stream does not
/// allocate them again for every document.
#[derive(Default)]
pub struct StreamsParser {
    stack: Vec<SFrame>,
    text: String,
    entry: String,
    /// The open observation is a table (its entries are rows of cells).
    table: bool,
    /// The open data set entry is `removed="true"`.
    entry_removed: bool,
}

struct Pending<'a> {
    start: BytesStart<'a>,
    kind: ObsKind,
    layout: ObsLayout,
}

impl StreamsParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads a Streams document, handing every observation to `sink`, and returns its header.
    /// An `MTConnectError` document gives [`XmlError::Agent`]. On an error, the sink may have
    /// seen part of the document: callers discard what they collected.
    pub fn parse<S: StreamsSink>(
        &mut self,
        xml: &[u8],
        sink: &mut S,
    ) -> Result<StreamsHeader, XmlError> {
        let mut r = reader(xml);
        read_root(&mut r, "MTConnectStreams")?;
        self.stack.clear();
        self.text.clear();
        let mut header: Option<StreamsHeader> = None;
        let mut pending: Option<Pending<'_>> = None;
        loop {
            let ev = r.read_event().map_err(|e| malformed(&r, e))?;
            match ev {
                Event::Start(e) => {
                    let f = self.open(&r, &e, &mut header, &mut pending, sink)?;
                    if f == SFrame::Other {
                        let end = e.to_end().into_owned();
                        r.read_to_end(end.name())
                            .map_err(|err| malformed(&r, err))?;
                    } else {
                        self.stack.push(f);
                    }
                }
                Event::Empty(e) => {
                    let f = self.open(&r, &e, &mut header, &mut pending, sink)?;
                    if f == SFrame::Obs {
                        if let Some(p) = pending.take() {
                            self.emit(&r, &p, sink)?;
                        }
                    } else {
                        self.close(f);
                    }
                }
                Event::End(_) => match self.stack.pop() {
                    None => break,
                    Some(SFrame::Obs) => {
                        if let Some(p) = pending.take() {
                            self.emit(&r, &p, sink)?;
                        }
                    }
                    Some(f) => self.close(f),
                },
                Event::Text(t) => {
                    if self.collecting() {
                        let s = t.xml10_content().map_err(|e| malformed(&r, e))?;
                        self.buf().push_str(&s);
                    }
                }
                Event::CData(t) => {
                    if self.collecting() {
                        let s = t.xml10_content().map_err(|e| malformed(&r, e))?;
                        self.buf().push_str(&s);
                    }
                }
                Event::GeneralRef(g) => {
                    if self.collecting() {
                        push_ref(self.buf(), &g);
                    }
                }
                Event::Eof => return Err(XmlError::Truncated),
                Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::DocType(_) => {}
            }
        }
        header.ok_or(XmlError::MissingHeader("(no Header element)"))
    }

    /// Text goes to the observation buffer, or to the entry buffer inside a data set entry or
    /// table cell (whitespace between entries is not part of any value).
    fn collecting(&self) -> bool {
        match self.stack.last() {
            Some(SFrame::Obs) => true,
            Some(SFrame::Entry) => true, // a table row's own text is whitespace; trimmed away
            Some(SFrame::Cell) => true,
            _ => false,
        }
    }

    fn buf(&mut self) -> &mut String {
        match self.stack.last() {
            Some(SFrame::Entry | SFrame::Cell) => &mut self.entry,
            _ => &mut self.text,
        }
    }

    /// Classifies an opening element by where it stands, acting on what it means.
    fn open<'a, S: StreamsSink>(
        &mut self,
        r: &Reader<&'a [u8]>,
        e: &BytesStart<'a>,
        header: &mut Option<StreamsHeader>,
        pending: &mut Option<Pending<'a>>,
        sink: &mut S,
    ) -> Result<SFrame, XmlError> {
        let name = local(e);
        let f = match (self.stack.last(), name) {
            (None, b"Header") => {
                *header = Some(read_header(r, e)?);
                SFrame::Header
            }
            (None, b"Streams") => SFrame::Streams,
            (Some(SFrame::Streams), b"DeviceStream") => {
                let mut dname = String::new();
                let mut uuid = None;
                each_attr(r, e, |k, v| match k {
                    b"name" => dname = v.into_owned(),
                    b"uuid" => uuid = Some(v.into_owned()),
                    _ => {}
                })?;
                sink.device_stream(&dname, uuid.as_deref());
                SFrame::DeviceStream
            }
            (Some(SFrame::DeviceStream), b"ComponentStream") => SFrame::ComponentStream,
            (Some(SFrame::ComponentStream), b"Samples") => SFrame::Section(Section::Samples),
            (Some(SFrame::ComponentStream), b"Events") => SFrame::Section(Section::Events),
            (Some(SFrame::ComponentStream), b"Condition") => SFrame::Section(Section::Condition),
            (Some(SFrame::Section(sec)), _) => {
                let kind = match sec {
                    Section::Samples => ObsKind::Sample,
                    Section::Events => ObsKind::Event,
                    Section::Condition => {
                        let level = match name {
                            b"Normal" => ConditionLevel::Normal,
                            b"Warning" => ConditionLevel::Warning,
                            b"Fault" => ConditionLevel::Fault,
                            b"Unavailable" => ConditionLevel::Unavailable,
                            _ => return Ok(SFrame::Other),
                        };
                        ObsKind::Condition(level)
                    }
                };
                let layout = if name.ends_with(b"TimeSeries") {
                    ObsLayout::TimeSeries
                } else if name.ends_with(b"DataSet") {
                    ObsLayout::DataSet
                } else if name.ends_with(b"Table") {
                    ObsLayout::Table
                } else {
                    ObsLayout::Value
                };
                self.text.clear();
                self.table = layout == ObsLayout::Table;
                *pending = Some(Pending {
                    start: e.clone(),
                    kind,
                    layout,
                });
                SFrame::Obs
            }
            (Some(SFrame::Obs), b"Entry") => {
                self.entry.clear();
                SFrame::Entry
            }
            (Some(SFrame::Entry), b"Cell") => {
                // A table row: `row={a=1 b=2}`. Open the brace at the row's first cell.
                self.entry.clear();
                SFrame::Cell
            }
            _ => SFrame::Other,
        };
        match f {
            SFrame::Entry => {
                let mut key = String::new();
                let mut removed = false;
                each_attr(r, e, |k, v| match k {
                    b"key" => key = v.into_owned(),
                    b"removed" => removed = v.eq_ignore_ascii_case("true"),
                    _ => {}
                })?;
                if !self.text.is_empty() {
                    self.text.push(' ');
                }
                push_key(&mut self.text, &key);
                self.entry_removed = removed;
                if !removed && self.table {
                    self.text.push('{');
                }
            }
            SFrame::Cell if !self.entry_removed => {
                let mut key = String::new();
                each_attr(r, e, |k, v| {
                    if k == b"key" {
                        key = v.into_owned();
                    }
                })?;
                if !self.text.ends_with('{') {
                    self.text.push(' ');
                }
                push_key(&mut self.text, &key);
            }
            _ => {}
        }
        Ok(f)
    }

    /// Closes a non-observation frame: a data set value or a table cell lands in the text.
    fn close(&mut self, f: SFrame) {
        match f {
            SFrame::Cell if !self.entry_removed => push_value(&mut self.text, self.entry.trim()),
            SFrame::Entry => {
                if self.entry_removed {
                    // Written as `key=` already: SHDR's spelling of a removed entry.
                } else if self.table {
                    self.text.push('}');
                } else {
                    push_value(&mut self.text, self.entry.trim());
                }
                self.entry.clear();
            }
            _ => {}
        }
    }

    fn emit<S: StreamsSink>(
        &mut self,
        r: &Reader<&[u8]>,
        p: &Pending<'_>,
        sink: &mut S,
    ) -> Result<(), XmlError> {
        let element = std::str::from_utf8(local(&p.start)).map_err(|e| malformed(r, e))?;
        let mut attrs: [Option<Cow<'_, str>>; 10] = Default::default();
        for a in p.start.attributes().with_checks(false) {
            let a = a.map_err(|err| malformed(r, err))?;
            let slot = match a.key.local_name().into_inner() {
                b"dataItemId" => 0,
                b"name" => 1,
                b"subType" => 2,
                b"timestamp" => 3,
                b"sequence" => 4,
                b"nativeCode" => 5,
                b"nativeSeverity" => 6,
                b"qualifier" => 7,
                b"type" | b"assetType" => 8,
                b"sampleCount" => 9,
                _ => continue,
            };
            attrs[slot] = Some(
                a.normalized_value(XmlVersion::Implicit1_0)
                    .map_err(|err| malformed(r, err))?,
            );
        }
        let get = |i: usize| attrs[i].as_deref();
        let Some(data_item_id) = get(0) else {
            return Err(malformed(r, format!("<{element}> has no dataItemId")));
        };
        let is_condition = matches!(p.kind, ObsKind::Condition(_));
        let obs = Obs {
            kind: p.kind,
            layout: p.layout,
            element,
            data_item_id,
            name: get(1),
            sub_type: get(2),
            timestamp: get(3).and_then(parse_timestamp),
            sequence: get(4).and_then(|s| s.parse().ok()),
            text: self.text.trim(),
            native_code: get(5),
            native_severity: get(6),
            qualifier: get(7),
            condition_type: get(8).filter(|_| is_condition),
            asset_type: get(8).filter(|_| !is_condition),
            sample_count: get(9).and_then(|s| s.parse().ok()),
        };
        sink.observation(&obs);
        Ok(())
    }
}

/// Writes `key=` (keys with spaces or `=` in quotes).
fn push_key(out: &mut String, key: &str) {
    push_value(out, key);
    out.push('=');
}

/// Writes a data set value, in double quotes when it holds spaces, quotes, `=` or braces.
fn push_value(out: &mut String, v: &str) {
    if v.contains(|c: char| c.is_whitespace() || matches!(c, '"' | '=' | '{' | '}')) {
        out.push('"');
        for c in v.chars() {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
    } else {
        out.push_str(v);
    }
}

fn read_header(r: &Reader<&[u8]>, e: &BytesStart<'_>) -> Result<StreamsHeader, XmlError> {
    let mut h = StreamsHeader::default();
    let mut seen = [false; 4];
    let mut bad: Option<XmlError> = None;
    each_attr(r, e, |k, v| {
        let (slot, name, field) = match k {
            b"instanceId" => (0, "instanceId", &mut h.instance_id),
            b"firstSequence" => (1, "firstSequence", &mut h.first_sequence),
            b"lastSequence" => (2, "lastSequence", &mut h.last_sequence),
            b"nextSequence" => (3, "nextSequence", &mut h.next_sequence),
            b"bufferSize" => (4, "bufferSize", &mut h.buffer_size),
            _ => return,
        };
        match v.trim().parse::<u64>() {
            Ok(n) => {
                *field = n;
                if let Some(s) = seen.get_mut(slot) {
                    *s = true;
                }
            }
            Err(_) => {
                bad.get_or_insert(XmlError::BadHeader {
                    attribute: name,
                    found: v.into_owned(),
                });
            }
        }
    })?;
    if let Some(b) = bad {
        return Err(b);
    }
    for (i, name) in [
        "instanceId",
        "firstSequence",
        "lastSequence",
        "nextSequence",
    ]
    .into_iter()
    .enumerate()
    {
        if !seen[i] {
            return Err(XmlError::MissingHeader(name));
        }
    }
    Ok(h)
}

/// Reads a Streams document with a fresh [`StreamsParser`] (see there).
pub fn parse_streams<S: StreamsSink>(xml: &[u8], sink: &mut S) -> Result<StreamsHeader, XmlError> {
    StreamsParser::new().parse(xml, sink)
}

/// An observation with everything owned, for tests and tools that want a list.
#[derive(Clone, Debug, PartialEq)]
pub struct OwnedObs {
    /// The device stream's name.
    pub device: String,
    pub kind: ObsKind,
    pub element: String,
    pub data_item_id: String,
    pub name: Option<String>,
    pub sub_type: Option<String>,
    pub timestamp: Option<Timestamp>,
    pub sequence: Option<u64>,
    pub value: Value,
    pub text: String,
    pub native_code: Option<String>,
    pub native_severity: Option<String>,
    pub qualifier: Option<String>,
    pub asset_type: Option<String>,
    pub sample_count: Option<u64>,
}

/// A sink that keeps everything: `(header, observations)` via [`collect_streams`].
#[derive(Default)]
pub struct Collect {
    device: String,
    pub obs: Vec<OwnedObs>,
}

impl StreamsSink for Collect {
    fn device_stream(&mut self, name: &str, _uuid: Option<&str>) {
        self.device = name.to_string();
    }
    fn observation(&mut self, o: &Obs<'_>) {
        let own = |s: Option<&str>| s.map(str::to_string);
        self.obs.push(OwnedObs {
            device: self.device.clone(),
            kind: o.kind,
            element: o.element.to_string(),
            data_item_id: o.data_item_id.to_string(),
            name: own(o.name),
            sub_type: own(o.sub_type),
            timestamp: o.timestamp,
            sequence: o.sequence,
            value: o.value(),
            text: o.text.to_string(),
            native_code: own(o.native_code),
            native_severity: own(o.native_severity),
            qualifier: own(o.qualifier),
            asset_type: own(o.asset_type),
            sample_count: o.sample_count,
        });
    }
}

/// Reads a whole Streams document into owned observations.
pub fn collect_streams(xml: &[u8]) -> Result<(StreamsHeader, Vec<OwnedObs>), XmlError> {
    let mut c = Collect::default();
    let h = parse_streams(xml, &mut c)?;
    Ok((h, c.obs))
}

#[cfg(test)]
mod tests;
