//! The MQTT broker down for a minute while the machine keeps producing.

use std::time::Duration;

use crate::Row;
use crate::common::mqtt::is;
use crate::rig::{self, Feeder, ShdrRig, T};

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
    let mut r = ShdrRig::start("", "");
    let mut feeder = Feeder::start(&r.adapter, Duration::from_millis(10));
    r.mqtt.until_part(100, T);

    r.mqtt.stop_broker();
    let down_from = feeder.last.load(std::sync::atomic::Ordering::SeqCst);
    std::thread::sleep(outage());
    let down_to = feeder.last.load(std::sync::atomic::Ordering::SeqCst);
    r.mqtt.start_broker();
    let after = r.mqtt.host.seen.len();
    r.mqtt
        .host
        .until("the NBIRTH after the outage", T, |v| is(v, "NBIRTH", None));
    std::thread::sleep(Duration::from_secs(2));
    let f = r.finish(&mut feeder, Duration::from_secs(60));

    // The backlog arrives in order, flagged historical, before live data.
    let post: Vec<(i64, bool)> = r.mqtt.host.seen[after..]
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
    let (o, s, d, lost) = f.counts;
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
