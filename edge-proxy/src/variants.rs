//! Variants: originals resized, cropped, converted or toned by URL, made
//! here and cached like originals.
//!
//! The query is read into a canonical [`Variant`] (shared crate): equivalent
//! URLs have one key, so one cache entry. A variant is made from the
//! original the tiers found (memory, disk or origin: the original itself
//! is cached as usual), on a blocking thread through libvips
//! ([`imgcdn_media::transform`]).
//!
//! Bounds, so a crawler cannot fill the caches or burn the CPU:
//! - **Workers and queue**: at most `workers` transforms run at once and
//!   `queue` more wait; past that the request gets a 503 with
//!   `Retry-After`, never a place in an unbounded queue.
//! - **Single flight**: concurrent requests for one uncached variant run
//!   one transform (a task of its own, which finishes and caches its
//!   result even if every request for it went away) and share its result.
//! - **Variants per image**: at most `max_variants_per_image` distinct
//!   variants of an image are made until it is purged; past that a new
//!   variant gets the original (`imgcdn_edge_transforms_total{outcome=
//!   "limited"}`).
//! - **Time**: a request waits at most `timeout_ms` for its variant (then
//!   504); the transform itself cannot be interrupted, so it finishes on
//!   its worker (which stays taken: the pool bound still holds) and is
//!   cached for the next request.
//! - **Pixels**: originals over `max_input_pixels` and outputs over
//!   `max_output_pixels` are refused from their header, before decoding.
//!
//! Variants live in their own memory cache (weighted by bytes, its own
//! budget), indexed by image id: purging an id (takedown, hide, delete,
//! expiry: every edge-sync change) drops every variant of it without a
//! scan. A variant carries its original's expiry and storage, so expiry and
//! the storage check apply to it as to the original; visibility (takedown,
//! hide, warn) is checked per request before any tier, by image id.
//!
//! Variants are written to the disk tier too, next to their original and
//! indexed under its id (see [`crate::cache::disk::DiskKey`]): a restart
//! or a memory eviction reads them back instead of making them again, and a
//! purge removes them from both tiers.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::future::{BoxFuture, FutureExt, Shared};
use imgcdn_media::transform::{self, Limits, TransformError};
use imgcdn_shared::variant::{Rules, Variant};
use imgcdn_shared::{Format, ImageId, Manifest};
use moka::sync::Cache;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use crate::cache::disk::{DiskObject, DiskRead, DiskTier};
use crate::cache::{CachedObject, ObjectMeta};
use crate::config::TransformConfig;
use crate::metrics::{Metrics, Tier};
use crate::sync::visibility::Visibility;

/// A variant being made, awaited by every request for it.
type Making = Shared<BoxFuture<'static, Result<CachedObject, VariantError>>>;

/// One variant of one image.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    id: ImageId,
    variant: Arc<str>,
}

/// The original's bytes, as the tiers found them.
pub enum Source {
    Whole(Bytes),
    Disk(Arc<DiskObject>),
}

/// Why no variant was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VariantError {
    /// Workers and queue are full: 503 with `Retry-After`.
    Busy,
    /// The image has as many variants as allowed: serve the original.
    Limited,
    /// Over a pixel limit: 422.
    TooLarge(String),
    /// The original could not be transformed: 502.
    Failed(String),
    /// Not made within `transforms.timeout_ms`: 504 (the transform runs
    /// on, holding its worker, and is cached when it ends).
    TimedOut,
}

pub struct Variants {
    cache: Cache<Key, CachedObject>,
    /// Variant keys made (or being made) per image since its last purge.
    /// Bounded: the least used images' sets go first (see [`TRACKED_IMAGES`]).
    index: Cache<ImageId, Arc<Mutex<HashSet<Arc<str>>>>>,
    /// Variants being made, each by a task of its own (single flight).
    making: Mutex<HashMap<Key, Making>>,
    /// Purges so far (any image): a variant made or read while one happened
    /// is not cached.
    purges: Arc<AtomicU64>,
    workers: Arc<Semaphore>,
    /// Transforms running or waiting for a worker.
    in_system: Arc<AtomicUsize>,
    max_in_system: usize,
    max_per_image: usize,
    timeout: std::time::Duration,
    limits: Limits,
    pub rules: Rules,
    visibility: Arc<Visibility>,
    disk: Arc<DiskTier>,
    metrics: Arc<Metrics>,
}

/// Images whose variant keys are tracked at once (for the per-image bound
/// and for purging). Past it the least used image's set is forgotten: its
/// count starts again, and a purge no longer finds its variants in memory
/// — which stay unserved anyway, because every variant request first
/// passes the edge-sync check and finds the original (gone after a hide or
/// delete), and a variant made under an older manifest is not used
/// ([`fresh`]). At ~100 bytes per key, ~32 keys at most per image.
const TRACKED_IMAGES: u64 = 100_000;

/// Per-entry overhead counted against the budget.
const ENTRY_OVERHEAD: u64 = 256;

