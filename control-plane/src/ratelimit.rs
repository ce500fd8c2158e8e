//! In-memory rate limits keyed so that no client address is ever stored.
//!
//! A subject (a client IP, an email) is turned into
//! `SHA-256(daily secret ‖ scope ‖ subject)` before it is counted. The
//! secret is random, lives only in memory and is replaced every UTC day
//! (counters are dropped with it), so yesterday's keys cannot be linked to
//! anybody and nothing here ever reaches the database or a log.
//!
//! Memory is bounded: an entry holds at most `limit` timestamps, is dropped
//! once its window has passed (swept once a minute, and whenever the map
//! has doubled since the last sweep), and the map never holds more than
//! `max_subjects` entries. A new subject past that evicts another one, the
//! least worth keeping of a few picked at random: the one furthest from
//! its limit, then the longest idle. So a flood of fresh subjects (each one
//! hit) mostly evicts its own kind, while a counter that is refusing
//! somebody (a guessed-at account, a client at its limit) survives unless
//! the whole sample is at its limit. Refusing new subjects instead, as this
//! did at first, let whoever filled the map lock every new client out for
//! the length of the longest window, and a full sweep ran on every refused
//! request; now the map is swept at most once a second when full, and an
//! eviction costs a few lookups. Callers check the per-client limit before
//! any per-subject one, so one client cannot fill the map with subjects of
//! its choosing.
//!
//! IPv6 clients are counted per /64 (one customer's usual allocation), so
//! walking the addresses of one prefix does not buy new limits.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use indexmap::IndexMap;
use rand::Rng;
use sha2::{Digest, Sha256};

use imgcdn_shared::clock::Clock;

/// Default bound on tracked subjects (~120 bytes each plus timestamps).
pub const DEFAULT_MAX_SUBJECTS: usize = 200_000;

/// Entries looked at to pick one to evict when the map is full.
const EVICTION_SAMPLE: usize = 8;

pub struct RateLimiter {
    clock: Arc<dyn Clock>,
    max_subjects: usize,
    // A std mutex: held for a hash-map update, never across an await.
    state: Mutex<State>,
}

struct Entry {
    /// Seconds of this subject's window (the longest it was counted with).
    window: i64,
    /// The limit it was last counted against.
    limit: u32,
    hits: VecDeque<i64>,
}

impl Entry {
    /// How much this entry is worth keeping: how close it is to its limit
    /// (per mille), then how recently it was hit.
    fn worth(&self) -> (u64, i64) {
        let fill = self.hits.len() as u64 * 1000 / u64::from(self.limit.max(1));
        (fill, self.hits.back().copied().unwrap_or(i64::MIN))
    }
}

struct State {
    day: i64,
    secret: [u8; 32],
    // An IndexMap so that entries can be picked at random to evict.
    entries: IndexMap<[u8; 32], Entry>,
    /// Map size after the last sweep: sweep again once it doubled.
    swept_at_len: usize,
    /// When the last sweep ran: sweep at least once a minute.
    swept_at: i64,
}

impl State {
    /// Drop every entry whose window has passed.
    fn sweep(&mut self, now: i64) {
        self.entries.retain(|_, e| e.hits.back().is_some_and(|&t| t > now - e.window));
        self.swept_at_len = self.entries.len();
        self.swept_at = now;
    }

    /// Make room for one entry: the least worth keeping of a random sample.
    fn evict_one(&mut self) {
        let n = self.entries.len();
        if n == 0 {
            return;
        }
        let mut rng = rand::rng();
        let victim = (0..EVICTION_SAMPLE.min(n))
            .map(|_| rng.random_range(0..n))
            .min_by_key(|&i| self.entries[i].worth())
            .expect("a non-empty sample");
        self.entries.swap_remove_index(victim);
    }
}

/// The subject a client address is counted under: the address itself for
/// IPv4, its /64 for IPv6.
pub fn client_subject(ip: &str) -> String {
    match ip.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_none() => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        Ok(IpAddr::V6(v6)) => v6.to_ipv4_mapped().map(|v4| v4.to_string()).unwrap_or_default(),
        _ => ip.to_string(),
    }
}

impl RateLimiter {
    pub fn new(clock: Arc<dyn Clock>) -> RateLimiter {
        RateLimiter::with_max_subjects(clock, DEFAULT_MAX_SUBJECTS)
    }

    pub fn with_max_subjects(clock: Arc<dyn Clock>, max_subjects: usize) -> RateLimiter {
        let day = clock.unix_now().div_euclid(86_400);
        RateLimiter {
            clock,
            max_subjects: max_subjects.max(1),
            state: Mutex::new(State {
                day,
                secret: rand::rng().random(),
                // Room for every subject from the start: growing by doubling
                // copied the table each time and left the old ones to the
                // allocator (the process grew far past the table's size);
                // pages of the reserved room are only touched as it fills.
                entries: IndexMap::with_capacity(max_subjects.max(1)),
                swept_at_len: 0,
                swept_at: 0,
            }),
        }
    }

    /// Count one event for the client at address `ip` in `scope` (see
    /// [`client_subject`]).
    pub fn hit_client(&self, scope: &str, ip: &str, limit: u32, window_secs: i64) -> Result<(), u64> {
        self.hit(scope, &client_subject(ip), limit, window_secs)
    }

