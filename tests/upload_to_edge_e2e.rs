//! The whole path with real processes: an image uploaded through the
//! control plane (anonymously and with a key) is fetched from an edge at
//! the returned `url`, byte-identical to the stored (metadata-stripped)
//! bytes; once deleted, a fresh edge answers 404.

mod common;

use common::*;
use imgcdn_shared::testing::png_with_text;
use reqwest::StatusCode;
use serde_json::Value;

async fn upload(c: &reqwest::Client, base: &str, key: Option<&str>, file: &[u8]) -> Value {
    let r = post_image(c, base, key, file).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    r.json().await.unwrap()
}

#[tokio::test]
async fn uploaded_images_are_served_by_the_edge_until_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = EdgeOpts::new(dir.path());
    let edge = EdgeProcess::start(dir.path(), &opts);
    let cp = ControlPlaneProcess::start(dir.path(), &CpOpts::new(&edge.base));
    let api = cp.base.clone();
    let c = client();

    // Anonymous: a PNG carrying a text chunk, which the upload strips.
    let original = png_with_text(64, 48, 7, "Comment", "shot at 51.5N 0.1W");
    let img = upload(&c, &api, None, &original).await;
    assert!(img["expires_at"].is_string(), "anonymous uploads expire");
    let url = img["url"].as_str().unwrap();
    assert!(url.starts_with(&edge.base), "{url}");
    let id = img["id"].as_str().unwrap();
    let stored = std::fs::read(dir.path().join(format!("store/objects/{id}"))).unwrap();
    assert_ne!(stored, original, "the text chunk must be stripped");
    assert!(!stored.windows(4).any(|w| w == b"tEXt"));
    let r = c.get(url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap().to_vec(), stored);

    // With a key (the legacy one-call account + key).
    let r =
        c.post(format!("{api}/v1/keys")).json(&serde_json::json!({"email": "e2e@example.com"})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let key = r.json::<Value>().await.unwrap()["key"].as_str().unwrap().to_string();
    let img = upload(&c, &api, Some(&key), &png_with_text(32, 32, 8, "GPS", "secret place")).await;
    let (id, url) = (img["id"].as_str().unwrap().to_string(), img["url"].as_str().unwrap().to_string());
    let stored = std::fs::read(dir.path().join(format!("store/objects/{id}"))).unwrap();
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.headers()["x-cache"], "MISS");
    assert_eq!(r.bytes().await.unwrap().to_vec(), stored);

    // Deleted through the API: a fresh edge (empty caches) answers 404.
    let r = c.delete(format!("{api}/v1/images/{id}")).bearer_auth(&key).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    drop(edge);
    opts.disk = dir.path().join("fresh-edge-cache");
    let fresh = EdgeProcess::start(dir.path(), &opts);
    let path = url.strip_prefix(&opts_base(&url)).unwrap().to_string();
    let r = c.get(format!("{}{path}", fresh.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(dir.path().join(format!("recovery/recovery/{id}/object")).exists(), "deleted bytes go to recovery");
}

/// `http://host:port` of a URL.
fn opts_base(url: &str) -> String {
    let rest = url.strip_prefix("http://").unwrap();
    format!("http://{}", rest.split('/').next().unwrap())
}
