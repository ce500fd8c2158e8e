//! Teams own images and keys. Every user has a personal team; more can be
//! created and shared by invitation (single-use, expiring links bound to
//! the invited address). Roles: owner > admin > member.
//!
//! Every team-scoped route goes through [`require_role`]: a caller who is
//! not a member gets 404 (a team's existence is not disclosed), a member
//! without the role gets 403.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use sqlx::Row;

use crate::accounts::{check_name, iso, normalize_email};
use crate::email::{enqueue, templates};
use crate::error::{ApiError, ApiResult};
use crate::http::extract::SessionAuth;
use crate::http::json::ApiJson;
use crate::secrets::{hash_token, new_id, random_token};
use crate::AppState;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Member,
    Admin,
    Owner,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "member" => Some(Role::Member),
            "admin" => Some(Role::Admin),
            "owner" => Some(Role::Owner),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Admin => "admin",
            Role::Owner => "owner",
        }
    }
}

/// The caller's role in `team_id` if at least `min`: 404 if not a member,
/// 403 if the role is too low.
pub async fn require_role(state: &AppState, team_id: &str, user_id: &str, min: Role) -> ApiResult<Role> {
    let role = role_of(state, team_id, user_id).await?;
    if role < min {
        return Err(ApiError::Forbidden(format!("This needs the {} role in this team.", min.as_str())));
    }
    Ok(role)
}

/// The team object from a row with `id, name, personal, created_at`.
fn team_value(r: &sqlx::any::AnyRow, role: &str) -> Value {
    json!({
        "id": r.get::<String, _>("id"), "object": "team", "name": r.get::<String, _>("name"),
        "personal": r.get::<i64, _>("personal") != 0, "role": role, "created_at": iso(r.get("created_at")),
    })
}

async fn team_json(state: &AppState, team_id: &str, role: Role) -> ApiResult<Value> {
    let r = sqlx::query("SELECT id, name, personal, created_at FROM teams WHERE id = $1")
        .bind(team_id)
        .fetch_optional(&state.db.pool)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(team_value(&r, role.as_str()))
}

#[derive(Deserialize)]
pub struct CreateTeamBody {
    name: String,
}

/// `POST /v1/teams`
pub async fn create(
    State(state): State<AppState>,
    auth: SessionAuth,
    ApiJson(body): ApiJson<CreateTeamBody>,
) -> ApiResult<Response> {
    let name = check_name(&body.name)?;
    let now = state.clock.unix_now();
    let id = new_id("team");
    let mut tx = state.db.pool.begin().await?;
    sqlx::query("INSERT INTO teams (id, name, personal, created_at) VALUES ($1, $2, 0, $3)")
        .bind(&id)
        .bind(&name)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    sqlx::query("INSERT INTO memberships (team_id, user_id, role, created_at) VALUES ($1, $2, 'owner', $3)")
        .bind(&id)
        .bind(&auth.user_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(team_json(&state, &id, Role::Owner).await?)).into_response())
}

/// `GET /v1/teams`: the caller's teams.
pub async fn list(State(state): State<AppState>, auth: SessionAuth) -> ApiResult<Json<Value>> {
    let rows = sqlx::query(
        "SELECT t.id, t.name, t.personal, t.created_at, m.role FROM teams t JOIN memberships m ON m.team_id = t.id \
         WHERE m.user_id = $1 ORDER BY t.personal DESC, t.created_at, t.id",
    )
    .bind(&auth.user_id)
    .fetch_all(&state.db.pool)
    .await?;
    let data: Vec<Value> = rows.iter().map(|r| team_value(r, &r.get::<String, _>("role"))).collect();
    Ok(Json(json!({ "object": "list", "data": data })))
}

