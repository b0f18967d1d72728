//! The optional `netdumplings:chef/interval-json-bytes@0.2.0` export: `on-interval`'s
//! payloads as UTF-8 bytes instead of strings.
//!
//! Why: componentize-js lowers a returned string at about 0.13 µs per byte in its
//! interpreter, so a JavaScript chef's 60 KB interval payload (DNSLookupChef's table of
//! 1 000 names) cost ~8 ms a poke; a `list<u8>` from a `Uint8Array` lowers as one copy.
//! The payloads then go through the same checks as `on-interval`'s strings (one JSON value,
//! size, depth: `dumpling::wrap_payload` in the dispatcher).

/// The export's name (interface of the `bytes-chef` world, added within 0.2).
pub const EXPORT: &str = "netdumplings:chef/interval-json-bytes@0.2.0";

/// The payloads as text. Bytes that are not UTF-8 are replaced by U+FFFD (as the WIT says):
/// outside a JSON string that leaves a payload the usual JSON check refuses; inside one, a
/// string holding U+FFFD. The JS SDK's `TextEncoder` never writes such bytes.
pub fn payloads(answer: Vec<Vec<u8>>) -> Vec<String> {
    answer
        .into_iter()
        .map(|b| {
            String::from_utf8(b)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_bytes_become_text_and_bad_utf8_is_replaced() {
        let good = "{\"a\":\"\u{e9}\"}".as_bytes().to_vec();
        let bad = vec![b'"', b'x', 0xff, b'"'];
        let got = payloads(vec![good, Vec::new(), bad]);
        assert_eq!(
            got,
            vec![
                "{\"a\":\"\u{e9}\"}".to_string(),
                String::new(),
                "\"x\u{fffd}\"".to_string()
            ]
        );
    }
}
