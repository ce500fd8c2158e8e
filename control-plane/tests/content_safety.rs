//! Content safety: nothing public before it is classified, what was
//! removed stays removed, operator review with an append-only log, reports
//! and DMCA on the clock — on SQLite and PostgreSQL.

mod common;

use std::io::Cursor;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use common::*;
use imgcdn_control_plane::moderation::config::{FailPolicy, HookConfig, Outcome};
use imgcdn_shared::testing::png;
use serde_json::{json, Value};

const PW: &str = "tulip-Orbit-94";

fn upload(bytes: &[u8]) -> Req {
    Req::new("POST", "/v1/images").multipart(&[("file", Some("a.png"), bytes)])
}

/// A photo-like picture: smooth gradients and a few soft shapes (what PDQ
/// is made for; noise is not), as PNG.
fn photo(seed: u32) -> image::RgbImage {
    image::RgbImage::from_fn(640, 480, |x, y| {
        let (fx, fy) = (x as f32 / 640.0, y as f32 / 480.0);
        let s = seed as f32;
        let blob = |cx: f32, cy: f32, r: f32| (1.0 - (((fx - cx).powi(2) + (fy - cy).powi(2)).sqrt() / r)).max(0.0);
        let v = 0.4 * blob(0.3 + 0.05 * s, 0.4, 0.25) + 0.6 * blob(0.7, 0.6 - 0.03 * s, 0.3);
        image::Rgb([
            (255.0 * (0.2 + 0.6 * fx * v + 0.2 * fy)).min(255.0) as u8,
            (255.0 * (0.3 + 0.5 * v)).min(255.0) as u8,
            (255.0 * (0.6 - 0.4 * fy + 0.3 * v * s.sin().abs())).clamp(0.0, 255.0) as u8,
        ])
    })
}

fn encode(img: &image::RgbImage, format: image::ImageFormat) -> Vec<u8> {
    let mut out = Vec::new();
    match format {
        image::ImageFormat::Jpeg => {
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 60).encode_image(img).unwrap()
        }
        f => img.write_to(&mut Cursor::new(&mut out), f).unwrap(),
    }
    out
}

