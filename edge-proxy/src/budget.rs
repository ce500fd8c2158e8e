//! The send budget: a process-wide bound on response body bytes held in
//! memory for sending.
//!
//! Bodies shared with the memory tier cost nothing extra and are not
//! counted. Everything else a response holds is: a body read whole from the
//! disk tier or the origin (its length, for as long as the response is
//! being written), and each chunk of a body streamed from the disk tier
//! (while it is read and written). A slow reader therefore holds one chunk,
//! not an object, and the sum over all responses stays under
//! `limits.send_buffer_bytes`. A response that cannot get its first bytes'
//! worth within `limits.send_buffer_wait_ms` is answered 503 with
//! `Retry-After`; later chunks of a response already under way wait (up to
//! `limits.send_timeout_secs`).

use std::sync::Arc;
use std::time::Duration;

use prometheus::IntGauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Permits are KiB, so that one acquisition (a `u32`) can cover any body.
const UNIT: u64 = 1024;

pub struct SendBudget {
    sem: Arc<Semaphore>,
    units: u64,
    gauge: IntGauge,
}

/// Bytes held against the budget; released on drop.
pub struct Held {
    _permit: OwnedSemaphorePermit,
    bytes: i64,
    gauge: IntGauge,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.gauge.sub(self.bytes);
    }
}

impl SendBudget {
    /// A budget of `bytes` (at least one unit); `gauge` shows what is held.
    pub fn new(bytes: u64, gauge: IntGauge) -> SendBudget {
        let units = (bytes / UNIT).clamp(1, Semaphore::MAX_PERMITS as u64);
        SendBudget { sem: Arc::new(Semaphore::new(units as usize)), units, gauge }
    }

    /// Hold `bytes`, waiting at most `wait`. A request larger than the whole
    /// budget holds all of it (one such body at a time). `None`: the budget
    /// stayed full.
    pub async fn hold(&self, bytes: u64, wait: Duration) -> Option<Held> {
        let units = bytes.div_ceil(UNIT).clamp(1, self.units).min(u64::from(u32::MAX)) as u32;
        let permit = match self.sem.clone().try_acquire_many_owned(units) {
            Ok(p) => p,
            Err(_) if wait.is_zero() => return None,
            Err(_) => tokio::time::timeout(wait, self.sem.clone().acquire_many_owned(units)).await.ok()?.ok()?,
        };
        let bytes = bytes as i64;
        self.gauge.add(bytes);
        Some(Held { _permit: permit, bytes, gauge: self.gauge.clone() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn holds_up_to_the_budget_then_waits_or_refuses() {
        let gauge = IntGauge::new("g", "g").unwrap();
        let b = SendBudget::new(64 * 1024, gauge.clone());
        let a = b.hold(40 * 1024, Duration::ZERO).await.unwrap();
        assert_eq!(gauge.get(), 40 * 1024);
        assert!(b.hold(40 * 1024, Duration::from_millis(20)).await.is_none());
        let _c = b.hold(24 * 1024, Duration::ZERO).await.unwrap();
        drop(a);
        assert!(b.hold(40 * 1024, Duration::ZERO).await.is_some());
        // Larger than the whole budget: takes all of it, once it is free.
        let b = SendBudget::new(64 * 1024, gauge);
        let huge = b.hold(1 << 30, Duration::ZERO).await.unwrap();
        assert!(b.hold(1, Duration::ZERO).await.is_none());
        drop(huge);
        assert!(b.hold(1, Duration::ZERO).await.is_some());
    }
}
