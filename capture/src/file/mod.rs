//! Capture-file reader: legacy pcap and pcapng, streamed through `pcap-parser`'s readers.
//!
//! The format is chosen by the first four bytes of the file (never by its name). Both
//! formats are streamed through `pcap-parser`'s circular-buffer readers
//! ([`LegacyPcapReader`], [`PcapNGReader`], [`DEFAULT_BUFFER_SIZE`] buffer, refilled when a
//! record is incomplete and grown for a record larger than the buffer, up to
//! [`MAX_RECORD_SIZE`]). Packets are returned as slices of that buffer: no copy and no
//! allocation per packet.
//!
//! Every record or block is checked for completeness *before* it is decoded, so a file that
//! is cut short or corrupt part-way yields every packet before the damage and then
//! [`CaptureError::Damaged`] (after which the reader is finished and returns `Ok(None)`).
//!
//! pcapng details: every block is decoded here directly from the buffered block, never with
//! `pcap-parser`'s block parsers, which collect a block's options into a `Vec` (a 64 MiB
//! block of 4-byte options cost ~600 MB): the section header's fixed fields are checked, an
//! interface description's options are walked in place for the three the reader uses
//! (`if_tsresol`, `if_tsoffset`, `if_name`), and packet blocks (enhanced, simple and the
//! obsolete packet block) have fixed headers. So a block costs its bytes in the buffer,
//! whatever its option count. Interfaces are numbered over the whole file (a
//! section's interface 0 follows the previous sections' last one) and
//! [`crate::PacketRecord::interface_index`] is that number; [`FileReader::interfaces`] lists
//! the first 65 536 of them (a section may describe as many, and a file
//! may have any number of sections). A simple
//! packet block carries no timestamp: it gets the timestamp of the previous packet of the
//! file (0 if none). All other blocks (name resolution, statistics, secrets, custom, unknown)
//! are skipped without being parsed.
//!
//! Link types are reported as libpcap on Linux reports them (DLT numbering, the same as
//! live capture): the few historical LINKTYPE_ values that differ are mapped, e.g.
//! LINKTYPE_RAW (101) becomes DLT_RAW (12), and the FCS bits of a legacy header are masked.
//!
//! Layout: [`input`] reads the bytes (regular file, or a pipe on a helper thread),
//! [`legacy`] locates legacy pcap records, [`pcapng`] pcapng blocks; this module holds
//! the reader both formats share.

mod input;
mod legacy;
mod pcapng;
#[cfg(test)]
mod tests;

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use pcap_parser::traits::PcapReaderIterator;
use pcap_parser::{LegacyPcapReader, PcapBlockOwned, PcapError, PcapNGReader};

use crate::{CaptureError, InterfaceInfo, PacketRecord};

pub use input::STALL_WAIT;
use input::{Input, PipeInput, Source, Stalls, PREFIX_MAX};
use legacy::{legacy_locate, LegacyState, Lengths, LEGACY_MAX_SNAPLEN};
#[cfg(test)]
use pcapng::TsParams;
use pcapng::{ng_locate, NgState};
#[cfg(test)]
use pcapng::{ts_to_ns, units_per_sec, EPB_TYPE, IDB_TYPE, OBSOLETE_PB_TYPE, SHB_TYPE, SPB_TYPE};

/// Size of the streaming buffer a [`FileReader`] starts with (1 MiB).
pub const DEFAULT_BUFFER_SIZE: usize = 1 << 20;

/// Largest pcap record or pcapng block the reader will grow its buffer for (64 MiB).
/// Anything claiming to be larger is reported as damage (a bogus length field).
pub const MAX_RECORD_SIZE: usize = 64 << 20;

/// Most bytes of a frame a [`FileReader`] returns (libpcap's `MAXIMUM_SNAPLEN`, 256 KiB): a
/// longer record (a file may declare a 4 GiB snaplen, and a 60 MiB frame is legal in it) is
/// cut to this, as `tcpdump -r` and Wireshark read it, and counted
/// ([`FileReader::frames_cut`]); `original_len` keeps its length on the wire. Why: every
/// chef interested in the frame gets a copy of it, so a 60 MiB frame made chefs miss their
/// deadlines (a replay's output then depended on timing) and the kitchen hold hundreds of MB.
pub const MAX_FRAME_BYTES: usize = 262_144;

