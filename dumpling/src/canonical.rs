//! A fast check that a chef's payload is already in the exact form the kitchen's JSON check
//! would write, so it can be copied into the envelope as it is.
//!
//! Why: every payload is checked and compacted by a serde transcode (parse, then write
//! again: numbers re-formatted, strings re-escaped), which cost the kitchen most of its
//! time on tables sent every poke (e.g. a ~40 KB `lookups_seen` every ~70 packets of a
//! mixed corpus). Chefs written with serde already emit exactly that form. This scan
//! accepts only a strict subset of JSON for which the transcode's output is, byte for
//! byte, its input, and answers `None` for anything else (whitespace, a `\/` or a `\u00e9`
//! escape, `-0`, `1e5`, nesting deeper than [`MAX_FAST_DEPTH`], invalid JSON, ...): the
//! caller then runs the transcode, which gives the same bytes or the same error as before.
//! So the output is unchanged in every case; only the time differs.
//!
//! The subset (each part what serde_json writes):
//! * no whitespace outside strings;
//! * strings with no raw byte below 0x20 and only the escapes serde_json writes: `\"`,
//!   `\\`, `\b`, `\f`, `\n`, `\r`, `\t`, and `\u00xx` (lower-case hex) for the other
//!   control bytes;
//! * integers of at most 18 digits, no leading zero, not `-0` (read back as the same
//!   `u64`/`i64`); any other number is transcoded alone and kept only if that gives it back
//!   unchanged (so float formatting is serde_json's own, whatever its features);
//! * `true`, `false`, `null`, arrays and objects nested at most [`MAX_FAST_DEPTH`] deep.

/// Deepest nesting the fast path accepts; deeper payloads take the transcode (which knows
/// serde_json's exact recursion limit), well before the wire's limit of 127.
pub const MAX_FAST_DEPTH: usize = 64;

/// The nesting depth of `payload` (0 for a scalar) when the transcode would give it back
/// byte for byte; `None` when the transcode must decide.
pub fn canonical_depth(payload: &str) -> Option<usize> {
    scan(payload, 0, ScanState::START, |_, _| Comma::Go)
}

/// What the grammar allows next (part of a [`ScanState`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Want {
    /// A value (start, after `:` or after `,` in an array).
    Value,
    /// A value or `]` (just after `[`).
    ValueOrClose,
    /// A key (after `,` in an object).
    Key,
    /// A key or `}` (just after `{`).
    KeyOrClose,
    /// `,` or the container's close (after a value inside a container).
    CommaOrClose,
    /// `:` (after a key).
    Colon,
    /// Nothing: the top-level value is complete.
    End,
}

/// Everything the scan knows at a byte offset: with the bytes from there on, it decides
/// the rest of the answer (see [`scan`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ScanState {
    /// One bit per open container: set = object, clear = array.
    stack: u64,
    /// Containers open.
    depth: u8,
    /// What may come next.
    want: Want,
}

impl ScanState {
    /// Before the first byte.
    pub(crate) const START: ScanState = ScanState {
        stack: 0,
        depth: 0,
        want: Want::Value,
    };
}

/// What [`scan`] does after a `,`: go on, stop and accept, or go on from further on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Comma {
    /// Scan on.
    Go,
    /// Stop here: the rest of the payload is known to pass from this state.
    Accept,
    /// Go on from this offset in this state: the caller knows that the bytes up to it
    /// pass from here and lead to that state.
    Jump(usize, ScanState),
}

// The depth fits the state's `u8` and the stack's 64 bits.
const _: () = assert!(MAX_FAST_DEPTH <= 64);

