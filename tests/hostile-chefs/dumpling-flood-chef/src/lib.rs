//! `DumplingFloodChef`: every `on-packets` call returns [`FLOOD`] (5000) small, valid
//! dumplings, about five times the kitchen's default per-call cap (1024).
//!
//! Fires on: every `on-packets` call. `on-interval` is honest: it reports
//! `{"on_packets_calls": c, "dumplings_returned": r}` since the (last) instantiation, so the
//! tests can check that the kitchen kept at most its cap per call (and say how many it
//! dropped) without knowing the kitchen's batch sizes.

use std::sync::atomic::{AtomicU64, Ordering};

wit_bindgen::generate!({ path: "../../../wit/v0.1", world: "chef" });
include!("../../common.rs");

/// Dumplings per call.
const FLOOD: u32 = 5000;

static CALLS: AtomicU64 = AtomicU64::new(0);
static RETURNED: AtomicU64 = AtomicU64::new(0);

impl Guest for HostileChef {
    fn describe() -> ChefInfo {
        info(
            "DumplingFloodChef",
            "Hostile: 5000 dumplings per batch",
            Drivers::PACKET | Drivers::INTERVAL,
        )
    }

    fn on_packets(packets: Vec<Packet>, _arena: Vec<u8>) -> Vec<PacketDumpling> {
        let n = packets.len().max(1) as u32;
        let call = CALLS.fetch_add(1, Ordering::Relaxed);
        RETURNED.fetch_add(u64::from(FLOOD), Ordering::Relaxed);
        (0..FLOOD)
            .map(|i| PacketDumpling {
                packet_index: i % n,
                payload: format!("{{\"flood\":{i},\"call\":{call}}}"),
            })
            .collect()
    }

    fn on_interval(_now_ns: u64, _interval_ns: u64) -> Vec<String> {
        vec![format!(
            "{{\"on_packets_calls\":{},\"dumplings_returned\":{}}}",
            CALLS.load(Ordering::Relaxed),
            RETURNED.load(Ordering::Relaxed)
        )]
    }
}
