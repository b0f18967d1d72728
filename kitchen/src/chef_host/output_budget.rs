//! The output budget of one chef, in payload bytes: per call and per second of the
//! kitchen's clock (capture time in a replay, so a replay drops the same dumplings every
//! time). A chef returning many dumplings that alias one large string costs the host
//! almost nothing to produce but the kitchen, the hub and every eater the full bytes; the
//! per-dumpling size cap does not stop that, these do.

/// One chef's budget state.
#[derive(Debug, Clone)]
pub struct OutputBudget {
    per_call: u64,
    per_sec: u64,
    /// Bytes accepted in the current call.
    call_used: u64,
    /// Token bucket (bytes), refilled at `per_sec`, capped at `per_sec` (a burst of one
    /// second's worth).
    tokens: u64,
    /// Kitchen clock of the last refill, ns.
    last_ns: Option<u64>,
}

/// Which budget refused a dumpling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverBudget {
    /// The call's bytes.
    PerCall,
    /// The chef's bytes per second.
    PerSecond,
}

impl OutputBudget {
    /// A fresh budget (full bucket).
    pub fn new(per_call: u64, per_sec: u64) -> Self {
        OutputBudget {
            per_call,
            per_sec,
            call_used: 0,
            tokens: per_sec,
            last_ns: None,
        }
    }

    /// A new call starts: its per-call budget is full again.
    pub fn start_call(&mut self) {
        self.call_used = 0;
    }

    /// Take `bytes` for one dumpling at kitchen time `now_ns`; nothing is taken when
    /// refused. Capture time going backwards refills nothing (never a negative interval).
    pub fn take(&mut self, bytes: u64, now_ns: u64) -> Result<(), OverBudget> {
        if let Some(last) = self.last_ns {
            let elapsed = now_ns.saturating_sub(last);
            let refill = (u128::from(elapsed) * u128::from(self.per_sec) / 1_000_000_000)
                .min(u128::from(u64::MAX)) as u64;
            self.tokens = self.tokens.saturating_add(refill).min(self.per_sec);
        }
        if self.last_ns.is_none_or(|l| now_ns > l) {
            self.last_ns = Some(now_ns);
        }
        if self.call_used.saturating_add(bytes) > self.per_call {
            return Err(OverBudget::PerCall);
        }
        if bytes > self.tokens {
            return Err(OverBudget::PerSecond);
        }
        self.call_used += bytes;
        self.tokens -= bytes;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn per_call_and_per_second_budgets() {
        let mut b = OutputBudget::new(1000, 3000);
        b.start_call();
        assert_eq!(b.take(600, 0), Ok(()));
        assert_eq!(b.take(600, 0), Err(OverBudget::PerCall));
        assert_eq!(b.take(400, 0), Ok(()));
        b.start_call();
        assert_eq!(b.take(1000, 0), Ok(()));
        b.start_call();
        assert_eq!(b.take(1000, 0), Ok(()));
        b.start_call();
        // 3000 bytes in the first second are spent.
        assert_eq!(b.take(1, 0), Err(OverBudget::PerSecond));
        // Half a second later, 1500 bytes came back.
        assert_eq!(b.take(1000, S / 2), Ok(()));
        b.start_call();
        assert_eq!(b.take(600, S / 2), Err(OverBudget::PerSecond));
        // Time going backwards refills nothing, and nothing breaks.
        assert_eq!(b.take(600, 0), Err(OverBudget::PerSecond));
        // A long pause refills to one second's worth, not more.
        b.start_call();
        assert_eq!(b.take(1000, 100 * S), Ok(()));
        b.start_call();
        assert_eq!(b.take(1000, 100 * S), Ok(()));
        b.start_call();
        assert_eq!(b.take(1000, 100 * S), Ok(()));
        b.start_call();
        assert_eq!(b.take(1, 100 * S), Err(OverBudget::PerSecond));
    }
}
