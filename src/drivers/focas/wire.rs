//! The FOCAS/Ethernet wire format, bytes in and bytes out: no I/O, so that the driver, the
//! simulator's FOCAS face and the tests share one codec.
//!
//! # Packets
//!
//! Every packet, in both directions, is a 10-byte header and a body, big-endian throughout:
//!
//! ```text
//! A0 A0 A0 A0 | version u16 | type u16 | length u16 (bytes of body) | body
//! ```
//!
//! The client sends version 1, the control answers with 2. Types: open `0x0101` → `0x0102`,
//! close `0x0201` → `0x0202`, request `0x2101` → response `0x2102`.
//!
//! A request body is a count u16 and that many sub-requests; each is its length u16
//! (including those two bytes: `0x1C` for a plain one), device u16 (1 CNC, 2 PMC), function
//! u32 (`00 01 00 XX`), five i32 arguments and optional extra bytes. The response body holds
//! the same count of sub-responses, in order: length u16 (including itself), device u16,
//! function u32, error i16 (0 = ok, else a FOCAS `EW_` code), four filler bytes, data length
//! u16, data. Several sub-requests in one packet are one round trip: the driver asks for a
//! whole poll at once.
//!
//! # Where the layouts come from
//!
//! The framing, open/close, `cnc_sysinfo` (0x18), `cnc_statinfo` (0x19) and `cnc_rdmacro`
//! (0x15, scaled integers) are as documented by the public, reverse-engineered notes (the
//! `pyfocas` README and source, `pyfanuc`'s protocol notes) and are checked here against
//! `pyfocas` as an independent client (`tests/focas_driver.rs`). Program numbers (0x1C),
//! parameters (0x0E), alarm status (0x1A), alarm messages (0x23) and the main program's path
//! name (0xB9) are our reading of the FOCAS library's structs (`ODBPRO`, `IODBPSD`, `ODBALMMSG`)
//! laid out the same way, and have not been checked against a control yet.

use std::fmt;

/// Every packet starts with these four bytes.
pub const SYNC: [u8; 4] = [0xA0; 4];
/// Sync, version, type and length.
pub const HEADER_LEN: usize = 10;
/// A body longer than this is not a FOCAS answer this driver asked for: the stream is out of
/// step (or not FOCAS at all), and the link is dropped.
pub const MAX_BODY: usize = 32 * 1024;

/// The version word a client sends, and the one a control answers with.
pub const VERSION_CLIENT: u16 = 1;
pub const VERSION_CONTROL: u16 = 2;

pub const OPEN_REQUEST: u16 = 0x0101;
pub const OPEN_RESPONSE: u16 = 0x0102;
pub const CLOSE_REQUEST: u16 = 0x0201;
pub const CLOSE_RESPONSE: u16 = 0x0202;
pub const REQUEST: u16 = 0x2101;
pub const RESPONSE: u16 = 0x2102;

/// The CNC (as opposed to the PMC, 2).
pub const DEVICE_CNC: u16 = 1;

/// Function codes (the last byte of `00 01 00 XX`).
pub mod func {
    pub const PARAM: u16 = 0x0E;
    pub const MACRO: u16 = 0x15;
    pub const SYSINFO: u16 = 0x18;
    pub const STATINFO: u16 = 0x19;
    pub const ALARM_STATUS: u16 = 0x1A;
    pub const PROGRAM_NUMBER: u16 = 0x1C;
    pub const ALARM_MESSAGES: u16 = 0x23;
    pub const WRITE_MACRO: u16 = 0xA8;
    pub const PROGRAM_NAME: u16 = 0xB9;

    /// The function's u32 on the wire (`00 01 00 XX`).
    pub const fn wire(code: u16) -> u32 {
        0x0001_0000 | code as u32
    }
}

/// FOCAS `EW_` return codes a control puts in a sub-response.
pub mod ew {
    pub const OK: i16 = 0;
    pub const FUNC: i16 = 1;
    pub const LENGTH: i16 = 2;
    pub const NUMBER: i16 = 3;
    pub const ATTRIB: i16 = 4;
    pub const DATA: i16 = 5;
    pub const NOOPT: i16 = 6;

