//! What an attack and fault review of the running control plane broke,
//! one scenario each, on SQLite and PostgreSQL: every test here failed
//! before its fix.

mod common;

use std::io::Cursor;
use std::time::Duration;

use axum::http::StatusCode;
use common::*;
use imgcdn_shared::testing::png;
use serde_json::json;

const PW: &str = "tulip-Orbit-94";

fn upload(bytes: &[u8]) -> Req {
    Req::new("POST", "/v1/images").multipart(&[("file", Some("a.png"), bytes)])
}

/// A PNG of `w`×`h` zero pixels: 8-bit RGBA or 16-bit RGBA (tiny on the
/// wire, large once decoded).
fn blank_png(w: u32, h: u32, sixteen_bit: bool) -> Vec<u8> {
    let img = if sixteen_bit {
        image::DynamicImage::ImageRgba16(image::ImageBuffer::new(w, h))
    } else {
        image::DynamicImage::ImageRgba8(image::ImageBuffer::new(w, h))
    };
    let mut out = Vec::new();
    img.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png).unwrap();
    out
}

on_both_databases!(a_bogus_reset_token_is_refused_without_hashing_a_password, |t: TestApp| async move {
    let before = t.state.passwords.computed();
    for i in 0..20 {
        let r = t
            .call(
                Req::post("/v1/auth/password-reset/confirm", json!({"token": format!("bogus-{i}"), "password": PW}))
                    .header("x-forwarded-for", "198.51.100.7"),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
        assert!(r.json["error"]["details"]["token"][0].is_string(), "{}", r.text);
    }
    assert_eq!(t.state.passwords.computed(), before, "no argon2 work for a token that does not exist");
    // And the route is rate-limited per client.
    let mut limited = 0;
    for i in 0..20 {
        let r = t
            .call(
                Req::post("/v1/auth/password-reset/confirm", json!({"token": format!("more-{i}"), "password": PW}))
                    .header("x-forwarded-for", "198.51.100.7"),
            )
            .await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            limited += 1;
            assert!(r.headers.contains_key("retry-after"));
        }
    }
    assert_eq!(limited, 10, "30 per 10 minutes per client");
});

#[tokio::test]
async fn password_hashing_past_its_bound_is_refused_at_once_with_retry_after() {
    let t = TestApp::sqlite_with(|c| {
        // Slow enough that eight requests overlap; one slot, no waiting line.
        c.passwords.argon2_memory_kib = 8 * 1024;
        c.passwords.argon2_iterations = 4;
        c.passwords.max_concurrent_hashes = 1;
        c.passwords.max_waiting_hashes = 0;
    })
    .await;
    let calls = (0..8).map(|i| {
        t.call(
            Req::post("/v1/auth/login", json!({"email": format!("nobody{i}@example.com"), "password": PW}))
                .header("x-forwarded-for", &format!("198.51.100.{i}")),
        )
    });
    let answers = futures::future::join_all(calls).await;
    let busy: Vec<_> = answers.iter().filter(|r| r.status == StatusCode::SERVICE_UNAVAILABLE).collect();
    let done = answers.iter().filter(|r| r.status == StatusCode::UNAUTHORIZED).count();
    assert!(!busy.is_empty() && done >= 1, "{:?}", answers.iter().map(|r| r.status).collect::<Vec<_>>());
    for r in busy {
        assert_eq!(r.code(), "overloaded");
        assert!(r.headers.contains_key("retry-after"));
    }
}

on_both_databases!(
    reset_requests_for_many_addresses_from_one_client_are_cut_off_before_they_are_tracked,
    |t: TestApp| async move {
        let mut limited = 0;
        for i in 0..500 {
            let r = t
                .call(
                    Req::post("/v1/auth/password-reset", json!({"email": format!("victim{i}@example.com")}))
                        .header("x-forwarded-for", "198.51.100.66"),
                )
                .await;
            if r.status == StatusCode::TOO_MANY_REQUESTS {
                limited += 1;
            }
        }
        assert_eq!(limited, 480, "20 per hour per client");
        assert!(t.state.limiter.tracked() < 50, "{} subjects tracked", t.state.limiter.tracked());
    }
);

