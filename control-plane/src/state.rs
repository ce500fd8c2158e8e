//! [`AppState`]: everything a handler or a background task needs, cheap to
//! clone (handles to shared services).

use std::sync::Arc;

use imgcdn_shared::clock::Clock;
use tokio::sync::Notify;

use crate::config::Config;
use crate::db::Db;
use crate::{accounts, images, metrics, moderation, ratelimit, requestlog, sync, workers};

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub cfg: Arc<Config>,
    pub clock: Arc<dyn Clock>,
    pub passwords: accounts::password::Passwords,
    pub limiter: Arc<ratelimit::RateLimiter>,
    /// Wakes the email delivery loop after mail was queued.
    pub mail_wake: Arc<Notify>,
    /// The public and recovery object stores.
    pub stores: Arc<images::store::Stores>,
    /// The latest edge-sync sequence number known here; wakes long-polls.
    pub sync: Arc<sync::Hub>,
    /// Upload bodies held in memory, over all requests.
    pub body_budget: Arc<images::budget::MemoryBudget>,
    /// Memory of image decoding, over all uploads.
    pub decode_budget: Arc<images::budget::MemoryBudget>,
    /// The threads that decode uploads and run the detector.
    pub decoders: workers::Workers,
    /// The blocklist and the classifiers uploads go through.
    pub classifiers: Arc<moderation::pipeline::Classifiers>,
    /// Wakes the classification job loop after an upload queued a job.
    pub classify_wake: Arc<Notify>,
    /// Wakes the export job loop after an export was asked for.
    pub export_wake: Arc<Notify>,
    /// Prometheus metrics (served on the admin listener).
    pub metrics: Arc<metrics::Metrics>,
    /// API-key calls on their way to the request log.
    pub request_log: requestlog::RequestLog,
}

/// Why the state could not be built (the configuration is bad).
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("store: {0}")]
    Store(#[from] opendal::Error),
    #[error(transparent)]
    Classifiers(#[from] moderation::pipeline::SetupError),
}

impl AppState {
    /// Fails if a store cannot be opened or a configured classifier set up.
    pub fn new(db: Db, cfg: Config, clock: Arc<dyn Clock>) -> Result<AppState, StateError> {
        let wait = std::time::Duration::from_millis(cfg.uploads.budget_wait_ms);
        let budget = |bytes| Arc::new(images::budget::MemoryBudget::new(bytes, wait));
        Ok(AppState {
            classifiers: Arc::new(moderation::pipeline::Classifiers::from_config(&cfg.moderation)?),
            classify_wake: Arc::new(Notify::new()),
            export_wake: Arc::new(Notify::new()),
            metrics: Arc::new(metrics::Metrics::with_sweep_steps(&crate::retention::sweep::STEPS)),
            request_log: requestlog::RequestLog::start(db.clone()),
            body_budget: budget(cfg.uploads.body_budget_bytes),
            decode_budget: budget(cfg.uploads.decode_budget_bytes),
            decoders: workers::Workers::new("decode", cfg.uploads.decode_threads),
            stores: Arc::new(images::store::Stores::open(
                &cfg.stores.public,
                &cfg.stores.staging,
                &cfg.stores.recovery,
            )?),
            passwords: accounts::password::Passwords::new(&cfg.passwords),
            limiter: Arc::new(ratelimit::RateLimiter::new(clock.clone())),
            db,
            cfg: Arc::new(cfg),
            clock,
            mail_wake: Arc::new(Notify::new()),
            sync: Arc::new(sync::Hub::default()),
        })
    }
}
