//! Signed chefs: ed25519 signing keys, detached chef signatures (`CHEF.wasm.sig`), key ids,
//! and the check a kitchen makes with `nd-sniff --trusted-chef-keys DIR`.
//!
//! One implementation for both sides: `nd-chef keygen` / `nd-chef sign` (through the
//! `nd-chef-trust` binary of this crate) write what `nd-sniff` reads here.
//!
//! # Formats
//!
//! * **Private key** `NAME.key`: PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), ed25519, mode
//!   0600 (created that way, never widened; a key readable by group or others is refused,
//!   as ssh does). OpenSSL reads it: `openssl pkey -in NAME.key -pubout`.
//! * **Public key** `NAME.pub`: SPKI PEM (`-----BEGIN PUBLIC KEY-----`). A kitchen trusts
//!   the `*.pub` files of its `--trusted-chef-keys` directory. Weak (small-order) keys are
//!   refused: one verifies a signature anyone can write, for any chef. The directory and its
//!   `.pub` files must be owned by the kitchen's user or root and not be writable by group or
//!   others (and no folder above it writable by others), as ssh's `StrictModes` asks of
//!   `authorized_keys`: whoever can add a key there decides which chefs run.
//! * **Key id**: the first 8 bytes of SHA-256 over the raw 32-byte public key, as 16 hex
//!   digits: short enough for a log line, stable, the same for everyone.
//! * **Signature** `CHEF.wasm.sig` beside the component: one JSON object
//!   `{"format": "netdumplings-chef-signature-v1", "key_id", "public_key" (hex),
//!   "sha256" (hex, of the component), "signature" (hex, 64 bytes)}`. The signed message is
//!   `"netdumplings-chef-signature-v1\n"` followed by the 32 raw bytes of the component's
//!   SHA-256 (a domain prefix, so a chef signature can never be replayed as any other
//!   ed25519-signed statement). Hex fields hold hex digits only, and signatures are checked
//!   with ed25519-dalek's `verify_strict` (no small-order or non-canonical points).
//!
//! Why a detached file and not a custom section: the component stays byte-for-byte what
//! the build produced, so its SHA-256 (the chef's provenance) is the same signed or not,
//! signed by one key or re-signed by another; signing needs no wasm rewriting, and the
//! compiled-chef cache keeps its entry. The price is that the chef and its signature are two
//! files that can change separately; the kitchen's hot reload treats the pair as one version
//! (see `kitchen/src/chefs/reload.rs`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use dumpling::text::escape_path;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The `format` of a signature file, and the domain prefix of the signed message.
pub const SIGNATURE_FORMAT: &str = "netdumplings-chef-signature-v1";
/// Extension appended to the component's file name: `chef.wasm` → `chef.wasm.sig`.
pub const SIGNATURE_SUFFIX: &str = ".sig";
/// Extension of the public keys a kitchen trusts.
pub const PUBLIC_KEY_EXTENSION: &str = "pub";
/// Largest signature file read (a real one is ~400 bytes).
pub const MAX_SIGNATURE_BYTES: u64 = 4096;
/// Largest key file read (a PEM ed25519 key is ~120 bytes).
pub const MAX_KEY_BYTES: u64 = 16 * 1024;
/// Most public keys read from one trusted directory.
pub const MAX_TRUSTED_KEYS: usize = 1024;

/// A short, stable name of a public key: SHA-256 of its 32 raw bytes, first 8 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId([u8; 8]);

impl KeyId {
    /// The id of `key`.
    pub fn of(key: &VerifyingKey) -> KeyId {
        let digest = Sha256::digest(key.as_bytes());
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest[..8]);
        KeyId(id)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    // Hex digits only: `from_str_radix` alone also takes a sign (`+f` is 15), so one
    // signature would have several spellings.
    if s.len() != N * 2 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[i * 2..i * 2 + 2], 16).ok()?;
    }
    Some(out)
}