    /// `EW_NUMBER (3)`.
    pub fn name(code: i16) -> String {
        let n = match code {
            -1 => "EW_BUSY",
            1 => "EW_FUNC",
            2 => "EW_LENGTH",
            3 => "EW_NUMBER",
            4 => "EW_ATTRIB",
            5 => "EW_DATA",
            6 => "EW_NOOPT",
            7 => "EW_PROT",
            8 => "EW_OVRFLOW",
            9 => "EW_PARAM",
            10 => "EW_BUFFER",
            11 => "EW_PATH",
            12 => "EW_MODE",
            13 => "EW_REJECT",
            14 => "EW_DTSRVR",
            15 => "EW_ALARM",
            16 => "EW_STOP",
            17 => "EW_PASSWD",
            _ => "EW_?",
        };
        format!("{n} ({code})")
    }
}

/// What was wrong with bytes from the other side.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("packet body of {0} bytes announced, more than the {MAX_BODY} accepted")]
    Oversize(usize),
    #[error("{what}: expected at least {need} bytes, found {found}")]
    Short {
        what: &'static str,
        need: usize,
        found: usize,
    },
    #[error("{what}: {why}")]
    Malformed { what: &'static str, why: String },
}

fn short(what: &'static str, need: usize, found: usize) -> WireError {
    WireError::Short { what, need, found }
}

/// One packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub version: u16,
    pub kind: u16,
    pub body: Vec<u8>,
}

impl Packet {
    pub fn new(version: u16, kind: u16, body: Vec<u8>) -> Self {
        Self {
            version,
            kind,
            body,
        }
    }

    /// The packet as sent. A body over 65535 bytes is cut to fit the length field (nothing
    /// here builds one that large).
    pub fn encode(&self) -> Vec<u8> {
        let len = self.body.len().min(usize::from(u16::MAX));
        let mut out = Vec::with_capacity(HEADER_LEN + len);
        out.extend_from_slice(&SYNC);
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(&self.kind.to_be_bytes());
        out.extend_from_slice(&(len as u16).to_be_bytes());
        out.extend_from_slice(&self.body[..len]);
        out
    }
}

/// The name of a packet type, for error messages.
pub fn kind_name(kind: u16) -> String {
    match kind {
        OPEN_REQUEST => "open request (0x0101)".into(),
        OPEN_RESPONSE => "open response (0x0102)".into(),
        CLOSE_REQUEST => "close request (0x0201)".into(),
        CLOSE_RESPONSE => "close response (0x0202)".into(),
        REQUEST => "request (0x2101)".into(),
        RESPONSE => "response (0x2102)".into(),
        k => format!("unknown packet type 0x{k:04X}"),
    }
}

/// Cuts a byte stream into packets: partial reads wait for more, bytes before a sync are
/// skipped (and counted), a length over [`MAX_BODY`] is an error.
#[derive(Debug, Default)]
pub struct Framer {
    buf: Vec<u8>,
    skipped: usize,
}

impl Framer {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    pub fn clear(&mut self) {
        self.buf.clear();
        self.skipped = 0;
    }

    /// Bytes skipped looking for a sync since the last call.
    pub fn take_skipped(&mut self) -> usize {
        std::mem::take(&mut self.skipped)
    }

    /// Bytes held, not yet a whole packet.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// The next whole packet, if there is one.
    pub fn next_packet(&mut self) -> Result<Option<Packet>, WireError> {
        // Find the sync; keep a partial sync at the end for the next read.
        let start = match self.buf.windows(4).position(|w| w == SYNC) {
            Some(i) => i,
            None => {
                let keep = self
                    .buf
                    .iter()
                    .rev()
                    .take(3)
                    .take_while(|b| **b == 0xA0)
                    .count();
                let drop = self.buf.len() - keep;
                self.skipped += drop;
                self.buf.drain(..drop);
                return Ok(None);
            }
        };
        // A run of more than four A0s (garbage ending in A0 before a sync): the packet starts
        // at the last four, since a version word is never A0 A0.
        let mut start = start;
        while self.buf.get(start + 4) == Some(&0xA0) {
            start += 1;
        }
        if start > 0 {
            self.skipped += start;
            self.buf.drain(..start);
        }
        if self.buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let version = u16::from_be_bytes([self.buf[4], self.buf[5]]);
        let kind = u16::from_be_bytes([self.buf[6], self.buf[7]]);
        let len = usize::from(u16::from_be_bytes([self.buf[8], self.buf[9]]));
        if len > MAX_BODY {
            // Drop the sync so that a caller that goes on does not see the same error again.
            self.buf.drain(..4);
            return Err(WireError::Oversize(len));
        }
        if self.buf.len() < HEADER_LEN + len {
            return Ok(None);
        }
        let body = self.buf[HEADER_LEN..HEADER_LEN + len].to_vec();
        self.buf.drain(..HEADER_LEN + len);
        Ok(Some(Packet {
            version,
            kind,
            body,
        }))
    }
}

