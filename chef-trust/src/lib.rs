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
//!   `{"format": "netdumplings-chef-signature-v2", "key_id", "public_key" (hex),
//!   "file_name", "signed_at", "sha256" (hex, of the component), "signature" (hex, 64
//!   bytes)}`. `file_name` is the base name the chef is signed for (`dns.wasm`: UTF-8, 1 to
//!   255 bytes, no `/`, no NUL, not `.` or `..`); `signed_at` is the signer's clock in Unix
//!   seconds (`nd-chef sign --signed-at N` sets it, for tests and reproducible builds). The
//!   signed message is, byte for byte:
//!
//!   ```text
//!   "netdumplings-chef-signature-v2\n"     31 bytes, the domain prefix
//!   len(file_name)                         4 bytes, unsigned big-endian
//!   file_name                              len(file_name) bytes, UTF-8
//!   signed_at                              8 bytes, unsigned big-endian
//!   SHA-256 of the component               32 raw bytes
//!   ```
//!
//!   The length prefix makes the split unambiguous (no name/time pair reads as another).
//!   A kitchen accepts a v2 signature only for a file of that base name (a signed chef
//!   copied to another name is refused), and refuses a version signed earlier than one it
//!   already ran under the same key and file name (a rollback; `kitchen/src/chef_host/
//!   rollback.rs`): to go back to an older build on purpose, sign it again (a new
//!   `signed_at`).
//! * **Signature, v1** (`"format": "netdumplings-chef-signature-v1"`, no `file_name` nor
//!   `signed_at`): the signed message is `"netdumplings-chef-signature-v1\n"` followed by the
//!   32 raw bytes of the component's SHA-256. Still verified, for existing deployments, but
//!   it binds neither a file name nor a time: whoever can write the chef folder can put back
//!   an older signed version or copy a signed chef under another name. A kitchen warns about
//!   every v1-signed chef it loads, and refuses one for a file name whose v2-signed version
//!   it already ran. `nd-chef sign` writes v2 only.
//!
//! In both formats the domain prefix keeps a chef signature from ever being replayed as any
//! other ed25519-signed statement. Hex fields hold hex digits only, and signatures are
//! checked with ed25519-dalek's `verify_strict` (no small-order or non-canonical points).
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

/// The `format` of the signature files `nd-chef sign` writes, and the domain prefix of
/// their signed message.
pub const SIGNATURE_FORMAT: &str = "netdumplings-chef-signature-v2";
/// The older format (no file name, no signing time): still verified, never written.
pub const SIGNATURE_FORMAT_V1: &str = "netdumplings-chef-signature-v1";
/// Longest file name a signature can be made for (`NAME_MAX` on Linux).
pub const MAX_FILE_NAME_BYTES: usize = 255;
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

/// The v1 signed message: prefix, newline, the 32 hash bytes.
fn message_v1(component_sha256: &[u8; 32]) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIGNATURE_FORMAT_V1.len() + 33);
    m.extend_from_slice(SIGNATURE_FORMAT_V1.as_bytes());
    m.push(b'\n');
    m.extend_from_slice(component_sha256);
    m
}

/// The v2 signed message (see the crate documentation): prefix, newline, the file name's
/// length (u32, big-endian) and bytes, `signed_at` (u64, big-endian), the 32 hash bytes.
/// `file_name` is at most [`MAX_FILE_NAME_BYTES`] long (checked before this is called), so
/// the length always fits.
pub fn message_v2(file_name: &str, signed_at: u64, component_sha256: &[u8; 32]) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIGNATURE_FORMAT.len() + 1 + 4 + file_name.len() + 8 + 32);
    m.extend_from_slice(SIGNATURE_FORMAT.as_bytes());
    m.push(b'\n');
    m.extend_from_slice(&(file_name.len() as u32).to_be_bytes());
    m.extend_from_slice(file_name.as_bytes());
    m.extend_from_slice(&signed_at.to_be_bytes());
    m.extend_from_slice(component_sha256);
    m
}

