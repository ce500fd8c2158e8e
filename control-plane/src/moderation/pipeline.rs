//! The classifiers configured for this deployment, and the verdicts they
//! leave on each image.

use std::sync::Arc;

use sqlx::{AnyConnection, Row};

use super::blocklist::{Blocklist, Hashes};
use super::classify::{Classifier, Input, Kind, Pixels, Verdict};
use super::config::ModerationConfig;
use super::hook::Hook;
use super::nudity::{NudityClassifier, NudityModel};
use crate::db::Db;

/// The blocklist and the classifiers, fast and slow.
pub struct Classifiers {
    pub blocklist: Blocklist,
    fast: Vec<Arc<dyn Classifier>>,
    slow: Vec<Arc<dyn Classifier>>,
}

/// Why the classifiers could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("moderation.nudity.model {path}: {message}")]
    Model { path: String, message: String },
    #[error("moderation.hook: {0}")]
    Hook(String),
}

impl Classifiers {
    /// What `cfg` configures. The nudity model is loaded here: a configured
    /// model that cannot be loaded stops the start (it must not silently
    /// classify nothing).
    pub fn from_config(cfg: &ModerationConfig) -> Result<Classifiers, SetupError> {
        let mut fast: Vec<Arc<dyn Classifier>> = Vec::new();
        match &cfg.nudity.model {
            Some(path) => {
                let model = super::nudity::load(path)
                    .map_err(|message| SetupError::Model { path: path.display().to_string(), message })?;
                tracing::info!(model = %path.display(), "nudity detector on");
                fast.push(Arc::new(NudityClassifier::new(model, cfg.nudity.threshold)));
            }
            None => tracing::info!("nudity detector off (no moderation.nudity.model): nsfw stays unknown"),
        }
        let mut slow: Vec<Arc<dyn Classifier>> = Vec::new();
        if let Some(hook) = &cfg.hook {
            slow.push(Arc::new(Hook::new(hook.clone()).map_err(SetupError::Hook)?));
        }
        Ok(Classifiers { blocklist: Blocklist::default(), fast, slow })
    }

    /// With a nudity model given directly (tests, tools).
    pub fn with_nudity(mut self, model: Arc<dyn NudityModel>, threshold: f32) -> Classifiers {
        self.fast.retain(|c| c.name() != super::nudity::NAME);
        self.fast.push(Arc::new(NudityClassifier::new(model, threshold)));
        self
    }

    /// Whether uploads wait for a slow classifier.
    pub fn has_slow(&self) -> bool {
        !self.slow.is_empty()
    }

    pub async fn run_fast(&self, input: &Input) -> Vec<Verdict> {
        let mut out = Vec::with_capacity(self.fast.len());
        for c in &self.fast {
            out.push(c.classify(input).await);
        }
        out
    }

    pub async fn run_slow(&self, input: &Input) -> Vec<Verdict> {
        let mut out = Vec::with_capacity(self.slow.len());
        for c in &self.slow {
            out.push(c.classify(input).await);
        }
        out
    }
}

/// SHA-256 of the bytes and, for decoded pixels, the PDQ hash.
pub fn hashes(bytes: &[u8], pixels: Option<&Pixels>) -> Hashes {
    use sha2::{Digest, Sha256};
    Hashes {
        sha256: hex::encode(Sha256::digest(bytes)),
        pdq: pixels.map(|p| imgcdn_safety::pdq::hash_rgb8(p.width, p.height, &p.rgb).0.to_hex()),
    }
}

/// Keep what each classifier said about `image_id` (the latest per classifier).
pub async fn save(conn: &mut AnyConnection, image_id: &str, verdicts: &[Verdict], now: i64) -> Result<(), sqlx::Error> {
    for v in verdicts {
        sqlx::query("DELETE FROM classifications WHERE image_id = $1 AND classifier = $2")
            .bind(image_id)
            .bind(&v.classifier)
            .execute(&mut *conn)
            .await?;
        sqlx::query(
            "INSERT INTO classifications (image_id, classifier, verdict, category, score, detail, at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(image_id)
        .bind(&v.classifier)
        .bind(v.kind.as_str())
        .bind(v.category.clone())
        .bind(v.score)
        .bind(v.detail.clone())
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// What the classifiers said about `image_id`.
pub async fn load(db: &Db, image_id: &str) -> Result<Vec<Verdict>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT classifier, verdict, category, score, detail FROM classifications WHERE image_id = $1 ORDER BY classifier",
    )
    .bind(image_id)
    .fetch_all(&db.pool)
    .await?;
    Ok(rows
        .iter()
        .map(|r| Verdict {
            classifier: r.get(0),
            kind: match r.get::<String, _>(1).as_str() {
                "clean" => Kind::Clean,
                "restricted" => Kind::Restricted,
                "prohibited" => Kind::Prohibited,
                _ => Kind::Error,
            },
            category: r.get(2),
            score: r.get(3),
            detail: r.get(4),
        })
        .collect())
}
