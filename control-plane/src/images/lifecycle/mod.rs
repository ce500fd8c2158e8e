//! The one way to change what may be served of an image.
//!
//! Deleting, editing (`public`, expiry), operator decisions (takedown,
//! warn, restore, review decisions), classification outcomes and the
//! sweep's repairs all call [`apply`] with an [`Edit`], who made it
//! ([`Actor`]) and why (a note). [`apply`] owns the whole sequence:
//!
//! 1. a write transaction; the row is read (locked on PostgreSQL) and the
//!    edit written;
//! 2. what edges must now do with the id ([`Visibility`]) is compared with
//!    what the edge-sync log last told them; a change is appended when they
//!    differ (in the same transaction, so the log and the row never
//!    disagree);
//! 3. the stores follow, in the order [`plan::plan`] gives. The bytes go
//!    where the row says they belong ([`ImageRow::place`]): public; staging
//!    while an upload awaits a classifier or review; recovery once deleted,
//!    taken down or removed. Bytes entering the public store are copied in
//!    before the commit (harmless: nothing serves bytes without a
//!    manifest); bytes leaving it go after the commit and after the
//!    manifest. The manifest:
//!    - **more visible** (restore, `public: true`): when the log's takedown
//!      forbade serving and now tells edges to serve, the manifest is
//!      written *before* the change commits, so an edge acting on the
//!      restore finds it (it would otherwise answer, and remember for a few
//!      seconds, a 404). Otherwise the manifest is written *after* the
//!      commit: written before, a failed commit would leave servable an
//!      image the row hides — an image private since upload has no log
//!      entry (the missing manifest is what hides it), and edges drop a
//!      `hide` entry a grace period after applying it;
//!    - **less visible** (takedown, private, delete, removal): the change
//!      commits first (edges stop serving at once), then the manifest is
//!      withdrawn, or for a deletion, takedown or removal bytes and manifest
//!      move to the recovery store;
//!    - **same visibility, new manifest** (a new expiry): rewritten after
//!      the commit; but a *shorter* expiry of a published image is written
//!      *before* the commit, and the commit logs the image's visibility
//!      again: every change makes edges drop their cached copies, so they
//!      re-read the manifest (already the new one) and stop serving at the
//!      new expiry, not the one their copy was cached with;
//! 4. after the commit, long-polls are woken ([`crate::sync::Hub`]).
//!
//! A crash between any two steps leaves nothing servable that the database
//! says must not be, and loses nothing: a step not taken is redone by the
//! sweep ([`crate::retention::sweep`]), which calls [`apply`] again.
//!
//! Every edit of a live image recomputes its expiry through the retention
//! policy ([`crate::retention::policy`]): a `ttl`, a classification, a
//! warning, a verified email or a plan change (`Edit::Recompute`) all end
//! at the same function, so no path gives an image more time than the
//! table allows. The unit tests of
//! [`plan`] walk every crash point of every plan.
//!
//! Store I/O never happens under the log's lock ([`crate::sync::record`],
//! which takes it, runs right before the commit), nor, normally, under the
//! write lock: what must happen before the commit (bytes in, manifest
//! first) is done after an unlocked read predicted it, before the
//! transaction begins (if the row changed in between, the locked pass makes
//! the stores agree, and a change that did not commit is undone).

mod plan;

use std::fmt;

use imgcdn_shared::sync::{Action, Change};
use imgcdn_shared::Manifest;
use serde_json::{Map, Value};

use super::queries;
use super::row::{ImageRow, ImageStatus};
use super::store::Place;
use crate::dates::DAY;
use crate::error::{ApiError, ApiResult};
use crate::moderation::config::Outcome;
use crate::AppState;
use plan::{plan, Facts, Step};

/// Who made a change, as the logs name them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    User(String),
    Key(String),
    Operator(String),
    /// A background task (`sweep`, `classifier`).
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
    /// A new expiry asked for (`ttl` from now); the policy may shorten it.
    pub requested_expires_at: Option<i64>,
}

