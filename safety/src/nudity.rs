//! Nudity detection with the NudeNet detector (YOLOv8n, 18 labels), run in
//! pure Rust by `tract`.
//!
//! The model is not part of imgcdn: NudeNet's files are AGPL-3.0, so the
//! operator installs it (`scripts/fetch-models` puts `320n.onnx` from PyPI's
//! `nudenet` 3.4.2 at [`default_model_path`]) and imgcdn loads it at run time.
//!
//! [`Detector::detect_rgb8`] reproduces `nudenet.NudeDetector.detect` (3.4.2)
//! step by step, so its scores are NudeNet's (within ±0.02, checked against
//! NudeNet's own Python on the same images):
//! * preprocessing as NudeNet's OpenCV calls do it, down to OpenCV's
//!   fixed-point bilinear resize (pad to a square with black at the right or
//!   bottom, resize to 320×320, B, G, R planes scaled by 1/255; the model
//!   input is bit-identical to NudeNet's);
//! * for each of the 2100 anchors, the best label if its score is ≥ 0.2,
//!   its box mapped back to image pixels and clipped to the image;
//! * class-agnostic non-maximum suppression as `cv2.dnn.NMSBoxes` with score
//!   threshold 0.25 and IoU threshold 0.45.
//!
//! [`Detections`] keeps the surviving boxes and, per label, the best score
//! among them (0 when none), which is what a NudeNet user sees; plus the
//! highest raw score any anchor gave each label, for thresholds below
//! NudeNet's 0.25 floor.
//!
//! A [`Detector`] is `Send + Sync` and [`Detector::detect_rgb8`] takes `&self`:
//! load it once and share it (e.g. in an `Arc`) between threads; each call
//! runs on the calling thread (one core, about 35 ms in release builds).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;

use crate::letterbox::letterbox_bgr_planar;

/// Side of the square image the model sees.
pub const INPUT_SIDE: usize = 320;
/// Anchors the model scores at 320×320: 40² + 20² + 10².
const ANCHORS: usize = 2100;
/// Anchors scoring below this are dropped before suppression (NudeNet).
const CANDIDATE_SCORE: f32 = 0.2;
/// Boxes must score above this to survive suppression (NudeNet's NMSBoxes).
const NMS_SCORE: f32 = 0.25;
/// A box overlapping a better one by more than this IoU is suppressed.
const NMS_IOU: f64 = 0.45;

/// SHA-256 of `nudenet/320n.onnx` in PyPI's `nudenet` 3.4.2 wheel, the model
/// this module is written and tested for.
pub const NUDENET_320N_SHA256: &str = "c15d8273adad2d0a92f014cc69ab2d6c311a06777a55545f2c4eb46f51911f0f";

/// Where the model is looked for when no path is configured:
/// `$IMGCDN_NUDITY_MODEL` if set, else `$IMGCDN_MODEL_DIR/nudenet-320n.onnx`,
/// else `$HOME/.cache/imgcdn/models/nudenet-320n.onnx` (where
/// `scripts/fetch-models` puts it). `None` when none of these variables is
/// set. The file may not exist.
pub fn default_model_path() -> Option<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(p) = var("IMGCDN_NUDITY_MODEL") {
        return Some(PathBuf::from(p));
    }
    let dir = match var("IMGCDN_MODEL_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(var("HOME")?).join(".cache/imgcdn/models"),
    };
    Some(dir.join("nudenet-320n.onnx"))
}

/// NudeNet's 18 labels, in the model's output order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Label {
    FemaleGenitaliaCovered,
    FaceFemale,
    ButtocksExposed,
    FemaleBreastExposed,
    FemaleGenitaliaExposed,
    MaleBreastExposed,
    AnusExposed,
    FeetExposed,
    BellyCovered,
    FeetCovered,
    ArmpitsCovered,
    ArmpitsExposed,
    FaceMale,
    BellyExposed,
    MaleGenitaliaExposed,
    AnusCovered,
    FemaleBreastCovered,
    ButtocksCovered,
}

