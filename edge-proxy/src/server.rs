//! Assembling and running the edge: tiers, the public service, the admin
//! service, inside one pingora [`Server`].

use std::sync::Arc;
use std::time::Duration;

use pingora_core::apps::HttpServerOptions;
use pingora_core::listeners::{L4BufferSettings, ListenerConfig};
use pingora_core::server::configuration::ServerConf;
use pingora_core::server::{RunArgs, Server, ShutdownSignalWatch};
use pingora_core::services::background::background_service;
use pingora_core::services::listening::Service;

use crate::admin::AdminApp;
use crate::budget::SendBudget;
use crate::cache::disk::{DiskEvents, DiskTier};
use crate::cache::memory::MemoryTier;
use crate::clock::{self, Clock};
use crate::config::{ConfigErrors, EdgeConfig};
use crate::metrics::{Metrics, Tier};
use crate::origin::{Origin, Staging};
use crate::readiness::{DrainingWatch, Readiness, StartupChecks};
use crate::serve::conn::{ConnLimits, Guarded};
use crate::serve::{EdgeApp, HttpSettings};
use crate::sync::{SyncTask, Visibility};
use crate::tiers::Tiers;
use crate::variants::Variants;

/// Why the edge could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigErrors),
    #[error("disk cache at {path}: {source}")]
    Disk { path: String, source: std::io::Error },
    #[error("store: {0}")]
    Store(#[from] opendal::Error),
    #[error("tls listener: {0}")]
    Tls(String),
}

/// A built edge, ready to [`run`](Edge::run).
pub struct Edge {
    server: Server,
    pub tiers: Arc<Tiers>,
    readiness: Arc<Readiness>,
}

impl Edge {
    /// Validate `cfg`, open the caches and the store, and set up listeners
    /// (bound when [`run`](Edge::run) starts).
    pub fn build(cfg: &EdgeConfig) -> Result<Edge, StartError> {
        Self::build_with_clock(cfg, clock::system())
    }

    pub fn build_with_clock(cfg: &EdgeConfig, clock: Arc<dyn Clock>) -> Result<Edge, StartError> {
        cfg.validate()?;
        let metrics = Arc::new(Metrics::new());
        let m = metrics.clone();
        let memory = MemoryTier::new(cfg.memory.max_bytes, cfg.memory.max_object_bytes, clock.clone(), move || {
            m.evictions.with_label_values(&[Tier::Memory.label()]).inc()
        });
        let (m, r) = (metrics.clone(), metrics.disk_read_bytes.clone());
        let events = DiskEvents {
            evicted: Box::new(move || m.evictions.with_label_values(&[Tier::Disk.label()]).inc()),
            read_bytes: Box::new(move |n| r.inc_by(n)),
        };
        let disk = DiskTier::open(&cfg.disk.path, cfg.disk.max_bytes, clock.clone(), events)
            .map_err(|source| StartError::Disk { path: cfg.disk.path.display().to_string(), source })?;
        let disk = Arc::new(disk);
        let (max_connections, open_files) = fd_budget(cfg.limits.max_connections, cfg.disk.open_files);
        disk.keep_open(open_files, cfg.disk.sendfile_min_bytes);
        // Objects the memory tier does not take are streamed from the store
        // into the disk tier rather than read into memory.
        let staging = Staging { disk: disk.clone(), above: cfg.memory.max_object_bytes };
        let origin = Origin::new(cfg.store.operator()?, &cfg.origin, metrics.clone(), Some(staging));
        // The applied edge-sync state is loaded before anything is served.
        let visibility = Arc::new(match &cfg.sync {
            Some(s) => Visibility::load(&s.state_path, s.serve_without_state, clock.unix_now()),
            None => Visibility::disabled(),
        });
        let budget = SendBudget::new(cfg.limits.send_buffer_bytes, metrics.send_budget_bytes.clone());
        let variants = cfg
            .transforms
            .enabled
            .then(|| Arc::new(Variants::new(&cfg.transforms, disk.clone(), visibility.clone(), metrics.clone())));
        let tiers = Arc::new(Tiers {
            variants,
            memory,
            disk,
            origin,
            metrics,
            clock,
            visibility,
            budget,
            budget_wait: Duration::from_millis(cfg.limits.send_buffer_wait_ms),
            disk_inline_max: cfg.disk.inline_read_max_bytes,
            file_min: if open_files == 0 { u64::MAX } else { cfg.disk.sendfile_min_bytes },
        });

        // pingora sleeps the whole grace period (in-flight responses have
        // that long to finish), then gives its runtimes the shutdown timeout
        // on top: so that `shutdown_timeout_secs` bounds the whole shutdown,
        // the runtimes get what is left of it after the grace period.
        let conf = ServerConf {
            threads: cfg.threads,
            work_stealing: cfg.work_stealing,
            grace_period_seconds: Some(cfg.grace_period_secs),
            graceful_shutdown_timeout_seconds: Some(cfg.shutdown_timeout_secs - cfg.grace_period_secs),
            ..ServerConf::default()
        };
        let mut server = Server::new_with_opt_and_conf(None, conf);
        server.bootstrap();

        let mut server_options = HttpServerOptions::default();
        server_options.h2c = cfg.h2c;
        server_options.h2_idle_timeout = Some(Duration::from_secs(cfg.keepalive_secs));
        let app = EdgeApp {
            tiers: tiers.clone(),
            settings: HttpSettings {
                keepalive_secs: cfg.keepalive_secs,
                max_age_secs: cfg.http.max_age_secs,
                server_options,
                policy_link: cfg.sync.as_ref().map(|s| s.policy_link()),
                block_restricted: cfg.sync.as_ref().is_some_and(|s| s.restricted == crate::config::Restricted::Block),
                send_timeout: Duration::from_secs(cfg.limits.send_timeout_secs),
                retry_after_secs: cfg.limits.retry_after_secs,
            },
        };
        let limits = ConnLimits {
            max_connections,
            header_timeout: Duration::from_secs(cfg.limits.header_timeout_secs),
            keepalive: Duration::from_secs(cfg.keepalive_secs),
            retry_after_secs: cfg.limits.retry_after_secs,
        };
        let guarded = Guarded::new(Arc::new(app), limits, tiers.metrics.clone());
        let mut public = Service::new("imgcdn edge".to_string(), guarded);
        // No buffers under a plain connection: pingora reads a request
        // head straight into its own buffer, and the connection wrapper
        // sends a response's head and body in one vectored write straight
        // from their bytes (see serve/conn.rs). pingora's default L4
        // buffers (64 KiB read, 1,460 B write) would copy every request
        // and small response once more, through per-connection memory.
        for addr in &cfg.listen {
            public.add_listener(ListenerConfig::tcp(addr.as_str()).l4_buffer(L4BufferSettings::new(0, 0)));
        }
        if let Some(tls) = &cfg.tls {
            let cert = tls.cert_path.to_string_lossy();
            let key = tls.key_path.to_string_lossy();
            public.add_tls(&tls.listen, &cert, &key).map_err(|e| StartError::Tls(e.to_string()))?;
        }
        public.threads = Some(cfg.threads);

        // The disk index is loaded; /readyz also waits for the listeners, the
        // store and an edge-sync state.
        let readiness = Arc::new(Readiness::default());
        let mut admin = Service::new(
            "imgcdn edge admin".to_string(),
            AdminApp { tiers: tiers.clone(), readiness: readiness.clone() },
        );
        admin.add_tcp(&cfg.admin_listen);
        admin.threads = Some(1);

        server.add_service(public);
        server.add_service(admin);
        if let Some(s) = &cfg.sync {
            server.add_service(background_service("imgcdn edge sync", SyncTask::new(s.clone(), tiers.clone())));
        }
        let mut listen = cfg.listen.clone();
        listen.extend(cfg.tls.as_ref().map(|t| t.listen.clone()));
        let checks = StartupChecks { readiness: readiness.clone(), listen, store: cfg.store.operator()? };
        server.add_service(background_service("imgcdn edge startup checks", checks));
        Ok(Edge { server, tiers, readiness })
    }

