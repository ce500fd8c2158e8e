//! The live edge-sync state: the [`Applied`] value requests read without
//! any lock (swapped whole with `arc-swap`), loaded from and persisted to
//! the state files ([`super::state`]).

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use imgcdn_shared::sync::Action;
use imgcdn_shared::ImageId;

use super::applied::Applied;
use super::state::StateFiles;

/// What requests consult. Without sync configured it is empty and ready.
pub struct Visibility {
    applied: ArcSwap<Applied>,
    /// Whether this edge has a state (from disk or a snapshot) or may serve without one.
    ready: AtomicBool,
    /// The control plane's head at the last successful call (for the lag metric).
    pub head: AtomicU64,
    /// Unix seconds of the last successful call to the control plane (0 = never).
    pub last_success: AtomicU64,
    /// Where the state is persisted (none without sync).
    pub(super) files: Mutex<Option<StateFiles>>,
}

impl Visibility {
    /// Nothing to enforce, ready: an edge without sync.
    pub fn disabled() -> Visibility {
        Visibility::new(Applied::default(), true, None)
    }

    fn new(applied: Applied, ready: bool, files: Option<StateFiles>) -> Visibility {
        Visibility {
            applied: ArcSwap::from_pointee(applied),
            ready: AtomicBool::new(ready),
            head: AtomicU64::new(0),
            last_success: AtomicU64::new(0),
            files: Mutex::new(files),
        }
    }

    /// Load the persisted state at `path` (a snapshot file and its log; see
    /// [`super::state`]). Missing is "no state"; unreadable too (logged): the
    /// edge then waits for a snapshot rather than serving what it may have
    /// been told to refuse. `now` stamps entries of an old-format file.
    pub fn load(path: &Path, serve_without_state: bool, now: i64) -> Visibility {
        let (files, state) = StateFiles::open(path, now);
        let have = state.is_some();
        Visibility::new(state.unwrap_or_default(), have || serve_without_state, Some(files))
    }

    /// What to do with `id` (`None`: serve normally). Lock-free.
    #[inline]
    pub fn action(&self, id: &ImageId) -> Option<Action> {
        self.applied.load().action(id)
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
