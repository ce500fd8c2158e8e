//! The sweep: finishes or undoes interrupted writes and moves what should
//! no longer be public out of the public store. Every change of what may
//! be served goes through [`lifecycle::apply`], as it does for users.
//!
//! - A `processing` row older than [`STALE_SECS`] belongs to an upload that
//!   crashed between its steps. If its manifest made it to the store, the
//!   image is complete: mark it `ready`. If not, delete the orphan bytes and
//!   mark it `failed` (quota no longer counts it).
//! - A change whose store work failed or was interrupted after its commit
//!   (the row is marked `store_pending`) is applied again: a deleted image
//!   is moved to recovery, another one's manifest written or withdrawn.
//! - An image past `expires_at` is moved to the recovery store. The edge
//!   already refuses it at serve time; this keeps the public store to what
//!   may be served.
//!
//! Every step is idempotent, so several replicas may sweep at once. One
//! image failing is logged and counted, and the pass goes on with the rest.

use imgcdn_shared::storage::{manifest_key, object_key};

use super::lifecycle::{self, Actor, Edit};
use super::queries;
use super::row::{ImageRow, ImageStatus};
use crate::AppState;

/// A `processing` row this old is an interrupted upload.
pub const STALE_SECS: i64 = 3600;

const SWEEP: Actor = Actor::System("sweep");

/// What one pass did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Interrupted uploads completed and undone.
    pub completed: u64,
    pub failed: u64,
    /// Changes whose store work was redone.
    pub redone: u64,
    /// Images past their expiry moved to recovery.
    pub expired: u64,
    /// Images restored after a DMCA counter-notice's waiting period.
    pub restored: u64,
    /// Images that failed (retried on the next pass).
    pub errors: u64,
}

/// One pass over the database and the public store. An image that fails
/// is logged and counted in `errors`; the pass continues with the rest.
/// Fails only when the database cannot be read at all.
pub async fn run_once(state: &AppState) -> Result<Swept, String> {
    let now = state.clock.unix_now();
    let mut out = Swept::default();
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let failed = |what: &str, id: &str, e: &dyn std::fmt::Display, out: &mut Swept| {
        tracing::warn!(%id, error = %e, "sweep: {what} failed; will retry");
        out.errors += 1;
    };

    for row in queries::stale_processing(&state.db, now - STALE_SECS).await.map_err(|e| err(&e))? {
        if let Err(e) = finish_stale(state, &row, now, &mut out).await {
            failed("finishing an interrupted upload", &row.id, &e, &mut out);
        }
    }

    for row in queries::store_pending(&state.db).await.map_err(|e| err(&e))? {
        let (note, edit) =
            if row.deleted_at.is_some() { ("deleted", Edit::Delete) } else { ("retry", Edit::Reconcile) };
        match lifecycle::apply(state, &row.id, &SWEEP, note, edit).await {
            Ok(_) => out.redone += 1,
            Err(e) => failed("redoing store work", &row.id, &e, &mut out),
        }
    }

    for row in queries::expired(&state.db, now).await.map_err(|e| err(&e))? {
        match lifecycle::apply(state, &row.id, &SWEEP, "expired", Edit::Delete).await {
            Ok(_) => out.expired += 1,
            Err(e) => failed("expiring", &row.id, &e, &mut out),
        }
    }
    match crate::moderation::reports::restore_due(state).await {
        Ok(n) => out.restored += n,
        Err(e) => failed("restoring after counter-notices", "-", &e, &mut out),
    }
    // What was deleted above must not linger in the database files.
    state.db.checkpoint().await.map_err(|e| err(&e))?;
    Ok(out)
}

/// A `processing` row older than [`STALE_SECS`]: complete it if its
/// manifest (or, private, its bytes) made it to the store, else undo it.
async fn finish_stale(state: &AppState, row: &ImageRow, now: i64, out: &mut Swept) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let image = row.image_id();
    let marker = if row.public { manifest_key(&image) } else { object_key(&image) };
    if state.stores.public.exists(&marker).await.map_err(|e| err(&e))? {
        queries::finish(&state.db, &row.id, ImageStatus::Ready, now).await.map_err(|e| err(&e))?;
        out.completed += 1;
    } else {
        if row.object_key.is_none() {
            state.stores.public.delete(&object_key(&image)).await.map_err(|e| err(&e))?;
        }
        queries::finish(&state.db, &row.id, ImageStatus::Failed, now).await.map_err(|e| err(&e))?;
        out.failed += 1;
    }
    Ok(())
}

/// Withdraw the manifest of every image that must not be served (private
/// or taken down) but still has one, logging what edges must do first.
/// That happens when the store failed right after such a change, or the
/// process stopped there, and for images made private before edge sync
/// existed (they kept their manifest). Run once at start: it checks the
/// store for every such image.
pub async fn withdraw_unservable(state: &AppState) -> Result<u64, String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let mut withdrawn = 0;
    for row in queries::unservable(&state.db).await.map_err(|e| err(&e))? {
        if !state.stores.public.exists(&manifest_key(&row.image_id())).await.map_err(|e| err(&e))? {
            continue;
        }
        lifecycle::apply(state, &row.id, &SWEEP, "not servable", Edit::Reconcile).await.map_err(|e| err(&e))?;
        withdrawn += 1;
    }
    Ok(withdrawn)
}

/// Sweep every `every` until `shutdown` flips.
pub async fn sweep_loop(state: AppState, every: std::time::Duration, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    match withdraw_unservable(&state).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(n, "withdrew manifests of images that must not be served"),
        Err(e) => tracing::warn!(error = %e, "withdrawing unservable manifests failed"),
    }
    loop {
        match run_once(&state).await {
            Ok(s) if s != Swept::default() => tracing::info!(?s, "image sweep"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "image sweep failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
    }
}
