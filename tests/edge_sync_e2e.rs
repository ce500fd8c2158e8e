//! Edge sync with real processes: a takedown, a hide, a warning and a
//! restore made through the control plane reach running edges, which
//! purge their caches, persist what they applied, and keep enforcing it
//! with the control plane gone.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

const TOKEN_1: &str = "edge-one-token-0123456789abcdefghijklmn";
const TOKEN_2: &str = "edge-two-token-0123456789abcdefghijklmn";
/// How long a change may take to reach an edge in these tests (a bound for
/// behaviour, not a performance figure: see benches/sync for those).
const WITHIN: Duration = Duration::from_secs(10);

fn edge_sync_toml(snapshot_after: u64) -> String {
    format!(
        "[edge_sync]\npoll_ms = 200\nsnapshot_after = {snapshot_after}\n[edge_sync.edges]\n\"edge-1\" = {TOKEN_1:?}\n\"edge-2\" = {TOKEN_2:?}\n"
    )
}

fn cp_opts(database_url: Option<String>, snapshot_after: u64) -> CpOpts {
    CpOpts { database_url, extra_toml: edge_sync_toml(snapshot_after), ..CpOpts::new("http://edge.invalid") }
}

async fn api_key(c: &reqwest::Client, api: &str, email: &str) -> String {
    let r = c.post(format!("{api}/v1/keys")).json(&json!({ "email": email })).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    r.json::<Value>().await.unwrap()["key"].as_str().unwrap().to_string()
}

/// Upload a PNG; returns its id and its CDN path.
async fn upload(c: &reqwest::Client, api: &str, key: &str, seed: u8) -> (String, String) {
    let r = post_image(c, api, Some(key), &png(16, 16, seed)).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let img = r.json::<Value>().await.unwrap();
    (img["id"].as_str().unwrap().to_string(), cdn_path(&img))
}

