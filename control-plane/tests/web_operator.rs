//! The operator console (`/ops…`) as a browser uses it: the operator
//! cookie, the console's CSRF field, the review queue's decision forms and
//! the takedown and edge pages, on SQLite and PostgreSQL.

mod common;

use axum::http::StatusCode;
use common::*;
use imgcdn_shared::testing::png;
use serde_json::json;

const PW: &str = "tulip-Orbit-94";

/// A console request with the operator cookie.
fn ops(method: &'static str, path: &str, op: &str) -> Req {
    as_operator(Req::new(method, path), op)
}

fn as_operator(req: Req, op: &str) -> Req {
    req.header("cookie", &format!("imgcdn_operator={op}"))
}

/// The console's CSRF field, as a page shows it.
fn csrf_in(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    page[at..].split('"').next().unwrap().to_string()
}

/// An uploaded image, reported by someone: (image id, review item id).
async fn reported_image(t: &TestApp, op: &str) -> (String, String) {
    let u = t.user("up@example.com", PW).await;
    let key = t.key_for(&u).await;
    let r = t.call(Req::new("POST", "/v1/images").multipart(&[("file", Some("a.png"), &png(8, 8, 7))]).key(&key)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let id = r.json["id"].as_str().unwrap().to_string();
    let r = t
        .call(Req::post("/v1/reports", json!({"image": id, "reason": "harassment", "details": "it is about me"})))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let items = t.call(Req::get("/v1/admin/review").key(op)).await.json["data"].clone();
    (id, items[0]["id"].as_str().unwrap().to_string())
}

on_both_databases!(the_console_needs_an_operator_cookie, |t: TestApp| async move {
    for path in ["/ops", "/ops/takedowns", "/ops/edges", "/ops/reports"] {
        let r = t.call(Req::get(path)).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(location(&r), "/ops/login", "{path}");
    }
    // A user's session is not an operator's.
    let u = t.user("user@example.com", PW).await;
    let r = t.call(Req::get("/ops").cookie_only(&u)).await;
    assert_eq!(location(&r), "/ops/login");
    let r = t.call(ops("GET", "/ops", "img_op_forged")).await;
    assert_eq!(location(&r), "/ops/login");
    assert!(r.set_cookie().unwrap().contains("Max-Age=0"), "an invalid cookie is cleared");
    let page = t.call(Req::get("/ops/login")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains("name=\"token\""));
});

on_both_databases!(an_operator_signs_in_with_the_token_into_a_strict_cookie, |t: TestApp| async move {
    let op = t.operator("olga").await;
    let u = t.user("user@example.com", PW).await;
    let key = t.key_for(&u).await;
    for wrong in ["img_op_wrong".to_string(), key, String::new()] {
        let r = t.call(page_form("/ops/login", &[("token", &wrong)])).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{wrong}");
        assert!(r.set_cookie().is_none());
    }
    let r = t.call(page_form("/ops/login", &[("token", &op)])).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    assert_eq!(location(&r), "/ops");
    let cookie = r.set_cookie().unwrap();
    assert!(cookie.starts_with(&format!("imgcdn_operator={op};")), "{cookie}");
    for part in ["HttpOnly", "SameSite=Strict", "Path=/ops", "Secure"] {
        assert!(cookie.split("; ").any(|p| p == part), "{part} missing: {cookie}");
    }
    assert!(r.session_cookie().is_none());
    let page = t.call(ops("GET", "/ops", &op)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains("olga"));
    assert!(page.text.contains("action=\"/ops/logout\""));
    let r = t.call(ops("POST", "/ops/logout", &op)).await;
    assert_eq!(location(&r), "/ops/login");
    assert!(r.set_cookie().unwrap().starts_with("imgcdn_operator=;"));
});

on_both_databases!(a_reported_image_is_decided_from_the_review_page, |t: TestApp| async move {
    let op = t.operator("rhea").await;
    let (image, item) = reported_image(&t, &op).await;
    let page = t.call(ops("GET", "/ops", &op)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains(&item) && page.text.contains(&image) && page.text.contains("harassment"));
    assert!(page.text.contains(&format!("/ops/review/{item}/takedown")));
    let csrf = csrf_in(&page.text);

    // Without the console's CSRF field: refused, nothing decided.
    let decide = format!("/ops/review/{item}/takedown");
    for fields in [vec![("reason", "terms_violation")], vec![("reason", "terms_violation"), ("csrf", "forged")]] {
        let r = t.call(as_operator(page_form(&decide, &fields), &op)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{fields:?}");
    }
    let state = t.call(Req::get(&format!("/v1/admin/review/{item}")).key(&op)).await;
    assert!(state.json["resolved_at"].is_null(), "{}", state.text);

    let r = t
        .call(as_operator(
            page_form(&decide, &[("csrf", &csrf), ("reason", "terms_violation"), ("note", "checked")]),
            &op,
        ))
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    assert_eq!(location(&r), "/ops?done=takedown");
    let state = t.call(Req::get(&format!("/v1/admin/review/{item}")).key(&op)).await;
    assert_eq!(state.json["resolution"], "takedown", "{}", state.text);
    let image_state = t.call(Req::get(&format!("/v1/admin/images/{image}")).key(&op)).await;
    assert_eq!(image_state.json["state"]["reason"], "terms_violation", "{}", image_state.text);
    assert_eq!(t.call(Req::get(&format!("/{image}"))).await.status, StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS);
    let page = t.call(ops("GET", "/ops?done=takedown", &op)).await;
    assert!(page.text.contains("Taken down.") && page.text.contains("Nothing waits for a decision."));
});

on_both_databases!(reports_takedowns_and_edges_pages_show_their_data, |t: TestApp| async move {
    let op = t.operator("ed").await;
    let (image, _item) = reported_image(&t, &op).await;
    let reports = t.call(ops("GET", "/ops/reports", &op)).await;
    assert_eq!(reports.status, StatusCode::OK);
    assert!(reports.text.contains("it is about me") && reports.text.contains(&image), "{}", reports.text);

    let r =
        t.call(Req::post(&format!("/v1/admin/images/{image}/takedown"), json!({"reason": "copyright"})).key(&op)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let seq = r.json["change"]["seq"].as_i64().unwrap();
    // edge-a applies it; edge-b never calls in.
    let r = t.call(Req::post("/v1/edge/ack", json!({"seq": seq})).key(EDGE_A_TOKEN)).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);

    let page = t.call(ops("GET", "/ops/takedowns", &op)).await;
    assert_eq!(page.status, StatusCode::OK);
    let row = &page.text[page.text.find(&image).expect("the image is listed")..];
    assert!(row.contains("copyright") && row.contains(&format!("#{seq}")), "{row}");
    assert!(row.contains("<strong>edge-a</strong>: applied"), "{row}");
    assert!(row.contains("<strong>edge-b</strong>: <span class=\"badge warn\">never called in"), "{row}");

    let page = t.call(ops("GET", "/ops/edges", &op)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains(&format!("The change log is at #{seq}.")), "{}", page.text);
    let a = &page.text[page.text.find("<td>edge-a</td>").unwrap()..];
    assert!(a[..a.find("</tr>").unwrap()].contains("up to date"));
    let b = &page.text[page.text.find("<td>edge-b</td>").unwrap()..];
    assert!(b[..b.find("</tr>").unwrap()].contains("never"));
});
