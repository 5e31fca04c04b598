//! The driver against real TCP servers on 127.0.0.1:0, written here to play the adapter.

use std::sync::atomic::Ordering;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::clock::Clock;
use crate::drivers::{DriverCounters, ItemCategory};
use crate::model::ConditionLevel;

/// The real Okuma OSP-P300 capture (third-party data: read in place, never copied).
const OKUMA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/data/mtconnect/okuma-osp-p300.shdr"
);

struct Running {
    rx: mpsc::Receiver<DriverBatch>,
    counters: Arc<DriverCounters>,
    stop: CancellationToken,
    task: JoinHandle<()>,
    events: Vec<DriverEvent>,
}

fn id(s: &str) -> MachineId {
    MachineId::new(s).unwrap_or_else(|e| panic!("{e}"))
}

fn start(spec: ShdrSpec, clock: Clock) -> Running {
    let (tx, rx) = mpsc::channel(16);
    let stop = CancellationToken::new();
    let counters = DriverCounters::new("shdr", spec.address.clone());
    let ctx = DriverContext {
        machines: spec.machines.iter().map(|m| m.0.clone()).collect(),
        tx,
        shutdown: stop.clone(),
        clock,
        counters: counters.clone(),
    };
    let task = tokio::spawn(run(spec, ctx));
    Running {
        rx,
        counters,
        stop,
        task,
        events: Vec::new(),
    }
}

impl Running {
    /// Collects events until `done` holds for what was collected, or panics after `secs`.
    async fn until(&mut self, secs: u64, what: &str, done: impl Fn(&[DriverEvent]) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        while !done(&self.events) {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(b)) => {
                    assert!(!b.is_empty(), "empty batches are not sent");
                    self.events.extend(b);
                }
                Ok(None) => panic!("driver ended while waiting for {what}"),
                Err(_) => panic!(
                    "timed out waiting for {what}; got {} events, last: {:?}",
                    self.events.len(),
                    self.events.last()
                ),
            }
        }
    }

    /// Collects whatever arrives within `d`.
    async fn for_a_while(&mut self, d: Duration) {
        let deadline = tokio::time::Instant::now() + d;
        while let Ok(Some(b)) = tokio::time::timeout_at(deadline, self.rx.recv()).await {
            self.events.extend(b);
        }
    }

    /// Stops the driver and checks that it stops promptly.
    async fn stop(self) -> Vec<DriverEvent> {
        self.stop.cancel();
        match tokio::time::timeout(Duration::from_secs(2), self.task).await {
            Ok(r) => r.unwrap_or_else(|e| panic!("driver task: {e}")),
            Err(_) => panic!("driver did not stop within 2 s of shutdown"),
        }
        self.events
    }

    fn count(&self, c: &AtomicU64Ref) -> u64 {
        c(&self.counters).load(Ordering::Relaxed)
    }
}

type AtomicU64Ref = dyn Fn(&DriverCounters) -> &std::sync::atomic::AtomicU64;

fn links(events: &[DriverEvent]) -> Vec<(LinkStatus, String)> {
    events
        .iter()
        .filter_map(|e| match e {
            DriverEvent::Link { status, detail, .. } => {
                Some((*status, detail.clone().unwrap_or_default()))
            }
            _ => None,
        })
        .collect()
}

fn observed<'a>(events: &'a [DriverEvent], key: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter_map(|e| match e {
            DriverEvent::Observation(o) if o.key.as_str() == key => Some(&o.value),
            _ => None,
        })
        .collect()
}

/// An adapter that sends `greeting`, then answers every PING with `pong`; returns the pings.
fn pong_server(
    listener: TcpListener,
    greeting: &'static [u8],
    pong: &'static [u8],
) -> JoinHandle<u32> {
    tokio::spawn(async move {
        let (sock, _) = listener.accept().await.expect("accept");
        let (rd, mut wr) = sock.into_split();
        let mut lines = BufReader::new(rd).lines();
        let mut pings = 0u32;
        wr.write_all(greeting).await.expect("write");
        while let Ok(Some(l)) = lines.next_line().await {
            if l == "* PING" {
                pings += 1;
                if wr.write_all(pong).await.is_err() {
                    break;
                }
            }
        }
        pings
    })
}

fn spec(address: String) -> ShdrSpec {
    ShdrSpec {
        address,
        heartbeat: None,
        machines: vec![(id("okuma-1"), None)],
        items: HashMap::new(),
    }
}

