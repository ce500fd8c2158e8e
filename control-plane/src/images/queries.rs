//! The SQL of the `images` table: every query on it lives here, so a
//! schema change touches one file.

use serde_json::{Map, Value};
use sqlx::{AnyConnection, Row};

use super::row::{ImageRow, ImageStatus, COLUMNS};
use super::store::Place;
use crate::db::{Backend, Db};
use imgcdn_shared::StorageName;

/// One image by id (any state).
pub async fn fetch(db: &Db, id: &str) -> Result<Option<ImageRow>, sqlx::Error> {
    let mut conn = db.pool.acquire().await?;
    fetch_in(&mut conn, id).await
}

/// One image by id, inside the caller's transaction.
pub async fn fetch_in(conn: &mut AnyConnection, id: &str) -> Result<Option<ImageRow>, sqlx::Error> {
    Ok(sqlx::query(&format!("SELECT {COLUMNS} FROM images WHERE id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await?
        .map(|r| ImageRow::from_row(&r)))
}

/// Images by id (any state, those that exist), in one query.
pub async fn fetch_many(db: &Db, ids: &[&str]) -> Result<Vec<ImageRow>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let marks: Vec<String> = (1..=ids.len()).map(|i| format!("${i}")).collect();
    let sql = format!("SELECT {COLUMNS} FROM images WHERE id IN ({})", marks.join(", "));
    let mut q = sqlx::query(&sql);
    for id in ids {
        q = q.bind(*id);
    }
    Ok(q.fetch_all(&db.pool).await?.iter().map(ImageRow::from_row).collect())
}

/// One image by id inside a write transaction, locked until it ends (on
/// PostgreSQL; a SQLite write transaction already holds the database).
pub async fn fetch_for_update(
    conn: &mut AnyConnection,
    backend: Backend,
    id: &str,
) -> Result<Option<ImageRow>, sqlx::Error> {
    let lock = if backend == Backend::Postgres { " FOR UPDATE" } else { "" };
    Ok(sqlx::query(&format!("SELECT {COLUMNS} FROM images WHERE id = $1{lock}"))
        .bind(id)
        .fetch_optional(conn)
        .await?
        .map(|r| ImageRow::from_row(&r)))
}

/// Images a team holds against its plan: not deleted, not failed.
/// Images that count against a plan's limit.
const LIVE_COUNT: &str = "SELECT COUNT(*) FROM images WHERE team_id = $1 AND deleted_at IS NULL AND status <> 'failed'";

pub async fn live_count(db: &Db, team_id: &str) -> Result<i64, sqlx::Error> {
    Ok(sqlx::query(LIVE_COUNT).bind(team_id).fetch_one(&db.pool).await?.get(0))
}

/// [`live_count`] inside a write transaction that holds the team until it
/// ends: uploads of one team are serialised from here to commit (SQLite's
/// write transaction already is; on PostgreSQL the team's row is locked).
pub async fn live_count_locked(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    backend: crate::db::Backend,
    team_id: &str,
) -> Result<i64, sqlx::Error> {
    if backend == crate::db::Backend::Postgres {
        sqlx::query("SELECT id FROM teams WHERE id = $1 FOR UPDATE").bind(team_id).fetch_optional(&mut **tx).await?;
    }
    Ok(sqlx::query(LIVE_COUNT).bind(team_id).fetch_one(&mut **tx).await?.get(0))
}

/// Every image a team ever uploaded (deleted and failed included).
pub async fn total_count(db: &Db, team_id: &str) -> Result<i64, sqlx::Error> {
    Ok(sqlx::query("SELECT COUNT(*) FROM images WHERE team_id = $1").bind(team_id).fetch_one(&db.pool).await?.get(0))
}

/// Bytes a team stores: each stored object once, however many images show it.
pub async fn storage_used(db: &Db, team_id: &str) -> Result<i64, sqlx::Error> {
    Ok(sqlx::query(
        "SELECT CAST(COALESCE(SUM(bytes), 0) AS BIGINT) FROM (SELECT DISTINCT COALESCE(object_key, 'objects/' || id) AS k, bytes \
         FROM images WHERE team_id = $1 AND deleted_at IS NULL AND status <> 'failed') AS stored",
    )
    .bind(team_id)
    .fetch_one(&db.pool)
    .await?
    .get(0))
}

/// Up to `limit` ready, live images of a team, newest first, after the
/// cursor `(created_at, id)` if given.
pub async fn page(
    db: &Db,
    team_id: &str,
    after: Option<&(i64, String)>,
    limit: i64,
) -> Result<Vec<ImageRow>, sqlx::Error> {
    let live = "team_id = $1 AND deleted_at IS NULL AND status = 'ready' AND takedown_reason IS NULL";
    let rows = match after {
        Some((t, id)) => {
            sqlx::query(&format!(
                "SELECT {COLUMNS} FROM images WHERE {live} AND (created_at < $2 OR (created_at = $2 AND id < $3)) \
                 ORDER BY created_at DESC, id DESC LIMIT $4"
            ))
            .bind(team_id)
            .bind(*t)
            .bind(id)
            .bind(limit)
            .fetch_all(&db.pool)
            .await?
        }
        None => {
            sqlx::query(&format!(
                "SELECT {COLUMNS} FROM images WHERE {live} ORDER BY created_at DESC, id DESC LIMIT $2"
            ))
            .bind(team_id)
            .bind(limit)
            .fetch_all(&db.pool)
            .await?
        }
    };
    Ok(rows.iter().map(ImageRow::from_row).collect())
}

/// The first live image of `team_id` storing bytes with this SHA-256,
/// locked until the caller's transaction ends (on PostgreSQL; a SQLite
/// write transaction excludes every other writer): a delete of it waits,
/// and then counts the new image among those showing its bytes.
pub async fn same_bytes(
    conn: &mut AnyConnection,
    backend: Backend,
    team_id: &str,
    sha256: &str,
) -> Result<Option<ImageRow>, sqlx::Error> {
    let lock = if backend == Backend::Postgres { " FOR UPDATE" } else { "" };
    Ok(sqlx::query(&format!(
        "SELECT {COLUMNS} FROM images WHERE team_id = $1 AND sha256 = $2 AND deleted_at IS NULL AND status = 'ready' \
         AND takedown_reason IS NULL AND bytes_in = 'public' ORDER BY created_at, id LIMIT 1{lock}"
    ))
    .bind(team_id)
    .bind(sha256)
    .fetch_optional(conn)
    .await?
    .map(|r| ImageRow::from_row(&r)))
}

/// Other live images (any team) storing bytes with this SHA-256.
pub async fn same_sha256(db: &Db, sha256: &str, except: &str) -> Result<Vec<String>, sqlx::Error> {
    Ok(sqlx::query(
        "SELECT id FROM images WHERE sha256 = $1 AND id <> $2 AND deleted_at IS NULL AND takedown_reason IS NULL \
         AND status <> 'failed' ORDER BY id",
    )
    .bind(sha256)
    .bind(except)
    .fetch_all(&db.pool)
    .await?
    .iter()
    .map(|r| r.get(0))
    .collect())
}

/// How many images other than `id` still need the stored `object`: live
/// ones, and deleted ones whose move to recovery is still owed (it copies
/// the bytes).
pub async fn others_showing(db: &Db, id: &str, object: &str) -> Result<i64, sqlx::Error> {
    Ok(sqlx::query(
        "SELECT COUNT(*) FROM images WHERE (deleted_at IS NULL OR store_pending = 1) AND status <> 'failed' \
         AND id <> $1 AND (object_key = $2 OR ('objects/' || id) = $2)",
    )
    .bind(id)
    .bind(object)
    .fetch_one(&db.pool)
    .await?
    .get(0))
}

/// A new image, as an upload writes it (status `processing`).
pub struct NewImage<'a> {
    pub id: &'a str,
    pub team_id: Option<&'a str>,
    pub uploaded_by: Option<&'a str>,
    pub source: &'a str,
    pub format: &'a str,
    pub content_type: &'a str,
    pub width: u32,
    pub height: u32,
    pub bytes: usize,
    pub sha256: &'a str,
    pub filename: Option<String>,
    pub caption: Option<String>,
    pub public: bool,
    pub labels: Map<String, Value>,
    pub metadata: Map<String, Value>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub requested_expires_at: Option<i64>,
    /// Set when the bytes go straight to recovery (removed at upload).
    pub reap_at: Option<i64>,
    pub object_key: Option<String>,
    pub status: ImageStatus,
    pub warned: bool,
    pub bytes_in: Place,
    pub pdq: Option<String>,
    pub nsfw: Option<bool>,
    pub classification: Option<String>,
    /// The team's storage name (`None` for anonymous uploads).
    pub storage: Option<StorageName>,
}

