//! Checking a dumpling whose payload repeats, byte for byte, one checked before, without
//! parsing that payload again.
//!
//! Why: a chef answers each poke with its whole table even when nothing changed (the
//! original's `DNSLookupChef` does, and so does ours: up to ~40 KB), so on the mixed corpus
//! 532 MB of the 670 MB a replay sends are such tables, 83 % of them the same bytes as the
//! chef's previous one. The hub checked every one with a full parse (most of its CPU), and
//! every eater parsed it again. Comparing bytes is ~50x cheaper than parsing them.
//!
//! How it stays exact. The kitchen writes `{"metadata":{...},"payload":X}`. For a message
//! `M` of that shape, let `P` be everything up to and including the first `,"payload":`
//! and `X` the rest but the final `}`. If `P + "0}"` is a JSON document, the `0` is a
//! member of the top-level object (a single `}` closes everything `P` opened), under the key
//! `"payload"`. If, besides, `X` is exactly one JSON value (checked once, on its own, when
//! it first repeats), then `M` is that same document with `X` in place of `0`: `M` is JSON,
//! its top-level members other than `payload` are `P`'s, so every field a check reads
//! (`metadata`, repeated keys included) is what `P + "0}"` gives, and its nesting is the
//! larger of `P + "0}"`'s and one more than `X`'s. Anything else (another shape, `X` that is
//! not one value, a payload nested deeper than [`MAX_REPEAT_DEPTH`], a message under
//! [`REPEAT_MIN_BYTES`]) takes the full check, so every answer is the full check's.
//!
//! Bounds: a memo keeps at most [`SLOTS`] payloads, one per chef name, each at most
//! [`MAX_KEPT_BYTES`] (so at most 1 MiB per memo, whatever the message size limit; a larger
//! payload is checked in full every time); the hub keeps one memo per kitchen connection.

use crate::check::{json_value_depth, verdict_with_depth};
use crate::{check_dumpling, check_dumpling_text, limits, CheckedDumpling, InvalidDumpling};

/// Messages shorter than this are checked in full (parsing them costs about what the
/// comparison's bookkeeping does).
pub const REPEAT_MIN_BYTES: usize = 1024;

/// Payloads nested deeper than this are checked in full every time, far from any parser's
/// recursion limit (`serde_json`'s 128) and from [`limits::MAX_JSON_DEPTH`].
pub const MAX_REPEAT_DEPTH: usize = 64;

/// Payloads kept, one per chef: enough for a kitchen's chefs that poke with tables.
pub const SLOTS: usize = 8;

/// Largest payload kept (a chef's table of 1 000 names is ~40 KB): a peer cannot make a memo
/// hold more than `SLOTS` x this.
pub const MAX_KEPT_BYTES: usize = 128 * 1024;

/// Where the envelope's payload starts is searched for only this far into the message (the
/// kitchen's metadata is ~150 bytes).
const HEAD_SEARCH_BYTES: usize = 4096;

/// The key that introduces the payload in the kitchen's envelope.
const PAYLOAD_KEY: &[u8] = b",\"payload\":";

/// `Some(start)` when `message` ends with `}` and has `,"payload":` within its first
/// [`HEAD_SEARCH_BYTES`]: the payload candidate is `message[start..message.len() - 1]`.
/// Only a guess at the shape; the caller proves it (module docs).
pub fn split_envelope(message: &[u8]) -> Option<usize> {
    if message.last() != Some(&b'}') {
        return None;
    }
    let head = &message[..message.len().min(HEAD_SEARCH_BYTES)];
    let at = memchr::memmem::find(head, PAYLOAD_KEY)?;
    let start = at + PAYLOAD_KEY.len();
    (start < message.len()).then_some(start)
}

/// `message[..start]` followed by `0}`: the envelope with its payload replaced by `0`.
pub fn head_with_zero_payload(message: &[u8], start: usize) -> Vec<u8> {
    let mut head = Vec::with_capacity(start + 2);
    head.extend_from_slice(&message[..start]);
    head.extend_from_slice(b"0}");
    head
}

/// One chef's last payload.
#[derive(Debug)]
struct Slot {
    chef: String,
    payload: Vec<u8>,
    /// The payload's nesting, once it has been checked on its own as one JSON value.
    depth: Option<usize>,
}

