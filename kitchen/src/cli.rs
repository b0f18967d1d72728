//! `nd-sniff` command line: the raw [`Cli`] (clap derive) and the validated [`Config`].
//!
//! Compatible with the original's flags (§4.2): `-n/--kitchen-name`, `-h/--hub` (so `-h`
//! is NOT help; `--help` is), `-i/--interface`, `-f/--filter`, `-c/--chef`, `-l/--chef-list`,
//! `-p/--poke-interval`. The original's `-m/--chef-module` (Python modules) has no
//! equivalent: chefs are WebAssembly components, built in or loaded with `-d/--chef-dir`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{ArgAction, Parser};

use kitchen::chef_host::limits::{ChefLimits, DEFAULT_DEADLINE_MS, DEFAULT_MEMORY_MIB};
use kitchen::chef_host::CacheSetting;

/// nd-sniff: the netdumplings kitchen. Captures packets (or replays a capture file), runs
/// the chefs on them and sends their dumplings to the hub.
#[derive(Debug, Parser)]
#[command(
    name = "nd-sniff",
    version,
    disable_help_flag = true,
    after_help = "Exit status: 0 when the run ended normally (end of the capture file, Ctrl-C or \
                  SIGTERM; a second signal exits at once with 130, but during the final wait \
                  for the hub, which it ends, saying what was lost); 1 when something failed (a \
                  capture file that cannot be read or is damaged part-way: the packets before \
                  the damage were processed; a capture that cannot start; dumplings that could \
                  not be delivered; a token, CA, certificate or key file that cannot be \
                  used); 2 for a usage error."
)]
pub struct Cli {
    /// Kitchen name, sent in the hello and in every dumpling's `metadata.kitchen`.
    #[arg(
        short = 'n',
        long,
        value_name = "KITCHEN_NAME",
        default_value = "default_kitchen"
    )]
    pub kitchen_name: String,

    /// Hub to send dumplings to: `HOST:PORT` (ws://) or `wss://HOST:PORT` (TLS; see
    /// --tls-ca). `-h` is this flag, not help. Several
    /// hubs (`-h A:1,B:2` or `-h` repeated) make a failover list: when the current hub is
    /// lost the kitchen moves to the next and re-sends its queue in order, plus its last
    /// `--resend-tail` dumplings (federated hubs drop the copies by dumpling id).
    #[arg(
        short = 'h',
        long,
        value_name = "HOST:PORT[,HOST:PORT...]",
        value_delimiter = ',',
        default_value = "localhost:11347"
    )]
    pub hub: Vec<String>,

    /// Give every dumpling a stable id, `metadata.nd_id` = `<kitchen id>-<sequence>`
    /// (original eaters ignore the extra key). On by default with several hubs; federated
    /// hubs (`nd-hub --nats`) use it as JetStream's `Nats-Msg-Id`.
    #[arg(long)]
    pub dumpling_ids: bool,

    /// With dumpling ids: after a reconnect, re-send this many of the last dumplings that
    /// were written to the previous hub (they may have died with it unpublished).
    #[arg(long, value_name = "N", default_value_t = 4096)]
    pub resend_tail: usize,

    /// Ping the hub every SECS seconds; a hub that sends nothing back (not even a pong) for
    /// three of them, or takes no data for as long, is taken for gone and the kitchen fails
    /// over. This catches a hub whose host froze or whose link was cut, which sends no
    /// reset. 0 turns it off (then such a hub is noticed only when TCP gives up, minutes later).
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    pub hub_keepalive_secs: f64,

    /// TLS and token settings for the hub link.
    #[command(flatten)]
    pub link: hub_link::LinkArgs,

    /// Flow table size and idle timeouts (used only when a chef asks for flows or streams).
    #[command(flatten)]
    pub flows: kitchen::parse::flow_stage::FlowArgs,

    /// Interface to capture on; repeat for several. `all` (the default) means every
    /// interface. Loopback packets are seen once; the kernel's counts (`kernel_dropped`)
    /// count each once on `lo`, but twice on `all`/`any`, where the kernel queues both the
    /// outgoing and the incoming copy of each loopback packet.
    #[arg(short = 'i', long = "interface", value_name = "INTERFACE")]
    pub interfaces: Vec<String>,

    /// BPF capture filter (tcpdump syntax); an empty string means no filter. Live capture
    /// defaults to `tcp or udp or arp` (the original's default); a replay (`-r`) reads every
    /// packet unless a filter is given, as tcpdump and tshark do.
    #[arg(short = 'f', long, value_name = "PCAP_FILTER")]
    pub filter: Option<String>,

    /// Longest libpcap may take to compile the filter, in seconds (per link type): the
    /// compile is tried in a child process first and a filter that takes longer is refused
    /// (libpcap's optimizer is superlinear: 600 `host` terms take ~10 s).
    #[arg(long, value_name = "SECONDS", default_value_t = kitchen::input::filter_check::CHECK_TIMEOUT.as_secs())]
    pub filter_compile_timeout_secs: u64,

    /// Run only the chefs of these names: comma-separated (`-c A,B`) or `-c` repeated, as
    /// `-h` (default: every chef found). Chef names never hold a comma: 1-64 of
    /// `A-Z a-z 0-9 _ -`.
    #[arg(
        short = 'c',
        long = "chef",
        value_name = "CHEF_NAME[,CHEF_NAME...]",
        value_delimiter = ',',
        value_parser = chef_name_arg
    )]
    pub chefs: Vec<String>,

    /// List every chef found (name, version, drivers, interest, source) and exit.
    #[arg(short = 'l', long)]
    pub chef_list: bool,

    /// Seconds between interval pokes (a float > 0).
    #[arg(short = 'p', long, value_name = "SECONDS", allow_negative_numbers = true,
          default_value_t = dumpling::DEFAULT_POKE_INTERVAL_SECS)]
    pub poke_interval: f64,

    /// Replay a pcap or pcapng file instead of capturing live. A FIFO or a pipe works too
    /// (`tcpdump -w - | nd-sniff -r -`; `-` is standard input, as for tcpdump): packets go
    /// to the chefs whenever the input pauses, not only every 256 packets.
    #[arg(short = 'r', long, value_name = "FILE", conflicts_with = "interfaces")]
    pub read: Option<PathBuf>,

    /// Also load every `*.wasm` chef component in this directory.
    #[arg(short = 'd', long, value_name = "DIR")]
    pub chef_dir: Option<PathBuf>,

    /// Do not load the built-in sample chefs (use only `--chef-dir`).
    #[arg(long)]
    pub no_builtin_chefs: bool,

    /// Print every dumpling as one JSON line on stdout (for `jq`).
    #[arg(long)]
    pub stdout: bool,

    /// Do not connect to a hub.
    #[arg(long, conflicts_with = "hub")]
    pub no_hub: bool,

    /// Memory limit per chef, in MiB: all its linear memories together plus its tables
    /// (8 bytes per element).
    #[arg(long, value_name = "MIB", default_value_t = DEFAULT_MEMORY_MIB)]
    pub chef_memory_mib: u64,

    /// Memory (linear memories and tables) of ALL chefs together, in MiB: a chef whose
    /// memory or table growth would pass it fails that call (counted as a memory failure,
    /// logged with the chef's name).
    #[arg(long, value_name = "MIB", default_value_t = kitchen::chef_host::limits::DEFAULT_CHEFS_MEMORY_MIB)]
    pub chefs_memory_mib: u64,

    /// Largest chef file read, in MiB: checked on the opened file before reading (a
    /// larger `*.wasm` is refused with its size, without reading it).
    #[arg(long, value_name = "MIB", default_value_t = kitchen::chef_host::chef_file::DEFAULT_MAX_CHEF_FILE_MIB)]
    pub max_chef_file_mib: u64,

    /// Wall-clock limit of one chef compile, in seconds: each compile runs in a child
    /// process, killed at this limit (the chef is refused with the reason).
    #[arg(long, value_name = "SECONDS", default_value_t = kitchen::chef_host::compile_worker::DEFAULT_COMPILE_TIMEOUT_SECS)]
    pub chef_compile_timeout_secs: u64,

    /// Address-space limit of one chef compile child, in MiB (a compile that needs more is
    /// stopped and the chef refused).
    #[arg(long, value_name = "MIB", default_value_t = kitchen::chef_host::compile_worker::DEFAULT_COMPILE_MEMORY_MIB)]
    pub chef_compile_memory_mib: u64,

    /// Compiled-chef cache size, in MiB: least recently used entries are evicted past it.
    #[arg(long, value_name = "MIB", default_value_t = kitchen::chef_host::cache::DEFAULT_CACHE_MIB)]
    pub chef_cache_mib: u64,

    /// Payload bytes one chef call may return (all its dumplings together); the call's
    /// further dumplings are dropped and counted (`over_budget`).
    #[arg(long, value_name = "BYTES", default_value_t = kitchen::chef_host::limits::DEFAULT_MAX_OUTPUT_BYTES_PER_CALL)]
    pub chef_output_bytes_per_call: u64,

    /// Payload bytes one chef may emit per second (capture time in a replay, so a replay
    /// always drops the same dumplings); over it, dumplings are dropped and counted.
    #[arg(long, value_name = "BYTES", default_value_t = kitchen::chef_host::limits::DEFAULT_MAX_OUTPUT_BYTES_PER_SEC)]
    pub chef_output_bytes_per_sec: u64,

    /// Largest chef state carried across a hot reload, in bytes: when a chef's file is
    /// replaced, a chef that exports `netdumplings:chef/state` is snapshotted and its new
    /// version restored from it; a larger snapshot is not copied and the new version starts
    /// fresh (logged). 0 turns state carrying off.
    #[arg(long, value_name = "BYTES", default_value_t = kitchen::chef_host::state::DEFAULT_MAX_STATE_BYTES)]
    pub chef_state_max_bytes: usize,

    /// Deadline per chef call, in milliseconds: the CPU time of the thread running the call
    /// plus the time it waits blocked in WASI (a sleep), not time spent waiting for a core;
    /// a call also ends after 4x this in wall time, whatever it used. The first call into a
    /// fresh instance (not one restarted after a timeout) gets 10x.
    #[arg(long, value_name = "MS", default_value_t = DEFAULT_DEADLINE_MS)]
    pub chef_deadline_ms: u64,

    /// Threads that call the chefs (the kitchen's own included): each batch and each poke
    /// is handed to the chefs on this many threads at once, so a slow chef holds up only
    /// its own thread; the output (order and bytes) is the same for any N. Default: live,
    /// the number of cores but one (the capture thread keeps its core); replaying (`-r`),
    /// the number of cores (a late packet is never lost there); at most the number of
    /// chefs, at least 1, following the chefs as hot reload adds and retires them; 1 calls
    /// the chefs one after the other on the kitchen's thread.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub chef_threads: Option<u16>,

    /// At the end, wait at most this many seconds (0 to 86400) for queued dumplings to reach
    /// the hub. A signal (Ctrl-C) during the wait ends it; what was not delivered is then
    /// counted as lost (exit 1).
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    pub flush_timeout: f64,

    /// Directory for compiled chefs (default `$XDG_CACHE_HOME/netdumplings` or
    /// `~/.cache/netdumplings`). Used only when owned by this user and not writable by
    /// group or others: its entries are native code the kitchen runs.
    #[arg(long, value_name = "DIR", conflicts_with = "no_chef_cache")]
    pub chef_cache_dir: Option<PathBuf>,

    /// Compile chefs at every start instead of caching them.
    #[arg(long)]
    pub no_chef_cache: bool,

    /// Do not watch `--chef-dir` for new, changed or deleted chef files (hot reload is on by
    /// default, for live capture and replays alike).
    #[arg(long)]
    pub no_chef_watch: bool,

    /// Run a chef file only when `CHEF.wasm.sig` beside it is a valid signature (made with
    /// `nd-chef sign`) by one of the public keys (`*.pub`, from `nd-chef keygen`) in DIR;
    /// others are refused with a log line naming the file, the reason and the key id, at
    /// start and on hot reload. Built-in chefs are part of this binary and always run.
    #[arg(long, value_name = "DIR")]
    pub trusted_chef_keys: Option<PathBuf>,

    /// Reassembly memory (used only when a chef asks for TCP stream bytes).
    #[command(flatten)]
    pub streams: kitchen::parse::stream_stage::StreamArgs,

    /// IP reassembly memory and timeout.
    #[command(flatten)]
    pub defrag: kitchen::parse::defrag::DefragArgs,

    /// Send a `KitchenStatusChef` dumpling (per-chef and capture counters) at every poke:
    /// `auto` = for live capture only (a replay's output then holds only the chefs'
    /// dumplings), `on`, `off`.
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = StatusMode::Auto)]
    pub kitchen_status: StatusMode,

    /// Serve Prometheus metrics (per-chef packets, dumplings, call-time histograms,
    /// failures, memory; capture, queue and hub counters) at `http://ADDR/metrics`, live
    /// and during `-r` (off by default). `ADDR` is `IP:PORT` or a bare `PORT` (on
    /// 127.0.0.1); the flag alone means 127.0.0.1:11350.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "11350")]
    pub metrics_address: Option<String>,

    /// Crash capsules (`--chef-crash-dir` and its caps).
    #[command(flatten)]
    pub capsules: kitchen::outputs::crash_capsule::CapsuleArgs,

    /// Do not draw the progress line of `-r` (drawn on stderr only when it is a terminal,
    /// and not while `--stdout` writes to a terminal; log lines are unchanged).
    #[arg(long)]
    pub quiet: bool,

    /// Print help.
    #[arg(long, action = ArgAction::Help)]
    pub help: Option<bool>,
}

