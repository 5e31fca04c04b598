//! Device links dropped every few seconds.

use std::time::Duration;

use crate::Row;
use crate::common::mqtt::Adapter;
use crate::rig::{self, Bridge, Chaos, Feeder, Mqtt, T};

/// An SHDR adapter behind a link that drops every 3 s for 20 s.
pub fn shdr() -> Row {
    let dir = tempfile::tempdir().unwrap();
    let mut mqtt = Mqtt::start(dir.path());
    let adapter = Adapter::new();
    adapter.accept_forever();
    let chaos = Chaos::start(adapter.address().parse().unwrap(), Duration::from_secs(3));
    Bridge::configure(
        dir.path(),
        Some(mqtt.port),
        &rig::shdr_machine(&chaos.addr.to_string()),
    );
    let mut bridge = Bridge::start(dir.path());
    let mut feeder = Feeder::start(&adapter, Duration::from_millis(10));
    std::thread::sleep(Duration::from_secs(20));
    chaos.calm();
    let drops = chaos.drops.load(std::sync::atomic::Ordering::SeqCst);
    // A last connection that stays up, so the last part crosses.
    std::thread::sleep(Duration::from_secs(4));
    feeder.stop();
    let crossed = rig::parts_in(&chaos.lines_to_bridge());
    let last = *crossed.last().unwrap();
    mqtt.until_part(last, T);
    bridge.stop();
    let records = bridge.journal();
    rig::assert_contiguous(&records);
    let links = records
        .iter()
        .filter(|r| matches!(&r.kind, shopbridge::model::RecordKind::Link(_)))
        .count();
    assert!(drops >= 5, "only {drops} drops");
    assert!(
        links as u64 >= 2 * drops,
        "{drops} drops but only {links} link records"
    );
    let stored = rig::stored_values(&records, "part_count");
    let (o, s, d, lost) = rig::count(&crossed, &stored, &mqtt.delivered());
    Row {
        fault: "SHDR link dropped every 3 s (20 s)".into(),
        offered: o,
        stored: s,
        delivered: d,
        lost,
        notes: format!(
            "{drops} drops, {links} link records (each drop a Lost and a Connected); offered = \
             parts that crossed the link"
        ),
    }
}