/// The canonical scan of `payload` from byte `at` in state `st`: the deepest nesting
/// reached from there when the rest is in the form the transcode gives back unchanged,
/// `None` otherwise. After each `,` it calls `at_comma(offset just after it, state there)`;
/// [`Comma::Accept`] ends the scan with `Some` (the caller knows the rest passes), and
/// [`Comma::Jump`] skips bytes the caller knows (the depth answered is then only that of
/// the bytes scanned: callers that skip use only whether it passed).
///
/// A state after a `,` depends only on the bytes before it: every token before a `,`
/// (numbers included, which end at the first byte that cannot continue them) is complete
/// by then. So a scan resumed there over the same following bytes answers as the whole
/// scan does; that is what [`crate::resume`] relies on.
#[inline(always)]
pub(crate) fn scan(
    payload: &str,
    mut at: usize,
    st: ScanState,
    mut at_comma: impl FnMut(usize, &ScanState) -> Comma,
) -> Option<usize> {
    let b = payload.as_bytes();
    let mut stack = st.stack;
    let mut depth = usize::from(st.depth);
    let mut want = st.want;
    let mut max_depth = depth;
    loop {
        let Some(&c) = b.get(at) else {
            return (want == Want::End).then_some(max_depth);
        };
        match want {
            Want::End => return None,
            Want::Colon => {
                if c != b':' {
                    return None;
                }
                at += 1;
                want = Want::Value;
            }
            Want::Key | Want::KeyOrClose => {
                if c == b'}' && want == Want::KeyOrClose {
                    at += 1;
                    depth -= 1;
                    stack >>= 1;
                    want = after_value(depth);
                    continue;
                }
                if c != b'"' {
                    return None;
                }
                at = string_end(b, at + 1)?;
                want = Want::Colon;
            }
            Want::CommaOrClose => {
                let in_object = stack & 1 == 1;
                match c {
                    b',' => {
                        at += 1;
                        want = if in_object { Want::Key } else { Want::Value };
                        let here = ScanState {
                            stack,
                            // At most MAX_FAST_DEPTH (checked where it grows).
                            depth: depth as u8,
                            want,
                        };
                        match at_comma(at, &here) {
                            Comma::Go => {}
                            Comma::Accept => return Some(max_depth),
                            Comma::Jump(to, st) => {
                                // Depths in the bytes skipped passed the scan before.
                                at = to;
                                stack = st.stack;
                                depth = usize::from(st.depth);
                                want = st.want;
                                max_depth = max_depth.max(depth);
                            }
                        }
                    }
                    b'}' if in_object => {
                        at += 1;
                        depth -= 1;
                        stack >>= 1;
                        want = after_value(depth);
                    }
                    b']' if !in_object => {
                        at += 1;
                        depth -= 1;
                        stack >>= 1;
                        want = after_value(depth);
                    }
                    _ => return None,
                }
            }
            Want::Value | Want::ValueOrClose => {
                match c {
                    b']' if want == Want::ValueOrClose => {
                        at += 1;
                        depth -= 1;
                        stack >>= 1;
                        want = after_value(depth);
                        continue;
                    }
                    b'{' | b'[' => {
                        if depth >= MAX_FAST_DEPTH {
                            return None;
                        }
                        depth += 1;
                        max_depth = max_depth.max(depth);
                        stack = (stack << 1) | u64::from(c == b'{');
                        at += 1;
                        want = if c == b'{' {
                            Want::KeyOrClose
                        } else {
                            Want::ValueOrClose
                        };
                        continue;
                    }
                    b'"' => at = string_end(b, at + 1)?,
                    b't' => at = literal(b, at, b"true")?,
                    b'f' => at = literal(b, at, b"false")?,
                    b'n' => at = literal(b, at, b"null")?,
                    b'-' | b'0'..=b'9' => at = number_end(payload, at)?,
                    _ => return None,
                }
                want = after_value(depth);
            }
        }
    }
}

fn after_value(depth: usize) -> Want {
    if depth == 0 {
        Want::End
    } else {
        Want::CommaOrClose
    }
}

/// The index just after `word` when it is at `at`.
fn literal(b: &[u8], at: usize, word: &[u8]) -> Option<usize> {
    let end = at + word.len();
    (b.get(at..end)? == word).then_some(end)
}

