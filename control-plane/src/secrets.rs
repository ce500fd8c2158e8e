//! Random tokens and their stored form.
//!
//! Every bearer secret we hand out (session cookies, API keys, email links,
//! invitations) is random and stored only as its SHA-256: a database leak
//! gives nobody a working credential. (Passwords are different: they are
//! low-entropy, so they get argon2id, see `accounts::password`.)

use base64::Engine;
use rand::Rng;
use sha2::{Digest, Sha256};

/// `n` random bytes, base64url without padding.
pub fn random_token(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::rng().fill(&mut bytes[..]);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A random alphanumeric string of `len` characters.
pub fn random_alnum(len: usize) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::rng();
    (0..len).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
}

/// A new record id like `usr_3kTq…`.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", random_alnum(20))
}

/// A new id that sorts by creation: `{prefix}_{nanoseconds:016x}{random}`.
/// Used where "the latest row" must be well defined even within one second
/// (consent records, the mail queue).
pub fn new_sortable_id(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    // Strictly increasing within this process, even if the clock stalls.
    static LAST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let prev = LAST.fetch_max(nanos, std::sync::atomic::Ordering::SeqCst);
    let n = if nanos > prev { nanos } else { LAST.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 };
    format!("{prefix}_{n:016x}{}", random_alnum(8))
}

/// The stored form of a token.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Constant-time equality for secrets compared in memory.
pub fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_url_safe() {
        let a = random_token(32);
        assert_ne!(a, random_token(32));
        assert_eq!(a.len(), 43);
        assert!(a.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert!(new_id("usr").starts_with("usr_"));
        assert_eq!(hash_token("x").len(), 64);
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }
}
