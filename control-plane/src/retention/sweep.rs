//! The sweep: one pass over everything that must end or be repaired, run
//! every `retention.sweep_every_secs` by the one control plane holding the
//! `sweep` lease (any number may share a database), or by hand with
//! `imgcdn admin sweep` (`--dry-run` lists what is due without touching it).
//!
//! Its steps, in order ([`STEPS`]):
//! 1. **interrupted uploads**: a `processing` row older than
//!    [`STALE_SECS`] belongs to an upload that crashed between its steps.
//!    If its manifest (or, private, its bytes) made it to the store, the
//!    image is complete: `ready`. If not, its bytes go and it is `failed`.
//! 2. **owed store work**: a change whose store steps failed or were
//!    interrupted after its commit (`store_pending`) is applied again.
//! 3. **expired images**: off public serving (the edges are told), bytes
//!    and manifest to the recovery store with a `reap_at`.
//! 4. **account erasures**: accounts whose deletion grace period is over
//!    ([`crate::privacy::deletion`]).
//! 5. **DMCA restores**: images whose counter-notice waiting period passed.
//! 6. **recovery reaping**: bytes past `reap_at` leave the recovery store and
//!    the image's row is purged (not while a DMCA dispute could still need
//!    them back).
//! 7. **expired exports**: archives past their download window.
//! 8. sessions past their sliding or hard limit (with the sign-in IP address
//!    and user agent), spent or expired email links, finished or expired
//!    invitations, idempotency records past their day, API request logs
//!    past `retention.request_log_days`: deleted.
//!
//! Image changes go through [`lifecycle::apply`], as users' do. Every step
//! is idempotent, so a pass interrupted anywhere is finished by the next.
//! One image failing is logged and counted, and the pass goes on.

use imgcdn_shared::storage::{manifest_key, object_key};
use sqlx::Row;

use super::lease;
use crate::dates::DAY;
use crate::images::idempotency;
use crate::images::lifecycle::{self, Actor, Edit};
use crate::images::queries;
use crate::images::row::{ImageRow, ImageStatus};
use crate::privacy::export;
use crate::AppState;

/// A `processing` row this old is an interrupted upload.
pub const STALE_SECS: i64 = 3600;

/// The lease a pass holds; renewed between steps.
const LEASE: &str = "sweep";
const LEASE_SECS: i64 = 600;

const SWEEP: Actor = Actor::System("sweep");

/// The steps of a pass, in order, as `--dry-run` and the metrics name them.
pub const STEPS: [&str; 12] = [
    "interrupted_uploads",
    "owed_store_work",
    "expired_images",
    "account_erasures",
    "dmca_restores",
    "recovery_reaped",
    "expired_exports",
    "sessions",
    "email_tokens",
    "invitations",
    "idempotency_records",
    "request_log",
];

/// Where the single-`DELETE` steps start in [`STEPS`].
const FIRST_BULK: usize = 7;

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Swept {
    /// Interrupted uploads completed and undone.
    pub completed: u64,
    pub failed: u64,
    /// Changes whose store work was redone.
    pub redone: u64,
    /// Images past their expiry moved to recovery.
    pub expired: u64,
    /// Accounts erased after their deletion grace period.
    pub erased: u64,
    /// Images restored after a DMCA counter-notice's waiting period.
    pub restored: u64,
    /// Images whose recovery bytes were reaped and rows purged.
    pub reaped: u64,
    /// Data exports past their download window, deleted.
    pub exports: u64,
    pub sessions: u64,
    pub email_tokens: u64,
    pub invitations: u64,
    pub idempotency_records: u64,
    pub request_log: u64,
    /// Items that failed (retried on the next pass).
    pub errors: u64,
}

impl Swept {
    /// Items handled by each step of [`STEPS`], in order.
    pub fn per_step(&self) -> Vec<(&'static str, u64)> {
        let s = self;
        let counts = [
            s.completed + s.failed,
            s.redone,
            s.expired,
            s.erased,
            s.restored,
            s.reaped,
            s.exports,
            s.sessions,
            s.email_tokens,
            s.invitations,
            s.idempotency_records,
            s.request_log,
        ];
        STEPS.iter().copied().zip(counts).collect()
    }
}

/// Add a pass to the process's metrics.
fn record(metrics: &crate::metrics::Metrics, s: &Swept, now: i64) {
    for (step, n) in s.per_step() {
        metrics.sweep_items.with_label_values(&[step]).inc_by(n);
    }
    metrics.sweep_errors.inc_by(s.errors);
    metrics.sweep_passes.inc();
    metrics.sweep_last_success.set(now);
}

