//! The MTConnect driver against real sockets: the simulator's agent face (with its restart and
//! stall controls), a hand-written server that cuts its stream into tiny pieces, and the
//! agent face fed by the simulated shop.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use shopbridge::clock::Clock;
use shopbridge::drivers::mtconnect::{AgentSpec, run};
use shopbridge::drivers::{
    DataItemMeta, DriverBatch, DriverContext, DriverCounters, DriverEvent, ItemCategory,
};
use shopbridge::model::{ConditionLevel, LinkStatus, MachineId, Quality, Timestamp, Value};
use shopbridge::sim::agent_face::{AgentFace, AgentOptions, FaceDevice};
use shopbridge::sim::shop::{FaceEvent, FaceValue};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(10);

fn item(id: &str, cat: ItemCategory, ty: &str, component: &str) -> Arc<DataItemMeta> {
    Arc::new(DataItemMeta {
        id: id.into(),
        name: Some(id.into()),
        category: Some(cat),
        item_type: ty.into(),
        component: Some(component.into()),
        ..DataItemMeta::default()
    })
}

/// Items: 0 avail, 1 exec, 2 Sspeed, 3 servo (condition), 4 part count.
fn devices() -> Vec<FaceDevice> {
    let items = vec![
        item("avail", ItemCategory::Event, "AVAILABILITY", "Device"),
        item("exec", ItemCategory::Event, "EXECUTION", "Path"),
        item("Sspeed", ItemCategory::Sample, "SPINDLE_SPEED", "Rotary"),
        item("servo", ItemCategory::Condition, "ACTUATOR", "Axes"),
        item("pc", ItemCategory::Event, "PART_COUNT", "Path"),
    ];
    vec![
        FaceDevice {
            name: "mill".into(),
            uuid: "uuid-mill".into(),
            items: items.clone(),
        },
        FaceDevice {
            name: "lathe".into(),
            uuid: "uuid-lathe".into(),
            items,
        },
    ]
}

fn t(s: i64) -> Timestamp {
    Timestamp::from_micros(1_780_000_000_000_000 + s * 1_000_000)
}

fn val(item: usize, at: i64, v: Value) -> FaceEvent {
    FaceEvent {
        item,
        at: t(at),
        value: FaceValue::Value(v),
    }
}

fn m(s: &str) -> MachineId {
    MachineId::new(s).unwrap()
}

