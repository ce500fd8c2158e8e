//! imgcdn's image code: what uploaded bytes really are, whether we accept
//! them, and the bytes to store. Pure byte-in, bytes-out code with no HTTP,
//! database or async runtime, shared by the control plane (uploads and
//! imports) and, for transforms, the edge.
//!
//! # Use
//!
//! ```
//! use imgcdn_media::{inspect, probe, Format, InspectError, Limits};
//!
//! # fn run(upload: Vec<u8>) -> Result<(), InspectError> {
//! // Cheap: the format and the size its header declares, nothing decoded.
//! let (format, width, height) = probe(&upload)?;
//! // The gate before storage: checks, decodes and strips metadata.
//! let accepted = inspect(upload, &Limits::default())?;
//! assert_eq!((accepted.width, accepted.height), (width, height));
//! store(accepted.format, &accepted.bytes);
//! # Ok(())
//! # }
//! # fn store(_: Format, _: &[u8]) {}
//! ```
//!
//! [`inspect()`] is CPU-bound (it decodes the whole image): call it from
//! `tokio::task::spawn_blocking`, not on an async worker. [`probe`] only
//! reads headers and does **not** apply the rules below (no decoding, no
//! stripping, no SVG safety check): it is for tools that only need the
//! format and size, never a reason to store or serve bytes.
//!
//! # The rules
//!
//! [`inspect()`] is the one gate between an upload (or an import) and
//! storage. It owns these rules:
//!
//! - **The format comes from the bytes** (magic numbers and structure), never
//!   from a file name or a declared content type, so an upload cannot make
//!   the edge serve it under a type it is not. Accepted: JPEG, PNG, GIF,
//!   WebP, AVIF, SVG, BMP, ICO, and HEIC/HEIF, which is converted to JPEG
//!   (see [`heic`]; without the `heic` feature it is refused with its
//!   own error, [`InspectError::Heic`]).
//! - **Decompression bombs are refused from the header**: the declared
//!   width × height is checked against [`Limits::max_pixels`] before any
//!   pixel is decoded or any pixel buffer allocated.
//! - **Raster formats we can decode are decoded in full** (JPEG, PNG, GIF,
//!   WebP, BMP, ICO; for GIF and animated WebP/PNG the first frame), under
//!   `image`'s memory limits, so a truncated or corrupt file is refused
//!   rather than stored. The bytes decoded are the bytes stored. AVIF is only
//!   validated as a container (header, primary item, its size, all item data
//!   inside the file): decoding AV1 needs dav1d, a C library.
//! - **Camera/GPS metadata is stripped without touching pixels** (no
//!   re-encoding, so no quality loss):
//!   - JPEG: Exif and XMP (APP1), IPTC/Photoshop (APP13), comments (COM),
//!     every other application segment and anything after the end of the
//!     image (where phones append Multi-Picture/gain-map images with their
//!     own Exif) are dropped. Kept: APP0 JFIF/JFXX, APP2 ICC profiles and
//!     APP14 Adobe (it says how colours are encoded). An Exif orientation
//!     other than 1 is kept as a new minimal Exif holding only that tag, so
//!     photos from phones are not shown rotated.
//!   - PNG: `eXIf`, `tEXt`, `zTXt`, `iTXt`, `tIME`, `caBX` (C2PA manifests,
//!     which can carry Exif and location) and `dSIG` (a signature that no
//!     longer matches) chunks and anything after `IEND` are dropped; colour
//!     chunks (`iCCP`, `gAMA`, `cHRM`, `sRGB`), `pHYs`, APNG chunks and
//!     unknown chunks are kept byte for byte, so every CRC stays valid.
//!   - WebP: `EXIF` and `XMP ` chunks are dropped from the RIFF container,
//!     the RIFF size is rewritten and the Exif/XMP flags in `VP8X` cleared.
//!   - GIF: comment extensions and application extensions other than the
//!     `NETSCAPE2.0`/`ANIMEXTS1.0` loop count are dropped (this includes XMP
//!     and ICC application extensions), as is anything after the trailer.
//!   - ICO: PNG-compressed icons are stripped as PNG and the directory is
//!     rewritten; BMP-style icons carry no metadata.
//!   - BMP carries no camera metadata: stored as uploaded.
//!   - AVIF: stored as uploaded, [`Inspected::metadata_stripped`] is false.
//!     Exif and XMP are items located by offsets in `iloc`; removing them
//!     means rewriting the container, which we do not do without a decoder
//!     to check the result.
//!   - SVG: stored as uploaded, [`Inspected::metadata_stripped`] is false
//!     (`<metadata>` elements are kept). SVG carries no camera data but can
//!     carry script, so it is checked instead (next point).
//! - **SVG must be safe to serve from our origin**: at most
//!   [`Limits::max_svg_bytes`], UTF-8, well-formed XML with an `<svg>` root,
//!   and none of: `<script>`, `<foreignObject>`, `<iframe>`, `<embed>`,
//!   `<object>` (and other HTML elements that load or run things), `on*`
//!   event-handler attributes, animations that set `href` or an event
//!   handler, an internal DTD subset (entities: XXE and billion laughs; a
//!   plain `<!DOCTYPE svg PUBLIC …>` is fine), `xml-stylesheet` processing
//!   instructions, CSS `@import`, and references that leave the document:
//!   `href`s and CSS `url()`s must point inside it (`#id`) or be embedded
//!   raster images or fonts (`data:image/png`, …). The edge also serves SVG
//!   with a sandboxing CSP; this is defence in depth.
//!
//! Width and height are the stored image's, as its header declares them
//! (for JPEG before any Exif rotation is applied; for GIF the logical
//! screen; for ICO the icon `image` decodes, the largest; for SVG the
//! `width`/`height` attributes in CSS pixels, else the `viewBox`, else the
//! SVG default of 300 × 150). [`probe`] reports the same size.
//!
//! # Modules
//!
//! - [`inspect`](mod@inspect): [`inspect()`], [`probe`], format detection,
//!   the raster decode; re-exports the types below.
//! - [`heic`]: HEIC/HEIF photos, converted to JPEG (cargo feature `heic`,
//!   on by default; needs the system libheif).
//! - One private module per container: `jpeg`, `png`, `webp`, `gif`, `ico`,
//!   `isobmff` (AVIF and the HEIF brands), `svg`.

#![forbid(unsafe_code)]

mod bytes;
mod gif;
pub mod heic;
mod ico;
pub mod inspect;
mod isobmff;
mod jpeg;
mod png;
mod svg;
#[cfg(feature = "transform")]
pub mod transform;
mod types;
mod webp;

#[cfg(test)]
mod testutil;

pub use imgcdn_shared::Format;
pub use inspect::{decode_cost, inspect, inspect_with_pixels, probe, Pixels};
pub use types::{InspectError, Inspected, Limits};
