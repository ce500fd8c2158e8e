//! Form plumbing shared by the pages: the CSRF field and the forms that
//! carry nothing else, the upload form's own token, reading fields, and
//! turning a page form into the body of the API handler it calls.

use axum::response::Response;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::Value;

use crate::accounts::sessions::Session;
use crate::error::{ApiError, ApiResult};
use crate::secrets::hash_token;

/// The hidden CSRF field of every form of a signed-in user that changes
/// something (checked by [`crate::web::session::check_csrf`]).
pub fn csrf_field(session: &Session) -> Markup {
    csrf_input(&session.csrf_token)
}

/// A hidden `csrf` field with `value` (the operator console derives its own).
pub fn csrf_input(value: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(value); }
}

/// A form whose only field is the CSRF token (a button that does one thing).
#[derive(Deserialize, Default)]
pub struct CsrfForm {
    #[serde(default)]
    pub csrf: String,
}

/// A signed-in form with no field but its token (checked by
/// [`crate::web::session::SignedForm`]): a button that does one thing.
#[derive(Deserialize, Default)]
pub struct NoFields {}

/// `?token=…` of a page a mail links to, or the form on it that posts the
/// token back.
#[derive(Deserialize, Default)]
pub struct TokenQuery {
    #[serde(default)]
    pub token: String,
}

/// The token of the upload form without script (`POST /upload?t=…`): its
/// multipart body is read by the upload itself, so the token travels in
/// the URL, where it can be seen (history, logs). It is bound to that one
/// purpose: SHA-256 of a fixed label and the session's CSRF token, which
/// stays secret (it does not reveal it, and is good for no other form).
pub fn upload_token(session: &Session) -> String {
    hash_token(&format!("imgcdn-upload:{}", session.csrf_token))
}

/// Percent-encoding for a query value.
pub fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// An optional text field: trimmed, `None` when nothing is left.
pub fn optional(v: &str) -> Option<String> {
    Some(v.trim()).filter(|v| !v.is_empty()).map(str::to_string)
}

/// A read-only field with a copy button (the script shows the button).
pub fn copy_row(id: &str, label: &str, value: &str) -> Markup {
    html! {
        label for=(id) { (label) }
        div.copy-row {
            input type="text" id=(id) readonly value=(value);
            button.small type="button" data-copy=(format!("#{id}")) hidden { "Copy" }
        }
    }
}

/// A page form's fields as the body an API handler takes, so the page goes
/// through the handler's own checks. Values the body cannot hold (a role
/// that does not exist) are the form's problem, said plainly.
pub fn api_body<T: serde::de::DeserializeOwned>(v: Value) -> ApiResult<crate::json::ApiJson<T>> {
    serde_json::from_value(v).map(crate::json::ApiJson).map_err(|e| {
        tracing::debug!(error = %e, "a page form does not fit its API body");
        ApiError::validation("form", "Some of this form's values are not ones we accept. Check them and try again.")
    })
}

/// The JSON body of an API handler's answer (the handlers that answer
/// `201` return a whole `Response`).
pub async fn json_of(response: Response) -> ApiResult<Value> {
    // One object of ours (a key, a team, an image): far below this.
    const ANSWER_MAX: usize = 1 << 20;
    let bytes = axum::body::to_bytes(response.into_body(), ANSWER_MAX)
        .await
        .map_err(|e| ApiError::Internal(format!("reading an answer: {e}")))?;
    serde_json::from_slice(&bytes).map_err(|e| ApiError::Internal(format!("reading an answer: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn optional_fields_are_trimmed_and_empty_is_none() {
        assert_eq!(optional("  note "), Some("note".to_string()));
        assert_eq!(optional("   "), None);
        assert_eq!(optional(""), None);
    }

    #[test]
    fn a_form_that_does_not_fit_the_body_is_a_validation_error() {
        #[derive(Deserialize)]
        struct Body {
            n: u32,
        }
        assert!(matches!(api_body::<Body>(json!({ "n": 3 })), Ok(crate::json::ApiJson(Body { n: 3 }))));
        let Err(e) = api_body::<Body>(json!({ "n": "three" })) else { panic!("a string is not a number") };
        assert_eq!(e.status(), axum::http::StatusCode::UNPROCESSABLE_ENTITY);
        assert!(!e.to_string().contains("three") && !e.to_string().contains("invalid type"), "{e}");
    }

    #[test]
    fn the_upload_token_is_bound_to_its_purpose() {
        let session = |csrf: &str| Session {
            user_id: "usr_1".into(),
            session_id: "ses_1".into(),
            csrf_token: csrf.into(),
            email: "a@example.com".into(),
            email_verified: true,
        };
        let s = session("csrf-abc");
        let token = upload_token(&s);
        assert_eq!(token, hash_token("imgcdn-upload:csrf-abc"));
        assert_eq!(token.len(), 64);
        assert!(!token.contains("csrf-abc"));
        assert_ne!(token, upload_token(&session("csrf-abd")));
        use crate::web::session::check_upload_token;
        assert!(check_upload_token(&s, &token).is_ok());
        for wrong in ["", "csrf-abc", &hash_token("csrf-abc")] {
            assert_eq!(check_upload_token(&s, wrong).unwrap_err().status(), axum::http::StatusCode::FORBIDDEN);
        }
    }
}
