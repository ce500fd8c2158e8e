//! PDQ perceptual hashes (Meta's "PDQ", the 256-bit hash that industry
//! hash-sharing programmes exchange).
//!
//! [`hash_rgb8`] turns raw RGB8 pixels into a [`Pdq`] and a quality score.
//! The result is bit for bit what Meta's reference hashing code
//! (`pdqHash256FromFloatLuma`) computes for the same pixels, which
//! `tests/pdq_reference.rs` checks against hashes that the reference produced.
//! Two hashes of the same picture stay within a small Hamming
//! [`distance`](Pdq::distance) of each other through re-encoding and resizing
//! (0-6 bits in our tests); [`DEFAULT_MATCH_THRESHOLD`] is the cut-off we
//! match with. Cropping is PDQ's weak spot: 2% off one side moves a photo's
//! hash by about 22-24 bits, 5% by about 60, which no longer matches.
//!
//! The algorithm, as published by Meta:
//! 1. luma `Y = 0.299 R + 0.587 G + 0.114 B` in `f32`;
//! 2. a two-pass "Jarosz" tent filter (two box-filter passes along rows and
//!    columns, window ≈ size/128) and decimation to 64×64 by sampling the
//!    centres of 64 equal strips (a 64×64 input skips the filter);
//! 3. a quality score from the sum of quantised gradients of that 64×64 image;
//! 4. DCT coefficients 1..=16 × 1..=16 of the 64×64 image;
//! 5. one bit per coefficient: set when it is above the median of the 256.
//!
//! Everything runs in `f32` in the reference's order of operations: floating
//! point addition is not associative, and a different order would flip the
//! occasional bit near the median.
//!
//! The reference's command-line tool first shrinks images larger than 512
//! pixels on a side to 512×512 with its image library (and the Python tool to
//! a 512-pixel thumbnail with PIL), each in its own way; the hashing function
//! itself, like the Java reference, hashes the full image. [`hash_rgb8`] hashes
//! what it is given, so it equals the command-line tool for images up to
//! 512×512 and the hashing function for any size. Callers may hash a
//! thumbnail to bound the cost (a 12-megapixel image takes about 100 ms and
//! 100 MB of scratch): on photo-like test images the C++ tool's 512×512
//! shortcut moved hashes by 10 bits (median, 24 at most) of 256, inside the
//! match threshold.

use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

/// Hamming distance up to which two PDQ hashes are taken to show the same
/// picture (Meta's recommended default is 31 of 256 bits).
pub const DEFAULT_MATCH_THRESHOLD: u32 = 31;

/// Images narrower or shorter than this hash to all zeros with quality 0, as in
/// the reference.
const MIN_HASHABLE_DIM: usize = 5;

/// Side of the decimated image the DCT runs on.
const SIDE: usize = 64;
/// Side of the block of DCT coefficients kept (1..=16 in each direction).
const KEPT: usize = 16;

/// A 256-bit PDQ hash.
///
/// The bytes are in the order of the reference's text form: `to_hex` writes
/// them first to last. Bit `k` of the reference (DCT coefficient row `k / 16`,
/// column `k % 16`) is bit `k % 8` of byte `31 - k / 8`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pdq(pub [u8; 32]);

