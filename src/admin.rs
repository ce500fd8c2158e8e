//! `imgcdn admin …`: administration straight against a control plane's
//! database and stores (no running control plane needed): operators, the
//! hash blocklist, the review queue, retention (the table, a sweep) and
//! team plans.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use imgcdn_control_plane::moderation::{blocklist, review};
use imgcdn_control_plane::privacy::requests;
use imgcdn_control_plane::retention::{policy, recompute, sweep};
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
    /// How long images and personal data are kept.
    #[command(subcommand)]
    Retention(RetentionCommand),
    /// Run one sweep pass now (expire, reap, delete what is due), or with
    /// --dry-run list what a pass would do.
    Sweep {
        /// Change nothing: print, per step, how many items are due and the first ids.
        #[arg(long)]
        dry_run: bool,
        /// With --dry-run: as of this time (RFC 3339, e.g. 2027-01-01T00:00:00Z, or unix seconds).
        #[arg(long, requires = "dry_run")]
        as_of: Option<String>,
    },
    /// Teams.
    #[command(subcommand)]
    Team(TeamCommand),
    /// Rights requests received by email (access, erasure, …), with their
    /// legal deadline: 30 days (GDPR) or 45 (CCPA).
    #[command(subcommand)]
    Request(RequestCommand),
}

