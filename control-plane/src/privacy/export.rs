//! Data exports (access and portability): `POST /v1/me/export` queues one;
//! a leased job ([`run_due`], any control plane) writes a tar archive of
//! JSON files and the original image bytes to a temporary file, one image
//! at a time and streamed (no archive, and no image, whole in memory), then
//! copies it to the staging store (`exports/{id}.tar`, never given to
//! edges) and mails its owner. The owner downloads it, signed in, until
//! `privacy.export_ttl_days` have passed; the sweep then deletes it.
//!
//! The archive: `README.txt`; `account.json` (profile, verification,
//! restriction and objection, deletion state); `consents.json`;
//! `sessions.json` (with the sign-in IP address and user agent);
//! `api_keys.json` (metadata, never a secret); `teams.json` (teams and
//! roles); per image `images/{id}.json` and `images/{id}.{ext}` (every image
//! they uploaded or their personal team holds, with its bytes when they are
//! still kept); `moderation.json` (review items and decisions, reports and
//! blocklist matches about those images); `dmca.json` (notices about their
//! images or filed by them); `request_log.json` (their personal team's API
//! request log).

use futures::TryStreamExt;
use serde_json::{json, Value};
use sqlx::any::AnyRow;
use sqlx::{Column, Row, TypeInfo, ValueRef};
use tokio::io::AsyncWriteExt;

use crate::dates::{iso, DAY};
use crate::email::{enqueue, templates};
use crate::error::{ApiError, ApiResult};
use crate::images::queries;
use crate::images::row::ImageRow;
use crate::AppState;

/// A job not finished within this is taken over by another process.
const LEASE_SECS: i64 = 1800;
/// Attempts before an export is marked failed.
const MAX_ATTEMPTS: i64 = 3;

fn archive_key(id: &str) -> String {
    format!("exports/{id}.tar")
}

/// Queue an export of `user_id`'s data; its id. One at a time per account.
pub async fn request(state: &AppState, user_id: &str) -> ApiResult<Value> {
    state.limiter.hit("export", user_id, 3, DAY).map_err(|s| ApiError::RateLimited { retry_after_secs: s })?;
    let now = state.clock.unix_now();
    let mut tx = state.db.begin_write().await?;
    let active = sqlx::query("SELECT id FROM exports WHERE user_id = $1 AND state IN ('queued', 'building')")
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await?;
    let id = match active {
        Some(r) => r.get(0),
        None => {
            let id = crate::secrets::new_sortable_id("exp");
            sqlx::query(
                "INSERT INTO exports (id, user_id, state, created_at, leased_until, attempts, ready_at, expires_at, bytes) \
                 VALUES ($1, $2, 'queued', $3, NULL, 0, NULL, NULL, NULL)",
            )
            .bind(&id)
            .bind(user_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            id
        }
    };
    tx.commit().await?;
    state.export_wake.notify_one();
    status(state, user_id, &id).await
}

/// An export of `user_id`, as the API shows it.
pub async fn status(state: &AppState, user_id: &str, id: &str) -> ApiResult<Value> {
    let r = sqlx::query(
        "SELECT id, state, created_at, ready_at, expires_at, bytes FROM exports WHERE id = $1 AND user_id = $2",
    )
    .bind(id)
    .bind(user_id)
    .fetch_optional(&state.db.pool)
    .await?
    .ok_or(ApiError::NotFound)?;
    let id: String = r.get("id");
    let ready = r.get::<String, _>("state") == "ready";
    Ok(json!({
        "id": id, "object": "export", "state": r.get::<String, _>("state"),
        "created_at": iso(r.get("created_at")),
        "ready_at": r.get::<Option<i64>, _>("ready_at").map(iso),
        "expires_at": r.get::<Option<i64>, _>("expires_at").map(iso),
        "bytes": r.get::<Option<i64>, _>("bytes"),
        "download_url": ready.then(|| download_url(state, &id)),
    }))
}

/// `user_id`'s ten newest exports, newest first, each as [`status`] shows it
/// (for the settings page).
pub async fn list(state: &AppState, user_id: &str) -> ApiResult<Vec<Value>> {
    let ids: Vec<String> =
        sqlx::query("SELECT id FROM exports WHERE user_id = $1 ORDER BY created_at DESC, id DESC LIMIT 10")
            .bind(user_id)
            .fetch_all(&state.db.pool)
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        out.push(status(state, user_id, &id).await?);
    }
    Ok(out)
}

