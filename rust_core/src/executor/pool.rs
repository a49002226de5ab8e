//! Intra-op parallelism: a fixed set of worker threads. While a session run is in progress
//! (see [`ThreadPool::run_scope`]) idle workers poll for the next job without sleeping (the
//! operators of one run follow each other within microseconds and a futex wake-up costs more
//! than a small operator); outside runs a worker polls for at most [`SPIN`], then sleeps on a
//! condition variable: an idle session costs no CPU, and the caller's core is never taken for
//! longer than that window after a run. Completion is counted with an atomic (the caller polls,
//! then parks), so a parallel loop costs no system call while the workers are awake.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

type Job = Box<dyn FnOnce() + Send + 'static>;

/// How long an idle worker polls for new work before sleeping, outside session runs.
pub const SPIN: Duration = Duration::from_micros(50);

/// Polling rounds (each a spin-loop hint and a load, about 20 ns) between two yields of an
/// idle worker. Polling through a whole run keeps the worker's core busy: when the machine is
/// shared, the scheduler may put the worker on the caller's core, and a worker that never
/// yields then takes half of it from the thread doing the work. With a busy process pinned to
/// the other core of two, mobilenet_v3_small on two threads took 2.5 ms (1.35x its one-thread
/// time) and squeezenet1_1 13.1 ms (1.6x); yielding every 64 rounds, 1.95 and 7.6 ms (the
/// one-thread times; every 256 rounds: 2.35-2.6 and 8.1-9.2). A yield with nothing else to run
/// returns at once.
const YIELD_EVERY: u32 = 64;

struct Shared {
    queue: Mutex<(Vec<Job>, bool)>,
    cv: Condvar,
    /// Jobs queued and not yet taken (read without the lock while polling).
    pending: AtomicUsize,
    /// Workers blocked on `cv` (the producer only signals when some are).
    sleepers: AtomicUsize,
    /// Session runs in progress: while non-zero, idle workers keep polling.
    active: AtomicUsize,
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
            active: AtomicUsize::new(0),
        });
        let workers = (1..threads)
            .map(|i| {
                let s = shared.clone();
                std::thread::Builder::new()
                    .name(format!("pmi-worker-{i}"))
                    .spawn(move || loop {
                        // Poll for the next job (for the whole run, or briefly) before sleeping.
                        let mut n = 0u32;
                        let mut start = Instant::now();
                        while s.pending.load(Ordering::Acquire) == 0 {
                            std::hint::spin_loop();
                            n += 1;
                            if n % YIELD_EVERY == 0 {
                                // Let a thread sharing this core run (see YIELD_EVERY).
                                std::thread::yield_now();
                            }
                            if n % 64 == 0 {
                                if s.active.load(Ordering::Relaxed) > 0 {
                                    start = Instant::now();
                                } else if start.elapsed() > SPIN {
                                    break;
                                }
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
        let done = Arc::new(Done {
            remaining: AtomicUsize::new(chunks - 1),
            parked: AtomicBool::new(false),
            caller: std::thread::current(),
            panic: Mutex::new(None),
        });
        let f_ref: &(dyn Fn(usize, usize) + Sync) = &f;
        let f_static: &'static (dyn Fn(usize, usize) + Sync) = unsafe { std::mem::transmute(f_ref) };
        {
            let mut q = self.shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            for c in 1..chunks {
                let (s, e) = (c * per, ((c + 1) * per).min(n));
                let d = done.clone();
                q.0.push(Box::new(move || {
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| if s < e { f_static(s, e) }));
                    if let Err(p) = r {
                        *d.panic.lock().unwrap_or_else(|e| e.into_inner()) = Some(p);
                    }
                    // SeqCst pairs with the caller's store of `parked` then load of `remaining`:
                    // either the caller sees zero, or this thread sees it parked.
                    if d.remaining.fetch_sub(1, Ordering::SeqCst) == 1 && d.parked.load(Ordering::SeqCst) {
                        d.caller.unpark();
                    }
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
        // Chunks still running elsewhere are short: poll a little before parking.
        let start = Instant::now();
        let mut spins = 0u32;
        while done.remaining.load(Ordering::Acquire) > 0 {
            std::hint::spin_loop();
            spins += 1;
            if spins % YIELD_EVERY == 0 {
                // The worker being waited for may share this core.
                std::thread::yield_now();
            }
            if spins % 64 == 0 && start.elapsed() > SPIN {
                done.parked.store(true, Ordering::SeqCst);
                while done.remaining.load(Ordering::SeqCst) > 0 {
                    // A timeout too, in case the wake-up raced with a spurious one.
                    std::thread::park_timeout(Duration::from_millis(1));
                }
                break;
            }
        }
        if let Err(p) = first {
            std::panic::resume_unwind(p);
        }
        let panicked = done.panic.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(p) = panicked {
            std::panic::resume_unwind(p);
        }
    }

    /// Mark a session run in progress until the guard drops: idle workers keep polling for
    /// work instead of sleeping after [`SPIN`] (they go back to the short window afterwards).
    pub fn run_scope(&self) -> RunScope<'_> {
        self.shared.active.fetch_add(1, Ordering::AcqRel);
        RunScope(&self.shared)
    }
}

/// Completion of one `parallel_for`: chunks left, and who to wake.
struct Done {
    remaining: AtomicUsize,
    parked: AtomicBool,
    caller: std::thread::Thread,
    panic: Mutex<Option<Box<dyn std::any::Any + Send>>>,
}

/// See [`ThreadPool::run_scope`].
pub struct RunScope<'a>(&'a Shared);

impl Drop for RunScope<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
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
    fn waits_for_chunks_longer_than_the_spin_window() {
        // The caller parks after SPIN; the last chunk to finish must wake it (with and
        // without a run scope keeping the workers polling).
        let p = ThreadPool::new(3);
        for scoped in [false, true] {
            let _scope = scoped.then(|| p.run_scope());
            let n = AtomicUsize::new(0);
            p.parallel_for(3, 1, |s, e| {
                if s > 0 {
                    std::thread::sleep(SPIN * 40);
                }
                n.fetch_add(e - s, Ordering::SeqCst);
            });
            assert_eq!(n.load(Ordering::SeqCst), 3);
        }
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
