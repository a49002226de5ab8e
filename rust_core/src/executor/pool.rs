//! Intra-op parallelism: a fixed set of worker threads. After a job, a worker polls for the
//! next one for at most [`SPIN`] (operators of one run follow each other within microseconds,
//! and a futex wake-up costs more than that), then sleeps on a condition variable: an idle
//! session costs no CPU, and the caller's core is never taken for longer than that window.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

type Job = Box<dyn FnOnce() + Send + 'static>;

/// How long an idle worker polls for new work before sleeping.
pub const SPIN: Duration = Duration::from_micros(50);

struct Shared {
    queue: Mutex<(Vec<Job>, bool)>,
    cv: Condvar,
    /// Jobs queued and not yet taken (read without the lock while polling).
    pending: AtomicUsize,
    /// Workers blocked on `cv` (the producer only signals when some are).
    sleepers: AtomicUsize,
}

impl Shared {
    fn pop(&self) -> Option<Job> {
        let j = self.queue.lock().unwrap_or_else(|e| e.into_inner()).0.pop();
        if j.is_some() {
            self.pending.fetch_sub(1, Ordering::AcqRel);
        }
        j
    }
}

/// A pool of `threads - 1` workers; the calling thread always takes part in the work.
pub struct ThreadPool {
    threads: usize,
    shared: Arc<Shared>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for ThreadPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ThreadPool({} threads)", self.threads)
    }
}

/// The number of cores available to this process (at least 1).
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

impl ThreadPool {
    /// A pool using `threads` threads in total (the caller plus `threads - 1` workers).
    pub fn new(threads: usize) -> ThreadPool {
        let threads = threads.max(1);
        let shared = Arc::new(Shared {
            queue: Mutex::new((Vec::new(), false)),
            cv: Condvar::new(),
            pending: AtomicUsize::new(0),
            sleepers: AtomicUsize::new(0),
        });
        let workers = (1..threads)
            .map(|i| {
                let s = shared.clone();
                std::thread::Builder::new()
                    .name(format!("pmi-worker-{i}"))
                    .spawn(move || loop {
                        // Poll briefly for the next job before sleeping.
                        let start = Instant::now();
                        let mut n = 0u32;
                        while s.pending.load(Ordering::Acquire) == 0 {
                            std::hint::spin_loop();
                            n += 1;
                            if n % 64 == 0 && start.elapsed() > SPIN {
                                break;
                            }
                        }
                        let job = {
                            let mut q = s.queue.lock().unwrap_or_else(|e| e.into_inner());
                            loop {
                                if let Some(j) = q.0.pop() {
                                    s.pending.fetch_sub(1, Ordering::AcqRel);
                                    break Some(j);
                                }
                                if q.1 {
                                    break None;
                                }
                                s.sleepers.fetch_add(1, Ordering::AcqRel);
                                q = s.cv.wait(q).unwrap_or_else(|e| e.into_inner());
                                s.sleepers.fetch_sub(1, Ordering::AcqRel);
                            }
                        };
                        match job {
                            Some(j) => j(),
                            None => return,
                        }
                    })
                    .expect("spawn worker thread")
            })
            .collect();
        ThreadPool { threads, shared, workers }
    }

    /// Total threads used by `parallel_for`.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Run `f(start, end)` over `0..n` split into at most `threads` contiguous chunks of at least
    /// `min_chunk` items, in parallel; returns when all chunks are done. Panics in `f` propagate.
    pub fn parallel_for<F>(&self, n: usize, min_chunk: usize, f: F)
    where
        F: Fn(usize, usize) + Sync,
    {
        let chunks = if self.threads <= 1 { 1 } else { (n / min_chunk.max(1)).clamp(1, self.threads) };
        if chunks <= 1 {
            if n > 0 {
                f(0, n);
            }
            return;
        }
        let per = n.div_ceil(chunks);
        // Jobs borrow `f` from this stack frame; we wait for all of them before returning, so
        // the borrow outlives every use. The lifetime is erased to hand jobs to the workers.
        let done = Arc::new((Mutex::new((0usize, None::<Box<dyn std::any::Any + Send>>)), Condvar::new()));
        let f_ref: &(dyn Fn(usize, usize) + Sync) = &f;
        let f_static: &'static (dyn Fn(usize, usize) + Sync) = unsafe { std::mem::transmute(f_ref) };
        {
            let mut q = self.shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            for c in 1..chunks {
                let (s, e) = (c * per, ((c + 1) * per).min(n));
                let d = done.clone();
                q.0.push(Box::new(move || {
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| if s < e { f_static(s, e) }));
                    let (m, cv) = &*d;
                    let mut g = m.lock().unwrap_or_else(|e| e.into_inner());
                    g.0 += 1;
                    if let Err(p) = r {
                        g.1 = Some(p);
                    }
                    cv.notify_all();
                }));
            }
            self.shared.pending.fetch_add(chunks - 1, Ordering::AcqRel);
        }
        if self.shared.sleepers.load(Ordering::Acquire) > 0 {
            self.shared.cv.notify_all();
        }
        let first = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(0, per.min(n))));
        // Help drain the queue while waiting, so nested or busy pools never deadlock.
        while let Some(j) = self.shared.pop() {
            j();
        }
        let (m, cv) = &*done;
        // Chunks still running elsewhere are short: poll a little before blocking.
        let start = Instant::now();
        let mut g = m.lock().unwrap_or_else(|e| e.into_inner());
        while g.0 < chunks - 1 && start.elapsed() < SPIN {
            drop(g);
            for _ in 0..64 {
                std::hint::spin_loop();
            }
            g = m.lock().unwrap_or_else(|e| e.into_inner());
        }
        while g.0 < chunks - 1 {
            g = cv.wait(g).unwrap_or_else(|e| e.into_inner());
        }
        if let Err(p) = first {
            std::panic::resume_unwind(p);
        }
        if let Some(p) = g.1.take() {
            drop(g);
            std::panic::resume_unwind(p);
        }
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        self.shared.queue.lock().unwrap_or_else(|e| e.into_inner()).1 = true;
        self.shared.cv.notify_all();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn covers_every_index_once() {
        let p = ThreadPool::new(3);
        let hits: Vec<AtomicUsize> = (0..1000).map(|_| AtomicUsize::new(0)).collect();
        p.parallel_for(1000, 10, |s, e| {
            for h in &hits[s..e] {
                h.fetch_add(1, Ordering::SeqCst);
            }
        });
        assert!(hits.iter().all(|h| h.load(Ordering::SeqCst) == 1));
    }

    #[test]
    fn panics_propagate_and_pool_survives() {
        let p = ThreadPool::new(2);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| p.parallel_for(100, 1, |s, _| if s > 0 { panic!("x") })));
        assert!(r.is_err());
        let n = AtomicUsize::new(0);
        p.parallel_for(100, 1, |s, e| { n.fetch_add(e - s, Ordering::SeqCst); });
        assert_eq!(n.load(Ordering::SeqCst), 100);
    }
}
