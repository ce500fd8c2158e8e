//! Types both imgcdn programs agree on, with no server framework in them.
//!
//! - [`id`]: image ids (8 random base62 chars), the 3-char shard derived
//!   from one, and teams' storage names (12 random chars).
//! - [`url`]: the public CDN path `/{storage}/{id}.{ext}` (or the older
//!   `/{shard}/{id}.{ext}`) and its parser.
//! - [`variant`]: transform parameters of a URL read into one canonical variant.
//! - [`format`]: the image formats we serve, their extensions and content types.
//! - [`manifest`]: `manifests/{id}.json`, the record that makes an object servable.
//! - [`storage`]: key layout in the stores and the OpenDAL store configuration.
//! - [`sync`]: the edge-sync wire format (visibility changes, snapshot, ack).
//!
//! The edge proxy and the control plane both depend on this crate; it
//! depends on neither (no pingora, axum or sqlx here).
#![forbid(unsafe_code)]

pub mod clock;
pub mod config;
pub mod format;
pub mod id;
pub mod manifest;
pub mod storage;
pub mod sync;
pub mod testing;
pub mod url;
pub mod variant;

pub use format::Format;
pub use id::{ImageId, Shard, StorageName};
pub use manifest::Manifest;
pub use url::{ImagePath, PathError, Segment};