/// When the kitchen sends its `KitchenStatusChef` dumpling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StatusMode {
    /// Live capture: yes; replay: no.
    Auto,
    /// Always (replays get the deterministic fields only).
    On,
    /// Never.
    Off,
}

/// Where packets come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// Replay this file.
    File(PathBuf),
    /// Capture live on these interfaces (`all` = every interface).
    Live(Vec<String>),
}

/// The live-capture filter when `-f` is not given (the original's default).
pub const DEFAULT_LIVE_FILTER: &str = "tcp or udp or arp";

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// `--kitchen-name`.
    pub kitchen_name: String,
    /// `--chef-threads` (`None`: live one per core but one, replaying one per core; at most
    /// one per chef).
    pub chef_threads: Option<usize>,
    /// TLS settings and token for the hub link.
    pub link: hub_link::Link,
    /// `HOST:PORT` or `ws(s)://HOST:PORT` of the hubs in failover order, `None` with `--no-hub`.
    pub hub: Option<Vec<String>>,
    /// Stamp dumplings with `metadata.nd_id` (explicit, or several hubs).
    pub dumpling_ids: bool,
    /// Dumplings re-sent after a reconnect when ids are on.
    pub resend_tail: usize,
    /// `--hub-keepalive-secs` (zero: off).
    pub hub_keepalive: std::time::Duration,
    /// Packet source.
    pub source: Source,
    /// The filter; `None` when empty.
    pub filter: Option<String>,
    /// The filter string as given (for the hello).
    pub filter_text: String,
    /// `--filter-compile-timeout-secs`.
    pub filter_compile_timeout: Duration,
    /// `-c` names.
    pub chefs: Vec<String>,
    /// `-l`.
    pub chef_list: bool,
    /// Poke period.
    pub poke_interval: Duration,
    /// Poke period as given (seconds, for the hello).
    pub poke_interval_secs: f64,
    /// `--chef-dir`.
    pub chef_dir: Option<PathBuf>,
    /// Load built-in chefs.
    pub builtin_chefs: bool,
    /// `--stdout`.
    pub stdout: bool,
    /// Per-chef limits.
    pub limits: ChefLimits,
    /// Compiled-chef cache.
    pub cache: CacheSetting,
    /// Compiled-chef cache size, bytes.
    pub cache_max_bytes: u64,
    /// Compile limits: wall time, address space (bytes).
    pub compile_limits: (Duration, u64),
    /// Flush wait at the end.
    pub flush_timeout: Duration,
    /// The interface text for the hello (`all`, or the names joined with `,`).
    pub interface_text: String,
    /// Hot reload of `--chef-dir` (not `--no-chef-watch`).
    pub watch_chef_dir: bool,
    /// `--kitchen-status`.
    pub kitchen_status: StatusMode,
    /// `--trusted-chef-keys`.
    pub trusted_chef_keys: Option<PathBuf>,
    /// `--metrics-address`: where to serve `/metrics` (off when `None`).
    pub metrics_address: Option<std::net::SocketAddr>,
    /// Draw the replay progress line (stderr is a terminal and not `--quiet`).
    pub progress: bool,
    /// `--stream-flow-buffer-kib`, `--stream-memory-mib`, checked.
    pub stream_limits: flowtrack::reassembly::ReassemblyLimits,
    /// `--ignore-stream-verdicts`: hand stream chefs every chunk, whatever they answer.
    pub ignore_stream_verdicts: bool,
    /// `--ip-reassembly-kib`, `--ip-reassembly-timeout`.
    pub defrag_limits: kitchen::parse::defrag::DefragLimits,
    /// `--flow-table-size`, `--flow-idle-*-secs`, checked.
    pub flows: flowtrack::table::FlowConfig,
    /// `--chef-crash-dir` and its caps, `--capsule-poke-ns`.
    pub capsules: kitchen::outputs::crash_capsule::CapsuleArgs,
}

