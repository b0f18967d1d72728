//! The size and nesting limits of one message on the kitchen → hub wire, checked by ONE
//! function that both sides call: the kitchen before it sends a dumpling (so what it sends
//! is exactly what the hub accepts) and the hub before it parses one.
//!
//! Depth is counted over the whole message, envelope included: `{"metadata":…,"payload":
//! P}` adds one level to the payload `P`. serde_json (which the hub parses with) refuses
//! nesting deeper than [`MAX_JSON_DEPTH`]; checking the whole message here makes the
//! kitchen refuse (and count) a payload whose envelope would cross that line, instead of
//! the hub dropping it silently.

/// Largest nesting depth of arrays and objects in one message, envelope included: the
/// deepest serde_json parses with its default recursion limit.
pub const MAX_JSON_DEPTH: usize = 127;

/// Why a message breaks the wire's limits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// More bytes than [`crate::MAX_MESSAGE_BYTES`].
    #[error("the message is {size} bytes; the hub accepts at most {max}")]
    TooBig {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// Arrays/objects nested deeper than [`MAX_JSON_DEPTH`] (envelope included).
    #[error("the message nests arrays/objects deeper than {max} levels (envelope included)")]
    TooDeep {
        /// The limit.
        max: usize,
    },
}

/// Check a whole message (envelope included) against the wire's size and depth limits.
/// One pass over the bytes, no allocation; brackets inside JSON strings do not count.
pub fn check_message_limits(message: &[u8]) -> Result<(), LimitError> {
    if message.len() > crate::MAX_MESSAGE_BYTES {
        return Err(LimitError::TooBig {
            size: message.len(),
            max: crate::MAX_MESSAGE_BYTES,
        });
    }
    check_json_depth(message)
}

/// The depth half of [`check_message_limits`], for a hub configured with a larger
/// message size (its size limit is then its WebSocket frame limit).
pub fn check_json_depth(message: &[u8]) -> Result<(), LimitError> {
    if json_depth_exceeds(message, MAX_JSON_DEPTH) {
        return Err(LimitError::TooDeep {
            max: MAX_JSON_DEPTH,
        });
    }
    Ok(())
}

/// Whether the bracket nesting of `json` goes deeper than `max` (strings and their escapes
/// skipped). Malformed JSON is left to the parser; this only bounds depth.
///
/// Every dumpling crosses this twice (kitchen before sending, hub at ingest), and most of a
/// large payload is string bytes, so strings are skipped with `memchr` (closing quote or
/// backslash) rather than byte by byte: several times faster on a 40 KB table of names.
fn json_depth_exceeds(json: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut at = 0usize;
    while let Some(&b) = json.get(at) {
        match b {
            b'"' => match string_end(json, at + 1) {
                Some(close) => at = close,
                // Unterminated: the parser refuses it; its depth so far was within bounds.
                None => return false,
            },
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        at += 1;
    }
    false
}

/// The index of the quote that closes the string whose first content byte is at `from`
/// (escaped quotes skipped), or `None` when the input ends first.
fn string_end(json: &[u8], mut from: usize) -> Option<usize> {
    loop {
        let found = from + memchr::memchr2(b'"', b'\\', json.get(from..)?)?;
        if json[found] == b'"' {
            return Some(found);
        }
        // A backslash escapes the next byte, whatever it is.
        from = found + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{check_dumpling, encode_dumpling, validate_payload, Driver};

    fn nested(depth: usize) -> String {
        format!("{}\"]x[{{\\\"\"{}", "[".repeat(depth), "]".repeat(depth))
    }

    #[test]
    fn depth_matches_serde_json_exactly() {
        for depth in 1..200 {
            let text = nested(depth);
            let serde_ok = serde_json::from_str::<serde_json::Value>(&text).is_ok();
            let ours = check_message_limits(text.as_bytes()).is_ok();
            assert_eq!(serde_ok, ours, "depth {depth}");
        }
    }

    #[test]
    fn kitchen_and_hub_agree_on_payload_depth_with_the_envelope() {
        // A payload nested D deep travels in an envelope one level deeper: the shared check
        // on the encoded message is what both sides apply.
        for depth in [125, 126, 127, 128] {
            let payload = nested(depth);
            let Ok(raw) = validate_payload(&payload) else {
                assert!(depth >= 128, "validate_payload refused depth {depth}");
                continue;
            };
            let msg = encode_dumpling("C", Some("k"), 1.0, Driver::Packet, &raw);
            let kitchen_sends = check_message_limits(msg.as_bytes()).is_ok();
            let hub_accepts = check_dumpling(msg.as_bytes()).is_ok();
            assert_eq!(kitchen_sends, hub_accepts, "payload depth {depth}");
            assert_eq!(
                kitchen_sends,
                depth < MAX_JSON_DEPTH,
                "payload depth {depth}"
            );
        }
    }

    /// The byte-by-byte scan the fast one replaced, kept as the reference.
    fn depth_exceeds_reference(json: &[u8], max: usize) -> bool {
        let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
        for &b in json {
            if in_string {
                if escaped {
                    escaped = false;
                } else if b == b'\\' {
                    escaped = true;
                } else if b == b'"' {
                    in_string = false;
                }
                continue;
            }
            match b {
                b'"' => in_string = true,
                b'[' | b'{' => {
                    depth += 1;
                    if depth > max {
                        return true;
                    }
                }
                b']' | b'}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        false
    }

    #[test]
    fn fast_scan_agrees_with_the_byte_by_byte_one_on_every_short_input() {
        // Every string over this alphabet up to length 7 (quotes, escapes, brackets at the
        // end of input included), for several limits.
        let alphabet = [b'"', b'\\', b'[', b']', b'{', b'}', b'a'];
        let mut input = Vec::new();
        fn walk(input: &mut Vec<u8>, alphabet: &[u8], left: usize) {
            for max in 0..4 {
                assert_eq!(
                    json_depth_exceeds(input, max),
                    depth_exceeds_reference(input, max),
                    "{:?} max {max}",
                    String::from_utf8_lossy(input)
                );
            }
            if left == 0 {
                return;
            }
            for &b in alphabet {
                input.push(b);
                walk(input, alphabet, left - 1);
                input.pop();
            }
        }
        walk(&mut input, &alphabet, 7);
    }

    #[test]
    fn size_is_checked() {
        let big = vec![b' '; crate::MAX_MESSAGE_BYTES + 1];
        assert!(matches!(
            check_message_limits(&big),
            Err(LimitError::TooBig { .. })
        ));
        assert!(check_message_limits(&big[1..]).is_ok());
    }
}
