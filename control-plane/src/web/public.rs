//! The public pages: the landing page with the upload box (anyone may
//! upload; the retention window is shown before the upload, as the privacy
//! policy promises), the no-script upload and its result page
//! ([`upload`]), the privacy policy ([`privacy`]) and the form to report an
//! image ([`report`]).
//!
//! The window shown is computed by the retention policy for the caller
//! (anonymous, unverified, or their team's plan) and the surface the form
//! uploads through (`POST /v1/images` with script, `POST /upload`
//! without: both are the API's upload, surface `api`), so what the page
//! says is what the upload gets.

pub mod privacy;
pub mod report;
pub mod upload;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::handler::Handler;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use maud::{html, Markup};
use tower::{Layer, ServiceExt};

use super::format::bytes;
use super::forms::upload_token;
use super::layout::{self, Chrome};
use super::session::Visitor;
use crate::accounts::sessions::Session;
use crate::dates::days_text;
use crate::dates::DAY;
use crate::error::{ApiError, ApiResult};
use crate::images::upload::Uploader;
use crate::retention::policy::{self, Class, Subject, Surface, Uploader as Kind};
use crate::AppState;

pub use privacy::privacy_page;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(landing))
        .route("/upload", get(|| async { super::session::see_other("/") }).post(upload_with_limit))
        .route("/report", get(report::form).post(report::submit))
}

/// `POST /upload` under the body limit of an upload, not the router's
/// JSON one: the multipart form around the largest file any plan allows
/// (each plan's own limit is enforced while the file streams), as the API's
/// `POST /v1/images` has it.
async fn upload_with_limit(State(state): State<AppState>, req: Request) -> Response {
    let limit = state.cfg.plans.largest_file() as usize + 1024 * 1024;
    let handler = upload::upload.with_state(state);
    match DefaultBodyLimit::max(limit).layer(handler).oneshot(req).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// `GET /`: what the service is, and the upload box.
pub async fn landing(State(state): State<AppState>, Visitor(session): Visitor) -> Response {
    landing_response(&state, session.as_ref(), StatusCode::OK, None).await
}

/// The landing page with `status`, and an error above the upload box.
pub(crate) async fn landing_response(
    state: &AppState,
    session: Option<&Session>,
    status: StatusCode,
    error: Option<Markup>,
) -> Response {
    let chrome = Chrome::user(session);
    let uploader = match uploader_of(state, session).await {
        Ok(u) => u,
        Err(e) => return layout::error(e, chrome),
    };
    let window = match Windows::of(state, &uploader).await {
        Ok(w) => w,
        Err(e) => return layout::error(e, chrome),
    };
    let action = match session {
        Some(s) => format!("/upload?t={}", upload_token(s)),
        None => "/upload".to_string(),
    };
    let max_size = bytes(uploader.plan(state).max_file_bytes);
    let body = html! {
        p.lead {
            "imgcdn hosts your images and serves them from a fast CDN."
            br;
            "Upload an image and get a link to share or embed anywhere."
        }
        section aria-labelledby="upload-heading" {
            h2 #upload-heading { "Upload images" }
            @if let Some(e) = error { (e) }
            p #retention { (window.before_upload(session)) }
            form method="post" action=(action) enctype="multipart/form-data" data-upload data-paste
                aria-describedby="retention" {
                label.drop {
                    "Drop images here, paste them, or choose files"
                    span.hint.block { "JPEG, PNG, GIF, WebP, AVIF, SVG… up to " (max_size) " each." }
                    input type="file" name="file" accept="image/*" required;
                }
                label {
                    "Caption "
                    span.hint { "(optional, shown on the image's page)" }
                    input type="text" name="caption" maxlength=(crate::images::fields::MAX_CAPTION);
                }
                button type="submit" { "Upload" }
            }
            noscript { p.hint { "Without JavaScript, one image is uploaded at a time." } }
        }
        @if session.is_none() {
            section aria-labelledby="account-heading" {
                h2 #account-heading { "Keep your images" }
                p {
                    "With a free account your images are " (account_window_text(state)) ", and you get API keys for your apps. "
                    a href="/signup" { "Sign up" } " or " a href="/login" { "log in" } "."
                }
            }
        }
    };
    layout::respond(status, "Upload and share images", chrome, body)
}

/// Who uploads through the page: a signed-in visitor's personal team with
/// its plan (as the API's `Uploader` extractor decides for a session), or
/// anonymous.
pub(crate) async fn uploader_of(state: &AppState, session: Option<&Session>) -> ApiResult<Uploader> {
    let Some(s) = session else { return Ok(Uploader::Anonymous) };
    let team_id = crate::accounts::personal_team(&state.db, &s.user_id).await?;
    let plan = crate::teams::plan_of(&state.db, &team_id).await?;
    Ok(Uploader::Team { team_id, user_id: Some(s.user_id.clone()), plan })
}

/// How long an upload made now is kept, from the retention policy: a
/// clean image and one classified restricted (`None`: until deleted).
struct Windows {
    kind: Kind,
    clean: Option<i64>,
    restricted: Option<i64>,
}

impl Windows {
    async fn of(state: &AppState, uploader: &Uploader) -> ApiResult<Windows> {
        let mut conn = state.db.pool.acquire().await?;
        let (team, user) = uploader.ids();
        let kind = crate::retention::subject::uploader(&mut conn, team, user).await.map_err(ApiError::from)?;
        let terms = uploader.plan(state).terms();
        let days = |class| window_days(state, kind, terms, class);
        Ok(Windows { kind, clean: days(Class::Clean), restricted: days(Class::Restricted) })
    }

    /// The sentence shown above the upload box.
    fn before_upload(&self, session: Option<&Session>) -> Markup {
        let sensitive = match (self.clean, self.restricted) {
            (Some(c), Some(r)) if r < c => Some(r),
            (None, Some(r)) => Some(r),
            _ => None,
        };
        html! {
            @match (self.kind, self.clean) {
                (Kind::Anonymous, Some(d)) => {
                    "Images uploaded without an account are deleted after " strong { (days_text(d)) } "."
                }
                (Kind::Unverified, Some(d)) => {
                    "Until you confirm your email address, your uploads are deleted after " strong { (days_text(d)) } ". "
                    "The link is in the email we sent to " (session.map_or("", |s| s.email.as_str())) "."
                }
                (_, Some(d)) => { "Your uploads are deleted " strong { (days_text(d)) } " after upload." }
                (_, None) => { "Your uploads are " strong { "kept until you delete them" } "." }
            }
            @if let Some(r) = sensitive {
                " Images our checks mark as sensitive are deleted after " (days_text(r)) "."
            }
            " "
            a href="/privacy#policy-retention" { "How long we keep data" }
        }
    }
}

/// How long a verified account on the free plan keeps uploads: `kept
/// until you delete them` or `kept 90 days`.
pub(crate) fn account_window_text(state: &AppState) -> String {
    match window_days(state, Kind::Verified, state.cfg.plans.free.terms(), Class::Clean) {
        Some(d) => format!("kept {}", days_text(d)),
        None => "kept until you delete them".to_string(),
    }
}

/// The window in days the policy gives an upload made now through the API.
pub(crate) fn window_days(state: &AppState, kind: Kind, plan: policy::PlanTerms, class: Class) -> Option<i64> {
    let subject = Subject { uploader: kind, plan, surface: Surface::Api, class, created_at: 0, requested: None };
    policy::expires_at(&state.cfg.retention, &subject).map(|t| t / DAY)
}