#[derive(Subcommand)]
pub enum RequestCommand {
    /// Record a request received today.
    Add {
        email: String,
        /// access, erasure, rectification, restriction, objection, portability, opt_out or other.
        #[arg(long)]
        kind: String,
        /// gdpr (30 days) or ccpa (45 days).
        #[arg(long, default_value = "gdpr")]
        jurisdiction: String,
        #[arg(long)]
        note: Option<String>,
    },
    /// Open requests, the most urgent first.
    List {
        /// Only those past their deadline.
        #[arg(long)]
        overdue: bool,
    },
    /// Close a request as answered (or --refused).
    Close {
        id: String,
        #[arg(long)]
        refused: bool,
        #[arg(long)]
        note: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum RetentionCommand {
    /// Print the retention table this configuration gives (Markdown).
    Table,
}

#[derive(Subcommand)]
pub enum TeamCommand {
    /// Put a team on a plan (free, pro, unlimited); its images' windows are
    /// recomputed (e.g. restricted content on a plan that is not paid).
    Plan { team: String, plan: String },
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
    if let AdminCommand::Retention(RetentionCommand::Table) = command {
        print!("{}", retention_table(&cfg));
        return ExitCode::SUCCESS;
    }
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
            AdminCommand::Sweep { dry_run, as_of } => sweep_cmd(db.clone(), cfg, dry_run, as_of.as_deref()).await,
            AdminCommand::Team(TeamCommand::Plan { team, plan }) => {
                if !["free", "pro", "unlimited"].contains(&plan.as_str()) {
                    Err(format!("plan {plan:?}: one of free, pro, unlimited"))
                } else {
                    match AppState::new(db.clone(), cfg, imgcdn_shared::clock::system()) {
                        Ok(state) => recompute::change_plan(&state, &team, &plan)
                            .await
                            .map(|n| println!("team {team} is on {plan}; {n} image expiries changed"))
                            .map_err(|e| e.to_string()),
                        Err(e) => Err(e.to_string()),
                    }
                }
            }
            AdminCommand::Request(cmd) => request_cmd(&db, cmd, now).await,
            AdminCommand::Retention(_) => unreachable!("handled before connecting"),
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

/// The retention table of `cfg`, as the README shows it.
pub fn retention_table(cfg: &CpConfig) -> String {
    let sessions = (cfg.sessions.sliding_days, cfg.sessions.max_days);
    policy::table(&cfg.retention, &cfg.plans.retention_terms(), sessions)
}

/// `imgcdn admin sweep [--dry-run [--as-of T]]`.
async fn sweep_cmd(
    db: imgcdn_control_plane::Db,
    cfg: CpConfig,
    dry_run: bool,
    as_of: Option<&str>,
) -> Result<(), String> {
    let now = match as_of {
        Some(t) => parse_time(t)?,
        None => time::OffsetDateTime::now_utc().unix_timestamp(),
    };
    let clock: std::sync::Arc<dyn imgcdn_shared::clock::Clock> = match as_of {
        Some(_) => imgcdn_shared::clock::ManualClock::at(now),
        None => imgcdn_shared::clock::system(),
    };
    let state = AppState::new(db, cfg, clock).map_err(|e| e.to_string())?;
    if dry_run {
        println!("as of {} nothing is changed; a sweep would:", date(now));
        for (step, n, first) in sweep::survey(&state, now).await.map_err(|e| e.to_string())? {
            let more = if n as usize > first.len() { ", …" } else { "" };
            let shown = if first.is_empty() { String::new() } else { format!("  ({}{more})", first.join(", ")) };
            println!("  {step:<20} {n:>8}{shown}");
        }
        return Ok(());
    }
    let holder = format!("admin-{}", std::process::id());
    let mut bar = |step: &str, done: u64, due: u64| {
        const WIDTH: u64 = 30;
        let filled = (done * WIDTH).checked_div(due).unwrap_or(WIDTH).min(WIDTH);
        let bar = format!("{}{}", "#".repeat(filled as usize), ".".repeat((WIDTH - filled) as usize));
        eprint!("\r{step:<20} [{bar}] {done}/{due}   ");
        if done == due {
            eprintln!();
        }
    };
    match sweep::run_leased(&state, &holder, &mut bar).await? {
        None => Err("another control plane is sweeping right now (the sweep lease is held); try again later".into()),
        Some(s) => {
            for (step, n) in s.per_step() {
                println!("{step:<20} {n:>8}");
            }
            println!("{:<20} {:>8}", "errors", s.errors);
            if s.errors > 0 {
                Err(format!("{} items failed (see the log); the next sweep retries them", s.errors))
            } else {
                Ok(())
            }
        }
    }
}

async fn request_cmd(db: &imgcdn_control_plane::Db, cmd: RequestCommand, now: i64) -> Result<(), String> {
    match cmd {
        RequestCommand::Add { email, kind, jurisdiction, note } => {
            let id = requests::add(db, &email, &kind, &jurisdiction, note.as_deref(), now).await.map_err(api_error)?;
            let days = requests::deadline_days(&jurisdiction).unwrap_or(30);
            println!("{id}  due {}", date(now + days * 86_400));
            Ok(())
        }
        RequestCommand::List { overdue } => {
            for r in requests::list(db, now, overdue).await.map_err(api_error)? {
                let flag = if r["overdue"] == true { "OVERDUE" } else { "" };
                println!(
                    "{}  {:<13} {:<4} {}  due {} ({} days) {flag}",
                    r["id"].as_str().unwrap_or(""),
                    r["kind"].as_str().unwrap_or(""),
                    r["jurisdiction"].as_str().unwrap_or(""),
                    r["email"].as_str().unwrap_or(""),
                    r["due_at"].as_str().unwrap_or(""),
                    r["days_left"],
                );
            }
            Ok(())
        }
        RequestCommand::Close { id, refused, note } => {
            requests::close(db, &id, refused, note.as_deref(), now).await.map_err(api_error)
        }
    }
}

/// An API error as the CLI prints it: its message (and field, for validation).
fn api_error(e: imgcdn_control_plane::error::ApiError) -> String {
    match e {
        imgcdn_control_plane::error::ApiError::Validation { message, details } => {
            format!("{}: {message}", details["field"].as_str().unwrap_or("input"))
        }
        imgcdn_control_plane::error::ApiError::NotFound => "no such open request".into(),
        other => other.to_string(),
    }
}

/// RFC 3339 or unix seconds.
fn parse_time(t: &str) -> Result<i64, String> {
    if let Ok(secs) = t.parse::<i64>() {
        return Ok(secs);
    }
    time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
        .map(|d| d.unix_timestamp())
        .map_err(|_| format!("--as-of {t:?}: a time like 2027-01-01T00:00:00Z, or unix seconds"))
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

#[cfg(test)]
mod tests {
    /// The README's retention table is the one the default configuration gives.
    #[test]
    fn the_readme_shows_the_retention_table_of_the_defaults() {
        let readme = include_str!("../README.md");
        let start = "<!-- retention-table:start -->\n";
        let from = readme.find(start).expect("start marker") + start.len();
        let to = readme.find("<!-- retention-table:end -->").expect("end marker");
        let generated = super::retention_table(&imgcdn_control_plane::Config::default());
        assert_eq!(
            &readme[from..to],
            generated,
            "README.md is out of date: paste `imgcdn admin retention table` between the markers"
        );
    }
}
