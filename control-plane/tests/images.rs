//! Uploads and the Images API through the router, on SQLite and PostgreSQL.

mod common;

use axum::http::StatusCode;
use common::*;
use imgcdn_shared::testing::png;
use imgcdn_shared::Manifest;
use serde_json::{json, Value};

const PW: &str = "tulip-Orbit-94";

fn upload(bytes: &[u8]) -> Req {
    Req::new("POST", "/v1/images").multipart(&[("file", Some("cat.png"), bytes)])
}

on_both_databases!(an_upload_with_a_key_is_stored_published_and_described, |t: TestApp| async move {
    let u = t.user("up@example.com", PW).await;
    let key = t.key_for(&u).await;
    let image = png(1600, 1200, 1);
    let r = t
        .call(Req::new("POST", "/v1/images").key(&key).multipart(&[
            ("file", Some("cat.png"), &image),
            ("caption", None, b"A cat"),
            ("labels", None, br#"{"album":"pets"}"#),
            ("metadata", None, br#"{"source":"phone"}"#),
        ]))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let img = &r.json;
    let id = img["id"].as_str().unwrap();
    let fields = [
        "id",
        "object",
        "url",
        "page_url",
        "sizes",
        "filename",
        "format",
        "width",
        "height",
        "bytes",
        "transformable",
        "status",
        "public",
        "published_at",
        "expires_at",
        "created_at",
        "caption",
        "metadata",
        "labels",
        "nsfw",
    ];
    for f in fields {
        assert!(img.get(f).is_some(), "field {f} missing");
    }
    assert_eq!(img.as_object().unwrap().len(), fields.len());
    assert_eq!(img["object"], "image");
    assert_eq!(img["format"], "png");
    assert_eq!((img["width"].as_i64(), img["height"].as_i64()), (Some(1600), Some(1200)));
    assert_eq!(img["status"], "ready");
    assert_eq!(img["public"], true);
    assert_eq!(img["expires_at"], serde_json::Value::Null, "kept until deleted");
    assert_eq!(img["caption"], "A cat");
    assert_eq!(img["labels"]["album"], "pets");
    assert_eq!(img["filename"], "cat.png");
    // The first segment is the team's storage name (as in the manifest).
    let url = img["url"].as_str().unwrap();
    let storage = url.strip_prefix("https://cdn.test/").and_then(|p| p.strip_suffix(&format!("/{id}.png"))).unwrap();
    assert!(storage.len() == 12 && storage.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_lowercase()), "{url}");
    assert_eq!(img["page_url"], format!("https://img.test/{id}"));
    assert_eq!(img["sizes"]["small"]["width"], 427);
    assert_eq!(img["sizes"]["small"]["height"], 320);
    assert!(img["sizes"]["large"]["url"].as_str().unwrap().ends_with("?size=l"));

    // Bytes then manifest in the public store, matching each other.
    let stored = std::fs::read(t.public_store().join(format!("objects/{id}"))).unwrap();
    let manifest =
        Manifest::from_json(&std::fs::read(t.public_store().join(format!("manifests/{id}.json"))).unwrap()).unwrap();
    assert_eq!(manifest.bytes, stored.len() as u64);
    assert_eq!(manifest.content_type, "image/png");
    assert_eq!((manifest.width, manifest.height), (1600, 1200));
    assert_eq!(manifest.storage.map(|s| s.to_string()).as_deref(), Some(storage));
    assert!(!manifest.shard_url, "a new image is served under its storage only");

    let got = t.call(Req::get(&format!("/v1/images/{id}")).key(&key)).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.json, r.json);
});

