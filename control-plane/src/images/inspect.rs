//! Inspection of uploaded bytes: which image format they really are, how
//! large the image is, whether we accept it, and the bytes to store.
//!
//! [`inspect`] is the one gate between an upload (or an import) and storage.
//! It owns these rules:
//!
//! - **The format comes from the bytes** (magic numbers and structure), never
//!   from a file name or a declared content type, so an upload cannot make
//!   the edge serve it under a type it is not. Accepted: JPEG, PNG, GIF,
//!   WebP, AVIF, SVG, BMP, ICO, and HEIC/HEIF, which is converted to JPEG
//!   (see [`super::heic`]; without the `heic` feature it is refused with its
//!   own error, [`InspectError::Heic`]).
//! - **Decompression bombs are refused from the header**: the declared
//!   width × height is checked against [`Limits::max_pixels`] before any
//!   pixel is decoded or any pixel buffer allocated.
//! - **Raster formats we can decode are decoded in full** (JPEG, PNG, GIF,
//!   WebP, BMP, ICO; for GIF and animated WebP/PNG the first frame), under
//!   `image`'s memory limits, so a truncated or corrupt file is refused
//!   rather than stored. The bytes decoded are the bytes stored. AVIF is only
//!   validated as a container (header, primary item, its size, all item data
//!   inside the file): decoding AV1 needs dav1d, a C library.
//! - **Camera/GPS metadata is stripped without touching pixels** (no
//!   re-encoding, so no quality loss):
//!   - JPEG: Exif and XMP (APP1), IPTC/Photoshop (APP13), comments (COM),
//!     every other application segment and anything after the end of the
//!     image (where phones append Multi-Picture/gain-map images with their
//!     own Exif) are dropped. Kept: APP0 JFIF/JFXX, APP2 ICC profiles and
//!     APP14 Adobe (it says how colours are encoded). An Exif orientation
//!     other than 1 is kept as a new minimal Exif holding only that tag, so
//!     photos from phones are not shown rotated.
//!   - PNG: `eXIf`, `tEXt`, `zTXt`, `iTXt`, `tIME`, `caBX` (C2PA manifests,
//!     which can carry Exif and location) and `dSIG` (a signature that no
//!     longer matches) chunks and anything after `IEND` are dropped; colour
//!     chunks (`iCCP`, `gAMA`, `cHRM`, `sRGB`), `pHYs`, APNG chunks and
//!     unknown chunks are kept byte for byte, so every CRC stays valid.
//!   - WebP: `EXIF` and `XMP ` chunks are dropped from the RIFF container,
//!     the RIFF size is rewritten and the Exif/XMP flags in `VP8X` cleared.
//!   - GIF: comment extensions and application extensions other than the
//!     `NETSCAPE2.0`/`ANIMEXTS1.0` loop count are dropped (this includes XMP
//!     and ICC application extensions), as is anything after the trailer.
//!   - ICO: PNG-compressed icons are stripped as PNG and the directory is
//!     rewritten; BMP-style icons carry no metadata.
//!   - BMP carries no camera metadata: stored as uploaded.
//!   - AVIF: stored as uploaded, [`Inspected::metadata_stripped`] is false.
//!     Exif and XMP are items located by offsets in `iloc`; removing them
//!     means rewriting the container, which we do not do without a decoder
//!     to check the result.
//!   - SVG: stored as uploaded, [`Inspected::metadata_stripped`] is false
//!     (`<metadata>` elements are kept). SVG carries no camera data but can
//!     carry script, so it is checked instead (next point).
//! - **SVG must be safe to serve from our origin**: at most
//!   [`Limits::max_svg_bytes`], UTF-8, well-formed XML with an `<svg>` root,
//!   and none of: `<script>`, `<foreignObject>`, `<iframe>`, `<embed>`,
//!   `<object>` (and other HTML elements that load or run things), `on*`
//!   event-handler attributes, animations that set `href` or an event
//!   handler, an internal DTD subset (entities: XXE and billion laughs; a
//!   plain `<!DOCTYPE svg PUBLIC …>` is fine), `xml-stylesheet` processing
//!   instructions, CSS `@import`, and references that leave the document:
//!   `href`s and CSS `url()`s must point inside it (`#id`) or be embedded
//!   raster images or fonts (`data:image/png`, …). The edge also serves SVG
//!   with a sandboxing CSP; this is defence in depth.
//!
//! Width and height are the stored image's, as its header declares them
//! (for JPEG before any Exif rotation is applied; for GIF the logical
//! screen; for ICO the icon `image` decodes, the largest; for SVG the
//! `width`/`height` attributes in CSS pixels, else the `viewBox`, else the
//! SVG default of 300 × 150).

use std::fmt;
use std::io::Cursor;

use imgcdn_shared::Format;

/// What [`inspect`] accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest width × height accepted, checked from the header before
    /// decoding.
    pub max_pixels: u64,
    /// Largest SVG document, in bytes (the plan's file-size limit applies to
    /// everything else and is enforced while the upload streams in).
    pub max_svg_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { max_pixels: 100_000_000, max_svg_bytes: 10 * 1024 * 1024 }
    }
}

/// An accepted image and the bytes to store for it.
#[derive(Clone, PartialEq, Eq)]
pub struct Inspected {
    /// The format found in the bytes; the one the edge serves it as.
    pub format: Format,
    pub width: u32,
    pub height: u32,
    /// What to store: the upload with metadata stripped where that can be
    /// done losslessly (see the module docs), else the upload as it came.
    pub bytes: Vec<u8>,
    /// True when the stored bytes carry no Exif/XMP/IPTC/text metadata:
    /// we removed it (JPEG, PNG, WebP, GIF, ICO) or the format has no place
    /// for it (BMP). False for AVIF and SVG, which are stored unedited.
    pub metadata_stripped: bool,
}

// By hand, so that logging an `Inspected` does not print megabytes.
impl fmt::Debug for Inspected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inspected")
            .field("format", &self.format)
            .field("width", &self.width)
            .field("height", &self.height)
            .field("bytes", &format_args!("[{} bytes]", self.bytes.len()))
            .field("metadata_stripped", &self.metadata_stripped)
            .finish()
    }
}

/// Why an upload is refused. The messages are written for the uploader.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("not an image format we accept (accepted: JPEG, PNG, GIF, WebP, AVIF, HEIC, SVG, BMP, ICO)")]
    Unsupported,
    #[error(
        "HEIC/HEIF images are not accepted by this server; please upload JPEG, PNG or WebP \
         (on an iPhone: Settings > Camera > Formats > Most Compatible)"
    )]
    Heic,
    #[error("the image is damaged or incomplete: {0}")]
    Malformed(String),
    #[error("the image is {width}x{height} pixels; at most {max_pixels} pixels are accepted")]
    TooManyPixels { width: u32, height: u32, max_pixels: u64 },
    #[error("this SVG is not accepted: {0}")]
    UnsafeSvg(String),
}

/// Find out what `bytes` are, refuse what we do not accept, and return what
/// to store. Only the bytes are looked at. See the module docs for the rules.
///
/// CPU-bound (it decodes the whole image): call it from
/// `tokio::task::spawn_blocking`, not on an async worker.
pub fn inspect(bytes: Vec<u8>, limits: &Limits) -> Result<Inspected, InspectError> {
    let format = match detect(&bytes) {
        // Stored and served as JPEG (see `heic`).
        Err(InspectError::Heic) => return super::heic::to_jpeg(&bytes, limits),
        other => other?,
    };
    match format {
        Format::Svg => svg::inspect(bytes, limits),
        Format::Avif => {
            let (width, height) = match isobmff::avif_size(&bytes) {
                Err(InspectError::Heic) => return super::heic::to_jpeg(&bytes, limits),
                other => other?,
            };
            check_pixels(width, height, limits)?;
            Ok(Inspected { format, width, height, bytes, metadata_stripped: false })
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
            let (width, height) = decode(format, &stored, limits)?;
            Ok(Inspected { format, width, height, bytes: stored, metadata_stripped: true })
        }
    }
}

