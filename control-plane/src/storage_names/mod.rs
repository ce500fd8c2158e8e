//! Storage names: the first segment of the URLs of a team's images,
//! `/{storage}/{id}.{ext}`.
//!
//! Every team gets a random [`StorageName`] when it is created
//! ([`insert_team`]); it never changes, and every image uploaded to the
//! team carries it in its row and its manifest. Clients read it to tell
//! which team (img.pro: which App) a URL belongs to, and the edge serves an
//! image only under its own storage, so a guessed id under another team's
//! name is 404 like an unknown one.
//!
//! Images uploaded before storage names had URLs of the shard form
//! `/{shard}/{id}.{ext}`. At start, [`name_existing`] gives every team
//! without a name one and renames its images through
//! [`lifecycle::apply`] ([`Edit::Name`]): the new manifest names the
//! storage and keeps the shard form serving (`shard_url`), so URLs already
//! handed out keep working, and edges are told to drop their copies so
//! they re-read it. Anonymous uploads have no team: they keep the shard
//! form.

pub mod names;

pub use names::{current, insert_team, storage_name};
use sqlx::Row;

use crate::images::lifecycle::{self, Actor, Edit};
use crate::images::queries;
use crate::AppState;

/// Name every team created before storage names, then rename their
/// images, a batch at a time; how many images were renamed. An image that
/// fails is logged and left for the next start (or the next call).
pub async fn name_existing(state: &AppState) -> Result<u64, sqlx::Error> {
    let unnamed: Vec<String> = sqlx::query("SELECT id FROM teams WHERE storage IS NULL")
        .fetch_all(&state.db.pool)
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for team in &unnamed {
        let mut conn = state.db.pool.acquire().await?;
        storage_name(&mut conn, team).await?;
    }
    let mut renamed = 0;
    let mut after = String::new();
    loop {
        let ids = queries::unnamed(&state.db, &after, 100).await?;
        let Some(last) = ids.last() else { break };
        after = last.clone();
        for id in &ids {
            match lifecycle::apply(state, id, &Actor::System("storage-names"), "storage name", Edit::Name).await {
                Ok(_) => renamed += 1,
                Err(e) => {
                    tracing::warn!(%id, error = %e, "naming an image's storage failed; retried at the next start")
                }
            }
        }
    }
    if renamed > 0 {
        tracing::info!(images = renamed, teams = unnamed.len(), "images renamed under their team's storage");
    }
    Ok(renamed)
}
