//! `imgcdn`: one binary for every role.
//!
//! - `imgcdn dev`: everything on this machine with embedded defaults.
//! - `imgcdn edge --config FILE`: an edge proxy.
//! - `imgcdn control-plane --config FILE`: the control plane (not built yet).
//! - `imgcdn put FILE`: publish an image into a local fs store by hand.
#![forbid(unsafe_code)]

mod logging;
mod put;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use imgcdn_edge::{Edge, EdgeConfig};
use imgcdn_shared::storage::StoreConfig;
use pingora_core::server::UnixShutdownSignalWatch;

#[derive(Parser)]
#[command(name = "imgcdn", version, about = "Image hosting and CDN")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run everything locally with embedded defaults under --data-dir.
    Dev {
        /// Where the store, the edge's disk cache and (later) the database live.
        #[arg(long, default_value = "./data", env = "IMGCDN_DATA_DIR")]
        data_dir: PathBuf,
        #[command(flatten)]
        listen: ListenArgs,
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
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Publish an image file into the local fs store (for `imgcdn dev`).
    Put(put::PutArgs),
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
    logging::init();
    match cli.command {
        Command::Dev { data_dir, listen } => {
            let mut cfg = EdgeConfig {
                store: StoreConfig::fs(data_dir.join("store").to_string_lossy()),
                ..EdgeConfig::default()
            };
            cfg.disk.path = data_dir.join("edge-cache");
            listen.apply(&mut cfg);
            if let Err(e) = std::fs::create_dir_all(data_dir.join("store")) {
                eprintln!("cannot create {}: {e}", data_dir.display());
                return ExitCode::FAILURE;
            }
            println!("imgcdn dev: data in {}", data_dir.display());
            println!("  control plane: not part of this build yet; publish images with `imgcdn put FILE --data-dir {}`", data_dir.display());
            run_edge(cfg)
        }
        Command::Edge {
            config,
            listen,
            check,
        } => {
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
            if check {
                return match cfg.validate() {
                    Ok(()) => {
                        println!("{}", toml::to_string_pretty(&cfg).unwrap_or_default());
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("{e}");
                        ExitCode::from(2)
                    }
                };
            }
            run_edge(cfg)
        }
        Command::ControlPlane { .. } => {
            eprintln!("imgcdn control-plane: the control plane is not implemented in this build yet; nothing was started");
            ExitCode::from(2)
        }
        Command::Put(args) => put::run(args),
    }
}

fn run_edge(cfg: EdgeConfig) -> ExitCode {
    let edge = match Edge::build(&cfg) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("imgcdn edge: {e}");
            return ExitCode::from(2);
        }
    };
    for a in &cfg.listen {
        println!("  edge:        http://{a}/{{shard}}/{{id}}.{{ext}}");
    }
    println!(
        "  edge admin:  http://{}/metrics  /healthz  /readyz",
        cfg.admin_listen
    );
    edge.run(Box::new(UnixShutdownSignalWatch));
    ExitCode::SUCCESS
}