fn download_url(state: &AppState, id: &str) -> String {
    format!("{}/v1/me/exports/{id}/download", state.cfg.public_base_url.trim_end_matches('/'))
}

/// The archive of a ready, unexpired export of `user_id`: its size and a
/// stream of its bytes from the store.
pub async fn download(
    state: &AppState,
    user_id: &str,
    id: &str,
) -> ApiResult<(u64, impl futures::Stream<Item = Result<bytes::Bytes, std::io::Error>>)> {
    let now = state.clock.unix_now();
    let r =
        sqlx::query("SELECT bytes FROM exports WHERE id = $1 AND user_id = $2 AND state = 'ready' AND expires_at > $3")
            .bind(id)
            .bind(user_id)
            .bind(now)
            .fetch_optional(&state.db.pool)
            .await?
            .ok_or(ApiError::NotFound)?;
    let len = r.get::<Option<i64>, _>(0).unwrap_or(0) as u64;
    let store_err = |e: opendal::Error| ApiError::Internal(format!("export {id}: {e}"));
    let reader = state.stores.staging.reader(&archive_key(id)).await.map_err(store_err)?;
    let stream = reader.into_bytes_stream(..).await.map_err(store_err)?;
    Ok((len, stream))
}

/// Build every export that is due (leased: one process per export).
pub async fn run_due(state: &AppState) -> Result<usize, sqlx::Error> {
    let now = state.clock.unix_now();
    let due = sqlx::query(
        "SELECT id, user_id FROM exports WHERE state IN ('queued', 'building') \
         AND (leased_until IS NULL OR leased_until < $1) ORDER BY created_at LIMIT 10",
    )
    .bind(now)
    .fetch_all(&state.db.pool)
    .await?;
    let mut built = 0;
    for r in due {
        let (id, user): (String, String) = (r.get(0), r.get(1));
        let leased = sqlx::query(
            "UPDATE exports SET state = 'building', leased_until = $1, attempts = attempts + 1 \
             WHERE id = $2 AND (leased_until IS NULL OR leased_until < $3)",
        )
        .bind(now + LEASE_SECS)
        .bind(&id)
        .bind(now)
        .execute(&state.db.pool)
        .await?
        .rows_affected();
        if leased != 1 {
            continue;
        }
        match build(state, &id, &user).await {
            Ok(()) => built += 1,
            Err(e) => {
                tracing::warn!(export = %id, error = %e, "building an export failed");
                sqlx::query(
                    "UPDATE exports SET leased_until = NULL, state = CASE WHEN attempts >= $1 THEN 'failed' ELSE 'queued' END \
                     WHERE id = $2",
                )
                .bind(MAX_ATTEMPTS)
                .bind(&id)
                .execute(&state.db.pool)
                .await?;
            }
        }
    }
    Ok(built)
}

