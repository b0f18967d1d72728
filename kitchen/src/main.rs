//! `nd-sniff`: the netdumplings kitchen. Parses arguments, sets up logging, runs, and maps
//! the result to the exit status (0 clean, 1 failure, 2 usage error).

mod app;
mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // A compile worker (a child of a kitchen, see `chef_host::compile_worker`): no CLI, no
    // logging, just the bounded compile.
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(kitchen::chef_host::compile_worker::WORKER_ARG) {
        return kitchen::chef_host::compile_worker::worker_main(&args[2..]);
    }
    // A filter-check worker (see `input::filter_check`): libpcap's compile, bounded.
    if args.get(1).map(String::as_str) == Some(kitchen::input::filter_check::WORKER_ARG) {
        return kitchen::input::filter_check::worker_main(&args[2..]);
    }
    let cli = cli::Cli::parse();
    init_tracing();
    let config = match cli::Config::from_cli(cli) {
        Ok(c) => c,
        Err(e) => {
            // Not `eprintln!`: it panics when stderr's reader is gone. Escaped: the error
            // names files and arguments as the user gave them.
            let line = format!("nd-sniff: {e:#}\n");
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                dumpling::text::sanitize_log_record(&line, false).as_bytes(),
            );
            return ExitCode::from(config_error_status(&e));
        }
    };
    match app::run(config) {
        Ok(app::Outcome::Clean) => ExitCode::SUCCESS,
        Ok(app::Outcome::Failed) => ExitCode::from(1),
        Err(e) => {
            if tracing::enabled!(tracing::Level::ERROR) {
                tracing::error!("{e:#}");
            } else {
                // `RUST_LOG=kitchen=debug` or `off` silences this crate's target: the reason
                // the run failed is still said (exit 1 with no word was all a user saw).
                let line = format!("nd-sniff: error: {e:#}\n");
                let _ = std::io::Write::write_all(
                    &mut std::io::stderr(),
                    dumpling::text::sanitize_log_record(&line, false).as_bytes(),
                );
            }
            ExitCode::from(1)
        }
    }
}

/// The exit status for settings that cannot be used: a token, CA, certificate or key file
/// that cannot be used is a failure (1), as in the eaters and as for a capture file that
/// cannot be read (it was 2 here and 1 there); the rest are usage errors (2).
fn config_error_status(error: &anyhow::Error) -> u8 {
    if error
        .chain()
        .any(|cause| cause.downcast_ref::<hub_link::LinkError>().is_some())
    {
        1
    } else {
        2
    }
}

/// `RUST_LOG` on stderr; default: info for everything (chef logs included).
fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    // The `notify` crate logs its own internals at INFO (an OS error in `Debug` form when a
    // watched folder goes away); the kitchen says what matters about the folder itself.
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,notify=warn"));
    // Colour only on a terminal: logs piped to a file or a CI log stay plain text.
    let colours = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        // stderr, erasing the replay's progress line before each log line, escaping what
        // fields brought in.
        .with_writer(kitchen::input::progress::LogWriter { colours })
        .with_target(false)
        .with_ansi(colours)
        .init();
}
