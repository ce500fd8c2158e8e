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
//!   one transform and share its result.
//! - **Variants per image**: at most `max_variants_per_image` distinct
//!   variants of an image are made until it is purged; past that a new
//!   variant gets the original (`imgcdn_edge_transforms_total{outcome=
//!   "limited"}`).
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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use imgcdn_media::transform::{self, Limits, TransformError};
use imgcdn_shared::variant::{Rules, Variant};
use imgcdn_shared::{Format, ImageId, Manifest};
use moka::sync::Cache;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use crate::cache::disk::{DiskObject, DiskRead, DiskTier};
use crate::cache::{CachedObject, ObjectMeta};
use crate::config::TransformConfig;
use crate::flight::Flight;
use crate::metrics::{Metrics, Tier};
use crate::sync::visibility::Visibility;

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
}

pub struct Variants {
    cache: Cache<Key, CachedObject>,
    /// Variant keys made (or being made) per image since its last purge.
    index: Mutex<HashMap<ImageId, HashSet<Arc<str>>>>,
    flight: Flight<Key, Result<CachedObject, VariantError>>,
    workers: Arc<Semaphore>,
    /// Transforms running or waiting for a worker.
    in_system: AtomicUsize,
    max_in_system: usize,
    max_per_image: usize,
    limits: Limits,
    pub rules: Rules,
    visibility: Arc<Visibility>,
    disk: Arc<DiskTier>,
    metrics: Arc<Metrics>,
}

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
            index: Mutex::new(HashMap::new()),
            flight: Flight::default(),
            workers: Arc::new(Semaphore::new(cfg.workers)),
            in_system: AtomicUsize::new(0),
            max_in_system: cfg.workers + cfg.queue,
            max_per_image: cfg.max_variants_per_image,
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
        &self,
        id: ImageId,
        variant: Variant,
        original: Arc<ObjectMeta>,
        source: Source,
        now: i64,
    ) -> Result<(CachedObject, Tier), VariantError> {
        let key = Key { id, variant: variant.key().into() };
        if let Some(obj) = self.cache.get(&key) {
            if !obj.meta.is_expired(now) {
                return Ok((obj, Tier::Memory));
            }
            self.cache.invalidate(&key);
        }
        let (disk, k) = (self.disk.clone(), key.clone());
        if let Ok(DiskRead::Hit(obj)) = tokio::task::spawn_blocking(move || disk.read_variant(&k.id, &k.variant)).await
        {
            // Made before (this run or an earlier one): it counts.
            if !obj.meta.is_expired(now) && self.admit(&key) {
                self.fill_memory(&key, &obj);
                return Ok((obj, Tier::Disk));
            }
        }
        if !self.admit(&key) {
            self.metrics.transforms.with_label_values(&["limited"]).inc();
            return Err(VariantError::Limited);
        }
        let made = self.flight.run(key.clone(), || self.make(key.clone(), variant, original, source)).await;
        if made.is_err() {
            // Not made: it does not count against the image's variants.
            if let Some(keys) = self.index.lock().expect("variant index poisoned").get_mut(&id) {
                keys.remove(&key.variant);
            }
        }
        made.map(|obj| (obj, Tier::Origin))
    }

    /// Cache `obj` in memory unless sync says the image must not be
    /// (checked again after the insert: sync swaps its state before it
    /// purges). Whether it stayed.
    fn fill_memory(&self, key: &Key, obj: &CachedObject) -> bool {
        if self.visibility.blocks_caching(&key.id) {
            return false;
        }
        self.cache.insert(key.clone(), obj.clone());
        if self.visibility.blocks_caching(&key.id) {
            self.cache.invalidate(key);
            return false;
        }
        true
    }

    /// Count `key` among its image's variants, unless the image has all it
    /// may have already.
    fn admit(&self, key: &Key) -> bool {
        let mut index = self.index.lock().expect("variant index poisoned");
        let keys = index.entry(key.id).or_default();
        if keys.contains(&key.variant) {
            return true;
        }
        if keys.len() >= self.max_per_image {
            return false;
        }
        keys.insert(key.variant.clone());
        true
    }

    async fn make(
        &self,
        key: Key,
        variant: Variant,
        original: Arc<ObjectMeta>,
        source: Source,
    ) -> Result<CachedObject, VariantError> {
        // A place among the running and waiting, or a 503 now.
        if self.in_system.fetch_add(1, Ordering::AcqRel) >= self.max_in_system {
            self.in_system.fetch_sub(1, Ordering::AcqRel);
            self.metrics.transforms.with_label_values(&["busy"]).inc();
            return Err(VariantError::Busy);
        }
        let permit = self.workers.clone().acquire_owned().await;
        let (limits, stored) = (self.limits, original.format);
        let made = tokio::task::spawn_blocking(move || {
            let _permit = permit;
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
        self.in_system.fetch_sub(1, Ordering::AcqRel);
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
        if self.fill_memory(&key, &obj) {
            let (disk, visibility, metrics, obj) =
                (self.disk.clone(), self.visibility.clone(), self.metrics.clone(), obj.clone());
            tokio::task::spawn_blocking(move || {
                if visibility.blocks_caching(&key.id) {
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
                if visibility.blocks_caching(&key.id) {
                    disk.remove(&key.id);
                }
            });
        }
        Ok(obj)
    }

    /// Drop every variant of `id` from memory (and forget how many it had);
    /// the disk tier drops them with the original ([`DiskTier::remove`]).
    pub fn purge(&self, id: &ImageId) {
        let keys = self.index.lock().expect("variant index poisoned").remove(id);
        for variant in keys.into_iter().flatten() {
            self.cache.invalidate(&Key { id: *id, variant });
        }
    }

    /// Entries and bytes held (for the cache gauges).
    pub fn usage(&self) -> (u64, u64) {
        self.cache.run_pending_tasks();
        (self.cache.entry_count(), self.cache.weighted_size())
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
