//! `shopbridge bench soak`: a bridge reading a large simulated shop for a long while, watched
//! for memory, file descriptors and journal size that creep upwards.
//!
//! Three child processes, all stopped on every exit path (each is held by a guard that stops
//! it on drop): `shopbridge simulate --print-config` (the shop on real sockets, sped up, with
//! its simulated ERP, QMS and operators posting to the bridge's REST API), `shopbridge run`
//! (the bridge, reading the shop through the configuration the simulator printed, with a
//! journal whose retention limits are small enough to be reached within the run), and
//! Mosquitto (the plant broker the Sparkplug edge node publishes to; a subscriber in this
//! process plays the Sparkplug host). A REST client polls the API the way a dashboard would,
//! and one web floor view holds `/api/v1/events` open.
//!
//! Every `--sample` seconds the bench reads the bridge's resident memory, open descriptors and
//! threads from /proc, and the journal's size and sequence numbers from `/metrics`. The trend
//! is a least-squares line over the samples after `--warmup`: the first minutes fill caches
//! that then stay full (redb's page cache, the allocator's arenas, the live view's per-machine
//! state, the Sparkplug alias tables, the REST server's buffers), and counting that plateau
//! as a slope would report a leak that is not there.
//!
//! The defaults (`--speed 60`, a 10-minute warm-up) make the 30 minutes 30 simulated hours,
//! the first shift left out: what the context layer keeps per machine (a stop's spans, the
//! running operation's, the strings they share) fills with simulated time. At `--speed 10` a
//! 30-minute run sees only five simulated hours, a night and a second working day not at all
//! (figures: bench/soak.md).
//!
//! The simulator's clock runs `--speed` times fast while the bridge's runs at real time (a
//! bridge may scale time only when every machine is simulated inside it): the machines'
//! timestamps run ahead, which the bridge's clock alignment follows, so records stay on the
//! bridge's time line and retention by age sees real ages.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;

use super::bench::{
    TempDir, free_port, http_get, metric, process_cpu_seconds, send_sigterm, stop_child,
};
use super::bench_sparkplug::Mosquitto;

/// Goal: resident memory grows by at most this much per hour after the warm-up (MB, 10^6 B).
const RSS_SLOPE_GOAL_MB_PER_H: f64 = 1.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Broker {
    /// A Mosquitto of the bench's own, with a Sparkplug host subscribed in the bench.
    Mosquitto,
    /// No Sparkplug at all.
    None,
}

#[derive(Debug, Args)]
pub struct SoakArgs {
    /// Simulated machines (1-1000).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub machines: u16,
    /// The simulated shop runs this many times faster than real time (60: a simulated hour
    /// each minute).
    #[arg(long, default_value_t = 60.0)]
    pub speed: f64,
    /// Minutes of the run.
    #[arg(long, default_value_t = 30.0)]
    pub minutes: f64,
    /// Minutes at the start left out of the trends (caches and pools filling, and at the
    /// default speed the first simulated shift).
    #[arg(long, default_value_t = 10.0)]
    pub warmup: f64,
    /// Seconds between two samples.
    #[arg(long, default_value_t = 10.0)]
    pub sample: f64,
    /// Seconds between two rounds of the REST client (0: no REST client).
    #[arg(long, default_value_t = 5.0)]
    pub poll: f64,
    /// Write every sample to this CSV file.
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// The journal's `max_bytes` (acknowledged records beyond it are removed).
    #[arg(long, default_value = "8MiB")]
    pub max_bytes: String,
    /// The journal's `hard_cap_bytes` (records beyond it are removed even if unacknowledged).
    #[arg(long, default_value = "16MiB")]
    pub hard_cap: String,
    /// The journal's `max_age`.
    #[arg(long, default_value = "10m")]
    pub max_age: String,
    /// Where Sparkplug goes.
    #[arg(long, value_enum, default_value_t = Broker::Mosquitto)]
    pub broker: Broker,
    /// The Mosquitto binary (default: /usr/sbin/mosquitto, then `mosquitto` on PATH).
    #[arg(long)]
    pub mosquitto: Option<PathBuf>,
    /// Keep the configuration, journal and logs here (default: a temporary directory,
    /// removed at the end).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Start the bridge under this command, split at spaces (a heap profiler, for example
    /// `--wrap "heaptrack -o /tmp/soak"`). RSS and descriptors are then sampled from the process
    /// running this executable with the soak's config, not from the wrapper.
    #[arg(long)]
    pub wrap: Option<String>,
}

