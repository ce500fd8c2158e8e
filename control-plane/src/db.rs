//! The database: one `sqlx::AnyPool` over SQLite (embedded default) or
//! PostgreSQL (scale), chosen by the URL, with the same portable schema.
//!
//! Migrations are embedded SQL files applied in order at start, each in a
//! transaction, recorded in `schema_migrations`. On PostgreSQL an advisory
//! lock makes concurrent starts of several replicas safe.

use std::str::FromStr;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

/// Embedded migrations: (version, name, sql).
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "accounts", include_str!("../migrations/0001_accounts.sql")),
    (2, "images", include_str!("../migrations/0002_images.sql")),
    (3, "idempotency", include_str!("../migrations/0003_idempotency.sql")),
    (4, "shared_objects", include_str!("../migrations/0004_shared_objects.sql")),
    (5, "edge_sync", include_str!("../migrations/0005_edge_sync.sql")),
    (6, "hardening", include_str!("../migrations/0006_hardening.sql")),
    (7, "content_safety", include_str!("../migrations/0007_content_safety.sql")),
    (8, "retention", include_str!("../migrations/0008_retention.sql")),
    (9, "privacy", include_str!("../migrations/0009_privacy.sql")),
    (10, "storage_names", include_str!("../migrations/0010_storage_names.sql")),
];

/// Tables no code may update or delete from (see `append_only_guards`).
pub const APPEND_ONLY: &[&str] = &["review_log"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A cheap-to-clone handle to the pool.
#[derive(Clone)]
pub struct Db {
    pub pool: AnyPool,
    pub backend: Backend,
}

impl Db {
    /// Connect (creating a SQLite file if needed) and run migrations.
    pub async fn connect(url: &str) -> Result<Db, sqlx::Error> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") { Backend::Sqlite } else { Backend::Postgres };
        let pool = match backend {
            Backend::Sqlite => {
                // Create the file, use WAL so readers don't block the writer.
                let opts = sqlx::sqlite::SqliteConnectOptions::from_str(url)?
                    .create_if_missing(true)
                    .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                    .busy_timeout(std::time::Duration::from_secs(10));
                if let Some(dir) = opts.get_filename().parent() {
                    let _ = std::fs::create_dir_all(dir);
                }
                // Open once with those options so the file exists in WAL mode,
                // then let the Any pool use it.
                let conn = sqlx::SqlitePool::connect_with(opts).await?;
                conn.close().await;
                // The busy timeout is per connection: set it on every
                // connection of the real pool, so a writer waits for the
                // lock instead of failing with "database is locked".
                AnyPoolOptions::new()
                    .max_connections(8)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            sqlx::query("PRAGMA busy_timeout = 10000").execute(&mut *conn).await?;
                            // Deleted rows (sent mail with one-time links, ended
                            // sessions with their IP) are overwritten with zeros,
                            // not left in free pages of the file.
                            sqlx::query("PRAGMA secure_delete = ON").execute(&mut *conn).await?;
                            Ok(())
                        })
                    })
                    .connect(url)
                    .await?
            }
            Backend::Postgres => AnyPoolOptions::new().max_connections(16).connect(url).await?,
        };
        let db = Db { pool, backend };
        db.migrate().await?;
        Ok(db)
    }

    /// A transaction that will write. On SQLite it takes the write lock at
    /// `BEGIN` (`BEGIN IMMEDIATE`): a deferred transaction that reads and
    /// then writes can fail with "database is locked" when another writer
    /// got in between, where an immediate one waits its turn.
    pub async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }

    /// On SQLite, copy the write-ahead log into the database file and
    /// truncate it: until then the WAL still holds the old versions of
    /// deleted rows (a sent reset link, a session's IP). Run after deleting
    /// such rows; harmless at any time. Nothing to do on PostgreSQL, whose
    /// dead rows are reclaimed by (auto)vacuum.
    pub async fn checkpoint(&self) -> Result<(), sqlx::Error> {
        if self.backend == Backend::Sqlite {
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&self.pool).await?;
        }
        Ok(())
    }

    /// Tables that are append-only by policy get triggers that refuse any
    /// UPDATE or DELETE, so not even a future bug (or a hand-run query
    /// through the application's role) can rewrite them. Idempotent; written
    /// here rather than in a migration file because trigger bodies hold
    /// semicolons and differ per backend.
    async fn append_only_guards(&self, conn: &mut sqlx::AnyConnection) -> Result<(), sqlx::Error> {
        for table in APPEND_ONLY {
            let statements: Vec<String> = match self.backend {
                Backend::Sqlite => ["UPDATE", "DELETE"]
                    .iter()
                    .map(|op| {
                        format!(
                            "CREATE TRIGGER IF NOT EXISTS {table}_no_{name} BEFORE {op} ON {table} \
                             BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END",
                            name = op.to_ascii_lowercase()
                        )
                    })
                    .collect(),
                Backend::Postgres => vec![
                    format!(
                        "CREATE OR REPLACE FUNCTION {table}_append_only() RETURNS trigger LANGUAGE plpgsql AS \
                         $$ BEGIN RAISE EXCEPTION '{table} is append-only'; END $$"
                    ),
                    format!("DROP TRIGGER IF EXISTS {table}_append_only ON {table}"),
                    format!(
                        "CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} \
                         FOR EACH ROW EXECUTE FUNCTION {table}_append_only()"
                    ),
                ],
            };
            for sql in statements {
                sqlx::raw_sql(&sql).execute(&mut *conn).await?;
            }
        }
        Ok(())
    }

    async fn migrate(&self) -> Result<(), sqlx::Error> {
        let mut conn = self.pool.acquire().await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_lock(7243101)").execute(&mut *conn).await?;
        }
        let result = async {
            sqlx::query(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
            )
            .execute(&mut *conn)
            .await?;
            let applied: Vec<i64> = sqlx::query("SELECT version FROM schema_migrations")
                .fetch_all(&mut *conn)
                .await?
                .iter()
                .map(|r: &AnyRow| r.get::<i64, _>(0))
                .collect();
            for (version, name, sql) in MIGRATIONS {
                if applied.contains(version) {
                    continue;
                }
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                for stmt in split_statements(sql) {
                    sqlx::query(&stmt).execute(&mut *tx).await?;
                }
                sqlx::query("INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)")
                    .bind(*version)
                    .bind(*name)
                    .bind(time::OffsetDateTime::now_utc().unix_timestamp())
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                tracing::info!(version, name, "applied migration");
            }
            self.append_only_guards(&mut conn).await?;
            Ok::<(), sqlx::Error>(())
        }
        .await;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_unlock(7243101)").execute(&mut *conn).await?;
        }
        result
    }
}

/// Split a migration file into statements (no semicolons inside our SQL's
/// literals; comments are dropped).
fn split_statements(sql: &str) -> Vec<String> {
    let without_comments: String =
        sql.lines().map(|l| l.split("--").next().unwrap_or("")).collect::<Vec<_>>().join("\n");
    without_comments.split(';').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()
}

/// True when `e` is a unique-constraint violation (on either backend).
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => {
            d.is_unique_violation() || d.code().is_some_and(|c| c == "23505" || c == "2067" || c == "1555")
        }
        _ => false,
    }
}
