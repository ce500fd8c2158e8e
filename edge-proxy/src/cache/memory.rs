//! Memory tier: a moka cache of whole objects, weighted by body bytes.
//!
//! moka's TinyLFU admission keeps one-hit wonders from pushing out the hot
//! set. Entries with an `expires_at` are also dropped by moka when it
//! passes, but the server still checks expiry on every hit: moka's timer
//! wheel is not exact, and the manifest's word is final.

use std::sync::Arc;
use std::time::{Duration, Instant};

use imgcdn_shared::ImageId;
use moka::notification::RemovalCause;
use moka::sync::Cache;
use moka::Expiry;

use super::CachedObject;
use crate::clock::Clock;

/// Fixed per-entry overhead counted against the budget, so a flood of tiny
/// objects cannot hold far more entries than the budget suggests.
const ENTRY_OVERHEAD: u64 = 256;

pub struct MemoryTier {
    cache: Cache<ImageId, CachedObject>,
    max_object_bytes: u64,
}

struct UntilExpiry {
    clock: Arc<dyn Clock>,
}

impl Expiry<ImageId, CachedObject> for UntilExpiry {
    fn expire_after_create(&self, _k: &ImageId, v: &CachedObject, _now: Instant) -> Option<Duration> {
        v.meta.expires_at.map(|e| Duration::from_secs(e.saturating_sub(self.clock.unix_now()).max(0) as u64))
    }
}

impl MemoryTier {
    /// `on_evict` is called once per entry pushed out for space.
    pub fn new(
        max_bytes: u64,
        max_object_bytes: u64,
        clock: Arc<dyn Clock>,
        on_evict: impl Fn() + Send + Sync + 'static,
    ) -> Self {
        let cache = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|_k: &ImageId, v: &CachedObject| {
                u32::try_from(v.body.len() as u64 + ENTRY_OVERHEAD).unwrap_or(u32::MAX)
            })
            .expire_after(UntilExpiry { clock })
            .eviction_listener(move |_k, _v, cause| {
                if cause == RemovalCause::Size {
                    on_evict();
                }
            })
            .build();
        MemoryTier { cache, max_object_bytes }
    }

    /// Objects larger than this are not kept here.
    pub fn max_object_bytes(&self) -> u64 {
        self.max_object_bytes
    }

    pub fn get(&self, id: &ImageId) -> Option<CachedObject> {
        self.cache.get(id)
    }

    /// Keep `obj` unless it is too large for this tier.
    pub fn insert(&self, id: ImageId, obj: CachedObject) {
        if obj.body.len() as u64 <= self.max_object_bytes {
            self.cache.insert(id, obj);
        }
    }

    pub fn remove(&self, id: &ImageId) {
        self.cache.invalidate(id);
    }

    /// (entries, weighted bytes) after applying pending maintenance.
    pub fn usage(&self) -> (u64, u64) {
        self.cache.run_pending_tasks();
        (self.cache.entry_count(), self.cache.weighted_size())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::test_support::object;
    use crate::clock::test_support::ManualClock;
    use std::sync::atomic::{AtomicU64, Ordering};

    fn id(s: &str) -> ImageId {
        s.parse().unwrap()
    }

    #[test]
    fn hit_after_insert_and_gone_after_remove() {
        let tier = MemoryTier::new(1 << 20, 1 << 20, ManualClock::at(0), || {});
        tier.insert(id("aaaaaaaa"), object(b"hello", None));
        assert_eq!(&tier.get(&id("aaaaaaaa")).unwrap().body[..], b"hello");
        tier.remove(&id("aaaaaaaa"));
        assert!(tier.get(&id("aaaaaaaa")).is_none());
    }

    #[test]
    fn oversized_objects_are_not_kept() {
        let tier = MemoryTier::new(1 << 20, 4, ManualClock::at(0), || {});
        tier.insert(id("aaaaaaaa"), object(b"hello", None));
        assert!(tier.get(&id("aaaaaaaa")).is_none());
    }

    #[test]
    fn stays_within_its_byte_budget_and_counts_evictions() {
        let evictions = Arc::new(AtomicU64::new(0));
        let e = evictions.clone();
        let tier = MemoryTier::new(64 * 1024, 64 * 1024, ManualClock::at(0), move || {
            e.fetch_add(1, Ordering::Relaxed);
        });
        let body = vec![7u8; 4096];
        for i in 0..200 {
            let k = format!("{i:0>8}");
            tier.insert(id(&k), object(&body, None));
            // Touch it so TinyLFU admits it over colder entries.
            tier.get(&id(&k));
            tier.get(&id(&k));
        }
        let (_, bytes) = tier.usage();
        assert!(bytes <= 64 * 1024, "{bytes} bytes held");
        assert!(evictions.load(Ordering::Relaxed) > 0);
    }
}