/// A child process stopped (SIGTERM, then SIGKILL after 5 s) when the guard is dropped.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        stop_child(&mut self.0);
    }
}

/// A `--wrap`ped bridge (a grandchild): sent SIGTERM when dropped, so that it stops, and the
/// wrapper can finish, on every exit path.
struct WrappedBridge(Option<u32>);

impl Drop for WrappedBridge {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            send_sigterm(pid);
        }
    }
}

/// Sets a flag when dropped, so that helper threads stop on every exit path.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// The slope of the least-squares line through `points` (x, y): dy/dx. `None` for fewer
/// than two points or when every x is the same.
pub(crate) fn least_squares_slope(points: &[(f64, f64)]) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let n = points.len() as f64;
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (x, y) in points {
        sxy += (x - mean_x) * (y - mean_y);
        sxx += (x - mean_x) * (x - mean_x);
    }
    (sxx > 0.0).then(|| sxy / sxx)
}

/// The standard error of [`least_squares_slope`]'s slope: how far the fitted slope may be off
/// by the scatter of the points about their line alone. `None` for fewer than three points or
/// when every x is the same.
pub(crate) fn slope_standard_error(points: &[(f64, f64)]) -> Option<f64> {
    if points.len() < 3 {
        return None;
    }
    let slope = least_squares_slope(points)?;
    let n = points.len() as f64;
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    let residuals: f64 = points
        .iter()
        .map(|p| (p.1 - mean_y - slope * (p.0 - mean_x)).powi(2))
        .sum();
    Some((residuals / (n - 2.0) / sxx).sqrt())
}

/// One sample of the bridge.
#[derive(Debug, Default, Clone)]
struct Sample {
    /// Seconds since the bridge answered /healthz.
    t: f64,
    rss_bytes: u64,
    /// Of the RSS: anonymous pages (heap, stacks) and file-backed ones (the program's code and
    /// read-only data mapped in, which grow as code runs for the first time).
    rss_anon_bytes: u64,
    rss_file_bytes: u64,
    fds: u64,
    threads: u64,
    cpu_s: f64,
    journal_bytes: f64,
    journal_file_bytes: f64,
    first_seq: f64,
    last_seq: f64,
    appended: f64,
    removed: f64,
    dropped: f64,
    mqtt_messages: u64,
    rest_ok: u64,
    rest_failed: u64,
    sse_bytes: u64,
}

const CSV_HEADER: &str = "t_s,rss_bytes,fds,threads,cpu_s,journal_bytes,journal_file_bytes,first_seq,last_seq,appended_total,removed_total,dropped_total,mqtt_messages,rest_ok,rest_failed,sse_bytes,rss_anon_bytes,rss_file_bytes";

impl Sample {
    fn csv(&self) -> String {
        format!(
            "{:.1},{},{},{},{:.2},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            self.t,
            self.rss_bytes,
            self.fds,
            self.threads,
            self.cpu_s,
            self.journal_bytes,
            self.journal_file_bytes,
            self.first_seq,
            self.last_seq,
            self.appended,
            self.removed,
            self.dropped,
            self.mqtt_messages,
            self.rest_ok,
            self.rest_failed,
            self.sse_bytes,
            self.rss_anon_bytes,
            self.rss_file_bytes
        )
    }
}

/// A `kB` field of /proc/<pid>/status (VmRSS) in bytes, or a plain number (Threads).
fn status_field(status: &str, name: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(name))?;
    let mut parts = line[name.len()..].split_whitespace();
    let v: u64 = parts.next()?.parse().ok()?;
    Some(match parts.next() {
        Some("kB") => v * 1024,
        _ => v,
    })
}

/// What the helpers (REST client, floor view, Sparkplug host) counted.
#[derive(Default)]
struct Counters {
    mqtt_messages: AtomicU64,
    rest_ok: AtomicU64,
    rest_failed: AtomicU64,
    sse_bytes: AtomicU64,
    sse_connects: AtomicU64,
}