/// A deterministic stream of chunk sizes (1 byte to 8 KiB) that cut lines anywhere.
fn chunk_sizes(seed: u64) -> impl Iterator<Item = usize> {
    let mut x = seed | 1;
    std::iter::repeat_with(move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        match x % 10 {
            0 => 1 + (x >> 8) as usize % 3,
            1..=6 => 1 + (x >> 8) as usize % 200,
            _ => 1 + (x >> 8) as usize % 8192,
        }
    })
}

#[tokio::test]
async fn replays_the_okuma_capture_split_at_random_points() {
    let Ok(capture) = std::fs::read(OKUMA) else {
        eprintln!("skipped: {OKUMA} is absent (shared/data is not checked out beside the repo)");
        return;
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("addr").to_string();
    let data = capture.clone();
    let server = tokio::spawn(async move {
        let (sock, _) = listener.accept().await.expect("accept");
        let (rd, mut wr) = sock.into_split();
        let mut first = String::new();
        let _ = BufReader::new(rd).read_line(&mut first).await;
        let mut rest = &data[..];
        let mut sizes = chunk_sizes(0x5eed);
        while !rest.is_empty() {
            let n = sizes.next().unwrap_or(1).min(rest.len());
            wr.write_all(&rest[..n]).await.expect("write");
            rest = &rest[n..];
            if n < 4 {
                tokio::task::yield_now().await;
            }
        }
        // Keep the connection open (an adapter does) until the test is done.
        tokio::time::sleep(Duration::from_secs(30)).await;
        first
    });

    let mut d = start(spec(address.clone()), Clock::system());
    // 25,467 values and 9 `*adapterVersion`/`*mtconnectVersion` lines.
    let observations = |ev: &[DriverEvent]| {
        ev.iter()
            .filter(|e| matches!(e, DriverEvent::Observation(_)))
            .count()
    };
    d.until(30, "every value of the capture", |ev| {
        observations(ev) >= 25_476
    })
    .await;
    d.for_a_while(Duration::from_millis(100)).await;
    assert_eq!(d.count(&|c| &c.messages), 10_770);
    assert_eq!(d.count(&|c| &c.bytes), capture.len() as u64);
    assert_eq!(d.count(&|c| &c.bad_input), 0);
    assert_eq!(d.count(&|c| &c.link_errors), 0);
    let events = d.stop().await;
    server.abort();
    assert_eq!(observations(&events), 25_476);

    assert_eq!(
        links(&events),
        vec![(LinkStatus::Connected, format!("SHDR adapter at {address}"))]
    );
    assert!(matches!(events[0], DriverEvent::Link { .. }));
    assert!(events.iter().all(|e| e.machine().as_str() == "okuma-1"));

    let programs: Vec<String> = observed(&events, "pprogram")
        .iter()
        .map(|v| v.to_string())
        .collect();
    assert_eq!(
        programs,
        [
            "IMTS-2022-2-HOB.MIN",
            "IMTS-2022-1E-mm.MIN",
            "IMTS-2022-4B-mm.MIN",
            "IMTS-2022-3-TRAN.MIN"
        ]
    );
    let exec: Vec<String> = observed(&events, "pexecution")
        .iter()
        .map(|v| v.to_string())
        .collect();
    assert_eq!(
        exec,
        ["READY", "ACTIVE", "PROGRAM_COMPLETED", "READY"].repeat(4)
    );
    let counts: Vec<i64> = observed(&events, "ppartcount")
        .iter()
        .filter_map(|v| v.as_i64())
        .collect();
    assert_eq!(counts, [0, 1, 0, 1, 2, 3, 0, 1]);
    assert_eq!(
        observed(&events, "adapter.adapterVersion"),
        vec![&Value::Unavailable; 6]
    );

    let conditions: Vec<&RawCondition> = events
        .iter()
        .filter_map(|e| match e {
            DriverEvent::Condition(c) => Some(&**c),
            _ => None,
        })
        .collect();
    assert_eq!(conditions.len(), 40);
    assert!(conditions.iter().all(|c| c.level == ConditionLevel::Normal
        && c.source_time.is_some()
        && c.native_code.is_none()));

    let assets: Vec<&RawAsset> = events
        .iter()
        .filter_map(|e| match e {
            DriverEvent::Asset(a) => Some(&**a),
            _ => None,
        })
        .collect();
    let by = |a: AssetAction| assets.iter().filter(|x| x.action == a).count();
    assert_eq!(
        (
            by(AssetAction::Changed),
            by(AssetAction::Removed),
            by(AssetAction::RemovedAll)
        ),
        (118, 30, 4)
    );
    assert!(assets.iter().all(|a| a.source_time.is_some()));
    assert!(
        assets
            .iter()
            .filter(|a| a.action == AssetAction::Changed)
            .all(|a| a
                .document
                .as_deref()
                .is_some_and(|d| d.starts_with("<CuttingTool") && d.contains(&a.asset_id)))
    );
    // Source times are the adapter's, received times the bridge's.
    let first_obs = events.iter().find_map(|e| match e {
        DriverEvent::Observation(o) => Some(o),
        _ => None,
    });
    let Some(o) = first_obs else {
        panic!("no observation")
    };
    assert_eq!(
        o.source_time,
        Timestamp::parse_rfc3339("2022-08-08T13:51:34.716714Z").ok()
    );
    assert!(o.received.as_micros() > o.source_time.map_or(0, |t| t.as_micros()));
}

#[tokio::test]
async fn bad_lines_are_counted_and_the_connection_goes_on() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("addr").to_string();
    let server = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.expect("accept");
        sock.write_all(b"|a|1\r\n|b|caf\xff\xfe|c|2\n|d\n")
            .await
            .expect("write");
        let mut long = vec![b'x'; MAX_LINE + 10];
        long.push(b'\n');
        sock.write_all(&long).await.expect("write");
        sock.write_all(b"|m2:e|5|zz:f|6\n|@ASSET@|T1\n|g|7\n")
            .await
            .expect("write");
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    let mut s = spec(address);
    s.machines.push((id("m-2"), Some("m2".into())));
    let mut d = start(s, Clock::system());
    d.until(10, "g", |ev| !observed(ev, "g").is_empty()).await;
    // invalid UTF-8 · `d` without a value · the long line · unknown device `zz` · @ASSET@
    // without a document.
    assert_eq!(d.count(&|c| &c.bad_input), 5);
    assert_eq!(d.count(&|c| &c.messages), 7);
    let events = d.stop().await;
    server.abort();
    assert_eq!(
        links(&events).len(),
        2,
        "Connected for both machines, no Lost"
    );
    assert_eq!(observed(&events, "a"), vec![&Value::Int(1)]);
    assert_eq!(
        observed(&events, "b"),
        vec![&Value::text("caf\u{fffd}\u{fffd}")]
    );
    assert_eq!(observed(&events, "c"), vec![&Value::Int(2)]);
    let e = events.iter().find_map(|e| match e {
        DriverEvent::Observation(o) if o.key.as_str() == "e" => Some(o),
        _ => None,
    });
    assert_eq!(e.map(|o| o.machine.as_str()), Some("m-2"));
    assert!(observed(&events, "f").is_empty());
}

