//! `StreamTrapChef` (chef API 0.2): `on-stream` panics on the first chunk of a call whose
//! bytes hold an HTTP/1.x request line.
//!
//! Fires on: `on-stream`, for a chunk containing `HTTP/1.` (it asks for the first 64 KiB of
//! each direction of every TCP connection; interval driver only, so it gets no packets).
//! The panic message names the chunk (direction, stream offset, gap before, length, `last`
//! and an FNV-1a hash of its bytes), so a test can check that replaying the crash capsule
//! hands the chef the very same chunk. Built with `panic = "abort"`: an `unreachable` trap.

wit_bindgen::generate!({ path: "../../../wit", world: "chef" });
include!("../../common_v02.rs");

/// Start of the panic text, so the tests can look for it in the kitchen's log.
const MESSAGE: &str = "StreamTrapChef deliberately panics on an HTTP request chunk";

/// 64-bit FNV-1a of `data`.
fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl Guest for HostileChef {
    fn describe() -> ChefInfo {
        info_v02(
            "StreamTrapChef",
            "Hostile: panics on a stream chunk holding an HTTP request",
            false,
            64 * 1024,
        )
    }

    fn on_packets(_packets: Vec<Packet>, _arena: Vec<u8>) -> Vec<PacketDumpling> {
        Vec::new()
    }

    fn on_packed(_headers: Vec<u8>, _arena: Vec<u8>) -> Vec<PacketDumpling> {
        Vec::new()
    }

    fn on_interval(_now_ns: u64, _interval_ns: u64) -> Vec<String> {
        Vec::new()
    }

    fn on_flow_events(_events: Vec<FlowEvent>) -> Vec<PacketDumpling> {
        Vec::new()
    }

    fn on_stream(chunks: Vec<StreamChunk>, arena: Vec<u8>) -> Vec<PacketDumpling> {
        for c in &chunks {
            let start = c.data.offset as usize;
            let data = arena.get(start..start + c.data.len as usize).unwrap_or(&[]);
            if data.windows(7).any(|w| w == b"HTTP/1.") {
                panic!(
                    "{MESSAGE}: {:?} offset {} gap {} len {} last {} fnv {:016x}",
                    c.flow.direction,
                    c.offset,
                    c.gap_before,
                    data.len(),
                    c.last,
                    fnv1a(data)
                );
            }
        }
        Vec::new()
    }
}
