//! `shopbridge bench sparkplug`: the Sparkplug B edge node against Mosquitto on loopback.
//!
//! Three figures, each with a subscriber in this process (rumqttc, decoding with the bridge's
//! payload code) on a Mosquitto the bench starts on a free port:
//! - throughput: records appended to a journal at a set rate (N machines × M signals) and
//!   published by the real edge node, which runs alone on one thread so that its CPU is
//!   measured apart from the appender's;
//! - latency: a real bridge (`shopbridge run`, a child process) reading paced SHDR adapters;
//!   every line's value is its write time, so every DDATA metric tells its own latency;
//! - backlog: an hour of records from busy machines already in the journal when the edge node
//!   connects (an outage that just ended); every record must arrive once, in order, flagged
//!   historical.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::bench::{TempDir, free_port, process_cpu_seconds, quantiles_ms, stop_child};
use super::bench_protocols::paced_adapter;
use crate::clock::Clock;
use crate::config::{MqttBroker, MqttConfig, SparkplugConfig};
use crate::journal::{Journal, JournalOptions, StartAt};
use crate::model::{
    MachineId, Observation, Quality, RecordKind, SignalId, Taxonomy, Timestamp, Timestamps, Value,
};
use crate::northbound::http::Telemetry;
use crate::northbound::sparkplug::payload::{self, Payload};
use crate::northbound::sparkplug::transport::{self, Connection, Wiring};

const GROUP: &str = "bench";
const NODE: &str = "bridge";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Figure {
    Throughput,
    Latency,
    Backlog,
}

#[derive(Debug, clap::Args)]
pub struct SparkplugArgs {
    /// Run one figure only (default: all three).
    #[arg(long, value_enum)]
    pub only: Option<Figure>,
    /// Throughput: machines (devices).
    #[arg(long, default_value_t = 500)]
    pub machines: usize,
    /// Throughput: signals per machine (metrics that change).
    #[arg(long, default_value_t = 50)]
    pub signals: usize,
    /// Throughput: records (metric changes) appended per second.
    #[arg(long, default_value_t = 300_000)]
    pub rate: u64,
    /// Throughput: seconds measured, after 3 s of warm-up.
    #[arg(long, default_value_t = 20)]
    pub seconds: u64,
    /// Latency: machines, each an SHDR adapter read by a real bridge.
    #[arg(long, default_value_t = 50)]
    pub latency_machines: usize,
    /// Latency: lines per second per machine.
    #[arg(long, default_value_t = 10.0)]
    pub latency_rate: f64,
    /// Latency: seconds measured, after 5 s of warm-up.
    #[arg(long, default_value_t = 30)]
    pub latency_seconds: u64,
    /// Backlog: machines that kept running through the outage.
    #[arg(long, default_value_t = 50)]
    pub backlog_machines: usize,
    /// Backlog: records per second per machine during the outage (a busy machine).
    #[arg(long, default_value_t = 10.0)]
    pub backlog_rate: f64,
    /// Backlog: length of the outage, in seconds.
    #[arg(long, default_value_t = 3600)]
    pub backlog_seconds: u64,
    /// The Mosquitto binary (default: /usr/sbin/mosquitto, then `mosquitto` on PATH).
    #[arg(long)]
    pub mosquitto: Option<PathBuf>,
}

pub fn run(a: SparkplugArgs) -> anyhow::Result<i32> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let tmp = TempDir::new(None)?;
        let broker = Mosquitto::start(&tmp.path, a.mosquitto.as_deref())?;
        if matches!(a.only, None | Some(Figure::Throughput)) {
            throughput(&a, &tmp.path.join("throughput"), broker.port).await?;
        }
        if matches!(a.only, None | Some(Figure::Latency)) {
            latency(&a, &tmp.path.join("latency"), broker.port).await?;
        }
        if matches!(a.only, None | Some(Figure::Backlog)) {
            backlog(&a, &tmp.path.join("backlog"), broker.port).await?;
        }
        Ok(0)
    })
}

/// A Mosquitto of the bench's own, stopped on drop.
pub(super) struct Mosquitto {
    child: std::process::Child,
    pub(super) port: u16,
}

