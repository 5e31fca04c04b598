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
    family_indices(crate::sim::serve::HAAS_PROFILE, n)
}

/// The simulated shop's machine indices of one profile family, the first `n` of them.
pub(super) fn family_indices(profile: &str, n: usize) -> Vec<usize> {
    (0..)
        .filter(|i| crate::sim::model_of(*i).profile == profile)
        .take(n)
        .collect()
}

/// The first port of `n` consecutive ports on 127.0.0.1 that are free right now.
pub(super) fn free_port_range(n: usize) -> Option<u16> {
    (20_000u16..60_000)
        .step_by(1_500)
        .find(|b| (0..n as u16).all(|i| std::net::TcpListener::bind(("127.0.0.1", b + i)).is_ok()))
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
    let base =
        free_port_range(shop_size).context("no free range of ports for the simulated controls")?;
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

#[derive(Debug, Args)]
pub struct ModbusArgs {
    /// Modbus TCP devices polled (each its own connection).
    #[arg(long, default_value_t = 100)]
    pub devices: usize,
    /// Holding registers per device (read with coalescing: 125 per request).
    #[arg(long, default_value_t = 250)]
    pub registers: u16,
    /// Seconds between two polls of a device.
    #[arg(long, default_value_t = 0.1)]
    pub interval: f64,
    /// Seconds measured (after a 5 s warm-up).
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
}

/// `shopbridge bench modbus-devices`: the devices of `bench modbus`, run in a child process.
#[derive(Debug, Args)]
pub struct ModbusDevicesArgs {
    #[arg(long)]
    pub devices: usize,
    #[arg(long)]
    pub registers: u16,
    #[arg(long)]
    pub base_port: u16,
}

/// A bench device: holding registers 0..n, a tenth of them changing once a second.
#[derive(Clone)]
struct BenchDevice {
    registers: u16,
    start: Instant,
}

impl tokio_modbus::server::Service for BenchDevice {
    type Request = tokio_modbus::Request<'static>;
    type Response = tokio_modbus::Response;
    type Exception = tokio_modbus::ExceptionCode;
    type Future = std::future::Ready<Result<Self::Response, Self::Exception>>;

    fn call(&self, req: Self::Request) -> Self::Future {
        use tokio_modbus::{ExceptionCode, Request, Response};
        let secs = self.start.elapsed().as_secs() as u16;
        std::future::ready(match req {
            Request::ReadHoldingRegisters(a, n)
                if n > 0 && u32::from(a) + u32::from(n) <= u32::from(self.registers) =>
            {
                Ok(Response::ReadHoldingRegisters(
                    (a..a + n)
                        .map(|r| if r % 10 == 0 { r.wrapping_add(secs) } else { r })
                        .collect(),
                ))
            }
            Request::ReadHoldingRegisters(..) => Err(ExceptionCode::IllegalDataAddress),
            _ => Err(ExceptionCode::IllegalFunction),
        })
    }
}

pub fn modbus_devices(a: ModbusDevicesArgs) -> anyhow::Result<i32> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let device = BenchDevice {
            registers: a.registers,
            start: Instant::now(),
        };
        let mut servers = Vec::new();
        for i in 0..a.devices {
            let port = a.base_port + i as u16;
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
                .await
                .with_context(|| format!("cannot listen on 127.0.0.1:{port}"))?;
            let device = device.clone();
            servers.push(tokio::spawn(async move {
                let on_connected = |stream, addr| {
                    let device = device.clone();
                    async move {
                        tokio_modbus::server::tcp::accept_tcp_connection(stream, addr, |_| {
                            Ok(Some(device.clone()))
                        })
                    }
                };
                let _ = tokio_modbus::server::tcp::Server::new(listener)
                    .serve(&on_connected, |_| {})
                    .await;
            }));
        }
        println!("ready");
        for s in servers {
            let _ = s.await;
        }
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(0)
}

