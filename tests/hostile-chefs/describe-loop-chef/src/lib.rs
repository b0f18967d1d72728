//! `DescribeLoopChef` (file name; it never gets to say a name): `describe` spins forever.
//!
//! Fires at: load. The kitchen calls `describe` once, right after instantiation, under its
//! init deadline; a kitchen without one would hang at start-up. It must give up on this
//! file, report it, and run the other chefs.

wit_bindgen::generate!({ path: "../../../wit/v0.1", world: "chef" });
include!("../../common.rs");

impl Guest for HostileChef {
    fn describe() -> ChefInfo {
        let mut spins: u64 = 0;
        loop {
            spins = std::hint::black_box(spins.wrapping_add(1));
            if std::hint::black_box(false) {
                break;
            }
        }
        info(
            "DescribeLoopChef",
            &format!("escaped after {spins} spins"),
            Drivers::PACKET,
        )
    }

    fn on_packets(_packets: Vec<Packet>, _arena: Vec<u8>) -> Vec<PacketDumpling> {
        vec![PacketDumpling {
            packet_index: 0,
            payload: "{\"describe_loop_loaded\":true}".to_owned(),
        }]
    }

    fn on_interval(_now_ns: u64, _interval_ns: u64) -> Vec<String> {
        Vec::new()
    }
}
