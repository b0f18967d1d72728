//! On-disk cache of compiled chefs (`.cwasm`), so a kitchen restart costs ~0.4 ms per chef
//! instead of a ~60 ms (Rust) to ~10 s (Python/JS) Cranelift compile.
//!
//! Key: `sha256(wasm bytes)` + a hash of `Engine::precompile_compatibility_hash()` (which
//! covers the wasmtime version, target CPU features and the compile-relevant `Config`).
//! Location: `$XDG_CACHE_HOME/netdumplings` or `~/.cache/netdumplings`, created `0700`.
//! Files are written to a temporary name and renamed, so a reader never sees half a file.
//!
//! Trust: deserializing a `.cwasm` runs its native code, so whoever can write an entry
//! decides what the kitchen runs, signed chef or not (`--trusted-chef-keys` checks the wasm
//! bytes, and the entry is found by their SHA-256 only after that check, but the entry's
//! content is whatever is in the file). So only the kitchen's own user may be able to write
//! one:
//! * the directory (symbolic links resolved) must be owned by the kitchen's effective uid
//!   and not be writable by group or others, and each directory above it owned by that
//!   user or root and not writable by group or others unless sticky (`/tmp`)
//!   ([`bounded_read::check_private_dir`]); otherwise the cache is not used at all (one
//!   warning naming the directory and the fix; chefs are compiled at every start);
//! * an entry is opened without following a symbolic link and used only if the opened
//!   handle is a regular file owned by the kitchen's effective uid with no group/other
//!   write bit (`fstat`); anything else is a miss: one warning, the entry is removed, the
//!   chef compiled and the entry written again.
//!
//! Each entry also ends with the SHA-256 of its compiled bytes, checked on every hit before
//! anything is deserialized: a damaged entry (a bad disk block, a file cut or zeroed by a
//! crash, someone's stray edit) is discarded and the chef compiled again, instead of native
//! code that is not what wasmtime wrote being run (a changed `.text` section crashed the
//! kitchen with SIGTRAP). The digest catches damage, not an attacker (who could rewrite it
//! too): the owner and mode checks above are what keep other users out.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::Engine;

use dumpling::text::escape_path;

use super::error::LoadError;

/// Where a chef's compiled code came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Loaded from the cache.
    Hit,
    /// Compiled and written to the cache.
    Stored,
    /// Compiled; the cache is disabled or could not be written.
    Compiled,
}

/// The compiled-chef cache directory.
#[derive(Debug, Clone)]
pub struct ArtifactCache {
    dir: PathBuf,
    compat: String,
    /// Total bytes of `.cwasm` files kept; older entries are evicted past it.
    max_bytes: u64,
    /// A failed write was warned about (once: each chef would say the same).
    write_warned: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// What ends every cache entry: the SHA-256 of the bytes before it, then this tag.
const DIGEST_TAG: &[u8; 8] = b"ndcwsum1";
/// Bytes of the trailer ([`DIGEST_TAG`] and the digest before it).
const TRAILER_BYTES: usize = 32 + DIGEST_TAG.len();

/// Default size of the compiled-chef cache, MiB (`--chef-cache-mib`).
pub const DEFAULT_CACHE_MIB: u64 = 512;

/// Ends every warning about the cache: a user who reads one learns which flag moves the
/// cache and which turns it off, without looking them up (`nd-sniff`'s flags).
pub const FLAGS_HINT: &str =
    "--chef-cache-dir DIR sets the cache folder, --no-chef-cache turns the cache off";

impl ArtifactCache {
    /// The default directory: `$XDG_CACHE_HOME/netdumplings`, else `~/.cache/netdumplings`.
    pub fn default_dir() -> Option<PathBuf> {
        let base = std::env::var_os("XDG_CACHE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .or_else(|| {
                std::env::var_os("HOME")
                    .filter(|v| !v.is_empty())
                    .map(|h| PathBuf::from(h).join(".cache"))
            })?;
        Some(base.join("netdumplings"))
    }