/// One sub-request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubRequest {
    pub device: u16,
    /// As on the wire (`0x0001_0019`); see [`func::wire`].
    pub function: u32,
    pub args: [i32; 5],
    pub extra: Vec<u8>,
}

impl SubRequest {
    /// A CNC function with its arguments (the rest zero).
    pub fn cnc(code: u16, args: &[i32]) -> Self {
        let mut a = [0i32; 5];
        for (slot, v) in a.iter_mut().zip(args) {
            *slot = *v;
        }
        Self {
            device: DEVICE_CNC,
            function: func::wire(code),
            args: a,
            extra: Vec::new(),
        }
    }

    /// The function code (`0x19`).
    pub fn code(&self) -> u16 {
        (self.function & 0xFFFF) as u16
    }
}

/// One sub-response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubResponse {
    pub device: u16,
    pub function: u32,
    /// 0, or a FOCAS `EW_` code.
    pub error: i16,
    pub data: Vec<u8>,
}

impl SubResponse {
    pub fn ok(req: &SubRequest, data: Vec<u8>) -> Self {
        Self {
            device: req.device,
            function: req.function,
            error: ew::OK,
            data,
        }
    }

    pub fn error(req: &SubRequest, error: i16) -> Self {
        Self {
            device: req.device,
            function: req.function,
            error,
            data: Vec::new(),
        }
    }

    pub fn code(&self) -> u16 {
        (self.function & 0xFFFF) as u16
    }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn i16_at(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// A request packet's body.
pub fn encode_requests(subs: &[SubRequest]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + subs.len() * 28);
    out.extend_from_slice(&(subs.len() as u16).to_be_bytes());
    for s in subs {
        let len = 28 + s.extra.len();
        out.extend_from_slice(&(len as u16).to_be_bytes());
        out.extend_from_slice(&s.device.to_be_bytes());
        out.extend_from_slice(&s.function.to_be_bytes());
        for a in s.args {
            out.extend_from_slice(&a.to_be_bytes());
        }
        out.extend_from_slice(&s.extra);
    }
    out
}

/// Splits a body into its count-prefixed, length-prefixed items.
fn items<'a>(body: &'a [u8], what: &'static str, min: usize) -> Result<Vec<&'a [u8]>, WireError> {
    if body.len() < 2 {
        return Err(short(what, 2, body.len()));
    }
    let count = usize::from(u16_at(body, 0));
    let mut at = 2;
    let mut out = Vec::with_capacity(count.min(64));
    for i in 0..count {
        if body.len() < at + 2 {
            return Err(WireError::Malformed {
                what,
                why: format!("{count} items announced, the body ends after {i}"),
            });
        }
        let len = usize::from(u16_at(body, at));
        if len < min {
            return Err(WireError::Malformed {
                what,
                why: format!("item {i} is {len} bytes long, less than the {min} of its header"),
            });
        }
        if body.len() < at + len {
            return Err(WireError::Malformed {
                what,
                why: format!(
                    "item {i} of {len} bytes goes past the body's end ({} bytes)",
                    body.len()
                ),
            });
        }
        out.push(&body[at..at + len]);
        at += len;
    }
    Ok(out)
}

/// A request packet's body, read (the control's side).
pub fn decode_requests(body: &[u8]) -> Result<Vec<SubRequest>, WireError> {
    items(body, "request", 28)?
        .into_iter()
        .map(|b| {
            let mut args = [0i32; 5];
            for (i, a) in args.iter_mut().enumerate() {
                *a = i32_at(b, 8 + i * 4);
            }
            Ok(SubRequest {
                device: u16_at(b, 2),
                function: u32_at(b, 4),
                args,
                extra: b[28..].to_vec(),
            })
        })
        .collect()
}

/// A response packet's body.
pub fn encode_responses(subs: &[SubResponse]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(subs.len() as u16).to_be_bytes());
    for s in subs {
        let len = 16 + s.data.len();
        out.extend_from_slice(&(len as u16).to_be_bytes());
        out.extend_from_slice(&s.device.to_be_bytes());
        out.extend_from_slice(&s.function.to_be_bytes());
        out.extend_from_slice(&s.error.to_be_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&(s.data.len() as u16).to_be_bytes());
        out.extend_from_slice(&s.data);
    }
    out
}

