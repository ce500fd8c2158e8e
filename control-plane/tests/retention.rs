//! Retention, driven by the clock, on SQLite and PostgreSQL: every row of
//! the retention table and each ceiling, windows recomputed when what
//! decides them changes, and the sweep that ends what is due (images to
//! recovery, recovery reaped, sessions with their IP address, spent links,
//! request logs).

mod common;

use axum::http::StatusCode;
use common::*;
use imgcdn_control_plane::dates::DAY;
use imgcdn_control_plane::retention::{lease, recompute, sweep};
use imgcdn_shared::clock::Clock;
use imgcdn_shared::testing::png;
use serde_json::{json, Value};

const PW: &str = "tulip-Orbit-94";

fn upload(bytes: &[u8]) -> Req {
    Req::new("POST", "/v1/images").multipart(&[("file", Some("a.png"), bytes)])
}

fn with_ttl(bytes: &[u8], ttl: &str) -> Req {
    Req::new("POST", "/v1/images").multipart(&[("file", Some("a.png"), bytes), ("ttl", None, ttl.as_bytes())])
}

/// An account that signed up but never opened its verification mail, signed in.
async fn unverified(t: &TestApp, email: &str) -> User {
    let r = t
        .call(Req::post("/v1/auth/signup", json!({"email": email, "name": "u", "password": PW, "age_confirmed": true})))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    t.login(email, PW).await
}

/// Upload; returns the image's JSON.
async fn put(t: &TestApp, req: Req) -> Value {
    let r = t.call(req.header("x-forwarded-for", "198.51.100.20")).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    r.json
}

fn days_after_t0(img: &Value) -> Option<f64> {
    let at = img["expires_at"].as_str()?;
    let t = time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).unwrap();
    Some((t.unix_timestamp() - T0) as f64 / DAY as f64)
}

