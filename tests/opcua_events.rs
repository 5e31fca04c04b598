//! A machine's alarm reaches an OPC UA client as an event, and a dropped link turns its values
//! Bad_CommunicationError, over the real path: an SHDR adapter (this test) → `shopbridge run` →
//! the OPC UA server → Python asyncua (`tests/opcua/client.py events`).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{KillOnDrop, free_port};

#[test]
fn an_alarm_becomes_an_event_and_a_dropped_link_turns_values_bad() {
    let dir = tempfile::tempdir().unwrap();
    let adapter = TcpListener::bind("127.0.0.1:0").unwrap();
    let opcua = free_port();
    let config = dir.path().join("bridge.toml");
    std::fs::write(
        &config,
        format!(
            "[journal]\ndir = {:?}\n[http]\nlisten = \"127.0.0.1:0\"\n\
             [opcua]\nlisten = \"127.0.0.1:{opcua}\"\nhostname = \"127.0.0.1\"\nsecurity_none = true\nanonymous = true\n\
             [[machines]]\nid = \"mill-1\"\nname = \"Mill 1\"\nprofile = \"mtconnect-generic\"\n\
             driver = {{ type = \"shdr\", address = \"{}\" }}\n",
            dir.path().join("data").display().to_string(),
            adapter.local_addr().unwrap()
        ),
    )
    .unwrap();
    let _bridge = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_shopbridge"))
            .args(["run", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .spawn()
            .expect("start the bridge"),
    );
    // The bridge connects to the adapter; the machine runs.
    adapter.set_nonblocking(false).unwrap();
    let (mut sock, _) = adapter.accept().unwrap();
    sock.write_all(b"|avail|AVAILABLE|execution|ACTIVE|mode|AUTOMATIC|Fovr|100\n")
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", opcua)).is_err() {
        assert!(Instant::now() < deadline, "the OPC UA server did not open");
        std::thread::sleep(Duration::from_millis(200));
    }

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/opcua/client.py");
    let url = format!("opc.tcp://127.0.0.1:{opcua}/");
    let mut client = KillOnDrop(
        Command::new("python3")
            .args([script, "events", &url, "Mill 1"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("run python3 (./scripts/test installs asyncua)"),
    );
    let mut lines = BufReader::new(client.0.stdout.take().unwrap()).lines();
    let mut next = || lines.next().and_then(Result::ok).unwrap_or_default();
    assert_eq!(next(), "subscribed", "the client could not subscribe");

    sock.write_all(b"|system|FAULT|1010|1|HIGH|Spindle overload\n")
        .unwrap();
    let event: serde_json::Value = serde_json::from_str(&next()).expect("an event");
    assert_eq!(event["source"], "Mill 1", "{event}");
    assert_eq!(event["identifier"], "system", "{event}");
    assert_eq!(event["native_code"], "1010", "{event}");
    assert_eq!(event["level"], "FAULT", "{event}");
    assert_eq!(event["severity"], 800, "{event}");
    assert_eq!(event["message"], "Spindle overload", "{event}");

    // The adapter goes away: the machine's values keep their last value, Bad_CommunicationError.
    drop(sock);
    drop(adapter);
    let lost: serde_json::Value = serde_json::from_str(&next()).expect("the link-loss report");
    assert_eq!(lost["link_lost_status"], "BadCommunicationError", "{lost}");
    let status = client.0.wait().unwrap();
    assert!(status.success());
}
