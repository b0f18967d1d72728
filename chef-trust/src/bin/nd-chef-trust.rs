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
    /// then renamed), or to --output.
    Sign {
        /// The component (`.wasm`).
        chef: PathBuf,
        /// The private key (`.key` of `keygen`; must be mode 0600).
        #[arg(short, long, value_name = "KEY")]
        key: PathBuf,
        /// Where to write the signature (default: CHEF.wasm.sig).
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
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
        Command::Sign { chef, key, output } => {
            let key = read_signing_key(&key)?;
            let bytes = read_bounded(&chef, MAX_CHEF_BYTES)
                .with_context(|| format!("cannot read {}", escape_path(&chef)))?;
            if !bytes.starts_with(b"\0asm") {
                bail!("{} is not a WebAssembly file", escape_path(&chef));
            }
            let sig = SignatureFile::sign(&bytes, &key);
            let out = output.unwrap_or_else(|| signature_path(&chef));
            // Not `CHEF.wasm.sig.tmp` opened with O_TRUNC: whoever can write the chef
            // folder could plant that name as a link to any file, and the signer (root,
            // say) would overwrite it. A new file with a random name, then a rename.
            write_file_atomically(&out, sig.to_text().as_bytes(), 0o644)
                .with_context(|| format!("cannot write the signature {}", escape_path(&out)))?;
            println!(
                "signed {} (sha256 {}) with key id {} -> {}",
                escape_path(&chef),
                sig.sha256,
                sig.key_id,
                escape_path(&out)
            );
        }
        Command::Verify { chef, trusted_keys } => {
            let keys = TrustedKeys::load_dir(&trusted_keys)?;
            let bytes = read_bounded(&chef, MAX_CHEF_BYTES)
                .with_context(|| format!("cannot read {}", escape_path(&chef)))?;
            let sig_path = signature_path(&chef);
            let verdict =
                read_signature(&chef).and_then(|sig| keys.check(&bytes, sig.as_deref(), &sig_path));
            match verdict {
                Ok(id) => println!("trusted: {} signed by key id {id}", escape_path(&chef)),
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