/// Wait for exports to build until `shutdown` flips.
pub async fn job_loop(state: AppState, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    loop {
        if let Err(e) = run_due(&state).await {
            tracing::warn!(error = %e, "export jobs");
        }
        tokio::select! {
            _ = state.export_wake.notified() => {}
            _ = tokio::time::sleep(std::time::Duration::from_secs(30)) => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
    }
}

/// Delete an export's archive (expired, or its account erased).
pub async fn drop_archive(state: &AppState, id: &str) -> Result<(), opendal::Error> {
    state.stores.staging.delete(&archive_key(id)).await
}

/// Exports past their download window, and failed ones older than a day.
pub async fn expired(state: &AppState, now: i64) -> Result<Vec<String>, sqlx::Error> {
    Ok(sqlx::query(
        "SELECT id FROM exports WHERE (state = 'ready' AND expires_at <= $1) OR (state = 'failed' AND created_at <= $2)",
    )
    .bind(now)
    .bind(now - DAY)
    .fetch_all(&state.db.pool)
    .await?
    .iter()
    .map(|r| r.get(0))
    .collect())
}

/// Delete an expired export: archive, then row.
pub async fn remove(state: &AppState, id: &str) -> Result<(), String> {
    drop_archive(state, id).await.map_err(|e| e.to_string())?;
    sqlx::query("DELETE FROM exports WHERE id = $1")
        .bind(id)
        .execute(&state.db.pool)
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

async fn build(state: &AppState, id: &str, user_id: &str) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let dir = tempfile::tempdir().map_err(|e| err(&e))?;
    let path = dir.path().join("archive.tar");
    let mut tar = Tar::create(&path).await.map_err(|e| err(&e))?;
    let email = write_records(state, user_id, &mut tar).await?;
    let len = tar.finish().await.map_err(|e| err(&e))?;

    // Copy to the store in chunks.
    let mut writer = state.stores.staging.writer(&archive_key(id)).await.map_err(|e| err(&e))?;
    let mut file = tokio::fs::File::open(&path).await.map_err(|e| err(&e))?;
    let mut buf = vec![0u8; 4 << 20];
    loop {
        let n = tokio::io::AsyncReadExt::read(&mut file, &mut buf).await.map_err(|e| err(&e))?;
        if n == 0 {
            break;
        }
        writer.write(buf[..n].to_vec()).await.map_err(|e| err(&e))?;
    }
    writer.close().await.map_err(|e| err(&e))?;

    let now = state.clock.unix_now();
    let until = now + state.cfg.privacy.export_ttl_days * DAY;
    let mut tx = state.db.begin_write().await.map_err(|e| err(&e))?;
    sqlx::query(
        "UPDATE exports SET state = 'ready', leased_until = NULL, ready_at = $1, expires_at = $2, bytes = $3 WHERE id = $4",
    )
    .bind(now)
    .bind(until)
    .bind(len as i64)
    .bind(id)
    .execute(&mut *tx)
    .await
    .map_err(|e| err(&e))?;
    enqueue(&mut tx, templates::export_ready(&email, &download_url(state, id), &iso(until)), now)
        .await
        .map_err(|e| err(&e))?;
    tx.commit().await.map_err(|e| err(&e))?;
    state.mail_wake.notify_one();
    Ok(())
}

/// Write every record of `user_id` into `tar`; returns their email.
async fn write_records(state: &AppState, user_id: &str, tar: &mut Tar) -> Result<String, String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let db = &state.db.pool;
    let user = sqlx::query(
        "SELECT id, email, name, email_verified_at, personal_team_id, created_at, restricted_at, objected_at, \
         age_confirmed_at, deletion_requested_at, deletion_due_at, pending_email FROM users WHERE id = $1",
    )
    .bind(user_id)
    .fetch_one(db)
    .await
    .map_err(|e| err(&e))?;
    let email: String = user.get("email");
    let personal: String = user.get("personal_team_id");
    let q = |sql: &'static str| sqlx::query(sql).bind(user_id.to_string());
    let rows = |r: Vec<AnyRow>| Value::Array(r.iter().map(row_json).collect());

    tar.add("README.txt", README.as_bytes()).await.map_err(|e| err(&e))?;
    tar.add_json("account.json", &row_json(&user)).await.map_err(|e| err(&e))?;
    let consents = q(
        "SELECT recorded_at, source, country, marketing, gpc FROM consents WHERE user_id = $1 ORDER BY recorded_at, id",
    );
    tar.add_json("consents.json", &rows(consents.fetch_all(db).await.map_err(|e| err(&e))?))
        .await
        .map_err(|e| err(&e))?;
    let sessions = q("SELECT id, created_at, last_seen_at, expires_at, hard_expires_at, ip, user_agent FROM sessions WHERE user_id = $1");
    tar.add_json("sessions.json", &rows(sessions.fetch_all(db).await.map_err(|e| err(&e))?))
        .await
        .map_err(|e| err(&e))?;
    let keys = sqlx::query(
        "SELECT id, team_id, name, prefix, can_read, can_write, created_day, last_used_day, revoked_at FROM api_keys \
         WHERE created_by = $1 OR team_id = $2 ORDER BY id",
    )
    .bind(user_id)
    .bind(&personal);
    tar.add_json("api_keys.json", &rows(keys.fetch_all(db).await.map_err(|e| err(&e))?)).await.map_err(|e| err(&e))?;
    let teams = q("SELECT t.id, t.name, t.personal, t.plan, m.role, m.created_at AS joined_at FROM memberships m \
                   JOIN teams t ON t.id = m.team_id WHERE m.user_id = $1 ORDER BY t.id");
    tar.add_json("teams.json", &rows(teams.fetch_all(db).await.map_err(|e| err(&e))?)).await.map_err(|e| err(&e))?;

    // Images, one at a time.
    let ids: Vec<String> =
        sqlx::query("SELECT id FROM images WHERE uploaded_by = $1 OR team_id = $2 ORDER BY created_at, id")
            .bind(user_id)
            .bind(&personal)
            .fetch_all(db)
            .await
            .map_err(|e| err(&e))?
            .iter()
            .map(|r| r.get(0))
            .collect();
    for id in &ids {
        let Some(row) = queries::fetch(&state.db, id).await.map_err(|e| err(&e))? else { continue };
        tar.add_json(&format!("images/{id}.json"), &image_json(&row)).await.map_err(|e| err(&e))?;
        if let Some((size, stream)) = image_bytes(state, &row).await.map_err(|e| err(&e))? {
            tar.add_stream(&format!("images/{id}.{}", row.format), size, stream).await?;
        }
    }

    let in_images = "image_id IN (SELECT id FROM images WHERE uploaded_by = $1 OR team_id = $2)";
    let mut moderation = serde_json::Map::new();
    for (name, sql) in [
        ("review_items", format!("SELECT * FROM review_items WHERE {in_images}")),
        ("review_log", format!("SELECT * FROM review_log WHERE {in_images}")),
        ("reports", format!("SELECT id, image_id, reason, details, created_at FROM reports WHERE {in_images}")),
        ("classifications", format!("SELECT * FROM classifications WHERE {in_images}")),
    ] {
        let r = sqlx::query(&sql).bind(user_id).bind(&personal).fetch_all(db).await.map_err(|e| err(&e))?;
        moderation.insert(name.into(), rows(r));
    }
    let matches = sqlx::query("SELECT * FROM blocklist_matches WHERE team_id = $1").bind(&personal).fetch_all(db).await;
    moderation.insert("blocklist_matches".into(), rows(matches.map_err(|e| err(&e))?));
    tar.add_json("moderation.json", &Value::Object(moderation)).await.map_err(|e| err(&e))?;
    let dmca = sqlx::query(&format!(
        "SELECT id, image_id, claimant_name, claimant_email, work, created_at, state, taken_down_at, countered_at, \
         restore_after FROM dmca_notices WHERE uploader_id = $1 OR claimant_email = $3 OR {in_images}"
    ))
    .bind(user_id)
    .bind(&personal)
    .bind(&email)
    .fetch_all(db)
    .await
    .map_err(|e| err(&e))?;
    tar.add_json("dmca.json", &rows(dmca)).await.map_err(|e| err(&e))?;
    let log = sqlx::query("SELECT id, key_id, method, route, status, latency_ms, ip, at FROM request_log WHERE team_id = $1 ORDER BY at, id")
        .bind(&personal)
        .fetch_all(db)
        .await
        .map_err(|e| err(&e))?;
    tar.add_json("request_log.json", &rows(log)).await.map_err(|e| err(&e))?;
    Ok(email)
}

