//! `nd-sniff`'s run: load chefs, open the packet source, dispatch, report, exit code.
//!
//! Exit status: 0 only for a clean end (end of file, Ctrl-C/SIGTERM, `--chef-list`);
//! 1 for every failure (no valid chefs, unreadable or damaged file, lost dumplings, capture
//! errors); 2 for usage errors (clap). The original exited 0 on most runtime failures.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use capture::FileReader;
use dumpling::text::Escaped;
use serde_json::json;

use kitchen::chef_host::{ChefHost, ChefTrust, LoadedChef};
use kitchen::chefs;
use kitchen::chefs::reload::{self, ReloadHook, ReloadPolicy, Reloader};
use kitchen::dispatch::{
    ChefSlot, ClockMode, Dispatcher, DumplingSink, InterestMatcher, SinkError,
};
use kitchen::input::filter_check::FilterCheck;
use kitchen::input::progress::{ReplayCounts, ReplayProgress};
use kitchen::outputs::crash_capsule::{CapsuleSettings, CrashCapsules};
use kitchen::outputs::hello::HelloBuilder;
use kitchen::outputs::hub_client::{HubClient, HubOptions, HubReport};
use kitchen::outputs::metrics::{KitchenMetrics, Snapshot};
use kitchen::outputs::status::{HubCounters, StatusDetail};
use kitchen::outputs::stdout::{StdoutSink, Tee};
use kitchen::run::live::{self, LiveEnd, LiveError, LiveOptions};
use kitchen::run::replay::{self, ReplayCounters, ReplayEnd, ReplayError, ReplayOptions};

use crate::cli::{Config, Source, StatusMode};

/// How the run ended, for the exit status.
pub enum Outcome {
    /// Everything went as planned.
    Clean,
    /// The run finished but something was lost or damaged (already logged).
    Failed,
}

