//! The FOCAS/Ethernet driver against the simulator's FOCAS face over real sockets: through
//! the whole bridge, with a `shopbridge simulate` child that dies and comes back, with a
//! control that sends broken frames, and beside PyPI `pyfocas` (`tests/focas/peer.py`), an
//! implementation of the wire format written by others, reading the same controls.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shopbridge::clock::Clock;
use shopbridge::drivers::focas::wire::{self, Framer, Packet};
use shopbridge::drivers::focas::{Focas, FocasSpec};
use shopbridge::drivers::poll::{self, Poller, Readings, Timing};
use shopbridge::drivers::{DriverBatch, DriverContext, DriverCounters, DriverEvent};
use shopbridge::journal::ReadOnlyJournal;
use shopbridge::model::{
    ConditionLevel, LinkStatus, MachineId, Quality, RecordKind, ShopState, Value,
};
use shopbridge::sim::focas_face::{self, Control, Series, SharedControl};
use shopbridge::sim::serve::{Ports, SimServer};
use shopbridge::sim::shop::{FaceValue, ShopOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use common::{KillOnDrop, last_value as value, link_events as links};

fn machine() -> MachineId {
    MachineId::new("fanuc-1").unwrap_or_else(|e| panic!("{e}"))
}

fn spec(address: &str, macros: Vec<u32>, params: Vec<u32>, timeout: Duration) -> FocasSpec {
    FocasSpec {
        address: address.to_string(),
        macros,
        params,
        timeout,
    }
}

/// Runs the driver and hands back what it sent, the stop token and its counters.
fn start_driver(
    spec: FocasSpec,
    interval: Duration,
) -> (
    mpsc::Receiver<DriverBatch>,
    CancellationToken,
    Arc<DriverCounters>,
) {
    let (tx, rx) = mpsc::channel(1024);
    let stop = CancellationToken::new();
    let counters = DriverCounters::new("focas", spec.address.clone());
    let ctx = DriverContext {
        machines: vec![machine()],
        tx,
        shutdown: stop.clone(),
        clock: Clock::system(),
        counters: counters.clone(),
    };
    let timing = Timing {
        interval,
        connect_timeout: Duration::from_secs(2),
    };
    tokio::spawn(poll::run(Focas::new(spec), timing, ctx));
    (rx, stop, counters)
}

/// Collects events into `got` until `done` says so or `within` passes.
async fn collect(
    rx: &mut mpsc::Receiver<DriverBatch>,
    got: &mut Vec<DriverEvent>,
    within: Duration,
    done: impl Fn(&[DriverEvent]) -> bool,
) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while !done(got) {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(batch)) => got.extend(batch),
            _ => return false,
        }
    }
    true
}

/// The conditions a driver sent: (level, native code, message).
fn conditions(events: &[DriverEvent]) -> Vec<(ConditionLevel, Option<String>, Option<String>)> {
    events
        .iter()
        .filter_map(|e| match e {
            DriverEvent::Condition(c) => Some((c.level, c.native_code.clone(), c.message.clone())),
            _ => None,
        })
        .collect()
}

