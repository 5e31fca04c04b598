//! The SHDR driver: an MTConnect adapter's pipe-delimited stream over TCP, read as an agent
//! reads it.
//!
//! An adapter is a TCP *server* (port 7878 by convention) that streams lines to whoever
//! connects: first the current value of everything, then each change as it happens (see
//! [`parse`] for the line grammar). This driver is the client. Per connection it:
//!
//! 1. connects (with a timeout) and sends `* PING` at once;
//! 2. reads lines with a buffered reader that tolerates `\r\n`, invalid UTF-8 (read lossily,
//!    counted as bad input) and lines over [`parse::MAX_LINE`] (skipped, counted);
//! 3. turns everything one read brought into **one** [`DriverBatch`] (never one per line) and
//!    sends it with back-pressure: while the pipeline is full, the driver stops reading, and
//!    the adapter's TCP send buffer fills instead;
//! 4. pings every heartbeat — the configured one, else what the adapter's `* PONG <ms>`
//!    asks for, else [`DEFAULT_HEARTBEAT`] — and drops the connection when *nothing at all*
//!    (no line, no PONG) arrived for twice that long: a half-open TCP connection (a machine
//!    switched off at the mains) never says goodbye, so silence is the only sign.
//!
//! # Machines, devices and keys
//!
//! One adapter may feed several machines: a key written `dev:key` belongs to the machine
//! whose device name is `dev` (an unknown device is bad input), a plain key to the machine
//! without a device name, or the first one. `* device: dev` moves plain keys to `dev`'s
//! machine, as it sets the agent's default device. Asset commands go to the default machine.
//! [`ShdrSpec::items`] (read from a Devices file) gives each key its shape — conditions,
//! messages and time series span several fields — and its metadata, attached to every
//! observation so that profiles can match by MTConnect type.
//!
//! # What becomes what
//!
//! | SHDR | event |
//! |---|---|
//! | `key\|value` | [`RawObservation`], value typed as [`parse`] says, quality Good; `UNAVAILABLE` is the value [`Value::Unavailable`] with quality Bad (`SourceUnavailable`), as the MTConnect driver reports it |
//! | condition | [`RawCondition`] |
//! | message `key\|code\|text` | observation `key` = text, and `key.native_code` = code when there is one |
//! | time series | observation `key` = the samples as one text (`1.0 1.1 1.2`) |
//! | `@ASSET@` & co. | [`RawAsset`] |
//! | `* uuid:`, `* manufacturer:`, `* serialNumber:`, `* station:`, `* description:`, `* nativeName:`, `* adapterVersion:`, `* mtconnectVersion:`, `* shdrVersion:`, `* model:` | observation `adapter.<name>` (text, or Unavailable for `UNAVAILABLE`), without a source time: the machine's nameplate for OPC 40001 |
//! | `* PONG <ms>` | the heartbeat (nothing is emitted) |
//! | other `*` commands (`calibration`, `conversionRequired`, `relativeTime`, `realTime` …) | logged at debug |
//!
//! # Link status
//!
//! [`LinkStatus::Connected`] for every machine once connected (the detail names the address);
//! [`LinkStatus::Lost`] once when the link goes (the detail says why: `connection refused by
//! 127.0.0.1:7878`, `no data or PONG from 127.0.0.1:7878 for 20 s`). While the adapter stays
//! unreachable the driver retries with exponential backoff and jitter (0.5 s doubling to
//! 30 s; reset once a connection has delivered a line) and reports nothing more: one Lost,
//! not one per attempt. The driver never invents values; normalization marks the machine's
//! signals on Lost.
//!
//! # Time
//!
//! Received times and every timer come from the app's [`Clock`](crate::clock::Clock), so a
//! test or demo with a scaled clock scales heartbeats and backoff with it. The timers that
//! judge a peer (connect timeout, ping interval, silence) never shrink below
//! [`PROTOCOL_WALL_FLOOR`] of wall time, though: at `--speed 600` a 10 s heartbeat would be
//! 17 ms of real time, and a loaded machine would see ghosts.

pub mod parse;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::retry::{Backoff, LogLimiter};

