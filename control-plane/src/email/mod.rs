//! Outbound email: a durable outbox table and a delivery loop.
//!
//! A state change that must send mail (sign-up, reset, invitation, …)
//! inserts the message into `outbound_emails` in the same transaction, so a
//! crash or an SMTP outage never loses a mail and never sends one for a
//! change that was rolled back. The delivery loop claims due rows with a
//! lease (safe with several replicas on one database), sends them through a
//! [`Mailer`], deletes them once sent, and backs off on failure.
//!
//! Transactional mail always goes out; marketing mail only to accounts
//! whose latest consent record grants it and that have not restricted or
//! objected to processing, nor asked for deletion ([`queue_marketing`]).

pub mod templates;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Body, Mailbox};
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use sqlx::{AnyConnection, Row};

use crate::config::{EmailConfig, MailTransport, SmtpTls};
use crate::db::Db;
use imgcdn_shared::clock::Clock;

/// Something that can deliver one message.
#[async_trait]
pub trait Mailer: Send + Sync {
    async fn send(&self, message: Message) -> Result<(), String>;
}

/// One `.eml` file per message in a folder: the embedded default.
pub struct FileMailer(AsyncFileTransport<Tokio1Executor>);

#[async_trait]
impl Mailer for FileMailer {
    async fn send(&self, message: Message) -> Result<(), String> {
        self.0.send(message).await.map(|_| ()).map_err(|e| e.to_string())
    }
}

/// SMTP through lettre.
pub struct SmtpMailer(AsyncSmtpTransport<Tokio1Executor>);

#[async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, message: Message) -> Result<(), String> {
        self.0.send(message).await.map(|_| ()).map_err(|e| e.to_string())
    }
}

/// Build the configured mailer.
pub fn mailer(cfg: &EmailConfig) -> Result<Arc<dyn Mailer>, String> {
    match cfg.transport {
        MailTransport::File => {
            std::fs::create_dir_all(&cfg.outbox_dir).map_err(|e| format!("{}: {e}", cfg.outbox_dir.display()))?;
            Ok(Arc::new(FileMailer(AsyncFileTransport::new(&cfg.outbox_dir))))
        }
        MailTransport::Smtp => {
            let builder = match cfg.smtp_tls {
                SmtpTls::Tls => {
                    AsyncSmtpTransport::<Tokio1Executor>::relay(&cfg.smtp_host).map_err(|e| e.to_string())?
                }
                SmtpTls::Starttls => {
                    AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&cfg.smtp_host).map_err(|e| e.to_string())?
                }
                SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&cfg.smtp_host),
            };
            let mut builder = builder.port(cfg.smtp_port).timeout(Some(Duration::from_secs(20)));
            if let (Some(u), Some(p)) = (&cfg.smtp_username, &cfg.smtp_password) {
                builder = builder
                    .credentials(lettre::transport::smtp::authentication::Credentials::new(u.clone(), p.clone()));
            }
            Ok(Arc::new(SmtpMailer(builder.build())))
        }
    }
}

/// A message to queue.
pub struct Outgoing<'a> {
    pub kind: &'a str,
    pub to: &'a str,
    pub subject: String,
    pub body: String,
}

/// Queue a message inside the caller's transaction.
pub async fn enqueue(conn: &mut AnyConnection, mail: Outgoing<'_>, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO outbound_emails (id, kind, recipient, subject, body, created_at, attempts, next_attempt_at, leased_until) \
         VALUES ($1, $2, $3, $4, $5, $6, 0, $6, NULL)",
    )
    .bind(crate::secrets::new_sortable_id("eml"))
    .bind(mail.kind)
    .bind(mail.to)
    .bind(mail.subject)
    .bind(mail.body)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// Queue `subject`/`body` for every account whose latest consent record
/// grants marketing email. Returns how many were queued.
pub async fn queue_marketing(db: &Db, subject: &str, body: &str, now: i64) -> Result<u64, sqlx::Error> {
    let mut tx = db.begin_write().await?;
    let rows = sqlx::query(
        "SELECT u.email FROM users u WHERE (SELECT c.marketing FROM consents c WHERE c.user_id = u.id \
         ORDER BY c.recorded_at DESC, c.id DESC LIMIT 1) = 1 \
         AND u.restricted_at IS NULL AND u.objected_at IS NULL AND u.deletion_requested_at IS NULL",
    )
    .fetch_all(&mut *tx)
    .await?;
    for r in &rows {
        let to: String = r.get(0);
        let mail = Outgoing { kind: "marketing", to: &to, subject: subject.to_string(), body: body.to_string() };
        enqueue(&mut tx, mail, now).await?;
    }
    tx.commit().await?;
    Ok(rows.len() as u64)
}

