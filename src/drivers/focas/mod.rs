//! Fanuc FOCAS over Ethernet (FOCAS2, TCP port 8193 by default), spoken natively: no Fanuc
//! library is needed on the bridge. The wire format is in [`wire`], which also says which
//! layouts come from public notes and which are our reading of the FOCAS structs.
//!
//! # What one poll reads
//!
//! After the TCP connection, an open packet, and `cnc_sysinfo` once (reported as
//! `sysinfo.cnc_type`, `sysinfo.mt_type`, `sysinfo.series`, `sysinfo.version`,
//! `sysinfo.max_axis`), each poll is **one** request packet with one sub-request per item,
//! answered in one response packet (one round trip):
//!
//! | item | function | keys |
//! |---|---|---|
//! | `cnc_statinfo` | 0x19 | `statinfo.aut`, `.run`, `.motion`, `.mstb`, `.emergency`, `.alarm`, `.edit` |
//! | `cnc_rdprgnum` | 0x1C | `program.run`, `program.main` |
//! | main program path (30i series) | 0xB9 | `program.name` (`O1234`), `program.path` |
//! | `cnc_rdparam` 6711 and each configured parameter | 0x0E | `param.<n>` |
//! | `cnc_rdalmmsg` (all types) | 0x23 | `alarm.count`, and the condition `alarm` |
//! | `cnc_rdmacro` for each configured variable | 0x15 | `#<n>` (float; vacant: UNAVAILABLE) |
//!
//! A 0i (sysinfo `cnc_type` `"0"`) is not asked for the path name: `program.name` is
//! `O<main>` (four digits at least). A control that refuses 0xB9 (`EW_FUNC`, `EW_NOOPT`) gets
//! the same treatment for the rest of the connection. Alarm records have 32 message bytes on
//! a 0i and 64 on a 30i.
//!
//! Active alarms are conditions on the key `alarm`, level Fault, native code as the control's
//! screen shows it (`OT0500`, `SV0401`) and the message; an alarm that goes away is cleared
//! with Normal and its code (see [`super::poll`]).
//!
//! # Errors
//!
//! A sub-response with an `EW_` code marks that item's keys Bad (`cnc_rdparam 6799: EW_NUMBER
//! (3)`) and the poll goes on; data too short for its record is Bad (decode error) and counted
//! as bad input. A packet that is not a response, a response with another number of items
//! than asked, an announced length over [`wire::MAX_BODY`], a closed connection or no answer
//! within the timeout is a [`LinkError`]: the runner reconnects. Bytes before a packet's sync
//! are skipped and counted as bad input.
//!
//! The driver names values; the `fanuc-focas` profile makes a machine state of them.

pub mod wire;

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::poll::{LinkError, Poller, Readings};
use super::retry::LogLimiter;
use crate::model::{Quality, QualityReason, SignalId, Value};
use wire::{Framer, Packet, SubRequest, SubResponse, func};

/// The FOCAS/Ethernet port a control listens on unless set otherwise.
pub const DEFAULT_PORT: u16 = 8193;
/// The part counter parameter every poll reads (parts machined; 6712 total, 6713 required).
pub const PART_COUNT_PARAM: u32 = 6711;
/// The most alarm messages one poll asks for.
pub const MAX_ALARMS: i32 = 10;

/// One Fanuc control, as the driver polls it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FocasSpec {
    /// `host:port`.
    pub address: String,
    /// Macro variables read each poll.
    pub macros: Vec<u32>,
    /// Parameters read each poll besides 6711.
    pub params: Vec<u32>,
    /// How long one answer may take.
    pub timeout: Duration,
}

/// What a sub-request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Item {
    StatInfo,
    ProgramNumber,
    ProgramName,
    Param(u32),
    Alarms,
    Macro(u32),
}

impl Item {
    fn request(self) -> SubRequest {
        match self {
            Item::StatInfo => SubRequest::cnc(func::STATINFO, &[]),
            Item::ProgramNumber => SubRequest::cnc(func::PROGRAM_NUMBER, &[]),
            Item::ProgramName => SubRequest::cnc(func::PROGRAM_NAME, &[]),
            Item::Param(n) => {
                let n = i32::try_from(n).unwrap_or(i32::MAX);
                SubRequest::cnc(func::PARAM, &[n, n, 0])
            }
            Item::Alarms => SubRequest::cnc(func::ALARM_MESSAGES, &[-1, MAX_ALARMS]),
            Item::Macro(n) => {
                let n = i32::try_from(n).unwrap_or(i32::MAX);
                SubRequest::cnc(func::MACRO, &[n, n])
            }
        }
    }

