//! The order of a change's steps, as a pure function of what the change
//! does ([`Facts`] → [`plan`]), so it can be checked exhaustively: the
//! tests below walk every combination and every crash point against a model
//! of the stores and of what an edge sees.

use crate::images::store::Place;

/// A step of a change, in the order [`plan`] puts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// Copy the bytes into the public store (from staging or recovery):
    /// harmless before the commit, since nothing serves bytes without a
    /// manifest, and needed before any manifest points at them.
    BytesIn,
    /// Write the manifest before the change commits.
    PublishFirst,
    /// Append the log entry (if any) and commit.
    Commit,
    /// Delete the manifest (the bytes stay, for `public: true`).
    Withdraw,
    /// Move bytes and manifest to the recovery store: copy there first,
    /// then delete the manifest, the public bytes (unless another image
    /// still needs them) and any staging copy.
    BytesOut,
    /// Write the manifest after the commit.
    Publish,
    /// Delete the copies left in staging or recovery once the bytes are
    /// public again.
    Tidy,
}

/// What decides the order of a change's steps.
#[derive(Debug, Clone, Copy)]
pub(super) struct Facts {
    /// The row is `ready` after the edit (earlier states are not published).
    pub ready: bool,
    /// Before and after the edit, the public store should hold the manifest.
    pub was_published: bool,
    pub published: bool,
    /// Where the bytes are, and where they must be after the edit.
    pub from: Place,
    pub to: Place,
    /// A change is appended to the log (edges are told something new).
    pub logged: bool,
    /// Before the change, the log told edges not to serve in a way they
    /// keep for good (a takedown; edges drop hides after a grace period).
    pub log_forbade: bool,
    /// The manifest's content changes (a new expiry).
    pub manifest_changed: bool,
    /// Make the stores agree even if the row did not change (restore,
    /// reconcile, a retry of owed store work).
    pub repair: bool,
}

impl Facts {
    /// Whether steps after the commit touch a store (work owed until done).
    pub fn owes_store_work(steps: &[Step]) -> bool {
        steps.iter().any(|s| matches!(s, Step::Withdraw | Step::BytesOut | Step::Publish | Step::Tidy))
    }
}

pub(super) fn plan(f: Facts) -> Vec<Step> {
    let more_visible = f.published && !f.was_published;
    // Edges told to serve what a takedown forbade must find the manifest;
    // edges told to drop their copies of a published image whose manifest
    // changed (a shorter expiry) must find the new one when they re-read it.
    let refreshed = f.published && f.was_published && f.manifest_changed;
    let publish_first = f.ready && f.logged && ((more_visible && f.log_forbade) || refreshed);
    let mut steps = Vec::with_capacity(4);
    if f.to == Place::Public && f.from != Place::Public {
        steps.push(Step::BytesIn);
    }
    if publish_first {
        steps.push(Step::PublishFirst);
    }
    steps.push(Step::Commit);
    if f.to == Place::Recovery {
        // Always (idempotent): a retry must finish what an interrupted move began.
        steps.push(Step::BytesOut);
    } else if !f.ready {
        // A processing or held upload: nothing of it may be public.
        if f.was_published || f.repair {
            steps.push(Step::Withdraw);
        }
    } else if !f.published {
        if f.was_published || f.logged || f.repair {
            steps.push(Step::Withdraw);
        }
    } else if ((more_visible || f.manifest_changed) && !publish_first) || f.repair {
        steps.push(Step::Publish);
    }
    if f.to == Place::Public && (f.from != Place::Public || f.repair) {
        steps.push(Step::Tidy);
    }
    steps
}

#[cfg(test)]
mod tests {
    //! The ordering rule, checked against a model: an edge serves an image
    //! when the public store has its manifest and the log does not tell it
    //! otherwise; bytes live in the public, staging or recovery store.
    //! Every consistent combination of facts, every crash point.
    use super::*;

    const PLACES: [Place; 3] = [Place::Public, Place::Staging, Place::Recovery];

    /// The world after the first `k` steps of a plan.
    #[derive(Debug)]
    struct World {
        manifest: bool,
        /// The manifest in the store is the one after the change.
        fresh: bool,
        committed: bool,
        public: bool,
        staging: bool,
        recovery: bool,
    }

    fn run(f: Facts, manifest_at_start: bool, k: usize) -> World {
        let mut w = World {
            manifest: manifest_at_start,
            fresh: !f.manifest_changed,
            committed: false,
            public: f.from == Place::Public,
            staging: f.from == Place::Staging,
            recovery: f.from == Place::Recovery,
        };
        for step in plan(f).into_iter().take(k) {
            match step {
                Step::BytesIn => w.public = true,
                Step::PublishFirst | Step::Publish => (w.manifest, w.fresh) = (true, true),
                Step::Commit => w.committed = true,
                Step::Withdraw => w.manifest = false,
                Step::BytesOut => {
                    w.recovery |= w.public || w.staging;
                    (w.manifest, w.public, w.staging) = (false, false, false);
                }
                Step::Tidy => (w.staging, w.recovery) = (false, false),
            }
        }
        w
    }

