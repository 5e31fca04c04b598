//! Device links dropped every few seconds.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shopbridge::clock::Clock;
use shopbridge::drivers::{DataItemMeta, ItemCategory};
use shopbridge::model::{LinkStatus, RecordKind, Value};
use shopbridge::sim::agent_face::{AgentFace, AgentOptions, FaceDevice};
use shopbridge::sim::haas_face::{self, Control, SharedControl};
use shopbridge::sim::shop::{FaceEvent, FaceValue, ShopOptions, SimShop};
use tokio_util::sync::CancellationToken;

use crate::Row;
use crate::common::modbus::Peer;
use crate::common::mqtt::{Adapter, is};
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

/// Counts parts every `hold` with `set`, while a link drops every 3 s for 20 s and then stays
/// up; returns the numbers counted (each was held `hold`, long enough to be read between
/// drops) and the link.
fn count_behind_chaos(
    bridge: &mut Bridge,
    chaos: &Chaos,
    hold: Duration,
    mut set: impl FnMut(i64),
) -> Vec<i64> {
    let mut counted = Vec::new();
    let began = Instant::now();
    let mut n = 0;
    let mut calm = false;
    while began.elapsed() < Duration::from_secs(26) {
        n += 1;
        set(n);
        counted.push(n);
        std::thread::sleep(hold);
        if !calm && began.elapsed() > Duration::from_secs(20) {
            chaos.calm();
            calm = true;
        }
        assert!(bridge.alive(), "the bridge died: {}", bridge.log_tail());
    }
    counted
}

/// The end of a device-link row: waits for the last part, stops the bridge, counts.
fn finish(
    fault: &str,
    mut bridge: Bridge,
    mut mqtt: Mqtt,
    chaos: &Chaos,
    offered: BTreeSet<i64>,
    what: &str,
) -> Row {
    let last = *offered.last().unwrap();
    mqtt.until_part(last, T);
    bridge.stop();
    let records = bridge.journal();
    rig::assert_contiguous(&records);
    let drops = chaos.drops.load(Ordering::SeqCst);
    let (lost_links, connected) = records.iter().fold((0, 0), |(l, c), r| match &r.kind {
        RecordKind::Link(e) if e.status == LinkStatus::Lost => (l + 1, c),
        RecordKind::Link(e) if e.status == LinkStatus::Connected => (l, c + 1),
        _ => (l, c),
    });
    assert!(drops >= 5, "only {drops} drops");
    assert!(
        lost_links >= drops / 2 && connected > lost_links,
        "{drops} drops but {lost_links} Lost and {connected} Connected link records"
    );
    let stored = rig::stored_values(&records, "part_count");
    let (o, s, d, lost) = rig::count(&offered, &stored, &mqtt.delivered());
    Row {
        fault: fault.into(),
        offered: o,
        stored: s,
        delivered: d,
        lost,
        notes: format!(
            "{drops} drops: {lost_links} Lost and {connected} Connected link records; offered = {what}"
        ),
    }
}

/// Starts a bridge reading `machine` and publishing to `mqtt`; returns once the host has the
/// machine's birth (counting starts then: what came before is history a first contact does not
/// replay).
fn start_reading(dir: &std::path::Path, mqtt: &mut Mqtt, machine: &str) -> Bridge {
    Bridge::configure(dir, Some(mqtt.port), machine);
    let bridge = Bridge::start(dir);
    mqtt.host.until("the machine's birth", T, |v| {
        is(v, "DBIRTH", Some(rig::MACHINE))
    });
    bridge
}

fn machine(profile: &str, driver: &str) -> String {
    format!(
        "[[machines]]\nid = \"{}\"\nname = \"Mill 1\"\nprofile = \"{profile}\"\ndriver = {driver}\n",
        rig::MACHINE
    )
}