impl Label {
    /// All labels, in the model's output order (`ALL[i]` is class `i`).
    pub const ALL: [Label; 18] = [
        Label::FemaleGenitaliaCovered,
        Label::FaceFemale,
        Label::ButtocksExposed,
        Label::FemaleBreastExposed,
        Label::FemaleGenitaliaExposed,
        Label::MaleBreastExposed,
        Label::AnusExposed,
        Label::FeetExposed,
        Label::BellyCovered,
        Label::FeetCovered,
        Label::ArmpitsCovered,
        Label::ArmpitsExposed,
        Label::FaceMale,
        Label::BellyExposed,
        Label::MaleGenitaliaExposed,
        Label::AnusCovered,
        Label::FemaleBreastCovered,
        Label::ButtocksCovered,
    ];

    /// The labels whose exposure counts as sexual: what
    /// [`Detections::sexual_exposure`] takes the maximum over.
    pub const SEXUAL_EXPOSURE: [Label; 5] = [
        Label::FemaleBreastExposed,
        Label::FemaleGenitaliaExposed,
        Label::MaleGenitaliaExposed,
        Label::ButtocksExposed,
        Label::AnusExposed,
    ];

    /// NudeNet's name for the label, e.g. `"FEMALE_BREAST_EXPOSED"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Label::FemaleGenitaliaCovered => "FEMALE_GENITALIA_COVERED",
            Label::FaceFemale => "FACE_FEMALE",
            Label::ButtocksExposed => "BUTTOCKS_EXPOSED",
            Label::FemaleBreastExposed => "FEMALE_BREAST_EXPOSED",
            Label::FemaleGenitaliaExposed => "FEMALE_GENITALIA_EXPOSED",
            Label::MaleBreastExposed => "MALE_BREAST_EXPOSED",
            Label::AnusExposed => "ANUS_EXPOSED",
            Label::FeetExposed => "FEET_EXPOSED",
            Label::BellyCovered => "BELLY_COVERED",
            Label::FeetCovered => "FEET_COVERED",
            Label::ArmpitsCovered => "ARMPITS_COVERED",
            Label::ArmpitsExposed => "ARMPITS_EXPOSED",
            Label::FaceMale => "FACE_MALE",
            Label::BellyExposed => "BELLY_EXPOSED",
            Label::MaleGenitaliaExposed => "MALE_GENITALIA_EXPOSED",
            Label::AnusCovered => "ANUS_COVERED",
            Label::FemaleBreastCovered => "FEMALE_BREAST_COVERED",
            Label::ButtocksCovered => "BUTTOCKS_COVERED",
        }
    }

    /// The label NudeNet calls `name`.
    pub fn from_name(name: &str) -> Option<Label> {
        Label::ALL.into_iter().find(|l| l.as_str() == name)
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One box that survived suppression, in the input image's pixels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Detection {
    pub label: Label,
    pub score: f32,
    /// Left, top, width, height, clipped to the image.
    pub x: f32,
    pub y: f32,
    pub width: f32,
    pub height: f32,
}

/// What the detector found in one image.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Detections {
    best: [f32; 18],
    peak: [f32; 18],
    boxes: Vec<Detection>,
}

impl Detections {
    /// Best score among the label's boxes, 0 if it has none. Boxes need a
    /// score above 0.25 (NudeNet's threshold), so scores are 0 or > 0.25.
    pub fn score(&self, label: Label) -> f32 {
        self.best[label.index()]
    }

    /// The highest score any anchor gave the label, before NudeNet's
    /// thresholds and suppression (so never below [`Detections::score`]).
    pub fn peak_score(&self, label: Label) -> f32 {
        self.peak[label.index()]
    }

    /// Max of [`Detections::score`] over [`Label::SEXUAL_EXPOSURE`].
    pub fn sexual_exposure(&self) -> f32 {
        Label::SEXUAL_EXPOSURE.iter().map(|&l| self.score(l)).fold(0.0, f32::max)
    }

    /// `(label, best score)` for every label, in [`Label::ALL`] order.
    pub fn scores(&self) -> impl Iterator<Item = (Label, f32)> + '_ {
        Label::ALL.into_iter().map(|l| (l, self.score(l)))
    }

    /// The boxes, best first (NudeNet's `detect` output).
    pub fn boxes(&self) -> &[Detection] {
        &self.boxes
    }
}