/// libpcap's `LT_LINKTYPE`: the link type without the FCS-length bits some writers set.
const LINKTYPE_MASK: u32 = 0x03FF_FFFF;

/// The container format of a capture file, as found by its magic number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// Legacy pcap with microsecond timestamps (either byte order).
    Pcap,
    /// Legacy pcap with nanosecond timestamps (either byte order).
    NsecPcap,
    /// Alexey Kuznetzov's "modified" pcap (24-byte record headers, little-endian).
    ModifiedPcap,
    /// pcapng (any number of sections and interfaces).
    PcapNg,
}

/// Reads packets from a pcap or pcapng file on the caller's thread, losslessly.
///
/// ```no_run
/// # fn main() -> Result<(), capture::CaptureError> {
/// let mut reader = capture::FileReader::open(std::path::Path::new("trace.pcap"))?;
/// while let Some(pkt) = reader.next_packet()? {
///     println!("{} DLT {} {} bytes", pkt.timestamp_ns, pkt.link_type, pkt.data.len());
/// }
/// # Ok(()) }
/// ```
pub struct FileReader {
    path: PathBuf,
    format: FileFormat,
    state: State,
    interfaces: Vec<InterfaceInfo>,
    /// File offset of the first byte of the reader's buffered data.
    offset: u64,
    packets: u64,
    /// Frames returned cut to [`MAX_FRAME_BYTES`].
    frames_cut: u64,
    /// Length of the record returned last; consumed at the start of the next call.
    pending: usize,
    finished: bool,
    /// Damage found while reading the headers at open time, reported by `next_packet`.
    deferred: Option<CaptureError>,
    io_error: Arc<Mutex<Option<io::Error>>>,
    stalls: Arc<Stalls>,
    /// The input is a pipe, FIFO, socket or device (it can stall), not a regular file.
    is_pipe: bool,
}

impl std::fmt::Debug for FileReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileReader")
            .field("path", &self.path)
            .field("format", &self.format)
            .field("interfaces", &self.interfaces)
            .field("offset", &self.offset)
            .field("packets", &self.packets)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

enum State {
    Legacy(LegacyState),
    Ng(NgState),
}

/// Where the next packet lies in the reader's buffered data.
struct Located {
    start: usize,
    caplen: usize,
    record_len: usize,
    timestamp_ns: u64,
    link_type: u32,
    interface_index: u32,
    original_len: u32,
}

/// Outcome of making a number of bytes available in the buffer.
enum Fill {
    Ready,
    /// End of file reached with only this many bytes buffered.
    Short(usize),
}

/// Read failure inside [`ensure`] (the real error is in the `Source`'s slot).
struct ReadFailed;

/// Makes `need` bytes available at the front of `reader.data()`: refills on shortage and
/// grows the buffer when the record is larger than it.
fn ensure<R: PcapReaderIterator>(reader: &mut R, need: usize) -> Result<Fill, ReadFailed> {
    loop {
        let have = reader.data().len();
        if have >= need {
            return Ok(Fill::Ready);
        }
        if reader.reader_exhausted() {
            return Ok(Fill::Short(have));
        }
        // `grow` is a no-op when the buffer is already large enough.
        reader.grow(need.next_power_of_two().max(DEFAULT_BUFFER_SIZE));
        if reader.refill().is_err() {
            return Err(ReadFailed);
        }
    }
}

#[inline]
fn u32_at(d: &[u8], at: usize, big_endian: bool) -> u32 {
    let b = [d[at], d[at + 1], d[at + 2], d[at + 3]];
    if big_endian {
        u32::from_be_bytes(b)
    } else {
        u32::from_le_bytes(b)
    }
}

#[inline]
fn u16_at(d: &[u8], at: usize, big_endian: bool) -> u16 {
    let b = [d[at], d[at + 1]];
    if big_endian {
        u16::from_be_bytes(b)
    } else {
        u16::from_le_bytes(b)
    }
}

