//! Production storage as the README configures it, against a real S3 server
//! that checks request signatures (`s3s-fs`, installed by `scripts/setup`):
//!
//! - the control plane with `access_key_id` in the file and the secret in
//!   `AWS_SECRET_ACCESS_KEY`, the edge with both halves in the environment;
//! - both under one key prefix (`root`), which they must agree on;
//! - upload → edge MISS then HIT → delete (bytes to the recovery store) →
//!   a fresh edge answers 404;
//! - a wrong secret: the control plane refuses to start and says which
//!   store; the edge never says it is ready and its log says why.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use imgcdn_shared::testing::png_with_text;
use reqwest::StatusCode;
use serde_json::Value;

const ACCESS_KEY: &str = "AKIMGCDNTEST";
const SECRET_KEY: &str = "imgcdn-test-secret-0123456789";
const BUCKET: &str = "imgcdn";

/// A running `s3s-fs`, killed on drop.
struct S3Server {
    child: Child,
    endpoint: String,
    root: PathBuf,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `s3s-fs` on a free port serving `dir` (its subfolders are buckets), or
/// `None` when it is not installed (outside CI).
fn s3_server(dir: &Path) -> Option<S3Server> {
    let bin = which("s3s-fs");
    if bin.is_none() {
        assert!(std::env::var_os("CI").is_none(), "s3s-fs is not installed: scripts/setup installs it");
        eprintln!("SKIPPED: s3s-fs is not installed (scripts/setup installs it)");
        return None;
    }
    let root = dir.join("s3");
    std::fs::create_dir_all(root.join(BUCKET)).unwrap();
    let addr = free_addr();
    let child = Command::new(bin.unwrap())
        .args(["--host", "127.0.0.1", "--port", &addr.port().to_string()])
        .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
        .arg(&root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn s3s-fs");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "s3s-fs did not listen on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(S3Server { child, endpoint: format!("http://{addr}"), root })
}

fn which(name: &str) -> Option<PathBuf> {
    let home_bin = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin"));
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(home_bin)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// One S3 store section: the bucket, a prefix, the endpoint; the access key
/// id in the file only when `key_in_file`.
fn s3_store(s3: &S3Server, root: &str, key_in_file: bool) -> String {
    let key = if key_in_file { format!("access_key_id = \"{ACCESS_KEY}\"\n") } else { String::new() };
    format!(
        "scheme = \"s3\"\nbucket = \"{BUCKET}\"\nregion = \"us-east-1\"\nendpoint = \"{}\"\nroot = \"{root}\"\n{key}",
        s3.endpoint
    )
}

fn cp_opts(s3: &S3Server, edge_base: &str, secret: &str) -> CpOpts {
    let stores = ["public", "staging", "recovery"]
        .iter()
        .map(|name| format!("[stores.{name}]\n{}", s3_store(s3, &format!("/prod/{name}"), true)))
        .collect::<String>();
    CpOpts {
        stores_toml: Some(stores),
        env: vec![("AWS_SECRET_ACCESS_KEY".into(), secret.into())],
        ..CpOpts::new(edge_base)
    }
}

fn edge_opts(dir: &Path, s3: &S3Server, secret: &str) -> EdgeOpts {
    let mut opts = EdgeOpts::new(dir);
    opts.store_toml = s3_store(s3, "/prod/public", false);
    opts.env = vec![
        ("AWS_ACCESS_KEY_ID".into(), ACCESS_KEY.into()),
        ("AWS_SECRET_ACCESS_KEY".into(), secret.into()),
        // Neither program may look elsewhere for credentials.
        ("AWS_CONFIG_FILE".into(), "/nonexistent".into()),
    ];
    opts
}

#[tokio::test]
async fn images_go_through_s3_with_split_credentials_and_a_shared_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let Some(s3) = s3_server(dir.path()) else { return };
    let edge = EdgeProcess::start(dir.path(), &edge_opts(dir.path(), &s3, SECRET_KEY));
    let cp = ControlPlaneProcess::start(dir.path(), &cp_opts(&s3, &edge.base, SECRET_KEY));
    let c = client();

    let r = c.post(format!("{}/v1/keys", cp.base)).json(&serde_json::json!({"email": "s3@example.com"})).send().await;
    let key = r.unwrap().json::<Value>().await.unwrap()["key"].as_str().unwrap().to_string();
    let r = post_image(&c, &cp.base, Some(&key), &png_with_text(48, 32, 3, "Comment", "to be stripped")).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let img: Value = r.json().await.unwrap();
    assert_eq!(img["status"], "ready");
    let (id, url) = (img["id"].as_str().unwrap().to_string(), img["url"].as_str().unwrap().to_string());

    // The bytes are in the bucket under the configured prefix (the server
    // keeps each object as a file), nowhere else.
    let object = s3.root.join(BUCKET).join(format!("prod/public/objects/{id}"));
    let stored = std::fs::read(&object).unwrap_or_else(|e| {
        panic!("{}: {e}; the bucket holds {:?}", object.display(), files_under(&s3.root.join(BUCKET)))
    });
    assert!(!dir.path().join("store").exists(), "nothing falls back to the fs default root");

    // The edge reads the same prefix: a miss, then a memory hit.
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", edge.log());
    assert_eq!(r.headers()["x-cache"], "MISS");
    assert_eq!(r.bytes().await.unwrap().to_vec(), stored);
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.headers()["x-cache"], "HIT-MEMORY");

    // Deleted: out of the public prefix, its bytes kept in the recovery
    // store; an edge with empty caches answers 404.
    let r = c.delete(format!("{}/v1/images/{id}", cp.base)).bearer_auth(&key).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(!object.exists(), "the public copy is gone");
    let recovered = files_under(&s3.root.join(BUCKET).join("prod/recovery"));
    assert!(
        recovered.iter().any(|f| std::fs::read(f).is_ok_and(|b| b == stored)),
        "the bytes are in the recovery store: {recovered:?}"
    );
    let path = url.strip_prefix(&edge.base).unwrap().to_string();
    drop(edge);
    let mut fresh = edge_opts(dir.path(), &s3, SECRET_KEY);
    fresh.disk = dir.path().join("fresh-cache");
    let fresh = EdgeProcess::start(dir.path(), &fresh);
    let r = c.get(format!("{}{path}", fresh.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_wrong_secret_stops_the_control_plane_and_keeps_the_edge_unready() {
    let dir = tempfile::tempdir().unwrap();
    let Some(s3) = s3_server(dir.path()) else { return };

    // The control plane exits at start, naming the store and the step.
    let (_, mut command) = ControlPlaneProcess::command(dir.path(), &cp_opts(&s3, "http://edge.invalid", "wrong"));
    let out = command.stdin(Stdio::null()).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started with a wrong secret: {stderr}");
    assert!(stderr.contains("stores.public: cannot write"), "{stderr}");

    // The edge runs but never says it is ready, and its log says why, naming
    // the store's address (the operator's own, not masked).
    let edge = EdgeProcess::start_unready(dir.path(), &edge_opts(dir.path(), &s3, "wrong"));
    // Unready all along; polled until its first store check has failed and
    // both say so (on a loaded machine that may take a while).
    eventually(Duration::from_secs(20), "/readyz and the log name the store", || async {
        let (status, why) = ureq_get(&format!("{}/readyz", edge.admin)).unwrap();
        assert_eq!(status, 503, "{why}");
        why.contains("store") && edge.log().contains("the store does not answer")
    })
    .await;
    let log = edge.log();
    assert!(log.contains("the store does not answer"), "{log}");
    let port = s3.endpoint.rsplit(':').next().unwrap();
    assert!(log.contains(&format!("127.0.0.1:{port}")), "the store's address is legible: {log}");
}