pub async fn insert(conn: &mut AnyConnection, n: NewImage<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO images (id, team_id, uploaded_by, source, format, content_type, width, height, bytes, sha256, filename, caption, \
         public, labels, metadata, status, created_at, published_at, expires_at, deleted_at, object_key, \
         warned, bytes_in, pdq, nsfw, classification, requested_expires_at, reap_at, storage) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, NULL, $18, NULL, $19, \
         $20, $21, $22, $23, $24, $25, $26, $27)",
    )
    .bind(n.id)
    .bind(n.team_id.map(str::to_string))
    .bind(n.uploaded_by.map(str::to_string))
    .bind(n.source)
    .bind(n.format)
    .bind(n.content_type)
    .bind(i64::from(n.width))
    .bind(i64::from(n.height))
    .bind(n.bytes as i64)
    .bind(n.sha256)
    .bind(n.filename)
    .bind(n.caption)
    .bind(i64::from(n.public))
    .bind(Value::Object(n.labels).to_string())
    .bind(Value::Object(n.metadata).to_string())
    .bind(n.status.as_str())
    .bind(n.created_at)
    .bind(n.expires_at)
    .bind(n.object_key)
    .bind(i64::from(n.warned))
    .bind(n.bytes_in.as_str())
    .bind(n.pdq)
    .bind(n.nsfw.map(i64::from))
    .bind(n.classification)
    .bind(n.requested_expires_at)
    .bind(n.reap_at)
    .bind(n.storage.map(|s| s.to_string()))
    .execute(conn)
    .await?;
    Ok(())
}

