//! Edge sync, edge side: which image ids this edge must refuse or mark,
//! kept current from the control plane (wire format in
//! [`imgcdn_shared::sync`]).
//!
//! - [`Visibility`] holds the applied state: an immutable map swapped whole
//!   with `arc-swap`, so a request reads it without any lock.
//! - [`SyncTask`] is a pingora background service: it long-polls
//!   `changes`, falls back to a `snapshot` when told to (or when it has no
//!   state), applies each batch as a new map, purges every cached copy of an
//!   id that is taken down or hidden, persists the state (write to a
//!   temporary file, fsync, rename) and only then acknowledges the sequence.
//! - The persisted state is loaded before the edge serves its first request,
//!   so an edge restarted while the control plane is unreachable still
//!   enforces every takedown it knew (fail closed). An edge with no state
//!   at all is not ready, and answers 503, unless config allows serving.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use imgcdn_shared::sync::{Ack, Action, Change, ChangesPage, Snapshot, PATH_ACK, PATH_CHANGES, PATH_SNAPSHOT};
use imgcdn_shared::ImageId;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;

use crate::config::SyncConfig;
use crate::serve::Tiers;

/// The applied state: ids with something to enforce, as of `seq`.
#[derive(Debug, Default)]
pub struct Applied {
    pub seq: u64,
    pub entries: HashMap<ImageId, Action>,
}

impl Applied {
    fn from_snapshot(s: &Snapshot) -> Applied {
        let entries = s
            .entries
            .iter()
            .filter(|c| c.action != Action::Restore)
            .map(|c| (c.id, c.action))
            .collect::<HashMap<_, _>>();
        Applied { seq: s.seq, entries }
    }

    /// This state with `changes` applied on top, as of `seq`.
    pub fn with(&self, changes: &[Change], seq: u64) -> Applied {
        let mut entries = self.entries.clone();
        for c in changes {
            match c.action {
                Action::Restore => entries.remove(&c.id),
                a => entries.insert(c.id, a),
            };
        }
        Applied { seq: seq.max(self.seq), entries }
    }

    fn to_snapshot(&self) -> Snapshot {
        let mut entries: Vec<Change> =
            self.entries.iter().map(|(id, a)| Change { seq: self.seq, id: *id, action: *a, reason: None }).collect();
        entries.sort_by_key(|c| c.id);
        Snapshot { seq: self.seq, entries }
    }
}

/// What requests consult. Without sync configured it is empty and ready.
pub struct Visibility {
    applied: ArcSwap<Applied>,
    /// Whether this edge has a state (from disk or a snapshot) or may serve without one.
    ready: AtomicBool,
    /// The control plane's head at the last successful call (for the lag metric).
    pub head: AtomicU64,
    /// Unix seconds of the last successful call to the control plane (0 = never).
    pub last_success: AtomicU64,
}

impl Visibility {
    /// Nothing to enforce, ready: an edge without sync.
    pub fn disabled() -> Visibility {
        Visibility::new(Applied::default(), true)
    }

    fn new(applied: Applied, ready: bool) -> Visibility {
        Visibility {
            applied: ArcSwap::from_pointee(applied),
            ready: AtomicBool::new(ready),
            head: AtomicU64::new(0),
            last_success: AtomicU64::new(0),
        }
    }

