//! Reading a whole file someone else may have put there (a token, a certificate, a key, an
//! auth table, a NATS credentials file, a chef signature, a chef component): regular files
//! only, without blocking, at most a given number of bytes.
//!
//! Why not `std::fs::read` after a `metadata().len()` check: the size a path reports is 0
//! for `/dev/zero` and `/proc` files, which are then read forever (`--token-file
//! /dev/zero` took 10 GB), and opening a FIFO with no writer blocks for good.
//!
//! Also here, for files and folders whose content decides what a process trusts or runs:
//! whether another user could change them ([`writable_by_others`], [`check_private_dir`],
//! [`read_bounded_checked`]), as ssh's `StrictModes` asks of `authorized_keys`.

use std::io::Read as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Read the regular file at `path` whole, if it holds at most `limit` bytes. It is opened
/// non-blocking (a FIFO with no writer does not hang the open), refused unless the opened
/// handle is a regular file (a FIFO, device or directory), and read through a
/// `limit + 1`-byte window, whatever its size says.
pub fn read_bounded(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    read_bounded_checked(path, limit, |_| Ok(()))
}

/// Read the regular file at `path` as [`read_bounded`] does, after `check` accepted the
/// opened handle's metadata (`fstat`, so it describes the file that is read, not whatever the
/// path names a moment later): for files whose owner or mode matters ([`writable_by_others`]).
/// `check`'s error is returned as it is.
pub fn read_bounded_checked(
    path: &Path,
    limit: u64,
    check: impl FnOnce(&std::fs::Metadata) -> std::io::Result<()>,
) -> std::io::Result<Vec<u8>> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other(
            "not a regular file (a FIFO, device or directory)",
        ));
    }
    check(&meta)?;
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(std::io::Error::other(format!(
            "larger than the {limit}-byte limit"
        )));
    }
    Ok(bytes)
}

/// The effective user id of this process: the user whose files it may trust.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    #[allow(unsafe_code)]
    unsafe {
        libc::geteuid()
    }
}

/// Who may own a file or folder that this process trusts ([`writable_by_others`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owners {
    /// Only this process's effective user (what it runs from it writes itself: the
    /// compiled-chef cache).
    Me,
    /// This process's effective user or root (configuration an administrator may install,
    /// as ssh's `StrictModes` allows: trusted keys).
    MeOrRoot,
}

/// Why another user could change the file or folder `meta` describes, or `None` when only
/// `owners` can: it is owned by someone else, or writable by its group or by others. For
/// anything whose content decides what this process trusts or runs: if another user can
/// change it, that user decides.
pub fn writable_by_others(meta: &std::fs::Metadata, owners: Owners) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let (uid, me) = (meta.uid(), euid());
    let owner_ok = uid == me || (owners == Owners::MeOrRoot && uid == 0);
    if !owner_ok {
        let who = match owners {
            Owners::MeOrRoot if me != 0 => format!("this user (uid {me}) or root"),
            _ => format!("this user (uid {me})"),
        };
        return Some(format!("owned by uid {uid}, not by {who}"));
    }
    let mode = meta.mode() & 0o7777;
    (mode & 0o022 != 0).then(|| format!("writable by group or others (mode {mode:04o})"))
}

/// A folder (or one above it) that another user could change, from [`check_private_dir`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotPrivate {
    /// The folder at fault: the one checked, or one above it.
    pub path: std::path::PathBuf,
    /// Whether it is the checked folder itself (else a parent).
    pub is_target: bool,
    /// What kind of problem (what the fix is).
    pub kind: Problem,
    /// What is wrong ([`writable_by_others`]'s text, or an OS error).
    pub why: String,
}

/// What is wrong with a folder in [`NotPrivate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// Owned by another user (fix: `chown`).
    Owner,
    /// Writable by group or others (fix: `chmod go-w`).
    Writable,
    /// Missing, not a folder, or unreadable (the OS error).
    Unusable,
}

