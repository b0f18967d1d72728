//! `BadNameChef` (file name; its `describe` says `Bad Name Chef!`): a well-behaved chef
//! whose name breaks the WIT rule (letters, digits, `_` and `-` only).
//!
//! Fires at: load (`describe`). The kitchen must refuse it with a message naming the bad
//! name. Were it ever run, it would return a `bad_name_loaded` dumpling per batch, which
//! the tests assert never appears (under any chef name).

wit_bindgen::generate!({ path: "../../../wit/v0.1", world: "chef" });
include!("../../common.rs");

/// The name `describe` returns.
const NAME: &str = "Bad Name Chef!";

impl Guest for HostileChef {
    fn describe() -> ChefInfo {
        info(NAME, "Hostile: an invalid chef name", Drivers::PACKET)
    }

    fn on_packets(packets: Vec<Packet>, _arena: Vec<u8>) -> Vec<PacketDumpling> {
        vec![PacketDumpling {
            packet_index: packets.len().saturating_sub(1) as u32,
            payload: "{\"bad_name_loaded\":true}".to_owned(),
        }]
    }

    fn on_interval(_now_ns: u64, _interval_ns: u64) -> Vec<String> {
        Vec::new()
    }
}
