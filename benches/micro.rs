//! Micro-benchmarks of the edge's per-request hot path (issue 6):
//!
//! - `url/*`: `ImagePath::parse`, the strict `/{storage}/{id}.{ext}` parser that
//!   runs before anything else on every request.
//! - `memory/*`: a memory-tier (SIEVE) lookup, hit and miss.
//! - `disk/*`: a disk-tier read: file read, CRC32C, header JSON, key and length
//!   checks (the page cache holds the file, so this is the CPU cost).
//! - `response/*`: building the response header for a found object (200, 304).
//! - `visibility/*`: the edge-sync check every request makes before any tier
//!   (takedowns, hidden, restricted ids): with nothing to enforce, and against
//!   100,000 entries, hit and miss.
//! - `sync/*`: applying a 1000-change edge-sync batch on top of a million
//!   entries, now and the way it was done before (cloning the whole map).
//!
//! Not here yet because it does not exist yet: the canonical transform
//! variant key (query → variant); add it with transforms.
//!
//! Run: `cargo bench -p imgcdn --bench micro` (criterion; add `-- url` to filter).
//! `cargo test --all-targets` runs each benchmark once as a smoke test.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use imgcdn_edge::cache::disk::{DiskEvents, DiskRead, DiskTier};
use imgcdn_edge::cache::memory::MemoryTier;
use imgcdn_edge::cache::{CachedObject, ObjectMeta};
use imgcdn_edge::metrics::Tier;
use imgcdn_edge::serve::response;
use imgcdn_shared::{Format, ImageId, ImagePath};
use pingora_core::protocols::http::ServerSession;

/// A deterministic id (the benches must not depend on randomness).
fn id(n: u32) -> ImageId {
    const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut s = [b'0'; 8];
    let mut x = n;
    for b in s.iter_mut().rev() {
        *b = ALPHABET[(x % 62) as usize];
        x /= 62;
    }
    ImageId::from_bytes(&s).expect("base62")
}

fn object(size: usize, seed: u8) -> CachedObject {
    let body: Vec<u8> = (0..size).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect();
    let manifest = imgcdn_shared::testing::png_manifest(&body, None);
    CachedObject::new(body.into(), ObjectMeta::new(manifest).expect("valid manifest"))
}

fn url_parse(c: &mut Criterion) {
    let storage = "k3v9x0q2m7za".parse().expect("a storage name");
    let good = ImagePath::in_storage(storage, id(123_456), Format::Png).to_string();
    let with_query = format!("{good}?w=300&utm_source=x");
    let wrong_shard = format!("/000/{}.png", id(7));
    let hostile = "/abc/../../etc/passwd";
    let mut g = c.benchmark_group("url");
    g.bench_function("parse_ok", |b| b.iter(|| ImagePath::parse(black_box(good.as_bytes()))));
    g.bench_function("parse_ok_with_query", |b| b.iter(|| ImagePath::parse(black_box(with_query.as_bytes()))));
    g.bench_function("parse_wrong_shard", |b| b.iter(|| ImagePath::parse(black_box(wrong_shard.as_bytes()))));
    g.bench_function("parse_hostile", |b| b.iter(|| ImagePath::parse(black_box(hostile.as_bytes()))));
    g.finish();
}

fn memory_get(c: &mut Criterion) {
    let tier = MemoryTier::new(64 << 20, 8 << 20, imgcdn_edge::clock::system(), || {});
    let n = 512;
    for i in 0..n {
        tier.insert(id(i), object(2048, i as u8));
    }
    let mut g = c.benchmark_group("memory");
    let mut i = 0u32;
    g.bench_function("get_hit", |b| {
        b.iter(|| {
            i = (i + 1) % n;
            black_box(tier.get(black_box(&id(i))))
        })
    });
    g.bench_function("get_miss", |b| b.iter(|| black_box(tier.get(black_box(&id(1_000_000))))));
    g.finish();
}