/// Index just after the closing quote of the string whose content starts at `at`, when
/// the string is in serde_json's own form (see the module docs).
fn string_end(b: &[u8], mut at: usize) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    loop {
        // Eight bytes at a time while none is a quote, a backslash or a control byte.
        while let Some(chunk) = b.get(at..at + 8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            let w = u64::from_le_bytes(word);
            let quote = w ^ (LO * u64::from(b'"'));
            let backslash = w ^ (LO * u64::from(b'\\'));
            // A zero byte in `quote`/`backslash`, or a byte of `w` below 0x20 (ASCII only;
            // bytes >= 0x80 are UTF-8 and fine), sets that byte's high bit here.
            let special = (quote.wrapping_sub(LO) & !quote)
                | (backslash.wrapping_sub(LO) & !backslash)
                | (w.wrapping_sub(LO * 0x20) & !w);
            if special & HI != 0 {
                break;
            }
            at += 8;
        }
        let c = *b.get(at)?;
        match c {
            b'"' => return Some(at + 1),
            b'\\' => {
                let esc = *b.get(at + 1)?;
                match esc {
                    b'"' | b'\\' | b'b' | b'f' | b'n' | b'r' | b't' => at += 2,
                    b'u' => {
                        // Only `\u00xx` for a control byte without a short escape.
                        let hex = b.get(at + 2..at + 6)?;
                        if hex[0] != b'0' || hex[1] != b'0' {
                            return None;
                        }
                        let hi = lower_hex(hex[2])?;
                        let lo = lower_hex(hex[3])?;
                        let v = hi * 16 + lo;
                        if v >= 0x20 || matches!(v, 0x08 | 0x09 | 0x0a | 0x0c | 0x0d) {
                            return None;
                        }
                        at += 6;
                    }
                    _ => return None,
                }
            }
            0..=0x1f => return None,
            _ => at += 1,
        }
    }
}