pub use parse::{
    AssetItem, Command, Condition, Data, DataItem, FastHash, MAX_LINE, Parser, ShdrError, ShdrItem,
};

use super::{
    DataItemMeta, DriverBatch, DriverContext, DriverCounters, DriverEvent, ItemShape, RawAsset,
    RawCondition, RawObservation,
};
use crate::model::{
    AssetAction, LinkStatus, MachineId, Quality, QualityReason, SignalId, Timestamp, Value,
};

/// What the driver needs to know about one adapter connection.
#[derive(Clone, Debug, Default)]
pub struct ShdrSpec {
    /// `host:port` of the adapter.
    pub address: String,
    /// Ping this often; None: as the adapter's `* PONG <ms>` says, else [`DEFAULT_HEARTBEAT`].
    pub heartbeat: Option<Duration>,
    /// The machines this connection feeds, with the adapter's device name for each (None: the
    /// machine that gets keys without a `device:` prefix).
    pub machines: Vec<(MachineId, Option<String>)>,
    /// SHDR key (without device prefix) → what the item is (its shape, type and units).
    pub items: HashMap<String, Arc<DataItemMeta>>,
}

/// The heartbeat when neither the configuration nor the adapter names one.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(10);
/// How long a connection attempt may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The first retry delay; it doubles per failed attempt up to [`BACKOFF_MAX`].
pub const BACKOFF_START: Duration = Duration::from_millis(500);
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// An adapter's heartbeat is taken within these bounds (a `* PONG 0` must not spin the loop).
const HEARTBEAT_MIN: Duration = Duration::from_millis(50);
const HEARTBEAT_MAX: Duration = Duration::from_secs(600);
/// The least wall time a scaled clock may shrink a protocol timer to (see the module doc).
pub const PROTOCOL_WALL_FLOOR: Duration = Duration::from_secs(1);
/// Repeated complaints about the same thing are logged at most this often.
const LOG_EVERY: Duration = Duration::from_secs(10);
/// Keys remembered per machine (each holds its `SignalId`); an adapter that invents keys
/// endlessly costs an allocation per value past this, not memory.
const KEY_CACHE_MAX: usize = 10_000;
/// What one read asks the socket for. Each connection keeps a buffer this large for its life
/// (75 connections held 4.9 MiB at 64 KiB); a burst larger than this takes a few reads.
const READ_CHUNK: usize = 16 * 1024;

/// `* name: value` commands that describe the adapter or machine and become `adapter.<name>`
/// observations.
pub const IDENTITY_COMMANDS: &[&str] = &[
    "uuid",
    "manufacturer",
    "model",
    "serialNumber",
    "station",
    "description",
    "nativeName",
    "adapterVersion",
    "mtconnectVersion",
    "shdrVersion",
];

/// Runs the driver until `ctx.shutdown` is cancelled or the pipeline goes away.
pub async fn run(spec: ShdrSpec, ctx: DriverContext) {
    let Some(mut session) = Session::new(&spec, &ctx) else {
        tracing::error!(address = %spec.address, "SHDR driver has no machine to feed; not started");
        return;
    };
    let mut backoff = Backoff::new(BACKOFF_START, BACKOFF_MAX, 0.8..=1.2);
    // Lost is reported once per outage, not per failed attempt.
    let mut lost_reported = false;
    let mut connect_log = LogLimiter::new(LOG_EVERY);
    loop {
        let attempt = tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            r = tokio::time::timeout(
                wall(&ctx.clock, CONNECT_TIMEOUT),
                TcpStream::connect(spec.address.as_str()),
            ) => r,
        };
        match attempt {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                tracing::info!(address = %spec.address, "connected to SHDR adapter");
                let detail = format!("SHDR adapter at {}", spec.address);
                if !session.link(LinkStatus::Connected, detail).await {
                    return;
                }
                connect_log = LogLimiter::new(LOG_EVERY);
                let end = session.connection(stream).await;
                if session.delivered {
                    backoff = Backoff::new(BACKOFF_START, BACKOFF_MAX, 0.8..=1.2);
                }
                match end {
                    End::Stop => return,
                    End::Lost(why) => {
                        DriverCounters::add(&ctx.counters.link_errors, 1);
                        tracing::warn!(address = %spec.address, reason = %why, "SHDR link lost; reconnecting");
                        if !session.link(LinkStatus::Lost, why).await {
                            return;
                        }
                        lost_reported = true;
                    }
                }
            }
            failed => {
                DriverCounters::add(&ctx.counters.link_errors, 1);
                let why = match failed {
                    Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                        format!("connection refused by {}", spec.address)
                    }
                    Ok(Err(e)) => format!("cannot connect to {}: {e}", spec.address),
                    Err(_) | Ok(Ok(_)) => format!(
                        "no answer from {} within {}",
                        spec.address,
                        human(CONNECT_TIMEOUT)
                    ),
                };
                if let Some(more) = connect_log.allow() {
                    tracing::warn!(address = %spec.address, reason = %why, failed_attempts_since_last_log = more, "cannot reach SHDR adapter; retrying with backoff");
                }
                if !lost_reported {
                    if !session.link(LinkStatus::Lost, why).await {
                        return;
                    }
                    lost_reported = true;
                }
            }
        }
        let delay = backoff.next_wait();
        tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            _ = ctx.clock.sleep(delay) => {}
        }
    }
}

