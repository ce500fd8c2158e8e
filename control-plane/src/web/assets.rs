//! The one stylesheet and the one script, compiled into the binary and
//! served from our own origin (no third-party request of any kind). Their
//! URLs carry a hash of the content, so they are cached for a year and a
//! new build is fetched at once.

use std::sync::OnceLock;

use axum::extract::Query;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};

use crate::AppState;

const CSS: &str = include_str!("static/app.css");
const JS: &str = include_str!("static/app.js");

fn version(text: &str) -> String {
    hex::encode(&Sha256::digest(text.as_bytes())[..6])
}

/// `/static/app.css?v=…`
pub fn css_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| format!("/static/app.css?v={}", version(CSS)))
}

/// `/static/app.js?v=…`
pub fn js_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| format!("/static/app.js?v={}", version(JS)))
}

/// The `v` of an asset's current URL.
fn current_version(url: &'static str) -> &'static str {
    url.rsplit_once("?v=").map_or("", |(_, v)| v)
}

#[derive(serde::Deserialize)]
struct Versioned {
    v: Option<String>,
}

fn asset(text: &'static str, url: &'static str, content_type: &'static str, q: Versioned) -> Response {
    // Cached for a year only under the current version's URL.
    let current = q.v.as_deref() == Some(current_version(url));
    let cache = if current { "public, max-age=31536000, immutable" } else { "no-cache" };
    (StatusCode::OK, [(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, cache)], text).into_response()
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/static/app.css",
            get(|Query(q): Query<Versioned>| async move { asset(CSS, css_url(), "text/css; charset=utf-8", q) }),
        )
        .route(
            "/static/app.js",
            get(|Query(q): Query<Versioned>| async move { asset(JS, js_url(), "text/javascript; charset=utf-8", q) }),
        )
}
