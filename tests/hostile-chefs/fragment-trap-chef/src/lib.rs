//! `FragmentTrapChef`: `on-packets` panics when it is handed a UDP datagram that the kitchen
//! reassembled from IP fragments (its payload lies past its frame in the arena: the kitchen
//! appends the reassembled bytes after the frame of the completing fragment).
//!
//! Fires on: the first such packet of an `on-packets` call. Its interest is UDP only, so it
//! is never handed the other fragments (they stop at the transport layer): its crash
//! capsule must rebuild them for the replay to hand it the same datagram. The panic text
//! names the datagram exactly (ports, payload length, FNV-1a of the payload bytes), so a
//! test can check that replaying the capsule fails on the very same input. Built with
//! `panic = "abort"`: an `unreachable` trap.

wit_bindgen::generate!({ path: "../../../wit/v0.1", world: "chef" });
include!("../../common.rs");

use netdumplings::chef::types::{NetworkProtocol, TransportHeader, TransportProtocol};

/// Start of the panic text, so the tests can look for it in the kitchen's log.
const MESSAGE: &str = "FragmentTrapChef deliberately panics on a reassembled datagram";

/// FNV-1a over a byte slice.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl Guest for HostileChef {
    fn describe() -> ChefInfo {
        let mut chef = info(
            "FragmentTrapChef",
            "Hostile: panics on a reassembled UDP datagram",
            Drivers::PACKET,
        );
        chef.interest.network = vec![NetworkProtocol::Ipv4, NetworkProtocol::Ipv6];
        chef.interest.transport = vec![TransportProtocol::Udp];
        chef
    }

    fn on_packets(packets: Vec<Packet>, arena: Vec<u8>) -> Vec<PacketDumpling> {
        for p in &packets {
            let frame_end = u64::from(p.frame.offset) + u64::from(p.frame.len);
            let start = p.payload.offset as usize;
            let end = start + p.payload.len as usize;
            let Some(TransportHeader::Udp(udp)) = p.transport else {
                continue;
            };
            if u64::from(p.payload.offset) < frame_end {
                continue;
            }
            let payload = arena.get(start..end).unwrap_or_default();
            panic!(
                "{MESSAGE}: ports {} -> {}, payload {} bytes, fnv {:016x}",
                udp.source_port,
                udp.destination_port,
                payload.len(),
                fnv(payload)
            );
        }
        Vec::new()
    }

    fn on_interval(_now_ns: u64, _interval_ns: u64) -> Vec<String> {
        Vec::new()
    }
}
