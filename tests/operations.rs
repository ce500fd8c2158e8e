//! What an operator deploys and watches, checked with the tools they use:
//! `/metrics` of both programs read by `promtool`, the alert rules in
//! `deploy/` checked and unit-tested by `promtool`, honest readiness on the
//! admin listeners, `--check` that never prints a secret, config errors
//! with file and line, and JSON logs.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;
use imgcdn_shared::testing::png_with_text;
use reqwest::StatusCode;

const BIN: &str = env!("CARGO_BIN_EXE_imgcdn");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// `promtool`, or `None` outside CI when it is not installed.
fn promtool() -> Option<&'static str> {
    let found = Command::new("promtool").arg("--version").output().is_ok_and(|o| o.status.success());
    if !found {
        assert!(std::env::var_os("CI").is_none(), "promtool is not installed: scripts/setup installs it");
        eprintln!("SKIPPED: promtool is not installed (scripts/setup installs it)");
        return None;
    }
    Some("promtool")
}

/// `promtool check metrics` on a `/metrics` body: its complaints, if any.
fn promtool_check_metrics(tool: &str, body: &str) -> Result<(), String> {
    use std::io::Write;
    let mut child = Command::new(tool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if out.status.success() && said.trim().is_empty() {
        Ok(())
    } else {
        Err(said)
    }
}

async fn get_text(url: &str) -> (StatusCode, String) {
    let r = client().get(url).send().await.unwrap();
    (r.status(), r.text().await.unwrap())
}

#[tokio::test]
async fn both_programs_expose_metrics_that_promtool_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let edge = EdgeProcess::start(dir.path(), &EdgeOpts::new(dir.path()));
    let cp = ControlPlaneProcess::start(dir.path(), &CpOpts::new(&edge.base));
    let c = client();

    // Something to count: an anonymous upload, fetched twice from the edge.
    let png = png_with_text(40, 30, 5, "Comment", "x");
    let r = post_image(&c, &cp.base, None, &png).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let url = r.json::<serde_json::Value>().await.unwrap()["url"].as_str().unwrap().to_string();
    for _ in 0..2 {
        assert_eq!(c.get(&url).send().await.unwrap().status(), StatusCode::OK);
    }

    // The control plane's admin listener: ready, metrics with what happened.
    assert_eq!(get_text(&format!("{}/healthz", cp.admin)).await.0, StatusCode::OK);
    assert_eq!(get_text(&format!("{}/readyz", cp.admin)).await, (StatusCode::OK, "ready\n".into()));
    let (status, cp_metrics) = get_text(&format!("{}/metrics", cp.admin)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(metric_value(&cp_metrics, "imgcdn_cp_uploads_total{outcome=\"ready\"}"), 1.0, "{cp_metrics}");
    assert_eq!(metric_value(&cp_metrics, "imgcdn_cp_uploads_total{outcome=\"refused\"}"), 0.0, "pre-created");
    assert!(metric_value(&cp_metrics, "process_resident_memory_bytes") > 0.0);
    assert!(cp_metrics.contains("imgcdn_cp_http_requests_total{"), "{cp_metrics}");
    // Never on the public listener.
    assert_eq!(get_text(&format!("{}/metrics", cp.base)).await.0, StatusCode::NOT_FOUND);

    // The edge: a miss then a memory hit; every labelled series exists.
    let edge_metrics = edge.metrics();
    assert_eq!(metric_value(&edge_metrics, "imgcdn_edge_requests_total{status=\"200\",tier=\"memory\"}"), 1.0);
    assert_eq!(metric_value(&edge_metrics, "imgcdn_edge_requests_total{status=\"200\",tier=\"origin\"}"), 1.0);
    assert_eq!(metric_value(&edge_metrics, "imgcdn_edge_requests_total{status=\"451\",tier=\"none\"}"), 0.0);
    assert_eq!(metric_value(&edge_metrics, "imgcdn_edge_origin_errors_total{kind=\"timeout\"}"), 0.0);
    assert!(metric_value(&edge_metrics, "process_resident_memory_bytes") > 0.0);
    assert!(!edge_metrics.contains("seconds_since"), "a resetting age is not a metric to alert on");

    let Some(tool) = promtool() else { return };
    promtool_check_metrics(tool, &cp_metrics).unwrap_or_else(|e| panic!("control plane /metrics: {e}"));
    promtool_check_metrics(tool, &edge_metrics).unwrap_or_else(|e| panic!("edge /metrics: {e}"));
}

#[test]
fn the_alert_rules_and_their_unit_tests_pass_promtool() {
    let Some(tool) = promtool() else { return };
    let dir = repo().join("deploy/prometheus");
    for args in
        [["check", "rules", "alerts.yml"], ["check", "config", "prometheus.yml"], ["test", "rules", "alerts_test.yml"]]
    {
        let out = Command::new(tool).args(args).current_dir(&dir).output().unwrap();
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "promtool {}: {said}", args.join(" "));
    }
    // Every metric an alert names is one the programs export.
    let rules = std::fs::read_to_string(dir.join("alerts.yml")).unwrap();
    let sources = ["edge-proxy/src/metrics.rs", "control-plane/src/metrics.rs"]
        .map(|f| std::fs::read_to_string(repo().join(f)).unwrap())
        .join("\n");
    for word in rules.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if let Some(name) = word.strip_prefix("imgcdn_") {
            let base = ["_bucket", "_count", "_sum"].iter().fold(name, |n, s| n.strip_suffix(s).unwrap_or(n));
            assert!(
                sources.contains(&format!("\"imgcdn_{base}")),
                "alerts.yml names imgcdn_{name}, which nothing exports"
            );
        }
    }
}

