//! Test harness: the real router over a real database (a SQLite file, or a
//! fresh PostgreSQL database per test), a manual clock, and the file
//! outbox read back as the user would read their mail.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use imgcdn_control_plane::{app, config::Config, email, AppState, Db};
use imgcdn_shared::clock::{Clock, ManualClock};
use serde_json::Value;
use tower::ServiceExt;

pub const PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// 2026-01-01T00:00:00Z
pub const T0: i64 = 1_767_225_600;
/// Edge-sync tokens configured for two edges in every test app.
pub const EDGE_A_TOKEN: &str = "edge-a-token-0123456789abcdefghijklmnop";
pub const EDGE_B_TOKEN: &str = "edge-b-token-0123456789abcdefghijklmnop";
/// Every test app tells an edge this far behind to fetch a snapshot.
pub const SNAPSHOT_AFTER: u64 = 7;

pub struct TestApp {
    pub state: AppState,
    pub clock: Arc<ManualClock>,
    pub outbox: PathBuf,
    seen: std::sync::Mutex<Vec<(PathBuf, Mail)>>,
    _dir: tempfile::TempDir,
    pg_db: Option<String>,
}

/// Both backends: every scenario runs on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! on_both_databases {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[tokio::test]
            async fn sqlite() {
                let t = TestApp::sqlite().await;
                ($body)(t).await;
            }
            #[tokio::test]
            async fn postgres() {
                if let Some(t) = TestApp::postgres().await {
                    ($body)(t).await;
                }
            }
        }
    };
}

pub fn test_config(dir: &std::path::Path) -> Config {
    // The admin listener of every test control plane on a port of its own.
    let mut cfg = Config { admin_listen: "127.0.0.1:0".into(), ..Config::default() };
    cfg.email.outbox_dir = dir.join("outbox");
    cfg.stores.public = imgcdn_shared::storage::StoreConfig::fs(dir.join("store").to_string_lossy());
    cfg.stores.recovery = imgcdn_shared::storage::StoreConfig::fs(dir.join("recovery").to_string_lossy());
    cfg.stores.staging = imgcdn_shared::storage::StoreConfig::fs(dir.join("staging").to_string_lossy());
    cfg.cookie_secure = true;
    cfg.client_ip_header = Some("x-forwarded-for".into());
    cfg.country_header = Some("cf-ipcountry".into());
    // Cheap hashing keeps tests fast; production defaults are tested in unit tests.
    cfg.passwords.argon2_memory_kib = 64;
    cfg.passwords.argon2_iterations = 1;
    cfg.edge_base_url = "https://cdn.test".into();
    // A small plan to reach its quota in a test.
    cfg.plans.pro.max_images = Some(3);
    cfg.viewer_base_url = "https://img.test".into();
    cfg.edge_sync.edges.insert("edge-a".into(), EDGE_A_TOKEN.into());
    cfg.edge_sync.edges.insert("edge-b".into(), EDGE_B_TOKEN.into());
    cfg.edge_sync.snapshot_after = SNAPSHOT_AFTER;
    cfg
}

impl TestApp {
    pub async fn sqlite() -> TestApp {
        Self::sqlite_with(|_| {}).await
    }