/// Why a connection ended.
enum End {
    /// Shutdown, or the pipeline is gone: stop the driver.
    Stop,
    /// The link failed; the text says how.
    Lost(String),
}

/// A machine this connection feeds, with its remembered keys.
struct Target {
    id: MachineId,
    device: Option<String>,
    keys: HashMap<Box<str>, Key, FastHash>,
}

#[derive(Clone)]
struct Key {
    signal: SignalId,
    meta: Option<Arc<DataItemMeta>>,
}

/// Everything that outlives one connection.
struct Session<'s> {
    spec: &'s ShdrSpec,
    ctx: &'s DriverContext,
    shapes: HashMap<String, ItemShape>,
    targets: Vec<Target>,
    /// The machine plain keys and asset commands go to.
    default: usize,
    /// The heartbeat in force (configured, or as the adapter asked).
    heartbeat: Duration,
    /// The current connection delivered at least one line.
    delivered: bool,
    /// The number (on this connection) of the line being read, for logs.
    line_no: u64,
    /// Physical lines read, and the last one counted as bad input: a line is counted once,
    /// however many things are wrong with it.
    physical_lines: u64,
    counted_line: u64,
    bad_log: LogLimiter,
}

impl<'s> Session<'s> {
    fn new(spec: &'s ShdrSpec, ctx: &'s DriverContext) -> Option<Self> {
        let machines: Vec<(MachineId, Option<String>)> = if spec.machines.is_empty() {
            ctx.machines.iter().map(|m| (m.clone(), None)).collect()
        } else {
            spec.machines.clone()
        };
        let targets: Vec<Target> = machines
            .into_iter()
            .map(|(id, device)| Target {
                id,
                device,
                keys: HashMap::default(),
            })
            .collect();
        let default = targets.iter().position(|t| t.device.is_none()).unwrap_or(0);
        if targets.is_empty() {
            return None;
        }
        Some(Self {
            spec,
            ctx,
            shapes: spec
                .items
                .iter()
                .map(|(k, m)| (k.clone(), m.shape()))
                .collect(),
            targets,
            default,
            heartbeat: spec.heartbeat.unwrap_or(DEFAULT_HEARTBEAT),
            delivered: false,
            line_no: 0,
            physical_lines: 0,
            counted_line: 0,
            bad_log: LogLimiter::new(LOG_EVERY),
        })
    }

    /// Reports a link status for every machine; false when the pipeline is gone.
    async fn link(&self, status: LinkStatus, detail: String) -> bool {
        let at = self.ctx.clock.now();
        let batch: DriverBatch = self
            .targets
            .iter()
            .map(|t| DriverEvent::Link {
                machine: t.id.clone(),
                status,
                at,
                detail: Some(detail.clone()),
                missed: None,
            })
            .collect();
        self.send(batch).await
    }

    async fn send(&self, batch: DriverBatch) -> bool {
        tokio::select! {
            _ = self.ctx.shutdown.cancelled() => false,
            ok = self.ctx.send(batch) => ok,
        }
    }

