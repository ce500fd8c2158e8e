//! Serving the router on a TCP listener with the bounds a public server
//! needs, which `axum::serve` does not expose:
//!
//! - **a connection cap** (`max_connections`): past it a new connection is
//!   answered `503` with `Retry-After` and closed at once, so idle or slow
//!   clients cannot take every file descriptor; and **a cap per client**
//!   (`max_connections_per_client`, counted per address, IPv6 per /64, in
//!   memory only, while the connections are open), so one client cannot
//!   take all of them (off behind a proxy: every connection comes from it);
//! - **a header-read timeout** (`header_read_timeout_secs`): a connection
//!   must deliver a complete request head within it, counted from when the
//!   server starts waiting for one (after accepting, and after each
//!   response on a kept-alive connection): a client that never sends a
//!   request, or trickles its headers, is closed;
//! - graceful shutdown: stop accepting, let in-flight requests finish.
//!
//! Request bodies are not under the header timeout: uploads stream at the
//! client's pace, bounded by an idle timeout between chunks (see
//! `api::images::form`).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// What bounds a connection.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    /// Per socket peer (IPv6 per /64); `None` = no per-client cap.
    pub max_per_client: Option<usize>,
    pub header_read_timeout: Duration,
    /// Longest wait for in-flight requests after shutdown began.
    pub drain_timeout: Duration,
}

const BUSY: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";

/// Serve `app` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let per_client = Arc::new(PerClient::default());
    let graceful = GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new()).keep_alive_interval(Some(Duration::from_secs(30)));
    let builder = Arc::new(builder);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off, do not spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let client = limits.max_per_client.and_then(|cap| per_client.clone().enter(peer.ip(), cap));
        let admitted = match (slots.clone().try_acquire_owned(), limits.max_per_client, client) {
            (Ok(slot), None, _) => Some((slot, None)),
            (Ok(slot), Some(_), Some(client)) => Some((slot, Some(client))),
            _ => None,
        };
        let Some((slot, client)) = admitted else {
            tokio::spawn(async move {
                let mut stream = stream;
                let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(BUSY)).await;
            });
            continue;
        };
        let _ = stream.set_nodelay(true);
        // The address reaches handlers only through `ClientMeta`.
        let service = TowerToHyperService::new(app.clone().layer(axum::Extension(ConnectInfo::<SocketAddr>(peer))));
        let (builder, watcher, first_byte) = (builder.clone(), graceful.watcher(), limits.header_read_timeout);
        tokio::spawn(async move {
            // The first byte is under the header timeout too: hyper's own
            // timer starts only once it knows the protocol, which takes a byte.
            let mut probe = [0u8; 1];
            if !matches!(tokio::time::timeout(first_byte, stream.peek(&mut probe)).await, Ok(Ok(n)) if n > 0) {
                drop((slot, client));
                return;
            }
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
            let _ = watcher.watch(connection).await;
            drop((slot, client));
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.drain_timeout, graceful.shutdown()).await.is_err() {
        tracing::warn!("shutdown: in-flight requests did not finish in time");
    }
    Ok(())
}

/// Open connections per client (an address, IPv6 per /64), for as long as
/// they are open: at most `max_connections` entries, none kept after.
#[derive(Default)]
struct PerClient {
    // A std mutex: held for a map update, never across an await.
    open: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
}

/// One open connection of a client; leaves the count when dropped.
struct ClientSlot {
    table: Arc<PerClient>,
    key: std::net::IpAddr,
}

impl PerClient {
    fn enter(self: Arc<Self>, ip: std::net::IpAddr, cap: usize) -> Option<ClientSlot> {
        let key = match ip {
            std::net::IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
                let s = v6.segments();
                std::net::IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
            std::net::IpAddr::V6(v6) => std::net::IpAddr::V4(v6.to_ipv4_mapped().expect("mapped")),
            v4 => v4,
        };
        let mut open = self.open.lock().expect("per-client table");
        let n = open.entry(key).or_insert(0);
        if *n >= cap {
            return None;
        }
        *n += 1;
        drop(open);
        Some(ClientSlot { table: self, key })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = self.table.open.lock().expect("per-client table");
        if let Some(n) = open.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}
