//! `InfiniteLoopChef`: `on-packets` never returns.
//!
//! Fires on: the first `on-packets` call (packet driver only; never poked). The kitchen's
//! per-call epoch deadline must interrupt it; the instance is poisoned, re-instantiated
//! with backoff and, since every batch loops again, quarantined. If the loop were ever
//! escaped, the chef would return a `survived_infinite_loop` canary dumpling, which the
//! tests assert never reaches stdout.

wit_bindgen::generate!({ path: "../../../wit/v0.1", world: "chef" });
include!("../../common.rs");

impl Guest for HostileChef {
    fn describe() -> ChefInfo {
        info(
            "InfiniteLoopChef",
            "Hostile: on-packets spins forever",
            Drivers::PACKET,
        )
    }

    fn on_packets(_packets: Vec<Packet>, _arena: Vec<u8>) -> Vec<PacketDumpling> {
        let mut spins: u64 = 0;
        // `black_box(false)` is opaque to the optimiser, so the loop cannot be removed, and
        // it has no host call in it: only the epoch check at the loop header can stop it.
        loop {
            spins = std::hint::black_box(spins.wrapping_add(1));
            if std::hint::black_box(false) {
                break;
            }
        }
        vec![PacketDumpling {
            packet_index: 0,
            payload: format!("{{\"survived_infinite_loop\":{spins}}}"),
        }]
    }

    fn on_interval(_now_ns: u64, _interval_ns: u64) -> Vec<String> {
        Vec::new()
    }
}