/// A response packet's body, read (the driver's side).
pub fn decode_responses(body: &[u8]) -> Result<Vec<SubResponse>, WireError> {
    items(body, "response", 16)?
        .into_iter()
        .enumerate()
        .map(|(i, b)| {
            let n = usize::from(u16_at(b, 14));
            if b.len() < 16 + n {
                return Err(WireError::Malformed {
                    what: "response",
                    why: format!("item {i} announces {n} data bytes, {} follow", b.len() - 16),
                });
            }
            Ok(SubResponse {
                device: u16_at(b, 2),
                function: u32_at(b, 4),
                error: i16_at(b, 8),
                data: b[16..16 + n].to_vec(),
            })
        })
        .collect()
}

/// A FOCAS "scaled integer" (macro variables): i32 mantissa, a zero byte, the base (2 or 10),
/// a zero byte (`FF` invalid) and the exponent; `FF FF` in the last two bytes is a vacant
/// variable (`None`). Value = mantissa / base^exponent.
pub fn decode_scaled(b: &[u8]) -> Result<Option<f64>, WireError> {
    if b.len() < 8 {
        return Err(short("scaled integer", 8, b.len()));
    }
    if b[6] == 0xFF && b[7] == 0xFF {
        return Ok(None);
    }
    let base = b[5];
    if base != 2 && base != 10 {
        return Err(WireError::Malformed {
            what: "scaled integer",
            why: format!("base {base}, expected 2 or 10"),
        });
    }
    let mantissa = f64::from(i32_at(b, 0));
    Ok(Some(mantissa / f64::from(base).powi(i32::from(b[7]))))
}

/// A value as a scaled integer (base 10, as many decimals as fit, up to 8); `None` (or a value
/// too large for an i32 mantissa) is vacant.
pub fn encode_scaled(v: Option<f64>) -> [u8; 8] {
    const VACANT: [u8; 8] = [0, 0, 0, 0, 0, 10, 0xFF, 0xFF];
    let Some(v) = v.filter(|v| v.is_finite()) else {
        return VACANT;
    };
    for exp in (0..=8u8).rev() {
        let scaled = (v * 10f64.powi(i32::from(exp))).round();
        if scaled.abs() <= f64::from(i32::MAX) {
            // Trim trailing zeros so that 4500.0 goes as 4500 × 10^0.
            let (mut m, mut e) = (scaled as i64, exp);
            while e > 0 && m % 10 == 0 {
                m /= 10;
                e -= 1;
            }
            let m = m as i32;
            let mb = m.to_be_bytes();
            return [mb[0], mb[1], mb[2], mb[3], 0, 10, 0, e];
        }
    }
    VACANT
}

/// `cnc_statinfo`: the control's status words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatInfo {
    /// Mode: 0 MDI, 1 MEM, 2 ****, 3 EDIT, 4 HND, 5 JOG, 6 T-JOG, 7 T-HND, 8 INC, 9 REF, 10 RMT.
    pub aut: u16,
    /// Run: 0 **** (reset), 1 STOP, 2 HOLD, 3 STRT, 4 MSTR.
    pub run: u16,
    /// Motion: 0 none, 1 MTN (axes moving), 2 DWL (dwell).
    pub motion: u16,
    /// M/S/T/B function: 0 none, 1 FIN (waiting for the function's completion).
    pub mstb: u16,
    /// Emergency: 0 none, 1 EMG, 2 RSET.
    pub emergency: u16,
    /// Alarm: 0 none, 1 ALM, 2 BAT (battery low) …
    pub alarm: u16,
    /// Edit status (0 none; the rest depends on the mode).
    pub edit: u16,
}

