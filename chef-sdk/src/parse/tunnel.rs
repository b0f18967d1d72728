//! Proxy tunnels a client opens before its real conversation, so a stream chef can read
//! the hello or request that follows instead of giving up on a stream that does not start
//! with one: an HTTP `CONNECT` answered 2xx (after up to [`MAX_ATTEMPTS`] tries, as when a
//! proxy asks for credentials with a 407 first), a SOCKS4/4a `CONNECT` granted (`0x5a`), or
//! a SOCKS5 `CONNECT` (no authentication or user/password, RFC 1928/1929) answered
//! "succeeded". Wireshark follows the same three.
//!
//! [`TunnelFinder::push`] takes every stream chunk of both directions and routes it:
//! [`Route::Outer`] for streams that do not start like such a prelude (the chef reads them
//! as it always did), [`Route::Held`] for prelude bytes, and [`Route::Inner`] for the
//! client's bytes inside an open tunnel, with offsets counted from the tunnel's start (so
//! the chef's own parser reads them as a stream of their own). A tunnel opens only on the
//! proxy's yes: a refused `CONNECT` (407, 403, ...), a SOCKS refusal or anything the finder
//! does not understand ends the look-out, and the stream's later bytes are never read as
//! tunnelled. Client bytes sent before the proxy answers are held (at most [`MAX_HELD`])
//! and released when it says yes.
//!
//! Cost and bounds: every byte is looked at a constant number of times (a head's end is
//! searched from where the last search stopped); a prelude message is at most
//! [`MAX_MESSAGE`] bytes; at most [`MAX_PROBES`] connections are watched at once (least
//! recently touched dropped first), and once a tunnel is open its bytes pass through
//! without a copy. Only the stream bytes the chef already asked the kitchen for are read.
//!
//! The watched connections are part of a chef's state across a hot reload (a prelude or
//! held bytes half received stay valid); they take at most [`PROBES_STATE_BUDGET`] bytes
//! of the snapshot.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::http::{httparse, MAX_HEADERS};
use crate::bounded::BoundedMap;
use crate::flow::{Direction, StreamChunk};
use crate::state::Bytes;

/// Connections whose prelude is being watched, or whose tunnel is open, at once.
pub const MAX_PROBES: usize = 256;
/// Longest prelude message read (a `CONNECT` request head, a proxy's response head).
pub const MAX_MESSAGE: usize = 8 * 1024;
/// Most client bytes held after its prelude while the proxy has not answered yet (one
/// whole TLS record, header included).
pub const MAX_HELD: usize = 5 + (1 << 14);
/// `CONNECT` requests followed on one connection (a 407, then the same with credentials).
pub const MAX_ATTEMPTS: u8 = 4;
/// Most bytes the watched connections take in a hot-reload snapshot (hex).
pub const PROBES_STATE_BUDGET: usize = 256 << 10;

/// Which preludes a chef wants followed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Kinds {
    /// HTTP `CONNECT`.
    pub connect: bool,
    /// SOCKS4/4a and SOCKS5.
    pub socks: bool,
}

impl Kinds {
    /// HTTP `CONNECT` and SOCKS.
    pub const ALL: Kinds = Kinds {
        connect: true,
        socks: true,
    };
    /// SOCKS only (an HTTP chef reads `CONNECT` requests, and plain requests inside the
    /// tunnel, as requests of the proxy connection already).
    pub const SOCKS: Kinds = Kinds {
        connect: false,
        socks: true,
    };

    /// The client's first message, if `first` (the stream's first byte) may start one.
    fn first_ask(self, first: u8) -> Option<Ask> {
        match first {
            b'C' if self.connect => Some(Ask::ConnectHead),
            4 if self.socks => Some(Ask::Socks4Request),
            5 if self.socks => Some(Ask::Socks5Greeting),
            _ => None,
        }
    }
}

