//! When a failing chef is restarted and when it is quarantined (out of `instance.rs`, which
//! only reports calls that worked or failed).
//!
//! After a failure the instance is dropped; the chef is re-instantiated after a backoff on
//! the kitchen's clock (capture time when replaying, so a replay stays deterministic) that
//! doubles per failure. Quarantine (never called again this run) comes from any of three
//! rules, all on the kitchen's clock:
//!
//! 1. `quarantine_after` failures **in a row** of one driver (`on-packets` or
//!    `on-interval`, counted separately, so a chef whose pokes always time out while its
//!    packet calls succeed is still caught);
//! 2. `quarantine_after` failures **within `quarantine_window`**, whatever the drivers (a
//!    crash loop);
//! 3. a **failure debt** of `quarantine_after`: each failure adds one, and one is forgiven
//!    per [`FAILURE_FORGIVENESS`] of kitchen time. Rules 1-2 can be evaded by pacing (a chef
//!    failing once every 25 s, with successes between, never has 5 in a row nor 5 in a
//!    minute); rule 3 catches any sustained rate above one failure per
//!    `FAILURE_FORGIVENESS` (at one per 25 s: the 7th failure, after ~2.5 min), while a
//!    chef that fails now and then on a loaded box is forgiven.
//!
//! Together they bound what restarts cost the kitchen: a chef is restarted at most
//! `quarantine_after - 1` times per `quarantine_window`, each restart costing at most the
//! init deadline plus one first call (`first_call_grace` x the deadline).
//!
//! When time goes backwards (a replayed file can jump), nothing is forgiven and a pending
//! backoff is waived (the restart time may lie in a future that never comes).

use std::collections::VecDeque;
use std::time::Duration;

use super::error::CallError;
use super::limits::ChefLimits;

/// Kitchen time that forgives one failure of the failure-debt rule (rule 3).
pub const FAILURE_FORGIVENESS: Duration = Duration::from_secs(120);

/// How long a new version of a quarantined chef waits (kitchen time from the last failure)
/// before its first call, doubling with each quarantine of the chef and capped at
/// [`QUARANTINED_VERSION_WAIT_MAX`]. A new version may be the fix, so it runs; but a file
/// rewritten again and again (each version failing its first call) cost the chefs' thread
/// one failing call per version, as often as the file changed.
pub const QUARANTINED_VERSION_WAIT: Duration = Duration::from_secs(10);

/// The longest wait of [`QUARANTINED_VERSION_WAIT`].
pub const QUARANTINED_VERSION_WAIT_MAX: Duration = Duration::from_secs(300);

/// Which handler a call was for (failures in a row are counted per driver).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallKind {
    Packets,
    /// `on-flow-events` (counted with packet calls: it runs in their place in a batch).
    FlowEvents,
    /// `on-stream` (counted with packet calls, as flow events).
    Stream,
    Interval,
    /// `state.snapshot` (hot reload, on the old version).
    Snapshot,
    /// `state.restore` (hot reload, on the new version).
    Restore,
}

impl CallKind {
    /// The call's name in logs.
    fn driver(self) -> &'static str {
        match self {
            CallKind::Packets => "on-packets",
            CallKind::FlowEvents => "on-flow-events",
            CallKind::Stream => "on-stream",
            CallKind::Interval => "on-interval",
            CallKind::Snapshot => "state.snapshot",
            CallKind::Restore => "state.restore",
        }
    }

    /// Which count of failures in a row it adds to (rule 1): packet calls, or the rest
    /// (pokes and the state calls, which run at the same moments).
    fn row(self) -> usize {
        match self {
            CallKind::Packets | CallKind::FlowEvents | CallKind::Stream => 0,
            CallKind::Interval | CallKind::Snapshot | CallKind::Restore => 1,
        }
    }

    /// Whether its time is counted as interval time (`ChefStats::interval_ns`).
    pub(crate) fn is_interval_like(self) -> bool {
        !matches!(
            self,
            CallKind::Packets | CallKind::FlowEvents | CallKind::Stream
        )
    }
}

