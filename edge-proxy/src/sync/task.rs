//! The background task that keeps [`Visibility`] current: long-polls,
//! snapshots, purging, persisting, acknowledging, and dropping `hide`
//! entries whose purpose is served.
//!
//! # Dropping `hide` entries
//! Every id ever deleted, expired or made private is a `hide` in the log,
//! so without this the state grows for ever. A `hide` is dropped when
//! `sync.hide_grace_secs` have passed since this edge applied it *and* the
//! public store confirms the id has no manifest (one `stat`; any error, or a
//! manifest still there, keeps the entry for another grace period, and the
//! latter is logged). Without the entry the id is then served as any id:
//! no manifest, 404 (and nothing cached: applying the hide purged the
//! caches, and nothing was cached while it was in force). `takedown` (451,
//! and never served from any cache or a stale manifest) and `warn` entries
//! are always kept.
//!
//! Why that is safe: the control plane writes a `hide` when an image stops
//! being servable (deleted, expired, private) and then withdraws its
//! manifest (docs/design.md, "The image lifecycle": less visible = commit
//! first, then withdraw; a deletion moves the manifest to the recovery
//! store), and the edge checks that the withdrawal happened. A hidden image
//! becomes servable again only through `lifecycle::apply`, which logs a
//! `restore` whenever the log forbade serving (and writes the manifest
//! before that commits): an edge without the entry just serves it once the
//! manifest is back, as it should.
//!
//! When it is not safe: if a manifest for a hidden id could reappear in the
//! public store *without* a new log entry. (1) The lifecycle's
//! publish-first step: when an id the log forbids becomes servable, its
//! manifest is written *before* the change commits (so edges acting on the
//! `restore` find it); if the change then does not commit, the manifest is
//! withdrawn again, but in between an edge that dropped the hide could
//! serve, and cache, the image, and no log entry would ever purge that
//! copy. The window is as long as the time from that early write to the
//! failed commit; closing it needs the control plane to publish *after*
//! the commit when the forbidding entry is a `hide` older than the edges'
//! grace period (edges no longer hold it). (2) Anything that writes the public store outside the
//! lifecycle (a restore from backup, a manual copy). Set
//! `hide_grace_secs = 0` to keep every hide if either matters more than
//! the state's size.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use imgcdn_shared::sync::{Ack, Action, ChangesPage, Snapshot, PATH_ACK, PATH_CHANGES, PATH_SNAPSHOT};
use imgcdn_shared::ImageId;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;

use super::applied::{Applied, Entry, Op};
use super::visibility::Visibility;
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
    /// Unix time before which no `hide` entry can fall due.
    next_prune: std::sync::atomic::AtomicI64,
}

/// What to persist after a change of state.
enum Record {
    /// The whole state (a snapshot replaced it, or a write failed before).
    Snapshot,
    /// These operations, as of this sequence, on top of what is persisted.
    Ops(u64, Vec<Op>),
}

