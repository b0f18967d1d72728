//! Replay throughput of the kitchen against a minimal reader, in the same run.
//!
//! Run with:
//! ```text
//! cargo run --release --bin nd-kitchen-bench -- [FILE] [--rounds N]
//! ```
//! Without FILE (or with `--build-corpus`), it first writes `target/bench/big.pcap`: every
//! Ethernet frame of at most 1518 bytes from the legacy-pcap and pcapng captures in
//! `$ND_SHARED_PCAPS` (default `<workspace>/../shared/pcaps`), concatenated and repeated
//! until it holds at least `--min-packets` (default 1 000 000) packets.
//!
//! Variants, interleaved round-robin (load drift hits all of them equally), medians
//! printed with ratios:
//! * `minimal`: the same `capture::FileReader` + etherparse `SlicedPacket` + a protocol
//!   counter (the baseline of `shared/docs/packet-notes.md` §2);
//! * `kitchen/0 chefs`: reader + WIT-record parsing + batching, no chef;
//! * `kitchen/noop`: plus one no-op chef interested in every packet;
//! * `kitchen/samples`: plus the three built-in sample chefs (ARP, DNS, packet count);
//! * `samples/1 thread`: the same, with reading, parsing and chefs on one thread (what
//!   the kitchen costs in CPU; `nd-sniff -r` reads and parses on a second thread).
//!
//! The `kitchen/*` variants run exactly what `nd-sniff -r` runs (`kitchen::replay`: a
//! reading thread and the chefs' thread). Packets/s are by wall clock, the figure a user
//! sees; CPU time per packet (all threads) is printed beside it. Noisy shared machines:
//! medians of interleaved rounds.
//! * with `--compare-chefs DIR`, `samples@DIR`: the same three chefs, loaded instead from
//!   the `arp_chef.wasm`, `dns_lookup_chef.wasm` and `packet_count_chef.wasm` in DIR
//!   (e.g. an older build), to compare two chef builds in one run.
//!
//! Targets (issue #2): samples ≥ 50 % of minimal's packets/s; per-chef overhead below
//! 150 ns/packet amortized.

#[path = "../fixtures_build.rs"]
mod fixtures_build;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use capture::FileReader;
use etherparse::{NetSlice, SlicedPacket, TransportSlice};

use kitchen::builtin::BUILTIN_CHEFS;
use kitchen::chef_host::{CacheSetting, ChefHost, ChefLimits, ChefSource, LoadedChef};
use kitchen::dispatch::{
    ChefSlot, ClockMode, Dispatcher, DumplingSink, InterestMatcher, SinkError,
};
use kitchen::replay::{replay, NoHooks, ReplayEnd, ReplayOptions};