pub fn run(a: SoakArgs) -> anyhow::Result<i32> {
    anyhow::ensure!(
        a.speed.is_finite() && a.speed > 0.0,
        "--speed must be a positive number, found {}",
        a.speed
    );
    anyhow::ensure!(
        a.minutes.is_finite() && a.minutes > 0.0,
        "--minutes must be positive"
    );
    anyhow::ensure!(
        a.sample.is_finite() && a.sample >= 0.5,
        "--sample must be at least 0.5 s"
    );
    anyhow::ensure!(
        a.warmup.is_finite() && a.warmup >= 0.0 && a.warmup < a.minutes,
        "--warmup must be at least 0 and shorter than --minutes"
    );
    let max_bytes = crate::config::human::parse_size(&a.max_bytes)
        .map_err(|e| anyhow::anyhow!("--max-bytes: {e}"))?;
    let hard_cap = crate::config::human::parse_size(&a.hard_cap)
        .map_err(|e| anyhow::anyhow!("--hard-cap: {e}"))?;
    anyhow::ensure!(
        hard_cap >= max_bytes,
        "--hard-cap must be at least --max-bytes"
    );
    let max_age = crate::config::human::parse_duration(&a.max_age)
        .map_err(|e| anyhow::anyhow!("--max-age: {e}"))?;

    let tmp = TempDir::new(a.data_dir.clone())?;
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_helpers = StopOnDrop(stop.clone());
    let counters = Arc::new(Counters::default());

    // The broker first, so that the edge node finds it at once.
    let broker = match a.broker {
        Broker::Mosquitto => Some(Mosquitto::start(&tmp.path, a.mosquitto.as_deref())?),
        Broker::None => None,
    };

    // The shop. Its ERP, QMS and operators post to the bridge with a planner token made for
    // this run.
    let http_port = free_port()?;
    let (token, token_hash) = crate::northbound::http::auth::new_token()
        .context("cannot make the simulated ERP's API token")?;
    let sim_log = std::fs::File::create(tmp.path.join("simulate.log"))
        .context("cannot create simulate.log")?;
    let mut sim = ChildGuard(
        Command::new(&exe)
            .args(["simulate", "--machines", &a.machines.to_string()])
            .args(["--speed", &a.speed.to_string()])
            .args(["--shdr-base-port", "0", "--mtconnect-port", "0"])
            .args(["--haas-base-port", "0", "--modbus-base-port", "0"])
            .args(["--bridge", &format!("127.0.0.1:{http_port}")])
            .arg("--print-config")
            .env("SHOPBRIDGE_TOKEN", &token)
            .stdout(Stdio::piped())
            .stderr(sim_log)
            .spawn()
            .context("cannot start `shopbridge simulate`")?,
    );
    let machines_toml = printed_config(&mut sim.0)?;
    let machine_ids: Vec<String> = machines_toml
        .lines()
        .filter_map(|l| l.strip_prefix("id = \""))
        .map(|l| l.trim_end_matches('"').to_string())
        .collect();
    anyhow::ensure!(
        machine_ids.len() == usize::from(a.machines),
        "the simulator's configuration holds {} machines, expected {}",
        machine_ids.len(),
        a.machines
    );

    // The bridge.
    let mut config = format!(
        "[http]\nlisten = \"127.0.0.1:{http_port}\"\n\n[[http.tokens]]\nname = \"simulated-erp\"\nrole = \"planner\"\nsha256 = \"{token_hash}\"\n\n\
         [log]\nlevel = \"warn\"\n\n[journal]\ndir = {:?}\nmax_bytes = \"{}\"\nhard_cap_bytes = \"{}\"\nmax_age = \"{}\"\n\n",
        tmp.path.join("data").display().to_string(),
        a.max_bytes,
        a.hard_cap,
        a.max_age
    );
    if let Some(b) = &broker {
        config.push_str(&format!(
            "[sparkplug]\ngroup_id = \"soak\"\nedge_node_id = \"bridge\"\n\n[mqtt]\nurl = \"mqtt://127.0.0.1:{}\"\n\n",
            b.port
        ));
    }
    config.push_str(&machines_toml);
    let config_path = tmp.path.join("bridge.toml");
    std::fs::write(&config_path, &config)
        .with_context(|| format!("cannot write {}", config_path.display()))?;
    let log_path = tmp.path.join("bridge.log");
    let bridge_log = std::fs::File::create(&log_path).context("cannot create bridge.log")?;
    if let Some(b) = &broker {
        sparkplug_host(b.port, counters.clone(), stop.clone());
    }
    let mut command = match a.wrap.as_deref().map(str::split_whitespace) {
        Some(mut words) => {
            let program = words.next().context("--wrap: expected a command")?;
            let mut c = Command::new(program);
            c.args(words).arg(&exe);
            c
        }
        None => Command::new(&exe),
    };
    let mut bridge = ChildGuard(
        command
            .args(["run", "--config"])
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(bridge_log)
            .spawn()
            .context("cannot start `shopbridge run`")?,
    );
    let pid = bridge.0.id();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !matches!(http_get(http_port, "/healthz"), Some((200, _))) {
        if let Ok(Some(status)) = bridge.0.try_wait() {
            anyhow::bail!(
                "the bridge exited ({status}) before it answered /healthz:\n{}",
                log_tail(&log_path, 20)
            );
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the bridge did not answer /healthz on port {http_port} within 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Under --wrap, the bridge is a descendant of the child started here.
    let wrapped = WrappedBridge(
        a.wrap
            .as_ref()
            .and_then(|_| bridge_process(&exe, &config_path)),
    );
    let pid = wrapped.0.unwrap_or(pid);
    let t0 = Instant::now();
    if a.poll > 0.0 {
        rest_client(
            http_port,
            machine_ids.clone(),
            Duration::from_secs_f64(a.poll),
            counters.clone(),
            stop.clone(),
        );
        floor_view(http_port, counters.clone(), stop.clone());
    }

    let mut csv = match &a.csv {
        Some(p) => {
            let mut f = std::fs::File::create(p)
                .with_context(|| format!("cannot create {}", p.display()))?;
            writeln!(f, "{CSV_HEADER}")?;
            Some(f)
        }
        None => None,
    };
    eprintln!(
        "bench soak: {} machines at --speed {}, {} min, a sample every {} s (bridge pid {pid}, files in {})",
        a.machines,
        a.speed,
        a.minutes,
        a.sample,
        tmp.path.display()
    );
    let total = Duration::from_secs_f64(a.minutes * 60.0);
    let every = Duration::from_secs_f64(a.sample);
    let (load0, uptime0) = (load_average(), Instant::now());
    let mut samples: Vec<Sample> = Vec::new();
    let mut next = t0;
    loop {
        if let Ok(Some(status)) = bridge.0.try_wait() {
            anyhow::bail!(
                "the bridge exited ({status}) after {:.0} s:\n{}",
                t0.elapsed().as_secs_f64(),
                log_tail(&log_path, 20)
            );
        }
        if let Ok(Some(status)) = sim.0.try_wait() {
            anyhow::bail!(
                "the simulator exited ({status}) after {:.0} s",
                t0.elapsed().as_secs_f64()
            );
        }
        let s = sample(pid, http_port, t0, &counters);
        if let Some(f) = csv.as_mut() {
            writeln!(f, "{}", s.csv())?;
        }
        if samples.len() % 30 == 0 {
            eprintln!(
                "  {:>6.0} s: RSS {:.1} MiB, {} fds, {} threads, journal {:.1} MiB (file {:.1} MiB), seq {}..{}",
                s.t,
                s.rss_bytes as f64 / 1_048_576.0,
                s.fds,
                s.threads,
                s.journal_bytes / 1_048_576.0,
                s.journal_file_bytes / 1_048_576.0,
                s.first_seq,
                s.last_seq
            );
        }
        samples.push(s);
        next += every;
        if next > t0 + total {
            break;
        }
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    let load1 = load_average();
    stop.store(true, Ordering::SeqCst);
    if wrapped.0.is_some() {
        // Stop the bridge, then let the wrapper finish on its own (a profiler writes its
        // output after the program exits).
        drop(wrapped);
        eprintln!("bench soak: waiting for the --wrap command to finish");
        let _ = bridge.0.wait();
    }
    drop(bridge);
    drop(sim);
    drop(broker);
    let wall = uptime0.elapsed().as_secs_f64();
    let (warnings, errors, examples) = log_levels(&log_path);

    let r = Report {
        args: &a,
        samples: &samples,
        max_bytes,
        hard_cap,
        max_age,
        wall,
        load: (load0, load1),
        log: (warnings, errors, examples),
        sse_connects: counters.sse_connects.load(Ordering::Relaxed),
    };
    r.print();
    Ok(0)
}

/// Reads `shopbridge simulate --print-config`'s standard output up to the line that
/// describes the shop; returns the `[[machines]]` part of the configuration. Keeps draining
/// the output afterwards, so that the simulator never blocks on a full pipe.
fn printed_config(sim: &mut Child) -> anyhow::Result<String> {
    let out = sim
        .stdout
        .take()
        .context("the simulator's standard output")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let mut sent = false;
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if sent {
                continue;
            }
            if line.starts_with("simulated shop:") {
                let _ = tx.send(std::mem::take(&mut text));
                sent = true;
            } else {
                text.push_str(&line);
                text.push('\n');
            }
        }
    });
    let text = rx
        .recv_timeout(Duration::from_secs(60))
        .context("the simulator did not print its configuration within 60 s")?;
    let start = text
        .find("[[machines]]")
        .context("the simulator's configuration has no [[machines]]")?;
    Ok(text[start..].to_string())
}

