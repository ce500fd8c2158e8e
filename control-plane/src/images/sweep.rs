//! The sweep: finishes or undoes interrupted writes and moves what should
//! no longer be public out of the public store.
//!
//! - A `processing` row older than [`STALE_SECS`] belongs to an upload that
//!   crashed between its steps. If its manifest made it to the store, the
//!   image is complete: mark it `ready`. If not, delete the orphan bytes and
//!   mark it `failed` (quota no longer counts it).
//! - A row marked deleted whose manifest is still in the public store (the
//!   delete was interrupted) is unpublished again.
//! - An image past `expires_at` is moved to the recovery store. The edge
//!   already refuses it at serve time; this keeps the public store to what
//!   may be served.
//!
//! Every step is idempotent, so several replicas may sweep at once.

use imgcdn_shared::storage::{manifest_key, object_key};
use imgcdn_shared::ImageId;
use sqlx::Row;

use super::object::{ImageRow, COLUMNS};
use super::routes::remove;
use crate::AppState;

/// A `processing` row this old is an interrupted upload.
pub const STALE_SECS: i64 = 3600;

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

    let stale = sqlx::query("SELECT id FROM images WHERE status = 'processing' AND created_at < $1")
        .bind(now - STALE_SECS)
        .fetch_all(&state.db.pool)
        .await
        .map_err(|e| err(&e))?;
    for row in stale {
        let id: String = row.get(0);
        let Ok(image) = id.parse::<ImageId>() else {
            continue;
        };
        // Complete when its manifest is out, or, for a private image (which
        // gets no manifest), when its bytes are.
        let private: i64 = sqlx::query("SELECT public FROM images WHERE id = $1")
            .bind(&id)
            .fetch_one(&state.db.pool)
            .await
            .map_err(|e| err(&e))?
            .get(0);
        let marker = if private == 0 { object_key(&image) } else { manifest_key(&image) };
        let published = state.stores.public.exists(&marker).await.map_err(|e| err(&e))?;
        if published {
            sqlx::query("UPDATE images SET status = 'ready', published_at = COALESCE(published_at, $1) WHERE id = $2 AND status = 'processing'")
                .bind(now)
                .bind(&id)
                .execute(&state.db.pool)
                .await
                .map_err(|e| err(&e))?;
            out.completed += 1;
        } else {
            state.stores.public.delete(&object_key(&image)).await.map_err(|e| err(&e))?;
            sqlx::query("UPDATE images SET status = 'failed' WHERE id = $1 AND status = 'processing'")
                .bind(&id)
                .execute(&state.db.pool)
                .await
                .map_err(|e| err(&e))?;
            out.failed += 1;
        }
    }

    let deleted =
        sqlx::query(&format!("SELECT {COLUMNS} FROM images WHERE deleted_at IS NOT NULL AND status = 'ready'"))
            .fetch_all(&state.db.pool)
            .await
            .map_err(|e| err(&e))?;
    for row in deleted.iter().map(ImageRow::from_row) {
        if state.stores.public.exists(&manifest_key(&row.image_id())).await.map_err(|e| err(&e))? {
            remove(state, &row, "deleted", "system:sweep").await.map_err(|e| err(&e))?;
            out.redeleted += 1;
        }
    }

    let expired = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM images WHERE deleted_at IS NULL AND status = 'ready' AND expires_at IS NOT NULL AND expires_at <= $1"
    ))
    .bind(now)
    .fetch_all(&state.db.pool)
    .await
    .map_err(|e| err(&e))?;
    for row in expired.iter().map(ImageRow::from_row) {
        remove(state, &row, "expired", "system:sweep").await.map_err(|e| err(&e))?;
        out.expired += 1;
    }
    Ok(out)
}

/// Withdraw the manifest of every image that must not be served (private
/// or taken down) but still has one, logging what edges must do first.
/// That happens when the store failed right after such a change, and for
/// images made private before edge sync existed (they kept their manifest).
/// Run once at start: it checks the store for every such image.
pub async fn withdraw_unservable(state: &AppState) -> Result<u64, String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM images WHERE deleted_at IS NULL AND status = 'ready' \
         AND (public = 0 OR takedown_reason IS NOT NULL)"
    ))
    .fetch_all(&state.db.pool)
    .await
    .map_err(|e| err(&e))?;
    let mut withdrawn = 0;
    for row in rows.iter().map(ImageRow::from_row) {
        if !state.stores.public.exists(&manifest_key(&row.image_id())).await.map_err(|e| err(&e))? {
            continue;
        }
        let now = state.clock.unix_now();
        let mut tx = state.db.pool.begin().await.map_err(|e| err(&e))?;
        let change = crate::sync::record(&mut tx, state.db.backend, &row.id, "system:sweep", "not servable", now)
            .await
            .map_err(|e| err(&e))?;
        tx.commit().await.map_err(|e| err(&e))?;
        if let Some(c) = change {
            state.sync.advance(c.seq);
        }
        state.stores.withdraw(&row.image_id()).await.map_err(|e| err(&e))?;
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