/// The last payload (of at least [`REPEAT_MIN_BYTES`]) each recent chef sent on one
/// connection, for [`RepeatMemo::check`].
#[derive(Debug, Default)]
pub struct RepeatMemo {
    slots: Vec<Slot>,
    /// The slot replaced next when all are taken (round robin).
    next: usize,
    /// Messages answered from the memo.
    hits: u64,
}

impl RepeatMemo {
    /// An empty memo.
    pub fn new() -> Self {
        Self::default()
    }

    /// Messages answered without parsing their payload so far.
    pub fn hits(&self) -> u64 {
        self.hits
    }

    /// Exactly [`check_dumpling_text`]'s answer for `message` (`text` true: `message` is
    /// known UTF-8) or [`check_dumpling`]'s (`text` false), without parsing the payload when
    /// it repeats the same chef's previous one.
    pub fn check(
        &mut self,
        message: &[u8],
        text: bool,
    ) -> Result<CheckedDumpling, InvalidDumpling> {
        let full = || match (text, std::str::from_utf8(message)) {
            (true, Ok(message)) => check_dumpling_text(message),
            _ => check_dumpling(message),
        };
        self.check_with(message, text, full)
    }

    /// [`RepeatMemo::check`] for a message already held as `&str` (a text frame, or a
    /// binary one whose UTF-8 was checked): the same answer, without checking its UTF-8
    /// again (`check(bytes, true)` does, with `std`'s validator: ~8 % of the hub's CPU on
    /// the mixed corpus).
    pub fn check_text(&mut self, message: &str) -> Result<CheckedDumpling, InvalidDumpling> {
        self.check_with(message.as_bytes(), true, || check_dumpling_text(message))
    }

    /// The memo's work, with `full` the full check of `message`.
    fn check_with(
        &mut self,
        message: &[u8],
        text: bool,
        full: impl FnOnce() -> Result<CheckedDumpling, InvalidDumpling>,
    ) -> Result<CheckedDumpling, InvalidDumpling> {
        let Some(start) = split_envelope(message).filter(|_| message.len() >= REPEAT_MIN_BYTES)
        else {
            return full();
        };
        let head = head_with_zero_payload(message, start);
        let (Ok(checked), head_depth) = verdict_with_depth(&head, text) else {
            return full();
        };
        let payload = &message[start..message.len() - 1];
        if let Some(depth) = self.repeated(&checked.chef, payload) {
            if head_depth.max(depth + 1) <= limits::MAX_JSON_DEPTH {
                return Ok(checked);
            }
        }
        let verdict = full();
        if verdict.is_ok() {
            self.remember(&checked.chef, payload);
        }
        verdict
    }

    /// `Some(depth)` when `payload` is byte for byte `chef`'s remembered one and is one JSON
    /// value nested `depth` deep (at most [`MAX_REPEAT_DEPTH`]; checked on its own the first
    /// time it repeats). A remembered payload that is not such a value is forgotten.
    pub fn repeated(&mut self, chef: &str, payload: &[u8]) -> Option<usize> {
        let i = self.slots.iter().position(|s| s.chef == chef)?;
        if self.slots[i].payload != payload {
            return None;
        }
        if let Some(depth) = self.slots[i].depth {
            self.hits += 1;
            return Some(depth);
        }
        match json_value_depth(payload).filter(|d| *d <= MAX_REPEAT_DEPTH) {
            Some(depth) => {
                self.slots[i].depth = Some(depth);
                self.hits += 1;
                Some(depth)
            }
            // Not one value, or too deep to vouch for: never from the memo.
            None => {
                self.slots.swap_remove(i);
                self.next = 0;
                None
            }
        }
    }

