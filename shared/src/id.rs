//! Image ids, shards and storage names.
//!
//! An id is 8 random base62 characters (62^8 ≈ 2.2e14 values), so ids
//! cannot be enumerated. The shard is 3 base62 characters derived from the
//! id by a fixed hash; it is part of the public URL, so the derivation
//! below is a contract: changing it breaks every URL ever handed out. The
//! shard lets the edge reject a guessed or mistyped URL without touching
//! storage, and spreads keys for stores that like prefixes.
//!
//! A [`StorageName`] is a team's: 12 random characters from `[0-9a-z]`
//! (36^12 ≈ 4.7e18), drawn once when the team is created and never
//! changed. It is the first segment of the URLs of the team's images, so
//! clients (img.pro's among them) can tell which team a URL belongs to. It
//! says nothing about the team's id and cannot be derived from it.

use std::fmt;
use std::str::FromStr;

use rand::Rng;

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Length of an image id in characters.
pub const ID_LEN: usize = 8;
/// Length of a shard in characters.
pub const SHARD_LEN: usize = 3;

/// Length of a storage name in characters.
pub const STORAGE_LEN: usize = 12;
const STORAGE_ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// A team's storage name: exactly 12 characters from `[0-9a-z]`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StorageName([u8; STORAGE_LEN]);

/// Why a string is not a storage name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a storage name is exactly 12 characters from [0-9a-z]")]
pub struct InvalidStorageName;

/// A validated image id: exactly 8 ASCII base62 characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageId([u8; ID_LEN]);

/// The 3-character shard of an id.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shard([u8; SHARD_LEN]);

/// Why a string is not an image id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an image id is exactly 8 characters from [0-9A-Za-z]")]
pub struct InvalidId;

fn is_base62(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

impl ImageId {
    /// A fresh random id from the thread-local CSPRNG.
    pub fn generate() -> Self {
        let mut rng = rand::rng();
        let mut out = [0u8; ID_LEN];
        for b in &mut out {
            *b = ALPHABET[rng.random_range(0..ALPHABET.len())];
        }
        ImageId(out)
    }

    /// Parse from bytes, checking length and alphabet.
    pub fn from_bytes(s: &[u8]) -> Result<Self, InvalidId> {
        let arr: [u8; ID_LEN] = s.try_into().map_err(|_| InvalidId)?;
        if arr.iter().all(|&b| is_base62(b)) {
            Ok(ImageId(arr))
        } else {
            Err(InvalidId)
        }
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII base62 bytes are ever stored.
        std::str::from_utf8(&self.0).expect("ids are ASCII")
    }

    /// The shard this id lives under: FNV-1a 64 of the id, reduced to 3
    /// base62 digits. Stable forever (see the module docs).
    pub fn shard(&self) -> Shard {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in &self.0 {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        let mut n = h % (62 * 62 * 62);
        let mut out = [0u8; SHARD_LEN];
        for slot in out.iter_mut().rev() {
            *slot = ALPHABET[(n % 62) as usize];
            n /= 62;
        }
        Shard(out)
    }
}

impl StorageName {
    /// A fresh random name from the thread-local CSPRNG.
    pub fn generate() -> Self {
        let mut rng = rand::rng();
        let mut out = [0u8; STORAGE_LEN];
        for b in &mut out {
            *b = STORAGE_ALPHABET[rng.random_range(0..STORAGE_ALPHABET.len())];
        }
        StorageName(out)
    }

    /// Parse from bytes, checking length and alphabet.
    pub fn from_bytes(s: &[u8]) -> Result<Self, InvalidStorageName> {
        let arr: [u8; STORAGE_LEN] = s.try_into().map_err(|_| InvalidStorageName)?;
        if arr.iter().all(|b| b.is_ascii_digit() || b.is_ascii_lowercase()) {
            Ok(StorageName(arr))
        } else {
            Err(InvalidStorageName)
        }
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("storage names are ASCII")
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl FromStr for StorageName {
    type Err = InvalidStorageName;
    fn from_str(s: &str) -> Result<Self, InvalidStorageName> {
        StorageName::from_bytes(s.as_bytes())
    }
}

impl fmt::Display for StorageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for StorageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StorageName({})", self.as_str())
    }
}

impl serde::Serialize for StorageName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for StorageName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Shard {
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("shards are ASCII")
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl FromStr for ImageId {
    type Err = InvalidId;
    fn from_str(s: &str) -> Result<Self, InvalidId> {
        ImageId::from_bytes(s.as_bytes())
    }
}

impl fmt::Display for ImageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for ImageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ImageId({})", self.as_str())
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Shard({})", self.as_str())
    }
}

impl serde::Serialize for ImageId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for ImageId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn generated_ids_are_valid_and_distinct() {
        let ids: HashSet<ImageId> = (0..10_000).map(|_| ImageId::generate()).collect();
        assert_eq!(ids.len(), 10_000);
        for id in ids.iter().take(100) {
            assert_eq!(id.as_str().len(), ID_LEN);
            assert_eq!(id.as_str().parse::<ImageId>().unwrap(), *id);
        }
    }

    #[test]
    fn rejects_wrong_length_and_alphabet() {
        for bad in ["", "abc", "abcdefghi", "abcd-efg", "abc/defg", "abcdefg.", "ab..defg", "abcdéfg"] {
            assert!(bad.parse::<ImageId>().is_err(), "{bad:?} accepted");
        }
        assert!("aB3dE6gH".parse::<ImageId>().is_ok());
    }

    #[test]
    fn shard_is_stable_and_base62() {
        // Pinned values: these are in URLs users have embedded. If this
        // test fails, the shard function changed and old URLs break.
        let id: ImageId = "aB3dE6gH".parse().unwrap();
        assert_eq!(id.shard().as_str(), id.shard().as_str());
        let pinned: Vec<String> = ["00000000", "aB3dE6gH", "zzzzzzzz"]
            .iter()
            .map(|s| s.parse::<ImageId>().unwrap().shard().to_string())
            .collect();
        assert_eq!(pinned, PINNED_SHARDS);
        for _ in 0..1000 {
            let s = ImageId::generate().shard();
            assert!(s.as_bytes().iter().all(|b| b.is_ascii_alphanumeric()));
        }
    }

    const PINNED_SHARDS: [&str; 3] = ["V3N", "PaH", "Mth"];

    #[test]
    fn storage_names_are_random_lowercase_and_round_trip() {
        let names: HashSet<StorageName> = (0..10_000).map(|_| StorageName::generate()).collect();
        assert_eq!(names.len(), 10_000);
        for n in names.iter().take(100) {
            assert_eq!(n.as_str().len(), STORAGE_LEN);
            assert!(n.as_bytes().iter().all(|b| b.is_ascii_digit() || b.is_ascii_lowercase()));
            assert_eq!(n.as_str().parse::<StorageName>().unwrap(), *n);
            let json = serde_json::to_string(n).unwrap();
            assert_eq!(serde_json::from_str::<StorageName>(&json).unwrap(), *n);
        }
        for bad in ["", "abc", "abcdefghijk", "abcdefghijklm", "ABCDEFGHIJKL", "abcdefghijk-", "abcdefghijk."] {
            assert!(bad.parse::<StorageName>().is_err(), "{bad:?} accepted");
        }
        assert!(serde_json::from_str::<StorageName>("\"Abcdefghijkl\"").is_err());
    }

    #[test]
    fn shards_spread_over_many_values() {
        let shards: HashSet<Shard> = (0..5000).map(|_| ImageId::generate().shard()).collect();
        assert!(shards.len() > 4900, "only {} distinct shards", shards.len());
    }
}
