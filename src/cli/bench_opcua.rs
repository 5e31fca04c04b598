//! `shopbridge bench opcua`: the OPC UA server under a SCADA-sized load.
//!
//! A real bridge runs as a child process (`shopbridge run`) with N machines, each read by the
//! SHDR driver from a paced adapter in this process; a load client (async-opcua's client, in
//! this process) subscribes to many monitored items. Every line an adapter writes changes
//! each of the monitored signals of its machine, and each value *is* the line's write time
//! (µs since the bench began), so that every notification tells when
//! its line was written: offered = lines written × items on that machine, delivered = the
//! notifications received for those lines, and latency = receipt − write.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use opcua::client::{ClientBuilder, DataChangeCallback, IdentityToken, Session};
use opcua::types::{
    AttributeId, EndpointDescription, MessageSecurityMode, MonitoredItemCreateRequest,
    MonitoringMode, MonitoringParameters, NodeId, ReadValueId, TimestampsToReturn, UserTokenPolicy,
    Variant,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::bench::{TempDir, free_port, process_cpu_seconds, quantiles_ms, stop_child};
use super::bench_protocols::paced_adapter;

/// The okuma-osp keys each line sets, and the signals they become.
const SIGNALS: [(&str, &str); 5] = [
    ("S1speed", "spindle_speed"),
    ("S1load", "spindle_load"),
    ("pFovr", "feed_override"),
    ("p1CurrentTool", "tool_number"),
    ("p1linenumber", "line"),
];

#[derive(Debug, clap::Args)]
pub struct OpcuaArgs {
    /// Machines (one SHDR adapter and driver each).
    #[arg(long, default_value_t = 50)]
    pub machines: usize,
    /// Monitored items, spread evenly over the machines' 5 changing signal nodes.
    #[arg(long, default_value_t = 50_000)]
    pub items: usize,
    /// Lines per second per machine (each changes all 5 signals).
    #[arg(long, default_value_t = 1.0)]
    pub rate: f64,
    /// Sampling and publishing interval of every subscription, in ms.
    #[arg(long, default_value_t = 100)]
    pub interval_ms: u64,
    /// Subscriptions the items are spread over (one session).
    #[arg(long, default_value_t = 10)]
    pub subscriptions: usize,
    /// Seconds measured, after a 5 s warm-up.
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
}

/// What the adapters wrote and the client received, per machine.
struct Tally {
    /// Lines written, by write time (µs since the bench began).
    written: Mutex<Vec<Vec<u64>>>,
    delivered_in_window: AtomicU64,
    received: AtomicU64,
    latency: Mutex<hdrhistogram::Histogram<u64>>,
    window: Mutex<(u64, u64)>,
}

fn machine_id(i: usize) -> String {
    format!("m{i:03}")
}

/// One machine's line at `t0.elapsed()`: every value is that time, which is also recorded.
fn timed_line(machine: usize, t0: Instant, tally: &Tally) -> String {
    let at = t0.elapsed().as_micros() as u64;
    let mut line = format!(
        "{}|pexecution|ACTIVE",
        crate::clock::Clock::system().now().to_rfc3339()
    );
    for (key, _) in SIGNALS {
        line.push_str(&format!("|{key}|{at}"));
    }
    line.push('\n');
    if let Ok(mut w) = tally.written.lock() {
        if let Some(v) = w.get_mut(machine) {
            v.push(at);
        }
    }
    line
}

fn config_text(
    dir: &Path,
    opcua_port: u16,
    http_port: u16,
    adapters: &[String],
    items: usize,
) -> String {
    let mut s = format!(
        "[journal]\ndir = {dir:?}\n\n[http]\nlisten = \"127.0.0.1:{http_port}\"\n\n[log]\nlevel = \"warn\"\n\n\
         [opcua]\nlisten = \"127.0.0.1:{opcua_port}\"\nhostname = \"127.0.0.1\"\nsecurity_none = true\n\
         anonymous = true\nmax_monitored_items = {items}\nmin_publishing_interval = \"50ms\"\n",
        dir = dir.display().to_string()
    );
    for (i, a) in adapters.iter().enumerate() {
        s.push_str(&format!(
            "\n[[machines]]\nid = \"{}\"\nname = \"Machine {i}\"\nprofile = \"okuma-osp\"\ndriver = {{ type = \"shdr\", address = \"{a}\" }}\n",
            machine_id(i)
        ));
    }
    s
}

/// VmRSS and VmHWM of a process, in MiB.
fn rss_mib(pid: u32) -> (f64, f64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    (field("VmRSS:"), field("VmHWM:"))
}

async fn connect(
    url: &str,
    pki: &Path,
) -> anyhow::Result<(
    Arc<Session>,
    tokio::task::JoinHandle<opcua::types::StatusCode>,
)> {
    let mut client = ClientBuilder::new()
        .application_name("shopbridge bench client")
        .application_uri("urn:shopbridge:bench-client")
        .create_sample_keypair(false)
        .trust_server_certs(true)
        .session_retry_limit(3)
        .pki_dir(pki)
        .max_message_size(0)
        .max_chunk_count(0)
        .max_array_length(1_000_000)
        .client()
        .map_err(|e| anyhow::anyhow!("client config: {e:?}"))?;
    let endpoint: EndpointDescription = (
        url,
        "None",
        MessageSecurityMode::None,
        UserTokenPolicy::anonymous(),
    )
        .into();
    let (session, event_loop) = client
        .connect_to_matching_endpoint(endpoint, IdentityToken::Anonymous)
        .await
        .context("connect")?;
    let handle = event_loop.spawn();
    tokio::time::timeout(Duration::from_secs(20), session.wait_for_connection())
        .await
        .context("the session did not connect within 20 s")?;
    Ok((session, handle))
}

async fn shopbridge_ns(session: &Session) -> anyhow::Result<u16> {
    let v = session
        .read(
            &[ReadValueId {
                node_id: NodeId::new(0, 2255u32),
                attribute_id: AttributeId::Value as u32,
                ..Default::default()
            }],
            TimestampsToReturn::Neither,
            0.0,
        )
        .await?;
    let Some(Variant::Array(arr)) = v.first().and_then(|d| d.value.clone()) else {
        anyhow::bail!("cannot read the NamespaceArray");
    };
    arr.values
        .iter()
        .position(|u| matches!(u, Variant::String(s) if s.as_ref() == "urn:shopbridge:UA"))
        .map(|i| i as u16)
        .context("the server has no urn:shopbridge:UA namespace")
}

struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            stop_child(&mut self.0);
        }
    }
}

