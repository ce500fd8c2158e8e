//! Memory tier: whole objects in memory, bounded by bytes, evicted by SIEVE.
//!
//! SIEVE (Zhang et al., NSDI '24) keeps entries in insertion order with one
//! "visited" bit each. A hit only sets the bit (under a shared read lock: no
//! list movement, no per-hit queue), and eviction sweeps a hand from the
//! oldest entry towards the newest, clearing bits and evicting the first
//! entry found unvisited. One-hit wonders are evicted on the hand's first
//! pass, while anything requested again since the hand last passed it
//! survives — the scan resistance the edge needs, at a fraction of the cost
//! of a frequency sketch (the moka cache this replaced spent ~1 µs per hit
//! on its access bookkeeping, about as much as pingora's whole response
//! path for a small image).
//!
//! The tier is split into up to 16 shards by id, each with its own lock and
//! an equal share of the budget, so fills on different threads rarely meet.
//! Expiry: every entry with an `expires_at` is indexed by it, and a shard
//! drops what has expired whenever it takes an insert or the usage is read.
//! The server still checks expiry on every hit, so a lingering expired entry
//! is never served, only counted until its shard is next touched.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use imgcdn_shared::ImageId;

use super::CachedObject;
use crate::clock::Clock;

/// Fixed per-entry overhead counted against the budget, so a flood of tiny
/// objects cannot hold far more entries than the budget suggests.
const ENTRY_OVERHEAD: u64 = 256;

/// Most shards a tier is split into.
const MAX_SHARDS: u64 = 16;

/// "No entry" in the slab's links.
const NIL: u32 = u32::MAX;

pub struct MemoryTier {
    shards: Box<[RwLock<Shard>]>,
    max_object_bytes: u64,
    clock: Arc<dyn Clock>,
    on_evict: Box<dyn Fn() + Send + Sync>,
}

/// One shard: a doubly linked list in insertion order, kept in a slab so
/// links are indices and freed slots are reused.
struct Shard {
    map: HashMap<ImageId, u32>,
    slab: Vec<Option<Node>>,
    free: Vec<u32>,
    /// Newest entry.
    head: u32,
    /// Oldest entry.
    tail: u32,
    /// Where the next eviction sweep starts (`NIL`: at the tail).
    hand: u32,
    /// Entries with an expiry, by when.
    expiry: BTreeSet<(i64, ImageId)>,
    bytes: u64,
    budget: u64,
}

struct Node {
    id: ImageId,
    obj: CachedObject,
    weight: u64,
    visited: AtomicBool,
    /// Towards the head (inserted later).
    newer: u32,
    /// Towards the tail (inserted earlier).
    older: u32,
}

fn weight(obj: &CachedObject) -> u64 {
    obj.body.len() as u64 + ENTRY_OVERHEAD
}

impl MemoryTier {
    /// `on_evict` is called once per entry pushed out for space.
    pub fn new(
        max_bytes: u64,
        max_object_bytes: u64,
        clock: Arc<dyn Clock>,
        on_evict: impl Fn() + Send + Sync + 'static,
    ) -> Self {
        // Every shard should hold several of the largest objects: a shard
        // whose budget is near the object limit would thrash on them.
        let per_shard_floor = max_object_bytes.saturating_add(ENTRY_OVERHEAD).saturating_mul(4).max(1);
        let n = (max_bytes / per_shard_floor).clamp(1, MAX_SHARDS);
        let budget = max_bytes / n;
        let shards = (0..n).map(|_| RwLock::new(Shard::new(budget))).collect();
        MemoryTier { shards, max_object_bytes, clock, on_evict: Box::new(on_evict) }
    }

    /// Objects larger than this are not kept here.
    pub fn max_object_bytes(&self) -> u64 {
        self.max_object_bytes
    }

    fn shard(&self, id: &ImageId) -> &RwLock<Shard> {
        // Ids are random base62: a multiplicative hash of the 8 bytes
        // spreads them evenly, and the high bits pick the shard.
        let b: [u8; 8] = id.as_str().as_bytes().try_into().expect("an image id is 8 bytes");
        let h = u64::from_le_bytes(b).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let i = ((h >> 32) * self.shards.len() as u64) >> 32;
        &self.shards[i as usize]
    }

    pub fn get(&self, id: &ImageId) -> Option<CachedObject> {
        let shard = self.shard(id).read().unwrap_or_else(|e| e.into_inner());
        let node = shard.node(*shard.map.get(id)?);
        // Only write the bit when it changes: hot entries stay shared in
        // every core's cache.
        if !node.visited.load(Ordering::Relaxed) {
            node.visited.store(true, Ordering::Relaxed);
        }
        Some(node.obj.clone())
    }

