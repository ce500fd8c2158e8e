//! Transforms for the edge: an original's bytes and a canonical
//! [`Variant`] in, the variant's bytes out, through libvips (Debian's
//! `libvips` 8.14, the same library as `vipsthumbnail`).
//!
//! The pipeline, in the order libvips runs it lazily, pixel strip by pixel
//! strip: the original is read top to bottom (`access=sequential`), so it
//! is never in memory at full size, whatever its format:
//!
//! 1. **Header only** first: the declared size is checked against
//!    [`Limits::max_input_pixels`] before anything is decoded, and the
//!    output's against [`Limits::max_output_pixels`].
//! 2. **Shrink on load**: JPEG decodes at 1/2, 1/4 or 1/8 scale in the DCT
//!    (the largest factor that keeps the image at least as large as
//!    needed), WebP at any scale. Animated GIF and WebP give their first
//!    frame (the output is a still image).
//! 3. **Resize** with Lanczos3 to the size [`Variant::plan`] says (planned
//!    on the upright image); then, on the small result, **sRGB** (an
//!    embedded ICC profile is converted to sRGB, other colour spaces: CMYK,
//!    grey, 16-bit, by libvips's own rules) and the **orientation** (the
//!    Exif tag); then a centred **crop** (`cover`, `crop`) or **pad**
//!    (`pad`, white).
//! 4. **Tone** on the colour bands (alpha untouched): brightness and
//!    contrast (linear), gamma, saturation (chroma in LCh); then **blur**
//!    (Gaussian, sigma = `blur`) and **sharpen** (unsharp mask, amount =
//!    `sharp`).
//! 5. **Encode**, metadata stripped (no Exif, XMP, IPTC or ICC: the pixels
//!    are sRGB; every saver is told to `strip`, and libvips 8.14.1's WebP
//!    saver, which ignores it, has its Exif chunk cut out after): JPEG
//!    progressive with optimised Huffman tables, quality 82
//!    unless `q` (an alpha channel is flattened on white); PNG with zlib
//!    level 6; WebP lossy quality 80, effort 2 of 6 (effort above 2 costs
//!    twice the time for ~3% smaller files); AVIF quality 50, effort 1 of 9
//!    (libaom: the higher efforts are 3–10× slower); GIF with libvips's
//!    quantiser (first frame only).
//!
//! libvips keeps no operation cache here ([`init`]): each transform is
//! independent and its memory is released when it ends. Calls block: run
//! them on a blocking thread, a bounded number at once (the edge's pool).

use std::sync::OnceLock;

use imgcdn_shared::variant::{Fit, Variant};
use imgcdn_shared::Format;
use libvips::ops::{self, BandFormat, Interpretation};
use libvips::{VipsApp, VipsImage};

/// What one transform may cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest original (width × height as its header declares).
    pub max_input_pixels: u64,
    /// Largest output.
    pub max_output_pixels: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_input_pixels: 100_000_000, max_output_pixels: 25_000_000 }
    }
}

/// A variant's bytes.
#[derive(Debug, Clone)]
pub struct Transformed {
    pub bytes: Vec<u8>,
    pub format: Format,
    pub width: u32,
    pub height: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum TransformError {
    /// Over a pixel limit: refused before decoding.
    #[error("{what} of {pixels} pixels is over the limit of {limit}")]
    TooLarge { what: &'static str, pixels: u64, limit: u64 },
    /// libvips could not read or process it.
    #[error("transform failed: {0}")]
    Failed(String),
    /// libvips could not start.
    #[error("libvips did not start: {0}")]
    Init(String),
}

/// libvips, started once and never shut down (dropping a `VipsApp` would).
static APP: OnceLock<Result<VipsApp, String>> = OnceLock::new();

/// Start libvips once per process (no operation cache; `threads` worker
/// threads per operation, 0 = libvips's default). Later calls do nothing.
pub fn init(threads: i32) -> Result<(), TransformError> {
    app(threads).map(|_| ())
}

fn app(threads: i32) -> Result<&'static VipsApp, TransformError> {
    let app = APP.get_or_init(|| {
        // libheif (AVIF output) must stay initialised whatever else in the
        // process (HEIC uploads) starts and stops it.
        #[cfg(feature = "heic")]
        let _ = crate::heic::lib();
        let app = VipsApp::new("imgcdn", false).map_err(|e| e.to_string())?;
        app.cache_set_max(0);
        app.cache_set_max_mem(0);
        if threads > 0 {
            app.concurrency_set(threads);
        }
        Ok(app)
    });
    app.as_ref().map_err(|e| TransformError::Init(e.clone()))
}

fn failed(step: &str) -> impl Fn(libvips::error::Error) -> TransformError + '_ {
    move |e| TransformError::Failed(format!("{step}: {e}"))
}

