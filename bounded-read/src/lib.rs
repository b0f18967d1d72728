//! Reading a whole file someone else may have put there (a token, a certificate, a key, an
//! auth table, a NATS credentials file, a chef signature, a chef component): regular files
//! only, without blocking, at most a given number of bytes.
//!
//! Why not `std::fs::read` after a `metadata().len()` check: the size a path reports is 0
//! for `/dev/zero` and `/proc` files, which are then read forever (`--token-file
//! /dev/zero` took 10 GB), and opening a FIFO with no writer blocks for good.

use std::io::Read as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Read the regular file at `path` whole, if it holds at most `limit` bytes. It is opened
/// non-blocking (a FIFO with no writer does not hang the open), refused unless the opened
/// handle is a regular file (a FIFO, device or directory), and read through a
/// `limit + 1`-byte window, whatever its size says.
pub fn read_bounded(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other(
            "not a regular file (a FIFO, device or directory)",
        ));
    }
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(std::io::Error::other(format!(
            "larger than the {limit}-byte limit"
        )));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_within_the_limit_are_read_and_nothing_blocks() {
        let dir = std::env::temp_dir().join(format!("bounded-read-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let small = dir.join("token");
        std::fs::write(&small, "abc\n").unwrap();
        assert_eq!(read_bounded(&small, 16).unwrap(), b"abc\n");
        assert_eq!(read_bounded(&small, 4).unwrap(), b"abc\n");
        let error = read_bounded(&small, 3).unwrap_err().to_string();
        assert!(error.contains("3-byte limit"), "{error}");
        // Their size says 0; read whole they never end, or block.
        let zero = read_bounded(Path::new("/dev/zero"), 1 << 20).unwrap_err();
        assert!(zero.to_string().contains("not a regular file"), "{zero}");
        let fifo = dir.join("fifo");
        let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path; mkfifo only creates a file.
        #[allow(unsafe_code)]
        let made = unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) };
        assert_eq!(made, 0);
        let error = read_bounded(&fifo, 16).unwrap_err().to_string();
        assert!(error.contains("not a regular file"), "{error}");
        assert!(read_bounded(&dir, 16).is_err());
        assert!(read_bounded(&dir.join("missing"), 16).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