on_both_databases!(delete_takes_an_image_off_serving_into_recovery, |t: TestApp| async move {
    let u = t.user("del@example.com", PW).await;
    let key = t.key_for(&u).await;
    let image = png(40, 30, 2);
    let id = t.call(upload(&image).key(&key)).await.json["id"].as_str().unwrap().to_string();
    let r = t.call(Req::new("DELETE", &format!("/v1/images/{id}")).key(&key)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(!t.public_store().join(format!("manifests/{id}.json")).exists(), "still servable");
    assert!(!t.public_store().join(format!("objects/{id}")).exists());
    assert_eq!(std::fs::read(t.recovery_store().join(format!("recovery/{id}/object"))).unwrap(), image);
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(t.recovery_store().join(format!("recovery/{id}/record.json"))).unwrap())
            .unwrap();
    assert_eq!(record["reap_at"].as_i64().unwrap() - record["removed_at"].as_i64().unwrap(), 30 * 86_400);
    assert_eq!(t.call(Req::get(&format!("/v1/images/{id}")).key(&key)).await.status, StatusCode::NOT_FOUND);
    // Batch delete is idempotent and reports unknown ids.
    let other = t.call(upload(&png(10, 10, 3)).key(&key)).await.json["id"].as_str().unwrap().to_string();
    let r =
        t.call(Req::new("DELETE", "/v1/images/batch").key(&key).json(json!({"ids": [id, other, "zzzzzzzz"]}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["object"], "batch_result");
    assert_eq!(r.json["data"].as_array().unwrap().len(), 2);
    assert_eq!(r.json["errors"][0]["id"], "zzzzzzzz");
    assert!(!t.public_store().join(format!("manifests/{other}.json")).exists());
});

on_both_databases!(anonymous_uploads_expire_and_the_legacy_route_says_so, |t: TestApp| async move {
    let r = t.call(upload(&png(20, 20, 4)).header("x-forwarded-for", "198.51.100.1")).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json["expires_at"], "2026-01-31T00:00:00Z", "30 days after upload");
    let id = r.json["id"].as_str().unwrap();
    let manifest =
        Manifest::from_json(&std::fs::read(t.public_store().join(format!("manifests/{id}.json"))).unwrap()).unwrap();
    assert_eq!(manifest.expires_at.unwrap().unix_timestamp(), T0 + 30 * 86_400, "the edge enforces the same expiry");
    // A shorter ttl shortens it; a longer one cannot extend it.
    let r = t
        .call(Req::new("POST", "/v1/images").multipart(&[("file", Some("a.png"), &png(8, 8, 5)), ("ttl", None, b"2h")]))
        .await;
    assert_eq!(r.json["expires_at"], "2026-01-01T02:00:00Z");
    let r = t
        .call(
            Req::new("POST", "/v1/images").multipart(&[("file", Some("a.png"), &png(8, 8, 6)), ("ttl", None, b"90d")]),
        )
        .await;
    assert_eq!(r.json["expires_at"], "2026-01-31T00:00:00Z");

    let r = t.call(Req::new("POST", "/v1/upload").multipart(&[("file", Some("old.png"), &png(8, 8, 7))])).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert!(r.json["url"].as_str().unwrap().starts_with("https://img.test/"));
    assert!(r.json["src"].as_str().unwrap().starts_with("https://cdn.test/"));
    assert_eq!(r.json["extension"], "png");
    assert_eq!(r.json["expires_at"], T0 + 30 * 86_400);
    assert_eq!(r.json["upgrade"]["type"], "signup");
    let says = |r: &Resp| r.json["upgrade"]["message"].as_str().unwrap().to_string();
    assert!(says(&r).contains("deleted: this one on 2026-01-31 (UTC)"), "{}", says(&r));
    // The date it names is this upload's, however it was set.
    let r = t
        .call(
            Req::new("POST", "/v1/upload").multipart(&[("file", Some("old.png"), &png(8, 8, 8)), ("ttl", None, b"2h")]),
        )
        .await;
    assert_eq!(r.json["expires_at"], T0 + 2 * 3600, "{}", r.text);
    assert!(says(&r).contains("this one on 2026-01-01 (UTC)"), "{}", says(&r));

    // An unverified account (the legacy one-call key) keeps uploads 30 days; a verified one keeps them.
    let legacy = t.call(Req::post("/v1/keys", json!({"email": "unverified@example.com"}))).await;
    let key = legacy.json["key"].as_str().unwrap().to_string();
    let r = t.call(upload(&png(8, 8, 8)).key(&key)).await;
    assert_eq!(r.json["expires_at"], "2026-01-31T00:00:00Z");
    let u = t.user("verified@example.com", PW).await;
    let key = t.key_for(&u).await;
    assert_eq!(t.call(upload(&png(8, 8, 9)).key(&key)).await.json["expires_at"], serde_json::Value::Null);
});

on_both_databases!(anonymous_uploads_are_rate_limited_without_storing_the_address, |t: TestApp| async move {
    for i in 0..20 {
        let r = t.call(upload(&png(4, 4, i as u8)).header("x-forwarded-for", "203.0.113.50")).await;
        assert_eq!(r.status, StatusCode::CREATED, "upload {i}: {}", r.text);
    }
    let r = t.call(upload(&png(4, 4, 99)).header("x-forwarded-for", "203.0.113.50")).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers.contains_key("retry-after"));
    // Another client is not affected.
    assert_eq!(
        t.call(upload(&png(4, 4, 98)).header("x-forwarded-for", "203.0.113.51")).await.status,
        StatusCode::CREATED
    );
    assert_eq!(t.count("SELECT COUNT(*) FROM images").await, 21);
    // Not in any column of any table, nor in the database files.
    assert_eq!(t.find_anywhere("203.0.113.5").await, Vec::<String>::new());
});

