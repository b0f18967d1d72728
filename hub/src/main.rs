//! `nd-hub`: parse flags, bind both ports, run the hub until Ctrl-C or SIGTERM.
//!
//! Exit status: 0 after a clean shutdown; 2 for usage errors (flags clap takes but whose
//! values are wrong, such as `-f 0`, as well as those clap refuses itself, and an `--auth`
//! file with no principal), like the other tools; 1 for everything the flags could
//! not have said (a certificate or auth file that cannot be read or parsed, a port that
//! cannot be bound: the message names the file or the address and port).

mod cli;

use std::io::IsTerminal;

use anyhow::Context;
use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    // Colour only on a terminal; the writer keeps those colours and escapes every other
    // control character a record holds (one record, one line, whatever a field held).
    let colours = std::io::stderr().is_terminal();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(move || hub_link::stderr::QuietStderr { colours })
        .with_ansi(colours)
        .init();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // Not `eprintln!`: it panics when stderr's reader is gone.
        Err(error) if is_usage_error(&error) => {
            hub_link::say!("hub error: {error:#}\n\nFor more information, try '--help'.");
            std::process::ExitCode::from(2)
        }
        Err(error) => {
            hub_link::say!("hub error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Whether `error` is the command line's fault (exit 2, as for what clap refuses itself):
/// a flag value that parses but is out of range or inconsistent, or an `--auth` file that
/// names nobody (the hub would refuse every connection). A file that cannot be read, or a
/// port that cannot be bound, is not (1): scripts and service managers tell "fix the
/// command" from "fix the machine" this way.
fn is_usage_error(error: &anyhow::Error) -> bool {
    if let Some(hub::auth::AuthError::NoPrincipals(_)) = error.downcast_ref() {
        return true;
    }
    match error.downcast_ref::<cli::CliError>() {
        // `--nats-creds` and friends name a file that cannot be read: the machine's fault.
        Some(cli::CliError::Fleet(hub::fleet::args::FleetArgsError::File { .. })) => false,
        Some(_) => true,
        None => false,
    }
}

fn run(cli: cli::Cli) -> anyhow::Result<()> {
    if let Some(cli::Command::Token) = cli.command {
        let (token, hash) = hub::auth::new_token();
        println!("token = {token}");
        println!("token_sha256 = \"{hash}\"");
        return Ok(());
    }
    // Before the first connection: the heap then grows in large steps and is trimmed only
    // after bursts (`hub::trim`), not once per large dumpling.
    let tuned = hub::trim::keep_heap_growth_off_the_hot_path();
    tracing::debug!(tuned, "glibc heap growth and trim thresholds");
    let mut config = cli.config()?;
    fit_connection_caps(&mut config);
    if let (Some(cert), Some(key)) = (&cli.tls_cert, &cli.tls_key) {
        let files = hub::tls::TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: cli.tls_client_ca.clone(),
        };
        config.tls = Some(std::sync::Arc::new(hub::tls::Tls::load(files)?));
    }
    if let Some(path) = &cli.auth {
        config.auth = Some(std::sync::Arc::new(hub::auth::Auth::load(path)?));
    }
    let mut builder = if cli.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(cli.threads);
        b
    };
    let runtime = builder
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    runtime.block_on(async {
        let kitchens = hub::bind_all(&cli.address, cli.in_port)
            .await
            .with_context(|| {
                format!(
                    "Cannot instantiate dumpling hub: cannot listen for kitchens on {}:{}",
                    dumpling::text::Escaped::new(&cli.address),
                    cli.in_port
                )
            })?;
        let eaters = hub::bind_all(&cli.address, cli.out_port)
            .await
            .with_context(|| {
                format!(
                    "Cannot instantiate dumpling hub: cannot listen for eaters on {}:{}",
                    dumpling::text::Escaped::new(&cli.address),
                    cli.out_port
                )
            })?;
        let bound: Vec<std::net::SocketAddr> = kitchens
            .iter()
            .chain(&eaters)
            .filter_map(|l| l.local_addr().ok())
            .collect();
        if let Some(warning) =
            hub::exposure_warning(&bound, config.tls.is_some(), config.auth.is_some())
        {
            tracing::warn!("{warning}");
        }
        if let Some(auth) = &config.auth {
            if auth.table().uses_cert_names() && cli.tls_client_ca.is_none() {
                tracing::warn!("the auth file names principals by cert_name, but without --tls-client-ca no client certificate is asked for: they can only connect by token");
            }
        }
        hub::run(
            hub::Listeners { kitchens, eaters },
            config,
            hub::shutdown_signal(),
        )
        .await?;
        Ok::<(), anyhow::Error>(())
    })?;
    // Do not wait for stuck connection tasks: run() already gave them their grace period.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    Ok(())
}

