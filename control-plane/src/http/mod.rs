//! The router on top: every route of the public API and the pages
//! ([`router`]), the edge and operator routes ([`internal`]), and the layers
//! around them (request tracing without client addresses or query strings,
//! API keys checked before routing, body limit, timeout). Nothing below
//! imports this module.

pub mod admin;
pub mod internal;
pub mod listener;
pub mod openapi;

use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request};
use axum::routing::{delete, get, patch, post};
use axum::Router;
use tower_http::trace::TraceLayer;

use axum::extract::State;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::api::{accounts, images, keys, privacy, safety, sessions, teams};
use crate::error::ApiError;
use crate::web::{account_pages, viewer};
use crate::{auth, web, AppState};

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
        .route("/v1/auth/logout", post(sessions::logout))
        .route("/v1/auth/logout-all", post(sessions::logout_all))
        .route("/v1/auth/password", post(accounts::change_password))
        .route("/v1/auth/password-reset", post(accounts::request_reset))
        .route("/v1/auth/password-reset/confirm", post(accounts::confirm_reset))
        .route("/v1/auth/resend-verification", post(accounts::resend_verification))
        .route("/v1/me", get(accounts::me).patch(accounts::update_me))
        .route("/v1/me/deletion", post(privacy::request_deletion))
        .route("/v1/me/deletion/cancel", post(privacy::cancel_deletion))
        .route("/v1/me/export", post(privacy::request_export))
        .route("/v1/me/exports/{id}", get(privacy::export_status))
        .route("/v1/me/exports/{id}/download", get(privacy::download_export))
        .route("/v1/me/email", post(privacy::request_email_change))
        .route("/v1/me/email/confirm", post(privacy::confirm_email_change))
        .route("/v1/sessions", get(sessions::list))
        .route("/v1/sessions/{id}", delete(sessions::revoke))
        .route("/v1/keys", post(keys::legacy_create))
        .route("/v1/whoami", get(keys::whoami))
        .route("/v1/teams", get(teams::list).post(teams::create))
        .route("/v1/teams/{team_id}", get(teams::get))
        .route("/v1/teams/{team_id}/members", get(teams::members))
        .route("/v1/teams/{team_id}/members/{user_id}", patch(teams::change_role).delete(teams::remove_member))
        .route("/v1/teams/{team_id}/leave", post(teams::leave))
        .route("/v1/teams/{team_id}/invitations", get(teams::invitations).post(teams::invite))
        .route("/v1/teams/{team_id}/invitations/{invitation_id}", delete(teams::revoke_invitation))
        .route("/v1/teams/{team_id}/keys", get(keys::list).post(keys::create))
        .route("/v1/teams/{team_id}/requests", get(teams::requests))
        .route("/v1/teams/{team_id}/keys/{key_id}", delete(keys::revoke))
        .route("/v1/invitations/accept", post(teams::accept))
        .route(
            "/v1/images",
            get(images::manage::list).post(images::create::create).layer(DefaultBodyLimit::max(upload_limit)),
        )
        .route("/v1/upload", post(images::create::legacy_upload).layer(DefaultBodyLimit::max(upload_limit)))
        .route("/v1/import", post(images::create::legacy_import))
        .route("/v1/images/batch", delete(images::manage::delete_batch))
        .route("/v1/images/{id}", get(images::manage::get).patch(images::manage::patch).delete(images::manage::delete))
        .route("/v1/usage", get(images::manage::usage))
        .route("/v1/reports", post(safety::report))
        .route("/v1/dmca", post(safety::dmca))
        .route("/v1/dmca/counter", post(safety::counter))
        .route("/{id}", get(viewer::viewer))
        .route("/verify-email", get(account_pages::verify_page).post(account_pages::verify_form))
        .route("/reset-password", get(account_pages::reset_page).post(account_pages::reset_form))
        .route("/accept-invite", get(web::dashboard::accept_invite_page))
        .route("/legal/takedowns", get(web::takedown_policy_page))
        .route("/confirm-email", get(account_pages::confirm_email_page).post(account_pages::confirm_email_form))
        .route("/cancel-deletion", get(account_pages::cancel_deletion_page).post(account_pages::cancel_deletion_form))
        .route("/subprocessors", get(web::public::privacy::subprocessors))
        .route("/privacy", get(web::public::privacy_page))
        .merge(internal::router())
        // The website: pages, not API operations (not in the OpenAPI document).
        .merge(web::routes())
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::key_abilities))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(timeout, deadline))
        // Outside the deadline, so the 503s and 408s it answers are counted.
        .layer(axum::middleware::from_fn_with_state(state.clone(), web::page_guard))
        .layer(axum::middleware::from_fn_with_state(state.clone(), count))
        .layer(
            // Method and path only: no query string (it can hold one-time
            // tokens) and no client address.
            TraceLayer::new_for_http()
                .make_span_with(
                    |req: &Request| tracing::info_span!("request", method = %req.method(), path = %req.uri().path()),
                )
                // A 5xx is not an error of ours by itself (a 503 is a bound
                // doing its job, and a flood of them must not flood the log);
                // internal errors log their cause where they happen.
                .on_failure(()),
        )
        .with_state(state)
}

/// Nothing here: the API's JSON error under `/v1/`, a page elsewhere.
async fn not_found(uri: axum::http::Uri) -> Response {
    if uri.path().starts_with("/v1/") {
        ApiError::NotFound.into_response()
    } else {
        web::not_found_page()
    }
}

/// Count every answer in the metrics, by route template (never the path:
/// ids and tokens would make a series each) and status.
async fn count(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let started = std::time::Instant::now();
    let response = next.run(req).await;
    let m = &state.metrics;
    m.requests.with_label_values(&[&route, response.status().as_str()]).inc();
    m.request_seconds.with_label_values(&[&route]).observe(started.elapsed().as_secs_f64());
    response
}

/// Routes whose body is an upload: they stream at the client's pace (an
/// idle timeout between chunks bounds them), so no total deadline.
fn is_upload(req: &Request) -> bool {
    req.method() == axum::http::Method::POST
        && matches!(req.uri().path(), "/v1/images" | "/v1/upload" | "/v1/import" | "/upload")
}

/// Every other request must be answered within `request_timeout_secs`:
/// a 503 in the API's error shape otherwise.
async fn deadline(State(timeout): State<Duration>, req: Request, next: Next) -> Response {
    if is_upload(&req) {
        return next.run(req).await;
    }
    match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::Timeout.into_response(),
    }
}
