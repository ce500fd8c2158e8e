//! The public and account pages as a browser without script uses them:
//! the landing page and its upload form, sign-up, log-in and log-out,
//! the password pages, the privacy policy and the report form. Each
//! scenario checks where the form lands (the database, the mail, the
//! session), on SQLite and PostgreSQL.

mod common;

use axum::http::StatusCode;
use common::*;
use imgcdn_control_plane::images::queries;
use imgcdn_shared::testing::png;

const PW: &str = "tulip-Orbit-94";

/// The action of the upload form on `page`: `/upload` signed out,
/// `/upload?t=…` with the session's upload token.
fn upload_action(page: &str) -> String {
    let at = page.find("action=\"/upload").expect("an upload form") + "action=\"".len();
    page[at..].split('"').next().unwrap().replace("&amp;", "&")
}

/// The no-script upload form with one PNG.
fn upload(path: &str, seed: u8) -> Req {
    Req::new("POST", path).multipart(&[("file", Some("beach.png"), &png(24, 16, seed)), ("caption", None, b"Beach")])
}

async fn only_image(t: &TestApp) -> imgcdn_control_plane::images::row::ImageRow {
    use sqlx::Row;
    let id: String = sqlx::query("SELECT id FROM images").fetch_one(&t.state.db.pool).await.unwrap().get(0);
    queries::fetch(&t.state.db, &id).await.unwrap().unwrap()
}

on_both_databases!(the_landing_page_says_how_long_uploads_are_kept_before_upload, |t: TestApp| async move {
    let t = t.same_backend_with(|c| c.retention.anonymous_days = 12).await;
    let page = t.call(Req::get("/")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains("deleted after <strong>12 days</strong>"), "{}", page.text);
    assert!(page.text.contains("action=\"/upload\""), "{}", page.text);
    assert!(page.text.contains("data-upload") && page.text.contains("name=\"file\""));
    assert!(!page.text.contains("csrf-token"), "no session, no token");

    let u = t.user("lena@example.com", PW).await;
    let page = t.call(Req::get("/").cookie_only(&u)).await;
    assert!(page.text.contains("kept until you delete them"), "{}", page.text);
    // The form's URL holds a token for this form only, never the session's CSRF token.
    let token = imgcdn_control_plane::secrets::hash_token(&format!("imgcdn-upload:{}", u.csrf));
    assert_eq!(upload_action(&page.text), format!("/upload?t={token}"));
    assert!(!upload_action(&page.text).contains(&u.csrf));
    assert!(page.text.contains("name=\"csrf-token\""));
});

on_both_databases!(an_anonymous_upload_shows_its_link_and_the_day_it_is_deleted, |t: TestApp| async move {
    let r = t.call(upload("/upload", 1)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let row = only_image(&t).await;
    assert_eq!(row.team_id, None);
    assert_eq!(row.caption.as_deref(), Some("Beach"));
    assert!(r.text.contains(&format!("value=\"{}\"", row.url(&t.state.cfg))), "{}", r.text);
    assert!(r.text.contains(&format!("href=\"{}\"", row.page_url(&t.state.cfg))), "{}", r.text);
    assert!(r.text.contains("data-copy=\"#link\""));
    // T0 is 1 January 2026; anonymous uploads are kept 30 days.
    assert_eq!(row.expires_at, Some(T0 + 30 * 86_400));
    assert!(r.text.contains("This image will be deleted on"), "{}", r.text);
    assert!(r.text.contains("31 January 2026"), "{}", r.text);

    // Its viewer page: the caption as the title, the figure, a way to report it.
    let page = t.call(Req::get(&format!("/{}", row.id))).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains("<h1>Beach</h1>"), "{}", page.text);
    assert!(page.text.contains("<figure class=\"viewer\"><img"), "{}", page.text);
    assert!(page.text.contains(&format!("href=\"/report?image={}\"", row.id)));

    // Not an image: the upload box again with the reason, and nothing stored.
    let r = t
        .call(Req::new("POST", "/upload").multipart(&[("file", Some("notes.txt"), b"just some text, not pixels")]))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(r.text.contains("The image was not uploaded."), "{}", r.text);
    assert!(r.text.contains("data-upload"), "the form is there to try again");
    assert_eq!(t.count("SELECT COUNT(*) FROM images").await, 1);

    // The form's body may be as large as the API's upload, not a JSON body.
    let big = png(300, 300, 7);
    assert!(big.len() > t.state.cfg.json_body_limit);
    let r = t.call(Req::new("POST", "/upload").multipart(&[("file", Some("big.png"), &big)])).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(t.count("SELECT COUNT(*) FROM images").await, 2);
});