/// An MTConnect agent (the simulator's, over HTTP) behind a link that drops every 3 s.
pub fn mtconnect() -> Row {
    let dir = tempfile::tempdir().unwrap();
    let mut mqtt = Mqtt::start(dir.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let agent = Agent::start(&rt);
    let chaos = Chaos::start(agent.addr, Duration::from_secs(3));
    let mut bridge = start_reading(
        dir.path(),
        &mut mqtt,
        &machine(
            "mtconnect-generic",
            &format!(
                "{{ type = \"mtconnect\", url = \"http://{}\", device = \"mill\" }}",
                chaos.addr
            ),
        ),
    );
    let offered = count_behind_chaos(&mut bridge, &chaos, Duration::from_millis(20), |n| {
        agent.part(n)
    });
    finish(
        "MTConnect agent link dropped every 3 s (20 s)",
        bridge,
        mqtt,
        &chaos,
        offered.into_iter().collect(),
        "every part count the agent buffered (50/s)",
    )
}

/// The MTConnect agent restarts three times (new instanceId, sequence from 1) under load.
pub fn agent_restart() -> Row {
    let dir = tempfile::tempdir().unwrap();
    let mut mqtt = Mqtt::start(dir.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let agent = Agent::start(&rt);
    let mut bridge = start_reading(
        dir.path(),
        &mut mqtt,
        &machine(
            "mtconnect-generic",
            &format!(
                "{{ type = \"mtconnect\", url = \"http://{}\", device = \"mill\" }}",
                agent.addr
            ),
        ),
    );
    let mut offered = BTreeSet::new();
    let began = Instant::now();
    let mut n = 0;
    let mut restarts = 0;
    let mut last_before_restart = Vec::new();
    while began.elapsed() < Duration::from_secs(16) {
        n += 1;
        agent.part(n);
        offered.insert(n);
        std::thread::sleep(Duration::from_millis(20));
        if began.elapsed() > Duration::from_secs(4 * (restarts + 1)) && restarts < 3 {
            agent.face.restart();
            restarts += 1;
            last_before_restart.push(n);
        }
    }
    mqtt.until_part(n, T);
    bridge.stop();
    let records = bridge.journal();
    rig::assert_contiguous(&records);
    let gaps = records
        .iter()
        .filter(|r| matches!(&r.kind, RecordKind::Link(e) if e.status == LinkStatus::Gap))
        .count();
    assert!(gaps >= 3, "{restarts} restarts but {gaps} gap records");
    let stored = rig::stored_values(&records, "part_count");
    // What an agent had buffered but not yet streamed when it restarted is gone with its
    // buffer: not offered to anyone (the gap record says data may be missing there). Those
    // are the last few parts before each restart (the stream sends every 100 ms).
    let wiped: BTreeSet<i64> = offered
        .difference(&stored)
        .copied()
        .filter(|n| last_before_restart.iter().any(|r| (r - 5..=*r).contains(n)))
        .collect();
    let offered: BTreeSet<i64> = offered.difference(&wiped).copied().collect();
    let (o, s, d, lost) = rig::count(&offered, &stored, &mqtt.delivered());
    Row {
        fault: "MTConnect agent restarted 3 times at 50 parts/s".into(),
        offered: o,
        stored: s,
        delivered: d,
        lost,
        notes: format!(
            "{gaps} gap link records; each new agent life replayed from its first sequence; \
             {} parts the agents had not streamed yet died with their buffers ({wiped:?}), \
             not counted as offered",
            wiped.len()
        ),
    }
}

/// The simulator's MTConnect agent with one device, `mill`, fed by the test.
struct Agent {
    face: AgentFace,
    addr: SocketAddr,
    _stop: tokio_util::sync::DropGuard,
}

impl Agent {
    fn start(rt: &tokio::runtime::Runtime) -> Agent {
        let item = |id: &str, cat, ty: &str, component: &str| {
            Arc::new(DataItemMeta {
                id: id.into(),
                name: Some(id.into()),
                category: Some(cat),
                item_type: ty.into(),
                component: Some(component.into()),
                ..DataItemMeta::default()
            })
        };
        let face = AgentFace::new(
            vec![FaceDevice {
                name: "mill".into(),
                uuid: "uuid-mill".into(),
                items: vec![
                    item("avail", ItemCategory::Event, "AVAILABILITY", "Device"),
                    item("pc", ItemCategory::Event, "PART_COUNT", "Path"),
                ],
            }],
            AgentOptions::default(),
        );
        face.push(
            0,
            &[FaceEvent {
                item: 0,
                at: Clock::system().now(),
                value: FaceValue::Value(Value::text("AVAILABLE")),
            }],
        );
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        {
            let (face, stop) = (face.clone(), stop.clone());
            rt.spawn(async move { face.serve(listener, stop).await });
        }
        Agent {
            face,
            addr,
            _stop: stop.drop_guard(),
        }
    }

    fn part(&self, n: i64) {
        self.face.push(
            0,
            &[FaceEvent {
                item: 1,
                at: Clock::system().now(),
                value: FaceValue::Value(Value::Int(n)),
            }],
        );
    }
}

/// A Haas control (the simulator's MDC face, Ethernet framing) behind a link that drops every
/// 3 s; its part counter moves every 2 s.
pub fn haas() -> Row {
    let dir = tempfile::tempdir().unwrap();
    let mut mqtt = Mqtt::start(dir.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (shop, _runner) = SimShop::new(&ShopOptions {
        machines: 1,
        seed: 5,
        start: Clock::system().now(),
        shop_offset_micros: 0,
        skews: vec![],
    });
    let control: SharedControl =
        Arc::new(Mutex::new(Control::new("1234567", "VF-2", 0, shop.now(0))));
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    {
        let (shop, control, stop) = (shop.clone(), control.clone(), stop.clone());
        rt.spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                let (shop, control, stop) = (shop.clone(), control.clone(), stop.clone());
                tokio::spawn(async move {
                    let _ = haas_face::answer(s, &shop, 0, &control, false, stop).await;
                });
            }
        });
    }
    let _stop = stop.drop_guard();
    let chaos = Chaos::start(addr, Duration::from_secs(3));
    let mut bridge = start_reading(
        dir.path(),
        &mut mqtt,
        &machine(
            "haas-ngc",
            &format!(
                "{{ type = \"haas\", address = \"{}\", interval = \"200ms\" }}",
                chaos.addr
            ),
        ),
    );
    let offered = count_behind_chaos(&mut bridge, &chaos, Duration::from_secs(2), |n| {
        control
            .lock()
            .unwrap()
            .apply("part_count", &FaceValue::Value(Value::Int(n)), shop.now(0))
    });
    finish(
        "Haas MDC link dropped every 3 s (20 s)",
        bridge,
        mqtt,
        &chaos,
        offered.into_iter().collect(),
        "part counts the control showed (each for 2 s; polled every 200 ms)",
    )
}

