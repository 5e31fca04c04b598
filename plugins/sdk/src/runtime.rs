//! The stdio runtime: hello, init, automatic pongs, a thread-safe emitter and a shutdown signal.
//!
//! ```text
//!  plugin start ──▶ write hello ──▶ read init ──▶ Session { init, emitter, shutdown }
//!                                                  │
//!  stdin reader thread: ping → pong (flushed at once); shutdown or EOF → shutdown signal
//!  flusher thread:      every flush interval, flush what the emitter buffered
//! ```
//!
//! Output goes through one `BufWriter` behind a mutex. Every message is written whole while the
//! lock is held, so lines from different threads never interleave. Observations are buffered;
//! they reach the bridge when the buffer fills, when [`Emitter::flush`] is called, when a pong is
//! written, or at the latest one flush interval later (default 50 ms).

use std::borrow::Cow;
use std::fmt;
use std::io::{self, BufRead, BufWriter, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::Duration;

use crate::PROTOCOL_VERSION;
use crate::message::{
    self, Condition, DecodeError, FromPlugin, Hello, Init, Level, Link, LinkStatus, Obs, Pong,
    Quality, Reason, ToPlugin, Value,
};

/// The longest key the protocol allows, in characters.
pub const MAX_KEY_CHARS: usize = 128;

/// Size of the output buffer: large enough that a flood of observations costs few syscalls.
const OUTPUT_BUFFER: usize = 64 * 1024;

/// Why a plugin could not start.
#[derive(Debug)]
pub enum Error {
    /// Reading stdin or writing stdout failed.
    Io {
        /// What the runtime was doing.
        doing: &'static str,
        /// The I/O error.
        source: io::Error,
    },
    /// Stdin ended before the bridge sent `init`.
    NoInit,
    /// The first line was not a valid `init` message.
    BadInit {
        /// The line as read (shortened to 200 characters).
        line: String,
        /// Why it was refused.
        reason: String,
    },
    /// The bridge speaks another protocol version.
    ProtocolMismatch {
        /// The version in the bridge's `init`.
        bridge: u32,
        /// The version this SDK speaks.
        plugin: u32,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { doing, source } => write!(f, "{doing}: {source}"),
            Error::NoInit => f.write_str("stdin closed before the bridge sent an init message"),
            Error::BadInit { line, reason } => {
                write!(
                    f,
                    "expected an init message as the first line, got {line:?}: {reason}"
                )
            }
            Error::ProtocolMismatch { bridge, plugin } => write!(
                f,
                "the bridge speaks plugin protocol {bridge}, this plugin speaks protocol {plugin}"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Shutdown signal
// ---------------------------------------------------------------------------------------------

/// Set when the bridge asks the plugin to stop (a `shutdown` message, or stdin closed), or when
/// stdout is gone. Clone it into every worker thread; use [`ShutdownSignal::wait_timeout`] as an
/// interruptible sleep.
#[derive(Clone, Debug, Default)]
pub struct ShutdownSignal {
    inner: Arc<(Mutex<bool>, Condvar)>,
}

impl ShutdownSignal {
    /// A signal that is not yet set.
    pub fn new() -> Self {
        Self::default()
    }

    fn flag(&self) -> MutexGuard<'_, bool> {
        self.inner.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets the signal and wakes every waiter.
    pub fn request(&self) {
        *self.flag() = true;
        self.inner.1.notify_all();
    }

    /// Whether shutdown was requested.
    pub fn is_requested(&self) -> bool {
        *self.flag()
    }

    /// Blocks until shutdown is requested.
    pub fn wait(&self) {
        let mut flag = self.flag();
        while !*flag {
            flag = self
                .inner
                .1
                .wait(flag)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Sleeps for `timeout` or until shutdown is requested, whichever comes first. Returns
    /// whether shutdown was requested.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let flag = self.flag();
        let (flag, _) = self
            .inner
            .1
            .wait_timeout_while(flag, timeout, |set| !*set)
            .unwrap_or_else(PoisonError::into_inner);
        *flag
    }
}

// ---------------------------------------------------------------------------------------------
// Emitter
// ---------------------------------------------------------------------------------------------

type Output = BufWriter<Box<dyn Write + Send>>;

struct Shared {
    out: Mutex<Output>,
    /// Something was written since the last flush.
    dirty: AtomicBool,
    /// Messages written (for the plugin's own statistics).
    written: AtomicU64,
}

/// Writes messages to the bridge. Cheap to clone; safe to use from many threads at once.
///
/// Every method returns the I/O error if stdout is gone (the bridge closed the pipe); a plugin
/// should then stop.
#[derive(Clone)]
pub struct Emitter {
    shared: Arc<Shared>,
}

impl fmt::Debug for Emitter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Emitter")
            .field("written", &self.written())
            .finish_non_exhaustive()
    }
}

/// A run of messages written under one lock (see [`Emitter::batch`]). It has the same writing
/// methods as the [`Emitter`].
pub struct Batch<'a> {
    out: MutexGuard<'a, Output>,
    written: u64,
}

fn check_key(key: &str) -> io::Result<()> {
    let ok =
        !key.is_empty() && (key.len() <= MAX_KEY_CHARS || key.chars().count() <= MAX_KEY_CHARS);
    if ok {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "key {key:?} has {} characters; the protocol allows 1 to {MAX_KEY_CHARS}",
                key.chars().count()
            ),
        ))
    }
}