/// `GET /v1/teams/{id}`
pub async fn get(
    State(state): State<AppState>,
    auth: SessionAuth,
    Path(team_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let role = require_role(&state, &team_id, &auth.user_id, Role::Member).await?;
    Ok(Json(team_json(&state, &team_id, role).await?))
}

/// `GET /v1/teams/{id}/members`
pub async fn members(
    State(state): State<AppState>,
    auth: SessionAuth,
    Path(team_id): Path<String>,
) -> ApiResult<Json<Value>> {
    require_role(&state, &team_id, &auth.user_id, Role::Member).await?;
    let rows = sqlx::query(
        "SELECT u.id, u.name, u.email, m.role, m.created_at FROM memberships m JOIN users u ON u.id = m.user_id \
         WHERE m.team_id = $1 ORDER BY m.created_at, u.id",
    )
    .bind(&team_id)
    .fetch_all(&state.db.pool)
    .await?;
    let data: Vec<Value> = rows
        .iter()
        .map(|r| json!({
            "user_id": r.get::<String, _>("id"), "object": "team_member", "name": r.get::<String, _>("name"),
            "email": r.get::<String, _>("email"), "role": r.get::<String, _>("role"), "joined_at": iso(r.get("created_at")),
        }))
        .collect();
    Ok(Json(json!({ "object": "list", "data": data })))
}

async fn is_personal(state: &AppState, team_id: &str) -> ApiResult<bool> {
    Ok(sqlx::query("SELECT personal FROM teams WHERE id = $1")
        .bind(team_id)
        .fetch_one(&state.db.pool)
        .await?
        .get::<i64, _>(0)
        != 0)
}

#[derive(Deserialize)]
pub struct InviteBody {
    email: String,
    #[serde(default = "default_role")]
    role: String,
}

fn default_role() -> String {
    "member".into()
}

fn parse_role(s: &str) -> ApiResult<Role> {
    Role::parse(s).ok_or_else(|| ApiError::validation("role", "Role is one of owner, admin, member."))
}

/// `POST /v1/teams/{id}/invitations` (admin or owner; nobody grants a role above their own).
pub async fn invite(
    State(state): State<AppState>,
    auth: SessionAuth,
    Path(team_id): Path<String>,
    ApiJson(body): ApiJson<InviteBody>,
) -> ApiResult<Response> {
    let mine = require_role(&state, &team_id, &auth.user_id, Role::Admin).await?;
    let email = normalize_email(&body.email)?;
    let role = parse_role(&body.role)?;
    if role > mine {
        return Err(ApiError::Forbidden("You cannot invite someone with a higher role than yours.".into()));
    }
    if is_personal(&state, &team_id).await? {
        return Err(ApiError::validation(
            "team",
            "A personal team cannot have other members. Create a team to invite people.",
        ));
    }
    state.limiter.hit("invite", &auth.user_id, 50, 3600).map_err(|s| ApiError::RateLimited { retry_after_secs: s })?;
    let already = sqlx::query(
        "SELECT 1 FROM memberships m JOIN users u ON u.id = m.user_id WHERE m.team_id = $1 AND u.email = $2",
    )
    .bind(&team_id)
    .bind(&email)
    .fetch_optional(&state.db.pool)
    .await?;
    if already.is_some() {
        return Err(ApiError::Conflict("That person is already a member of this team.".into()));
    }
    let now = state.clock.unix_now();
    let token = random_token(32);
    let id = new_id("inv");
    let mut tx = state.db.pool.begin().await?;
    let (inviter, team): (String, String) = {
        let r = sqlx::query("SELECT u.name, t.name FROM users u, teams t WHERE u.id = $1 AND t.id = $2")
            .bind(&auth.user_id)
            .bind(&team_id)
            .fetch_one(&mut *tx)
            .await?;
        (r.get(0), r.get(1))
    };
    sqlx::query(
        "INSERT INTO invitations (id, team_id, email, role, token_hash, invited_by, expires_at, accepted_at, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, $8)",
    )
    .bind(&id)
    .bind(&team_id)
    .bind(&email)
    .bind(role.as_str())
    .bind(hash_token(&token))
    .bind(&auth.user_id)
    .bind(now + state.cfg.invite_ttl_secs)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let link = format!("{}/accept-invite?token={token}", state.cfg.public_base_url.trim_end_matches('/'));
    enqueue(&mut tx, templates::invitation(&email, &inviter, &team, role.as_str(), &link), now).await?;
    tx.commit().await?;
    state.mail_wake.notify_one();
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "id": id, "object": "invitation", "team_id": team_id, "email": email, "role": role.as_str(),
            "expires_at": iso(now + state.cfg.invite_ttl_secs),
        })),
    )
        .into_response())
}

#[derive(Deserialize)]
pub struct AcceptBody {
    token: String,
}

