//! The optional `netdumplings:chef/packed-json@0.2.0` export: `on-packed` answered in one
//! JSON text, `[[packet-index, payload], ...]`, split here into the dumplings a
//! `list<packet-dumpling>` would have carried.
//!
//! Why: an interpreted guest pays per record and per string to lower a
//! `list<packet-dumpling>` (componentize-py builds a Python object per dumpling and the
//! canonical ABI copies each string on its own; componentize-js runs that glue in its
//! interpreter). One string lowers as one copy. The guest is untrusted, so the text is
//! split by a bounded, non-recursive scanner here and every payload then goes through the
//! same checks as any other dumpling (`LoadedChef::wrap_payload` in the chef's lane: one JSON
//! value, size, depth); a packet index outside the batch is refused there too.

use super::bindings::PacketDumpling;

/// The export's name (`packed-json`, interface of the `packed-chef` world).
pub const EXPORT: &str = "netdumplings:chef/packed-json@0.2.0";

/// The same answer as UTF-8 bytes (`packed-json-bytes`, added within 0.2, interface of the
/// `packed-bytes-chef` world). Why: componentize-js lowers a returned string at about
/// 0.13 µs per byte in its interpreter, a `list<u8>` from a `Uint8Array` as one copy.
pub const BYTES_EXPORT: &str = "netdumplings:chef/packed-json-bytes@0.2.0";

/// A split answer: the pairs kept as dumplings, how many more it held, and what was wrong
/// with it, if anything.
#[derive(Debug, Default, PartialEq)]
pub struct Split {
    /// The first pairs, in order, as dumplings (at most the `keep` given to [`split`]).
    pub dumplings: Vec<PacketDumpling>,
    /// Well-formed pairs after those: scanned and counted, never copied (a hostile chef
    /// answered 3 M tiny pairs in 18 MB of text; each became a `String` and a record here,
    /// ~100 bytes of kitchen memory per 6 bytes of answer, outside every chef budget,
    /// before the per-call cap dropped all but 1 024 of them).
    pub unkept: usize,
    /// When the text is not a JSON array of `[packet-index, payload]` pairs: what is wrong
    /// and where (the pairs before that point are kept or counted).
    pub fault: Option<String>,
}

/// [`split`] for an answer given as bytes (`packed-json-bytes`): bytes that are not UTF-8
/// end the answer there (the pairs before them are kept; the fault names the byte).
pub fn split_bytes(bytes: &[u8], keep: usize) -> Split {
    match super::chef_text::utf8_str(bytes) {
        Ok(text) => split(text, keep),
        Err(e) => {
            let valid = e.valid_up_to();
            // The prefix is valid UTF-8 by construction; split it and keep what it holds.
            let prefix = split(
                std::str::from_utf8(&bytes[..valid]).unwrap_or_default(),
                keep,
            );
            Split {
                fault: Some(format!("the answer is not UTF-8 at byte {valid}")),
                ..prefix
            }
        }
    }
}

/// The pairs of an answer, in order: the first `keep` as dumplings, the rest counted (see
/// [`Split`]).
pub fn split(text: &str, keep: usize) -> Split {
    let mut out = Split::default();
    let fault = Scanner {
        b: text.as_bytes(),
        pos: 0,
    }
    .pairs(text, keep, &mut out)
    .err();
    out.fault = fault;
    out
}

