//! The sweep: finishes or undoes interrupted writes and moves what should
//! no longer be public out of the public store. Every change of what may
//! be served goes through [`lifecycle::apply`], as it does for users.
//!
//! - A `processing` row older than [`STALE_SECS`] belongs to an upload that
//!   crashed between its steps. If its manifest made it to the store, the
//!   image is complete: mark it `ready`. If not, delete the orphan bytes and
//!   mark it `failed` (quota no longer counts it).
//! - A row marked deleted whose manifest is still in the public store (the
//!   delete was interrupted) is deleted again.
//! - An image past `expires_at` is moved to the recovery store. The edge
//!   already refuses it at serve time; this keeps the public store to what
//!   may be served.
//!
//! Every step is idempotent, so several replicas may sweep at once.

use imgcdn_shared::storage::{manifest_key, object_key};

use super::lifecycle::{self, Actor, Edit};
use super::queries;
use super::row::ImageStatus;
use crate::AppState;

/// A `processing` row this old is an interrupted upload.
pub const STALE_SECS: i64 = 3600;

const SWEEP: Actor = Actor::System("sweep");

/// What one pass did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Swept {
    pub completed: u64,
    pub failed: u64,
    pub redeleted: u64,
    pub expired: u64,
}

/// One pass over the database and the public store.
pub async fn run_once(state: &AppState) -> Result<Swept, String> {
    let now = state.clock.unix_now();
    let mut out = Swept::default();
    let err = |e: &dyn std::fmt::Display| e.to_string();

    for row in queries::stale_processing(&state.db, now - STALE_SECS).await.map_err(|e| err(&e))? {
        let image = row.image_id();
        // Complete when its manifest is out, or, for a private image (which
        // gets no manifest), when its bytes are.
        let marker = if row.public { manifest_key(&image) } else { object_key(&image) };
        if state.stores.public.exists(&marker).await.map_err(|e| err(&e))? {
            queries::finish(&state.db, &row.id, ImageStatus::Ready, now).await.map_err(|e| err(&e))?;
            out.completed += 1;
        } else {
            state.stores.public.delete(&object_key(&image)).await.map_err(|e| err(&e))?;
            queries::finish(&state.db, &row.id, ImageStatus::Failed, now).await.map_err(|e| err(&e))?;
            out.failed += 1;
        }
    }

    for row in queries::deleted_ready(&state.db).await.map_err(|e| err(&e))? {
        if state.stores.public.exists(&manifest_key(&row.image_id())).await.map_err(|e| err(&e))? {
            lifecycle::apply(state, &row.id, &SWEEP, "deleted", Edit::Delete).await.map_err(|e| err(&e))?;
            out.redeleted += 1;
        }
    }

    for row in queries::expired(&state.db, now).await.map_err(|e| err(&e))? {
        lifecycle::apply(state, &row.id, &SWEEP, "expired", Edit::Delete).await.map_err(|e| err(&e))?;
        out.expired += 1;
    }
    Ok(out)
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
