//! The router: every route, and the layers around them (request tracing
//! without client addresses or query strings, body limit, timeout).

pub mod extract;
pub mod json;
pub mod openapi;

use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request};
use axum::response::{Html, IntoResponse};
use axum::routing::{delete, get, patch, post};
use axum::Router;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::error::ApiError;
use crate::{accounts, images, keys, teams, AppState};

/// The whole API as a `Router`, separate from serving it (tests drive it
/// with `oneshot`, no socket).
pub fn router(state: AppState) -> Router {
    let body_limit = state.cfg.json_body_limit;
    // The multipart form around the largest file any plan allows; each
    // plan's own limit is enforced while the file streams.
    let upload_limit = state.cfg.plans.largest_file() as usize + 1024 * 1024;
    let timeout = Duration::from_secs(state.cfg.request_timeout_secs);
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/openapi.json", get(|| async { axum::Json(openapi::document()) }))
        .route("/v1/auth/signup", post(accounts::signup))
        .route("/v1/auth/verify", post(accounts::verify))
        .route("/v1/auth/login", post(accounts::login))
        .route("/v1/auth/logout", post(accounts::sessions::logout))
        .route("/v1/auth/logout-all", post(accounts::sessions::logout_all))
        .route("/v1/auth/password", post(accounts::change_password))
        .route("/v1/auth/password-reset", post(accounts::request_reset))
        .route("/v1/auth/password-reset/confirm", post(accounts::confirm_reset))
        .route("/v1/auth/resend-verification", post(accounts::resend_verification))
        .route("/v1/me", get(accounts::me).patch(accounts::update_me))
        .route("/v1/sessions", get(accounts::sessions::list))
        .route("/v1/sessions/{id}", delete(accounts::sessions::revoke))
        .route("/v1/keys", post(keys::legacy_create))
        .route("/v1/whoami", get(keys::whoami))
        .route("/v1/teams", get(teams::list).post(teams::create))
        .route("/v1/teams/{team_id}", get(teams::get))
        .route("/v1/teams/{team_id}/members", get(teams::members))
        .route("/v1/teams/{team_id}/members/{user_id}", patch(teams::change_role).delete(teams::remove_member))
        .route("/v1/teams/{team_id}/leave", post(teams::leave))
        .route("/v1/teams/{team_id}/invitations", post(teams::invite))
        .route("/v1/teams/{team_id}/keys", get(keys::list).post(keys::create))
        .route("/v1/teams/{team_id}/keys/{key_id}", delete(keys::revoke))
        .route("/v1/invitations/accept", post(teams::accept))
        .route(
            "/v1/images",
            get(images::routes::list).post(images::routes::create).layer(DefaultBodyLimit::max(upload_limit)),
        )
        .route("/v1/upload", post(images::routes::legacy_upload).layer(DefaultBodyLimit::max(upload_limit)))
        .route("/v1/import", post(images::routes::legacy_import))
        .route("/v1/images/batch", delete(images::routes::delete_batch))
        .route("/v1/images/{id}", get(images::routes::get).patch(images::routes::patch).delete(images::routes::delete))
        .route("/v1/usage", get(images::routes::usage))
        .route("/{id}", get(images::routes::viewer))
        .route("/verify-email", get(accounts::verify_page).post(accounts::verify_form))
        .route("/reset-password", get(accounts::reset_page).post(accounts::reset_form))
        .route("/accept-invite", get(accept_invite_page))
        .route("/legal/takedowns", get(takedown_policy_page))
        .merge(crate::sync::routes::router())
        .fallback(|| async { ApiError::NotFound })
        .layer(axum::middleware::from_fn_with_state(state.clone(), extract::key_abilities))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(TimeoutLayer::with_status_code(axum::http::StatusCode::SERVICE_UNAVAILABLE, timeout))
        .layer(
            // Method and path only: no query string (it can hold one-time
            // tokens) and no client address.
            TraceLayer::new_for_http().make_span_with(
                |req: &Request| tracing::info_span!("request", method = %req.method(), path = %req.uri().path()),
            ),
        )
        .with_state(state)
}

/// Escape text for HTML element content and quoted attribute values.
pub fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

/// Where a `451` from an edge links (`Link: <…>; rel="blocked-by"`).
async fn takedown_policy_page() -> impl IntoResponse {
    Html(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Removed content · imgcdn</title></head>\
         <body><main><h1>This image is not available</h1>\
         <p>An image answers <code>451 Unavailable For Legal Reasons</code> when we removed it from public serving \
         after a legal request or for breaking our Acceptable Use Policy. We do not say which, or who asked.</p>\
         <p>If you uploaded it and think this is a mistake, contact us from the account that owns it: removed \
         images are kept in our recovery store for a limited window, so a contested removal can be undone.</p>\
         </main></body></html>",
    )
}

async fn accept_invite_page() -> impl IntoResponse {
    Html(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"referrer\" content=\"no-referrer\">\
         <title>Team invitation · imgcdn</title></head><body><main><h1>Team invitation</h1>\
         <p>Sign in with the address this invitation was sent to, then accept it from your dashboard \
         (API: <code>POST /v1/invitations/accept</code> with the token from this link).</p></main></body></html>",
    )
}
