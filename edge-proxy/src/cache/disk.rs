//! Disk tier: one file per object, bounded by bytes, kept across restarts.
//!
//! # File format
//! ```text
//! b"IMGCDNC1" | header_len: u32 LE | header JSON {key, manifest} | body | crc32c: u32 LE
//! ```
//! The CRC covers everything before it. A file is written under `tmp/`
//! and renamed into place, so a reader never sees a half-written file; and
//! because every read checks the CRC, the key and the length, a file torn
//! by a crash or damaged on disk is dropped, never served. (No fsync: a
//! lost write only costs a later origin read.)
//!
//! # Layout and index
//! `{root}/{first two chars of id}/{id}.{generation}.{expires_at|-}`. Every
//! write gets a fresh random generation, so replacing an entry never
//! reuses a path that a concurrent reader or deleter is looking at. The
//! index is a moka cache weighted by file size; its eviction listener
//! deletes the file of every entry it drops (for space, expiry, explicit
//! removal or replacement). At start the directory is scanned to rebuild
//! the index: names carry the id and expiry, so no file is opened.
//!
//! Calls here block on file I/O: run them on a blocking thread.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use imgcdn_shared::{ImageId, Manifest};
use moka::notification::RemovalCause;
use moka::sync::Cache;
use moka::Expiry;
use serde::{Deserialize, Serialize};

use super::{CachedObject, ObjectMeta};
use crate::clock::Clock;

const MAGIC: &[u8; 8] = b"IMGCDNC1";
const TMP_DIR: &str = "tmp";

#[derive(Clone)]
struct DiskEntry {
    path: Arc<PathBuf>,
    size: u64,
    expires_at: Option<i64>,
}

#[derive(Serialize, Deserialize)]
struct Header {
    key: ImageId,
    manifest: Manifest,
}

/// What a disk read found.
pub enum DiskRead {
    Hit(CachedObject),
    Miss,
    /// The file failed verification and was removed.
    Corrupt,
}

pub struct DiskTier {
    root: PathBuf,
    index: Cache<ImageId, DiskEntry>,
    max_bytes: u64,
}

struct UntilExpiry {
    clock: Arc<dyn Clock>,
}

impl Expiry<ImageId, DiskEntry> for UntilExpiry {
    fn expire_after_create(&self, _k: &ImageId, v: &DiskEntry, _now: Instant) -> Option<Duration> {
        v.expires_at.map(|e| Duration::from_secs(e.saturating_sub(self.clock.unix_now()).max(0) as u64))
    }
}

