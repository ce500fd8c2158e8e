//! Passwords: policy, argon2id hashing and verification.
//!
//! Hashing is deliberately slow and memory-hungry (19 MiB each), so it runs
//! on threads of its own, one per slot: at most `max_concurrent_hashes`
//! run at once across every route that hashes (sign-in, sign-up, change,
//! reset), always on the same few threads (on tokio's blocking pool each
//! new thread got its own malloc arena, each keeping its freed 19 MiB: a
//! login flood grew the process by hundreds of MiB). A flood of requests
//! costs CPU time, never unbounded memory. At most `max_waiting_hashes`
//! requests wait for a slot; the next ones get a 503 with `Retry-After`
//! at once. Logging in with an unknown email verifies
//! against a dummy hash, so it costs the same time as a wrong password and
//! gives the same answer.
//!
//! Each hashing thread keeps its 19 MiB of argon2 memory for its whole life
//! and reuses it for every hash ([`with_memory`]): the process's hashing
//! memory is exactly slots × 19 MiB, whatever the allocator does with large
//! blocks that are freed and allocated again (glibc's kept every freed one
//! in the thread's arena and raised its mmap threshold past them).

use std::cell::RefCell;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::Semaphore;

use crate::config::PasswordConfig;
use crate::error::ApiError;

/// Seconds a refused caller is told to wait.
const BUSY_RETRY_SECS: u64 = 2;

type Job = Box<dyn FnOnce() + Send>;

thread_local! {
    /// A hashing thread's argon2 memory, reused by every hash it computes.
    static MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// Run `f` with this thread's argon2 memory, sized to `blocks`. Only the
/// hashing threads call it (their jobs), so only they hold such memory.
fn with_memory<T>(blocks: usize, f: impl FnOnce(&mut [Block]) -> T) -> T {
    MEMORY.with(|m| {
        let mut m = m.borrow_mut();
        if m.len() != blocks {
            *m = vec![Block::default(); blocks];
        }
        f(&mut m)
    })
}

/// `n` threads running jobs from one channel. The channel holds at most
/// `n` jobs: the semaphore admits only that many at once.
fn hashing_threads(n: usize) -> std::sync::mpsc::SyncSender<Job> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(n);
    let rx = Arc::new(std::sync::Mutex::new(rx));
    for i in 0..n {
        let rx = rx.clone();
        std::thread::Builder::new()
            .name(format!("argon2-{i}"))
            .spawn(move || loop {
                // The lock is held only to take the next job.
                let job = match rx.lock().expect("hashing queue").recv() {
                    Ok(job) => job,
                    Err(_) => return, // every sender is gone
                };
                job();
            })
            .expect("spawn a hashing thread");
    }
    tx
}

#[derive(Clone)]
pub struct Passwords {
    params: Params,
    min_length: usize,
    max_length: usize,
    /// A hash of a random password, verified when the account does not exist.
    dummy: String,
    slots: Arc<Semaphore>,
    /// The hashing threads, fed through this channel.
    pool: std::sync::mpsc::SyncSender<Job>,
    waiting: Arc<AtomicUsize>,
    max_waiting: usize,
    /// Hashes and verifications run so far (for metrics and tests).
    computed: Arc<AtomicU64>,
}