/// Hide entries checked (one manifest `stat` each) per pass.
const PRUNE_BATCH: usize = 10_000;
/// Manifest checks at once.
const PRUNE_CONCURRENCY: usize = 16;

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
            next_prune: std::sync::atomic::AtomicI64::new(0),
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
                        self.persist(have.clone(), Record::Snapshot).await?;
                    }
                    if self.acked.load(Ordering::Relaxed) != have.seq {
                        self.ack(have.seq).await;
                    }
                    return Ok(());
                }
                // A page that stops short of the head: continue from its end.
                let upto = if page.more { page.changes.last().map_or(have.seq, |c| c.seq) } else { page.head };
                let now = self.tiers.clock.unix_now();
                let ops = Applied::ops_for(&page.changes, now);
                if page.changes.iter().any(|c| c.action == Action::Hide) {
                    let due = now.saturating_add(self.cfg.hide_grace_secs as i64);
                    self.next_prune.fetch_min(due, Ordering::Relaxed);
                }
                let next = have.apply(&ops, upto);
                // Every change drops the id's cached copies: a takedown or a
                // hide because it must not be served; a warning, a restore or
                // a repeated entry because the manifest may have changed (a
                // shorter expiry is logged this way), so the next request
                // reads it again.
                let purge: Vec<ImageId> = page.changes.iter().map(|c| c.id).collect();
                let seq = next.seq;
                self.install(next, purge, Record::Ops(seq, ops)).await
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
        let purge: Vec<ImageId> =
            snap.entries.iter().filter(|c| !had_state || c.seq > before.seq).map(|c| c.id).collect();
        let next = Applied::from_snapshot(&snap, self.tiers.clock.unix_now());
        self.next_prune.store(0, Ordering::Relaxed);
        self.install(next, purge, Record::Snapshot).await?;
        self.tiers.metrics.sync_snapshots.inc();
        self.needs_snapshot.store(false, Ordering::Relaxed);
        Ok(())
    }

    /// Swap in `next`, purge `ids` from both tiers, persist, then ack.
    async fn install(&self, next: Applied, ids: Vec<ImageId>, record: Record) -> Result<(), SyncError> {
        let seq = next.seq;
        // A restored id may have been remembered as absent while it had no
        // manifest; forget that, so it is served again at once.
        let before = self.visibility().applied();
        match &record {
            Record::Ops(_, ops) => {
                for op in ops {
                    if let Op::Remove(id) = op {
                        self.tiers.origin.forget_absent(id);
                    }
                }
            }
            Record::Snapshot => {
                for (id, _) in before.iter().filter(|(id, _)| next.get(id).is_none()) {
                    self.tiers.origin.forget_absent(&id);
                }
            }
        }
        // Swap first: from here no request serves these ids, and no origin
        // fill caches them (see `Tiers::lookup`); then drop what is cached.
        self.visibility().swap(next);
        let purged = self.tiers.purge_many(ids).await;
        self.tiers.metrics.sync_purges.inc_by(purged as u64);
        self.persist(self.visibility().applied(), record).await?;
        self.tiers.metrics.sync_applied_seq.set(seq as i64);
        self.ack(seq).await;
        Ok(())
    }

    async fn persist(&self, applied: Arc<Applied>, record: Record) -> Result<(), SyncError> {
        let seq = applied.seq;
        let (visibility, compact) = (self.tiers.visibility.clone(), self.cfg.compact_log_bytes);
        // Until this write is known to have landed, what is persisted is not
        // known: a retry writes the whole state.
        self.persisted.store(u64::MAX, Ordering::Relaxed);
        tokio::task::spawn_blocking(move || {
            let mut files = visibility.files.lock().unwrap_or_else(|p| p.into_inner());
            match (files.as_mut(), record) {
                (None, _) => Ok(()),
                (Some(f), Record::Snapshot) => f.write_snapshot(&applied),
                (Some(f), Record::Ops(seq, ops)) => f.record(&applied, seq, &ops, compact),
            }
        })
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))??;
        self.persisted.store(seq, Ordering::Relaxed);
        Ok(())
    }

    /// Drop `hide` entries past their grace period whose manifest the
    /// public store confirms is gone (see the module docs).
    async fn prune_hides(&self) -> Result<(), SyncError> {
        let grace = self.cfg.hide_grace_secs as i64;
        let now = self.tiers.clock.unix_now();
        if grace == 0 || now < self.next_prune.load(Ordering::Relaxed) {
            return Ok(());
        }
        let applied = self.visibility().applied();
        let (due, next) = applied.hides_due(now - grace, PRUNE_BATCH);
        let full = due.len() == PRUNE_BATCH;
        self.next_prune.store(if full { now } else { next.map_or(i64::MAX, |n| n + grace) }, Ordering::Relaxed);
        if due.is_empty() {
            return Ok(());
        }
        let origin = &self.tiers.origin;
        let checked: Vec<(ImageId, Entry, bool)> = futures_util::stream::iter(due)
            .map(|(id, e)| async move { (id, e, origin.manifest_exists(&id).await) })
            .buffer_unordered(PRUNE_CONCURRENCY)
            .map(|(id, e, exists)| {
                let gone = match exists {
                    Ok(false) => true,
                    Ok(true) => {
                        log::warn!(
                            "edge sync: {id} is hidden but still has a manifest in the public store; keeping it"
                        );
                        false
                    }
                    Err(e) => {
                        log::warn!("edge sync: could not check the manifest of hidden {id} ({e}); keeping it");
                        false
                    }
                };
                (id, e, gone)
            })
            .collect()
            .await;
        // On top of the state as it is now, only where the entry is unchanged.
        let current = self.visibility().applied();
        let mut dropped = 0u64;
        let ops: Vec<Op> = checked
            .into_iter()
            .filter(|(id, e, _)| current.get(id) == Some(*e))
            .map(|(id, _, gone)| {
                if gone {
                    dropped += 1;
                    Op::Remove(id)
                } else {
                    // Checked again after another grace period.
                    Op::Set(id, Entry { action: Action::Hide, at: now })
                }
            })
            .collect();
        if ops.is_empty() {
            return Ok(());
        }
        if ops.iter().any(|op| matches!(op, Op::Set(..))) {
            self.next_prune.fetch_min(now.saturating_add(grace), Ordering::Relaxed);
        }
        let seq = current.seq;
        self.visibility().swap(current.apply(&ops, seq));
        self.tiers.metrics.sync_hides_dropped.inc_by(dropped);
        if dropped > 0 {
            log::info!("edge sync: dropped {dropped} hide entries past their grace period");
        }
        self.persist(self.visibility().applied(), Record::Ops(seq, ops)).await
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
                r = async {
                    self.step().await?;
                    self.prune_hides().await
                } => r,
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
