//! `InvalidJsonChef`: every payload it returns is invalid JSON.
//!
//! Fires on: every `on-packets` call (one dumpling per packet, cycling through
//! [`PACKET_PAYLOADS`]) and every `on-interval` call ([`INTERVAL_PAYLOADS`]). None of these
//! is one JSON value, so none may reach stdout. (A lone-surrogate escape such as
//! `"\ud800"` is deliberately absent: RFC 8259's grammar allows it.)

wit_bindgen::generate!({ path: "../../../wit/v0.1", world: "chef" });
include!("../../common.rs");

/// Invalid JSON, one flavour per packet.
const PACKET_PAYLOADS: &[&str] = &[
    "{\"unterminated\": ",
    "{'single': 'quotes'}",
    "NaN",
    "",
    "   ",
    "{\"a\":1} {\"b\":2}",
    "[1,2,]",
    "undefined",
    "\"raw\ncontrol character\"",
    "{\"a\":1}\n{\"smuggled\":\"second line\"}",
];

/// Invalid JSON for pokes.
const INTERVAL_PAYLOADS: &[&str] = &["{\"ok\": tru}", "Infinity"];

impl Guest for HostileChef {
    fn describe() -> ChefInfo {
        info(
            "InvalidJsonChef",
            "Hostile: every payload is invalid JSON",
            Drivers::PACKET | Drivers::INTERVAL,
        )
    }

    fn on_packets(packets: Vec<Packet>, _arena: Vec<u8>) -> Vec<PacketDumpling> {
        (0..packets.len() as u32)
            .map(|i| PacketDumpling {
                packet_index: i,
                payload: PACKET_PAYLOADS[i as usize % PACKET_PAYLOADS.len()].to_owned(),
            })
            .collect()
    }

    fn on_interval(_now_ns: u64, _interval_ns: u64) -> Vec<String> {
        INTERVAL_PAYLOADS.iter().map(|s| (*s).to_owned()).collect()
    }
}
