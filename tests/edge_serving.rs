//! End-to-end: a real `imgcdn edge` process serving from its tiers.

mod common;

use std::time::Duration;

use common::*;
use imgcdn_shared::{Format, ImageId, ImagePath, StorageName};
use reqwest::StatusCode;

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers().get(name).map(|v| v.to_str().unwrap().to_string()).unwrap_or_default()
}

#[tokio::test]
async fn serves_from_origin_then_memory_then_disk_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path().join("store"));
    let image = png(64, 64, 1);
    let path = store.publish(&image, None);
    let opts = EdgeOpts::new(dir.path());
    let c = client();

    let edge = EdgeProcess::start(dir.path(), &opts);
    let r = c.get(edge.url(&path)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "x-cache"), "MISS");
    assert_eq!(header(&r, "content-type"), "image/png");
    assert_eq!(&r.bytes().await.unwrap()[..], &image[..]);

    let r = c.get(edge.url(&path)).send().await.unwrap();
    assert_eq!(header(&r, "x-cache"), "HIT-MEMORY");
    assert_eq!(&r.bytes().await.unwrap()[..], &image[..]);
    assert_eq!(edge.metric("imgcdn_edge_origin_reads_total"), 1.0);
    assert!(edge.stop().success());

    // A new process has an empty memory tier but the same disk tier, and
    // serves without reading storage even though the object is gone there.
    std::fs::remove_file(store.object_path(&path.id)).unwrap();
    let edge = EdgeProcess::start(dir.path(), &opts);
    let r = c.get(edge.url(&path)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "x-cache"), "HIT-DISK");
    assert_eq!(&r.bytes().await.unwrap()[..], &image[..]);
    let r = c.get(edge.url(&path)).send().await.unwrap();
    assert_eq!(header(&r, "x-cache"), "HIT-MEMORY");
    assert_eq!(edge.metric("imgcdn_edge_origin_reads_total"), 0.0);
}

/// Both runtime flavours (`work_stealing`): every tier answers, requests on
/// many connections at once get the right bytes, and the edge stops cleanly.
#[tokio::test]
async fn both_runtime_flavours_serve_every_tier() {
    for steal in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().join("store"));
        let small = png(32, 32, 11);
        let large = png(300, 300, 12);
        let (small_path, large_path) = (store.publish(&small, None), store.publish(&large, None));
        let mut opts = EdgeOpts::new(dir.path());
        opts.work_stealing = Some(steal);
        // The large image skips the memory tier: served from the disk tier.
        opts.memory_max_object_bytes = 64 * 1024;
        assert!(large.len() > 64 * 1024);
        let edge = EdgeProcess::start(dir.path(), &opts);
        let c = client();
        let r = c.get(edge.url(&small_path)).send().await.unwrap();
        assert_eq!(header(&r, "x-cache"), "MISS", "work_stealing = {steal}");
        assert_eq!(&r.bytes().await.unwrap()[..], &small[..]);
        let r = c.get(edge.url(&large_path)).send().await.unwrap();
        assert_eq!(header(&r, "x-cache"), "MISS", "work_stealing = {steal}");
        assert_eq!(&r.bytes().await.unwrap()[..], &large[..]);
        // The disk write finishes after the response.
        let mut tier = String::new();
        for _ in 0..100 {
            tier = header(&c.get(edge.url(&large_path)).send().await.unwrap(), "x-cache");
            if tier == "HIT-DISK" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(tier, "HIT-DISK", "work_stealing = {steal}");
        let mut fetches = Vec::new();
        for i in 0..48 {
            let (path, want) = if i % 2 == 0 { (&small_path, small.clone()) } else { (&large_path, large.clone()) };
            // A client each: a connection each.
            let (c, url) = (client(), edge.url(path));
            fetches.push(tokio::spawn(async move {
                let r = c.get(url).send().await.unwrap();
                let tier = header(&r, "x-cache");
                assert_eq!(&r.bytes().await.unwrap()[..], &want[..]);
                tier
            }));
        }
        let mut tiers = Vec::new();
        for f in fetches {
            tiers.push(f.await.unwrap());
        }
        let want: Vec<&str> = (0..48).map(|i| if i % 2 == 0 { "HIT-MEMORY" } else { "HIT-DISK" }).collect();
        assert_eq!(tiers, want, "work_stealing = {steal}");
        assert!(edge.stop().success(), "work_stealing = {steal}");
    }
}