async fn takedown(t: &TestApp, op: &str, id: &str, reason: &str) -> Resp {
    let r = t.call(Req::post(&format!("/v1/admin/images/{id}/takedown"), json!({"reason": reason})).key(op)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r
}

/// A local server answering every request with `body` (its bytes).
async fn serve_bytes(body: Vec<u8>) -> std::net::SocketAddr {
    let app = axum::Router::new().fallback(move || {
        let body = body.clone();
        async move { ([("content-type", "image/png")], body) }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

on_both_databases!(a_taken_down_image_cannot_be_uploaded_again_on_any_surface, |t: TestApp| async move {
    let image = png(24, 24, 40);
    let source = serve_bytes(image.clone()).await;
    let t = t.same_backend_with(|c| c.uploads.import_allow = vec![source]).await;
    let u = t.user("bad@example.com", PW).await;
    let key = t.key_for(&u).await;
    let op = t.operator("ann").await;
    let first = t.call(upload(&image).key(&key)).await;
    let id = first.json["id"].as_str().unwrap().to_string();
    takedown(&t, &op, &id, "csam").await;
    let images_before = t.count("SELECT COUNT(*) FROM images").await;
    let objects_before = std::fs::read_dir(t.public_store().join("objects")).map(|d| d.count()).unwrap_or(0);
    let url = format!("http://{source}/again.png");
    // API-key calls go to the request log with their address (the policy
    // allows it for the API); the others come from an address that must
    // be stored nowhere.
    let (key_ip, other_ip) = ("198.51.100.4", "198.51.100.3");
    for (surface, req, ip) in [
        ("anonymous", upload(&image), other_ip),
        ("key", upload(&image).key(&key), key_ip),
        ("session", upload(&image).signed_in(&u), other_ip),
        ("legacy upload", Req::new("POST", "/v1/upload").multipart(&[("file", Some("a.png"), &image)]), other_ip),
        ("import", Req::post("/v1/images", json!({"url": url})).key(&key), key_ip),
        ("legacy import", Req::post("/v1/import", json!({"url": url})), other_ip),
    ] {
        let r = t.call(req.header("x-forwarded-for", ip)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{surface}: {}", r.text);
        assert_eq!(r.code(), "media_blocked", "{surface}");
    }
    assert_eq!(t.count("SELECT COUNT(*) FROM images").await, images_before, "nothing stored");
    let objects_after = std::fs::read_dir(t.public_store().join("objects")).map(|d| d.count()).unwrap_or(0);
    assert_eq!(objects_after, objects_before);
    assert_eq!(t.count("SELECT COUNT(*) FROM blocklist_matches WHERE category = 'csam'").await, 6);
    assert_eq!(t.find_anywhere(other_ip).await, Vec::<String>::new(), "matches are recorded without the address");
});

on_both_databases!(a_reencoded_and_resized_copy_of_a_taken_down_image_is_refused_by_pdq, |t: TestApp| async move {
    let u = t.user("pdq@example.com", PW).await;
    let key = t.key_for(&u).await;
    let op = t.operator("pat").await;
    let original = photo(1);
    let r = t.call(upload(&encode(&original, image::ImageFormat::Png)).key(&key)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    takedown(&t, &op, r.json["id"].as_str().unwrap(), "terrorism").await;
    // JPEG at quality 60, 80% of the size, and lightly cropped.
    let jpeg = encode(&original, image::ImageFormat::Jpeg);
    let small = image::imageops::resize(&original, 512, 384, image::imageops::FilterType::Triangle);
    // A light crop: 16 px off each side (5% of the width). PDQ is not built
    // for heavy or one-sided crops (the closing note has the distances).
    let cropped = image::imageops::crop_imm(&original, 16, 0, 608, 480).to_image();
    for (what, bytes) in [
        ("re-encoded", jpeg),
        ("resized", encode(&small, image::ImageFormat::Png)),
        ("lightly cropped", encode(&cropped, image::ImageFormat::Png)),
    ] {
        let r = t.call(Req::new("POST", "/v1/images").key(&key).multipart(&[("file", Some("x"), &bytes)])).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{what}: {}", r.text);
        assert_eq!(r.code(), "media_blocked");
    }
    assert_eq!(t.count("SELECT COUNT(*) FROM blocklist_matches WHERE kind = 'pdq'").await, 3);
    // A different picture is not caught.
    let other = t.call(upload(&encode(&photo(7), image::ImageFormat::Png)).key(&key)).await;
    assert_eq!(other.status, StatusCode::CREATED, "{}", other.text);
});

on_both_databases!(taken_down_images_answer_media_blocked_leave_lists_and_the_public_store, |t: TestApp| async move {
    let u = t.user("owner@example.com", PW).await;
    let key = t.key_for(&u).await;
    let op = t.operator("ole").await;
    let a = t.call(upload(&png(8, 8, 50)).key(&key)).await.json["id"].as_str().unwrap().to_string();
    let b = t.call(upload(&png(8, 8, 51)).key(&key)).await.json["id"].as_str().unwrap().to_string();
    takedown(&t, &op, &a, "copyright").await;
    let r = t.call(Req::get(&format!("/v1/images/{a}")).key(&key)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.code(), "media_blocked");
    let ids = t.call(Req::get(&format!("/v1/images?ids={a},{b}")).key(&key)).await;
    let listed: Vec<&str> = ids.json["data"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(listed, vec![b.as_str()]);
    let all = t.call(Req::get("/v1/images").key(&key)).await;
    assert_eq!(all.json["data"].as_array().unwrap().len(), 1);
    assert!(!t.public_store().join(format!("objects/{a}")).exists(), "bytes left the public store");
    assert!(t.recovery_store().join(format!("recovery/{a}/object")).exists());
    // Same bytes again in the same team: never linked to the taken-down object.
    let again = t.call(upload(&png(8, 8, 50)).key(&key)).await;
    assert_eq!(again.status, StatusCode::CREATED, "copyright takedowns do not list the hash: {}", again.text);
    let id = again.json["id"].as_str().unwrap();
    assert_eq!(t.count(&format!("SELECT COUNT(*) FROM images WHERE id = '{id}' AND object_key IS NULL")).await, 1);
    assert!(t.public_store().join(format!("objects/{id}")).exists());
});

on_both_databases!(a_prohibited_takedown_reaches_every_copy_in_every_team, |t: TestApp| async move {
    let a = t.user("a@example.com", PW).await;
    let b = t.user("b@example.com", PW).await;
    let (ka, kb) = (t.key_for(&a).await, t.key_for(&b).await);
    let op = t.operator("kim").await;
    let bytes = png(8, 8, 60);
    let one = t.call(upload(&bytes).key(&ka)).await.json["id"].as_str().unwrap().to_string();
    let two = t.call(upload(&bytes).key(&kb)).await.json["id"].as_str().unwrap().to_string();
    takedown(&t, &op, &one, "csam").await;
    let r = t.call(Req::get(&format!("/v1/images/{two}")).key(&kb)).await;
    assert_eq!(r.code(), "media_blocked", "the other team's copy went too");
    assert!(!t.public_store().join(format!("manifests/{two}.json")).exists());
});

/// The nudity model and the fixtures, or `None` (skipped visibly; CI needs them).
fn nudity_model() -> Option<std::path::PathBuf> {
    let path = imgcdn_safety::nudity::default_model_path().filter(|p| p.is_file());
    if path.is_none() {
        assert!(std::env::var_os("CI").is_none(), "CI runs scripts/fetch-models: the nudity model must be there");
        eprintln!("SKIPPED: no nudity model (run scripts/fetch-models)");
    }
    path
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/../safety/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

on_both_databases!(the_nudity_detector_marks_what_it_flags_and_passes_a_clean_image, |t: TestApp| async move {
    let Some(model) = nudity_model() else { return };
    let t = t.same_backend_with(|c| c.moderation.nudity.model = Some(model)).await;
    let u = t.user("nd@example.com", PW).await;
    let key = t.key_for(&u).await;
    let flagged = t.call(upload(&fixture("flagged-synthetic.png")).key(&key)).await;
    assert_eq!(flagged.status, StatusCode::CREATED, "{}", flagged.text);
    assert_eq!(flagged.json["nsfw"], true);
    assert_eq!(flagged.json["status"], "ready");
    let id = flagged.json["id"].as_str().unwrap();
    // Served restricted (the default outcome): marked at the edge, behind the viewer's interstitial.
    let state = t.call(Req::get(&format!("/{id}"))).await;
    assert!(state.text.contains("content-warning"), "{}", state.text);
    let clean = t.call(upload(&fixture("clean-landscape.png")).key(&key)).await;
    assert_eq!(clean.json["nsfw"], false, "{}", clean.text);
    assert_eq!(t.count("SELECT COUNT(*) FROM classifications WHERE classifier = 'nudity'").await, 2);
});

on_both_databases!(without_a_model_nsfw_stays_unknown, |t: TestApp| async move {
    let u = t.user("unk@example.com", PW).await;
    let key = t.key_for(&u).await;
    let r = t.call(upload(&png(8, 8, 70)).key(&key)).await;
    assert_eq!(r.json["nsfw"], Value::Null);
});

/// A classifier hook on a local port: answers `verdict` after `delay`,
/// and notes whether the public store held any manifest while it was asked.
struct FakeHook {
    addr: std::net::SocketAddr,
    manifests_seen: Arc<Mutex<Vec<bool>>>,
}

async fn hooked(t: &TestApp, verdict: Value, delay: Duration, fail: FailPolicy) -> (TestApp, FakeHook) {
    let dir_holder = std::sync::Arc::new(Mutex::new(None));
    let hook = {
        // The public store of the app below is only known after it is built;
        // the hook looks at it through this shared path.
        let shared = dir_holder.clone();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        let app = axum::Router::new().fallback(move || {
            let (verdict, seen, shared) = (verdict.clone(), seen2.clone(), shared.clone());
            async move {
                let store: Option<std::path::PathBuf> = shared.lock().unwrap().clone();
                let manifests =
                    store.map(|s| std::fs::read_dir(s.join("manifests")).map(|d| d.count()).unwrap_or(0)).unwrap_or(0);
                seen.lock().unwrap().push(manifests > 0);
                tokio::time::sleep(delay).await;
                axum::Json(verdict)
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeHook { addr, manifests_seen: seen }
    };
    let url = format!("http://{}/classify", hook.addr);
    let app = t
        .same_backend_with(|c| {
            c.moderation.hook = Some(HookConfig { url, token: None, timeout_ms: 300, fail, max_attempts: 1 });
            c.moderation.outcomes.insert("restricted:violence".into(), Outcome::Review);
        })
        .await;
    *dir_holder.lock().unwrap() = Some(app.public_store());
    (app, hook)
}

async fn run_jobs(t: &TestApp) {
    imgcdn_control_plane::moderation::jobs::run_due(&t.state).await.unwrap();
}

on_both_databases!(a_slow_classifier_decides_each_outcome_and_nothing_is_public_before, |t: TestApp| async move {
    for (verdict, status, public_after) in [
        (json!({"verdict": "clean"}), "ready", true),
        (json!({"verdict": "restricted", "category": "violence"}), "review", false),
        (json!({"verdict": "prohibited", "category": "csam", "score": 0.99}), "blocked", false),
    ] {
        let (t, hook) = hooked(&t, verdict.clone(), Duration::ZERO, FailPolicy::Closed).await;
        let u = t.user("hk@example.com", PW).await;
        let key = t.key_for(&u).await;
        let r = t.call(upload(&png(16, 16, 80)).key(&key)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        assert_eq!(r.json["status"], "processing");
        let id = r.json["id"].as_str().unwrap().to_string();
        assert!(!t.public_store().join(format!("objects/{id}")).exists(), "awaiting classification: staging only");
        assert!(t.state.cfg.stores.staging.options["root"].len() > 1);
        run_jobs(&t).await;
        assert_eq!(hook.manifests_seen.lock().unwrap().as_slice(), &[false], "no manifest while classifying");
        let s = t.count(&format!("SELECT COUNT(*) FROM images WHERE id = '{id}' AND status = '{status}'")).await;
        assert_eq!(s, 1, "{verdict}: expected {status}");
        assert_eq!(t.public_store().join(format!("manifests/{id}.json")).exists(), public_after, "{verdict}");
        match status {
            "ready" => {
                assert_eq!(t.call(Req::get(&format!("/v1/images/{id}")).key(&key)).await.json["status"], "ready")
            }
            "review" => {
                assert_eq!(t.call(Req::get(&format!("/v1/images/{id}")).key(&key)).await.json["status"], "processing");
                assert_eq!(t.count("SELECT COUNT(*) FROM review_items WHERE resolved_at IS NULL").await, 1);
            }
            _ => {
                assert_eq!(t.call(Req::get(&format!("/v1/images/{id}")).key(&key)).await.code(), "media_blocked");
                assert!(t.recovery_store().join(format!("recovery/{id}/object")).exists());
                assert_eq!(
                    t.count("SELECT COUNT(*) FROM blocklist WHERE category = 'csam'").await,
                    2,
                    "sha256 and pdq"
                );
            }
        }
    }
});

on_both_databases!(the_hooks_timeout_follows_the_fail_policy, |t: TestApp| async move {
    for (fail, status) in [(FailPolicy::Closed, "review"), (FailPolicy::Open, "ready")] {
        let (t, _hook) = hooked(&t, json!({"verdict": "clean"}), Duration::from_secs(2), fail).await;
        let u = t.user("slow@example.com", PW).await;
        let key = t.key_for(&u).await;
        let id = t.call(upload(&png(16, 16, 81)).key(&key)).await.json["id"].as_str().unwrap().to_string();
        run_jobs(&t).await;
        let s = t.count(&format!("SELECT COUNT(*) FROM images WHERE id = '{id}' AND status = '{status}'")).await;
        assert_eq!(s, 1, "{fail:?} → {status}");
        let verdict = t
            .count(&format!("SELECT COUNT(*) FROM classifications WHERE image_id = '{id}' AND verdict = 'error'"))
            .await;
        assert_eq!(verdict, 1);
    }
});

on_both_databases!(operators_review_held_uploads_and_every_view_and_decision_is_logged, |t: TestApp| async move {
    let (t, _hook) =
        hooked(&t, json!({"verdict": "restricted", "category": "violence"}), Duration::ZERO, FailPolicy::Closed).await;
    let u = t.user("rv@example.com", PW).await;
    let key = t.key_for(&u).await;
    let op = t.operator("rita").await;
    let id = t.call(upload(&png(16, 16, 82)).key(&key)).await.json["id"].as_str().unwrap().to_string();
    run_jobs(&t).await;
    let queue = t.call(Req::get("/v1/admin/review?category=violence").key(&op)).await;
    let items = queue.json["data"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{}", queue.text);
    let item = items[0]["id"].as_str().unwrap().to_string();
    assert_eq!(items[0]["image_id"], id.as_str());
    assert_eq!(t.call(Req::get("/v1/admin/review?category=csam").key(&op)).await.json["data"], json!([]));
    let view = t.call(Req::get(&format!("/v1/admin/review/{item}")).key(&op)).await;
    assert_eq!(view.json["image"]["state"]["status"], "review", "{}", view.text);
    let r =
        t.call(Req::post(&format!("/v1/admin/review/{item}/approve"), json!({"note": "a painting"})).key(&op)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(t.public_store().join(format!("manifests/{id}.json")).exists(), "approved: published");
    assert!(!t.state.cfg.stores.staging.options["root"].is_empty());
    let log = t.call(Req::get(&format!("/v1/admin/review-log?image={id}")).key(&op)).await;
    let entries = log.json["data"].as_array().unwrap();
    let actions: Vec<&str> = entries.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, vec!["approve", "view"], "newest first");
    assert_eq!(entries[0]["before"]["status"], "review");
    assert_eq!(entries[0]["after"]["status"], "ready");
    assert_eq!(entries[0]["reason"], "a painting");
    assert!(entries[0]["operator_id"].as_str().unwrap().starts_with("op_"));
    // Decided items leave the queue; deciding again is a conflict.
    assert_eq!(t.call(Req::get("/v1/admin/review").key(&op)).await.json["data"], json!([]));
    let again = t.call(Req::post(&format!("/v1/admin/review/{item}/remove"), json!({})).key(&op)).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    // The log cannot be changed, even by a query that tries.
    for sql in ["UPDATE review_log SET action = 'x'", "DELETE FROM review_log"] {
        assert!(sqlx::query(sql).execute(&t.state.db.pool).await.is_err(), "{sql} must fail");
    }
    assert_eq!(t.count("SELECT COUNT(*) FROM review_log").await, 2);
});

on_both_databases!(anyone_can_report_an_image_and_an_operator_takes_it_down_from_the_queue, |t: TestApp| async move {
    let u = t.user("rep@example.com", PW).await;
    let key = t.key_for(&u).await;
    let op = t.operator("ravi").await;
    let r = t.call(upload(&png(8, 8, 83)).key(&key)).await;
    let (id, url) = (r.json["id"].as_str().unwrap().to_string(), r.json["url"].as_str().unwrap().to_string());
    let bad = t.call(Req::post("/v1/reports", json!({"image": url, "reason": "boring"}))).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = t
        .call(Req::post(
            "/v1/reports",
            json!({"image": format!("{url}?size=m"), "reason": "harassment", "details": "about me"}),
        ))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let items = t.call(Req::get("/v1/admin/review?source=report").key(&op)).await.json["data"].clone();
    assert_eq!(items[0]["image_id"], id.as_str());
    let item = items[0]["id"].as_str().unwrap();
    let r = t
        .call(Req::post(&format!("/v1/admin/review/{item}/takedown"), json!({"reason": "terms_violation"})).key(&op))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(t.call(Req::get(&format!("/{id}"))).await.status, StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS);
});

fn notice(image: &str) -> Value {
    json!({
        "image": image, "claimant_name": "Carla Claimant", "claimant_email": "carla@rights.example",
        "claimant_address": "1 Copyright Way, Springfield", "work": "My photograph 'Dawn', 2024",
        "good_faith": true, "accurate_under_penalty_of_perjury": true, "signature": "Carla Claimant",
    })
}

on_both_databases!(dmca_notice_takedown_counter_notice_and_restore_on_the_clock, |t: TestApp| async move {
    let u = t.user("up@example.com", PW).await;
    let op = t.operator("dora").await;
    let r = t.call(upload(&png(8, 8, 84)).signed_in(&u)).await;
    let id = r.json["id"].as_str().unwrap().to_string();
    let mut missing = notice(&id);
    missing["good_faith"] = json!(false);
    assert_eq!(t.call(Req::post("/v1/dmca", missing)).await.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = t.call(Req::post("/v1/dmca", notice(&id))).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let notice_id = r.json["id"].as_str().unwrap().to_string();
    let r = t.call(Req::new("POST", &format!("/v1/admin/dmca/{notice_id}/takedown")).key(&op)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(t.call(Req::get(&format!("/{id}"))).await.status, StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS);
    // The uploader is told, with a counter-notice link.
    let token = t.newest_link("up@example.com", "An image of yours was removed (DMCA)", "/dmca/counter").await;
    let counter = json!({
        "token": token, "name": "Uma Uploader", "address": "2 Own Work Street",
        "statement": "I took this photograph myself.", "consent_to_jurisdiction": true, "signature": "Uma Uploader",
    });
    let r = t.call(Req::post("/v1/dmca/counter", counter.clone())).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        t.call(Req::post("/v1/dmca/counter", counter)).await.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "single use"
    );
    let to_claimant = t.mail_to("carla@rights.example").await;
    assert!(to_claimant.iter().any(|m| m.body.contains("I took this photograph myself.")));
    // Not before the waiting period ends…
    t.clock.advance(13 * 86_400);
    imgcdn_control_plane::retention::sweep::run_once(&t.state).await.unwrap();
    assert_eq!(t.call(Req::get(&format!("/{id}"))).await.status, StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS);
    // … then restored.
    t.clock.advance(86_400 + 1);
    let s = imgcdn_control_plane::retention::sweep::run_once(&t.state).await.unwrap();
    assert_eq!(s.restored, 1);
    assert_eq!(t.call(Req::get(&format!("/{id}"))).await.status, StatusCode::OK);
    assert!(t.public_store().join(format!("manifests/{id}.json")).exists());
    assert_eq!(t.call(Req::get(&format!("/v1/admin/dmca/{notice_id}")).key(&op)).await.json["state"], "restored");
});

on_both_databases!(a_court_action_keeps_it_down_and_repeat_infringers_lose_upload_rights, |t: TestApp| async move {
    let u = t.user("rep3@example.com", PW).await;
    let op = t.operator("duke").await;
    let mut first = String::new();
    for seed in 0..3u8 {
        let id = t.call(upload(&png(8, 8, 90 + seed)).signed_in(&u)).await.json["id"].as_str().unwrap().to_string();
        let n = t.call(Req::post("/v1/dmca", notice(&id))).await.json["id"].as_str().unwrap().to_string();
        t.call(Req::new("POST", &format!("/v1/admin/dmca/{n}/takedown")).key(&op)).await;
        if seed == 0 {
            first = id.clone();
            let token =
                t.newest_link("rep3@example.com", "An image of yours was removed (DMCA)", "/dmca/counter").await;
            t.call(Req::post("/v1/dmca/counter", json!({
                "token": token, "name": "U", "address": "A", "statement": "mine", "consent_to_jurisdiction": true, "signature": "U",
            })))
            .await;
            let r = t.call(Req::new("POST", &format!("/v1/admin/dmca/{n}/court-action")).key(&op)).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        }
    }
    t.clock.advance(15 * 86_400);
    imgcdn_control_plane::retention::sweep::run_once(&t.state).await.unwrap();
    assert_eq!(t.call(Req::get(&format!("/{first}"))).await.status, StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS);
    // Three strikes: no more uploads.
    let r = t.call(upload(&png(8, 8, 99)).signed_in(&u)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert!(r.json["error"]["message"].as_str().unwrap().contains("suspended"));
});

on_both_databases!(an_operator_list_imports_and_blocks_uploads, |t: TestApp| async move {
    use sha2::{Digest, Sha256};
    let bytes = png(8, 8, 100);
    let sha = hex::encode(Sha256::digest(&bytes));
    let csv = format!("kind,hash,category\nsha256,{sha},csam\nmd5,abc,csam\npdq,{},terrorism\n", "f".repeat(64));
    let r = imgcdn_control_plane::moderation::blocklist::import_csv(&t.state.db, &csv, "import:test.csv", T0)
        .await
        .unwrap();
    assert_eq!((r.added, r.already_listed, r.refused.len()), (2, 0, 1), "{r:?}");
    let again = imgcdn_control_plane::moderation::blocklist::import_csv(&t.state.db, &csv, "import:test.csv", T0)
        .await
        .unwrap();
    assert_eq!(again.already_listed, 2);
    let r = t.call(upload(&bytes)).await;
    assert_eq!(r.code(), "media_blocked");
});
