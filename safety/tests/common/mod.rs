//! Deterministic test images: the same (kind, seed, size) gives the same
//! pixels on every platform. Only integer arithmetic, `+ - * /` and `sqrt` on
//! floats are used (all exactly specified by IEEE 754), no `sin`/`exp`, whose
//! last bit depends on the maths library.
#![allow(dead_code)] // each test binary uses a different part
// Colour maths indexes several [f32; 3] in step; indices read best there.
#![allow(clippy::needless_range_loop)]

use std::path::{Path, PathBuf};

/// An RGB8 image, tightly packed.
#[derive(Clone)]
pub struct Rgb {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<u8>,
}

impl Rgb {
    pub fn new(width: u32, height: u32) -> Rgb {
        Rgb { width, height, pixels: vec![0; width as usize * height as usize * 3] }
    }

    fn put(&mut self, x: usize, y: usize, c: [f32; 3]) {
        let i = (y * self.width as usize + x) * 3;
        for k in 0..3 {
            self.pixels[i + k] = c[k].round().clamp(0.0, 255.0) as u8;
        }
    }

    pub fn to_image(&self) -> image::RgbImage {
        image::RgbImage::from_raw(self.width, self.height, self.pixels.clone()).unwrap()
    }

    pub fn from_image(img: &image::RgbImage) -> Rgb {
        Rgb { width: img.width(), height: img.height(), pixels: img.as_raw().clone() }
    }

    pub fn load_png(path: &Path) -> Rgb {
        let img = image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Rgb::from_image(&img.to_rgb8())
    }
}

/// SplitMix64: tiny, well-mixed, and fully specified.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5afe_c0de_1234_5678)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in 0..n.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    /// Uniform in [0, 1) with 24 bits.
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
    pub fn color(&mut self) -> [f32; 3] {
        [self.below(256) as f32, self.below(256) as f32, self.below(256) as f32]
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Linear gradient between two colours in a random direction, with a
    /// radial gradient on top.
    Gradient,
    /// Independent uniform noise per pixel and channel.
    Noise,
    /// Rectangles and discs of random colours on a random background.
    Shapes,
    /// Photo-like: sky, hills, soft blobs, multi-octave smooth noise, grain.
    Scene,
}

pub fn generate(kind: Kind, seed: u64, width: u32, height: u32) -> Rgb {
    let mut rng = Rng::new(seed);
    let mut img = Rgb::new(width, height);
    let (w, h) = (width as usize, height as usize);
    match kind {
        Kind::Gradient => {
            let (a, b) = (rng.color(), rng.color());
            let dx = rng.below(21) as f32 - 10.0;
            let dy = rng.below(21) as f32 - 10.0 + 0.5;
            let (cx, cy) = (rng.unit() * w as f32, rng.unit() * h as f32);
            let tint = rng.color();
            let len = (dx * dx + dy * dy).sqrt();
            let diag = ((w * w + h * h) as f32).sqrt();
            for y in 0..h {
                for x in 0..w {
                    let t = ((x as f32 * dx + y as f32 * dy) / len / diag + 1.0) / 2.0;
                    let (ex, ey) = (x as f32 - cx, y as f32 - cy);
                    let r = ((ex * ex + ey * ey).sqrt() / diag).min(1.0);
                    let mut c = [0f32; 3];
                    for k in 0..3 {
                        c[k] = (a[k] * (1.0 - t) + b[k] * t) * (0.6 + 0.4 * r) + tint[k] * 0.4 * (1.0 - r);
                    }
                    img.put(x, y, c);
                }
            }
        }
        Kind::Noise => {
            for p in img.pixels.iter_mut() {
                *p = rng.below(256) as u8;
            }
        }
        Kind::Shapes => {
            let bg = rng.color();
            for y in 0..h {
                for x in 0..w {
                    img.put(x, y, bg);
                }
            }
            let n = 3 + rng.below(10);
            for _ in 0..n {
                let c = rng.color();
                let (x0, y0) = (rng.below(w as u64) as usize, rng.below(h as u64) as usize);
                let (sw, sh) = (1 + rng.below(w as u64 / 2) as usize, 1 + rng.below(h as u64 / 2) as usize);
                let disc = rng.below(2) == 0;
                let r2 = (sw * sw) as i64;
                for y in y0.saturating_sub(sh)..(y0 + sh).min(h) {
                    for x in x0.saturating_sub(sw)..(x0 + sw).min(w) {
                        let (ex, ey) = (x as i64 - x0 as i64, y as i64 - y0 as i64);
                        if !disc || ex * ex + ey * ey <= r2 {
                            img.put(x, y, c);
                        }
                    }
                }
            }
        }
        Kind::Scene => scene(&mut rng, &mut img),
    }
    img
}