impl StatInfo {
    pub const LEN: usize = 14;
    /// The 30i form with `hdck` and `tmmode` first.
    pub const LEN_30I: usize = 18;

    pub fn decode(b: &[u8]) -> Result<Self, WireError> {
        let at = match b.len() {
            n if n >= Self::LEN_30I => 4,
            n if n >= Self::LEN => 0,
            n => return Err(short("cnc_statinfo", Self::LEN, n)),
        };
        let w = |i: usize| u16_at(b, at + i * 2);
        Ok(Self {
            aut: w(0),
            run: w(1),
            motion: w(2),
            mstb: w(3),
            emergency: w(4),
            alarm: w(5),
            edit: w(6),
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        [
            self.aut,
            self.run,
            self.motion,
            self.mstb,
            self.emergency,
            self.alarm,
            self.edit,
        ]
        .iter()
        .flat_map(|w| w.to_be_bytes())
        .collect()
    }
}

/// `cnc_sysinfo`: what the control is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SysInfo {
    pub addinfo: i16,
    pub max_axis: i16,
    /// `"0"` (0i), `"30"`, `"31"`, `"32"`, `"35"` … (trimmed).
    pub cnc_type: String,
    /// `"M"` mill, `"T"` lathe … (trimmed).
    pub mt_type: String,
    pub series: String,
    pub version: String,
    pub axes: String,
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b)
        .trim_end_matches(['\0', ' '])
        .trim()
        .to_string()
}

fn fixed(s: &str, n: usize) -> Vec<u8> {
    let mut v: Vec<u8> = s.bytes().take(n).collect();
    v.resize(n, b' ');
    v
}

impl SysInfo {
    pub const LEN: usize = 18;

    pub fn decode(b: &[u8]) -> Result<Self, WireError> {
        if b.len() < Self::LEN {
            return Err(short("cnc_sysinfo", Self::LEN, b.len()));
        }
        Ok(Self {
            addinfo: i16_at(b, 0),
            max_axis: i16_at(b, 2),
            cnc_type: text(&b[4..6]),
            mt_type: text(&b[6..8]),
            series: text(&b[8..12]),
            version: text(&b[12..16]),
            axes: text(&b[16..18]),
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::LEN);
        out.extend_from_slice(&self.addinfo.to_be_bytes());
        out.extend_from_slice(&self.max_axis.to_be_bytes());
        out.extend(fixed(&self.cnc_type, 2));
        out.extend(fixed(&self.mt_type, 2));
        out.extend(fixed(&self.series, 4));
        out.extend(fixed(&self.version, 4));
        out.extend(fixed(&self.axes, 2));
        out
    }

    /// A 0i-series control (`cnc_type` `"0"`): 32-byte alarm messages.
    pub fn is_0i(&self) -> bool {
        self.cnc_type == "0"
    }
}

/// `cnc_rdprgnum`: the running and the main program's numbers.
pub fn decode_program_number(b: &[u8]) -> Result<(i32, i32), WireError> {
    if b.len() < 8 {
        return Err(short("cnc_rdprgnum", 8, b.len()));
    }
    Ok((i32_at(b, 0), i32_at(b, 4)))
}

pub fn encode_program_number(run: i32, main: i32) -> Vec<u8> {
    let mut v = run.to_be_bytes().to_vec();
    v.extend_from_slice(&main.to_be_bytes());
    v
}

/// The main program's path name (`//CNC_MEM/USER/PATH1/O1234`, NUL padded).
pub fn decode_program_name(b: &[u8]) -> String {
    let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).trim().to_string()
}

/// One parameter as read: its number, axis (0 for a parameter that is not per axis), type
/// (0 bit, 1 byte, 2 word, 3 two-word) and value (the first value slot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Param {
    pub number: u32,
    pub axis: i16,
    pub kind: u16,
    pub value: i32,
}

impl Param {
    /// Number, axis, type, then `slots` 4-byte values (max_axis of them for an axis
    /// parameter; the value of a plain one is the first).
    pub fn decode(b: &[u8]) -> Result<Self, WireError> {
        if b.len() < 12 {
            return Err(short("cnc_rdparam", 12, b.len()));
        }
        Ok(Self {
            number: u32_at(b, 0),
            axis: i16_at(b, 4),
            kind: u16_at(b, 6),
            value: i32_at(b, 8),
        })
    }

