//! `HugeOutputChef`: every `on-packets` call returns one dumpling whose payload is a valid
//! JSON string of [`HUGE_BYTES`] (4 MiB), four times the kitchen's per-dumpling cap (the
//! hub's 1 MiB message less room for the envelope).
//!
//! Fires on: every `on-packets` call (packet driver only). The kitchen must drop the
//! payload (it is valid JSON: only its size is wrong), report it, and stay up; no dumpling
//! from this chef may reach stdout larger than the cap.

wit_bindgen::generate!({ path: "../../../wit/v0.1", world: "chef" });
include!("../../common.rs");

/// Payload size, in bytes (including the two quotes).
const HUGE_BYTES: usize = 4 << 20;

impl Guest for HostileChef {
    fn describe() -> ChefInfo {
        info(
            "HugeOutputChef",
            "Hostile: one 4 MiB dumpling per batch",
            Drivers::PACKET,
        )
    }

    fn on_packets(packets: Vec<Packet>, _arena: Vec<u8>) -> Vec<PacketDumpling> {
        let mut payload = String::with_capacity(HUGE_BYTES);
        payload.push('"');
        payload.extend(std::iter::repeat_n('x', HUGE_BYTES - 2));
        payload.push('"');
        vec![PacketDumpling {
            packet_index: packets.len().saturating_sub(1) as u32,
            payload,
        }]
    }

    fn on_interval(_now_ns: u64, _interval_ns: u64) -> Vec<String> {
        Vec::new()
    }
}