/// Maps a file's LINKTYPE_ value to the DLT_ value libpcap on Linux reports for it (the
/// same numbering live capture uses): they differ only for a few historical values, e.g.
/// LINKTYPE_RAW (101) is DLT_RAW (12).
fn linktype_to_dlt(linktype: u32) -> u32 {
    match linktype {
        100 => 11, // ATM_RFC1483
        101 => 12, // RAW
        102 => 15, // SLIP_BSDOS
        103 => 16, // PPP_BSDOS
        106 => 19, // ATM_CLIP (Linux)
        other => other,
    }
}

fn describe_magic(bytes: &[u8]) -> String {
    let hex: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let hint = match bytes {
        [0x1f, 0x8b, ..] => " (a gzip file: `zcat FILE | nd-sniff -r -`)",
        [0x28, 0xb5, 0x2f, 0xfd, ..] => " (a zstd file: `zstdcat FILE | nd-sniff -r -`)",
        [0xfd, b'7', b'z', b'X', ..] => " (an xz file: `xzcat FILE | nd-sniff -r -`)",
        [b'B', b'Z', b'h', ..] => " (a bzip2 file: `bzcat FILE | nd-sniff -r -`)",
        _ => "",
    };
    format!("unknown magic number {}{hint}", hex.join(" "))
}

impl FileReader {
    /// Opens a capture file and reads its file/section header.
    ///
    /// The format is detected from the magic number: pcap (`a1b2c3d4`, either byte order),
    /// nanosecond pcap (`a1b23c4d`), modified pcap (`a1b2cd34`) or pcapng (`0a0d0d0a`).
    /// Anything else, including an empty file, is [`CaptureError::NotCapture`]; a file whose
    /// header itself is cut short is [`CaptureError::Damaged`].
    pub fn open(path: &Path) -> Result<FileReader, CaptureError> {
        Self::open_with_buffer(path, DEFAULT_BUFFER_SIZE)
    }

