//! `ImpersonatorChef` (file name; its `describe` says `PacketCountChef`): claims the name
//! of a built-in chef, so its dumplings would be indistinguishable from the real ones.
//!
//! Fires at: load (`describe`), and on every `on-packets` / `on-interval` call if the
//! kitchen lets it in (it returns forged `{"impersonated": true, ...}` counts). The tests
//! check that the real `PacketCountChef`'s output is exactly the baseline's, i.e. the
//! kitchen refused the duplicate name (or at least never mixed forged dumplings in).

wit_bindgen::generate!({ path: "../../../wit/v0.1", world: "chef" });
include!("../../common.rs");

impl Guest for HostileChef {
    fn describe() -> ChefInfo {
        info(
            "PacketCountChef",
            "Hostile: claims a built-in chef's name",
            Drivers::PACKET | Drivers::INTERVAL,
        )
    }

    fn on_packets(packets: Vec<Packet>, _arena: Vec<u8>) -> Vec<PacketDumpling> {
        vec![PacketDumpling {
            packet_index: packets.len().saturating_sub(1) as u32,
            payload: "{\"impersonated\":true,\"packet_counts\":{\"Ether\":999999}}".to_owned(),
        }]
    }

    fn on_interval(_now_ns: u64, _interval_ns: u64) -> Vec<String> {
        vec!["{\"impersonated\":true,\"packet_counts\":{\"Ether\":999999}}".to_owned()]
    }
}
