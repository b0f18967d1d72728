//! [`PayloadMemo`]: one chef's last interval payload and what checking it gave, so the
//! same payload sent again (a table that did not change since the last poke) is wrapped
//! after a byte comparison instead of a second check.
//!
//! Why: interval chefs send their whole table on every poke (`DNSLookupChef`'s
//! `lookups_seen`, ~40 KB), and on a capture with sparse traffic the kitchen pokes every
//! few dozen packets, mostly with nothing changed. The check ([`crate::wrap_checked`]) is
//! a function of the payload's bytes alone (the envelope around it adds one level of
//! depth whatever its strings hold, and its size is checked again on every message), so a
//! byte-identical payload checks the same: the memo keeps the compacted text it gave and
//! reuses it. The output is unchanged. The memo takes the chef's payload by value and keeps
//! that very string (no copy of a changed table).
//!
//! A payload that differs from the last one is checked, but when the last one took the
//! canonical fast path its scan is resumed around the bytes that differ ([`Trace`]) instead
//! of run over the whole payload: the same answer, most of a large table not scanned again.
//!
//! A memo may also hold a payload that was not checked ([`PayloadMemo::hold`]: one the
//! kitchen refused for an output budget before checking it), so that a chef's "the same as
//! payload i of my previous answer" (`interval-same`) can be wrapped later
//! ([`PayloadMemo::wrap_held`]) exactly as if the text had been sent again.

use crate::resume::Trace;
use crate::{check_wrapped, wrap_head, Driver, EnvelopeHead, Head, WrapError};

/// One payload that passed [`crate::wrap_checked`] and its compacted form.
#[derive(Debug, Default, Clone)]
pub struct PayloadMemo {
    /// The last payload that passed the check, as the chef sent it.
    payload: String,
    /// Its compacted text when that differs from `payload` (`None`: identical, the usual
    /// case for serde's output).
    compact: Option<String>,
    /// Whether `payload` holds a checked payload.
    valid: bool,
    /// Whether `payload` holds a payload not checked yet ([`Self::hold`]); never with
    /// `valid`.
    unchecked: bool,
    /// Whether `payload` took the canonical fast path, and then where its scan can be
    /// resumed (`trace`).
    traced: bool,
    /// The canonical scan's states in `payload` (see [`Trace`]), when `traced`.
    trace: Trace,
}

/// A memo's checked payload lent out ([`PayloadMemo::lend`]): only the memo makes one, so
/// holding one means these bytes passed the check. The kitchen lends it to the lift of a
/// chef's next answer, which compares the chef's bytes with it where they lie and, when
/// they are the same, gives this back instead of copying them.
#[derive(Debug)]
pub struct CheckedPayload {
    payload: String,
    compact: Option<String>,
    /// The memo's `traced` and `trace` for this payload (they go back with it).
    traced: bool,
    trace: Trace,
}

impl CheckedPayload {
    /// The payload as the chef sent it.
    pub fn text(&self) -> &str {
        &self.payload
    }
}

impl PayloadMemo {
    /// Lend the last checked payload out (the memo holds none until it comes back through
    /// [`Self::restore`] or [`Self::wrap_repeat`]; a payload wrapped meanwhile is checked).
    pub fn lend(&mut self) -> Option<CheckedPayload> {
        if !self.valid {
            return None;
        }
        self.valid = false;
        self.unchecked = false;
        Some(CheckedPayload {
            payload: std::mem::take(&mut self.payload),
            compact: self.compact.take(),
            traced: std::mem::take(&mut self.traced),
            trace: std::mem::take(&mut self.trace),
        })
    }

    /// Take a lent payload back unused.
    pub fn restore(&mut self, lent: CheckedPayload) {
        self.payload = lent.payload;
        self.compact = lent.compact;
        self.traced = lent.traced;
        self.trace = lent.trace;
        self.valid = true;
        self.unchecked = false;
    }

