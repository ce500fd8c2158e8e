//! Edge configuration: typed, `#[serde(default)]` so a file only says what
//! differs, and [`EdgeConfig::validate`] reports every bad value at once
//! before anything starts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use imgcdn_shared::storage::StoreConfig;
use serde::{Deserialize, Serialize};

const MIB: u64 = 1024 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EdgeConfig {
    /// Public listeners (HTTP/1.1, and h2c when `h2c` is on).
    pub listen: Vec<String>,
    /// Admin listener: `/metrics`, `/healthz`, `/readyz`. Keep it private.
    pub admin_listen: String,
    /// `text` or `json` (one object per line).
    pub log_format: imgcdn_shared::config::LogFormat,
    /// Allow HTTP/2 over cleartext (prior knowledge) on the public listeners.
    pub h2c: bool,
    /// Worker threads for the public service.
    pub threads: usize,
    /// `true`: one multi-threaded runtime whose idle threads take waiting
    /// work from busy ones. `false` (the default): each thread runs a
    /// runtime of its own and serves only the connections handed to it,
    /// which costs ~15–20% less CPU per request (measured: 2 KB hits 22 →
    /// 18 µs, memory hits 24 → 19 µs on one core); a connection waits
    /// behind its own thread's work even when another thread is idle.
    pub work_stealing: bool,
    /// Seconds to keep serving in-flight requests after SIGTERM.
    pub grace_period_secs: u64,
    /// Hard limit in seconds for the whole shutdown.
    pub shutdown_timeout_secs: u64,
    /// Seconds an idle client connection is kept open (HTTP/1.1 keep-alive,
    /// HTTP/2 idle).
    pub keepalive_secs: u64,
    /// Bounds against slow or abusive clients (connections, request heads,
    /// send buffers).
    pub limits: LimitsConfig,
    /// The public store (objects and manifests), read-only from here.
    pub store: StoreConfig,
    pub memory: MemoryConfig,
    pub disk: DiskConfig,
    pub origin: OriginConfig,
    pub http: HttpConfig,
    /// Resizing, cropping, converting and toning by URL query.
    pub transforms: TransformConfig,
    /// TLS listener (only with the `tls` cargo feature).
    pub tls: Option<TlsConfig>,
    /// Edge sync with the control plane (takedowns, hidden and restricted
    /// images). Leave out only for an edge nobody can take anything down
    /// from (tests, benchmarks).
    pub sync: Option<SyncConfig>,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyncConfig {
    /// Control-plane base URLs; the edge uses the first and moves to the
    /// next when one fails.
    pub control_planes: Vec<String>,
    /// This edge's token, as configured in the control plane's
    /// `edge_sync.edges` (or set `IMGCDN_EDGE_SYNC_TOKEN`).
    pub token: String,
    /// Where the applied state is kept across restarts.
    pub state_path: PathBuf,
    /// How long one long-poll may wait for a change (ms).
    pub wait_ms: u64,
    /// Pause after a failed call before trying again (ms).
    pub retry_ms: u64,
    /// Serve before any state was ever received (a takedown issued before
    /// the edge first synced would not be enforced until it syncs). Default:
    /// not ready, every image request is a 503, until a snapshot arrives.
    pub serve_without_state: bool,
    /// Restricted (warned) images: `serve` them with `X-Content-Warning:
    /// restricted`, or `block` them (403).
    pub restricted: Restricted,
    /// Sent as `Link: <policy_url>; rel="blocked-by"` with every 451.
    /// Default: the first control plane's `/legal/takedowns`.
    pub policy_url: Option<String>,
    /// Seconds after applying a `hide` before the edge may drop the entry
    /// (hidden ids have no manifest: without the entry they are 404 all the
    /// same). It is dropped only once the public store confirms the
    /// manifest is gone; until then it is kept and checked again after
    /// another period. 0 keeps hide entries for ever. Takedowns and warnings
    /// are always kept.
    pub hide_grace_secs: u64,
    /// The applied state is a snapshot file plus an append-only log of
    /// changes; the log is folded into a new snapshot once it is larger than
    /// this many bytes (or than the snapshot, whichever is larger).
    pub compact_log_bytes: u64,
}

/// What an edge does with restricted (warned) images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Restricted {
    /// Served, marked `X-Content-Warning: restricted`.
    Serve,
    /// Refused with 403.
    Block,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            control_planes: vec!["http://127.0.0.1:8090".into()],
            token: String::new(),
            state_path: PathBuf::from("./data/edge-sync.json"),
            wait_ms: 25_000,
            retry_ms: 1_000,
            serve_without_state: false,
            restricted: Restricted::Serve,
            policy_url: None,
            hide_grace_secs: 24 * 3600,
            compact_log_bytes: 4 * MIB,
        }
    }
}

