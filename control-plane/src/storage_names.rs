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

use imgcdn_shared::StorageName;
use sqlx::{AnyConnection, Row};

use crate::images::lifecycle::{self, Actor, Edit};
use crate::images::queries;
use crate::AppState;

/// Insert a team row with a fresh storage name.
pub async fn insert_team(
    conn: &mut AnyConnection,
    id: &str,
    name: &str,
    personal: bool,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO teams (id, name, personal, created_at, storage) VALUES ($1, $2, $3, $4, $5)")
        .bind(id)
        .bind(name)
        .bind(i64::from(personal))
        .bind(now)
        .bind(StorageName::generate().to_string())
        .execute(conn)
        .await?;
    Ok(())
}

/// The team's storage name as stored (`None`: no such team, or not named
/// yet). Reads only.
pub async fn current(conn: &mut AnyConnection, team_id: &str) -> Result<Option<StorageName>, sqlx::Error> {
    let row = sqlx::query("SELECT storage FROM teams WHERE id = $1").bind(team_id).fetch_optional(conn).await?;
    Ok(row.and_then(|r| r.get::<Option<String>, _>(0)).and_then(|s| s.parse().ok()))
}

/// The team's storage name: the first segment of its images' URLs. A team
/// created before storage names gets one here, once (`None`: no such team).
pub async fn storage_name(conn: &mut AnyConnection, team_id: &str) -> Result<Option<StorageName>, sqlx::Error> {
    let read = |r: Option<sqlx::any::AnyRow>| r.map(|r| r.get::<Option<String>, _>(0));
    let current =
        read(sqlx::query("SELECT storage FROM teams WHERE id = $1").bind(team_id).fetch_optional(&mut *conn).await?);
    let stored = match current {
        None => return Ok(None),
        Some(Some(s)) => s,
        Some(None) => {
            sqlx::query("UPDATE teams SET storage = $1 WHERE id = $2 AND storage IS NULL")
                .bind(StorageName::generate().to_string())
                .bind(team_id)
                .execute(&mut *conn)
                .await?;
            // Another writer may have named it first: the name is whatever is stored.
            let again =
                sqlx::query("SELECT storage FROM teams WHERE id = $1").bind(team_id).fetch_one(&mut *conn).await?;
            again.get::<Option<String>, _>(0).unwrap_or_default()
        }
    };
    stored.parse().map(Some).map_err(|_| sqlx::Error::Protocol(format!("team {team_id}: storage name {stored:?}")))
}

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
