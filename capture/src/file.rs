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
//! pcapng details: section header and interface description blocks are parsed with
//! `pcap-parser` (options included: `if_tsresol`, `if_tsoffset`, `if_name`). Packet blocks
//! (enhanced, simple and the obsolete packet block) have fixed headers that are decoded here
//! directly from the buffered block, which avoids the per-packet `Vec` of options that
//! `pcap-parser`'s block parser allocates. Interfaces of every section are kept in one list;
//! [`crate::PacketRecord::interface_index`] indexes [`FileReader::interfaces`]. A simple
//! packet block carries no timestamp: it gets the timestamp of the previous packet of the
//! file (0 if none). All other blocks (name resolution, statistics, secrets, custom, unknown)
//! are skipped without being parsed.
//!
//! Link types are reported as libpcap on Linux reports them (DLT numbering, the same as
//! live capture): the few historical LINKTYPE_ values that differ are mapped, e.g.
//! LINKTYPE_RAW (101) becomes DLT_RAW (12), and the FCS bits of a legacy header are masked.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pcap_parser::traits::PcapReaderIterator;
use pcap_parser::{
    parse_block_be, parse_block_le, parse_sectionheaderblock, Block, LegacyPcapReader, OptionCode,
    PcapBlockOwned, PcapError, PcapNGReader,
};

use crate::{CaptureError, InterfaceInfo, PacketRecord};

/// Size of the streaming buffer a [`FileReader`] starts with (1 MiB).
pub const DEFAULT_BUFFER_SIZE: usize = 1 << 20;

/// Largest pcap record or pcapng block the reader will grow its buffer for (64 MiB).
/// Anything claiming to be larger is reported as damage (a bogus length field).
pub const MAX_RECORD_SIZE: usize = 64 << 20;

/// Largest packet length accepted in a legacy pcap record when the file's snaplen is
/// smaller (libpcap's `MAXIMUM_SNAPLEN`, 262144). Like libpcap, a record longer than both
/// the snaplen and this is treated as damage.
const LEGACY_MAX_SNAPLEN: usize = 262_144;

const SHB_TYPE: u32 = 0x0A0D_0D0A;
const IDB_TYPE: u32 = 0x0000_0001;
const OBSOLETE_PB_TYPE: u32 = 0x0000_0002;
const SPB_TYPE: u32 = 0x0000_0003;
const EPB_TYPE: u32 = 0x0000_0006;

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
    /// Timestamp decoding per interface (same indices as `interfaces`).
    ts_params: Vec<TsParams>,
    /// File offset of the first byte of the reader's buffered data.
    offset: u64,
    packets: u64,
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

struct LegacyState {
    reader: LegacyPcapReader<Source>,
    big_endian: bool,
    nanos: bool,
    /// 16, or 24 for the modified format.
    record_header_len: usize,
    snaplen: u32,
    max_caplen: usize,
    link_type: u32,
    lengths: Lengths,
}

/// Whether a legacy file's record headers have caplen and len swapped (as libpcap decides
/// from the file's version: files older than 2.3 wrote them swapped, 2.3 files may have).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lengths {
    Normal,
    Swapped,
    MaybeSwapped,
}

struct NgState {
    reader: PcapNGReader<Source>,
    big_endian: bool,
    /// Index in `FileReader::interfaces` of the current section's interface 0.
    section_base: usize,
    last_ts: u64,
    /// Odd timestamps are logged once per file, not once per packet or interface.
    warned_tsresol: bool,
    warned_range: bool,
}

#[derive(Debug, Clone, Copy)]
struct TsParams {
    /// Timestamp units per second.
    units_per_sec: u64,
    /// `if_tsoffset`, seconds added to every timestamp.
    offset_secs: i64,
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

/// `File` wrapper that retries `Interrupted` and keeps the real I/O error, which
/// `pcap-parser` would otherwise flatten to `PcapError::ReadError`. It first replays the
/// magic number that `open` read, so the file is never seeked and a pipe works too.
struct Source {
    input: Input,
    prefix: [u8; 4],
    prefix_left: usize,
    error: Arc<Mutex<Option<io::Error>>>,
    stalls: Arc<Stalls>,
}

/// Where the bytes come from.
enum Input {
    /// A regular file: read directly (it never stalls).
    File(File),
    /// A FIFO, pipe, socket or device: read on a helper thread (see [`PipeInput`]).
    Pipe(PipeInput),
}

/// A non-regular input read by a helper thread into chunks, so the reader can notice that
/// no data is coming (a stalled writer) instead of blocking in `read` with packets it
/// could already hand on: see [`FileReader::report_stalls`].
struct PipeInput {
    chunks: Receiver<io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    at: usize,
    done: bool,
}

/// Bytes per helper-thread read of a pipe (a Linux pipe holds 64 KiB).
const PIPE_CHUNK: usize = 64 * 1024;
/// Chunks the helper thread may read ahead.
const PIPE_CHUNKS_AHEAD: usize = 16;
/// How long a read waits for a pipe before it reports a stall (when asked to).
pub const STALL_WAIT: Duration = Duration::from_millis(5);

/// Stall reporting, shared by a [`FileReader`] and its `Source`.
#[derive(Default)]
struct Stalls {
    /// Report stalls instead of waiting ([`FileReader::report_stalls`]).
    report: AtomicBool,
    /// Set by the `Source` when its last read failed because of a stall.
    stalled: AtomicBool,
}

impl PipeInput {
    /// Start the helper thread reading `file`.
    fn start(mut file: File) -> io::Result<PipeInput> {
        let (tx, rx) = mpsc::sync_channel(PIPE_CHUNKS_AHEAD);
        std::thread::Builder::new()
            .name("nd-pipe-reader".into())
            .spawn(move || loop {
                let mut buf = vec![0u8; PIPE_CHUNK];
                let chunk = match file.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        buf.truncate(n);
                        Ok(buf)
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => Err(e),
                };
                let failed = chunk.is_err();
                // The reader was dropped: stop (a blocked read ends with the writer).
                if tx.send(chunk).is_err() || failed {
                    break;
                }
            })?;
        Ok(PipeInput {
            chunks: rx,
            chunk: Vec::new(),
            at: 0,
            done: false,
        })
    }

