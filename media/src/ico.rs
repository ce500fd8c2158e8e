//! ICO: the directory and every icon, rewritten with PNG icons stripped.

use crate::bytes::{le_u16, le_u32};
use crate::png;
use crate::types::{malformed, truncated, InspectError};

const DIRECTORY_ENTRY: usize = 16;

pub(crate) fn strip(b: &[u8]) -> Result<Vec<u8>, InspectError> {
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

#[cfg(test)]
mod tests {
    use imgcdn_shared::Format;

    use crate::bytes::le_u32;
    use crate::testutil::*;

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
}
