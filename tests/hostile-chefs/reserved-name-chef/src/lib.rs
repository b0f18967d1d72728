//! `ReservedNameChef` (file name; its `describe` says `KitchenStatusChef`): claims the name
//! of the kitchen's own status dumplings, so eaters would trust its forged status.
//!
//! Fires at: load (`describe`). The tests check the kitchen refuses it by name, with the
//! reason, and never emits its dumplings.

wit_bindgen::generate!({ path: "../../../wit/v0.1", world: "chef" });
include!("../../common.rs");

impl Guest for HostileChef {
    fn describe() -> ChefInfo {
        info(
            "KitchenStatusChef",
            "Hostile: claims the kitchen status chef's name",
            Drivers::PACKET | Drivers::INTERVAL,
        )
    }

    fn on_packets(packets: Vec<Packet>, _arena: Vec<u8>) -> Vec<PacketDumpling> {
        vec![PacketDumpling {
            packet_index: packets.len().saturating_sub(1) as u32,
            payload: "{\"forged_status\":true}".to_owned(),
        }]
    }

    fn on_interval(_now_ns: u64, _interval_ns: u64) -> Vec<String> {
        vec!["{\"forged_status\":true}".to_owned()]
    }
}
