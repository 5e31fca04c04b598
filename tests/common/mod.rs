//! Helpers the integration tests share (each test file is its own crate and uses what it needs).
#![allow(dead_code)] // each test crate uses the helpers it needs

use std::net::TcpListener;
use std::process::Child;

/// Kills a child process when the test ends, passing or failing, so none is left behind.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// Where a starting `shopbridge demo` or `run` says it listens: reads its standard output (on
/// a thread, draining it afterwards) until it has announced its HTTP API and, when
/// `want_opcua`, its OPC UA endpoint. Panics after 60 s without them.
pub fn announced(stdout: std::process::ChildStdout, want_opcua: bool) -> (String, Option<String>) {
    use std::io::{BufRead, BufReader};
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut http = None;
        let mut sent = false;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(i) = line.find("http://") {
                if line.contains("/api/v1/machines") {
                    http = Some(line[i..].trim_end_matches("/api/v1/machines").to_string());
                }
            }
            let opcua = line.find("opc.tcp://").map(|i| {
                line[i..]
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_string()
            });
            if let (false, Some(h)) = (sent, &http) {
                if !want_opcua || opcua.is_some() {
                    let _ = tx.send((h.clone(), opcua));
                    sent = true;
                }
            }
        }
    });
    rx.recv_timeout(std::time::Duration::from_secs(60))
        .expect("the bridge announced where it listens")
}

/// A pseudo-terminal pair: the master side (for the simulated device, as an async file), the
/// slave side's descriptor (keep it open while the test runs), and the slave's path (what a
/// driver opens, as it would open /dev/ttyUSB0).
pub fn pty() -> (tokio::fs::File, std::os::fd::OwnedFd, String) {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty writes two file descriptors it opened; no name, termios or winsize.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both are open descriptors this test owns from here on.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let path = std::fs::read_link(format!("/proc/self/fd/{}", slave.as_raw_fd()))
        .unwrap_or_else(|e| panic!("slave path: {e}"));
    let master = tokio::fs::File::from_std(std::fs::File::from(master));
    (master, slave, path.to_string_lossy().into_owned())
}

/// The last value (and its quality) a driver sent for `key`.
pub fn last_value<'a>(
    events: &'a [shopbridge::drivers::DriverEvent],
    key: &str,
) -> Option<(&'a shopbridge::model::Value, shopbridge::model::Quality)> {
    events.iter().rev().find_map(|e| match e {
        shopbridge::drivers::DriverEvent::Observation(o) if o.key.as_str() == key => {
            Some((&o.value, o.quality))
        }
        _ => None,
    })
}

/// How many link events with `status` a driver sent.
pub fn link_events(
    events: &[shopbridge::drivers::DriverEvent],
    status: shopbridge::model::LinkStatus,
) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, shopbridge::drivers::DriverEvent::Link { status: s, .. } if *s == status))
        .count()
}

/// A bridge run in this process on the demo configuration of `machines` (a simulated shop's
/// `machine_configs()`), its journal in `dir`, on `clock`; `stop` ends it and waits for it.
pub struct InProcessBridge {
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<Result<(), shopbridge::app::AppError>>,
}

impl InProcessBridge {
    pub fn start(
        machines: Vec<shopbridge::config::MachineConfig>,
        dir: &std::path::Path,
        clock: &shopbridge::clock::Clock,
        opts: &shopbridge::sim::shop::ShopOptions,
    ) -> InProcessBridge {
        let cfg = shopbridge::config::Config::demo(
            machines,
            dir.to_path_buf(),
            std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 0)),
            clock.speed(),
            opts.seed,
            opts.shop_offset_micros,
        );
        let stop = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn(shopbridge::app::run(
            cfg,
            shopbridge::app::RunOptions {
                clock: clock.clone(),
                announce: false,
                http_bound: None,
            },
            stop.clone(),
        ));
        InProcessBridge { stop, task }
    }

    pub async fn stop(self) {
        self.stop.cancel();
        self.task
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

/// A tool the README's test command installs (`pip install --user` puts scripts in
/// ~/.local/bin, which may not be on PATH); panics saying how to install it.
pub fn tool(name: &str) -> std::path::PathBuf {
    let local =
        std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".local/bin").join(name));
    let on_path = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|c| c.is_file())
    });
    on_path
        .or(local.filter(|p| p.is_file()))
        .unwrap_or_else(|| panic!("{name} is not installed: run ./scripts/test, which installs it"))
}

/// Starts `shopbridge demo` with `args` on free ports in `dir`; returns the process and the
/// HTTP base URL once the bridge announced it.
pub fn demo(dir: &std::path::Path, args: &[&str]) -> (KillOnDrop, String) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_shopbridge"))
        .arg("demo")
        .args(args)
        .args([
            "--http-port",
            "0",
            "--opcua-port",
            "0",
            "--mqtt-port",
            "0",
            "--data-dir",
        ])
        .arg(dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("start the demo");
    let stdout = child.stdout.take().expect("stdout");
    let (base, _) = announced(stdout, false);
    (KillOnDrop(child), base)
}

/// Waits until the bridge's interval index has read the journal (`/api/v1/intervals` answers).
pub async fn index_ready(base: &str) {
    let c = reqwest::Client::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let r = c
            .get(format!("{base}/api/v1/intervals?limit=1"))
            .send()
            .await;
        if r.is_ok_and(|r| r.status().is_success()) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the interval index never became ready"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
pub mod modbus;
pub mod mqtt;
