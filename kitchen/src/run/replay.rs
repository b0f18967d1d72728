//! `nd-sniff -r FILE`: a replay on two threads.
//!
//! Reading a capture and parsing its packets into WIT records costs about as much as
//! running the sample chefs on them, so a replay splits the work the way a live capture
//! already does: a **reading thread** owns the [`FileReader`], the `--filter` and a
//! [`BatchBuilder`] (batches + the capture-clock pokes), and sends [`Step`]s down a short
//! bounded channel; the **calling thread** owns the [`Dispatcher`] and runs the steps on
//! the chefs in the order they were made. The output is therefore the same, byte for byte,
//! as a single-threaded run; batches come back through a second channel for reuse.
//!
//! Hot reload: a reloaded chef must take effect at a batch boundary and only see packets
//! read after it was noticed, as it does live. When the [`BetweenSteps`] hook says
//! something is waiting, the calling thread asks the reading thread (an atomic flag checked
//! per packet) to cut its batch and send a barrier; the hook is applied at the barrier.
//! This also makes a reload take effect while a slow source (a FIFO) trickles packets.
//!
//! Slow sources: when the input is a pipe or FIFO that stalls for [`capture::STALL_WAIT`],
//! the reading thread hands on its partial batch at once (so a trickle gets its dumplings
//! without waiting for 256 packets) and takes any pending reload barrier. A pipe that
//! never pauses that long (`tcpdump -w - | nd-sniff -r -` on a steady 1 000 packets/s) gets
//! the live capture's rule instead: nothing read waits more than [`PIPE_MAX_BATCH_AGE`]
//! for its batch to fill. Batch boundaries then depend on timing, so only a regular file's
//! replay is byte-for-byte repeatable.
//!
//! Stopping: a signal is seen by the reading thread at its next packet or stall check (it
//! cuts its batch and ends); the calling thread runs everything sent before the end, so
//! nothing read is lost. As a last resort, if the reading thread does not answer (a read
//! blocked where no stall can be seen), the calling thread gives up after [`STOP_GRACE`]
//! and says how many packets were left behind.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use capture::{CaptureError, FileReader};

use crate::dispatch::{Dispatcher, SinkError};
use crate::input::file_filter::{FileFilter, FilterError};
use crate::input::filter_check::FilterCheck;
use crate::parse::batch::{Batch, BatchBuilder, Step};
use crate::parse::poke_clock::ClockAnomalies;

/// Messages queued between the threads (besides the one being run and the one being
/// built). One is enough to keep both threads busy; more only adds batches in flight, and
/// with them cache misses: every batch is written on one core and read on the other, and
/// with 1024-packet messages and two queued, the batches in flight outgrew the 1 MiB L2
/// (512-packet messages and one queued took 7 % off the CPU per packet, same run length).
const CHANNEL_MESSAGES: usize = 1;
/// Packets the reading thread groups into one message. Waking the other thread costs a
/// few microseconds of system time: per 256-packet batch that was about 15 % of the
/// reading thread's time, per 512 packets it is a few ns per packet. From a pipe, pokes are
/// sent without waiting (a FIFO replay that trickles packets still gets its pokes on time);
/// from a regular file they travel in the message with the packets around them (a
/// capture whose time is sparse has a poke every few dozen packets: one message and one
/// wake-up each cost the mixed corpus ~10 % of its CPU). Steps run in the same order
/// either way, so the output is the same.
const MESSAGE_PACKETS: usize = 512;
/// Frame bytes that also make a message full: 512 packets are about 0.4 MiB on the mixed
/// corpus, but 512 frames of up to 256 KiB (`capture::MAX_FRAME_BYTES`) would be 128 MiB
/// per message, held twice over (one queued, one running). Before frames were cut, this
/// bound alone kept 40 frames of 60 MiB from taking 2.5 GB. With it a message holds one
/// batch beyond it, so the reading thread holds a few batches whatever the frame sizes.
const MESSAGE_BYTES: usize = 2 * crate::parse::batch::MAX_BATCH_BYTES;
/// From a pipe, the longest a packet waits in a partial batch before the batch is handed
/// on (as live: [`crate::run::live::MAX_BATCH_AGE`]). Without it a steady trickle just under the
/// stall wait filled whole 512-packet messages first: half a second of delay at 1 000
/// packets/s.
pub const PIPE_MAX_BATCH_AGE: Duration = Duration::from_millis(50);
/// How long the calling thread waits for a step before it checks the hook and the stop flag.
const IDLE_CHECK: Duration = Duration::from_millis(50);
/// After a stop signal, how long to wait for a reading thread stuck in a read.
pub const STOP_GRACE: Duration = Duration::from_secs(1);

pub use super::{BetweenSteps, NoHooks};

