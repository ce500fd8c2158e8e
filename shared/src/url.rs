//! The public CDN path: `/{shard}/{id}.{ext}`.
//!
//! Parsing is strict and allocation-free because the edge runs it on every
//! request before anything else: a path that is not exactly one of ours is
//! answered without touching a cache or storage. Query strings are split
//! off and ignored here (transforms, when they exist, are read separately
//! into a canonical variant key, so a random query cannot create a new
//! cache entry).

use std::fmt;

use crate::{Format, ImageId, Shard};

/// A parsed, valid CDN path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ImagePath {
    pub id: ImageId,
    pub format: Format,
}

/// Why a path is not servable. Each maps to one HTTP status at the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Traversal or encoding tricks (`..`, `%`, `\`, NUL, control bytes): 400.
    #[error("malformed path")]
    Hostile,
    /// Not of the form `/{shard}/{id}.{ext}`, or an unknown extension: 404.
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
    pub fn new(id: ImageId, format: Format) -> Self {
        ImagePath { id, format }
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
        // "/" + shard(3) + "/" + id(8) + "." + ext(3..=4)
        let rest = path.strip_prefix(b"/").ok_or(PathError::NotOurs)?;
        if rest.len() < 3 + 1 + 8 + 1 + 3 || rest[3] != b'/' || rest[12] != b'.' {
            return Err(PathError::NotOurs);
        }
        let shard = &rest[..3];
        let id = ImageId::from_bytes(&rest[4..12]).map_err(|_| PathError::NotOurs)?;
        let format = Format::from_extension(&rest[13..]).ok_or(PathError::NotOurs)?;
        if id.shard().as_bytes() != shard {
            return Err(PathError::WrongShard);
        }
        Ok(ImagePath { id, format })
    }

    pub fn shard(&self) -> Shard {
        self.id.shard()
    }
}

impl fmt::Display for ImagePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}/{}.{}", self.id.shard(), self.id, self.format.extension())
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
