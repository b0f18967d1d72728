//! `PacketCountChef`: counts the layers of every packet, by scapy-style layer name.
//!
//! Drivers: packet (to count; it makes **no** packet dumplings) and interval.
//! Interest: every packet.
//!
//! Interval payload, on every poke, even before the first packet (`{}`):
//!
//! ```json
//! {"packet_counts": {"Ethernet": 50, "IP": 46, "TCP": 36, "Raw": 11, "UDP": 9, "DNS": 8,
//!                    "ARP": 4, "ICMP": 1, "IP in ICMP": 1, "UDP in ICMP": 1}}
//! ```
//!
//! Keys are scapy 2.4.5 layer display names (`Ethernet`, `cooked linux`, `802.1Q`,
//! `802_1AD`, `ARP`, `IP`, `IPv6`, `TCP`, `UDP`, `ICMP`, `IP in ICMP`, `UDP in ICMP`,
//! `ICMPv6 Echo Request`, `DNS`, `BOOTP`, `DHCP options`, `NTPHeader`, `Raw`, `Padding`,
//! ...) in first-seen order; counts are cumulative and never reset, as in the original.
//! See [`layers`] for exactly which layers are recognised.
//!
//! State bound: one counter per distinct layer name, and names come from a fixed table
//! (under 80 of them), so the state cannot grow.
//!
//! Deviations from the original (Python netdumplings 0.5.1):
//! * Layers are named from the kitchen's parser plus port/first-byte rules, not by a full
//!   scapy dissection. Application layers scapy would dissect deeper (e.g. the options
//!   inside ICMPv6 Neighbor Discovery, DNS-over-TCP framing, VXLAN's inner frame, NetBIOS,
//!   HSRP, L2TP, ...) are counted as their first layer or as `Raw`, and IPv6 extension
//!   headers other than Fragment are not counted (the parser does not report them).
//! * Linux SLL2 (DLT 276), which scapy 2.4.5 does not know, is `cooked linux v2` (the name
//!   newer scapy uses).
//! * With libpcap capture, loopback packets are seen once, not twice (kitchen behaviour).

pub mod layers;

use chef_sdk::{Chef, ChefInfo, Drivers, Dumplings, Interest, Packet, Tick};
use serde::ser::{Serialize, SerializeMap, Serializer};

/// The chef: cumulative counts per layer name, in first-seen order.
#[derive(Default)]
pub struct PacketCountChef {
    /// (layer name, count) in first-seen order. A linear scan over a few dozen entries
    /// is faster than hashing here.
    counts: Vec<(&'static str, u64)>,
}

impl PacketCountChef {
    /// Counts the layers of one packet.
    pub fn count(&mut self, packet: &Packet<'_>) {
        layers::for_each_layer(packet, |name| self.bump(name));
    }

    fn bump(&mut self, name: &'static str) {
        match self.counts.iter_mut().find(|(n, _)| *n == name) {
            Some((_, c)) => *c += 1,
            None => self.counts.push((name, 1)),
        }
    }

    /// The interval payload: `{"packet_counts": {...}}`.
    pub fn payload(&self) -> PacketCounts<'_> {
        PacketCounts {
            packet_counts: Ordered(&self.counts),
        }
    }
}

/// Interval payload shape.
#[derive(serde::Serialize)]
pub struct PacketCounts<'a> {
    packet_counts: Ordered<'a>,
}

