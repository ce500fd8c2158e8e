//! Connection-level limits of the public listeners: how many connections
//! may be open at once, and how long a connection may take to deliver a
//! request head.
//!
//! pingora hands every accepted connection to a [`ServerApp`]. [`Guarded`]
//! is that app for the public listeners: it counts the connection against
//! `limits.max_connections` (over the cap the connection gets a canned
//! `503` with `Retry-After` and is closed at once, before anything is read)
//! and wraps the stream in a [`TrackedStream`] before handing it to the HTTP
//! app (pingora's HTTP/1 and HTTP/2 handling, then [`super::EdgeApp`]).
//!
//! [`TrackedStream`] enforces the request-head deadline on the reads
//! themselves, so it covers everything pingora reads before a request
//! exists: the h2c preface peek, the HTTP/1 request head and a kept-alive
//! connection waiting for its next request:
//!
//! - a new connection must deliver a complete request head within
//!   `limits.header_timeout_secs` of being accepted;
//! - after a response, the next request's first byte must come within
//!   `keepalive_secs`, and its head must then be complete within
//!   `limits.header_timeout_secs`;
//! - while a request is answered, reads have no deadline here (we read no
//!   request bodies; writes have `limits.send_timeout_secs`);
//! - an HTTP/2 connection is past the deadline once its preface is read;
//!   from there pingora's HTTP/2 idle timeout (`keepalive_secs`) applies.
//!
//! A connection past its deadline gets a read error, which pingora and our
//! app treat as the end of the connection. On HTTP/1 these deadlines are the
//! only timer on reads: the app turns off pingora's own timer around each
//! read of a request head where [`TrackedStream::bounds_reads`] says this
//! wrapper bounds them.
//!
//! [`TrackedStream`] also coalesces writes on HTTP/1 connections: pingora
//! writes a response's head and its body separately, which would cost two
//! `write`s and two TCP segments per response, the first carrying only the
//! head. A small write (up to [`HOLD_MAX`] bytes: a head) is held until the
//! next write or a flush. pingora flushes at the end of every response, so
//! nothing is held across a wait for the client. On a plain socket the next
//! write goes out with what is held at once, in one `writev` straight from
//! the caller's bytes: a body from the memory tier is not copied in user
//! space at all, and nothing under this wrapper buffers (the listeners give
//! pingora no L4 buffers: copying each body into a per-connection buffer
//! cost more than it saved, in cache misses once there are hundreds of
//! connections). Through TLS, where a vectored write sends one slice, small
//! writes run together up to [`HOLD_MAX`] bytes so that a small response is
//! still one write; a larger one is written after what is held.
//!
//! On HTTP/1 without TLS, [`TrackedStream`] can also send a response body
//! from a disk-tier file with `sendfile(2)` ([`TrackedStream::send_file`],
//! [`super::sendfile`]); the held response head leaves with `MSG_MORE`, so
//! head and body still share a segment.
//!
//! Nothing here looks at, stores or logs the client's address: the cap is a
//! plain count.

use std::fmt;
use std::fs::File;
use std::future::Future;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora_core::apps::ServerApp;
use pingora_core::protocols::l4::stream::Stream as PlainStream;
use pingora_core::protocols::raw_connect::ProxyDigest;
use pingora_core::protocols::tls::{SslDigest, TlsRef};
use pingora_core::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream, TimingDigest,
    UniqueID, UniqueIDType, ALPN,
};
use pingora_core::server::ShutdownWatch;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::sendfile::{self, FileBody};
use crate::metrics::Metrics;

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Writes are held while what is held stays within this many bytes (a
/// response head, or a whole small response).
pub const HOLD_MAX: usize = 4096;

/// The limits [`Guarded`] and [`TrackedStream`] enforce.
#[derive(Debug, Clone)]
pub struct ConnLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub keepalive: Duration,
    pub retry_after_secs: u64,
}

