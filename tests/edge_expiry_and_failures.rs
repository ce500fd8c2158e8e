//! End-to-end: expiry, storage failures, shutdown and bad configuration.

mod common;

use std::time::Duration;

use common::*;
use imgcdn_shared::{Format, ImageId, ImagePath};
use reqwest::StatusCode;
use time::OffsetDateTime;

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers().get(name).map(|v| v.to_str().unwrap().to_string()).unwrap_or_default()
}

#[tokio::test]
async fn an_already_expired_image_is_404_though_its_bytes_are_stored() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path().join("store"));
    let path = store.publish(&png(8, 8, 1), Some(OffsetDateTime::now_utc() - time::Duration::seconds(1)));
    let edge = EdgeProcess::start(dir.path(), &EdgeOpts::new(dir.path()));
    let r = client().get(edge.url(&path)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(store.object_path(&path.id).exists());
    assert_eq!(edge.metric("imgcdn_edge_cache_entries{tier=\"memory\"}"), 0.0);
}

#[tokio::test]
async fn an_image_stops_being_served_at_expiry_and_leaves_both_caches() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path().join("store"));
    let opts = EdgeOpts::new(dir.path());
    let edge = EdgeProcess::start(dir.path(), &opts);
    // Published once the edge is up (it reads the store per request), so
    // the time to expiry is the test's alone, however long a start takes.
    let expires = OffsetDateTime::now_utc() + time::Duration::seconds(6);
    let path = store.publish(&png(8, 8, 2), Some(expires));
    let c = client();
    let r = c.get(edge.url(&path)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let max_age: i64 = header(&r, "cache-control")
        .trim_start_matches("public, max-age=")
        .trim_end_matches(", immutable")
        .parse()
        .unwrap();
    assert!((0..=6).contains(&max_age), "max-age {max_age} goes past expiry");
    // Wait for the disk copy, then for expiry.
    let disk = opts.disk.clone();
    let id = path.id.to_string();
    let on_disk = || files_under(&disk).iter().any(|p| p.file_name().unwrap().to_string_lossy().starts_with(&id));
    for _ in 0..100 {
        if on_disk() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(on_disk(), "never written to disk");
    assert_eq!(header(&c.get(edge.url(&path)).send().await.unwrap(), "x-cache"), "HIT-MEMORY");

    let wait = expires - OffsetDateTime::now_utc() + time::Duration::milliseconds(1100);
    tokio::time::sleep(Duration::from_millis(wait.whole_milliseconds().max(0) as u64)).await;
    let r = c.get(edge.url(&path)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(store.object_path(&path.id).exists(), "the test relies on the bytes still being stored");
    assert_eq!(edge.metric("imgcdn_edge_cache_entries{tier=\"memory\"}"), 0.0);
    assert_eq!(edge.metric("imgcdn_edge_cache_entries{tier=\"disk\"}"), 0.0);
    assert!(!on_disk(), "expired entry left on disk");
}

/// Store config for an S3 endpoint at `addr` (nothing real behind it).
fn s3_at(addr: std::net::SocketAddr) -> String {
    format!(
        "scheme = \"s3\"\nbucket = \"imgcdn\"\nregion = \"us-east-1\"\nendpoint = \"http://{addr}\"\n\
         access_key_id = \"test\"\nsecret_access_key = \"test\"\n"
    )
}

#[tokio::test]
async fn with_storage_down_cached_images_are_served_and_misses_get_502() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path().join("store"));
    let image = png(16, 16, 3);
    let path = store.publish(&image, None);
    let mut opts = EdgeOpts::new(dir.path());
    let edge = EdgeProcess::start(dir.path(), &opts);
    let c = client();
    assert_eq!(c.get(edge.url(&path)).send().await.unwrap().status(), StatusCode::OK);
    // Let the disk write land, then restart against a store that refuses connections.
    for _ in 0..100 {
        if !files_under(&opts.disk).iter().all(|p| p.starts_with(opts.disk.join("tmp"))) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(edge.stop().success());
    opts.store_toml = s3_at(free_addr());
    // Not ready (the store never answered), but it serves what it has.
    let edge = EdgeProcess::start_unready(dir.path(), &opts);
    assert!(!edge.is_ready());
    let r = c.get(edge.url(&path)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "x-cache"), "HIT-DISK");
    assert_eq!(&r.bytes().await.unwrap()[..], &image[..]);

    let other = ImagePath::new(ImageId::generate(), Format::Png);
    let r = c.get(format!("{}{other}", edge.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(r.text().await.unwrap(), "bad gateway\n", "internal detail leaked");
    assert_eq!(edge.metric("imgcdn_edge_origin_errors_total{kind=\"unavailable\"}"), 1.0);
}

#[tokio::test]
async fn a_storage_that_never_answers_gives_504_within_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    // Accepts connections and never says a word.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let hold = std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in silent.incoming().take(4).flatten() {
            held.push(s);
        }
        std::thread::sleep(Duration::from_secs(5));
    });
    let mut opts = EdgeOpts::new(dir.path());
    opts.store_toml = s3_at(addr);
    opts.origin_timeout_ms = 300;
    let edge = EdgeProcess::start_unready(dir.path(), &opts);
    let other = ImagePath::new(ImageId::generate(), Format::Png);
    let r = client().get(format!("{}{other}", edge.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(r.text().await.unwrap(), "gateway timeout\n");
    assert_eq!(edge.metric("imgcdn_edge_origin_errors_total{kind=\"timeout\"}"), 1.0);
    drop(edge);
    drop(hold);
}

/// SIGTERM drains: a response in flight when it arrives is sent whole,
/// new connections are refused at once, and the process exits within
/// `shutdown_timeout_secs`.
#[test]
fn sigterm_drains_an_in_flight_response_and_refuses_new_connections() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path().join("store"));
    // Incompressible and large: served from the disk tier, chunk by chunk.
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let body: Vec<u8> = (0..6_000_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let path = store.publish(&body, None);
    let mut opts = EdgeOpts::new(dir.path());
    opts.memory_max_object_bytes = 1 << 20;
    // A grace period well past the ~2.4 s the slow read below takes, with
    // room for a loaded machine.
    opts.grace_period_secs = 7;
    opts.shutdown_timeout_secs = 9;
    let mut edge = EdgeProcess::start(dir.path(), &opts);
    let host = edge.base.strip_prefix("http://").unwrap().to_string();
    // Warm the disk tier.
    let mut w = std::net::TcpStream::connect(&host).unwrap();
    write!(w, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").unwrap();
    let warm = read_raw_response(&mut std::io::BufReader::new(w), false).unwrap();
    assert_eq!(warm.status, 200);

    // A slow reader: ~2.5 MB/s, so the 6 MB body takes ~2.4 s.
    let mut s = std::net::TcpStream::connect(&host).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    while got.len() < 256 * 1024 {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    let head_end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(got.starts_with(b"HTTP/1.1 200"));
    let signalled = std::time::Instant::now();
    edge.terminate();

    // New connections are refused while the response drains.
    let mut refused = false;
    for _ in 0..50 {
        if std::net::TcpStream::connect(&host).is_err() {
            refused = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(refused, "still accepting connections after SIGTERM");

    while got.len() - head_end < body.len() {
        let n = s.read(&mut buf).unwrap_or(0);
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        std::thread::sleep(Duration::from_millis(25));
    }
    let finished = signalled.elapsed();
    assert!(finished > Duration::from_millis(1000), "the response was not in flight long ({finished:?})");
    assert_eq!(got.len() - head_end, body.len(), "the in-flight response was cut after {finished:?}");
    assert!(got[head_end..] == body[..], "the in-flight response body is wrong");

    let status = edge.wait_exit(Duration::from_secs(opts.shutdown_timeout_secs + 1));
    let exited = signalled.elapsed();
    let status = status.unwrap_or_else(|| panic!("still running {exited:?} after SIGTERM"));
    assert!(status.success(), "{status:?}");
    assert!(exited <= Duration::from_secs(opts.shutdown_timeout_secs) + Duration::from_millis(500), "{exited:?}");
}

#[test]
fn a_broken_config_reports_every_problem_and_starts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("edge.toml");
    std::fs::write(
        &cfg,
        "listen = [\"not-an-address\"]\nadmin_listen = \"also bad\"\nthreads = 0\n[store]\nscheme = \"s3\"\n[origin]\ntimeout_ms = 0\n",
    )
    .unwrap();
    let out = std::process::Command::new(BIN).args(["edge", "--config"]).arg(&cfg).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in ["listen[0]", "admin_listen", "threads", "store.bucket", "origin.timeout_ms"] {
        assert!(err.contains(needle), "{needle} not reported in:\n{err}");
    }

    std::fs::write(&cfg, "listen = [\"127.0.0.1:1\"]\n[stor]\n").unwrap();
    let out = std::process::Command::new(BIN).args(["edge", "--config"]).arg(&cfg).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown field"));
}

#[tokio::test]
async fn dev_serves_an_image_put_into_its_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let file = dir.path().join("cat.png");
    let image = png(20, 10, 9);
    std::fs::write(&file, &image).unwrap();
    let (public, admin, api) = (free_addr(), free_addr(), free_addr());
    let out = std::process::Command::new(BIN)
        .args(["put", "--base-url", &format!("http://{public}"), "--data-dir"])
        .arg(&data)
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let url = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(url.ends_with(".png"), "{url}");

    let mut child = std::process::Command::new(BIN)
        .args(["dev", "--listen", &public.to_string(), "--admin-listen", &admin.to_string()])
        .args(["--api-listen", &api.to_string(), "--api-admin-listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Ready once its edge has the edge-sync snapshot from its control plane
    // (until then it answers 503: it does not know what is taken down).
    for _ in 0..200 {
        if ureq_get(&format!("http://{admin}/readyz")).is_ok_and(|r| r.0 == 200) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut got = None;
    for _ in 0..200 {
        if let Ok(r) = client().get(&url).send().await {
            got = Some((header(&r, "x-cache"), r.bytes().await.unwrap()));
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (tier, body) = got.expect("dev never answered");
    assert_eq!(tier, "MISS");
    assert_eq!(&body[..], &image[..]);
    let r = client().get(&url).send().await.unwrap();
    assert_eq!(header(&r, "x-cache"), "HIT-MEMORY");
    assert!(files_under(&data.join("edge-cache")).len() <= 1);

    // The control plane of `dev` publishes where its edge reads and points URLs at it.
    let other = png(16, 16, 10);
    let r = post_image(&client(), &format!("http://{api}"), None, &other).await;
    assert_eq!(r.status(), reqwest::StatusCode::CREATED);
    let img: serde_json::Value = r.json().await.unwrap();
    let served = client().get(img["url"].as_str().unwrap()).send().await.unwrap();
    assert!(img["url"].as_str().unwrap().starts_with(&format!("http://{public}/")));
    assert_eq!(served.status(), StatusCode::OK);
    assert_eq!(&served.bytes().await.unwrap()[..], &other[..]);
    let _ = child.kill();
    let _ = child.wait();
}