/// Bytes of the client's stream inside a tunnel.
#[derive(Debug, PartialEq, Eq)]
pub struct InnerChunk<'d> {
    /// Offset in the tunnelled stream (0 = the first byte after the prelude).
    pub offset: u64,
    /// Bytes missing right before this chunk.
    pub gap_before: u64,
    /// The bytes (borrowed from the chunk, or released from what was held).
    pub data: Cow<'d, [u8]>,
    /// Whether the client's stream ends here.
    pub last: bool,
}

/// Where a chunk goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Route<'d> {
    /// Not part of a tunnel: read the chunk as it is.
    Outer,
    /// A prelude's bytes, or the proxy's side of a tunnel: nothing to read.
    Held,
    /// The client's bytes inside an open tunnel.
    Inner(InnerChunk<'d>),
}

/// A chunk of the client's stream as a chef's parser reads it: (stream offset, bytes missing
/// before it, its bytes, whether the stream ends with it).
pub type ClientBytes<'a> = (u64, u64, &'a [u8], bool);

impl Route<'_> {
    /// What a chef's parser reads for the chunk routed here: `chunk` itself (its
    /// [`ClientBytes`]) when outer and sent by the client, the tunnelled bytes at tunnel
    /// offsets when inner, nothing for prelude bytes or the other direction.
    pub fn client_bytes<'a>(
        &'a self,
        from_client: bool,
        chunk: ClientBytes<'a>,
    ) -> Option<ClientBytes<'a>> {
        match self {
            Route::Held => None,
            Route::Outer => from_client.then_some(chunk),
            Route::Inner(inner) => Some((inner.offset, inner.gap_before, &inner.data, inner.last)),
        }
    }
}

/// The client message a probe expects next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Ask {
    ConnectHead,
    Socks4Request,
    Socks5Greeting,
    Socks5Auth,
    Socks5Request,
}

/// What the bytes at the start of a buffer are.
enum Parsed {
    /// More bytes are needed.
    Need,
    /// Not what was expected: stop watching.
    Bad,
    /// A whole message of this many bytes.
    Done(usize),
}

/// The proxy's answer to the client's message.
enum Answer {
    Need,
    Bad,
    /// An interim (1xx) response of this many bytes: the answer follows.
    Interim(usize),
    /// Another client message follows (`ask`), after this many bytes and `skip` body bytes.
    Next {
        len: usize,
        ask: Ask,
        skip: u64,
    },
    /// The tunnel is open after this many bytes.
    Open(usize),
}

/// One watched connection.
#[derive(Debug, Serialize, Deserialize)]
struct Probe {
    /// The client message expected (or answered, while `waiting`).
    ask: Ask,
    /// Whether that message is whole and the proxy's answer is awaited.
    waiting: bool,
    /// Whether the client asked for a tunnel (`CONNECT`, not SOCKS `BIND` or UDP).
    connect: bool,
    /// `CONNECT` requests seen.
    attempts: u8,
    /// Client bytes not consumed yet, from client stream offset `client_at`.
    client: Bytes,
    client_at: u64,
    /// Where the search for the end of the client's message resumes in `client`.
    client_scanned: usize,
    /// Whether the client's stream ended.
    client_done: bool,
    /// Proxy bytes not consumed yet, from proxy stream offset `server_at`.
    server: Bytes,
    server_at: u64,
    server_scanned: usize,
    /// Body bytes of a refusal still to skip before the next answer.
    skip: u64,
    /// Once open: the client stream offset where the tunnel starts.
    open_at: Option<u64>,
}

impl Probe {
    fn new(ask: Ask) -> Probe {
        Probe {
            ask,
            waiting: false,
            connect: false,
            attempts: 0,
            client: Bytes::default(),
            client_at: 0,
            client_scanned: 0,
            client_done: false,
            server: Bytes::default(),
            server_at: 0,
            server_scanned: 0,
            skip: 0,
            open_at: None,
        }
    }

