//! A machine's clock jumps an hour ahead (somebody set it, daylight saving done wrong).

use std::sync::atomic::Ordering;
use std::time::Duration;

use shopbridge::model::RecordKind;

use crate::Row;
use crate::rig::{self, Feeder, ShdrRig, T};

pub fn run() -> Row {
    let mut r = ShdrRig::start("", "");
    let mut feeder = Feeder::start(&r.adapter, Duration::from_millis(20));
    r.mqtt.until_part(100, T);
    let jump_at = feeder.last.load(Ordering::SeqCst);
    feeder.skew_micros.store(3_600_000_000, Ordering::SeqCst);
    std::thread::sleep(Duration::from_secs(6));
    let f = r.finish(&mut feeder, T);

    // Every part lands on the bridge's time line: aligned within 2 s of its arrival (never an
    // hour in the future), and never going back.
    let mut prev = None;
    let mut worst = 0i64;
    for r in &f.records {
        if let RecordKind::Observation(o) = &r.kind {
            if o.machine.as_str() != rig::MACHINE || o.signal.as_str() != "part_count" {
                continue;
            }
            let off = o.time.received.micros_since(o.time.aligned).abs();
            worst = worst.max(off);
            assert!(
                off < 2_000_000,
                "part aligned {} µs from its arrival: {o:?}",
                off
            );
            if let Some(p) = prev {
                assert!(o.time.aligned >= p, "aligned time went back: {o:?}");
            }
            prev = Some(o.time.aligned);
        }
    }
    let (o, s, d, lost) = f.counts;
    Row {
        fault: "a machine's clock jumps +1 h".into(),
        offered: o,
        stored: s,
        delivered: d,
        lost,
        notes: format!(
            "jump after part #{jump_at}; every part aligned within {} ms of its arrival, \
             monotonic",
            worst / 1000
        ),
    }
}