/// The process running this executable with `--config <config>` (the bridge a `--wrap`
/// command started).
fn bridge_process(exe: &Path, config: &Path) -> Option<u32> {
    let config = config.as_os_str().as_encoded_bytes();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let runs_exe = std::fs::read_link(e.path().join("exe")).ok()? == exe;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        let has_config = cmdline.split(|b| *b == 0).any(|arg| arg == config);
        (runs_exe && has_config).then_some(pid)
    })
}

fn sample(pid: u32, http_port: u16, t0: Instant, c: &Counters) -> Sample {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64);
    let body = http_get(http_port, "/metrics")
        .filter(|(code, _)| *code == 200)
        .map(|(_, b)| b)
        .unwrap_or_default();
    let m = |name: &str| metric(&body, name).unwrap_or(f64::NAN);
    Sample {
        t: t0.elapsed().as_secs_f64(),
        rss_bytes: status_field(&status, "VmRSS:").unwrap_or(0),
        rss_anon_bytes: status_field(&status, "RssAnon:").unwrap_or(0),
        rss_file_bytes: status_field(&status, "RssFile:").unwrap_or(0),
        fds,
        threads: status_field(&status, "Threads:").unwrap_or(0),
        cpu_s: process_cpu_seconds(&pid.to_string()),
        journal_bytes: m("shopbridge_journal_bytes"),
        journal_file_bytes: m("shopbridge_journal_file_bytes"),
        first_seq: m("shopbridge_journal_first_seq"),
        last_seq: m("shopbridge_journal_last_seq"),
        appended: m("shopbridge_journal_records_appended_total"),
        removed: m("shopbridge_journal_removed_records_total"),
        dropped: m("shopbridge_journal_dropped_records_total"),
        mqtt_messages: c.mqtt_messages.load(Ordering::Relaxed),
        rest_ok: c.rest_ok.load(Ordering::Relaxed),
        rest_failed: c.rest_failed.load(Ordering::Relaxed),
        sse_bytes: c.sse_bytes.load(Ordering::Relaxed),
    }
}

