//! The settings pages (`/settings…`) as a browser uses them: plain form
//! posts with the session cookie and the CSRF field, each change checked
//! where it lands (the API, the database, the mail), on SQLite and
//! PostgreSQL.

mod common;

use axum::http::StatusCode;
use common::*;
use imgcdn_control_plane::privacy::export;
use sqlx::Row;

const PW: &str = "tulip-Orbit-94";

async fn settings(t: &TestApp, u: &User) -> Resp {
    let r = t.call(Req::get("/settings").cookie_only(u)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r
}

on_both_databases!(settings_need_a_session, |t: TestApp| async move {
    let r = t.call(Req::get("/settings")).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/login?next=%2Fsettings");
    let r = t
        .call(Req::new("POST", "/settings/profile").raw("application/x-www-form-urlencoded", b"name=x".to_vec()))
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/login");
});

on_both_databases!(a_new_name_is_saved_and_shown, |t: TestApp| async move {
    let u = t.user("ada@example.com", PW).await;
    let r =
        t.call(page_form("/settings/profile", &[("csrf", &u.csrf), ("name", "Ada Lovelace")]).cookie_only(&u)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    assert_eq!(location(&r), "/settings?done=name#profile");
    assert_eq!(t.call(Req::get("/v1/me").cookie_only(&u)).await.json["name"], "Ada Lovelace");
    let page = t.call(Req::get("/settings?done=name").cookie_only(&u)).await;
    assert!(page.text.contains("Your name is saved."), "{}", page.text);
    assert!(page.text.contains("value=\"Ada Lovelace\""));
    // A name the domain refuses: the page again, with its message, 422.
    let r = t.call(page_form("/settings/profile", &[("csrf", &u.csrf), ("name", "  ")]).cookie_only(&u)).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text.contains("Enter a name of 1 to 100 characters."), "{}", r.text);
    assert_eq!(t.call(Req::get("/v1/me").cookie_only(&u)).await.json["name"], "Ada Lovelace");
});

on_both_databases!(a_form_without_the_csrf_field_is_refused_and_changes_nothing, |t: TestApp| async move {
    let u = t.user("csrf@example.com", PW).await;
    for fields in [vec![("name", "Mallory")], vec![("csrf", "not-the-token"), ("name", "Mallory")]] {
        let r = t.call(page_form("/settings/profile", &fields).cookie_only(&u)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    }
    assert_eq!(t.call(Req::get("/v1/me").cookie_only(&u)).await.json["name"], "csrf");
    let r = t.call(page_form("/settings/delete", &[("password", PW)]).cookie_only(&u)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(t.call(Req::get("/v1/me").cookie_only(&u)).await.status, StatusCode::OK, "not deleted");
    // A form posted from another site never runs, token or not.
    let r = t
        .call(
            page_form("/settings/profile", &[("csrf", &u.csrf), ("name", "Mallory")])
                .cookie_only(&u)
                .header("origin", "https://evil.example"),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(t.call(Req::get("/v1/me").cookie_only(&u)).await.json["name"], "csrf");
});

on_both_databases!(marketing_consent_is_recorded_and_gpc_is_honoured, |t: TestApp| async move {
    let u = t.user("mia@example.com", PW).await;
    let consents = |t: &TestApp, id: String| {
        let pool = t.state.db.pool.clone();
        async move {
            sqlx::query(
                "SELECT source, marketing, gpc FROM consents WHERE user_id = $1 ORDER BY recorded_at DESC, id DESC",
            )
            .bind(id)
            .fetch_all(&pool)
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1), r.get::<i64, _>(2)))
            .collect::<Vec<_>>()
        }
    };
    assert_eq!(consents(&t, u.id.clone()).await, vec![("signup".to_string(), 0, 0)]);
    let r =
        t.call(page_form("/settings/privacy", &[("csrf", &u.csrf), ("marketing_emails", "on")]).cookie_only(&u)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    assert_eq!(t.call(Req::get("/v1/me").cookie_only(&u)).await.json["marketing_emails"], true);
    assert_eq!(consents(&t, u.id.clone()).await[0], ("settings".to_string(), 1, 0));
    // Saving the form unchanged appends nothing.
    let r =
        t.call(page_form("/settings/privacy", &[("csrf", &u.csrf), ("marketing_emails", "on")]).cookie_only(&u)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "the save worked: {}", r.text);
    assert_eq!(consents(&t, u.id.clone()).await.len(), 2);

    // Under Global Privacy Control the page says so, and a save withdraws consent.
    assert!(!settings(&t, &u).await.text.contains("Global Privacy Control"));
    let page = t.call(Req::get("/settings").cookie_only(&u).header("sec-gpc", "1")).await;
    assert!(page
        .text
        .contains("Your browser sends Global Privacy Control: we treat it as an opt-out of marketing email"));
    let r = t
        .call(
            page_form("/settings/privacy", &[("csrf", &u.csrf), ("marketing_emails", "on")])
                .cookie_only(&u)
                .header("sec-gpc", "1"),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(t.call(Req::get("/v1/me").cookie_only(&u)).await.json["marketing_emails"], false);
    assert_eq!(consents(&t, u.id.clone()).await[0], ("settings".to_string(), 0, 1));

    // Restriction is a choice of its own, recorded too.
    t.call(page_form("/settings/privacy", &[("csrf", &u.csrf), ("restrict_processing", "on")]).cookie_only(&u)).await;
    assert!(t.call(Req::get("/v1/me").cookie_only(&u)).await.json["processing_restricted_at"].is_string());
    assert_eq!(consents(&t, u.id.clone()).await[0].0, "restriction");
});

on_both_databases!(a_password_change_needs_a_matching_confirmation, |t: TestApp| async move {
    let u = t.user("pat@example.com", PW).await;
    let change = |confirm: &str| {
        page_form(
            "/settings/password",
            &[
                ("csrf", &u.csrf),
                ("current_password", PW),
                ("new_password", "brand-New-88"),
                ("confirm_password", confirm),
            ],
        )
        .cookie_only(&u)
    };
    let r = t.call(change("brand-New-89")).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text.contains("The new password and its confirmation are not the same."));
    t.login("pat@example.com", PW).await;
    let r = t.call(change("brand-New-88")).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    t.login("pat@example.com", "brand-New-88").await;
});

on_both_databases!(sessions_are_listed_and_another_one_can_be_signed_out, |t: TestApp| async move {
    let u = t.user("sam@example.com", PW).await;
    let other = t.login("sam@example.com", PW).await;
    let page = settings(&t, &u).await;
    assert!(page.text.contains("2 live sessions"), "{}", page.text);
    assert_eq!(page.text.matches("this device").count(), 1);
    assert_eq!(page.text.matches("test-agent/1.0").count(), 2);
    assert!(page.text.contains("203.0.113.9"));
    // The one revoke form is the other session's.
    let forms: Vec<&str> = page.text.match_indices("/settings/sessions/ses_").map(|(i, _)| &page.text[i..]).collect();
    assert_eq!(forms.len(), 1);
    let path = forms[0].split('"').next().unwrap().to_string();
    let r = t.call(page_form(&path, &[("csrf", &u.csrf)]).cookie_only(&u)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    assert_eq!(t.call(Req::get("/v1/me").cookie_only(&other)).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(t.call(Req::get("/v1/me").cookie_only(&u)).await.status, StatusCode::OK);
    // Sign out everywhere else.
    let third = t.login("sam@example.com", PW).await;
    let r = t.call(page_form("/settings/sessions/revoke-others", &[("csrf", &u.csrf)]).cookie_only(&u)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(t.call(Req::get("/v1/me").cookie_only(&third)).await.status, StatusCode::UNAUTHORIZED);
    assert!(settings(&t, &u).await.text.contains("1 live session"));
});

on_both_databases!(an_export_is_requested_built_and_downloaded_from_settings, |t: TestApp| async move {
    let u = t.user("exa@example.com", PW).await;
    let r = t.call(page_form("/settings/export", &[("csrf", &u.csrf)]).cookie_only(&u)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let page = settings(&t, &u).await;
    assert!(page.text.contains("Being prepared"), "{}", page.text);
    assert!(!page.text.contains("/download"));
    assert_eq!(export::run_due(&t.state).await.unwrap(), 1);
    let page = settings(&t, &u).await;
    let at = page.text.find("/v1/me/exports/").expect("a download link");
    let link = page.text[at..].split('"').next().unwrap().to_string();
    assert!(link.ends_with("/download"), "{link}");
    let r = t.call(Req::get(&link).cookie_only(&u)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["content-type"], "application/x-tar");
    assert!(String::from_utf8_lossy(&r.bytes).contains("exa@example.com"), "the archive holds the account");
});

on_both_databases!(deleting_the_account_ends_the_session_and_the_mailed_link_cancels_it, |t: TestApp| async move {
    let u = t.user("del@example.com", PW).await;
    t.clock.advance(3600);
    let r = t
        .call(page_form("/settings/delete", &[("csrf", &u.csrf), ("password", "wrong-password")]).cookie_only(&u))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let delete_section = &r.text[r.text.find("id=\"delete\"").expect("the delete section")..];
    assert!(delete_section.contains("role=\"alert\""), "the refusal is shown in the delete section");
    assert_eq!(t.call(Req::get("/v1/me").cookie_only(&u)).await.status, StatusCode::OK);

    let r = t.call(page_form("/settings/delete", &[("csrf", &u.csrf), ("password", PW)]).cookie_only(&u)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // T0 + 1 h + 7 days.
    assert!(r.text.contains("2026-01-08"), "{}", r.text);
    assert!(r.text.contains("/cancel-deletion"));
    let cookie = r.set_cookie().unwrap();
    assert!(cookie.starts_with("imgcdn_session=;") && cookie.contains("Max-Age=0"), "{cookie}");
    assert_eq!(t.call(Req::get("/v1/me").cookie_only(&u)).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(t.call(Req::get("/settings").cookie_only(&u)).await.status, StatusCode::SEE_OTHER);

    let token = t.newest_link("del@example.com", "Your account will be deleted", "/cancel-deletion").await;
    let r = t
        .call(
            Req::new("POST", "/cancel-deletion")
                .raw("application/x-www-form-urlencoded", format!("token={token}").into_bytes()),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let back = t.login("del@example.com", PW).await;
    assert_eq!(t.call(Req::get("/v1/me").cookie_only(&back)).await.json["email"], "del@example.com");
});