/// SHA-256 of a component.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Where the detached signature of `chef` lives: `chef.wasm` → `chef.wasm.sig`.
pub fn signature_path(chef: &Path) -> PathBuf {
    let mut name = chef.as_os_str().to_owned();
    name.push(SIGNATURE_SUFFIX);
    PathBuf::from(name)
}

/// The component a signature file belongs to (`x.wasm.sig` → `x.wasm`), if it is one.
pub fn chef_of_signature(sig: &Path) -> Option<PathBuf> {
    let name = sig.to_str()?;
    let chef = name.strip_suffix(SIGNATURE_SUFFIX)?;
    chef.ends_with(".wasm").then(|| PathBuf::from(chef))
}

fn message(component_sha256: &[u8; 32]) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIGNATURE_FORMAT.len() + 33);
    m.extend_from_slice(SIGNATURE_FORMAT.as_bytes());
    m.push(b'\n');
    m.extend_from_slice(component_sha256);
    m
}

/// Problems with key files.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file could not be read or written. (The OS error is in the message and not a
    /// `source`, so an error chain does not print it twice.) File names are printed escaped
    /// (`dumpling::text::escape_path`): they are anyone's, and a newline or a terminal
    /// escape in one must not forge or hide a line.
    #[error("{}: {error}", escape_path(path))]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// The file is not what it should be.
    #[error("{}: {why}", escape_path(path))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, and what to do.
        why: String,
    },
    /// The operating system's random source failed.
    #[error("cannot get random bytes for a new key: {0}")]
    Random(String),
}

fn invalid(path: &Path, why: impl Into<String>) -> KeyError {
    KeyError::Invalid {
        path: path.to_owned(),
        why: why.into(),
    }
}

pub use bounded_read::read_bounded;

fn read_text(path: &Path, limit: u64) -> Result<String, KeyError> {
    let bytes = read_bounded(path, limit).map_err(|error| KeyError::Io {
        path: path.to_owned(),
        error,
    })?;
    String::from_utf8(bytes).map_err(|_| invalid(path, "not a text (PEM) file"))
}

/// A new signing key from the operating system's random source.
pub fn generate_key() -> Result<SigningKey, KeyError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
    let key = SigningKey::from_bytes(&seed);
    seed.fill(0);
    Ok(key)
}

/// Write `key` as `PREFIX.key` (PKCS#8 PEM, created with mode 0600; never overwrites) and
/// `PREFIX.pub` (SPKI PEM). Returns both paths.
pub fn write_key_pair(prefix: &Path, key: &SigningKey) -> Result<(PathBuf, PathBuf), KeyError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    let private = with_suffix(prefix, ".key");
    let public = with_suffix(prefix, ".pub");
    for p in [&private, &public] {
        if p.exists() {
            return Err(invalid(
                p,
                "already exists; not overwriting a key (remove it first or pick another name)",
            ));
        }
    }
    // PKCS#8 v1 (no embedded public key): the form OpenSSL 3 reads as well.
    let pem = ed25519_dalek::pkcs8::KeypairBytes {
        secret_key: key.to_bytes(),
        public_key: None,
    }
    .to_pkcs8_pem(LineEnding::LF)
    .map_err(|e| invalid(&private, format!("cannot encode the key: {e}")))?;
    let pub_pem = key
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| invalid(&public, format!("cannot encode the public key: {e}")))?;
    let io = |path: &Path| {
        let path = path.to_owned();
        move |error| KeyError::Io { path, error }
    };
    // Mode 0600 from creation: there is no moment when the key is readable by others.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&private)
        .map_err(io(&private))?;
    f.write_all(pem.as_bytes()).map_err(io(&private))?;
    f.sync_all().map_err(io(&private))?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&public)
        .map_err(io(&public))?;
    f.write_all(pub_pem.as_bytes()).map_err(io(&public))?;
    Ok((private, public))
}

fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Read a private key (`nd-chef keygen`'s `.key`). Refused when group or others may read it.
pub fn read_signing_key(path: &Path) -> Result<SigningKey, KeyError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|error| KeyError::Io {
        path: path.to_owned(),
        error,
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(invalid(
            path,
            format!(
                "private key is accessible by others (mode {mode:04o}); run `chmod 600 {}`",
                escape_path(path)
            ),
        ));
    }
    let text = read_text(path, MAX_KEY_BYTES)?;
    SigningKey::from_pkcs8_pem(&text).map_err(|e| {
        invalid(
            path,
            format!(
                "not an ed25519 private key in PKCS#8 PEM ({e}); make one with `nd-chef keygen`"
            ),
        )
    })
}

/// Read a public key (`.pub`, SPKI PEM). A weak key is refused ([`parse_public_key`]).
pub fn read_public_key(path: &Path) -> Result<VerifyingKey, KeyError> {
    parse_public_key(path, &read_text(path, MAX_KEY_BYTES)?)
}

/// A public key from its PEM text (`path` is for messages). Weak (small-order) keys are
/// refused: such a key "verifies" a signature anyone can write without a private key (the
/// identity point with `R` = identity, `s` = 0), for any chef.
fn parse_public_key(path: &Path, text: &str) -> Result<VerifyingKey, KeyError> {
    let key = VerifyingKey::from_public_key_pem(text).map_err(|e| {
        invalid(
            path,
            format!("not an ed25519 public key in SPKI PEM ({e}); use the .pub file of `nd-chef keygen`"),
        )
    })?;
    if key.is_weak() {
        return Err(invalid(
            path,
            "a weak (small-order) ed25519 public key: anyone can forge signatures that it \
             accepts, for any chef; remove it (a key made by `nd-chef keygen` is never weak)",
        ));
    }
    Ok(key)
}

/// Read a public key of a trusted keys directory: as [`read_public_key`], and refused when
/// another user could have written it (checked on the opened file: owned by neither this
/// user nor root, or writable by group or others).
fn read_trusted_public_key(path: &Path) -> Result<VerifyingKey, KeyError> {
    let bytes = bounded_read::read_bounded_checked(path, MAX_KEY_BYTES, |meta| {
        match bounded_read::writable_by_others(meta, bounded_read::Owners::MeOrRoot) {
            None => Ok(()),
            Some(why) => Err(std::io::Error::other(format!(
                "a trusted key file {why}: whoever can change it decides which chefs run; \
                 `chown root` it and `chmod go-w` it, or remove it"
            ))),
        }
    })
    .map_err(|error| KeyError::Io {
        path: path.to_owned(),
        error,
    })?;
    let text = String::from_utf8(bytes).map_err(|_| invalid(path, "not a text (PEM) file"))?;
    parse_public_key(path, &text)
}

/// The key a signature file names (`public_key`, hex), if it is a usable one.
fn named_key(hex_key: &str) -> Result<VerifyingKey, Refusal> {
    let key = unhex::<32>(hex_key)
        .and_then(|b| VerifyingKey::from_bytes(&b).ok())
        .ok_or_else(|| Refusal::Malformed("its public_key is not an ed25519 key".into()))?;
    if key.is_weak() {
        return Err(Refusal::Malformed(
            "its public_key is a weak (small-order) ed25519 key, which accepts forged signatures"
                .into(),
        ));
    }
    Ok(key)
}