    /// Reads messages and answers as far as the bytes go: `Some(true)` once the tunnel is
    /// open, `Some(false)` when it never will be, `None` while undecided.
    fn step(&mut self) -> Option<bool> {
        loop {
            if !self.waiting {
                match client_message(self.ask, &self.client, &mut self.client_scanned) {
                    Parsed::Need => {
                        return (self.client_done || self.client.len() > MAX_MESSAGE)
                            .then_some(false)
                    }
                    Parsed::Bad => return Some(false),
                    Parsed::Done(len) => {
                        self.connect = match self.ask {
                            Ask::ConnectHead => true,
                            Ask::Socks4Request | Ask::Socks5Request => self.client[1] == 1,
                            Ask::Socks5Greeting | Ask::Socks5Auth => self.connect,
                        };
                        if self.ask == Ask::ConnectHead {
                            self.attempts += 1;
                        }
                        self.client.drain(..len);
                        self.client_at += len as u64;
                        self.client_scanned = 0;
                        self.waiting = true;
                    }
                }
            }
            if self.skip > 0 {
                let n = self
                    .server
                    .len()
                    .min(usize::try_from(self.skip).unwrap_or(usize::MAX));
                self.server.drain(..n);
                self.server_at += n as u64;
                self.skip -= n as u64;
                if self.skip > 0 {
                    return None;
                }
            }
            let answer = answer(self.ask, &self.server, &mut self.server_scanned);
            let used = match answer {
                Answer::Need => return (self.server.len() > MAX_MESSAGE).then_some(false),
                Answer::Bad => return Some(false),
                Answer::Interim(len) => len,
                Answer::Next { len, ask, skip } => {
                    if ask == Ask::ConnectHead && self.attempts >= MAX_ATTEMPTS {
                        return Some(false);
                    }
                    self.ask = ask;
                    self.waiting = false;
                    self.skip = skip;
                    len
                }
                Answer::Open(len) => {
                    if !self.connect {
                        return Some(false);
                    }
                    self.server.drain(..len);
                    self.server_at += len as u64;
                    return Some(true);
                }
            };
            self.server.drain(..used);
            self.server_at += used as u64;
            self.server_scanned = 0;
        }
    }
}

/// The end of an HTTP head (just past its empty line) in `buf`, searching from `*scanned`
/// (where the previous search stopped: each byte is looked at about once).
fn head_end(buf: &[u8], scanned: &mut usize) -> Option<usize> {
    let from = (*scanned).min(buf.len());
    let end = buf[from..].iter().enumerate().find_map(|(i, &b)| {
        let i = from + i;
        if b != b'\n' {
            return None;
        }
        match (buf.get(i + 1), buf.get(i + 2)) {
            (Some(b'\n'), _) => Some(i + 2),
            (Some(b'\r'), Some(b'\n')) => Some(i + 3),
            _ => None,
        }
    });
    // A line feed in the last two bytes may yet start the empty line: look again there.
    *scanned = buf.len().saturating_sub(2);
    end
}

/// Whether `buf` starts with (as much as it holds of) `prefix`, and holds all of it.
fn prefix(buf: &[u8], prefix: &[u8]) -> Option<bool> {
    let n = buf.len().min(prefix.len());
    (buf[..n] == prefix[..n]).then_some(n == prefix.len())
}

/// A NUL-ended field of at most 255 bytes starting at `at`: the index past its NUL.
fn nul_field(buf: &[u8], at: usize) -> Parsed {
    let window = buf.get(at..).unwrap_or_default();
    match window.iter().take(256).position(|&b| b == 0) {
        Some(i) => Parsed::Done(at + i + 1),
        None if window.len() >= 256 => Parsed::Bad,
        None => Parsed::Need,
    }
}