pub fn run(a: OpcuaArgs) -> anyhow::Result<i32> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(bench(a))
}

async fn bench(a: OpcuaArgs) -> anyhow::Result<i32> {
    let tmp = TempDir::new(None)?;
    let t0 = Instant::now();
    let stop = CancellationToken::new();
    let _stop_guard = stop.clone().drop_guard();
    let tally = Arc::new(Tally {
        written: Mutex::new(vec![Vec::new(); a.machines]),
        delivered_in_window: AtomicU64::new(0),
        received: AtomicU64::new(0),
        latency: Mutex::new(hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 3)?),
        window: Mutex::new((u64::MAX, u64::MAX)),
    });
    let period = Duration::from_secs_f64(1.0 / a.rate.max(0.01));
    let mut adapters = Vec::new();
    for i in 0..a.machines {
        let l = TcpListener::bind("127.0.0.1:0").await?;
        adapters.push(l.local_addr()?.to_string());
        let phase = period.mul_f64(i as f64 / a.machines.max(1) as f64);
        let tally = tally.clone();
        tokio::spawn(paced_adapter(l, period, phase, stop.clone(), move |_| {
            timed_line(i, t0, &tally)
        }));
    }
    let (opcua_port, http_port) = (free_port()?, free_port()?);
    let config = tmp.path.join("bench-opcua.toml");
    std::fs::write(
        &config,
        config_text(
            &tmp.path.join("data"),
            opcua_port,
            http_port,
            &adapters,
            a.items,
        ),
    )?;
    let child = std::process::Command::new(std::env::current_exe()?)
        .args(["run", "--config"])
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .spawn()?;
    let pid = child.id();
    // Stops the bridge however this function ends.
    let mut child = ChildGuard(child);
    let url = format!("opc.tcp://127.0.0.1:{opcua_port}/");
    let mut connected = None;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if let Ok(Some(status)) = child.0.try_wait() {
            anyhow::bail!("the bridge exited ({status}) before opening {url}; its error is above");
        }
        if tokio::net::TcpStream::connect(("127.0.0.1", opcua_port))
            .await
            .is_ok()
        {
            connected = Some(connect(&url, &tmp.path.join("client-pki")).await);
            break;
        }
    }
    let (session, _loop) = match connected {
        Some(r) => r?,
        None => anyhow::bail!("the bridge did not open {url} within 30 s"),
    };
    let sb = shopbridge_ns(&session).await?;
    eprintln!(
        "bench opcua: connected to {url}; creating {} monitored items",
        a.items
    );

    // Items: round robin over every machine's signal nodes.
    let nodes: Vec<(usize, usize, NodeId)> = (0..a.machines)
        .flat_map(|m| {
            SIGNALS.iter().enumerate().map(move |(k, (_, signal))| {
                (
                    m,
                    k,
                    NodeId::new(sb, format!("{}/Signals/{signal}", machine_id(m))),
                )
            })
        })
        .collect();
    let mut items_per_machine = vec![0u64; a.machines];
    let per_sub = a.items.div_ceil(a.subscriptions.max(1));
    let mut created = 0usize;
    let mut next_handle = 1u32;
    let t_setup = Instant::now();
    for _ in 0..a.subscriptions.max(1) {
        if created >= a.items {
            break;
        }
        let tally_cb = tally.clone();
        let sub = session
            .create_subscription(
                Duration::from_millis(a.interval_ms),
                60,
                20,
                0,
                0,
                true,
                DataChangeCallback::new(move |dv, _item| {
                    let now = t0.elapsed().as_micros() as u64;
                    tally_cb.received.fetch_add(1, Ordering::Relaxed);
                    let Some(v) = dv.value.as_ref() else { return };
                    let sent = match v {
                        Variant::Double(x) => *x as u64,
                        Variant::Int64(x) => *x as u64,
                        _ => return,
                    };
                    let (from, to) = tally_cb.window.lock().map(|w| *w).unwrap_or((0, 0));
                    if sent >= from && sent < to {
                        tally_cb.delivered_in_window.fetch_add(1, Ordering::Relaxed);
                        if let Ok(mut h) = tally_cb.latency.lock() {
                            let _ = h.record(now.saturating_sub(sent).max(1));
                        }
                    }
                }),
            )
            .await?;
        let n = per_sub.min(a.items - created);
        let mut requests = Vec::with_capacity(n);
        for j in 0..n {
            let (m, _, node) = &nodes[(created + j) % nodes.len()];
            items_per_machine[*m] += 1;
            requests.push(MonitoredItemCreateRequest::new(
                ReadValueId {
                    node_id: node.clone(),
                    attribute_id: AttributeId::Value as u32,
                    ..Default::default()
                },
                MonitoringMode::Reporting,
                MonitoringParameters {
                    client_handle: next_handle,
                    sampling_interval: a.interval_ms as f64,
                    queue_size: 10,
                    discard_oldest: true,
                    ..Default::default()
                },
            ));
            next_handle += 1;
        }
        for chunk in requests.chunks(1_000) {
            let r = session
                .create_monitored_items(sub, TimestampsToReturn::Both, chunk.to_vec())
                .await?;
            let bad = r.iter().filter(|c| !c.result.status_code.is_good()).count();
            if bad > 0 {
                anyhow::bail!("{bad} monitored items were refused");
            }
        }
        created += n;
        eprintln!("bench opcua: {created} monitored items created");
    }
    let setup = t_setup.elapsed();

    // Warm up, then measure a window of write times.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let from = t0.elapsed().as_micros() as u64;
    if let Ok(mut w) = tally.window.lock() {
        *w = (from, u64::MAX);
    }
    let cpu0 = process_cpu_seconds(&pid.to_string());
    let wall0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(a.seconds)).await;
    let to = t0.elapsed().as_micros() as u64;
    let cpu = process_cpu_seconds(&pid.to_string()) - cpu0;
    let wall = wall0.elapsed().as_secs_f64();
    if let Ok(mut w) = tally.window.lock() {
        *w = (from, to);
    }
    let (rss, hwm) = rss_mib(pid);
    // Let the last lines' notifications arrive, then stop the client, the bridge, the adapters.
    tokio::time::sleep(Duration::from_millis(a.interval_ms * 10 + 2_000)).await;
    let _ = session.disconnect().await;
    stop_child(&mut child.0);
    stop.cancel();

    let offered: u64 = tally
        .written
        .lock()
        .map(|w| {
            w.iter()
                .enumerate()
                .map(|(m, lines)| {
                    lines.iter().filter(|t| **t >= from && **t < to).count() as u64
                        * items_per_machine[m]
                })
                .sum()
        })
        .unwrap_or(0);
    let delivered = tally.delivered_in_window.load(Ordering::Relaxed);
    let secs = (to - from) as f64 / 1e6;
    println!(
        "OPC UA server: {} machines over SHDR, {} nodes per machine changing at {} Hz, {created} monitored items in {} subscriptions (sampling = publishing = {} ms), async-opcua client on this host; set up in {:.1} s; {} s measured after 5 s warm-up",
        a.machines,
        SIGNALS.len(),
        a.rate,
        a.subscriptions,
        a.interval_ms,
        setup.as_secs_f64(),
        a.seconds
    );
    println!(
        "  notifications: offered {offered} ({:.0}/s), delivered {delivered} ({:.0}/s) = {:.2}%",
        offered as f64 / secs,
        delivered as f64 / secs,
        100.0 * delivered as f64 / offered.max(1) as f64
    );
    println!(
        "  server (shopbridge run, pid {pid}): CPU {:.1}% of one core, RSS {rss:.1} MiB (peak {hwm:.1} MiB)",
        100.0 * cpu / wall
    );
    if let Ok(h) = tally.latency.lock() {
        println!(
            "  SHDR line written → client notification: {} over {} notifications",
            quantiles_ms(&h),
            h.len()
        );
    }
    Ok(0)
}
