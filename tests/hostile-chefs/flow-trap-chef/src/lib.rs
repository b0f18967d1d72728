//! `FlowTrapChef` (chef API 0.2): `on-flow-events` panics when a TCP connection ends.
//!
//! Fires on: `on-flow-events`, for a call holding an `ended` event of a TCP flow (it asks
//! for flow events only; interval driver, so it gets no packets). Of several in one call it
//! picks the one with the lowest (originator port, responder port), and the panic message
//! gives that flow's summary (ports, packets and bytes each way, TCP flags, end reason), so
//! a test can check that replaying the crash capsule produces the very same summary. Built
//! with `panic = "abort"`: an `unreachable` trap.

wit_bindgen::generate!({ path: "../../../wit", world: "chef" });
include!("../../common_v02.rs");

use netdumplings::chef::types::TransportProtocol;

/// Start of the panic text, so the tests can look for it in the kitchen's log.
const MESSAGE: &str = "FlowTrapChef deliberately panics on the end of a TCP connection";

impl Guest for HostileChef {
    fn describe() -> ChefInfo {
        info_v02(
            "FlowTrapChef",
            "Hostile: panics when a TCP connection ends",
            true,
            0,
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

    fn on_flow_events(events: Vec<FlowEvent>) -> Vec<PacketDumpling> {
        let ended = events
            .iter()
            .filter_map(|e| match e {
                FlowEvent::Ended(s) if s.key.transport == TransportProtocol::Tcp => Some(s),
                _ => None,
            })
            .min_by_key(|s| (s.key.originator_port, s.key.responder_port));
        if let Some(s) = ended {
            panic!(
                "{MESSAGE}: ports {} -> {}, packets {}/{}, bytes {}/{}, flags {:?}, end {:?}",
                s.key.originator_port,
                s.key.responder_port,
                s.packets_from_originator,
                s.packets_from_responder,
                s.bytes_from_originator,
                s.bytes_from_responder,
                s.tcp_flags_seen,
                s.end_reason
            );
        }
        Vec::new()
    }

    fn on_stream(_chunks: Vec<StreamChunk>, _arena: Vec<u8>) -> Vec<PacketDumpling> {
        Vec::new()
    }
}