async fn get(t: &TestApp, key: &str, id: &str) -> Value {
    let r = t.call(Req::get(&format!("/v1/images/{id}")).key(key)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.json
}

async fn warn(t: &TestApp, op: &str, id: &str) {
    let r = t.call(Req::post(&format!("/v1/admin/images/{id}/warn"), json!({"note": "nudity"})).key(op)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

on_both_databases!(every_row_of_the_retention_table_on_upload, |t: TestApp| async move {
    let op = t.operator("ops").await;
    // Anonymous: the surface's 30 days; a ttl only shortens it.
    let anon = put(&t, upload(&png(8, 8, 1))).await;
    assert_eq!(days_after_t0(&anon), Some(30.0));
    let anon_ttl = put(&t, with_ttl(&png(8, 8, 2), "2h")).await;
    assert_eq!(days_after_t0(&anon_ttl), Some(2.0 / 24.0));

    // Unverified, signed in: 30 days on the personal team, and on a team
    // they created and upload to with a key.
    let u = unverified(&t, "unverified@example.com").await;
    let img = put(&t, upload(&png(8, 8, 3)).signed_in(&u)).await;
    assert_eq!(days_after_t0(&img), Some(30.0));
    let team = t.call(Req::post("/v1/teams", json!({"name": "side project"})).signed_in(&u)).await;
    assert_eq!(team.status, StatusCode::CREATED, "{}", team.text);
    let team_id = team.json["id"].as_str().unwrap();
    let r = t.call(Req::post(&format!("/v1/teams/{team_id}/keys"), json!({"name": "k"})).signed_in(&u)).await;
    let team_key = r.json["key"].as_str().unwrap_or_else(|| panic!("{}", r.text)).to_string();
    let img = put(&t, upload(&png(8, 8, 4)).key(&team_key)).await;
    assert_eq!(days_after_t0(&img), Some(30.0), "a team of an unverified owner lifts nothing");

    // Legacy POST /v1/keys: an unverified account, 30 days.
    let r = t.call(Req::post("/v1/keys", json!({"email": "legacy@example.com"}))).await;
    let legacy = r.json["key"].as_str().unwrap().to_string();
    assert_eq!(r.json["limits"]["retention_days"], 30);
    let img = put(&t, upload(&png(8, 8, 5)).key(&legacy)).await;
    assert_eq!(days_after_t0(&img), Some(30.0));

    // Verified, free plan: kept until deleted; restricted content 30 days.
    let v = t.user("verified@example.com", PW).await;
    let key = t.key_for(&v).await;
    let clean = put(&t, upload(&png(8, 8, 6)).key(&key)).await;
    assert_eq!(clean["expires_at"], Value::Null);
    let id = clean["id"].as_str().unwrap();
    t.clock.advance(DAY);
    warn(&t, &op, id).await;
    assert_eq!(days_after_t0(&get(&t, &key, id).await), Some(30.0), "restricted on free: 30 days from upload");

    // Paid plans keep restricted content.
    recompute::change_plan(&t.state, &v.team, "pro").await.unwrap();
    assert_eq!(get(&t, &key, id).await["expires_at"], Value::Null, "pro keeps restricted content");
    let usage = t.call(Req::get("/v1/usage").key(&key)).await;
    assert_eq!(usage.json["limits"]["retention_days"], Value::Null);
    let usage = t.call(Req::get("/v1/usage").key(&legacy)).await;
    assert_eq!(usage.json["limits"]["retention_days"], 30);
});

on_both_databases!(the_anonymous_ceiling_holds_whatever_a_surface_advertises, |t: TestApp| async move {
    let t = t
        .same_backend_with(|c| {
            c.retention.surfaces.insert("api".into(), 5 * 365);
            c.retention.surfaces.insert("legacy_upload".into(), 1);
        })
        .await;
    let img = put(&t, upload(&png(8, 8, 1))).await;
    assert_eq!(days_after_t0(&img), Some(730.0), "two years at most");
    let r = t
        .call(
            Req::new("POST", "/v1/upload")
                .multipart(&[("file", Some("a.png"), &png(8, 8, 2))])
                .header("x-forwarded-for", "198.51.100.21"),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let expires = r.json["expires_at"].as_i64().expect("legacy shape: unix seconds");
    assert_eq!(expires, T0 + DAY, "the legacy surface's own window");
});

on_both_databases!(patch_ttl_cannot_pass_the_window, |t: TestApp| async move {
    let r = t.call(Req::post("/v1/keys", json!({"email": "legacy@example.com"}))).await;
    let key = r.json["key"].as_str().unwrap().to_string();
    let id = put(&t, upload(&png(8, 8, 1)).key(&key)).await["id"].as_str().unwrap().to_string();
    t.clock.advance(29 * DAY);
    for _ in 0..3 {
        let r = t.call(Req::new("PATCH", &format!("/v1/images/{id}")).json(json!({"ttl": "90d"})).key(&key)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(days_after_t0(&r.json), Some(30.0), "the unverified window stands");
    }
    // Shorter is always fine.
    let r = t.call(Req::new("PATCH", &format!("/v1/images/{id}")).json(json!({"ttl": "1h"})).key(&key)).await;
    assert_eq!(days_after_t0(&r.json), Some(29.0 + 1.0 / 24.0));
    // A verified account's own ttl is what it asked for, from now.
    let v = t.user("v@example.com", PW).await;
    let vkey = t.key_for(&v).await;
    let vid = put(&t, upload(&png(8, 8, 2)).key(&vkey)).await["id"].as_str().unwrap().to_string();
    let r = t.call(Req::new("PATCH", &format!("/v1/images/{vid}")).json(json!({"ttl": "90d"})).key(&vkey)).await;
    assert_eq!(days_after_t0(&r.json), Some(29.0 + 90.0));
});

on_both_databases!(verifying_lifts_the_window_and_a_downgrade_shortens_it_at_the_edges, |t: TestApp| async move {
    let u = unverified(&t, "later@example.com").await;
    let id = put(&t, upload(&png(8, 8, 1)).signed_in(&u)).await["id"].as_str().unwrap().to_string();
    let key = t.key_for(&t.login("later@example.com", PW).await).await;
    assert_eq!(days_after_t0(&get(&t, &key, &id).await), Some(30.0));
    // The uploader verifies: kept until deleted, and the manifest says so.
    let token = t.mail_to("later@example.com").await.last().unwrap().token("/verify-email").unwrap();
    let r = t.call(Req::post("/v1/auth/verify", json!({"token": token}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(get(&t, &key, &id).await["expires_at"], Value::Null);
    let manifest = |t: &TestApp| {
        let text = std::fs::read_to_string(t.public_store().join(format!("manifests/{id}.json"))).unwrap();
        serde_json::from_str::<Value>(&text).unwrap()["expires_at"].clone()
    };
    assert_eq!(manifest(&t), Value::Null);

    // On pro, a restricted image is kept; back on free it gets 30 days
    // from upload, and edges are told to drop their copies (a change is
    // logged although the image stays servable) with the manifest already
    // rewritten.
    let op = t.operator("ops").await;
    recompute::change_plan(&t.state, &u.team, "pro").await.unwrap();
    warn(&t, &op, &id).await;
    assert_eq!(get(&t, &key, &id).await["expires_at"], Value::Null);
    let logged_sql = format!("SELECT COUNT(*) FROM visibility_changes WHERE image_id = '{id}'");
    let before = t.count(&logged_sql).await;
    let changed = recompute::change_plan(&t.state, &u.team, "free").await.unwrap();
    assert_eq!(changed, 1);
    assert_eq!(days_after_t0(&get(&t, &key, &id).await), Some(30.0));
    assert_eq!(t.count(&logged_sql).await, before + 1, "edges are told to re-read the manifest");
    assert_ne!(manifest(&t), Value::Null, "the manifest carries the new expiry");
    // Lengthening is not logged: an edge's copy expiring early asks the store again.
    let before = t.count(&logged_sql).await;
    recompute::change_plan(&t.state, &u.team, "pro").await.unwrap();
    assert_eq!(t.count(&logged_sql).await, before);
});

on_both_databases!(an_expired_image_goes_to_recovery_and_is_reaped_after_its_window, |t: TestApp| async move {
    let id = put(&t, with_ttl(&png(8, 8, 1), "1h")).await["id"].as_str().unwrap().to_string();
    let recovery = t.recovery_store().join(format!("recovery/{id}"));
    t.clock.advance(3600);
    let s = sweep::run_once(&t.state).await.unwrap();
    assert_eq!(s.expired, 1, "{s:?}");
    assert!(recovery.join("object").exists() && recovery.join("record.json").exists());
    assert!(!t.public_store().join(format!("manifests/{id}.json")).exists());
    // Still there the day before its reap time…
    t.clock.advance(29 * DAY);
    assert_eq!(sweep::run_once(&t.state).await.unwrap().reaped, 0);
    assert!(recovery.join("object").exists());
    // …and gone after it, row and all.
    t.clock.advance(DAY);
    let s = sweep::run_once(&t.state).await.unwrap();
    assert_eq!(s.reaped, 1, "{s:?}");
    assert!(!recovery.join("object").exists() && !recovery.join("record.json").exists());
    assert_eq!(t.count(&format!("SELECT COUNT(*) FROM images WHERE id = '{id}'")).await, 0);
    assert_eq!(t.count(&format!("SELECT COUNT(*) FROM classifications WHERE image_id = '{id}'")).await, 0);
});

on_both_databases!(the_reaper_survives_a_store_error_on_one_entry_and_finishes_the_rest, |t: TestApp| async move {
    let mut ids = Vec::new();
    for seed in 1..=3u8 {
        ids.push(put(&t, with_ttl(&png(8, 8, seed), "1h")).await["id"].as_str().unwrap().to_string());
    }
    t.clock.advance(3600);
    assert_eq!(sweep::run_once(&t.state).await.unwrap().expired, 3);
    // The first entry's object cannot be deleted (a directory with a file in it).
    let stuck = t.recovery_store().join(format!("recovery/{}/object", ids[0]));
    std::fs::remove_file(&stuck).unwrap();
    std::fs::create_dir_all(stuck.join("in-the-way")).unwrap();
    std::fs::write(stuck.join("in-the-way/x"), b"x").unwrap();
    t.clock.advance(30 * DAY);
    let s = sweep::run_once(&t.state).await.unwrap();
    assert_eq!((s.reaped, s.errors), (2, 1), "{s:?}");
    assert_eq!(t.count("SELECT COUNT(*) FROM images").await, 1, "the failed one keeps its row for the next pass");
    std::fs::remove_dir_all(&stuck).unwrap();
    let s = sweep::run_once(&t.state).await.unwrap();
    assert_eq!((s.reaped, s.errors), (1, 0), "{s:?}");
    assert_eq!(t.count("SELECT COUNT(*) FROM images").await, 0);
});

on_both_databases!(
    an_abandoned_session_loses_its_ip_and_user_agent_without_being_shown_again,
    |t: TestApp| async move {
        // t.login signs in from 203.0.113.9 with user agent test-agent/1.0.
        let u = t.user("away@example.com", PW).await;
        let other = t.login("away@example.com", PW).await;
        assert!(!t.find_anywhere("test-agent/1.0").await.is_empty());
        // Sliding limit: 90 days without use. `other` stays in use.
        for _ in 0..3 {
            t.clock.advance(30 * DAY + 1);
            let r = t.call(Req::get("/v1/me").signed_in(&other)).await;
            assert_eq!(r.status, StatusCode::OK);
        }
        // The abandoned one is not listed any more, even before the sweep.
        let r = t.call(Req::get("/v1/sessions").signed_in(&other)).await;
        assert_eq!(r.json["data"].as_array().unwrap().len(), 1, "{}", r.text);
        let s = sweep::run_once(&t.state).await.unwrap();
        assert_eq!(s.sessions, 1, "{s:?}");
        assert_eq!(t.count(&format!("SELECT COUNT(*) FROM sessions WHERE user_id = '{}'", u.id)).await, 1);
        // Hard limit: 180 days after sign-in however much it was used (and
        // then not shown again: shown, it would be ended on the spot).
        for _ in 0..2 {
            t.clock.advance(30 * DAY);
            assert_eq!(t.call(Req::get("/v1/me").signed_in(&other)).await.status, StatusCode::OK);
        }
        t.clock.advance(30 * DAY);
        let s = sweep::run_once(&t.state).await.unwrap();
        assert_eq!(s.sessions, 1, "{s:?}");
        assert_eq!(
            t.find_anywhere("test-agent/1.0").await,
            Vec::<String>::new(),
            "IP and user agent gone with the session"
        );
        assert_eq!(t.find_anywhere("203.0.113.9").await, Vec::<String>::new());
    }
);

on_both_databases!(the_request_log_is_readable_by_owners_and_gone_after_30_days, |t: TestApp| async move {
    let u = t.user("logs@example.com", PW).await;
    let key = t.key_for(&u).await;
    let id = put(&t, upload(&png(8, 8, 1)).key(&key).header("x-forwarded-for", "192.0.2.77")).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    t.call(Req::get(&format!("/v1/images/{id}?secret=no")).key(&key).header("x-forwarded-for", "192.0.2.77")).await;
    t.call(Req::get("/v1/images/nope1234").key(&key).header("x-forwarded-for", "192.0.2.77")).await;
    // Anonymous calls are never logged.
    put(&t, upload(&png(8, 8, 2)).header("x-forwarded-for", "192.0.2.99")).await;
    t.state.request_log.flush().await;

    let r = t.call(Req::get(&format!("/v1/teams/{}/requests?limit=2", u.team)).signed_in(&u)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let page = r.json["data"].as_array().unwrap().clone();
    assert_eq!(page.len(), 2);
    assert_eq!(page[0]["route"], "/v1/images/{id}");
    assert_eq!(page[0]["status"], 404);
    assert_eq!(page[1]["status"], 200);
    assert_eq!(page[0]["ip"], "192.0.2.77");
    assert!(!r.text.contains("secret"), "no query strings: {}", r.text);
    let cursor = r.json["pagination"]["next_cursor"].as_str().unwrap();
    let r = t.call(Req::get(&format!("/v1/teams/{}/requests?cursor={cursor}", u.team)).signed_in(&u)).await;
    let rest = r.json["data"].as_array().unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!((rest[0]["method"].as_str(), rest[0]["route"].as_str()), (Some("POST"), Some("/v1/images")));
    assert_eq!(r.json["pagination"]["has_more"], false);
    assert_eq!(t.find_anywhere("192.0.2.99").await, Vec::<String>::new(), "anonymous uploads leave no address");
    // Only owners read it.
    let other = t.user("other@example.com", PW).await;
    let r = t.call(Req::get(&format!("/v1/teams/{}/requests", u.team)).signed_in(&other)).await;
    assert!(matches!(r.status, StatusCode::FORBIDDEN | StatusCode::NOT_FOUND), "{}", r.status);

    t.clock.advance(30 * DAY - 1);
    assert_eq!(sweep::run_once(&t.state).await.unwrap().request_log, 0);
    t.clock.advance(1);
    assert_eq!(sweep::run_once(&t.state).await.unwrap().request_log, 3);
    assert_eq!(t.find_anywhere("192.0.2.77").await, Vec::<String>::new());
});

on_both_databases!(spent_links_finished_invitations_and_old_idempotency_records_are_deleted, |t: TestApp| async move {
    let u = t.user("owner@example.com", PW).await; // spends a verification link
    let team = t.call(Req::post("/v1/teams", json!({"name": "crew"})).signed_in(&u)).await;
    let team_id = team.json["id"].as_str().unwrap();
    let r = t
        .call(
            Req::post(
                &format!("/v1/teams/{team_id}/invitations"),
                json!({"email": "guest@example.com", "role": "member"}),
            )
            .signed_in(&u),
        )
        .await;
    assert!(r.status.is_success(), "{}", r.text);
    let key = t.key_for(&u).await;
    let r = t.call(upload(&png(8, 8, 1)).key(&key).header("idempotency-key", "once-only-1")).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let s = sweep::run_once(&t.state).await.unwrap();
    assert_eq!((s.email_tokens, s.invitations, s.idempotency_records), (1, 0, 0), "{s:?}");
    t.clock.advance(8 * DAY); // the invitation (7 days) and the idempotency record (1 day) are past
    let s = sweep::run_once(&t.state).await.unwrap();
    assert_eq!((s.invitations, s.idempotency_records), (1, 1), "{s:?}");
    for table in ["email_tokens", "invitations", "idempotency_keys"] {
        assert_eq!(t.count(&format!("SELECT COUNT(*) FROM {table}")).await, 0, "{table}");
    }
    // The invitation mail leaves the outbox once sent, and the file with
    // the next sweep's checkpoint.
    t.deliver().await;
    sweep::run_once(&t.state).await.unwrap();
    assert_eq!(t.find_anywhere("guest@example.com").await, Vec::<String>::new());
});

on_both_databases!(unverified_accounts_upload_a_limited_number_of_images, |t: TestApp| async move {
    let t = t.same_backend_with(|c| c.uploads.unverified_max_uploads = 2).await;
    let r = t.call(Req::post("/v1/keys", json!({"email": "capped@example.com"}))).await;
    assert_eq!(r.json["limits"]["uploads"], 2);
    let key = r.json["key"].as_str().unwrap().to_string();
    for seed in 0..2u8 {
        put(&t, upload(&png(8, 8, seed)).key(&key)).await;
    }
    let r = t.call(upload(&png(8, 8, 9)).key(&key)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert_eq!(r.code(), "quota_exceeded");
    assert!(r.json["error"]["message"].as_str().unwrap().contains("Verify your email"), "{}", r.text);
    assert_eq!(r.json["error"]["usage"]["uploads"]["limit"], 2);
    // Verifying lifts it.
    let token = t.mail_to("capped@example.com").await.last().unwrap().token("/verify-email").unwrap();
    t.call(Req::post("/v1/auth/verify", json!({"token": token}))).await;
    put(&t, upload(&png(8, 8, 9)).key(&key)).await;
});

on_both_databases!(a_dry_run_lists_what_is_due_and_changes_nothing, |t: TestApp| async move {
    let id = put(&t, with_ttl(&png(8, 8, 1), "1h")).await["id"].as_str().unwrap().to_string();
    let now = t.clock.unix_now();
    fn due(steps: &[(&'static str, u64, Vec<String>)], name: &str) -> (&'static str, u64, Vec<String>) {
        steps.iter().find(|s| s.0 == name).unwrap().clone()
    }
    let today = sweep::survey(&t.state, now).await.unwrap();
    assert_eq!(due(&today, "expired_images").1, 0);
    let later = sweep::survey(&t.state, now + 2 * 3600).await.unwrap();
    assert_eq!(due(&later, "expired_images"), ("expired_images", 1, vec![id.clone()]));
    assert!(t.public_store().join(format!("manifests/{id}.json")).exists(), "nothing changed");
    assert_eq!(t.count("SELECT COUNT(*) FROM images WHERE deleted_at IS NULL").await, 1);
});

on_both_databases!(one_control_plane_sweeps_at_a_time, |t: TestApp| async move {
    let now = t.clock.unix_now();
    assert!(lease::acquire(&t.state.db, "sweep", "a", now, 600).await.unwrap());
    assert!(!lease::acquire(&t.state.db, "sweep", "b", now, 600).await.unwrap());
    assert!(sweep::run_leased(&t.state, "b", &mut |_, _, _| {}).await.unwrap().is_none(), "b must wait");
    assert!(lease::acquire(&t.state.db, "sweep", "a", now + 10, 600).await.unwrap(), "a renews");
    // a dies: its lease runs out and b takes over.
    assert!(lease::acquire(&t.state.db, "sweep", "b", now + 611, 600).await.unwrap());
    lease::release(&t.state.db, "sweep", "b").await.unwrap();
    assert!(sweep::run_leased(&t.state, "c", &mut |_, _, _| {}).await.unwrap().is_some());
});
