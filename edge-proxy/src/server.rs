//! Assembling and running the edge: tiers, the public service, the admin
//! service, inside one pingora [`Server`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use pingora_core::apps::HttpServerOptions;
use pingora_core::listeners::{L4BufferSettings, ListenerConfig};
use pingora_core::server::configuration::ServerConf;
use pingora_core::server::{RunArgs, Server, ShutdownSignalWatch};
use pingora_core::services::background::background_service;
use pingora_core::services::listening::Service;

use crate::admin::AdminApp;
use crate::cache::disk::DiskTier;
use crate::cache::memory::MemoryTier;
use crate::clock::{self, Clock};
use crate::config::{ConfigErrors, EdgeConfig};
use crate::metrics::{Metrics, Tier};
use crate::origin::Origin;
use crate::serve::{EdgeApp, HttpSettings};
use crate::sync::{SyncTask, Visibility};
use crate::tiers::Tiers;

/// Write buffer of each public HTTP/1 connection. pingora's default is one
/// MSS (1460 bytes), so the header of any image larger than that went out in
/// a write of its own before the body: two syscalls and two TCP pushes per
/// response. With 32 KiB, header and body of an image up to ~31 KiB leave in
/// one write (thumbnails and most web images); larger bodies bypass the
/// buffer and are written straight from the cached bytes, as before.
/// pingora flushes at the end of every response, so nothing is held back.
/// Measured on 2 KB images: ~+25% requests/s at one core; on the 35 KB-median
/// set: ~+10% (64 KiB gave ~4% more there, at 32 KiB more per busy
/// connection). Memory: up to this much per connection that has sent a
/// response of that size (pages are touched only as far as used).
const WRITE_BUFFER_BYTES: usize = 32 * 1024;

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
        let m = metrics.clone();
        let disk = DiskTier::open(&cfg.disk.path, cfg.disk.max_bytes, clock.clone(), move || {
            m.evictions.with_label_values(&[Tier::Disk.label()]).inc()
        })
        .map_err(|source| StartError::Disk { path: cfg.disk.path.display().to_string(), source })?;
        let origin = Origin::new(cfg.store.operator()?, &cfg.origin, metrics.clone());
        // The applied edge-sync state is loaded before anything is served.
        let visibility = Arc::new(match &cfg.sync {
            Some(s) => Visibility::load(&s.state_path, s.serve_without_state),
            None => Visibility::disabled(),
        });
        let tiers = Arc::new(Tiers { memory, disk: Arc::new(disk), origin, metrics, clock, visibility });

        let conf = ServerConf {
            threads: cfg.threads,
            grace_period_seconds: Some(cfg.grace_period_secs),
            graceful_shutdown_timeout_seconds: Some(cfg.shutdown_timeout_secs),
            ..ServerConf::default()
        };
        let mut server = Server::new_with_opt_and_conf(None, conf);
        server.bootstrap();

        let mut server_options = HttpServerOptions::default();
        server_options.h2c = cfg.h2c;
        let app = EdgeApp {
            tiers: tiers.clone(),
            settings: HttpSettings {
                keepalive_secs: cfg.keepalive_secs,
                max_age_secs: cfg.http.max_age_secs,
                server_options,
                policy_link: cfg.sync.as_ref().map(|s| s.policy_url.clone()),
                block_restricted: cfg.sync.as_ref().is_some_and(|s| s.restricted == crate::config::Restricted::Block),
            },
        };
        let mut public = Service::new("imgcdn edge".to_string(), app);
        for addr in &cfg.listen {
            public.add_listener(
                ListenerConfig::tcp(addr.as_str()).l4_buffer(L4BufferSettings::default().write(WRITE_BUFFER_BYTES)),
            );
        }
        if let Some(tls) = &cfg.tls {
            let cert = tls.cert_path.to_string_lossy();
            let key = tls.key_path.to_string_lossy();
            public.add_tls(&tls.listen, &cert, &key).map_err(|e| StartError::Tls(e.to_string()))?;
        }
        public.threads = Some(cfg.threads);

        // The disk index is loaded; /readyz also waits for an edge-sync state.
        let ready = Arc::new(AtomicBool::new(false));
        let mut admin =
            Service::new("imgcdn edge admin".to_string(), AdminApp { tiers: tiers.clone(), ready: ready.clone() });
        admin.add_tcp(&cfg.admin_listen);
        admin.threads = Some(1);

        server.add_service(public);
        server.add_service(admin);
        if let Some(s) = &cfg.sync {
            server.add_service(background_service("imgcdn edge sync", SyncTask::new(s.clone(), tiers.clone())));
        }
        ready.store(true, Ordering::Release);
        Ok(Edge { server, tiers })
    }

    /// Serve until `shutdown` fires, then drain gracefully. Blocks.
    pub fn run(self, shutdown: Box<dyn ShutdownSignalWatch>) {
        self.server.run(RunArgs { shutdown_signal: shutdown });
    }
}