/// `POST /v1/invitations/accept` `{token}`: the signed-in user joins, if
/// the invitation was for their email and is unused and unexpired.
pub async fn accept(
    State(state): State<AppState>,
    auth: SessionAuth,
    ApiJson(body): ApiJson<AcceptBody>,
) -> ApiResult<Json<Value>> {
    let invalid = || ApiError::validation("token", "This invitation is invalid, expired or already used.");
    let now = state.clock.unix_now();
    let mut tx = state.db.pool.begin().await?;
    let row = sqlx::query("SELECT id, team_id, email, role FROM invitations WHERE token_hash = $1 AND accepted_at IS NULL AND expires_at > $2")
        .bind(hash_token(&body.token))
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(invalid)?;
    let email: String = row.get("email");
    if email != auth.email {
        return Err(ApiError::Forbidden("This invitation was sent to another email address.".into()));
    }
    let (inv_id, team_id, role): (String, String, String) = (row.get("id"), row.get("team_id"), row.get("role"));
    let used = sqlx::query("UPDATE invitations SET accepted_at = $1 WHERE id = $2 AND accepted_at IS NULL")
        .bind(now)
        .bind(&inv_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if used != 1 {
        return Err(invalid());
    }
    let member = sqlx::query("SELECT 1 FROM memberships WHERE team_id = $1 AND user_id = $2")
        .bind(&team_id)
        .bind(&auth.user_id)
        .fetch_optional(&mut *tx)
        .await?;
    if member.is_none() {
        sqlx::query("INSERT INTO memberships (team_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)")
            .bind(&team_id)
            .bind(&auth.user_id)
            .bind(&role)
            .bind(now)
            .execute(&mut *tx)
            .await?;
    }
    // Accepting an emailed invitation also proves the address.
    sqlx::query("UPDATE users SET email_verified_at = COALESCE(email_verified_at, $1) WHERE id = $2")
        .bind(now)
        .bind(&auth.user_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    let role = require_role(&state, &team_id, &auth.user_id, Role::Member).await?;
    Ok(Json(team_json(&state, &team_id, role).await?))
}

async fn owners(state: &AppState, team_id: &str) -> ApiResult<i64> {
    Ok(sqlx::query("SELECT COUNT(*) FROM memberships WHERE team_id = $1 AND role = 'owner'")
        .bind(team_id)
        .fetch_one(&state.db.pool)
        .await?
        .get(0))
}

/// `user_id`'s role in `team_id`, or 404 if not a member.
async fn role_of(state: &AppState, team_id: &str, user_id: &str) -> ApiResult<Role> {
    sqlx::query("SELECT role FROM memberships WHERE team_id = $1 AND user_id = $2")
        .bind(team_id)
        .bind(user_id)
        .fetch_optional(&state.db.pool)
        .await?
        .and_then(|r| Role::parse(&r.get::<String, _>(0)))
        .ok_or(ApiError::NotFound)
}

#[derive(Deserialize)]
pub struct RoleBody {
    role: String,
}

/// `PATCH /v1/teams/{id}/members/{user_id}` `{role}`.
pub async fn change_role(
    State(state): State<AppState>,
    auth: SessionAuth,
    Path((team_id, user_id)): Path<(String, String)>,
    ApiJson(body): ApiJson<RoleBody>,
) -> ApiResult<Json<Value>> {
    let mine = require_role(&state, &team_id, &auth.user_id, Role::Admin).await?;
    let new = parse_role(&body.role)?;
    let theirs = role_of(&state, &team_id, &user_id).await?;
    if theirs > mine || new > mine {
        return Err(ApiError::Forbidden("You cannot change a role above your own.".into()));
    }
    if theirs == Role::Owner && new != Role::Owner && owners(&state, &team_id).await? <= 1 {
        return Err(ApiError::Conflict("A team needs at least one owner.".into()));
    }
    sqlx::query("UPDATE memberships SET role = $1 WHERE team_id = $2 AND user_id = $3")
        .bind(new.as_str())
        .bind(&team_id)
        .bind(&user_id)
        .execute(&state.db.pool)
        .await?;
    Ok(Json(json!({ "object": "team_member", "team_id": team_id, "user_id": user_id, "role": new.as_str() })))
}

/// `DELETE /v1/teams/{id}/members/{user_id}` (admin or owner).
pub async fn remove_member(
    State(state): State<AppState>,
    auth: SessionAuth,
    Path((team_id, user_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let mine = require_role(&state, &team_id, &auth.user_id, Role::Admin).await?;
    let theirs = role_of(&state, &team_id, &user_id).await?;
    if theirs > mine {
        return Err(ApiError::Forbidden("You cannot remove someone with a higher role.".into()));
    }
    leave_team(&state, &team_id, &user_id, theirs).await
}

/// `POST /v1/teams/{id}/leave`
pub async fn leave(
    State(state): State<AppState>,
    auth: SessionAuth,
    Path(team_id): Path<String>,
) -> ApiResult<StatusCode> {
    let mine = require_role(&state, &team_id, &auth.user_id, Role::Member).await?;
    leave_team(&state, &team_id, &auth.user_id, mine).await
}

async fn leave_team(state: &AppState, team_id: &str, user_id: &str, role: Role) -> ApiResult<StatusCode> {
    if is_personal(state, team_id).await? {
        return Err(ApiError::Conflict("Nobody can leave a personal team.".into()));
    }
    if role == Role::Owner && owners(state, team_id).await? <= 1 {
        return Err(ApiError::Conflict("A team needs at least one owner: make someone else owner first.".into()));
    }
    sqlx::query("DELETE FROM memberships WHERE team_id = $1 AND user_id = $2")
        .bind(team_id)
        .bind(user_id)
        .execute(&state.db.pool)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