    pub async fn sqlite_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = test_config(dir.path());
        adjust(&mut cfg);
        cfg.database_url = format!("sqlite://{}", dir.path().join("test.db").display());
        Self::with(cfg, dir, None).await
    }

    /// A fresh database on the local PostgreSQL, or `None` (with a visible
    /// message) when no server answers. In CI a missing server is an error.
    pub async fn postgres() -> Option<TestApp> {
        Self::postgres_with(|_| {}).await
    }

    pub async fn postgres_with(adjust: impl FnOnce(&mut Config)) -> Option<TestApp> {
        use sqlx::Connection;
        let admin = match sqlx::PgConnection::connect(PG_ADMIN_URL).await {
            Ok(c) => c,
            Err(e) => {
                if std::env::var_os("CI").is_some() {
                    panic!("PostgreSQL is required in CI ({PG_ADMIN_URL}): {e}");
                }
                eprintln!("SKIPPED: PostgreSQL tests need a server at {PG_ADMIN_URL} ({e})");
                return None;
            }
        };
        let mut admin = admin;
        let name = format!("imgcdn_t_{}", imgcdn_control_plane::secrets::random_alnum(12).to_ascii_lowercase());
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await.unwrap();
        admin.close().await.ok();
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = test_config(dir.path());
        adjust(&mut cfg);
        cfg.database_url = format!("postgres://postgres@127.0.0.1:5432/{name}");
        Some(Self::with(cfg, dir, Some(name)).await)
    }

    pub async fn with(cfg: Config, dir: tempfile::TempDir, pg_db: Option<String>) -> TestApp {
        cfg.validate().unwrap();
        let db = Db::connect(&cfg.database_url).await.unwrap();
        let clock = ManualClock::at(T0);
        let outbox = cfg.email.outbox_dir.clone();
        std::fs::create_dir_all(&outbox).unwrap();
        let state = AppState::new(db, cfg, clock.clone()).unwrap();
        TestApp { state, clock, outbox, seen: Default::default(), _dir: dir, pg_db }
    }

    /// A fresh app on the same backend as this one, its config adjusted.
    pub async fn same_backend_with(&self, adjust: impl FnOnce(&mut Config)) -> TestApp {
        if self.is_postgres() {
            TestApp::postgres_with(adjust).await.expect("PostgreSQL was there a moment ago")
        } else {
            TestApp::sqlite_with(adjust).await
        }
    }

    pub fn is_postgres(&self) -> bool {
        self.pg_db.is_some()
    }

    /// Send a request through the router.
    pub async fn call(&self, req: Req) -> Resp {
        let mut b = Request::builder().method(req.method).uri(&req.path);
        if let Some(c) = &req.cookie {
            b = b.header("cookie", format!("imgcdn_session={c}"));
        }
        if let Some(c) = &req.csrf {
            b = b.header("x-csrf-token", c);
        }
        if let Some(k) = &req.bearer {
            b = b.header("authorization", format!("Bearer {k}"));
        }
        for (k, v) in &req.headers {
            b = b.header(k.as_str(), v.as_str());
        }
        let body = match req.body {
            ReqBody::Empty => Body::empty(),
            ReqBody::Json(v) => {
                b = b.header("content-type", "application/json");
                Body::from(serde_json::to_vec(&v).unwrap())
            }
            ReqBody::Raw(ct, bytes) => {
                b = b.header("content-type", ct);
                Body::from(bytes)
            }
            ReqBody::Owned(ct, bytes) => {
                b = b.header("content-type", ct);
                Body::from(bytes)
            }
        };
        let resp = app(self.state.clone()).oneshot(b.body(body).unwrap()).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Resp { status, headers, json, text: String::from_utf8_lossy(&bytes).to_string(), bytes: bytes.to_vec() }
    }

    /// Deliver queued mail through the real file transport and return every
    /// mail delivered so far, in delivery order, as read back from the
    /// `.eml` files.
    pub async fn deliver(&self) -> Vec<Mail> {
        let mailer = email::mailer(&self.state.cfg.email).unwrap();
        let from = self.state.cfg.email.from.parse().unwrap();
        email::deliver_due(&self.state.db, mailer.as_ref(), &from, self.clock.as_ref()).await.unwrap();
        let mut seen = self.seen.lock().unwrap();
        let mut new: Vec<(std::time::SystemTime, String, std::path::PathBuf)> = std::fs::read_dir(&self.outbox)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "eml") && !seen.iter().any(|(q, _)| q == p))
            .map(|p| {
                let text = std::fs::read_to_string(&p).unwrap();
                (std::fs::metadata(&p).unwrap().modified().unwrap(), text, p)
            })
            .collect();
        // Within one delivery pass, order by the queue order lettre cannot
        // record: our mail ids are not in the file, so fall back to mtime.
        new.sort_by_key(|(t, _, _)| *t);
        for (_, text, p) in new {
            seen.push((p, Mail::parse(&text)));
        }
        seen.iter().map(|(_, m)| m.clone()).collect()
    }

    /// Mail sent to `to` so far, oldest first.
    pub async fn mail_to(&self, to: &str) -> Vec<Mail> {
        // Exact address: "verified@x" must not match mail to "unverified@x".
        self.deliver().await.into_iter().filter(|m| m.to.trim_matches(|c| c == '<' || c == '>') == to).collect()
    }

    /// The token of the newest mail to `to` with `subject`, linking to `path`.
    pub async fn newest_link(&self, to: &str, subject: &str, path: &str) -> String {
        let mails = self.mail_to(to).await;
        let mail =
            mails.iter().rev().find(|m| m.subject == subject).unwrap_or_else(|| panic!("no {subject:?} mail to {to}"));
        mail.token(path).unwrap_or_else(|| panic!("no {path} link in {subject:?}"))
    }

    /// A key with read and write for `u`'s personal team.
    pub async fn key_for(&self, u: &User) -> String {
        self.key_with(u, &["read", "write"]).await
    }

    /// A key with these abilities for `u`'s personal team.
    pub async fn key_with(&self, u: &User, abilities: &[&str]) -> String {
        let body = serde_json::json!({"name": "test", "abilities": abilities});
        let r = self.call(Req::post(&format!("/v1/teams/{}/keys", u.team), body).signed_in(u)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        r.json["key"].as_str().unwrap().to_string()
    }

    /// A new operator's token.
    pub async fn operator(&self, name: &str) -> String {
        imgcdn_control_plane::operators::create(&self.state.db, name, self.clock.unix_now()).await.unwrap()
    }

    /// The public store's root directory.
    pub fn public_store(&self) -> PathBuf {
        PathBuf::from(&self.state.cfg.stores.public.options["root"])
    }

    pub fn recovery_store(&self) -> PathBuf {
        PathBuf::from(&self.state.cfg.stores.recovery.options["root"])
    }

    /// Sign up and verify; returns the email's owner signed in.
    pub async fn user(&self, email: &str, password: &str) -> User {
        let r = self
            .call(Req::post(
                "/v1/auth/signup",
                serde_json::json!({"email": email, "name": email.split('@').next().unwrap(), "password": password, "age_confirmed": true}),
            ))
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
        let token = self.mail_to(email).await.last().unwrap().token("/verify-email").unwrap();
        let r = self.call(Req::post("/v1/auth/verify", serde_json::json!({"token": token}))).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        self.login(email, password).await
    }

    pub async fn login(&self, email: &str, password: &str) -> User {
        let r = self
            .call(
                Req::post("/v1/auth/login", serde_json::json!({"email": email, "password": password}))
                    .header("x-forwarded-for", "203.0.113.9")
                    .header("user-agent", "test-agent/1.0"),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let cookie = r.session_cookie().expect("session cookie");
        User {
            cookie,
            csrf: r.json["csrf_token"].as_str().unwrap().to_string(),
            id: r.json["user"]["id"].as_str().unwrap().to_string(),
            team: r.json["user"]["personal_team_id"].as_str().unwrap().to_string(),
            email: email.to_string(),
        }
    }

    /// Every file of the public, staging and recovery stores whose path or
    /// content holds `needle`.
    pub fn find_in_stores(&self, needle: &str) -> Vec<String> {
        let stores = &self.state.cfg.stores;
        let mut found = Vec::new();
        for store in [&stores.public, &stores.staging, &stores.recovery] {
            let mut dirs = vec![PathBuf::from(&store.options["root"])];
            while let Some(dir) = dirs.pop() {
                for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                    let path = entry.path();
                    if path.is_dir() {
                        dirs.push(path);
                        continue;
                    }
                    let bytes = std::fs::read(&path).unwrap_or_default();
                    if path.to_string_lossy().contains(needle)
                        || bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
                    {
                        found.push(path.display().to_string());
                    }
                }
            }
        }
        found
    }

    /// Every place `needle` is stored: `table.column` for every text column
    /// of every table that holds it (any backend), and, on SQLite, the
    /// database file, its WAL and shared-memory files, byte for byte (a
    /// deleted row can survive in free pages or the WAL).
    pub async fn find_anywhere(&self, needle: &str) -> Vec<String> {
        use sqlx::Row;
        let pool = &self.state.db.pool;
        let columns: Vec<(String, String)> = if self.is_postgres() {
            sqlx::query(
                "SELECT table_name::text, column_name::text FROM information_schema.columns \
                 WHERE table_schema = 'public' AND data_type IN ('text', 'character varying')",
            )
            .fetch_all(pool)
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
        } else {
            let tables: Vec<String> =
                sqlx::query("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
                    .fetch_all(pool)
                    .await
                    .unwrap()
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
            let mut out = Vec::new();
            for table in tables {
                for r in sqlx::query(&format!("SELECT name, type FROM pragma_table_info('{table}')"))
                    .fetch_all(pool)
                    .await
                    .unwrap()
                {
                    if r.get::<String, _>(1).eq_ignore_ascii_case("text") {
                        out.push((table.clone(), r.get(0)));
                    }
                }
            }
            out
        };
        assert!(columns.len() > 20, "found only {columns:?}");
        let mut found = Vec::new();
        for (table, column) in columns {
            let n: i64 = sqlx::query(&format!("SELECT COUNT(*) FROM {table} WHERE {column} LIKE $1"))
                .bind(format!("%{needle}%"))
                .fetch_one(pool)
                .await
                .unwrap()
                .get(0);
            if n > 0 {
                found.push(format!("{table}.{column}"));
            }
        }
        if !self.is_postgres() {
            let db = self.state.cfg.database_url.trim_start_matches("sqlite://").to_string();
            for suffix in ["", "-wal", "-shm"] {
                let path = format!("{db}{suffix}");
                if let Ok(bytes) = std::fs::read(&path) {
                    if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                        found.push(path);
                    }
                }
            }
        }
        found
    }

    pub async fn count(&self, sql: &str) -> i64 {
        use sqlx::Row;
        sqlx::query(sql).fetch_one(&self.state.db.pool).await.unwrap().get::<i64, _>(0)
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(name) = self.pg_db.take() {
            // Best effort, on its own thread and runtime: never block on the
            // test's pool (its connections belong to the test's runtime).
            // FORCE ends those connections server-side.
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                rt.block_on(async move {
                    use sqlx::Connection;
                    if let Ok(mut c) = sqlx::PgConnection::connect(PG_ADMIN_URL).await {
                        let _ =
                            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut c).await;
                    }
                });
            })
            .join()
            .ok();
        }
    }
}

