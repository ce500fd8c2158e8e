//! The public CDN path: `/{storage}/{id}.{ext}`, or the older
//! `/{shard}/{id}.{ext}`.
//!
//! `storage` is the owning team's [`StorageName`] (12 characters): the
//! same first segment for every image of a team, which is how clients tell
//! which team a URL belongs to. The parser cannot know an id's team, so a
//! storage segment is checked by the edge against the image's manifest
//! ([`ImagePath::serves`]) after the lookup and before any byte is sent.
//! The shard form (3 characters derived from the id, checked right here)
//! is what URLs looked like before storage names; manifests of images
//! published then keep accepting it, so those URLs keep working.
//!
//! Parsing is strict and allocation-free because the edge runs it on every
//! request before anything else: a path that is not exactly one of ours is
//! answered without touching a cache or storage. Query strings are split
//! off and ignored here: transforms are read from them separately into a
//! canonical variant ([`crate::variant`]), so a random query cannot create
//! a new cache entry.

use std::fmt;

use crate::id::{SHARD_LEN, STORAGE_LEN};
use crate::{Format, ImageId, Manifest, Shard, StorageName};

/// A parsed, valid CDN path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ImagePath {
    pub segment: Segment,
    pub id: ImageId,
    pub format: Format,
}

/// The first path segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Segment {
    /// The id's own shard (already checked against the id).
    Shard,
    /// A team's storage name (checked against the manifest).
    Storage(StorageName),
}

/// Why a path is not servable. Each maps to one HTTP status at the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Traversal or encoding tricks (`..`, `%`, `\`, NUL, control bytes): 400.
    #[error("malformed path")]
    Hostile,
    /// Not of the form `/{storage|shard}/{id}.{ext}`, or an unknown extension: 404.
    #[error("no such image")]
    NotOurs,
    /// Well formed, but the shard does not belong to the id: 404.
    #[error("no such image")]
    WrongShard,
}

impl PathError {
    pub fn status(self) -> u16 {
        match self {
            PathError::Hostile => 400,
            PathError::NotOurs | PathError::WrongShard => 404,
        }
    }
}

impl ImagePath {
    /// The path in the older shard form.
    pub fn new(id: ImageId, format: Format) -> Self {
        ImagePath { segment: Segment::Shard, id, format }
    }

    /// The path under a team's storage name.
    pub fn in_storage(storage: StorageName, id: ImageId, format: Format) -> Self {
        ImagePath { segment: Segment::Storage(storage), id, format }
    }

    /// The path a manifest's image is published under: its storage's when
    /// it has one, else the shard form.
    pub fn for_manifest(manifest: &Manifest, id: ImageId, format: Format) -> Self {
        match manifest.storage {
            Some(s) => ImagePath::in_storage(s, id, format),
            None => ImagePath::new(id, format),
        }
    }

    /// Parse a request target (path, optionally followed by `?query`).
    pub fn parse(target: &[u8]) -> Result<ImagePath, PathError> {
        let path = match target.iter().position(|&b| b == b'?' || b == b'#') {
            Some(i) => &target[..i],
            None => target,
        };
        if path.windows(2).any(|w| w == b"..")
            || path.iter().any(|&b| b == b'%' || b == b'\\' || !(0x21..0x7f).contains(&b))
        {
            return Err(PathError::Hostile);
        }
        // "/" + segment + "/" + id(8) + "." + ext(3..=4)
        let rest = path.strip_prefix(b"/").ok_or(PathError::NotOurs)?;
        let slash = rest.iter().position(|&b| b == b'/').ok_or(PathError::NotOurs)?;
        let (segment, file) = (&rest[..slash], &rest[slash + 1..]);
        if file.len() < 8 + 1 + 3 || file[8] != b'.' {
            return Err(PathError::NotOurs);
        }
        let id = ImageId::from_bytes(&file[..8]).map_err(|_| PathError::NotOurs)?;
        let format = Format::from_extension(&file[9..]).ok_or(PathError::NotOurs)?;
        let segment = match segment.len() {
            SHARD_LEN if id.shard().as_bytes() == segment => Segment::Shard,
            SHARD_LEN => return Err(PathError::WrongShard),
            STORAGE_LEN => Segment::Storage(StorageName::from_bytes(segment).map_err(|_| PathError::NotOurs)?),
            _ => return Err(PathError::NotOurs),
        };
        Ok(ImagePath { segment, id, format })
    }

    pub fn shard(&self) -> Shard {
        self.id.shard()
    }

    /// Whether the image `manifest` describes is served at this path: a
    /// storage segment must be the image's storage; the shard form serves
    /// images without a storage and those published before storage names
    /// (`shard_url`). Anything else is 404, as if the id did not exist.
    pub fn serves(&self, manifest: &Manifest) -> bool {
        match self.segment {
            Segment::Storage(s) => manifest.storage == Some(s),
            Segment::Shard => manifest.storage.is_none() || manifest.shard_url,
        }
    }
}

