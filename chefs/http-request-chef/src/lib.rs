//! `HTTPRequestChef`: one dumpling per plain-text HTTP/1.x request.
//!
//! Drivers: packet. Interest: TCP (any port: HTTP runs on many; a method-name check
//! rejects other segments in nanoseconds).
//!
//! Packet payload:
//!
//! ```json
//! {"http_request": {"method": "GET", "host": "dumpling.test:18080", "path": "/menu",
//!                   "user_agent": "curl/8.5.0", "client": "127.0.0.1:49418",
//!                   "server": "127.0.0.1:18080", "time": 1795739862.000052}}
//! ```
//!
//! `host` and `user_agent` are `null` when absent (or not in the first segment); `path`
//! is the request target as sent, cut to [`MAX_FIELD`] bytes like the other strings.
//!
//! State: none. Limits: requests are recognised only at the start of a TCP segment
//! (pipelined requests in one segment count once); HTTPS, HTTP/2 and HTTP/3 are not
//! plain text and are not seen.

use std::net::SocketAddr;

use chef_sdk::parse::http;
use chef_sdk::{
    Chef, ChefInfo, Drivers, Dumplings, Interest, Packet, Timestamp, TransportProtocol,
};
use serde::Serialize;

/// Longest string field sent (longer ones are cut at a character boundary).
pub const MAX_FIELD: usize = 512;

/// Packet payload: `{"http_request": {...}}`.
#[derive(Debug, Serialize)]
pub struct HttpDumpling<'a> {
    /// The request.
    pub http_request: Request<'a>,
}

/// One request.
#[derive(Debug, Serialize)]
pub struct Request<'a> {
    /// Method.
    pub method: &'a str,
    /// `Host` header.
    pub host: Option<&'a str>,
    /// Request target.
    pub path: &'a str,
    /// `User-Agent` header.
    pub user_agent: Option<&'a str>,
    /// Client address and port.
    pub client: Option<SocketAddr>,
    /// Server address and port.
    pub server: Option<SocketAddr>,
    /// Capture time.
    pub time: Timestamp,
}

fn cut(s: &str) -> &str {
    if s.len() <= MAX_FIELD {
        return s;
    }
    let mut end = MAX_FIELD;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The chef (stateless).
#[derive(Default)]
pub struct HttpRequestChef;

impl HttpRequestChef {
    /// The dumpling for one packet, if it starts an HTTP/1.x request.
    pub fn handle<'p>(&mut self, packet: &Packet<'p>) -> Option<HttpDumpling<'p>> {
        let req = http::request(packet.payload())?;
        let endpoint =
            |ip: Option<std::net::IpAddr>, port: Option<u16>| Some(SocketAddr::new(ip?, port?));
        Some(HttpDumpling {
            http_request: Request {
                method: cut(req.method),
                host: req.host.map(cut),
                path: cut(req.path),
                user_agent: req.user_agent.map(cut),
                client: endpoint(packet.src_ip(), packet.src_port()),
                server: endpoint(packet.dst_ip(), packet.dst_port()),
                time: packet.timestamp(),
            },
        })
    }
}

impl Chef for HttpRequestChef {
    fn info() -> ChefInfo {
        ChefInfo::new(
            "HTTPRequestChef",
            "One dumpling per plain-text HTTP/1.x request: method, host, path, user agent",
        )
        .drivers(Drivers::PACKET)
        .interest(Interest::ANY.transport(&[TransportProtocol::Tcp]))
    }

    fn on_packet(&mut self, packet: &Packet<'_>) -> impl Dumplings {
        self.handle(packet)
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
