//! PNG: a walk over the chunks, checking every CRC.

use crate::bytes::be_u32;
use crate::types::{malformed, truncated, InspectError};

pub(crate) const SIGNATURE: [u8; 8] = *b"\x89PNG\r\n\x1a\n";

/// Metadata chunks. `caBX` is a C2PA manifest (it can embed Exif and
/// location); `dSIG` signs the file as it was, so it no longer matches.
const DROPPED: [&[u8; 4]; 7] = [b"eXIf", b"tEXt", b"zTXt", b"iTXt", b"tIME", b"caBX", b"dSIG"];

/// The PNG without metadata chunks, ending at `IEND`.
pub(crate) fn strip(b: &[u8]) -> Result<Vec<u8>, InspectError> {
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
            return Err(malformed(format!("PNG: the {} chunk is damaged (bad CRC)", String::from_utf8_lossy(&kind))));
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use imgcdn_shared::Format;

    use crate::testutil::*;
    use crate::InspectError;

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
}
