//! In-memory rate limits keyed so that no client address is ever stored.
//!
//! A subject (a client IP, an email) is turned into
//! `SHA-256(daily secret ‖ scope ‖ subject)` before it is counted. The
//! secret is random, lives only in memory and is replaced every UTC day
//! (counters are dropped with it), so yesterday's keys cannot be linked to
//! anybody and nothing here ever reaches the database or a log.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use rand::Rng;
use sha2::{Digest, Sha256};

use imgcdn_shared::clock::Clock;

pub struct RateLimiter {
    clock: Arc<dyn Clock>,
    // A std mutex: held for a hash-map update, never across an await.
    state: Mutex<State>,
}

struct State {
    day: i64,
    secret: [u8; 32],
    hits: HashMap<[u8; 32], VecDeque<i64>>,
}

impl RateLimiter {
    pub fn new(clock: Arc<dyn Clock>) -> RateLimiter {
        let day = clock.unix_now().div_euclid(86_400);
        RateLimiter { clock, state: Mutex::new(State { day, secret: rand::rng().random(), hits: HashMap::new() }) }
    }

    /// Count one event for `subject` in `scope`; refuse it (with the seconds
    /// until a slot frees) when `limit` events already happened within the
    /// last `window_secs`.
    pub fn hit(&self, scope: &str, subject: &str, limit: u32, window_secs: i64) -> Result<(), u64> {
        let now = self.clock.unix_now();
        let mut st = self.state.lock().expect("rate limiter poisoned");
        let today = now.div_euclid(86_400);
        if today != st.day {
            st.day = today;
            st.secret = rand::rng().random();
            st.hits.clear();
        }
        let mut h = Sha256::new();
        h.update(st.secret);
        h.update(scope.as_bytes());
        h.update([0]);
        h.update(subject.as_bytes());
        let key: [u8; 32] = h.finalize().into();
        let q = st.hits.entry(key).or_default();
        while q.front().is_some_and(|&t| t <= now - window_secs) {
            q.pop_front();
        }
        if q.len() >= limit as usize {
            let retry = q.front().map_or(window_secs, |&t| t + window_secs - now).max(1);
            return Err(retry as u64);
        }
        q.push_back(now);
        Ok(())
    }

    /// Number of distinct subjects being tracked (for tests).
    pub fn tracked(&self) -> usize {
        self.state.lock().expect("rate limiter poisoned").hits.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use imgcdn_shared::clock::ManualClock;

    #[test]
    fn limits_per_subject_and_frees_slots_after_the_window() {
        let clock = ManualClock::at(1_000_000);
        let rl = RateLimiter::new(clock.clone());
        for _ in 0..3 {
            rl.hit("keys", "1.2.3.4", 3, 3600).unwrap();
        }
        let retry = rl.hit("keys", "1.2.3.4", 3, 3600).unwrap_err();
        assert_eq!(retry, 3600);
        rl.hit("keys", "5.6.7.8", 3, 3600).unwrap();
        rl.hit("other", "1.2.3.4", 3, 3600).unwrap();
        clock.advance(3600);
        rl.hit("keys", "1.2.3.4", 3, 3600).unwrap();
    }

    #[test]
    fn the_daily_rotation_forgets_everyone() {
        let clock = ManualClock::at(86_400 * 10 + 100);
        let rl = RateLimiter::new(clock.clone());
        rl.hit("keys", "1.2.3.4", 1, 3600).unwrap();
        assert_eq!(rl.tracked(), 1);
        clock.advance(86_400);
        assert!(rl.hit("keys", "9.9.9.9", 1, 3600).is_ok());
        assert_eq!(rl.tracked(), 1, "yesterday's subjects must be gone");
    }
}
