//! The one wasmtime `Engine` of the kitchen and the epoch ticker that drives per-call
//! deadlines (charged in CPU time by the store's epoch callback, `call_budget.rs`).
//!
//! Settings and why (measurements in `shared/docs/wasm-host-notes.md`):
//! * `concurrency_support(false)`: on by default since wasmtime 43, it makes every
//!   synchronous host→component call 2.5-4x slower; chefs do not use component-model async.
//! * `epoch_interruption(true)` with one ticker thread for the whole engine: a deadline per
//!   call with no per-instruction bookkeeping (fuel would be deterministic but costs about
//!   as much and needs tuning per language). The epoch follows the wall clock; a call's
//!   epoch deadline is where it *could* have used its CPU budget, and the store's callback
//!   then reads the thread's CPU clock (`call_budget.rs`).
//! * `max_wasm_stack(1 MiB)`: deep enough for parsers written recursively, small enough that
//!   runaway recursion traps quickly instead of eating the host thread's stack.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use wasmtime::{Config, Engine};

use super::error::LoadError;

/// How often the ticker bumps the engine's epoch. Deadlines are whole ticks, so this is
/// their resolution; 5 ms keeps the ticker's own cost negligible (200 wakeups/s).
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Largest wasm stack a chef may use.
pub const MAX_WASM_STACK: usize = 1 << 20;

/// Build the engine every chef runs in.
pub fn build_engine() -> Result<Engine, LoadError> {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .concurrency_support(false)
        .epoch_interruption(true)
        .max_wasm_stack(MAX_WASM_STACK);
    Engine::new(&config).map_err(|e| LoadError::Engine(format!("{e:#}")))
}

/// Number of epoch ticks to allow for a call with the given deadline. One extra tick,
/// because the current tick may be about to end when the call starts.
pub fn deadline_ticks(deadline: Duration) -> u64 {
    let tick = EPOCH_TICK.as_nanos().max(1);
    let ticks = deadline.as_nanos().div_ceil(tick);
    u64::try_from(ticks)
        .unwrap_or(u64::MAX / 2)
        .saturating_add(1)
}

/// A thread that increments the engine's epoch every [`EPOCH_TICK`]. Dropping it stops
/// and joins the thread.
pub struct EpochTicker {
    /// Set by `Drop`; the thread checks it on every tick.
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    /// Start ticking `engine`.
    pub fn start(engine: &Engine) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let engine = engine.clone();
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("nd-epoch-ticker".into())
            .spawn(move || {
                // The epoch follows the clock, not the number of wake-ups: on a loaded
                // host this thread wakes late, and counting wake-ups would stretch every
                // deadline (measured: a 200 ms deadline let a 400 ms spin finish at load
                // 10 on 2 cores). So each wake-up catches up on every tick that elapsed.
                let started = Instant::now();
                let tick = EPOCH_TICK.as_nanos().max(1);
                let mut ticks: u128 = 0;
                while !flag.load(Ordering::Relaxed) {
                    std::thread::park_timeout(EPOCH_TICK);
                    let due = started.elapsed().as_nanos() / tick;
                    while ticks < due {
                        engine.increment_epoch();
                        ticks += 1;
                    }
                }
            })?;
        Ok(EpochTicker {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_rounds_up_and_adds_a_tick() {
        assert_eq!(deadline_ticks(Duration::from_millis(50)), 11);
        assert_eq!(deadline_ticks(Duration::from_millis(1)), 2);
        assert_eq!(deadline_ticks(Duration::ZERO), 1);
    }
}
