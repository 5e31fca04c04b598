//! `shopbridge bench plugin`: observations per second through one plugin's pipe.
//!
//! The plugin is the SDK's `flood` example (`cargo build --release -p shopbridge-plugin-sdk
//! --example flood`), which writes observations as fast as it can for a while. The bridge's
//! plugin host reads its stdout, validates every line and turns it into raw observations, as
//! in production; this command counts what comes out of the host's channel, and the CPU this
//! process (the host) spent on it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::bench::cpu_seconds;
use crate::clock::Clock;
use crate::drivers::plugin::{Limits, PluginSpec};
use crate::drivers::{DriverBatch, DriverContext, DriverCounters, DriverEvent};
use crate::model::MachineId;

#[derive(Debug, clap::Args)]
pub struct PluginArgs {
    /// The flood plugin (default: target/release/examples/flood next to this binary's
    /// target directory).
    #[arg(long)]
    pub command: Option<PathBuf>,
    /// Machines the plugin writes for.
    #[arg(long, default_value_t = 10)]
    pub machines: usize,
    /// Observations the plugin writes.
    #[arg(long, default_value_t = 3_000_000)]
    pub count: u64,
}

fn default_flood() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    // target/<profile>/shopbridge → target/release/examples/flood
    let target = exe.parent()?.parent()?;
    let p = target.join("release/examples/flood");
    p.is_file().then_some(p)
}

pub fn run(a: PluginArgs) -> anyhow::Result<i32> {
    let command = a.command.clone().or_else(default_flood).context(
        "no flood plugin: build it with `cargo build --release -p shopbridge-plugin-sdk --example flood`, or give --command",
    )?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(measure(&a, command))
}

async fn measure(a: &PluginArgs, command: PathBuf) -> anyhow::Result<i32> {
    let machines: Vec<(MachineId, serde_json::Value)> = (0..a.machines.max(1))
        .map(|i| {
            MachineId::new(&format!("m{i:03}"))
                .map(|m| (m, serde_json::json!({})))
                .map_err(anyhow::Error::msg)
        })
        .collect::<anyhow::Result<_>>()?;
    let spec = PluginSpec {
        id: "flood".into(),
        command: command.display().to_string(),
        args: vec![],
        env: vec![],
        settings: serde_json::json!({ "count": a.count }),
        machines,
        limits: Limits::default(),
        health_interval: Duration::from_secs(10),
        health_timeout: Duration::from_secs(10),
    };
    let (tx, mut rx) = mpsc::channel::<DriverBatch>(256);
    let shutdown = CancellationToken::new();
    let counters = DriverCounters::new("plugin", "flood");
    let ctx = DriverContext {
        machines: spec.machines.iter().map(|(m, _)| m.clone()).collect(),
        tx,
        shutdown: shutdown.clone(),
        clock: Clock::system(),
        counters: counters.clone(),
    };
    let host = tokio::spawn(crate::drivers::plugin::run(spec, ctx));
    let mut received: u64 = 0;
    let mut first: Option<(Instant, f64)> = None;
    let mut last = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(120);
    while received < a.count && Instant::now() < deadline {
        let Ok(Some(batch)) = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await else {
            break;
        };
        let n = batch
            .iter()
            .filter(|e| matches!(e, DriverEvent::Observation(_)))
            .count() as u64;
        if n > 0 && first.is_none() {
            first = Some((Instant::now(), cpu_seconds()));
        }
        received += n;
        last = Instant::now();
    }
    let cpu_end = cpu_seconds();
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), host).await;
    let Some((t0, cpu0)) = first else {
        anyhow::bail!("the plugin sent nothing");
    };
    let secs = last.duration_since(t0).as_secs_f64().max(1e-6);
    let refused = counters
        .bad_input
        .load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "plugin pipe: {received} observations from one plugin ({} machines) in {secs:.2} s = {:.0} obs/s; host CPU {:.2} s ({:.0}% of one core); {refused} lines refused; {} MB read",
        a.machines,
        received as f64 / secs,
        cpu_end - cpu0,
        100.0 * (cpu_end - cpu0) / secs,
        counters.bytes.load(std::sync::atomic::Ordering::Relaxed) / 1_000_000,
    );
    Ok(if received >= a.count { 0 } else { 1 })
}
