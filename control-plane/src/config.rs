//! Control-plane configuration: typed defaults, a TOML file, then
//! environment overrides; [`Config::validate`] reports every bad value at
//! once before anything starts.

use std::net::SocketAddr;
use std::path::PathBuf;

use imgcdn_shared::storage::StoreConfig;

use crate::retention::policy::PlanTerms;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// HTTP listen address of the API.
    pub listen: String,
    /// Admin listener (`/metrics`, `/healthz`, `/readyz`): keep it private.
    pub admin_listen: String,
    /// `text` or `json` (one object per line).
    pub log_format: imgcdn_shared::config::LogFormat,
    /// `sqlite://path/to/file.db` (embedded default) or `postgres://…`.
    pub database_url: String,
    /// Base URL of this service as users reach it: links in emails point here.
    pub public_base_url: String,
    /// Mark session cookies `Secure` (turn off only for plain-HTTP localhost).
    pub cookie_secure: bool,
    /// Largest request body accepted on JSON routes, in bytes.
    pub json_body_limit: usize,
    /// Seconds a request may take before a 503 (uploads excepted: their
    /// body streams at the client's pace, see `body_idle_timeout_secs`).
    pub request_timeout_secs: u64,
    /// Seconds an upload body may go without sending a byte before a 408.
    pub body_idle_timeout_secs: u64,
    /// Seconds a connection has to deliver a complete request head, from
    /// when the server waits for one (after accepting, and between
    /// requests on a kept-alive connection); then it is closed.
    pub header_read_timeout_secs: u64,
    /// Connections open at once; past it a new one gets a 503 and is closed.
    pub max_connections: usize,
    /// Connections one client (socket address, IPv6 per /64) may hold open;
    /// 0 = no cap. Not applied behind a proxy (`client_ip_header` set).
    pub max_connections_per_client: usize,
    /// Header carrying the client address when behind a trusted proxy
    /// (e.g. `X-Forwarded-For`); unset = the socket peer address.
    pub client_ip_header: Option<String>,
    /// How many trusted proxies append to `client_ip_header`: the client
    /// address is the entry this many from the right (the right-most one no
    /// client can forge). 1 for one load balancer.
    pub trusted_proxy_hops: usize,
    /// Header carrying the client's country code set by a trusted proxy
    /// (e.g. `CF-IPCountry`), recorded in consent records.
    pub country_header: Option<String>,
    pub sessions: SessionConfig,
    pub passwords: PasswordConfig,
    pub email: EmailConfig,
    pub legacy_keys: LegacyKeyConfig,
    /// Seconds an email verification link stays valid.
    pub verify_link_ttl_secs: i64,
    /// Seconds a password reset link stays valid.
    pub reset_link_ttl_secs: i64,
    /// Seconds a team invitation stays valid.
    pub invite_ttl_secs: i64,
    /// Public base URL of the edges: image `url`s are built from it.
    pub edge_base_url: String,
    /// Base URL of viewer pages (`page_url`); empty = `public_base_url`.
    pub viewer_base_url: String,
    /// Where images live. The edge reads only `public`.
    pub stores: StoresConfig,
    pub uploads: UploadConfig,
    pub plans: PlansConfig,
    pub edge_sync: EdgeSyncConfig,
    /// Content safety: classifiers, the blocklist, what each verdict leads
    /// to, DMCA windows.
    pub moderation: crate::moderation::config::ModerationConfig,
    /// How long images and personal data are kept (the retention table).
    pub retention: crate::retention::policy::RetentionConfig,
    /// People's rights: deletion grace period, exports, subprocessors.
    pub privacy: crate::privacy::config::PrivacyConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoresConfig {
    /// Published objects and manifests (what edges serve).
    pub public: StoreConfig,
    /// Uploads awaiting classification or review (never given to edges).
    pub staging: StoreConfig,
    /// Deleted and expired images, kept `retention.recovery_days`, operator only.
    pub recovery: StoreConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UploadConfig {
    /// Refuse images with more pixels than this (decompression bombs).
    pub max_pixels: u64,
    /// Anonymous uploads per client per hour and per day.
    pub anonymous_per_hour: u32,
    pub anonymous_per_day: u32,
    /// Images an account with an unverified email may upload (to each team).
    pub unverified_max_uploads: u64,
    /// Addresses (ip:port) that URL imports may reach although they are not
    /// public. For tests only: leave empty in production.
    pub import_allow: Vec<std::net::SocketAddr>,
    /// Bytes of upload bodies held in memory at once, over all requests
    /// (at least the largest file a plan allows).
    pub body_budget_bytes: u64,
    /// Bytes of memory image decoding may use at once, over all uploads
    /// (each decode reserves its cost from the image's header: width ×
    /// height × bytes per pixel at its real bit depth, plus buffers).
    pub decode_budget_bytes: u64,
    /// Seconds an import by URL may take, whole (then 504 `fetch_failed`).
    pub import_timeout_secs: u64,
    /// Threads that decode uploads (0: one per core). Decoding is CPU-bound:
    /// more threads than cores only hold more memory at once.
    pub decode_threads: usize,
    /// How long an upload waits for room in a budget before a 503.
    pub budget_wait_ms: u64,
}

/// Edge sync (see `imgcdn_shared::sync`).
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EdgeSyncConfig {
    /// Edge name → its bearer token (at least 32 characters; one per edge,
    /// so one can be revoked alone). An edge's name is what the operator
    /// API reports propagation by.
    pub edges: std::collections::BTreeMap<String, String>,
    /// Longest a `changes` long-poll waits for a change, in milliseconds.
    pub max_wait_ms: u64,
    /// An edge more than this many sequence numbers behind is told to
    /// fetch a snapshot instead of replaying changes.
    pub snapshot_after: u64,
    /// Re-read the log head this often (ms), in case a PostgreSQL
    /// notification was lost or another process wrote to SQLite.
    pub poll_ms: u64,
}

impl Default for EdgeSyncConfig {
    fn default() -> Self {
        EdgeSyncConfig { edges: Default::default(), max_wait_ms: 25_000, snapshot_after: 10_000, poll_ms: 1_000 }
    }
}

impl std::fmt::Debug for EdgeSyncConfig {
    /// Tokens never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeSyncConfig")
            .field("edges", &self.edges.keys().collect::<Vec<_>>())
            .field("max_wait_ms", &self.max_wait_ms)
            .field("snapshot_after", &self.snapshot_after)
            .field("poll_ms", &self.poll_ms)
            .finish()
    }
}