    /// Reads one connection until it ends.
    async fn connection(&mut self, mut stream: TcpStream) -> End {
        let address = self.spec.address.clone();
        let clock = self.ctx.clock.clone();
        self.delivered = false;
        self.heartbeat = self.spec.heartbeat.unwrap_or(DEFAULT_HEARTBEAT);
        let mut parser = Parser::with_shapes(self.shapes.clone());
        let mut reader = LineReader::default();
        let (mut rd, mut wr) = stream.split();

        // The silence allowed is twice the *wall* ping interval, floor included: flooring the
        // two separately could make them equal, and every PONG would arrive too late.
        let ping = |hb: Duration| wall(&clock, hb);
        if let Err(e) = wr.write_all(b"* PING\n").await {
            return End::Lost(format!("cannot send PING to {address}: {e}"));
        }
        let mut next_ping = Instant::now() + ping(self.heartbeat);
        let mut deadline = Instant::now() + ping(self.heartbeat) * 2;
        let end = loop {
            reader.buf.reserve(READ_CHUNK);
            tokio::select! {
                biased;
                _ = self.ctx.shutdown.cancelled() => break End::Stop,
                r = rd.read_buf(&mut reader.buf) => {
                    let n = match r {
                        Ok(0) => break End::Lost(format!("{address} closed the connection")),
                        Ok(n) => n,
                        Err(e) => break End::Lost(format!("reading from {address}: {e}")),
                    };
                    DriverCounters::add(&self.ctx.counters.bytes, n as u64);
                    deadline = Instant::now() + ping(self.heartbeat) * 2;
                    let received = self.ctx.clock.now();
                    // About one event per 30 bytes of typical SHDR: sized once, not regrown.
                    let mut batch = DriverBatch::with_capacity(n / 30 + 4);
                    let before = self.heartbeat;
                    reader.lines(|line| match line {
                        Line::Text(l, lossy) => {
                            self.physical_lines += 1;
                            self.line_no = parser.lines() + 1;
                            if lossy {
                                self.bad("invalid UTF-8, read lossily", &l);
                            }
                            self.line(&mut parser, &l, received, &mut batch);
                        }
                        Line::TooLong(len) => {
                            self.physical_lines += 1;
                            DriverCounters::add(&self.ctx.counters.messages, 1);
                            self.line_no = parser.lines() + 1;
                            self.bad(&format!("a {len}-byte line is longer than the {MAX_LINE}-byte limit; skipped"), "");
                        }
                    });
                    if self.heartbeat != before {
                        next_ping = Instant::now() + ping(self.heartbeat);
                        deadline = Instant::now() + ping(self.heartbeat) * 2;
                    }
                    if !batch.is_empty() && !self.send(batch).await {
                        break End::Stop;
                    }
                }
                _ = tokio::time::sleep_until(next_ping) => {
                    next_ping = Instant::now() + ping(self.heartbeat);
                    match tokio::time::timeout(ping(self.heartbeat), wr.write_all(b"* PING\n")).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => break End::Lost(format!("cannot send PING to {address}: {e}")),
                        Err(_) => break End::Lost(format!("{address} does not take a PING for {}", human(self.heartbeat))),
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    break End::Lost(format!(
                        "no data or PONG from {address} for {}",
                        human(self.heartbeat * 2)
                    ));
                }
            }
        };
        if let Some(e) = parser.reset() {
            // Its own fault, not the last line's (the error names the line it began on).
            self.physical_lines += 1;
            self.bad(&e.to_string(), "");
        }
        end
    }

    /// One line: parse it and turn what it says into events.
    fn line(
        &mut self,
        parser: &mut Parser,
        line: &str,
        received: Timestamp,
        batch: &mut DriverBatch,
    ) {
        DriverCounters::add(&self.ctx.counters.messages, 1);
        self.delivered = true;
        let r = parser.push_line_with(line, &mut |item| self.item(item, received, batch));
        if let Err(e) = r {
            self.bad(&e.to_string(), line);
        }
    }