/// A SOCKS5 address (type, address, port) at `at`: the index past it.
fn socks5_address(buf: &[u8], at: usize) -> Parsed {
    let len = match buf.get(at) {
        None => return Parsed::Need,
        Some(1) => 4,
        Some(4) => 16,
        Some(3) => match buf.get(at + 1) {
            None => return Parsed::Need,
            Some(&n) if n > 0 => 1 + usize::from(n),
            Some(_) => return Parsed::Bad,
        },
        Some(_) => return Parsed::Bad,
    };
    let end = at + 1 + len + 2;
    if buf.len() >= end {
        Parsed::Done(end)
    } else {
        Parsed::Need
    }
}

fn client_message(ask: Ask, buf: &[u8], scanned: &mut usize) -> Parsed {
    match ask {
        Ask::ConnectHead => {
            match prefix(buf, b"CONNECT ") {
                None => return Parsed::Bad,
                Some(false) => return Parsed::Need,
                Some(true) => {}
            }
            let Some(end) = head_end(buf, scanned) else {
                return Parsed::Need;
            };
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            match httparse::Request::new(&mut headers).parse(&buf[..end]) {
                Ok(httparse::Status::Complete(len)) => Parsed::Done(len),
                _ => Parsed::Bad,
            }
        }
        Ask::Socks4Request => {
            // VER 4, CMD, PORT(2), IP(4), USERID, NUL [, host name, NUL when IP is 0.0.0.x].
            if buf.len() < 9 {
                return Parsed::Need;
            }
            let Parsed::Done(end) = nul_field(buf, 8) else {
                return nul_field(buf, 8);
            };
            if buf[4..7] == [0, 0, 0] && buf[7] != 0 {
                nul_field(buf, end)
            } else {
                Parsed::Done(end)
            }
        }
        Ask::Socks5Greeting => match buf.get(1) {
            None => Parsed::Need,
            Some(0) => Parsed::Bad,
            Some(&n) if buf.len() >= 2 + usize::from(n) => Parsed::Done(2 + usize::from(n)),
            Some(_) => Parsed::Need,
        },
        Ask::Socks5Auth => {
            // VER 1, ULEN, user, PLEN, password.
            match buf.first() {
                None => return Parsed::Need,
                Some(1) => {}
                Some(_) => return Parsed::Bad,
            }
            let Some(&ulen) = buf.get(1) else {
                return Parsed::Need;
            };
            let at = 2 + usize::from(ulen);
            match buf.get(at) {
                None => Parsed::Need,
                Some(&plen) if buf.len() >= at + 1 + usize::from(plen) => {
                    Parsed::Done(at + 1 + usize::from(plen))
                }
                Some(_) => Parsed::Need,
            }
        }
        Ask::Socks5Request => {
            // VER 5, CMD, RSV 0, address.
            match (buf.first(), buf.get(2)) {
                (None, _) | (Some(5), None) => Parsed::Need,
                (Some(5), Some(0)) => socks5_address(buf, 3),
                _ => Parsed::Bad,
            }
        }
    }
}

