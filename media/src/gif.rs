//! GIF: a walk over the blocks (without decompressing image data).

use crate::types::{malformed, truncated, InspectError};

const EXTENSION: u8 = 0x21;
const IMAGE: u8 = 0x2C;
const TRAILER: u8 = 0x3B;
const COMMENT: u8 = 0xFE;
const APPLICATION: u8 = 0xFF;
/// Application extensions that only say how often an animation loops.
const LOOPING: [&[u8; 11]; 2] = [b"NETSCAPE2.0", b"ANIMEXTS1.0"];

pub(crate) fn strip(b: &[u8]) -> Result<Vec<u8>, InspectError> {
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

#[cfg(test)]
mod tests {
    use imgcdn_shared::Format;

    use crate::testutil::*;

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
}
