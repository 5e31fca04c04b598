//! `shopbridge bench shdr | mtconnect | shdr-latency`: the protocol drivers measured through
//! their real code paths, against peers on local sockets that this module plays.
//!
//! - `shdr`: one core (a current-thread runtime) runs the adapters' socket writes, the real SHDR
//!   drivers and a normalizer with the `okuma-osp` profile. Lines come from the Okuma capture
//!   beside the project (read in place) with fresh timestamps, else from a synthesized mix.
//! - `mtconnect`: a canned agent streams `/sample` as fast as the socket takes it, into the real
//!   MTConnect driver; the bench drains and counts its batches.
//! - `shdr-latency`: many paced adapters, the real drivers, the app's pipeline and a durable
//!   journal; a reader woken by each commit measures how old every new observation is.
//!
//! Each prints what it measured and how. Nothing here is asserted about speed.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::bench::{TempDir, cpu_seconds, fsync_floor, quantiles_ms, start_pipeline};
use crate::clock::Clock;
use crate::drivers::mtconnect::xml::{Obs, StreamsParser, StreamsSink};
use crate::drivers::shdr::{Parser, ShdrSpec};
use crate::drivers::{DriverBatch, DriverContext, DriverCounters, DriverEvent};
use crate::model::{MachineId, Timestamp};
use crate::normalize::{Normalizer, Profile, ProfileSource};

/// The channel between drivers and their consumer, as large as the app's.
const CHANNEL: usize = 1024;
/// What the SHDR benches' machines run.
const PROFILE: &str = "okuma-osp";
/// The key of the last line each throughput adapter sends: when the consumer has normalized
/// it, it has normalized everything before it.
const END_KEY: &str = "bench_end";

fn hist() -> anyhow::Result<hdrhistogram::Histogram<u64>> {
    Ok(hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 3)?)
}

fn okuma_profile() -> anyhow::Result<Arc<Profile>> {
    Ok(Arc::new(ProfileSource::default().load(PROFILE)?))
}

fn machine(i: usize) -> anyhow::Result<MachineId> {
    Ok(MachineId::new(&format!("okuma-{i:03}"))?)
}

fn sum(counters: &[Arc<DriverCounters>], field: impl Fn(&DriverCounters) -> &AtomicU64) -> u64 {
    counters
        .iter()
        .map(|c| field(c).load(Ordering::Relaxed))
        .sum()
}

/// An SHDR driver for one machine with `profile`'s item shapes, reading `address`; its counters.
fn spawn_shdr_driver(
    address: String,
    id: &MachineId,
    profile: &Profile,
    tx: mpsc::Sender<DriverBatch>,
    shutdown: &CancellationToken,
) -> Arc<DriverCounters> {
    let counters = DriverCounters::new("shdr", address.as_str());
    let ctx = DriverContext {
        machines: vec![id.clone()],
        tx,
        shutdown: shutdown.clone(),
        clock: Clock::system(),
        counters: counters.clone(),
    };
    let spec = ShdrSpec {
        address,
        heartbeat: None,
        machines: vec![(id.clone(), None)],
        items: profile.shdr_items().collect(),
    };
    tokio::spawn(crate::drivers::shdr::run(spec, ctx));
    counters
}

/// An SHDR time field in the form Okuma's adapter writes (`2022-08-08T13:51:34.7167146Z`).
fn okuma_time(t: Timestamp) -> String {
    let mut s = t.to_rfc3339();
    if s.ends_with('Z') {
        s.insert(s.len() - 1, '0');
    }
    s
}

// ---------------------------------------------------------------------------------------------
// bench shdr
// ---------------------------------------------------------------------------------------------

#[derive(Debug, clap::Args)]
pub struct ShdrArgs {
    /// SHDR lines to send, over all machines.
    #[arg(long, default_value_t = 1_000_000)]
    pub lines: u64,
    /// Adapters, each with its own connection and driver, sharing the lines.
    #[arg(long, default_value_t = 1)]
    pub machines: usize,
}

/// Typical data lines without their time field (`|key|value|…`), and where they came from.
struct LineMix {
    bodies: Vec<String>,
    origin: String,
}

