//! The gate: [`inspect`] (what the bytes are, whether we accept them, what
//! to store) and [`probe`] (format and header size only). The rules are on
//! the crate page; each container's walk is in its own module.

use std::io::Cursor;

use image::ImageDecoder;
use imgcdn_shared::Format;

use crate::bytes::{le_u16, le_u32};
use crate::types::{check_not_empty, check_pixels, malformed};
pub use crate::types::{InspectError, Inspected, Limits};
use crate::{gif, heic, ico, isobmff, jpeg, png, svg, webp};

/// Find out what `bytes` are, refuse what we do not accept, and return what
/// to store. Only the bytes are looked at. See the crate docs for the rules.
///
/// CPU-bound (it decodes the whole image): call it from
/// `tokio::task::spawn_blocking`, not on an async worker.
pub fn inspect(bytes: Vec<u8>, limits: &Limits) -> Result<Inspected, InspectError> {
    inspect_keeping(bytes, limits, None).map(|(inspected, _)| inspected)
}

/// Decoded pixels, 3 bytes (RGB) each, row by row.
pub struct Pixels {
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<u8>,
}

/// [`inspect`], also handing back the decoded pixels (RGB8, scaled down
/// to at most `max_side` on the longer side) for classifiers: the image
/// is decoded once. `None` for formats that are not decoded here (SVG,
/// AVIF).
pub fn inspect_with_pixels(
    bytes: Vec<u8>,
    limits: &Limits,
    max_side: u32,
) -> Result<(Inspected, Option<Pixels>), InspectError> {
    inspect_keeping(bytes, limits, Some(max_side))
}

fn inspect_keeping(
    bytes: Vec<u8>,
    limits: &Limits,
    keep: Option<u32>,
) -> Result<(Inspected, Option<Pixels>), InspectError> {
    let format = match detect(&bytes) {
        // Stored and served as JPEG (see `heic`): its pixels are those of the JPEG.
        Err(InspectError::Heic) => return heic_keeping(&bytes, limits, keep),
        other => other?,
    };
    match format {
        Format::Svg => svg::inspect(bytes, limits).map(|i| (i, None)),
        Format::Avif => {
            let (width, height) = match isobmff::avif_size(&bytes) {
                Err(InspectError::Heic) => return heic_keeping(&bytes, limits, keep),
                other => other?,
            };
            check_pixels(width, height, limits)?;
            Ok((Inspected { format, width, height, bytes, metadata_stripped: false }, None))
        }
        Format::Jpeg | Format::Png | Format::Gif | Format::Webp | Format::Bmp | Format::Ico => {
            // Strip first, then check and decode what we will store: the
            // strippers only walk the container (no pixel buffers), so a
            // bomb still fails on its header before any decoding.
            let stored = match format {
                Format::Jpeg => jpeg::strip(&bytes)?,
                Format::Png => png::strip(&bytes)?,
                Format::Gif => gif::strip(&bytes)?,
                Format::Webp => webp::strip(&bytes)?,
                Format::Ico => ico::strip(&bytes)?,
                _ => bytes,
            };
            let image = decode(format, &stored, limits)?;
            // The size it is shown at: a JPEG turned a quarter by its Exif
            // orientation (kept) shows its height as its width.
            let (width, height) = match format {
                Format::Jpeg if matches!(jpeg::kept_orientation(&stored), 5..=8) => (image.height(), image.width()),
                _ => (image.width(), image.height()),
            };
            let pixels = keep.map(|max_side| scaled_rgb(&image, max_side));
            drop(image);
            Ok((Inspected { format, width, height, bytes: stored, metadata_stripped: true }, pixels))
        }
    }
}

fn heic_keeping(bytes: &[u8], limits: &Limits, keep: Option<u32>) -> Result<(Inspected, Option<Pixels>), InspectError> {
    let inspected = heic::to_jpeg(bytes, limits)?;
    let pixels = match keep {
        Some(max_side) => {
            let image = image::load_from_memory_with_format(&inspected.bytes, image::ImageFormat::Jpeg)
                .map_err(decode_error)?;
            Some(scaled_rgb(&image, max_side))
        }
        None => None,
    };
    Ok((inspected, pixels))
}

