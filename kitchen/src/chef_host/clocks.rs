//! The clocks (and randomness) a chef sees, out of `instance.rs`: the host's live, and in a
//! replay the kitchen's clock (capture time) as the WASI wall clock, a monotonic clock that
//! starts each call at it, and seeded randomness, so a replay is reproducible.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The clocks and randomness a chef sees.
#[derive(Clone)]
pub(crate) enum Environment {
    /// Live capture: the host's clocks and randomness.
    Live,
    /// Replay: the wall clock reads the kitchen's clock (the capture time of the packets
    /// being handled, set before every call) and randomness is a fixed per-chef sequence,
    /// so a chef that reads the time or iterates a `HashMap` (randomly seeded in Rust's std)
    /// still produces the same output on every replay. The monotonic clock starts each
    /// call at the kitchen's clock and then advances with real time, so durations measured
    /// inside a call are real (a frozen monotonic clock would make any chef that waits
    /// for time to pass, e.g. a bounded busy-wait, spin until its deadline).
    Replay {
        /// Kitchen clock, ns since the Unix epoch.
        clock: Arc<AtomicU64>,
        /// When the call in progress started, ns since [`process_epoch`].
        call_start: Arc<AtomicU64>,
        /// Seed bytes for the chef's random streams.
        seed: [u8; 32],
    },
}

/// The kitchen clock as a WASI wall and monotonic clock.
pub(crate) struct KitchenClock(pub(crate) Arc<AtomicU64>);

impl wasmtime_wasi::HostWallClock for KitchenClock {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(1)
    }
    fn now(&self) -> Duration {
        Duration::from_nanos(self.0.load(Ordering::Relaxed))
    }
}

/// A fixed instant of this process, the origin of [`Environment::Replay`]'s `call_start`.
pub(crate) fn process_epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Nanoseconds since [`process_epoch`].
pub(crate) fn since_process_epoch() -> u64 {
    process_epoch().elapsed().as_nanos() as u64
}

/// The replay monotonic clock: the kitchen's clock at the start of the call plus the real
/// time since (see [`Environment::Replay`]).
pub(crate) struct ReplayMonotonic {
    pub(crate) clock: Arc<AtomicU64>,
    pub(crate) call_start: Arc<AtomicU64>,
}

impl wasmtime_wasi::HostMonotonicClock for ReplayMonotonic {
    fn resolution(&self) -> u64 {
        1
    }
    fn now(&self) -> u64 {
        let started = self.call_start.load(Ordering::Relaxed);
        let elapsed = since_process_epoch().saturating_sub(started);
        self.clock.load(Ordering::Relaxed).saturating_add(elapsed)
    }
}
