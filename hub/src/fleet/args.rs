//! The `--nats*` flags of `nd-hub` and their check into [`FleetOptions`].

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::Args;

use super::FleetOptions;

/// Federation flags: all optional; nothing NATS happens without `--nats`.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Fleet: federation over NATS JetStream (off without --nats)")]
pub struct FleetArgs {
    /// NATS servers to federate through, comma-separated or repeated:
    /// `nats://HOST:PORT`, `tls://HOST:PORT`, `nats://USER:PASS@HOST:PORT`. Every
    /// dumpling from this hub's kitchens is stored once in a JetStream stream and every
    /// hub on the same stream delivers the whole fleet's dumplings to its eaters.
    /// Needs nats-server 2.9 or later with JetStream; from 2.10 on the hub pulls exactly
    /// the subjects its eaters ask for (several filter subjects per consumer).
    #[arg(
        long,
        value_name = "URL[,URL...]",
        value_delimiter = ',',
        env = "ND_NATS"
    )]
    pub nats: Vec<String>,
    /// NATS credentials file (`.creds`: JWT plus NKey seed).
    #[arg(long, value_name = "FILE", requires = "nats")]
    pub nats_creds: Option<PathBuf>,
    /// NATS token (prefer the ND_NATS_TOKEN environment variable: flags show in `ps`).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "ND_NATS_TOKEN",
        hide_env_values = true
    )]
    pub nats_token: Option<String>,
    /// NATS user name (with --nats-password).
    #[arg(long, value_name = "USER", requires = "nats_password")]
    pub nats_user: Option<String>,
    /// NATS password (prefer the ND_NATS_PASSWORD environment variable).
    #[arg(
        long,
        value_name = "PASSWORD",
        env = "ND_NATS_PASSWORD",
        hide_env_values = true
    )]
    pub nats_password: Option<String>,
    /// Extra CA certificate (PEM) to trust for TLS to NATS.
    #[arg(long, value_name = "FILE")]
    pub nats_tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS to NATS (with --nats-tls-key).
    #[arg(long, value_name = "FILE", requires = "nats_tls_key")]
    pub nats_tls_cert: Option<PathBuf>,
    /// Client key (PEM) for mutual TLS to NATS (with --nats-tls-cert).
    #[arg(long, value_name = "FILE", requires = "nats_tls_cert")]
    pub nats_tls_key: Option<PathBuf>,
    /// Require TLS to NATS even for `nats://` URLs.
    #[arg(long)]
    pub nats_tls_required: bool,
    /// JetStream stream holding the fleet's dumplings (created if missing; every hub of a
    /// fleet must name the same one).
    #[arg(long, value_name = "NAME", default_value = "ND_DUMPLINGS")]
    pub nats_stream: String,
    /// Subject prefix; dumplings go to `PREFIX.<kitchen>.<chef>.<driver>` (tokens escaped,
    /// see ARCHITECTURE.md).
    #[arg(long, value_name = "PREFIX", default_value = "nd.dumplings")]
    pub nats_subject_prefix: String,
    /// Oldest dumpling the stream keeps (replay horizon): NUMBER[s|m|h|d].
    #[arg(long, value_name = "AGE", default_value = "24h", value_parser = parse_duration)]
    pub nats_max_age: Duration,
    /// Most bytes the stream keeps; the oldest dumplings go first.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 30)]
    pub nats_max_bytes: i64,
    /// Stream replicas: 1 for one server, 3 on a 3-node cluster (survives one node down).
    /// Only used when the stream is created.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub nats_replicas: usize,
    /// How long JetStream remembers dumpling ids to drop re-sent copies: NUMBER[s|m|h|d].
    #[arg(long, value_name = "AGE", default_value = "2m", value_parser = parse_duration)]
    pub nats_dedup_window: Duration,
    /// This hub's name in the fleet (default: a random id).
    #[arg(long, value_name = "ID")]
    pub nats_hub_id: Option<String>,
    /// JetStream domain of the NATS server this hub talks to (a site's own `nats-server`
    /// that is a leaf node of the main cluster, with `jetstream { domain: SITE }`). The
    /// site's stream lives there, so the site keeps working while the leaf link is down.
    #[arg(long, value_name = "DOMAIN")]
    pub nats_domain: Option<String>,
    /// Source the stream of the same name from the JetStream domain DOMAIN into this
    /// hub's stream (comma-separated or repeated; one per site). Give it to the main
    /// cluster's hubs: each site's dumplings reach them, once, when the leaf link is up,
    /// including what the site stored while it was down. Only used when the stream is
    /// created.
    #[arg(long, value_name = "DOMAIN[,DOMAIN...]", value_delimiter = ',')]
    pub nats_source_domain: Vec<String>,
    /// Replay (eaters asking for `nd_since`, `nd_since_seq` or `nd_seq`): dumplings per
    /// second one such eater's own JetStream consumer may deliver (one second of burst).
    #[arg(long, value_name = "N", default_value_t = 20000)]
    pub replay_rate: u32,
    /// Replay: eaters with their own JetStream consumer at once on this hub; further
    /// requests are told so (a HubNoticeChef notice) and served live.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub replay_max_eaters: usize,
    /// Core NATS subject prefix of the hubs' status reports: each hub publishes to
    /// `PREFIX.<hub id>` and lists every hub it hears from in the `fleet` section of its
    /// SystemStatusChef dumplings. Must lie outside the dumpling prefix.
    #[arg(long, value_name = "PREFIX", default_value = "nd.status")]
    pub nats_status_prefix: String,
    /// How often this hub publishes its status report (a hub silent for 3 of its periods
    /// leaves the other hubs' fleet section), at most 60s: NUMBER[s|m|h|d].
    #[arg(long, value_name = "AGE", default_value = "5s", value_parser = parse_duration)]
    pub nats_status_period: Duration,
    /// Gather dumplings read from NATS for this long before handing them to the eaters
    /// (`500us`, `1ms`; `0` = each at once): eaters then write a burst per wake-up, not
    /// one dumpling, which saves the hub CPU at high rates for at most this much latency.
    #[arg(long, value_name = "TIME", default_value = "1ms", value_parser = parse_linger)]
    pub nats_deliver_linger: Duration,
}

