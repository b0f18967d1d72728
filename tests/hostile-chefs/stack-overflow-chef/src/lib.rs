//! `StackOverflowChef`: `on-packets` recurses without bound, with a 256-byte local array
//! in every frame so both the wasm call stack and the shadow stack in linear memory grow.
//!
//! Fires on: every `on-packets` call (packet driver only). Whichever stack runs out first,
//! the result must be a trap the kitchen survives and reports; a `survived_recursion`
//! canary dumpling would mean the recursion was somehow bounded.

wit_bindgen::generate!({ path: "../../../wit/v0.1", world: "chef" });
include!("../../common.rs");

/// One level of the recursion; not a tail call (the result is used after the call).
#[inline(never)]
fn dive(depth: u64, parent: &[u8; 256]) -> u64 {
    let mut frame = [0u8; 256];
    frame[(depth % 256) as usize] = parent[((depth + 1) % 256) as usize].wrapping_add(1);
    let frame = std::hint::black_box(frame);
    if std::hint::black_box(depth) == u64::MAX {
        return frame[0] as u64;
    }
    dive(depth + 1, &frame).wrapping_add(frame[(depth % 7) as usize] as u64)
}

impl Guest for HostileChef {
    fn describe() -> ChefInfo {
        info(
            "StackOverflowChef",
            "Hostile: unbounded recursion",
            Drivers::PACKET,
        )
    }

    fn on_packets(_packets: Vec<Packet>, _arena: Vec<u8>) -> Vec<PacketDumpling> {
        let depth = dive(0, &[0u8; 256]);
        vec![PacketDumpling {
            packet_index: 0,
            payload: format!("{{\"survived_recursion\":{depth}}}"),
        }]
    }

    fn on_interval(_now_ns: u64, _interval_ns: u64) -> Vec<String> {
        Vec::new()
    }
}
