//! What every module shares: the limits, the verdict, the error, and the
//! pixel check. It sits below `inspect` and `heic` so that neither has to
//! import the other's types.

use std::fmt;

use imgcdn_shared::Format;

/// What [`inspect`](crate::inspect()) accepts.
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
    /// The size the image is shown at: for a JPEG whose Exif orientation
    /// turns it a quarter, the stored pixels' height and width.
    pub width: u32,
    pub height: u32,
    /// What to store: the upload with metadata stripped where that can be
    /// done losslessly (see the crate docs), else the upload as it came.
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

/// Refuse an empty image or one over [`Limits::max_pixels`].
pub(crate) fn check_pixels(width: u32, height: u32, limits: &Limits) -> Result<(), InspectError> {
    check_not_empty(width, height)?;
    if u64::from(width) * u64::from(height) > limits.max_pixels {
        return Err(InspectError::TooManyPixels { width, height, max_pixels: limits.max_pixels });
    }
    Ok(())
}

/// Refuse an image without pixels (a zero width or height).
pub(crate) fn check_not_empty(width: u32, height: u32) -> Result<(), InspectError> {
    if width == 0 || height == 0 {
        return Err(malformed(format!("the image has no pixels ({width}x{height})")));
    }
    Ok(())
}

pub(crate) fn malformed(message: impl Into<String>) -> InspectError {
    InspectError::Malformed(message.into())
}

pub(crate) fn truncated(what: &str) -> InspectError {
    malformed(format!("{what}: the file ends too early (truncated?)"))
}
