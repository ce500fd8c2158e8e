//! Retention: how long images and personal data are kept, and the sweep
//! that ends them.
//!
//! - [`policy`]: the one pure function that decides an image's window, its
//!   configuration (`[retention]`), and the retention table it prints;
//! - [`subject`]: what the policy needs about an image, read from the
//!   database (is its uploader verified, its team's plan);
//! - [`recompute`]: new windows after a verified email or a plan change;
//! - [`sweep`]: the leased pass that expires, reaps and deletes what is due;
//! - [`lease`]: named leases so one control plane sweeps at a time.

pub mod lease;
pub mod policy;
pub mod recompute;
pub mod subject;
pub mod sweep;
