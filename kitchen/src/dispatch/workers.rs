//! The worker threads that run the chefs' lanes of one step side by side
//! (`--chef-threads`).
//!
//! Why: the kitchen used to call every chef one after the other on one thread, so a slow
//! but legal chef (20 ms per batch, under its deadline) added its time to every batch and
//! the other chefs waited for it. With workers, each step (a batch, a poke, a flush of the
//! queues, a delivery of flow events) runs every lane's calls on a small pool; each lane
//! touches only itself ([`crate::dispatch::lane`]) and keeps its dumplings until the
//! dispatcher sends them lane by lane in the fixed chef order, so the output is byte for
//! byte what one thread gives.
//!
//! The pool is the kitchen's own, small and step-shaped, because the hand-off is what a
//! loaded machine makes expensive: the dispatcher's thread takes part in every step. It
//! publishes the step, wakes the workers and starts claiming lanes itself from a shared
//! counter; a worker that wakes claims lanes from the same counter. When no lane is left
//! the dispatcher waits only for the lanes a worker is running, never for a worker that
//! has not woken yet. On an idle machine the lanes run side by side; on an overloaded one
//! (a woken thread may wait milliseconds for a core) a step costs about what one thread
//! costs, instead of a scheduling delay per step (measured: `nd-isolation-bench`,
//! `nd-kitchen-bench --chef-threads`, figures in ARCHITECTURE.md).
//!
//! Lanes are claimed dearest first (by what each cost in the last step), not in chef
//! order: with one chef as dear as the others together (`TopTalkersChef` on
//! high-cardinality traffic), claimed last it ran alone after the cheap lanes had been
//! shared out, and the step took about the cheap lanes' half plus the dear one; claimed
//! first, the other thread runs the cheap lanes beside it. Which thread runs a lane never
//! changes what it does or the order its dumplings are sent in. A chef's call runs
//! wholly on one thread: its deadline (the engine's epoch ticker), its per-thread CPU clock
//! (`chef_host::cpu_time`) and its failure policy work on any thread.

use std::any::Any;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Instant;

use super::lane::ChefLane;

/// What a step runs on each lane (with the lane's index).
type LaneFn<'a> = dyn Fn(usize, &mut ChefLane) + Sync + 'a;

/// The default number of threads for the chefs of a live capture: one per core but one, at
/// most one per chef, at least one.
///
/// Why one core is left out: a live capture's libpcap thread must keep up with the wire (a
/// packet it is late for is lost), and chef threads that compete with it for a core cost more
/// than they give. Measured on 2 cores (stop 15, idle): with two chef threads beside the
/// parser, a chef's own CPU time per packet rose 15-30 % (Rust DNSLookupChef 1.0 -> 1.2-1.3 µs)
/// and up to 50-70 % (Python DNSLookupChef 6.3-6.6 -> 9.4-11.1 µs, `tools/bench-languages.sh`
/// with `--chef-threads 1` and `2`), for 1.15x the mixed corpus's packets/s at 11 % more CPU
/// per packet. A replay loses nothing by being late, so it takes every core
/// ([`default_replay_threads_for`]).
///
/// The kitchen follows this as hot reload adds and retires chefs
/// ([`super::Dispatcher::follow_chef_count`]) unless `--chef-threads` is given.
pub fn default_threads(chefs: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    default_threads_for(cores, chefs)
}

/// [`default_threads`] on a machine with `cores` cores.
pub fn default_threads_for(cores: usize, chefs: usize) -> usize {
    cores.saturating_sub(1).min(chefs).max(1)
}

/// The default number of threads for the chefs of a replay: one per core, at most one per
/// chef, at least one.
///
/// Why every core: a replay's reader and parser thread is idle most of the time (15-25 % busy
/// on the sample corpora, the chefs are the bottleneck) and a late packet is never lost, so
/// the chefs may use its core too. The output is the same for any count
/// ([`crate::dispatch::workers`]). Measured on 2 cores (`nd-sniff -r FILE --no-hub`, wall):
/// idle, high-cardinality corpus 2.82/2.91 s -> 2.28/2.41 s with 2 threads instead of 1; at
/// load 3-4.5, 4 alternated pairs, medians: mixed corpus 1.49 -> 1.30 s (0.88),
/// high-cardinality 2.66 -> 2.49 s (0.94), CPU 1.05x. Into a hub on the same 2 cores (hub and
/// `nd-print` busy too) the kitchen's CPU stayed within the runs' spread.
pub fn default_replay_threads_for(cores: usize, chefs: usize) -> usize {
    cores.min(chefs).max(1)
}

/// One step: the lanes, what to run on each, and who is running which.
struct Job {
    /// The next position in `order` to claim (claims past `len` mean: nothing left).
    next: AtomicUsize,
    len: usize,
    /// The lane indexes in the order they are claimed (dearest first).
    order: Vec<usize>,
    /// What each lane (by index) cost in this step, in ns of wall time.
    spent: Vec<AtomicU64>,
    /// Workers inside [`Job::work`] (the dispatcher is not counted).
    in_flight: AtomicUsize,
    /// The step's lanes; valid, and each element handed out once, while the step runs.
    lanes: *mut ChefLane,
    /// The step's function, its lifetime erased; valid while the step runs.
    f: *const LaneFn<'static>,
    /// A panic in a worker, re-raised on the dispatcher's thread.
    panic: Mutex<Option<Box<dyn Any + Send>>>,
}

