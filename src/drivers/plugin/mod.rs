//! Out-of-process drivers: a plugin is a program the bridge starts and talks to over its stdin
//! and stdout in lines of JSON (`plugins/PROTOCOL.md`, version 1). What a plugin says maps one
//! to one onto what a built-in driver sends: `obs` → a raw observation, `condition` → a raw
//! condition, `link` → a link event.
//!
//! The bridge owns the process: it starts it with the limits configured (address space, open
//! files), writes `init`, expects `hello` within [`HELLO_TIMEOUT`], pings it and restarts it
//! when it stops answering, exits, or breaks the protocol, with backoff (0.5 s doubling to
//! 30 s, reset after a minute of healthy running). Every line is validated: a line that is not
//! JSON, too long, of a type this bridge does not know, or about a machine that is not the
//! plugin's is refused, counted and logged (rate-limited), never passed on. The plugin's
//! stderr is logged under its id.

mod wire;

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

use super::retry::{Backoff, LogLimiter};
use super::{DriverContext, DriverCounters, DriverEvent};
use crate::model::{LinkStatus, MachineId};

pub use wire::{PROTOCOL, Parsed, Parser};

/// The plugin's first line must come this soon after start.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// After `shutdown`, the plugin has this long to exit before SIGTERM, then as long again
/// (less) before SIGKILL.
const EXIT_GRACE: Duration = Duration::from_secs(5);
const TERM_GRACE: Duration = Duration::from_secs(2);
/// A restart delay goes back to its start after this long of healthy running.
const HEALTHY_RESET: Duration = Duration::from_secs(60);

/// Resource limits set on the plugin's process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Address space (RLIMIT_AS), bytes.
    pub memory: Option<u64>,
    /// Open files (RLIMIT_NOFILE).
    pub open_files: Option<u64>,
    /// The longest line accepted from the plugin, bytes.
    pub max_line: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory: None,
            open_files: None,
            max_line: 1 << 20,
        }
    }
}

/// One plugin process and the machines it feeds.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginSpec {
    /// The `[[plugins]]` id.
    pub id: String,
    pub command: String,
    pub args: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// The plugin's `settings` table, passed on in `init`.
    pub settings: serde_json::Value,
    /// Each machine with its driver's `settings`.
    pub machines: Vec<(MachineId, serde_json::Value)>,
    pub limits: Limits,
    /// How often the bridge pings.
    pub health_interval: Duration,
    /// How long a pong may take.
    pub health_timeout: Duration,
}

impl PluginSpec {
    /// The `init` line (with its newline).
    fn init_line(&self) -> Vec<u8> {
        let machines: Vec<serde_json::Value> = self
            .machines
            .iter()
            .map(|(id, s)| serde_json::json!({ "id": id.as_str(), "settings": s }))
            .collect();
        let mut line = serde_json::json!({
            "type": "init",
            "protocol": PROTOCOL,
            "plugin": self.id,
            "settings": self.settings,
            "machines": machines,
        })
        .to_string()
        .into_bytes();
        line.push(b'\n');
        line
    }
}

