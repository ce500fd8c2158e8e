//! Persisting the applied edge-sync state: a snapshot file plus an
//! append-only log of the operations applied since.
//!
//! Before, every batch rewrote the whole state (JSON, tens of MB at a
//! million entries) and fsynced it. Now a batch appends one record to the
//! log and fsyncs that; the log is folded into a new snapshot once it is
//! larger than `sync.compact_log_bytes` or than the snapshot itself, so
//! the cost per change stays constant and the files stay within about
//! twice the state.
//!
//! # Files
//! - `state_path`: the snapshot.
//!   `b"IMGSYNC2" | generation u64 | seq u64 | count u64 | count × entry | crc32c u32`,
//!   entry = `id [8] | action u8 | at i64` (all little-endian; action 1
//!   takedown, 2 hide, 3 warn). Written to a temporary file, fsynced,
//!   renamed (and the directory fsynced).
//! - `state_path` + `.log`: `b"IMGSLOG2" | generation u64 | crc32c u32`, then
//!   records `len u32 | crc32c u32 | seq u64 | count u32 | count × op`,
//!   op = an entry, with action 0 meaning "removed". A new log (new
//!   generation) is put in place, by rename, after each snapshot.
//!
//! # Loading (fail closed)
//! The snapshot, then every log record of the same generation, in order.
//! A log of another generation is one a crash left behind between writing
//! a snapshot and replacing the log: the snapshot already holds all of it,
//! so it is ignored. A record cut short at the end of the log (a crash
//! during an append) is ignored and cut off. Anything else unreadable — a
//! damaged snapshot, a bad record followed by more records — means no
//! state: the edge waits for a snapshot from the control plane rather
//! than serve what it may have been told to refuse. An old-format state
//! (the JSON snapshot of earlier versions) is read, its entries stamped
//! with the time of loading.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use imgcdn_shared::sync::{Action, Snapshot};
use imgcdn_shared::ImageId;

use super::applied::{Applied, Entry, Op};

const SNAP_MAGIC: &[u8; 8] = b"IMGSYNC2";
const LOG_MAGIC: &[u8; 8] = b"IMGSLOG2";
const ENTRY: usize = 17;
const LOG_HEADER: usize = 20;

/// The state files of one edge, owned by the sync task.
pub struct StateFiles {
    path: PathBuf,
    log_path: PathBuf,
    generation: u64,
    snapshot_bytes: u64,
    log_bytes: u64,
    /// The log, open for appending; `None` until a snapshot exists or after
    /// a failed write (the next write is then a whole snapshot).
    log: Option<File>,
}

fn action_byte(a: Option<Action>) -> u8 {
    match a {
        None | Some(Action::Restore) => 0,
        Some(Action::Takedown) => 1,
        Some(Action::Hide) => 2,
        Some(Action::Warn) => 3,
    }
}

fn byte_action(b: u8) -> Option<Option<Action>> {
    Some(match b {
        0 => None,
        1 => Some(Action::Takedown),
        2 => Some(Action::Hide),
        3 => Some(Action::Warn),
        _ => return None,
    })
}

fn put_entry(out: &mut Vec<u8>, id: &ImageId, action: Option<Action>, at: i64) {
    out.extend_from_slice(id.as_str().as_bytes());
    out.push(action_byte(action));
    out.extend_from_slice(&at.to_le_bytes());
}

fn get_entry(b: &[u8]) -> Option<(ImageId, Option<Action>, i64)> {
    let id = ImageId::from_bytes(&b[..8]).ok()?;
    let action = byte_action(b[8])?;
    let at = i64::from_le_bytes(b[9..17].try_into().ok()?);
    Some((id, action, at))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Write `bytes` to `path` atomically and durably.
fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("edge-sync");
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, path)?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

impl StateFiles {
    /// Open the files at `path` and load the state they hold (`None`: no
    /// state, or an unreadable one, which is logged).
    pub fn open(path: &Path, now: i64) -> (StateFiles, Option<Applied>) {
        let mut log_path = path.as_os_str().to_owned();
        log_path.push(".log");
        let mut files = StateFiles {
            path: path.to_path_buf(),
            log_path: PathBuf::from(log_path),
            generation: 0,
            snapshot_bytes: 0,
            log_bytes: 0,
            log: None,
        };
        let state = match files.load(now) {
            Ok(s) => s,
            Err(e) => {
                log::error!("edge sync state {} is unreadable ({e}); waiting for a snapshot", path.display());
                files.log = None;
                None
            }
        };
        (files, state)
    }

