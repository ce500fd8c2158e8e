//! People's rights over their data (the privacy policy's "Your Rights"):
//!
//! - [`deletion`]: reversible account deletion, erasure after the grace
//!   period (or at once, for an account reported as a child's);
//! - [`export`]: a machine-readable copy of everything held about a person;
//! - [`rectify`]: changing the email address (confirmed from the new one,
//!   the old one told), restriction of and objection to processing;
//! - [`requests`]: rights requests received by email, tracked to their
//!   legal deadline;
//! - [`config`]: `[privacy]` (grace period, export window, subprocessors).

pub mod config;
pub mod deletion;
pub mod export;
pub mod rectify;
pub mod requests;
