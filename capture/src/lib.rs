//! Packet sources for the kitchen: capture files and live interfaces.
//!
//! Both produce [`PacketRecord`]s: a timestamp, the link type (pcap DLT), which interface,
//! and the captured bytes. Parsing the bytes is not this crate's job (the kitchen does it).
//!
//! * [`FileReader`] reads pcap (micro- and nanosecond, either byte order) and pcapng
//!   (any number of sections and interfaces with different link types, snaplens and
//!   timestamp resolutions) with the pure-Rust `pcap-parser`, choosing the format by magic
//!   number, never by file extension. It is lossless and runs on the caller's thread (replay
//!   must not drop packets). A file that is cut short or corrupt part-way yields every packet
//!   before the damage and then [`CaptureError::Damaged`].
//! * [`LiveCapture`] captures from one or more interfaces with libpcap, one thread per
//!   interface, and hands packets over through a bounded queue; when the consumer falls
//!   behind, packets are dropped at the queue and counted, never blocking capture.
//!
//! API CONTRACT (the kitchen codes against this; keep signatures stable):
//! ```text
//! FileReader::open(path: &Path) -> Result<FileReader, CaptureError>
//! FileReader::next_packet(&mut self) -> Result<Option<PacketRecord<'_>>, CaptureError>
//!     // Ok(None) at a clean end of file; Err(CaptureError::Damaged{..}) when the file is
//!     // cut short or corrupt part-way (packets before it were already returned).
//! FileReader::packets_read(&self) -> u64
//! LiveCapture::start(config: LiveConfig) -> Result<LiveCapture, CaptureError>
//! LiveCapture::recv_timeout(&self, timeout: Duration) -> Result<Option<OwnedPacket>, CaptureError>
//!     // Ok(None) on timeout; Err(CaptureError::Closed) after stop() / when every
//!     // capture thread has ended (an error that ended a thread is returned once first).
//! LiveCapture::stats(&self) -> CaptureStats
//! LiveCapture::stop(&self)  // idempotent; capture threads end promptly
//! LiveCapture::interfaces(&self) -> &[InterfaceInfo]  // index = PacketRecord::interface_index
//! OwnedPacket::as_record(&self) -> PacketRecord<'_>
//! list_interfaces() -> Result<Vec<String>, CaptureError>
//! ```
//!
//! Additions beyond the contract: [`FileReader::open_with_buffer`], [`FileReader::format`],
//! [`FileReader::interfaces`], [`FileReader::path`], [`FileReader::byte_offset`],
//! [`PacketRecord::to_owned_packet`], [`LiveConfig::new`], `LiveConfig`'s `Default` and
//! its `read_timeout_ms` field, [`CaptureStats::total_dropped`], and the constants
//! [`DEFAULT_BUFFER_SIZE`] and [`MAX_RECORD_SIZE`].
//!
//! Link types are DLT numbers as libpcap on Linux reports them, for files too (a file's
//! LINKTYPE_RAW, 101, reads as DLT_RAW, 12), so replay and live capture agree.

mod error;
mod file;
mod live;

pub use error::CaptureError;
pub use file::{
    FileFormat, FileReader, DEFAULT_BUFFER_SIZE, MAX_FRAME_BYTES, MAX_RECORD_SIZE, STALL_WAIT,
};
pub use live::{list_interfaces, CaptureStats, FilterGate, GateRefusal, LiveCapture, LiveConfig};

/// One captured packet, borrowed from the source.
#[derive(Debug, Clone, Copy)]
pub struct PacketRecord<'a> {
    /// Capture time in nanoseconds since the Unix epoch.
    pub timestamp_ns: u64,
    /// pcap link type (DLT number) of the interface the packet came from.
    pub link_type: u32,
    /// Index of that interface in the source's interface list.
    pub interface_index: u32,
    /// Length of the packet on the wire (may exceed `data.len()` when cut by the snaplen).
    pub original_len: u32,
    /// The captured bytes.
    pub data: &'a [u8],
}

/// A packet that owns its bytes (what [`LiveCapture`] hands over between threads).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedPacket {
    /// Capture time in nanoseconds since the Unix epoch.
    pub timestamp_ns: u64,
    /// pcap link type (DLT number) of the interface the packet came from.
    pub link_type: u32,
    /// Index of that interface in [`LiveCapture::interfaces`].
    pub interface_index: u32,
    /// Length of the packet on the wire (may exceed `data.len()` when cut by the snaplen).
    pub original_len: u32,
    /// The captured bytes.
    pub data: Vec<u8>,
}

impl OwnedPacket {
    /// Borrows this packet as a [`PacketRecord`].
    pub fn as_record(&self) -> PacketRecord<'_> {
        PacketRecord {
            timestamp_ns: self.timestamp_ns,
            link_type: self.link_type,
            interface_index: self.interface_index,
            original_len: self.original_len,
            data: &self.data,
        }
    }
}

impl PacketRecord<'_> {
    /// Copies this record into an [`OwnedPacket`].
    pub fn to_owned_packet(&self) -> OwnedPacket {
        OwnedPacket {
            timestamp_ns: self.timestamp_ns,
            link_type: self.link_type,
            interface_index: self.interface_index,
            original_len: self.original_len,
            data: self.data.to_vec(),
        }
    }
}

/// One interface of a packet source: a pcapng Interface Description Block, the single
/// implicit interface of a legacy pcap file, or one live device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceInfo {
    /// Interface name: the live device name, the pcapng `if_name` option, or empty when a
    /// file does not name it (legacy pcap files never do).
    pub name: String,
    /// pcap link type (DLT number).
    pub link_type: u32,
    /// Snapshot length (0 means "not limited", as pcapng allows).
    pub snaplen: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_can_move_between_threads() {
        fn send<T: Send>() {}
        fn send_sync<T: Send + Sync>() {}
        send::<FileReader>();
        send_sync::<LiveCapture>();
        send_sync::<OwnedPacket>();
        send_sync::<CaptureError>();
        let p = OwnedPacket {
            timestamp_ns: 5,
            link_type: 1,
            interface_index: 2,
            original_len: 9,
            data: vec![1, 2, 3],
        };
        assert_eq!(p.as_record().to_owned_packet(), p);
    }
}
