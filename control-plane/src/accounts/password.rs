//! Passwords: policy, argon2id hashing and verification.
//!
//! Hashing is deliberately slow, so it runs on a blocking thread. Logging
//! in with an unknown email verifies against a dummy hash, so it costs the
//! same time as a wrong password and gives the same answer.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::config::PasswordConfig;
use crate::error::ApiError;

#[derive(Clone)]
pub struct Passwords {
    params: Params,
    min_length: usize,
    max_length: usize,
    /// A hash of a random password, verified when the account does not exist.
    dummy: String,
}

impl Passwords {
    pub fn new(cfg: &PasswordConfig) -> Passwords {
        let params = Params::new(cfg.argon2_memory_kib, cfg.argon2_iterations, 1, None).expect("validated params");
        let mut p = Passwords { params, min_length: cfg.min_length, max_length: cfg.max_length, dummy: String::new() };
        p.dummy = p.hash_now(&crate::secrets::random_token(16));
        p
    }

    fn argon(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    /// Refuse passwords that are too short, too long or trivially weak.
    pub fn check_policy(&self, password: &str, email: &str) -> Result<(), ApiError> {
        let n = password.chars().count();
        if n < self.min_length {
            return Err(ApiError::validation("password", format!("Use at least {} characters.", self.min_length)));
        }
        if password.len() > self.max_length {
            return Err(ApiError::validation("password", format!("Use at most {} bytes.", self.max_length)));
        }
        let distinct: std::collections::HashSet<char> = password.chars().collect();
        let local = email.split('@').next().unwrap_or("");
        if distinct.len() < 4
            || password.eq_ignore_ascii_case(email)
            || (!local.is_empty() && password.eq_ignore_ascii_case(local))
        {
            return Err(ApiError::validation("password", "This password is too easy to guess."));
        }
        const COMMON: &[&str] =
            &["password123", "1234567890", "qwertyuiop", "password1234", "iloveyou123", "letmein1234"];
        if COMMON.iter().any(|c| password.eq_ignore_ascii_case(c)) {
            return Err(ApiError::validation("password", "This password is too common."));
        }
        Ok(())
    }

    fn hash_now(&self, password: &str) -> String {
        let salt = SaltString::generate(&mut OsRng);
        self.argon().hash_password(password.as_bytes(), &salt).expect("argon2 hashing").to_string()
    }

    /// Hash on a blocking thread.
    pub async fn hash(&self, password: String) -> Result<String, ApiError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.hash_now(&password))
            .await
            .map_err(|e| ApiError::Internal(format!("hash task: {e}")))
    }

    /// Verify on a blocking thread; `None` (no such account or no password
    /// set) still spends the same work against the dummy hash.
    pub async fn verify(&self, password: String, stored: Option<String>) -> Result<bool, ApiError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let real = stored.is_some();
            let hash = stored.unwrap_or_else(|| this.dummy.clone());
            let ok = PasswordHash::new(&hash)
                .map(|h| this.argon().verify_password(password.as_bytes(), &h).is_ok())
                .unwrap_or(false);
            ok && real
        })
        .await
        .map_err(|e| ApiError::Internal(format!("verify task: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast() -> Passwords {
        Passwords::new(&PasswordConfig { argon2_memory_kib: 64, argon2_iterations: 1, ..PasswordConfig::default() })
    }

    #[tokio::test]
    async fn hashes_are_argon2id_and_verify() {
        let p = fast();
        let h = p.hash("correct horse battery".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(!h.contains("correct horse"));
        assert!(p.verify("correct horse battery".into(), Some(h.clone())).await.unwrap());
        assert!(!p.verify("wrong horse battery".into(), Some(h)).await.unwrap());
        assert!(!p.verify("anything at all".into(), None).await.unwrap());
    }

    #[test]
    fn policy() {
        let p = fast();
        assert!(p.check_policy("short", "a@b.co").is_err());
        assert!(p.check_policy(&"x".repeat(200), "a@b.co").is_err());
        assert!(p.check_policy("aaaaaaaaaaaa", "a@b.co").is_err());
        assert!(p.check_policy("alice.smith", "alice.smith@b.co").is_err());
        assert!(p.check_policy("Password123", "a@b.co").is_err());
        assert!(p.check_policy("tulip-Orbit-94", "a@b.co").is_ok());
    }
}
