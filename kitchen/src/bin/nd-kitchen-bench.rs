//! Replay throughput of the kitchen against a minimal reader, in the same run.
//!
//! Run with:
//! ```text
//! cargo run --release --bin nd-kitchen-bench -- [FILE] [--rounds N] [--corpus WHICH]
//! ```
//! (`--help` lists every flag.) Two corpora, each measured on its own:
//! * `mixed` (FILE, default `target/bench/big.pcap`, written when missing or with
//!   `--build-corpus`): every Ethernet frame of at most 1518 bytes from the legacy-pcap and
//!   pcapng captures in `$ND_SHARED_PCAPS` (default `<workspace>/../shared/pcaps`),
//!   concatenated and repeated until it holds at least `--min-packets` (default 1 000 000);
//! * `high-cardinality` (`target/bench/high-cardinality.pcap`, synthesized,
//!   deterministic; see `kitchen/src/high_cardinality.rs`): 1 M distinct flows, 100 k DNS
//!   names, 50 k ARP devices, so every chef's bounded map is full and evicting.
//!
//! Variants, interleaved round-robin (load drift hits all of them equally), medians
//! printed with ratios:
//! * `minimal`: the same `capture::FileReader` + etherparse `SlicedPacket` + a protocol
//!   counter (the baseline of `shared/docs/packet-notes.md` §2);
//! * `kitchen/0 chefs`: reader + WIT-record parsing + batching, no chef;
//! * `kitchen/noop`: plus one no-op chef interested in every packet (raw wit-bindgen, the
//!   records form: `on-packets` with a `list<packet>`);
//! * `kitchen/noop-sdk`: the same no-op chef written with the Rust chef SDK, which takes
//!   the packed form (`on-packed`): the floor of every Rust SDK chef that takes every packet;
//! * `kitchen/samples`: plus the three original sample chefs (ARP, DNS, packet count);
//! * `samples/1 thread`: the same, with reading, parsing and chefs on one thread (what
//!   the kitchen costs in CPU; `nd-sniff -r` reads and parses on a second thread);
//! * `default/discard`: every built-in chef, i.e. what `nd-sniff -r FILE` runs with no
//!   flags, output discarded;
//! * `default/hub`: the same sending into a real `nd-hub` (a child process on 127.0.0.1,
//!   with an `nd-print` eater draining it), time including the final flush;
//! * with `--compare-chefs DIR`, `default@DIR`: the default set loaded instead from every
//!   `*.wasm` in DIR but `template_chef.wasm` (e.g. an older build's
//!   `target/chefs/wasm32-wasip2/release`), to compare two chef builds in one run.
//!
//! The `kitchen/*` and `default/*` variants run exactly what `nd-sniff -r` runs
//! (`kitchen::run::replay`: a reading thread and the chefs' thread). Packets/s are by wall
//! clock, the figure a user sees; CPU time per packet (all threads) is printed beside it,
//! and the time inside each default chef per packet offered to it. Before each kitchen
//! variant's round line, where its dispatcher thread's wall time went: running every lane
//! (the chef threads side by side), running the stream-verdict lanes early (alone),
//! waiting for the reading thread, or its own work (the other chef threads idle in the last
//! two).
//!
//! Targets (issue 9): the default set >= 50 % of minimal's packets/s on both corpora
//! (into the hub too); no chef over 300 ns per packet offered. Issue 2's: samples >= 50 %
//! of minimal's packets/s; per-chef overhead below 150 ns/packet amortized.

#[path = "common/mod.rs"]
mod common;
use common::median;

#[path = "../fixtures_build.rs"]
mod fixtures_build;
#[path = "../high_cardinality.rs"]
mod high_cardinality;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use capture::FileReader;
use etherparse::{NetSlice, SlicedPacket, TransportSlice};

use kitchen::chef_host::{CacheSetting, ChefHost, ChefLimits, ChefSource, LoadedChef};
use kitchen::chefs;
use kitchen::chefs::builtin::BUILTIN_CHEFS;
use kitchen::dispatch::{
    ChefSlot, ClockMode, Dispatcher, DumplingSink, InterestMatcher, SinkError,
};
use kitchen::outputs::hub_client::{HubClient, HubOptions};
use kitchen::run::replay::{replay, NoHooks, ReplayEnd, ReplayOptions};

struct Args {
    file: Option<PathBuf>,
    rounds: usize,
    min_packets: u64,
    build_corpus: bool,
    compare_chefs: Option<PathBuf>,
    /// Run only the variant with this name (for a profiler); no ratios then.
    only: Option<String>,
    /// Which corpora to measure.
    corpus: CorpusChoice,
    /// Skip the `default/hub` variant (no `nd-hub`/`nd-print` processes).
    no_hub: bool,
    /// `--call-cost N`: time N empty pokes and N one-packet calls per default chef instead.
    call_cost: Option<u64>,
    /// `--answer-cost N`: time N calls answering 256 packet dumplings each, the in-place
    /// lift against wasmtime's lift (decided after the call), instead.
    answer_cost: Option<u64>,
    /// `--poke-cost N`: time N pokes of DNSLookupChef with its table filled from the mixed
    /// corpus, answered through `interval-same` against the text, instead.
    poke_cost: Option<u64>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum CorpusChoice {
    Mixed,
    HighCardinality,
    Both,
}

const USAGE: &str = "\
usage: nd-kitchen-bench [FILE] [--rounds N] [--min-packets N] [--build-corpus]
                        [--corpus mixed|high-cardinality|both] [--no-hub]
                        [--compare-chefs DIR] [--only VARIANT] [--chef-threads N]
                        [--call-cost N] [--answer-cost N] [--poke-cost N]

  FILE                 the mixed corpus to read (default: target/bench/big.pcap, built
                       from every Ethernet capture in $ND_SHARED_PCAPS)
  --rounds N           interleaved rounds per corpus; medians are printed (default 5)
  --min-packets N      packets of the built mixed corpus (default 1000000)
  --build-corpus       rebuild both corpora even if they exist
  --corpus WHICH       mixed, high-cardinality (target/bench/high-cardinality.pcap:
                       1 M distinct flows, 100 k DNS names, 50 k ARP devices;
                       synthesized, deterministic) or both (default)
  --no-hub             skip `default/hub` (the default chef set sending into a real
                       nd-hub on 127.0.0.1 with an nd-print eater draining it)
  --compare-chefs DIR  also run the default set loaded from the *.wasm in DIR (an
                       older chef build), output discarded
  --only VARIANT       run only this variant (for a profiler); no ratios
  --chef-threads N     the kitchen's chef worker threads in every variant (default: as
                       `nd-sniff -r` with no flags, one per core, at most one per chef;
                       1 calls the chefs one after the other, as before stop 20)
  --call-cost N        no corpus: the fixed cost of one call to each default chef, N
                       pokes and N calls with one ARP packet per round (medians of
                       --rounds), for a profiler
  --answer-cost N      no corpus: the host's cost of N calls answering 256 packet
                       dumplings each (TopTalkersChef's high-cardinality shape, ~43 %
                       kept by the budget), decided in the lift against wasmtime's lift
                       decided after the call; alternated rounds, medians, ratio
  --poke-cost N        DNSLookupChef with its table filled from the mixed corpus's
                       first 200 000 packets: N unchanged pokes per round, each wrapped
                       as the lane does, answered `same(0)` (interval-same) against the
                       text sent again (the handler's on-interval); alternated rounds,
                       medians, ratio";

/// `--chef-threads` (read by every kitchen run; set once by `parse_args`); 0 = not given:
/// `nd-sniff -r`'s default, [`Dispatcher::follow_chef_count`].
static CHEF_THREADS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn parse_args() -> anyhow::Result<Args> {
    let mut a = Args {
        file: None,
        rounds: 5,
        min_packets: 1_000_000,
        build_corpus: false,
        compare_chefs: None,
        only: None,
        corpus: CorpusChoice::Both,
        no_hub: false,
        call_cost: None,
        answer_cost: None,
        poke_cost: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--rounds" => a.rounds = it.next().context("--rounds N")?.parse()?,
            "--min-packets" => a.min_packets = it.next().context("--min-packets N")?.parse()?,
            "--build-corpus" => a.build_corpus = true,
            "--no-hub" => a.no_hub = true,
            "--call-cost" => a.call_cost = Some(it.next().context("--call-cost N")?.parse()?),
            "--answer-cost" => a.answer_cost = Some(it.next().context("--answer-cost N")?.parse()?),
            "--poke-cost" => a.poke_cost = Some(it.next().context("--poke-cost N")?.parse()?),
            "--only" => a.only = Some(it.next().context("--only VARIANT")?),
            "--chef-threads" => {
                let n: usize = it.next().context("--chef-threads N")?.parse()?;
                CHEF_THREADS.store(n.max(1), std::sync::atomic::Ordering::Relaxed);
            }
            "--corpus" => {
                a.corpus = match it.next().context("--corpus WHICH")?.as_str() {
                    "mixed" => CorpusChoice::Mixed,
                    "high-cardinality" => CorpusChoice::HighCardinality,
                    "both" => CorpusChoice::Both,
                    other => bail!("unknown corpus {other:?}: use mixed, high-cardinality or both"),
                }
            }
            "--compare-chefs" => {
                a.compare_chefs = Some(PathBuf::from(it.next().context("--compare-chefs DIR")?))
            }
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            f if !f.starts_with('-') => a.file = Some(PathBuf::from(f)),
            other => bail!("unknown argument {other} (see --help)"),
        }
    }
    if a.rounds == 0 {
        bail!("--rounds must be > 0");
    }
    Ok(a)
}