    /// Open (creating if needed) a cache in `dir` for `engine`.
    /// Refused (an error naming the directory at fault and the fix) when another user could
    /// write it: see the module documentation.
    pub fn open(dir: PathBuf, engine: &Engine) -> std::io::Result<Self> {
        create_private_dir_all(&dir)?;
        let dir = secure_dir(&dir)?;
        let mut h = Sha256Hasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut h);
        let compat = hex(&h.0.finalize()[..8]);
        Ok(ArtifactCache {
            dir,
            compat,
            max_bytes: DEFAULT_CACHE_MIB << 20,
            write_warned: Default::default(),
        })
    }

    /// Bound the cache to `bytes` of `.cwasm` files.
    pub fn set_max_bytes(&mut self, bytes: u64) {
        self.max_bytes = bytes;
    }

    /// Delete the least recently used `.cwasm` entries (by modification time: a hit
    /// touches its entry) until the cache holds at most `max_bytes`; `keep` is never
    /// deleted. Other files (temporary ones, foreign ones) are left alone.
    fn evict(&self, keep: &Path) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut files: Vec<(std::time::SystemTime, u64, PathBuf)> = entries
            .filter_map(|e| {
                let e = e.ok()?;
                let p = e.path();
                let name = p.file_name()?.to_str()?;
                if !name.ends_with(".cwasm") || name.starts_with('.') {
                    return None;
                }
                let m = e.metadata().ok()?;
                m.is_file().then_some(())?;
                Some((m.modified().ok()?, m.len(), p))
            })
            .collect();
        let mut total: u64 = files.iter().map(|f| f.1).sum();
        files.sort();
        for (_, len, path) in files {
            if total <= self.max_bytes {
                break;
            }
            if path == keep {
                continue;
            }
            if std::fs::remove_file(&path).is_ok() {
                tracing::debug!(path = %escape_path(&path), bytes = len, "compiled-chef cache entry evicted");
                total = total.saturating_sub(len);
            }
        }
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path_for(&self, wasm: &[u8]) -> PathBuf {
        let sha = hex(&Sha256::digest(wasm));
        self.dir.join(format!("{sha}-{}.cwasm", self.compat))
    }

    /// Load the compiled form of `wasm` from the cache, or compile and store it.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        compiler: &super::compile_worker::Compiler,
        wasm: &[u8],
    ) -> Result<(Component, CacheOutcome), LoadError> {
        let path = self.path_for(wasm);
        match self.read_checked(&path) {
            Err(Entry::Missing) => {}
            Err(Entry::Foreign(why)) => {
                // Not ours alone: its bytes may be anyone's native code. Never read them;
                // replace the entry with our own compile.
                tracing::warn!(path = %escape_path(&path),
                    "refusing a compiled-chef cache entry another user could have written ({why}); \
                     compiling the chef again and replacing the entry (only the kitchen's user \
                     may write the cache: `chown` it to that user, `chmod go-w` it); {FLAGS_HINT}");
                let _ = std::fs::remove_file(&path);
            }
            Err(Entry::Damaged(why)) => {
                tracing::warn!(path = %escape_path(&path), "discarding a damaged compiled-chef cache entry ({why}); compiling the chef again; {FLAGS_HINT}");
                let _ = std::fs::remove_file(&path);
            }
            Ok((compiled, file)) => {
                // SAFETY: deserializing runs the bytes as native code, so they must be
                // what wasmtime produced with `Component::serialize` for an engine with
                // this configuration. They are: the file is `<sha256 of these exact
                // wasm bytes (already signature-checked by the caller)>-<hash of this
                // engine's precompile compatibility>.cwasm` inside our own cache
                // directory, which `open` checked only this user can write; the opened
                // handle (no symbolic link followed) is a regular file owned by this
                // user and not writable by group or others, so only this user's
                // `store` below wrote it (temp file + rename, so the file is complete);
                // and its trailer's SHA-256 of these bytes matched just now (not
                // damaged since). wasmtime additionally checks the header and engine
                // compatibility and returns an error (handled below) rather than
                // loading a mismatched file.
                #[allow(unsafe_code)]
                let loaded = unsafe { Component::deserialize(engine, &compiled) };
                match loaded {
                    Ok(c) => {
                        // Touch it (through the handle checked above, not the path):
                        // eviction goes by modification time (least recently used).
                        let _ = file.set_modified(std::time::SystemTime::now());
                        return Ok((c, CacheOutcome::Hit));
                    }
                    Err(e) => {
                        tracing::warn!(path = %escape_path(&path), error = %format!("{e:#}"),
                            "discarding an unreadable compiled-chef cache entry; {FLAGS_HINT}");
                        let _ = std::fs::remove_file(&path);
                    }
                }
            }
        }
        let component = super::compile_worker::compile(compiler, engine, wasm)?;
        let outcome = match self.store(&path, &component) {
            Ok(()) => {
                self.evict(&path);
                CacheOutcome::Stored
            }
            Err(e) => {
                // Said once: a cache that cannot be written costs every start a compile of
                // every chef, which a user should hear about (it was a debug line).
                use std::sync::atomic::Ordering;
                if self.write_warned.swap(true, Ordering::Relaxed) {
                    tracing::debug!(path = %escape_path(&path), error = %e, "cannot write the compiled-chef cache");
                } else {
                    tracing::warn!(dir = %escape_path(&self.dir), error = %e,
                        "cannot write the compiled-chef cache (chefs not in it are compiled \
                         again at every start; --chef-cache-mib sets its size); {FLAGS_HINT}");
                }
                CacheOutcome::Compiled
            }
        };
        Ok((component, outcome))
    }

    /// The compiled bytes of the entry at `path` (and its open handle) if only this user
    /// can have written it and its trailer's digest matches them; else why not. Reads at
    /// most the cache's size.
    fn read_checked(&self, path: &Path) -> Result<(Vec<u8>, std::fs::File), Entry> {
        use std::io::Read;
        use std::os::unix::fs::OpenOptionsExt;
        // O_NOFOLLOW: a symbolic link (to anyone's file) is refused, not followed;
        // O_NONBLOCK: a FIFO put there does not hang the open. Everything after is decided
        // on this handle, so the file checked is the file read.
        let file = match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Entry::Missing),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Err(Entry::Foreign("a symbolic link".into()))
            }
            Err(e) => return Err(Entry::Damaged(e.to_string())),
        };
        let meta = file.metadata().map_err(|e| Entry::Damaged(e.to_string()))?;
        if !meta.is_file() {
            return Err(Entry::Foreign("not a regular file".into()));
        }
        if let Some(why) = bounded_read::writable_by_others(&meta, bounded_read::Owners::Me) {
            return Err(Entry::Foreign(why));
        }
        let mut bytes = Vec::new();
        (&file)
            .take(self.max_bytes.saturating_add(TRAILER_BYTES as u64 + 1))
            .read_to_end(&mut bytes)
            .map_err(|e| Entry::Damaged(e.to_string()))?;
        if bytes.len() as u64 > self.max_bytes + TRAILER_BYTES as u64 {
            return Err(Entry::Damaged("larger than the whole cache".into()));
        }
        let Some(body_len) = bytes.len().checked_sub(TRAILER_BYTES) else {
            return Err(Entry::Damaged(format!("only {} bytes", bytes.len())));
        };
        if &bytes[bytes.len() - DIGEST_TAG.len()..] != DIGEST_TAG {
            return Err(Entry::Damaged(
                "no digest trailer (written by an older kitchen, or cut)".into(),
            ));
        }
        let digest = &bytes[body_len..body_len + 32];
        if Sha256::digest(&bytes[..body_len]).as_slice() != digest {
            return Err(Entry::Damaged(
                "its SHA-256 does not match its digest".into(),
            ));
        }
        bytes.truncate(body_len);
        Ok((bytes, file))
    }

    fn store(&self, path: &Path, component: &Component) -> std::io::Result<()> {
        let mut bytes = component
            .serialize()
            .map_err(|e| std::io::Error::other(format!("{e:#}")))?;
        let digest = Sha256::digest(&bytes);
        bytes.extend_from_slice(&digest);
        bytes.extend_from_slice(DIGEST_TAG);
        if bytes.len() as u64 > self.max_bytes {
            return Err(std::io::Error::other(format!(
                "the compiled chef ({} bytes) is larger than the whole cache ({} bytes)",
                bytes.len(),
                self.max_bytes
            )));
        }
        let tmp = self.dir.join(format!(
            ".tmp-{}-{}.cwasm",
            std::process::id(),
            random_u64()
        ));
        let result = (|| {
            // A fresh file (never an existing one, nor through a symbolic link).
            let mut f = std::fs::File::create_new(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }
}

/// Compile a component from its wasm bytes in this process (no cache, no limits).
pub fn compile(engine: &Engine, wasm: &[u8]) -> Result<Component, LoadError> {
    super::compile_worker::compile(&super::compile_worker::Compiler::InProcess, engine, wasm)
}

/// Why a cache entry is not used.
#[derive(Debug)]
enum Entry {
    /// None there: compile.
    Missing,
    /// Another user could have written it (or a symbolic link, or not a file).
    Foreign(String),
    /// Cut, damaged, unreadable.
    Damaged(String),
}

/// `create_dir_all`, with the folders it creates private (0700) from the start.
fn create_private_dir_all(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Check that only this user can write `dir` (and that no other user can swap it); returns
/// its resolved path. A directory of ours that is group/other-writable (made with a loose
/// umask) is made private first; one owned by another user is never touched (a root
/// kitchen could chmod it, but its owner could loosen it again at any time).
fn secure_dir(dir: &Path) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = std::fs::metadata(dir)?;
    if meta.uid() == bounded_read::euid() && meta.mode() & 0o022 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    bounded_read::check_private_dir(dir, bounded_read::Owners::Me).map_err(|e| {
        let fix = match e.kind {
            bounded_read::Problem::Owner if e.is_target => format!(
                "`chown {} {}`, or pick another --chef-cache-dir",
                bounded_read::euid(),
                escape_path(&e.path)
            ),
            bounded_read::Problem::Owner => {
                "pick a --chef-cache-dir under folders only this user and root own".to_owned()
            }
            bounded_read::Problem::Writable => format!(
                "`chmod go-w {}`, or pick another --chef-cache-dir",
                escape_path(&e.path)
            ),
            bounded_read::Problem::Unusable => {
                return std::io::Error::other(format!("{}: {}", escape_path(&e.path), e.why))
            }
        };
        std::io::Error::other(format!(
            "{}{} is {}: another user could put native code there that this kitchen would \
             run; {fix}",
            if e.is_target {
                ""
            } else {
                "a folder above it, "
            },
            escape_path(&e.path),
            e.why,
        ))
    })
}

/// Feeds `Hash` output into SHA-256 so the key is stable across processes (std's
/// `DefaultHasher` is not guaranteed to be).
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A random number from std's per-process random hash keys (no `rand` dependency needed
/// for temp-file names and reconnect jitter).
pub(crate) fn random_u64() -> u64 {
    use std::collections::hash_map::RandomState;
    use std::hash::BuildHasher;
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}