#[tokio::test]
async fn a_silent_adapter_is_dropped_after_two_heartbeats_and_reconnected() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("addr").to_string();
    // Accepts, reads the pings, never answers.
    let server = tokio::spawn(async move {
        let mut conns = Vec::new();
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                return;
            };
            conns.push(tokio::spawn(async move {
                let mut lines = BufReader::new(sock).lines();
                let mut pings = 0;
                while let Ok(Some(l)) = lines.next_line().await {
                    assert_eq!(l, "* PING");
                    pings += 1;
                }
                pings
            }));
        }
    });
    let mut s = spec(address.clone());
    s.heartbeat = Some(Duration::from_millis(200));
    let mut d = start(s, Clock::system());
    let started = std::time::Instant::now();
    d.until(5, "a reconnect", |ev| links(ev).len() >= 3).await;
    let took = started.elapsed();
    let l = links(&d.events);
    assert_eq!(l[0].0, LinkStatus::Connected);
    assert_eq!(
        l[1],
        (
            LinkStatus::Lost,
            format!("no data or PONG from {address} for 400 ms")
        )
    );
    assert_eq!(l[2].0, LinkStatus::Connected);
    // 400 ms of silence, then ~0.5 s of backoff.
    assert!(took >= Duration::from_millis(700), "{took:?}");
    assert_eq!(d.count(&|c| &c.link_errors), 1);
    d.stop().await;
    server.abort();
}

