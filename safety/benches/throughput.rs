//! PDQ hashes per second and detector inferences per second, on one thread.
//!
//! `cargo bench -p imgcdn-safety` (add `taskset -c 0` to pin it to one core).
//! Prints figures, asserts nothing. Without `--bench` (as under `cargo test
//! --all-targets`) each measurement runs once, as a smoke test.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{generate, Kind};
use imgcdn_safety::{nudity, pdq};

/// Runs `f` repeatedly for about `budget` and prints the rate from the mean
/// time and from the fastest run (the better figure on a busy machine).
fn measure(name: &str, budget: Duration, mut f: impl FnMut()) {
    f(); // warm up (and, in smoke mode, the only run)
    if budget.is_zero() {
        println!("{name}: ok");
        return;
    }
    let start = Instant::now();
    let mut n = 0u32;
    let mut best = Duration::MAX;
    while start.elapsed() < budget {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed());
        n += 1;
    }
    let mean = (start.elapsed() / n).as_secs_f64();
    let best = best.as_secs_f64();
    println!(
        "{name}: {:.1}/s mean ({:.2} ms), {:.1}/s best ({:.2} ms), {n} runs",
        1.0 / mean,
        mean * 1e3,
        1.0 / best,
        best * 1e3
    );
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let budget = if bench { Duration::from_secs(3) } else { Duration::ZERO };

    for (w, h) in [(320, 240), (640, 480), (1024, 768), (4000, 3000)] {
        if !bench && w > 640 {
            continue;
        }
        let img = generate(Kind::Scene, 1, w, h);
        measure(&format!("pdq::hash_rgb8 {w}x{h}"), budget, || {
            std::hint::black_box(pdq::hash_rgb8(w, h, &img.pixels));
        });
    }

    let Some(path) = nudity::default_model_path().filter(|p| p.exists()) else {
        println!("detector: SKIPPED: no nudity model installed (scripts/fetch-models)");
        return;
    };
    let t = Instant::now();
    let detector = nudity::Detector::load(&path).unwrap();
    println!("Detector::load: {:.0} ms", t.elapsed().as_secs_f64() * 1e3);
    for (w, h) in [(320, 320), (640, 480), (4000, 3000)] {
        if !bench && w > 320 {
            continue;
        }
        let img = generate(Kind::Scene, 2, w, h);
        measure(&format!("Detector::detect_rgb8 {w}x{h}"), budget, || {
            std::hint::black_box(detector.detect_rgb8(w, h, &img.pixels).unwrap());
        });
    }
}