/// One plan's limits. `None` = no limit / kept until deleted.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub max_images: Option<u64>,
    pub max_file_bytes: u64,
    pub max_svg_bytes: u64,
    /// Days uploads are kept (none: until deleted). Anonymous uploads take
    /// their window from `[retention]` instead.
    #[serde(default)]
    pub retention_days: Option<i64>,
    /// A paid plan keeps restricted content until deleted; others keep it
    /// `retention.restricted_days`.
    #[serde(default)]
    pub paid: bool,
}

impl Plan {
    /// What of this plan matters for retention.
    pub fn terms(&self) -> PlanTerms {
        PlanTerms { retention_days: self.retention_days, paid: self.paid }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlansConfig {
    pub anonymous: Plan,
    pub free: Plan,
    pub pro: Plan,
    pub unlimited: Plan,
}

const MB: u64 = 1_000_000;

impl Default for StoresConfig {
    fn default() -> Self {
        StoresConfig {
            public: StoreConfig::fs("./data/store"),
            staging: StoreConfig::fs("./data/staging"),
            recovery: StoreConfig::fs("./data/recovery"),
        }
    }
}

impl Default for UploadConfig {
    fn default() -> Self {
        UploadConfig {
            max_pixels: 100_000_000,
            anonymous_per_hour: 20,
            anonymous_per_day: 100,
            unverified_max_uploads: 100,
            import_allow: Vec::new(),
            body_budget_bytes: 1024 * 1024 * 1024,
            decode_budget_bytes: 1024 * 1024 * 1024,
            decode_threads: 0,
            import_timeout_secs: 30,
            budget_wait_ms: 10_000,
        }
    }
}

impl Default for PlansConfig {
    fn default() -> Self {
        let signed_in = |max_images, paid| Plan {
            max_images,
            max_file_bytes: 70 * MB,
            max_svg_bytes: 10 * MB,
            retention_days: None,
            paid,
        };
        PlansConfig {
            anonymous: Plan {
                max_images: None,
                max_file_bytes: 20 * MB,
                max_svg_bytes: 10 * MB,
                retention_days: None,
                paid: false,
            },
            free: signed_in(Some(5_000), false),
            pro: signed_in(Some(50_000), true),
            unlimited: signed_in(None, true),
        }
    }
}

impl PlansConfig {
    pub fn get(&self, name: &str) -> &Plan {
        match name {
            "anonymous" => &self.anonymous,
            "pro" => &self.pro,
            "unlimited" => &self.unlimited,
            _ => &self.free,
        }
    }

    /// What of each team plan matters for retention, by name.
    pub fn retention_terms(&self) -> [(&'static str, PlanTerms); 3] {
        [("free", self.free.terms()), ("pro", self.pro.terms()), ("unlimited", self.unlimited.terms())]
    }

    /// The largest body any plan may upload (the route's hard cap).
    pub fn largest_file(&self) -> u64 {
        [&self.anonymous, &self.free, &self.pro, &self.unlimited].iter().map(|p| p.max_file_bytes).max().unwrap_or(0)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionConfig {
    /// A session not used for this many days ends.
    pub sliding_days: i64,
    /// No session lives longer than this many days after sign-in.
    pub max_days: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PasswordConfig {
    pub min_length: usize,
    /// Longer passwords are refused (bounds hashing work per request).
    pub max_length: usize,
    /// argon2id memory cost in KiB.
    pub argon2_memory_kib: u32,
    /// argon2id iterations.
    pub argon2_iterations: u32,
    /// Hashes computed at once (each holds `argon2_memory_kib`), shared by
    /// sign-in, sign-up, password change and reset. 0 = one per CPU core.
    pub max_concurrent_hashes: usize,
    /// Requests that may wait for a hashing slot; more get a 503 with
    /// `Retry-After` at once.
    pub max_waiting_hashes: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmailConfig {
    /// `file` (one .eml per message in `outbox_dir`) or `smtp`.
    pub transport: MailTransport,
    pub outbox_dir: PathBuf,
    /// Sender address, e.g. `imgcdn <no-reply@example.com>`.
    pub from: String,
    pub smtp_host: String,
    pub smtp_port: u16,
    /// `none`, `starttls` or `tls`.
    pub smtp_tls: SmtpTls,
    pub smtp_username: Option<String>,
    pub smtp_password: Option<String>,
}

/// How mail leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MailTransport {
    /// One `.eml` file per message in `outbox_dir` (the embedded default).
    File,
    /// An SMTP relay.
    Smtp,
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain text (a relay on localhost only).
    None,
    /// Upgrade with STARTTLS (port 587).
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LegacyKeyConfig {
    /// Keys an unverified account may hold.
    pub unverified_max_keys: i64,
    /// `POST /v1/keys` calls per email per hour.
    pub per_email_per_hour: u32,
    /// `POST /v1/keys` calls per client per hour.
    pub per_client_per_hour: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8090".into(),
            admin_listen: "127.0.0.1:8091".into(),
            log_format: Default::default(),
            database_url: "sqlite://./data/imgcdn.db".into(),
            public_base_url: "http://127.0.0.1:8090".into(),
            cookie_secure: true,
            json_body_limit: 64 * 1024,
            request_timeout_secs: 30,
            body_idle_timeout_secs: 30,
            header_read_timeout_secs: 15,
            max_connections: 1024,
            max_connections_per_client: 64,
            client_ip_header: None,
            trusted_proxy_hops: 1,
            country_header: None,
            sessions: SessionConfig::default(),
            passwords: PasswordConfig::default(),
            email: EmailConfig::default(),
            legacy_keys: LegacyKeyConfig::default(),
            verify_link_ttl_secs: 48 * 3600,
            reset_link_ttl_secs: 3600,
            invite_ttl_secs: 7 * 24 * 3600,
            edge_base_url: "http://127.0.0.1:8080".into(),
            viewer_base_url: String::new(),
            stores: StoresConfig::default(),
            uploads: UploadConfig::default(),
            plans: PlansConfig::default(),
            edge_sync: EdgeSyncConfig::default(),
            moderation: Default::default(),
            retention: Default::default(),
            privacy: Default::default(),
        }
    }
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig { sliding_days: 90, max_days: 180 }
    }
}

impl Default for PasswordConfig {
    fn default() -> Self {
        // OWASP's argon2id baseline: 19 MiB, 2 iterations, 1 lane.
        PasswordConfig {
            min_length: 10,
            max_length: 128,
            argon2_memory_kib: 19 * 1024,
            argon2_iterations: 2,
            max_concurrent_hashes: 0,
            max_waiting_hashes: 32,
        }
    }
}

impl Default for EmailConfig {
    fn default() -> Self {
        EmailConfig {
            transport: MailTransport::File,
            outbox_dir: PathBuf::from("./data/outbox"),
            from: "imgcdn <no-reply@localhost>".into(),
            smtp_host: "localhost".into(),
            smtp_port: 587,
            smtp_tls: SmtpTls::Starttls,
            smtp_username: None,
            smtp_password: None,
        }
    }
}

impl Default for LegacyKeyConfig {
    fn default() -> Self {
        LegacyKeyConfig { unverified_max_keys: 3, per_email_per_hour: 5, per_client_per_hour: 20 }
    }
}

/// Every problem found, one line each.
#[derive(Debug, thiserror::Error)]
#[error("invalid control-plane configuration:\n  {}", .0.join("\n  "))]
pub struct ConfigErrors(pub Vec<String>);

/// Environment variables that override the file (secrets belong here).
pub const ENV_OVERRIDES: &[(&str, &str)] = &[
    ("IMGCDN_LISTEN", "listen"),
    ("IMGCDN_DATABASE_URL", "database_url"),
    ("IMGCDN_PUBLIC_BASE_URL", "public_base_url"),
    ("IMGCDN_COOKIE_SECURE", "cookie_secure"),
    ("IMGCDN_EMAIL_TRANSPORT", "email.transport"),
    ("IMGCDN_EMAIL_FROM", "email.from"),
    ("IMGCDN_SMTP_HOST", "email.smtp_host"),
    ("IMGCDN_SMTP_PORT", "email.smtp_port"),
    ("IMGCDN_SMTP_TLS", "email.smtp_tls"),
    ("IMGCDN_SMTP_USERNAME", "email.smtp_username"),
    ("IMGCDN_SMTP_PASSWORD", "email.smtp_password"),
    ("IMGCDN_EDGE_BASE_URL", "edge_base_url"),
];

impl Config {
    /// Defaults, then the TOML `text`, then environment overrides read
    /// through `env`. Every parse problem is collected.
    pub fn load(text: Option<&str>, env: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigErrors> {
        let mut value = toml::Value::try_from(Config::default()).expect("defaults serialise");
        if let Some(text) = text {
            let file: toml::Value =
                toml::from_str(text).map_err(|e| ConfigErrors(vec![toml_syntax_error(text, &e)]))?;
            merge(&mut value, file);
        }
        let mut problems = Vec::new();
        for (var, path) in ENV_OVERRIDES {
            if let Some(raw) = env(var) {
                let parsed = match path {
                    p if p.ends_with("port") => raw.parse::<i64>().map(toml::Value::Integer).ok(),
                    p if p.ends_with("secure") => raw.parse::<bool>().map(toml::Value::Boolean).ok(),
                    _ => Some(toml::Value::String(raw.clone())),
                };
                match parsed {
                    Some(v) => set_path(&mut value, path, v),
                    None => problems.push(format!("{var}: {raw:?} is not a valid {path}")),
                }
            }
        }
        let (config, wrong) = imgcdn_shared::config::read_reporting_all::<Config>(value);
        problems.extend(wrong.iter().map(|p| p.describe(text)));
        if problems.is_empty() {
            return Ok(config);
        }
        // Report what is wrong with the rest too, in the same run.
        if let Err(more) = config.validate() {
            problems.extend(more.0);
        }
        Err(ConfigErrors(problems))
    }

    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let mut p = Vec::new();
        if self.listen.parse::<SocketAddr>().is_err() {
            p.push(format!("listen: {:?} is not an address like 127.0.0.1:8090", self.listen));
        }
        if self.admin_listen.parse::<SocketAddr>().is_err() {
            p.push(format!("admin_listen: {:?} is not an address like 127.0.0.1:8091", self.admin_listen));
        }
        if !(self.database_url.starts_with("sqlite:")
            || self.database_url.starts_with("postgres://")
            || self.database_url.starts_with("postgresql://"))
        {
            p.push("database_url: must start with sqlite: or postgres://".to_string());
        }
        if !(self.public_base_url.starts_with("http://") || self.public_base_url.starts_with("https://")) {
            p.push("public_base_url: must be an http(s) URL".to_string());
        }
        if self.sessions.sliding_days < 1 || self.sessions.max_days < self.sessions.sliding_days {
            p.push("sessions: need 1 <= sliding_days <= max_days".to_string());
        }
        let pw = &self.passwords;
        if pw.min_length < 8 || pw.max_length < pw.min_length || pw.max_length > 1024 {
            p.push("passwords: need 8 <= min_length <= max_length <= 1024".to_string());
        }
        if pw.argon2_memory_kib < 8 || pw.argon2_iterations < 1 {
            p.push("passwords: argon2_memory_kib >= 8 and argon2_iterations >= 1".to_string());
        }
        if self.email.transport == MailTransport::Smtp {
            if self.email.smtp_host.is_empty() {
                p.push("email.smtp_host: required for the smtp transport".to_string());
            }
            if self.email.smtp_username.is_some() != self.email.smtp_password.is_some() {
                p.push("email: smtp_username and smtp_password go together".to_string());
            }
        }
        if self.email.from.parse::<lettre::message::Mailbox>().is_err() {
            p.push(format!("email.from: {:?} is not a mailbox", self.email.from));
        }
        for (name, v) in [
            ("verify_link_ttl_secs", self.verify_link_ttl_secs),
            ("reset_link_ttl_secs", self.reset_link_ttl_secs),
            ("invite_ttl_secs", self.invite_ttl_secs),
        ] {
            if v < 60 {
                p.push(format!("{name}: at least 60"));
            }
        }
        for (name, url) in [("edge_base_url", &self.edge_base_url), ("viewer_base_url", &self.viewer_base_url)] {
            let optional_and_unset = url.is_empty() && name == "viewer_base_url";
            let is_http = url.starts_with("http://") || url.starts_with("https://");
            if !(optional_and_unset || is_http) {
                p.push(format!("{name}: must be an http(s) URL"));
            }
        }
        p.extend(self.stores.public.problems("stores.public"));
        p.extend(self.stores.staging.problems("stores.staging"));
        p.extend(self.stores.recovery.problems("stores.recovery"));
        if self.stores.public == self.stores.recovery {
            p.push("stores.recovery: must not be the public store (edges would serve deleted images)".to_string());
        }
        if self.stores.public == self.stores.staging || self.stores.staging == self.stores.recovery {
            p.push("stores.staging: must be a store of its own (edges must not read held uploads)".to_string());
        }
        p.extend(self.moderation.problems());
        if self.uploads.max_pixels == 0 {
            p.push("uploads.max_pixels: must be positive".to_string());
        }
        p.extend(self.retention.problems());
        p.extend(self.privacy.problems());
        if self.uploads.body_budget_bytes < self.plans.largest_file() {
            p.push("uploads.body_budget_bytes: must hold at least the largest file a plan allows".to_string());
        }
        if !(1..=600).contains(&self.uploads.import_timeout_secs) {
            p.push("uploads.import_timeout_secs: 1 to 600".to_string());
        }
        if self.uploads.decode_threads > 256 {
            p.push("uploads.decode_threads: at most 256 (0: one per core)".to_string());
        }
        if self.uploads.decode_budget_bytes < 64 * 1024 * 1024 {
            p.push("uploads.decode_budget_bytes: at least 64 MiB".to_string());
        }
        for (name, plan) in [
            ("anonymous", &self.plans.anonymous),
            ("free", &self.plans.free),
            ("pro", &self.plans.pro),
            ("unlimited", &self.plans.unlimited),
        ] {
            if plan.max_file_bytes == 0 || plan.max_svg_bytes == 0 || plan.retention_days.is_some_and(|d| d < 1) {
                p.push(format!("plans.{name}: sizes must be positive and retention_days at least 1"));
            }
        }
        if self.plans.anonymous.retention_days.is_some() {
            p.push(
                "plans.anonymous.retention_days: anonymous windows are set in [retention] (anonymous_days, surfaces)"
                    .to_string(),
            );
        }
        let mut tokens = std::collections::HashSet::new();
        for (name, token) in &self.edge_sync.edges {
            if name.is_empty()
                || name.len() > 64
                || !name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
            {
                p.push(format!("edge_sync.edges: {name:?} is not a name of letters, digits, '.', '_' or '-'"));
            }
            if token.len() < 32 {
                p.push(format!("edge_sync.edges.{name}: the token must be at least 32 characters"));
            }
            if !tokens.insert(token) {
                p.push(format!("edge_sync.edges.{name}: token shared with another edge"));
            }
        }
        if self.edge_sync.max_wait_ms + 1000 > self.request_timeout_secs * 1000 {
            p.push("edge_sync.max_wait_ms: must stay at least 1 s under request_timeout_secs".to_string());
        }
        if self.edge_sync.poll_ms == 0 || self.edge_sync.snapshot_after == 0 {
            p.push("edge_sync: poll_ms and snapshot_after must be positive".to_string());
        }
        if self.body_idle_timeout_secs == 0 || self.header_read_timeout_secs == 0 || self.max_connections == 0 {
            p.push("body_idle_timeout_secs, header_read_timeout_secs, max_connections: must be positive".to_string());
        }
        if self.trusted_proxy_hops == 0 {
            p.push("trusted_proxy_hops: at least 1 (the proxy that sets client_ip_header)".to_string());
        }
        if self.json_body_limit < 1024 {
            p.push("json_body_limit: at least 1024".to_string());
        }
        if p.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(p))
        }
    }
}

/// A TOML syntax error as one line: where, and what.
fn toml_syntax_error(text: &str, e: &toml::de::Error) -> String {
    let message = e.message();
    match e.span() {
        Some(span) => format!("line {}: {message}", text[..span.start.min(text.len())].matches('\n').count() + 1),
        None => message.to_string(),
    }
}

/// Lay the file's values over the defaults, table by table. A store table
/// (one with a `scheme`) replaces the default store whole: an S3 store
/// must not inherit the default fs store's `root` as its key prefix.
fn merge(base: &mut toml::Value, over: toml::Value) {
    match (base, over) {
        (toml::Value::Table(b), toml::Value::Table(o)) => {
            for (k, v) in o {
                let is_store = v.get("scheme").is_some();
                match b.get_mut(&k) {
                    Some(slot) if slot.is_table() && v.is_table() && !is_store => merge(slot, v),
                    _ => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

fn set_path(v: &mut toml::Value, path: &str, new: toml::Value) {
    let mut cur = v;
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        let table = cur.as_table_mut().expect("config is a table");
        if parts.peek().is_none() {
            table.insert(part.to_string(), new);
            return;
        }
        cur = table.entry(part.to_string()).or_insert_with(|| toml::Value::Table(Default::default()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn file_then_env_override() {
        let c = Config::load(Some("listen = \"0.0.0.0:1\"\n[email]\nsmtp_port = 25\n"), |k| {
            (k == "IMGCDN_SMTP_PORT").then(|| "2525".to_string())
        })
        .unwrap();
        assert_eq!(c.listen, "0.0.0.0:1");
        assert_eq!(c.email.smtp_port, 2525);
        assert_eq!(c.email.transport, MailTransport::File);
    }

    #[test]
    fn unknown_keys_and_bad_env_are_reported() {
        assert!(Config::load(Some("lisen = 1"), |_| None).is_err());
        let e = Config::load(None, |k| (k == "IMGCDN_SMTP_PORT").then(|| "many".into())).unwrap_err();
        assert!(e.0[0].contains("IMGCDN_SMTP_PORT"));
    }

    #[test]
    fn every_unreadable_key_is_reported_in_one_run_with_its_path() {
        let text = "lisen = 1\nlisten = \"nowhere\"\n[email]\ntransport = \"pigeon\"\nsmtp_port = \"many\"\n";
        let errs = Config::load(Some(text), |_| None).unwrap_err().0;
        for needle in ["line 1: lisen", "line 4: email.transport", "line 5: email.smtp_port", "listen:"] {
            assert!(errs.iter().any(|e| e.starts_with(needle)), "{needle} missing from {errs:?}");
        }
    }

    #[test]
    fn an_unknown_mail_transport_is_refused_naming_the_choices() {
        let e = Config::load(Some("[email]\ntransport = \"pigeon\"\n"), |_| None).unwrap_err().0.join(" ");
        assert!(e.contains("pigeon") && e.contains("file") && e.contains("smtp"), "{e}");
    }

    #[test]
    fn an_s3_store_in_the_file_does_not_inherit_the_default_fs_root() {
        let s3 = "[stores.public]\nscheme = \"s3\"\nbucket = \"pub\"\nregion = \"auto\"\naccess_key_id = \"a\"\nsecret_access_key = \"s\"\n";
        let c = Config::load(Some(s3), |_| None).unwrap();
        assert_eq!(c.stores.public.scheme, imgcdn_shared::storage::StoreScheme::S3);
        assert_eq!(c.stores.public.options.get("root"), None, "{:?}", c.stores.public);
        assert_eq!(c.stores.public.options.get("bucket").map(String::as_str), Some("pub"));
        // A table without a scheme still only overrides what it names.
        let c = Config::load(Some("[retention]\nrecovery_days = 7\n"), |_| None).unwrap();
        assert_eq!((c.retention.recovery_days, c.uploads.anonymous_per_hour), (7, 20));
    }

    #[test]
    fn every_problem_at_once() {
        let mut c = Config { listen: "x".into(), database_url: "mysql://".into(), ..Config::default() };
        c.email.transport = MailTransport::Smtp;
        c.email.smtp_host = String::new();
        c.sessions.max_days = 1;
        let errs = c.validate().unwrap_err().0;
        for needle in ["listen", "database_url", "email.smtp_host", "sessions"] {
            assert!(errs.iter().any(|e| e.starts_with(needle)), "{needle}: {errs:?}");
        }
    }
}
