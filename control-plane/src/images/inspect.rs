//! What an uploaded file really is, read from its bytes.
//!
//! Interim version: detects raster formats and reads dimensions from the
//! header (refusing decompression bombs before any decoding). The full
//! inspector (decoding, metadata stripping, SVG safety) replaces it.

use imgcdn_shared::Format;

pub struct Limits {
    pub max_pixels: u64,
    pub max_svg_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_pixels: 100_000_000,
            max_svg_bytes: 10 * 1024 * 1024,
        }
    }
}

pub struct Inspected {
    pub format: Format,
    pub width: u32,
    pub height: u32,
    pub bytes: Vec<u8>,
    pub metadata_stripped: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("This is not an image format we accept (JPEG, PNG, GIF, WebP, AVIF, BMP, ICO).")]
    Unsupported,
    #[error("HEIC images are not accepted yet: convert to JPEG first.")]
    Heic,
    #[error("The image is damaged or incomplete: {0}")]
    Malformed(String),
    #[error("The image is {width}×{height} pixels; at most {max_pixels} pixels are accepted.")]
    TooManyPixels {
        width: u32,
        height: u32,
        max_pixels: u64,
    },
    #[error("This SVG is not accepted: {0}")]
    UnsafeSvg(String),
}

pub fn inspect(bytes: Vec<u8>, limits: &Limits) -> Result<Inspected, InspectError> {
    use imagesize::ImageType as T;
    let format = match imagesize::image_type(&bytes).map_err(|_| InspectError::Unsupported)? {
        T::Jpeg => Format::Jpeg,
        T::Png => Format::Png,
        T::Gif => Format::Gif,
        T::Webp => Format::Webp,
        T::Bmp => Format::Bmp,
        T::Ico => Format::Ico,
        T::Heif(imagesize::Compression::Av1) => Format::Avif,
        T::Heif(_) => return Err(InspectError::Heic),
        _ => return Err(InspectError::Unsupported),
    };
    let size = imagesize::blob_size(&bytes).map_err(|e| InspectError::Malformed(e.to_string()))?;
    let (width, height) = (size.width as u32, size.height as u32);
    if width == 0 || height == 0 {
        return Err(InspectError::Malformed("zero width or height".into()));
    }
    if u64::from(width) * u64::from(height) > limits.max_pixels {
        return Err(InspectError::TooManyPixels {
            width,
            height,
            max_pixels: limits.max_pixels,
        });
    }
    Ok(Inspected {
        format,
        width,
        height,
        bytes,
        metadata_stripped: false,
    })
}
