//! Teams own images and keys. Every user has a personal team; more can be
//! created and shared by invitation (single-use, expiring links bound to
//! the invited address). Roles: owner > admin > member.
//!
//! Every team-scoped route goes through [`require_role`]: a caller who is
//! not a member gets 404 (a team's existence is not disclosed), a member
//! without the role gets 403.

use serde_json::{json, Value};
use sqlx::{AnyConnection, Row};

use crate::accounts::normalize_email;
use crate::dates::iso;
use crate::db::{Backend, Db};
use crate::email::{enqueue, templates};
use crate::error::{ApiError, ApiResult};
use crate::secrets::{hash_token, new_id, random_token};
use crate::AppState;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Member,
    Admin,
    Owner,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Admin => "admin",
            Role::Owner => "owner",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = ApiError;

    fn from_str(s: &str) -> ApiResult<Role> {
        match s {
            "member" => Ok(Role::Member),
            "admin" => Ok(Role::Admin),
            "owner" => Ok(Role::Owner),
            _ => Err(ApiError::validation("role", "Role is one of owner, admin, member.")),
        }
    }
}

/// The caller's role in `team_id` if at least `min`: 404 if not a member,
/// 403 if the role is too low.
pub async fn require_role(state: &AppState, team_id: &str, user_id: &str, min: Role) -> ApiResult<Role> {
    let role = role_of(&state.db, team_id, user_id).await?;
    if role < min {
        return Err(ApiError::Forbidden(format!("This needs the {} role in this team.", min.as_str())));
    }
    Ok(role)
}

/// `user_id`'s role in `team_id`, or 404 if not a member.
async fn role_of(db: &Db, team_id: &str, user_id: &str) -> ApiResult<Role> {
    sqlx::query("SELECT role FROM memberships WHERE team_id = $1 AND user_id = $2")
        .bind(team_id)
        .bind(user_id)
        .fetch_optional(&db.pool)
        .await?
        .and_then(|r| r.get::<String, _>(0).parse().ok())
        .ok_or(ApiError::NotFound)
}

