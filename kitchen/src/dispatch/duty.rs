//! Live load shedding: a chef that takes more than its share of the kitchen's time while
//! the kitchen is behind sheds its own batches, so the other chefs keep up.
//!
//! Chefs share the dispatcher's thread, so a legal but slow chef (say 45 ms per batch,
//! under a 200 ms deadline) would otherwise set the pace for every chef. Each chef has a
//! [`DutyBucket`]: the time it spends in calls (packets, pokes, flow events, stream bytes)
//! is charged to it, and the bucket drains at `share` x wall time. Restarts
//! (re-instantiation, `describe`) happen inside the call and are charged too. When the
//! live capture queue holds more than [`BEHIND_PACKETS`] (the kitchen is falling behind)
//! and a chef's bucket is over [`DUTY_BURST`], its next calls are shed: not made, what
//! they would have carried counted per chef (`packets_shed`, also in `packets_dropped`;
//! pokes skipped the same way are `pokes_shed`, flow events and stream bytes
//! `flow_events_dropped` and `stream_bytes_dropped`). Once the bucket drains below the
//! burst it gets calls again, so over time a slow chef gets its share of the thread and the
//! others get theirs.
//!
//! The share is max-min fair ([`fair_share`]), not an equal part per chef: chefs that use
//! less than an equal part (most of them: a chef offered no packets uses nothing) leave
//! the rest to the others, so a chef is shed only when it takes more than what the busy
//! chefs can have with the light ones served in full. Each chef's use is a decaying
//! average of its call time ([`DutyBucket::usage`], time constant [`USAGE_HALF_LIFE`]);
//! the time shared out is [`SHARED_FRACTION`] of the chef threads (the rest is the
//! kitchen's own: capture, parsing, sending), and never less than an equal part per chef.
//! An equal part counted every chef not quarantined, so with ten chefs loaded and one
//! busy, that one was shed at a tenth of a thread while the kitchen sat mostly idle.
//!
//! Replays never shed: their output must be the same on every run, so they wait for the
//! slowest chef instead.

use std::time::{Duration, Instant};

/// Live capture queue length above which the kitchen counts as behind.
pub const BEHIND_PACKETS: u64 = 2 * crate::parse::batch::MAX_BATCH_PACKETS as u64;
/// Time in calls a chef may run ahead of its share before it sheds (when behind).
pub const DUTY_BURST: Duration = Duration::from_millis(100);

/// The fraction of the chef threads' time shared out among the chefs ([`fair_share`]).
pub const SHARED_FRACTION: f64 = 0.8;
/// Half-life of a chef's measured use of the kitchen's time ([`DutyBucket::usage`]).
pub const USAGE_HALF_LIFE: Duration = Duration::from_millis(500);

/// A leaky bucket of call time, and the chef's recent use of the kitchen's time (see the
/// module docs).
#[derive(Debug, Clone, Default)]
pub struct DutyBucket {
    level_ns: u64,
    drained_at: Option<Instant>,
    /// Call time, decaying with [`USAGE_HALF_LIFE`], as of `used_at`.
    used_ns: f64,
    used_at: Option<Instant>,
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
        let busy_ns = busy.as_nanos().min(u128::from(u64::MAX)) as u64;
        self.level_ns = self.level_ns.saturating_add(busy_ns);
        self.used_ns = self.decayed_use(now) + busy_ns as f64;
        self.used_at = Some(now);
    }

    fn decayed_use(&self, now: Instant) -> f64 {
        match self.used_at {
            Some(then) => {
                let age = now.saturating_duration_since(then).as_secs_f64();
                self.used_ns * 0.5f64.powf(age / USAGE_HALF_LIFE.as_secs_f64())
            }
            None => 0.0,
        }
    }

    /// The chef's recent use of the kitchen's time at `now`, as a fraction of one thread:
    /// its decaying call time over the decay's mean life (a chef busy a fraction `u` of the
    /// time for a few half-lives reads `u`).
    pub fn usage(&self, now: Instant) -> f64 {
        let mean_life_ns = USAGE_HALF_LIFE.as_nanos() as f64 / std::f64::consts::LN_2;
        self.decayed_use(now) / mean_life_ns
    }

    /// Is the chef over its share (by more than [`DUTY_BURST`]) at `now`?
    pub fn over(&mut self, now: Instant, share: f64) -> bool {
        self.drain(now, share);
        self.level_ns > DUTY_BURST.as_nanos() as u64
    }
}

/// The max-min fair share of `capacity` (threads' worth of time) among chefs using
/// `usage` of it each: the level `L` such that every chef using less than `L` is served in
/// full and the others get `L` each. When every chef fits, `L` is what the busiest one
/// could grow to (its use plus what is left). At most 1 (a chef runs on one thread at a
/// time). `usage` is sorted in place.
pub fn fair_share(capacity: f64, usage: &mut [f64]) -> f64 {
    usage.sort_by(f64::total_cmp);
    let mut left = capacity.max(0.0);
    let mut n = usage.len();
    for &u in usage.iter() {
        let equal = left / n as f64;
        if u > equal {
            return equal.min(1.0);
        }
        left -= u;
        n -= 1;
    }
    (usage.last().copied().unwrap_or(0.0) + left).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn light_chefs_leave_their_part_to_the_busy_ones() {
        // One thread, ten chefs: eight idle, one light, one busy.
        let mut u = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.05, 0.3];
        let level = fair_share(0.8, &mut u);
        assert!((level - 0.75).abs() < 1e-9, "{level}");
        // Two hogs and a light chef share what the light one leaves.
        let mut u = [0.9, 0.1, 1.0];
        assert!((fair_share(0.8, &mut u) - 0.35).abs() < 1e-9);
        // Everyone fits: the busiest may grow into what is left, never past one thread.
        let mut u = [0.1, 0.2];
        assert!((fair_share(0.8, &mut u) - 0.7).abs() < 1e-9);
        assert_eq!(fair_share(4.0, &mut [0.1]), 1.0);
        assert_eq!(fair_share(1.0, &mut []), 1.0);
    }

    #[test]
    fn usage_reads_the_fraction_of_time_in_calls_and_decays() {
        let t0 = Instant::now();
        let mut b = DutyBucket::default();
        // 3 ms of every 10 ms for 5 s: about 0.3.
        for i in 0..500u32 {
            b.charge(
                Duration::from_millis(3),
                t0 + Duration::from_millis(10) * i,
                1.0,
            );
        }
        let now = t0 + Duration::from_secs(5);
        let u = b.usage(now);
        assert!((0.27..=0.33).contains(&u), "{u}");
        // Idle for ten half-lives: about nothing.
        assert!(b.usage(now + USAGE_HALF_LIFE * 10) < 0.001);
    }

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
