//! Writing to stderr when nobody may be reading it any more.
//!
//! `eprintln!` panics when the write fails, and it fails with EPIPE as soon as stderr's
//! reader is gone (`nd-print 2>&1 | head -1`): the process ended with exit 101 and a panic
//! message nobody could read, instead of finishing its work. Every binary that talks to a
//! hub writes its messages through here: a line nobody can read is dropped. (`nd-sniff`'s
//! progress-aware log writer does the same for its log lines.)

use std::io::Write;

/// Write `args` and a newline to stderr as one write, ignoring errors.
pub fn say_fmt(args: std::fmt::Arguments<'_>) {
    let line = format!("{args}\n");
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// `eprintln!` that never panics: a line nobody can read any more is dropped.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::stderr::say_fmt(format_args!($($arg)*))
    };
}

/// A stderr writer for `tracing_subscriber::fmt().with_writer(|| QuietStderr)` that
/// reports every write as done: a failed write would make `tracing` report it with
/// `eprintln!`, which panics on a closed stderr.
#[derive(Debug, Clone, Copy, Default)]
pub struct QuietStderr;

impl Write for QuietStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().lock().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}
