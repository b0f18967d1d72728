//! On-disk cache of compiled chefs (`.cwasm`), so a kitchen restart costs ~0.4 ms per chef
//! instead of a ~60 ms (Rust) to ~10 s (Python/JS) Cranelift compile.
//!
//! Key: `sha256(wasm bytes)` + a hash of `Engine::precompile_compatibility_hash()` (which
//! covers the wasmtime version, target CPU features and the compile-relevant `Config`).
//! Location: `$XDG_CACHE_HOME/netdumplings` or `~/.cache/netdumplings`, created `0700`.
//! Files are written to a temporary name and renamed, so a reader never sees half a file.
//!
//! Trust: deserializing a `.cwasm` runs its native code, so this module only ever
//! deserializes files at the exact path this host computes inside a directory that is not
//! group/world-writable. Each entry ends with the SHA-256 of its compiled bytes, checked on
//! every hit before anything is deserialized: a damaged entry (a bad disk block, a file
//! cut or zeroed by a crash, someone's stray edit) is discarded and the chef compiled
//! again, instead of native code that is not what wasmtime wrote being run (a changed
//! `.text` section crashed the kitchen with SIGTRAP). The digest catches damage, not an
//! attacker: whoever can write the cache directory runs as the kitchen's user and can
//! rewrite the digest too, so the directory is exactly as trusted as the kitchen's own
//! files (which is why it must be private).

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::Engine;

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
}

/// What ends every cache entry: the SHA-256 of the bytes before it, then this tag.
const DIGEST_TAG: &[u8; 8] = b"ndcwsum1";
/// Bytes of the trailer ([`DIGEST_TAG`] and the digest before it).
const TRAILER_BYTES: usize = 32 + DIGEST_TAG.len();

/// Default size of the compiled-chef cache, MiB (`--chef-cache-mib`).
pub const DEFAULT_CACHE_MIB: u64 = 512;

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
    pub fn open(dir: PathBuf, engine: &Engine) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        secure_dir(&dir)?;
        let mut h = Sha256Hasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut h);
        let compat = hex(&h.0.finalize()[..8]);
        Ok(ArtifactCache {
            dir,
            compat,
            max_bytes: DEFAULT_CACHE_MIB << 20,
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
                tracing::debug!(path = %path.display(), bytes = len, "compiled-chef cache entry evicted");
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
        if path.is_file() {
            match self.read_checked(&path) {
                Ok(compiled) => {
                    // SAFETY: deserializing runs the bytes as native code, so they must be
                    // what wasmtime produced with `Component::serialize` for an engine with
                    // this configuration. They are: the file is `<sha256 of these exact
                    // wasm bytes>-<hash of this engine's precompile compatibility>.cwasm`
                    // inside our own cache directory, which `open` created (or checked to
                    // be) not writable by group or others; only `store` below writes there
                    // (temp file + rename, so the file is complete); and its trailer's
                    // SHA-256 of these bytes matched just now (not damaged since). wasmtime
                    // additionally checks the header and engine compatibility and returns
                    // an error (handled below) rather than loading a mismatched file.
                    #[allow(unsafe_code)]
                    let loaded = unsafe { Component::deserialize(engine, &compiled) };
                    match loaded {
                        Ok(c) => {
                            // Touch it: eviction goes by modification time (least
                            // recently used).
                            if let Ok(f) = std::fs::File::options().append(true).open(&path) {
                                let _ = f.set_modified(std::time::SystemTime::now());
                            }
                            return Ok((c, CacheOutcome::Hit));
                        }
                        Err(e) => {
                            tracing::warn!(path = %path.display(), error = %format!("{e:#}"),
                                "discarding an unreadable compiled-chef cache entry");
                            let _ = std::fs::remove_file(&path);
                        }
                    }
                }
                Err(why) => {
                    tracing::warn!(path = %path.display(), "discarding a damaged compiled-chef cache entry ({why}); compiling the chef again");
                    let _ = std::fs::remove_file(&path);
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
                tracing::debug!(path = %path.display(), error = %e, "cannot write the compiled-chef cache");
                CacheOutcome::Compiled
            }
        };
        Ok((component, outcome))
    }

    /// The compiled bytes of the entry at `path` if its trailer's digest matches them;
    /// else why not. Reads at most the cache's size.
    fn read_checked(&self, path: &Path) -> Result<Vec<u8>, String> {
        use std::io::Read;
        let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
        let mut bytes = Vec::new();
        file.take(self.max_bytes.saturating_add(TRAILER_BYTES as u64 + 1))
            .read_to_end(&mut bytes)
            .map_err(|e| e.to_string())?;
        if bytes.len() as u64 > self.max_bytes + TRAILER_BYTES as u64 {
            return Err("larger than the whole cache".into());
        }
        let Some(body_len) = bytes.len().checked_sub(TRAILER_BYTES) else {
            return Err(format!("only {} bytes", bytes.len()));
        };
        if &bytes[bytes.len() - DIGEST_TAG.len()..] != DIGEST_TAG {
            return Err("no digest trailer (written by an older kitchen, or cut)".into());
        }
        let digest = &bytes[body_len..body_len + 32];
        if Sha256::digest(&bytes[..body_len]).as_slice() != digest {
            return Err("its SHA-256 does not match its digest".into());
        }
        bytes.truncate(body_len);
        Ok(bytes)
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
            let mut f = std::fs::File::create(&tmp)?;
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

#[cfg(unix)]
fn secure_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(dir)?;
    let mode = meta.permissions().mode();
    if mode & 0o022 != 0 {
        // Try to fix a directory we probably created with the default umask; refuse to
        // use one we cannot make private (someone else could plant native code in it).
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        let mode = std::fs::metadata(dir)?.permissions().mode();
        if mode & 0o022 != 0 {
            return Err(std::io::Error::other(format!(
                "{} is writable by group or others",
                dir.display()
            )));
        }
    }
    Ok(())
}

#[cfg(not(unix))]
fn secure_dir(_dir: &Path) -> std::io::Result<()> {
    Ok(())
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
