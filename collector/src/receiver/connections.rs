//! Accepting connections within bounds, for both listeners.
//!
//! Without bounds, 20,000 idle connections exhaust the process's file descriptors and take
//! `/healthz`, the signals endpoint and the ClickHouse client down with them, and an upload that
//! stalls after its first kilobyte holds its memory for as long as the client likes. So:
//! - at most `max_connections` connections at once, over both listeners (the next ones wait in
//!   the kernel's accept queue, costing the process nothing), a number kept below the file
//!   descriptor limit with room for ClickHouse, the log and the engine;
//! - a connection on which nothing arrives for `idle_timeout` — between requests, inside the
//!   headers, inside a body — is closed (an in-flight body read then fails, and the request with
//!   it: nothing half-read is ever acknowledged);
//! - request headers must arrive within `header_timeout` (a client sending a byte now and then
//!   does not keep a connection forever).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// Connection bounds shared by the HTTP and gRPC listeners.
#[derive(Clone)]
pub struct ConnectionLimits {
    slots: Arc<Semaphore>,
    pub max_connections: usize,
    pub idle_timeout: Duration,
    pub header_timeout: Duration,
}

/// Descriptors kept free beside the connections: the log, ClickHouse connections, the engine.
const RESERVED_FDS: u64 = 256;

impl ConnectionLimits {
    /// `max_connections`, lowered below the process's file descriptor limit when that is lower.
    pub fn new(max_connections: usize, idle_timeout: Duration, header_timeout: Duration) -> ConnectionLimits {
        let max_connections = match fd_limit() {
            Some(fds) if (max_connections as u64) + RESERVED_FDS > fds => {
                let lowered = fds.saturating_sub(RESERVED_FDS).max(16) as usize;
                tracing::warn!(
                    configured = max_connections,
                    fd_limit = fds,
                    lowered,
                    "max_connections lowered below the file descriptor limit"
                );
                lowered
            }
            _ => max_connections,
        };
        ConnectionLimits { slots: Arc::new(Semaphore::new(max_connections)), max_connections, idle_timeout, header_timeout }
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.max_connections - self.slots.available_permits()
    }

    /// The next connection of `listener`, once a slot is free.
    pub async fn accept(&self, listener: &TcpListener) -> Bounded {
        let slot = self.slots.clone().acquire_owned().await.expect("the semaphore is never closed");
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    return Bounded::new(stream, slot, self.idle_timeout);
                }
                // Out of descriptors (or a connection reset before it was accepted): wait a
                // moment rather than spin; the slot stays reserved.
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// The soft limit on open files of this process (Linux), if known.
fn fd_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// An accepted connection: holds its slot until dropped, and fails a read that waits longer
/// than the idle timeout.
pub struct Bounded {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl Bounded {
    fn new(stream: TcpStream, slot: OwnedSemaphorePermit, idle: Duration) -> Bounded {
        Bounded { stream, _slot: slot, idle, deadline: Box::pin(tokio::time::sleep(idle)) }
    }
}

impl AsyncRead for Bounded {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(result) => {
                let idle = this.idle;
                this.deadline.as_mut().reset(Instant::now() + idle);
                Poll::Ready(result)
            }
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "connection idle past the idle timeout"))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl AsyncWrite for Bounded {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

impl tonic::transport::server::Connected for Bounded {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

/// Serves `router` on `listener` within `limits` until `shutdown`, then lets the requests in
/// flight finish.
pub async fn serve_http(
    listener: TcpListener,
    router: axum::Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::service::TowerToHyperService;

    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    builder.http2().timer(TokioTimer::new());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let io = tokio::select! {
            io = limits.accept(&listener) => io,
            _ = &mut shutdown => break,
        };
        let service = TowerToHyperService::new(router.clone());
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service).into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                count_timeout(&*e);
                tracing::debug!(error = %e, "HTTP connection ended with an error");
            }
        });
    }
    graceful.shutdown().await;
    Ok(())
}

