//! `nd-hubstatus`: a one-line live monitor of the hub, redrawn with a carriage return on
//! every `SystemStatusChef` dumpling (the original's format). Runs until Ctrl-C (close
//! 4101, exit 0); reconnects when the hub goes away; exit 1 when the hub refuses us.

use std::io::Write;

use clap::Parser;
use eater_client::{Event, Filter};
use eaters::format::{fleet_summary, hms, BOLD, RESET};
use eaters::Flow;

/// nd-hubstatus: show the hub's status on one live line.
#[derive(Debug, Parser)]
#[command(
    name = "nd-hubstatus",
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
        default_value = "statuseater"
    )]
    eater_name: String,
    #[command(flatten)]
    color: eaters::ColorArgs,
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
}

/// The status line, without the leading carriage return.
fn status_line(now: &str, status: &dumpling::SystemStatus, color: bool) -> String {
    let (b, r) = if color { (BOLD, RESET) } else { ("", "") };
    let line = format!(
        "{now}  uptime: {b}{}{r}  dumplings in: {b}{}{r}  out: {b}{}{r}  kitchens: {b}{}{r}  eaters: {b}{}{r} ",
        hms(status.server_uptime),
        status.total_dumplings_in,
        status.total_dumplings_out,
        status.dumpling_kitchen_count,
        status.dumpling_eater_count,
    );
    // A federated hub (`--nats`) adds its fleet; the original's line is unchanged otherwise.
    match status.fleet.as_ref().and_then(fleet_summary) {
        Some(fleet) => format!("{line} fleet: {b}{fleet}{r} "),
        None => line,
    }
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
    let color = cli.color.enabled();
    let stdout = std::io::stdout();
    // Whether stdout's last line is still open (the header's "Waiting for data... " or a
    // status line, redrawn after a carriage return).
    let mut line_open = false;
    eaters::run(config, |event| {
        let mut out = stdout.lock();
        match event {
            Event::Connected {
                uri,
                reconnected: false,
            } => {
                let _ = write!(out, "nd-hub status from {uri}\nWaiting for data... ");
                line_open = true;
            }
            // Said on stderr by `eaters::eat`, as every retry is: stdout is for the
            // status. Only the open line is ended, so that message starts on a line of
            // its own on a terminal.
            Event::Disconnected { .. } | Event::ConnectFailed { .. } if line_open => {
                line_open = false;
                let _ = writeln!(out);
            }
            Event::Dumpling(received) => {
                match serde_json::from_value::<dumpling::SystemStatus>(
                    received.dumpling.payload.clone(),
                ) {
                    Ok(status) => {
                        let now = chrono::Local::now().format("%Y-%m-%d %H:%M:%S").to_string();
                        let _ = write!(out, "\r{}", status_line(&now, &status, color));
                        line_open = true;
                    }
                    Err(error) => {
                        hub_link::say!("{}: bad status dumpling: {error}", cli.eater_name)
                    }
                }
            }
            _ => {}
        }
        if out.flush().is_err() {
            // Nobody reads any more (the terminal or pipe is gone): stop.
            return Flow::Full;
        }
        Flow::Continue
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn verify_cli_and_line_format() {
        Cli::command().debug_assert();
        assert_eq!(
            Cli::try_parse_from(["nd-hubstatus"]).unwrap().eater_name,
            "statuseater"
        );
        let status: dumpling::SystemStatus = serde_json::from_str(r#"{"total_dumplings_in": 2, "total_dumplings_out": 11, "server_uptime": 90.206168, "dumpling_kitchen_count": 1, "dumpling_eater_count": 3, "dumpling_kitchens": [], "dumpling_eaters": []}"#).unwrap();
        assert_eq!(
            status_line("2026-11-27 00:37:35", &status, false),
            "2026-11-27 00:37:35  uptime: 00:01:30  dumplings in: 2  out: 11  kitchens: 1  eaters: 3 "
        );
        assert_eq!(
            status_line("T", &status, true),
            "T  uptime: \x1b[1m00:01:30\x1b[0m  dumplings in: \x1b[1m2\x1b[0m  out: \x1b[1m11\x1b[0m  kitchens: \x1b[1m1\x1b[0m  eaters: \x1b[1m3\x1b[0m "
        );
        // A fleet section: hub ids from the network are escaped, restricted views (no
        // eater counts) still summarise.
        let mut status = status;
        status.fleet = Some(serde_json::json!({"hub_id": "a", "hub_count": 2, "hubs": [
            {"hub_id": "a", "dumpling_kitchen_count": 2, "dumpling_eater_count": 3},
            {"hub_id": "b\x1b[31mX", "dumpling_kitchen_count": 1}
        ]}));
        assert_eq!(
            status_line("T", &status, false),
            "T  uptime: 00:01:30  dumplings in: 2  out: 11  kitchens: 1  eaters: 3  fleet: 2 hubs (a 2k/3e, b\\u001b[31mX 1k), 3 kitchens, 3 eaters "
        );
        // This hub's NATS connection down: said first.
        status.fleet = Some(serde_json::json!({"hub_id": "a", "hub_count": 1,
            "nats": {"connected": false, "down_for": 12.4, "disconnects": 1},
            "hubs": [{"hub_id": "a", "dumpling_kitchen_count": 2, "dumpling_eater_count": 3}]}));
        assert_eq!(
            status_line("T", &status, false),
            "T  uptime: 00:01:30  dumplings in: 2  out: 11  kitchens: 1  eaters: 3  fleet: NATS DOWN for 12 s, 1 hubs (a 2k/3e), 2 kitchens, 3 eaters "
        );
    }
}
