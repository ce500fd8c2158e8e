//! A few long-lived threads for heavy, memory-hungry work (decoding
//! uploads, running the detector), fed through a queue.
//!
//! On tokio's blocking pool every burst of such work met new threads, and
//! each thread's malloc arena kept what its jobs had freed: 60 concurrent
//! uploads of large PNGs left the process gigabytes above its budgets, and
//! spreading 16 CPU-bound decodes over 2 cores made none of them faster.
//! Here the same `n` threads (one per core by default) run every job, so at
//! most `n` jobs hold memory at once and at most `n` arenas exist; callers
//! still reserve their job's memory from a budget before queueing, which
//! bounds how many can wait.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

type Job = Box<dyn FnOnce() + Send>;

#[derive(Clone)]
pub struct Workers {
    queue: mpsc::Sender<Job>,
}

/// The job gave no result: it panicked, or the threads are gone (the
/// process is shutting down).
#[derive(Debug, thiserror::Error)]
#[error("the {0} job did not finish")]
pub struct Gone(&'static str);

impl Workers {
    /// `n` threads named `{name}-{i}` (`n` = 0: one per core).
    pub fn new(name: &'static str, n: usize) -> Workers {
        let n = match n {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let (queue, jobs) = mpsc::channel::<Job>();
        let jobs = Arc::new(Mutex::new(jobs));
        for i in 0..n {
            let jobs = jobs.clone();
            std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || loop {
                    // The lock is held only to take the next job.
                    let job = match jobs.lock().map(|q| q.recv()) {
                        Ok(Ok(job)) => job,
                        _ => return, // every sender is gone
                    };
                    // A job that panics (a decoder bug on a hostile file)
                    // fails alone: its caller gets an error, the thread
                    // lives on for the next job.
                    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
                        tracing::error!("a {name} job panicked; its request failed");
                    }
                })
                .expect("spawn a worker thread");
        }
        Workers { queue }
    }

    /// Run `work` on one of the threads; its result.
    pub async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T, Gone> {
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = done.send(work());
        });
        self.queue.send(job).map_err(|_| Gone("worker"))?;
        result.await.map_err(|_| Gone("worker"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_on_the_same_few_threads() {
        let w = Workers::new("test-worker", 2);
        let mut names = std::collections::HashSet::new();
        let runs: Vec<_> = (0..20)
            .map(|i| {
                let w = w.clone();
                tokio::spawn(async move {
                    w.run(move || (i * 2, std::thread::current().name().unwrap_or("").to_string())).await.unwrap()
                })
            })
            .collect();
        for (i, r) in runs.into_iter().enumerate() {
            let (doubled, name) = r.await.unwrap();
            assert_eq!(doubled, i * 2);
            names.insert(name);
        }
        assert!(!names.is_empty() && names.len() <= 2, "{names:?}");
        assert!(names.iter().all(|n| n.starts_with("test-worker-")), "{names:?}");
    }

    #[tokio::test]
    async fn a_panicking_job_fails_alone() {
        let w = Workers::new("test-panic", 1);
        for _ in 0..3 {
            assert!(w.run(|| panic!("a decoder bug")).await.is_err());
        }
        // The one thread still serves.
        assert_eq!(w.run(|| 7).await.unwrap(), 7);
    }
}
