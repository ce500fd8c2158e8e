//! The one way to change what may be served of an image.
//!
//! Deleting, editing (`public`, expiry), operator decisions (takedown,
//! warn, restore) and the sweep's repairs all call [`apply`] with an
//! [`Edit`], who made it ([`Actor`]) and why (a note). [`apply`] owns the
//! whole sequence:
//!
//! 1. a write transaction; the row is read (locked on PostgreSQL) and the
//!    edit written;
//! 2. what edges must now do with the id ([`Visibility`]) is compared with
//!    what the edge-sync log last told them; a change is appended when they
//!    differ (in the same transaction, so the log and the row never
//!    disagree);
//! 3. the public store follows, in the order [`plan`] gives:
//!    - **more visible** (restore, `public: true`): when the log forbade
//!      serving (hide, takedown) and now tells edges to serve, the manifest
//!      is written *before* the change commits, so an edge acting on the
//!      change finds it (it would otherwise answer, and remember for a few
//!      seconds, a 404). When the log did not forbid it (an image private
//!      since upload has no log entry: the missing manifest is what hides
//!      it), the manifest is written *after* the commit: written before, a
//!      failed commit would leave a private image servable;
//!    - **less visible** (takedown, private, delete): the change commits
//!      first (edges stop serving at once), then the manifest is withdrawn,
//!      or for a deletion bytes and manifest move to the recovery store;
//!    - **same visibility, new manifest** (a new expiry): rewritten after
//!      the commit;
//! 4. after the commit, long-polls are woken ([`crate::sync::Hub`]).
//!
//! A crash between any two steps leaves nothing servable that the database
//! says must not be, and loses nothing: a step not taken is redone by the
//! sweep ([`super::sweep`]), which calls [`apply`] again. The unit tests
//! below walk every crash point of every plan.
//!
//! Store I/O never happens under the log's lock ([`crate::sync::record`],
//! which takes it, runs right before the commit), nor, normally, under the
//! write lock: a manifest that must be written first is written after an
//! unlocked read predicted it, before the transaction begins (if the row
//! changed in between, the locked pass makes the store agree).

use std::fmt;

use imgcdn_shared::sync::{Action, Change};
use imgcdn_shared::Manifest;
use serde_json::{Map, Value};

use super::queries;
use super::row::{ImageRow, ImageStatus};
use crate::dates::DAY;
use crate::error::{ApiError, ApiResult};
use crate::AppState;

/// Who made a change, as the logs name them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    User(String),
    Key(String),
    Operator(String),
    /// A background task (`sweep`).
    System(&'static str),
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::User(id) => write!(f, "user:{id}"),
            Actor::Key(id) => write!(f, "key:{id}"),
            Actor::Operator(id) => write!(f, "operator:{id}"),
            Actor::System(task) => write!(f, "system:{task}"),
        }
    }
}

/// The owner's fields; `None` keeps the current value.
#[derive(Debug, Default, Clone)]
pub struct FieldEdit {
    /// `Some(None)` clears the caption.
    pub caption: Option<Option<String>>,
    pub labels: Option<Map<String, Value>>,
    pub metadata: Option<Map<String, Value>>,
    pub public: Option<bool>,
    pub expires_at: Option<i64>,
}

/// A change to one image.
#[derive(Debug, Clone)]
pub enum Edit {
    /// The owner edits fields.
    Fields(FieldEdit),
    /// Off public serving for good: the bytes go to the recovery store
    /// (deleted by its owner, or expired).
    Delete,
    /// An operator removes it, for a reason code.
    Takedown(String),
    /// An operator marks it restricted.
    Warn,
    /// An operator undoes takedown and warning.
    Restore,
    /// Nothing changes in the row: bring the log and the stores in line
    /// with it (after an interrupted change).
    Reconcile,
}

/// What [`apply`] did: the image as it now is, and the change logged for
/// edges (none when edges had nothing new to do).
#[derive(Debug)]
pub struct Applied {
    pub row: ImageRow,
    pub change: Option<Change>,
}

