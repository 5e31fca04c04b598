//! The Haas MDC driver against a simulated Haas control speaking the real framing, over TCP
//! (through the whole bridge, and with links that drop and controls that hang) and over
//! RS-232 on a pseudo-terminal pair (the request echoed, STX … ETB data lines).

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shopbridge::clock::Clock;
use shopbridge::drivers::haas::{Haas, HaasSpec, Transport};
use shopbridge::drivers::poll::{self, Timing};
use shopbridge::drivers::serial::{Flow, Parity, SerialSettings};
use shopbridge::drivers::{DriverBatch, DriverContext, DriverCounters, DriverEvent};
use shopbridge::journal::ReadOnlyJournal;
use shopbridge::model::{LinkStatus, MachineId, Quality, RecordKind, ShopState, Value};
use shopbridge::sim::haas_face::{self, Control, SharedControl};
use shopbridge::sim::serve::{Ports, SimServer};
use shopbridge::sim::shop::{FaceValue, ShopOptions, SimShop};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use common::{last_value as value, link_events as links};

fn machine() -> MachineId {
    MachineId::new("haas-1").unwrap_or_else(|e| panic!("{e}"))
}

/// A one-machine simulated shop (for its clock) and a control with a program loaded.
fn control() -> (SimShop, SharedControl) {
    let opts = ShopOptions {
        machines: 1,
        seed: 5,
        start: Clock::system().now(),
        shop_offset_micros: 0,
        skews: vec![],
    };
    let (shop, _runner) = SimShop::new(&opts);
    let mut c = Control::new("1234567", "VF-2", 0, shop.now(0));
    let now = shop.now(0);
    c.apply("program", &FaceValue::Value(Value::text("O04417")), now);
    c.apply("part_count", &FaceValue::Value(Value::Int(12)), now);
    c.apply(
        "spindle_speed",
        &FaceValue::Value(Value::Float(4500.0)),
        now,
    );
    (shop, Arc::new(Mutex::new(c)))
}

/// Runs the driver and hands back what it sent.
fn start_driver(
    spec: HaasSpec,
    interval: Duration,
) -> (mpsc::Receiver<DriverBatch>, CancellationToken) {
    let (tx, rx) = mpsc::channel(1024);
    let stop = CancellationToken::new();
    let ctx = DriverContext {
        machines: vec![machine()],
        tx,
        shutdown: stop.clone(),
        clock: Clock::system(),
        counters: DriverCounters::new("haas", "test"),
    };
    let timing = Timing {
        interval,
        connect_timeout: Duration::from_secs(2),
    };
    tokio::spawn(poll::run(Haas::new(spec), timing, ctx));
    (rx, stop)
}

