//! The interval clock: when the kitchen pokes its interval chefs, whatever the times say.
//!
//! Pokes sit on a grid `t0 + p, t0 + 2p, ...` of the kitchen clock (capture time in a
//! replay, wall time live). Capture files are outside input, so their times may do
//! anything: go backwards, jump 50 years forward and back, be 0 or `u64::MAX`. The clock
//! keeps the work per packet O(1) and its memory constant whatever they do:
//!
//! * **Forward gap**: the grid points passed by one move of the clock are poked one by one
//!   up to a budget; beyond it the gap is *collapsed* into one poke at the last grid point
//!   (counted in `collapsed`). The budget is [`MAX_POKES_PER_GAP`], and in a replay also a
//!   credit of [`POKE_CREDIT_PER_PACKET`] per packet (capped at `MAX_POKES_PER_GAP`), so a
//!   file of spaced-out packets cannot make more than ~16 pokes per packet in total.
//! * **Backwards**: a small step back (less than the tolerance: [`REPLAY_BACK_TOLERANCE`]
//!   or the poke interval, whichever is larger, in a replay; the poke interval live) is
//!   held: the clock never runs backwards and the next poke waits until time passes it
//!   again (packets of merged captures are often a little out of order). A larger step back
//!   *restarts* the grid at the new time (`t + p`), as if the capture started again: after
//!   a packet stamped 50 years ahead, the rest of the file still gets its pokes, and a live
//!   kitchen whose wall clock was set back keeps poking.
//! * **End of range**: when the next grid point would not fit in a `u64` (a packet near
//!   `u64::MAX` ns, year 2554), the clock stops poking until a step back restarts it.
//!
//! Each kind of anomaly is logged once (the first time) and counted in
//! [`ClockAnomalies`], which the exit summary prints.

use std::time::Duration;

/// More pokes than this for one move of the clock are collapsed into one (a capture with a
/// day-long pause must not produce 17 280 pokes per chef at the default 5 s).
pub const MAX_POKES_PER_GAP: u64 = 1000;
/// Replay: pokes each packet adds to the budget of later gaps (capped at
/// [`MAX_POKES_PER_GAP`]): a file of packets an hour apart is poked normally for a while,
/// but cannot make more than about this many pokes per packet over its length.
pub const POKE_CREDIT_PER_PACKET: u64 = 16;
/// Replay: how far capture time may step back before the grid restarts (unless the poke
/// interval is longer). Merged captures of hosts with skewed clocks stay on one grid.
pub const REPLAY_BACK_TOLERANCE: Duration = Duration::from_secs(3600);

/// Counts of the clock's anomalies (see the module docs), for the exit summary.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ClockAnomalies {
    /// Forward gaps collapsed into one poke.
    pub gaps_collapsed: u64,
    /// Grid points skipped by those collapses.
    pub pokes_collapsed: u64,
    /// Steps back beyond the tolerance (the grid restarted).
    pub restarts: u64,
    /// Times the grid ran off the end of the `u64` ns range.
    pub ended: u64,
}

impl ClockAnomalies {
    /// Field-wise sum.
    pub fn plus(&self, o: &ClockAnomalies) -> ClockAnomalies {
        ClockAnomalies {
            gaps_collapsed: self.gaps_collapsed + o.gaps_collapsed,
            pokes_collapsed: self.pokes_collapsed + o.pokes_collapsed,
            restarts: self.restarts + o.restarts,
            ended: self.ended + o.ended,
        }
    }

    /// True when nothing odd happened.
    pub fn is_empty(&self) -> bool {
        *self == ClockAnomalies::default()
    }
}

/// The pokes due after one move of the clock: `count` grid points from `first_ns`,
/// `step_ns` apart; the first one carries `collapsed` skipped points before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DuePokes {
    /// Time of the first poke.
    pub first_ns: u64,
    /// Number of pokes (at most [`MAX_POKES_PER_GAP`]).
    pub count: u64,
    /// Distance between them.
    pub step_ns: u64,
    /// Grid points skipped just before the first one.
    pub collapsed: u64,
}

impl DuePokes {
    /// The poke times, oldest first.
    pub fn times(&self) -> impl Iterator<Item = u64> + '_ {
        // `first + (count-1)*step` was checked to be <= the clock's time: no overflow.
        (0..self.count).map(move |k| self.first_ns + k * self.step_ns)
    }
}