/// File descriptors kept aside for everything but peer connections (listeners, metrics,
/// NATS, TLS files, logs).
const RESERVED_FDS: u64 = 128;

/// Raise the soft open-files limit so that `--max-kitchens` plus `--max-eaters` connections
/// fit (every connection is a file descriptor; Debian's default soft limit is 1024), up to the
/// hard limit. When even the hard limit is too low, lower both caps in proportion so they
/// fit, and say so: otherwise a flood of kitchens would take every descriptor and lock
/// eaters out (accept failing, as with no caps at all).
fn fit_connection_caps(config: &mut hub::Config) {
    // Both ports' pending pools count too: every connection is a descriptor.
    let pending = 2 * config.max_pending as u64;
    let wanted = (config.max_kitchens + config.max_eaters) as u64 + pending + RESERVED_FDS;
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit we own.
    #[allow(unsafe_code)]
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return;
    }
    let mut have: u64 = lim.rlim_cur;
    if have < wanted {
        let target = wanted.min(lim.rlim_max);
        let raised = libc::rlimit {
            rlim_cur: target,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads one rlimit we own; raising the soft limit up to the hard
        // one needs no privilege.
        #[allow(unsafe_code)]
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            have = target;
        }
    }
    if have >= wanted {
        return;
    }
    // The pending pools get at most a fifth of what is left (at least one place each).
    let max_pending = (config.max_pending as u64)
        .min(have.saturating_sub(RESERVED_FDS) / 10)
        .max(1);
    let room = have.saturating_sub(RESERVED_FDS + 2 * max_pending).max(2);
    let total = (config.max_kitchens + config.max_eaters) as u64;
    let kitchens = (config.max_kitchens as u64 * room / total).max(1);
    let eaters = room.saturating_sub(kitchens).max(1);
    tracing::warn!(
        "the open-files limit is {have} (ulimit -n; hard limit {}), too low for \
         --max-kitchens {} plus --max-eaters {} plus twice --max-pending {}: using {kitchens}, \
         {eaters} and {max_pending} instead (raise the limit to keep them)",
        lim.rlim_max,
        config.max_kitchens,
        config.max_eaters,
        config.max_pending
    );
    config.max_kitchens = kitchens as usize;
    config.max_eaters = eaters as usize;
    config.max_pending = max_pending as usize;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_flag_values_are_usage_errors_and_unreadable_files_are_not() {
        let config = |args: &[&str]| {
            cli::Cli::try_parse_from(std::iter::once("nd-hub").chain(args.iter().copied()))
                .map_err(anyhow::Error::from)
                .and_then(|cli| Ok(cli.config()?))
        };
        for args in [
            &["-f", "0"][..],
            &["--threads", "0"],
            &["--allow-origin", "evil.example"],
            &["--metrics-address", "nowhere"],
        ] {
            let error = config(args).expect_err("refused");
            assert!(is_usage_error(&error), "{args:?}: {error:#}");
        }
        let unreadable = hub::auth::Auth::load(std::path::Path::new("/nonexistent/auth.toml"))
            .map_err(anyhow::Error::from)
            .expect_err("no such file");
        assert!(!is_usage_error(&unreadable), "{unreadable:#}");
        let bind = anyhow::Error::from(std::io::Error::other("cannot bind"))
            .context("Cannot instantiate dumpling hub");
        assert!(!is_usage_error(&bind));
    }
}