/// Collects events until `done` says so or `within` passes.
async fn collect(
    rx: &mut mpsc::Receiver<DriverBatch>,
    within: Duration,
    done: impl Fn(&[DriverEvent]) -> bool,
) -> Vec<DriverEvent> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    while !done(&got) {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(batch)) => got.extend(batch),
            _ => break,
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rs232_on_a_pseudo_terminal_echo_and_stx_etb_framing() {
    // A pseudo-terminal pair: the simulated control on the master side, the driver opens the
    // slave by its path, as it would open /dev/ttyUSB0.
    let (master, slave, path) = common::pty();
    let (shop, control) = control();
    let stop_face = CancellationToken::new();
    let face = {
        let stop = stop_face.clone();
        let control = control.clone();
        tokio::spawn(async move {
            let _ = haas_face::answer(master, &shop, 0, &control, true, stop).await;
        })
    };
    let spec = HaasSpec {
        transport: Transport::Serial(SerialSettings {
            port: path,
            baud: 9600,
            data_bits: 7,
            parity: Parity::Even,
            stop_bits: 1,
            flow: Flow::Software,
        }),
        macros: vec![3027, 99999],
        timeout: Duration::from_secs(2),
    };
    let (mut rx, stop) = start_driver(spec, Duration::from_millis(200));
    let got = collect(&mut rx, Duration::from_secs(20), |e| {
        value(e, "Q102").is_some() && value(e, "#99999").is_some()
    })
    .await;
    stop.cancel();
    stop_face.cancel();
    let _ = face.await;
    drop(slave);
    assert_eq!(links(&got, LinkStatus::Connected), 1, "{got:#?}");
    assert_eq!(links(&got, LinkStatus::Lost), 0, "{got:#?}");
    let good = |k: &str| value(&got, k).map(|(v, q)| (v.clone(), q));
    assert_eq!(
        good("Q500.program"),
        Some((Value::text("O04417"), Quality::Good))
    );
    assert_eq!(
        good("Q500.status"),
        Some((Value::text("IDLE"), Quality::Good))
    );
    assert_eq!(good("Q500.parts"), Some((Value::Int(12), Quality::Good)));
    assert_eq!(good("Q402"), Some((Value::Int(12), Quality::Good)));
    assert_eq!(good("Q104"), Some((Value::text("MEM"), Quality::Good)));
    assert_eq!(good("Q100"), Some((Value::text("1234567"), Quality::Good)));
    assert_eq!(good("#3027"), Some((Value::Float(4500.0), Quality::Good)));
    // A variable the control does not have is that query's error, as the control said it.
    let (v, q) = value(&got, "#99999").unwrap_or_else(|| panic!("no #99999"));
    assert!(matches!(q, Quality::Bad(_)), "{q:?}");
    assert_eq!(v, &Value::text("Q600 99999: ?, BAD VARIABLE NUMBER"));
    // Report by exception: the same values are not sent again every poll.
    let programs = got
        .iter()
        .filter(|e| matches!(e, DriverEvent::Observation(o) if o.key.as_str() == "Q500.program"))
        .count();
    assert_eq!(programs, 1);
}