    /// Like [`FileReader::open`] with a chosen initial buffer size (at least 64 bytes); the
    /// buffer still grows for larger records. Mostly useful for tests and benchmarks.
    pub fn open_with_buffer(path: &Path, buffer_size: usize) -> Result<FileReader, CaptureError> {
        let io_err = |source| CaptureError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = File::open(path).map_err(io_err)?;
        let mut magic = [0u8; 4];
        let mut got = 0;
        while got < magic.len() {
            match file.read(&mut magic[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_err(e)),
            }
        }
        let not_capture = |reason: String| CaptureError::NotCapture {
            path: path.to_path_buf(),
            reason,
        };
        if got == 0 {
            return Err(not_capture("empty file (0 bytes)".into()));
        }
        if got < 4 {
            return Err(not_capture(format!(
                "only {got} byte(s), too short for a magic number"
            )));
        }
        let format = match magic {
            [0xd4, 0xc3, 0xb2, 0xa1] | [0xa1, 0xb2, 0xc3, 0xd4] => FileFormat::Pcap,
            [0x4d, 0x3c, 0xb2, 0xa1] | [0xa1, 0xb2, 0x3c, 0x4d] => FileFormat::NsecPcap,
            [0x34, 0xcd, 0xb2, 0xa1] => FileFormat::ModifiedPcap,
            [0x0a, 0x0d, 0x0d, 0x0a] => FileFormat::PcapNg,
            [0xa1, 0xb2, 0xcd, 0x34] => {
                return Err(not_capture(
                    "big-endian modified (Kuznetzov) pcap is not supported".into(),
                ))
            }
            other => return Err(not_capture(describe_magic(&other))),
        };
        // A FIFO, a pipe (`/dev/stdin`), a socket or a device is read on a helper thread, so
        // that a reader can learn it has stalled (`report_stalls`); a regular file directly.
        let is_pipe = file.metadata().map(|m| !m.is_file()).unwrap_or(false);
        let input = if is_pipe {
            Input::Pipe(PipeInput::start(file).map_err(io_err)?)
        } else {
            Input::File(file)
        };
        let io_error = Arc::new(Mutex::new(None));
        let stalls = Arc::new(Stalls::default());
        // pcapng: `PcapNGReader::new` parses a section header from its first read (options
        // into a `Vec`, within the initial buffer), so the file's own header would be read
        // by other rules than every later block: a header over 1 MiB was "cut short" and an
        // option list cost ~40 bytes per option. It is handed a stand-in header instead,
        // dropped right after, and the file's header is read by `ng_locate` like any block
        // (up to `MAX_RECORD_SIZE`).
        let mut prefix = [0u8; PREFIX_MAX];
        let stand_in: &[u8] = if format == FileFormat::PcapNg {
            &pcapng::STAND_IN_SHB
        } else {
            &[]
        };
        prefix[..stand_in.len()].copy_from_slice(stand_in);
        prefix[stand_in.len()..stand_in.len() + magic.len()].copy_from_slice(&magic);
        let prefix_len = stand_in.len() + magic.len();
        let source = Source {
            input,
            prefix,
            prefix_len,
            prefix_left: prefix_len,
            error: Arc::clone(&io_error),
            stalls: Arc::clone(&stalls),
        };
        let buffer_size = buffer_size.max(64);
        if format != FileFormat::PcapNg {
            let legacy = LegacyPcapReader::new(buffer_size, source)
                .map_err(|e| Self::header_error(path, &io_error, &e, "pcap"))?;
            let mut reader = Self::finish_legacy_open(path, format, legacy, io_error)?;
            reader.stalls = stalls;
            reader.is_pipe = is_pipe;
            return Ok(reader);
        }
        let mut ng = PcapNGReader::new(buffer_size, source)
            .map_err(|e| Self::header_error(path, &io_error, &e, "pcapng"))?;
        // The stand-in is not part of the file: offsets start after it.
        ng.consume_noshift(pcapng::STAND_IN_SHB.len());
        let mut reader = FileReader {
            path: path.to_path_buf(),
            format,
            state: State::Ng(NgState {
                reader: ng,
                big_endian: false,
                section_base: 0,
                section: Vec::new(),
                last_ts: 0,
                warned_tsresol: false,
                warned_range: false,
            }),
            interfaces: Vec::new(),
            offset: 0,
            packets: 0,
            frames_cut: 0,
            pending: 0,
            finished: false,
            deferred: None,
            io_error,
            stalls,
            is_pipe,
        };
        // Read the section header and the interface blocks right after it now, so that
        // `interfaces()` is filled in; damage found there is reported by the first
        // `next_packet` call (like damage anywhere else), an I/O error by `open`.
        match reader.prime_pcapng() {
            Ok(()) => {}
            Err(e @ CaptureError::Damaged { .. }) => reader.deferred = Some(e),
            Err(e) => return Err(e),
        }
        Ok(reader)
    }

    fn header_error(
        path: &Path,
        io_error: &Arc<Mutex<Option<io::Error>>>,
        e: &PcapError<&'static [u8]>,
        what: &str,
    ) -> CaptureError {
        if let PcapError::ReadError = e {
            if let Some(source) = io_error.lock().ok().and_then(|mut s| s.take()) {
                return CaptureError::Io {
                    path: path.to_path_buf(),
                    source,
                };
            }
        }
        let reason = match e {
            PcapError::Incomplete(_) | PcapError::UnexpectedEof => {
                format!("{what} file header is cut short")
            }
            PcapError::HeaderNotRecognized => format!("{what} file header not recognized"),
            other => format!("invalid {what} file header: {}", parser_error_text(other)),
        };
        CaptureError::Damaged {
            path: path.to_path_buf(),
            offset: 0,
            packets: 0,
            reason,
        }
    }

