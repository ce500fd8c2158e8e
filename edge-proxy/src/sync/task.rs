//! The background task that keeps [`Visibility`] current: long-polls,
//! snapshots, purging, persisting, acknowledging.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use imgcdn_shared::sync::{Ack, ChangesPage, Snapshot, PATH_ACK, PATH_CHANGES, PATH_SNAPSHOT};
use imgcdn_shared::ImageId;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;

use super::visibility::{persist, Applied, Visibility};
use crate::config::SyncConfig;
use crate::tiers::Tiers;

/// Why one sync step failed.
#[derive(Debug, thiserror::Error)]
enum SyncError {
    #[error("control plane: {0}")]
    Http(#[from] reqwest::Error),
    #[error("control plane answered {0}")]
    Status(u16),
    #[error("persist state: {0}")]
    Persist(#[from] std::io::Error),
}

/// The background task that keeps [`Visibility`] current.
pub struct SyncTask {
    cfg: SyncConfig,
    tiers: Arc<Tiers>,
    client: reqwest::Client,
    /// Which of `cfg.control_planes` to use next (rotates on failure).
    current: AtomicU64,
    /// The control plane said our sequence is too far behind (or ahead).
    needs_snapshot: AtomicBool,
    /// The last sequence the control plane accepted an ack for.
    acked: AtomicU64,
    /// The sequence of the state last written to `state_path` (`u64::MAX`:
    /// not known to be written).
    persisted: AtomicU64,
}

impl SyncTask {
    pub fn new(cfg: SyncConfig, tiers: Arc<Tiers>) -> SyncTask {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("imgcdn-edge/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("http client");
        SyncTask {
            cfg,
            tiers,
            client,
            current: AtomicU64::new(0),
            needs_snapshot: AtomicBool::new(false),
            acked: AtomicU64::new(0),
            persisted: AtomicU64::new(u64::MAX),
        }
    }

    fn visibility(&self) -> &Visibility {
        &self.tiers.visibility
    }

    fn base(&self) -> &str {
        let n = self.cfg.control_planes.len() as u64;
        self.cfg.control_planes[(self.current.load(Ordering::Relaxed) % n) as usize].trim_end_matches('/')
    }

    fn succeeded(&self, head: u64) {
        let v = self.visibility();
        v.head.store(head, Ordering::Relaxed);
        v.last_success.store(self.tiers.clock.unix_now().max(0) as u64, Ordering::Relaxed);
    }

    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        timeout: Duration,
    ) -> Result<Result<T, u16>, SyncError> {
        let r = self
            .client
            .get(format!("{}{path}", self.base()))
            .bearer_auth(&self.cfg.token)
            .timeout(timeout)
            .send()
            .await?;
        let status = r.status().as_u16();
        if status != 200 {
            return Ok(Err(status));
        }
        Ok(Ok(r.json::<T>().await?))
    }

    /// One step: a snapshot when there is no state, else one long-poll.
    async fn step(&self) -> Result<(), SyncError> {
        let have = self.visibility().applied();
        if !self.visibility().is_ready() || self.needs_snapshot.load(Ordering::Relaxed) {
            return self.snapshot().await;
        }
        let wait = self.cfg.wait_ms;
        let path = format!("{PATH_CHANGES}?after={}&wait_ms={wait}", have.seq);
        match self.get::<ChangesPage>(&path, Duration::from_millis(wait + 15_000)).await? {
            Ok(page) => {
                self.succeeded(page.head);
                if page.changes.is_empty() && page.head == have.seq {
                    // Nothing new; finish what did not get through before: a
                    // failed write of the state (it is enforced, but would be
                    // lost on restart), then a failed ack.
                    if self.persisted.load(Ordering::Relaxed) != have.seq {
                        self.persist(have.clone()).await?;
                    }
                    if self.acked.load(Ordering::Relaxed) != have.seq {
                        self.ack(have.seq).await;
                    }
                    return Ok(());
                }
                // A page that stops short of the head: continue from its end.
                let upto = if page.more { page.changes.last().map_or(have.seq, |c| c.seq) } else { page.head };
                let next = have.with(&page.changes, upto);
                let purge: Vec<ImageId> = page
                    .changes
                    .iter()
                    .filter(|c| next.entries.get(&c.id).is_some_and(|a| a.purges()))
                    .map(|c| c.id)
                    .collect();
                self.install(next, purge).await
            }
            Err(410) => {
                self.needs_snapshot.store(true, Ordering::Relaxed);
                self.snapshot().await
            }
            Err(status) => Err(SyncError::Status(status)),
        }
    }

    async fn snapshot(&self) -> Result<(), SyncError> {
        let snap = match self.get::<Snapshot>(PATH_SNAPSHOT, Duration::from_secs(60)).await? {
            Ok(s) => s,
            Err(status) => return Err(SyncError::Status(status)),
        };
        self.succeeded(snap.seq);
        let before = self.visibility().applied();
        let had_state = self.visibility().is_ready() && before.seq > 0 && before.seq <= snap.seq;
        // Purge what may have been cached since our state: entries newer than
        // it, or everything when we had none (or it came from another log).
        let purge: Vec<ImageId> = snap
            .entries
            .iter()
            .filter(|c| c.action.purges() && (!had_state || c.seq > before.seq))
            .map(|c| c.id)
            .collect();
        self.install(Applied::from_snapshot(&snap), purge).await?;
        self.tiers.metrics.sync_snapshots.inc();
        self.needs_snapshot.store(false, Ordering::Relaxed);
        Ok(())
    }

    /// Swap in `next`, purge `ids` from both tiers, persist, then ack.
    async fn install(&self, next: Applied, ids: Vec<ImageId>) -> Result<(), SyncError> {
        let seq = next.seq;
        // A restored id may have been remembered as absent while it had no
        // manifest; forget that, so it is served again at once.
        let before = self.visibility().applied();
        for id in before.entries.keys().filter(|id| !next.entries.contains_key(*id)) {
            self.tiers.origin.forget_absent(id);
        }
        // Swap first: from here no request serves these ids, and no origin
        // fill caches them (see `Tiers::lookup`); then drop what is cached.
        self.visibility().swap(next);
        let purged = self.tiers.purge_many(ids).await;
        self.tiers.metrics.sync_purges.inc_by(purged as u64);
        self.persist(self.visibility().applied()).await?;
        self.tiers.metrics.sync_applied_seq.set(seq as i64);
        self.ack(seq).await;
        Ok(())
    }

    async fn persist(&self, applied: Arc<Applied>) -> Result<(), SyncError> {
        let (path, seq) = (self.cfg.state_path.clone(), applied.seq);
        tokio::task::spawn_blocking(move || persist(&path, &applied))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))??;
        self.persisted.store(seq, Ordering::Relaxed);
        Ok(())
    }