    /// As a person reads it in a log.
    fn describe(self) -> String {
        match self {
            Item::StatInfo => "cnc_statinfo (0x19)".into(),
            Item::ProgramNumber => "cnc_rdprgnum (0x1C)".into(),
            Item::ProgramName => "main program name (0xB9)".into(),
            Item::Param(n) => format!("cnc_rdparam {n} (0x0E)"),
            Item::Alarms => "cnc_rdalmmsg (0x23)".into(),
            Item::Macro(n) => format!("cnc_rdmacro #{n} (0x15)"),
        }
    }
}

const STATINFO_KEYS: [&str; 7] = [
    "statinfo.aut",
    "statinfo.run",
    "statinfo.motion",
    "statinfo.mstb",
    "statinfo.emergency",
    "statinfo.alarm",
    "statinfo.edit",
];

/// The FOCAS poller.
pub struct Focas {
    spec: FocasSpec,
    framer: Framer,
    read_buf: Vec<u8>,
    /// This connection's items, and the request packet that asks for them all.
    items: Vec<Item>,
    request: Vec<u8>,
    keys: Keys,
    /// Bad input seen outside a poll (while connecting), added to the next poll's count.
    pending_bad: u64,
    /// The main program number of this poll (for `O<number>` when the path is refused).
    main: Option<i32>,
    log: LogLimiter,
}

/// Keys built once.
struct Keys {
    statinfo: Vec<SignalId>,
    program_run: SignalId,
    program_main: SignalId,
    program_name: SignalId,
    program_path: SignalId,
    alarm_count: SignalId,
    alarm: SignalId,
    params: Vec<(u32, SignalId)>,
    macros: Vec<(u32, SignalId)>,
    sysinfo: [SignalId; 5],
}

/// An open FOCAS link.
pub struct Link {
    stream: TcpStream,
    sysinfo: Option<wire::SysInfo>,
    /// Message bytes per alarm record (32 on a 0i, 64 on a 30i).
    alarm_msg: usize,
}

impl Focas {
    pub fn new(spec: FocasSpec) -> Self {
        let mut params = vec![PART_COUNT_PARAM];
        for p in &spec.params {
            if !params.contains(p) {
                params.push(*p);
            }
        }
        let keys = Keys {
            statinfo: STATINFO_KEYS.iter().map(|k| SignalId::new(k)).collect(),
            program_run: SignalId::new("program.run"),
            program_main: SignalId::new("program.main"),
            program_name: SignalId::new("program.name"),
            program_path: SignalId::new("program.path"),
            alarm_count: SignalId::new("alarm.count"),
            alarm: SignalId::new("alarm"),
            params: params
                .iter()
                .map(|p| (*p, SignalId::new(&format!("param.{p}"))))
                .collect(),
            macros: spec
                .macros
                .iter()
                .map(|m| (*m, SignalId::new(&format!("#{m}"))))
                .collect(),
            sysinfo: [
                SignalId::new("sysinfo.cnc_type"),
                SignalId::new("sysinfo.mt_type"),
                SignalId::new("sysinfo.series"),
                SignalId::new("sysinfo.version"),
                SignalId::new("sysinfo.max_axis"),
            ],
        };
        let mut me = Self {
            spec,
            framer: Framer::new(),
            read_buf: vec![0; 8192],
            items: Vec::new(),
            request: Vec::new(),
            keys,
            pending_bad: 0,
            main: None,
            log: LogLimiter::new(Duration::from_secs(10)),
        };
        me.plan(true);
        me
    }

    /// Builds the poll's request (with or without the program name).
    fn plan(&mut self, with_name: bool) {
        let mut items = vec![Item::StatInfo, Item::ProgramNumber];
        if with_name {
            items.push(Item::ProgramName);
        }
        items.extend(self.keys.params.iter().map(|(p, _)| Item::Param(*p)));
        items.push(Item::Alarms);
        items.extend(self.keys.macros.iter().map(|(m, _)| Item::Macro(*m)));
        let subs: Vec<SubRequest> = items.iter().map(|i| i.request()).collect();
        self.request = Packet::new(
            wire::VERSION_CLIENT,
            wire::REQUEST,
            wire::encode_requests(&subs),
        )
        .encode();
        self.items = items;
    }