/// Plain 7-bit when the text allows it (ASCII without NUL or bare CR, lines
/// within RFC 5322's hard 998-character limit), so links stay intact and
/// readable in the raw message (the dev outbox is read that way); otherwise
/// the encoding lettre picks. (lettre itself switches to quoted-printable
/// past 76 characters, which splits every long link.)
fn readable_body(text: String) -> Body {
    let plain = text.bytes().all(|b| b.is_ascii() && b != 0 && b != b'\r') && text.lines().all(|l| l.len() <= 998);
    if plain {
        let crlf = text.replace('\n', "\r\n");
        Body::dangerous_pre_encoded(crlf.into_bytes(), ContentTransferEncoding::SevenBit)
    } else {
        Body::new(text)
    }
}

const LEASE_SECS: i64 = 120;
const MAX_ATTEMPTS: i64 = 20;

/// What a delivery pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    pub sent: usize,
    /// Attempts that failed (retried later, or given up on).
    pub failed: usize,
}

/// Deliver what is due now.
pub async fn deliver_due(
    db: &Db,
    mailer: &dyn Mailer,
    from: &Mailbox,
    clock: &dyn Clock,
) -> Result<Delivered, sqlx::Error> {
    let now = clock.unix_now();
    let due = sqlx::query(
        "SELECT id, kind, recipient, subject, body, attempts FROM outbound_emails \
         WHERE next_attempt_at <= $1 AND (leased_until IS NULL OR leased_until < $1) ORDER BY created_at, id LIMIT 50",
    )
    .bind(now)
    .fetch_all(&db.pool)
    .await?;
    let mut done = Delivered::default();
    for row in due {
        let id: String = row.get("id");
        let claimed = sqlx::query(
            "UPDATE outbound_emails SET leased_until = $1, attempts = attempts + 1 \
             WHERE id = $2 AND (leased_until IS NULL OR leased_until < $3)",
        )
        .bind(now + LEASE_SECS)
        .bind(&id)
        .bind(now)
        .execute(&db.pool)
        .await?
        .rows_affected();
        if claimed != 1 {
            continue; // another replica has it
        }
        let kind: String = row.get("kind");
        let attempts: i64 = row.get::<i64, _>("attempts") + 1;
        let to: String = row.get("recipient");
        let message = to.parse::<Mailbox>().map_err(|e| e.to_string()).and_then(|to| {
            Message::builder()
                .from(from.clone())
                .to(to)
                .subject(row.get::<String, _>("subject"))
                .header(ContentType::TEXT_PLAIN)
                .body(readable_body(row.get::<String, _>("body")))
                .map_err(|e| e.to_string())
        });
        let result = match message {
            Ok(m) => mailer.send(m).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => {
                sqlx::query("DELETE FROM outbound_emails WHERE id = $1").bind(&id).execute(&db.pool).await?;
                done.sent += 1;
            }
            Err(e) if attempts >= MAX_ATTEMPTS => {
                done.failed += 1;
                tracing::error!(%id, %kind, attempts, error = %e, "giving up on an email");
                sqlx::query("DELETE FROM outbound_emails WHERE id = $1").bind(&id).execute(&db.pool).await?;
            }
            Err(e) => {
                done.failed += 1;
                // Exponential backoff: 30 s, 1 min, 2 min, … capped at 1 h.
                let delay = (30i64 << (attempts - 1).min(7)).min(3600);
                tracing::warn!(%id, %kind, attempts, error = %e, "email delivery failed; will retry");
                sqlx::query("UPDATE outbound_emails SET leased_until = NULL, next_attempt_at = $1 WHERE id = $2")
                    .bind(now + delay)
                    .bind(&id)
                    .execute(&db.pool)
                    .await?;
            }
        }
    }
    Ok(done)
}

/// Run delivery until `shutdown` flips to true: immediately when woken
/// through `wake`, and every few seconds otherwise (for retries and for
/// mail queued by other replicas).
pub async fn delivery_loop(
    db: Db,
    mailer: Arc<dyn Mailer>,
    from: Mailbox,
    clock: Arc<dyn Clock>,
    wake: Arc<tokio::sync::Notify>,
    metrics: Arc<crate::metrics::Metrics>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        match deliver_due(&db, mailer.as_ref(), &from, clock.as_ref()).await {
            Ok(done) => {
                metrics.mail_sent.inc_by(done.sent as u64);
                metrics.mail_failures.inc_by(done.failed as u64);
                // Sent mail (with its one-time links) is deleted: make it
                // gone from the database files too.
                if done.sent > 0 {
                    if let Err(e) = db.checkpoint().await {
                        tracing::warn!(error = %e, "checkpoint after delivery failed");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "email delivery pass failed"),
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
    }
}
