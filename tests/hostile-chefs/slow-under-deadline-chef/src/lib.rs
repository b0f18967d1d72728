//! `SlowUnderDeadlineChef`: slow but legal. Each `on-packets` call busy-waits
//! [`SPIN_MS`] (20 ms), a tenth of the 200 ms deadline the tests pass with
//! `--chef-deadline-ms 200`.
//!
//! Fires on: every `on-packets` call. It must never be stopped: it returns one dumpling per
//! batch (`{"batch_packets": n, "spun_ms": m}`), and `on-interval` reports the running
//! totals (`{"packets_seen": total, "calls": calls}`). The tests check that the final total
//! equals the number of packets in the capture, which proves no batch was lost and the
//! instance was never restarted (a restart would lose the counters).

use std::sync::atomic::{AtomicU64, Ordering};

wit_bindgen::generate!({ path: "../../../wit/v0.1", world: "chef" });
include!("../../common.rs");

/// Busy-wait per `on-packets` call, in milliseconds.
const SPIN_MS: u64 = 20;

static PACKETS_SEEN: AtomicU64 = AtomicU64::new(0);
static CALLS: AtomicU64 = AtomicU64::new(0);

impl Guest for HostileChef {
    fn describe() -> ChefInfo {
        info(
            "SlowUnderDeadlineChef",
            "Hostile: spins 20 ms per batch (under a 200 ms deadline)",
            Drivers::PACKET | Drivers::INTERVAL,
        )
    }

    fn on_packets(packets: Vec<Packet>, _arena: Vec<u8>) -> Vec<PacketDumpling> {
        let spun = spin_ms(SPIN_MS);
        PACKETS_SEEN.fetch_add(packets.len() as u64, Ordering::Relaxed);
        CALLS.fetch_add(1, Ordering::Relaxed);
        let last = packets.len().saturating_sub(1) as u32;
        vec![PacketDumpling {
            packet_index: last,
            payload: format!("{{\"batch_packets\":{},\"spun_ms\":{spun}}}", packets.len()),
        }]
    }

    fn on_interval(_now_ns: u64, _interval_ns: u64) -> Vec<String> {
        vec![format!(
            "{{\"packets_seen\":{},\"calls\":{}}}",
            PACKETS_SEEN.load(Ordering::Relaxed),
            CALLS.load(Ordering::Relaxed)
        )]
    }
}