    /// The request one poll sends (for tests and the benchmark).
    pub fn poll_request(&self) -> &[u8] {
        &self.request
    }

    /// Sends `packet` and reads the answer, which must be of type `want`.
    async fn exchange(
        &mut self,
        stream: &mut TcpStream,
        packet: &[u8],
        want: u16,
        what: &str,
        bytes: &mut u64,
        bad: &mut u64,
    ) -> Result<Packet, LinkError> {
        let source = &self.spec.address;
        let timeout = self.spec.timeout;
        let framer = &mut self.framer;
        let buf = &mut self.read_buf;
        let work = async {
            stream
                .write_all(packet)
                .await
                .map_err(|e| LinkError::new(format!("cannot send {what} to {source}: {e}")))?;
            loop {
                let next = framer.next_packet();
                let skipped = framer.take_skipped();
                if skipped > 0 {
                    *bad += 1;
                    tracing::debug!(source = %source, skipped, "bytes before a FOCAS sync skipped");
                }
                match next {
                    Ok(Some(p)) if p.kind == want => return Ok(p),
                    Ok(Some(p)) => {
                        *bad += 1;
                        return Err(LinkError::new(format!(
                            "{source} answered {what} with a {} instead of a {}",
                            wire::kind_name(p.kind),
                            wire::kind_name(want)
                        )));
                    }
                    Ok(None) => {}
                    Err(e) => {
                        *bad += 1;
                        return Err(LinkError::new(format!(
                            "unreadable answer to {what} from {source}: {e}"
                        )));
                    }
                }
                let n = stream
                    .read(buf)
                    .await
                    .map_err(|e| LinkError::new(format!("reading from {source}: {e}")))?;
                if n == 0 {
                    return Err(LinkError::new(format!("{source} closed the connection")));
                }
                *bytes += n as u64;
                framer.push(&buf[..n]);
            }
        };
        tokio::time::timeout(timeout, work).await.map_err(|_| {
            LinkError::new(format!(
                "no answer to {what} from {source} within {} ms",
                timeout.as_millis()
            ))
        })?
    }