#[tokio::test]
async fn an_adapter_that_answers_pong_keeps_the_link_and_sets_the_heartbeat() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("addr").to_string();
    // Ask for a ping every 100 ms.
    let server = pong_server(
        listener,
        b"* uuid: OKUMA-123\n* device: m2\n|x|1\n",
        b"* PONG 100\n",
    );
    let mut s = spec(address);
    s.machines.push((id("m-2"), Some("m2".into())));
    let mut d = start(s, Clock::system());
    d.for_a_while(Duration::from_millis(1000)).await;
    let events = d.stop().await;
    let pings = server.await.unwrap_or(0);
    // Only Connected ×2: 1 s of 100 ms heartbeats did not time out.
    assert_eq!(links(&events).len(), 2, "{:?}", links(&events));
    assert!((6..=14).contains(&pings), "{pings} pings in 1 s at 100 ms");
    // `* uuid` is the nameplate of the default machine; `* device: m2` moves plain keys.
    let uuid: Vec<(&str, &Value)> = events
        .iter()
        .filter_map(|e| match e {
            DriverEvent::Observation(o) if o.key.as_str() == "adapter.uuid" => {
                Some((o.machine.as_str(), &o.value))
            }
            _ => None,
        })
        .collect();
    assert_eq!(uuid, vec![("okuma-1", &Value::text("OKUMA-123"))]);
    let x: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            DriverEvent::Observation(o) if o.key.as_str() == "x" => Some(o.machine.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(x, vec!["m-2"]);
}

#[tokio::test]
async fn connection_refused_reports_lost_once_and_backs_off() {
    // A port nobody listens on: bind one, then free it.
    let address = {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        l.local_addr().expect("addr")
    };
    // A 10× clock: backoff 50 ms, 100 ms, 200 ms, 400 ms … in wall time.
    let clock = Clock::scaled(Timestamp::from_micros(1_800_000_000_000_000), 10.0);
    let mut d = start(spec(address.to_string()), clock);
    d.for_a_while(Duration::from_millis(1000)).await;
    assert_eq!(
        links(&d.events),
        vec![(LinkStatus::Lost, format!("connection refused by {address}"))]
    );
    let attempts = d.count(&|c| &c.link_errors);
    assert!(
        (4..=8).contains(&attempts),
        "{attempts} attempts in 1 s at a 10× clock"
    );
    // The adapter comes up: the driver finds it at its next attempt.
    let listener = TcpListener::bind(address).await.expect("rebind");
    let server = tokio::spawn(async move {
        let (sock, _) = listener.accept().await.expect("accept");
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(sock);
    });
    d.until(5, "Connected", |ev| links(ev).len() == 2).await;
    assert_eq!(links(&d.events)[1].0, LinkStatus::Connected);
    d.stop().await;
    server.abort();
}

#[tokio::test]
async fn items_give_shapes_and_metadata() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("addr").to_string();
    let server = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.expect("accept");
        sock.write_all(
            b"2026-11-25T06:00:00Z|alarm|FAULT|2001|HIGH||Spindle overload|Sspeed|1200\n\
              2026-11-25T06:00:01Z|msg|E7|Coolant low|done|1\n",
        )
        .await
        .expect("write");
        // Then the adapter closes: Lost, with why.
    });
    let meta = |id: &str, category, item_type: &str| {
        Arc::new(DataItemMeta {
            id: id.into(),
            category: Some(category),
            item_type: item_type.into(),
            ..DataItemMeta::default()
        })
    };
    let mut s = spec(address.clone());
    s.items = HashMap::from([
        (
            "alarm".to_string(),
            meta("alarm", ItemCategory::Condition, "SYSTEM"),
        ),
        (
            "Sspeed".to_string(),
            meta("Sspeed", ItemCategory::Sample, "ROTARY_VELOCITY"),
        ),
        (
            "msg".to_string(),
            meta("msg", ItemCategory::Event, "MESSAGE"),
        ),
    ]);
    let mut d = start(s, Clock::system());
    d.until(5, "Lost", |ev| links(ev).len() == 2).await;
    let events = d.stop().await;
    server.abort();
    assert_eq!(
        links(&events)[1],
        (LinkStatus::Lost, format!("{address} closed the connection"))
    );
    let cond = events.iter().find_map(|e| match e {
        DriverEvent::Condition(c) => Some(c),
        _ => None,
    });
    let Some(c) = cond else {
        panic!("no condition")
    };
    assert_eq!(c.key.as_str(), "alarm");
    assert_eq!(c.level, ConditionLevel::Fault);
    assert_eq!(c.native_code.as_deref(), Some("2001"));
    assert_eq!(c.message.as_deref(), Some("Spindle overload"));
    assert_eq!(
        c.meta.as_ref().map(|m| m.item_type.as_str()),
        Some("SYSTEM")
    );
    let speed = events.iter().find_map(|e| match e {
        DriverEvent::Observation(o) if o.key.as_str() == "Sspeed" => Some(o),
        _ => None,
    });
    assert_eq!(
        speed
            .and_then(|o| o.meta.as_ref())
            .map(|m| m.item_type.as_str()),
        Some("ROTARY_VELOCITY")
    );
    assert_eq!(observed(&events, "msg"), vec![&Value::text("Coolant low")]);
    assert_eq!(
        observed(&events, "msg.native_code"),
        vec![&Value::text("E7")]
    );
    assert_eq!(observed(&events, "done"), vec![&Value::Int(1)]);
}