/// Make `variant` of an original stored as `stored`.
pub fn transform(
    input: &[u8],
    stored: Format,
    variant: &Variant,
    limits: &Limits,
) -> Result<Transformed, TransformError> {
    init(0)?;
    let header = VipsImage::new_from_buffer(input, "").map_err(failed("read header"))?;
    let (w0, h0) = (header.get_width().max(1) as u32, header.get_height().max(1) as u32);
    let pixels = u64::from(w0) * u64::from(h0);
    if pixels > limits.max_input_pixels {
        return Err(TransformError::TooLarge { what: "the original", pixels, limit: limits.max_input_pixels });
    }
    // Sizes are planned on the upright image.
    let orientation = header.get_orientation();
    let turned = matches!(orientation, 5..=8);
    let (ow, oh) = if turned { (h0, w0) } else { (w0, h0) };
    let plan = variant.plan(ow, oh);
    let out_pixels = u64::from(plan.output.0) * u64::from(plan.output.1);
    let scaled_pixels = u64::from(plan.scaled.0) * u64::from(plan.scaled.1);
    if out_pixels.max(scaled_pixels) > limits.max_output_pixels {
        return Err(TransformError::TooLarge {
            what: "the output",
            pixels: out_pixels.max(scaled_pixels),
            limit: limits.max_output_pixels,
        });
    }
    drop(header);

    // Read as a stream, top to bottom (never the whole original in memory),
    // shrunk on load by the factor both sides allow.
    let shrink = (f64::from(ow) / f64::from(plan.scaled.0)).min(f64::from(oh) / f64::from(plan.scaled.1));
    let options = match stored {
        Format::Jpeg => match [8u32, 4, 2].into_iter().find(|&s| shrink >= f64::from(s)) {
            Some(s) => format!("[access=sequential,shrink={s}]"),
            None => "[access=sequential]".to_string(),
        },
        Format::Webp if shrink > 1.0 => format!("[access=sequential,scale={}]", 1.0 / shrink),
        _ => "[access=sequential]".to_string(),
    };
    let img = VipsImage::new_from_buffer(input, &options).map_err(failed("load"))?;

    // Resize to exactly the planned size, still in the stored orientation.
    let (cw, ch) = (img.get_width() as f64, img.get_height() as f64);
    let (tw, th) = if turned { (plan.scaled.1, plan.scaled.0) } else { plan.scaled };
    let img = if (tw as f64, th as f64) != (cw, ch) {
        let opts =
            ops::ResizeOptions { kernel: ops::Kernel::Lanczos3, vscale: f64::from(th) / ch, ..Default::default() };
        ops::resize_with_opts(&img, f64::from(tw) / cw, &opts).map_err(failed("resize"))?
    } else {
        img
    };
    // Colour on the small image (as vipsthumbnail does), then upright: a
    // rotation or flip reads out of order, so the resized image is made in
    // memory first.
    let img = to_srgb(img)?;
    let img = if orientation > 1 {
        let made = VipsImage::image_copy_memory(img).map_err(failed("orientation"))?;
        ops::autorot(&made).map_err(failed("orientation"))?
    } else {
        img
    };
    let img = fit_box(img, plan.output, variant.fit)?;
    let img = tone(img, variant)?;
    let format = variant.output_format(stored);
    let (width, height) = (img.get_width() as u32, img.get_height() as u32);
    let bytes = encode(&img, format, variant.quality)?;
    Ok(Transformed { bytes, format, width, height })
}