struct Args {
    file: Option<PathBuf>,
    rounds: usize,
    min_packets: u64,
    build_corpus: bool,
    compare_chefs: Option<PathBuf>,
    /// Run only the variant with this name (for a profiler); no ratios then.
    only: Option<String>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut a = Args {
        file: None,
        rounds: 5,
        min_packets: 1_000_000,
        build_corpus: false,
        compare_chefs: None,
        only: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--rounds" => a.rounds = it.next().context("--rounds N")?.parse()?,
            "--min-packets" => a.min_packets = it.next().context("--min-packets N")?.parse()?,
            "--build-corpus" => a.build_corpus = true,
            "--only" => a.only = Some(it.next().context("--only VARIANT")?),
            "--compare-chefs" => {
                a.compare_chefs = Some(PathBuf::from(it.next().context("--compare-chefs DIR")?))
            }
            "--help" | "-h" => {
                println!("usage: nd-kitchen-bench [FILE] [--rounds N] [--min-packets N] [--build-corpus] [--compare-chefs DIR] [--only VARIANT]");
                std::process::exit(0);
            }
            f if !f.starts_with('-') => a.file = Some(PathBuf::from(f)),
            other => bail!("unknown argument {other}"),
        }
    }
    if a.rounds == 0 {
        bail!("--rounds must be > 0");
    }
    Ok(a)
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let root = fixtures_build::workspace_root();
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
    let fixtures = fixtures_build::build_fixtures().map_err(anyhow::Error::msg)?;
    let noop_wasm = std::fs::read(fixtures.join("noop_chef.wasm")).context("noop chef")?;
    let mut host = ChefHost::new(ChefLimits::default(), CacheSetting::Default)?;
    host.set_deterministic(true); // as `nd-sniff -r` does
    if BUILTIN_CHEFS.is_empty() {
        bail!("no built-in chefs embedded (chefs/ not built); the sample-chef variant needs them");
    }

    let n_samples = samples(&host)?.len();
    if n_samples != 3 {
        eprintln!("warning: only {n_samples} of the 3 sample chefs are built in; measuring those");
    }
    let packets = count_packets(&file)?;
    println!(
        "file: {} ({} packets, {:.1} MB), {} rounds",
        file.display(),
        packets,
        std::fs::metadata(&file)?.len() as f64 / 1e6,
        args.rounds
    );

    let compare: Option<Vec<(String, Vec<u8>)>> = match &args.compare_chefs {
        Some(dir) => {
            let mut v = Vec::new();
            for f in [
                "arp_chef.wasm",
                "dns_lookup_chef.wasm",
                "packet_count_chef.wasm",
            ] {
                let path = dir.join(f);
                let bytes =
                    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
                v.push((f.to_owned(), bytes));
            }
            Some(v)
        }
        None => None,
    };
    let mut variants = vec![
        "minimal",
        "kitchen/0 chefs",
        "kitchen/noop",
        "kitchen/samples",
        "samples/1 thread",
    ];
    if compare.is_some() {
        variants.push("samples@DIR");
    }
    let mut pps: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    let mut wall: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    let mut chef_ns: Vec<Vec<(String, f64)>> = Vec::new();
    // One warm-up pass (page cache, compiled-chef cache) before the timed rounds.
    minimal(&file)?;
    for round in 0..args.rounds {
        for (v, name) in variants.iter().enumerate() {
            if args.only.as_deref().is_some_and(|o| o != *name) {
                continue;
            }
            let (n, elapsed, cpu, per_chef) = match v {
                0 => {
                    let t = Instant::now();
                    let c = cpu_ns();
                    let n = minimal(&file)?;
                    (n, t.elapsed(), cpu_since(c), Vec::new())
                }
                1 => kitchen_run(&file, Vec::new(), Threads::Two)?,
                2 => kitchen_run(
                    &file,
                    vec![host.load(ChefSource::File("noop_chef.wasm".into()), &noop_wasm)?],
                    Threads::Two,
                )?,
                3 => kitchen_run(&file, samples(&host)?, Threads::Two)?,
                4 => kitchen_run(&file, samples(&host)?, Threads::One)?,
                _ => {
                    let mut chefs = Vec::new();
                    for (f, bytes) in compare.iter().flatten() {
                        chefs.push(host.load(ChefSource::File(f.into()), bytes)?);
                    }
                    kitchen_run(&file, chefs, Threads::Two)?
                }
            };
            let wall_rate = n as f64 / elapsed.as_secs_f64();
            let cpu_rate = cpu.map_or(wall_rate, |c| n as f64 / c.as_secs_f64());
            eprintln!(
                "round {round} {name:>16}: {wall_rate:>10.0} packets/s  ({cpu_rate:>10.0} packets/CPU-s)"
            );
            pps[v].push(wall_rate);
            wall[v].push(cpu_rate);
            if v == 3 {
                chef_ns.push(per_chef);
            }
        }
    }

    if args.only.is_some() {
        return Ok(());
    }
    let med: Vec<f64> = pps.iter().map(|v| median(v)).collect();
    let med_cpu: Vec<f64> = wall.iter().map(|v| median(v)).collect();
    println!(
        "\nmedian packets/s by wall clock (ratio to minimal); CPU time per packet, all threads:"
    );
    for (i, name) in variants.iter().enumerate() {
        println!(
            "  {name:>16}: {:>12.0}  ({:>5.1} %)   CPU {:>6.1} ns/packet  ({:>5.1} % of minimal's packets/CPU-s)",
            med[i],
            100.0 * med[i] / med[0],
            1e9 / med_cpu[i],
            100.0 * med_cpu[i] / med_cpu[0]
        );
    }
    // Per-chef overhead is CPU spent (all threads), the cost a chef adds wherever it runs.
    let ns = |rate: f64| 1e9 / rate;
    let noop_overhead = ns(med_cpu[2]) - ns(med_cpu[1]);
    let samples_overhead = ns(med_cpu[3]) - ns(med_cpu[1]);
    println!("\nCPU per packet (ns, all threads, from the medians):");
    println!("  minimal reader:              {:>7.1}", ns(med_cpu[0]));
    println!("  kitchen, no chefs:           {:>7.1}", ns(med_cpu[1]));
    println!(
        "  + one no-op chef:            {:>7.1}  (chef overhead {noop_overhead:.1})",
        ns(med_cpu[2])
    );
    println!(
        "  + {n_samples} sample chef(s):        {:>7.1}  (chef overhead {samples_overhead:.1}, {:.1} per chef)",
        ns(med_cpu[3]),
        samples_overhead / n_samples as f64
    );
    println!(
        "  the same on one thread:      {:>7.1}  (the cost of handing steps between threads: {:.1})",
        ns(med_cpu[4]),
        ns(med_cpu[3]) - ns(med_cpu[4])
    );
    if let Some(dir) = &args.compare_chefs {
        println!(
            "  samples@DIR:                 {:>7.1}  (chef overhead {:.1}; DIR = {})",
            ns(med_cpu[5]),
            ns(med_cpu[5]) - ns(med_cpu[1]),
            dir.display()
        );
    }
    if let Some(last) = chef_ns.last() {
        println!("\ntime inside each sample chef, last round (ns per packet read):");
        for (name, v) in last {
            println!("  {name:>16}: {v:>7.1}");
        }
    }
    let ratio = med[3] / med[0];
    println!(
        "\ntarget samples >= 50 % of minimal's packets/s: {} ({:.1} %; one thread {:.1} %); per-chef overhead < 150 ns: {} (noop {:.1}, samples {:.1}/chef)",
        if ratio >= 0.5 { "MET" } else { "NOT MET" },
        100.0 * ratio,
        100.0 * med[4] / med[0],
        if noop_overhead < 150.0 && samples_overhead / (n_samples as f64) < 150.0 {
            "MET"
        } else {
            "NOT MET"
        },
        noop_overhead,
        samples_overhead / n_samples as f64
    );
    Ok(())
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