/// Runs and supervises the plugin until shutdown.
pub async fn run(spec: PluginSpec, ctx: DriverContext) {
    let mut backoff = Backoff::new(
        super::poll::BACKOFF_START,
        super::poll::BACKOFF_MAX,
        0.8..=1.2,
    );
    let mut log = LogLimiter::new(Duration::from_secs(10));
    let mut parser = Parser::new(&spec.machines);
    loop {
        let started = Instant::now();
        let why = match start(&spec) {
            Ok(child) => match session(&spec, &ctx, child, &mut parser).await {
                None => return,
                Some(why) => why,
            },
            Err(why) => why,
        };
        DriverCounters::add(&ctx.counters.link_errors, 1);
        if let Some(more) = log.allow() {
            tracing::warn!(plugin = %spec.id, reason = %why, restarts_since_last_log = more, "plugin stopped; restarting with backoff");
        }
        let at = ctx.clock.now();
        let lost: Vec<DriverEvent> = spec
            .machines
            .iter()
            .map(|(m, _)| DriverEvent::Link {
                machine: m.clone(),
                status: LinkStatus::Lost,
                at,
                detail: Some(format!("plugin {}: {why}", spec.id)),
                missed: None,
            })
            .collect();
        if !ctx.send(lost).await {
            return;
        }
        if started.elapsed() >= HEALTHY_RESET {
            backoff.reset();
        }
        let delay = backoff.next_wait();
        tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

fn start(spec: &PluginSpec) -> Result<Child, String> {
    let mut cmd = Command::new(&spec.command);
    cmd.args(&spec.args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in &spec.env {
        cmd.env(k, v);
    }
    if spec.limits.memory.is_some() {
        // glibc reserves address space per thread arena; two keep a threaded plugin inside a
        // memory limit (a plugin's own setting wins).
        if !spec.env.iter().any(|(k, _)| k == "MALLOC_ARENA_MAX") {
            cmd.env("MALLOC_ARENA_MAX", "2");
        }
    }
    let (memory, files) = (spec.limits.memory, spec.limits.open_files);
    if memory.is_some() || files.is_some() {
        // SAFETY: between fork and exec only async-signal-safe calls are allowed; setrlimit is
        // one, and nothing here allocates or takes a lock.
        unsafe {
            cmd.pre_exec(move || {
                if let Some(m) = memory {
                    let l = libc::rlimit {
                        rlim_cur: m as libc::rlim_t,
                        rlim_max: m as libc::rlim_t,
                    };
                    if libc::setrlimit(libc::RLIMIT_AS, &l) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                if let Some(f) = files {
                    let l = libc::rlimit {
                        rlim_cur: f as libc::rlim_t,
                        rlim_max: f as libc::rlim_t,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &l) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
    }
    cmd.spawn()
        .map_err(|e| format!("cannot start {:?}: {e}", spec.command))
}

/// Talks to one running process until it ends: `None` on shutdown, else why it ended.
async fn session(
    spec: &PluginSpec,
    ctx: &DriverContext,
    mut child: Child,
    parser: &mut Parser,
) -> Option<String> {
    let (Some(mut stdin), Some(mut stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Some("the plugin's pipes were not opened".into());
    };
    let plugin = spec.id.clone();
    let stderr_task = tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        let mut log = LogLimiter::new(Duration::from_secs(1));
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(more) = log.allow() {
                tracing::info!(plugin = %plugin, dropped_since_last = more, "{line}");
            }
        }
    });
    let _stderr_guard = AbortOnDrop(stderr_task);
    if let Err(e) = stdin.write_all(&spec.init_line()).await {
        return Some(format!("cannot write init: {e}"));
    }
    parser.reset();
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    let mut skipping = false;
    let mut line_no: u64 = 0;
    let mut log = LogLimiter::new(Duration::from_secs(10));
    let hello_deadline = tokio::time::Instant::now() + HELLO_TIMEOUT;
    let mut ping = tokio::time::interval(spec.health_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    let mut ping_id: u64 = 0;
    let mut awaiting: Option<(u64, tokio::time::Instant)> = None;
    let why = loop {
        let health_deadline = awaiting.map(|(_, at)| at + spec.health_timeout);
        tokio::select! {
            _ = ctx.shutdown.cancelled() => {
                stop(&mut child, &mut stdin).await;
                return None;
            }
            status = child.wait() => {
                break match status {
                    Ok(s) => format!("exited ({s})"),
                    Err(e) => format!("cannot wait for it: {e}"),
                };
            }
            _ = tokio::time::sleep_until(hello_deadline), if !parser.hello_seen() => {
                break format!("no hello within {} s", HELLO_TIMEOUT.as_secs());
            }
            _ = sleep_until_opt(health_deadline) => {
                break format!("no pong within {} s", spec.health_timeout.as_secs_f64());
            }
            _ = ping.tick(), if parser.hello_seen() && awaiting.is_none() => {
                ping_id += 1;
                let line = format!("{{\"type\":\"ping\",\"id\":{ping_id}}}\n");
                if let Err(e) = stdin.write_all(line.as_bytes()).await {
                    break format!("cannot write to it: {e}");
                }
                awaiting = Some((ping_id, tokio::time::Instant::now()));
            }
            n = stdout.read(&mut chunk) => {
                let n = match n {
                    Ok(0) => break "closed its stdout".to_string(),
                    Ok(n) => n,
                    Err(e) => break format!("reading its stdout: {e}"),
                };
                DriverCounters::add(&ctx.counters.bytes, n as u64);
                let received = ctx.clock.now();
                let mut batch = Vec::new();
                let mut fatal = None;
                let mut start = 0;
                let data = &chunk[..n];
                for (i, &b) in data.iter().enumerate() {
                    if b != b'\n' {
                        continue;
                    }
                    let piece = &data[start..i];
                    start = i + 1;
                    line_no += 1;
                    if skipping {
                        skipping = false;
                        buf.clear();
                        continue;
                    }
                    let line: &[u8] = if buf.is_empty() {
                        piece
                    } else {
                        buf.extend_from_slice(piece);
                        &buf
                    };
                    DriverCounters::add(&ctx.counters.messages, 1);
                    let parsed = if line.len() > spec.limits.max_line {
                        Parsed::Refused(format!("line of {} bytes, longer than max_line ({})", line.len(), spec.limits.max_line))
                    } else {
                        parser.line(line, received, &mut batch)
                    };
                    match parsed {
                        Parsed::Ok => {}
                        Parsed::Pong(id) => {
                            if awaiting.is_some_and(|(want, _)| want == id) {
                                awaiting = None;
                            }
                        }
                        Parsed::Refused(why) => {
                            DriverCounters::add(&ctx.counters.bad_input, 1);
                            if let Some(more) = log.allow() {
                                tracing::warn!(plugin = %spec.id, line = line_no, reason = %why, refused_since_last_log = more, "plugin line refused");
                            }
                        }
                        Parsed::Fatal(why) => {
                            fatal = Some(format!("line {line_no}: {why}"));
                            break;
                        }
                    }
                    buf.clear();
                }
                if fatal.is_none() && start < data.len() {
                    if skipping || buf.len() + (data.len() - start) > spec.limits.max_line {
                        if !skipping {
                            DriverCounters::add(&ctx.counters.bad_input, 1);
                            if let Some(more) = log.allow() {
                                tracing::warn!(plugin = %spec.id, line = line_no + 1, max_line = spec.limits.max_line, refused_since_last_log = more, "plugin line longer than max_line refused");
                            }
                        }
                        skipping = true;
                        buf.clear();
                    } else {
                        buf.extend_from_slice(&data[start..]);
                    }
                }
                if !batch.is_empty() && !ctx.send(batch).await {
                    return None;
                }
                if let Some(f) = fatal {
                    break f;
                }
            }
        }
    };
    stop(&mut child, &mut stdin).await;
    Some(why)
}

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Asks the plugin to exit, then insists: `shutdown`, SIGTERM, SIGKILL.
async fn stop(child: &mut Child, stdin: &mut ChildStdin) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    let _ = stdin.write_all(b"{\"type\":\"shutdown\"}\n").await;
    let _ = stdin.flush().await;
    if tokio::time::timeout(EXIT_GRACE, child.wait()).await.is_ok() {
        return;
    }
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        // SAFETY: kill(2) on the pid of our own child, which we have not reaped yet.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        if tokio::time::timeout(TERM_GRACE, child.wait()).await.is_ok() {
            return;
        }
    }
    let _ = child.kill().await;
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
