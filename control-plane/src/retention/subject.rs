//! Reading what the retention policy needs about an image from the
//! database: who uploaded it (verified or not, now) and its team's plan.

use sqlx::{AnyConnection, Row};

use super::policy::{self, Class, Subject, Surface, Uploader};
use crate::config::Config;
use crate::images::row::ImageRow;

/// Who uploads to `team_id`: the signed-in user `user_id`, verified or not;
/// for an API key (no user), verified when at least one of the team's
/// owners is. `None` team: anonymous.
pub async fn uploader(
    conn: &mut AnyConnection,
    team_id: Option<&str>,
    user_id: Option<&str>,
) -> Result<Uploader, sqlx::Error> {
    let Some(team_id) = team_id else { return Ok(Uploader::Anonymous) };
    let verified = match user_id {
        Some(user) => sqlx::query("SELECT 1 FROM users WHERE id = $1 AND email_verified_at IS NOT NULL")
            .bind(user)
            .fetch_optional(&mut *conn)
            .await?
            .is_some(),
        None => sqlx::query(
            "SELECT 1 FROM memberships m JOIN users u ON u.id = m.user_id \
             WHERE m.team_id = $1 AND m.role = 'owner' AND u.email_verified_at IS NOT NULL",
        )
        .bind(team_id)
        .fetch_optional(&mut *conn)
        .await?
        .is_some(),
    };
    Ok(if verified { Uploader::Verified } else { Uploader::Unverified })
}

/// The plan of `team_id` (`anonymous` for none).
pub async fn plan(conn: &mut AnyConnection, team_id: Option<&str>) -> Result<String, sqlx::Error> {
    match team_id {
        None => Ok("anonymous".into()),
        Some(team) => Ok(sqlx::query("SELECT plan FROM teams WHERE id = $1")
            .bind(team)
            .fetch_optional(&mut *conn)
            .await?
            .map_or_else(|| "free".into(), |r| r.get(0))),
    }
}

/// The expiry the policy gives `row` now (with its `requested_expires_at`).
pub async fn expiry_of(conn: &mut AnyConnection, cfg: &Config, row: &ImageRow) -> Result<Option<i64>, sqlx::Error> {
    let uploader = uploader(conn, row.team_id.as_deref(), row.uploaded_by.as_deref()).await?;
    let plan_name = plan(conn, row.team_id.as_deref()).await?;
    let subject = Subject {
        uploader,
        plan: cfg.plans.get(&plan_name).terms(),
        surface: Surface::parse(&row.source).unwrap_or(Surface::Api),
        class: Class::of(row.classification.as_deref(), row.warned),
        created_at: row.created_at,
        requested: row.requested_expires_at,
    };
    Ok(policy::expires_at(&cfg.retention, &subject))
}
