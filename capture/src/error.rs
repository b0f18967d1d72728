//! The error type shared by the file reader and live capture.

use std::path::PathBuf;

/// What a user typed (`-i`, `-f`) or libpcap said about it, as an error shows it: control
/// characters escaped (a newline in an interface name forged a log line) and cut.
fn shown(text: &str) -> String {
    const MAX_CHARS: usize = 256;
    let mut out: String = text
        .chars()
        .take(MAX_CHARS)
        .flat_map(char::escape_debug)
        .collect();
    if text.chars().count() > MAX_CHARS {
        out.push_str("...");
    }
    out
}

/// The running executable's path as one shell word, for a command a user may copy (the
/// capabilities go on the file that ran, wherever it was installed; a fixed
/// `target/release/nd-sniff` named a file that may not exist). Falls back to the name the
/// program was started by.
pub fn running_program() -> String {
    let path = std::env::current_exe()
        .ok()
        .or_else(|| std::env::args_os().next().map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("nd-sniff"));
    shell_word(&path.to_string_lossy())
}

/// `text` as one POSIX shell word: as it is when it holds only characters no shell treats
/// specially, else in single quotes (a quote written `'\''`). Control characters cannot be
/// written inside single quotes; they are shown escaped (`\n`), so nothing reaches the
/// terminal raw, at the cost of that command needing an edit.
fn shell_word(text: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+,:@%=".contains(c);
    if !text.is_empty() && text.chars().all(plain) {
        return text.to_owned();
    }
    let mut out = String::from("'");
    for c in text.chars() {
        match c {
            '\'' => out.push_str("'\\''"),
            c if c.is_control() => out.extend(c.escape_debug()),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// Everything that can go wrong while opening or reading a packet source.
///
/// File errors name the file; live errors name the interface.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// No packet yet: the input is a pipe with no data for a while (only after
    /// [`crate::FileReader::report_stalls`]). Nothing is lost; ask again.
    #[error("no data from the input for now (a stalled pipe or FIFO)")]
    Stalled,
    /// The file could not be opened or read (permissions, missing file, I/O error).
    // The OS error is the source (printed after it by `{:#}` chains), not repeated here.
    #[error("cannot read capture file {}", path.display())]
    Io {
        /// The capture file.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file does not start with a pcap or pcapng magic number (or is empty).
    #[error("{} is not a pcap or pcapng capture file: {reason}", path.display())]
    NotCapture {
        /// The file.
        path: PathBuf,
        /// What was found instead (for example the first bytes, or "empty file").
        reason: String,
    },
    /// The file is cut short or corrupt part-way. Every packet before `offset` was returned.
    #[error(
        "capture file {} is damaged at byte offset {offset} after {packets} packet(s): {reason}",
        path.display()
    )]
    Damaged {
        /// The capture file.
        path: PathBuf,
        /// Byte offset in the file of the record or block that could not be read.
        offset: u64,
        /// Packets returned before the damage.
        packets: u64,
        /// What is wrong there.
        reason: String,
    },
    /// The requested live interface does not exist.
    #[error("unknown interface {}; interfaces available: {}", shown(.name), shown(&.available.join(", ")))]
    UnknownInterface {
        /// The requested name.
        name: String,
        /// The interfaces libpcap can see (plus `any`).
        available: Vec<String>,
    },
    /// libpcap refused the BPF filter expression.
    #[error("bad capture filter {} on {}: {}", shown(.filter), shown(.interface), shown(.message))]
    BadFilter {
        /// Interface the filter was compiled for.
        interface: String,
        /// The filter expression.
        filter: String,
        /// libpcap's own message.
        message: String,
    },
    /// The process may not open a packet socket.
    #[error(
        "no permission to capture on {} ({}): live capture needs root or the \
         CAP_NET_RAW and CAP_NET_ADMIN capabilities, e.g. \
         `sudo setcap cap_net_raw,cap_net_admin=eip {program}` (or run it with sudo)",
        shown(.interface),
        shown(.message)
    )]
    PermissionDenied {
        /// The interface.
        interface: String,
        /// libpcap's own message.
        message: String,
        /// The program that needs the capabilities, as a shell word ([`running_program`]).
        program: String,
    },
    /// Any other libpcap failure on a live interface (activation, reading, interface gone).
    #[error("live capture on {} failed: {}", shown(.interface), shown(.message))]
    Live {
        /// The interface.
        interface: String,
        /// libpcap's own message.
        message: String,
    },
    /// The [`crate::LiveConfig`] is unusable (no interface, `any` mixed with others, ...).
    #[error("invalid live capture configuration: {}", shown(.0))]
    Config(String),
    /// The live capture was stopped, or every capture thread has ended.
    #[error("live capture closed")]
    Closed,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_user_typed_is_shown_escaped_and_cut() {
        let forged = "lo\n2026-12-07T00:00:00Z  INFO Sniffing started\u{1b}[2J";
        for e in [
            CaptureError::Live {
                interface: forged.into(),
                message: forged.into(),
            },
            CaptureError::BadFilter {
                interface: forged.into(),
                filter: forged.into(),
                message: "syntax error".into(),
            },
            CaptureError::UnknownInterface {
                name: forged.into(),
                available: vec!["lo".into()],
            },
        ] {
            let text = e.to_string();
            assert!(!text.contains('\n') && !text.contains('\u{1b}'), "{text}");
            assert!(text.contains("lo\\n2026"), "{text}");
        }
        let long = CaptureError::Config("x".repeat(10_000)).to_string();
        assert!(long.len() < 400, "{}", long.len());
    }

    #[test]
    fn the_permission_hint_names_the_program_as_one_shell_word() {
        assert_eq!(
            shell_word("/usr/local/bin/nd-sniff"),
            "/usr/local/bin/nd-sniff"
        );
        assert_eq!(
            shell_word("/opt/my tools/nd-sniff"),
            "'/opt/my tools/nd-sniff'"
        );
        assert_eq!(shell_word("/tmp/it's/nd-sniff"), "'/tmp/it'\\''s/nd-sniff'");
        assert_eq!(shell_word("/tmp/a$(x)"), "'/tmp/a$(x)'");
        assert_eq!(shell_word("/tmp/a\nb\u{1b}"), "'/tmp/a\\nb\\u{1b}'");
        assert_eq!(shell_word(""), "''");
        // The test binary is what runs here.
        let program = running_program();
        assert!(program.contains("capture"), "{program}");
        let text = CaptureError::PermissionDenied {
            interface: "lo".into(),
            message: "socket: Operation not permitted".into(),
            program: "'/opt/my tools/nd-sniff'".into(),
        }
        .to_string();
        assert!(
            text.contains("`sudo setcap cap_net_raw,cap_net_admin=eip '/opt/my tools/nd-sniff'`"),
            "{text}"
        );
        assert!(!text.contains("target/release"), "{text}");
    }
}
