//! The API request log: one row per call made with an API key (method,
//! route template, status, latency, team, key, client address), kept
//! `retention.request_log_days` for debugging and abuse investigation and
//! readable by the team's owners (`GET /v1/teams/{id}/requests`).
//!
//! Only API-key calls are logged: anonymous requests never are (no
//! address of an anonymous uploader is kept anywhere), and neither are the
//! edges' image requests, which never reach the control plane. The route
//! is the template (`/v1/images/{id}`), never the query string.
//!
//! Requests do not wait for the database: entries go through a bounded
//! queue to one writer that inserts them in batches. A full queue drops
//! entries (counted) rather than slowing the API down.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};
use sqlx::Row;
use tokio::sync::{mpsc, oneshot};

use crate::dates::iso;
use crate::db::Db;

/// Entries waiting for the writer at most.
const QUEUE: usize = 10_000;
/// Entries written per transaction at most.
const BATCH: usize = 500;

/// One API call.
#[derive(Debug, Clone)]
pub struct Entry {
    pub team_id: String,
    pub key_id: String,
    pub method: String,
    pub route: String,
    pub status: u16,
    pub latency_ms: u64,
    pub ip: Option<String>,
    pub at: i64,
}

enum Msg {
    Entry(Entry),
    /// Answered once everything queued before it is written.
    Flush(oneshot::Sender<()>),
}

/// The handle requests log through; cheap to clone.
#[derive(Clone)]
pub struct RequestLog {
    tx: Option<mpsc::Sender<Msg>>,
    dropped: Arc<AtomicU64>,
}

impl RequestLog {
    /// Start the writer (on the current tokio runtime; outside one, for
    /// tools that never serve the API, entries are dropped).
    pub fn start(db: Db) -> RequestLog {
        let dropped = Arc::new(AtomicU64::new(0));
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return RequestLog { tx: None, dropped } };
        let (tx, rx) = mpsc::channel(QUEUE);
        runtime.spawn(writer(db, rx, dropped.clone()));
        RequestLog { tx: Some(tx), dropped }
    }

    /// Queue `entry`; dropped (and counted) when the queue is full.
    pub fn record(&self, entry: Entry) {
        let queued = self.tx.as_ref().is_some_and(|tx| tx.try_send(Msg::Entry(entry)).is_ok());
        if !queued {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Wait until everything queued so far is written.
    pub async fn flush(&self) {
        let Some(tx) = &self.tx else { return };
        let (done, wait) = oneshot::channel();
        if tx.send(Msg::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }

    /// Entries dropped because the queue was full or the write failed.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

async fn writer(db: Db, mut rx: mpsc::Receiver<Msg>, dropped: Arc<AtomicU64>) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut flushes = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(msg) = next {
            match msg {
                Msg::Entry(e) => batch.push(e),
                Msg::Flush(done) => flushes.push(done),
            }
            next = if batch.len() < BATCH { rx.try_recv().ok() } else { None };
        }
        if !batch.is_empty() {
            if let Err(e) = insert(&db, &batch).await {
                tracing::warn!(error = %e, n = batch.len(), "request log: writing entries failed");
                dropped.fetch_add(batch.len() as u64, Ordering::Relaxed);
            }
            batch.clear();
        }
        for done in flushes.drain(..) {
            let _ = done.send(());
        }
    }
}

async fn insert(db: &Db, batch: &[Entry]) -> Result<(), sqlx::Error> {
    let mut tx = db.begin_write().await?;
    for e in batch {
        sqlx::query(
            "INSERT INTO request_log (id, team_id, key_id, method, route, status, latency_ms, ip, at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(crate::secrets::new_sortable_id("req"))
        .bind(&e.team_id)
        .bind(&e.key_id)
        .bind(&e.method)
        .bind(&e.route)
        .bind(i64::from(e.status))
        .bind(e.latency_ms as i64)
        .bind(e.ip.clone())
        .bind(e.at)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

/// A page of `team_id`'s log, newest first, after the entry `before`
/// (`(at, id)` of the last one seen); at most `limit` entries.
pub async fn page(
    db: &Db,
    team_id: &str,
    before: Option<&(i64, String)>,
    limit: i64,
) -> Result<Vec<(i64, String, Value)>, sqlx::Error> {
    let cols = "id, key_id, method, route, status, latency_ms, ip, at";
    let rows = match before {
        Some((at, id)) => {
            sqlx::query(&format!(
                "SELECT {cols} FROM request_log WHERE team_id = $1 AND (at < $2 OR (at = $2 AND id < $3)) \
                 ORDER BY at DESC, id DESC LIMIT $4"
            ))
            .bind(team_id)
            .bind(*at)
            .bind(id)
            .bind(limit)
            .fetch_all(&db.pool)
            .await?
        }
        None => {
            sqlx::query(&format!(
                "SELECT {cols} FROM request_log WHERE team_id = $1 ORDER BY at DESC, id DESC LIMIT $2"
            ))
            .bind(team_id)
            .bind(limit)
            .fetch_all(&db.pool)
            .await?
        }
    };
    Ok(rows
        .iter()
        .map(|r| {
            let (at, id): (i64, String) = (r.get("at"), r.get("id"));
            let entry = json!({
                "id": id, "object": "request", "method": r.get::<String, _>("method"),
                "route": r.get::<String, _>("route"), "status": r.get::<i64, _>("status"),
                "latency_ms": r.get::<i64, _>("latency_ms"), "key_id": r.get::<String, _>("key_id"),
                "ip": r.get::<Option<String>, _>("ip"), "created_at": iso(at),
            });
            (at, id, entry)
        })
        .collect())
}
