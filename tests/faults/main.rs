//! The fault-injection suite: the whole bridge (`shopbridge run`, a child process) under the
//! faults a plant network and a shop-floor PC produce, with real peers around it (Mosquitto,
//! the independent pysparkplug host, machines speaking their wire protocols over real
//! sockets). Every fault is one row of a table: records the machines offered to the bridge,
//! stored in its journal, delivered to the Sparkplug host, and lost (the goal: 0 everywhere).
//!
//! One command runs it and prints the table (also written to `target/tmp/fault-table.md`):
//!
//! ```text
//! cargo test --test faults -- --nocapture
//! FAULTS=kill9,disk cargo test --test faults -- --nocapture    # some rows only
//! ```
//!
//! The disk-full row mounts a small tmpfs, so the suite runs as root (as CI does).

#[path = "../common/mod.rs"]
mod common;
mod rig;

mod broker;
mod clock_jump;
mod disk_full;
mod kill9;
mod links;
mod slow_http;

use std::time::{Duration, Instant};

/// One row of the table.
pub struct Row {
    pub fault: String,
    /// Records the machines handed to the bridge (written to a link it had, or held by a
    /// polled device long enough to be read).
    pub offered: usize,
    /// Of those, in the journal at the end.
    pub stored: usize,
    /// Of those, received by the Sparkplug host.
    pub delivered: usize,
    /// Offered but missing from the journal or never delivered.
    pub lost: usize,
    /// What else the row checked, or what the counts leave out.
    pub notes: String,
}

type Scenario = fn() -> Row;

const SCENARIOS: &[(&str, Scenario)] = &[
    ("kill9", kill9::run),
    ("broker", broker::run),
    ("shdr-drops", links::shdr),
    ("mtconnect-drops", links::mtconnect),
    ("agent-restart", links::agent_restart),
    ("haas-drops", links::haas),
    ("modbus-drops", links::modbus),
    ("disk", disk_full::run),
    ("disk-io", disk_full::write_fails),
    ("clock", clock_jump::run),
    ("slow-http", slow_http::run),
];

#[test]
fn faults() {
    let wanted: Option<Vec<String>> = std::env::var("FAULTS")
        .ok()
        .map(|s| s.split(',').map(|x| x.trim().to_string()).collect());
    let mut rows: Vec<(Row, Duration)> = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    for (name, scenario) in SCENARIOS {
        if wanted
            .as_ref()
            .is_some_and(|w| !w.iter().any(|x| x == name))
        {
            continue;
        }
        eprintln!("== fault {name}");
        let began = Instant::now();
        match std::panic::catch_unwind(scenario) {
            Ok(row) => {
                if row.lost > 0 {
                    failures.push(format!("{name}: {} records lost", row.lost));
                }
                eprintln!(
                    "== fault {name}: offered {} stored {} delivered {} lost {} ({:.0?})",
                    row.offered,
                    row.stored,
                    row.delivered,
                    row.lost,
                    began.elapsed()
                );
                rows.push((row, began.elapsed()));
            }
            Err(e) => {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failures.push(format!("{name}: {msg}"));
            }
        }
    }
    let mut table = String::from(
        "| fault | offered | stored | delivered | lost | took | notes |\n|---|---:|---:|---:|---:|---:|---|\n",
    );
    for (r, took) in &rows {
        table += &format!(
            "| {} | {} | {} | {} | **{}** | {:.0} s | {} |\n",
            r.fault,
            r.offered,
            r.stored,
            r.delivered,
            r.lost,
            took.as_secs_f64(),
            r.notes
        );
    }
    println!("\n{table}");
    let _ = std::fs::write(
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("fault-table.md"),
        &table,
    );
    assert!(
        failures.is_empty(),
        "faults failed:\n{}",
        failures.join("\n")
    );
}
