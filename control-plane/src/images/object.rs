//! The Image object of API.md (every field always present; unknown = null)
//! and its legacy form.

use imgcdn_shared::{Format, ImageId, ImagePath};
use serde_json::{json, Map, Value};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::accounts::iso;
use crate::config::Config;

/// Columns read by [`ImageRow::from_row`].
pub const COLUMNS: &str = "id, team_id, source, format, content_type, width, height, bytes, sha256, filename, caption, \
                           public, labels, metadata, status, created_at, published_at, expires_at, deleted_at, object_key, \
                           takedown_reason, warned";

#[derive(Debug, Clone)]
pub struct ImageRow {
    pub id: String,
    pub team_id: Option<String>,
    pub format: String,
    pub width: i64,
    pub height: i64,
    pub bytes: i64,
    pub sha256: String,
    pub content_type: String,
    pub filename: Option<String>,
    pub caption: Option<String>,
    pub public: bool,
    pub labels: Map<String, Value>,
    pub metadata: Map<String, Value>,
    pub status: String,
    pub created_at: i64,
    pub published_at: Option<i64>,
    pub expires_at: Option<i64>,
    pub deleted_at: Option<i64>,
    /// The object this image shows when it is not its own `objects/{id}`.
    pub object_key: Option<String>,
    /// Operator decisions (edge sync): a takedown reason code, a warning.
    pub takedown_reason: Option<String>,
    pub warned: bool,
}

fn object(text: &str) -> Map<String, Value> {
    serde_json::from_str(text).unwrap_or_default()
}

impl ImageRow {
    pub fn from_row(r: &AnyRow) -> ImageRow {
        ImageRow {
            id: r.get("id"),
            team_id: r.get("team_id"),
            format: r.get("format"),
            width: r.get("width"),
            height: r.get("height"),
            bytes: r.get("bytes"),
            sha256: r.get("sha256"),
            content_type: r.get("content_type"),
            filename: r.get("filename"),
            caption: r.get("caption"),
            public: r.get::<i64, _>("public") != 0,
            labels: object(&r.get::<String, _>("labels")),
            metadata: object(&r.get::<String, _>("metadata")),
            status: r.get("status"),
            created_at: r.get("created_at"),
            published_at: r.get("published_at"),
            expires_at: r.get("expires_at"),
            deleted_at: r.get("deleted_at"),
            object_key: r.get("object_key"),
            takedown_reason: r.get("takedown_reason"),
            warned: r.get::<i64, _>("warned") != 0,
        }
    }

    pub fn image_id(&self) -> ImageId {
        self.id.parse().expect("stored ids are valid")
    }

    /// What edges must do with this image now: takedown > hide > warn >
    /// nothing (`Restore`). Hidden: deleted, expired or private.
    pub fn edge_action(&self, now: i64) -> (imgcdn_shared::sync::Action, Option<String>) {
        use imgcdn_shared::sync::Action;
        if let Some(reason) = &self.takedown_reason {
            return (Action::Takedown, Some(reason.clone()));
        }
        if self.deleted_at.is_some() || self.expires_at.is_some_and(|e| e <= now) || !self.public {
            return (Action::Hide, None);
        }
        if self.warned {
            return (Action::Warn, None);
        }
        (Action::Restore, None)
    }

    /// Whether the public store should hold this image's manifest: only
    /// what an edge may serve (warned images are served, marked).
    pub fn should_be_published(&self, now: i64) -> bool {
        use imgcdn_shared::sync::Action;
        self.status == "ready" && matches!(self.edge_action(now).0, Action::Warn | Action::Restore)
    }

    /// The storage key of the bytes this image shows.
    pub fn stored_object(&self) -> String {
        self.object_key.clone().unwrap_or_else(|| imgcdn_shared::storage::object_key(&self.image_id()))
    }

