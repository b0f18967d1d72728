//! Chef files that are symlinks: what each one points at, so that a change of the target
//! alone is noticed.
//!
//! Why: the folder watch reports events on the folder's own entries. A deployment that
//! keeps `current.wasm -> releases/current/chef.wasm` and rewrites the release in place, or
//! swaps the directory the link goes through, changes what the chef file reads without any
//! event on `current.wasm`; the chef was never reloaded. A target removed left the link
//! dangling without a word until its next event. So the loader notes, for every symlink it
//! handles, the identity and times of the file it resolves to, and once a second
//! ([`LinkTargets::changed`]) asks which ones now resolve to something else.
//!
//! A change is acted on once it has held still for one check (the stamp seen at two
//! checks in a row), so a target still being written is read when the writer is done, not
//! half-way (the folder's own events have the watcher's debounce for that).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// What a symlink resolves to: the target's identity, size and times; `None` while it
/// resolves to nothing (dangling, or a loop).
type Stamp = Option<TargetStamp>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TargetStamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

fn stamp(path: &Path) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some(TargetStamp {
        dev: m.dev(),
        ino: m.ino(),
        len: m.len(),
        mtime: (m.mtime(), m.mtime_nsec()),
        ctime: (m.ctime(), m.ctime_nsec()),
    })
}

/// One symlink's stamps.
#[derive(Debug, Clone, Copy)]
struct Link {
    /// When the loader last handled it.
    handled: Stamp,
    /// At the last check.
    seen: Stamp,
}

/// The symlinked chef files the loader handled, with what each resolved to then. Bounded
/// by the loader's own table of files (one entry per chef file it knows).
#[derive(Debug, Default)]
pub(crate) struct LinkTargets {
    links: HashMap<PathBuf, Link>,
}

impl LinkTargets {
    /// The loader is handling `path` now: note what it resolves to if it is a symlink,
    /// forget it otherwise.
    pub fn note(&mut self, path: &Path, is_symlink: bool) {
        if !is_symlink {
            self.forget(path);
            return;
        }
        let now = stamp(path);
        self.links.insert(
            path.to_path_buf(),
            Link {
                handled: now,
                seen: now,
            },
        );
    }

    /// `path` is gone.
    pub fn forget(&mut self, path: &Path) {
        self.links.remove(path);
    }

    /// The symlinks that resolve to something other than when they were handled, that
    /// change having held since the last check: the loader handles each again (an
    /// unchanged content is then a no-op, a dangling link is refused by name).
    pub fn changed(&mut self) -> Vec<PathBuf> {
        let mut changed = Vec::new();
        for (path, link) in &mut self.links {
            let now = stamp(path);
            if now != link.handled && now == link.seen {
                changed.push(path.clone());
            }
            link.seen = now;
        }
        changed.sort();
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_rewritten_or_removed_is_reported_once_it_holds_still() {
        let dir = std::env::temp_dir().join(format!("nd-link-targets-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("releases")).unwrap();
        let target = dir.join("releases/chef.wasm");
        std::fs::write(&target, b"one").unwrap();
        let link = dir.join("current.wasm");
        std::os::unix::fs::symlink("releases/chef.wasm", &link).unwrap();
        let plain = dir.join("plain.wasm");
        std::fs::write(&plain, b"plain").unwrap();

        let mut links = LinkTargets::default();
        links.note(&link, true);
        links.note(&plain, false);
        assert!(links.changed().is_empty(), "nothing changed yet");

        // Rewritten in place (another size): seen once, then reported at the next check.
        std::fs::write(&target, b"two, longer").unwrap();
        assert!(links.changed().is_empty(), "reported before it held still");
        assert_eq!(links.changed(), std::slice::from_ref(&link));
        // Until the loader handles it again, it stays changed.
        assert_eq!(links.changed(), std::slice::from_ref(&link));
        links.note(&link, true);
        assert!(links.changed().is_empty());

        // The target removed: the link dangles, and that is a change too.
        std::fs::remove_file(&target).unwrap();
        links.changed();
        assert_eq!(links.changed(), std::slice::from_ref(&link));
        links.note(&link, true);
        assert!(links.changed().is_empty());

        // A link the loader forgot (its name is gone) is not checked.
        std::fs::write(&target, b"three").unwrap();
        links.forget(&link);
        links.changed();
        assert!(links.changed().is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