/// A step of a change, in the order [`plan`] puts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Write the manifest before the change commits.
    PublishFirst,
    /// Append the log entry (if any) and commit.
    Commit,
    /// Delete the manifest (the bytes stay for a restore).
    Withdraw,
    /// Move bytes and manifest to the recovery store.
    ToRecovery,
    /// Write the manifest after the commit.
    Publish,
}

/// What decides the order of a change's steps.
#[derive(Debug, Clone, Copy)]
struct Facts {
    /// The row is `ready` (earlier states belong to the upload path).
    ready: bool,
    /// Before and after the edit, the store should hold the manifest.
    was_published: bool,
    published: bool,
    /// After the edit the image is deleted.
    deleted: bool,
    /// A change is appended to the log (edges are told something new).
    logged: bool,
    /// Before the change, the log told edges not to serve (hide, takedown).
    log_forbade: bool,
    /// The manifest's content changes (a new expiry).
    manifest_changed: bool,
    /// Make the store agree even if the row did not change (restore, reconcile).
    repair: bool,
}

fn plan(f: Facts) -> Vec<Step> {
    let more_visible = f.published && !f.was_published;
    let publish_first = f.ready && more_visible && f.logged && f.log_forbade;
    let mut steps = Vec::with_capacity(3);
    if publish_first {
        steps.push(Step::PublishFirst);
    }
    steps.push(Step::Commit);
    if f.deleted {
        steps.push(Step::ToRecovery);
    } else if !f.ready {
        // Nothing of a processing or failed upload is published here.
    } else if !f.published {
        if f.was_published || f.logged || f.repair {
            steps.push(Step::Withdraw);
        }
    } else if (more_visible && !publish_first) || f.manifest_changed || f.repair {
        steps.push(Step::Publish);
    }
    steps
}

/// Apply `edit` to image `id`. `NotFound` if there is no such image.
pub async fn apply(state: &AppState, id: &str, actor: &Actor, note: &str, edit: Edit) -> ApiResult<Applied> {
    let now = state.clock.unix_now();
    // A change that makes the image servable writes its manifest before it
    // commits (see `plan`). Predict that from an unlocked read and do it
    // before taking the write lock: store I/O must not hold every other
    // writer up (on SQLite the write lock is the whole database).
    let early = predict_publish_first(state, id, &edit, now).await?;
    if let Some(manifest) = &early {
        state.stores.publish_manifest(&id_of(id)?, manifest).await.map_err(|e| store_error(id, e))?;
    }
    let result = apply_locked(state, id, actor, note, &edit, now, early.as_ref()).await;
    if result.is_err() && early.is_some() {
        // The manifest written first must not outlive a change that did not
        // commit (it was written only because the row did not allow serving).
        let _ = state.stores.withdraw(&id_of(id)?).await;
    }
    result
}

fn id_of(id: &str) -> ApiResult<imgcdn_shared::ImageId> {
    id.parse().map_err(|_| ApiError::NotFound)
}

fn store_error(id: &str, e: opendal::Error) -> ApiError {
    ApiError::Internal(format!("store, image {id}: {e}"))
}

/// The manifest to write before the change commits, if the plan (as an
/// unlocked read sees it) starts with writing it.
async fn predict_publish_first(state: &AppState, id: &str, edit: &Edit, now: i64) -> ApiResult<Option<Manifest>> {
    let Some(before) = queries::fetch(&state.db, id).await? else { return Ok(None) };
    let after = edited(&before, edit, now);
    let mut conn = state.db.pool.acquire().await?;
    let (facts, _) = facts_of(&mut conn, &before, &after, edit, now).await?;
    Ok((plan(facts).first() == Some(&Step::PublishFirst)).then(|| after.manifest()))
}

/// What decides the plan, and the log entry edges must now get.
async fn facts_of(
    conn: &mut sqlx::AnyConnection,
    before: &ImageRow,
    after: &ImageRow,
    edit: &Edit,
    now: i64,
) -> ApiResult<(Facts, (Action, Option<String>))> {
    let wanted = after.visibility(now).to_action();
    let last = crate::sync::last_logged(conn, &before.id).await?;
    let facts = Facts {
        ready: after.status == ImageStatus::Ready,
        was_published: before.should_be_published(now),
        published: after.should_be_published(now),
        deleted: after.deleted_at.is_some(),
        logged: last != wanted,
        log_forbade: matches!(last.0, Action::Hide | Action::Takedown),
        manifest_changed: before.manifest() != after.manifest(),
        repair: matches!(edit, Edit::Restore | Edit::Reconcile),
    };
    Ok((facts, wanted))
}