/// Counts a connection that ended on a timeout: hyper's header read timeout, or the idle
/// timeout of [`Bounded`] (an I/O error of kind `TimedOut` somewhere in the chain).
fn count_timeout(e: &(dyn std::error::Error + 'static)) {
    use crate::metrics::{Event, count};
    let mut cause = Some(e);
    while let Some(err) = cause {
        if let Some(h) = err.downcast_ref::<hyper::Error>()
            && h.is_timeout()
        {
            return count(Event::HeaderTimeout);
        }
        if err.downcast_ref::<io::Error>().is_some_and(|io| io.kind() == io::ErrorKind::TimedOut) {
            return count(Event::IdleTimeout);
        }
        cause = err.source();
    }
}

/// The connections of `listener` within `limits`, as a stream for tonic.
pub fn incoming(listener: TcpListener, limits: ConnectionLimits) -> impl futures_util::Stream<Item = io::Result<GrpcOnly>> {
    futures_util::stream::unfold((listener, limits), |(listener, limits)| async move {
        let io = limits.accept(&listener).await;
        Some((Ok(GrpcOnly { inner: io, state: Sniff::First, held: Vec::new() }), (listener, limits)))
    })
}

/// A connection of the gRPC listener. tonic speaks HTTP/2 only and closes an HTTP/1 request
/// without a word — an OTLP/HTTP exporter pointed at port 4317 by mistake saw its connection
/// reset and nothing else. The first bytes are read here: a request line of HTTP/1 gets a 400
/// that says which port to use, then the connection ends.
pub struct GrpcOnly {
    inner: Bounded,
    state: Sniff,
    /// What the server wrote before the client's first bytes were seen (HTTP/2's SETTINGS):
    /// held, then sent first if the client speaks HTTP/2, dropped if it speaks HTTP/1.
    held: Vec<u8>,
}

impl GrpcOnly {
    /// Sends what was held, before anything else is written.
    fn poll_release(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.held.is_empty() {
            match Pin::new(&mut self.inner).poll_write(cx, &self.held) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    self.held.drain(..n);
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}

enum Sniff {
    First,
    Http2,
    /// Writing the answer to an HTTP/1 request, from this offset.
    Answering(usize),
    /// Answered: reading what the client still sends until it closes.
    Draining,
    Done,
}

const HTTP1_ANSWER: &str = "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: 151\r\n\r\n\
this port serves OTLP/gRPC (HTTP/2 only): send OTLP/HTTP (protobuf or JSON) and signals to the HTTP port instead (4318 by default, `[collector] http`)\n";

/// Whether the first bytes of a connection are an HTTP/1 request line (`POST /v1/traces …`)
/// rather than the HTTP/2 preface (`PRI * HTTP/2.0`).
fn is_http1(first: &[u8]) -> bool {
    let method_len = first.iter().take_while(|b| b.is_ascii_uppercase()).count();
    method_len >= 3 && first.get(method_len) == Some(&b' ') && !first.starts_with(b"PRI ")
}

impl AsyncRead for GrpcOnly {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            match this.state {
                Sniff::Http2 => return Pin::new(&mut this.inner).poll_read(cx, buf),
                Sniff::Done => return Poll::Ready(Ok(())),
                // A lingering close: what the client still sends is read and dropped until it
                // closes (or the idle timeout ends the connection). Closing a socket with unread
                // input resets it, and a reset can discard the answer before the client reads it.
                Sniff::Draining => {
                    let mut scratch = [0u8; 4096];
                    let mut rest = ReadBuf::new(&mut scratch);
                    match Pin::new(&mut this.inner).poll_read(cx, &mut rest) {
                        Poll::Ready(Ok(())) if !rest.filled().is_empty() => {}
                        Poll::Ready(_) => this.state = Sniff::Done,
                        Poll::Pending => return Poll::Pending,
                    }
                }
                Sniff::First => {
                    let before = buf.filled().len();
                    match Pin::new(&mut this.inner).poll_read(cx, buf) {
                        Poll::Ready(Ok(())) if is_http1(&buf.filled()[before..]) => {
                            buf.set_filled(before);
                            this.held = Vec::new();
                            this.state = Sniff::Answering(0);
                        }
                        // Nothing arrived yet: still undecided (deciding here let an HTTP/1
                        // request that came a moment later reach HTTP/2, which resets it).
                        Poll::Pending => return Poll::Pending,
                        other => {
                            this.state = Sniff::Http2;
                            return other;
                        }
                    }
                }
                Sniff::Answering(at) => {
                    let answer = HTTP1_ANSWER.as_bytes();
                    match Pin::new(&mut this.inner).poll_write(cx, &answer[at..]) {
                        Poll::Ready(Ok(n)) if at + n < answer.len() && n > 0 => this.state = Sniff::Answering(at + n),
                        Poll::Ready(_) => {
                            crate::metrics::count(crate::metrics::Event::Http1OnGrpc);
                            // The answer is followed by the end of our stream (FIN).
                            let _ = Pin::new(&mut this.inner).poll_shutdown(cx);
                            this.state = Sniff::Draining;
                        }
                        Poll::Pending => return Poll::Pending,
                    }
                }
            }
        }
    }
}

impl AsyncWrite for GrpcOnly {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match this.state {
            // Before the client's first bytes: held (bounded: the server's preface is small).
            Sniff::First if this.held.len() < 64 * 1024 => {
                this.held.extend_from_slice(buf);
                Poll::Ready(Ok(buf.len()))
            }
            Sniff::First => Poll::Pending,
            Sniff::Answering(_) | Sniff::Draining | Sniff::Done => Poll::Ready(Ok(buf.len())),
            Sniff::Http2 => {
                std::task::ready!(this.poll_release(cx))?;
                Pin::new(&mut this.inner).poll_write(cx, buf)
            }
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match this.state {
            Sniff::Http2 => {
                std::task::ready!(this.poll_release(cx))?;
                Pin::new(&mut this.inner).poll_flush(cx)
            }
            _ => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if matches!(this.state, Sniff::Http2) {
            std::task::ready!(this.poll_release(cx))?;
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for GrpcOnly {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn http1_request_lines_are_told_from_the_http2_preface() {
        assert!(super::is_http1(b"POST /v1/traces HTTP/1.1\r\n"));
        assert!(super::is_http1(b"GET / HTTP/1.0\r\n"));
        assert!(!super::is_http1(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"));
        assert!(!super::is_http1(b"PR"), "too short to tell: left to HTTP/2");
        assert!(!super::is_http1(&[0x16, 0x03, 0x01]), "a TLS hello");
    }

    #[test]
    fn the_http1_answer_has_its_length() {
        let (head, body) = super::HTTP1_ANSWER.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}", body.len())), "{head} / {}", body.len());
    }
}
