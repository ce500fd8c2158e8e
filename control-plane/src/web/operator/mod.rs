//! The operator console (`/ops…`): the review queue, takedowns and how they
//! reached the edges, the edges' lag, open reports and DMCA notices.
//!
//! Operators sign in with their own token (`img_op_…`, see
//! [`crate::operators`]), never a user's session: `POST /ops/login` keeps it
//! in the `imgcdn_operator` cookie (`HttpOnly; SameSite=Strict; Path=/ops`),
//! which only the console's pages receive. [`OperatorPage`] reads it on
//! every page. Console forms carry a CSRF field derived from the token
//! (SHA-256 of a fixed label and the token), so a page of ours that shows it
//! proves the form came from the console; the sign-out form needs none
//! (SameSite=Strict and [`crate::web::page_guard`]'s origin check cover it).
//!
//! Pages call the operator API's handlers ([`crate::api::admin`]) with the
//! operator as the caller, so the console and the API share their rules.
//!
//! - [`review`]: `GET /ops`, `POST /ops/review/{item_id}/{decision}`;
//! - [`edges`]: `GET /ops/takedowns`, `GET /ops/edges`;
//! - [`reports`]: `GET /ops/reports`, `POST /ops/dmca/{id}/{action}`.

mod edges;
mod reports;
mod review;

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup};
use serde::Deserialize;

use super::layout::{self, Chrome};
use super::session::see_other;
use super::PageForm;
use crate::auth::{cookie, ClientMeta};
use crate::error::ApiError;
use crate::operators::{self, Operator, OPERATOR_TOKEN_PREFIX};
use crate::secrets::{hash_token, same};
use crate::AppState;

/// The cookie that carries an operator's token (console pages only).
pub const OPERATOR_COOKIE: &str = "imgcdn_operator";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ops/login", get(login_page).post(login))
        .route("/ops/logout", post(logout))
        .route("/ops", get(review::queue))
        .route("/ops/review/{item_id}/{decision}", post(review::decide))
        .route("/ops/takedowns", get(edges::takedowns))
        .route("/ops/edges", get(edges::edges))
        .route("/ops/reports", get(reports::open))
        .route("/ops/dmca/{id}/{action}", post(reports::dmca_action))
}

/// The console's frame: its own navigation, no user.
fn chrome<'a>() -> Chrome<'a> {
    Chrome { operator: true, ..Default::default() }
}

/// An error of the operator API as a console page; an ended operator
/// token goes back to the console's sign-in (never the users' one).
fn failed(e: ApiError) -> Response {
    if e.status() == StatusCode::UNAUTHORIZED {
        return see_other("/ops/login");
    }
    layout::error(e, chrome())
}

/// The CSRF value of the console's forms for `token`.
fn csrf_for(token: &str) -> String {
    hash_token(&format!("imgcdn-ops-csrf:{token}"))
}

/// A signed-in operator, from the `imgcdn_operator` cookie; anyone else is
/// sent to `/ops/login` (an invalid cookie is cleared on the way).
pub struct OperatorPage {
    pub op: Operator,
    csrf: String,
}

impl OperatorPage {
    /// The hidden field every console form carries.
    fn csrf_field(&self) -> Markup {
        super::forms::csrf_input(&self.csrf)
    }

    /// A console form's `csrf` field must match the operator's token. (The
    /// same shape as [`crate::web::session::check_csrf`]: the refusal is the
    /// page to answer with, so the error is a whole `Response`.)
    #[allow(clippy::result_large_err)]
    fn check_csrf(&self, sent: &str) -> Result<(), Response> {
        if same(sent, &self.csrf) {
            return Ok(());
        }
        Err(layout::respond(
            StatusCode::FORBIDDEN,
            "Form expired",
            chrome(),
            html! { p.error role="alert" { "This form was not sent from the console. Reload the page and try again." } },
        ))
    }
}

