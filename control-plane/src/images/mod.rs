//! Images: the domain of an uploaded image, from upload to recovery.
//!
//! - [`row`]: an image as the database holds it, its status and visibility;
//!   [`queries`]: every query on the `images` table.
//! - [`lifecycle`]: the one way to change what may be served (edit, delete,
//!   operator decisions, the sweep's repairs), with the store ordering rule.
//! - [`upload`]: admission (rate limits, quota), import, and storing a new
//!   image; [`fields`]: the owner's fields; [`ttl`]: parsing a `ttl`
//!   (the expiry it leads to is [`crate::retention::policy`]'s).
//! - [`import`]: fetching a URL for an import, public addresses only.
//! - [`budget`]: memory budgets for upload bodies and image decoding.
//! - [`idempotency`]: `Idempotency-Key` on image creation.
//! - [`store`]: the public and recovery stores (publish, withdraw, unpublish).
//! - [`object`]: the Image object of API.md and its legacy form.
//!
//! Inspecting the bytes (format, size limits, metadata stripping, SVG
//! safety, HEIC) is the `imgcdn-media` crate's job.

pub mod budget;
pub mod fields;
pub mod idempotency;
pub mod import;
pub mod lifecycle;
pub mod object;
pub mod queries;
pub mod row;
pub mod store;
pub mod ttl;
pub mod upload;
