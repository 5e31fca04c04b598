//! `shopbridge bench …`: the figures the README reports, measured on this machine.
//!
//! Nothing here is asserted by CI: machines are noisy. Each command prints what it measured
//! and how, so a figure can be reproduced.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Subcommand;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::app::run_pipeline;
use crate::clock::Clock;
use crate::drivers::{DriverBatch, DriverEvent, RawObservation};
use crate::journal::{Journal, JournalOptions};
use crate::model::{MachineId, Quality, SignalId, Timestamp, Value};
use crate::northbound::http::Telemetry;

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Sustained records/s through normalization into the durable journal, and emit-to-durable
    /// latency at a fixed rate.
    Pipeline {
        /// Machines for the throughput run.
        #[arg(long, default_value_t = 500)]
        machines: usize,
        /// Signals per machine.
        #[arg(long, default_value_t = 50)]
        signals: usize,
        /// Seconds of the throughput run (0 skips it).
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Machines for the latency run (each sends every signal at --rate Hz).
        #[arg(long, default_value_t = 50)]
        latency_machines: usize,
        /// Updates per second per machine in the latency run.
        #[arg(long, default_value_t = 10)]
        rate: u32,
        /// Seconds of the latency run (0 skips it).
        #[arg(long, default_value_t = 20)]
        latency_seconds: u64,
        /// Where to put the benchmark's journal (default: a fresh temporary directory).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Time from starting `shopbridge demo` to the first 200 from /healthz.
    Startup {
        #[arg(long, default_value_t = 10)]
        runs: usize,
    },
    /// Resident memory of `shopbridge demo --machines N` after a while, and journal bytes on
    /// disk per record.
    Rss {
        #[arg(long, default_value_t = 50)]
        machines: u16,
        /// Minutes to let the demo run before measuring.
        #[arg(long, default_value_t = 10.0)]
        minutes: f64,
        #[arg(long, default_value_t = 1.0)]
        speed: f64,
    },
    /// SHDR lines parsed and normalized per second on one core, through the real driver.
    Shdr(super::bench_protocols::ShdrArgs),
    /// Observations per second from one streaming MTConnect agent, through the real driver.
    Mtconnect(super::bench_protocols::MtconnectArgs),
    /// SHDR line arrival (and line written) to durable journal append, many adapters.
    ShdrLatency(super::bench_protocols::ShdrLatencyArgs),
    /// OPC UA: a bridge with N SHDR machines and a load client with many monitored items;
    /// notifications delivered vs offered, server CPU and RSS, line-to-notification latency.
    Opcua(super::bench_opcua::OpcuaArgs),
    /// Sparkplug B: DDATA metrics/s to Mosquitto (500 machines × 50 signals), SHDR line →
    /// DDATA latency through a real bridge, and the backlog replay after a 1-hour outage.
    Sparkplug(super::bench_sparkplug::SparkplugArgs),
    /// Haas MDC: a full Q-command set per second from N simulated controls (a child
    /// `shopbridge simulate`), and the CPU the bridge's drivers spend on it.
    Haas(super::bench_polling::HaasArgs),
    /// Fanuc FOCAS/Ethernet: per-poll latency (status, program, part count and alarms in one
    /// request) of N simulated controls (a child `shopbridge simulate`), and the driver's CPU.
    Focas(super::bench_focas::FocasArgs),
    /// Plugins: observations/s through one plugin's pipe (the SDK's `flood` example), and the
    /// host's CPU.
    Plugin(super::bench_plugin::PluginArgs),
    /// Modbus TCP: registers/s read with coalescing from N devices (a child process of
    /// tokio-modbus servers), and the CPU the bridge's drivers spend on it.
    Modbus(super::bench_polling::ModbusArgs),
    /// The daily review of N machines × 3 shifts, computed from an interval index holding
    /// weeks of history.
    Review(super::bench_review::ReviewArgs),
    /// Soak: a bridge reading N simulated machines (sped up) for a long while, with Sparkplug,
    /// a REST client and small journal limits; RSS, open fds and journal size sampled, and
    /// their trends after a warm-up.
    Soak(super::bench_soak::SoakArgs),
    /// The devices `bench modbus` polls (run by it in a child process).
    #[command(hide = true)]
    ModbusDevices(super::bench_polling::ModbusDevicesArgs),
}

