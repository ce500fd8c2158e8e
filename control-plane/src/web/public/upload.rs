//! `POST /upload`: the upload box without script. The same upload as
//! `POST /v1/images` (its handler is called), then a page with the link,
//! the image's page and when the image will be deleted.
//!
//! A signed-in visitor's form carries the session's CSRF token in its
//! action (`/upload?csrf=…`: a multipart body is read by the upload
//! itself, after the check), and uploads to their personal team.

use axum::extract::{Request, State};
use axum::response::Response;
use maud::html;
use serde_json::Value;

use super::{landing_response, long_date, message_of, uploader_of, with_retry_after};
use crate::auth::ClientMeta;
use crate::error::ApiError;
use crate::images::queries;
use crate::images::row::{ImageRow, ImageStatus};
use crate::images::upload::Uploader;
use crate::web::layout::{self, Chrome};
use crate::web::session::{self, Visitor};
use crate::AppState;

/// The `csrf` parameter of the form's action, if sent.
fn csrf_param(req: &Request) -> Option<String> {
    let query = req.uri().query()?;
    url::form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "csrf").map(|(_, v)| v.into_owned())
}

/// `POST /upload` (multipart: `file`, `caption`): the image's link and
/// deletion date, or the upload box again with what went wrong.
pub async fn upload(
    State(state): State<AppState>,
    Visitor(session): Visitor,
    client: ClientMeta,
    req: Request,
) -> Response {
    let sent = csrf_param(&req);
    match (&session, &sent) {
        (Some(s), sent) => {
            if let Err(refused) = session::check_csrf(s, sent.as_deref().unwrap_or("")) {
                return refused;
            }
        }
        // The page was a signed-in one, but the session has ended since:
        // not an anonymous upload the visitor did not mean.
        (None, Some(_)) => return session::to_login(Some("/")),
        (None, None) => {}
    }
    let uploader = match uploader_of(&state, session.as_ref()).await {
        Ok(u) => u,
        Err(e) => return layout::error(e, Chrome::user(session.as_ref())),
    };
    let anonymous = uploader.is_anonymous();
    let created = crate::api::images::create::create(State(state.clone()), uploader.clone(), client, req).await;
    let row = match created {
        Ok(response) => created_row(&state, response).await,
        Err(e) => Err(e),
    };
    match row {
        Ok(row) => result_page(&state, session.as_ref(), &row, anonymous),
        Err(e) => refused(&state, session.as_ref(), &uploader, e).await,
    }
}

/// The row of the image the API's answer describes.
async fn created_row(state: &AppState, response: Response) -> Result<ImageRow, ApiError> {
    let bytes = axum::body::to_bytes(response.into_body(), 1024 * 1024)
        .await
        .map_err(|e| ApiError::Internal(format!("reading the upload's answer: {e}")))?;
    let body: Value = serde_json::from_slice(&bytes).map_err(|e| ApiError::Internal(format!("upload answer: {e}")))?;
    let id = body["id"].as_str().ok_or_else(|| ApiError::Internal("upload answer without id".into()))?;
    queries::fetch(&state.db, id).await?.ok_or(ApiError::NotFound)
}

/// The upload box again, with the domain's message and its status.
async fn refused(
    state: &AppState,
    session: Option<&crate::accounts::sessions::Session>,
    uploader: &Uploader,
    e: ApiError,
) -> Response {
    if matches!(e, ApiError::Unauthorized(_)) {
        return session::to_login(Some("/"));
    }
    let status = e.status();
    let message = message_of(&e);
    let error = html! {
        div.error role="alert" {
            p { "The image was not uploaded. " (message) }
            @if matches!(e, ApiError::FileTooLarge { .. }) && uploader.is_anonymous() {
                p { a href="/signup" { "Sign up" } " for larger uploads." }
            }
        }
    };
    with_retry_after(landing_response(state, session, status, Some(error)).await, &e)
}

/// `Uploaded`: the CDN link to copy, the image's page, and when it goes.
fn result_page(
    state: &AppState,
    session: Option<&crate::accounts::sessions::Session>,
    row: &ImageRow,
    anonymous: bool,
) -> Response {
    let url = row.url(&state.cfg);
    let page = row.page_url(&state.cfg);
    let body = html! {
        @match row.status {
            ImageStatus::Ready => p { "Your image is online." },
            _ => p { "Your image is being checked. It appears at this link once the check is done." },
        }
        label for="link" { "Image link" }
        div.copy-row {
            input #link type="text" readonly value=(url);
            button.small type="button" data-copy="#link" hidden { "Copy" }
        }
        p { a href=(page) { "Open the image's page" } }
        p.notice #retention {
            @match row.expires_at {
                Some(at) => {
                    "This image will be deleted on "
                    time datetime=(crate::dates::iso(at)) { (long_date(at)) } "."
                }
                None => "This image is kept until you delete it.",
            }
        }
        @if anonymous {
            p { a href="/signup" { "Sign up" } " to keep and manage your images." }
        } @else {
            p { a href="/dashboard" { "Manage your images" } }
        }
        p { a.button.secondary href="/" { "Upload another" } }
    };
    layout::ok("Uploaded", Chrome::user(session), body)
}
