//! The OPC UA client driver against two independent servers: a Python `asyncua` server shaped
//! like a SINUMERIK and like an OPC 40501 machine tool (tests/opcua/machine_server.py), and
//! another shopbridge (`shopbridge demo`'s OPC UA server), read bridge to bridge.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shopbridge::clock::Clock;
use shopbridge::config::{DriverConfig, Identification, MachineConfig};
use shopbridge::drivers::opcua_client::{
    self, BrowseSpec, Identity, NodeSpec, OpcuaSpec, Security, SecurityMode,
};
use shopbridge::drivers::{DriverBatch, DriverContext, DriverCounters, DriverEvent};
use shopbridge::journal::ReadOnlyJournal;
use shopbridge::model::{Execution, LinkStatus, MachineId, RecordKind, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The Python server, its stdin (to set values) and its replies.
struct Peer {
    child: Child,
    stdin: ChildStdin,
    replies: std::sync::mpsc::Receiver<String>,
}

impl Peer {
    fn start(port: u16, work: &Path) -> Peer {
        let mut child = Command::new("python3")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/opcua/machine_server.py"))
            .arg(port.to_string())
            .arg(work)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tests/opcua/machine_server.py (python3 with asyncua: ./scripts/test installs it)");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, replies) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let first = replies
            .recv_timeout(Duration::from_secs(60))
            .expect("the asyncua server started");
        assert_eq!(first, "READY");
        Peer {
            child,
            stdin,
            replies,
        }
    }

    fn set(&mut self, name: &str, json: &str) {
        writeln!(self.stdin, "set {name} {json}").expect("write to the server");
        let reply = self
            .replies
            .recv_timeout(Duration::from_secs(10))
            .expect("the server answered");
        assert_eq!(reply, format!("ok {name}"));
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The driver running in this test, and everything it sent.
struct Running {
    events: Arc<Mutex<Vec<DriverEvent>>>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    counters: Arc<DriverCounters>,
}

impl Running {
    fn start(spec: OpcuaSpec) -> Running {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let (tx, mut rx) = mpsc::channel::<DriverBatch>(64);
        let shutdown = CancellationToken::new();
        let counters = DriverCounters::new("opcua", spec.endpoint.clone());
        let ctx = DriverContext {
            machines: vec![MachineId::new("m1").unwrap()],
            tx,
            shutdown: shutdown.clone(),
            clock: Clock::system(),
            counters: counters.clone(),
        };
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        tokio::spawn(async move {
            while let Some(batch) = rx.recv().await {
                sink.lock().unwrap().extend(batch);
            }
        });
        let task = tokio::spawn(opcua_client::run(spec, ctx));
        Running {
            events,
            shutdown,
            task,
            counters,
        }
    }

    fn snapshot(&self) -> Vec<DriverEvent> {
        self.events.lock().unwrap().clone()
    }

    /// Waits until `f` holds over everything sent, or panics with `what` and the events.
    async fn until(&self, what: &str, f: impl Fn(&[DriverEvent]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let events = self.snapshot();
            if f(&events) {
                return;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}; events: {events:#?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the driver stopped on shutdown")
            .expect("the driver did not panic");
    }
}

fn values<'a>(events: &'a [DriverEvent], key: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter_map(|e| match e {
            DriverEvent::Observation(o) if o.key.as_str() == key => Some(&o.value),
            _ => None,
        })
        .collect()
}

fn has(events: &[DriverEvent], key: &str, v: &Value) -> bool {
    values(events, key).contains(&v)
}

fn links(events: &[DriverEvent], status: LinkStatus) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            DriverEvent::Link {
                status: s, detail, ..
            } if *s == status => Some(detail.clone().unwrap_or_default()),
            _ => None,
        })
        .collect()
}

fn spec(port: u16, pki: &Path) -> OpcuaSpec {
    OpcuaSpec {
        endpoint: format!("opc.tcp://127.0.0.1:{port}/"),
        security: Security {
            policy: "None".into(),
            mode: SecurityMode::None,
        },
        identity: Identity::Anonymous,
        pki_dir: pki.to_path_buf(),
        trust_server: true,
        nodes: vec![],
        browse: None,
        publishing_interval: Duration::from_millis(100),
        sampling_interval: Duration::from_millis(50),
        deadband: 0.0,
        timeout: Duration::from_secs(10),
    }
}

fn node(path: &str, deadband: Option<f64>) -> NodeSpec {
    NodeSpec {
        key: path.to_string(),
        node: format!("ns=2;s={path}"),
        deadband,
    }
}

/// A SINUMERIK-style read: configured node ids, Basic256Sha256 with encryption, a user;
/// changes inside a node's deadband are not reported, changes beyond it are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sinumerik_nodes_secure_user_and_deadband() {
    let work = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let mut peer = Peer::start(port, &work.path().join("server"));
    let mut s = spec(port, &work.path().join("pki"));
    s.security = Security {
        policy: "Basic256Sha256".into(),
        mode: SecurityMode::SignAndEncrypt,
    };
    s.identity = Identity::User {
        name: "operator".into(),
        password: "secret".into(),
    };
    s.nodes = vec![
        node("/Channel/State/progStatus", None),
        node("/Bag/State/opMode", None),
        node("/Channel/State/actParts", None),
        node("/Channel/Spindle/actSpeed", Some(5.0)),
        node("/Channel/ProgramInfo/progName", None),
    ];
    let d = Running::start(s.clone());
    d.until("connected with every node's first value", |e| {
        links(e, LinkStatus::Connected).len() == 1
            && has(e, "/Channel/State/progStatus", &Value::Int(2))
            && has(e, "/Channel/Spindle/actSpeed", &Value::Float(1000.0))
            && has(
                e,
                "/Channel/ProgramInfo/progName",
                &Value::text("PART_4417.MPF"),
            )
            && has(e, "/Channel/State/actParts", &Value::Int(17))
    })
    .await;
    // 1002 is inside the deadband of 5; 1100 is not.
    peer.set("/Channel/Spindle/actSpeed", "1002");
    tokio::time::sleep(Duration::from_millis(500)).await;
    peer.set("/Channel/Spindle/actSpeed", "1100");
    peer.set("/Channel/State/progStatus", "3");
    peer.set("/Channel/State/actParts", "18");
    d.until("the changes beyond the deadband", |e| {
        has(e, "/Channel/Spindle/actSpeed", &Value::Float(1100.0))
            && has(e, "/Channel/State/progStatus", &Value::Int(3))
            && has(e, "/Channel/State/actParts", &Value::Int(18))
    })
    .await;
    let events = d.snapshot();
    assert!(
        !has(&events, "/Channel/Spindle/actSpeed", &Value::Float(1002.0)),
        "a change inside the deadband was reported: {:?}",
        values(&events, "/Channel/Spindle/actSpeed")
    );
    // Source timestamps come from the server.
    assert!(
        events
            .iter()
            .any(|e| matches!(e, DriverEvent::Observation(o) if o.source_time.is_some()))
    );
    d.stop().await;

    // A wrong password: the link is reported lost, saying why.
    let mut bad = s.clone();
    bad.identity = Identity::User {
        name: "operator".into(),
        password: "wrong".into(),
    };
    let d = Running::start(bad);
    d.until("the refusal reported", |e| {
        !links(e, LinkStatus::Lost).is_empty()
    })
    .await;
    let why = links(&d.snapshot(), LinkStatus::Lost).join(" | ");
    assert!(why.contains("cannot connect"), "{why}");
    d.stop().await;

    // A policy the server does not offer.
    let mut wrong = spec(port, &work.path().join("pki"));
    wrong.security = Security {
        policy: "Aes256_Sha256_RsaPss".into(),
        mode: SecurityMode::SignAndEncrypt,
    };
    wrong.nodes = vec![node("/Channel/State/progStatus", None)];
    let d = Running::start(wrong);
    d.until("the missing endpoint reported", |e| {
        !links(e, LinkStatus::Lost).is_empty()
    })
    .await;
    let why = links(&d.snapshot(), LinkStatus::Lost).join(" | ");
    assert!(why.contains("Aes256_Sha256_RsaPss"), "{why}");
    d.stop().await;
    peer.kill();
}