on_both_databases!(others_asking_for_my_reset_cannot_lock_me_out, |t: TestApp| async move {
    t.user("owner@example.com", PW).await;
    for i in 0..10 {
        let r = t
            .call(
                Req::post("/v1/auth/password-reset", json!({"email": "owner@example.com"}))
                    .header("x-forwarded-for", &format!("198.51.100.{i}")),
            )
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED);
    }
    // From the owner's own address: still accepted (not 429).
    let r = t
        .call(
            Req::post("/v1/auth/password-reset", json!({"email": "owner@example.com"}))
                .header("x-forwarded-for", "203.0.113.200"),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    // The mailbox is not flooded: at most 10 reset mails an hour.
    let resets =
        t.mail_to("owner@example.com").await.into_iter().filter(|m| m.subject == "Reset your password").count();
    assert_eq!(resets, 10);
});

on_both_databases!(using_a_reset_link_voids_the_older_ones, |t: TestApp| async move {
    t.user("two@example.com", PW).await;
    for ip in ["198.51.100.1", "198.51.100.2"] {
        t.call(Req::post("/v1/auth/password-reset", json!({"email": "two@example.com"})).header("x-forwarded-for", ip))
            .await;
    }
    let mails: Vec<_> =
        t.mail_to("two@example.com").await.into_iter().filter(|m| m.subject == "Reset your password").collect();
    let (old, new) = (mails[0].token("/reset-password").unwrap(), mails[1].token("/reset-password").unwrap());
    let r =
        t.call(Req::post("/v1/auth/password-reset/confirm", json!({"token": new, "password": "fresh-Start-55"}))).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    let r =
        t.call(Req::post("/v1/auth/password-reset/confirm", json!({"token": old, "password": "evil-Again-66"}))).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    t.login("two@example.com", "fresh-Start-55").await;
});

