//! Test harness: real `imgcdn` processes on free loopback ports, an fs
//! store written the way the control plane writes it, and helpers to read
//! metrics.
#![allow(dead_code)]

use std::fs;
use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use imgcdn_shared::storage::{manifest_key, object_key};
use imgcdn_shared::{Format, ImageId, ImagePath};

pub const BIN: &str = env!("CARGO_BIN_EXE_imgcdn");

/// A free port on 127.0.0.1 for a process to bind.
///
/// Taken below the kernel's ephemeral range (32768–60999 on Linux), so the
/// test's own outgoing connections cannot grab it between this check and
/// the process binding it, and never handed out twice by one test binary.
/// Test binaries running side by side start at different points of the
/// range (by process id). What remains (another program binding the same
/// port at the same moment) the edge harness handles by starting again on
/// new ports.
pub fn free_addr() -> SocketAddr {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(u32::MAX, (std::process::id() * 97) % SPAN, Ordering::SeqCst, Ordering::SeqCst);
    for _ in 0..SPAN {
        let port = FIRST + NEXT.fetch_add(1, Ordering::SeqCst) % SPAN;
        let addr = SocketAddr::from(([127, 0, 0, 1], port as u16));
        if TcpListener::bind(addr).is_ok() {
            return addr;
        }
    }
    panic!("no free port in {FIRST}..{}", FIRST + SPAN);
}

#[allow(unused_imports)]
pub use imgcdn_shared::testing::png;

/// An fs store laid out as the control plane writes it.
pub struct Store {
    pub root: PathBuf,
}

impl Store {
    pub fn new(root: PathBuf) -> Store {
        fs::create_dir_all(root.join("objects")).unwrap();
        fs::create_dir_all(root.join("manifests")).unwrap();
        Store { root }
    }

    /// Publish `bytes` as a PNG: object first, manifest last.
    pub fn publish(&self, bytes: &[u8], expires_at: Option<time::OffsetDateTime>) -> ImagePath {
        let id = ImageId::generate();
        self.publish_as(id, bytes, expires_at);
        ImagePath::new(id, Format::Png)
    }

    pub fn publish_as(&self, id: ImageId, bytes: &[u8], expires_at: Option<time::OffsetDateTime>) {
        self.publish_manifest(id, bytes, imgcdn_shared::testing::png_manifest(bytes, expires_at));
    }

    /// Publish `bytes` under `id` with `manifest` (object first, manifest last).
    pub fn publish_manifest(&self, id: ImageId, bytes: &[u8], manifest: imgcdn_shared::Manifest) {
        fs::write(self.root.join(object_key(&id)), bytes).unwrap();
        fs::write(self.root.join(manifest_key(&id)), manifest.to_json()).unwrap();
    }

    pub fn object_path(&self, id: &ImageId) -> PathBuf {
        self.root.join(object_key(id))
    }
}

/// Settings for one edge process.
#[derive(Clone)]
pub struct EdgeOpts {
    pub store_toml: String,
    pub disk: PathBuf,
    pub memory_max_object_bytes: u64,
    pub origin_timeout_ms: u64,
    pub negative_ttl_secs: u64,
    pub rust_log: String,
    /// The body of a `[sync]` section (edge sync), if any.
    pub sync_toml: Option<String>,
    /// The body of a `[limits]` section, if any.
    pub limits_toml: Option<String>,
    /// The body of a `[transforms]` section, if any.
    pub transforms_toml: Option<String>,
    /// `disk.open_files` (files kept open to send from), if not the default.
    pub disk_open_files: Option<usize>,
    /// `work_stealing`, if not the default.
    pub work_stealing: Option<bool>,
    /// `keepalive_secs`, if not the default.
    pub keepalive_secs: Option<u64>,
    pub grace_period_secs: u64,
    pub shutdown_timeout_secs: u64,
    /// Environment of the process (e.g. store credentials).
    pub env: Vec<(String, String)>,
}

impl EdgeOpts {
    pub fn new(dir: &Path) -> EdgeOpts {
        EdgeOpts {
            store_toml: format!("scheme = \"fs\"\nroot = {:?}\n", dir.join("store").display().to_string()),
            disk: dir.join("edge-cache"),
            memory_max_object_bytes: 8 << 20,
            origin_timeout_ms: 5000,
            negative_ttl_secs: 0,
            rust_log: "info".into(),
            sync_toml: None,
            limits_toml: None,
            transforms_toml: None,
            disk_open_files: None,
            work_stealing: None,
            keepalive_secs: None,
            grace_period_secs: 1,
            shutdown_timeout_secs: 2,
            env: Vec::new(),
        }
    }