/// The Okuma capture's data lines (read in place) when the capture is beside the project:
/// every line with a time field, except asset commands (and their documents) and the four
/// full-state dumps an adapter sends on connect (3 KB each). Else Okuma-like synthesized lines.
fn typical_lines() -> LineMix {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/mtconnect/okuma-osp-p300.shdr");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let bodies: Vec<String> = text
            .lines()
            .filter(|l| l.as_bytes().first().is_some_and(u8::is_ascii_digit))
            .filter(|l| !l.contains("|@") && l.len() <= 1000)
            .filter_map(|l| l.find('|').map(|i| l[i..].to_string()))
            .collect();
        if !bodies.is_empty() {
            let origin = format!(
                "{} data lines of {}",
                bodies.len(),
                path.canonicalize().unwrap_or(path).display()
            );
            return LineMix { bodies, origin };
        }
    }
    let bodies: Vec<String> = (0..1000u32)
        .map(|i| {
            let x = 5742.856 - f64::from(i % 500) * 0.731;
            match i % 4 {
                0 => format!(
                    "|X1actm|{x:.3}|X1actw|{:.4}|X1load|{}|Z1actm|{}|Z1load|{}",
                    x - 4702.959,
                    40 + i % 30,
                    4850 - i % 700,
                    i % 90
                ),
                1 => format!(
                    "|p1Fact|{}|p1LPathPos|{:.3} 0 {:.4}",
                    1200 + i % 300,
                    x - 4702.959,
                    269.0133 - f64::from(i % 100)
                ),
                2 => format!(
                    "|S1speed|{}|S1load|{}|YS1load|{}",
                    900 + i % 50,
                    i % 40,
                    i % 7
                ),
                _ => format!("|Z1load|{}", i % 90),
            }
        })
        .collect();
    LineMix {
        bodies,
        origin: "1,000 synthesized Okuma-like lines (the capture ../shared/data/mtconnect/okuma-osp-p300.shdr is not here)".to_string(),
    }
}

/// `lines` lines cycling through `bodies`, each with its own time, 1 µs apart from `start`,
/// then the end line.
fn stamp_lines(bodies: &[String], lines: usize, start: Timestamp) -> Vec<u8> {
    let mut out = String::with_capacity(lines * 72);
    for (i, body) in bodies.iter().cycle().take(lines).enumerate() {
        out.push_str(&okuma_time(Timestamp::from_micros(
            start.as_micros() + i as i64,
        )));
        out.push_str(body);
        out.push('\n');
    }
    let end = Timestamp::from_micros(start.as_micros() + lines as i64);
    let _ = writeln!(out, "{}|{END_KEY}|1", okuma_time(end));
    out.into_bytes()
}

/// What `bench shdr` measured through the driver.
#[derive(Debug)]
struct ShdrFigures {
    /// Lines the drivers read, without the end lines.
    lines: u64,
    observations: u64,
    conditions: u64,
    /// Records the normalizer made of them.
    records: u64,
    bad_input: u64,
    bytes: u64,
    secs: f64,
    cpu: f64,
}

/// Serves `stream` to the first client, then keeps the connection open until `stop`.
async fn bulk_adapter(
    listener: TcpListener,
    stream: Arc<Vec<u8>>,
    first_byte: Arc<OnceLock<Instant>>,
    stop: CancellationToken,
) {
    let Ok((mut sock, _)) = listener.accept().await else {
        return;
    };
    let _ = first_byte.set(Instant::now());
    for chunk in stream.chunks(64 * 1024) {
        if sock.write_all(chunk).await.is_err() {
            return;
        }
    }
    stop.cancelled().await;
}

