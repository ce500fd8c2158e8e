//! `[moderation]`: which classifiers run, what each verdict leads to, and
//! the windows of the DMCA process. Defaults are in `docs/design.md`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// What happens to an upload, given its classification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Served normally.
    Publish,
    /// Served marked restricted (edge header, viewer interstitial).
    Restrict,
    /// Not served until an operator decides.
    Review,
    /// Never served; the bytes go to the recovery store.
    Remove,
}

/// What a failing or slow classifier hook means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailPolicy {
    /// Treat the image as clean (publish).
    Open,
    /// Hold the image for review.
    Closed,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModerationConfig {
    /// PDQ hashes at most this many bits apart are the same image (Meta's
    /// recommended threshold is 31 of 256).
    pub pdq_max_distance: u32,
    /// Takedown reasons that mean the content itself is prohibited: its
    /// hashes join the blocklist and every copy (same bytes, any team) is
    /// taken down with it. Other reasons (copyright, privacy, court orders)
    /// concern one upload.
    pub prohibited_reasons: Vec<String>,
    pub nudity: NudityConfig,
    /// An external classifier (optional): images are POSTed to it.
    pub hook: Option<HookConfig>,
    /// Classification → outcome: keys `verdict:category` (e.g.
    /// `restricted:nudity`), else `verdict` (`clean`, `restricted`,
    /// `prohibited`).
    pub outcomes: BTreeMap<String, Outcome>,
    pub dmca: DmcaConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NudityConfig {
    /// The NudeNet detector (`320n.onnx`, installed by the operator:
    /// `scripts/fetch-models`). Unset: the detector is off and `nsfw` stays
    /// unknown (null).
    pub model: Option<PathBuf>,
    /// A score at or over this on an explicit-exposure label makes the
    /// image `restricted:nudity`.
    pub threshold: f32,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HookConfig {
    /// Where images are POSTed (the bytes, with their content type); the
    /// answer is JSON `{"verdict": "clean"|"restricted"|"prohibited",
    /// "category"?: "…", "score"?: 0.93}`.
    pub url: String,
    /// Sent as `Authorization: Bearer …` when set.
    pub token: Option<String>,
    pub timeout_ms: u64,
    /// A timeout, an error or an unreadable answer: publish (`open`) or
    /// hold for review (`closed`).
    pub fail: FailPolicy,
    /// Attempts before the fail policy applies.
    pub max_attempts: u32,
}

impl std::fmt::Debug for HookConfig {
    /// The token never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookConfig")
            .field("url", &self.url)
            .field("timeout_ms", &self.timeout_ms)
            .field("fail", &self.fail)
            .field("max_attempts", &self.max_attempts)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DmcaConfig {
    /// Days after a counter-notice before the image is restored, unless the
    /// claimant reports a court action (17 U.S.C. § 512(g): 10–14 business days).
    pub counter_notice_days: i64,
    /// Copyright strikes within `strike_window_days` that cost an uploader
    /// their upload rights (repeat-infringer policy).
    pub strikes: i64,
    pub strike_window_days: i64,
}

impl Default for ModerationConfig {
    fn default() -> Self {
        ModerationConfig {
            pdq_max_distance: 31,
            prohibited_reasons: ["csam", "terrorism", "illegal_content"].map(String::from).to_vec(),
            nudity: NudityConfig::default(),
            hook: None,
            outcomes: BTreeMap::from([
                ("clean".to_string(), Outcome::Publish),
                ("restricted".to_string(), Outcome::Restrict),
                ("prohibited".to_string(), Outcome::Remove),
            ]),
            dmca: DmcaConfig::default(),
        }
    }
}

impl Default for NudityConfig {
    fn default() -> Self {
        NudityConfig { model: None, threshold: 0.6 }
    }
}

impl Default for HookConfig {
    fn default() -> Self {
        HookConfig { url: String::new(), token: None, timeout_ms: 5000, fail: FailPolicy::Closed, max_attempts: 3 }
    }
}

impl Default for DmcaConfig {
    fn default() -> Self {
        DmcaConfig { counter_notice_days: 14, strikes: 3, strike_window_days: 365 }
    }
}

impl ModerationConfig {
    /// The outcome for a classification (`clean`, `restricted:nudity`, …):
    /// the most specific key configured, else the safe default for its verdict.
    pub fn outcome(&self, classification: &str) -> Outcome {
        let verdict = classification.split(':').next().unwrap_or("clean");
        self.outcomes.get(classification).or_else(|| self.outcomes.get(verdict)).copied().unwrap_or(match verdict {
            "clean" => Outcome::Publish,
            "restricted" => Outcome::Restrict,
            _ => Outcome::Review,
        })
    }

    /// Every problem, one line each.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.pdq_max_distance > 128 {
            p.push("moderation.pdq_max_distance: at most 128 of 256 bits".to_string());
        }
        if !(0.0..=1.0).contains(&self.nudity.threshold) {
            p.push("moderation.nudity.threshold: between 0 and 1".to_string());
        }
        for key in self.outcomes.keys() {
            let verdict = key.split(':').next().unwrap_or("");
            if !["clean", "restricted", "prohibited"].contains(&verdict) {
                p.push(format!("moderation.outcomes.{key}: keys start with clean, restricted or prohibited"));
            }
        }
        if let Some(hook) = &self.hook {
            if !(hook.url.starts_with("http://") || hook.url.starts_with("https://")) {
                p.push("moderation.hook.url: must be an http(s) URL".to_string());
            }
            if hook.timeout_ms == 0 || hook.max_attempts == 0 {
                p.push("moderation.hook: timeout_ms and max_attempts must be positive".to_string());
            }
        }
        let d = &self.dmca;
        if d.counter_notice_days < 1 || d.strikes < 1 || d.strike_window_days < 1 {
            p.push("moderation.dmca: counter_notice_days, strikes and strike_window_days must be positive".to_string());
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_specific_outcome_wins_and_unknown_prohibitions_go_to_review() {
        let mut c = ModerationConfig::default();
        assert_eq!(c.outcome("clean"), Outcome::Publish);
        assert_eq!(c.outcome("restricted:nudity"), Outcome::Restrict);
        assert_eq!(c.outcome("prohibited:csam"), Outcome::Remove);
        c.outcomes.insert("restricted:nudity".into(), Outcome::Review);
        assert_eq!(c.outcome("restricted:nudity"), Outcome::Review);
        assert_eq!(c.outcome("restricted:violence"), Outcome::Restrict);
        c.outcomes.remove("prohibited");
        assert_eq!(c.outcome("prohibited:weapons"), Outcome::Review);
        assert!(c.problems().is_empty());
        c.outcomes.insert("spicy".into(), Outcome::Publish);
        assert_eq!(c.problems().len(), 1);
    }
}
