//! WebP: a walk over the RIFF chunks.

use crate::bytes::le_u32;
use crate::types::{malformed, truncated, InspectError};

const EXIF_FLAG: u8 = 0x08;
const XMP_FLAG: u8 = 0x04;

/// The WebP without `EXIF` and `XMP ` chunks, the RIFF size and the
/// `VP8X` flags made to match.
pub(crate) fn strip(b: &[u8]) -> Result<Vec<u8>, InspectError> {
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

#[cfg(test)]
mod tests {
    use imgcdn_shared::Format;

    use crate::bytes::le_u32;
    use crate::testutil::*;

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
}