struct Harness {
    face: AgentFace,
    rx: mpsc::Receiver<DriverBatch>,
    counters: Arc<DriverCounters>,
    stop: CancellationToken,
    seen: Vec<DriverEvent>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Harness {
    async fn start(buffer_size: usize, heartbeat: Duration) -> Harness {
        let face = AgentFace::new(devices(), AgentOptions { buffer_size });
        face.push(
            0,
            &[
                val(0, 0, Value::text("AVAILABLE")),
                val(1, 0, Value::text("READY")),
            ],
        );
        face.push(
            1,
            &[
                val(0, 0, Value::text("AVAILABLE")),
                val(4, 0, Value::Int(7)),
            ],
        );
        let stop = CancellationToken::new();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let f = face.clone();
        let s = stop.clone();
        tokio::spawn(async move { f.serve(listener, s).await });
        let (rx, counters) = start_driver(
            format!("http://{addr}"),
            vec![
                (m("m1"), Some("mill".into())),
                (m("m2"), Some("uuid-lathe".into())),
            ],
            heartbeat,
            stop.clone(),
        );
        Harness {
            face,
            rx,
            counters,
            stop,
            seen: Vec::new(),
        }
    }

    /// Reads batches until `pred` holds for an event; returns that event.
    async fn until(&mut self, what: &str, pred: impl Fn(&DriverEvent) -> bool) -> DriverEvent {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(e) = self.seen.iter().find(|e| pred(e)) {
                let e = e.clone();
                // Keep only what came after the match, so that the next wait looks forward.
                let i = self.seen.iter().position(|x| *x == e).unwrap_or(0);
                self.seen.drain(..=i);
                return e;
            }
            let batch = tokio::time::timeout_at(deadline, self.rx.recv())
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for {what}; saw {:#?}", self.seen))
                .expect("driver channel closed");
            self.seen.extend(batch);
        }
    }
}

fn start_driver(
    url: String,
    machines: Vec<(MachineId, Option<String>)>,
    heartbeat: Duration,
    stop: CancellationToken,
) -> (mpsc::Receiver<DriverBatch>, Arc<DriverCounters>) {
    let (tx, rx) = mpsc::channel(1024);
    let counters = DriverCounters::new("mtconnect", url.clone());
    let ctx = DriverContext {
        machines: machines.iter().map(|(m, _)| m.clone()).collect(),
        tx,
        shutdown: stop,
        clock: Clock::system(),
        counters: counters.clone(),
    };
    let spec = AgentSpec {
        url,
        interval: Duration::from_millis(10),
        heartbeat,
        machines,
    };
    tokio::spawn(run(spec, ctx));
    (rx, counters)
}

fn is_link(e: &DriverEvent, machine: &str, status: LinkStatus) -> bool {
    matches!(e, DriverEvent::Link { machine: mm, status: s, .. } if mm.as_str() == machine && *s == status)
}

fn is_obs(e: &DriverEvent, machine: &str, key: &str, v: &Value) -> bool {
    matches!(e, DriverEvent::Observation(o) if o.machine.as_str() == machine && o.key.as_str() == key && o.value == *v)
}

#[tokio::test]
async fn streams_values_conditions_and_metadata_for_two_machines() {
    let mut h = Harness::start(1024, Duration::from_secs(2)).await;
    h.until("m1 connected", |e| is_link(e, "m1", LinkStatus::Connected))
        .await;
    // The snapshot follows its machine's Connected record.
    let DriverEvent::Observation(o) = h
        .until("m1 exec READY", |e| {
            is_obs(e, "m1", "exec", &Value::text("READY"))
        })
        .await
    else {
        unreachable!()
    };
    let meta = o.meta.expect("probe metadata");
    assert_eq!(meta.item_type, "EXECUTION");
    assert_eq!(meta.component.as_deref(), Some("Path"));
    assert_eq!(o.source_time, Some(t(0)));
    h.until("m2 connected", |e| is_link(e, "m2", LinkStatus::Connected))
        .await;
    h.until("m2 part count", |e| is_obs(e, "m2", "pc", &Value::Int(7)))
        .await;

    // Live changes through the stream.
    h.face.push(
        0,
        &[
            val(1, 5, Value::text("ACTIVE")),
            val(2, 5, Value::Float(1234.5)),
            FaceEvent {
                item: 3,
                at: t(6),
                value: FaceValue::Condition {
                    level: ConditionLevel::Fault,
                    native_code: Some("1012".into()),
                    message: Some("SPINDLE OVERLOAD & more".into()),
                },
            },
        ],
    );
    h.face.push(
        1,
        &[val(4, 6, Value::Int(8)), val(2, 6, Value::Unavailable)],
    );
    h.until("m1 ACTIVE", |e| {
        is_obs(e, "m1", "exec", &Value::text("ACTIVE"))
    })
    .await;
    let DriverEvent::Condition(c) = h
        .until(
            "m1 fault",
            |e| matches!(e, DriverEvent::Condition(c) if c.machine.as_str() == "m1"),
        )
        .await
    else {
        unreachable!()
    };
    assert_eq!(c.level, ConditionLevel::Fault);
    assert_eq!(c.native_code.as_deref(), Some("1012"));
    assert_eq!(c.message.as_deref(), Some("SPINDLE OVERLOAD & more"));
    assert_eq!(c.source_time, Some(t(6)));
    h.until("m2 part count 8", |e| is_obs(e, "m2", "pc", &Value::Int(8)))
        .await;
    let DriverEvent::Observation(u) = h
        .until("m2 speed unavailable", |e| {
            is_obs(e, "m2", "Sspeed", &Value::Unavailable)
        })
        .await
    else {
        unreachable!()
    };
    assert!(!u.quality.is_good());
    assert_eq!(
        u.quality,
        Quality::Bad(shopbridge::model::QualityReason::SourceUnavailable)
    );
    assert!(h.counters.messages.load(Ordering::Relaxed) >= 3);
    assert!(h.counters.bytes.load(Ordering::Relaxed) > 1000);
    assert_eq!(h.counters.bad_input.load(Ordering::Relaxed), 0);
    assert_eq!(h.counters.gaps.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn agent_restart_is_a_gap_then_a_resync() {
    let mut h = Harness::start(1024, Duration::from_secs(2)).await;
    h.until("m1 connected", |e| is_link(e, "m1", LinkStatus::Connected))
        .await;
    let old = h.face.instance_id();
    h.face.push(0, &[val(1, 1, Value::text("ACTIVE"))]);
    h.until("m1 ACTIVE", |e| {
        is_obs(e, "m1", "exec", &Value::text("ACTIVE"))
    })
    .await;
    h.face.restart();
    let new = h.face.instance_id();
    assert_ne!(old, new);
    // The restarted agent closed the stream: Lost, then on reconnect the new instance is a gap.
    h.until("m1 lost", |e| is_link(e, "m1", LinkStatus::Lost))
        .await;
    let DriverEvent::Link { detail, missed, .. } = h
        .until("m1 gap", |e| is_link(e, "m1", LinkStatus::Gap))
        .await
    else {
        unreachable!()
    };
    assert_eq!(
        detail.as_deref(),
        Some(format!("agent restarted: instanceId {old} → {new}").as_str())
    );
    assert_eq!(missed, None);
    // Resynchronized: the snapshot again, then live data with the new numbering.
    h.until("m1 ACTIVE again", |e| {
        is_obs(e, "m1", "exec", &Value::text("ACTIVE"))
    })
    .await;
    h.face.push(0, &[val(1, 2, Value::text("STOPPED"))]);
    h.until("m1 STOPPED", |e| {
        is_obs(e, "m1", "exec", &Value::text("STOPPED"))
    })
    .await;
    assert_eq!(h.counters.gaps.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn buffer_overrun_is_a_gap_with_the_missed_count() {
    let mut h = Harness::start(16, Duration::from_secs(3)).await;
    h.until("m2 connected", |e| is_link(e, "m2", LinkStatus::Connected))
        .await;
    h.until("m2 snapshot", |e| is_obs(e, "m2", "pc", &Value::Int(7)))
        .await;
    // Let the stream settle at the agent's end, then stall it while 100 observations arrive
    // into a 16-slot buffer: 84 fall out before the stream can send them.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (_, next_before) = h.face.sequence();
    h.face.stall(true);
    tokio::time::sleep(Duration::from_millis(50)).await;
    for i in 0..100 {
        h.face.push(1, &[val(4, 10 + i, Value::Int(100 + i))]);
    }
    let (first, _) = h.face.sequence();
    h.face.stall(false);
    let DriverEvent::Link { detail, missed, .. } = h
        .until("m2 gap", |e| is_link(e, "m2", LinkStatus::Gap))
        .await
    else {
        unreachable!()
    };
    assert_eq!(missed, Some(first - next_before), "{detail:?}");
    assert_eq!(missed, Some(84));
    assert!(
        detail
            .as_deref()
            .unwrap_or("")
            .starts_with("buffer overrun: 84 observations missed"),
        "{detail:?}"
    );
    // What the buffer still held arrives, and the resync's snapshot has the latest.
    h.until("m2 latest", |e| is_obs(e, "m2", "pc", &Value::Int(199)))
        .await;
    assert_eq!(h.counters.gaps.load(Ordering::Relaxed), 1);
    assert!(h.seen.iter().all(|e| !is_link(e, "m2", LinkStatus::Lost)));
}

#[tokio::test]
async fn silent_agent_is_lost_then_reconnected() {
    let mut h = Harness::start(1024, Duration::from_millis(200)).await;
    h.until("m1 connected", |e| is_link(e, "m1", LinkStatus::Connected))
        .await;
    // Stall mid-stream: once a streamed value has arrived, the stream is open.
    h.face.push(0, &[val(1, 2, Value::text("ACTIVE"))]);
    h.until("m1 ACTIVE", |e| {
        is_obs(e, "m1", "exec", &Value::text("ACTIVE"))
    })
    .await;
    h.face.stall(true);
    let DriverEvent::Link { detail, .. } = h
        .until("m1 lost", |e| is_link(e, "m1", LinkStatus::Lost))
        .await
    else {
        unreachable!()
    };
    assert!(
        detail
            .as_deref()
            .unwrap_or("")
            .contains("no part and no heartbeat"),
        "{detail:?}"
    );
    h.until("m2 lost", |e| is_link(e, "m2", LinkStatus::Lost))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    h.face.push(0, &[val(1, 3, Value::text("FEED_HOLD"))]);
    h.face.stall(false);
    h.until("m1 reconnected", |e| {
        is_link(e, "m1", LinkStatus::Connected)
    })
    .await;
    h.until("m1 FEED_HOLD", |e| {
        is_obs(e, "m1", "exec", &Value::text("FEED_HOLD"))
    })
    .await;
    assert!(h.counters.link_errors.load(Ordering::Relaxed) >= 1);
    assert_eq!(h.counters.gaps.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn unknown_device_names_what_the_agent_has() {
    let face = AgentFace::new(devices(), AgentOptions::default());
    let stop = CancellationToken::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let s = stop.clone();
    tokio::spawn(async move { face.serve(listener, s).await });
    let (mut rx, counters) = start_driver(
        format!("http://{addr}"),
        vec![(m("m1"), Some("drill".into()))],
        Duration::from_secs(1),
        stop.clone(),
    );
    let batch = tokio::time::timeout(WAIT, rx.recv())
        .await
        .unwrap()
        .unwrap();
    let DriverEvent::Link { status, detail, .. } = &batch[0] else {
        panic!("{batch:?}")
    };
    assert_eq!(*status, LinkStatus::Lost);
    assert_eq!(
        detail.as_deref(),
        Some(
            format!(
                r#"agent http://{addr} has no device "drill" (configured for machine m1); it has "mill" (uuid "uuid-mill"), "lathe" (uuid "uuid-lathe")"#
            )
            .as_str()
        )
    );
    assert!(counters.link_errors.load(Ordering::Relaxed) >= 1);
    stop.cancel();
}

// ---------------------------------------------------------------------------------------------
// A hand-written agent that writes its stream a few bytes at a time.
// ---------------------------------------------------------------------------------------------

const PROBE: &str = r#"<?xml version="1.0"?><MTConnectDevices xmlns="urn:mtconnect.org:MTConnectDevices:1.3"><Header instanceId="1" bufferSize="100"/><Devices><Device id="d" name="VMC" uuid="vmc"><DataItems><DataItem category="EVENT" id="exec" type="EXECUTION"/><DataItem category="EVENT" id="pc" type="PART_COUNT"/></DataItems></Device></Devices></MTConnectDevices>"#;

fn streams(first: u64, next: u64, body: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<MTConnectStreams xmlns="urn:mtconnect.org:MTConnectStreams:1.3"><Header instanceId="1" bufferSize="100" firstSequence="{first}" lastSequence="{}" nextSequence="{next}"/><Streams><DeviceStream name="VMC" uuid="vmc"><ComponentStream component="Device" componentId="d"><Events>{body}</Events></ComponentStream></DeviceStream></Streams></MTConnectStreams>"#,
        next - 1
    )
}

fn pc(seq: u64, n: i64) -> String {
    format!(
        r#"<PartCount dataItemId="pc" timestamp="2026-05-01T12:00:{:02}Z" sequence="{seq}">{n}</PartCount>"#,
        seq % 60
    )
}

/// Reads one HTTP request's head and returns its path.
async fn request_path(sock: &mut tokio::net::TcpStream) -> Option<String> {
    let mut req = Vec::new();
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        match sock.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => req.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&req);
    let line = head.lines().next()?;
    line.split(' ').nth(1).map(str::to_string)
}

async fn write_chunk(sock: &mut tokio::net::TcpStream, data: &[u8]) -> std::io::Result<()> {
    sock.write_all(format!("{:x}\r\n", data.len()).as_bytes())
        .await?;
    sock.write_all(data).await?;
    sock.write_all(b"\r\n").await?;
    sock.flush().await
}

async fn dribble_agent(listener: TcpListener) {
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            return;
        };
        tokio::spawn(async move {
            sock.set_nodelay(true).ok();
            let Some(path) = request_path(&mut sock).await else {
                return;
            };
            let plain = |body: String| {
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
            };
            if path.starts_with("/probe") {
                let _ = sock.write_all(plain(PROBE.to_string()).as_bytes()).await;
                return;
            }
            if path.starts_with("/current") {
                let doc = streams(
                    1,
                    11,
                    &format!(
                        r#"<Execution dataItemId="exec" timestamp="2026-05-01T12:00:00Z" sequence="10">READY</Execution>{}"#,
                        pc(9, 0)
                    ),
                );
                let _ = sock.write_all(plain(doc).as_bytes()).await;
                return;
            }
            if !path.starts_with("/sample?from=11") {
                let _ = sock
                    .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                    .await;
                return;
            }
            let head = "HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace;boundary=--abc\r\nTransfer-Encoding: chunked\r\n\r\n";
            if sock.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            // Three parts, 1..=3 observations each; the second without a Content-length.
            let mut stream = String::new();
            let mut seq = 11;
            for (i, n) in [1u64, 2, 3].into_iter().enumerate() {
                let body: String = (0..n).map(|k| pc(seq + k, (seq + k) as i64)).collect();
                let doc = streams(1, seq + n, &body);
                seq += n;
                if i == 1 {
                    stream.push_str(&format!(
                        "----abc\r\nContent-type: text/xml\r\n\r\n{doc}\r\n"
                    ));
                } else {
                    stream.push_str(&format!(
                        "----abc\r\nContent-type: text/xml\r\nContent-length: {}\r\n\r\n{doc}\r\n",
                        doc.len()
                    ));
                }
            }
            // Pieces of 7 bytes cut the boundary, the headers and the XML anywhere; the last
            // piece is several parts' worth at once.
            let bytes = stream.as_bytes();
            let split = bytes.len() * 2 / 3;
            for piece in bytes[..split].chunks(7) {
                if write_chunk(&mut sock, piece).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_micros(300)).await;
            }
            if write_chunk(&mut sock, &bytes[split..]).await.is_err() {
                return;
            }
            // Then heartbeats until the client goes.
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let doc = streams(1, seq, "");
                let p = format!(
                    "----abc\r\nContent-type: text/xml\r\nContent-length: {}\r\n\r\n{doc}\r\n",
                    doc.len()
                );
                if write_chunk(&mut sock, p.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
    }
}

#[tokio::test]
async fn parts_cut_anywhere_arrive_whole_and_in_order() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(dribble_agent(listener));
    let stop = CancellationToken::new();
    let (mut rx, counters) = start_driver(
        format!("http://{addr}"),
        vec![(m("vmc-1"), None)],
        Duration::from_secs(1),
        stop.clone(),
    );
    let mut counts = Vec::new();
    let mut batches = 0;
    let deadline = tokio::time::Instant::now() + WAIT;
    while counts.len() < 7 {
        let batch = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("timed out; part counts so far {counts:?}"))
            .unwrap();
        batches += 1;
        for e in batch {
            if let DriverEvent::Observation(o) = e {
                if o.key.as_str() == "pc" {
                    counts.push(o.value.as_i64().unwrap());
                }
            }
        }
    }
    // The snapshot's 0, then 11..=16 from three parts (one batch each).
    assert_eq!(counts, vec![0, 11, 12, 13, 14, 15, 16]);
    assert!(batches >= 4, "{batches}");
    assert_eq!(counters.bad_input.load(Ordering::Relaxed), 0);
    assert_eq!(counters.gaps.load(Ordering::Relaxed), 0);
    stop.cancel();
}

// ---------------------------------------------------------------------------------------------
// The agent face fed by the simulated shop.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn agent_face_serves_the_simulated_shop() {
    use shopbridge::sim::shop::{ShopOptions, SimShop};
    let (shop, _runner) = SimShop::new(&ShopOptions {
        machines: 3,
        seed: 11,
        start: Timestamp::parse_rfc3339("2026-11-24T08:00:00Z").unwrap(),
        shop_offset_micros: 0,
        skews: Vec::new(),
    });
    let stop = CancellationToken::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let machines: Vec<_> = shop
        .machines()
        .iter()
        .map(|mm| (mm.id.clone(), Some(mm.device.clone())))
        .collect();
    let expected: usize = (0..3).map(|i| shop.subscribe(i).0.len()).sum();
    let s = stop.clone();
    tokio::spawn(shopbridge::sim::agent_face::serve(
        listener,
        shop,
        AgentOptions::default(),
        s,
    ));
    let (mut rx, _counters) = start_driver(
        format!("http://{addr}"),
        machines,
        Duration::from_secs(1),
        stop.clone(),
    );
    let mut connected = 0;
    let mut values = 0;
    while connected < 3 || values < expected {
        let batch = tokio::time::timeout(WAIT, rx.recv())
            .await
            .unwrap()
            .unwrap();
        for e in batch {
            match e {
                DriverEvent::Link {
                    status: LinkStatus::Connected,
                    ..
                } => connected += 1,
                DriverEvent::Observation(o) => {
                    assert!(o.meta.is_some(), "{o:?}");
                    values += 1;
                }
                DriverEvent::Condition(_) => values += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert_eq!(connected, 3);
    stop.cancel();
}

// ---------------------------------------------------------------------------------------------
// An agent that does not stream, and whose first sample answer is OUT_OF_RANGE.
// ---------------------------------------------------------------------------------------------

async fn plain_agent(listener: TcpListener, samples: Arc<std::sync::atomic::AtomicU64>) {
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            return;
        };
        let samples = samples.clone();
        tokio::spawn(async move {
            let Some(path) = request_path(&mut sock).await else {
                return;
            };
            let (status, body) = if path.starts_with("/probe") {
                ("200 OK", PROBE.to_string())
            } else if path.starts_with("/current") {
                ("200 OK", streams(1, 11, &pc(10, 5)))
            } else if path.starts_with("/sample") {
                match samples.fetch_add(1, Ordering::SeqCst) {
                    0 => (
                        "404 Not Found",
                        r#"<?xml version="1.0"?><MTConnectError xmlns="urn:mtconnect.org:MTConnectError:2.0"><Header instanceId="1" bufferSize="100"/><Errors><Error errorCode="OUT_OF_RANGE">'from' must be greater than 20</Error></Errors></MTConnectError>"#.to_string(),
                    ),
                    n => {
                        let seq = 10 + n;
                        ("200 OK", streams(1, seq + 1, &pc(seq, seq as i64)))
                    }
                }
            } else {
                ("404 Not Found", String::new())
            };
            let reply = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(reply.as_bytes()).await;
        });
    }
}

#[tokio::test]
async fn out_of_range_is_a_gap_and_a_plain_agent_is_polled() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let samples = Arc::new(std::sync::atomic::AtomicU64::new(0));
    tokio::spawn(plain_agent(listener, samples.clone()));
    let stop = CancellationToken::new();
    let (mut rx, counters) = start_driver(
        format!("http://{addr}"),
        vec![(m("vmc-1"), Some("VMC".into()))],
        Duration::from_secs(1),
        stop.clone(),
    );
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while !seen
        .iter()
        .any(|e| is_obs(e, "vmc-1", "pc", &Value::Int(13)))
    {
        let batch = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("timed out; saw {seen:#?}"))
            .unwrap();
        seen.extend(batch);
    }
    let gap = seen
        .iter()
        .position(|e| is_link(e, "vmc-1", LinkStatus::Gap))
        .expect("a Gap for OUT_OF_RANGE");
    let DriverEvent::Link { detail, .. } = &seen[gap] else {
        unreachable!()
    };
    assert_eq!(
        detail.as_deref(),
        Some("buffer overrun: the agent no longer holds sequence 11 (OUT_OF_RANGE)")
    );
    // Resynchronized with /current (its snapshot after the gap), then polled sample by sample.
    let after: Vec<_> = seen[gap..]
        .iter()
        .filter_map(|e| match e {
            DriverEvent::Observation(o) => o.value.as_i64(),
            _ => None,
        })
        .collect();
    assert_eq!(&after[..4], &[5, 11, 12, 13]);
    assert!(seen.iter().all(|e| !is_link(e, "vmc-1", LinkStatus::Lost)));
    assert_eq!(counters.gaps.load(Ordering::Relaxed), 1);
    stop.cancel();
}
