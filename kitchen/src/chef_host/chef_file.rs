//! Reading a chef file without ever blocking or reading more than the budget allows.
//!
//! A chef folder is outside input: a `*.wasm` entry may be a FIFO (opening or reading it
//! blocks until a writer comes), a device, a directory, a `/proc` file whose read blocks
//! (`/proc/kmsg`), a symlink out of the folder, or a sparse multi-GB file. So:
//! 1. a symlink whose target is outside the chef folder is refused (logged with both);
//! 2. the file is opened `O_NONBLOCK | O_CLOEXEC | O_NOCTTY` (opening a FIFO or a device
//!    returns at once, no controlling terminal is acquired), and where the *opened* file
//!    lives is checked again (`/proc/self/fd`): an entry swapped for a symlink out of the
//!    folder between step 1 and the open is refused too, not run;
//! 3. `fstat` on the *opened handle* (no race with a rename) must say "regular file", and
//!    `fstatfs` must not be procfs/sysfs (their files report size 0 and may block);
//! 4. the size from that `fstat` is checked against the cap before any byte is read;
//! 5. the read itself stops at the cap (a file growing while read cannot exceed it), and
//!    a `WouldBlock` is a refusal, not a wait.

use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Default largest chef file read, in MiB (`--max-chef-file-mib`). Real chefs: 0.1-2 MB
/// for Rust, ~20-40 MB for componentized Python/JS; 64 MiB leaves room for those.
pub const DEFAULT_MAX_CHEF_FILE_MIB: u64 = 64;

/// procfs and sysfs `f_type` values (`linux/magic.h`).
const PROC_SUPER_MAGIC: i64 = 0x9fa0;
const SYSFS_MAGIC: i64 = 0x6265_6572;

/// Why a chef file was not read.
#[derive(Debug, thiserror::Error)]
pub enum ChefFileError {
    /// Not a regular file (FIFO, directory, device, socket).
    #[error("not a regular file (it is {kind}); chef files must be regular files")]
    NotRegular {
        /// What it is.
        kind: &'static str,
    },
    /// A file of a pseudo file system (`/proc`, `/sys`): its size means nothing and its
    /// read may block.
    #[error("a /proc or /sys file; chef files must be regular files on a disk")]
    PseudoFile,
    /// A symlink leaving the chef folder.
    #[error("a symlink to {target}, outside the chef folder {dir}; refused")]
    OutsideDir {
        /// Where it points (escaped).
        target: String,
        /// The chef folder (escaped).
        dir: String,
    },
    /// A symlink that leads nowhere (its target, or a link on the way, does not exist, or
    /// the links loop).
    #[error("a symlink to {target}, which {why}")]
    Dangling {
        /// Where it points (escaped).
        target: String,
        /// "does not exist" or "is a loop of symlinks".
        why: &'static str,
    },
    /// Larger than the cap (known before reading).
    #[error("{size} bytes, over the {max}-byte chef file limit (--max-chef-file-mib); not read")]
    TooBig {
        /// Its size.
        size: u64,
        /// The cap.
        max: u64,
    },
    /// The OS refused (or the read would block).
    #[error("cannot read it: {0}")]
    Io(#[from] std::io::Error),
}

/// Read the chef file `path` of the chef folder `dir` (its parent when `None`), at most
/// `max_bytes`, without blocking. See the module docs for the checks.
pub fn read_chef_file(
    dir: Option<&Path>,
    path: &Path,
    max_bytes: u64,
) -> Result<Vec<u8>, ChefFileError> {
    let link = std::fs::symlink_metadata(path)?;
    if link.file_type().is_symlink() {
        let dir = dir.or_else(|| path.parent()).unwrap_or(Path::new("."));
        check_symlink_stays_inside(dir, path)?;
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY)
        .open(path)?;
    let dir = dir.or_else(|| path.parent()).unwrap_or(Path::new("."));
    check_opened_file_inside(dir, &file)?;
    let meta = file.metadata()?;
    let ft = meta.file_type();
    if !ft.is_file() {
        return Err(ChefFileError::NotRegular {
            kind: file_kind(&ft),
        });
    }
    if is_pseudo_fs(&file) {
        return Err(ChefFileError::PseudoFile);
    }
    if meta.len() > max_bytes {
        return Err(ChefFileError::TooBig {
            size: meta.len(),
            max: max_bytes,
        });
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    // One byte more than the cap: a file that grew past it since the fstat is refused
    // rather than silently cut.
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max_bytes {
        return Err(ChefFileError::TooBig {
            size: bytes.len() as u64,
            max: max_bytes,
        });
    }
    Ok(bytes)
}

/// What a non-regular file is, for the refusal.
pub fn file_kind(ft: &std::fs::FileType) -> &'static str {
    if ft.is_dir() {
        "a directory"
    } else if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_symlink() {
        "a symlink"
    } else if ft.is_file() {
        "a regular file"
    } else {
        "not a file"
    }
}

fn check_symlink_stays_inside(dir: &Path, path: &Path) -> Result<(), ChefFileError> {
    // canonicalize resolves every link (never opens the target, so it cannot block).
    let target = std::fs::canonicalize(path).map_err(|e| {
        let why = match e.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ENOTDIR) => "does not exist",
            Some(libc::ELOOP) => "is a loop of symlinks",
            _ => return ChefFileError::Io(e),
        };
        let target = std::fs::read_link(path).unwrap_or_default();
        ChefFileError::Dangling {
            target: dumpling::text::escape_path(&target),
            why,
        }
    })?;
    ensure_inside(dir, target)
}

