//! Shared code of the eater CLIs (`nd-print`, `nd-hubdetails`, `nd-hubstatus`): the
//! original's output formats (Python-style pretty JSON, local ISO times, colours) and the
//! event loop that handles Ctrl-C (close 4101), reconnect messages and exit codes.
//!
//! Messages go to stderr through [`hub_link::say!`], never `eprintln!`: a reader of stderr
//! that went away (`nd-print 2>&1 | head -1`) made `eprintln!` panic (exit 101).

pub mod format;

use std::io::Write;

use dumpling::close_code;
use eater_client::{Eater, Event};

/// What the per-event callback wants next.
#[derive(Debug, PartialEq, Eq)]
pub enum Flow {
    /// Keep eating.
    Continue,
    /// Enough: close with 4102 "dumpling eater is full".
    Full,
}

/// How [`eat`] ended.
#[derive(Debug)]
pub enum Outcome {
    /// The callback said [`Flow::Full`]; closed with 4102.
    Full,
    /// Ctrl-C or SIGTERM; closed with 4101.
    Cancelled,
    /// An error retrying cannot fix (or retries ran out).
    Fatal(eater_client::Error),
}

impl Outcome {
    /// Exit status: 0 for full or cancelled, 1 for a fatal error.
    pub fn exit_code(&self) -> std::process::ExitCode {
        match self {
            Outcome::Full | Outcome::Cancelled => std::process::ExitCode::SUCCESS,
            Outcome::Fatal(_) => std::process::ExitCode::FAILURE,
        }
    }
}

/// Resolves at Ctrl-C or SIGTERM (never, for a signal that cannot be watched).
async fn cancelled() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// What to do when nothing answered at the hub's address and no connection was ever made:
/// the usual cause is a hub that is not running, or an address that is not its eater port.
pub fn no_hub_hint() -> String {
    format!(
        "Is nd-hub running there? Start it (`nd-hub`; eaters connect to its port {}) or give \
         its eater address with -h HOST:PORT.",
        dumpling::DEFAULT_OUT_PORT
    )
}

/// The stderr line for an event about the connection (`None`: the event says nothing
/// there). `hinted` is whether [`no_hub_hint`] was given already: it is given once, at the
/// first attempt that found nothing before any connection was made.
pub fn connection_message(name: &str, event: &Event, hinted: &mut bool) -> Option<String> {
    Some(match event {
        Event::Connected {
            uri,
            reconnected: true,
        } => format!("{name}: Reconnected to dumpling hub at {uri}"),
        Event::Disconnected { reason, retry_in } => format!(
            "{name}: Lost connection to dumpling hub: {reason}; retrying in {:.1} s",
            retry_in.as_secs_f64()
        ),
        Event::ConnectFailed {
            hub,
            reason,
            unreachable,
            reconnecting,
            retry_in,
        } => {
            let verb = if *reconnecting {
                "reconnect"
            } else {
                "connect"
            };
            let hint = if *unreachable && !*reconnecting && !std::mem::replace(hinted, true) {
                format!(". {}", no_hub_hint())
            } else {
                String::new()
            };
            format!(
                "{name}: Could not {verb} to dumpling hub at {hub}: {reason}; retrying in \
                 {:.1} s{hint}",
                retry_in.as_secs_f64()
            )
        }
        _ => return None,
    })
}

/// The stderr line for the error that ended an eater; a hub that could never be reached
/// gets [`no_hub_hint`] (unless given already, or a connection was made before).
pub fn fatal_message(name: &str, error: &eater_client::Error, hinted: bool) -> String {
    match error {
        eater_client::Error::CannotConnect {
            unreachable: true, ..
        } if !hinted => format!("{name}: {error}. {}", no_hub_hint()),
        _ => format!("{name}: {error}"),
    }
}

