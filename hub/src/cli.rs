//! Command-line flags of `nd-hub` (the original's `-a/-i/-o/-f`, plus tuning flags) and
//! their conversion into a validated [`hub::Config`].

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// nd-hub: receives dumplings from kitchens and sends them to every eater.
#[derive(Debug, Parser)]
#[command(name = "nd-hub", version, about, max_term_width = 100)]
pub struct Cli {
    /// Helper commands (none: run the hub).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Address to listen on (both servers). `localhost` binds every address it resolves to.
    /// The default stays on this machine; a non-loopback address without --tls-cert and
    /// --auth prints a warning saying what is exposed.
    #[arg(
        short = 'a',
        long,
        value_name = "HOSTNAME",
        default_value = "localhost"
    )]
    pub address: String,
    /// Port for dumpling kitchens.
    #[arg(short = 'i', long, value_name = "PORT", default_value_t = dumpling::DEFAULT_IN_PORT)]
    pub in_port: u16,
    /// Port for dumpling eaters.
    #[arg(short = 'o', long, value_name = "PORT", default_value_t = dumpling::DEFAULT_OUT_PORT)]
    pub out_port: u16,
    /// Seconds between SystemStatusChef dumplings (must be > 0).
    #[arg(short = 'f', long, value_name = "SECONDS", allow_negative_numbers = true, default_value_t = dumpling::DEFAULT_STATUS_FREQ_SECS as f64)]
    pub status_freq: f64,
    /// Largest dumpling accepted from a kitchen, in bytes (1 MiB like the original).
    #[arg(long, value_name = "BYTES", default_value_t = dumpling::MAX_MESSAGE_BYTES)]
    pub max_message_bytes: usize,
    /// Dumplings kept in the shared fan-out ring (how far an eater may fall behind).
    #[arg(long, value_name = "N", default_value_t = 4096)]
    pub ring_capacity: usize,
    /// Bytes an eater may fall behind before its oldest dumplings are dropped.
    #[arg(long, value_name = "BYTES", default_value_t = 4 << 20)]
    pub eater_queue_bytes: u64,
    /// Seconds without write progress before a slow eater is disconnected.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    pub write_timeout: f64,
    /// Seconds allowed for the WebSocket handshake plus the hello.
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0)]
    pub hello_timeout: f64,
    /// Seconds between WebSocket pings (an eater silent for twice this is dropped).
    #[arg(long, value_name = "SECONDS", default_value_t = 20.0)]
    pub ping_interval: f64,
    /// Runtime threads. 1 (the default) runs the whole hub on one core, which measured
    /// fastest on 2-core machines: the fan-out ring is shared, so more threads mostly add
    /// contention.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub threads: usize,
    /// Kitchen connections allowed past their WebSocket upgrade (authorised, under --auth);
    /// more get HTTP 503. Connections still in their handshake do not count (--max-pending).
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub max_kitchens: usize,
    /// Eater connections allowed past their WebSocket upgrade; more get HTTP 503.
    #[arg(long, value_name = "N", default_value_t = 4096)]
    pub max_eaters: usize,
    /// Connections per port still in their handshake (TLS, request, upgrade, token check)
    /// or being served the web page. When full, the oldest is closed to make room (and one
    /// address may hold at most 32), so idle connections cannot keep real peers out.
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub max_pending: usize,
    /// At most this many kitchens and eaters listed in a status dumpling (counts stay exact).
    #[arg(long, value_name = "N", default_value_t = 25)]
    pub status_list_max: usize,
    /// Serve wss:// on both ports with this certificate chain (PEM, leaf first). The file
    /// is reloaded when it changes or on SIGHUP; open connections are kept. A certificate
    /// expired, not yet valid or expiring within 7 days is warned about.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require client certificates issued by this CA (PEM) on both ports (mutual TLS).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// Principals and token hashes (TOML; see README "Deployment"). Every connection must
    /// then present a known token on the upgrade (else HTTP 401), kitchens may only use
    /// their kitchen names, and restricted eaters get only their chefs and kitchens.
    /// Reloaded when the file changes or on SIGHUP; revoked tokens' connections close. A
    /// file with no principal is refused at start (exit 2) and not taken on a reload (the
    /// previous principals stay, with a warning).
    #[arg(long, value_name = "FILE")]
    pub auth: Option<PathBuf>,
    /// A web origin (`scheme://host[:port]`) whose pages may open WebSockets to the hub,
    /// besides the hub's own web view; repeat for more, `*` for any. Requests without an
    /// `Origin` header (nd-sniff, nd-print, the Python clients) are always allowed; a browser
    /// page of any other origin gets HTTP 403.
    #[arg(long, value_name = "ORIGIN")]
    pub allow_origin: Vec<String>,
    /// A host name (no scheme, no port) by which browser pages may reach the hub on a
    /// loopback address, besides localhost, *.localhost and loopback IPs; repeat for more,
    /// `*` for any. A browser request (one with an `Origin`) that reached loopback under any
    /// other name gets HTTP 403: a page that points its own DNS name here (DNS rebinding).
    #[arg(long, value_name = "NAME")]
    pub allow_host: Vec<String>,
    /// Federation over NATS JetStream (`--nats` and friends).
    #[command(flatten)]
    pub fleet: hub::fleet::FleetArgs,
    /// Serve Prometheus metrics at `http://ADDR/metrics` (off by default). `ADDR` is
    /// `HOST:PORT` or a bare `PORT` (on 127.0.0.1); the flag alone means 127.0.0.1:11349.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "11349")]
    pub metrics_address: Option<String>,
}