/// Why the detector could not load or run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("nudity model not found at {0} (operators install it: scripts/fetch-models)")]
    ModelMissing(PathBuf),
    #[error("cannot read nudity model {path}: {source}")]
    ModelRead { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a usable ONNX model: {reason}")]
    NotOnnx { path: PathBuf, reason: String },
    #[error("{path} is not the NudeNet 320n detector: {reason}")]
    WrongShape { path: PathBuf, reason: String },
    #[error("invalid image: {0}")]
    InvalidImage(String),
    #[error("nudity model failed: {0}")]
    Inference(String),
}

/// The NudeNet detector, loaded and optimised for 320×320 input.
#[derive(Clone)]
pub struct Detector {
    plan: Arc<TypedSimplePlan>,
}

impl fmt::Debug for Detector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Detector(nudenet-320n)")
    }
}

impl Detector {
    /// Loads NudeNet's `320n.onnx` (see [`default_model_path`]) and optimises
    /// it for 320×320 input. Takes about 0.2 s (2 s in a debug build): do it
    /// once at start-up.
    pub fn load(path: impl AsRef<Path>) -> Result<Detector, Error> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                Error::ModelMissing(path.to_owned())
            } else {
                Error::ModelRead { path: path.to_owned(), source }
            }
        })?;
        let not_onnx = |e: TractError| Error::NotOnnx { path: path.to_owned(), reason: format!("{e:#}") };
        let wrong = |reason: String| Error::WrongShape { path: path.to_owned(), reason };

        // Value-info shapes in this export are symbolic expressions that
        // tract cannot use; the graph's own inputs and outputs suffice.
        let model =
            tract_onnx::onnx().with_ignore_value_info(true).model_for_read(&mut &bytes[..]).map_err(not_onnx)?;
        if model.inputs.len() != 1 || model.outputs.len() != 1 {
            return Err(wrong(format!(
                "{} inputs and {} outputs, expected one of each",
                model.inputs.len(),
                model.outputs.len()
            )));
        }
        let declared = model.input_fact(0).map_err(not_onnx)?;
        let dims: Vec<String> = declared.shape.dims().map(|d| format!("{d:?}")).collect();
        let channels_ok = declared.shape.rank().concretize() == Some(4)
            && declared.shape.dims().nth(1).and_then(|d| d.concretize()).is_some_and(|d| d == 3.to_dim());
        if !channels_ok {
            return Err(wrong(format!("input is [{}], expected [batch, 3, height, width]", dims.join(", "))));
        }
        let side = INPUT_SIDE as i64;
        let typed = model
            .with_input_fact(0, f32::fact([1, 3, side, side]).into())
            .and_then(|m| m.into_optimized())
            .map_err(|e| wrong(format!("does not take a 1x3x320x320 image: {e:#}")))?;
        let out = typed.output_fact(0).map_err(not_onnx)?;
        let want = [1usize, 4 + Label::ALL.len(), ANCHORS];
        if out.datum_type != f32::datum_type() || out.shape.as_concrete() != Some(&want[..]) {
            return Err(wrong(format!(
                "output is {out:?}, expected f32 {want:?} (4 box values + 18 labels per anchor)"
            )));
        }
        let plan = typed.into_runnable().map_err(not_onnx)?;
        Ok(Detector { plan })
    }

    /// Detects on an image given as tightly packed RGB8 pixels (row-major,
    /// 3 bytes per pixel, no row padding), as decoded from the upload.
    pub fn detect_rgb8(&self, width: u32, height: u32, rgb: &[u8]) -> Result<Detections, Error> {
        let (w, h) = (width as usize, height as usize);
        if w == 0 || h == 0 {
            return Err(Error::InvalidImage(format!("{width}x{height} has no pixels")));
        }
        if w.checked_mul(h).and_then(|n| n.checked_mul(3)) != Some(rgb.len()) {
            return Err(Error::InvalidImage(format!(
                "{width}x{height} RGB8 needs {width}*{height}*3 bytes, got {}",
                rgb.len()
            )));
        }
        let input = letterbox_bgr_planar(w, h, rgb, INPUT_SIDE);
        let tensor = Tensor::from_shape(&[1, 3, INPUT_SIDE, INPUT_SIDE], &input).map_err(inference)?;
        let outputs = self.plan.run(tvec!(tensor.into())).map_err(inference)?;
        let plain = outputs[0].try_as_plain_ram().map_err(inference)?;
        let raw = plain.as_slice::<f32>().map_err(inference)?;
        Ok(postprocess(raw, w, h))
    }
}