/// sRGB, 8 bits per sample: an embedded profile is applied, anything else
/// converted by libvips's rules.
fn to_srgb(img: VipsImage) -> Result<VipsImage, TransformError> {
    // With `embedded`, the image's own profile is used; without one there is
    // nothing to apply (the empty fallback profile fails to load: no-op).
    let icc = ops::IccTransformOptions { embedded: true, input_profile: String::new(), ..Default::default() };
    let img = match ops::icc_transform_with_opts(&img, "srgb", &icc) {
        Ok(converted) => converted,
        Err(_) => {
            // Expected without a profile: not an error worth keeping.
            if let Ok(app) = app(0) {
                app.error_clear();
            }
            img
        }
    };
    let srgb = img.get_interpretation().is_ok_and(|i| matches!(i, Interpretation::Srgb));
    let uchar = img.get_format().is_ok_and(|f| matches!(f, BandFormat::Uchar));
    if srgb && uchar {
        return Ok(img);
    }
    let img = ops::colourspace(&img, Interpretation::Srgb).map_err(failed("colour space"))?;
    if img.get_format().is_ok_and(|f| matches!(f, BandFormat::Uchar)) {
        Ok(img)
    } else {
        ops::cast(&img, BandFormat::Uchar).map_err(failed("cast"))
    }
}

/// Crop (centred) what is over the box, pad (centred, white or
/// transparent) what is under it.
fn fit_box(img: VipsImage, (bw, bh): (u32, u32), fit: Fit) -> Result<VipsImage, TransformError> {
    let (w, h) = (img.get_width() as u32, img.get_height() as u32);
    let (cw, ch) = (w.min(bw), h.min(bh));
    let img = if (cw, ch) != (w, h) {
        let (x, y) = ((w - cw) / 2, (h - ch) / 2);
        ops::extract_area(&img, x as i32, y as i32, cw as i32, ch as i32).map_err(failed("crop"))?
    } else {
        img
    };
    if (bw, bh) == (cw, ch) || fit != Fit::Pad {
        return Ok(img);
    }
    let background = if img.image_hasalpha() { vec![255.0, 255.0, 255.0, 0.0] } else { vec![255.0; 3] };
    let opts = ops::EmbedOptions { extend: ops::Extend::Background, background };
    let (x, y) = ((bw - cw) / 2, (bh - ch) / 2);
    ops::embed_with_opts(&img, x as i32, y as i32, bw as i32, bh as i32, &opts).map_err(failed("pad"))
}

/// Tone, blur and sharpen the colour bands; alpha passes through.
fn tone(img: VipsImage, v: &Variant) -> Result<VipsImage, TransformError> {
    let toned = v.brightness.is_some() || v.contrast.is_some() || v.gamma.is_some() || v.saturation.is_some();
    if !toned && v.blur.is_none() && v.sharp.is_none() {
        return Ok(img);
    }
    let alpha = img.image_hasalpha();
    let bands = img.get_bands();
    let (mut colour, alpha_band) = if alpha {
        let colour =
            ops::extract_band_with_opts(&img, 0, &ops::ExtractBandOptions { n: bands - 1 }).map_err(failed("bands"))?;
        (colour, Some(ops::extract_band(&img, bands - 1).map_err(failed("bands"))?))
    } else {
        (img, None)
    };
    let n = colour.get_bands() as usize;
    let hundredths = |t: u16| f64::from(t) / 100.0;
    if let Some(b) = v.brightness {
        let b = hundredths(b);
        colour = ops::linear(&colour, &mut vec![b; n], &mut vec![0.0; n]).map_err(failed("brightness"))?;
    }
    if let Some(c) = v.contrast {
        let c = hundredths(c);
        colour = ops::linear(&colour, &mut vec![c; n], &mut vec![128.0 * (1.0 - c); n]).map_err(failed("contrast"))?;
    }
    if toned {
        colour = ops::cast(&colour, BandFormat::Uchar).map_err(failed("cast"))?;
    }
    if let Some(g) = v.gamma {
        let opts = ops::GammaOptions { exponent: hundredths(g) };
        colour = ops::gamma_with_opts(&colour, &opts).map_err(failed("gamma"))?;
        colour = ops::cast(&colour, BandFormat::Uchar).map_err(failed("cast"))?;
    }
    if let Some(s) = v.saturation.filter(|_| n >= 3) {
        let lch = ops::colourspace(&colour, Interpretation::Lch).map_err(failed("saturation"))?;
        let lch =
            ops::linear(&lch, &mut [1.0, hundredths(s), 1.0], &mut [0.0, 0.0, 0.0]).map_err(failed("saturation"))?;
        colour = ops::colourspace(&lch, Interpretation::Srgb).map_err(failed("saturation"))?;
        colour = ops::cast(&colour, BandFormat::Uchar).map_err(failed("cast"))?;
    }
    if let Some(b) = v.blur {
        colour = ops::gaussblur(&colour, f64::from(b) / 10.0).map_err(failed("blur"))?;
    }
    if let Some(s) = v.sharp {
        let opts = ops::SharpenOptions { m_2: f64::from(s) / 10.0 * 2.0, ..Default::default() };
        colour = ops::sharpen_with_opts(&colour, &opts).map_err(failed("sharpen"))?;
        colour = ops::colourspace(&colour, Interpretation::Srgb).map_err(failed("sharpen"))?;
        colour = ops::cast(&colour, BandFormat::Uchar).map_err(failed("cast"))?;
    }
    match alpha_band {
        Some(a) => ops::bandjoin(&mut [colour, a]).map_err(failed("bands")),
        None => Ok(colour),
    }
}