// SAFETY: the raw pointers are only dereferenced for lane indexes below `len` claimed once
// each through `next` (positions in `order`, a permutation of `0..len`), and `LaneWorkers::run` does not return (so the lanes and `f` stay
// borrowed) before every thread that claimed one is done (`in_flight` is 0). `ChefLane` is
// `Send` and `f` is `Sync`, so using them from another thread is sound.
#[allow(unsafe_code)]
unsafe impl Send for Job {}
// SAFETY: as above; every other field is itself `Sync`.
#[allow(unsafe_code)]
unsafe impl Sync for Job {}

impl Job {
    /// Claim and run lanes until none is left.
    fn work(&self) {
        loop {
            let k = self.next.fetch_add(1, SeqCst);
            let Some(&i) = self.order.get(k) else {
                return;
            };
            if i >= self.len {
                return;
            }
            let started = Instant::now();
            // SAFETY: `i < len` was claimed by this thread alone (fetch_add), and the lanes
            // and `f` outlive the step (see the `Send` impl).
            #[allow(unsafe_code)]
            let (lane, f) = unsafe { (&mut *self.lanes.add(i), &*self.f) };
            f(i, lane);
            if let Some(spent) = self.spent.get(i) {
                spent.store(started.elapsed().as_nanos() as u64, Relaxed);
            }
        }
    }
}

/// What the dispatcher and the workers share.
#[derive(Default)]
struct Shared {
    /// The current step (with a generation number, so a worker runs each step once).
    step: Mutex<(u64, Option<Arc<Job>>)>,
    /// Signalled when a step is published (or on shutdown).
    wake: Condvar,
    /// Signalled when a worker leaves a step.
    left: Condvar,
    /// Paired with `left`.
    left_lock: Mutex<()>,
    stop: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing holding these locks can panic midway (plain field updates).
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The workers that run the lanes beside the dispatcher's thread (`threads - 1` of them).
pub struct LaneWorkers {
    shared: Arc<Shared>,
    handles: Vec<JoinHandle<()>>,
    threads: usize,
    /// What each lane (by index) cost in the last step that ran it, in ns: the claim
    /// order of the next step (dearest first). Reset when the number of lanes changes.
    last_cost: Mutex<Vec<u64>>,
}

impl LaneWorkers {
    /// Threads for the chefs, the dispatcher's own included: starts `threads - 1` workers
    /// named `chef-worker-N`.
    pub fn new(threads: usize) -> std::io::Result<Self> {
        let shared = Arc::new(Shared::default());
        let mut handles = Vec::new();
        for n in 1..threads.max(1) {
            let shared = shared.clone();
            let h = std::thread::Builder::new()
                .name(format!("chef-worker-{n}"))
                .spawn(move || worker(&shared))?;
            handles.push(h);
        }
        Ok(LaneWorkers {
            shared,
            handles,
            threads: threads.max(1),
            last_cost: Mutex::new(Vec::new()),
        })
    }

    /// The number of threads for the chefs (the dispatcher's own included).
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Run `f` on every lane (with its index), each lane once on some thread (this one
    /// included), and return when all are done. A panic in `f` is re-raised here.
    pub fn run(&self, lanes: &mut [ChefLane], f: &LaneFn<'_>) {
        // SAFETY (lifetime erasure): `job.f` is used only while this call runs (see `Job`).
        #[allow(unsafe_code)]
        let f: *const LaneFn<'static> = unsafe { std::mem::transmute(f as *const LaneFn<'_>) };
        let order = self.claim_order(lanes.len());
        let job = Arc::new(Job {
            next: AtomicUsize::new(0),
            len: lanes.len(),
            order,
            spent: (0..lanes.len()).map(|_| AtomicU64::new(0)).collect(),
            in_flight: AtomicUsize::new(0),
            lanes: lanes.as_mut_ptr(),
            f,
            panic: Mutex::new(None),
        });
        {
            let mut step = lock(&self.shared.step);
            step.0 += 1;
            step.1 = Some(job.clone());
        }
        self.shared.wake.notify_all();
        let mine = catch_unwind(AssertUnwindSafe(|| job.work()));
        // Withdraw the step (a worker waking late finds nothing), then wait for the lanes
        // the workers claimed. A worker counts itself in before claiming, so once every
        // index is claimed, `in_flight` covers every lane still running.
        lock(&self.shared.step).1 = None;
        let mut g = lock(&self.shared.left_lock);
        while job.in_flight.load(SeqCst) != 0 {
            g = self.shared.left.wait(g).unwrap_or_else(|p| p.into_inner());
        }
        drop(g);
        self.remember_costs(&job.spent);
        if let Err(p) = mine {
            resume_unwind(p);
        }
        let panicked = lock(&job.panic).take();
        if let Some(p) = panicked {
            resume_unwind(p);
        }
    }
}

