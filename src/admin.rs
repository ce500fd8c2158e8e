//! `imgcdn admin …`: administration straight against a control plane's
//! database and stores (no running control plane needed): operators, the
//! hash blocklist, the review queue.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use imgcdn_control_plane::moderation::{blocklist, review};
use imgcdn_control_plane::{operators, AppState, Config as CpConfig};

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Operators: the people who take images down, warn, restore and review.
    #[command(subcommand)]
    Operator(OperatorCommand),
    /// The hash blocklist (content no upload may match).
    #[command(subcommand)]
    Blocklist(BlocklistCommand),
    /// The review queue: held uploads, reports, DMCA notices.
    #[command(subcommand)]
    Review(ReviewCommand),
}

#[derive(Subcommand)]
pub enum OperatorCommand {
    /// Create an operator and print its token (shown once).
    Create { name: String },
    /// List operators.
    List,
    /// Revoke an operator's token.
    Revoke { name: String },
}

#[derive(Subcommand)]
pub enum BlocklistCommand {
    /// Import a CSV list: a header line `kind,hash,category`, then one entry
    /// a line (`kind` sha256 or pdq, the hash as 64 hex characters).
    Import {
        file: PathBuf,
        /// How the entries' source is recorded (default: the file name).
        #[arg(long)]
        source: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum ReviewCommand {
    /// Open items, oldest first.
    List {
        #[arg(long)]
        category: Option<String>,
        #[arg(long)]
        source: Option<String>,
    },
    /// One item with its image and verdicts (the view is logged).
    Show {
        item: String,
        /// The operator looking (by name).
        #[arg(long)]
        operator: String,
    },
    /// Decide an item: approve, restrict, remove, takedown (with --reason) or reject.
    Decide {
        item: String,
        decision: String,
        #[arg(long)]
        operator: String,
        #[arg(long)]
        reason: Option<String>,
        #[arg(long, default_value = "")]
        note: String,
    },
}

/// Run `command` against the database and stores of `cfg`.
pub fn run(cfg: CpConfig, command: AdminCommand) -> ExitCode {
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    rt.block_on(async {
        let db = match imgcdn_control_plane::Db::connect(&cfg.database_url).await {
            Ok(db) => db,
            Err(e) => {
                eprintln!("imgcdn admin: database: {e}");
                return ExitCode::from(2);
            }
        };
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let result: Result<(), String> = match command {
            AdminCommand::Operator(op) => operator(&db, op, now).await,
            AdminCommand::Blocklist(BlocklistCommand::Import { file, source }) => {
                match std::fs::read_to_string(&file) {
                    Err(e) => Err(format!("{}: {e}", file.display())),
                    Ok(text) => {
                        let name = file.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
                        let source = format!("import:{}", source.unwrap_or(name));
                        match blocklist::import_csv(&db, &text, &source, now).await {
                            Ok(r) => {
                                println!(
                                    "{} added, {} already listed, {} refused",
                                    r.added,
                                    r.already_listed,
                                    r.refused.len()
                                );
                                for line in &r.refused {
                                    eprintln!("  {line}");
                                }
                                if r.refused.is_empty() {
                                    Ok(())
                                } else {
                                    Err("some lines were refused".into())
                                }
                            }
                            Err(e) => Err(e.to_string()),
                        }
                    }
                }
            }
            AdminCommand::Review(cmd) => match AppState::new(db.clone(), cfg, imgcdn_shared::clock::system()) {
                Ok(state) => review_cmd(&state, cmd).await,
                Err(e) => Err(e.to_string()),
            },
        };
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("imgcdn admin: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

fn date(t: i64) -> String {
    imgcdn_control_plane::dates::iso(t)
}

async fn operator(db: &imgcdn_control_plane::Db, op: OperatorCommand, now: i64) -> Result<(), String> {
    match op {
        OperatorCommand::Create { name } => operators::create(db, &name, now)
            .await
            .map(|token| println!("operator {name} created; its token (shown only now):\n{token}"))
            .map_err(|e| e.to_string()),
        OperatorCommand::Revoke { name } => operators::revoke(db, &name, now)
            .await
            .map(|()| println!("operator {name} revoked"))
            .map_err(|e| e.to_string()),
        OperatorCommand::List => operators::list(db).await.map_err(|e| e.to_string()).map(|ops| {
            for (name, created, revoked) in ops {
                let state = match revoked {
                    Some(t) => format!("revoked {}", date(t)),
                    None => "active".to_string(),
                };
                println!("{name}\t{state}\tcreated {}", date(created));
            }
        }),
    }
}

async fn review_cmd(state: &AppState, cmd: ReviewCommand) -> Result<(), String> {
    let operator = |name: String| async move {
        operators::by_name(&state.db, &name)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("no active operator named {name:?}"))
    };
    match cmd {
        ReviewCommand::List { category, source } => {
            let filter = review::QueueFilter { category, source, limit: Some(500) };
            for item in review::queue(state, &filter).await.map_err(|e| e.to_string())? {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    item["id"].as_str().unwrap_or(""),
                    item["created_at"].as_str().unwrap_or(""),
                    item["source"].as_str().unwrap_or(""),
                    item["category"].as_str().unwrap_or(""),
                    item["image_id"].as_str().unwrap_or(""),
                );
            }
            Ok(())
        }
        ReviewCommand::Show { item, operator: name } => {
            let op = operator(name).await?;
            let v = review::view(state, &op, &item).await.map_err(|e| e.to_string())?;
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            Ok(())
        }
        ReviewCommand::Decide { item, decision, operator: name, reason, note } => {
            let op = operator(name).await?;
            let decision: review::Decision =
                decision.parse().map_err(|_| "decision: approve, restrict, remove, takedown or reject".to_string())?;
            let v = review::decide(state, &op, &item, decision, reason, &note).await.map_err(|e| e.to_string())?;
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            Ok(())
        }
    }
}