/// A dashboard: every `every`, the machine list, the floor, one machine in turn, the newest
/// records and the metrics.
fn rest_client(
    port: u16,
    machines: Vec<String>,
    every: Duration,
    c: Arc<Counters>,
    stop: Arc<AtomicBool>,
) {
    std::thread::spawn(move || {
        let mut round = 0usize;
        while !stop.load(Ordering::SeqCst) {
            let one = machines
                .get(round % machines.len().max(1))
                .map(|m| format!("/api/v1/machines/{m}"))
                .unwrap_or_else(|| "/api/v1/machines".into());
            for path in [
                "/api/v1/machines",
                "/api/v1/floor",
                one.as_str(),
                "/api/v1/records?limit=200",
                "/metrics",
            ] {
                match http_get(port, path) {
                    Some((200, _)) => c.rest_ok.fetch_add(1, Ordering::Relaxed),
                    _ => c.rest_failed.fetch_add(1, Ordering::Relaxed),
                };
            }
            round += 1;
            std::thread::sleep(every);
        }
    });
}

/// A web floor view: `/api/v1/events` held open (server-sent events), reconnecting when it
/// ends.
fn floor_view(port: u16, c: Arc<Counters>, stop: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        while !stop.load(Ordering::SeqCst) {
            let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
                std::thread::sleep(Duration::from_secs(1));
                continue;
            };
            c.sse_connects.fetch_add(1, Ordering::Relaxed);
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            if write!(
                s,
                "GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"
            )
            .is_err()
            {
                continue;
            }
            while !stop.load(Ordering::SeqCst) {
                match s.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        c.sse_bytes.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(_) => break,
                }
            }
        }
    });
}