/// The public listeners' [`ServerApp`]: counts connections, refuses those
/// over the cap, and gives the rest a [`TrackedStream`].
pub struct Guarded<A> {
    pub app: Arc<A>,
    pub limits: ConnLimits,
    pub metrics: Arc<Metrics>,
    open: Arc<AtomicUsize>,
}

impl<A> Guarded<A> {
    pub fn new(app: Arc<A>, limits: ConnLimits, metrics: Arc<Metrics>) -> Self {
        Guarded { app, limits, metrics, open: Arc::new(AtomicUsize::new(0)) }
    }

    /// Connections open now (for tests and the gauge).
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

/// Decrements the open-connection count when the connection ends.
struct Slot {
    open: Arc<AtomicUsize>,
    metrics: Arc<Metrics>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
        self.metrics.connections_open.dec();
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for Guarded<A> {
    async fn process_new(self: &Arc<Self>, mut stream: Stream, shutdown: &ShutdownWatch) -> Option<Stream> {
        let n = self.open.fetch_add(1, Ordering::Relaxed);
        self.metrics.connections_open.inc();
        let _slot = Slot { open: self.open.clone(), metrics: self.metrics.clone() };
        if n >= self.limits.max_connections {
            // Over the cap: answer without reading anything, and close.
            self.metrics.connections_refused.inc();
            let text = "service unavailable\n";
            let answer = format!(
                "HTTP/1.1 503 Service Unavailable\r\nRetry-After: {}\r\nContent-Type: text/plain; charset=utf-8\r\n\
                 Content-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{text}",
                self.limits.retry_after_secs,
                text.len()
            );
            let _ = tokio::time::timeout(Duration::from_millis(100), async {
                stream.write_all(answer.as_bytes()).await?;
                stream.flush().await
            })
            .await;
            Shutdown::shutdown(&mut *stream).await;
            return None;
        }
        let mut tracked = TrackedStream::new(stream, &self.limits, self.metrics.clone());
        if matches!(tracked.selected_alpn_proto(), Some(ALPN::H2)) {
            // HTTP/2 over TLS: no preface peek happens; the HTTP/2 idle
            // timeout applies from the start.
            tracked.deadline.phase.store(PHASE_OFF, Ordering::Relaxed);
            tracked.coalesce = false;
        }
        let tracked: Stream = Box::new(tracked);
        // HTTP apps hand back nothing: they loop over kept-alive requests themselves.
        self.app.process_new(tracked, shutdown).await
    }

    async fn cleanup(&self) {
        self.app.cleanup().await;
    }
}

/// Where a connection is in its life, as far as read deadlines go.
const PHASE_HEAD: u8 = 0;
const PHASE_IDLE: u8 = 1;
const PHASE_OFF: u8 = 2;

/// The deadline state of one connection, shared between the stream (which
/// enforces it) and the app (which moves it on): a phase and a deadline in
/// milliseconds since the connection was accepted.
struct Deadline {
    start: Instant,
    phase: AtomicU8,
    at_ms: AtomicU64,
    header_timeout: Duration,
    keepalive: Duration,
}

impl Deadline {
    fn instant(&self) -> Instant {
        self.start + Duration::from_millis(self.at_ms.load(Ordering::Relaxed))
    }