/// Run an eater until `on_event` says [`Flow::Full`], Ctrl-C, or a fatal error.
/// Reconnects, lag notices and invalid dumplings are reported on stderr with the eater's
/// name, as the original's eaters log (`<name>: ...`); `on_event` sees every event.
pub async fn eat(eater: &mut Eater, mut on_event: impl FnMut(&Event) -> Flow) -> Outcome {
    let name = eater.name().to_owned();
    let cancel = cancelled();
    tokio::pin!(cancel);
    // Whether the "is nd-hub running" hint was given; also set by a connection made, after
    // which a failure is no longer about a hub that never ran.
    let mut hinted = false;
    let outcome = loop {
        let event = tokio::select! {
            _ = &mut cancel => {
                let _ = std::io::stdout().flush();
                hub_link::say!("\n{name}: Connection to dumpling hub cancelled; closing...");
                eater.close(close_code::CANCELLED, close_code::CANCELLED_REASON).await;
                break Outcome::Cancelled;
            }
            event = eater.next_event() => event,
        };
        let event = match event {
            Ok(event) => event,
            Err(error) => {
                hub_link::say!("{}", fatal_message(&name, &error, hinted));
                break Outcome::Fatal(error);
            }
        };
        // The eater first: one that keeps a line open on stdout (`nd-hubstatus`) ends it
        // before a message about the connection comes on stderr, on the same terminal.
        let flow = on_event(&event);
        if let Some(message) = connection_message(&name, &event, &mut hinted) {
            hub_link::say!("{message}");
        }
        match &event {
            Event::Connected { .. } => hinted = true,
            Event::Lagged { missed } => {
                hub_link::say!(
                    "{name}: the hub dropped {missed} dumplings (this eater fell behind)"
                )
            }
            Event::Invalid { error } => hub_link::say!("{name}: Invalid dumpling: {error}"),
            // Escaped once already, by the library (`Event::Notice`).
            Event::Notice { text } => hub_link::say!("{name}: hub notice: {text}"),
            _ => {}
        }
        if flow == Flow::Full {
            let _ = std::io::stdout().flush();
            eater
                .close(close_code::EATER_FULL, close_code::EATER_FULL_REASON)
                .await;
            break Outcome::Full;
        }
    };
    let _ = std::io::stdout().flush();
    hub_link::say!("{name}: Done eating dumplings.");
    outcome
}

/// The `--color` / `--no-color` pair every eater CLI has (the original's flags), flattened
/// into each `Cli`.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct ColorArgs {
    /// Colour output (default: only on a terminal).
    #[arg(long, overrides_with = "no_color")]
    pub color: bool,
    /// No colour.
    #[arg(long)]
    pub no_color: bool,
}

impl ColorArgs {
    /// Whether to colour: forced either way, else on only for a terminal.
    pub fn enabled(&self) -> bool {
        use_color(self.color, self.no_color)
    }
}

/// `--color` / `--no-color` resolution: forced either way, else on only for a terminal.
pub fn use_color(color: bool, no_color: bool) -> bool {
    use std::io::IsTerminal;
    if no_color {
        false
    } else if color {
        true
    } else {
        std::io::stdout().is_terminal()
    }
}

/// The hub address and link flags (TLS, token) every eater CLI takes; flattened into each
/// `Cli` so the three tools spell and explain them the same way.
#[derive(Debug, Clone, clap::Args)]
pub struct HubArgs {
    /// Hub eater address.
    #[arg(
        short = 'h',
        long,
        value_name = "HOST:PORT",
        default_value = "localhost:11348",
        long_help = "Hub eater address: HOST:PORT (ws://) or wss://HOST:PORT (TLS; see --tls-ca). \
Several, comma-separated (HOST:PORT,HOST:PORT): after a lost connection the next one is tried"
    )]
    pub hub: String,
    /// TLS and token settings for the connection.
    #[command(flatten)]
    pub link: hub_link::LinkArgs,
}

impl HubArgs {
    /// Whether several hubs were given (`-h A,B`).
    pub fn several(&self) -> bool {
        self.hub.contains(',')
    }