    fn finish_legacy_open(
        path: &Path,
        format: FileFormat,
        mut legacy: LegacyPcapReader<Source>,
        io_error: Arc<Mutex<Option<io::Error>>>,
    ) -> Result<FileReader, CaptureError> {
        let (consumed, header) = match legacy.next() {
            Ok((n, PcapBlockOwned::LegacyHeader(h))) => (n, h),
            _ => {
                return Err(CaptureError::Damaged {
                    path: path.to_path_buf(),
                    offset: 0,
                    packets: 0,
                    reason: "invalid pcap file header".into(),
                })
            }
        };
        legacy.consume(consumed);
        let link_type = linktype_to_dlt((header.network.0 as u32) & LINKTYPE_MASK);
        let snaplen = header.snaplen;
        let nanos = header.is_nanosecond_precision();
        let modified = header.is_modified_format();
        let lengths = match (header.version_major, header.version_minor) {
            (2, minor) if minor < 3 => Lengths::Swapped,
            (2, 3) => Lengths::MaybeSwapped,
            (543, _) => Lengths::Swapped,
            _ => Lengths::Normal,
        };
        let max_caplen = (snaplen as usize).clamp(LEGACY_MAX_SNAPLEN, MAX_RECORD_SIZE - 24);
        Ok(FileReader {
            path: path.to_path_buf(),
            format,
            state: State::Legacy(LegacyState {
                reader: legacy,
                big_endian: header.is_bigendian(),
                nanos,
                record_header_len: if modified { 24 } else { 16 },
                snaplen,
                max_caplen,
                link_type,
                lengths,
            }),
            interfaces: vec![InterfaceInfo {
                name: String::new(),
                link_type,
                snaplen,
            }],
            offset: consumed as u64,
            packets: 0,
            frames_cut: 0,
            pending: 0,
            finished: false,
            deferred: None,
            io_error,
            stalls: Arc::default(),
            is_pipe: false,
        })
    }

    /// Reads the leading section header (and any interface blocks right after it).
    fn prime_pcapng(&mut self) -> Result<(), CaptureError> {
        // Locating the first packet would also consume the header blocks, but it would
        // consume the first packet too; instead process blocks until the next one is a
        // packet block (or the end).
        let FileReader {
            path,
            state,
            interfaces,
            offset,
            packets,
            io_error,
            ..
        } = self;
        let State::Ng(ng) = state else {
            return Ok(());
        };
        let mut ctx = Ctx {
            path,
            offset,
            packets: *packets,
            interfaces,
            io_error,
        };
        ng_locate(ng, &mut ctx, true).map(|_| ())
    }