/// The variants, in the order they run each round.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Variant {
    Minimal,
    NoChefs,
    Noop,
    /// A no-op chef built with the chef SDK (packed batch form).
    NoopSdk,
    Samples,
    /// The sample chefs (none asks for flows) with no flow stage at all: the kitchen before
    /// flows, to show what the switched-off stage costs (issue 13: within 5 %).
    SamplesNoFlowStage,
    SamplesOneThread,
    /// Every built-in chef (what `nd-sniff -r FILE` runs with no flags), output discarded.
    Default,
    /// The same, sending into a real hub with an eater draining it.
    DefaultHub,
    Compare,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Minimal => "minimal",
            Variant::NoChefs => "kitchen/0 chefs",
            Variant::Noop => "kitchen/noop",
            Variant::NoopSdk => "kitchen/noop-sdk",
            Variant::Samples => "kitchen/samples",
            Variant::SamplesNoFlowStage => "samples/no flows",
            Variant::SamplesOneThread => "samples/1 thread",
            Variant::Default => "default/discard",
            Variant::DefaultHub => "default/hub",
            Variant::Compare => "default@DIR",
        }
    }
}

/// Everything a corpus run needs that outlives it.
struct Ctx<'a> {
    args: &'a Args,
    host: ChefHost,
    noop_wasm: Vec<u8>,
    noop_sdk_wasm: Vec<u8>,
    compare: Option<Vec<(String, Vec<u8>)>>,
    hub: Option<Hub>,
}

