//! `ForgedStringsChef`: every string it controls tries to forge what the kitchen prints.
//!
//! Fires at: load (`describe`: a 2 MB `version` with a newline and a terminal escape, a
//! `description` whose newline forges a `nd-sniff -l` entry), and on every call (a `log`
//! line whose newline forges a kitchen log line, with an ANSI escape). The tests check
//! that the kitchen loads it with the strings cut and escaped, that no forged line appears
//! at the start of a line in `-l` output or the log, and that no raw ESC reaches them.

wit_bindgen::generate!({ path: "../../../wit/v0.1", world: "chef" });
include!("../../common.rs");

impl Guest for HostileChef {
    fn describe() -> ChefInfo {
        let mut i = info(
            "ForgedStringsChef",
            "Hostile\nFakeChef\n  version:  forged-entry\n\u{1b}[31mred\u{1b}[0m",
            Drivers::PACKET | Drivers::INTERVAL,
        );
        let mut version = String::from("1.0\nFORGED-VERSION-LINE\u{1b}[2J");
        version.push_str(&"v".repeat(2 << 20));
        i.version = version;
        i
    }

    fn on_packets(_packets: Vec<Packet>, _arena: Vec<u8>) -> Vec<PacketDumpling> {
        log(
            Level::Warn,
            "hello\n2026-12-05T00:00:00.000000Z ERROR FORGED-LOG-LINE kitchen died\u{1b}[31m",
        );
        Vec::new()
    }

    fn on_interval(_now_ns: u64, _interval_ns: u64) -> Vec<String> {
        Vec::new()
    }
}