fn answer(ask: Ask, buf: &[u8], scanned: &mut usize) -> Answer {
    let fixed = |len: usize, ok: &dyn Fn(&[u8]) -> Option<Answer>| -> Answer {
        if buf.len() < len {
            Answer::Need
        } else {
            ok(&buf[..len]).unwrap_or(Answer::Bad)
        }
    };
    match ask {
        Ask::ConnectHead => {
            match prefix(buf, b"HTTP/1.") {
                None => return Answer::Bad,
                Some(false) => return Answer::Need,
                Some(true) => {}
            }
            let Some(end) = head_end(buf, scanned) else {
                return Answer::Need;
            };
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut resp = httparse::Response::new(&mut headers);
            let Ok(httparse::Status::Complete(len)) = resp.parse(&buf[..end]) else {
                return Answer::Bad;
            };
            match resp.code.unwrap_or(0) {
                100..=199 => Answer::Interim(len),
                200..=299 => Answer::Open(len),
                code => {
                    // Refused: another CONNECT may follow, after this response's body.
                    let mut length = None;
                    for h in resp.headers.iter() {
                        if h.name.eq_ignore_ascii_case("content-length") {
                            let Some(n) = std::str::from_utf8(h.value)
                                .ok()
                                .and_then(|v| v.trim().parse::<u64>().ok())
                            else {
                                return Answer::Bad;
                            };
                            length = Some(n);
                        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                            // A chunked body is not followed.
                            return Answer::Bad;
                        }
                    }
                    let skip = match length {
                        _ if code == 204 || code == 304 => 0,
                        Some(n) => n,
                        // Without a length the body runs to the end of the connection.
                        None => return Answer::Bad,
                    };
                    Answer::Next {
                        len,
                        ask: Ask::ConnectHead,
                        skip,
                    }
                }
            }
        }
        // VN 0, CD (0x5a granted), PORT, IP.
        Ask::Socks4Request => fixed(8, &|m| {
            (m[0] == 0 && m[1] == 0x5a).then_some(Answer::Open(8))
        }),
        // VER 5, METHOD: 0 none, 2 user/password; anything else (0xff: none acceptable)
        // is not followed.
        Ask::Socks5Greeting => fixed(2, &|m| match (m[0], m[1]) {
            (5, 0) => Some(Answer::Next {
                len: 2,
                ask: Ask::Socks5Request,
                skip: 0,
            }),
            (5, 2) => Some(Answer::Next {
                len: 2,
                ask: Ask::Socks5Auth,
                skip: 0,
            }),
            _ => None,
        }),
        // VER 1, STATUS 0 = success.
        Ask::Socks5Auth => fixed(2, &|m| {
            (m[1] == 0).then_some(Answer::Next {
                len: 2,
                ask: Ask::Socks5Request,
                skip: 0,
            })
        }),
        // VER 5, REP (0 succeeded), RSV, bound address.
        Ask::Socks5Request => match (buf.first(), buf.get(1), buf.get(2)) {
            (None, _, _) | (_, None, _) | (_, _, None) => Answer::Need,
            (Some(5), Some(0), Some(0)) => match socks5_address(buf, 3) {
                Parsed::Done(end) => Answer::Open(end),
                Parsed::Need => Answer::Need,
                Parsed::Bad => Answer::Bad,
            },
            _ => Answer::Bad,
        },
    }
}

/// Watches the start of every TCP connection for a proxy prelude and routes each stream
/// chunk (see the module docs).
#[derive(Serialize, Deserialize)]
pub struct TunnelFinder {
    /// Set by the chef ([`TunnelFinder::new`], [`TunnelFinder::restored`]), not carried.
    #[serde(skip)]
    kinds: Kinds,
    probes: BoundedMap<u64, Probe>,
}

impl Default for TunnelFinder {
    /// A finder that follows nothing until [`TunnelFinder::restored`] names its kinds.
    fn default() -> Self {
        TunnelFinder::new(Kinds::default())
    }
}

impl TunnelFinder {
    /// Whether `flow`'s prelude is being watched: `None` not (no prelude at its start, or
    /// given up), `Some(false)` still in the prelude (the proxy's answer decides), `Some(true)`
    /// the tunnel is open. Does not touch the recency order (a chef deciding whether it is
    /// done with a direction must not change which prelude is evicted next).
    pub fn watching(&self, flow: u64) -> Option<bool> {
        self.probes.get(&flow).map(|p| p.open_at.is_some())
    }

    /// A finder for the preludes in `kinds`.
    pub fn new(kinds: Kinds) -> Self {
        TunnelFinder {
            kinds,
            probes: BoundedMap::new(MAX_PROBES).with_state_budget(PROBES_STATE_BUDGET),
        }
    }

    /// Re-applies this version's kinds and bounds to a restored finder.
    pub fn restored(&mut self, kinds: Kinds) {
        self.kinds = kinds;
        self.probes.set_capacity(MAX_PROBES);
        self.probes.set_state_budget(PROBES_STATE_BUDGET);
    }

    /// Connections watched or tunnelled now.
    pub fn len(&self) -> usize {
        self.probes.len()
    }