    /// Hold `payload` without checking it (the memo forgets what it held): a payload
    /// refused before its check, which [`Self::wrap_held`] may still wrap later.
    pub fn hold(&mut self, payload: String) {
        self.payload = payload;
        self.compact = None;
        self.valid = false;
        self.unchecked = true;
        self.traced = false;
        self.trace = Trace::default();
    }

    /// Forget what the memo holds (and free it).
    pub fn clear(&mut self) {
        *self = PayloadMemo::default();
    }

    /// The payload the memo holds, checked or not ([`Self::hold`]); `None` when it holds
    /// none (or has lent it out).
    pub fn held(&self) -> Option<&str> {
        (self.valid || self.unchecked).then_some(self.payload.as_str())
    }

    /// Wrap the payload the memo holds: what [`Self::wrap`] gives for that text sent again
    /// (compared, not checked, when it was checked before; checked now when it was only
    /// held). `Err(Invalid)` when it holds none.
    pub fn wrap_held(
        &mut self,
        head: &EnvelopeHead,
        creation_time: f64,
        driver: Driver,
    ) -> Result<String, WrapError> {
        if self.valid {
            return self.wrap_memo(head, creation_time, driver);
        }
        if !self.unchecked {
            return Err(WrapError::Invalid(
                <serde_json::Error as serde::de::Error>::custom("no payload held"),
            ));
        }
        self.unchecked = false;
        let payload = std::mem::take(&mut self.payload);
        self.wrap(head, creation_time, driver, payload)
    }

    /// Wrap a lent payload the chef sent again (what [`Self::wrap`] gives for a payload
    /// byte-identical to the memo's), and keep it as the last checked payload.
    pub fn wrap_repeat(
        &mut self,
        head: &EnvelopeHead,
        creation_time: f64,
        driver: Driver,
        lent: CheckedPayload,
    ) -> Result<String, WrapError> {
        self.restore(lent);
        self.wrap_memo(head, creation_time, driver)
    }

    /// The envelope of the memo's own (valid) payload.
    fn wrap_memo(
        &self,
        head: &EnvelopeHead,
        creation_time: f64,
        driver: Driver,
    ) -> Result<String, WrapError> {
        let body = self.compact.as_deref().unwrap_or(&self.payload);
        let mut out = wrap_head(Head::Cached(head), creation_time, driver, body.len())
            .map_err(WrapError::Invalid)?;
        out.push_str(body);
        out.push('}');
        // Its depth passed with this payload before; the size depends on the head.
        check_wrapped(&out, true)?;
        Ok(out)
    }