/// `machines` adapters each send `stream` to a real SHDR driver; one consumer normalizes every
/// batch. Runs on the caller's runtime (the CLI gives it one thread).
async fn shdr_through_driver(
    stream: Arc<Vec<u8>>,
    stream_lines: u64,
    machines: usize,
    profile: Arc<Profile>,
) -> anyhow::Result<ShdrFigures> {
    let stop = CancellationToken::new();
    let _stop_guard = stop.clone().drop_guard();
    let (tx, mut rx) = mpsc::channel::<DriverBatch>(CHANNEL);
    let first_byte = Arc::new(OnceLock::new());
    let mut normalizer = Normalizer::new();
    let mut counters = Vec::new();
    for i in 0..machines {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?.to_string();
        tokio::spawn(bulk_adapter(
            listener,
            stream.clone(),
            first_byte.clone(),
            stop.clone(),
        ));
        let id = machine(i)?;
        normalizer.set_profile(id.clone(), profile.clone());
        counters.push(spawn_shdr_driver(address, &id, &profile, tx.clone(), &stop));
    }
    drop(tx);
    let cpu0 = cpu_seconds();
    let (mut ended, mut observations, mut conditions, mut records) = (0, 0u64, 0u64, 0u64);
    let mut out = Vec::new();
    while ended < machines {
        let batch = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .context("no batch from the SHDR drivers for 30 s")?
            .context("the SHDR drivers stopped")?;
        // The end line is the last thing its adapter sends, so the last event of its batch.
        if let Some(DriverEvent::Observation(o)) = batch.last() {
            if o.key.as_str() == END_KEY {
                ended += 1;
            }
        }
        for ev in &batch {
            match ev {
                DriverEvent::Observation(_) => observations += 1,
                DriverEvent::Condition(_) => conditions += 1,
                _ => {}
            }
        }
        normalizer.process_batch(batch, &mut out);
        records += out.len() as u64;
        out.clear();
    }
    let secs = first_byte.get().map_or(0.0, |t| t.elapsed().as_secs_f64());
    let cpu = cpu_seconds() - cpu0;
    let m = machines as u64;
    Ok(ShdrFigures {
        lines: sum(&counters, |c| &c.messages).saturating_sub(m),
        observations: observations - m,
        conditions,
        records: records.saturating_sub(m),
        bad_input: sum(&counters, |c| &c.bad_input),
        bytes: stream.len() as u64 * m,
        secs: secs.max(1e-9),
        cpu: cpu.max(0.0),
    })
    .inspect(|f| {
        if f.lines != stream_lines * m {
            eprintln!(
                "warning: the drivers counted {} lines, {} were sent",
                f.lines,
                stream_lines * m
            );
        }
    })
}

/// `Parser::push_line` alone over the lines of `stream`, cycled until `lines` lines:
/// (lines, items, seconds).
fn shdr_parse_only(
    stream: &[u8],
    lines: u64,
    profile: &Profile,
) -> anyhow::Result<(u64, u64, f64)> {
    let text = std::str::from_utf8(stream)?;
    let all: Vec<&str> = text.lines().collect();
    let mut parser = Parser::with_shapes(profile.shdr_items().map(|(k, m)| (k, m.shape())));
    let mut items = Vec::with_capacity(64);
    let (mut n, mut found) = (0u64, 0u64);
    let t = Instant::now();
    'outer: loop {
        for l in &all {
            if n >= lines.max(1) {
                break 'outer;
            }
            let _ = parser.push_line(l, &mut items);
            found += items.len() as u64;
            items.clear();
            n += 1;
        }
    }
    Ok((n, found, t.elapsed().as_secs_f64().max(1e-9)))
}

pub fn shdr(a: ShdrArgs) -> anyhow::Result<i32> {
    let machines = a.machines.max(1);
    let per_machine = (a.lines / machines as u64).max(1);
    let mix = typical_lines();
    let profile = okuma_profile()?;
    let stream = Arc::new(stamp_lines(
        &mix.bodies,
        per_machine as usize,
        Clock::system().now(),
    ));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let f = rt.block_on(shdr_through_driver(
        stream.clone(),
        per_machine,
        machines,
        profile.clone(),
    ))?;
    drop(rt);
    let (pl, pi, ps) = shdr_parse_only(&stream, f.lines, &profile)?;
    println!(
        "SHDR on one core (current-thread runtime: {machines} adapter(s) writing, {machines} real SHDR driver(s), one consumer normalizing with the {PROFILE} profile)"
    );
    println!(
        "  lines: {}, fresh timestamps 1 µs apart, {:.1} bytes/line",
        mix.origin,
        f.bytes as f64 / (f.lines + machines as u64) as f64
    );
    println!(
        "  first byte to last line normalized: {} lines in {:.3} s = {:.0} lines/s; {} observations + {} conditions = {:.0} observations/s; {} records out; {} bad lines; {:.1} MB/s; CPU {:.2} cores",
        f.lines,
        f.secs,
        f.lines as f64 / f.secs,
        f.observations,
        f.conditions,
        (f.observations + f.conditions) as f64 / f.secs,
        f.records,
        f.bad_input,
        f.bytes as f64 / f.secs / 1e6,
        f.cpu / f.secs
    );
    println!(
        "  parser alone (Parser::push_line over the same lines, no I/O): {pl} lines in {ps:.3} s = {:.0} lines/s, {:.0} items/s",
        pl as f64 / ps,
        pi as f64 / ps
    );
    Ok(0)
}

