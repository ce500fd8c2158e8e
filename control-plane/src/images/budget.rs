//! Memory budgets: bytes of upload bodies held in memory, and bytes of
//! memory image decoding may use, across all requests at once.
//!
//! A request reserves what it will hold before it holds it: an upload
//! chunk by chunk as the file streams in, a decode its whole
//! [`imgcdn_media::decode_cost`] before it starts. When the budget is spent
//! the request waits up to `uploads.budget_wait_ms` for others to finish,
//! then gets a 503 with `Retry-After`: the process never holds more than
//! the budgets, however many requests arrive. (The per-client hourly limits
//! bound how often; these bound how much at once.)

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;

/// Budgets are counted in units of this many bytes (a semaphore holds at
/// most `u32::MAX` permits at a time).
const UNIT: u64 = 4096;

/// Seconds a caller refused for a full budget is told to wait.
const RETRY_SECS: u64 = 5;

/// A byte budget shared by concurrent requests.
pub struct MemoryBudget {
    units: Arc<Semaphore>,
    total_units: u32,
    wait: Duration,
}

/// Bytes reserved from a [`MemoryBudget`]; given back when dropped.
#[derive(Debug)]
pub struct Reserved(Option<OwnedSemaphorePermit>);

impl Reserved {
    /// Nothing reserved (yet).
    pub fn none() -> Reserved {
        Reserved(None)
    }

    /// Hold `other` too, as one reservation.
    pub fn merge(&mut self, other: Reserved) {
        match (&mut self.0, other.0) {
            (Some(mine), Some(theirs)) => mine.merge(theirs),
            (mine @ None, theirs) => *mine = theirs,
            (_, None) => {}
        }
    }
}

/// Why a reservation failed.
#[derive(Debug, PartialEq, Eq)]
pub enum BudgetError {
    /// More than the whole budget: it can never be had.
    TooLarge { needed: u64, total: u64 },
    /// The budget stayed spent for the whole wait.
    Busy,
}

impl MemoryBudget {
    pub fn new(total_bytes: u64, wait: Duration) -> MemoryBudget {
        let total_units = (total_bytes / UNIT).clamp(1, u64::from(u32::MAX >> 3)) as u32;
        MemoryBudget { units: Arc::new(Semaphore::new(total_units as usize)), total_units, wait }
    }

    /// Bytes of the whole budget.
    pub fn total(&self) -> u64 {
        u64::from(self.total_units) * UNIT
    }

    /// Bytes reserved right now.
    pub fn in_use(&self) -> u64 {
        (u64::from(self.total_units) - self.units.available_permits() as u64) * UNIT
    }

    /// Reserve `bytes`, waiting up to the configured wait.
    pub async fn reserve(&self, bytes: u64) -> Result<Reserved, BudgetError> {
        self.reserve_until(bytes, tokio::time::Instant::now() + self.wait).await
    }

    /// When a request that reserves in steps (an upload, chunk by chunk)
    /// must have all its room: one wait for the whole request, not one per
    /// step.
    pub fn deadline(&self) -> tokio::time::Instant {
        tokio::time::Instant::now() + self.wait
    }

    /// Reserve `bytes`, waiting until `deadline` at the latest.
    pub async fn reserve_until(&self, bytes: u64, deadline: tokio::time::Instant) -> Result<Reserved, BudgetError> {
        let units = bytes.div_ceil(UNIT).max(1);
        if units > u64::from(self.total_units) {
            return Err(BudgetError::TooLarge { needed: bytes, total: self.total() });
        }
        match tokio::time::timeout_at(deadline, self.units.clone().acquire_many_owned(units as u32)).await {
            Ok(Ok(permit)) => Ok(Reserved(Some(permit))),
            _ => Err(BudgetError::Busy),
        }
    }
}

impl BudgetError {
    /// The API's answer: a 503 to wait for, or what is wrong with the file.
    pub fn into_api(self, what: &str) -> ApiError {
        match self {
            BudgetError::Busy => ApiError::Overloaded { retry_after_secs: RETRY_SECS },
            BudgetError::TooLarge { needed, total } => ApiError::validation(
                "file",
                format!(
                    "This image needs about {} MB of memory to {what}; this server handles at most {} MB at once.",
                    needed.div_ceil(1_000_000),
                    total / 1_000_000
                ),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reservations_wait_for_room_then_give_up_and_never_exceed_the_total() {
        let budget = MemoryBudget::new(10 * UNIT, Duration::from_millis(50));
        let a = budget.reserve(6 * UNIT).await.unwrap();
        assert_eq!(budget.in_use(), 6 * UNIT);
        assert_eq!(budget.reserve(5 * UNIT).await.unwrap_err(), BudgetError::Busy);
        let b = budget.reserve(4 * UNIT).await.unwrap();
        assert_eq!(budget.in_use(), 10 * UNIT);
        drop(a);
        let mut c = budget.reserve(5 * UNIT).await.unwrap();
        c.merge(budget.reserve(1).await.unwrap());
        assert_eq!(budget.in_use(), 10 * UNIT);
        drop((b, c));
        assert_eq!(budget.in_use(), 0);
        assert!(matches!(budget.reserve(11 * UNIT).await, Err(BudgetError::TooLarge { .. })));
    }

    #[tokio::test]
    async fn a_waiter_gets_in_when_room_frees() {
        let budget = Arc::new(MemoryBudget::new(10 * UNIT, Duration::from_secs(5)));
        let held = budget.reserve(10 * UNIT).await.unwrap();
        let waiter = tokio::spawn({
            let budget = budget.clone();
            async move { budget.reserve(3 * UNIT).await.map(|_| ()) }
        });
        tokio::task::yield_now().await;
        drop(held);
        waiter.await.unwrap().unwrap();
    }
}
