//! `nd-flow-bench`: what connection tracking costs per packet (issue 13, item 7: under
//! 100 ns per packet; nothing measurable when no chef asks for flows).
//!
//! The corpora are `nd-kitchen-bench`'s (`target/bench/big.pcap`, the mixed corpus of every
//! Ethernet capture in the shared corpus, and `target/bench/high-cardinality.pcap`, 1 M
//! distinct flows that keep the table full and evicting), read into memory once. Each round
//! runs, interleaved, the kitchen's own parse path ([`BatchBuilder`], as a replay's reading
//! thread runs it) in these variants:
//!
//! * `parse`: no flow stage (the kitchen before flows; the baseline),
//! * `parse+stage off`: the stage attached but switched off (no chef asks for flows),
//! * `parse+flows`: tracking every packet (the table sized by `--flow-table-size`), on a
//!   fresh table (so its first-touch page faults count, about 36 MB at the default size),
//!   and again as a second pass of the same packets later on a table that already ran the
//!   corpus (`parse+flows, second pass`: full, its memory in use, as in a kitchen that has
//!   run for a while),
//!
//! and, on its own, `table only`: [`FlowTable::track`] on the packets' pre-extracted
//! 5-tuples one by one, and [`FlowTable::track_batch`] on them in batches of 256 (as the
//! kitchen's stage calls it), and the latter again on a second pass of the same table (the
//! packets shifted later: steady state, no fresh memory). Times are the thread's CPU time
//! (`/proc/thread-self/schedstat`), so waiting for a core on a loaded machine does not
//! count. Medians over the rounds are printed in ns per packet, with the stage's cost
//! (`parse+flows` minus `parse`) and the switched-off overhead as ratios of the baseline.

#[path = "common/mod.rs"]
mod common;
use common::median;

#[path = "../high_cardinality.rs"]
mod high_cardinality;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use capture::{FileReader, PacketRecord};
use flowtrack::table::{FlowConfig, FlowTable, PacketMeta, DEFAULT_MAX_FLOWS};
use kitchen::parse::batch::{BatchBuilder, ClockMode, Step, MAX_BATCH_PACKETS};
use kitchen::parse::flow_stage::{meta_of, FlowCounters, FlowShared, FlowStage};
use kitchen::parse::packet::parse_into;

const USAGE: &str = "\
usage: nd-flow-bench [--rounds N] [--flow-table-size N] [FILE...]

  FILE                  pcap/pcapng corpora (default: target/bench/big.pcap, built by
                        `cargo run --release --workspace --bin nd-kitchen-bench --
                        --build-corpus --only minimal --rounds 1`, and
                        target/bench/high-cardinality.pcap, written when missing)
  --rounds N            interleaved rounds; medians are printed (default 7)
  --flow-table-size N   flows tracked at once (default 262144, as nd-sniff)";

/// Poke interval of the builders (as `nd-sniff`'s default).
const POKE: Duration = Duration::from_secs(5);

/// One captured packet, owned.
struct Rec {
    ts: u64,
    link_type: u32,
    original_len: u32,
    data: Vec<u8>,
}

impl Rec {
    fn record(&self) -> PacketRecord<'_> {
        self.record_at(0)
    }

    /// The record with its time moved `later_ns` on (a second pass of the corpus).
    fn record_at(&self, later_ns: u64) -> PacketRecord<'_> {
        PacketRecord {
            timestamp_ns: self.ts + later_ns,
            link_type: self.link_type,
            interface_index: 0,
            original_len: self.original_len,
            data: &self.data,
        }
    }
}

