//! Rollback protection for signed chefs (`--trusted-chef-keys`, signature format v2).
//!
//! A v2 signature carries the time it was made (`signed_at`). The kitchen remembers, per
//! (key id, file name), the highest `signed_at` of a version it has accepted, and refuses a
//! version signed earlier: whoever can write the chef folder (but holds no signing key)
//! could otherwise put back an older signed build with a known bug. Going back on purpose
//! is signing the older build again (a new `signed_at`). The same `signed_at` is accepted
//! (the same version after a restart, or re-read on a hot reload).
//!
//! What counts as accepted: a version whose signature held *and* that then loaded
//! (compiled, instantiated, described) — [`super::ChefHost::load`] records it only after
//! that; a version merely checked (or refused later in the load) moves nothing.
//!
//! v1 signatures carry no time: they are still accepted (existing deployments) with a
//! warning once per file and version, unless a v2 version of that file name by the same key
//! has been accepted: then a v1 signature is a way back to something older, and refused.
//!
//! Persistence: the marks live in [`FILE_NAME`] inside the compiled-chef cache folder
//! (`--chef-cache-dir`, by default `~/.cache/netdumplings`), which the cache has checked only
//! this user can write (owned by the kitchen's user, not writable by group or others, nor
//! any folder above it): whoever can write the chef folder must not be able to reset the
//! marks. The file holds at most [`MAX_ENTRIES`] marks (the ones with the oldest
//! `signed_at` are dropped first), is read with a size cap, and written aside then renamed,
//! mode 0600. Kitchens sharing the folder merge: each write takes the highest of the
//! file's marks and its own.
//!
//! * No cache folder (`--no-chef-cache`, or a folder refused as unsafe): the marks are kept
//!   in memory for this run only, with one warning at start.
//! * A file that cannot be read or is corrupt (not ours, too big, not the format): one
//!   warning naming it, and the run starts with no marks (as a first run would), rewriting
//!   the file at the next accepted version. Refusing to start instead would turn a damaged
//!   file into a kitchen that runs no chef at all; only this user can write the folder, and
//!   that user can run any chef anyway.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chef_trust::{KeyId, SignedFor};
use dumpling::text::escape_path;
use serde::{Deserialize, Serialize};

/// The file of marks, in the compiled-chef cache folder.
pub const FILE_NAME: &str = "signed-chef-versions.json";
/// Most marks kept (the oldest `signed_at` first dropped beyond it).
pub const MAX_ENTRIES: usize = 4096;
/// Largest file read (4096 entries of a 255-byte name take well under this).
pub const MAX_FILE_BYTES: u64 = 2 << 20;
const FORMAT: &str = "netdumplings-signed-chef-versions-v1";

#[derive(Serialize, Deserialize)]
struct Stored {
    format: String,
    versions: Vec<Entry>,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    key_id: String,
    file_name: String,
    signed_at: u64,
}

type Marks = BTreeMap<(String, String), u64>;

/// The highest accepted `signed_at` per (key id, file name), and the v1 warnings given.
#[derive(Debug, Default)]
pub struct RollbackMemory {
    file: Option<PathBuf>,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    marks: Marks,
    /// (file, sha256) of v1-signed versions already warned about.
    v1_warned: HashSet<(PathBuf, String)>,
    write_warned: bool,
}

/// A version that passed the signature and rollback checks, to record once it loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    key_id: KeyId,
    signed_for: SignedFor,
}

impl RollbackMemory {
    /// Marks kept in memory for this run only.
    pub fn in_memory() -> Self {
        RollbackMemory::default()
    }

    /// Marks kept in `dir/`[`FILE_NAME`] (read now; see the module documentation for a
    /// missing, unreadable or corrupt file).
    pub fn in_dir(dir: &Path) -> Self {
        let file = dir.join(FILE_NAME);
        let marks = match read_marks(&file) {
            Ok(m) => m,
            Err(why) => {
                tracing::warn!(
                    "signed chefs: cannot use the rollback memory {} ({why}); starting with \
                     none: this run refuses no older signed chef version it has not itself \
                     run (the file is rewritten at the next accepted version)",
                    escape_path(&file)
                );
                Marks::new()
            }
        };
        RollbackMemory {
            file: Some(file),
            state: Mutex::new(State {
                marks,
                ..State::default()
            }),
        }
    }

