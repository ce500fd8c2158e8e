//! Account pages: sign up, log in, log out, and asking for a password
//! reset link. Each calls the domain function the API's route calls
//! (`accounts::signup`, `accounts::check_login` with `sessions::create`,
//! `sessions::end`, `accounts::request_reset`), so the rules, the rate
//! limits and the answers that reveal nothing are the same.
//!
//! A form refused for a field re-renders with the message and what was
//! typed, except passwords, which are never sent back.

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use maud::{html, Markup};
use serde::Deserialize;

use super::forms::{csrf_field, CsrfForm};
use super::layout::{self, message_of, with_retry_after, Chrome};
use super::public::{account_window_text, window_days};
use super::session::{self, Visitor};
use super::PageForm;
use crate::accounts::{self, sessions, Signup};
use crate::auth::ClientMeta;
use crate::dates::days_text;
use crate::error::ApiError;
use crate::retention::policy::{Class, Uploader as Kind};
use crate::AppState;

/// Where a sign-in goes when the form does not say.
const AFTER_LOGIN: &str = "/dashboard";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/signup", get(signup_page).post(signup_form))
        .route("/login", get(login_page).post(login_form))
        .route("/logout", get(logout_page).post(logout_form))
        .route("/forgot-password", get(forgot_page).post(forgot_form))
}

/// A refused form: the message, and the field it is about.
struct Refusal {
    field: Option<String>,
    message: String,
}

impl Refusal {
    fn of(e: &ApiError) -> Refusal {
        let field = match e {
            ApiError::Validation { details, .. } => details.as_object().and_then(|d| d.keys().next().cloned()),
            _ => None,
        };
        Refusal { field, message: message_of(e) }
    }

    fn on(field: &str, message: &str) -> Refusal {
        Refusal { field: Some(field.to_string()), message: message.to_string() }
    }

    /// `aria-invalid` for `field`'s input.
    fn invalid(refusal: Option<&Refusal>, field: &str) -> Option<&'static str> {
        refusal.and_then(|r| r.field.as_deref()).filter(|f| *f == field).map(|_| "true")
    }
}

/// The refusal as the alert at the top of a form.
fn alert(refusal: Option<&Refusal>) -> Markup {
    html! {
        @if let Some(r) = refusal { p.error #form-error role="alert" { (r.message) } }
    }
}

/// The form page again with the refusal and `e`'s status; errors that are
/// not about the form (ours, an ended session) get the error page instead.
fn refused(
    e: ApiError,
    title: &str,
    session: Option<&sessions::Session>,
    form: impl FnOnce(&Refusal) -> Markup,
) -> Response {
    let about_the_form = matches!(
        e,
        ApiError::Validation { .. }
            | ApiError::Unauthorized(_)
            | ApiError::Forbidden(_)
            | ApiError::RateLimited { .. }
            | ApiError::Overloaded { .. }
    );
    if !about_the_form {
        return layout::error(e, Chrome::user(session));
    }
    let refusal = Refusal::of(&e);
    let page = layout::respond(e.status(), title, Chrome::user(session), form(&refusal));
    with_retry_after(page, &e)
}

/// The password rules, as `accounts::password::Passwords::check_policy`
/// applies them (the length from config).
pub(crate) fn password_rules(state: &AppState) -> String {
    format!(
        "At least {} characters, with at least 4 different ones; not your email address and not a common password.",
        state.cfg.passwords.min_length
    )
}

/// A checkbox field sent as `value="yes"` when ticked.
fn ticked(v: &Option<String>) -> bool {
    v.as_deref().is_some_and(|v| !v.is_empty())
}

// ---- Sign up ----------------------------------------------------------

#[derive(Deserialize, Default)]
pub struct SignupForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    password_confirm: String,
    marketing_emails: Option<String>,
    age_confirmed: Option<String>,
}