fn run(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let out = Command::new(BIN).args(args).envs(env.iter().copied()).stdin(Stdio::null()).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn check_prints_the_effective_config_without_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let edge = dir.path().join("edge.toml");
    std::fs::write(
        &edge,
        "[store]\nscheme = \"s3\"\nbucket = \"b\"\nregion = \"auto\"\nendpoint = \"https://s3.example.com\"\n\
         access_key_id = \"AKIDVISIBLE\"\nsecret_access_key = \"very-secret-key\"\n\
         [sync]\ncontrol_planes = [\"https://cp.example.com\"]\ntoken = \"sync-token-secret-0123456789abcdef-xyz\"\n",
    )
    .unwrap();
    let (ok, out, err) = run(&["edge", "--check", "--config", edge.to_str().unwrap()], &[]);
    assert!(ok, "{err}");
    assert!(!out.contains("very-secret-key") && !out.contains("sync-token-secret"), "{out}");
    assert!(out.contains("<redacted>") && out.contains("AKIDVISIBLE"), "{out}");

    let cp = dir.path().join("cp.toml");
    std::fs::write(
        &cp,
        "log_format = \"json\"\n[email]\ntransport = \"smtp\"\nsmtp_host = \"smtp.example.com\"\nsmtp_username = \"u\"\n\
         smtp_password = \"mail-password\"\n",
    )
    .unwrap();
    let (ok, out, err) = run(
        &["control-plane", "--check", "--config", cp.to_str().unwrap()],
        &[("IMGCDN_DATABASE_URL", "postgres://imgcdn:db-password@db.internal:5432/imgcdn")],
    );
    assert!(ok, "{err}");
    assert!(!out.contains("mail-password") && !out.contains("db-password"), "{out}");
    assert!(out.contains("postgres://imgcdn:<redacted>@db.internal:5432/imgcdn"), "{out}");
    assert!(out.contains("smtp.example.com") && out.contains("admin_listen"), "{out}");
    assert!(out.contains("log_format = \"json\""), "{out}");
}

#[test]
fn config_errors_come_all_at_once_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let edge = dir.path().join("edge.toml");
    std::fs::write(&edge, "threads = 2\ncolour = \"blue\"\n\n[memory]\nmax_bytes = \"lots\"\nsize = 3\n").unwrap();
    let (ok, _, err) = run(&["edge", "--check", "--config", edge.to_str().unwrap()], &[]);
    assert!(!ok);
    let at = edge.display().to_string();
    for want in [
        format!("{at}: line 2: colour"),
        format!("{at}: line 5: memory.max_bytes"),
        format!("{at}: line 6: memory.size"),
    ] {
        assert!(err.contains(&want), "{want:?} missing from {err}");
    }

    // What would fail at start fails the check: S3 without a region.
    std::fs::write(
        &edge,
        "[store]\nscheme = \"s3\"\nbucket = \"b\"\naccess_key_id = \"a\"\nsecret_access_key = \"s\"\n",
    )
    .unwrap();
    let (ok, _, err) = run(&["edge", "--check", "--config", edge.to_str().unwrap()], &[]);
    assert!(!ok);
    assert!(err.contains("store.region: required"), "{err}");

    let cp = dir.path().join("cp.toml");
    std::fs::write(&cp, "listen = \"127.0.0.1:8090\"\nlisten_backlog = 5\n[email]\ntransport = \"pigeon\"\n").unwrap();
    let (ok, _, err) = run(&["control-plane", "--check", "--config", cp.to_str().unwrap()], &[]);
    assert!(!ok);
    assert!(err.contains("line 2: listen_backlog") && err.contains("line 4: email.transport"), "{err}");
    assert!(err.starts_with(&cp.display().to_string()), "the file is named: {err}");

    // A syntax error at the start of a line points at that line.
    std::fs::write(&cp, "listen = \"127.0.0.1:8090\"\nlisten = \"again\"\n").unwrap();
    let (ok, _, err) = run(&["control-plane", "--check", "--config", cp.to_str().unwrap()], &[]);
    assert!(!ok);
    assert!(err.contains("line 2:"), "{err}");
}

