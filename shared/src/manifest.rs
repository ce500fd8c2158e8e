//! `manifests/{id}.json`: what makes an object servable.
//!
//! The control plane writes `objects/{id}` first and this manifest last;
//! the edge serves nothing without it. `expires_at` is enforced by the
//! edge at serve time, so an expiring upload is never served past its
//! window even if the control plane's sweep runs late.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{Format, StorageName};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// MIME type of the stored bytes, e.g. `image/png`.
    pub content_type: String,
    /// Exact length of `objects/{id}`.
    pub bytes: u64,
    /// Lowercase hex SHA-256 of `objects/{id}`; the edge's strong ETag.
    pub sha256: String,
    pub width: u32,
    pub height: u32,
    /// After this instant the image is not served. `null` = no expiry.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    /// Whether the edge may transform it (false for SVG, BMP, ICO).
    pub transformable: bool,
    /// Storage key of the bytes when they are not `objects/{id}`: identical
    /// bytes uploaded again within a team are stored once and shared by
    /// every id that shows them. Always under `objects/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    /// The owning team's storage name: the image is served at
    /// `/{storage}/{id}.{ext}` and at no other storage. `None` for
    /// anonymous uploads and for manifests written before storage names
    /// (served at the shard form `/{shard}/{id}.{ext}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageName>,
    /// The shard form serves too: the image was published before its team
    /// had a storage name, and the URLs handed out then keep working.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shard_url: bool,
}

/// Why a manifest cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is not valid JSON for this schema: {0}")]
    Json(#[from] serde_json::Error),
    #[error("manifest content type {0:?} is not a format we serve")]
    ContentType(String),
    #[error("manifest sha256 is not 64 lowercase hex characters")]
    Sha256,
    #[error("manifest object key is not a key under objects/")]
    ObjectKey,
}

impl Manifest {
    /// Parse and check the fields the edge relies on.
    pub fn from_json(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        let m: Manifest = serde_json::from_slice(bytes)?;
        m.format()?;
        if m.sha256.len() != 64 || !m.sha256.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(ManifestError::Sha256);
        }
        Ok(m)
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("manifest serialises")
    }

    pub fn format(&self) -> Result<Format, ManifestError> {
        Format::from_content_type(&self.content_type)
            .ok_or_else(|| ManifestError::ContentType(self.content_type.clone()))
    }

    /// The storage key of the bytes of image `id`.
    pub fn object_key(&self, id: &crate::ImageId) -> String {
        self.object.clone().unwrap_or_else(|| crate::storage::object_key(id))
    }

    /// True when `now` is at or past `expires_at`.
    pub fn is_expired(&self, now: OffsetDateTime) -> bool {
        self.expires_at.is_some_and(|e| now >= e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            content_type: "image/png".into(),
            bytes: 3,
            sha256: "a".repeat(64),
            width: 1,
            height: 1,
            expires_at: Some(time::macros::datetime!(2030-01-01 0:00 UTC)),
            transformable: true,
            object: None,
            storage: None,
            shard_url: false,
        }
    }

    #[test]
    fn storage_and_shard_url_are_written_only_when_set() {
        let mut m = sample();
        let plain = String::from_utf8(m.to_json()).unwrap();
        assert!(!plain.contains("storage") && !plain.contains("shard_url"), "{plain}");
        m.storage = Some("k3v9x0q2m7za".parse().unwrap());
        m.shard_url = true;
        let json = String::from_utf8(m.to_json()).unwrap();
        assert!(json.contains("\"storage\": \"k3v9x0q2m7za\"") && json.contains("\"shard_url\": true"), "{json}");
        assert_eq!(Manifest::from_json(json.as_bytes()).unwrap(), m);
        let bad = json.replace("k3v9x0q2m7za", "../../etc");
        assert!(Manifest::from_json(bad.as_bytes()).is_err(), "a storage name is validated");
    }

    #[test]
    fn json_round_trip_uses_rfc3339() {
        let m = sample();
        let json = m.to_json();
        assert!(String::from_utf8_lossy(&json).contains("2030-01-01T00:00:00Z"));
        assert_eq!(Manifest::from_json(&json).unwrap(), m);
    }

    #[test]
    fn the_object_key_defaults_to_the_id_and_can_point_at_shared_bytes() {
        let id: crate::ImageId = "aB3dE6gH".parse().unwrap();
        let mut m = sample();
        assert_eq!(m.object_key(&id), "objects/aB3dE6gH");
        assert!(!String::from_utf8(m.to_json()).unwrap().contains("\"object\""), "absent when default");
        m.object = Some("objects/zzzzzzzz".into());
        let back = Manifest::from_json(&m.to_json()).unwrap();
        assert_eq!(back.object_key(&id), "objects/zzzzzzzz");
    }

    #[test]
    fn missing_expiry_means_forever() {
        let json = br#"{"content_type":"image/gif","bytes":1,"sha256":"0000000000000000000000000000000000000000000000000000000000000000","width":1,"height":1,"transformable":true}"#;
        let m = Manifest::from_json(json).unwrap();
        assert!(!m.is_expired(time::macros::datetime!(2999-01-01 0:00 UTC)));
    }

    #[test]
    fn expiry_is_inclusive() {
        let m = sample();
        assert!(!m.is_expired(time::macros::datetime!(2029-12-31 23:59:59 UTC)));
        assert!(m.is_expired(time::macros::datetime!(2030-01-01 0:00 UTC)));
    }

    #[test]
    fn rejects_bad_fields() {
        let mut m = sample();
        m.content_type = "text/html".into();
        assert!(matches!(Manifest::from_json(&m.to_json()), Err(ManifestError::ContentType(_))));
        let mut m = sample();
        m.sha256 = "XYZ".into();
        assert!(matches!(Manifest::from_json(&m.to_json()), Err(ManifestError::Sha256)));
        assert!(Manifest::from_json(b"{not json").is_err());
    }
}
