//! The Modbus driver against devices imitated by PyPI `pymodbus` (`tests/modbus/peer.py`), a
//! Modbus implementation no one here wrote: a Moxa ioLogik stack-light retrofit read through the
//! whole bridge with the shipped `moxa-e1212` profile, and a PLC map read by the driver alone
//! (every data type, word orders, exception replies, dropped connections).

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};
use shopbridge::clock::Clock;
use shopbridge::drivers::modbus::{Modbus, ModbusSpec, Transport};
use shopbridge::drivers::poll::{self, Timing};
use shopbridge::drivers::{DriverBatch, DriverContext, DriverCounters, DriverEvent};
use shopbridge::model::{LinkStatus, MachineId, Quality, QualityReason, Value};
use shopbridge::normalize::profile::{ProfileSource, load_str};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use common::modbus::Peer;
use common::{last_value as value, link_events as links};

async fn machine_json(client: &reqwest::Client, http: &str, id: &str) -> Json {
    match client
        .get(format!("{http}/api/v1/machines/{id}"))
        .send()
        .await
    {
        Ok(r) => r.json().await.unwrap_or(Json::Null),
        Err(_) => Json::Null,
    }
}

/// Waits until the machine's live view satisfies `ok`.
async fn wait_for(http: &str, id: &str, what: &str, ok: impl Fn(&Json) -> bool) -> Json {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m = machine_json(&client, http, id).await;
        if ok(&m) {
            return m;
        }
        assert!(Instant::now() < deadline, "{what}: {m}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stack_light_retrofit_on_an_iologik_shows_run_idle_down_and_parts() {
    let mut peer = Peer::start("iologik");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        r#"
[http]
listen = "127.0.0.1:0"
[journal]
dir = {:?}

[[machines]]
id = "lathe-1996"
name = "1996 lathe (stack light on a Moxa ioLogik E1212)"
profile = "moxa-e1212"
[machines.driver]
type = "modbus"
address = "127.0.0.1:{}"
interval = "100ms"
"#,
        dir.path().join("data").display().to_string(),
        peer.port
    );
    let path = dir.path().join("shopbridge.toml");
    std::fs::write(&path, config).expect("write config");
    let mut bridge = common::KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_shopbridge"))
            .args(["run", "--config"])
            .arg(&path)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the bridge"),
    );
    let (http, _) = common::announced(bridge.0.stdout.take().expect("stdout"), false);
    let id = "lathe-1996";

    // All lamps off, no cycle: connected and idle.
    wait_for(&http, id, "idle when connected", |m| {
        m["link"] == "connected" && m["state"] == "IDLE" && m["driver"] == "modbus"
    })
    .await;
    // Green lamp and the cycle relay: running.
    peer.set(2, 2, json!([true]));
    peer.set(2, 3, json!([true]));
    let m = wait_for(&http, id, "running", |m| {
        m["state"] == "RUN" && m["signals"]["green_lamp"]["value"] == "ON"
    })
    .await;
    assert_eq!(m["signals"]["green_lamp"]["value"], "ON", "{m}");
    assert_eq!(m["execution"], "ACTIVE", "{m}");
    assert_eq!(m["controller_mode"], "AUTOMATIC", "{m}");
    // The part counter on DI4 (input registers 0x18/0x19, high word first).
    peer.set(4, 0x18, json!([1, 2]));
    wait_for(&http, id, "part count", |m| m["part_count"] == 65_538).await;
    // The red lamp: down, with the alarm.
    peer.set(2, 0, json!([true]));
    let m = wait_for(&http, id, "down on red", |m| m["state"] == "DOWN").await;
    assert_eq!(m["alarm"], true, "{m}");
    // The module drops off the network for 2 s: off, then back.
    peer.send(json!({"restart": 2.0}));
    wait_for(&http, id, "back after the outage", |m| {
        m["link"] == "connected" && m["state"] == "DOWN"
    })
    .await;
    // The outage is in the record: a lost link with its reason, then connected again.
    let records: Json = reqwest::get(format!("{http}/api/v1/records?after=0&limit=5000"))
        .await
        .expect("records")
        .json()
        .await
        .expect("json");
    let links: Vec<&Json> = records["records"]
        .as_array()
        .map(|a| a.iter().filter(|r| r["kind"] == "link").collect())
        .unwrap_or_default();
    assert!(links.iter().any(|l| l["status"] == "lost"), "{links:#?}");
    assert!(links.len() >= 3, "{links:#?}");
}

/// A profile for the test PLC, with a register that does not exist beside real ones (so the
/// coalesced read is refused and split) and one that always fails.
const PLC_PROFILE: &str = r#"
[[register]]
key = "status"
table = "holding"
address = 0

[[register]]
key = "cycle_bit"
table = "holding"
address = 0
bit = 2

[[register]]
key = "temperature"
table = "holding"
address = 1
type = "i16"

[[register]]
key = "parts"
table = "holding"
address = 2
type = "u32"

[[register]]
key = "load"
table = "holding"
address = 4
type = "f32"
word_order = "little"

