//! Signed chefs and provenance (`nd-sniff --trusted-chef-keys DIR`).
//!
//! Every chef gets a [`Provenance`]: the SHA-256 of the component bytes it was compiled
//! from, and the id of the key that signed it when a valid detached signature
//! (`CHEF.wasm.sig`, format in the `chef-trust` crate) lies beside the file. The kitchen
//! reports it in `-l`, the hello and every `KitchenStatusChef` dumpling, so an eater can tell
//! which exact code made a dumpling.
//!
//! [`ChefTrust`] is the check [`super::ChefHost::load`] makes before compiling a chef file:
//! * not enforcing (the default): every chef loads, as before; a valid signature only adds
//!   its key id to the provenance (an invalid one is ignored, with a debug log);
//! * enforcing (`--trusted-chef-keys`): a chef file loads only with a valid signature by a
//!   trusted key; otherwise [`LoadError::Untrusted`] names the reason and the key id, and
//!   the kitchen logs it with the file (at start and on hot reload).
//!
//! Built-in chefs are compiled into `nd-sniff` itself: they are as trusted as the binary and
//! need no signature.
//!
//! Signature format v2 also binds the file name (a signed chef copied to another name is
//! refused) and the signing time: a version signed earlier than one already run under the
//! same key and file name is refused as a rollback ([`super::rollback`], which keeps those
//! marks across restarts in the compiled-chef cache folder). A v1 signature still loads,
//! with a warning (it is not protected against either).
//!
//! Hot reload: the chef and its signature are two files that land separately (a new
//! `chef.wasm`, then its new `chef.wasm.sig`, or the other way round). The loader treats the
//! pair as one version ([`version`]): a change to either re-checks the chef. In the window
//! where only one of the two has landed the new version is refused (the previous, verified
//! version keeps running) and it loads as soon as the matching file lands.

use std::path::Path;
use std::sync::Arc;

use chef_trust::{read_signature, SignatureFile, TrustedKeys};
use sha2::{Digest, Sha256};

use super::rollback::{Accepted, RollbackMemory};
use super::{ChefSource, LoadError};

/// Where a running chef's code came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Provenance {
    /// SHA-256 of the component bytes (hex).
    pub sha256: String,
    /// Key id of a valid signature beside the file; `None` for built-ins and unsigned files.
    pub key_id: Option<String>,
}

/// Which chef files may run.
#[derive(Debug, Clone, Default)]
pub struct ChefTrust {
    keys: Option<TrustedKeys>,
    /// The newest signed version accepted per (key, file name): shared by every clone (the
    /// hot-reload workers), in memory until [`Self::remember_in`] gives it a file.
    rollback: Arc<RollbackMemory>,
}

impl ChefTrust {
    /// Only chef files signed by one of `keys` run. The rollback memory is for this run
    /// only until [`Self::remember_in`].
    pub fn enforcing(keys: TrustedKeys) -> Self {
        ChefTrust {
            keys: Some(keys),
            rollback: Arc::new(RollbackMemory::in_memory()),
        }
    }

    /// Keep the rollback memory in the folder `dir` (the compiled-chef cache folder, which
    /// only this user can write), read now; `None`: in memory for this run only, said once
    /// in a warning. Nothing to do when not enforcing.
    pub fn remember_in(&mut self, dir: Option<&Path>) {
        if !self.is_enforcing() {
            return;
        }
        self.rollback = Arc::new(match dir {
            Some(d) => RollbackMemory::in_dir(d),
            None => {
                tracing::warn!(
                    "signed chefs: no compiled-chef cache folder (--no-chef-cache, or no \
                     usable folder), so the rollback memory (the newest signing time run per \
                     key and chef file) is kept for this run only: after a restart an older \
                     signed version of a chef is not refused; --chef-cache-dir DIR keeps it"
                );
                RollbackMemory::in_memory()
            }
        });
    }

    /// The rollback memory (tests, diagnostics).
    pub fn rollback(&self) -> &RollbackMemory {
        &self.rollback
    }

    /// Record a version that loaded (after [`Self::check`] passed it): its signing time is
    /// the new mark for its key and file name.
    pub fn accepted(&self, accepted: &Accepted) {
        self.rollback.accept(accepted);
    }

    /// Whether signatures are required.
    pub fn is_enforcing(&self) -> bool {
        self.keys.is_some()
    }

    /// The trusted keys, when enforcing.
    pub fn keys(&self) -> Option<&TrustedKeys> {
        self.keys.as_ref()
    }

    /// Check the chef from `source` whose bytes are `wasm`: its provenance and, for a v2
    /// signature when enforcing, what to record with [`Self::accepted`] once it loaded; or
    /// why it may not run (including a rollback).
    pub fn check(
        &self,
        source: &ChefSource,
        wasm: &[u8],
    ) -> Result<(Provenance, Option<Accepted>), LoadError> {
        let sha256 = chef_trust::hex(&chef_trust::sha256(wasm));
        let ChefSource::File(path) = source else {
            // Built-ins: trusted as part of the binary.
            return Ok((
                Provenance {
                    sha256,
                    key_id: None,
                },
                None,
            ));
        };
        let untrusted = |e: chef_trust::Refusal| LoadError::Untrusted {
            key_id: e
                .key_id()
                .map_or_else(|| "none".to_owned(), |k| k.to_string()),
            reason: e.to_string(),
        };
        let signature = read_signature(path);
        let mut accepted = None;
        let key_id = match &self.keys {
            Some(keys) => {
                let signature = signature.map_err(untrusted)?;
                let v = keys
                    .check(wasm, signature.as_deref(), path)
                    .map_err(untrusted)?;
                accepted = self
                    .rollback
                    .judge(path, &sha256, v.key_id, v.signed_for.as_ref())
                    .map_err(|reason| LoadError::Untrusted {
                        reason,
                        key_id: v.key_id.to_string(),
                    })?;
                Some(v.key_id.to_string())
            }
            None => match signature {
                Ok(Some(bytes)) => {
                    match SignatureFile::parse(&bytes).and_then(|s| s.verify(wasm, path)) {
                        Ok(v) => Some(v.key_id.to_string()),
                        Err(e) => {
                            tracing::debug!(file = %path.display(), reason = %e,
                                "chef signature not valid (not enforced without --trusted-chef-keys)");
                            None
                        }
                    }
                }
                _ => None,
            },
        };
        Ok((Provenance { sha256, key_id }, accepted))
    }
}

/// The version of a chef file for hot reload: its bytes and its signature file's bytes
/// together, so a change to either one re-checks the chef.
pub fn version(path: &Path, wasm: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(Sha256::digest(wasm));
    match read_signature(path) {
        Ok(Some(sig)) => h.update(Sha256::digest(&sig)),
        Ok(None) => h.update(b"unsigned"),
        Err(e) => h.update(e.to_string().as_bytes()),
    }
    h.finalize().into()
}

/// The chef file a changed path stands for: itself for `*.wasm`, the component for a
/// `*.wasm.sig`; `None` for anything else.
pub fn chef_file_of(path: &Path) -> Option<std::path::PathBuf> {
    if path.extension().is_some_and(|x| x == "wasm") {
        return Some(path.to_owned());
    }
    chef_trust::chef_of_signature(path)
}
