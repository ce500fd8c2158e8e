//! The HTTP API's handlers, one module per resource. Each takes its caller
//! from [`crate::auth`], reads and checks the request, calls the domain and
//! shapes the answer; the rules live in the domain modules.
//!
//! - [`accounts`], [`sessions`]: `/v1/auth/…`, `/v1/me`, `/v1/sessions…`
//! - [`keys`], [`teams`]: `/v1/teams…`, `/v1/keys`, `/v1/whoami`
//! - [`images`]: `/v1/images…`, `/v1/usage`, `/v1/upload`, `/v1/import`
//! - [`safety`]: `/v1/reports`, `/v1/dmca…` (anyone)
//! - [`privacy`]: `/v1/me/deletion…`, `/v1/me/export…`, `/v1/me/email…`, `/subprocessors`
//! - [`edge_sync`]: `/v1/edge/…` (edges); [`admin`]: `/v1/admin/…` (operators)
//! - [`cursor`]: the pagination cursors lists share

pub mod accounts;
pub mod admin;
pub mod cursor;
pub mod edge_sync;
pub mod images;
pub mod keys;
pub mod privacy;
pub mod safety;
pub mod sessions;
pub mod teams;