/// Browsing an OPC 40501-shaped machine: keys are browse paths, metadata properties are
/// skipped, and a server that goes away and comes back is read again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browse_machine_tool_and_reconnect() {
    let work = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let mut peer = Peer::start(port, &work.path().join("server"));
    let mut s = spec(port, &work.path().join("pki"));
    s.browse = Some(BrowseSpec {
        root: "Machines/Mill1".into(),
        depth: 6,
        max_items: 100,
    });
    let d = Running::start(s);
    d.until("the browsed machine's values", |e| {
        has(e, "Monitoring/Channel1/ChannelState", &Value::Int(2))
            && has(
                e,
                "Production/ActiveProgram/State/CurrentState",
                &Value::text("Ready"),
            )
            && has(
                e,
                "Monitoring/MachineTool/MachineryItemState/CurrentState",
                &Value::text("NotExecuting"),
            )
            && has(e, "Production/ActiveProgram/Name", &Value::text("O4417"))
            && has(e, "Monitoring/Spindle1/Override", &Value::Float(100.0))
    })
    .await;
    let events = d.snapshot();
    assert!(
        events.iter().all(|e| !matches!(e, DriverEvent::Observation(o) if o.key.as_str().contains("EngineeringUnits"))),
        "a metadata property was subscribed to"
    );
    // Observations carry what the browse found, so profiles can match by name.
    let meta = events
        .iter()
        .find_map(|e| match e {
            DriverEvent::Observation(o) if o.key.as_str() == "Monitoring/Channel1/ChannelState" => {
                o.meta.clone()
            }
            _ => None,
        })
        .expect("meta");
    assert_eq!(meta.name.as_deref(), Some("ChannelState"));
    assert_eq!(meta.component.as_deref(), Some("Channel1"));

    peer.set("Production/ActiveProgram/State/CurrentState", "\"Running\"");
    peer.set("Monitoring/Channel1/ChannelState", "0");
    d.until("the program running", |e| {
        has(
            e,
            "Production/ActiveProgram/State/CurrentState",
            &Value::text("Running"),
        ) && has(e, "Monitoring/Channel1/ChannelState", &Value::Int(0))
    })
    .await;

    // The server goes away: the link is lost. It comes back: read again, from scratch.
    peer.kill();
    d.until("the link lost", |e| !links(e, LinkStatus::Lost).is_empty())
        .await;
    let before = d.snapshot().len();
    let peer = Peer::start(port, &work.path().join("server"));
    d.until("connected again with fresh values", |e| {
        e.len() > before
            && links(&e[before..], LinkStatus::Connected).len() == 1
            && has(
                &e[before..],
                "Monitoring/Channel1/ChannelState",
                &Value::Int(2),
            )
    })
    .await;
    assert!(
        d.counters
            .link_errors
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
    d.stop().await;
    peer.kill();
}

