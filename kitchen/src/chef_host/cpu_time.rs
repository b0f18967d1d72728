//! Thread CPU time of chef calls: the clock of their deadlines (`call_budget.rs`), and a
//! per-call total for benchmarks on a shared machine.
//!
//! Why: the kitchen times each chef call by the wall clock (`ChefStats::busy_ns`). On a
//! loaded machine (load 10 on 2 cores) a call's wall time includes waiting for a core, which
//! varies 3-5x between runs and buries a 20 % change. With `ND_BENCH_CHEF_CPU=1` in the
//! environment the kitchen also adds up the chef thread's CPU time per call
//! (`ChefStats::busy_cpu_ns`, `CLOCK_THREAD_CPUTIME_ID`, exact to the nanosecond) and the
//! exit summary prints it; `tools/bench-languages.sh` sets it. Off by default: reading the
//! clock is a system call (not served by the vDSO), twice per call (the deadlines read it
//! far less often, see `call_budget.rs`).

use std::sync::OnceLock;

/// The environment variable that turns the per-call CPU clock on (`1`).
pub const ENV: &str = "ND_BENCH_CHEF_CPU";

/// True when `ND_BENCH_CHEF_CPU=1` was set at the first call (read once).
pub fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os(ENV).is_some_and(|v| v == "1"))
}

/// This thread's CPU time in ns, or `None` where the clock is not available.
pub fn thread_cpu_ns() -> Option<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `clock_gettime` writes one `timespec` we own and reads nothing else.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return None;
    }
    let secs = u64::try_from(ts.tv_sec).ok()?;
    let nanos = u64::try_from(ts.tv_nsec).ok()?;
    Some(secs.saturating_mul(1_000_000_000).saturating_add(nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_cpu_time_advances_with_work() {
        let before = thread_cpu_ns().expect("CLOCK_THREAD_CPUTIME_ID on Linux");
        // Spin until at least 2 ms of this thread's CPU time went by (bounded by wall time).
        let start = std::time::Instant::now();
        let mut x = 0u64;
        let mut now = before;
        while now < before + 2_000_000 && start.elapsed() < std::time::Duration::from_secs(20) {
            for i in 0..10_000u64 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
            }
            now = thread_cpu_ns().expect("clock");
        }
        assert!(
            now >= before + 2_000_000,
            "thread CPU time did not advance: {before} -> {now}"
        );
        // CPU time never runs ahead of wall time on one thread.
        assert!(now - before <= start.elapsed().as_nanos() as u64 + 1_000_000);
    }
}