struct Scanner<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Scanner<'_> {
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.pos) {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.b.get(self.pos).copied()
    }

    fn expect(&mut self, c: u8, what: &str) -> Result<(), String> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(format!("expected {what} at byte {}", self.pos))
        }
    }

    /// `[` pair (`,` pair)* `]`, then nothing but whitespace.
    fn pairs(&mut self, text: &str, keep: usize, out: &mut Split) -> Result<(), String> {
        self.expect(b'[', "'[' opening the answer")?;
        if self.peek() == Some(b']') {
            self.pos += 1;
        } else {
            loop {
                self.expect(b'[', "'[' opening a [packet-index, payload] pair")?;
                let packet_index = self.index()?;
                self.expect(b',', "',' after the packet index")?;
                self.ws();
                let start = self.pos;
                self.value()?;
                let payload = text
                    .get(start..self.pos)
                    .ok_or_else(|| format!("payload at byte {start} splits a character"))?;
                self.expect(b']', "']' closing the pair")?;
                if out.dumplings.len() < keep {
                    out.dumplings.push(PacketDumpling {
                        packet_index,
                        payload: payload.to_owned(),
                    });
                } else {
                    out.unkept += 1;
                }
                match self.peek() {
                    Some(b',') => self.pos += 1,
                    Some(b']') => {
                        self.pos += 1;
                        break;
                    }
                    _ => return Err(format!("expected ',' or ']' at byte {}", self.pos)),
                }
            }
        }
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(format!("text after the answer at byte {}", self.pos)),
        }
    }

    /// A packet index: decimal digits fitting a u32.
    fn index(&mut self) -> Result<u32, String> {
        self.ws();
        let start = self.pos;
        while self.b.get(self.pos).is_some_and(u8::is_ascii_digit) {
            self.pos += 1;
        }
        std::str::from_utf8(&self.b[start..self.pos])
            .ok()
            .and_then(|d| d.parse::<u32>().ok())
            .ok_or_else(|| format!("expected a packet index (u32) at byte {start}"))
    }

    /// Skip one value: its extent only (strings, brackets and scalars); whether it is
    /// valid JSON is the payload check's job. Iterative, so nesting costs no stack.
    fn value(&mut self) -> Result<(), String> {
        let start = self.pos;
        let mut depth = 0usize;
        loop {
            let Some(&c) = self.b.get(self.pos) else {
                return Err(format!("payload at byte {start} is not closed"));
            };
            match c {
                b'"' => self.string()?,
                b'[' | b'{' => {
                    depth += 1;
                    self.pos += 1;
                }
                b']' | b'}' if depth > 0 => {
                    depth -= 1;
                    self.pos += 1;
                }
                // The end of a scalar, or of the value when it was a container.
                b',' | b']' | b'}' | b' ' | b'\t' | b'\n' | b'\r' if depth == 0 => break,
                _ => self.pos += 1,
            }
            if depth == 0 && matches!(self.b.get(self.pos - 1), Some(b']' | b'}' | b'"')) {
                break;
            }
        }
        if self.pos == start {
            return Err(format!("expected a payload at byte {start}"));
        }
        Ok(())
    }

    /// Skip a string from its opening quote to just past its closing one.
    fn string(&mut self) -> Result<(), String> {
        let start = self.pos;
        self.pos += 1;
        loop {
            match self.b.get(self.pos..).and_then(|rest| {
                rest.iter()
                    .position(|&c| c == b'"' || c == b'\\')
                    .map(|i| (i, rest[i]))
            }) {
                Some((i, b'\\')) => self.pos += i + 2,
                Some((i, _)) => {
                    self.pos += i + 1;
                    return Ok(());
                }
                None => return Err(format!("string at byte {start} is not closed")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Vec<(u32, String)> {
        let Split {
            dumplings, fault, ..
        } = split(text, usize::MAX);
        assert_eq!(fault, None, "{text}");
        dumplings
            .into_iter()
            .map(|d| (d.packet_index, d.payload))
            .collect()
    }

    #[test]
    fn pairs_come_back_in_order_with_their_text() {
        assert_eq!(pairs("[]"), []);
        assert_eq!(pairs(" [ ] \n"), []);
        assert_eq!(
            pairs(r#"[[0, {"a": [1, {"b": "]}\"["}]}], [7,"x"],[8,-1.5e3] ,[9 , null],[10,[]]]"#),
            [
                (0, r#"{"a": [1, {"b": "]}\"["}]}"#.to_owned()),
                (7, r#""x""#.to_owned()),
                (8, "-1.5e3".to_owned()),
                (9, "null".to_owned()),
                (10, "[]".to_owned()),
            ]
        );
        // What Python's json and JS's JSON.stringify write.
        assert_eq!(
            pairs(r#"[[3, {"lookup": {"hostname": "caf\u00e9", "when": 1.5}}]]"#),
            [(
                3,
                r#"{"lookup": {"hostname": "caf\u00e9", "when": 1.5}}"#.to_owned()
            )]
        );
        assert_eq!(
            pairs(r#"[[3,{"h":"café\\"}],[4,true]]"#),
            [(3, r#"{"h":"café\\"}"#.to_owned()), (4, "true".to_owned())]
        );
    }

    #[test]
    fn a_bytes_answer_splits_like_its_text_and_stops_at_bad_utf8() {
        let text = r#"[[0,{"lookup":{"hostname":"café.test","when":1.5}}],[4,"x"]]"#;
        let from_bytes = split_bytes(text.as_bytes(), 10);
        assert_eq!(from_bytes.fault, None);
        assert_eq!(from_bytes, split(text, 10));
        assert_eq!(from_bytes.dumplings.len(), 2);

        // A byte that is not UTF-8 inside the second pair: the first is kept.
        let mut bad = br#"[[0,"a"],[1,""#.to_vec();
        let at = bad.len();
        bad.extend_from_slice(b"\xff\"]]");
        let Split {
            dumplings, fault, ..
        } = split_bytes(&bad, 10);
        assert_eq!(dumplings.len(), 1);
        assert_eq!(dumplings[0].payload, r#""a""#);
        assert_eq!(fault, Some(format!("the answer is not UTF-8 at byte {at}")));
    }

    #[test]
    fn pairs_past_the_kept_ones_are_counted_not_copied() {
        let pair = "[0,0],";
        let text = format!("[{}[1,1]]", pair.repeat(100_000));
        let out = split(&text, 1024);
        assert_eq!(out.fault, None);
        assert_eq!(out.dumplings.len(), 1024);
        assert_eq!(out.unkept, 100_001 - 1024);
        // The kept dumplings' strings are all the kitchen holds: a few bytes each here,
        // not one allocation per pair of the answer.
        assert!(
            out.dumplings.capacity() < 4096,
            "{}",
            out.dumplings.capacity()
        );
        let bytes = split_bytes(text.as_bytes(), 0);
        assert_eq!((bytes.dumplings.len(), bytes.unkept), (0, 100_001));
    }

    #[test]
    fn deep_nesting_costs_no_stack() {
        let deep = format!("[[1,{}{}]]", "[".repeat(100_000), "]".repeat(100_000));
        let got = pairs(&deep);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1.len(), 200_000);
    }

    #[test]
    fn malformed_answers_keep_the_pairs_before_the_fault() {
        for (text, kept) in [
            ("", 0),
            ("{}", 0),
            ("[1]", 0),
            ("[[1]]", 0),
            ("[[-1,2]]", 0),
            ("[[4294967296,2]]", 0),
            ("[[1,2,3]]", 0),
            ("[[1,]]", 0),
            ("[[1,\"open]]", 0),
            ("[[1,[2]]", 1),
            ("[[1,2]] x", 1),
            ("[[1,2],[3,4]", 2),
            ("[[1,2],[3,4],]", 2),
            ("[[1,2][3,4]]", 1),
        ] {
            let out = split(text, usize::MAX);
            assert!(out.fault.is_some(), "{text:?} was accepted");
            assert_eq!(out.dumplings.len(), kept, "{text:?}");
            // Kept or counted, the same pairs before the fault.
            let counted = split(text, 0);
            assert_eq!(counted.unkept, kept, "{text:?}");
            assert_eq!(counted.fault, out.fault, "{text:?}");
        }
    }

    #[test]
    fn a_scalar_ends_at_whitespace_and_the_payload_check_sees_the_rest() {
        // "1 2" is not one value: the split takes "1" and then finds no ']'.
        assert!(split("[[0,1 2]]", 1).fault.is_some());
        // Invalid JSON inside a container is passed on whole; wrap_payload refuses it.
        assert_eq!(pairs("[[0,{nope}]]"), [(0, "{nope}".to_owned())]);
    }
}