/// Where the grid stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Grid {
    /// No time seen yet.
    NotStarted,
    /// The next grid point.
    Next(u64),
    /// The next grid point is past `u64::MAX`.
    Ended,
}

/// The interval clock (see the module docs).
#[derive(Debug, Clone)]
pub struct PokeClock {
    interval_ns: u64,
    /// A step back by more than this restarts the grid.
    back_tolerance_ns: u64,
    /// Replay: the pokes budget is earned per packet; live: always the full budget.
    earned: bool,
    credit: u64,
    grid: Grid,
    /// The latest time the clock has seen (it never runs backwards within the tolerance).
    high_ns: Option<u64>,
    anomalies: ClockAnomalies,
}

impl PokeClock {
    /// A replay clock (capture time; the budget of pokes is earned per packet).
    pub fn replay(interval: Duration) -> Self {
        let interval_ns = duration_ns(interval);
        PokeClock {
            interval_ns,
            back_tolerance_ns: interval_ns.max(duration_ns(REPLAY_BACK_TOLERANCE)),
            earned: true,
            credit: MAX_POKES_PER_GAP,
            grid: Grid::NotStarted,
            high_ns: None,
            anomalies: ClockAnomalies::default(),
        }
    }

    /// A live clock (wall time).
    pub fn live(interval: Duration) -> Self {
        let interval_ns = duration_ns(interval);
        PokeClock {
            back_tolerance_ns: interval_ns,
            earned: false,
            ..PokeClock::replay(interval)
        }
    }

    /// The poke interval, ns (at least 1).
    pub fn interval_ns(&self) -> u64 {
        self.interval_ns
    }

    /// The next grid point, once the clock has started (None also after its end).
    pub fn next_ns(&self) -> Option<u64> {
        match self.grid {
            Grid::Next(t) => Some(t),
            Grid::NotStarted | Grid::Ended => None,
        }
    }

    /// What went odd so far.
    pub fn anomalies(&self) -> ClockAnomalies {
        self.anomalies
    }

    /// Start the grid at `now_ns` (the next poke is one interval later).
    pub fn start(&mut self, now_ns: u64) {
        self.high_ns = Some(now_ns);
        self.grid = match now_ns.checked_add(self.interval_ns) {
            Some(t) => Grid::Next(t),
            None => self.ran_off_the_end(now_ns),
        };
    }

    /// Replay: one packet stamped `ts_ns` (starts the grid at the first one, earns credit).
    pub fn packet(&mut self, ts_ns: u64) -> Option<DuePokes> {
        if self.earned {
            self.credit = (self.credit + POKE_CREDIT_PER_PACKET).min(MAX_POKES_PER_GAP);
        }
        if self.grid == Grid::NotStarted {
            self.start(ts_ns);
            return None;
        }
        self.advance(ts_ns)
    }

    /// Move the clock to `now_ns`: the pokes due, if any. O(1) whatever `now_ns` is.
    pub fn advance(&mut self, now_ns: u64) -> Option<DuePokes> {
        let high = self.high_ns?;
        if now_ns < high {
            if high - now_ns > self.back_tolerance_ns {
                self.anomalies.restarts += 1;
                if self.anomalies.restarts == 1 {
                    tracing::warn!(
                        from_ns = high,
                        to_ns = now_ns,
                        "the kitchen clock went back {}; poke schedule restarted at the new \
                         time (logged once; the exit summary counts them)",
                        human(high - now_ns)
                    );
                }
                self.start(now_ns);
            }
            return None;
        }
        self.high_ns = Some(now_ns);
        let Grid::Next(next) = self.grid else {
            return None;
        };
        if now_ns < next {
            return None;
        }
        let due = (now_ns - next) / self.interval_ns + 1;
        let budget = if self.earned {
            self.credit.clamp(1, MAX_POKES_PER_GAP)
        } else {
            MAX_POKES_PER_GAP
        };
        let pokes = if due > budget {
            // Collapse: one poke at the last grid point reached (<= now_ns: no overflow).
            let last = next + (due - 1) * self.interval_ns;
            self.anomalies.gaps_collapsed += 1;
            self.anomalies.pokes_collapsed += due - 1;
            if self.anomalies.gaps_collapsed == 1 {
                tracing::info!(
                    skipped = due - 1,
                    "kitchen clock gap of {}: collapsed {} interval pokes into one (logged \
                     once; the exit summary counts them)",
                    human(now_ns - next + self.interval_ns),
                    due - 1
                );
            }
            DuePokes {
                first_ns: last,
                count: 1,
                step_ns: self.interval_ns,
                collapsed: due - 1,
            }
        } else {
            DuePokes {
                first_ns: next,
                count: due,
                step_ns: self.interval_ns,
                collapsed: 0,
            }
        };
        if self.earned {
            self.credit = self.credit.saturating_sub(pokes.count);
        }
        let last = pokes.first_ns + (pokes.count - 1) * self.interval_ns;
        self.grid = match last.checked_add(self.interval_ns) {
            Some(t) => Grid::Next(t),
            None => self.ran_off_the_end(last),
        };
        Some(pokes)
    }