impl Pdq {
    /// The hash as 64 lowercase hex digits, the reference's text format.
    pub fn to_hex(&self) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push(DIGITS[usize::from(b >> 4)] as char);
            s.push(DIGITS[usize::from(b & 15)] as char);
        }
        s
    }

    /// Parses 64 hex digits (either case), as written by [`Pdq::to_hex`] and by
    /// the reference tools.
    pub fn from_hex(s: &str) -> Result<Pdq, ParseHexError> {
        let s = s.as_bytes();
        if s.len() != 64 {
            return Err(ParseHexError::Length(s.len()));
        }
        let digit = |i: usize| -> Result<u8, ParseHexError> {
            match s[i] {
                c @ b'0'..=b'9' => Ok(c - b'0'),
                c @ b'a'..=b'f' => Ok(c - b'a' + 10),
                c @ b'A'..=b'F' => Ok(c - b'A' + 10),
                _ => Err(ParseHexError::Digit(i)),
            }
        };
        let mut bytes = [0u8; 32];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = (digit(2 * i)? << 4) | digit(2 * i + 1)?;
        }
        Ok(Pdq(bytes))
    }

    /// Number of differing bits (0..=256). Two hashes of the same picture are
    /// usually within [`DEFAULT_MATCH_THRESHOLD`]; unrelated pictures are
    /// around 128 apart.
    pub fn distance(&self, other: &Pdq) -> u32 {
        self.0.iter().zip(other.0.iter()).map(|(a, b)| (a ^ b).count_ones()).sum()
    }

    /// Whether the two hashes are within [`DEFAULT_MATCH_THRESHOLD`].
    pub fn matches(&self, other: &Pdq) -> bool {
        self.distance(other) <= DEFAULT_MATCH_THRESHOLD
    }
}

impl fmt::Display for Pdq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Pdq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pdq({})", self.to_hex())
    }
}

impl FromStr for Pdq {
    type Err = ParseHexError;
    fn from_str(s: &str) -> Result<Pdq, ParseHexError> {
        Pdq::from_hex(s)
    }
}

/// Why a string is not a PDQ hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseHexError {
    #[error("a PDQ hash is 64 hex digits, got {0} characters")]
    Length(usize),
    #[error("character {0} of the PDQ hash is not a hex digit")]
    Digit(usize),
}

/// Hashes an image given as tightly packed RGB8 pixels (row-major, 3 bytes per
/// pixel, no row padding). Returns the hash and the reference's quality score
/// (0..=100; Meta suggests ignoring hashes of quality below 50, which flat or
/// nearly flat images get).
///
/// Images smaller than 5 pixels on a side give the all-zero hash and quality
/// 0, as in the reference. Cost is linear in the pixel count (about 4 float
/// operations per pixel for the luma and 8 for the filter); see the crate docs
/// for throughput.
///
/// # Panics
/// If `rgb.len() != width * height * 3`: the caller has mixed up its buffers.
pub fn hash_rgb8(width: u32, height: u32, rgb: &[u8]) -> (Pdq, u32) {
    let (w, h) = (width as usize, height as usize);
    assert_eq!(
        Some(rgb.len()),
        w.checked_mul(h).and_then(|n| n.checked_mul(3)),
        "hash_rgb8: {width}x{height} RGB8 needs {width}*{height}*3 bytes"
    );
    if w < MIN_HASHABLE_DIM || h < MIN_HASHABLE_DIM {
        return (Pdq([0; 32]), 0);
    }
    let mut luma: Vec<f32> = rgb
        .chunks_exact(3)
        .map(|p| 0.299f32 * f32::from(p[0]) + 0.587f32 * f32::from(p[1]) + 0.114f32 * f32::from(p[2]))
        .collect();
    let small = downsample_64(&mut luma, h, w);
    let quality = quality(&small);
    let coefficients = dct_16(&small);
    (to_bits(&coefficients), quality)
}

/// Blurs (unless already 64×64) and decimates the luma plane to 64×64.
fn downsample_64(luma: &mut [f32], rows: usize, cols: usize) -> Box<[[f32; SIDE]; SIDE]> {
    let mut out = Box::new([[0f32; SIDE]; SIDE]);
    if rows == SIDE && cols == SIDE {
        for (row, src) in out.iter_mut().zip(luma.chunks_exact(SIDE)) {
            row.copy_from_slice(src);
        }
        return out;
    }
    // Tent filter: twice a box along rows then a box along columns, with
    // windows of about half the decimation step.
    let window_along_rows = cols.div_ceil(2 * SIDE).max(1);
    let window_along_cols = rows.div_ceil(2 * SIDE).max(1);
    let mut tmp = vec![0f32; luma.len()];
    for _ in 0..2 {
        box_rows(luma, &mut tmp, cols, window_along_rows);
        box_columns(&tmp, luma, rows, cols, window_along_cols);
    }
    // Decimate: sample the centre of each of 64 equal strips.
    for (i, row) in out.iter_mut().enumerate() {
        let y = (2 * i + 1) * rows / (2 * SIDE);
        for (j, v) in row.iter_mut().enumerate() {
            let x = (2 * j + 1) * cols / (2 * SIDE);
            *v = luma[y * cols + x];
        }
    }
    out
}

