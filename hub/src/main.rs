//! `nd-hub`: parse flags, bind both ports, run the hub until Ctrl-C or SIGTERM.
//!
//! Exit status: 0 after a clean shutdown; 1 when binding fails (the message names the
//! address and port); 2 for usage errors (clap).

mod cli;

use std::io::IsTerminal;

use anyhow::Context;
use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("hub error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: cli::Cli) -> anyhow::Result<()> {
    let config = cli.config()?;
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
                    cli.address, cli.in_port
                )
            })?;
        let eaters = hub::bind_all(&cli.address, cli.out_port)
            .await
            .with_context(|| {
                format!(
                    "Cannot instantiate dumpling hub: cannot listen for eaters on {}:{}",
                    cli.address, cli.out_port
                )
            })?;
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
