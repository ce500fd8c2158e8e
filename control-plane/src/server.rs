//! Starting and stopping the control plane: [`ControlPlane::bind`] (config,
//! database, mailer, listener) then [`ControlPlane::run`] (the API and the
//! background loops: mail delivery, image sweep, edge-sync watch).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use imgcdn_shared::clock;

use crate::config::{self, Config};
use crate::db::Db;
use crate::{email, http, moderation, privacy, retention, storage_names, sync, AppState};

/// The HTTP API (see [`http::router`]).
pub fn app(state: AppState) -> axum::Router {
    http::router(state)
}

/// Why the control plane could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] config::ConfigErrors),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("email: {0}")]
    Email(String),
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error("{0}")]
    Store(String),
    #[error("listen on {addr}: {source}")]
    Listen { addr: String, source: std::io::Error },
}

/// A control plane that is connected, migrated and bound, ready to [`run`](ControlPlane::run).
pub struct ControlPlane {
    listener: tokio::net::TcpListener,
    /// `/metrics`, `/healthz`, `/readyz`, for operators only.
    admin: tokio::net::TcpListener,
    state: AppState,
    mailer: Arc<dyn email::Mailer>,
    from: lettre::message::Mailbox,
}

impl ControlPlane {
    /// Validate `cfg`, connect and migrate the database, build the mailer
    /// and bind the listener. Nothing is served yet.
    pub async fn bind(cfg: Config) -> Result<ControlPlane, StartError> {
        ControlPlane::bind_with_clock(cfg, clock::system()).await
    }

    /// [`ControlPlane::bind`] with the clock every decision reads (tests run
    /// a real control plane on a clock of their own).
    pub async fn bind_with_clock(cfg: Config, clock: Arc<dyn clock::Clock>) -> Result<ControlPlane, StartError> {
        cfg.validate()?;
        let db = Db::connect(&cfg.database_url).await?;
        let mailer = email::mailer(&cfg.email).map_err(StartError::Email)?;
        let from = cfg.email.from.parse().map_err(|e| StartError::Email(format!("from: {e}")))?;
        let listener = tokio::net::TcpListener::bind(&cfg.listen)
            .await
            .map_err(|source| StartError::Listen { addr: cfg.listen.clone(), source })?;
        let admin = tokio::net::TcpListener::bind(&cfg.admin_listen)
            .await
            .map_err(|source| StartError::Listen { addr: cfg.admin_listen.clone(), source })?;
        let state = AppState::new(db, cfg, clock)?;
        // Every store must take a write, a read and a delete now, not at
        // the first upload.
        state.stores.check().await.map_err(StartError::Store)?;
        Ok(ControlPlane { listener, admin, state, mailer, from })
    }

    /// The admin listener's address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.local_addr().expect("bound listener has an address")
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound listener has an address")
    }

    /// Serve until `shutdown` completes; then stop accepting, finish
    /// in-flight requests and stop the email loop.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), StartError> {
        let ControlPlane { listener, admin, state, mailer, from } = self;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let delivery = tokio::spawn(email::delivery_loop(
            state.db.clone(),
            mailer,
            from,
            state.clock.clone(),
            state.mail_wake.clone(),
            state.metrics.clone(),
            stop_rx,
        ));
        let draining = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let admin_server =
            tokio::spawn(http::admin::serve(admin, state.clone(), draining.clone(), stop_tx.subscribe()));
        let sweeper = tokio::spawn(retention::sweep::sweep_loop(state.clone(), stop_tx.subscribe()));
        let sync_watch = tokio::spawn(sync::watch_loop(state.clone(), stop_tx.subscribe()));
        let classify = tokio::spawn(moderation::jobs::job_loop(state.clone(), stop_tx.subscribe()));
        let exports = tokio::spawn(privacy::export::job_loop(state.clone(), stop_tx.subscribe()));
        // Once per start: teams and images from before storage names get theirs.
        let naming_state = state.clone();
        let naming = tokio::spawn(async move {
            if let Err(e) = storage_names::name_existing(&naming_state).await {
                tracing::warn!(error = %e, "naming storages failed; retried at the next start");
            }
        });
        let addr = listener.local_addr().ok();
        let hub = state.sync.clone();
        let shutdown = async move {
            shutdown.await;
            // Not ready from now on: load balancers stop sending.
            draining.store(true, std::sync::atomic::Ordering::Release);
            // Waiting long-polls would hold the graceful shutdown up to their wait.
            hub.close();
        };
        let limits = http::listener::Limits {
            max_connections: state.cfg.max_connections,
            // Behind a proxy every connection comes from it: the proxy caps per client.
            max_per_client: (state.cfg.client_ip_header.is_none() && state.cfg.max_connections_per_client > 0)
                .then_some(state.cfg.max_connections_per_client),
            header_read_timeout: std::time::Duration::from_secs(state.cfg.header_read_timeout_secs),
            drain_timeout: std::time::Duration::from_secs(state.cfg.request_timeout_secs),
        };
        let result = http::listener::serve(listener, app(state), limits, shutdown).await;
        let _ = stop_tx.send(true);
        let _ = delivery.await;
        let _ = sweeper.await;
        let _ = sync_watch.await;
        let _ = classify.await;
        let _ = exports.await;
        naming.abort();
        let _ = admin_server.await;
        result.map_err(|source| StartError::Listen { addr: addr.map(|a| a.to_string()).unwrap_or_default(), source })
    }
}

/// [`ControlPlane::bind`] then [`ControlPlane::run`].
pub async fn serve(cfg: Config, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), StartError> {
    ControlPlane::bind(cfg).await?.run(shutdown).await
}