    /// An [`eater_client::EaterConfig`] for these hubs and `name` with the TLS and token settings;
    /// on a bad CA, certificate or token file, says why on stderr and gives the exit status
    /// to return.
    pub fn eater_config(
        &self,
        name: &str,
    ) -> Result<eater_client::EaterConfig, std::process::ExitCode> {
        // A bad address is a usage error, said before any connection attempt (the eaters
        // took `-h localhost` as port 80 and `-h 48012` as a host). Empty entries are
        // skipped, as the kitchen skips them, but one address is needed (`-h ,,` was a
        // connection error, exit 1).
        if self.hub.split(',').all(|h| h.trim().is_empty()) {
            hub_link::say!(
                "{name}: -h needs at least one HOST:PORT (got {:?})",
                self.hub
            );
            return Err(std::process::ExitCode::from(2));
        }
        for hub in self.hub.split(',').map(str::trim).filter(|h| !h.is_empty()) {
            if let Err(error) = hub_link::hub_uri(hub) {
                hub_link::say!("{name}: {error}");
                return Err(std::process::ExitCode::from(2));
            }
        }
        let mut config = eater_client::EaterConfig::new(&self.hub, name);
        config.link = self.link.link().map_err(|error| {
            hub_link::say!("{name}: {error}");
            std::process::ExitCode::FAILURE
        })?;
        Ok(config)
    }
}