/// One corpus's headline figures, for the final summary.
struct CorpusResult {
    label: &'static str,
    minimal: f64,
    default: f64,
    default_hub: Option<f64>,
    /// (chef, ns per packet offered to it, ns per packet read), default set, median round.
    chefs: Vec<ChefRow>,
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let root = fixtures_build::workspace_root();
    let mut corpora: Vec<(&'static str, PathBuf)> = Vec::new();
    if args.corpus != CorpusChoice::HighCardinality {
        let file = match &args.file {
            Some(f) if !args.build_corpus => f.clone(),
            _ => {
                let out = args
                    .file
                    .clone()
                    .unwrap_or_else(|| root.join("target/bench/big.pcap"));
                if args.build_corpus || !out.exists() {
                    build_corpus(&root, &out, args.min_packets)?;
                }
                out
            }
        };
        corpora.push(("mixed", file));
    }
    if args.corpus != CorpusChoice::Mixed {
        let out = root.join("target/bench/high-cardinality.pcap");
        if args.build_corpus || !out.exists() {
            high_cardinality::write(&out)?;
        }
        corpora.push(("high-cardinality", out));
    }
    if let Some(n) = args.answer_cost {
        return answer_cost(n.max(1), args.rounds);
    }
    if let Some(n) = args.poke_cost {
        let mixed = corpora
            .iter()
            .find(|(label, _)| *label == "mixed")
            .context("--poke-cost reads the mixed corpus (--corpus mixed or both)")?;
        return poke_cost(&mixed.1, n.max(1), args.rounds);
    }
    if let Some(n) = args.call_cost {
        let mut host = ChefHost::new(ChefLimits::default(), CacheSetting::Default)?;
        host.set_deterministic(true);
        return call_cost(&host, n.max(1), args.rounds);
    }
    let fixtures = fixtures_build::build_fixtures().map_err(anyhow::Error::msg)?;
    let noop_wasm = std::fs::read(fixtures.join("noop_chef.wasm")).context("noop chef")?;
    let noop_sdk_wasm =
        std::fs::read(fixtures.join("noop_sdk_chef.wasm")).context("noop SDK chef")?;
    let mut host = ChefHost::new(ChefLimits::default(), CacheSetting::Default)?;
    host.set_deterministic(true); // as `nd-sniff -r` does
    if BUILTIN_CHEFS.is_empty() {
        bail!("no built-in chefs embedded (chefs/ not built); the sample-chef variant needs them");
    }
    let compare: Option<Vec<(String, Vec<u8>)>> = match &args.compare_chefs {
        Some(dir) => {
            let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
                .with_context(|| format!("listing {}", dir.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.extension().is_some_and(|x| x == "wasm")
                        && p.file_name().is_some_and(|n| n != "template_chef.wasm")
                })
                .collect();
            files.sort();
            if files.is_empty() {
                bail!("no *.wasm chefs in {}", dir.display());
            }
            let mut v = Vec::new();
            for path in files {
                let bytes =
                    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
                v.push((path.display().to_string(), bytes));
            }
            Some(v)
        }
        None => None,
    };
    let wants_hub = !args.no_hub
        && args
            .only
            .as_deref()
            .is_none_or(|o| o == Variant::DefaultHub.name());
    let hub = if wants_hub { Some(Hub::start()?) } else { None };
    let ctx = Ctx {
        args: &args,
        host,
        noop_wasm,
        noop_sdk_wasm,
        compare,
        hub,
    };
    let mut results = Vec::new();
    for &(label, ref file) in &corpora {
        if let Some(r) = bench_corpus(&ctx, label, file)? {
            results.push(r);
        }
    }
    if results.is_empty() {
        return Ok(());
    }
    println!("\n=== summary (issue 9 targets) ===");
    let mut all_met = true;
    for r in &results {
        let ratio = r.default / r.minimal;
        let hub_ratio = r.default_hub.map(|h| h / r.minimal);
        let worst = r.chefs.iter().map(|c| c.1).fold(0.0f64, f64::max);
        let met = ratio >= 0.5 && hub_ratio.is_none_or(|h| h >= 0.5) && worst <= 300.0;
        all_met &= met;
        println!(
            "{:>16}: default set {:.1} % of minimal, into the hub {}; slowest chef {:.0} ns/packet offered: {}",
            r.label,
            100.0 * ratio,
            hub_ratio.map_or("not measured".to_owned(), |h| format!("{:.1} %", 100.0 * h)),
            worst,
            if met { "MET" } else { "NOT MET" }
        );
    }
    println!(
        "targets (>= 50 % of minimal's packets/s on every corpus, into the hub too; no chef over 300 ns per packet offered): {}",
        if all_met { "MET" } else { "NOT MET" }
    );
    Ok(())
}

fn bench_corpus(
    ctx: &Ctx<'_>,
    label: &'static str,
    file: &Path,
) -> anyhow::Result<Option<CorpusResult>> {
    let args = ctx.args;
    let host = &ctx.host;
    let n_samples = samples(host)?.len();
    if n_samples != 3 {
        eprintln!("warning: only {n_samples} of the 3 sample chefs are built in; measuring those");
    }
    let n_default = default_set(host)?.len();
    let packets = count_packets(file)?;
    let threads = match CHEF_THREADS.load(std::sync::atomic::Ordering::Relaxed) {
        0 => format!(
            "chef threads as nd-sniff -r: {}",
            kitchen::dispatch::workers::default_replay_threads_for(
                std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
                n_default
            )
        ),
        n => format!("chef threads: {n}"),
    };
    println!(
        "\n=== corpus {label}: {} ({} packets, {:.1} MB), {} rounds, {threads} ===",
        file.display(),
        packets,
        std::fs::metadata(file)?.len() as f64 / 1e6,
        args.rounds
    );

    let mut variants = vec![
        Variant::Minimal,
        Variant::NoChefs,
        Variant::Noop,
        Variant::NoopSdk,
        Variant::Samples,
        Variant::SamplesNoFlowStage,
        Variant::SamplesOneThread,
        Variant::Default,
    ];
    if ctx.hub.is_some() {
        variants.push(Variant::DefaultHub);
    }
    if ctx.compare.is_some() {
        variants.push(Variant::Compare);
    }
    let idx = |v: Variant| variants.iter().position(|x| *x == v);
    let mut pps: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    let mut wall: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    let mut sample_ns: Vec<Vec<ChefTime>> = Vec::new();
    // (packets/s, per-chef times) of each default-set round, to report the median round's.
    let mut default_rounds: Vec<(f64, Vec<ChefTime>)> = Vec::new();
    let mut compare_rounds: Vec<(f64, Vec<ChefTime>)> = Vec::new();
    // One warm-up pass (page cache, compiled-chef cache) before the timed rounds.
    minimal(file)?;
    for round in 0..args.rounds {
        for (v, variant) in variants.iter().enumerate() {
            let name = variant.name();
            if args.only.as_deref().is_some_and(|o| o != name) {
                continue;
            }
            let (n, elapsed, cpu, per_chef) = match variant {
                Variant::Minimal => {
                    let t = Instant::now();
                    let c = cpu_ns();
                    let n = minimal(file)?;
                    (n, t.elapsed(), cpu_since(c), Vec::new())
                }
                Variant::NoChefs => kitchen_run(file, Vec::new(), Threads::Two, None)?,
                Variant::Noop => kitchen_run(
                    file,
                    vec![host.load(ChefSource::File("noop_chef.wasm".into()), &ctx.noop_wasm)?],
                    Threads::Two,
                    None,
                )?,
                Variant::NoopSdk => kitchen_run(
                    file,
                    vec![host.load(
                        ChefSource::File("noop_sdk_chef.wasm".into()),
                        &ctx.noop_sdk_wasm,
                    )?],
                    Threads::Two,
                    None,
                )?,
                Variant::Samples => kitchen_run(file, samples(host)?, Threads::Two, None)?,
                Variant::SamplesNoFlowStage => {
                    kitchen_run_flows(file, samples(host)?, Threads::Two, None, false)?
                }
                Variant::SamplesOneThread => kitchen_run(file, samples(host)?, Threads::One, None)?,
                Variant::Default => kitchen_run(file, default_set(host)?, Threads::Two, None)?,
                Variant::DefaultHub => {
                    let hub = ctx.hub.as_ref().context("no hub")?;
                    kitchen_run(
                        file,
                        default_set(host)?,
                        Threads::Two,
                        Some((hub, format!("bench-{label}-{round}"))),
                    )?
                }
                Variant::Compare => {
                    let mut chefs = Vec::new();
                    for (f, bytes) in ctx.compare.iter().flatten() {
                        chefs.push(host.load(ChefSource::File(f.into()), bytes)?);
                    }
                    kitchen_run(file, chefs, Threads::Two, None)?
                }
            };
            let wall_rate = n as f64 / elapsed.as_secs_f64();
            let cpu_rate = cpu.map_or(wall_rate, |c| n as f64 / c.as_secs_f64());
            eprintln!(
                "round {round} {name:>16}: {wall_rate:>10.0} packets/s  ({cpu_rate:>10.0} packets/CPU-s)"
            );
            if let (Variant::DefaultHub, Some(hub)) = (variant, &ctx.hub) {
                eprintln!(
                    "{:>25}  nd-print: {} dumplings dropped for it by the hub so far (it fell behind; from its lag notices)",
                    "",
                    hub.eater_dropped.load(std::sync::atomic::Ordering::Relaxed)
                );
            }
            pps[v].push(wall_rate);
            wall[v].push(cpu_rate);
            match variant {
                Variant::Samples => sample_ns.push(per_chef),
                Variant::Default => default_rounds.push((wall_rate, per_chef)),
                Variant::Compare => compare_rounds.push((wall_rate, per_chef)),
                _ => {}
            }
        }
    }

    if args.only.is_some() {
        // A single variant: no ratios, but the default set's chefs still get their times
        // (so an old and a new binary can be alternated on just this variant).
        if !default_rounds.is_empty() {
            println!("time inside each default chef, median round:");
            print_chef_times(&median_round(&mut default_rounds));
        }
        return Ok(None);
    }
    let med: Vec<f64> = pps.iter().map(|v| median(v)).collect();
    let med_cpu: Vec<f64> = wall.iter().map(|v| median(v)).collect();
    let at = |v: Variant| idx(v).map(|i| (med[i], med_cpu[i]));
    let (Some(min), Some(none), Some(noop), Some(samp), Some(one), Some(def)) = (
        at(Variant::Minimal),
        at(Variant::NoChefs),
        at(Variant::Noop),
        at(Variant::Samples),
        at(Variant::SamplesOneThread),
        at(Variant::Default),
    ) else {
        bail!("a variant did not run");
    };
    println!(
        "median packets/s by wall clock (ratio to minimal); CPU time per packet, all threads:"
    );
    for (i, variant) in variants.iter().enumerate() {
        println!(
            "  {:>16}: {:>12.0}  ({:>5.1} %)   CPU {:>6.1} ns/packet  ({:>5.1} % of minimal's packets/CPU-s)",
            variant.name(),
            med[i],
            100.0 * med[i] / min.0,
            1e9 / med_cpu[i],
            100.0 * med_cpu[i] / min.1
        );
    }
    // Per-chef overhead is CPU spent (all threads), the cost a chef adds wherever it runs.
    let ns = |rate: f64| 1e9 / rate;
    let noop_overhead = ns(noop.1) - ns(none.1);
    let samples_overhead = ns(samp.1) - ns(none.1);
    println!("CPU per packet (ns, all threads, from the medians):");
    println!("  minimal reader:              {:>7.1}", ns(min.1));
    println!("  kitchen, no chefs:           {:>7.1}", ns(none.1));
    println!(
        "  + one no-op chef:            {:>7.1}  (chef overhead {noop_overhead:.1})",
        ns(noop.1)
    );
    if let Some(sdk) = at(Variant::NoopSdk) {
        let overhead = ns(sdk.1) - ns(none.1);
        println!(
            "  + one no-op SDK chef:        {:>7.1}  (chef overhead {overhead:.1}; packed form, {:.2}x the records chef's)",
            ns(sdk.1),
            overhead / noop_overhead
        );
    }
    println!(
        "  + {n_samples} sample chef(s):        {:>7.1}  (chef overhead {samples_overhead:.1}, {:.1} per chef)",
        ns(samp.1),
        samples_overhead / n_samples as f64
    );
    if let Some(nf) = at(Variant::SamplesNoFlowStage) {
        println!(
            "  the same with no flow stage: {:>7.1}  (wall: samples with the stage switched off run at {:.1} % of this)",
            ns(nf.1),
            100.0 * samp.0 / nf.0
        );
    }
    println!(
        "  the same on one thread:      {:>7.1}  (the cost of handing steps between threads: {:.1})",
        ns(one.1),
        ns(samp.1) - ns(one.1)
    );
    println!(
        "  + the {n_default} default chefs:     {:>7.1}  (chef overhead {:.1})",
        ns(def.1),
        ns(def.1) - ns(none.1)
    );
    if let (Some(dir), Some(c)) = (&args.compare_chefs, at(Variant::Compare)) {
        println!(
            "  default@DIR:                 {:>7.1}  (chef overhead {:.1}; DIR = {})",
            ns(c.1),
            ns(c.1) - ns(none.1),
            dir.display()
        );
    }
    if let Some(last) = sample_ns.last() {
        println!("time inside each sample chef, last round (ns per packet read):");
        for c in last {
            println!("  {:>16}: {:>7.1}", c.name, c.ns_per_read);
        }
    }
    println!("time inside each default chef, median round (target: <= 300 ns per packet offered):");
    let chefs = median_round(&mut default_rounds);
    print_chef_times(&chefs);
    if !compare_rounds.is_empty() {
        println!("the same for default@DIR (the chefs from --compare-chefs):");
        print_chef_times(&median_round(&mut compare_rounds));
    }
    let ratio = samp.0 / min.0;
    println!(
        "target samples >= 50 % of minimal's packets/s: {} ({:.1} %; one thread {:.1} %); per-chef overhead < 150 ns: {} (noop {:.1}, samples {:.1}/chef)",
        if ratio >= 0.5 { "MET" } else { "NOT MET" },
        100.0 * ratio,
        100.0 * one.0 / min.0,
        if noop_overhead < 150.0 && samples_overhead / (n_samples as f64) < 150.0 {
            "MET"
        } else {
            "NOT MET"
        },
        noop_overhead,
        samples_overhead / n_samples as f64
    );
    Ok(Some(CorpusResult {
        label,
        minimal: min.0,
        default: def.0,
        default_hub: at(Variant::DefaultHub).map(|h| h.0),
        chefs,
    }))
}

/// Fewer packets than this offered to a chef: its time per packet offered is mostly its
/// pokes and is not judged against the target.
const MIN_JUDGED: u64 = 1000;

/// One chef's line of the median round: (name, ns per packet offered, ns per packet read,
/// the packet/poke split, packets offered).
type ChefRow = (String, f64, f64, ChefSplit, u64);

/// The per-chef times of the median round (by packets/s); a chef offered fewer than
/// [`MIN_JUDGED`] packets is left out.
fn median_round(rounds: &mut [(f64, Vec<ChefTime>)]) -> Vec<ChefRow> {
    rounds.sort_by(|a, b| a.0.total_cmp(&b.0));
    rounds
        .get(rounds.len() / 2)
        .map(|(_, v)| {
            v.iter()
                .filter(|c| {
                    let judged = c.offered >= MIN_JUDGED;
                    if !judged {
                        println!(
                            "  {:>20}: only {} packets offered (not judged)",
                            c.name, c.offered
                        );
                    }
                    judged
                })
                .map(|c| {
                    (
                        c.name.clone(),
                        c.ns_per_offered,
                        c.ns_per_read,
                        c.split,
                        c.offered,
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Each chef's time per packet offered, then the same split into its packet calls (per
/// packet offered) and its `on-interval` calls (per poke, and spread over the packets
/// offered), so a cost paid per poke is told apart from one paid per packet.
fn print_chef_times(chefs: &[ChefRow]) {
    for (name, offered, read, split, packets) in chefs {
        let per = |ns: u64, n: u64| ns as f64 / n.max(1) as f64;
        println!(
            "  {name:>20}: {offered:>8.1} ns/packet offered  {read:>7.1} ns/packet read  {}\n  {:>20}  = packet calls {:>8.1} ns/packet offered + pokes {:>8.1} ns/packet offered ({} pokes, {:.1} µs each)",
            if *offered <= 300.0 { "ok" } else { "OVER" },
            "",
            per(split.packet_ns, *packets),
            per(split.interval_ns, *packets),
            split.pokes,
            per(split.interval_ns, split.pokes) / 1e3,
        );
    }
}

/// `--poke-cost N`: what an unchanged poke of DNSLookupChef costs with its table full, answered
/// `same(0)` through `interval-same` against the same text sent again (the handler's
/// `on-interval`, its string found equal to the lent payload), in the same binary and run.
/// Each poke is wrapped as the lane does ([`LoadedChef::wrap_interval`]); the call's own
/// time (the chef's `interval_ns`, what the per-chef rows count) and the whole (call and
/// wrap) are timed. Rounds alternate the two; medians and ratios.
fn poke_cost(file: &Path, n: u64, rounds: usize) -> anyhow::Result<()> {
    let mut host = ChefHost::new(ChefLimits::default(), CacheSetting::Default)?;
    host.set_deterministic(true);
    let b = BUILTIN_CHEFS
        .iter()
        .find(|b| b.file.contains("dns_lookup"))
        .context("DNSLookupChef is not built in")?;
    let chef = host.load(ChefSource::Builtin(b.file), b.bytes)?;
    // Fill its table: the corpus's first packets through a kitchen holding it alone, no
    // poke on the way (one an hour); retiring it pokes it once.
    let output = Arc::new(OutputCount::default());
    let slot = kitchen::dispatch::ChefSlot {
        matcher: kitchen::dispatch::InterestMatcher::new(&chef.description().interest),
        qualified_name: chefs::qualified_name(&chef),
        chef,
    };
    let mut d = Dispatcher::new(
        "bench",
        vec![slot],
        Duration::from_secs(3600),
        ClockMode::Replay,
        Box::new(Discard(output.clone())),
    );
    let mut reader = FileReader::open(file)?;
    let mut last_ns = 0;
    for _ in 0..200_000 {
        let Some(rec) = reader.next_packet()? else {
            break;
        };
        last_ns = rec.timestamp_ns;
        d.push(&rec)?;
    }
    d.flush()?;
    let (slot, _) = d.retire_chef(0)?;
    let mut chef = slot.chef;
    let table = chef.on_interval(last_ns, 1)?;
    let table_bytes = table.first().map_or(0, String::len);
    println!(
        "=== poke cost: DNSLookupChef, a {table_bytes}-byte table, {n} unchanged pokes per round, {rounds} rounds, medians (ns per poke) ==="
    );
    let mut now = last_ns;
    // (call ns, call + wrap ns) per round, for `same` and for the text.
    let mut times: [(Vec<f64>, Vec<f64>); 2] = Default::default();
    for round in 0..rounds.max(1) * 2 {
        // Alternate which goes first.
        let same = (round % 2 == 0) == (round / 2 % 2 == 0);
        chef.set_interval_same(same);
        // One poke to send the text (the kitchen keeps, or lends, it).
        now += 1_000_000_000;
        let _ = chef.on_interval(now, 1_000_000_000)?;
        let call_before = chef.stats.interval_ns;
        let started = Instant::now();
        let mut bytes = 0usize;
        for _ in 0..n {
            now += 1_000_000_000;
            let out = chef.on_interval_payloads(now, 1_000_000_000)?;
            for (k, payload) in out.into_iter().enumerate() {
                let t = dumpling::epoch_seconds_from_nanos(now);
                bytes += chef
                    .wrap_interval(k, Some("bench"), t, payload)
                    .map_or(0, |w| w.len());
            }
            chef.finish_interval();
        }
        let whole = started.elapsed().as_nanos() as f64 / n as f64;
        let call = (chef.stats.interval_ns - call_before) as f64 / n as f64;
        if bytes < table_bytes * n as usize {
            bail!("a poke did not wrap the whole table ({bytes} bytes for {n} pokes)");
        }
        let slot = &mut times[usize::from(!same)];
        slot.0.push(call);
        slot.1.push(whole);
    }
    let med = median;
    let (same_call, same_whole) = (med(&times[0].0), med(&times[0].1));
    let (text_call, text_whole) = (med(&times[1].0), med(&times[1].1));
    println!("{:>28} {:>10} {:>14}", "", "call", "call + wrap");
    println!(
        "{:>28} {text_call:>10.0} {text_whole:>14.0}",
        "text (handler on-interval)"
    );
    println!(
        "{:>28} {same_call:>10.0} {same_whole:>14.0}",
        "same(0) (interval-same)"
    );
    println!(
        "{:>28} {:>10.3} {:>14.3}",
        "ratio same/text",
        same_call / text_call,
        same_whole / text_whole
    );
    if chef.stats.same_unresolved > 0 {
        bail!("{} same answers named nothing", chef.stats.same_unresolved);
    }
    Ok(())
}

/// `--call-cost N`: what one call costs the host when the chef has (almost) nothing to
/// do, per default chef: an `on-interval` poke (its answer counted, not wrapped) and a
/// packet call with one ARP request (`on-packets` or `on-packed`, as the chef asks; most
/// chefs ignore it). Medians over `rounds` rounds of `n` calls each; the guest's own work
/// is inside, so the figure is an upper bound of the host's fixed cost.
fn call_cost(host: &ChefHost, n: u64, rounds: usize) -> anyhow::Result<()> {
    use kitchen::chef_host::bindings::BatchForm;
    use kitchen::chef_host::WirePacket;
    use kitchen::parse::packed_batch::Slots;
    // An ARP request (who has 10.0.0.2? tell 10.0.0.1), 42 bytes.
    let mut frame = vec![0xff; 6];
    frame.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
    frame.extend_from_slice(&[2, 0, 0, 0, 0, 1, 10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 10, 0, 0, 2]);
    let mut arena = Vec::new();
    let rec = capture::PacketRecord {
        timestamp_ns: 1_700_000_000_000_000_000,
        link_type: 1,
        interface_index: 0,
        original_len: frame.len() as u32,
        data: &frame,
    };
    let (p, _) = kitchen::parse::packet::parse_into(&rec, &mut arena);
    let packets = [WirePacket(p)];
    // A packed chef's one-packet call is encoded per call, as a sparse chef's queue is in
    // the kitchen (`ChefLane::encode_own`), so the two forms are timed alike (the records
    // form's writing is inside its call).
    let mut packed = Vec::new();
    println!("=== call cost: {n} calls per round, {rounds} rounds, medians (ns per call) ===");
    println!(
        "{:>20} {:>10} {:>8} {:>12} {:>8}",
        "chef", "poke", "answers", "one packet", "answers"
    );
    for mut chef in default_set(host)? {
        let d = chef.description().clone();
        let (mut poke, mut call) = (Vec::new(), Vec::new());
        let (mut poke_out, mut call_out) = (0usize, 0usize);
        let mut now = 1_700_000_000_000_000_000u64;
        for _ in 0..rounds {
            if d.drivers.interval {
                let t = Instant::now();
                for _ in 0..n {
                    now += 1_000_000_000;
                    poke_out += chef.on_interval(now, 1_000_000_000).map_or(0, |v| v.len());
                }
                poke.push(t.elapsed().as_nanos() as f64 / n as f64);
            }
            if d.drivers.packet {
                let t = Instant::now();
                for _ in 0..n {
                    let out = if d.batch_form == BatchForm::Packed {
                        kitchen::parse::packed_batch::encode_as(
                            &packets,
                            &arena,
                            &mut packed,
                            Slots::filled_if(d.packed_slots),
                        );
                        chef.on_packed(&packed, &arena, 1, now)
                    } else {
                        chef.on_packets(&packets, &arena, now)
                    };
                    call_out += out.map_or(0, |v| v.len());
                }
                call.push(t.elapsed().as_nanos() as f64 / n as f64);
            }
        }
        let fmt = |v: &[f64]| {
            if v.is_empty() {
                "-".to_owned()
            } else {
                format!("{:.0}", median(v))
            }
        };
        let calls = (n as usize * rounds).max(1);
        println!(
            "{:>20} {:>10} {:>8.2} {:>12} {:>8.2}",
            chef.name(),
            fmt(&poke),
            poke_out as f64 / calls as f64,
            fmt(&call),
            call_out as f64 / calls as f64
        );
    }
    Ok(())
}

/// `--answer-cost N`: the host's per-dumpling path for a `list<packet-dumpling>`, on
/// `TopTalkersChef`'s high-cardinality shape: each call answers 256 `flow_ended`-like
/// `flow_ended` payloads (~310 bytes), and a per-second budget refills between calls
/// for about 43 % of them (468 634 of 1.1 M pass on that corpus). `wasmtime`: the answer
/// lifted by wasmtime (a `String` per payload) and decided after the call, as before stop
/// 19; `in place`: decided in the lift, only kept payloads read (`packet_answer`). Each
/// variant has its own instance of the `answer-chef` fixture (which builds the 256 strings
/// from its arena: its own work is inside both figures) and its own budget; rounds
/// alternate; medians of ns per call and per dumpling, and the ratio.
fn answer_cost(n: u64, rounds: usize) -> anyhow::Result<()> {
    use kitchen::chef_host::output_budget::OutputBudget;
    use kitchen::chef_host::packet_answer::{Intake, Part, Verdict};
    const DUMPLINGS: usize = 256;
    let fixtures = fixtures_build::build_fixtures().map_err(anyhow::Error::msg)?;
    let mut host = ChefHost::new(ChefLimits::default(), CacheSetting::Default)?;
    host.set_deterministic(true);
    let load = || host.load_file(&fixtures.join("answer_chef.wasm"));
    let (mut old, mut new) = (load()?, load()?);
    // The answer script (see kitchen/fixtures/answer-chef): 256 own strings.
    // `TopTalkersChef`'s own `flow_ended` text on that corpus (~300-330 bytes).
    let payload = |i: usize| {
        format!(
            r#"{{"flow_ended":{{"id":{},"protocol":"tcp","originator":"10.{}.{}.{}:{}","responder":"192.0.2.{}:443","first":1700000000.{:06},"last":1700000000.{:06},"packets_from_originator":1,"packets_from_responder":0,"bytes_from_originator":86,"bytes_from_responder":0,"tcp_flags":["PSH","ACK"],"end_reason":"evicted"}}}}"#,
            1_000_000 + i,
            i % 250,
            i / 250 % 250,
            i % 7,
            1024 + i,
            i % 200,
            i * 8 + 1,
            i * 8 + 9
        )
    };
    let mut script = Vec::new();
    script.extend_from_slice(&(DUMPLINGS as u32).to_le_bytes());
    for i in 0..DUMPLINGS {
        let p = payload(i);
        for w in [i as u32, 0, p.len() as u32] {
            script.extend_from_slice(&w.to_le_bytes());
        }
        script.extend_from_slice(p.as_bytes());
    }
    let bytes_per_call: usize = (0..DUMPLINGS).map(|i| payload(i).len()).sum();
    // 1 MB/s refilled for `step` ns between calls: ~43 % of a call's bytes.
    let per_sec = 1_000_000u64;
    let step = (bytes_per_call as u64 * 43 / 100) * 1_000_000_000 / per_sec;
    let intake = |budget: &OutputBudget| {
        let mut i = Intake::default();
        i.cap = 100_000;
        i.max_bytes = 1 << 20;
        i.parts = vec![Part {
            end: DUMPLINGS,
            clock_ns: 0,
        }];
        i.times = (0..DUMPLINGS as u64)
            .map(|t| 1_700_000_000_000_000_000 + t)
            .collect();
        i.has_times = true;
        i.budget = Some(budget.clone());
        i.head = Some(dumpling::EnvelopeHead::new("AnswerChef", Some("bench")));
        i
    };
    let (mut b_old, mut b_new) = (
        OutputBudget::new(1 << 20, per_sec),
        OutputBudget::new(1 << 20, per_sec),
    );
    let (mut i_old, mut i_new) = (intake(&b_old), intake(&b_new));
    let (mut t_old, mut t_new) = (Vec::new(), Vec::new());
    let (mut kept_old, mut kept_new, mut bytes_old, mut bytes_new) = (0u64, 0u64, 0u64, 0u64);
    let mut clock = 0u64;
    println!(
        "=== answer cost: {n} calls of {DUMPLINGS} packet dumplings ({bytes_per_call} payload bytes) per round, {rounds} rounds ==="
    );
    let tally = |i: &Intake, kept: &mut u64, bytes: &mut u64| {
        for v in &i.verdicts {
            if let Verdict::Wrapped(Ok(json)) = v {
                *kept += 1;
                *bytes += json.len() as u64;
            }
        }
    };
    for _ in 0..rounds {
        for new_first in [false, true] {
            let old_clock = clock;
            for variant in if new_first { [1, 0] } else { [0, 1] } {
                clock = old_clock;
                let t = Instant::now();
                for _ in 0..n {
                    clock += step;
                    if variant == 0 {
                        i_old.parts[0].clock_ns = clock;
                        i_old.verdicts.clear();
                        let out = old.on_packets(&[], &script, clock)?;
                        i_old.take_owned(&out);
                        tally(&i_old, &mut kept_old, &mut bytes_old);
                    } else {
                        i_new.parts[0].clock_ns = clock;
                        new.take_packets(&[], &script, clock, &mut i_new)?;
                        tally(&i_new, &mut kept_new, &mut bytes_new);
                    }
                }
                let ns = t.elapsed().as_nanos() as f64 / n as f64;
                if variant == 0 {
                    t_old.push(ns);
                } else {
                    t_new.push(ns);
                }
            }
        }
    }
    if let Some(b) = i_old.budget.take() {
        b_old = b;
    }
    if let Some(b) = i_new.budget.take() {
        b_new = b;
    }
    if kept_old != kept_new
        || bytes_old != bytes_new
        || format!("{b_old:?}") != format!("{b_new:?}")
    {
        bail!("the two paths disagree: kept {kept_old} vs {kept_new}, bytes {bytes_old} vs {bytes_new}");
    }
    let calls = (t_old.len() as u64 * n).max(1);
    let (mo, mn) = (median(&t_old), median(&t_new));
    println!(
        "kept {:.1} % of the dumplings ({kept_new} in {calls} calls per variant)",
        kept_new as f64 * 100.0 / (calls as f64 * DUMPLINGS as f64)
    );
    println!(
        "{:>10} {:>12} {:>14}",
        "variant", "ns per call", "ns per dumpling"
    );
    for (name, m) in [("wasmtime", mo), ("in place", mn)] {
        println!("{name:>10} {m:>12.0} {:>14.1}", m / DUMPLINGS as f64);
    }
    println!("ratio in place / wasmtime: {:.3}", mn / mo);
    Ok(())
}

/// Every built-in chef: what `nd-sniff -r FILE` runs with no chef flags.
fn default_set(host: &ChefHost) -> anyhow::Result<Vec<LoadedChef>> {
    let found = chefs::discover(host, true, None)?;
    let failed = chefs::load_failures(&found);
    if let Some((source, error)) = failed.first() {
        bail!("built-in chef {source:?} did not load: {error}");
    }
    Ok(chefs::loaded(found))
}

fn samples(host: &ChefHost) -> anyhow::Result<Vec<LoadedChef>> {
    let mut out = Vec::new();
    for b in BUILTIN_CHEFS {
        let chef = host.load(ChefSource::Builtin(b.file), b.bytes)?;
        if matches!(chef.name(), "ARPChef" | "DNSLookupChef" | "PacketCountChef") {
            out.push(chef);
        }
    }
    if out.is_empty() {
        bail!("none of the three sample chefs is among the built-ins");
    }
    Ok(out)
}

/// Counts dumplings and their bytes, keeps nothing (the bench measures the kitchen, not
/// stdout).
struct Discard(Arc<OutputCount>);

/// What a run's chefs sent, read after the run: how much output the default set makes
/// per packet read is part of its cost (every byte is checked, wrapped and copied).
#[derive(Default)]
struct OutputCount {
    bytes: std::sync::atomic::AtomicU64,
    dumplings: std::sync::atomic::AtomicU64,
}

impl DumplingSink for Discard {
    fn send(&mut self, _chef: &str, json: String) -> Result<(), SinkError> {
        use std::sync::atomic::Ordering::Relaxed;
        self.0.bytes.fetch_add(json.len() as u64, Relaxed);
        self.0.dumplings.fetch_add(1, Relaxed);
        Ok(())
    }
}

/// Time inside one chef over a run.
struct ChefTime {
    name: String,
    /// Nanoseconds inside the chef per packet handed to it (its interest's share).
    ns_per_offered: f64,
    /// Nanoseconds inside the chef per packet read from the file.
    ns_per_read: f64,
    /// Packets handed to the chef.
    offered: u64,
    /// The split of the chef's time: (its packet calls, its `on-interval` calls), ns.
    split: ChefSplit,
}

/// One chef's time split into packet work and poke work (guest calls only; checking and
/// wrapping its dumplings is the dispatcher's time, in the CPU total).
#[derive(Clone, Copy)]
struct ChefSplit {
    /// Nanoseconds in calls other than `on-interval` (packets, flow events, streams).
    packet_ns: u64,
    /// Nanoseconds in `on-interval` calls.
    interval_ns: u64,
    /// `on-interval` calls.
    pokes: u64,
}

/// Packets, wall time, process CPU time, and the time inside each chef.
type RunResult = (u64, Duration, Option<Duration>, Vec<ChefTime>);

/// CPU time of the whole process so far (every thread, including ones that ended), ns.
#[allow(unsafe_code)] // one libc call; /proc's per-process figure only has 10 ms ticks
fn cpu_ns() -> Option<u64> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a `rusage` into the pointer it is given; on success the
    // whole struct is initialised.
    let usage = unsafe {
        if libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) != 0 {
            return None;
        }
        usage.assume_init()
    };
    let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    Some((us(usage.ru_utime) + us(usage.ru_stime)) * 1000)
}

fn cpu_since(start: Option<u64>) -> Option<Duration> {
    Some(Duration::from_nanos(cpu_ns()?.checked_sub(start?)?))
}

/// Where the kitchen variants run their chefs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Threads {
    /// `nd-sniff -r`: `kitchen::run::replay`, reading + parsing on a second thread.
    Two,
    /// Everything on the calling thread (`Dispatcher::push`).
    One,
}

/// The kitchen's hub client behind a mutex, so the run can take it back for the final
/// flush (as `nd-sniff` does).
struct SharedHub(Arc<Mutex<HubClient>>);

impl DumplingSink for SharedHub {
    fn send(&mut self, chef: &str, json: String) -> Result<(), SinkError> {
        let mut hub = self.0.lock().unwrap_or_else(|e| e.into_inner());
        hub.send(chef, json)
    }
}

/// Runs `chefs` over `file` the way `nd-sniff -r` does; with `hub`, the dumplings go to
/// that hub under the given kitchen name and the time includes the final flush.
fn kitchen_run(
    file: &Path,
    chefs: Vec<LoadedChef>,
    threads: Threads,
    hub: Option<(&Hub, String)>,
) -> anyhow::Result<RunResult> {
    kitchen_run_flows(file, chefs, threads, hub, true)
}

/// [`kitchen_run`], with the flow stage as `nd-sniff` sets it up (`flows`: tracking while a
/// chef asks) or without one.
fn kitchen_run_flows(
    file: &Path,
    chefs: Vec<LoadedChef>,
    threads: Threads,
    hub: Option<(&Hub, String)>,
    flows: bool,
) -> anyhow::Result<RunResult> {
    let slots: Vec<ChefSlot> = chefs
        .into_iter()
        .map(|chef| ChefSlot {
            matcher: InterestMatcher::new(&chef.description().interest),
            qualified_name: chefs::qualified_name(&chef),
            chef,
        })
        .collect();
    let output = Arc::new(OutputCount::default());
    let t = Instant::now();
    let c = cpu_ns();
    let (sink, client): (Box<dyn DumplingSink>, _) = match hub {
        Some((hub, name)) => {
            let qualified: Vec<&str> = slots.iter().map(|s| s.qualified_name.as_str()).collect();
            let hello = serde_json::json!({
                "kitchen_name": name,
                "chefs": qualified,
                "poke_interval": POKE.as_secs_f64(),
                "kitchen_software": "nd-kitchen-bench",
                "source": "file",
            });
            let mut options = HubOptions::new(hub.kitchen_addr.clone(), hello.to_string());
            options.block_when_full = true; // as `nd-sniff -r` does
            let client = Arc::new(Mutex::new(HubClient::start(options)?));
            let sink: Box<dyn DumplingSink> = Box::new(SharedHub(client.clone()));
            (sink, Some(client))
        }
        None => (
            Box::new(Discard(output.clone())) as Box<dyn DumplingSink>,
            None,
        ),
    };
    let mut d = Dispatcher::new("bench", slots, POKE, ClockMode::Replay, sink);
    match CHEF_THREADS.load(std::sync::atomic::Ordering::Relaxed) {
        0 => d.follow_chef_count(
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
        )?,
        n => d.set_chef_threads(n)?,
    }
    if flows {
        d.set_flows(flowtrack::table::FlowConfig::default())?;
    }
    let mut reader = FileReader::open(file)?;
    let mut waited_ns = 0;
    match threads {
        Threads::Two => {
            let options = ReplayOptions {
                filter: None,
                filter_check: None,
                stop: Arc::new(AtomicBool::new(false)),
                progress: None,
            };
            let (end, counters) = replay(reader, &mut d, &mut NoHooks, options)?;
            if !matches!(end, ReplayEnd::Done) {
                bail!("the replay ended early: {end:?}");
            }
            waited_ns = counters
                .waited_ns
                .load(std::sync::atomic::Ordering::Relaxed);
        }
        Threads::One => {
            while let Some(rec) = reader.next_packet()? {
                d.push(&rec)?;
            }
        }
    }
    d.finish()?;
    let n = d.stats().packets;
    {
        // Where the dispatcher thread's wall time went: with every lane running (on every
        // chef thread), or on its own work while the other chef threads idle.
        let wall_ns = t.elapsed().as_nanos() as f64;
        let lanes = d.stats().lanes_ns as f64;
        let verdict = d.stats().verdict_lanes_ns as f64;
        let waited = waited_ns as f64;
        let alone = (wall_ns - lanes - verdict - waited).max(0.0);
        let part = |ns: f64| format!("{:.0} ms ({:.0} %)", ns / 1e6, 100.0 * ns / wall_ns);
        eprintln!(
            "    dispatcher thread: every lane running {}, verdict lanes early {}, waiting for the reader {}, its own work {}; of {:.0} ms",
            part(lanes),
            part(verdict),
            part(waited),
            part(alone),
            wall_ns / 1e6
        );
    }
    if client.is_none() {
        use std::sync::atomic::Ordering::Relaxed;
        let bytes = output.bytes.load(Relaxed);
        eprintln!(
            "    output: {} dumplings, {:.1} MB ({:.0} bytes per packet read), {} pokes (one per {:.0} packets)",
            output.dumplings.load(Relaxed),
            bytes as f64 / 1e6,
            bytes as f64 / n.max(1) as f64,
            d.stats().pokes,
            n as f64 / d.stats().pokes.max(1) as f64
        );
    }
    // A chef that failed (a deadline missed under load) changes the output and the time:
    // say so next to the figures.
    for s in d.chefs() {
        let st = &s.chef.stats;
        if st.traps + st.timeouts + st.restarts + st.skipped > 0 {
            eprintln!(
                "    warning: {} had {} traps, {} timeouts, {} restarts, {} skipped calls in this run",
                s.chef.name(),
                st.traps,
                st.timeouts,
                st.restarts,
                st.skipped
            );
        }
    }
    let per_chef = d
        .chefs()
        .iter()
        .map(|s| ChefTime {
            name: s.chef.name().to_owned(),
            ns_per_offered: s.chef.stats.busy_ns as f64 / s.chef.stats.packets.max(1) as f64,
            ns_per_read: s.chef.stats.busy_ns as f64 / n.max(1) as f64,
            offered: s.chef.stats.packets,
            split: ChefSplit {
                packet_ns: s.chef.stats.busy_ns
                    - s.chef.stats.interval_ns.min(s.chef.stats.busy_ns),
                interval_ns: s.chef.stats.interval_ns,
                pokes: s.chef.stats.interval_calls,
            },
        })
        .collect();
    drop(d);
    if let Some(client) = client {
        let client = Arc::try_unwrap(client)
            .map_err(|_| anyhow::anyhow!("the hub client is still shared"))?
            .into_inner()
            .unwrap_or_else(|e| e.into_inner());
        let report = client.finish(Duration::from_secs(60), &|| false);
        if report.lost() > 0 {
            bail!(
                "the hub client lost {} dumplings: {report:?}",
                report.lost()
            );
        }
    }
    let elapsed = t.elapsed();
    let cpu = cpu_since(c);
    Ok((n, elapsed, cpu, per_chef))
}

/// The poke interval of every kitchen variant (`nd-sniff`'s default).
const POKE: Duration = Duration::from_secs(5);

/// A real `nd-hub` on 127.0.0.1 with an `nd-print` eater draining it, both child
/// processes of this bench (killed by PID when it ends).
struct Hub {
    kitchen_addr: String,
    children: Vec<std::process::Child>,
    /// Dumplings the hub dropped for `nd-print` so far (it fell behind), summed from the
    /// lag notices `nd-print` reports on stderr: the row's figure is for a lossy eater when
    /// this grows. A lower bound (drops after the last delivered dumpling are not noticed).
    eater_dropped: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Hub {
    /// Starts `nd-hub` and `nd-print` from this binary's directory (`target/release`).
    fn start() -> anyhow::Result<Hub> {
        let dir = std::env::current_exe()?
            .parent()
            .map(Path::to_path_buf)
            .context("no directory for this binary")?;
        let exe = |name: &str| -> anyhow::Result<PathBuf> {
            let p = dir.join(name);
            if !p.exists() {
                bail!(
                    "{} not found: build it with `cargo build --release --workspace --all-targets` (or pass --no-hub)",
                    p.display()
                );
            }
            Ok(p)
        };
        let (hub_exe, eater_exe) = (exe("nd-hub")?, exe("nd-print")?);
        let (in_port, out_port) = (free_port()?, free_port()?);
        let mut hub = Hub {
            kitchen_addr: format!("127.0.0.1:{in_port}"),
            children: Vec::new(),
            eater_dropped: Default::default(),
        };
        hub.children.push(
            std::process::Command::new(hub_exe)
                .args(["-a", "127.0.0.1", "-i", &in_port.to_string()])
                .args(["-o", &out_port.to_string()])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .context("starting nd-hub")?,
        );
        for port in [in_port, out_port] {
            wait_for_port(port)?;
        }
        let mut eater = std::process::Command::new(eater_exe)
            .args(["--hub", &format!("127.0.0.1:{out_port}")])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .context("starting nd-print")?;
        if let Some(stderr) = eater.stderr.take() {
            let dropped = hub.eater_dropped.clone();
            // Ends when nd-print's stderr closes (it is killed with the hub).
            std::thread::spawn(move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(stderr)
                    .lines()
                    .map_while(Result::ok)
                {
                    if let Some(n) = lag_notice_count(&line) {
                        dropped.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
        }
        hub.children.push(eater);
        eprintln!("hub: nd-hub on 127.0.0.1:{in_port}/{out_port}, nd-print draining it");
        Ok(hub)
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        for c in &mut self.children {
            // Our own children, by PID.
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The count in `nd-print`'s report of a lag notice (`NAME: the hub dropped N dumplings
/// (this eater fell behind)`), if `line` is one.
fn lag_notice_count(line: &str) -> Option<u64> {
    let rest = line.split_once(": the hub dropped ")?.1;
    rest.strip_suffix(" dumplings (this eater fell behind)")?
        .parse()
        .ok()
}

/// A port free on 127.0.0.1 right now.
fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Waits (at most 10 s) until something accepts on 127.0.0.1:`port`.
fn wait_for_port(port: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    while Instant::now() < deadline {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("nothing listens on 127.0.0.1:{port} after 10 s (did nd-hub start?)")
}

/// The baseline: read + slice + count protocols.
fn minimal(file: &Path) -> anyhow::Result<u64> {
    let mut reader = FileReader::open(file)?;
    let mut counts = [0u64; 8];
    let mut n = 0u64;
    while let Some(rec) = reader.next_packet()? {
        n += 1;
        let sliced = match rec.link_type {
            1 => SlicedPacket::from_ethernet(rec.data).ok(),
            113 => SlicedPacket::from_linux_sll(rec.data).ok(),
            12 | 14 | 101 | 228 | 229 => SlicedPacket::from_ip(rec.data).ok(),
            _ => None,
        };
        let Some(s) = sliced else {
            counts[7] += 1;
            continue;
        };
        match &s.net {
            Some(NetSlice::Ipv4(_)) => counts[0] += 1,
            Some(NetSlice::Ipv6(_)) => counts[1] += 1,
            Some(NetSlice::Arp(_)) => counts[2] += 1,
            None => {}
        }
        match &s.transport {
            Some(TransportSlice::Tcp(t)) => {
                counts[3] += 1;
                if t.source_port() == 53 || t.destination_port() == 53 {
                    counts[6] += 1;
                }
            }
            Some(TransportSlice::Udp(u)) => {
                counts[4] += 1;
                if u.source_port() == 53 || u.destination_port() == 53 {
                    counts[6] += 1;
                }
            }
            Some(_) => counts[5] += 1,
            None => {}
        }
    }
    std::hint::black_box(&counts);
    Ok(n)
}

fn count_packets(file: &Path) -> anyhow::Result<u64> {
    let mut reader = FileReader::open(file)?;
    while reader.next_packet()?.is_some() {}
    Ok(reader.packets_read())
}

/// Write a legacy pcap (microsecond, little-endian, DLT 1) of every Ethernet frame
/// <= 1518 bytes from the shared captures, repeated to at least `min_packets`.
fn build_corpus(root: &Path, out: &Path, min_packets: u64) -> anyhow::Result<()> {
    let dir = std::env::var_os("ND_SHARED_PCAPS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("../shared/pcaps"));
    let mut frames: Vec<(u64, Vec<u8>, u32)> = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pcap" || x == "pcapng"))
        .collect();
    files.sort();
    // One running clock, as in one long capture: each packet follows the one before by
    // its own capture's spacing, capped to [0, 1 s] (1 ms between files). Kept as they are,
    // the captures' times jump years back and forth (between files, and inside the corpus's
    // odd-clock captures), and the replay's interval clock then pokes every chef more often
    // than packets arrive: a cost of those clocks (bounded, and tested in
    // `kitchen/tests/odd_captures.rs`), not of the packet work this corpus measures.
    const MAX_STEP_NS: u64 = 1_000_000_000;
    const FILE_GAP_NS: u64 = 1_000_000;
    let mut clock_ns = 0u64;
    for f in &files {
        let Ok(mut r) = FileReader::open(f) else {
            continue;
        };
        let mut prev: Option<u64> = None;
        while let Ok(Some(rec)) = r.next_packet() {
            if rec.link_type == 1 && rec.data.len() <= 1518 {
                let step = prev.map_or(FILE_GAP_NS, |p| {
                    rec.timestamp_ns.saturating_sub(p).min(MAX_STEP_NS)
                });
                prev = Some(rec.timestamp_ns);
                clock_ns += step;
                frames.push((clock_ns, rec.data.to_vec(), rec.original_len));
            }
        }
    }
    if frames.is_empty() {
        bail!("no Ethernet frames found in {}", dir.display());
    }
    let repeats = min_packets.div_ceil(frames.len() as u64).max(1);
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = out.with_extension("pcap.tmp");
    let mut w = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
    high_cardinality::pcap_header(&mut w)?;
    let mut written = 0u64;
    // A capture-like start time (2020-01-01); each repeat continues where the last ended.
    let epoch_ns = 1_577_836_800_000_000_000u64;
    let span = frames.last().map_or(0, |f| f.0 + 1_000_000);
    for round in 0..repeats {
        for (ts, data, orig) in &frames {
            let ts = epoch_ns + round * span + ts;
            let secs = (ts / 1_000_000_000) as u32;
            let usecs = ((ts % 1_000_000_000) / 1000) as u32;
            w.write_all(&secs.to_le_bytes())?;
            w.write_all(&usecs.to_le_bytes())?;
            w.write_all(&(data.len() as u32).to_le_bytes())?;
            w.write_all(&(*orig).max(data.len() as u32).to_le_bytes())?;
            w.write_all(data)?;
            written += 1;
        }
    }
    w.flush()?;
    drop(w);
    std::fs::rename(&tmp, out)?;
    eprintln!(
        "wrote {} ({} packets: {} Ethernet frames from {} files, x{repeats})",
        out.display(),
        written,
        frames.len(),
        files.len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_nd_prints_lag_reports() {
        // The line `eaters::eat` writes for a lag notice.
        let name = "printereater";
        let line = format!(
            "{name}: the hub dropped {} dumplings (this eater fell behind)",
            236
        );
        assert_eq!(lag_notice_count(&line), Some(236));
        assert_eq!(lag_notice_count("printereater: Invalid dumpling: x"), None);
        assert_eq!(
            lag_notice_count("x: the hub dropped many dumplings (this eater fell behind)"),
            None
        );
    }
}
