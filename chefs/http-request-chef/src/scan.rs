//! Follows the requests of each client stream: finds each request head (request line,
//! headers, blank line) in the reassembled bytes, even when it spans several chunks, skips
//! its body (`Content-Length`), and expects the next request right after (keep-alive and
//! pipelining).
//!
//! A head is read straight from the chunk when one chunk holds it whole (the common case),
//! else collected in a per-connection buffer of at most [`MAX_HEAD`] bytes. A connection
//! stops being followed when its bytes stop looking like requests, when bytes are missing
//! (`gap-before`: the next head cannot be found), after a `chunked` request body, or when
//! its stream ends.
//!
//! The followed connections are the chef's state across a hot reload: a replaced chef
//! keeps following keep-alive connections (body bytes still to skip, a head half
//! collected). Their incomplete heads take at most [`CONNS_STATE_BUDGET`] bytes of the
//! snapshot (hex); beyond that the least recently active connections are left out, as if
//! evicted, so the snapshot stays under the kitchen's default `--chef-state-max-bytes`.

use chef_sdk::bounded::BoundedMap;
use chef_sdk::parse::http::{httparse, may_start_request, MAX_HEADERS};
use chef_sdk::state::Bytes;
use serde::{Deserialize, Serialize};

/// Stream bytes the chef asks for per direction (requests beyond the first MiB of a
/// connection are not seen).
pub const STREAM_BYTES: u32 = 1 << 20;

/// Longest request head collected; a longer one is reported as far as it arrived.
pub const MAX_HEAD: usize = 16 * 1024;

/// Connections followed at once (the least recently touched is dropped first).
pub const MAX_CONNECTIONS: usize = 1024;

/// Most bytes the followed connections take in a hot-reload snapshot (about 1.5 MiB of
/// incomplete heads, in hex).
pub const CONNS_STATE_BUDGET: usize = 3 << 20;

/// What the bytes at the start of a buffer are.
enum Head {
    /// A whole head of `len` bytes; then `body` bytes (None: a chunked body follows).
    Complete { len: usize, body: Option<u64> },
    /// The start of a head.
    Partial,
    /// Not an HTTP/1.x request head.
    Invalid,
}

fn head(bytes: &[u8]) -> Head {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(bytes) {
        Ok(httparse::Status::Complete(len)) => {
            let mut body = Some(0);
            for h in req.headers.iter() {
                if h.name.eq_ignore_ascii_case("content-length") {
                    let n = std::str::from_utf8(h.value)
                        .ok()
                        .and_then(|v| v.trim().parse::<u64>().ok());
                    body = body.and(n);
                } else if h.name.eq_ignore_ascii_case("transfer-encoding")
                    && h.value
                        .windows(7)
                        .any(|w| w.eq_ignore_ascii_case(b"chunked"))
                {
                    body = None;
                }
            }
            Head::Complete { len, body }
        }
        Ok(httparse::Status::Partial) => Head::Partial,
        Err(_) => Head::Invalid,
    }
}

/// One followed connection.
#[derive(Default, Serialize, Deserialize)]
struct Conn {
    /// An incomplete head.
    head: Bytes,
    /// Body bytes still to skip.
    skip: u64,
}

/// The requests of many client streams.
#[derive(Serialize, Deserialize)]
pub struct RequestScanner {
    conns: BoundedMap<u64, Conn>,
    /// Connections dropped to make room (past [`MAX_CONNECTIONS`]) while a request head was
    /// half collected, not yet reported ([`RequestScanner::take_heads_evicted`]): each is a
    /// request never seen. (Absent from snapshots of the version before it.)
    #[serde(default)]
    heads_evicted: u64,
}

impl Default for RequestScanner {
    fn default() -> Self {
        RequestScanner {
            conns: BoundedMap::new(MAX_CONNECTIONS).with_state_budget(CONNS_STATE_BUDGET),
            heads_evicted: 0,
        }
    }
}

impl RequestScanner {
    /// Whether `flow`'s client stream is still followed (a head or body expected). Once it
    /// is not, it never is again: only a stream's first chunk (offset 0) starts following.
    /// Does not touch the recency order.
    pub fn follows(&self, flow: u64) -> bool {
        self.conns.get(&flow).is_some()
    }

    /// Requests lost since the last call because their connection, a head half collected,
    /// was dropped to make room for a new one; the count starts again from zero.
    pub fn take_heads_evicted(&mut self) -> u64 {
        std::mem::take(&mut self.heads_evicted)
    }

    /// Re-applies this version's bounds to a restored scanner.
    pub fn restored(&mut self) {
        self.conns.set_capacity(MAX_CONNECTIONS);
        self.conns.set_state_budget(CONNS_STATE_BUDGET);
    }