impl Variants {
    pub fn new(
        cfg: &TransformConfig,
        disk: Arc<DiskTier>,
        visibility: Arc<Visibility>,
        metrics: Arc<Metrics>,
    ) -> Variants {
        let cache = Cache::builder()
            .max_capacity(cfg.memory_bytes)
            .weigher(|_k: &Key, v: &CachedObject| {
                u32::try_from(v.body.len() as u64 + ENTRY_OVERHEAD).unwrap_or(u32::MAX)
            })
            .build();
        Variants {
            cache,
            index: Cache::new(TRACKED_IMAGES),
            making: Mutex::new(HashMap::new()),
            purges: Arc::new(AtomicU64::new(0)),
            workers: Arc::new(Semaphore::new(cfg.workers)),
            in_system: Arc::new(AtomicUsize::new(0)),
            max_in_system: cfg.workers + cfg.queue,
            max_per_image: cfg.max_variants_per_image,
            timeout: std::time::Duration::from_millis(cfg.timeout_ms),
            limits: Limits { max_input_pixels: cfg.max_input_pixels, max_output_pixels: cfg.max_output_pixels },
            rules: Rules { max_dimension: cfg.max_dimension, allowed_dimensions: cfg.allowed_dimensions.clone() },
            visibility,
            disk,
            metrics,
        }
    }

    /// The variant of an image, from the memory or disk tier or made now
    /// from `source` (its original, described by `original`), and the tier
    /// it came from (`Origin`: made). `now` is unix time.
    pub async fn get(
        self: &Arc<Self>,
        id: ImageId,
        variant: Variant,
        original: Arc<ObjectMeta>,
        source: Source,
        now: i64,
    ) -> Result<(CachedObject, Tier), VariantError> {
        let key = Key { id, variant: variant.key().into() };
        let generation = self.purges.load(Ordering::Acquire);
        if let Some(obj) = self.cache.get(&key) {
            if fresh(&obj, &original, now) {
                return Ok((obj, Tier::Memory));
            }
            self.cache.invalidate(&key);
        }
        let (disk, k) = (self.disk.clone(), key.clone());
        if let Ok(DiskRead::Hit(obj)) = tokio::task::spawn_blocking(move || disk.read_variant(&k.id, &k.variant)).await
        {
            // Made before (this run or an earlier one): it counts.
            if fresh(&obj, &original, now) && self.admit(&key) {
                self.fill_memory(&key, &obj, generation);
                return Ok((obj, Tier::Disk));
            }
        }
        if !self.admit(&key) {
            self.metrics.transforms.with_label_values(&["limited"]).inc();
            return Err(VariantError::Limited);
        }
        let making = {
            let mut making = self.making.lock().expect("variant flights poisoned");
            match making.get(&key) {
                Some(m) => m.clone(),
                None => {
                    let Some(place) = Place::take(&self.in_system, self.max_in_system) else {
                        drop(making);
                        self.metrics.transforms.with_label_values(&["busy"]).inc();
                        self.unadmit(&key);
                        return Err(VariantError::Busy);
                    };
                    let m = self.clone().start(key.clone(), variant, original, source, place, generation);
                    making.insert(key.clone(), m.clone());
                    m
                }
            }
        };
        match tokio::time::timeout(self.timeout, making).await {
            Ok(made) => made.map(|obj| (obj, Tier::Origin)),
            Err(_) => {
                self.metrics.transforms.with_label_values(&["timed_out"]).inc();
                Err(VariantError::TimedOut)
            }
        }
    }

    /// Make `key` on a task of its own: it runs to the end (and caches its
    /// result) even when every request waiting for it has gone; requests
    /// for the same variant meanwhile wait for it (single flight).
    fn start(
        self: Arc<Self>,
        key: Key,
        variant: Variant,
        original: Arc<ObjectMeta>,
        source: Source,
        place: Place,
        generation: u64,
    ) -> Making {
        let task = tokio::spawn(async move {
            let made = self.make(key.clone(), variant, original, source, place, generation).await;
            self.making.lock().expect("variant flights poisoned").remove(&key);
            if made.is_err() {
                self.unadmit(&key);
            }
            made
        });
        task.map(|joined| joined.unwrap_or_else(|e| Err(VariantError::Failed(format!("transform task: {e}")))))
            .boxed()
            .shared()
    }

    /// Cache `obj` in memory unless the image was purged since `generation`
    /// or sync says it must not be cached (both checked again after the
    /// insert: a purge counts itself before it removes). Whether it stayed.
    fn fill_memory(&self, key: &Key, obj: &CachedObject, generation: u64) -> bool {
        let stale = || self.purges.load(Ordering::Acquire) != generation || self.visibility.blocks_caching(&key.id);
        if stale() {
            return false;
        }
        self.cache.insert(key.clone(), obj.clone());
        if stale() {
            self.cache.invalidate(key);
            return false;
        }
        true
    }

    /// Count `key` among its image's variants, unless the image has all it
    /// may have already.
    fn admit(&self, key: &Key) -> bool {
        let set = self.index.get_with(key.id, Default::default);
        let mut keys = set.lock().expect("variant index poisoned");
        if keys.contains(&key.variant) {
            return true;
        }
        if keys.len() >= self.max_per_image {
            return false;
        }
        keys.insert(key.variant.clone());
        true
    }