fn lower_hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// Index just after the number at `at`, when the transcode writes it back unchanged.
fn number_end(payload: &str, at: usize) -> Option<usize> {
    let b = payload.as_bytes();
    let mut end = at;
    while let Some(&c) = b.get(end) {
        if matches!(c, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') {
            end += 1;
        } else {
            break;
        }
    }
    let token = payload.get(at..end)?;
    let digits = token.strip_prefix('-').unwrap_or(token);
    let plain_integer = !digits.is_empty()
        && digits.len() <= 18
        && digits.bytes().all(|c| c.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'))
        && token != "-0";
    if plain_integer {
        return Some(end);
    }
    // Anything else: exactly what the transcode makes of it alone (a number parses and is
    // written the same at any depth), kept only when that is the token itself.
    if float_cache::holds(token.as_bytes()) {
        return Some(end);
    }
    let mut out = Vec::with_capacity(token.len() + 8);
    crate::transcode_compact(token, &mut out).ok()?;
    if out != token.as_bytes() {
        return None;
    }
    float_cache::add(token.as_bytes());
    Some(end)
}

/// Number tokens this thread's transcode already gave back unchanged, so a table sent
/// again with most of its floats unchanged (`DNSLookupChef`'s `"latest"` times) does not
/// parse and format each of them again. Whether the transcode gives a token back is a
/// function of its bytes alone, and an entry is found only by all of its bytes, so the
/// answer is the same; a slot is overwritten by another token that hashes to it.
mod float_cache {
    use std::cell::RefCell;

    /// Slots (a power of two): 64 KiB a thread.
    const SLOTS: usize = 2048;
    /// Longest token kept (the slot holds its length in byte 0).
    const MAX_LEN: usize = 31;

    thread_local! {
        static CACHE: RefCell<Vec<[u8; MAX_LEN + 1]>> = const { RefCell::new(Vec::new()) };
    }

    fn slot(token: &[u8]) -> usize {
        // FNV-1a: tokens are short.
        let mut h: u32 = 0x811c_9dc5;
        for &b in token {
            h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
        }
        (h as usize) & (SLOTS - 1)
    }

    /// Whether `token` is known to come back unchanged.
    pub(super) fn holds(token: &[u8]) -> bool {
        if token.len() > MAX_LEN {
            return false;
        }
        CACHE.with(|c| {
            c.borrow()
                .get(slot(token))
                .is_some_and(|e| usize::from(e[0]) == token.len() && &e[1..=token.len()] == token)
        })
    }

    /// Remember that `token` came back unchanged.
    pub(super) fn add(token: &[u8]) {
        if token.len() > MAX_LEN {
            return;
        }
        CACHE.with(|c| {
            let mut c = c.borrow_mut();
            if c.is_empty() {
                c.resize(SLOTS, [0; MAX_LEN + 1]);
            }
            let e = &mut c[slot(token)];
            e[0] = token.len() as u8;
            e[1..=token.len()].copy_from_slice(token);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference: what the transcode gives.
    fn transcoded(payload: &str) -> Option<String> {
        let mut out = Vec::new();
        crate::transcode_compact(payload, &mut out).ok()?;
        String::from_utf8(out).ok()
    }

    fn depth_of(v: &serde_json::Value) -> usize {
        match v {
            serde_json::Value::Array(a) => 1 + a.iter().map(depth_of).max().unwrap_or(0),
            serde_json::Value::Object(o) => 1 + o.values().map(depth_of).max().unwrap_or(0),
            _ => 0,
        }
    }

    /// The fast path's promise: when it says yes, the transcode gives the input back.
    fn check(payload: &str) {
        let fast = canonical_depth(payload);
        let slow = transcoded(payload);
        if let Some(depth) = fast {
            assert_eq!(slow.as_deref(), Some(payload), "fast path took {payload:?}");
            let v: serde_json::Value = serde_json::from_str(payload).expect("valid");
            assert_eq!(depth, depth_of(&v), "{payload:?}");
        }
    }

    #[test]
    fn what_serde_writes_is_taken() {
        let samples = [
            r#"{"lookups_seen":{"example.test":{"count":2,"latest":1795739862.513954}}}"#,
            r#"{"operation":"reply","src_hw":"02:00:00:00:00:02","time":1.5,"notes":null}"#,
            r#"[1,-2,0,true,false,null,"a\"b\\c\n\u0001\u001f",[],{},[[]],{"":[{}]}]"#,
            r#""é ✓ 😀 \t""#,
            "123456789012345678",
            "-123456789012345678",
            "0.1",
            "1e-7",
            "-1.25",
        ];
        for s in samples {
            check(s);
            assert!(
                canonical_depth(s).is_some(),
                "{s:?} should take the fast path"
            );
        }
    }

    #[test]
    fn what_serde_would_rewrite_or_refuse_is_left_to_it() {
        let samples = [
            " {}",
            "{} ",
            "{ }",
            "[1, 2]",
            r#"{"a" :1}"#,
            "-0",
            "1e5",
            "1E5",
            "1.50",
            "01",
            "1234567890123456789012",
            "1e400",
            "-",
            "1.",
            ".5",
            "+1",
            r#""\/""#,
            r#""\u00e9""#,
            r#""\u000A""#,
            r#""\u000a""#,
            "\"\u{1}\"",
            r#""\x""#,
            "[1,]",
            "{,}",
            r#"{"a":1,}"#,
            r#"{"a"}"#,
            "[",
            "]",
            "{",
            "}",
            "",
            "tru",
            "nul",
            "[]]",
            "{}{}",
            "NaN",
            r#"{"a":1"#,
            "\"abc",
        ];
        for s in samples {
            check(s);
            assert!(
                canonical_depth(s).is_none(),
                "{s:?} should take the transcode"
            );
        }
    }

    #[test]
    fn depth_limit_sends_deep_payloads_to_the_transcode() {
        for d in [MAX_FAST_DEPTH - 1, MAX_FAST_DEPTH, MAX_FAST_DEPTH + 1, 200] {
            let s = format!("{}{}", "[".repeat(d), "]".repeat(d));
            check(&s);
            assert_eq!(
                canonical_depth(&s).is_some(),
                d <= MAX_FAST_DEPTH,
                "depth {d}"
            );
        }
    }

    #[test]
    fn agrees_with_the_transcode_on_every_short_input() {
        // Every string over this alphabet up to length 5 (about 400 k inputs).
        let alphabet: Vec<&str> = vec![
            "\"", "\\", "[", "]", "{", "}", ":", ",", "1", "-", "0", ".", "e", "a", " ", "n", "u",
            "\u{1}",
        ];
        fn walk(s: &mut String, alphabet: &[&str], left: usize) {
            check(s);
            if left == 0 {
                return;
            }
            for a in alphabet {
                let len = s.len();
                s.push_str(a);
                walk(s, alphabet, left - 1);
                s.truncate(len);
            }
        }
        walk(&mut String::new(), &alphabet, 4);
    }

    #[test]
    fn agrees_with_the_transcode_on_mutated_payloads() {
        // Real-looking payloads with one byte changed or removed at every position.
        let bases = [
            r#"{"lookups_seen":{"a.test":{"count":2,"latest":1795739862.513954},"b\n\"c":{"count":1,"latest":0.5}}}"#,
            r#"{"packet_counts":{"Ethernet":50,"IP":46,"TCP":-36,"x":[1.5,-0.25,1e-7,true,null]}}"#,
        ];
        let replacements = [
            b' ', b'"', b'\\', b'{', b'}', b'[', b']', b':', b',', b'0', b'-', b'.', b'e', b'E',
            b'+', b'u', b'n', 1u8,
        ];
        for base in bases {
            check(base);
            let bytes = base.as_bytes();
            for i in 0..bytes.len() {
                let mut removed = bytes.to_vec();
                removed.remove(i);
                if let Ok(s) = String::from_utf8(removed) {
                    check(&s);
                }
                for &r in &replacements {
                    let mut changed = bytes.to_vec();
                    changed[i] = r;
                    if let Ok(s) = String::from_utf8(changed) {
                        check(&s);
                    }
                }
            }
        }
    }

    #[test]
    fn agrees_on_every_control_byte_and_escape() {
        for v in 0u32..0x80 {
            let c = char::from_u32(v).expect("ascii");
            check(&format!("\"{c}\""));
            check(&format!("\"\\u00{v:02x}\""));
            check(&format!("\"\\u00{v:02X}\""));
            // serde's own output for that character is always taken.
            let own = serde_json::to_string(&c.to_string()).expect("serialises");
            assert!(canonical_depth(&own).is_some(), "{own:?}");
        }
    }

    #[test]
    fn a_number_seen_before_gets_the_same_answer_and_near_misses_do_not_pass() {
        // Twice each (the second from the cache when it passed), and tokens that differ
        // from a passed one by one byte or by length.
        let tokens = [
            "1795739862.513954",
            "1795739862.513950",
            "1795739862.51395",
            "1795739862.5139540",
            "1.5",
            "1.50",
            "0.1",
            "0.10",
            "1e-7",
            "1E-7",
            "1e-07",
            "-0.0",
            "0.0",
            "1.7976931348623157e308",
            "1.7976931348623157e309",
            "0.30000000000000004",
            "0.30000000000000004000000000000",
            "0.300000000000000040000000000000001",
        ];
        for round in 0..3 {
            for t in tokens {
                check(t);
                let payload = format!("[{t},{{\"a\":{t}}}]");
                check(&payload);
                if round > 0 {
                    assert_eq!(
                        canonical_depth(t).is_some(),
                        transcoded(t).as_deref() == Some(t),
                        "{t}"
                    );
                }
            }
        }
        // Many distinct floats: slots are overwritten, answers stay right.
        let mut x = 0.000_123_4f64;
        for _ in 0..10_000 {
            let own = serde_json::to_string(&x).expect("finite");
            assert!(canonical_depth(&own).is_some(), "{own}");
            let padded = format!("{own}0");
            if own.contains('.') && !own.contains('e') {
                assert!(canonical_depth(&padded).is_none(), "{padded}");
            }
            x = x * 1.618_033_9 + 0.1;
        }
    }

    #[test]
    fn agrees_on_floats_as_serde_writes_them() {
        let mut x = 1.0e-12f64;
        while x < 1.0e22 {
            for v in [x, -x, x * 1.000_001, x / 3.0] {
                let own = serde_json::to_string(&v).expect("finite");
                check(&own);
                assert!(canonical_depth(&own).is_some(), "{own:?}");
            }
            x *= 7.3;
        }
    }
}
