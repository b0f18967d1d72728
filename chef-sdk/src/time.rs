//! Capture and kitchen times: [`Timestamp`] (ns since the Unix epoch) and [`Tick`].

use std::time::Duration;

/// A point in time as nanoseconds since the Unix epoch (capture time for packets; the
/// kitchen's clock for ticks, which is capture time when replaying a file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(u64);

impl Timestamp {
    /// From nanoseconds since the epoch.
    #[inline]
    pub const fn from_nanos(ns: u64) -> Self {
        Timestamp(ns)
    }

    /// Nanoseconds since the epoch.
    #[inline]
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// Float seconds since the epoch: the netdumplings wire format for times
    /// (like Python's `time.time()`).
    #[inline]
    pub fn as_secs_f64(self) -> f64 {
        // Split so the fraction keeps its precision before the sum rounds to f64.
        (self.0 / 1_000_000_000) as f64 + (self.0 % 1_000_000_000) as f64 / 1e9
    }

    /// Time from `earlier` to `self`; zero if `earlier` is later.
    #[inline]
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl serde::Serialize for Timestamp {
    /// Serialises as float epoch seconds (the wire format), or as integer nanoseconds inside
    /// a chef's state snapshot ([`crate::state::in_state_form`]), which must be exact.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if crate::state::in_state_form() {
            s.serialize_u64(self.0)
        } else {
            s.serialize_f64(self.as_secs_f64())
        }
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    /// Reads the state form: integer nanoseconds since the epoch.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        u64::deserialize(d).map(Timestamp)
    }
}

/// One poke of the kitchen's interval timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tick {
    /// The kitchen's clock now.
    pub now: Timestamp,
    /// The configured poke interval.
    pub interval: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secs_f64_keeps_microseconds() {
        let t = Timestamp::from_nanos(1_700_000_000_123_456_789);
        let s = t.as_secs_f64();
        assert!((s - 1_700_000_000.123_456_8).abs() < 1e-6, "{s}");
        assert_eq!(
            serde_json::to_string(&Timestamp::from_nanos(1_500_000_000))
                .ok()
                .as_deref(),
            Some("1.5")
        );
    }

    #[test]
    fn since_saturates() {
        let a = Timestamp::from_nanos(10);
        let b = Timestamp::from_nanos(25);
        assert_eq!(b.since(a), Duration::from_nanos(15));
        assert_eq!(a.since(b), Duration::ZERO);
    }
}