/// RGB8, scaled down (never up) so the longer side is at most `max_side`.
fn scaled_rgb(image: &image::DynamicImage, max_side: u32) -> Pixels {
    let (w, h) = (image.width(), image.height());
    let rgb = if w.max(h) > max_side {
        let f = f64::from(max_side) / f64::from(w.max(h));
        let (nw, nh) = (((f64::from(w) * f).round() as u32).max(1), ((f64::from(h) * f).round() as u32).max(1));
        image::DynamicImage::ImageRgba8(image::imageops::thumbnail(image, nw, nh)).to_rgb8()
    } else {
        image.to_rgb8()
    };
    Pixels { width: rgb.width(), height: rgb.height(), rgb: rgb.into_raw() }
}

/// The format of `bytes` and the size its header declares, the size
/// [`inspect`] would report, without decoding pixels or stripping anything:
/// cheap, for tools that only need the header.
///
/// Not a gate: it applies none of the rules of [`inspect`] beyond reading
/// the header (no pixel limit, no check that the image data is complete, no
/// SVG safety check: for SVG only the root element is read). Bytes to store
/// or serve go through [`inspect`].
///
/// HEIC/HEIF is [`InspectError::Heic`] with or without the `heic` feature:
/// there is no HEIC [`Format`] ([`inspect`] converts it to JPEG, which
/// `probe` does not do). A header that declares no pixels (a zero width or
/// height) is [`InspectError::Malformed`].
pub fn probe(bytes: &[u8]) -> Result<(Format, u32, u32), InspectError> {
    let format = detect(bytes)?;
    let (width, height) = match format {
        Format::Svg => svg::root_size_only(bytes)?,
        Format::Avif => isobmff::avif_size(bytes)?,
        Format::Jpeg | Format::Png | Format::Gif | Format::Webp | Format::Bmp | Format::Ico => {
            // `image`'s default limits (512 MiB) only bound what reading a
            // header may buffer (ICC profiles, text chunks): nothing here
            // allocates pixels.
            raster_decoder(format, bytes, image::Limits::default())?.dimensions()
        }
    };
    check_not_empty(width, height)?;
    Ok((format, width, height))
}

const MIB: u64 = 1024 * 1024;

/// About how many bytes of memory [`inspect`] needs at its peak for
/// `bytes`, from the header alone (no pixel is decoded): the decoded image
/// at its real bit depth and channel count (a 16-bit RGBA PNG costs 8 bytes
/// a pixel, a greyscale one 1), plus the decoder's working buffers; for
/// HEIC also the YUV planes and the RGB copy. A caller that bounds the
/// memory of concurrent decodes reserves this much before calling
/// [`inspect`], which never lets a decoder allocate more than the raster
/// part of it.
pub fn decode_cost(bytes: &[u8]) -> Result<u64, InspectError> {
    match detect(bytes) {
        Err(InspectError::Heic) => heic::decode_cost(bytes),
        Err(e) => Err(e),
        // Parsed as text: the document and its events.
        Ok(Format::Svg) => Ok(bytes.len() as u64 * 2 + MIB),
        Ok(Format::Avif) => match isobmff::avif_size(bytes) {
            Err(InspectError::Heic) => heic::decode_cost(bytes),
            Err(e) => Err(e),
            // Validated as a container only.
            Ok(_) => Ok(MIB),
        },
        Ok(format) => {
            let decoder = raster_decoder(format, bytes, image::Limits::default())?;
            let (width, height) = decoder.dimensions();
            Ok(raster_cost(format, width, height, decoder.color_type().bytes_per_pixel()))
        }
    }
}

/// The decoded image at its depth and channel count, the decoder's own
/// buffers (for JPEG the 16-bit coefficients of every component, which a
/// progressive image keeps whole: twice the output; for the others up to
/// one more frame: canvas, deinterlacing, palettes), and a fixed margin.
fn raster_cost(format: Format, width: u32, height: u32, bytes_per_pixel: u8) -> u64 {
    let pixels = u64::from(width) * u64::from(height) * u64::from(bytes_per_pixel);
    let factor = if format == Format::Jpeg { 3 } else { 2 };
    pixels * factor + 4 * MIB
}

