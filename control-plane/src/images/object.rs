//! The Image object of API.md (every field always present; unknown = null)
//! and its legacy form.

use imgcdn_shared::variant::{Rules, Variant};
use serde_json::{json, Map, Value};

use super::row::ImageRow;
use crate::config::Config;
use crate::dates::iso;

impl ImageRow {
    /// The CDN URL.
    pub fn url(&self, cfg: &Config) -> String {
        format!("{}{}", cfg.edge_base_url.trim_end_matches('/'), self.path())
    }

    /// The viewer page URL.
    pub fn page_url(&self, cfg: &Config) -> String {
        let base = if cfg.viewer_base_url.is_empty() { &cfg.public_base_url } else { &cfg.viewer_base_url };
        format!("{}/{}", base.trim_end_matches('/'), self.id)
    }

    /// `small`/`medium`/`large`: short side 320/640/1080, aspect kept,
    /// never enlarged (the sizes the edge's transforms give, from the same
    /// function); `{}` for formats the edge does not transform.
    pub fn sizes(&self, cfg: &Config) -> Value {
        if !self.format().transformable() {
            return json!({});
        }
        let url = self.url(cfg);
        let mut out = Map::new();
        for (name, param) in [("small", "s"), ("medium", "m"), ("large", "l")] {
            let f = self.format();
            let variant = Variant::parse(&format!("size={param}"), f, f, &Rules::default());
            let (w, h) = variant.output_size(self.width.max(1) as u32, self.height.max(1) as u32);
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
            "status": self.status.api_str(),
            "public": self.public,
            "published_at": self.published_at.map(iso),
            "expires_at": self.expires_at.map(iso),
            "created_at": iso(self.created_at),
            "caption": self.caption,
            "metadata": self.metadata,
            "labels": self.labels,
            "nsfw": self.nsfw,
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
            // The date this upload goes (its surface's window, a ttl, the
            // ceiling: whatever set it), not a fixed number of days that the
            // retention settings may not give.
            let when = match self.expires_at {
                Some(t) => format!("this one on {} (UTC)", crate::dates::date(t)),
                None => "this one when it expires".to_string(),
            };
            v["upgrade"] = json!({
                "type": "signup",
                "url": format!("{}/signup", cfg.public_base_url.trim_end_matches('/')),
                "message": format!("Anonymous uploads are deleted: {when}. Sign up for free to keep your images."),
                "label": "Keep my images",
            });
        }
        v
    }
}