/// A chef's failure history and what it implies.
#[derive(Debug)]
pub(crate) struct Health {
    /// Consecutive failures per driver ([`CallKind`] as index).
    consecutive: [u32; 2],
    /// Kitchen-clock times of recent failures (within the quarantine window; at most
    /// `quarantine_after` are kept, so this stays small whatever the clock does).
    recent: VecDeque<u64>,
    /// Failure debt (rule 3), in ns of forgiveness: `FAILURE_FORGIVENESS` per failure.
    debt_ns: u128,
    quarantined: bool,
    /// The failure count that triggered the quarantine.
    quarantined_after: u32,
    /// How many times the chef (across its versions) was quarantined.
    quarantines: u32,
    /// A new version of a quarantined chef: its loaded instance is not called; the first
    /// call is a restart after `retry_at_ns` ([`QUARANTINED_VERSION_WAIT`]).
    starts_later: bool,
    failed_at_ns: u64,
    retry_at_ns: u64,
    /// The next fresh instance's first call gets the first-call allowance.
    grace_next: bool,
}

impl Health {
    /// A new version's health after a hot reload of `old`: its failure history (failures in
    /// a row, recent failures, failure debt) goes on, so a chef file replaced again and
    /// again whose every version fails (a restore that runs out of time, a trap on its
    /// first call) is quarantined as one chef that keeps failing would be, instead of
    /// starting from nothing each time. The new version itself runs (not quarantined: it
    /// may be the fix), with its first-call allowance: at once, or, when `old` was
    /// quarantined, after [`QUARANTINED_VERSION_WAIT`] (doubling per quarantine), so
    /// versions churned after a quarantine cost at most one failing call per wait.
    pub(crate) fn inherited_from(old: &Health) -> Health {
        let (starts_later, retry_at_ns) = if old.quarantined {
            let shift = old.quarantines.saturating_sub(1).min(16);
            let wait = QUARANTINED_VERSION_WAIT
                .saturating_mul(1 << shift)
                .min(QUARANTINED_VERSION_WAIT_MAX);
            let at = old.failed_at_ns.saturating_add(wait.as_nanos() as u64);
            (true, at)
        } else if old.starts_later {
            // Replacing a version still waiting: the same moment (a newer file does not
            // buy an earlier call).
            (true, old.retry_at_ns)
        } else {
            (false, 0)
        };
        Health {
            consecutive: old.consecutive,
            recent: old.recent.clone(),
            debt_ns: old.debt_ns,
            quarantines: old.quarantines,
            starts_later,
            failed_at_ns: old.failed_at_ns,
            retry_at_ns,
            ..Health::default()
        }
    }

    /// For a new version of a quarantined chef not started yet: the kitchen time of its
    /// first call (its instance from the load is dropped; that call restarts it).
    pub(crate) fn starts_at_ns(&self) -> Option<u64> {
        self.starts_later.then_some(self.retry_at_ns)
    }

    /// A fresh instance was made (its wait, if any, is over).
    pub(crate) fn restarted(&mut self) {
        self.starts_later = false;
    }
}

impl Default for Health {
    fn default() -> Self {
        Health {
            consecutive: [0; 2],
            recent: VecDeque::new(),
            debt_ns: 0,
            quarantined: false,
            quarantined_after: 0,
            quarantines: 0,
            starts_later: false,
            failed_at_ns: 0,
            retry_at_ns: 0,
            grace_next: true,
        }
    }
}

impl Health {
    /// Quarantined for the rest of the run.
    pub(crate) fn is_quarantined(&self) -> bool {
        self.quarantined
    }

    /// Does the next fresh instance's first call get the first-call allowance?
    pub(crate) fn grace_next(&self) -> bool {
        self.grace_next
    }

    /// May a new instance be made at `now_ns`? (Quarantined, or still backing off.)
    pub(crate) fn may_restart(&self, now_ns: u64) -> Result<(), CallError> {
        if self.quarantined {
            return Err(CallError::Quarantined(self.quarantined_after));
        }
        // Wait out the backoff, unless the clock went backwards (replayed files can jump).
        if now_ns < self.retry_at_ns && now_ns >= self.failed_at_ns {
            return Err(CallError::BackingOff);
        }
        Ok(())
    }

    /// A call of `kind` worked.
    pub(crate) fn succeeded(&mut self, kind: CallKind) {
        self.consecutive[kind.row()] = 0;
    }