/// A change to one image.
#[derive(Debug, Clone)]
pub enum Edit {
    /// The owner edits fields.
    Fields(FieldEdit),
    /// Off public serving for good: the bytes go to the recovery store
    /// (deleted by its owner, or expired).
    Delete,
    /// An operator removes it, for a reason code: 451, bytes to recovery.
    Takedown(String),
    /// An operator marks it restricted.
    Warn,
    /// An operator undoes takedown and warning (bytes back from recovery).
    Restore,
    /// What classification (a classifier, or an operator's review) decided
    /// for an upload: publish, publish restricted, hold, remove.
    Classified { outcome: Outcome, classification: Option<String>, nsfw: Option<bool> },
    /// Nothing changes in the row: bring the log and the stores in line
    /// with it (after an interrupted change).
    Reconcile,
    /// What decides the window changed elsewhere (the uploader verified
    /// their email, the team's plan changed): recompute the expiry.
    Recompute,
    /// An image uploaded before storage names takes its team's: served
    /// under it from now on, and under its shard URL still.
    Name,
}

/// What [`apply`] did: the image as it now is, and the change logged for
/// edges (none when edges had nothing new to do).
#[derive(Debug)]
pub struct Applied {
    pub row: ImageRow,
    pub change: Option<Change>,
    /// The retention policy gave the image another expiry.
    pub expiry_changed: bool,
}

/// The steps done before the transaction (predicted from an unlocked read).
#[derive(Debug, Default, PartialEq)]
struct Early {
    bytes_in: bool,
    manifest: Option<Manifest>,
    /// The manifest to put back if the change does not commit (the image
    /// was published before); none: withdraw.
    undo: Option<Manifest>,
}

/// Apply `edit` to image `id`. `NotFound` if there is no such image.
pub async fn apply(state: &AppState, id: &str, actor: &Actor, note: &str, edit: Edit) -> ApiResult<Applied> {
    let now = state.clock.unix_now();
    // What must happen before the commit (bytes in, the manifest first) is
    // predicted from an unlocked read and done before taking the write
    // lock: store I/O must not hold every other writer up (on SQLite the
    // write lock is the whole database).
    let early = predict_early(state, id, &edit, now).await?;
    let image = id_of(id)?;
    if early.bytes_in {
        state
            .stores
            .bytes_to_public(&image, &imgcdn_shared::storage::object_key(&image))
            .await
            .map_err(|e| store_error(id, e))?;
    }
    if let Some(manifest) = &early.manifest {
        state.stores.publish_manifest(&image, manifest).await.map_err(|e| store_error(id, e))?;
    }
    let result = apply_locked(state, id, actor, note, &edit, now, &early).await;
    if result.is_err() && early != Early::default() {
        // What was done first must not outlive a change that did not commit.
        match (&early.manifest, &early.undo) {
            (Some(_), Some(before)) => {
                let _ = state.stores.publish_manifest(&image, before).await;
            }
            (Some(_), None) => {
                let _ = state.stores.withdraw(&image).await;
            }
            _ => {}
        }
        if early.bytes_in {
            let _ = state.stores.public.delete(&imgcdn_shared::storage::object_key(&image)).await;
        }
    }
    result
}

fn id_of(id: &str) -> ApiResult<imgcdn_shared::ImageId> {
    id.parse().map_err(|_| ApiError::NotFound)
}

fn store_error(id: &str, e: opendal::Error) -> ApiError {
    ApiError::Internal(format!("store, image {id}: {e}"))
}

/// The steps before the commit, as an unlocked read sees them.
async fn predict_early(state: &AppState, id: &str, edit: &Edit, now: i64) -> ApiResult<Early> {
    let Some(before) = queries::fetch(&state.db, id).await? else { return Ok(Early::default()) };
    let mut conn = state.db.pool.acquire().await?;
    let after = edited_in(&mut conn, state, &before, edit, now).await?;
    let (facts, _) = facts_of(&mut conn, &before, &after, edit, now).await?;
    let steps = plan(facts);
    let manifest = steps.contains(&Step::PublishFirst).then(|| after.manifest());
    Ok(Early {
        bytes_in: steps.contains(&Step::BytesIn),
        undo: manifest.as_ref().and(before.should_be_published(now).then(|| before.manifest())),
        manifest,
    })
}