#[tokio::test]
async fn objects_too_large_for_memory_are_served_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path().join("store"));
    let image = png(100, 100, 2);
    let path = store.publish(&image, None);
    let mut opts = EdgeOpts::new(dir.path());
    opts.memory_max_object_bytes = 1000;
    let edge = EdgeProcess::start(dir.path(), &opts);
    let c = client();
    assert_eq!(header(&c.get(edge.url(&path)).send().await.unwrap(), "x-cache"), "MISS");
    // The disk write happens after the response; give it a moment.
    let mut tier = String::new();
    for _ in 0..100 {
        let r = c.get(edge.url(&path)).send().await.unwrap();
        tier = header(&r, "x-cache");
        if tier == "HIT-DISK" {
            assert_eq!(&r.bytes().await.unwrap()[..], &image[..]);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(tier, "HIT-DISK");
}

#[tokio::test]
async fn http_semantics_etag_range_head() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path().join("store"));
    let image = png(32, 32, 3);
    let path = store.publish(&image, None);
    let edge = EdgeProcess::start(dir.path(), &EdgeOpts::new(dir.path()));
    let c = client();
    let url = edge.url(&path);

    let r = c.get(&url).send().await.unwrap();
    let etag = header(&r, "etag");
    assert!(etag.starts_with('"') && etag.len() == 66, "{etag}");
    assert_eq!(header(&r, "accept-ranges"), "bytes");
    assert_eq!(header(&r, "cache-control"), "public, max-age=31536000, immutable");
    assert_eq!(header(&r, "content-length"), image.len().to_string());

    let r = c.get(&url).header("if-none-match", &etag).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(header(&r, "etag"), etag);
    assert!(r.bytes().await.unwrap().is_empty());
    let r = c.get(&url).header("if-none-match", "\"other\"").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    let r = c.get(&url).header("range", "bytes=8-15").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header(&r, "content-range"), format!("bytes 8-15/{}", image.len()));
    assert_eq!(&r.bytes().await.unwrap()[..], &image[8..16]);
    let r = c.get(&url).header("range", "bytes=-4").send().await.unwrap();
    assert_eq!(&r.bytes().await.unwrap()[..], &image[image.len() - 4..]);
    let r = c.get(&url).header("range", format!("bytes={}-", image.len())).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(header(&r, "content-range"), format!("bytes */{}", image.len()));

    let r = c.head(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "content-length"), image.len().to_string());
    assert!(r.bytes().await.unwrap().is_empty());

    // The same over h2c (prior knowledge), HEAD included.
    let h2 = reqwest::Client::builder().no_proxy().http2_prior_knowledge().build().unwrap();
    let r = h2.head(&url).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "content-length"), image.len().to_string());
    assert!(r.bytes().await.unwrap().is_empty());
    let r = h2.get(&url).send().await.unwrap();
    assert_eq!(&r.bytes().await.unwrap()[..], &image[..]);
    let r = h2.get(&url).header("range", "bytes=0-0").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(&r.bytes().await.unwrap()[..], &image[..1]);
}