/// Bridge to bridge: a second shopbridge reads the demo's machines through the demo's OPC UA
/// server with the `opcua-machine-tool` profile, and its record follows the first's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_to_bridge() {
    let a_dir = tempfile::tempdir().unwrap();
    let mut a = Command::new(env!("CARGO_BIN_EXE_shopbridge"))
        .args([
            "demo",
            "--speed",
            "30",
            "--machines",
            "3",
            "--http-port",
            "0",
            "--opcua-port",
            "0",
            "--mqtt-port",
            "0",
            "--data-dir",
        ])
        .arg(a_dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the demo");
    let (http, opcua) = common::announced(a.stdout.take().expect("stdout"), true);
    let a = common::KillOnDrop(a);
    let opcua = opcua.expect("the demo's OPC UA endpoint");
    let client = reqwest::Client::new();
    let machines: serde_json::Value = client
        .get(format!("{http}/api/v1/machines"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let machines = machines.as_array().cloned().unwrap_or_default();
    assert_eq!(machines.len(), 3, "{machines:?}");

    let b_dir = tempfile::tempdir().unwrap();
    let configs: Vec<MachineConfig> = machines
        .iter()
        .map(|m| {
            let name = m["name"].as_str().unwrap().to_string();
            let mut s = spec(0, &b_dir.path().join("pki"));
            s.endpoint = opcua.clone();
            s.browse = Some(BrowseSpec {
                root: format!("Machines/{name}"),
                depth: 6,
                max_items: 500,
            });
            MachineConfig {
                id: MachineId::new(&format!("b-{}", m["id"].as_str().unwrap())).unwrap(),
                name,
                profile: "opcua-machine-tool".into(),
                identification: Identification::default(),
                calendar: None,
                parts_per_cycle: 1,
                driver: DriverConfig::Opcua { spec: s },
            }
        })
        .collect();
    let clock = Clock::system();
    let opts = shopbridge::sim::shop::ShopOptions {
        machines: 0,
        seed: 1,
        start: clock.now(),
        shop_offset_micros: 0,
        skews: vec![],
    };
    let bridge = common::InProcessBridge::start(configs.clone(), b_dir.path(), &clock, &opts);
    // At 30× a demo machine runs cycles of a few simulated minutes: 40 s is about 20 minutes.
    tokio::time::sleep(Duration::from_secs(40)).await;
    // What A's machines run now, to compare with what B last heard.
    let now_a: serde_json::Value = client
        .get(format!("{http}/api/v1/machines"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    bridge.stop().await;
    drop(a);

    let journal = ReadOnlyJournal::open(b_dir.path()).unwrap();
    let records = journal.read(0, usize::MAX).unwrap();
    let mut ran = 0;
    for (m, cfg) in machines.iter().zip(&configs) {
        let mine: Vec<_> = records
            .iter()
            .filter(|r| r.kind.machine() == &cfg.id)
            .collect();
        assert!(
            mine.iter().any(
                |r| matches!(&r.kind, RecordKind::Link(l) if l.status == LinkStatus::Connected)
            ),
            "{}: B never connected to A's {}",
            cfg.id,
            m["id"]
        );
        let executions: Vec<Option<Execution>> = mine
            .iter()
            .filter_map(|r| match &r.kind {
                RecordKind::StateChange(s) => Some(s.state.execution),
                _ => None,
            })
            .collect();
        assert!(!executions.is_empty(), "{}: no state records", cfg.id);
        if executions.contains(&Some(Execution::Active)) {
            ran += 1;
        }
        let programs: Vec<String> = mine
            .iter()
            .filter_map(|r| match &r.kind {
                RecordKind::Observation(o) if o.signal.as_str() == "program" => {
                    Some(o.value.to_string())
                }
                _ => None,
            })
            .collect();
        let a_program = now_a
            .as_array()
            .and_then(|l| l.iter().find(|x| x["id"] == m["id"]))
            .and_then(|x| x["signals"]["program"]["value"].as_str())
            .map(str::to_string)
            .unwrap_or_else(|| panic!("A's {} has no program: {now_a}", m["id"]));
        assert!(
            programs.contains(&a_program),
            "{}: A runs {a_program}, B heard {programs:?}",
            cfg.id
        );
    }
    assert!(ran >= 1, "no machine of B ever ran, though A's did");
}