/// A Moxa ioLogik E1212 (pymodbus) behind a link that drops every 3 s; its DI counter moves
/// every 2 s.
pub fn modbus() -> Row {
    let dir = tempfile::tempdir().unwrap();
    let mut mqtt = Mqtt::start(dir.path());
    let mut peer = Peer::start("iologik");
    let chaos = Chaos::start(
        SocketAddr::from(([127, 0, 0, 1], peer.port)),
        Duration::from_secs(3),
    );
    let mut bridge = start_reading(
        dir.path(),
        &mut mqtt,
        &machine(
            "moxa-e1212",
            &format!(
                "{{ type = \"modbus\", address = \"{}\", interval = \"200ms\" }}",
                chaos.addr
            ),
        ),
    );
    let offered = count_behind_chaos(&mut bridge, &chaos, Duration::from_secs(2), |n| {
        // DI4's counter: input registers 0x18 (high word) and 0x19.
        peer.set(4, 0x18, serde_json::json!([(n >> 16) & 0xffff, n & 0xffff]))
    });
    finish(
        "Modbus TCP link dropped every 3 s (20 s)",
        bridge,
        mqtt,
        &chaos,
        offered.into_iter().collect(),
        "DI counter values the module showed (each for 2 s; polled every 200 ms)",
    )
}
