//! `nd-chef-trust`: make signing keys, sign chef components, check signatures. The
//! `nd-chef keygen` / `nd-chef sign` / `nd-chef verify` commands run this binary, so the
//! formats have one implementation (the `chef-trust` crate), shared with `nd-sniff`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use chef_trust::{
    read_bounded, read_signature, read_signing_key, signature_path, write_key_pair, KeyId,
    SignatureFile, TrustedKeys,
};
use clap::{Parser, Subcommand};

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
                private.display(),
                public.display()
            );
        }
        Command::Sign { chef, key, output } => {
            let key = read_signing_key(&key)?;
            let bytes = read_bounded(&chef, MAX_CHEF_BYTES)
                .with_context(|| format!("cannot read {}", chef.display()))?;
            if !bytes.starts_with(b"\0asm") {
                bail!("{} is not a WebAssembly file", chef.display());
            }
            let sig = SignatureFile::sign(&bytes, &key);
            let out = output.unwrap_or_else(|| signature_path(&chef));
            let mut tmp = out.as_os_str().to_owned();
            tmp.push(".tmp");
            let tmp = PathBuf::from(tmp);
            std::fs::write(&tmp, sig.to_text())
                .with_context(|| format!("cannot write {}", tmp.display()))?;
            std::fs::rename(&tmp, &out)
                .with_context(|| format!("cannot rename {} to {}", tmp.display(), out.display()))?;
            println!(
                "signed {} (sha256 {}) with key id {} -> {}",
                chef.display(),
                sig.sha256,
                sig.key_id,
                out.display()
            );
        }
        Command::Verify { chef, trusted_keys } => {
            let keys = TrustedKeys::load_dir(&trusted_keys)?;
            let bytes = read_bounded(&chef, MAX_CHEF_BYTES)
                .with_context(|| format!("cannot read {}", chef.display()))?;
            let sig_path = signature_path(&chef);
            let verdict =
                read_signature(&chef).and_then(|sig| keys.check(&bytes, sig.as_deref(), &sig_path));
            match verdict {
                Ok(id) => println!("trusted: {} signed by key id {id}", chef.display()),
                Err(e) => {
                    println!(
                        "refused: {}: {e} (key id {})",
                        chef.display(),
                        e.key_id().map_or("none".to_owned(), |k| k.to_string())
                    );
                    return Ok(ExitCode::from(1));
                }
            }
        }
        Command::KeyId { key } => {
            let id = match chef_trust::read_public_key(&key) {
                Ok(k) => KeyId::of(&k),
                Err(_) => KeyId::of(&read_signing_key(&key)?.verifying_key()),
            };
            println!("{id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
