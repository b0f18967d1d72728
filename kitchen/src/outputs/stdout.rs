//! Dumpling outputs other than the hub: stdout (one JSON line per dumpling, for `jq`, with
//! terminal-unsafe characters as JSON escapes) and a tee over several outputs.

use std::io::{BufWriter, ErrorKind, Stdout, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::dispatch::{DumplingSink, SinkError};

/// When the write to stdout now in progress began, in ns after [`epoch`] plus one (0: no
/// write in progress). Read by the signal thread ([`blocked_for`]): a kitchen whose stdout
/// nobody reads blocks in `write` and never sees the stop flag.
static WRITE_STARTED: AtomicU64 = AtomicU64::new(0);

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// How long the write to stdout now in progress has been blocked (`None`: no write in
/// progress). Writes go out 64 KiB at a time (replays) or per line (live), so a write that
/// lasts seconds means stdout's reader has stopped reading.
pub fn blocked_for() -> Option<Duration> {
    match WRITE_STARTED.load(Ordering::Relaxed) {
        0 => None,
        started => {
            let now = u64::try_from(epoch().elapsed().as_nanos()).unwrap_or(u64::MAX);
            Some(Duration::from_nanos(now.saturating_sub(started - 1)))
        }
    }
}

/// Stdout, with each write and flush stamped in [`WRITE_STARTED`] while it runs.
struct WatchedStdout(Stdout);

impl WatchedStdout {
    fn watched<T>(&mut self, io: impl FnOnce(&mut Stdout) -> T) -> T {
        let started = u64::try_from(epoch().elapsed().as_nanos()).unwrap_or(u64::MAX - 1);
        WRITE_STARTED.store(started + 1, Ordering::Relaxed);
        let result = io(&mut self.0);
        WRITE_STARTED.store(0, Ordering::Relaxed);
        result
    }
}

impl Write for WatchedStdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.watched(|out| out.write(buf))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.watched(|out| out.flush())
    }
}

/// Every dumpling as one line on stdout.
pub struct StdoutSink {
    out: BufWriter<WatchedStdout>,
    /// Flush after every line (live capture: an eater piping into `jq` sees dumplings as
    /// they are made). Replays use block buffering.
    line_buffered: bool,
}

impl StdoutSink {
    /// A stdout sink.
    pub fn new(line_buffered: bool) -> Self {
        StdoutSink {
            out: BufWriter::with_capacity(64 * 1024, WatchedStdout(std::io::stdout())),
            line_buffered,
        }
    }

    /// Flush buffered lines.
    pub fn flush(&mut self) -> Result<(), SinkError> {
        self.out.flush().map_err(map_io)
    }
}

fn map_io(e: std::io::Error) -> SinkError {
    if e.kind() == ErrorKind::BrokenPipe {
        SinkError::Closed
    } else {
        SinkError::Io(e)
    }
}

impl DumplingSink for StdoutSink {
    fn send(&mut self, _chef: &str, json: String) -> Result<(), SinkError> {
        // serde_json writes DEL, C1 controls (U+009B is an 8-bit CSI), bidi overrides and
        // zero-width characters raw; a chef's strings come from the capture, and stdout is
        // often a terminal. They are written as `\uXXXX` (the same JSON value) wherever
        // stdout goes, so the output does not depend on it; the usual dumpling has none and
        // costs one scan.
        let escaped = dumpling::text::escape_json_text(&json);
        let json = escaped.as_deref().unwrap_or(&json);
        self.out.write_all(json.as_bytes()).map_err(map_io)?;
        self.out.write_all(b"\n").map_err(map_io)?;
        if self.line_buffered {
            self.out.flush().map_err(map_io)?;
        }
        Ok(())
    }

    fn flush_output(&mut self) -> Result<(), SinkError> {
        self.flush()
    }
}

impl Drop for StdoutSink {
    fn drop(&mut self) {
        let _ = self.out.flush();
    }
}

/// Sends each dumpling to every output, in order.
#[derive(Default)]
pub struct Tee {
    outputs: Vec<Box<dyn DumplingSink>>,
}

impl Tee {
    /// An empty tee (dumplings are counted by the dispatcher and dropped).
    pub fn new() -> Self {
        Tee::default()
    }

    /// Add an output.
    pub fn push(&mut self, sink: Box<dyn DumplingSink>) {
        self.outputs.push(sink);
    }
}

impl DumplingSink for Tee {
    fn send(&mut self, chef: &str, json: String) -> Result<(), SinkError> {
        let Some((last, rest)) = self.outputs.split_last_mut() else {
            return Ok(());
        };
        for o in rest {
            o.send(chef, json.clone())?;
        }
        last.send(chef, json)
    }

    fn flush_output(&mut self) -> Result<(), SinkError> {
        // Every output gets its flush; the first error is the answer.
        let mut first = Ok(());
        for o in &mut self.outputs {
            let r = o.flush_output();
            if first.is_ok() {
                first = r;
            }
        }
        first
    }
}