/// The row as `edit` leaves it, its expiry recomputed by the retention
/// policy (live images only; its `bytes_in` is set by the caller).
async fn edited_in(
    conn: &mut sqlx::AnyConnection,
    state: &AppState,
    before: &ImageRow,
    edit: &Edit,
    now: i64,
) -> ApiResult<ImageRow> {
    let mut after = edited(before, edit, now);
    // Only read here (this also runs outside the write transaction, to
    // predict): teams are named before their images (`name_existing`).
    if let (Edit::Name, None, Some(team)) = (edit, before.storage, &before.team_id) {
        after.storage = crate::storage_names::names::current(conn, team).await?;
        after.shard_url = after.storage.is_some();
    }
    if after.deleted_at.is_none() {
        after.expires_at = crate::retention::subject::expiry_of(conn, &state.cfg, &after).await?;
    }
    Ok(after)
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
    // A published image that now expires sooner: edges must re-read its
    // manifest (their copies carry the old expiry), so its visibility is
    // logged again even though it did not change.
    // So must they when it moves under its team's storage name (their
    // copies would 404 the new URL).
    let sooner = after.expires_at.is_some_and(|a| before.expires_at.is_none_or(|b| a < b));
    let renamed = after.storage != before.storage;
    let refresh = (sooner || renamed) && before.should_be_published(now) && after.should_be_published(now);
    let facts = Facts {
        ready: after.status == ImageStatus::Ready,
        was_published: before.should_be_published(now),
        published: after.should_be_published(now),
        from: before.bytes_in,
        to: after.place(),
        logged: last != wanted || refresh,
        // Only a takedown: edges drop a `hide` a while after applying it
        // (its manifest is gone), so a hide in the log may no longer stop an
        // edge from serving a manifest written before the commit.
        log_forbade: last.0 == Action::Takedown,
        manifest_changed: before.manifest() != after.manifest(),
        repair: matches!(edit, Edit::Restore | Edit::Reconcile),
    };
    Ok((facts, wanted))
}

/// The change under the write lock, `early` steps done already.
async fn apply_locked(
    state: &AppState,
    id: &str,
    actor: &Actor,
    note: &str,
    edit: &Edit,
    now: i64,
    early: &Early,
) -> ApiResult<Applied> {
    let mut tx = state.db.begin_write().await?;
    let before = queries::fetch_for_update(&mut tx, state.db.backend, id).await?.ok_or(ApiError::NotFound)?;
    let mut after = edited_in(&mut tx, state, &before, edit, now).await?;
    let (facts, (action, reason)) = facts_of(&mut tx, &before, &after, edit, now).await?;
    after.bytes_in = facts.to;
    after.reap_at = match (before.bytes_in, after.bytes_in) {
        (Place::Recovery, Place::Recovery) => before.reap_at,
        (_, Place::Recovery) => Some(now + state.cfg.retention.recovery_days * DAY),
        _ => None,
    };
    write(&mut tx, &before, &after, edit, now).await?;
    let mut steps = plan(facts);
    // Done first already and still right: not again. The row changed since
    // the prediction: make the stores end as it now says.
    if early.bytes_in {
        steps.retain(|s| *s != Step::BytesIn);
        if facts.to != Place::Public && !steps.contains(&Step::BytesOut) {
            steps.push(Step::BytesOut);
        }
    }
    if let Some(manifest) = &early.manifest {
        if steps.contains(&Step::PublishFirst) && *manifest == after.manifest() {
            steps.retain(|s| *s != Step::PublishFirst);
        } else if !steps.contains(&Step::PublishFirst) && !Facts::owes_store_work(&steps) {
            steps.push(if facts.published { Step::Publish } else { Step::Withdraw });
        }
    }
    // Store work after the commit is owed until done: if it fails here (or
    // the process stops), the sweep finds the mark and redoes it.
    let owes = Facts::owes_store_work(&steps);
    if owes {
        queries::set_store_pending(&mut tx, id, true).await?;
    }
    let image = after.image_id();
    let mut tx = Some(tx);
    let mut change = None;
    for step in steps {
        match step {
            // Only when the prediction missed them (the row changed in between).
            Step::BytesIn => {
                state.stores.bytes_to_public(&image, &after.stored_object()).await.map_err(|e| store_error(id, e))?
            }
            Step::PublishFirst => {
                state.stores.publish_manifest(&image, &after.manifest()).await.map_err(|e| store_error(id, e))?
            }
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
            Step::Withdraw => state.stores.withdraw(&image).await.map_err(|e| store_error(id, e))?,
            Step::BytesOut => to_recovery(state, &after, note, now).await?,
            Step::Publish => {
                state.stores.publish_manifest(&image, &after.manifest()).await.map_err(|e| store_error(id, e))?
            }
            Step::Tidy => state.stores.drop_private_copies(&image).await.map_err(|e| store_error(id, e))?,
        }
    }
    if owes {
        let mut conn = state.db.pool.acquire().await?;
        queries::set_store_pending(&mut conn, id, false).await?;
    }
    let expiry_changed = before.expires_at != after.expires_at;
    Ok(Applied { row: after, change, expiry_changed })
}

