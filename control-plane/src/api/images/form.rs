//! Reading an upload request: a multipart form (`file` and the owner's
//! fields) or an import's JSON body.

use axum::extract::{FromRequest, Multipart, Request};
use axum::http::header;
use serde::Deserialize;
use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::images::fields::{check_caption, check_labels, check_metadata, json_field, parse_bool};
use crate::images::ttl;
use crate::images::upload::{too_large, Upload};
use crate::json::ApiJson;
use crate::AppState;

/// Longest text field accepted in a multipart form.
const MAX_TEXT_FIELD: usize = 64 * 1024;

/// Read the request: the URL to import if it is an import, and the
/// upload's fields (and file, for a multipart upload).
pub async fn read(
    state: &AppState,
    req: Request,
    max_file_bytes: u64,
    anonymous: bool,
) -> ApiResult<(Option<String>, Upload)> {
    let content_type =
        req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    if content_type.starts_with("multipart/form-data") {
        let mp = Multipart::from_request(req, state).await.map_err(|e| ApiError::BadRequest(e.body_text()))?;
        Ok((None, read_form(mp, max_file_bytes, anonymous).await?))
    } else if content_type.starts_with("application/json") {
        let ApiJson(body) = ApiJson::<ImportBody>::from_request(req, state).await?;
        let (url, upload) = import_fields(body)?;
        Ok((Some(url), upload))
    } else {
        Err(ApiError::BadRequest(
            "Send the image as multipart/form-data with a `file` field, or JSON {\"url\": …}.".into(),
        ))
    }
}

async fn read_form(mut form: Multipart, max_file_bytes: u64, anonymous: bool) -> ApiResult<Upload> {
    let bad =
        |e: axum::extract::multipart::MultipartError| ApiError::BadRequest(format!("Malformed multipart body: {e}"));
    let mut out = Upload::default();
    while let Some(mut field) = form.next_field().await.map_err(bad)? {
        let name = field.name().unwrap_or("").to_string();
        if name == "file" {
            out.filename = field.file_name().map(|f| f.chars().take(255).collect());
            let mut buf = Vec::new();
            while let Some(chunk) = field.chunk().await.map_err(bad)? {
                if (buf.len() + chunk.len()) as u64 > max_file_bytes {
                    // Stop reading here: the rest of the body is never buffered.
                    return Err(too_large(anonymous, max_file_bytes));
                }
                buf.extend_from_slice(&chunk);
            }
            out.file = Some(buf);
            continue;
        }
        let text = field.text().await.map_err(bad)?;
        if text.len() > MAX_TEXT_FIELD {
            return Err(ApiError::validation(&name, "This field is too long."));
        }
        match name.as_str() {
            "caption" => out.caption = Some(check_caption(&text)?),
            "public" => out.public = Some(parse_bool("public", &text)?),
            "ttl" => out.ttl = Some(ttl::parse(&text).map_err(|m| ApiError::validation("ttl", m))?),
            "labels" => out.labels = check_labels(json_field("labels", &text)?)?,
            "metadata" => out.metadata = check_metadata(json_field("metadata", &text)?)?,
            _ => {} // unknown fields are ignored
        }
    }
    Ok(out)
}

#[derive(Deserialize)]
pub struct ImportBody {
    url: String,
    caption: Option<String>,
    public: Option<bool>,
    ttl: Option<Value>,
    labels: Option<Value>,
    metadata: Option<Value>,
}

/// The fields of an import request (the URL is fetched later, after the
/// idempotency check).
fn import_fields(body: ImportBody) -> ApiResult<(String, Upload)> {
    let ttl = ttl::from_json(body.ttl.as_ref()).map_err(|m| ApiError::validation("ttl", m))?;
    let upload = Upload {
        caption: body.caption.as_deref().map(check_caption).transpose()?,
        public: body.public,
        ttl,
        labels: body.labels.map(check_labels).transpose()?.unwrap_or_default(),
        metadata: body.metadata.map(check_metadata).transpose()?.unwrap_or_default(),
        ..Upload::default()
    };
    Ok((body.url, upload))
}