    /// Every consistent combination of facts.
    fn cases() -> Vec<Facts> {
        let mut out = Vec::new();
        for bits in 0u32..128 {
            let b = |i: u32| bits & (1 << i) != 0;
            for from in PLACES {
                for to in PLACES {
                    let f = Facts {
                        ready: b(0),
                        was_published: b(1),
                        published: b(2),
                        from,
                        to,
                        logged: b(3),
                        log_forbade: b(4),
                        manifest_changed: b(5),
                        repair: b(6),
                    };
                    let consistent = (f.ready || !f.published)
                        // Published only from the public store, and never into recovery or staging.
                        && (!f.was_published || f.from == Place::Public)
                        && (!f.published || f.to == Place::Public)
                        // Staging holds only uploads that are not ready (held, awaiting a classifier).
                        && (f.to != Place::Staging || (!f.ready && f.from == Place::Staging))
                        // A published image never goes back to an earlier status in
                        // place (classification only decides uploads not yet ready;
                        // a removal sends the bytes to recovery).
                        && !(f.was_published && !f.ready && f.to == Place::Public)
                        // Without a new entry a takedown stands: nothing it covers is
                        // published. (A hide, or no entry, may go with either.)
                        && (f.logged || !f.log_forbade || !f.published)
                        // Serving less is always logged: what edges were last told
                        // let them serve what was published.
                        && !(f.was_published && !f.published && !f.logged)
                        // Bytes bound for recovery belong to a deleted, taken-down or
                        // removed image, which the log tells edges to hide or refuse.
                        && (f.to != Place::Recovery || f.logged || f.log_forbade)
                        // A published image is one the log lets edges serve.
                        && !(f.was_published && f.log_forbade);
                    if consistent {
                        out.push(f);
                    }
                }
            }
        }
        out
    }

    #[test]
    fn a_crash_at_any_step_leaves_nothing_servable_that_must_not_be() {
        for f in cases() {
            let steps = plan(f);
            for k in 0..=steps.len() {
                // Outside repairs the store agreed with the row before the change.
                let w = run(f, f.was_published, k);
                let log_serves = if w.committed && f.logged { f.published } else { !f.log_forbade };
                let row_allows = if w.committed { f.published } else { f.was_published };
                let servable = w.manifest && log_serves;
                assert!(!servable || row_allows, "{f:?}: servable after {:?}", &steps[..k]);
            }
        }
    }

    #[test]
    fn bytes_are_never_lost_and_no_manifest_points_at_missing_bytes() {
        for f in cases() {
            let steps = plan(f);
            for k in 0..=steps.len() {
                let w = run(f, f.was_published, k);
                assert!(w.public || w.staging || w.recovery, "{f:?}: bytes lost after {:?}", &steps[..k]);
                assert!(!w.manifest || w.public, "{f:?}: manifest without bytes after {:?}", &steps[..k]);
            }
        }
    }

    #[test]
    fn edges_told_to_serve_what_they_hid_find_the_manifest() {
        for f in cases() {
            let steps = plan(f);
            for k in 0..=steps.len() {
                let w = run(f, f.was_published, k);
                if w.committed && f.logged && f.published && f.log_forbade {
                    assert!(w.manifest, "{f:?}: told to serve after {:?}", &steps[..k]);
                }
            }
        }
    }

    #[test]
    fn edges_told_to_drop_a_changed_manifest_find_the_new_one() {
        for f in cases() {
            let steps = plan(f);
            for k in 0..=steps.len() {
                let w = run(f, f.was_published, k);
                if w.committed && f.logged && f.published && f.was_published && f.manifest_changed {
                    assert!(w.manifest && w.fresh, "{f:?}: told to re-read after {:?}", &steps[..k]);
                }
            }
        }
    }

    #[test]
    fn when_the_plan_is_done_the_stores_agree_with_the_row() {
        for f in cases() {
            for stray in [false, true] {
                // A repair starts from a store that may disagree.
                let start = if f.repair { stray } else { f.was_published };
                let w = run(f, start, usize::MAX);
                assert!(w.committed, "{f:?}");
                if f.ready || f.to == Place::Recovery {
                    assert_eq!(w.manifest, f.published, "{f:?}, manifest at start {start}");
                    assert!(!f.published || w.fresh, "{f:?}: an old manifest left in place");
                }
                match f.to {
                    Place::Public => assert!(w.public && !w.staging && !w.recovery, "{f:?}: {w:?}"),
                    Place::Recovery => assert!(w.recovery && !w.public && !w.staging, "{f:?}: {w:?}"),
                    Place::Staging => assert!(w.staging && !w.public, "{f:?}: {w:?}"),
                }
            }
        }
    }

    #[test]
    fn less_visible_changes_commit_before_touching_the_store() {
        for f in cases() {
            if f.was_published && !f.published {
                assert_eq!(plan(f)[0], Step::Commit, "{f:?}");
            }
        }
    }
}