impl Batch<'_> {
    /// Writes any message as one line.
    ///
    /// # Errors
    /// The I/O error from stdout.
    pub fn send(&mut self, message: &FromPlugin<'_>) -> io::Result<()> {
        serde_json::to_writer(&mut *self.out, message).map_err(io::Error::other)?;
        self.out.write_all(b"\n")?;
        self.written += 1;
        Ok(())
    }

    /// Writes a good observation without a machine timestamp.
    ///
    /// # Errors
    /// An empty or over-long key (`InvalidInput`), or the I/O error from stdout.
    pub fn obs<'v>(
        &mut self,
        machine: &str,
        key: &str,
        value: impl Into<Value<'v>>,
    ) -> io::Result<()> {
        self.obs_full(machine, key, value.into(), None, None, None)
    }

    /// Writes a good observation with the machine's own timestamp (RFC 3339).
    ///
    /// # Errors
    /// An empty or over-long key (`InvalidInput`), or the I/O error from stdout.
    pub fn obs_at<'v>(
        &mut self,
        machine: &str,
        key: &str,
        value: impl Into<Value<'v>>,
        time: &str,
    ) -> io::Result<()> {
        self.obs_full(machine, key, value.into(), None, None, Some(time))
    }

    /// Writes a bad observation: the value is unavailable, for the given reason.
    ///
    /// # Errors
    /// An empty or over-long key (`InvalidInput`), or the I/O error from stdout.
    pub fn bad(&mut self, machine: &str, key: &str, reason: Reason) -> io::Result<()> {
        self.obs_full(
            machine,
            key,
            Value::Null,
            Some(Quality::Bad),
            Some(reason),
            None,
        )
    }

    /// Writes an observation with every field chosen by the caller.
    ///
    /// # Errors
    /// An empty or over-long key (`InvalidInput`), or the I/O error from stdout.
    pub fn obs_full(
        &mut self,
        machine: &str,
        key: &str,
        value: Value<'_>,
        quality: Option<Quality>,
        reason: Option<Reason>,
        time: Option<&str>,
    ) -> io::Result<()> {
        check_key(key)?;
        self.send(&FromPlugin::Obs(Obs {
            machine: Cow::Borrowed(machine),
            key: Cow::Borrowed(key),
            value,
            quality,
            reason,
            time: time.map(Cow::Borrowed),
        }))
    }

    /// Writes a condition.
    ///
    /// # Errors
    /// An empty or over-long key (`InvalidInput`), or the I/O error from stdout.
    pub fn condition(&mut self, condition: &Condition<'_>) -> io::Result<()> {
        check_key(&condition.key)?;
        self.send(&FromPlugin::Condition(condition.clone()))
    }

    /// Clears a condition key: one code if given, else every code of the key.
    ///
    /// # Errors
    /// An empty or over-long key (`InvalidInput`), or the I/O error from stdout.
    pub fn clear(&mut self, machine: &str, key: &str, code: Option<&str>) -> io::Result<()> {
        self.condition(&Condition {
            machine: Cow::Borrowed(machine),
            key: Cow::Borrowed(key),
            level: Level::Normal,
            code: code.map(Cow::Borrowed),
            ..Condition::default()
        })
    }

    /// Reports the link to a machine as connected.
    ///
    /// # Errors
    /// The I/O error from stdout.
    pub fn link_connected(&mut self, machine: &str) -> io::Result<()> {
        self.send(&FromPlugin::Link(Link {
            machine: Cow::Borrowed(machine),
            status: LinkStatus::Connected,
            detail: None,
        }))
    }

    /// Reports the link to a machine as lost, with the reason (name the address).
    ///
    /// # Errors
    /// The I/O error from stdout.
    pub fn link_lost(&mut self, machine: &str, detail: &str) -> io::Result<()> {
        self.send(&FromPlugin::Link(Link {
            machine: Cow::Borrowed(machine),
            status: LinkStatus::Lost,
            detail: Some(Cow::Borrowed(detail)),
        }))
    }
}

