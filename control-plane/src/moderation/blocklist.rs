//! The hash blocklist: exact SHA-256 and perceptual PDQ hashes of content
//! that may not be uploaded, on any team and through any surface.
//!
//! Entries come from takedowns for a prohibited reason (automatically),
//! from operators, and from imported lists (`imgcdn admin blocklist import
//! FILE`: CSV with a header line `kind,hash,category`, `kind` being
//! `sha256` or `pdq`, the hash in lowercase hex (64 characters for both),
//! and a category such as `csam`). An upload whose SHA-256 is listed, or
//! whose PDQ is within `pdq_max_distance` bits of a listed one (a
//! re-encoded, resized or lightly cropped copy), is refused and the match
//! recorded for operators — without the uploader's address.
//!
//! PDQ entries are held in memory for the Hamming search (32 bytes each)
//! and reloaded when the table's count changes (one indexed count per
//! check, so entries added by another replica are seen at once).

use std::sync::Mutex;

use serde::Serialize;
use sqlx::Row;

use crate::db::{is_unique_violation, Db};
use crate::secrets::new_id;

/// What an upload is looked up by.
#[derive(Debug, Clone)]
pub struct Hashes {
    /// Lowercase hex SHA-256 of the stored bytes.
    pub sha256: String,
    /// Lowercase hex PDQ (raster images only).
    pub pdq: Option<String>,
}

/// A listed entry an upload matched.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Match {
    pub entry_id: String,
    pub kind: &'static str,
    pub category: String,
    /// Bits apart (0 for SHA-256).
    pub distance: u32,
}

type PdqEntry = (String, [u8; 32], String);

/// The in-memory copy of the PDQ entries.
#[derive(Default)]
pub struct Blocklist {
    pdq: Mutex<(i64, std::sync::Arc<Vec<PdqEntry>>)>,
}

/// 32 bytes from 64 hex characters.
pub fn pdq_bytes(hex_text: &str) -> Option<[u8; 32]> {
    let v = hex::decode(hex_text).ok()?;
    v.try_into().ok()
}

fn hamming(a: &[u8; 32], b: &[u8; 32]) -> u32 {
    a.iter().zip(b).map(|(x, y)| (x ^ y).count_ones()).sum()
}

impl Blocklist {
    /// The entry `hashes` match, if any: SHA-256 first, then the nearest PDQ
    /// within `max_distance`.
    pub async fn check(&self, db: &Db, hashes: &Hashes, max_distance: u32) -> Result<Option<Match>, sqlx::Error> {
        if let Some(r) = sqlx::query("SELECT id, category FROM blocklist WHERE kind = 'sha256' AND hash = $1")
            .bind(&hashes.sha256)
            .fetch_optional(&db.pool)
            .await?
        {
            return Ok(Some(Match { entry_id: r.get(0), kind: "sha256", category: r.get(1), distance: 0 }));
        }
        let Some(pdq) = hashes.pdq.as_deref().and_then(pdq_bytes) else { return Ok(None) };
        let entries = self.pdq_entries(db).await?;
        Ok(entries
            .iter()
            .map(|(id, h, category)| (hamming(&pdq, h), id, category))
            .filter(|(d, _, _)| *d <= max_distance)
            .min_by_key(|(d, _, _)| *d)
            .map(|(distance, id, category)| Match {
                entry_id: id.clone(),
                kind: "pdq",
                category: category.clone(),
                distance,
            }))
    }

    async fn pdq_entries(&self, db: &Db) -> Result<std::sync::Arc<Vec<PdqEntry>>, sqlx::Error> {
        let count: i64 =
            sqlx::query("SELECT COUNT(*) FROM blocklist WHERE kind = 'pdq'").fetch_one(&db.pool).await?.get(0);
        {
            let cached = self.pdq.lock().expect("blocklist cache");
            if cached.0 == count {
                return Ok(cached.1.clone());
            }
        }
        let rows =
            sqlx::query("SELECT id, hash, category FROM blocklist WHERE kind = 'pdq'").fetch_all(&db.pool).await?;
        let entries: Vec<PdqEntry> = rows
            .iter()
            .filter_map(|r| Some((r.get::<String, _>(0), pdq_bytes(&r.get::<String, _>(1))?, r.get::<String, _>(2))))
            .collect();
        let entries = std::sync::Arc::new(entries);
        *self.pdq.lock().expect("blocklist cache") = (count, entries.clone());
        Ok(entries)
    }
}

/// Why a hash cannot be listed.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EntryError {
    #[error("kind must be sha256 or pdq, not {0:?}")]
    Kind(String),
    #[error("the hash must be 64 lowercase hex characters")]
    Hash,
    #[error("the category must be 1-64 characters of letters, digits, '_' or '-'")]
    Category,
}

