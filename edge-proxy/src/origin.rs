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

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use imgcdn_shared::storage::manifest_key;
use imgcdn_shared::{ImageId, Manifest};
use moka::sync::Cache;
use opendal::{ErrorKind, Operator};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use crate::cache::disk::{DiskObject, DiskTier, DiskWriter};
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
    /// The store's directory when it is a local one (`fs`): manifests and
    /// objects are then read with plain file reads, both on one blocking
    /// thread (see [`read_local`]).
    local: Option<PathBuf>,
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
        let info = op.info();
        let local = (info.scheme() == "fs").then(|| PathBuf::from(info.root()));
        Origin {
            op,
            local,
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
        if let Some(root) = &self.local {
            let root = root.clone();
            let staging = self.staging.as_ref().map(|s| (s.disk.clone(), s.above, self.metrics.clone()));
            return tokio::task::spawn_blocking(move || read_local(&root, id, staging))
                .await
                .map_err(|e| OriginError::Unavailable(e.to_string()))?;
        }
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
        self.read_object(id, manifest).await
    }

    /// Read an object whole through OpenDAL and check it against `manifest`.
    async fn read_object(&self, id: ImageId, manifest: Manifest) -> Result<Fetched, OriginError> {
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
        let verified = if body.len() <= INLINE_HASH_MAX {
            verify(body, manifest)
        } else {
            tokio::task::spawn_blocking(move || verify(body, manifest))
                .await
                .map_err(|e| OriginError::Unavailable(e.to_string()))?
        };
        Ok(Fetched::Whole(verified?))
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

/// Check `body` against its manifest (length, then SHA-256) and make the
/// cached object.
fn verify(body: Bytes, manifest: Manifest) -> Result<CachedObject, OriginError> {
    if body.len() as u64 != manifest.bytes {
        return Err(OriginError::Mismatch(format!("{} bytes, manifest says {}", body.len(), manifest.bytes)));
    }
    if hex::encode(Sha256::digest(&body)) != manifest.sha256 {
        return Err(OriginError::Mismatch("sha256 differs".into()));
    }
    let meta = ObjectMeta::new(manifest).map_err(|e| OriginError::Mismatch(e.to_string()))?;
    Ok(CachedObject::new(body, meta))
}

/// The largest manifest read; a longer file is not a manifest we wrote.
const MANIFEST_MAX: u64 = 64 * 1024;

/// Read size when a large object is staged from a local store.
const STAGE_READ: usize = 256 * 1024;

/// Read `id` from the local store at `root` and verify it, on the calling
/// (blocking) thread: the manifest, then the object whole, or, when it is
/// larger than staging's threshold and the disk tier has room, streamed
/// into a new disk-tier entry (as [`Origin::stage`] does from a remote
/// store). Plain file reads into buffers of the files' sizes.
///
/// The same files OpenDAL's `fs` service reads, without its costs that
/// dominate a miss on small objects: every read through it is a 2 MiB
/// zero-filled buffer plus a final empty read, and opening, reading and
/// reading again are each a hop to a blocking thread (six per miss, where
/// this is one).
fn read_local(
    root: &Path,
    id: ImageId,
    staging: Option<(Arc<DiskTier>, u64, Arc<Metrics>)>,
) -> Result<Fetched, OriginError> {
    let manifest = read_file(&confined(root, &manifest_key(&id))?, MANIFEST_MAX)?;
    let manifest = Manifest::from_json(&manifest).map_err(|e| OriginError::Mismatch(format!("manifest: {e}")))?;
    let path = confined(root, &manifest.object_key(&id))?;
    if let Some((disk, _, metrics)) = staging.filter(|(_, above, _)| manifest.bytes > *above) {
        let disk_err = |e: std::io::Error| OriginError::Unavailable(format!("disk tier: {e}"));
        match disk.begin(id, &manifest).map_err(disk_err)? {
            Some(writer) => return stage_local(&path, writer, &manifest).map(Fetched::Disk),
            // No room: read whole, like from a remote store.
            None => metrics.disk_full.inc(),
        }
    }
    // One byte past the manifest's length is read, so a longer file is
    // caught by the length check rather than read to its end.
    let body = read_file(&path, manifest.bytes.saturating_add(1))?;
    Ok(Fetched::Whole(verify(Bytes::from(body), manifest)?))
}

/// Copy the object at `path` into `writer`, hashing it on the way, and
/// finish the entry if it matches `manifest`.
fn stage_local(path: &Path, mut writer: DiskWriter, manifest: &Manifest) -> Result<Arc<DiskObject>, OriginError> {
    let io = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::NotFound => OriginError::NotFound,
        _ => OriginError::Unavailable(format!("{}: {e}", path.display())),
    };
    let disk_err = |e: std::io::Error| OriginError::Unavailable(format!("disk tier: {e}"));
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut buf = vec![0u8; STAGE_READ];
    let mut hasher = Sha256::new();
    let mut len = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io(e)),
        };
        len += n as u64;
        if len > manifest.bytes {
            return Err(OriginError::Mismatch(format!("more than the {} bytes the manifest says", manifest.bytes)));
        }
        hasher.update(&buf[..n]);
        writer.write(&buf[..n]).map_err(disk_err)?;
    }
    if len != manifest.bytes {
        return Err(OriginError::Mismatch(format!("{len} bytes, manifest says {}", manifest.bytes)));
    }
    if hex::encode(hasher.finalize()) != manifest.sha256 {
        return Err(OriginError::Mismatch("sha256 differs".into()));
    }
    writer.finish().map_err(disk_err)
}