    /// The file the marks are kept in, if any.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Judge a verified signature by `key_id` of the chef file `path` (sha256 `sha256`):
    /// `Ok(Some(_))` to record once it loaded, `Ok(None)` for a v1 signature still allowed
    /// (warned about once), or why it is a rollback.
    pub fn judge(
        &self,
        path: &Path,
        sha256: &str,
        key_id: KeyId,
        signed_for: Option<&SignedFor>,
    ) -> Result<Option<Accepted>, String> {
        let mut state = self.lock();
        match signed_for {
            Some(s) => {
                let mark = state.marks.get(&(key_id.to_string(), s.file_name.clone()));
                match mark {
                    Some(&high) if s.signed_at < high => Err(format!(
                        "signed at {} ({}), older than the version signed at {high} ({}) \
                         already run: a rollback; to go back to an older build on purpose, \
                         sign it again (`nd-chef sign`)",
                        s.signed_at,
                        utc(s.signed_at),
                        utc(high)
                    )),
                    _ => Ok(Some(Accepted {
                        key_id,
                        signed_for: s.clone(),
                    })),
                }
            }
            None => {
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if let Some(&high) = state.marks.get(&(key_id.to_string(), name)) {
                    return Err(format!(
                        "an old v1 signature (no signing time), for a file whose version \
                         signed at {high} ({}) already ran: a rollback; to go back to an older \
                         build on purpose, sign it again (`nd-chef sign`)",
                        utc(high)
                    ));
                }
                if state.v1_warned.insert((path.to_owned(), sha256.to_owned())) {
                    tracing::warn!(
                        "signed chefs: {} has an old v1 signature (key id {key_id}), which \
                         binds no file name and no signing time: it is not protected against \
                         a rollback to an older signed version or a copy under another name; \
                         sign it again with `nd-chef sign`",
                        escape_path(path)
                    );
                }
                Ok(None)
            }
        }
    }

    /// Record a version that loaded: raise its mark (never lower it) and save the marks.
    pub fn accept(&self, accepted: &Accepted) {
        let mut state = self.lock();
        let key = (
            accepted.key_id.to_string(),
            accepted.signed_for.file_name.clone(),
        );
        let at = accepted.signed_for.signed_at;
        if state.marks.get(&key).is_some_and(|&m| m >= at) {
            return;
        }
        state.marks.insert(key, at);
        let Some(file) = &self.file else {
            cap(&mut state.marks);
            return;
        };
        // Merge what another kitchen sharing the folder wrote meanwhile (a damaged file was
        // warned about at start: ours replaces it).
        if let Ok(theirs) = read_marks(file) {
            for (k, v) in theirs {
                let e = state.marks.entry(k).or_insert(v);
                *e = (*e).max(v);
            }
        }
        cap(&mut state.marks);
        if let Err(e) = write_marks(file, &state.marks) {
            if !std::mem::replace(&mut state.write_warned, true) {
                tracing::warn!(
                    "signed chefs: cannot save the rollback memory {} ({e}); it is kept for \
                     this run only",
                    escape_path(file)
                );
            }
        }
    }

    /// The mark of (key id, file name), if any (tests, diagnostics).
    pub fn mark(&self, key_id: KeyId, file_name: &str) -> Option<u64> {
        self.lock()
            .marks
            .get(&(key_id.to_string(), file_name.to_owned()))
            .copied()
    }
}

/// `signed_at` as UTC for messages (the number alone is what the signature holds).
fn utc(t: u64) -> String {
    i64::try_from(t)
        .ok()
        .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
        .map_or_else(
            || "far future".to_owned(),
            |d| d.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        )
}

/// Drop the marks with the oldest `signed_at` beyond [`MAX_ENTRIES`].
fn cap(marks: &mut Marks) {
    if marks.len() <= MAX_ENTRIES {
        return;
    }
    let mut times: Vec<u64> = marks.values().copied().collect();
    times.sort_unstable();
    let mut excess = marks.len() - MAX_ENTRIES;
    let cutoff = times[excess - 1];
    marks.retain(|_, &mut t| {
        if excess > 0 && t <= cutoff {
            excess -= 1;
            false
        } else {
            true
        }
    });
}

