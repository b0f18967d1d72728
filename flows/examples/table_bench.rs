//! `cargo run --release --workspace --example table_bench -- [--rounds N]`: the flow table
//! alone on synthetic high-cardinality and repeating traffic, for quick iteration on the
//! table's layout without building the kitchen (`nd-flow-bench` gives the figures on the
//! real corpora and parse path).
//!
//! * `hc`: the high-cardinality corpus's 5-tuples (`kitchen/src/high_cardinality.rs`):
//!   1 M one-packet IPv4 flows (TCP and UDP alternating) with a two-packet UDP exchange
//!   every 10 flows, 8 µs apart: once the table is full, every packet is a new flow and an
//!   eviction.
//! * `few`: 4096 flows cycled over and over (every packet finds its flow; the table fits the
//!   caches).
//!
//! Times are this thread's CPU time (`/proc/thread-self/schedstat`); medians over the rounds.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use flowtrack::table::{FlowConfig, FlowTable, PacketMeta, Transport};

fn meta(ts: u64, t: Transport, s: [u8; 4], d: [u8; 4], sp: u16, dp: u16, fl: u8) -> PacketMeta {
    PacketMeta {
        ts_ns: ts,
        transport: t,
        src: IpAddr::V4(Ipv4Addr::from(s)),
        dst: IpAddr::V4(Ipv4Addr::from(d)),
        src_port: sp,
        dst_port: dp,
        tcp_flags: fl,
        bytes: 80,
    }
}

fn hc() -> Vec<PacketMeta> {
    let mut v = Vec::with_capacity(1_200_000);
    let mut ts = 1_700_000_000_000_000_000u64;
    for i in 0..1_000_000u32 {
        let src = (0x0a00_0000 | (i & 0x00ff_ffff)).to_be_bytes();
        let dst = [192, 0, 2, i as u8];
        let sport = 1024 + (i % 60_000) as u16;
        v.push(if i % 2 == 0 {
            meta(ts, Transport::Tcp, src, dst, sport, 443, 0x18)
        } else {
            meta(ts, Transport::Udp, src, dst, sport, 4433, 0)
        });
        ts += 8_000;
        if i % 10 == 0 {
            let c = (0x0b00_0000 | (i / 10)).to_be_bytes();
            let port = 1024 + (i / 10 % 60_000) as u16;
            v.push(meta(ts, Transport::Udp, c, [10, 53, 53, 53], port, 53, 0));
            ts += 8_000;
            v.push(meta(ts, Transport::Udp, [10, 53, 53, 53], c, 53, port, 0));
            ts += 8_000;
        }
        if i % 20 == 0 {
            ts += 8_000;
        }
    }
    v
}

fn few() -> Vec<PacketMeta> {
    let mut v = Vec::with_capacity(1_000_000);
    let mut ts = 1_700_000_000_000_000_000u64;
    for n in 0..1_000_000u32 {
        let i = n % 4096;
        let src = (0x0a00_0000 | i).to_be_bytes();
        v.push(meta(
            ts,
            Transport::Tcp,
            src,
            [192, 0, 2, 1],
            40_000,
            443,
            0x10,
        ));
        ts += 1_000;
    }
    v
}

fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn time(f: impl FnOnce()) -> f64 {
    let (c, w) = (thread_cpu_ns(), Instant::now());
    f();
    match (c, thread_cpu_ns()) {
        (Some(a), Some(b)) => b.saturating_sub(a) as f64,
        _ => w.elapsed().as_nanos() as f64,
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mut rounds = 7usize;
    let mut size = flowtrack::table::DEFAULT_MAX_FLOWS;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--rounds" {
            rounds = args.next().and_then(|r| r.parse().ok()).unwrap_or(7).max(1);
        } else if a == "--flow-table-size" {
            size = args.next().and_then(|r| r.parse().ok()).unwrap_or(size);
        }
    }
    for (name, metas) in [("hc", hc()), ("few", few())] {
        let mut first = Vec::new();
        let mut second = Vec::new();
        let later: Vec<PacketMeta> = metas
            .iter()
            .map(|m| PacketMeta {
                ts_ns: m.ts_ns + 100_000_000_000,
                ..*m
            })
            .collect();
        for _ in 0..rounds {
            let mut t = FlowTable::new(FlowConfig {
                max_flows: size,
                ..FlowConfig::default()
            })
            .expect("a valid --flow-table-size");
            let (mut refs, mut events) = (Vec::new(), Vec::new());
            let mut run = |t: &mut FlowTable, m: &[PacketMeta]| {
                time(|| {
                    for chunk in m.chunks(256) {
                        refs.clear();
                        t.track_batch(chunk, &mut refs, &mut events);
                        std::hint::black_box(&refs);
                        events.clear();
                    }
                }) / m.len() as f64
            };
            first.push(run(&mut t, &metas));
            second.push(run(&mut t, &later));
        }
        println!(
            "{name:>4}: {:6.1} ns/packet first pass, {:6.1} steady state ({} packets, median of {rounds})",
            median(&mut first),
            median(&mut second),
            metas.len()
        );
    }
}
