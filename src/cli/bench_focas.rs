//! `shopbridge bench focas`: what polling Fanuc controls over FOCAS/Ethernet costs, and how
//! long one poll takes.
//!
//! The controls are `shopbridge simulate --focas-base-port` in a child process (its Fanuc
//! machines, alternating 0i-F and 30i-B), so that this process's CPU time is the driver's
//! alone. Each machine is polled by the real driver, one request packet per poll holding
//! status (`cnc_statinfo`), program (number, and path name on a 30i), part count (parameter
//! 6711) and alarms (`cnc_rdalmmsg`), plus the macro variables asked for; the time from
//! sending the request to having decoded the answer is one poll's latency.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use tokio_util::sync::CancellationToken;

use super::bench::{cpu_seconds, free_port, stop_child};
use crate::drivers::focas::{Focas, FocasSpec};
use crate::drivers::poll::{Poller, Readings};

#[derive(Debug, Args)]
pub struct FocasArgs {
    /// Fanuc controls polled (each its own connection).
    #[arg(long, default_value_t = 20)]
    pub machines: usize,
    /// Seconds between two polls of a control.
    #[arg(long, default_value_t = 0.1)]
    pub interval: f64,
    /// Seconds measured (after a 3 s warm-up).
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
    /// Macro variables read each poll besides status, program, part count and alarms.
    #[arg(long)]
    pub macros: Vec<u32>,
}

/// The shop's machine indices that are Fanuc machines, the first `n` of them.
fn fanuc_indices(n: usize) -> Vec<usize> {
    super::bench_polling::family_indices(crate::sim::serve::FANUC_FAMILY, n)
}

pub fn run(a: FocasArgs) -> anyhow::Result<i32> {
    anyhow::ensure!(a.machines >= 1, "--machines must be at least 1");
    anyhow::ensure!(
        a.interval > 0.0 && a.interval.is_finite(),
        "--interval must be a positive number of seconds"
    );
    let indices = fanuc_indices(a.machines);
    let shop_size = indices.last().map_or(1, |i| i + 1);
    anyhow::ensure!(shop_size <= 1000, "at most 125 Fanuc machines");
    let base = super::bench_polling::free_port_range(shop_size)
        .context("no free range of ports for the simulated controls")?;
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let mut child = Command::new(exe)
        .args([
            "simulate",
            "--machines",
            &shop_size.to_string(),
            "--focas-base-port",
            &base.to_string(),
            "--shdr-base-port",
            "0",
            "--haas-base-port",
            "0",
            "--modbus-base-port",
            "0",
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

/// Polls one control until `stop`, returning each measured poll's latency (µs) and errors.
async fn poll_one(
    addr: String,
    macros: Vec<u32>,
    interval: Duration,
    measure_from: Instant,
    stop: CancellationToken,
) -> anyhow::Result<(Vec<u64>, u64)> {
    let mut focas = Focas::new(FocasSpec {
        address: addr.clone(),
        macros,
        params: vec![],
        timeout: Duration::from_secs(2),
    });
    let mut link = focas
        .connect()
        .await
        .map_err(|e| anyhow::anyhow!("{addr}: {e}"))?;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut latencies, mut errors) = (Vec::new(), 0u64);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let mut out = Readings::default();
        let t0 = Instant::now();
        let polled = focas.poll(&mut link, &mut out).await;
        let took = t0.elapsed();
        match polled {
            Ok(()) if t0 >= measure_from => latencies.push(took.as_micros() as u64),
            Ok(()) => {}
            Err(e) => {
                errors += 1;
                tracing::warn!(source = %addr, error = %e, "poll failed; reconnecting");
                link = focas
                    .connect()
                    .await
                    .map_err(|e| anyhow::anyhow!("{addr}: {e}"))?;
            }
        }
    }
    focas.close(link).await;
    Ok((latencies, errors))
}

async fn measure(a: &FocasArgs, addrs: &[String]) -> anyhow::Result<()> {
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
    let stop = CancellationToken::new();
    let interval = Duration::from_secs_f64(a.interval);
    let warm = Duration::from_secs(3);
    let measure_from = Instant::now() + warm;
    let tasks: Vec<_> = addrs
        .iter()
        .map(|addr| {
            tokio::spawn(poll_one(
                addr.clone(),
                a.macros.clone(),
                interval,
                measure_from,
                stop.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(warm).await;
    let (cpu0, t0) = (cpu_seconds(), Instant::now());
    tokio::time::sleep(Duration::from_secs(a.seconds)).await;
    let (cpu1, wall) = (cpu_seconds(), t0.elapsed().as_secs_f64());
    stop.cancel();
    let (mut all, mut errors) = (Vec::new(), 0u64);
    for t in tasks {
        let (l, e) = t.await??;
        all.extend(l);
        errors += e;
    }
    anyhow::ensure!(!all.is_empty(), "no poll completed");
    all.sort_unstable();
    let pct = |p: f64| all[((all.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0;
    let max = all.last().copied().unwrap_or(0) as f64 / 1000.0;
    println!(
        "focas polling: {} Fanuc controls on loopback (shopbridge simulate in a child process, 0i-F and 30i-B alternating), one poll every {} s per control, {:.0} s measured",
        addrs.len(),
        a.interval,
        wall
    );
    println!(
        "  one poll = one request packet: cnc_statinfo, program number (+ path name on 30i), parameter 6711, cnc_rdalmmsg{}",
        if a.macros.is_empty() {
            String::new()
        } else {
            format!(", {} macro variable(s)", a.macros.len())
        }
    );
    println!(
        "  polls: {} ({:.0}/s); poll latency per machine: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms (goal: <= 5 ms)",
        all.len(),
        all.len() as f64 / wall,
        pct(0.5),
        pct(0.99),
        max
    );
    println!(
        "  bridge CPU: {:.2} % of one core (driver: encode, read, decode); poll errors: {errors}",
        (cpu1 - cpu0) / wall * 100.0
    );
    Ok(())
}