/// The change under the write lock. `early` is the manifest already
/// written before it, if the prediction said so.
async fn apply_locked(
    state: &AppState,
    id: &str,
    actor: &Actor,
    note: &str,
    edit: &Edit,
    now: i64,
    early: Option<&Manifest>,
) -> ApiResult<Applied> {
    let mut tx = state.db.begin_write().await?;
    let before = queries::fetch_for_update(&mut tx, state.db.backend, id).await?.ok_or(ApiError::NotFound)?;
    let after = edited(&before, edit, now);
    write(&mut tx, &before, &after, edit, now).await?;
    let (facts, (action, reason)) = facts_of(&mut tx, &before, &after, edit, now).await?;
    let mut steps = plan(facts);
    if let Some(early) = early {
        // The row changed since the prediction: make the store end as it
        // says. Written already and still right: nothing more to write.
        let first = steps.first() == Some(&Step::PublishFirst);
        if first && *early == after.manifest() {
            steps.remove(0);
        } else if !first && !steps.iter().any(|s| matches!(s, Step::Withdraw | Step::ToRecovery | Step::Publish)) {
            steps.push(if facts.published { Step::Publish } else { Step::Withdraw });
        }
    }

    // Store work after the commit is owed until done: if it fails here (or
    // the process stops), the sweep finds the mark and redoes it.
    let owes = steps.iter().any(|s| matches!(s, Step::Withdraw | Step::ToRecovery | Step::Publish));
    if owes {
        queries::set_store_pending(&mut tx, id, true).await?;
    }
    let mut tx = Some(tx);
    let mut change = None;
    for step in steps {
        match step {
            // Only when the prediction missed it (the row changed in between).
            Step::PublishFirst => state
                .stores
                .publish_manifest(&after.image_id(), &after.manifest())
                .await
                .map_err(|e| store_error(id, e))?,
            Step::Commit => {
                let mut tx = tx.take().expect("one commit per plan");
                if facts.logged {
                    let actor = actor.to_string();
                    change = Some(
                        crate::sync::record(&mut tx, state.db.backend, id, action, reason.clone(), note, &actor, now)
                            .await?,
                    );
                }
                tx.commit().await?;
                if let Some(c) = &change {
                    state.sync.advance(c.seq);
                }
            }
            Step::Withdraw => state.stores.withdraw(&after.image_id()).await.map_err(|e| store_error(id, e))?,
            Step::ToRecovery => to_recovery(state, &after, note, now).await?,
            Step::Publish => state
                .stores
                .publish_manifest(&after.image_id(), &after.manifest())
                .await
                .map_err(|e| store_error(id, e))?,
        }
    }
    if owes {
        let mut conn = state.db.pool.acquire().await?;
        queries::set_store_pending(&mut conn, id, false).await?;
    }
    Ok(Applied { row: after, change })
}

/// The row as `edit` leaves it.
fn edited(before: &ImageRow, edit: &Edit, now: i64) -> ImageRow {
    let mut after = before.clone();
    match edit {
        Edit::Fields(f) => {
            if let Some(c) = &f.caption {
                after.caption = c.clone();
            }
            if let Some(l) = &f.labels {
                after.labels = l.clone();
            }
            if let Some(m) = &f.metadata {
                after.metadata = m.clone();
            }
            after.public = f.public.unwrap_or(before.public);
            after.expires_at = f.expires_at.or(before.expires_at);
        }
        Edit::Delete => after.deleted_at = Some(before.deleted_at.unwrap_or(now)),
        Edit::Takedown(reason) => after.takedown_reason = Some(reason.clone()),
        Edit::Warn => after.warned = true,
        Edit::Restore => (after.takedown_reason, after.warned) = (None, false),
        Edit::Reconcile => {}
    }
    after
}