#[test]
fn logs_can_be_json_and_keep_the_operators_own_addresses() {
    let dir = tempfile::tempdir().unwrap();
    // A control plane that is not there: the edge logs failing sync calls.
    let cp = free_addr();
    let mut opts = EdgeOpts::new(dir.path()).with_sync(
        &[&format!("http://{cp}")],
        "a-token-of-32-characters-or-more!",
        &dir.path().join("s.json"),
    );
    opts.env = vec![("IMGCDN_LOG_FORMAT".into(), "json".into())];
    let edge = EdgeProcess::start_unready(dir.path(), &opts);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let line = loop {
        let log = edge.log();
        if let Some(line) = log.lines().find(|l| l.contains("sync")) {
            break line.to_string();
        }
        assert!(std::time::Instant::now() < deadline, "no sync line in {log}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let event: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert!(event["level"].is_string() && event["timestamp"].is_string(), "{event}");
    // Every log line is JSON (the log file also holds the startup banner,
    // which goes to standard output).
    for l in edge.log().lines().filter(|l| !l.trim().is_empty() && !l.starts_with("  ") && !l.starts_with("imgcdn")) {
        assert!(serde_json::from_str::<serde_json::Value>(l).is_ok(), "not JSON: {l}");
    }
    // The failing target is named (it is the operator's, not a visitor's).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !edge.log().contains(&cp.to_string()) {
        assert!(std::time::Instant::now() < deadline, "the sync target is not named: {}", edge.log());
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(!edge.log().contains(&format!("<addr>:{}", cp.port())), "{}", edge.log());
}

/// A real Prometheus scrapes a running edge and control plane with the
/// alert rules of `deploy/` loaded: every rule evaluates without error, and
/// every query of the Grafana dashboard runs, the main ones with data.
#[tokio::test]
async fn prometheus_scrapes_both_and_runs_every_rule_and_dashboard_query() {
    if promtool().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let edge = EdgeProcess::start(dir.path(), &EdgeOpts::new(dir.path()));
    let cp = ControlPlaneProcess::start(dir.path(), &CpOpts::new(&edge.base));
    let c = client();
    for _ in 0..3 {
        c.get(format!("{}/aaaaaaaa.png", edge.base)).send().await.unwrap();
        c.get(format!("{}/v1/usage", cp.base)).send().await.unwrap();
    }

    let host = |url: &str| url.trim_start_matches("http://").to_string();
    let prom_dir = dir.path().join("prometheus");
    std::fs::create_dir_all(&prom_dir).unwrap();
    std::fs::copy(repo().join("deploy/prometheus/alerts.yml"), prom_dir.join("alerts.yml")).unwrap();
    std::fs::write(
        prom_dir.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - alerts.yml\nscrape_configs:\n\
             \x20 - job_name: imgcdn-control-plane\n    static_configs:\n      - targets: [\"{cp}\"]\n\
             \x20 - job_name: imgcdn-edge\n    static_configs:\n      - targets: [\"{edge}\"]\n",
            cp = host(&cp.admin),
            edge = host(&edge.admin),
        ),
    )
    .unwrap();
    let listen = free_addr();
    let mut prometheus = Command::new("prometheus")
        .arg(format!("--config.file={}", prom_dir.join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", prom_dir.join("data").display()))
        .arg(format!("--web.listen-address={listen}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus (Debian's package) is installed with promtool");
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _guard = Kill(&mut prometheus);
    let api = format!("http://{listen}/api/v1");
    let query = |q: String| {
        let c = c.clone();
        let api = api.clone();
        async move {
            let r = c.get(format!("{api}/query")).query(&[("query", q.as_str())]).send().await;
            match r {
                Ok(r) => r.json::<serde_json::Value>().await.unwrap_or_default(),
                Err(_) => serde_json::Value::Null,
            }
        }
    };
    // Both targets up, with a few scrapes behind them (rates need two).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let value = |r: serde_json::Value| -> f64 {
            r["data"]["result"][0]["value"][1].as_str().and_then(|v| v.parse().ok()).unwrap_or(0.0)
        };
        let up = query("count(up == 1)".into()).await;
        let scrapes = query("min(count_over_time(up[1m]))".into()).await;
        if value(up.clone()) >= 2.0 && value(scrapes) >= 4.0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "Prometheus never scraped both: {up}");
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }

    // Every alert rule evaluated without error.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let rules: serde_json::Value = c.get(format!("{api}/rules")).send().await.unwrap().json().await.unwrap();
        let all: Vec<&serde_json::Value> =
            rules["data"]["groups"].as_array().unwrap().iter().flat_map(|g| g["rules"].as_array().unwrap()).collect();
        assert!(all.len() >= 10, "{rules}");
        let bad: Vec<_> = all.iter().filter(|r| r["health"] != "ok").collect();
        if bad.is_empty() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "rules not healthy: {bad:?}");
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }

    // Every dashboard query, with Grafana's variables filled in.
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join("deploy/grafana/imgcdn.json")).unwrap()).unwrap();
    fn exprs(panel: &serde_json::Value, out: &mut Vec<String>) {
        for t in panel["targets"].as_array().into_iter().flatten() {
            out.extend(t["expr"].as_str().map(String::from));
        }
        for p in panel["panels"].as_array().into_iter().flatten() {
            exprs(p, out);
        }
    }
    let mut all = Vec::new();
    for p in dashboard["panels"].as_array().unwrap() {
        exprs(p, &mut all);
    }
    assert!(all.len() >= 20, "{} queries", all.len());
    let mut with_data = 0;
    for expr in &all {
        let q = expr.replace("$__rate_interval", "1m").replace("$edge", ".*").replace("$cp", ".*");
        let r = query(q.clone()).await;
        assert_eq!(r["status"], "success", "{expr}: {r}");
        if r["data"]["result"].as_array().is_some_and(|r| !r.is_empty()) {
            with_data += 1;
        }
    }
    // Queries of things that did not happen (errors, evictions) may be
    // empty; most must show data from what the two programs export.
    assert!(with_data * 3 >= all.len() * 2, "only {with_data} of {} dashboard queries have data", all.len());
}