on_both_databases!(bad_uploads_get_clear_errors_and_store_nothing, |t: TestApp| async move {
    let u = t.user("bad@example.com", PW).await;
    let key = t.key_for(&u).await;
    let mut huge_header = png(8, 8, 1);
    huge_header[16..20].copy_from_slice(&60_000u32.to_be_bytes()); // IHDR width
    huge_header[20..24].copy_from_slice(&60_000u32.to_be_bytes()); // IHDR height
    for (req, status, code) in [
        (Req::new("POST", "/v1/images").key(&key).multipart(&[("caption", None, b"no file")]), 422, "validation_error"),
        (upload(b"%PDF-1.7 not an image").key(&key), 422, "validation_error"),
        (upload(b"").key(&key), 422, "validation_error"),
        (upload(&huge_header).key(&key), 422, "validation_error"),
        (
            Req::new("POST", "/v1/images")
                .key(&key)
                .multipart(&[("file", Some("a.png"), &png(8, 8, 2)), ("ttl", None, b"1m")]),
            422,
            "validation_error",
        ),
        (
            Req::new("POST", "/v1/images")
                .key(&key)
                .multipart(&[("file", Some("a.png"), &png(8, 8, 2)), ("labels", None, b"[1,2]")]),
            422,
            "validation_error",
        ),
        (
            Req::new("POST", "/v1/images")
                .key(&key)
                .multipart(&[("file", Some("a.png"), &png(8, 8, 2)), ("public", None, b"maybe")]),
            422,
            "validation_error",
        ),
        (Req::new("POST", "/v1/images").key(&key).raw("text/plain", b"hello".to_vec()), 400, "bad_request"),
    ] {
        let path = req.path.clone();
        let r = t.call(req).await;
        assert_eq!(r.status.as_u16(), status, "{path}: {}", r.text);
        assert_eq!(r.code(), code, "{}", r.text);
    }
    assert_eq!(t.count("SELECT COUNT(*) FROM images").await, 0);
    assert!(std::fs::read_dir(t.public_store().join("objects")).map_or(true, |mut d| d.next().is_none()));
});

on_both_databases!(files_over_the_plan_limit_are_cut_off, |t: TestApp| async move {
    // The anonymous plan allows 20 MB; send 21 MB.
    let big = vec![0x89u8; 21_000_000];
    let r = t.call(upload(&big)).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", &r.text[..r.text.len().min(300)]);
    assert_eq!(r.code(), "file_too_large");
    assert_eq!(r.json["error"]["action"]["type"], "signup");
    assert_eq!(t.count("SELECT COUNT(*) FROM images").await, 0);
});