    /// Copy buffered bytes into `buf`; `None` when a new chunk is needed.
    fn take(&mut self, buf: &mut [u8]) -> Option<usize> {
        let left = &self.chunk[self.at..];
        if left.is_empty() {
            return None;
        }
        let n = left.len().min(buf.len());
        buf[..n].copy_from_slice(&left[..n]);
        self.at += n;
        Some(n)
    }
}

impl Read for Source {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.prefix_left > 0 {
            // The readers parse the file header from their first read: return the magic
            // plus as much of the rest as one buffer holds (several reads for a pipe).
            let from = self.prefix.len() - self.prefix_left;
            let n = self.prefix_left.min(buf.len());
            buf[..n].copy_from_slice(&self.prefix[from..from + n]);
            self.prefix_left -= n;
            let mut filled = n;
            while filled < buf.len() && filled < header_bytes_needed(&buf[..filled]) {
                match self.read_input(&mut buf[filled..], false)? {
                    0 => break,
                    k => filled += k,
                }
            }
            return Ok(filled);
        }
        let report = self.stalls.report.load(Ordering::Relaxed);
        self.read_input(buf, report)
    }
}

impl Source {
    /// Read from the input; with `report_stalls`, a pipe with no data for [`STALL_WAIT`]
    /// gives `WouldBlock` (and sets the stall flag) instead of waiting.
    fn read_input(&mut self, buf: &mut [u8], report_stalls: bool) -> io::Result<usize> {
        let pipe = match &mut self.input {
            Input::File(file) => return read_file(file, buf, &self.error),
            Input::Pipe(pipe) => pipe,
        };
        loop {
            if let Some(n) = pipe.take(buf) {
                return Ok(n);
            }
            if pipe.done {
                return Ok(0);
            }
            let next = if report_stalls {
                match pipe.chunks.recv_timeout(STALL_WAIT) {
                    Ok(chunk) => Some(chunk),
                    Err(RecvTimeoutError::Timeout) => {
                        self.stalls.stalled.store(true, Ordering::Relaxed);
                        return Err(io::Error::from(io::ErrorKind::WouldBlock));
                    }
                    Err(RecvTimeoutError::Disconnected) => None,
                }
            } else {
                pipe.chunks.recv().ok()
            };
            match next {
                Some(Ok(chunk)) => {
                    pipe.chunk = chunk;
                    pipe.at = 0;
                }
                Some(Err(e)) => {
                    pipe.done = true;
                    return Err(keep_error(e, &self.error));
                }
                // The helper thread ended: end of input.
                None => pipe.done = true,
            }
        }
    }
}

/// Read a regular file, retrying `Interrupted`.
fn read_file(
    file: &mut File,
    buf: &mut [u8],
    error: &Mutex<Option<io::Error>>,
) -> io::Result<usize> {
    loop {
        match file.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(keep_error(e, error)),
            ok => return ok,
        }
    }
}

/// Keep the real error for the caller (pcap-parser flattens it); return its kind.
fn keep_error(e: io::Error, slot: &Mutex<Option<io::Error>>) -> io::Error {
    let kind = e.kind();
    if let Ok(mut slot) = slot.lock() {
        *slot = Some(e);
    }
    io::Error::from(kind)
}