    pub fn encode(&self, slots: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(8 + 4 * slots.max(1));
        v.extend_from_slice(&self.number.to_be_bytes());
        v.extend_from_slice(&self.axis.to_be_bytes());
        v.extend_from_slice(&self.kind.to_be_bytes());
        v.extend_from_slice(&self.value.to_be_bytes());
        v.resize(8 + 4 * slots.max(1), 0);
        v
    }
}

/// Alarm type numbers of `cnc_rdalmmsg`, and the prefix a Fanuc screen shows (`OT0500`).
pub fn alarm_prefix(kind: i16) -> &'static str {
    match kind {
        0 => "SW",
        1 => "PW",
        2 => "IO",
        3 => "PS",
        4 => "OT",
        5 => "OH",
        6 => "SV",
        7 => "SR",
        8 => "MC",
        9 => "SP",
        10 => "DS",
        11 => "IE",
        12 => "BG",
        13 => "SN",
        15 => "EX",
        19 => "PC",
        _ => "AL",
    }
}

/// One active alarm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alarm {
    pub number: i32,
    pub kind: i16,
    pub axis: i16,
    pub message: String,
}

impl Alarm {
    /// `OT0500`: the type's prefix and four digits.
    pub fn code(&self) -> String {
        format!("{}{:04}", alarm_prefix(self.kind), self.number)
    }
}

/// Message bytes per alarm record: 32 on the 0i, 64 on the 30i series.
pub const ALARM_MSG_0I: usize = 32;
pub const ALARM_MSG_30I: usize = 64;

/// `cnc_rdalmmsg` records: number i32, type i16, axis i16, a spare i16, message length i16,
/// then `msg_size` message bytes. An empty answer is no alarm.
pub fn decode_alarms(b: &[u8], msg_size: usize) -> Result<Vec<Alarm>, WireError> {
    let stride = 12 + msg_size;
    if b.len() % stride != 0 {
        return Err(WireError::Malformed {
            what: "cnc_rdalmmsg",
            why: format!(
                "{} bytes is not a whole number of {stride}-byte alarm records",
                b.len()
            ),
        });
    }
    Ok(b.chunks_exact(stride)
        .map(|r| {
            let len = usize::try_from(i16_at(r, 10)).unwrap_or(0).min(msg_size);
            Alarm {
                number: i32_at(r, 0),
                kind: i16_at(r, 4),
                axis: i16_at(r, 6),
                message: text(&r[12..12 + len]),
            }
        })
        .collect())
}

pub fn encode_alarms(alarms: &[Alarm], msg_size: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(alarms.len() * (12 + msg_size));
    for a in alarms {
        let msg: Vec<u8> = a.message.bytes().take(msg_size).collect();
        v.extend_from_slice(&a.number.to_be_bytes());
        v.extend_from_slice(&a.kind.to_be_bytes());
        v.extend_from_slice(&a.axis.to_be_bytes());
        v.extend_from_slice(&0i16.to_be_bytes());
        v.extend_from_slice(&(msg.len() as i16).to_be_bytes());
        let at = v.len();
        v.extend_from_slice(&msg);
        v.resize(at + msg_size, 0);
    }
    v
}