    /// Puts one sub-response's values into `out`.
    fn read_item(&mut self, link: &mut Link, item: Item, sub: &SubResponse, out: &mut Readings) {
        let decode_bad = |out: &mut Readings, key: &SignalId, why: String| {
            out.push(
                key,
                Value::text(&why),
                Quality::Bad(QualityReason::DecodeError),
            );
        };
        if sub.error != wire::ew::OK {
            let why = format!("{}: {}", item.describe(), wire::ew::name(sub.error));
            match item {
                Item::StatInfo => {
                    for k in &self.keys.statinfo {
                        out.bad(k, why.clone());
                    }
                }
                Item::ProgramNumber => {
                    out.bad(&self.keys.program_run, why.clone());
                    out.bad(&self.keys.program_main, why);
                }
                Item::ProgramName => {
                    // No path names on this control (a 0i, or no option): O<number> instead,
                    // and the name is not asked for again on this connection.
                    tracing::debug!(source = %self.spec.address, answer = %why, "no program path names; using O<number>");
                    self.plan(false);
                    if let Some(main) = self.main {
                        out.good(&self.keys.program_name, Value::text(&format!("O{main:04}")));
                    }
                }
                Item::Param(n) => {
                    if let Some((_, k)) = self.keys.params.iter().find(|(p, _)| *p == n) {
                        out.bad(k, why);
                    }
                }
                Item::Alarms => out.bad(&self.keys.alarm_count, why),
                Item::Macro(n) => {
                    if let Some((_, k)) = self.keys.macros.iter().find(|(m, _)| *m == n) {
                        out.bad(k, why);
                    }
                }
            }
            return;
        }
        match item {
            Item::StatInfo => match wire::StatInfo::decode(&sub.data) {
                Ok(s) => {
                    let words = [s.aut, s.run, s.motion, s.mstb, s.emergency, s.alarm, s.edit];
                    for (k, w) in self.keys.statinfo.iter().zip(words) {
                        out.good(k, Value::Int(i64::from(w)));
                    }
                }
                Err(e) => {
                    out.bad_input += 1;
                    note_bad(&mut self.log, &self.spec.address, item, &e.to_string());
                    for k in &self.keys.statinfo {
                        decode_bad(out, k, e.to_string());
                    }
                }
            },
            Item::ProgramNumber => match wire::decode_program_number(&sub.data) {
                Ok((run, main)) => {
                    self.main = Some(main);
                    out.good(&self.keys.program_run, Value::Int(i64::from(run)));
                    out.good(&self.keys.program_main, Value::Int(i64::from(main)));
                    if !self.items.contains(&Item::ProgramName) {
                        out.good(&self.keys.program_name, Value::text(&format!("O{main:04}")));
                    }
                }
                Err(e) => {
                    out.bad_input += 1;
                    note_bad(&mut self.log, &self.spec.address, item, &e.to_string());
                    decode_bad(out, &self.keys.program_run, e.to_string());
                    decode_bad(out, &self.keys.program_main, e.to_string());
                }
            },
            Item::ProgramName => {
                let path = wire::decode_program_name(&sub.data);
                let name = path.rsplit('/').next().unwrap_or(&path).to_string();
                out.good(&self.keys.program_path, Value::text(&path));
                out.good(&self.keys.program_name, Value::text(&name));
            }
            Item::Param(n) => {
                let Some((_, k)) = self.keys.params.iter().find(|(p, _)| *p == n) else {
                    return;
                };
                match wire::Param::decode(&sub.data) {
                    Ok(p) if p.number == n => out.good(k, Value::Int(i64::from(p.value))),
                    Ok(p) => {
                        out.bad_input += 1;
                        let why =
                            format!("asked for parameter {n}, the control answered {}", p.number);
                        note_bad(&mut self.log, &self.spec.address, item, &why);
                        decode_bad(out, k, why);
                    }
                    Err(e) => {
                        out.bad_input += 1;
                        note_bad(&mut self.log, &self.spec.address, item, &e.to_string());
                        decode_bad(out, k, e.to_string());
                    }
                }
            }
            Item::Alarms => {
                let decoded = wire::decode_alarms(&sub.data, link.alarm_msg).or_else(|e| {
                    // The series guess may be wrong: try the other record size.
                    let other = if link.alarm_msg == wire::ALARM_MSG_0I {
                        wire::ALARM_MSG_30I
                    } else {
                        wire::ALARM_MSG_0I
                    };
                    wire::decode_alarms(&sub.data, other)
                        .inspect(|_| link.alarm_msg = other)
                        .map_err(|_| e)
                });
                match decoded {
                    Ok(alarms) => {
                        out.good(&self.keys.alarm_count, Value::Int(alarms.len() as i64));
                        let active = alarms
                            .iter()
                            .map(|a| (a.code(), a.message.clone()))
                            .collect();
                        out.conditions(&self.keys.alarm, active);
                    }
                    Err(e) => {
                        out.bad_input += 1;
                        note_bad(&mut self.log, &self.spec.address, item, &e.to_string());
                        decode_bad(out, &self.keys.alarm_count, e.to_string());
                    }
                }
            }
            Item::Macro(n) => {
                let Some((_, k)) = self.keys.macros.iter().find(|(m, _)| *m == n) else {
                    return;
                };
                match wire::decode_scaled(&sub.data) {
                    Ok(Some(v)) => out.good(k, Value::Float(v)),
                    // A vacant variable (#0, "null"): no value.
                    Ok(None) => out.good(k, Value::Unavailable),
                    Err(e) => {
                        out.bad_input += 1;
                        note_bad(&mut self.log, &self.spec.address, item, &e.to_string());
                        decode_bad(out, k, e.to_string());
                    }
                }
            }
        }
    }
}

/// Logs an unreadable answer, rate-limited.
fn note_bad(log: &mut LogLimiter, source: &str, item: Item, why: &str) {
    if let Some(more) = log.allow() {
        tracing::warn!(source = %source, item = %item.describe(), error = %why, skipped_since_last_log = more, "unreadable FOCAS answer");
    }
}

impl Poller for Focas {
    type Link = Link;

    fn source(&self) -> &str {
        &self.spec.address
    }