/// Counts dumplings, keeps nothing (the bench measures the kitchen, not stdout).
struct Discard(u64);

impl DumplingSink for Discard {
    fn send(&mut self, _chef: &str, json: String) -> Result<(), SinkError> {
        self.0 += json.len() as u64;
        Ok(())
    }
}

/// Packets, wall time, thread CPU time, and (chef name, ns in chef per packet read).
type RunResult = (u64, Duration, Option<Duration>, Vec<(String, f64)>);

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
    /// `nd-sniff -r`: `kitchen::replay`, reading + parsing on a second thread.
    Two,
    /// Everything on the calling thread (`Dispatcher::push`).
    One,
}

fn kitchen_run(file: &Path, chefs: Vec<LoadedChef>, threads: Threads) -> anyhow::Result<RunResult> {
    let slots = chefs
        .into_iter()
        .map(|chef| ChefSlot {
            matcher: InterestMatcher::new(&chef.description().interest),
            qualified_name: chef.name().to_owned(),
            chef,
        })
        .collect();
    let mut d = Dispatcher::new(
        "bench",
        slots,
        Duration::from_secs(5),
        ClockMode::Replay,
        Box::new(Discard(0)),
    );
    let t = Instant::now();
    let c = cpu_ns();
    let mut reader = FileReader::open(file)?;
    match threads {
        Threads::Two => {
            let options = ReplayOptions {
                filter: None,
                stop: Arc::new(AtomicBool::new(false)),
                progress: None,
            };
            let (end, _) = replay(reader, &mut d, &mut NoHooks, options)?;
            if !matches!(end, ReplayEnd::Done) {
                bail!("the replay ended early: {end:?}");
            }
        }
        Threads::One => {
            while let Some(rec) = reader.next_packet()? {
                d.push(&rec)?;
            }
        }
    }
    d.finish()?;
    let elapsed = t.elapsed();
    let cpu = cpu_since(c);
    let n = d.stats().packets;
    let per_chef = d
        .chefs()
        .iter()
        .map(|s| {
            (
                s.chef.name().to_owned(),
                s.chef.stats.busy_ns as f64 / n.max(1) as f64,
            )
        })
        .collect();
    Ok((n, elapsed, cpu, per_chef))
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

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
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
    for f in &files {
        let Ok(mut r) = FileReader::open(f) else {
            continue;
        };
        while let Ok(Some(rec)) = r.next_packet() {
            if rec.link_type == 1 && rec.data.len() <= 1518 {
                frames.push((rec.timestamp_ns, rec.data.to_vec(), rec.original_len));
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
    // Global header: magic, v2.4, thiszone, sigfigs, snaplen 65535, DLT 1.
    w.write_all(&0xa1b2_c3d4u32.to_le_bytes())?;
    w.write_all(&2u16.to_le_bytes())?;
    w.write_all(&4u16.to_le_bytes())?;
    w.write_all(&[0u8; 8])?;
    w.write_all(&65535u32.to_le_bytes())?;
    w.write_all(&1u32.to_le_bytes())?;
    let mut written = 0u64;
    for _ in 0..repeats {
        for (ts, data, orig) in &frames {
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
