//! The applied edge-sync state: ids with something to enforce as of a
//! sequence number, as an immutable value ([`Applied`]) that
//! [`super::visibility`] swaps whole and [`super::state`] persists.
//!
//! # Two levels
//! A state is a large shared `base` map plus a small `overlay` of changes
//! made since (an overlay entry of `None` is a removal). Applying a batch
//! copies only the overlay; when the overlay outgrows
//! `max(4096, base / 16)` entries it is folded into a new base (one copy of
//! the base, amortised over the batches that filled the overlay). Before,
//! every batch cloned the whole map: O(state) per batch. A lookup checks
//! the overlay, then the base.
//!
//! # Entries
//! Each entry keeps the time this edge applied it (`at`, unix seconds), so
//! that `hide` entries can be dropped after `sync.hide_grace_secs` (see
//! [`super::task`] for when that is safe and how it is checked).

use std::collections::HashMap;
use std::sync::Arc;

use imgcdn_shared::sync::{Action, Change, Snapshot};
use imgcdn_shared::ImageId;

/// What an edge enforces for one id, and since when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub action: Action,
    /// Unix seconds (edge clock) this entry was applied here.
    pub at: i64,
}

/// One change to the state: what persisting it records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Set(ImageId, Entry),
    Remove(ImageId),
}

/// The applied state: ids with something to enforce, as of `seq`.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    pub seq: u64,
    base: Arc<HashMap<ImageId, Entry>>,
    overlay: HashMap<ImageId, Option<Entry>>,
    len: usize,
}

/// Overlay entries beyond which it is folded into the base.
fn overlay_limit(base: usize) -> usize {
    (base / 16).max(4096)
}

impl Applied {
    /// A state of exactly `entries`, as of `seq`.
    pub fn from_entries(seq: u64, entries: HashMap<ImageId, Entry>) -> Applied {
        let len = entries.len();
        Applied { seq, base: Arc::new(entries), overlay: HashMap::new(), len }
    }

    /// The state a control-plane snapshot describes, applied at `now`.
    pub fn from_snapshot(s: &Snapshot, now: i64) -> Applied {
        let entries = s
            .entries
            .iter()
            .filter(|c| c.action != Action::Restore)
            .map(|c| (c.id, Entry { action: c.action, at: now }))
            .collect::<HashMap<_, _>>();
        Applied::from_entries(s.seq, entries)
    }

    pub fn get(&self, id: &ImageId) -> Option<Entry> {
        match self.overlay.get(id) {
            Some(e) => *e,
            None => self.base.get(id).copied(),
        }
    }

    #[inline]
    pub fn action(&self, id: &ImageId) -> Option<Action> {
        if self.len == 0 {
            return None;
        }
        self.get(id).map(|e| e.action)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (ImageId, Entry)> + '_ {
        let base = self.base.iter().filter(|(id, _)| !self.overlay.contains_key(*id)).map(|(id, e)| (*id, *e));
        base.chain(self.overlay.iter().filter_map(|(id, e)| e.map(|e| (*id, e))))
    }

    /// The operations that apply `changes` (received at `now`).
    pub fn ops_for(changes: &[Change], now: i64) -> Vec<Op> {
        changes
            .iter()
            .map(|c| match c.action {
                Action::Restore => Op::Remove(c.id),
                a => Op::Set(c.id, Entry { action: a, at: now }),
            })
            .collect()
    }

    /// This state with `changes` applied on top (at `now`), as of `seq`.
    pub fn with(&self, changes: &[Change], seq: u64, now: i64) -> Applied {
        self.apply(&Applied::ops_for(changes, now), seq)
    }

    /// This state with `ops` applied on top, as of `seq` (or the current
    /// sequence, if higher). Copies the overlay, not the base.
    pub fn apply(&self, ops: &[Op], seq: u64) -> Applied {
        let mut next =
            Applied { seq: seq.max(self.seq), base: self.base.clone(), overlay: self.overlay.clone(), len: self.len };
        for op in ops {
            let (id, new) = match *op {
                Op::Set(id, e) => (id, Some(e)),
                Op::Remove(id) => (id, None),
            };
            let had = next.get(&id).is_some();
            next.len = next.len + usize::from(new.is_some()) - usize::from(had);
            if new.is_none() && !self.base.contains_key(&id) {
                next.overlay.remove(&id);
            } else {
                next.overlay.insert(id, new);
            }
        }
        if next.overlay.len() > overlay_limit(next.base.len()) {
            next.fold();
        }
        next
    }