fn main() -> anyhow::Result<()> {
    let mut rounds = 7usize;
    let mut table_size = DEFAULT_MAX_FLOWS;
    let mut files = Vec::new();
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--rounds" => rounds = it.next().context("--rounds N")?.parse()?,
            "--flow-table-size" => {
                table_size = it.next().context("--flow-table-size N")?.parse()?
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            f if !f.starts_with('-') => files.push(PathBuf::from(f)),
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    if rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    if files.is_empty() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .context("kitchen/ lives in the workspace")?;
        files = vec![
            root.join("target/bench/big.pcap"),
            root.join("target/bench/high-cardinality.pcap"),
        ];
    }
    let config = FlowConfig {
        max_flows: table_size,
        ..FlowConfig::default()
    };
    config.validate()?;
    println!(
        "flow table: {table_size} flows, {rounds} rounds; times are {}",
        if thread_cpu_ns().is_some() {
            "this thread's CPU time (waits for a core on a loaded machine not counted)"
        } else {
            "wall time (no /proc/thread-self/schedstat)"
        }
    );
    for file in &files {
        if !file.exists() && file.ends_with("target/bench/high-cardinality.pcap") {
            high_cardinality::write(file)?;
        }
        if !file.exists() {
            bail!("{} is missing\n{USAGE}", file.display());
        }
        let recs = load(file)?;
        println!("\n=== {} ({} packets) ===", file.display(), recs.len());
        bench(&recs, config, rounds)?;
    }
    Ok(())
}

fn load(file: &std::path::Path) -> anyhow::Result<Vec<Rec>> {
    let mut reader =
        FileReader::open(file).with_context(|| format!("opening {}", file.display()))?;
    let mut recs = Vec::new();
    while let Some(r) = reader.next_packet()? {
        recs.push(Rec {
            ts: r.timestamp_ns,
            link_type: r.link_type,
            original_len: r.original_len,
            data: r.data.to_vec(),
        });
    }
    Ok(recs)
}

/// Runs the builder over every record, handing batches back; returns ns per packet and
/// the flow table's final counters (when it tracked flows). With `warm_span`, the corpus
/// first runs once untimed and the timed pass is the same packets `warm_span` ns later:
/// the table is full and its memory in use (a kitchen that has run for a while).
fn run_builder(
    recs: &[Rec],
    stage: Option<FlowStage>,
    warm_span: Option<u64>,
) -> (f64, Option<FlowCounters>) {
    let mut b = BatchBuilder::new(ClockMode::Replay, POKE);
    if let Some(s) = stage {
        b.set_flow_stage(s);
    }
    let pass = |b: &mut BatchBuilder, later_ns: u64| {
        for r in recs {
            b.push(&r.record_at(later_ns));
            while let Some(step) = b.next_step() {
                if let Step::Packets(batch) = step {
                    std::hint::black_box(&batch);
                    b.recycle(batch);
                }
            }
        }
    };
    if warm_span.is_some() {
        pass(&mut b, 0);
    }
    let start = Timer::start();
    pass(&mut b, warm_span.unwrap_or(0));
    b.end_flows();
    let mut counters = None;
    while let Some(step) = b.next_step() {
        if let Step::Packets(batch) = &step {
            counters = batch.flow_counters().or(counters);
        }
        std::hint::black_box(&step);
    }
    let ns = start.ns() / recs.len().max(1) as f64;
    (ns, counters)
}

/// Tracks `metas` through `t` in batches of 256, as the kitchen's stage does; ns per packet.
fn in_batches(t: &mut FlowTable, metas: &[PacketMeta]) -> f64 {
    let (mut refs, mut events) = (Vec::new(), Vec::new());
    let start = Timer::start();
    for chunk in metas.chunks(MAX_BATCH_PACKETS) {
        refs.clear();
        t.track_batch(chunk, &mut refs, &mut events);
        std::hint::black_box(&refs);
        events.clear();
    }
    start.ns() / metas.len().max(1) as f64
}