impl Emitter {
    /// An emitter over any writer (stdout in a real plugin; a buffer in tests).
    pub fn new(output: Box<dyn Write + Send>) -> Self {
        Emitter {
            shared: Arc::new(Shared {
                out: Mutex::new(BufWriter::with_capacity(OUTPUT_BUFFER, output)),
                dirty: AtomicBool::new(false),
                written: AtomicU64::new(0),
            }),
        }
    }

    /// Runs `f` with the output locked, so that many messages cost one lock. Keep `f` short:
    /// pongs wait for it.
    ///
    /// # Errors
    /// Whatever `f` returns.
    pub fn batch<R>(&self, f: impl FnOnce(&mut Batch<'_>) -> io::Result<R>) -> io::Result<R> {
        let mut batch = Batch {
            out: self
                .shared
                .out
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
            written: 0,
        };
        let result = f(&mut batch);
        if batch.written > 0 {
            self.shared.dirty.store(true, Ordering::Relaxed);
            self.shared
                .written
                .fetch_add(batch.written, Ordering::Relaxed);
        }
        result
    }

    /// Writes any message as one line.
    ///
    /// # Errors
    /// The I/O error from stdout.
    pub fn send(&self, message: &FromPlugin<'_>) -> io::Result<()> {
        self.batch(|b| b.send(message))
    }

    /// Writes a good observation without a machine timestamp.
    ///
    /// # Errors
    /// An empty or over-long key (`InvalidInput`), or the I/O error from stdout.
    pub fn obs<'v>(&self, machine: &str, key: &str, value: impl Into<Value<'v>>) -> io::Result<()> {
        let value = value.into();
        self.batch(|b| b.obs(machine, key, value))
    }

