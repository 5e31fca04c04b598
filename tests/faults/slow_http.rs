//! Slow HTTP clients holding connections open (a hung dashboard, a port scanner, slowloris).

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::Row;
use crate::rig::{self, Feeder, ShdrRig, T};

/// More than `[http] max_connections` (256 by default), and more than a default open-files
/// limit of 1024 would allow without it.
const CLIENTS: usize = 1200;

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

pub fn run() -> Row {
    let mut r = ShdrRig::start("", "");
    let http = r.bridge.http();
    let mut feeder = Feeder::start(&r.adapter, Duration::from_millis(10));
    r.mqtt.until_part(50, T);
    let fds_before = fds(r.bridge.pid());

    // Each client sends half a request, then a byte every second.
    let mut slow: Vec<TcpStream> = (0..CLIENTS)
        .filter_map(|_| {
            let mut s = TcpStream::connect(http).ok()?;
            s.write_all(b"GET /api/v1/machines HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
                .ok()?;
            Some(s)
        })
        .collect();
    let mut served = 0;
    let mut refused = 0;
    let mut peak_fds = 0;
    let began = Instant::now();
    while began.elapsed() < Duration::from_secs(15) {
        for s in &mut slow {
            let _ = s.write_all(b"a");
        }
        // While every place is taken a new connection is closed at once: counted, not hung.
        match rig::http_get(http, "/healthz", Duration::from_secs(10)) {
            Ok((200, _)) => served += 1,
            _ => refused += 1,
        }
        peak_fds = peak_fds.max(fds(r.bridge.pid()));
        assert!(r.bridge.alive(), "the bridge died: {}", r.bridge.log_tail());
        std::thread::sleep(Duration::from_secs(1));
    }
    drop(slow);
    std::thread::sleep(Duration::from_secs(2));
    let t = Instant::now();
    let (code, _) = rig::http_get(http, "/healthz", Duration::from_secs(10))
        .expect("the API answers once the slow clients are gone");
    assert_eq!(code, 200);
    let back_in = t.elapsed();
    let (_, metrics) = rig::http_get(http, "/metrics", Duration::from_secs(10)).unwrap();
    let refused_total: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("shopbridge_http_connections_refused_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(
        refused_total > 0,
        "no connection was refused past the limit"
    );
    assert!(
        peak_fds < 256 + 64,
        "{peak_fds} descriptors open: the connection limit did not hold"
    );
    let fds_after = fds(r.bridge.pid());
    let f = r.finish(&mut feeder, T);
    let (o, s, d, lost) = f.counts;
    assert!(
        fds_after <= fds_before + 10,
        "descriptors leaked: {fds_before} before, {fds_after} after"
    );
    Row {
        fault: format!("{CLIENTS} slow HTTP clients hold connections for 15 s (slowloris)"),
        offered: o,
        stored: s,
        delivered: d,
        lost,
        notes: format!(
            "{refused_total} connections past max_connections (256) closed at once; descriptors \
             {fds_before} → peak {peak_fds} → {fds_after}; health checks during the hold: \
             {served} answered, {refused} turned away; answered {} ms after the slow clients left",
            back_in.as_millis()
        ),
    }
}
