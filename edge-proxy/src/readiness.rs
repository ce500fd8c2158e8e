//! When the edge may be sent traffic (`/readyz` 200): every listener is
//! bound, the store answered, the edge-sync state is loaded or received,
//! and it is not draining after SIGTERM.
//!
//! pingora binds the listeners when the server runs, and a listener that
//! cannot bind is retried in the background for ever; so readiness is
//! proven from outside: [`StartupChecks`] waits until this process holds a
//! listening socket on each listen port (from `/proc`; a connection would
//! also succeed to another process holding the port), and reads a probe key from the store until the store
//! answers (not found is an answer; bad credentials or an unreachable
//! endpoint are not). [`DrainingWatch`] marks the edge not ready the moment
//! a shutdown signal arrives, so a load balancer stops sending before the
//! listeners close.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use opendal::ErrorKind;
use pingora_core::server::{ShutdownSignal, ShutdownSignalWatch, ShutdownWatch};
use pingora_core::services::background::BackgroundService;

/// The store key read to see that the store answers (it need not exist).
pub const STORE_PROBE_KEY: &str = "manifests/.imgcdn-readiness-probe";

#[derive(Debug, Default)]
pub struct Readiness {
    listeners: AtomicBool,
    store: AtomicBool,
    draining: AtomicBool,
}

impl Readiness {
    /// Why the edge is not ready (`None`: it is), given whether the
    /// edge-sync state is there.
    pub fn not_ready(&self, sync_ready: bool) -> Option<&'static str> {
        if self.draining.load(Ordering::Acquire) {
            Some("draining")
        } else if !self.listeners.load(Ordering::Acquire) {
            Some("starting: a listener is not bound yet")
        } else if !self.store.load(Ordering::Acquire) {
            Some("starting: the store has not answered yet")
        } else if !sync_ready {
            Some("starting: waiting for the edge-sync state")
        } else {
            None
        }
    }
}

/// Proves the listeners and the store, then stops.
pub struct StartupChecks {
    pub readiness: Arc<Readiness>,
    /// Every public listen address (`host:port`).
    pub listen: Vec<String>,
    pub store: opendal::Operator,
}

/// Where to connect to reach a listener bound to `addr` (an unspecified
/// address is reached on loopback).
fn reachable(addr: &str) -> Option<SocketAddr> {
    let mut a = addr.to_socket_addrs().ok()?.next()?;
    if a.ip().is_unspecified() {
        a.set_ip(if a.is_ipv4() { [127, 0, 0, 1].into() } else { std::net::Ipv6Addr::LOCALHOST.into() });
    }
    Some(a)
}

/// The TCP ports this process listens on, from `/proc` (Linux): the
/// inodes of its own sockets (`/proc/self/fd`) among the listening sockets
/// of `/proc/net/tcp{,6}`. `None` where `/proc` cannot tell.
fn own_listening_ports() -> Option<std::collections::HashSet<u16>> {
    let mut own = std::collections::HashSet::new();
    for fd in std::fs::read_dir("/proc/self/fd").ok()?.flatten() {
        let target = std::fs::read_link(fd.path()).ok();
        let inode = target.as_ref().and_then(|t| t.to_str()).and_then(|t| t.strip_prefix("socket:["));
        if let Some(inode) = inode.and_then(|i| i.strip_suffix(']')) {
            own.insert(inode.to_string());
        }
    }
    let mut ports = std::collections::HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else { continue };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // local_address is cols[1] (`HEXIP:HEXPORT`), st cols[3] (0A:
            // LISTEN), inode cols[9].
            let (Some(local), Some(state), Some(inode)) = (cols.get(1), cols.get(3), cols.get(9)) else { continue };
            if *state != "0A" || !own.contains(*inode) {
                continue;
            }
            if let Some(port) = local.rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok()) {
                ports.insert(port);
            }
        }
    }
    Some(ports)
}

impl StartupChecks {
    /// Whether every listen address is bound by this process. A connection
    /// that succeeds proves nothing when another process holds the port
    /// (ours then retries its bind for ever), so where `/proc` can tell,
    /// the listening socket must be ours; elsewhere a connection is the
    /// best evidence there is.
    async fn listeners_bound(&self) -> bool {
        let own = own_listening_ports();
        for addr in &self.listen {
            let Some(a) = reachable(addr) else { return false };
            if let Some(own) = &own {
                if !own.contains(&a.port()) {
                    return false;
                }
                continue;
            }
            let connect = tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(a));
            if !matches!(connect.await, Ok(Ok(_))) {
                return false;
            }
        }
        true
    }

    /// Whether the store answers: the probe key is read (not found is fine).
    async fn store_answers(&self) -> Result<(), String> {
        match self.store.stat(STORE_PROBE_KEY).await {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }
}

#[async_trait]
impl BackgroundService for StartupChecks {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let started = Instant::now();
        let mut warned_listeners = false;
        let mut last_store_error = String::new();
        loop {
            if !self.readiness.listeners.load(Ordering::Acquire) {
                if self.listeners_bound().await {
                    self.readiness.listeners.store(true, Ordering::Release);
                } else if started.elapsed() > Duration::from_secs(5) && !warned_listeners {
                    log::error!("not ready: a listener of {:?} is not accepting connections", self.listen);
                    warned_listeners = true;
                }
            }
            if !self.readiness.store.load(Ordering::Acquire) {
                match self.store_answers().await {
                    Ok(()) => self.readiness.store.store(true, Ordering::Release),
                    Err(e) if e != last_store_error => {
                        log::error!("not ready: the store does not answer: {e}");
                        last_store_error = e;
                    }
                    Err(_) => {}
                }
            }
            if self.readiness.listeners.load(Ordering::Acquire) && self.readiness.store.load(Ordering::Acquire) {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// A shutdown watch that marks the edge draining when the signal comes.
pub struct DrainingWatch {
    pub inner: Box<dyn ShutdownSignalWatch + Send + Sync>,
    pub readiness: Arc<Readiness>,
}

#[async_trait]
impl ShutdownSignalWatch for DrainingWatch {
    async fn recv(&self) -> ShutdownSignal {
        let signal = self.inner.recv().await;
        self.readiness.draining.store(true, Ordering::Release);
        signal
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_missing_part_is_named_and_draining_wins() {
        let r = Readiness::default();
        assert_eq!(r.not_ready(true), Some("starting: a listener is not bound yet"));
        r.listeners.store(true, Ordering::Release);
        assert_eq!(r.not_ready(true), Some("starting: the store has not answered yet"));
        r.store.store(true, Ordering::Release);
        assert_eq!(r.not_ready(false), Some("starting: waiting for the edge-sync state"));
        assert_eq!(r.not_ready(true), None);
        r.draining.store(true, Ordering::Release);
        assert_eq!(r.not_ready(true), Some("draining"));
    }

    #[test]
    fn own_listeners_are_found_and_others_are_not() {
        let ours = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = ours.local_addr().unwrap().port();
        let ports = own_listening_ports().expect("/proc tells on Linux");
        assert!(ports.contains(&port), "{port} not in {ports:?}");
        drop(ours);
        assert!(!own_listening_ports().unwrap().contains(&port));
    }

    #[test]
    fn unspecified_addresses_are_reached_on_loopback() {
        assert_eq!(reachable("0.0.0.0:8080"), Some("127.0.0.1:8080".parse().unwrap()));
        assert_eq!(reachable("[::]:8080"), Some("[::1]:8080".parse().unwrap()));
        assert_eq!(reachable("127.0.0.1:9"), Some("127.0.0.1:9".parse().unwrap()));
    }
}
