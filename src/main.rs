//! `imgcdn`: one binary for every role.
//!
//! - `imgcdn dev`: everything on this machine with embedded defaults.
//! - `imgcdn edge --config FILE`: an edge proxy.
//! - `imgcdn control-plane --config FILE`: the control plane.
//! - `imgcdn put FILE`: publish an image into a local fs store by hand.
//! - `imgcdn admin operator create NAME`: the first operator (and others).
#![forbid(unsafe_code)]

mod admin;
mod logging;
mod put;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use imgcdn_control_plane::{Config as CpConfig, ControlPlane};
use imgcdn_edge::{Edge, EdgeConfig};
use imgcdn_shared::config::LogFormat;
use imgcdn_shared::storage::StoreConfig;
use pingora_core::server::UnixShutdownSignalWatch;

#[derive(Parser)]
#[command(name = "imgcdn", version, about = "Image hosting and CDN")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// How log lines are written to stderr: `text`, or `json` (one object
    /// per line) for a log collector. Overrides `log_format` in the config.
    #[arg(long, global = true, env = "IMGCDN_LOG_FORMAT", value_parser = ["text", "json"])]
    log_format: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run everything locally with embedded defaults under --data-dir.
    Dev {
        /// Where the database, the store, the edge's disk cache and the mail outbox live.
        #[arg(long, default_value = "./data", env = "IMGCDN_DATA_DIR")]
        data_dir: PathBuf,
        #[command(flatten)]
        listen: ListenArgs,
        /// Control-plane listen address.
        #[arg(long, default_value = "127.0.0.1:8090")]
        api_listen: String,
        /// Control-plane admin listener (`/metrics`, `/readyz`).
        #[arg(long, default_value = "127.0.0.1:8091")]
        api_admin_listen: String,
        /// A control-plane TOML config for what dev does not set itself
        /// (plans, retention, moderation, uploads, …; see config/control-plane.toml).
        /// Its listeners, database, stores and mail are dev's.
        #[arg(long, env = "IMGCDN_CONTROL_PLANE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Run an edge proxy.
    Edge {
        /// TOML config (see config/edge.toml); defaults apply to what it leaves out.
        #[arg(long, env = "IMGCDN_EDGE_CONFIG")]
        config: Option<PathBuf>,
        #[command(flatten)]
        listen: ListenArgs,
        /// Validate the configuration, print it, and exit.
        #[arg(long)]
        check: bool,
    },
    /// Run the control plane.
    ControlPlane {
        /// TOML config (see config/control-plane.toml); IMGCDN_* environment
        /// variables override it (e.g. IMGCDN_DATABASE_URL, IMGCDN_SMTP_PASSWORD).
        #[arg(long, env = "IMGCDN_CONTROL_PLANE_CONFIG")]
        config: Option<PathBuf>,
        /// Listen address; overrides the config.
        #[arg(long)]
        listen: Option<String>,
        /// Validate the configuration and exit.
        #[arg(long)]
        check: bool,
    },
    /// Publish an image file into the local fs store (for `imgcdn dev`).
    Put(put::PutArgs),
    /// Administer a control plane's database directly (e.g. create the first operator).
    Admin {
        /// The control plane's TOML config (for database_url); IMGCDN_* variables apply.
        #[arg(long, env = "IMGCDN_CONTROL_PLANE_CONFIG")]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: admin::AdminCommand,
    },
}

#[derive(Args)]
struct ListenArgs {
    /// Public listen address (repeat for several); overrides the config.
    #[arg(long, env = "IMGCDN_EDGE_LISTEN", value_delimiter = ',')]
    listen: Vec<String>,
    /// Admin listen address (/metrics, /healthz, /readyz); overrides the config.
    #[arg(long, env = "IMGCDN_EDGE_ADMIN_LISTEN")]
    admin_listen: Option<String>,
}