    /// Record a failure at `now_ns`: count it, then schedule the restart or quarantine
    /// (logged with the chef's `name` and the reason).
    pub(crate) fn failed(
        &mut self,
        err: &CallError,
        kind: CallKind,
        now_ns: u64,
        limits: &ChefLimits,
        name: &str,
    ) {
        // A chef that ran out of time gets no first-call allowance on its next instance.
        self.grace_next = !matches!(err, CallError::Timeout { .. });
        self.consecutive[kind.row()] += 1;
        let in_a_row = self.consecutive[kind.row()];
        let limit = limits.quarantine_after.max(1);
        // Rule 2: keep failures within the window; a clock that went backwards (replayed
        // files can jump) keeps them too.
        let window = limits.quarantine_window.as_nanos() as u64;
        self.recent
            .retain(|&t| t > now_ns || now_ns.saturating_sub(t) <= window);
        self.recent.push_back(now_ns);
        while self.recent.len() > limit as usize {
            self.recent.pop_front();
        }
        let in_window = self.recent.len() as u32;
        // Rule 3: forgive the kitchen time since the last failure, then add this one.
        let unit = FAILURE_FORGIVENESS.as_nanos();
        let since = u128::from(now_ns.saturating_sub(self.failed_at_ns));
        self.debt_ns = self.debt_ns.saturating_sub(since) + unit;
        let debt = (self.debt_ns / unit) as u32;
        self.failed_at_ns = now_ns;
        let driver = kind.driver();
        let why = if in_a_row >= limit {
            Some(format!("{in_a_row} {driver} failures in a row"))
        } else if in_window >= limit {
            Some(format!(
                "{in_window} failures within {:?} of kitchen time",
                limits.quarantine_window
            ))
        } else if debt >= limit {
            Some(format!(
                "failing faster than once per {FAILURE_FORGIVENESS:?} of kitchen time \
                 (failure debt {debt})"
            ))
        } else {
            None
        };
        if let Some(why) = why {
            self.quarantined = true;
            self.quarantines = self.quarantines.saturating_add(1);
            self.quarantined_after = in_a_row.max(in_window).max(debt);
            tracing::error!(chef = %name, reason = %err, driver,
                failures = self.quarantined_after,
                "chef failed: {why}; quarantined (not called again this run unless its file \
                 changes)");
        } else if kind == CallKind::Snapshot {
            // Only a version being replaced is snapshotted (hot reload): it is not
            // restarted, the new version takes over and starts fresh (`state::carry`).
            // The failure still counts for the chef (quarantine, summary).
            tracing::error!(chef = %name, reason = %err, driver,
                in_a_row, in_window, debt,
                "chef failed while its state was saved for a reload; the version being \
                 replaced is dropped with its state, the new version starts fresh");
        } else {
            let backoff = limits.backoff(in_a_row.max(in_window));
            self.retry_at_ns = now_ns.saturating_add(backoff.as_nanos() as u64);
            tracing::error!(chef = %name, reason = %err, driver,
                in_a_row, in_window, debt,
                "chef failed; its instance is dropped and its state lost; restarting after {backoff:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn trap() -> CallError {
        CallError::Trap("unreachable".into())
    }

    /// Fail every `every` seconds (with successes between) until quarantined or `max`
    /// failures; the number of failures it took.
    fn paced(every: u64, max: u32) -> Option<u32> {
        let limits = ChefLimits::default();
        let mut h = Health::default();
        let mut t = 1_700_000_000 * S;
        for n in 1..=max {
            h.may_restart(t).expect("may restart after the backoff");
            h.failed(&trap(), CallKind::Packets, t, &limits, "Paced");
            if h.is_quarantined() {
                return Some(n);
            }
            h.succeeded(CallKind::Packets);
            t += every * S;
        }
        None
    }

    #[test]
    fn a_failed_snapshot_counts_but_schedules_no_restart() {
        // The snapshotted version is the one being replaced: nothing of it restarts, and
        // the version after it may be called at once.
        let limits = ChefLimits::default();
        let mut h = Health::default();
        let t = 1_700_000_000 * S;
        h.failed(&trap(), CallKind::Snapshot, t, &limits, "Snap");
        assert_eq!(h.retry_at_ns, 0);
        assert_eq!(h.consecutive[CallKind::Snapshot.row()], 1);
        let next = Health::inherited_from(&h);
        assert_eq!(next.starts_at_ns(), None);
        assert!(next.may_restart(t + 1).is_ok());
        // A packet failure does schedule one.
        h.failed(&trap(), CallKind::Packets, t, &limits, "Snap");
        assert!(h.retry_at_ns > t);
    }

    #[test]
    fn versions_that_each_fail_their_restore_are_quarantined_like_one_chef() {
        // A file replaced every second, each version timing out in its state restore: each
        // new version inherits the history, so the versions are caught as one chef would
        // be (they were each a fresh chef, never quarantined, 500 ms of the shared thread
        // per reload).
        let limits = ChefLimits::default();
        let timeout = CallError::Timeout {
            deadline_ms: 500,
            wall_ceiling: false,
        };
        let mut h = Health::default();
        let mut t = 1_700_000_000 * S;
        let mut versions = 0;
        while !h.is_quarantined() && versions < 100 {
            h = Health::inherited_from(&h);
            assert!(
                !h.is_quarantined() && h.grace_next(),
                "a new version may run"
            );
            h.may_restart(t)
                .expect("a new version waits for no backoff");
            h.failed(&timeout, CallKind::Restore, t, &limits, "Churned");
            versions += 1;
            t += S;
        }
        assert_eq!(versions, limits.quarantine_after);
        // A version after the quarantine may run (it may be the fix), after a wait ...
        let failed_at = t - S;
        let fixed = Health::inherited_from(&h);
        assert!(!fixed.is_quarantined());
        let wait = QUARANTINED_VERSION_WAIT.as_nanos() as u64;
        assert_eq!(fixed.starts_at_ns(), Some(failed_at + wait));
        assert!(matches!(fixed.may_restart(t), Err(CallError::BackingOff)));
        fixed
            .may_restart(failed_at + wait)
            .expect("runs after the wait");
        // ... and one more failure of it is quarantined at once.
        let mut fixed = fixed;
        fixed.failed(&trap(), CallKind::Packets, t, &limits, "Churned");
        assert!(fixed.is_quarantined());
        assert_eq!(CallKind::Restore.driver(), "state.restore");
        assert_eq!(CallKind::Stream.driver(), "on-stream");
        assert_eq!(CallKind::FlowEvents.driver(), "on-flow-events");
    }

    #[test]
    fn versions_churned_after_a_quarantine_wait_longer_each_time() {
        // Each version failing its first call at once: the waits double per quarantine and
        // are capped, so an hour of churn costs a bounded number of failing calls.
        let limits = ChefLimits::default();
        let mut h = Health::default();
        let mut t = 1_700_000_000 * S;
        while !h.is_quarantined() {
            h.failed(&trap(), CallKind::Packets, t, &limits, "Churned");
            t += S;
        }
        let end = t + 3600 * S;
        let mut calls = 0;
        let mut waits = Vec::new();
        while t < end {
            // A new version every second.
            let v = Health::inherited_from(&h);
            let at = v
                .starts_at_ns()
                .expect("a quarantined chef's version waits");
            waits.push((at - v.failed_at_ns) / S);
            // Versions replaced before their start never run; the one that starts fails.
            t = t.max(at);
            let mut v = v;
            v.may_restart(t).expect("starts after the wait");
            v.failed(&trap(), CallKind::Packets, t, &limits, "Churned");
            assert!(v.is_quarantined());
            calls += 1;
            h = v;
            t += S;
        }
        assert_eq!(&waits[..6], &[10, 20, 40, 80, 160, 300]);
        assert!(calls <= 20, "{calls} failing calls in an hour");
    }

    #[test]
    fn a_chef_failing_every_25_s_is_quarantined() {
        assert_eq!(paced(25, 1000), Some(7));
    }

    #[test]
    fn a_chef_failing_now_and_then_is_forgiven() {
        assert_eq!(paced(130, 1000), None);
    }

    #[test]
    fn a_crash_loop_is_quarantined_by_the_window_rule() {
        let limits = ChefLimits::default();
        let mut h = Health::default();
        for i in 0..5 {
            assert!(!h.is_quarantined());
            h.failed(&trap(), CallKind::Packets, i * S, &limits, "Loop");
            h.succeeded(CallKind::Packets);
        }
        assert!(h.is_quarantined());
        assert!(matches!(
            h.may_restart(10 * S),
            Err(CallError::Quarantined(5))
        ));
    }

    #[test]
    fn backwards_time_waives_the_backoff_and_forgives_nothing() {
        let limits = ChefLimits::default();
        let mut h = Health::default();
        h.failed(&trap(), CallKind::Interval, 100 * S, &limits, "Back");
        assert!(matches!(h.may_restart(100 * S), Err(CallError::BackingOff)));
        assert!(h.may_restart(50 * S).is_ok());
    }
}
