//! [`CachedPayload`]: an interval payload serialised once and sent again, unchanged, until
//! the state it shows changes.
//!
//! Why: a chef that reports a whole table on every poke (`DNSLookupChef`'s
//! `lookups_seen`, up to 1000 names, ~40 KB) re-serialised it each time, although on
//! most pokes of a real capture nothing in it had changed (the kitchen pokes every few
//! dozen packets when capture time is sparse). The chef marks the cache stale where it
//! changes the table; the bytes sent are exactly what serialising the table gives.

use crate::Dumplings;

/// The JSON text of a payload, kept between pokes. Not part of a chef's saved state
/// (mark the field `#[serde(skip)]`): a restored chef starts with an empty cache.
#[derive(Debug, Default, Clone)]
pub struct CachedPayload {
    text: Option<String>,
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
    pub fn payload<T: serde::Serialize>(&mut self, build: impl FnOnce() -> T) -> Cached {
        if self.text.is_none() {
            self.text = crate::to_json(&build());
        }
        Cached(self.text.clone())
    }

    /// [`CachedPayload::payload`] for a chef that writes the JSON text itself: `build` is
    /// called only when the cache is stale (`None`: no payload, nothing cached).
    pub fn payload_text(&mut self, build: impl FnOnce() -> Option<String>) -> Cached {
        if self.text.is_none() {
            self.text = build();
        }
        Cached(self.text.clone())
    }
}

/// One cached payload (or none), returned from a handler.
pub struct Cached(Option<String>);

impl Dumplings for Cached {
    #[inline]
    fn for_each_json(self, mut emit: impl FnMut(String)) {
        if let Some(text) = self.0 {
            emit(text);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(c: Cached) -> Vec<String> {
        let mut out = Vec::new();
        c.for_each_json(|t| out.push(t));
        out
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
