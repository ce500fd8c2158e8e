//! Origin reads: the manifest, then the object, from the public store
//! through OpenDAL.
//!
//! A read is trusted only when the object matches its manifest (length and
//! SHA-256): an object being replaced, or damaged in storage, is a 502,
//! never served and never cached. Concurrent misses for one id share one
//! read ([`Flight`]); at most `max_concurrent` reads run at once; each has a
//! deadline. "Not found" answers are remembered for a few seconds.
//!
//! Objects larger than the memory tier takes (`memory.max_object_bytes`)
//! are not read into memory: they are streamed from the store into a new
//! disk-tier entry (chunk CRCs and SHA-256 computed on the way; at most one
//! read buffer held), verified, renamed into place, and every request
//! waiting on the read is then served from that entry, chunk by chunk. Only
//! when the disk tier cannot take the object (its budget is smaller, or
//! everything in it is being written) is a large object read whole, and the
//! requests serving it then hold its size against the send budget
//! ([`crate::budget`]).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use imgcdn_shared::storage::manifest_key;
use imgcdn_shared::{ImageId, Manifest};
use moka::sync::Cache;
use opendal::{ErrorKind, Operator};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use crate::cache::disk::{DiskObject, DiskTier};
use crate::cache::{CachedObject, ObjectMeta};
use crate::config::OriginConfig;
use crate::flight::Flight;
use crate::metrics::Metrics;

/// Why an origin read gave no object. Only the variant reaches the client
/// (as a status); details go to the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginError {
    #[error("no manifest")]
    NotFound,
    #[error("origin read timed out")]
    Timeout,
    #[error("storage error: {0}")]
    Unavailable(String),
    #[error("object does not match its manifest: {0}")]
    Mismatch(String),
}

impl OriginError {
    pub fn status(&self) -> u16 {
        match self {
            OriginError::NotFound => 404,
            OriginError::Timeout => 504,
            OriginError::Unavailable(_) | OriginError::Mismatch(_) => 502,
        }
    }

    fn metric_kind(&self) -> &'static str {
        match self {
            OriginError::NotFound => "not_found",
            OriginError::Timeout => "timeout",
            OriginError::Unavailable(_) => "unavailable",
            OriginError::Mismatch(_) => "mismatch",
        }
    }
}

/// What an origin read produced.
#[derive(Clone)]
pub enum Fetched {
    /// The whole object in memory.
    Whole(CachedObject),
    /// A large object, staged into the disk tier and open there.
    Disk(Arc<DiskObject>),
}

impl Fetched {
    pub fn meta(&self) -> &Arc<ObjectMeta> {
        match self {
            Fetched::Whole(o) => &o.meta,
            Fetched::Disk(o) => &o.meta,
        }
    }
}

/// Where large objects are streamed to instead of memory.
pub struct Staging {
    pub disk: Arc<DiskTier>,
    /// Objects with more bytes than this are staged.
    pub above: u64,
}

pub struct Origin {
    op: Operator,
    limit: Semaphore,
    timeout: Duration,
    flight: Flight<ImageId, Result<Fetched, OriginError>>,
    staging: Option<Staging>,
    absent: Option<Cache<ImageId, ()>>,
    metrics: Arc<Metrics>,
}

/// Bodies above this are hashed on a blocking thread.
const INLINE_HASH_MAX: usize = 64 * 1024;

impl Origin {
    pub fn new(op: Operator, cfg: &OriginConfig, metrics: Arc<Metrics>, staging: Option<Staging>) -> Origin {
        let absent = (cfg.negative_ttl_secs > 0).then(|| {
            Cache::builder().max_capacity(100_000).time_to_live(Duration::from_secs(cfg.negative_ttl_secs)).build()
        });
        Origin {
            op,
            limit: Semaphore::new(cfg.max_concurrent),
            timeout: Duration::from_millis(cfg.timeout_ms),
            flight: Flight::default(),
            staging,
            absent,
            metrics,
        }
    }