impl DiskTier {
    /// Open (creating if needed) the tier at `root` and index what is there.
    /// `on_evict` is called once per entry dropped for space.
    pub fn open(
        root: &Path,
        max_bytes: u64,
        clock: Arc<dyn Clock>,
        on_evict: impl Fn() + Send + Sync + 'static,
    ) -> io::Result<DiskTier> {
        fs::create_dir_all(root.join(TMP_DIR))?;
        let index = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|_k: &ImageId, v: &DiskEntry| u32::try_from(v.size).unwrap_or(u32::MAX))
            .expire_after(UntilExpiry { clock: clock.clone() })
            .eviction_listener(move |_k, v: DiskEntry, cause| {
                if cause == RemovalCause::Size {
                    on_evict();
                }
                // The entry is gone from the index: its file must go too.
                let _ = fs::remove_file(v.path.as_path());
            })
            .build();
        let tier = DiskTier { root: root.to_path_buf(), index, max_bytes };
        tier.scan(clock.unix_now())?;
        Ok(tier)
    }

    /// Rebuild the index from the directory: drop leftovers of interrupted
    /// writes, expired entries and older generations of the same id.
    fn scan(&self, now: i64) -> io::Result<()> {
        for e in fs::read_dir(self.root.join(TMP_DIR))? {
            let _ = fs::remove_file(e?.path());
        }
        let mut found: Vec<(SystemTime, ImageId, DiskEntry)> = Vec::new();
        for dir in fs::read_dir(&self.root)? {
            let dir = dir?;
            let name = dir.file_name();
            if name.len() != 2 || !dir.file_type()?.is_dir() {
                continue;
            }
            for f in fs::read_dir(dir.path())? {
                let f = f?;
                let path = f.path();
                let meta = f.metadata()?;
                match parse_name(&f.file_name().to_string_lossy()) {
                    Some((id, expires_at)) if expires_at.is_none_or(|e| now < e) && meta.is_file() => {
                        let entry = DiskEntry { path: Arc::new(path), size: meta.len(), expires_at };
                        found.push((meta.modified()?, id, entry));
                    }
                    _ => {
                        let _ = fs::remove_file(&path);
                    }
                }
            }
        }
        // Oldest first, so the most recently written are the most recent in
        // the index; a newer generation replaces (and deletes) an older one.
        found.sort_by_key(|(t, _, _)| *t);
        for (_, id, entry) in found {
            self.index.insert(id, entry);
        }
        self.index.run_pending_tasks();
        Ok(())
    }

    /// Read and verify the entry for `id`.
    pub fn get(&self, id: &ImageId) -> DiskRead {
        let Some(entry) = self.index.get(id) else {
            return DiskRead::Miss;
        };
        let data = match fs::read(entry.path.as_path()) {
            Ok(d) => d,
            Err(_) => {
                self.forget(id, &entry);
                return DiskRead::Miss;
            }
        };
        match decode(id, data) {
            Some(obj) => DiskRead::Hit(obj),
            None => {
                self.forget(id, &entry);
                DiskRead::Corrupt
            }
        }
    }

    /// Drop `id` from the index if it still points at `entry`'s file.
    fn forget(&self, id: &ImageId, entry: &DiskEntry) {
        if self.index.get(id).is_some_and(|cur| Arc::ptr_eq(&cur.path, &entry.path)) {
            self.index.invalidate(id);
        }
        let _ = fs::remove_file(entry.path.as_path());
    }

    /// Write `obj` for `id` atomically and index it.
    pub fn put(&self, id: ImageId, obj: &CachedObject) -> io::Result<()> {
        let header =
            serde_json::to_vec(&Header { key: id, manifest: obj.meta.manifest.clone() }).map_err(io::Error::other)?;
        let total = MAGIC.len() + 4 + header.len() + obj.body.len() + 4;
        if u32::try_from(total).is_err() || total as u64 > self.max_bytes {
            // Can never be indexed (and so never evicted): writing it would
            // leave a file nobody deletes. It stays an origin read.
            return Ok(());
        }
        let mut buf = Vec::with_capacity(total);
        buf.extend_from_slice(MAGIC);
        buf.extend_from_slice(&(header.len() as u32).to_le_bytes());
        buf.extend_from_slice(&header);
        buf.extend_from_slice(&obj.body);
        let crc = crc32c::crc32c(&buf);
        buf.extend_from_slice(&crc.to_le_bytes());

        let generation: u64 = rand::random();
        let expires = obj.meta.expires_at.map_or("-".to_string(), |e| e.to_string());
        let name = format!("{id}.{generation:016x}.{expires}");
        let tmp = self.root.join(TMP_DIR).join(&name);
        let dir = self.root.join(&id.as_str()[..2]);
        let dest = dir.join(&name);
        let write = || -> io::Result<()> {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(&buf)?;
            drop(f);
            fs::create_dir_all(&dir)?;
            fs::rename(&tmp, &dest)
        };
        if let Err(e) = write() {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        let entry = DiskEntry { path: Arc::new(dest), size: total as u64, expires_at: obj.meta.expires_at };
        self.index.insert(id, entry);
        Ok(())
    }

    /// Remove `id` (and its file).
    pub fn remove(&self, id: &ImageId) {
        self.index.invalidate(id);
        self.index.run_pending_tasks();
    }

    /// (entries, bytes) after applying pending maintenance.
    pub fn usage(&self) -> (u64, u64) {
        self.index.run_pending_tasks();
        (self.index.entry_count(), self.index.weighted_size())
    }
}

/// `{id}.{generation}.{expires_at|-}` → (id, expires_at).
fn parse_name(name: &str) -> Option<(ImageId, Option<i64>)> {
    let mut parts = name.split('.');
    let id: ImageId = parts.next()?.parse().ok()?;
    let generation = parts.next()?;
    if generation.len() != 16 || !generation.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let expires = match parts.next()? {
        "-" => None,
        s => Some(s.parse().ok()?),
    };
    parts.next().is_none().then_some((id, expires))
}

