//! ISO base media files (HEIF, AVIF): brands and, for AVIF, the container
//! checks that stand in for decoding.

use crate::bytes::be_u32;
use crate::types::{malformed, truncated, InspectError};

pub(crate) enum Family {
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
pub(crate) fn family(b: &[u8]) -> Option<Family> {
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
pub(crate) fn avif_size(file: &[u8]) -> Result<(u32, u32), InspectError> {
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
        // HEVC inside a file branded AVIF is still HEIC (`inspect` sends
        // it to the HEIC path).
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
    let ispe =
        properties.iter().find(|p| &p.kind == b"ispe").ok_or_else(|| missing("size (ispe) for the primary item"))?;
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
                        let index =
                            if flags & 1 != 0 { usize::from(r.u16()? & 0x7FFF) } else { usize::from(r.u8()? & 0x7F) };
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
pub(crate) struct BoxRef<'a> {
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

#[cfg(test)]
mod tests {
    use crate::testutil::*;
    use crate::InspectError;

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
    fn avif_is_stored_as_uploaded() {
        let avif = avif(8, 8, b"av01");
        let out = inspect_default(&avif).unwrap();
        assert_eq!(out.bytes, avif);
        assert!(!out.metadata_stripped, "AVIF is not edited");
    }
}
