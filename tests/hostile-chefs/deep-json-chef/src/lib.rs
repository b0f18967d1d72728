//! `DeepJsonChef`: every poke returns two payloads, one nested 126 deep (127 with the
//! envelope: the deepest the hub parses) and one nested 127 deep (128 with the envelope).
//!
//! Fires at: every `on-interval`. The tests check that the kitchen sends the first and
//! refuses (and counts as invalid) the second, and that the hub forwards every dumpling
//! the kitchen sent (the kitchen and hub share one depth check).

wit_bindgen::generate!({ path: "../../../wit/v0.1", world: "chef" });
include!("../../common.rs");

fn nested(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

impl Guest for HostileChef {
    fn describe() -> ChefInfo {
        info(
            "DeepJsonChef",
            "Hostile: payloads at and past the wire's nesting limit",
            Drivers::INTERVAL,
        )
    }

    fn on_packets(_packets: Vec<Packet>, _arena: Vec<u8>) -> Vec<PacketDumpling> {
        Vec::new()
    }

    fn on_interval(_now_ns: u64, _interval_ns: u64) -> Vec<String> {
        vec![nested(126), nested(127)]
    }
}