impl fmt::Display for ImagePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.segment {
            Segment::Shard => write!(f, "/{}/{}.{}", self.id.shard(), self.id, self.format.extension()),
            Segment::Storage(s) => write!(f, "/{}/{}.{}", s, self.id, self.format.extension()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> (ImageId, String) {
        let id: ImageId = "aB3dE6gH".parse().unwrap();
        (id, format!("/{}/{}", id.shard(), id))
    }

    #[test]
    fn round_trips_every_format() {
        let (id, _) = good();
        for f in Format::ALL {
            let p = ImagePath::new(id, f);
            assert_eq!(ImagePath::parse(p.to_string().as_bytes()), Ok(p));
        }
    }

    #[test]
    fn ignores_query_and_accepts_jpeg_alias() {
        let (id, base) = good();
        let p = ImagePath::parse(format!("{base}.jpeg?utm=1&w=abc").as_bytes()).unwrap();
        assert_eq!(p, ImagePath::new(id, Format::Jpeg));
        assert_eq!(p.to_string(), format!("{base}.jpg"));
    }

    #[test]
    fn storage_paths_round_trip_and_leave_the_check_to_the_manifest() {
        let (id, _) = good();
        let storage: StorageName = "k3v9x0q2m7za".parse().unwrap();
        let p = ImagePath::in_storage(storage, id, Format::Webp);
        assert_eq!(p.to_string(), format!("/k3v9x0q2m7za/{id}.webp"));
        assert_eq!(ImagePath::parse(format!("/k3v9x0q2m7za/{id}.webp?w=3").as_bytes()), Ok(p));
        // Any well-formed storage name parses: only the manifest knows the team.
        let other = ImagePath::parse(format!("/000000000000/{id}.webp").as_bytes()).unwrap();
        assert_eq!(other.segment, Segment::Storage("000000000000".parse().unwrap()));
        for bad in ["/K3V9X0Q2M7ZA", "/k3v9x0q2m7z", "/k3v9x0q2m7zab", "/k3v9x0q2m7z_"] {
            assert_eq!(ImagePath::parse(format!("{bad}/{id}.webp").as_bytes()), Err(PathError::NotOurs), "{bad}");
        }
    }

    #[test]
    fn which_segments_a_manifest_serves() {
        let (id, _) = good();
        let mine: StorageName = "k3v9x0q2m7za".parse().unwrap();
        let theirs: StorageName = "zzzzzzzzzzzz".parse().unwrap();
        let shard = ImagePath::new(id, Format::Png);
        let at = |s| ImagePath::in_storage(s, id, Format::Png);
        // Anonymous (no storage): the shard form only.
        let mut m = crate::testing::png_manifest(b"x", None);
        assert!(shard.serves(&m) && !at(mine).serves(&m));
        // A team's image: its storage only.
        m.storage = Some(mine);
        assert!(at(mine).serves(&m) && !at(theirs).serves(&m) && !shard.serves(&m));
        // Published before storage names: both forms, still not another team's.
        m.shard_url = true;
        assert!(at(mine).serves(&m) && shard.serves(&m) && !at(theirs).serves(&m));
        assert_eq!(ImagePath::for_manifest(&m, id, Format::Png), at(mine));
    }

    #[test]
    fn wrong_shard_is_its_own_error() {
        let (id, _) = good();
        let wrong = if id.shard().as_str() == "000" { "001" } else { "000" };
        assert_eq!(ImagePath::parse(format!("/{wrong}/{id}.png").as_bytes()), Err(PathError::WrongShard));
    }

    #[test]
    fn malformed_paths_are_not_ours() {
        let (_, base) = good();
        for p in [
            "".to_string(),
            "/".to_string(),
            base.clone(),
            format!("{base}."),
            format!("{base}.exe"),
            format!("{base}.PNG"),
            format!("{base}.png/"),
            format!("{base}x.png"),
            "/abc/defghij.png".to_string(),
            "/abcd/efghijkl.png".to_string(),
            "//efghijkl.png".to_string(),
            "/abc/def/ghijklmn.png".to_string(),
            format!("/x{}", &base[1..]),
        ] {
            assert_eq!(ImagePath::parse(p.as_bytes()), Err(PathError::NotOurs), "{p:?}");
        }
    }

    #[test]
    fn traversal_and_encoding_are_hostile() {
        let (_, base) = good();
        for p in [
            "/../etc/passwd".to_string(),
            format!("{base}.png/../../x"),
            "/%2e%2e/secret".to_string(),
            format!("{base}%2Epng"),
            "/abc\\def".to_string(),
            "/abc/\0".to_string(),
            "/a b/c".to_string(),
        ] {
            assert_eq!(ImagePath::parse(p.as_bytes()), Err(PathError::Hostile), "{p:?}");
        }
    }
}
