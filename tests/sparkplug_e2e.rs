//! The Sparkplug B edge node against real peers: Mosquitto (started here on a free port) as
//! the broker and `tests/sparkplug/host.py` (Python pysparkplug) as an independent host. The
//! machine is an SHDR adapter played by the test over a real socket, so every record is known.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::mpsc::channel;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const GROUP: &str = "plant-7";
const NODE: &str = "bridge-1";

mod common;
use common::mqtt::{Adapter, Host, is, metric, metrics, mosquitto, write_passwd};
use common::{KillOnDrop, free_port};

fn bridge(dir: &Path, broker: u16, adapter: &str, mqtt_extra: &str) -> KillOnDrop {
    bridge_with(dir, broker, adapter, "", mqtt_extra)
}

/// `shopbridge run` with one SHDR machine, `mill-1`, and extra `[sparkplug]` and `[mqtt]` keys.
fn bridge_with(
    dir: &Path,
    broker: u16,
    adapter: &str,
    sparkplug_extra: &str,
    mqtt_extra: &str,
) -> KillOnDrop {
    let config = dir.join("bridge.toml");
    std::fs::write(
        &config,
        format!(
            "[journal]\ndir = {:?}\n[http]\nlisten = \"127.0.0.1:0\"\n\
             [sparkplug]\ngroup_id = \"{GROUP}\"\nedge_node_id = \"{NODE}\"\n{sparkplug_extra}\n\
             [mqtt]\nurl = \"mqtt://127.0.0.1:{broker}\"\nkeep_alive = \"5s\"\n{mqtt_extra}\n\
             [[machines]]\nid = \"mill-1\"\nname = \"Mill 1\"\nprofile = \"mtconnect-generic\"\n\
             driver = {{ type = \"shdr\", address = \"{adapter}\" }}\n",
            dir.join("data").display().to_string(),
        ),
    )
    .unwrap();
    KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_shopbridge"))
            .args(["run", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .spawn()
            .expect("start the bridge"),
    )
}

/// The bridge's Prometheus metrics (its HTTP address is in bridge.json).
fn bridge_metrics(dir: &Path) -> String {
    let bf: Value =
        serde_json::from_slice(&std::fs::read(dir.join("data/bridge.json")).unwrap()).unwrap();
    let mut s = TcpStream::connect(bf["http"].as_str().unwrap()).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn counter(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics"))
}

const T: Duration = Duration::from_secs(30);

#[test]
fn a_host_sees_births_data_commands_rebirth_deaths_and_the_will() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _broker = mosquitto(dir.path(), port, "allow_anonymous true");
    let mut host = Host::start(port, GROUP, &[]);
    let adapter = Adapter::new();
    let mut bridge = bridge(dir.path(), port, &adapter.address(), "");
    adapter.accept();
    adapter.write("|avail|AVAILABLE|execution|ACTIVE|mode|AUTOMATIC|PartCount|4");

    // tck-id-topics-nbirth-seq-num, tck-id-payloads-nbirth-bdseq, tck-id-payloads-nbirth-rebirth-req
    let nbirth = host.until("NBIRTH", T, |v| is(v, "NBIRTH", None));
    assert_eq!(nbirth["seq"], 0, "{nbirth}");
    assert_eq!(nbirth["edge_node"], NODE);
    let bd = metric(&nbirth, "bdSeq").expect("bdSeq").clone();
    assert_eq!(bd["datatype"], "Int64", "{bd}");
    let rebirth = metric(&nbirth, "Node Control/Rebirth").expect("rebirth metric");
    assert_eq!(rebirth["datatype"], "Boolean");
    assert!(rebirth["alias"].is_null(), "{rebirth}");
    // tck-id-payloads-dbirth-*: every metric, with alias, datatype and timestamp.
    let dbirth = host.until("DBIRTH", T, |v| is(v, "DBIRTH", Some("mill-1")));
    let ms = dbirth["metrics"].as_array().unwrap();
    assert!(ms.len() > 25, "{dbirth}");
    for m in ms {
        assert!(m["alias"].is_u64(), "no alias: {m}");
        assert!(m["timestamp"].is_u64(), "no timestamp: {m}");
        assert!(m["datatype"].is_string(), "no datatype: {m}");
    }
    for name in [
        "State/Execution",
        "Counts/Parts",
        "Context/Operator",
        "Commands/SignIn",
    ] {
        assert!(metric(&dbirth, name).is_some(), "{name} missing: {dbirth}");
    }

    // DDATA: alias only, resolved through the DBIRTH; a negative Int64 round-trips.
    adapter.write("|PartCount|-7");
    let ddata = host.until("DDATA with Counts/Parts = -7", T, |v| {
        is(v, "DDATA", Some("mill-1"))
            && metrics(v, "Counts/Parts").iter().any(|m| m["value"] == -7)
    });
    for m in ddata["metrics"].as_array().unwrap() {
        assert_eq!(m["name_from_alias"], true, "a name on the wire: {m}");
        assert_ne!(m["unresolved_alias"], true, "{m}");
        assert!(m["timestamp"].is_u64(), "{m}");
    }

    // DCMD: a writable metric by name (no datatype, as the spec recommends) becomes a journal
    // record whose effect comes back as DDATA; bad commands are counted and ignored.
    let dcmd = |metrics: Value| json!({"dcmd": {"edge_node": NODE, "device": "mill-1", "metrics": metrics}});
    host.send(dcmd(
        json!([{"name": "Commands/SignIn", "datatype": "String", "value": "op-17"}]),
    ));
    host.until("Context/Operator = op-17", T, |v| {
        is(v, "DDATA", Some("mill-1"))
            && metrics(v, "Context/Operator")
                .iter()
                .any(|m| m["value"] == "op-17")
    });
    host.send(dcmd(
        json!([{"name": "Commands/ConfirmOperation", "datatype": "String", "value": "no-slash"}]),
    ));
    host.send(dcmd(
        json!([{"name": "State/Execution", "datatype": "String", "value": "READY"}]),
    ));
    host.send(json!({"ncmd": {"edge_node": NODE, "metrics": [{"name": "Node Control/Reboot", "datatype": "Boolean", "value": true}]}}));

    // Rebirth on NCMD: NBIRTH seq 0 with the same bdSeq (no reconnect), then the DBIRTH; a
    // second request inside the cooldown is suppressed.
    host.send(json!({"rebirth": NODE}));
    let again = host.until("the rebirth's NBIRTH", T, |v| is(v, "NBIRTH", None));
    assert_eq!(again["seq"], 0);
    assert_eq!(metric(&again, "bdSeq").unwrap()["value"], bd["value"]);
    let reborn = host.until("the rebirth's DBIRTH", T, |v| {
        is(v, "DBIRTH", Some("mill-1"))
    });
    assert_eq!(
        metric(&reborn, "Context/Operator").unwrap()["value"],
        "op-17",
        "the DBIRTH holds the current values"
    );
    host.send(json!({"rebirth": NODE}));
    let deadline = Instant::now() + T;
    loop {
        let m = bridge_metrics(dir.path());
        if counter(&m, "shopbridge_sparkplug_rebirths_suppressed_total") == 1
            && counter(&m, "shopbridge_sparkplug_commands_refused_total") == 3
        {
            assert_eq!(counter(&m, "shopbridge_sparkplug_rebirths_total"), 1);
            break;
        }
        assert!(Instant::now() < deadline, "counters never reached: {m}");
        std::thread::sleep(Duration::from_millis(100));
    }

    // The machine's link drops: DDEATH; it comes back: DBIRTH.
    adapter.hang_up();
    host.until("DDEATH", T, |v| is(v, "DDEATH", Some("mill-1")));
    adapter.accept();
    adapter.write("|avail|AVAILABLE|execution|READY");
    host.until("DBIRTH after the link returns", T, |v| {
        is(v, "DBIRTH", Some("mill-1"))
    });

    // kill -9: the broker publishes the Will, an NDEATH with the NBIRTH's bdSeq.
    bridge.0.kill().unwrap();
    let ndeath = host.until("NDEATH", T, |v| is(v, "NDEATH", None));
    assert_eq!(metric(&ndeath, "bdSeq").unwrap()["value"], bd["value"]);
    assert_eq!(ndeath["bdseq_matches_birth"], true, "{ndeath}");
}

#[test]
fn a_broker_outage_loses_nothing_and_the_backlog_arrives_once_in_order_as_historical() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // Users, so that the test decides when the bridge may come back: after the host has
    // resubscribed (a backlog published before would reach no subscriber).
    let passwd = dir.path().join("passwd");
    let users = |who: &[(&str, &str)]| write_passwd(&passwd, who);
    users(&[("host", "h-pw"), ("bridge", "b-pw")]);
    let auth = format!("allow_anonymous false\npassword_file {}", passwd.display());
    let mut broker = mosquitto(dir.path(), port, &auth);
    let host_args = ["--username", "host", "--password", "h-pw", "--no-stdin"];
    let mut host = Host::start(port, GROUP, &host_args);
    let adapter = Adapter::new();
    let _bridge = bridge(
        dir.path(),
        port,
        &adapter.address(),
        "username = \"bridge\"\npassword = \"b-pw\"",
    );
    adapter.accept();
    adapter.write("|avail|AVAILABLE|execution|ACTIVE|mode|AUTOMATIC|PartCount|0");
    host.until("DBIRTH", T, |v| is(v, "DBIRTH", Some("mill-1")));

    // The machine counts parts, 200 a second, through the whole test. phase: 0 before the
    // outage, 1 while the bridge cannot publish, 2 after.
    let phase = Arc::new(AtomicU8::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let written: Arc<Mutex<Vec<(i64, u8)>>> = Arc::default();
    let writer = {
        let (phase, stop, written) = (phase.clone(), stop.clone(), written.clone());
        let sock = adapter.sock.clone();
        std::thread::spawn(move || {
            let mut n = 0i64;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let p = phase.load(Ordering::SeqCst);
                if let Some(s) = sock.lock().unwrap().as_mut() {
                    s.write_all(format!("|PartCount|{n}\n").as_bytes()).unwrap();
                }
                written.lock().unwrap().push((n, p));
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    host.until("live parts", T, |v| {
        is(v, "DDATA", Some("mill-1"))
            && metrics(v, "Counts/Parts")
                .iter()
                .any(|m| m["value"].as_i64() > Some(100))
    });

    // The broker goes away for a while; it comes back admitting the host only.
    let _ = Command::new("kill")
        .args(["-TERM", &broker.0.id().to_string()])
        .status();
    let _ = broker.0.wait();
    phase.store(1, Ordering::SeqCst);
    std::thread::sleep(Duration::from_secs(3));
    users(&[("host", "h-pw")]);
    broker = mosquitto(dir.path(), port, &auth);
    host.until("the host resubscribed", T, |v| v["event"] == "resubscribed");
    // Now the bridge: mosquitto rereads its password file on SIGHUP.
    users(&[("host", "h-pw"), ("bridge", "b-pw")]);
    phase.store(2, Ordering::SeqCst);
    let _ = Command::new("kill")
        .args(["-HUP", &broker.0.id().to_string()])
        .status();
    let nbirth = host.until(
        "the NBIRTH after the outage",
        Duration::from_secs(60),
        |v| is(v, "NBIRTH", None),
    );
    assert_eq!(nbirth["seq"], 0);
    let after = host.seen.len();
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    let written = written.lock().unwrap().clone();
    let last = written.last().unwrap().0;
    host.until("the last part", T, |v| {
        is(v, "DDATA", Some("mill-1"))
            && metrics(v, "Counts/Parts")
                .iter()
                .any(|m| m["value"] == last)
    });

    // Every Counts/Parts value the host received in DDATA, in order, with its flag.
    let received: Vec<(i64, bool, bool)> = host
        .seen
        .iter()
        .enumerate()
        .filter(|(_, v)| is(v, "DDATA", Some("mill-1")))
        .flat_map(|(i, v)| {
            v["metrics"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|m| m["name"] == "Counts/Parts")
                .map(move |m| {
                    (
                        m["value"].as_i64().unwrap(),
                        m["is_historical"] == true,
                        i >= after,
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let count = |n: i64| received.iter().filter(|r| r.0 == n).count();
    // Nothing lost.
    for n in 1..=last {
        assert!(
            count(n) >= 1,
            "part {n} (written in phase {:?}) never reached the host; received around it: {:?}",
            written.iter().find(|w| w.0 == n).map(|w| w.1),
            received
                .iter()
                .filter(|r| (r.0 - n).abs() < 5)
                .collect::<Vec<_>>()
        );
    }
    // Each record of the outage exactly once, flagged historical.
    let outage: Vec<i64> = written.iter().filter(|w| w.1 == 1).map(|w| w.0).collect();
    assert!(
        outage.len() > 500,
        "the outage was too short: {}",
        outage.len()
    );
    for n in &outage {
        assert_eq!(
            count(*n),
            1,
            "part {n} of the outage arrived {} times",
            count(*n)
        );
        assert!(
            received.iter().any(|r| r.0 == *n && r.1 && r.2),
            "part {n} of the outage was not flagged historical"
        );
    }
    // In order: one step back at most (to the last point the broker confirmed before it went
    // away), and only over parts sent before the outage.
    let back: Vec<usize> = (1..received.len())
        .filter(|&i| received[i].0 <= received[i - 1].0)
        .collect();
    assert!(back.len() <= 1, "out of order at {back:?}: {received:?}");
    for n in 1..=last {
        if count(n) > 1 {
            assert!(
                written.iter().any(|w| w.0 == n && w.1 == 0),
                "part {n} came twice but was not written before the outage"
            );
        }
    }
    // After the new births: the backlog (historical) first, then live data.
    let post: Vec<bool> = received.iter().filter(|r| r.2).map(|r| r.1).collect();
    let first_live = post.iter().position(|h| !h).unwrap_or(post.len());
    assert!(
        post[first_live..].iter().all(|h| !h),
        "historical data after live data: {post:?}"
    );
    let live: Vec<i64> = written.iter().filter(|w| w.1 == 2).map(|w| w.0).collect();
    assert!(!live.is_empty());
}

#[test]
fn the_demo_publishes_through_its_embedded_broker_and_says_goodbye() {
    let dir = tempfile::tempdir().unwrap();
    let mut demo = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_shopbridge"))
            .args([
                "demo",
                "--machines",
                "3",
                "--speed",
                "60",
                "--http-port",
                "0",
            ])
            .args(["--no-opcua", "--mqtt-port", "0", "--data-dir"])
            .arg(dir.path().join("data"))
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the demo"),
    );
    let stdout = demo.0.stdout.take().unwrap();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.trim().strip_prefix("Sparkplug:") {
                let url = rest.split_whitespace().next().unwrap_or("").to_string();
                let _ = tx.send(url);
            }
        }
    });
    let url = rx
        .recv_timeout(T)
        .expect("the demo announced its MQTT broker");
    let port: u16 = url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{url}"));
    assert!(url.starts_with("mqtt://127.0.0.1:"), "{url}");

    // A host that joins late asks for a rebirth and learns the whole shop.
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sparkplug/host.py");
    let mut host = Host::spawn(
        Command::new("python3")
            .arg(script)
            .args([
                "--broker",
                &format!("127.0.0.1:{port}"),
                "--group",
                "demo-shop",
            ])
            .args(["--seconds", "300"]),
    );
    host.send(json!({"rebirth": "shopbridge"}));
    let nbirth = host.until("NBIRTH", T, |v| is(v, "NBIRTH", None));
    assert_eq!(nbirth["edge_node"], "shopbridge");
    for _ in 0..3 {
        host.until("DBIRTH", T, |v| is(v, "DBIRTH", None));
    }
    host.until("DDATA", T, |v| is(v, "DDATA", None));

    // A graceful stop publishes NDEATH itself (the Will is for crashes).
    let _ = Command::new("kill")
        .args(["-TERM", &demo.0.id().to_string()])
        .status();
    let ndeath = host.until("NDEATH", T, |v| is(v, "NDEATH", None));
    assert_eq!(ndeath["bdseq_matches_birth"], true, "{ndeath}");
    assert!(demo.0.wait().unwrap().success());
}

#[test]
fn with_a_primary_host_the_node_waits_for_it_and_holds_data_while_it_is_offline() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _broker = mosquitto(dir.path(), port, "allow_anonymous true");
    let adapter = Adapter::new();
    let _bridge = bridge_with(
        dir.path(),
        port,
        &adapter.address(),
        "primary_host_id = \"scada-1\"",
        "",
    );
    adapter.accept();
    adapter.write("|avail|AVAILABLE|execution|ACTIVE|PartCount|1");
    // A plain watcher sees no birth while no host is online.
    let mut watcher = Host::start(port, GROUP, &["--no-stdin", "--client-id", "watcher"]);
    std::thread::sleep(Duration::from_secs(2));
    while let Ok(v) = watcher.lines.try_recv() {
        assert!(
            v.get("type").is_none(),
            "published before the host was online: {v}"
        );
    }
    // The primary host comes online: births.
    let mut host = Host::start(port, GROUP, &["--host-id", "scada-1"]);
    host.until("NBIRTH", T, |v| is(v, "NBIRTH", None));
    host.until("DBIRTH", T, |v| is(v, "DBIRTH", Some("mill-1")));
    // The host goes offline: NDEATH, and data is held.
    host.send(json!({"state": {"online": false}}));
    watcher.until("NDEATH", T, |v| is(v, "NDEATH", None));
    for n in 2..=20 {
        adapter.write(&format!("|PartCount|{n}"));
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_secs(1));
    while let Ok(v) = watcher.lines.try_recv() {
        assert!(
            v.get("type").is_none(),
            "published while the host was offline: {v}"
        );
    }
    // Online again: births, then parts 2..=20 as historical data, each once.
    host.send(json!({"state": {"online": true}}));
    watcher.until("NBIRTH", T, |v| is(v, "NBIRTH", None));
    let mut parts = Vec::new();
    while parts.last() != Some(&20) {
        let v = watcher.until("DDATA", T, |v| is(v, "DDATA", Some("mill-1")));
        for m in metrics(&v, "Counts/Parts") {
            assert_eq!(m["is_historical"], true, "{m}");
            parts.push(m["value"].as_i64().unwrap());
        }
    }
    assert_eq!(parts, (2..=20).collect::<Vec<_>>());
}