impl Passwords {
    pub fn new(cfg: &PasswordConfig) -> Passwords {
        let params = Params::new(cfg.argon2_memory_kib, cfg.argon2_iterations, 1, None).expect("validated params");
        let slots = match cfg.max_concurrent_hashes {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let mut p = Passwords {
            params,
            min_length: cfg.min_length,
            max_length: cfg.max_length,
            dummy: String::new(),
            slots: Arc::new(Semaphore::new(slots)),
            pool: hashing_threads(slots),
            waiting: Arc::new(AtomicUsize::new(0)),
            max_waiting: cfg.max_waiting_hashes,
            computed: Arc::new(AtomicU64::new(0)),
        };
        // On this thread, in memory freed at once (it is not a hashing thread).
        let mut memory = vec![Block::default(); p.params.block_count()];
        p.dummy = p.hash_in(&crate::secrets::random_token(16), &mut memory);
        p
    }

    /// Hashes and verifications computed since start.
    pub fn computed(&self) -> u64 {
        self.computed.load(Ordering::Relaxed)
    }

    /// Run `work` on a blocking thread once a hashing slot is free; a 503
    /// at once when too many are already waiting.
    async fn bounded<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
        let busy = || ApiError::Overloaded { retry_after_secs: BUSY_RETRY_SECS };
        let permit = match self.slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                // Count ourselves among the waiters, or leave if the line is full.
                if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_waiting {
                    self.waiting.fetch_sub(1, Ordering::AcqRel);
                    return Err(busy());
                }
                let acquired = self.slots.clone().acquire_owned().await;
                self.waiting.fetch_sub(1, Ordering::AcqRel);
                acquired.map_err(|_| busy())?
            }
        };
        self.computed.fetch_add(1, Ordering::Relaxed);
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _permit = permit;
            let _ = done.send(work());
        });
        self.pool.send(job).map_err(|_| ApiError::Internal("the hashing threads are gone".into()))?;
        result.await.map_err(|_| ApiError::Internal("a hashing job was dropped".into()))
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

    /// The PHC string of `password` hashed with the configured parameters
    /// in `memory` (at least `params.block_count()` blocks).
    fn hash_in(&self, password: &str, memory: &mut [Block]) -> String {
        let salt = SaltString::generate(&mut OsRng);
        let mut raw_salt = [0u8; 64];
        let raw_salt = salt.decode_b64(&mut raw_salt).expect("a generated salt decodes");
        let len = self.params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
        let argon = self.argon();
        let output = Output::init_with(len, |out| {
            argon
                .hash_password_into_with_memory(password.as_bytes(), raw_salt, out, &mut *memory)
                .map_err(|_| argon2::password_hash::Error::Password)
        })
        .expect("argon2 hashing");
        PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(&self.params).expect("validated params"),
            salt: Some(salt.as_salt()),
            hash: Some(output),
        }
        .to_string()
    }

    /// Hash on this thread with its reused memory (a hashing thread).
    fn hash_now(&self, password: &str) -> String {
        with_memory(self.params.block_count(), |memory| self.hash_in(password, memory))
    }

    /// Whether `password` matches the PHC string `stored` (any argon2
    /// variant and parameters), computed in this thread's reused memory.
    fn verify_now(password: &str, stored: &str) -> bool {
        let Ok(hash) = PasswordHash::new(stored) else { return false };
        let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else { return false };
        let (Ok(algorithm), Ok(params)) = (Algorithm::try_from(hash.algorithm), Params::try_from(&hash)) else {
            return false;
        };
        let version = match hash.version.map(Version::try_from).transpose() {
            Ok(v) => v.unwrap_or_default(),
            Err(_) => return false,
        };
        let mut raw_salt = [0u8; 64];
        let Ok(raw_salt) = salt.decode_b64(&mut raw_salt) else { return false };
        let argon = Argon2::new(algorithm, version, params.clone());
        with_memory(params.block_count(), |memory| {
            Output::init_with(expected.len(), |out| {
                argon
                    .hash_password_into_with_memory(password.as_bytes(), raw_salt, out, &mut *memory)
                    .map_err(|_| argon2::password_hash::Error::Password)
            })
            // `Output`'s equality is constant-time.
            .is_ok_and(|computed| computed == expected)
        })
    }

    /// Hash on a blocking thread, within the bound.
    pub async fn hash(&self, password: String) -> Result<String, ApiError> {
        let this = self.clone();
        self.bounded(move || this.hash_now(&password)).await
    }

    /// Verify on a blocking thread; `None` (no such account or no password
    /// set) still spends the same work against the dummy hash.
    pub async fn verify(&self, password: String, stored: Option<String>) -> Result<bool, ApiError> {
        let this = self.clone();
        self.bounded(move || {
            let real = stored.is_some();
            let hash = stored.unwrap_or_else(|| this.dummy.clone());
            Passwords::verify_now(&password, &hash) && real
        })
        .await
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

    #[tokio::test]
    async fn hashing_is_bounded_and_a_full_line_is_refused_at_once() {
        let p = Passwords::new(&PasswordConfig {
            argon2_memory_kib: 64,
            argon2_iterations: 1,
            max_concurrent_hashes: 1,
            max_waiting_hashes: 2,
            ..PasswordConfig::default()
        });
        // Hold the only slot: three callers queue behind it, two are let in line.
        let held = p.slots.clone().acquire_owned().await.unwrap();
        let mut waiters = Vec::new();
        for i in 0..2 {
            let p = p.clone();
            waiters.push(tokio::spawn(async move { p.hash(format!("password-{i}")).await }));
        }
        while p.waiting.load(Ordering::Acquire) < 2 {
            tokio::task::yield_now().await;
        }
        let refused = p.hash("one too many".into()).await.unwrap_err();
        assert!(matches!(refused, ApiError::Overloaded { .. }), "{refused:?}");
        assert_eq!(p.computed(), 0, "nothing hashed past the bound");
        drop(held);
        for w in waiters {
            assert!(w.await.unwrap().unwrap().starts_with("$argon2id$"));
        }
        assert_eq!(p.computed(), 2);
    }

    #[test]
    fn hashes_agree_with_the_argon2_crates_own() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let p = fast();
        // Ours verify with the crate's verifier, the crate's (as stored by
        // earlier versions, and with other parameters) with ours.
        let ours = p.hash_now("correct horse battery");
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(p.argon().verify_password(b"correct horse battery", &parsed).is_ok());
        let params = Params::new(128, 2, 1, None).unwrap();
        let theirs = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password(b"tulip-Orbit-94", &SaltString::generate(&mut OsRng))
            .unwrap()
            .to_string();
        assert!(Passwords::verify_now("tulip-Orbit-94", &theirs));
        assert!(!Passwords::verify_now("tulip-Orbit-95", &theirs));
        assert!(!Passwords::verify_now("tulip-Orbit-94", "not a hash"));
        // Reusing the memory across sizes gives the same answers.
        assert!(Passwords::verify_now("correct horse battery", &ours));
        assert!(Passwords::verify_now("tulip-Orbit-94", &theirs));
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
