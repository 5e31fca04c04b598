//! Out-of-process plugins through a whole bridge: the Python Heidenhain LSV2 plugin (on PyPI
//! `pylsv2`) reading our LSV2 simulator, configured from a TOML file as a user writes it; and
//! a plugin that breaks the rules (another machine's records, garbage, no pongs) being refused
//! and restarted.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use shopbridge::clock::Clock;
use shopbridge::journal::ReadOnlyJournal;
use shopbridge::model::{Execution, LinkStatus, RecordKind};

const EXAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/plugins/examples/heidenhain-lsv2"
);

fn lsv2_sim() -> (common::KillOnDrop, u16) {
    let mut child = Command::new("python3")
        .arg(format!("{EXAMPLE}/lsv2_sim.py"))
        .args(["--port", "0", "--speed", "20", "--seed", "3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start lsv2_sim.py");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("the simulator says where it listens");
    let port = line
        .trim()
        .strip_prefix("LISTENING ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    (common::KillOnDrop(child), port)
}

fn config(dir: &std::path::Path, body: &str) -> shopbridge::config::Config {
    let path = dir.join("shopbridge.toml");
    std::fs::write(
        &path,
        format!(
            "[journal]\ndir = \"{}\"\n[http]\nlisten = \"127.0.0.1:0\"\n{body}",
            dir.join("data").display()
        ),
    )
    .unwrap();
    shopbridge::config::load_with_env(&path, Vec::<(String, String)>::new())
        .unwrap_or_else(|e| panic!("{e}"))
}

async fn run_for(cfg: shopbridge::config::Config, secs: u64) {
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(shopbridge::app::run(
        cfg,
        shopbridge::app::RunOptions {
            clock: Clock::system(),
            announce: false,
            http_bound: None,
        },
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heidenhain_through_the_python_plugin() {
    let (_sim, port) = lsv2_sim();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &format!(
            r#"
[[plugins]]
id = "lsv2"
command = "python3"
args = ["{EXAMPLE}/heidenhain_lsv2.py"]
health_interval = "1s"
[plugins.limits]
memory = "512MiB"
open_files = 256

[[machines]]
id = "tnc-1"
name = "DMU 50 (TNC 640)"
profile = "heidenhain-lsv2"
[machines.driver]
type = "plugin"
plugin = "lsv2"
settings = {{ address = "127.0.0.1:{port}", interval = 0.2 }}
"#
        ),
    );
    run_for(cfg, 25).await;
    let journal = ReadOnlyJournal::open(&dir.path().join("data")).unwrap();
    let records = journal.read(0, usize::MAX).unwrap();
    assert!(
        records
            .iter()
            .any(|r| matches!(&r.kind, RecordKind::Link(l) if l.status == LinkStatus::Connected)),
        "the plugin never reported the control connected"
    );
    let signals: std::collections::BTreeSet<String> = records
        .iter()
        .filter_map(|r| match &r.kind {
            RecordKind::Observation(o) => Some(o.signal.to_string()),
            _ => None,
        })
        .collect();
    for s in ["tnc_mode", "program_status", "program", "feed_override"] {
        assert!(signals.contains(s), "no {s} recorded; signals: {signals:?}");
    }
    let executions: Vec<Option<Execution>> = records
        .iter()
        .filter_map(|r| match &r.kind {
            RecordKind::StateChange(s) => Some(s.state.execution),
            _ => None,
        })
        .collect();
    assert!(
        executions.contains(&Some(Execution::Active)),
        "the TNC never ran a program: {executions:?}"
    );
}

/// A plugin (a shell script) that writes for a machine that is not its own, writes garbage,
/// and never answers pings: its good lines are taken, the rest refused, and it is restarted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_breaks_the_rules_is_contained() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("rogue.sh");
    std::fs::write(
        &script,
        r#"#!/bin/sh
echo '{"type":"hello","protocol":1,"name":"rogue","version":"0"}'
echo '{"type":"link","machine":"m1","status":"connected"}'
echo '{"type":"obs","machine":"m1","key":"execution","value":"ACTIVE"}'
echo '{"type":"obs","machine":"someone-else","key":"execution","value":"ACTIVE"}'
echo 'this is not json'
echo '{"type":"obs","machine":"m1","key":"program","value":"O1234"}'
sleep 30
"#,
    )
    .unwrap();
    let cfg = config(
        dir.path(),
        &format!(
            r#"
[[plugins]]
id = "rogue"
command = "sh"
args = ["{}"]
health_interval = "1s"
health_timeout = "1s"

[[machines]]
id = "m1"
name = "M1"
profile = "mtconnect-generic"
[machines.driver]
type = "plugin"
plugin = "rogue"
"#,
            script.display()
        ),
    );
    // Silent after 1 s, declared dead 1 s later, given 5 s to exit, then started again.
    run_for(cfg, 12).await;
    let journal = ReadOnlyJournal::open(&dir.path().join("data")).unwrap();
    let records = journal.read(0, usize::MAX).unwrap();
    assert!(records.iter().all(|r| r.kind.machine().as_str() == "m1"));
    let lost: Vec<String> = records
        .iter()
        .filter_map(|r| match &r.kind {
            RecordKind::Link(l) if l.status == LinkStatus::Lost => l.detail.clone(),
            _ => None,
        })
        .collect();
    assert!(
        lost.iter().any(|d| d.contains("no pong")),
        "not restarted for its silence: {lost:?}"
    );
    let connected = records
        .iter()
        .filter(|r| matches!(&r.kind, RecordKind::Link(l) if l.status == LinkStatus::Connected))
        .count();
    assert!(connected >= 2, "not started again: {connected} connects");
    assert!(
        records.iter().any(
            |r| matches!(&r.kind, RecordKind::Observation(o) if o.signal.as_str() == "program")
        )
    );
}