/// A Sparkplug host: subscribed to the group, counting messages.
fn sparkplug_host(port: u16, c: Arc<Counters>, stop: Arc<AtomicBool>) {
    let mut opts = rumqttc::MqttOptions::new(
        format!("shopbridge-soak-host-{}", std::process::id()),
        "127.0.0.1",
        port,
    );
    opts.set_max_packet_size(64 << 20, 64 << 20)
        .set_keep_alive(Duration::from_secs(30));
    let (client, mut connection) = rumqttc::Client::new(opts, 256);
    std::thread::spawn(move || {
        for event in connection.iter() {
            if stop.load(Ordering::SeqCst) {
                let _ = client.disconnect();
                break;
            }
            match event {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => {
                    // A clean session: subscribe again after every connect.
                    let _ = client.subscribe("spBv1.0/soak/#", rumqttc::QoS::AtMostOnce);
                }
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(_))) => {
                    c.mqtt_messages.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) => {}
                // The broker is not there (yet, or any more): try again shortly.
                Err(_) => std::thread::sleep(Duration::from_millis(500)),
            }
        }
    });
}

/// The 1-minute load average.
fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(f64::NAN)
}

fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// WARN and ERROR lines in the bridge's log, and up to five distinct messages (timestamps
/// left out).
fn log_levels(path: &Path) -> (usize, usize, Vec<String>) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let (mut warn, mut error) = (0, 0);
    let mut examples: Vec<String> = Vec::new();
    for line in text.lines() {
        let level = if line.contains(" WARN ") {
            warn += 1;
            " WARN "
        } else if line.contains("ERROR ") {
            error += 1;
            "ERROR "
        } else {
            continue;
        };
        let msg = line.find(level).map_or(line, |i| &line[i..]).trim();
        let short: String = msg.chars().take(200).collect();
        if examples.len() < 5 && !examples.iter().any(|e| e == &short) {
            examples.push(short);
        }
    }
    (warn, error, examples)
}

struct Report<'a> {
    args: &'a SoakArgs,
    samples: &'a [Sample],
    max_bytes: u64,
    hard_cap: u64,
    max_age: Duration,
    wall: f64,
    load: (f64, f64),
    log: (usize, usize, Vec<String>),
    sse_connects: u64,
}

fn verdict(ok: bool) -> &'static str {
    if ok { "PASS" } else { "FAIL" }
}