// ---------------------------------------------------------------------------------------------
// bench mtconnect
// ---------------------------------------------------------------------------------------------

#[derive(Debug, clap::Args)]
pub struct MtconnectArgs {
    /// Observations to stream (at least).
    #[arg(long, default_value_t = 2_000_000)]
    pub observations: u64,
    /// Devices the agent serves (one machine each, all on one stream).
    #[arg(long, default_value_t = 4)]
    pub devices: usize,
    /// Observations per streamed part.
    #[arg(long, default_value_t = 1000)]
    pub part: usize,
}

const BOUNDARY: &str = "bench-part";
const AGENT_BUFFER: u64 = 131_072;

/// The canned agent: `devices` devices of four items each (the shapes of the ignored test
/// `drivers::mtconnect::throughput`: a spindle speed and a load sample, an execution and a
/// part count event).
struct CannedAgent {
    devices: usize,
    per_device: usize,
    stop: CancellationToken,
    /// When `/sample` was asked for, and the driver's byte count then.
    sample_started: OnceLock<(Instant, u64)>,
    driver: Arc<DriverCounters>,
    /// Time spent writing parts, in nanoseconds.
    render_nanos: AtomicU64,
}

impl CannedAgent {
    fn probe(&self) -> String {
        let mut s = String::from(
            r#"<?xml version="1.0" encoding="UTF-8"?><MTConnectDevices xmlns="urn:mtconnect.org:MTConnectDevices:2.0"><Header instanceId="1" bufferSize="131072" sender="bench" version="2.0"/><Devices>"#,
        );
        for d in 0..self.devices {
            let _ = write!(
                s,
                r#"<Device id="d{d}" name="VMC-{d}" uuid="vmc-{d}"><DataItems><DataItem category="EVENT" id="avail{d}" type="AVAILABILITY"/></DataItems><Components><Controller id="c{d}"><Components><Path id="p{d}"><DataItems><DataItem category="SAMPLE" id="Sspeed{d}" name="Sspeed" type="SPINDLE_SPEED" subType="ACTUAL" units="REVOLUTION/MINUTE"/><DataItem category="EVENT" id="exec{d}" type="EXECUTION"/><DataItem category="EVENT" id="pc{d}" type="PART_COUNT"/><DataItem category="SAMPLE" id="load{d}" type="LOAD" units="PERCENT"/></DataItems></Path></Components></Controller></Components></Device>"#
            );
        }
        s.push_str("</Devices></MTConnectDevices>");
        s
    }

    /// A Streams document of `per_device` observations per device numbered from `from`, stamped
    /// from `now` on; returns its `nextSequence`.
    fn streams(
        out: &mut String,
        devices: usize,
        per_device: usize,
        from: u64,
        now: Timestamp,
    ) -> u64 {
        let next = from + (devices * per_device) as u64;
        let first = next.saturating_sub(AGENT_BUFFER).max(1);
        let _ = write!(
            out,
            r#"<?xml version="1.0" encoding="UTF-8"?><MTConnectStreams xmlns="urn:mtconnect.org:MTConnectStreams:2.0"><Header creationTime="{}" sender="bench" instanceId="1" version="2.0" bufferSize="{AGENT_BUFFER}" firstSequence="{first}" lastSequence="{}" nextSequence="{next}"/><Streams>"#,
            now.to_rfc3339(),
            next - 1
        );
        let stamp = now.to_rfc3339();
        // `2026-05-01T12:00:00.` and the microseconds, which each observation advances.
        let (prefix, micros) = (
            &stamp[..stamp.len() - 7],
            now.as_micros().rem_euclid(1_000_000),
        );
        for d in 0..devices {
            let _ = write!(
                out,
                r#"<DeviceStream name="VMC-{d}" uuid="vmc-{d}"><ComponentStream component="Path" componentId="p{d}">"#
            );
            for section in ["Samples", "Events"] {
                let _ = write!(out, "<{section}>");
                for j in 0..per_device {
                    let seq = from + (d * per_device + j) as u64;
                    let us = (micros + j as i64).min(999_999);
                    let _ = match (section, j % 4) {
                        ("Samples", 0) => write!(
                            out,
                            r#"<SpindleSpeed dataItemId="Sspeed{d}" timestamp="{prefix}{us:06}Z" sequence="{seq}" name="Sspeed" subType="ACTUAL">{}.5</SpindleSpeed>"#,
                            3000 + seq % 500
                        ),
                        ("Samples", 3) => write!(
                            out,
                            r#"<Load dataItemId="load{d}" timestamp="{prefix}{us:06}Z" sequence="{seq}">{}</Load>"#,
                            seq % 100
                        ),
                        ("Events", 1) => write!(
                            out,
                            r#"<Execution dataItemId="exec{d}" timestamp="{prefix}{us:06}Z" sequence="{seq}">{}</Execution>"#,
                            if seq % 64 < 60 { "ACTIVE" } else { "READY" }
                        ),
                        ("Events", 2) => write!(
                            out,
                            r#"<PartCount dataItemId="pc{d}" timestamp="{prefix}{us:06}Z" sequence="{seq}">{}</PartCount>"#,
                            seq / 7
                        ),
                        _ => Ok(()),
                    };
                }
                let _ = write!(out, "</{section}>");
            }
            out.push_str("</ComponentStream></DeviceStream>");
        }
        out.push_str("</Streams></MTConnectStreams>");
        next
    }

