//! What one chef may use: memory, time per call, output size, failures before quarantine.
//!
//! All limits are per chef (one `Store` each), so one greedy chef cannot starve another.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};

/// Default total linear memory of all chefs of a kitchen together (`--chefs-memory-mib`).
/// The default chef set uses a few MiB per chef; 1 GiB leaves room for eight chefs at the
/// full per-chef cap, and stops a folder of 30 greedy chefs at 1 GiB instead of 3.6 GB.
pub const DEFAULT_CHEFS_MEMORY_MIB: u64 = 1024;
/// Default cap on the payload bytes one call may return (all its dumplings together).
pub const DEFAULT_MAX_OUTPUT_BYTES_PER_CALL: u64 = 4 << 20;
/// Default cap on the payload bytes one chef may emit per second (kitchen clock); a
/// one-second burst of [`DEFAULT_MAX_OUTPUT_BYTES_PER_CALL`] × 4 is allowed.
pub const DEFAULT_MAX_OUTPUT_BYTES_PER_SEC: u64 = 16 << 20;

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

/// Bytes charged per table element: a `funcref` slot is one pointer in wasmtime's table
/// storage. Tables live in host memory beside the linear memories, so a chef that grows
/// 64 tables to 2^20 elements holds 512 MiB the linear-memory caps alone would not see.
pub const TABLE_ELEMENT_BYTES: u64 = 8;

/// Limits applied to every chef.
#[derive(Debug, Clone, PartialEq)]
pub struct ChefLimits {
    /// Memory cap per chef, in bytes: all linear memories of the instance together plus its
    /// tables at [`TABLE_ELEMENT_BYTES`] per element.
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
    /// Largest chef file read, in bytes (checked on the opened file before reading).
    pub max_file_bytes: u64,
    /// The memory budget shared by every chef of the kitchen (all stores together).
    pub kitchen_memory: MemoryBudget,
    /// Payload bytes one call may return (all its dumplings together); the rest of the
    /// call's dumplings are dropped and counted.
    pub max_output_bytes_per_call: u64,
    /// Payload bytes one chef may emit per second of the kitchen's clock (token bucket,
    /// burst = one second's worth); over it, dumplings are dropped and counted.
    pub max_output_bytes_per_sec: u64,
    /// Largest state snapshot carried across a hot reload, in bytes (see `state`).
    pub max_state_bytes: usize,
}

/// The total memory (linear memories and tables, as [`ChefLimits::memory_bytes`] counts
/// them) all chefs of a kitchen may hold together. Clones share the
/// counter; every chef store reserves from it when its memory grows and returns what it
/// held when it is dropped (a restart, a reload, a removal).
#[derive(Debug, Clone)]
pub struct MemoryBudget {
    total: u64,
    used: Arc<AtomicU64>,
}

impl PartialEq for MemoryBudget {
    fn eq(&self, other: &Self) -> bool {
        self.total == other.total
    }
}

impl MemoryBudget {
    /// A budget of `total` bytes.
    pub fn new(total: u64) -> Self {
        MemoryBudget {
            total,
            used: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The budget in bytes.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Bytes held by all chefs now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Reserve `bytes`; false (nothing reserved) if that would exceed the budget.
    fn reserve(&self, bytes: u64) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                u.checked_add(bytes).filter(|n| *n <= self.total)
            })
            .is_ok()
    }

    fn release(&self, bytes: u64) {
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                Some(u.saturating_sub(bytes))
            });
    }
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
            max_state_bytes: super::state::DEFAULT_MAX_STATE_BYTES,
            max_file_bytes: crate::chef_host::chef_file::DEFAULT_MAX_CHEF_FILE_MIB << 20,
            kitchen_memory: MemoryBudget::new(DEFAULT_CHEFS_MEMORY_MIB << 20),
            max_output_bytes_per_call: DEFAULT_MAX_OUTPUT_BYTES_PER_CALL,
            max_output_bytes_per_sec: DEFAULT_MAX_OUTPUT_BYTES_PER_SEC,
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

/// `StoreLimits` plus the chef's own accounting: every byte of linear memory and table a
/// store grows is charged against the chef's cap (all its memories and tables together:
/// a component instantiates several core modules, each may have its own memory, and
/// wasmtime's per-memory `memory_size` alone would let each of them reach the cap) and
/// against the kitchen-wide [`MemoryBudget`]. A flag records that a growth was refused, so
/// a trap that follows (Rust and C guests abort when `memory.grow` fails) is reported as a
/// memory-limit failure rather than an anonymous trap.
pub struct ChefLimiter {
    inner: StoreLimits,
    /// Set when a memory or table growth was refused; cleared before each call.
    pub hit_limit: bool,
    /// Set when the refusal was the kitchen-wide budget's, not this chef's own cap.
    pub hit_kitchen_budget: bool,
    budget: MemoryBudget,
    /// The chef's own cap on [`ChefLimiter::charged`], in bytes.
    cap: u64,
    /// Bytes this store holds from `budget` (returned on drop).
    charged: u64,
}

