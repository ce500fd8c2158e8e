//! Images: upload, import, inspection, storage, the Images API and plans.
//!
//! - [`inspect`]: what a file really is (format, size, bombs, metadata).
//! - [`heic`]: HEIC/HEIF photos, converted to JPEG.
//! - [`fetch`]: importing by URL, public addresses only.
//! - [`idempotency`]: `Idempotency-Key` on image creation.
//! - [`store`]: the public and recovery stores (publish, unpublish).
//! - [`object`]: the Image object of API.md.
//! - [`routes`]: `/v1/images…`, `/v1/usage`, the legacy `/v1/upload`, the viewer page.
//! - [`sweep`]: interrupted uploads and deletes, expired images.
//! - [`ttl`]: `ttl` parsing.

pub mod fetch;
pub mod heic;
pub mod idempotency;
pub mod inspect;
pub mod object;
pub mod routes;
pub mod store;
pub mod sweep;
pub mod ttl;