/// Finish an upload: `processing` → `ready` (published at `now`) or
/// `failed`. Only a row still `processing` changes; whether it did.
pub async fn finish(db: &Db, id: &str, status: ImageStatus, now: i64) -> Result<bool, sqlx::Error> {
    let published_at = (status == ImageStatus::Ready).then_some(now);
    let n = sqlx::query(
        "UPDATE images SET status = $1, published_at = COALESCE(published_at, $2) WHERE id = $3 AND status = 'processing'",
    )
    .bind(status.as_str())
    .bind(published_at)
    .bind(id)
    .execute(&db.pool)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// An upload whose bytes could not be stored: nothing of it exists.
pub async fn mark_failed(db: &Db, id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE images SET status = 'failed' WHERE id = $1").bind(id).execute(&db.pool).await?;
    Ok(())
}

/// The user-editable fields, written together.
pub async fn update_fields(conn: &mut AnyConnection, row: &ImageRow) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE images SET caption = $1, labels = $2, metadata = $3, public = $4 WHERE id = $5")
        .bind(row.caption.clone())
        .bind(Value::Object(row.labels.clone()).to_string())
        .bind(Value::Object(row.metadata.clone()).to_string())
        .bind(i64::from(row.public))
        .bind(&row.id)
        .execute(conn)
        .await?;
    Ok(())
}

/// The expiry the policy decided and the one the uploader asked for.
pub async fn set_expiry(conn: &mut AnyConnection, row: &ImageRow) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE images SET expires_at = $1, requested_expires_at = $2 WHERE id = $3")
        .bind(row.expires_at)
        .bind(row.requested_expires_at)
        .bind(&row.id)
        .execute(conn)
        .await?;
    Ok(())
}

