//! `TLSServerNameChef`: which TLS servers are being contacted, from the ClientHello's
//! server name (SNI), without decrypting anything.
//!
//! Drivers: interval, plus TCP streams (chef API 0.2): the chef asks the kitchen for the
//! first [`STREAM_BYTES`] of each direction of every TCP connection (any port: TLS runs on
//! many; a two-byte check drops other streams at once) and reads the ClientHello from the
//! client's reassembled bytes, so a hello split over several segments (a post-quantum key
//! share makes a browser's hello ~1.9 KB), reordered or retransmitted is seen whole.
//!
//! Packet payload (driver `packet`: it answers traffic), one per ClientHello that carries
//! a server name:
//!
//! ```json
//! {"tls": {"server_name": "example.com", "client": "10.0.0.5:51234",
//!          "server": "93.184.216.34:443", "alpn": ["h2", "http/1.1"],
//!          "version": "TLS 1.3", "time": 1795739862.5}}
//! ```
//!
//! `version` is the highest of `supported_versions` (TLS 1.3 clients), else the
//! ClientHello's legacy version; `alpn` may be `[]`. `client`/`server` are `ip:port`
//! (`[v6]:port` for IPv6): the connection's originator and responder. `time` is when the
//! hello's last byte arrived.
//!
//! Interval payload, every poke (`{}` before the first name):
//!
//! ```json
//! {"server_names_seen": {"example.com": {"count": 3, "latest": 1795739862.5}}}
//! ```
//!
//! State bound: at most [`MAX_NAMES`] names (least recently seen evicted), and at most
//! [`MAX_PENDING`] hellos being collected (each at most [`STREAM_BYTES`]). Server names
//! are ASCII and at most 255 bytes here, so the interval payload stays well under 1 MiB.
//!
//! Limits: only a hello at the very start of the client's stream is read (not one after
//! STARTTLS); when bytes of the hello are missing (`gap-before`), what came before the gap
//! is parsed, as a truncated hello; QUIC (encrypted Initial packets) is not decoded.

mod collect;

pub use collect::{HelloCollector, MAX_PENDING, STREAM_BYTES};

use std::net::{IpAddr, SocketAddr};

use chef_sdk::bounded::BoundedMap;
use chef_sdk::parse::tls;
use chef_sdk::flow::{Direction, FlowKey, IpAddress};
use chef_sdk::{
    ipv4_addr, ipv6_addr, Chef, ChefInfo, Drivers, Dumplings, Interest, StreamChunk, Tick,
    Timestamp, TransportProtocol,
};
use serde::Serialize;

/// How many distinct server names the chef remembers.
pub const MAX_NAMES: usize = 1000;

/// Packet payload: `{"tls": {...}}`.
#[derive(Debug, Serialize)]
pub struct TlsDumpling {
    /// The connection attempt.
    pub tls: Hello,
}

/// One ClientHello (owned: a collected hello does not outlive the call).
#[derive(Debug, Serialize)]
pub struct Hello {
    /// SNI host name.
    pub server_name: String,
    /// Client address and port.
    pub client: Option<SocketAddr>,
    /// Server address and port.
    pub server: Option<SocketAddr>,
    /// ALPN protocols offered.
    pub alpn: Vec<String>,
    /// `TLS 1.0` ... `TLS 1.3`, or `0x....` for anything else.
    pub version: String,
    /// Capture time.
    pub time: Timestamp,
}

/// Per-name counts in the interval payload.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Seen {
    /// ClientHellos seen for the name.
    pub count: u64,
    /// Time of the latest one.
    pub latest: Timestamp,
}

/// Interval payload.
#[derive(Serialize)]
pub struct ServerNamesSeen<'a> {
    /// Name → counts, first-seen order.
    pub server_names_seen: &'a BoundedMap<String, Seen>,
}

fn version_name(v: u16) -> String {
    match v {
        0x0301 => "TLS 1.0".to_owned(),
        0x0302 => "TLS 1.1".to_owned(),
        0x0303 => "TLS 1.2".to_owned(),
        0x0304 => "TLS 1.3".to_owned(),
        other => format!("0x{other:04x}"),
    }
}

fn ip(addr: &IpAddress) -> IpAddr {
    match *addr {
        IpAddress::V4(a) => IpAddr::V4(ipv4_addr(a)),
        IpAddress::V6(a) => IpAddr::V6(ipv6_addr(a)),
    }
}

/// The chef: counts per server name, and the hellos being collected.
pub struct TlsServerNameChef {
    seen: BoundedMap<String, Seen>,
    hellos: HelloCollector,
}

impl Default for TlsServerNameChef {
    fn default() -> Self {
        TlsServerNameChef {
            seen: BoundedMap::new(MAX_NAMES),
            hellos: HelloCollector::default(),
        }
    }
}

impl TlsServerNameChef {
    /// The dumpling for a stream chunk, if it completes a client's TLS ClientHello with a
    /// server name.
    pub fn handle_chunk(&mut self, chunk: &StreamChunk<'_>) -> Option<TlsDumpling> {
        let flow = chunk.flow();
        if flow.direction != Direction::FromOriginator {
            return None;
        }
        let bytes = self.hellos.push(
            flow.id,
            chunk.offset(),
            chunk.gap_before(),
            chunk.data(),
            chunk.is_last(),
        )?;
        self.hello(&bytes, chunk.key(), chunk.timestamp())
    }

