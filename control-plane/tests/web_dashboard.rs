//! The signed-in dashboard through the router, as a browser uses it (page
//! forms with the session cookie and the CSRF field), on SQLite and
//! PostgreSQL: images, API keys, teams and invitations, the request log.

mod common;

use axum::http::StatusCode;
use common::*;
use imgcdn_shared::testing::png;
use serde_json::json;

const PW: &str = "tulip-Orbit-94";

/// Upload a PNG from the browser (the session and its CSRF header, as the
/// dashboard's script does); the Image object.
async fn upload(t: &TestApp, u: &User, name: &str, seed: u8) -> serde_json::Value {
    let bytes = png(64, 48, seed);
    let r = t.call(Req::new("POST", "/v1/images").signed_in(u).multipart(&[("file", Some(name), &bytes)])).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    r.json
}

async fn team_named(t: &TestApp, owner: &User, name: &str) -> String {
    let r =
        t.call(page_form("/dashboard/team/create", &[("csrf", &owner.csrf), ("name", name)]).cookie_only(owner)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let to = location(&r);
    let team = to.split("team=").nth(1).unwrap().split('&').next().unwrap().to_string();
    assert!(team.starts_with("team"), "{to}");
    team
}

/// The invitation page a mail links to, as the browser gets it.
async fn invitation_page(t: &TestApp, link: &str, u: Option<&User>) -> (StatusCode, String) {
    let req = match u {
        Some(u) => Req::get(link).cookie_only(u),
        None => Req::get(link),
    };
    let r = t.call(req).await;
    (r.status, r.text)
}

/// Invite `email` to `team` from the team page; the token of the mail.
async fn invite(t: &TestApp, by: &User, team: &str, email: &str, role: &str) -> String {
    let r = t
        .call(
            page_form(
                "/dashboard/team/invite",
                &[("csrf", &by.csrf), ("team", team), ("email", email), ("role", role)],
            )
            .cookie_only(by),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    assert_eq!(location(&r), format!("/dashboard/team?team={team}&done=invited"));
    t.mail_to(email).await.last().expect("an invitation mail").token("/accept-invite").expect("its link")
}

on_both_databases!(the_dashboard_sends_a_visitor_to_log_in_and_back, |t: TestApp| async move {
    let r = t.call(Req::get("/dashboard")).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/login?next=%2Fdashboard");
    let r = t.call(Req::get("/dashboard/keys")).await;
    assert_eq!(location(&r), "/login?next=%2Fdashboard%2Fkeys");
});

on_both_databases!(uploaded_images_are_in_the_grid_with_their_thumbnails_on_the_edge, |t: TestApp| async move {
    let u = t.user("grid@example.com", PW).await;
    let r = t.call(Req::get("/dashboard").cookie_only(&u)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text.contains("No images yet"), "{}", r.text);
    // The no-script upload form carries the session's upload token (not its CSRF token).
    let token = imgcdn_control_plane::secrets::hash_token(&format!("imgcdn-upload:{}", u.csrf));
    assert!(r.text.contains(&format!("action=\"/upload?t={token}\"")), "{}", r.text);
    assert!(!r.text.contains(&format!("?csrf={}", u.csrf)));

    let cat = upload(&t, &u, "cat.png", 1).await;
    t.clock.advance(60);
    let dog = upload(&t, &u, "dog.png", 2).await;
    let r = t.call(Req::get("/dashboard?uploaded=2").cookie_only(&u)).await;
    assert_eq!(r.status, StatusCode::OK);
    let page = &r.text;
    assert!(page.contains("2 images uploaded."), "{page}");
    assert!(page.contains("<ul class=\"grid\">"), "{page}");
    for image in [&cat, &dog] {
        let id = image["id"].as_str().unwrap();
        let thumb = image["sizes"]["small"]["url"].as_str().unwrap();
        assert!(thumb.starts_with("https://cdn.test/") && thumb.ends_with("?size=s"), "{thumb}");
        assert!(page.contains(&format!("href=\"/dashboard/images/{id}\"")), "{page}");
        assert!(page.contains(&format!("src=\"{thumb}\"")), "{page}");
        assert!(page.contains(&format!("name=\"ids\" value=\"{id}\"")), "{page}");
    }
    // Newest first, and the usage counts them.
    let (c, d) = (page.find(cat["id"].as_str().unwrap()).unwrap(), page.find(dog["id"].as_str().unwrap()).unwrap());
    assert!(d < c, "newest first");
    assert!(page.contains("Images: 2"), "{page}");

    // Someone else's dashboard does not show them.
    let other = t.user("other@example.com", PW).await;
    let r = t.call(Req::get("/dashboard").cookie_only(&other)).await;
    assert!(!r.text.contains(cat["id"].as_str().unwrap()));
    let r = t.call(Req::get(&format!("/dashboard/images/{}", cat["id"].as_str().unwrap())).cookie_only(&other)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // The no-script form uploads to the user's own images.
    let form = Req::new("POST", &format!("/upload?t={token}")).cookie_only(&u);
    let r = t.call(form.multipart(&[("file", Some("sea.png"), &png(32, 24, 9))])).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = t.call(Req::get("/v1/images").cookie_only(&u)).await;
    assert_eq!(r.json["data"].as_array().unwrap().len(), 3, "{}", r.text);
});

on_both_databases!(the_edit_form_changes_caption_labels_and_visibility_with_its_token_only, |t: TestApp| async move {
    let u = t.user("edit@example.com", PW).await;
    let image = upload(&t, &u, "cat.png", 3).await;
    let id = image["id"].as_str().unwrap();
    let path = format!("/dashboard/images/{id}");
    let r = t.call(Req::get(&path).cookie_only(&u)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text.contains(&format!("value=\"{}\"", image["url"].as_str().unwrap())), "the CDN URL to copy");
    assert!(r.text.contains(image["sizes"]["large"]["url"].as_str().unwrap()), "the sizes");
    assert!(r.text.contains("kept until you delete it"));

    let fields = [("caption", "A sleepy cat"), ("labels", "album=pets\r\nyear=2026"), ("visibility", "private")];
    let r = t.call(page_form(&path, &fields).cookie_only(&u)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "no token: refused");
    let r = t.call(page_form(&path, &[&[("csrf", "wrong")][..], &fields].concat()).cookie_only(&u)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "a wrong token: refused");
    let api = t.call(Req::get(&format!("/v1/images/{id}")).cookie_only(&u)).await;
    assert_eq!((api.json["caption"].clone(), api.json["public"].clone()), (json!(null), json!(true)), "unchanged");

    let r = t.call(page_form(&path, &[&[("csrf", u.csrf.as_str())][..], &fields].concat()).cookie_only(&u)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    assert_eq!(location(&r), format!("{path}?done=saved"));
    let api = t.call(Req::get(&format!("/v1/images/{id}")).cookie_only(&u)).await;
    assert_eq!(api.json["caption"], "A sleepy cat");
    assert_eq!(api.json["public"], false);
    assert_eq!(api.json["labels"], json!({"album": "pets", "year": "2026"}));
    let r = t.call(Req::get(&location(&r)).cookie_only(&u)).await;
    assert!(r.text.contains("Saved."));
    assert!(r.text.contains("<span class=\"badge\">Private</span>"), "{}", r.text);

    // A label the API refuses: the form again with its message, nothing changed.
    let long = format!("k={}", "v".repeat(300));
    let bad = [("csrf", u.csrf.as_str()), ("caption", "Changed"), ("labels", long.as_str()), ("visibility", "public")];
    let r = t.call(page_form(&path, &bad).cookie_only(&u)).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text.contains("role=\"alert\"") && r.text.contains("Label keys are"), "{}", r.text);
    assert!(r.text.contains(">Changed</textarea>"), "what was typed is kept");
    let api = t.call(Req::get(&format!("/v1/images/{id}")).cookie_only(&u)).await;
    assert_eq!(api.json["caption"], "A sleepy cat");

    // An emptied caption is cleared.
    let clear = [("csrf", u.csrf.as_str()), ("caption", ""), ("labels", ""), ("visibility", "public")];
    assert_eq!(t.call(page_form(&path, &clear).cookie_only(&u)).await.status, StatusCode::SEE_OTHER);
    let api = t.call(Req::get(&format!("/v1/images/{id}")).cookie_only(&u)).await;
    assert_eq!(api.json["caption"], json!(null), "{}", api.json);
    assert_eq!((api.json["public"].clone(), api.json["labels"].clone()), (json!(true), json!({})));
});

on_both_databases!(saving_a_caption_leaves_labels_the_text_form_cannot_hold_exactly, |t: TestApp| async move {
    let u = t.user("labels@example.com", PW).await;
    let image = upload(&t, &u, "cat.png", 4).await;
    let id = image["id"].as_str().unwrap();
    let labels = json!({"note": "  spaced  ", "a=b": "c"});
    let r = t.call(Req::new("PATCH", &format!("/v1/images/{id}")).signed_in(&u).json(json!({"labels": labels}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // The page shows the labels as text; sent back untouched with a new caption…
    let path = format!("/dashboard/images/{id}");
    let page = t.call(Req::get(&path).cookie_only(&u)).await.text;
    let text = page.split("name=\"labels\"").nth(1).unwrap();
    let text = &text[text.find('>').unwrap() + 1..text.find("</textarea>").unwrap()];
    let text = text.replace("&amp;", "&").replace('\n', "\r\n");
    let fields =
        [("csrf", u.csrf.as_str()), ("caption", "Only this"), ("labels", text.as_str()), ("visibility", "public")];
    assert_eq!(t.call(page_form(&path, &fields).cookie_only(&u)).await.status, StatusCode::SEE_OTHER);
    // …only the caption changes.
    let api = t.call(Req::get(&format!("/v1/images/{id}")).cookie_only(&u)).await;
    assert_eq!(api.json["caption"], "Only this");
    assert_eq!(api.json["labels"], labels, "labels kept exactly");
});

on_both_databases!(a_taken_down_image_says_so_on_its_page_and_can_still_be_deleted, |t: TestApp| async move {
    let u = t.user("removed@example.com", PW).await;
    let image = upload(&t, &u, "cat.png", 6).await;
    let id = image["id"].as_str().unwrap();
    let op = t.operator("ops").await;
    let r = t
        .call(
            Req::post(&format!("/v1/admin/images/{id}/takedown"), json!({"reason": "terms_violation"}))
                .header("authorization", &format!("Bearer {op}")),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let path = format!("/dashboard/images/{id}");
    let r = t.call(Req::get(&path).cookie_only(&u)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.text.contains("removed from public serving"), "{}", r.text);
    assert!(!r.text.contains(image["url"].as_str().unwrap()), "no link to the removed image");
    let r = t.call(page_form(&format!("{path}/delete"), &[("csrf", &u.csrf)]).cookie_only(&u)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let api = t.call(Req::get(&format!("/v1/images/{id}")).cookie_only(&u)).await;
    assert_eq!(api.status, StatusCode::NOT_FOUND, "deleted: {}", api.text);
});

on_both_databases!(batch_delete_deletes_exactly_the_checked_images, |t: TestApp| async move {
    let u = t.user("batch@example.com", PW).await;
    let ids: Vec<String> = {
        let mut v = Vec::new();
        for seed in 0..3 {
            v.push(upload(&t, &u, "pic.png", 10 + seed).await["id"].as_str().unwrap().to_string());
        }
        v
    };
    let checked = [("ids", ids[0].as_str()), ("ids", ids[2].as_str())];
    let r = t.call(page_form("/dashboard/images/delete", &checked).cookie_only(&u)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "no token: refused");
    let listed = t.call(Req::get("/v1/images").cookie_only(&u)).await;
    assert_eq!(listed.json["data"].as_array().map(Vec::len), Some(3), "nothing deleted: {}", listed.text);

    let r = t
        .call(
            page_form("/dashboard/images/delete", &[&[("csrf", u.csrf.as_str())][..], &checked].concat())
                .cookie_only(&u),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    assert_eq!(location(&r), "/dashboard?deleted=2");
    let list = t.call(Req::get("/v1/images").cookie_only(&u)).await;
    let left: Vec<&str> = list.json["data"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(left, [ids[1].as_str()]);
    let r = t.call(Req::get("/dashboard?deleted=2").cookie_only(&u)).await;
    assert!(r.text.contains("2 images deleted."));

    // One image's own delete button.
    let r =
        t.call(page_form(&format!("/dashboard/images/{}/delete", ids[1]), &[("csrf", &u.csrf)]).cookie_only(&u)).await;
    assert_eq!((r.status, location(&r)), (StatusCode::SEE_OTHER, "/dashboard?done=deleted".to_string()));
    assert_eq!(t.call(Req::get(&format!("/v1/images/{}", ids[1])).cookie_only(&u)).await.status, StatusCode::NOT_FOUND);
});

on_both_databases!(a_key_created_on_the_page_is_shown_once_and_works_until_revoked, |t: TestApp| async move {
    let u = t.user("keys@example.com", PW).await;
    let fields = [("team", u.team.as_str()), ("name", "Blog uploads"), ("abilities", "read")];
    let r = t.call(page_form("/dashboard/keys", &fields).cookie_only(&u)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "no token: refused");
    assert_eq!(t.count("SELECT COUNT(*) FROM api_keys").await, 0);

    let r = t
        .call(page_form("/dashboard/keys", &[&[("csrf", u.csrf.as_str())][..], &fields].concat()).cookie_only(&u))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert!(r.text.contains("you will not see it again"));
    let at = r.text.find("value=\"img_live_").expect("the key on the page") + "value=\"".len();
    let key: String = r.text[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
    let base = t.state.cfg.public_base_url.trim_end_matches('/');
    assert!(r.text.contains(&format!("Bearer {key}&quot; {base}/v1/images")), "a command to try it: {}", r.text);
    assert_eq!(r.headers["cache-control"], "no-store");

    let who = t.call(Req::get("/v1/whoami").key(&key)).await;
    assert_eq!(who.status, StatusCode::OK, "{}", who.text);
    assert_eq!(who.json["key"]["abilities"], json!(["read"]));
    let key_id = who.json["key"]["id"].as_str().unwrap().to_string();

    // Listed without its secret.
    let r = t.call(Req::get("/dashboard/keys").cookie_only(&u)).await;
    assert!(r.text.contains("Blog uploads") && !r.text.contains(&key));

    // Nothing checked: the API's message on the page.
    let none = [("csrf", u.csrf.as_str()), ("team", u.team.as_str()), ("name", "Nothing")];
    let r = t.call(page_form("/dashboard/keys", &none).cookie_only(&u)).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text.contains("Abilities are a non-empty list"), "{}", r.text);

    let revoke = format!("/dashboard/keys/{key_id}/revoke");
    let r = t.call(page_form(&revoke, &[("csrf", &u.csrf), ("team", &u.team)]).cookie_only(&u)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    assert_eq!(location(&r), format!("/dashboard/keys?team={}&done=key-revoked", u.team));
    assert_eq!(t.call(Req::get("/v1/whoami").key(&key)).await.status, StatusCode::UNAUTHORIZED);
    let r = t.call(Req::get(&location(&r)).cookie_only(&u)).await;
    assert!(r.text.contains("Revoked"));
});

on_both_databases!(an_invitation_sent_from_the_team_page_is_accepted_on_the_invitation_page, |t: TestApp| async move {
    let owner = t.user("owner@example.com", PW).await;
    let team = team_named(&t, &owner, "Studio").await;
    let token = invite(&t, &owner, &team, "mate@example.com", "member").await;
    let r = t.call(Req::get(&format!("/dashboard/team?team={team}")).cookie_only(&owner)).await;
    assert_eq!(r.status, StatusCode::OK);
    let invitations = &r.text[r.text.find("id=\"invitations-h\"").expect("an invitations table")..];
    assert!(invitations.contains("<td>mate@example.com</td>"), "{}", r.text);

    // Not signed in: the page says to sign in and come back.
    let link = format!("/accept-invite?token={token}");
    let (status, page) = invitation_page(&t, &link, None).await;
    assert_eq!(status, StatusCode::OK);
    let next = enc(&link);
    assert!(page.contains(&format!("href=\"/login?next={next}\"")), "{page}");
    assert!(page.contains("href=\"/signup\""));

    let mate = t.user("mate@example.com", PW).await;
    let (_, page) = invitation_page(&t, &link, Some(&mate)).await;
    assert!(page.contains("action=\"/dashboard/invitations/accept\""), "{page}");
    assert!(page.contains(&format!("value=\"{token}\"")));
    let r = t.call(page_form("/dashboard/invitations/accept", &[("token", &token)]).cookie_only(&mate)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "no token: refused");
    let r = t
        .call(page_form("/dashboard/invitations/accept", &[("csrf", &mate.csrf), ("token", &token)]).cookie_only(&mate))
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    assert_eq!(location(&r), format!("/dashboard/team?team={team}&done=joined"));

    let members = t.call(Req::get(&format!("/v1/teams/{team}/members")).cookie_only(&owner)).await;
    let mut emails: Vec<&str> =
        members.json["data"].as_array().unwrap().iter().map(|m| m["email"].as_str().unwrap()).collect();
    emails.sort();
    assert_eq!(emails, ["mate@example.com", "owner@example.com"]);
    let r = t.call(Req::get(&location(&r)).cookie_only(&mate)).await;
    assert!(r.text.contains("You joined the team.") && r.text.contains("owner@example.com"));
    let r = t.call(Req::get(&format!("/dashboard/team?team={team}")).cookie_only(&owner)).await;
    assert!(r.text.contains("No pending invitations."), "used");
});

on_both_databases!(a_member_who_is_not_an_admin_cannot_invite, |t: TestApp| async move {
    let owner = t.user("boss@example.com", PW).await;
    let team = team_named(&t, &owner, "Crew").await;
    let token = invite(&t, &owner, &team, "member@example.com", "member").await;
    let member = t.user("member@example.com", PW).await;
    let r = t
        .call(
            page_form("/dashboard/invitations/accept", &[("csrf", &member.csrf), ("token", &token)])
                .cookie_only(&member),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);

    let r = t.call(Req::get(&format!("/dashboard/team?team={team}")).cookie_only(&member)).await;
    assert!(!r.text.contains("action=\"/dashboard/team/invite\""), "no invite form for members");
    let before = t.count("SELECT COUNT(*) FROM invitations").await;
    let fields =
        [("csrf", member.csrf.as_str()), ("team", team.as_str()), ("email", "friend@example.com"), ("role", "member")];
    let r = t.call(page_form("/dashboard/team/invite", &fields).cookie_only(&member)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.text.contains("This needs the admin role in this team."), "{}", r.text);
    assert_eq!(t.count("SELECT COUNT(*) FROM invitations").await, before);
    assert!(t.mail_to("friend@example.com").await.is_empty());

    // Nor can anyone act on a team they are not in.
    let stranger = t.user("stranger@example.com", PW).await;
    let r = t.call(Req::get(&format!("/dashboard/team?team={team}")).cookie_only(&stranger)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
});

on_both_databases!(the_request_log_lists_a_call_made_with_a_key, |t: TestApp| async move {
    let u = t.user("log@example.com", PW).await;
    let key = t.key_for(&u).await;
    let r = t.call(Req::get("/v1/usage").key(&key)).await;
    assert_eq!(r.status, StatusCode::OK);
    t.state.request_log.flush().await;
    let r = t.call(Req::get("/dashboard/requests").cookie_only(&u)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let row = &r.text[r.text.find("<tbody>").expect("a table of requests")..];
    assert!(
        row.contains("<td>GET</td>") && row.contains("<code>/v1/usage</code>") && row.contains("<td>200</td>"),
        "{row}"
    );
    assert!(row.contains("<td>test <code"), "the key's name: {row}");
});

on_both_databases!(signed_in_and_console_pages_need_no_inline_script_or_style, |t: TestApp| async move {
    let u = t.user("csp@example.com", PW).await;
    let image = upload(&t, &u, "cat.png", 20).await;
    let team = team_named(&t, &u, "Press").await;
    invite(&t, &u, &team, "guest@example.com", "member").await;
    t.key_for(&u).await;

    let signed_in = [
        "/dashboard".to_string(),
        format!("/dashboard/images/{}", image["id"].as_str().unwrap()),
        "/dashboard/keys".to_string(),
        format!("/dashboard/team?team={team}"),
        "/dashboard/requests".to_string(),
        "/settings".to_string(),
        "/logout".to_string(),
    ];
    for path in &signed_in {
        let r = t.call(Req::get(path).cookie_only(&u)).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text);
        assert_no_inline_code(path, &r);
    }
    // A page answering a form: a new key's secret and its command.
    let fields = [("csrf", u.csrf.as_str()), ("team", u.team.as_str()), ("name", "CI"), ("abilities", "write")];
    let r = t.call(page_form("/dashboard/keys", &fields).cookie_only(&u)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_no_inline_code("a new key", &r);

    // The operator console, with a reported image in its queue.
    let op = t.operator("csp").await;
    let r = t.call(Req::post("/v1/reports", json!({"image": image["id"], "reason": "spam"}))).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    for path in ["/ops", "/ops/takedowns", "/ops/edges", "/ops/reports"] {
        let r = t.call(Req::get(path).header("cookie", &format!("imgcdn_operator={op}"))).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text);
        assert_no_inline_code(path, &r);
    }
    assert_no_inline_code("/ops/login", &t.call(Req::get("/ops/login")).await);
});

/// The paths given a `post(` in a routes source file, `{param}`s filled in.
fn post_routes(source: &str) -> Vec<String> {
    source
        .lines()
        .filter(|l| l.contains(".route(") && l.contains("post("))
        .filter_map(|l| l.split('"').nth(1))
        .map(|p| p.split('/').map(|seg| if seg.starts_with('{') { "x" } else { seg }).collect::<Vec<_>>().join("/"))
        .collect()
}

/// Rows of the tables a signed-in form can change.
async fn row_counts(t: &TestApp) -> Vec<i64> {
    let mut c = Vec::new();
    for table in ["images", "api_keys", "teams", "memberships", "invitations", "sessions", "exports", "consents"] {
        c.push(t.count(&format!("SELECT COUNT(*) FROM {table}")).await);
    }
    c
}

on_both_databases!(every_signed_in_form_without_its_token_is_refused_and_changes_nothing, |t: TestApp| async move {
    let u = t.user("tokens@example.com", PW).await;
    upload(&t, &u, "cat.png", 7).await;
    // Every form of the dashboard and of settings, from their route tables:
    // a form added later is covered without this list changing.
    let mut paths = post_routes(include_str!("../src/web/dashboard/mod.rs"));
    paths.extend(post_routes(include_str!("../src/web/settings/mod.rs")));
    assert!(paths.len() >= 20, "found only {paths:?}");
    let before = row_counts(&t).await;
    for path in &paths {
        // Plausible fields for every form, but no token / another one.
        let fields = [("name", "Changed"), ("email", "new@example.com"), ("role", "admin"), ("password", PW)];
        for csrf in [None, Some("not-the-token")] {
            let mut all = fields.to_vec();
            if let Some(c) = csrf {
                all.push(("csrf", c));
            }
            let r = t.call(page_form(path, &all).cookie_only(&u)).await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "POST {path} with csrf {csrf:?}: {}", r.text);
            assert!(r.text.contains("Form expired"), "POST {path}: {}", r.text);
        }
    }
    assert_eq!(row_counts(&t).await, before, "no form changed anything");
    let me = t.call(Req::get("/v1/me").cookie_only(&u)).await;
    assert_eq!((me.status, me.json["name"].as_str() == Some("Changed")), (StatusCode::OK, false));
});

on_both_databases!(a_restricted_image_is_marked_in_the_grid_and_on_its_page, |t: TestApp| async move {
    let u = t.user("badge@example.com", PW).await;
    let warned = upload(&t, &u, "warned.png", 8).await;
    let plain = upload(&t, &u, "plain.png", 9).await;
    let (warned, plain) = (warned["id"].as_str().unwrap(), plain["id"].as_str().unwrap());
    let op = t.operator("ops").await;
    let r = t
        .call(
            Req::post(&format!("/v1/admin/images/{warned}/warn"), json!({}))
                .header("authorization", &format!("Bearer {op}")),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let grid = t.call(Req::get("/dashboard").cookie_only(&u)).await.text;
    // Each tile: from its checkbox to the end of its <li>.
    let tile = |id: &str| {
        let at = grid.find(&format!("value=\"{id}\"")).expect("a tile per image");
        grid[at..at + grid[at..].find("</li>").unwrap()].to_string()
    };
    assert!(tile(warned).contains(">Restricted</span>"), "{}", tile(warned));
    assert!(!tile(plain).contains("Restricted"), "{}", tile(plain));
    let page = t.call(Req::get(&format!("/dashboard/images/{warned}")).cookie_only(&u)).await.text;
    assert!(page.contains("Restricted"), "{page}");
});
