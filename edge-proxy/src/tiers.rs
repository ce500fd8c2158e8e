//! The three tiers (memory, disk, origin) and the rules for moving objects
//! between them: look an id up in the first tier that has it, fill the
//! tiers above on the way back (unless edge sync says the id must not be
//! cached), purge ids from every tier.
//!
//! What a lookup hands back is either a whole body in memory or, for an
//! object larger than the memory tier takes, an open disk entry to stream
//! from (see [`crate::cache::disk`] and [`crate::budget`]). Whole bodies not
//! shared with the memory tier are held against the send budget.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use imgcdn_shared::ImageId;

use crate::budget::{Held, SendBudget};
use crate::cache::disk::{whole_file_max, DiskObject, DiskRead, DiskTier, PREFIX_READ};
use crate::cache::memory::MemoryTier;
use crate::cache::{CachedObject, ObjectMeta};
use crate::clock::Clock;
use crate::metrics::{Metrics, Tier};
use crate::origin::{Fetched, Origin, OriginError};
use crate::sync::visibility::Visibility;
use crate::variants::Variants;

/// The three tiers and the rules for moving objects between them.
pub struct Tiers {
    /// Transforms by URL (`None`: turned off, queries ignored).
    pub variants: Option<Arc<Variants>>,
    pub memory: MemoryTier,
    pub disk: Arc<DiskTier>,
    pub origin: Origin,
    pub metrics: Arc<Metrics>,
    pub clock: Arc<dyn Clock>,
    /// Takedowns, hidden and restricted ids from edge sync.
    pub visibility: Arc<Visibility>,
    /// Response body bytes held for sending.
    pub budget: SendBudget,
    /// How long a response may wait for the send budget before a 503.
    pub budget_wait: Duration,
    /// Disk entries up to this size are read on the serving thread
    /// (`disk.inline_read_max_bytes`).
    pub disk_inline_max: u64,
    /// Bodies of at least this many bytes are sent from their open
    /// disk-tier file where the connection can (`disk.sendfile_min_bytes`;
    /// `u64::MAX`: never).
    pub file_min: u64,
}

/// A body to send.
pub enum Body {
    /// In memory, whole.
    Whole(Bytes),
    /// A large object in the disk tier, read (and verified) chunk by chunk.
    Stream(Arc<DiskObject>),
    /// A disk-tier entry whose file is open and verified whole: sent from
    /// the file without reading it (`sendfile`).
    File(Arc<DiskObject>),
}

/// What a lookup found.
pub struct Found {
    pub meta: Arc<ObjectMeta>,
    pub body: Body,
    pub tier: Tier,
    /// The send budget held for a whole body not shared with the memory tier.
    pub held: Option<Held>,
}