    fn load(&mut self, now: i64) -> Result<Option<Applied>, String> {
        let bytes = match fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.to_string()),
        };
        self.snapshot_bytes = bytes.len() as u64;
        if !bytes.starts_with(SNAP_MAGIC) {
            // The JSON state of earlier versions: no log goes with it.
            let s: Snapshot = serde_json::from_slice(&bytes).map_err(|e| format!("old-format state: {e}"))?;
            return Ok(Some(Applied::from_snapshot(&s, now)));
        }
        let bad = |what: &str| format!("snapshot: {what}");
        if bytes.len() < 36 {
            return Err(bad("too short"));
        }
        let (content, crc) = bytes.split_at(bytes.len() - 4);
        if crc32c::crc32c(content) != u32::from_le_bytes(crc.try_into().map_err(|_| bad("crc"))?) {
            return Err(bad("checksum mismatch"));
        }
        let generation = u64_at(content, 8).ok_or_else(|| bad("header"))?;
        let seq = u64_at(content, 16).ok_or_else(|| bad("header"))?;
        let count = u64_at(content, 24).ok_or_else(|| bad("header"))? as usize;
        let body = &content[32..];
        if body.len() != count.checked_mul(ENTRY).ok_or_else(|| bad("count"))? {
            return Err(bad("length"));
        }
        let mut entries = HashMap::with_capacity(count);
        for e in body.chunks_exact(ENTRY) {
            let (id, action, at) = get_entry(e).ok_or_else(|| bad("entry"))?;
            let action = action.ok_or_else(|| bad("entry without action"))?;
            entries.insert(id, Entry { action, at });
        }
        self.generation = generation;
        let mut state = Applied::from_entries(seq, entries);
        state = self.replay(state)?;
        Ok(Some(state))
    }

    /// Apply the log's records to `state`; open the log for appending.
    fn replay(&mut self, mut state: Applied) -> Result<Applied, String> {
        let log = match fs::read(&self.log_path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(format!("log: {e}")),
        };
        let header_ok = log.len() >= LOG_HEADER
            && log.starts_with(LOG_MAGIC)
            && u32_at(&log, 16) == Some(crc32c::crc32c(&log[..16]));
        if !header_ok || u64_at(&log, 8) != Some(self.generation) {
            // Missing, torn while being created, or left by a crash between a
            // snapshot and its new log: the snapshot holds everything.
            self.new_log().map_err(|e| format!("log: {e}"))?;
            return Ok(state);
        }
        let mut pos = LOG_HEADER;
        let mut good = pos;
        while pos < log.len() {
            let rest = log.len() - pos;
            let torn = |n: usize| n > rest;
            if torn(8) {
                break;
            }
            let len = u32_at(&log, pos).expect("in bounds") as usize;
            let crc = u32_at(&log, pos + 4).expect("in bounds");
            if torn(8 + len) {
                break;
            }
            let payload = &log[pos + 8..pos + 8 + len];
            let last = 8 + len == rest;
            if crc32c::crc32c(payload) != crc {
                if last {
                    break; // cut off mid-append
                }
                return Err(format!("log record at byte {pos} is damaged"));
            }
            let (seq, ops) = parse_record(payload).ok_or_else(|| format!("log record at byte {pos} is malformed"))?;
            state = state.apply(&ops, seq);
            pos += 8 + len;
            good = pos;
        }
        let f = OpenOptions::new().append(true).open(&self.log_path).map_err(|e| format!("log: {e}"))?;
        if good < log.len() {
            log::warn!("edge sync log: dropped {} bytes of a record cut short", log.len() - good);
            f.set_len(good as u64).map_err(|e| format!("log: {e}"))?;
        }
        self.log_bytes = good as u64;
        self.log = Some(f);
        Ok(state)
    }

    /// Put a fresh, empty log of the current generation in place.
    fn new_log(&mut self) -> io::Result<()> {
        self.log = None;
        let mut header = Vec::with_capacity(LOG_HEADER);
        header.extend_from_slice(LOG_MAGIC);
        header.extend_from_slice(&self.generation.to_le_bytes());
        let crc = crc32c::crc32c(&header);
        header.extend_from_slice(&crc.to_le_bytes());
        write_atomic(&self.log_path, &header)?;
        self.log = Some(OpenOptions::new().append(true).open(&self.log_path)?);
        self.log_bytes = LOG_HEADER as u64;
        Ok(())
    }

    /// Write `state` as the new snapshot and start a new log.
    pub fn write_snapshot(&mut self, state: &Applied) -> io::Result<()> {
        self.log = None;
        let mut generation: u64 = rand::random();
        if generation == self.generation {
            generation ^= 1;
        }
        let mut out = Vec::with_capacity(36 + state.len() * ENTRY);
        out.extend_from_slice(SNAP_MAGIC);
        out.extend_from_slice(&generation.to_le_bytes());
        out.extend_from_slice(&state.seq.to_le_bytes());
        out.extend_from_slice(&(state.len() as u64).to_le_bytes());
        for (id, e) in state.iter() {
            put_entry(&mut out, &id, Some(e.action), e.at);
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        write_atomic(&self.path, &out)?;
        self.generation = generation;
        self.snapshot_bytes = out.len() as u64;
        self.new_log()
    }

    /// Record `ops` (as of `seq`) durably. Falls back to a whole snapshot
    /// of `state` (which already includes them) when there is no log to
    /// append to, and compacts when the log has grown past `compact_bytes`
    /// and the snapshot's size.
    pub fn record(&mut self, state: &Applied, seq: u64, ops: &[Op], compact_bytes: u64) -> io::Result<()> {
        let Some(log) = self.log.as_mut() else {
            return self.write_snapshot(state);
        };
        let mut payload = Vec::with_capacity(12 + ops.len() * ENTRY);
        payload.extend_from_slice(&seq.to_le_bytes());
        payload.extend_from_slice(&(ops.len() as u32).to_le_bytes());
        for op in ops {
            match op {
                Op::Set(id, e) => put_entry(&mut payload, id, Some(e.action), e.at),
                Op::Remove(id) => put_entry(&mut payload, id, None, 0),
            }
        }
        let mut record = Vec::with_capacity(8 + payload.len());
        record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        record.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
        record.extend_from_slice(&payload);
        let written = log.write_all(&record).and_then(|()| log.sync_data());
        if let Err(e) = written {
            // What reached the file is unknown: the next write is a snapshot.
            self.log = None;
            return Err(e);
        }
        self.log_bytes += record.len() as u64;
        if self.log_bytes > compact_bytes.max(self.snapshot_bytes) {
            self.write_snapshot(state)?;
        }
        Ok(())
    }

    /// (snapshot bytes, log bytes) on disk.
    pub fn sizes(&self) -> (u64, u64) {
        (self.snapshot_bytes, self.log_bytes)
    }
}

