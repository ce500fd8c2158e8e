//! Control-plane configuration: typed defaults, a TOML file, then
//! environment overrides; [`Config::validate`] reports every bad value at
//! once before anything starts.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// HTTP listen address of the API.
    pub listen: String,
    /// `sqlite://path/to/file.db` (embedded default) or `postgres://…`.
    pub database_url: String,
    /// Base URL of this service as users reach it: links in emails point here.
    pub public_base_url: String,
    /// Mark session cookies `Secure` (turn off only for plain-HTTP localhost).
    pub cookie_secure: bool,
    /// Largest request body accepted on JSON routes, in bytes.
    pub json_body_limit: usize,
    /// Seconds a request may take before a 503.
    pub request_timeout_secs: u64,
    /// Header carrying the client address when behind a trusted proxy
    /// (e.g. `X-Forwarded-For`); unset = the socket peer address.
    pub client_ip_header: Option<String>,
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
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmailConfig {
    /// `file` (one .eml per message in `outbox_dir`) or `smtp`.
    pub transport: String,
    pub outbox_dir: PathBuf,
    /// Sender address, e.g. `imgcdn <no-reply@example.com>`.
    pub from: String,
    pub smtp_host: String,
    pub smtp_port: u16,
    /// `none`, `starttls` or `tls`.
    pub smtp_tls: String,
    pub smtp_username: Option<String>,
    pub smtp_password: Option<String>,
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
            database_url: "sqlite://./data/imgcdn.db".into(),
            public_base_url: "http://127.0.0.1:8090".into(),
            cookie_secure: true,
            json_body_limit: 64 * 1024,
            request_timeout_secs: 30,
            client_ip_header: None,
            country_header: None,
            sessions: SessionConfig::default(),
            passwords: PasswordConfig::default(),
            email: EmailConfig::default(),
            legacy_keys: LegacyKeyConfig::default(),
            verify_link_ttl_secs: 48 * 3600,
            reset_link_ttl_secs: 3600,
            invite_ttl_secs: 7 * 24 * 3600,
        }
    }
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            sliding_days: 90,
            max_days: 180,
        }
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
        }
    }
}

impl Default for EmailConfig {
    fn default() -> Self {
        EmailConfig {
            transport: "file".into(),
            outbox_dir: PathBuf::from("./data/outbox"),
            from: "imgcdn <no-reply@localhost>".into(),
            smtp_host: "localhost".into(),
            smtp_port: 587,
            smtp_tls: "starttls".into(),
            smtp_username: None,
            smtp_password: None,
        }
    }
}

impl Default for LegacyKeyConfig {
    fn default() -> Self {
        LegacyKeyConfig {
            unverified_max_keys: 3,
            per_email_per_hour: 5,
            per_client_per_hour: 20,
        }
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
];

impl Config {
    /// Defaults, then the TOML `text`, then environment overrides read
    /// through `env`. Every parse problem is collected.
    pub fn load(
        text: Option<&str>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigErrors> {
        let mut value = toml::Value::try_from(Config::default()).expect("defaults serialise");
        if let Some(text) = text {
            let file: toml::Value =
                toml::from_str(text).map_err(|e| ConfigErrors(vec![e.to_string()]))?;
            merge(&mut value, file);
        }
        let mut problems = Vec::new();
        for (var, path) in ENV_OVERRIDES {
            if let Some(raw) = env(var) {
                let parsed = match path {
                    p if p.ends_with("port") => raw.parse::<i64>().map(toml::Value::Integer).ok(),
                    p if p.ends_with("secure") => {
                        raw.parse::<bool>().map(toml::Value::Boolean).ok()
                    }
                    _ => Some(toml::Value::String(raw.clone())),
                };
                match parsed {
                    Some(v) => set_path(&mut value, path, v),
                    None => problems.push(format!("{var}: {raw:?} is not a valid {path}")),
                }
            }
        }
        if !problems.is_empty() {
            return Err(ConfigErrors(problems));
        }
        value
            .try_into()
            .map_err(|e: toml::de::Error| ConfigErrors(vec![e.to_string()]))
    }

    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let mut p = Vec::new();
        if self.listen.parse::<SocketAddr>().is_err() {
            p.push(format!(
                "listen: {:?} is not an address like 127.0.0.1:8090",
                self.listen
            ));
        }
        if !(self.database_url.starts_with("sqlite:")
            || self.database_url.starts_with("postgres://")
            || self.database_url.starts_with("postgresql://"))
        {
            p.push("database_url: must start with sqlite: or postgres://".to_string());
        }
        if !(self.public_base_url.starts_with("http://")
            || self.public_base_url.starts_with("https://"))
        {
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
        match self.email.transport.as_str() {
            "file" => {}
            "smtp" => {
                if self.email.smtp_host.is_empty() {
                    p.push("email.smtp_host: required for the smtp transport".to_string());
                }
                if !["none", "starttls", "tls"].contains(&self.email.smtp_tls.as_str()) {
                    p.push(format!(
                        "email.smtp_tls: {:?} is not none, starttls or tls",
                        self.email.smtp_tls
                    ));
                }
                if self.email.smtp_username.is_some() != self.email.smtp_password.is_some() {
                    p.push("email: smtp_username and smtp_password go together".to_string());
                }
            }
            other => p.push(format!("email.transport: {other:?} is not file or smtp")),
        }
        if self.email.from.parse::<lettre::message::Mailbox>().is_err() {
            p.push(format!(
                "email.from: {:?} is not a mailbox",
                self.email.from
            ));
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

fn merge(base: &mut toml::Value, over: toml::Value) {
    match (base, over) {
        (toml::Value::Table(b), toml::Value::Table(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) if slot.is_table() && v.is_table() => merge(slot, v),
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
        cur = table
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(Default::default()));
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
        let c = Config::load(
            Some("listen = \"0.0.0.0:1\"\n[email]\nsmtp_port = 25\n"),
            |k| (k == "IMGCDN_SMTP_PORT").then(|| "2525".to_string()),
        )
        .unwrap();
        assert_eq!(c.listen, "0.0.0.0:1");
        assert_eq!(c.email.smtp_port, 2525);
        assert_eq!(c.email.transport, "file");
    }

    #[test]
    fn unknown_keys_and_bad_env_are_reported() {
        assert!(Config::load(Some("lisen = 1"), |_| None).is_err());
        let e =
            Config::load(None, |k| (k == "IMGCDN_SMTP_PORT").then(|| "many".into())).unwrap_err();
        assert!(e.0[0].contains("IMGCDN_SMTP_PORT"));
    }

    #[test]
    fn every_problem_at_once() {
        let mut c = Config {
            listen: "x".into(),
            database_url: "mysql://".into(),
            ..Config::default()
        };
        c.email.transport = "pigeon".into();
        c.sessions.max_days = 1;
        let errs = c.validate().unwrap_err().0;
        for needle in ["listen", "database_url", "email.transport", "sessions"] {
            assert!(
                errs.iter().any(|e| e.starts_with(needle)),
                "{needle}: {errs:?}"
            );
        }
    }
}
