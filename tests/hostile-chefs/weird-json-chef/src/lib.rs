//! `WeirdJsonChef`: payloads that are *valid* JSON but awkward for a host.
//!
//! Fires on: every `on-packets` call (one dumpling per flavour):
//! * `pretty`: a pretty-printed object spanning several lines. The kitchen writes one
//!   dumpling per line on `--stdout`, so copying it verbatim would split a dumpling over
//!   lines (the tests parse stdout strictly line by line).
//! * `nested`: 100 000 nested arrays. A host parsing with unbounded recursion would blow
//!   its own stack; the hub's and the Rust eaters' serde_json (128 levels) refuse it, so
//!   the kitchen must refuse it too (and must not die doing so).
//! * `surrogate`: a lone-surrogate escape, legal in RFC 8259's grammar, refused by serde_json.
//! * `big-number`: `1e400`, legal JSON but no f64 (serde_json: "number out of range").
//!
//! The kitchen's payload check must be at least as strict as the hub's (`check_dumpling`
//! parses into a serde_json `Value`), and what it forwards must be one line. `on-interval`
//! is not used.

wit_bindgen::generate!({ path: "../../../wit/v0.1", world: "chef" });
include!("../../common.rs");

/// Nesting depth of the `nested` payload.
const DEPTH: usize = 100_000;

impl Guest for HostileChef {
    fn describe() -> ChefInfo {
        info(
            "WeirdJsonChef",
            "Hostile: valid but awkward JSON",
            Drivers::PACKET,
        )
    }

    fn on_packets(packets: Vec<Packet>, _arena: Vec<u8>) -> Vec<PacketDumpling> {
        let last = packets.len().saturating_sub(1) as u32;
        let nested = format!(
            "{{\"flavour\":\"nested\",\"v\":{}{}}}",
            "[".repeat(DEPTH),
            "]".repeat(DEPTH)
        );
        [
            "{\n  \"flavour\": \"pretty\",\n  \"lines\": [\n    1,\n    2\n  ]\n}".to_owned(),
            nested,
            "{\"flavour\":\"surrogate\",\"v\":\"\\ud800\"}".to_owned(),
            "{\"flavour\":\"big-number\",\"v\":1e400}".to_owned(),
        ]
        .into_iter()
        .map(|payload| PacketDumpling {
            packet_index: last,
            payload,
        })
        .collect()
    }

    fn on_interval(_now_ns: u64, _interval_ns: u64) -> Vec<String> {
        Vec::new()
    }
}