/// Run `nd-sniff` with validated settings.
pub fn run(config: Config) -> anyhow::Result<Outcome> {
    // The kitchen name starts log lines: escaped (a newline in `-n` forged lines).
    let k = Escaped::new(&config.kitchen_name).to_string();
    // First thing, so a signal during chef loading also ends the run cleanly.
    let stop = install_signal_handlers()?;
    // A filter libpcap refuses whatever the link type (a syntax error, too complex to
    // compile in time) fails here, before chefs load and run.
    let filter_check = filter_check(&stop, config.filter_compile_timeout);
    if let (Some(expression), Some(check)) = (&config.filter, &filter_check) {
        match check.check(expression, 1) {
            Err(_) if stop.load(Ordering::SeqCst) => {
                tracing::warn!("{k}: Caught a signal while checking the filter; stopping");
                return Ok(Outcome::Clean);
            }
            Err(e) if e.for_every_link_type || e.message.contains("syntax error") => {
                return Err(e.into())
            }
            _ => {}
        }
    }
    let mut host = ChefHost::new(config.limits.clone(), config.cache.clone())
        .context("cannot start the chef host")?;
    if let Some(dir) = &config.trusted_chef_keys {
        host.set_trust(trusted_chef_keys(&k, dir)?);
    }
    // Replays are reproducible: chefs see the capture clock and seeded randomness.
    host.set_deterministic(matches!(config.source, Source::File(_)));
    host.set_cache_max_bytes(config.cache_max_bytes);
    // Compiles run in a bounded child process of this very binary (a compile bomb costs
    // one child, not the kitchen's memory or an unbounded wait).
    match std::env::current_exe() {
        Ok(exe) => host.set_compiler(kitchen::chef_host::compile_worker::Compiler::Child {
            exe,
            timeout: config.compile_limits.0,
            memory_bytes: config.compile_limits.1,
        }),
        Err(e) => tracing::warn!(error = %e,
            "cannot find this executable; chefs are compiled in-process, without limits"),
    }
    let found = chefs::discover(&host, config.builtin_chefs, config.chef_dir.as_deref())?;
    if stop.load(Ordering::SeqCst) {
        // The compiles still pending were killed or never started (`stop_all`).
        tracing::warn!("{k}: Caught a signal while loading chefs; stopping before the run");
        return Ok(Outcome::Clean);
    }

    if config.chef_list {
        print_chef_list(&found, host.trust().is_enforcing());
        return Ok(Outcome::Clean);
    }

    tracing::info!("{k}: Starting network sniffer");
    match &config.source {
        Source::File(p) => tracing::info!("{k}: Reading packets from {}", p.display()),
        Source::Live(_) => {
            tracing::info!("{k}: Interface: {}", Escaped::new(&config.interface_text))
        }
    }
    tracing::info!(
        "{k}: Requested chefs: {}",
        if config.chefs.is_empty() {
            "all".to_owned()
        } else {
            Escaped::new(&config.chefs.join(", ")).to_string()
        }
    );
    tracing::info!(
        "{k}: Filter: {}",
        Escaped::new(config.filter.as_deref().unwrap_or("<all packets>"))
    );
    tracing::info!(
        "{k}: Chef poke interval (secs): {}",
        config.poke_interval_secs
    );
    if config.hub.is_none() && !config.stdout {
        tracing::warn!(
            "{k}: --no-hub without --stdout: dumplings are made and counted but go nowhere"
        );
    }

    let load_failures = chefs::load_failures(&found);
    // Every file of --chef-dir handled at start (loaded or not): hot reload only acts when
    // one of them changes.
    let known_files: Vec<_> = found
        .iter()
        .filter_map(|f| match &f.source {
            kitchen::chef_host::ChefSource::File(p) => Some((p.clone(), f.version)),
            kitchen::chef_host::ChefSource::Builtin(_) => None,
        })
        .collect();
    let loaded = chefs::loaded(found);
    let available: Vec<String> = loaded.iter().map(|c| c.name().to_owned()).collect();
    let (selected, missing) = chefs::select(loaded, &config.chefs);
    for name in missing {
        // Names are exact (case too): point at the one meant, or list what there is.
        let meant = available.iter().find(|a| a.eq_ignore_ascii_case(&name));
        match meant {
            Some(meant) => tracing::warn!(
                "{k}: Chef {} not found; did you mean {meant}? (names are case-sensitive)",
                Escaped::new(&name)
            ),
            None => tracing::warn!(
                "{k}: Chef {} not found; chefs found: {}",
                Escaped::new(&name),
                available.join(", ")
            ),
        }
    }
    if selected.is_empty() {
        // A live kitchen watching its chef folder waits for chefs to be dropped in (a
        // sensor deployed before its chefs); a replay has nothing to wait for.
        match (&config.source, &config.chef_dir) {
            (Source::Live(_), Some(dir)) if config.watch_chef_dir => tracing::warn!(
                "{k}: No chefs yet; waiting for chef files (*.wasm) to be dropped into {}",
                dumpling::text::escape_path(dir)
            ),
            _ => bail!("{k}: No valid chefs found. Not starting sniffer."),
        }
    }
    let slots: Vec<ChefSlot> = selected.into_iter().map(slot).collect();
    let mut qualified: Vec<String> = slots.iter().map(|s| s.qualified_name.clone()).collect();
    qualified.sort();
    for q in &qualified {
        tracing::info!("{k}: Registering {q} with kitchen");
    }

    let mode = match config.source {
        Source::File(_) => ClockMode::Replay,
        Source::Live(_) => ClockMode::Live,
    };

    // Outputs: stdout and/or the hub.
    let mut tee = Tee::new();
    if config.stdout {
        // Line-buffered when live, and when replaying a pipe or FIFO (paced by its writer,
        // e.g. `tcpdump -w - | nd-sniff -r /dev/stdin`); block-buffered for regular files.
        let paced = match &config.source {
            Source::File(p) => !std::fs::metadata(p).is_ok_and(|m| m.is_file()),
            Source::Live(_) => true,
        };
        tee.push(Box::new(StdoutSink::new(paced)));
    }
    let hello_builder = HelloBuilder::new(hello(&config, &qualified));
    let hub = match &config.hub {
        Some(hubs) => {
            let mut options = HubOptions::new(hubs[0].clone(), hello_builder.build_text(&slots));
            options.fallbacks = hubs[1..].to_vec();
            if config.dumpling_ids {
                options.dumpling_ids = Some(kitchen::outputs::hub_client::kitchen_id());
                options.resend_tail = config.resend_tail;
            }
            options.block_when_full = mode == ClockMode::Replay;
            options.link = config.link.clone();
            options.keepalive = config.hub_keepalive;
            // Connect once the input is open (`InputStarted`), not before.
            options.held = true;
            let uri = hubs
                .iter()
                .map(|h| hub_link::hub_uri(h))
                .collect::<Result<Vec<_>, _>>()?
                .join(", ");
            tracing::info!("{k}: Connecting to the dumpling hub at {uri}");
            let client = Arc::new(Mutex::new(
                HubClient::start(options).context("cannot start the hub client thread")?,
            ));
            tee.push(Box::new(SharedHub(client.clone())));
            Some(client)
        }
        None => None,
    };

    let mut dispatcher =
        Dispatcher::new(k.clone(), slots, config.poke_interval, mode, Box::new(tee));
    dispatcher.set_stream_limits(config.stream_limits);
    dispatcher.set_stream_verdicts(!config.ignore_stream_verdicts);
    dispatcher.set_defrag_limits(config.defrag_limits);
    // Given: a fixed count. Default: live one per core but one, replaying one per core (the
    // dispatcher knows its clock mode), at most one per chef, following the chef count as
    // hot reload adds and retires chefs.
    match config.chef_threads {
        Some(n) => dispatcher.set_chef_threads(n),
        None => dispatcher.follow_chef_count(
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
        ),
    }
    .context("cannot start the chefs' worker threads (--chef-threads)")?;
    for (source, error) in &load_failures {
        dispatcher
            .status_inputs()
            .record_load_failure(source, error);
    }
    // Hidden, for tools/bench-flow-overhead.sh only: the kitchen as before flows existed (no
    // flow stage at all), the baseline its "flows cost nothing unused" figure is measured on.
    if std::env::var_os(kitchen::parse::flow_stage::BYPASS_ENV).is_none() {
        dispatcher.set_flows(config.flows)?;
        // `--capsule-evict-ns`: repeat a flow-event crash capsule's evictions.
        dispatcher.set_capsule_evictions(&config.capsules.capsule_evict_ns);
    }
    setup_status(&config, &mut dispatcher, hub.as_ref());
    if let Some(settings) = CapsuleSettings::from_args(
        &config.capsules,
        config.poke_interval,
        mode == ClockMode::Replay,
    ) {
        let settings = settings.with_flows(config.flows);
        dispatcher.set_crash_capsules(Some(CrashCapsules::start(settings)?));
    }
    let metrics = start_metrics(&config, &mut dispatcher)?;
    // Hot reload of --chef-dir: the loader thread owns the host from here on (its epoch
    // ticker must outlive every chef, so `_host`/`reloader` are dropped after the dispatcher).
    let (reloader, _host) = match &config.chef_dir {
        Some(dir) if config.watch_chef_dir => {
            let r = Reloader::start(host, dir, &known_files)
                .context("cannot watch the chef directory")?;
            tracing::info!(
                "{k}: Watching {} for chef changes",
                dumpling::text::escape_path(dir)
            );
            (Some(r), None)
        }
        _ => (None, Some(host)),
    };
    // After a reload the hello (sent on the next reconnection) lists the new chefs.
    // Weak: `run` takes the client back (`Arc::try_unwrap`) for the final flush and report.
    let on_change: Option<reload::OnChange> = hub.as_ref().map(|hub| {
        let hub = Arc::downgrade(hub);
        let hook: reload::OnChange = Arc::new(move |d: &Dispatcher| {
            if let Some(hub) = hub.upgrade() {
                let hello = hello_builder.build_text(d.chefs());
                hub.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .set_hello(hello);
            }
        });
        hook
    });
    let policy = ReloadPolicy {
        only: config.chefs.clone(),
        on_change,
    };
    // The one between-batches hook of both runs: hot reload.
    let mut hook = ReloadHook::new(reloader.as_ref(), &policy);
    let started = Instant::now();
    let input_started = InputStarted {
        open: Arc::new(AtomicBool::new(false)),
        hub: hub.as_ref().map(Arc::downgrade),
    };
    let input = Input {
        stop: &stop,
        filter_check: &filter_check,
        started: &input_started,
    };
    let result = match &config.source {
        Source::File(path) => replay(&config, path, &mut dispatcher, input, &mut hook, &metrics),
        Source::Live(ifaces) => live(&config, ifaces, &mut dispatcher, input, &mut hook, &metrics),
    };
    // An input that could not be opened (no such interface or file, no permission, not a
    // capture) ran no chef: no final poke (it sent a round of empty dumplings and a status
    // to the hub, as if the kitchen ran), no summary and no hub connection, just the reason.
    let never_started = result.is_err() && !input_started.open.load(Ordering::SeqCst);
    if never_started {
        if let Some(hub) = hub {
            if let Ok(m) = Arc::try_unwrap(hub) {
                let _ = m
                    .into_inner()
                    .unwrap_or_else(|e| e.into_inner())
                    .finish(Duration::ZERO, &|| false);
            }
        }
        return result.map(|_| Outcome::Failed);
    }
    // Whatever happened, hand what we have to the outputs (the final poke included), and
    // have them write it out (a full disk seen only at this flush was a silent exit 0).
    let finish = dispatcher
        .finish()
        .and_then(|()| {
            // `--capsule-poke-ns`: repeat an interval crash capsule's poke.
            match config.capsules.capsule_poke_ns {
                Some(at) if mode == ClockMode::Replay => dispatcher.poke(at),
                _ => Ok(()),
            }
        })
        .and_then(|()| dispatcher.flush_output());
    if let Some(m) = &metrics {
        m.publish(Snapshot::take(&mut dispatcher, None));
    }
    let elapsed = started.elapsed();
    if matches!(result, Ok(RunEnd::OutputClosed)) || matches!(finish, Err(SinkError::Closed)) {
        // `--stdout | head`: not a failure (exit 0, as for `cat`), but the summary below is
        // of a partial run, and should say so.
        tracing::info!(
            "{k}: stdout was closed by its reader; stopped early (the summary covers what \
             was read until then)"
        );
    }
    summary(&k, &mut dispatcher, elapsed);
    for (file, f) in &dispatcher.status_inputs().load_failures {
        tracing::warn!(
            "{k}: load failures: {file}: {} (last error: {})",
            f.count,
            dumpling::text::Escaped::composed(&f.error, 1024)
        );
    }
    let chef_failures: u64 = dispatcher
        .chefs()
        .iter()
        .map(|s| s.chef.stats.traps + s.chef.stats.timeouts + s.chef.stats.memory_limits)
        .sum();
    drop(dispatcher); // flushes stdout

    let mut outcome = Outcome::Clean;
    if let Some(hub) = hub {
        // Whether a signal, not the flush timeout, ended the wait for the hub.
        let mut wait_cut_by_signal = false;
        let report = match Arc::try_unwrap(hub) {
            Ok(m) => {
                let client = m.into_inner().unwrap_or_else(|e| e.into_inner());
                let queued = client.report().unsent;
                if queued > 0 {
                    // The wait can be long when the hub is down: say what it is waiting for.
                    tracing::info!(
                        "{k}: handing {queued} dumplings to the hub (up to {:?}, \
                         --flush-timeout; Ctrl-C or SIGTERM stops waiting)",
                        config.flush_timeout
                    );
                }
                // A signal during the wait ends it, whether or not one ended the run
                // before (the wait is the clean stop that one asked for; a second asks
                // for less, not for nothing: the summary below still says what was lost).
                // One more after that exits at once.
                let signals_before = SIGNALS_CAUGHT.load(Ordering::SeqCst);
                IN_FINAL_WAIT.store(true, Ordering::SeqCst);
                let interrupted = || SIGNALS_CAUGHT.load(Ordering::SeqCst) > signals_before;
                let report = client.finish(config.flush_timeout, &interrupted);
                if interrupted() {
                    wait_cut_by_signal = true;
                    tracing::warn!(
                        "{k}: caught a signal while handing dumplings to the hub; stopped waiting \
                         ({} still queued are counted as unsent)",
                        report.unsent
                    );
                }
                report
            }
            Err(_) => HubReport::default(),
        };
        tracing::info!(
            sent = report.sent,
            dropped = report.dropped,
            unsent = report.unsent,
            rejected = report.rejected,
            unconfirmed = report.unconfirmed,
            connections = report.connections,
            refused_connections = report.refused,
            "{k}: hub delivery"
        );
        if config.hub_keepalive.is_zero() && report.sent > 0 {
            // Without the keep-alive no confirmation is asked for: a hub that took the
            // bytes and never read them looks the same as one that did.
            tracing::warn!(
                "{k}: --hub-keepalive-secs 0: the hub was not asked to confirm what it read, \
                 so `sent` counts dumplings written to its connection, some of which may \
                 never have been read"
            );
        }
        if report.lost() > 0 {
            let wait_end = if wait_cut_by_signal {
                "when a signal ended the wait".to_owned()
            } else {
                format!("after the {:?} flush timeout", config.flush_timeout)
            };
            tracing::error!(
                "{k}: {} dumplings never reached the hub, or may not have ({} dropped while it \
                 was unreachable, {} still queued {wait_end}, {} sent on connections the hub \
                 refused, {} written but never confirmed read by the hub before its \
                 connection ended)",
                report.lost(),
                report.dropped,
                report.unsent,
                report.rejected,
                report.unconfirmed
            );
            outcome = Outcome::Failed;
        }
    }
    if chef_failures > 0 {
        tracing::warn!("{k}: chefs failed {chef_failures} times during the run (see the summary)");
    }
    match (result, finish) {
        (Err(e), _) => Err(e),
        (Ok(_), Err(SinkError::Closed)) | (Ok(RunEnd::OutputClosed), _) => Ok(outcome),
        (Ok(_), Err(e)) => Err(e.into()),
        (Ok(RunEnd::Damaged), Ok(())) => Ok(Outcome::Failed),
        (Ok(_), Ok(())) => Ok(outcome),
    }
}

