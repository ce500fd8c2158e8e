//! Single-flight: when many requests miss the same key at once, one of
//! them does the work and the others wait for its result.
//!
//! Built on `tokio::sync::OnceCell`: if the request doing the work is
//! cancelled (its client went away), another waiter takes over instead of
//! everybody failing. The key is forgotten once the work is done, so the
//! next miss after that does a fresh read.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

pub struct Flight<K, V> {
    // A std mutex: it is held only to look up or insert a map entry, never
    // across an await.
    calls: Mutex<HashMap<K, Arc<OnceCell<V>>>>,
}

impl<K: Eq + Hash + Clone, V: Clone> Default for Flight<K, V> {
    fn default() -> Self {
        Flight { calls: Mutex::new(HashMap::new()) }
    }
}

impl<K: Eq + Hash + Clone, V: Clone> Flight<K, V> {
    /// Run `work` for `key` unless a call for it is already under way, in
    /// which case wait for that call's result.
    pub async fn run<F, Fut>(&self, key: K, work: F) -> V
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = V>,
    {
        let cell = {
            let mut calls = self.calls.lock().expect("flight map poisoned");
            calls.entry(key.clone()).or_default().clone()
        };
        let value = cell.get_or_init(work).await.clone();
        let mut calls = self.calls.lock().expect("flight map poisoned");
        if calls.get(&key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
            calls.remove(&key);
        }
        value
    }

    /// Calls under way (for tests and metrics).
    pub fn in_flight(&self) -> usize {
        self.calls.lock().expect("flight map poisoned").len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn concurrent_callers_share_one_call() {
        let flight = Arc::new(Flight::<u32, u32>::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (flight, calls) = (flight.clone(), calls.clone());
            tasks.push(tokio::spawn(async move {
                flight
                    .run(7, || async {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        42
                    })
                    .await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), 42);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(flight.in_flight(), 0);
    }

    #[tokio::test]
    async fn a_later_call_runs_again() {
        let flight = Flight::<u32, u32>::default();
        assert_eq!(flight.run(1, || async { 1 }).await, 1);
        assert_eq!(flight.run(1, || async { 2 }).await, 2);
    }

    #[tokio::test]
    async fn a_cancelled_leader_hands_over_to_a_waiter() {
        let flight = Arc::new(Flight::<u32, u32>::default());
        let f = flight.clone();
        let leader = tokio::spawn(async move {
            f.run(1, || async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                0
            })
            .await
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let f = flight.clone();
        let follower = tokio::spawn(async move { f.run(1, || async { 5 }).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        leader.abort();
        assert_eq!(tokio::time::timeout(Duration::from_secs(5), follower).await.unwrap().unwrap(), 5);
    }
}
