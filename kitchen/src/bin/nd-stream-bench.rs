//! `nd-stream-bench`: TCP reassembly throughput on one core, in GB/s of stream data, against
//! a memcpy of the same segments into an arena measured in the same run (the floor: the
//! reassembler copies each in-order byte once, into the chunk arena).
//!
//! Synthetic traffic: `--flows` TCP connections, both directions, each `--stream-kib` of
//! payload per direction in `--segment` byte segments, interleaved round-robin across flows
//! like a busy link; a share of adjacent segment pairs swapped (`--reorder-percent`) so the
//! hold buffer is exercised. The output batch is cleared every 256 segments, as the kitchen
//! clears its per-batch arena. Prints the median of `--runs` runs.

use anyhow::{ensure, Result};
use clap::Parser;
use flowtrack::reassembly::{ChunkBatch, Direction, Reassembler, ReassemblyLimits, Segment};
use std::time::Instant;

/// TCP stream reassembly throughput vs memcpy.
#[derive(Parser, Debug)]
#[command(name = "nd-stream-bench", version)]
struct Args {
    /// Concurrent TCP connections (each reassembled in both directions).
    #[arg(long, default_value_t = 256)]
    flows: usize,
    /// Payload bytes per direction of each connection, in KiB.
    #[arg(long, default_value_t = 256)]
    stream_kib: usize,
    /// Payload bytes per segment (1448 = Ethernet MSS with timestamps).
    #[arg(long, default_value_t = 1448)]
    segment: usize,
    /// Percent of adjacent segment pairs delivered swapped (out of order).
    #[arg(long, default_value_t = 0)]
    reorder_percent: u32,
    /// Measured runs; the median is printed.
    #[arg(long, default_value_t = 9)]
    runs: usize,
}

/// One segment of the synthetic trace: which flow and direction, sequence number, and where
/// its payload sits in the shared payload buffer.
struct Seg {
    flow: u64,
    dir: Direction,
    seq: u32,
    from: usize,
    len: usize,
}

/// Builds the interleaved trace (SYNs are implied by the sequence numbers: mid-stream pickup).
fn trace(args: &Args) -> Vec<Seg> {
    let per_dir = args.stream_kib * 1024;
    let segs_per_dir = per_dir.div_ceil(args.segment);
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut out = Vec::with_capacity(args.flows * 2 * segs_per_dir);
    for i in 0..segs_per_dir {
        for f in 0..args.flows {
            for dir in [Direction::FromOriginator, Direction::FromResponder] {
                let from = i * args.segment;
                let len = args.segment.min(per_dir - from);
                // Each stream has its own bytes, so the copy reads memory like a real batch.
                let base = (f * 2 + usize::from(dir == Direction::FromResponder)) * per_dir;
                // Sequence numbers near the wrap for some flows, so unwrapping is exercised.
                let isn = (f as u32).wrapping_mul(0x9E37_79B9);
                out.push(Seg {
                    flow: f as u64,
                    dir,
                    seq: isn.wrapping_add(from as u32),
                    from: base + from,
                    len,
                });
            }
        }
    }
    // Swap a share of segment pairs of the same stream (2 * flows apart in the trace), never
    // the first segment of a stream (it fixes offset 0 on mid-stream pickup).
    let stride = args.flows * 2;
    let mut i = stride;
    while i + stride < out.len() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if (x % 100) < u64::from(args.reorder_percent) {
            out.swap(i, i + stride);
        }
        i += 1;
    }
    out
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(
        args.flows > 0 && args.segment > 0 && args.stream_kib > 0 && args.runs > 0,
        "--flows, --segment, --stream-kib and --runs must be at least 1"
    );
    let per_dir = args.stream_kib * 1024;
    let payload: Vec<u8> = (0..per_dir * args.flows * 2)
        .map(|i| (i * 31 + 7) as u8)
        .collect();
    let segs = trace(&args);
    let total: usize = segs.iter().map(|s| s.len).sum();
    let limits = ReassemblyLimits {
        want: u64::from(u32::MAX),
        flow_window: 256 * 1024,
        total_memory: 64 * 1024 * 1024,
    };
    let mut copy_gbs = Vec::new();
    let mut reasm_gbs = Vec::new();
    let mut delivered = 0;
    let mut out = ChunkBatch::default();
    let mut arena: Vec<u8> = Vec::new();
    for _ in 0..args.runs {
        // Baseline: the one copy into a batch arena, nothing else.
        let t = Instant::now();
        for batch in segs.chunks(256) {
            arena.clear();
            for s in batch {
                arena.extend_from_slice(&payload[s.from..s.from + s.len]);
            }
            std::hint::black_box(&arena);
        }
        copy_gbs.push(total as f64 / t.elapsed().as_secs_f64() / 1e9);

        let mut r = Reassembler::new(limits);
        let t = Instant::now();
        for batch in segs.chunks(256) {
            out.clear();
            for s in batch {
                let seg = Segment {
                    seq: s.seq,
                    syn: false,
                    fin: false,
                    rst: false,
                    payload: &payload[s.from..s.from + s.len],
                    timestamp_ns: 0,
                };
                r.segment(s.flow, s.dir, &seg, &mut out);
            }
            std::hint::black_box(&out);
        }
        out.clear();
        for f in 0..args.flows {
            r.end_flow(f as u64, 0, &mut out);
        }
        reasm_gbs.push(total as f64 / t.elapsed().as_secs_f64() / 1e9);
        delivered = r.stats().delivered_bytes;
        ensure!(r.stats().gaps == 0, "unexpected gaps: {:?}", r.stats());
    }
    ensure!(
        delivered as usize == total,
        "delivered {delivered} of {total} bytes"
    );
    let (c, r) = (median(copy_gbs), median(reasm_gbs));
    println!(
        "flows={} segment={}B stream={}KiB/dir reorder={}% bytes/run={} runs={}",
        args.flows, args.segment, args.stream_kib, args.reorder_percent, total, args.runs
    );
    println!("memcpy baseline    median {c:.2} GB/s");
    println!(
        "reassembly         median {r:.2} GB/s  ({:.0}% of memcpy)",
        r / c * 100.0
    );
    println!(
        "target >= 1 GB/s: {}",
        if r >= 1.0 { "met" } else { "NOT met" }
    );
    Ok(())
}