/// `--trusted-chef-keys DIR`: every `*.pub` in DIR, or an error naming the bad file.
fn trusted_chef_keys(k: &str, dir: &std::path::Path) -> anyhow::Result<ChefTrust> {
    // File names escaped: they are anyone's (a newline in one forged a log line).
    let keys = chef_trust::TrustedKeys::load_dir(dir)
        .with_context(|| format!("--trusted-chef-keys {}", dumpling::text::escape_path(dir)))?;
    for (id, file) in keys.list() {
        tracing::info!(
            "{k}: trusting chefs signed by key {id} ({})",
            dumpling::text::escape_path(file)
        );
    }
    Ok(ChefTrust::enforcing(keys))
}

fn slot(chef: LoadedChef) -> ChefSlot {
    ChefSlot {
        matcher: InterestMatcher::new(&chef.description().interest),
        qualified_name: chefs::qualified_name(&chef),
        chef,
    }
}

/// The hub client behind a mutex so `run` can take it back for the final flush.
struct SharedHub(Arc<Mutex<HubClient>>);

impl DumplingSink for SharedHub {
    fn send(&mut self, chef: &str, json: String) -> Result<(), SinkError> {
        let mut hub = self.0.lock().unwrap_or_else(|e| e.into_inner());
        hub.send(chef, json)
    }
}

