//! Compatibility with img.pro's published clients, call by call, against a
//! real `imgcdn dev` (its control plane and its edge, as processes).
//!
//! What the clients send and expect is taken from their documented
//! behaviour: img.pro's API documentation (the API this project is
//! compatible with, see `docs/api.md`) and what its WordPress plugin (the
//! 2.0 line: an API client class and its sync decisions) does with each
//! answer. Each test names the client's call, what the client decides from
//! the answer, and checks that our answer leads it to the right decision.
//!
//! - [`one_storage_per_app_so_the_plugins_deletions_reach_us`]: the plugin
//!   reads the first URL segment as the App's storage and drops deletions
//!   of copies whose storage differs from the one it learned.
//! - [`a_slow_upload_within_the_plugins_60_seconds_is_stored`]: the plugin
//!   gives an upload 60 s and reads a 503 as "slow down".
//! - [`a_taken_down_image_is_media_blocked_to_its_owner`]: the plugin stops
//!   pointing pages at a copy only on 403 `media_blocked`.
//! - [`usage_says_limits_are_enforced_and_a_full_app_can_still_be_probed`]:
//!   the plugin pauses uploads on a full plan only when `limits_enforced`
//!   is true, and probes write access with an empty-JSON upload.
//! - [`parallel_uploads_stop_exactly_at_the_quota`]: the plugin uploads
//!   in parallel.
//! - [`import_failures_say_whether_a_retry_can_help`]: 502 is not retried,
//!   504 is.
//! - [`validation_details_are_keyed_by_field`]: the plugin joins the
//!   reasons of each field for the admin.
//! - [`usage_reports_the_retention_of_the_credential`]: keys from the
//!   legacy `POST /v1/keys` are an unverified account's.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