impl SyncConfig {
    /// What every 451 links to: `policy_url`, else the takedown policy page
    /// of the first control plane.
    pub fn policy_link(&self) -> String {
        match (&self.policy_url, self.control_planes.first()) {
            (Some(url), _) => url.clone(),
            (None, Some(cp)) => format!("{}/legal/takedowns", cp.trim_end_matches('/')),
            (None, None) => String::new(),
        }
    }
}

impl std::fmt::Debug for SyncConfig {
    /// The token never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncConfig")
            .field("control_planes", &self.control_planes)
            .field("state_path", &self.state_path)
            .field("wait_ms", &self.wait_ms)
            .field("serve_without_state", &self.serve_without_state)
            .field("restricted", &self.restricted)
            .field("hide_grace_secs", &self.hide_grace_secs)
            .field("compact_log_bytes", &self.compact_log_bytes)
            .finish_non_exhaustive()
    }
}

/// Bounds that keep slow or abusive clients from exhausting the edge. What
/// exceeds one gets a clear, fast refusal: a `503` with `Retry-After`, or
/// the connection closed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Client connections open at once on the public listeners. One more is
    /// answered `503` with `Retry-After` and closed before anything is read.
    /// Lowered at start to what the process's open-files limit allows (each
    /// connection may also hold one open disk-tier file while it streams).
    pub max_connections: usize,
    /// A new connection must deliver a complete request head within this
    /// many seconds of being accepted; on a kept-alive connection, within
    /// this many seconds of the next request's first byte (which must come
    /// within `keepalive_secs` of the previous response). Otherwise it is
    /// closed. Covers the HTTP/2 preface too.
    pub header_timeout_secs: u64,
    /// A response write that makes no progress for this many seconds ends
    /// the connection (a client that stopped reading).
    pub send_timeout_secs: u64,
    /// Response body bytes held in memory for sending, over all responses:
    /// bodies read whole from disk or origin, and each chunk streamed from
    /// the disk tier (bodies shared with the memory tier are not counted).
    pub send_buffer_bytes: u64,
    /// How long a response may wait for `send_buffer_bytes` to have room
    /// before it is answered `503` with `Retry-After` (milliseconds).
    pub send_buffer_wait_ms: u64,
    /// `Retry-After` seconds sent with these 503s.
    pub retry_after_secs: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_connections: 4096,
            header_timeout_secs: 10,
            send_timeout_secs: 30,
            send_buffer_bytes: 64 * MIB,
            send_buffer_wait_ms: 1000,
            retry_after_secs: 1,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MemoryConfig {
    /// Budget of the in-memory tier, in bytes of image data.
    pub max_bytes: u64,
    /// Objects larger than this skip the memory tier (served from disk).
    pub max_object_bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiskConfig {
    /// Directory of the disk tier; created if missing. Survives restarts.
    pub path: PathBuf,
    /// Budget of the disk tier in bytes; least recently used entries go first.
    pub max_bytes: u64,
    /// Entries up to this many bytes are read on the thread serving the
    /// request; larger ones on a blocking thread. A read from the page
    /// cache takes microseconds, less than handing it to another thread;
    /// a read that has to wait for the device holds up that thread's other
    /// connections meanwhile. 0 sends every read to a blocking thread (for
    /// slow disks).
    pub inline_read_max_bytes: u64,
    /// Up to this many entries keep their file open (least recently used
    /// closed first), so that HTTP/1 responses without TLS are sent from
    /// the file with `sendfile` rather than copied out of memory, as nginx
    /// serves static files. Lowered at start to fit the open-files limit.
    /// 0 turns sending from files off.
    pub open_files: usize,
    /// Objects smaller than this are copied from memory even where they
    /// could be sent from a file: for a small body one write costs less
    /// than a write for the head plus a `sendfile`. (A range of a larger
    /// object is sent from its file whatever its length.)
    pub sendfile_min_bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OriginConfig {
    /// Milliseconds one origin read (manifest + object) may take before the
    /// client gets a 504.
    pub timeout_ms: u64,
    /// At most this many origin reads run at once; the rest wait (inside
    /// their timeout).
    pub max_concurrent: usize,
    /// Seconds a "no such image" answer from storage is remembered, so that
    /// a flood of requests for absent ids does not become a flood of reads.
    /// 0 turns it off.
    pub negative_ttl_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// `Cache-Control: max-age` for images without expiry (capped by an
    /// image's `expires_at` when it has one).
    pub max_age_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransformConfig {
    /// Off: query strings are ignored and originals served.
    pub enabled: bool,
    /// Transforms running at once (each on its own blocking thread).
    pub workers: usize,
    /// Transforms that may wait for a worker; past that a request gets a
    /// 503 with `Retry-After` instead of a place in an unbounded queue.
    pub queue: usize,
    /// Largest original transformed (width x height its header declares).
    pub max_input_pixels: u64,
    /// Largest output (width x height).
    pub max_output_pixels: u64,
    /// Largest `w` or `h` (larger values are clamped).
    pub max_dimension: u32,
    /// When not empty, the only `w`/`h` values made: others are rounded up
    /// to the next listed one (down to the largest).
    pub allowed_dimensions: Vec<u32>,
    /// Distinct variants made per image until it is purged; past it the
    /// original is served for new variants (a crawler cannot fill the cache
    /// or burn CPU with unique sizes).
    pub max_variants_per_image: usize,
    /// Memory budget of the variant cache in bytes.
    pub memory_bytes: u64,
    /// Milliseconds a request waits for its variant before a 504.
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub listen: String,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        EdgeConfig {
            listen: vec!["127.0.0.1:8080".into()],
            admin_listen: "127.0.0.1:9080".into(),
            log_format: Default::default(),
            h2c: true,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            work_stealing: false,
            grace_period_secs: 5,
            shutdown_timeout_secs: 10,
            keepalive_secs: 60,
            limits: LimitsConfig::default(),
            store: StoreConfig::fs("./data/store"),
            memory: MemoryConfig::default(),
            disk: DiskConfig::default(),
            origin: OriginConfig::default(),
            http: HttpConfig::default(),
            transforms: TransformConfig::default(),
            tls: None,
            sync: None,
        }
    }
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig { max_bytes: 256 * MIB, max_object_bytes: 8 * MIB }
    }
}

impl Default for DiskConfig {
    fn default() -> Self {
        DiskConfig {
            path: PathBuf::from("./data/edge-cache"),
            max_bytes: 10 * 1024 * MIB,
            inline_read_max_bytes: 256 * 1024,
            open_files: 4096,
            sendfile_min_bytes: 16 * 1024,
        }
    }
}

impl Default for OriginConfig {
    fn default() -> Self {
        OriginConfig { timeout_ms: 10_000, max_concurrent: 64, negative_ttl_secs: 5 }
    }
}

impl Default for TransformConfig {
    fn default() -> Self {
        TransformConfig {
            enabled: true,
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            queue: 64,
            max_input_pixels: 100_000_000,
            max_output_pixels: 25_000_000,
            max_dimension: 4096,
            allowed_dimensions: Vec::new(),
            max_variants_per_image: 32,
            memory_bytes: 256 * MIB,
            timeout_ms: 15_000,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig { max_age_secs: 365 * 24 * 3600 }
    }
}

/// Every problem found in a configuration, one line each.
#[derive(Debug, thiserror::Error)]
#[error("invalid edge configuration:\n  {}", .0.join("\n  "))]
pub struct ConfigErrors(pub Vec<String>);

impl EdgeConfig {
    /// Read a TOML file, reporting every key it cannot read (each with its
    /// file, line and path), then every invalid value, in one go.
    pub fn from_file(path: &Path) -> Result<EdgeConfig, ConfigErrors> {
        let at = path.display();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors(vec![format!("{at}: {e}")]))?;
        let value: toml::Value = toml::from_str(&text).map_err(|e| {
            let line = e.span().map_or(1, |s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            ConfigErrors(vec![format!("{at}: line {line}: {}", e.message())])
        })?;
        let (cfg, wrong) = imgcdn_shared::config::read_reporting_all::<EdgeConfig>(value);
        if wrong.is_empty() {
            return Ok(cfg);
        }
        let mut problems: Vec<String> = wrong.iter().map(|p| format!("{at}: {}", p.describe(Some(&text)))).collect();
        if let Err(more) = cfg.validate() {
            problems.extend(more.0);
        }
        Err(ConfigErrors(problems))
    }

    /// Check every value; report all problems together.
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let mut p = Vec::new();
        if self.listen.is_empty() && self.tls.is_none() {
            p.push("listen: at least one public listener is needed".to_string());
        }
        for (i, a) in self.listen.iter().enumerate() {
            if a.parse::<SocketAddr>().is_err() {
                p.push(format!("listen[{i}]: {a:?} is not an address like 0.0.0.0:8080"));
            }
        }
        if self.admin_listen.parse::<SocketAddr>().is_err() {
            p.push(format!("admin_listen: {:?} is not an address like 127.0.0.1:9080", self.admin_listen));
        }
        if self.listen.contains(&self.admin_listen) {
            p.push("admin_listen: must differ from the public listeners".to_string());
        }
        if self.threads == 0 || self.threads > 1024 {
            p.push(format!("threads: {} is out of range 1..=1024", self.threads));
        }
        if self.shutdown_timeout_secs < self.grace_period_secs {
            p.push("shutdown_timeout_secs: must be at least grace_period_secs".to_string());
        }
        p.extend(self.store.problems("store"));
        let l = &self.limits;
        if l.max_connections == 0 {
            p.push("limits.max_connections: must be above 0".to_string());
        }
        if l.header_timeout_secs == 0 || l.send_timeout_secs == 0 {
            p.push("limits: header_timeout_secs and send_timeout_secs must be above 0".to_string());
        }
        if l.send_buffer_bytes < 64 * 1024 {
            p.push("limits.send_buffer_bytes: at least 65536 (one disk-tier chunk)".to_string());
        }
        if self.keepalive_secs == 0 {
            p.push("keepalive_secs: must be above 0".to_string());
        }
        if self.memory.max_object_bytes > self.memory.max_bytes {
            p.push("memory.max_object_bytes: larger than memory.max_bytes".to_string());
        }
        if self.memory.max_object_bytes > u64::from(u32::MAX) {
            p.push("memory.max_object_bytes: at most 4 GiB".to_string());
        }
        if self.disk.path.as_os_str().is_empty() {
            p.push("disk.path: required".to_string());
        }
        if self.origin.timeout_ms == 0 {
            p.push("origin.timeout_ms: must be above 0".to_string());
        }
        if self.origin.max_concurrent == 0 {
            p.push("origin.max_concurrent: must be above 0".to_string());
        }
        let t = &self.transforms;
        if t.enabled && (t.workers == 0 || t.max_variants_per_image == 0 || t.max_dimension == 0 || t.timeout_ms == 0) {
            p.push(
                "transforms: workers, max_variants_per_image, max_dimension and timeout_ms must be above 0".to_string(),
            );
        }
        if t.allowed_dimensions.iter().any(|&d| d == 0 || d > t.max_dimension) {
            p.push("transforms.allowed_dimensions: each between 1 and max_dimension".to_string());
        }
        if let Some(s) = &self.sync {
            if s.control_planes.is_empty() {
                p.push("sync.control_planes: at least one control-plane URL".to_string());
            }
            let is_http = |u: &str| u.starts_with("http://") || u.starts_with("https://");
            for (i, u) in s.control_planes.iter().enumerate() {
                if !is_http(u) {
                    p.push(format!("sync.control_planes[{i}]: {u:?} is not an http(s) URL"));
                }
            }
            if s.token.len() < 32 {
                p.push("sync.token: required, at least 32 characters (or set IMGCDN_EDGE_SYNC_TOKEN)".to_string());
            }
            if s.state_path.as_os_str().is_empty() {
                p.push("sync.state_path: required".to_string());
            }
            if s.wait_ms == 0 || s.retry_ms == 0 {
                p.push("sync: wait_ms and retry_ms must be above 0".to_string());
            }
            if !is_http(&s.policy_link()) {
                p.push("sync.policy_url: must be an http(s) URL".to_string());
            }
        }
        if let Some(tls) = &self.tls {
            if !cfg!(feature = "tls") {
                p.push("tls: this build has no TLS support (rebuild with --features tls)".to_string());
            }
            if tls.listen.parse::<SocketAddr>().is_err() {
                p.push(format!("tls.listen: {:?} is not an address", tls.listen));
            }
        }
        if p.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(p))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use imgcdn_shared::storage::StoreScheme;

    #[test]
    fn defaults_are_valid() {
        EdgeConfig::default().validate().unwrap();
    }

    #[test]
    fn partial_file_keeps_defaults() {
        let c: EdgeConfig =
            toml::from_str("listen = [\"0.0.0.0:80\"]\n[memory]\nmax_bytes = 1000\nmax_object_bytes = 10\n").unwrap();
        assert_eq!(c.listen, vec!["0.0.0.0:80"]);
        assert_eq!(c.memory.max_bytes, 1000);
        assert_eq!(c.disk.max_bytes, DiskConfig::default().max_bytes);
        c.validate().unwrap();
    }

    #[test]
    fn sync_settings_are_checked() {
        let mut c = EdgeConfig { sync: Some(SyncConfig::default()), ..EdgeConfig::default() };
        let errs = c.validate().unwrap_err().0;
        assert!(errs.iter().any(|e| e.starts_with("sync.token")), "{errs:?}");
        let s = c.sync.as_mut().unwrap();
        s.token = "t".repeat(32);
        c.validate().unwrap();
        let s = c.sync.as_mut().unwrap();
        s.control_planes = vec!["ftp://x".into()];
        let errs = c.validate().unwrap_err().0;
        assert!(errs.iter().any(|e| e.starts_with("sync.control_planes[0]")), "{errs:?}");
        let e = toml::from_str::<EdgeConfig>("[sync]\nrestricted = \"blur\"\n").unwrap_err().to_string();
        assert!(e.contains("blur") && e.contains("serve") && e.contains("block"), "{e}");
        assert!(!format!("{c:?}").contains(&"t".repeat(32)), "the token is not in Debug output");
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<EdgeConfig>("lisen = []").is_err());
    }

    #[test]
    fn reports_every_problem_at_once() {
        let c = EdgeConfig {
            listen: vec!["nowhere".into()],
            admin_listen: "x".into(),
            threads: 0,
            store: StoreConfig { scheme: StoreScheme::S3, options: Default::default() },
            origin: OriginConfig { timeout_ms: 0, max_concurrent: 0, negative_ttl_secs: 1 },
            ..EdgeConfig::default()
        };
        let errs = c.validate().unwrap_err().0;
        for needle in
            ["listen[0]", "admin_listen", "threads", "store.bucket", "origin.timeout_ms", "origin.max_concurrent"]
        {
            assert!(errs.iter().any(|e| e.starts_with(needle)), "{needle} missing from {errs:?}");
        }
    }
}