/// The kitchen hello (§3.3) plus our own keys; the chef lists are added per connection.
fn hello(config: &Config, chefs: &[String]) -> dumpling::KitchenHello {
    let mut extra = serde_json::Map::new();
    extra.insert("interface".into(), json!(config.interface_text));
    extra.insert("filter".into(), json!(config.filter_text));
    extra.insert("chefs".into(), json!(chefs));
    extra.insert("poke_interval".into(), json!(config.poke_interval_secs));
    extra.insert(
        "kitchen_software".into(),
        json!(format!(
            "netdumplings-rs nd-sniff {}",
            env!("CARGO_PKG_VERSION")
        )),
    );
    let source = match &config.source {
        Source::File(_) => "file",
        Source::Live(_) => "live",
    };
    extra.insert("source".into(), json!(source));
    if let Source::File(p) = &config.source {
        extra.insert("read_file".into(), json!(p.display().to_string()));
    }
    dumpling::KitchenHello {
        kitchen_name: config.kitchen_name.clone(),
        extra,
    }
}

enum RunEnd {
    /// Input ended or a signal asked to stop.
    Done,
    /// The file was damaged part-way (packets before the damage were processed).
    Damaged,
    /// The output (stdout) was closed by its reader.
    OutputClosed,
}

/// `--metrics-address`: serve `/metrics` from snapshots published by the packet loops
/// (the first one now, so a scrape before the first packet already lists the chefs).
fn start_metrics(
    config: &Config,
    d: &mut Dispatcher,
) -> anyhow::Result<Option<Arc<KitchenMetrics>>> {
    let Some(addr) = config.metrics_address else {
        return Ok(None);
    };
    let metrics = KitchenMetrics::new(&config.kitchen_name);
    metrics.publish(Snapshot::take(d, None));
    let bound = kitchen::outputs::metrics::serve(addr, metrics.clone())?;
    tracing::info!(
        "{}: Metrics: http://{bound}/metrics",
        Escaped::new(&config.kitchen_name)
    );
    Ok(Some(metrics))
}

