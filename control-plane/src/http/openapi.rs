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
    let mut o = json!({ "type": "object", "properties": p });
    // OpenAPI 3.0 forbids an empty `required`.
    if !required.is_empty() {
        o["required"] = json!(required);
    }
    o
}

/// An email address as the API accepts it.
fn email() -> Value {
    json!({ "type": "string", "format": "email", "minLength": 3, "maxLength": 254 })
}

/// A new password under the default policy (`[passwords]` can change it).
fn new_password() -> Value {
    json!({ "type": "string", "minLength": 10, "maxLength": 128,
            "description": "at least 10 characters and 4 different ones by default, at most 128 bytes; not the email or a common password" })
}

fn nonempty(max: u32) -> Value {
    json!({ "type": "string", "minLength": 1, "maxLength": max })
}

/// Text that must say something (not only spaces).
fn required_text() -> Value {
    json!({ "type": "string", "minLength": 1, "maxLength": crate::moderation::reports::MAX_TEXT, "pattern": "\\S" })
}

/// A display name: 1 to 100 characters after trimming, no control characters.
fn display_name() -> Value {
    json!({ "type": "string", "minLength": 1, "maxLength": 100,
            "pattern": "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$" })
}

fn s(t: &str) -> Value {
    json!({ "type": t })
}