/// Check that only `owners` can change the folder `dir` and what it holds, as ssh's
/// `StrictModes` does: `dir` (symbolic links resolved) must be owned by `owners` and not be
/// writable by group or others, and each folder above it owned by this user or root and not
/// writable by group or others unless sticky (`/tmp`: there others cannot rename what they
/// do not own), since whoever can rename `dir` can put another folder in its place. Returns
/// the resolved path, which callers should use from then on (a symbolic link on the way
/// could be changed later; its target cannot).
pub fn check_private_dir(dir: &Path, owners: Owners) -> Result<std::path::PathBuf, NotPrivate> {
    use std::os::unix::fs::MetadataExt;
    let fail = |path: &Path, is_target: bool, why: String| NotPrivate {
        path: path.to_owned(),
        is_target,
        kind: if why.starts_with("owned by") {
            Problem::Owner
        } else if why.starts_with("writable by") {
            Problem::Writable
        } else {
            Problem::Unusable
        },
        why,
    };
    let real = std::fs::canonicalize(dir).map_err(|e| fail(dir, true, e.to_string()))?;
    let meta = std::fs::metadata(&real).map_err(|e| fail(&real, true, e.to_string()))?;
    if !meta.is_dir() {
        return Err(fail(&real, true, "not a folder".into()));
    }
    if let Some(why) = writable_by_others(&meta, owners) {
        return Err(fail(&real, true, why));
    }
    for parent in real.ancestors().skip(1) {
        let meta = std::fs::metadata(parent).map_err(|e| fail(parent, false, e.to_string()))?;
        let sticky = meta.mode() & 0o1000 != 0;
        match writable_by_others(&meta, Owners::MeOrRoot) {
            Some(_) if sticky && (meta.uid() == 0 || meta.uid() == euid()) => {}
            Some(why) => return Err(fail(parent, false, why)),
            None => {}
        }
    }
    Ok(real)
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

    #[test]
    fn private_dirs_and_files_are_told_from_ones_others_can_change() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("bounded-read-priv-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("inner")).unwrap();
        let mode = |p: &Path, m: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
        };
        mode(&dir, 0o700);
        mode(&dir.join("inner"), 0o700);
        // Ours, 0700, under /tmp (sticky): fine, and resolved.
        let real = check_private_dir(&dir.join("inner"), Owners::Me).unwrap();
        assert_eq!(real, std::fs::canonicalize(dir.join("inner")).unwrap());
        // The folder itself writable by others.
        mode(&dir.join("inner"), 0o777);
        let e = check_private_dir(&dir.join("inner"), Owners::Me).unwrap_err();
        assert!(e.is_target && e.why.contains("mode 0777"), "{e:?}");
        mode(&dir.join("inner"), 0o700);
        // A folder above it writable by others, not sticky: it could be swapped.
        mode(&dir, 0o777);
        let e = check_private_dir(&dir.join("inner"), Owners::Me).unwrap_err();
        assert!(!e.is_target && e.path == real.parent().unwrap(), "{e:?}");
        // Sticky, as /tmp: others cannot rename what is ours there.
        mode(&dir, 0o1777);
        check_private_dir(&dir.join("inner"), Owners::Me).unwrap();
        mode(&dir, 0o700);
        // Files: the check sees the opened handle.
        let f = dir.join("f");
        std::fs::write(&f, "x").unwrap();
        mode(&f, 0o666);
        let e = read_bounded_checked(&f, 16, |m| match writable_by_others(m, Owners::Me) {
            Some(why) => Err(std::io::Error::other(why)),
            None => Ok(()),
        })
        .unwrap_err();
        assert!(e.to_string().contains("mode 0666"), "{e}");
        mode(&f, 0o644);
        let ok = read_bounded_checked(&f, 16, |m| match writable_by_others(m, Owners::Me) {
            Some(why) => Err(std::io::Error::other(why)),
            None => Ok(()),
        });
        assert_eq!(ok.unwrap(), b"x");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