/// Verify a file's bytes and turn them into an object; `None` if anything
/// is off (wrong magic, CRC, key or length).
fn decode(id: &ImageId, data: Vec<u8>) -> Option<CachedObject> {
    if data.len() < MAGIC.len() + 8 || &data[..8] != MAGIC {
        return None;
    }
    let (content, crc) = data.split_at(data.len() - 4);
    if crc32c::crc32c(content) != u32::from_le_bytes(crc.try_into().ok()?) {
        return None;
    }
    let header_len = u32::from_le_bytes(content[8..12].try_into().ok()?) as usize;
    let header_end = 12usize.checked_add(header_len).filter(|&e| e <= content.len())?;
    let header: Header = serde_json::from_slice(&content[12..header_end]).ok()?;
    if header.key != *id || header.manifest.bytes != (content.len() - header_end) as u64 {
        return None;
    }
    let meta = ObjectMeta::new(header.manifest).ok()?;
    let mut data = data;
    data.truncate(data.len() - 4);
    let body = Bytes::from(data).slice(header_end..);
    Some(CachedObject::new(body, meta))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::test_support::object;
    use crate::clock::test_support::ManualClock;

    fn id(s: &str) -> ImageId {
        s.parse().unwrap()
    }

    fn files(root: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for d in fs::read_dir(root).unwrap() {
            let d = d.unwrap().path();
            if d.is_dir() {
                out.extend(fs::read_dir(&d).unwrap().map(|f| f.unwrap().path()));
            }
        }
        out
    }

    fn open(root: &Path, clock: Arc<ManualClock>) -> DiskTier {
        DiskTier::open(root, 1 << 20, clock, || {}).unwrap()
    }

    #[test]
    fn round_trip_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let tier = open(dir.path(), ManualClock::at(0));
        tier.put(id("abcdefgh"), &object(b"image bytes", None)).unwrap();
        let DiskRead::Hit(o) = tier.get(&id("abcdefgh")) else { panic!("miss") };
        assert_eq!(&o.body[..], b"image bytes");
        drop(tier);
        let tier = open(dir.path(), ManualClock::at(0));
        let DiskRead::Hit(o) = tier.get(&id("abcdefgh")) else { panic!("lost on reopen") };
        assert_eq!(&o.body[..], b"image bytes");
        assert_eq!(o.meta.manifest.bytes, 11);
    }

    #[test]
    fn a_damaged_file_is_never_served_and_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let tier = open(dir.path(), ManualClock::at(0));
        tier.put(id("abcdefgh"), &object(b"image bytes", None)).unwrap();
        let path = files(dir.path()).into_iter().find(|p| !p.starts_with(dir.path().join("tmp"))).unwrap();
        let mut data = fs::read(&path).unwrap();
        let n = data.len();
        data[n - 8] ^= 0xff; // flip a body byte
        fs::write(&path, &data).unwrap();
        assert!(matches!(tier.get(&id("abcdefgh")), DiskRead::Corrupt));
        assert!(!path.exists());
        assert!(matches!(tier.get(&id("abcdefgh")), DiskRead::Miss));
    }

    #[test]
    fn a_torn_file_from_a_crash_is_dropped_on_read() {
        let dir = tempfile::tempdir().unwrap();
        let tier = open(dir.path(), ManualClock::at(0));
        tier.put(id("abcdefgh"), &object(&[9u8; 5000], None)).unwrap();
        let path = files(dir.path()).into_iter().find(|p| p.parent() != Some(&dir.path().join("tmp"))).unwrap();
        drop(tier);
        let data = fs::read(&path).unwrap();
        fs::write(&path, &data[..data.len() / 2]).unwrap(); // as if cut off mid-write
        let tier = open(dir.path(), ManualClock::at(0));
        assert!(matches!(tier.get(&id("abcdefgh")), DiskRead::Corrupt));
    }

    #[test]
    fn leftovers_of_interrupted_writes_are_cleaned_at_open() {
        let dir = tempfile::tempdir().unwrap();
        drop(open(dir.path(), ManualClock::at(0)));
        fs::write(dir.path().join("tmp/abcdefgh.0000000000000001.-"), b"half").unwrap();
        fs::create_dir_all(dir.path().join("ab")).unwrap();
        fs::write(dir.path().join("ab/not-ours"), b"x").unwrap();
        drop(open(dir.path(), ManualClock::at(0)));
        assert!(fs::read_dir(dir.path().join("tmp")).unwrap().next().is_none());
        assert!(!dir.path().join("ab/not-ours").exists());
    }

    #[test]
    fn a_file_under_another_key_is_not_served() {
        let dir = tempfile::tempdir().unwrap();
        let tier = open(dir.path(), ManualClock::at(0));
        tier.put(id("abcdefgh"), &object(b"A", None)).unwrap();
        let path = files(dir.path()).pop().unwrap();
        // Rename the file so its name says another id: the header still says abcdefgh.
        let other = path.with_file_name(path.file_name().unwrap().to_string_lossy().replace("abcdefgh", "abzzzzzz"));
        fs::rename(&path, &other).unwrap();
        drop(tier);
        let tier = open(dir.path(), ManualClock::at(0));
        assert!(matches!(tier.get(&id("abzzzzzz")), DiskRead::Corrupt));
    }

    #[test]
    fn expired_entries_are_dropped_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::at(100);
        let tier = open(dir.path(), clock.clone());
        tier.put(id("abcdefgh"), &object(b"x", Some(200))).unwrap();
        drop(tier);
        clock.set(300);
        let tier = open(dir.path(), clock);
        assert!(matches!(tier.get(&id("abcdefgh")), DiskRead::Miss));
        assert!(files(dir.path()).is_empty());
    }

    #[test]
    fn replacing_and_removing_delete_files() {
        let dir = tempfile::tempdir().unwrap();
        let tier = open(dir.path(), ManualClock::at(0));
        tier.put(id("abcdefgh"), &object(b"one", None)).unwrap();
        tier.put(id("abcdefgh"), &object(b"two", None)).unwrap();
        tier.usage();
        assert_eq!(files(dir.path()).len(), 1);
        let DiskRead::Hit(o) = tier.get(&id("abcdefgh")) else { panic!() };
        assert_eq!(&o.body[..], b"two");
        tier.remove(&id("abcdefgh"));
        assert!(files(dir.path()).is_empty());
    }

    #[test]
    fn an_entry_larger_than_the_budget_leaves_no_file() {
        for budget in [0, 100] {
            let dir = tempfile::tempdir().unwrap();
            let tier = DiskTier::open(dir.path(), budget, ManualClock::at(0), || {}).unwrap();
            for i in 0..20 {
                tier.put(id(&format!("{i:0>8}")), &object(&[1u8; 4000], None)).unwrap();
            }
            tier.usage();
            assert!(
                files(dir.path()).iter().all(|p| p.starts_with(dir.path().join("tmp"))),
                "budget {budget}: files left behind"
            );
        }
    }

    #[test]
    fn evicts_to_stay_within_budget() {
        let dir = tempfile::tempdir().unwrap();
        let tier = DiskTier::open(dir.path(), 50_000, ManualClock::at(0), || {}).unwrap();
        for i in 0..40 {
            let k = id(&format!("{i:0>8}"));
            tier.put(k, &object(&[1u8; 4000], None)).unwrap();
            tier.get(&k);
        }
        let (_, bytes) = tier.usage();
        assert!(bytes <= 50_000, "{bytes}");
        let on_disk: u64 = files(dir.path()).iter().map(|p| fs::metadata(p).unwrap().len()).sum();
        assert!(on_disk <= 50_000, "{on_disk} bytes on disk");
    }

    #[test]
    fn concurrent_writers_and_readers_never_see_a_wrong_body() {
        let dir = tempfile::tempdir().unwrap();
        let tier = Arc::new(open(dir.path(), ManualClock::at(0)));
        let k = id("abcdefgh");
        std::thread::scope(|s| {
            for t in 0..4u8 {
                let tier = tier.clone();
                s.spawn(move || {
                    for _ in 0..50 {
                        tier.put(k, &object(&[t; 3000], None)).unwrap();
                        if let DiskRead::Hit(o) = tier.get(&k) {
                            let first = o.body[0];
                            assert!(o.body.iter().all(|&b| b == first));
                            assert_eq!(o.body.len(), 3000);
                        }
                    }
                });
            }
        });
    }
}
