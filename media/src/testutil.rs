//! Fixtures for the tests of every module: real files from `image`'s
//! encoders, hand-built containers and metadata blocks.

use image::codecs::bmp::BmpEncoder;
use image::codecs::gif::{GifEncoder, Repeat};
use image::codecs::ico::IcoEncoder;
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::codecs::webp::WebPEncoder;
use image::{ExtendedColorType, ImageEncoder, RgbImage};

use crate::{inspect, InspectError, Inspected, Limits};

pub(crate) fn inspect_default(bytes: &[u8]) -> Result<Inspected, InspectError> {
    inspect(bytes.to_vec(), &Limits::default())
}

/// A picture with detail everywhere, so that any change to the pixels shows.
pub(crate) fn picture(width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| image::Rgb([(x * 7 + y) as u8, (y * 5) as u8, ((x ^ y) * 3) as u8]))
}

pub(crate) fn jpeg(width: u32, height: u32) -> Vec<u8> {
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, 90).encode_image(&picture(width, height)).unwrap();
    out
}

pub(crate) fn png(width: u32, height: u32) -> Vec<u8> {
    let mut out = Vec::new();
    PngEncoder::new(&mut out)
        .write_image(picture(width, height).as_raw(), width, height, ExtendedColorType::Rgb8)
        .unwrap();
    out
}

pub(crate) fn gif(width: u32, height: u32) -> Vec<u8> {
    let rgba = image::DynamicImage::ImageRgb8(picture(width, height)).to_rgba8();
    let mut out = Vec::new();
    {
        let mut encoder = GifEncoder::new(&mut out);
        encoder.set_repeat(Repeat::Infinite).unwrap();
        encoder.encode_frame(image::Frame::new(rgba)).unwrap();
    }
    out
}

pub(crate) fn webp(width: u32, height: u32) -> Vec<u8> {
    let mut out = Vec::new();
    WebPEncoder::new_lossless(&mut out)
        .encode(picture(width, height).as_raw(), width, height, ExtendedColorType::Rgb8)
        .unwrap();
    out
}

pub(crate) fn bmp(width: u32, height: u32) -> Vec<u8> {
    let mut out = Vec::new();
    BmpEncoder::new(&mut out).encode(picture(width, height).as_raw(), width, height, ExtendedColorType::Rgb8).unwrap();
    out
}

pub(crate) fn ico(width: u32, height: u32) -> Vec<u8> {
    let rgba = image::DynamicImage::ImageRgb8(picture(width, height)).to_rgba8();
    let mut out = Vec::new();
    IcoEncoder::new(&mut out).write_image(rgba.as_raw(), width, height, ExtendedColorType::Rgba8).unwrap();
    out
}

pub(crate) fn isobmff_box(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut b = ((body.len() + 8) as u32).to_be_bytes().to_vec();
    b.extend_from_slice(kind);
    b.extend_from_slice(body);
    b
}

pub(crate) fn full_box(kind: &[u8; 4], version: u8, body: &[u8]) -> Vec<u8> {
    let mut with_header = vec![version, 0, 0, 0];
    with_header.extend_from_slice(body);
    isobmff_box(kind, &with_header)
}

pub(crate) fn ftyp(major: &[u8; 4], compatible: &[&[u8; 4]]) -> Vec<u8> {
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
pub(crate) fn avif(width: u32, height: u32, item_type: &[u8; 4]) -> Vec<u8> {
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

pub(crate) fn pixels(bytes: &[u8]) -> Vec<u8> {
    image::load_from_memory(bytes).unwrap().to_rgba8().into_raw()
}

pub(crate) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

pub(crate) fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut c = (data.len() as u32).to_be_bytes().to_vec();
    c.extend_from_slice(kind);
    c.extend_from_slice(data);
    let crc = crc32fast::hash(&c[4..]);
    c.extend_from_slice(&crc.to_be_bytes());
    c
}

/// `png` with `extra` chunks right after IHDR (which ends 33 bytes in).
pub(crate) fn png_with(png: &[u8], extra: &[Vec<u8>]) -> Vec<u8> {
    let mut out = png[..33].to_vec();
    for c in extra {
        out.extend_from_slice(c);
    }
    out.extend_from_slice(&png[33..]);
    out
}

pub(crate) fn jpeg_segment(marker: u8, payload: &[u8]) -> Vec<u8> {
    let mut s = vec![0xFF, marker];
    s.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
    s.extend_from_slice(payload);
    s
}

/// The marker and payload of each segment before the first scan.
pub(crate) fn jpeg_header_segments(jpeg: &[u8]) -> Vec<(u8, Vec<u8>)> {
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
pub(crate) fn jpeg_segment_at(jpeg: &[u8], marker: u8) -> usize {
    let mut pos = 2;
    while jpeg[pos + 1] != marker {
        pos += 2 + usize::from(u16::from_be_bytes([jpeg[pos + 2], jpeg[pos + 3]]));
    }
    pos + 4
}

/// A big-endian Exif TIFF block as a camera writes it: IFD0 with the
/// camera make, the orientation and a pointer to a GPS IFD holding a
/// latitude (52° 31' 12.3456").
pub(crate) fn exif_with_gps(orientation: u16) -> Vec<u8> {
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

pub(crate) fn svg(body: &str) -> Result<Inspected, InspectError> {
    inspect_default(body.as_bytes())
}