impl Drop for ChefLimiter {
    fn drop(&mut self) {
        self.budget.release(self.charged);
    }
}

impl ChefLimiter {
    /// Linear memory and tables this store holds now, in bytes.
    pub fn charged(&self) -> u64 {
        self.charged
    }

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
            hit_kitchen_budget: false,
            budget: limits.kitchen_memory.clone(),
            cap: limits.memory_bytes as u64,
            charged: 0,
        }
    }

    /// Charge `more` bytes to the chef's cap and the kitchen's budget; false (nothing
    /// charged, the refusal recorded) if either would be exceeded.
    fn charge(&mut self, more: u64) -> bool {
        if self.charged.saturating_add(more) > self.cap {
            self.hit_limit = true;
            return false;
        }
        if !self.budget.reserve(more) {
            self.hit_limit = true;
            self.hit_kitchen_budget = true;
            return false;
        }
        self.charged += more;
        true
    }
}

impl ResourceLimiter for ChefLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if !self.inner.memory_growing(current, desired, maximum)? {
            self.hit_limit = true;
            return Ok(false);
        }
        Ok(self.charge(desired.saturating_sub(current) as u64))
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if !self.inner.table_growing(current, desired, maximum)? {
            self.hit_limit = true;
            return Ok(false);
        }
        let more = (desired.saturating_sub(current) as u64).saturating_mul(TABLE_ELEMENT_BYTES);
        Ok(self.charge(more))
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

    #[test]
    fn the_kitchen_budget_is_shared_and_returned() {
        let limits = ChefLimits {
            kitchen_memory: MemoryBudget::new(100 << 20),
            ..ChefLimits::default()
        };
        let mut a = ChefLimiter::new(&limits);
        let mut b = ChefLimiter::new(&limits);
        assert!(a.memory_growing(0, 60 << 20, None).unwrap());
        assert!(!b.memory_growing(0, 60 << 20, None).unwrap());
        assert!(b.hit_kitchen_budget);
        assert!(b.memory_growing(0, 40 << 20, None).unwrap());
        assert_eq!(limits.kitchen_memory.used(), 100 << 20);
        drop(a);
        assert_eq!(limits.kitchen_memory.used(), 40 << 20);
        drop(b);
        assert_eq!(limits.kitchen_memory.used(), 0);
    }

    #[test]
    fn the_chef_cap_covers_all_memories_and_tables_together() {
        let limits = ChefLimits {
            memory_bytes: 128 << 20,
            ..ChefLimits::default()
        };
        let mut l = ChefLimiter::new(&limits);
        // Two core modules' memories: each under the cap, together over it.
        assert!(l.memory_growing(0, 100 << 20, None).unwrap());
        assert!(!l.memory_growing(0, 100 << 20, None).unwrap());
        assert!(l.hit_limit && !l.hit_kitchen_budget);
        assert_eq!(l.charged(), 100 << 20);
        // Tables count at TABLE_ELEMENT_BYTES per element, against the same cap.
        assert!(l.table_growing(0, 1 << 20, None).unwrap());
        assert_eq!(l.charged(), (100 << 20) + (1 << 20) * TABLE_ELEMENT_BYTES);
        // 108 MiB held: 21 MiB more would pass the cap, 20 MiB reaches it exactly.
        assert!(!l.memory_growing(100 << 20, 121 << 20, None).unwrap());
        assert!(l.memory_growing(100 << 20, 120 << 20, None).unwrap());
        assert_eq!(l.charged(), 128 << 20);
        assert_eq!(limits.kitchen_memory.used(), l.charged());
        drop(l);
        assert_eq!(limits.kitchen_memory.used(), 0);
    }

    #[test]
    fn tables_are_charged_to_the_kitchen_budget() {
        let limits = ChefLimits {
            kitchen_memory: MemoryBudget::new(12 << 20),
            ..ChefLimits::default()
        };
        // 64 tables of 2^20 elements would be 512 MiB outside any linear-memory cap.
        let mut a = ChefLimiter::new(&limits);
        assert!(a.table_growing(0, 1 << 20, None).unwrap());
        let mut b = ChefLimiter::new(&limits);
        assert!(!b.table_growing(0, 1 << 20, None).unwrap());
        assert!(b.hit_kitchen_budget);
        assert_eq!(limits.kitchen_memory.used(), 8 << 20);
    }
}
