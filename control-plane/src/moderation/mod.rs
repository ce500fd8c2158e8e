//! Content safety: nothing is public before it is classified, what was
//! removed stays removed, and operators review what needs a person.
//!
//! - [`classify`]: the classifier interface and how verdicts combine;
//!   [`pipeline`]: the configured classifiers and the verdicts they leave;
//!   [`blocklist`]: the SHA-256 and PDQ hash blocklist; [`nudity`]: the
//!   nudity detector; [`hook`]: an external HTTP classifier; [`jobs`]:
//!   slow classification as leased jobs; [`config`]: `[moderation]`.
//! - [`decisions`]: operator and classification decisions through the
//!   image lifecycle, takedowns that reach every copy.
//! - [`queue`]: opening review items; [`review`]: the review queue, its
//!   decisions and its append-only log.
//! - [`reports`]: abuse reports and DMCA notices, counter-notices, strikes.

pub mod blocklist;
pub mod classify;
pub mod config;
pub mod decisions;
pub mod hook;
pub mod jobs;
pub mod nudity;
pub mod pipeline;
pub mod queue;
pub mod reports;
pub mod review;

pub use decisions::{apply_reaching_copies, decide, decide_upload, image_state, parse_decision, takedowns, MAX_NOTE};