#[tokio::test]
async fn bad_requests_are_refused_without_touching_storage() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path().join("store"));
    let path = store.publish(&png(8, 8, 4), None);
    let edge = EdgeProcess::start(dir.path(), &EdgeOpts::new(dir.path()));
    let c = client();
    let id = path.id;
    let shard = id.shard().to_string();
    let wrong = if shard == "000" { "001" } else { "000" };
    for (p, want) in [
        (format!("/{wrong}/{id}.png"), 404),
        (format!("/{shard}/{}.png", &id.to_string()[..7]), 404),
        (format!("/{shard}/{id}.exe"), 404),
        (format!("/{shard}/{id}"), 404),
        ("/".to_string(), 404),
        (format!("/{shard}/{id}.png%00"), 400),
        (format!("/{shard}/../{id}.png"), 400),
        ("/%2e%2e/%2e%2e/etc/passwd".to_string(), 400),
    ] {
        let status = raw_status(&edge.base, "GET", &p);
        assert_eq!(status, want, "{p}");
    }
    let r = c.post(edge.url(&path)).body("x").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(header(&r, "allow"), "GET, HEAD");
    assert_eq!(raw_status(&edge.base, "DELETE", &path.to_string()), 405);
    assert_eq!(edge.metric("imgcdn_edge_origin_reads_total"), 0.0);

    // Another output format's extension converts (transforms); one the
    // edge never makes (bmp, ico, svg) is not ours.
    let r = c.get(format!("{}{}", edge.base, ImagePath::new(id, Format::Jpeg))).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "content-type"), "image/jpeg");
    for f in [Format::Bmp, Format::Ico, Format::Svg] {
        let r = c.get(format!("{}{}", edge.base, ImagePath::new(id, f))).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{f:?}");
    }
}

/// Send a request line as-is (no client-side normalisation of the path).
#[tokio::test]
async fn a_team_image_is_served_under_its_storage_name_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path().join("store"));
    let mine: StorageName = "k3v9x0q2m7za".parse().unwrap();
    let (new, old) = (ImageId::generate(), ImageId::generate());
    let image = png(8, 8, 6);
    let mut manifest = imgcdn_shared::testing::png_manifest(&image, None);
    manifest.storage = Some(mine);
    store.publish_manifest(new, &image, manifest.clone());
    // Published before storage names, then renamed: its shard URL was handed out.
    manifest.shard_url = true;
    store.publish_manifest(old, &image, manifest);
    let edge = EdgeProcess::start(dir.path(), &EdgeOpts::new(dir.path()));
    let c = client();
    let at = |s: &str, id: ImageId| format!("{}/{s}/{id}.png", edge.base);
    for (url, want) in [
        (at("k3v9x0q2m7za", new), StatusCode::OK),
        // Another team's (well-formed) storage name: as if the id did not exist.
        (at("zzzzzzzzzzzz", new), StatusCode::NOT_FOUND),
        (at(new.shard().as_str(), new), StatusCode::NOT_FOUND),
        (at("k3v9x0q2m7za", old), StatusCode::OK),
        (at(old.shard().as_str(), old), StatusCode::OK),
        (at("zzzzzzzzzzzz", old), StatusCode::NOT_FOUND),
    ] {
        // Twice: from the origin, then from the memory tier.
        for _ in 0..2 {
            let r = c.get(&url).send().await.unwrap();
            assert_eq!(r.status(), want, "{url}");
            let body = r.bytes().await.unwrap();
            if want == StatusCode::OK {
                assert_eq!(&body[..], &image[..]);
            } else {
                assert!(!body.windows(4).any(|w| w == b"\x89PNG"), "no byte of the image for {url}");
            }
        }
        let r = c.head(&url).send().await.unwrap();
        assert_eq!(r.status(), want, "HEAD {url}");
    }
}

fn raw_status(base: &str, method: &str, path: &str) -> u16 {
    use std::io::{Read, Write};
    let host = base.strip_prefix("http://").unwrap();
    let mut s = std::net::TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0)
}