/// A smooth random field: bilinear interpolation of a random grid.
struct ValueNoise {
    grid: Vec<f32>,
    gw: usize,
    cell: f32,
}

impl ValueNoise {
    fn new(rng: &mut Rng, w: usize, h: usize, cell: f32) -> ValueNoise {
        let gw = (w as f32 / cell) as usize + 2;
        let gh = (h as f32 / cell) as usize + 2;
        let grid = (0..gw * gh).map(|_| rng.unit() * 2.0 - 1.0).collect();
        ValueNoise { grid, gw, cell }
    }
    fn at(&self, x: f32, y: f32) -> f32 {
        let (fx, fy) = (x / self.cell, y / self.cell);
        let (ix, iy) = (fx as usize, fy as usize);
        let (tx, ty) = (fx - ix as f32, fy - iy as f32);
        let (tx, ty) = (tx * tx * (3.0 - 2.0 * tx), ty * ty * (3.0 - 2.0 * ty));
        let g = |i: usize, j: usize| self.grid[j * self.gw + i];
        let top = g(ix, iy) * (1.0 - tx) + g(ix + 1, iy) * tx;
        let bottom = g(ix, iy + 1) * (1.0 - tx) + g(ix + 1, iy + 1) * tx;
        top * (1.0 - ty) + bottom * ty
    }
}

fn scene(rng: &mut Rng, img: &mut Rgb) {
    let (w, h) = (img.width as usize, img.height as usize);
    let (wf, hf) = (w as f32, h as f32);
    let (sky_top, sky_low) = (rng.color(), rng.color());
    let (ground_near, ground_far) = (rng.color(), rng.color());
    let horizon = hf * (0.25 + 0.5 * rng.unit());
    // Hills: a sum of triangle waves.
    let waves: Vec<(f32, f32, f32)> =
        (0..3).map(|_| (wf * (0.1 + 0.6 * rng.unit()), hf * 0.12 * rng.unit(), rng.unit())).collect();
    let hill = |x: f32| -> f32 {
        waves
            .iter()
            .map(|&(period, amp, phase)| {
                let t = x / period + phase;
                let f = t - t.floor();
                amp * (2.0 * (2.0 * f - 1.0).abs() - 1.0)
            })
            .sum()
    };
    let blobs: Vec<([f32; 3], f32, f32, f32, f32)> = (0..2 + rng.below(5))
        .map(|_| {
            let r = (0.04 + 0.18 * rng.unit()) * wf.min(hf);
            (rng.color(), rng.unit() * wf, rng.unit() * hf, r, 0.5 + rng.unit())
        })
        .collect();
    let coarse = ValueNoise::new(rng, w, h, wf.max(hf) / 4.0);
    let medium = ValueNoise::new(rng, w, h, wf.max(hf) / 16.0);
    let fine = ValueNoise::new(rng, w, h, 3.0);
    for y in 0..h {
        for x in 0..w {
            let (xf, yf) = (x as f32, y as f32);
            let edge = horizon + hill(xf);
            let mut c = [0f32; 3];
            if yf < edge {
                let t = yf / edge.max(1.0);
                for k in 0..3 {
                    c[k] = sky_top[k] * (1.0 - t) + sky_low[k] * t;
                }
            } else {
                let t = (yf - edge) / (hf - edge).max(1.0);
                for k in 0..3 {
                    c[k] = ground_far[k] * (1.0 - t) + ground_near[k] * t;
                }
            }
            for &(col, bx, by, r, aspect) in &blobs {
                let (ex, ey) = ((xf - bx) / (r * aspect), (yf - by) / r);
                let d2 = ex * ex + ey * ey;
                if d2 < 1.0 {
                    let a = (1.0 - d2) * (1.0 - d2);
                    for k in 0..3 {
                        c[k] = c[k] * (1.0 - a) + col[k] * a;
                    }
                }
            }
            let n = 40.0 * coarse.at(xf, yf) + 20.0 * medium.at(xf, yf) + 10.0 * fine.at(xf, yf);
            let grain = rng.unit() * 8.0 - 4.0;
            for v in &mut c {
                *v += n + grain;
            }
            img.put(x, y, c);
        }
    }
}

/// `safety/tests/fixtures/NAME`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}