    /// Sync with the control planes at `apis` using `token`, keeping the
    /// state in `state`; long-polls of 5 s and quick retries for tests.
    pub fn with_sync(mut self, apis: &[&str], token: &str, state: &Path) -> EdgeOpts {
        self.sync_toml = Some(format!(
            "control_planes = {apis:?}\ntoken = {token:?}\nstate_path = {state:?}\nwait_ms = 5000\nretry_ms = 200\n\
             policy_url = \"{first}/legal/takedowns\"\n",
            state = state.display().to_string(),
            first = apis[0],
        ));
        self
    }
}

/// A running `imgcdn edge`, killed on drop.
pub struct EdgeProcess {
    child: Child,
    pub base: String,
    pub admin: String,
    pub log_path: PathBuf,
    pub config_path: PathBuf,
}

impl EdgeProcess {
    /// Start an edge and wait until `/readyz` answers 200.
    pub fn start(dir: &Path, opts: &EdgeOpts) -> EdgeProcess {
        let mut edge = EdgeProcess::spawn(dir, opts);
        for _ in 0..3 {
            if !edge.lost_its_port() {
                break;
            }
            edge = EdgeProcess::spawn(dir, opts);
        }
        edge.wait_ready();
        edge
    }

    /// Whether the process exited at start because its port was taken in
    /// the moment between [`free_addr`] and its bind.
    fn lost_its_port(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return self.log().contains("in use");
            }
            if ureq_get(&format!("{}/healthz", self.admin)).is_ok_and(|r| r.0 == 200) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    fn spawn(dir: &Path, opts: &EdgeOpts) -> EdgeProcess {
        let (public, admin) = (free_addr(), free_addr());
        let config = format!(
            "listen = [\"{public}\"]\nadmin_listen = \"{admin}\"\nthreads = 2\n{steal}{keepalive}grace_period_secs = {grace}\nshutdown_timeout_secs = {stop}\n\
             [store]\n{store}\n[memory]\nmax_bytes = 67108864\nmax_object_bytes = {maxobj}\n\
             [disk]\npath = {disk:?}\nmax_bytes = 268435456\n{open_files}\
             [origin]\ntimeout_ms = {timeout}\nmax_concurrent = 16\nnegative_ttl_secs = {neg}\n",
            store = opts.store_toml,
            maxobj = opts.memory_max_object_bytes,
            disk = opts.disk.display().to_string(),
            timeout = opts.origin_timeout_ms,
            neg = opts.negative_ttl_secs,
            grace = opts.grace_period_secs,
            stop = opts.shutdown_timeout_secs,
            open_files = opts.disk_open_files.map_or(String::new(), |n| format!("open_files = {n}\n")),
            steal = opts.work_stealing.map_or(String::new(), |w| format!("work_stealing = {w}\n")),
            keepalive = opts.keepalive_secs.map_or(String::new(), |k| format!("keepalive_secs = {k}\n")),
        );
        let config = match &opts.sync_toml {
            Some(sync) => format!("{config}[sync]\n{sync}"),
            None => config,
        };
        let config = match &opts.limits_toml {
            Some(limits) => format!("{config}[limits]\n{limits}"),
            None => config,
        };
        let config = match &opts.transforms_toml {
            Some(t) => format!("{config}[transforms]\n{t}"),
            None => config,
        };
        let n = fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
        let config_path = dir.join(format!("edge-{n}.toml"));
        fs::write(&config_path, config).unwrap();
        let log_path = dir.join(format!("edge-{n}.log"));
        let log = fs::File::create(&log_path).unwrap();
        let child = Command::new(BIN)
            .args(["edge", "--config"])
            .arg(&config_path)
            .env("RUST_LOG", &opts.rust_log)
            .envs(opts.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn imgcdn edge");
        EdgeProcess { child, base: format!("http://{public}"), admin: format!("http://{admin}"), log_path, config_path }
    }

    /// Start an edge expected not to become ready (it waits for sync state,
    /// or for a store that does not answer): returns once it answers
    /// `/healthz` and its public listener accepts.
    pub fn start_unready(dir: &Path, opts: &EdgeOpts) -> EdgeProcess {
        let edge = EdgeProcess::spawn(dir, opts);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !ureq_get(&format!("{}/healthz", edge.admin)).is_ok_and(|r| r.0 == 200) {
            assert!(Instant::now() < deadline, "edge never answered /healthz: {}", edge.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        // Its public listener accepts (readiness may wait on other things).
        let public = edge.base.trim_start_matches("http://").to_string();
        while std::net::TcpStream::connect(&public).is_err() {
            assert!(Instant::now() < deadline, "edge never listened on {public}: {}", edge.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        edge
    }

    /// Whether `/readyz` says ready.
    pub fn is_ready(&self) -> bool {
        ureq_get(&format!("{}/readyz", self.admin)).is_ok_and(|r| r.0 == 200)
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(r) = ureq_get(&format!("{}/readyz", self.admin)) {
                if r.0 == 200 {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("edge not ready; log:\n{}", fs::read_to_string(&self.log_path).unwrap_or_default());
    }

    pub fn url(&self, path: &ImagePath) -> String {
        format!("{}{}", self.base, path)
    }

    /// Scrape `/metrics`.
    pub fn metrics(&self) -> String {
        ureq_get(&format!("{}/metrics", self.admin)).expect("metrics").1
    }

    /// The value of a metric line that starts with `series` (0 if absent).
    pub fn metric(&self, series: &str) -> f64 {
        metric_value(&self.metrics(), series)
    }

    /// The process id (for /proc readings).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident set size now (VmRSS), in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// Send SIGTERM without waiting.
    pub fn terminate(&self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
    }

    /// Wait up to `within` for the process to exit.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then wait for exit.
    pub fn stop(mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "edge did not exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for EdgeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(name, _)| *name == series)
        .map(|(_, v)| v.parse::<f64>().unwrap())
        .sum()
}

/// Minimal blocking GET over a raw socket (used before tokio is needed and
/// for the admin port): returns (status, body).
pub fn ureq_get(url: &str) -> std::io::Result<(u16, String)> {
    use std::io::Write;
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}"))).unwrap_or((rest, "/".into()));
    let mut s = std::net::TcpStream::connect(host)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    let status = buf.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
}

/// A reqwest client that is not a proxy user and keeps no cookies.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Decode a quoted-printable mail body (soft line breaks and `=XX` escapes),
/// as a mail client would before showing it.
pub fn decode_quoted_printable(text: &str) -> String {
    let joined = text.replace("=\r\n", "").replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&joined[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A running `imgcdn control-plane`, killed on drop.
pub struct ControlPlaneProcess {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// The admin listener: `/metrics`, `/healthz`, `/readyz`.
    pub admin: String,
    pub config_path: PathBuf,
}

/// Settings for one control-plane process. Stores live under `dir`.
pub struct CpOpts {
    pub edge_base: String,
    /// `sqlite://…` (default: `dir/cp.db`) or `postgres://…`.
    pub database_url: Option<String>,
    /// Extra TOML appended to the config (e.g. an `[edge_sync]` section).
    pub extra_toml: String,
    /// The `[stores.*]` sections instead of fs stores under `dir`.
    pub stores_toml: Option<String>,
    /// Environment of the process (e.g. store credentials).
    pub env: Vec<(String, String)>,
}

impl CpOpts {
    pub fn new(edge_base: &str) -> CpOpts {
        CpOpts {
            edge_base: edge_base.to_string(),
            database_url: None,
            extra_toml: String::new(),
            stores_toml: None,
            env: Vec::new(),
        }
    }
}

impl ControlPlaneProcess {
    /// Start `imgcdn control-plane` on a free port, publishing into
    /// `dir/store`; returns once it is listening.
    pub fn start(dir: &Path, opts: &CpOpts) -> ControlPlaneProcess {
        let (config_path, mut command) = ControlPlaneProcess::command(dir, opts);
        let mut child = command.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
        let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
        let (mut base, mut admin) = (None, None);
        while base.is_none() || admin.is_none() {
            let line = lines.next().expect("control plane exited").unwrap();
            if let Some(url) = line.trim().strip_prefix("control plane: ") {
                base = Some(url.to_string());
            } else if let Some(url) = line.trim().strip_prefix("control plane admin (metrics, readiness): ") {
                admin = Some(url.to_string());
            }
        }
        std::thread::spawn(move || for _ in lines {});
        ControlPlaneProcess { child, base: base.unwrap(), admin: admin.unwrap(), config_path }
    }

    /// The config file written for `opts` and the command that runs it.
    pub fn command(dir: &Path, opts: &CpOpts) -> (PathBuf, Command) {
        let root = |p: &str| dir.join(p).display().to_string();
        let db = opts.database_url.clone().unwrap_or_else(|| format!("sqlite://{}", root("cp.db")));
        let n = fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
        let config_path = dir.join(format!("cp-{n}.toml"));
        fs::write(
            &config_path,
            format!(
                "listen = \"{listen}\"\nadmin_listen = \"127.0.0.1:0\"\ndatabase_url = {db:?}\ncookie_secure = false\nedge_base_url = {edge:?}\n\
                 [email]\noutbox_dir = {outbox:?}\n[passwords]\nargon2_memory_kib = 1024\nargon2_iterations = 1\n\
                 {stores}\n{extra}",
                listen = "127.0.0.1:0",
                edge = opts.edge_base,
                outbox = root("outbox"),
                stores = opts.stores_toml.clone().unwrap_or_else(|| format!(
                    "[stores.public]\nscheme = \"fs\"\nroot = {store:?}\n[stores.recovery]\nscheme = \"fs\"\nroot = {recovery:?}\n\
                     [stores.staging]\nscheme = \"fs\"\nroot = {staging:?}\n",
                    store = root("store"),
                    recovery = root("recovery"),
                    staging = root("staging"),
                )),
                extra = opts.extra_toml,
            ),
        )
        .unwrap();
        let mut command = Command::new(BIN);
        command.args(["control-plane", "--config"]).arg(&config_path).envs(opts.env.iter().map(|(k, v)| (k, v)));
        (config_path, command)
    }

    /// `imgcdn admin operator create NAME` against this control plane's
    /// database; returns the printed token.
    pub fn create_operator(&self, name: &str) -> String {
        let mut cmd = Command::new(BIN);
        cmd.args(["admin", "--config"]).arg(&self.config_path).args(["operator", "create", name]);
        created_operator_token(cmd)
    }
}

impl Drop for ControlPlaneProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Poll `check` every 20 ms until it holds or `within` passes.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A fresh PostgreSQL database on the local server, dropped on drop.
pub struct PgDatabase {
    name: String,
    pub url: String,
}

fn psql(sql: &str) -> std::io::Result<std::process::Output> {
    Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-v", "ON_ERROR_STOP=1", "-qc", sql])
        .output()
}

impl PgDatabase {
    /// `None` (with a visible message) when no server answers; in CI that is an error.
    pub fn create(name: &str) -> Option<PgDatabase> {
        let name = format!("{name}_{}", std::process::id());
        // Two commands: DROP/CREATE DATABASE cannot share a transaction.
        let _ = psql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        match psql(&format!("CREATE DATABASE {name}")) {
            Ok(o) if o.status.success() => {}
            other => {
                if std::env::var_os("CI").is_some() {
                    panic!("PostgreSQL is required in CI: {other:?}");
                }
                eprintln!("SKIPPED: PostgreSQL end-to-end test needs psql and a server at 127.0.0.1:5432 ({other:?})");
                return None;
            }
        }
        Some(PgDatabase { url: format!("postgres://postgres@127.0.0.1:5432/{name}"), name })
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let _ = psql(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
    }
}

/// One HTTP/1.1 response read off a raw connection.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Read one response from `r` (a `Content-Length` body, or none for a HEAD
/// answer when `head` is set). `None` when the connection ends first.
pub fn read_raw_response(r: &mut impl std::io::BufRead, head: bool) -> Option<RawResponse> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let status = line.get(9..12)?.parse().ok()?;
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let len: usize = match headers.iter().find(|(k, _)| k == "content-length") {
        Some((_, v)) if !head => v.parse().ok()?,
        _ => 0,
    };
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).ok()?;
    Some(RawResponse { status, headers, body })
}

/// The token of a `{path}?token=…` link mailed to `to` in a file
/// outbox (waits for the mail).
pub fn mailed_token(outbox: &Path, to: &str, path: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        for f in std::fs::read_dir(outbox).into_iter().flatten().flatten() {
            let raw = std::fs::read_to_string(f.path()).unwrap_or_default();
            // Decode only what says it is quoted-printable: a plain body's "=AB" is text.
            let text = if raw.to_ascii_lowercase().contains("content-transfer-encoding: quoted-printable") {
                decode_quoted_printable(&raw)
            } else {
                raw
            };
            if text.contains(&format!("To: {to}\r\n")) {
                if let Some(i) = text.find(&format!("{path}?token=")) {
                    let rest = &text[i + path.len() + 7..];
                    return rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').collect();
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no mail to {to} with a {path} link in {}", outbox.display());
}

/// A multipart upload with `file` as its `file` field: (content type, body).
pub fn multipart(file: &[u8]) -> (String, Vec<u8>) {
    let boundary = "imgcdn-test-boundary";
    let mut body =
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"photo.png\"\r\n\r\n")
            .into_bytes();
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// `POST {api}/v1/images` of `file` as a multipart upload, with `key` if
/// given (anonymous otherwise).
pub async fn post_image(c: &reqwest::Client, api: &str, key: Option<&str>, file: &[u8]) -> reqwest::Response {
    let (content_type, body) = multipart(file);
    let mut req = c.post(format!("{api}/v1/images")).header("content-type", content_type).body(body);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    req.send().await.unwrap()
}

/// The path (`/{storage}/{id}.{ext}`) of an Image object's CDN `url`.
pub fn cdn_path(image: &serde_json::Value) -> String {
    let url = image["url"].as_str().unwrap_or_else(|| panic!("no url in {image}"));
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    after_scheme[after_scheme.find('/').expect("a path")..].to_string()
}

/// A signed-in account: its session cookie (`name=value`), CSRF token and
/// personal team.
pub struct SignedIn {
    pub cookie: String,
    pub csrf: String,
    pub team: String,
}

/// Log in through the API (must succeed): the session cookie, the CSRF
/// token and the login answer.
pub async fn log_in(
    c: &reqwest::Client,
    base: &str,
    email: &str,
    password: &str,
) -> (String, String, serde_json::Value) {
    use serde_json::{json, Value};
    let r = c
        .post(format!("{base}/v1/auth/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "login of {email}");
    let cookie = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let body: Value = r.json().await.unwrap();
    let csrf = body["csrf_token"].as_str().unwrap().to_string();
    (cookie, csrf, body)
}

/// Sign up through the API, verify with the token mailed to `outbox`, and
/// sign in.
pub async fn sign_up_verified(c: &reqwest::Client, base: &str, outbox: &Path, email: &str, password: &str) -> SignedIn {
    use serde_json::{json, Value};
    let r = c
        .post(format!("{base}/v1/auth/signup"))
        .json(&json!({"email": email, "name": "Tester", "password": password, "age_confirmed": true}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let token = mailed_token(outbox, email, "/verify-email");
    let r = c.post(format!("{base}/v1/auth/verify")).json(&json!({"token": token})).send().await.unwrap();
    assert!(r.status().is_success());
    let (cookie, csrf, _) = log_in(c, base, email, password).await;
    let me: Value =
        c.get(format!("{base}/v1/me")).header("cookie", &cookie).send().await.unwrap().json().await.unwrap();
    let team = me["personal_team_id"].as_str().unwrap().to_string();
    SignedIn { cookie, csrf, team }
}
/// A running `imgcdn dev`, killed on drop.
pub struct Dev {
    child: Child,
    /// Its `--data-dir` (database, stores, mail outbox).
    pub data: PathBuf,
    /// The control plane (`http://…`).
    pub api: String,
    /// The edge (`http://…`).
    pub edge: String,
}

impl Dev {
    /// Start `imgcdn dev` under `dir` with `config` as its control-plane
    /// config; returns once its edge is ready (it has the edge-sync
    /// snapshot) and its control plane answers.
    pub async fn start(dir: &Path, config: &str) -> Dev {
        let data = dir.join("data");
        let config_path = dir.join("control-plane.toml");
        std::fs::write(&config_path, config).unwrap();
        let (public, admin, api) = (free_addr(), free_addr(), free_addr());
        let child = Command::new(BIN)
            .args(["dev", "--listen", &public.to_string(), "--admin-listen", &admin.to_string()])
            .args(["--api-listen", &api.to_string(), "--api-admin-listen", "127.0.0.1:0", "--config"])
            .arg(&config_path)
            .arg("--data-dir")
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let dev = Dev { child, data, api: format!("http://{api}"), edge: format!("http://{public}") };
        eventually(Duration::from_secs(30), "imgcdn dev ready", || async {
            ureq_get(&format!("http://{admin}/readyz")).is_ok_and(|r| r.0 == 200)
                && ureq_get(&format!("http://{api}/healthz")).is_ok_and(|r| r.0 == 200)
        })
        .await;
        dev
    }

    /// An operator token, made the way an operator makes one.
    pub fn operator(&self) -> String {
        let mut cmd = Command::new(BIN);
        cmd.args(["admin", "operator", "create", "ops"])
            .env("IMGCDN_DATABASE_URL", format!("sqlite://{}", self.data.join("imgcdn.db").display()));
        created_operator_token(cmd)
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run an `imgcdn admin … operator create …` command: the token it prints once.
fn created_operator_token(mut cmd: Command) -> String {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines().find(|l| l.starts_with("img_op_")).expect("a token line").to_string()
}
