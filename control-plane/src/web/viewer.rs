//! `GET /{id}`: the viewer page of an image, with Open Graph tags for
//! link previews. Private images are 404 for anyone but members of the
//! owning team; restricted (warned) ones sit behind an interstitial and get
//! no preview; taken-down ones are 451.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use imgcdn_shared::ImageId;

use super::html_escape;
use crate::accounts::sessions::{self, SESSION_COOKIE};
use crate::auth::cookie_in;
use crate::error::ApiError;
use crate::images::queries;
use crate::images::row::ImageStatus;
use crate::teams::{require_role, Role};
use crate::AppState;

/// `GET /{id}`: the viewer page. Private images are 404 for anyone but
/// members of the owning team.
pub async fn viewer(State(state): State<AppState>, Path(id): Path<String>, headers: axum::http::HeaderMap) -> Response {
    let not_found = || {
        (StatusCode::NOT_FOUND, Html("<!doctype html><title>Not found</title><h1>Not found</h1>".to_string()))
            .into_response()
    };
    if id.parse::<ImageId>().is_err() {
        return not_found();
    }
    let row = match queries::fetch(&state.db, &id).await {
        Ok(Some(r))
            if r.deleted_at.is_none()
                && r.status == ImageStatus::Ready
                && r.expires_at.is_none_or(|e| e > state.clock.unix_now()) =>
        {
            r
        }
        Ok(_) => return not_found(),
        Err(e) => return ApiError::from(e).into_response(),
    };
    if !row.public {
        let session = match cookie_in(&headers, SESSION_COOKIE) {
            Some(t) => sessions::lookup(&state, t).await.ok().flatten(),
            None => None,
        };
        let member = match (session, &row.team_id) {
            (Some(s), Some(team)) => require_role(&state, team, &s.user_id, Role::Member).await.is_ok(),
            _ => false,
        };
        if !member {
            return not_found();
        }
    }
    if row.takedown_reason.is_some() {
        let page = "<!doctype html><title>Unavailable</title><h1>This image is unavailable for legal reasons</h1>\
                    <p><a href=\"/legal/takedowns\">Why?</a></p>";
        return (StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS, Html(page.to_string())).into_response();
    }
    let esc = html_escape;
    let caption = row.caption.clone().unwrap_or_default();
    let url = row.url(&state.cfg);
    let robots = if row.public && !row.warned { "" } else { "<meta name=\"robots\" content=\"noindex\">" };
    let figure = format!(
        "<figure><img src=\"{url}\" width=\"{w}\" height=\"{h}\" alt=\"{title}\"><figcaption>{cap}</figcaption></figure>",
        url = esc(&url),
        w = row.width,
        h = row.height,
        title = esc(if caption.is_empty() { "Image" } else { &caption }),
        cap = esc(&caption),
    );
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <meta name=\"referrer\" content=\"no-referrer\">{robots}<title>{title}</title>\
         <meta property=\"og:type\" content=\"website\"><meta property=\"og:title\" content=\"{title}\">\
         {preview}<meta property=\"og:url\" content=\"{page}\"></head>\
         <body><main>{figure}</main></body></html>",
        // Link unfurls show the image itself: not for a restricted one.
        preview = if row.warned {
            String::new()
        } else {
            format!(
                "<meta property=\"og:image\" content=\"{url}\"><meta property=\"og:image:width\" content=\"{w}\">\
                 <meta property=\"og:image:height\" content=\"{h}\"><meta name=\"twitter:card\" content=\"summary_large_image\">",
                url = esc(&url),
                w = row.width,
                h = row.height,
            )
        },
        figure = if row.warned {
            // Restricted: an interstitial the visitor clicks through (no script needed).
            format!(
                "<details class=\"content-warning\"><summary>This image may be sensitive. Show it</summary>{figure}</details>"
            )
        } else {
            figure
        },
        title = esc(if caption.is_empty() { "Image" } else { &caption }),
        page = esc(&row.page_url(&state.cfg)),
    ))
    .into_response()
}
