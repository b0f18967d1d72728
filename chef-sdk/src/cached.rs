//! [`CachedPayload`]: an interval payload serialised once and sent again, unchanged, until
//! the state it shows changes.
//!
//! Why: a chef that reports a whole table on every poke (`DNSLookupChef`'s
//! `lookups_seen`, up to 1000 names, ~40 KB) re-serialised it each time, although on
//! most pokes of a real capture nothing in it had changed (the kitchen pokes every few
//! dozen packets when capture time is sparse). The chef marks the cache stale where it
//! changes the table; the bytes sent are exactly what serialising the table gives.
//!
//! The text is not even sent again: to a kitchen that calls `interval-same` (chef API 0.2,
//! added within it), a cached text sent in the previous answer is answered as `same(i)`
//! ("payload i of my previous answer"), one number instead of a copy of the table for the
//! SDK, the guest's lowering, and the kitchen's lift and comparison (DNSLookupChef: ~38 KB,
//! 83 % of its pokes on a mixed corpus). Each text built gets a new stamp, so "sent in the
//! previous answer" is a comparison of two numbers.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::{Dumplings, Payload};

/// The stamp of the next text built (0 means "no stamp", never given).
static NEXT_STAMP: AtomicU64 = AtomicU64::new(1);

/// The JSON text of a payload, kept between pokes. Not part of a chef's saved state
/// (mark the field `#[serde(skip)]`): a restored chef starts with an empty cache.
#[derive(Debug, Default, Clone)]
pub struct CachedPayload {
    text: Option<String>,
    /// Names `text`: a new one for every text built (a clone of the cache keeps it: the
    /// same text).
    stamp: u64,
}

impl CachedPayload {
    /// Forget the cached text: call this wherever the state the payload shows changes.
    #[inline]
    pub fn invalidate(&mut self) {
        self.text = None;
    }

    /// True when a text is cached (nothing changed since it was made).
    pub fn is_fresh(&self) -> bool {
        self.text.is_some()
    }

    /// The payload: the cached text, or `build()` serialised (and cached) when the cache
    /// is stale. A payload that fails to serialise is dropped and logged, as a handler's
    /// return value would be, and nothing is cached.
    pub fn payload<T: serde::Serialize>(&mut self, build: impl FnOnce() -> T) -> Cached<'_> {
        if self.text.is_none() {
            self.text = crate::to_json(&build());
            self.stamp = NEXT_STAMP.fetch_add(1, Ordering::Relaxed);
        }
        self.cached()
    }

    /// [`CachedPayload::payload`] for a chef that writes the JSON text itself: `build` is
    /// called only when the cache is stale (`None`: no payload, nothing cached).
    pub fn payload_text(&mut self, build: impl FnOnce() -> Option<String>) -> Cached<'_> {
        if self.text.is_none() {
            self.text = build();
            self.stamp = NEXT_STAMP.fetch_add(1, Ordering::Relaxed);
        }
        self.cached()
    }

    fn cached(&self) -> Cached<'_> {
        Cached {
            text: self.text.as_deref(),
            stamp: self.stamp,
        }
    }
}

/// One cached payload (or none), returned from a handler: the cache's text, borrowed (it
/// is copied only when it must be sent as text).
pub struct Cached<'a> {
    text: Option<&'a str>,
    stamp: u64,
}