pub fn modbus(a: ModbusArgs) -> anyhow::Result<i32> {
    use std::io::BufRead;
    anyhow::ensure!((1..=1000).contains(&a.devices), "--devices must be 1-1000");
    anyhow::ensure!(a.registers >= 1, "--registers must be at least 1");
    anyhow::ensure!(
        a.interval > 0.0 && a.interval.is_finite(),
        "--interval must be a positive number of seconds"
    );
    let base = free_port_range(a.devices).context("no free range of ports for the devices")?;
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let mut child = Command::new(exe)
        .args([
            "bench",
            "modbus-devices",
            "--devices",
            &a.devices.to_string(),
            "--registers",
            &a.registers.to_string(),
            "--base-port",
            &base.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot start the bench devices")?;
    let ready = child
        .stdout
        .take()
        .and_then(|o| std::io::BufReader::new(o).lines().next())
        .and_then(Result::ok);
    if ready.as_deref() != Some("ready") {
        stop_child(&mut child);
        anyhow::bail!("the bench devices did not start");
    }
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(measure_modbus(&a, base));
    stop_child(&mut child);
    result?;
    Ok(0)
}

async fn measure_modbus(a: &ModbusArgs, base: u16) -> anyhow::Result<()> {
    use crate::drivers::modbus::map::{DataType, Register, Table};
    use crate::drivers::modbus::{Modbus, ModbusSpec, Transport};
    let map: Arc<[Register]> = (0..a.registers)
        .map(|r| Register::new(&format!("hr{r}"), Table::Holding, r, DataType::U16))
        .collect();
    let (tx, mut rx) = mpsc::channel::<DriverBatch>(1024);
    let stop = CancellationToken::new();
    let timing = Timing {
        interval: Duration::from_secs_f64(a.interval),
        connect_timeout: Duration::from_secs(5),
    };
    let mut counters = Vec::new();
    let mut requests_per_poll = 0;
    for i in 0..a.devices {
        let addr = format!("127.0.0.1:{}", base + i as u16);
        let c = DriverCounters::new("modbus", addr.clone());
        counters.push(c.clone());
        let ctx = DriverContext {
            machines: vec![MachineId::new(&format!("plc-{i:03}"))?],
            tx: tx.clone(),
            shutdown: stop.clone(),
            clock: Clock::system(),
            counters: c,
        };
        let poller = Modbus::new(ModbusSpec {
            transport: Transport::Tcp(addr),
            unit: 1,
            timeout: Duration::from_secs(2),
            map: map.clone(),
        });
        requests_per_poll = poller.requests();
        tokio::spawn(poll::run(poller, timing, ctx));
    }
    drop(tx);
    let drain = tokio::spawn(async move {
        let mut observations = 0u64;
        while let Some(batch) = rx.recv().await {
            observations += batch
                .iter()
                .filter(|e| matches!(e, DriverEvent::Observation(_)))
                .count() as u64;
        }
        observations
    });
    let requests = || -> u64 {
        counters
            .iter()
            .map(|c| c.messages.load(std::sync::atomic::Ordering::Relaxed))
            .sum()
    };
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (r0, cpu0, t0) = (requests(), cpu_seconds(), Instant::now());
    tokio::time::sleep(Duration::from_secs(a.seconds)).await;
    let (r1, cpu1, wall) = (requests(), cpu_seconds(), t0.elapsed().as_secs_f64());
    stop.cancel();
    let observations = drain.await?;
    let errors: u64 = counters
        .iter()
        .map(|c| c.link_errors.load(std::sync::atomic::Ordering::Relaxed))
        .sum();
    let req_rate = (r1 - r0) as f64 / wall;
    let regs_per_request = f64::from(a.registers) / requests_per_poll.max(1) as f64;
    println!(
        "modbus polling: {} Modbus TCP devices on loopback (a child process of tokio-modbus servers), {} holding registers each in {requests_per_poll} coalesced requests, a poll every {} s, {:.0} s measured",
        a.devices, a.registers, a.interval, wall
    );
    println!(
        "  registers/s: {:.0} ({req_rate:.0} requests/s)",
        req_rate * regs_per_request
    );
    println!(
        "  bridge CPU: {:.2} % of one core (drivers, decoding, report by exception)",
        (cpu1 - cpu0) / wall * 100.0
    );
    println!(
        "  observations sent (changes only, a tenth of the registers change each second): {observations}; link errors: {errors}"
    );
    Ok(())
}
