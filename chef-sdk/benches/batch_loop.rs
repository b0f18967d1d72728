//! How much the SDK's batch loop costs per packet, natively: the `on-packed` glue calling
//! `Chef::on_packet` on a `Packet` view of each packed record (and the `on-packets` records
//! form, which packs each record first), against a bare loop over the same WIT records
//! doing the same work. Prints the median of several rounds and the ratio to the baseline.
//!
//! `cargo bench -p chef-sdk --features testing`

use std::hint::black_box;
use std::time::Instant;

use chef_sdk::testing::{frames, Batch};
use chef_sdk::{Chef, ChefInfo, Dumplings, Packet};

/// Counts packets to port 53: the work both loops do.
#[derive(Default)]
struct Port53 {
    hits: u64,
}

impl Chef for Port53 {
    fn info() -> ChefInfo {
        ChefInfo::new("Port53", "bench")
    }

    fn on_packet(&mut self, packet: &Packet<'_>) -> impl Dumplings {
        self.hits += u64::from(packet.has_port(53));
    }
}

fn batch() -> Batch {
    let mut b = Batch::default();
    for i in 0..256u16 {
        let dport = if i % 4 == 0 { 53 } else { 443 };
        b.push_ethernet(
            u64::from(i),
            &frames::udp4([10, 0, 0, 1], [10, 0, 0, 2], 40000 + i, dport, &[0; 64]),
        );
    }
    b
}

fn median_ns_per_packet(rounds: usize, iters: usize, packets: usize, mut f: impl FnMut()) -> f64 {
    let mut samples: Vec<f64> = (0..rounds)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..iters {
                f();
            }
            t.elapsed().as_nanos() as f64 / (iters * packets) as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn main() {
    let b = batch();
    let n = b.len();
    let (rounds, iters) = (15, 4000);

    let baseline = median_ns_per_packet(rounds, iters, n, || {
        let mut hits = 0u64;
        for p in b.packets() {
            if let Some(chef_sdk::wit::TransportHeader::Udp(u)) = &p.transport {
                hits += u64::from(u.source_port == 53 || u.destination_port == 53);
            }
        }
        black_box(hits);
    });

    let mut chef = Port53::default();
    let headers = b.packed(0..n);
    let sdk = median_ns_per_packet(rounds, iters, n, || {
        black_box(chef_sdk::__private::on_packed(
            &mut chef,
            black_box(&headers),
            b.arena(),
        ));
    });
    let records = median_ns_per_packet(rounds, iters, n, || {
        black_box(chef_sdk::__private::on_packets(
            &mut chef,
            black_box(b.packets()),
            b.arena(),
        ));
    });
    black_box(chef.hits);

    println!("batch of {n} packets, median of {rounds} rounds x {iters} batches");
    println!("baseline (bare loop over WIT records): {baseline:.2} ns/packet");
    println!("chef-sdk on_packed + Chef::on_packet:   {sdk:.2} ns/packet");
    println!("chef-sdk on_packets (records, packed per packet): {records:.2} ns/packet");
    println!("ratio sdk/baseline: {:.2}", sdk / baseline.max(1e-9));
    println!(
        "ratio records/baseline: {:.2}",
        records / baseline.max(1e-9)
    );
}
