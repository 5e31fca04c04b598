//! `tests/modbus/peer.py` (pymodbus) as a child process: Modbus TCP field devices the tests
//! set values in.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use serde_json::{Value as Json, json};

/// A running `peer.py`: its port, its stdin for commands and its stdout lines for answers.
pub struct Peer {
    child: Child,
    stdin: ChildStdin,
    lines: std_mpsc::Receiver<String>,
    pub port: u16,
}

impl Peer {
    pub fn start(map: &str) -> Peer {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/modbus/peer.py");
        let mut child = Command::new("python3")
            .args([script, "--map", map, "--port", "0"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect(
                "start python3 tests/modbus/peer.py (is pymodbus installed? run ./scripts/test)",
            );
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = std_mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let first = lines
            .recv_timeout(Duration::from_secs(30))
            .expect("the peer says where it listens");
        let port = first
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"));
        Peer {
            child,
            stdin,
            lines,
            port,
        }
    }

    pub fn send(&mut self, cmd: Json) {
        writeln!(self.stdin, "{cmd}").expect("write to the peer");
        self.stdin.flush().expect("flush");
        let answer = self
            .lines
            .recv_timeout(Duration::from_secs(30))
            .expect("the peer answers");
        assert_eq!(answer, "ok", "{cmd}");
    }

    pub fn set(&mut self, fc: u8, address: u16, values: Json) {
        self.send(json!({"set": {"unit": 1, "fc": fc, "address": address, "values": values}}));
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
