//! HEIC/HEIF uploads (what iPhones take by default), accepted by turning
//! them into JPEG: browsers outside Safari cannot show HEIC, and decoding
//! then re-encoding drops every metadata block (Exif with GPS, XMP) on the
//! way. Orientation (`irot`/`imir`) and cropping (`clap`) are applied by
//! libheif while decoding, so the JPEG looks the way the photo did.
//!
//! The size is read from the container and checked against the pixel limit
//! before any pixel is decoded, like every other format. Decoding uses the
//! system libheif (Debian: `libheif-dev`), behind the default `heic` cargo
//! feature; a build without it refuses HEIC with a clear message.

#[cfg(feature = "heic")]
use crate::types::check_pixels;
use crate::types::{InspectError, Inspected, Limits};

/// JPEG quality of the converted photo: visually lossless for photos at
/// about a third of the size of quality 100.
#[cfg(feature = "heic")]
const JPEG_QUALITY: u8 = 90;

/// libheif, initialised once for the life of the process. Every
/// `LibHeif` de-initialises libheif when dropped, and the last one to go
/// unregisters its encoders and decoders for everyone in the process —
/// libvips's AVIF saver (the edge's transforms) included. This one is never
/// dropped.
#[cfg(feature = "heic")]
pub fn lib() -> &'static libheif_rs::LibHeif {
    static LIB: std::sync::OnceLock<libheif_rs::LibHeif> = std::sync::OnceLock::new();
    LIB.get_or_init(libheif_rs::LibHeif::new)
}

/// The photo as a JPEG without its metadata, after the pixel check.
/// [`inspect`](crate::inspect()) calls this for HEIC/HEIF files.
#[cfg(feature = "heic")]
pub fn to_jpeg(bytes: &[u8], limits: &Limits) -> Result<Inspected, InspectError> {
    use libheif_rs::{ColorSpace, HeifContext, RgbChroma};

    let bad = |e: libheif_rs::HeifError| InspectError::Malformed(format!("HEIC: {}", e.message));
    let ctx = HeifContext::read_from_bytes(bytes).map_err(bad)?;
    let handle = ctx.primary_image_handle().map_err(bad)?;
    check_pixels(handle.width(), handle.height(), limits)?;
    let image = lib().decode(&handle, ColorSpace::Rgb(RgbChroma::Rgb), None).map_err(bad)?;
    let plane = image
        .planes()
        .interleaved
        .ok_or_else(|| InspectError::Malformed("HEIC: no RGB image after decoding".into()))?;
    let (width, height) = (plane.width, plane.height);
    check_pixels(width, height, limits)?;
    let row = width as usize * 3;
    if plane.stride < row || plane.data.len() < plane.stride * (height as usize - 1) + row {
        return Err(InspectError::Malformed("HEIC: decoded image has an unexpected layout".into()));
    }
    let mut rgb = Vec::with_capacity(row * height as usize);
    for y in 0..height as usize {
        rgb.extend_from_slice(&plane.data[y * plane.stride..y * plane.stride + row]);
    }
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, JPEG_QUALITY)
        .encode(&rgb, width, height, image::ExtendedColorType::Rgb8)
        .map_err(|e| InspectError::Malformed(format!("HEIC: cannot convert to JPEG: {e}")))?;
    Ok(Inspected { format: imgcdn_shared::Format::Jpeg, width, height, bytes: jpeg, metadata_stripped: true })
}

/// Peak memory of [`to_jpeg`] for `bytes`, from the container alone:
/// libheif's YUV planes, its RGB image, our tightly packed copy and the JPEG
/// being written (about 8 bytes a pixel), plus a margin.
#[cfg(feature = "heic")]
pub fn decode_cost(bytes: &[u8]) -> Result<u64, InspectError> {
    let bad = |e: libheif_rs::HeifError| InspectError::Malformed(format!("HEIC: {}", e.message));
    let ctx = libheif_rs::HeifContext::read_from_bytes(bytes).map_err(bad)?;
    let handle = ctx.primary_image_handle().map_err(bad)?;
    Ok(u64::from(handle.width()) * u64::from(handle.height()) * 8 + 4 * 1024 * 1024)
}

