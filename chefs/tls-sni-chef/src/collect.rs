//! Collects the TLS record at the start of each client stream from the kitchen's stream
//! chunks: borrowed straight from the chunk when one chunk holds the whole record (the
//! common case), else copied into a small per-connection buffer until it is whole.

use std::borrow::Cow;

use chef_sdk::bounded::BoundedMap;
use chef_sdk::state::Bytes;
use serde::{Deserialize, Serialize};

/// Stream bytes the chef asks for per direction: one TLS record (header + at most
/// 2^14 bytes of plaintext) is the largest ClientHello it reads.
pub const STREAM_BYTES: u32 = 5 + (1 << 14);

/// Hellos being collected at once (connections whose hello is still incomplete); the least
/// recently touched is dropped first.
pub const MAX_PENDING: usize = 256;

/// Most bytes the hellos being collected take in a hot-reload snapshot (hex, so about
/// 900 KiB of hello bytes: every hello in flight on an ordinary link; under a flood of
/// half-sent hellos the least recently touched are left out, as if evicted). With the
/// names and the proxy preludes, under the kitchen's default 4 MiB cap.
pub const PENDING_STATE_BUDGET: usize = 1792 << 10;

/// Length of the record starting `bytes` (header included), once its header is there.
fn record_len(bytes: &[u8]) -> Option<usize> {
    let len = bytes.get(3..5)?;
    Some(5 + usize::from(u16::from_be_bytes([len[0], len[1]])))
}

/// Could these be the first bytes of a TLS handshake record? (Content type 22, major 3.)
fn starts_like_handshake(bytes: &[u8]) -> bool {
    bytes.first() == Some(&0x16) && bytes.get(1).is_none_or(|&v| v == 3)
}

/// Per-connection buffers of incomplete hello records (carried across a hot reload, so a
/// hello split around the reload is still seen whole).
#[derive(Serialize, Deserialize)]
pub struct HelloCollector {
    pending: BoundedMap<u64, Bytes>,
}

impl Default for HelloCollector {
    fn default() -> Self {
        HelloCollector {
            pending: BoundedMap::new(MAX_PENDING).with_state_budget(PENDING_STATE_BUDGET),
        }
    }
}

impl HelloCollector {
    /// Whether `flow`'s hello is being collected (more of it is needed). Does not touch the
    /// recency order.
    pub fn collecting(&self, flow: u64) -> bool {
        self.pending.get(&flow).is_some()
    }

    /// Hellos dropped unfinished since the chef started (the least recently touched, to make
    /// room for a new one past [`MAX_PENDING`], or left out of a hot-reload snapshot): their
    /// server names are never seen.
    pub fn evicted(&self) -> u64 {
        self.pending.evicted()
    }

    /// Re-applies this version's bounds to a restored collector.
    pub fn restored(&mut self) {
        self.pending.set_capacity(MAX_PENDING);
        self.pending.set_state_budget(PENDING_STATE_BUDGET);
    }
}

impl HelloCollector {
    /// Takes one chunk of a client stream (`flow` id, stream `offset`, bytes missing before
    /// it, its bytes, whether the stream ends with it). Returns the record at the start of
    /// the stream once it is whole, or, when the stream ends or loses bytes first, what
    /// arrived of it (a truncated record the parser reads as far as it goes).
    pub fn push<'d>(
        &mut self,
        flow: u64,
        offset: u64,
        gap_before: u64,
        data: &'d [u8],
        last: bool,
    ) -> Option<Cow<'d, [u8]>> {
        let cap = STREAM_BYTES as usize;
        if let Some(buf) = self.pending.get_mut(&flow) {
            if gap_before == 0 {
                // First complete the 5-byte header, then the record it announces.
                let mut rest = data;
                loop {
                    let target = record_len(buf).map_or(5, |n| n.min(cap));
                    if buf.len() >= target || rest.is_empty() {
                        break;
                    }
                    let take = (target - buf.len()).min(rest.len());
                    buf.extend_from_slice(&rest[..take]);
                    rest = &rest[take..];
                }
                let whole = record_len(buf).is_some_and(|n| buf.len() >= n.min(cap));
                if !whole && !last {
                    return None;
                }
            }
            return self.pending.remove(&flow).map(|b| Cow::Owned(b.0));
        }
        if offset != 0 || gap_before != 0 || !starts_like_handshake(data) {
            return None;
        }
        match record_len(data) {
            Some(n) if data.len() >= n => return Some(Cow::Borrowed(&data[..n])),
            _ if last => return Some(Cow::Borrowed(data)),
            _ => {}
        }
        self.pending.insert(flow, Bytes(data.to_vec()));
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(len: usize) -> Vec<u8> {
        let mut r = vec![0x16, 3, 1];
        r.extend_from_slice(&(len as u16).to_be_bytes());
        r.extend((0..len).map(|i| i as u8));
        r
    }

    #[test]
    fn every_split_yields_the_whole_record_once() {
        let rec = record(1900);
        let mut stream = rec.clone();
        stream.extend_from_slice(b"after the record");
        for split in 1..stream.len() {
            let mut c = HelloCollector::default();
            let first = c.push(7, 0, 0, &stream[..split], false);
            let got = match first {
                Some(b) => b.into_owned(),
                None => c
                    .push(7, split as u64, 0, &stream[split..], false)
                    .expect("whole after the second chunk")
                    .into_owned(),
            };
            assert_eq!(got, rec, "split {split}");
            assert!(c.pending.is_empty());
        }
    }

    #[test]
    fn many_small_chunks_and_a_gap() {
        let rec = record(300);
        let mut c = HelloCollector::default();
        let mut out = None;
        for (i, piece) in rec.chunks(1).enumerate() {
            if let Some(b) = c.push(1, i as u64, 0, piece, false) {
                out = Some(b.into_owned());
            }
        }
        assert_eq!(out, Some(rec.clone()));
        // Bytes lost after 100: the first 100 come back, truncated.
        assert!(c.push(2, 0, 0, &rec[..100], false).is_none());
        let got = c.push(2, 150, 50, &rec[150..], false).map(Cow::into_owned);
        assert_eq!(got, Some(rec[..100].to_vec()));
        // Not a handshake, or not the stream's start: ignored, nothing kept.
        assert!(c.push(3, 0, 0, b"GET / HTTP/1.1\r\n", false).is_none());
        assert!(c.push(4, 10, 0, &rec, false).is_none());
        assert!(c.pending.is_empty());
    }
}
