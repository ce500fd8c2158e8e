//! NudeNet's input preprocessing, reproduced exactly: pad the image with black
//! at the right or bottom to a square, resize the square to the model's input
//! side with OpenCV's 8-bit bilinear resize, and hand the model planar BGR
//! floats in 0..=1.
//!
//! NudeNet does this with `cv2.copyMakeBorder` and `cv2.dnn.blobFromImage`
//! (size 320, scale 1/255, no mean, `swapRB=True` after a `COLOR_RGBA2BGR`
//! conversion that already swapped the channels of the BGR image OpenCV
//! decoded, so the model sees B, G, R planes). OpenCV's bilinear resize of
//! 8-bit images does not antialias and works in fixed point (11-bit
//! coefficients, a rounded 8-bit result), so other resizers (or float
//! arithmetic) shift pixels by a level here and there, and scores by a
//! little. This module reproduces OpenCV's integer arithmetic, including three
//! details that comparisons with `cv2.resize` pinned down:
//! * along x, source positions before the first or past the last pixel are
//!   clamped together with their interpolation weight (the edge pixel gets
//!   the full weight);
//! * along y, only the row index is clamped and the weights are kept, so edge
//!   rows go through the same two-term sum as interior ones;
//! * the vertical pass is OpenCV's SIMD one: each term is reduced to 16 bits
//!   and truncated before the sum is rounded
//!   (`((a >> 4) * b0 >> 16) + ((c >> 4) * b1 >> 16) + 2 >> 2`).
//!
//! Checked against `nudenet._read_image` on 79 images from 1×1 to 1600×1004
//! (square, wide, tall, up- and downscaled): with OpenCV 5.0 (what `pip
//! install nudenet==3.4.2` brings today) the model input is bit-identical;
//! OpenCV 4.10 gives the same 8-bit levels but scales them by 1/255 in `f64`,
//! which differs from our `f32` product by at most one unit in the last place
//! (a score change around 1e-7).
//!
//! The square is never materialised: pixels outside the image read as zero.

/// Bits of OpenCV's fixed-point interpolation weights.
const COEF_BITS: u32 = 11;
const COEF_ONE: f32 = (1 << COEF_BITS) as f32;

/// One output position's source index and weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Tap {
    /// First source index (clamped into the source).
    i0: usize,
    /// Second source index (clamped into the source).
    i1: usize,
    w0: i32,
    w1: i32,
}

/// OpenCV's `resize` weights for `src` → `dst` samples. `clamp_weights`
/// selects the x behaviour (see the module docs), else the y one.
fn taps(src: usize, dst: usize, clamp_weights: bool) -> Vec<Tap> {
    // OpenCV: inv_scale = dst/src in f64, scale = 1/inv_scale, then the
    // source position in f64 rounded to f32.
    let scale = 1.0 / (dst as f64 / src as f64);
    let last = src as i64 - 1;
    (0..dst)
        .map(|d| {
            let pos = ((d as f64 + 0.5) * scale - 0.5) as f32;
            let mut s = pos.floor() as i64;
            let mut frac = pos - s as f32;
            if clamp_weights {
                if s < 0 {
                    s = 0;
                    frac = 0.0;
                }
                if s >= last {
                    s = last;
                    frac = 0.0;
                }
            }
            // saturate_cast<short>(float) rounds half to even.
            let w0 = ((1.0 - frac) * COEF_ONE).round_ties_even() as i32;
            let w1 = (frac * COEF_ONE).round_ties_even() as i32;
            Tap { i0: s.clamp(0, last) as usize, i1: (s + 1).clamp(0, last) as usize, w0, w1 }
        })
        .collect()
}

