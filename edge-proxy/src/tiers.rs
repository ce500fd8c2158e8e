//! The three tiers (memory, disk, origin) and the rules for moving objects
//! between them: look an id up in the first tier that has it, fill the
//! tiers above on the way back (unless edge sync says the id must not be
//! cached), purge ids from every tier.

use std::sync::Arc;

use imgcdn_shared::ImageId;

use crate::cache::disk::{DiskRead, DiskTier};
use crate::cache::memory::MemoryTier;
use crate::cache::CachedObject;
use crate::clock::Clock;
use crate::metrics::{Metrics, Tier};
use crate::origin::{Origin, OriginError};
use crate::sync::visibility::Visibility;

/// The three tiers and the rules for moving objects between them.
pub struct Tiers {
    pub memory: MemoryTier,
    pub disk: Arc<DiskTier>,
    pub origin: Origin,
    pub metrics: Arc<Metrics>,
    pub clock: Arc<dyn Clock>,
    /// Takedowns, hidden and restricted ids from edge sync.
    pub visibility: Arc<Visibility>,
}

impl Tiers {
    /// Find `id` in the first tier that has it, filling the tiers above on
    /// the way back. An expired object is purged from both caches and
    /// reported as not found.
    pub async fn lookup(&self, id: ImageId) -> Result<(CachedObject, Tier), OriginError> {
        let now = self.clock.unix_now();
        if let Some(obj) = self.memory.get(&id) {
            if obj.meta.is_expired(now) {
                self.purge(id).await;
                return Err(OriginError::NotFound);
            }
            return Ok((obj, Tier::Memory));
        }
        let disk = self.disk.clone();
        let read = tokio::task::spawn_blocking(move || disk.get(&id)).await;
        match read {
            Ok(DiskRead::Hit(obj)) => {
                if obj.meta.is_expired(now) {
                    self.purge(id).await;
                    return Err(OriginError::NotFound);
                }
                self.fill_memory(id, &obj);
                return Ok((obj, Tier::Disk));
            }
            Ok(DiskRead::Corrupt) => self.metrics.disk_corrupt.inc(),
            Ok(DiskRead::Miss) | Err(_) => {}
        }
        let obj = self
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
                    if let Err(e) = disk.put(id, &obj) {
                        metrics.disk_write_errors.inc();
                        log::warn!("disk cache write for {id} failed: {e}");
                    }
                    // Taken down while we wrote: sync swapped its state before
                    // purging, so checking again after the write catches it.
                    if visibility.blocks_caching(&id) {
                        disk.remove(&id);
                    }
                });
            })
            .await?;
        Ok((obj, Tier::Origin))
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
            applied.entries.len(),
            self.visibility.last_success.load(std::sync::atomic::Ordering::Relaxed),
            self.clock.unix_now(),
        );
        let (n, b) = self.memory.usage();
        self.metrics.set_cache_usage(Tier::Memory, n, b);
        let (n, b) = self.disk.usage();
        self.metrics.set_cache_usage(Tier::Disk, n, b);
    }
}