/// Turn the `KitchenStatusChef` dumpling on or off and give it the hub's counters.
fn setup_status(config: &Config, d: &mut Dispatcher, hub: Option<&Arc<Mutex<HubClient>>>) {
    let status = d.status_inputs();
    status.emit = match config.kitchen_status {
        StatusMode::On => true,
        StatusMode::Off => false,
        StatusMode::Auto => matches!(config.source, Source::Live(_)),
    };
    if let Some(hub) = hub {
        let hub = hub.clone();
        status.hub = Some(Box::new(move || {
            let r = hub.lock().unwrap_or_else(|e| e.into_inner()).report();
            HubCounters {
                sent: r.sent,
                buffered: r.unsent,
                dropped: r.dropped,
            }
        }));
    }
}

/// What both runs share about their input: the stop flag, the filter's bounded check and
/// what to tell once the input is open.
#[derive(Clone, Copy)]
struct Input<'a> {
    stop: &'a Arc<AtomicBool>,
    filter_check: &'a Option<FilterCheck>,
    started: &'a InputStarted,
}

/// Told once the capture or file is open: only then does the hub client connect (a
/// kitchen whose input never opens never shows the hub its hello), and only then does
/// the run count as started (summary, final poke).
#[derive(Clone)]
struct InputStarted {
    open: Arc<AtomicBool>,
    /// Weak: `run` takes the client back (`Arc::try_unwrap`) for the final flush.
    hub: Option<std::sync::Weak<Mutex<HubClient>>>,
}

impl InputStarted {
    fn mark(&self) {
        self.open.store(true, Ordering::SeqCst);
        if let Some(hub) = self.hub.as_ref().and_then(std::sync::Weak::upgrade) {
            hub.lock().unwrap_or_else(|e| e.into_inner()).release();
        }
    }
}

fn replay(
    config: &Config,
    path: &std::path::Path,
    d: &mut Dispatcher,
    input: Input<'_>,
    hook: &mut ReloadHook<'_>,
    metrics: &Option<Arc<KitchenMetrics>>,
) -> anyhow::Result<RunEnd> {
    let k = Escaped::new(&config.kitchen_name).to_string();
    let Some(reader) = open_input(path, input.stop, &k)? else {
        tracing::warn!(
            "{k}: Caught a signal while waiting for {} to start; nothing was read",
            Escaped::new(&path.display().to_string())
        );
        return Ok(RunEnd::Done);
    };
    input.started.mark();
    let started = Instant::now();
    let progress_kitchen = k.clone();
    // Every tick publishes the metrics and redraws the progress line (terminal only); the
    // log line (every 5 s) is for when there is no progress line.
    let metrics = metrics.clone();
    let mut line = config.progress.then(|| ReplayProgress::new(path));
    let mut last_log = Instant::now();
    let options = ReplayOptions {
        filter: config.filter.clone(),
        filter_check: input.filter_check.clone(),
        stop: input.stop.clone(),
        progress: Some((
            kitchen::outputs::metrics::PUBLISH_EVERY,
            Box::new(move |c: &ReplayCounters, d: &mut Dispatcher| {
                if let Some(m) = &metrics {
                    m.publish(Snapshot::take(d, Some(c)));
                }
                let read = c.read.load(Ordering::Relaxed);
                if let Some(line) = line.as_mut() {
                    line.draw(ReplayCounts {
                        bytes: c.bytes.load(Ordering::Relaxed),
                        packets: read,
                        dumplings: d.stats().dumplings,
                    });
                    return;
                }
                if last_log.elapsed() < Duration::from_secs(5) {
                    return;
                }
                last_log = Instant::now();
                tracing::info!(
                    "{progress_kitchen}: replay progress: {} packets read, {} passed the filter, \
                     {:.0} packets/s, {} dumplings",
                    read,
                    c.passed.load(Ordering::Relaxed),
                    read as f64 / started.elapsed().as_secs_f64(),
                    d.stats().dumplings
                );
            }),
        )),
    };
    let (end, counters) = match replay::replay(reader, d, hook, options) {
        Ok(r) => r,
        Err(ReplayError::Sink(SinkError::Closed)) => return Ok(RunEnd::OutputClosed),
        Err(ReplayError::Capture(e)) => {
            return Err(e).with_context(|| format!("reading {}", path.display()))
        }
        Err(e) => return Err(e.into()),
    };
    let (read, passed) = (
        counters.read.load(Ordering::Relaxed),
        counters.passed.load(Ordering::Relaxed),
    );
    let cut = counters.frames_cut.load(Ordering::Relaxed);
    if cut > 0 {
        tracing::warn!(
            "{k}: {cut} frames longer than {} bytes were cut to that length (libpcap's limit; \
             tcpdump and Wireshark read them the same way)",
            capture::MAX_FRAME_BYTES
        );
    }
    match end {
        ReplayEnd::Done => {
            tracing::info!(
                "{k}: end of {}: {read} packets read, {passed} passed the filter",
                path.display(),
            );
            Ok(RunEnd::Done)
        }
        ReplayEnd::Stopped { left_behind } => {
            tracing::warn!("{k}: Caught a signal; stopped the replay after {read} packets");
            if left_behind > 0 {
                tracing::warn!(
                    "{k}: the file reader was blocked in a read; {left_behind} packets it had \
                     read were not handed to the chefs"
                );
            }
            Ok(RunEnd::Done)
        }
        ReplayEnd::Damaged(e) => {
            tracing::error!("{k}: {e}; the packets before the damage were processed");
            Ok(RunEnd::Damaged)
        }
        ReplayEnd::OutputClosed => Ok(RunEnd::OutputClosed),
    }
}

