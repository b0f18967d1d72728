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
//! The pool is rayon's (already in the build through wasmtime's parallel compilation): one
//! step costs a wake-up of the workers and a join, measured with `nd-kitchen-bench`
//! against `--chef-threads 1` (see ARCHITECTURE.md). The dispatcher's own thread waits
//! during a step. A chef's call runs wholly on one worker: its deadline (the engine's
//! epoch ticker), its per-thread CPU clock (`chef_host::cpu_time`) and its failure policy
//! work on any thread.

use rayon::prelude::*;

use super::lane::ChefLane;

/// The default number of workers: one per core, at most one per chef, at least one.
pub fn default_threads(chefs: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    cores.min(chefs).max(1)
}

/// A pool of `threads` workers for the lanes (more than one; one means the dispatcher's
/// own thread runs every lane).
pub struct LaneWorkers {
    pool: rayon::ThreadPool,
    threads: usize,
}

impl LaneWorkers {
    /// Start `threads` workers named `chef-worker-N`.
    pub fn new(threads: usize) -> Result<Self, rayon::ThreadPoolBuildError> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("chef-worker-{i}"))
            .build()?;
        Ok(LaneWorkers { pool, threads })
    }

    /// The number of workers.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Run `f` on every lane (with its index), each lane on one worker, and return when all
    /// are done.
    pub fn run(&self, lanes: &mut [ChefLane], f: &(dyn Fn(usize, &mut ChefLane) + Sync)) {
        self.pool.install(|| {
            lanes
                .par_iter_mut()
                .enumerate()
                .with_max_len(1)
                .for_each(|(i, lane)| f(i, lane));
        });
    }
}