/// `key` under `root`, refused if it could lead outside it (a manifest
/// names its object's key).
fn confined(root: &Path, key: &str) -> Result<PathBuf, OriginError> {
    use std::path::Component;
    let key = Path::new(key);
    if key.components().all(|c| matches!(c, Component::Normal(_))) {
        Ok(root.join(key))
    } else {
        Err(OriginError::Mismatch(format!("object key {} leaves the store", key.display())))
    }
}

/// Read at most `max` bytes of the file at `path` into an allocation of
/// exactly what was read (the cache tiers keep it as long as the object is
/// cached). A missing file is [`OriginError::NotFound`]: a manifest without
/// its object is a broken write, treated as absent.
fn read_file(path: &Path, max: u64) -> Result<Vec<u8>, OriginError> {
    let io = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::NotFound => OriginError::NotFound,
        _ => OriginError::Unavailable(format!("{}: {e}", path.display())),
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len().min(max);
    let mut out = Vec::with_capacity(size as usize);
    file.take(max).read_to_end(&mut out).map_err(io)?;
    out.shrink_to_fit();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use imgcdn_shared::storage::{object_key, StoreConfig};

    /// A local store in `dir` holding `object` (under the manifest's key)
    /// and the manifest, and an origin reading it.
    fn store(dir: &Path, id: ImageId, object: &[u8], manifest: &Manifest) -> Origin {
        std::fs::create_dir_all(dir.join("objects")).unwrap();
        std::fs::create_dir_all(dir.join("manifests")).unwrap();
        std::fs::write(dir.join(object_key(&id)), object).unwrap();
        std::fs::write(dir.join(manifest_key(&id)), manifest.to_json()).unwrap();
        let op = StoreConfig::fs(dir.to_string_lossy()).operator().unwrap();
        Origin::new(op, &OriginConfig::default(), Arc::new(Metrics::new()), None)
    }

    fn id() -> ImageId {
        "abcdefgh".parse().unwrap()
    }

    #[tokio::test]
    async fn a_fetched_body_owns_exactly_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let body = vec![7u8; 3000];
        let manifest = imgcdn_shared::testing::png_manifest(&body, None);
        let origin = store(dir.path(), id(), &body, &manifest);
        let Fetched::Whole(obj) = origin.fetch(id(), 0, |_| {}).await.unwrap() else { panic!("not whole") };
        assert_eq!(&obj.body[..], &body[..]);
        // Cached objects must not pin a larger (pooled) read buffer: the
        // body is the only owner of an allocation of exactly its length.
        let owned = obj.body.try_into_mut().expect("body shares its allocation");
        assert_eq!(owned.capacity(), body.len());
    }

    #[tokio::test]
    async fn an_object_longer_or_shorter_than_its_manifest_is_never_served() {
        let body = vec![7u8; 3000];
        let manifest = imgcdn_shared::testing::png_manifest(&body, None);
        for object in [[&body[..], b"x"].concat(), body[..2999].to_vec(), vec![8u8; 3000]] {
            let dir = tempfile::tempdir().unwrap();
            let origin = store(dir.path(), id(), &object, &manifest);
            let e = origin.fetch(id(), 0, |_| panic!("cached")).await.err().expect("served");
            assert!(matches!(e, OriginError::Mismatch(_)), "{e:?}");
            assert_eq!(e.status(), 502);
        }
    }

    #[tokio::test]
    async fn a_manifest_without_its_object_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let body = vec![7u8; 30];
        let origin = store(dir.path(), id(), &body, &imgcdn_shared::testing::png_manifest(&body, None));
        std::fs::remove_file(dir.path().join(object_key(&id()))).unwrap();
        assert_eq!(origin.fetch(id(), 0, |_| {}).await.err(), Some(OriginError::NotFound));
        let other: ImageId = "zzzzzzzz".parse().unwrap();
        assert_eq!(origin.fetch(other, 0, |_| {}).await.err(), Some(OriginError::NotFound));
    }

    #[tokio::test]
    async fn an_object_key_outside_the_store_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store_dir = dir.path().join("store");
        let body = vec![7u8; 30];
        // The same bytes outside the store, where `../secret` leads.
        std::fs::write(dir.path().join("secret"), &body).unwrap();
        let mut manifest = imgcdn_shared::testing::png_manifest(&body, None);
        manifest.object = Some("../secret".into());
        let origin = store(&store_dir, id(), &body, &manifest);
        let e = origin.fetch(id(), 0, |_| panic!("cached")).await.err().expect("served");
        assert!(matches!(e, OriginError::Mismatch(_)), "{e:?}");
    }

    #[tokio::test]
    async fn a_large_local_object_is_staged_into_the_disk_tier_or_read_whole_without_room() {
        use crate::cache::disk::DiskEvents;
        use crate::clock::test_support::ManualClock;
        let body: Vec<u8> = (0..700_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let manifest = imgcdn_shared::testing::png_manifest(&body, None);
        for (budget, staged) in [(64 << 20, true), (1, false)] {
            let dir = tempfile::tempdir().unwrap();
            let disk = Arc::new(
                DiskTier::open(&dir.path().join("cache"), budget, ManualClock::at(0), DiskEvents::default()).unwrap(),
            );
            let op = StoreConfig::fs(dir.path().join("store").to_string_lossy()).operator().unwrap();
            store(&dir.path().join("store"), id(), &body, &manifest);
            let staging = Staging { disk: disk.clone(), above: 1000 };
            let metrics = Arc::new(Metrics::new());
            let origin = Origin::new(op, &OriginConfig::default(), metrics.clone(), Some(staging));
            match origin.fetch(id(), 0, |_| {}).await.unwrap() {
                Fetched::Disk(obj) => {
                    assert!(staged);
                    assert_eq!(&obj.read(0, body.len() as u64).unwrap()[..], &body[..]);
                    assert!(disk.entry_size(&id()).is_some());
                }
                Fetched::Whole(obj) => {
                    assert!(!staged);
                    assert_eq!(&obj.body[..], &body[..]);
                    assert_eq!(metrics.disk_full.get(), 1);
                }
            }
        }
    }

    #[tokio::test]
    async fn a_damaged_large_object_leaves_no_disk_entry() {
        use crate::cache::disk::DiskEvents;
        use crate::clock::test_support::ManualClock;
        let body = vec![3u8; 300_000];
        let manifest = imgcdn_shared::testing::png_manifest(&body, None);
        let mut damaged = body.clone();
        damaged[123_456] ^= 1;
        for object in [damaged, [&body[..], b"x"].concat()] {
            let dir = tempfile::tempdir().unwrap();
            let disk = Arc::new(
                DiskTier::open(&dir.path().join("cache"), 64 << 20, ManualClock::at(0), DiskEvents::default()).unwrap(),
            );
            store(&dir.path().join("store"), id(), &object, &manifest);
            let op = StoreConfig::fs(dir.path().join("store").to_string_lossy()).operator().unwrap();
            let staging = Staging { disk: disk.clone(), above: 1000 };
            let origin = Origin::new(op, &OriginConfig::default(), Arc::new(Metrics::new()), Some(staging));
            let e = origin.fetch(id(), 0, |_| {}).await.err().expect("served");
            assert!(matches!(e, OriginError::Mismatch(_)), "{e:?}");
            assert_eq!(disk.entry_size(&id()), None);
            assert_eq!(disk.usage(), (0, 0));
        }
    }
}