/// `-i IFACE`: [`kitchen::run::live`], with the metrics published as it runs.
fn live(
    config: &Config,
    interfaces: &[String],
    d: &mut Dispatcher,
    input: Input<'_>,
    hook: &mut ReloadHook<'_>,
    metrics: &Option<Arc<KitchenMetrics>>,
) -> anyhow::Result<RunEnd> {
    let progress = metrics.clone().map(|m| {
        let publish: live::LiveProgress = Box::new(move |d: &mut Dispatcher| {
            m.publish(Snapshot::take(d, None));
        });
        (kitchen::outputs::metrics::PUBLISH_EVERY, publish)
    });
    let options = LiveOptions {
        kitchen: config.kitchen_name.clone(),
        interfaces: interfaces.to_vec(),
        filter: config.filter.clone(),
        filter_check: input.filter_check.clone(),
        stop: input.stop.clone(),
        progress,
        on_started: Some(Box::new({
            let started = input.started.clone();
            move || started.mark()
        })),
    };
    match live::live(d, hook, options) {
        Ok((LiveEnd::Done, _)) => Ok(RunEnd::Done),
        Ok((LiveEnd::OutputClosed, _)) | Err(LiveError::Sink(SinkError::Closed)) => {
            Ok(RunEnd::OutputClosed)
        }
        Err(e) => Err(e.into()),
    }
}

/// Filters are compiled only after a bounded child compiled them (libpcap's optimizer can
/// take minutes and cannot be interrupted); without this executable's path, unbounded.
fn filter_check(stop: &Arc<AtomicBool>, timeout: Duration) -> Option<FilterCheck> {
    match std::env::current_exe() {
        Ok(exe) => Some(FilterCheck::new(exe, stop.clone()).with_timeout(timeout)),
        Err(e) => {
            tracing::warn!(error = %e, "cannot find this executable; the filter is compiled \
                without a time limit");
            None
        }
    }
}

/// Open the capture at `path` on a helper thread, so that a signal still ends the run
/// while the open blocks: a FIFO with no writer blocks in `open`, a pipe until its first
/// bytes arrive. `Ok(None)`: a signal came first (the helper is left blocked; the process
/// is about to exit).
fn open_input(
    path: &std::path::Path,
    stop: &Arc<AtomicBool>,
    kitchen: &str,
) -> anyhow::Result<Option<FileReader>> {
    let (tx, rx) = std::sync::mpsc::channel();
    let owned = path.to_path_buf();
    std::thread::Builder::new()
        .name("nd-open-input".into())
        .spawn(move || {
            let _ = tx.send(FileReader::open(&owned));
        })
        .context("cannot start the thread that opens the input")?;
    let started = Instant::now();
    let mut told = false;
    loop {
        match rx.recv_timeout(Duration::from_millis(50)) {
            // The capture errors name the file themselves.
            Ok(opened) => return Ok(Some(opened?)),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if stop.load(Ordering::SeqCst) {
                    return Ok(None);
                }
                if !told && started.elapsed() >= Duration::from_secs(2) {
                    told = true;
                    tracing::info!(
                        "{kitchen}: waiting for {} to start (a pipe or FIFO with no capture \
                         header yet)",
                        Escaped::new(&path.display().to_string())
                    );
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                anyhow::bail!(
                    "the thread opening {} ended without an answer",
                    path.display()
                )
            }
        }
    }
}