    /// Keep `obj` unless it is too large for this tier (or already expired);
    /// an older entry for `id` is replaced either way.
    pub fn insert(&self, id: ImageId, obj: CachedObject) {
        let now = self.clock.unix_now();
        let mut dropped = Vec::new();
        let evicted;
        {
            let mut shard = self.shard(&id).write().unwrap_or_else(|e| e.into_inner());
            if let Some(old) = shard.map.get(&id).copied() {
                dropped.push(shard.unlink(old));
            }
            shard.expire(now, &mut dropped);
            let w = weight(&obj);
            if obj.body.len() as u64 > self.max_object_bytes || w > shard.budget || obj.meta.is_expired(now) {
                evicted = 0;
            } else {
                let before = dropped.len();
                while shard.bytes + w > shard.budget {
                    match shard.evict_one() {
                        Some(o) => dropped.push(o),
                        None => break,
                    }
                }
                evicted = dropped.len() - before;
                shard.push(id, obj, w);
            }
        }
        // Callbacks and the last references to evicted bodies run outside
        // the lock.
        drop(dropped);
        for _ in 0..evicted {
            (self.on_evict)();
        }
    }

    pub fn remove(&self, id: &ImageId) {
        let old = {
            let mut shard = self.shard(id).write().unwrap_or_else(|e| e.into_inner());
            shard.map.get(id).copied().map(|i| shard.unlink(i))
        };
        drop(old);
    }

    /// (entries, weighted bytes), after dropping what has expired.
    pub fn usage(&self) -> (u64, u64) {
        let now = self.clock.unix_now();
        let (mut n, mut b) = (0, 0);
        for shard in self.shards.iter() {
            let mut dropped = Vec::new();
            let mut shard = shard.write().unwrap_or_else(|e| e.into_inner());
            shard.expire(now, &mut dropped);
            n += shard.map.len() as u64;
            b += shard.bytes;
            drop(shard);
            drop(dropped);
        }
        (n, b)
    }
}

