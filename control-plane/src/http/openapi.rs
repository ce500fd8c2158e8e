//! The public API as an OpenAPI 3.0 document, built from [`OPERATIONS`]
//! and served at `/openapi.json`.
//!
//! The table is checked against the router by tests in both directions:
//! every operation here is routed (a request to it is never a 405 or the
//! router's fallback 404), and every `.route(…)` in `http/mod.rs` is here.

use serde_json::{json, Map, Value};

/// How an operation authenticates.
#[derive(Clone, Copy)]
pub enum Auth {
    /// Nothing needed.
    None,
    /// Session cookie (+ `X-CSRF-Token` on state changes).
    Session,
    /// API key (`Authorization: Bearer img_live_…`) or session cookie.
    KeyOrSession,
    /// Optional: anonymous, key or session (uploads).
    Optional,
}

pub struct Op {
    pub method: &'static str,
    pub path: &'static str,
    pub summary: &'static str,
    pub auth: Auth,
    /// Request body: (media type, schema name).
    pub body: Option<(&'static str, &'static str)>,
    /// Success status and the schema name of its body (`""` = none).
    pub ok: (u16, &'static str),
}

const fn op(
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    auth: Auth,
    body: Option<(&'static str, &'static str)>,
    ok: (u16, &'static str),
) -> Op {
    Op { method, path, summary, auth, body, ok }
}

const JSON: &str = "application/json";
const FORM: &str = "multipart/form-data";

pub const OPERATIONS: &[Op] = &[
    op("get", "/healthz", "Liveness", Auth::None, None, (200, "")),
    op("get", "/openapi.json", "This document", Auth::None, None, (200, "")),
    op(
        "post",
        "/v1/auth/signup",
        "Sign up (a verification mail is sent)",
        Auth::None,
        Some((JSON, "Signup")),
        (202, ""),
    ),
    op(
        "post",
        "/v1/auth/verify",
        "Verify an email address with the mailed token",
        Auth::None,
        Some((JSON, "Token")),
        (200, "User"),
    ),
    op(
        "post",
        "/v1/auth/login",
        "Sign in: sets the session cookie, returns the CSRF token",
        Auth::None,
        Some((JSON, "Login")),
        (200, "Session"),
    ),
    op("post", "/v1/auth/logout", "End this session", Auth::Session, None, (204, "")),
    op("post", "/v1/auth/logout-all", "End every session", Auth::Session, None, (204, "")),
    op(
        "post",
        "/v1/auth/password",
        "Change the password (other sessions end)",
        Auth::Session,
        Some((JSON, "ChangePassword")),
        (204, ""),
    ),
    op("post", "/v1/auth/password-reset", "Mail a password reset link", Auth::None, Some((JSON, "Email")), (202, "")),
    op(
        "post",
        "/v1/auth/password-reset/confirm",
        "Set a new password with the mailed token (every session ends)",
        Auth::None,
        Some((JSON, "ResetConfirm")),
        (204, ""),
    ),
    op("post", "/v1/auth/resend-verification", "Mail the verification link again", Auth::Session, None, (202, "")),
    op("get", "/v1/me", "The signed-in user", Auth::Session, None, (200, "User")),
    op(
        "patch",
        "/v1/me",
        "Change name or marketing consent (Sec-GPC honoured)",
        Auth::Session,
        Some((JSON, "Settings")),
        (200, "User"),
    ),
    op("get", "/v1/sessions", "Own sessions", Auth::Session, None, (200, "List")),
    op("delete", "/v1/sessions/{id}", "Revoke one of the own sessions", Auth::Session, None, (204, "")),
    op(
        "post",
        "/v1/keys",
        "Legacy: create an unverified account and an API key",
        Auth::None,
        Some((JSON, "LegacyKey")),
        (201, "ApiKey"),
    ),
    op("get", "/v1/whoami", "What the credential is", Auth::KeyOrSession, None, (200, "")),
    op("get", "/v1/teams", "Own teams", Auth::Session, None, (200, "List")),
    op("post", "/v1/teams", "Create a team", Auth::Session, Some((JSON, "Name")), (201, "Team")),
    op("get", "/v1/teams/{team_id}", "A team", Auth::Session, None, (200, "Team")),
    op("get", "/v1/teams/{team_id}/members", "Members of a team", Auth::Session, None, (200, "List")),
    op(
        "patch",
        "/v1/teams/{team_id}/members/{user_id}",
        "Change a member's role",
        Auth::Session,
        Some((JSON, "Role")),
        (200, ""),
    ),
    op("delete", "/v1/teams/{team_id}/members/{user_id}", "Remove a member", Auth::Session, None, (204, "")),
    op("post", "/v1/teams/{team_id}/leave", "Leave a team", Auth::Session, None, (204, "")),
    op("post", "/v1/teams/{team_id}/invitations", "Invite by email", Auth::Session, Some((JSON, "Invite")), (201, "")),
    op("get", "/v1/teams/{team_id}/invitations", "Pending invitations of a team", Auth::Session, None, (200, "List")),
    op(
        "delete",
        "/v1/teams/{team_id}/invitations/{invitation_id}",
        "Revoke a pending invitation",
        Auth::Session,
        None,
        (204, ""),
    ),
    op("get", "/v1/teams/{team_id}/keys", "API keys of a team (never the secrets)", Auth::Session, None, (200, "List")),
    op(
        "post",
        "/v1/teams/{team_id}/keys",
        "Create an API key (the secret is shown once)",
        Auth::Session,
        Some((JSON, "CreateKey")),
        (201, "ApiKey"),
    ),
    op("delete", "/v1/teams/{team_id}/keys/{key_id}", "Revoke an API key", Auth::Session, None, (204, "")),
    op(
        "get",
        "/v1/teams/{team_id}/requests",
        "The team's API request log, newest first, kept 30 days (owners)",
        Auth::Session,
        None,
        (200, "List"),
    ),
    op("post", "/v1/invitations/accept", "Accept an invitation", Auth::Session, Some((JSON, "Token")), (200, "Team")),
    op("post", "/v1/reports", "Report an image (anyone)", Auth::None, Some((JSON, "Report")), (202, "Received")),
    op(
        "post",
        "/v1/dmca",
        "File a DMCA notice (copyright holders)",
        Auth::None,
        Some((JSON, "DmcaNotice")),
        (202, "Received"),
    ),
    op(
        "post",
        "/v1/dmca/counter",
        "File a DMCA counter-notice (the uploader, with the link from the takedown mail)",
        Auth::None,
        Some((JSON, "CounterNotice")),
        (200, ""),
    ),
    op(
        "get",
        "/v1/images",
        "List images (cursor, label[k]=v) or get several (ids=a,b,c)",
        Auth::KeyOrSession,
        None,
        (200, "ImageList"),
    ),
    op(
        "post",
        "/v1/images",
        "Upload (multipart) or import (JSON {url}); Idempotency-Key supported",
        Auth::Optional,
        Some((FORM, "Upload")),
        (201, "Image"),
    ),
    op(
        "delete",
        "/v1/images/batch",
        "Delete up to 100 images (idempotent)",
        Auth::KeyOrSession,
        Some((JSON, "Ids")),
        (200, "BatchResult"),
    ),
    op("get", "/v1/images/{id}", "An image", Auth::KeyOrSession, None, (200, "Image")),
    op(
        "patch",
        "/v1/images/{id}",
        "Change caption, public, labels, metadata, ttl",
        Auth::KeyOrSession,
        Some((JSON, "ImagePatch")),
        (200, "Image"),
    ),
    op(
        "delete",
        "/v1/images/{id}",
        "Delete an image (off public serving at once)",
        Auth::KeyOrSession,
        None,
        (200, ""),
    ),
    op(
        "post",
        "/v1/upload",
        "Legacy upload (older response fields)",
        Auth::Optional,
        Some((FORM, "Upload")),
        (201, "LegacyImage"),
    ),
    op(
        "post",
        "/v1/import",
        "Legacy import by URL (older response fields)",
        Auth::Optional,
        Some((JSON, "Import")),
        (201, "LegacyImage"),
    ),
    op("get", "/v1/usage", "Plan, limits and usage", Auth::KeyOrSession, None, (200, "Usage")),
    op("get", "/verify-email", "Email verification page (a button that posts the token)", Auth::None, None, (200, "")),
    op("post", "/verify-email", "Email verification form", Auth::None, None, (200, "")),
    op("get", "/reset-password", "Password reset page", Auth::None, None, (200, "")),
    op("post", "/reset-password", "Password reset form", Auth::None, None, (200, "")),
    op("get", "/accept-invite", "Invitation landing page", Auth::None, None, (200, "")),
    op("get", "/{id}", "Viewer page of an image (Open Graph tags)", Auth::None, None, (200, "")),
    op("get", "/legal/takedowns", "Why an image answers 451 (the edges link here)", Auth::None, None, (200, "")),
    op(
        "post",
        "/v1/me/deletion",
        "Delete the account: sessions end, keys stop, erased after the grace period unless cancelled",
        Auth::Session,
        Some((JSON, "Deletion")),
        (202, "Deletion"),
    ),
    op(
        "post",
        "/v1/me/deletion/cancel",
        "Cancel a deletion with the emailed link's token",
        Auth::None,
        Some((JSON, "Token")),
        (200, "Deletion"),
    ),
    op("post", "/v1/me/export", "Export all your data (mailed when ready)", Auth::Session, None, (202, "Export")),
    op("get", "/v1/me/exports/{id}", "An export's state", Auth::Session, None, (200, "Export")),
    op("get", "/v1/me/exports/{id}/download", "Download a ready export (tar)", Auth::Session, None, (200, "")),
    op(
        "post",
        "/v1/me/email",
        "Change the email address (a link is sent to the new one)",
        Auth::Session,
        Some((JSON, "EmailChange")),
        (202, ""),
    ),
    op("post", "/v1/me/email/confirm", "Confirm a new email address", Auth::None, Some((JSON, "Token")), (200, "User")),
    op("get", "/confirm-email", "New email confirmation page", Auth::None, None, (200, "")),
    op("post", "/confirm-email", "New email confirmation form", Auth::None, None, (200, "")),
    op("get", "/cancel-deletion", "Deletion cancel page", Auth::None, None, (200, "")),
    op("post", "/cancel-deletion", "Deletion cancel form", Auth::None, None, (200, "")),
    op("get", "/subprocessors", "Who processes personal data (HTML, or JSON)", Auth::None, None, (200, "")),
    op("get", "/privacy", "Privacy summary and how to exercise each right", Auth::None, None, (200, "")),
];

fn obj(props: &[(&str, Value)], required: &[&str]) -> Value {
    let mut p = Map::new();
    for (k, v) in props {
        p.insert((*k).to_string(), v.clone());
    }
    json!({ "type": "object", "properties": p, "required": required })
}

fn s(t: &str) -> Value {
    json!({ "type": t })
}

fn nullable(t: &str) -> Value {
    json!({ "type": t, "nullable": true })
}

fn schemas() -> Value {
    let size =
        obj(&[("url", s("string")), ("width", s("integer")), ("height", s("integer"))], &["url", "width", "height"]);
    json!({
        "Error": obj(&[("error", obj(&[
            ("type", s("string")), ("code", s("string")), ("message", s("string")),
            ("details", s("object")), ("action", s("object")), ("usage", s("object")),
        ], &["type", "code", "message"]))], &["error"]),
        "Image": obj(&[
            ("id", s("string")), ("object", json!({"type": "string", "enum": ["image"]})), ("url", s("string")), ("page_url", s("string")),
            ("sizes", json!({"type": "object", "properties": {"small": size, "medium": size, "large": size}})),
            ("filename", nullable("string")), ("format", s("string")), ("width", s("integer")), ("height", s("integer")),
            ("bytes", s("integer")), ("transformable", s("boolean")),
            ("status", json!({"type": "string", "enum": ["ready", "processing", "failed"]})), ("public", s("boolean")),
            ("published_at", json!({"type": "string", "format": "date-time", "nullable": true})),
            ("expires_at", json!({"type": "string", "format": "date-time", "nullable": true})),
            ("created_at", json!({"type": "string", "format": "date-time"})), ("caption", nullable("string")),
            ("metadata", s("object")), ("labels", json!({"type": "object", "additionalProperties": {"type": "string"}})),
            ("nsfw", nullable("boolean")),
        ], &["id", "object", "url", "page_url", "sizes", "filename", "format", "width", "height", "bytes", "transformable", "status", "public", "published_at", "expires_at", "created_at", "caption", "metadata", "labels", "nsfw"]),
        "LegacyImage": obj(&[("id", s("string")), ("url", s("string")), ("src", s("string")), ("filesize", s("integer")), ("extension", s("string")),
            ("width", s("integer")), ("height", s("integer")), ("created", s("integer")), ("expires_at", nullable("integer")), ("upgrade", s("object"))], &["id", "url", "src"]),
        "ImageList": obj(&[("object", s("string")), ("data", json!({"type": "array", "items": {"$ref": "#/components/schemas/Image"}})),
            ("pagination", obj(&[("next_cursor", nullable("string")), ("has_more", s("boolean"))], &["next_cursor", "has_more"]))], &["object", "data", "pagination"]),
        "BatchResult": obj(&[("object", s("string")), ("data", s("array")), ("errors", s("array"))], &["object", "data", "errors"]),
        "Usage": obj(&[("object", s("string")), ("plan", s("string")), ("limits", s("object")), ("totals", s("object"))], &["plan", "limits"]),
        "Upload": obj(&[("file", json!({"type": "string", "format": "binary"})), ("caption", s("string")), ("public", s("boolean")),
            ("ttl", json!({"type": "string", "description": "seconds, or 5m / 2h / 7d; 300 s to 90 days"})),
            ("labels", json!({"type": "string", "description": "JSON object of strings"})), ("metadata", json!({"type": "string", "description": "JSON object"}))], &["file"]),
        "Import": obj(&[("url", s("string")), ("caption", s("string")), ("public", s("boolean")), ("ttl", s("string")), ("labels", s("object")), ("metadata", s("object"))], &["url"]),
        "ImagePatch": obj(&[("caption", nullable("string")), ("public", s("boolean")), ("labels", s("object")), ("metadata", s("object")), ("ttl", s("string"))], &[]),
        "Ids": obj(&[("ids", json!({"type": "array", "items": {"type": "string"}, "maxItems": 100}))], &["ids"]),
        "User": obj(&[("id", s("string")), ("object", s("string")), ("email", s("string")), ("name", s("string")), ("email_verified", s("boolean")),
            ("personal_team_id", s("string")), ("marketing_emails", s("boolean")), ("created_at", s("string"))], &["id", "email"]),
        "Session": obj(&[("object", s("string")), ("user", json!({"$ref": "#/components/schemas/User"})), ("csrf_token", s("string"))], &["user", "csrf_token"]),
        "Team": obj(&[("id", s("string")), ("object", s("string")), ("name", s("string")), ("personal", s("boolean")), ("role", s("string"))], &["id", "name"]),
        "ApiKey": obj(&[("id", s("string")), ("object", s("string")), ("key", json!({"type": "string", "description": "only in the creation response"})),
            ("name", s("string")), ("abilities", s("array")), ("created", s("string")), ("last_used", nullable("string"))], &["id"]),
        "List": obj(&[("object", s("string")), ("data", s("array"))], &["object", "data"]),
        "Signup": obj(&[("email", s("string")), ("name", s("string")), ("password", s("string")), ("marketing_emails", s("boolean")),
            ("age_confirmed", json!({"type": "boolean", "description": "the person is at least 16; must be true"}))], &["email", "name", "password", "age_confirmed"]),
        "Login": obj(&[("email", s("string")), ("password", s("string"))], &["email", "password"]),
        "Token": obj(&[("token", s("string"))], &["token"]),
        "Email": obj(&[("email", s("string"))], &["email"]),
        "Name": obj(&[("name", s("string"))], &["name"]),
        "Role": obj(&[("role", json!({"type": "string", "enum": ["owner", "admin", "member"]}))], &["role"]),
        "Invite": obj(&[("email", s("string")), ("role", json!({"type": "string", "enum": ["owner", "admin", "member"]}))], &["email"]),
        "CreateKey": obj(&[("name", s("string")), ("abilities", json!({"type": "array", "items": {"type": "string", "enum": ["read", "write"]}}))], &["name"]),
        "LegacyKey": obj(&[("email", s("string")), ("name", s("string"))], &["email"]),
        "ChangePassword": obj(&[("current_password", s("string")), ("new_password", s("string"))], &["current_password", "new_password"]),
        "ResetConfirm": obj(&[("token", s("string")), ("password", s("string"))], &["token", "password"]),
        "Settings": obj(&[("name", s("string")), ("marketing_emails", s("boolean")), ("restrict_processing", s("boolean")),
            ("object_to_processing", s("boolean"))], &[]),
        "Deletion": obj(&[("password", s("string")), ("object", s("string")), ("status", s("string")), ("erased_at", s("string"))], &[]),
        "Export": obj(&[("id", s("string")), ("object", s("string")), ("state", json!({"type": "string", "enum": ["queued", "building", "ready", "failed"]})),
            ("created_at", s("string")), ("ready_at", nullable("string")), ("expires_at", nullable("string")),
            ("bytes", nullable("integer")), ("download_url", nullable("string"))], &["id", "state"]),
        "EmailChange": obj(&[("email", s("string")), ("password", s("string"))], &["email", "password"]),
        "Report": obj(&[("image", json!({"type": "string", "description": "image id, viewer URL or CDN URL"})),
            ("reason", json!({"type": "string", "enum": crate::moderation::reports::REPORT_REASONS})),
            ("details", s("string")), ("contact_email", s("string"))], &["image", "reason"]),
        "DmcaNotice": obj(&[("image", s("string")), ("claimant_name", s("string")), ("claimant_email", s("string")),
            ("claimant_address", s("string")), ("claimant_phone", s("string")), ("work", s("string")),
            ("good_faith", s("boolean")), ("accurate_under_penalty_of_perjury", s("boolean")), ("signature", s("string"))],
            &["image", "claimant_name", "claimant_email", "claimant_address", "work", "good_faith", "accurate_under_penalty_of_perjury", "signature"]),
        "CounterNotice": obj(&[("token", s("string")), ("name", s("string")), ("address", s("string")), ("statement", s("string")),
            ("consent_to_jurisdiction", s("boolean")), ("signature", s("string"))],
            &["token", "name", "address", "statement", "consent_to_jurisdiction", "signature"]),
        "Received": obj(&[("id", s("string")), ("object", s("string")), ("status", s("string"))], &["id", "status"]),
    })
}

/// The document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for o in OPERATIONS {
        let mut operation = json!({
            "summary": o.summary,
            "operationId": format!("{}_{}", o.method, o.path.trim_matches('/').replace(['/', '{', '}', '.', '-'], "_")),
            "responses": {
                "default": { "description": "Error", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } }
            },
        });
        let ok = if o.ok.1.is_empty() {
            json!({ "description": "Success" })
        } else {
            json!({ "description": "Success", "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{}", o.ok.1) } } } })
        };
        operation["responses"][o.ok.0.to_string()] = ok;
        let params: Vec<Value> = o
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect();
        if !params.is_empty() {
            operation["parameters"] = json!(params);
        }
        if let Some((media, schema)) = o.body {
            operation["requestBody"] = json!({ "required": true, "content": { media: { "schema": { "$ref": format!("#/components/schemas/{schema}") } } } });
        }
        operation["security"] = match o.auth {
            Auth::None => json!([]),
            Auth::Session => json!([{ "session": [] }]),
            Auth::KeyOrSession => json!([{ "apiKey": [] }, { "session": [] }]),
            Auth::Optional => json!([{}, { "apiKey": [] }, { "session": [] }]),
        };
        let entry = paths.entry(o.path.to_string()).or_insert_with(|| json!({}));
        entry[o.method] = operation;
    }
    json!({
        "openapi": "3.0.3",
        "info": { "title": "imgcdn API", "version": env!("CARGO_PKG_VERSION"),
                  "description": "Image hosting: accounts, API keys, teams, uploads and the Images API. Errors: {\"error\": {type, code, message, …}}." },
        "paths": paths,
        "components": {
            "schemas": schemas(),
            "securitySchemes": {
                "apiKey": { "type": "http", "scheme": "bearer", "description": "img_live_… API key" },
                "session": { "type": "apiKey", "in": "cookie", "name": "imgcdn_session", "description": "State changes also need the X-CSRF-Token header." },
            },
        },
    })
}
