//! What a chef call may spend: its deadline is charged in the CPU time of the thread
//! running it (plus the time it spends blocked in `wasi:io/poll`), under a wall-clock
//! ceiling of [`WALL_CEILING_FACTOR`] x the deadline.
//!
//! Why CPU time: a deadline by the wall clock charges a chef for time its thread waited for
//! a core. On a loaded host (4 busy shells on 2 cores) a chef using 10 ms of CPU per call
//! under a 50 ms deadline timed out again and again and was quarantined, and with
//! `--chef-threads 2` a chef next to a slow neighbour timed out now and then: the deadline
//! measured the machine, not the chef.
//!
//! How, at almost no cost per call: the engine's epoch ticker (`engine.rs`) still follows
//! the wall clock, and each call's epoch deadline is first set to its budget in wall time.
//! CPU time never runs ahead of wall time on one thread, so before that tick the chef
//! cannot have used its budget and nothing needs checking. When the tick is reached,
//! wasmtime runs the store's epoch-deadline callback ([`on_epoch_deadline`]) on the thread
//! running the call, which reads that thread's CPU clock (`CLOCK_THREAD_CPUTIME_ID`): under
//! the budget, the deadline moves on by what is left of it (again the earliest the budget
//! could run out); at or over it, the call traps as before
//! ([`Trap::Interrupt`](wasmtime::Trap), reported as a timeout). A spinning chef costs a
//! few callbacks; a call that ends before its deadline, none.
//!
//! The CPU clock is a system call (~0.6 µs on this VM, not served by the vDSO), about as
//! long as a short call itself: a replay of `big.pcap` (the bench corpus, 1 M packets)
//! makes 136 000 chef calls, ~80 ms of readings on a ~2 s replay. So the start of a call
//! reuses the thread's last reading when that was taken at most
//! [`SAMPLE_REUSE`] (or a sixteenth of the budget, if smaller) of wall time before the
//! call started ([`CallBudget::start`]): the call is then also charged the kitchen's own
//! work on that thread since the reading, at most that much CPU time, and never less
//! than its own CPU time. That replay then reads the clock 3 305 times (`strace -c`).
//!
//! Blocking WASI waits (`wasi:io/poll`, e.g. `std::thread::sleep`) use no CPU but are
//! charged as if they did (`poll.rs` waits at most for what is left of the budget), so a
//! sleeping chef is stopped at its deadline like a spinning one.
//!
//! The wall-clock ceiling ends a call whose thread makes no progress for any other reason
//! (descheduled, stopped, or blocked somewhere that is not a poll), so a chef still never
//! holds a kitchen thread for more than a bounded wall time. 4x: a thread getting a quarter
//! of a core still completes a call that uses its whole deadline; one getting less is
//! stopped at 4x the deadline in wall time whatever it used.

use std::cell::Cell;
use std::time::{Duration, Instant};

use wasmtime::UpdateDeadline;

use super::cpu_time::thread_cpu_ns;
use super::engine::EPOCH_TICK;

/// A call ends after this many times its deadline in wall time, however little CPU time it
/// used (see the module docs).
pub const WALL_CEILING_FACTOR: u32 = 4;

/// Longest wall time for which a thread's CPU clock reading stands in for the CPU time at
/// the start of a later call on that thread (see the module docs).
pub const SAMPLE_REUSE: Duration = Duration::from_millis(1);

thread_local! {
    /// This thread's last CPU clock reading (ns) and the wall time it stands for.
    static SAMPLE: Cell<Option<(Instant, u64)>> = const { Cell::new(None) };
}

/// The current thread's CPU time (ns) at `started`, or up to `reuse` of CPU time less: a
/// reading at most `reuse` of wall time old is reused instead of reading the clock again.
fn cpu_at(started: Instant, reuse: Duration) -> Option<u64> {
    SAMPLE.with(|sample| {
        if let Some((at, cpu)) = sample.get() {
            if started.saturating_duration_since(at) < reuse {
                return Some(cpu);
            }
        }
        // Read just after `started`: it stands for `started`, a few ns of CPU late.
        let cpu = thread_cpu_ns()?;
        sample.set(Some((started, cpu)));
        Some(cpu)
    })
}

/// The budget of the call in progress, kept in the chef's store for the epoch callback and
/// the blocking poll.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallBudget {
    /// The CPU time (and blocking waits) the call may use: the chef's deadline, times the
    /// first-call allowance and the calls a merged call replaces.
    budget: Duration,
    /// The calling thread's CPU time when the call started, in ns (or up to [`SAMPLE_REUSE`]
    /// less); `None` where there is no per-thread CPU clock (then the wall clock since
    /// `started` is charged).
    cpu_started: Option<u64>,
    /// When the call started.
    started: Instant,
    /// Time spent blocked in `wasi:io/poll`, charged like CPU time.
    waited: Duration,
    /// When the call ends whatever it used.
    ceiling: Instant,
    /// The call was found out of time by the ceiling while it had CPU budget left.
    ceiling_hit: bool,
}

