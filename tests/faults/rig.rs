//! What every fault row is built from: the bridge as a child process, Mosquitto and the
//! pysparkplug host, an SHDR adapter fed by a counting thread, a link that drops, and the
//! journal read back at the end.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;
use shopbridge::journal::ReadOnlyJournal;
use shopbridge::model::{Record, RecordKind};

use crate::common::KillOnDrop;
use crate::common::mqtt::{Adapter, Host, is, metrics, mosquitto, write_passwd};

pub const GROUP: &str = "faults";
pub const NODE: &str = "edge-1";
pub const MACHINE: &str = "mill-1";
pub const T: Duration = Duration::from_secs(30);

/// The bridge, `shopbridge run --config <dir>/bridge.toml`, its journal in `<dir>/data`, its
/// standard error appended to `<dir>/bridge.log` across restarts.
pub struct Bridge {
    pub dir: PathBuf,
    child: Option<KillOnDrop>,
}

impl Bridge {
    /// Writes the configuration: the journal, a loopback HTTP port, Sparkplug to `broker`
    /// (if any), then `rest` (machines and any other sections).
    pub fn configure(dir: &Path, broker: Option<u16>, rest: &str) {
        Bridge::configure_with(dir, broker, "", rest)
    }

    /// [`Bridge::configure`] with more `[journal]` keys.
    pub fn configure_with(dir: &Path, broker: Option<u16>, journal: &str, rest: &str) {
        let mut toml = format!(
            "[journal]\ndir = {:?}\n{journal}\n[http]\nlisten = \"127.0.0.1:0\"\n",
            dir.join("data").display().to_string()
        );
        if let Some(port) = broker {
            toml += &format!(
                "[sparkplug]\ngroup_id = \"{GROUP}\"\nedge_node_id = \"{NODE}\"\n\
                 [mqtt]\nurl = \"mqtt://127.0.0.1:{port}\"\nkeep_alive = \"5s\"\n\
                 username = \"bridge\"\npassword = \"b-pw\"\n"
            );
        }
        toml += rest;
        std::fs::write(dir.join("bridge.toml"), toml).unwrap();
    }

    pub fn start(dir: &Path) -> Bridge {
        let mut b = Bridge {
            dir: dir.to_path_buf(),
            child: None,
        };
        b.restart();
        b
    }

    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "the bridge is already running");
        let _ = std::fs::remove_file(self.dir.join("data/bridge.json"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("bridge.log"))
            .unwrap();
        self.child = Some(KillOnDrop(
            Command::new(env!("CARGO_BIN_EXE_shopbridge"))
                .args(["run", "--config"])
                .arg(self.dir.join("bridge.toml"))
                .env("RUST_LOG", "info")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start the bridge"),
        ));
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").0.id()
    }

    /// kill -9: no chance to flush or say goodbye.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.0.kill();
            let _ = c.0.wait();
        }
    }

    /// SIGTERM, as systemd stops it; panics unless it exits cleanly within 20 s.
    pub fn stop(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        // SAFETY: kill(2) on the child's pid, which this struct still owns (not yet reaped).
        unsafe { libc::kill(c.0.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = c.0.try_wait().unwrap() {
                assert!(
                    st.success(),
                    "the bridge exited with {st}: {}",
                    self.log_tail()
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the bridge did not stop within 20 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.0.try_wait().ok().flatten().is_none())
    }

    /// The HTTP API's address, once the bridge has written `bridge.json`.
    pub fn http(&self) -> SocketAddr {
        let deadline = Instant::now() + T;
        loop {
            if let Ok(b) = std::fs::read(self.dir.join("data/bridge.json")) {
                if let Ok(v) = serde_json::from_slice::<Value>(&b) {
                    if let Some(a) = v["http"].as_str().and_then(|a| a.parse().ok()) {
                        return a;
                    }
                }
            }
            assert!(Instant::now() < deadline, "no bridge.json within 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("bridge.log")).unwrap_or_default()
    }

    pub fn log_tail(&self) -> String {
        let l = self.log();
        l[l.len().saturating_sub(3000)..].to_string()
    }

    /// Every record in the journal (the bridge must be stopped).
    pub fn journal(&self) -> Vec<Record> {
        let j = ReadOnlyJournal::open(&self.dir.join("data")).expect("open the journal");
        j.read(0, usize::MAX).expect("read the journal")
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("-- the bridge's log (tail):\n{}", self.log_tail());
        }
    }
}

/// A plain HTTP/1.0 GET; the status line's code and the body.
pub fn http_get(addr: SocketAddr, path: &str, timeout: Duration) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let code = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    Ok((code, body.to_string()))
}

/// The journal holds seq 1..=n, each once, in order: nothing reused, nothing skipped.
pub fn assert_contiguous(records: &[Record]) {
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.seq, i as u64 + 1, "journal gap or reorder at index {i}");
    }
}