/// The next delivery of `signal`; never, when it could not be installed.
#[cfg(unix)]
async fn next_signal(signal: Option<&mut tokio::signal::unix::Signal>) {
    match signal {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}

/// SIGINT, SIGTERM and SIGHUP caught so far (process-wide, as the handlers are).
static SIGNALS_CAUGHT: AtomicU32 = AtomicU32::new(0);

/// Set when the run's final wait for the hub starts: a second signal then ends that wait
/// (it is interruptible, and the summary after it says what was lost) instead of exiting
/// without a word about the dumplings still queued.
static IN_FINAL_WAIT: AtomicBool = AtomicBool::new(false);

/// SIGINT/SIGTERM/SIGHUP set the returned flag (the loops stop, the final poke and flush
/// run); a second signal exits at once with 130, but for the final wait for the hub, which
/// it ends (a third exits). SIGHUP too: a closed terminal or ssh
/// session killed a live kitchen at once (exit 129), losing its summary and last dumplings.
fn install_signal_handlers() -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the signal thread")?;
    std::thread::Builder::new()
        .name("nd-signals".into())
        .spawn(move || {
            rt.block_on(async move {
                #[cfg(unix)]
                let mut term =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
                #[cfg(unix)]
                let mut hup =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
                loop {
                    #[cfg(unix)]
                    let got = async {
                        tokio::select! {
                            _ = next_signal(term.as_mut()) => {}
                            _ = next_signal(hup.as_mut()) => {}
                        }
                    };
                    #[cfg(not(unix))]
                    let got = std::future::pending::<()>();
                    tokio::select! {
                        r = tokio::signal::ctrl_c() => { if r.is_err() { return; } }
                        _ = got => {}
                    }
                    // Pending chef compiles end now (a slow start is not waited out).
                    kitchen::chef_host::compile_worker::stop_all();
                    flag.store(true, Ordering::SeqCst);
                    let caught = SIGNALS_CAUGHT.fetch_add(1, Ordering::SeqCst) + 1;
                    if caught > 1 {
                        if caught == 2 && IN_FINAL_WAIT.load(Ordering::SeqCst) {
                            // The wait for the hub sees it and ends, with the summary.
                            continue;
                        }
                        // Not `eprintln!`: it panics when stderr's reader is gone.
                        let _ = std::io::Write::write_all(
                            &mut std::io::stderr(),
                            b"nd-sniff: second signal; exiting now\n",
                        );
                        std::process::exit(130);
                    }
                    tokio::spawn(exit_if_stdout_stays_blocked());
                }
            });
        })
        .context("cannot start the signal thread")?;
    Ok(stop)
}

/// After a signal: a stdout write blocked for [`STDOUT_STUCK_GRACE`] (`nd-sniff --stdout |
/// less` left unscrolled, a pipe nobody reads) means the run can never reach its clean
/// stop, since the thread that would see the stop flag is the one blocked: say so and exit
/// 130, as a second signal would (it took one).
async fn exit_if_stdout_stays_blocked() {
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if kitchen::outputs::stdout::blocked_for().is_some_and(|b| b >= STDOUT_STUCK_GRACE) {
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                format!(
                    "nd-sniff: a write to stdout has been blocked for {} s or more (nobody \
                     reads it), so the stop the signal asked for cannot finish; exiting now \
                     (dumplings not yet written are lost; no summary)\n",
                    STDOUT_STUCK_GRACE.as_secs()
                )
                .as_bytes(),
            );
            std::process::exit(130);
        }
    }
}

/// How long a stdout write may stay blocked after a signal before the kitchen exits anyway.
const STDOUT_STUCK_GRACE: Duration = Duration::from_secs(3);

fn print_chef_list(found: &[chefs::FoundChef], enforcing: bool) {
    use std::fmt::Write as _;
    // Every string here comes from a chef or a file name: escaped (a newline cannot forge
    // a list entry, a terminal escape never reaches the terminal) and length-limited.
    let mut out = String::from("\n");
    for f in found {
        match &f.result {
            Ok(c) => {
                let d = c.description();
                let _ = writeln!(out, "{}", Escaped::new(&d.name));
                let _ = writeln!(out, "  version:  {}", Escaped::new(&d.version));
                let _ = writeln!(out, "  drivers:  {}", d.drivers);
                let _ = writeln!(out, "  interest: {}", interest_text(&d.interest));
                let _ = writeln!(out, "  api:      chef API {}", d.api);
                let _ = writeln!(out, "  source:   {}", c.source());
                let origin = chef_origin(c.source(), c.limits().max_file_bytes);
                let _ = writeln!(
                    out,
                    "  language: {} ({})",
                    Escaped::with_max(origin.language.as_deref().unwrap_or("unknown"), 64),
                    kitchen::chef_host::origin::human_size(origin.size)
                );
                let p = c.provenance();
                let _ = writeln!(out, "  sha256:   {}", p.sha256);
                let signed = match (&p.key_id, c.source()) {
                    (_, kitchen::chef_host::ChefSource::Builtin(_)) => {
                        "built-in (part of this nd-sniff binary)".to_owned()
                    }
                    (Some(id), _) if enforcing => format!("key {id} (trusted)"),
                    (Some(id), _) => format!("key {id} (not enforced: no --trusted-chef-keys)"),
                    (None, _) => "no".to_owned(),
                };
                let _ = writeln!(out, "  signed:   {signed}");
                if !d.description.is_empty() {
                    let _ = writeln!(out, "  about:    {}", Escaped::new(&d.description));
                }
            }
            Err(e) => {
                let _ = writeln!(out, "{}", f.source);
                let _ = writeln!(
                    out,
                    "  error loading chef: {}",
                    Escaped::composed(&e.to_string(), 1024)
                );
            }
        }
        out.push('\n');
    }
    if found.is_empty() {
        out.push_str("(no chefs found)\n\n");
    }
    print!("{out}");
}