/// The marks in `file`: empty when it does not exist; an error (the reason) when it cannot
/// be read, another user could write it, or it is not ours.
fn read_marks(file: &Path) -> Result<Marks, String> {
    let bytes = bounded_read::read_bounded_checked(file, MAX_FILE_BYTES, |meta| {
        match bounded_read::writable_by_others(meta, bounded_read::Owners::Me) {
            None => Ok(()),
            Some(why) => Err(std::io::Error::other(why)),
        }
    });
    let bytes = match bytes {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Marks::new()),
        Err(e) => return Err(e.to_string()),
    };
    let stored: Stored =
        serde_json::from_slice(&bytes).map_err(|e| format!("not a rollback memory file: {e}"))?;
    if stored.format != FORMAT {
        return Err(format!("unknown format, expected {FORMAT:?}"));
    }
    let mut marks = Marks::new();
    for e in stored.versions {
        if chef_trust::file_name_problem(&e.file_name).is_some() || e.key_id.len() != 16 {
            return Err("an entry with a bad key id or file name".into());
        }
        let m = marks.entry((e.key_id, e.file_name)).or_insert(e.signed_at);
        *m = (*m).max(e.signed_at);
    }
    cap(&mut marks);
    Ok(marks)
}

fn write_marks(file: &Path, marks: &Marks) -> Result<(), chef_trust::KeyError> {
    let stored = Stored {
        format: FORMAT.to_owned(),
        versions: marks
            .iter()
            .map(|((k, f), t)| Entry {
                key_id: k.clone(),
                file_name: f.clone(),
                signed_at: *t,
            })
            .collect(),
    };
    let mut text = serde_json::to_string_pretty(&stored).unwrap_or_default();
    text.push('\n');
    chef_trust::write_file_atomically(file, text.as_bytes(), 0o600)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("nd-rollback-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn id(n: u8) -> KeyId {
        let k = chef_trust::Ed25519SigningKey::from_bytes(&[n; 32]);
        KeyId::of(&k.verifying_key())
    }

    fn v2(name: &str, at: u64) -> SignedFor {
        SignedFor {
            file_name: name.into(),
            signed_at: at,
        }
    }

    #[test]
    fn marks_persist_refuse_older_and_only_move_on_accept() {
        use std::os::unix::fs::PermissionsExt;
        let dir = scratch("persist");
        let p = Path::new("chefs/dns.wasm");
        let m = RollbackMemory::in_dir(&dir);
        let a = m
            .judge(p, "s2", id(1), Some(&v2("dns.wasm", 2000)))
            .unwrap();
        // Checked, not yet accepted: an older version still passes.
        assert!(m.judge(p, "s1", id(1), Some(&v2("dns.wasm", 1000))).is_ok());
        m.accept(&a.unwrap());
        let file = dir.join(FILE_NAME);
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // A later run with the same folder.
        let m = RollbackMemory::in_dir(&dir);
        assert_eq!(m.mark(id(1), "dns.wasm"), Some(2000));
        let e = m
            .judge(p, "s1", id(1), Some(&v2("dns.wasm", 1000)))
            .unwrap_err();
        assert!(
            e.contains("signed at 1000") && e.contains("rollback"),
            "{e}"
        );
        // The same version, a newer one, another key, another name: all fine.
        assert!(m.judge(p, "s2", id(1), Some(&v2("dns.wasm", 2000))).is_ok());
        assert!(m.judge(p, "s1", id(1), Some(&v2("dns.wasm", 3000))).is_ok());
        assert!(m.judge(p, "s1", id(2), Some(&v2("dns.wasm", 1000))).is_ok());
        // v1: refused once a v2 mark exists for (key, name); allowed elsewhere.
        assert!(m.judge(p, "s0", id(1), None).unwrap_err().contains("v1"));
        assert_eq!(
            m.judge(Path::new("x/other.wasm"), "s0", id(1), None),
            Ok(None)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_corrupt_file_is_an_empty_memory_and_is_rewritten() {
        let dir = scratch("corrupt");
        let file = dir.join(FILE_NAME);
        std::fs::write(&file, "{ not json").unwrap();
        let m = RollbackMemory::in_dir(&dir);
        assert_eq!(m.mark(id(1), "dns.wasm"), None);
        let a = m.judge(Path::new("dns.wasm"), "s", id(1), Some(&v2("dns.wasm", 5)));
        m.accept(&a.unwrap().unwrap());
        assert_eq!(
            RollbackMemory::in_dir(&dir).mark(id(1), "dns.wasm"),
            Some(5)
        );
        // Too big: refused by the bounded reader, not read into memory.
        std::fs::write(&file, vec![b' '; MAX_FILE_BYTES as usize + 1]).unwrap();
        assert!(read_marks(&file).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_oldest_marks_are_dropped_beyond_the_cap() {
        let mut marks = Marks::new();
        for i in 0..(MAX_ENTRIES as u64 + 10) {
            marks.insert(("k".repeat(16), format!("c{i}.wasm")), i);
        }
        cap(&mut marks);
        assert_eq!(marks.len(), MAX_ENTRIES);
        assert!(!marks.values().any(|&t| t < 10));
    }
}
