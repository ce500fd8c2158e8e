//! People's rights over their data, each test named after the promise it
//! proves (docs/privacy.md maps the policy's sentences to them), on SQLite
//! and PostgreSQL with the clock driven by the test.

mod common;

use axum::http::StatusCode;
use common::*;
use imgcdn_control_plane::dates::DAY;
use imgcdn_control_plane::privacy::{export, requests};
use imgcdn_control_plane::retention::sweep;
use imgcdn_shared::clock::Clock;
use imgcdn_shared::testing::png;
use serde_json::{json, Value};

const PW: &str = "tulip-Orbit-94";

fn upload(bytes: &[u8]) -> Req {
    Req::new("POST", "/v1/images").multipart(&[("file", Some("holiday-in-lisbon.png"), bytes)])
}

async fn image(t: &TestApp, req: Req) -> String {
    let r = t.call(req).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    r.json["id"].as_str().unwrap().to_string()
}

async fn team(t: &TestApp, owner: &User, name: &str) -> String {
    let r = t.call(Req::post("/v1/teams", json!({"name": name})).signed_in(owner)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    r.json["id"].as_str().unwrap().to_string()
}

/// `member` joins `team` with `role` through a real invitation.
async fn join(t: &TestApp, owner: &User, team: &str, member: &User, role: &str) {
    let r = t
        .call(
            Req::post(&format!("/v1/teams/{team}/invitations"), json!({"email": member.email, "role": role}))
                .signed_in(owner),
        )
        .await;
    assert!(r.status.is_success(), "{}", r.text);
    let mails = t.mail_to(&member.email).await;
    let token = mails.iter().rev().find_map(|m| m.token("/accept-invite")).expect("an invitation mail");
    let r = t.call(Req::post("/v1/invitations/accept", json!({"token": token})).signed_in(member)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

/// Sign up, verify and sign in `email` with the display name `name`.
async fn person(t: &TestApp, email: &str, name: &str) -> User {
    let r = t
        .call(Req::post(
            "/v1/auth/signup",
            json!({"email": email, "name": name, "password": PW, "age_confirmed": true}),
        ))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let token = t.mail_to(email).await.last().unwrap().token("/verify-email").unwrap();
    assert_eq!(t.call(Req::post("/v1/auth/verify", json!({"token": token}))).await.status, StatusCode::OK);
    t.login(email, PW).await
}

/// Everything stored that holds `needle`: database and stores.
async fn traces(t: &TestApp, needle: &str) -> Vec<String> {
    let mut found = t.find_anywhere(needle).await;
    found.extend(t.find_in_stores(needle));
    found
}

on_both_databases!(
    deleting_an_account_erases_everything_that_identifies_the_person_within_30_days,
    |t: TestApp| async move {
        let erin = person(&t, "erin@example.com", "Erin Erasure").await;
        let bo = person(&t, "bo@example.com", "Bo").await;
        let cy = person(&t, "cy@example.com", "Cy").await;
        let key = t.key_for(&erin).await;
        let mut images = vec![
            image(&t, upload(&png(16, 16, 1)).key(&key).header("x-forwarded-for", "192.0.2.50")).await,
            image(&t, upload(&png(16, 16, 2)).signed_in(&erin)).await,
        ];
        // A team only Erin owns (Bo is a member): dissolved, Bo told.
        let studio = team(&t, &erin, "Erin's Studio").await;
        join(&t, &erin, &studio, &bo, "member").await;
        let r =
            t.call(Req::post(&format!("/v1/teams/{studio}/keys"), json!({"name": "studio"})).signed_in(&erin)).await;
        let studio_key = r.json["key"].as_str().unwrap().to_string();
        images.push(image(&t, upload(&png(16, 16, 3)).key(&studio_key)).await);
        // A team with an admin (Cy): handed over to Cy, its images stay.
        let shared = team(&t, &erin, "Shared").await;
        join(&t, &erin, &shared, &cy, "admin").await;
        // Erin reports someone else's image, leaving a contact address.
        let cy_key = t.key_for(&cy).await;
        let cys = image(
            &t,
            Req::new("POST", "/v1/images").multipart(&[("file", Some("cy.png"), &png(16, 16, 4))]).key(&cy_key),
        )
        .await;
        let r = t
            .call(Req::post(
                "/v1/reports",
                json!({"image": cys, "reason": "spam", "contact_email": "erin@example.com"}),
            ))
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
        t.deliver().await;

        // Submit: every session ends, keys stop, sign-in is refused, a cancel link goes out.
        let r = t.call(Req::post("/v1/me/deletion", json!({"password": PW})).signed_in(&erin)).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
        assert_eq!(t.call(Req::get("/v1/me").signed_in(&erin)).await.status, StatusCode::UNAUTHORIZED);
        assert_eq!(t.call(Req::get("/v1/images").key(&key)).await.status, StatusCode::UNAUTHORIZED);
        assert_eq!(t.call(Req::get("/v1/images").key(&studio_key)).await.status, StatusCode::UNAUTHORIZED);
        let r = t.call(Req::post("/v1/auth/login", json!({"email": "erin@example.com", "password": PW}))).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
        assert!(t.mail_to("erin@example.com").await.iter().any(|m| m.subject == "Your account will be deleted"));
        assert_eq!(t.count(&format!("SELECT COUNT(*) FROM sessions WHERE user_id = '{}'", erin.id)).await, 0);

        // Within the grace period nothing is erased…
        t.clock.advance(7 * DAY - 1);
        assert_eq!(sweep::run_once(&t.state).await.unwrap().erased, 0);
        // …and right after it, the next sweep erases (7 days: well inside 30).
        t.clock.advance(1);
        let s = sweep::run_once(&t.state).await.unwrap();
        assert_eq!((s.erased, s.errors), (1, 0), "{s:?}");
        let mails = t.deliver().await;
        assert!(mails.iter().any(|m| m.to.contains("bo@example.com") && m.subject.contains("dissolved")), "Bo is told");
        assert!(mails.iter().any(|m| m.to.contains("cy@example.com") && m.subject.contains("You now own")));
        let r = t.call(Req::get(&format!("/v1/teams/{shared}")).signed_in(&cy)).await;
        assert_eq!(r.json["role"], "owner", "{}", r.text);
        // Off public serving at once: no manifest, and edges were told.
        for id in &images {
            assert!(!t.public_store().join(format!("manifests/{id}.json")).exists());
        }
        // The report stays, without the address.
        assert_eq!(t.count("SELECT COUNT(*) FROM reports WHERE contact_email IS NULL").await, 1);
        assert_eq!(t.count("SELECT COUNT(*) FROM erasures WHERE reason = 'request'").await, 1);

        // After the recovery window the bytes are reaped: nothing identifying is left anywhere.
        t.clock.advance(30 * DAY);
        let s = sweep::run_once(&t.state).await.unwrap();
        assert_eq!((s.reaped, s.errors), (3, 0), "{s:?}");
        let mut needles = vec![
            "erin@example.com".to_string(),
            "Erin Erasure".to_string(),
            erin.id.clone(),
            erin.team.clone(),
            studio.clone(),
            "holiday-in-lisbon".to_string(),
        ];
        needles.extend(images.iter().cloned());
        for needle in &needles {
            assert_eq!(traces(&t, needle).await, Vec::<String>::new(), "{needle} is still stored");
        }
        // What was not theirs stays: Cy's image and the team handed to Cy.
        assert_eq!(t.call(Req::get(&format!("/v1/images/{cys}")).key(&cy_key)).await.status, StatusCode::OK);
    }
);

on_both_databases!(
    a_deletion_can_be_cancelled_within_the_grace_period_and_the_account_is_as_it_was,
    |t: TestApp| async move {
        let u = person(&t, "second@example.com", "Second Thoughts").await;
        let key = t.key_for(&u).await;
        let id = image(&t, upload(&png(16, 16, 9)).key(&key)).await;
        // A fresh sign-in needs no password.
        let r = t.call(Req::post("/v1/me/deletion", json!({})).signed_in(&u)).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
        assert_eq!(t.call(Req::get("/v1/images").key(&key)).await.status, StatusCode::UNAUTHORIZED);
        t.clock.advance(6 * DAY);
        let token = t.newest_link("second@example.com", "Your account will be deleted", "/cancel-deletion").await;
        // The link's page only shows a button; the POST restores the account.
        let page = t.call(Req::get(&format!("/cancel-deletion?token={token}"))).await;
        assert_eq!(page.status, StatusCode::OK);
        let r = t.call(Req::post("/v1/me/deletion/cancel", json!({"token": token}))).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let again = t.call(Req::post("/v1/me/deletion/cancel", json!({"token": token}))).await;
        assert_eq!(again.status, StatusCode::UNPROCESSABLE_ENTITY, "single use");
        // As it was: the key works, the image is there, sign-in works.
        assert_eq!(t.call(Req::get(&format!("/v1/images/{id}")).key(&key)).await.status, StatusCode::OK);
        t.login("second@example.com", PW).await;
        t.clock.advance(2 * DAY);
        assert_eq!(sweep::run_once(&t.state).await.unwrap().erased, 0);
        assert_eq!(t.count("SELECT COUNT(*) FROM users WHERE email = 'second@example.com'").await, 1);
    }
);

on_both_databases!(a_stale_session_needs_the_password_to_delete_the_account, |t: TestApp| async move {
    let u = person(&t, "stale@example.com", "Stale").await;
    t.clock.advance(3600);
    let r = t.call(Req::post("/v1/me/deletion", json!({})).signed_in(&u)).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    let r = t.call(Req::post("/v1/me/deletion", json!({"password": "not-the-password"})).signed_in(&u)).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert_eq!(t.call(Req::get("/v1/me").signed_in(&u)).await.status, StatusCode::OK, "nothing happened");
});

/// The files of a tar archive: (name, bytes).
fn untar(mut data: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    while data.len() >= 512 && data[..512].iter().any(|&b| b != 0) {
        let name = String::from_utf8_lossy(&data[..100]).trim_end_matches('\0').to_string();
        let size = usize::from_str_radix(std::str::from_utf8(&data[124..135]).unwrap(), 8).unwrap();
        out.push((name, data[512..512 + size].to_vec()));
        data = &data[512 + size.div_ceil(512) * 512..];
    }
    out
}

on_both_databases!(the_export_holds_every_record_about_the_person_and_the_original_bytes, |t: TestApp| async move {
    let u = person(&t, "porter@example.com", "Porter").await;
    let key = t.key_for(&u).await;
    let original = png(24, 24, 5);
    let id = image(&t, upload(&original).key(&key)).await;
    let r = t.call(Req::post("/v1/me/export", json!({})).signed_in(&u)).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let export_id = r.json["id"].as_str().unwrap().to_string();
    assert_eq!(r.json["state"], "queued");
    assert_eq!(export::run_due(&t.state).await.unwrap(), 1);
    let mail = t.mail_to("porter@example.com").await;
    let ready = mail.iter().find(|m| m.subject == "Your data export is ready").expect("a mail when ready");
    assert!(ready.body.contains(&format!("/v1/me/exports/{export_id}/download")), "{}", ready.body);
    let status = t.call(Req::get(&format!("/v1/me/exports/{export_id}")).signed_in(&u)).await;
    assert_eq!(status.json["state"], "ready", "{}", status.text);
    let r = t.call(Req::get(&format!("/v1/me/exports/{export_id}/download")).signed_in(&u)).await;
    assert_eq!(r.status, StatusCode::OK);
    let files = untar(&r.bytes);
    let file = |name: &str| {
        files.iter().find(|(n, _)| n == name).map(|(_, b)| b.clone()).unwrap_or_else(|| panic!("{name} missing"))
    };
    let account: Value = serde_json::from_slice(&file("account.json")).unwrap();
    assert_eq!(account["email"], "porter@example.com");
    let sessions: Value = serde_json::from_slice(&file("sessions.json")).unwrap();
    assert_eq!(sessions[0]["ip"], "203.0.113.9");
    assert_eq!(sessions[0]["user_agent"], "test-agent/1.0");
    let consents: Value = serde_json::from_slice(&file("consents.json")).unwrap();
    assert_eq!(consents[0]["source"], "signup");
    let keys: Value = serde_json::from_slice(&file("api_keys.json")).unwrap();
    assert_eq!(keys[0]["name"], "test");
    assert!(!String::from_utf8_lossy(&r.bytes).contains(&key), "the key's secret is nowhere in the archive");
    let teams: Value = serde_json::from_slice(&file("teams.json")).unwrap();
    assert_eq!(teams[0]["role"], "owner");
    assert_eq!(file(&format!("images/{id}.png")), original, "the original bytes");
    let meta: Value = serde_json::from_slice(&file(&format!("images/{id}.json"))).unwrap();
    assert_eq!(meta["filename"], "holiday-in-lisbon.png");
    for name in ["README.txt", "moderation.json", "dmca.json", "request_log.json"] {
        file(name);
    }
    // Only its owner downloads it, and only for export_ttl_days.
    let other = person(&t, "other@example.com", "Other").await;
    let r = t.call(Req::get(&format!("/v1/me/exports/{export_id}/download")).signed_in(&other)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    t.clock.advance(7 * DAY);
    let s = sweep::run_once(&t.state).await.unwrap();
    assert_eq!(s.exports, 1, "{s:?}");
    let r = t.call(Req::get(&format!("/v1/me/exports/{export_id}/download")).signed_in(&u)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(t.find_in_stores(&export_id), Vec::<String>::new(), "the archive is gone");
});

on_both_databases!(
    an_email_change_takes_effect_from_the_new_address_and_the_old_one_is_told,
    |t: TestApp| async move {
        let u = person(&t, "old@example.com", "Mover").await;
        let r =
            t.call(Req::post("/v1/me/email", json!({"email": "new@example.com", "password": PW})).signed_in(&u)).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
        assert!(t
            .mail_to("old@example.com")
            .await
            .iter()
            .any(|m| m.subject.contains("email address is being changed")));
        // Until the new address confirms, nothing changes.
        t.login("old@example.com", PW).await;
        let token = t.newest_link("new@example.com", "Confirm your new email address", "/confirm-email").await;
        let r = t.call(Req::post("/v1/me/email/confirm", json!({"token": token}))).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.json["email"], "new@example.com");
        t.login("new@example.com", PW).await;
        let r = t.call(Req::post("/v1/auth/login", json!({"email": "old@example.com", "password": PW}))).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        // And the name.
        let r = t
            .call(
                Req::new("PATCH", "/v1/me")
                    .json(json!({"name": "Mover Renamed"}))
                    .signed_in(&t.login("new@example.com", PW).await),
            )
            .await;
        assert_eq!(r.json["name"], "Mover Renamed");
        // Someone else's address: no change, and its owner hears about it.
        person(&t, "taken@example.com", "Taken").await;
        let me = t.login("new@example.com", PW).await;
        let r = t
            .call(Req::post("/v1/me/email", json!({"email": "taken@example.com", "password": PW})).signed_in(&me))
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED);
        assert!(t.mail_to("taken@example.com").await.iter().any(|m| m.subject.contains("tried to sign up")));
    }
);

on_both_databases!(
    restriction_objection_and_withdrawn_consent_stop_marketing_mail_and_are_recorded,
    |t: TestApp| async move {
        let u = person(&t, "choosy@example.com", "Choosy").await;
        let r = t.call(Req::new("PATCH", "/v1/me").json(json!({"marketing_emails": true})).signed_in(&u)).await;
        assert_eq!(r.json["marketing_emails"], true);
        let now = t.clock.unix_now();
        let queued = |t: &TestApp| {
            let db = t.state.db.clone();
            async move { imgcdn_control_plane::email::queue_marketing(&db, "News", "Hello", now).await.unwrap() }
        };
        assert_eq!(queued(&t).await, 1);
        for (field, source) in [("restrict_processing", "restriction"), ("object_to_processing", "objection")] {
            let r = t.call(Req::new("PATCH", "/v1/me").json(json!({ field: true })).signed_in(&u)).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
            assert_eq!(queued(&t).await, 0, "{field} stops marketing mail");
            assert_eq!(
                t.count(&format!("SELECT COUNT(*) FROM consents WHERE source = '{source}' AND marketing = 0")).await,
                1
            );
            let r = t.call(Req::new("PATCH", "/v1/me").json(json!({ field: false })).signed_in(&u)).await;
            assert_eq!(r.status, StatusCode::OK);
        }
        // Setting a choice shows its time on the account; lifting it clears it.
        let r = t.call(Req::new("PATCH", "/v1/me").json(json!({"restrict_processing": true})).signed_in(&u)).await;
        assert!(r.json["processing_restricted_at"].is_string(), "{}", r.text);
        let r = t.call(Req::new("PATCH", "/v1/me").json(json!({"restrict_processing": false})).signed_in(&u)).await;
        assert!(r.json["processing_restricted_at"].is_null(), "{}", r.text);
        // Withdrawing consent is appended, never overwriting.
        let before = t.count("SELECT COUNT(*) FROM consents").await;
        t.call(Req::new("PATCH", "/v1/me").json(json!({"marketing_emails": true})).signed_in(&u)).await;
        t.call(Req::new("PATCH", "/v1/me").json(json!({"marketing_emails": false})).signed_in(&u)).await;
        assert_eq!(t.count("SELECT COUNT(*) FROM consents").await, before + 2);
        assert_eq!(queued(&t).await, 0);
    }
);

on_both_databases!(an_operator_erases_an_account_reported_as_a_child_s_at_once, |t: TestApp| async move {
    let kid = person(&t, "kid@example.com", "Kid").await;
    let key = t.key_for(&kid).await;
    let id = image(&t, upload(&png(16, 16, 7)).key(&key)).await;
    let op = t.operator("trust-and-safety").await;
    let r = t
        .call(
            Req::post(
                "/v1/admin/accounts/erase",
                json!({"email": "kid@example.com", "reason": "child", "note": "report 42"}),
            )
            .key(&op),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["images"], 1);
    assert_eq!(t.count("SELECT COUNT(*) FROM users WHERE email = 'kid@example.com'").await, 0, "at once");
    assert!(!t.public_store().join(format!("manifests/{id}.json")).exists());
    assert_eq!(
        t.count(
            "SELECT COUNT(*) FROM erasures WHERE reason = 'child' AND note = 'report 42' AND operator_id IS NOT NULL"
        )
        .await,
        1
    );
    assert_eq!(t.find_anywhere("kid@example.com").await, Vec::<String>::new());
    let r = t
        .call(Req::post("/v1/admin/accounts/erase", json!({"email": "x@example.com", "reason": "because"})).key(&op))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
});

on_both_databases!(subprocessors_are_listed_from_config_and_the_privacy_page_links_them, |t: TestApp| async move {
    let t = t
        .same_backend_with(|c| {
            c.privacy.subprocessors.push(imgcdn_control_plane::privacy::config::Subprocessor {
                name: "Example Mail <Inc>".into(),
                purpose: "transactional email".into(),
                location: "EU".into(),
            })
        })
        .await;
    let html = t.call(Req::get("/subprocessors")).await;
    assert_eq!(html.status, StatusCode::OK);
    assert!(
        html.text.contains("Example Mail &lt;Inc&gt;") && html.text.contains("transactional email"),
        "{}",
        html.text
    );
    let r = t.call(Req::get("/subprocessors").header("accept", "application/json")).await;
    assert_eq!(r.json["data"][0]["location"], "EU");
    let privacy = t.call(Req::get("/privacy")).await;
    assert!(privacy.text.contains("href=\"/subprocessors\""), "{}", privacy.text);
});

on_both_databases!(rights_requests_by_email_show_their_legal_deadline_and_overdue_ones, |t: TestApp| async move {
    let now = t.clock.unix_now();
    let eu = requests::add(&t.state.db, "eu@example.com", "access", "gdpr", None, now).await.unwrap();
    let ca = requests::add(&t.state.db, "ca@example.com", "erasure", "ccpa", Some("by letter"), now).await.unwrap();
    assert!(requests::add(&t.state.db, "x@example.com", "whim", "gdpr", None, now).await.is_err());
    let open = requests::list(&t.state.db, now, false).await.unwrap();
    assert_eq!(open.len(), 2);
    assert_eq!(open[0]["id"], eu.as_str(), "the earliest deadline first");
    assert_eq!(open[0]["days_left"], 30);
    assert_eq!(open[1]["days_left"], 45);
    let later = now + 31 * DAY;
    let overdue = requests::list(&t.state.db, later, true).await.unwrap();
    assert_eq!(overdue.len(), 1);
    assert_eq!(overdue[0]["id"], eu.as_str());
    requests::close(&t.state.db, &eu, false, Some("export sent"), later).await.unwrap();
    assert!(requests::list(&t.state.db, later, true).await.unwrap().is_empty());
    assert!(requests::close(&t.state.db, &eu, false, None, later).await.is_err(), "closed once");
    let _ = ca;
});

/// docs/privacy.md names the test behind each promise as `file::test`:
/// every one of them exists.
#[test]
fn every_test_docs_privacy_names_exists() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("../docs/privacy.md")).unwrap();
    let mut checked = 0;
    for quoted in doc.split('`').skip(1).step_by(2) {
        let Some((file, name)) = quoted.split_once("::") else { continue };
        // Code paths (`retention::policy::decide`) are not test names.
        if !file.chars().all(|c| c.is_ascii_lowercase() || c == '_') || name.contains("::") {
            continue;
        }
        let source = ["tests", "../tests"]
            .iter()
            .map(|dir| root.join(dir).join(format!("{file}.rs")))
            .find_map(|p| std::fs::read_to_string(p).ok());
        let Some(source) = source else { continue };
        assert!(source.contains(name), "docs/privacy.md names {file}::{name}, which does not exist");
        checked += 1;
    }
    assert!(checked >= 25, "only {checked} test names found in docs/privacy.md");
}
