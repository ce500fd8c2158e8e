//! The user's images: `GET /dashboard` (usage against the plan, the upload
//! form, the grid with batch delete, 24 a page) and one image's page
//! (`GET /dashboard/images/{id}`: its links and sizes, details, the edit
//! form, delete). Lists, edits and deletes are the Images API's handlers
//! called with the session, on the user's personal team as the API does.

use std::collections::{HashMap, HashSet};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{fields, notice};
use crate::accounts::sessions::Session;
use crate::api::images::manage;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::images::queries;
use crate::retention::policy::Class;
use crate::web::format::{bytes, when};
use crate::web::forms::{api_body, copy_row, csrf_field, enc, upload_token, NoFields};
use crate::web::layout::{self, Chrome};
use crate::web::session::{see_other, SignedForm, SignedIn};
use crate::AppState;

/// Images on one page of the grid.
const PER_PAGE: usize = 24;

fn me(s: &Session) -> Principal {
    Principal::Session(s.clone())
}

/// `GET /dashboard[?cursor=…]`: usage, upload, the images.
pub async fn dashboard(
    State(state): State<AppState>,
    SignedIn(s): SignedIn,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    match dashboard_body(&state, &s, &q).await {
        Ok(body) => layout::ok("Your images", Chrome::signed_in(&s).notice(notice(&q).as_deref()), body),
        Err(e) => layout::error(e, Chrome::signed_in(&s)),
    }
}

async fn dashboard_body(state: &AppState, s: &Session, q: &HashMap<String, String>) -> ApiResult<Markup> {
    let Json(usage) = manage::usage(State(state.clone()), me(s)).await?;
    let mut list_q = HashMap::from([("limit".to_string(), PER_PAGE.to_string())]);
    let cursor = q.get("cursor").filter(|c| !c.is_empty());
    if let Some(c) = cursor {
        list_q.insert("cursor".into(), c.clone());
    }
    let Json(list) = manage::list(State(state.clone()), me(s), Query(list_q)).await?;
    let empty = Vec::new();
    let images = list["data"].as_array().unwrap_or(&empty);
    let restricted = restricted_among(state, images).await?;
    let tiles: Vec<Markup> =
        images.iter().map(|i| tile(i, i["id"].as_str().is_some_and(|id| restricted.contains(id)))).collect();
    let next = list["pagination"]["next_cursor"].as_str();
    Ok(html! {
        (usage_panel(&usage))
        h2 { "Upload" }
        form method="post" action=(format!("/upload?t={}", upload_token(s))) enctype="multipart/form-data"
            data-upload="reload" data-paste {
            label.drop {
                "Drop images here, paste them, or choose files"
                input type="file" name="file" accept="image/*" required;
            }
            button type="submit" { "Upload" }
            noscript { p.hint { "Without JavaScript, one image is uploaded at a time." } }
        }
        h2 #images-h { "Images" }
        @if tiles.is_empty() {
            @if cursor.is_some() {
                p { "No older images. " a href="/dashboard" { "Back to the newest" } }
            } @else {
                p.muted { "No images yet. Upload your first ones above: they are listed here, newest first." }
            }
        } @else {
            form method="post" action="/dashboard/images/delete" aria-labelledby="images-h" {
                (csrf_field(s))
                div.row {
                    label.check.select-all {
                        input type="checkbox" data-select-all=".grid input[name=ids]" hidden;
                        span { "Select all" }
                    }
                    button.danger.small type="submit" data-confirm="Delete the selected images?" { "Delete selected" }
                }
                ul.grid { @for t in &tiles { (t) } }
            }
            @if cursor.is_some() || next.is_some() {
                nav.row aria-label="More images" {
                    @if cursor.is_some() { a href="/dashboard" { "Newest images" } }
                    @if let Some(next) = next { a href=(format!("/dashboard?cursor={}", enc(next))) { "Older images" } }
                }
            }
        }
    })
}