/// Where the opened `file` lives must be inside `dir` (the check of step 1 again, on the
/// handle: a symlink swapped in after it cannot lead out). Without `/proc` (no
/// `/proc/self/fd` link to read) only step 1 holds.
fn check_opened_file_inside(dir: &Path, file: &std::fs::File) -> Result<(), ChefFileError> {
    use std::os::fd::AsRawFd;
    match std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())) {
        Ok(opened) => ensure_inside(dir, opened),
        Err(_) => Ok(()),
    }
}

/// `target` (a resolved path) must be inside the chef folder `dir`, else
/// [`ChefFileError::OutsideDir`] naming both.
fn ensure_inside(dir: &Path, target: PathBuf) -> Result<(), ChefFileError> {
    let dir_abs = std::fs::canonicalize(dir)?;
    if target.starts_with(&dir_abs) {
        return Ok(());
    }
    Err(ChefFileError::OutsideDir {
        target: dumpling::text::escape_path(&target),
        dir: dumpling::text::escape_path(&dir_abs),
    })
}

fn is_pseudo_fs(file: &std::fs::File) -> bool {
    use std::os::fd::AsRawFd;
    let mut st = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: `fstatfs` writes one `statfs` into the buffer we own and reads nothing else;
    // the descriptor is open for the duration of the call (borrowed from `file`).
    #[allow(unsafe_code)]
    let rc = unsafe { libc::fstatfs(file.as_raw_fd(), st.as_mut_ptr()) };
    if rc != 0 {
        return false;
    }
    // SAFETY: `fstatfs` returned 0, so it initialised the struct.
    #[allow(unsafe_code)]
    let st = unsafe { st.assume_init() };
    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
    let ty = i64::from(st.f_type);
    ty == PROC_SUPER_MAGIC || ty == SYSFS_MAGIC
}

/// Log an entry named almost like a chef file (`X.WASM`, a bare `.wasm`), which is not
/// loaded: said, not skipped without a word (at start and when one is dropped in).
pub fn warn_if_lookalike(path: &Path) {
    let Some(name) = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
    else {
        return;
    };
    if !name.ends_with(".wasm") || path.extension().is_some_and(|x| x == "wasm") {
        return;
    }
    let why = if name == ".wasm" {
        "a chef file needs a name before .wasm"
    } else {
        "chef files end in .wasm, lowercase"
    };
    tracing::warn!(file = %dumpling::text::escape_path(path), "not loaded: {why}");
}