    /// Fold the overlay into a new base.
    fn fold(&mut self) {
        let mut base = (*self.base).clone();
        for (id, e) in self.overlay.drain() {
            match e {
                Some(e) => base.insert(id, e),
                None => base.remove(&id),
            };
        }
        self.base = Arc::new(base);
    }

    /// `hide` entries applied at or before `before`, at most `limit` of
    /// them, and the earliest `at` among the other hide entries (when the
    /// next may fall due).
    pub fn hides_due(&self, before: i64, limit: usize) -> (Vec<(ImageId, Entry)>, Option<i64>) {
        let mut due = Vec::new();
        let mut next: Option<i64> = None;
        for (id, e) in self.iter().filter(|(_, e)| e.action == Action::Hide) {
            if e.at <= before && due.len() < limit {
                due.push((id, e));
            } else {
                next = Some(next.map_or(e.at, |n| n.min(e.at)));
            }
        }
        (due, next)
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
            100,
        );
        let b = a.with(&[change(4, "aaaaaaaa", Action::Restore), change(5, "bbbbbbbb", Action::Takedown)], 5, 200);
        assert_eq!(b.seq, 5);
        assert_eq!(b.action(&id("aaaaaaaa")), None);
        assert_eq!(b.get(&id("bbbbbbbb")), Some(Entry { action: Action::Takedown, at: 200 }));
        assert_eq!(b.get(&id("cccccccc")), Some(Entry { action: Action::Warn, at: 100 }));
        assert_eq!(b.len(), 2);
        // The old state is untouched (requests holding it see a consistent view).
        assert_eq!(a.action(&id("aaaaaaaa")), Some(Action::Takedown));
        assert_eq!(a.len(), 3);
    }

    /// Against a plain map, through many batches and folds.
    #[test]
    fn two_levels_behave_like_one_map() {
        let mut model: HashMap<ImageId, Entry> = HashMap::new();
        let mut state = Applied::default();
        let mut x = 12345u64;
        let mut rnd = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        for batch in 0..300u64 {
            let mut ops = Vec::new();
            for _ in 0..rnd(200) {
                let i = ImageId::from_bytes(format!("{:0>8}", rnd(20_000)).as_bytes()).unwrap();
                let action = [Action::Takedown, Action::Hide, Action::Warn, Action::Restore][rnd(4) as usize];
                if action == Action::Restore {
                    ops.push(Op::Remove(i));
                    model.remove(&i);
                } else {
                    let e = Entry { action, at: batch as i64 };
                    ops.push(Op::Set(i, e));
                    model.insert(i, e);
                }
            }
            state = state.apply(&ops, batch);
            assert_eq!(state.len(), model.len(), "batch {batch}");
        }
        let got: HashMap<_, _> = state.iter().collect();
        assert_eq!(got, model);
        for (i, e) in &model {
            assert_eq!(state.get(i), Some(*e));
        }
    }

    #[test]
    fn hides_due_by_application_time() {
        let a = Applied::default()
            .with(&[change(1, "aaaaaaaa", Action::Hide), change(2, "bbbbbbbb", Action::Takedown)], 2, 100)
            .with(&[change(3, "cccccccc", Action::Hide), change(4, "dddddddd", Action::Warn)], 4, 200);
        let (due, next) = a.hides_due(150, 10);
        assert_eq!(due, vec![(id("aaaaaaaa"), Entry { action: Action::Hide, at: 100 })]);
        assert_eq!(next, Some(200));
        assert_eq!(a.hides_due(99, 10), (vec![], Some(100)));
        assert_eq!(a.hides_due(1000, 10).0.len(), 2, "takedowns and warnings never fall due");
    }
}