/// Check one entry; its normalised hash.
pub fn check_entry(kind: &str, hash: &str, category: &str) -> Result<String, EntryError> {
    if kind != "sha256" && kind != "pdq" {
        return Err(EntryError::Kind(kind.to_string()));
    }
    let hash = hash.trim().to_ascii_lowercase();
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(EntryError::Hash);
    }
    let ok = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if category.is_empty() || category.len() > 64 || !category.chars().all(ok) {
        return Err(EntryError::Category);
    }
    Ok(hash)
}

/// List a hash; `false` if it was listed already.
pub async fn add(
    conn: &mut sqlx::AnyConnection,
    kind: &str,
    hash: &str,
    category: &str,
    source: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "INSERT INTO blocklist (id, kind, hash, category, source, added_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(new_id("blk"))
    .bind(kind)
    .bind(hash)
    .bind(category)
    .bind(source)
    .bind(now)
    .execute(conn)
    .await;
    match r {
        Ok(_) => Ok(true),
        Err(e) if is_unique_violation(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

/// List the hashes of an image (its SHA-256 and, if known, its PDQ).
pub async fn add_image(
    db: &Db,
    sha256: &str,
    pdq: Option<&str>,
    category: &str,
    source: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    // Each insert on its own: a duplicate must not abort the other
    // (PostgreSQL aborts a transaction at its first error).
    let mut conn = db.pool.acquire().await?;
    add(&mut conn, "sha256", sha256, category, source, now).await?;
    if let Some(pdq) = pdq {
        add(&mut conn, "pdq", pdq, category, source, now).await?;
    }
    Ok(())
}

/// Record a refused upload for operators: which entry, how far, where.
pub async fn record_match(
    db: &Db,
    m: &Match,
    surface: &str,
    team_id: Option<&str>,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO blocklist_matches (id, entry_id, kind, distance, category, surface, team_id, matched_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(new_id("bmt"))
    .bind(&m.entry_id)
    .bind(m.kind)
    .bind(i64::from(m.distance))
    .bind(&m.category)
    .bind(surface)
    .bind(team_id.map(str::to_string))
    .bind(now)
    .execute(&db.pool)
    .await?;
    Ok(())
}

/// Refused uploads, newest first.
pub async fn matches(db: &Db, limit: i64) -> Result<Vec<serde_json::Value>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, entry_id, kind, distance, category, surface, team_id, matched_at FROM blocklist_matches \
         ORDER BY matched_at DESC, id DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(&db.pool)
    .await?;
    Ok(rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "id": r.get::<String, _>(0), "entry_id": r.get::<String, _>(1), "kind": r.get::<String, _>(2),
                "distance": r.get::<i64, _>(3), "category": r.get::<String, _>(4), "surface": r.get::<String, _>(5),
                "team_id": r.get::<Option<String>, _>(6), "matched_at": crate::dates::iso(r.get(7)),
            })
        })
        .collect())
}

/// What an import did.
#[derive(Debug, Default, PartialEq, Eq, Serialize)]
pub struct Imported {
    pub added: u64,
    pub already_listed: u64,
    /// `line: reason` for every line that was not taken.
    pub refused: Vec<String>,
}

/// Import a CSV list (see the module docs); `source` names it in the table.
pub async fn import_csv(db: &Db, text: &str, source: &str, now: i64) -> Result<Imported, sqlx::Error> {
    let mut out = Imported::default();
    let mut conn = db.pool.acquire().await?;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || (i == 0 && line.eq_ignore_ascii_case("kind,hash,category")) {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let [kind, hash, category] = fields[..] else {
            out.refused.push(format!("line {}: expected kind,hash,category", i + 1));
            continue;
        };
        match check_entry(kind, hash, category) {
            Ok(hash) => {
                if add(&mut conn, kind, &hash, category, source, now).await? {
                    out.added += 1;
                } else {
                    out.already_listed += 1;
                }
            }
            Err(e) => out.refused.push(format!("line {}: {e}", i + 1)),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_checked_and_hamming_counts_bits() {
        let h = "ab".repeat(32);
        assert_eq!(check_entry("sha256", &h.to_uppercase(), "csam"), Ok(h.clone()));
        assert_eq!(check_entry("md5", &h, "csam"), Err(EntryError::Kind("md5".into())));
        assert_eq!(check_entry("pdq", "abc", "csam"), Err(EntryError::Hash));
        assert_eq!(check_entry("pdq", &h, "no spaces"), Err(EntryError::Category));
        let a = [0u8; 32];
        let mut b = [0u8; 32];
        b[0] = 0b1011;
        b[31] = 0x80;
        assert_eq!(hamming(&a, &b), 4);
        assert_eq!(pdq_bytes(&"00".repeat(32)), Some([0u8; 32]));
        assert_eq!(pdq_bytes("zz"), None);
    }
}