/// Images used against the plan, storage, how long new uploads are kept.
fn usage_panel(usage: &Value) -> Markup {
    let limits = &usage["limits"];
    let used = limits["images"]["used"].as_i64().unwrap_or(0);
    let limit = limits["images"]["limit"].as_i64();
    html! {
        section.panel aria-label="Usage" {
            p { "Plan: " strong { (usage["plan"].as_str().unwrap_or("free")) } }
            @if let Some(limit) = limit {
                label for="images-used" { "Images: " (used) " of " (limit) }
                meter #images-used min="0" max=(limit) high=(limit - limit / 10) value=(used) { (used) " of " (limit) }
            } @else {
                p { "Images: " (used) " (your plan has no image limit)" }
            }
            p { "Storage used: " (bytes(limits["storage"]["used_bytes"].as_u64().unwrap_or(0))) }
            p.hint {
                @match limits["retention_days"].as_i64() {
                    Some(days) => { "New uploads are kept " (days) " days, then deleted automatically." }
                    None => { "New uploads are kept until you delete them." }
                }
            }
        }
    }
}

/// What a person calls an image: its caption, else its file name.
fn title(image: &Value) -> String {
    let caption = image["caption"].as_str().map(str::trim).filter(|c| !c.is_empty());
    caption.or_else(|| image["filename"].as_str()).unwrap_or("Untitled image").to_string()
}

/// Which of `images` are restricted (served behind a warning), as
/// retention classes them: the Image object does not say, the rows do (one
/// query for the page).
async fn restricted_among(state: &AppState, images: &[Value]) -> ApiResult<HashSet<String>> {
    let ids: Vec<&str> = images.iter().filter_map(|i| i["id"].as_str()).collect();
    let rows = queries::fetch_many(&state.db, &ids).await?;
    Ok(rows
        .into_iter()
        .filter(|row| Class::of(row.classification.as_deref(), row.warned) == Class::Restricted)
        .map(|row| row.id)
        .collect())
}

/// One image of the grid: its small size, name, badges, a checkbox.
fn tile(image: &Value, restricted: bool) -> Markup {
    let id = image["id"].as_str().unwrap_or_default();
    let small = &image["sizes"]["small"];
    let (src, w, h) = match small["url"].as_str() {
        Some(url) => (url, &small["width"], &small["height"]),
        None => (image["url"].as_str().unwrap_or_default(), &image["width"], &image["height"]),
    };
    let name = title(image);
    html! {
        li {
            a.thumb href=(format!("/dashboard/images/{id}")) {
                img src=(src) alt=(name) loading="lazy" width=(w) height=(h);
            }
            div.meta {
                label { input type="checkbox" name="ids" value=(id); span { (name) } }
                @if image["public"] == false { span.badge { "Private" } " " }
                @if restricted { span.badge.warn { "Restricted" } }
            }
        }
    }
}

/// What the edit form holds when it is shown again after a refusal.
struct Draft {
    caption: String,
    labels: String,
    public: bool,
    error: String,
}

/// `GET /dashboard/images/{id}`: the image, its links, details and forms.
pub async fn image_page(
    State(state): State<AppState>,
    SignedIn(s): SignedIn,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    show_image(&state, &s, &id, None, notice(&q).as_deref()).await
}

async fn show_image(state: &AppState, s: &Session, id: &str, draft: Option<Draft>, notice: Option<&str>) -> Response {
    let image = match manage::get(State(state.clone()), me(s), Path(id.to_string())).await {
        Ok(Json(image)) => image,
        // Processing failed, or it was removed from serving: it is still
        // the owner's to delete (the API answers its id with the reason).
        Err(e @ (ApiError::MediaFailed | ApiError::MediaBlocked(_))) => {
            let body = html! {
                p.error role="alert" { (layout::message_of(&e)) }
                p { a href="/dashboard" { "← All images" } }
                (delete_panel(s, id))
            };
            return layout::respond(e.status(), "Image unavailable", Chrome::signed_in(s), body);
        }
        Err(e) => return layout::error(e, Chrome::signed_in(s)),
    };
    let restricted = match restricted_among(state, std::slice::from_ref(&image)).await {
        Ok(set) => !set.is_empty(),
        Err(e) => return layout::error(e, Chrome::signed_in(s)),
    };
    let status = if draft.is_some() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    let body = image_body(s, &image, restricted, draft);
    layout::respond(status, &title(&image), Chrome::signed_in(s).notice(notice), body)
}