impl LaneWorkers {
    /// The order in which a step over `len` lanes claims them: dearest first by the last
    /// step's costs (ties, and lanes never timed, in chef order).
    fn claim_order(&self, len: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..len).collect();
        let costs = lock(&self.last_cost);
        if costs.len() == len {
            // Stable: equal costs keep chef order.
            order.sort_by(|&a, &b| costs[b].cmp(&costs[a]));
        }
        order
    }

    /// Fold what each lane cost in the step just run into the costs the next order follows
    /// (a lane the step skipped cost 0).
    fn remember_costs(&self, spent: &[AtomicU64]) {
        let mut costs = lock(&self.last_cost);
        if costs.len() == spent.len() {
            // Half the old, half the new: one odd step (a poke, a quiet batch) does not
            // reorder the lanes on its own.
            for (cost, s) in costs.iter_mut().zip(spent) {
                *cost = *cost / 2 + s.load(Relaxed) / 2;
            }
        } else {
            costs.clear();
            costs.extend(spent.iter().map(|s| s.load(Relaxed)));
        }
    }
}

impl Drop for LaneWorkers {
    fn drop(&mut self) {
        self.shared.stop.store(true, SeqCst);
        {
            // Under the lock, so a worker between its check and its wait cannot miss it.
            let _step = lock(&self.shared.step);
            self.shared.wake.notify_all();
        }
        for h in self.handles.drain(..) {
            if h.join().is_err() {
                tracing::error!("a chef worker thread panicked");
            }
        }
    }
}

/// A worker: wait for a step, claim lanes until none is left, repeat.
fn worker(shared: &Shared) {
    let mut seen = 0u64;
    loop {
        let job = {
            let mut step = lock(&shared.step);
            while step.0 == seen && !shared.stop.load(SeqCst) {
                step = shared.wake.wait(step).unwrap_or_else(|p| p.into_inner());
            }
            if shared.stop.load(SeqCst) {
                return;
            }
            seen = step.0;
            match &step.1 {
                Some(job) => {
                    // Counted in while the step is still published (under its lock), so
                    // the dispatcher, which withdraws it under the same lock before
                    // waiting, sees this worker in flight.
                    job.in_flight.fetch_add(1, SeqCst);
                    job.clone()
                }
                None => continue,
            }
        };
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| job.work())) {
            // The other threads claim the lanes left; the dispatcher re-raises the panic.
            *lock(&job.panic) = Some(p);
        }
        job.in_flight.fetch_sub(1, SeqCst);
        let _g = lock(&shared.left_lock);
        shared.left.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_threads_leave_a_core_and_are_capped_by_the_chefs() {
        assert_eq!(default_threads(0), 1);
        assert_eq!(default_threads(1), 1);
        assert!(default_threads(64) >= 1);
        assert_eq!(default_threads_for(1, 8), 1);
        assert_eq!(default_threads_for(2, 8), 1);
        assert_eq!(default_threads_for(8, 8), 7);
        assert_eq!(default_threads_for(8, 3), 3);
        assert_eq!(default_threads_for(16, 0), 1);
        assert_eq!(default_replay_threads_for(1, 8), 1);
        assert_eq!(default_replay_threads_for(2, 8), 2);
        assert_eq!(default_replay_threads_for(8, 3), 3);
        assert_eq!(default_replay_threads_for(4, 0), 1);
    }
    #[test]
    fn lanes_are_claimed_dearest_first_by_their_recent_costs() {
        let workers = LaneWorkers::new(2).expect("a worker thread");
        let spent = |ns: &[u64]| ns.iter().map(|&n| AtomicU64::new(n)).collect::<Vec<_>>();
        // Never timed: chef order.
        assert_eq!(workers.claim_order(3), vec![0, 1, 2]);
        workers.remember_costs(&spent(&[10, 50, 30]));
        assert_eq!(workers.claim_order(3), vec![1, 2, 0]);
        // Equal costs keep chef order.
        workers.remember_costs(&spent(&[10, 50, 30]));
        workers.remember_costs(&spent(&[40, 40, 40]));
        assert_eq!(
            workers.claim_order(3),
            vec![1, 2, 0],
            "one step moves it halfway"
        );
        workers.remember_costs(&spent(&[100, 0, 0]));
        assert_eq!(workers.claim_order(3)[0], 0);
        // Another number of lanes (a chef came or went): chef order until timed again.
        assert_eq!(workers.claim_order(4), vec![0, 1, 2, 3]);
        workers.remember_costs(&spent(&[0, 0, 0, 7]));
        assert_eq!(workers.claim_order(4), vec![3, 0, 1, 2]);
        // Whatever the order, every position claims a distinct lane.
        let mut sorted = workers.claim_order(4);
        sorted.sort_unstable();
        assert_eq!(sorted, vec![0, 1, 2, 3]);
    }
}
