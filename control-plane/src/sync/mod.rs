//! Edge sync, control-plane side: the sequenced log of visibility changes
//! (wire format in [`imgcdn_shared::sync`]), what wakes long-polls, and
//! the operator decisions that feed it.
//!
//! Every path that changes what an edge may serve goes through
//! [`crate::images::lifecycle::apply`], which updates the image row, asks
//! [`last_logged`] what edges were last told and, when that differs from
//! what they must now do, calls [`record`] in the same transaction. So the
//! log says exactly what each id is at the edge from each `seq` on.
//!
//! Sequence numbers come from bumping the single `sync_head` row, whose
//! lock is held to the end of the transaction: changes commit in `seq`
//! order, so an edge that has seen `seq` N can never later miss one below.
//!
//! Waking long-polls: a local commit advances the [`Hub`] at once; on
//! PostgreSQL the commit also sends `NOTIFY imgcdn_edge_sync`, which every
//! replica's [`watch_loop`] receives; and every replica re-reads the head
//! every `edge_sync.poll_ms` in case a notification was lost (or on SQLite,
//! for changes written by another process).

pub mod edges;

use std::time::Duration;

use imgcdn_shared::sync::{Action, Change, Snapshot};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, Row};
use tokio::sync::watch;

use crate::db::Backend;
use crate::AppState;

/// The PostgreSQL notification channel.
pub const CHANNEL: &str = "imgcdn_edge_sync";

/// The latest `seq` this process knows of; long-polls wait on it.
pub struct Hub {
    head: watch::Sender<u64>,
    /// Set when the server shuts down: waiting long-polls answer at once.
    closing: watch::Sender<bool>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub { head: watch::Sender::new(0), closing: watch::Sender::new(false) }
    }
}

impl Hub {
    /// The newest sequence number known here.
    pub fn head(&self) -> u64 {
        *self.head.borrow()
    }

    /// Raise the known head to `seq` (never lowers it), waking waiters.
    pub fn advance(&self, seq: u64) {
        self.head.send_if_modified(|h| {
            let newer = seq > *h;
            if newer {
                *h = seq;
            }
            newer
        });
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.head.subscribe()
    }

    /// End every waiting long-poll (graceful shutdown).
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Resolves once [`close`](Hub::close) was called.
    pub async fn closed(&self) {
        let mut rx = self.closing.subscribe();
        let _ = rx.wait_for(|c| *c).await;
    }
}

fn change_from_row(r: &AnyRow) -> Option<Change> {
    Some(Change {
        seq: u64::try_from(r.get::<i64, _>("seq")).ok()?,
        id: r.get::<String, _>("image_id").parse().ok()?,
        action: Action::parse(&r.get::<String, _>("action"))?,
        reason: r.get("reason"),
    })
}

/// What the log last told edges about `image_id`; `(Restore, None)`
/// ("nothing to enforce") when it never mentioned it.
pub async fn last_logged(conn: &mut AnyConnection, image_id: &str) -> Result<(Action, Option<String>), sqlx::Error> {
    let last =
        sqlx::query("SELECT action, reason FROM visibility_changes WHERE image_id = $1 ORDER BY seq DESC LIMIT 1")
            .bind(image_id)
            .fetch_optional(conn)
            .await?;
    Ok(match last {
        Some(r) => {
            let action: String = r.get(0);
            let action = Action::parse(&action).ok_or_else(|| sqlx::Error::Protocol(format!("action {action:?}")))?;
            (action, r.get::<Option<String>, _>(1))
        }
        None => (Action::Restore, None),
    })
}