    /// Fetch `id`, sharing the read with concurrent callers. An object whose
    /// manifest has expired at `now` is not found. `on_loaded` runs once per
    /// successful whole read (not once per caller): that is where caches are
    /// filled. A staged object is already in the disk tier.
    pub async fn fetch(
        &self,
        id: ImageId,
        now: i64,
        on_loaded: impl FnOnce(&CachedObject),
    ) -> Result<Fetched, OriginError> {
        if self.absent.as_ref().is_some_and(|c| c.contains_key(&id)) {
            return Err(OriginError::NotFound);
        }
        self.flight
            .run(id, || async {
                let started = std::time::Instant::now();
                let result = match tokio::time::timeout(self.timeout, self.read(id)).await {
                    Ok(Ok(obj)) if obj.meta().is_expired(now) => Err(OriginError::NotFound),
                    Ok(r) => r,
                    Err(_) => Err(OriginError::Timeout),
                };
                self.metrics.origin_read_seconds.observe(started.elapsed().as_secs_f64());
                if let Ok(Fetched::Whole(obj)) = &result {
                    on_loaded(obj);
                }
                if let Err(e) = &result {
                    self.metrics.origin_errors.with_label_values(&[e.metric_kind()]).inc();
                    match e {
                        OriginError::NotFound => {
                            if let Some(c) = &self.absent {
                                c.insert(id, ());
                            }
                        }
                        // The id is not secret and says nothing of the visitor.
                        _ => log::warn!("origin read for {id} failed: {e}"),
                    }
                }
                result
            })
            .await
    }

    /// Whether the public store holds a manifest for `id` (read-only, one
    /// `stat`; bounded like reads). Used before dropping a `hide` entry.
    pub async fn manifest_exists(&self, id: &ImageId) -> Result<bool, OriginError> {
        let _permit = self.limit.acquire().await.expect("semaphore never closed");
        match tokio::time::timeout(self.timeout, self.op.stat(&manifest_key(id))).await {
            Ok(Ok(_)) => Ok(true),
            Ok(Err(e)) if e.kind() == ErrorKind::NotFound => Ok(false),
            Ok(Err(e)) => Err(OriginError::Unavailable(e.to_string())),
            Err(_) => Err(OriginError::Timeout),
        }
    }

    /// Forget a remembered "not found" for `id` (e.g. it was just published).
    pub fn forget_absent(&self, id: &ImageId) {
        if let Some(c) = &self.absent {
            c.invalidate(id);
        }
    }

    async fn read(&self, id: ImageId) -> Result<Fetched, OriginError> {
        let _permit = self.limit.acquire().await.expect("semaphore never closed");
        self.metrics.origin_reads.inc();
        let manifest = match self.op.read(&manifest_key(&id)).await {
            Ok(buf) => {
                Manifest::from_json(&buf.to_bytes()).map_err(|e| OriginError::Mismatch(format!("manifest: {e}")))?
            }
            Err(e) if e.kind() == ErrorKind::NotFound => return Err(OriginError::NotFound),
            Err(e) => return Err(OriginError::Unavailable(e.to_string())),
        };
        if let Some(staging) = self.staging.as_ref().filter(|s| manifest.bytes > s.above) {
            if let Some(obj) = self.stage(staging, id, &manifest).await? {
                return Ok(Fetched::Disk(obj));
            }
        }
        let body: Bytes = match self.op.read(&manifest.object_key(&id)).await {
            // Copied into an allocation of exactly its size. A backend may
            // hand back a slice of a larger pooled read buffer (OpenDAL's fs
            // service does: 256 KiB and up), and the cache tiers would keep
            // that whole allocation alive as long as the object is cached,
            // so the memory tier's byte budget would not bound the RSS.
            Ok(buf) => Bytes::from(buf.to_vec()),
            // A manifest without its object is a broken write; treat as absent.
            Err(e) if e.kind() == ErrorKind::NotFound => return Err(OriginError::NotFound),
            Err(e) => return Err(OriginError::Unavailable(e.to_string())),
        };
        if body.len() as u64 != manifest.bytes {
            return Err(OriginError::Mismatch(format!("{} bytes, manifest says {}", body.len(), manifest.bytes)));
        }
        let digest = if body.len() <= INLINE_HASH_MAX {
            hex::encode(Sha256::digest(&body))
        } else {
            let b = body.clone();
            tokio::task::spawn_blocking(move || hex::encode(Sha256::digest(&b)))
                .await
                .map_err(|e| OriginError::Unavailable(e.to_string()))?
        };
        if digest != manifest.sha256 {
            return Err(OriginError::Mismatch("sha256 differs".into()));
        }
        let meta = ObjectMeta::new(manifest).map_err(|e| OriginError::Mismatch(e.to_string()))?;
        Ok(Fetched::Whole(CachedObject::new(body, meta)))
    }