/// Where a pass is, for a progress display: step, items done, items due.
/// Each step reports `(step, 0, due)` when it starts and `(step, due, due)`
/// when it is over.
pub type Progress<'a> = &'a mut (dyn FnMut(&str, u64, u64) + Send);

/// One pass at the state's current time. An item that fails is logged and
/// counted in `errors`; the pass continues with the rest. Fails only when
/// the database cannot be read at all. Takes no lease (see [`run_leased`]).
pub async fn run_once(state: &AppState) -> Result<Swept, String> {
    run_pass(state, &mut |_, _, _| {}).await
}

/// A pass if this holder gets the `sweep` lease (`None`: another control
/// plane is sweeping). The lease is renewed between steps and given up at
/// the end.
pub async fn run_leased(state: &AppState, holder: &str, progress: Progress<'_>) -> Result<Option<Swept>, String> {
    let now = state.clock.unix_now();
    if !lease::acquire(&state.db, LEASE, holder, now, LEASE_SECS).await.map_err(|e| e.to_string())? {
        return Ok(None);
    }
    let db = state.db.clone();
    let clock = state.clock.clone();
    let holder_name = holder.to_string();
    let mut renewing = |step: &str, done: u64, due: u64| {
        progress(step, done, due);
        if done == 0 {
            // A new step: keep the lease for another while (best effort:
            // the work is idempotent should two passes overlap).
            let (db, clock, holder) = (db.clone(), clock.clone(), holder_name.clone());
            tokio::spawn(async move {
                let _ = lease::acquire(&db, LEASE, &holder, clock.unix_now(), LEASE_SECS).await;
            });
        }
    };
    let result = run_pass(state, &mut renewing).await;
    let _ = lease::release(&state.db, LEASE, holder).await;
    result.map(Some)
}

async fn run_pass(state: &AppState, progress: Progress<'_>) -> Result<Swept, String> {
    let now = state.clock.unix_now();
    let mut out = Swept::default();
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let failed = |what: &str, id: &str, e: &dyn std::fmt::Display, out: &mut Swept| {
        tracing::warn!(%id, error = %e, "sweep: {what} failed; will retry");
        out.errors += 1;
    };

    let rows = queries::stale_processing(&state.db, now - STALE_SECS).await.map_err(|e| err(&e))?;
    for (i, row) in rows.iter().enumerate() {
        progress(STEPS[0], i as u64, rows.len() as u64);
        if let Err(e) = finish_stale(state, row, now, &mut out).await {
            failed("finishing an interrupted upload", &row.id, &e, &mut out);
        }
    }
    progress(STEPS[0], rows.len() as u64, rows.len() as u64);

    let rows = queries::store_pending(&state.db).await.map_err(|e| err(&e))?;
    for (i, row) in rows.iter().enumerate() {
        progress(STEPS[1], i as u64, rows.len() as u64);
        let (note, edit) =
            if row.deleted_at.is_some() { ("deleted", Edit::Delete) } else { ("retry", Edit::Reconcile) };
        match lifecycle::apply(state, &row.id, &SWEEP, note, edit).await {
            Ok(_) => out.redone += 1,
            Err(e) => failed("redoing store work", &row.id, &e, &mut out),
        }
    }
    progress(STEPS[1], rows.len() as u64, rows.len() as u64);

    let rows = queries::expired(&state.db, now).await.map_err(|e| err(&e))?;
    for (i, row) in rows.iter().enumerate() {
        progress(STEPS[2], i as u64, rows.len() as u64);
        match lifecycle::apply(state, &row.id, &SWEEP, "expired", Edit::Delete).await {
            Ok(_) => out.expired += 1,
            Err(e) => failed("expiring", &row.id, &e, &mut out),
        }
    }
    progress(STEPS[2], rows.len() as u64, rows.len() as u64);

    progress(STEPS[3], 0, 1);
    match crate::privacy::deletion::erase_due(state, now).await {
        Ok((done, errors)) => (out.erased, out.errors) = (out.erased + done, out.errors + errors),
        Err(e) => failed("erasing accounts", "-", &e, &mut out),
    }
    progress(STEPS[3], 1, 1);

    progress(STEPS[4], 0, 1);
    match crate::moderation::reports::restore_due(state).await {
        Ok(n) => out.restored += n,
        Err(e) => failed("restoring after counter-notices", "-", &e, &mut out),
    }
    progress(STEPS[4], 1, 1);

    let rows = reapable(state, now).await.map_err(|e| err(&e))?;
    for (i, row) in rows.iter().enumerate() {
        progress(STEPS[5], i as u64, rows.len() as u64);
        match reap(state, row).await {
            Ok(()) => out.reaped += 1,
            Err(e) => failed("reaping", &row.id, &e, &mut out),
        }
    }
    progress(STEPS[5], rows.len() as u64, rows.len() as u64);

    let ids = export::expired(state, now).await.map_err(|e| err(&e))?;
    for (i, id) in ids.iter().enumerate() {
        progress(STEPS[6], i as u64, ids.len() as u64);
        match export::remove(state, id).await {
            Ok(()) => out.exports += 1,
            Err(e) => failed("deleting an export", id, &e, &mut out),
        }
    }
    progress(STEPS[6], ids.len() as u64, ids.len() as u64);

    for (i, bulk) in BULK.iter().enumerate() {
        progress(STEPS[FIRST_BULK + i], 0, 1);
        let sql = format!("DELETE FROM {} WHERE {}", bulk.table, bulk.filter);
        let mut q = sqlx::query(&sql);
        for b in (bulk.binds)(state, now) {
            q = q.bind(b);
        }
        match q.execute(&state.db.pool).await {
            Ok(r) => *bulk.count(&mut out) += r.rows_affected(),
            Err(e) => failed("deleting", bulk.table, &e, &mut out),
        }
        progress(STEPS[FIRST_BULK + i], 1, 1);
    }

    // What was deleted above must not linger in the database files.
    state.db.checkpoint().await.map_err(|e| err(&e))?;
    record(&state.metrics, &out, now);
    Ok(out)
}