    fn ran_off_the_end(&mut self, at_ns: u64) -> Grid {
        self.anomalies.ended += 1;
        if self.anomalies.ended == 1 {
            tracing::warn!(
                at_ns,
                "the kitchen clock reached the end of its range (year 2554); no more pokes \
                 until the time steps back (logged once)"
            );
        }
        Grid::Ended
    }
}

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1)
}

/// A span for a log line, in the largest fitting unit.
fn human(ns: u64) -> String {
    const DAY: u64 = 86_400 * 1_000_000_000;
    if ns >= 365 * DAY {
        format!("{:.1} years", ns as f64 / (365.25 * DAY as f64))
    } else if ns >= DAY {
        format!("{:.1} days", ns as f64 / DAY as f64)
    } else {
        format!("{:.3?}", Duration::from_nanos(ns))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn times(d: Option<DuePokes>) -> Vec<u64> {
        d.map(|d| d.times().collect()).unwrap_or_default()
    }

    #[test]
    fn pokes_follow_the_grid() {
        let mut c = PokeClock::replay(Duration::from_nanos(10));
        assert_eq!(c.packet(0), None);
        assert_eq!(times(c.packet(9)), Vec::<u64>::new());
        assert_eq!(times(c.packet(10)), [10]);
        assert_eq!(times(c.packet(35)), [20, 30]);
        assert_eq!(c.next_ns(), Some(40));
    }

    #[test]
    fn a_small_step_back_holds_and_a_large_one_restarts() {
        let mut c = PokeClock::live(Duration::from_nanos(10));
        c.start(100);
        assert_eq!(c.advance(95), None, "within one interval: held");
        assert_eq!(c.next_ns(), Some(110));
        assert_eq!(times(c.advance(110)), [110]);
        assert_eq!(c.advance(50), None, "60 back: restart");
        assert_eq!(c.anomalies().restarts, 1);
        assert_eq!(times(c.advance(60)), [60]);
    }

    #[test]
    fn a_huge_jump_is_one_poke_and_the_grid_survives_u64_max() {
        let mut c = PokeClock::replay(Duration::from_secs(5));
        c.packet(1_700_000_000_000_000_000);
        let d = c.packet(u64::MAX).expect("a poke");
        assert_eq!(d.count, 1);
        assert!(d.collapsed > 1_000_000);
        assert_eq!(c.next_ns(), None, "off the end");
        assert_eq!(c.packet(u64::MAX), None);
        assert_eq!(c.anomalies().ended, 1);
        // Back to normal time: restarted, pokes again.
        c.packet(1_700_000_000_000_000_000);
        assert_eq!(c.anomalies().restarts, 1);
        assert_eq!(
            times(c.packet(1_700_000_005_000_000_000)),
            [1_700_000_005_000_000_000]
        );
    }

    #[test]
    fn spaced_packets_earn_a_bounded_number_of_pokes() {
        let p = 1_000u64;
        let mut c = PokeClock::replay(Duration::from_nanos(p));
        let mut total = 0;
        let n = 10_000u64;
        for i in 0..n {
            // 999 grid points between packets: under the per-gap cap, over the credit.
            total += c.packet(i * 999 * p).map_or(0, |d| d.count);
        }
        assert!(
            total <= MAX_POKES_PER_GAP + n * (POKE_CREDIT_PER_PACKET + 1),
            "{total}"
        );
        assert!(c.anomalies().gaps_collapsed > 0);
    }
}