    /// Stream the object into a new disk-tier entry, verifying it on the
    /// way. `Ok(None)`: the disk tier cannot take it (read it whole).
    async fn stage(
        &self,
        staging: &Staging,
        id: ImageId,
        manifest: &Manifest,
    ) -> Result<Option<Arc<DiskObject>>, OriginError> {
        use futures_util::TryStreamExt;
        let blocking = |e: tokio::task::JoinError| OriginError::Unavailable(e.to_string());
        let disk_err = |e: std::io::Error| OriginError::Unavailable(format!("disk tier: {e}"));
        let (disk, m) = (staging.disk.clone(), manifest.clone());
        let Some(mut writer) =
            tokio::task::spawn_blocking(move || disk.begin(id, &m)).await.map_err(blocking)?.map_err(disk_err)?
        else {
            self.metrics.disk_full.inc();
            return Ok(None);
        };
        let store_err = |e: opendal::Error| match e.kind() {
            ErrorKind::NotFound => OriginError::NotFound,
            _ => OriginError::Unavailable(e.to_string()),
        };
        let reader = self.op.reader(&manifest.object_key(&id)).await.map_err(store_err)?;
        let mut stream = reader.into_stream(..).await.map_err(store_err)?;
        let mut hasher = Sha256::new();
        let mut len = 0u64;
        while let Some(buf) = stream.try_next().await.map_err(store_err)? {
            len += buf.len() as u64;
            if len > manifest.bytes {
                return Err(OriginError::Mismatch(format!("more than the {} bytes the manifest says", manifest.bytes)));
            }
            // Hash and write on a blocking thread; one buffer in flight.
            (writer, hasher) = tokio::task::spawn_blocking(move || {
                for piece in buf {
                    hasher.update(&piece);
                    writer.write(&piece)?;
                }
                Ok::<_, std::io::Error>((writer, hasher))
            })
            .await
            .map_err(blocking)?
            .map_err(disk_err)?;
        }
        if len != manifest.bytes {
            return Err(OriginError::Mismatch(format!("{len} bytes, manifest says {}", manifest.bytes)));
        }
        if hex::encode(hasher.finalize()) != manifest.sha256 {
            return Err(OriginError::Mismatch("sha256 differs".into()));
        }
        let obj = tokio::task::spawn_blocking(move || writer.finish()).await.map_err(blocking)?.map_err(disk_err)?;
        Ok(Some(obj))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use imgcdn_shared::storage::{object_key, StoreConfig};

    #[tokio::test]
    async fn a_fetched_body_owns_exactly_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let id: ImageId = "abcdefgh".parse().unwrap();
        let body = vec![7u8; 3000];
        let manifest = imgcdn_shared::testing::png_manifest(&body, None);
        std::fs::create_dir_all(dir.path().join("objects")).unwrap();
        std::fs::create_dir_all(dir.path().join("manifests")).unwrap();
        std::fs::write(dir.path().join(object_key(&id)), &body).unwrap();
        std::fs::write(dir.path().join(manifest_key(&id)), manifest.to_json()).unwrap();
        let op = StoreConfig::fs(dir.path().to_string_lossy()).operator().unwrap();
        let origin = Origin::new(op, &OriginConfig::default(), Arc::new(Metrics::new()), None);
        let Fetched::Whole(obj) = origin.fetch(id, 0, |_| {}).await.unwrap() else { panic!("not whole") };
        assert_eq!(&obj.body[..], &body[..]);
        // Cached objects must not pin a larger (pooled) read buffer: the
        // body is the only owner of an allocation of exactly its length.
        let owned = obj.body.try_into_mut().expect("body shares its allocation");
        assert_eq!(owned.capacity(), body.len());
    }
}
