//! `WrongVersionChef`: a well-behaved chef built against `netdumplings:chef@0.3.0`
//! (`tests/hostile-chefs/wit-v0.3.0/chef.wit`, a copy of the frozen `wit/v0.1/chef.wit`
//! with only the package version changed), so it exports
//! `netdumplings:chef/handler@0.3.0` and imports `netdumplings:chef/log@0.3.0`.
//!
//! Fires at: load. The kitchen implements 0.2.x and 0.1.x and must refuse it with a message
//! naming the versions. Were it ever run, it would return a `wrong_version_loaded` dumpling per
//! batch, which the tests assert never appears.

wit_bindgen::generate!({ path: "../wit-v0.3.0", world: "chef" });
include!("../../common.rs");

impl Guest for HostileChef {
    fn describe() -> ChefInfo {
        info(
            "WrongVersionChef",
            "Hostile: built for chef.wit 0.3.0",
            Drivers::PACKET,
        )
    }

    fn on_packets(packets: Vec<Packet>, _arena: Vec<u8>) -> Vec<PacketDumpling> {
        vec![PacketDumpling {
            packet_index: packets.len().saturating_sub(1) as u32,
            payload: "{\"wrong_version_loaded\":true}".to_owned(),
        }]
    }

    fn on_interval(_now_ns: u64, _interval_ns: u64) -> Vec<String> {
        Vec::new()
    }
}