/// How many bytes the readers' first read must hold to parse the file header: 24 for
/// legacy pcap; for pcapng, the whole section header block (its length follows the
/// byte-order magic). Keeps the first read of a pipe from waiting for a full buffer.
fn header_bytes_needed(start: &[u8]) -> usize {
    if start.get(..4) != Some(&[0x0a, 0x0d, 0x0d, 0x0a][..]) {
        return 24;
    }
    let Some(b) = start.get(4..12) else {
        return 12;
    };
    let len = [b[0], b[1], b[2], b[3]];
    let len = match [b[4], b[5], b[6], b[7]] {
        [0x1a, 0x2b, 0x3c, 0x4d] => u32::from_be_bytes(len),
        _ => u32::from_le_bytes(len),
    };
    (len as usize).clamp(12, MAX_RECORD_SIZE)
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

/// Interfaces a pcapng file may describe (over all its sections): each costs memory for
/// the whole read, so a file of nothing but interface blocks must not grow it unbounded.
pub const MAX_INTERFACES: usize = 1 << 16;

/// Converts `units` (at `units_per_sec`) plus an offset in seconds to Unix nanoseconds,
/// saturating instead of overflowing.
#[cfg(test)]
fn ts_to_ns(units: u64, p: TsParams) -> u64 {
    ts_to_ns_clamped(units, p).0
}

/// [`ts_to_ns`], plus whether the time was out of range (before 1970 or after 2554) and
/// clamped to 0 or `u64::MAX`.
fn ts_to_ns_clamped(units: u64, p: TsParams) -> (u64, bool) {
    if p.offset_secs == 0 {
        if p.units_per_sec == 1_000_000 {
            return match units.checked_mul(1_000) {
                Some(ns) => (ns, false),
                None => (u64::MAX, true),
            };
        }
        if p.units_per_sec == 1_000_000_000 {
            return (units, false);
        }
    }
    let per = u128::from(p.units_per_sec.max(1));
    let units = u128::from(units);
    let secs = (units / per) as i128 + i128::from(p.offset_secs);
    let frac_ns = (units % per) * 1_000_000_000 / per;
    let total = secs * 1_000_000_000 + frac_ns as i128;
    match u64::try_from(total) {
        Ok(ns) => (ns, false),
        Err(_) if total < 0 => (0, true),
        Err(_) => (u64::MAX, true),
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

/// Timestamp units per second for an `if_tsresol` value: `10^-n` seconds when the top bit
/// is clear, `2^-n` when it is set. `None` when the unit is finer than what fits a `u64`.
fn units_per_sec(tsresol: u8) -> Option<u64> {
    let n = u32::from(tsresol & 0x7f);
    if tsresol & 0x80 == 0 {
        10u64.checked_pow(n)
    } else {
        1u64.checked_shl(n).filter(|_| n < 64)
    }
}

fn describe_magic(bytes: &[u8]) -> String {
    let hex: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("unknown magic number {}", hex.join(" "))
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
        let source = Source {
            input,
            prefix: magic,
            prefix_left: magic.len(),
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
        let ng = PcapNGReader::new(buffer_size, source)
            .map_err(|e| Self::header_error(path, &io_error, &e, "pcapng"))?;
        let mut reader = FileReader {
            path: path.to_path_buf(),
            format,
            state: State::Ng(NgState {
                reader: ng,
                big_endian: false,
                section_base: 0,
                last_ts: 0,
                warned_tsresol: false,
                warned_range: false,
            }),
            interfaces: Vec::new(),
            ts_params: Vec::new(),
            offset: 0,
            packets: 0,
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
            other => format!("invalid {what} file header: {other}"),
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
            ts_params: vec![TsParams {
                units_per_sec: if nanos { 1_000_000_000 } else { 1_000_000 },
                offset_secs: 0,
            }],
            offset: consumed as u64,
            packets: 0,
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
            ts_params,
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
            ts_params,
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
                ts_params,
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
                ts_params,
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
            data: data
                .get(loc.start..loc.start + loc.caplen)
                .unwrap_or_default(),
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

    /// The file's container format.
    pub fn format(&self) -> FileFormat {
        self.format
    }

    /// Interfaces described so far (all of them once the file has been read; a pcapng
    /// file may describe more interfaces later, in new sections).
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

/// The parts of a [`FileReader`] the locate functions need besides the format state.
struct Ctx<'a> {
    path: &'a Path,
    offset: &'a mut u64,
    packets: u64,
    interfaces: &'a mut Vec<InterfaceInfo>,
    ts_params: &'a mut Vec<TsParams>,
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

fn legacy_locate(l: &mut LegacyState, ctx: &mut Ctx<'_>) -> Result<Option<Located>, CaptureError> {
    let hdr = l.record_header_len;
    match ctx.fill(&mut l.reader, hdr)? {
        Fill::Ready => {}
        Fill::Short(0) => return Ok(None),
        Fill::Short(n) => {
            return Err(ctx.damaged(format!(
                "record header cut short: the file ends {n} byte(s) into a {hdr}-byte record header"
            )))
        }
    }
    let d = l.reader.data();
    let ts_sec = u32_at(d, 0, l.big_endian);
    let ts_frac = u32_at(d, 4, l.big_endian);
    let mut caplen = u32_at(d, 8, l.big_endian);
    let mut origlen = u32_at(d, 12, l.big_endian);
    let swap = match l.lengths {
        Lengths::Normal => false,
        Lengths::Swapped => true,
        Lengths::MaybeSwapped => caplen > origlen,
    };
    if swap {
        std::mem::swap(&mut caplen, &mut origlen);
    }
    if caplen as usize > l.max_caplen {
        return Err(ctx.damaged(format!(
            "invalid packet capture length {caplen}, bigger than the snapshot length {} \
             (and than {})",
            l.snaplen, l.max_caplen
        )));
    }
    let total = hdr + caplen as usize;
    match ctx.fill(&mut l.reader, total)? {
        Fill::Ready => {}
        Fill::Short(n) => {
            return Err(ctx.damaged(format!(
                "last record cut short: it needs {total} bytes (caplen {caplen}), the file has \
                 only {n} left"
            )))
        }
    }
    let frac_ns = if l.nanos {
        u64::from(ts_frac)
    } else {
        u64::from(ts_frac) * 1_000
    };
    Ok(Some(Located {
        start: hdr,
        caplen: caplen as usize,
        record_len: total,
        timestamp_ns: u64::from(ts_sec) * 1_000_000_000 + frac_ns,
        link_type: l.link_type,
        interface_index: 0,
        original_len: origlen,
    }))
}

/// Processes pcapng blocks until a packet block is at the front of the buffer and returns
/// where its packet lies. With `stop_before_packet`, returns `Ok(None)` as soon as a packet
/// block is at the front without decoding it (used to read the headers at open time).
fn ng_locate(
    ng: &mut NgState,
    ctx: &mut Ctx<'_>,
    stop_before_packet: bool,
) -> Result<Option<Located>, CaptureError> {
    loop {
        match ctx.fill(&mut ng.reader, 8)? {
            Fill::Ready => {}
            Fill::Short(0) => return Ok(None),
            Fill::Short(n) => {
                return Err(ctx.damaged(format!(
                    "block header cut short: the file ends {n} byte(s) into an 8-byte block header"
                )))
            }
        }
        let first = {
            let d = ng.reader.data();
            [d[0], d[1], d[2], d[3]]
        };
        let (big_endian, block_type) = if u32::from_le_bytes(first) == SHB_TYPE {
            match ctx.fill(&mut ng.reader, 12)? {
                Fill::Ready => {}
                Fill::Short(_) => {
                    return Err(ctx.damaged("section header block cut short".into()));
                }
            }
            let d = ng.reader.data();
            match [d[8], d[9], d[10], d[11]] {
                [0x4d, 0x3c, 0x2b, 0x1a] => (false, SHB_TYPE),
                [0x1a, 0x2b, 0x3c, 0x4d] => (true, SHB_TYPE),
                other => {
                    return Err(ctx.damaged(format!(
                        "section header with an invalid byte-order magic {}",
                        describe_magic(&other)
                    )))
                }
            }
        } else {
            let bt = if ng.big_endian {
                u32::from_be_bytes(first)
            } else {
                u32::from_le_bytes(first)
            };
            (ng.big_endian, bt)
        };
        if stop_before_packet && matches!(block_type, EPB_TYPE | SPB_TYPE | OBSOLETE_PB_TYPE) {
            return Ok(None);
        }
        let block_len = u32_at(ng.reader.data(), 4, big_endian) as usize;
        if !(12..=MAX_RECORD_SIZE).contains(&block_len) {
            return Err(ctx.damaged(format!(
                "block of type {block_type:#x} has an implausible length {block_len}"
            )));
        }
        match ctx.fill(&mut ng.reader, block_len)? {
            Fill::Ready => {}
            Fill::Short(n) => {
                return Err(ctx.damaged(format!(
                    "last block (type {block_type:#x}) cut short: it needs {block_len} bytes, \
                     the file has only {n} left"
                )))
            }
        }
        let block = &ng.reader.data()[..block_len];
        let trailer = u32_at(block, block_len - 4, big_endian) as usize;
        if trailer != block_len {
            return Err(ctx.damaged(format!(
                "block of type {block_type:#x}: leading length {block_len} and trailing length \
                 {trailer} differ"
            )));
        }
        let body = &block[8..block_len - 4];
        match block_type {
            SHB_TYPE => {
                if let Err(e) = parse_sectionheaderblock(block) {
                    return Err(ctx.damaged(format!("invalid section header block: {e}")));
                }
                ng.big_endian = big_endian;
                ng.section_base = ctx.interfaces.len();
            }
            IDB_TYPE => {
                let parsed = if big_endian {
                    parse_block_be(block)
                } else {
                    parse_block_le(block)
                };
                let idb = match parsed {
                    Ok((_, Block::InterfaceDescription(idb))) => idb,
                    Ok(_) => return Err(ctx.damaged("unexpected interface block".into())),
                    Err(e) => {
                        return Err(ctx.damaged(format!("invalid interface description block: {e}")))
                    }
                };
                // pcap-parser 0.17's `ts_resolution()` rejects every power-of-two
                // resolution and its `if_tsoffset` ignores the section's byte order, so
                // both are decoded here from the raw options.
                if ctx.interfaces.len() >= MAX_INTERFACES {
                    return Err(
                        ctx.damaged(format!("more than {MAX_INTERFACES} interface descriptions"))
                    );
                }
                let units_per_sec = match units_per_sec(idb.if_tsresol) {
                    Some(r) => r,
                    None => {
                        if !ng.warned_tsresol {
                            ng.warned_tsresol = true;
                            tracing::warn!(
                                path = %ctx.path.display(),
                                if_tsresol = idb.if_tsresol,
                                "unusable if_tsresol; assuming microseconds (logged once \
                                 per file)"
                            );
                        }
                        1_000_000
                    }
                };
                let offset_secs = idb
                    .options
                    .iter()
                    .find(|o| o.code == OptionCode::IfTsoffset)
                    .and_then(|o| o.value.get(..8))
                    .map(|v| {
                        let b = [v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]];
                        if big_endian {
                            i64::from_be_bytes(b)
                        } else {
                            i64::from_le_bytes(b)
                        }
                    })
                    .unwrap_or(0);
                let name = match idb.if_name() {
                    Some(Ok(name)) => name.to_owned(),
                    _ => String::new(),
                };
                ctx.interfaces.push(InterfaceInfo {
                    name,
                    link_type: linktype_to_dlt(u32::from(idb.linktype.0 as u16)),
                    snaplen: idb.snaplen,
                });
                ctx.ts_params.push(TsParams {
                    units_per_sec,
                    offset_secs,
                });
            }
            EPB_TYPE | OBSOLETE_PB_TYPE => {
                if body.len() < 20 {
                    return Err(ctx.damaged(format!(
                        "packet block of {block_len} bytes is too short for its header"
                    )));
                }
                let if_id = if block_type == EPB_TYPE {
                    u32_at(body, 0, big_endian)
                } else {
                    u32::from(u16_at(body, 0, big_endian))
                };
                let ts_high = u32_at(body, 4, big_endian);
                let ts_low = u32_at(body, 8, big_endian);
                let caplen = u32_at(body, 12, big_endian);
                let origlen = u32_at(body, 16, big_endian);
                if caplen as usize > body.len() - 20 {
                    return Err(ctx.damaged(format!(
                        "packet length {caplen} does not fit in its {block_len}-byte block"
                    )));
                }
                let index = ng.section_base + if_id as usize;
                let Some(params) = ctx.ts_params.get(index).copied() else {
                    return Err(ctx.damaged(format!(
                        "packet refers to interface {if_id}, but its section describes only {}",
                        ctx.interfaces.len() - ng.section_base
                    )));
                };
                let units = (u64::from(ts_high) << 32) | u64::from(ts_low);
                let (timestamp_ns, clamped) = ts_to_ns_clamped(units, params);
                if clamped && !ng.warned_range {
                    ng.warned_range = true;
                    tracing::warn!(
                        path = %ctx.path.display(),
                        packet = ctx.packets + 1,
                        "packet time out of range (before 1970 or after 2554): clamped \
                         (logged once per file)"
                    );
                }
                ng.last_ts = timestamp_ns;
                return Ok(Some(Located {
                    start: 28,
                    caplen: caplen as usize,
                    record_len: block_len,
                    timestamp_ns,
                    link_type: ctx.interfaces[index].link_type,
                    interface_index: index as u32,
                    original_len: origlen,
                }));
            }
            SPB_TYPE => {
                if body.len() < 4 {
                    return Err(ctx.damaged("simple packet block too short".into()));
                }
                let index = ng.section_base;
                let Some(iface) = ctx.interfaces.get(index) else {
                    return Err(
                        ctx.damaged("simple packet block in a section without an interface".into())
                    );
                };
                let origlen = u32_at(body, 0, big_endian);
                let mut caplen = (origlen as usize).min(body.len() - 4);
                if iface.snaplen > 0 {
                    caplen = caplen.min(iface.snaplen as usize);
                }
                return Ok(Some(Located {
                    start: 12,
                    caplen,
                    record_len: block_len,
                    timestamp_ns: ng.last_ts,
                    link_type: iface.link_type,
                    interface_index: index as u32,
                    original_len: origlen,
                }));
            }
            _ => {}
        }
        ng.reader.consume_noshift(block_len);
        *ctx.offset += block_len as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A temporary file under the system temp dir, removed on drop.
    struct TempFile(PathBuf);
    impl TempFile {
        fn new(name: &str, bytes: &[u8]) -> TempFile {
            let path =
                std::env::temp_dir().join(format!("capture-unit-{}-{name}", std::process::id()));
            let mut f = File::create(&path).expect("create temp file");
            f.write_all(bytes).expect("write temp file");
            TempFile(path)
        }
    }
    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn pcap_header(magic: u32, big_endian: bool, snaplen: u32, dlt: u32) -> Vec<u8> {
        let mut v = Vec::new();
        let w32 = |v: &mut Vec<u8>, x: u32| {
            v.extend_from_slice(&if big_endian {
                x.to_be_bytes()
            } else {
                x.to_le_bytes()
            })
        };
        w32(&mut v, magic);
        let w16 = |v: &mut Vec<u8>, x: u16| {
            v.extend_from_slice(&if big_endian {
                x.to_be_bytes()
            } else {
                x.to_le_bytes()
            })
        };
        w16(&mut v, 2);
        w16(&mut v, 4);
        w32(&mut v, 0);
        w32(&mut v, 0);
        w32(&mut v, snaplen);
        w32(&mut v, dlt);
        v
    }

    fn pcap_record(v: &mut Vec<u8>, big_endian: bool, sec: u32, frac: u32, data: &[u8], orig: u32) {
        for x in [sec, frac, data.len() as u32, orig] {
            v.extend_from_slice(&if big_endian {
                x.to_be_bytes()
            } else {
                x.to_le_bytes()
            });
        }
        v.extend_from_slice(data);
    }

    fn read_all(r: &mut FileReader) -> (Vec<OwnedPkt>, Option<CaptureError>) {
        let mut out = Vec::new();
        loop {
            match r.next_packet() {
                Ok(Some(p)) => out.push(OwnedPkt {
                    ts: p.timestamp_ns,
                    dlt: p.link_type,
                    ifx: p.interface_index,
                    orig: p.original_len,
                    data: p.data.to_vec(),
                }),
                Ok(None) => return (out, None),
                Err(e) => return (out, Some(e)),
            }
        }
    }

    #[derive(Debug, PartialEq)]
    struct OwnedPkt {
        ts: u64,
        dlt: u32,
        ifx: u32,
        orig: u32,
        data: Vec<u8>,
    }

    #[test]
    fn legacy_le_be_us_ns() {
        for (magic, be, nanos) in [
            (0xa1b2c3d4u32, false, false),
            (0xa1b2c3d4, true, false),
            (0xa1b23c4d, false, true),
            (0xa1b23c4d, true, true),
        ] {
            let mut v = pcap_header(magic, be, 65535, 1);
            pcap_record(&mut v, be, 10, 500, b"abcdef", 60);
            pcap_record(&mut v, be, 11, 7, b"xyz", 3);
            let f = TempFile::new(&format!("legacy-{be}-{nanos}.pcap"), &v);
            let mut r = FileReader::open(&f.0).expect("open");
            assert_eq!(
                r.format(),
                if nanos {
                    FileFormat::NsecPcap
                } else {
                    FileFormat::Pcap
                }
            );
            let (pkts, err) = read_all(&mut r);
            assert!(err.is_none(), "{err:?}");
            let mul = if nanos { 1 } else { 1000 };
            assert_eq!(pkts.len(), 2);
            assert_eq!(pkts[0].ts, 10_000_000_000 + 500 * mul);
            assert_eq!(pkts[0].data, b"abcdef");
            assert_eq!(pkts[0].orig, 60);
            assert_eq!(pkts[0].dlt, 1);
            assert_eq!(pkts[1].ts, 11_000_000_000 + 7 * mul);
            assert_eq!(pkts[1].data, b"xyz");
            assert_eq!(r.packets_read(), 2);
            // fused
            assert!(r.next_packet().expect("fused").is_none());
        }
    }

    #[test]
    fn small_buffer_and_growth() {
        // Records larger than the initial buffer force `grow`; many records force refills.
        let mut v = pcap_header(0xa1b2c3d4, false, 262_144, 1);
        let big = vec![0x5au8; 200_000];
        for i in 0..50u32 {
            let len = if i % 10 == 3 {
                big.len()
            } else {
                (i as usize * 37) % 1500
            };
            pcap_record(&mut v, false, i, 0, &big[..len], len as u32);
        }
        let f = TempFile::new("grow.pcap", &v);
        let mut r = FileReader::open_with_buffer(&f.0, 64).expect("open");
        let (pkts, err) = read_all(&mut r);
        assert!(err.is_none(), "{err:?}");
        assert_eq!(pkts.len(), 50);
        for (i, p) in pkts.iter().enumerate() {
            let len = if i % 10 == 3 {
                big.len()
            } else {
                (i * 37) % 1500
            };
            assert_eq!(p.data.len(), len);
            assert_eq!(p.ts, i as u64 * 1_000_000_000);
        }
    }

    #[test]
    fn truncation_everywhere_is_damage_not_panic() {
        let mut v = pcap_header(0xa1b2c3d4, false, 65535, 1);
        pcap_record(&mut v, false, 1, 0, &[1u8; 100], 100);
        pcap_record(&mut v, false, 2, 0, &[2u8; 100], 100);
        let first_end = 24 + 16 + 100;
        for cut in 0..v.len() {
            let f = TempFile::new(&format!("cut-{cut}.pcap"), &v[..cut]);
            match FileReader::open(&f.0) {
                Err(CaptureError::NotCapture { .. }) => assert!(cut < 4),
                Err(CaptureError::Damaged { packets, .. }) => {
                    assert!((4..24).contains(&cut), "cut {cut}");
                    assert_eq!(packets, 0);
                }
                Err(e) => panic!("cut {cut}: unexpected {e}"),
                Ok(mut r) => {
                    let (pkts, err) = read_all(&mut r);
                    let whole = usize::from(cut >= first_end);
                    assert_eq!(pkts.len(), whole, "cut {cut}");
                    let clean = cut == 24 || cut == first_end;
                    match err {
                        None => assert!(clean, "cut {cut} should be damaged"),
                        Some(CaptureError::Damaged {
                            offset, packets, ..
                        }) => {
                            assert!(!clean, "cut {cut}");
                            assert_eq!(packets, whole as u64);
                            assert_eq!(offset, if whole == 1 { first_end as u64 } else { 24 });
                        }
                        Some(e) => panic!("cut {cut}: unexpected {e}"),
                    }
                }
            }
        }
    }

    #[test]
    fn reads_from_a_pipe() {
        let mut v = pcap_header(0xa1b2c3d4, false, 65535, 1);
        for i in 0..1000u32 {
            pcap_record(&mut v, false, i, 0, &[i as u8; 300], 300);
        }
        let fifo = std::env::temp_dir().join(format!("capture-unit-{}-fifo", std::process::id()));
        let _ = std::fs::remove_file(&fifo);
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if !matches!(made, Ok(s) if s.success()) {
            return; // no mkfifo: nothing to test here
        }
        let path = fifo.clone();
        let writer = std::thread::spawn(move || {
            let mut f = File::create(&path).expect("open fifo for writing");
            // Small writes, so the reader sees short reads.
            for chunk in v.chunks(1000) {
                f.write_all(chunk).expect("write fifo");
            }
        });
        let mut r = FileReader::open(&fifo).expect("open fifo");
        let (pkts, err) = read_all(&mut r);
        writer.join().expect("writer");
        let _ = std::fs::remove_file(&fifo);
        assert!(err.is_none(), "{err:?}");
        assert_eq!(pkts.len(), 1000);
        assert!(pkts
            .iter()
            .enumerate()
            .all(|(i, p)| p.data == [i as u8; 300]));
    }

    #[test]
    fn bogus_caplen_is_damage() {
        let mut v = pcap_header(0xa1b2c3d4, false, 65535, 1);
        pcap_record(&mut v, false, 1, 0, &[1u8; 10], 10);
        for x in [1u32, 0, 4_325_376, 4_325_376] {
            v.extend_from_slice(&x.to_le_bytes());
        }
        v.extend_from_slice(&[0u8; 64]);
        let f = TempFile::new("bogus.pcap", &v);
        let mut r = FileReader::open(&f.0).expect("open");
        let (pkts, err) = read_all(&mut r);
        assert_eq!(pkts.len(), 1);
        let err = err.expect("damage");
        let msg = err.to_string();
        assert!(msg.contains("4325376"), "{msg}");
        assert!(msg.contains("bogus.pcap"), "{msg}");
    }

    #[test]
    fn not_capture_and_empty() {
        let f = TempFile::new("text.pcap", b"hello world, not a capture");
        let e = FileReader::open(&f.0).expect_err("must fail");
        let msg = e.to_string();
        assert!(matches!(e, CaptureError::NotCapture { .. }));
        assert!(
            msg.contains("text.pcap") && msg.contains("not a pcap or pcapng"),
            "{msg}"
        );
        let f = TempFile::new("empty.pcap", b"");
        let e = FileReader::open(&f.0).expect_err("must fail");
        assert!(e.to_string().contains("empty file"), "{e}");
        let e = FileReader::open(Path::new("/nonexistent/nd-capture.pcap")).expect_err("fail");
        assert!(matches!(e, CaptureError::Io { .. }), "{e}");
        assert!(e.to_string().contains("/nonexistent/nd-capture.pcap"));
    }

    // ---- pcapng builders ----

    fn ng_block(v: &mut Vec<u8>, be: bool, block_type: u32, body: &[u8]) {
        let w = |x: u32| if be { x.to_be_bytes() } else { x.to_le_bytes() };
        let padded = body.len().div_ceil(4) * 4;
        let len = (12 + padded) as u32;
        v.extend_from_slice(&w(block_type));
        v.extend_from_slice(&w(len));
        v.extend_from_slice(body);
        v.extend(std::iter::repeat_n(0u8, padded - body.len()));
        v.extend_from_slice(&w(len));
    }

    fn shb(v: &mut Vec<u8>, be: bool) {
        let mut body = Vec::new();
        let w32 = |x: u32| if be { x.to_be_bytes() } else { x.to_le_bytes() };
        body.extend_from_slice(&w32(0x1A2B_3C4D));
        body.extend_from_slice(
            &(if be {
                1u16.to_be_bytes()
            } else {
                1u16.to_le_bytes()
            }),
        );
        body.extend_from_slice(
            &(if be {
                0u16.to_be_bytes()
            } else {
                0u16.to_le_bytes()
            }),
        );
        body.extend_from_slice(&(-1i64).to_le_bytes());
        ng_block(v, be, SHB_TYPE, &body);
    }

    fn idb(
        v: &mut Vec<u8>,
        be: bool,
        dlt: u16,
        snaplen: u32,
        tsresol: Option<u8>,
        name: &str,
        tsoffset: i64,
    ) {
        let w16 = |x: u16| if be { x.to_be_bytes() } else { x.to_le_bytes() };
        let w32 = |x: u32| if be { x.to_be_bytes() } else { x.to_le_bytes() };
        let mut body = Vec::new();
        body.extend_from_slice(&w16(dlt));
        body.extend_from_slice(&w16(0));
        body.extend_from_slice(&w32(snaplen));
        let mut opt = |code: u16, val: &[u8]| {
            body.extend_from_slice(&w16(code));
            body.extend_from_slice(&w16(val.len() as u16));
            body.extend_from_slice(val);
            body.extend(std::iter::repeat_n(
                0u8,
                val.len().div_ceil(4) * 4 - val.len(),
            ));
        };
        if !name.is_empty() {
            opt(2, name.as_bytes());
        }
        if let Some(r) = tsresol {
            opt(9, &[r]);
        }
        if tsoffset != 0 {
            opt(
                14,
                &(if be {
                    tsoffset.to_be_bytes()
                } else {
                    tsoffset.to_le_bytes()
                }),
            );
        }
        opt(0, &[]);
        ng_block(v, be, IDB_TYPE, &body);
    }

    fn epb(v: &mut Vec<u8>, be: bool, if_id: u32, ts: u64, data: &[u8], orig: u32) {
        let w32 = |x: u32| if be { x.to_be_bytes() } else { x.to_le_bytes() };
        let mut body = Vec::new();
        for x in [if_id, (ts >> 32) as u32, ts as u32, data.len() as u32, orig] {
            body.extend_from_slice(&w32(x));
        }
        body.extend_from_slice(data);
        body.extend(std::iter::repeat_n(
            0u8,
            data.len().div_ceil(4) * 4 - data.len(),
        ));
        ng_block(v, be, EPB_TYPE, &body);
    }

    #[test]
    fn pcapng_sections_interfaces_resolutions() {
        let mut v = Vec::new();
        // Section 1, little-endian: eth (µs default) and raw IP at ns resolution.
        shb(&mut v, false);
        idb(&mut v, false, 1, 65535, None, "eth0", 0);
        idb(&mut v, false, 101, 8192, Some(9), "tun0", 0);
        epb(&mut v, false, 0, 1_500_000, b"first", 100);
        ng_block(&mut v, false, 4, &[0u8; 8]); // name resolution block: skipped
        epb(&mut v, false, 1, 2_000_000_123, b"second!", 7);
        // Simple packet block on interface 0 (no timestamp: previous one is reused).
        let mut spb = 3u32.to_le_bytes().to_vec();
        spb.extend_from_slice(b"spb");
        ng_block(&mut v, false, SPB_TYPE, &spb);
        // Section 2, big-endian: SLL with 2^-10 resolution.
        shb(&mut v, true);
        idb(&mut v, true, 113, 0, Some(0x80 | 10), "", 100);
        epb(&mut v, true, 0, 3 * 1024 + 512, b"third", 5);
        // Obsolete packet block in section 2.
        let mut pb = Vec::new();
        pb.extend_from_slice(&0u16.to_be_bytes());
        pb.extend_from_slice(&0u16.to_be_bytes());
        for x in [0u32, 1024, 2, 2] {
            pb.extend_from_slice(&x.to_be_bytes());
        }
        pb.extend_from_slice(b"pb\0\0");
        ng_block(&mut v, true, OBSOLETE_PB_TYPE, &pb);

        let f = TempFile::new("multi.pcapng", &v);
        let mut r = FileReader::open(&f.0).expect("open");
        assert_eq!(r.format(), FileFormat::PcapNg);
        let (pkts, err) = read_all(&mut r);
        assert!(err.is_none(), "{err:?}");
        let want = vec![
            OwnedPkt {
                ts: 1_500_000_000,
                dlt: 1,
                ifx: 0,
                orig: 100,
                data: b"first".to_vec(),
            },
            OwnedPkt {
                ts: 2_000_000_123,
                dlt: 12,
                ifx: 1,
                orig: 7,
                data: b"second!".to_vec(),
            },
            OwnedPkt {
                ts: 2_000_000_123,
                dlt: 1,
                ifx: 0,
                orig: 3,
                data: b"spb".to_vec(),
            },
            OwnedPkt {
                ts: 103_500_000_000,
                dlt: 113,
                ifx: 2,
                orig: 5,
                data: b"third".to_vec(),
            },
            OwnedPkt {
                ts: 101_000_000_000,
                dlt: 113,
                ifx: 2,
                orig: 2,
                data: b"pb".to_vec(),
            },
        ];
        assert_eq!(pkts, want);
        let names: Vec<&str> = r.interfaces().iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["eth0", "tun0", ""]);
        assert_eq!(r.interfaces()[1].snaplen, 8192);
        assert_eq!(r.byte_offset(), v.len() as u64);

        // Every truncation point: packets before the cut, then damage or a clean end.
        for cut in 4..v.len() {
            let f = TempFile::new(&format!("ngcut-{cut}.pcapng"), &v[..cut]);
            if let Ok(mut r) = FileReader::open(&f.0) {
                let (pkts, _err) = read_all(&mut r);
                assert!(pkts.len() <= want.len());
                assert_eq!(pkts[..], want[..pkts.len()], "cut {cut}");
            }
        }
    }

    #[test]
    fn pcapng_bad_interface_and_bad_lengths() {
        let mut v = Vec::new();
        shb(&mut v, false);
        idb(&mut v, false, 1, 65535, None, "", 0);
        epb(&mut v, false, 0, 1, b"ok", 2);
        epb(&mut v, false, 5, 1, b"bad", 3);
        let f = TempFile::new("badif.pcapng", &v);
        let mut r = FileReader::open(&f.0).expect("open");
        let (pkts, err) = read_all(&mut r);
        assert_eq!(pkts.len(), 1);
        let msg = err.expect("damage").to_string();
        assert!(msg.contains("interface 5"), "{msg}");

        // Corrupt every byte of a valid file in turn: never a panic.
        let mut base = Vec::new();
        shb(&mut base, false);
        idb(&mut base, false, 1, 65535, Some(9), "x", 0);
        epb(&mut base, false, 0, 1, b"hello", 5);
        epb(&mut base, false, 0, 2, b"world", 5);
        for i in 0..base.len() {
            for val in [0x00u8, 0xff, 0x80] {
                let mut m = base.clone();
                m[i] = val;
                let f = TempFile::new(&format!("flip-{i}-{val}.pcapng"), &m);
                if let Ok(mut r) = FileReader::open(&f.0) {
                    let _ = read_all(&mut r);
                }
            }
        }
    }

    #[test]
    fn linktype_mapping() {
        assert_eq!(linktype_to_dlt(101), 12);
        assert_eq!(linktype_to_dlt(1), 1);
        assert_eq!(linktype_to_dlt(228), 228);
        // A legacy header with LINKTYPE_RAW and FCS bits set reads as DLT 12.
        let mut v = pcap_header(0xa1b2c3d4, false, 65535, 101 | 0x1000_0000);
        pcap_record(&mut v, false, 1, 0, b"\x45", 1);
        let f = TempFile::new("raw.pcap", &v);
        let mut r = FileReader::open(&f.0).expect("open");
        assert_eq!(r.next_packet().expect("ok").expect("packet").link_type, 12);
        assert_eq!(r.interfaces()[0].link_type, 12);
    }

    #[test]
    fn random_bytes_after_valid_headers_never_panic() {
        // A small deterministic generator (no extra dependency).
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut ng_head = Vec::new();
        shb(&mut ng_head, false);
        idb(&mut ng_head, false, 1, 0, None, "", 0);
        let heads = [
            pcap_header(0xa1b2c3d4, false, 65535, 1),
            pcap_header(0xa1b23c4d, true, 0, 113),
            ng_head,
        ];
        for i in 0..300 {
            let mut v = heads[i % heads.len()].clone();
            let len = (next() % 3000) as usize;
            // Mostly small values, so that lengths are often plausible.
            v.extend((0..len).map(|_| {
                let r = next();
                if r % 4 == 0 {
                    (r >> 8) as u8
                } else {
                    (r >> 8) as u8 & 0x0f
                }
            }));
            let f = TempFile::new(&format!("rand-{i}"), &v);
            if let Ok(mut r) = FileReader::open(&f.0) {
                let mut n = 0;
                while let Ok(Some(p)) = r.next_packet() {
                    assert!(p.data.len() <= v.len());
                    n += 1;
                }
                assert_eq!(r.packets_read(), n);
            }
        }
    }

    #[test]
    fn timestamp_conversion() {
        let p = |u, o| TsParams {
            units_per_sec: u,
            offset_secs: o,
        };
        assert_eq!(ts_to_ns(1_500_000, p(1_000_000, 0)), 1_500_000_000);
        assert_eq!(ts_to_ns(7, p(1_000_000_000, 0)), 7);
        assert_eq!(ts_to_ns(15, p(10, 0)), 1_500_000_000);
        assert_eq!(ts_to_ns(1, p(1_000_000, 10)), 10_000_001_000);
        assert_eq!(ts_to_ns(5_000_000, p(1_000_000, -100)), 0);
        assert_eq!(ts_to_ns(u64::MAX, p(1, 0)), u64::MAX);
        assert_eq!(ts_to_ns(512, p(1024, 0)), 500_000_000);
        assert_eq!(units_per_sec(6), Some(1_000_000));
        assert_eq!(units_per_sec(9), Some(1_000_000_000));
        assert_eq!(units_per_sec(0x80 | 10), Some(1024));
        assert_eq!(units_per_sec(0x80 | 63), Some(1 << 63));
        assert_eq!(units_per_sec(0x80 | 64), None);
        assert_eq!(units_per_sec(20), None);
    }

    #[test]
    fn swapped_lengths_of_old_pcap_versions() {
        // Version 2.2 header: libpcap reads caplen and len swapped.
        let mut v = pcap_header(0xa1b2c3d4, false, 65535, 1);
        v[6] = 2; // version_minor = 2
        for x in [1u32, 0, 1500, 4] {
            // "caplen" 1500 is really len, "len" 4 is really caplen
            v.extend_from_slice(&x.to_le_bytes());
        }
        v.extend_from_slice(b"abcd");
        let f = TempFile::new("swapped.pcap", &v);
        let mut r = FileReader::open(&f.0).expect("open");
        let (pkts, err) = read_all(&mut r);
        assert!(err.is_none(), "{err:?}");
        assert_eq!(pkts.len(), 1);
        assert_eq!(
            (pkts[0].data.as_slice(), pkts[0].orig),
            (&b"abcd"[..], 1500)
        );
    }
}