    /// Serve until `shutdown` fires, then drain gracefully (not ready from
    /// the moment it fires). Blocks.
    pub fn run(self, shutdown: Box<dyn ShutdownSignalWatch + Send + Sync>) {
        let shutdown = Box::new(DrainingWatch { inner: shutdown, readiness: self.readiness });
        self.server.run(RunArgs { shutdown_signal: shutdown });
    }
}

/// File descriptors kept for everything but client connections and files
/// kept open (listeners, the store, disk-tier writes, logs, the sync client).
const RESERVED_FDS: u64 = 256;

/// (`limits.max_connections`, `disk.open_files`), lowered so that they fit
/// the process's open-files limit: past it, accept() fails and every client
/// waits, which the cap exists to prevent.
fn fd_budget(connections: usize, open_files: usize) -> (usize, usize) {
    let Some(limit) = open_files_limit() else { return (connections, open_files) };
    fit_fds(limit, connections, open_files)
}

/// Files kept open get at most a quarter of what is left after
/// [`RESERVED_FDS`]; each connection then needs two descriptors (its socket
/// and the disk-tier file of a streamed response).
fn fit_fds(limit: u64, connections: usize, open_files: usize) -> (usize, usize) {
    let spare = limit.saturating_sub(RESERVED_FDS);
    let files = open_files.min((spare / 4) as usize);
    if files < open_files {
        log::warn!(
            "disk.open_files lowered from {open_files} to {files}: the open-files limit is {limit} \
             (raise it, e.g. LimitNOFILE, to allow more)"
        );
    }
    let fits = ((spare - files as u64) / 2).max(1) as usize;
    if fits < connections {
        log::warn!(
            "limits.max_connections lowered from {connections} to {fits}: the open-files limit is {limit} \
             (raise it, e.g. LimitNOFILE, to allow more)"
        );
        return (fits, files);
    }
    (connections, files)
}

/// The soft limit on open files, from /proc/self/limits (Linux).
fn open_files_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_open_files_limit() {
        if std::path::Path::new("/proc/self/limits").exists() {
            assert!(super::open_files_limit().is_some_and(|n| n > 0));
        }
        assert!(super::fd_budget(usize::MAX, 0).0 < usize::MAX || super::open_files_limit().is_none());
    }

    #[test]
    fn connections_and_open_files_fit_the_limit_together() {
        use super::fit_fds;
        // Plenty: nothing lowered.
        assert_eq!(fit_fds(1_000_000, 10_000, 4096), (10_000, 4096));
        // 1,024: 768 spare, a quarter for files, two per connection.
        let (conns, files) = fit_fds(1024, 10_000, 4096);
        assert_eq!((conns, files), (288, 192));
        assert!(256 + files as u64 + 2 * conns as u64 <= 1024);
        // Files off: all of it for connections.
        assert_eq!(fit_fds(1024, 10_000, 0), (384, 0));
    }
}