/// Why a replay ended (errors aside).
#[derive(Debug)]
pub enum ReplayEnd {
    /// End of file.
    Done,
    /// A stop signal; everything read before it was handed to the chefs (unless
    /// `left_behind` says otherwise: the reading thread was stuck in a read).
    Stopped {
        /// Packets read but never handed to the chefs.
        left_behind: u64,
    },
    /// The file is damaged part-way; every packet before the damage was handed to the chefs.
    Damaged(CaptureError),
    /// The output refused a dumpling because its reader went away.
    OutputClosed,
}

/// A replay that could not run or went wrong.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The `--filter` expression does not compile.
    #[error(transparent)]
    Filter(#[from] FilterError),
    /// Reading the file failed (other than damage inside it).
    #[error(transparent)]
    Capture(#[from] CaptureError),
    /// The output failed.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// The reading thread could not start or died.
    #[error("the replay's reading thread {0}")]
    Thread(String),
}

/// Counters of a replay, readable while it runs.
#[derive(Debug, Default)]
pub struct ReplayCounters {
    /// Packets read from the file.
    pub read: AtomicU64,
    /// Packets that passed the filter (all, without one).
    pub passed: AtomicU64,
    /// Bytes of the file read so far (the end of the last packet read).
    pub bytes: AtomicU64,
    /// Wall time, ns, the dispatcher spent waiting for the reading thread's next message
    /// (for benchmarks: where a replay's time goes).
    pub waited_ns: AtomicU64,
    /// Frames cut to [`capture::MAX_FRAME_BYTES`] (longer records in the file).
    pub frames_cut: AtomicU64,
}

/// Options of [`replay`].
pub struct ReplayOptions {
    /// A BPF expression packets must match (as `tcpdump -r FILE EXPR` would).
    pub filter: Option<String>,
    /// Where each compile of `filter` is first tried in a bounded child (`None`: compiled
    /// in this process without a bound, for libraries and benchmarks).
    pub filter_check: Option<FilterCheck>,
    /// Set by a signal handler to stop early.
    pub stop: Arc<AtomicBool>,
    /// Called on the calling thread, at most this often, with the counters (also while
    /// the input is idle, so a paused pipe's progress and metrics stay current).
    pub progress: Option<(Duration, ProgressReport)>,
}

/// A progress callback of [`replay`].
pub type ProgressReport = Box<dyn FnMut(&ReplayCounters, &mut Dispatcher)>;

/// What the reading thread sends.
enum FromReader {
    /// Steps in order.
    Steps(Vec<Step>),
    /// Every packet read before the cut request was sent before this.
    Barrier,
    /// A pipe's reader handed on a partial batch (it stalled, or the batch aged): call
    /// the selective chefs on what they have queued too, so their dumplings are not held
    /// until 256 of their packets arrive. Never sent for a regular file.
    CallQueued,
    /// How reading ended, and the interval clock's anomalies.
    End(Result<ReplayEnd, CaptureError>, ClockAnomalies),
}

/// Replay `reader` through `d`'s chefs: reading and parsing on a new thread, chefs on
/// this one. Returns how it ended and the counters; `d.finish()` is left to the caller.
pub fn replay(
    reader: FileReader,
    d: &mut Dispatcher,
    hooks: &mut dyn BetweenSteps,
    mut options: ReplayOptions,
) -> Result<(ReplayEnd, Arc<ReplayCounters>), ReplayError> {
    // Compile the filter here first, so a bad expression fails before anything starts;
    // the reading thread takes it (and compiles for further link types as they appear).
    let filter = match &options.filter {
        Some(f) => Some(FileFilter::new(f, options.filter_check.clone())?),
        None => None,
    };
    let counters = Arc::new(ReplayCounters::default());
    let cut_request = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::sync_channel::<FromReader>(CHANNEL_MESSAGES);
    let (spare_tx, spare_rx) = mpsc::channel::<Batch>();
    let reading = ReadingThread {
        reader,
        filter,
        stop: options.stop.clone(),
        cut_request: cut_request.clone(),
        counters: counters.clone(),
        out: Outbox {
            builder: d.new_builder(),
            tx,
            spare_rx,
            steps: Vec::new(),
            packets: 0,
            bytes: 0,
            chefs_may_wait: false,
            send_pokes_now: true,
        },
    };
    // Not joined: if the output closes while the reader is blocked on a FIFO, the process
    // must still be able to end. The thread ends by itself once the channel is closed.
    std::thread::Builder::new()
        .name("nd-replay-reader".into())
        .spawn(move || reading.run())
        .map_err(|e| ReplayError::Thread(format!("cannot start: {e}")))?;

    let mut last_progress = Instant::now();
    let mut cut_asked = false;
    let mut stop_seen: Option<Instant> = None;
    let end = loop {
        if !cut_asked && hooks.waiting() {
            cut_request.store(true, Ordering::Release);
            cut_asked = true;
        }
        let waiting = Instant::now();
        let received = rx.recv_timeout(IDLE_CHECK);
        counters
            .waited_ns
            .fetch_add(crate::dispatch::elapsed_ns(waiting), Ordering::Relaxed);
        let message = match received {
            Ok(m) => m,
            Err(RecvTimeoutError::Timeout) => {
                if let Some((every, report)) = options.progress.as_mut() {
                    if last_progress.elapsed() >= *every {
                        last_progress = Instant::now();
                        report(&counters, d);
                    }
                }
                if options.stop.load(Ordering::Relaxed) {
                    let since = *stop_seen.get_or_insert_with(Instant::now);
                    if since.elapsed() >= STOP_GRACE {
                        let passed = counters.passed.load(Ordering::Relaxed);
                        let left_behind = passed.saturating_sub(d.stats().packets);
                        break ReplayEnd::Stopped { left_behind };
                    }
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err(ReplayError::Thread("stopped unexpectedly".into()));
            }
        };
        match message {
            FromReader::Steps(steps) => match run_steps(d, steps, &spare_tx) {
                Ok(()) => {}
                Err(SinkError::Closed) => break ReplayEnd::OutputClosed,
                Err(e) => return Err(e.into()),
            },
            FromReader::CallQueued => match d.flush() {
                Ok(()) => {}
                Err(SinkError::Closed) => break ReplayEnd::OutputClosed,
                Err(e) => return Err(e.into()),
            },
            FromReader::Barrier => {
                cut_asked = false;
                match hooks.apply(d) {
                    Ok(()) => {}
                    Err(SinkError::Closed) => break ReplayEnd::OutputClosed,
                    Err(e) => return Err(e.into()),
                }
            }
            FromReader::End(end, clock) => {
                d.add_clock_anomalies(&clock);
                break end?;
            }
        }
        if let Some((every, report)) = options.progress.as_mut() {
            if last_progress.elapsed() >= *every {
                last_progress = Instant::now();
                report(&counters, d);
            }
        }
    };
    Ok((end, counters))
}

/// Run `steps` in order, handing the emptied batches back for reuse.
fn run_steps(d: &mut Dispatcher, steps: Vec<Step>, spare: &Sender<Batch>) -> Result<(), SinkError> {
    for step in steps {
        if let Some(batch) = d.run(step)? {
            // The reading thread may be gone (it ended): nothing to reuse then.
            let _ = spare.send(batch);
        }
        // Batches a replay window held until its lanes ran (`dispatch::window`).
        for batch in d.take_spare_batches() {
            let _ = spare.send(batch);
        }
    }
    Ok(())
}

/// The reading thread's state.
struct ReadingThread {
    reader: FileReader,
    filter: Option<FileFilter>,
    stop: Arc<AtomicBool>,
    cut_request: Arc<AtomicBool>,
    counters: Arc<ReplayCounters>,
    out: Outbox,
}

/// The reading thread's sending side: the builder and the steps not sent yet.
struct Outbox {
    builder: BatchBuilder,
    tx: SyncSender<FromReader>,
    spare_rx: Receiver<Batch>,
    steps: Vec<Step>,
    packets: usize,
    /// Frame bytes (batch arenas) in `steps`.
    bytes: usize,
    /// Packets were sent since the last [`FromReader::CallQueued`]: selective chefs may
    /// hold some of them in their queues.
    chefs_may_wait: bool,
    /// A poke is sent at once (a pipe); else it waits for a full message.
    send_pokes_now: bool,
}

/// The calling thread went away (it ended early): stop reading.
struct Gone;

impl ReadingThread {
    fn run(mut self) {
        let end = match self.read_all() {
            Ok(end) => end,
            Err(Gone) => return,
        };
        // Every flow ends with the input (`end-of-capture`), after its last packet.
        self.out.builder.end_flows();
        if self.out.flush().is_err() {
            return;
        }
        self.publish();
        // Read once at the end (not per packet with the progress counters).
        self.counters
            .frames_cut
            .store(self.reader.frames_cut(), Ordering::Relaxed);
        let clock = self.out.builder.clock_anomalies();
        let _ = self.out.send(FromReader::End(end, clock));
    }

    /// Read to the end (or a stop); `Err(Gone)` when the calling thread is gone.
    fn read_all(&mut self) -> Result<Result<ReplayEnd, CaptureError>, Gone> {
        let mut filter = self.filter.take();
        // Pipes only: a regular file never stalls, and its batches stay cut by count and
        // pokes alone, so its replay is the same run after run.
        let is_pipe = self.reader.report_stalls(true);
        self.out.send_pokes_now = is_pipe;
        // When the oldest packet not yet handed on was read (pipes only).
        let mut unsent_since: Option<Instant> = None;
        let mut passed: u64 = 0;
        loop {
            // Published per packet (two uncontended stores): the calling thread reads them for
            // progress and to say what a stuck read left behind.
            self.counters.passed.store(passed, Ordering::Relaxed);
            self.publish();
            if self.stop.load(Ordering::Relaxed) {
                self.out.flush()?;
                return Ok(Ok(ReplayEnd::Stopped { left_behind: 0 }));
            }
            let record = match self.reader.next_packet() {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(CaptureError::Stalled) => {
                    // A pipe or FIFO has had no data for a few ms: hand on what was read
                    // (a trickling source gets its dumplings now, a stop loses nothing),
                    // and take a reload barrier now rather than at the next packet.
                    self.out.hand_on()?;
                    unsent_since = None;
                    if self.cut_request.load(Ordering::Relaxed)
                        && self.cut_request.swap(false, Ordering::AcqRel)
                    {
                        self.out.send(FromReader::Barrier)?;
                    }
                    continue;
                }
                Err(e @ CaptureError::Damaged { .. }) => {
                    self.out.flush()?;
                    return Ok(Ok(ReplayEnd::Damaged(e)));
                }
                Err(e) => {
                    self.out.flush()?;
                    return Ok(Err(e));
                }
            };
            // Checked after the read (which may have waited on a slow source), so that a
            // reload noticed meanwhile sees this packet, as it would live.
            // A plain load first: the swap is a locked instruction, too dear per packet.
            if self.cut_request.load(Ordering::Relaxed)
                && self.cut_request.swap(false, Ordering::AcqRel)
            {
                self.out.flush()?;
                self.out.send(FromReader::Barrier)?;
            }
            if let Some(f) = filter.as_mut() {
                if !f.matches(&record) {
                    continue;
                }
            }
            passed += 1;
            self.out.builder.push(&record);
            if self.out.builder.ready() > 0 {
                self.out.send_ready()?;
            }
            if is_pipe {
                // A clock read per packet, pipes only (a regular file never waits).
                let now = Instant::now();
                if self.out.is_empty() {
                    unsent_since = None;
                } else if now.duration_since(*unsent_since.get_or_insert(now)) >= PIPE_MAX_BATCH_AGE
                {
                    self.out.hand_on()?;
                    unsent_since = None;
                }
            }
        }
        self.counters.passed.store(passed, Ordering::Relaxed);
        self.out.flush()?;
        Ok(Ok(ReplayEnd::Done))
    }

    fn publish(&self) {
        self.counters
            .read
            .store(self.reader.packets_read(), Ordering::Release);
        self.counters
            .bytes
            .store(self.reader.byte_offset(), Ordering::Relaxed);
    }
}

impl Outbox {
    /// Send the batch being built and everything ready, now.
    fn flush(&mut self) -> Result<(), Gone> {
        self.builder.cut();
        self.collect();
        self.send_steps()
    }

    /// A pipe stalled or its batch aged: send everything now and have the calling thread
    /// call the selective chefs on their queues (once per hand-on, not per packet).
    fn hand_on(&mut self) -> Result<(), Gone> {
        self.flush()?;
        if self.chefs_may_wait {
            self.chefs_may_wait = false;
            self.send(FromReader::CallQueued)?;
        }
        Ok(())
    }

    /// Nothing read is waiting here: no partial batch, no steps unsent.
    fn is_empty(&self) -> bool {
        self.steps.is_empty() && self.builder.pending() == 0
    }

    /// Move the ready steps to the outbox; send it once it is full (packets or bytes) or
    /// (from a pipe) holds a poke.
    fn send_ready(&mut self) -> Result<(), Gone> {
        let poke = self.collect();
        if (poke && self.send_pokes_now)
            || self.packets >= MESSAGE_PACKETS
            || self.bytes >= MESSAGE_BYTES
        {
            self.send_steps()?;
        }
        Ok(())
    }

    /// Move the ready steps to the outbox; true if one of them is a poke.
    fn collect(&mut self) -> bool {
        let mut poke = false;
        while let Some(step) = self.builder.next_step() {
            match &step {
                Step::Packets(b) => {
                    self.packets += b.len();
                    self.bytes += b.arena.len();
                }
                Step::Poke { .. } => poke = true,
            }
            self.steps.push(step);
        }
        poke
    }

    fn send_steps(&mut self) -> Result<(), Gone> {
        if !self.steps.is_empty() {
            let steps = std::mem::take(&mut self.steps);
            self.chefs_may_wait |= self.packets > 0;
            self.packets = 0;
            self.bytes = 0;
            self.send(FromReader::Steps(steps))?;
        }
        while let Ok(batch) = self.spare_rx.try_recv() {
            self.builder.recycle(batch);
        }
        Ok(())
    }

    fn send(&self, m: FromReader) -> Result<(), Gone> {
        self.tx.send(m).map_err(|_| Gone)
    }
}
