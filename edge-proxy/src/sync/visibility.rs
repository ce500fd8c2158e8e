//! The applied edge-sync state: ids with something to enforce, in an
//! immutable map swapped whole with `arc-swap` (a request reads it without
//! any lock), loaded from and persisted to a state file.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use imgcdn_shared::sync::{Action, Change, Snapshot};
use imgcdn_shared::ImageId;

/// The applied state: ids with something to enforce, as of `seq`.
#[derive(Debug, Default)]
pub struct Applied {
    pub seq: u64,
    pub entries: HashMap<ImageId, Action>,
}

impl Applied {
    pub(super) fn from_snapshot(s: &Snapshot) -> Applied {
        let entries = s
            .entries
            .iter()
            .filter(|c| c.action != Action::Restore)
            .map(|c| (c.id, c.action))
            .collect::<HashMap<_, _>>();
        Applied { seq: s.seq, entries }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
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

    pub(super) fn to_snapshot(&self) -> Snapshot {
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

    pub(super) fn swap(&self, next: Applied) {
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
