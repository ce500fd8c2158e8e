//! Transforms by URL at a real edge process: the Image object's `sizes`
//! are what the edge returns, equivalent queries share one cache entry,
//! the variants-per-image bound and the overload 503 hold.

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::Value;

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers().get(name).map(|v| v.to_str().unwrap().to_string()).unwrap_or_default()
}

/// A JPEG of `w`×`h` stored pixels (made with the `vips` CLI, which
/// scripts/setup installs) carrying Exif orientation 6: shown `h`×`w`.
fn rotated_jpeg(dir: &std::path::Path, w: u32, h: u32) -> Vec<u8> {
    let path = dir.join(format!("rotated-{w}x{h}.jpg"));
    let out = std::process::Command::new("vips")
        .args(["black", &path.display().to_string(), &w.to_string(), &h.to_string(), "--bands", "3"])
        .output()
        .expect("the vips CLI (scripts/setup installs libvips-tools)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let plain = std::fs::read(&path).unwrap();
    // Exif, big-endian TIFF, IFD0 with one entry: Orientation (0x0112) = 6.
    let mut exif = b"Exif\0\0MM\0\x2a\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01\0\x06\0\0\0\0\0\0".to_vec();
    let mut segment = vec![0xff, 0xe1];
    segment.extend_from_slice(&((exif.len() + 2) as u16).to_be_bytes());
    segment.append(&mut exif);
    let mut out = plain[..2].to_vec();
    out.extend_from_slice(&segment);
    out.extend_from_slice(&plain[2..]);
    out
}

/// Width and height from a JPEG's first SOF marker.
fn jpeg_size(b: &[u8]) -> (u32, u32) {
    let mut pos = 2;
    while pos + 9 < b.len() {
        let (marker, len) = (b[pos + 1], usize::from(u16::from_be_bytes([b[pos + 2], b[pos + 3]])));
        if matches!(marker, 0xc0..=0xc3) {
            let h = u32::from(u16::from_be_bytes([b[pos + 5], b[pos + 6]]));
            let w = u32::from(u16::from_be_bytes([b[pos + 7], b[pos + 8]]));
            return (w, h);
        }
        pos += 2 + len;
    }
    panic!("no SOF in the JPEG");
}

/// Width and height from a PNG's IHDR.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert!(bytes.starts_with(b"\x89PNG"), "not a PNG");
    let be = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap());
    (be(16), be(20))
}

#[tokio::test]
async fn the_advertised_sizes_are_what_the_edge_returns() {
    let dir = tempfile::tempdir().unwrap();
    let edge = EdgeProcess::start(dir.path(), &EdgeOpts::new(dir.path()));
    let cp = ControlPlaneProcess::start(dir.path(), &CpOpts::new(&edge.base));
    let c = client();
    let r = c.post(format!("{}/v1/keys", cp.base)).json(&serde_json::json!({"email": "t@example.com"})).send().await;
    let key = r.unwrap().json::<Value>().await.unwrap()["key"].as_str().unwrap().to_string();
    let files = [png(800, 500, 3), png(500, 1300, 3), png(200, 120, 3), rotated_jpeg(dir.path(), 900, 600)];
    for file in files {
        let r = post_image(&c, &cp.base, Some(&key), &file).await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let img: Value = r.json().await.unwrap();
        if img["format"] == "jpg" {
            // Shown turned a quarter (Exif orientation 6): 600 wide, 900 high.
            assert_eq!((img["width"].as_u64(), img["height"].as_u64()), (Some(600), Some(900)));
        }
        for size in ["small", "medium", "large"] {
            let s = &img["sizes"][size];
            let url = s["url"].as_str().unwrap();
            let r = c.get(url).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK, "{url}");
            let body = r.bytes().await.unwrap();
            let got = if img["format"] == "jpg" { jpeg_size(&body) } else { png_size(&body) };
            let advertised = (s["width"].as_u64().unwrap() as u32, s["height"].as_u64().unwrap() as u32);
            assert_eq!(got, advertised, "{} {}x{} {size}: {url}", img["format"], img["width"], img["height"]);
        }
    }
}