    /// One multipart part (boundary, headers, document) holding the observations from `from`.
    fn part(&self, from: u64) -> (Bytes, u64) {
        let t = Instant::now();
        let mut doc = String::with_capacity(self.devices * self.per_device * 140 + 512);
        let next = Self::streams(
            &mut doc,
            self.devices,
            self.per_device,
            from,
            Clock::system().now(),
        );
        let part = format!(
            "--{BOUNDARY}\r\nContent-type: text/xml\r\nContent-length: {}\r\n\r\n{doc}\r\n",
            doc.len()
        );
        self.render_nanos
            .fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        (Bytes::from(part), next)
    }
}

fn xml(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/xml")], body).into_response()
}

async fn agent_probe(State(a): State<Arc<CannedAgent>>) -> Response {
    xml(a.probe())
}

async fn agent_current(State(a): State<Arc<CannedAgent>>) -> Response {
    let mut doc = String::new();
    CannedAgent::streams(&mut doc, a.devices, 4, 1, Clock::system().now());
    xml(doc)
}

/// `/sample?from=…`: parts without end, each as soon as the socket took the last one.
async fn agent_sample(
    State(a): State<Arc<CannedAgent>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(from) = q.get("from").and_then(|f| f.parse::<u64>().ok()) else {
        return (StatusCode::BAD_REQUEST, "from= is required").into_response();
    };
    let _ = a
        .sample_started
        .set((Instant::now(), a.driver.bytes.load(Ordering::Relaxed)));
    let body = futures_util::stream::unfold((a, from), |(a, from)| async move {
        if a.stop.is_cancelled() {
            return None;
        }
        let (part, next) = a.part(from);
        Some((Ok::<_, Infallible>(part), (a, next)))
    });
    (
        [(
            header::CONTENT_TYPE,
            format!("multipart/x-mixed-replace;boundary={BOUNDARY}"),
        )],
        Body::from_stream(body),
    )
        .into_response()
}

/// What `bench mtconnect` measured.
#[derive(Debug)]
struct MtconnectFigures {
    observations: u64,
    bytes: u64,
    secs: f64,
    cpu: f64,
    render_secs: f64,
    gaps: u64,
    bad_input: u64,
    link_errors: u64,
    /// One part's document, for the parser-only figure.
    sample_doc: String,
}

