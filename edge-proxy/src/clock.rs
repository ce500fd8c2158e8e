//! Time as the edge sees it, injectable so tests move time instead of
//! sleeping. Expiry is the only decision taken on wall-clock time.

use std::sync::Arc;

pub trait Clock: Send + Sync + 'static {
    /// Seconds since the Unix epoch.
    fn unix_now(&self) -> i64;
}

/// The real clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn unix_now(&self) -> i64 {
        time::OffsetDateTime::now_utc().unix_timestamp()
    }
}

pub fn system() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;
    use std::sync::atomic::{AtomicI64, Ordering};

    pub struct ManualClock(pub AtomicI64);

    impl ManualClock {
        pub fn at(t: i64) -> Arc<ManualClock> {
            Arc::new(ManualClock(AtomicI64::new(t)))
        }
        pub fn set(&self, t: i64) {
            self.0.store(t, Ordering::SeqCst);
        }
    }

    impl Clock for ManualClock {
        fn unix_now(&self) -> i64 {
            self.0.load(Ordering::SeqCst)
        }
    }
}
