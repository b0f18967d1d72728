//! `nd-sniff -i IFACE`: the live-capture loop.
//!
//! The capture thread (`capture::LiveCapture`) fills a bounded queue; this loop, on the
//! calling thread, takes packets from it into the [`Dispatcher`]'s batch builder and runs
//! the chefs. Batches are cut when full, when the queue goes quiet, and when a packet has
//! waited [`MAX_BATCH_AGE`] (so dumplings are not held back waiting for 256 packets on a
//! quiet network). Interval pokes follow the wall clock.
//!
//! Between batches the loop asks its [`BetweenSteps`] hook (hot reload in `nd-sniff`, the
//! same hook a replay takes) whether something is waiting, and applies it there, so a
//! reloaded chef starts at a batch boundary.
//!
//! Load: when the capture queue holds more than [`crate::dispatch::duty::BEHIND_PACKETS`],
//! the dispatcher is told it is behind, and chefs over their share of the time shed their
//! own batches (counted per chef; see [`crate::dispatch::duty`]).
//!
//! Stopping: on the stop flag (SIGINT/SIGTERM) or the end of capture, capturing stops and
//! the packets still queued are handed to the chefs for at most [`SHUTDOWN_DRAIN`]; what is
//! left is counted as `shutdown_dropped` in the capture counters (the kitchen status and
//! the exit summary), so no received packet goes uncounted.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use capture::{CaptureError, CaptureStats, FilterGate, GateRefusal, LiveCapture, LiveConfig};

use crate::input::filter_check::FilterCheck;

use crate::dispatch::{wall_ns, Dispatcher, SinkError};
use crate::outputs::status::CaptureCounters;
use crate::run::BetweenSteps;

/// Live batches are flushed when the queue goes quiet or after this long.
pub const MAX_BATCH_AGE: Duration = Duration::from_millis(50);
/// How long the queue is drained at shutdown (up to 65 536 packets by default): a slow
/// chef must not hold the exit.
pub const SHUTDOWN_DRAIN: Duration = Duration::from_secs(2);

/// A progress callback of [`live`]: called on the calling thread, with the capture
/// counters already stored in the dispatcher's status inputs (metrics in `nd-sniff`).
pub type LiveProgress = Box<dyn FnMut(&mut Dispatcher)>;

/// Options of [`live`].
pub struct LiveOptions {
    /// The kitchen's name, for log lines (escaped here).
    pub kitchen: String,
    /// Interfaces to capture on.
    pub interfaces: Vec<String>,
    /// A BPF expression packets must match.
    pub filter: Option<String>,
    /// Where libpcap's compile of `filter` is first tried in a bounded child (`None`:
    /// compiled without a bound).
    pub filter_check: Option<FilterCheck>,
    /// Set by a signal handler to stop.
    pub stop: Arc<AtomicBool>,
    /// Called at most this often (also while the network is quiet).
    pub progress: Option<(Duration, LiveProgress)>,
    /// Called once the capture has started, before the first packet.
    pub on_started: Option<Box<dyn FnOnce()>>,
}

/// Why a live run ended (errors aside).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveEnd {
    /// A stop signal, or the capture ended; the queue was drained (see the module docs).
    Done,
    /// The output refused a dumpling because its reader went away.
    OutputClosed,
}

