//! A simulated machine whose clock is 3 minutes fast, and one 90 seconds slow, still line up with
//! the others in the record: the bridge reads them through their SHDR adapter and the MTConnect
//! agent like any machine, estimates each clock's offset, and puts every record on its own time
//! line (aligned ≈ arrival), while keeping the machine's own time as the source time.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use shopbridge::clock::Clock;
use shopbridge::journal::ReadOnlyJournal;
use shopbridge::model::RecordKind;
use shopbridge::sim::serve::{Ports, SimServer};
use shopbridge::sim::shop::ShopOptions;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skewed_clocks_are_aligned() {
    let clock = Clock::scaled(Clock::system().now(), 60.0);
    let opts = ShopOptions {
        machines: 4,
        seed: 3,
        start: clock.now(),
        shop_offset_micros: shopbridge::sim::demo_shop_offset(clock.now()),
        // Machine 2 (SHDR) is 3 minutes fast, machine 1 (agent) 90 s slow. Machine 0 is a Haas
        // read through MDC, which tells no machine time: it is aligned by arrival.
        skews: vec![(2, 180_000_000), (1, -90_000_000)],
    };
    let server = SimServer::start(&opts, Ports::default(), clock.clone(), None, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let machines = server.machine_configs();
    let ids: Vec<String> = machines.iter().map(|m| m.id.to_string()).collect();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let bridge = common::InProcessBridge::start(machines, dir.path(), &clock, &opts);
    // Ten simulated minutes.
    tokio::time::sleep(Duration::from_secs(10)).await;
    // The API shows each machine's clock offset.
    let bridge_json = std::fs::read_to_string(dir.path().join("bridge.json")).unwrap_or_default();
    let http = serde_json::from_str::<serde_json::Value>(&bridge_json)
        .ok()
        .and_then(|v| v["http"].as_str().map(str::to_string))
        .unwrap_or_default();
    let live: serde_json::Value = reqwest::get(format!("http://{http}/api/v1/machines"))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let offsets: HashMap<String, f64> = live
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|m| {
                    Some((
                        m["id"].as_str()?.to_string(),
                        m["clock"]["offset_ms"].as_f64()?,
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    bridge.stop().await;
    server.stop().await;

    // Offsets in simulated ms (the clock runs 60x): about -180 s, +90 s, ~0 for machine 3, and
    // none for the Haas (no machine time to compare). The transport delay of a loaded 2-core
    // machine, times 60, is the tolerance.
    let tol = 30_000.0;
    let off = |i: usize| offsets.get(&ids[i]).copied().unwrap_or(f64::NAN);
    assert!((off(2) + 180_000.0).abs() < tol, "{offsets:?}");
    assert!((off(1) - 90_000.0).abs() < tol, "{offsets:?}");
    assert!(off(3).abs() < tol, "{offsets:?}");
    assert!(!offsets.contains_key(&ids[0]), "{offsets:?}");

    // In the journal: every machine's aligned times stay close to arrival and move forward;
    // the skewed machines' source times keep their own clocks.
    let journal = ReadOnlyJournal::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let records = journal
        .read(0, usize::MAX)
        .unwrap_or_else(|e| panic!("{e}"));
    for (i, id) in ids.iter().enumerate() {
        let obs: Vec<_> = records
            .iter()
            .filter_map(|r| match &r.kind {
                RecordKind::Observation(o) if o.machine.as_str() == id => Some(o),
                _ => None,
            })
            .collect();
        assert!(obs.len() >= 10, "{id}: {} observations", obs.len());
        let mut last = None;
        let mut skews = Vec::new();
        for o in &obs {
            assert!(
                o.time.aligned <= o.time.received,
                "{id}: aligned after arrival"
            );
            assert!(
                o.time.received.micros_since(o.time.aligned) < 30_000_000,
                "{id}: aligned {} vs received {}",
                o.time.aligned,
                o.time.received
            );
            assert!(
                last.is_none_or(|l| o.time.aligned >= l),
                "{id}: back in time"
            );
            last = Some(o.time.aligned);
            if let Some(s) = o.time.source {
                skews.push(s.micros_since(o.time.aligned));
            }
        }
        skews.sort_unstable();
        let median = skews.get(skews.len() / 2).copied().unwrap_or_default() as f64 / 1e6;
        let want = [0.0, -90.0, 180.0, 0.0][i];
        assert!(
            (median - want).abs() < 30.0,
            "{id}: source − aligned median {median} s, want {want} s"
        );
    }
}