fn signup_markup(state: &AppState, f: &SignupForm, gpc: bool, refusal: Option<&Refusal>) -> Markup {
    let invalid = |field| Refusal::invalid(refusal, field);
    let min = state.cfg.passwords.min_length;
    html! {
        p { "Free. Your images are " (account_window_text(state)) ", and you get API keys for your apps." }
        (alert(refusal))
        form method="post" action="/signup" {
            label {
                "Name"
                input type="text" name="name" value=(f.name) autocomplete="name" required
                    maxlength=(accounts::MAX_NAME) aria-invalid=[invalid("name")];
            }
            label {
                "Email address"
                input type="email" name="email" value=(f.email) autocomplete="email" required
                    aria-invalid=[invalid("email")];
            }
            label {
                "Password"
                span.hint.block #password-rules { (password_rules(state)) }
                input type="password" name="password" autocomplete="new-password" required minlength=(min)
                    aria-describedby="password-rules" aria-invalid=[invalid("password")];
            }
            label {
                "Password again"
                input type="password" name="password_confirm" autocomplete="new-password" required minlength=(min)
                    aria-invalid=[invalid("password_confirm")];
            }
            label.check {
                input type="checkbox" name="marketing_emails" value="yes" checked[ticked(&f.marketing_emails)];
                span {
                    "Send me occasional product news by email (optional; you can stop it at any time)."
                    @if gpc {
                        br;
                        span.hint { "Your browser sends Global Privacy Control, so we will not record this consent." }
                    }
                }
            }
            label.check {
                input type="checkbox" name="age_confirmed" value="yes" required checked[ticked(&f.age_confirmed)]
                    aria-invalid=[invalid("age_confirmed")];
                span { "I am at least 16 years old." }
            }
            button type="submit" { "Create account" }
        }
        p.hint { "How we use your data: " a href="/privacy" { "privacy policy" } "." }
        p { "Already have an account? " a href="/login" { "Log in" } "." }
    }
}

/// `GET /signup`
pub async fn signup_page(State(state): State<AppState>, Visitor(session): Visitor, client: ClientMeta) -> Response {
    if session.is_some() {
        return session::see_other(AFTER_LOGIN);
    }
    layout::ok("Sign up", Chrome::default(), signup_markup(&state, &SignupForm::default(), client.gpc, None))
}

/// `POST /signup`: the account and its verification mail, then "check
/// your email" (the same page whether or not the address had an account).
pub async fn signup_form(
    State(state): State<AppState>,
    client: ClientMeta,
    PageForm(f): PageForm<SignupForm>,
) -> Response {
    let gpc = client.gpc;
    let again = |f: SignupForm, refusal: &Refusal| {
        // Never send a password back.
        let f = SignupForm { password: String::new(), password_confirm: String::new(), ..f };
        signup_markup(&state, &f, gpc, Some(refusal))
    };
    if f.password != f.password_confirm {
        let refusal = Refusal::on("password_confirm", "The two passwords are not the same.");
        return layout::respond(StatusCode::UNPROCESSABLE_ENTITY, "Sign up", Chrome::default(), again(f, &refusal));
    }
    let form = Signup {
        email: f.email.clone(),
        name: f.name.clone(),
        password: f.password.clone(),
        marketing_emails: ticked(&f.marketing_emails),
        age_confirmed: ticked(&f.age_confirmed),
    };
    match accounts::signup(&state, form, &client).await {
        Ok(email) => {
            let hours = (state.cfg.verify_link_ttl_secs / 3600).max(1);
            let free = state.cfg.plans.free.terms();
            let unconfirmed = window_days(&state, Kind::Unverified, free, Class::Clean);
            layout::ok(
                "Check your email",
                Chrome::default(),
                html! {
                    p { "We sent a link to " strong { (email) } ". Open it to confirm your address." }
                    p { "The link works for " (hours) " hours. If the mail is not there, look in your spam folder." }
                    @if let Some(d) = unconfirmed {
                        p { "Until you confirm it, you can log in and upload, but your uploads are deleted after " (days_text(d)) "." }
                    }
                    p { a.button href="/login" { "Log in" } }
                },
            )
        }
        Err(e) => refused(e, "Sign up", None, |r| again(f, r)),
    }
}

// ---- Log in -----------------------------------------------------------

#[derive(Deserialize, Default)]
pub struct NextQuery {
    next: Option<String>,
}

#[derive(Deserialize, Default)]
pub struct LoginForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: String,
}

fn login_markup(email: &str, next: Option<&str>, refusal: Option<&Refusal>) -> Markup {
    html! {
        (alert(refusal))
        form method="post" action="/login" {
            @if let Some(next) = next { input type="hidden" name="next" value=(next); }
            label {
                "Email address"
                input type="email" name="email" value=(email) autocomplete="username" required
                    aria-invalid=[refusal.map(|_| "true")];
            }
            label {
                "Password"
                input type="password" name="password" autocomplete="current-password" required
                    aria-invalid=[refusal.map(|_| "true")];
            }
            button type="submit" { "Log in" }
        }
        p { a href="/forgot-password" { "Forgot your password?" } }
        p { "New here? " a href="/signup" { "Sign up" } "." }
    }
}