impl Dev {
    /// A verified account (an img.pro "App") with a read-write and a
    /// read-only key, the way a site owner sets the plugin up.
    async fn app(&self, c: &reqwest::Client, email: &str) -> App {
        let SignedIn { cookie, csrf, team } =
            sign_up_verified(c, &self.api, &self.data.join("outbox"), email, "tulip-Orbit-94").await;
        let mut keys = Vec::new();
        for abilities in [json!(["read", "write"]), json!(["read"])] {
            let r = c
                .post(format!("{}/v1/teams/{team}/keys", self.api))
                .header("cookie", &cookie)
                .header("x-csrf-token", &csrf)
                .json(&json!({"name": "WordPress", "abilities": abilities}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::CREATED);
            keys.push(r.json::<Value>().await.unwrap()["key"].as_str().unwrap().to_string());
        }
        App { api: self.api.clone(), key: keys[0].clone(), read_key: keys[1].clone() }
    }
}

/// One App's credentials.
struct App {
    api: String,
    key: String,
    read_key: String,
}

impl App {
    /// The plugin's upload: multipart `file` with `labels` and `metadata`
    /// (the attachment it came from), and an `Idempotency-Key`.
    async fn upload(&self, c: &reqwest::Client, file: &[u8], attachment: u32) -> reqwest::Response {
        let labels = json!({"source": "wordpress"}).to_string();
        let metadata = json!({"attachment_id": attachment.to_string()}).to_string();
        let name = format!("photo-{attachment}.png");
        let (content_type, body) = form(&[
            ("file", Some(&name), file),
            ("labels", None, labels.as_bytes()),
            ("metadata", None, metadata.as_bytes()),
        ]);
        c.post(format!("{}/v1/images", self.api))
            .bearer_auth(&self.key)
            .header("idempotency-key", format!("wp-{attachment}-{}", file.len()))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    async fn get(&self, c: &reqwest::Client, path: &str) -> reqwest::Response {
        c.get(format!("{}{path}", self.api)).bearer_auth(&self.key).send().await.unwrap()
    }

    async fn usage(&self, c: &reqwest::Client) -> Value {
        let r = self.get(c, "/v1/usage").await;
        assert_eq!(r.status(), StatusCode::OK);
        r.json().await.unwrap()
    }
}

/// A multipart form of `(name, filename, value)` parts: (content type, body).
fn form(parts: &[(&str, Option<&str>, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "imgcdn-compat-boundary";
    let mut body = Vec::new();
    for (name, filename, value) in parts {
        let filename = filename.map(|f| format!("; filename=\"{f}\"")).unwrap_or_default();
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"{filename}\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(value);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// The first path segment of a CDN URL: what the plugin calls the storage.
fn storage_of(url: &str) -> String {
    let path = &url[url.find("://").map_or(0, |i| i + 3)..];
    path.split('/').nth(1).unwrap_or_default().to_string()
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or_default()
}

const PLANS: &str = "[plans.free]\nmax_images = 5\nmax_file_bytes = 70000000\nmax_svg_bytes = 10000000\n";

#[tokio::test]
async fn one_storage_per_app_so_the_plugins_deletions_reach_us() {
    let dir = tempfile::tempdir().unwrap();
    let dev = Dev::start(dir.path(), "").await;
    let c = client();
    let site = dev.app(&c, "site@example.com").await;
    let other = dev.app(&c, "other@example.com").await;

    // The plugin uploads a site's media and learns the App's storage from
    // the first URL it gets back.
    let mut images = Vec::new();
    for attachment in 0..9u32 {
        let r = site.upload(&c, &png(24, 24, attachment as u8), attachment).await;
        assert_eq!(r.status(), StatusCode::CREATED);
        images.push(r.json::<Value>().await.unwrap());
    }
    assert!(images[0]["url"].as_str().unwrap().starts_with(&format!("{}/", dev.edge)));
    let learned = storage_of(images[0]["url"].as_str().unwrap());
    // Every copy of the site is "in this App": none of its deletions is dropped.
    for img in &images {
        assert_eq!(storage_of(img["url"].as_str().unwrap()), learned, "{img}");
        for size in ["small", "medium", "large"] {
            assert_eq!(storage_of(img["sizes"][size]["url"].as_str().unwrap()), learned);
        }
    }
    // Listing and fetching say the same.
    let list: Value = site.get(&c, "/v1/images?limit=100").await.json().await.unwrap();
    for img in list["data"].as_array().unwrap() {
        assert_eq!(storage_of(img["url"].as_str().unwrap()), learned);
    }
    // Another App's copies are "in another App".
    let r = other.upload(&c, &png(24, 24, 99), 1).await;
    let elsewhere = r.json::<Value>().await.unwrap();
    assert_ne!(storage_of(elsewhere["url"].as_str().unwrap()), learned);

    // The edge serves each copy under its App's storage only.
    let url = images[0]["url"].as_str().unwrap().to_string();
    assert_eq!(c.get(&url).send().await.unwrap().status(), StatusCode::OK);
    let under_other = url.replacen(&learned, &storage_of(elsewhere["url"].as_str().unwrap()), 1);
    assert_eq!(c.get(&under_other).send().await.unwrap().status(), StatusCode::NOT_FOUND);

    // The queued deletions all reach us (`DELETE /v1/images/{id}`, then the
    // batch form for the rest), and the plan gets its room back.
    assert_eq!(site.usage(&c).await["limits"]["images"]["used"], 9);
    for img in &images[..4] {
        let r = c.delete(format!("{}/v1/images/{}", site.api, img["id"].as_str().unwrap())).bearer_auth(&site.key);
        assert_eq!(r.send().await.unwrap().status(), StatusCode::OK);
    }
    let ids: Vec<&str> = images[4..].iter().map(|i| i["id"].as_str().unwrap()).collect();
    let r = c.delete(format!("{}/v1/images/batch", site.api)).bearer_auth(&site.key).json(&json!({"ids": ids}));
    let batch: Value = r.send().await.unwrap().json().await.unwrap();
    assert_eq!(batch["data"].as_array().unwrap().len(), 5, "{batch}");
    assert_eq!(site.usage(&c).await["limits"]["images"]["used"], 0);
    // Gone from the edge too (it is told, and drops its copy).
    eventually(Duration::from_secs(10), "the deleted copy is gone from the edge", || async {
        c.get(&url).send().await.unwrap().status() == StatusCode::NOT_FOUND
    })
    .await;
}

#[tokio::test]
async fn a_slow_upload_within_the_plugins_60_seconds_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let dev = Dev::start(dir.path(), "").await;
    let c = client();
    let site = dev.app(&c, "slow@example.com").await;
    // A 4.9 MB photo from a slow host: 150 kB/s, past the 30 s that used to
    // cut uploads off with an empty 503, within the plugin's 60 s.
    let (content_type, body) = multipart(&png(1280, 1280, 3));
    let addr: SocketAddr = site.api.trim_start_matches("http://").parse().unwrap();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /v1/images HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {}\r\ncontent-type: {content_type}\r\n\
         content-length: {}\r\nidempotency-key: wp-slow-1\r\nconnection: close\r\n\r\n",
        site.key,
        body.len()
    );
    let started = Instant::now();
    s.write_all(head.as_bytes()).await.unwrap();
    for chunk in body.chunks(15_000) {
        s.write_all(chunk).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).await.unwrap();
    let took = started.elapsed();
    let answer = String::from_utf8_lossy(&answer);
    assert!(took > Duration::from_secs(30), "the upload must outlast the old cut-off (took {took:?})");
    assert!(answer.starts_with("HTTP/1.1 201"), "{}", &answer[..answer.len().min(400)]);
    let img: Value = serde_json::from_str(&answer[answer.find("\r\n\r\n").unwrap() + 4..]).unwrap();
    // The plugin's retry with the same key (it never saw the answer) gets
    // the same image, not a second one and not a conflict.
    let (content_type, body) = multipart(&png(1280, 1280, 3));
    let again = c
        .post(format!("{}/v1/images", site.api))
        .bearer_auth(&site.key)
        .header("idempotency-key", "wp-slow-1")
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(again.json::<Value>().await.unwrap()["id"], img["id"]);
    assert_eq!(site.usage(&c).await["limits"]["images"]["used"], 1);
    assert_eq!(c.get(img["url"].as_str().unwrap()).send().await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn a_taken_down_image_is_media_blocked_to_its_owner() {
    let dir = tempfile::tempdir().unwrap();
    let dev = Dev::start(dir.path(), "").await;
    let c = client();
    let site = dev.app(&c, "blocked@example.com").await;
    let mut ids = Vec::new();
    for attachment in 0..2u32 {
        let r = site.upload(&c, &png(20, 20, 40 + attachment as u8), attachment).await;
        ids.push(r.json::<Value>().await.unwrap());
    }
    let (taken, kept) = (ids[0]["id"].as_str().unwrap(), ids[1]["id"].as_str().unwrap());
    let op = dev.operator();
    let r = c
        .post(format!("{}/v1/admin/images/{taken}/takedown", dev.api))
        .bearer_auth(&op)
        .json(&json!({"reason": "copyright", "note": "notice 12"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // The plugin checks each copy it points pages at: 403 media_blocked
    // makes it point them back at the site's own file.
    let r = site.get(&c, &format!("/v1/images/{taken}")).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(code(&r.json().await.unwrap()), "media_blocked");
    let r = site.get(&c, &format!("/v1/images/{kept}")).await;
    assert_eq!(r.status(), StatusCode::OK);
    // Batch lookups and label lists leave it out (not servable).
    let r: Value = site.get(&c, &format!("/v1/images?ids={taken},{kept}")).await.json().await.unwrap();
    let listed: Vec<&str> = r["data"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(listed, [kept]);
    let r: Value = site.get(&c, "/v1/images?label[source]=wordpress").await.json().await.unwrap();
    let listed: Vec<&str> = r["data"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(listed, [kept]);
    // Visitors get 451 from the edge.
    let url = ids[0]["url"].as_str().unwrap().to_string();
    eventually(Duration::from_secs(10), "451 at the edge", || async {
        c.get(&url).send().await.unwrap().status().as_u16() == 451
    })
    .await;
}

#[tokio::test]
async fn usage_says_limits_are_enforced_and_a_full_app_can_still_be_probed() {
    let dir = tempfile::tempdir().unwrap();
    let dev = Dev::start(dir.path(), PLANS).await;
    let c = client();
    let site = dev.app(&c, "full@example.com").await;
    // Room: the plugin reads `limits_enforced` and the count.
    let usage = site.usage(&c).await;
    assert_eq!(usage["limits_enforced"], true, "{usage}");
    assert_eq!(usage["limits"]["images"]["limit"], 5);
    for attachment in 0..5u32 {
        assert_eq!(site.upload(&c, &png(10, 10, attachment as u8), attachment).await.status(), StatusCode::CREATED);
    }
    // Full: usage says so (the plugin pauses), an upload is refused with the
    // quota error (it pauses too, and tells the admin the App is full).
    let usage = site.usage(&c).await;
    assert_eq!((usage["limits_enforced"].clone(), usage["limits"]["images"]["used"].clone()), (json!(true), json!(5)));
    let r = site.upload(&c, &png(10, 10, 77), 77).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(code(&r.json().await.unwrap()), "quota_exceeded");

    // Reconnecting the full App: the write probe is an empty JSON upload.
    // 422 means "this key can write"; 403 "read-only"; nothing is created.
    let probe = |key: &str| {
        c.post(format!("{}/v1/images", site.api))
            .bearer_auth(key)
            .header("content-type", "application/json")
            .body("{}")
            .send()
    };
    let r = probe(&site.key).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_ne!(code(&r.json().await.unwrap()), "quota_exceeded");
    let r = probe(&site.read_key).await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_ne!(code(&r.json().await.unwrap()), "quota_exceeded");
    assert_eq!(site.usage(&c).await["limits"]["images"]["used"], 5);

    // A deletion gives room back, and the usage says it.
    let list: Value = site.get(&c, "/v1/images").await.json().await.unwrap();
    let id = list["data"][0]["id"].as_str().unwrap();
    let r = c.delete(format!("{}/v1/images/{id}", site.api)).bearer_auth(&site.key).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(site.usage(&c).await["limits"]["images"]["used"], 4);
    assert_eq!(site.upload(&c, &png(10, 10, 78), 78).await.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn parallel_uploads_stop_exactly_at_the_quota() {
    let dir = tempfile::tempdir().unwrap();
    let dev = Dev::start(dir.path(), PLANS).await;
    let c = client();
    let site = dev.app(&c, "parallel@example.com").await;
    let files: Vec<Vec<u8>> = (0..8u8).map(|i| png(64, 64, 100 + i)).collect();
    let site = std::sync::Arc::new(site);
    let uploads: Vec<_> = files
        .into_iter()
        .enumerate()
        .map(|(i, f)| {
            let (site, c) = (site.clone(), c.clone());
            tokio::spawn(async move { site.upload(&c, &f, i as u32).await.status() })
        })
        .collect();
    let mut answers = Vec::new();
    for u in uploads {
        answers.push(u.await.unwrap());
    }
    let created = answers.iter().filter(|s| **s == StatusCode::CREATED).count();
    let refused = answers.iter().filter(|s| **s == StatusCode::FORBIDDEN).count();
    assert_eq!((created, refused), (5, 3));
    assert_eq!(site.usage(&c).await["limits"]["images"]["used"], 5);
}

#[tokio::test]
async fn import_failures_say_whether_a_retry_can_help() {
    // Sources on loopback, allowed for this test only (imports reach
    // public addresses only: a private one is refused, 422, on purpose).
    let failing = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (failing_addr, silent_addr) = (failing.local_addr().unwrap(), silent.local_addr().unwrap());
    let closed = free_addr();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = failing.accept().await {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n").await;
        }
    });
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let config = format!(
        "[uploads]\nimport_allow = [\"{failing_addr}\", \"{silent_addr}\", \"{closed}\"]\nimport_timeout_secs = 2\n"
    );
    let dir = tempfile::tempdir().unwrap();
    let dev = Dev::start(dir.path(), &config).await;
    let c = client();
    let site = dev.app(&c, "import@example.com").await;
    let import = |url: String| {
        c.post(format!("{}/v1/images", site.api)).bearer_auth(&site.key).json(&json!({"url": url})).send()
    };
    // The source answers an error, or nothing listens: 502, not retried.
    for url in [format!("http://{failing_addr}/a.jpg"), format!("http://{closed}/a.jpg")] {
        let r = import(url.clone()).await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_GATEWAY, "{url}");
        assert_eq!(code(&r.json().await.unwrap()), "fetch_failed");
    }
    // The source is too slow: 504, retried later.
    let r = import(format!("http://{silent_addr}/a.jpg")).await.unwrap();
    assert_eq!(r.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(code(&r.json().await.unwrap()), "fetch_failed");
    // Different on purpose: a private address is refused outright.
    let r = import("http://10.1.2.3/a.jpg".into()).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(code(&r.json().await.unwrap()), "fetch_failed");
    assert_eq!(site.usage(&c).await["limits"]["images"]["used"], 0);
}

#[tokio::test]
async fn validation_details_are_keyed_by_field() {
    let dir = tempfile::tempdir().unwrap();
    let dev = Dev::start(dir.path(), "").await;
    let c = client();
    let site = dev.app(&c, "details@example.com").await;
    // The plugin shows the admin each field's reasons, joined.
    let r =
        c.post(format!("{}/v1/images", site.api)).bearer_auth(&site.key).json(&json!({"url": 5})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let v: Value = r.json().await.unwrap();
    let reasons = v["error"]["details"]["url"].as_array().unwrap_or_else(|| panic!("details by field: {v}"));
    assert!(!reasons.is_empty() && reasons.iter().all(|r| r.as_str().is_some_and(|s| !s.is_empty())), "{v}");
    // A field of the wrong type is named too, by its name.
    let r = c
        .post(format!("{}/v1/images", site.api))
        .bearer_auth(&site.key)
        .json(&json!({"url": "https://example.org/a.jpg", "caption": 7}))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert!(v["error"]["details"]["caption"].is_array(), "{v}");
    // An upload with no file names `file`.
    let (content_type, body) = form(&[("caption", None, b"no file")]);
    let r = c
        .post(format!("{}/v1/images", site.api))
        .bearer_auth(&site.key)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert!(v["error"]["details"]["file"].is_array(), "{v}");
}

#[tokio::test]
async fn usage_reports_the_retention_of_the_credential() {
    let dir = tempfile::tempdir().unwrap();
    let dev = Dev::start(dir.path(), "").await;
    let c = client();
    // A key from the legacy route: an unverified account's, 30 days.
    let r = c.post(format!("{}/v1/keys", dev.api)).json(&json!({"email": "legacy@example.com"})).send().await.unwrap();
    assert!(r.status().is_success());
    let legacy = App {
        api: dev.api.clone(),
        key: r.json::<Value>().await.unwrap()["key"].as_str().unwrap().to_string(),
        read_key: String::new(),
    };
    let usage = legacy.usage(&c).await;
    assert_eq!(usage["limits"]["retention_days"], 30, "{usage}");
    // And that is what an upload with it gets.
    let img: Value = legacy.upload(&c, &png(10, 10, 5), 1).await.json().await.unwrap();
    let (created, expires) = (img["created_at"].as_str().unwrap(), img["expires_at"].as_str().unwrap());
    let parse = |s: &str| time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap();
    assert_eq!((parse(expires) - parse(created)).whole_days(), 30);
    // A verified account's key: kept until deleted, and usage says null.
    let verified = dev.app(&c, "kept@example.com").await;
    assert_eq!(verified.usage(&c).await["limits"]["retention_days"], Value::Null);
    let img: Value = verified.upload(&c, &png(10, 10, 6), 1).await.json().await.unwrap();
    assert_eq!(img["expires_at"], Value::Null);
}