    /// Move the deadline to `within` after `now` (read by the caller, which
    /// has one at hand: every clock read is on the per-request path).
    fn set(&self, now: Instant, phase: u8, within: Duration) {
        let at = now.saturating_duration_since(self.start) + within;
        self.at_ms.store(at.as_millis() as u64, Ordering::Relaxed);
        self.phase.store(phase, Ordering::Relaxed);
    }
}

/// A client connection with a request-head deadline (see the module docs).
pub struct TrackedStream {
    inner: Stream,
    deadline: Arc<Deadline>,
    /// Armed at (or, until it fires and is moved on, before) the deadline
    /// while a read is pending; kept for the connection's life.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    metrics: Arc<Metrics>,
    /// Small writes not yet passed on (see the module docs).
    held: Vec<u8>,
    /// Whether small writes are held: HTTP/1 only (HTTP/2 frames are
    /// already gathered by its codec).
    coalesce: bool,
    /// The socket, when bodies may be sent from files (plain TCP, no TLS).
    socket: Option<RawFd>,
    /// The body being sent from a file (see [`TrackedStream::send_file`]).
    file: Mutex<Option<FileBody>>,
}

impl fmt::Debug for TrackedStream {
    /// Deliberately says nothing of the peer.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TrackedStream")
    }
}

impl TrackedStream {
    fn new(inner: Stream, limits: &ConnLimits, metrics: Arc<Metrics>) -> Self {
        let deadline = Arc::new(Deadline {
            start: Instant::now(),
            phase: AtomicU8::new(PHASE_HEAD),
            at_ms: AtomicU64::new(limits.header_timeout.as_millis() as u64),
            header_timeout: limits.header_timeout,
            keepalive: limits.keepalive,
        });
        // Bodies may be sent from files only on a plain TCP or Unix socket:
        // never through TLS, which has to encrypt them (a TLS stream is not
        // a plain pingora stream).
        let socket =
            inner.as_any().downcast_ref::<PlainStream>().map(|s| s.as_raw_fd()).filter(|&fd| sendfile::is_socket(fd));
        TrackedStream {
            inner,
            deadline,
            timer: None,
            metrics,
            held: Vec::new(),
            coalesce: true,
            socket,
            file: Mutex::new(None),
        }
    }

    /// Arrange for the next response body to be sent from `file`: `len`
    /// bytes from `offset`. Returns the stand-in body to write through
    /// pingora in its place, or `None` when this connection cannot send
    /// from files (TLS, HTTP/2, not a socket, or a body too large for the
    /// stand-in): the caller then sends the body as usual.
    pub fn send_file(stream: Option<&Stream>, file: Arc<File>, offset: u64, len: u64) -> Option<bytes::Bytes> {
        let t = stream?.as_any().downcast_ref::<TrackedStream>()?;
        let len = usize::try_from(len).ok().filter(|&l| l <= sendfile::FILE_BODY_MAX)?;
        if t.socket.is_none() || !t.coalesce {
            return None;
        }
        *t.file.lock().unwrap_or_else(|p| p.into_inner()) = Some(FileBody::new(file, offset, len));
        Some(sendfile::stand_in(len))
    }

    /// Whether this connection can send bodies from files.
    pub fn sends_files(stream: Option<&Stream>) -> bool {
        stream
            .and_then(|s| s.as_any().downcast_ref::<TrackedStream>())
            .is_some_and(|t| t.socket.is_some() && t.coalesce)
    }

    /// Whether the reads of this connection's next request head are bounded
    /// here (the head and keep-alive deadlines): an HTTP/1 connection of a
    /// public listener, between requests.
    pub fn bounds_reads(stream: Option<&Stream>) -> bool {
        Self::deadline_of(stream).is_some_and(|d| d.phase.load(Ordering::Relaxed) != PHASE_OFF)
    }

    /// The request head has been read: no read deadline while it is answered.
    pub fn request_read(stream: Option<&Stream>) {
        if let Some(d) = Self::deadline_of(stream) {
            d.phase.store(PHASE_OFF, Ordering::Relaxed);
        }
    }

    /// The response was out at `now`: the next request must start within
    /// the keep-alive time (and its head then be complete within the header
    /// timeout).
    pub fn response_sent(stream: Option<&Stream>, now: Instant) {
        if let Some(d) = Self::deadline_of(stream) {
            d.set(now, PHASE_IDLE, d.keepalive);
        }
    }

    fn deadline_of(stream: Option<&Stream>) -> Option<&Deadline> {
        stream?.as_any().downcast_ref::<TrackedStream>().map(|t| &*t.deadline)
    }