on_both_databases!(a_signed_in_upload_needs_the_upload_token_of_its_session, |t: TestApp| async move {
    let u = t.user("sam@example.com", PW).await;
    let other = t.user("kim@example.com", PW).await;
    let other_action = upload_action(&t.call(Req::get("/").cookie_only(&other)).await.text);
    // No token, a wrong one, another session's, and the session's CSRF
    // token itself (in either parameter): all refused, nothing stored.
    for action in [
        "/upload".to_string(),
        "/upload?t=not-the-token".to_string(),
        other_action,
        format!("/upload?t={}", enc(&u.csrf)),
        format!("/upload?csrf={}", enc(&u.csrf)),
    ] {
        let r = t.call(upload(&action, 2).cookie_only(&u)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{action}: {}", r.text);
        assert!(r.text.contains("Form expired"), "{action}: {}", r.text);
    }
    assert_eq!(t.count("SELECT COUNT(*) FROM images").await, 0, "nothing stored");

    // A signed-in page's form sent after the session ended: log in again,
    // not an anonymous upload.
    let action = upload_action(&t.call(Req::get("/").cookie_only(&u)).await.text);
    let r = t.call(upload(&action, 2)).await;
    assert_eq!((r.status, location(&r)), (StatusCode::SEE_OTHER, "/login?next=%2F".to_string()));
    assert_eq!(t.count("SELECT COUNT(*) FROM images").await, 0, "nothing stored");

    let r = t.call(upload(&action, 2).cookie_only(&u)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let row = only_image(&t).await;
    assert_eq!(row.team_id.as_deref(), Some(u.team.as_str()), "in the user's own team");
    assert_eq!(row.expires_at, None);
    assert!(r.text.contains("This image is kept until you delete it."), "{}", r.text);
});

on_both_databases!(signing_up_creates_the_account_and_mails_the_link, |t: TestApp| async move {
    let page = t.call(Req::get("/signup")).await;
    assert!(page.text.contains(&format!("At least {} characters", t.state.cfg.passwords.min_length)));
    assert!(page.text.contains("name=\"marketing_emails\"") && !page.text.contains("checked"), "unticked by default");

    // The two passwords differ: the form again, with what was typed but the passwords.
    let fields = [("name", "Nora Quinn"), ("email", "nora@example.com"), ("password", PW), ("age_confirmed", "yes")];
    let r =
        t.call(page_form("/signup", &[fields.as_slice(), &[("password_confirm", "tulip-Orbit-95")]].concat())).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(r.text.contains("value=\"Nora Quinn\"") && r.text.contains("value=\"nora@example.com\""));
    assert!(!r.text.contains(PW) && !r.text.contains("tulip-Orbit-95"), "passwords are never sent back");
    assert_eq!(t.count("SELECT COUNT(*) FROM users").await, 0);

    // Without the age confirmation: refused by the domain, nothing created.
    let r = t.call(page_form("/signup", &[&fields[..3], &[("password_confirm", PW)]].concat())).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text.contains("confirm it to sign up"), "the domain's refusal: {}", r.text);
    assert_eq!(t.count("SELECT COUNT(*) FROM users").await, 0);

    let r = t.call(page_form("/signup", &[fields.as_slice(), &[("password_confirm", PW)]].concat())).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.text.contains("Check your email") && r.text.contains("nora@example.com"));
    assert_eq!(t.count("SELECT COUNT(*) FROM users WHERE email = 'nora@example.com'").await, 1);
    assert_eq!(t.count("SELECT COUNT(*) FROM consents WHERE marketing = 0").await, 1, "no marketing unless ticked");
    let token = t.newest_link("nora@example.com", "Confirm your email address", "/verify-email").await;
    let r = t.call(page_form("/verify-email", &[("token", &token)])).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(t.count("SELECT COUNT(*) FROM users WHERE email_verified_at IS NOT NULL").await, 1);
});