/// The format of `b`, from its magic numbers and structure.
fn detect(b: &[u8]) -> Result<Format, InspectError> {
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

pub(super) fn check_pixels(width: u32, height: u32, limits: &Limits) -> Result<(), InspectError> {
    if width == 0 || height == 0 {
        return Err(malformed(format!("the image has no pixels ({width}x{height})")));
    }
    if u64::from(width) * u64::from(height) > limits.max_pixels {
        return Err(InspectError::TooManyPixels { width, height, max_pixels: limits.max_pixels });
    }
    Ok(())
}

/// Read the header with `image`, check the size, then decode the whole
/// (first) image under memory limits. Returns the size.
fn decode(format: Format, bytes: &[u8], limits: &Limits) -> Result<(u32, u32), InspectError> {
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
    let mut decoder_limits = image::Limits::default();
    // Room for the decoded image at 8 bytes a pixel (16-bit RGBA, the widest
    // output of these decoders) plus the decoders' working buffers. The pixel
    // count itself is checked by us, from the header, before decoding.
    decoder_limits.max_alloc = Some(limits.max_pixels.saturating_mul(8).saturating_add(64 * 1024 * 1024));
    let mut reader = image::ImageReader::with_format(Cursor::new(bytes), image_format);
    reader.limits(decoder_limits);
    // Building the decoder reads the header only.
    let decoder = reader.into_decoder().map_err(decode_error)?;
    let (width, height) = image::ImageDecoder::dimensions(&decoder);
    check_pixels(width, height, limits)?;
    image::DynamicImage::from_decoder(decoder).map_err(decode_error)?;
    Ok((width, height))
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

fn malformed(message: impl Into<String>) -> InspectError {
    InspectError::Malformed(message.into())
}

fn truncated(what: &str) -> InspectError {
    malformed(format!("{what}: the file ends too early (truncated?)"))
}

fn le_u16(b: &[u8]) -> u16 {
    u16::from_le_bytes([b[0], b[1]])
}

fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// JPEG: a walk over all segments, including those between and after the
/// scans of a progressive image.
mod jpeg {
    use super::{malformed, truncated, InspectError};

    const SOI: u8 = 0xD8;
    const EOI: u8 = 0xD9;
    const SOS: u8 = 0xDA;
    const APP0: u8 = 0xE0;
    const APP1: u8 = 0xE1;
    const APP2: u8 = 0xE2;
    const APP14: u8 = 0xEE;
    const APP15: u8 = 0xEF;
    const COM: u8 = 0xFE;
    const EXIF: &[u8] = b"Exif\0\0";
    const ORIENTATION_TAG: u16 = 0x0112;

    /// The JPEG without metadata segments (see the module docs), ending at
    /// its EOI marker. A file without one is refused: the decoder would
    /// fill the missing part with grey and we would store a broken image.
    pub(super) fn strip(b: &[u8]) -> Result<Vec<u8>, InspectError> {
        if !b.starts_with(&[0xFF, SOI]) {
            return Err(malformed("JPEG: no start-of-image marker"));
        }
        let mut out = Vec::with_capacity(b.len());
        out.extend_from_slice(&[0xFF, SOI]);
        let mut pos = 2;
        let mut exif_seen = false;
        loop {
            if b.get(pos) != Some(&0xFF) {
                return Err(match b.get(pos) {
                    None => truncated("JPEG"),
                    Some(_) => malformed(format!("JPEG: expected a marker at byte {pos}")),
                });
            }
            // Any number of 0xFF fill bytes may precede a marker code.
            while b.get(pos) == Some(&0xFF) {
                pos += 1;
            }
            let marker = *b.get(pos).ok_or_else(|| truncated("JPEG"))?;
            pos += 1;
            match marker {
                // Whatever follows the end of the image is not part of it.
                EOI => {
                    out.extend_from_slice(&[0xFF, EOI]);
                    return Ok(out);
                }
                // Markers without a length.
                0xD0..=0xD7 | 0x01 => {
                    out.extend_from_slice(&[0xFF, marker]);
                    continue;
                }
                0x00 | SOI => {
                    return Err(malformed(format!("JPEG: unexpected marker 0x{marker:02X} at byte {}", pos - 1)))
                }
                _ => {}
            }
            let len = b.get(pos..pos + 2).ok_or_else(|| truncated("JPEG"))?;
            let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
            if len < 2 {
                return Err(malformed("JPEG: a segment has an impossible length"));
            }
            let end = pos + len;
            let payload = b.get(pos + 2..end).ok_or_else(|| truncated("JPEG"))?;
            if marker == APP1 && payload.starts_with(EXIF) && !exif_seen {
                // The first Exif block is the image's own; its orientation
                // survives in a new, minimal Exif at the same place.
                exif_seen = true;
                if let Some(orientation) = exif_orientation(&payload[EXIF.len()..]) {
                    if orientation != 1 {
                        out.extend_from_slice(&orientation_segment(orientation));
                    }
                }
            }
            if keep(marker, payload) {
                out.extend_from_slice(&[0xFF, marker]);
                out.extend_from_slice(&b[pos..end]);
            }
            pos = end;
            if marker == SOS {
                let scan_end = entropy_coded_end(b, pos)?;
                out.extend_from_slice(&b[pos..scan_end]);
                pos = scan_end;
            }
        }
    }

    /// Which segments stay: everything that is not application data or a
    /// comment, and of application data only what changes how the pixels
    /// look (JFIF, ICC profile, Adobe colour transform).
    fn keep(marker: u8, payload: &[u8]) -> bool {
        match marker {
            APP0 => payload.starts_with(b"JFIF\0") || payload.starts_with(b"JFXX\0"),
            APP2 => payload.starts_with(b"ICC_PROFILE\0"),
            APP14 => payload.starts_with(b"Adobe"),
            APP0..=APP15 | COM => false,
            _ => true,
        }
    }

    /// Where the entropy-coded data after an SOS header ends: at the first
    /// 0xFF that is neither a stuffed 0xFF00 nor a restart marker.
    fn entropy_coded_end(b: &[u8], mut pos: usize) -> Result<usize, InspectError> {
        loop {
            let ff = b[pos..].iter().position(|&x| x == 0xFF).ok_or_else(|| truncated("JPEG"))?;
            let i = pos + ff;
            match b.get(i + 1) {
                None => return Err(truncated("JPEG")),
                Some(0x00 | 0xD0..=0xD7) => pos = i + 2,
                Some(_) => return Ok(i),
            }
        }
    }

    /// The Orientation tag (1..=8) of IFD0 in an Exif TIFF structure.
    /// Damaged Exif is not an error: it only means no orientation.
    pub(super) fn exif_orientation(tiff: &[u8]) -> Option<u16> {
        let big_endian = match tiff.get(0..2)? {
            b"MM" => true,
            b"II" => false,
            _ => return None,
        };
        let u16_at = |at: usize| -> Option<u16> {
            let b = tiff.get(at..at.checked_add(2)?)?;
            Some(if big_endian { u16::from_be_bytes([b[0], b[1]]) } else { u16::from_le_bytes([b[0], b[1]]) })
        };
        let u32_at = |at: usize| -> Option<u32> {
            let b = tiff.get(at..at.checked_add(4)?)?;
            Some(if big_endian {
                u32::from_be_bytes([b[0], b[1], b[2], b[3]])
            } else {
                u32::from_le_bytes([b[0], b[1], b[2], b[3]])
            })
        };
        if u16_at(2)? != 42 {
            return None;
        }
        let ifd = usize::try_from(u32_at(4)?).ok().filter(|&at| at < tiff.len())?;
        let count = usize::from(u16_at(ifd)?);
        for i in 0..count {
            let entry = ifd.checked_add(2 + 12 * i)?;
            if u16_at(entry)? == ORIENTATION_TAG {
                // SHORT, one value, stored in the first two bytes of the
                // value field.
                if u16_at(entry + 2)? != 3 || u32_at(entry + 4)? != 1 {
                    return None;
                }
                let orientation = u16_at(entry + 8)?;
                return (1..=8).contains(&orientation).then_some(orientation);
            }
        }
        None
    }

    /// An APP1 segment with an Exif block that holds only IFD0 with only
    /// the Orientation tag.
    pub(super) fn orientation_segment(orientation: u16) -> Vec<u8> {
        let mut s = vec![0xFF, APP1, 0, 34];
        s.extend_from_slice(EXIF);
        // Big-endian TIFF header; IFD0 follows it at offset 8.
        s.extend_from_slice(b"MM\0\x2A\0\0\0\x08");
        s.extend_from_slice(&1u16.to_be_bytes());
        // Tag, type SHORT, count 1, value left-justified in 4 bytes.
        s.extend_from_slice(&ORIENTATION_TAG.to_be_bytes());
        s.extend_from_slice(&3u16.to_be_bytes());
        s.extend_from_slice(&1u32.to_be_bytes());
        s.extend_from_slice(&orientation.to_be_bytes());
        s.extend_from_slice(&[0, 0]);
        // No next IFD.
        s.extend_from_slice(&0u32.to_be_bytes());
        debug_assert_eq!(s.len(), 2 + 34);
        s
    }
}

/// PNG: a walk over the chunks, checking every CRC.
mod png {
    use super::{be_u32, malformed, truncated, InspectError};

    pub(super) const SIGNATURE: [u8; 8] = *b"\x89PNG\r\n\x1a\n";

    /// Metadata chunks. `caBX` is a C2PA manifest (it can embed Exif and
    /// location); `dSIG` signs the file as it was, so it no longer matches.
    const DROPPED: [&[u8; 4]; 7] = [b"eXIf", b"tEXt", b"zTXt", b"iTXt", b"tIME", b"caBX", b"dSIG"];

    /// The PNG without metadata chunks, ending at `IEND`.
    pub(super) fn strip(b: &[u8]) -> Result<Vec<u8>, InspectError> {
        if !b.starts_with(&SIGNATURE) {
            return Err(malformed("PNG: bad signature"));
        }
        let mut out = Vec::with_capacity(b.len());
        out.extend_from_slice(&SIGNATURE);
        let mut pos = SIGNATURE.len();
        loop {
            let header = b.get(pos..pos + 8).ok_or_else(|| truncated("PNG"))?;
            let len = be_u32(&header[0..4]) as usize;
            let kind: [u8; 4] = [header[4], header[5], header[6], header[7]];
            let end = pos
                .checked_add(12)
                .and_then(|n| n.checked_add(len))
                .filter(|&end| end <= b.len())
                .ok_or_else(|| truncated("PNG"))?;
            // The CRC covers the chunk type and data.
            if crc32fast::hash(&b[pos + 4..end - 4]) != be_u32(&b[end - 4..end]) {
                return Err(malformed(format!(
                    "PNG: the {} chunk is damaged (bad CRC)",
                    String::from_utf8_lossy(&kind)
                )));
            }
            if !DROPPED.contains(&&kind) {
                out.extend_from_slice(&b[pos..end]);
            }
            pos = end;
            if &kind == b"IEND" {
                return Ok(out);
            }
        }
    }
}

/// WebP: a walk over the RIFF chunks.
mod webp {
    use super::{le_u32, malformed, truncated, InspectError};

    const EXIF_FLAG: u8 = 0x08;
    const XMP_FLAG: u8 = 0x04;

    /// The WebP without `EXIF` and `XMP ` chunks, the RIFF size and the
    /// `VP8X` flags made to match.
    pub(super) fn strip(b: &[u8]) -> Result<Vec<u8>, InspectError> {
        let riff_len = b.get(4..8).map(le_u32).ok_or_else(|| truncated("WebP"))? as usize;
        let end = riff_len.checked_add(8).filter(|&end| end <= b.len()).ok_or_else(|| truncated("WebP"))?;
        if end < 12 {
            return Err(malformed("WebP: impossible RIFF size"));
        }
        let mut out = Vec::with_capacity(end);
        out.extend_from_slice(&b[..12]);
        let mut vp8x_flags_at = None;
        let mut pos = 12;
        while pos < end {
            let header = b.get(pos..pos + 8).filter(|_| pos + 8 <= end).ok_or_else(|| truncated("WebP"))?;
            let kind = &header[0..4];
            let size = le_u32(&header[4..8]) as usize;
            // Chunks are padded to an even size.
            let chunk_end = (pos + 8)
                .checked_add(size)
                .and_then(|n| n.checked_add(size & 1))
                .filter(|&n| n <= end)
                .ok_or_else(|| truncated("WebP"))?;
            match kind {
                b"EXIF" | b"XMP " => {}
                _ => {
                    if kind == b"VP8X" {
                        if size < 10 {
                            return Err(malformed("WebP: VP8X chunk too short"));
                        }
                        vp8x_flags_at = Some(out.len() + 8);
                    }
                    out.extend_from_slice(&b[pos..chunk_end]);
                }
            }
            pos = chunk_end;
        }
        if let Some(at) = vp8x_flags_at {
            out[at] &= !(EXIF_FLAG | XMP_FLAG);
        }
        let riff_len = u32::try_from(out.len() - 8).map_err(|_| malformed("WebP: too large"))?;
        out[4..8].copy_from_slice(&riff_len.to_le_bytes());
        Ok(out)
    }
}

/// GIF: a walk over the blocks (without decompressing image data).
mod gif {
    use super::{malformed, truncated, InspectError};

    const EXTENSION: u8 = 0x21;
    const IMAGE: u8 = 0x2C;
    const TRAILER: u8 = 0x3B;
    const COMMENT: u8 = 0xFE;
    const APPLICATION: u8 = 0xFF;
    /// Application extensions that only say how often an animation loops.
    const LOOPING: [&[u8; 11]; 2] = [b"NETSCAPE2.0", b"ANIMEXTS1.0"];

    pub(super) fn strip(b: &[u8]) -> Result<Vec<u8>, InspectError> {
        // Header (6), logical screen descriptor (7), global colour table.
        let screen = b.get(6..13).ok_or_else(|| truncated("GIF"))?;
        let mut pos = 13 + colour_table_len(screen[4]);
        if pos > b.len() {
            return Err(truncated("GIF"));
        }
        let mut out = Vec::with_capacity(b.len());
        out.extend_from_slice(&b[..pos]);
        loop {
            match b.get(pos) {
                // Some encoders leave out the trailer; everything before it
                // is complete, so add it.
                None | Some(&TRAILER) => {
                    out.push(TRAILER);
                    return Ok(out);
                }
                Some(&EXTENSION) => {
                    let label = *b.get(pos + 1).ok_or_else(|| truncated("GIF"))?;
                    let end = sub_blocks_end(b, pos + 2)?;
                    let keep = match label {
                        COMMENT => false,
                        APPLICATION => {
                            b.get(pos + 2) == Some(&11)
                                && b.get(pos + 3..pos + 14).is_some_and(|id| LOOPING.iter().any(|l| &l[..] == id))
                        }
                        _ => true,
                    };
                    if keep {
                        out.extend_from_slice(&b[pos..end]);
                    }
                    pos = end;
                }
                Some(&IMAGE) => {
                    // Descriptor (10 with the introducer), local colour
                    // table, LZW minimum code size, data sub-blocks.
                    let descriptor = b.get(pos..pos + 10).ok_or_else(|| truncated("GIF"))?;
                    let data = pos + 10 + colour_table_len(descriptor[9]) + 1;
                    let end = sub_blocks_end(b, data)?;
                    out.extend_from_slice(&b[pos..end]);
                    pos = end;
                }
                Some(other) => return Err(malformed(format!("GIF: unknown block 0x{other:02X} at byte {pos}"))),
            }
        }
    }

    fn colour_table_len(packed: u8) -> usize {
        if packed & 0x80 == 0 {
            0
        } else {
            3 << ((packed & 7) + 1)
        }
    }

    /// The end of a run of data sub-blocks (each a length byte and that
    /// many bytes; a zero length ends the run).
    fn sub_blocks_end(b: &[u8], mut pos: usize) -> Result<usize, InspectError> {
        loop {
            let len = usize::from(*b.get(pos).ok_or_else(|| truncated("GIF"))?);
            pos += 1 + len;
            if len == 0 {
                return Ok(pos);
            }
        }
    }
}

/// ICO: the directory and every icon, rewritten with PNG icons stripped.
mod ico {
    use super::{le_u16, le_u32, malformed, png, truncated, InspectError};

    const DIRECTORY_ENTRY: usize = 16;

    pub(super) fn strip(b: &[u8]) -> Result<Vec<u8>, InspectError> {
        let count = usize::from(le_u16(b.get(4..6).ok_or_else(|| truncated("ICO"))?));
        let data_start = 6 + DIRECTORY_ENTRY * count;
        if data_start > b.len() {
            return Err(truncated("ICO"));
        }
        let mut out = Vec::with_capacity(b.len());
        out.extend_from_slice(&b[..data_start]);
        let mut total = 0usize;
        for i in 0..count {
            let entry = 6 + DIRECTORY_ENTRY * i;
            let size = le_u32(&b[entry + 8..entry + 12]) as usize;
            let offset = le_u32(&b[entry + 12..entry + 16]) as usize;
            let data = offset.checked_add(size).and_then(|end| b.get(offset..end)).ok_or_else(|| truncated("ICO"))?;
            // Icons sharing (overlapping) data would be copied once each:
            // refuse the directory that would make us write more than came.
            total = total.saturating_add(size);
            if total > b.len() - data_start {
                return Err(malformed("ICO: the icons overlap"));
            }
            let stripped;
            let data = if data.starts_with(&png::SIGNATURE) {
                stripped = png::strip(data)?;
                &stripped[..]
            } else {
                data
            };
            let new_offset = out.len() as u32;
            out[entry + 8..entry + 12].copy_from_slice(&(data.len() as u32).to_le_bytes());
            out[entry + 12..entry + 16].copy_from_slice(&new_offset.to_le_bytes());
            out.extend_from_slice(data);
        }
        Ok(out)
    }
}

/// ISO base media files (HEIF, AVIF): brands and, for AVIF, the container
/// checks that stand in for decoding.
mod isobmff {
    use super::{be_u32, malformed, truncated, InspectError};

    pub(super) enum Family {
        Avif,
        Heif,
        Other,
    }

    const AVIF_BRANDS: [&[u8; 4]; 2] = [b"avif", b"avis"];
    /// HEVC-coded HEIF, and the generic HEIF brands (`mif1`, `msf1`)
    /// without an AVIF brand: none of it can be decoded here.
    const HEIF_BRANDS: [&[u8; 4]; 10] =
        [b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1"];

    /// The family of a file that starts with an `ftyp` box; `None` if it
    /// does not.
    pub(super) fn family(b: &[u8]) -> Option<Family> {
        if b.get(4..8) != Some(b"ftyp") {
            return None;
        }
        let size = be_u32(&b[0..4]) as usize;
        if size < 16 || size > b.len() {
            return Some(Family::Other);
        }
        let brands: Vec<&[u8]> = std::iter::once(&b[8..12]).chain(b[16..size].chunks_exact(4)).collect();
        let has = |set: &[&[u8; 4]]| brands.iter().any(|b| set.iter().any(|s| &s[..] == *b));
        Some(if has(&AVIF_BRANDS) {
            Family::Avif
        } else if has(&HEIF_BRANDS) {
            Family::Heif
        } else {
            Family::Other
        })
    }

    /// The size of an AVIF image after checking its container: every box
    /// inside the file, a primary item that is AV1 (or a grid of AV1 tiles)
    /// with a size and an AV1 configuration, every item's data inside the
    /// file. An image sequence without a still item gives its track size.
    pub(super) fn avif_size(file: &[u8]) -> Result<(u32, u32), InspectError> {
        let mut meta = None;
        let mut moov = None;
        for b in Boxes::new(file) {
            let b = b?;
            match &b.kind {
                b"meta" => meta = Some(b.body),
                b"moov" => moov = Some(b.body),
                _ => {}
            }
        }
        match (meta, moov) {
            (Some(meta), _) => still_size(file.len(), meta),
            (None, Some(moov)) => sequence_size(moov),
            (None, None) => Err(malformed("AVIF: no image in the file (no meta box)")),
        }
    }

    fn still_size(file_len: usize, meta: &[u8]) -> Result<(u32, u32), InspectError> {
        let (_, _, meta) = full_box(meta)?;
        let (mut pitm, mut iinf, mut iprp, mut iloc) = (None, None, None, None);
        for b in Boxes::new(meta) {
            let b = b?;
            match &b.kind {
                b"pitm" => pitm = Some(b.body),
                b"iinf" => iinf = Some(b.body),
                b"iprp" => iprp = Some(b.body),
                b"iloc" => iloc = Some(b.body),
                _ => {}
            }
        }
        let missing = |what: &str| malformed(format!("AVIF: no {what}"));
        let primary = {
            let (version, _, body) = full_box(pitm.ok_or_else(|| missing("primary item (pitm)"))?)?;
            let mut r = Reader::new(body);
            if version == 0 {
                u32::from(r.u16()?)
            } else {
                r.u32()?
            }
        };
        check_locations(iloc.ok_or_else(|| missing("item locations (iloc)"))?, file_len)?;
        let kind = item_type(iinf.ok_or_else(|| missing("item list (iinf)"))?, primary)?
            .ok_or_else(|| missing("description of the primary item"))?;
        match &kind {
            b"av01" | b"grid" => {}
            // HEVC inside a file branded AVIF is still HEIC (`detect` sends
            // it to the HEIC path).
            // HEVC inside a file branded AVIF is still HEIC.
            b"hvc1" | b"hev1" => return Err(InspectError::Heic),
            other => {
                return Err(malformed(format!(
                    "AVIF: the primary item is {} data, not AV1",
                    String::from_utf8_lossy(other)
                )))
            }
        }
        let properties = properties_of(iprp.ok_or_else(|| missing("item properties (iprp)"))?, primary)?;
        if &kind == b"av01" && !properties.iter().any(|p| &p.kind == b"av1C") {
            return Err(missing("AV1 configuration (av1C) for the primary item"));
        }
        let ispe = properties
            .iter()
            .find(|p| &p.kind == b"ispe")
            .ok_or_else(|| missing("size (ispe) for the primary item"))?;
        let (_, _, ispe) = full_box(ispe.body)?;
        let mut r = Reader::new(ispe);
        Ok((r.u32()?, r.u32()?))
    }

    /// The type of item `id` from `iinf`'s `infe` entries (versions 2 and 3
    /// carry a type; older ones do not describe images).
    fn item_type(iinf: &[u8], id: u32) -> Result<Option<[u8; 4]>, InspectError> {
        let (version, _, body) = full_box(iinf)?;
        let entries = body.get(if version == 0 { 2 } else { 4 }..).ok_or_else(|| truncated("AVIF"))?;
        for b in Boxes::new(entries) {
            let b = b?;
            if &b.kind != b"infe" {
                continue;
            }
            let (version, _, infe) = full_box(b.body)?;
            if version < 2 {
                continue;
            }
            let mut r = Reader::new(infe);
            let item = if version == 2 { u32::from(r.u16()?) } else { r.u32()? };
            let _protection = r.u16()?;
            let kind = r.fourcc()?;
            if item == id {
                return Ok(Some(kind));
            }
        }
        Ok(None)
    }

    /// The properties (`ipco` children) that `ipma` associates with item `id`.
    fn properties_of(iprp: &[u8], id: u32) -> Result<Vec<BoxRef<'_>>, InspectError> {
        let mut ipco = None;
        let mut indexes = Vec::new();
        for b in Boxes::new(iprp) {
            let b = b?;
            match &b.kind {
                b"ipco" => ipco = Some(b.body),
                b"ipma" => {
                    let (version, flags, body) = full_box(b.body)?;
                    let mut r = Reader::new(body);
                    for _ in 0..r.u32()? {
                        let item = if version < 1 { u32::from(r.u16()?) } else { r.u32()? };
                        for _ in 0..r.u8()? {
                            // The top bit says "essential"; the rest is a
                            // 1-based index into ipco.
                            let index = if flags & 1 != 0 {
                                usize::from(r.u16()? & 0x7FFF)
                            } else {
                                usize::from(r.u8()? & 0x7F)
                            };
                            if item == id {
                                indexes.push(index);
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        let ipco = ipco.ok_or_else(|| malformed("AVIF: no item properties (ipco)"))?;
        let mut properties = Vec::new();
        for (i, b) in Boxes::new(ipco).enumerate() {
            let b = b?;
            if indexes.contains(&(i + 1)) {
                properties.push(b);
            }
        }
        Ok(properties)
    }

    /// Every item stored in this file (construction method 0, this file as
    /// data reference) lies inside it: a truncated AVIF fails here.
    fn check_locations(iloc: &[u8], file_len: usize) -> Result<(), InspectError> {
        let (version, _, body) = full_box(iloc)?;
        if version > 2 {
            return Err(malformed("AVIF: unknown iloc version"));
        }
        let mut r = Reader::new(body);
        let sizes = r.u8()?;
        let (offset_size, length_size) = (sizes >> 4, sizes & 15);
        let sizes = r.u8()?;
        let base_size = sizes >> 4;
        let index_size = if version >= 1 { sizes & 15 } else { 0 };
        let count = if version < 2 { u32::from(r.u16()?) } else { r.u32()? };
        for _ in 0..count {
            let item = if version < 2 { u32::from(r.u16()?) } else { r.u32()? };
            let method = if version >= 1 { r.u16()? & 15 } else { 0 };
            let data_reference = r.u16()?;
            let base = r.uint(base_size)?;
            for _ in 0..r.u16()? {
                r.uint(index_size)?;
                let offset = r.uint(offset_size)?;
                let length = r.uint(length_size)?;
                if method == 0 && data_reference == 0 {
                    // A length of 0 means "to the end of the file".
                    let end = base.checked_add(offset).and_then(|s| s.checked_add(length));
                    if end.is_none_or(|end| end > file_len as u64) {
                        return Err(malformed(format!(
                            "AVIF: the data of item {item} lies past the end of the file (truncated?)"
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// The size of the first visual track of an image sequence (`tkhd`
    /// width and height, 16.16 fixed point).
    fn sequence_size(moov: &[u8]) -> Result<(u32, u32), InspectError> {
        for trak in Boxes::new(moov) {
            let trak = trak?;
            if &trak.kind != b"trak" {
                continue;
            }
            for tkhd in Boxes::new(trak.body) {
                let tkhd = tkhd?;
                if &tkhd.kind != b"tkhd" {
                    continue;
                }
                let (version, _, body) = full_box(tkhd.body)?;
                // Times, ids and duration (20 or 32 bytes), then reserved,
                // layer, group, volume (16) and the matrix (36).
                let at = if version == 1 { 32 } else { 20 } + 16 + 36;
                let mut r = Reader::new(body.get(at..).ok_or_else(|| truncated("AVIF"))?);
                let (width, height) = (r.u32()? >> 16, r.u32()? >> 16);
                if width > 0 && height > 0 {
                    return Ok((width, height));
                }
            }
        }
        Err(malformed("AVIF: no image in the file (no sized track)"))
    }

    /// A box's type and contents.
    pub(super) struct BoxRef<'a> {
        kind: [u8; 4],
        body: &'a [u8],
    }

    /// The boxes laid end to end in `data`; an error (and then the end) if
    /// one does not fit.
    struct Boxes<'a> {
        data: &'a [u8],
        pos: usize,
    }

    impl<'a> Boxes<'a> {
        fn new(data: &'a [u8]) -> Boxes<'a> {
            Boxes { data, pos: 0 }
        }

        fn next_box(&mut self) -> Result<BoxRef<'a>, InspectError> {
            let rest = &self.data[self.pos..];
            let mut r = Reader::new(rest);
            let size = r.u32()?;
            let kind = r.fourcc()?;
            let (header, size) = match size {
                1 => (16, r.u64()?),
                0 => (8, rest.len() as u64),
                n => (8, u64::from(n)),
            };
            if size < header {
                return Err(malformed("AVIF: a box has an impossible size"));
            }
            if size > rest.len() as u64 {
                return Err(truncated("AVIF"));
            }
            let size = size as usize;
            self.pos += size;
            Ok(BoxRef { kind, body: &rest[header as usize..size] })
        }
    }

    impl<'a> Iterator for Boxes<'a> {
        type Item = Result<BoxRef<'a>, InspectError>;

        fn next(&mut self) -> Option<Self::Item> {
            if self.pos >= self.data.len() {
                return None;
            }
            let next = self.next_box();
            if next.is_err() {
                self.pos = self.data.len();
            }
            Some(next)
        }
    }

    /// A full box's version, flags and the rest of its body.
    fn full_box(body: &[u8]) -> Result<(u8, u32, &[u8]), InspectError> {
        let header = body.get(0..4).ok_or_else(|| truncated("AVIF"))?;
        Ok((header[0], be_u32(header) & 0x00FF_FFFF, &body[4..]))
    }

    /// Big-endian fields read in order; running out is "truncated".
    struct Reader<'a> {
        data: &'a [u8],
        pos: usize,
    }

    impl<'a> Reader<'a> {
        fn new(data: &'a [u8]) -> Reader<'a> {
            Reader { data, pos: 0 }
        }

        fn take<const N: usize>(&mut self) -> Result<[u8; N], InspectError> {
            let bytes = self.data.get(self.pos..self.pos + N).ok_or_else(|| truncated("AVIF"))?;
            self.pos += N;
            let mut out = [0; N];
            out.copy_from_slice(bytes);
            Ok(out)
        }

        fn u8(&mut self) -> Result<u8, InspectError> {
            Ok(self.take::<1>()?[0])
        }

        fn u16(&mut self) -> Result<u16, InspectError> {
            Ok(u16::from_be_bytes(self.take()?))
        }

        fn u32(&mut self) -> Result<u32, InspectError> {
            Ok(u32::from_be_bytes(self.take()?))
        }

        fn u64(&mut self) -> Result<u64, InspectError> {
            Ok(u64::from_be_bytes(self.take()?))
        }

        fn fourcc(&mut self) -> Result<[u8; 4], InspectError> {
            self.take()
        }

        /// An unsigned field of 0, 4 or 8 bytes (iloc's variable sizes).
        fn uint(&mut self, size: u8) -> Result<u64, InspectError> {
            match size {
                0 => Ok(0),
                4 => Ok(u64::from(self.u32()?)),
                8 => self.u64(),
                _ => Err(malformed("AVIF: bad field size in iloc")),
            }
        }
    }
}

/// SVG: parsed with quick-xml as a stream of events (no tree, no entity
/// expansion), refused at the first thing that could run or load
/// something.
mod svg {
    use std::borrow::Cow;

    use quick_xml::escape::resolve_predefined_entity;
    use quick_xml::events::attributes::Attribute;
    use quick_xml::events::{BytesStart, Event};
    use quick_xml::{Reader, XmlVersion};

    use super::{check_pixels, malformed, InspectError, Inspected, Limits};
    use imgcdn_shared::Format;

    const BOM: &[u8] = b"\xEF\xBB\xBF";

    /// Elements that run script, embed other documents or change how the
    /// document loads (in any namespace, compared case-insensitively in
    /// case the SVG is ever inlined into HTML).
    const FORBIDDEN_ELEMENTS: [&str; 15] = [
        "script",
        "foreignobject",
        "iframe",
        "frame",
        "frameset",
        "embed",
        "object",
        "applet",
        "handler",
        "listener",
        "meta",
        "base",
        "link",
        "form",
        "portal",
    ];

    /// Animation elements: they may not target `href` or an event handler
    /// (`<set attributeName="href" to="javascript:…">` is a known bypass).
    const ANIMATIONS: [&str; 5] = ["set", "animate", "animatemotion", "animatetransform", "animatecolor"];

    /// `data:` URLs of types that cannot carry script.
    const SAFE_DATA_TYPES: [&str; 11] = [
        "image/png",
        "image/jpeg",
        "image/jpg",
        "image/gif",
        "image/webp",
        "image/avif",
        "image/bmp",
        "font/",
        "application/font-",
        "application/x-font-",
        "application/vnd.ms-fontobject",
    ];

    /// Text that could be XML: optional BOM, whitespace, then `<`.
    pub(super) fn looks_like_xml(b: &[u8]) -> bool {
        let b = b.strip_prefix(BOM).unwrap_or(b);
        b.iter().find(|c| !c.is_ascii_whitespace()) == Some(&b'<')
    }

    pub(super) fn inspect(bytes: Vec<u8>, limits: &Limits) -> Result<Inspected, InspectError> {
        let body = bytes.strip_prefix(BOM).unwrap_or(&bytes);
        let text = match std::str::from_utf8(body) {
            Ok(text) if bytes.len() <= limits.max_svg_bytes => text,
            // Too large or not UTF-8: say so if it is an SVG at all (judged
            // from its start), else it is just not an image.
            _ => {
                let head = &body[..body.len().min(limits.max_svg_bytes)];
                let head = match std::str::from_utf8(head) {
                    Ok(s) => s,
                    Err(e) => std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or_default(),
                };
                if !root_is_svg(head) {
                    return Err(InspectError::Unsupported);
                }
                return Err(if bytes.len() > limits.max_svg_bytes {
                    InspectError::UnsafeSvg(format!(
                        "it is {} bytes; at most {} are accepted",
                        bytes.len(),
                        limits.max_svg_bytes
                    ))
                } else {
                    malformed("SVG: the text is not UTF-8")
                });
            }
        };
        let (width, height) = check(text)?;
        check_pixels(width, height, limits)?;
        Ok(Inspected { format: Format::Svg, width, height, bytes, metadata_stripped: false })
    }

    /// Whether the first element of `text` is `<svg>` (a partial document
    /// is fine).
    fn root_is_svg(text: &str) -> bool {
        let mut reader = Reader::from_str(text);
        loop {
            match reader.read_event() {
                Ok(Event::Start(e) | Event::Empty(e)) => return is_svg(&e),
                Ok(Event::Eof) | Err(_) => return false,
                Ok(_) => {}
            }
        }
    }

    fn is_svg(e: &BytesStart) -> bool {
        e.local_name().as_ref().eq_ignore_ascii_case("svg")
    }

    /// Walk the whole document; returns the root's size. Anything before
    /// the root that makes it not an SVG is `Unsupported`; an unsafe thing
    /// seen before the root is reported once the root shows it is an SVG.
    fn check(text: &str) -> Result<(u32, u32), InspectError> {
        let mut reader = Reader::from_str(text);
        let mut size = None;
        let mut unsafe_before_root: Option<String> = None;
        let mut depth = 0usize;
        // Depth of the open <style> element, if any, and its text so far.
        let mut style_depth = None;
        let mut style = String::new();
        // Text or references outside the root: not XML before it (so not an
        // SVG), malformed after it.
        let outside_root = |size: &Option<(u32, u32)>| match size {
            Some(_) => malformed("SVG: content after the root element"),
            None => InspectError::Unsupported,
        };
        loop {
            let event = match reader.read_event() {
                Ok(event) => event,
                Err(e) if size.is_some() => return Err(malformed(format!("SVG: {e}"))),
                Err(_) => return Err(InspectError::Unsupported),
            };
            let (element, empty) = match event {
                Event::Start(e) => (e, false),
                Event::Empty(e) => (e, true),
                Event::End(_) => {
                    if style_depth == Some(depth) {
                        check_css(&style)?;
                        style.clear();
                        style_depth = None;
                    }
                    depth = depth.saturating_sub(1);
                    continue;
                }
                Event::Text(t) => {
                    if depth == 0 {
                        if !t.trim().is_empty() {
                            return Err(outside_root(&size));
                        }
                    } else if style_depth.is_some() {
                        style.push_str(&t.xml10_content());
                    }
                    continue;
                }
                Event::CData(c) => {
                    if depth == 0 {
                        return Err(outside_root(&size));
                    }
                    if style_depth.is_some() {
                        style.push_str(&c.xml10_content());
                    }
                    continue;
                }
                Event::GeneralRef(r) => {
                    if depth == 0 {
                        return Err(outside_root(&size));
                    }
                    // Only character references and the five predefined
                    // entities exist: a document that declares others is
                    // refused at its DOCTYPE.
                    let resolved = match r.resolve_char_ref() {
                        Ok(Some(c)) => c.to_string(),
                        Ok(None) => resolve_predefined_entity(&r)
                            .ok_or_else(|| malformed(format!("SVG: undefined entity &{};", &*r)))?
                            .to_string(),
                        Err(e) => return Err(malformed(format!("SVG: {e}"))),
                    };
                    if style_depth.is_some() {
                        style.push_str(&resolved);
                    }
                    continue;
                }
                Event::Eof => break,
                Event::Decl(_) | Event::Comment(_) => continue,
                Event::DocType(doctype) => {
                    if size.is_some() {
                        return Err(malformed("SVG: a DOCTYPE after the root element"));
                    }
                    // An internal subset declares entities (XXE, billion
                    // laughs) or default attributes (an `onload` on every
                    // element); a bare public identifier is harmless.
                    if doctype.contains('[') {
                        unsafe_before_root.get_or_insert_with(|| {
                            "it has a DOCTYPE with an internal subset (entity or attribute declarations)".to_string()
                        });
                    }
                    continue;
                }
                Event::PI(pi) => {
                    // xml-stylesheet loads CSS or XSLT (which can script);
                    // other instructions (such as XMP's xpacket) do nothing.
                    if pi.target().eq_ignore_ascii_case("xml-stylesheet") {
                        let why = "it has an xml-stylesheet processing instruction".to_string();
                        if size.is_some() {
                            return Err(InspectError::UnsafeSvg(why));
                        }
                        unsafe_before_root.get_or_insert(why);
                    }
                    continue;
                }
            };
            if size.is_none() {
                if !is_svg(&element) {
                    return Err(InspectError::Unsupported);
                }
                if let Some(why) = unsafe_before_root.take() {
                    return Err(InspectError::UnsafeSvg(why));
                }
                size = Some(root_size(&element)?);
            } else if depth == 0 {
                return Err(malformed("SVG: more than one root element"));
            }
            check_element(&element)?;
            if !empty {
                depth += 1;
                if style_depth.is_none() && element.local_name().as_ref().eq_ignore_ascii_case("style") {
                    style_depth = Some(depth);
                }
            }
        }
        if depth > 0 {
            return Err(malformed("SVG: the document ends inside an element (truncated?)"));
        }
        size.ok_or(InspectError::Unsupported)
    }

    fn unsafe_svg(why: impl Into<String>) -> InspectError {
        InspectError::UnsafeSvg(why.into())
    }

    fn value_of(attr: &Attribute) -> Result<String, InspectError> {
        attr.normalized_value(XmlVersion::Implicit1_0).map(Cow::into_owned).map_err(|e| malformed(format!("SVG: {e}")))
    }

    /// Refuse elements and attributes that run script or load things.
    fn check_element(e: &BytesStart) -> Result<(), InspectError> {
        let name = e.local_name().as_ref().to_ascii_lowercase();
        if FORBIDDEN_ELEMENTS.contains(&name.as_str()) {
            let shown = e.local_name();
            return Err(unsafe_svg(format!("it contains the element <{}>", shown.as_ref())));
        }
        let animation = ANIMATIONS.contains(&name.as_str());
        for attr in e.attributes() {
            let attr = attr.map_err(|e| malformed(format!("SVG: {e}")))?;
            let key = attr.key.as_ref();
            let local = attr.key.local_name().as_ref().to_ascii_lowercase();
            let value = value_of(&attr)?;
            // Namespace declarations (xmlns:on…) name nothing that runs.
            if local.starts_with("on") && !key.starts_with("xmlns") {
                return Err(unsafe_svg(format!("it has an event-handler attribute ({key})")));
            }
            if matches!(local.as_str(), "href" | "src" | "action" | "formaction") {
                check_reference(&value)?;
            }
            if animation && local == "attributename" {
                let target = value.rsplit(':').next().unwrap_or_default().trim().to_ascii_lowercase();
                if target == "href" || target.starts_with("on") {
                    return Err(unsafe_svg(format!("it animates the {} attribute", value.trim())));
                }
            }
            // Presentation attributes and `style` take CSS (fill="url(…)").
            check_css(&value)?;
        }
        Ok(())
    }

    /// A reference must stay inside the document (`#id`) or be an embedded
    /// raster image or font.
    fn check_reference(value: &str) -> Result<(), InspectError> {
        // Browsers skip whitespace and control characters inside a URL's
        // scheme ("java\tscript:" runs), so compare without them.
        let url: String = value
            .chars()
            .filter(|c| !c.is_ascii_whitespace() && !c.is_ascii_control())
            .collect::<String>()
            .to_ascii_lowercase();
        if url.is_empty() || url.starts_with('#') {
            return Ok(());
        }
        if let Some(data) = url.strip_prefix("data:") {
            let media_type = data.split([';', ',']).next().unwrap_or_default();
            let safe = SAFE_DATA_TYPES.iter().any(|t| {
                if t.ends_with('/') || t.ends_with('-') {
                    media_type.starts_with(t)
                } else {
                    media_type == *t
                }
            });
            if safe {
                return Ok(());
            }
            return Err(unsafe_svg(format!(
                "it contains a data: URL of type {}",
                if media_type.is_empty() { "text/plain" } else { media_type }
            )));
        }
        let what = if url.starts_with("javascript:") || url.starts_with("vbscript:") {
            "a script URL"
        } else if url.starts_with("http:") || url.starts_with("https:") || url.starts_with("//") {
            "an external reference"
        } else {
            "a reference outside the document"
        };
        let shown: String = value.trim().chars().take(60).collect();
        Err(unsafe_svg(format!("it contains {what} ({shown})")))
    }

    /// CSS (a `<style>` element or an attribute value) must not import
    /// style sheets or point `url()`s outside the document.
    fn check_css(css: &str) -> Result<(), InspectError> {
        // Nothing that loads can be written without one of these.
        if !css.contains(['(', '@', '\\']) {
            return Ok(());
        }
        let css = decode_css_escapes(css).to_ascii_lowercase();
        if css.contains("@import") {
            return Err(unsafe_svg("its CSS imports a style sheet (@import)"));
        }
        // These take URLs as plain strings, which the url() check below
        // would not see.
        for function in ["image-set(", "src("] {
            if css.contains(function) {
                return Err(unsafe_svg(format!("its CSS uses {function})")));
            }
        }
        let mut rest = css.as_str();
        while let Some(i) = rest.find("url(") {
            rest = &rest[i + 4..];
            let argument = rest.trim_start();
            let target = match argument.chars().next() {
                Some(quote @ ('"' | '\'')) => argument[1..].split(quote).next(),
                _ => argument.split(')').next(),
            };
            check_reference(target.unwrap_or_default())?;
        }
        Ok(())
    }

    /// CSS with its backslash escapes resolved (`u\72l(` is `url(`).
    fn decode_css_escapes(css: &str) -> Cow<'_, str> {
        if !css.contains('\\') {
            return Cow::Borrowed(css);
        }
        let mut out = String::with_capacity(css.len());
        let mut chars = css.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            // Up to six hex digits and one optional whitespace, or any
            // other character taken literally.
            let mut code = 0u32;
            let mut digits = 0;
            while digits < 6 {
                match chars.peek().and_then(|h| h.to_digit(16)) {
                    Some(d) => {
                        code = code * 16 + d;
                        digits += 1;
                        chars.next();
                    }
                    None => break,
                }
            }
            if digits == 0 {
                if let Some(next) = chars.next() {
                    out.push(next);
                }
                continue;
            }
            out.push(char::from_u32(code).filter(|&c| c != '\0').unwrap_or('\u{FFFD}'));
            if chars.peek().is_some_and(|c| c.is_ascii_whitespace()) {
                chars.next();
            }
        }
        Cow::Owned(out)
    }

    /// The root's size in CSS pixels: `width`/`height` when they are
    /// absolute lengths, else derived from the `viewBox`, else the SVG
    /// default of 300 x 150.
    fn root_size(e: &BytesStart) -> Result<(u32, u32), InspectError> {
        let (mut width, mut height, mut view_box) = (None, None, None);
        for attr in e.attributes() {
            let attr = attr.map_err(|e| malformed(format!("SVG: {e}")))?;
            match attr.key.as_ref() {
                "width" => width = length(&value_of(&attr)?)?,
                "height" => height = length(&value_of(&attr)?)?,
                "viewBox" => view_box = parse_view_box(&value_of(&attr)?),
                _ => {}
            }
        }
        let (w, h) = match (width, height, view_box) {
            (Some(w), Some(h), _) => (w, h),
            (Some(w), None, Some((vw, vh))) => (w, w * vh / vw),
            (None, Some(h), Some((vw, vh))) => (h * vw / vh, h),
            (None, None, Some(view_box)) => view_box,
            (w, h, None) => (w.unwrap_or(300.0), h.unwrap_or(150.0)),
        };
        Ok((to_pixels(w), to_pixels(h)))
    }

    /// An absolute length in CSS pixels; `None` for relative lengths (`%`,
    /// `em`, `auto`), which have no size outside a page.
    fn length(value: &str) -> Result<Option<f64>, InspectError> {
        const UNITS: [(&str, f64); 6] =
            [("px", 1.0), ("pt", 4.0 / 3.0), ("pc", 16.0), ("mm", 96.0 / 25.4), ("cm", 96.0 / 2.54), ("in", 96.0)];
        let value = value.trim().to_ascii_lowercase();
        let (number, factor) = UNITS
            .iter()
            .find_map(|&(unit, factor)| value.strip_suffix(unit).map(|n| (n, factor)))
            .unwrap_or((value.as_str(), 1.0));
        match number.trim().parse::<f64>() {
            Ok(n) if n.is_finite() && n < 0.0 => Err(malformed("SVG: negative width or height")),
            Ok(n) if n.is_finite() => Ok(Some(n * factor)),
            _ => Ok(None),
        }
    }

    /// The width and height of a `viewBox`, if it is valid and not empty.
    fn parse_view_box(value: &str) -> Option<(f64, f64)> {
        let numbers = value
            .split(|c: char| c == ',' || c.is_ascii_whitespace())
            .filter(|s| !s.is_empty())
            .map(str::parse::<f64>)
            .collect::<Result<Vec<_>, _>>()
            .ok()?;
        match numbers[..] {
            [x, y, w, h] if [x, y, w, h].iter().all(|n| n.is_finite()) && w > 0.0 && h > 0.0 => Some((w, h)),
            _ => None,
        }
    }

    /// Whole pixels: rounded, at least 1 for any positive size, saturating.
    fn to_pixels(v: f64) -> u32 {
        if v > 0.0 {
            // `as` saturates at u32::MAX.
            (v.round() as u32).max(1)
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use image::codecs::bmp::BmpEncoder;
    use image::codecs::gif::{GifEncoder, Repeat};
    use image::codecs::ico::IcoEncoder;
    use image::codecs::jpeg::{JpegDecoder, JpegEncoder};
    use image::codecs::png::PngEncoder;
    use image::codecs::webp::WebPEncoder;
    use image::metadata::Orientation;
    use image::{ExtendedColorType, ImageDecoder, ImageEncoder, RgbImage};

    use super::*;

    fn inspect_default(bytes: &[u8]) -> Result<Inspected, InspectError> {
        inspect(bytes.to_vec(), &Limits::default())
    }

    /// A picture with detail everywhere, so that any change to the pixels shows.
    fn picture(width: u32, height: u32) -> RgbImage {
        RgbImage::from_fn(width, height, |x, y| image::Rgb([(x * 7 + y) as u8, (y * 5) as u8, ((x ^ y) * 3) as u8]))
    }

    fn jpeg(width: u32, height: u32) -> Vec<u8> {
        let mut out = Vec::new();
        JpegEncoder::new_with_quality(&mut out, 90).encode_image(&picture(width, height)).unwrap();
        out
    }

    fn png(width: u32, height: u32) -> Vec<u8> {
        let mut out = Vec::new();
        PngEncoder::new(&mut out)
            .write_image(picture(width, height).as_raw(), width, height, ExtendedColorType::Rgb8)
            .unwrap();
        out
    }

    fn gif(width: u32, height: u32) -> Vec<u8> {
        let rgba = image::DynamicImage::ImageRgb8(picture(width, height)).to_rgba8();
        let mut out = Vec::new();
        {
            let mut encoder = GifEncoder::new(&mut out);
            encoder.set_repeat(Repeat::Infinite).unwrap();
            encoder.encode_frame(image::Frame::new(rgba)).unwrap();
        }
        out
    }

    fn webp(width: u32, height: u32) -> Vec<u8> {
        let mut out = Vec::new();
        WebPEncoder::new_lossless(&mut out)
            .encode(picture(width, height).as_raw(), width, height, ExtendedColorType::Rgb8)
            .unwrap();
        out
    }

    fn bmp(width: u32, height: u32) -> Vec<u8> {
        let mut out = Vec::new();
        BmpEncoder::new(&mut out)
            .encode(picture(width, height).as_raw(), width, height, ExtendedColorType::Rgb8)
            .unwrap();
        out
    }

    fn ico(width: u32, height: u32) -> Vec<u8> {
        let rgba = image::DynamicImage::ImageRgb8(picture(width, height)).to_rgba8();
        let mut out = Vec::new();
        IcoEncoder::new(&mut out).write_image(rgba.as_raw(), width, height, ExtendedColorType::Rgba8).unwrap();
        out
    }

    fn isobmff_box(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut b = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        b.extend_from_slice(kind);
        b.extend_from_slice(body);
        b
    }

    fn full_box(kind: &[u8; 4], version: u8, body: &[u8]) -> Vec<u8> {
        let mut with_header = vec![version, 0, 0, 0];
        with_header.extend_from_slice(body);
        isobmff_box(kind, &with_header)
    }

    fn ftyp(major: &[u8; 4], compatible: &[&[u8; 4]]) -> Vec<u8> {
        let mut body = major.to_vec();
        body.extend_from_slice(&0u32.to_be_bytes());
        for brand in compatible {
            body.extend_from_slice(&brand[..]);
        }
        isobmff_box(b"ftyp", &body)
    }

    /// A minimal still AVIF as libavif lays it out: `ftyp`, `meta` (handler,
    /// primary item, its location, type, size and AV1 configuration), `mdat`.
    /// The "AV1" payload is not real (nothing here decodes it).
    fn avif(width: u32, height: u32, item_type: &[u8; 4]) -> Vec<u8> {
        let payload = [0x12u8, 0, 0x0A, 0x0B, 0, 0, 0, 0x24, 0xCF, 0x7F, 0x0D, 0xBF];
        let meta = |data_offset: u32| {
            let mut hdlr = vec![0; 4];
            hdlr.extend_from_slice(b"pict");
            hdlr.extend_from_slice(&[0; 13]);
            let pitm = 1u16.to_be_bytes();
            let mut iloc = vec![0x44, 0x00];
            for field in [1u16, 1, 0, 1] {
                // item count, item id, data reference, extent count
                iloc.extend_from_slice(&field.to_be_bytes());
            }
            iloc.extend_from_slice(&data_offset.to_be_bytes());
            iloc.extend_from_slice(&(payload.len() as u32).to_be_bytes());
            let mut infe = vec![0, 1, 0, 0];
            infe.extend_from_slice(item_type);
            infe.push(0);
            let mut iinf = 1u16.to_be_bytes().to_vec();
            iinf.extend(full_box(b"infe", 2, &infe));
            let mut ispe = width.to_be_bytes().to_vec();
            ispe.extend_from_slice(&height.to_be_bytes());
            let mut ipco = full_box(b"ispe", 0, &ispe);
            ipco.extend(isobmff_box(b"av1C", &[0x81, 0x00, 0x0C, 0x00]));
            // One item, two properties (the second essential).
            let ipma = [0, 0, 0, 1, 0, 1, 2, 0x01, 0x82];
            let mut iprp = isobmff_box(b"ipco", &ipco);
            iprp.extend(full_box(b"ipma", 0, &ipma));
            let mut body = full_box(b"hdlr", 0, &hdlr);
            body.extend(full_box(b"pitm", 0, &pitm));
            body.extend(full_box(b"iloc", 0, &iloc));
            body.extend(full_box(b"iinf", 0, &iinf));
            body.extend(isobmff_box(b"iprp", &iprp));
            full_box(b"meta", 0, &body)
        };
        let head_len = ftyp(b"avif", &[b"avif", b"mif1", b"miaf"]).len() + meta(0).len();
        let mut file = ftyp(b"avif", &[b"avif", b"mif1", b"miaf"]);
        file.extend(meta((head_len + 8) as u32));
        file.extend(isobmff_box(b"mdat", &payload));
        file
    }

    fn pixels(bytes: &[u8]) -> Vec<u8> {
        image::load_from_memory(bytes).unwrap().to_rgba8().into_raw()
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
        let mut c = (data.len() as u32).to_be_bytes().to_vec();
        c.extend_from_slice(kind);
        c.extend_from_slice(data);
        let crc = crc32fast::hash(&c[4..]);
        c.extend_from_slice(&crc.to_be_bytes());
        c
    }

    /// `png` with `extra` chunks right after IHDR (which ends 33 bytes in).
    fn png_with(png: &[u8], extra: &[Vec<u8>]) -> Vec<u8> {
        let mut out = png[..33].to_vec();
        for c in extra {
            out.extend_from_slice(c);
        }
        out.extend_from_slice(&png[33..]);
        out
    }

    fn jpeg_segment(marker: u8, payload: &[u8]) -> Vec<u8> {
        let mut s = vec![0xFF, marker];
        s.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
        s.extend_from_slice(payload);
        s
    }

    /// The marker and payload of each segment before the first scan.
    fn jpeg_header_segments(jpeg: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        let mut pos = 2;
        while jpeg[pos + 1] != 0xDA {
            let len = usize::from(u16::from_be_bytes([jpeg[pos + 2], jpeg[pos + 3]]));
            out.push((jpeg[pos + 1], jpeg[pos + 4..pos + 2 + len].to_vec()));
            pos += 2 + len;
        }
        out
    }

    /// Where the payload of the first `marker` segment starts.
    fn jpeg_segment_at(jpeg: &[u8], marker: u8) -> usize {
        let mut pos = 2;
        while jpeg[pos + 1] != marker {
            pos += 2 + usize::from(u16::from_be_bytes([jpeg[pos + 2], jpeg[pos + 3]]));
        }
        pos + 4
    }

    /// A big-endian Exif TIFF block as a camera writes it: IFD0 with the
    /// camera make, the orientation and a pointer to a GPS IFD holding a
    /// latitude (52° 31' 12.3456").
    fn exif_with_gps(orientation: u16) -> Vec<u8> {
        fn entry(t: &mut Vec<u8>, tag: u16, kind: u16, count: u32, value: [u8; 4]) {
            t.extend_from_slice(&tag.to_be_bytes());
            t.extend_from_slice(&kind.to_be_bytes());
            t.extend_from_slice(&count.to_be_bytes());
            t.extend_from_slice(&value);
        }
        let make_at = 8 + 2 + 3 * 12 + 4u32;
        let gps_at = make_at + 10;
        let latitude_at = gps_at + 2 + 2 * 12 + 4;
        let mut t = b"MM\0\x2A\0\0\0\x08".to_vec();
        t.extend_from_slice(&3u16.to_be_bytes());
        entry(&mut t, 0x010F, 2, 10, make_at.to_be_bytes());
        let [hi, lo] = orientation.to_be_bytes();
        entry(&mut t, 0x0112, 3, 1, [hi, lo, 0, 0]);
        entry(&mut t, 0x8825, 4, 1, gps_at.to_be_bytes());
        t.extend_from_slice(&0u32.to_be_bytes());
        t.extend_from_slice(b"SECRETCAM\0");
        t.extend_from_slice(&2u16.to_be_bytes());
        entry(&mut t, 0x0001, 2, 2, *b"N\0\0\0");
        entry(&mut t, 0x0002, 5, 3, latitude_at.to_be_bytes());
        t.extend_from_slice(&0u32.to_be_bytes());
        for (numerator, denominator) in [(52u32, 1u32), (31, 1), (123_456, 10_000)] {
            t.extend_from_slice(&numerator.to_be_bytes());
            t.extend_from_slice(&denominator.to_be_bytes());
        }
        t
    }

    fn svg(body: &str) -> Result<Inspected, InspectError> {
        inspect_default(body.as_bytes())
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
    fn heic_is_recognised_and_sent_to_the_heic_path() {
        let heic = [ftyp(b"heic", &[b"mif1", b"heic"]), isobmff_box(b"mdat", &[0; 8])].concat();
        let heif = ftyp(b"mif1", &[b"mif1", b"miaf"]);
        // HEVC data in a file that claims to be AVIF is still HEIC.
        let hevc_in_avif = avif(40, 30, b"hvc1");
        for bytes in [heic, heif, hevc_in_avif] {
            let result = inspect_default(&bytes);
            // These are only containers (no HEVC data): with libheif they are
            // refused as damaged HEIC, without it as HEIC.
            if cfg!(feature = "heic") {
                assert!(matches!(&result, Err(InspectError::Malformed(m)) if m.starts_with("HEIC")), "{result:?}");
            } else {
                assert!(matches!(result, Err(InspectError::Heic)), "{result:?}");
            }
        }
        assert!(InspectError::Heic.to_string().contains("HEIC"));
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
    fn a_png_declaring_60000x60000_is_refused_from_its_header_fast() {
        let mut bomb = png(1, 1);
        bomb[16..20].copy_from_slice(&60_000u32.to_be_bytes());
        bomb[20..24].copy_from_slice(&60_000u32.to_be_bytes());
        let crc = crc32fast::hash(&bomb[12..29]);
        bomb[29..33].copy_from_slice(&crc.to_be_bytes());
        let started = Instant::now();
        let result = inspect_default(&bomb);
        assert!(started.elapsed() < Duration::from_secs(1), "took {:?}", started.elapsed());
        assert!(
            matches!(
                result,
                Err(InspectError::TooManyPixels { width: 60_000, height: 60_000, max_pixels: 100_000_000 })
            ),
            "{result:?}"
        );
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
    fn jpeg_gps_exif_is_dropped_and_only_the_orientation_is_kept() {
        let plain = jpeg(40, 30);
        let mut exif = b"Exif\0\0".to_vec();
        exif.extend(exif_with_gps(6));
        let mut upload = plain[..2].to_vec();
        upload.extend(jpeg_segment(0xE1, &exif));
        upload.extend(jpeg_segment(0xE1, b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta>SECRET XMP</x:xmpmeta>"));
        upload.extend(jpeg_segment(0xED, b"Photoshop 3.0\x008BIM SECRET IPTC"));
        upload.extend(jpeg_segment(0xFE, b"SECRET comment"));
        upload.extend_from_slice(&plain[2..]);
        // Phones append more images (with their own Exif) after the end.
        upload.extend_from_slice(b"\xFF\xD8\xFF\xE1 SECRET second image");

        let out = inspect_default(&upload).unwrap();
        assert_eq!(out.format, Format::Jpeg);
        assert_eq!((out.width, out.height), (40, 30));
        assert!(out.metadata_stripped);
        assert!(!contains(&out.bytes, b"SECRET"));
        assert!(!contains(&out.bytes, &123_456u32.to_be_bytes()), "GPS latitude left");
        // The encoder's own output with one minimal Exif (Orientation = 6)
        // where the camera's Exif was.
        let minimal = jpeg::orientation_segment(6);
        assert_eq!(out.bytes, [&plain[..2], &minimal[..], &plain[2..]].concat());
        let app1: Vec<_> = jpeg_header_segments(&out.bytes).into_iter().filter(|(marker, _)| *marker == 0xE1).collect();
        assert_eq!(app1.len(), 1);
        assert_eq!(app1[0].1.len(), 32);
        // Another reader sees the orientation and nothing else.
        let mut decoder = JpegDecoder::new(Cursor::new(&out.bytes)).unwrap();
        assert_eq!(decoder.orientation().unwrap(), Orientation::Rotate90);
        assert_eq!(jpeg::exif_orientation(&app1[0].1[6..]), Some(6));
        assert_eq!(pixels(&out.bytes), pixels(&upload));
        assert_eq!(pixels(&out.bytes), pixels(&plain));
    }

    #[test]
    fn jpeg_with_upright_exif_is_left_without_any_exif() {
        let plain = jpeg(24, 24);
        let mut exif = b"Exif\0\0".to_vec();
        exif.extend(exif_with_gps(1));
        let upload = [&plain[..2], &jpeg_segment(0xE1, &exif)[..], &plain[2..]].concat();
        let out = inspect_default(&upload).unwrap();
        assert_eq!(out.bytes, plain);
    }

    #[test]
    fn jpeg_icc_profile_and_adobe_segments_are_kept() {
        let plain = jpeg(24, 24);
        let icc = jpeg_segment(0xE2, b"ICC_PROFILE\0\x01\x01fake profile");
        let adobe = jpeg_segment(0xEE, b"Adobe\0\x64\0\0\0\0\x01");
        let mpf = jpeg_segment(0xE2, b"MPF\0II*\0");
        let upload = [&plain[..2], &icc[..], &mpf[..], &adobe[..], &plain[2..]].concat();
        let out = inspect_default(&upload).unwrap();
        assert_eq!(out.bytes, [&plain[..2], &icc[..], &adobe[..], &plain[2..]].concat());
    }

    #[test]
    fn png_text_time_and_exif_chunks_are_removed_pixels_unchanged() {
        let plain = png(32, 24);
        let physical = png_chunk(b"pHYs", &[0, 0, 0x0B, 0x13, 0, 0, 0x0B, 0x13, 1]);
        let upload = png_with(
            &plain,
            &[
                png_chunk(b"tEXt", b"Comment\0SECRET"),
                png_chunk(b"eXIf", &exif_with_gps(1)),
                physical.clone(),
                png_chunk(b"iTXt", b"XML:com.adobe.xmp\0\0\0\0\0SECRET"),
                png_chunk(b"zTXt", b"Author\0\0x"),
                png_chunk(b"tIME", &[7, 234, 1, 2, 3, 4, 5]),
            ],
        );
        let upload = [&upload[..], b"SECRET after IEND"].concat();
        let out = inspect_default(&upload).unwrap();
        assert_eq!((out.format, out.width, out.height), (Format::Png, 32, 24));
        assert!(out.metadata_stripped);
        // The encoder's output plus the kept pHYs, CRCs intact.
        assert_eq!(out.bytes, png_with(&plain, &[physical]));
        assert_eq!(pixels(&out.bytes), pixels(&plain));
    }

    #[test]
    fn webp_exif_and_xmp_chunks_are_removed_and_flags_cleared() {
        let simple = webp(20, 10);
        assert_eq!(&simple[12..16], b"VP8L");
        let image_chunk = &simple[12..];
        let mut vp8x = b"VP8X".to_vec();
        vp8x.extend_from_slice(&10u32.to_le_bytes());
        vp8x.extend_from_slice(&[0x08 | 0x04, 0, 0, 0]);
        vp8x.extend_from_slice(&19u32.to_le_bytes()[..3]);
        vp8x.extend_from_slice(&9u32.to_le_bytes()[..3]);
        let riff_chunk = |kind: &[u8; 4], data: &[u8]| {
            let mut c = kind.to_vec();
            c.extend_from_slice(&(data.len() as u32).to_le_bytes());
            c.extend_from_slice(data);
            if data.len() % 2 == 1 {
                c.push(0);
            }
            c
        };
        let exif = riff_chunk(b"EXIF", &exif_with_gps(1));
        let xmp = riff_chunk(b"XMP ", b"<x:xmpmeta>SECRET</x:xmpmeta>");
        let body = [&b"WEBP"[..], &vp8x, image_chunk, &exif, &xmp].concat();
        let upload = [&b"RIFF"[..], &(body.len() as u32).to_le_bytes(), &body].concat();
        assert_eq!(pixels(&upload), pixels(&simple));

        let out = inspect_default(&upload).unwrap();
        assert_eq!((out.format, out.width, out.height), (Format::Webp, 20, 10));
        assert!(!contains(&out.bytes, b"EXIF") && !contains(&out.bytes, b"XMP "));
        assert!(!contains(&out.bytes, b"SECRET"));
        assert_eq!(&out.bytes[12..16], b"VP8X");
        assert_eq!(out.bytes[20] & 0x0C, 0, "Exif/XMP flags left set");
        assert_eq!(le_u32(&out.bytes[4..8]) as usize, out.bytes.len() - 8);
        assert_eq!(pixels(&out.bytes), pixels(&simple));
    }

    #[test]
    fn gif_comments_and_foreign_application_extensions_are_removed_looping_kept() {
        let plain = gif(16, 8);
        let packed = plain[10];
        let blocks_at = 13 + if packed & 0x80 != 0 { 3 << ((packed & 7) + 1) } else { 0 };
        let comment = b"\x21\xFE\x06SECRET\x00";
        let xmp = b"\x21\xFF\x0BXMP DataXMP\x06SECRET\x00";
        let upload = [&plain[..blocks_at], comment, xmp, &plain[blocks_at..]].concat();
        let out = inspect_default(&upload).unwrap();
        assert_eq!(out.format, Format::Gif);
        assert_eq!(out.bytes, plain);
        assert!(contains(&out.bytes, b"NETSCAPE2.0"));
        assert_eq!(pixels(&out.bytes), pixels(&upload));
    }

    #[test]
    fn ico_png_icons_are_stripped_and_the_directory_rewritten() {
        let plain = ico(16, 16);
        let offset = le_u32(&plain[18..22]) as usize;
        let icon = png_with(&plain[offset..], &[png_chunk(b"tEXt", b"Comment\0SECRET")]);
        let mut upload = plain[..offset].to_vec();
        upload[14..18].copy_from_slice(&(icon.len() as u32).to_le_bytes());
        upload.extend(icon);
        let out = inspect_default(&upload).unwrap();
        assert_eq!((out.format, out.width, out.height), (Format::Ico, 16, 16));
        assert!(!contains(&out.bytes, b"SECRET"));
        assert_eq!(out.bytes, plain);
        assert_eq!(pixels(&out.bytes), pixels(&plain));
    }

    #[test]
    fn bmp_and_avif_are_stored_as_uploaded() {
        let bmp = bmp(8, 8);
        let out = inspect_default(&bmp).unwrap();
        assert_eq!(out.bytes, bmp);
        assert!(out.metadata_stripped, "BMP has no metadata to strip");
        let avif = avif(8, 8, b"av01");
        let out = inspect_default(&avif).unwrap();
        assert_eq!(out.bytes, avif);
        assert!(!out.metadata_stripped, "AVIF is not edited");
    }

    #[test]
    fn a_safe_svg_is_accepted_with_its_size() {
        let doc = r##"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" "http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd">
<!-- made by hand -->
<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink"
     width="120px" height="80" viewBox="0 0 12 8">
  <defs>
    <linearGradient id="g"><stop offset="0" stop-color="#fff"/><stop offset="1" stop-color="#000"/></linearGradient>
    <style>.a { fill: url(#g); stroke: url( '#g' ) }</style>
  </defs>
  <metadata><?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?></metadata>
  <rect class="a" width="12" height="8" style="opacity: .5" transform="rotate(45)"/>
  <use xlink:href="#g" href="#g"/>
  <image href="data:image/png;base64,iVBORw0KGgo=" width="1" height="1"/>
  <a href="#top"><text>Tom &amp; Jerry &#169;</text></a>
  <animate attributeName="opacity" from="0" to="1" dur="1s"/>
</svg>
"##;
        let out = svg(doc).unwrap();
        assert_eq!((out.format, out.width, out.height), (Format::Svg, 120, 80));
        assert_eq!(out.bytes, doc.as_bytes());
        assert!(!out.metadata_stripped);
    }

    #[test]
    fn svg_size_comes_from_width_height_then_viewbox_then_300x150() {
        let cases = [
            (r#"width="2in" height="1in""#, (192, 96)),
            (r#"viewBox="0 0 640 480""#, (640, 480)),
            (r#"width="100%" height="100%" viewBox="0,0,64,48""#, (64, 48)),
            (r#"width="200" viewBox="0 0 100 50""#, (200, 100)),
            (r#"height="10mm""#, (300, 38)),
            ("", (300, 150)),
        ];
        for (attributes, size) in cases {
            let doc = format!(r#"<svg xmlns="http://www.w3.org/2000/svg" {attributes}></svg>"#);
            let out = svg(&doc).unwrap_or_else(|e| panic!("{attributes}: {e}"));
            assert_eq!((out.width, out.height), size, "{attributes}");
        }
        let zero = svg(r#"<svg xmlns="http://www.w3.org/2000/svg" width="0" height="10"/>"#);
        assert!(matches!(zero, Err(InspectError::Malformed(_))), "{zero:?}");
    }

    #[test]
    fn each_unsafe_svg_is_refused() {
        let cases = [
            ("script", r#"<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>"#),
            (
                "namespaced script",
                r#"<svg xmlns="http://www.w3.org/2000/svg" xmlns:h="http://www.w3.org/1999/xhtml"><h:script>alert(1)</h:script></svg>"#,
            ),
            (
                "foreignObject",
                r#"<svg xmlns="http://www.w3.org/2000/svg"><foreignObject><div xmlns="http://www.w3.org/1999/xhtml">x</div></foreignObject></svg>"#,
            ),
            ("iframe", r#"<svg xmlns="http://www.w3.org/2000/svg"><iframe src="https://example.com"/></svg>"#),
            ("embed", r#"<svg xmlns="http://www.w3.org/2000/svg"><embed src="x.swf"/></svg>"#),
            ("object", r#"<svg xmlns="http://www.w3.org/2000/svg"><object data="x.html"/></svg>"#),
            ("onload", r#"<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>"#),
            ("onclick", r#"<svg xmlns="http://www.w3.org/2000/svg"><rect ONCLICK="alert(1)"/></svg>"#),
            (
                "javascript href",
                r#"<svg xmlns="http://www.w3.org/2000/svg"><a href="javascript:alert(1)"><text>x</text></a></svg>"#,
            ),
            (
                "obfuscated javascript",
                r#"<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink"><a xlink:href=" &#x6A;ava&#9;script:alert(1)"><text>x</text></a></svg>"#,
            ),
            (
                "data html",
                r#"<svg xmlns="http://www.w3.org/2000/svg"><a href="data:text/html,&lt;script&gt;alert(1)&lt;/script&gt;"><text>x</text></a></svg>"#,
            ),
            (
                "nested svg data",
                r#"<svg xmlns="http://www.w3.org/2000/svg"><use href="data:image/svg+xml;base64,PHN2Zz4="/></svg>"#,
            ),
            (
                "external http",
                r#"<svg xmlns="http://www.w3.org/2000/svg"><image href="http://tracker.example/pixel.png"/></svg>"#,
            ),
            (
                "external xlink",
                r#"<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink"><use xlink:href="https://evil.example/sprite.svg#icon"/></svg>"#,
            ),
            (
                "protocol-relative",
                r#"<svg xmlns="http://www.w3.org/2000/svg"><image href="//evil.example/x.png"/></svg>"#,
            ),
            (
                "xxe",
                r#"<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><svg xmlns="http://www.w3.org/2000/svg"><text>&xxe;</text></svg>"#,
            ),
            (
                "billion laughs",
                r#"<!DOCTYPE svg [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><svg xmlns="http://www.w3.org/2000/svg"><text>&b;</text></svg>"#,
            ),
            (
                "default attribute",
                r#"<!DOCTYPE svg [<!ATTLIST svg onload CDATA "alert(1)">]><svg xmlns="http://www.w3.org/2000/svg"/>"#,
            ),
            (
                "stylesheet",
                r#"<?xml-stylesheet type="text/xsl" href="https://evil.example/x.xsl"?><svg xmlns="http://www.w3.org/2000/svg"/>"#,
            ),
            (
                "css import",
                r#"<svg xmlns="http://www.w3.org/2000/svg"><style>@import url(https://evil.example/x.css);</style></svg>"#,
            ),
            (
                "css url",
                r#"<svg xmlns="http://www.w3.org/2000/svg"><style><![CDATA[rect { fill: url("https://evil.example/p.svg#p") }]]></style></svg>"#,
            ),
            (
                "css escape",
                r#"<svg xmlns="http://www.w3.org/2000/svg"><rect style="background: u\72 l(https://evil.example/x.png)"/></svg>"#,
            ),
            (
                "presentation url",
                r#"<svg xmlns="http://www.w3.org/2000/svg"><rect filter="url(https://evil.example/f.svg#f)"/></svg>"#,
            ),
            (
                "animated href",
                r#"<svg xmlns="http://www.w3.org/2000/svg"><a><set attributeName="href" to="javascript:alert(1)"/><text>x</text></a></svg>"#,
            ),
        ];
        for (name, doc) in cases {
            let result = svg(doc);
            assert!(matches!(result, Err(InspectError::UnsafeSvg(_))), "{name}: {result:?}");
        }
    }

    #[test]
    fn an_svg_over_the_size_limit_is_refused() {
        let limits = Limits { max_svg_bytes: 100, ..Limits::default() };
        let doc = format!(r#"<svg xmlns="http://www.w3.org/2000/svg">{}</svg>"#, "<g/>".repeat(100));
        let result = inspect(doc.into_bytes(), &limits);
        assert!(matches!(result, Err(InspectError::UnsafeSvg(_))), "{result:?}");
    }

    #[test]
    fn broken_svg_is_malformed() {
        let cases = [
            r#"<svg xmlns="http://www.w3.org/2000/svg"><g></svg>"#,
            r#"<svg xmlns="http://www.w3.org/2000/svg"><g>"#,
            r#"<svg xmlns="http://www.w3.org/2000/svg"/><svg/>"#,
            r#"<svg xmlns="http://www.w3.org/2000/svg"><text>&nbsp;</text></svg>"#,
        ];
        for doc in cases {
            let result = svg(doc);
            assert!(matches!(result, Err(InspectError::Malformed(_))), "{doc}: {result:?}");
        }
    }
}