impl ListenArgs {
    fn apply(self, cfg: &mut EdgeConfig) {
        if !self.listen.is_empty() {
            cfg.listen = self.listen;
        }
        if let Some(a) = self.admin_listen {
            cfg.admin_listen = a;
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The flag, else the config's `log_format` (read first), else text.
    let flag = cli.log_format.as_deref().map(|f| if f == "json" { LogFormat::Json } else { LogFormat::Text });
    let log_from = |configured: LogFormat| logging::init(flag.unwrap_or(configured));
    match cli.command {
        Command::Dev { data_dir, listen, api_listen, api_admin_listen, config } => {
            log_from(LogFormat::Text);
            dev(data_dir, listen, api_listen, api_admin_listen, config.as_deref())
        }
        Command::Edge { config, listen, check } => {
            let mut cfg = match config {
                Some(path) => match EdgeConfig::from_file(&path) {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("{e}");
                        return ExitCode::from(2);
                    }
                },
                None => EdgeConfig::default(),
            };
            listen.apply(&mut cfg);
            if let (Some(sync), Ok(token)) = (cfg.sync.as_mut(), std::env::var("IMGCDN_EDGE_SYNC_TOKEN")) {
                sync.token = token;
            }
            if check {
                return match cfg.validate() {
                    Ok(()) => {
                        println!("{}", redacted_toml(&cfg));
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("{e}");
                        ExitCode::from(2)
                    }
                };
            }
            log_from(cfg.log_format);
            run_edge(cfg)
        }
        Command::ControlPlane { config, listen, check } => {
            let mut cfg = match control_plane_config(config.as_deref()) {
                Ok(c) => c,
                Err(code) => return code,
            };
            if let Some(l) = listen {
                cfg.listen = l;
            }
            if let Err(e) = cfg.validate() {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
            if check {
                println!("{}", redacted_toml(&cfg));
                return ExitCode::SUCCESS;
            }
            log_from(cfg.log_format);
            run_control_plane(cfg)
        }
        Command::Put(args) => {
            log_from(LogFormat::Text);
            put::run(args)
        }
        Command::Admin { config, command } => {
            let cfg = match control_plane_config(config.as_deref()) {
                Ok(c) => c,
                Err(code) => return code,
            };
            log_from(cfg.log_format);
            admin::run(cfg, command)
        }
    }
}

/// The edge and the control plane together, with embedded defaults.
fn dev(
    data_dir: PathBuf,
    listen: ListenArgs,
    api_listen: String,
    api_admin_listen: String,
    config: Option<&Path>,
) -> ExitCode {
    let mut edge =
        EdgeConfig { store: StoreConfig::fs(data_dir.join("store").to_string_lossy()), ..EdgeConfig::default() };
    edge.disk.path = data_dir.join("edge-cache");
    listen.apply(&mut edge);
    if let Err(e) = std::fs::create_dir_all(data_dir.join("store")) {
        eprintln!("cannot create {}: {e}", data_dir.display());
        return ExitCode::FAILURE;
    }
    let mut cp = match control_plane_config(config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    cp.public_base_url = format!("http://{api_listen}");
    cp.listen = api_listen;
    cp.admin_listen = api_admin_listen;
    cp.database_url = format!("sqlite://{}", data_dir.join("imgcdn.db").display());
    cp.email.transport = imgcdn_control_plane::config::MailTransport::File;
    cp.email.outbox_dir = data_dir.join("outbox");
    // The control plane publishes where this edge reads, and builds URLs to it.
    cp.stores.public = StoreConfig::fs(data_dir.join("store").to_string_lossy());
    cp.stores.recovery = StoreConfig::fs(data_dir.join("recovery").to_string_lossy());
    cp.stores.staging = StoreConfig::fs(data_dir.join("staging").to_string_lossy());
    if let Some(listen) = edge.listen.first() {
        cp.edge_base_url = format!("http://{listen}");
    }
    // Classify for real when the operator-installed model is there
    // (`scripts/fetch-models` puts it outside the repository).
    if cp.moderation.nudity.model.is_none() {
        cp.moderation.nudity.model = imgcdn_safety::nudity::default_model_path().filter(|p| p.is_file());
    }
    // Plain HTTP on localhost: a Secure cookie would never be sent back.
    cp.cookie_secure = false;
    // The edge syncs takedowns and hidden images from this control plane,
    // with a token made up for this run.
    let token = imgcdn_control_plane::secrets::random_token(32);
    cp.edge_sync.edges.insert("dev-edge".into(), token.clone());
    edge.sync = Some(imgcdn_edge::config::SyncConfig {
        control_planes: vec![cp.public_base_url.clone()],
        token,
        state_path: data_dir.join("edge-sync.json"),
        policy_url: Some(format!("{}/legal/takedowns", cp.public_base_url)),
        ..Default::default()
    });
    println!("imgcdn dev: data in {}", data_dir.display());
    allow_in_logs_control_plane(&cp);
    let admin = cp.admin_listen.clone();
    let (api, stop) = match start_control_plane_thread(cp) {
        Ok(x) => x,
        Err(code) => return code,
    };
    println!("  control plane: {api}  (mail is written to {})", data_dir.join("outbox").display());
    println!("  control plane admin: http://{admin}/metrics  /healthz  /readyz");
    let code = run_edge(edge);
    stop();
    code
}

/// Defaults, the optional TOML file, then `IMGCDN_*` environment overrides.
fn control_plane_config(path: Option<&Path>) -> Result<CpConfig, ExitCode> {
    let text = match path.map(std::fs::read_to_string).transpose() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{}: {e}", path.map(|p| p.display().to_string()).unwrap_or_default());
            return Err(ExitCode::from(2));
        }
    };
    CpConfig::load(text.as_deref(), |k| std::env::var(k).ok()).map_err(|e| {
        match path {
            Some(p) => eprintln!("{}: {e}", p.display()),
            None => eprintln!("{e}"),
        }
        ExitCode::from(2)
    })
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("install SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn run_control_plane(cfg: CpConfig) -> ExitCode {
    allow_in_logs_control_plane(&cfg);
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    rt.block_on(async {
        let cp = match ControlPlane::bind(cfg).await {
            Ok(cp) => cp,
            Err(e) => {
                eprintln!("imgcdn control-plane: {e}");
                return ExitCode::from(2);
            }
        };
        println!("  control plane: http://{}", cp.local_addr());
        println!("  control plane admin (metrics, readiness): http://{}", cp.admin_addr());
        match cp.run(shutdown_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("imgcdn control-plane: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// Start the control plane on its own thread and runtime (the edge runs on
/// pingora's). Returns its URL and a function that stops it and waits.
fn start_control_plane_thread(cfg: CpConfig) -> Result<(String, impl FnOnce()), ExitCode> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let handle = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
        rt.block_on(async move {
            match ControlPlane::bind(cfg).await {
                Ok(cp) => {
                    let _ = ready_tx.send(Ok(cp.local_addr()));
                    let stopped = async {
                        let _ = stop_rx.await;
                    };
                    if let Err(e) = cp.run(stopped).await {
                        eprintln!("imgcdn control-plane: {e}");
                    }
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e.to_string()));
                }
            }
        });
    });
    match ready_rx.recv() {
        Ok(Ok(addr)) => Ok((format!("http://{addr}"), move || {
            let _ = stop_tx.send(());
            let _ = handle.join();
        })),
        Ok(Err(e)) => {
            eprintln!("imgcdn control-plane: {e}");
            Err(ExitCode::from(2))
        }
        Err(_) => Err(ExitCode::FAILURE),
    }
}

fn run_edge(cfg: EdgeConfig) -> ExitCode {
    allow_in_logs_edge(&cfg);
    let edge = match Edge::build(&cfg) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("imgcdn edge: {e}");
            return ExitCode::from(2);
        }
    };
    for a in &cfg.listen {
        println!("  edge:          http://{a}/{{storage}}/{{id}}.{{ext}}");
    }
    println!("  edge admin:    http://{}/metrics  /healthz  /readyz", cfg.admin_listen);
    edge.run(Box::new(UnixShutdownSignalWatch));
    ExitCode::SUCCESS
}