/// Write `bytes` to `out` atomically: into a new temporary file beside it (a random name,
/// created with `O_CREAT|O_EXCL`, so never an existing file and never through a symbolic
/// link someone planted there), then renamed over `out` (`rename` replaces a link at `out`
/// itself, it does not follow it). The temporary file is removed on failure.
pub fn write_file_atomically(out: &Path, bytes: &[u8], mode: u32) -> Result<(), KeyError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    let name = out
        .file_name()
        .ok_or_else(|| invalid(out, "not a file name"))?;
    let mut random = [0u8; 8];
    getrandom::fill(&mut random).map_err(|e| KeyError::Random(e.to_string()))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}.tmp", hex(&random)));
    let tmp = out.with_file_name(tmp_name);
    let io = |path: &Path| {
        let path = path.to_owned();
        move |error| KeyError::Io { path, error }
    };
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .map_err(io(&tmp))?;
        f.write_all(bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        std::fs::rename(&tmp, out).map_err(io(out))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The content of a `CHEF.wasm.sig` file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignatureFile {
    /// Always [`SIGNATURE_FORMAT`].
    pub format: String,
    /// The signer's [`KeyId`].
    pub key_id: String,
    /// The signer's public key, 32 bytes as hex (lets a kitchen without trusted keys still
    /// report who signed; trust comes only from `--trusted-chef-keys`).
    pub public_key: String,
    /// SHA-256 of the component, hex.
    pub sha256: String,
    /// The ed25519 signature, 64 bytes as hex.
    pub signature: String,
}

impl SignatureFile {
    /// Sign a component's bytes.
    pub fn sign(component: &[u8], key: &SigningKey) -> SignatureFile {
        let sha = sha256(component);
        let signature = key.sign(&message(&sha));
        let public = key.verifying_key();
        SignatureFile {
            format: SIGNATURE_FORMAT.to_owned(),
            key_id: KeyId::of(&public).to_string(),
            public_key: hex(public.as_bytes()),
            sha256: hex(&sha),
            signature: hex(&signature.to_bytes()),
        }
    }

    /// The file's text (pretty JSON and a final newline).
    pub fn to_text(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }

    /// Parse a signature file's bytes.
    pub fn parse(bytes: &[u8]) -> Result<SignatureFile, Refusal> {
        let sig: SignatureFile = serde_json::from_slice(bytes)
            .map_err(|e| Refusal::Malformed(format!("not a signature file ({e})")))?;
        if sig.format != SIGNATURE_FORMAT {
            return Err(Refusal::Malformed(format!(
                "unknown signature format {:?} (expected {SIGNATURE_FORMAT:?})",
                sig.format.chars().take(64).collect::<String>()
            )));
        }
        Ok(sig)
    }

    /// Check this signature against `component`, with the public key it names; returns that
    /// key's id. Says nothing about trust (see [`TrustedKeys::check`]).
    pub fn verify(&self, component: &[u8]) -> Result<KeyId, Refusal> {
        let public = named_key(&self.public_key)?;
        let id = KeyId::of(&public);
        if self.key_id != id.to_string() {
            return Err(Refusal::Malformed(format!(
                "its key_id does not match its public key (which has key id {id})"
            )));
        }
        self.verify_with(component, &public)?;
        Ok(id)
    }

    fn verify_with(&self, component: &[u8], key: &VerifyingKey) -> Result<(), Refusal> {
        let id = KeyId::of(key);
        let actual = sha256(component);
        let signed = unhex::<32>(&self.sha256)
            .ok_or_else(|| Refusal::Malformed("its sha256 is not 64 hex digits".into()))?;
        if signed != actual {
            return Err(Refusal::WrongComponent {
                key_id: id,
                signed: hex(&signed),
                actual: hex(&actual),
            });
        }
        let signature = unhex::<64>(&self.signature)
            .map(|b| ed25519_dalek::Signature::from_bytes(&b))
            .ok_or_else(|| Refusal::Malformed("its signature is not 128 hex digits".into()))?;
        // Strict: refuses small-order keys and `R`, and non-canonical encodings, which
        // plain `verify` accepts (a weak key would then verify forged signatures).
        key.verify_strict(&message(&actual), &signature)
            .map_err(|_| Refusal::BadSignature { key_id: id })
    }
}

/// Why a chef is not trusted. The `Display` text is the reason a kitchen logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No `CHEF.wasm.sig` beside it.
    #[error("unsigned: no signature file {}", .0.display())]
    Unsigned(PathBuf),
    /// The signature file cannot be read.
    #[error("cannot read its signature file: {0}")]
    Unreadable(String),
    /// The signature file is not one.
    #[error("malformed signature file: {0}")]
    Malformed(String),
    /// The signature is for other bytes (the chef was changed after signing, or replaced
    /// and its signature not yet).
    #[error("the component does not match its signature (signed sha256 {signed}, file sha256 {actual}): changed after signing, or its new signature has not landed yet")]
    WrongComponent {
        /// The signer.
        key_id: KeyId,
        /// The hash that was signed.
        signed: String,
        /// The file's hash.
        actual: String,
    },
    /// The signature does not verify.
    #[error("bad signature: it does not verify with the key it names")]
    BadSignature {
        /// The key it claims.
        key_id: KeyId,
    },
    /// A valid signature, by a key that is not trusted.
    #[error("signed by a key that is not in the trusted keys directory")]
    UntrustedKey {
        /// The signer.
        key_id: KeyId,
    },
}