    /// Not made after all: `key` no longer counts against its image.
    fn unadmit(&self, key: &Key) {
        if let Some(set) = self.index.get(&key.id) {
            set.lock().expect("variant index poisoned").remove(&key.variant);
        }
    }

    async fn make(
        &self,
        key: Key,
        variant: Variant,
        original: Arc<ObjectMeta>,
        source: Source,
        place: Place,
        generation: u64,
    ) -> Result<CachedObject, VariantError> {
        // The place (and the worker) are given back when the transform ends.
        let permit = self.workers.clone().acquire_owned().await;
        let (limits, stored) = (self.limits, original.format);
        let made = tokio::task::spawn_blocking(move || {
            let _held = (place, permit);
            let bytes = match source {
                Source::Whole(b) => b,
                Source::Disk(obj) => obj.read(0, obj.len()).map_err(|e| VariantError::Failed(format!("disk: {e}")))?,
            };
            transform::transform(&bytes, stored, &variant, &limits).map_err(|e| match e {
                TransformError::TooLarge { .. } => VariantError::TooLarge(e.to_string()),
                other => VariantError::Failed(other.to_string()),
            })
        })
        .await;
        let made = match made {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => {
                self.metrics.transforms.with_label_values(&["failed"]).inc();
                log::warn!("transform of {} ({}) failed: {e:?}", key.id, key.variant);
                return Err(e);
            }
            Err(e) => {
                self.metrics.transforms.with_label_values(&["failed"]).inc();
                return Err(VariantError::Failed(format!("transform task: {e}")));
            }
        };
        self.metrics.transforms.with_label_values(&["made"]).inc();
        let obj = variant_object(&original.manifest, made.bytes, made.format, made.width, made.height)?;
        if self.fill_memory(&key, &obj, generation) {
            let (disk, visibility, metrics, obj) =
                (self.disk.clone(), self.visibility.clone(), self.metrics.clone(), obj.clone());
            let purges = self.purges.clone();
            tokio::task::spawn_blocking(move || {
                let stale = || purges.load(Ordering::Acquire) != generation || visibility.blocks_caching(&key.id);
                if stale() {
                    return;
                }
                match disk.put_variant(key.id, &key.variant, &obj) {
                    Ok(true) => {}
                    Ok(false) => metrics.disk_full.inc(),
                    Err(e) => {
                        metrics.disk_write_errors.inc();
                        log::warn!("disk cache write of a variant of {} failed: {e}", key.id);
                    }
                }
                // Purged while we wrote: the image's entries go (all of them).
                if stale() {
                    disk.remove(&key.id);
                }
            });
        }
        Ok(obj)
    }

    /// Drop every variant of `id` from memory (and forget how many it had);
    /// the disk tier drops them with the original ([`DiskTier::remove`]).
    pub fn purge(&self, id: &ImageId) {
        // Counted first: a variant being made now sees it and stays out.
        self.purges.fetch_add(1, Ordering::AcqRel);
        let Some(set) = self.index.remove(id) else { return };
        let keys = std::mem::take(&mut *set.lock().expect("variant index poisoned"));
        for variant in keys {
            self.cache.invalidate(&Key { id: *id, variant });
        }
    }

    /// Entries and bytes held (for the cache gauges).
    pub fn usage(&self) -> (u64, u64) {
        self.cache.run_pending_tasks();
        (self.cache.entry_count(), self.cache.weighted_size())
    }
}

/// A cached variant is still good for `original`: not expired, and made
/// under the manifest the original has now (same expiry and storage).
fn fresh(obj: &CachedObject, original: &ObjectMeta, now: i64) -> bool {
    let (v, o) = (&obj.meta.manifest, &original.manifest);
    !obj.meta.is_expired(now) && v.expires_at == o.expires_at && v.storage == o.storage && v.shard_url == o.shard_url
}

/// One of the places among running and waiting transforms.
struct Place(Arc<AtomicUsize>);

impl Place {
    fn take(count: &Arc<AtomicUsize>, max: usize) -> Option<Place> {
        if count.fetch_add(1, Ordering::AcqRel) >= max {
            count.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Place(count.clone()))
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A made variant as a cache object: its own type, length, hash (the ETag)
/// and size; the original's expiry and storage.
fn variant_object(
    original: &Manifest,
    bytes: Vec<u8>,
    format: Format,
    width: u32,
    height: u32,
) -> Result<CachedObject, VariantError> {
    let manifest = Manifest {
        content_type: format.content_type().to_string(),
        bytes: bytes.len() as u64,
        sha256: hex::encode(Sha256::digest(&bytes)),
        width,
        height,
        expires_at: original.expires_at,
        transformable: false,
        object: None,
        storage: original.storage,
        shard_url: original.shard_url,
    };
    let meta = ObjectMeta::new(manifest).map_err(|e| VariantError::Failed(e.to_string()))?;
    Ok(CachedObject::new(Bytes::from(bytes), meta))
}