/// A table whose expired rows one `DELETE` removes: `filter` with the
/// times `binds` gives for the pass's `now`.
struct Bulk {
    table: &'static str,
    /// What `--dry-run` lists (never a secret).
    shown: &'static str,
    filter: &'static str,
    binds: fn(&AppState, i64) -> Vec<i64>,
    count: fn(&mut Swept) -> &mut u64,
}

impl Bulk {
    fn count<'a>(&self, s: &'a mut Swept) -> &'a mut u64 {
        (self.count)(s)
    }
}

const BULK: [Bulk; 5] = [
    Bulk {
        table: "sessions",
        shown: "id",
        filter: "expires_at <= $1 OR hard_expires_at <= $1",
        binds: |_, now| vec![now],
        count: |s| &mut s.sessions,
    },
    Bulk {
        table: "email_tokens",
        shown: "purpose",
        filter: "used_at IS NOT NULL OR expires_at <= $1",
        binds: |_, now| vec![now],
        count: |s| &mut s.email_tokens,
    },
    Bulk {
        table: "invitations",
        shown: "id",
        filter: "accepted_at IS NOT NULL OR revoked_at IS NOT NULL OR expires_at <= $1",
        binds: |_, now| vec![now],
        count: |s| &mut s.invitations,
    },
    Bulk {
        table: "idempotency_keys",
        shown: "scope",
        filter: "created_at <= $1 OR (state = 'in_progress' AND created_at <= $2)",
        binds: |_, now| vec![now - idempotency::KEEP_SECS, now - idempotency::STALE_CLAIM_SECS],
        count: |s| &mut s.idempotency_records,
    },
    Bulk {
        table: "request_log",
        shown: "id",
        filter: "at <= $1",
        binds: |state, now| vec![now - state.cfg.retention.request_log_days * DAY],
        count: |s| &mut s.request_log,
    },
];

/// Recovery entries past `reap_at`, except while a DMCA dispute about the
/// image is open (a counter-notice or a court action may still need it
/// back) or was taken down less than the strike window ago.
async fn reapable(state: &AppState, now: i64) -> Result<Vec<ImageRow>, sqlx::Error> {
    let mut out = Vec::new();
    let window = state.cfg.moderation.dmca.strike_window_days * DAY;
    for row in queries::due_for_reaping(&state.db, now).await? {
        let disputed = sqlx::query(
            "SELECT 1 FROM dmca_notices WHERE image_id = $1 AND (state IN ('countered', 'court_action') \
             OR (state = 'taken_down' AND taken_down_at > $2))",
        )
        .bind(&row.id)
        .bind(now - window)
        .fetch_optional(&state.db.pool)
        .await?
        .is_some();
        if !disputed {
            out.push(row);
        }
    }
    Ok(out)
}

/// Delete an image's recovery entry, then forget the image.
async fn reap(state: &AppState, row: &ImageRow) -> Result<(), String> {
    state.stores.drop_recovery(&row.image_id()).await.map_err(|e| e.to_string())?;
    let mut tx = state.db.begin_write().await.map_err(|e| e.to_string())?;
    queries::purge(&mut tx, &row.id).await.map_err(|e| e.to_string())?;
    tx.commit().await.map_err(|e| e.to_string())
}