/// An edge whose public listener cannot bind (the port is taken) runs, but
/// never says it is ready, and says why; it becomes ready once the port is
/// free and pingora's retry binds it.
#[test]
fn an_edge_that_cannot_bind_its_listener_is_not_ready() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let public = taken.local_addr().unwrap();
    let admin = free_addr();
    let config = dir.path().join("edge.toml");
    std::fs::write(
        &config,
        format!(
            "listen = [\"{public}\"]\nadmin_listen = \"{admin}\"\nthreads = 1\ngrace_period_secs = 1\nshutdown_timeout_secs = 2\n\
             [store]\nscheme = \"fs\"\nroot = {store:?}\n[disk]\npath = {disk:?}\n",
            store = dir.path().join("store").display().to_string(),
            disk = dir.path().join("cache").display().to_string(),
        ),
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("store")).unwrap();
    let mut edge = Command::new(BIN)
        .args(["edge", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let readyz = format!("http://{admin}/readyz");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let (status, why) = loop {
        if let Ok(r) = ureq_get(&readyz) {
            break r;
        }
        assert!(std::time::Instant::now() < deadline, "the admin listener never answered");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    // Give the startup checks time to have run several times.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let (status_later, why_later) = ureq_get(&readyz).unwrap();
    assert_eq!(status, 503, "{why}");
    assert_eq!(status_later, 503, "{why_later}");
    assert!(why_later.contains("listener"), "{why_later}");
    // The port comes free: pingora's retry binds it, and the edge is ready.
    drop(taken);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !ureq_get(&readyz).is_ok_and(|r| r.0 == 200) {
        assert!(std::time::Instant::now() < deadline, "never ready after the port came free");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let _ = edge.kill();
    let _ = edge.wait();
}