[[register]]
key = "energy"
table = "holding"
address = 6
type = "f64"

[[register]]
key = "program"
table = "holding"
address = 10
type = "string"
length = 8

[[register]]
key = "missing"
table = "holding"
address = 18

[[register]]
key = "r20"
table = "holding"
address = 20

[[register]]
key = "r29"
table = "holding"
address = 29
scale = 0.5
offset = 1

[[register]]
key = "failing"
table = "holding"
address = 50

[[register]]
key = "counter"
table = "input"
address = 0
type = "i32"
"#;

async fn collect(
    rx: &mut mpsc::Receiver<DriverBatch>,
    got: &mut Vec<DriverEvent>,
    within: Duration,
    done: impl Fn(&[DriverEvent]) -> bool,
) {
    let deadline = tokio::time::Instant::now() + within;
    while !done(got) {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(batch)) => got.extend(batch),
            _ => break,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plc_map_decodes_every_type_and_refusals_are_bad_with_the_code() {
    let mut peer = Peer::start("plc");
    let profile = load_str("test-plc", PLC_PROFILE, &ProfileSource::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let spec = ModbusSpec {
        transport: Transport::Tcp(format!("127.0.0.1:{}", peer.port)),
        unit: 1,
        timeout: Duration::from_secs(2),
        map: profile.registers.clone().into(),
    };
    let modbus = Modbus::new(spec);
    // Coalesced: 0..18 (with the missing 18), 20, 29, 50, and the input registers.
    assert_eq!(modbus.requests(), 5);
    let (tx, mut rx) = mpsc::channel(1024);
    let stop = CancellationToken::new();
    let counters = DriverCounters::new("modbus", "test");
    let ctx = DriverContext {
        machines: vec![MachineId::new("plc-1").unwrap_or_else(|e| panic!("{e}"))],
        tx,
        shutdown: stop.clone(),
        clock: Clock::system(),
        counters: counters.clone(),
    };
    let timing = Timing {
        interval: Duration::from_millis(100),
        connect_timeout: Duration::from_secs(2),
    };
    tokio::spawn(poll::run(modbus, timing, ctx));
    let mut got = Vec::new();
    collect(&mut rx, &mut got, Duration::from_secs(20), |e| {
        value(e, "counter").is_some() && value(e, "failing").is_some()
    })
    .await;
    let good = |k: &str| match value(&got, k) {
        Some((v, Quality::Good)) => v.clone(),
        other => panic!("{k}: {other:?}"),
    };
    assert_eq!(good("status"), Value::Int(5));
    assert_eq!(good("cycle_bit"), Value::Bool(true));
    assert_eq!(good("temperature"), Value::Int(-5));
    assert_eq!(good("parts"), Value::Int(123_456));
    assert_eq!(good("load"), Value::Float(12.5));
    assert_eq!(good("energy"), Value::Float(-1.25));
    assert_eq!(good("program"), Value::text("O1234"));
    assert_eq!(good("r20"), Value::Int(100));
    assert_eq!(good("r29"), Value::Float(109.0 * 0.5 + 1.0));
    assert_eq!(good("counter"), Value::Int(-2));
    // The refused ones, with the device's code; their neighbours were read one by one.
    assert_eq!(
        value(&got, "missing"),
        Some((
            &Value::text("modbus exception 2 (illegal data address)"),
            Quality::Bad(QualityReason::DeviceError)
        ))
    );
    assert_eq!(
        value(&got, "failing"),
        Some((
            &Value::text("modbus exception 4 (server device failure)"),
            Quality::Bad(QualityReason::DeviceError)
        ))
    );
    assert_eq!(links(&got, LinkStatus::Lost), 0, "{got:#?}");
    assert!(
        counters
            .device_errors
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 2
    );

    // A value changes: only it is sent again (report by exception).
    let before = got.len();
    peer.set(3, 20, json!([777]));
    collect(&mut rx, &mut got, Duration::from_secs(10), |e| {
        value(e, "r20") == Some((&Value::Int(777), Quality::Good))
    })
    .await;
    let fresh: Vec<&str> = got[before..]
        .iter()
        .filter_map(|e| match e {
            DriverEvent::Observation(o) => Some(o.key.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(fresh, ["r20"]);

    // The device drops every connection for 2 s: lost once with the reason, reconnected, and
    // every value sent again.
    peer.send(json!({"restart": 2.0}));
    let before = got.len();
    collect(&mut rx, &mut got, Duration::from_secs(30), |e| {
        links(e, LinkStatus::Connected) >= 2
            && value(&e[before.min(e.len())..], "counter").is_some()
    })
    .await;
    stop.cancel();
    assert_eq!(links(&got, LinkStatus::Lost), 1, "{got:#?}");
    assert_eq!(links(&got, LinkStatus::Connected), 2, "{got:#?}");
    assert_eq!(
        value(&got[before..], "status").map(|(v, _)| v.clone()),
        Some(Value::Int(5))
    );
}