/// Save `img` as `ext[options]` and return the bytes. Through a private
/// temporary file: the bindings' save-to-memory calls build their result
/// from libvips's output pointer before looking at the error code, so a
/// failed save there is undefined behaviour; saving to a file reports the
/// failure as an error.
fn write_out(img: &VipsImage, ext_options: &str) -> Result<Vec<u8>, TransformError> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static DIR: OnceLock<Result<std::path::PathBuf, String>> = OnceLock::new();
    let dir = DIR
        .get_or_init(|| {
            let dir = std::env::temp_dir().join(format!("imgcdn-transform-{}", std::process::id()));
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            Ok(dir)
        })
        .as_ref()
        .map_err(|e| TransformError::Failed(format!("temporary directory {e}")))?;
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let ext = ext_options.split('[').next().unwrap_or(ext_options);
    let path = dir.join(format!("{n}.{ext}"));
    let target = format!("{}{}", path.display(), &ext_options[ext.len()..]);
    let saved = img.image_write_to_file(&target).map_err(|e| {
        let detail = vips_error();
        TransformError::Failed(format!("encode {ext}: {e} {detail}"))
    });
    let read = saved.and_then(|()| std::fs::read(&path).map_err(|e| TransformError::Failed(format!("encode: {e}"))));
    let _ = std::fs::remove_file(&path);
    read
}

/// What libvips said last (its error buffer is process-wide).
fn vips_error() -> String {
    app(0).ok().and_then(|a| a.error_buffer().ok()).unwrap_or("").trim().chars().take(500).collect()
}