#[derive(Clone)]
pub struct User {
    pub cookie: String,
    pub csrf: String,
    pub id: String,
    pub team: String,
    pub email: String,
}

pub enum ReqBody {
    Empty,
    Json(Value),
    Raw(&'static str, Vec<u8>),
    Owned(String, Vec<u8>),
}

pub struct Req {
    pub method: &'static str,
    pub path: String,
    pub body: ReqBody,
    pub cookie: Option<String>,
    pub csrf: Option<String>,
    pub bearer: Option<String>,
    pub headers: Vec<(String, String)>,
}

impl Req {
    pub fn new(method: &'static str, path: &str) -> Req {
        Req {
            method,
            path: path.to_string(),
            body: ReqBody::Empty,
            cookie: None,
            csrf: None,
            bearer: None,
            headers: vec![],
        }
    }
    pub fn get(path: &str) -> Req {
        Req::new("GET", path)
    }
    pub fn post(path: &str, body: Value) -> Req {
        Req::new("POST", path).json(body)
    }
    pub fn json(mut self, v: Value) -> Req {
        self.body = ReqBody::Json(v);
        self
    }
    pub fn raw(mut self, ct: &'static str, bytes: Vec<u8>) -> Req {
        self.body = ReqBody::Raw(ct, bytes);
        self
    }
    /// Cookie and CSRF token of a signed-in user.
    pub fn signed_in(mut self, u: &User) -> Req {
        self.cookie = Some(u.cookie.clone());
        self.csrf = Some(u.csrf.clone());
        self
    }
    pub fn cookie_only(mut self, u: &User) -> Req {
        self.cookie = Some(u.cookie.clone());
        self
    }
    pub fn key(mut self, k: &str) -> Req {
        self.bearer = Some(k.to_string());
        self
    }
    /// A multipart/form-data body: `(name, filename, bytes)` parts.
    pub fn multipart(mut self, parts: &[(&str, Option<&str>, &[u8])]) -> Req {
        let boundary = "----imgcdn-test-boundary-7d1f";
        let mut body = Vec::new();
        for (name, filename, bytes) in parts {
            body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
            match filename {
                Some(f) => body.extend_from_slice(
                    format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
                ),
                None => body.extend_from_slice(format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes()),
            }
            body.extend_from_slice(bytes);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        self.body = ReqBody::Owned(format!("multipart/form-data; boundary={boundary}"), body);
        self
    }

    pub fn header(mut self, k: &str, v: &str) -> Req {
        self.headers.push((k.to_string(), v.to_string()));
        self
    }
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub json: Value,
    pub text: String,
    /// The body as sent (for binary answers).
    pub bytes: Vec<u8>,
}

impl Resp {
    pub fn set_cookie(&self) -> Option<String> {
        self.headers.get("set-cookie").map(|v| v.to_str().unwrap().to_string())
    }
    pub fn session_cookie(&self) -> Option<String> {
        let c = self.set_cookie()?;
        let v = c.split(';').next()?.strip_prefix("imgcdn_session=")?;
        (!v.is_empty()).then(|| v.to_string())
    }
    pub fn code(&self) -> &str {
        self.json["error"]["code"].as_str().unwrap_or("")
    }
}

#[derive(Clone)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub body: String,
}

impl Mail {
    fn parse(raw: &str) -> Mail {
        let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw, ""));
        let header = |name: &str| {
            head.lines()
                .find(|l| l.to_ascii_lowercase().starts_with(&format!("{name}:")))
                .map(|l| l[name.len() + 1..].trim().to_string())
                .unwrap_or_default()
        };
        // Undo quoted-printable soft line breaks if the mailer used them.
        let body = if header("content-transfer-encoding").eq_ignore_ascii_case("quoted-printable") {
            body.replace("=\r\n", "").replace("=3D", "=")
        } else {
            body.to_string()
        };
        Mail { to: header("to"), subject: header("subject"), body }
    }

    /// The token of the first link to `path` in the body.
    pub fn token(&self, path: &str) -> Option<String> {
        let i = self.body.find(&format!("{path}?token="))?;
        let rest = &self.body[i + path.len() + 7..];
        Some(rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').collect())
    }
}

