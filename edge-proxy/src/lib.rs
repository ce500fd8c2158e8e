//! The imgcdn edge proxy: serves `/{storage}/{id}.{ext}` to the world from
//! a memory tier, a disk tier and the origin store, and records nothing
//! about who asks.
//!
//! - [`config`]: [`EdgeConfig`], its defaults and validation.
//! - [`cache`]: the memory (SIEVE) and disk tiers.
//! - [`origin`]: reads from the public store through OpenDAL, single-flight
//!   and bounded.
//! - [`tiers`]: memory → disk → origin lookups, fills and purges.
//! - [`variants`]: transforms by URL query, bounded, single-flight, cached.
//! - [`budget`]: the bound on response body bytes held for sending.
//! - [`serve`]: the pingora HTTP app and HTTP semantics (ETag, Range, …),
//!   pipelining, and the connection limits of the public listeners
//!   ([`serve::conn`]: connection cap, request-head deadline).
//! - [`sync`]: takedowns and hidden images from the control plane, enforced
//!   on every request before any tier.
//! - [`admin`]: `/metrics`, `/healthz`, `/readyz` on a separate listener.
//! - [`server`]: puts it together; [`Edge::build`] then [`Edge::run`].
//!
//! ```no_run
//! use imgcdn_edge::{Edge, EdgeConfig};
//! let edge = Edge::build(&EdgeConfig::default()).unwrap();
//! edge.run(Box::new(pingora_core::server::UnixShutdownSignalWatch));
//! ```
//!
//! Privacy: no code in this crate reads a client address, and no log line,
//! metric label or file it writes carries one. The binary additionally
//! redacts anything address-shaped from every log line (pingora itself logs
//! peer addresses in a few error paths).
// Unsafe code is denied everywhere but in `serve::sendfile`, which makes
// the three system calls (`sendfile`, `send` with `MSG_MORE`, `fstat`) that
// have no safe wrapper on a raw socket descriptor.
#![deny(unsafe_code)]

pub mod admin;
pub mod budget;
pub mod cache;
pub mod clock;
pub mod config;
pub mod flight;
pub mod metrics;
pub mod origin;
pub mod readiness;
pub mod serve;
pub mod server;
pub mod sync;
pub mod tiers;
pub mod variants;

pub use config::EdgeConfig;
pub use server::{Edge, StartError};
