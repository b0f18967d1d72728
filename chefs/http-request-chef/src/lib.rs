//! `HTTPRequestChef`: one dumpling per plain-text HTTP/1.x request.
//!
//! Drivers: TCP streams only (chef API 0.2): the chef asks the kitchen for the first
//! [`STREAM_BYTES`] of each direction of every TCP connection (any port: HTTP runs on many;
//! a method-name check drops other streams at once) and reads the requests from the
//! client's reassembled bytes, so a request whose headers span several segments (long
//! cookies), arrive reordered or retransmitted is seen whole, and every request of a
//! keep-alive connection is seen, not only those starting a segment.
//!
//! Packet payload (driver `packet`: it answers traffic):
//!
//! ```json
//! {"http_request": {"method": "GET", "host": "dumpling.test:18080", "path": "/menu",
//!                   "user_agent": "curl/8.5.0", "client": "127.0.0.1:49418",
//!                   "server": "127.0.0.1:18080", "time": 1795739862.000052}}
//! ```
//!
//! `host` and `user_agent` are `null` when absent (or when the stream ended inside the
//! head); `path` is the request target as sent, cut to [`MAX_FIELD`] bytes like the other
//! strings. `client`/`server` are the connection's originator and responder; `time` is when
//! the head's last byte arrived.
//!
//! State: the connections being followed ([`scan::MAX_CONNECTIONS`], each with at most
//! [`scan::MAX_HEAD`] bytes of an incomplete head). Limits: see [`scan`] (a connection
//! stops being followed after missing bytes, a `chunked` request body or its first MiB);
//! HTTPS, HTTP/2 and HTTP/3 are not plain text and are not seen.
//!
//! Losses, counted: past [`scan::MAX_CONNECTIONS`] followed connections the least recently
//! active is dropped; when it held a half-received head, that request is lost. And one
//! connection reports at most [`MAX_REQUESTS_PER_CALL`] requests per call of the kitchen
//! (which takes at most 1024 dumplings from a call: one connection pipelining thousands
//! would otherwise crowd out every other connection's requests of the call). A dumpling
//! counts the requests so lost or left out since the previous dumpling (up to its own
//! chunk's), in fields beside `http_request`, each present only when non-zero; the chef
//! logs the first of each kind once:
//!
//! ```json
//! {"http_request": {...}, "pending_evicted": 1976, "requests_unreported": 4936}
//! ```
//!
//! Proxies: requests sent through a SOCKS4/4a or SOCKS5 tunnel are read too, once the
//! proxy granted the `CONNECT` ([`chef_sdk::parse::tunnel`]; a refused request is not a
//! tunnel). Through an HTTP proxy no tunnel needs finding: a `CONNECT` is itself a request
//! of the proxy connection, and plain requests sent inside the tunnel it opens follow it
//! on that connection like keep-alive requests (TLS inside it is not HTTP and ends the
//! following). `client` and `server` are the connection's ends (the client and its proxy).
//!
//! Hot reload: the followed connections carry over to the new version
//! (`export_stateful_chef!`; see [`scan`] for the snapshot's bound), so requests later on
//! a keep-alive connection, or a head split around the reload, are still seen; so do the
//! SOCKS preludes being watched (at most
//! [`chef_sdk::parse::tunnel::PROBES_STATE_BUDGET`] bytes; a snapshot of the version before
//! them is read with none watched, so `STATE_VERSION` stays 1).

pub mod scan;

pub use scan::{RequestScanner, STREAM_BYTES};

use std::net::SocketAddr;

use chef_sdk::bounded::BoundedMap;
use chef_sdk::flow::{Direction, FlowKey, FlowRef, IpAddress};
use chef_sdk::parse::http;
use chef_sdk::parse::tunnel::{Kinds, TunnelFinder};
use chef_sdk::{
    ipv4_addr, ipv6_addr, Chef, ChefInfo, Drivers, Dumplings, Interest, StreamChunk, Timestamp,
    TransportProtocol,
};
use serde::{Deserialize, Serialize};

/// Longest string field sent (longer ones are cut at a character boundary).
pub const MAX_FIELD: usize = 512;

/// Most requests one connection reports per `on-stream` call of the kitchen (the rest are
/// counted in `requests_unreported`): the kitchen takes at most 1024 dumplings from one
/// call, so one connection pipelining thousands would crowd out every other connection's
/// requests of the call.
pub const MAX_REQUESTS_PER_CALL: u32 = 64;