async fn operator(c: &reqwest::Client, api: &str, op: &str, id: &str, what: &str, body: Value) -> Value {
    let r = c.post(format!("{api}/v1/admin/images/{id}/{what}")).bearer_auth(op).json(&body).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

async fn status(c: &reqwest::Client, url: &str) -> u16 {
    c.get(url).send().await.map(|r| r.status().as_u16()).unwrap_or(0)
}

/// Whether any file of the disk tier holds `bytes`.
fn disk_holds(cache: &Path, bytes: &[u8]) -> bool {
    files_under(cache)
        .iter()
        .filter_map(|f| std::fs::read(f).ok())
        .any(|data| data.windows(bytes.len()).any(|w| w == bytes))
}

#[tokio::test]
async fn takedown_restore_and_warn_reach_the_edge_and_a_restarted_edge_still_enforces_them() {
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlaneProcess::start(dir.path(), &cp_opts(None, 10_000));
    let op = cp.create_operator("ops");
    let state = dir.path().join("edge-1-sync.json");
    let mut opts = EdgeOpts::new(dir.path()).with_sync(&[&cp.base], TOKEN_1, &state);
    // Remember "not found" for a minute, as in production: a restore must
    // still be served at once.
    opts.negative_ttl_secs = 60;
    let edge = EdgeProcess::start(dir.path(), &opts);
    let c = client();
    let key = api_key(&c, &cp.base, "sync@example.com").await;
    let (id, path) = upload(&c, &cp.base, &key, 1).await;
    let (other, other_path) = upload(&c, &cp.base, &key, 2).await;
    let stored = std::fs::read(dir.path().join(format!("store/objects/{id}"))).unwrap();
    let url = format!("{}{path}", edge.base);

    // Served and cached in both tiers.
    assert_eq!(c.get(&url).send().await.unwrap().headers()["x-cache"], "MISS");
    assert_eq!(c.get(&url).send().await.unwrap().headers()["x-cache"], "HIT-MEMORY");
    assert_eq!(status(&c, &format!("{}{other_path}", edge.base)).await, 200);
    eventually(WITHIN, "written to the disk tier", || async { disk_holds(&opts.disk, &stored) }).await;

    // Two variants of it, cached too.
    let variants = [format!("{url}?w=8"), format!("{url}?w=4&format=webp")];
    for v in &variants {
        assert_eq!(c.get(v).send().await.unwrap().headers()["x-cache"], "MISS");
        assert_eq!(c.get(v).send().await.unwrap().headers()["x-cache"], "HIT-MEMORY");
    }
    assert_eq!(edge.metric("imgcdn_edge_cache_entries{tier=\"variants\"}"), 2.0);
    let variant_files =
        || files_under(&opts.disk).iter().filter(|p| p.to_string_lossy().contains(&format!("{id}-"))).count();
    eventually(WITHIN, "variants written to the disk tier", || async { variant_files() == 2 }).await;

    // Takedown: 451 with a link to the policy and nothing else; bytes gone.
    let r = operator(&c, &cp.base, &op, &id, "takedown", json!({"reason": "copyright", "note": "notice 7"})).await;
    let seq = r["change"]["seq"].as_u64().unwrap();
    eventually(WITHIN, "451 at the edge", || async { status(&c, &url).await == 451 }).await;
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.headers()["link"], format!("<{}/legal/takedowns>; rel=\"blocked-by\"", cp.base));
    let body = r.text().await.unwrap();
    assert!(!body.contains("copyright") && !body.contains("notice"), "no detail: {body}");
    // The state is swapped before the purge runs: allow it a moment.
    eventually(WITHIN, "purged from the disk tier", || async { !disk_holds(&opts.disk, &stored) }).await;
    eventually(WITHIN, "only the other image stays in memory", || async {
        edge.metric("imgcdn_edge_cache_entries{tier=\"memory\"}") == 1.0
    })
    .await;
    // Every variant is 451 too, and gone from the variant cache.
    for v in &variants {
        assert_eq!(status(&c, v).await, 451, "{v}");
    }
    eventually(WITHIN, "variants purged", || async {
        edge.metric("imgcdn_edge_cache_entries{tier=\"variants\"}") == 0.0
    })
    .await;
    eventually(WITHIN, "variants purged from the disk tier", || async { variant_files() == 0 }).await;
    assert!(edge.metric("imgcdn_edge_sync_purges_total") >= 1.0);
    assert_eq!(edge.metric("imgcdn_edge_sync_applied_seq"), seq as f64);
    // The operator sees that this edge applied it.
    eventually(WITHIN, "propagation reported", || async {
        let r = c.get(format!("{}/v1/admin/changes/{seq}", cp.base)).bearer_auth(&op).send().await.unwrap();
        let v: Value = r.json().await.unwrap();
        v["edges"].as_array().is_some_and(|e| e.iter().any(|e| e["edge"] == "edge-1" && e["applied"] == true))
    })
    .await;

    // Restore: served again, fetched afresh (nothing was left cached).
    operator(&c, &cp.base, &op, &id, "restore", json!({})).await;
    eventually(WITHIN, "served again", || async { status(&c, &url).await == 200 }).await;
    // Warn: served, marked restricted.
    operator(&c, &cp.base, &op, &id, "warn", json!({})).await;
    eventually(WITHIN, "marked restricted", || async {
        let r = c.get(&url).send().await.unwrap();
        r.status() == 200 && r.headers().get("x-content-warning").is_some_and(|v| v == "restricted")
    })
    .await;
    assert_eq!(c.get(&url).send().await.unwrap().bytes().await.unwrap().to_vec(), stored);

    // Deleted by its owner: 404 at once (and purged), like a takedown.
    let r = c.delete(format!("{}/v1/images/{other}", cp.base)).bearer_auth(&key).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    eventually(WITHIN, "deleted image hidden", || async {
        status(&c, &format!("{}{other_path}", edge.base)).await == 404
    })
    .await;

    // Take it down again, then lose the control plane and restart the edge.
    operator(&c, &cp.base, &op, &id, "takedown", json!({"reason": "court_order"})).await;
    eventually(WITHIN, "451 again", || async { status(&c, &url).await == 451 }).await;
    drop(cp);
    edge.stop();
    let edge = EdgeProcess::start(dir.path(), &opts);
    assert_eq!(status(&c, &format!("{}{path}", edge.base)).await, 451, "enforced from the persisted state");
    assert_eq!(status(&c, &format!("{}{other_path}", edge.base)).await, 404);
    assert_eq!(
        edge.metric("imgcdn_edge_sync_last_success_timestamp_seconds"),
        0.0,
        "it has not reached a control plane"
    );

    // A brand-new edge with no state does not serve while it cannot sync.
    let mut fresh = EdgeOpts::new(dir.path()).with_sync(&[&edge.base], TOKEN_1, &dir.path().join("none.json"));
    fresh.disk = dir.path().join("fresh-cache");
    let fresh = EdgeProcess::start_unready(dir.path(), &fresh);
    assert!(!fresh.is_ready());
    assert_eq!(status(&c, &format!("{}{path}", fresh.base)).await, 503);
}