    /// Returns the next packet, `Ok(None)` at a clean end of file, or
    /// [`CaptureError::Damaged`] when the file is cut short or corrupt (every packet before
    /// the damage has been returned by then). After an error or the end, it keeps
    /// returning `Ok(None)`. Never panics, whatever the file holds.
    pub fn next_packet(&mut self) -> Result<Option<PacketRecord<'_>>, CaptureError> {
        if self.finished {
            return Ok(None);
        }
        if let Some(e) = self.deferred.take() {
            self.finished = true;
            return Err(e);
        }
        let located = {
            let FileReader {
                path,
                state,
                interfaces,
                offset,
                packets,
                pending,
                io_error,
                ..
            } = self;
            let mut ctx = Ctx {
                path,
                offset,
                packets: *packets,
                interfaces,
                io_error,
            };
            match state {
                State::Legacy(l) => {
                    if *pending > 0 {
                        l.reader.consume_noshift(*pending);
                        *ctx.offset += *pending as u64;
                        *pending = 0;
                    }
                    legacy_locate(l, &mut ctx)
                }
                State::Ng(ng) => {
                    if *pending > 0 {
                        ng.reader.consume_noshift(*pending);
                        *ctx.offset += *pending as u64;
                        *pending = 0;
                    }
                    ng_locate(ng, &mut ctx, false)
                }
            }
        };
        let loc = match located {
            Ok(Some(loc)) => loc,
            Ok(None) => {
                self.finished = true;
                return Ok(None);
            }
            Err(e) => {
                if self.stalls.stalled.swap(false, Ordering::Relaxed) {
                    // Nothing was lost: the next call picks up where this one stopped.
                    return Err(CaptureError::Stalled);
                }
                self.finished = true;
                return Err(e);
            }
        };
        self.pending = loc.record_len;
        self.packets += 1;
        let caplen = loc.caplen.min(MAX_FRAME_BYTES);
        if caplen < loc.caplen {
            self.frames_cut += 1;
        }
        let data = match &self.state {
            State::Legacy(l) => l.reader.data(),
            State::Ng(ng) => ng.reader.data(),
        };
        Ok(Some(PacketRecord {
            timestamp_ns: loc.timestamp_ns,
            link_type: loc.link_type,
            interface_index: loc.interface_index,
            original_len: loc.original_len,
            // `ensure` made the whole record available; `get` keeps this panic-free anyway.
            data: data.get(loc.start..loc.start + caplen).unwrap_or_default(),
        }))
    }

    /// With `on`, [`FileReader::next_packet`] returns [`CaptureError::Stalled`] when the
    /// input is a pipe (a FIFO, `/dev/stdin`, a socket) that has had no data for
    /// [`STALL_WAIT`], instead of waiting for more; the next call carries on where it
    /// stopped. The caller can then act on what it has (a replay hands its partial batch to
    /// the chefs) and check for a stop request. Returns whether the input can stall at
    /// all: a regular file never does.
    pub fn report_stalls(&mut self, on: bool) -> bool {
        self.stalls.report.store(on, Ordering::Relaxed);
        self.is_pipe
    }

    /// Number of packets returned so far.
    pub fn packets_read(&self) -> u64 {
        self.packets
    }

    /// Frames returned cut to [`MAX_FRAME_BYTES`] so far.
    pub fn frames_cut(&self) -> u64 {
        self.frames_cut
    }

    /// The file's container format.
    pub fn format(&self) -> FileFormat {
        self.format
    }

    /// Interfaces described so far, indexed by [`crate::PacketRecord::interface_index`]
    /// (a pcapng file may describe more later, in new sections; only the file's first
    /// 65 536 are listed).
    pub fn interfaces(&self) -> &[InterfaceInfo] {
        &self.interfaces
    }

    /// The path this reader was opened with.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// File offset of the end of the last record returned (or of the headers read).
    pub fn byte_offset(&self) -> u64 {
        self.offset + self.pending as u64
    }
}

/// What `pcap-parser` said, without the input bytes its `Display` lists (up to a whole
/// block: a megabyte of numbers in one log line).
fn parser_error_text<I>(e: &PcapError<I>) -> String {
    match e {
        PcapError::Eof | PcapError::UnexpectedEof => "unexpected end of file".into(),
        PcapError::BufferTooSmall => "a block is larger than the read buffer".into(),
        PcapError::ReadError => "read error".into(),
        PcapError::Incomplete(n) => format!("incomplete ({n} more byte(s) needed)"),
        PcapError::HeaderNotRecognized => "header not recognized".into(),
        PcapError::NomError(_, kind) | PcapError::OwnedNomError(_, kind) => {
            format!("malformed (parser check {kind:?} failed)")
        }
    }
}

/// The parts of a [`FileReader`] the locate functions need besides the format state.
struct Ctx<'a> {
    path: &'a Path,
    offset: &'a mut u64,
    packets: u64,
    interfaces: &'a mut Vec<InterfaceInfo>,
    io_error: &'a Arc<Mutex<Option<io::Error>>>,
}

impl Ctx<'_> {
    fn damaged(&self, reason: String) -> CaptureError {
        CaptureError::Damaged {
            path: self.path.to_path_buf(),
            offset: *self.offset,
            packets: self.packets,
            reason,
        }
    }

    fn read_failed(&self) -> CaptureError {
        let source = self
            .io_error
            .lock()
            .ok()
            .and_then(|mut slot| slot.take())
            .unwrap_or_else(|| io::Error::other("read error"));
        CaptureError::Io {
            path: self.path.to_path_buf(),
            source,
        }
    }

    fn fill<R: PcapReaderIterator>(
        &self,
        reader: &mut R,
        need: usize,
    ) -> Result<Fill, CaptureError> {
        ensure(reader, need).map_err(|ReadFailed| self.read_failed())
    }
}