    /// Writes a good observation with the machine's own timestamp (RFC 3339).
    ///
    /// # Errors
    /// An empty or over-long key (`InvalidInput`), or the I/O error from stdout.
    pub fn obs_at<'v>(
        &self,
        machine: &str,
        key: &str,
        value: impl Into<Value<'v>>,
        time: &str,
    ) -> io::Result<()> {
        let value = value.into();
        self.batch(|b| b.obs_at(machine, key, value, time))
    }

    /// Writes a bad observation: the value is unavailable, for the given reason.
    ///
    /// # Errors
    /// An empty or over-long key (`InvalidInput`), or the I/O error from stdout.
    pub fn bad(&self, machine: &str, key: &str, reason: Reason) -> io::Result<()> {
        self.batch(|b| b.bad(machine, key, reason))
    }

    /// Writes a condition.
    ///
    /// # Errors
    /// An empty or over-long key (`InvalidInput`), or the I/O error from stdout.
    pub fn condition(&self, condition: &Condition<'_>) -> io::Result<()> {
        self.batch(|b| b.condition(condition))
    }

    /// Clears a condition key: one code if given, else every code of the key.
    ///
    /// # Errors
    /// An empty or over-long key (`InvalidInput`), or the I/O error from stdout.
    pub fn clear(&self, machine: &str, key: &str, code: Option<&str>) -> io::Result<()> {
        self.batch(|b| b.clear(machine, key, code))
    }

    /// Reports the link to a machine as connected, and flushes (link changes matter at once).
    ///
    /// # Errors
    /// The I/O error from stdout.
    pub fn link_connected(&self, machine: &str) -> io::Result<()> {
        self.batch(|b| b.link_connected(machine))?;
        self.flush()
    }

    /// Reports the link to a machine as lost, and flushes.
    ///
    /// # Errors
    /// The I/O error from stdout.
    pub fn link_lost(&self, machine: &str, detail: &str) -> io::Result<()> {
        self.batch(|b| b.link_lost(machine, detail))?;
        self.flush()
    }

    /// Writes a pong and flushes. The runtime does this for you.
    ///
    /// # Errors
    /// The I/O error from stdout.
    pub fn pong(&self, id: u64) -> io::Result<()> {
        self.send(&FromPlugin::Pong(Pong { id }))?;
        self.flush()
    }

    /// Sends everything buffered to the bridge now.
    ///
    /// # Errors
    /// The I/O error from stdout.
    pub fn flush(&self) -> io::Result<()> {
        let mut out = self
            .shared
            .out
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.shared.dirty.store(false, Ordering::Relaxed);
        out.flush()
    }

    /// How many messages were written so far.
    pub fn written(&self) -> u64 {
        self.shared.written.load(Ordering::Relaxed)
    }

    fn flush_if_dirty(&self) -> io::Result<()> {
        if self.shared.dirty.swap(false, Ordering::Relaxed) {
            self.flush()
        } else {
            Ok(())
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Plugin and session
// ---------------------------------------------------------------------------------------------

/// A plugin's identity and runtime options. Start it with [`Plugin::start`].
///
/// ```no_run
/// use shopbridge_plugin_sdk::Plugin;
/// use std::time::Duration;
///
/// let session = Plugin::new("my-plugin", env!("CARGO_PKG_VERSION")).start()?;
/// let out = session.emitter();
/// while !session.shutdown().wait_timeout(Duration::from_secs(1)) {
///     for m in &session.init().machines {
///         out.obs(&m.id, "heartbeat", true)?;
///     }
/// }
/// session.finish()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct Plugin {
    name: String,
    version: String,
    flush_interval: Option<Duration>,
}

impl Plugin {
    /// A plugin with the name and version it reports in `hello`.
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        Plugin {
            name: name.into(),
            version: version.into(),
            flush_interval: Some(Duration::from_millis(50)),
        }
    }

    /// How often buffered output is flushed in the background (default 50 ms); `None` turns the
    /// background flush off, and then the plugin must call [`Emitter::flush`] itself.
    pub fn flush_interval(mut self, interval: Option<Duration>) -> Self {
        self.flush_interval = interval;
        self
    }

    /// Starts on the process's stdin and stdout: writes `hello`, reads `init`, starts the stdin
    /// reader (pongs, shutdown) and the background flusher.
    ///
    /// # Errors
    /// See [`Error`]. The caller should print it to stderr and exit non-zero.
    pub fn start(self) -> Result<Session, Error> {
        let input = io::BufReader::new(io::stdin());
        self.start_with(input, stdout_writer())
    }

    /// Like [`Plugin::start`], on any input and output (in-memory pipes in tests).
    ///
    /// # Errors
    /// See [`Error`].
    pub fn start_with<R, W>(self, mut input: R, output: W) -> Result<Session, Error>
    where
        R: BufRead + Send + 'static,
        W: Write + Send + 'static,
    {
        let emitter = Emitter::new(Box::new(output));
        emitter
            .send(&FromPlugin::Hello(Hello {
                protocol: PROTOCOL_VERSION,
                name: Cow::Borrowed(&self.name),
                version: Cow::Borrowed(&self.version),
            }))
            .and_then(|()| emitter.flush())
            .map_err(|source| Error::Io {
                doing: "writing hello to stdout",
                source,
            })?;

        let mut line = String::new();
        let mut line_no = 0u64;
        let init = loop {
            line.clear();
            line_no += 1;
            let n = input.read_line(&mut line).map_err(|source| Error::Io {
                doing: "reading init from stdin",
                source,
            })?;
            if n == 0 {
                return Err(Error::NoInit);
            }
            if line.trim().is_empty() {
                continue;
            }
            match message::decode_to_plugin(&line) {
                Ok(ToPlugin::Init(init)) => break init,
                Ok(other) => {
                    return Err(Error::BadInit {
                        line: shorten(&line),
                        reason: format!("a {} message came first", kind(&other)),
                    });
                }
                Err(e) => {
                    return Err(Error::BadInit {
                        line: shorten(&line),
                        reason: e.to_string(),
                    });
                }
            }
        };
        if init.protocol != PROTOCOL_VERSION {
            return Err(Error::ProtocolMismatch {
                bridge: init.protocol,
                plugin: PROTOCOL_VERSION,
            });
        }

        let shutdown = ShutdownSignal::new();
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            thread::Builder::new()
                .name(name.to_owned())
                .spawn(f)
                .map_err(|source| Error::Io {
                    doing: "starting a runtime thread",
                    source,
                })
        };
        {
            let (emitter, shutdown) = (emitter.clone(), shutdown.clone());
            spawn(
                "plugin-stdin",
                Box::new(move || read_commands(input, line_no, &emitter, &shutdown)),
            )?;
        }
        if let Some(interval) = self.flush_interval {
            let (emitter, shutdown) = (emitter.clone(), shutdown.clone());
            spawn(
                "plugin-flush",
                Box::new(move || flush_periodically(interval, &emitter, &shutdown)),
            )?;
        }

        Ok(Session {
            init,
            emitter,
            shutdown,
        })
    }
}