async fn mtconnect_through_driver(
    observations: u64,
    devices: usize,
    part: usize,
) -> anyhow::Result<MtconnectFigures> {
    let devices = devices.max(1);
    let per_device = (part / devices).max(4);
    let stop = CancellationToken::new();
    let _stop_guard = stop.clone().drop_guard();
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let counters = DriverCounters::new("mtconnect", url.as_str());
    let agent = Arc::new(CannedAgent {
        devices,
        per_device,
        stop: stop.clone(),
        sample_started: OnceLock::new(),
        driver: counters.clone(),
        render_nanos: AtomicU64::new(0),
    });
    let app = axum::Router::new()
        .route("/probe", axum::routing::get(agent_probe))
        .route("/current", axum::routing::get(agent_current))
        .route("/sample", axum::routing::get(agent_sample))
        .with_state(agent.clone());
    // Not awaited at the end: an endless stream never lets a graceful shutdown finish.
    tokio::spawn(async move { axum::serve(listener, app).await });

    let (tx, mut rx) = mpsc::channel::<DriverBatch>(CHANNEL);
    let mut machines = Vec::new();
    for d in 0..devices {
        machines.push((
            MachineId::new(&format!("vmc-{d}"))?,
            Some(format!("VMC-{d}")),
        ));
    }
    let spec = crate::drivers::mtconnect::AgentSpec {
        url,
        interval: Duration::from_millis(10),
        heartbeat: Duration::from_secs(1),
        machines: machines.clone(),
    };
    let ctx = DriverContext {
        machines: machines.into_iter().map(|(m, _)| m).collect(),
        tx,
        shutdown: stop.clone(),
        clock: Clock::system(),
        counters: counters.clone(),
    };
    tokio::spawn(crate::drivers::mtconnect::run(spec, ctx));
    let cpu0 = cpu_seconds();
    // The /current snapshot: one observation of each item of each device.
    let want = observations + (devices * 4) as u64;
    let mut seen = 0u64;
    while seen < want {
        let batch = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .context("no batch from the MTConnect driver for 30 s")?
            .context("the MTConnect driver stopped")?;
        seen += batch
            .iter()
            .filter(|e| matches!(e, DriverEvent::Observation(_)))
            .count() as u64;
    }
    let (t0, bytes0) = *agent
        .sample_started
        .get()
        .context("the driver never asked for /sample")?;
    let secs = t0.elapsed().as_secs_f64().max(1e-9);
    let cpu = cpu_seconds() - cpu0;
    let mut sample_doc = String::new();
    CannedAgent::streams(
        &mut sample_doc,
        devices,
        per_device,
        1,
        Clock::system().now(),
    );
    Ok(MtconnectFigures {
        observations: seen - (devices * 4) as u64,
        bytes: counters.bytes.load(Ordering::Relaxed) - bytes0,
        secs,
        cpu,
        render_secs: agent.render_nanos.load(Ordering::Relaxed) as f64 / 1e9,
        gaps: counters.gaps.load(Ordering::Relaxed),
        bad_input: counters.bad_input.load(Ordering::Relaxed),
        link_errors: counters.link_errors.load(Ordering::Relaxed),
        sample_doc,
    })
}

/// Counts observations and types their values, as the driver's sink does before it builds
/// events.
struct CountSink(u64);

impl StreamsSink for CountSink {
    fn device_stream(&mut self, _name: &str, _uuid: Option<&str>) {}
    fn observation(&mut self, obs: &Obs<'_>) {
        std::hint::black_box(obs.value());
        self.0 += 1;
    }
}

/// The Streams parser alone over `doc` until `observations`: (observations, bytes, seconds).
fn mtconnect_parse_only(doc: &str, observations: u64) -> anyhow::Result<(u64, u64, f64)> {
    let mut parser = StreamsParser::new();
    let mut sink = CountSink(0);
    let mut bytes = 0u64;
    let t = Instant::now();
    while sink.0 < observations.max(1) {
        parser.parse(doc.as_bytes(), &mut sink)?;
        bytes += doc.len() as u64;
    }
    Ok((sink.0, bytes, t.elapsed().as_secs_f64().max(1e-9)))
}

pub fn mtconnect(a: MtconnectArgs) -> anyhow::Result<i32> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let f = rt.block_on(mtconnect_through_driver(a.observations, a.devices, a.part))?;
    drop(rt);
    let (po, pb, ps) = mtconnect_parse_only(&f.sample_doc, f.observations)?;
    let per_part = f.sample_doc.matches("sequence=").count();
    println!(
        "MTConnect: a canned agent (axum, this process) streams /sample as multipart/x-mixed-replace, parts of {per_part} observations over {} devices (SpindleSpeed, Load, Execution, PartCount, as the ignored test drivers::mtconnect::throughput), as fast as the socket takes them; the real driver reads them; the bench drains its batches",
        a.devices.max(1)
    );
    println!(
        "  /sample request to {} observations counted: {:.3} s = {:.0} observations/s, {:.1} MB/s of documents ({:.0} bytes/observation); CPU {:.2} cores, of which rendering parts {:.2}; gaps {}, bad input {}, link errors {}",
        f.observations,
        f.secs,
        f.observations as f64 / f.secs,
        f.bytes as f64 / f.secs / 1e6,
        f.bytes as f64 / f.observations.max(1) as f64,
        f.cpu / f.secs,
        f.render_secs / f.secs,
        f.gaps,
        f.bad_input,
        f.link_errors
    );
    println!(
        "  parser alone (StreamsParser + value typing over one part, no I/O, no events): {po} observations in {ps:.3} s = {:.0} observations/s, {:.1} MB/s",
        po as f64 / ps,
        pb as f64 / ps / 1e6
    );
    Ok(0)
}

