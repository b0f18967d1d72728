//! `SleepChef`: `on-packets` calls `std::thread::sleep` for [`SLEEP_SECS`] (an hour).
//!
//! Fires on: every `on-packets` call (packet driver only). On wasip2 a sleep is a
//! `wasi:clocks/monotonic-clock.subscribe-duration` pollable waited on with
//! `wasi:io/poll.poll`: the guest is blocked *inside a host call*, where epoch interruption
//! does not reach. The kitchen must still stop it at the deadline (e.g. by making the poll
//! itself respect the call's deadline, or by not blocking in it), or one sleeping chef
//! stalls the whole kitchen. A `survived_sleep_ms` canary reports a sleep that completed.

wit_bindgen::generate!({ path: "../../../wit/v0.1", world: "chef" });
include!("../../common.rs");

/// How long each call sleeps, in seconds.
const SLEEP_SECS: u64 = 3600;

impl Guest for HostileChef {
    fn describe() -> ChefInfo {
        info(
            "SleepChef",
            "Hostile: sleeps an hour in on-packets (blocked in a host call)",
            Drivers::PACKET,
        )
    }

    fn on_packets(_packets: Vec<Packet>, _arena: Vec<u8>) -> Vec<PacketDumpling> {
        let start = std::time::Instant::now();
        std::thread::sleep(std::time::Duration::from_secs(SLEEP_SECS));
        vec![PacketDumpling {
            packet_index: 0,
            payload: format!("{{\"survived_sleep_ms\":{}}}", start.elapsed().as_millis()),
        }]
    }

    fn on_interval(_now_ns: u64, _interval_ns: u64) -> Vec<String> {
        Vec::new()
    }
}