#[tokio::test]
async fn equivalent_queries_share_one_cache_entry_and_junk_is_the_original() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path().join("store"));
    let image = png(300, 200, 5);
    let path = store.publish(&image, None).to_string();
    let edge = EdgeProcess::start(dir.path(), &EdgeOpts::new(dir.path()));
    let c = client();
    let get = |q: String| {
        let c = c.clone();
        async move { c.get(q).send().await.unwrap() }
    };
    let r = get(format!("{}{path}?w=100&format=webp&utm_source=mail", edge.base)).await;
    assert_eq!((r.status(), header(&r, "x-cache")), (StatusCode::OK, "MISS".to_string()));
    assert_eq!(header(&r, "content-type"), "image/webp");
    let first = r.bytes().await.unwrap();
    assert!(first.starts_with(b"RIFF") && &first[8..12] == b"WEBP");
    // Reordered, junk added, a repeated parameter, the format by extension:
    // the same entry.
    let webp_path = path.replace(".png", ".webp");
    for q in [
        format!("{path}?format=webp&w=100"),
        format!("{path}?w=100&w=300&format=webp&fit=nonsense"),
        format!("{webp_path}?w=100"),
        format!("{webp_path}?w=100&q=&brightness=1"),
    ] {
        let r = get(format!("{}{q}", edge.base)).await;
        assert_eq!((r.status(), header(&r, "x-cache")), (StatusCode::OK, "HIT-MEMORY".to_string()), "{q}");
        assert_eq!(r.bytes().await.unwrap(), first, "{q}");
    }
    assert_eq!(edge.metric("imgcdn_edge_transforms_total{outcome=\"made\"}"), 1.0);
    // Only junk: the original, from the original's cache entry.
    let r = get(format!("{}{path}?utm_source=x&w=abc", edge.base)).await;
    assert_eq!(r.bytes().await.unwrap().to_vec(), image);
    // An ETag of its own, and conditional requests work on variants.
    let r = get(format!("{}{path}?w=100&format=webp", edge.base)).await;
    let etag = header(&r, "etag");
    let r =
        c.get(format!("{}{path}?format=webp&w=100", edge.base)).header("if-none-match", &etag).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    // After a restart the variant comes from the disk tier, not made again.
    let variant = format!("{path}?w=100&format=webp");
    eventually(std::time::Duration::from_secs(10), "the variant on disk", || async {
        let id = path.rsplit('/').next().unwrap().trim_end_matches(".png");
        files_under(&dir.path().join("edge-cache")).iter().any(|p| p.to_string_lossy().contains(&format!("{id}-")))
    })
    .await;
    drop(edge);
    let edge = EdgeProcess::start(dir.path(), &EdgeOpts::new(dir.path()));
    let r = get(format!("{}{variant}", edge.base)).await;
    assert_eq!(header(&r, "x-cache"), "HIT-DISK");
    assert_eq!(r.bytes().await.unwrap(), first);
    assert_eq!(edge.metric("imgcdn_edge_transforms_total{outcome=\"made\"}"), 0.0);
    // SVG, BMP and ICO are served as stored whatever the query; a format
    // the edge does not make is not ours.
    let r = get(format!("{}{}", edge.base, path.replace(".png", ".svg"))).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn variants_per_image_are_bounded_and_a_full_pool_answers_503() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path().join("store"));
    let small = png(64, 64, 1);
    let small_path = store.publish(&small, None).to_string();
    let slow: Vec<String> = (0..6u8).map(|i| store.publish(&png(800, 800, 10 + i), None).to_string()).collect();
    let mut opts = EdgeOpts::new(dir.path());
    opts.transforms_toml = Some("workers = 1\nqueue = 0\nmax_variants_per_image = 2\n".into());
    let edge = EdgeProcess::start(dir.path(), &opts);
    let c = client();

    // Two variants are made; a third gets the original.
    for w in [10, 20] {
        let r = c.get(format!("{}{small_path}?w={w}", edge.base)).send().await.unwrap();
        assert_eq!(png_size(&r.bytes().await.unwrap()), (w, w));
    }
    let r = c.get(format!("{}{small_path}?w=30", edge.base)).send().await.unwrap();
    assert_eq!(r.bytes().await.unwrap().to_vec(), small, "past the bound: the original");
    assert_eq!(edge.metric("imgcdn_edge_transforms_total{outcome=\"limited\"}"), 1.0);
    // The ones made are still served.
    let r = c.get(format!("{}{small_path}?w=20", edge.base)).send().await.unwrap();
    assert_eq!(header(&r, "x-cache"), "HIT-MEMORY");

    // One worker, no queue: while it works on a slow transform (a wide
    // blur), other new variants are refused at once with Retry-After, not
    // queued.
    let requests: Vec<_> = slow
        .iter()
        .map(|path| {
            let (c, url) = (c.clone(), format!("{}{path}?blur=250", edge.base));
            tokio::spawn(async move {
                let r = c.get(url).send().await.unwrap();
                (r.status(), header(&r, "retry-after"))
            })
        })
        .collect();
    let mut answers = Vec::new();
    for r in requests {
        answers.push(r.await.unwrap());
    }
    assert!(answers.iter().all(|(s, _)| *s == StatusCode::OK || *s == StatusCode::SERVICE_UNAVAILABLE), "{answers:?}");
    assert!(answers.iter().any(|(s, _)| *s == StatusCode::OK), "{answers:?}");
    let busy: Vec<_> = answers.iter().filter(|(s, _)| *s == StatusCode::SERVICE_UNAVAILABLE).collect();
    assert!(!busy.is_empty(), "{answers:?}");
    assert!(busy.iter().all(|(_, retry)| !retry.is_empty()));
    assert_eq!(edge.metric("imgcdn_edge_transforms_total{outcome=\"busy\"}"), busy.len() as f64);
}

#[tokio::test]
async fn a_slow_transform_times_out_and_still_finishes_and_frees_its_worker() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path().join("store"));
    let path = store.publish(&png(900, 900, 4), None).to_string();
    let mut opts = EdgeOpts::new(dir.path());
    opts.transforms_toml = Some("workers = 1\nqueue = 0\ntimeout_ms = 50\n".into());
    let edge = EdgeProcess::start(dir.path(), &opts);
    let c = client();
    let slow = format!("{}{path}?blur=250", edge.base);
    let r = c.get(&slow).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(edge.metric("imgcdn_edge_transforms_total{outcome=\"timed_out\"}"), 1.0);
    // The transform ran on and was cached; its worker and place came back
    // (the client that asked is gone, nothing leaks).
    eventually(std::time::Duration::from_secs(30), "the slow variant cached", || async {
        let r = c.get(&slow).send().await.unwrap();
        r.status() == StatusCode::OK && header(&r, "x-cache") == "HIT-MEMORY"
    })
    .await;
    // A new variant is taken on (not refused as busy: the place is free);
    // it may itself take longer than this tight timeout.
    let r = c.get(format!("{}{path}?w=10", edge.base)).send().await.unwrap();
    assert!(r.status() == StatusCode::OK || r.status() == StatusCode::GATEWAY_TIMEOUT, "{}", r.status());
    assert_eq!(edge.metric("imgcdn_edge_transforms_total{outcome=\"busy\"}"), 0.0);
}
