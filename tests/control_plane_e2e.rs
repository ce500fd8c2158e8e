//! End-to-end: a newcomer signs up, verifies through the mail outbox, logs
//! in, creates and uses an API key and invites a teammate — all over HTTP
//! against the real `imgcdn control-plane` process, on SQLite and on
//! PostgreSQL.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{mailed_token, PgDatabase, BIN};
use reqwest::StatusCode;
use serde_json::{json, Value};

struct ControlPlaneProcess {
    child: Child,
    base: String,
    outbox: PathBuf,
}

impl Drop for ControlPlaneProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The three stores as folders under `dir`.
fn fs_stores(dir: &Path) -> String {
    ["public", "staging", "recovery"]
        .map(|s| format!("[stores.{s}]\nscheme = \"fs\"\nroot = {:?}\n", dir.join(s).display().to_string()))
        .concat()
}

fn start(dir: &Path, database_url: &str) -> ControlPlaneProcess {
    let outbox = dir.join("outbox");
    let cfg = dir.join("control-plane.toml");
    std::fs::write(
        &cfg,
        format!(
            "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\ndatabase_url = {database_url:?}\ncookie_secure = false\n\
             [email]\ntransport = \"file\"\noutbox_dir = {:?}\n\
             [passwords]\nargon2_memory_kib = 1024\nargon2_iterations = 1\n{stores}",
            outbox.display().to_string(),
            stores = fs_stores(dir),
        ),
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .args(["control-plane", "--config"])
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    // The process prints the address it bound (port 0 → a free port).
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let base = loop {
        let line = lines.next().expect("control plane exited before listening").unwrap();
        if let Some(url) = line.trim().strip_prefix("control plane: ").and_then(|u| u.split_whitespace().next()) {
            break url.to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    ControlPlaneProcess { child, base, outbox }
}

/// Wait for a mail to `to` in the outbox whose body links to `path`; return the token.
struct Session {
    cookie: String,
    csrf: String,
    user: Value,
}

async fn login(c: &reqwest::Client, base: &str, email: &str, password: &str) -> Session {
    let (cookie, csrf, body) = common::log_in(c, base, email, password).await;
    Session { cookie, csrf, user: body["user"].clone() }
}

async fn sign_up_and_verify(c: &reqwest::Client, cp: &ControlPlaneProcess, email: &str, password: &str) -> Session {
    let r = c
        .post(format!("{}/v1/auth/signup", cp.base))
        .json(&json!({"email": email, "name": "New Person", "password": password, "age_confirmed": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let token = mailed_token(&cp.outbox, email, "/verify-email");
    // The link opens a page; its form posts the token.
    let page = c.get(format!("{}/verify-email?token={token}", cp.base)).send().await.unwrap().text().await.unwrap();
    assert!(page.contains(&token));
    let r = c.post(format!("{}/verify-email", cp.base)).form(&[("token", token.as_str())]).send().await.unwrap();
    let status = r.status();
    assert_eq!(status, StatusCode::OK, "token {token}: {}", r.text().await.unwrap());
    let s = login(c, &cp.base, email, password).await;
    assert_eq!(s.user["email_verified"], true);
    s
}

async fn newcomer_journey(database_url: &str) {
    let dir = tempfile::tempdir().unwrap();
    let cp = start(dir.path(), database_url);
    let c = reqwest::Client::builder().no_proxy().build().unwrap();
    let base = cp.base.clone();

    let ada = sign_up_and_verify(&c, &cp, "ada@example.com", "tulip-Orbit-94").await;
    let me: Value =
        c.get(format!("{base}/v1/me")).header("cookie", &ada.cookie).send().await.unwrap().json().await.unwrap();
    assert_eq!(me["email"], "ada@example.com");
    // The sign-in address (the socket peer, here loopback) is on the session.
    let sessions: Value =
        c.get(format!("{base}/v1/sessions")).header("cookie", &ada.cookie).send().await.unwrap().json().await.unwrap();
    assert_eq!(sessions["data"][0]["ip_address"], "127.0.0.1");

    // A key for her personal team, used as a bearer token.
    let team = ada.user["personal_team_id"].as_str().unwrap();
    let r = c
        .post(format!("{base}/v1/teams/{team}/keys"))
        .header("cookie", &ada.cookie)
        .header("x-csrf-token", &ada.csrf)
        .json(&json!({"name": "laptop", "abilities": ["read", "write"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let key = r.json::<Value>().await.unwrap()["key"].as_str().unwrap().to_string();
    let who: Value = c.get(format!("{base}/v1/whoami")).bearer_auth(&key).send().await.unwrap().json().await.unwrap();
    assert_eq!(who["type"], "api_key");
    assert_eq!(who["team_id"], team);

    // A shared team, and a teammate invited by email.
    let r = c
        .post(format!("{base}/v1/teams"))
        .header("cookie", &ada.cookie)
        .header("x-csrf-token", &ada.csrf)
        .json(&json!({"name": "Studio"}))
        .send()
        .await
        .unwrap();
    let studio = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
    let r = c
        .post(format!("{base}/v1/teams/{studio}/invitations"))
        .header("cookie", &ada.cookie)
        .header("x-csrf-token", &ada.csrf)
        .json(&json!({"email": "bo@example.com", "role": "member"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let invite = mailed_token(&cp.outbox, "bo@example.com", "/accept-invite");
    let bo = sign_up_and_verify(&c, &cp, "bo@example.com", "Secret-maple-51").await;
    let r = c
        .post(format!("{base}/v1/invitations/accept"))
        .header("cookie", &bo.cookie)
        .header("x-csrf-token", &bo.csrf)
        .json(&json!({"token": invite}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let members: Value = c
        .get(format!("{base}/v1/teams/{studio}/members"))
        .header("cookie", &ada.cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut emails: Vec<&str> =
        members["data"].as_array().unwrap().iter().map(|m| m["email"].as_str().unwrap()).collect();
    emails.sort();
    assert_eq!(emails, ["ada@example.com", "bo@example.com"]);
    // Bo cannot see Ada's personal team.
    let r = c.get(format!("{base}/v1/teams/{team}/keys")).header("cookie", &bo.cookie).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_newcomer_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    newcomer_journey(&format!("sqlite://{}", dir.path().join("imgcdn.db").display())).await;
}

#[tokio::test]
async fn a_newcomer_on_postgres() {
    let Some(db) = PgDatabase::create("imgcdn_e2e") else { return };
    newcomer_journey(&db.url).await;
}

#[test]
fn a_broken_control_plane_config_reports_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cp.toml");
    std::fs::write(&cfg, "listen = \"nowhere\"\ndatabase_url = \"mysql://x\"\n[email]\ntransport = \"pigeon\"\n")
        .unwrap();
    let out = Command::new(BIN).args(["control-plane", "--config"]).arg(&cfg).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in ["listen", "database_url", "email.transport"] {
        assert!(err.contains(needle), "{needle} not reported:\n{err}");
    }
    let out = Command::new(BIN)
        .args(["control-plane", "--check", "--config"])
        .arg(&cfg)
        .env("IMGCDN_SMTP_PORT", "lots")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("IMGCDN_SMTP_PORT"));
}

#[test]
fn the_example_configs_are_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(BIN)
        .args(["control-plane", "--check", "--config"])
        .arg(root.join("config/control-plane.toml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out =
        Command::new(BIN).args(["edge", "--check", "--config"]).arg(root.join("config/edge.toml")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The control plane's logs never hold a client address, even at trace
/// level: requests from 127.0.0.2 (sign-up, login, a failed login, an
/// anonymous upload, a bad request) leave no trace of it in the output.
#[tokio::test]
async fn no_client_address_reaches_the_control_plane_logs() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cp.toml");
    std::fs::write(
        &cfg,
        format!(
            "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\ndatabase_url = \"sqlite://{}\"\ncookie_secure = false\n\
             [email]\noutbox_dir = {:?}\n[passwords]\nargon2_memory_kib = 1024\nargon2_iterations = 1\n{}",
            dir.path().join("cp.db").display(),
            dir.path().join("outbox").display().to_string(),
            fs_stores(dir.path()),
        ),
    )
    .unwrap();
    let log_path = dir.path().join("cp.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = Command::new(BIN)
        .args(["control-plane", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "trace")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut base = None;
    for _ in 0..200 {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains("control plane: http://")) {
            base = line.trim().strip_prefix("control plane: ").map(str::to_string);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let base = base.expect("control plane did not start");
    let visitor = std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));
    let c = reqwest::Client::builder().no_proxy().local_address(visitor).build().unwrap();
    let signup = json!({"email": "logs@example.com", "name": "L", "password": "tulip-Orbit-94", "age_confirmed": true});
    assert_eq!(
        c.post(format!("{base}/v1/auth/signup")).json(&signup).send().await.unwrap().status(),
        StatusCode::ACCEPTED
    );
    let wrong = json!({"email": "logs@example.com", "password": "wrong-wrong-wrong"});
    assert_eq!(
        c.post(format!("{base}/v1/auth/login")).json(&wrong).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let r = c.post(format!("{base}/v1/images")).header("content-type", "text/plain").body("x").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = common::post_image(&c, &base, None, &imgcdn_shared::testing::png(8, 8, 1)).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log_path).unwrap();
    assert!(text.contains("applied migration"), "the log was not captured:\n{text}");
    for (i, line) in text.lines().enumerate() {
        assert!(!line.contains("127.0.0.2"), "log line {i} holds the client address: {line}");
    }
}