/// Without the `heic` feature: always [`InspectError::Heic`].
#[cfg(not(feature = "heic"))]
pub fn decode_cost(_bytes: &[u8]) -> Result<u64, InspectError> {
    Err(InspectError::Heic)
}

/// Without the `heic` feature: always [`InspectError::Heic`].
#[cfg(not(feature = "heic"))]
pub fn to_jpeg(_bytes: &[u8], _limits: &Limits) -> Result<Inspected, InspectError> {
    Err(InspectError::Heic)
}

/// A real HEIC (HEVC via libheif's x265 encoder) for tests: a `w`×`h`
/// gradient (red grows left to right), with an Exif block carrying `exif`
/// when given.
#[cfg(feature = "heic")]
#[doc(hidden)]
pub fn sample_heic(w: u32, h: u32, exif: Option<&[u8]>) -> Vec<u8> {
    use libheif_rs::{Channel, ColorSpace, CompressionFormat, EncodingOptions, HeifContext, Image, RgbChroma};
    let lib = lib();
    let mut image = Image::new(w, h, ColorSpace::Rgb(RgbChroma::Rgb)).unwrap();
    image.create_plane(Channel::Interleaved, w, h, 8).unwrap();
    let planes = image.planes_mut();
    let plane = planes.interleaved.unwrap();
    for y in 0..h as usize {
        for x in 0..w as usize {
            let p = y * plane.stride + x * 3;
            plane.data[p..p + 3].copy_from_slice(&[(x * 255 / w as usize) as u8, (y * 255 / h as usize) as u8, 128]);
        }
    }
    let mut ctx = HeifContext::new().unwrap();
    let mut encoder = lib.encoder_for_format(CompressionFormat::Hevc).unwrap();
    encoder.set_quality(libheif_rs::EncoderQuality::Lossy(80)).unwrap();
    let handle = ctx.encode_image(&image, &mut encoder, Some(EncodingOptions::new().unwrap())).unwrap();
    if let Some(exif) = exif {
        ctx.add_exif_metadata(&handle, exif).unwrap();
    }
    ctx.write_to_bytes().unwrap()
}

#[cfg(all(test, feature = "heic"))]
mod tests {
    use super::*;

    fn heic(w: u32, h: u32, exif: Option<&[u8]>) -> Vec<u8> {
        sample_heic(w, h, exif)
    }

    fn limits() -> Limits {
        Limits { max_pixels: 1_000_000, max_svg_bytes: 1 << 20 }
    }

    #[test]
    fn heic_becomes_a_jpeg_without_its_metadata() {
        let exif = b"Exif\0\0MM\0*\0\0\0\x08GPS 51.5074N 0.1278W secret place";
        let file = heic(64, 48, Some(exif));
        assert!(file.windows(12).any(|w| w == b"secret place"), "the fixture carries the Exif block");
        let out = to_jpeg(&file, &limits()).unwrap();
        assert_eq!(out.format, imgcdn_shared::Format::Jpeg);
        assert_eq!((out.width, out.height), (64, 48));
        assert!(out.metadata_stripped);
        assert!(!out.bytes.windows(12).any(|w| w == b"secret place"), "Exif/GPS must not survive");
        let decoded = image::load_from_memory_with_format(&out.bytes, image::ImageFormat::Jpeg).unwrap().to_rgb8();
        assert_eq!(decoded.dimensions(), (64, 48));
        // The gradient survives (red grows left to right): it is the photo, not a blank.
        let (left, right) = (decoded.get_pixel(2, 24)[0], decoded.get_pixel(61, 24)[0]);
        assert!(right > left + 150, "left {left}, right {right}");
    }

    #[test]
    fn heic_over_the_pixel_limit_is_refused_before_decoding() {
        let small = Limits { max_pixels: 100, max_svg_bytes: 1 << 20 };
        let r = to_jpeg(&heic(16, 16, None), &small);
        assert!(matches!(r, Err(InspectError::TooManyPixels { width: 16, height: 16, .. })), "{r:?}");
    }

    #[test]
    fn damaged_heic_is_refused_clearly() {
        let file = heic(32, 32, None);
        for cut in [file.len() / 2, 40] {
            let r = to_jpeg(&file[..cut], &limits());
            assert!(matches!(r, Err(InspectError::Malformed(_))), "cut at {cut}: {r:?}");
        }
    }
}
