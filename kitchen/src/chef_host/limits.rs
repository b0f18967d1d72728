//! What one chef may use: memory, time per call, output size, failures before quarantine.
//!
//! All limits are per chef (one `Store` each), so one greedy chef cannot starve another.

use std::time::Duration;
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};

/// Default linear-memory cap per chef.
pub const DEFAULT_MEMORY_MIB: u64 = 128;
/// Default deadline per call. A 256-packet batch takes ~20 µs to ~1 ms in a Rust chef
/// (Python/JS chefs: ~1-5 ms); 50 ms leaves an order of magnitude of headroom for a chef
/// thread preempted on a loaded 2-core CI box, and still stops a runaway chef within about
/// a twentieth of a second.
pub const DEFAULT_DEADLINE_MS: u64 = 50;
/// Deadline for instantiation and `describe`: first calls fault in memory and run guest
/// runtime initialisation, which takes milliseconds for large (Python/JS) chefs.
pub const DEFAULT_INIT_DEADLINE_MS: u64 = 2_000;
/// Default cap on dumplings returned by one call (a 256-packet batch rarely makes more than
/// one dumpling per packet).
pub const DEFAULT_MAX_DUMPLINGS_PER_CALL: usize = 1024;
/// Default cap on one dumpling payload: what fits in the hub's 1 MiB message with room to
/// spare for the envelope.
pub const DEFAULT_MAX_DUMPLING_BYTES: usize = dumpling::MAX_MESSAGE_BYTES - 4096;
/// Failures after which a chef is quarantined for the rest of the run: that many in a row
/// of one driver (`on-packets` or `on-interval`), or that many of any kind within
/// [`DEFAULT_QUARANTINE_WINDOW`] of the kitchen's clock.
pub const DEFAULT_QUARANTINE_AFTER: u32 = 5;
/// The window of the failure-rate rule (kitchen clock: capture time when replaying). A
/// chef whose `on-interval` always times out while its `on-packets` succeeds never fails
/// twice in a row overall, but it does fail 5 times a minute with pokes every <= 12 s; with
/// rarer pokes the per-driver consecutive count catches it.
pub const DEFAULT_QUARANTINE_WINDOW: Duration = Duration::from_secs(60);
/// The first call into a fresh instance (after load, reload, or a restart that did not
/// follow a timeout) may take this many times the call deadline: it faults in the
/// instance's memory and may run lazy runtime initialisation, which on a loaded box can
/// take longer than a steady-state call. A restart after a *timeout* gets no allowance, so
/// a chef that is always slow cannot finish a call by crash-looping (and the allowance
/// costs at most one long call per load).
pub const DEFAULT_FIRST_CALL_GRACE: u32 = 10;

/// Limits applied to every chef.
#[derive(Debug, Clone, PartialEq)]
pub struct ChefLimits {
    /// Linear memory cap (all memories of the instance together), in bytes.
    pub memory_bytes: usize,
    /// Epoch deadline per `on-packets` / `on-interval` call.
    pub deadline: Duration,
    /// Deadline for instantiation and `describe`.
    pub init_deadline: Duration,
    /// Dumplings kept from one call; the rest are dropped and counted.
    pub max_dumplings_per_call: usize,
    /// Largest payload kept, in bytes.
    pub max_dumpling_bytes: usize,
    /// Failures (in a row of one driver, or within `quarantine_window`) before the chef is
    /// quarantined.
    pub quarantine_after: u32,
    /// Window of the failure-rate quarantine rule, on the kitchen's clock.
    pub quarantine_window: Duration,
    /// Multiplier of `deadline` for the first call into a fresh instance (see
    /// [`DEFAULT_FIRST_CALL_GRACE`]); 1 disables the allowance.
    pub first_call_grace: u32,
    /// First restart delay after a failure, on the kitchen's clock; doubles per failure.
    pub restart_backoff: Duration,
    /// Longest restart delay.
    pub max_restart_backoff: Duration,
}

impl Default for ChefLimits {
    fn default() -> Self {
        ChefLimits {
            memory_bytes: (DEFAULT_MEMORY_MIB as usize) << 20,
            deadline: Duration::from_millis(DEFAULT_DEADLINE_MS),
            init_deadline: Duration::from_millis(DEFAULT_INIT_DEADLINE_MS),
            max_dumplings_per_call: DEFAULT_MAX_DUMPLINGS_PER_CALL,
            max_dumpling_bytes: DEFAULT_MAX_DUMPLING_BYTES,
            quarantine_after: DEFAULT_QUARANTINE_AFTER,
            quarantine_window: DEFAULT_QUARANTINE_WINDOW,
            first_call_grace: DEFAULT_FIRST_CALL_GRACE,
            restart_backoff: Duration::from_millis(100),
            max_restart_backoff: Duration::from_secs(30),
        }
    }
}

impl ChefLimits {
    /// The memory cap in MiB, for messages.
    pub fn memory_mib(&self) -> u64 {
        (self.memory_bytes >> 20) as u64
    }

    /// Restart delay after `failures` consecutive failures (1-based).
    pub fn backoff(&self, failures: u32) -> Duration {
        let shift = failures.saturating_sub(1).min(20);
        self.restart_backoff
            .saturating_mul(1u32 << shift)
            .min(self.max_restart_backoff)
    }
}

/// `StoreLimits` plus a flag recording that a growth was refused, so a trap that follows
/// (Rust and C guests abort when `memory.grow` fails) is reported as a memory-limit
/// failure rather than an anonymous trap.
pub struct ChefLimiter {
    inner: StoreLimits,
    /// Set when a memory or table growth was refused; cleared before each call.
    pub hit_limit: bool,
}

impl ChefLimiter {
    /// Limits for one chef store.
    pub fn new(limits: &ChefLimits) -> Self {
        let inner = StoreLimitsBuilder::new()
            .memory_size(limits.memory_bytes)
            // A component instantiates a handful of core instances (the guest, its
            // adapters, shims); caps stop a malicious component from creating thousands.
            .instances(64)
            .memories(8)
            .tables(64)
            .table_elements(1 << 20)
            .build();
        ChefLimiter {
            inner,
            hit_limit: false,
        }
    }
}

impl ResourceLimiter for ChefLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let ok = self.inner.memory_growing(current, desired, maximum)?;
        if !ok {
            self.hit_limit = true;
        }
        Ok(ok)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let ok = self.inner.table_growing(current, desired, maximum)?;
        if !ok {
            self.hit_limit = true;
        }
        Ok(ok)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let l = ChefLimits::default();
        assert_eq!(l.backoff(1), Duration::from_millis(100));
        assert_eq!(l.backoff(2), Duration::from_millis(200));
        assert_eq!(l.backoff(4), Duration::from_millis(800));
        assert_eq!(l.backoff(40), Duration::from_secs(30));
    }
}