/// Encode, metadata stripped.
fn encode(img: &VipsImage, format: Format, quality: Option<u8>) -> Result<Vec<u8>, TransformError> {
    let q = |default: u8| quality.unwrap_or(default);
    let suffix = match format {
        Format::Jpeg => format!("jpg[Q={},interlace,optimize_coding,strip]", q(82)),
        Format::Png => "png[compression=6,strip]".to_string(),
        Format::Webp => format!("webp[Q={},effort=2,strip]", q(80)),
        Format::Avif => format!("avif[Q={},effort=1,strip]", q(50)),
        Format::Gif => "gif[strip]".to_string(),
        other => return Err(TransformError::Failed(format!("{} is not an output format", other.extension()))),
    };
    let flattened;
    let img = if format == Format::Jpeg && img.image_hasalpha() {
        let opts = ops::FlattenOptions { background: vec![255.0, 255.0, 255.0], ..Default::default() };
        flattened = ops::flatten_with_opts(img, &opts).map_err(failed("flatten"))?;
        &flattened
    } else {
        img
    };
    let out = write_out(img, &suffix);
    match (out, format) {
        // libvips 8.14.1's WebP saver writes an Exif chunk even when told to
        // strip: the upload stripper takes it out.
        (Ok(webp), Format::Webp) => crate::webp::strip(&webp).map_err(|e| TransformError::Failed(e.to_string())),
        (out, _) => out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use imgcdn_shared::variant::Rules;

    fn variant(q: &str, stored: Format) -> Variant {
        Variant::parse(q, stored, stored, &Rules::default())
    }

    /// A noisy RGB image encoded by the `image` crate.
    fn encoded(w: u32, h: u32, format: image::ImageFormat) -> Vec<u8> {
        let img = image::RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x * 7 % 256) as u8, (y * 5 % 256) as u8, ((x ^ y) % 256) as u8])
        });
        let mut out = std::io::Cursor::new(Vec::new());
        image::DynamicImage::ImageRgb8(img).write_to(&mut out, format).unwrap();
        out.into_inner()
    }

    /// A JPEG with an Exif segment holding a GPS tag name and orientation 6
    /// (rotate 90° clockwise to show).
    fn jpeg_with_exif(w: u32, h: u32) -> Vec<u8> {
        let plain = encoded(w, h, image::ImageFormat::Jpeg);
        // TIFF header (little endian), IFD0 with one entry: Orientation = 6.
        let mut tiff = b"II*\0\x08\0\0\0".to_vec();
        tiff.extend_from_slice(&[1, 0]);
        tiff.extend_from_slice(&[0x12, 0x01, 3, 0, 1, 0, 0, 0, 6, 0, 0, 0]);
        tiff.extend_from_slice(&[0, 0, 0, 0]);
        tiff.extend_from_slice(b"GPSLatitude 48.85");
        let mut app1 = b"Exif\0\0".to_vec();
        app1.extend_from_slice(&tiff);
        let mut out = plain[..2].to_vec();
        out.extend_from_slice(&[0xff, 0xe1]);
        out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(&app1);
        out.extend_from_slice(&plain[2..]);
        out
    }

    fn run(input: &[u8], stored: Format, q: &str) -> Transformed {
        transform(input, stored, &variant(q, stored), &Limits::default()).unwrap_or_else(|e| panic!("{q}: {e}"))
    }

    /// The dimensions of encoded bytes, as a decoder reads them.
    fn decoded_size(bytes: &[u8]) -> (u32, u32) {
        let img = VipsImage::new_from_buffer(bytes, "").unwrap();
        (img.get_width() as u32, img.get_height() as u32)
    }

    #[test]
    fn every_fit_and_size_gives_the_planned_dimensions() {
        let png = encoded(800, 500, image::ImageFormat::Png);
        for q in [
            "size=s",
            "size=m",
            "size=l",
            "size=social",
            "w=400",
            "h=100",
            "w=1600",
            "w=1600&fit=contain",
            "w=400&h=400",
            "w=400&h=400&fit=contain",
            "w=400&h=400&fit=cover",
            "w=400&h=400&fit=crop",
            "w=2000&h=300&fit=crop",
            "w=400&h=400&fit=pad",
            "w=333&h=77&fit=cover",
            "w=1&h=1&fit=cover",
        ] {
            let v = variant(q, Format::Png);
            let out = run(&png, Format::Png, q);
            let want = v.output_size(800, 500);
            assert_eq!((out.width, out.height), want, "{q}");
            assert_eq!(decoded_size(&out.bytes), want, "{q}: the encoded file");
        }
    }

    #[test]
    fn jpeg_shrinks_on_load_and_keeps_exact_sizes() {
        let jpeg = encoded(2400, 1600, image::ImageFormat::Jpeg);
        for q in ["size=s", "w=299", "w=301&h=301&fit=cover", "w=1199"] {
            let out = run(&jpeg, Format::Jpeg, q);
            assert_eq!((out.width, out.height), variant(q, Format::Jpeg).output_size(2400, 1600), "{q}");
        }
    }

    #[test]
    fn every_output_format_decodes_as_itself_without_metadata() {
        let jpeg = jpeg_with_exif(300, 200);
        for (name, format, magic) in [
            ("jpg", Format::Jpeg, &b"\xff\xd8\xff"[..]),
            ("png", Format::Png, &b"\x89PNG"[..]),
            ("webp", Format::Webp, &b"RIFF"[..]),
            ("gif", Format::Gif, &b"GIF8"[..]),
            ("avif", Format::Avif, &b"\0\0\0"[..]),
        ] {
            let out = run(&jpeg, Format::Jpeg, &format!("w=100&format={name}"));
            assert_eq!(out.format, format);
            assert!(out.bytes.starts_with(magic), "{name}");
            if format == Format::Avif {
                assert_eq!(&out.bytes[4..8], b"ftyp");
            }
            // Orientation 6 applied: the 300×200 photo shows 200×300.
            assert_eq!(decoded_size(&out.bytes), (100, 150), "{name}");
            for needle in [&b"Exif"[..], b"GPSLatitude", b"icc", b"ICC_PROFILE"] {
                assert!(!out.bytes.windows(needle.len()).any(|w| w == needle), "{name} keeps {needle:?}");
            }
        }
        // JPEG output is progressive (an SOF2 marker).
        let out = run(&jpeg, Format::Jpeg, "w=100");
        assert!(out.bytes.windows(2).any(|w| w == [0xff, 0xc2]));
    }

    #[test]
    fn tone_and_effects_change_pixels_not_sizes() {
        let png = encoded(64, 64, image::ImageFormat::Png);
        let plain = run(&png, Format::Png, "w=32");
        for q in ["brightness=1.5", "contrast=2", "gamma=2.2", "saturation=0", "blur=3", "sharp=5"] {
            let out = run(&png, Format::Png, &format!("w=32&{q}"));
            assert_eq!((out.width, out.height), (32, 32), "{q}");
            assert_ne!(out.bytes, plain.bytes, "{q} changed nothing");
        }
        // Saturation 0 is grey: R = G = B everywhere.
        let grey = run(&png, Format::Png, "saturation=0");
        let img = image::load_from_memory(&grey.bytes).unwrap().to_rgb8();
        assert!(img.pixels().all(|p| p[0].abs_diff(p[1]) <= 2 && p[1].abs_diff(p[2]) <= 2));
    }

    #[test]
    fn an_animated_gif_gives_its_first_frame() {
        use image::codecs::gif::{GifDecoder, GifEncoder};
        use image::{AnimationDecoder, Delay, Frame, Rgba, RgbaImage};
        let mut gif = Vec::new();
        {
            let mut enc = GifEncoder::new(&mut gif);
            for shade in [0u8, 255] {
                let frame = RgbaImage::from_pixel(20, 10, Rgba([shade, shade, shade, 255]));
                enc.encode_frame(Frame::from_parts(frame, 0, 0, Delay::from_numer_denom_ms(100, 1))).unwrap();
            }
        }
        let out = run(&gif, Format::Gif, "w=10");
        assert_eq!((out.format, out.width, out.height), (Format::Gif, 10, 5));
        let frames = GifDecoder::new(std::io::Cursor::new(&out.bytes)).unwrap().into_frames().collect_frames().unwrap();
        assert_eq!(frames.len(), 1, "a still image");
        assert!(frames[0].buffer().pixels().all(|p| p[0] < 16), "the first (black) frame");
    }

    #[cfg(feature = "heic")]
    #[test]
    fn avif_output_survives_libheif_users_coming_and_going() {
        // A HEIC upload elsewhere in the process starts and stops libheif;
        // the last stop used to unregister the AVIF encoder for libvips too.
        let png = encoded(40, 40, image::ImageFormat::Png);
        run(&png, Format::Png, "format=avif");
        drop(libheif_rs::LibHeif::new());
        let out = run(&png, Format::Png, "format=avif");
        assert_eq!(&out.bytes[4..8], b"ftyp");
    }

    #[test]
    fn limits_refuse_before_decoding() {
        let png = encoded(100, 100, image::ImageFormat::Png);
        let tight = Limits { max_input_pixels: 9_999, max_output_pixels: 25_000_000 };
        let e = transform(&png, Format::Png, &variant("w=10", Format::Png), &tight).unwrap_err();
        assert!(matches!(e, TransformError::TooLarge { what: "the original", .. }), "{e}");
        let small_out = Limits { max_input_pixels: 1_000_000, max_output_pixels: 1_000 };
        let e = transform(&png, Format::Png, &variant("w=50", Format::Png), &small_out).unwrap_err();
        assert!(matches!(e, TransformError::TooLarge { what: "the output", .. }), "{e}");
        assert!(transform(b"not an image", Format::Png, &variant("w=5", Format::Png), &Limits::default()).is_err());
    }
}