/// A control on TCP that hangs up after `requests` requests, counting how many clients it
/// has at once.
async fn flaky_control(requests: usize) -> (SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let (open, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (o, m) = (open.clone(), most.clone());
    tokio::spawn(async move {
        let (shop, control) = control();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let now = o.fetch_add(1, Ordering::SeqCst) + 1;
            m.fetch_max(now, Ordering::SeqCst);
            let (shop, control, o) = (shop.clone(), control.clone(), o.clone());
            tokio::spawn(async move {
                // Count requests by lines; hang up after `requests`.
                let stop = CancellationToken::new();
                let counted = CountingStream {
                    inner: stream,
                    lines: 0,
                    limit: requests,
                };
                let _ = haas_face::answer(counted, &shop, 0, &control, false, stop).await;
                o.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    (addr, open, most)
}

/// A stream that reports end of input after `limit` request lines.
struct CountingStream {
    inner: tokio::net::TcpStream,
    lines: usize,
    limit: usize,
}

impl tokio::io::AsyncRead for CountingStream {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.lines >= self.limit {
            return std::task::Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled()[before..]
            .iter()
            .filter(|b| **b == b'\n')
            .count();
        self.lines += n;
        r
    }
}

impl tokio::io::AsyncWrite for CountingStream {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_links_reconnect_one_connection_at_a_time_and_resend_everything() {
    // 40 requests is about three polls.
    let (addr, open, most) = flaky_control(40).await;
    let spec = HaasSpec {
        transport: Transport::Tcp(addr.to_string()),
        macros: vec![3027],
        timeout: Duration::from_secs(2),
    };
    let (mut rx, stop) = start_driver(spec, Duration::from_millis(50));
    let programs = |e: &[DriverEvent]| {
        e.iter()
            .filter(
                |e| matches!(e, DriverEvent::Observation(o) if o.key.as_str() == "Q500.program"),
            )
            .count()
    };
    let got = collect(&mut rx, Duration::from_secs(30), |e| {
        links(e, LinkStatus::Connected) >= 3 && programs(e) >= 3
    })
    .await;
    stop.cancel();
    assert!(links(&got, LinkStatus::Connected) >= 3, "{got:#?}");
    // Lost once per outage, each with the reason.
    assert!(links(&got, LinkStatus::Lost) >= 2, "{got:#?}");
    assert!(got.iter().any(|e| matches!(e,
        DriverEvent::Link { status: LinkStatus::Lost, detail: Some(d), .. } if d.contains("closed the connection"))));
    // Never two connections to one control.
    assert_eq!(most.load(Ordering::SeqCst), 1);
    // After each reconnect every value is sent again (the bridge marked them unknown).
    assert!(programs(&got) >= 3, "{got:#?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(open.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_that_never_answers_is_a_lost_link_with_the_reason() {
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s); // accepted, never answered
        }
    });
    let spec = HaasSpec {
        transport: Transport::Tcp(addr.to_string()),
        macros: vec![],
        timeout: Duration::from_millis(300),
    };
    let (mut rx, stop) = start_driver(spec, Duration::from_millis(100));
    let got = collect(&mut rx, Duration::from_secs(10), |e| {
        links(e, LinkStatus::Lost) >= 1
    })
    .await;
    stop.cancel();
    let lost = got.iter().find_map(|e| match e {
        DriverEvent::Link {
            status: LinkStatus::Lost,
            detail,
            ..
        } => detail.clone(),
        _ => None,
    });
    assert_eq!(
        lost.as_deref(),
        Some(format!("no reply to ?Q500 from {addr} within 300 ms").as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bridge_reads_a_simulated_haas_through_mdc() {
    let clock = Clock::scaled(Clock::system().now(), 60.0);
    let opts = ShopOptions {
        machines: 1,
        seed: 8,
        start: clock.now(),
        shop_offset_micros: shopbridge::sim::demo_shop_offset(clock.now()),
        skews: vec![],
    };
    let server = SimServer::start(&opts, Ports::default(), clock.clone(), None, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let machines = server.machine_configs();
    assert_eq!(machines[0].driver.type_name(), "haas");
    assert_eq!(machines[0].profile, "haas-ngc");
    let id = machines[0].id.clone();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let bridge = common::InProcessBridge::start(machines, dir.path(), &clock, &opts);
    // Twenty simulated minutes.
    tokio::time::sleep(Duration::from_secs(20)).await;
    bridge.stop().await;
    server.stop().await;

    let journal = ReadOnlyJournal::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let records = journal
        .read(0, usize::MAX)
        .unwrap_or_else(|e| panic!("{e}"));
    let mine = |r: &&shopbridge::model::Record| r.kind.machine() == &id;
    let states: Vec<ShopState> = records
        .iter()
        .filter(mine)
        .filter_map(|r| match &r.kind {
            RecordKind::StateChange(s) => Some(s.shop_state),
            _ => None,
        })
        .collect();
    assert!(states.contains(&ShopState::Run), "{states:?}");
    assert!(states.contains(&ShopState::Idle), "{states:?}");
    let signal = |name: &str| {
        records
            .iter()
            .filter(mine)
            .filter_map(|r| match &r.kind {
                RecordKind::Observation(o) if o.signal.as_str() == name => Some(o.value.clone()),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    assert!(
        signal("program")
            .iter()
            .any(|p| p.to_string().starts_with('O')),
        "{:?}",
        signal("program")
    );
    assert!(!signal("part_count").is_empty());
    assert!(!signal("motion_time").is_empty());
    assert!(signal("haas_status").contains(&Value::text("BUSY")));
    assert!(
        signal("spindle_speed")
            .iter()
            .any(|v| v.as_f64().is_some_and(|x| x > 0.0))
    );
    // Every interval of the machine has a category, as for any other machine.
    assert!(records.iter().filter(mine).any(|r| matches!(&r.kind,
        RecordKind::Interval(i) if i.category.is_some())));
}
