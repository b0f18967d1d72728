//! `InvalidUtf8Chef`: returns `string`s whose bytes are not UTF-8.
//!
//! Fires on: every `on-packets` call (one `packet-dumpling` whose payload is
//! `"\xff\xfe"` inside quotes) and every `on-interval` call (`"\xc3\x28"`). The guest side of
//! the canonical ABI lowers a string as pointer + length without checking; the host's
//! lifting must reject it (wasmtime returns an error for the call), and the kitchen must
//! report it and carry on.

#![allow(unsafe_code)]

wit_bindgen::generate!({ path: "../../../wit/v0.1", world: "chef" });
include!("../../common.rs");

/// A `String` holding arbitrary bytes. Deliberately breaks `String`'s invariant: the
/// value is only handed to the canonical ABI, which copies pointer and length.
fn not_utf8(bytes: &[u8]) -> String {
    // SAFETY: not sound in general; this chef exists to hand invalid UTF-8 to the host,
    // and nothing in the guest reads the string as text.
    unsafe { String::from_utf8_unchecked(bytes.to_vec()) }
}

impl Guest for HostileChef {
    fn describe() -> ChefInfo {
        info(
            "InvalidUtf8Chef",
            "Hostile: payloads that are not UTF-8",
            Drivers::PACKET | Drivers::INTERVAL,
        )
    }

    fn on_packets(_packets: Vec<Packet>, _arena: Vec<u8>) -> Vec<PacketDumpling> {
        vec![PacketDumpling {
            packet_index: 0,
            payload: not_utf8(b"\"\xff\xfe\""),
        }]
    }

    fn on_interval(_now_ns: u64, _interval_ns: u64) -> Vec<String> {
        vec![not_utf8(b"\"\xc3\x28\"")]
    }
}