impl Mosquitto {
    pub(super) fn start(dir: &Path, bin: Option<&Path>) -> anyhow::Result<Self> {
        let bin = bin.map(Path::to_path_buf).unwrap_or_else(|| {
            let sbin = PathBuf::from("/usr/sbin/mosquitto");
            if sbin.exists() {
                sbin
            } else {
                PathBuf::from("mosquitto")
            }
        });
        let port = free_port()?;
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nset_tcp_nodelay true\n"
            ),
        )?;
        let child = std::process::Command::new(&bin)
            .arg("-c")
            .arg(&conf)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .with_context(|| {
                format!(
                    "cannot run {} (install the mosquitto package, or pass --mosquitto PATH)",
                    bin.display()
                )
            })?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            anyhow::ensure!(
                Instant::now() < deadline,
                "mosquitto did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Self { child, port })
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        stop_child(&mut self.child);
    }
}

fn sparkplug_config(port: u16) -> SparkplugConfig {
    SparkplugConfig {
        group_id: GROUP.into(),
        edge_node_id: NODE.into(),
        primary_host_id: None,
        rebirth_cooldown: Duration::from_secs(5),
        mqtt: MqttConfig {
            broker: MqttBroker::External {
                host: "127.0.0.1".into(),
                port,
                tls: None,
            },
            client_id: format!("shopbridge-bench-{}", std::process::id()),
            username: None,
            password: None,
            keep_alive: Duration::from_secs(30),
        },
    }
}

/// The edge node on a thread of its own (a current-thread runtime holding the journal
/// follower and the MQTT event loop), so that its CPU time can be read from /proc.
struct NodeThread {
    tid: Arc<AtomicI32>,
    stop: CancellationToken,
    handle: Option<std::thread::JoinHandle<()>>,
    telemetry: Arc<Telemetry>,
}

impl NodeThread {
    fn start(
        journal: &Journal,
        dir: &Path,
        port: u16,
        machines: &[MachineId],
        signals: &[String],
    ) -> Self {
        let cfg = sparkplug_config(port);
        let telemetry = Arc::new(Telemetry::default());
        let wiring = Wiring {
            journal: journal.clone(),
            machines: machines
                .iter()
                .map(|m| (m.clone(), m.as_str().to_string(), signals.to_vec()))
                .collect(),
            data_dir: dir.to_path_buf(),
            clock: Clock::system(),
            commands: crate::context::commands::Commands::new(
                journal.clone(),
                Taxonomy::default(),
                machines.iter().cloned(),
                Clock::system(),
            ),
            telemetry: telemetry.clone(),
        };
        let conn = Connection {
            host: "127.0.0.1".into(),
            port,
            tls: None,
            embedded: false,
        };
        let stop = CancellationToken::new();
        let tid = Arc::new(AtomicI32::new(0));
        let handle = {
            let (stop, tid) = (stop.clone(), tid.clone());
            std::thread::Builder::new()
                .name("sparkplug-node".into())
                .spawn(move || {
                    // SAFETY: gettid has no preconditions.
                    tid.store(unsafe { libc::gettid() }, Ordering::SeqCst);
                    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    else {
                        return;
                    };
                    rt.block_on(transport::run(cfg, conn, wiring, stop));
                })
                .ok()
        };
        Self {
            tid,
            stop,
            handle,
            telemetry,
        }
    }

    fn cpu_seconds(&self) -> f64 {
        // /proc/<tid>/stat would count the whole process; the task entry counts the thread.
        process_cpu_seconds(&format!("self/task/{}", self.tid.load(Ordering::SeqCst)))
    }

    fn stop(mut self) {
        self.stop.cancel();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// What the subscriber saw.
#[derive(Default)]
struct Seen {
    births: AtomicU64,
    ddata: AtomicU64,
    metrics: AtomicU64,
    historical: AtomicU64,
    /// Per device: the integer values of its Signals/… metrics, in arrival order (backlog).
    values: Mutex<HashMap<String, Vec<i64>>>,
    latency: Mutex<Option<hdrhistogram::Histogram<u64>>>,
    last_at: Mutex<Option<Instant>>,
    first_birth: Mutex<Option<Instant>>,
    keep_values: AtomicBool,
}

/// A subscriber to every Sparkplug message of the bench group; `t0` is the latency clock's
/// start (metric values are µs since `t0` in the latency run).
async fn subscriber(port: u16, seen: Arc<Seen>, t0: Instant) -> anyhow::Result<AsyncClient> {
    let mut opts = MqttOptions::new(
        format!("shopbridge-bench-sub-{}", std::process::id()),
        "127.0.0.1",
        port,
    );
    opts.set_max_packet_size(64 << 20, 64 << 20)
        .set_keep_alive(Duration::from_secs(30));
    let (client, mut el) = AsyncClient::new(opts, 1024);
    client
        .subscribe(format!("spBv1.0/{GROUP}/#"), QoS::AtMostOnce)
        .await?;
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut ready = Some(ready_tx);
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(());
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    on_message(&seen, &p.topic, &p.payload, t0)
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), ready_rx)
        .await
        .context("the subscriber was not subscribed within 10 s")??;
    Ok(client)
}

