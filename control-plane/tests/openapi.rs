//! `/openapi.json` describes the router, checked both ways: every
//! documented operation is routed, and every route is documented.

mod common;

use axum::http::StatusCode;
use common::*;
use imgcdn_control_plane::http::openapi::{document, OPERATIONS};

#[tokio::test]
async fn every_documented_operation_is_routed() {
    let t = TestApp::sqlite().await;
    for op in OPERATIONS {
        let path = op
            .path
            .replace("{id}", "aaaaaaaa")
            .replace("{team_id}", "team_x")
            .replace("{user_id}", "usr_x")
            .replace("{key_id}", "key_x")
            .replace("{invitation_id}", "inv_x");
        let method = match op.method {
            "get" => "GET",
            "post" => "POST",
            "patch" => "PATCH",
            "delete" => "DELETE",
            other => panic!("method {other}"),
        };
        let mut req = Req::new(method, &path);
        if op.body.is_some_and(|(media, _)| media == "application/json") {
            req = req.json(serde_json::json!({}));
        }
        let r = t.call(req).await;
        assert_ne!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path} is documented but not routed");
        let fallback =
            r.status == StatusCode::NOT_FOUND && r.code() == "not_found" && r.json["error"]["message"] == "not found";
        assert!(!fallback, "{method} {path} fell through to the router's fallback");
        // `/{id}` (the viewer) catches any single segment: a documented page
        // that is not routed would get the viewer's not-found page.
        let viewer_404 = r.status == StatusCode::NOT_FOUND && r.text.contains("<h1>Not found</h1>");
        assert!(op.path == "/{id}" || !viewer_404, "{method} {path} is documented but only the viewer answers it");
    }
}

/// The paths given to `.route(` in a router source file (a literal path,
/// or a constant, which is returned as written).
fn routes_in(source: &str) -> Vec<String> {
    let mut routes = Vec::new();
    let mut rest = source;
    while let Some(i) = rest.find(".route(") {
        rest = &rest[i + 7..];
        let arg = rest[..rest.find(',').unwrap()].trim();
        routes.push(arg.trim_matches('"').to_string());
    }
    routes
}

#[test]
fn every_route_is_documented() {
    let public = routes_in(include_str!("../src/http/mod.rs"));
    assert!(public.len() > 30, "found only {public:?}");
    for r in &public {
        assert!(OPERATIONS.iter().any(|op| op.path == r), "route {r} is not in the OpenAPI document");
    }
    // The rest of the router is the edge and operator API, left out of the
    // public document on purpose; nothing else may hide there.
    let internal = routes_in(include_str!("../src/http/internal.rs"));
    assert!(internal.len() >= 8, "found only {internal:?}");
    for r in &internal {
        let edge_or_admin = r.starts_with("/v1/admin/") || r.starts_with("imgcdn_shared::sync::PATH_");
        assert!(edge_or_admin, "route {r} is neither public (documented) nor an edge or operator route");
        assert!(!OPERATIONS.iter().any(|op| op.path == r), "internal route {r} is in the public document");
    }
}

#[tokio::test]
async fn the_document_is_served_and_its_references_resolve() {
    let t = TestApp::sqlite().await;
    let r = t.call(Req::get("/openapi.json")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json, document());
    assert_eq!(r.json["openapi"], "3.0.3");
    let text = r.json.to_string();
    let schemas = r.json["components"]["schemas"].as_object().unwrap();
    for part in text.split("#/components/schemas/").skip(1) {
        let name: String = part.chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
        assert!(schemas.contains_key(&name), "dangling $ref to {name}");
    }
    let image = &r.json["components"]["schemas"]["Image"]["required"];
    assert_eq!(image.as_array().unwrap().len(), 20, "the Image object has 20 fields, all present");
}

/// The document passes a real OpenAPI 3.0 validator (`openapi-spec-validator`,
/// installed by `scripts/setup`).
#[test]
fn the_document_is_valid_openapi() {
    let found = std::process::Command::new("python3")
        .args(["-c", "import openapi_spec_validator"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(std::env::var_os("CI").is_none(), "openapi-spec-validator is not installed: scripts/setup installs it");
        eprintln!("SKIPPED: openapi-spec-validator is not installed (scripts/setup installs it)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("openapi.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&document()).unwrap()).unwrap();
    let out = std::process::Command::new("python3").args(["-m", "openapi_spec_validator"]).arg(&path).output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{said}");
    assert!(said.contains("OK"), "{said}");
}

#[test]
fn no_schema_has_an_empty_required_list() {
    let text = document().to_string();
    assert!(!text.contains("\"required\":[]"), "OpenAPI 3.0 forbids `required: []`");
}