/// Integer values of `signal` the journal holds for the test machine.
pub fn stored_values(records: &[Record], signal: &str) -> BTreeSet<i64> {
    records
        .iter()
        .filter_map(|r| match &r.kind {
            RecordKind::Observation(o)
                if o.machine.as_str() == MACHINE && o.signal.as_str() == signal =>
            {
                match o.value {
                    shopbridge::model::Value::Int(n) => Some(n),
                    _ => None,
                }
            }
            _ => None,
        })
        .collect()
}

/// Mosquitto with two users (the host and the bridge), and the pysparkplug host subscribed.
pub struct Mqtt {
    pub port: u16,
    dir: PathBuf,
    pub broker: Option<KillOnDrop>,
    pub host: Host,
}

impl Mqtt {
    pub fn start(dir: &Path) -> Mqtt {
        let port = crate::common::free_port();
        let m = Mqtt::users(dir, true);
        let broker = Some(mosquitto(dir, port, &m));
        let host = Host::start(
            port,
            GROUP,
            &["--username", "host", "--password", "h-pw", "--no-stdin"],
        );
        Mqtt {
            port,
            dir: dir.to_path_buf(),
            broker,
            host,
        }
    }

    /// Writes the password file (with or without the bridge's user); returns mosquitto's
    /// configuration lines for it.
    fn users(dir: &Path, bridge: bool) -> String {
        let passwd = dir.join("passwd");
        let mut who = vec![("host", "h-pw")];
        if bridge {
            who.push(("bridge", "b-pw"));
        }
        write_passwd(&passwd, &who);
        format!("allow_anonymous false\npassword_file {}", passwd.display())
    }

    /// The broker goes away (SIGTERM).
    pub fn stop_broker(&mut self) {
        if let Some(b) = self.broker.take() {
            // SAFETY: kill(2) on our child's pid (not yet reaped).
            unsafe { libc::kill(b.0.id() as i32, libc::SIGTERM) };
            drop(b);
        }
    }

    /// The broker comes back, admitting the host first and the bridge only once the host has
    /// resubscribed (a backlog published before would reach no subscriber: the host's session
    /// is not persistent).
    pub fn start_broker(&mut self) {
        let conf = Mqtt::users(&self.dir, false);
        let b = mosquitto(&self.dir, self.port, &conf);
        self.host
            .until("the host resubscribed", T, |v| v["event"] == "resubscribed");
        Mqtt::users(&self.dir, true);
        // SAFETY: kill(2) on our child's pid: mosquitto rereads its password file on SIGHUP.
        unsafe { libc::kill(b.0.id() as i32, libc::SIGHUP) };
        self.broker = Some(b);
    }

    /// Values of Counts/Parts the host received for the test machine so far (births and data).
    pub fn delivered(&self) -> BTreeSet<i64> {
        self.host
            .seen
            .iter()
            .filter(|v| is(v, "DDATA", Some(MACHINE)) || is(v, "DBIRTH", Some(MACHINE)))
            .flat_map(|v| metrics(v, "Counts/Parts"))
            .filter_map(|m| m["value"].as_i64())
            .collect()
    }

    /// Waits until the host has received part `n` or a later one.
    pub fn until_part(&mut self, n: i64, within: Duration) {
        if self.delivered().last().is_some_and(|m| *m >= n) {
            return;
        }
        self.host.until(&format!("part {n}"), within, |v| {
            (is(v, "DDATA", Some(MACHINE)) || is(v, "DBIRTH", Some(MACHINE)))
                && metrics(v, "Counts/Parts")
                    .iter()
                    .any(|m| m["value"].as_i64() >= Some(n))
        });
    }