fn on_message(seen: &Seen, topic: &str, bytes: &[u8], t0: Instant) {
    let now = Instant::now();
    let kind = topic.split('/').nth(2).unwrap_or("");
    if kind == "NBIRTH" {
        if let Ok(mut f) = seen.first_birth.lock() {
            f.get_or_insert(now);
        }
    }
    if kind == "DBIRTH" {
        seen.births.fetch_add(1, Ordering::Relaxed);
        return;
    }
    if kind != "DDATA" {
        return;
    }
    let Ok(p) = Payload::decode_bytes(bytes) else {
        return;
    };
    let device = topic.rsplit('/').next().unwrap_or("").to_string();
    seen.ddata.fetch_add(1, Ordering::Relaxed);
    seen.metrics
        .fetch_add(p.metrics.len() as u64, Ordering::Relaxed);
    let historical = p
        .metrics
        .iter()
        .filter(|m| m.is_historical == Some(true))
        .count();
    seen.historical
        .fetch_add(historical as u64, Ordering::Relaxed);
    let keep = seen.keep_values.load(Ordering::Relaxed);
    let mut lat = seen.latency.lock().ok();
    let mut values = keep.then(|| seen.values.lock().ok()).flatten();
    let us = t0.elapsed().as_micros() as u64;
    for m in &p.metrics {
        let Some(payload::Value::String(s)) = &m.value else {
            continue;
        };
        if let Some(Some(h)) = lat.as_deref_mut() {
            if let Ok(sent) = s.parse::<f64>() {
                let _ = h.record(us.saturating_sub(sent as u64).max(1));
            }
        }
        if let Some(v) = values.as_deref_mut() {
            if let Ok(n) = s.parse::<i64>() {
                v.entry(device.clone()).or_default().push(n);
            }
        }
    }
    if let Ok(mut l) = seen.last_at.lock() {
        *l = Some(now);
    }
}

fn ids(n: usize, prefix: &str) -> anyhow::Result<Vec<MachineId>> {
    (0..n)
        .map(|i| MachineId::new(&format!("{prefix}{i:04}")).map_err(|e| anyhow::anyhow!("{e}")))
        .collect()
}

fn signal_names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("s{i:02}")).collect()
}

fn observation(machine: &MachineId, signal: &SignalId, value: Value, t: Timestamp) -> RecordKind {
    RecordKind::Observation(Observation {
        machine: machine.clone(),
        signal: signal.clone(),
        value,
        quality: Quality::Good,
        time: Timestamps {
            source: Some(t),
            received: t,
            aligned: t,
        },
    })
}

