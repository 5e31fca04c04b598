//! The HTTP listener's guard: at most `max_connections` connections at once.
//!
//! Every open connection costs a file descriptor, and descriptors are what the drivers need
//! to reach the machines. A client that opens connections and never finishes a request (a
//! hung dashboard, a port scanner, a slowloris attack) must not be able to take them all. Past
//! the limit a new connection is accepted and closed at once (counted in
//! `shopbridge_http_connections_refused_total`, logged at most every 10 s), so the kernel's
//! backlog does not fill either; connections already open are served as before.
//!
//! And a connection that has not been sent a byte for `idle` (60 s) is closed the next time
//! it is read from: a request that trickles in too slowly, a kept-alive connection left idle.
//! Responses that stream (the floor view's events, with a keep-alive every 15 s) write well
//! within that.
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::Telemetry;
use crate::drivers::retry::LogLimiter;

/// A [`TcpListener`] that holds at most `max` connections open.
pub struct GuardedListener {
    inner: TcpListener,
    permits: Arc<Semaphore>,
    max: usize,
    idle: Duration,
    telemetry: Arc<Telemetry>,
    warn: LogLimiter,
}

impl GuardedListener {
    pub fn new(inner: TcpListener, max: usize, idle: Duration, telemetry: Arc<Telemetry>) -> Self {
        Self {
            inner,
            permits: Arc::new(Semaphore::new(max)),
            max,
            idle,
            telemetry,
            warn: LogLimiter::new(Duration::from_secs(10)),
        }
    }
}

impl axum::serve::Listener for GuardedListener {
    type Io = GuardedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (stream, peer) = match self.inner.accept().await {
                Ok(x) => x,
                Err(e) => {
                    // Out of descriptors (EMFILE) or a connection reset before it was taken:
                    // wait a moment rather than spin.
                    if let Some(held) = self.warn.allow() {
                        tracing::warn!(error = %e, held_back = held, "HTTP accept failed; retrying");
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            match self.permits.clone().try_acquire_owned() {
                Ok(permit) => {
                    return (
                        GuardedStream {
                            inner: stream,
                            _permit: permit,
                            idle: self.idle,
                            deadline: Box::pin(tokio::time::sleep(self.idle)),
                        },
                        peer,
                    );
                }
                Err(_) => {
                    Telemetry::add(&self.telemetry.http_connections_refused_total, 1);
                    if let Some(held) = self.warn.allow() {
                        tracing::warn!(
                            %peer,
                            max_connections = self.max,
                            held_back = held,
                            "HTTP connection refused: [http] max_connections are open"
                        );
                    }
                    drop(stream);
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A connection that gives its place back when it closes.
pub struct GuardedStream {
    inner: TcpStream,
    _permit: OwnedSemaphorePermit,
    idle: Duration,
    /// `idle` after the last byte written to the client.
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl GuardedStream {
    fn wrote(&mut self, n: usize) {
        if n > 0 {
            let at = tokio::time::Instant::now() + self.idle;
            self.deadline.as_mut().reset(at);
        }
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "HTTP connection idle: no complete request and nothing sent to it for too long",
            )));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            self.wrote(n);
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = r {
            self.wrote(n);
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
