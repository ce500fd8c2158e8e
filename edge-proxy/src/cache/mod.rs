//! The edge's two cache tiers and the object they hold.
//!
//! - [`memory`]: sharded SIEVE, bounded by bytes; the hot set.
//! - [`disk`]: files with a checksum, bounded by bytes, survives restarts.
//!
//! Both hold a [`CachedObject`]: the bytes plus the manifest facts needed
//! to answer a request (type, ETag, expiry) without going back to storage.

pub mod disk;
pub mod memory;

use std::sync::Arc;

use bytes::Bytes;
use http::HeaderValue;
use imgcdn_shared::{Format, Manifest};

/// An image ready to serve: cheap to clone (the body is shared).
#[derive(Clone)]
pub struct CachedObject {
    pub body: Bytes,
    pub meta: Arc<ObjectMeta>,
}

/// What the edge needs from a manifest, with header values precomputed so
/// a hit does no formatting.
#[derive(Debug)]
pub struct ObjectMeta {
    pub manifest: Manifest,
    pub format: Format,
    /// `"<sha256 hex>"`: a strong validator from the content hash.
    pub etag: HeaderValue,
    pub content_type: HeaderValue,
    /// `expires_at` as unix seconds.
    pub expires_at: Option<i64>,
    /// `Content-Length` of the whole object (`manifest.bytes`), formatted once.
    content_length: HeaderValue,
}

impl ObjectMeta {
    /// Build from a manifest that has already passed `Manifest::from_json`.
    pub fn new(manifest: Manifest) -> Result<ObjectMeta, imgcdn_shared::manifest::ManifestError> {
        let format = manifest.format()?;
        let etag = HeaderValue::from_str(&format!("\"{}\"", manifest.sha256))
            .map_err(|_| imgcdn_shared::manifest::ManifestError::Sha256)?;
        Ok(ObjectMeta {
            format,
            etag,
            content_type: HeaderValue::from_static(format.content_type()),
            expires_at: manifest.expires_at.map(|t| t.unix_timestamp()),
            content_length: HeaderValue::from(manifest.bytes),
            manifest,
        })
    }

    /// The `Content-Length` value for a body of `len` bytes: the precomputed
    /// one when `len` is the manifest's length (always, for a verified
    /// object), else formatted.
    pub fn content_length(&self, len: u64) -> HeaderValue {
        if len == self.manifest.bytes {
            self.content_length.clone()
        } else {
            HeaderValue::from(len)
        }
    }

    /// Expired at unix time `now` (inclusive, as in the manifest).
    pub fn is_expired(&self, now: i64) -> bool {
        self.expires_at.is_some_and(|e| now >= e)
    }
}

impl CachedObject {
    pub fn new(body: Bytes, meta: ObjectMeta) -> Self {
        CachedObject { body, meta: Arc::new(meta) }
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;

    pub fn object(body: &[u8], expires_at: Option<i64>) -> CachedObject {
        let expires_at = expires_at.map(|s| time::OffsetDateTime::from_unix_timestamp(s).unwrap());
        let manifest = imgcdn_shared::testing::png_manifest(body, expires_at);
        CachedObject::new(Bytes::copy_from_slice(body), ObjectMeta::new(manifest).unwrap())
    }
}