/// Where a box window of `window` samples reaches around its output sample:
/// `ahead` samples after it and `behind` samples before it (the reference
/// centres even windows one sample to the right).
fn window_reach(window: usize) -> (usize, usize) {
    let ahead = (window + 2) / 2 - 1;
    (ahead, window - 1 - ahead)
}

/// Box filter of one row: the mean of the window around each sample, the
/// window shrinking at the edges. A running sum, updated add-then-subtract
/// like the reference so the float results are identical.
fn box_row(src: &[f32], dst: &mut [f32], window: usize) {
    let n = src.len();
    let (ahead, behind) = window_reach(window);
    let mut sum = 0f32;
    let mut count = 0u32;
    for &v in &src[..ahead.min(n)] {
        sum += v;
        count += 1;
    }
    for (o, out) in dst.iter_mut().enumerate() {
        if let Some(&v) = src.get(o + ahead) {
            sum += v;
            count += 1;
        }
        if o > behind {
            sum -= src[o - behind - 1];
            count -= 1;
        }
        *out = sum / count as f32;
    }
}

/// [`box_row`] on every row, eight rows in lockstep: each row's running sum
/// is a chain of dependent additions, and eight independent chains keep the
/// processor busy where one would wait on each addition's latency.
fn box_rows(src: &[f32], dst: &mut [f32], cols: usize, window: usize) {
    const LANES: usize = 8;
    let (ahead, behind) = window_reach(window);
    let mut src_blocks = src.chunks_exact(LANES * cols);
    let mut dst_blocks = dst.chunks_exact_mut(LANES * cols);
    for (s, d) in (&mut src_blocks).zip(&mut dst_blocks) {
        let row = |k: usize| &s[k * cols..(k + 1) * cols];
        let rows: [&[f32]; LANES] = std::array::from_fn(row);
        let mut sums = [0f32; LANES];
        let mut count = 0u32;
        for i in 0..ahead.min(cols) {
            sums.iter_mut().zip(&rows).for_each(|(sum, row)| *sum += row[i]);
            count += 1;
        }
        for o in 0..cols {
            if o + ahead < cols {
                sums.iter_mut().zip(&rows).for_each(|(sum, row)| *sum += row[o + ahead]);
                count += 1;
            }
            if o > behind {
                sums.iter_mut().zip(&rows).for_each(|(sum, row)| *sum -= row[o - behind - 1]);
                count -= 1;
            }
            let n = count as f32;
            for (k, sum) in sums.iter().enumerate() {
                d[k * cols + o] = sum / n;
            }
        }
    }
    let rest = src_blocks.remainder().chunks_exact(cols);
    for (s, d) in rest.zip(dst_blocks.into_remainder().chunks_exact_mut(cols)) {
        box_row(s, d, window);
    }
}

/// [`box_row`] down every column at once (a row of running sums), which keeps
/// memory access sequential; each column sees the same operations in the same
/// order as a column-at-a-time filter.
fn box_columns(src: &[f32], dst: &mut [f32], rows: usize, cols: usize, window: usize) {
    let (ahead, behind) = window_reach(window);
    let row = |i: usize| &src[i * cols..(i + 1) * cols];
    let mut sums = vec![0f32; cols];
    let mut count = 0u32;
    for i in 0..ahead.min(rows) {
        sums.iter_mut().zip(row(i)).for_each(|(s, v)| *s += v);
        count += 1;
    }
    for (o, out) in dst.chunks_exact_mut(cols).enumerate() {
        if o + ahead < rows {
            sums.iter_mut().zip(row(o + ahead)).for_each(|(s, v)| *s += v);
            count += 1;
        }
        if o > behind {
            sums.iter_mut().zip(row(o - behind - 1)).for_each(|(s, v)| *s -= v);
            count -= 1;
        }
        let n = count as f32;
        out.iter_mut().zip(&sums).for_each(|(d, s)| *d = s / n);
    }
}

