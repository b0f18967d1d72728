//! A cap on log lines that peers can cause: at most `burst` lines per `window`, then the
//! rest are counted and said in one line when the next window starts.
//!
//! Why: every registered connection logs when it comes and when it goes, as the original
//! hub does (an access log operators read), and auth refusals log each refused upgrade.
//! Peers choose how often that happens: a client opening and closing connections in a
//! loop made two INFO lines each, without bound. Normal traffic stays under the burst
//! and is logged exactly as before.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One kind of line's budget.
#[derive(Debug)]
pub struct LogLimit {
    burst: u32,
    window: Duration,
    state: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    start: Instant,
    logged: u32,
    suppressed: u64,
}

/// What to do with one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Log it; `suppressed` lines of this kind were not logged in the window before
    /// (say so first when it is not 0).
    Log {
        /// Lines not logged in the window that just ended.
        suppressed: u64,
    },
    /// Over this window's budget: counted, not logged.
    Quiet,
}

impl LogLimit {
    /// At most `burst` lines per `window`.
    pub fn new(burst: u32, window: Duration) -> LogLimit {
        LogLimit {
            burst,
            window,
            state: Mutex::new(Window {
                start: Instant::now(),
                logged: 0,
                suppressed: 0,
            }),
        }
    }

    /// Run `log` when the budget allows it, after a warning saying how many lines of
    /// `what` were not logged in the window before, if any.
    pub fn log(&self, what: &str, log: impl FnOnce()) {
        if let Verdict::Log { suppressed } = self.check() {
            if suppressed > 0 {
                tracing::warn!(
                    suppressed,
                    "{suppressed} more {what} not logged in the last {:?} (at most {} logged per {:?})",
                    self.window,
                    self.burst,
                    self.window
                );
            }
            log();
        }
    }

    /// Whether one more line may be logged now.
    pub fn check(&self) -> Verdict {
        let mut w = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut suppressed = 0;
        if w.start.elapsed() >= self.window {
            suppressed = w.suppressed;
            *w = Window {
                start: Instant::now(),
                logged: 0,
                suppressed: 0,
            };
        }
        if w.logged < self.burst {
            w.logged += 1;
            Verdict::Log { suppressed }
        } else {
            w.suppressed += 1;
            Verdict::Quiet
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_logged_the_rest_counted_and_said_in_the_next_window() {
        let limit = LogLimit::new(3, Duration::from_millis(50));
        let verdicts: Vec<Verdict> = (0..10).map(|_| limit.check()).collect();
        assert_eq!(
            verdicts.iter().filter(|v| **v == Verdict::Quiet).count(),
            7,
            "{verdicts:?}"
        );
        assert_eq!(verdicts[0], Verdict::Log { suppressed: 0 });
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(limit.check(), Verdict::Log { suppressed: 7 });
        assert_eq!(limit.check(), Verdict::Log { suppressed: 0 });
    }
}