fn inference(e: TractError) -> Error {
    Error::Inference(format!("{e:#}"))
}

/// A candidate box before suppression, as NudeNet computes it (`f32`).
struct Candidate {
    class: usize,
    score: f32,
    rect: [f64; 4],
}

/// NudeNet's `_postprocess`: `raw` is the model output `[1, 22, 2100]`.
fn postprocess(raw: &[f32], width: usize, height: usize) -> Detections {
    let classes = Label::ALL.len();
    let at = |row: usize, anchor: usize| raw[row * ANCHORS + anchor];
    let square = width.max(height) as f32;
    let side = INPUT_SIDE as f32;
    let (wf, hf) = (width as f32, height as f32);
    let mut detections = Detections::default();
    let mut candidates = Vec::new();
    for a in 0..ANCHORS {
        // First maximum, like np.argmax.
        let (mut class, mut score) = (0, at(4, a));
        for c in 1..classes {
            let s = at(4 + c, a);
            if s > score {
                (class, score) = (c, s);
            }
        }
        for c in 0..classes {
            let p = &mut detections.peak[c];
            *p = p.max(at(4 + c, a));
        }
        if score < CANDIDATE_SCORE {
            continue;
        }
        let (cx, cy, bw, bh) = (at(0, a), at(1, a), at(2, a), at(3, a));
        // Centre to corner, model pixels to image pixels, clip, in f32 as
        // NumPy does it.
        let x = (cx - bw / 2.0) * square / side;
        let y = (cy - bh / 2.0) * square / side;
        let bw = bw * square / side;
        let bh = bh * square / side;
        let x = x.min(wf).max(0.0);
        let y = y.min(hf).max(0.0);
        let bw = bw.min(wf - x);
        let bh = bh.min(hf - y);
        candidates.push(Candidate { class, score, rect: [f64::from(x), f64::from(y), f64::from(bw), f64::from(bh)] });
    }
    for i in nms(&candidates) {
        let c = &candidates[i];
        let label = Label::ALL[c.class];
        let best = &mut detections.best[c.class];
        *best = best.max(c.score);
        let [x, y, w, h] = c.rect.map(|v| v as f32);
        detections.boxes.push(Detection { label, score: c.score, x, y, width: w, height: h });
    }
    detections
}

/// `cv2.dnn.NMSBoxes(boxes, scores, 0.25, 0.45)`: candidates scoring above
/// 0.25, best first (stable), each kept unless it overlaps a kept one by more
/// than 0.45 IoU. Returns indices into `candidates`.
fn nms(candidates: &[Candidate]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..candidates.len()).filter(|&i| candidates[i].score > NMS_SCORE).collect();
    order.sort_by(|&a, &b| candidates[b].score.total_cmp(&candidates[a].score));
    let mut kept: Vec<usize> = Vec::new();
    for i in order {
        if kept.iter().all(|&k| iou(&candidates[i].rect, &candidates[k].rect) <= NMS_IOU) {
            kept.push(i);
        }
    }
    kept
}