/// What a pass at `now` would do, step by step: how many items are due and
/// the first few (ids, or for tables without a public id a harmless column).
pub async fn survey(state: &AppState, now: i64) -> Result<Vec<(&'static str, u64, Vec<String>)>, sqlx::Error> {
    let ids = |rows: Vec<ImageRow>| (rows.len() as u64, rows.into_iter().take(5).map(|r| r.id).collect::<Vec<_>>());
    let mut out = Vec::new();
    let (n, first) = ids(queries::stale_processing(&state.db, now - STALE_SECS).await?);
    out.push((STEPS[0], n, first));
    let (n, first) = ids(queries::store_pending(&state.db).await?);
    out.push((STEPS[1], n, first));
    let (n, first) = ids(queries::expired(&state.db, now).await?);
    out.push((STEPS[2], n, first));
    let erasures = crate::privacy::deletion::due_ids(state, now).await?;
    out.push((STEPS[3], erasures.len() as u64, erasures.into_iter().take(5).collect()));
    let due = sqlx::query("SELECT image_id FROM dmca_notices WHERE state = 'countered' AND restore_after <= $1")
        .bind(now)
        .fetch_all(&state.db.pool)
        .await?;
    out.push((STEPS[4], due.len() as u64, due.iter().take(5).map(|r| r.get(0)).collect()));
    let (n, first) = ids(reapable(state, now).await?);
    out.push((STEPS[5], n, first));
    let exports = export::expired(state, now).await?;
    out.push((STEPS[6], exports.len() as u64, exports.into_iter().take(5).collect()));
    for (i, bulk) in BULK.iter().enumerate() {
        let binds = (bulk.binds)(state, now);
        let count_sql = format!("SELECT COUNT(*) FROM {} WHERE {}", bulk.table, bulk.filter);
        let first_sql = format!("SELECT {} FROM {} WHERE {} LIMIT 5", bulk.shown, bulk.table, bulk.filter);
        let (mut count, mut first) = (sqlx::query(&count_sql), sqlx::query(&first_sql));
        for b in &binds {
            (count, first) = (count.bind(*b), first.bind(*b));
        }
        let n: i64 = count.fetch_one(&state.db.pool).await?.get(0);
        let first = first.fetch_all(&state.db.pool).await?.iter().map(|r| r.get::<String, _>(0)).collect();
        out.push((STEPS[FIRST_BULK + i], n as u64, first));
    }
    Ok(out)
}

/// A `processing` row older than [`STALE_SECS`]: complete it if its
/// manifest (or, private, its bytes) made it to the store, else undo it.
async fn finish_stale(state: &AppState, row: &ImageRow, now: i64, out: &mut Swept) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let image = row.image_id();
    let marker = if row.public { manifest_key(&image) } else { object_key(&image) };
    if state.stores.public.exists(&marker).await.map_err(|e| err(&e))? {
        queries::finish(&state.db, &row.id, ImageStatus::Ready, now).await.map_err(|e| err(&e))?;
        out.completed += 1;
    } else {
        if row.object_key.is_none() {
            state.stores.public.delete(&object_key(&image)).await.map_err(|e| err(&e))?;
        }
        queries::finish(&state.db, &row.id, ImageStatus::Failed, now).await.map_err(|e| err(&e))?;
        out.failed += 1;
    }
    Ok(())
}

/// Withdraw the manifest of every image that must not be served (private
/// or taken down) but still has one, logging what edges must do first.
/// That happens when the store failed right after such a change, or the
/// process stopped there, and for images made private before edge sync
/// existed (they kept their manifest). Run once at start: it checks the
/// store for every such image.
pub async fn withdraw_unservable(state: &AppState) -> Result<u64, String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let mut withdrawn = 0;
    for row in queries::unservable(&state.db).await.map_err(|e| err(&e))? {
        if !state.stores.public.exists(&manifest_key(&row.image_id())).await.map_err(|e| err(&e))? {
            continue;
        }
        lifecycle::apply(state, &row.id, &SWEEP, "not servable", Edit::Reconcile).await.map_err(|e| err(&e))?;
        withdrawn += 1;
    }
    Ok(withdrawn)
}

/// Sweep every `retention.sweep_every_secs` until `shutdown` flips, when
/// this process holds the lease.
pub async fn sweep_loop(state: AppState, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    match withdraw_unservable(&state).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(n, "withdrew manifests of images that must not be served"),
        Err(e) => tracing::warn!(error = %e, "withdrawing unservable manifests failed"),
    }
    let holder = format!("control-plane-{}", crate::secrets::random_token(8));
    let every = std::time::Duration::from_secs(state.cfg.retention.sweep_every_secs);
    loop {
        match run_leased(&state, &holder, &mut |_, _, _| {}).await {
            Ok(Some(s)) if s != Swept::default() => tracing::info!(?s, "sweep"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "sweep failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
    }
}
