//! Live load shedding: a chef that takes more than its share of the kitchen's time while
//! the kitchen is behind sheds its own batches, so the other chefs keep up.
//!
//! Chefs share the dispatcher's thread, so a legal but slow chef (say 45 ms per batch,
//! under a 200 ms deadline) would otherwise set the pace for every chef. Each chef has a
//! [`DutyBucket`]: the time it spends in calls is charged to it, and the bucket drains at
//! `share` x wall time, where the share is an equal part of the thread for every chef
//! still called (not quarantined). Restarts (re-instantiation, `describe`) happen inside
//! the call and are charged too. When the live capture queue holds more than [`BEHIND_PACKETS`] (the kitchen is
//! falling behind) and a chef's bucket is over [`DUTY_BURST`], its next batches are shed:
//! not handed to it, counted per chef (`packets_shed`, also in `packets_dropped`; pokes
//! skipped the same way are `pokes_shed`). Once
//! the bucket drains below the burst it gets batches again, so over time a slow chef gets
//! its share of the thread and the others get theirs.
//!
//! Replays never shed: their output must be the same on every run, so they wait for the
//! slowest chef instead.

use std::time::{Duration, Instant};

/// Live capture queue length above which the kitchen counts as behind.
pub const BEHIND_PACKETS: u64 = 2 * crate::parse::batch::MAX_BATCH_PACKETS as u64;
/// Time in calls a chef may run ahead of its share before it sheds (when behind).
pub const DUTY_BURST: Duration = Duration::from_millis(100);

/// A leaky bucket of call time (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct DutyBucket {
    level_ns: u64,
    drained_at: Option<Instant>,
}

impl DutyBucket {
    /// Drain for the wall time since the last drain at `share` (0..=1) of it.
    fn drain(&mut self, now: Instant, share: f64) {
        if let Some(then) = self.drained_at {
            let elapsed = now.saturating_duration_since(then).as_nanos() as f64;
            let d = (elapsed * share.clamp(0.0, 1.0)) as u64;
            self.level_ns = self.level_ns.saturating_sub(d);
        }
        self.drained_at = Some(now);
    }

    /// Charge `busy` of call time at `now`.
    pub fn charge(&mut self, busy: Duration, now: Instant, share: f64) {
        self.drain(now, share);
        self.level_ns = self
            .level_ns
            .saturating_add(busy.as_nanos().min(u128::from(u64::MAX)) as u64);
    }

    /// Is the chef over its share (by more than [`DUTY_BURST`]) at `now`?
    pub fn over(&mut self, now: Instant, share: f64) -> bool {
        self.drain(now, share);
        self.level_ns > DUTY_BURST.as_nanos() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chef_over_its_share_sheds_until_it_drains() {
        let t0 = Instant::now();
        let mut b = DutyBucket::default();
        // 45 ms per 50 ms batch against a share of 1/4: over the burst after a few batches.
        let mut shed = 0;
        let mut run = 0;
        for i in 0..200u32 {
            let now = t0 + Duration::from_millis(50) * i;
            if b.over(now, 0.25) {
                shed += 1;
            } else {
                run += 1;
                b.charge(Duration::from_millis(45), now, 0.25);
            }
        }
        // Long run: about a quarter of the time, i.e. ~28 % of the batches.
        assert!((40..=80).contains(&run), "ran {run}, shed {shed}");
        // A chef under its share never sheds.
        let mut b = DutyBucket::default();
        for i in 0..200u32 {
            let now = t0 + Duration::from_millis(50) * i;
            assert!(!b.over(now, 0.25));
            b.charge(Duration::from_millis(5), now, 0.25);
        }
    }
}