/// A live run that could not start or went wrong.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// The capture could not start (no such interface, no permission, bad filter, ...).
    // Each error prints only its own words; `{:#}` chains add the source after them.
    #[error("cannot capture on {interfaces}")]
    Start {
        /// The interfaces asked for, comma-separated.
        interfaces: String,
        /// Why.
        #[source]
        source: CaptureError,
    },
    /// The capture failed while running.
    #[error("live capture failed")]
    Capture(#[source] CaptureError),
    /// The output failed.
    #[error(transparent)]
    Sink(#[from] SinkError),
}

/// What a live run counted at its end.
#[derive(Debug, Clone, Copy, Default)]
pub struct LiveCounters {
    /// The capture's own counters at the end.
    pub capture: CaptureStats,
    /// Packets still queued at the stop that could not be handed to the chefs in time.
    pub shutdown_dropped: u64,
}

/// Capture on `options.interfaces` and run `d`'s chefs on every packet until the stop flag
/// or the end of capture; `hooks` is applied between batches. `d.finish()` is left to the
/// caller. The capture counters (with `shutdown_dropped`) are stored in `d`'s status
/// inputs before returning.
pub fn live(
    d: &mut Dispatcher,
    hooks: &mut dyn BetweenSteps,
    mut options: LiveOptions,
) -> Result<(LiveEnd, LiveCounters), LiveError> {
    // What the user typed is shown escaped (a newline in `-n` or `-i` forged log lines).
    let k = dumpling::text::escape(&options.kitchen, dumpling::text::DEFAULT_MAX_CHARS);
    let mut lc = LiveConfig::new(options.interfaces.iter().cloned());
    lc.filter = options.filter.clone();
    lc.filter_gate = options.filter_check.clone().map(|check| {
        FilterGate(Arc::new(move |expression: &str, link_type: u32| {
            check.check(expression, link_type).map_err(|e| GateRefusal {
                message: e.message,
                for_every_link_type: e.for_every_link_type,
            })
        }))
    });
    let capture = LiveCapture::start(lc).map_err(|source| LiveError::Start {
        interfaces: dumpling::text::escape(
            &options.interfaces.join(", "),
            dumpling::text::DEFAULT_MAX_CHARS,
        ),
        source,
    })?;
    tracing::info!("{k}: Sniffing started");
    if let Some(started) = options.on_started.take() {
        started();
    }
    let result = run_loop(&k, &capture, d, hooks, &mut options);
    capture.stop();
    let end = match result {
        Ok(end) => end,
        Err(e) => {
            store_counters(d, capture.stats(), 0);
            return Err(e);
        }
    };
    let shutdown_dropped = match end {
        LiveEnd::Done => drain_at_shutdown(&k, &capture, d)?,
        LiveEnd::OutputClosed => capture.queued_now(),
    };
    let stats = capture.stats();
    store_counters(d, stats, shutdown_dropped);
    tracing::info!(
        received = stats.received,
        dropped = stats.total_dropped() + shutdown_dropped,
        kernel_dropped = stats.kernel_dropped,
        queue_dropped = stats.queue_dropped,
        shutdown_dropped,
        loopback_skipped = stats.loopback_outgoing_skipped,
        "{k}: capture statistics"
    );
    Ok((
        end,
        LiveCounters {
            capture: stats,
            shutdown_dropped,
        },
    ))
}

/// Fresh capture counters for the status dumpling and the metrics.
fn store_counters(d: &mut Dispatcher, s: CaptureStats, shutdown_dropped: u64) {
    d.status_inputs().capture = Some(CaptureCounters {
        packets: s.received,
        kernel_dropped: s.kernel_dropped,
        queue_dropped: s.queue_dropped,
        shutdown_dropped,
    });
}

/// The packet loop, until a stop, the end of capture or a closed output.
fn run_loop(
    k: &str,
    capture: &LiveCapture,
    d: &mut Dispatcher,
    hooks: &mut dyn BetweenSteps,
    options: &mut LiveOptions,
) -> Result<LiveEnd, LiveError> {
    match d.start_live(wall_ns()) {
        Ok(()) => {}
        Err(SinkError::Closed) => return Ok(LiveEnd::OutputClosed),
        Err(e) => return Err(e.into()),
    }
    let mut batch_started: Option<Instant> = None;
    let mut last_progress = Instant::now();
    loop {
        if options.stop.load(Ordering::Relaxed) {
            tracing::warn!("{k}: Caught a signal; exiting.");
            return Ok(LiveEnd::Done);
        }
        let now = wall_ns();
        let until_poke = d.next_poke_ns().map_or(Duration::from_millis(100), |t| {
            Duration::from_nanos(t.saturating_sub(now))
        });
        let step = match capture.recv_timeout(until_poke.min(MAX_BATCH_AGE)) {
            Ok(Some(p)) => {
                d.set_behind(capture.queued_now() > crate::dispatch::duty::BEHIND_PACKETS);
                d.push(&p.as_record()).and_then(|()| {
                    if d.pending() > 0 {
                        batch_started.get_or_insert_with(Instant::now);
                    } else {
                        batch_started = None;
                    }
                    if batch_started.is_some_and(|t| t.elapsed() >= MAX_BATCH_AGE) {
                        batch_started = None;
                        d.flush()
                    } else {
                        Ok(())
                    }
                })
            }
            Ok(None) => {
                batch_started = None;
                d.flush()
            }
            Err(CaptureError::Closed) => {
                tracing::info!("{k}: capture ended");
                return Ok(LiveEnd::Done);
            }
            Err(e) => return Err(LiveError::Capture(e)),
        };
        let now = wall_ns();
        if d.next_poke_ns().is_some_and(|t| now >= t) {
            // Fresh capture counters for the status dumpling of this poke.
            store_counters(d, capture.stats(), 0);
        }
        // The one between-batches hook (hot reload): cheap when nothing waits.
        let step = step
            .and_then(|()| {
                if hooks.waiting() {
                    hooks.apply(d)
                } else {
                    Ok(())
                }
            })
            .and_then(|()| d.advance_clock(now));
        match step {
            Ok(()) => {}
            Err(SinkError::Closed) => return Ok(LiveEnd::OutputClosed),
            Err(e) => return Err(e.into()),
        }
        if let Some((every, report)) = options.progress.as_mut() {
            if last_progress.elapsed() >= *every {
                last_progress = Instant::now();
                store_counters(d, capture.stats(), 0);
                report(d);
            }
        }
    }
}

/// After a stop: hand the packets still queued to the chefs, for at most
/// [`SHUTDOWN_DRAIN`]; returns how many were left.
fn drain_at_shutdown(k: &str, capture: &LiveCapture, d: &mut Dispatcher) -> Result<u64, LiveError> {
    let started = Instant::now();
    let mut drained = 0u64;
    while started.elapsed() < SHUTDOWN_DRAIN {
        let Some(p) = capture.take_queued() else {
            break;
        };
        // As in the capture loop: a chef over its share sheds while the queue is long, so
        // a slow chef does not spend the drain's time for the others.
        d.set_behind(capture.queued_now() > crate::dispatch::duty::BEHIND_PACKETS);
        match d.push(&p.as_record()) {
            Ok(()) => drained += 1,
            Err(SinkError::Closed) => break,
            Err(e) => return Err(e.into()),
        }
    }
    let left = capture.queued_now();
    if drained > 0 || left > 0 {
        tracing::info!(
            "{k}: at shutdown, {drained} queued packets were handed to the chefs, {left} \
             dropped (counted as shutdown_dropped)"
        );
    }
    Ok(left)
}
