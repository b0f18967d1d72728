//! `AliasedOutputChef`: `on-packets` returns [`ALIASES`] (1024) `packet-dumpling`s whose
//! payloads all point at the *same* 1 MiB string in guest memory.
//!
//! Fires on: every `on-packets` call (packet driver only). The canonical ABI lowers a
//! string as (pointer, length), so the guest spends ~1 MiB + 12 bytes per record, well
//! inside its memory cap, while a host that lifts the whole `list<packet-dumpling>` before
//! applying its caps copies every alias: ~1 GiB of host memory per call (and it scales
//! linearly: 100 000 aliases would be ~100 GiB, enough to get the kitchen OOM-killed).
//! The kitchen must bound what it lifts (count and total bytes), not only what it keeps.
//!
//! Each payload is a valid JSON string just over the per-dumpling cap, so none may reach
//! stdout whatever the host does. The guest's post-return frees the same buffer many times,
//! which is expected to trap afterwards: the interesting damage is done at lift time.

#![allow(unsafe_code)]

wit_bindgen::generate!({ path: "../../../wit/v0.1", world: "chef" });
include!("../../common.rs");

/// Records per call.
const ALIASES: usize = 1024;
/// Bytes of the one shared payload (a JSON string, 1 MiB + 2 quotes).
const PAYLOAD_BYTES: usize = (1 << 20) + 2;

impl Guest for HostileChef {
    fn describe() -> ChefInfo {
        info(
            "AliasedOutputChef",
            "Hostile: 1024 dumplings sharing one 1 MiB payload",
            Drivers::PACKET,
        )
    }

    fn on_packets(_packets: Vec<Packet>, _arena: Vec<u8>) -> Vec<PacketDumpling> {
        let mut shared = String::with_capacity(PAYLOAD_BYTES);
        shared.push('"');
        shared.extend(std::iter::repeat_n('a', PAYLOAD_BYTES - 2));
        shared.push('"');
        let mut shared = std::mem::ManuallyDrop::new(shared);
        let (ptr, len) = (shared.as_mut_ptr(), shared.len());
        (0..ALIASES)
            .map(|_| PacketDumpling {
                packet_index: 0,
                // SAFETY: deliberately not sound: every String aliases one buffer, so the
                // host sees ALIASES strings for the memory of one.
                payload: unsafe { String::from_raw_parts(ptr, len, len) },
            })
            .collect()
    }

    fn on_interval(_now_ns: u64, _interval_ns: u64) -> Vec<String> {
        Vec::new()
    }
}