impl Found {
    pub fn len(&self) -> u64 {
        self.meta.manifest.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why a lookup gave no object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupError {
    Origin(OriginError),
    /// The send budget stayed full: 503 with `Retry-After`.
    Busy,
}

impl LookupError {
    pub fn status(&self) -> u16 {
        match self {
            LookupError::Origin(e) => e.status(),
            LookupError::Busy => 503,
        }
    }
}

impl From<OriginError> for LookupError {
    fn from(e: OriginError) -> Self {
        LookupError::Origin(e)
    }
}

impl Tiers {
    /// Find `id` in the first tier that has it, filling the tiers above on
    /// the way back. A copy past its expiry is purged from both caches and
    /// the origin asked again: its manifest may carry a later expiry now
    /// (an unverified uploader verified), or say it is gone.
    ///
    /// With `files` (the connection can send from files), a body of at
    /// least `file_min` bytes whose disk-tier file is open comes back as
    /// [`Body::File`]; the tier is still the one that found it (a memory
    /// hit stays a memory hit).
    ///
    /// `now` is the unix time of the request (read once by the caller).
    pub async fn lookup(&self, id: ImageId, files: bool, now: i64) -> Result<Found, LookupError> {
        if let Some(obj) = self.memory.get(&id) {
            if !obj.meta.is_expired(now) {
                if files && obj.body.len() as u64 >= self.file_min {
                    // The same content only: the entry may be older or newer.
                    if let Some(f) = self.disk.open_file(&id, false).filter(|f| f.meta.etag == obj.meta.etag) {
                        return Ok(Found { meta: obj.meta, body: Body::File(f), tier: Tier::Memory, held: None });
                    }
                }
                return Ok(Found { meta: obj.meta, body: Body::Whole(obj.body), tier: Tier::Memory, held: None });
            }
            self.purge(id).await;
        }
        if files {
            if let Some(f) = self.disk.open_file(&id, true) {
                if !f.meta.is_expired(now) && f.len() >= self.file_min {
                    return Ok(Found { meta: f.meta.clone(), body: Body::File(f), tier: Tier::Disk, held: None });
                }
            }
        }
        let whole_max = self.memory.max_object_bytes();
        // What a disk read will hold in memory is held against the budget
        // before it is made: the whole file when its body may be read whole
        // (body ≤ whole_max; the prefix adds a header and 4 bytes per 64 KiB
        // chunk), else just the prefix (the body is then streamed).
        let size = self.disk.entry_size(&id);
        let mut held = match size {
            Some(size) if size <= whole_file_max(whole_max) => Some(self.hold(size).await?),
            Some(_) => Some(self.hold(PREFIX_READ).await?),
            None => None,
        };
        let read = match size {
            Some(size) if size <= self.disk_inline_max => Some(self.disk.read(&id, whole_max)),
            Some(_) => {
                let disk = self.disk.clone();
                tokio::task::spawn_blocking(move || disk.read(&id, whole_max)).await.ok()
            }
            None => None,
        };
        match read {
            Some(DiskRead::Hit(obj)) if !obj.meta.is_expired(now) => {
                self.fill_memory(id, &obj);
                return Ok(Found { meta: obj.meta, body: Body::Whole(obj.body), tier: Tier::Disk, held });
            }
            Some(DiskRead::Open(obj)) if !obj.meta.is_expired(now) => {
                // Streamed: the budget is held per chunk while sending.
                return Ok(Found { meta: obj.meta.clone(), body: Body::Stream(obj), tier: Tier::Disk, held: None });
            }
            Some(DiskRead::Hit(_) | DiskRead::Open(_)) => self.purge(id).await,
            Some(DiskRead::Corrupt) => self.metrics.disk_corrupt.inc(),
            Some(DiskRead::Miss) | None => {}
        }
        held = None;
        let fetched = self
            .origin
            .fetch(id, now, |obj| {
                // Runs once per origin read, however many requests share it.
                // An id taken down or hidden while the read was in flight is
                // not cached (sync swaps its state before purging).
                if !self.fill_memory(id, obj) {
                    return;
                }
                let (disk, obj, metrics) = (self.disk.clone(), obj.clone(), self.metrics.clone());
                let visibility = self.visibility.clone();
                tokio::task::spawn_blocking(move || {
                    if visibility.blocks_caching(&id) {
                        return;
                    }
                    match disk.put(id, &obj) {
                        Ok(true) => {}
                        Ok(false) => metrics.disk_full.inc(),
                        Err(e) => {
                            metrics.disk_write_errors.inc();
                            log::warn!("disk cache write for {id} failed: {e}");
                        }
                    }
                    // Taken down while we wrote: sync swapped its state before
                    // purging, so checking again after the write catches it.
                    if visibility.blocks_caching(&id) {
                        disk.remove(&id);
                    }
                });
            })
            .await?;
        match fetched {
            Fetched::Whole(obj) => {
                let shared = obj.body.len() as u64 <= whole_max;
                if !shared {
                    held = Some(self.hold(obj.body.len() as u64).await?);
                }
                Ok(Found { meta: obj.meta, body: Body::Whole(obj.body), tier: Tier::Origin, held })
            }
            Fetched::Disk(obj) => {
                // Staged into the disk tier by the read; the same rule as
                // for any fill applies if the id was taken down meanwhile.
                if self.visibility.blocks_caching(&id) {
                    self.disk.remove(&id);
                }
                Ok(Found { meta: obj.meta.clone(), body: Body::Stream(obj), tier: Tier::Origin, held: None })
            }
        }
    }

    /// Hold `bytes` of the send budget (waiting up to `budget_wait`).
    pub async fn hold(&self, bytes: u64) -> Result<Held, LookupError> {
        match self.budget.hold(bytes, self.budget_wait).await {
            Some(h) => Ok(h),
            None => {
                self.metrics.send_budget_refused.inc();
                Err(LookupError::Busy)
            }
        }
    }

    /// Put `obj` in the memory tier unless edge sync says `id` must not be
    /// cached; checked again after the insert, since sync swaps its state
    /// before it purges. Returns whether the object stayed cached.
    fn fill_memory(&self, id: ImageId, obj: &CachedObject) -> bool {
        if self.visibility.blocks_caching(&id) {
            return false;
        }
        self.memory.insert(id, obj.clone());
        if self.visibility.blocks_caching(&id) {
            self.memory.remove(&id);
            return false;
        }
        true
    }

    /// Drop `id` from both cache tiers.
    pub async fn purge(&self, id: ImageId) {
        self.purge_many(vec![id]).await;
    }

    /// Drop every id in `ids` from both tiers; returns how many were cached.
    pub async fn purge_many(&self, ids: Vec<ImageId>) -> usize {
        if ids.is_empty() {
            return 0;
        }
        for id in &ids {
            self.memory.remove(id);
            if let Some(v) = &self.variants {
                v.purge(id);
            }
        }
        let disk = self.disk.clone();
        let n = ids.len();
        let _ = tokio::task::spawn_blocking(move || {
            for id in &ids {
                disk.remove(id);
            }
        })
        .await;
        n
    }

    /// Refresh the cache size gauges (called when metrics are scraped).
    pub fn update_gauges(&self) {
        let applied = self.visibility.applied();
        self.metrics.set_sync(
            applied.seq,
            self.visibility.head.load(std::sync::atomic::Ordering::Relaxed).max(applied.seq),
            applied.len(),
            self.visibility.last_success.load(std::sync::atomic::Ordering::Relaxed),
        );
        let (n, b) = self.memory.usage();
        self.metrics.set_cache_usage(Tier::Memory, n, b);
        let (n, b) = self.disk.usage();
        self.metrics.set_cache_usage(Tier::Disk, n, b);
        self.metrics.open_files.set(self.disk.open_files() as i64);
        if let Some(v) = &self.variants {
            let (n, b) = v.usage();
            self.metrics.set_variant_usage(n, b);
        }
    }
}