/// Write what `edit` changed.
async fn write(
    conn: &mut sqlx::AnyConnection,
    before: &ImageRow,
    after: &ImageRow,
    edit: &Edit,
    now: i64,
) -> ApiResult<()> {
    match edit {
        Edit::Fields(_) => queries::update_fields(conn, after).await?,
        Edit::Delete => queries::mark_deleted(conn, &before.id, now).await?,
        Edit::Takedown(_) | Edit::Warn | Edit::Restore => {
            queries::set_decisions(conn, &before.id, after.takedown_reason.as_deref(), after.warned).await?
        }
        Edit::Reconcile => {}
    }
    Ok(())
}

/// Move an image's bytes and manifest to the recovery store (kept
/// `uploads.recovery_days`). The bytes leave the public store only if no
/// other live image shows them.
async fn to_recovery(state: &AppState, row: &ImageRow, reason: &str, now: i64) -> ApiResult<()> {
    let object = row.stored_object();
    let others = queries::others_showing(&state.db, &row.id, &object).await?;
    let reap_at = now + state.cfg.uploads.recovery_days * DAY;
    state
        .stores
        .unpublish(&row.image_id(), &row.manifest(), &object, others == 0, reason, now, reap_at)
        .await
        .map_err(|e| ApiError::Internal(format!("unpublish {}: {e}", row.id)))
}

#[cfg(test)]
mod tests {
    //! The ordering rule, checked against a model of what an edge sees: an
    //! edge serves an image when the public store has its manifest and the
    //! log does not tell it otherwise. Every combination of facts, every
    //! crash point (after each step of the plan).
    use super::*;
    use crate::images::row::Visibility;

    /// The world after the first `k` steps of a plan.
    struct World {
        manifest: bool,
        committed: bool,
    }

    fn run(f: Facts, manifest_at_start: bool, k: usize) -> World {
        let mut w = World { manifest: manifest_at_start, committed: false };
        for step in plan(f).into_iter().take(k) {
            match step {
                Step::PublishFirst | Step::Publish => w.manifest = true,
                Step::Commit => w.committed = true,
                Step::Withdraw | Step::ToRecovery => w.manifest = false,
            }
        }
        w
    }

    /// Every consistent combination of facts.
    fn cases() -> Vec<Facts> {
        let mut out = Vec::new();
        for bits in 0u32..256 {
            let b = |i: u32| bits & (1 << i) != 0;
            let f = Facts {
                ready: b(0),
                was_published: b(1),
                published: b(2),
                deleted: b(3),
                logged: b(4),
                manifest_changed: b(5),
                repair: b(6),
                log_forbade: b(7),
            };
            let consistent = (f.ready || (!f.was_published && !f.published))
                && !(f.deleted && f.published)
                // Without a new entry the log's verdict stands: it lets
                // edges serve exactly what is published.
                && (f.logged || !f.ready || f.published != f.log_forbade)
                // A published image is one the log lets edges serve.
                && !(f.was_published && f.log_forbade);
            if consistent {
                out.push(f);
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
    fn when_the_plan_is_done_the_store_agrees_with_the_row() {
        for f in cases() {
            for stray in [false, true] {
                // A repair starts from a store that may disagree.
                let start = if f.repair { stray } else { f.was_published };
                let w = run(f, start, usize::MAX);
                assert!(w.committed, "{f:?}");
                if f.ready || f.deleted {
                    assert_eq!(w.manifest, f.published, "{f:?}, manifest at start {start}");
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

    #[test]
    fn visibility_wire_form() {
        assert_eq!(Visibility::Serve.to_action(), (Action::Restore, None));
        assert_eq!(Visibility::Takedown("csam".into()).to_action(), (Action::Takedown, Some("csam".into())));
        assert!(Visibility::Warn.servable() && !Visibility::Hide.servable());
        assert_eq!(Actor::System("sweep").to_string(), "system:sweep");
        assert_eq!(Actor::Operator("op_1".into()).to_string(), "operator:op_1");
    }
}