    /// Whether no connection is watched.
    pub fn is_empty(&self) -> bool {
        self.probes.is_empty()
    }

    /// Routes `chunk` ([`TunnelFinder::push`]) and hands `read` what a chef's parser
    /// reads of it ([`Route::client_bytes`]): the client's bytes of the stream itself, or
    /// those inside an open tunnel at tunnel offsets. `None` (and `read` not called) for
    /// prelude bytes and the proxy's or server's side.
    pub fn read_client_bytes<R>(
        &mut self,
        chunk: &StreamChunk<'_>,
        read: impl FnOnce(ClientBytes<'_>) -> R,
    ) -> Option<R> {
        let flow = chunk.flow();
        let outer = (
            chunk.offset(),
            chunk.gap_before(),
            chunk.data(),
            chunk.is_last(),
        );
        let route = self.push(flow.id, flow.direction, outer.0, outer.1, outer.2, outer.3);
        let from_client = flow.direction == Direction::FromOriginator;
        route.client_bytes(from_client, outer).map(read)
    }

    /// Routes one stream chunk: `flow` id, `direction`, stream `offset`, bytes missing
    /// before it, its bytes, whether its direction's stream ends with it.
    pub fn push<'d>(
        &mut self,
        flow: u64,
        direction: Direction,
        offset: u64,
        gap_before: u64,
        data: &'d [u8],
        last: bool,
    ) -> Route<'d> {
        let client = direction == Direction::FromOriginator;
        let Some(probe) = self.probes.get_mut(&flow) else {
            if !client || offset != 0 || gap_before != 0 {
                return Route::Outer;
            }
            let Some(ask) = data.first().and_then(|&b| self.kinds.first_ask(b)) else {
                return Route::Outer;
            };
            self.probes.insert(flow, Probe::new(ask));
            return self.push(flow, direction, offset, gap_before, data, last);
        };
        if let Some(at) = probe.open_at {
            if !client {
                return Route::Held;
            }
            if last {
                self.probes.remove(&flow);
            }
            return Route::Inner(InnerChunk {
                offset: offset.saturating_sub(at),
                gap_before,
                data: Cow::Borrowed(data),
                last,
            });
        }
        // Still in the prelude: every byte must follow on from the last one.
        let next = if client {
            probe.client_at + probe.client.len() as u64
        } else {
            probe.server_at + probe.server.len() as u64
        };
        if gap_before != 0 || offset != next {
            self.probes.remove(&flow);
            return Route::Outer;
        }
        let mut data = data;
        if !client && probe.server.is_empty() && probe.skip > 0 {
            // A refusal's body is skipped as it comes, not held.
            let n = data
                .len()
                .min(usize::try_from(probe.skip).unwrap_or(usize::MAX));
            data = &data[n..];
            probe.skip -= n as u64;
            probe.server_at += n as u64;
        }
        let buf = if client {
            &mut probe.client
        } else {
            &mut probe.server
        };
        if buf.len() + data.len() > MAX_MESSAGE + MAX_HELD {
            self.probes.remove(&flow);
            return Route::Outer;
        }
        buf.extend_from_slice(data);
        if client {
            probe.client_done |= last;
        }
        match probe.step() {
            None if !client && last => {
                // The proxy closed without saying yes.
                self.probes.remove(&flow);
                Route::Held
            }
            None => Route::Held,
            Some(false) => {
                self.probes.remove(&flow);
                Route::Outer
            }
            Some(true) => {
                let inner = std::mem::take(&mut probe.client);
                let ended = probe.client_done;
                probe.open_at = Some(probe.client_at);
                probe.server = Bytes::default();
                if ended {
                    self.probes.remove(&flow);
                }
                if inner.is_empty() && !ended {
                    return Route::Held;
                }
                Route::Inner(InnerChunk {
                    offset: 0,
                    gap_before: 0,
                    data: Cow::Owned(inner.0),
                    last: ended,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests;