/// A lifetime: seconds, or `5m` / `2h` / `7d` (null: the default).
fn ttl() -> Value {
    json!({ "description": "seconds, or 5m / 2h / 7d; 300 s to 90 days",
            "anyOf": [{ "type": "integer", "nullable": true }, { "type": "string" }] })
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
            ("details", json!({"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}},
                "description": "validation errors: each field name with its reasons"})),
            ("action", s("object")), ("usage", s("object")),
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
        "Usage": obj(&[("object", s("string")), ("plan", s("string")), ("limits_enforced", s("boolean")), ("limits", s("object")), ("totals", s("object"))],
            &["plan", "limits_enforced", "limits"]),
        "Upload": obj(&[("file", json!({"type": "string", "format": "binary"})), ("caption", s("string")), ("public", s("boolean")),
            ("ttl", json!({"type": "string", "description": "seconds, or 5m / 2h / 7d; 300 s to 90 days"})),
            ("labels", json!({"type": "string", "description": "JSON object of strings"})), ("metadata", json!({"type": "string", "description": "JSON object"}))], &["file"]),
        "Import": obj(&[("url", s("string")), ("caption", s("string")), ("public", s("boolean")), ("ttl", ttl()), ("labels", s("object")), ("metadata", s("object"))], &["url"]),
        // In a PATCH, a field left out or null is left as it is (a null
        // caption clears it).
        "ImagePatch": obj(&[("caption", nullable("string")), ("public", nullable("boolean")), ("labels", nullable("object")),
            ("metadata", nullable("object")), ("ttl", ttl())], &[]),
        "Ids": obj(&[("ids", json!({"type": "array", "items": {"type": "string", "description": "an id that is not found is reported in `errors`"}, "minItems": 1, "maxItems": 100}))], &["ids"]),
        "User": obj(&[("id", s("string")), ("object", s("string")), ("email", s("string")), ("name", s("string")), ("email_verified", s("boolean")),
            ("personal_team_id", s("string")), ("marketing_emails", s("boolean")), ("created_at", s("string"))], &["id", "email"]),
        "Session": obj(&[("object", s("string")), ("user", json!({"$ref": "#/components/schemas/User"})), ("csrf_token", s("string"))], &["user", "csrf_token"]),
        "Team": obj(&[("id", s("string")), ("object", s("string")), ("name", s("string")), ("personal", s("boolean")), ("role", s("string"))], &["id", "name"]),
        "ApiKey": obj(&[("id", s("string")), ("object", s("string")), ("key", json!({"type": "string", "description": "only in the creation response"})),
            ("name", s("string")), ("abilities", s("array")), ("created", s("string")), ("last_used", nullable("string"))], &["id"]),
        "List": obj(&[("object", s("string")), ("data", s("array"))], &["object", "data"]),
        "Signup": obj(&[("email", email()), ("name", display_name()), ("password", new_password()), ("marketing_emails", s("boolean")),
            ("age_confirmed", json!({"type": "boolean", "enum": [true], "description": "the person is at least 16; must be true"}))], &["email", "name", "password", "age_confirmed"]),
        "Login": obj(&[("email", email()), ("password", nonempty(1024))], &["email", "password"]),
        "Token": obj(&[("token", nonempty(512))], &["token"]),
        "Email": obj(&[("email", email())], &["email"]),
        "Name": obj(&[("name", display_name())], &["name"]),
        "Role": obj(&[("role", json!({"type": "string", "enum": ["owner", "admin", "member"]}))], &["role"]),
        "Invite": obj(&[("email", email()), ("role", json!({"type": "string", "enum": ["owner", "admin", "member"]}))], &["email"]),
        "CreateKey": obj(&[("name", display_name()), ("abilities", json!({"type": "array", "items": {"type": "string", "enum": ["read", "write"]}}))], &["name"]),
        "LegacyKey": obj(&[("email", email()), ("name", nullable("string"))], &["email"]),
        "ChangePassword": obj(&[("current_password", nonempty(1024)), ("new_password", new_password())], &["current_password", "new_password"]),
        "ResetConfirm": obj(&[("token", nonempty(512)), ("password", new_password())], &["token", "password"]),
        "Settings": obj(&[("name", { let mut n = display_name(); n["nullable"] = json!(true); n }),
            ("marketing_emails", nullable("boolean")), ("restrict_processing", nullable("boolean")),
            ("object_to_processing", nullable("boolean"))], &[]),
        "Deletion": obj(&[("password", s("string")), ("object", s("string")), ("status", s("string")), ("erased_at", s("string"))], &[]),
        "Export": obj(&[("id", s("string")), ("object", s("string")), ("state", json!({"type": "string", "enum": ["queued", "building", "ready", "failed"]})),
            ("created_at", s("string")), ("ready_at", nullable("string")), ("expires_at", nullable("string")),
            ("bytes", nullable("integer")), ("download_url", nullable("string"))], &["id", "state"]),
        "EmailChange": obj(&[("email", email()), ("password", nonempty(1024))], &["email", "password"]),
        "Report": obj(&[("image", json!({"type": "string", "minLength": 1, "description": "image id, viewer URL or CDN URL"})),
            ("reason", json!({"type": "string", "enum": crate::moderation::reports::REPORT_REASONS})),
            ("details", s("string")), ("contact_email", email())], &["image", "reason"]),
        "DmcaNotice": obj(&[("image", nonempty(2048)), ("claimant_name", required_text()), ("claimant_email", email()),
            ("claimant_address", required_text()), ("claimant_phone", s("string")), ("work", required_text()),
            ("good_faith", json!({"type": "boolean", "enum": [true]})),
            ("accurate_under_penalty_of_perjury", json!({"type": "boolean", "enum": [true]})), ("signature", required_text())],
            &["image", "claimant_name", "claimant_email", "claimant_address", "work", "good_faith", "accurate_under_penalty_of_perjury", "signature"]),
        "CounterNotice": obj(&[("token", nonempty(512)), ("name", required_text()), ("address", required_text()), ("statement", required_text()),
            ("consent_to_jurisdiction", json!({"type": "boolean", "enum": [true]})), ("signature", required_text())],
            &["token", "name", "address", "statement", "consent_to_jurisdiction", "signature"]),
        "Received": obj(&[("id", s("string")), ("object", s("string")), ("status", s("string"))], &["id", "status"]),
    })
}

/// A page for people (HTML) rather than the JSON API.
fn is_page(path: &str) -> bool {
    !path.starts_with("/v1/") && path != "/healthz" && path != "/openapi.json"
}