/// Why `name` cannot be the file name a chef is signed for, if it cannot: a base name
/// (no `/`, not `.` or `..`), no NUL, 1 to [`MAX_FILE_NAME_BYTES`] bytes.
pub fn file_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() || name == "." || name == ".." {
        Some("not a file name")
    } else if name.len() > MAX_FILE_NAME_BYTES {
        Some("longer than 255 bytes")
    } else if name.contains('/') || name.contains('\0') {
        Some("a file name has no '/' and no NUL")
    } else {
        None
    }
}

/// The base name of `chef` as the text a signature names, or why it cannot be signed for.
pub fn signed_file_name(chef: &Path) -> Result<String, SignError> {
    let bad = |why: &'static str| SignError::FileName {
        name: escape_path(chef),
        why,
    };
    let name = chef.file_name().ok_or_else(|| bad("no file name"))?;
    let name = name
        .to_str()
        .ok_or_else(|| bad("the file name is not UTF-8"))?;
    match file_name_problem(name) {
        Some(why) => Err(bad(why)),
        None => Ok(name.to_owned()),
    }
}

/// Why a chef cannot be signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// Its file name cannot be put in a signature.
    #[error("cannot sign for the file name {name}: {why}")]
    FileName {
        /// The path (escaped).
        name: String,
        /// What is wrong.
        why: &'static str,
    },
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
/// The key types, for callers that make or check keys without depending on ed25519-dalek.
pub use ed25519_dalek::{SigningKey as Ed25519SigningKey, VerifyingKey as Ed25519VerifyingKey};

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
    /// [`SIGNATURE_FORMAT`] (v2), or [`SIGNATURE_FORMAT_V1`].
    pub format: String,
    /// The signer's [`KeyId`].
    pub key_id: String,
    /// The signer's public key, 32 bytes as hex (lets a kitchen without trusted keys still
    /// report who signed; trust comes only from `--trusted-chef-keys`).
    pub public_key: String,
    /// v2: the base name of the file the chef is signed for (`dns.wasm`). Absent in v1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
    /// v2: when it was signed, Unix seconds of the signer's clock. Absent in v1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_at: Option<u64>,
    /// SHA-256 of the component, hex.
    pub sha256: String,
    /// The ed25519 signature, 64 bytes as hex.
    pub signature: String,
}

/// What a v2 signature binds besides the component: the file name and the signing time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedFor {
    /// The base name of the file it is signed for.
    pub file_name: String,
    /// When it was signed (Unix seconds, the signer's clock).
    pub signed_at: u64,
}

/// A signature that holds: who signed, and (v2) for which file name and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The signer.
    pub key_id: KeyId,
    /// `None` for a v1 signature (which binds neither a name nor a time).
    pub signed_for: Option<SignedFor>,
}

impl SignatureFile {
    /// Sign a component's bytes (v2) for the file name `file_name` (a base name, see
    /// [`file_name_problem`]) at `signed_at` (Unix seconds).
    pub fn sign(
        component: &[u8],
        key: &SigningKey,
        file_name: &str,
        signed_at: u64,
    ) -> Result<SignatureFile, SignError> {
        if let Some(why) = file_name_problem(file_name) {
            return Err(SignError::FileName {
                name: escape_path(Path::new(file_name)),
                why,
            });
        }
        let sha = sha256(component);
        let signature = key.sign(&message_v2(file_name, signed_at, &sha));
        let public = key.verifying_key();
        Ok(SignatureFile {
            format: SIGNATURE_FORMAT.to_owned(),
            key_id: KeyId::of(&public).to_string(),
            public_key: hex(public.as_bytes()),
            file_name: Some(file_name.to_owned()),
            signed_at: Some(signed_at),
            sha256: hex(&sha),
            signature: hex(&signature.to_bytes()),
        })
    }