/// A control of `series` with a program running, served on a port of its own by the
/// simulator's FOCAS face code.
async fn control_on_a_port(series: Series) -> (SocketAddr, SharedControl) {
    let t = Clock::system().now();
    let mut c = Control::new(series, 4);
    let v = |s: &str| FaceValue::Value(Value::text(s));
    c.apply("program", &v("O4417"), t);
    c.apply("part_count", &FaceValue::Value(Value::Int(12)), t);
    c.apply("execution", &v("ACTIVE"), t);
    c.apply("spindle_speed", &FaceValue::Value(Value::Float(4500.0)), t);
    let control = Arc::new(Mutex::new(c));
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let served = control.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let c = served.clone();
            tokio::spawn(async move {
                let _ = focas_face::answer(stream, &c, CancellationToken::new()).await;
            });
        }
    });
    (addr, control)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_per_poll_alarms_as_conditions_and_refused_items_bad() {
    for series in [Series::ZeroI, Series::ThirtyI] {
        let (addr, control) = control_on_a_port(series).await;
        let (mut rx, stop, counters) = start_driver(
            spec(
                &addr.to_string(),
                vec![3027, 100, 99999],
                vec![6712, 6799],
                Duration::from_secs(2),
            ),
            Duration::from_millis(50),
        );
        let mut got = Vec::new();
        collect(&mut rx, &mut got, Duration::from_secs(20), |e| {
            value(e, "#99999").is_some() && value(e, "program.name").is_some()
        })
        .await;
        let good = |got: &[DriverEvent], k: &str| value(got, k).map(|(v, q)| (v.clone(), q));
        let g = |v: Value| Some((v, Quality::Good));
        assert_eq!(good(&got, "statinfo.run"), g(Value::Int(3)), "{series:?}");
        assert_eq!(good(&got, "statinfo.aut"), g(Value::Int(1)));
        assert_eq!(good(&got, "statinfo.motion"), g(Value::Int(1)));
        assert_eq!(good(&got, "statinfo.alarm"), g(Value::Int(0)));
        assert_eq!(good(&got, "program.main"), g(Value::Int(4417)));
        assert_eq!(good(&got, "program.name"), g(Value::text("O4417")));
        assert_eq!(good(&got, "param.6711"), g(Value::Int(12)));
        assert_eq!(good(&got, "#3027"), g(Value::Float(4500.0)));
        assert_eq!(good(&got, "#100"), g(Value::Unavailable));
        assert_eq!(good(&got, "alarm.count"), g(Value::Int(0)));
        match series {
            Series::ZeroI => {
                assert_eq!(good(&got, "sysinfo.cnc_type"), g(Value::text("0")));
                assert_eq!(good(&got, "sysinfo.max_axis"), g(Value::Int(8)));
                assert_eq!(good(&got, "program.path"), None);
            }
            Series::ThirtyI => {
                assert_eq!(good(&got, "sysinfo.cnc_type"), g(Value::text("30")));
                assert_eq!(
                    good(&got, "program.path"),
                    g(Value::text("//CNC_MEM/USER/PATH1/O4417"))
                );
            }
        }
        // Items the control refuses are Bad with its answer; the rest of the poll is good.
        let (v, q) = value(&got, "#99999").unwrap_or_else(|| panic!("no #99999"));
        assert!(matches!(q, Quality::Bad(_)), "{q:?}");
        assert_eq!(v, &Value::text("cnc_rdmacro #99999 (0x15): EW_NUMBER (3)"));
        let (v, q) = value(&got, "param.6799").unwrap_or_else(|| panic!("no param.6799"));
        assert!(matches!(q, Quality::Bad(_)), "{q:?}");
        assert_eq!(v, &Value::text("cnc_rdparam 6799 (0x0E): EW_NUMBER (3)"));
        assert!(counters.device_errors.load(Ordering::Relaxed) >= 2);
        // The first alarm read clears whatever was active before this connection.
        assert_eq!(conditions(&got), vec![(ConditionLevel::Normal, None, None)]);

        // An alarm comes: a Fault with the code as the screen shows it; it goes: Normal.
        let t = Clock::system().now();
        let alarm = |level, code: Option<&str>, msg: Option<&str>| FaceValue::Condition {
            level,
            native_code: code.map(str::to_string),
            message: msg.map(str::to_string),
        };
        control.lock().unwrap_or_else(|p| p.into_inner()).apply(
            "alarm",
            &alarm(
                ConditionLevel::Fault,
                Some("1401"),
                Some("X SERVO AMP ERROR"),
            ),
            t,
        );
        let raised = (
            ConditionLevel::Fault,
            Some("SV1401".to_string()),
            Some("X SERVO AMP ERROR".to_string()),
        );
        let r = raised.clone();
        assert!(
            collect(&mut rx, &mut got, Duration::from_secs(10), |e| conditions(
                e
            )
            .contains(&r))
            .await,
            "{got:#?}"
        );
        assert_eq!(good(&got, "statinfo.alarm"), g(Value::Int(1)));
        assert_eq!(good(&got, "alarm.count"), g(Value::Int(1)));
        control.lock().unwrap_or_else(|p| p.into_inner()).apply(
            "alarm",
            &alarm(ConditionLevel::Normal, None, None),
            t,
        );
        let cleared = (ConditionLevel::Normal, Some("SV1401".to_string()), None);
        let c = cleared.clone();
        assert!(
            collect(&mut rx, &mut got, Duration::from_secs(10), |e| conditions(
                e
            )
            .contains(&c))
            .await,
            "{got:#?}"
        );
        // Raised once and cleared once, not per poll.
        assert_eq!(
            conditions(&got),
            vec![(ConditionLevel::Normal, None, None), raised, cleared]
        );
        assert_eq!(links(&got, LinkStatus::Connected), 1, "{got:#?}");
        assert_eq!(links(&got, LinkStatus::Lost), 0, "{got:#?}");
        // Report by exception: program.name once.
        let names = got
            .iter()
            .filter(
                |e| matches!(e, DriverEvent::Observation(o) if o.key.as_str() == "program.name"),
            )
            .count();
        assert_eq!(names, 1);
        stop.cancel();
    }
}