/// The reference's quality heuristic: the sum of absolute neighbour
/// differences, each quantised to whole percent of full scale, over 90,
/// capped at 100.
fn quality(img: &[[f32; SIDE]; SIDE]) -> u32 {
    let step = |u: f32, v: f32| (((u - v) * 100f32) / 255f32) as i32;
    let mut sum: i32 = 0;
    for pair in img.windows(2) {
        for (&u, &v) in pair[0].iter().zip(&pair[1]) {
            sum += step(u, v).abs();
        }
    }
    for row in img {
        for p in row.windows(2) {
            sum += step(p[0], p[1]).abs();
        }
    }
    (sum / 90).min(100) as u32
}

/// Rows 1..=16 of the orthonormal 64-point DCT-II basis, as `f32` computed the
/// reference's way: `f32(sqrt(2/64)) * cos(pi/128 * (i+1) * (2j+1))` in `f64`.
static DCT: LazyLock<[[f32; SIDE]; KEPT]> = LazyLock::new(|| {
    let scale = (2.0f64 / SIDE as f64).sqrt() as f32;
    let mut m = [[0f32; SIDE]; KEPT];
    for (i, row) in m.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            let angle = (std::f64::consts::PI / 2.0 / SIDE as f64) * (i + 1) as f64 * (2 * j + 1) as f64;
            *v = (f64::from(scale) * angle.cos()) as f32;
        }
    }
    m
});

/// The 16×16 low-frequency DCT block `D · A · Dᵀ` (without the DC terms),
/// summed in `f32` over k ascending, as the reference does.
fn dct_16(a: &[[f32; SIDE]; SIDE]) -> [[f32; KEPT]; KEPT] {
    let d = &*DCT;
    let mut t = [[0f32; SIDE]; KEPT];
    for (i, t_row) in t.iter_mut().enumerate() {
        for (j, t_ij) in t_row.iter_mut().enumerate() {
            let mut sum = 0f32;
            for k in 0..SIDE {
                sum += d[i][k] * a[k][j];
            }
            *t_ij = sum;
        }
    }
    let mut b = [[0f32; KEPT]; KEPT];
    for (i, b_row) in b.iter_mut().enumerate() {
        for (j, b_ij) in b_row.iter_mut().enumerate() {
            let mut sum = 0f32;
            for k in 0..SIDE {
                sum += t[i][k] * d[j][k];
            }
            *b_ij = sum;
        }
    }
    b
}

