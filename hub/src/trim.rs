//! Give memory back to the OS after a burst of connections has ended.
//!
//! glibc keeps freed heap pages for reuse, so after 1000 eaters come and go the hub's RSS
//! stays at its peak (measured: ~4.7 MB idle, ~15 MB after the burst, flat afterwards:
//! no leak, but not back to the baseline). [`trim_loop`] watches the count of ended
//! connections; once it has stopped moving for one check period (the burst is over), it
//! calls `malloc_trim(0)` once, which returns the free pages of every arena. Steady
//! traffic with no connection ending never trims, so the hot path is untouched.
//!
//!
//! The other half, [`keep_heap_growth_off_the_hot_path`]: by default glibc gives the top of
//! the heap back as soon as 128 KiB of it are free and grows it again page by page, so a
//! kitchen sending 40 KB tables made the hub fault in, zero and return the same pages for
//! every message (91 000 minor faults and ~12 % of the hub's CPU for one replay of the mixed
//! corpus; 4 300 with the settings below). The hub asks glibc to grow the heap 16 MiB at a
//! time and to keep up to 64 MiB free at its top while it is busy; pages grown but never
//! touched cost no memory, and the trim after a burst still returns everything.
//!
//! On targets without glibc both do nothing.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tracing::debug;

use crate::state::Shared;

/// How often the ended-connection count is looked at.
pub const CHECK_PERIOD: Duration = Duration::from_secs(1);

/// Under constant churn (the count never stops moving), trim anyway after this many
/// connections have ended since the last trim.
const CHURN_LIMIT: u64 = 4096;

/// Decides when to trim from successive readings of the ended-connection count.
#[derive(Debug, Default)]
pub struct TrimPolicy {
    last_seen: u64,
    trimmed_at: u64,
}

impl TrimPolicy {
    /// Feed one reading; `true` means "trim now".
    pub fn observe(&mut self, ended: u64) -> bool {
        let moving = ended != self.last_seen;
        self.last_seen = ended;
        let pending = ended.saturating_sub(self.trimmed_at);
        if pending > 0 && (!moving || pending >= CHURN_LIMIT) {
            self.trimmed_at = ended;
            return true;
        }
        false
    }
}

/// Heap grown by at least this much at a time (`M_TOP_PAD`).
pub const HEAP_GROWTH_PAD: usize = 16 << 20;
/// Free bytes kept at the heap's top before glibc trims on its own (`M_TRIM_THRESHOLD`).
pub const HEAP_TRIM_THRESHOLD: usize = 64 << 20;

/// Set glibc's heap growth and trim thresholds (module docs); once, at start. Returns
/// whether glibc accepted both (always `false` without glibc).
pub fn keep_heap_growth_off_the_hot_path() -> bool {
    heap_trim::set_heap_thresholds(HEAP_GROWTH_PAD, HEAP_TRIM_THRESHOLD)
}

/// Trim the heap once after each burst of ended connections; runs until aborted.
pub async fn trim_loop(shared: Arc<Shared>) {
    let mut policy = TrimPolicy::default();
    let mut tick = tokio::time::interval(CHECK_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if policy.observe(shared.connections_ended.load(Ordering::Relaxed)) {
            let started = std::time::Instant::now();
            let released = heap_trim::release_free_memory();
            debug!(released, took = ?started.elapsed(), "malloc_trim after connections ended");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_once_after_a_burst_has_settled() {
        let mut p = TrimPolicy::default();
        assert!(!p.observe(0), "nothing ended yet");
        assert!(!p.observe(10), "burst still going");
        assert!(!p.observe(500), "burst still going");
        assert!(p.observe(500), "settled: trim");
        assert!(!p.observe(500), "already trimmed");
        assert!(!p.observe(501));
        assert!(p.observe(501));
    }

    #[test]
    fn constant_churn_still_trims_now_and_then() {
        let mut p = TrimPolicy::default();
        let mut trims = 0;
        for i in 1..=10u64 {
            if p.observe(i * 1000) {
                trims += 1;
            }
        }
        assert!(
            (2..=3).contains(&trims),
            "{trims} trims in 10k moving connections"
        );
    }

    #[test]
    fn glibc_takes_the_heap_thresholds() {
        assert_eq!(
            keep_heap_growth_off_the_hot_path(),
            cfg!(all(target_os = "linux", target_env = "gnu"))
        );
    }
}