    /// Sign in the old v1 format (no file name, no time). `nd-chef sign` never does; this is
    /// for tests of the kitchen's handling of existing v1 signatures.
    pub fn sign_v1(component: &[u8], key: &SigningKey) -> SignatureFile {
        let sha = sha256(component);
        let signature = key.sign(&message_v1(&sha));
        let public = key.verifying_key();
        SignatureFile {
            format: SIGNATURE_FORMAT_V1.to_owned(),
            key_id: KeyId::of(&public).to_string(),
            public_key: hex(public.as_bytes()),
            file_name: None,
            signed_at: None,
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

    /// Parse a signature file's bytes: v2 with its `file_name` and `signed_at`, or v1
    /// without them (a v1 file carrying either is refused: they would not be signed).
    pub fn parse(bytes: &[u8]) -> Result<SignatureFile, Refusal> {
        let sig: SignatureFile = serde_json::from_slice(bytes)
            .map_err(|e| Refusal::Malformed(format!("not a signature file ({e})")))?;
        match sig.format.as_str() {
            SIGNATURE_FORMAT => {
                let (Some(name), Some(_)) = (&sig.file_name, sig.signed_at) else {
                    return Err(Refusal::Malformed(
                        "a v2 signature without its file_name or signed_at".into(),
                    ));
                };
                if let Some(why) = file_name_problem(name) {
                    return Err(Refusal::Malformed(format!("its file_name is {why}")));
                }
            }
            SIGNATURE_FORMAT_V1 => {
                if sig.file_name.is_some() || sig.signed_at.is_some() {
                    return Err(Refusal::Malformed(
                        "a v1 signature with a file_name or signed_at (v1 does not sign them)"
                            .into(),
                    ));
                }
            }
            other => {
                return Err(Refusal::Malformed(format!(
                    "unknown signature format {:?} (expected {SIGNATURE_FORMAT:?})",
                    other.chars().take(64).collect::<String>()
                )))
            }
        }
        Ok(sig)
    }

    /// Check this signature against `component`, the file `chef` (whose base name a v2
    /// signature must name), with the public key it names; returns that key's id and what
    /// it binds. Says nothing about trust (see [`TrustedKeys::check`]).
    pub fn verify(&self, component: &[u8], chef: &Path) -> Result<Verified, Refusal> {
        let public = named_key(&self.public_key)?;
        let id = KeyId::of(&public);
        if self.key_id != id.to_string() {
            return Err(Refusal::Malformed(format!(
                "its key_id does not match its public key (which has key id {id})"
            )));
        }
        self.verify_with(component, &public, chef)
    }

    fn verify_with(
        &self,
        component: &[u8],
        key: &VerifyingKey,
        chef: &Path,
    ) -> Result<Verified, Refusal> {
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
        let signed_for = match (&self.file_name, self.signed_at) {
            (Some(name), Some(at)) if self.format == SIGNATURE_FORMAT => Some(SignedFor {
                file_name: name.clone(),
                signed_at: at,
            }),
            (None, None) if self.format == SIGNATURE_FORMAT_V1 => None,
            // `parse` refuses these; a hand-built value may not have gone through it.
            _ => {
                return Err(Refusal::Malformed(
                    "its format, file_name and signed_at do not go together".into(),
                ))
            }
        };
        let message = match &signed_for {
            Some(s) => message_v2(&s.file_name, s.signed_at, &actual),
            None => message_v1(&actual),
        };
        // Strict: refuses small-order keys and `R`, and non-canonical encodings, which
        // plain `verify` accepts (a weak key would then verify forged signatures).
        key.verify_strict(&message, &signature)
            .map_err(|_| Refusal::BadSignature { key_id: id })?;
        // After the signature holds: only a genuine signature's name is worth reporting.
        if let Some(s) = &signed_for {
            let actual_name = chef.file_name().unwrap_or_default();
            if actual_name.as_encoded_bytes() != s.file_name.as_bytes() {
                return Err(Refusal::WrongFile {
                    key_id: id,
                    signed_for: escape_path(Path::new(&s.file_name)),
                    actual: escape_path(Path::new(actual_name)),
                });
            }
        }
        Ok(Verified {
            key_id: id,
            signed_for,
        })
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
    /// A valid v2 signature for a file of another name: the chef was copied or renamed.
    #[error("signed for the file name {signed_for}, not {actual}: a signed chef copied or renamed to another name is refused; sign it for this name (`nd-chef sign`)")]
    WrongFile {
        /// The signer.
        key_id: KeyId,
        /// The name it is signed for (escaped).
        signed_for: String,
        /// The file's name (escaped).
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
            | Refusal::WrongFile { key_id, .. }
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

    /// Whether `component`, the file `chef`, carries a valid signature (`signature`: the
    /// bytes of its `.sig`, `None` when absent) by one of these keys. A v2 signature must
    /// name `chef`'s base name. Rollback is the caller's to judge (it needs memory of what
    /// ran): see [`Verified::signed_for`].
    pub fn check(
        &self,
        component: &[u8],
        signature: Option<&[u8]>,
        chef: &Path,
    ) -> Result<Verified, Refusal> {
        let Some(bytes) = signature else {
            return Err(Refusal::Unsigned(signature_path(chef)));
        };
        let sig = SignatureFile::parse(bytes)?;
        let public = named_key(&sig.public_key)?;
        let id = KeyId::of(&public);
        // Trust is decided by our copy of the key, never by what the file carries.
        let Some((trusted, _)) = self.keys.get(&id) else {
            // Still say whether the signature itself holds: a bad signature is worse news.
            sig.verify(component, chef)?;
            return Err(Refusal::UntrustedKey { key_id: id });
        };
        sig.verify_with(component, trusted, chef)
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
        let sig = SignatureFile::sign(&chef, &a, "c.wasm", 1000)
            .unwrap()
            .to_text();
        let ka = trusted(&[&a]);
        let p = Path::new("c.wasm");
        let id = ka.check(&chef, Some(sig.as_bytes()), p).unwrap().key_id;
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
        let by_b = SignatureFile::sign(&chef, &b, "c.wasm", 1000)
            .unwrap()
            .to_text();
        let e = ka.check(&chef, Some(by_b.as_bytes()), p).unwrap_err();
        assert_eq!(
            e,
            Refusal::UntrustedKey {
                key_id: KeyId::of(&b.verifying_key())
            }
        );
        // A forged signature field: right hash, right key, wrong bytes.
        let mut forged = SignatureFile::sign(&chef, &a, "c.wasm", 1000).unwrap();
        forged.signature = hex(&[7u8; 64]);
        let e = ka
            .check(&chef, Some(forged.to_text().as_bytes()), p)
            .unwrap_err();
        assert!(matches!(e, Refusal::BadSignature { .. }), "{e}");
        // Garbage.
        let e = ka.check(&chef, Some(b"\x1b[31mnope"), p).unwrap_err();
        assert!(matches!(e, Refusal::Malformed(_)), "{e}");
    }

    /// The v2 message, byte for byte as the crate documentation describes it.
    #[test]
    fn v2_message_bytes() {
        let sha = [0xabu8; 32];
        let m = message_v2("dns.wasm", 0x0102_0304_0506_0708, &sha);
        let mut want = b"netdumplings-chef-signature-v2\n".to_vec();
        want.extend_from_slice(&[0, 0, 0, 8]);
        want.extend_from_slice(b"dns.wasm");
        want.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        want.extend_from_slice(&sha);
        assert_eq!(m, want);
        // The length prefix: a name ending in digits never reads as another name and time.
        assert_ne!(message_v2("a", 0x31, &sha), message_v2("a1", 0, &sha));
    }

    /// A v2 signature binds the file name and the signing time: a copy under another name,
    /// or a changed `signed_at`, is refused; v1 signatures still verify.
    #[test]
    fn v2_binds_the_file_name_and_signing_time_and_v1_still_verifies() {
        let chef = b"\0asm\x0d\0\x01\0 chef".to_vec();
        let a = key(1);
        let ka = trusted(&[&a]);
        let id = KeyId::of(&a.verifying_key());
        let sig = SignatureFile::sign(&chef, &a, "dns.wasm", 1_700_000_000).unwrap();
        let text = sig.to_text();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["format"], SIGNATURE_FORMAT);
        assert_eq!(json["file_name"], "dns.wasm");
        assert_eq!(json["signed_at"], 1_700_000_000u64);
        let v = ka
            .check(&chef, Some(text.as_bytes()), Path::new("dir/dns.wasm"))
            .unwrap();
        assert_eq!(
            v,
            Verified {
                key_id: id,
                signed_for: Some(SignedFor {
                    file_name: "dns.wasm".into(),
                    signed_at: 1_700_000_000
                })
            }
        );
        // Copied to another name: refused, naming both.
        let e = ka
            .check(&chef, Some(text.as_bytes()), Path::new("dir/http.wasm"))
            .unwrap_err();
        assert!(matches!(e, Refusal::WrongFile { .. }), "{e}");
        let shown = e.to_string();
        assert!(
            shown.contains("dns.wasm") && shown.contains("http.wasm"),
            "{shown}"
        );
        assert_eq!(e.key_id(), Some(id));
        // The file name edited in the signature file: the signature no longer holds.
        let mut renamed = sig.clone();
        renamed.file_name = Some("http.wasm".into());
        let e = ka
            .check(
                &chef,
                Some(renamed.to_text().as_bytes()),
                Path::new("http.wasm"),
            )
            .unwrap_err();
        assert!(matches!(e, Refusal::BadSignature { .. }), "{e}");
        // A tampered signing time (made newer to pass a rollback check): bad signature.
        let mut later = sig.clone();
        later.signed_at = Some(1_800_000_000);
        let e = ka
            .check(
                &chef,
                Some(later.to_text().as_bytes()),
                Path::new("dns.wasm"),
            )
            .unwrap_err();
        assert!(matches!(e, Refusal::BadSignature { .. }), "{e}");
        // v2 without its fields, or v1 with them: malformed.
        let mut bare = sig.clone();
        bare.signed_at = None;
        let e = SignatureFile::parse(bare.to_text().as_bytes()).unwrap_err();
        assert!(matches!(e, Refusal::Malformed(_)), "{e}");
        let mut v1_plus = SignatureFile::sign_v1(&chef, &a);
        v1_plus.file_name = Some("dns.wasm".into());
        let e = SignatureFile::parse(v1_plus.to_text().as_bytes()).unwrap_err();
        assert!(matches!(e, Refusal::Malformed(_)), "{e}");
        // v1: still verifies, under any name, and says it binds nothing more.
        let v1 = SignatureFile::sign_v1(&chef, &a).to_text();
        assert!(v1.contains(SIGNATURE_FORMAT_V1) && !v1.contains("signed_at"));
        for name in ["dns.wasm", "other.wasm"] {
            let v = ka
                .check(&chef, Some(v1.as_bytes()), Path::new(name))
                .unwrap();
            assert_eq!(v.signed_for, None);
            assert_eq!(v.key_id, id);
        }
        // Names that cannot be signed for.
        for bad in ["", ".", "..", "a/b.wasm", "a\0.wasm", &"x".repeat(256)] {
            assert!(SignatureFile::sign(&chef, &a, bad, 1).is_err(), "{bad:?}");
        }
        assert_eq!(
            signed_file_name(Path::new("/x/y/dns.wasm")).unwrap(),
            "dns.wasm"
        );
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
            format: SIGNATURE_FORMAT_V1.into(),
            key_id: KeyId::of(&VerifyingKey::from_bytes(&identity).unwrap()).to_string(),
            public_key: hex(&identity),
            file_name: None,
            signed_at: None,
            sha256: hex(&sha256(&chef)),
            signature: hex(&signature),
        };
        let p = Path::new("c.wasm");
        let e = forged.verify(&chef, p).unwrap_err();
        assert!(matches!(e, Refusal::Malformed(_)), "{e}");
        assert!(e.to_string().contains("weak"), "{e}");
        // Even with the weak key in a trust store (as before the fix), strict verification
        // refuses the forgery.
        let v = VerifyingKey::from_bytes(&identity).unwrap();
        let store = TrustedKeys {
            keys: [(KeyId::of(&v), (v, PathBuf::from("weak.pub")))].into(),
        };
        assert!(store
            .check(&chef, Some(forged.to_text().as_bytes()), p)
            .is_err());
        assert!(forged.verify_with(&chef, &v, p).is_err(), "verify_strict");
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
        let mut sig = SignatureFile::sign(&chef, &a, "c.wasm", 1000).unwrap();
        let i = sig.signature.find('0').expect("a 0 digit");
        sig.signature.replace_range(i..i + 1, "+");
        let e = trusted(&[&a])
            .check(&chef, Some(sig.to_text().as_bytes()), Path::new("c.wasm"))
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
