//! An image as the database holds it: [`ImageRow`] and its [`ImageStatus`],
//! and what follows from them for serving ([`ImageRow::visibility`]).

use imgcdn_shared::sync::Action;
use imgcdn_shared::{Format, ImageId, ImagePath, Manifest, StorageName};
use serde_json::{Map, Value};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::store::Place;

/// Columns read by [`ImageRow::from_row`].
pub const COLUMNS: &str = "id, team_id, uploaded_by, source, format, content_type, width, height, bytes, sha256, filename, \
                           caption, public, labels, metadata, status, created_at, published_at, expires_at, deleted_at, \
                           object_key, takedown_reason, warned, bytes_in, pdq, nsfw, classification, \
                           requested_expires_at, reap_at, storage, shard_url";

/// Where an upload is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageStatus {
    /// The row is written; the bytes are not yet (all) in the store.
    Processing,
    /// Stored (and published, if public): the image exists for its owner.
    Ready,
    /// Storing failed, or an interrupted upload was undone: nothing stored.
    Failed,
    /// Held for an operator's review (bytes in staging, nothing public).
    Review,
    /// Removed by classification: never published, bytes in recovery.
    Blocked,
}

impl ImageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ImageStatus::Processing => "processing",
            ImageStatus::Ready => "ready",
            ImageStatus::Failed => "failed",
            ImageStatus::Review => "review",
            ImageStatus::Blocked => "blocked",
        }
    }

    /// The status the API shows (`ready | processing | failed`): an upload
    /// held for review is still being processed, as far as its owner can tell.
    pub fn api_str(self) -> &'static str {
        match self {
            ImageStatus::Review => "processing",
            other => other.as_str(),
        }
    }
}

impl std::str::FromStr for ImageStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "processing" => Ok(ImageStatus::Processing),
            "ready" => Ok(ImageStatus::Ready),
            "failed" => Ok(ImageStatus::Failed),
            "review" => Ok(ImageStatus::Review),
            "blocked" => Ok(ImageStatus::Blocked),
            other => Err(format!("unknown image status {other:?}")),
        }
    }
}

/// What edges do with an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Visibility {
    /// Served.
    Serve,
    /// Served, marked restricted (viewer interstitial, edge header).
    Warn,
    /// Not served (private, deleted, expired): 404.
    Hide,
    /// Removed for a legal or policy reason: 451.
    Takedown(String),
}

impl Visibility {
    /// Whether an edge may serve the image.
    pub fn servable(&self) -> bool {
        matches!(self, Visibility::Serve | Visibility::Warn)
    }

    /// The edge-sync log's form: `Restore` means "nothing to enforce".
    pub fn to_action(&self) -> (Action, Option<String>) {
        match self {
            Visibility::Serve => (Action::Restore, None),
            Visibility::Warn => (Action::Warn, None),
            Visibility::Hide => (Action::Hide, None),
            Visibility::Takedown(reason) => (Action::Takedown, Some(reason.clone())),
        }
    }

