//! Sign-up, verification, sign-in, sessions, passwords and consent, on
//! SQLite and PostgreSQL.

mod common;

use axum::http::StatusCode;
use common::*;
use serde_json::json;
use sqlx::Row;

const PW: &str = "tulip-Orbit-94";

fn signup(email: &str) -> Req {
    Req::post("/v1/auth/signup", json!({"email": email, "name": "Ada", "password": PW, "age_confirmed": true}))
}

on_both_databases!(sign_up_then_verify_by_the_emailed_link, |t: TestApp| async move {
    let r =
        t.call(signup("Ada@Example.com").header("x-forwarded-for", "198.51.100.7").header("cf-ipcountry", "de")).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    assert_eq!(r.json["email"], "ada@example.com");

    let mails = t.mail_to("ada@example.com").await;
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].subject, "Confirm your email address");
    let token = mails[0].token("/verify-email").expect("link in mail");
    // The raw message carries the link as is (no quoted-printable mangling).
    let raw: Vec<String> =
        std::fs::read_dir(&t.outbox).unwrap().flatten().map(|e| std::fs::read_to_string(e.path()).unwrap()).collect();
    assert!(
        raw.iter().any(|m| m.contains(&format!("/verify-email?token={token}\r\n"))),
        "link not intact in the .eml: {raw:?}"
    );

    // The password is stored as argon2id only.
    let row =
        sqlx::query("SELECT password_hash, email_verified_at FROM users").fetch_one(&t.state.db.pool).await.unwrap();
    let hash: String = row.get(0);
    assert!(hash.starts_with("$argon2id$") && !hash.contains(PW));
    assert!(row.get::<Option<i64>, _>(1).is_none());

    // The link page does not use the token; the POST does, once.
    let page = t.call(Req::get(&format!("/verify-email?token={token}"))).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains("method=\"post\""));
    let r = t.call(Req::post("/v1/auth/verify", json!({"token": token}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["email_verified"], true);
    let again = t.call(Req::post("/v1/auth/verify", json!({"token": token}))).await;
    assert_eq!(again.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(again.code(), "validation_error");

    // The consent record: timestamp, country, no marketing unless asked.
    let c = sqlx::query("SELECT recorded_at, country, marketing, gpc, source FROM consents")
        .fetch_one(&t.state.db.pool)
        .await
        .unwrap();
    assert_eq!(c.get::<i64, _>(0), T0);
    assert_eq!(c.get::<Option<String>, _>(1).as_deref(), Some("DE"));
    assert!((c.get::<i64, _>(2) == 0));
    assert!((c.get::<i64, _>(3) == 0));
    assert_eq!(c.get::<String, _>(4), "signup");
});

on_both_databases!(an_expired_verification_link_does_not_verify, |t: TestApp| async move {
    t.call(signup("late@example.com")).await;
    let token = t.mail_to("late@example.com").await[0].token("/verify-email").unwrap();
    t.clock.advance(t.state.cfg.verify_link_ttl_secs + 1);
    let r = t.call(Req::post("/v1/auth/verify", json!({"token": token}))).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(t.count("SELECT COUNT(*) FROM users WHERE email_verified_at IS NOT NULL").await, 0);
});

on_both_databases!(signing_up_twice_reveals_nothing_and_mails_the_owner, |t: TestApp| async move {
    let first = t.call(signup("twice@example.com")).await;
    let second = t.call(signup("twice@example.com")).await;
    assert_eq!(first.status, second.status);
    assert_eq!(first.json, second.json);
    assert_eq!(t.count("SELECT COUNT(*) FROM users").await, 1);
    let mut subjects: Vec<String> = t.mail_to("twice@example.com").await.into_iter().map(|m| m.subject).collect();
    subjects.sort();
    assert_eq!(subjects, ["Confirm your email address", "Someone tried to sign up with your email"]);
});

on_both_databases!(bad_sign_ups_get_clear_errors_and_create_nothing, |t: TestApp| async move {
    for (body, field) in [
        (json!({"email": "not-an-email", "name": "A", "password": PW, "age_confirmed": true}), "email"),
        (json!({"email": "a@b", "name": "A", "password": PW, "age_confirmed": true}), "email"),
        (json!({"email": "a b@example.com", "name": "A", "password": PW, "age_confirmed": true}), "email"),
        (json!({"email": "a@example.com", "name": "", "password": PW, "age_confirmed": true}), "name"),
        (json!({"email": "a@example.com", "name": "A", "password": "short", "age_confirmed": true}), "password"),
        (
            json!({"email": "a@example.com", "name": "A", "password": "x".repeat(500), "age_confirmed": true}),
            "password",
        ),
        (
            json!({"email": "a@example.com", "name": "A", "password": "aaaaaaaaaaaaaaa", "age_confirmed": true}),
            "password",
        ),
        // Under 16 (or not saying): no account.
        (json!({"email": "a@example.com", "name": "A", "password": PW}), "age_confirmed"),
        (json!({"email": "a@example.com", "name": "A", "password": PW, "age_confirmed": false}), "age_confirmed"),
    ] {
        let r = t.call(Req::post("/v1/auth/signup", body)).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
        assert_eq!(r.code(), "validation_error");
        assert!(r.json["error"]["details"][field][0].is_string(), "{}", r.text);
    }
    let r = t.call(Req::post("/v1/auth/signup", json!({"email": "a@example.com"}))).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = t.call(Req::new("POST", "/v1/auth/signup").raw("application/json", b"{not json".to_vec())).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json["error"]["type"], "invalid_request_error");
    let big = format!("{{\"email\":\"a@example.com\",\"name\":\"{}\",\"password\":\"x\"}}", "n".repeat(200_000));
    let r = t.call(Req::new("POST", "/v1/auth/signup").raw("application/json", big.into_bytes())).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(t.count("SELECT COUNT(*) FROM users").await, 0);
    assert_eq!(t.count("SELECT COUNT(*) FROM teams").await, 0);
    assert_eq!(t.count("SELECT COUNT(*) FROM outbound_emails").await, 0);
});