    /// The bdSeq of each NBIRTH the host saw, in order.
    pub fn bdseqs(&self) -> Vec<i64> {
        self.host
            .seen
            .iter()
            .filter(|v| is(v, "NBIRTH", None))
            .filter_map(|v| {
                metrics(v, "bdSeq")
                    .first()
                    .and_then(|m| m["value"].as_i64())
            })
            .collect()
    }
}

/// Writes `|PartCount|n` (n = 1, 2, …) to the adapter's current connection every `period`,
/// each line stamped with the machine's clock (the wall clock plus `skew`, which a test may
/// move). Keeps the numbers whose line was handed to a connection.
pub struct Feeder {
    stop: Arc<AtomicBool>,
    pub skew_micros: Arc<AtomicI64>,
    pub last: Arc<AtomicI64>,
    written: Arc<Mutex<Vec<i64>>>,
    thread: Option<JoinHandle<()>>,
}

impl Feeder {
    pub fn start(adapter: &Adapter, period: Duration) -> Feeder {
        let stop = Arc::new(AtomicBool::new(false));
        let skew_micros = Arc::new(AtomicI64::new(0));
        let last = Arc::new(AtomicI64::new(0));
        let written: Arc<Mutex<Vec<i64>>> = Arc::default();
        let sock = adapter.sock.clone();
        let thread = {
            let (stop, skew, last, written) = (
                stop.clone(),
                skew_micros.clone(),
                last.clone(),
                written.clone(),
            );
            std::thread::spawn(move || {
                let mut n = 0i64;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let now = shopbridge::clock::Clock::system().now();
                    let at = shopbridge::model::Timestamp::from_micros(
                        now.as_micros() + skew.load(Ordering::SeqCst),
                    );
                    let line = format!("{at}|PartCount|{n}\n");
                    let mut g = sock.lock().unwrap();
                    let ok = g
                        .as_mut()
                        .is_some_and(|s| s.write_all(line.as_bytes()).is_ok());
                    drop(g);
                    // Without a connection the number is not offered; the machine's counter
                    // goes on all the same.
                    if ok {
                        written.lock().unwrap().push(n);
                        last.store(n, Ordering::SeqCst);
                    }
                    std::thread::sleep(period);
                }
            })
        };
        Feeder {
            stop,
            skew_micros,
            last,
            written,
            thread: Some(thread),
        }
    }

    /// Stops writing; the numbers written.
    pub fn stop(&mut self) -> Vec<i64> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        self.written.lock().unwrap().clone()
    }
}

impl Drop for Feeder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// A TCP relay between the bridge and a machine that drops every connection through it every
/// `period` (both directions shut down at once, as a pulled cable or a rebooted switch does).
/// Everything it handed on toward the bridge is kept, so a test knows what crossed the link.
pub struct Chaos {
    pub addr: SocketAddr,
    pub to_bridge: Arc<Mutex<Vec<u8>>>,
    pub drops: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Chaos {
    pub fn start(target: SocketAddr, period: Duration) -> Chaos {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let to_bridge: Arc<Mutex<Vec<u8>>> = Arc::default();
        let drops = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let live: Arc<Mutex<Vec<(TcpStream, TcpStream)>>> = Arc::default();
        {
            let (live, to_bridge) = (live.clone(), to_bridge.clone());
            // Accepts for the rest of the test (the thread ends with the test process).
            std::thread::spawn(move || {
                for client in listener.incoming() {
                    let Ok(client) = client else { continue };
                    let Ok(server) = TcpStream::connect(target) else {
                        continue;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    live.lock()
                        .unwrap()
                        .push((client.try_clone().unwrap(), server.try_clone().unwrap()));
                    pump(
                        client.try_clone().unwrap(),
                        server.try_clone().unwrap(),
                        None,
                    );
                    pump(server, client, Some(to_bridge.clone()));
                }
            });
        }
        {
            let (live, drops, stop) = (live.clone(), drops.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    std::thread::sleep(period);
                    let pairs: Vec<_> = live.lock().unwrap().drain(..).collect();
                    for (c, s) in pairs {
                        let _ = c.shutdown(Shutdown::Both);
                        let _ = s.shutdown(Shutdown::Both);
                        drops.fetch_add(1, Ordering::SeqCst);
                    }
                }
                for (c, s) in live.lock().unwrap().drain(..) {
                    let _ = c.shutdown(Shutdown::Both);
                    let _ = s.shutdown(Shutdown::Both);
                }
            });
        }
        Chaos {
            addr,
            to_bridge,
            drops,
            stop,
        }
    }