    fn timed_out(&mut self) -> std::io::Error {
        self.timer = None;
        self.metrics.connections_timed_out.inc();
        // Nothing more will be read: a later read fails at once.
        self.deadline.at_ms.store(0, Ordering::Relaxed);
        self.deadline.phase.store(PHASE_HEAD, Ordering::Relaxed);
        std::io::Error::new(std::io::ErrorKind::TimedOut, "request head deadline passed")
    }
}

impl AsyncRead for TrackedStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let phase = this.deadline.phase.load(Ordering::Relaxed);
        if phase == PHASE_OFF {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let at = this.deadline.instant();
        // The clock is read only when bytes came: a read that waits is ended
        // by the timer below, and one that ends the connection needs no
        // deadline. Bytes that arrive past the head deadline are refused
        // (a head trickled in does not keep the connection).
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                let now = Instant::now();
                if phase == PHASE_IDLE {
                    // The next request has started: its head has the header timeout.
                    this.deadline.set(now, PHASE_HEAD, this.deadline.header_timeout);
                } else if now >= at {
                    return Poll::Ready(Err(this.timed_out()));
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(r) => Poll::Ready(r),
            Poll::Pending => {
                // The timer lives as long as the connection: re-arming it
                // on every request costs more than the one early wake per
                // header-timeout period that an older, earlier deadline
                // can cause (it is then moved on to the real one).
                let at = tokio::time::Instant::from_std(at);
                let timer = this.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
                if timer.deadline() > at {
                    timer.as_mut().reset(at);
                }
                loop {
                    match timer.as_mut().poll(cx) {
                        Poll::Ready(()) if timer.deadline() < at => timer.as_mut().reset(at),
                        Poll::Ready(()) => return Poll::Ready(Err(this.timed_out())),
                        Poll::Pending => return Poll::Pending,
                    }
                }
            }
        }
    }
}

impl TrackedStream {
    /// pingora writes `len` bytes of the stand-in from `offset`: send the
    /// armed file's bytes instead (see [`super::sendfile`]).
    fn poll_write_file(&mut self, cx: &mut Context<'_>, offset: usize, len: usize) -> Poll<std::io::Result<usize>> {
        let out_of_step = || std::io::Error::other("a file body written out of step");
        let Some(fd) = self.socket else { return Poll::Ready(Err(out_of_step())) };
        match self.file.get_mut().unwrap_or_else(|p| p.into_inner()) {
            Some(f) if f.in_step(offset) => {}
            _ => return Poll::Ready(Err(out_of_step())),
        }
        // Nothing may be queued in pingora's buffer ahead of the body.
        std::task::ready!(Pin::new(&mut self.inner).poll_flush(cx))?;
        // The head first, marked as having more to come.
        while !self.held.is_empty() {
            match sendfile::send_more(fd, &self.held) {
                Ok(n) => drop(self.held.drain(..n)),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    // No room: through the writer, which waits for it.
                    let n = std::task::ready!(Pin::new(&mut self.inner).poll_write(cx, &self.held))?;
                    self.held.drain(..n);
                    std::task::ready!(Pin::new(&mut self.inner).poll_flush(cx))?;
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        let slot = self.file.get_mut().unwrap_or_else(|p| p.into_inner());
        let f = slot.as_mut().expect("checked above");
        let sent = match f.send(fd, len) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                // No room: a piece goes through the writer (which takes it
                // into its buffer); the next write flushes it first, which
                // waits for room the usual way.
                let mut piece = [0u8; 16 * 1024];
                let n = f.read_next(&mut piece[..len.min(16 * 1024)])?;
                let n = std::task::ready!(Pin::new(&mut self.inner).poll_write(cx, &piece[..n]))?;
                f.advance(n);
                n
            }
            Err(e) => return Poll::Ready(Err(e)),
        };
        if f.done() {
            *slot = None;
        }
        Poll::Ready(Ok(sent))
    }

