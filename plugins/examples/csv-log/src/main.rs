//! shopbridge plugin `csv-log`: follows the CSV log file a machine's PC writes (one file per
//! machine) and reports each new row's columns as observations.
//!
//! One thread per machine polls its file (see [`tail`]); each row becomes one observation per
//! mapped, non-empty cell (see [`row`]), stamped with the row's own time when a time column is
//! configured. The link is connected while the file is readable. Settings: see README.md.

mod config;
mod row;
mod tail;
mod timefmt;

use std::io;
use std::process::ExitCode;
use std::thread;

use shopbridge_plugin_sdk::{Emitter, Plugin, ShutdownSignal};

use config::MachineConfig;
use row::Mapper;
use tail::{Event, Follower};

fn main() -> ExitCode {
    let session = match Plugin::new("csv-log", env!("CARGO_PKG_VERSION")).start() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("csv-log: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Check every machine's settings before starting any: a config error stops the plugin
    // with a message naming the machine and the setting.
    let configs: Result<Vec<MachineConfig>, _> = session
        .init()
        .machines
        .iter()
        .map(MachineConfig::from_init)
        .collect();
    let configs = match configs {
        Ok(c) => c,
        Err(e) => {
            eprintln!("csv-log: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut workers = Vec::new();
    for cfg in configs {
        let (out, stop) = (session.emitter(), session.shutdown());
        let name = format!("csv-log {}", cfg.machine);
        match thread::Builder::new()
            .name(name)
            .spawn(move || follow(&cfg, &out, &stop))
        {
            Ok(handle) => workers.push(handle),
            Err(e) => {
                eprintln!("csv-log: cannot start a thread: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let mut failed = false;
    for w in workers {
        match w.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                eprintln!("csv-log: stdout closed, stopping: {e}");
                failed = true;
            }
            Err(_) => failed = true,
        }
    }
    if session.finish().is_err() || failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Polls one machine's file until shutdown. Returns only when stdout fails or on shutdown.
fn follow(cfg: &MachineConfig, out: &Emitter, stop: &ShutdownSignal) -> io::Result<()> {
    let machine = cfg.machine.as_str();
    let mut follower = Follower::new(cfg.path.clone(), cfg.delimiter, cfg.from_start);
    let mut mapper: Option<Mapper> = None;
    let mut events = Vec::new();
    let mut bad_times = 0u64;
    let mut bad_rows = 0u64;
    let mut warned_naive = false;
    loop {
        events.clear();
        follower.poll(&mut events);
        for event in &events {
            match event {
                Event::Opened => out.link_connected(machine)?,
                Event::Lost(detail) => {
                    mapper = None;
                    out.link_lost(machine, detail)?;
                }
                Event::Header(header) => {
                    let m = Mapper::new(header, cfg);
                    if !m.missing.is_empty() {
                        eprintln!(
                            "machine {machine}: {} has no column(s) {:?}; header is {header:?}",
                            cfg.path.display(),
                            m.missing
                        );
                    }
                    mapper = Some(m);
                }
                Event::Row(cells) => {
                    let Some(m) = &mapper else { continue };
                    let obs = m.map(cells, cfg);
                    if obs.bad_time {
                        bad_times += 1;
                        if bad_times == 1 || bad_times % 1000 == 0 {
                            eprintln!(
                                "machine {machine}: {}: {bad_times} row(s) with a time cell that \
                                 is not RFC 3339 or YYYY-MM-DD HH:MM:SS; sent without time",
                                cfg.path.display()
                            );
                        }
                    }
                    if let Some(timefmt::Parsed::Naive(_)) = &obs.time {
                        if !cfg.time_offset_given && !warned_naive {
                            warned_naive = true;
                            eprintln!(
                                "machine {machine}: times in {} carry no UTC offset and \
                                 `time_offset` is not set; they are taken as UTC",
                                cfg.path.display()
                            );
                        }
                    }
                    let time = obs.time.as_ref().map(timefmt::Parsed::text);
                    out.batch(|b| {
                        for (key, value) in &obs.values {
                            match time {
                                Some(t) => b.obs_at(machine, key, value.clone(), t)?,
                                None => b.obs(machine, key, value.clone())?,
                            }
                        }
                        Ok(())
                    })?;
                }
                Event::BadRow(detail) => {
                    bad_rows += 1;
                    if bad_rows == 1 || bad_rows % 1000 == 0 {
                        eprintln!(
                            "machine {machine}: {bad_rows} unreadable row(s); last: {detail}"
                        );
                    }
                }
            }
        }
        if stop.wait_timeout(cfg.poll) {
            return Ok(());
        }
    }
}
