//! Edge sync, control-plane side, through the router on SQLite and
//! PostgreSQL: the visibility log, the edge endpoints, the operator API.

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use common::*;
use imgcdn_shared::sync::{Action, ChangesPage, Snapshot};
use imgcdn_shared::testing::png;
use serde_json::json;

const PW: &str = "tulip-Orbit-94";

async fn upload(t: &TestApp, key: &str, seed: u8, extra: &[(&str, Option<&str>, &[u8])]) -> String {
    let image = png(8, 8, seed);
    let mut parts: Vec<(&str, Option<&str>, &[u8])> = vec![("file", Some("a.png"), &image)];
    parts.extend_from_slice(extra);
    let r = t.call(Req::new("POST", "/v1/images").key(key).multipart(&parts)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    r.json["id"].as_str().unwrap().to_string()
}

async fn changes(t: &TestApp, after: u64) -> ChangesPage {
    let r = t.call(Req::get(&format!("/v1/edge/changes?after={after}")).key(EDGE_A_TOKEN)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    serde_json::from_value(r.json).unwrap()
}

fn actions(page: &ChangesPage) -> Vec<(String, Action)> {
    page.changes.iter().map(|c| (c.id.to_string(), c.action)).collect()
}

/// A `changes` long-poll of up to a minute, run in the background.
fn long_poll(
    state: imgcdn_control_plane::AppState,
    token: &'static str,
    after: u64,
) -> tokio::task::JoinHandle<ChangesPage> {
    tokio::spawn(async move {
        let req = axum::http::Request::get(format!("/v1/edge/changes?after={after}&wait_ms=60000"))
            .header("authorization", format!("Bearer {token}"))
            .body(axum::body::Body::empty())
            .unwrap();
        let resp = tower::ServiceExt::oneshot(imgcdn_control_plane::app(state), req).await.unwrap();
        let bytes = http_body_util::BodyExt::collect(resp.into_body()).await.unwrap().to_bytes();
        serde_json::from_slice::<ChangesPage>(&bytes).unwrap()
    })
}

async fn act(t: &TestApp, op: &str, id: &str, what: &str, body: serde_json::Value) -> Resp {
    t.call(Req::post(&format!("/v1/admin/images/{id}/{what}"), body).key(op)).await
}

on_both_databases!(every_change_of_visibility_is_logged_in_order_and_nothing_else_is, |t: TestApp| async move {
    let u = t.user("log@example.com", PW).await;
    let key = t.key_for(&u).await;
    let op = t.operator("alice").await;
    let a = upload(&t, &key, 1, &[]).await;
    let b = upload(&t, &key, 2, &[]).await;
    let private = upload(&t, &key, 3, &[("public", None, b"false")]).await;
    let short = upload(&t, &key, 4, &[("ttl", None, b"300")]).await;
    // Uploads (public or private) change nothing an edge already has.
    assert_eq!(changes(&t, 0).await.changes, vec![]);

    assert_eq!(t.call(Req::new("DELETE", &format!("/v1/images/{a}")).key(&key)).await.status, StatusCode::OK);
    let patch = |id: &str, body| Req::new("PATCH", &format!("/v1/images/{id}")).key(&key).json(body);
    assert_eq!(t.call(patch(&b, json!({"public": false}))).await.status, StatusCode::OK);
    assert_eq!(t.call(patch(&b, json!({"caption": "only a caption"}))).await.status, StatusCode::OK);
    assert_eq!(t.call(patch(&b, json!({"public": true}))).await.status, StatusCode::OK);
    let r = act(&t, &op, &private, "takedown", json!({"reason": "copyright", "note": "notice #12"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["state"]["edge"], "takedown");
    // Restoring a takedown of a private image leaves it hidden, not served.
    let r = act(&t, &op, &private, "restore", json!({})).await;
    assert_eq!(r.json["state"]["edge"], "hide", "{}", r.text);
    let r = act(&t, &op, &b, "warn", json!({"note": "nudity"})).await;
    assert_eq!(r.json["state"]["edge"], "warn");
    // The same decision twice logs nothing new.
    let again = act(&t, &op, &b, "warn", json!({})).await;
    assert_eq!(again.json["change"], serde_json::Value::Null);
    t.clock.advance(301);
    imgcdn_control_plane::retention::sweep::run_once(&t.state).await.unwrap();

    let page = changes(&t, 0).await;
    assert_eq!(
        actions(&page),
        vec![
            (a.clone(), Action::Hide),
            (b.clone(), Action::Hide),
            (b.clone(), Action::Restore),
            (private.clone(), Action::Takedown),
            (private.clone(), Action::Hide),
            (b.clone(), Action::Warn),
            (short.clone(), Action::Hide),
        ]
    );
    assert!(page.changes.windows(2).all(|w| w[0].seq < w[1].seq), "strictly increasing: {page:?}");
    assert_eq!(page.head, page.changes.last().unwrap().seq);
    assert_eq!(page.changes[3].reason.as_deref(), Some("copyright"));
    // Who and why are kept on the control plane (not sent to edges).
    let r = t.call(Req::get(&format!("/v1/admin/images/{private}")).key(&op)).await;
    let history = r.json["history"].as_array().unwrap();
    assert_eq!(history[0]["note"], "notice #12");
    assert!(history[0]["actor"].as_str().unwrap().starts_with("operator:op_"));
    // Paging: after a seq, only what follows.
    let rest = changes(&t, page.changes[4].seq).await;
    assert_eq!(actions(&rest), actions(&page)[5..].to_vec());
});

on_both_databases!(takedown_and_private_withdraw_the_manifest_and_restore_brings_it_back, |t: TestApp| async move {
    let u = t.user("store@example.com", PW).await;
    let key = t.key_for(&u).await;
    let op = t.operator("bob").await;
    let id = upload(&t, &key, 5, &[("caption", None, b"Cat")]).await;
    let manifest = t.public_store().join(format!("manifests/{id}.json"));
    let object = t.public_store().join(format!("objects/{id}"));
    assert!(manifest.exists());
    assert_eq!(act(&t, &op, &id, "takedown", json!({"reason": "court_order"})).await.status, StatusCode::OK);
    assert!(!manifest.exists(), "taken down: no edge can load it, even one that never synced");
    assert!(!object.exists(), "taken-down bytes leave the public store");
    assert!(t.recovery_store().join(format!("recovery/{id}/object")).exists(), "kept in recovery for a restore");
    let page = t.call(Req::get(&format!("/{id}"))).await;
    assert_eq!(page.status, StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS);
    assert!(!page.text.contains("court_order"), "the reason is not published");
    let list = t.call(Req::get("/v1/admin/takedowns").key(&op)).await;
    assert_eq!(list.json["data"][0]["image_id"], id.as_str());
    assert_eq!(list.json["data"][0]["reason"], "court_order");

    assert_eq!(act(&t, &op, &id, "restore", json!({})).await.status, StatusCode::OK);
    assert!(manifest.exists(), "restored: published again");
    assert!(object.exists(), "with its bytes back from recovery");
    assert!(!t.recovery_store().join(format!("recovery/{id}/object")).exists());
    assert_eq!(t.call(Req::get("/v1/admin/takedowns").key(&op)).await.json["data"], json!([]));
    assert_eq!(act(&t, &op, &id, "warn", json!({})).await.status, StatusCode::OK);
    assert!(manifest.exists(), "a restricted image is still served (marked)");
    let page = t.call(Req::get(&format!("/{id}"))).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains("<details class=\"content-warning\">"), "interstitial: {}", page.text);
    assert!(page.text.contains("noindex"));
});

on_both_databases!(operator_api_takes_only_operator_tokens, |t: TestApp| async move {
    let u = t.user("notop@example.com", PW).await;
    let key = t.key_for(&u).await;
    let id = upload(&t, &key, 6, &[]).await;
    let op = t.operator("carol").await;
    let path = format!("/v1/admin/images/{id}/takedown");
    let body = json!({"reason": "csam"});
    for (who, req) in [
        ("nobody", Req::post(&path, body.clone())),
        ("a user's API key", Req::post(&path, body.clone()).key(&key)),
        ("a user's session", Req::post(&path, body.clone()).signed_in(&u)),
        ("an edge token", Req::post(&path, body.clone()).key(EDGE_A_TOKEN)),
        (
            "a made-up operator token",
            Req::post(&path, body.clone()).key("img_op_0000000000000000000000000000000000000000"),
        ),
    ] {
        let r = t.call(req).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{who}: {}", r.text);
    }
    assert_eq!(t.count("SELECT COUNT(*) FROM visibility_changes").await, 0);
    // Operator, edge or made-up tokens are no API keys anywhere else: never
    // taken for an anonymous upload.
    for token in [op.as_str(), EDGE_A_TOKEN, "garbage"] {
        let r = t
            .call(Req::new("POST", "/v1/images").key(token).multipart(&[("file", Some("a.png"), &png(4, 4, 9))]))
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{token}: {}", r.text);
    }
    assert_eq!(t.count("SELECT COUNT(*) FROM images").await, 1);
    // Bad input: unknown reason, unknown or malformed id.
    let r = act(&t, &op, &id, "takedown", json!({"reason": "dislike"})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.json["error"]["details"]["reason"][0].is_string(), "{}", r.text);
    assert_eq!(act(&t, &op, "zzzzzzzz", "takedown", json!({"reason": "csam"})).await.status, StatusCode::NOT_FOUND);
    assert_eq!(act(&t, &op, "../x", "restore", json!({})).await.status, StatusCode::NOT_FOUND);
    assert_eq!(act(&t, &op, &id, "nuke", json!({})).await.status, StatusCode::NOT_FOUND);
    let long = "n".repeat(2001);
    assert_eq!(act(&t, &op, &id, "warn", json!({"note": long})).await.status, StatusCode::UNPROCESSABLE_ENTITY);
    // Revoked operators are out; names are unique.
    imgcdn_control_plane::operators::revoke(&t.state.db, "carol", 0).await.unwrap();
    assert_eq!(act(&t, &op, &id, "warn", json!({})).await.status, StatusCode::UNAUTHORIZED);
    assert!(imgcdn_control_plane::operators::create(&t.state.db, "carol", 0).await.is_err());
    assert_eq!(t.count("SELECT COUNT(*) FROM visibility_changes").await, 0);
});

on_both_databases!(edge_endpoints_take_only_edge_tokens_and_leak_nothing, |t: TestApp| async move {
    let u = t.user("edgeauth@example.com", PW).await;
    let key = t.key_for(&u).await;
    let op = t.operator("dave").await;
    let id = upload(&t, &key, 7, &[]).await;
    act(&t, &op, &id, "takedown", json!({"reason": "terrorism"})).await;
    for path in ["/v1/edge/changes?after=0", "/v1/edge/snapshot"] {
        for (who, req) in [
            ("nobody", Req::get(path)),
            ("a wrong token", Req::get(path).key("edge-a-token-0123456789abcdefghijklmnoX")),
            ("a prefix of a real token", Req::get(path).key(&EDGE_A_TOKEN[..20])),
            ("an operator token", Req::get(path).key(&op)),
            ("a user's API key", Req::get(path).key(&key)),
        ] {
            let r = t.call(req).await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path} with {who}");
            assert!(!r.text.contains(&id) && !r.text.contains("terrorism"), "{path} with {who} leaked: {}", r.text);
        }
    }
    let r = t.call(Req::post("/v1/edge/ack", json!({"seq": 1}))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(t.count("SELECT COUNT(*) FROM edges").await, 0, "nobody was recorded as an edge");
});

on_both_databases!(snapshot_is_the_latest_state_of_each_id_and_lagging_edges_are_sent_to_it, |t: TestApp| async move {
    let u = t.user("snap@example.com", PW).await;
    let key = t.key_for(&u).await;
    let op = t.operator("erin").await;
    let ids: Vec<String> = futures_ids(&t, &key).await;
    act(&t, &op, &ids[0], "takedown", json!({"reason": "csam"})).await;
    act(&t, &op, &ids[1], "warn", json!({})).await;
    act(&t, &op, &ids[2], "takedown", json!({"reason": "privacy"})).await;
    act(&t, &op, &ids[2], "restore", json!({})).await;
    t.call(Req::new("DELETE", &format!("/v1/images/{}", ids[3])).key(&key)).await;
    act(&t, &op, &ids[4], "warn", json!({})).await;
    act(&t, &op, &ids[4], "takedown", json!({"reason": "csam"})).await;
    act(&t, &op, &ids[2], "warn", json!({})).await;

    let r = t.call(Req::get("/v1/edge/snapshot").key(EDGE_B_TOKEN)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let snap: Snapshot = serde_json::from_value(r.json).unwrap();
    assert_eq!(snap.seq, 8);
    let mut got: Vec<(String, Action)> = snap.entries.iter().map(|c| (c.id.to_string(), c.action)).collect();
    got.sort();
    let mut want = vec![
        (ids[0].clone(), Action::Takedown),
        (ids[1].clone(), Action::Warn),
        (ids[2].clone(), Action::Warn),
        (ids[3].clone(), Action::Hide),
        (ids[4].clone(), Action::Takedown),
    ];
    want.sort();
    assert_eq!(got, want, "restored ids are left out, the latest change of each id wins");

    // 8 changes > SNAPSHOT_AFTER (7): replaying from 0 is refused; from 2 it is fine.
    let r = t.call(Req::get("/v1/edge/changes?after=0").key(EDGE_A_TOKEN)).await;
    assert_eq!(r.status, StatusCode::GONE);
    assert_eq!(r.json["error"]["code"], "snapshot_required");
    assert_eq!(changes(&t, 2).await.changes.len(), 6);
    // An edge ahead of the log (it synced with another database) starts over.
    let r = t.call(Req::get("/v1/edge/changes?after=99").key(EDGE_A_TOKEN)).await;
    assert_eq!(r.status, StatusCode::GONE);
});

async fn futures_ids(t: &TestApp, key: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for seed in 10..15 {
        ids.push(upload(t, key, seed, &[]).await);
    }
    ids
}

on_both_databases!(acks_show_which_edges_applied_a_change_and_when, |t: TestApp| async move {
    let u = t.user("ack@example.com", PW).await;
    let key = t.key_for(&u).await;
    let op = t.operator("frank").await;
    let id = upload(&t, &key, 20, &[]).await;
    // Configured edges show before they ever call in.
    let r = t.call(Req::get("/v1/admin/edges").key(&op)).await;
    assert_eq!(r.json["data"].as_array().unwrap().len(), 2, "{}", r.text);
    assert_eq!(r.json["data"][1]["edge"], "edge-b");
    assert_eq!(r.json["data"][1]["last_seen_at"], serde_json::Value::Null);
    let seq = act(&t, &op, &id, "takedown", json!({"reason": "csam"})).await.json["change"]["seq"].as_u64().unwrap();
    // Both edges poll; only edge-a applies and acknowledges.
    changes(&t, 0).await;
    assert_eq!(t.call(Req::get("/v1/edge/changes?after=0").key(EDGE_B_TOKEN)).await.status, StatusCode::OK);
    t.clock.advance(2);
    let r = t.call(Req::post("/v1/edge/ack", json!({"seq": seq})).key(EDGE_A_TOKEN)).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    // Acknowledging what the log does not have is refused; a late, lower
    // ack does not move the edge back.
    let r = t.call(Req::post("/v1/edge/ack", json!({"seq": seq + 10})).key(EDGE_A_TOKEN)).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = t.call(Req::post("/v1/edge/ack", json!({"seq": 0})).key(EDGE_A_TOKEN)).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);

    let r = t.call(Req::get(&format!("/v1/admin/changes/{seq}")).key(&op)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["action"], "takedown");
    assert_eq!(r.json["image_id"], id.as_str());
    let edges = r.json["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 2);
    assert_eq!(edges[0]["edge"], "edge-a");
    assert_eq!(edges[0]["applied"], true);
    assert_eq!(edges[0]["applied_at"], "2026-01-01T00:00:02Z");
    assert_eq!(edges[1]["edge"], "edge-b");
    assert_eq!(edges[1]["applied"], false);
    assert_eq!(edges[1]["applied_at"], serde_json::Value::Null);
    let r = t.call(Req::get("/v1/admin/edges").key(&op)).await;
    assert_eq!(r.json["data"][0]["lag"], 0);
    assert_eq!(r.json["data"][1]["lag"], 1);
    assert_eq!(t.call(Req::get("/v1/admin/changes/999").key(&op)).await.status, StatusCode::NOT_FOUND);
});

on_both_databases!(a_long_poll_waits_and_a_change_wakes_it, |t: TestApp| async move {
    let u = t.user("poll@example.com", PW).await;
    let key = t.key_for(&u).await;
    let op = t.operator("grace").await;
    let id = upload(&t, &key, 21, &[]).await;
    // Nothing new: the poll waits out its (short) wait and answers empty.
    let r = t.call(Req::get("/v1/edge/changes?after=0&wait_ms=200").key(EDGE_A_TOKEN)).await;
    assert_eq!(
        serde_json::from_value::<ChangesPage>(r.json).unwrap(),
        ChangesPage { changes: vec![], head: 0, more: false }
    );
    // A poll that would wait a minute returns as soon as a change is written.
    let poll = long_poll(t.state.clone(), EDGE_A_TOKEN, 0);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!poll.is_finished(), "the poll is waiting");
    act(&t, &op, &id, "takedown", json!({"reason": "csam"})).await;
    let page = tokio::time::timeout(Duration::from_secs(10), poll).await.expect("woken by the change").unwrap();
    assert_eq!(actions(&page), vec![(id, Action::Takedown)]);
    // Shutting down answers waiting polls at once (graceful shutdown is not held up).
    let poll = long_poll(t.state.clone(), EDGE_A_TOKEN, page.head);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!poll.is_finished(), "nothing new: it waits");
    t.state.sync.close();
    let page = tokio::time::timeout(Duration::from_secs(10), poll).await.expect("answered on shutdown").unwrap();
    assert_eq!(page.changes, vec![]);
});

on_both_databases!(images_made_private_before_edge_sync_are_withdrawn_and_hidden_at_start, |t: TestApp| async move {
    let u = t.user("legacy@example.com", PW).await;
    let key = t.key_for(&u).await;
    let id = upload(&t, &key, 23, &[]).await;
    let manifest = t.public_store().join(format!("manifests/{id}.json"));
    // As a private image of an older version left it: published, nothing logged.
    sqlx::query("UPDATE images SET public = 0 WHERE id = $1").bind(&id).execute(&t.state.db.pool).await.unwrap();
    assert!(manifest.exists());
    assert_eq!(imgcdn_control_plane::retention::sweep::withdraw_unservable(&t.state).await.unwrap(), 1);
    assert!(!manifest.exists());
    assert_eq!(actions(&changes(&t, 0).await), vec![(id.clone(), Action::Hide)]);
    // Idempotent.
    assert_eq!(imgcdn_control_plane::retention::sweep::withdraw_unservable(&t.state).await.unwrap(), 0);
    assert_eq!(changes(&t, 0).await.changes.len(), 1);
});

/// Two control-plane replicas on one PostgreSQL database: a takedown
/// written through one wakes a long-poll waiting on the other, through
/// NOTIFY (the other replica's head polling is set to an hour, so only the
/// notification can wake it in time).
#[tokio::test]
async fn a_change_on_one_postgres_replica_wakes_long_polls_on_another() {
    let Some(a) = TestApp::postgres().await else { return };
    let url = a.state.cfg.database_url.clone();
    let mut cfg = a.state.cfg.as_ref().clone();
    cfg.edge_sync.poll_ms = 3_600_000;
    let db = imgcdn_control_plane::Db::connect(&url).await.unwrap();
    let b = imgcdn_control_plane::AppState::new(db, cfg, a.clock.clone()).unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let watcher = tokio::spawn(imgcdn_control_plane::sync::watch_loop(b.clone(), stopped));

    let u = a.user("replica@example.com", PW).await;
    let key = a.key_for(&u).await;
    let op = a.operator("heidi").await;
    let id = upload(&a, &key, 22, &[]).await;
    // Let replica B's watcher LISTEN before the change.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let poll = long_poll(b, EDGE_B_TOKEN, 0);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!poll.is_finished());
    act(&a, &op, &id, "takedown", json!({"reason": "csam"})).await;
    let page = tokio::time::timeout(Duration::from_secs(10), poll).await.expect("replica B was notified").unwrap();
    assert_eq!(actions(&page), vec![(id, Action::Takedown)]);
    let _ = stop.send(true);
    watcher.await.unwrap();
}
