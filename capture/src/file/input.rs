//! Where a capture's bytes come from: a regular file read directly, or a pipe, FIFO,
//! socket or device read on a helper thread so a reader can notice a stalled writer.

use std::fs::File;
use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::MAX_RECORD_SIZE;

/// `File` wrapper that retries `Interrupted` and keeps the real I/O error, which
/// `pcap-parser` would otherwise flatten to `PcapError::ReadError`. It first replays the
/// magic number that `open` read (after, for pcapng, a stand-in section header, see
/// [`super::pcapng::STAND_IN_SHB`]), so the file is never seeked and a pipe works too.
pub(super) struct Source {
    pub(super) input: Input,
    /// Bytes returned before the input's: `prefix[..prefix_len]`.
    pub(super) prefix: [u8; PREFIX_MAX],
    pub(super) prefix_len: usize,
    pub(super) prefix_left: usize,
    pub(super) error: Arc<Mutex<Option<io::Error>>>,
    pub(super) stalls: Arc<Stalls>,
}

/// Where the bytes come from.
pub(super) enum Input {
    /// A regular file: read directly (it never stalls).
    File(File),
    /// A FIFO, pipe, socket or device: read on a helper thread (see [`PipeInput`]).
    Pipe(PipeInput),
}

/// A non-regular input read by a helper thread into chunks, so the reader can notice that
/// no data is coming (a stalled writer) instead of blocking in `read` with packets it
/// could already hand on: see [`FileReader::report_stalls`].
pub(super) struct PipeInput {
    pub(super) chunks: Receiver<io::Result<Vec<u8>>>,
    pub(super) chunk: Vec<u8>,
    pub(super) at: usize,
    pub(super) done: bool,
}

/// Room for the longest prefix a [`Source`] replays (stand-in header plus magic).
pub(super) const PREFIX_MAX: usize = 32;

/// Bytes per helper-thread read of a pipe (a Linux pipe holds 64 KiB).
pub(super) const PIPE_CHUNK: usize = 64 * 1024;

/// Chunks the helper thread may read ahead.
pub(super) const PIPE_CHUNKS_AHEAD: usize = 16;

/// How long a read waits for a pipe before it reports a stall (when asked to).
pub const STALL_WAIT: Duration = Duration::from_millis(5);

/// Stall reporting, shared by a [`FileReader`] and its `Source`.
#[derive(Default)]
pub(super) struct Stalls {
    /// Report stalls instead of waiting ([`FileReader::report_stalls`]).
    pub(super) report: AtomicBool,
    /// Set by the `Source` when its last read failed because of a stall.
    pub(super) stalled: AtomicBool,
}

impl PipeInput {
    /// Start the helper thread reading `file`.
    pub(super) fn start(mut file: File) -> io::Result<PipeInput> {
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
    pub(super) fn take(&mut self, buf: &mut [u8]) -> Option<usize> {
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
            let from = self.prefix_len - self.prefix_left;
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
    pub(super) fn read_input(&mut self, buf: &mut [u8], report_stalls: bool) -> io::Result<usize> {
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
pub(super) fn read_file(
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
pub(super) fn keep_error(e: io::Error, slot: &Mutex<Option<io::Error>>) -> io::Error {
    let kind = e.kind();
    if let Ok(mut slot) = slot.lock() {
        *slot = Some(e);
    }
    io::Error::from(kind)
}

/// How many bytes the readers' first read must hold to parse the file header: 24 for
/// legacy pcap; for pcapng, the whole section header block (its length follows the
/// byte-order magic). Keeps the first read of a pipe from waiting for a full buffer.
pub(super) fn header_bytes_needed(start: &[u8]) -> usize {
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
