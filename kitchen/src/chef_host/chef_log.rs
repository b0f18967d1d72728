//! A chef's log: the WIT `log` import and the chef's WASI stdout/stderr, all into
//! `tracing` (target `chef`, field `chef = <name>`), rate-limited per chef.
//!
//! Chef authors asked for in every plugin system we looked at: "where do my prints go?"
//! Here they go to the kitchen's stderr log, tagged, and never to the kitchen's stdout
//! (which carries dumplings with `--stdout`). A chef that floods its log loses messages
//! (counted and reported), it is not killed.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use super::bindings::LogLevel;

/// Messages per second a chef may log, sustained.
const RATE_PER_SEC: f64 = 50.0;
/// Burst a chef may log at once.
const BURST: f64 = 200.0;
/// Longest message kept, in bytes (longer ones are cut at a character boundary).
const MAX_MESSAGE: usize = 2048;
/// Bytes of messages per second a chef may log, sustained: with long messages the message
/// rate alone let one chef write ~100 KB/s (~9 GB a day) into the kitchen's log; short
/// ones (under ~80 bytes) still get the whole message rate.
const BYTES_PER_SEC: f64 = 4096.0;
/// Bytes a chef may log at once.
const BURST_BYTES: f64 = 32.0 * 1024.0;

struct Inner {
    chef: Arc<str>,
    tokens: f64,
    /// The byte bucket ([`BYTES_PER_SEC`], [`BURST_BYTES`]) beside the message bucket.
    byte_tokens: f64,
    last: Instant,
    suppressed: u64,
    stdout_line: Vec<u8>,
    stderr_line: Vec<u8>,
}

/// One chef's log sink; cheap to clone (shared by the `log` import and both WASI streams).
#[derive(Clone)]
pub struct ChefLog {
    inner: Arc<Mutex<Inner>>,
}

impl ChefLog {
    /// A sink tagged with `chef` (the file name until `describe` tells us the real name).
    pub fn new(chef: &str) -> Self {
        ChefLog {
            inner: Arc::new(Mutex::new(Inner {
                chef: Arc::from(chef),
                tokens: BURST,
                byte_tokens: BURST_BYTES,
                last: Instant::now(),
                suppressed: 0,
                stdout_line: Vec::new(),
                stderr_line: Vec::new(),
            })),
        }
    }

    /// Re-tag the sink (after `describe`).
    pub fn set_chef(&self, chef: &str) {
        if let Ok(mut g) = self.inner.lock() {
            g.chef = Arc::from(chef);
        }
    }

    /// Log one message from the chef.
    pub fn log(&self, level: LogLevel, message: &str) {
        // A poisoned lock can only come from a panic in this module while logging; losing
        // that chef's log lines is the right degradation.
        let Ok(mut g) = self.inner.lock() else { return };
        g.emit(level, "log", message);
    }

    /// Bytes written by the chef to WASI stdout/stderr: logged line by line.
    fn write_stream(&self, stderr: bool, bytes: &[u8]) {
        let Ok(mut g) = self.inner.lock() else { return };
        let g = &mut *g;
        let (buf, stream, level) = if stderr {
            (&mut g.stderr_line, "stderr", LogLevel::Warn)
        } else {
            (&mut g.stdout_line, "stdout", LogLevel::Info)
        };
        let mut lines = Vec::new();
        for &b in bytes {
            if b == b'\n' || buf.len() >= MAX_MESSAGE {
                lines.push(std::mem::take(buf));
                if b == b'\n' {
                    continue;
                }
            }
            buf.push(b);
        }
        for line in lines {
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end_matches('\r');
            // Blank lines (Rust's panic message starts with one) carry nothing.
            if !text.trim().is_empty() {
                g.emit(level, stream, text);
            }
        }
    }

    fn output(&self, stderr: bool) -> ChefOutput {
        ChefOutput {
            log: self.clone(),
            stderr,
        }
    }

