//! Reading, and once drawing, a team's storage name (no image changes
//! here: the lifecycle reads names through this file).

use imgcdn_shared::StorageName;
use sqlx::{AnyConnection, Row};

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
