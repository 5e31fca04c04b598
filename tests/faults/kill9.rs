//! kill -9 of the bridge under load, then a restart on the same journal.

use std::time::Duration;

use crate::Row;
use crate::rig::{self, Feeder, ShdrRig, T};

pub fn run() -> Row {
    let opcua = crate::common::free_port();
    let mut r = ShdrRig::start(
        "",
        &format!(
            "[opcua]\nlisten = \"127.0.0.1:{opcua}\"\nsecurity_none = true\nanonymous = true\n"
        ),
    );
    // A SCADA client watching the part count over OPC UA, reconnecting as SCADA does.
    let mut scada = Watcher::start(opcua);
    // 200 parts a second from the start.
    let mut feeder = Feeder::start(&r.adapter, Duration::from_millis(5));
    // (The first start makes the OPC UA server's key pair: up to a minute in a debug build.)
    r.mqtt.until_part(200, Duration::from_secs(120));
    let seen_before = scada.until_part_in_session(1, 200, T);
    std::thread::sleep(Duration::from_millis(1500));
    let before = r.mqtt.delivered();
    let births_before = r.mqtt.bdseqs();

    r.bridge.kill9();
    std::thread::sleep(Duration::from_secs(1));
    r.bridge.restart();
    r.mqtt.host.until("the NBIRTH after the restart", T, |v| {
        crate::common::mqtt::is(v, "NBIRTH", None)
    });
    std::thread::sleep(Duration::from_secs(3));
    // The OPC UA client is back, on the same endpoint and node ids, seeing new parts.
    let seen_after = scada.until_part_in_session(2, seen_before + 1, T);
    let f = r.finish(&mut feeder, T);

    let stored = rig::stored_values(&f.records, "part_count");
    let missing: Vec<_> = before.difference(&stored).collect();
    assert!(
        missing.is_empty(),
        "delivered before the kill, missing after it: {missing:?}"
    );
    // bdSeq: the restarted bridge's NBIRTH carries the next number (its will, published by the
    // broker for the killed one, carried the previous).
    let births = r.mqtt.bdseqs();
    assert_eq!(births.len(), births_before.len() + 1, "births: {births:?}");
    let (a, b) = (births[births.len() - 2], births[births.len() - 1]);
    assert_eq!(b, (a + 1) % 256, "bdSeq did not advance: {births:?}");
    let offered = f.written.iter().copied().collect();
    let delivered = r.mqtt.delivered();
    let (o, s, d, lost) = rig::count(&stored, &stored, &delivered);
    let not_taken = rig::count(&offered, &stored, &delivered).0 - s;
    Row {
        fault: "kill -9 of the bridge at 200 records/s, restart".into(),
        offered: o + not_taken,
        stored: s,
        delivered: d,
        lost,
        notes: format!(
            "journal 1..{} contiguous, no seq reused; every part delivered before the kill still stored; \
             bdSeq {a} → {b}; an OPC UA client reconnected (part {seen_before} before, {seen_after} after); {not_taken} parts written into the killed bridge's socket were never read \
             (SHDR has no acknowledgement: a restart reads the adapter's current values)",
            f.records.len()
        ),
    }
}

/// `tests/opcua/client.py watch`: an asyncua client that reconnects whenever the server goes.
struct Watcher {
    _child: crate::common::KillOnDrop,
    lines: std::sync::mpsc::Receiver<serde_json::Value>,
}

impl Watcher {
    fn start(port: u16) -> Watcher {
        use std::io::BufRead;
        let mut child = std::process::Command::new("python3")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/opcua/client.py"
            ))
            .args(["watch", &format!("opc.tcp://127.0.0.1:{port}/"), "300"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("run python3 (./scripts/test installs asyncua)");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str(&l) {
                    if tx.send(v).is_err() {
                        return;
                    }
                }
            }
        });
        Watcher {
            _child: crate::common::KillOnDrop(child),
            lines,
        }
    }

    /// Waits until the client, in its `session`-th connection, has seen part `n` or later.
    fn until_part_in_session(&mut self, session: u64, n: i64, within: Duration) -> i64 {
        let deadline = std::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let v = self.lines.recv_timeout(left).unwrap_or_else(|_| {
                panic!("the OPC UA client saw no part {n} in its session {session}")
            });
            if v["session"].as_u64() == Some(session) && v["part"].as_i64() >= Some(n) {
                return v["part"].as_i64().unwrap_or(n);
            }
        }
    }
}