impl Refusal {
    /// The key the signature names, when it names one.
    pub fn key_id(&self) -> Option<KeyId> {
        match self {
            Refusal::WrongComponent { key_id, .. }
            | Refusal::BadSignature { key_id }
            | Refusal::UntrustedKey { key_id } => Some(*key_id),
            _ => None,
        }
    }
}

/// Read the signature beside `chef`: `Ok(None)` when there is none.
pub fn read_signature(chef: &Path) -> Result<Option<Vec<u8>>, Refusal> {
    let path = signature_path(chef);
    match read_bounded(&path, MAX_SIGNATURE_BYTES) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Refusal::Unreadable(format!("{}: {e}", path.display()))),
    }
}

/// The public keys a kitchen trusts (`--trusted-chef-keys DIR`: every `*.pub` in it).
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys {
    keys: BTreeMap<KeyId, (VerifyingKey, PathBuf)>,
}

impl TrustedKeys {
    /// Read every `*.pub` in `dir` (sorted; not recursive). Any unreadable or invalid key
    /// file is an error (a typo in a trust directory must not pass silently), and so is a
    /// directory with no key at all, a weak key, and a directory or key file another user
    /// could change (see the crate documentation: as ssh's `StrictModes`).
    pub fn load_dir(dir: &Path) -> Result<TrustedKeys, KeyError> {
        use bounded_read::Problem;
        if let Err(e) = bounded_read::check_private_dir(dir, bounded_read::Owners::MeOrRoot) {
            let shown = escape_path(&e.path);
            let fix = match e.kind {
                Problem::Owner => format!(
                    "`chown root {shown}` (or to this user), or use a folder only this user and \
                     root can write"
                ),
                Problem::Writable => format!("run `chmod go-w {shown}`"),
                Problem::Unusable => {
                    return Err(KeyError::Io {
                        path: e.path,
                        error: std::io::Error::other(e.why),
                    })
                }
            };
            let what = if e.is_target {
                "the trusted chef keys folder is".to_owned()
            } else {
                format!("a folder above it, {}, is", escape_path(&e.path))
            };
            return Err(invalid(
                dir,
                format!(
                    "{what} {}: whoever can change it can add a key and have their chefs run; \
                     {fix}",
                    e.why
                ),
            ));
        }
        let entries = std::fs::read_dir(dir).map_err(|error| KeyError::Io {
            path: dir.to_owned(),
            error,
        })?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == PUBLIC_KEY_EXTENSION))
            .collect();
        files.sort();
        if files.len() > MAX_TRUSTED_KEYS {
            return Err(invalid(
                dir,
                format!("more than {MAX_TRUSTED_KEYS} public keys"),
            ));
        }
        let mut keys = BTreeMap::new();
        for path in files {
            let key = read_trusted_public_key(&path)?;
            keys.insert(KeyId::of(&key), (key, path));
        }
        if keys.is_empty() {
            return Err(invalid(
                dir,
                "no public keys (*.pub) in the trusted chef keys directory; copy the .pub file \
                 of `nd-chef keygen` there",
            ));
        }
        Ok(TrustedKeys { keys })
    }

    /// The trusted keys: id and file.
    pub fn list(&self) -> impl Iterator<Item = (KeyId, &Path)> {
        self.keys.iter().map(|(id, (_, p))| (*id, p.as_path()))
    }

    /// Whether `component` carries a valid signature (`signature`: the bytes of its `.sig`,
    /// `None` when absent) by one of these keys; `sig_path` is for the message.
    pub fn check(
        &self,
        component: &[u8],
        signature: Option<&[u8]>,
        sig_path: &Path,
    ) -> Result<KeyId, Refusal> {
        let Some(bytes) = signature else {
            return Err(Refusal::Unsigned(sig_path.to_owned()));
        };
        let sig = SignatureFile::parse(bytes)?;
        let public = named_key(&sig.public_key)?;
        let id = KeyId::of(&public);
        // Trust is decided by our copy of the key, never by what the file carries.
        let Some((trusted, _)) = self.keys.get(&id) else {
            // Still say whether the signature itself holds: a bad signature is worse news.
            sig.verify(component)?;
            return Err(Refusal::UntrustedKey { key_id: id });
        };
        sig.verify_with(component, trusted)?;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn trusted(keys: &[&SigningKey]) -> TrustedKeys {
        TrustedKeys {
            keys: keys
                .iter()
                .map(|k| {
                    let v = k.verifying_key();
                    (KeyId::of(&v), (v, PathBuf::from("k.pub")))
                })
                .collect(),
        }
    }

    #[test]
    fn signed_unsigned_tampered_and_wrong_key() {
        let chef = b"\0asm\x0d\0\x01\0 pretend component".to_vec();
        let (a, b) = (key(1), key(2));
        let sig = SignatureFile::sign(&chef, &a).to_text();
        let ka = trusted(&[&a]);
        let p = Path::new("c.wasm.sig");
        let id = ka.check(&chef, Some(sig.as_bytes()), p).unwrap();
        assert_eq!(id, KeyId::of(&a.verifying_key()));
        assert_eq!(id.to_string().len(), 16);
        assert!(matches!(
            ka.check(&chef, None, p),
            Err(Refusal::Unsigned(_))
        ));
        let mut tampered = chef.clone();
        tampered[12] ^= 1;
        let e = ka.check(&tampered, Some(sig.as_bytes()), p).unwrap_err();
        assert!(matches!(e, Refusal::WrongComponent { .. }), "{e}");
        assert_eq!(e.key_id(), Some(id));
        let by_b = SignatureFile::sign(&chef, &b).to_text();
        let e = ka.check(&chef, Some(by_b.as_bytes()), p).unwrap_err();
        assert_eq!(
            e,
            Refusal::UntrustedKey {
                key_id: KeyId::of(&b.verifying_key())
            }
        );
        // A forged signature field: right hash, right key, wrong bytes.
        let mut forged = SignatureFile::sign(&chef, &a);
        forged.signature = hex(&[7u8; 64]);
        let e = ka
            .check(&chef, Some(forged.to_text().as_bytes()), p)
            .unwrap_err();
        assert!(matches!(e, Refusal::BadSignature { .. }), "{e}");
        // Garbage.
        let e = ka.check(&chef, Some(b"\x1b[31mnope"), p).unwrap_err();
        assert!(matches!(e, Refusal::Malformed(_)), "{e}");
    }

    #[test]
    fn signature_paths() {
        let p = Path::new("dir/x.wasm");
        assert_eq!(signature_path(p), Path::new("dir/x.wasm.sig"));
        assert_eq!(chef_of_signature(&signature_path(p)).as_deref(), Some(p));
        assert_eq!(chef_of_signature(Path::new("x.txt.sig")), None);
        assert_eq!(chef_of_signature(Path::new("x.wasm")), None);
    }

    #[test]
    fn key_files_round_trip_with_private_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("chef-trust-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let k = generate_key().unwrap();
        let (private, public) = write_key_pair(&dir.join("me"), &k).unwrap();
        let mode = std::fs::metadata(&private).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(read_signing_key(&private).unwrap().to_bytes(), k.to_bytes());
        assert_eq!(read_public_key(&public).unwrap(), k.verifying_key());
        assert!(
            write_key_pair(&dir.join("me"), &k).is_err(),
            "never overwrites"
        );
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = read_signing_key(&private).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
        let keys = TrustedKeys::load_dir(&dir).unwrap();
        assert_eq!(keys.list().count(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("chef-trust-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// The SPKI PEM of raw public key bytes (even ones that are no good key).
    fn pub_pem(raw: &[u8; 32]) -> String {
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut der = vec![
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
        ];
        der.extend_from_slice(raw);
        let mut b64 = String::new();
        for c in der.chunks(3) {
            let n = (c[0] as u32) << 16
                | (*c.get(1).unwrap_or(&0) as u32) << 8
                | *c.get(2).unwrap_or(&0) as u32;
            for i in 0..=c.len() {
                b64.push(alphabet[(n >> (18 - 6 * i) & 63) as usize] as char);
            }
            b64.push_str(&"=".repeat(3 - c.len()));
        }
        format!("-----BEGIN PUBLIC KEY-----\n{b64}\n-----END PUBLIC KEY-----\n")
    }

    /// Probe F6: a `.pub` holding the identity point (small order) was trusted, and then a
    /// "signature" anyone can write (R = identity, s = 0) verified for any chef.
    #[test]
    fn weak_keys_are_refused_and_forged_signatures_never_verify() {
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let dir = scratch("weak");
        let weak = dir.join("weak.pub");
        std::fs::write(&weak, pub_pem(&identity)).unwrap();
        // The PEM itself is well formed: a real key in the same wrapper reads back.
        let real = key(3).verifying_key();
        std::fs::write(dir.join("real.pem"), pub_pem(real.as_bytes())).unwrap();
        assert_eq!(read_public_key(&dir.join("real.pem")).unwrap(), real);
        let e = read_public_key(&weak).unwrap_err().to_string();
        assert!(
            e.contains("weak.pub") && e.contains("weak (small-order)"),
            "{e}"
        );
        let e = TrustedKeys::load_dir(&dir).unwrap_err().to_string();
        assert!(e.contains("weak.pub") && e.contains("weak"), "{e}");

        let chef = b"\0asm\x0d\0\x01\0 any chef at all".to_vec();
        let mut signature = [0u8; 64];
        signature[0] = 1; // R = identity, s = 0
        let forged = SignatureFile {
            format: SIGNATURE_FORMAT.into(),
            key_id: KeyId::of(&VerifyingKey::from_bytes(&identity).unwrap()).to_string(),
            public_key: hex(&identity),
            sha256: hex(&sha256(&chef)),
            signature: hex(&signature),
        };
        let e = forged.verify(&chef).unwrap_err();
        assert!(matches!(e, Refusal::Malformed(_)), "{e}");
        assert!(e.to_string().contains("weak"), "{e}");
        // Even with the weak key in a trust store (as before the fix), strict verification
        // refuses the forgery.
        let v = VerifyingKey::from_bytes(&identity).unwrap();
        let store = TrustedKeys {
            keys: [(KeyId::of(&v), (v, PathBuf::from("weak.pub")))].into(),
        };
        let p = Path::new("c.wasm.sig");
        assert!(store
            .check(&chef, Some(forged.to_text().as_bytes()), p)
            .is_err());
        assert!(forged.verify_with(&chef, &v).is_err(), "verify_strict");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A sign in a hex field (`+f`) was read as a digit, so one signature had several spellings.
    #[test]
    fn hex_fields_hold_hex_digits_only() {
        assert_eq!(unhex::<2>("0aFf"), Some([0x0a, 0xff]));
        for bad in ["+aff", "0a+f", "-0ff", " aff", "0x0f", "0aF"] {
            assert_eq!(unhex::<2>(bad), None, "{bad}");
        }
        let chef = b"\0asm\x0d\0\x01\0 chef".to_vec();
        let a = key(1);
        let mut sig = SignatureFile::sign(&chef, &a);
        let i = sig.signature.find('0').expect("a 0 digit");
        sig.signature.replace_range(i..i + 1, "+");
        let e = trusted(&[&a])
            .check(
                &chef,
                Some(sig.to_text().as_bytes()),
                Path::new("c.wasm.sig"),
            )
            .unwrap_err();
        assert!(matches!(e, Refusal::Malformed(_)), "{e}");
    }

    /// Probe F8: a trusted keys folder (or key file) others can write was trusted silently.
    #[test]
    fn a_trusted_keys_folder_or_key_others_can_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path, m: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
        };
        let dir = scratch("perm");
        let keys = dir.join("keys");
        std::fs::create_dir_all(&keys).unwrap();
        std::fs::write(
            keys.join("a.pub"),
            pub_pem(key(1).verifying_key().as_bytes()),
        )
        .unwrap();
        mode(&keys, 0o755);
        mode(&keys.join("a.pub"), 0o644);
        assert_eq!(TrustedKeys::load_dir(&keys).unwrap().list().count(), 1);
        mode(&keys, 0o777);
        let e = TrustedKeys::load_dir(&keys).unwrap_err().to_string();
        assert!(
            e.contains("writable by group or others") && e.contains("chmod go-w"),
            "{e}"
        );
        mode(&keys, 0o1777); // sticky does not help the folder itself
        assert!(TrustedKeys::load_dir(&keys).is_err());
        mode(&keys, 0o755);
        mode(&keys.join("a.pub"), 0o666);
        let e = TrustedKeys::load_dir(&keys).unwrap_err().to_string();
        assert!(e.contains("a.pub") && e.contains("mode 0666"), "{e}");
        mode(&keys.join("a.pub"), 0o644);
        // A folder above it others can write (not sticky) could swap the whole folder.
        mode(&dir, 0o777);
        let e = TrustedKeys::load_dir(&keys).unwrap_err().to_string();
        assert!(e.contains("a folder above it"), "{e}");
        mode(&dir, 0o755);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Probe F4: the signature was written through `CHEF.wasm.sig.tmp` opened with O_TRUNC,
    /// following a link planted there.
    #[test]
    fn atomic_writes_never_follow_a_planted_link() {
        let dir = scratch("atomic");
        let victim = dir.join("victim.txt");
        std::fs::write(&victim, "precious\n").unwrap();
        let out = dir.join("chef.wasm.sig");
        std::os::unix::fs::symlink(&victim, dir.join("chef.wasm.sig.tmp")).unwrap();
        write_file_atomically(&out, b"sig one\n", 0o644).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"sig one\n");
        // The output itself a link: replaced, not written through.
        std::fs::remove_file(&out).unwrap();
        std::os::unix::fs::symlink(&victim, &out).unwrap();
        write_file_atomically(&out, b"sig two\n", 0o644).unwrap();
        assert!(!std::fs::symlink_metadata(&out).unwrap().is_symlink());
        assert_eq!(std::fs::read(&out).unwrap(), b"sig two\n");
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious\n");
        // No temporary file left behind.
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn key_errors_escape_file_names() {
        let e = read_public_key(Path::new("/nonexistent/a\x1b[31m\nb.pub")).unwrap_err();
        let text = e.to_string();
        assert!(!text.chars().any(char::is_control), "{text:?}");
        assert!(text.contains("a\\x1b[31m\\nb.pub"), "{text}");
    }
}