/// The edge's own infrastructure, legible in its logs: its listeners, its
/// control planes, its store's endpoint.
fn allow_in_logs_edge(cfg: &EdgeConfig) {
    let mut own: Vec<&str> = cfg.listen.iter().map(String::as_str).collect();
    own.push(&cfg.admin_listen);
    if let Some(sync) = &cfg.sync {
        own.extend(sync.control_planes.iter().map(String::as_str));
    }
    own.extend(cfg.store.options.get("endpoint").map(String::as_str));
    logging::allow(own);
}

/// The control plane's own infrastructure, legible in its logs: its
/// listeners, its database, its SMTP relay, its stores' endpoints.
fn allow_in_logs_control_plane(cfg: &CpConfig) {
    let smtp = format!("{}:{}", cfg.email.smtp_host, cfg.email.smtp_port);
    let mut own = vec![cfg.listen.as_str(), cfg.admin_listen.as_str(), cfg.database_url.as_str(), smtp.as_str()];
    for store in [&cfg.stores.public, &cfg.stores.staging, &cfg.stores.recovery] {
        own.extend(store.options.get("endpoint").map(String::as_str));
    }
    logging::allow(own);
}

/// `url` with the password of its user info (`scheme://user:password@host`)
/// replaced by `<redacted>`; anything else as it is.
fn without_url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else { return url.to_string() };
    match rest[..at].split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:<redacted>{}", &rest[at..]),
        None => url.to_string(),
    }
}

/// The effective configuration as TOML, every secret (tokens, passwords,
/// secret keys; edge tokens by name) replaced by `<redacted>`: what
/// `--check` prints.
fn redacted_toml(cfg: &impl serde::Serialize) -> String {
    fn redact(v: &mut toml::Value, secret: bool) {
        match v {
            toml::Value::Table(t) => {
                for (k, v) in t.iter_mut() {
                    redact(v, secret || imgcdn_shared::storage::is_secret_key(k) || k == "edges");
                }
            }
            toml::Value::Array(a) => a.iter_mut().for_each(|v| redact(v, secret)),
            other if secret => *other = toml::Value::String("<redacted>".into()),
            toml::Value::String(url) => *url = without_url_password(url),
            _ => {}
        }
    }
    let mut value = toml::Value::try_from(cfg).unwrap_or(toml::Value::Table(Default::default()));
    redact(&mut value, false);
    toml::to_string_pretty(&value).unwrap_or_default()
}