    /// Pass everything held on to the connection.
    fn poll_release(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while !self.held.is_empty() {
            let n = std::task::ready!(Pin::new(&mut self.inner).poll_write(cx, &self.held))?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            self.held.drain(..n);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for TrackedStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        if let Some(offset) = sendfile::stand_in_offset(buf) {
            return this.poll_write_file(cx, offset, buf.len());
        }
        if this.coalesce {
            // A head (or another small write) is held; after it, on a plain
            // socket, the next write goes out with it now (below), and
            // elsewhere small writes run together (see the module docs).
            let total = this.held.len() + buf.len();
            if total <= HOLD_MAX && (this.held.is_empty() || this.socket.is_none()) {
                this.held.extend_from_slice(buf);
                return Poll::Ready(Ok(buf.len()));
            }
        }
        // A larger write: what is held goes out with it, in one write where
        // the connection takes it all.
        while !this.held.is_empty() {
            let bufs = [std::io::IoSlice::new(&this.held), std::io::IoSlice::new(buf)];
            let n = std::task::ready!(Pin::new(&mut this.inner).poll_write_vectored(cx, &bufs))?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            if n > this.held.len() {
                let from_buf = n - this.held.len();
                this.held.clear();
                return Poll::Ready(Ok(from_buf));
            }
            this.held.drain(..n);
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        std::task::ready!(self.poll_release(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        std::task::ready!(self.poll_release(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        if self.held.is_empty() && !self.coalesce {
            return Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        }
        // Rare (HTTP/1 writes whole slices): one slice at a time.
        let first = bufs.iter().find(|b| !b.is_empty()).map_or(&[][..], |b| &b[..]);
        self.poll_write(cx, first)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[async_trait]
impl Shutdown for TrackedStream {
    async fn shutdown(&mut self) {
        // Whatever is still held goes out first.
        let _ = std::future::poll_fn(|cx| self.poll_release(cx)).await;
        Shutdown::shutdown(&mut *self.inner).await
    }
}

impl UniqueID for TrackedStream {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for TrackedStream {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }
    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }
    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for TrackedStream {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }
    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }
    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for TrackedStream {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }
    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for TrackedStream {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }
    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for TrackedStream {
    /// pingora peeks for the h2c preface before anything else: that wait
    /// has the request-head deadline too. A connection that sent the preface
    /// is HTTP/2, past the head deadline (HTTP/2's idle timeout takes over).
    async fn try_peek(&mut self, buf: &mut [u8]) -> std::io::Result<bool> {
        let at = tokio::time::Instant::from_std(self.deadline.instant());
        match tokio::time::timeout_at(at, self.inner.try_peek(buf)).await {
            Ok(Ok(true)) => {
                if buf == H2_PREFACE {
                    self.deadline.phase.store(PHASE_OFF, Ordering::Relaxed);
                    self.coalesce = false;
                }
                Ok(true)
            }
            Ok(r) => r,
            Err(_) => Err(self.timed_out()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn limits(header_ms: u64, keepalive_ms: u64) -> ConnLimits {
        ConnLimits {
            max_connections: 10,
            header_timeout: Duration::from_millis(header_ms),
            keepalive: Duration::from_millis(keepalive_ms),
            retry_after_secs: 1,
        }
    }

    #[tokio::test]
    async fn a_silent_connection_fails_at_the_header_deadline() {
        let (client, server) = tokio::io::duplex(1024);
        let mut s = TrackedStream::new(Box::new(server), &limits(100, 1000), Arc::new(Metrics::new()));
        let started = Instant::now();
        let mut buf = [0u8; 16];
        let e = s.read(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
        // Slack for a loaded machine; the read would otherwise never end.
        assert!(started.elapsed() < Duration::from_secs(2));
        drop(client);
    }

    #[tokio::test]
    async fn trickled_bytes_do_not_extend_the_head_deadline() {
        let (mut client, server) = tokio::io::duplex(1024);
        let mut s = TrackedStream::new(Box::new(server), &limits(500, 1000), Arc::new(Metrics::new()));
        // A byte every 50 ms for 2 s, well past the 500 ms deadline.
        tokio::spawn(async move {
            for _ in 0..40 {
                if client.write_all(b"G").await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        let started = Instant::now();
        let mut buf = [0u8; 16];
        let e = loop {
            match s.read(&mut buf).await {
                Ok(n) => assert!(n > 0),
                Err(e) => break e,
            }
        };
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(490) && took < Duration::from_millis(1500), "{took:?}");
    }

    #[tokio::test]
    async fn reads_while_answering_have_no_deadline_and_idle_has_keepalive() {
        let (mut client, server) = tokio::io::duplex(1024);
        let s = TrackedStream::new(Box::new(server), &limits(100, 2000), Arc::new(Metrics::new()));
        let mut stream: Stream = Box::new(s);
        TrackedStream::request_read(Some(&stream));
        tokio::time::sleep(Duration::from_millis(150)).await;
        client.write_all(b"x").await.unwrap();
        let mut buf = [0u8; 4];
        assert_eq!(stream.read(&mut buf).await.unwrap(), 1, "no deadline while answering");
        TrackedStream::response_sent(Some(&stream), Instant::now());
        // Idle: the first byte may take up to the keep-alive time…
        tokio::time::sleep(Duration::from_millis(200)).await;
        client.write_all(b"G").await.unwrap();
        assert_eq!(stream.read(&mut buf).await.unwrap(), 1);
        // …then the head has the header timeout (100 ms), not what is left
        // of the keep-alive time (~1.8 s).
        let started = Instant::now();
        let e = stream.read(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn a_timer_armed_for_an_earlier_deadline_does_not_cut_a_later_one() {
        let (mut client, server) = tokio::io::duplex(1024);
        let s = TrackedStream::new(Box::new(server), &limits(300, 1500), Arc::new(Metrics::new()));
        let metrics = s.metrics.clone();
        let mut stream: Stream = Box::new(s);
        let mut buf = [0u8; 4];
        // A read waits with the head deadline (300 ms) armed…
        let writer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            client.write_all(b"G").await.unwrap();
            client
        });
        assert_eq!(stream.read(&mut buf).await.unwrap(), 1);
        let mut client = writer.await.unwrap();
        TrackedStream::request_read(Some(&stream));
        TrackedStream::response_sent(Some(&stream), Instant::now());
        // …and the idle connection now has 1.5 s: the timer still set for
        // the old deadline fires at 300 ms and must only be moved on.
        let started = Instant::now();
        let writer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(600)).await;
            client.write_all(b"E").await.unwrap();
            client
        });
        assert_eq!(stream.read(&mut buf).await.unwrap(), 1, "cut at the old head deadline");
        assert!(started.elapsed() >= Duration::from_millis(550));
        assert_eq!(metrics.connections_timed_out.get(), 0);
        let _client = writer.await.unwrap();
        // The new head has its own header timeout, and the timer ends it.
        let e = stream.read(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
        assert_eq!(metrics.connections_timed_out.get(), 1);
    }

    #[tokio::test]
    async fn a_small_write_is_held_until_the_next_larger_write_or_a_flush() {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let mut s = TrackedStream::new(Box::new(server), &limits(1000, 1000), Arc::new(Metrics::new()));
        s.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
        let mut buf = vec![0u8; 64];
        let early = tokio::time::timeout(Duration::from_millis(50), client.read(&mut buf)).await;
        assert!(early.is_err(), "the head was sent on its own");
        let body = vec![b'x'; 10_000];
        s.write_all(&body).await.unwrap();
        let mut got = vec![0u8; 19 + body.len()];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got[..19], b"HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!(&got[19..], &body[..]);
        // A whole small response goes out at the flush.
        let not_modified = b"HTTP/1.1 304 Not Modified\r\n\r\n";
        s.write_all(not_modified).await.unwrap();
        s.flush().await.unwrap();
        let mut got = vec![0u8; not_modified.len()];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, not_modified);
        // And at shutdown.
        s.write_all(b"bye").await.unwrap();
        Shutdown::shutdown(&mut s).await;
        // (A pipe's shutdown does nothing: the drop ends it, after what the
        // shutdown released; dropping does not release what is held.)
        drop(s);
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"bye");
    }

    #[tokio::test]
    async fn held_and_large_writes_arrive_whole_and_in_order_through_a_slow_reader() {
        // A 100-byte pipe: every write is partial, held bytes included.
        let (mut client, server) = tokio::io::duplex(100);
        let mut s = TrackedStream::new(Box::new(server), &limits(1000, 1000), Arc::new(Metrics::new()));
        let mut expected = Vec::new();
        let mut writes = Vec::new();
        for i in 0..200u32 {
            let len = [7usize, 300, 5000, 1, 4096, 20_000][i as usize % 6];
            let piece: Vec<u8> = (0..len).map(|j| (i as usize * 31 + j) as u8).collect();
            expected.extend_from_slice(&piece);
            writes.push(piece);
        }
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            client.read_to_end(&mut got).await.unwrap();
            got
        });
        for (i, w) in writes.iter().enumerate() {
            s.write_all(w).await.unwrap();
            if i % 17 == 0 {
                s.flush().await.unwrap();
            }
        }
        Shutdown::shutdown(&mut s).await;
        drop(s);
        assert!(reader.await.unwrap() == expected, "bytes lost, repeated or reordered");
    }

    /// Both ends of a real TCP connection (files are only sent to sockets),
    /// the server's wrapped, their buffers small so that the socket fills
    /// up.
    async fn tcp_pair() -> (Stream, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, server) = tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
        let server = server.unwrap().0;
        let client = client.unwrap();
        sendfile::set_buffers(server.as_raw_fd(), 32 * 1024).unwrap();
        sendfile::set_buffers(client.as_raw_fd(), 32 * 1024).unwrap();
        let server: Stream = Box::new(PlainStream::from(server));
        (Box::new(TrackedStream::new(server, &limits(1000, 1000), Arc::new(Metrics::new()))), client)
    }

    /// Read the client's end to its close, slowly until `slow_for` bytes
    /// have come (the server's socket fills and its sends find no room).
    fn slow_reader(mut client: tokio::net::TcpStream, slow_for: usize) -> tokio::task::JoinHandle<Vec<u8>> {
        tokio::spawn(async move {
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = client.read(&mut buf).await.unwrap();
                if n == 0 {
                    return got;
                }
                got.extend_from_slice(&buf[..n]);
                if got.len() < slow_for {
                    tokio::time::sleep(Duration::from_micros(100)).await;
                }
            }
        })
    }

    fn file_of(bytes: &[u8]) -> Arc<File> {
        let mut f = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut f, bytes).unwrap();
        Arc::new(f)
    }

    #[tokio::test]
    async fn file_bodies_follow_their_heads_whole_and_in_order_through_a_slow_reader() {
        let (mut s, client) = tcp_pair().await;
        let body: Vec<u8> = (0..2_000_000u32).map(|i| (i.wrapping_mul(7) ^ (i >> 11)) as u8).collect();
        let file = file_of(&[b"PREFIX".as_slice(), &body].concat());
        let reader = slow_reader(client, 500_000);
        let mut expected = Vec::new();
        for (head, range) in
            [(&b"HTTP/1.1 200 OK\r\n\r\n"[..], 0..body.len()), (b"HTTP/1.1 206 x\r\n\r\n", 1000..70_000)]
        {
            s.write_all(head).await.unwrap();
            let len = range.len() as u64;
            let stand_in = TrackedStream::send_file(Some(&s), file.clone(), 6 + range.start as u64, len)
                .expect("a plain TCP connection sends files");
            s.write_all(&stand_in).await.unwrap();
            s.flush().await.unwrap();
            expected.extend_from_slice(head);
            expected.extend_from_slice(&body[range]);
        }
        // An ordinary response after them still comes in order.
        s.write_all(b"HTTP/1.1 304 x\r\n\r\n").await.unwrap();
        s.flush().await.unwrap();
        expected.extend_from_slice(b"HTTP/1.1 304 x\r\n\r\n");
        Shutdown::shutdown(&mut *s).await;
        drop(s);
        let got = reader.await.unwrap();
        assert_eq!(got.len(), expected.len());
        assert!(got == expected, "bytes lost, repeated or reordered");
    }

    #[tokio::test]
    async fn a_response_leaves_a_socket_in_one_segment() {
        // The stream as a listener hands it over (nothing buffers under the
        // wrapper), Nagle off so that every write the wrapper makes starts
        // a segment of its own: head and body must go in as few segments as
        // their bytes need together (one on loopback's 64 KiB MSS).
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, server) = tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
        let (mut client, server) = (client.unwrap(), server.unwrap().0);
        server.set_nodelay(true).unwrap();
        let fd = server.as_raw_fd();
        let mut s =
            TrackedStream::new(Box::new(PlainStream::from(server)), &limits(1000, 1000), Arc::new(Metrics::new()));
        for (i, body_len) in [0usize, 10, 2000, 4000, 5000, 20_000].into_iter().enumerate() {
            let head: Vec<u8> = (0..250).map(|j| (i + j) as u8).collect();
            let body: Vec<u8> = (0..body_len).map(|j| (i * 3 + j) as u8).collect();
            let (before, mss) = sendfile::segments_sent(fd);
            s.write_all(&head).await.unwrap();
            if !body.is_empty() {
                s.write_all(&body).await.unwrap();
            }
            s.flush().await.unwrap();
            let mut got = vec![0u8; head.len() + body.len()];
            client.read_exact(&mut got).await.unwrap();
            assert!(got == [head, body].concat(), "bytes lost or reordered ({body_len}-byte body)");
            let need = got.len().div_ceil(mss as usize) as u32;
            assert_eq!(
                sendfile::segments_sent(fd).0 - before,
                need,
                "a response with a {body_len}-byte body took more segments than its bytes need (MSS {mss})"
            );
        }
    }

    #[tokio::test]
    async fn the_stand_in_is_never_sent_in_place_of_a_file() {
        let (mut s, _client) = tcp_pair().await;
        // Not armed: the write fails rather than send the stand-in.
        let e = s.write_all(&sendfile::stand_in(10)).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::Other);
        // Armed, but written from the wrong place: fails too.
        let stand_in = TrackedStream::send_file(Some(&s), file_of(b"0123456789"), 0, 10).unwrap();
        assert!(s.write_all(&stand_in[4..]).await.is_err());
        // A stream that is not a plain socket (TLS, a pipe) never sends files.
        let (_c, pipe) = tokio::io::duplex(1024);
        let pipe: Stream = Box::new(TrackedStream::new(Box::new(pipe), &limits(1000, 1000), Arc::new(Metrics::new())));
        assert!(!TrackedStream::sends_files(Some(&pipe)));
        assert!(TrackedStream::send_file(Some(&pipe), file_of(b"x"), 0, 1).is_none());
    }

    #[tokio::test]
    async fn responses_of_every_size_arrive_whole_and_in_order_on_a_socket() {
        // Heads and bodies of every size around the hold limit, on a plain
        // TCP connection (a body goes out with its held head in one vectored
        // write), through a slow reader: partial writes of the held head,
        // of the body and of both together.
        let (mut s, client) = tcp_pair().await;
        let reader = slow_reader(client, 300_000);
        let mut expected = Vec::new();
        for i in 0..120usize {
            let head: Vec<u8> = (0..150 + i * 3).map(|j| (i * 7 + j) as u8).collect();
            let body_len = [0usize, 10, 2000, 4000, 30_000, 32 * 1024, 40_000, 300_000][i % 8];
            let body: Vec<u8> = (0..body_len).map(|j| (i * 13 + j * 3) as u8).collect();
            s.write_all(&head).await.unwrap();
            if !body.is_empty() {
                s.write_all(&body).await.unwrap();
            }
            if i % 3 != 1 {
                // Two of three responses flushed, the others run together
                // with the next (as pipelined answers may).
                s.flush().await.unwrap();
            }
            expected.extend_from_slice(&head);
            expected.extend_from_slice(&body);
        }
        Shutdown::shutdown(&mut *s).await;
        drop(s);
        let got = reader.await.unwrap();
        assert_eq!(got.len(), expected.len());
        assert!(got == expected, "bytes lost, repeated or reordered");
    }
}