pub fn run(cmd: BenchCommand) -> anyhow::Result<i32> {
    match cmd {
        BenchCommand::Pipeline {
            machines,
            signals,
            seconds,
            latency_machines,
            rate,
            latency_seconds,
            data_dir,
        } => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let tmp = TempDir::new(data_dir)?;
                if seconds > 0 {
                    throughput(&tmp.path.join("throughput"), machines, signals, seconds).await?;
                    // Let the page cache write the throughput run's file back before timing
                    // latency, so that one run's writeback does not stall the other's fsyncs.
                    let _ = std::fs::remove_dir_all(tmp.path.join("throughput"));
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
                if latency_seconds == 0 {
                    return Ok(());
                }
                fsync_floor(&tmp.path)?;
                latency(
                    &tmp.path.join("latency"),
                    latency_machines,
                    signals,
                    rate,
                    latency_seconds,
                )
                .await
            })?;
            Ok(0)
        }
        BenchCommand::Startup { runs } => startup(runs),
        BenchCommand::Rss {
            machines,
            minutes,
            speed,
        } => rss(machines, minutes, speed),
        BenchCommand::Shdr(a) => super::bench_protocols::shdr(a),
        BenchCommand::Mtconnect(a) => super::bench_protocols::mtconnect(a),
        BenchCommand::ShdrLatency(a) => super::bench_protocols::shdr_latency(a),
        BenchCommand::Opcua(a) => super::bench_opcua::run(a),
        BenchCommand::Sparkplug(a) => super::bench_sparkplug::run(a),
        BenchCommand::Haas(a) => super::bench_polling::haas(a),
        BenchCommand::Modbus(a) => super::bench_polling::modbus(a),
        BenchCommand::Focas(a) => super::bench_focas::run(a),
        BenchCommand::Plugin(a) => super::bench_plugin::run(a),
        BenchCommand::ModbusDevices(a) => super::bench_polling::modbus_devices(a),
        BenchCommand::Review(a) => super::bench_review::run(a),
        BenchCommand::Soak(a) => super::bench_soak::run(a),
    }
}

/// A directory removed on drop unless the user named it.
pub(super) struct TempDir {
    pub(super) path: PathBuf,
    remove: bool,
}