/// Pairs serialised as a JSON object, in order.
struct Ordered<'a>(&'a [(&'static str, u64)]);

impl Serialize for Ordered<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl Chef for PacketCountChef {
    fn info() -> ChefInfo {
        ChefInfo::new(
            "PacketCountChef",
            "Counts packet layers by scapy-style name; sends the cumulative counts every poke",
        )
        .drivers(Drivers::PACKET | Drivers::INTERVAL)
        .interest(Interest::ANY)
    }

    fn on_packet(&mut self, packet: &Packet<'_>) -> impl Dumplings {
        self.count(packet);
    }

    fn on_interval(&mut self, _tick: Tick) -> impl Dumplings {
        Some(self.payload())
    }
}

chef_sdk::export_chef!(PacketCountChef);

#[cfg(test)]
mod tests {
    use super::*;
    use chef_sdk::testing::{frames, poke_raw, sample_capture, Batch};

    #[test]
    fn empty_counts_are_sent_too() {
        let mut chef = PacketCountChef::default();
        assert_eq!(
            poke_raw(&mut chef, 1),
            vec![r#"{"packet_counts":{}}"#.to_owned()]
        );
    }

    #[test]
    fn sample_capture_matches_the_original_output() {
        let mut chef = PacketCountChef::default();
        let batch = sample_capture().expect("sample capture");
        assert!(batch.feed(&mut chef).is_empty(), "no packet dumplings");
        // The original's interval payload for this capture, key order included.
        let expected = r#"{"packet_counts":{"Ethernet":50,"IP":46,"TCP":36,"Raw":11,"UDP":9,"DNS":8,"ARP":4,"ICMP":1,"IP in ICMP":1,"UDP in ICMP":1}}"#;
        assert_eq!(poke_raw(&mut chef, 2), vec![expected.to_owned()]);
        // Cumulative: a second pass doubles every count.
        batch.feed(&mut chef);
        let again: serde_json::Value =
            serde_json::from_str(&poke_raw(&mut chef, 3)[0]).expect("json");
        assert_eq!(again["packet_counts"]["Ethernet"], 100);
    }

    #[test]
    fn names_padding_dhcp_and_truncation() {
        let mut b = Batch::default();
        b.push_ethernet(
            1,
            &frames::arp(1, [2, 0, 0, 0, 0, 1], [10, 0, 0, 1], [0; 6], [10, 0, 0, 2]),
        );
        let mut bootp = vec![0u8; 240];
        bootp[236..240].copy_from_slice(&[99, 130, 83, 99]);
        b.push_ethernet(2, &frames::udp4([0; 4], [255; 4], 68, 67, &bootp));
        b.push_ethernet(3, &frames::udp4([1; 4], [2; 4], 40000, 123, &[0x23; 48]));
        let mut names = Vec::new();
        for p in b.iter() {
            let mut one = Vec::new();
            layers::for_each_layer(&p, |n| one.push(n));
            names.push(one.join("/"));
        }
        assert_eq!(
            names,
            [
                "Ethernet/ARP/Padding",
                "Ethernet/IP/UDP/BOOTP/DHCP options",
                "Ethernet/IP/UDP/NTPHeader"
            ]
        );
    }

    #[test]
    fn survives_the_corpus() {
        // Every capture of the team's pcap corpus: no panic, only valid JSON.
        assert!(chef_sdk::testing::sweep_corpus::<PacketCountChef>() > 10_000);
    }
}

/// Prints per-capture counts for comparison with scapy (`--ignored --nocapture`).
#[cfg(test)]
mod corpus_dump {
    #[test]
    #[ignore = "manual differential check against scapy"]
    fn dump_counts() {
        for (name, batch) in chef_sdk::testing::corpus() {
            let mut chef = super::PacketCountChef::default();
            for p in batch.iter() {
                chef.count(&p);
            }
            let out = chef_sdk::testing::poke_raw(&mut chef, 1);
            println!("COUNTS\t{name}\t{}", out[0]);
        }
    }
}

#[cfg(test)]
mod debug_one {
    #[test]
    #[ignore = "debug"]
    fn one() {
        for (name, batch) in chef_sdk::testing::corpus() {
            if name != "tcpdump__dnssec.pcap" {
                continue;
            }
            for p in batch.iter() {
                let mut v = Vec::new();
                super::layers::for_each_layer(&p, |n| v.push(n));
                let q = chef_sdk::parse::dns::question(p.payload());
                println!("{:?} {} {:?}", v, p.payload().len(), q.map(|q| q.name));
            }
        }
    }
}
