//! Operators: the people who take images down, warn and restore them. They
//! hold their own bearer tokens (`img_op_…`, stored as SHA-256 only), never
//! a user's API key or session, and are created from the command line
//! (`imgcdn admin operator create NAME`) by whoever runs the deployment.

use sqlx::Row;

use crate::db::{is_unique_violation, Db};
use crate::images::lifecycle::Actor;
use crate::secrets::{hash_token, new_id, random_alnum};

pub const OPERATOR_TOKEN_PREFIX: &str = "img_op_";

/// An authenticated operator.
#[derive(Debug, Clone)]
pub struct Operator {
    pub id: String,
    pub name: String,
}

impl Operator {
    /// How the logs name this operator.
    pub fn actor(&self) -> Actor {
        Actor::Operator(self.id.clone())
    }
}

/// The active operator holding `token`, if any.
pub async fn authenticate(db: &Db, token: &str) -> Result<Option<Operator>, sqlx::Error> {
    Ok(sqlx::query("SELECT id, name FROM operators WHERE token_hash = $1 AND revoked_at IS NULL")
        .bind(hash_token(token))
        .fetch_optional(&db.pool)
        .await?
        .map(|row| Operator { id: row.get(0), name: row.get(1) }))
}

/// The active operator named `name`, if any (for the command line).
pub async fn by_name(db: &Db, name: &str) -> Result<Option<Operator>, sqlx::Error> {
    Ok(sqlx::query("SELECT id, name FROM operators WHERE name = $1 AND revoked_at IS NULL")
        .bind(name)
        .fetch_optional(&db.pool)
        .await?
        .map(|row| Operator { id: row.get(0), name: row.get(1) }))
}

/// Why an operator could not be created or revoked.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error("an operator named {0:?} already exists")]
    Exists(String),
    #[error("no active operator named {0:?}")]
    NotFound(String),
    #[error("name must be 1-64 characters of letters, digits, '.', '_', '-' or '@'")]
    BadName,
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

/// Create an operator; returns its token (shown once, stored hashed).
pub async fn create(db: &Db, name: &str, now: i64) -> Result<String, OperatorError> {
    let ok = |c: char| c.is_ascii_alphanumeric() || "._-@".contains(c);
    if name.is_empty() || name.len() > 64 || !name.chars().all(ok) {
        return Err(OperatorError::BadName);
    }
    let token = format!("{OPERATOR_TOKEN_PREFIX}{}", random_alnum(40));
    sqlx::query("INSERT INTO operators (id, name, token_hash, created_at, revoked_at) VALUES ($1, $2, $3, $4, NULL)")
        .bind(new_id("op"))
        .bind(name)
        .bind(hash_token(&token))
        .bind(now)
        .execute(&db.pool)
        .await
        .map_err(|e| if is_unique_violation(&e) { OperatorError::Exists(name.to_string()) } else { e.into() })?;
    Ok(token)
}

/// Revoke an operator's token (the name stays taken, for the log's sake).
pub async fn revoke(db: &Db, name: &str, now: i64) -> Result<(), OperatorError> {
    let done = sqlx::query("UPDATE operators SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL")
        .bind(now)
        .bind(name)
        .execute(&db.pool)
        .await?;
    if done.rows_affected() == 0 {
        return Err(OperatorError::NotFound(name.to_string()));
    }
    Ok(())
}

/// (name, created_at, revoked_at) of every operator.
pub async fn list(db: &Db) -> Result<Vec<(String, i64, Option<i64>)>, sqlx::Error> {
    Ok(sqlx::query("SELECT name, created_at, revoked_at FROM operators ORDER BY created_at, name")
        .fetch_all(&db.pool)
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}