/// One bit per coefficient: above the median or not. The median is the 128th
/// smallest of the 256 (what the reference's Torben median returns).
fn to_bits(c: &[[f32; KEPT]; KEPT]) -> Pdq {
    let mut sorted: Vec<f32> = c.iter().flatten().copied().collect();
    let (_, &mut median, _) = sorted.select_nth_unstable_by(KEPT * KEPT / 2 - 1, f32::total_cmp);
    let mut bytes = [0u8; 32];
    for (k, &v) in c.iter().flatten().enumerate() {
        if v > median {
            bytes[31 - k / 8] |= 1 << (k % 8);
        }
    }
    Pdq(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_errors() {
        let hex = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22";
        let h = Pdq::from_hex(hex).unwrap();
        assert_eq!(h.to_hex(), hex);
        assert_eq!(h.to_string(), hex);
        assert_eq!(Pdq::from_hex(&hex.to_uppercase()).unwrap(), h);
        assert_eq!(hex.parse::<Pdq>().unwrap(), h);
        assert_eq!(Pdq::from_hex("abc"), Err(ParseHexError::Length(3)));
        let bad = format!("{}g", &hex[..63]);
        assert_eq!(Pdq::from_hex(&bad), Err(ParseHexError::Digit(63)));
        assert_eq!(format!("{h:?}"), format!("Pdq({hex})"));
    }

    #[test]
    fn distance_is_hamming() {
        let a = Pdq([0; 32]);
        let mut b = [0u8; 32];
        b[0] = 0b1011;
        b[31] = 0xff;
        let b = Pdq(b);
        assert_eq!(a.distance(&b), 11);
        assert_eq!(b.distance(&a), 11);
        assert_eq!(b.distance(&b), 0);
        assert_eq!(Pdq([0; 32]).distance(&Pdq([0xff; 32])), 256);
        assert!(a.matches(&b));
    }

    #[test]
    fn box_filter_matches_naive_window_means() {
        let src: Vec<f32> = (0..23).map(|i| ((i * 37) % 11) as f32).collect();
        for window in 1..8 {
            let mut dst = vec![0f32; src.len()];
            box_row(&src, &mut dst, window);
            let (ahead, behind) = window_reach(window);
            for (o, &got) in dst.iter().enumerate() {
                let lo = o.saturating_sub(behind);
                let hi = (o + ahead).min(src.len() - 1);
                let want = src[lo..=hi].iter().sum::<f32>() / (hi - lo + 1) as f32;
                assert!((got - want).abs() < 1e-4, "window {window} at {o}: {got} vs {want}");
            }
            // The eight-row version does the same to every row (11 rows: a
            // block of eight and three left over).
            let grid: Vec<f32> = (0..11).flat_map(|r| src.iter().map(move |v| v * r as f32)).collect();
            let mut out = vec![0f32; grid.len()];
            box_rows(&grid, &mut out, src.len(), window);
            for (r, row) in out.chunks_exact(src.len()).enumerate() {
                let mut want = vec![0f32; src.len()];
                box_row(&grid[r * src.len()..(r + 1) * src.len()], &mut want, window);
                assert_eq!(row, &want[..]);
            }
            // The column version does the same to every column.
            let cols = 3;
            let grid: Vec<f32> = src.iter().flat_map(|&v| [v, v * 2.0, -v]).collect();
            let mut out = vec![0f32; grid.len()];
            box_columns(&grid, &mut out, src.len(), cols, window);
            for (o, &d) in dst.iter().enumerate() {
                assert_eq!(out[o * cols], d);
            }
        }
    }

    #[test]
    fn median_bits_split_evenly() {
        let mut c = [[0f32; KEPT]; KEPT];
        for (k, v) in c.iter_mut().flatten().enumerate() {
            *v = ((k * 97) % 256) as f32 - 100.0;
        }
        let h = to_bits(&c);
        assert_eq!(h.0.iter().map(|b| b.count_ones()).sum::<u32>(), 128);
        // Coefficient 0 is -100, below the median; coefficient 255 is
        // (255*97)%256 - 100 = 59, above it: bit 255 is bit 7 of byte 0.
        assert_eq!(h.0[31] & 1, 0);
        assert_eq!(h.0[0] >> 7, 1);
    }

    #[test]
    fn tiny_and_flat_images() {
        assert_eq!(hash_rgb8(4, 100, &[7; 4 * 100 * 3]), (Pdq([0; 32]), 0));
        let (_, q) = hash_rgb8(100, 80, &[128; 100 * 80 * 3]);
        assert_eq!(q, 0, "a flat image has no gradients");
    }

    #[test]
    #[should_panic(expected = "needs")]
    fn wrong_buffer_length_panics() {
        hash_rgb8(10, 10, &[0; 299]);
    }

    #[test]
    fn dct_rows_are_orthonormal() {
        for i in 0..KEPT {
            for j in 0..KEPT {
                let dot: f64 = (0..SIDE).map(|k| f64::from(DCT[i][k]) * f64::from(DCT[j][k])).sum();
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((dot - want).abs() < 1e-5, "rows {i},{j}: {dot}");
            }
        }
    }
}