#[tokio::test]
async fn query_strings_do_not_create_cache_entries() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path().join("store"));
    let path = store.publish(&png(8, 8, 5), None);
    let edge = EdgeProcess::start(dir.path(), &EdgeOpts::new(dir.path()));
    let c = client();
    let r = c.get(format!("{}?utm_source=x", edge.url(&path))).send().await.unwrap();
    assert_eq!(header(&r, "x-cache"), "MISS");
    for q in ["?cachebust=1", "?cachebust=2", "?w=abc&zzz=1", ""] {
        let r = c.get(format!("{}{q}", edge.url(&path))).send().await.unwrap();
        assert_eq!(header(&r, "x-cache"), "HIT-MEMORY", "{q}");
    }
    assert_eq!(edge.metric("imgcdn_edge_origin_reads_total"), 1.0);
    assert_eq!(edge.metric("imgcdn_edge_cache_entries{tier=\"memory\"}"), 1.0);
}

#[tokio::test]
async fn concurrent_misses_cause_one_origin_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path().join("store"));
    // Large enough that verifying it takes a while, so the requests overlap.
    let image = png(800, 800, 6);
    let path = store.publish(&image, None);
    let edge = EdgeProcess::start(dir.path(), &EdgeOpts::new(dir.path()));
    let c = client();
    let url = edge.url(&path);
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(40));
    let tasks: Vec<_> = (0..40)
        .map(|_| {
            let (c, url, barrier) = (c.clone(), url.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                let r = c.get(&url).send().await.unwrap();
                let tier = header(&r, "x-cache");
                (r.status(), tier, r.bytes().await.unwrap().len())
            })
        })
        .collect();
    let mut misses = 0;
    for t in tasks {
        let (status, tier, len) = t.await.unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(len, image.len());
        misses += usize::from(tier == "MISS");
    }
    assert!(misses > 1, "requests did not overlap ({misses} misses); the test proves nothing");
    assert_eq!(edge.metric("imgcdn_edge_origin_reads_total"), 1.0);
}

#[tokio::test]
async fn unknown_ids_are_404() {
    let dir = tempfile::tempdir().unwrap();
    Store::new(dir.path().join("store"));
    let edge = EdgeProcess::start(dir.path(), &EdgeOpts::new(dir.path()));
    let id = ImageId::generate();
    let r = client().get(format!("{}{}", edge.base, ImagePath::new(id, Format::Png))).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(header(&r, "cache-control"), "no-store");
}

#[tokio::test]
async fn an_object_that_does_not_match_its_manifest_is_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path().join("store"));
    let path = store.publish(&png(16, 16, 7), None);
    // Damage the stored bytes, keeping the length.
    let p = store.object_path(&path.id);
    let mut bytes = std::fs::read(&p).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0xff;
    std::fs::write(&p, &bytes).unwrap();
    let edge = EdgeProcess::start(dir.path(), &EdgeOpts::new(dir.path()));
    let r = client().get(edge.url(&path)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(r.text().await.unwrap(), "bad gateway\n");
    assert_eq!(edge.metric("imgcdn_edge_cache_entries{tier=\"memory\"}"), 0.0);
    assert_eq!(edge.metric("imgcdn_edge_origin_errors_total{kind=\"mismatch\"}"), 1.0);
}

#[tokio::test]
async fn a_manifest_can_serve_bytes_stored_under_another_object_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path().join("store"));
    let image = png(12, 12, 8);
    let original = store.publish(&image, None);
    // An alias: its own id and manifest, the original's bytes.
    let alias = ImageId::generate();
    let mut manifest = imgcdn_shared::Manifest::from_json(
        &std::fs::read(store.root.join(imgcdn_shared::storage::manifest_key(&original.id))).unwrap(),
    )
    .unwrap();
    manifest.object = Some(imgcdn_shared::storage::object_key(&original.id));
    std::fs::write(store.root.join(imgcdn_shared::storage::manifest_key(&alias)), manifest.to_json()).unwrap();
    let edge = EdgeProcess::start(dir.path(), &EdgeOpts::new(dir.path()));
    let r = client().get(format!("{}{}", edge.base, ImagePath::new(alias, Format::Png))).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(&r.bytes().await.unwrap()[..], &image[..]);
    // Pointing at bytes that are not there is not found.
    let broken = ImageId::generate();
    manifest.object = Some("objects/nothinghere".into());
    std::fs::write(store.root.join(imgcdn_shared::storage::manifest_key(&broken)), manifest.to_json()).unwrap();
    let r = client().get(format!("{}{}", edge.base, ImagePath::new(broken, Format::Png))).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

