//! Writing to stderr when nobody may be reading it any more.
//!
//! `eprintln!` panics when the write fails, and it fails with EPIPE as soon as stderr's
//! reader is gone (`nd-print 2>&1 | head -1`): the process ended with exit 101 and a panic
//! message nobody could read, instead of finishing its work. Every binary that talks to a
//! hub writes its messages through here: a line nobody can read is dropped. (`nd-sniff`'s
//! progress-aware log writer does the same for its log lines.)

use std::io::Write;

/// Write `args` and a newline to stderr as one write, ignoring errors. Each line is
/// written as [`record_line`] writes a log record (no colours): a message's own line
/// breaks stay, but no control character a path or peer put in it reaches the terminal.
pub fn say_fmt(args: std::fmt::Arguments<'_>) {
    let text = format!("{args}\n");
    let _ = std::io::stderr()
        .lock()
        .write_all(say_text(&text).as_bytes());
}

/// [`say_fmt`]'s text: each line sanitized, line breaks kept.
fn say_text(text: &str) -> String {
    text.split_inclusive('\n')
        .map(|line| dumpling::text::sanitize_log_record(line, false))
        .collect()
}

/// `eprintln!` that never panics: a line nobody can read any more is dropped.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::stderr::say_fmt(format_args!($($arg)*))
    };
}

/// A stderr writer for `tracing_subscriber::fmt().with_writer(move || QuietStderr { colours })`
/// that reports every write as done (a failed write would make `tracing` report it with
/// `eprintln!`, which panics on a closed stderr) and writes each record escaped
/// ([`record_line`]): one line, no control character, whatever a field held. Call sites
/// escape what peers send, but not every field is theirs to escape: a library's own log
/// record (tungstenite at trace level logs each message's text as received), an OS error,
/// a path.
#[derive(Debug, Clone, Copy, Default)]
pub struct QuietStderr {
    /// The subscriber colours its output (`with_ansi`): its SGR colour sequences are kept.
    pub colours: bool,
}

/// One formatted log record as it is written: invalid UTF-8 shown as U+FFFD, and every
/// control or formatting character escaped except the final newline, tabs and (with
/// `colours`) SGR colour sequences ([`dumpling::text::sanitize_log_record`]).
pub fn record_line(record: &[u8], colours: bool) -> String {
    let text = String::from_utf8_lossy(record);
    dumpling::text::sanitize_log_record(&text, colours).into_owned()
}

impl Write for QuietStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // `tracing`'s formatter writes each record whole, in one call.
        let line = record_line(buf, self.colours);
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn said_messages_keep_their_lines_and_lose_control_characters() {
        let said = say_text("hub error: --nats-creds /tmp/\u{1b}]0;pwned\u{7}x\n\nFor more\n");
        assert_eq!(said.matches('\n').count(), 3, "{said:?}");
        assert!(!said.contains(['\u{1b}', '\u{7}']), "{said:?}");
        assert!(said.ends_with("\n\nFor more\n"), "{said:?}");
    }

    #[test]
    fn a_record_is_one_line_without_control_characters() {
        let record = b"2026-01-01 INFO Received message junk\n2099 ERROR forged\x1b]0;t\x07\xff\n";
        let line = record_line(record, false);
        assert_eq!(line.matches('\n').count(), 1, "{line:?}");
        assert!(line.ends_with('\n'));
        assert!(!line.contains(['\u{1b}', '\u{7}']), "{line:?}");
        assert!(
            line.contains(r"junk\n2099") && line.contains('\u{fffd}'),
            "{line:?}"
        );
        // The logger's own colours stay when it colours; a plain log gets none.
        let coloured = b"\x1b[32m INFO\x1b[0m hub started\n";
        assert_eq!(record_line(coloured, true).as_bytes(), coloured);
        assert!(!record_line(coloured, false).contains('\u{1b}'));
    }
}