/// Append a change for `image_id` inside the caller's transaction: edges
/// must now `action` it (`reason` for takedowns); `note` says why, `actor`
/// who. Takes the log's lock until the transaction ends: do no slow I/O
/// after calling this and before committing.
#[allow(clippy::too_many_arguments)]
pub async fn record(
    conn: &mut AnyConnection,
    backend: Backend,
    image_id: &str,
    action: Action,
    reason: Option<String>,
    note: &str,
    actor: &str,
    now: i64,
) -> Result<Change, sqlx::Error> {
    let id = image_id.parse().map_err(|_| sqlx::Error::Protocol(format!("image id {image_id:?}")))?;
    let seq: i64 = sqlx::query("UPDATE sync_head SET seq = seq + 1 WHERE id = 1 RETURNING seq")
        .fetch_one(&mut *conn)
        .await?
        .get(0);
    sqlx::query(
        "INSERT INTO visibility_changes (seq, image_id, action, reason, note, actor, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(seq)
    .bind(image_id)
    .bind(action.as_str())
    .bind(reason.clone())
    .bind(note)
    .bind(actor)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    if backend == Backend::Postgres {
        // Delivered to every listening replica when (and only if) this commits.
        sqlx::query(&format!("NOTIFY {CHANNEL}, '{seq}'")).execute(&mut *conn).await?;
    }
    Ok(Change { seq: seq as u64, id, action, reason })
}

/// The latest `seq` handed out (committed).
pub async fn head(pool: &AnyPool) -> Result<u64, sqlx::Error> {
    let seq: i64 = sqlx::query("SELECT seq FROM sync_head WHERE id = 1").fetch_one(pool).await?.get(0);
    Ok(seq.max(0) as u64)
}

/// Changes after `after` up to `head`, in order, at most `limit`. A row
/// that cannot be read is an error, never skipped (an edge would miss it).
pub async fn changes_after(pool: &AnyPool, after: u64, head: u64, limit: usize) -> Result<Vec<Change>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT seq, image_id, action, reason FROM visibility_changes WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3",
    )
    .bind(after as i64)
    .bind(head as i64)
    .bind(limit as i64)
    .fetch_all(pool)
    .await?;
    rows.iter().map(|r| change_from_row(r).ok_or_else(|| unreadable(r))).collect()
}

fn unreadable(r: &AnyRow) -> sqlx::Error {
    sqlx::Error::Protocol(format!("unreadable visibility change (seq {:?})", r.try_get::<i64, _>("seq").ok()))
}

/// Every id with something to enforce as of the current head. Consistent
/// without a special isolation level: everything up to a committed head is
/// committed, and the query reads only up to it.
pub async fn snapshot(pool: &AnyPool) -> Result<Snapshot, sqlx::Error> {
    let seq = head(pool).await?;
    let rows = sqlx::query(
        "SELECT c.seq, c.image_id, c.action, c.reason FROM visibility_changes c \
         WHERE c.seq <= $1 AND c.action <> 'restore' \
         AND c.seq = (SELECT MAX(d.seq) FROM visibility_changes d WHERE d.image_id = c.image_id AND d.seq <= $1) \
         ORDER BY c.seq",
    )
    .bind(seq as i64)
    .fetch_all(pool)
    .await?;
    let entries = rows.iter().map(|r| change_from_row(r).ok_or_else(|| unreadable(r))).collect::<Result<_, _>>()?;
    Ok(Snapshot { seq, entries })
}

/// Keep the [`Hub`] current with changes committed anywhere: PostgreSQL
/// notifications when available, and a re-read of the head every `poll`.
pub async fn watch_loop(state: AppState, mut shutdown: watch::Receiver<bool>) {
    let poll = Duration::from_millis(state.cfg.edge_sync.poll_ms);
    let mut listener = None;
    loop {
        if state.db.backend == Backend::Postgres && listener.is_none() {
            listener = listen(&state.cfg.database_url).await;
        }
        match head(&state.db.pool).await {
            Ok(h) => state.sync.advance(h),
            Err(e) => tracing::warn!(error = %e, "edge sync: reading the head failed"),
        }
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(poll) => {}
            n = next_notification(&mut listener) => match n {
                Ok(seq) => state.sync.advance(seq),
                Err(e) => {
                    tracing::warn!(error = %e, "edge sync: notifications lost; polling until reconnected");
                    listener = None;
                }
            },
        }
    }
}

async fn listen(url: &str) -> Option<sqlx::postgres::PgListener> {
    let attempt = async {
        let mut l = sqlx::postgres::PgListener::connect(url).await?;
        l.listen(CHANNEL).await?;
        Ok::<_, sqlx::Error>(l)
    };
    match attempt.await {
        Ok(l) => Some(l),
        Err(e) => {
            tracing::warn!(error = %e, "edge sync: cannot LISTEN; polling");
            None
        }
    }
}

/// The next notified `seq` (pending forever without a listener).
async fn next_notification(listener: &mut Option<sqlx::postgres::PgListener>) -> Result<u64, sqlx::Error> {
    match listener {
        Some(l) => loop {
            let n = l.recv().await?;
            if let Ok(seq) = n.payload().parse() {
                return Ok(seq);
            }
        },
        None => std::future::pending().await,
    }
}
