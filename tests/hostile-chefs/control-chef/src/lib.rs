//! `ControlChef`: *not* hostile. A well-behaved chef on the raw ABI that the tests stage
//! next to every hostile chef (and in the baseline), so "the good chefs' output is
//! unchanged" always compares a chef that reads the arena and keeps state, whatever
//! built-in chefs the kitchen ships.
//!
//! `on-packets`: one dumpling per 8th packet of the batch with its length, time and a
//! checksum of its payload bytes (read from the arena). `on-interval`: running totals since
//! instantiation (so a restart, which the kitchen must never do to this chef, would show).

use std::sync::atomic::{AtomicU64, Ordering};

wit_bindgen::generate!({ path: "../../../wit/v0.1", world: "chef" });
include!("../../common.rs");

static PACKETS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);
static CHECKSUM: AtomicU64 = AtomicU64::new(0);

/// FNV-1a over a byte slice.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Guest for HostileChef {
    fn describe() -> ChefInfo {
        info(
            "ControlChef",
            "Control: well-behaved packet and interval dumplings",
            Drivers::PACKET | Drivers::INTERVAL,
        )
    }

    fn on_packets(packets: Vec<Packet>, arena: Vec<u8>) -> Vec<PacketDumpling> {
        let mut out = Vec::new();
        for (i, p) in packets.iter().enumerate() {
            let start = p.payload.offset as usize;
            let end = start + p.payload.len as usize;
            let payload = arena.get(start..end).unwrap_or(&[]);
            let sum = fnv(payload);
            PACKETS.fetch_add(1, Ordering::Relaxed);
            BYTES.fetch_add(u64::from(p.captured_len), Ordering::Relaxed);
            CHECKSUM.fetch_xor(sum, Ordering::Relaxed);
            if i % 8 == 0 {
                out.push(PacketDumpling {
                    packet_index: i as u32,
                    payload: format!(
                        "{{\"ts\":{},\"len\":{},\"payload_len\":{},\"payload_fnv\":\"{sum:016x}\"}}",
                        p.timestamp_ns,
                        p.captured_len,
                        p.payload.len
                    ),
                });
            }
        }
        out
    }

    fn on_interval(now_ns: u64, interval_ns: u64) -> Vec<String> {
        vec![format!(
            "{{\"now\":{now_ns},\"interval\":{interval_ns},\"packets\":{},\"bytes\":{},\"checksum\":\"{:016x}\"}}",
            PACKETS.load(Ordering::Relaxed),
            BYTES.load(Ordering::Relaxed),
            CHECKSUM.load(Ordering::Relaxed)
        )]
    }
}