fn bench(recs: &[Rec], config: FlowConfig, rounds: usize) -> anyhow::Result<()> {
    // The table-only variant's input: every packet's 5-tuple, extracted once.
    let metas: Vec<PacketMeta> = recs
        .iter()
        .filter_map(|r| {
            let mut arena = Vec::new();
            let (p, _) = parse_into(&r.record(), &mut arena);
            meta_of(&p)
        })
        .collect();
    let mut names = [
        "parse",
        "parse+stage off",
        "parse+flows",
        "table only",
        "table only, batches of 256",
        "table only, batches, steady state",
        "parse+flows, steady state",
    ];
    // The steady-state variant's second pass: the same packets later (so the clock runs on
    // and the same keys come back as they would in a longer capture).
    let (lo, hi) = metas.iter().fold((u64::MAX, 0), |(lo, hi), m| {
        (lo.min(m.ts_ns), hi.max(m.ts_ns))
    });
    let span = hi.saturating_sub(lo) + 1_000_000_000;
    // The parse path's second pass, by the captured times (which the metas' times are).
    let (rlo, rhi) = recs
        .iter()
        .fold((u64::MAX, 0), |(lo, hi), r| (lo.min(r.ts), hi.max(r.ts)));
    let rec_span = rhi.saturating_sub(rlo) + 1_000_000_000;
    let later: Vec<PacketMeta> = metas
        .iter()
        .map(|m| PacketMeta {
            ts_ns: m.ts_ns + span,
            ..*m
        })
        .collect();
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    let mut flows_seen = 0;
    let mut evicted = 0;
    for _ in 0..rounds {
        times[0].push(run_builder(recs, None, None).0);
        let off = Arc::new(FlowShared::default());
        times[1].push(run_builder(recs, Some(FlowStage::new(config, off)?), None).0);
        let on = Arc::new(FlowShared::default());
        on.set_wanted(true);
        let (ns, counters) = run_builder(recs, Some(FlowStage::new(config, on.clone())?), None);
        times[2].push(ns);
        let s = counters.unwrap_or_default().stats;
        flows_seen = s.started;
        evicted = s.evicted;
        let mut t = FlowTable::new(config)?;
        let mut events = Vec::new();
        let start = Timer::start();
        for m in &metas {
            std::hint::black_box(t.track(m, &mut events));
            events.clear();
        }
        times[3].push(start.ns() / metas.len().max(1) as f64);
        // The same through the batch path the kitchen uses.
        let mut t = FlowTable::new(config)?;
        times[4].push(in_batches(&mut t, &metas));
        // Steady state: a table that already ran the corpus once (its memory in use, slab
        // and index at full size, as in a kitchen that has run for a while), timed on the
        // second pass only.
        times[5].push(in_batches(&mut t, &later));
        drop(t);
        let (ns, _) = run_builder(recs, Some(FlowStage::new(config, on)?), Some(rec_span));
        times[6].push(ns);
    }
    names[3] = "table only (per tracked packet)";
    names[4] = "table only, batches of 256 (same)";
    names[5] = "same, second pass (steady state)";
    names[6] = "parse+flows, second pass (steady)";
    let med: Vec<f64> = times.iter().map(|v| median(v)).collect();
    for (name, m) in names.iter().zip(&med) {
        println!("{name:>32}: {m:8.1} ns/packet (median)");
    }
    println!(
        "{:>32}: {} flows, {} evicted, {} of {} packets have a flow",
        "table",
        flows_seen,
        evicted,
        metas.len(),
        recs.len()
    );
    let stage = med[2] - med[0];
    let steady = med[6] - med[0];
    let off = med[1] - med[0];
    let verdict = |ns: f64| {
        if ns < 100.0 {
            "MET (< 100 ns)"
        } else {
            "NOT MET (< 100 ns)"
        }
    };
    println!(
        "flow tracking in the kitchen's parse path: {stage:.1} ns/packet ({:.1} % of parse); table alone {:.1} ns one by one, {:.1} ns in batches: {}",
        100.0 * stage / med[0],
        med[3],
        med[4],
        verdict(stage)
    );
    println!(
        "the same on a table already full, its memory in use (no first-touch page faults): {steady:.1} ns/packet: {}",
        verdict(steady)
    );
    println!(
        "stage attached, no chef asking: {off:+.1} ns/packet ({:+.2} % of parse)",
        100.0 * off / med[0]
    );
    Ok(())
}

/// This thread's CPU time, ns (`/proc/thread-self/schedstat`, nanosecond resolution), so a
/// loaded machine's waits for a core are not counted.
fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Measures one variant: thread CPU time where the kernel reports it, else wall time.
struct Timer {
    cpu: Option<u64>,
    wall: Instant,
}

impl Timer {
    fn start() -> Self {
        Timer {
            cpu: thread_cpu_ns(),
            wall: Instant::now(),
        }
    }

    /// Nanoseconds since the start.
    fn ns(&self) -> f64 {
        match (self.cpu, thread_cpu_ns()) {
            (Some(a), Some(b)) => b.saturating_sub(a) as f64,
            _ => self.wall.elapsed().as_nanos() as f64,
        }
    }
}
