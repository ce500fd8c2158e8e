//! Named leases in the database, so that a background job runs on one
//! control plane at a time however many share the database. A lease is
//! held until a time; a holder that dies simply lets it run out.

use crate::db::Db;

/// Take (or renew) lease `name` for `holder` until `now + secs`; `false`
/// when another holder has it. One conditional `UPDATE`: on PostgreSQL a
/// concurrent one waits for the first and then re-checks the condition
/// against what it wrote, so two holders never both win.
pub async fn acquire(db: &Db, name: &str, holder: &str, now: i64, secs: i64) -> Result<bool, sqlx::Error> {
    sqlx::query("INSERT INTO leases (name, holder, held_until) VALUES ($1, '', 0) ON CONFLICT (name) DO NOTHING")
        .bind(name)
        .execute(&db.pool)
        .await?;
    let won = sqlx::query(
        "UPDATE leases SET holder = $1, held_until = $2 WHERE name = $3 AND (holder = $1 OR held_until <= $4)",
    )
    .bind(holder)
    .bind(now + secs)
    .bind(name)
    .bind(now)
    .execute(&db.pool)
    .await?
    .rows_affected();
    Ok(won == 1)
}

/// Give lease `name` up, if `holder` has it.
pub async fn release(db: &Db, name: &str, holder: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2").bind(name).bind(holder).execute(&db.pool).await?;
    Ok(())
}