    /// Keep `payload` (of a message the full check accepted, whose head named `chef`) as
    /// `chef`'s last, in its slot, else a free one, else the next one round robin.
    /// A payload over [`MAX_KEPT_BYTES`] is not kept (and `chef`'s older one is dropped).
    pub fn remember(&mut self, chef: &str, payload: &[u8]) {
        if payload.len() > MAX_KEPT_BYTES {
            self.slots.retain(|s| s.chef != chef);
            self.next = 0;
            return;
        }
        if let Some(slot) = self.slots.iter_mut().find(|s| s.chef == chef) {
            slot.payload.clear();
            slot.payload.extend_from_slice(payload);
            slot.depth = None;
            return;
        }
        let slot = Slot {
            chef: chef.to_owned(),
            payload: payload.to_vec(),
            depth: None,
        };
        if self.slots.len() < SLOTS {
            self.slots.push(slot);
        } else {
            let i = self.next % SLOTS;
            self.slots[i] = slot;
            self.next = (i + 1) % SLOTS;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(chef: &str, payload: &str) -> String {
        format!(
            r#"{{"metadata":{{"chef":"{chef}","kitchen":"k","creation_time":1.5,"driver":"interval"}},"payload":{payload}}}"#
        )
    }

    fn table(n: usize, salt: u64) -> String {
        let entries: Vec<String> = (0..n)
            .map(|i| {
                format!(
                    r#""name{i}.test":{{"count":{},"latest":1700000000.{i}}}"#,
                    i as u64 + salt
                )
            })
            .collect();
        format!(r#"{{"lookups_seen":{{{}}}}}"#, entries.join(","))
    }

    /// Answers on a sequence of messages: the memo's and the plain check's, side by side.
    fn agree(messages: &[Vec<u8>]) -> u64 {
        let mut memo = RepeatMemo::new();
        // `check_text` on its own memo (it sees only the text messages): the same answers.
        let mut text_memo = RepeatMemo::new();
        for (i, m) in messages.iter().enumerate() {
            for text in [true, false] {
                let plain = match (text, std::str::from_utf8(m)) {
                    (true, Ok(s)) => check_dumpling_text(s),
                    _ => check_dumpling(m),
                };
                if text && std::str::from_utf8(m).is_err() {
                    continue;
                }
                let fast = memo.check(m, text);
                assert_eq!(
                    format!("{fast:?}"),
                    format!("{plain:?}"),
                    "message {i} (text {text}): {}",
                    String::from_utf8_lossy(&m[..m.len().min(300)])
                );
                if let (true, Ok(s)) = (text, std::str::from_utf8(m)) {
                    assert_eq!(
                        format!("{:?}", text_memo.check_text(s)),
                        format!("{plain:?}"),
                        "message {i} (check_text)"
                    );
                }
            }
        }
        memo.hits()
    }

    #[test]
    fn a_repeated_table_is_answered_from_the_memo() {
        let a = envelope("DNSLookupChef", &table(60, 0)).into_bytes();
        let b = envelope("DNSLookupChef", &table(60, 1)).into_bytes();
        let other = envelope("TLSServerNameChef", &table(40, 7)).into_bytes();
        let hits = agree(&[
            a.clone(),
            other.clone(),
            a.clone(),
            a.clone(),
            b.clone(),
            other,
            b,
        ]);
        assert!(hits >= 4, "repeats answered from the memo: {hits}");
    }

    #[test]
    fn shapes_it_cannot_vouch_for_get_the_full_check() {
        let big = table(60, 0);
        let cases: Vec<String> = vec![
            // A second top-level member after the payload (X is not one value): the later
            // `metadata` must win exactly as the full check says.
            format!(
                r#"{{"metadata":{{"chef":"A","creation_time":1,"driver":"packet"}},"payload":{big},"metadata":{{"chef":"B","creation_time":1,"driver":"interval"}}}}"#
            ),
            format!(
                r#"{{"metadata":{{"chef":"A","creation_time":1,"driver":"packet"}},"payload":{big},"metadata":7}}"#
            ),
            // `,"payload":` inside metadata first.
            format!(
                r#"{{"metadata":{{"chef":"A","x":1,"payload":2,"creation_time":1,"driver":"packet"}},"payload":{big}}}"#
            ),
            // A hub-only key, a reserved-looking chef, a bad driver.
            format!(
                r#"{{"metadata":{{"chef":"A","creation_time":1,"driver":"packet","nd_seq":3}},"payload":{big}}}"#
            ),
            format!(
                r#"{{"metadata":{{"chef":"A","creation_time":1,"driver":"p"}},"payload":{big}}}"#
            ),
            // Not JSON after a repeat, trailing bytes, a deep payload.
            format!(
                r#"{{"metadata":{{"chef":"A","creation_time":1,"driver":"packet"}},"payload":{big}]}}"#
            ),
            format!(
                r#"{{"metadata":{{"chef":"A","creation_time":1,"driver":"packet"}},"payload":{}{big}{}}}"#,
                "[".repeat(126),
                "]".repeat(126)
            ),
            format!(
                r#"{{"metadata":{{"chef":"A","creation_time":1,"driver":"packet"}},"payload":{}{big}{}}}"#,
                "[".repeat(70),
                "]".repeat(70)
            ),
        ];
        let mut messages = Vec::new();
        for case in &cases {
            // Each after a valid message of the same chef whose payload is the same text up
            // to the final `}`, and twice, so the memo is primed when it matters.
            messages.push(envelope("A", &big).into_bytes());
            messages.push(case.clone().into_bytes());
            messages.push(case.clone().into_bytes());
        }
        agree(&messages);
    }

    /// Random edits of repeated messages (in the head, the payload and the closing brace),
    /// interleaved with their clean versions, agree with the full check on every one.
    #[test]
    fn agrees_with_the_full_check_on_random_edits() {
        let mut next = crate::test_rng::xorshift(0x9e37_79b9_7f4a_7c15);
        const EDITS: &[&str] = &[
            "",
            ",",
            "]",
            "}",
            "{",
            "[",
            "\"",
            "\\",
            "\\ud800",
            "1e400",
            "01",
            ":",
            "é",
            " ",
            ",\"payload\":",
            ",\"metadata\":{}",
            "\u{1}",
            "null",
        ];
        let bases = [
            envelope("DNSLookupChef", &table(50, 0)),
            envelope("PacketCountChef", &table(30, 3)),
            envelope("TopTalkersChef", r#"{"a":[1,2,{"b":"x"}]}"#),
        ];
        let mut messages = Vec::new();
        for _ in 0..6_000 {
            let base = &bases[(next() % 3) as usize];
            messages.push(base.clone().into_bytes());
            let mut edited = base.clone().into_bytes();
            let at = (next() % (edited.len() as u64 + 1)) as usize;
            let end = (at + (next() % 3) as usize).min(edited.len());
            let edit = EDITS[(next() % EDITS.len() as u64) as usize].as_bytes();
            edited.splice(at..end, edit.iter().copied());
            if next().is_multiple_of(4) {
                edited.truncate(edited.len().saturating_sub(1));
            }
            messages.push(edited.clone());
            messages.push(edited);
        }
        let hits = agree(&messages);
        assert!(
            hits > 1_000,
            "the clean repeats were answered from the memo: {hits}"
        );
    }

    #[test]
    fn a_memo_holds_at_most_its_slots() {
        let mut memo = RepeatMemo::new();
        for i in 0..40 {
            let m = envelope(&format!("Chef{i}"), &table(40, i));
            assert!(memo.check(m.as_bytes(), true).is_ok());
        }
        assert_eq!(memo.slots.len(), SLOTS);
    }

    #[test]
    fn a_payload_over_the_kept_size_is_checked_in_full_and_not_kept() {
        let big = envelope("Big", &format!("\"{}\"", "x".repeat(MAX_KEPT_BYTES + 1)));
        let mut memo = RepeatMemo::new();
        memo.remember("Big", b"1");
        for _ in 0..3 {
            assert!(memo.check(big.as_bytes(), true).is_ok());
        }
        assert_eq!(memo.hits(), 0);
        assert!(memo.slots.is_empty(), "nothing kept, the older one dropped");
    }

    #[test]
    fn the_split_needs_the_envelope_shape() {
        assert_eq!(split_envelope(b"{\"metadata\":{},\"payload\":1}"), Some(25));
        assert_eq!(split_envelope(b"{\"metadata\":{},\"payload\":1} "), None);
        assert_eq!(split_envelope(b"{\"metadata\":{}, \"payload\": 1}"), None);
        assert_eq!(split_envelope(b"{\"metadata\":{},\"payload\":}"), Some(25));
    }
}