    async fn connect(&mut self) -> Result<Link, LinkError> {
        let addr = self.spec.address.clone();
        let mut stream = TcpStream::connect(addr.as_str()).await.map_err(|e| match e.kind() {
            std::io::ErrorKind::ConnectionRefused => LinkError::new(format!(
                "connection refused by {addr} (is FOCAS/Ethernet on, and this its port, often 8193?)"
            )),
            _ => LinkError::new(format!("cannot connect to {addr}: {e}")),
        })?;
        let _ = stream.set_nodelay(true);
        self.framer.clear();
        let (mut bytes, mut bad) = (0, 0);
        let open = Packet::new(wire::VERSION_CLIENT, wire::OPEN_REQUEST, vec![0, 2]).encode();
        let opened = self
            .exchange(
                &mut stream,
                &open,
                wire::OPEN_RESPONSE,
                "the open request",
                &mut bytes,
                &mut bad,
            )
            .await;
        self.pending_bad += bad;
        opened?;
        // What the control is: once per connection.
        let sys = Packet::new(
            wire::VERSION_CLIENT,
            wire::REQUEST,
            wire::encode_requests(&[SubRequest::cnc(func::SYSINFO, &[])]),
        )
        .encode();
        let answer = self
            .exchange(
                &mut stream,
                &sys,
                wire::RESPONSE,
                "cnc_sysinfo",
                &mut bytes,
                &mut bad,
            )
            .await;
        self.pending_bad += bad;
        let answer = answer?;
        let sysinfo = match wire::decode_responses(&answer.body) {
            Ok(subs) => match subs.first() {
                Some(s) if s.error == wire::ew::OK => match wire::SysInfo::decode(&s.data) {
                    Ok(i) => Some(i),
                    Err(e) => {
                        self.pending_bad += 1;
                        tracing::warn!(source = %addr, error = %e, "unreadable cnc_sysinfo; assuming a 30i");
                        None
                    }
                },
                Some(s) => {
                    tracing::warn!(source = %addr, answer = %wire::ew::name(s.error), "cnc_sysinfo refused; assuming a 30i");
                    None
                }
                None => None,
            },
            Err(e) => {
                self.pending_bad += 1;
                return Err(LinkError::new(format!(
                    "unreadable answer to cnc_sysinfo from {addr}: {e}"
                )));
            }
        };
        let zero_i = sysinfo.as_ref().is_some_and(|s| s.is_0i());
        // A 0i has no path names: its program is O<number>.
        self.plan(!zero_i);
        Ok(Link {
            stream,
            sysinfo,
            alarm_msg: if zero_i {
                wire::ALARM_MSG_0I
            } else {
                wire::ALARM_MSG_30I
            },
        })
    }

    async fn poll(&mut self, link: &mut Link, out: &mut Readings) -> Result<(), LinkError> {
        out.bad_input += std::mem::take(&mut self.pending_bad);
        if let Some(s) = &link.sysinfo {
            let k = &self.keys.sysinfo;
            out.good(&k[0], Value::text(&s.cnc_type));
            out.good(&k[1], Value::text(&s.mt_type));
            out.good(&k[2], Value::text(&s.series));
            out.good(&k[3], Value::text(&s.version));
            out.good(&k[4], Value::Int(i64::from(s.max_axis)));
        }
        let request = std::mem::take(&mut self.request);
        let (mut bytes, mut bad) = (0, 0);
        let answer = self
            .exchange(
                &mut link.stream,
                &request,
                wire::RESPONSE,
                "the poll request",
                &mut bytes,
                &mut bad,
            )
            .await;
        self.request = request;
        out.bytes += bytes;
        out.bad_input += bad;
        let answer = answer?;
        out.replies += 1;
        let subs = wire::decode_responses(&answer.body).map_err(|e| {
            out.bad_input += 1;
            LinkError::new(format!("unreadable answer from {}: {e}", self.spec.address))
        })?;
        if subs.len() != self.items.len() {
            out.bad_input += 1;
            return Err(LinkError::new(format!(
                "{} answered {} items to a request of {}",
                self.spec.address,
                subs.len(),
                self.items.len()
            )));
        }
        let items = self.items.clone();
        self.main = None;
        for (item, sub) in items.into_iter().zip(&subs) {
            let asked = item.request();
            if sub.function != asked.function {
                out.bad_input += 1;
                return Err(LinkError::new(format!(
                    "{} answered function 0x{:08X} where {} was asked",
                    self.spec.address,
                    sub.function,
                    item.describe()
                )));
            }
            self.read_item(link, item, sub, out);
        }
        Ok(())
    }

    async fn close(&mut self, mut link: Link) {
        let close = Packet::new(wire::VERSION_CLIENT, wire::CLOSE_REQUEST, Vec::new()).encode();
        let (mut bytes, mut bad) = (0, 0);
        let _ = self
            .exchange(
                &mut link.stream,
                &close,
                wire::CLOSE_RESPONSE,
                "the close request",
                &mut bytes,
                &mut bad,
            )
            .await;
    }
}