impl CallBudget {
    /// Start a call with this budget on the current thread, at `started`.
    pub(crate) fn start(budget: Duration, started: Instant) -> CallBudget {
        CallBudget {
            budget,
            cpu_started: cpu_at(started, SAMPLE_REUSE.min(budget / 16)),
            started,
            waited: Duration::ZERO,
            ceiling: started + budget.saturating_mul(WALL_CEILING_FACTOR),
            ceiling_hit: false,
        }
    }

    /// Whether the wall-clock ceiling, not the budget, ended the call (for the message).
    pub(crate) fn ceiling_hit(&self) -> bool {
        self.ceiling_hit
    }

    /// What the call has been charged so far: its thread's CPU time since the start plus
    /// its blocking waits (the wall time since the start without a CPU clock).
    fn charged(&self, now: Instant) -> Duration {
        let cpu = match (self.cpu_started, thread_cpu_ns()) {
            (Some(a), Some(b)) => Duration::from_nanos(b.saturating_sub(a)),
            _ => now.saturating_duration_since(self.started),
        };
        cpu.saturating_add(self.waited)
    }

    /// How much longer the call may run from `now` (on the current thread, the one
    /// running the call), or `None` once it has used its budget or reached its ceiling
    /// (noting which, see [`CallBudget::ceiling_hit`]). The result is also the earliest
    /// wall time in which the budget could run out, as CPU time never runs ahead of wall
    /// time.
    pub(crate) fn remaining(&mut self, now: Instant) -> Option<Duration> {
        let wall_left = self.ceiling.saturating_duration_since(now);
        let cpu_left = self.budget.saturating_sub(self.charged(now));
        let left = wall_left.min(cpu_left);
        if left.is_zero() {
            self.ceiling_hit = !cpu_left.is_zero();
            return None;
        }
        Some(left)
    }

    /// Charge a blocking wait of `waited` (see [`poll`](super::poll)).
    pub(crate) fn add_wait(&mut self, waited: Duration) {
        self.waited = self.waited.saturating_add(waited);
    }
}

/// Ticks to the next check for `left` of budget: at least one, as the callback runs just
/// after a tick.
fn ticks_for(left: Duration) -> u64 {
    let tick = EPOCH_TICK.as_nanos().max(1);
    u64::try_from(left.as_nanos().div_ceil(tick))
        .unwrap_or(u64::MAX / 2)
        .max(1)
}

/// The store's epoch-deadline callback: continue while the call in progress has budget
/// left, trap otherwise (also when no call is in progress, which guest code never runs
/// outside of).
pub(crate) fn on_epoch_deadline(call: Option<&mut CallBudget>) -> UpdateDeadline {
    match call.and_then(|c| c.remaining(Instant::now())) {
        Some(left) => UpdateDeadline::Continue(ticks_for(left)),
        None => UpdateDeadline::Interrupt,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_without_cpu_is_not_charged_but_the_ceiling_holds() {
        let started = Instant::now();
        let mut call = CallBudget::start(Duration::from_millis(50), started);
        // 60 ms of wall time later with (almost) no CPU used: budget left, and what is left
        // is bounded by the ceiling.
        let later = started + Duration::from_millis(60);
        let left = call.remaining(later).expect("budget left");
        assert!(left > Duration::from_millis(40), "{left:?}");
        // Past the ceiling (4 x 50 ms), nothing is left whatever the CPU time.
        assert_eq!(call.remaining(started + Duration::from_millis(200)), None);
        assert!(call.ceiling_hit());
    }

    #[test]
    fn blocking_waits_are_charged() {
        let started = Instant::now();
        let mut call = CallBudget::start(Duration::from_millis(50), started);
        call.add_wait(Duration::from_millis(30));
        let left = call.remaining(started).expect("budget left");
        assert!(left <= Duration::from_millis(20), "{left:?}");
        call.add_wait(Duration::from_millis(20));
        assert_eq!(call.remaining(started), None);
        assert!(!call.ceiling_hit(), "the budget ended it, not the ceiling");
    }

    #[test]
    fn a_recent_reading_is_reused_and_an_old_one_is_not() {
        let t0 = Instant::now();
        let first = cpu_at(t0, SAMPLE_REUSE).expect("thread CPU clock");
        assert_eq!(cpu_at(t0 + SAMPLE_REUSE / 2, SAMPLE_REUSE), Some(first));
        // Burn a little CPU, then start a call past the reuse window: a fresh reading.
        let spin = Instant::now();
        while spin.elapsed() < Duration::from_millis(3) {
            std::hint::black_box(0u64);
        }
        let later = cpu_at(t0 + SAMPLE_REUSE * 2, SAMPLE_REUSE).expect("clock");
        assert!(later > first, "{first} -> {later}");
    }

    #[test]
    fn ticks_are_whole_and_at_least_one() {
        assert_eq!(ticks_for(Duration::ZERO), 1);
        assert_eq!(ticks_for(Duration::from_micros(1)), 1);
        assert_eq!(ticks_for(EPOCH_TICK), 1);
        assert_eq!(ticks_for(EPOCH_TICK * 3 + Duration::from_nanos(1)), 4);
        assert!(matches!(on_epoch_deadline(None), UpdateDeadline::Interrupt));
    }
}