    /// Stops dropping: the connection up now, and those made from now on, stay up.
    pub fn calm(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// The complete lines that crossed toward the bridge.
    pub fn lines_to_bridge(&self) -> Vec<String> {
        let b = self.to_bridge.lock().unwrap();
        let text = String::from_utf8_lossy(&b);
        let mut lines: Vec<String> = text.split('\n').map(str::to_string).collect();
        lines.pop(); // what follows the last newline is not a complete line
        lines
    }
}

/// Copies `from` to `to` on a thread until either side closes; what reached `to` is appended
/// to `log`.
fn pump(mut from: TcpStream, mut to: TcpStream, log: Option<Arc<Mutex<Vec<u8>>>>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
            if let Some(l) = &log {
                l.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

/// The part numbers in SHDR lines.
pub fn parts_in(lines: &[String]) -> BTreeSet<i64> {
    lines
        .iter()
        .filter_map(|l| {
            let mut f = l.split('|');
            f.position(|x| x == "PartCount")?;
            f.next()?.trim().parse().ok()
        })
        .collect()
}

/// The standard SHDR machine the rows use, on `adapter`.
pub fn shdr_machine(adapter: &str) -> String {
    format!(
        "[[machines]]\nid = \"{MACHINE}\"\nname = \"Mill 1\"\nprofile = \"mtconnect-generic\"\n\
         driver = {{ type = \"shdr\", address = \"{adapter}\" }}\n"
    )
}

/// Counts a row from what was offered, stored and delivered: lost = offered but not stored,
/// plus stored but never delivered.
pub fn count(
    offered: &BTreeSet<i64>,
    stored: &BTreeSet<i64>,
    delivered: &BTreeSet<i64>,
) -> (usize, usize, usize, usize) {
    let s = offered.intersection(stored).count();
    let d = offered.intersection(delivered).count();
    let lost = offered.difference(stored).count() + stored.difference(delivered).count();
    (offered.len(), s, d, lost)
}

/// The rows built on one SHDR machine: a bridge reading the test's adapter and publishing
/// Sparkplug to Mosquitto, watched by the pysparkplug host.
pub struct ShdrRig {
    pub mqtt: Mqtt,
    pub adapter: Adapter,
    pub bridge: Bridge,
    pub dir: tempfile::TempDir,
}

/// What a row ends with: the journal (checked contiguous), the parts written, and the counts
/// (offered, stored, delivered, lost) with everything written as offered.
pub struct Finished {
    pub records: Vec<Record>,
    pub written: Vec<i64>,
    pub counts: (usize, usize, usize, usize),
}

impl ShdrRig {
    /// In a new directory; `journal` adds `[journal]` keys, `sections` whole sections.
    pub fn start(journal: &str, sections: &str) -> ShdrRig {
        ShdrRig::start_in(tempfile::tempdir().unwrap(), journal, sections)
    }

    pub fn start_in(dir: tempfile::TempDir, journal: &str, sections: &str) -> ShdrRig {
        let mqtt = Mqtt::start(dir.path());
        let adapter = Adapter::new();
        adapter.accept_forever();
        Bridge::configure_with(
            dir.path(),
            Some(mqtt.port),
            journal,
            &format!("{sections}{}", shdr_machine(&adapter.address())),
        );
        let bridge = Bridge::start(dir.path());
        ShdrRig {
            mqtt,
            adapter,
            bridge,
            dir,
        }
    }

    /// Stops `feeder`, waits (up to `within`) until its last part reached the host, stops the
    /// bridge and reads the journal back.
    pub fn finish(&mut self, feeder: &mut Feeder, within: Duration) -> Finished {
        let written = feeder.stop();
        let last = *written.last().expect("parts were written");
        self.mqtt.until_part(last, within);
        self.bridge.stop();
        let records = self.bridge.journal();
        assert_contiguous(&records);
        let stored = stored_values(&records, "part_count");
        let offered = written.iter().copied().collect();
        let counts = count(&offered, &stored, &self.mqtt.delivered());
        Finished {
            records,
            written,
            counts,
        }
    }
}
