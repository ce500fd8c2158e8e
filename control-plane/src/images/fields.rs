//! The owner's fields of an image, checked the same way on every surface
//! (multipart upload, import, PATCH): caption, labels, metadata, `public`.

use serde_json::{Map, Value};

use crate::error::{ApiError, ApiResult};

pub const MAX_CAPTION: usize = 1000;
pub const MAX_LABELS: usize = 50;
pub const MAX_METADATA_BYTES: usize = 8 * 1024;

/// `true`/`1`/`yes` or `false`/`0`/`no`, as form fields send booleans.
pub fn parse_bool(field: &str, v: &str) -> ApiResult<bool> {
    match v.trim() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(ApiError::validation(field, "Use true or false.")),
    }
}

/// Labels: a JSON object of up to 50 string values.
pub fn check_labels(v: Value) -> ApiResult<Map<String, Value>> {
    let Value::Object(map) = v else {
        return Err(ApiError::validation("labels", "Labels are a JSON object of strings."));
    };
    if map.len() > MAX_LABELS {
        return Err(ApiError::validation("labels", format!("At most {MAX_LABELS} labels.")));
    }
    for (k, v) in &map {
        let ok = !k.is_empty() && k.len() <= 64 && v.as_str().is_some_and(|s| s.len() <= 256);
        if !ok {
            return Err(ApiError::validation(
                "labels",
                "Label keys are 1–64 characters and values strings of at most 256.",
            ));
        }
    }
    Ok(map)
}

/// Metadata: a JSON object of at most 8 KiB.
pub fn check_metadata(v: Value) -> ApiResult<Map<String, Value>> {
    let Value::Object(map) = v else {
        return Err(ApiError::validation("metadata", "Metadata is a JSON object."));
    };
    if serde_json::to_vec(&map).map_or(0, |b| b.len()) > MAX_METADATA_BYTES {
        return Err(ApiError::validation("metadata", "Metadata is at most 8 KiB of JSON."));
    }
    Ok(map)
}

/// A caption of at most 1000 characters.
pub fn check_caption(c: &str) -> ApiResult<String> {
    if c.chars().count() > MAX_CAPTION {
        return Err(ApiError::validation("caption", format!("A caption is at most {MAX_CAPTION} characters.")));
    }
    Ok(c.to_string())
}

/// A form field that carries JSON.
pub fn json_field(field: &str, text: &str) -> ApiResult<Value> {
    serde_json::from_str(text).map_err(|_| ApiError::validation(field, format!("{field} must be JSON.")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn labels_are_a_small_object_of_short_strings() {
        assert!(check_labels(json!({"a": "b"})).is_ok());
        assert!(check_labels(json!(["a"])).is_err());
        assert!(check_labels(json!({"a": 1})).is_err());
        assert!(check_labels(json!({"": "b"})).is_err());
        assert!(check_labels(json!({"k": "v".repeat(257)})).is_err());
        let many: Map<String, Value> = (0..51).map(|i| (format!("k{i}"), json!("v"))).collect();
        assert!(check_labels(Value::Object(many)).is_err());
    }

    #[test]
    fn metadata_caption_and_booleans() {
        assert!(check_metadata(json!({"x": [1, 2]})).is_ok());
        assert!(check_metadata(json!({"x": "y".repeat(9000)})).is_err());
        assert!(check_metadata(json!("text")).is_err());
        assert!(check_caption(&"é".repeat(1000)).is_ok());
        assert!(check_caption(&"é".repeat(1001)).is_err());
        assert!(parse_bool("public", "yes").unwrap() && !parse_bool("public", "0").unwrap());
        assert!(parse_bool("public", "maybe").is_err());
        assert!(json_field("labels", "{").is_err());
    }
}