/// What classification decided: status, warning, when published, the
/// classification and the nudity verdict.
pub async fn set_outcome(conn: &mut AnyConnection, row: &ImageRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE images SET status = $1, warned = $2, published_at = $3, classification = $4, nsfw = $5 WHERE id = $6",
    )
    .bind(row.status.as_str())
    .bind(i64::from(row.warned))
    .bind(row.published_at)
    .bind(row.classification.clone())
    .bind(row.nsfw.map(i64::from))
    .bind(&row.id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Where the bytes are, under which public key, and when they are reaped
/// (in the recovery store only).
pub async fn set_placement(conn: &mut AnyConnection, row: &ImageRow) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE images SET bytes_in = $1, object_key = $2, reap_at = $3 WHERE id = $4")
        .bind(row.bytes_in.as_str())
        .bind(row.object_key.clone())
        .bind(row.reap_at)
        .bind(&row.id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Mark deleted (the first deletion time is kept).
pub async fn mark_deleted(conn: &mut AnyConnection, id: &str, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE images SET deleted_at = COALESCE(deleted_at, $1) WHERE id = $2")
        .bind(now)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Operator decisions: the takedown reason (or none) and the warning flag.
/// The storage name the image's manifest carries, and whether its shard
/// URL serves too.
pub async fn set_storage(conn: &mut AnyConnection, row: &ImageRow) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE images SET storage = $1, shard_url = $2 WHERE id = $3")
        .bind(row.storage.map(|s| s.to_string()))
        .bind(i64::from(row.shard_url))
        .bind(&row.id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Up to `limit` ids after `after` of teams' live images that have no
/// storage name yet (uploaded before storage names existed), in id order.
/// Deleted and failed ones are never served again: they keep the old form.
pub async fn unnamed(db: &Db, after: &str, limit: i64) -> Result<Vec<String>, sqlx::Error> {
    Ok(sqlx::query(
        "SELECT id FROM images WHERE team_id IS NOT NULL AND storage IS NULL AND deleted_at IS NULL \
         AND status <> 'failed' AND id > $1 ORDER BY id LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(&db.pool)
    .await?
    .iter()
    .map(|r| r.get(0))
    .collect())
}

pub async fn set_decisions(
    conn: &mut AnyConnection,
    id: &str,
    takedown_reason: Option<&str>,
    warned: bool,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE images SET takedown_reason = $1, warned = $2 WHERE id = $3")
        .bind(takedown_reason.map(str::to_string))
        .bind(i64::from(warned))
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Uploads still `processing` that were created before `before`.
pub async fn stale_processing(db: &Db, before: i64) -> Result<Vec<ImageRow>, sqlx::Error> {
    select(db, "status = 'processing' AND created_at < $1", Some(before)).await
}

/// Images whose last change still owes store work (it failed or was
/// interrupted after the commit).
pub async fn store_pending(db: &Db) -> Result<Vec<ImageRow>, sqlx::Error> {
    select(db, "store_pending = 1", None).await
}

/// Mark (inside the change's transaction) or clear (once done) the store
/// work a change of `id` owes.
pub async fn set_store_pending(conn: &mut AnyConnection, id: &str, pending: bool) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE images SET store_pending = $1 WHERE id = $2")
        .bind(i64::from(pending))
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Live images (ready, or held for review) whose expiry is at or before `now`.
pub async fn expired(db: &Db, now: i64) -> Result<Vec<ImageRow>, sqlx::Error> {
    select(
        db,
        "deleted_at IS NULL AND status IN ('ready', 'review') AND expires_at IS NOT NULL AND expires_at <= $1",
        Some(now),
    )
    .await
}

/// Images whose bytes are in the recovery store past `reap_at`.
pub async fn due_for_reaping(db: &Db, now: i64) -> Result<Vec<ImageRow>, sqlx::Error> {
    select(db, "bytes_in = 'recovery' AND reap_at IS NOT NULL AND reap_at <= $1 AND store_pending = 0", Some(now)).await
}

/// Forget an image whose bytes were reaped: its row, its classifier
/// records and its entries in the edge-sync log (all of them, or all but
/// the last when that is a takedown: edges keep answering 451 for it). By
/// now every edge has long applied the hide (an edge that comes back later
/// fetches a snapshot, and the image's manifest is long gone). Review,
/// report and DMCA records keep their own retention.
pub async fn purge(conn: &mut AnyConnection, id: &str) -> Result<(), sqlx::Error> {
    for table in ["classifications", "classification_jobs"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE image_id = $1")).bind(id).execute(&mut *conn).await?;
    }
    let last = sqlx::query("SELECT seq, action FROM visibility_changes WHERE image_id = $1 ORDER BY seq DESC LIMIT 1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    if let Some(last) = last {
        let keep_from = if last.get::<String, _>(1) == "takedown" { last.get::<i64, _>(0) } else { i64::MAX };
        sqlx::query("DELETE FROM visibility_changes WHERE image_id = $1 AND seq < $2")
            .bind(id)
            .bind(keep_from)
            .execute(&mut *conn)
            .await?;
    }
    sqlx::query("DELETE FROM images WHERE id = $1").bind(id).execute(&mut *conn).await?;
    Ok(())
}

/// Live, ready images an edge must not serve (private or taken down).
pub async fn unservable(db: &Db) -> Result<Vec<ImageRow>, sqlx::Error> {
    select(db, "deleted_at IS NULL AND status = 'ready' AND (public = 0 OR takedown_reason IS NOT NULL)", None).await
}

async fn select(db: &Db, filter: &str, bind: Option<i64>) -> Result<Vec<ImageRow>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM images WHERE {filter}");
    let mut q = sqlx::query(&sql);
    if let Some(b) = bind {
        q = q.bind(b);
    }
    Ok(q.fetch_all(&db.pool).await?.iter().map(ImageRow::from_row).collect())
}