/// Intersection over union of two `[x, y, w, h]` rectangles, as OpenCV's
/// `Rect2d` computes it (0 when both are empty).
fn iou(a: &[f64; 4], b: &[f64; 4]) -> f64 {
    let (area_a, area_b) = (a[2] * a[3], b[2] * b[3]);
    if area_a + area_b <= f64::EPSILON {
        return 1.0;
    }
    let x1 = a[0].max(b[0]);
    let y1 = a[1].max(b[1]);
    let w = (a[0] + a[2]).min(b[0] + b[2]) - x1;
    let h = (a[1] + a[3]).min(b[1] + b[3]) - y1;
    let inter = if w <= 0.0 || h <= 0.0 { 0.0 } else { w * h };
    inter / (area_a + area_b - inter)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn detector_is_send_and_sync() {
        assert_send_sync::<Detector>();
        assert_send_sync::<Detections>();
    }

    #[test]
    fn label_names_round_trip() {
        for (i, l) in Label::ALL.into_iter().enumerate() {
            assert_eq!(l.index(), i);
            assert_eq!(Label::from_name(l.as_str()), Some(l));
        }
        assert_eq!(Label::FemaleBreastExposed.to_string(), "FEMALE_BREAST_EXPOSED");
        assert_eq!(Label::from_name("NOPE"), None);
    }

    #[test]
    fn missing_and_garbage_models_give_clear_errors() {
        let missing = Detector::load("/nonexistent/nudenet-320n.onnx").unwrap_err();
        assert!(matches!(missing, Error::ModelMissing(_)), "{missing}");
        assert!(missing.to_string().contains("scripts/fetch-models"));

        let dir = std::env::temp_dir().join(format!("imgcdn-safety-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let garbage = dir.join("garbage.onnx");
        std::fs::write(&garbage, b"this is not a protobuf \xff\xff\xff").unwrap();
        let err = Detector::load(&garbage).unwrap_err();
        assert!(matches!(err, Error::NotOnnx { .. }), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }

    /// A synthetic model output with the given (anchor, class, score, box).
    fn output(entries: &[(usize, usize, f32, [f32; 4])]) -> Vec<f32> {
        let mut raw = vec![0f32; 22 * ANCHORS];
        for &(a, c, s, b) in entries {
            for (k, v) in b.into_iter().enumerate() {
                raw[k * ANCHORS + a] = v;
            }
            raw[(4 + c) * ANCHORS + a] = s;
        }
        raw
    }

    #[test]
    fn postprocess_thresholds_suppresses_and_scales() {
        let breast = Label::FemaleBreastExposed.index();
        let face = Label::FaceFemale.index();
        let raw = output(&[
            // Two overlapping boxes: the weaker one, of another label, goes.
            (0, breast, 0.9, [100.0, 100.0, 40.0, 40.0]),
            (1, face, 0.8, [102.0, 101.0, 40.0, 40.0]),
            // Apart: kept.
            (2, face, 0.7, [250.0, 250.0, 20.0, 20.0]),
            // Candidate (>= 0.2) but not above NMS's 0.25: dropped.
            (3, breast, 0.22, [10.0, 10.0, 5.0, 5.0]),
        ]);
        // A 640x480 image: the square is 640, twice the model's 320.
        let d = postprocess(&raw, 640, 480);
        assert_eq!(d.boxes().len(), 2);
        assert_eq!(d.score(Label::FemaleBreastExposed), 0.9);
        assert_eq!(d.score(Label::FaceFemale), 0.7);
        assert_eq!(d.peak_score(Label::FaceFemale), 0.8);
        assert_eq!(d.sexual_exposure(), 0.9);
        let b = d.boxes()[0];
        assert_eq!((b.x, b.y, b.width, b.height), (160.0, 160.0, 80.0, 80.0));
        // Clipped to the 480-pixel height: y = 480, height 0.
        let c = d.boxes()[1];
        assert_eq!((c.x, c.y, c.width, c.height), (480.0, 480.0, 40.0, 0.0));
        assert_eq!(postprocess(&output(&[]), 10, 10), Detections::default());
    }

    #[test]
    fn iou_matches_rect2d() {
        assert_eq!(iou(&[0.0, 0.0, 10.0, 10.0], &[5.0, 0.0, 10.0, 10.0]), 50.0 / 150.0);
        assert_eq!(iou(&[0.0, 0.0, 10.0, 10.0], &[10.0, 0.0, 10.0, 10.0]), 0.0);
        assert_eq!(iou(&[0.0, 0.0, 0.0, 0.0], &[0.0, 0.0, 0.0, 0.0]), 1.0);
    }
}
