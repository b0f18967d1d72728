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

pub mod scan;

pub use scan::{RequestScanner, STREAM_BYTES};

use std::net::SocketAddr;

use chef_sdk::parse::http;
use chef_sdk::flow::{Direction, FlowKey, IpAddress};
use chef_sdk::{
    ipv4_addr, ipv6_addr, Chef, ChefInfo, Drivers, Dumplings, Interest, StreamChunk, Timestamp,
    TransportProtocol,
};
use serde::Serialize;

/// Longest string field sent (longer ones are cut at a character boundary).
pub const MAX_FIELD: usize = 512;

/// Packet payload: `{"http_request": {...}}`.
#[derive(Debug, Serialize)]
pub struct HttpDumpling {
    /// The request.
    pub http_request: Request,
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

/// The chef: the client streams it follows.
#[derive(Default)]
pub struct HttpRequestChef {
    scanner: RequestScanner,
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
    })
}

impl HttpRequestChef {
    /// The dumplings for the requests a client stream chunk completes.
    pub fn handle_chunk(&mut self, chunk: &StreamChunk<'_>) -> Vec<HttpDumpling> {
        let mut out = Vec::new();
        let flow = chunk.flow();
        if flow.direction != Direction::FromOriginator {
            return out;
        }
        let (key, time) = (chunk.key(), chunk.timestamp());
        self.scanner.push(
            flow.id,
            chunk.offset(),
            chunk.gap_before(),
            chunk.data(),
            chunk.is_last(),
            |head| out.extend(request_dumpling(head, key, time)),
        );
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
        self.handle_chunk(chunk)
    }
}

chef_sdk::export_chef!(HttpRequestChef);

#[cfg(test)]
mod tests {
    use super::*;
    use chef_sdk::testing::{frames, sample_capture, Batch};

    #[test]
    fn sample_capture_has_three_requests() {
        let batch = sample_capture().expect("sample capture");
        let out = batch.feed(&mut HttpRequestChef);
        assert_eq!(out.len(), 3, "{out:?}");
        for (i, v) in &out {
            let r = &v["http_request"];
            assert!(
                r["method"].is_string() && r["path"].as_str().is_some_and(|p| p.starts_with('/')),
                "{v}"
            );
            assert_eq!(r["server"], "127.0.0.1:18080");
            assert!(batch.packet(*i as usize).dst_port() == Some(18080));
        }
    }

    #[test]
    fn fields_and_limits() {
        let long = format!("GET /{} HTTP/1.1\r\nHost: h.test\r\n\r\n", "é".repeat(600));
        let mut b = Batch::default();
        b.push_ethernet(
            5,
            &frames::tcp4(
                [1, 1, 1, 1],
                [2, 2, 2, 2],
                5555,
                80,
                b"POST /order HTTP/1.0\r\nUser-Agent: nd\r\n\r\n",
            ),
        );
        b.push_ethernet(
            6,
            &frames::tcp4([1, 1, 1, 1], [2, 2, 2, 2], 5555, 80, long.as_bytes()),
        );
        b.push_ethernet(
            7,
            &frames::tcp4(
                [2, 2, 2, 2],
                [1, 1, 1, 1],
                80,
                5555,
                b"HTTP/1.1 200 OK\r\n\r\n",
            ),
        );
        let out = b.feed(&mut HttpRequestChef);
        assert_eq!(out.len(), 2);
        let r = &out[0].1["http_request"];
        assert_eq!(
            (r["method"].as_str(), r["path"].as_str()),
            (Some("POST"), Some("/order"))
        );
        assert!(r["host"].is_null());
        assert_eq!(r["user_agent"], "nd");
        assert_eq!(r["client"], "1.1.1.1:5555");
        assert!(out[1].1["http_request"]["path"]
            .as_str()
            .is_some_and(|p| p.len() <= MAX_FIELD));
    }

    #[test]
    fn survives_the_corpus() {
        // Every capture of the team's pcap corpus: no panic, only valid JSON.
        assert!(chef_sdk::testing::sweep_corpus::<HttpRequestChef>() > 10_000);
    }
}
