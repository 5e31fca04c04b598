//! Slow HTTP clients holding connections open (a hung dashboard, a port scanner, slowloris).

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::Row;
use crate::common::mqtt::Adapter;
use crate::rig::{self, Bridge, Feeder, Mqtt, T};

const CLIENTS: usize = 500;

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

pub fn run() -> Row {
    let dir = tempfile::tempdir().unwrap();
    let mut mqtt = Mqtt::start(dir.path());
    let adapter = Adapter::new();
    adapter.accept_forever();
    Bridge::configure(
        dir.path(),
        Some(mqtt.port),
        &rig::shdr_machine(&adapter.address()),
    );
    let mut bridge = Bridge::start(dir.path());
    let http = bridge.http();
    let mut feeder = Feeder::start(&adapter, Duration::from_millis(10));
    mqtt.until_part(50, T);
    let fds_before = fds(bridge.pid());

    // Each client sends half a request, then a byte every second.
    let mut slow: Vec<TcpStream> = (0..CLIENTS)
        .filter_map(|_| {
            let mut s = TcpStream::connect(http).ok()?;
            s.write_all(b"GET /api/v1/machines HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
                .ok()?;
            Some(s)
        })
        .collect();
    let mut worst = Duration::ZERO;
    let mut peak_fds = 0;
    let began = Instant::now();
    while began.elapsed() < Duration::from_secs(15) {
        for s in &mut slow {
            let _ = s.write_all(b"a");
        }
        let t = Instant::now();
        let (code, _) = rig::http_get(http, "/healthz", Duration::from_secs(10))
            .expect("a normal client is served while slow ones hold connections");
        assert_eq!(code, 200);
        worst = worst.max(t.elapsed());
        peak_fds = peak_fds.max(fds(bridge.pid()));
        std::thread::sleep(Duration::from_secs(1));
    }
    drop(slow);
    std::thread::sleep(Duration::from_secs(2));
    let fds_after = fds(bridge.pid());
    let written = feeder.stop();
    let last = *written.last().unwrap();
    mqtt.until_part(last, T);
    bridge.stop();
    let records = bridge.journal();
    rig::assert_contiguous(&records);
    let stored = rig::stored_values(&records, "part_count");
    let offered = written.iter().copied().collect();
    let (o, s, d, lost) = rig::count(&offered, &stored, &mqtt.delivered());
    assert!(
        fds_after <= fds_before + 10,
        "descriptors leaked: {fds_before} before, {fds_after} after"
    );
    Row {
        fault: format!("{CLIENTS} slow HTTP clients hold connections for 15 s"),
        offered: o,
        stored: s,
        delivered: d,
        lost,
        notes: format!(
            "a normal request answered within {} ms throughout; descriptors {fds_before} → peak \
             {peak_fds} → {fds_after}",
            worst.as_millis()
        ),
    }
}