    /// Count one event for `subject` in `scope`; refuse it (with the seconds
    /// until a slot frees) when `limit` events already happened within the
    /// last `window_secs`. A new subject when the map is full evicts one.
    pub fn hit(&self, scope: &str, subject: &str, limit: u32, window_secs: i64) -> Result<(), u64> {
        let now = self.clock.unix_now();
        let mut guard = self.state.lock().expect("rate limiter poisoned");
        let st = &mut *guard;
        let today = now.div_euclid(86_400);
        if today != st.day {
            st.day = today;
            st.secret = rand::rng().random();
            st.entries.clear();
            st.swept_at_len = 0;
            st.swept_at = now;
        }
        if st.entries.len() >= (2 * st.swept_at_len).max(1024) || now - st.swept_at >= 60 {
            st.sweep(now);
        }
        let key = Self::key(&st.secret, scope, subject);
        if !st.entries.contains_key(&key) && st.entries.len() >= self.max_subjects {
            if now > st.swept_at {
                st.sweep(now);
            }
            while st.entries.len() >= self.max_subjects {
                st.evict_one();
            }
        }
        let e = st.entries.entry(key).or_insert_with(|| Entry { window: window_secs, limit, hits: VecDeque::new() });
        e.window = e.window.max(window_secs);
        e.limit = limit;
        while e.hits.front().is_some_and(|&t| t <= now - window_secs) {
            e.hits.pop_front();
        }
        if e.hits.len() >= limit as usize {
            let retry = e.hits.front().map_or(window_secs, |&t| t + window_secs - now).max(1);
            return Err(retry as u64);
        }
        e.hits.push_back(now);
        Ok(())
    }

    /// Whether `subject` is at its limit in `scope`, without counting an
    /// event (for limits counted only on failure).
    pub fn check(&self, scope: &str, subject: &str, limit: u32, window_secs: i64) -> Result<(), u64> {
        let now = self.clock.unix_now();
        let st = self.state.lock().expect("rate limiter poisoned");
        if now.div_euclid(86_400) != st.day {
            return Ok(());
        }
        let key = Self::key(&st.secret, scope, subject);
        match st.entries.get(&key) {
            Some(e) => {
                let recent: Vec<i64> = e.hits.iter().copied().filter(|&t| t > now - window_secs).collect();
                if recent.len() >= limit as usize {
                    Err((recent[0] + window_secs - now).max(1) as u64)
                } else {
                    Ok(())
                }
            }
            None => Ok(()),
        }
    }

    fn key(secret: &[u8; 32], scope: &str, subject: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(secret);
        h.update(scope.as_bytes());
        h.update([0]);
        h.update(subject.as_bytes());
        h.finalize().into()
    }

    /// Number of distinct subjects being tracked.
    pub fn tracked(&self) -> usize {
        self.state.lock().expect("rate limiter poisoned").entries.len()
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

    #[test]
    fn entries_are_dropped_when_their_window_passed() {
        let clock = ManualClock::at(86_400 * 10);
        let rl = RateLimiter::new(clock.clone());
        for i in 0..5000 {
            rl.hit("reset-email", &format!("victim{i}@example.com"), 5, 60).unwrap();
        }
        assert_eq!(rl.tracked(), 5000);
        clock.advance(61);
        for i in 0..3000 {
            rl.hit("reset-email", &format!("other{i}@example.com"), 5, 60).unwrap();
        }
        assert!(rl.tracked() <= 3000 + 1024, "expired subjects were swept: {}", rl.tracked());
    }

    #[test]
    fn a_full_map_admits_newcomers_and_keeps_the_counters_that_refuse() {
        let clock = ManualClock::at(86_400 * 10);
        let rl = RateLimiter::with_max_subjects(clock.clone(), 1000);
        // 50 subjects at their limit: an account being guessed at.
        for i in 0..50 {
            for _ in 0..5 {
                rl.hit("login", &format!("victim{i}"), 5, 3600).unwrap();
            }
        }
        // A flood of fresh subjects, twenty times the map's size.
        for i in 0..20_000 {
            rl.hit("reset", &format!("flood{i}"), 5, 3600).unwrap();
        }
        assert_eq!(rl.tracked(), 1000, "the map stays at its bound");
        // Newcomers are counted, not refused.
        rl.hit("login", "newcomer", 2, 3600).unwrap();
        rl.hit("login", "newcomer", 2, 3600).unwrap();
        assert!(rl.hit("login", "newcomer", 2, 3600).is_err());
        // The counters at their limit survived the flood (each eviction
        // samples 8 entries and takes one below its limit when there is
        // one; a few may go, nearly all must stay).
        let still_refused = (0..50).filter(|i| rl.check("login", &format!("victim{i}"), 5, 3600).is_err()).count();
        assert!(still_refused >= 45, "only {still_refused} of 50 refusing counters survived");
    }

    #[test]
    fn ipv6_clients_share_their_64() {
        assert_eq!(client_subject("2001:db8:1:2:aaaa::1"), client_subject("2001:db8:1:2:ffff:1:2:3"));
        assert_ne!(client_subject("2001:db8:1:2::1"), client_subject("2001:db8:1:3::1"));
        assert_eq!(client_subject("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(client_subject("192.0.2.7"), "192.0.2.7");
        let rl = RateLimiter::new(ManualClock::at(86_400 * 10));
        rl.hit_client("upload", "2001:db8::1", 1, 3600).unwrap();
        assert!(rl.hit_client("upload", "2001:db8::2", 1, 3600).is_err());
    }
}