    /// Load the persisted state at `path`. A missing file is "no state";
    /// an unreadable one too (logged): the edge then waits for a snapshot
    /// rather than serving what it may have been told to refuse.
    pub fn load(path: &Path, serve_without_state: bool) -> Visibility {
        let state = match std::fs::read(path) {
            Ok(bytes) => match serde_json::from_slice::<Snapshot>(&bytes) {
                Ok(s) => Some(Applied::from_snapshot(&s)),
                Err(e) => {
                    log::error!("edge sync state {} is unreadable ({e}); waiting for a snapshot", path.display());
                    None
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                log::error!("edge sync state {}: {e}; waiting for a snapshot", path.display());
                None
            }
        };
        let have = state.is_some();
        Visibility::new(state.unwrap_or_default(), have || serve_without_state)
    }

    /// What to do with `id` (`None`: serve normally). Lock-free.
    #[inline]
    pub fn action(&self, id: &ImageId) -> Option<Action> {
        let applied = self.applied.load();
        if applied.entries.is_empty() {
            return None;
        }
        applied.entries.get(id).copied()
    }

    /// Whether cached bytes of `id` must not be kept.
    pub fn blocks_caching(&self, id: &ImageId) -> bool {
        self.action(id).is_some_and(Action::purges)
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn applied(&self) -> Arc<Applied> {
        self.applied.load_full()
    }

    fn swap(&self, next: Applied) {
        self.applied.store(Arc::new(next));
        self.ready.store(true, Ordering::Release);
    }
}

/// Write `applied` to `path` atomically: a reader (the next start) sees the
/// old file or the new one, never a torn one.
pub fn persist(path: &Path, applied: &Applied) -> std::io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{}.tmp", path.file_name().and_then(|n| n.to_str()).unwrap_or("edge-sync")));
    let json = serde_json::to_vec(&applied.to_snapshot()).expect("state serialises");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&json)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    // Make the rename itself durable.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> ImageId {
        s.parse().unwrap()
    }

    fn change(seq: u64, i: &str, action: Action) -> Change {
        Change { seq, id: id(i), action, reason: None }
    }

    #[test]
    fn latest_change_per_id_wins_and_restore_removes() {
        let a = Applied::default().with(
            &[
                change(1, "aaaaaaaa", Action::Takedown),
                change(2, "bbbbbbbb", Action::Hide),
                change(3, "cccccccc", Action::Warn),
            ],
            3,
        );
        let b = a.with(&[change(4, "aaaaaaaa", Action::Restore), change(5, "bbbbbbbb", Action::Takedown)], 5);
        assert_eq!(b.seq, 5);
        assert_eq!(b.entries.get(&id("aaaaaaaa")), None);
        assert_eq!(b.entries.get(&id("bbbbbbbb")), Some(&Action::Takedown));
        assert_eq!(b.entries.get(&id("cccccccc")), Some(&Action::Warn));
        // The old state is untouched (requests holding it see a consistent view).
        assert_eq!(a.entries.get(&id("aaaaaaaa")), Some(&Action::Takedown));
    }

    #[test]
    fn persisted_state_round_trips_and_replaces_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state").join("edge-sync.json");
        let v = Visibility::load(&path, false);
        assert!(!v.is_ready(), "no state and not allowed to serve without: not ready");
        assert!(Visibility::load(&path, true).is_ready());

        let a =
            Applied::default().with(&[change(7, "aaaaaaaa", Action::Takedown), change(8, "bbbbbbbb", Action::Warn)], 9);
        persist(&path, &a).unwrap();
        persist(&path, &a).unwrap();
        let names: Vec<_> =
            std::fs::read_dir(path.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("edge-sync.json")], "no temporary file left behind");
        let v = Visibility::load(&path, false);
        assert!(v.is_ready());
        assert_eq!(v.applied().seq, 9);
        assert_eq!(v.action(&id("aaaaaaaa")), Some(Action::Takedown));
        assert_eq!(v.action(&id("bbbbbbbb")), Some(Action::Warn));
        assert_eq!(v.action(&id("cccccccc")), None);
        assert!(v.blocks_caching(&id("aaaaaaaa")) && !v.blocks_caching(&id("bbbbbbbb")));
    }

    #[test]
    fn a_corrupt_state_file_means_no_state_not_an_empty_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("edge-sync.json");
        std::fs::write(&path, b"{\"seq\": 3, \"entr").unwrap();
        assert!(!Visibility::load(&path, false).is_ready());
    }
}