    /// Takes one chunk of a client stream (`flow` id, stream `offset`, bytes missing before
    /// it, its bytes, whether the stream ends with it) and calls `found` with each request
    /// head it completes (or, at the end of the stream or past [`MAX_HEAD`], the part of a
    /// head that arrived).
    pub fn push(
        &mut self,
        flow: u64,
        offset: u64,
        gap_before: u64,
        data: &[u8],
        last: bool,
        mut found: impl FnMut(&[u8]),
    ) {
        if gap_before > 0 {
            self.conns.remove(&flow);
            return;
        }
        if offset == 0 {
            if !may_start_request(data) {
                // Not a request: never followed. Checked before inserting, so the many
                // streams that are not HTTP cost no insert and removal, and never push a
                // followed connection out of a full table.
                self.conns.remove(&flow);
                return;
            }
            if self.conns.len() >= self.conns.capacity() && !self.follows(flow) {
                // Full: the least recently touched connection makes room. A head it was
                // collecting is a request lost (an idle keep-alive connection loses
                // nothing sure, and is not counted).
                if self.conns.oldest().is_some_and(|(_, c)| !c.head.is_empty()) {
                    self.heads_evicted += 1;
                }
            }
            self.conns.insert(flow, Conn::default());
        }
        let Some(conn) = self.conns.get_mut(&flow) else {
            return;
        };
        let mut rest = data;
        let mut follow = true;
        while follow && !rest.is_empty() {
            if conn.skip > 0 {
                let n = rest
                    .len()
                    .min(usize::try_from(conn.skip).unwrap_or(usize::MAX));
                conn.skip -= n as u64;
                rest = &rest[n..];
                continue;
            }
            if conn.head.is_empty() {
                if !may_start_request(rest) {
                    follow = false;
                    break;
                }
                match head(rest) {
                    Head::Complete { len, body } => {
                        found(&rest[..len]);
                        rest = &rest[len..];
                        match body {
                            Some(n) => conn.skip = n,
                            None => follow = false,
                        }
                    }
                    Head::Partial if rest.len() >= MAX_HEAD => {
                        found(&rest[..MAX_HEAD]);
                        follow = false;
                    }
                    Head::Partial => {
                        conn.head.extend_from_slice(rest);
                        rest = &[];
                    }
                    Head::Invalid => follow = false,
                }
            } else {
                let old = conn.head.len();
                let take = rest.len().min(MAX_HEAD - old);
                conn.head.extend_from_slice(&rest[..take]);
                match head(&conn.head) {
                    Head::Complete { len, body } => {
                        found(&conn.head[..len]);
                        rest = &rest[len.saturating_sub(old)..];
                        conn.head.clear();
                        match body {
                            Some(n) => conn.skip = n,
                            None => follow = false,
                        }
                    }
                    Head::Partial if conn.head.len() >= MAX_HEAD => {
                        found(&conn.head);
                        follow = false;
                    }
                    Head::Partial => rest = &rest[take..],
                    Head::Invalid => follow = false,
                }
            }
        }
        if last && follow && !conn.head.is_empty() {
            // The stream ended inside a head: report what arrived of it.
            found(&conn.head);
        }
        if last || !follow {
            self.conns.remove(&flow);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heads(scanner: &mut RequestScanner, chunks: &[(u64, u64, &[u8], bool)]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for (offset, gap, data, last) in chunks {
            scanner.push(9, *offset, *gap, data, *last, |h| out.push(h.to_vec()));
        }
        out
    }

    const A: &[u8] = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n";
    const B: &[u8] = b"GET /b HTTP/1.1\r\nHost: y\r\n\r\n";

    /// Streams that are not HTTP, however many, do not push a followed connection out of a
    /// full table.
    #[test]
    fn streams_that_are_not_requests_evict_nothing() {
        let mut scanner = RequestScanner::default();
        let mut out = Vec::new();
        let followed = 0..MAX_CONNECTIONS as u64;
        for flow in followed.clone() {
            scanner.push(flow, 0, 0, &A[..20], false, |h| out.push(h.to_vec()));
        }
        for flow in 10_000..(10_000 + 4 * MAX_CONNECTIONS as u64) {
            scanner.push(flow, 0, 0, b"\x16\x03\x01\x02\x00", false, |h| {
                out.push(h.to_vec())
            });
            assert!(!scanner.follows(flow));
        }
        assert!(
            followed.clone().all(|f| scanner.follows(f)),
            "TLS evicted HTTP"
        );
        for flow in followed {
            scanner.push(flow, 20, 0, &A[20..], false, |h| out.push(h.to_vec()));
        }
        assert_eq!(out.len(), MAX_CONNECTIONS);
        assert!(out.iter().all(|h| h == A));
    }

    #[test]
    fn keep_alive_requests_at_every_split() {
        let mut stream = A.to_vec();
        stream.extend_from_slice(b"hello");
        stream.extend_from_slice(B);
        for split in 1..stream.len() {
            let mut s = RequestScanner::default();
            let got = heads(
                &mut s,
                &[
                    (0, 0, &stream[..split], false),
                    (split as u64, 0, &stream[split..], true),
                ],
            );
            assert_eq!(got, vec![A.to_vec(), B.to_vec()], "split {split}");
        }
    }

    #[test]
    fn gaps_non_http_and_chunked_bodies_stop_following() {
        let mut s = RequestScanner::default();
        let got = heads(
            &mut s,
            &[(0, 0, &B[..10], false), (20, 10, &B[20..], false)],
        );
        assert!(got.is_empty());
        let got = heads(
            &mut s,
            &[(0, 0, b"\x16\x03\x01hello", false), (8, 0, B, false)],
        );
        assert!(got.is_empty());
        let chunked =
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
        let mut stream = chunked.to_vec();
        stream.extend_from_slice(B);
        let got = heads(&mut s, &[(0, 0, &stream, false)]);
        assert_eq!(got.len(), 1);
        // A stream ending inside a head reports what arrived.
        let got = heads(&mut s, &[(0, 0, &B[..20], true)]);
        assert_eq!(got, vec![B[..20].to_vec()]);
        assert!(s.conns.is_empty());
    }
}
