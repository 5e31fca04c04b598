//! `shopbridge bench haas`: what polling request/response controls costs the bridge.
//!
//! The controls are `shopbridge simulate` in a child process (its Haas machines' MDC ports), so
//! that this process's CPU time is the drivers' alone: the shared polling runner, the Haas
//! framing and parsing, report by exception, and the channel into the pipeline (drained here).

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::bench::{cpu_seconds, free_port, stop_child};
use crate::clock::Clock;
use crate::drivers::haas::{Haas, HaasSpec, Transport};
use crate::drivers::poll::{self, Timing};
use crate::drivers::{DriverBatch, DriverContext, DriverCounters, DriverEvent};
use crate::model::MachineId;

#[derive(Debug, Args)]
pub struct HaasArgs {
    /// Haas controls polled.
    #[arg(long, default_value_t = 50)]
    pub machines: usize,
    /// Seconds between two full query sets per control.
    #[arg(long, default_value_t = 1.0)]
    pub interval: f64,
    /// Seconds measured (after a 5 s warm-up).
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Macro variables read with Q600 each poll (besides the 13 standard queries).
    #[arg(long, default_value = "3027")]
    pub macros: Vec<u32>,
}

/// The simulated shop's machine indices that are Haas machines, the first `n` of them.
fn haas_indices(n: usize) -> Vec<usize> {
    (0..)
        .filter(|i| crate::sim::model_of(*i).profile == crate::sim::serve::HAAS_PROFILE)
        .take(n)
        .collect()
}

pub fn haas(a: HaasArgs) -> anyhow::Result<i32> {
    anyhow::ensure!(a.machines >= 1, "--machines must be at least 1");
    anyhow::ensure!(
        a.interval > 0.0 && a.interval.is_finite(),
        "--interval must be a positive number of seconds"
    );
    let indices = haas_indices(a.machines);
    let shop_size = indices.last().map_or(1, |i| i + 1);
    anyhow::ensure!(shop_size <= 1000, "at most 250 Haas machines");
    // Ports: pick a base whose range is free right now.
    let base = (20_000u16..60_000)
        .step_by(1_500)
        .find(|b| {
            (0..shop_size as u16).all(|i| std::net::TcpListener::bind(("127.0.0.1", b + i)).is_ok())
        })
        .context("no free range of ports for the simulated controls")?;
    let shdr_base = (base + 1_000u16.max(shop_size as u16 + 10)).min(64_000);
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let mut child = Command::new(exe)
        .args([
            "simulate",
            "--machines",
            &shop_size.to_string(),
            "--haas-base-port",
            &base.to_string(),
            "--shdr-base-port",
            &shdr_base.to_string(),
            "--mtconnect-port",
            &free_port()?.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot start `shopbridge simulate`")?;
    let addrs: Vec<String> = indices
        .iter()
        .map(|i| format!("127.0.0.1:{}", base + *i as u16))
        .collect();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(measure(&a, &addrs));
    stop_child(&mut child);
    result?;
    Ok(0)
}

async fn measure(a: &HaasArgs, addrs: &[String]) -> anyhow::Result<()> {
    // Wait for the controls to listen.
    let deadline = Instant::now() + Duration::from_secs(20);
    for addr in addrs {
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the simulated control at {addr} does not listen"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let (tx, mut rx) = mpsc::channel::<DriverBatch>(1024);
    let stop = CancellationToken::new();
    let counters: Vec<Arc<DriverCounters>> = addrs
        .iter()
        .map(|a| DriverCounters::new("haas", a.clone()))
        .collect();
    let timing = Timing {
        interval: Duration::from_secs_f64(a.interval),
        connect_timeout: Duration::from_secs(5),
    };
    for (i, addr) in addrs.iter().enumerate() {
        let ctx = DriverContext {
            machines: vec![MachineId::new(&format!("haas-{i:03}"))?],
            tx: tx.clone(),
            shutdown: stop.clone(),
            clock: Clock::system(),
            counters: counters[i].clone(),
        };
        let spec = HaasSpec {
            transport: Transport::Tcp(addr.clone()),
            macros: a.macros.clone(),
            timeout: Duration::from_secs(2),
        };
        tokio::spawn(poll::run(Haas::new(spec), timing, ctx));
    }
    drop(tx);
    let drain = tokio::spawn(async move {
        let (mut observations, mut links) = (0u64, 0u64);
        while let Some(batch) = rx.recv().await {
            for e in batch {
                match e {
                    DriverEvent::Observation(_) => observations += 1,
                    DriverEvent::Link { .. } => links += 1,
                    _ => {}
                }
            }
        }
        (observations, links)
    });
    let replies = || -> u64 {
        counters
            .iter()
            .map(|c| c.messages.load(std::sync::atomic::Ordering::Relaxed))
            .sum()
    };
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (r0, cpu0, t0) = (replies(), cpu_seconds(), Instant::now());
    tokio::time::sleep(Duration::from_secs(a.seconds)).await;
    let (r1, cpu1, wall) = (replies(), cpu_seconds(), t0.elapsed().as_secs_f64());
    stop.cancel();
    let (observations, links) = drain.await?;
    let errors: u64 = counters
        .iter()
        .map(|c| c.link_errors.load(std::sync::atomic::Ordering::Relaxed))
        .sum();
    let per_poll = 13 + a.macros.len() as u64;
    let rate = (r1 - r0) as f64 / wall;
    let cpu_pct = (cpu1 - cpu0) / wall * 100.0;
    println!(
        "haas MDC polling: {} controls on loopback (shopbridge simulate in a child process), a full set of {per_poll} queries every {} s per control, {:.0} s measured",
        addrs.len(),
        a.interval,
        wall
    );
    println!(
        "  replies/s: {rate:.0} ({:.2} full sets per control per second; {:.0} expected)",
        rate / per_poll as f64 / addrs.len() as f64,
        1.0 / a.interval
    );
    println!("  bridge CPU: {cpu_pct:.2} % of one core (drivers, parsing, report by exception)");
    println!(
        "  observations sent (changes only): {observations}; link events: {links}; link errors: {errors}"
    );
    Ok(())
}
