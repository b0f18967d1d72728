//! `SlowOverDeadlineChef`: each poke busy-waits [`SPIN_MS`] (400 ms) of its own running
//! time (`spin_cpu_ms`: about that much CPU time, however loaded the machine), twice the
//! 200 ms deadline the tests pass with `--chef-deadline-ms 200`, which counts CPU time.
//!
//! Fires on: every `on-interval` call. `on-packets` is fast and returns nothing, so the chef
//! keeps receiving packets between pokes (the restart path runs while it is healthy). Only
//! the interval path is slow: it must be interrupted near 200 ms, so the
//! `finished_slow_interval_ms` dumpling it returns after spinning must never reach stdout.
//! "Just over" rather than "hugely over" so that a deadline enforced loosely (say at 2x
//! the configured value) would let the chef finish and fail the test.

wit_bindgen::generate!({ path: "../../../wit/v0.1", world: "chef" });
include!("../../common.rs");

/// Busy-wait per `on-interval` call, in milliseconds.
const SPIN_MS: u64 = 400;

impl Guest for HostileChef {
    fn describe() -> ChefInfo {
        info(
            "SlowOverDeadlineChef",
            "Hostile: spins 400 ms per poke (over a 200 ms deadline)",
            Drivers::PACKET | Drivers::INTERVAL,
        )
    }

    fn on_packets(_packets: Vec<Packet>, _arena: Vec<u8>) -> Vec<PacketDumpling> {
        Vec::new()
    }

    fn on_interval(_now_ns: u64, _interval_ns: u64) -> Vec<String> {
        let spun = spin_cpu_ms(SPIN_MS);
        vec![format!("{{\"finished_slow_interval_ms\":{spun}}}")]
    }
}