    fn item(&mut self, item: ShdrItem<'_>, received: Timestamp, batch: &mut DriverBatch) {
        match item {
            ShdrItem::Data(d) => {
                let target = match d.device {
                    None => self.default,
                    Some(dev) => match self.target_of(dev) {
                        Some(t) => t,
                        None => {
                            let what = format!("unknown device {:?} (key {:?})", dev, d.key);
                            self.bad(&what, "");
                            return;
                        }
                    },
                };
                let (machine, key) = self.key(target, d.key);
                let time = d.time;
                match d.data {
                    Data::Value(value) => {
                        batch.push(observation(machine, key, value, time, received));
                    }
                    Data::TimeSeries { values, .. } => {
                        batch.push(observation(machine, key, values, time, received));
                    }
                    Data::Message { native_code, text } => {
                        batch.push(observation(machine.clone(), key, text, time, received));
                        if let Some(code) = native_code {
                            let (_, code_key) = self.key(target, &format!("{}.native_code", d.key));
                            let value = Value::Text(Arc::from(&*code));
                            batch.push(observation(machine, code_key, value, time, received));
                        }
                    }
                    Data::Condition(c) => {
                        batch.push(DriverEvent::Condition(Box::new(RawCondition {
                            machine,
                            key: key.signal,
                            level: c.level,
                            native_code: c.native_code.map(|s| s.into_owned()),
                            native_severity: c.native_severity.map(|s| s.into_owned()),
                            qualifier: c.qualifier.map(|s| s.into_owned()),
                            message: c.message.map(|s| s.into_owned()),
                            source_time: time,
                            received,
                            meta: key.meta,
                        })));
                    }
                }
            }
            ShdrItem::Asset(a) => {
                let machine = self.targets[self.default].id.clone();
                let (action, asset_id, asset_type, document, source_time) = match a {
                    AssetItem::Changed {
                        time,
                        id,
                        asset_type,
                        document,
                    } => (
                        AssetAction::Changed,
                        id.into_owned(),
                        asset_type.map(|t| t.into_owned()),
                        Some(document.into_owned()),
                        time,
                    ),
                    AssetItem::Removed { time, id } => {
                        (AssetAction::Removed, id.into_owned(), None, None, time)
                    }
                    AssetItem::RemovedAll { time, asset_type } => (
                        AssetAction::RemovedAll,
                        String::new(),
                        asset_type.map(|t| t.into_owned()),
                        None,
                        time,
                    ),
                };
                batch.push(DriverEvent::Asset(Box::new(RawAsset {
                    machine,
                    action,
                    asset_id,
                    asset_type,
                    document,
                    source_time,
                    received,
                })));
            }
            ShdrItem::Command(c) => self.command(c, received, batch),
        }
    }

    fn command(&mut self, c: Command<'_>, received: Timestamp, batch: &mut DriverBatch) {
        match c {
            Command::Pong { heartbeat } => {
                if let (None, Some(hb)) = (self.spec.heartbeat, heartbeat) {
                    let hb = hb.clamp(HEARTBEAT_MIN, HEARTBEAT_MAX);
                    if hb != self.heartbeat {
                        tracing::debug!(address = %self.spec.address, heartbeat_ms = hb.as_millis() as u64, "adapter sets the heartbeat");
                        self.heartbeat = hb;
                    }
                }
            }
            Command::Ping => {}
            Command::Set { name, value } => {
                tracing::debug!(address = %self.spec.address, command = name, value, "adapter command");
                if name == "device" {
                    // The adapter's default device. One that names no machine here (a
                    // bridge that calls the machine otherwise) changes nothing.
                    match self.target_of(value) {
                        Some(t) => self.default = t,
                        None => tracing::debug!(
                            address = %self.spec.address,
                            device = value,
                            "adapter's default device is no machine of this connection; ignored"
                        ),
                    }
                } else if IDENTITY_COMMANDS.contains(&name) {
                    let (machine, key) = self.key(self.default, &format!("adapter.{name}"));
                    let value = if value.eq_ignore_ascii_case("UNAVAILABLE") {
                        Value::Unavailable
                    } else {
                        Value::text(value)
                    };
                    batch.push(observation(machine, key, value, None, received));
                }
            }
        }
    }

