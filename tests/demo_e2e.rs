//! The README's first promise, end to end: `shopbridge demo --speed 600` serves live machine
//! state and journal records over HTTP and OPC UA, stops cleanly on SIGTERM, and its records
//! export. The OPC UA side is checked by Python asyncua, a client no one here wrote
//! (`tests/opcua/client.py`).

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Kills the demo if the test fails before stopping it, so that a failure never leaves a
/// process behind.
struct KillOnDrop(Option<u32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

/// Where the demo listens.
struct Demo {
    http: String,
    opcua: String,
}

fn start_demo(dir: &std::path::Path, machines: u32, speed: &str) -> (Child, Demo) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_shopbridge"))
        .args([
            "demo",
            "--speed",
            speed,
            "--http-port",
            "0",
            "--opcua-port",
            "0",
            "--mqtt-port",
            "0",
            "--machines",
            &machines.to_string(),
            "--data-dir",
        ])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the demo");
    let stdout = child.stdout.take().expect("stdout");
    let (http, opcua) = common::announced(stdout, true);
    let demo = Demo {
        http,
        opcua: opcua.unwrap_or_default(),
    };
    (child, demo)
}

fn sigterm(child: &Child) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(ok.success());
}

async fn get(client: &reqwest::Client, url: &str) -> Value {
    let r = client
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert!(r.status().is_success(), "GET {url}: {}", r.status());
    r.json().await.expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_serves_live_state_and_records_then_stops_cleanly_and_exports() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, demo) = start_demo(dir.path(), 12, "600");
    let base = demo.http;
    let mut guard = KillOnDrop(Some(child.id()));
    let client = reqwest::Client::new();

    // Live state: every machine, with the fields the README promises, and the shop moving.
    let deadline = Instant::now() + Duration::from_secs(20);
    let machines = loop {
        let v = get(&client, &format!("{base}/api/v1/machines")).await;
        let arr = v.as_array().expect("an array").clone();
        let reporting = arr.iter().filter(|m| !m["since"].is_null()).count();
        if reporting == 12 || Instant::now() > deadline {
            break arr;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(machines.len(), 12);
    for m in &machines {
        for key in [
            "id",
            "name",
            "state",
            "execution",
            "program",
            "part_count",
            "since",
        ] {
            assert!(m.get(key).is_some(), "machine {m} lacks {key}");
        }
        assert!(
            ["RUN", "IDLE", "DOWN", "OFF"].contains(&m["state"].as_str().unwrap()),
            "{m}"
        );
        assert!(
            !m["since"].is_null(),
            "machine {} never reported: {m}",
            m["id"]
        );
        // Read over the network by the real drivers, through each family's profile.
        let driver = m["driver"].as_str().unwrap_or_default();
        assert!(
            ["shdr", "mtconnect", "haas", "modbus"].contains(&driver),
            "{m}"
        );
        assert_eq!(m["link"], "connected", "{m}");
        // Haas MDC and Modbus tell no machine time: nothing to estimate a clock offset from.
        assert_eq!(
            m["clock"]["offset_ms"].is_number(),
            driver != "haas" && driver != "modbus",
            "{m}"
        );
        // A Haas says its state in Q500's status word, from which the profile derives it.
        // A retrofit says it with its stack light and cycle relay.
        // A Haas busy when the bridge connected names its program only when the cycle ends
        // (Q500 answers `STATUS, BUSY` without it), so the program may not be there yet.
        let signals: &[&str] = if driver == "haas" {
            &["haas_status", "part_count", "motion_time"]
        } else if driver == "modbus" {
            &["red_lamp", "cycle", "part_count"]
        } else {
            &["execution", "program", "part_count", "availability"]
        };
        for signal in signals {
            assert!(
                m["signals"].get(signal).is_some(),
                "{} lacks {signal}: {m}",
                m["id"]
            );
        }
    }
    let drivers: std::collections::BTreeSet<&str> = machines
        .iter()
        .filter_map(|m| m["driver"].as_str())
        .collect();
    assert_eq!(
        drivers.len(),
        4,
        "SHDR, MTConnect, Haas MDC and Modbus machines: {drivers:?}"
    );

    // Records: sequence numbers from 1, gap-free, paging with next_after.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let page = get(&client, &format!("{base}/api/v1/records?after=0&limit=500")).await;
    let recs = page["records"].as_array().expect("records");
    assert_eq!(recs.len(), 500, "{page}");
    for (i, r) in recs.iter().enumerate() {
        assert_eq!(r["seq"].as_u64(), Some(i as u64 + 1));
        assert!(r["kind"].is_string() && r["machine"].is_string(), "{r}");
    }
    let next = page["next_after"].as_u64().expect("next_after");
    let page2 = get(
        &client,
        &format!("{base}/api/v1/records?after={next}&limit=10"),
    )
    .await;
    assert_eq!(page2["records"][0]["seq"].as_u64(), Some(next + 1));
    let kinds: std::collections::BTreeSet<String> = get(
        &client,
        &format!("{base}/api/v1/records?after=0&limit=10000"),
    )
    .await["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap().to_string())
        .collect();
    for k in ["observation", "state_change", "link", "interval"] {
        assert!(
            kinds.contains(k),
            "no {k} record in the first 10000: {kinds:?}"
        );
    }
    // Bad input gets a JSON error with a stable code.
    let r = client
        .get(format!("{base}/api/v1/records?limit=0"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "bad_limit");

    let health = get(&client, &format!("{base}/healthz")).await;
    assert_eq!(health["status"], "ok");
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("shopbridge_journal_records_appended_total "),
        "{metrics}"
    );
    assert!(
        metrics.contains("shopbridge_machine_link_up{machine="),
        "{metrics}"
    );

    // Export while the bridge runs: through its HTTP API.
    let live_export = Command::new(env!("CARGO_BIN_EXE_shopbridge"))
        .args(["export", "--format", "jsonl", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("export");
    assert!(
        live_export.status.success(),
        "{}",
        String::from_utf8_lossy(&live_export.stderr)
    );
    let n_live = live_export
        .stdout
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .count();
    assert!(n_live >= 500, "{n_live}");

    // Clean stop within 2 s, journal flushed.
    let t = Instant::now();
    sigterm(&child);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "the demo did not stop"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    guard.0 = None;
    assert!(status.success(), "{status}");
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "stopping took {:?}",
        t.elapsed()
    );

    // Export from the file, as CSV: at least everything we saw, every row well-formed.
    let out = Command::new(env!("CARGO_BIN_EXE_shopbridge"))
        .args(["export", "--format", "csv", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("export");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let csv = String::from_utf8(out.stdout).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("seq,kind,machine,time,signal,value,quality,source_time,received_time,detail")
    );
    let rows: Vec<&str> = lines.collect();
    assert!(
        rows.len() >= n_live,
        "{} rows after stop, {n_live} while running",
        rows.len()
    );
    // The last records are the intervals closed at shutdown.
    assert!(
        rows.iter().rev().take(12).all(|r| r.contains(",interval,")),
        "{:?}",
        &rows[rows.len() - 12..]
    );

    // Ground truth was written.
    let truth = std::fs::read_to_string(dir.path().join("truth.jsonl")).expect("truth.jsonl");
    let first: Value = serde_json::from_str(truth.lines().next().expect("a truth line")).unwrap();
    assert!(
        first["category"].is_string() && first["machine"].is_string(),
        "{first}"
    );

    // Filters: one machine, a time window.
    let m0 = machines[0]["id"].as_str().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_shopbridge"))
        .args(["export", "--format", "jsonl", "--machine", m0, "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.lines().count() > 0);
    assert!(
        text.lines()
            .all(|l| l.contains(&format!("\"machine\":\"{m0}\"")))
    );
}

/// Runs one scenario of tests/opcua/client.py; returns what it printed.
fn asyncua(args: &[&str]) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/opcua/client.py");
    let out = Command::new("python3")
        .arg(script)
        .args(args)
        .output()
        .expect("run python3 (./scripts/test installs it with asyncua)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("No module named 'asyncua'"),
        "Python asyncua is missing: run ./scripts/test, which installs it"
    );
    assert!(
        out.status.success(),
        "asyncua {args:?} failed:\n{stdout}\n{stderr}"
    );
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_asyncua_client_browses_subscribes_calls_methods_and_is_held_to_security() {
    let dir = tempfile::tempdir().unwrap();
    let (child, demo) = start_demo(dir.path(), 4, "10");
    let _guard = KillOnDrop(Some(child.id()));
    let url = demo.opcua.as_str();

    // Every machine under Objects/Machines as a MachineToolType, checked against the
    // companion specifications' namespace URIs, and the whole tree readable.
    let b = asyncua(&["browse", url, "4"]);
    assert_eq!(b["machines"].as_array().map(Vec::len), Some(4), "{b}");
    assert!(b["nodes"].as_u64().unwrap_or(0) > 4 * 50, "{b}");

    // A value change from a simulated machine reaches a subscribed client.
    let s = asyncua(&["subscribe", url]);
    assert!(
        s["first_change_after_s"].as_f64().unwrap_or(99.0) < 30.0,
        "{s}"
    );

    // Each method becomes a journal record attributed to the user; bad arguments are refused
    // with Bad_InvalidArgument; viewers and anonymous clients may not call.
    let m = asyncua(&["methods", url, &demo.http]);
    assert_eq!(m["records"]["SetStopReason"], "stop_reason", "{m}");
    assert_eq!(m["as_viewer"], "BadUserAccessDenied", "{m}");

    // Basic256Sha256 and Aes256Sha256RsaPss with a user, once the client's certificate is
    // trusted; a wrong password and an untrusted certificate are refused.
    let work = dir.path().join("client-certs");
    let pki = dir.path().join("pki");
    let sec = asyncua(&["secure", url, pki.to_str().unwrap(), work.to_str().unwrap()]);
    assert_eq!(sec["first_contact"], "BadCertificateUntrusted", "{sec}");
    assert!(sec["wrong_password"].is_string(), "{sec}");
    assert!(sec["untrusted_certificate"].is_string(), "{sec}");
    sigterm(&child);
}
