//! `/v1/images…`, `/v1/usage` and the legacy `/v1/upload` and `/v1/import`.
//!
//! - [`create`]: upload and import (multipart or JSON `{url}`), with
//!   `Idempotency-Key`, in the current and the legacy response shapes;
//! - [`form`]: reading an upload's body (the file streams and is cut off
//!   at the plan's limit, never buffered whole past it);
//! - [`manage`]: list, get, edit, delete, batch delete, usage.

pub mod create;
pub mod form;
pub mod manage;