fn disk_get(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let tier = DiskTier::open(dir.path(), 1 << 30, imgcdn_edge::clock::system(), DiskEvents::default())
        .expect("open disk tier");
    let mut g = c.benchmark_group("disk");
    for (k, size) in [(1u32, 2 * 1024usize), (2, 35 * 1024), (3, 512 * 1024)] {
        tier.put(id(k), &object(size, k as u8)).expect("put");
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(format!("get_hit_{}k", size / 1024), |b| {
            b.iter(|| match tier.get(black_box(&id(k))) {
                DiskRead::Hit(o) => black_box(o),
                _ => panic!("disk entry lost"),
            })
        });
    }
    g.throughput(Throughput::Elements(1));
    g.bench_function("get_miss", |b| b.iter(|| black_box(matches!(tier.get(&id(999)), DiskRead::Miss))));
    g.finish();
}

/// A parsed pingora request header, obtained the way the server gets one:
/// by reading the request bytes through a `ServerSession`.
fn session(raw: &str) -> ServerSession {
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    let stream = std::io::Cursor::new(raw.as_bytes().to_vec());
    let mut s = ServerSession::new_http1(Box::new(stream));
    assert!(rt.block_on(s.read_request()).expect("request parses"));
    s
}

fn response_object(c: &mut Criterion) {
    let obj = object(35 * 1024, 1);
    let etag = obj.meta.etag.to_str().expect("ascii").to_string();
    let get = session("GET /x HTTP/1.1\r\nHost: cdn\r\nAccept: image/*\r\n\r\n");
    let cond = session(&format!("GET /x HTTP/1.1\r\nHost: cdn\r\nIf-None-Match: {etag}\r\n\r\n"));
    let range = session("GET /x HTTP/1.1\r\nHost: cdn\r\nRange: bytes=0-1023\r\n\r\n");
    let mut g = c.benchmark_group("response");
    for (name, s) in [("object_200", &get), ("object_304", &cond), ("object_206", &range)] {
        g.bench_function(name, |b| {
            b.iter(|| {
                response::object(black_box(s.req_header()), black_box(&obj), Tier::Memory, 1_700_000_000, 31_536_000)
            })
        });
    }
    g.finish();
}

fn visibility(c: &mut Criterion) {
    use imgcdn_edge::sync::{Applied, StateFiles, Visibility};
    use imgcdn_shared::sync::{Action, Change};
    let mut g = c.benchmark_group("visibility");
    let empty = Visibility::disabled();
    g.bench_function("empty", |b| b.iter(|| black_box(empty.action(black_box(&id(7))))));
    let changes: Vec<Change> = (0..100_000)
        .map(|n| Change {
            seq: 1,
            id: id(n * 3),
            action: if n % 2 == 0 { Action::Takedown } else { Action::Hide },
            reason: None,
        })
        .collect();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("state");
    let (mut files, _) = StateFiles::open(&path, 0);
    files.write_snapshot(&Applied::default().with(&changes, 1, 0)).expect("persist");
    let full = Visibility::load(&path, false, 0);
    g.bench_function("100k_hit", |b| b.iter(|| black_box(full.action(black_box(&id(3_000))))));
    g.bench_function("100k_miss", |b| b.iter(|| black_box(full.action(black_box(&id(3_001))))));
    g.finish();
}

/// Applying a 1000-change batch on top of a million entries: the state as
/// it is now (base + overlay) against what every batch did before (clone
/// the whole map, then apply).
fn sync_apply(c: &mut Criterion) {
    use imgcdn_edge::sync::{Applied, Entry};
    use imgcdn_shared::sync::{Action, Change};
    use std::collections::HashMap;
    let n = 1_000_000u32;
    let base: HashMap<ImageId, Entry> =
        (0..n).map(|i| (id(i * 2), Entry { action: Action::Takedown, at: 0 })).collect();
    let state = Applied::from_entries(1, base.clone());
    let batch: Vec<Change> =
        (0..1000u32).map(|i| Change { seq: 2, id: id(i * 7 + 1), action: Action::Takedown, reason: None }).collect();
    let mut g = c.benchmark_group("sync");
    g.sample_size(10);
    g.bench_function("apply_1000_on_1m", |b| b.iter(|| black_box(state.with(black_box(&batch), 2, 0))));
    g.bench_function("apply_1000_on_1m_cloning_the_map", |b| {
        b.iter(|| {
            let mut m = base.clone();
            for c in &batch {
                m.insert(c.id, Entry { action: c.action, at: 0 });
            }
            black_box(m)
        })
    });
    g.finish();
}

criterion_group!(benches, url_parse, memory_get, disk_get, response_object, visibility, sync_apply);
criterion_main!(benches);