impl Shard {
    fn new(budget: u64) -> Shard {
        Shard {
            map: HashMap::new(),
            slab: Vec::new(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
            hand: NIL,
            expiry: BTreeSet::new(),
            bytes: 0,
            budget,
        }
    }

    fn node(&self, i: u32) -> &Node {
        self.slab[i as usize].as_ref().expect("linked slots are occupied")
    }

    fn node_mut(&mut self, i: u32) -> &mut Node {
        self.slab[i as usize].as_mut().expect("linked slots are occupied")
    }

    /// Add a new entry at the head (it is not visited yet).
    fn push(&mut self, id: ImageId, obj: CachedObject, weight: u64) {
        if let Some(e) = obj.meta.expires_at {
            self.expiry.insert((e, id));
        }
        let node = Node { id, obj, weight, visited: AtomicBool::new(false), newer: NIL, older: self.head };
        let i = match self.free.pop() {
            Some(i) => {
                self.slab[i as usize] = Some(node);
                i
            }
            None => {
                self.slab.push(Some(node));
                u32::try_from(self.slab.len() - 1).expect("fewer than 2^32 entries per shard")
            }
        };
        if self.head != NIL {
            let h = self.head;
            self.node_mut(h).newer = i;
        } else {
            self.tail = i;
        }
        self.head = i;
        self.map.insert(id, i);
        self.bytes += weight;
    }

    /// Take entry `i` out of the list, the map and the expiry index.
    fn unlink(&mut self, i: u32) -> CachedObject {
        let node = self.slab[i as usize].take().expect("linked slots are occupied");
        if node.newer != NIL {
            self.node_mut(node.newer).older = node.older;
        } else {
            self.head = node.older;
        }
        if node.older != NIL {
            self.node_mut(node.older).newer = node.newer;
        } else {
            self.tail = node.newer;
        }
        if self.hand == i {
            self.hand = node.newer;
        }
        self.map.remove(&node.id);
        if let Some(e) = node.obj.meta.expires_at {
            self.expiry.remove(&(e, node.id));
        }
        self.bytes -= node.weight;
        self.free.push(i);
        node.obj
    }

    /// Evict one entry by SIEVE; `None` when the shard is empty.
    fn evict_one(&mut self) -> Option<CachedObject> {
        if self.tail == NIL {
            return None;
        }
        let mut i = if self.hand == NIL { self.tail } else { self.hand };
        loop {
            let node = self.node(i);
            if !node.visited.load(Ordering::Relaxed) {
                // unlink() moves the hand on to the next newer entry.
                self.hand = i;
                return Some(self.unlink(i));
            }
            node.visited.store(false, Ordering::Relaxed);
            i = if node.newer == NIL { self.tail } else { node.newer };
        }
    }

    /// Drop every entry expired at `now` (expiry is inclusive).
    fn expire(&mut self, now: i64, dropped: &mut Vec<CachedObject>) {
        while let Some(&(e, id)) = self.expiry.first() {
            if e > now {
                break;
            }
            match self.map.get(&id).copied() {
                Some(i) => dropped.push(self.unlink(i)),
                None => {
                    self.expiry.pop_first();
                }
            }
        }
    }

    /// Check every invariant linking the list, the map, the expiry index,
    /// the byte count and the hand.
    #[cfg(test)]
    fn check(&self) {
        let mut seen = 0;
        let mut bytes = 0;
        let mut expiring = 0;
        let mut hand_found = self.hand == NIL;
        let (mut i, mut newer) = (self.head, NIL);
        while i != NIL {
            let node = self.node(i);
            assert_eq!(node.newer, newer, "back link");
            assert_eq!(self.map.get(&node.id), Some(&i), "map entry");
            if let Some(e) = node.obj.meta.expires_at {
                assert!(self.expiry.contains(&(e, node.id)), "expiry entry");
                expiring += 1;
            }
            hand_found |= self.hand == i;
            seen += 1;
            bytes += node.weight;
            newer = i;
            i = node.older;
        }
        assert_eq!(self.tail, newer, "tail");
        assert_eq!(seen, self.map.len(), "every map entry is linked");
        assert_eq!(expiring, self.expiry.len(), "expiry index");
        assert_eq!(bytes, self.bytes, "byte count");
        assert!(self.bytes <= self.budget, "within budget");
        assert!(hand_found, "hand points at a linked entry");
        assert_eq!(self.slab.iter().filter(|s| s.is_none()).count(), self.free.len(), "free list");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::test_support::object;
    use crate::clock::test_support::ManualClock;
    use std::sync::atomic::AtomicU64;

    fn id(s: &str) -> ImageId {
        s.parse().unwrap()
    }

    fn key(i: usize) -> ImageId {
        id(&format!("{i:0>8}"))
    }

    fn counting(max_bytes: u64, max_object: u64, clock: Arc<ManualClock>) -> (MemoryTier, Arc<AtomicU64>) {
        let evictions = Arc::new(AtomicU64::new(0));
        let e = evictions.clone();
        let tier = MemoryTier::new(max_bytes, max_object, clock, move || {
            e.fetch_add(1, Ordering::Relaxed);
        });
        (tier, evictions)
    }

    fn check(tier: &MemoryTier) {
        for s in tier.shards.iter() {
            s.read().unwrap().check();
        }
    }

    #[test]
    fn hit_after_insert_and_gone_after_remove() {
        let tier = MemoryTier::new(1 << 20, 1 << 20, ManualClock::at(0), || {});
        tier.insert(id("aaaaaaaa"), object(b"hello", None));
        assert_eq!(&tier.get(&id("aaaaaaaa")).unwrap().body[..], b"hello");
        tier.remove(&id("aaaaaaaa"));
        assert!(tier.get(&id("aaaaaaaa")).is_none());
        assert_eq!(tier.usage(), (0, 0));
        check(&tier);
    }

    #[test]
    fn oversized_objects_are_not_kept_and_do_not_leave_an_old_copy() {
        let tier = MemoryTier::new(1 << 20, 4, ManualClock::at(0), || {});
        tier.insert(id("aaaaaaaa"), object(b"abc", None));
        assert!(tier.get(&id("aaaaaaaa")).is_some());
        tier.insert(id("aaaaaaaa"), object(b"hello", None));
        assert!(tier.get(&id("aaaaaaaa")).is_none(), "a stale smaller copy must not stay");
        check(&tier);
    }

    #[test]
    fn replacing_an_entry_counts_it_once() {
        let tier = MemoryTier::new(1 << 20, 1 << 20, ManualClock::at(0), || {});
        tier.insert(id("aaaaaaaa"), object(b"one", None));
        tier.insert(id("aaaaaaaa"), object(b"three", None));
        assert_eq!(&tier.get(&id("aaaaaaaa")).unwrap().body[..], b"three");
        assert_eq!(tier.usage(), (1, 5 + ENTRY_OVERHEAD));
        check(&tier);
    }

    #[test]
    fn stays_within_its_byte_budget_and_counts_evictions() {
        // 64 KiB in one shard (objects up to 16 KiB): 15 entries of 4 KiB
        // plus overhead fit.
        let (tier, evictions) = counting(64 * 1024, 16 * 1024 - ENTRY_OVERHEAD, ManualClock::at(0));
        assert_eq!(tier.shards.len(), 1);
        let body = vec![7u8; 4096];
        for i in 0..200 {
            tier.insert(key(i), object(&body, None));
            check(&tier);
        }
        let (n, bytes) = tier.usage();
        assert_eq!(n, 15);
        assert_eq!(bytes, 15 * (4096 + ENTRY_OVERHEAD));
        assert_eq!(evictions.load(Ordering::Relaxed), 185);
        // The newest entries are the ones left.
        assert!(tier.get(&key(199)).is_some());
        assert!(tier.get(&key(0)).is_none());
        // Removing is not evicting.
        tier.remove(&key(199));
        assert_eq!(evictions.load(Ordering::Relaxed), 185);
    }

    #[test]
    fn hot_entries_survive_a_scan_of_one_hit_wonders() {
        let (tier, _) = counting(64 * 1024, 16 * 1024 - ENTRY_OVERHEAD, ManualClock::at(0));
        let body = vec![1u8; 4096];
        let hot: Vec<ImageId> = (0..5).map(|i| id(&format!("hot{i:0>5}"))).collect();
        for h in &hot {
            tier.insert(*h, object(&body, None));
        }
        for i in 0..300 {
            for h in &hot {
                assert!(tier.get(h).is_some(), "hot entry {h:?} evicted after {i} cold inserts");
            }
            tier.insert(key(i), object(&body, None));
        }
        check(&tier);
        // SIEVE leaves whatever lies behind its hand alone while the hand
        // only meets new one-hit wonders; once a new working set is itself
        // requested, the hand comes round, and a hot set no longer asked for
        // goes like any other entry.
        for i in 300..400 {
            tier.insert(key(i), object(&body, None));
            assert!(tier.get(&key(i)).is_some());
        }
        assert!(hot.iter().all(|h| tier.get(h).is_none()));
    }

    #[test]
    fn expired_entries_are_dropped_on_insert_and_usage_and_never_kept() {
        let clock = ManualClock::at(100);
        let tier = MemoryTier::new(1 << 20, 1 << 20, clock.clone(), || {});
        tier.insert(id("aaaaaaaa"), object(b"soon", Some(110)));
        tier.insert(id("bbbbbbbb"), object(b"later", Some(200)));
        tier.insert(id("cccccccc"), object(b"never", None));
        // Already expired (inclusive): not kept at all.
        tier.insert(id("dddddddd"), object(b"past", Some(100)));
        assert!(tier.get(&id("dddddddd")).is_none());
        assert_eq!(tier.usage().0, 3);
        clock.set(110);
        assert_eq!(tier.usage(), (2, 5 + 5 + 2 * ENTRY_OVERHEAD));
        assert!(tier.get(&id("aaaaaaaa")).is_none());
        clock.set(250);
        tier.insert(id("eeeeeeee"), object(b"new", None));
        check(&tier);
        assert!(tier.get(&id("bbbbbbbb")).is_none());
        assert_eq!(tier.usage().0, 2);
    }

    #[test]
    fn sharded_tier_keeps_every_shard_within_its_share() {
        let (tier, evictions) = counting(16 << 20, 64 * 1024, ManualClock::at(0));
        assert_eq!(tier.shards.len(), 16);
        let body = vec![3u8; 60 * 1024];
        for i in 0..2000 {
            tier.insert(key(i), object(&body, None));
        }
        check(&tier);
        let (n, bytes) = tier.usage();
        assert!(bytes <= 16 << 20, "{bytes}");
        assert_eq!(n + evictions.load(Ordering::Relaxed), 2000);
        // Ids spread: every shard holds something.
        assert!(tier.shards.iter().all(|s| !s.read().unwrap().map.is_empty()));
    }

    #[test]
    fn random_operations_keep_the_structure_consistent() {
        let clock = ManualClock::at(0);
        let (tier, _) = counting(32 * 1024, 8 * 1024 - ENTRY_OVERHEAD, clock.clone());
        let mut model: HashMap<ImageId, usize> = HashMap::new();
        // A small deterministic generator: the test must not depend on luck.
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for step in 0..20_000 {
            let r = next();
            let k = key((r % 64) as usize);
            match (r >> 8) % 10 {
                0..=4 => {
                    let len = ((r >> 16) % 3000) as usize;
                    let exp = ((r >> 32) % 4 == 0).then(|| clock.unix_now() + ((r >> 40) % 5) as i64);
                    tier.insert(k, object(&vec![(r >> 24) as u8; len], exp));
                    model.insert(k, len);
                }
                5..=7 => {
                    if let Some(o) = tier.get(&k) {
                        assert_eq!(Some(&o.body.len()), model.get(&k), "step {step}: a hit is the last insert");
                    }
                }
                8 => {
                    tier.remove(&k);
                    model.remove(&k);
                    assert!(tier.get(&k).is_none());
                }
                _ => clock.set(clock.unix_now() + 1),
            }
            if step % 97 == 0 {
                check(&tier);
            }
        }
        check(&tier);
    }
}