/// Connections whose requests one call counts (a call's chunks rarely span more; past it
/// the least recently counted starts again from zero).
const CALL_CONNECTIONS: usize = 4096;

/// Packet payload: `{"http_request": {...}}`, then the chef's loss counts since its
/// previous dumpling, each only when non-zero.
#[derive(Debug, Serialize)]
pub struct HttpDumpling {
    /// The request.
    pub http_request: Request,
    /// Requests lost since the previous dumpling: their connection was dropped from the
    /// followed ones (past [`scan::MAX_CONNECTIONS`]) with the head half received.
    #[serde(skip_serializing_if = "is_zero")]
    pub pending_evicted: u64,
    /// Requests found but not reported since the previous dumpling (up to this one's
    /// chunk): past [`MAX_REQUESTS_PER_CALL`] of one connection in one call of the kitchen.
    #[serde(skip_serializing_if = "is_zero")]
    pub requests_unreported: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One request (owned: a collected head does not outlive the call).
#[derive(Debug, Serialize)]
pub struct Request {
    /// Method.
    pub method: String,
    /// `Host` header.
    pub host: Option<String>,
    /// Request target.
    pub path: String,
    /// `User-Agent` header.
    pub user_agent: Option<String>,
    /// Client address and port.
    pub client: Option<SocketAddr>,
    /// Server address and port.
    pub server: Option<SocketAddr>,
    /// Capture time.
    pub time: Timestamp,
}

fn cut(s: &str) -> String {
    if s.len() <= MAX_FIELD {
        return s.to_owned();
    }
    let mut end = MAX_FIELD;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

fn ip(addr: &IpAddress) -> std::net::IpAddr {
    match *addr {
        IpAddress::V4(a) => std::net::IpAddr::V4(ipv4_addr(a)),
        IpAddress::V6(a) => std::net::IpAddr::V6(ipv6_addr(a)),
    }
}

/// The chef: the client streams it follows (its state across a reload, too).
#[derive(Serialize, Deserialize)]
pub struct HttpRequestChef {
    scanner: RequestScanner,
    /// SOCKS preludes being watched (absent from snapshots of the version before them).
    #[serde(default)]
    tunnels: TunnelFinder,
    /// Requests lost to evicted connections, not yet put in a dumpling (absent from
    /// snapshots of the version before it).
    #[serde(default)]
    pending_evicted: u64,
    /// Requests over the per-call cap, not yet put in a dumpling (absent from snapshots of
    /// the version before it).
    #[serde(default)]
    requests_unreported: u64,
    /// Requests reported per connection in the current call.
    #[serde(skip, default = "call_counts")]
    call: BoundedMap<u64, u32>,
    /// Whether an eviction loss was logged (once per instance).
    #[serde(skip)]
    evict_logged: bool,
    /// Whether the per-call cap was logged (once per instance).
    #[serde(skip)]
    cap_logged: bool,
}

fn call_counts() -> BoundedMap<u64, u32> {
    BoundedMap::new(CALL_CONNECTIONS)
}

/// Logs `message` if `*logged` is not yet set, and sets it (the kitchen's log; not in
/// native tests, where the import does not exist).
fn log_once(logged: &mut bool, message: impl FnOnce() -> String) {
    if !*logged {
        *logged = true;
        let message = message();
        #[cfg(target_family = "wasm")]
        chef_sdk::log::warn(&message);
        #[cfg(not(target_family = "wasm"))]
        let _ = message;
    }
}

impl Default for HttpRequestChef {
    fn default() -> Self {
        HttpRequestChef {
            scanner: RequestScanner::default(),
            tunnels: TunnelFinder::new(Kinds::SOCKS),
            pending_evicted: 0,
            requests_unreported: 0,
            call: call_counts(),
            evict_logged: false,
            cap_logged: false,
        }
    }
}

/// The dumpling for one request head sent by `key`'s originator.
pub fn request_dumpling(head: &[u8], key: &FlowKey, time: Timestamp) -> Option<HttpDumpling> {
    let req = http::request(head)?;
    Some(HttpDumpling {
        http_request: Request {
            method: cut(req.method),
            host: req.host.map(cut),
            path: cut(req.path),
            user_agent: req.user_agent.map(cut),
            client: Some(SocketAddr::new(ip(&key.originator), key.originator_port)),
            server: Some(SocketAddr::new(ip(&key.responder), key.responder_port)),
            time,
        },
        pending_evicted: 0,
        requests_unreported: 0,
    })
}

impl HttpRequestChef {
    /// Whether the chef still reads `flow`'s direction after the chunks it has had. The
    /// server's bytes matter only while a SOCKS prelude waits for the proxy's answer; the
    /// client's while a prelude is watched or its requests are followed (a stream that is
    /// not followed after its first chunk never is again). Everything else is given up
    /// (`done_with_direction`), so the kitchen stops reassembling it: most connections are
    /// not plain HTTP, and the responses are never read.
    pub fn wants_more(&self, flow: FlowRef) -> bool {
        match (flow.direction, self.tunnels.watching(flow.id)) {
            (Direction::FromResponder, prelude) => prelude == Some(false),
            (Direction::FromOriginator, Some(_)) => true,
            (Direction::FromOriginator, None) => self.scanner.follows(flow.id),
        }
    }

    /// The dumplings for the requests a client stream chunk completes (at most
    /// [`MAX_REQUESTS_PER_CALL`] per connection per call of the kitchen; a chunk made by
    /// hand is a call of its own).
    pub fn handle_chunk(&mut self, chunk: &StreamChunk<'_>) -> Vec<HttpDumpling> {
        let mut out = Vec::new();
        let flow = chunk.flow();
        let (key, time) = (chunk.key(), chunk.timestamp());
        if chunk.index_in_call().is_none_or(|i| i == 0) && !self.call.is_empty() {
            self.call.clear();
        }
        let (scanner, call) = (&mut self.scanner, &mut self.call);
        let mut over = 0u64;
        // The client's bytes: the stream itself, or the part inside a SOCKS tunnel (its
        // offsets counted from the tunnel's start, where the first request is).
        self.tunnels
            .read_client_bytes(chunk, |(offset, gap_before, data, last)| {
                scanner.push(flow.id, offset, gap_before, data, last, |head| {
                    if let Some(d) = request_dumpling(head, key, time) {
                        let n = call.get_or_insert_with(flow.id, || 0);
                        if *n < MAX_REQUESTS_PER_CALL {
                            *n += 1;
                            out.push(d);
                        } else {
                            over += 1;
                        }
                    }
                })
            });
        if over > 0 {
            self.requests_unreported += over;
            log_once(&mut self.cap_logged, || {
                format!(
                    "a connection sent more than {MAX_REQUESTS_PER_CALL} requests within one \
                     delivery: the rest are not reported, so that it does not crowd out \
                     other connections (counted in a dumpling's requests_unreported; logged \
                     once)"
                )
            });
        }
        let evicted = self.scanner.take_heads_evicted();
        if evicted > 0 {
            self.pending_evicted += evicted;
            log_once(&mut self.evict_logged, || {
                format!(
                    "more than {} connections with a request half-received at once: the \
                     least recently active are dropped and their requests lost (counted in \
                     a dumpling's pending_evicted; logged once)",
                    scan::MAX_CONNECTIONS
                )
            });
        }
        // The counts go with the chunk's last dumpling (the requests over the cap came
        // after its reported ones), or the next chunk's.
        if let Some(last) = out.last_mut() {
            last.pending_evicted = std::mem::take(&mut self.pending_evicted);
            last.requests_unreported = std::mem::take(&mut self.requests_unreported);
        }
        out
    }
}

impl Chef for HttpRequestChef {
    fn info() -> ChefInfo {
        ChefInfo::new(
            "HTTPRequestChef",
            "One dumpling per plain-text HTTP/1.x request: method, host, path, user agent",
        )
        .drivers(Drivers::empty())
        .interest(
            Interest::ANY
                .transport(&[TransportProtocol::Tcp])
                .stream_bytes(STREAM_BYTES),
        )
    }

    fn on_stream(&mut self, chunk: &StreamChunk<'_>) -> impl Dumplings {
        let out = self.handle_chunk(chunk);
        if !self.wants_more(chunk.flow()) {
            chunk.done_with_direction();
        }
        out
    }

    fn restored(&mut self) -> Result<(), String> {
        self.scanner.restored();
        self.tunnels.restored(Kinds::SOCKS);
        Ok(())
    }
}

chef_sdk::export_stateful_chef!(HttpRequestChef);

#[cfg(test)]
mod tests {
    use super::*;
    use chef_sdk::testing::{every_split, stream_honouring_verdicts};
    use chef_sdk::wit;

    fn key() -> wit::FlowKey {
        wit::FlowKey {
            transport: TransportProtocol::Tcp,
            originator: IpAddress::V4(0x0101_0101),
            responder: IpAddress::V4(0x0202_0202),
            originator_port: 5555,
            responder_port: 80,
        }
    }

    /// Client chunks of flow 1 over one arena: (offset, bytes, last).
    fn feed(chef: &mut HttpRequestChef, chunks: &[(u64, &[u8], bool)]) -> Vec<serde_json::Value> {
        let mut arena = Vec::new();
        let mut raws = Vec::new();
        for (i, (offset, bytes, last)) in chunks.iter().enumerate() {
            raws.push(wit::StreamChunk {
                flow: wit::FlowRef {
                    id: 1,
                    direction: Direction::FromOriginator,
                },
                key: key(),
                timestamp_ns: (i as u64 + 5) * 1_000_000_000,
                offset: *offset,
                gap_before: 0,
                data: wit::Span {
                    offset: arena.len() as u32,
                    len: bytes.len() as u32,
                },
                last: *last,
            });
            arena.extend_from_slice(bytes);
        }
        raws.iter()
            .flat_map(|raw| chef.handle_chunk(&StreamChunk::new(raw, &arena)))
            .map(|d| serde_json::to_value(&d).unwrap_or_default())
            .collect()
    }

    /// One client chunk of flow `id` (each flow its own ports).
    fn chunk(id: u64, offset: u64, data: wit::Span) -> wit::StreamChunk {
        let mut key = key();
        key.originator_port = id as u16;
        wit::StreamChunk {
            flow: wit::FlowRef {
                id,
                direction: Direction::FromOriginator,
            },
            key,
            timestamp_ns: 5_000_000_000 + id,
            offset,
            gap_before: 0,
            data,
            last: false,
        }
    }

    #[test]
    fn requests_of_evicted_connections_are_counted() {
        // 1100 connections send the first 12 bytes of a head, then the rest: 1024 are
        // followed to the end, the 76 dropped are counted once, on the first dumpling after.
        let head = b"GET /r HTTP/1.1\r\nHost: req.example\r\n\r\n";
        let arena = head.to_vec();
        let (first, rest) = (
            wit::Span { offset: 0, len: 12 },
            wit::Span {
                offset: 12,
                len: head.len() as u32 - 12,
            },
        );
        let n = scan::MAX_CONNECTIONS as u64 + 76;
        let mut chef = HttpRequestChef::default();
        for id in 0..n {
            assert!(chef
                .handle_chunk(&StreamChunk::new(&chunk(id, 0, first), &arena))
                .is_empty());
        }
        let out: Vec<serde_json::Value> = (0..n)
            .flat_map(|id| chef.handle_chunk(&StreamChunk::new(&chunk(id, 12, rest), &arena)))
            .map(|d| serde_json::to_value(&d).unwrap_or_default())
            .collect();
        assert_eq!(out.len(), scan::MAX_CONNECTIONS);
        assert_eq!(out[0]["pending_evicted"], 76);
        assert_eq!(out[0]["http_request"]["path"], "/r");
        assert!(out[1..].iter().all(|d| d.get("pending_evicted").is_none()));
        // Idle keep-alive connections (no head half received) are dropped uncounted.
        let whole = wit::Span {
            offset: 0,
            len: head.len() as u32,
        };
        let mut chef = HttpRequestChef::default();
        let out: Vec<HttpDumpling> = (0..n)
            .flat_map(|id| chef.handle_chunk(&StreamChunk::new(&chunk(id, 0, whole), &arena)))
            .collect();
        assert_eq!(out.len(), n as usize);
        assert!(out.iter().all(|d| d.pending_evicted == 0));
    }

    #[test]
    fn one_pipelining_connection_does_not_crowd_out_the_others() {
        // One call: flow 0 pipelines 5000 requests over 1400-byte chunks, then 20 other
        // connections send one each. Flow 0 reports 64, the rest counted on the next
        // dumpling; every other connection's request is reported.
        let pipe: Vec<u8> = (0..5000)
            .flat_map(|k| format!("GET /p{k} HTTP/1.1\r\nHost: pipe.example\r\n\r\n").into_bytes())
            .collect();
        let victim = b"GET /victim HTTP/1.1\r\nHost: victim.example\r\n\r\n";
        let mut arena = pipe.clone();
        arena.extend_from_slice(victim);
        let mut chunks = Vec::new();
        for at in (0..pipe.len()).step_by(1400) {
            let len = 1400.min(pipe.len() - at) as u32;
            let span = wit::Span {
                offset: at as u32,
                len,
            };
            chunks.push(chunk(1_000_000, at as u64, span));
        }
        let span = wit::Span {
            offset: pipe.len() as u32,
            len: victim.len() as u32,
        };
        chunks.extend((1..=20).map(|id| chunk(id, 0, span)));
        let mut chef = HttpRequestChef::default();
        let (made, _) = chef_sdk::__private::on_stream(&mut chef, &chunks, &arena);
        let out: Vec<serde_json::Value> = made
            .iter()
            .map(|d| serde_json::from_str(&d.payload).unwrap_or_default())
            .collect();
        let victims = out
            .iter()
            .filter(|d| d["http_request"]["path"] == "/victim")
            .count();
        assert_eq!((out.len(), victims), (64 + 20, 20));
        // Counted on the last dumpling of the chunk where the cap was reached (the requests
        // after it in that chunk), then on the first victim's (the later chunks').
        let counted: Vec<(usize, u64)> = out
            .iter()
            .enumerate()
            .filter_map(|(i, d)| Some((i, d.get("requests_unreported")?.as_u64()?)))
            .collect();
        assert_eq!(counted.iter().map(|(_, n)| n).sum::<u64>(), 5000 - 64);
        assert_eq!(
            counted.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            [63, 64]
        );
        // The next call starts a new count: the pipelining connection reports again.
        let more = b"GET /more HTTP/1.1\r\n\r\n";
        arena.extend_from_slice(more);
        let span = wit::Span {
            offset: (pipe.len() + victim.len()) as u32,
            len: more.len() as u32,
        };
        let next = [chunk(1_000_000, pipe.len() as u64, span)];
        let (made, _) = chef_sdk::__private::on_stream(&mut chef, &next, &arena);
        assert_eq!(made.len(), 1);
        assert!(!made[0].payload.contains("requests_unreported"));
    }

    #[test]
    fn fields_limits_and_keep_alive() {
        let long = format!("GET /{} HTTP/1.1\r\nHost: h.test\r\n\r\n", "é".repeat(600));
        let mut stream =
            b"POST /order HTTP/1.0\r\nUser-Agent: nd\r\nContent-Length: 3\r\n\r\nabc".to_vec();
        stream.extend_from_slice(long.as_bytes());
        let mut chef = HttpRequestChef::default();
        let out = feed(&mut chef, &[(0, &stream, false)]);
        assert_eq!(out.len(), 2);
        let r = &out[0]["http_request"];
        assert_eq!(
            (r["method"].as_str(), r["path"].as_str()),
            (Some("POST"), Some("/order"))
        );
        assert!(r["host"].is_null());
        assert_eq!(r["user_agent"], "nd");
        assert_eq!(r["client"], "1.1.1.1:5555");
        assert_eq!(r["server"], "2.2.2.2:80");
        assert_eq!(r["time"], 5.0);
        assert!(out[1]["http_request"]["path"]
            .as_str()
            .is_some_and(|p| p.len() <= MAX_FIELD));
    }

    #[test]
    fn a_request_with_a_long_cookie_split_anywhere_is_seen_whole() {
        let req = format!(
            "GET /item HTTP/1.1\r\nCookie: {}\r\nHost: split.test\r\nUser-Agent: ua/1\r\n\r\n",
            "c".repeat(3000)
        );
        let req = req.as_bytes();
        for split in (1..req.len()).step_by(37) {
            let mut chef = HttpRequestChef::default();
            let out = feed(
                &mut chef,
                &[
                    (0, &req[..split], false),
                    (split as u64, &req[split..], false),
                ],
            );
            assert_eq!(out.len(), 1, "split {split}");
            assert_eq!(out[0]["http_request"]["host"], "split.test");
            assert_eq!(out[0]["http_request"]["time"], 6.0);
        }
    }

    #[test]
    fn connections_are_followed_across_a_reload() {
        use chef_sdk::testing::reload;
        let body_then_next = b"POST /a HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789GET /b HTTP/1.1\r\nHost: after.test\r\n\r\n";
        // Reload anywhere in the stream: inside the first head, inside the body, inside
        // the second head. Both requests are seen, once each.
        for split in 1..body_then_next.len() {
            let mut old = HttpRequestChef::default();
            let mut out = feed(&mut old, &[(0, &body_then_next[..split], false)]);
            let mut new = reload(&old).expect("restored");
            out.extend(feed(
                &mut new,
                &[(split as u64, &body_then_next[split..], false)],
            ));
            let paths: Vec<&str> = out
                .iter()
                .filter_map(|d| d["http_request"]["path"].as_str())
                .collect();
            assert_eq!(paths, ["/a", "/b"], "split {split}");
        }
    }

    /// The chunks of a dialogue of flow 1 (direction, bytes), offsets counted per direction,
    /// the last chunk of each direction marked, and their arena.
    fn chunks_of(events: &[(Direction, &[u8])]) -> (Vec<wit::StreamChunk>, Vec<u8>) {
        chef_sdk::testing::dialogue_chunks(key(), 5, events)
    }

    /// Feeds a dialogue (see [`chunks_of`]); the dumplings. Also checks that the chef's
    /// verdicts lose nothing: a kitchen honouring them gets the same dumplings.
    fn dialogue(
        chef: &mut HttpRequestChef,
        events: &[(Direction, &[u8])],
    ) -> Vec<serde_json::Value> {
        let (raws, arena) = chunks_of(events);
        let (honoured, _) =
            stream_honouring_verdicts(&mut HttpRequestChef::default(), &raws, &arena);
        let out: Vec<serde_json::Value> = raws
            .iter()
            .flat_map(|raw| chef.handle_chunk(&StreamChunk::new(raw, &arena)))
            .map(|d| serde_json::to_value(&d).unwrap_or_default())
            .collect();
        let honoured: Vec<serde_json::Value> = honoured
            .iter()
            .map(|p| serde_json::from_str(p).unwrap_or_default())
            .collect();
        assert_eq!(honoured, out, "verdicts lost dumplings");
        out
    }

    #[test]
    fn directions_are_given_up_where_the_chef_stops_reading_them() {
        let o = |id| (id, Direction::FromOriginator);
        let r = |id| (id, Direction::FromResponder);
        let given_up = |events: &[(Direction, &[u8])]| {
            let (raws, arena) = chunks_of(events);
            stream_honouring_verdicts(&mut HttpRequestChef::default(), &raws, &arena).1
        };
        // Not HTTP: given up at its first chunk; the server's side at its first.
        assert_eq!(
            given_up(&[(O, b"\x16\x03\x01 hello"), (R, b"reply"), (O, b"more")]),
            [o(1), r(1)]
        );
        // A request with a Content-Length body is followed (keep-alive) until its stream
        // ends; the responses are never read.
        assert_eq!(
            given_up(&[
                (O, b"POST /a HTTP/1.1\r\nContent-Length: 2\r\n\r\nab"),
                (R, b"HTTP/1.1 200 OK\r\n"),
                (O, b"GET /b HTTP/1.1\r\n\r\n"),
            ]),
            [r(1), o(1)]
        );
        // A chunked body cannot be followed: given up after its head.
        assert_eq!(
            given_up(&[
                (
                    O,
                    b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n"
                ),
                (O, b"hello\r\n0\r\n\r\n"),
            ]),
            [o(1)]
        );
        // A SOCKS prelude: the proxy's answer is read until the tunnel is open, then the
        // server's side is given up; the client's is followed inside the tunnel to its end.
        let socks4a = [
            (O, &[4, 1, 0, 80, 0, 0, 0, 7, 0, b'h', b'.', b't', 0][..]),
            (R, &[0, 0x5a, 0, 0, 0, 0, 0, 0][..]),
            (R, b"inside"),
            (O, GET),
        ];
        assert_eq!(given_up(&socks4a), [r(1), o(1)]);
    }

    const O: Direction = Direction::FromOriginator;
    const R: Direction = Direction::FromResponder;
    const GET: &[u8] = b"GET /inside HTTP/1.1\r\nHost: tunnelled.test\r\nUser-Agent: ua/2\r\n\r\n";

    fn hosts(out: &[serde_json::Value]) -> Vec<&str> {
        out.iter()
            .filter_map(|d| d["http_request"]["host"].as_str())
            .collect()
    }

    #[test]
    fn a_request_after_a_socks_prelude_split_at_every_byte_is_seen_once() {
        let auth = &[1, 1, b'u', 1, b'p'][..];
        let socks5 = [
            (O, &[5, 2, 0, 2][..]),
            (R, &[5, 2][..]),
            (O, auth),
            (R, &[1, 0][..]),
            (
                O,
                &[
                    5, 1, 0, 3, 14, b't', b'u', b'n', b'n', b'e', b'l', b'l', b'e', b'd', b'.',
                    b't', b'e', b's', b't', 0, 80,
                ][..],
            ),
            (R, &[5, 0, 0, 1, 10, 0, 0, 1, 0x9c, 0x40][..]),
            (O, GET),
        ];
        let socks4a = [
            (O, &[4, 1, 0, 80, 0, 0, 0, 7, 0, b'h', b'.', b't', 0][..]),
            (R, &[0, 0x5a, 0, 0, 0, 0, 0, 0][..]),
            (O, GET),
        ];
        for events in [&socks5[..], &socks4a] {
            for v in every_split(events) {
                let mut chef = HttpRequestChef::default();
                let out = dialogue(&mut chef, &v);
                assert_eq!(
                    hosts(&out),
                    ["tunnelled.test"],
                    "{:?}",
                    v.iter().map(|(d, b)| (*d, b.len())).collect::<Vec<_>>()
                );
                assert_eq!(out[0]["http_request"]["client"], "1.1.1.1:5555");
            }
        }
    }

    #[test]
    fn a_refused_socks_request_is_not_a_tunnel() {
        let greeting = &[5, 1, 0][..];
        let request = &[5, 1, 0, 1, 10, 0, 0, 1, 0, 80][..];
        for rep in [1u8, 2, 3, 4, 5] {
            let refused = [5, rep, 0, 1, 0, 0, 0, 0, 0, 0];
            for v in every_split(&[
                (O, greeting),
                (R, &[5, 0]),
                (O, request),
                (R, &refused),
                (O, GET),
            ]) {
                let mut chef = HttpRequestChef::default();
                assert!(dialogue(&mut chef, &v).is_empty(), "rep {rep}");
            }
        }
        let mut chef = HttpRequestChef::default();
        let out = dialogue(
            &mut chef,
            &[
                (O, &[4, 1, 0, 80, 10, 0, 0, 1, 0]),
                (R, &[0, 0x5b, 0, 0, 0, 0, 0, 0]),
                (O, GET),
            ],
        );
        assert!(out.is_empty());
    }

    #[test]
    fn connect_requests_and_plain_requests_in_their_tunnel_are_seen_as_before() {
        let connect = b"CONNECT tunnelled.test:80 HTTP/1.1\r\nHost: tunnelled.test:80\r\n\r\n";
        let ok = b"HTTP/1.1 200 Connection established\r\n\r\n";
        for v in every_split(&[(O, connect), (R, ok), (O, GET)])
            .into_iter()
            .step_by(3)
        {
            let mut chef = HttpRequestChef::default();
            let out = dialogue(&mut chef, &v);
            let methods: Vec<_> = out
                .iter()
                .filter_map(|d| d["http_request"]["method"].as_str())
                .collect();
            assert_eq!(methods, ["CONNECT", "GET"]);
        }
        // TLS inside the tunnel: the CONNECT only.
        let mut chef = HttpRequestChef::default();
        let out = dialogue(
            &mut chef,
            &[(O, connect), (R, ok), (O, b"\x16\x03\x01\x02\x00\x01")],
        );
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn worst_case_snapshot_fits_the_default_cap() {
        let mut chef = HttpRequestChef::default();
        let mut head = b"GET / HTTP/1.1\r\nCookie: ".to_vec();
        head.resize(scan::MAX_HEAD - 1, b'c');
        for flow in 0..scan::MAX_CONNECTIONS as u64 {
            chef.scanner.push(flow, 0, 0, &head, false, |_| {});
        }
        // The newest connection is kept and completes its head after the reload.
        let mut r = chef_sdk::testing::assert_state_fits_the_default_cap(&chef);
        let last = scan::MAX_CONNECTIONS as u64 - 1;
        let mut seen = 0;
        r.scanner
            .push(last, head.len() as u64, 0, b"\r\n\r\n", false, |_| {
                seen += 1
            });
        assert_eq!(seen, 1);
    }
}