    /// [`crate::wrap_checked_with`], remembering the last payload that passed: a payload
    /// byte-identical to it is not checked again (only the new message's size is).
    pub fn wrap(
        &mut self,
        head: &EnvelopeHead,
        creation_time: f64,
        driver: Driver,
        payload: String,
    ) -> Result<String, WrapError> {
        if self.valid && self.payload == payload {
            return self.wrap_memo(head, creation_time, driver);
        }
        // Whether the canonical scan takes it: resumed from the last payload's scan around
        // what changed when that one took it, else from the start (recording its states).
        let fast = if self.valid && self.traced {
            self.trace.rescan(&self.payload, &payload)
        } else {
            self.trace.record(&payload)
        };
        self.valid = false;
        self.unchecked = false;
        self.traced = false;
        let (json, head) =
            crate::wrap_checked_known(Head::Cached(head), creation_time, driver, &payload, fast)?;
        // The compacted payload is what follows the head, up to the closing brace.
        let body = json.get(head..json.len().saturating_sub(1)).unwrap_or("");
        self.compact = (body != payload).then(|| body.to_owned());
        self.payload = payload;
        self.valid = true;
        self.traced = fast;
        Ok(json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn same(a: &Result<String, WrapError>, b: &Result<String, WrapError>) -> bool {
        match (a, b) {
            (Ok(a), Ok(b)) => a == b,
            (Err(a), Err(b)) => a.to_string() == b.to_string(),
            _ => false,
        }
    }

    #[test]
    fn repeats_give_exactly_what_a_fresh_check_gives() {
        let mut memo = PayloadMemo::default();
        let head = EnvelopeHead::new("C", Some("k"));
        let deep_ok = format!("{}{}", "[".repeat(126), "]".repeat(126));
        let too_deep = format!("{}{}", "[".repeat(127), "]".repeat(127));
        let big = format!("\"{}\"", "x".repeat(crate::MAX_MESSAGE_BYTES - 120));
        let payloads = [
            r#"{"lookups_seen":{"a.test":{"count":1,"latest":1.5}}}"#,
            r#"{"lookups_seen":{"a.test":{"count":1,"latest":1.5}}}"#,
            r#"{ "spaced" : [1, 2.50, "\u00e9"] }"#,
            r#"{ "spaced" : [1, 2.50, "\u00e9"] }"#,
            "not json",
            "not json",
            &deep_ok,
            &deep_ok,
            &too_deep,
            &too_deep,
            r#"{"a":1}"#,
            r#"{"a":1}"#,
            "",
            &big,
            &big,
        ];
        for (i, p) in payloads.iter().enumerate() {
            // Creation times of different lengths move the message size across the limit.
            for t in [1.0 + i as f64 * 0.25, 1.123_456_789_012_3e9] {
                let fresh = crate::wrap_checked("C", Some("k"), t, Driver::Interval, p);
                let memo_out = memo.wrap(&head, t, Driver::Interval, p.to_string());
                // A lent payload sent again gives the same, and the memo still knows it.
                if let Some(lent) = memo.lend() {
                    assert_eq!(lent.text(), *p, "only a checked payload is lent");
                    let again = memo.wrap_repeat(&head, t, Driver::Interval, lent);
                    assert!(same(&fresh, &again), "{p:.40}");
                    // Lent and restored unused: as before.
                    let lent = memo.lend().expect("kept after a repeat");
                    memo.restore(lent);
                }
                // While lent, a payload is checked afresh (never against an empty memo).
                let lent = memo.lend();
                let empty = memo.wrap(&head, t, Driver::Interval, String::new());
                assert!(matches!(empty, Err(WrapError::Invalid(_))));
                if let Some(lent) = lent {
                    memo.restore(lent);
                }
                assert!(
                    same(&fresh, &memo_out),
                    "{p:.40}: {fresh:.80?} vs {memo_out:.80?}"
                );
                // The result is what wrap_payload + check_message_limits give.
                let old = crate::wrap_payload("C", Some("k"), t, Driver::Interval, p);
                match (&old, &fresh) {
                    (Ok(o), Ok(f)) => {
                        assert_eq!(o, f);
                        assert!(crate::check_message_limits(o.as_bytes()).is_ok());
                    }
                    (Ok(o), Err(WrapError::Limit(e))) => {
                        assert_eq!(crate::check_message_limits(o.as_bytes()), Err(e.clone()));
                    }
                    (Err(o), Err(WrapError::Invalid(f))) => {
                        assert_eq!(o.to_string(), f.to_string())
                    }
                    _ => panic!("{p:.40}: wrap_payload {old:.80?}, wrap_checked {fresh:.80?}"),
                }
            }
        }
    }

    #[test]
    fn a_held_payload_wraps_as_the_same_text_sent_again() {
        let head = EnvelopeHead::new("C", Some("k"));
        let big = format!("\"{}\"", "x".repeat(crate::MAX_MESSAGE_BYTES - 120));
        let payloads = [
            r#"{"lookups_seen":{"a.test":{"count":1,"latest":1.5}}}"#,
            r#"{ "spaced" : [1, 2.50, "\u00e9"] }"#,
            "not json",
            "",
            &big,
        ];
        for p in payloads {
            for t in [1.0, 1.123_456_789_012_3e9] {
                let fresh = crate::wrap_checked("C", Some("k"), t, Driver::Interval, p);
                // Held unchecked (refused for a budget), then wrapped: checked now.
                let mut memo = PayloadMemo::default();
                assert!(memo.held().is_none());
                memo.hold(p.to_owned());
                assert_eq!(memo.held(), Some(p));
                assert!(memo.lend().is_none(), "an unchecked payload is never lent");
                let first = memo.wrap_held(&head, t, Driver::Interval);
                assert!(same(&fresh, &first), "{p:.40}");
                // Wrapped again: from what the check gave (or checked again if it failed).
                match &fresh {
                    Ok(_) => {
                        assert_eq!(memo.held(), Some(p));
                        let again = memo.wrap_held(&head, t, Driver::Interval);
                        assert!(same(&fresh, &again), "{p:.40} again");
                        // A clone wraps the same.
                        let mut copy = memo.clone();
                        assert!(same(&fresh, &copy.wrap_held(&head, t, Driver::Interval)));
                    }
                    Err(_) => assert!(memo.held().is_none(), "a refused payload is not held"),
                }
                // Checked with `wrap`, then held again: the memo forgets the checked one.
                let mut memo = PayloadMemo::default();
                let _ = memo.wrap(&head, t, Driver::Interval, p.to_owned());
                memo.hold("[1]".to_owned());
                assert_eq!(memo.held(), Some("[1]"));
                let one = crate::wrap_checked("C", Some("k"), t, Driver::Interval, "[1]");
                assert!(same(&one, &memo.wrap_held(&head, t, Driver::Interval)));
                memo.clear();
                assert!(memo.held().is_none());
                assert!(memo.wrap_held(&head, t, Driver::Interval).is_err());
            }
        }
    }

    #[test]
    fn changed_tables_give_exactly_what_a_fresh_check_gives() {
        // A table whose entries change, grow, shrink and break the canonical form (and are
        // mended), sent one after the other, with lend/restore around each as the kitchen
        // does; every answer is the fresh check's.
        let mut memo = PayloadMemo::default();
        let head = EnvelopeHead::new("DNSLookupChef", Some("k"));
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut rand = move |n: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n.max(1) as u64) as usize
        };
        let entry = |i: usize, c: usize| {
            let latest = 1_795_739_862.0 + (c * 31 % 999_999) as f64 / 1e6;
            let latest = serde_json::to_string(&latest).unwrap_or_default();
            format!(r#""h{i}.test":{{"count":{c},"latest":{latest}}}"#)
        };
        let mut counts: Vec<usize> = vec![1; 60];
        let mut spoil: Option<(usize, &str)> = None;
        for round in 0..3000 {
            match rand(6) {
                0 | 1 => {
                    let i = rand(counts.len());
                    counts[i] += 1;
                }
                2 => counts.push(1),
                3 if counts.len() > 1 => {
                    counts.remove(rand(counts.len()));
                }
                4 => {
                    let bad = [" ", "1e5", "\\u00e9", "-0", "", ",", "\"\\/\""];
                    spoil = Some((rand(counts.len()), bad[rand(bad.len())]));
                }
                _ => spoil = None,
            }
            let mut p = String::from(r#"{"lookups_seen":{"#);
            for (i, c) in counts.iter().enumerate() {
                if i > 0 {
                    p.push(',');
                }
                p.push_str(&entry(i, *c));
                if let Some((at, bad)) = spoil {
                    if at == i {
                        p.push_str(bad);
                    }
                }
            }
            p.push_str("}}");
            let t = 1.0 + round as f64 * 0.5;
            let fresh = crate::wrap_checked("DNSLookupChef", Some("k"), t, Driver::Interval, &p);
            let lent = memo.lend();
            if let Some(lent) = lent {
                memo.restore(lent);
            }
            let got = memo.wrap(&head, t, Driver::Interval, p.clone());
            assert!(same(&fresh, &got), "round {round}: {p:.80}");
            // The same table again: compared, not checked, and still the fresh answer.
            if rand(4) == 0 {
                let again = memo.wrap(&head, t, Driver::Interval, p.clone());
                assert!(same(&fresh, &again), "round {round} again");
            }
        }
    }
}