/// The ids of a team's owners.
pub async fn owners_of(db: &Db, team_id: &str) -> ApiResult<Vec<String>> {
    Ok(sqlx::query("SELECT user_id FROM memberships WHERE team_id = $1 AND role = 'owner' ORDER BY user_id")
        .bind(team_id)
        .fetch_all(&db.pool)
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// The plan a team is on (`free` unless an operator changed it).
pub async fn plan_of(db: &Db, team_id: &str) -> ApiResult<String> {
    Ok(sqlx::query("SELECT plan FROM teams WHERE id = $1").bind(team_id).fetch_one(&db.pool).await?.get(0))
}

/// The team object from a row with `id, name, personal, created_at`.
fn team_value(r: &sqlx::any::AnyRow, role: &str) -> Value {
    json!({
        "id": r.get::<String, _>("id"), "object": "team", "name": r.get::<String, _>("name"),
        "personal": r.get::<i64, _>("personal") != 0, "role": role, "created_at": iso(r.get("created_at")),
    })
}

/// The team object as `role` sees it.
pub async fn team_json(db: &Db, team_id: &str, role: Role) -> ApiResult<Value> {
    let r = sqlx::query("SELECT id, name, personal, created_at FROM teams WHERE id = $1")
        .bind(team_id)
        .fetch_optional(&db.pool)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(team_value(&r, role.as_str()))
}

/// A new shared team owned by `owner`; its id.
pub async fn create(state: &AppState, owner: &str, name: &str) -> ApiResult<String> {
    let now = state.clock.unix_now();
    let id = new_id("team");
    let mut tx = state.db.begin_write().await?;
    crate::storage_names::insert_team(&mut tx, &id, name, false, now).await?;
    sqlx::query("INSERT INTO memberships (team_id, user_id, role, created_at) VALUES ($1, $2, 'owner', $3)")
        .bind(&id)
        .bind(owner)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(id)
}

/// The teams `user_id` belongs to, personal first.
pub async fn list(db: &Db, user_id: &str) -> ApiResult<Vec<Value>> {
    let rows = sqlx::query(
        "SELECT t.id, t.name, t.personal, t.created_at, m.role FROM teams t JOIN memberships m ON m.team_id = t.id \
         WHERE m.user_id = $1 ORDER BY t.personal DESC, t.created_at, t.id",
    )
    .bind(user_id)
    .fetch_all(&db.pool)
    .await?;
    Ok(rows.iter().map(|r| team_value(r, &r.get::<String, _>("role"))).collect())
}

/// The members of `team_id`, oldest first.
pub async fn members(db: &Db, team_id: &str) -> ApiResult<Vec<Value>> {
    let rows = sqlx::query(
        "SELECT u.id, u.name, u.email, m.role, m.created_at FROM memberships m JOIN users u ON u.id = m.user_id \
         WHERE m.team_id = $1 ORDER BY m.created_at, u.id",
    )
    .bind(team_id)
    .fetch_all(&db.pool)
    .await?;
    Ok(rows
        .iter()
        .map(|r| json!({
            "user_id": r.get::<String, _>("id"), "object": "team_member", "name": r.get::<String, _>("name"),
            "email": r.get::<String, _>("email"), "role": r.get::<String, _>("role"), "joined_at": iso(r.get("created_at")),
        }))
        .collect())
}

async fn is_personal(db: &Db, team_id: &str) -> ApiResult<bool> {
    Ok(sqlx::query("SELECT personal FROM teams WHERE id = $1")
        .bind(team_id)
        .fetch_one(&db.pool)
        .await?
        .get::<i64, _>(0)
        != 0)
}

/// Invite `email` to `team_id` with `role`, by `inviter` (admin or owner;
/// nobody grants a role above their own). Mails the link; returns the
/// invitation object.
pub async fn invite(state: &AppState, team_id: &str, inviter: &str, email: &str, role: &str) -> ApiResult<Value> {
    let mine = require_role(state, team_id, inviter, Role::Admin).await?;
    let email = normalize_email(email)?;
    let role: Role = role.parse()?;
    if role > mine {
        return Err(ApiError::Forbidden("You cannot invite someone with a higher role than yours.".into()));
    }
    if is_personal(&state.db, team_id).await? {
        return Err(ApiError::validation(
            "team",
            "A personal team cannot have other members. Create a team to invite people.",
        ));
    }
    state.limiter.hit("invite", inviter, 50, 3600).map_err(|s| ApiError::RateLimited { retry_after_secs: s })?;
    let already = sqlx::query(
        "SELECT 1 FROM memberships m JOIN users u ON u.id = m.user_id WHERE m.team_id = $1 AND u.email = $2",
    )
    .bind(team_id)
    .bind(&email)
    .fetch_optional(&state.db.pool)
    .await?;
    if already.is_some() {
        return Err(ApiError::Conflict("That person is already a member of this team.".into()));
    }
    let now = state.clock.unix_now();
    let token = random_token(32);
    let id = new_id("inv");
    let mut tx = state.db.begin_write().await?;
    let (inviter_name, team): (String, String) = {
        let r = sqlx::query("SELECT u.name, t.name FROM users u, teams t WHERE u.id = $1 AND t.id = $2")
            .bind(inviter)
            .bind(team_id)
            .fetch_one(&mut *tx)
            .await?;
        (r.get(0), r.get(1))
    };
    sqlx::query(
        "INSERT INTO invitations (id, team_id, email, role, token_hash, invited_by, expires_at, accepted_at, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, $8)",
    )
    .bind(&id)
    .bind(team_id)
    .bind(&email)
    .bind(role.as_str())
    .bind(hash_token(&token))
    .bind(inviter)
    .bind(now + state.cfg.invite_ttl_secs)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let link = format!("{}/accept-invite?token={token}", state.cfg.public_base_url.trim_end_matches('/'));
    enqueue(&mut tx, templates::invitation(&email, &inviter_name, &team, role.as_str(), &link), now).await?;
    tx.commit().await?;
    state.mail_wake.notify_one();
    Ok(json!({
        "id": id, "object": "invitation", "team_id": team_id, "email": email, "role": role.as_str(),
        "expires_at": iso(now + state.cfg.invite_ttl_secs),
    }))
}

/// `user_id` (signed in as `email`) accepts the invitation holding
/// `token`, if it was for that email and is unused and unexpired; the
/// team object.
pub async fn accept(state: &AppState, user_id: &str, email: &str, token: &str) -> ApiResult<Value> {
    let invalid = || ApiError::validation("token", "This invitation is invalid, expired or already used.");
    let now = state.clock.unix_now();
    let mut tx = state.db.begin_write().await?;
    let row = sqlx::query(
        "SELECT id, team_id, email, role, invited_by FROM invitations \
         WHERE token_hash = $1 AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > $2",
    )
    .bind(hash_token(token))
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(invalid)?;
    if row.get::<String, _>("email") != email {
        return Err(ApiError::Forbidden("This invitation was sent to another email address.".into()));
    }
    let (inv_id, team_id, role): (String, String, String) = (row.get("id"), row.get("team_id"), row.get("role"));
    // The inviter must still be able to grant the role: an admin removed
    // or demoted since cannot bring anyone in through an old invitation.
    let granted: Role = role.parse()?;
    let inviter: Option<String> = row.get("invited_by");
    let inviter_role = match &inviter {
        Some(i) => role_in(&mut tx, &team_id, i).await.ok(),
        None => None,
    };
    if !inviter_role.is_some_and(|r| r >= Role::Admin && r >= granted) {
        return Err(ApiError::validation("token", "This invitation is no longer valid: ask the team for a new one."));
    }
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
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await?;
    if member.is_none() {
        sqlx::query("INSERT INTO memberships (team_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)")
            .bind(&team_id)
            .bind(user_id)
            .bind(&role)
            .bind(now)
            .execute(&mut *tx)
            .await?;
    }
    // Accepting an emailed invitation also proves the address.
    crate::accounts::prove_address(&mut tx, user_id, crate::accounts::Proof::Invitation, now).await?;
    tx.commit().await?;
    crate::retention::recompute::for_user(state, user_id).await?;
    let role = require_role(state, &team_id, user_id, Role::Member).await?;
    team_json(&state.db, &team_id, role).await
}

async fn owners(conn: &mut AnyConnection, team_id: &str) -> ApiResult<i64> {
    Ok(sqlx::query("SELECT COUNT(*) FROM memberships WHERE team_id = $1 AND role = 'owner'")
        .bind(team_id)
        .fetch_one(conn)
        .await?
        .get(0))
}

/// Serialise membership changes of one team: the row lock on PostgreSQL (a
/// SQLite write transaction already excludes every other writer). Two
/// owners leaving at once then see each other, and one is refused.
async fn lock_team(conn: &mut AnyConnection, backend: Backend, team_id: &str) -> ApiResult<()> {
    if backend == Backend::Postgres {
        sqlx::query("SELECT id FROM teams WHERE id = $1 FOR UPDATE").bind(team_id).fetch_optional(conn).await?;
    }
    Ok(())
}

/// `user_id`'s role inside a transaction (404 if not a member).
async fn role_in(conn: &mut AnyConnection, team_id: &str, user_id: &str) -> ApiResult<Role> {
    sqlx::query("SELECT role FROM memberships WHERE team_id = $1 AND user_id = $2")
        .bind(team_id)
        .bind(user_id)
        .fetch_optional(conn)
        .await?
        .and_then(|r| r.get::<String, _>(0).parse().ok())
        .ok_or(ApiError::NotFound)
}

/// Revoke the keys `user_id` created for `team_id`: someone who is no
/// longer an admin of a team must not keep acting for it through keys
/// they made while they were.
async fn revoke_keys_of(conn: &mut AnyConnection, team_id: &str, user_id: &str, now: i64) -> ApiResult<u64> {
    Ok(sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE team_id = $2 AND created_by = $3 AND revoked_at IS NULL")
        .bind(now)
        .bind(team_id)
        .bind(user_id)
        .execute(conn)
        .await?
        .rows_affected())
}

/// `by` sets `user_id`'s role in `team_id` to `new`. Lowered below admin,
/// the keys they created for the team are revoked.
pub async fn change_role(state: &AppState, team_id: &str, by: &str, user_id: &str, new: &str) -> ApiResult<Role> {
    require_role(state, team_id, by, Role::Admin).await?;
    let new: Role = new.parse()?;
    let now = state.clock.unix_now();
    let mut tx = state.db.begin_write().await?;
    lock_team(&mut tx, state.db.backend, team_id).await?;
    // Both roles as they are now, under the lock.
    let mine = role_in(&mut tx, team_id, by).await?;
    let theirs = role_in(&mut tx, team_id, user_id).await?;
    if mine < Role::Admin {
        return Err(ApiError::Forbidden("This needs the admin role in this team.".into()));
    }
    if theirs > mine || new > mine {
        return Err(ApiError::Forbidden("You cannot change a role above your own.".into()));
    }
    if theirs == Role::Owner && new != Role::Owner && owners(&mut tx, team_id).await? <= 1 {
        return Err(ApiError::Conflict("A team needs at least one owner.".into()));
    }
    sqlx::query("UPDATE memberships SET role = $1 WHERE team_id = $2 AND user_id = $3")
        .bind(new.as_str())
        .bind(team_id)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    if new < Role::Admin {
        revoke_keys_of(&mut tx, team_id, user_id, now).await?;
    }
    tx.commit().await?;
    Ok(new)
}

/// `by` (admin or owner) removes `user_id` from `team_id`.
pub async fn remove_member(state: &AppState, team_id: &str, by: &str, user_id: &str) -> ApiResult<()> {
    require_role(state, team_id, by, Role::Admin).await?;
    leave_team(state, team_id, user_id, Some(by)).await
}

/// `user_id` leaves `team_id`.
pub async fn leave(state: &AppState, team_id: &str, user_id: &str) -> ApiResult<()> {
    require_role(state, team_id, user_id, Role::Member).await?;
    leave_team(state, team_id, user_id, None).await
}

/// `user_id` leaves `team_id` (removed `by` someone, or by themselves): the
/// last owner cannot, checked and changed under the team's lock; the keys
/// they created for the team are revoked.
async fn leave_team(state: &AppState, team_id: &str, user_id: &str, by: Option<&str>) -> ApiResult<()> {
    if is_personal(&state.db, team_id).await? {
        return Err(ApiError::Conflict("Nobody can leave a personal team.".into()));
    }
    let now = state.clock.unix_now();
    let mut tx = state.db.begin_write().await?;
    lock_team(&mut tx, state.db.backend, team_id).await?;
    let theirs = role_in(&mut tx, team_id, user_id).await?;
    if let Some(by) = by {
        if theirs > role_in(&mut tx, team_id, by).await? {
            return Err(ApiError::Forbidden("You cannot remove someone with a higher role.".into()));
        }
    }
    if theirs == Role::Owner && owners(&mut tx, team_id).await? <= 1 {
        return Err(ApiError::Conflict("A team needs at least one owner: make someone else owner first.".into()));
    }
    sqlx::query("DELETE FROM memberships WHERE team_id = $1 AND user_id = $2")
        .bind(team_id)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    revoke_keys_of(&mut tx, team_id, user_id, now).await?;
    tx.commit().await?;
    Ok(())
}

/// The pending invitations of `team_id` (admin or owner).
pub async fn invitations(state: &AppState, team_id: &str, by: &str) -> ApiResult<Vec<Value>> {
    require_role(state, team_id, by, Role::Admin).await?;
    let rows = sqlx::query(
        "SELECT i.id, i.email, i.role, i.expires_at, i.created_at, i.invited_by FROM invitations i \
         WHERE i.team_id = $1 AND i.accepted_at IS NULL AND i.revoked_at IS NULL AND i.expires_at > $2 \
         ORDER BY i.created_at, i.id",
    )
    .bind(team_id)
    .bind(state.clock.unix_now())
    .fetch_all(&state.db.pool)
    .await?;
    Ok(rows
        .iter()
        .map(|r| {
            json!({
                "id": r.get::<String, _>("id"), "object": "invitation", "team_id": team_id,
                "email": r.get::<String, _>("email"), "role": r.get::<String, _>("role"),
                "invited_by": r.get::<Option<String>, _>("invited_by"),
                "created_at": iso(r.get("created_at")), "expires_at": iso(r.get("expires_at")),
            })
        })
        .collect())
}

/// Revoke a pending invitation of `team_id` (admin or owner).
pub async fn revoke_invitation(state: &AppState, team_id: &str, by: &str, invitation_id: &str) -> ApiResult<()> {
    require_role(state, team_id, by, Role::Admin).await?;
    let n = sqlx::query(
        "UPDATE invitations SET revoked_at = $1 WHERE id = $2 AND team_id = $3 AND accepted_at IS NULL AND revoked_at IS NULL",
    )
    .bind(state.clock.unix_now())
    .bind(invitation_id)
    .bind(team_id)
    .execute(&state.db.pool)
    .await?
    .rows_affected();
    if n == 0 {
        return Err(ApiError::NotFound);
    }
    Ok(())
}