    /// The dumpling for a whole (or truncated) ClientHello record sent by `key`'s originator.
    pub fn hello(&mut self, record: &[u8], key: &FlowKey, time: Timestamp) -> Option<TlsDumpling> {
        let hello = tls::client_hello(record)?;
        let server_name = hello.server_name?;
        let seen = self
            .seen
            .get_or_insert_with(server_name.to_owned(), || Seen {
                count: 0,
                latest: time,
            });
        seen.count += 1;
        seen.latest = time;
        Some(TlsDumpling {
            tls: Hello {
                server_name: server_name.to_owned(),
                client: Some(SocketAddr::new(ip(&key.originator), key.originator_port)),
                server: Some(SocketAddr::new(ip(&key.responder), key.responder_port)),
                alpn: hello.alpn.iter().map(|a| (*a).to_owned()).collect(),
                version: version_name(hello.max_supported_version.unwrap_or(hello.legacy_version)),
                time,
            },
        })
    }
}

impl Chef for TlsServerNameChef {
    fn info() -> ChefInfo {
        ChefInfo::new(
            "TLSServerNameChef",
            "TLS server names (SNI) from ClientHellos; every poke, the names seen so far",
        )
        .drivers(Drivers::INTERVAL)
        .interest(
            Interest::ANY
                .transport(&[TransportProtocol::Tcp])
                .stream_bytes(STREAM_BYTES),
        )
    }

    fn on_stream(&mut self, chunk: &StreamChunk<'_>) -> impl Dumplings {
        self.handle_chunk(chunk)
    }

    fn on_interval(&mut self, _tick: Tick) -> impl Dumplings {
        Some(ServerNamesSeen {
            server_names_seen: &self.seen,
        })
    }
}

chef_sdk::export_chef!(TlsServerNameChef);

#[cfg(test)]
mod tests {
    use super::*;
    use chef_sdk::testing::{frames, poke_raw, Batch};

    /// A ClientHello for `shop.dumpling.test` with ALPN `h2`.
    fn hello(name: &str) -> Vec<u8> {
        let n = name.as_bytes();
        let mut ext = vec![0, 0];
        ext.extend_from_slice(&((n.len() + 5) as u16).to_be_bytes());
        ext.extend_from_slice(&((n.len() + 3) as u16).to_be_bytes());
        ext.push(0);
        ext.extend_from_slice(&(n.len() as u16).to_be_bytes());
        ext.extend_from_slice(n);
        ext.extend_from_slice(&[0, 16, 0, 5, 0, 3, 2, b'h', b'2']);
        let mut body = vec![3, 3];
        body.extend_from_slice(&[0; 32]);
        body.extend_from_slice(&[0, 0, 2, 0x13, 1, 1, 0]);
        body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        body.extend_from_slice(&ext);
        let mut rec = vec![0x16, 3, 1];
        rec.extend_from_slice(&((body.len() + 4) as u16).to_be_bytes());
        rec.extend_from_slice(&[1, 0]);
        rec.extend_from_slice(&(body.len() as u16).to_be_bytes());
        rec.extend_from_slice(&body);
        rec
    }

    #[test]
    fn client_hello_makes_a_dumpling_and_counts() {
        let mut b = Batch::default();
        b.push_ethernet(
            1_000_000_000,
            &frames::tcp4(
                [10, 0, 0, 5],
                [10, 0, 0, 9],
                51234,
                443,
                &hello("shop.dumpling.test"),
            ),
        );
        b.push_ethernet(
            2_000_000_000,
            &frames::tcp4(
                [10, 0, 0, 9],
                [10, 0, 0, 5],
                443,
                51234,
                b"\x17\x03\x03\x00\x01x",
            ),
        );
        b.push_ethernet(
            3_000_000_000,
            &frames::tcp4(
                [10, 0, 0, 6],
                [10, 0, 0, 9],
                40000,
                8443,
                &hello("shop.dumpling.test"),
            ),
        );
        let mut chef = TlsServerNameChef::default();
        let out = b.feed(&mut chef);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].0, 0);
        let t = &out[0].1["tls"];
        assert_eq!(t["server_name"], "shop.dumpling.test");
        assert_eq!(t["client"], "10.0.0.5:51234");
        assert_eq!(t["server"], "10.0.0.9:443");
        assert_eq!(t["alpn"], serde_json::json!(["h2"]));
        assert_eq!(t["version"], "TLS 1.2");
        assert_eq!(t["time"], 1.0);
        assert_eq!(
            poke_raw(&mut chef, 4),
            [r#"{"server_names_seen":{"shop.dumpling.test":{"count":2,"latest":3.0}}}"#]
        );
    }

    #[test]
    fn real_captures_with_client_hellos() {
        // TLS captures from the team's corpus (shared/pcaps, beside the repository).
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/pcaps/");
        let mut found = 0;
        for file in [
            "pcapplusplus__ExamplesTest__pcap_examples__tls.pcap",
            "arkime__tls-split-client-hello.pcap",
        ] {
            let bytes = std::fs::read(format!("{dir}{file}"))
                .expect("the team's pcap corpus beside the repository");
            let batch = Batch::from_pcap(&bytes).expect("pcap");
            let mut chef = TlsServerNameChef::default();
            for (_, v) in batch.feed(&mut chef) {
                let name = v["tls"]["server_name"].as_str().unwrap_or("");
                assert!(!name.is_empty() && name.is_ascii(), "{v}");
                found += 1;
            }
        }
        assert!(
            found > 0,
            "the corpus TLS captures hold ClientHellos with server names"
        );
    }

    #[test]
    fn survives_the_corpus() {
        // Every capture of the team's pcap corpus: no panic, only valid JSON.
        assert!(chef_sdk::testing::sweep_corpus::<TlsServerNameChef>() > 10_000);
    }
}
