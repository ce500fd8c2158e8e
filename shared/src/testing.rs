//! Image fixtures for tests and benchmarks: valid files built from
//! nothing but the standard library, so no test needs an encoder crate.

/// The manifest of a PNG `body` (1×1 as far as the edge cares), expiring at
/// `expires_at`: sha256 and length right, so an edge verifies and serves it.
pub fn png_manifest(body: &[u8], expires_at: Option<time::OffsetDateTime>) -> crate::Manifest {
    use sha2::{Digest, Sha256};
    crate::Manifest {
        content_type: "image/png".into(),
        bytes: body.len() as u64,
        sha256: hex::encode(Sha256::digest(body)),
        width: 1,
        height: 1,
        expires_at,
        transformable: true,
        object: None,
        storage: None,
        shard_url: false,
    }
}

/// A valid PNG of `w`×`h` with noisy pixels (so it does not compress away).
pub fn png(w: u32, h: u32, seed: u8) -> Vec<u8> {
    // Odd and distinct for every seed (xorshift needs a non-zero state).
    let mut x = (u32::from(seed) << 1) | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x as u8
    };
    png_of(w, h, |_, _| [next(), next(), next()])
}

/// A PNG that looks like a picture (a sky, a sun, hills; colours by
/// `seed`), for pages whose screenshots people look at.
pub fn picture(w: u32, h: u32, seed: u8) -> Vec<u8> {
    let hue = u32::from(seed).wrapping_mul(53) % 256;
    let (sun_x, sun_y, sun_r) = (w as f32 * 0.7, h as f32 * 0.3, h.min(w) as f32 * 0.12);
    png_of(w, h, |x, y| {
        let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
        let hill = 0.65 + 0.08 * (fx * 7.0 + hue as f32).sin() + 0.05 * (fx * 17.0).cos();
        if fy > hill {
            let shade = (1.0 - fy) * 120.0;
            [(30.0 + shade * 0.3) as u8, (90.0 + shade) as u8, (40.0 + shade * 0.2) as u8]
        } else if ((x as f32 - sun_x).powi(2) + (y as f32 - sun_y).powi(2)).sqrt() < sun_r {
            [255, 214, 102]
        } else {
            let t = fy / hill;
            [(40.0 + t * 180.0 + hue as f32 * 0.1) as u8, (110.0 + t * 100.0) as u8, (200.0 + t * 40.0) as u8]
        }
    })
}

/// A valid PNG of `w`×`h` whose pixel at (x, y) is `rgb(x, y)`.
pub fn png_of(w: u32, h: u32, mut rgb: impl FnMut(u32, u32) -> [u8; 3]) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let crc = crc32(&out[start..]);
        out.extend_from_slice(&crc.to_be_bytes());
    }
    fn adler(data: &[u8]) -> u32 {
        let (mut a, mut b) = (1u32, 0u32);
        for &d in data {
            a = (a + u32::from(d)) % 65521;
            b = (b + a) % 65521;
        }
        (b << 16) | a
    }
    let mut raw = Vec::new();
    for y in 0..h {
        // Filter byte 0 (none), then the row's RGB samples.
        raw.push(0);
        for x in 0..w {
            raw.extend_from_slice(&rgb(x, y));
        }
    }
    // zlib stream of stored (uncompressed) deflate blocks.
    let mut z = vec![0x78, 0x01];
    for (i, block) in raw.chunks(65535).enumerate() {
        let last = (i + 1) * 65535 >= raw.len();
        z.push(u8::from(last));
        z.extend_from_slice(&(block.len() as u16).to_le_bytes());
        z.extend_from_slice(&(!(block.len() as u16)).to_le_bytes());
        z.extend_from_slice(block);
    }
    z.extend_from_slice(&adler(&raw).to_be_bytes());
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &z);
    chunk(&mut out, b"IEND", &[]);
    out
}

/// [`png`] with a `tEXt` chunk (`key`, `value`) after the header: metadata
/// an upload must strip.
pub fn png_with_text(w: u32, h: u32, seed: u8, key: &str, value: &str) -> Vec<u8> {
    let plain = png(w, h, seed);
    // Signature (8) + IHDR chunk (4 + 4 + 13 + 4).
    let at = 8 + 25;
    let mut data = key.as_bytes().to_vec();
    data.push(0);
    data.extend_from_slice(value.as_bytes());
    let mut chunk = (data.len() as u32).to_be_bytes().to_vec();
    let mut typed = b"tEXt".to_vec();
    typed.extend_from_slice(&data);
    chunk.extend_from_slice(&typed);
    chunk.extend_from_slice(&crc32(&typed).to_be_bytes());
    let mut out = plain[..at].to_vec();
    out.extend_from_slice(&chunk);
    out.extend_from_slice(&plain[at..]);
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xffff_ffffu32;
    for &b in data {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 { 0xedb8_8320 ^ (c >> 1) } else { c >> 1 };
        }
    }
    !c
}