/// `GET /login?next=/path`
pub async fn login_page(Visitor(session): Visitor, Query(q): Query<NextQuery>) -> Response {
    let next = q.next.as_deref().and_then(session::local_path);
    if session.is_some() {
        return session::see_other(next.unwrap_or(AFTER_LOGIN));
    }
    layout::ok("Log in", Chrome::default(), login_markup("", next, None))
}

/// `POST /login`: a session cookie and `303` to `next` (a path of ours;
/// `/dashboard` otherwise); a wrong email or password is one `401` answer.
/// A session this browser already had ends (its cookie is replaced).
pub async fn login_form(
    State(state): State<AppState>,
    Visitor(before): Visitor,
    client: ClientMeta,
    PageForm(f): PageForm<LoginForm>,
) -> Response {
    let next = session::local_path(&f.next);
    let again = |r: &Refusal| login_markup(&f.email, next, Some(r));
    let user_id = match accounts::check_login(&state, &f.email, f.password.clone(), &client).await {
        Ok(id) => id,
        Err(e) => return refused(e, "Log in", None, again),
    };
    let created = async {
        if let Some(old) = &before {
            sessions::end(&state.db, &old.session_id).await?;
        }
        let mut tx = state.db.begin_write().await?;
        let (token, _csrf) = sessions::create(&mut tx, &state, &user_id, &client).await?;
        tx.commit().await?;
        Ok::<_, ApiError>(token)
    }
    .await;
    match created {
        Ok(token) => {
            let mut response = session::see_other(next.unwrap_or(AFTER_LOGIN));
            response.headers_mut().insert(header::SET_COOKIE, sessions::set_cookie(&state, &token));
            response
        }
        Err(e) => layout::error(e, Chrome::default()),
    }
}

// ---- Log out ----------------------------------------------------------

/// `GET /logout`: a button (signing out is a POST with the CSRF token).
pub async fn logout_page(Visitor(session): Visitor) -> Response {
    let Some(s) = session else { return session::see_other("/") };
    let body = html! {
        form method="post" action="/logout" {
            (csrf_field(&s))
            button type="submit" { "Log out of " (s.email) }
        }
    };
    layout::ok("Log out", Chrome::signed_in(&s), body)
}

/// `POST /logout`: ends this session, clears the cookie, `303` to `/`.
pub async fn logout_form(
    State(state): State<AppState>,
    Visitor(session): Visitor,
    PageForm(f): PageForm<CsrfForm>,
) -> Response {
    let mut response = session::see_other("/");
    if let Some(s) = session {
        if let Err(refused) = session::check_csrf(&s, &f.csrf) {
            return refused;
        }
        if let Err(e) = sessions::end(&state.db, &s.session_id).await {
            return layout::error(e, Chrome::signed_in(&s));
        }
    }
    response.headers_mut().insert(header::SET_COOKIE, sessions::clear_cookie(&state));
    response
}

// ---- Forgot password --------------------------------------------------

#[derive(Deserialize, Default)]
pub struct ForgotForm {
    #[serde(default)]
    email: String,
}

fn forgot_markup(email: &str, refusal: Option<&Refusal>) -> Markup {
    html! {
        p { "Enter the email address of your account. We will send you a link to choose a new password." }
        (alert(refusal))
        form method="post" action="/forgot-password" {
            label {
                "Email address"
                input type="email" name="email" value=(email) autocomplete="email" required
                    aria-invalid=[Refusal::invalid(refusal, "email")];
            }
            button type="submit" { "Send the link" }
        }
        p { a href="/login" { "Back to log in" } }
    }
}

/// `GET /forgot-password`
pub async fn forgot_page(Visitor(session): Visitor) -> Response {
    layout::ok("Forgot your password?", Chrome::user(session.as_ref()), forgot_markup("", None))
}

/// `POST /forgot-password`: the same answer whether or not the address
/// has an account.
pub async fn forgot_form(
    State(state): State<AppState>,
    Visitor(session): Visitor,
    client: ClientMeta,
    PageForm(f): PageForm<ForgotForm>,
) -> Response {
    match accounts::request_reset(&state, &f.email, &client).await {
        Ok(()) => {
            let minutes = (state.cfg.reset_link_ttl_secs / 60).max(1);
            layout::ok(
                "Check your email",
                Chrome::user(session.as_ref()),
                html! {
                    p {
                        "If an account uses " strong { (f.email.trim()) } ", we have sent it a link to choose a new password. "
                        "The link works for " (minutes) " minutes."
                    }
                    p { "If the mail is not there, look in your spam folder, or " a href="/forgot-password" { "try again" } "." }
                },
            )
        }
        Err(e) => refused(e, "Forgot your password?", session.as_ref(), |r| forgot_markup(&f.email, Some(r))),
    }
}
