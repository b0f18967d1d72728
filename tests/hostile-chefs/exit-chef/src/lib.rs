//! `ExitChef`: `on-packets` calls `std::process::exit(0)`, i.e. `wasi:cli/exit.exit`.
//!
//! Fires on: every `on-packets` call (packet driver only). The host's `exit` must end the
//! *chef's call* (wasmtime-wasi turns it into an `I32Exit` error), never the kitchen
//! process: a kitchen that honoured it would stop with status 0 and silently lose every
//! later dumpling. `exit(0)` rather than an error code so that a kitchen that did exit
//! would not even show a failure status.

wit_bindgen::generate!({ path: "../../../wit/v0.1", world: "chef" });
include!("../../common.rs");

impl Guest for HostileChef {
    fn describe() -> ChefInfo {
        info(
            "ExitChef",
            "Hostile: calls exit(0) in on-packets",
            Drivers::PACKET,
        )
    }

    fn on_packets(_packets: Vec<Packet>, _arena: Vec<u8>) -> Vec<PacketDumpling> {
        std::process::exit(0)
    }

    fn on_interval(_now_ns: u64, _interval_ns: u64) -> Vec<String> {
        Vec::new()
    }
}