on_both_databases!(ten_wrong_passwords_make_an_account_wait_whoever_tries, |t: TestApp| async move {
    t.user("brute@example.com", PW).await;
    for i in 0..10 {
        let r = t
            .call(
                Req::post(
                    "/v1/auth/login",
                    json!({"email": "brute@example.com", "password": format!("guess-{i}-xyz")}),
                )
                .header("x-forwarded-for", &format!("198.51.100.{i}")),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let r = t
        .call(
            Req::post("/v1/auth/login", json!({"email": "brute@example.com", "password": PW}))
                .header("x-forwarded-for", "203.0.113.9"),
        )
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    t.clock.advance(901);
    t.login("brute@example.com", PW).await;
});

on_both_databases!(sign_ups_for_an_existing_address_send_one_notice_an_hour, |t: TestApp| async move {
    t.user("taken@example.com", PW).await;
    for i in 0..25 {
        let r = t
            .call(
                Req::post(
                    "/v1/auth/signup",
                    json!({"email": "taken@example.com", "name": "X", "password": PW, "age_confirmed": true}),
                )
                .header("x-forwarded-for", &format!("198.51.100.{i}")),
            )
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED);
    }
    let notices = t
        .mail_to("taken@example.com")
        .await
        .into_iter()
        .filter(|m| m.subject == "Someone tried to sign up with your email")
        .count();
    assert_eq!(notices, 1);
});

on_both_databases!(
    a_key_asked_for_someone_elses_address_dies_when_the_owner_takes_the_account,
    |t: TestApp| async move {
        // The attacker asks for a key for the victim's address.
        let r = t.call(Req::post("/v1/keys", json!({"email": "victim@example.com"}))).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        let attacker_key = r.json["key"].as_str().unwrap().to_string();
        assert_eq!(t.call(Req::get("/v1/images").key(&attacker_key)).await.status, StatusCode::OK);
        // The victim signs up (told the account exists), resets the password
        // (which proves the address) and uploads a private image.
        t.call(Req::post(
            "/v1/auth/signup",
            json!({"email": "victim@example.com", "name": "V", "password": PW, "age_confirmed": true}),
        ))
        .await;
        t.call(Req::post("/v1/auth/password-reset", json!({"email": "victim@example.com"}))).await;
        let token = t.newest_link("victim@example.com", "Reset your password", "/reset-password").await;
        let r = t.call(Req::post("/v1/auth/password-reset/confirm", json!({"token": token, "password": PW}))).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
        let victim = t.login("victim@example.com", PW).await;
        let r = t
            .call(
                Req::new("POST", "/v1/images")
                    .signed_in(&victim)
                    .multipart(&[("file", Some("me.png"), &png(8, 8, 1)), ("public", None, b"false")]),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        // The attacker's key is dead.
        let r = t.call(Req::get("/v1/images").key(&attacker_key)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    }
);

on_both_databases!(whoever_asked_for_a_legacy_key_keeps_it_after_verifying_the_address, |t: TestApp| async move {
    let r = t.call(Req::post("/v1/keys", json!({"email": "me@example.com"}))).await;
    let key = r.json["key"].as_str().unwrap().to_string();
    let token = t.newest_link("me@example.com", "Confirm your email address", "/verify-email").await;
    assert_eq!(t.call(Req::post("/v1/auth/verify", json!({"token": token}))).await.status, StatusCode::OK);
    assert_eq!(t.call(Req::get("/v1/images").key(&key)).await.status, StatusCode::OK);
});

/// A shared team owned by `owner` with `member` in it as `role`.
async fn team_with(t: &TestApp, owner: &User, member: &User, role: &str) -> String {
    let team = t.call(Req::post("/v1/teams", json!({"name": "Shared"})).signed_in(owner)).await.json["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = t
        .call(
            Req::post(&format!("/v1/teams/{team}/invitations"), json!({"email": member.email, "role": role}))
                .signed_in(owner),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let token = t
        .newest_link(
            &member.email,
            &format!("{} invited you to Shared", owner.email.split('@').next().unwrap()),
            "/accept-invite",
        )
        .await;
    let r = t.call(Req::post("/v1/invitations/accept", json!({"token": token})).signed_in(member)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    team
}

on_both_databases!(a_removed_or_demoted_admin_loses_the_team_keys_they_made, |t: TestApp| async move {
    let owner = t.user("boss@example.com", PW).await;
    let admin = t.user("admin@example.com", PW).await;
    let other = t.user("admin2@example.com", PW).await;
    let team = team_with(&t, &owner, &admin, "admin").await;
    let r = t.call(Req::post(&format!("/v1/teams/{team}/keys"), json!({"name": "ci"})).signed_in(&admin)).await;
    let key = r.json["key"].as_str().unwrap().to_string();
    assert_eq!(t.call(Req::get("/v1/images").key(&key)).await.status, StatusCode::OK);
    let r = t.call(Req::new("DELETE", &format!("/v1/teams/{team}/members/{}", admin.id)).signed_in(&owner)).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(t.call(Req::get("/v1/images").key(&key)).await.status, StatusCode::UNAUTHORIZED);
    // Demoted to member: the same.
    let team2 = team_with(&t, &owner, &other, "admin").await;
    let r = t.call(Req::post(&format!("/v1/teams/{team2}/keys"), json!({"name": "ci"})).signed_in(&other)).await;
    let key2 = r.json["key"].as_str().unwrap().to_string();
    let r = t
        .call(
            Req::new("PATCH", &format!("/v1/teams/{team2}/members/{}", other.id))
                .json(json!({"role": "member"}))
                .signed_in(&owner),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(t.call(Req::get("/v1/images").key(&key2)).await.status, StatusCode::UNAUTHORIZED);
});

on_both_databases!(invitations_are_listed_revoked_and_die_with_the_inviters_role, |t: TestApp| async move {
    let owner = t.user("own@example.com", PW).await;
    let admin = t.user("adm@example.com", PW).await;
    let newbie = t.user("new@example.com", PW).await;
    let later = t.user("later@example.com", PW).await;
    let team = team_with(&t, &owner, &admin, "admin").await;
    // The admin invites two people.
    for email in ["new@example.com", "later@example.com"] {
        let r = t
            .call(
                Req::post(&format!("/v1/teams/{team}/invitations"), json!({"email": email, "role": "admin"}))
                    .signed_in(&admin),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    let list = t.call(Req::get(&format!("/v1/teams/{team}/invitations")).signed_in(&owner)).await;
    let pending = list.json["data"].as_array().unwrap();
    assert_eq!(pending.len(), 2, "{}", list.text);
    let later_inv =
        pending.iter().find(|i| i["email"] == "later@example.com").unwrap()["id"].as_str().unwrap().to_string();
    // The owner revokes one: its link no longer works.
    let r = t.call(Req::new("DELETE", &format!("/v1/teams/{team}/invitations/{later_inv}")).signed_in(&owner)).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let token = t.newest_link("later@example.com", "adm invited you to Shared", "/accept-invite").await;
    let r = t.call(Req::post("/v1/invitations/accept", json!({"token": token})).signed_in(&later)).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    // The admin is removed: their other invitation makes nobody admin.
    t.call(Req::new("DELETE", &format!("/v1/teams/{team}/members/{}", admin.id)).signed_in(&owner)).await;
    let token = t.newest_link("new@example.com", "adm invited you to Shared", "/accept-invite").await;
    let r = t.call(Req::post("/v1/invitations/accept", json!({"token": token})).signed_in(&newbie)).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert_eq!(t.call(Req::get(&format!("/v1/teams/{team}")).signed_in(&newbie)).await.status, StatusCode::NOT_FOUND);
    // Members cannot list or revoke.
    let r = t.call(Req::get(&format!("/v1/teams/{team}/invitations")).signed_in(&newbie)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
});

on_both_databases!(two_owners_leaving_at_once_leave_one_owner, |t: TestApp| async move {
    for round in 0..6 {
        let a = t.user(&format!("a{round}@example.com"), PW).await;
        let b = t.user(&format!("b{round}@example.com"), PW).await;
        let team = team_with(&t, &a, &b, "owner").await;
        let (ra, rb) = tokio::join!(
            t.call(Req::new("POST", &format!("/v1/teams/{team}/leave")).signed_in(&a)),
            t.call(Req::new("POST", &format!("/v1/teams/{team}/leave")).signed_in(&b)),
        );
        let left = [ra.status, rb.status].iter().filter(|s| **s == StatusCode::NO_CONTENT).count();
        assert_eq!(left, 1, "round {round}: {} / {}", ra.text, rb.text);
        let owners =
            t.count(&format!("SELECT COUNT(*) FROM memberships WHERE team_id = '{team}' AND role = 'owner'")).await;
        assert_eq!(owners, 1, "round {round}");
    }
});

on_both_databases!(a_burst_of_concurrent_writes_never_answers_500, |t: TestApp| async move {
    for i in 0..30 {
        t.call(
            Req::post("/v1/keys", json!({"email": format!("burst{i}@example.com")}))
                .header("x-forwarded-for", &format!("10.9.{i}.1")),
        )
        .await;
    }
    let calls = (0..150).map(|i| {
        t.call(
            Req::post("/v1/auth/password-reset", json!({"email": format!("burst{}@example.com", i % 30)}))
                .header("x-forwarded-for", &format!("10.0.{}.{}", i / 250, i % 250)),
        )
    });
    let answers = futures::future::join_all(calls).await;
    for r in &answers {
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    }
});

on_both_databases!(the_client_address_is_the_one_our_proxy_added_not_the_forged_one, |t: TestApp| async move {
    for i in 0..20 {
        let r = t.call(upload(&png(4, 4, i)).header("x-forwarded-for", &format!("6.6.6.{i}, 203.0.113.77"))).await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    let r = t.call(upload(&png(4, 4, 99)).header("x-forwarded-for", "7.7.7.7, 203.0.113.77")).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "a forged first entry does not buy a new limit");
    // A session records the real address too.
    t.user("xff@example.com", PW).await;
    let r = t
        .call(
            Req::post("/v1/auth/login", json!({"email": "xff@example.com", "password": PW}))
                .header("x-forwarded-for", "6.6.6.6, 203.0.113.78"),
        )
        .await;
    let cookie = r.session_cookie().unwrap();
    let list = t.call(Req::get("/v1/sessions").header("cookie", &format!("imgcdn_session={cookie}"))).await;
    assert!(list.json["data"].as_array().unwrap().iter().any(|s| s["ip_address"] == "203.0.113.78"), "{}", list.text);
});

on_both_databases!(decoding_is_charged_by_bit_depth_and_refused_past_the_budget, |t: TestApp| async move {
    // A 2048×2048 image: 16 MiB decoded at 8-bit RGBA, 32 MiB at 16-bit.
    let t = if t.is_postgres() {
        TestApp::postgres_with(|c| c.uploads.decode_budget_bytes = 64 * 1024 * 1024).await.unwrap()
    } else {
        TestApp::sqlite_with(|c| c.uploads.decode_budget_bytes = 64 * 1024 * 1024).await
    };
    let u = t.user("bomb@example.com", PW).await;
    let key = t.key_for(&u).await;
    let eight = t.call(upload(&blank_png(2048, 2048, false)).key(&key)).await;
    assert_eq!(eight.status, StatusCode::CREATED, "{}", eight.text);
    let sixteen = t.call(upload(&blank_png(2048, 2048, true)).key(&key)).await;
    assert_eq!(sixteen.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", sixteen.text);
    assert!(sixteen.json["error"]["message"].as_str().unwrap().contains("memory"), "{}", sixteen.text);
    assert_eq!(t.state.decode_budget.in_use(), 0);
});

on_both_databases!(a_full_decode_budget_answers_503_fast_instead_of_decoding, |t: TestApp| async move {
    let t = if t.is_postgres() {
        TestApp::postgres_with(|c| c.uploads.budget_wait_ms = 100).await.unwrap()
    } else {
        TestApp::sqlite_with(|c| c.uploads.budget_wait_ms = 100).await
    };
    let u = t.user("busy@example.com", PW).await;
    let key = t.key_for(&u).await;
    let held = t.state.decode_budget.reserve(t.state.decode_budget.total() - 8 * 1024 * 1024).await.unwrap();
    let r = t.call(upload(&blank_png(2048, 2048, false)).key(&key)).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    assert_eq!(r.code(), "overloaded");
    assert!(r.headers.contains_key("retry-after"));
    drop(held);
    assert_eq!(t.call(upload(&blank_png(2048, 2048, false)).key(&key)).await.status, StatusCode::CREATED);
    // The body budget: held whole, an upload cannot buffer its file.
    let held = t.state.body_budget.reserve(t.state.body_budget.total()).await.unwrap();
    let r = t.call(upload(&png(8, 8, 3)).key(&key)).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    drop(held);
    assert_eq!(t.state.body_budget.in_use(), 0);
});

on_both_databases!(sent_reset_links_and_ended_sessions_leave_nothing_in_the_database_files, |t: TestApp| async move {
    let u = t.user("trace@example.com", PW).await;
    t.call(Req::post("/v1/auth/password-reset", json!({"email": "trace@example.com"}))).await;
    let token = t.newest_link("trace@example.com", "Reset your password", "/reset-password").await;
    // A session from a recognisable address, then logged out.
    let r = t
        .call(
            Req::post("/v1/auth/login", json!({"email": "trace@example.com", "password": PW}))
                .header("x-forwarded-for", "192.0.2.171")
                .header("user-agent", "TraceAgent/9.9"),
        )
        .await;
    let cookie = r.session_cookie().unwrap();
    let csrf = r.json["csrf_token"].as_str().unwrap().to_string();
    let r = t
        .call(
            Req::new("POST", "/v1/auth/logout")
                .header("cookie", &format!("imgcdn_session={cookie}"))
                .header("x-csrf-token", &csrf),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    imgcdn_control_plane::retention::sweep::run_once(&t.state).await.unwrap();
    assert_eq!(t.find_anywhere(&token).await, Vec::<String>::new(), "the raw reset token");
    assert_eq!(t.find_anywhere("192.0.2.171").await, Vec::<String>::new(), "the ended session's address");
    assert_eq!(t.find_anywhere("TraceAgent/9.9").await, Vec::<String>::new());
    drop(u);
});

on_both_databases!(an_abandoned_or_stale_idempotency_claim_frees_its_key, |t: TestApp| async move {
    use imgcdn_control_plane::images::idempotency::{self, Claim, STALE_CLAIM_SECS};
    // A claim left by a process that died: free once stale.
    assert!(matches!(idempotency::claim(&t.state, "team_x", "k1", "h").await.unwrap(), Claim::Run));
    assert!(idempotency::claim(&t.state, "team_x", "k1", "h").await.is_err(), "in progress");
    t.clock.advance(STALE_CLAIM_SECS + 1);
    assert!(matches!(idempotency::claim(&t.state, "team_x", "k1", "h").await.unwrap(), Claim::Run));
    // A request dropped mid-way (the client went away): its guard frees the key.
    assert!(matches!(idempotency::claim(&t.state, "team_x", "k2", "h").await.unwrap(), Claim::Run));
    drop(idempotency::ClaimGuard::new(&t.state, "team_x", "k2"));
    let mut freed = false;
    for _ in 0..100 {
        if t.count("SELECT COUNT(*) FROM idempotency_keys WHERE idem_key = 'k2'").await == 0 {
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(freed, "the dropped claim was released");
});

on_both_databases!(a_failed_upload_leaves_no_bytes_behind, |t: TestApp| async move {
    let u = t.user("fail@example.com", PW).await;
    let key = t.key_for(&u).await;
    // Manifests cannot be written: every publish fails after the bytes.
    let manifests = t.public_store().join("manifests");
    let _ = std::fs::remove_dir_all(&manifests);
    std::fs::write(&manifests, b"not a directory").unwrap();
    let r = t.call(upload(&png(8, 8, 4)).key(&key)).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.text);
    assert_eq!(r.code(), "upload_failed");
    let objects = t.public_store().join("objects");
    let left = std::fs::read_dir(&objects).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "orphan bytes in {}", objects.display());
});

on_both_databases!(the_sweep_survives_a_store_error_on_one_image_and_finishes_the_rest, |t: TestApp| async move {
    use imgcdn_control_plane::retention::sweep;
    let u = t.user("sw@example.com", PW).await;
    let key = t.key_for(&u).await;
    // Three images; the first two show the same stored bytes.
    let mut ids = Vec::new();
    for bytes in [png(8, 8, 7), png(8, 8, 7), png(9, 9, 8)] {
        let r = t
            .call(
                Req::new("POST", "/v1/images")
                    .key(&key)
                    .multipart(&[("file", Some("a.png"), &bytes), ("ttl", None, b"600")]),
            )
            .await;
        ids.push(r.json["id"].as_str().unwrap().to_string());
    }
    // The recovery store cannot take the first one.
    let blocked = t.recovery_store().join(format!("recovery/{}", ids[0]));
    std::fs::create_dir_all(blocked.parent().unwrap()).unwrap();
    std::fs::write(&blocked, b"in the way").unwrap();
    t.clock.advance(601);
    let s = sweep::run_once(&t.state).await.unwrap();
    assert_eq!((s.expired, s.errors), (2, 1), "{s:?}");
    for id in &ids[1..] {
        assert!(t.recovery_store().join(format!("recovery/{id}/record.json")).exists());
    }
    // The second moved, but the bytes it shares stay for the first's move.
    assert!(t.public_store().join(format!("objects/{}", ids[0])).exists());
    // Once the store is fixed, the next pass finishes the first, bytes and all.
    std::fs::remove_file(&blocked).unwrap();
    let s = sweep::run_once(&t.state).await.unwrap();
    assert_eq!((s.redone, s.errors), (1, 0), "{s:?}");
    let saved = std::fs::read(t.recovery_store().join(format!("recovery/{}/object", ids[0]))).unwrap();
    assert_eq!(saved, png(8, 8, 7));
    assert!(!t.public_store().join(format!("manifests/{}.json", ids[0])).exists());
    assert!(!t.public_store().join(format!("objects/{}", ids[0])).exists(), "no live image shows them any more");
});

mod over_tcp {
    //! Against a real listener: connection bounds and body timeouts.
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    async fn start(
        adjust: impl FnOnce(&mut imgcdn_control_plane::Config),
    ) -> (std::net::SocketAddr, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = test_config(dir.path());
        cfg.database_url = format!("sqlite://{}", dir.path().join("cp.db").display());
        cfg.listen = "127.0.0.1:0".into();
        cfg.edge_sync.max_wait_ms = 500;
        adjust(&mut cfg);
        let cp = imgcdn_control_plane::ControlPlane::bind(cfg).await.unwrap();
        let addr = cp.local_addr();
        tokio::spawn(cp.run(std::future::pending()));
        (addr, dir)
    }

    /// Everything the server sends until it closes, or until `within`.
    async fn read_until_closed(s: &mut TcpStream, within: Duration) -> Option<String> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return Some(String::from_utf8_lossy(&out).to_string()),
                Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
                Err(_) => return None,
            }
        }
    }

    #[tokio::test]
    async fn idle_and_trickling_connections_are_closed_and_past_the_cap_refused() {
        let (addr, _dir) = start(|c| {
            c.header_read_timeout_secs = 1;
            c.max_connections = 20;
        })
        .await;
        let mut idle = Vec::new();
        for _ in 0..19 {
            idle.push(TcpStream::connect(addr).await.unwrap());
        }
        let mut trickle = TcpStream::connect(addr).await.unwrap();
        trickle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        // The 21st connection is refused at once, politely.
        let mut extra = TcpStream::connect(addr).await.unwrap();
        let answer = read_until_closed(&mut extra, Duration::from_secs(2)).await.expect("refused and closed");
        assert!(answer.starts_with("HTTP/1.1 503") && answer.contains("Retry-After"), "{answer:?}");
        // The trickler keeps sending, a byte at a time, and is cut off anyway.
        let trickling = tokio::spawn(async move {
            for _ in 0..30 {
                if trickle.write_all(b"X").await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            read_until_closed(&mut trickle, Duration::from_secs(3)).await
        });
        for s in &mut idle {
            let closed = read_until_closed(s, Duration::from_secs(3)).await;
            assert!(closed.is_some(), "an idle connection was kept open");
        }
        let t = trickling.await.unwrap().expect("the trickler was closed");
        assert!(!t.contains("200 OK"), "{t}");
        // Room again: a real request is served.
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
        let answer = read_until_closed(&mut s, Duration::from_secs(3)).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }

    #[tokio::test]
    async fn one_client_cannot_hold_every_connection() {
        let (addr, _dir) = start(|c| {
            c.client_ip_header = None;
            c.max_connections_per_client = 5;
            c.header_read_timeout_secs = 30;
        })
        .await;
        let mut mine = Vec::new();
        for _ in 0..5 {
            mine.push(TcpStream::connect(addr).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut sixth = TcpStream::connect(addr).await.unwrap();
        let answer = read_until_closed(&mut sixth, Duration::from_secs(2)).await.expect("refused and closed");
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer:?}");
        // Another client (another loopback address) is served.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        let mut other = socket.connect(addr).await.unwrap();
        other.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
        let answer = read_until_closed(&mut other, Duration::from_secs(3)).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        // Closing one of mine makes room for me again.
        drop(mine.pop());
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut again = TcpStream::connect(addr).await.unwrap();
        again.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
        let answer = read_until_closed(&mut again, Duration::from_secs(3)).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }

    fn multipart_head(len: usize) -> (String, Vec<u8>, Vec<u8>) {
        let boundary = "b0undary";
        let head = format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n\r\n");
        let tail = format!("\r\n--{boundary}--\r\n");
        let total = head.len() + len + tail.len();
        let request = format!(
            "POST /v1/images HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 198.51.100.44\r\nConnection: close\r\n\
             Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {total}\r\n\r\n"
        );
        (request, head.into_bytes(), tail.into_bytes())
    }

    #[tokio::test]
    async fn a_slow_steady_upload_outlasts_the_request_timeout_and_a_stalled_one_gets_408() {
        let (addr, _dir) = start(|c| {
            c.request_timeout_secs = 2;
            c.body_idle_timeout_secs = 1;
        })
        .await;
        let image = png(64, 64, 5);
        // ~3 s in 12 pieces: longer than the request timeout, never idle for 1 s.
        let (request, head, tail) = multipart_head(image.len());
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        s.write_all(&head).await.unwrap();
        for piece in image.chunks(image.len().div_ceil(12)) {
            s.write_all(piece).await.unwrap();
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        s.write_all(&tail).await.unwrap();
        let answer = read_until_closed(&mut s, Duration::from_secs(10)).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
        // Half the body, then silence.
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        s.write_all(&head).await.unwrap();
        s.write_all(&image[..image.len() / 2]).await.unwrap();
        let answer = read_until_closed(&mut s, Duration::from_secs(10)).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 408") && answer.contains("request_timeout"), "{answer}");
    }
}
