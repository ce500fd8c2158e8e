//! Classifiers behind one interface, and how their verdicts combine.
//!
//! A [`Classifier`] looks at an upload ([`Input`]: its bytes and, for
//! raster images, its decoded pixels) and says [`Verdict`]: clean,
//! restricted or prohibited, with a category, a score and which classifier
//! said it. The verdicts of one upload combine into its classification:
//! the worst wins (prohibited > restricted > clean; an error counts as
//! nothing said), written `clean`, `restricted:{category}` or
//! `prohibited:{category}`. The policy ([`super::config::ModerationConfig`])
//! maps the classification to an outcome.
//!
//! Fast classifiers (the hash blocklist, the in-process nudity detector)
//! run during the upload; slow ones (the HTTP hook) run as a leased job
//! afterwards ([`super::jobs`]), the upload answering `processing` until
//! they are done.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;

/// An upload, as classifiers see it.
pub struct Input {
    /// The bytes that would be stored (metadata stripped).
    pub bytes: Arc<Vec<u8>>,
    pub content_type: String,
    /// Decoded RGB8 pixels (raster images only; none for SVG and AVIF).
    pub pixels: Option<Arc<Pixels>>,
}

/// Decoded pixels, RGB8, scaled down to at most [`CLASSIFY_SIDE`].
pub use imgcdn_media::Pixels;

/// The longer side of the pixels classifiers get: enough for the nudity
/// detector (320) and PDQ (which reduces to 64×64 anyway), and bounded in
/// CPU and memory whatever the upload's size.
pub const CLASSIFY_SIDE: u32 = 1024;

/// The nudity detector's name: its verdict is what `nsfw` reports.
pub const NUDITY: &str = "nudity";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// The classifier could not say (timeout, error, no pixels to look at).
    Error,
    Clean,
    Restricted,
    Prohibited,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Error => "error",
            Kind::Clean => "clean",
            Kind::Restricted => "restricted",
            Kind::Prohibited => "prohibited",
        }
    }
}

/// What one classifier said about one upload.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    pub classifier: String,
    pub kind: Kind,
    pub category: Option<String>,
    pub score: Option<f64>,
    /// Why (for operators): the matched list entry, the label, the error.
    pub detail: Option<String>,
}

impl Verdict {
    pub fn clean(classifier: &str, score: Option<f64>) -> Verdict {
        Verdict { classifier: classifier.into(), kind: Kind::Clean, category: None, score, detail: None }
    }

    pub fn flagged(
        classifier: &str,
        kind: Kind,
        category: &str,
        score: Option<f64>,
        detail: Option<String>,
    ) -> Verdict {
        Verdict { classifier: classifier.into(), kind, category: Some(category.into()), score, detail }
    }

    pub fn error(classifier: &str, detail: impl Into<String>) -> Verdict {
        Verdict {
            classifier: classifier.into(),
            kind: Kind::Error,
            category: None,
            score: None,
            detail: Some(detail.into()),
        }
    }
}

/// The classification of all `verdicts`: the worst wins, `clean` if none
/// flagged anything; `None` if no classifier could say anything at all.
pub fn combine(verdicts: &[Verdict]) -> Option<String> {
    let worst = verdicts
        .iter()
        .filter(|v| v.kind != Kind::Error)
        .max_by(|a, b| a.kind.cmp(&b.kind).then_with(|| a.score.unwrap_or(0.0).total_cmp(&b.score.unwrap_or(0.0))))?;
    Some(match (&worst.kind, &worst.category) {
        (Kind::Clean, _) | (_, None) => worst.kind.as_str().to_string(),
        (kind, Some(category)) => format!("{}:{category}", kind.as_str()),
    })
}

/// Whether the nudity detector flagged the upload: `Some(true)` restricted
/// for nudity, `Some(false)` looked and found none, `None` unknown.
pub fn nsfw(verdicts: &[Verdict]) -> Option<bool> {
    verdicts.iter().find(|v| v.classifier == NUDITY && v.kind != Kind::Error).map(|v| v.kind != Kind::Clean)
}

/// Something that classifies uploads.
#[async_trait]
pub trait Classifier: Send + Sync {
    /// How verdicts and logs name it.
    fn name(&self) -> &'static str;
    /// Slow classifiers run as a job after the upload answered.
    fn is_slow(&self) -> bool;
    async fn classify(&self, input: &Input) -> Verdict;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_verdict_wins_and_errors_say_nothing() {
        let clean = Verdict::clean("a", Some(0.1));
        let nude = Verdict::flagged("nudity", Kind::Restricted, "nudity", Some(0.8), None);
        let bad = Verdict::flagged("hook", Kind::Prohibited, "csam", Some(0.99), None);
        let err = Verdict::error("hook", "timeout");
        assert_eq!(combine(std::slice::from_ref(&clean)).as_deref(), Some("clean"));
        assert_eq!(combine(&[clean.clone(), nude.clone()]).as_deref(), Some("restricted:nudity"));
        assert_eq!(combine(&[nude.clone(), bad, clean.clone()]).as_deref(), Some("prohibited:csam"));
        assert_eq!(combine(std::slice::from_ref(&err)), None);
        assert_eq!(combine(&[err, clean]).as_deref(), Some("clean"));
        assert_eq!(combine(&[]), None);
        assert_eq!(nsfw(&[nude]), Some(true));
        assert_eq!(nsfw(&[Verdict::clean("nudity", Some(0.01))]), Some(false));
        assert_eq!(nsfw(&[Verdict::error("nudity", "no pixels")]), None);
    }
}
