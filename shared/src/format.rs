//! The image formats imgcdn serves: URL extension ↔ content type.
//!
//! HEIC originals are served as JPEG (see API.md), so there is no `heic`
//! extension at the edge.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Jpeg,
    Png,
    Gif,
    Webp,
    Avif,
    Svg,
    Bmp,
    Ico,
}

impl Format {
    pub const ALL: [Format; 8] =
        [Format::Jpeg, Format::Png, Format::Gif, Format::Webp, Format::Avif, Format::Svg, Format::Bmp, Format::Ico];

    /// Parse a URL extension (lowercase only: URLs are case-sensitive and
    /// one spelling per object keeps one cache entry per object).
    pub fn from_extension(ext: &[u8]) -> Option<Format> {
        Some(match ext {
            b"jpg" | b"jpeg" => Format::Jpeg,
            b"png" => Format::Png,
            b"gif" => Format::Gif,
            b"webp" => Format::Webp,
            b"avif" => Format::Avif,
            b"svg" => Format::Svg,
            b"bmp" => Format::Bmp,
            b"ico" => Format::Ico,
            _ => return None,
        })
    }

    /// The canonical extension used when building URLs.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Jpeg => "jpg",
            Format::Png => "png",
            Format::Gif => "gif",
            Format::Webp => "webp",
            Format::Avif => "avif",
            Format::Svg => "svg",
            Format::Bmp => "bmp",
            Format::Ico => "ico",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Jpeg => "image/jpeg",
            Format::Png => "image/png",
            Format::Gif => "image/gif",
            Format::Webp => "image/webp",
            Format::Avif => "image/avif",
            Format::Svg => "image/svg+xml",
            Format::Bmp => "image/bmp",
            Format::Ico => "image/x-icon",
        }
    }

    pub fn from_content_type(ct: &str) -> Option<Format> {
        let base = ct.split(';').next().unwrap_or("").trim();
        Format::ALL.into_iter().find(|f| f.content_type().eq_ignore_ascii_case(base)).or(match base {
            "image/vnd.microsoft.icon" => Some(Format::Ico),
            "image/jpg" => Some(Format::Jpeg),
            _ => None,
        })
    }

    /// Whether the edge may resize/re-encode this format (SVG, BMP and ICO
    /// are served as stored).
    pub fn transformable(self) -> bool {
        !matches!(self, Format::Svg | Format::Bmp | Format::Ico)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extension_and_content_type_round_trip() {
        for f in Format::ALL {
            assert_eq!(Format::from_extension(f.extension().as_bytes()), Some(f));
            assert_eq!(Format::from_content_type(f.content_type()), Some(f));
        }
        assert_eq!(Format::from_extension(b"jpeg"), Some(Format::Jpeg));
        assert_eq!(Format::from_extension(b"JPG"), None);
        assert_eq!(Format::from_extension(b"heic"), None);
        assert_eq!(Format::from_extension(b"exe"), None);
        assert_eq!(Format::from_content_type("image/png; charset=x"), Some(Format::Png));
        assert_eq!(Format::from_content_type("text/html"), None);
    }
}