on_both_databases!(wrong_password_and_unknown_email_look_the_same, |t: TestApp| async move {
    t.user("known@example.com", PW).await;
    let wrong =
        t.call(Req::post("/v1/auth/login", json!({"email": "known@example.com", "password": "nope-nope-nope"}))).await;
    let unknown =
        t.call(Req::post("/v1/auth/login", json!({"email": "ghost@example.com", "password": "nope-nope-nope"}))).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.status, unknown.status);
    assert_eq!(wrong.json, unknown.json);
    assert!(wrong.set_cookie().is_none());
});

on_both_databases!(the_session_cookie_is_locked_down_and_forgeries_fail, |t: TestApp| async move {
    t.call(signup("c@example.com")).await;
    let r = t.call(Req::post("/v1/auth/login", json!({"email": "c@example.com", "password": PW}))).await;
    let cookie = r.set_cookie().unwrap();
    for flag in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(flag), "{flag} missing from {cookie}");
    }
    // Stored hashed: the cookie value is nowhere in the database, in no
    // column of any table and not in its files.
    let token = r.session_cookie().unwrap();
    assert_eq!(t.find_anywhere(&token).await, Vec::<String>::new());
    let csrf = r.json["csrf_token"].as_str().unwrap();
    assert!(!t.find_anywhere(csrf).await.is_empty(), "the search finds what is stored (the CSRF token is)");
    let forged = t.call(Req::get("/v1/me").header("cookie", "imgcdn_session=forged-token-value")).await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
    assert_eq!(forged.code(), "unauthorized");
    let me = t.call(Req::get("/v1/me").header("cookie", &format!("imgcdn_session={token}"))).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.json["email"], "c@example.com");
});