/// A running plugin: the bridge's `init`, the emitter and the shutdown signal.
#[derive(Debug)]
pub struct Session {
    init: Init,
    emitter: Emitter,
    shutdown: ShutdownSignal,
}

impl Session {
    /// The `init` message the bridge sent.
    pub fn init(&self) -> &Init {
        &self.init
    }

    /// A handle to write messages (clone it into threads).
    pub fn emitter(&self) -> Emitter {
        self.emitter.clone()
    }

    /// The shutdown signal (clone it into threads).
    pub fn shutdown(&self) -> ShutdownSignal {
        self.shutdown.clone()
    }

    /// Flushes what is left. Call it last, before the process exits.
    ///
    /// # Errors
    /// The I/O error from stdout.
    pub fn finish(self) -> io::Result<()> {
        self.emitter.flush()
    }
}

fn kind(m: &ToPlugin) -> &'static str {
    match m {
        ToPlugin::Init(_) => "init",
        ToPlugin::Ping(_) => "ping",
        ToPlugin::Shutdown(_) => "shutdown",
    }
}

fn shorten(line: &str) -> String {
    let line = line.trim_end();
    match line.char_indices().nth(200) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None => line.to_owned(),
    }
}

/// The stdin reader: answers pings, turns shutdown and EOF into the shutdown signal, and logs
/// (to stderr) lines it refuses.
fn read_commands<R: BufRead>(
    mut input: R,
    mut line_no: u64,
    emitter: &Emitter,
    shutdown: &ShutdownSignal,
) {
    let mut line = String::new();
    loop {
        line.clear();
        line_no += 1;
        match input.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                eprintln!("stdin line {line_no}: read failed, shutting down: {e}");
                break;
            }
        }
        if line.trim().is_empty() {
            continue;
        }
        match message::decode_to_plugin(&line) {
            Ok(ToPlugin::Ping(ping)) => {
                if let Err(e) = emitter.pong(ping.id) {
                    eprintln!(
                        "stdout: writing pong {} failed, shutting down: {e}",
                        ping.id
                    );
                    break;
                }
            }
            Ok(ToPlugin::Shutdown(_)) => break,
            Ok(ToPlugin::Init(_)) => {
                eprintln!("stdin line {line_no}: a second init message, ignored");
            }
            Err(DecodeError::UnknownType(t)) => {
                eprintln!("stdin line {line_no}: unknown message type {t:?}, ignored");
            }
            Err(e) => eprintln!(
                "stdin line {line_no}: {e}; line ignored: {}",
                shorten(&line)
            ),
        }
    }
    shutdown.request();
}

fn flush_periodically(interval: Duration, emitter: &Emitter, shutdown: &ShutdownSignal) {
    loop {
        let stop = shutdown.wait_timeout(interval);
        if let Err(e) = emitter.flush_if_dirty() {
            eprintln!("stdout: flush failed, shutting down: {e}");
            shutdown.request();
            return;
        }
        if stop {
            return;
        }
    }
}