const README: &str = "Your data, as imgcdn holds it.\n\n\
account.json      your account: profile, verification, restriction/objection, deletion state\n\
consents.json     every consent decision you made (marketing email), with when and from which country\n\
sessions.json     your live sessions, with the IP address and user agent they were signed in from\n\
api_keys.json     your API keys (never the secrets)\n\
teams.json        your teams and your role in each\n\
images/           every image you uploaded or your personal team holds: ID.json (its record) and the original file\n\
moderation.json   classifications, review items and decisions, reports and blocklist matches about your images\n\
dmca.json         DMCA notices about your images or filed by you\n\
request_log.json  your personal team's API request log (the last 30 days)\n\n\
Times are unix seconds (UTC).\n";

/// A row as JSON, every column by name (numbers, text or null).
fn row_json(r: &AnyRow) -> Value {
    let mut m = serde_json::Map::new();
    for (i, c) in r.columns().iter().enumerate() {
        let raw = r.try_get_raw(i).ok();
        let v = match raw {
            Some(v) if v.is_null() => Value::Null,
            Some(v) => match v.type_info().name() {
                "INTEGER" | "BIGINT" | "INT8" | "INT4" | "INT" => json!(r.get::<i64, _>(i)),
                "REAL" | "FLOAT8" | "DOUBLE" => json!(r.get::<f64, _>(i)),
                _ => r.try_get::<String, _>(i).map(Value::String).unwrap_or(Value::Null),
            },
            None => Value::Null,
        };
        m.insert(c.name().to_string(), v);
    }
    Value::Object(m)
}

