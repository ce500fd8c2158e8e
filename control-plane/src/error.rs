//! The one error type of the HTTP API, mapped to API.md's shape:
//! `{"error": {"type", "code", "message", "details"?}}`.
//!
//! Handlers return `Result<_, ApiError>` and use `?`; database and other
//! internal failures become a 500 whose body never carries their text (the
//! cause is logged, without request data).

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 422: the request is well-formed but a field is not acceptable.
    #[error("{message}")]
    Validation { message: String, details: Value },
    /// 400: malformed request (bad JSON, wrong content type, …).
    #[error("{0}")]
    BadRequest(String),
    /// 404.
    #[error("not found")]
    NotFound,
    /// 401: no valid credential.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: authenticated, but not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// 409: conflicts with the current state.
    #[error("{0}")]
    Conflict(String),
    /// 413.
    #[error("request body too large")]
    PayloadTooLarge,
    /// 429 with `Retry-After`.
    #[error("too many requests")]
    RateLimited { retry_after_secs: u64 },
    /// 503 with `Retry-After`: a bounded resource (password hashing, image
    /// decoding) is busy; refused at once rather than queued without bound.
    #[error("The server is busy. Please try again in {retry_after_secs} seconds.")]
    Overloaded { retry_after_secs: u64 },
    /// 413: a file over the plan's size limit (cut off while streaming).
    #[error("{message}")]
    FileTooLarge { message: String, anonymous: bool },
    /// 403: a plan limit (stored images) is reached.
    #[error("{message}")]
    QuotaExceeded { message: String, usage: Value },
    /// 408: the client stopped sending the request body.
    #[error("The request body stopped arriving; send it again.")]
    BodyTimeout,
    /// 503: the request took longer than the server allows.
    #[error("The request took too long. Please try again.")]
    Timeout,
    /// 409: the Idempotency-Key was used for a different request.
    #[error("This Idempotency-Key was already used for a different request.")]
    IdempotencyConflict,
    /// 409: the first request with this Idempotency-Key is still running.
    #[error("A request with this Idempotency-Key is still being processed.")]
    IdempotencyInProgress,
    /// 422: the URL to import is refused (not http(s), not a public
    /// address, …).
    #[error("We could not fetch that URL: {0}")]
    FetchFailed(String),
    /// 502 (the source answered an error or could not be reached) or 504
    /// (it was too slow): clients retry only the 504, as img.pro's do.
    #[error("We could not fetch that URL: {message}")]
    SourceFailed { message: String, timed_out: bool },
    /// 403: the image was taken down or removed, or an upload matched
    /// content that was (the hash blocklist).
    #[error("{0}")]
    MediaBlocked(String),
    /// 422: the image exists but its processing failed.
    #[error("This image could not be processed.")]
    MediaFailed,
    /// 500 while storing an upload: the cause is logged, never sent.
    #[error("We could not store the image. Please try again.")]
    UploadFailed(String),
    /// 500: the cause is logged, never sent.
    /// 410 on the edge-sync `changes` call: the edge must fetch a snapshot.
    #[error("Too far behind (or ahead of this log): fetch a snapshot.")]
    SnapshotRequired,
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn validation(field: &str, message: impl Into<String>) -> ApiError {
        let message = message.into();
        // Keyed by field, each with its reasons, as img.pro's clients read
        // them (they join a field's reasons for the person).
        ApiError::Validation { details: json!({ field: [message.clone()] }), message }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Validation { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Conflict(_) | ApiError::IdempotencyConflict | ApiError::IdempotencyInProgress => {
                StatusCode::CONFLICT
            }
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Overloaded { .. } | ApiError::Timeout => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::FileTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::QuotaExceeded { .. } | ApiError::MediaBlocked(_) => StatusCode::FORBIDDEN,
            ApiError::MediaFailed | ApiError::FetchFailed(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::SourceFailed { timed_out: true, .. } => StatusCode::GATEWAY_TIMEOUT,
            ApiError::SourceFailed { timed_out: false, .. } => StatusCode::BAD_GATEWAY,
            ApiError::SnapshotRequired => StatusCode::GONE,
            ApiError::UploadFailed(_) | ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// (type, code) as API.md names them.
    pub fn kind(&self) -> (&'static str, &'static str) {
        match self {
            ApiError::Validation { .. } => ("invalid_request_error", "validation_error"),
            ApiError::BadRequest(_) => ("invalid_request_error", "bad_request"),
            ApiError::NotFound => ("invalid_request_error", "not_found"),
            ApiError::Unauthorized(_) => ("authentication_error", "unauthorized"),
            ApiError::Forbidden(_) => ("permission_error", "forbidden"),
            ApiError::Conflict(_) => ("invalid_request_error", "conflict"),
            ApiError::PayloadTooLarge => ("invalid_request_error", "payload_too_large"),
            ApiError::RateLimited { .. } => ("rate_limit_error", "rate_limited"),
            ApiError::Overloaded { .. } => ("api_error", "overloaded"),
            ApiError::Timeout => ("api_error", "timeout"),
            ApiError::BodyTimeout => ("invalid_request_error", "request_timeout"),
            ApiError::FileTooLarge { .. } => ("invalid_request_error", "file_too_large"),
            ApiError::QuotaExceeded { .. } => ("quota_error", "quota_exceeded"),
            ApiError::MediaFailed => ("invalid_request_error", "media_failed"),
            ApiError::MediaBlocked(_) => ("permission_error", "media_blocked"),
            ApiError::FetchFailed(_) | ApiError::SourceFailed { .. } => ("processing_error", "fetch_failed"),
            ApiError::IdempotencyConflict => ("idempotency_error", "idempotency_key_conflict"),
            ApiError::IdempotencyInProgress => ("idempotency_error", "idempotency_key_in_progress"),
            ApiError::UploadFailed(_) => ("processing_error", "upload_failed"),
            ApiError::SnapshotRequired => ("invalid_request_error", imgcdn_shared::sync::SNAPSHOT_REQUIRED),
            ApiError::Internal(_) => ("api_error", "internal_error"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (kind, code) = self.kind();
        let message = match &self {
            ApiError::Internal(cause) | ApiError::UploadFailed(cause) => {
                tracing::error!(%cause, "request failed");
                match &self {
                    ApiError::UploadFailed(_) => self.to_string(),
                    _ => "Something went wrong on our side. Please try again.".to_string(),
                }
            }
            other => other.to_string(),
        };
        let mut error = json!({ "type": kind, "code": code, "message": message });
        match &self {
            ApiError::Validation { details, .. } => error["details"] = details.clone(),
            ApiError::RateLimited { retry_after_secs } | ApiError::Overloaded { retry_after_secs } => {
                error["action"] =
                    json!({ "type": "wait", "retry_after": retry_after_secs, "label": "Try again later" });
            }
            ApiError::FileTooLarge { anonymous: true, .. } => {
                error["action"] = json!({ "type": "signup", "label": "Sign up for larger uploads" });
            }
            ApiError::QuotaExceeded { usage, .. } => {
                error["usage"] = usage.clone();
                error["action"] = json!({ "type": "upgrade", "label": "Upgrade your plan" });
            }
            _ => {}
        }
        let mut resp = (self.status(), axum::Json(json!({ "error": error }))).into_response();
        if let ApiError::RateLimited { retry_after_secs } | ApiError::Overloaded { retry_after_secs } = self {
            resp.headers_mut().insert("retry-after", HeaderValue::from(retry_after_secs));
        }
        resp
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::Internal(format!("database: {e}"))
    }
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(r: axum::extract::rejection::JsonRejection) -> Self {
        use axum::extract::rejection::JsonRejection as J;
        match r {
            J::JsonDataError(e) => {
                // "Failed to deserialize …: {path}: {reason}": keyed by the
                // field's path like every validation error (`body` when the
                // body as a whole is wrong).
                let text = e.body_text();
                let rest = text.split_once("target type: ").map_or(text.as_str(), |(_, r)| r);
                let (field, reason) = match rest.split_once(": ") {
                    Some((path, reason)) if !path.is_empty() && !path.contains(' ') => (path, reason),
                    _ => ("body", rest),
                };
                ApiError::Validation {
                    message: "The request body has a field of the wrong type or a missing field.".into(),
                    details: json!({ field: [reason] }),
                }
            }
            J::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
            other => ApiError::BadRequest(other.body_text()),
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::to_bytes;

    async fn body(e: ApiError) -> (StatusCode, Value) {
        let resp = e.into_response();
        let status = resp.status();
        let bytes = to_bytes(resp.into_body(), 1 << 16).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn a_500_never_carries_its_cause() {
        let (status, json) =
            body(ApiError::Internal("database: password authentication failed for user x at 10.0.0.5".into())).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(json["error"]["type"], "api_error");
        let text = json.to_string();
        assert!(!text.contains("database") && !text.contains("10.0.0.5"), "{text}");
    }

    #[tokio::test]
    async fn errors_have_the_api_shape() {
        let (status, json) = body(ApiError::validation("email", "Enter a valid email address.")).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(json["error"]["code"], "validation_error");
        assert_eq!(json["error"]["type"], "invalid_request_error");
        assert_eq!(json["error"]["details"], serde_json::json!({"email": ["Enter a valid email address."]}));
        // A body serde cannot read is keyed by the field's path too.
        let app = axum::Router::new().route(
            "/",
            axum::routing::post(
                |crate::json::ApiJson(v): crate::json::ApiJson<std::collections::HashMap<String, u8>>| async move {
                    v.len().to_string()
                },
            ),
        );
        for (body, key) in [(r#"{"ttl": "x"}"#, "ttl"), ("[null]", "body")] {
            let req = axum::http::Request::post("/")
                .header("content-type", "application/json")
                .body(axum::body::Body::from(body))
                .unwrap();
            let resp = tower::ServiceExt::oneshot(app.clone(), req).await.unwrap();
            assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
            let bytes = axum::body::to_bytes(resp.into_body(), 1 << 16).await.unwrap();
            let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            assert!(json["error"]["details"][key][0].is_string(), "{body}: {json}");
        }
        let resp = ApiError::RateLimited { retry_after_secs: 42 }.into_response();
        assert_eq!(resp.headers()["retry-after"], "42");
        let (_, json) = body(ApiError::RateLimited { retry_after_secs: 42 }).await;
        assert_eq!(json["error"]["action"]["retry_after"], 42);
    }
}
