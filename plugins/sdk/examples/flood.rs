//! A benchmark plugin: after `init` it writes observations as fast as it can, then idles,
//! answering pings, until the bridge shuts it down.
//!
//! Settings (plugin-wide, all optional):
//! - `count`: stop after this many observations;
//! - `seconds`: stop after this many seconds (default 5 when `count` is not given either);
//! - `batch`: observations written per lock of the output (default 1024).
//!
//! It cycles over the init's machines and 20 keys: counters (int), analog values (float) and
//! states (text). When done it prints `flood: N observations in S s (R obs/s)` to stderr.
//!
//! Run it alone: `echo '{"type":"init","protocol":1,"plugin":"flood","settings":{"count":1000000},
//! "machines":[{"id":"m1"}]}' | cargo run --release --example flood > /dev/null`

use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde::Deserialize;
use shopbridge_plugin_sdk::{Plugin, Value};

#[derive(Debug, Default, Deserialize)]
struct Settings {
    count: Option<u64>,
    seconds: Option<f64>,
    batch: Option<u32>,
}

const INT_KEYS: [&str; 7] = [
    "part_count",
    "cycle_count",
    "tool_number",
    "line_number",
    "alarm_count",
    "pallet",
    "spindle_hours",
];
const FLOAT_KEYS: [&str; 8] = [
    "spindle_speed",
    "spindle_load",
    "feed_rate",
    "x_position",
    "y_position",
    "z_position",
    "coolant_temp",
    "power_kw",
];
const TEXT_KEYS: [&str; 5] = ["execution", "mode", "program", "door", "operator_message"];
const TEXTS: [&str; 6] = [
    "ACTIVE",
    "READY",
    "FEED_HOLD",
    "O1234 (BRACKET-2)",
    "AUTOMATIC",
    "open \"B\" side",
];

fn main() -> ExitCode {
    let session = match Plugin::new("flood", env!("CARGO_PKG_VERSION")).start() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("flood: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let settings: Settings = match session.init().settings_as() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("flood: bad settings: {e}");
            return ExitCode::FAILURE;
        }
    };
    let machines: Vec<&str> = session
        .init()
        .machines
        .iter()
        .map(|m| m.id.as_str())
        .collect();
    if machines.is_empty() {
        eprintln!("flood: init lists no machines; nothing to do");
    }
    let limit_count = settings.count.unwrap_or(u64::MAX);
    let limit_time = match (settings.count, settings.seconds) {
        (_, Some(s)) if s.is_finite() && s > 0.0 => Duration::from_secs_f64(s),
        (Some(_), None) => Duration::MAX,
        _ => Duration::from_secs(5),
    };
    let batch = u64::from(settings.batch.unwrap_or(1024).max(1));

    let out = session.emitter();
    let shutdown = session.shutdown();
    let start = Instant::now();
    let mut sent = 0u64;
    let keys = INT_KEYS.len() + FLOAT_KEYS.len() + TEXT_KEYS.len();
    let result = (|| {
        for m in &machines {
            out.link_connected(m)?;
        }
        while !machines.is_empty()
            && sent < limit_count
            && start.elapsed() < limit_time
            && !shutdown.is_requested()
        {
            let n = batch.min(limit_count - sent);
            out.batch(|b| {
                for i in sent..sent + n {
                    let machine = machines[(i as usize / keys) % machines.len()];
                    let k = i as usize % keys;
                    let (key, value) = if k < INT_KEYS.len() {
                        (INT_KEYS[k], Value::Int((i / keys as u64) as i64))
                    } else if k < INT_KEYS.len() + FLOAT_KEYS.len() {
                        let f = (i % 10_000) as f64 * 0.25 + 0.125;
                        (FLOAT_KEYS[k - INT_KEYS.len()], Value::Float(f))
                    } else {
                        let t = TEXTS[(i / keys as u64) as usize % TEXTS.len()];
                        (
                            TEXT_KEYS[k - INT_KEYS.len() - FLOAT_KEYS.len()],
                            Value::from(t),
                        )
                    };
                    b.obs(machine, key, value)?;
                }
                Ok(())
            })?;
            sent += n;
        }
        out.flush()
    })();
    let secs = start.elapsed().as_secs_f64();
    if let Err(e) = result {
        eprintln!("flood: stdout closed after {sent} observations: {e}");
        return ExitCode::FAILURE;
    }
    eprintln!(
        "flood: {sent} observations in {secs:.3} s ({:.0} obs/s)",
        sent as f64 / secs.max(1e-9)
    );
    // Idle, answering pings (the runtime does that), until told to stop.
    shutdown.wait();
    match session.finish() {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}
