//! `POST /upload`: the upload box without script. The same upload as
//! `POST /v1/images` (its handler is called), then a page with the link,
//! the image's page and when the image will be deleted.
//!
//! A signed-in visitor's form carries a token in its action
//! (`/upload?t=…`: a multipart body is read by the upload itself, after
//! the check), and uploads to their personal team. That token is
//! [`crate::web::forms::upload_token`], good for this form only: the URL of the page
//! this answers with stays in history and proxy logs, so it never holds
//! the session's CSRF token.

use axum::extract::{Request, State};
use axum::response::Response;
use maud::html;

use super::{landing_response, uploader_of};
use crate::auth::ClientMeta;
use crate::error::ApiError;
use crate::images::queries;
use crate::images::row::{ImageRow, ImageStatus};
use crate::images::upload::Uploader;
use crate::web::format::long_date;
use crate::web::forms::{copy_row, json_of};
use crate::web::layout::{self, message_of, with_retry_after, Chrome};
use crate::web::session::{self, Visitor};
use crate::AppState;

/// The parameter `name` of the form's action, if sent.
fn param(req: &Request, name: &str) -> Option<String> {
    let query = req.uri().query()?;
    url::form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// `POST /upload` (multipart: `file`, `caption`): the image's link and
/// deletion date, or the upload box again with what went wrong.
pub async fn upload(
    State(state): State<AppState>,
    Visitor(session): Visitor,
    client: ClientMeta,
    req: Request,
) -> Response {
    let sent = param(&req, "t");
    match &session {
        Some(s) => {
            if let Err(refused) = session::check_upload_token(s, sent.as_deref().unwrap_or("")) {
                return refused;
            }
        }
        // The page was a signed-in one (its form has a token; a page from
        // before the token had the CSRF one), but the session has ended
        // since: not an anonymous upload the visitor did not mean.
        None if sent.is_some() || param(&req, "csrf").is_some() => return session::to_login(Some("/")),
        None => {}
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
    let body = json_of(response).await?;
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
        (copy_row("link", "Image link", &url))
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
