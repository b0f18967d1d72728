//! `LogFloodChef`: every `on-packets` call writes [`LOG_MESSAGES`] 4 KiB messages through
//! the `log` import and [`STDERR_LINES`] lines to its WASI stderr, then returns one honest
//! dumpling `{"logged": n}`.
//!
//! Fires on: every `on-packets` call. The kitchen rate-limits and truncates chef logs and
//! must not kill the chef for logging: the tests check its dumplings arrive, that the
//! kitchen's stderr stays small, and that suppression is reported.

wit_bindgen::generate!({ path: "../../../wit/v0.1", world: "chef" });
include!("../../common.rs");

/// Messages through the `log` import per call.
const LOG_MESSAGES: usize = 2000;
/// Lines to WASI stderr per call.
const STDERR_LINES: usize = 2000;

impl Guest for HostileChef {
    fn describe() -> ChefInfo {
        info("LogFloodChef", "Hostile: floods its log", Drivers::PACKET)
    }

    fn on_packets(packets: Vec<Packet>, _arena: Vec<u8>) -> Vec<PacketDumpling> {
        let big = "flood ".repeat(700);
        for i in 0..LOG_MESSAGES {
            log(Level::Error, &format!("{i} {big}"));
        }
        for i in 0..STDERR_LINES {
            eprintln!("LogFloodChef stderr line {i} {}", &big[..200]);
        }
        vec![PacketDumpling {
            packet_index: packets.len().saturating_sub(1) as u32,
            payload: format!("{{\"logged\":{}}}", LOG_MESSAGES + STDERR_LINES),
        }]
    }

    fn on_interval(_now_ns: u64, _interval_ns: u64) -> Vec<String> {
        Vec::new()
    }
}