/// Every `*.wasm` entry of a chef folder, sorted, whatever its type (the caller reads each
/// with [`read_chef_file`], which refuses non-regular ones with a reason, so every
/// skipped entry is named once). Nothing is opened or stat'ed here.
pub fn list_chef_dir(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            warn_if_lookalike(p);
            p.extension().is_some_and(|x| x == "wasm")
        })
        .collect();
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("nd-chef-file-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn refuses_every_kind_of_non_regular_file_without_blocking() {
        let d = tmpdir("kinds");
        // A FIFO with no writer: a blocking open would hang this test forever.
        let fifo = d.join("fifo.wasm");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        #[allow(unsafe_code)]
        // SAFETY: a valid NUL-terminated path.
        let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
        assert_eq!(rc, 0);
        let e = read_chef_file(Some(&d), &fifo, 1 << 20).unwrap_err();
        assert!(e.to_string().contains("a FIFO"), "{e}");
        let sub = d.join("dir.wasm");
        std::fs::create_dir(&sub).unwrap();
        let e = read_chef_file(Some(&d), &sub, 1 << 20).unwrap_err();
        assert!(e.to_string().contains("a directory"), "{e}");
        let dev = d.join("null.wasm");
        std::os::unix::fs::symlink("/dev/null", &dev).unwrap();
        let e = read_chef_file(Some(&d), &dev, 1 << 20).unwrap_err();
        assert!(e.to_string().contains("outside the chef folder"), "{e}");
        let e = read_chef_file(None, Path::new("/dev/null"), 1 << 20).unwrap_err();
        assert!(e.to_string().contains("character device"), "{e}");
        let e = read_chef_file(None, Path::new("/proc/self/status"), 1 << 20).unwrap_err();
        assert!(matches!(e, ChefFileError::PseudoFile), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn an_entry_swapped_for_a_symlink_out_of_the_folder_is_never_read() {
        // Another process flips the entry between a regular file and a symlink to a file
        // outside the folder, as fast as it can: whatever moment the read lands on, the
        // outside file's bytes never come back (the check before the open alone was raced:
        // 12 of 31 loads ran the outside chef).
        let d = tmpdir("swap");
        let outside_dir = tmpdir("swap-outside");
        let outside = outside_dir.join("evil.wasm");
        std::fs::write(&outside, b"OUTSIDE").unwrap();
        let entry = d.join("x.wasm");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flipper = {
            let (d, entry, outside, stop) =
                (d.clone(), entry.clone(), outside.clone(), stop.clone());
            std::thread::spawn(move || {
                let (file_tmp, link_tmp) = (d.join("f.tmp"), d.join("l.tmp"));
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::fs::write(&file_tmp, b"INSIDE").unwrap();
                    std::fs::rename(&file_tmp, &entry).unwrap();
                    let _ = std::fs::remove_file(&link_tmp);
                    std::os::unix::fs::symlink(&outside, &link_tmp).unwrap();
                    std::fs::rename(&link_tmp, &entry).unwrap();
                }
            })
        };
        // Not before the flipper made the entry (a loaded machine may start it late: every
        // read then found nothing, and none was a read).
        let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::fs::symlink_metadata(&entry).is_err() && std::time::Instant::now() < until {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let (mut inside, mut refused) = (0, 0);
        for _ in 0..5000 {
            match read_chef_file(Some(&d), &entry, 1 << 20) {
                Ok(bytes) => {
                    assert_eq!(bytes, b"INSIDE", "the outside file was read");
                    inside += 1;
                }
                Err(_) => refused += 1,
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        flipper.join().unwrap();
        assert!(
            inside > 0 && refused > 0,
            "{inside} read, {refused} refused"
        );
        std::fs::remove_dir_all(&d).unwrap();
        std::fs::remove_dir_all(&outside_dir).unwrap();
    }

    #[test]
    fn a_sparse_huge_file_is_refused_before_reading() {
        let d = tmpdir("huge");
        let huge = d.join("huge.wasm");
        let f = std::fs::File::create(&huge).unwrap();
        f.set_len(3 << 30).unwrap(); // 3 GiB, sparse: costs no disk
        let started = std::time::Instant::now();
        let e = read_chef_file(Some(&d), &huge, 64 << 20).unwrap_err();
        assert!(
            matches!(e, ChefFileError::TooBig { size, .. } if size == 3 << 30),
            "{e}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        let small = d.join("ok.wasm");
        std::fs::write(&small, b"\0asm").unwrap();
        assert_eq!(read_chef_file(Some(&d), &small, 4).unwrap(), b"\0asm");
        assert!(read_chef_file(Some(&d), &small, 3).is_err());
        // A symlink inside the folder is fine.
        let link = d.join("link.wasm");
        std::os::unix::fs::symlink(&small, &link).unwrap();
        assert_eq!(read_chef_file(Some(&d), &link, 4).unwrap(), b"\0asm");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
