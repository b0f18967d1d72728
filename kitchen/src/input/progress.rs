//! The progress line of `nd-sniff -r FILE` on a terminal: bytes and packets read, percent
//! of the file, packets/s, dumplings made and ETA, on stderr, redrawn in place at most
//! every [`REDRAW_EVERY`] and cleared at the end.
//!
//! It is drawn only when stderr is a terminal and `--quiet` is not given, so a piped or
//! redirected stderr holds log lines only. A pipe or FIFO has no known size: percent and
//! ETA are left out. Log lines and the progress line share stderr: [`LogWriter`] (the
//! tracing writer of `nd-sniff`) erases a shown line before writing a log line, and the
//! next redraw puts it back, so the two never mix on one row.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Redraws at most this often (~4 per second).
pub const REDRAW_EVERY: Duration = Duration::from_millis(250);

/// Carriage return plus "erase line": where the line starts and how it is removed.
const ERASE: &str = "\r\x1b[2K";

/// Whether a progress line is on screen now (only one exists per process).
static SHOWN: AtomicBool = AtomicBool::new(false);

/// Whether a progress line should be drawn: stderr is a terminal and not `--quiet`.
pub fn wanted(quiet: bool) -> bool {
    !quiet && std::io::stderr().is_terminal()
}

/// The line of one replay. Dropping it erases the line.
#[derive(Debug)]
pub struct ReplayProgress {
    /// Size of the file; `None` for pipes and FIFOs (no percent, no ETA).
    total_bytes: Option<u64>,
    started: Instant,
    last_draw: Option<Instant>,
}

/// What a redraw shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayCounts {
    /// Bytes of the input read.
    pub bytes: u64,
    /// Packets read.
    pub packets: u64,
    /// Dumplings made.
    pub dumplings: u64,
}

impl ReplayProgress {
    /// A line for replaying `path`, drawn at once (zeros) so even a short replay shows it.
    pub fn new(path: &Path) -> ReplayProgress {
        let total_bytes = std::fs::metadata(path)
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len());
        let mut p = ReplayProgress {
            total_bytes,
            started: Instant::now(),
            last_draw: None,
        };
        p.draw(ReplayCounts::default());
        p
    }

    /// Redraw with `counts`, unless the last redraw was less than [`REDRAW_EVERY`] ago.
    pub fn draw(&mut self, counts: ReplayCounts) {
        if self.last_draw.is_some_and(|t| t.elapsed() < REDRAW_EVERY) {
            return;
        }
        self.last_draw = Some(Instant::now());
        let line = render(self.total_bytes, counts, self.started.elapsed());
        let mut err = std::io::stderr().lock();
        // A failed write to stderr has nowhere to be reported; the next redraw retries.
        if write!(err, "{ERASE}{line}")
            .and_then(|()| err.flush())
            .is_ok()
        {
            SHOWN.store(true, Ordering::Release);
        }
    }
}

impl Drop for ReplayProgress {
    fn drop(&mut self) {
        erase_shown(&mut std::io::stderr().lock());
    }
}

/// Erase the progress line if one is shown (the caller holds the stderr lock).
fn erase_shown(err: &mut std::io::StderrLock<'_>) {
    if SHOWN.swap(false, Ordering::AcqRel) {
        let _ = err.write_all(ERASE.as_bytes()).and_then(|()| err.flush());
    }
}

/// The text of the line (no newline), e.g.
/// `replay: 1.2 MiB of 3.6 MiB (33%), 4 512 packets, 9 870 packets/s, 120 dumplings, ETA 0:02`.
pub fn render(total_bytes: Option<u64>, c: ReplayCounts, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 {
        c.packets as f64 / secs
    } else {
        0.0
    };
    let mut line = format!("replay: {}", bytes(c.bytes));
    if let Some(total) = total_bytes {
        let percent = (c.bytes.min(total) * 100).checked_div(total).unwrap_or(100);
        line += &format!(" of {} ({percent}%)", bytes(total));
    }
    line += &format!(
        ", {} packets, {} packets/s, {} dumplings",
        grouped(c.packets),
        grouped(rate as u64),
        grouped(c.dumplings)
    );
    if let Some(total) = total_bytes {
        // ETA from the average byte rate so far; none until something was read.
        if c.bytes > 0 && secs > 0.0 {
            let left = total.saturating_sub(c.bytes) as f64 / (c.bytes as f64 / secs);
            line += &format!(", ETA {}", clock(left));
        }
    }
    line
}

/// `1 234 567` (thin groups of three, readable at a glance).
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(ch);
    }
    out
}

/// `512 B`, `3.6 MiB`, `1.2 GiB`.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// `0:42`, `12:05`, `3:02:10`.
fn clock(secs: f64) -> String {
    let s = if secs.is_finite() {
        secs.round().min(359_999.0) as u64
    } else {
        0
    };
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

/// The `tracing` writer of `nd-sniff`: stderr, erasing a shown progress line before each
/// log line (the next redraw puts the line back below it), and escaping any control
/// character a field brought in ([`dumpling::text::sanitize_log_record`]): every record
/// stays one line whatever a file name, interface or OS error held.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogWriter {
    /// The subscriber colours its output (`with_ansi`): its SGR sequences are kept.
    pub colours: bool,
}

/// One log line's writer (see [`LogWriter`]).
#[derive(Debug)]
pub struct LogLine {
    colours: bool,
}

impl Write for LogLine {
    /// A log line nobody can read any more (stderr's reader went away: `2>&1 | head`) is
    /// dropped: an error here made `tracing` report it with `eprintln!`, which panics on a
    /// closed stderr and ended the kitchen with exit 101, mid-capture, with no summary.
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // `tracing`'s formatter writes each record whole, in one call.
        let text = String::from_utf8_lossy(buf);
        let clean = dumpling::text::sanitize_log_record(&text, self.colours);
        let mut err = std::io::stderr().lock();
        erase_shown(&mut err);
        let _ = err.write_all(clean.as_bytes());
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogLine;

    fn make_writer(&'a self) -> LogLine {
        LogLine {
            colours: self.colours,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_line_has_percent_and_eta() {
        let c = ReplayCounts {
            bytes: 1 << 20,
            packets: 12_345,
            dumplings: 7,
        };
        let line = render(Some(4 << 20), c, Duration::from_secs(2));
        assert_eq!(
            line,
            "replay: 1.0 MiB of 4.0 MiB (25%), 12 345 packets, 6 172 packets/s, 7 dumplings, ETA 0:06"
        );
    }

    #[test]
    fn a_pipe_line_has_neither() {
        let c = ReplayCounts {
            bytes: 900,
            packets: 3,
            dumplings: 0,
        };
        let line = render(None, c, Duration::from_secs(1));
        assert_eq!(line, "replay: 900 B, 3 packets, 3 packets/s, 0 dumplings");
        // Nothing read yet: no ETA (not a division by zero).
        let start = render(Some(100), ReplayCounts::default(), Duration::ZERO);
        assert_eq!(
            start,
            "replay: 0 B of 100 B (0%), 0 packets, 0 packets/s, 0 dumplings"
        );
    }

    #[test]
    fn clocks_and_groups() {
        assert_eq!(clock(3725.0), "1:02:05");
        assert_eq!(clock(f64::INFINITY), "0:00");
        assert_eq!(grouped(1_234_567), "1 234 567");
        assert_eq!(grouped(999), "999");
        assert_eq!(bytes(3 << 30), "3.0 GiB");
    }
}
