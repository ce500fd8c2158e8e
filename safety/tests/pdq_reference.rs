//! PDQ against Meta's reference implementation, and robustness.

mod common;

use common::{generate, Kind, Rgb};
use imgcdn_safety::pdq::{hash_rgb8, Pdq, DEFAULT_MATCH_THRESHOLD};

/// (generator, seed, width, height) → (hash, quality) from Meta's reference.
///
/// How these were obtained: `dump_reference_inputs` below wrote each image as
/// a PNG; Meta's C++ reference (facebook/ThreatExchange, `pdq/cpp`, built with
/// g++ -O2 and libpng) hashed them with its `pdq-photo-hasher` tool, which
/// hashes images of up to 512×512 as they are. For the larger images, whose
/// pixels that tool first shrinks to 512×512, the hashes come from a small
/// driver that called the reference's own `fillFloatLumaFromRGB` and
/// `pdqHash256FromFloatLuma` on the full image. The reference's code is not
/// part of this repository. Every hash and quality below matched ours bit for
/// bit when recorded.
const REFERENCE: &[(Kind, u64, u32, u32, &str, u32)] = &[
    (Kind::Gradient, 1, 64, 64, "26eddcdda3320e6231cbff1cc0774fc46c09247b37e6b702b209823c11f511ef", 0),
    (Kind::Gradient, 2, 300, 200, "ffe60780dffc00bdf570ff9f0900bfff0000ffff00007fff0000d007fffe0000", 0),
    (Kind::Gradient, 3, 512, 512, "f489e199e53935393c3b3c2b352b810b050b020b044b6a9bfcd7fed676d70ad6", 0),
    (Kind::Gradient, 4, 17, 9, "7edd20d4c843de2b6e23407b6c7fdfa09380bb8495bc21d437a8df288d22e74c", 0),
    (Kind::Noise, 5, 128, 96, "f67d9dab343e1841b6100a7731ceba316aebbc93f2a3ea69677e28413214f148", 100),
    (Kind::Noise, 6, 511, 257, "2209b5a2973e66b99bc8a70f52e8b29fe41dc9f3e1435ba3b100bee7aac900b6", 100),
    (Kind::Noise, 7, 5, 5, "3c0f69dac3709625e0f8cb7264d9348d9f2669da3c8f69dac370962560d8cb72", 100),
    (Kind::Shapes, 8, 320, 240, "5ab6a85540ab25c95555aaaeaaf555c0abddf40b502a0bf52a006aabf54b1ff5", 99),
    (Kind::Shapes, 9, 127, 383, "e3e0d18f1c3ce2e3e3c31c381c1ce3c7e3333c38c3c6c5c73c711a30cccf9b46", 64),
    (Kind::Shapes, 10, 500, 500, "f070afe3e070f070e3f1407051708f830aaa1ddf9e8fbe8e9c8f9c0f9c0e1c8f", 71),
    (Kind::Scene, 11, 480, 360, "bb43c6d715ee9b236ad5142b9b6ec3b436cbbb09c0b664d9c70a4d34c7811c4c", 100),
    (Kind::Scene, 12, 512, 384, "de533151f3e6deb65661a197f7e41e281213a185ec2cd95b3193b63c56494741", 100),
    (Kind::Scene, 13, 200, 300, "f82787c1fe1b50e13fc8eef48d32ff77a7fef01306c8f0d919580619b0910151", 100),
    (Kind::Scene, 14, 97, 61, "6252a8bf9ce3899dc305ac6805fe387aa3258b7c11e374bc635a0e3e9f8710f6", 100),
    (Kind::Scene, 15, 64, 64, "c4fce6a831d025e027b5713ffa5b9f10689035cbcb67fc42ad2ba4228cf3c29c", 100),
    (Kind::Shapes, 16, 65, 63, "c6337d23bdccb3ceef21047b9658fb05219692dc5e2100b711defb0900d6e5a7", 83),
    (Kind::Scene, 20, 1024, 768, "57ee44a6f19909e5ccc58bc5f1fa44a74694d9d276732b90fce5f801a0c38f28", 99),
    (Kind::Shapes, 21, 800, 600, "39cfc710c71015dcc73d1e2038eaeabbe2e339c7c71f1f1c1d50c47801fcfb80", 43),
    (Kind::Noise, 22, 640, 480, "161c3065a2bf71b47557b59b44f962455086940dcd75fe5abeb887b5326422cb", 100),
    (Kind::Gradient, 23, 1500, 1000, "0aa2a92afffe05507554d251aaaaaaaa57aad5555554d555aaaad6aa24aa5755", 0),
];