async fn wait_for<F: Fn() -> bool>(what: &str, timeout: Duration, f: F) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while !f() {
        anyhow::ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

async fn throughput(a: &SparkplugArgs, dir: &Path, port: u16) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let journal = Journal::open(dir, JournalOptions::default())?;
    let machines = ids(a.machines, "m")?;
    let names = signal_names(a.signals);
    let signals: Vec<SignalId> = names.iter().map(|s| SignalId::new(s)).collect();
    let seen = Arc::new(Seen::default());
    let _sub = subscriber(port, seen.clone(), Instant::now()).await?;
    let node = NodeThread::start(&journal, dir, port, &machines, &names);
    wait_for("the DBIRTHs", Duration::from_secs(30), || {
        seen.births.load(Ordering::Relaxed) >= machines.len() as u64
    })
    .await?;

    // The appender: every 10 ms, rate/100 records, round robin over machines and signals.
    let stop = CancellationToken::new();
    let appender = {
        let (journal, stop) = (journal.clone(), stop.clone());
        let per_tick = (a.rate / 100).max(1) as usize;
        let (machines, signals) = (machines.clone(), signals.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut k = 0u64;
            while !stop.is_cancelled() {
                tick.tick().await;
                let now = Clock::system().now();
                let batch: Vec<RecordKind> = (0..per_tick)
                    .map(|_| {
                        k += 1;
                        let m = &machines[(k as usize) % machines.len()];
                        let s = &signals[(k as usize / machines.len()) % signals.len()];
                        observation(m, s, Value::Float(k as f64 * 0.5), now)
                    })
                    .collect();
                if journal.append(batch).await.is_err() {
                    return;
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (m0, n0, p0) = (
        seen.metrics.load(Ordering::Relaxed),
        node.cpu_seconds(),
        super::bench::cpu_seconds(),
    );
    let seq0 = journal.last_seq();
    let wall0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(a.seconds)).await;
    let wall = wall0.elapsed().as_secs_f64();
    let (m1, n1, p1) = (
        seen.metrics.load(Ordering::Relaxed),
        node.cpu_seconds(),
        super::bench::cpu_seconds(),
    );
    let appended = journal.last_seq() - seq0;
    stop.cancel();
    let _ = appender.await;
    let lag = journal.last_seq().saturating_sub(
        node.telemetry
            .sparkplug_records_confirmed_total
            .load(Ordering::Relaxed),
    );
    node.stop();
    let metrics = (m1 - m0) as f64;
    println!(
        "Sparkplug throughput: {} machines × {} signals, {} records/s offered to the journal, the edge node publishing to Mosquitto on loopback, a subscriber on the same host; {} s measured after 3 s",
        a.machines, a.signals, a.rate, a.seconds
    );
    println!(
        "  DDATA metrics received: {:.0}/s (records appended meanwhile: {:.0}/s); backlog at the end: {lag} records",
        metrics / wall,
        appended as f64 / wall
    );
    println!(
        "  edge node thread (journal read, mapping, encoding, MQTT client): {:.1}% of one core; whole bench process (appender, journal, subscriber, node): {:.1}%",
        100.0 * (n1 - n0) / wall,
        100.0 * (p1 - p0) / wall
    );
    Ok(())
}

async fn latency(a: &SparkplugArgs, dir: &Path, port: u16) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let t0 = Instant::now();
    let stop = CancellationToken::new();
    let _stop_guard = stop.clone().drop_guard();
    let period = Duration::from_secs_f64(1.0 / a.latency_rate.max(0.01));
    let mut adapters = Vec::new();
    for i in 0..a.latency_machines {
        let l = TcpListener::bind("127.0.0.1:0").await?;
        adapters.push(l.local_addr()?.to_string());
        let phase = period.mul_f64(i as f64 / a.latency_machines.max(1) as f64);
        tokio::spawn(paced_adapter(l, period, phase, stop.clone(), move |_| {
            format!(
                "{}|S1speed|{}\n",
                Clock::system().now().to_rfc3339(),
                t0.elapsed().as_micros()
            )
        }));
    }
    let http_port = free_port()?;
    let mut config = format!(
        "[journal]\ndir = {:?}\n\n[http]\nlisten = \"127.0.0.1:{http_port}\"\n\n[log]\nlevel = \"warn\"\n\n\
         [sparkplug]\ngroup_id = \"{GROUP}\"\nedge_node_id = \"{NODE}\"\n\n[mqtt]\nurl = \"mqtt://127.0.0.1:{port}\"\n",
        dir.join("data").display().to_string()
    );
    for (i, addr) in adapters.iter().enumerate() {
        config.push_str(&format!(
            "\n[[machines]]\nid = \"m{i:04}\"\nname = \"Machine {i}\"\nprofile = \"okuma-osp\"\ndriver = {{ type = \"shdr\", address = \"{addr}\" }}\n"
        ));
    }
    let config_path = dir.join("bench-sparkplug.toml");
    std::fs::write(&config_path, config)?;
    let seen = Arc::new(Seen::default());
    let _sub = subscriber(port, seen.clone(), t0).await?;
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .args(["run", "--config"])
        .arg(&config_path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .spawn()?;
    let pid = child.id().to_string();
    let started = wait_for("the DBIRTHs", Duration::from_secs(30), || {
        seen.births.load(Ordering::Relaxed) >= a.latency_machines as u64
    })
    .await;
    if let Err(e) = started {
        stop_child(&mut child);
        return Err(e);
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    if let Ok(mut l) = seen.latency.lock() {
        *l = Some(hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 3)?);
    }
    let (cpu0, wall0) = (process_cpu_seconds(&pid), Instant::now());
    tokio::time::sleep(Duration::from_secs(a.latency_seconds)).await;
    let cpu = process_cpu_seconds(&pid) - cpu0;
    let wall = wall0.elapsed().as_secs_f64();
    let h = seen.latency.lock().ok().and_then(|mut l| l.take());
    stop_child(&mut child);
    stop.cancel();
    println!(
        "Sparkplug latency: {} machines over SHDR at {} lines/s each, through `shopbridge run` (drivers, pipeline, durable journal, edge node) and Mosquitto to a subscriber; {} s measured after 5 s",
        a.latency_machines, a.latency_rate, a.latency_seconds
    );
    if let Some(h) = h {
        println!(
            "  SHDR line written → DDATA metric at the subscriber: {} over {} metrics",
            quantiles_ms(&h),
            h.len()
        );
    }
    println!(
        "  bridge (shopbridge run, pid {pid}): {:.1}% of one core",
        100.0 * cpu / wall
    );
    Ok(())
}

async fn backlog(a: &SparkplugArgs, dir: &Path, port: u16) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let journal = Journal::open(dir, JournalOptions::default())?;
    // The edge node's cursor existed before the outage: its records are all unconfirmed.
    drop(journal.cursor("sparkplug", StartAt::End).await?);
    let machines = ids(a.backlog_machines, "b")?;
    let names = signal_names(10);
    let signals: Vec<SignalId> = names.iter().map(|s| SignalId::new(s)).collect();
    let per_machine = (a.backlog_rate * a.backlog_seconds as f64).round() as i64;
    let total = per_machine as u64 * machines.len() as u64;
    let end = Clock::system().now().as_micros();
    let start = end - a.backlog_seconds as i64 * 1_000_000;
    let step = (a.backlog_seconds as i64 * 1_000_000) / per_machine.max(1);
    eprintln!(
        "bench sparkplug: journaling the outage: {total} records ({} machines × {per_machine})",
        machines.len()
    );
    // Time order, machines interleaved; each machine's values count 1, 2, 3, … over its
    // signals in turn.
    let mut batch = Vec::with_capacity(50_000);
    for n in 1..=per_machine {
        let t = Timestamp::from_micros(start + n * step);
        for m in &machines {
            let s = &signals[(n as usize) % signals.len()];
            batch.push(observation(m, s, Value::Int(n), t));
        }
        if batch.len() >= 50_000 {
            journal.append(std::mem::take(&mut batch)).await?;
        }
    }
    if !batch.is_empty() {
        journal.append(batch).await?;
    }
    let seen = Arc::new(Seen::default());
    seen.keep_values.store(true, Ordering::SeqCst);
    let _sub = subscriber(port, seen.clone(), Instant::now()).await?;
    let t_connect = Instant::now();
    let node = NodeThread::start(&journal, dir, port, &machines, &names);
    // Done when every record arrived, or nothing arrived for 10 s.
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if seen.historical.load(Ordering::Relaxed) >= total {
            break;
        }
        let idle = seen
            .last_at
            .lock()
            .ok()
            .and_then(|l| *l)
            .map_or(t_connect.elapsed(), |l| l.elapsed());
        if idle > Duration::from_secs(10) {
            break;
        }
    }
    let cpu = node.cpu_seconds();
    let (first, last) = (
        seen.first_birth.lock().ok().and_then(|f| *f),
        seen.last_at.lock().ok().and_then(|l| *l),
    );
    node.stop();
    let values = seen.values.lock().map(|v| v.clone()).unwrap_or_default();
    let (mut lost, mut duplicated, mut disordered) = (0u64, 0u64, 0u64);
    for m in &machines {
        let got = values.get(m.as_str()).cloned().unwrap_or_default();
        let mut count = vec![0u32; per_machine as usize + 1];
        for w in got.windows(2) {
            if w[1] <= w[0] {
                disordered += 1;
            }
        }
        for v in &got {
            if let Some(c) = usize::try_from(*v).ok().and_then(|i| count.get_mut(i)) {
                *c += 1;
            }
        }
        lost += count[1..].iter().filter(|c| **c == 0).count() as u64;
        duplicated += count[1..]
            .iter()
            .map(|c| c.saturating_sub(1) as u64)
            .sum::<u64>();
    }
    let secs = match (first, last) {
        (Some(f), Some(l)) => l.duration_since(f).as_secs_f64(),
        _ => 0.0,
    };
    println!(
        "Sparkplug backlog replay: a {} s outage of {} machines at {} records/s each ({total} records journaled), then the edge node connects to Mosquitto",
        a.backlog_seconds, a.backlog_machines, a.backlog_rate
    );
    println!(
        "  replayed {} historical metrics in {secs:.2} s (NBIRTH → last DDATA): {:.0} records/s; lost {lost}, duplicated {duplicated}, out of order {disordered}",
        seen.historical.load(Ordering::Relaxed),
        seen.historical.load(Ordering::Relaxed) as f64 / secs.max(1e-9)
    );
    println!(
        "  edge node thread: {cpu:.2} CPU seconds ({:.0}% of one core over the replay)",
        100.0 * cpu / secs.max(1e-9)
    );
    Ok(())
}
