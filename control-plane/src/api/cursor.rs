//! Opaque pagination cursors: the `(time, id)` of the last item of a page,
//! for lists ordered newest first.

use base64::Engine;

use crate::error::{ApiError, ApiResult};

pub fn encode(at: i64, id: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{at}:{id}"))
}

pub fn decode(c: &str) -> ApiResult<(i64, String)> {
    let bad = || ApiError::validation("cursor", "This cursor is not one we gave out.");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(c).map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let (t, id) = text.split_once(':').ok_or_else(bad)?;
    Ok((t.parse().map_err(|_| bad())?, id.to_string()))
}

/// A `limit` query parameter: 1 to 100, 20 when absent.
pub fn limit(raw: Option<&String>) -> ApiResult<usize> {
    match raw {
        Some(l) => l
            .parse()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| ApiError::validation("limit", "limit is 1 to 100.")),
        None => Ok(20),
    }
}