    /// Report `seq` as applied. A failure is logged and retried after the
    /// next poll (see `step`); it never holds back enforcement.
    async fn ack(&self, seq: u64) {
        let ack = self
            .client
            .post(format!("{}{PATH_ACK}", self.base()))
            .bearer_auth(&self.cfg.token)
            .timeout(Duration::from_secs(10))
            .json(&Ack { seq })
            .send()
            .await;
        match ack {
            Ok(r) if r.status().is_success() => self.acked.store(seq, Ordering::Relaxed),
            Ok(r) => log::warn!("edge sync: ack of {seq} answered {}", r.status()),
            Err(e) => log::warn!("edge sync: ack of {seq} failed: {e}"),
        }
    }
}

#[async_trait]
impl BackgroundService for SyncTask {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let retry = Duration::from_millis(self.cfg.retry_ms);
        loop {
            if *shutdown.borrow() {
                return;
            }
            let result = tokio::select! {
                r = self.step() => r,
                _ = shutdown.changed() => return,
            };
            if let Err(e) = result {
                self.tiers.metrics.sync_errors.inc();
                log::warn!("edge sync: {e}; retrying");
                // Try the next control plane, after a pause.
                self.current.fetch_add(1, Ordering::Relaxed);
                tokio::select! {
                    _ = tokio::time::sleep(retry) => {}
                    _ = shutdown.changed() => return,
                }
            }
        }
    }
}
