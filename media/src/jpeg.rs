//! JPEG: a walk over all segments, including those between and after the
//! scans of a progressive image.

use crate::types::{malformed, truncated, InspectError};

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
pub(crate) fn strip(b: &[u8]) -> Result<Vec<u8>, InspectError> {
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
            0x00 | SOI => return Err(malformed(format!("JPEG: unexpected marker 0x{marker:02X} at byte {}", pos - 1))),
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
pub(crate) fn exif_orientation(tiff: &[u8]) -> Option<u16> {
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

/// The Exif orientation a JPEG that [`strip`] wrote keeps (1 when none):
/// 5–8 mean it is shown turned a quarter, its width and height swapped.
pub(crate) fn kept_orientation(b: &[u8]) -> u16 {
    let mut pos = 2;
    while pos + 4 <= b.len() && b[pos] == 0xFF {
        let marker = b[pos + 1];
        if marker == SOS || marker == EOI {
            break;
        }
        let len = usize::from(u16::from_be_bytes([b[pos + 2], b[pos + 3]]));
        let Some(payload) = b.get(pos + 4..pos + 2 + len) else { break };
        if marker == APP1 && payload.starts_with(EXIF) {
            return exif_orientation(&payload[EXIF.len()..]).unwrap_or(1);
        }
        pos += 2 + len;
    }
    1
}

/// An APP1 segment with an Exif block that holds only IFD0 with only
/// the Orientation tag.
pub(crate) fn orientation_segment(orientation: u16) -> Vec<u8> {
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

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use image::codecs::jpeg::JpegDecoder;
    use image::metadata::Orientation;
    use image::ImageDecoder;
    use imgcdn_shared::Format;

    use crate::testutil::*;

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
        // Orientation 6 turns it a quarter: shown 30 wide and 40 high.
        assert_eq!((out.width, out.height), (30, 40));
        assert_eq!(super::kept_orientation(&out.bytes), 6);
        assert_eq!(super::kept_orientation(&plain), 1);
        assert!(out.metadata_stripped);
        assert!(!contains(&out.bytes, b"SECRET"));
        assert!(!contains(&out.bytes, &123_456u32.to_be_bytes()), "GPS latitude left");
        // The encoder's own output with one minimal Exif (Orientation = 6)
        // where the camera's Exif was.
        let minimal = super::orientation_segment(6);
        assert_eq!(out.bytes, [&plain[..2], &minimal[..], &plain[2..]].concat());
        let app1: Vec<_> = jpeg_header_segments(&out.bytes).into_iter().filter(|(marker, _)| *marker == 0xE1).collect();
        assert_eq!(app1.len(), 1);
        assert_eq!(app1[0].1.len(), 32);
        // Another reader sees the orientation and nothing else.
        let mut decoder = JpegDecoder::new(Cursor::new(&out.bytes)).unwrap();
        assert_eq!(decoder.orientation().unwrap(), Orientation::Rotate90);
        assert_eq!(super::exif_orientation(&app1[0].1[6..]), Some(6));
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
}