/// The format of `b`, from its magic numbers and structure.
pub(crate) fn detect(b: &[u8]) -> Result<Format, InspectError> {
    if b.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Ok(Format::Jpeg);
    }
    if b.starts_with(&png::SIGNATURE) {
        return Ok(Format::Png);
    }
    if b.starts_with(b"GIF87a") || b.starts_with(b"GIF89a") {
        return Ok(Format::Gif);
    }
    if b.len() >= 12 && b.starts_with(b"RIFF") && &b[8..12] == b"WEBP" {
        return Ok(Format::Webp);
    }
    if let Some(family) = isobmff::family(b) {
        return match family {
            isobmff::Family::Avif => Ok(Format::Avif),
            isobmff::Family::Heif => Err(InspectError::Heic),
            isobmff::Family::Other => Err(InspectError::Unsupported),
        };
    }
    // "BM" alone is too weak a signature (text can start with it): also
    // require one of the known DIB header sizes.
    if b.starts_with(b"BM") && b.len() >= 18 && matches!(le_u32(&b[14..18]), 12 | 16 | 40 | 52 | 56 | 64 | 108 | 124) {
        return Ok(Format::Bmp);
    }
    // ICO: reserved 0, type 1, at least one icon whose entry looks like one
    // (reserved byte 0, 0 or 1 colour planes): four zero-ish bytes alone
    // would match many binary files.
    if b.len() >= 22 && b.starts_with(&[0, 0, 1, 0]) && le_u16(&b[4..6]) > 0 && b[9] == 0 && le_u16(&b[10..12]) <= 1 {
        return Ok(Format::Ico);
    }
    if svg::looks_like_xml(b) {
        // Whether the root is <svg> is decided while parsing it.
        return Ok(Format::Svg);
    }
    Err(InspectError::Unsupported)
}

/// Read the header with `image`, check the size, then decode the whole
/// (first) image under memory limits. Returns the size.
fn decode(format: Format, bytes: &[u8], limits: &Limits) -> Result<image::DynamicImage, InspectError> {
    let mut decoder = raster_decoder(format, bytes, image::Limits::default())?;
    let (width, height) = decoder.dimensions();
    // The pixel count is checked by us, from the header, before decoding.
    check_pixels(width, height, limits)?;
    // No allocation past what `decode_cost` told the caller to reserve: the
    // image at its real depth and channel count, plus working buffers.
    let mut decoder_limits = image::Limits::default();
    decoder_limits.max_alloc = Some(raster_cost(format, width, height, decoder.color_type().bytes_per_pixel()));
    decoder.set_limits(decoder_limits).map_err(decode_error)?;
    image::DynamicImage::from_decoder(decoder).map_err(decode_error)
}

/// `image`'s decoder for a raster format, with only its header read.
fn raster_decoder(
    format: Format,
    bytes: &[u8],
    decoder_limits: image::Limits,
) -> Result<impl ImageDecoder + '_, InspectError> {
    let image_format = match format {
        Format::Jpeg => image::ImageFormat::Jpeg,
        Format::Png => image::ImageFormat::Png,
        Format::Gif => image::ImageFormat::Gif,
        Format::Webp => image::ImageFormat::WebP,
        Format::Bmp => image::ImageFormat::Bmp,
        Format::Ico => image::ImageFormat::Ico,
        // Never called for these: AVIF has no decoder here, SVG is not
        // raster.
        Format::Avif | Format::Svg => return Err(InspectError::Unsupported),
    };
    let mut reader = image::ImageReader::with_format(Cursor::new(bytes), image_format);
    reader.limits(decoder_limits);
    // Building the decoder reads the header only.
    reader.into_decoder().map_err(decode_error)
}