on_both_databases!(cookie_state_changes_need_the_csrf_token, |t: TestApp| async move {
    let u = t.user("csrf@example.com", PW).await;
    let r = t.call(Req::new("PATCH", "/v1/me").json(json!({"name": "Eve"})).cookie_only(&u)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.code(), "forbidden");
    let r = t
        .call(Req::new("PATCH", "/v1/me").json(json!({"name": "Eve"})).cookie_only(&u).header("x-csrf-token", "guess"))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = t.call(Req::new("PATCH", "/v1/me").json(json!({"name": "Eve"})).signed_in(&u)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["name"], "Eve");
    // Logging out is a state change too.
    let r = t.call(Req::new("POST", "/v1/auth/logout").cookie_only(&u)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
});

on_both_databases!(sessions_slide_for_90_days_and_end_at_180, |t: TestApp| async move {
    let u = t.user("slide@example.com", PW).await;
    let me = || Req::get("/v1/me").cookie_only(&u);
    // Used every 89 days: still alive at day 178.
    for _ in 0..2 {
        t.clock.advance(89 * 86_400);
        assert_eq!(t.call(me()).await.status, StatusCode::OK);
    }
    // Past the hard maximum, however active.
    t.clock.advance(3 * 86_400);
    assert_eq!(t.call(me()).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(t.count("SELECT COUNT(*) FROM sessions").await, 0, "an ended session must be deleted");

    // Unused for more than 90 days: gone.
    let u = t.login("slide@example.com", PW).await;
    t.clock.advance(91 * 86_400);
    assert_eq!(t.call(Req::get("/v1/me").cookie_only(&u)).await.status, StatusCode::UNAUTHORIZED);
});

on_both_databases!(sign_in_address_and_agent_live_and_die_with_the_session, |t: TestApp| async move {
    let u = t.user("ip@example.com", PW).await;
    let list = t.call(Req::get("/v1/sessions").cookie_only(&u)).await;
    assert_eq!(list.json["data"][0]["ip_address"], "203.0.113.9");
    assert_eq!(list.json["data"][0]["user_agent"], "test-agent/1.0");
    assert_eq!(list.json["data"][0]["current"], true);
    let r = t.call(Req::new("POST", "/v1/auth/logout").signed_in(&u)).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(r.set_cookie().unwrap().contains("Max-Age=0"));
    assert_eq!(t.count("SELECT COUNT(*) FROM sessions WHERE ip IS NOT NULL OR user_agent IS NOT NULL").await, 0);
    assert_eq!(t.call(Req::get("/v1/me").cookie_only(&u)).await.status, StatusCode::UNAUTHORIZED);
});

on_both_databases!(list_and_revoke_own_sessions_and_log_out_everywhere, |t: TestApp| async move {
    let a = t.user("many@example.com", PW).await;
    let b = t.login("many@example.com", PW).await;
    let c = t.login("many@example.com", PW).await;
    let other = t.user("other@example.com", PW).await;
    let list = t.call(Req::get("/v1/sessions").cookie_only(&a)).await;
    assert_eq!(list.json["data"].as_array().unwrap().len(), 3);
    // b's session, as b sees it (current) and a sees it (not current).
    let own = t.call(Req::get("/v1/sessions").cookie_only(&b)).await;
    let b_id = own.json["data"].as_array().unwrap().iter().find(|s| s["current"] == true).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let seen_by_a = list.json["data"].as_array().unwrap().iter().find(|s| s["id"] == b_id.as_str()).unwrap();
    assert_eq!(seen_by_a["current"], false);
    // Someone else's session cannot be revoked.
    let r = t.call(Req::new("DELETE", &format!("/v1/sessions/{b_id}")).signed_in(&other)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = t.call(Req::new("DELETE", &format!("/v1/sessions/{b_id}")).signed_in(&a)).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    // The revoked one is dead; the others live.
    assert_eq!(t.call(Req::get("/v1/me").cookie_only(&b)).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(t.call(Req::get("/v1/me").cookie_only(&a)).await.status, StatusCode::OK);
    assert_eq!(t.call(Req::get("/v1/me").cookie_only(&c)).await.status, StatusCode::OK);
    assert_eq!(t.call(Req::get("/v1/sessions").cookie_only(&a)).await.json["data"].as_array().unwrap().len(), 2);
    let r = t.call(Req::new("POST", "/v1/auth/logout-all").signed_in(&a)).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    for u in [&a, &b, &c] {
        assert_eq!(t.call(Req::get("/v1/me").cookie_only(u)).await.status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(t.call(Req::get("/v1/me").cookie_only(&other)).await.status, StatusCode::OK);
});

on_both_databases!(changing_the_password_ends_other_sessions_and_alerts, |t: TestApp| async move {
    let a = t.user("pw@example.com", PW).await;
    let b = t.login("pw@example.com", PW).await;
    let r = t
        .call(
            Req::new("POST", "/v1/auth/password")
                .json(json!({"current_password": "wrong-wrong-1", "new_password": "new-Secret-77"}))
                .signed_in(&a),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = t
        .call(
            Req::new("POST", "/v1/auth/password")
                .json(json!({"current_password": PW, "new_password": "new-Secret-77"}))
                .signed_in(&a),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    assert_eq!(t.call(Req::get("/v1/me").cookie_only(&a)).await.status, StatusCode::OK);
    assert_eq!(t.call(Req::get("/v1/me").cookie_only(&b)).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(t.mail_to("pw@example.com").await.last().unwrap().subject, "Security alert for your account");
    let r = t.call(Req::post("/v1/auth/login", json!({"email": "pw@example.com", "password": PW}))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    t.login("pw@example.com", "new-Secret-77").await;
});

on_both_databases!(password_reset_by_emailed_link_ends_every_session, |t: TestApp| async move {
    let a = t.user("reset@example.com", PW).await;
    // Unknown addresses get the same answer and no mail.
    let r = t.call(Req::post("/v1/auth/password-reset", json!({"email": "nobody@example.com"}))).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert!(t.mail_to("nobody@example.com").await.is_empty());
    let r = t.call(Req::post("/v1/auth/password-reset", json!({"email": "reset@example.com"}))).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let token = t.newest_link("reset@example.com", "Reset your password", "/reset-password").await;
    // A weak password is refused without using up the link.
    let r = t.call(Req::post("/v1/auth/password-reset/confirm", json!({"token": token, "password": "weak"}))).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r =
        t.call(Req::post("/v1/auth/password-reset/confirm", json!({"token": token, "password": "brand-New-88"}))).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    assert_eq!(t.call(Req::get("/v1/me").cookie_only(&a)).await.status, StatusCode::UNAUTHORIZED);
    let r =
        t.call(Req::post("/v1/auth/password-reset/confirm", json!({"token": token, "password": "other-New-99"}))).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "a reset link works once");
    t.login("reset@example.com", "brand-New-88").await;

    // An expired link does nothing.
    t.call(Req::post("/v1/auth/password-reset", json!({"email": "reset@example.com"}))).await;
    let token = t.newest_link("reset@example.com", "Reset your password", "/reset-password").await;
    t.clock.advance(t.state.cfg.reset_link_ttl_secs + 1);
    let r =
        t.call(Req::post("/v1/auth/password-reset/confirm", json!({"token": token, "password": "later-New-11"}))).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    t.login("reset@example.com", "brand-New-88").await;
});

on_both_databases!(global_privacy_control_means_no_marketing_consent, |t: TestApp| async move {
    let r = t
        .call(
            Req::post(
                "/v1/auth/signup",
                json!({"email": "gpc@example.com", "name": "G", "password": PW, "age_confirmed": true, "marketing_emails": true}),
            )
            .header("sec-gpc", "1"),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let c = sqlx::query("SELECT marketing, gpc FROM consents").fetch_one(&t.state.db.pool).await.unwrap();
    assert!((c.get::<i64, _>(0) == 0), "marketing recorded despite GPC");
    assert!((c.get::<i64, _>(1) != 0), "GPC not recorded");

    // Without GPC, an opt-in is recorded; a later settings change under GPC withdraws it.
    t.call(Req::post(
        "/v1/auth/signup",
        json!({"email": "opt@example.com", "name": "O", "password": PW, "age_confirmed": true, "marketing_emails": true}),
    ))
    .await;
    let token = t.mail_to("opt@example.com").await[0].token("/verify-email").unwrap();
    t.call(Req::post("/v1/auth/verify", json!({"token": token}))).await;
    let u = t.login("opt@example.com", PW).await;
    assert_eq!(t.call(Req::get("/v1/me").cookie_only(&u)).await.json["marketing_emails"], true);
    let r = t
        .call(Req::new("PATCH", "/v1/me").json(json!({"marketing_emails": true})).signed_in(&u).header("sec-gpc", "1"))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["marketing_emails"], false);
    let last = sqlx::query(
        "SELECT marketing, gpc, source FROM consents WHERE user_id = $1 ORDER BY recorded_at DESC, id DESC",
    )
    .bind(&u.id)
    .fetch_all(&t.state.db.pool)
    .await
    .unwrap();
    assert_eq!(last.len(), 2, "consent records are appended, not overwritten");
    assert!(last.iter().any(|r| (r.get::<i64, _>("gpc") != 0)
        && (r.get::<i64, _>("marketing") == 0)
        && r.get::<String, _>("source") == "settings"));
});

on_both_databases!(marketing_mail_reaches_only_consenting_accounts, |t: TestApp| async move {
    t.call(Req::post(
        "/v1/auth/signup",
        json!({"email": "yes@example.com", "name": "Y", "password": PW, "age_confirmed": true, "marketing_emails": true}),
    ))
    .await;
    t.call(Req::post(
        "/v1/auth/signup",
        json!({"email": "no@example.com", "name": "N", "password": PW, "age_confirmed": true}),
    ))
    .await;
    t.call(
        Req::post(
            "/v1/auth/signup",
            json!({"email": "gpc@example.com", "name": "G", "password": PW, "age_confirmed": true, "marketing_emails": true}),
        )
        .header("sec-gpc", "1"),
    )
    .await;
    let n = imgcdn_control_plane::email::queue_marketing(&t.state.db, "News", "Hello", T0).await.unwrap();
    assert_eq!(n, 1);
    let news: Vec<_> = t.deliver().await.into_iter().filter(|m| m.subject == "News").collect();
    assert_eq!(news.len(), 1);
    assert!(news[0].to.contains("yes@example.com"));
});