/// Why the federation flags are not usable.
#[derive(Debug, thiserror::Error)]
pub enum FleetArgsError {
    /// A URL in `--nats` does not parse.
    #[error(
        "--nats: {url:?} is not a NATS URL ({detail}); use nats://HOST:PORT or tls://HOST:PORT"
    )]
    BadUrl {
        /// The URL as given.
        url: String,
        /// Why.
        detail: String,
    },
    /// A name that must be one NATS token is not.
    #[error("--{flag} {value:?}: use letters, digits, '_' and '-' only{extra}")]
    BadName {
        /// The flag.
        flag: &'static str,
        /// Its value.
        value: String,
        /// More detail.
        extra: &'static str,
    },
    /// A number out of range.
    #[error("--{0} must be > 0")]
    Zero(&'static str),
    /// A value out of its range.
    #[error("--{flag}: {detail}")]
    Range {
        /// The flag.
        flag: &'static str,
        /// The allowed range.
        detail: &'static str,
    },
    /// A file flag names something that cannot be read as its file.
    #[error("--{flag} {}: {source}", dumpling::text::escape_path(path))]
    File {
        /// The flag.
        flag: &'static str,
        /// The path given.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Largest NATS credentials, CA, certificate or key file read.
const MAX_FILE_BYTES: u64 = 1 << 20;

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl FleetArgs {
    /// `None` without `--nats`; else the checked options.
    pub fn options(&self) -> Result<Option<FleetOptions>, FleetArgsError> {
        if self.nats.is_empty() {
            return Ok(None);
        }
        // Checked here, bounded and regular files only: the NATS client reads these paths
        // itself, whole, and a FIFO or /dev/zero would hang or fill the hub at start.
        let files = [
            ("nats-creds", &self.nats_creds),
            ("nats-tls-ca", &self.nats_tls_ca),
            ("nats-tls-cert", &self.nats_tls_cert),
            ("nats-tls-key", &self.nats_tls_key),
        ];
        for (flag, path) in files {
            if let Some(path) = path {
                bounded_read::read_bounded(path, MAX_FILE_BYTES).map_err(|source| {
                    FleetArgsError::File {
                        flag,
                        path: path.clone(),
                        source,
                    }
                })?;
            }
        }
        let mut servers = Vec::new();
        for url in self.nats.iter().map(|u| u.trim()).filter(|u| !u.is_empty()) {
            let addr =
                async_nats::ServerAddr::from_str(url).map_err(|e| FleetArgsError::BadUrl {
                    url: url.to_owned(),
                    detail: e.to_string(),
                })?;
            servers.push(addr);
        }
        if servers.is_empty() {
            return Err(FleetArgsError::BadUrl {
                url: self.nats.join(","),
                detail: "no server given".into(),
            });
        }
        if !is_token(&self.nats_stream) {
            return Err(FleetArgsError::BadName {
                flag: "nats-stream",
                value: self.nats_stream.clone(),
                extra: "",
            });
        }
        if self.nats_subject_prefix.is_empty()
            || self.nats_subject_prefix.len() > 128
            || !self.nats_subject_prefix.split('.').all(is_token)
        {
            return Err(FleetArgsError::BadName {
                flag: "nats-subject-prefix",
                value: self.nats_subject_prefix.clone(),
                extra: ", in dot-separated tokens (no wildcards)",
            });
        }
        for (flag, domain) in self.nats_domain.iter().map(|d| ("nats-domain", d)).chain(
            self.nats_source_domain
                .iter()
                .map(|d| ("nats-source-domain", d)),
        ) {
            if !is_token(domain) {
                return Err(FleetArgsError::BadName {
                    flag,
                    value: domain.clone(),
                    extra: " (a JetStream domain name)",
                });
            }
        }
        if self.replay_rate == 0 {
            return Err(FleetArgsError::Zero("replay-rate"));
        }
        let status_under_dumplings = self.nats_status_prefix == self.nats_subject_prefix
            || self
                .nats_status_prefix
                .starts_with(&format!("{}.", self.nats_subject_prefix));
        if self.nats_status_prefix.is_empty()
            || self.nats_status_prefix.len() > 128
            || !self.nats_status_prefix.split('.').all(is_token)
            || status_under_dumplings
        {
            return Err(FleetArgsError::BadName {
                flag: "nats-status-prefix",
                value: self.nats_status_prefix.clone(),
                extra: ", in dot-separated tokens (no wildcards), outside --nats-subject-prefix",
            });
        }
        // The other hubs trust a report's period up to a minute (`status.rs`).
        if self.nats_status_period > Duration::from_secs(60) {
            return Err(FleetArgsError::Range {
                flag: "nats-status-period",
                detail: "at most 60s (a hub ages out after 3 periods, and the other hubs take a reported period of at most a minute)",
            });
        }
        if self.nats_max_bytes <= 0 {
            return Err(FleetArgsError::Zero("nats-max-bytes"));
        }
        if self.nats_replicas == 0 || self.nats_replicas > 5 {
            return Err(FleetArgsError::Zero("nats-replicas (1..=5)"));
        }
        let hub_id = match &self.nats_hub_id {
            Some(id) if is_token(id) => id.clone(),
            Some(id) => {
                return Err(FleetArgsError::BadName {
                    flag: "nats-hub-id",
                    value: id.clone(),
                    extra: " (at most 64)",
                })
            }
            None => random_id(),
        };
        Ok(Some(FleetOptions {
            servers,
            creds: self.nats_creds.clone(),
            token: self.nats_token.clone(),
            user_password: self.nats_user.clone().zip(self.nats_password.clone()),
            tls_ca: self.nats_tls_ca.clone(),
            tls_client: self.nats_tls_cert.clone().zip(self.nats_tls_key.clone()),
            tls_required: self.nats_tls_required,
            stream: self.nats_stream.clone(),
            subject_prefix: self.nats_subject_prefix.clone(),
            max_age: self.nats_max_age,
            max_bytes: self.nats_max_bytes,
            replicas: self.nats_replicas,
            duplicate_window: self.nats_dedup_window,
            hub_id,
            publish_queue: 4096,
            max_in_flight: 1024,
            domain: self.nats_domain.clone(),
            source_domains: self.nats_source_domain.clone(),
            replay_rate: self.replay_rate,
            replay_max_eaters: self.replay_max_eaters,
            status_prefix: self.nats_status_prefix.clone(),
            status_period: self.nats_status_period,
            deliver_linger: self.nats_deliver_linger,
        }))
    }
}

/// A random 16-hex-digit id (std's per-process random hash keys, mixed with the time
/// and pid; ids only need to be distinct, not secret).
pub fn random_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())
}