impl TempDir {
    pub(super) fn new(given: Option<PathBuf>) -> anyhow::Result<Self> {
        let (path, remove) = match given {
            Some(p) => (p, false),
            None => (
                std::env::temp_dir().join(format!("shopbridge-bench-{}", std::process::id())),
                true,
            ),
        };
        std::fs::create_dir_all(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Self { path, remove })
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if self.remove {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

fn signal_ids(n: usize) -> Vec<SignalId> {
    let canonical = crate::model::signals::ALL;
    (0..n)
        .map(|i| match canonical.get(i) {
            Some(s) if i < 3 => SignalId::new(s),
            _ => SignalId::new(&format!("sig{i:03}")),
        })
        .collect()
}

fn machine_ids(n: usize) -> Vec<MachineId> {
    (0..n)
        .filter_map(|i| MachineId::new(&format!("bench-{i:04}")).ok())
        .collect()
}

/// One machine's update: every signal once, with realistic values.
fn batch(machine: &MachineId, sigs: &[SignalId], tick: u64, now: Timestamp) -> DriverBatch {
    sigs.iter()
        .enumerate()
        .map(|(i, s)| {
            let value = match i {
                0 => Value::text("AVAILABLE"),
                1 => Value::text(if tick % 20 < 15 { "ACTIVE" } else { "READY" }),
                2 => Value::text("AUTOMATIC"),
                i if i % 5 == 0 => Value::Int((tick / 7) as i64),
                i => Value::Float(1000.0 + ((tick * 31 + i as u64 * 17) % 977) as f64 * 0.25),
            };
            DriverEvent::Observation(RawObservation {
                machine: machine.clone(),
                key: s.clone(),
                value,
                quality: Quality::Good,
                source_time: Some(Timestamp::from_micros(now.as_micros() - 1500)),
                received: now,
                meta: None,
            })
        })
        .collect()
}

/// The app's own pipeline (normalization into the durable journal) on a fresh journal in `dir`,
/// with `profiles` for the machines that have one.
pub(super) fn start_pipeline(
    dir: &Path,
    profiles: Vec<(MachineId, Arc<crate::normalize::Profile>)>,
) -> anyhow::Result<(
    Journal,
    mpsc::Sender<DriverBatch>,
    tokio::task::JoinHandle<()>,
)> {
    let journal = Journal::open(dir, JournalOptions::default())?;
    let (tx, rx) = mpsc::channel::<DriverBatch>(1024);
    let pipeline = tokio::spawn(run_pipeline(
        rx,
        journal.clone(),
        Arc::new(Telemetry::default()),
        Clock::system(),
        profiles,
    ));
    Ok((journal, tx, pipeline))
}

async fn throughput(
    dir: &Path,
    machines: usize,
    signals: usize,
    seconds: u64,
) -> anyhow::Result<()> {
    let clock = Clock::system();
    let (journal, tx, pipeline) = start_pipeline(dir, Vec::new())?;
    let stop = CancellationToken::new();
    let sigs = Arc::new(signal_ids(signals));
    let ids = machine_ids(machines);
    // One producer task per machine, as one driver per machine would be.
    for m in ids {
        let tx = tx.clone();
        let stop = stop.clone();
        let sigs = sigs.clone();
        let clock = clock.clone();
        tokio::spawn(async move {
            let mut tick = 0u64;
            while !stop.is_cancelled() {
                if tx.send(batch(&m, &sigs, tick, clock.now())).await.is_err() {
                    return;
                }
                tick += 1;
            }
        });
    }
    drop(tx);
    // Warm up, then measure a steady window.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let s0 = journal.stats();
    let t0 = Instant::now();
    let cpu0 = cpu_seconds();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let s1 = journal.stats();
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    stop.cancel();
    let _ = pipeline.await;
    journal.close_async().await;
    let records = s1.appended_total - s0.appended_total;
    let commits = s1.commits_total - s0.commits_total;
    let per_s = records as f64 / elapsed;
    let stored = s1.appended_total.max(1);
    println!(
        "pipeline throughput: {machines} machines x {signals} signals, producers as fast as back-pressure allows"
    );
    println!("  {records} records durable in {elapsed:.2} s = {per_s:.0} records/s");
    println!(
        "  {commits} group commits ({:.0} records/commit, {:.1} commits/s), CPU {:.2} cores",
        records as f64 / commits.max(1) as f64,
        commits as f64 / elapsed,
        cpu / elapsed
    );
    println!(
        "  journal: {} encoded bytes, {} file bytes for {} records = {:.1} encoded / {:.1} on-disk bytes per record",
        s1.bytes,
        s1.file_bytes,
        stored,
        s1.bytes as f64 / stored as f64,
        s1.file_bytes as f64 / stored as f64
    );
    Ok(())
}

async fn latency(
    dir: &Path,
    machines: usize,
    signals: usize,
    rate: u32,
    seconds: u64,
) -> anyhow::Result<()> {
    let clock = Clock::system();
    let (journal, tx, pipeline) = start_pipeline(dir, Vec::new())?;
    let stop = CancellationToken::new();
    let sigs = Arc::new(signal_ids(signals));
    let period = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    for (i, m) in machine_ids(machines).into_iter().enumerate() {
        let tx = tx.clone();
        let stop = stop.clone();
        let sigs = sigs.clone();
        let clock = clock.clone();
        tokio::spawn(async move {
            // Spread machines over the period, as independent drivers would be.
            tokio::time::sleep(period.mul_f64(i as f64 / machines.max(1) as f64)).await;
            let mut iv = tokio::time::interval(period);
            iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut tick = 0u64;
            while !stop.is_cancelled() {
                iv.tick().await;
                if tx.send(batch(&m, &sigs, tick, clock.now())).await.is_err() {
                    return;
                }
                tick += 1;
            }
        });
    }
    drop(tx);
    // A reader woken by every commit measures now - emit time of each new observation.
    let mut hist = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let warmup = Duration::from_secs(2);
    watch_durable(
        &journal,
        &clock,
        warmup,
        Duration::from_secs(seconds),
        |now, o| {
            let _ = hist.record(now.micros_since(o.time.received).max(1) as u64);
        },
    )
    .await?;
    stop.cancel();
    let _ = pipeline.await;
    let st = journal.stats();
    journal.close_async().await;
    print_commits(&st);
    println!(
        "emit-to-durable latency: {machines} machines x {signals} signals at {rate} Hz = {} records/s offered, {seconds} s measured",
        machines * signals * rate as usize
    );
    println!(
        "  {} over {} records; {} group commits",
        quantiles_ms(&hist),
        hist.len(),
        st.commits_total
    );
    Ok(())
}

/// The journal's group-commit durations (write + fsync), as a histogram line.
pub(super) fn print_commits(st: &crate::journal::JournalStats) {
    let buckets: Vec<String> = crate::journal::COMMIT_BUCKETS_MS
        .iter()
        .zip(&st.commit_buckets)
        .map(|(le, n)| {
            format!(
                "<={le}ms:{:.1}%",
                *n as f64 * 100.0 / st.commits_total.max(1) as f64
            )
        })
        .collect();
    println!(
        "  commit durations (incl. fsync): mean {:.2} ms; {}",
        st.commit_micros_sum as f64 / 1000.0 / st.commits_total.max(1) as f64,
        buckets.join(" ")
    );
}

/// `p50 … ms, p90 …, p99 …, p99.9 …, max …` of a histogram of microseconds.
pub(super) fn quantiles_ms(h: &hdrhistogram::Histogram<u64>) -> String {
    format!(
        "p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
        h.value_at_quantile(0.50) as f64 / 1000.0,
        h.value_at_quantile(0.90) as f64 / 1000.0,
        h.value_at_quantile(0.99) as f64 / 1000.0,
        h.value_at_quantile(0.999) as f64 / 1000.0,
        h.max() as f64 / 1000.0
    )
}

/// Hands every observation the journal makes durable between `warmup` and `warmup + seconds`
/// from now to `each`, with the time a reader woken by the commit notification saw it.
pub(super) async fn watch_durable(
    journal: &Journal,
    clock: &Clock,
    warmup: Duration,
    seconds: Duration,
    mut each: impl FnMut(Timestamp, &crate::model::Observation),
) -> anyhow::Result<()> {
    let mut rx = journal.subscribe();
    let mut pos = journal.last_seq();
    let warmup = Instant::now() + warmup;
    let end = warmup + seconds;
    while Instant::now() < end {
        if tokio::time::timeout(Duration::from_millis(500), rx.changed())
            .await
            .is_err()
        {
            continue;
        }
        let now = clock.now();
        let target = *rx.borrow_and_update();
        while pos < target {
            let recs = journal.read(pos, 100_000)?;
            let Some(last) = recs.last() else { break };
            pos = last.seq;
            if Instant::now() < warmup {
                continue;
            }
            for r in &recs {
                if let crate::model::RecordKind::Observation(o) = &r.kind {
                    each(now, o);
                }
            }
        }
    }
    Ok(())
}

/// The disk's own durable-write latency on the journal's filesystem: 4 KiB appended then
/// fdatasync'ed, 500 times. No journal can acknowledge faster than this.
pub(super) fn fsync_floor(dir: &Path) -> anyhow::Result<()> {
    use std::io::Write;
    let path = dir.join("fsync-probe");
    let mut f = std::fs::File::create(&path)?;
    let page = [0x5au8; 4096];
    let mut hist = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for _ in 0..500 {
        f.write_all(&page)?;
        let t = Instant::now();
        f.sync_data()?;
        let _ = hist.record(t.elapsed().as_micros().max(1) as u64);
    }
    drop(f);
    let _ = std::fs::remove_file(&path);
    println!(
        "disk floor: 4 KiB append + fdatasync on the journal's filesystem: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        hist.value_at_quantile(0.5) as f64 / 1000.0,
        hist.value_at_quantile(0.99) as f64 / 1000.0,
        hist.max() as f64 / 1000.0
    );
    Ok(())
}

/// User + system CPU seconds of this process.
pub(super) fn cpu_seconds() -> f64 {
    process_cpu_seconds("self")
}

/// User + system CPU seconds of process `pid` (`"self"` for this one).
pub(super) fn process_cpu_seconds(pid: &str) -> f64 {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let Some(rest) = s.rfind(')').map(|i| &s[i + 2..]) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 (1-based) = 11 and 12 after the state field.
    (ticks(11) + ticks(12)) / 100.0
}

pub(super) fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

pub(super) fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let code = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((code, body))
}

pub(super) fn stop_child(child: &mut std::process::Child) {
    send_sigterm(child.id());
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Asks a child to stop the way systemd and Ctrl-C do.
pub fn send_sigterm(pid: u32) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill(2) has no memory effects; a stale pid only yields ESRCH.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
}

fn startup(runs: usize) -> anyhow::Result<i32> {
    let exe = std::env::current_exe()?;
    let mut times = Vec::new();
    for _ in 0..runs.max(1) {
        let tmp = TempDir::new(None)?;
        let port = free_port()?;
        let t0 = Instant::now();
        let mut child = std::process::Command::new(&exe)
            .args([
                "demo",
                "--machines",
                "12",
                "--http-port",
                &port.to_string(),
                "--data-dir",
            ])
            .arg(&tmp.path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        let mut ok = None;
        while t0.elapsed() < Duration::from_secs(10) {
            if let Some((200, _)) = http_get(port, "/healthz") {
                ok = Some(t0.elapsed());
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        stop_child(&mut child);
        let t = ok.context("the demo did not answer /healthz within 10 s")?;
        times.push(t.as_secs_f64() * 1000.0);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    println!(
        "start to first 200 from /healthz (shopbridge demo --machines 12, fresh data dir, {} runs): median {:.0} ms, min {:.0} ms, max {:.0} ms",
        times.len(),
        times[times.len() / 2],
        times[0],
        times[times.len() - 1]
    );
    Ok(0)
}

pub(super) fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

fn rss(machines: u16, minutes: f64, speed: f64) -> anyhow::Result<i32> {
    let exe = std::env::current_exe()?;
    let tmp = TempDir::new(None)?;
    let port = free_port()?;
    let mut child = std::process::Command::new(&exe)
        .args([
            "demo",
            "--machines",
            &machines.to_string(),
            "--speed",
            &speed.to_string(),
            "--http-port",
            &port.to_string(),
            "--data-dir",
        ])
        .arg(&tmp.path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let total = Duration::from_secs_f64(minutes * 60.0);
    let t0 = Instant::now();
    let mut samples = Vec::new();
    while t0.elapsed() < total {
        std::thread::sleep(Duration::from_secs(5).min(total.saturating_sub(t0.elapsed())));
        if let Some((200, body)) = http_get(port, "/metrics") {
            if let Some(r) = metric(&body, "shopbridge_process_resident_bytes") {
                samples.push((t0.elapsed().as_secs(), r / 1_048_576.0));
            }
        }
    }
    let body = http_get(port, "/metrics")
        .map(|(_, b)| b)
        .unwrap_or_default();
    stop_child(&mut child);
    let rss = metric(&body, "shopbridge_process_resident_bytes").unwrap_or(0.0) / 1_048_576.0;
    let appended = metric(&body, "shopbridge_journal_records_appended_total").unwrap_or(0.0);
    let obs = metric(&body, "shopbridge_normalize_observations_total").unwrap_or(0.0);
    let file = metric(&body, "shopbridge_journal_file_bytes").unwrap_or(0.0);
    let enc = metric(&body, "shopbridge_journal_bytes").unwrap_or(0.0);
    let peak = samples.iter().map(|s| s.1).fold(0.0, f64::max);
    println!(
        "shopbridge demo --machines {machines} --speed {speed}, after {minutes} min: RSS {rss:.1} MiB (peak sampled {peak:.1} MiB)"
    );
    println!(
        "  journal: {appended:.0} records ({obs:.0} observations), {enc:.0} encoded bytes = {:.1} per record, file {file:.0} bytes = {:.1} per record",
        enc / appended.max(1.0),
        file / appended.max(1.0)
    );
    let trend: Vec<String> = samples
        .iter()
        .step_by((samples.len() / 10).max(1))
        .map(|(t, r)| format!("{t}s:{r:.1}"))
        .collect();
    println!("  RSS MiB over time: {}", trend.join(" "));
    Ok(0)
}

/// The crash test's child: appends batches of 100 records forever, printing each durable seq.
pub fn append_loop(dir: &Path) -> anyhow::Result<i32> {
    use std::io::Write;
    let journal = Journal::open(dir, JournalOptions::default())?;
    let sigs = signal_ids(8);
    let ids = machine_ids(4);
    let mut out = std::io::stdout().lock();
    let mut tick = 0u64;
    loop {
        let now = Clock::system().now();
        let mut recs = Vec::with_capacity(100);
        for m in &ids {
            for ev in batch(m, &sigs, tick, now) {
                if let DriverEvent::Observation(o) = ev {
                    recs.push(crate::model::RecordKind::Observation(
                        crate::model::Observation {
                            machine: o.machine,
                            signal: o.key,
                            value: o.value,
                            quality: o.quality,
                            time: crate::model::Timestamps {
                                source: o.source_time,
                                received: o.received,
                                aligned: o.received,
                            },
                        },
                    ));
                }
            }
        }
        tick += 1;
        let r = journal.append_blocking(recs)?;
        writeln!(out, "durable {} {}", r.start, r.end - 1)?;
        out.flush()?;
    }
}