#[tokio::test]
async fn a_bad_edge_token_gets_nothing_and_the_edge_stays_unready() {
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlaneProcess::start(dir.path(), &cp_opts(None, 10_000));
    let wrong = "edge-xxx-token-0123456789abcdefghijklmn";
    let opts = EdgeOpts::new(dir.path()).with_sync(&[&cp.base], wrong, &dir.path().join("state.json"));
    let edge = EdgeProcess::start_unready(dir.path(), &opts);
    let c = client();
    let key = api_key(&c, &cp.base, "token@example.com").await;
    let (_, path) = upload(&c, &cp.base, &key, 3).await;
    eventually(WITHIN, "sync errors counted", || async { edge.metric("imgcdn_edge_sync_errors_total") >= 2.0 }).await;
    assert!(!edge.is_ready());
    assert_eq!(status(&c, &format!("{}{path}", edge.base)).await, 503);
    assert!(!dir.path().join("state.json").exists(), "nothing was received to persist");
    // The control plane answers such a caller 401 without detail.
    let r = c.get(format!("{}/v1/edge/snapshot", cp.base)).bearer_auth(wrong).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_edge_far_behind_catches_up_from_a_snapshot_and_purges_what_it_missed() {
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlaneProcess::start(dir.path(), &cp_opts(None, 3));
    let op = cp.create_operator("ops");
    let opts = EdgeOpts::new(dir.path()).with_sync(&[&cp.base], TOKEN_1, &dir.path().join("state.json"));
    let edge = EdgeProcess::start(dir.path(), &opts);
    let c = client();
    let key = api_key(&c, &cp.base, "behind@example.com").await;
    let mut images = Vec::new();
    for seed in 10..16 {
        images.push(upload(&c, &cp.base, &key, seed).await);
    }
    // The edge applies one change, caches the first image, then goes away.
    operator(&c, &cp.base, &op, &images[1].0, "warn", json!({})).await;
    eventually(WITHIN, "the warning applied", || async { edge.metric("imgcdn_edge_sync_applied_seq") == 1.0 }).await;
    let (deleted, deleted_path) = images[0].clone();
    let stored = std::fs::read(dir.path().join(format!("store/objects/{deleted}"))).unwrap();
    assert_eq!(status(&c, &format!("{}{deleted_path}", edge.base)).await, 200);
    eventually(WITHIN, "on disk", || async { disk_holds(&opts.disk, &stored) }).await;
    edge.stop();

    // Six changes while it is away: more than snapshot_after (3).
    let r = c.delete(format!("{}/v1/images/{deleted}", cp.base)).bearer_auth(&key).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    for (id, _) in &images[1..] {
        operator(&c, &cp.base, &op, id, "takedown", json!({"reason": "terms_violation"})).await;
    }
    let edge = EdgeProcess::start(dir.path(), &opts);
    eventually(WITHIN, "snapshot applied", || async { edge.metric("imgcdn_edge_sync_snapshots_total") >= 1.0 }).await;
    for (_, path) in &images[1..] {
        assert_eq!(status(&c, &format!("{}{path}", edge.base)).await, 451);
    }
    assert_eq!(status(&c, &format!("{}{deleted_path}", edge.base)).await, 404);
    // It held seq 1, so it purged the snapshot's entries above 1: the deleted image.
    eventually(WITHIN, "the deleted image's cached bytes were purged", || async { !disk_holds(&opts.disk, &stored) })
        .await;
    assert_eq!(edge.metric("imgcdn_edge_sync_lag"), 0.0);
}

/// Two control-plane processes on one PostgreSQL database and two edges,
/// each edge syncing from a different control plane: a change written
/// through either reaches both edges.
#[tokio::test]
async fn two_edges_and_two_control_planes_on_postgres() {
    let Some(db) = PgDatabase::create("imgcdn_sync_e2e") else { return };
    let dir = tempfile::tempdir().unwrap();
    let cp1 = ControlPlaneProcess::start(dir.path(), &cp_opts(Some(db.url.clone()), 10_000));
    let cp2 = ControlPlaneProcess::start(dir.path(), &cp_opts(Some(db.url.clone()), 10_000));
    let op = cp1.create_operator("ops");
    let mut o1 = EdgeOpts::new(dir.path()).with_sync(&[&cp1.base], TOKEN_1, &dir.path().join("e1.json"));
    o1.disk = dir.path().join("cache-1");
    let mut o2 = EdgeOpts::new(dir.path()).with_sync(&[&cp2.base], TOKEN_2, &dir.path().join("e2.json"));
    o2.disk = dir.path().join("cache-2");
    let (e1, e2) = (EdgeProcess::start(dir.path(), &o1), EdgeProcess::start(dir.path(), &o2));
    let c = client();
    let key = api_key(&c, &cp2.base, "pg@example.com").await;
    let (a, a_path) = upload(&c, &cp1.base, &key, 30).await;
    let (b, b_path) = upload(&c, &cp2.base, &key, 31).await;
    for e in [&e1, &e2] {
        assert_eq!(status(&c, &format!("{}{a_path}", e.base)).await, 200);
        assert_eq!(status(&c, &format!("{}{b_path}", e.base)).await, 200);
    }
    // Takedown through replica 1, delete through replica 2.
    let seq = operator(&c, &cp1.base, &op, &a, "takedown", json!({"reason": "csam"})).await["change"]["seq"]
        .as_u64()
        .unwrap();
    let r = c.delete(format!("{}/v1/images/{b}", cp2.base)).bearer_auth(&key).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    for e in [&e1, &e2] {
        eventually(WITHIN, "takedown at both edges", || async {
            status(&c, &format!("{}{a_path}", e.base)).await == 451
        })
        .await;
        eventually(WITHIN, "delete at both edges", || async {
            status(&c, &format!("{}{b_path}", e.base)).await == 404
        })
        .await;
    }
    // Either replica reports both edges' propagation.
    eventually(WITHIN, "both edges acknowledged", || async {
        let r = c.get(format!("{}/v1/admin/changes/{seq}", cp2.base)).bearer_auth(&op).send().await.unwrap();
        let v: Value = r.json().await.unwrap();
        v["edges"].as_array().is_some_and(|e| e.len() == 2 && e.iter().all(|e| e["applied"] == true))
    })
    .await;
}

/// `hide` entries are dropped once their grace period has passed and the
/// public store confirms the manifest is gone; a hidden id whose manifest is
/// (still, or again) in the store keeps its entry; takedowns are kept. The
/// state on disk is what was applied: a restarted edge agrees.
#[tokio::test]
async fn hide_entries_are_dropped_after_their_grace_once_the_manifest_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlaneProcess::start(dir.path(), &cp_opts(None, 10_000));
    let op = cp.create_operator("ops");
    let state = dir.path().join("edge-1-sync.state");
    let mut opts = EdgeOpts::new(dir.path()).with_sync(&[&cp.base], TOKEN_1, &state);
    opts.sync_toml.as_mut().unwrap().push_str("hide_grace_secs = 4\n");
    let edge = EdgeProcess::start(dir.path(), &opts);
    let c = client();
    let key = api_key(&c, &cp.base, "grace@example.com").await;
    let (gone, gone_path) = upload(&c, &cp.base, &key, 40).await;
    let (kept, kept_path) = upload(&c, &cp.base, &key, 41).await;
    let (down, down_path) = upload(&c, &cp.base, &key, 42).await;
    let manifest = |id: &str| dir.path().join(format!("store/manifests/{id}.json"));
    let kept_manifest = std::fs::read(manifest(&kept)).unwrap();

    for id in [&gone, &kept] {
        let r = c.delete(format!("{}/v1/images/{id}", cp.base)).bearer_auth(&key).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert!(!manifest(id).exists(), "the control plane withdrew {id}'s manifest before answering");
    }
    // As if the withdrawal of one had not happened. Put back at once: the
    // edge may check (and drop) a hide as soon as its grace has passed, and
    // the steps below can take longer than that on a loaded machine.
    std::fs::write(manifest(&kept), &kept_manifest).unwrap();
    operator(&c, &cp.base, &op, &down, "takedown", json!({"reason": "copyright"})).await;
    eventually(WITHIN, "all three applied", || async {
        status(&c, &format!("{}{gone_path}", edge.base)).await == 404
            && status(&c, &format!("{}{kept_path}", edge.base)).await == 404
            && status(&c, &format!("{}{down_path}", edge.base)).await == 451
    })
    .await;

    // Times are whole seconds, and a prune runs after each long-poll (5 s
    // when idle): the two hides may be checked in different rounds.
    eventually(Duration::from_secs(20), "the withdrawn hide dropped, the other reported", || async {
        edge.metric("imgcdn_edge_sync_hides_dropped_total") == 1.0 && edge.log().contains("still has a manifest")
    })
    .await;
    assert_eq!(edge.metric("imgcdn_edge_sync_entries"), 2.0, "the takedown and the unconfirmed hide stay");
    assert_eq!(status(&c, &format!("{}{gone_path}", edge.base)).await, 404, "no manifest: 404 all the same");
    assert_eq!(status(&c, &format!("{}{kept_path}", edge.base)).await, 404, "its manifest is there: still hidden");
    assert_eq!(status(&c, &format!("{}{down_path}", edge.base)).await, 451);

    // The persisted state is the applied one.
    drop(cp);
    edge.stop();
    let edge = EdgeProcess::start(dir.path(), &opts);
    assert_eq!(edge.metric("imgcdn_edge_sync_entries"), 2.0);
    assert_eq!(status(&c, &format!("{}{kept_path}", edge.base)).await, 404);
    assert_eq!(status(&c, &format!("{}{down_path}", edge.base)).await, 451);
}