#[test]
fn matches_reference_hashes() {
    assert!(!REFERENCE.is_empty());
    let mut failures = Vec::new();
    for &(kind, seed, w, h, want, want_quality) in REFERENCE {
        let img = generate(kind, seed, w, h);
        let (hash, quality) = hash_rgb8(w, h, &img.pixels);
        let want = Pdq::from_hex(want).unwrap();
        if hash != want || quality != want_quality {
            failures.push(format!(
                "{kind:?} seed {seed} {w}x{h}: got {hash} q{quality}, reference {want} q{want_quality} ({} bits off)",
                hash.distance(&want)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Writes the test images as PNG for the reference tools and prints our
/// hashes (`hash,quality,file` lines, the reference tools' format):
/// `IMGCDN_PDQ_DUMP_DIR=/tmp/pdq cargo test -p imgcdn-safety --test
/// pdq_reference -- --ignored dump`.
#[test]
#[ignore]
fn dump_reference_inputs() {
    let dir = std::path::PathBuf::from(std::env::var("IMGCDN_PDQ_DUMP_DIR").expect("set IMGCDN_PDQ_DUMP_DIR"));
    std::fs::create_dir_all(&dir).unwrap();
    // IMGCDN_PDQ_SWEEP=N adds N images of random kinds and sizes.
    let sweep: u64 = std::env::var("IMGCDN_PDQ_SWEEP").map_or(0, |n| n.parse().unwrap());
    let mut rng = common::Rng::new(7);
    let kinds = [Kind::Gradient, Kind::Noise, Kind::Shapes, Kind::Scene];
    let random = (0..sweep).map(|i| {
        let kind = kinds[rng.below(4) as usize];
        (kind, 1000 + i, 5 + rng.below(700) as u32, 5 + rng.below(700) as u32)
    });
    for (kind, seed, w, h) in DUMP.iter().copied().chain(random) {
        let img = generate(kind, seed, w, h);
        let name = format!("{kind:?}-{seed}-{w}x{h}.png");
        img.to_image().save(dir.join(&name)).unwrap();
        let (hash, quality) = hash_rgb8(w, h, &img.pixels);
        println!("{hash},{quality},{name}");
    }
}

const DUMP: &[(Kind, u64, u32, u32)] = &[
    (Kind::Gradient, 1, 64, 64),
    (Kind::Gradient, 2, 300, 200),
    (Kind::Gradient, 3, 512, 512),
    (Kind::Gradient, 4, 17, 9),
    (Kind::Noise, 5, 128, 96),
    (Kind::Noise, 6, 511, 257),
    (Kind::Noise, 7, 5, 5),
    (Kind::Shapes, 8, 320, 240),
    (Kind::Shapes, 9, 127, 383),
    (Kind::Shapes, 10, 500, 500),
    (Kind::Scene, 11, 480, 360),
    (Kind::Scene, 12, 512, 384),
    (Kind::Scene, 13, 200, 300),
    (Kind::Scene, 14, 97, 61),
    (Kind::Scene, 15, 64, 64),
    (Kind::Shapes, 16, 65, 63),
    (Kind::Scene, 20, 1024, 768),
    (Kind::Shapes, 21, 800, 600),
    (Kind::Noise, 22, 640, 480),
    (Kind::Gradient, 23, 1500, 1000),
];

/// A photo-like image and its edits.
fn photo() -> Rgb {
    generate(Kind::Scene, 42, 640, 480)
}

fn hash(img: &Rgb) -> Pdq {
    hash_rgb8(img.width, img.height, &img.pixels).0
}

#[test]
fn robust_to_reencoding_resizing_and_cropping() {
    use image::codecs::jpeg::JpegEncoder;
    use image::imageops::{self, FilterType};

    let original = photo();
    let (h0, quality) = hash_rgb8(original.width, original.height, &original.pixels);
    assert!(quality >= 50, "the test photo should be a good-quality hash input, got {quality}");
    let src = original.to_image();

    let mut jpeg = Vec::new();
    JpegEncoder::new_with_quality(&mut jpeg, 60).encode_image(&src).unwrap();
    let reencoded = Rgb::from_image(&image::load_from_memory(&jpeg).unwrap().to_rgb8());

    let (w80, h80) = (src.width() * 4 / 5, src.height() * 4 / 5);
    let resized = Rgb::from_image(&imageops::resize(&src, w80, h80, FilterType::Triangle));
    let resized_jpeg = {
        let mut bytes = Vec::new();
        JpegEncoder::new_with_quality(&mut bytes, 60)
            .encode_image(&imageops::resize(&src, w80, h80, FilterType::Lanczos3))
            .unwrap();
        Rgb::from_image(&image::load_from_memory(&bytes).unwrap().to_rgb8())
    };

    let crop_left = |percent: u32| {
        let cut = src.width() * percent / 100;
        Rgb::from_image(&imageops::crop_imm(&src, cut, 0, src.width() - cut, src.height()).to_image())
    };

    let mut within = Vec::new();
    for (name, img) in [
        ("jpeg q60", reencoded),
        ("resize 80%", resized),
        ("resize 80% lanczos + jpeg q60", resized_jpeg),
        ("crop 2% off the left", crop_left(2)),
    ] {
        let d = hash(&img).distance(&h0);
        println!("PDQ distance, {name}: {d}");
        within.push((name, d));
    }
    // PDQ hashes the whole frame's DCT, so cropping shifts every frequency's
    // phase: beyond 2-3% of one side it is no longer a match. Meta's own
    // test photo (ThreatExchange pdq/data/bridge-mods/aaa-orig.jpg, hashed
    // with the reference) moves 10/22/32/62/114 bits for 1/2/3/5/10% off the
    // left; this image moves alike. Reported, not asserted.
    for percent in [5, 10] {
        let d = hash(&crop_left(percent)).distance(&h0);
        println!("PDQ distance, crop {percent}% off the left (beyond PDQ's crop tolerance): {d}");
    }
    for (name, d) in within {
        assert!(d <= DEFAULT_MATCH_THRESHOLD, "{name}: distance {d} > {DEFAULT_MATCH_THRESHOLD}");
    }
}

#[test]
fn unrelated_images_are_far_apart() {
    let h0 = hash(&photo());
    let others = [
        generate(Kind::Scene, 43, 640, 480),
        generate(Kind::Scene, 44, 640, 480),
        generate(Kind::Scene, 45, 800, 600),
        generate(Kind::Shapes, 46, 640, 480),
        generate(Kind::Gradient, 47, 640, 480),
        generate(Kind::Noise, 48, 320, 240),
    ];
    for (i, img) in others.iter().enumerate() {
        let d = hash(img).distance(&h0);
        println!("PDQ distance, unrelated image {i}: {d}");
        assert!(d > 80, "unrelated image {i}: distance {d} <= 80");
    }
}