/// Throughput of parsing and building events, on the Okuma capture. A measurement, not an
/// assertion (DESIGN section 6): `cargo test --release --lib shdr::tests::throughput --
/// --ignored --nocapture`.
#[test]
#[ignore = "a measurement; run in release by hand"]
fn throughput() {
    let Ok(capture) = std::fs::read_to_string(OKUMA) else {
        eprintln!("skipped: {OKUMA} is absent");
        return;
    };
    let lines: Vec<&str> = capture.lines().collect();
    let (tx, _rx) = mpsc::channel(1);
    let ctx = DriverContext {
        machines: vec![id("okuma-1")],
        tx,
        shutdown: CancellationToken::new(),
        clock: Clock::system(),
        counters: DriverCounters::new("shdr", "bench"),
    };
    let s = spec("bench:1".into());
    let Some(mut session) = Session::new(&s, &ctx) else {
        panic!("no session")
    };
    let received = Timestamp::from_micros(1);
    let rounds = 50;
    // Parser alone.
    let t = std::time::Instant::now();
    let mut n = 0usize;
    for _ in 0..rounds {
        let mut p = Parser::new();
        for l in &lines {
            let mut out = Vec::new();
            let _ = p.push_line(l, &mut out);
            n += out.len();
        }
    }
    let parse = t.elapsed();
    // Parser and events, as the driver runs them.
    let t = std::time::Instant::now();
    let mut events = 0usize;
    for _ in 0..rounds {
        let mut p = Parser::new();
        let mut batch = DriverBatch::with_capacity(1024);
        for l in &lines {
            session.line(&mut p, l, received, &mut batch);
            if batch.len() > 1000 {
                events += batch.len();
                batch.clear();
            }
        }
        events += batch.len();
    }
    let full = t.elapsed();
    let total = (lines.len() * rounds) as f64;
    eprintln!(
        "parse: {:.0} lines/s ({n} items); parse+events: {:.0} lines/s ({events} events)",
        total / parse.as_secs_f64(),
        total / full.as_secs_f64()
    );
}

#[tokio::test]
async fn under_a_fast_clock_an_idle_adapter_that_pongs_stays_connected() {
    // At 60× a 10 s heartbeat would be 167 ms of wall time; the timers are floored at 1 s of
    // wall time, and the silence allowed must stay twice the ping interval (found by the
    // skewed-clock demo test: with both floored to 1 s every PONG came too late).
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("addr").to_string();
    let server = pong_server(listener, b"", b"* PONG 10000\n");
    let clock = Clock::scaled(Timestamp::from_micros(1_800_000_000_000_000), 60.0);
    let mut d = start(spec(address), clock);
    d.for_a_while(Duration::from_millis(3500)).await;
    let events = d.stop().await;
    let pings = server.await.unwrap_or(0);
    let statuses: Vec<LinkStatus> = links(&events).into_iter().map(|l| l.0).collect();
    assert_eq!(
        statuses,
        [LinkStatus::Connected],
        "an idle adapter that answers every PING was dropped"
    );
    assert!(
        (3..=5).contains(&pings),
        "{pings} pings in 3.5 s at a 1 s floor"
    );
}