/// HTTP/1.1 pipelining (RFC 9112 §9.3.2): requests sent back to back in one
/// write are all answered, in order, with the right bodies.
#[test]
fn pipelined_requests_are_all_answered_in_order() {
    use std::io::{BufReader, Write};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path().join("store"));
    let images: Vec<(ImagePath, Vec<u8>)> = (0..10u8)
        .map(|i| {
            let bytes = png(8 + u32::from(i), 8, 40 + i);
            (store.publish(&bytes, None), bytes)
        })
        .collect();
    let edge = EdgeProcess::start(dir.path(), &EdgeOpts::new(dir.path()));
    let host = edge.base.strip_prefix("http://").unwrap().to_string();
    // Twice each: the first round are misses, the second memory hits.
    for n in [2usize, 10, 10] {
        let mut s = std::net::TcpStream::connect(&host).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut batch = String::new();
        for (path, _) in &images[..n] {
            batch.push_str(&format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n"));
        }
        s.write_all(batch.as_bytes()).unwrap();
        let mut r = BufReader::new(s);
        for (i, (path, bytes)) in images[..n].iter().enumerate() {
            let resp = read_raw_response(&mut r, false)
                .unwrap_or_else(|| panic!("response {i} of {n} pipelined requests never came ({path})"));
            assert_eq!(resp.status, 200, "request {i}");
            assert_eq!(&resp.body, bytes, "request {i}: wrong body");
        }
    }
}