fn decode_error(e: image::ImageError) -> InspectError {
    match e {
        image::ImageError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            malformed("the file ends too early (truncated?)")
        }
        image::ImageError::Limits(e) => malformed(format!("it needs more memory to decode than we allow ({e})")),
        image::ImageError::Unsupported(e) => {
            malformed(format!("it uses a variant of its format we cannot decode ({e})"))
        }
        e => malformed(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::testutil::*;

    #[test]
    fn pixels_come_back_scaled_down_for_classifiers() {
        let (inspected, pixels) = inspect_with_pixels(png(400, 100), &Limits::default(), 200).unwrap();
        assert_eq!((inspected.width, inspected.height), (400, 100));
        let p = pixels.unwrap();
        assert_eq!((p.width, p.height, p.rgb.len()), (200, 50, 200 * 50 * 3));
        let (_, small) = inspect_with_pixels(png(40, 30), &Limits::default(), 200).unwrap();
        assert_eq!(small.map(|p| (p.width, p.height)), Some((40, 30)));
        let svg = br#"<svg xmlns="http://www.w3.org/2000/svg" width="4" height="3"/>"#.to_vec();
        assert!(inspect_with_pixels(svg, &Limits::default(), 200).unwrap().1.is_none());
    }

    #[test]
    fn decode_cost_counts_bit_depth_and_channels_from_the_header() {
        use image::{ImageBuffer, Luma, Rgba};
        let encode = |img: image::DynamicImage| {
            let mut out = Vec::new();
            img.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png).unwrap();
            out
        };
        let grey8 = encode(image::DynamicImage::ImageLuma8(ImageBuffer::<Luma<u8>, _>::new(1000, 1000)));
        let rgba16 = encode(image::DynamicImage::ImageRgba16(ImageBuffer::<Rgba<u16>, _>::new(1000, 1000)));
        let (g, r) = (decode_cost(&grey8).unwrap(), decode_cost(&rgba16).unwrap());
        // 1 byte a pixel against 8: the 16-bit RGBA image costs 8 times the pixels.
        assert_eq!(g, raster_cost(Format::Png, 1000, 1000, 1));
        assert_eq!(r, raster_cost(Format::Png, 1000, 1000, 8));
        assert!(r >= 16_000_000 && g < 7_000_000, "{g} {r}");
        // Both still decode within what they declared.
        inspect(rgba16, &Limits::default()).unwrap();
        assert!(decode_cost(b"hello").is_err());
    }

    #[test]
    fn detects_each_accepted_format_from_its_bytes() {
        let cases: [(Vec<u8>, Format); 8] = [
            (jpeg(40, 30), Format::Jpeg),
            (png(40, 30), Format::Png),
            (gif(40, 30), Format::Gif),
            (webp(40, 30), Format::Webp),
            (bmp(40, 30), Format::Bmp),
            (ico(40, 30), Format::Ico),
            (avif(40, 30, b"av01"), Format::Avif),
            (br#"<svg xmlns="http://www.w3.org/2000/svg" width="40" height="30"/>"#.to_vec(), Format::Svg),
        ];
        for (bytes, format) in cases {
            let out = inspect_default(&bytes).unwrap_or_else(|e| panic!("{format:?}: {e}"));
            assert_eq!(out.format, format);
            assert_eq!((out.width, out.height), (40, 30), "{format:?}");
        }
    }

    #[test]
    fn only_the_bytes_decide_the_format_not_the_file_name() {
        // What an upload handler gets: a file called cat.png that is a JPEG.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cat.png");
        std::fs::write(&path, jpeg(16, 16)).unwrap();
        let out = inspect_default(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(out.format, Format::Jpeg);
    }

    #[test]
    fn random_bytes_pdf_html_and_video_are_unsupported() {
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let random: Vec<u8> = (0..4096)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect();
        let mp4 = [ftyp(b"isom", &[b"isom", b"mp41"]), isobmff_box(b"mdat", &[0; 8])].concat();
        let cases: [(&str, &[u8]); 6] = [
            ("random", &random),
            ("empty", b""),
            ("pdf", b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n"),
            (
                "html",
                b"<!DOCTYPE html>\n<html><head><title>x</title></head><body><img src=x onerror=alert(1)></body></html>",
            ),
            ("xml", b"<?xml version=\"1.0\"?><feed><title>not an image</title></feed>"),
            ("mp4", &mp4),
        ];
        for (name, bytes) in cases {
            let result = inspect_default(bytes);
            assert!(matches!(result, Err(InspectError::Unsupported)), "{name}: {result:?}");
        }
    }

    #[test]
    fn truncated_or_corrupt_files_are_malformed() {
        let png = png(40, 30);
        let jpeg = jpeg(40, 30);
        let mut bad_crc = png.clone();
        bad_crc[45] ^= 0xFF;
        // A JPEG whose frame header says it has no colour components.
        let mut bad_frame = jpeg.clone();
        let sof = jpeg_segment_at(&jpeg, 0xC0);
        bad_frame[sof + 5] = 0;
        let gif = gif(40, 30);
        let webp = webp(40, 30);
        let avif = avif(40, 30, b"av01");
        let cases: [(&str, &[u8]); 9] = [
            ("truncated png", &png[..png.len() - 20]),
            ("png with a bad crc", &bad_crc),
            ("truncated jpeg", &jpeg[..jpeg.len() / 2]),
            ("jpeg without its end", &jpeg[..jpeg.len() - 2]),
            ("corrupt jpeg frame header", &bad_frame),
            ("truncated gif", &gif[..gif.len() / 2]),
            ("truncated webp", &webp[..webp.len() - 10]),
            ("truncated avif", &avif[..avif.len() - 4]),
            ("truncated bmp", &bmp(40, 30)[..100]),
        ];
        for (name, bytes) in cases {
            let result = inspect_default(bytes);
            assert!(matches!(result, Err(InspectError::Malformed(_))), "{name}: {result:?}");
        }
    }

    #[test]
    fn too_many_pixels_is_checked_for_every_format() {
        let limits = Limits { max_pixels: 40 * 30 - 1, ..Limits::default() };
        let mut jpeg_bomb = jpeg(40, 30);
        let sof = jpeg_segment_at(&jpeg_bomb, 0xC0);
        jpeg_bomb[sof + 1..sof + 5].copy_from_slice(&[0xFD, 0xE8, 0xFD, 0xE8]);
        let cases = [
            png(40, 30),
            jpeg(40, 30),
            gif(40, 30),
            webp(40, 30),
            bmp(40, 30),
            ico(40, 30),
            avif(40, 30, b"av01"),
            br#"<svg xmlns="http://www.w3.org/2000/svg" width="40" height="30"/>"#.to_vec(),
        ];
        for bytes in cases {
            let result = inspect(bytes, &limits);
            assert!(matches!(result, Err(InspectError::TooManyPixels { width: 40, height: 30, .. })), "{result:?}");
        }
        let result = inspect_default(&jpeg_bomb);
        assert!(matches!(result, Err(InspectError::TooManyPixels { width: 65_000, height: 65_000, .. })), "{result:?}");
    }

    #[test]
    fn bmp_is_stored_as_uploaded() {
        let bmp = bmp(8, 8);
        let out = inspect_default(&bmp).unwrap();
        assert_eq!(out.bytes, bmp);
        assert!(out.metadata_stripped, "BMP has no metadata to strip");
    }

    #[test]
    fn probe_gives_the_format_and_the_size_inspect_gives() {
        let cases: [(Vec<u8>, Format); 8] = [
            (jpeg(40, 30), Format::Jpeg),
            (png(40, 30), Format::Png),
            (gif(40, 30), Format::Gif),
            (webp(40, 30), Format::Webp),
            (bmp(40, 30), Format::Bmp),
            (ico(40, 30), Format::Ico),
            (avif(40, 30, b"av01"), Format::Avif),
            (br#"<svg xmlns="http://www.w3.org/2000/svg" width="40" height="30"/>"#.to_vec(), Format::Svg),
        ];
        for (bytes, format) in cases {
            let probed = probe(&bytes).unwrap_or_else(|e| panic!("{format:?}: {e}"));
            assert_eq!(probed, (format, 40, 30));
            let out = inspect_default(&bytes).unwrap();
            assert_eq!((out.format, out.width, out.height), probed, "{format:?}");
        }
        // Metadata that inspect strips does not change the size.
        let with_text = png_with(&png(12, 7), &[png_chunk(b"tEXt", b"Comment\0SECRET")]);
        assert_eq!(probe(&with_text).unwrap(), (Format::Png, 12, 7));
        let svg = br#"<?xml version="1.0"?><!-- x --><svg xmlns="http://www.w3.org/2000/svg" height="10mm"><g/></svg>"#;
        assert_eq!(probe(svg).unwrap(), (Format::Svg, 300, 38));
    }

    #[test]
    fn probe_reads_the_header_only() {
        // Bombs: the declared size, at once, with nothing allocated for it.
        let mut png_bomb = png(1, 1);
        png_bomb[16..20].copy_from_slice(&60_000u32.to_be_bytes());
        png_bomb[20..24].copy_from_slice(&60_000u32.to_be_bytes());
        let crc = crc32fast::hash(&png_bomb[12..29]);
        png_bomb[29..33].copy_from_slice(&crc.to_be_bytes());
        let mut jpeg_bomb = jpeg(40, 30);
        let sof = jpeg_segment_at(&jpeg_bomb, 0xC0);
        jpeg_bomb[sof + 1..sof + 5].copy_from_slice(&[0xFD, 0xE8, 0xFD, 0xE8]);
        let started = Instant::now();
        assert_eq!(probe(&png_bomb).unwrap(), (Format::Png, 60_000, 60_000));
        assert_eq!(probe(&jpeg_bomb).unwrap(), (Format::Jpeg, 65_000, 65_000));
        assert!(started.elapsed() < Duration::from_secs(1), "took {:?}", started.elapsed());
        // Image data is not read: a JPEG cut in the middle of its scan has
        // a complete header (inspect refuses it).
        let jpeg = jpeg(200, 150);
        let cut = &jpeg[..jpeg.len() * 3 / 4];
        assert!(cut.len() > jpeg_segment_at(&jpeg, 0xDA) + 1000, "the cut is inside the scan");
        assert_eq!(probe(cut).unwrap(), (Format::Jpeg, 200, 150));
        assert!(matches!(inspect_default(cut), Err(InspectError::Malformed(_))));
    }

    #[test]
    fn probe_refuses_what_inspect_refuses_from_the_header() {
        let mp4 = [ftyp(b"isom", &[b"isom", b"mp41"]), isobmff_box(b"mdat", &[0; 8])].concat();
        let not_images: [&[u8]; 5] = [
            b"",
            b"%PDF-1.7\n%%EOF\n",
            b"<!DOCTYPE html>\n<html><body>x</body></html>",
            b"<?xml version=\"1.0\"?><feed><title>not an image</title></feed>",
            &mp4,
        ];
        for bytes in not_images {
            let result = probe(bytes);
            assert!(
                matches!(result, Err(InspectError::Unsupported)),
                "{:?}: {result:?}",
                String::from_utf8_lossy(bytes)
            );
        }
        // HEIC has no Format: probe says so whether or not it could convert.
        let heic = [ftyp(b"heic", &[b"mif1", b"heic"]), isobmff_box(b"mdat", &[0; 8])].concat();
        for bytes in [heic, avif(40, 30, b"hvc1")] {
            let result = probe(&bytes);
            assert!(matches!(result, Err(InspectError::Heic)), "{result:?}");
        }
        let png = png(40, 30);
        let avif = avif(40, 30, b"av01");
        let damaged: [(&str, &[u8]); 5] = [
            ("png cut in its header", &png[..20]),
            ("jpeg cut in its header", &jpeg(40, 30)[..30]),
            ("gif cut in its header", &gif(40, 30)[..8]),
            ("avif without its data", &avif[..avif.len() - 4]),
            ("svg without pixels", br#"<svg xmlns="http://www.w3.org/2000/svg" width="0" height="10"/>"#),
        ];
        for (name, bytes) in damaged {
            let result = probe(bytes);
            assert!(matches!(result, Err(InspectError::Malformed(_))), "{name}: {result:?}");
        }
    }
}