    /// How the operator API names it.
    pub fn label(&self) -> &'static str {
        match self {
            Visibility::Serve => "serve",
            Visibility::Warn => "warn",
            Visibility::Hide => "hide",
            Visibility::Takedown(_) => "takedown",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ImageRow {
    pub id: String,
    pub team_id: Option<String>,
    /// The signed-in user who uploaded it (none for keys and anonymous uploads).
    pub uploaded_by: Option<String>,
    /// The surface it came through (`api`, `legacy_upload`, …).
    pub source: String,
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
    pub status: ImageStatus,
    pub created_at: i64,
    pub published_at: Option<i64>,
    /// When it stops being served (`None`: kept until deleted), as the
    /// retention policy decided.
    pub expires_at: Option<i64>,
    /// The expiry its uploader asked for (for anonymous uploads: the one
    /// shown at upload); the policy never goes past it.
    pub requested_expires_at: Option<i64>,
    pub deleted_at: Option<i64>,
    /// When its bytes in the recovery store are reaped (set when they move there).
    pub reap_at: Option<i64>,
    /// The object this image shows when it is not its own `objects/{id}`.
    pub object_key: Option<String>,
    /// Operator decisions (edge sync): a takedown reason code, a warning.
    pub takedown_reason: Option<String>,
    pub warned: bool,
    /// Where the bytes are now.
    pub bytes_in: Place,
    /// PDQ perceptual hash (hex), for raster images.
    pub pdq: Option<String>,
    /// The nudity detector's verdict; `None` = unknown (not run).
    pub nsfw: Option<bool>,
    /// `clean`, `restricted:{category}`, `prohibited:{category}`; `None`
    /// until classified.
    pub classification: Option<String>,
    /// Its team's storage name, as its manifest says (`None`: anonymous,
    /// or published before storage names and not yet renamed).
    pub storage: Option<StorageName>,
    /// The shard form serves too (its URLs of that form were handed out).
    pub shard_url: bool,
}

fn object(text: &str) -> Map<String, Value> {
    serde_json::from_str(text).unwrap_or_default()
}

impl ImageRow {
    pub fn from_row(r: &AnyRow) -> ImageRow {
        ImageRow {
            id: r.get("id"),
            team_id: r.get("team_id"),
            uploaded_by: r.get("uploaded_by"),
            source: r.get("source"),
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
            // Only this module writes statuses; an unknown one is treated as failed.
            status: r.get::<String, _>("status").parse().unwrap_or(ImageStatus::Failed),
            created_at: r.get("created_at"),
            published_at: r.get("published_at"),
            expires_at: r.get("expires_at"),
            requested_expires_at: r.get("requested_expires_at"),
            deleted_at: r.get("deleted_at"),
            reap_at: r.get("reap_at"),
            object_key: r.get("object_key"),
            takedown_reason: r.get("takedown_reason"),
            warned: r.get::<i64, _>("warned") != 0,
            bytes_in: r.get::<String, _>("bytes_in").parse().unwrap_or(Place::Public),
            pdq: r.get("pdq"),
            nsfw: r.get::<Option<i64>, _>("nsfw").map(|n| n != 0),
            classification: r.get("classification"),
            // Only valid names are ever written; a damaged one falls back
            // to the shard form rather than failing every read of the row.
            storage: r.get::<Option<String>, _>("storage").and_then(|s| s.parse().ok()),
            shard_url: r.get::<i64, _>("shard_url") != 0,
        }
    }

    /// Where the bytes belong: recovery once deleted, taken down or
    /// removed; staging while an upload there awaits a classifier or an
    /// operator; public otherwise (private images too: they only lack a
    /// manifest).
    pub fn place(&self) -> Place {
        if self.deleted_at.is_some() || self.takedown_reason.is_some() || self.status == ImageStatus::Blocked {
            Place::Recovery
        } else if matches!(self.status, ImageStatus::Processing | ImageStatus::Review | ImageStatus::Failed)
            && self.bytes_in == Place::Staging
        {
            Place::Staging
        } else {
            Place::Public
        }
    }

    /// Whether the API answers `403 media_blocked` for it: taken down, or
    /// removed by classification.
    pub fn is_blocked(&self) -> bool {
        self.takedown_reason.is_some() || self.status == ImageStatus::Blocked
    }

    pub fn image_id(&self) -> ImageId {
        self.id.parse().expect("stored ids are valid")
    }

    /// What edges must do with this image now: takedown > hide > warn >
    /// serve. Hidden: deleted, expired, private or removed by classification.
    pub fn visibility(&self, now: i64) -> Visibility {
        if let Some(reason) = &self.takedown_reason {
            return Visibility::Takedown(reason.clone());
        }
        if self.deleted_at.is_some()
            || self.expires_at.is_some_and(|e| e <= now)
            || !self.public
            || self.status == ImageStatus::Blocked
        {
            return Visibility::Hide;
        }
        if self.warned {
            return Visibility::Warn;
        }
        Visibility::Serve
    }

    /// Whether the public store should hold this image's manifest: only
    /// what an edge may serve (warned images are served, marked).
    pub fn should_be_published(&self, now: i64) -> bool {
        self.status == ImageStatus::Ready && self.visibility(now).servable()
    }

    /// The storage key of the bytes this image shows.
    pub fn stored_object(&self) -> String {
        self.object_key.clone().unwrap_or_else(|| imgcdn_shared::storage::object_key(&self.image_id()))
    }

    /// The manifest that makes this image servable.
    pub fn manifest(&self) -> Manifest {
        Manifest {
            content_type: self.content_type.clone(),
            bytes: self.bytes as u64,
            sha256: self.sha256.clone(),
            width: self.width as u32,
            height: self.height as u32,
            expires_at: self.expires_at.and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok()),
            transformable: self.format().transformable(),
            object: self.object_key.clone(),
            storage: self.storage,
            shard_url: self.shard_url,
        }
    }

    /// The CDN path this image is served at: `/{storage}/{id}.{ext}`, or
    /// the shard form when it has no storage (anonymous uploads).
    pub fn path(&self) -> ImagePath {
        match self.storage {
            Some(s) => ImagePath::in_storage(s, self.image_id(), self.format()),
            None => ImagePath::new(self.image_id(), self.format()),
        }
    }

    pub fn format(&self) -> Format {
        Format::from_content_type(&self.content_type).unwrap_or(Format::Jpeg)
    }
}