fn image_body(s: &Session, image: &Value, restricted: bool, draft: Option<Draft>) -> Markup {
    let id = image["id"].as_str().unwrap_or_default();
    let url = image["url"].as_str().unwrap_or_default();
    let sizes: Vec<(&str, &Value)> = [("small", "Small"), ("medium", "Medium"), ("large", "Large")]
        .into_iter()
        .filter_map(|(key, name)| image["sizes"].get(key).map(|v| (name, v)))
        .collect();
    // Each width once (sizes are never enlarged, so a small image's are
    // all its own width): the original first, then the smaller sizes.
    let mut widths = Vec::new();
    let mut srcset = Vec::new();
    let original = std::iter::once((url, &image["width"]));
    for (src, w) in original.chain(sizes.iter().map(|(_, v)| (v["url"].as_str().unwrap_or_default(), &v["width"]))) {
        if !widths.contains(&w) {
            widths.push(w);
            srcset.push(format!("{src} {w}w"));
        }
    }
    if srcset.len() < 2 {
        srcset.clear();
    }
    let public = image["public"] != false;
    let (caption, labels, public_checked, error) = match draft {
        Some(d) => (d.caption, d.labels, d.public, Some(d.error)),
        None => (image["caption"].as_str().unwrap_or_default().to_string(), labels_text(image), public, None),
    };
    let name = title(image);
    html! {
        p { a href="/dashboard" { "← All images" } }
        figure.viewer {
            @if srcset.is_empty() {
                img src=(url) alt=(name) width=(image["width"]) height=(image["height"]);
            } @else {
                img src=(url) srcset=(srcset.join(", ")) sizes="(max-width: 1100px) 100vw, 1100px" alt=(name)
                    width=(image["width"]) height=(image["height"]);
            }
        }
        @if !public || restricted || image["status"] != "ready" {
            p {
                @if !public { span.badge { "Private" } " " }
                @if restricted { span.badge.warn { "Restricted" } " " }
                @if image["status"] != "ready" { span.badge { "Status: " (image["status"].as_str().unwrap_or_default()) } }
            }
        }
        h2 { "Links" }
        (copy_row("url", "Image link (CDN)", url))
        (copy_row("page-url", "Viewer page", image["page_url"].as_str().unwrap_or_default()))
        p { a href=(image["page_url"].as_str().unwrap_or_default()) { "Open the viewer page" } }
        @if !sizes.is_empty() {
            h2 { "Sizes" }
            @for (label, v) in &sizes {
                (copy_row(&format!("size-{}", label.to_ascii_lowercase()),
                    &format!("{label} ({} × {})", v["width"], v["height"]), v["url"].as_str().unwrap_or_default()))
            }
        }
        h2 { "Details" }
        dl {
            dt { "Format" } dd { (image["format"].as_str().unwrap_or_default().to_ascii_uppercase()) }
            dt { "Dimensions" } dd { (image["width"]) " × " (image["height"]) " pixels" }
            dt { "Size" } dd { (bytes(image["bytes"].as_u64().unwrap_or(0))) }
            @if let Some(f) = image["filename"].as_str() { dt { "File name" } dd { (f) } }
            dt { "Uploaded" } dd { (when(image["created_at"].as_str().unwrap_or_default())) }
            dt { "Expires" }
            dd {
                @match image["expires_at"].as_str() {
                    Some(t) => { "Deleted automatically on " (when(t)) }
                    None => { "Never: kept until you delete it" }
                }
            }
        }
        h2 #edit-h { "Edit" }
        form method="post" action=(format!("/dashboard/images/{id}")) aria-labelledby="edit-h" {
            (csrf_field(s))
            @if let Some(e) = &error { p.error role="alert" { (e) } }
            label { "Caption" textarea name="caption" rows="2" maxlength="1000" { (caption) } }
            label {
                "Labels"
                span.hint { " One key=value a line, for example album=holidays" }
                textarea name="labels" rows="4" { (labels) }
            }
            fieldset {
                legend { "Who can see it" }
                label.check {
                    input type="radio" name="visibility" value="public" checked[public_checked];
                    span { "Public: anyone with the link" }
                }
                label.check {
                    input type="radio" name="visibility" value="private" checked[!public_checked];
                    span { "Private: only members of your team, signed in" }
                }
            }
            button type="submit" { "Save" }
        }
        (delete_panel(s, id))
    }
}

/// The panel that deletes image `id`.
fn delete_panel(s: &Session, id: &str) -> Markup {
    html! {
        section.panel.danger-zone aria-labelledby="delete-h" {
            h2 #delete-h { "Delete" }
            p { "Its links stop working at once, and it leaves the CDN's caches." }
            form method="post" action=(format!("/dashboard/images/{}/delete", enc(id))) {
                (csrf_field(s))
                button.danger type="submit" data-confirm="Delete this image?" { "Delete this image" }
            }
        }
    }
}