// ---- Pages, as a browser without script uses them ----------------------

/// Percent-encoding for a query value.
pub fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A page form's POST: `fields` URL-encoded, as a browser sends them (no
/// cookie: add `.cookie_only(&u)`; pages send the CSRF token as a field).
pub fn page_form(path: &str, fields: &[(&str, &str)]) -> Req {
    let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish();
    Req::new("POST", path).raw("application/x-www-form-urlencoded", body.into_bytes())
}

/// Where a redirect sends the browser (empty without a `Location`).
pub fn location(r: &Resp) -> String {
    r.headers.get("location").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
}

/// An HTML answer under the site's Content-Security-Policy (script and
/// style from our origin only), whose markup needs nothing it blocks: no
/// inline `<script>`, no `style=` and no `on…=` handler attribute.
pub fn assert_no_inline_code(what: &str, r: &Resp) {
    let csp = r.headers.get("content-security-policy").and_then(|v| v.to_str().ok()).unwrap_or("");
    assert!(
        csp.contains("script-src 'self'") && csp.contains("style-src 'self'") && !csp.contains("unsafe-inline"),
        "{what}: {csp:?}"
    );
    // Markup escapes `<` and `>` in text and attribute values, so each `<…>` is a tag.
    for tag in r.text.split('<').skip(1).filter_map(|t| t.split_once('>').map(|(tag, _)| tag)) {
        let (name, mut rest) = tag.split_once(char::is_whitespace).unwrap_or((tag, ""));
        let mut attributes = Vec::new();
        loop {
            rest = rest.trim_start();
            if rest.is_empty() {
                break;
            }
            let end = rest.find(|c: char| c.is_whitespace() || c == '=').unwrap_or(rest.len());
            attributes.push(rest[..end].to_ascii_lowercase());
            rest = &rest[end..];
            if let Some(value) = rest.strip_prefix('=') {
                rest = match value.strip_prefix('"') {
                    Some(quoted) => quoted.split_once('"').map_or("", |(_, after)| after),
                    None => value.trim_start_matches(|c: char| !c.is_whitespace()),
                };
            }
        }
        if name.eq_ignore_ascii_case("script") {
            assert!(attributes.iter().any(|a| a == "src"), "{what}: inline script <{tag}>");
        }
        for a in &attributes {
            assert!(a != "style" && !(a.starts_with("on") && a.len() > 2), "{what}: <{tag}> has {a}");
        }
    }
}