/// Stdout as a plain writer. On Unix the file descriptor is duplicated so that writes bypass
/// `std`'s line buffering (the emitter has its own buffer); elsewhere `Stdout` is used.
fn stdout_writer() -> Box<dyn Write + Send> {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd;
        if let Ok(fd) = io::stdout().as_fd().try_clone_to_owned() {
            return Box::new(std::fs::File::from(fd));
        }
    }
    Box::new(io::stdout())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufReader, Read};
    use std::sync::mpsc;
    use std::time::Instant;

    /// The read end of an in-memory pipe: bytes arrive through a channel; EOF when the sender
    /// is dropped.
    struct PipeReader {
        rx: mpsc::Receiver<Vec<u8>>,
        pending: Vec<u8>,
    }

    impl Read for PipeReader {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.pending.is_empty() {
                match self.rx.recv() {
                    Ok(bytes) => self.pending = bytes,
                    Err(_) => return Ok(0),
                }
            }
            let n = buf.len().min(self.pending.len());
            buf[..n].copy_from_slice(&self.pending[..n]);
            self.pending.drain(..n);
            Ok(n)
        }
    }

    /// The write end seen by the plugin; the test reads complete lines from it.
    #[derive(Clone, Default)]
    struct Capture {
        inner: Arc<(Mutex<Vec<u8>>, Condvar)>,
    }

    impl Write for Capture {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.inner.0.lock().unwrap().extend_from_slice(buf);
            self.inner.1.notify_all();
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Capture {
        fn lines(&self) -> Vec<String> {
            let bytes = self.inner.0.lock().unwrap();
            String::from_utf8(bytes.clone())
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect()
        }

        /// Waits (up to 5 s) until some line satisfies `pred`.
        fn wait_for(&self, pred: impl Fn(&str) -> bool) -> String {
            let deadline = Instant::now() + Duration::from_secs(5);
            let mut bytes = self.inner.0.lock().unwrap();
            loop {
                let text = String::from_utf8(bytes.clone()).unwrap();
                if let Some(l) = text.lines().find(|l| pred(l)) {
                    return l.to_owned();
                }
                let left = deadline.saturating_duration_since(Instant::now());
                assert!(!left.is_zero(), "no matching line; got:\n{text}");
                bytes = self.inner.1.wait_timeout(bytes, left).unwrap().0;
            }
        }
    }

    fn pipe() -> (mpsc::Sender<Vec<u8>>, BufReader<PipeReader>) {
        let (tx, rx) = mpsc::channel();
        let reader = PipeReader {
            rx,
            pending: Vec::new(),
        };
        (tx, BufReader::new(reader))
    }

    const INIT: &str = "{\"type\":\"init\",\"protocol\":1,\"plugin\":\"t\",\"settings\":{},\
                        \"machines\":[{\"id\":\"m1\",\"settings\":{}}]}\n";

    fn started(flush: Option<Duration>) -> (mpsc::Sender<Vec<u8>>, Capture, Session) {
        let (tx, input) = pipe();
        let out = Capture::default();
        tx.send(INIT.as_bytes().to_vec()).unwrap();
        let session = Plugin::new("test", "9.9.9")
            .flush_interval(flush)
            .start_with(input, out.clone())
            .unwrap();
        (tx, out, session)
    }

    #[test]
    fn hello_first_then_init_is_read() {
        let (_tx, out, session) = started(None);
        assert_eq!(
            out.lines()[0],
            r#"{"type":"hello","protocol":1,"name":"test","version":"9.9.9"}"#
        );
        assert_eq!(session.init().plugin, "t");
        assert_eq!(session.init().machines[0].id, "m1");
    }

    #[test]
    fn pings_are_answered_at_once_even_with_buffered_observations() {
        let (tx, out, session) = started(None);
        let em = session.emitter();
        em.obs("m1", "x", 1).unwrap(); // buffered, not flushed (no flusher in this test)
        tx.send(b"{\"type\":\"ping\",\"id\":7}\n".to_vec()).unwrap();
        out.wait_for(|l| l == r#"{"type":"pong","id":7}"#);
        // The observation written before the ping went out first, in order.
        let lines = out.lines();
        assert_eq!(
            lines[1],
            r#"{"type":"obs","machine":"m1","key":"x","value":1}"#
        );
        // Unknown and malformed lines in between do not stop the loop.
        tx.send(b"{\"type\":\"telemetry\"}\nnot json\n\n{\"type\":\"ping\",\"id\":8}\n".to_vec())
            .unwrap();
        out.wait_for(|l| l == r#"{"type":"pong","id":8}"#);
        assert!(!session.shutdown().is_requested());
    }

    #[test]
    fn shutdown_message_sets_the_signal() {
        let (tx, _out, session) = started(None);
        let signal = session.shutdown();
        assert!(!signal.wait_timeout(Duration::from_millis(10)));
        tx.send(b"{\"type\":\"shutdown\"}\n".to_vec()).unwrap();
        assert!(signal.wait_timeout(Duration::from_secs(5)));
    }

    #[test]
    fn stdin_eof_sets_the_signal() {
        let (tx, _out, session) = started(None);
        drop(tx);
        assert!(session.shutdown().wait_timeout(Duration::from_secs(5)));
    }

    #[test]
    fn background_flush_delivers_buffered_observations() {
        let (_tx, out, session) = started(Some(Duration::from_millis(10)));
        session.emitter().obs("m1", "spindle", 1200.5).unwrap();
        out.wait_for(|l| l.contains("\"spindle\""));
    }

    #[test]
    fn protocol_mismatch_is_an_error_naming_both_versions() {
        let (tx, input) = pipe();
        tx.send(b"{\"type\":\"init\",\"protocol\":2,\"plugin\":\"t\"}\n".to_vec())
            .unwrap();
        let err = Plugin::new("p", "1")
            .start_with(input, Capture::default())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "the bridge speaks plugin protocol 2, this plugin speaks protocol 1"
        );
    }

    #[test]
    fn a_ping_before_init_or_eof_is_an_error() {
        let (tx, input) = pipe();
        tx.send(b"{\"type\":\"ping\",\"id\":1}\n".to_vec()).unwrap();
        let err = Plugin::new("p", "1")
            .start_with(input, Capture::default())
            .unwrap_err();
        assert!(
            err.to_string().contains("a ping message came first"),
            "{err}"
        );

        let (tx, input) = pipe();
        drop(tx);
        let err = Plugin::new("p", "1")
            .start_with(input, Capture::default())
            .unwrap_err();
        assert!(matches!(err, Error::NoInit));
    }

    #[test]
    fn emitter_writes_every_kind_and_refuses_bad_keys() {
        let (_tx, out, session) = started(None);
        let em = session.emitter();
        em.obs_at("m1", "program", "O1234", "2026-11-26T10:00:00Z")
            .unwrap();
        em.bad("m1", "spindle", Reason::SourceUnavailable).unwrap();
        em.condition(&Condition {
            machine: "m1".into(),
            key: "alarm".into(),
            level: Level::Fault,
            code: Some("42".into()),
            ..Condition::default()
        })
        .unwrap();
        em.clear("m1", "alarm", None).unwrap();
        em.link_connected("m1").unwrap();
        em.link_lost("m1", "connection refused by 10.0.0.30:19000")
            .unwrap();
        let too_long = "k".repeat(129);
        let err = em.obs("m1", &too_long, 1).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(em.obs("m1", "", 1).is_err());
        assert!(em.obs("m1", &"ü".repeat(128), 1).is_ok());
        em.flush().unwrap();
        let lines = out.lines();
        assert_eq!(
            &lines[1..7],
            &[
                r#"{"type":"obs","machine":"m1","key":"program","value":"O1234","time":"2026-11-26T10:00:00Z"}"#,
                r#"{"type":"obs","machine":"m1","key":"spindle","value":null,"quality":"bad","reason":"source_unavailable"}"#,
                r#"{"type":"condition","machine":"m1","key":"alarm","level":"fault","code":"42"}"#,
                r#"{"type":"condition","machine":"m1","key":"alarm","level":"normal"}"#,
                r#"{"type":"link","machine":"m1","status":"connected"}"#,
                r#"{"type":"link","machine":"m1","status":"lost","detail":"connection refused by 10.0.0.30:19000"}"#,
            ]
        );
        assert_eq!(
            em.written(),
            8,
            "hello, six messages and the 128-character key"
        );
    }

    #[test]
    fn lines_from_many_threads_never_interleave() {
        let (_tx, out, session) = started(None);
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let em = session.emitter();
                thread::spawn(move || {
                    let key = format!("key-{t}");
                    for i in 0..500 {
                        em.obs("m1", &key, i64::from(i)).unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        session.finish().unwrap();
        let lines = out.lines();
        assert_eq!(lines.len(), 1 + 4 * 500);
        for l in &lines[1..] {
            message::decode_from_plugin(l).unwrap();
        }
    }
}