    /// The chef's WASI stdout.
    pub fn stdout(&self) -> impl StdoutStream + 'static {
        self.output(false)
    }

    /// The chef's WASI stderr.
    pub fn stderr(&self) -> impl StdoutStream + 'static {
        self.output(true)
    }
}

impl Inner {
    fn emit(&mut self, level: LogLevel, stream: &str, message: &str) {
        let now = Instant::now();
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * RATE_PER_SEC).min(BURST);
        self.byte_tokens = (self.byte_tokens + elapsed * BYTES_PER_SEC).min(BURST_BYTES);
        // What the message costs is what reaches the log: cut, then escaped.
        let cut = truncate(message, MAX_MESSAGE);
        if self.tokens < 1.0 || self.byte_tokens < cut.len() as f64 {
            self.suppressed += 1;
            return;
        }
        // Escaped and cut: a newline or a terminal escape in a chef's message must not
        // forge a kitchen log line or reach the operator's terminal.
        let message = dumpling::text::escape(cut, MAX_MESSAGE);
        self.tokens -= 1.0;
        self.byte_tokens -= message.len() as f64;
        let chef = self.chef.clone();
        if self.suppressed > 0 {
            tracing::warn!(target: "chef", chef = %chef, suppressed = self.suppressed,
                "chef log messages suppressed (rate limit: {RATE_PER_SEC} messages and \
                 {BYTES_PER_SEC} bytes per second)");
            self.suppressed = 0;
        }
        match level {
            LogLevel::Trace => tracing::trace!(target: "chef", chef = %chef, stream, "{message}"),
            LogLevel::Debug => tracing::debug!(target: "chef", chef = %chef, stream, "{message}"),
            LogLevel::Info => tracing::info!(target: "chef", chef = %chef, stream, "{message}"),
            LogLevel::Warn => tracing::warn!(target: "chef", chef = %chef, stream, "{message}"),
            LogLevel::Error => tracing::error!(target: "chef", chef = %chef, stream, "{message}"),
        }
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// WASI stdout or stderr of one chef.
#[derive(Clone)]
struct ChefOutput {
    log: ChefLog,
    stderr: bool,
}

impl IsTerminal for ChefOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for ChefOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for ChefOutput {
    // Always writable: writes go straight to the (rate-limited) log.
    async fn ready(&mut self) {}
}

impl OutputStream for ChefOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.log.write_stream(self.stderr, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

impl tokio::io::AsyncWrite for ChefOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.log.write_stream(self.stderr, buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_at_char_boundary() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 10), "abc");
    }

    #[test]
    fn long_messages_are_limited_by_their_bytes() {
        // 2 KB messages at the full message rate wrote ~100 KB/s into the kitchen's log.
        let log = ChefLog::new("T");
        let long = "y".repeat(MAX_MESSAGE);
        let mut kept = 0;
        for _ in 0..100 {
            let before = log.inner.lock().unwrap().suppressed;
            log.log(LogLevel::Trace, &long);
            if log.inner.lock().unwrap().suppressed == before {
                kept += 1;
            }
        }
        let burst = (BURST_BYTES / MAX_MESSAGE as f64) as usize;
        assert!((burst..=burst + 1).contains(&kept), "{kept} of 100 kept");
        // Short messages still get the message rate.
        let log = ChefLog::new("T");
        for _ in 0..BURST as usize {
            log.log(LogLevel::Trace, "short line of a chef's log");
        }
        assert_eq!(log.inner.lock().unwrap().suppressed, 0);
    }

    #[test]
    fn rate_limit_counts_suppressed_messages() {
        let log = ChefLog::new("T");
        for _ in 0..(BURST as usize + 50) {
            log.log(LogLevel::Trace, "x");
        }
        let g = log.inner.lock().unwrap();
        assert!(g.suppressed >= 40, "suppressed {}", g.suppressed);
    }
}
