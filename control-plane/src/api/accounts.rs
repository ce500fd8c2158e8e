//! `/v1/auth/…` and `/v1/me`: sign-up, verification, sign-in, passwords,
//! profile and consent.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::accounts::{self, sessions, user_json, Signup};
use crate::auth::{ClientMeta, SessionAuth};
use crate::error::ApiResult;
use crate::json::ApiJson;
use crate::privacy::rectify::{self, Choice};
use crate::AppState;

#[derive(Deserialize)]
pub struct SignupBody {
    email: String,
    name: String,
    password: String,
    #[serde(default)]
    marketing_emails: bool,
    /// The person confirms being at least 16 (required).
    #[serde(default)]
    age_confirmed: bool,
}

/// `POST /v1/auth/signup` → 202, whether or not the email has an account.
pub async fn signup(
    State(state): State<AppState>,
    client: ClientMeta,
    ApiJson(body): ApiJson<SignupBody>,
) -> ApiResult<Response> {
    let form = Signup {
        email: body.email,
        name: body.name,
        password: body.password,
        marketing_emails: body.marketing_emails,
        age_confirmed: body.age_confirmed,
    };
    let email = accounts::signup(&state, form, &client).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "object": "signup", "status": "verification_sent", "email": email })))
        .into_response())
}

#[derive(Deserialize)]
pub struct TokenBody {
    token: String,
}

/// `POST /v1/auth/verify` `{token}`
pub async fn verify(State(state): State<AppState>, ApiJson(body): ApiJson<TokenBody>) -> ApiResult<Json<Value>> {
    let user_id = accounts::verify_email(&state, &body.token).await?;
    let mut conn = state.db.pool.acquire().await?;
    Ok(Json(user_json(&mut conn, &user_id).await?))
}

#[derive(Deserialize)]
pub struct LoginBody {
    email: String,
    password: String,
}

/// `POST /v1/auth/login` → the user, a CSRF token, and the session cookie.
pub async fn login(
    State(state): State<AppState>,
    client: ClientMeta,
    ApiJson(body): ApiJson<LoginBody>,
) -> ApiResult<Response> {
    let user_id = accounts::check_login(&state, &body.email, body.password, &client).await?;
    let mut tx = state.db.begin_write().await?;
    let (token, csrf) = sessions::create(&mut tx, &state, &user_id, &client).await?;
    let user = user_json(&mut tx, &user_id).await?;
    tx.commit().await?;
    Ok((
        [(header::SET_COOKIE, sessions::set_cookie(&state, &token))],
        Json(json!({ "object": "session", "user": user, "csrf_token": csrf })),
    )
        .into_response())
}

/// `GET /v1/me`
pub async fn me(State(state): State<AppState>, auth: SessionAuth) -> ApiResult<Json<Value>> {
    let mut conn = state.db.pool.acquire().await?;
    let mut user = user_json(&mut conn, &auth.user_id).await?;
    user["csrf_token"] = json!(auth.csrf_token);
    Ok(Json(user))
}

#[derive(Deserialize)]
pub struct SettingsBody {
    name: Option<String>,
    marketing_emails: Option<bool>,
    /// Restrict processing (GDPR Art. 18): no optional processing while set.
    restrict_processing: Option<bool>,
    /// Object to processing based on legitimate interests (Art. 21).
    object_to_processing: Option<bool>,
}

/// `PATCH /v1/me`: name, marketing consent (GPC honoured), restriction of
/// and objection to processing.
pub async fn update_me(
    State(state): State<AppState>,
    auth: SessionAuth,
    client: ClientMeta,
    ApiJson(body): ApiJson<SettingsBody>,
) -> ApiResult<Json<Value>> {
    for (choice, on) in [(Choice::Restrict, body.restrict_processing), (Choice::Object, body.object_to_processing)] {
        if let Some(on) = on {
            rectify::set_choice(&state, &auth.user_id, choice, on, &client).await?;
        }
    }
    Ok(Json(
        accounts::update_profile(&state, &auth.user_id, body.name.as_deref(), body.marketing_emails, &client).await?,
    ))
}

/// `POST /v1/auth/resend-verification`
pub async fn resend_verification(State(state): State<AppState>, auth: SessionAuth) -> ApiResult<StatusCode> {
    if auth.email_verified {
        return Ok(StatusCode::NO_CONTENT);
    }
    accounts::resend_verification(&state, &auth.user_id, &auth.email).await?;
    Ok(StatusCode::ACCEPTED)
}

#[derive(Deserialize)]
pub struct ChangePasswordBody {
    current_password: String,
    new_password: String,
}

/// `POST /v1/auth/password`: change; other sessions end; an alert is mailed.
pub async fn change_password(
    State(state): State<AppState>,
    auth: SessionAuth,
    ApiJson(body): ApiJson<ChangePasswordBody>,
) -> ApiResult<StatusCode> {
    accounts::change_password(&state, &auth, body.current_password, body.new_password).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub struct ResetRequestBody {
    email: String,
}

/// `POST /v1/auth/password-reset` → 202 whether or not the account exists.
pub async fn request_reset(
    State(state): State<AppState>,
    client: ClientMeta,
    ApiJson(body): ApiJson<ResetRequestBody>,
) -> ApiResult<StatusCode> {
    accounts::request_reset(&state, &body.email, &client).await?;
    Ok(StatusCode::ACCEPTED)
}

#[derive(Deserialize)]
pub struct ResetConfirmBody {
    token: String,
    password: String,
}

/// `POST /v1/auth/password-reset/confirm`: new password; every session ends.
pub async fn confirm_reset(
    State(state): State<AppState>,
    client: ClientMeta,
    ApiJson(body): ApiJson<ResetConfirmBody>,
) -> ApiResult<StatusCode> {
    accounts::confirm_reset(&state, &body.token, body.password, &client).await?;
    Ok(StatusCode::NO_CONTENT)
}