/// HTTP/1 without TLS: a body whose disk-tier file is open goes from the
/// file to the socket (sendfile). Bytes, headers and ranges are those of
/// any other answer; HEAD, 304 and HTTP/2 answers are not sent from files;
/// pipelined answers keep their order; a new process sends from a file only
/// after reading it whole once (every chunk checked).
#[tokio::test]
async fn large_bodies_are_sent_from_open_disk_tier_files() {
    use std::io::{BufReader, Write};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path().join("store"));
    let image = png(300, 300, 11);
    assert!(image.len() > 200_000, "a body above disk.sendfile_min_bytes");
    let small = png(16, 16, 12);
    let path = store.publish(&image, None);
    let small_path = store.publish(&small, None);
    let opts = EdgeOpts::new(dir.path());
    let edge = EdgeProcess::start(dir.path(), &opts);
    let c = client();
    let url = edge.url(&path);
    let from_files = |edge: &EdgeProcess| edge.metric("imgcdn_edge_file_responses_total");

    let r = c.get(&url).send().await.unwrap();
    assert_eq!(header(&r, "x-cache"), "MISS");
    assert_eq!(&r.bytes().await.unwrap()[..], &image[..]);
    let _ = c.get(edge.url(&small_path)).send().await.unwrap().bytes().await.unwrap();
    // The disk write follows the response; then its file is open (the
    // small image's is not: it is copied from memory anyway).
    eventually(Duration::from_secs(5), "the entry's file is kept open", || async {
        edge.metric("imgcdn_edge_disk_open_files") == 1.0
    })
    .await;
    assert_eq!(from_files(&edge), 0.0);

    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "x-cache"), "HIT-MEMORY");
    assert_eq!(header(&r, "content-length"), image.len().to_string());
    assert_eq!(header(&r, "content-type"), "image/png");
    let etag = header(&r, "etag");
    assert_eq!(&r.bytes().await.unwrap()[..], &image[..]);
    assert_eq!(from_files(&edge), 1.0);

    let r = c.get(&url).header("range", "bytes=100000-100099").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header(&r, "content-range"), format!("bytes 100000-100099/{}", image.len()));
    assert_eq!(&r.bytes().await.unwrap()[..], &image[100_000..100_100]);
    let r = c.get(&url).header("range", "bytes=-7").send().await.unwrap();
    assert_eq!(&r.bytes().await.unwrap()[..], &image[image.len() - 7..]);
    assert_eq!(from_files(&edge), 3.0);

    // No body, or HTTP/2: not from files.
    let r = c.head(&url).send().await.unwrap();
    assert_eq!(header(&r, "content-length"), image.len().to_string());
    assert!(r.bytes().await.unwrap().is_empty());
    let r = c.get(&url).header("if-none-match", &etag).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    let h2 = reqwest::Client::builder().no_proxy().http2_prior_knowledge().build().unwrap();
    let r = h2.get(&url).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(&r.bytes().await.unwrap()[..], &image[..]);
    let r = c.get(edge.url(&small_path)).send().await.unwrap();
    assert_eq!(&r.bytes().await.unwrap()[..], &small[..]);
    assert_eq!(from_files(&edge), 3.0);

    // Pipelined, files and memory mixed: every answer whole and in order.
    let host = edge.base.strip_prefix("http://").unwrap().to_string();
    let s = tokio::task::spawn_blocking({
        let host = host.clone();
        move || {
            let mut s = std::net::TcpStream::connect(&host).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut batch = String::new();
            for p in [&path, &small_path, &path, &path, &small_path] {
                batch.push_str(&format!("GET {p} HTTP/1.1\r\nHost: {host}\r\n\r\n"));
            }
            s.write_all(batch.as_bytes()).unwrap();
            let mut r = BufReader::new(s);
            (0..5).map(|_| read_raw_response(&mut r, false).expect("an answer").body).collect::<Vec<_>>()
        }
    });
    let bodies = s.await.unwrap();
    for (i, want) in [&image, &small, &image, &image, &small].into_iter().enumerate() {
        assert!(&bodies[i] == want, "pipelined answer {i}: wrong body");
    }
    assert_eq!(from_files(&edge), 6.0);

    // A slow reader of a large body: the socket fills up again and again,
    // and the body still arrives whole.
    let big = png(1000, 1000, 13);
    let big_path = store.publish(&big, None);
    assert_eq!(&c.get(edge.url(&big_path)).send().await.unwrap().bytes().await.unwrap()[..], &big[..]);
    eventually(Duration::from_secs(5), "the large entry's file is kept open", || async {
        edge.metric("imgcdn_edge_disk_open_files") == 2.0
    })
    .await;
    let got = tokio::task::spawn_blocking({
        let host = host.clone();
        move || {
            use std::io::Read;
            let mut s = std::net::TcpStream::connect(&host).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all(format!("GET {big_path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes())
                .unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 8192];
            loop {
                let n = s.read(&mut buf).unwrap();
                if n == 0 {
                    return got;
                }
                got.extend_from_slice(&buf[..n]);
                if got.len() < 1_500_000 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    })
    .await
    .unwrap();
    let head_end = got.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head") + 4;
    assert!(got.starts_with(b"HTTP/1.1 200"));
    assert!(got[head_end..] == big[..], "the slow reader's body differs");
    assert_eq!(from_files(&edge), 7.0);
    assert!(edge.stop().success());

    // A new process: the entry is read whole and checked once (a disk hit,
    // copied), and only then sent from its file.
    let edge = EdgeProcess::start(dir.path(), &opts);
    let url = edge.url(&path);
    assert_eq!(edge.metric("imgcdn_edge_disk_open_files"), 0.0);
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(header(&r, "x-cache"), "HIT-DISK");
    assert_eq!(&r.bytes().await.unwrap()[..], &image[..]);
    assert_eq!(from_files(&edge), 0.0);
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(&r.bytes().await.unwrap()[..], &image[..]);
    assert_eq!(from_files(&edge), 1.0);
    assert_eq!(edge.metric("imgcdn_edge_origin_reads_total"), 0.0);
}