/// `nd-hub` helper commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a new random token (give it to the client, e.g. in a --token-file) and the
    /// `token_sha256` line for the --auth file (only the hash is stored there).
    Token,
}

/// Why the flags do not make a valid configuration.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A duration flag was zero, negative, not finite or too large.
    #[error("--{0} must be a number of seconds > 0 and under 1e9 (got {1})")]
    BadSeconds(&'static str, f64),
    /// A size flag was zero.
    #[error("--{0} must be > 0")]
    Zero(&'static str),
    /// A `--nats*` flag is wrong.
    #[error(transparent)]
    Fleet(#[from] hub::fleet::args::FleetArgsError),
    /// An `--allow-origin` value is not an origin.
    #[error(transparent)]
    BadOrigin(#[from] hub::origin::BadOrigin),
    /// An `--allow-host` value is not a host name.
    #[error(transparent)]
    BadHost(#[from] hub::origin::BadHost),
    /// `--metrics-address` is neither `HOST:PORT` nor a port.
    #[error(
        "--metrics-address {0:?} is not IP:PORT or a port number (e.g. 127.0.0.1:11349 or 11349)"
    )]
    BadMetricsAddress(String),
}

/// `--metrics-address`: a bare port binds loopback; otherwise an `IP:PORT`.
pub fn metrics_address(text: &str) -> Result<std::net::SocketAddr, CliError> {
    hub_link::metrics_http::parse_address(text, 11349)
        .map_err(|_| CliError::BadMetricsAddress(text.to_owned()))
}

fn seconds(flag: &'static str, value: f64) -> Result<Duration, CliError> {
    if value.is_finite() && value > 0.0 && value < 1e9 {
        Ok(Duration::from_secs_f64(value))
    } else {
        Err(CliError::BadSeconds(flag, value))
    }
}

impl Cli {
    /// Check the flags and build the hub's [`hub::Config`].
    pub fn config(&self) -> Result<hub::Config, CliError> {
        if self.max_message_bytes == 0 {
            return Err(CliError::Zero("max-message-bytes"));
        }
        if self.threads == 0 {
            return Err(CliError::Zero("threads"));
        }
        if self.ring_capacity == 0 {
            return Err(CliError::Zero("ring-capacity"));
        }
        if self.eater_queue_bytes == 0 {
            return Err(CliError::Zero("eater-queue-bytes"));
        }
        if self.max_kitchens == 0 {
            return Err(CliError::Zero("max-kitchens"));
        }
        if self.max_eaters == 0 {
            return Err(CliError::Zero("max-eaters"));
        }
        if self.max_pending == 0 {
            return Err(CliError::Zero("max-pending"));
        }
        let ping = seconds("ping-interval", self.ping_interval)?;
        Ok(hub::Config {
            status_freq: seconds("status-freq", self.status_freq)?,
            max_message_bytes: self.max_message_bytes,
            ring_capacity: self.ring_capacity,
            eater_queue_bytes: self.eater_queue_bytes,
            write_timeout: seconds("write-timeout", self.write_timeout)?,
            hello_timeout: seconds("hello-timeout", self.hello_timeout)?,
            ping_interval: ping,
            ping_timeout: ping,
            status_list_max: self.status_list_max,
            max_kitchens: self.max_kitchens,
            max_eaters: self.max_eaters,
            max_pending: self.max_pending,
            allowed_origins: hub::origin::AllowedOrigins::parse(&self.allow_origin)?,
            allowed_hosts: hub::origin::AllowedHosts::parse(&self.allow_host)?,
            fleet: self.fleet.options()?,
            metrics_address: self
                .metrics_address
                .as_deref()
                .map(metrics_address)
                .transpose()?,
            ..hub::Config::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }

    #[test]
    fn original_flags_and_defaults() {
        let cli = Cli::try_parse_from(["nd-hub"]).unwrap();
        assert_eq!(cli.address, "localhost");
        assert_eq!(cli.in_port, 11347);
        assert_eq!(cli.out_port, 11348);
        assert_eq!(cli.config().unwrap().status_freq, Duration::from_secs(5));
        let cli =
            Cli::try_parse_from(["nd-hub", "-a", "127.0.0.1", "-i", "1", "-o", "2", "-f", "3"])
                .unwrap();
        assert_eq!(
            (cli.address.as_str(), cli.in_port, cli.out_port),
            ("127.0.0.1", 1, 2)
        );
        let cli = Cli::try_parse_from([
            "nd-hub",
            "--address",
            "::1",
            "--in-port",
            "5",
            "--out-port",
            "6",
            "--status-freq",
            "0.5",
        ])
        .unwrap();
        assert_eq!(
            cli.config().unwrap().status_freq,
            Duration::from_millis(500)
        );
    }

    #[test]
    fn metrics_are_off_by_default_and_loopback_when_bare() {
        let config = |args: &[&str]| {
            Cli::try_parse_from(std::iter::once("nd-hub").chain(args.iter().copied()))
                .unwrap()
                .config()
        };
        assert_eq!(config(&[]).unwrap().metrics_address, None);
        assert_eq!(
            config(&["--metrics-address"]).unwrap().metrics_address,
            Some(([127, 0, 0, 1], 11349).into())
        );
        assert_eq!(
            config(&["--metrics-address", "9100"])
                .unwrap()
                .metrics_address,
            Some(([127, 0, 0, 1], 9100).into())
        );
        assert_eq!(
            config(&["--metrics-address=0.0.0.0:9100"])
                .unwrap()
                .metrics_address,
            Some(([0, 0, 0, 0], 9100).into())
        );
        assert!(config(&["--metrics-address", "nowhere"]).is_err());
    }

    #[test]
    fn status_freq_must_be_positive() {
        let cli = Cli::try_parse_from(["nd-hub", "-f", "0"]).unwrap();
        assert!(cli.config().is_err());
        let cli = Cli::try_parse_from(["nd-hub", "-f", "-1"]).unwrap();
        assert!(cli.config().is_err());
    }
}