/// Language and size of a chef's component, read from its bytes.
fn chef_origin(
    source: &kitchen::chef_host::ChefSource,
    max_file_bytes: u64,
) -> kitchen::chef_host::origin::ChefOrigin {
    use kitchen::chef_host::ChefSource;
    match source {
        ChefSource::Builtin(file) => {
            let mut origin = kitchen::chefs::builtin::BUILTIN_CHEFS
                .iter()
                .find(|b| b.file == *file)
                .map(|b| kitchen::chef_host::origin::inspect(b.bytes))
                .unwrap_or_default();
            // The built-in chefs are the Rust crates in `chefs/`, whose release profile
            // strips custom sections (producers included) to keep them small.
            origin.language.get_or_insert_with(|| "Rust".to_owned());
            origin
        }
        ChefSource::File(path) => {
            kitchen::chef_host::chef_file::read_chef_file(None, path, max_file_bytes)
                .map(|bytes| kitchen::chef_host::origin::inspect(&bytes))
                .unwrap_or_default()
        }
    }
}

fn interest_text(i: &kitchen::chef_host::bindings::Interest) -> String {
    use kitchen::chef_host::bindings::{NetworkProtocol as N, TransportProtocol as T};
    use std::fmt::Write as _;
    let join = |v: Vec<&str>| format!("[{}]", v.join(","));
    // A list may hold thousands of values (every port): the first few, and how many more.
    fn first_few<T: ToString>(list: &[T]) -> String {
        const SHOWN: usize = 16;
        let shown: Vec<String> = list.iter().take(SHOWN).map(T::to_string).collect();
        match list.len().checked_sub(SHOWN) {
            Some(more) if more > 0 => format!("[{}, ... {more} more]", shown.join(", ")),
            _ => format!("[{}]", shown.join(", ")),
        }
    }
    let mut parts = Vec::new();
    if !i.link_types.is_empty() {
        parts.push(format!("link-types={}", first_few(&i.link_types)));
    }
    if !i.network.is_empty() {
        let names = i
            .network
            .iter()
            .map(|n| match n {
                N::Arp => "arp",
                N::Ipv4 => "ipv4",
                N::Ipv6 => "ipv6",
                N::Other => "other",
            })
            .collect();
        parts.push(format!("network={}", join(names)));
    }
    if !i.transport.is_empty() {
        let names = i
            .transport
            .iter()
            .map(|t| match t {
                T::Tcp => "tcp",
                T::Udp => "udp",
                T::Icmpv4 => "icmpv4",
                T::Icmpv6 => "icmpv6",
            })
            .collect();
        parts.push(format!("transport={}", join(names)));
    }
    if !i.ports.is_empty() {
        parts.push(format!("ports={}", first_few(&i.ports)));
    }
    let mut text = if parts.is_empty() {
        "every packet".to_owned()
    } else {
        parts.join(" ")
    };
    if i.flow_events {
        text.push_str(", flow events");
    }
    if i.stream_bytes > 0 {
        let _ = write!(text, ", first {} stream bytes each way", i.stream_bytes);
    }
    text
}

/// The exit summary: kitchen totals, then one line per chef
/// (`kitchen::outputs::status::chef_summary`), from the same counters the
/// `KitchenStatusChef` dumpling sends.
fn summary(k: &str, d: &mut Dispatcher, elapsed: Duration) {
    let report = d.status_report(StatusDetail::Full);
    let s = d.stats();
    tracing::info!(
        "{k}: summary: {} packets in {:.2?} ({:.0} packets/s), {} batches, {} pokes, {} dumplings",
        s.packets,
        elapsed,
        s.packets as f64 / elapsed.as_secs_f64().max(1e-9),
        s.batches,
        s.pokes,
        s.dumplings
    );
    let c = &s.clock;
    if !c.is_empty() {
        tracing::info!(
            "{k}: summary: kitchen clock: {} gaps collapsed ({} pokes skipped), {} restarts \
             after time went back, {} times at the end of its range",
            c.gaps_collapsed,
            c.pokes_collapsed,
            c.restarts,
            c.ended
        );
    }
    let traffic = kitchen::outputs::status::traffic::summary_lines(
        report.flows.as_ref(),
        report.streams.as_ref(),
        report.ip_reassembly.as_ref(),
        report.undecoded_link_types.as_ref(),
    );
    for line in traffic {
        tracing::info!("{k}: summary: {line}");
    }
    for lane in d.chefs() {
        let c = &lane.chef;
        let st = &c.stats;
        let load_failures = report.chefs.get(c.name()).map_or(0, |r| r.load_failures);
        let line = kitchen::outputs::status::chef_summary(
            c.name(),
            &lane.status(true, load_failures),
            st,
            lane.counters(),
        );
        // Bench runs (ND_BENCH_CHEF_CPU=1): the chef thread's CPU time too, which a loaded
        // machine's waits for a core do not inflate.
        let cpu = if kitchen::chef_host::cpu_time::enabled() {
            format!(
                ", {:.1} ms CPU in chef ({:.0} ns/packet CPU)",
                st.busy_cpu_ns as f64 / 1e6,
                st.busy_cpu_ns as f64 / st.packets.max(1) as f64
            )
        } else {
            String::new()
        };
        tracing::info!("{k}: {line}{cpu}");
    }
    for (name, gone) in d.removed_chefs() {
        let c = &gone.counters;
        tracing::info!(
            "{k}: chef {}: removed during the run ({}); {} packets offered, {} seen, {} dropped \
             ({} shed); {} dumplings ({} bytes)",
            dumpling::text::Escaped::new(name),
            gone.source,
            c.offered,
            c.seen,
            c.dropped,
            c.shed,
            c.dumplings,
            c.bytes
        );
    }
}
