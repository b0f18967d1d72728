//! The error type shared by the file reader and live capture.

use std::path::PathBuf;

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
    #[error("unknown interface {name:?}; interfaces available: {}", available.join(", "))]
    UnknownInterface {
        /// The requested name.
        name: String,
        /// The interfaces libpcap can see (plus `any`).
        available: Vec<String>,
    },
    /// libpcap refused the BPF filter expression.
    #[error("bad capture filter {filter:?} on {interface}: {message}")]
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
        "no permission to capture on {interface} ({message}): live capture needs root or the \
         CAP_NET_RAW and CAP_NET_ADMIN capabilities, e.g. \
         `sudo setcap cap_net_raw,cap_net_admin=eip target/release/nd-sniff`"
    )]
    PermissionDenied {
        /// The interface.
        interface: String,
        /// libpcap's own message.
        message: String,
    },
    /// Any other libpcap failure on a live interface (activation, reading, interface gone).
    #[error("live capture on {interface} failed: {message}")]
    Live {
        /// The interface.
        interface: String,
        /// libpcap's own message.
        message: String,
    },
    /// The [`crate::LiveConfig`] is unusable (no interface, `any` mixed with others, ...).
    #[error("invalid live capture configuration: {0}")]
    Config(String),
    /// The live capture was stopped, or every capture thread has ended.
    #[error("live capture closed")]
    Closed,
}