/// `--hub-keepalive-secs`: zero (off), or between 0.1 s and one day.
/// One name of `-c`: the chef name rule (`validate_name`), spaces around it ignored
/// (`-c "A, B"`). A name that breaks the rule could never select a chef, so it is a usage
/// error, said at once, rather than a "not found" after every chef is loaded.
fn chef_name_arg(text: &str) -> Result<String, String> {
    let name = text.trim();
    kitchen::chef_host::instance::validate_name(name).map_err(|error| {
        format!("{error} (-c takes chef names, comma-separated or with -c repeated)")
    })?;
    Ok(name.to_owned())
}

/// Longest `--flush-timeout`: a day (a larger number of seconds made the kitchen panic
/// converting it to a duration).
const MAX_FLUSH_TIMEOUT_SECS: f64 = 86_400.0;

fn keepalive(secs: f64) -> anyhow::Result<Duration> {
    if secs == 0.0 {
        return Ok(Duration::ZERO);
    }
    if !(secs.is_finite() && (0.1..=86_400.0).contains(&secs)) {
        bail!("--hub-keepalive-secs must be 0 (off) or between 0.1 and 86400 seconds (got {secs})");
    }
    Ok(Duration::from_secs_f64(secs))
}

impl Config {
    /// Validate the raw arguments.
    pub fn from_cli(cli: Cli) -> anyhow::Result<Config> {
        if !(cli.poke_interval.is_finite() && cli.poke_interval > 0.0) {
            bail!(
                "--poke-interval must be a number of seconds > 0 (got {})",
                cli.poke_interval
            );
        }
        let poke_interval = Duration::try_from_secs_f64(cli.poke_interval)
            .context("--poke-interval is too large")?;
        if poke_interval < Duration::from_millis(1) {
            bail!("--poke-interval must be at least 0.001 seconds");
        }
        if !(cli.flush_timeout.is_finite()
            && (0.0..=MAX_FLUSH_TIMEOUT_SECS).contains(&cli.flush_timeout))
        {
            bail!(
                "--flush-timeout must be a number of seconds from 0 to {MAX_FLUSH_TIMEOUT_SECS} (got {})",
                cli.flush_timeout
            );
        }
        if cli.chef_memory_mib == 0 || cli.chef_memory_mib > 4096 {
            bail!("--chef-memory-mib must be between 1 and 4096");
        }
        if cli.chefs_memory_mib < cli.chef_memory_mib || cli.chefs_memory_mib > 1 << 20 {
            bail!(
                "--chefs-memory-mib must be at least --chef-memory-mib ({}) and at most 1048576",
                cli.chef_memory_mib
            );
        }
        if cli.filter_compile_timeout_secs == 0 || cli.filter_compile_timeout_secs > 3600 {
            bail!("--filter-compile-timeout-secs must be between 1 and 3600");
        }
        if cli.chef_compile_timeout_secs == 0 || cli.chef_compile_timeout_secs > 3600 {
            bail!("--chef-compile-timeout-secs must be between 1 and 3600");
        }
        if cli.chef_compile_memory_mib < 256 || cli.chef_compile_memory_mib > 1 << 20 {
            bail!("--chef-compile-memory-mib must be between 256 and 1048576");
        }
        if cli.max_chef_file_mib == 0 || cli.max_chef_file_mib > 4096 {
            bail!("--max-chef-file-mib must be between 1 and 4096");
        }
        if cli.chef_output_bytes_per_call == 0 || cli.chef_output_bytes_per_sec == 0 {
            bail!(
                "--chef-output-bytes-per-call and --chef-output-bytes-per-sec must be at least 1"
            );
        }
        if cli.chef_deadline_ms == 0 || cli.chef_deadline_ms > 60_000 {
            bail!("--chef-deadline-ms must be between 1 and 60000");
        }
        if cli.no_builtin_chefs && cli.chef_dir.is_none() && !cli.chef_list {
            bail!("--no-builtin-chefs needs --chef-dir DIR (there would be no chefs at all)");
        }
        cli.capsules.validate().map_err(anyhow::Error::msg)?;
        if cli.kitchen_name.is_empty() {
            bail!("--kitchen-name must not be empty");
        }
        let hub = if cli.no_hub {
            None
        } else {
            let hubs: Vec<String> = cli
                .hub
                .iter()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
                .collect();
            if hubs.is_empty() {
                bail!("--hub needs at least one HOST:PORT");
            }
            for hub in &hubs {
                hub_link::hub_uri(hub).map_err(|e| anyhow::anyhow!("--hub: {e}"))?;
            }
            Some(hubs)
        };
        let link = if cli.no_hub {
            hub_link::Link::plain()
        } else {
            cli.link.link()?
        };
        let dumpling_ids = cli.dumpling_ids || hub.as_ref().is_some_and(|h| h.len() > 1);
        let interfaces: Vec<String> = cli.interfaces.clone();
        let interface_text = if interfaces.is_empty() {
            "all".to_owned()
        } else {
            interfaces.join(",")
        };
        let source = match cli.read {
            // tcpdump's and tshark's name for standard input (a file really named `-` is
            // still `./-`).
            Some(path) if path.as_os_str() == "-" => Source::File(PathBuf::from("/dev/stdin")),
            Some(path) => Source::File(path),
            None => Source::Live(if interfaces.is_empty() {
                vec!["all".to_owned()]
            } else {
                interfaces
            }),
        };
        let limits = ChefLimits {
            memory_bytes: (cli.chef_memory_mib as usize) << 20,
            deadline: Duration::from_millis(cli.chef_deadline_ms),
            kitchen_memory: kitchen::chef_host::MemoryBudget::new(cli.chefs_memory_mib << 20),
            max_file_bytes: cli.max_chef_file_mib << 20,
            max_output_bytes_per_call: cli.chef_output_bytes_per_call,
            max_output_bytes_per_sec: cli.chef_output_bytes_per_sec,
            max_state_bytes: cli.chef_state_max_bytes,
            ..ChefLimits::default()
        };
        let cache = if cli.no_chef_cache {
            CacheSetting::Disabled
        } else if let Some(d) = cli.chef_cache_dir {
            CacheSetting::Dir(d)
        } else {
            CacheSetting::Default
        };
        let filter_text = match (&cli.filter, &source) {
            (Some(f), _) => f.clone(),
            (None, Source::File(_)) => String::new(),
            (None, _) => DEFAULT_LIVE_FILTER.to_owned(),
        };
        let filter = (!filter_text.trim().is_empty()).then(|| filter_text.clone());
        let metrics_address = cli
            .metrics_address
            .as_deref()
            .map(|a| {
                hub_link::metrics_http::parse_address(
                    a,
                    kitchen::outputs::metrics::DEFAULT_METRICS_PORT,
                )
            })
            .transpose()?;
        let flows = cli.flows.config()?;
        let hub_keepalive = keepalive(cli.hub_keepalive_secs)?;
        Ok(Config {
            flows,
            kitchen_name: cli.kitchen_name,
            hub,
            link,
            dumpling_ids,
            resend_tail: cli.resend_tail,
            hub_keepalive,
            source,
            filter,
            filter_text,
            filter_compile_timeout: Duration::from_secs(cli.filter_compile_timeout_secs),
            chefs: cli.chefs,
            chef_list: cli.chef_list,
            poke_interval,
            poke_interval_secs: cli.poke_interval,
            chef_dir: cli.chef_dir,
            builtin_chefs: !cli.no_builtin_chefs,
            stdout: cli.stdout,
            limits,
            cache,
            cache_max_bytes: cli.chef_cache_mib << 20,
            compile_limits: (
                Duration::from_secs(cli.chef_compile_timeout_secs),
                cli.chef_compile_memory_mib << 20,
            ),
            // In range: checked above.
            flush_timeout: Duration::from_secs_f64(cli.flush_timeout),
            interface_text,
            watch_chef_dir: !cli.no_chef_watch,
            kitchen_status: cli.kitchen_status,
            trusted_chef_keys: cli.trusted_chef_keys,
            metrics_address,
            capsules: cli.capsules,
            // Not when `--stdout` writes dumplings to the same terminal (they would land
            // in the middle of the line).
            progress: kitchen::input::progress::wanted(cli.quiet)
                && !(cli.stdout && std::io::IsTerminal::is_terminal(&std::io::stdout())),
            stream_limits: cli.streams.limits()?,
            ignore_stream_verdicts: cli.streams.ignore_stream_verdicts,
            defrag_limits: cli.defrag.limits(),
            chef_threads: cli.chef_threads.map(usize::from),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("nd-sniff").chain(args.iter().copied()))
    }

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_match_the_original() {
        let c = Config::from_cli(parse(&[]).unwrap()).unwrap();
        assert_eq!(c.kitchen_name, "default_kitchen");
        assert_eq!(c.hub, Some(vec!["localhost:11347".to_owned()]));
        assert!(!c.dumpling_ids);
        assert_eq!(c.filter.as_deref(), Some("tcp or udp or arp"));
        assert_eq!(c.poke_interval, Duration::from_secs(5));
        assert_eq!(c.source, Source::Live(vec!["all".into()]));
        assert_eq!(c.interface_text, "all");
    }

    /// Any number of seconds is an answer, never a panic (1e30 panicked converting it).
    #[test]
    fn flush_timeouts_out_of_range_are_usage_errors() {
        let arg = |v: &str| format!("--flush-timeout={v}");
        let config = |v: &str| Config::from_cli(parse(&[&arg(v)]).unwrap());
        for bad in [
            "1e30",
            "1e20",
            "18446744073709551616",
            "inf",
            "NaN",
            "-1",
            "86401",
        ] {
            let e = config(bad).unwrap_err().to_string();
            assert!(e.contains("--flush-timeout"), "{bad}: {e}");
        }
        assert_eq!(
            config("86400").unwrap().flush_timeout,
            Duration::from_secs(86_400)
        );
        assert_eq!(config("0").unwrap().flush_timeout, Duration::ZERO);
    }

    #[test]
    fn metrics_are_off_by_default_and_loopback_when_bare() {
        let config = |args: &[&str]| Config::from_cli(parse(args).unwrap());
        assert_eq!(config(&[]).unwrap().metrics_address, None);
        let loopback = |port| Some(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
        assert_eq!(
            config(&["--metrics-address"]).unwrap().metrics_address,
            loopback(11350)
        );
        assert_eq!(
            config(&["--metrics-address", "9100"])
                .unwrap()
                .metrics_address,
            loopback(9100)
        );
        let e = config(&["--metrics-address", "nowhere"]).unwrap_err();
        assert!(e.to_string().contains("nowhere"), "{e}");
    }

    #[test]
    fn dash_h_is_hub_and_long_help_is_help() {
        let c = parse(&["-h", "example:1"]).unwrap();
        assert_eq!(c.hub, ["example:1"]);
        let c = Config::from_cli(parse(&["-h", "a:1,b:2", "-h", "c:3"]).unwrap()).unwrap();
        assert_eq!(c.hub, Some(vec!["a:1".into(), "b:2".into(), "c:3".into()]));
        assert!(c.dumpling_ids, "several hubs turn dumpling ids on");
        let e = parse(&["--help"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::DisplayHelp);
    }

    /// `-c` takes a list as `-h` does: `-c A,B`, `-c A -c B` and a mix select the same
    /// chefs; an empty or malformed name is a usage error.
    #[test]
    fn dash_c_takes_a_comma_separated_list_or_repeats() {
        let chefs = |args: &[&str]| parse(args).map(|c| c.chefs);
        let both = vec!["ARPChef".to_owned(), "DNSLookupChef".to_owned()];
        assert_eq!(chefs(&["-c", "ARPChef,DNSLookupChef"]).unwrap(), both);
        assert_eq!(
            chefs(&["-c", "ARPChef", "-c", "DNSLookupChef"]).unwrap(),
            both
        );
        assert_eq!(chefs(&["--chef", "ARPChef, DNSLookupChef"]).unwrap(), both);
        assert_eq!(
            chefs(&["-c", "A,B", "-c", "C"]).unwrap(),
            ["A", "B", "C"].map(String::from)
        );
        for bad in ["A,,B", "A,", "A B", "é"] {
            let error = chefs(&["-c", bad]).unwrap_err();
            assert_eq!(
                error.kind(),
                clap::error::ErrorKind::ValueValidation,
                "{bad}"
            );
            assert!(error.to_string().contains("invalid chef name"), "{error}");
        }
    }

    #[test]
    fn original_short_flags() {
        let c = parse(&[
            "-n",
            "k",
            "-i",
            "lo",
            "-i",
            "eth0",
            "-f",
            "udp port 53",
            "-c",
            "ARPChef",
            "-c",
            "DNSLookupChef",
            "-l",
            "-p",
            "2.5",
        ])
        .unwrap();
        assert_eq!(c.kitchen_name, "k");
        assert_eq!(c.interfaces, vec!["lo", "eth0"]);
        assert_eq!(c.filter.as_deref(), Some("udp port 53"));
        assert_eq!(c.chefs, vec!["ARPChef", "DNSLookupChef"]);
        assert!(c.chef_list);
        assert_eq!(c.poke_interval, 2.5);
    }

    #[test]
    fn poke_interval_must_be_positive() {
        for bad in ["0", "-1", "nan", "inf"] {
            let cli = parse(&["-p", bad]).unwrap();
            assert!(Config::from_cli(cli).is_err(), "{bad} accepted");
        }
        assert!(parse(&["-p", "soon"]).is_err());
    }

    #[test]
    fn empty_filter_means_none_and_read_conflicts_with_interface() {
        let c = Config::from_cli(parse(&["-f", "", "-r", "x.pcap", "--no-hub"]).unwrap()).unwrap();
        assert_eq!(c.filter, None);
        assert_eq!(c.hub, None);
        assert_eq!(c.source, Source::File("x.pcap".into()));
        assert!(parse(&["-r", "x.pcap", "-i", "lo"]).is_err());
    }

    #[test]
    fn replay_reads_every_packet_unless_a_filter_is_given() {
        let c = Config::from_cli(parse(&["-r", "x.pcap"]).unwrap()).unwrap();
        assert_eq!(c.filter, None);
        let c = Config::from_cli(parse(&["-r", "x.pcap", "-f", "arp"]).unwrap()).unwrap();
        assert_eq!(c.filter.as_deref(), Some("arp"));
    }

    #[test]
    fn limits_are_validated() {
        assert!(Config::from_cli(parse(&["--chef-memory-mib", "0"]).unwrap()).is_err());
        assert!(Config::from_cli(parse(&["--chef-deadline-ms", "0"]).unwrap()).is_err());
        let c = Config::from_cli(
            parse(&["--chef-memory-mib", "64", "--chef-deadline-ms", "20"]).unwrap(),
        )
        .unwrap();
        assert_eq!(c.limits.memory_mib(), 64);
        assert_eq!(c.limits.deadline, Duration::from_millis(20));
        assert!(Config::from_cli(parse(&["--no-builtin-chefs"]).unwrap()).is_err());
    }

    #[test]
    fn chef_watch_and_kitchen_status_flags() {
        let c = Config::from_cli(parse(&[]).unwrap()).unwrap();
        assert!(c.watch_chef_dir);
        assert_eq!(c.kitchen_status, StatusMode::Auto);
        let c = Config::from_cli(
            parse(&["--no-chef-watch", "--kitchen-status", "on", "-d", "x"]).unwrap(),
        )
        .unwrap();
        assert!(!c.watch_chef_dir);
        assert_eq!(c.kitchen_status, StatusMode::On);
        assert!(parse(&["--kitchen-status", "sometimes"]).is_err());
    }

    #[test]
    fn hub_keepalive_is_checked() {
        let c = Config::from_cli(parse(&[]).unwrap()).unwrap();
        assert_eq!(c.hub_keepalive, Duration::from_secs(5));
        let c = Config::from_cli(parse(&["--hub-keepalive-secs", "0"]).unwrap()).unwrap();
        assert_eq!(c.hub_keepalive, Duration::ZERO);
        for bad in ["-1", "0.01", "NaN", "inf", "1e9"] {
            let flag = format!("--hub-keepalive-secs={bad}");
            let e = Config::from_cli(parse(&[flag.as_str()]).unwrap())
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.contains("--hub-keepalive-secs"), "{bad}: {e}");
        }
    }
}