    /// The manifest that makes this image servable.
    pub fn manifest(&self) -> imgcdn_shared::Manifest {
        imgcdn_shared::Manifest {
            content_type: self.content_type.clone(),
            bytes: self.bytes as u64,
            sha256: self.sha256.clone(),
            width: self.width as u32,
            height: self.height as u32,
            expires_at: self.expires_at.and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok()),
            transformable: self.format().transformable(),
            object: self.object_key.clone(),
        }
    }

    pub fn format(&self) -> Format {
        Format::from_content_type(&self.content_type).unwrap_or(Format::Jpeg)
    }

    /// The CDN URL.
    pub fn url(&self, cfg: &Config) -> String {
        format!("{}{}", cfg.edge_base_url.trim_end_matches('/'), ImagePath::new(self.image_id(), self.format()))
    }

    /// The viewer page URL.
    pub fn page_url(&self, cfg: &Config) -> String {
        let base = if cfg.viewer_base_url.is_empty() { &cfg.public_base_url } else { &cfg.viewer_base_url };
        format!("{}/{}", base.trim_end_matches('/'), self.id)
    }

    /// `small`/`medium`/`large`: short side 320/640/1080, aspect kept,
    /// never enlarged; `{}` for formats the edge does not transform.
    pub fn sizes(&self, cfg: &Config) -> Value {
        if !self.format().transformable() {
            return json!({});
        }
        let url = self.url(cfg);
        let mut out = Map::new();
        for (name, param, short) in [("small", "s", 320i64), ("medium", "m", 640), ("large", "l", 1080)] {
            let (w, h) = scale_short_side(self.width, self.height, short);
            out.insert(name.into(), json!({ "url": format!("{url}?size={param}"), "width": w, "height": h }));
        }
        Value::Object(out)
    }

    /// The Image object.
    pub fn json(&self, cfg: &Config) -> Value {
        json!({
            "id": self.id,
            "object": "image",
            "url": self.url(cfg),
            "page_url": self.page_url(cfg),
            "sizes": self.sizes(cfg),
            "filename": self.filename,
            "format": self.format().extension(),
            "width": self.width,
            "height": self.height,
            "bytes": self.bytes,
            "transformable": self.format().transformable(),
            "status": self.status,
            "public": self.public,
            "published_at": self.published_at.map(iso),
            "expires_at": self.expires_at.map(iso),
            "created_at": iso(self.created_at),
            "caption": self.caption,
            "metadata": self.metadata,
            "labels": self.labels,
            "nsfw": Value::Null,
        })
    }

    /// The legacy `/v1/upload` shape: `url` is the viewer page, `src` the
    /// CDN URL, unix timestamps.
    pub fn legacy_json(&self, cfg: &Config, anonymous: bool) -> Value {
        let mut v = json!({
            "id": self.id,
            "url": self.page_url(cfg),
            "src": self.url(cfg),
            "filename": self.filename,
            "filesize": self.bytes,
            "extension": self.format().extension(),
            "width": self.width,
            "height": self.height,
            "created": self.created_at,
            "expires_at": self.expires_at,
        });
        if anonymous {
            v["upgrade"] = json!({
                "type": "signup",
                "url": format!("{}/signup", cfg.public_base_url.trim_end_matches('/')),
                "message": "Anonymous uploads are deleted after 30 days. Sign up for free to keep your images.",
                "label": "Keep my images",
            });
        }
        v
    }
}

/// Scale so the shorter side is `short`, never enlarging.
pub fn scale_short_side(w: i64, h: i64, short: i64) -> (i64, i64) {
    let min = w.min(h);
    if min <= short || min == 0 {
        return (w, h);
    }
    let f = short as f64 / min as f64;
    (((w as f64) * f).round().max(1.0) as i64, ((h as f64) * f).round().max(1.0) as i64)
}

#[cfg(test)]
mod tests {
    use super::scale_short_side;

    #[test]
    fn presets_scale_down_only() {
        assert_eq!(scale_short_side(4000, 3000, 320), (427, 320));
        assert_eq!(scale_short_side(3000, 4000, 640), (640, 853));
        assert_eq!(scale_short_side(200, 100, 320), (200, 100));
    }
}