/// What a broken control does on its n-th connection.
#[derive(Clone, Copy, Debug)]
enum Misbehave {
    /// Garbage before every answer (the driver skips it and counts it).
    GarbageFirst,
    /// The poll's answer cut short, then a hang-up.
    Truncated,
    /// The poll's answer announces 65535 bytes.
    Oversize,
    /// Answers the open request with a response packet.
    WrongType,
    /// Answers the poll with a different sync, then nothing.
    WrongSync,
    Fine,
}

/// A control that misbehaves in turn on each connection (then behaves).
async fn broken_control() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let count = Arc::new(AtomicUsize::new(0));
    let n = count.clone();
    tokio::spawn(async move {
        let control = Control::new(Series::ZeroI, 0);
        // The first failure is the one a Lost event names (one per outage).
        let order = [
            Misbehave::WrongType,
            Misbehave::GarbageFirst,
            Misbehave::Truncated,
            Misbehave::Oversize,
            Misbehave::WrongSync,
        ];
        while let Ok((mut stream, _)) = listener.accept().await {
            let i = n.fetch_add(1, Ordering::SeqCst);
            let mode = order.get(i).copied().unwrap_or(Misbehave::Fine);
            let control = control.clone();
            tokio::spawn(async move {
                let mut framer = Framer::new();
                let mut buf = [0u8; 2048];
                let mut answered = 0;
                loop {
                    let Ok(n) = stream.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    framer.push(&buf[..n]);
                    while let Ok(Some(p)) = framer.next_packet() {
                        let Some(reply) = focas_face::reply(&control, &p) else {
                            return;
                        };
                        let mut out = reply.encode();
                        let is_poll = p.kind == wire::REQUEST && answered >= 2;
                        match mode {
                            Misbehave::GarbageFirst => {
                                let mut g = b"\x00garbage\xA0\xA0".to_vec();
                                g.extend(out);
                                out = g;
                                if answered >= 4 {
                                    let _ = stream.write_all(&out).await;
                                    return; // hang up after a few answers
                                }
                            }
                            Misbehave::Truncated if is_poll => {
                                out.truncate(out.len() / 2);
                                let _ = stream.write_all(&out).await;
                                return;
                            }
                            Misbehave::Oversize if is_poll => {
                                out = vec![0xA0, 0xA0, 0xA0, 0xA0, 0, 2, 0x21, 0x02, 0xFF, 0xFF];
                            }
                            Misbehave::WrongType if p.kind == wire::OPEN_REQUEST => {
                                out = Packet::new(2, wire::RESPONSE, vec![0, 0]).encode();
                            }
                            Misbehave::WrongSync if is_poll => {
                                out[2] = 0xA1;
                            }
                            _ => {}
                        }
                        if stream.write_all(&out).await.is_err() {
                            return;
                        }
                        answered += 1;
                    }
                }
            });
        }
    });
    (addr, count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_frames_are_lost_links_with_the_reason_counted_and_survived() {
    let (addr, _count) = broken_control().await;
    let (mut rx, stop, counters) = start_driver(
        spec(
            &addr.to_string(),
            vec![],
            vec![],
            Duration::from_millis(500),
        ),
        Duration::from_millis(50),
    );
    let mut got = Vec::new();
    // Five bad connections, then a good one that keeps polling.
    let done = collect(&mut rx, &mut got, Duration::from_secs(60), |e| {
        links(e, LinkStatus::Connected) >= 5 && value(e, "statinfo.run").is_some() && {
            let last_link = e.iter().rev().find_map(|e| match e {
                DriverEvent::Link { status, .. } => Some(*status),
                _ => None,
            });
            last_link == Some(LinkStatus::Connected)
                && e.iter()
                    .filter(|e| matches!(e, DriverEvent::Link { .. }))
                    .count()
                    >= 10
        }
    })
    .await;
    stop.cancel();
    let lost: Vec<String> = got
        .iter()
        .filter_map(|e| match e {
            DriverEvent::Link {
                status: LinkStatus::Lost,
                detail: Some(d),
                ..
            } => Some(d.clone()),
            _ => None,
        })
        .collect();
    assert!(done, "{lost:#?}\n{got:#?}");
    let has = |s: &str| lost.iter().any(|d| d.contains(s));
    assert!(has(&format!("{addr} closed the connection")), "{lost:#?}");
    assert!(
        has(&format!(
            "unreadable answer to the poll request from {addr}: packet body of 65535 bytes announced, more than the 32768 accepted"
        )),
        "{lost:#?}"
    );
    assert!(
        has(&format!(
            "{addr} answered the open request with a response (0x2102) instead of a open response (0x0102)"
        )),
        "{lost:#?}"
    );
    assert!(
        has(&format!(
            "no answer to the poll request from {addr} within 500 ms"
        )),
        "{lost:#?}"
    );
    // Garbage, broken frames and wrong packets are counted as bad input.
    assert!(counters.bad_input.load(Ordering::Relaxed) >= 4);
    assert!(counters.link_errors.load(Ordering::Relaxed) >= 5);
}

/// Starts `shopbridge simulate` with `args` and reads its description line.
fn simulate(args: &[&str]) -> (KillOnDrop, String) {
    let (child, line, _) = simulate_printing(args);
    (child, line)
}

/// Like [`simulate`], also handing back what it printed before (a `--print-config`).
fn simulate_printing(args: &[&str]) -> (KillOnDrop, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_shopbridge"))
        .arg("simulate")
        .args([
            "--shdr-base-port",
            "0",
            "--mtconnect-port",
            "0",
            "--haas-base-port",
            "0",
            "--modbus-base-port",
            "0",
        ])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start shopbridge simulate: {e}"));
    let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut before = String::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("simulated shop:") {
                let _ = tx.send((line, std::mem::take(&mut before)));
            } else {
                before.push_str(&line);
                before.push('\n');
            }
        }
    });
    let (line, before) = rx
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("simulate did not describe itself: {e}"));
    (KillOnDrop(child), line, before)
}

