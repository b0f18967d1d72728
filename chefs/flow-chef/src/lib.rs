//! `TopTalkersChef`: the busiest flows and hosts of each poke interval (the interval
//! driver at work: packets only update counters, dumplings come from the timer).
//!
//! Drivers: packet (no packet dumplings) and interval. Interest: IPv4 and IPv6.
//!
//! Interval payload, every poke (zeros and `[]` when idle); counts cover the packets
//! since the previous poke, then reset:
//!
//! ```json
//! {"top_talkers": {
//!    "interval": 5.0, "packets": 120, "bytes": 53000, "flows": 17, "flows_evicted": 0,
//!    "top_flows": [{"protocol": "tcp", "src": "10.0.0.5:51234", "dst": "93.184.216.34:443",
//!                   "packets": 40, "bytes": 30000}],
//!    "top_hosts": [{"ip": "10.0.0.5", "packets": 60, "bytes": 40000}]}}
//! ```
//!
//! * `bytes` are wire lengths of the frames (`original-len`), so they include headers.
//! * A flow is one direction of (protocol, source, destination); ports are `0` for
//!   protocols without ports, so ICMP flows look like `"10.0.0.5:0"`. IPv6 uses `[..]:port`.
//! * `top_hosts` ranks source addresses by bytes sent.
//! * `top_flows` and `top_hosts` hold at most [`TOP_N`] entries, largest `bytes` first.
//!
//! State bound: at most [`MAX_FLOWS`] flows and [`MAX_HOSTS`] hosts per interval. When a
//! table is full, the least recently active entry is evicted (counted in `flows_evicted`);
//! `packets` and `bytes` stay exact.

use std::net::{IpAddr, SocketAddr};

use chef_sdk::bounded::BoundedMap;
use chef_sdk::{Chef, ChefInfo, Drivers, Dumplings, Interest, NetworkProtocol, Packet, Tick};
use serde::Serialize;

/// Flows tracked per interval.
pub const MAX_FLOWS: usize = 4096;
/// Source hosts tracked per interval.
pub const MAX_HOSTS: usize = 1024;
/// Entries in each top list.
pub const TOP_N: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FlowKey {
    protocol: u8,
    src: SocketAddr,
    dst: SocketAddr,
}

/// Packet and byte counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Packets.
    pub packets: u64,
    /// Bytes on the wire.
    pub bytes: u64,
}

impl Counts {
    fn add(&mut self, bytes: u64) {
        self.packets += 1;
        self.bytes += bytes;
    }
}

/// One entry of `top_flows`.
#[derive(Debug, Serialize)]
pub struct FlowEntry {
    /// `tcp`, `udp`, `icmp`, `icmpv6` or the IP protocol number as text.
    pub protocol: String,
    /// Source address and port.
    pub src: SocketAddr,
    /// Destination address and port.
    pub dst: SocketAddr,
    /// Counters.
    #[serde(flatten)]
    pub counts: Counts,
}

/// One entry of `top_hosts`.
#[derive(Debug, Serialize)]
pub struct HostEntry {
    /// Source address.
    pub ip: IpAddr,
    /// Counters.
    #[serde(flatten)]
    pub counts: Counts,
}

/// The interval summary.
#[derive(Debug, Serialize)]
pub struct Summary {
    /// Seconds covered (the poke interval).
    pub interval: f64,
    /// IP packets seen.
    pub packets: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Distinct flows tracked.
    pub flows: usize,
    /// Flows evicted because the table was full.
    pub flows_evicted: u64,
    /// Busiest flows.
    pub top_flows: Vec<FlowEntry>,
    /// Busiest sources.
    pub top_hosts: Vec<HostEntry>,
}

/// Interval payload: `{"top_talkers": {...}}`.
#[derive(Debug, Serialize)]
pub struct TopTalkers {
    /// The summary.
    pub top_talkers: Summary,
}

/// The chef: this interval's counters.
pub struct TopTalkersChef {
    total: Counts,
    flows: BoundedMap<FlowKey, Counts>,
    hosts: BoundedMap<IpAddr, Counts>,
    evicted_before: u64,
}

impl Default for TopTalkersChef {
    fn default() -> Self {
        TopTalkersChef {
            total: Counts::default(),
            flows: BoundedMap::new(MAX_FLOWS),
            hosts: BoundedMap::new(MAX_HOSTS),
            evicted_before: 0,
        }
    }
}

fn protocol_name(p: u8) -> String {
    match p {
        6 => "tcp".to_owned(),
        17 => "udp".to_owned(),
        1 => "icmp".to_owned(),
        58 => "icmpv6".to_owned(),
        n => n.to_string(),
    }
}

fn top<K, T>(map: &BoundedMap<K, Counts>, make: impl Fn(K, Counts) -> T) -> Vec<T>
where
    K: Copy + std::hash::Hash + Eq,
{
    let mut all: Vec<(K, Counts)> = map.iter().map(|(k, c)| (*k, *c)).collect();
    let n = all.len().min(TOP_N);
    if n == 0 {
        return Vec::new();
    }
    all.select_nth_unstable_by(n - 1, |a, b| b.1.bytes.cmp(&a.1.bytes));
    all.truncate(n);
    all.sort_by(|a, b| {
        b.1.bytes
            .cmp(&a.1.bytes)
            .then(b.1.packets.cmp(&a.1.packets))
    });
    all.into_iter().map(|(k, c)| make(k, c)).collect()
}