/// The row as `edit` leaves it (its `bytes_in` is set by the caller).
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
            after.requested_expires_at = f.requested_expires_at.or(before.requested_expires_at);
        }
        Edit::Delete => after.deleted_at = Some(before.deleted_at.unwrap_or(now)),
        Edit::Takedown(reason) => after.takedown_reason = Some(reason.clone()),
        Edit::Warn => after.warned = true,
        Edit::Restore => (after.takedown_reason, after.warned) = (None, false),
        Edit::Classified { outcome, classification, nsfw } => {
            match outcome {
                Outcome::Publish | Outcome::Restrict => {
                    after.status = ImageStatus::Ready;
                    after.warned = *outcome == Outcome::Restrict;
                    after.published_at = Some(before.published_at.unwrap_or(now));
                }
                Outcome::Review => after.status = ImageStatus::Review,
                Outcome::Remove => after.status = ImageStatus::Blocked,
            }
            if classification.is_some() {
                after.classification = classification.clone();
            }
            if nsfw.is_some() {
                after.nsfw = *nsfw;
            }
        }
        Edit::Reconcile | Edit::Recompute | Edit::Name => {}
    }
    // Bytes that come back into the public store come back as the image's
    // own (the object they were shared from may be gone).
    if before.bytes_in != Place::Public && after.place() == Place::Public {
        after.object_key = None;
    }
    after
}

/// Write what `edit` changed, and where the bytes now belong.
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
        Edit::Classified { .. } => queries::set_outcome(conn, after).await?,
        Edit::Reconcile | Edit::Recompute => {}
        Edit::Name => {
            if (after.storage, after.shard_url) != (before.storage, before.shard_url) {
                queries::set_storage(conn, after).await?
            }
        }
    }
    if (after.expires_at, after.requested_expires_at) != (before.expires_at, before.requested_expires_at) {
        queries::set_expiry(conn, after).await?;
    }
    if (after.bytes_in, &after.object_key, after.reap_at) != (before.bytes_in, &before.object_key, before.reap_at) {
        queries::set_placement(conn, after).await?;
    }
    Ok(())
}

/// Move an image's bytes and manifest to the recovery store (until the
/// row's `reap_at`). The bytes leave the public store only if no other
/// image still needs them.
async fn to_recovery(state: &AppState, row: &ImageRow, reason: &str, now: i64) -> ApiResult<()> {
    let object = row.stored_object();
    let others = queries::others_showing(&state.db, &row.id, &object).await?;
    let reap_at = row.reap_at.unwrap_or(now + state.cfg.retention.recovery_days * DAY);
    state
        .stores
        .to_recovery(&row.image_id(), &row.manifest(), &object, others == 0, reason, now, reap_at)
        .await
        .map_err(|e| ApiError::Internal(format!("to recovery {}: {e}", row.id)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::row::Visibility;

    #[test]
    fn visibility_wire_form_and_actor_names() {
        assert_eq!(Visibility::Serve.to_action(), (Action::Restore, None));
        assert_eq!(Visibility::Takedown("csam".into()).to_action(), (Action::Takedown, Some("csam".into())));
        assert!(Visibility::Warn.servable() && !Visibility::Hide.servable());
        assert_eq!(Actor::System("sweep").to_string(), "system:sweep");
        assert_eq!(Actor::Operator("op_1".into()).to_string(), "operator:op_1");
    }
}
