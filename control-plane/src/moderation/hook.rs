//! The HTTP classifier hook: an operator's own classifier (or a vendor's)
//! behind a URL. The image is POSTed as the request body with its content
//! type; the answer is JSON `{"verdict": "clean"|"restricted"|"prohibited",
//! "category"?: "…", "score"?: 0.0–1.0}`. It is a slow classifier: it runs
//! as a leased job after the upload answered (see [`super::jobs`]), with a
//! timeout; what a failure means is the configured fail policy.

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use super::classify::{Classifier, Input, Kind, Verdict};
use super::config::HookConfig;

pub const NAME: &str = "hook";

pub struct Hook {
    cfg: HookConfig,
    client: reqwest::Client,
}

#[derive(Deserialize)]
struct Answer {
    verdict: String,
    category: Option<String>,
    score: Option<f64>,
}

impl Hook {
    pub fn new(cfg: HookConfig) -> Result<Hook, String> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(cfg.timeout_ms))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("imgcdn-classifier-hook/1")
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Hook { cfg, client })
    }

    pub fn config(&self) -> &HookConfig {
        &self.cfg
    }
}

#[async_trait]
impl Classifier for Hook {
    fn name(&self) -> &'static str {
        NAME
    }

    fn is_slow(&self) -> bool {
        true
    }

    async fn classify(&self, input: &Input) -> Verdict {
        let mut req = self
            .client
            .post(&self.cfg.url)
            .header(reqwest::header::CONTENT_TYPE, &input.content_type)
            .body(input.bytes.as_ref().clone());
        if let Some(token) = &self.cfg.token {
            req = req.bearer_auth(token);
        }
        let response = match req.send().await {
            Ok(r) => r,
            Err(e) if e.is_timeout() => return Verdict::error(NAME, "timed out"),
            Err(e) => return Verdict::error(NAME, format!("unreachable: {}", e.without_url())),
        };
        if !response.status().is_success() {
            return Verdict::error(NAME, format!("answered HTTP {}", response.status().as_u16()));
        }
        let answer: Answer = match response.json().await {
            Ok(a) => a,
            Err(e) if e.is_timeout() => return Verdict::error(NAME, "timed out"),
            Err(_) => return Verdict::error(NAME, "answered something that is not the verdict JSON"),
        };
        let category = answer.category.filter(|c| !c.is_empty() && c.len() <= 64).unwrap_or_else(|| "other".into());
        match answer.verdict.as_str() {
            "clean" => Verdict::clean(NAME, answer.score),
            "restricted" => Verdict::flagged(NAME, Kind::Restricted, &category, answer.score, None),
            "prohibited" => Verdict::flagged(NAME, Kind::Prohibited, &category, answer.score, None),
            other => Verdict::error(NAME, format!("unknown verdict {other:?}")),
        }
    }
}