impl fmt::Display for Packet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} of {} bytes", kind_name(self.kind), self.body.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_pyfocas_style_request_is_read() {
        // What pyfocas sends for cnc_statinfo: one 0x1C-byte item, function 00 01 00 19.
        let mut wire = vec![
            0xA0, 0xA0, 0xA0, 0xA0, 0, 1, 0x21, 0x01, 0, 0x1E, 0, 1, 0, 0x1C,
        ];
        wire.extend_from_slice(&[0, 1, 0, 1, 0, 0x19]);
        wire.extend_from_slice(&[0; 20]);
        let mut f = Framer::new();
        f.push(&wire);
        let p = f.next_packet().unwrap().unwrap();
        assert_eq!((p.version, p.kind), (VERSION_CLIENT, REQUEST));
        let subs = decode_requests(&p.body).unwrap();
        assert_eq!(subs, vec![SubRequest::cnc(func::STATINFO, &[])]);
        assert_eq!(
            Packet::new(1, REQUEST, encode_requests(&subs)).encode(),
            wire
        );
    }

    #[test]
    fn responses_carry_the_command_then_six_zero_bytes() {
        let req = SubRequest::cnc(func::STATINFO, &[]);
        let body = encode_responses(&[SubResponse::ok(&req, StatInfo::default().encode())]);
        // count, length, then what pyfocas compares: device + function + 6 zero bytes.
        assert_eq!(&body[..4], &[0, 1, 0, 30]);
        assert_eq!(&body[4..16], &[0, 1, 0, 1, 0, 0x19, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&body[16..18], &[0, 14]);
    }

    #[test]
    fn scaled_integers() {
        // pyfocas's own example: 197.62.
        let b = [0x0b, 0xc7, 0x71, 0x20, 0x00, 0x0a, 0x00, 0x06];
        assert_eq!(decode_scaled(&b).unwrap(), Some(197.62));
        assert_eq!(
            decode_scaled(&[0, 0, 0, 1, 0, 10, 0xFF, 0xFF]).unwrap(),
            None
        );
        assert!(decode_scaled(&[0, 0, 0, 1, 0, 3, 0, 1]).is_err());
        assert!(decode_scaled(&[0; 7]).is_err());
        assert_eq!(encode_scaled(Some(4500.0)), [0, 0, 0x11, 0x94, 0, 10, 0, 0]);
        assert_eq!(
            decode_scaled(&encode_scaled(Some(-0.125))).unwrap(),
            Some(-0.125)
        );
        assert_eq!(decode_scaled(&encode_scaled(None)).unwrap(), None);
        assert_eq!(decode_scaled(&encode_scaled(Some(1e12))).unwrap(), None);
    }

    #[test]
    fn the_framer_waits_skips_and_refuses() {
        let p = Packet::new(2, RESPONSE, vec![0, 0]).encode();
        let mut f = Framer::new();
        // Garbage, then the packet one byte at a time.
        f.push(b"junk\xA0\xA0");
        assert_eq!(f.next_packet(), Ok(None));
        assert_eq!(f.take_skipped(), 4);
        f.clear();
        for b in &p[..p.len() - 1] {
            f.push(&[*b]);
            assert_eq!(f.next_packet(), Ok(None));
        }
        f.push(&p[p.len() - 1..]);
        assert_eq!(f.next_packet().unwrap().unwrap().body, vec![0, 0]);
        assert_eq!(f.pending(), 0);
        // Garbage ending in A0 right before a sync.
        f.push(b"x\xA0\xA0");
        f.push(&p);
        assert_eq!(f.next_packet().unwrap().unwrap().body, vec![0, 0]);
        assert_eq!(f.take_skipped(), 3);
        // A wrong sync is skipped as garbage.
        f.push(&[0xA0, 0xA0, 0xA1, 0xA0, 1, 2, 3]);
        assert_eq!(f.next_packet(), Ok(None));
        assert_eq!(f.take_skipped(), 7);
        // An announced length over the limit is an error.
        f.push(&[0xA0, 0xA0, 0xA0, 0xA0, 0, 2, 0x21, 0x02, 0xFF, 0xFF]);
        assert_eq!(f.next_packet(), Err(WireError::Oversize(0xFFFF)));
    }

    #[test]
    fn truncated_bodies_are_errors_not_panics() {
        let req = SubRequest::cnc(func::PROGRAM_NUMBER, &[]);
        let body = encode_responses(&[SubResponse::ok(&req, encode_program_number(12, 34))]);
        for n in 0..body.len() {
            assert!(decode_responses(&body[..n]).is_err(), "{n}");
        }
        let subs = decode_responses(&body).unwrap();
        assert_eq!(decode_program_number(&subs[0].data), Ok((12, 34)));
        assert!(decode_program_number(&[0; 7]).is_err());
        assert!(StatInfo::decode(&[0; 13]).is_err());
        assert!(SysInfo::decode(&[0; 17]).is_err());
        assert!(Param::decode(&[0; 11]).is_err());
        assert!(decode_alarms(&[0; 45], ALARM_MSG_0I).is_err());
    }

    #[test]
    fn records_round_trip() {
        let s = SysInfo {
            addinfo: 0,
            max_axis: 32,
            cnc_type: "30".into(),
            mt_type: "M".into(),
            series: "G002".into(),
            version: "24.0".into(),
            axes: "05".into(),
        };
        assert_eq!(SysInfo::decode(&s.encode()), Ok(s.clone()));
        assert!(!s.is_0i());
        let st = StatInfo {
            aut: 1,
            run: 3,
            motion: 1,
            mstb: 0,
            emergency: 0,
            alarm: 1,
            edit: 0,
        };
        assert_eq!(StatInfo::decode(&st.encode()), Ok(st));
        let mut long = vec![0, 0, 0, 2];
        long.extend(st.encode());
        assert_eq!(StatInfo::decode(&long), Ok(st));
        let p = Param {
            number: 6711,
            axis: 0,
            kind: 3,
            value: 1234,
        };
        assert_eq!(Param::decode(&p.encode(8)), Ok(p));
        let alarms = vec![Alarm {
            number: 500,
            kind: 4,
            axis: 1,
            message: "OVER TRAVEL ( +1 )".into(),
        }];
        let b = encode_alarms(&alarms, ALARM_MSG_30I);
        assert_eq!(b.len(), 76);
        assert_eq!(decode_alarms(&b, ALARM_MSG_30I), Ok(alarms.clone()));
        assert_eq!(alarms[0].code(), "OT0500");
        assert_eq!(
            decode_program_name(b"//CNC_MEM/USER/PATH1/O1234\0\0\0"),
            "//CNC_MEM/USER/PATH1/O1234"
        );
    }

    fn sub_request() -> impl Strategy<Value = SubRequest> {
        (
            any::<u16>(),
            any::<u32>(),
            any::<[i32; 5]>(),
            proptest::collection::vec(any::<u8>(), 0..16),
        )
            .prop_map(|(device, function, args, extra)| SubRequest {
                device,
                function,
                args,
                extra,
            })
    }

    fn sub_response() -> impl Strategy<Value = SubResponse> {
        (
            any::<u16>(),
            any::<u32>(),
            any::<i16>(),
            proptest::collection::vec(any::<u8>(), 0..200),
        )
            .prop_map(|(device, function, error, data)| SubResponse {
                device,
                function,
                error,
                data,
            })
    }

    proptest! {
        #[test]
        fn requests_round_trip_through_the_framer(subs in proptest::collection::vec(sub_request(), 0..8), cut in 0usize..400) {
            let wire = Packet::new(1, REQUEST, encode_requests(&subs)).encode();
            let mut f = Framer::new();
            let cut = cut.min(wire.len());
            f.push(&wire[..cut]);
            let early = f.next_packet().unwrap();
            if cut < wire.len() {
                prop_assert!(early.is_none());
                f.push(&wire[cut..]);
            }
            let p = match early { Some(p) => p, None => f.next_packet().unwrap().unwrap() };
            prop_assert_eq!(decode_requests(&p.body).unwrap(), subs);
        }

        #[test]
        fn responses_round_trip(subs in proptest::collection::vec(sub_response(), 0..8)) {
            let body = encode_responses(&subs);
            prop_assert_eq!(decode_responses(&body).unwrap(), subs);
        }

        #[test]
        fn scaled_round_trip(m in any::<i32>(), e in 0u8..6) {
            let v = f64::from(m) / 10f64.powi(i32::from(e));
            let back = decode_scaled(&encode_scaled(Some(v))).unwrap().unwrap();
            prop_assert!((back - v).abs() <= v.abs() * 1e-9 + 1e-9, "{} {}", v, back);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300), msg in 0usize..80) {
            let mut f = Framer::new();
            f.push(&bytes);
            let mut n = 0;
            while let Ok(Some(p)) = f.next_packet() {
                let _ = decode_responses(&p.body);
                let _ = decode_requests(&p.body);
                n += 1;
                if n > 100 { break; }
            }
            let _ = decode_responses(&bytes);
            let _ = decode_requests(&bytes);
            let _ = decode_scaled(&bytes);
            let _ = StatInfo::decode(&bytes);
            let _ = SysInfo::decode(&bytes);
            let _ = Param::decode(&bytes);
            let _ = decode_alarms(&bytes, msg);
            let _ = decode_program_name(&bytes);
        }
    }
}
