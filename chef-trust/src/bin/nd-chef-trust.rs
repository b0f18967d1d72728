//! `nd-chef-trust`: make signing keys, sign chef components, check signatures. The
//! `nd-chef keygen` / `nd-chef sign` / `nd-chef verify` commands run this binary, so the
//! formats have one implementation (the `chef-trust` crate), shared with `nd-sniff`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use chef_trust::{
    read_bounded, read_signature, read_signing_key, signature_path, write_file_atomically,
    write_key_pair, KeyId, SignatureFile, TrustedKeys,
};
use clap::{Parser, Subcommand};
// Every file name printed (and every refusal, which may hold one) is escaped: names are
// anyone's, and a CR, newline or terminal escape in one could forge or hide a line ("an
// unsigned chef reads as trusted"). The library's own errors escape their paths already.
use dumpling::text::{escape_path, Escaped};

/// Signed netdumplings chefs: keys, signatures, checks.
///
/// A kitchen started with `nd-sniff --trusted-chef-keys DIR` runs a chef file only when
/// `CHEF.wasm.sig` beside it is a valid signature by a key whose `.pub` file is in DIR.
#[derive(Parser)]
#[command(name = "nd-chef-trust", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Make an ed25519 key pair: PREFIX.key (private, PKCS#8 PEM, mode 0600) and PREFIX.pub
    /// (public, SPKI PEM: copy it into the kitchens' --trusted-chef-keys directory).
    Keygen {
        /// Path prefix of the two files (never overwritten).
        #[arg(short, long, value_name = "PREFIX", default_value = "chef-signing")]
        out: PathBuf,
    },
    /// Sign a chef component: writes CHEF.wasm.sig beside it (atomically: written aside,
    /// then renamed), or to --output. The signature (format v2) binds the component's
    /// SHA-256, its file name (a kitchen refuses it under any other name) and the signing
    /// time (a kitchen refuses a version signed earlier than one it already ran: to go back
    /// to an older build on purpose, sign it again).
    Sign {
        /// The component (`.wasm`).
        chef: PathBuf,
        /// The private key (`.key` of `keygen`; must be mode 0600).
        #[arg(short, long, value_name = "KEY")]
        key: PathBuf,
        /// Where to write the signature (default: CHEF.wasm.sig).
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// The signing time to record, Unix seconds (default: now). For tests and
        /// reproducible builds; a kitchen refuses a version signed earlier than one it ran.
        #[arg(long, value_name = "UNIX_SECONDS")]
        signed_at: Option<u64>,
        /// The file name to sign the chef for (default: CHEF's own base name). The kitchen
        /// runs it only under this name: use it when the file is deployed under another name.
        #[arg(long, value_name = "NAME")]
        file_name: Option<String>,
    },
    /// Check a chef's signature against the trusted keys in DIR (exit 0 trusted, 1 not), as
    /// `nd-sniff --trusted-chef-keys DIR` would.
    Verify {
        /// The component (`.wasm`); its signature is CHEF.wasm.sig.
        chef: PathBuf,
        /// Directory of trusted public keys (`*.pub`).
        #[arg(long, value_name = "DIR")]
        trusted_keys: PathBuf,
    },
    /// Print the key id of a public (`.pub`) or private (`.key`) key file.
    KeyId {
        /// The key file.
        key: PathBuf,
    },
}

/// Largest component signed (the kitchen's own cap on chef files is lower).
const MAX_CHEF_BYTES: u64 = 256 << 20;

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("nd-chef-trust: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Keygen { out } => {
            let key = chef_trust::generate_key()?;
            let (private, public) = write_key_pair(&out, &key)?;
            println!(
                "key id {}\nprivate key {} (mode 0600; keep it secret)\npublic key {} (copy it into the kitchens' --trusted-chef-keys directory)",
                KeyId::of(&key.verifying_key()),
                escape_path(&private),
                escape_path(&public)
            );
        }
        Command::Sign {
            chef,
            key,
            output,
            signed_at,
            file_name,
        } => {
            let file_name = match file_name {
                Some(n) => n,
                None => chef_trust::signed_file_name(&chef)?,
            };
            let signed_at = match signed_at {
                Some(t) => t,
                None => std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .context("the clock is before 1970; give --signed-at")?
                    .as_secs(),
            };
            let key = read_signing_key(&key)?;
            let bytes = read_bounded(&chef, MAX_CHEF_BYTES)
                .with_context(|| format!("cannot read {}", escape_path(&chef)))?;
            if !bytes.starts_with(b"\0asm") {
                bail!("{} is not a WebAssembly file", escape_path(&chef));
            }
            let sig = SignatureFile::sign(&bytes, &key, &file_name, signed_at)?;
            let out = output.unwrap_or_else(|| signature_path(&chef));
            // Not `CHEF.wasm.sig.tmp` opened with O_TRUNC: whoever can write the chef
            // folder could plant that name as a link to any file, and the signer (root,
            // say) would overwrite it. A new file with a random name, then a rename.
            write_file_atomically(&out, sig.to_text().as_bytes(), 0o644)
                .with_context(|| format!("cannot write the signature {}", escape_path(&out)))?;
            println!(
                "signed {} (sha256 {}) for the file name {} at {signed_at} with key id {} -> {}",
                escape_path(&chef),
                sig.sha256,
                escape_path(std::path::Path::new(&file_name)),
                sig.key_id,
                escape_path(&out)
            );
        }
        Command::Verify { chef, trusted_keys } => {
            let keys = TrustedKeys::load_dir(&trusted_keys)?;
            let bytes = read_bounded(&chef, MAX_CHEF_BYTES)
                .with_context(|| format!("cannot read {}", escape_path(&chef)))?;
            let verdict =
                read_signature(&chef).and_then(|sig| keys.check(&bytes, sig.as_deref(), &chef));
            match verdict {
                Ok(v) => match v.signed_for {
                    Some(s) => println!(
                        "trusted: {} signed by key id {} at {} (Unix seconds)",
                        escape_path(&chef),
                        v.key_id,
                        s.signed_at
                    ),
                    None => println!(
                        "trusted: {} signed by key id {} (an old v1 signature: no file name, \
                         no signing time, so not protected against rollback or renaming; \
                         sign it again with `nd-chef sign`)",
                        escape_path(&chef),
                        v.key_id
                    ),
                },
                Err(e) => {
                    println!(
                        "refused: {}: {} (key id {})",
                        escape_path(&chef),
                        Escaped::with_max(&e.to_string(), 1024),
                        e.key_id().map_or("none".to_owned(), |k| k.to_string())
                    );
                    return Ok(ExitCode::from(1));
                }
            }
        }
        Command::KeyId { key } => {
            // A public key when it says so (its error, e.g. a weak key, is the one to show),
            // else a private key.
            let text = read_bounded(&key, chef_trust::MAX_KEY_BYTES)
                .with_context(|| format!("cannot read {}", escape_path(&key)))?;
            let id = if text.starts_with(b"-----BEGIN PUBLIC KEY-----") {
                KeyId::of(&chef_trust::read_public_key(&key)?)
            } else {
                KeyId::of(&read_signing_key(&key)?.verifying_key())
            };
            println!("{id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