fn image_json(row: &ImageRow) -> Value {
    json!({
        "id": row.id, "team_id": row.team_id, "source": row.source, "filename": row.filename,
        "format": row.format, "content_type": row.content_type, "width": row.width, "height": row.height,
        "bytes": row.bytes, "sha256": row.sha256, "caption": row.caption, "public": row.public,
        "labels": row.labels, "metadata": row.metadata, "status": row.status.as_str(),
        "created_at": row.created_at, "published_at": row.published_at, "expires_at": row.expires_at,
        "deleted_at": row.deleted_at, "classification": row.classification, "nsfw": row.nsfw,
        "restricted": row.warned, "taken_down": row.takedown_reason.is_some(),
    })
}

type ByteStream = std::pin::Pin<Box<dyn futures::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send>>;

/// The bytes of an image wherever they are kept (public, staging or
/// recovery store), as a stream, with their length; `None` once reaped.
async fn image_bytes(state: &AppState, row: &ImageRow) -> Result<Option<(u64, ByteStream)>, opendal::Error> {
    let id = row.image_id();
    for (store, key) in [
        (&state.stores.public, row.stored_object()),
        (&state.stores.staging, imgcdn_shared::storage::object_key(&id)),
        (&state.stores.recovery, format!("recovery/{id}/object")),
    ] {
        match store.stat(&key).await {
            Ok(meta) => {
                let stream = store.reader(&key).await?.into_bytes_stream(..).await?;
                return Ok(Some((meta.content_length(), Box::pin(stream))));
            }
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// A ustar archive written to a file as it goes.
struct Tar {
    file: tokio::fs::File,
    len: u64,
}

impl Tar {
    async fn create(path: &std::path::Path) -> std::io::Result<Tar> {
        Ok(Tar { file: tokio::fs::File::create(path).await?, len: 0 })
    }

    async fn add_json(&mut self, name: &str, value: &Value) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(value).expect("JSON values serialise");
        self.add(name, &bytes).await
    }

    async fn add(&mut self, name: &str, bytes: &[u8]) -> std::io::Result<()> {
        self.write(&header(name, bytes.len() as u64)).await?;
        self.write(bytes).await?;
        self.pad().await
    }

    /// An entry of `size` bytes from `stream`; an error if it brings another size.
    async fn add_stream(&mut self, name: &str, size: u64, mut stream: ByteStream) -> Result<(), String> {
        self.write(&header(name, size)).await.map_err(|e| e.to_string())?;
        let start = self.len;
        while let Some(chunk) = stream.try_next().await.map_err(|e| e.to_string())? {
            self.write(&chunk).await.map_err(|e| e.to_string())?;
        }
        if self.len - start != size {
            return Err(format!("{name}: {} bytes, the store said {size}", self.len - start));
        }
        self.pad().await.map_err(|e| e.to_string())
    }

    async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.file.write_all(bytes).await?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    async fn pad(&mut self) -> std::io::Result<()> {
        let rest = (512 - self.len % 512) % 512;
        self.write(&vec![0u8; rest as usize]).await
    }

    /// The end-of-archive blocks; the archive's length.
    async fn finish(mut self) -> std::io::Result<u64> {
        self.write(&[0u8; 1024]).await?;
        self.file.flush().await?;
        Ok(self.len)
    }
}

/// A ustar header for a regular file (names here are short and ASCII).
fn header(name: &str, size: u64) -> [u8; 512] {
    let mut h = [0u8; 512];
    let put = |h: &mut [u8; 512], at: usize, s: &[u8]| h[at..at + s.len()].copy_from_slice(s);
    put(&mut h, 0, &name.as_bytes()[..name.len().min(100)]);
    put(&mut h, 100, b"0000644\0");
    put(&mut h, 108, b"0000000\0");
    put(&mut h, 116, b"0000000\0");
    put(&mut h, 124, format!("{size:011o}\0").as_bytes());
    put(&mut h, 136, b"00000000000\0");
    put(&mut h, 148, b"        ");
    h[156] = b'0';
    put(&mut h, 257, b"ustar\0");
    put(&mut h, 263, b"00");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    put(&mut h, 148, format!("{sum:06o}\0 ").as_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::header;

    #[test]
    fn headers_checksum_like_ustar() {
        let h = header("images/abc.png", 1234);
        assert_eq!(&h[124..136], b"00000002322\0");
        let stored = u32::from_str_radix(std::str::from_utf8(&h[148..154]).unwrap(), 8).unwrap();
        let mut blank = h;
        blank[148..156].copy_from_slice(b"        ");
        assert_eq!(stored, blank.iter().map(|&b| u32::from(b)).sum::<u32>());
    }
}
