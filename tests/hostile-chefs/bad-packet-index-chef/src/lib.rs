//! `BadPacketIndexChef`: returns `packet-dumpling`s whose `packet-index` is outside the
//! batch (`u32::MAX`, and exactly the batch length), each with a valid JSON payload.
//!
//! Fires on: every `on-packets` call. The kitchen uses the index to look up the packet's
//! time; a kitchen that indexed without checking would panic. It must survive, and no
//! dumpling with a made-up time may reach stdout.

wit_bindgen::generate!({ path: "../../../wit/v0.1", world: "chef" });
include!("../../common.rs");

impl Guest for HostileChef {
    fn describe() -> ChefInfo {
        info(
            "BadPacketIndexChef",
            "Hostile: packet indexes outside the batch",
            Drivers::PACKET,
        )
    }

    fn on_packets(packets: Vec<Packet>, _arena: Vec<u8>) -> Vec<PacketDumpling> {
        vec![
            PacketDumpling {
                packet_index: u32::MAX,
                payload: "{\"bad_index\":\"u32::MAX\"}".to_owned(),
            },
            PacketDumpling {
                packet_index: packets.len() as u32,
                payload: "{\"bad_index\":\"batch length\"}".to_owned(),
            },
        ]
    }

    fn on_interval(_now_ns: u64, _interval_ns: u64) -> Vec<String> {
        Vec::new()
    }
}
