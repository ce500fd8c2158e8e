//! `GET /{id}`: the viewer page of an image, with Open Graph tags for
//! link previews. Private images are 404 for anyone but members of the
//! owning team; restricted (warned) ones sit behind an interstitial and get
//! no preview; taken-down ones are 451. Pages of private or restricted
//! images are not indexed.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use imgcdn_shared::ImageId;
use maud::{html, Markup};

use super::forms::copy_row;
use super::layout::{self, Chrome};
use super::session::Visitor;
use crate::accounts::sessions::Session;
use crate::images::queries;
use crate::images::row::{ImageRow, ImageStatus};
use crate::teams::{require_role, Role};
use crate::AppState;

/// Characters of a caption used as the page's title.
const TITLE_CHARS: usize = 80;

fn not_found(session: Option<&Session>) -> Response {
    layout::respond(
        StatusCode::NOT_FOUND,
        "Not found",
        Chrome::user(session),
        html! {
            p { "There is no image here. It may have been deleted, or its link is not complete." }
            p { a href="/" { "Upload an image" } }
        },
    )
}

/// `GET /{id}`: the viewer page. Private images are 404 for anyone but
/// members of the owning team.
pub async fn viewer(State(state): State<AppState>, Path(id): Path<String>, Visitor(session): Visitor) -> Response {
    if id.parse::<ImageId>().is_err() {
        return not_found(session.as_ref());
    }
    let row = match queries::fetch(&state.db, &id).await {
        Ok(Some(r))
            if r.deleted_at.is_none()
                && r.status == ImageStatus::Ready
                && r.expires_at.is_none_or(|e| e > state.clock.unix_now()) =>
        {
            r
        }
        Ok(_) => return not_found(session.as_ref()),
        Err(e) => return layout::error(e.into(), Chrome::user(session.as_ref())),
    };
    if !row.public {
        let member = match (&session, &row.team_id) {
            (Some(s), Some(team)) => require_role(&state, team, &s.user_id, Role::Member).await.is_ok(),
            _ => false,
        };
        if !member {
            return not_found(session.as_ref());
        }
    }
    if row.takedown_reason.is_some() {
        // The reason is not published.
        return layout::respond(
            StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS,
            "This image is unavailable for legal reasons",
            Chrome::user(session.as_ref()),
            html! {
                p { "We removed this image from public serving. " a href="/legal/takedowns" { "Why?" } }
            },
        );
    }
    let caption = row.caption.as_deref().map(str::trim).filter(|c| !c.is_empty());
    // The caption is the page's title; a long one is shortened there and
    // shown whole under the image.
    let (title, figcaption) = match caption {
        Some(c) if c.chars().count() > TITLE_CHARS => {
            (format!("{}…", c.chars().take(TITLE_CHARS).collect::<String>()), Some(c))
        }
        Some(c) => (c.to_string(), None),
        None => ("Image".to_string(), None),
    };
    let chrome = Chrome { head: Some(head(&state, &row, &title)), ..Chrome::user(session.as_ref()) };
    let url = row.url(&state.cfg);
    let figure = html! {
        figure.viewer {
            img src=(url) width=(row.width) height=(row.height) alt=(caption.unwrap_or("Image"));
            @if let Some(c) = figcaption { figcaption { (c) } }
        }
    };
    let body = html! {
        @if row.warned {
            // Restricted: an interstitial the visitor clicks through (no script needed).
            details.content-warning {
                summary { "This image may be sensitive. Show it" }
                (figure)
            }
        } @else {
            (figure)
        }
        (copy_row("link", "Image link", &url))
        p.row {
            span.muted { (row.width) " × " (row.height) " · " (row.format().extension().to_ascii_uppercase()) }
            a href=(format!("/report?image={}", row.id)) { "Report this image" }
        }
    };
    layout::ok(&title, chrome, body)
}

/// Open Graph tags (the image itself only when it is not restricted:
/// link unfurls would show it without the interstitial) and robots.
fn head(state: &AppState, row: &ImageRow, title: &str) -> Markup {
    let url = row.url(&state.cfg);
    html! {
        @if !row.public || row.warned { meta name="robots" content="noindex"; }
        meta property="og:type" content="website";
        meta property="og:title" content=(title);
        meta property="og:url" content=(row.page_url(&state.cfg));
        @if !row.warned {
            meta property="og:image" content=(url);
            meta property="og:image:width" content=(row.width);
            meta property="og:image:height" content=(row.height);
            meta name="twitter:card" content="summary_large_image";
        }
    }
}
