//! Haas Machine Data Collection (MDC): the Q-commands of Haas NGC (and Classic) controls,
//! over Ethernet (the TCP port of Setting 143, often 5051) or RS-232.
//!
//! Each poll sends the standard queries ([`reply::STANDARD`]) and a `Q600 <var>` per macro
//! variable configured, one at a time, each waiting for its reply. A reply that does not come
//! within the timeout ends the connection (a late reply would be taken for the next query's),
//! and the shared polling runner ([`super::poll`]) reconnects; an error reply (`?, ?Q105`,
//! `INVALID NUMBER`) marks that query's values Bad and the poll goes on. A control allows two
//! MDC connections; this driver opens one, and closes it before opening another.
//!
//! The driver does not interpret: it names the values (`Q500.status`, `Q301`, `#3027`) and
//! the `haas-ngc` profile makes a machine state of them.

pub mod reply;

use std::pin::Pin;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::poll::{LinkError, Poller, Readings};
use super::serial::{SerialSettings, open_serial};
use crate::model::SignalId;
use reply::{Framer, Query, ReplyError};

/// The control's side of the link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// `host:port` (the port of Setting 143).
    Tcp(String),
    Serial(SerialSettings),
}

/// One Haas control, as the driver polls it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaasSpec {
    pub transport: Transport,
    /// Macro variables read with `Q600` each poll (`3027` spindle speed …).
    pub macros: Vec<u32>,
    /// How long one reply may take.
    pub timeout: Duration,
}

impl HaasSpec {
    /// The address or serial port, for logs and `/metrics`.
    pub fn source(&self) -> String {
        match &self.transport {
            Transport::Tcp(a) => a.clone(),
            Transport::Serial(s) => s.port.clone(),
        }
    }
}

type Stream = Pin<Box<dyn AsyncStream>>;
trait AsyncStream: AsyncRead + AsyncWrite + Send {}
impl<T: AsyncRead + AsyncWrite + Send> AsyncStream for T {}

/// A query with its request text and keys, built once.
#[derive(Debug)]
struct Prepared {
    query: Query,
    request: String,
    wire: Vec<u8>,
    keys: Vec<SignalId>,
}

/// The Haas MDC poller.
pub struct Haas {
    spec: HaasSpec,
    source: String,
    queries: Vec<Prepared>,
    framer: Framer,
    read_buf: Vec<u8>,
    /// Reply lines that could not be read (counted; each logged, rate-limited).
    pub malformed: u64,
    log: super::retry::LogLimiter,
}

/// An open MDC link.
pub struct Link {
    stream: Stream,
}

impl Haas {
    pub fn new(spec: HaasSpec) -> Self {
        let queries = reply::STANDARD
            .iter()
            .copied()
            .chain(spec.macros.iter().map(|v| Query::Q600(*v)))
            .map(|query| {
                let request = query.request();
                // Controls take CR LF (a CR alone is also read, LF alone is not by all).
                let wire = format!("{request}\r\n").into_bytes();
                let keys = query.keys().iter().map(|k| SignalId::new(k)).collect();
                Prepared {
                    query,
                    request,
                    wire,
                    keys,
                }
            })
            .collect();
        Self {
            source: spec.source(),
            spec,
            queries,
            framer: Framer::new(),
            read_buf: vec![0; 4096],
            malformed: 0,
            log: super::retry::LogLimiter::new(Duration::from_secs(10)),
        }
    }

    async fn open(&self) -> Result<Stream, LinkError> {
        match &self.spec.transport {
            Transport::Tcp(addr) => {
                let s = tokio::net::TcpStream::connect(addr.as_str())
                    .await
                    .map_err(|e| match e.kind() {
                        std::io::ErrorKind::ConnectionRefused => LinkError::new(format!(
                            "connection refused by {addr} (is Setting 143 on, and this its port?)"
                        )),
                        _ => LinkError::new(format!("cannot connect to {addr}: {e}")),
                    })?;
                let _ = s.set_nodelay(true);
                Ok(Box::pin(s))
            }
            Transport::Serial(s) => {
                let port = open_serial(s)?;
                Ok(Box::pin(port))
            }
        }
    }
}

impl Poller for Haas {
    type Link = Link;

    fn source(&self) -> &str {
        &self.source
    }

    async fn connect(&mut self) -> Result<Link, LinkError> {
        let stream = self.open().await?;
        self.framer.clear();
        Ok(Link { stream })
    }

    async fn poll(&mut self, link: &mut Link, out: &mut Readings) -> Result<(), LinkError> {
        for i in 0..self.queries.len() {
            let line = self.exchange(link, i, out).await?;
            let q = &self.queries[i];
            match reply::parse(q.query, &line) {
                Ok(values) => {
                    for (k, v) in values {
                        if let Some(key) = q.keys.iter().find(|key| key.as_str() == k) {
                            out.good(key, v);
                        }
                    }
                }
                Err(ReplyError::Refused(answer)) => {
                    // The query's first value (Q500's status) is unknown; others keep theirs.
                    if let Some(key) = q.keys.first() {
                        out.bad(key, format!("{}: {answer}", q.query));
                    }
                }
                Err(e @ ReplyError::Malformed { .. }) => {
                    self.malformed += 1;
                    if let Some(more) = self.log.allow() {
                        tracing::warn!(source = %self.source, error = %e, skipped_since_last_log = more, "unreadable MDC reply skipped");
                    }
                }
            }
        }
        Ok(())
    }
}

impl Haas {
    /// Sends query `i` and reads its reply line.
    async fn exchange(
        &mut self,
        link: &mut Link,
        i: usize,
        out: &mut Readings,
    ) -> Result<String, LinkError> {
        let q = &self.queries[i];
        // Whatever came unasked (a stray prompt) is not this query's reply.
        self.framer.clear();
        let timeout = self.spec.timeout;
        let source = &self.source;
        let request = q.request.as_str();
        let wire = q.wire.as_slice();
        let framer = &mut self.framer;
        let buf = &mut self.read_buf;
        let work = async {
            link.stream
                .write_all(wire)
                .await
                .map_err(|e| LinkError::new(format!("cannot send {request} to {source}: {e}")))?;
            loop {
                if let Some(line) = framer.next_reply(request) {
                    return Ok(line);
                }
                let n = link
                    .stream
                    .read(buf)
                    .await
                    .map_err(|e| LinkError::new(format!("reading from {source}: {e}")))?;
                if n == 0 {
                    return Err(LinkError::new(format!("{source} closed the connection")));
                }
                out.bytes += n as u64;
                framer.push(&buf[..n]);
            }
        };
        let line = tokio::time::timeout(timeout, work).await.map_err(|_| {
            LinkError::new(format!(
                "no reply to {request} from {source} within {} ms",
                timeout.as_millis()
            ))
        })??;
        out.replies += 1;
        Ok(line)
    }
}
