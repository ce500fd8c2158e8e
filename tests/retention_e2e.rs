//! Retention reaching a real edge: an image whose expiry is shortened stops
//! being served at the new expiry, even by an edge that cached it with the
//! old one.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use imgcdn_control_plane::{Config, ControlPlane};
use imgcdn_shared::clock::ManualClock;
use imgcdn_shared::storage::StoreConfig;
use reqwest::StatusCode;
use serde_json::{json, Value};

const TOKEN: &str = "edge-one-token-0123456789abcdefghijklmn";

/// A control plane in this process, on a manual clock set `behind` seconds
/// behind real time (edges read real time), serving on a free port; its
/// address and its clock.
async fn control_plane(dir: &std::path::Path, behind: i64) -> (String, Arc<ManualClock>) {
    let mut cfg = Config {
        listen: "127.0.0.1:0".into(),
        admin_listen: "127.0.0.1:0".into(),
        database_url: format!("sqlite://{}", dir.join("cp.db").display()),
        cookie_secure: false,
        ..Config::default()
    };
    cfg.email.outbox_dir = dir.join("outbox");
    cfg.passwords.argon2_memory_kib = 64;
    cfg.passwords.argon2_iterations = 1;
    for (store, name) in [
        (&mut cfg.stores.public, "store"),
        (&mut cfg.stores.staging, "staging"),
        (&mut cfg.stores.recovery, "recovery"),
    ] {
        *store = StoreConfig::fs(dir.join(name).to_string_lossy());
    }
    cfg.edge_sync.edges.insert("edge-1".into(), TOKEN.into());
    cfg.edge_sync.poll_ms = 200;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let clock = ManualClock::at(now - behind);
    let cp = ControlPlane::bind_with_clock(cfg, clock.clone() as Arc<_>).await.unwrap();
    let api = format!("http://{}", cp.local_addr());
    tokio::spawn(cp.run(std::future::pending()));
    (api, clock)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_stops_serving_at_a_shortened_expiry_even_from_its_cache() {
    let dir = tempfile::tempdir().unwrap();
    // A ttl of 300 s (the shortest) set on this clock ends 12 s from now.
    let (api, clock) = control_plane(dir.path(), 288).await;
    let opts = EdgeOpts::new(dir.path()).with_sync(&[&api], TOKEN, &dir.path().join("edge-sync"));
    let edge = EdgeProcess::start(dir.path(), &opts);
    let c = client();

    // An account with a key (legacy: unverified, 30 days) and an image.
    let r = c.post(format!("{api}/v1/keys")).json(&json!({"email": "e2e@example.com"})).send().await.unwrap();
    let key = r.json::<Value>().await.unwrap()["key"].as_str().unwrap().to_string();
    let r = post_image(&c, &api, Some(&key), &png(32, 32, 7)).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let img = r.json::<Value>().await.unwrap();
    let id = img["id"].as_str().unwrap().to_string();
    let url = format!("{}{}", edge.base, cdn_path(&img));

    // The edge caches it, told it has 30 days.
    for _ in 0..2 {
        assert_eq!(c.get(&url).send().await.unwrap().status(), StatusCode::OK);
    }
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.headers()["x-cache"], "HIT-MEMORY");
    let max_age = |r: &reqwest::Response| {
        let cc = r.headers()["cache-control"].to_str().unwrap().to_string();
        cc.split(',').find_map(|d| d.trim().strip_prefix("max-age=")).unwrap().parse::<u64>().unwrap()
    };
    assert!(max_age(&r) > 86_400, "{:?}", r.headers());

    // Shortened to end 12 s from now (the manual clock does not move by
    // itself: set it 288 s behind the real now, however long the set-up took).
    clock.set(time::OffsetDateTime::now_utc().unix_timestamp() - 288);
    let r = c.patch(format!("{api}/v1/images/{id}")).bearer_auth(&key).json(&json!({"ttl": 300})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let expires_at = r.json::<Value>().await.unwrap()["expires_at"].as_str().unwrap().to_string();
    let expires_at = time::OffsetDateTime::parse(&expires_at, &time::format_description::well_known::Rfc3339).unwrap();

    // Until then it is served, never with a max-age past the new expiry…
    eventually(Duration::from_secs(8), "the edge re-reads the manifest", || {
        let (c, url) = (c.clone(), url.clone());
        async move {
            let r = c.get(&url).send().await.unwrap();
            r.status() == StatusCode::OK && max_age(&r) <= 12
        }
    })
    .await;
    // …and from then on it is not, from any tier.
    let left = expires_at - time::OffsetDateTime::now_utc();
    tokio::time::sleep(Duration::try_from(left).unwrap_or_default() + Duration::from_secs(1)).await;
    for _ in 0..3 {
        assert_eq!(c.get(&url).send().await.unwrap().status(), StatusCode::NOT_FOUND);
    }
}