impl TopTalkersChef {
    /// Counts one packet.
    pub fn count(&mut self, packet: &Packet<'_>) {
        let (Some(src), Some(dst), Some(protocol)) =
            (packet.src_ip(), packet.dst_ip(), packet.ip_protocol())
        else {
            return;
        };
        let bytes = u64::from(packet.original_len());
        self.total.add(bytes);
        let key = FlowKey {
            protocol,
            src: SocketAddr::new(src, packet.src_port().unwrap_or(0)),
            dst: SocketAddr::new(dst, packet.dst_port().unwrap_or(0)),
        };
        self.flows
            .get_or_insert_with(key, Counts::default)
            .add(bytes);
        self.hosts
            .get_or_insert_with(src, Counts::default)
            .add(bytes);
    }

    /// The summary of the interval so far, and a fresh start for the next one.
    pub fn summary(&mut self, tick: Tick) -> TopTalkers {
        let summary = Summary {
            interval: tick.interval.as_secs_f64(),
            packets: self.total.packets,
            bytes: self.total.bytes,
            flows: self.flows.len(),
            flows_evicted: self.flows.evicted() - self.evicted_before,
            top_flows: top(&self.flows, |k, counts| FlowEntry {
                protocol: protocol_name(k.protocol),
                src: k.src,
                dst: k.dst,
                counts,
            }),
            top_hosts: top(&self.hosts, |ip, counts| HostEntry { ip, counts }),
        };
        self.total = Counts::default();
        self.evicted_before = self.flows.evicted();
        self.flows.clear();
        self.hosts.clear();
        TopTalkers {
            top_talkers: summary,
        }
    }
}

impl Chef for TopTalkersChef {
    fn info() -> ChefInfo {
        ChefInfo::new(
            "TopTalkersChef",
            "Every poke, the busiest flows and source hosts of the last interval",
        )
        .drivers(Drivers::PACKET | Drivers::INTERVAL)
        .interest(Interest::ANY.network(&[NetworkProtocol::Ipv4, NetworkProtocol::Ipv6]))
    }

    fn on_packet(&mut self, packet: &Packet<'_>) -> impl Dumplings {
        self.count(packet);
    }

    fn on_interval(&mut self, tick: Tick) -> impl Dumplings {
        Some(self.summary(tick))
    }
}

chef_sdk::export_chef!(TopTalkersChef);

#[cfg(test)]
mod tests {
    use super::*;
    use chef_sdk::testing::{frames, poke, sample_capture, Batch};

    #[test]
    fn ranks_flows_and_hosts_then_resets() {
        let mut b = Batch::default();
        for _ in 0..3 {
            b.push_ethernet(
                1,
                &frames::udp4([10, 0, 0, 1], [10, 0, 0, 2], 1000, 53, &[0; 100]),
            );
        }
        b.push_ethernet(
            1,
            &frames::tcp4([10, 0, 0, 3], [10, 0, 0, 2], 2000, 80, &[0; 1000]),
        );
        let mut chef = TopTalkersChef::default();
        assert!(b.feed(&mut chef).is_empty());
        let out = poke(&mut chef, 2);
        let t = &out[0]["top_talkers"];
        assert_eq!(t["packets"], 4);
        assert_eq!(t["bytes"], 3 * 142 + 1054);
        assert_eq!(t["flows"], 2);
        assert_eq!(t["interval"], 5.0);
        assert_eq!(t["top_flows"][0]["src"], "10.0.0.3:2000");
        assert_eq!(t["top_flows"][0]["protocol"], "tcp");
        assert_eq!(t["top_flows"][1]["packets"], 3);
        assert_eq!(t["top_hosts"][1]["ip"], "10.0.0.1");
        let idle = poke(&mut chef, 3);
        assert_eq!(idle[0]["top_talkers"]["packets"], 0);
        assert_eq!(idle[0]["top_talkers"]["top_flows"], serde_json::json!([]));
    }

    #[test]
    fn bounded_under_a_flood() {
        let mut b = Batch::default();
        for i in 0..(MAX_FLOWS as u32 + 100) {
            let port = (i % 60000) as u16;
            let ip = (i / 60000) as u8;
            b.push_ethernet(
                1,
                &frames::udp4([10, 0, 0, ip], [10, 0, 1, 1], port, 9, b""),
            );
        }
        let mut chef = TopTalkersChef::default();
        b.feed(&mut chef);
        assert_eq!(chef.flows.len(), MAX_FLOWS);
        let t = &poke(&mut chef, 2)[0]["top_talkers"];
        assert_eq!(t["flows_evicted"], 100);
        assert_eq!(t["packets"], MAX_FLOWS as u64 + 100);
        assert_eq!(t["top_flows"].as_array().map(Vec::len), Some(TOP_N));
    }

    #[test]
    fn sample_capture_summary() {
        let batch = sample_capture().expect("sample capture");
        let mut chef = TopTalkersChef::default();
        batch.feed(&mut chef);
        let t = &poke(&mut chef, 2)[0]["top_talkers"];
        assert_eq!(t["packets"], 46, "every IP packet of the capture");
        assert_eq!(t["top_hosts"][0]["ip"], "127.0.0.1");
    }

    #[test]
    fn survives_the_corpus() {
        // Every capture of the team's pcap corpus: no panic, only valid JSON.
        assert!(chef_sdk::testing::sweep_corpus::<TopTalkersChef>() > 10_000);
    }
}