impl Dumplings for Cached<'_> {
    #[inline]
    fn for_each_json(self, mut emit: impl FnMut(String)) {
        if let Some(text) = self.text {
            emit(text.to_owned());
        }
    }

    #[inline]
    fn for_each_payload(self, mut emit: impl FnMut(Payload<'_>)) {
        if let Some(text) = self.text {
            emit(Payload::Stamped {
                text,
                stamp: self.stamp,
            });
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The texts an answer sends (for this module's tests and `tally`'s).
    pub(crate) fn texts(c: Cached<'_>) -> Vec<String> {
        let mut out = Vec::new();
        c.for_each_json(|t| out.push(t));
        out
    }

    /// The stamps a cached answer carries (`None`: a payload with none).
    fn stamps(c: Cached<'_>) -> Vec<(String, Option<u64>)> {
        let mut out = Vec::new();
        c.for_each_payload(|p| {
            out.push(match p {
                Payload::Json(t) => (t, None),
                Payload::Stamped { text, stamp } => (text.to_owned(), Some(stamp)),
            })
        });
        out
    }

    #[test]
    fn a_text_keeps_its_stamp_until_it_is_built_again() {
        let mut cache = CachedPayload::default();
        let a = stamps(cache.payload(|| 1));
        let b = stamps(cache.payload(|| 2));
        assert_eq!(a, b, "not rebuilt: the same text and stamp");
        assert_eq!(a[0].0, "1");
        let copy = cache.clone();
        cache.invalidate();
        let c = stamps(cache.payload(|| 1));
        assert_eq!(c[0].0, "1");
        assert_ne!(
            c[0].1, a[0].1,
            "rebuilt (even to the same text): a new stamp"
        );
        assert!(c[0].1.is_some_and(|s| s > 0));
        // Another cache never has the same stamp for another text.
        let mut other = CachedPayload::default();
        let d = stamps(other.payload_text(|| Some("[]".to_owned())));
        assert_ne!(d[0].1, c[0].1);
        // A clone is the same text under the same stamp.
        let mut copy = copy;
        assert_eq!(stamps(copy.payload(|| 3)), a);
        // Nothing to send: nothing, stamped or not.
        let mut none = CachedPayload::default();
        assert!(stamps(none.payload_text(|| None)).is_empty());
        assert!(texts(none.payload_text(|| None)).is_empty());
    }

    /// A chef whose poke sends its cached count.
    #[derive(Default)]
    struct Count {
        n: u32,
        cache: CachedPayload,
    }

    impl crate::Chef for Count {
        fn info() -> crate::ChefInfo {
            crate::ChefInfo::new("Count", "test")
        }
        fn on_interval(&mut self, _tick: crate::Tick) -> impl Dumplings {
            let n = self.n;
            self.cache.payload(|| n)
        }
    }

    #[test]
    fn a_text_sent_last_poke_is_answered_same() {
        use crate::__private::{on_interval, on_interval_same, IntervalPayload as P};
        let words = |v: Vec<P>| -> Vec<String> {
            v.into_iter()
                .map(|p| match p {
                    P::Json(t) => t,
                    P::Same(i) => format!("same {i}"),
                })
                .collect()
        };
        let mut chef = Count::default();
        assert_eq!(words(on_interval_same(&mut chef, 1, 1)), ["0"]);
        assert_eq!(words(on_interval_same(&mut chef, 2, 1)), ["same 0"]);
        assert_eq!(words(on_interval_same(&mut chef, 3, 1)), ["same 0"]);
        chef.n = 5;
        chef.cache.invalidate();
        assert_eq!(words(on_interval_same(&mut chef, 4, 1)), ["5"]);
        assert_eq!(words(on_interval_same(&mut chef, 5, 1)), ["same 0"]);
        // The handler's `on-interval` sends the text, and the next answer sends it too
        // (that kitchen kept nothing for `same`).
        assert_eq!(on_interval(&mut chef, 6, 1), ["5"]);
        assert_eq!(words(on_interval_same(&mut chef, 7, 1)), ["5"]);
        assert_eq!(words(on_interval_same(&mut chef, 8, 1)), ["same 0"]);
    }

    #[test]
    fn serialises_once_until_invalidated() {
        let mut cache = CachedPayload::default();
        let mut built = 0;
        let mut value = 1;
        for _ in 0..3 {
            let out = texts(cache.payload(|| {
                built += 1;
                serde_json::json!({ "n": value })
            }));
            assert_eq!(out, [r#"{"n":1}"#]);
        }
        assert_eq!(built, 1);
        value = 2;
        cache.invalidate();
        assert!(!cache.is_fresh());
        let out = texts(cache.payload(|| serde_json::json!({ "n": value })));
        assert_eq!(out, [r#"{"n":2}"#]);
        assert!(cache.is_fresh());
    }
}