/// Parse a linger time: `NUMBERus` or `NUMBERms`, or `0`; at most 100 ms.
fn parse_linger(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, scale) = if let Some(n) = text.strip_suffix("us") {
        (n, 1e-6)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1e-3)
    } else if text == "0" {
        ("0", 0.0)
    } else {
        return Err(format!(
            "{text:?}: expected microseconds (500us), milliseconds (1ms) or 0"
        ));
    };
    match number.parse::<f64>() {
        Ok(n) if n.is_finite() && n >= 0.0 && n * scale <= 0.1 => {
            Ok(Duration::from_secs_f64(n * scale))
        }
        _ => Err(format!("{text:?}: expected a time from 0 to 100ms")),
    }
}

/// Parse `NUMBER[s|m|h|d]` (seconds without a unit), e.g. `90`, `10m`, `24h`, `1.5d`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&text[..i], c),
        _ => (text, 's'),
    };
    let scale = match unit {
        's' => 1.0,
        'm' => 60.0,
        'h' => 3600.0,
        'd' => 86400.0,
        _ => return Err(format!("{text:?}: unit must be s, m, h or d")),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?}: expected NUMBER[s|m|h|d], e.g. 10m"))?;
    let secs = value * scale;
    if !(secs.is_finite() && secs > 0.0 && secs < dumpling::eater_hello_keys::MAX_SINCE_SECS) {
        return Err(format!("{text:?}: must be > 0 and under 1e10 seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nats_files_that_are_no_regular_files_are_refused_before_connecting() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            fleet: FleetArgs,
        }
        use clap::Parser as _;
        for flag in ["--nats-tls-ca", "--nats-creds"] {
            let cli = Cli::try_parse_from([
                "nd-hub",
                "--nats",
                "nats://127.0.0.1:4222",
                flag,
                "/dev/zero",
            ])
            .expect("flags parse");
            let error = cli.fleet.options().unwrap_err().to_string();
            assert!(error.contains("/dev/zero: not a regular file"), "{error}");
            assert!(error.contains(&flag[2..]), "{error}");
        }
    }

    #[test]
    fn linger_times_are_small_and_say_their_unit() {
        assert_eq!(parse_linger("0"), Ok(Duration::ZERO));
        assert_eq!(parse_linger("500us"), Ok(Duration::from_micros(500)));
        assert_eq!(parse_linger("1ms"), Ok(Duration::from_millis(1)));
        assert!(parse_linger("1").is_err(), "a unit is required");
        assert!(parse_linger("101ms").is_err());
        assert!(parse_linger("-1ms").is_err());
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86400)));
        assert_eq!(parse_duration("1.5d"), Ok(Duration::from_secs(129600)));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("5w").is_err());
        assert!(parse_duration("x").is_err());
    }
}
