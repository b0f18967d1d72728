//! The optional `netdumplings:chef/interval-json-bytes@0.2.0` export: `on-interval`'s
//! payloads as UTF-8 bytes instead of strings.
//!
//! Why: componentize-js lowers a returned string at about 0.13 µs per byte in its
//! interpreter, so a JavaScript chef's 60 KB interval payload (DNSLookupChef's table of
//! 1 000 names) cost ~8 ms a poke; a `list<u8>` from a `Uint8Array` lowers as one copy.
//! The payloads then go through the same checks as `on-interval`'s strings (one JSON value,
//! size, depth: `LoadedChef::wrap_payload` in the chef's lane).

/// The export's name (interface of the `bytes-chef` world, added within 0.2).
pub const EXPORT: &str = "netdumplings:chef/interval-json-bytes@0.2.0";

/// The payloads as text, and how many were dropped because they are not UTF-8 (an SDK
/// that writes what the WIT forbids; counted as invalid output, as `packed-json-bytes`
/// counts its bad bytes). The rest go through the usual interval payload checks.
pub fn payloads(answer: Vec<Vec<u8>>) -> (Vec<String>, u64) {
    let mut not_utf8 = 0u64;
    let texts = answer
        .into_iter()
        .filter_map(|b| {
            super::chef_text::utf8_string(b)
                .map_err(|_| not_utf8 += 1)
                .ok()
        })
        .collect();
    (texts, not_utf8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_bytes_become_text_and_a_payload_that_is_not_utf8_is_dropped_and_counted() {
        let good = "{\"a\":\"\u{e9}\"}".as_bytes().to_vec();
        let bad = vec![b'"', b'x', 0xff, b'"'];
        let (got, dropped) = payloads(vec![good, Vec::new(), bad, b"1".to_vec()]);
        assert_eq!(
            got,
            vec![
                "{\"a\":\"\u{e9}\"}".to_string(),
                String::new(),
                "1".to_string()
            ]
        );
        assert_eq!(dropped, 1);
    }
}