on_both_databases!(the_plan_quota_is_enforced_and_reported, |t: TestApp| async move {
    let u = t.user("quota@example.com", PW).await;
    let key = t.key_for(&u).await;
    // The test configuration gives "pro" a limit of 3 stored images.
    sqlx::query("UPDATE teams SET plan = 'pro' WHERE id = $1").bind(&u.team).execute(&t.state.db.pool).await.unwrap();
    let usage = t.call(Req::get("/v1/usage").key(&key)).await;
    assert_eq!(usage.status, StatusCode::OK, "{}", usage.text);
    assert_eq!(usage.json["plan"], "pro");
    assert_eq!(usage.json["limits"]["images"]["limit"], 3);
    assert_eq!(usage.json["limits_enforced"], true, "clients pause on a full plan only when told limits apply");
    let mut ids = Vec::new();
    for i in 0..3 {
        let r = t.call(upload(&png(4, 4, i)).key(&key)).await;
        assert_eq!(r.status, StatusCode::CREATED);
        ids.push(r.json["id"].as_str().unwrap().to_string());
    }
    let r = t.call(upload(&png(4, 4, 9)).key(&key)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert_eq!(r.json["error"]["type"], "quota_error");
    assert_eq!(r.code(), "quota_exceeded");
    assert_eq!(r.json["error"]["usage"]["images"]["used"], 3);
    assert_eq!(r.json["error"]["usage"]["images"]["limit"], 3);
    // With the plan full, clients' write probe (an empty JSON body) still
    // answers 422 for a write key and 403 for a read-only one, creating
    // nothing.
    let probe = t.call(Req::new("POST", "/v1/images").key(&key).json(serde_json::json!({}))).await;
    assert_eq!(probe.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", probe.text);
    let read_only = t.key_with(&u, &["read"]).await;
    let probe = t.call(Req::new("POST", "/v1/images").key(&read_only).json(serde_json::json!({}))).await;
    assert_eq!(probe.status, StatusCode::FORBIDDEN, "{}", probe.text);
    assert_ne!(probe.code(), "quota_exceeded");
    let usage = t.call(Req::get("/v1/usage").key(&key)).await;
    assert_eq!(usage.json["limits"]["images"]["used"], 3);
    assert!(usage.json["limits"]["storage"]["used_bytes"].as_i64().unwrap() > 0);
    // Deleting frees a slot.
    t.call(Req::new("DELETE", &format!("/v1/images/{}", ids[0])).key(&key)).await;
    assert_eq!(t.call(upload(&png(4, 4, 10)).key(&key)).await.status, StatusCode::CREATED);
});

on_both_databases!(concurrent_uploads_cannot_pass_the_quota_together, |t: TestApp| async move {
    let u = t.user("race@example.com", PW).await;
    let key = t.key_for(&u).await;
    // "pro" stores at most 3 images; 8 uploads race for the slots.
    sqlx::query("UPDATE teams SET plan = 'pro' WHERE id = $1").bind(&u.team).execute(&t.state.db.pool).await.unwrap();
    let answers = futures::future::join_all((0..8u8).map(|i| t.call(upload(&png(4, 4, 100 + i)).key(&key)))).await;
    let created = answers.iter().filter(|r| r.status == StatusCode::CREATED).count();
    assert_eq!(created, 3, "{:?}", answers.iter().map(|r| r.status).collect::<Vec<_>>());
    assert!(answers.iter().all(|r| r.status == StatusCode::CREATED || r.code() == "quota_exceeded"));
    let live = t.count("SELECT COUNT(*) FROM images WHERE deleted_at IS NULL").await;
    assert_eq!(live, 3, "the plan's limit holds");
});

on_both_databases!(list_paginates_filters_by_label_and_batches_by_id, |t: TestApp| async move {
    let u = t.user("list@example.com", PW).await;
    let key = t.key_for(&u).await;
    let mut ids = Vec::new();
    for i in 0..5u8 {
        t.clock.advance(1);
        let album = if i % 2 == 0 { "even" } else { "odd" };
        let labels = format!(r#"{{"album":"{album}"}}"#);
        let r = t
            .call(
                Req::new("POST", "/v1/images")
                    .key(&key)
                    .multipart(&[("file", Some("x.png"), &png(4, 4, i)), ("labels", None, labels.as_bytes())]),
            )
            .await;
        ids.push(r.json["id"].as_str().unwrap().to_string());
    }
    let page1 = t.call(Req::get("/v1/images?limit=2").key(&key)).await;
    assert_eq!(page1.json["object"], "list");
    let got: Vec<&str> = page1.json["data"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(got, [ids[4].as_str(), ids[3].as_str()], "newest first");
    assert_eq!(page1.json["pagination"]["has_more"], true);
    let cursor = page1.json["pagination"]["next_cursor"].as_str().unwrap();
    let page2 = t.call(Req::get(&format!("/v1/images?limit=2&cursor={cursor}")).key(&key)).await;
    let got: Vec<&str> = page2.json["data"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(got, [ids[2].as_str(), ids[1].as_str()]);
    let evens = t.call(Req::get("/v1/images?label%5Balbum%5D=even").key(&key)).await;
    assert_eq!(evens.json["data"].as_array().unwrap().len(), 3);
    let batch = t.call(Req::get(&format!("/v1/images?ids={},{},nope0000", ids[0], ids[4])).key(&key)).await;
    assert_eq!(batch.json["data"].as_array().unwrap().len(), 2);
    let bad = t.call(Req::get("/v1/images?limit=500").key(&key)).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let bad = t.call(Req::get("/v1/images?cursor=garbage!").key(&key)).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
});

on_both_databases!(patch_changes_fields_and_keeps_the_manifest_expiry_in_step, |t: TestApp| async move {
    let u = t.user("patch@example.com", PW).await;
    let key = t.key_for(&u).await;
    let id = t.call(upload(&png(4, 4, 1)).key(&key)).await.json["id"].as_str().unwrap().to_string();
    let r = t
        .call(
            Req::new("PATCH", &format!("/v1/images/{id}"))
                .key(&key)
                .json(json!({"caption": "New", "public": false, "labels": {"a": "b"}, "ttl": "7d"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["caption"], "New");
    assert_eq!(r.json["public"], false);
    assert_eq!(r.json["labels"]["a"], "b");
    assert_eq!(r.json["expires_at"], "2026-01-08T00:00:00Z");
    // Private: the manifest is withdrawn (the bytes stay), so no edge can serve it.
    let manifest_path = t.public_store().join(format!("manifests/{id}.json"));
    assert!(!manifest_path.exists(), "a private image has no manifest in the public store");
    assert!(t.public_store().join(format!("objects/{id}")).exists());
    // Public again: the manifest is back, with the new expiry the edge enforces.
    let r = t.call(Req::new("PATCH", &format!("/v1/images/{id}")).key(&key).json(json!({"public": true}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["caption"], "New", "a field left out is unchanged");
    let manifest = Manifest::from_json(&std::fs::read(&manifest_path).unwrap()).unwrap();
    assert_eq!(manifest.expires_at.unwrap().unix_timestamp(), T0 + 7 * 86_400);
    // `null` clears the caption (as docs/api.md says).
    let r = t.call(Req::new("PATCH", &format!("/v1/images/{id}")).key(&key).json(json!({"caption": null}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["caption"], Value::Null);
    let r = t.call(Req::new("PATCH", &format!("/v1/images/{id}")).key(&key).json(json!({"ttl": "100d"}))).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
});

on_both_databases!(a_teams_images_share_one_storage_name_that_no_other_team_has, |t: TestApp| async move {
    let a = t.user("sa@example.com", PW).await;
    let b = t.user("sb@example.com", PW).await;
    let (ka, kb) = (t.key_for(&a).await, t.key_for(&b).await);
    let segment = |img: &serde_json::Value| {
        let url = img["url"].as_str().unwrap().to_string();
        url.trim_start_matches("https://cdn.test/").split('/').next().unwrap().to_string()
    };
    let mut of_a = Vec::new();
    for seed in 0..5 {
        let r = t.call(upload(&png(12, 12, seed)).key(&ka)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        of_a.push(segment(&r.json));
    }
    of_a.dedup();
    assert_eq!(of_a.len(), 1, "one storage for the whole team: {of_a:?}");
    let r = t.call(upload(&png(12, 12, 9)).key(&kb)).await;
    assert_ne!(segment(&r.json), of_a[0], "another team, another storage");
    // Not derived from anything the client sees: the team's id is not in it.
    let team = t.call(Req::get("/v1/teams").signed_in(&a)).await;
    assert!(!team.text.contains(&of_a[0]), "{}", team.text);
    // Anonymous uploads have no team: the shard form.
    let r = t.call(upload(&png(12, 12, 10))).await;
    let id: imgcdn_shared::ImageId = r.json["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(segment(&r.json), id.shard().to_string());
});

on_both_databases!(images_from_before_storage_names_are_renamed_and_keep_their_old_urls, |t: TestApp| async move {
    let u = t.user("old@example.com", PW).await;
    let key = t.key_for(&u).await;
    let id = t.call(upload(&png(20, 20, 4)).key(&key)).await.json["id"].as_str().unwrap().to_string();
    let private = t
        .call(
            Req::new("POST", "/v1/images")
                .key(&key)
                .multipart(&[("file", Some("p.png"), &png(20, 20, 5)), ("public", None, b"false")]),
        )
        .await;
    assert_eq!(private.status, StatusCode::CREATED, "{}", private.text);
    let private = private.json["id"].as_str().unwrap().to_string();
    // Back to how an older version left them: no storage anywhere, and a
    // manifest without one.
    let manifest_path = t.public_store().join(format!("manifests/{id}.json"));
    let mut old = Manifest::from_json(&std::fs::read(&manifest_path).unwrap()).unwrap();
    old.storage = None;
    std::fs::write(&manifest_path, old.to_json()).unwrap();
    for sql in ["UPDATE images SET storage = NULL", "UPDATE teams SET storage = NULL"] {
        sqlx::query(sql).execute(&t.state.db.pool).await.unwrap();
    }
    let shard_url = format!("https://cdn.test/{}/{id}.png", id.parse::<imgcdn_shared::ImageId>().unwrap().shard());
    let got = t.call(Req::get(&format!("/v1/images/{id}")).key(&key)).await;
    assert_eq!(got.json["url"], shard_url, "unnamed: the old form");
    let logged = t.count(&format!("SELECT COUNT(*) FROM visibility_changes WHERE image_id = '{id}'")).await;

    let renamed = imgcdn_control_plane::storage_names::name_existing(&t.state).await.unwrap();
    assert_eq!(renamed, 2, "the public image and the private one");
    assert_eq!(t.count("SELECT COUNT(*) FROM teams WHERE storage IS NULL").await, 0);
    let got = t.call(Req::get(&format!("/v1/images/{id}")).key(&key)).await;
    let url = got.json["url"].as_str().unwrap().to_string();
    assert_ne!(url, shard_url);
    let storage = url.trim_start_matches("https://cdn.test/").split('/').next().unwrap().to_string();
    // The manifest serves both forms; edges are told to re-read it.
    let now = Manifest::from_json(&std::fs::read(&manifest_path).unwrap()).unwrap();
    assert_eq!(now.storage.map(|s| s.to_string()), Some(storage.clone()));
    assert!(now.shard_url);
    let again = t.count(&format!("SELECT COUNT(*) FROM visibility_changes WHERE image_id = '{id}'")).await;
    assert_eq!(again, logged + 1, "edges drop their copies of the old manifest");
    // The private one is renamed in its row and stays unpublished.
    assert!(!t.public_store().join(format!("manifests/{private}.json")).exists());
    assert_eq!(t.count(&format!("SELECT shard_url FROM images WHERE id = '{private}'")).await, 1);
    // New uploads use the same name; a second run has nothing to do.
    let r = t.call(upload(&png(20, 20, 6)).key(&key)).await;
    assert!(r.json["url"].as_str().unwrap().contains(&format!("/{storage}/")), "{}", r.text);
    assert_eq!(imgcdn_control_plane::storage_names::name_existing(&t.state).await.unwrap(), 0);
});

on_both_databases!(another_team_cannot_see_or_touch_an_image, |t: TestApp| async move {
    let a = t.user("a@example.com", PW).await;
    let b = t.user("b@example.com", PW).await;
    let (ka, kb) = (t.key_for(&a).await, t.key_for(&b).await);
    let id = t.call(upload(&png(4, 4, 1)).key(&ka)).await.json["id"].as_str().unwrap().to_string();
    for req in [
        Req::get(&format!("/v1/images/{id}")),
        Req::new("PATCH", &format!("/v1/images/{id}")).json(json!({"caption": "mine"})),
        Req::new("DELETE", &format!("/v1/images/{id}")),
    ] {
        assert_eq!(t.call(req.key(&kb)).await.status, StatusCode::NOT_FOUND);
    }
    let r = t.call(Req::new("DELETE", "/v1/images/batch").key(&kb).json(json!({"ids": [id]}))).await;
    assert_eq!(r.json["data"].as_array().unwrap().len(), 0);
    assert!(t.public_store().join(format!("manifests/{id}.json")).exists());
    assert_eq!(t.call(Req::get(&format!("/v1/images/{id}")).key(&ka)).await.status, StatusCode::OK);
});

on_both_databases!(the_viewer_page_shows_public_images_and_hides_private_ones, |t: TestApp| async move {
    let u = t.user("view@example.com", PW).await;
    let key = t.key_for(&u).await;
    let r = t
        .call(
            Req::new("POST", "/v1/images")
                .key(&key)
                .multipart(&[("file", Some("a.png"), &png(30, 20, 1)), ("caption", None, b"<b>Sunset</b>")]),
        )
        .await;
    let id = r.json["id"].as_str().unwrap().to_string();
    let page = t.call(Req::get(&format!("/{id}"))).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains("og:image"));
    assert!(page.text.contains(r.json["url"].as_str().unwrap()));
    assert!(page.text.contains("&lt;b&gt;Sunset"), "captions are escaped");
    t.call(Req::new("PATCH", &format!("/v1/images/{id}")).key(&key).json(json!({"public": false}))).await;
    assert_eq!(t.call(Req::get(&format!("/{id}"))).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        t.call(Req::get(&format!("/{id}")).cookie_only(&u)).await.status,
        StatusCode::OK,
        "the owner still sees it"
    );
    assert_eq!(t.call(Req::get("/nope")).await.status, StatusCode::NOT_FOUND);
});

/// A local HTTP server that answers every request with `body`.
/// A server that answers every request with `status` and no body.
async fn serve_status(status: u16) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let _ = s.read(&mut buf).await;
                let head = format!("HTTP/1.1 {status} Oops\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                let _ = s.write_all(head.as_bytes()).await;
            });
        }
    });
    addr
}

/// A server that accepts and never answers.
async fn serve_nothing() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    addr
}

/// An address nothing listens on.
fn free_port_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

async fn serve_bytes(body: Vec<u8>) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let _ = s.read(&mut buf).await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(&body).await;
            });
        }
    });
    addr
}

async fn import_scenario(t: TestApp, sources: &Sources, image: Vec<u8>) {
    let allowed = sources.allowed;
    let u = t.user("imp@example.com", PW).await;
    let key = t.key_for(&u).await;
    let r = t
        .call(
            Req::post("/v1/images", json!({"url": format!("http://{allowed}/photos/cat.png"), "caption": "Imported"}))
                .key(&key),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json["caption"], "Imported");
    assert_eq!(r.json["filename"], "cat.png");
    let id = r.json["id"].as_str().unwrap();
    assert_eq!(std::fs::read(t.public_store().join(format!("objects/{id}"))).unwrap(), image);

    // Not public, and not on the test allow-list: refused, nothing stored.
    let other = serve_bytes(image.clone()).await;
    for url in [
        format!("http://{other}/x.png"),
        format!("http://localhost:{}/x.png", other.port()),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "http://10.0.0.1/x.png".to_string(),
        "http://[::1]/x.png".to_string(),
        "file:///etc/passwd".to_string(),
    ] {
        let r = t.call(Req::post("/v1/images", json!({"url": url})).key(&key)).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{url}: {}", r.text);
        assert!(matches!(r.code(), "fetch_failed"), "{url}: {}", r.text);
    }
    assert_eq!(t.count("SELECT COUNT(*) FROM images").await, 1);

    // The source's faults are the gateway's: an error answer or nothing
    // listening is 502, too slow is 504 (clients retry only that).
    let (failing, silent, closed) = (sources.failing, sources.silent, sources.closed);
    for (url, want) in [
        (format!("http://{failing}/x.png"), StatusCode::BAD_GATEWAY),
        (format!("http://{closed}/x.png"), StatusCode::BAD_GATEWAY),
        (format!("http://{silent}/x.png"), StatusCode::GATEWAY_TIMEOUT),
    ] {
        let r = t.call(Req::post("/v1/images", json!({"url": url})).key(&key)).await;
        assert_eq!(r.status, want, "{url}: {}", r.text);
        assert_eq!(r.code(), "fetch_failed", "{url}: {}", r.text);
    }
    assert_eq!(t.count("SELECT COUNT(*) FROM images").await, 1);

    // The legacy route answers in its own shape.
    let r = t.call(Req::post("/v1/import", json!({"url": format!("http://{allowed}/b.png")}))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert!(r.json["src"].as_str().unwrap().starts_with("https://cdn.test/"));
    assert_eq!(r.json["upgrade"]["type"], "signup");
}

/// Sources on loopback for the import tests: one serving `image`, one
/// answering 500, one never answering, one not listening; all allowed.
struct Sources {
    allowed: std::net::SocketAddr,
    failing: std::net::SocketAddr,
    silent: std::net::SocketAddr,
    closed: std::net::SocketAddr,
}

impl Sources {
    async fn new(image: &[u8]) -> Sources {
        Sources {
            allowed: serve_bytes(image.to_vec()).await,
            failing: serve_status(500).await,
            silent: serve_nothing().await,
            closed: free_port_addr(),
        }
    }

    fn configure(&self, c: &mut imgcdn_control_plane::Config) {
        c.uploads.import_allow = vec![self.allowed, self.failing, self.silent, self.closed];
        c.uploads.import_timeout_secs = 1;
    }
}

#[tokio::test]
async fn import_by_url_fetches_public_addresses_only_sqlite() {
    let image = png(24, 24, 42);
    let sources = Sources::new(&image).await;
    let t = TestApp::sqlite_with(|c| sources.configure(c)).await;
    import_scenario(t, &sources, image).await;
}

#[tokio::test]
async fn import_by_url_fetches_public_addresses_only_postgres() {
    let image = png(24, 24, 43);
    let sources = Sources::new(&image).await;
    if let Some(t) = TestApp::postgres_with(|c| sources.configure(c)).await {
        import_scenario(t, &sources, image).await;
    }
}

on_both_databases!(an_idempotency_key_makes_a_retry_safe, |t: TestApp| async move {
    let u = t.user("idem@example.com", PW).await;
    let key = t.key_for(&u).await;
    let image = png(16, 16, 1);
    let first = t.call(upload(&image).key(&key).header("idempotency-key", "retry-1")).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    let again = t.call(upload(&image).key(&key).header("idempotency-key", "retry-1")).await;
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(again.json, first.json, "the retry gets the original answer");
    assert_eq!(t.count("SELECT COUNT(*) FROM images").await, 1, "and creates nothing");

    let other = t.call(upload(&png(16, 16, 2)).key(&key).header("idempotency-key", "retry-1")).await;
    assert_eq!(other.status, StatusCode::CONFLICT);
    assert_eq!(other.code(), "idempotency_key_conflict");
    assert_eq!(other.json["error"]["type"], "idempotency_error");

    // A request that failed frees its key.
    let bad = t.call(upload(b"not an image").key(&key).header("idempotency-key", "retry-2")).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let ok = t.call(upload(&png(16, 16, 3)).key(&key).header("idempotency-key", "retry-2")).await;
    assert_eq!(ok.status, StatusCode::CREATED);

    // The first request still running: same key, same request, not finished.
    sqlx::query("UPDATE idempotency_keys SET state = 'in_progress' WHERE idem_key = 'retry-1'")
        .execute(&t.state.db.pool)
        .await
        .unwrap();
    let busy = t.call(upload(&image).key(&key).header("idempotency-key", "retry-1")).await;
    assert_eq!(busy.status, StatusCode::CONFLICT);
    assert_eq!(busy.code(), "idempotency_key_in_progress");

    // Keys are per team: another team may use the same key.
    let v = t.user("idem2@example.com", PW).await;
    let key2 = t.key_for(&v).await;
    assert_eq!(
        t.call(upload(&image).key(&key2).header("idempotency-key", "retry-1")).await.status,
        StatusCode::CREATED
    );
    // And a day later the key is forgotten.
    t.clock.advance(86_401);
    let later = t.call(upload(&png(16, 16, 9)).key(&key).header("idempotency-key", "retry-1")).await;
    assert_eq!(later.status, StatusCode::CREATED);
    assert_ne!(later.json["id"], first.json["id"]);
});

on_both_databases!(
    the_sweep_finishes_or_undoes_interrupted_writes_and_retires_expired_images,
    |t: TestApp| async move {
        use imgcdn_control_plane::retention::sweep;
        let u = t.user("sweep@example.com", PW).await;
        let key = t.key_for(&u).await;
        let ids: Vec<String> = {
            let mut v = Vec::new();
            for i in 0..4u8 {
                v.push(t.call(upload(&png(8, 8, i)).key(&key)).await.json["id"].as_str().unwrap().to_string());
            }
            v
        };
        let store = t.public_store();
        // 0: crashed after the bytes, before the manifest.
        std::fs::remove_file(store.join(format!("manifests/{}.json", ids[0]))).unwrap();
        sqlx::query("UPDATE images SET status = 'processing' WHERE id = $1")
            .bind(&ids[0])
            .execute(&t.state.db.pool)
            .await
            .unwrap();
        // 1: crashed after the manifest, before the row said ready.
        sqlx::query("UPDATE images SET status = 'processing' WHERE id = $1")
            .bind(&ids[1])
            .execute(&t.state.db.pool)
            .await
            .unwrap();
        // 2: a delete interrupted after its commit (the row marked, its store work owed).
        sqlx::query("UPDATE images SET deleted_at = $1, store_pending = 1 WHERE id = $2")
            .bind(T0)
            .bind(&ids[2])
            .execute(&t.state.db.pool)
            .await
            .unwrap();
        // 3: expires.
        sqlx::query("UPDATE images SET expires_at = $1 WHERE id = $2")
            .bind(T0 + 600)
            .bind(&ids[3])
            .execute(&t.state.db.pool)
            .await
            .unwrap();

        // Too early: an upload may still be running; nothing is touched but
        // the interrupted delete (and the verification link the user spent).
        let s = sweep::run_once(&t.state).await.unwrap();
        assert_eq!(s, sweep::Swept { redone: 1, email_tokens: 1, ..Default::default() });
        assert!(store.join(format!("objects/{}", ids[0])).exists());

        t.clock.advance(sweep::STALE_SECS + 1);
        let s = sweep::run_once(&t.state).await.unwrap();
        assert_eq!(s, sweep::Swept { completed: 1, failed: 1, expired: 1, ..Default::default() });
        assert!(!store.join(format!("objects/{}", ids[0])).exists(), "orphan bytes removed");
        assert_eq!(
            t.count(&format!("SELECT COUNT(*) FROM images WHERE id = '{}' AND status = 'failed'", ids[0])).await,
            1
        );
        assert_eq!(t.call(Req::get(&format!("/v1/images/{}", ids[1])).key(&key)).await.json["status"], "ready");
        assert!(!store.join(format!("manifests/{}.json", ids[2])).exists());
        assert!(!store.join(format!("manifests/{}.json", ids[3])).exists(), "expired image left public");
        assert!(t.recovery_store().join(format!("recovery/{}/record.json", ids[3])).exists());
        // Quota counts what is live: the failed and the removed ones are not.
        assert_eq!(t.call(Req::get("/v1/usage").key(&key)).await.json["limits"]["images"]["used"], 1);
        // A second pass has nothing to do.
        assert_eq!(sweep::run_once(&t.state).await.unwrap(), sweep::Swept::default());
    }
);

on_both_databases!(
    identical_bytes_are_stored_once_per_team_and_deleting_one_alias_keeps_the_other,
    |t: TestApp| async move {
        let u = t.user("dup@example.com", PW).await;
        let key = t.key_for(&u).await;
        let image = png(32, 32, 77);
        let first = t.call(upload(&image).key(&key)).await.json["id"].as_str().unwrap().to_string();
        let second = t.call(upload(&image).key(&key)).await.json["id"].as_str().unwrap().to_string();
        assert_ne!(first, second, "each upload is its own image");
        let store = t.public_store();
        let objects = || std::fs::read_dir(store.join("objects")).unwrap().count();
        assert_eq!(objects(), 1, "the bytes are stored once");
        let m2 = Manifest::from_json(&std::fs::read(store.join(format!("manifests/{second}.json"))).unwrap()).unwrap();
        assert_eq!(m2.object.as_deref(), Some(format!("objects/{first}").as_str()));
        let usage = t.call(Req::get("/v1/usage").key(&key)).await;
        assert_eq!(usage.json["limits"]["images"]["used"], 2);
        assert_eq!(usage.json["limits"]["storage"]["used_bytes"], image.len() as i64, "storage counts the bytes once");

        // Deleting the first keeps the bytes the second shows.
        t.call(Req::new("DELETE", &format!("/v1/images/{first}")).key(&key)).await;
        assert!(!store.join(format!("manifests/{first}.json")).exists());
        assert!(store.join(format!("manifests/{second}.json")).exists());
        assert!(store.join(format!("objects/{first}")).exists(), "still shown by the other image");
        assert_eq!(t.call(Req::get(&format!("/v1/images/{second}")).key(&key)).await.status, StatusCode::OK);
        // A third copy after that shares them too.
        let third = t.call(upload(&image).key(&key)).await.json["id"].as_str().unwrap().to_string();
        assert_eq!(objects(), 1);
        // Deleting the last two removes the bytes; recovery holds a copy per image.
        t.call(Req::new("DELETE", "/v1/images/batch").key(&key).json(json!({"ids": [second, third]}))).await;
        assert_eq!(objects(), 0);
        for id in [&first, &second, &third] {
            assert_eq!(std::fs::read(t.recovery_store().join(format!("recovery/{id}/object"))).unwrap(), image);
        }

        // Another team never shares bytes with this one.
        let v = t.user("dup2@example.com", PW).await;
        let key2 = t.key_for(&v).await;
        t.call(upload(&image).key(&key)).await;
        t.call(upload(&image).key(&key2)).await;
        assert_eq!(objects(), 2);
    }
);

#[cfg(feature = "heic")]
on_both_databases!(a_heic_photo_is_stored_and_served_as_a_jpeg_without_its_gps, |t: TestApp| async move {
    let u = t.user("iphone@example.com", PW).await;
    let key = t.key_for(&u).await;
    let heic = imgcdn_media::heic::sample_heic(80, 60, Some(b"Exif\0\0GPS 48.8584N 2.2945E at home"));
    let r = t.call(Req::new("POST", "/v1/images").key(&key).multipart(&[("file", Some("IMG_0001.HEIC"), &heic)])).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json["format"], "jpg");
    assert_eq!((r.json["width"].as_i64(), r.json["height"].as_i64()), (Some(80), Some(60)));
    assert!(r.json["url"].as_str().unwrap().ends_with(".jpg"));
    assert_eq!(r.json["filename"], "IMG_0001.HEIC");
    let id = r.json["id"].as_str().unwrap();
    let stored = std::fs::read(t.public_store().join(format!("objects/{id}"))).unwrap();
    assert!(stored.starts_with(&[0xFF, 0xD8, 0xFF]), "stored as JPEG");
    assert!(!stored.windows(8).any(|w| w == b"48.8584N"), "no GPS in the stored bytes");
    let manifest =
        Manifest::from_json(&std::fs::read(t.public_store().join(format!("manifests/{id}.json"))).unwrap()).unwrap();
    assert_eq!(manifest.content_type, "image/jpeg");
    assert_eq!(manifest.bytes, stored.len() as u64);
    // A damaged HEIC is a clear validation error, and nothing is stored.
    let r = t
        .call(Req::new("POST", "/v1/images").key(&key).multipart(&[("file", Some("x.heic"), &heic[..heic.len() / 2])]))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.code(), "validation_error");
    assert!(r.json["error"]["message"].as_str().unwrap().contains("HEIC"), "{}", r.text);
    assert_eq!(t.count("SELECT COUNT(*) FROM images").await, 1);
});
