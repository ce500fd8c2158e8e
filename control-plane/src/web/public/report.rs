//! `GET /report`, `POST /report`: anyone can report an image (by its id,
//! its page or its link) with a reason; the report enters the review
//! queue through the same domain function as `POST /v1/reports`.

use axum::extract::{Query, State};
use axum::response::Response;
use maud::{html, Markup};
use serde::Deserialize;

use crate::auth::ClientMeta;
use crate::error::ApiError;
use crate::moderation::reports::{self, Report, MAX_TEXT, REPORT_REASONS};
use crate::web::forms::{csrf_field, optional};
use crate::web::layout::{self, message_of, with_retry_after, Chrome};
use crate::web::session::{self, Visitor};
use crate::web::PageForm;
use crate::AppState;

/// What each reason is called on the form (the API's values, in its order).
fn reason_label(reason: &str) -> &'static str {
    match reason {
        "csam" => "Sexual content involving a minor",
        "terrorism" => "Terrorist or violent extremist content",
        "violence" => "Graphic violence",
        "nudity" => "Nudity or sexual content",
        "harassment" => "Harassment or hate",
        "privacy" => "Private information or an intimate image shared without consent",
        "self_harm" => "Self-harm or suicide",
        "spam" => "Spam or scam",
        _ => "Something else",
    }
}

#[derive(Deserialize, Default)]
pub struct ReportForm {
    #[serde(default)]
    image: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    details: String,
    #[serde(default)]
    contact_email: String,
    #[serde(default)]
    csrf: String,
}

#[derive(Deserialize)]
pub struct ReportQuery {
    image: Option<String>,
}

fn report_form(session: Option<&crate::accounts::sessions::Session>, f: &ReportForm, error: Option<&str>) -> Markup {
    html! {
        p { "Tell us about an image that breaks the law or our rules. We review every report." }
        @if let Some(e) = error { p.error role="alert" { (e) } }
        form method="post" action="/report" {
            @if let Some(s) = session { (csrf_field(s)) }
            label {
                "Image "
                span.hint.block { "Its id, the link of its page, or the image link." }
                input type="text" name="image" value=(f.image) required autocomplete="off";
            }
            label {
                "Reason"
                select name="reason" required {
                    option value="" selected[f.reason.is_empty()] disabled { "Choose a reason" }
                    @for r in REPORT_REASONS {
                        option value=(r) selected[f.reason == *r] { (reason_label(r)) }
                    }
                }
            }
            label {
                "Details "
                span.hint { "(optional) What is wrong, and anything that helps us check it." }
                textarea name="details" maxlength=(MAX_TEXT) { (f.details) }
            }
            label {
                "Your email "
                span.hint { "(optional) Only to contact you about this report." }
                input type="email" name="contact_email" value=(f.contact_email) autocomplete="email";
            }
            button type="submit" { "Send report" }
        }
        p.hint {
            "A copyright complaint needs the details the law asks for: see "
            a href="/legal/takedowns" { "removed content" } "."
        }
    }
}

/// `GET /report?image=…`: the form, with the image filled in when the
/// viewer page linked here.
pub async fn form(Visitor(session): Visitor, Query(q): Query<ReportQuery>) -> Response {
    let f = ReportForm { image: q.image.unwrap_or_default(), ..ReportForm::default() };
    layout::ok("Report an image", Chrome::user(session.as_ref()), report_form(session.as_ref(), &f, None))
}

/// `POST /report`: files the report; the form again with the problem.
pub async fn submit(
    State(state): State<AppState>,
    Visitor(session): Visitor,
    client: ClientMeta,
    PageForm(f): PageForm<ReportForm>,
) -> Response {
    if let Some(s) = &session {
        if let Err(refused) = session::check_csrf(s, &f.csrf) {
            return refused;
        }
    }
    let report = Report {
        image: f.image.clone(),
        reason: f.reason.clone(),
        details: optional(&f.details),
        contact_email: optional(&f.contact_email),
    };
    let chrome = Chrome::user(session.as_ref());
    match reports::report(&state, report, &client).await {
        Ok(_) => layout::ok(
            "Thank you",
            chrome,
            html! {
                p { "We received your report and will review the image." }
                @if optional(&f.contact_email).is_some() {
                    p { "If we need to know more, we will write to the address you gave." }
                }
                p { a href="/" { "Back to the home page" } }
            },
        ),
        Err(e @ (ApiError::Validation { .. } | ApiError::RateLimited { .. })) => {
            let page = layout::respond(
                e.status(),
                "Report an image",
                chrome,
                report_form(session.as_ref(), &f, Some(&message_of(&e))),
            );
            with_retry_after(page, &e)
        }
        Err(e) => layout::error(e, chrome),
    }
}
