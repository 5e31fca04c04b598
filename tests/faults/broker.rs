//! The MQTT broker down for a minute while the machine keeps producing.

use std::time::Duration;

use crate::Row;
use crate::common::mqtt::{Adapter, is};
use crate::rig::{self, Bridge, Feeder, Mqtt, T};

/// How long the broker stays down (`FAULT_BROKER_SECS`, default 60).
fn outage() -> Duration {
    Duration::from_secs(
        std::env::var("FAULT_BROKER_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(60),
    )
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
    let mut feeder = Feeder::start(&adapter, Duration::from_millis(10));
    mqtt.until_part(100, T);

    mqtt.stop_broker();
    let down_from = feeder.last.load(std::sync::atomic::Ordering::SeqCst);
    std::thread::sleep(outage());
    let down_to = feeder.last.load(std::sync::atomic::Ordering::SeqCst);
    mqtt.start_broker();
    let after = mqtt.host.seen.len();
    mqtt.host
        .until("the NBIRTH after the outage", T, |v| is(v, "NBIRTH", None));
    std::thread::sleep(Duration::from_secs(2));
    let written = feeder.stop();
    let last = *written.last().unwrap();
    mqtt.until_part(last, Duration::from_secs(60));
    bridge.stop();

    // The backlog arrives in order, flagged historical, before live data.
    let post: Vec<(i64, bool)> = mqtt.host.seen[after..]
        .iter()
        .filter(|v| is(v, "DDATA", Some(rig::MACHINE)))
        .flat_map(|v| crate::common::mqtt::metrics(v, "Counts/Parts"))
        .filter_map(|m| Some((m["value"].as_i64()?, m["is_historical"] == true)))
        .collect();
    let backlog: Vec<i64> = post.iter().filter(|p| p.1).map(|p| p.0).collect();
    assert!(
        backlog.windows(2).all(|w| w[0] < w[1]),
        "the backlog is out of order"
    );
    let first_live = post.iter().position(|p| !p.1).unwrap_or(post.len());
    assert!(
        post[first_live..].iter().all(|p| !p.1),
        "historical data after live data"
    );
    let records = bridge.journal();
    rig::assert_contiguous(&records);
    let stored = rig::stored_values(&records, "part_count");
    let offered = written.iter().copied().collect();
    let (o, s, d, lost) = rig::count(&offered, &stored, &mqtt.delivered());
    Row {
        fault: format!("MQTT broker down {} s at 100 records/s", outage().as_secs()),
        offered: o,
        stored: s,
        delivered: d,
        lost,
        notes: format!(
            "{} parts made during the outage (#{down_from}–#{down_to}) arrived after it as \
             historical, in order, before live data",
            down_to - down_from
        ),
    }
}