// ---------------------------------------------------------------------------------------------
// bench shdr-latency
// ---------------------------------------------------------------------------------------------

#[derive(Debug, clap::Args)]
pub struct ShdrLatencyArgs {
    /// Adapters, one machine and one driver each.
    #[arg(long, default_value_t = 50)]
    pub machines: usize,
    /// Lines per second per adapter.
    #[arg(long, default_value_t = 10)]
    pub rate: u32,
    /// Seconds measured (after a 2 s warm-up).
    #[arg(long, default_value_t = 20)]
    pub seconds: u64,
    /// Where to put the benchmark's journal (default: a fresh temporary directory).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// Pairs on every paced line.
const PACED_PAIRS: usize = 8;

/// One Okuma-like line: execution, spindle, axes, feed and part count.
fn paced_line(tick: u64, machine: usize, now: Timestamp) -> String {
    let k = tick + machine as u64 * 13;
    format!(
        "{}|pexecution|{}|S1speed|{}|S1load|{}|X1actm|{:.3}|Z1actm|{:.4}|p1Fact|{}|pFovr|100|ppartcount|{}\n",
        okuma_time(now),
        if k % 50 < 45 { "ACTIVE" } else { "READY" },
        900 + k % 300,
        k % 40,
        5742.856 - (k % 500) as f64 * 0.731,
        4850.0 - (k % 700) as f64 * 0.25,
        1200 + k % 300,
        k / 50
    )
}

/// Writes `line(tick)` every period (offset by `phase`) to the first client, until `stop`.
pub(super) async fn paced_adapter(
    listener: TcpListener,
    period: Duration,
    phase: Duration,
    stop: CancellationToken,
    mut line: impl FnMut(u64) -> String,
) {
    let Ok((mut sock, _)) = listener.accept().await else {
        return;
    };
    let _ = sock.set_nodelay(true);
    tokio::time::sleep(phase).await;
    let mut iv = tokio::time::interval(period);
    iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tick = 0u64;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = iv.tick() => {}
        }
        if sock.write_all(line(tick).as_bytes()).await.is_err() {
            return;
        }
        tick += 1;
    }
}

/// What `bench shdr-latency` measured (microseconds).
struct LatencyFigures {
    /// Line read by the driver → durable.
    arrival: hdrhistogram::Histogram<u64>,
    /// Line stamped and written by the adapter → durable.
    written: hdrhistogram::Histogram<u64>,
    stats: crate::journal::JournalStats,
}

async fn shdr_latency_run(
    dir: &Path,
    machines: usize,
    rate: u32,
    warmup: Duration,
    seconds: Duration,
) -> anyhow::Result<LatencyFigures> {
    let profile = okuma_profile()?;
    let ids: Vec<MachineId> = (0..machines).map(machine).collect::<Result<_, _>>()?;
    let (journal, tx, pipeline) = start_pipeline(
        dir,
        ids.iter().map(|m| (m.clone(), profile.clone())).collect(),
    )?;
    let stop = CancellationToken::new();
    let _stop_guard = stop.clone().drop_guard();
    let period = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    for (i, id) in ids.iter().enumerate() {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?.to_string();
        // Spread over the period, as independent machines would be.
        let phase = period.mul_f64(i as f64 / machines.max(1) as f64);
        // Each line stamped with the wall clock.
        let clock = Clock::system();
        tokio::spawn(paced_adapter(
            listener,
            period,
            phase,
            stop.clone(),
            move |tick| paced_line(tick, i, clock.now()),
        ));
        spawn_shdr_driver(address, id, &profile, tx.clone(), &stop);
    }
    drop(tx);
    let (mut arrival, mut written) = (hist()?, hist()?);
    let clock = Clock::system();
    super::bench::watch_durable(&journal, &clock, warmup, seconds, |now, o| {
        let _ = arrival.record(now.micros_since(o.time.received).max(1) as u64);
        if let Some(src) = o.time.source {
            let _ = written.record(now.micros_since(src).max(1) as u64);
        }
    })
    .await?;
    stop.cancel();
    let _ = pipeline.await;
    let stats = journal.stats();
    journal.close_async().await;
    Ok(LatencyFigures {
        arrival,
        written,
        stats,
    })
}