/// The whole life of an eater CLI after its arguments: connect with `config`, feed every
/// event to `on_event` through [`eat`], and return the exit status (errors setting up say
/// why on stderr, with the eater's name).
pub fn run(
    config: eater_client::EaterConfig,
    on_event: impl FnMut(&Event) -> Flow,
) -> std::process::ExitCode {
    let name = config.name.clone();
    let mut eater = match Eater::new(config) {
        Ok(eater) => eater,
        Err(error) => {
            hub_link::say!("{name}: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(error) => {
            hub_link::say!("{name}: cannot start runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    exit_if_stuck_after_a_signal(&name);
    runtime.block_on(eat(&mut eater, on_event)).exit_code()
}

/// How long after Ctrl-C or SIGTERM an eater may take to close its connection and end
/// before it is ended anyway.
pub const STUCK_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

/// Watch for Ctrl-C and SIGTERM on a thread of its own and end the process
/// [`STUCK_GRACE`] after one (status 130) if it is still running then. Why: the eaters
/// print from their one runtime thread, so while stdout blocks (`nd-print | less` left
/// unscrolled, a pipe nobody reads) the runtime never sees a signal, and only SIGKILL
/// ended it. Normally [`eat`] closes with 4101 and returns well within the grace.
fn exit_if_stuck_after_a_signal(name: &str) {
    let name = name.to_owned();
    let Ok(rt) = runtime() else {
        return;
    };
    let watcher = move || {
        rt.block_on(async {
            cancelled().await;
            tokio::time::sleep(STUCK_GRACE).await;
        });
        hub_link::say!(
            "{name}: still running {} s after the signal (its output is not being read); \
             exiting now",
            STUCK_GRACE.as_secs()
        );
        std::process::exit(130);
    };
    // Without the thread the eater still stops on a signal whenever its output flows.
    let _ = std::thread::Builder::new()
        .name("nd-eater-signals".into())
        .spawn(watcher);
}

/// Check an `--eater-name`: not empty or blank (the hub lists eaters by name, and every
/// line the eater logs starts with it: `-n ""` made lines that began with `: `).
pub fn parse_eater_name(text: &str) -> Result<String, String> {
    if text.trim().is_empty() {
        return Err("the eater name must not be empty".to_owned());
    }
    Ok(text.to_owned())
}

/// Check a `--since` value as the hub will read it: a duration (`NUMBER[s|m|h|d]`, seconds
/// without a unit, > 0 and under [`dumpling::eater_hello_keys::MAX_SINCE_SECS`]) or an
/// RFC 3339 time (`YYYY-MM-DDTHH:MM:SS[.fff](Z|+HH:MM)`, a real date). A looser check let
/// month 13 or `1e30d` through to the hub, which then served live with a notice.
pub fn parse_since(text: &str) -> Result<String, String> {
    let t = text.trim();
    let time_ok =
        time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).is_ok();
    let (number, scale) = match t.char_indices().last() {
        Some((i, 's')) => (&t[..i], 1.0),
        Some((i, 'm')) => (&t[..i], 60.0),
        Some((i, 'h')) => (&t[..i], 3600.0),
        Some((i, 'd')) => (&t[..i], 86400.0),
        _ => (t, 1.0),
    };
    let duration_ok = number.parse::<f64>().is_ok_and(|n| {
        let secs = n * scale;
        secs.is_finite() && secs > 0.0 && secs < dumpling::eater_hello_keys::MAX_SINCE_SECS
    });
    if duration_ok || time_ok {
        Ok(t.to_owned())
    } else {
        Err(format!(
            "{:?}: expected a duration (10m, 90s, 2h, 1.5d; under 317 years) or an RFC 3339 time (2026-12-05T03:00:00Z)",
            t.escape_debug().to_string()
        ))
    }
}

/// A runtime for the eater CLIs (one thread is plenty).
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn since_values_are_checked_as_the_hub_reads_them() {
        for good in [
            "10m",
            "90",
            "1.5d",
            " 2h ",
            "2026-12-05T03:00:00Z",
            "2026-12-05T03:00:00.5+01:00",
        ] {
            assert!(parse_since(good).is_ok(), "{good}");
        }
        for bad in [
            "2026-13-45T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "1e30d",
            "0s",
            "-5m",
            "NaN",
            "inf",
            "soon",
            "",
            "10x",
        ] {
            let e = parse_since(bad).unwrap_err();
            assert!(e.contains("expected a duration"), "{bad}: {e}");
        }
    }

    fn failed(reconnecting: bool, unreachable: bool) -> Event {
        Event::ConnectFailed {
            hub: "127.0.0.1:9".into(),
            reason: "Connection refused (os error 111)".into(),
            unreachable,
            reconnecting,
            retry_in: Duration::from_millis(500),
        }
    }

    /// A hub that was never reached is "could not connect", with the hint once; "lost
    /// connection" is only for a connection that was made.
    #[test]
    fn connection_messages_tell_a_failed_connect_from_a_lost_one() {
        let mut hinted = false;
        let first = connection_message("e", &failed(false, true), &mut hinted).unwrap();
        assert_eq!(
            first,
            format!(
                "e: Could not connect to dumpling hub at 127.0.0.1:9: Connection refused \
                 (os error 111); retrying in 0.5 s. {}",
                no_hub_hint()
            )
        );
        assert!(first.contains("nd-hub") && first.contains("-h HOST:PORT"));
        assert!(!first.to_lowercase().contains("lost"), "{first}");
        let again = connection_message("e", &failed(false, true), &mut hinted).unwrap();
        assert!(!again.contains("Is nd-hub running"), "hint once: {again}");
        // A hub that answered (HTTP 503) or a reconnect after a loss: no "is it running".
        let mut hinted = false;
        let busy = connection_message("e", &failed(false, false), &mut hinted).unwrap();
        assert!(!busy.contains("Is nd-hub running"), "{busy}");
        let re = connection_message("e", &failed(true, true), &mut hinted).unwrap();
        assert!(re.starts_with("e: Could not reconnect to dumpling hub at 127.0.0.1:9: "));
        assert!(!re.contains("Is nd-hub running"), "{re}");
        let lost = Event::Disconnected {
            reason: "hub closed the connection: 1001".into(),
            retry_in: Duration::from_secs(1),
        };
        assert_eq!(
            connection_message("e", &lost, &mut hinted).unwrap(),
            "e: Lost connection to dumpling hub: hub closed the connection: 1001; retrying in 1.0 s"
        );
        // Giving up on a hub never reached: the hint, unless it was given.
        let error = eater_client::Error::CannotConnect {
            hub: "127.0.0.1:9".into(),
            reason: "Connection refused (os error 111)".into(),
            unreachable: true,
        };
        assert_eq!(
            fatal_message("e", &error, false),
            format!(
                "e: could not connect to the dumpling hub at 127.0.0.1:9: Connection refused \
                 (os error 111). {}",
                no_hub_hint()
            )
        );
        assert!(!fatal_message("e", &error, true).contains("Is nd-hub running"));
    }
}
