//! The nudity detector as a classifier: a model the operator installs
//! (`moderation.nudity.model`; see `imgcdn-safety`) scores the decoded
//! pixels, and an explicit-exposure score at or over the threshold makes
//! the upload `restricted:nudity` (`nsfw: true`). Fast enough to run during
//! the upload, on a blocking thread. Without a model the detector is off,
//! says so at start, and `nsfw` stays unknown (null): never a guess.

use std::sync::Arc;

use async_trait::async_trait;

use super::classify::{Classifier, Input, Kind, Pixels, Verdict, NUDITY};

pub const NAME: &str = NUDITY;

/// A model that scores pixels for explicit exposure.
pub trait NudityModel: Send + Sync {
    /// The highest explicit-exposure score (0–1) and the label that had it.
    fn sexual_exposure(&self, pixels: &Pixels) -> Result<(f32, String), String>;
}

pub struct NudityClassifier {
    model: Arc<dyn NudityModel>,
    threshold: f32,
}

impl NudityClassifier {
    pub fn new(model: Arc<dyn NudityModel>, threshold: f32) -> NudityClassifier {
        NudityClassifier { model, threshold }
    }
}

#[async_trait]
impl Classifier for NudityClassifier {
    fn name(&self) -> &'static str {
        NAME
    }

    fn is_slow(&self) -> bool {
        false
    }

    async fn classify(&self, input: &Input) -> Verdict {
        let Some(pixels) = input.pixels.clone() else {
            return Verdict::error(NAME, "no pixels to look at (not a raster image we decode)");
        };
        let model = self.model.clone();
        match tokio::task::spawn_blocking(move || model.sexual_exposure(&pixels)).await {
            Ok(Ok((score, label))) if score >= self.threshold => {
                Verdict::flagged(NAME, Kind::Restricted, "nudity", Some(f64::from(score)), Some(label))
            }
            Ok(Ok((score, _))) => Verdict::clean(NAME, Some(f64::from(score))),
            Ok(Err(e)) => Verdict::error(NAME, e),
            Err(e) => Verdict::error(NAME, format!("detector task: {e}")),
        }
    }
}

/// Load the NudeNet detector from `path` (see `imgcdn-safety`).
pub fn load(path: &std::path::Path) -> Result<Arc<dyn NudityModel>, String> {
    let detector = imgcdn_safety::nudity::Detector::load(path).map_err(|e| e.to_string())?;
    Ok(Arc::new(NudeNet(detector)))
}

struct NudeNet(imgcdn_safety::nudity::Detector);

impl NudityModel for NudeNet {
    fn sexual_exposure(&self, p: &Pixels) -> Result<(f32, String), String> {
        use imgcdn_safety::nudity::Label;
        let found = self.0.detect_rgb8(p.width, p.height, &p.rgb).map_err(|e| e.to_string())?;
        let (label, score) = Label::SEXUAL_EXPOSURE
            .iter()
            .map(|&l| (l, found.score(l)))
            .fold((Label::SEXUAL_EXPOSURE[0], 0.0f32), |best, x| if x.1 > best.1 { x } else { best });
        Ok((score, label.as_str().to_string()))
    }
}