fn parse_record(p: &[u8]) -> Option<(u64, Vec<Op>)> {
    let seq = u64_at(p, 0)?;
    let n = u32_at(p, 8)? as usize;
    let body = p.get(12..)?;
    if body.len() != n.checked_mul(ENTRY)? {
        return None;
    }
    let ops = body
        .chunks_exact(ENTRY)
        .map(|e| {
            let (id, action, at) = get_entry(e)?;
            Some(match action {
                None => Op::Remove(id),
                Some(action) => Op::Set(id, Entry { action, at }),
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some((seq, ops))
}

#[cfg(test)]
mod tests {
    use super::*;
    use imgcdn_shared::sync::Change;

    fn id(n: u32) -> ImageId {
        ImageId::from_bytes(format!("{n:0>8}").as_bytes()).unwrap()
    }

    fn batch(seq: u64, from: u32, n: u32, action: Action) -> Vec<Change> {
        (from..from + n).map(|i| Change { seq, id: id(i), action, reason: None }).collect()
    }

    fn same(a: &Applied, b: &Applied) {
        assert_eq!(a.seq, b.seq);
        let (x, y): (HashMap<_, _>, HashMap<_, _>) = (a.iter().collect(), b.iter().collect());
        assert_eq!(x, y);
    }

    /// Apply batches the way the sync task does; the loaded state always
    /// equals the applied one, across compactions and reopenings.
    #[test]
    fn the_loaded_state_equals_the_applied_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sync").join("edge-sync.state");
        let (mut files, loaded) = StateFiles::open(&path, 0);
        assert!(loaded.is_none());
        let mut state = Applied::from_snapshot(&Snapshot { seq: 5, entries: batch(5, 0, 100, Action::Takedown) }, 10);
        files.write_snapshot(&state).unwrap();
        for k in 0..60u32 {
            let seq = 6 + u64::from(k);
            let action = [Action::Hide, Action::Warn, Action::Restore, Action::Takedown][(k % 4) as usize];
            let changes = batch(seq, k * 7, 20, action);
            let ops = Applied::ops_for(&changes, 100 + i64::from(k));
            state = state.apply(&ops, seq);
            // A small compaction threshold: some of these compact.
            files.record(&state, seq, &ops, 2_000).unwrap();
            if k % 13 == 0 {
                let (f, loaded) = StateFiles::open(&path, 999);
                same(&loaded.unwrap(), &state);
                files = f;
            }
        }
        let (_, loaded) = StateFiles::open(&path, 999);
        same(&loaded.unwrap(), &state);
        let names: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 2, "snapshot and log only: {names:?}");
    }

    #[test]
    fn a_torn_tail_is_ignored_and_cut_off_but_damage_fails_closed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let (mut files, _) = StateFiles::open(&path, 0);
        let mut state = Applied::default();
        files.write_snapshot(&state).unwrap();
        let mut states = Vec::new();
        for seq in 1..=3u64 {
            let ops = Applied::ops_for(&batch(seq, seq as u32 * 10, 5, Action::Takedown), 1);
            state = state.apply(&ops, seq);
            files.record(&state, seq, &ops, 1 << 20).unwrap();
            states.push(state.clone());
        }
        let log_path = dir.path().join("s.log");
        let full = fs::read(&log_path).unwrap();
        // Torn mid-record: the state of the first two batches, and appending works after.
        fs::write(&log_path, &full[..full.len() - 10]).unwrap();
        let (mut files, loaded) = StateFiles::open(&path, 0);
        same(&loaded.unwrap(), &states[1]);
        let ops = Applied::ops_for(&batch(9, 900, 2, Action::Warn), 1);
        let next = states[1].apply(&ops, 9);
        files.record(&next, 9, &ops, 1 << 20).unwrap();
        same(&StateFiles::open(&path, 0).1.unwrap(), &next);
        // A damaged record with more after it: no state at all.
        let mut bad = fs::read(&log_path).unwrap();
        bad[LOG_HEADER + 20] ^= 0xff;
        fs::write(&log_path, &bad).unwrap();
        assert!(StateFiles::open(&path, 0).1.is_none());
        // A damaged snapshot: no state.
        fs::write(&log_path, &full).unwrap();
        let mut snap = fs::read(&path).unwrap();
        snap[20] ^= 1;
        fs::write(&path, &snap).unwrap();
        assert!(StateFiles::open(&path, 0).1.is_none());
    }

    #[test]
    fn a_log_left_from_before_a_snapshot_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let (mut files, _) = StateFiles::open(&path, 0);
        let a = Applied::default().with(&batch(1, 0, 3, Action::Hide), 1, 5);
        files.write_snapshot(&a).unwrap();
        let ops = Applied::ops_for(&batch(2, 0, 3, Action::Restore), 6);
        let b = a.apply(&ops, 2);
        files.record(&b, 2, &ops, 1 << 20).unwrap();
        let old_log = fs::read(dir.path().join("s.log")).unwrap();
        // Crash after the new snapshot, before its new log.
        files.write_snapshot(&b).unwrap();
        fs::write(dir.path().join("s.log"), &old_log).unwrap();
        same(&StateFiles::open(&path, 0).1.unwrap(), &b);
    }

    #[test]
    fn the_old_json_state_still_loads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("edge-sync.json");
        let snap = Snapshot { seq: 7, entries: batch(7, 0, 3, Action::Takedown) };
        fs::write(&path, serde_json::to_vec(&snap).unwrap()).unwrap();
        let state = StateFiles::open(&path, 42).1.unwrap();
        assert_eq!((state.seq, state.len()), (7, 3));
        assert_eq!(state.get(&id(1)), Some(Entry { action: Action::Takedown, at: 42 }));
        fs::write(&path, b"{\"seq\": 3, \"entr").unwrap();
        assert!(StateFiles::open(&path, 0).1.is_none(), "a corrupt state file means no state, not an empty one");
    }
}
