//! `nd-hubdetails`: print one `SystemStatusChef` payload and exit (close 4102).
//!
//! Our hub sends the current status to every new eater at once, so this answers at once;
//! against the original hub it waits up to its status period. Exit status 0 on success,
//! 1 when the hub cannot be reached after a few tries (or refuses us), 2 for usage errors.

use std::io::Write;

use clap::Parser;
use eater_client::{Event, Filter};
use eaters::format::{colorize_json, python_pretty};
use eaters::Flow;

/// nd-hubdetails: print the hub's status details once.
#[derive(Debug, Parser)]
#[command(
    name = "nd-hubdetails",
    version,
    disable_help_flag = true,
    max_term_width = 100
)]
struct Cli {
    #[command(flatten)]
    hub: eaters::HubArgs,
    /// Name sent to the hub.
    #[arg(
        short = 'n',
        long,
        value_name = "EATER_NAME",
        value_parser = eaters::parse_eater_name,
        default_value = "detailseater"
    )]
    eater_name: String,
    #[command(flatten)]
    color: eaters::ColorArgs,
    /// Connection attempts before giving up.
    #[arg(long, value_name = "N", default_value_t = 3)]
    retries: u32,
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let mut config = match cli.hub.eater_config(&cli.eater_name) {
        Ok(config) => config,
        Err(code) => return code,
    };
    config.filter = Filter {
        chefs: vec![dumpling::SYSTEM_STATUS_CHEF.into()],
        ..Filter::default()
    };
    config.reconnect.max_attempts = Some(cli.retries);
    let color = cli.color.enabled();
    let stdout = std::io::stdout();
    eaters::run(config, |event| {
        let mut out = stdout.lock();
        match event {
            Event::Connected {
                uri,
                reconnected: false,
            } => {
                let _ = write!(
                    out,
                    "Connected to nd-hub at {uri}\nWaiting for a SystemStatus dumpling...\n"
                );
                let _ = out.flush();
                Flow::Continue
            }
            Event::Dumpling(received) => {
                let text = python_pretty(&received.dumpling.payload);
                let text = if color { colorize_json(&text) } else { text };
                let _ = write!(out, "\n{text}\n\n");
                let _ = out.flush();
                Flow::Full
            }
            _ => Flow::Continue,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
        let cli =
            Cli::try_parse_from(["nd-hubdetails", "-h", "h:1", "-n", "x", "--no-color"]).unwrap();
        assert_eq!(
            (
                cli.hub.hub.as_str(),
                cli.eater_name.as_str(),
                cli.color.no_color
            ),
            ("h:1", "x", true)
        );
        assert_eq!(
            Cli::try_parse_from(["nd-hubdetails"]).unwrap().eater_name,
            "detailseater"
        );
    }
}