/// The query parameters of an operation.
fn query_parameters(method: &str, path: &str) -> Vec<Value> {
    let q = |name: &str, schema: Value, description: &str| json!({ "name": name, "in": "query", "required": false, "schema": schema, "description": description });
    let cursor = || q("cursor", json!({"type": "string"}), "`pagination.next_cursor` of the previous page");
    let limit = || q("limit", json!({"type": "integer", "minimum": 1, "maximum": 100}), "page size (default 20)");
    let token = || q("token", json!({"type": "string"}), "the token from the emailed link");
    match (method, path) {
        ("get", "/v1/images") => vec![
            cursor(),
            limit(),
            q(
                "ids",
                json!({"type": "string"}),
                "comma-separated image ids (at most 50): these images, in this order, no paging",
            ),
            json!({ "name": "label", "in": "query", "required": false, "style": "deepObject", "explode": true,
                    "schema": { "type": "object" },
                    "description": "label[key]=value: only images with these labels" }),
        ],
        ("get", "/v1/teams/{team_id}/requests") => vec![cursor(), limit()],
        ("get", "/verify-email" | "/reset-password" | "/confirm-email" | "/cancel-deletion" | "/accept-invite") => {
            vec![token()]
        }
        _ => Vec::new(),
    }
}

/// The body of a page's form (`application/x-www-form-urlencoded`).
fn page_form(method: &str, path: &str) -> Option<Value> {
    if method != "post" {
        return None;
    }
    let token = ("token", nonempty(512));
    let form = match path {
        "/verify-email" | "/confirm-email" | "/cancel-deletion" => obj(&[token], &["token"]),
        "/reset-password" => obj(&[token, ("password", new_password())], &["token", "password"]),
        _ => return None,
    };
    Some(json!({ "required": true, "content": { "application/x-www-form-urlencoded": { "schema": form } } }))
}

/// Other successful answers an operation gives, and when.
fn other_successes(method: &str, path: &str) -> &'static [(u16, &'static str)] {
    match (method, path) {
        ("post", "/v1/auth/resend-verification") => &[(204, "The address is already verified: nothing sent")],
        _ => &[],
    }
}

/// The document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for o in OPERATIONS {
        let page = is_page(o.path);
        let error = if page {
            // A page says what went wrong; the rate limiter answers in the
            // API's error shape.
            json!({ "description": "Error (a page saying what went wrong)", "content": {
                "text/html": { "schema": { "type": "string" } },
                "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } })
        } else {
            json!({ "description": "Error", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } })
        };
        let mut operation = json!({
            "summary": o.summary,
            "operationId": format!("{}_{}", o.method, o.path.trim_matches('/').replace(['/', '{', '}', '.', '-'], "_")),
            "responses": { "default": error },
        });
        let ok = if !o.ok.1.is_empty() {
            json!({ "description": "Success", "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{}", o.ok.1) } } } })
        } else if o.path == "/subprocessors" {
            json!({ "description": "Success (JSON when asked for with Accept)", "content": {
                "text/html": { "schema": { "type": "string" } }, "application/json": { "schema": { "type": "object" } } } })
        } else if page {
            json!({ "description": "Success", "content": { "text/html": { "schema": { "type": "string" } } } })
        } else {
            json!({ "description": "Success" })
        };
        operation["responses"][o.ok.0.to_string()] = ok;
        for (status, why) in other_successes(o.method, o.path) {
            operation["responses"][status.to_string()] = json!({ "description": why });
        }
        let mut params: Vec<Value> = o
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string", "minLength": 1 } }))
            .collect();
        params.extend(query_parameters(o.method, o.path));
        if !params.is_empty() {
            operation["parameters"] = json!(params);
        }
        if let Some((media, schema)) = o.body {
            operation["requestBody"] = json!({ "required": true, "content": { media: { "schema": { "$ref": format!("#/components/schemas/{schema}") } } } });
            if (o.method, o.path) == ("post", "/v1/images") {
                // The same route imports by URL when the body is JSON.
                operation["requestBody"]["content"][JSON] =
                    json!({ "schema": { "$ref": "#/components/schemas/Import" } });
            }
        } else if let Some(form) = page_form(o.method, o.path) {
            operation["requestBody"] = form;
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
