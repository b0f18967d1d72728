//! `PanicChef`: `on-interval` panics.
//!
//! Fires on: every `on-interval` call (interval driver only; it never receives packets).
//! Built with `panic = "abort"`, so std prints the panic message to the chef's WASI stderr
//! (which the kitchen routes into its log, tagged with the chef) and then traps with
//! `unreachable`. The instance is poisoned and re-instantiated for the next poke.

wit_bindgen::generate!({ path: "../../../wit/v0.1", world: "chef" });
include!("../../common.rs");

/// Text of the panic, so the tests can look for it in the kitchen's log.
const MESSAGE: &str = "PanicChef deliberately panics in on-interval";

impl Guest for HostileChef {
    fn describe() -> ChefInfo {
        info(
            "PanicChef",
            "Hostile: panics on every poke",
            Drivers::INTERVAL,
        )
    }

    fn on_packets(_packets: Vec<Packet>, _arena: Vec<u8>) -> Vec<PacketDumpling> {
        vec![PacketDumpling {
            packet_index: 0,
            payload: "{\"panic_chef_got_packets\":true}".to_owned(),
        }]
    }

    fn on_interval(now_ns: u64, _interval_ns: u64) -> Vec<String> {
        if std::hint::black_box(now_ns) != 0 {
            panic!("{MESSAGE} (now-ns {now_ns})");
        }
        vec!["{\"survived_panic\":true}".to_owned()]
    }
}