#[derive(Deserialize)]
pub struct EditForm {
    #[serde(default)]
    caption: String,
    #[serde(default)]
    labels: String,
    #[serde(default)]
    visibility: String,
}

/// An image's labels as the form's text: `key=value` a line.
fn labels_text(image: &Value) -> String {
    image["labels"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| format!("{k}={}\n", v.as_str().unwrap_or_default())).collect())
        .unwrap_or_default()
}

/// The form as the body of `PATCH /v1/images/{id}` for the image as it is
/// now (`current`): an empty caption clears it (`null`); labels and
/// visibility are sent only when the form changed them, so saving a
/// caption neither rewrites labels the text form cannot hold exactly (a
/// key with `=`, a value with spaces around it) nor logs a visibility change.
fn patch_body(f: &EditForm, current: &Value) -> ApiResult<crate::json::ApiJson<manage::PatchBody>> {
    let public = match f.visibility.as_str() {
        "public" => true,
        "private" => false,
        _ => return Err(ApiError::validation("public", "Choose who can see the image.")),
    };
    let caption = Some(f.caption.trim()).filter(|c| !c.is_empty());
    let mut body = json!({ "caption": caption });
    if current["public"].as_bool() != Some(public) {
        body["public"] = json!(public);
    }
    let same_labels = |a: &str, b: &str| a.lines().map(str::trim).eq(b.lines().map(str::trim));
    if !same_labels(&f.labels.replace("\r\n", "\n"), &labels_text(current)) {
        body["labels"] = Value::Object(parse_labels(&f.labels)?);
    }
    api_body(body)
}

/// `key=value` lines as the API's labels object.
fn parse_labels(text: &str) -> ApiResult<serde_json::Map<String, Value>> {
    let mut labels = serde_json::Map::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let Some((k, v)) = line.split_once('=') else {
            return Err(ApiError::validation(
                "labels",
                format!("Write each label as key=value on its own line (not {line:?})."),
            ));
        };
        labels.insert(k.trim().to_string(), Value::String(v.trim().to_string()));
    }
    Ok(labels)
}

/// `POST /dashboard/images/{id}` (the edit form) → `PATCH /v1/images/{id}`.
pub async fn save(
    State(state): State<AppState>,
    Path(id): Path<String>,
    SignedForm(s, f): SignedForm<EditForm>,
) -> Response {
    match edit(&state, &s, &id, &f).await {
        Ok(()) => see_other(&format!("/dashboard/images/{}?done=saved", enc(&id))),
        Err(e @ ApiError::Validation { .. }) => {
            let draft =
                Draft { caption: f.caption, labels: f.labels, public: f.visibility != "private", error: e.to_string() };
            show_image(&state, &s, &id, Some(draft), None).await
        }
        Err(e) => layout::error(e, Chrome::signed_in(&s)),
    }
}

/// The edit as the API's PATCH.
async fn edit(state: &AppState, s: &Session, id: &str, f: &EditForm) -> ApiResult<()> {
    let Json(current) = manage::get(State(state.clone()), me(s), Path(id.to_string())).await?;
    let body = patch_body(f, &current)?;
    let Json(_saved) = manage::patch(State(state.clone()), me(s), Path(id.to_string()), body).await?;
    Ok(())
}

/// `POST /dashboard/images/{id}/delete` → `DELETE /v1/images/{id}`.
pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
    SignedForm(s, _): SignedForm<NoFields>,
) -> Response {
    match manage::delete(State(state.clone()), me(&s), Path(id)).await {
        Ok(_) => see_other("/dashboard?done=deleted"),
        Err(e) => layout::error(e, Chrome::signed_in(&s)),
    }
}

/// `POST /dashboard/images/delete` (`ids` checked in the grid) →
/// `DELETE /v1/images/batch`.
pub async fn delete_selected(
    State(state): State<AppState>,
    SignedForm(s, pairs): SignedForm<Vec<(String, String)>>,
) -> Response {
    let ids = fields(&pairs, "ids");
    if ids.is_empty() {
        return see_other("/dashboard?done=none-selected");
    }
    let result = match api_body(json!({ "ids": ids })) {
        Ok(body) => manage::delete_batch(State(state.clone()), me(&s), body).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(Json(done)) => {
            let n = done["data"].as_array().map_or(0, Vec::len);
            see_other(&format!("/dashboard?deleted={n}"))
        }
        Err(e) => layout::error(e, Chrome::signed_in(&s)),
    }
}