impl Report<'_> {
    fn print(&self) {
        let a = self.args;
        let s = self.samples;
        let (Some(first), Some(last)) = (s.first(), s.last()) else {
            println!("bench soak: no samples");
            return;
        };
        let warm = a.warmup * 60.0;
        let after: Vec<&Sample> = s.iter().filter(|x| x.t >= warm).collect();
        let window_h = after
            .last()
            .zip(after.first())
            .map_or(0.0, |(l, f)| (l.t - f.t) / 3600.0);
        let slope_per_h = |f: &dyn Fn(&Sample) -> f64| {
            let pts: Vec<(f64, f64)> = after.iter().map(|x| (x.t / 3600.0, f(x))).collect();
            least_squares_slope(&pts)
        };
        let mib = |b: u64| b as f64 / 1_048_576.0;
        let rss: Vec<u64> = s.iter().map(|x| x.rss_bytes).collect();
        let rss_min = rss.iter().copied().min().unwrap_or(0);
        let rss_max = rss.iter().copied().max().unwrap_or(0);
        let rss_slope = slope_per_h(&|x| x.rss_bytes as f64 / 1e6);
        let rss_points: Vec<(f64, f64)> = after
            .iter()
            .map(|x| (x.t / 3600.0, x.rss_bytes as f64 / 1e6))
            .collect();
        let rss_error = slope_standard_error(&rss_points);
        let fd_slope = slope_per_h(&|x| x.fds as f64);
        let thread_slope = slope_per_h(&|x| x.threads as f64);
        let file_slope = slope_per_h(&|x| x.journal_file_bytes / 1e6);
        let fd_max = s.iter().map(|x| x.fds).max().unwrap_or(0);
        let thr_max = s.iter().map(|x| x.threads).max().unwrap_or(0);
        let fmax = |f: &dyn Fn(&Sample) -> f64| {
            s.iter()
                .map(f)
                .filter(|v| v.is_finite())
                .fold(f64::NAN, f64::max)
        };
        let jb_max = fmax(&|x| x.journal_bytes);
        let jf_max = fmax(&|x| x.journal_file_bytes);
        let elapsed = (last.t - first.t).max(1e-9);
        let records_per_s = (last.appended - first.appended) / elapsed;
        let cpu = (last.cpu_s - first.cpu_s) / elapsed;

        println!(
            "Soak: `shopbridge run` reading `shopbridge simulate --machines {} --speed {}` (SHDR, MTConnect agent, Haas MDC, Modbus; the simulated ERP, QMS and operators posting to the REST API){}{}, {:.1} min ({} samples every {} s); load average {:.2} at the start, {:.2} at the end",
            a.machines,
            a.speed,
            match a.broker {
                Broker::Mosquitto => ", Sparkplug B to Mosquitto with a subscribed host",
                Broker::None => "",
            },
            if a.poll > 0.0 {
                format!(
                    ", a REST client every {} s and one /api/v1/events stream",
                    a.poll
                )
            } else {
                String::new()
            },
            self.wall / 60.0,
            s.len(),
            a.sample,
            self.load.0,
            self.load.1
        );
        println!(
            "  journal limits: max_bytes {}, hard_cap_bytes {}, max_age {}",
            crate::config::human::format_size(self.max_bytes),
            crate::config::human::format_size(self.hard_cap),
            crate::config::human::format_duration(self.max_age)
        );
        println!(
            "  trends are least-squares lines over the {} samples after the {} min warm-up (caches and pools fill first: redb's page cache, allocator arenas, per-machine live state and history)",
            after.len(),
            a.warmup
        );
        let fmt_slope =
            |v: Option<f64>, unit: &str| v.map_or("n/a".to_string(), |v| format!("{v:+.2} {unit}"));
        // A slope whose standard error exceeds the goal cannot show the goal met or missed:
        // the RSS wanders more than the run is long enough to average out.
        let inconclusive = rss_error.is_some_and(|e| e > RSS_SLOPE_GOAL_MB_PER_H);
        println!(
            "  RSS: first {:.1} MiB, last {:.1} MiB, min {:.1}, max {:.1}; slope {} ± {} (1 standard error; goal <= {RSS_SLOPE_GOAL_MB_PER_H} MB/h): {}{}",
            mib(first.rss_bytes),
            mib(last.rss_bytes),
            mib(rss_min),
            mib(rss_max),
            fmt_slope(rss_slope, "MB/h"),
            rss_error.map_or("n/a".into(), |e| format!("{e:.2}")),
            verdict(rss_slope.is_some_and(|v| v <= RSS_SLOPE_GOAL_MB_PER_H)),
            if inconclusive {
                " (inconclusive: the standard error is above the goal; run longer)"
            } else {
                ""
            }
        );
        // What the RSS is made of, and which part moves.
        let part = |name: &str, f: &dyn Fn(&Sample) -> u64| {
            format!(
                "{name} first {:.1}, last {:.1}, max {:.1} MiB, slope {}",
                mib(f(first)),
                mib(f(last)),
                mib(s.iter().map(f).max().unwrap_or(0)),
                fmt_slope(slope_per_h(&|x| f(x) as f64 / 1e6), "MB/h")
            )
        };
        println!(
            "  of the RSS: {}; {}",
            part("anonymous (heap, stacks)", &|x| x.rss_anon_bytes),
            part("file-backed (the program's code mapped in)", &|x| x
                .rss_file_bytes)
        );
        // No upward trend: the fitted line rises by less than one descriptor over the window.
        let fd_rise = fd_slope.map(|v| v * window_h);
        println!(
            "  open fds: first {}, last {}, max {fd_max}; slope {} (rise over the window {}; goal: < 1): {}",
            first.fds,
            last.fds,
            fmt_slope(fd_slope, "fds/h"),
            fd_rise.map_or("n/a".into(), |v| format!("{v:+.2}")),
            verdict(fd_rise.is_some_and(|v| v < 1.0))
        );
        println!(
            "  threads: first {}, last {}, max {thr_max}; slope {}",
            first.threads,
            last.threads,
            fmt_slope(thread_slope, "threads/h")
        );
        let removed = last.removed - first.removed.min(last.removed);
        println!(
            "  journal: encoded bytes max {:.2} MiB (max_bytes {:.2} MiB, hard cap {:.2} MiB), last {:.2} MiB; file max {:.2} MiB, last {:.2} MiB, slope {}; first seq {} -> {}, last seq {}; removed by retention {:.0}, dropped at the hard cap {:.0}: {}",
            jb_max / 1_048_576.0,
            mib(self.max_bytes),
            mib(self.hard_cap),
            last.journal_bytes / 1_048_576.0,
            jf_max / 1_048_576.0,
            last.journal_file_bytes / 1_048_576.0,
            fmt_slope(file_slope, "MB/h"),
            first.first_seq,
            last.first_seq,
            last.last_seq,
            removed,
            last.dropped,
            if !jb_max.is_finite() {
                "FAIL (no journal figures from /metrics)"
            } else if jb_max > self.hard_cap as f64 {
                "FAIL (above the hard cap)"
            } else if removed <= 0.0 {
                "PASS (within the hard cap, but retention removed nothing: limits not reached)"
            } else {
                "PASS"
            }
        );
        println!(
            "  records appended: {:.0} ({records_per_s:.0}/s); bridge CPU {:.1} % of one core; Sparkplug messages at the host {} ({:.0}/s); REST requests ok {}, failed {}; floor view {} bytes over {} connection(s)",
            last.appended - first.appended,
            cpu * 100.0,
            last.mqtt_messages,
            last.mqtt_messages as f64 / elapsed,
            last.rest_ok,
            last.rest_failed,
            last.sse_bytes,
            self.sse_connects
        );
        let (w, e, examples) = &self.log;
        println!("  bridge log (level warn): {w} WARN, {e} ERROR lines");
        for x in examples {
            println!("    {x}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_squares_slope_fits_a_line_through_noise() {
        // y = 3x + 7 plus noise that is symmetric about the middle x: it cannot tilt the line.
        let pts: Vec<(f64, f64)> = (0..10)
            .map(|i| {
                let x = f64::from(i);
                let noise = ((x - 4.5).abs() - 2.5) * 0.3;
                (x, 3.0 * x + 7.0 + noise)
            })
            .collect();
        let s = least_squares_slope(&pts).unwrap_or(f64::NAN);
        assert!((s - 3.0).abs() < 1e-9, "{s}");
        // Worked by hand: mean x 1.5, mean y 2.5, Sxy 4, Sxx 5.
        let s = least_squares_slope(&[(0.0, 1.0), (1.0, 3.0), (2.0, 2.0), (3.0, 4.0)]);
        assert!(s.is_some_and(|s| (s - 0.8).abs() < 1e-12), "{s:?}");
        // Flat with a spike in the middle: no trend.
        let flat = [(0.0, 5.0), (1.0, 5.0), (2.0, 9.0), (3.0, 5.0), (4.0, 5.0)];
        assert_eq!(least_squares_slope(&flat), Some(0.0));
        // Falling.
        assert_eq!(least_squares_slope(&[(0.0, 2.0), (2.0, 0.0)]), Some(-1.0));
        // The same fit's scatter: residuals -0.3, 0.9, -0.9, 0.3 -> sqrt(1.8 / 2 / 5).
        let e = slope_standard_error(&[(0.0, 1.0), (1.0, 3.0), (2.0, 2.0), (3.0, 4.0)]);
        assert!(
            e.is_some_and(|e| (e - 0.18f64.sqrt()).abs() < 1e-12),
            "{e:?}"
        );
        assert_eq!(slope_standard_error(&pts[..2]), None);
        // Not enough to fit.
        assert_eq!(least_squares_slope(&[(1.0, 1.0)]), None);
        assert_eq!(least_squares_slope(&[(1.0, 1.0), (1.0, 2.0)]), None);
    }

    #[test]
    fn status_fields_are_read_in_bytes_or_counts() {
        let st = "Name:\tshopbridge\nVmRSS:\t   12345 kB\nRssAnon:\t    2345 kB\nRssFile:\t   10000 kB\nThreads:\t17\n";
        assert_eq!(status_field(st, "VmRSS:"), Some(12345 * 1024));
        assert_eq!(status_field(st, "RssAnon:"), Some(2345 * 1024));
        assert_eq!(status_field(st, "RssFile:"), Some(10000 * 1024));
        assert_eq!(status_field(st, "Threads:"), Some(17));
        assert_eq!(status_field(st, "VmSwap:"), None);
    }
}