/// The FOCAS ports a `simulate` description lists: machine id → address.
fn focas_ports(line: &str) -> BTreeMap<String, String> {
    let Some(i) = line.find("FOCAS ports: ") else {
        return BTreeMap::new();
    };
    let rest = &line[i + "FOCAS ports: ".len()..];
    let rest = rest.split(';').next().unwrap_or("");
    rest.split(", ")
        .filter_map(|pair| {
            let (id, addr) = pair.trim().split_once(' ')?;
            Some((id.to_string(), addr.to_string()))
        })
        .collect()
}

/// One poll of our driver: key → value.
async fn read_once(addr: &str) -> BTreeMap<String, Value> {
    let mut f = Focas::new(spec(
        addr,
        vec![500, 100, 3027],
        vec![],
        Duration::from_secs(2),
    ));
    let mut link = f.connect().await.unwrap_or_else(|e| panic!("{e}"));
    let mut out = Readings::default();
    f.poll(&mut link, &mut out)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    f.close(link).await;
    out.items()
        .iter()
        .map(|r| (r.key.as_str().to_string(), r.value.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyfocas_reads_what_the_driver_reads() {
    // Machines 4 and 12 are the shop's Fanuc machines: a 0i-F and a 30i-B.
    let (_sim, line, config) = simulate_printing(&[
        "--machines",
        "13",
        "--focas-base-port",
        "0",
        "--print-config",
    ]);
    let ports = focas_ports(&line);
    assert_eq!(ports.len(), 2, "{line}");
    // The configuration printed for users reads the Fanuc machines over FOCAS, and checks.
    for addr in ports.values() {
        assert!(
            config.contains(&format!("profile = \"fanuc-focas\"\n[machines.driver]\ntype = \"focas\"\naddress = \"{addr}\"\n")),
            "{config}"
        );
    }
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("shopbridge.toml");
    std::fs::write(
        &path,
        config.replace(
            "dir = \"./shopbridge-data\"",
            &format!("dir = {:?}", dir.path().join("data").display().to_string()),
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let check = Command::new(env!("CARGO_BIN_EXE_shopbridge"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(String::from_utf8_lossy(&check.stdout), "OK\n", "{config}");
    let addrs: Vec<String> = ports.values().cloned().collect();
    let mut before = Vec::new();
    for a in &addrs {
        before.push(read_once(a).await);
    }
    let peer = Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/focas/peer.py"))
        .args(&addrs)
        .output()
        .unwrap_or_else(|e| {
            panic!("python3 tests/focas/peer.py: {e} (is pyfocas installed? run ./scripts/test)")
        });
    assert!(
        peer.status.success(),
        "tests/focas/peer.py failed (is pyfocas 0.1.1 installed? run ./scripts/test): {}",
        String::from_utf8_lossy(&peer.stderr)
    );
    let theirs: serde_json::Value =
        serde_json::from_slice(&peer.stdout).unwrap_or_else(|e| panic!("peer JSON: {e}"));
    let mut after = Vec::new();
    for a in &addrs {
        after.push(read_once(a).await);
    }
    let mut series = Vec::new();
    for (i, a) in addrs.iter().enumerate() {
        let t = &theirs[a.as_str()];
        let ours = &before[i];
        let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
        for f in ["cnc_type", "mt_type", "series", "version"] {
            assert_eq!(
                ours.get(&format!("sysinfo.{f}")).map(|v| v.to_string()),
                Some(text(&t["sysinfo"][f])),
                "{a} sysinfo.{f}"
            );
        }
        assert_eq!(
            ours.get("sysinfo.max_axis").and_then(Value::as_i64),
            t["sysinfo"]["max_axis"].as_i64()
        );
        series.push(text(&t["sysinfo"]["cnc_type"]));
        // The machine runs on between the reads: pyfocas's status is one of ours around it.
        let stat = |m: &BTreeMap<String, Value>| {
            ["aut", "run", "motion", "mstb", "emergency", "alarm", "edit"]
                .iter()
                .map(|f| m.get(&format!("statinfo.{f}")).and_then(Value::as_i64))
                .collect::<Vec<_>>()
        };
        let peer_stat: Vec<Option<i64>> =
            ["aut", "run", "motion", "mstb", "emergency", "alarm", "edit"]
                .iter()
                .map(|f| t["statinfo"][*f].as_i64())
                .collect();
        assert!(
            peer_stat == stat(ours) || peer_stat == stat(&after[i]),
            "{a}: pyfocas {peer_stat:?}, ours {:?} / {:?}",
            stat(ours),
            stat(&after[i])
        );
        assert_eq!(t["macros"]["500"].as_f64(), Some(12.5));
        assert_eq!(ours.get("#500"), Some(&Value::Float(12.5)));
        // Vacant: pyfocas cannot decode it, ours says UNAVAILABLE.
        assert!(t["macros"]["100"].is_null());
        assert_eq!(ours.get("#100"), Some(&Value::Unavailable));
        assert!(t["macros"]["3027"].as_f64().is_some());
    }
    series.sort();
    assert_eq!(series, vec!["0".to_string(), "30".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulate_child_that_dies_is_a_lost_link_and_comes_back() {
    // Machine 4 is the shop's Fanuc; its FOCAS port is base + 4.
    let port = common::free_port();
    let base = (port - 4).to_string();
    let args = ["--machines", "5", "--focas-base-port", base.as_str()];
    let (sim, line) = simulate(&args);
    assert!(line.contains(&format!("127.0.0.1:{port}")), "{line}");
    let addr = format!("127.0.0.1:{port}");
    let (mut rx, stop, _counters) = start_driver(
        spec(&addr, vec![3027], vec![], Duration::from_secs(2)),
        Duration::from_millis(100),
    );
    let mut got = Vec::new();
    assert!(
        collect(&mut rx, &mut got, Duration::from_secs(20), |e| value(
            e,
            "statinfo.run"
        )
        .is_some())
        .await,
        "{got:#?}"
    );
    drop(sim);
    assert!(
        collect(&mut rx, &mut got, Duration::from_secs(20), |e| links(
            e,
            LinkStatus::Lost
        ) >= 1)
        .await,
        "{got:#?}"
    );
    let (_sim, _) = simulate(&args);
    assert!(
        collect(&mut rx, &mut got, Duration::from_secs(30), |e| links(
            e,
            LinkStatus::Connected
        ) >= 2)
        .await,
        "{got:#?}"
    );
    stop.cancel();
    // Lost once for the outage, however many attempts failed.
    assert_eq!(links(&got, LinkStatus::Lost), 1, "{got:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bridge_reads_a_simulated_fanuc_through_focas() {
    let clock = Clock::scaled(Clock::system().now(), 60.0);
    let opts = ShopOptions {
        machines: 5,
        // A seed whose Fanuc machine (index 4) cuts in the first simulated minutes.
        seed: 16,
        start: clock.now(),
        shop_offset_micros: shopbridge::sim::demo_shop_offset(clock.now()),
        skews: vec![],
    };
    let ports = Ports {
        focas_base: Some(0),
        ..Ports::default()
    };
    let server = SimServer::start(&opts, ports, clock.clone(), None, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let machines: Vec<_> = server
        .machine_configs()
        .into_iter()
        .filter(|m| m.driver.type_name() == "focas")
        .collect();
    assert_eq!(machines.len(), 1);
    assert_eq!(machines[0].profile, "fanuc-focas");
    let id = machines[0].id.clone();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let bridge = common::InProcessBridge::start(machines, dir.path(), &clock, &opts);
    // Twenty simulated minutes.
    tokio::time::sleep(Duration::from_secs(20)).await;
    bridge.stop().await;
    server.stop().await;

    let journal = ReadOnlyJournal::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let records = journal
        .read(0, usize::MAX)
        .unwrap_or_else(|e| panic!("{e}"));
    let mine = |r: &&shopbridge::model::Record| r.kind.machine() == &id;
    let states: Vec<ShopState> = records
        .iter()
        .filter(mine)
        .filter_map(|r| match &r.kind {
            RecordKind::StateChange(s) => Some(s.shop_state),
            _ => None,
        })
        .collect();
    let signal = |name: &str| {
        records
            .iter()
            .filter(mine)
            .filter_map(|r| match &r.kind {
                RecordKind::Observation(o) if o.signal.as_str() == name => Some(o.value.clone()),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    assert!(
        states.contains(&ShopState::Run),
        "{states:?} {:?}",
        signal("execution")
    );
    assert!(states.contains(&ShopState::Idle), "{states:?}");
    assert!(
        signal("program")
            .iter()
            .any(|p| p.to_string().starts_with('O')),
        "{:?}",
        signal("program")
    );
    assert!(!signal("part_count").is_empty());
    assert!(signal("execution").contains(&Value::text("ACTIVE")));
    assert!(signal("controller_mode").contains(&Value::text("AUTOMATIC")));
    assert!(signal("cnc_type").contains(&Value::text("0")));
    assert!(
        signal("spindle_speed")
            .iter()
            .any(|v| v.as_f64().is_some_and(|x| x > 0.0))
    );
    assert!(records.iter().filter(mine).any(|r| matches!(&r.kind,
        RecordKind::Interval(i) if i.category.is_some())));
}