on_both_databases!(logging_in_sets_the_cookie_and_goes_only_to_our_own_pages, |t: TestApp| async move {
    t.user("li@example.com", PW).await;
    let r = t
        .call(page_form("/login", &[("email", "li@example.com"), ("password", PW), ("next", "/dashboard/keys")]))
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    assert_eq!(location(&r), "/dashboard/keys");
    let cookie = r.session_cookie().expect("a session cookie");
    let me = t.call(Req::get("/v1/me").header("cookie", &format!("imgcdn_session={cookie}"))).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.json["email"], "li@example.com");

    let r = t
        .call(page_form("/login", &[("email", "li@example.com"), ("password", PW), ("next", "//evil.example/")]))
        .await;
    assert_eq!(location(&r), "/dashboard");

    // A wrong password and an unknown address: the same 401, no cookie.
    for (email, password) in [("li@example.com", "wrong-Password-1"), ("nobody@example.com", PW)] {
        let r = t.call(page_form("/login", &[("email", email), ("password", password), ("next", "/settings")])).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
        assert!(r.set_cookie().is_none());
        assert!(r.text.contains("Wrong email or password."), "{}", r.text);
        assert!(r.text.contains("name=\"next\" value=\"/settings\""), "next is kept");
    }
});

on_both_databases!(a_page_form_sent_from_another_site_is_refused_before_it_runs, |t: TestApp| async move {
    t.user("xs@example.com", PW).await;
    let login = || page_form("/login", &[("email", "xs@example.com"), ("password", PW)]);
    let us = "http://127.0.0.1:8090";
    // What browsers say about a form another site submitted: refused, no session.
    for (header, value) in
        [("sec-fetch-site", "cross-site"), ("sec-fetch-site", "same-site"), ("origin", "https://evil.example")]
    {
        let r = t.call(login().header(header, value)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{header}: {value}");
        assert!(r.set_cookie().is_none(), "{header}: {value}");
        assert!(r.text.contains("sent from another site"), "{}", r.text);
        assert_no_inline_code("the refusal", &r);
    }
    // Our own pages' forms: same-origin, typed in the address bar (`none`),
    // our origin, or `null` (what a no-referrer page sends as its origin).
    for (header, value) in
        [("sec-fetch-site", "same-origin"), ("sec-fetch-site", "none"), ("origin", us), ("origin", "null")]
    {
        let r = t.call(login().header(header, value)).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{header}: {value}: {}", r.text);
        assert!(r.session_cookie().is_some());
    }
    // The API is not a page: its callers are programs (and the session's
    // CSRF header guards its cookie calls).
    let r = t
        .call(
            Req::post("/v1/auth/login", serde_json::json!({"email": "xs@example.com", "password": PW}))
                .header("sec-fetch-site", "cross-site"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
});

on_both_databases!(logging_out_needs_the_token_and_ends_the_session, |t: TestApp| async move {
    let u = t.user("out@example.com", PW).await;
    let r = t.call(page_form("/logout", &[]).cookie_only(&u)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(t.call(Req::get("/v1/me").cookie_only(&u)).await.status, StatusCode::OK, "still signed in");

    let r = t.call(page_form("/logout", &[("csrf", &u.csrf)]).cookie_only(&u)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/");
    assert!(r.set_cookie().unwrap().contains("Max-Age=0"), "the cookie is cleared");
    assert_eq!(t.call(Req::get("/v1/me").cookie_only(&u)).await.status, StatusCode::UNAUTHORIZED);
});

on_both_databases!(password_pages_answer_the_same_and_check_the_confirmation, |t: TestApp| async move {
    t.user("pw@example.com", PW).await;
    let known = t.call(page_form("/forgot-password", &[("email", "pw@example.com")])).await;
    let unknown = t.call(page_form("/forgot-password", &[("email", "ghost@example.com")])).await;
    assert_eq!(known.status, StatusCode::OK);
    assert_eq!(known.text.replace("pw@example.com", "@"), unknown.text.replace("ghost@example.com", "@"));
    assert!(t.mail_to("ghost@example.com").await.is_empty());
    let token = t.newest_link("pw@example.com", "Reset your password", "/reset-password").await;

    let page = t.call(Req::get(&format!("/reset-password?token={token}"))).await;
    assert!(page.text.contains("name=\"password_confirm\"") && page.text.contains("At least"), "{}", page.text);
    let fields = [("token", token.as_str()), ("password", "brand-New-88"), ("password_confirm", "brand-New-89")];
    let r = t.call(page_form("/reset-password", &fields)).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text.contains(&format!("value=\"{token}\"")), "the form again, with its token");
    t.login("pw@example.com", PW).await;
    // API clients send no confirmation.
    let r = t.call(page_form("/reset-password", &[("token", &token), ("password", "brand-New-88")])).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    t.login("pw@example.com", "brand-New-88").await;
});

on_both_databases!(the_privacy_page_is_the_whole_policy_after_the_rights, |t: TestApp| async move {
    let r = t.call(Req::get("/privacy")).await;
    assert_eq!(r.status, StatusCode::OK);
    for heading in ["Data Controller", "Retention", "Your Rights", "Children", "Contact"] {
        assert!(r.text.contains(&format!(">{heading}</h2>")), "{heading}: {}", r.text);
    }
    assert!(r.text.contains("href=\"/settings#data\"") && r.text.contains("href=\"/settings#delete\""));
    let rights = r.text.find("Your rights, in short").unwrap();
    assert!(rights < r.text.find(">Data Controller</h2>").unwrap(), "the rights come first");
});

on_both_databases!(a_report_from_the_form_enters_the_review_queue, |t: TestApp| async move {
    t.call(upload("/upload", 3)).await;
    let id = only_image(&t).await.id;
    let page = t.call(Req::get(&format!("/report?image={id}"))).await;
    assert!(page.text.contains(&format!("value=\"{id}\"")), "{}", page.text);

    let r = t.call(page_form("/report", &[("image", &id), ("reason", "not-a-reason"), ("details", "?")])).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(t.count("SELECT COUNT(*) FROM reports").await, 0);

    let link = format!("https://img.test/{id}");
    let r = t
        .call(page_form("/report", &[("image", &link), ("reason", "spam"), ("details", "Ads"), ("contact_email", "")]))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.text.contains("We received your report"), "{}", r.text);
    assert_eq!(t.count(&format!("SELECT COUNT(*) FROM reports WHERE image_id = '{id}' AND reason = 'spam'")).await, 1);
    let open = format!(
        "SELECT COUNT(*) FROM review_items WHERE image_id = '{id}' AND source = 'report' AND resolved_at IS NULL"
    );
    assert_eq!(t.count(&open).await, 1, "the report waits in the review queue");
});

on_both_databases!(every_page_forbids_inline_script_and_style, |t: TestApp| async move {
    t.call(upload("/upload", 4)).await;
    let id = only_image(&t).await.id;
    let bad_login = page_form("/login", &[("email", "x@example.com"), ("password", "nope")]);
    // Each with the answer it must get: an error page is checked only where
    // an error is the answer.
    let reqs = vec![
        (Req::get("/"), StatusCode::OK),
        (Req::get("/signup"), StatusCode::OK),
        (Req::get("/login?next=/settings"), StatusCode::OK),
        (Req::get("/forgot-password"), StatusCode::OK),
        (Req::get("/privacy"), StatusCode::OK),
        (Req::get("/report"), StatusCode::OK),
        (Req::get(&format!("/{id}")), StatusCode::OK),
        (Req::get("/not-an-image"), StatusCode::NOT_FOUND),
        (Req::get("/reset-password?token=x"), StatusCode::OK),
        (upload("/upload", 5), StatusCode::OK),
        (bad_login, StatusCode::UNAUTHORIZED),
    ];
    for (req, status) in reqs {
        let path = req.path.clone();
        let r = t.call(req).await;
        assert_eq!(r.status, status, "{path}: {}", r.text);
        assert_no_inline_code(&path, &r);
    }
});
