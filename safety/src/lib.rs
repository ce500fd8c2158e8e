//! Content-safety classification primitives for imgcdn.
//!
//! This crate owns the two signals the upload pipeline and the control plane
//! use to judge an image's content, as plain functions over decoded pixels:
//!
//! * [`pdq`]: Meta's PDQ perceptual hash, bit-for-bit equal to Meta's
//!   reference, for matching uploads against hash lists shared by industry
//!   programmes (and our own takedowns). [`pdq::hash_rgb8`] hashes,
//!   [`pdq::Pdq::distance`] compares; distances up to
//!   [`pdq::DEFAULT_MATCH_THRESHOLD`] (31) count as the same picture.
//! * [`nudity`]: the NudeNet detector ([`nudity::Detector`]), giving per-label
//!   scores and [`nudity::Detections::sexual_exposure`], the score policies
//!   compare with thresholds.
//!
//! Both take tightly packed RGB8 pixels (`width * height * 3` bytes), so the
//! caller decodes once (with whatever it uses, e.g. `imgcdn-media`) and this
//! crate needs no image codecs. Neither does I/O, except
//! [`nudity::Detector::load`] reading the model file. Both are CPU-bound and
//! synchronous: async callers run them on a blocking pool
//! (`tokio::task::spawn_blocking`). A `Detector` is `Send + Sync`; load it
//! once and share it.
//!
//! ```no_run
//! use imgcdn_safety::{nudity, pdq};
//! // Pixels from any decoder: here a 64×48 mid-grey picture.
//! let (width, height) = (64u32, 48u32);
//! let rgb = vec![128u8; (width * height * 3) as usize];
//! let (hash, quality) = pdq::hash_rgb8(width, height, &rgb);
//! println!("pdq {hash} quality {quality}");
//!
//! let path = nudity::default_model_path().expect("HOME or IMGCDN_NUDITY_MODEL");
//! let detector = nudity::Detector::load(&path)?;
//! let found = detector.detect_rgb8(width, height, &rgb)?;
//! if found.sexual_exposure() >= 0.6 {
//!     // hold for review
//! }
//! # Ok::<(), nudity::Error>(())
//! ```
//!
//! # The nudity model is installed by the operator
//!
//! NudeNet's model (`320n.onnx`, 12 MB, from PyPI's `nudenet` 3.4.2) is
//! licensed AGPL-3.0. Shipping it inside imgcdn, in the repository, a
//! package or an image, would put imgcdn under the AGPL's terms, so it is
//! never bundled: the operator installs it with `scripts/fetch-models`
//! (which verifies its SHA-256, [`nudity::NUDENET_320N_SHA256`]) and imgcdn
//! loads it at run time from [`nudity::default_model_path`] or a configured
//! path. Without it, nudity detection is unavailable and
//! [`nudity::Detector::load`] says so ([`nudity::Error::ModelMissing`]);
//! PDQ needs no model.
//!
//! # Cost
//!
//! Measured on one core of the project's 2-core machine (release build,
//! `cargo bench -p imgcdn-safety`): PDQ hashes about 1700 images/s at
//! 320×240, 420/s at 640×480, 140/s at 1024×768 and 11/s at 4000×3000 (it
//! is linear in the pixel count); the detector runs about 28 inferences/s
//! (35 ms each) whatever the image size, since it sees a 320×320 copy.
//! Loading the model takes about 0.2 s.

mod letterbox;
pub mod nudity;
pub mod pdq;
