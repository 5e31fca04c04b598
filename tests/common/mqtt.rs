//! The MQTT side of the Sparkplug tests: Mosquitto on a port of the test's own, the
//! independent pysparkplug host (`tests/sparkplug/host.py`), and an SHDR adapter the test
//! writes lines to.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::KillOnDrop;

pub fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not open port {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Mosquitto from the Debian package (in /usr/sbin, off a non-root PATH).
pub fn mosquitto(dir: &Path, port: u16, extra: &str) -> KillOnDrop {
    let bin = ["/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("mosquitto"));
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!("listener {port} 127.0.0.1\npersistence false\n{extra}\n"),
    )
    .unwrap();
    let child = Command::new(bin)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start mosquitto (./scripts/test installs it)");
    wait_for_port(port, "mosquitto");
    KillOnDrop(child)
}

/// The pysparkplug host: every line it prints, and its stdin for commands.
pub struct Host {
    pub _child: KillOnDrop,
    pub stdin: ChildStdin,
    pub lines: Receiver<Value>,
    /// Every message seen so far, in order.
    pub seen: Vec<Value>,
}

impl Host {
    pub fn start(broker: u16, group: &str, extra: &[&str]) -> Host {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sparkplug/host.py");
        Host::spawn(
            Command::new("python3")
                .arg(script)
                .args(["--broker", &format!("127.0.0.1:{broker}"), "--group", group])
                .args(["--seconds", "300"])
                .args(extra),
        )
    }

    /// Runs `cmd` (host.py with its arguments) and waits for its `ready`.
    pub fn spawn(cmd: &mut Command) -> Host {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("run python3 (./scripts/test installs pysparkplug)");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let v = serde_json::from_str(&line).unwrap_or(Value::String(line));
                if tx.send(v).is_err() {
                    return;
                }
            }
        });
        let mut h = Host {
            _child: KillOnDrop(child),
            stdin,
            lines,
            seen: Vec::new(),
        };
        h.until("the host subscribed", Duration::from_secs(30), |v| {
            v == "ready"
        });
        h
    }

    /// The next line matching `pred` (every line is also kept in `seen`).
    pub fn until(&mut self, what: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(v) => {
                    assert!(v.get("decode_error").is_none(), "host: {v}");
                    if v.get("type").is_some() {
                        assert_ne!(v["seq_ok"], false, "seq out of order: {v}");
                        assert!(
                            v.get("duplicate_aliases").is_none_or(
                                |d| d.is_null() || d.as_array().is_some_and(|a| a.is_empty())
                            ),
                            "duplicate aliases: {v}"
                        );
                    }
                    self.seen.push(v.clone());
                    if pred(&v) {
                        return v;
                    }
                }
                Err(_) => panic!(
                    "timed out waiting for {what}; the host saw (last 10): {:#?}",
                    &self.seen[self.seen.len().saturating_sub(10)..]
                ),
            }
        }
    }

    pub fn send(&mut self, cmd: Value) {
        writeln!(self.stdin, "{cmd}").unwrap();
        self.stdin.flush().unwrap();
    }
}

pub fn is(v: &Value, kind: &str, device: Option<&str>) -> bool {
    v["type"] == kind && device.is_none_or(|d| v["device"] == d)
}

pub fn metric<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    metrics(v, name).into_iter().next()
}

/// Every value of metric `name` in a message (a DDATA may carry several, in time order).
pub fn metrics<'a>(v: &'a Value, name: &str) -> Vec<&'a Value> {
    v["metrics"]
        .as_array()
        .map(|a| a.iter().filter(|m| m["name"] == name).collect())
        .unwrap_or_default()
}

/// The test's SHDR adapter for machine `mill-1`: answers the bridge's pings, writes lines.
pub struct Adapter {
    pub listener: TcpListener,
    pub sock: Arc<Mutex<Option<TcpStream>>>,
}

impl Adapter {
    pub fn new() -> Adapter {
        Adapter {
            listener: TcpListener::bind("127.0.0.1:0").unwrap(),
            sock: Arc::new(Mutex::new(None)),
        }
    }

    pub fn address(&self) -> String {
        self.listener.local_addr().unwrap().to_string()
    }

    /// Waits for the bridge to connect; pings are answered from then on.
    pub fn accept(&self) {
        let (s, _) = self.listener.accept().unwrap();
        Adapter::adopt(s, &self.sock);
    }

    /// Accepts every connection the bridge makes from now on, on a thread: a reconnect (after a
    /// restart or a dropped link) replaces the connection lines are written to.
    pub fn accept_forever(&self) {
        let listener = self.listener.try_clone().unwrap();
        let sock = self.sock.clone();
        std::thread::spawn(move || {
            for s in listener.incoming() {
                let Ok(s) = s else { return };
                Adapter::adopt(s, &sock);
            }
        });
    }

    /// Makes `s` the connection lines go to, and answers the pings that arrive on it.
    fn adopt(s: TcpStream, slot: &Arc<Mutex<Option<TcpStream>>>) {
        let reader = s.try_clone().unwrap();
        *slot.lock().unwrap() = Some(s);
        let sock = slot.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 1024];
            let mut r = reader;
            loop {
                match r.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) if buf[..n].windows(6).any(|w| w == b"* PING") => {
                        if let Some(s) = sock.lock().unwrap().as_mut() {
                            let _ = s.write_all(b"* PONG 10000\n");
                        }
                    }
                    Ok(_) => {}
                }
            }
        });
    }

    pub fn write(&self, line: &str) {
        let mut g = self.sock.lock().unwrap();
        let s = g.as_mut().expect("the bridge is connected");
        s.write_all(line.as_bytes()).unwrap();
        s.write_all(b"\n").unwrap();
    }

    pub fn hang_up(&self) {
        if let Some(s) = self.sock.lock().unwrap().take() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// Writes Mosquitto's password file `passwd` with these users (replacing it).
pub fn write_passwd(passwd: &Path, who: &[(&str, &str)]) {
    let _ = std::fs::remove_file(passwd);
    for (i, (u, p)) in who.iter().enumerate() {
        let mut c = Command::new("mosquitto_passwd");
        if i == 0 {
            c.arg("-c");
        }
        let ok = c.arg("-b").arg(passwd).args([u, p]).status().unwrap();
        assert!(ok.success(), "mosquitto_passwd");
    }
}