pub fn shdr_latency(a: ShdrLatencyArgs) -> anyhow::Result<i32> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let tmp = TempDir::new(a.data_dir)?;
    fsync_floor(&tmp.path)?;
    let f = rt.block_on(shdr_latency_run(
        &tmp.path.join("shdr-latency"),
        a.machines,
        a.rate,
        Duration::from_secs(2),
        Duration::from_secs(a.seconds),
    ))?;
    super::bench::print_commits(&f.stats);
    println!(
        "SHDR line to durable journal append: {} adapters (TCP, nodelay) x 1 line of {PACED_PAIRS} pairs at {} Hz = {} records/s offered, real SHDR drivers, the app's pipeline ({PROFILE} profile), {} s measured after 2 s warm-up",
        a.machines,
        a.rate,
        a.machines * a.rate as usize * PACED_PAIRS,
        a.seconds
    );
    println!(
        "  from arrival (driver read the line): {} over {} observations",
        quantiles_ms(&f.arrival),
        f.arrival.len()
    );
    println!(
        "  from the line's own time (adapter stamped and wrote it): {}",
        quantiles_ms(&f.written)
    );
    Ok(0)
}

#[cfg(test)]
mod tests {
    //! Each bench at a tiny size: it runs, and counts what it was given. Speed is not asserted.
    use super::*;

    /// Runs `f` on a runtime of `workers` threads (1: current-thread); panics on its error.
    fn run<T>(workers: usize, f: impl std::future::Future<Output = anyhow::Result<T>>) -> T {
        let mut b = if workers <= 1 {
            tokio::runtime::Builder::new_current_thread()
        } else {
            tokio::runtime::Builder::new_multi_thread()
        };
        if workers > 1 {
            b.worker_threads(workers);
        }
        let rt = b.enable_all().build().unwrap_or_else(|e| panic!("{e}"));
        rt.block_on(f).unwrap_or_else(|e| panic!("{e:#}"))
    }

    #[test]
    fn shdr_bench_reads_every_line_it_sends() {
        let mix = typical_lines();
        let profile = okuma_profile().unwrap_or_else(|e| panic!("{e}"));
        let stream = Arc::new(stamp_lines(&mix.bodies, 1500, Clock::system().now()));
        let f = run(
            1,
            shdr_through_driver(stream.clone(), 1500, 2, profile.clone()),
        );
        assert_eq!(f.lines, 3000, "{f:?}");
        assert_eq!(f.bad_input, 0, "{f:?}");
        assert!(f.observations + f.conditions >= 3000, "{f:?}");
        assert!(f.records >= f.observations, "{f:?}");
        let (lines, items, _) =
            shdr_parse_only(&stream, 1500, &profile).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(lines, 1500);
        // The driver turns each parsed item into one event (no messages in these lines).
        assert_eq!(items * 2, f.observations + f.conditions, "{f:?}");
    }

    #[test]
    fn mtconnect_bench_streams_numbered_parts_without_gaps() {
        let f = run(2, mtconnect_through_driver(5000, 2, 400));
        assert!(f.observations >= 5000, "{f:?}");
        assert_eq!((f.gaps, f.bad_input, f.link_errors), (0, 0, 0), "{f:?}");
        let (n, _, _) = mtconnect_parse_only(&f.sample_doc, 1000).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(n, 1200, "three parts of 2 x 200");
    }

    #[test]
    fn shdr_latency_bench_sees_lines_become_durable() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let f = run(
            2,
            shdr_latency_run(
                dir.path(),
                3,
                20,
                Duration::from_millis(300),
                Duration::from_secs(1),
            ),
        );
        // 3 adapters x 20 lines/s x 8 pairs for about a second.
        assert!(f.arrival.len() >= 100, "{}", f.arrival.len());
        assert_eq!(f.arrival.len(), f.written.len());
        assert!(f.stats.commits_total > 0);
    }
}