/// Pads `rgb` (`width`×`height`, packed RGB8) to a square and resizes it to
/// `side`×`side` as NudeNet does; returns the model input, planar B, G, R
/// (`3 * side * side` floats, each `level * (1/255)`).
pub(crate) fn letterbox_bgr_planar(width: usize, height: usize, rgb: &[u8], side: usize) -> Vec<f32> {
    debug_assert_eq!(rgb.len(), width * height * 3);
    let square = width.max(height);
    let plane = side * side;
    let mut out = vec![0f32; 3 * plane];
    let scale = 1.0f32 / 255.0;
    let mut store = |x: usize, y: usize, px: [u8; 3]| {
        // RGB in, B G R planes out.
        for (c, &v) in [px[2], px[1], px[0]].iter().enumerate() {
            out[c * plane + y * side + x] = f32::from(v) * scale;
        }
    };

    if square == side {
        // blobFromImage does not resize an image of the right size.
        for y in 0..height {
            for x in 0..width {
                let i = (y * width + x) * 3;
                store(x, y, [rgb[i], rgb[i + 1], rgb[i + 2]]);
            }
        }
        return out;
    }

    let xs = taps(square, side, true);
    let ys = taps(square, side, false);
    // Horizontal pass of one source row: `side * 3` interleaved values scaled
    // by 2^11. Rows below the image (padding) are zero.
    let horizontal = |row: usize, buf: &mut [i32]| {
        if row >= height {
            buf.fill(0);
            return;
        }
        let src = &rgb[row * width * 3..(row + 1) * width * 3];
        let at = |x: usize, c: usize| if x < width { i32::from(src[x * 3 + c]) } else { 0 };
        for (d, t) in xs.iter().enumerate() {
            for c in 0..3 {
                buf[d * 3 + c] = at(t.i0, c) * t.w0 + at(t.i1, c) * t.w1;
            }
        }
    };
    // The two source rows in use, recomputed only when they change (the row
    // indices only grow with y).
    let n = side * 3;
    let mut rows: [(usize, Vec<i32>); 2] = [(usize::MAX, vec![0; n]), (usize::MAX, vec![0; n])];
    for (y, t) in ys.iter().enumerate() {
        for (slot, want) in [t.i0, t.i1].into_iter().enumerate() {
            if rows[slot].0 != want {
                let other = 1 - slot;
                if rows[other].0 == want {
                    let copy = rows[other].1.clone();
                    rows[slot] = (want, copy);
                } else {
                    horizontal(want, &mut rows[slot].1);
                    rows[slot].0 = want;
                }
            }
        }
        let (r0, r1) = (&rows[0].1, &rows[1].1);
        for x in 0..side {
            let mut px = [0u8; 3];
            for (c, p) in px.iter_mut().enumerate() {
                let (a, b) = (r0[x * 3 + c] >> 4, r1[x * 3 + c] >> 4);
                let v = ((a * t.w0) >> 16) + ((b * t.w1) >> 16);
                *p = ((v + 2) >> 2).clamp(0, 255) as u8;
            }
            store(x, y, px);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How blobFromImage scales a level: times 1/255 in f32 (which is not
    /// always the same float as level/255).
    fn level(v: u8) -> f32 {
        f32::from(v) * (1.0f32 / 255.0)
    }

    #[test]
    fn identity_size_is_a_plain_conversion() {
        let rgb: Vec<u8> = (0..4 * 4 * 3).map(|i| i as u8 * 5).collect();
        let out = letterbox_bgr_planar(4, 4, &rgb, 4);
        // Pixel (1, 0) is RGB (15, 20, 25): B plane first.
        assert_eq!(out[1], level(25));
        assert_eq!(out[16 + 1], level(20));
        assert_eq!(out[32 + 1], level(15));
    }

    #[test]
    fn padding_is_black_at_right_or_bottom() {
        // 2 wide, 4 high, white: the square is 4x4, the right half black.
        let out = letterbox_bgr_planar(2, 4, &[255; 2 * 4 * 3], 8);
        for y in 0..8 {
            assert_eq!(out[y * 8], 1.0, "left column is image");
            assert_eq!(out[y * 8 + 7], 0.0, "right column is padding");
        }
    }

    #[test]
    fn a_flat_image_stays_flat() {
        for (w, h) in [(7, 7), (100, 100), (333, 333), (1000, 1000)] {
            let out = letterbox_bgr_planar(w, h, &vec![200; w * h * 3], 320);
            assert!(out.iter().all(|&v| v == level(200)), "{w}x{h}");
        }
    }

    #[test]
    fn weights_sum_to_one_and_edges_clamp() {
        for (src, dst) in [(7, 320), (500, 320), (640, 320), (321, 320)] {
            for clamp in [true, false] {
                let t = taps(src, dst, clamp);
                assert!(t.iter().all(|t| t.i0 < src && t.i1 < src));
                assert!(t.iter().all(|t| (t.w0 + t.w1 - 2048).abs() <= 1));
            }
        }
        // Upscaling 7 -> 320: the first outputs sit before pixel 0.
        let x = taps(7, 320, true)[0];
        assert_eq!((x.i0, x.w0, x.w1), (0, 2048, 0));
        let y = taps(7, 320, false)[0];
        assert_eq!((y.i0, y.i1), (0, 0));
        assert!(y.w1 > 0, "y keeps its weights: {y:?}");
    }
}