impl FromRequestParts<AppState> for OperatorPage {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let Some(token) = cookie(parts, OPERATOR_COOKIE).filter(|t| !t.is_empty()) else {
            return Err(see_other("/ops/login"));
        };
        let found = match token.starts_with(OPERATOR_TOKEN_PREFIX) {
            true => operators::authenticate(&state.db, token).await,
            false => Ok(None),
        };
        match found {
            Ok(Some(op)) => Ok(OperatorPage { op, csrf: csrf_for(token) }),
            Ok(None) => {
                let mut r = see_other("/ops/login");
                r.headers_mut().insert(header::SET_COOKIE, operator_cookie(state, None));
                Err(r)
            }
            Err(e) => Err(failed(e.into())),
        }
    }
}

/// `Set-Cookie` for the operator's token (`None`: clear it). No `Max-Age`:
/// it ends with the browser session.
fn operator_cookie(state: &AppState, token: Option<&str>) -> HeaderValue {
    let secure = if state.cfg.cookie_secure { "; Secure" } else { "" };
    let value = match token {
        Some(t) => format!("{OPERATOR_COOKIE}={t}; HttpOnly; SameSite=Strict; Path=/ops{secure}"),
        None => format!("{OPERATOR_COOKIE}=; HttpOnly; SameSite=Strict; Path=/ops; Max-Age=0{secure}"),
    };
    HeaderValue::from_str(&value).expect("checked to be cookie-safe")
}

fn login_form(error: Option<&str>) -> Markup {
    html! {
        @if let Some(e) = error {
            p.error role="alert" { (e) }
        }
        form method="post" action="/ops/login" {
            label for="token" { "Operator token" }
            input #token type="password" name="token" autocomplete="off" spellcheck="false" required
                aria-describedby="token-hint";
            p.hint #token-hint {
                "The " span.mono { "img_op_…" } " token you were given (" span.mono { "imgcdn admin operator create" } ")."
            }
            button type="submit" { "Sign in" }
        }
    }
}

/// `GET /ops/login`: the operator's sign-in form.
async fn login_page() -> Response {
    layout::ok("Operator sign-in", chrome(), login_form(None))
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    token: String,
}

/// `POST /ops/login`: a valid token is kept in the operator cookie (`303`
/// to the console); a wrong one gets `401` and the form again.
async fn login(State(state): State<AppState>, client: ClientMeta, PageForm(f): PageForm<LoginForm>) -> Response {
    // Per client address; without one (no proxy header where one is
    // configured), all such attempts share one budget.
    let limited = match &client.ip {
        Some(ip) => state.limiter.hit_client("ops-login", ip, 20, 600),
        None => state.limiter.hit("ops-login", "unknown-client", 20, 600),
    };
    if let Err(secs) = limited {
        return failed(ApiError::RateLimited { retry_after_secs: secs });
    }
    let token = f.token.trim();
    let cookie_safe = token.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let found = match token.starts_with(OPERATOR_TOKEN_PREFIX) && cookie_safe && token.len() <= 128 {
        true => operators::authenticate(&state.db, token).await,
        false => Ok(None),
    };
    match found {
        Ok(Some(_)) => {
            let mut r = see_other("/ops");
            r.headers_mut().insert(header::SET_COOKIE, operator_cookie(&state, Some(token)));
            r
        }
        Ok(None) => layout::respond(
            StatusCode::UNAUTHORIZED,
            "Operator sign-in",
            chrome(),
            login_form(Some("That is not an active operator token.")),
        ),
        Err(e) => failed(e.into()),
    }
}

/// `POST /ops/logout`: the operator cookie is cleared.
async fn logout(State(state): State<AppState>) -> Response {
    let mut r = see_other("/ops/login");
    r.headers_mut().insert(header::SET_COOKIE, operator_cookie(&state, None));
    r
}

#[cfg(test)]
mod tests {
    use super::csrf_for;

    #[test]
    fn the_console_csrf_value_is_derived_from_the_token() {
        assert_eq!(csrf_for("img_op_a"), csrf_for("img_op_a"));
        assert_ne!(csrf_for("img_op_a"), csrf_for("img_op_b"));
        assert_eq!(csrf_for("img_op_a").len(), 64);
        assert!(!csrf_for("img_op_a").contains("img_op_a"));
    }
}