    fn target_of(&self, device: &str) -> Option<usize> {
        self.targets
            .iter()
            .position(|t| t.device.as_deref() == Some(device) || t.id.as_str() == device)
    }

    /// The machine and the cached signal id and metadata of `key` on target `t`.
    fn key(&mut self, t: usize, key: &str) -> (MachineId, Key) {
        let target = &mut self.targets[t];
        if let Some(k) = target.keys.get(key) {
            return (target.id.clone(), k.clone());
        }
        let k = Key {
            signal: SignalId::new(key),
            meta: self.spec.items.get(key).cloned(),
        };
        if target.keys.len() < KEY_CACHE_MAX {
            target.keys.insert(Box::from(key), k.clone());
        }
        (target.id.clone(), k)
    }

    /// Counts bad input and logs it, rate-limited, with where it was and what it said.
    fn bad(&mut self, what: &str, text: &str) {
        if self.counted_line != self.physical_lines || self.physical_lines == 0 {
            DriverCounters::add(&self.ctx.counters.bad_input, 1);
            self.counted_line = self.physical_lines;
        }
        if let Some(suppressed) = self.bad_log.allow() {
            let machine = &self.targets[self.default].id;
            tracing::warn!(
                machine = %machine,
                address = %self.spec.address,
                line = self.line_no,
                text = parse::truncate(text, 120),
                similar_since_last_log = suppressed,
                "bad SHDR input: {what}"
            );
        }
    }
}

fn observation(
    machine: MachineId,
    key: Key,
    value: Value,
    source_time: Option<Timestamp>,
    received: Timestamp,
) -> DriverEvent {
    // UNAVAILABLE is the machine saying it does not know: Bad, as the MTConnect driver marks
    // it too, so that every face shows the same quality for the same report.
    let quality = if value.is_unavailable() {
        Quality::Bad(QualityReason::SourceUnavailable)
    } else {
        Quality::Good
    };
    DriverEvent::Observation(RawObservation {
        machine,
        key: key.signal,
        value,
        quality,
        source_time,
        received,
        meta: key.meta,
    })
}

/// What the line reader hands out.
enum Line<'a> {
    /// A line without its end; true when invalid UTF-8 was replaced.
    Text(std::borrow::Cow<'a, str>, bool),
    /// A line over the limit was skipped; this many bytes of it were seen.
    TooLong(usize),
}

/// Splits the byte stream into lines, keeping a partial last line for the next read.
#[derive(Default)]
struct LineReader {
    buf: Vec<u8>,
    /// Inside an over-long line: drop bytes up to the next `\n`.
    skipping: Option<usize>,
}

impl LineReader {
    fn lines(&mut self, mut each: impl FnMut(Line<'_>)) {
        let mut start = 0;
        while let Some(nl) = self.buf[start..].iter().position(|&b| b == b'\n') {
            let end = start + nl;
            let raw = &self.buf[start..end];
            start = end + 1;
            if let Some(seen) = self.skipping.take() {
                each(Line::TooLong(seen + raw.len()));
                continue;
            }
            if raw.len() > MAX_LINE {
                each(Line::TooLong(raw.len()));
                continue;
            }
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            match std::str::from_utf8(raw) {
                Ok(s) => each(Line::Text(std::borrow::Cow::Borrowed(s), false)),
                Err(_) => each(Line::Text(String::from_utf8_lossy(raw), true)),
            }
        }
        self.buf.drain(..start);
        // A partial line longer than the limit will never be read: drop it as it comes.
        if self.buf.len() > MAX_LINE {
            let seen = self.skipping.unwrap_or(0) + self.buf.len();
            self.skipping = Some(seen);
            self.buf.clear();
        }
    }
}

/// `d` of the clock's time in wall time, but never less than `d` or the floor, whichever is
/// smaller.
fn wall(clock: &crate::clock::Clock, d: Duration) -> Duration {
    clock.to_wall_at_least(d, PROTOCOL_WALL_FLOOR)
}

/// `20 s`, `400 ms`.
fn human(d: Duration) -> String {
    if d.subsec_millis() == 0 && d.as_secs() > 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests;
