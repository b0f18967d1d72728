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
//! Keys are scapy 2.4.5 layer display names (`Ethernet`, `802.3`, `LLC`, `cooked linux`,
//! `802.1Q`, `802_1AD`, `ARP`, `IP`, `IPv6`, `IPv6 Extension Header - ...`, `TCP`, `UDP`,
//! `ICMP`, `IP in ICMP`, `UDP in ICMP`, `ICMPv6 Echo Request`, ND options, `DNS`, `BOOTP`,
//! `DHCP options`, `DHCPv6 ... Message`, `NTPHeader`, `Raw`, `Padding`, ...) in first-seen
//! order; counts are cumulative and never reset, as in the original. See [`layers`] for
//! exactly which layers are recognised.
//!
//! State bound: one counter per distinct layer name, and names come from a fixed table
//! (about 150 of them), so the state cannot grow.
//!
//! Hot reload: the counts follow the chef to its new version (`export_stateful_chef!`; the
//! state is the same JSON object as `packet_counts`), so a replaced `PacketCountChef`
//! keeps counting where the old one stopped.
//!
//! Deviations from the original (Python netdumplings 0.5.1):
//! * Layers are named from the kitchen's parser plus port and first-byte rules, not by a
//!   full scapy dissection. On the team's 137-capture corpus the counts equal scapy's for
//!   100 captures; the others differ in protocols this does not decode (SMB and NetBIOS
//!   sessions, PPPoE, VXLAN inner frames, 802.11/radiotap, 6in4/GRE/Teredo tunnels,
//!   ISAKMP payload chains, HSRP, L2TP, SCTP chunks, ...), which are counted as their
//!   first layer or as `Raw` (PPPoE sessions: the kitchen's parser skips the PPPoE and PPP
//!   headers, so their IP layers count, but not `PPPoE` / `PPP`), and in DNS edge cases (a payload on port 53/5353 is `DNS`
//!   when its header and first question read cleanly, else `Raw`).
//! * Linux SLL2 (DLT 276), which scapy 2.4.5 does not know, is `cooked linux v2` (the name
//!   newer scapy uses).
//! * With libpcap capture, loopback packets are seen once, not twice (kitchen behaviour),
//!   so counts on `lo` are half the original's.

pub mod layers;

use chef_sdk::{Chef, ChefInfo, Drivers, Dumplings, Interest, Packet, RawJson, Tick};
use serde::de::{Deserialize, Deserializer, Error as _, MapAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, Serializer};

/// Most layer names a restored state may hold (the table has about 150).
const MAX_RESTORED_LAYERS: usize = 1024;
/// Longest layer name a restored state may hold.
const MAX_RESTORED_NAME: usize = 128;

/// Slots of the name → index cache (a power of two).
const CACHE_SLOTS: usize = 64;

/// One cache slot: the address and length of a layer-name literal, and the index of its
/// entry in `counts`. Address 0 marks an empty slot.
#[derive(Clone, Copy, Default)]
struct CacheSlot {
    addr: usize,
    len: usize,
    index: usize,
}

/// `hot` entry of a hot layer not seen yet.
const UNSEEN: u16 = u16::MAX;

/// The chef: cumulative counts per layer name, in first-seen order.
pub struct PacketCountChef {
    /// (layer name, count) in first-seen order.
    counts: Vec<(&'static str, u64)>,
    /// For each [`layers::Hot`] layer, its entry in `counts` (or [`UNSEEN`]): counting
    /// the common layers is an array load and an increment.
    hot: [u16; layers::Hot::COUNT],
    /// Direct-mapped cache from a name literal's address to its entry in `counts`, so
    /// the per-layer work is a few integer operations instead of string comparisons.
    /// A slot is only ever filled after a by-content lookup, so two literals with the same
    /// text (if the compiler does not merge them) still share one entry.
    cache: [CacheSlot; CACHE_SLOTS],
    /// For each entry of `counts` (same order; entries are only ever appended), its name as
    /// serde_json writes an object key, with the colon: `"Ethernet":`. Filled at the poke
    /// after a name first appears.
    key_texts: Vec<String>,
}

impl Default for PacketCountChef {
    fn default() -> Self {
        PacketCountChef {
            counts: Vec::with_capacity(32),
            hot: [UNSEEN; layers::Hot::COUNT],
            cache: [CacheSlot::default(); CACHE_SLOTS],
            key_texts: Vec::with_capacity(32),
        }
    }
}

impl PacketCountChef {
    /// Counts the layers of one packet.
    pub fn count(&mut self, packet: &Packet<'_>) {
        layers::walk(packet, self);
    }

    #[inline(always)]
    fn bump_hot(&mut self, layer: layers::Hot) {
        let index = self.hot[layer as usize];
        match self.counts.get_mut(usize::from(index)) {
            Some((_, n)) => *n += 1,
            None => self.bump_hot_slow(layer),
        }
    }

    /// First sighting of a hot layer (by content, so a same-named layer that came by name
    /// shares its entry).
    #[cold]
    #[inline(never)]
    fn bump_hot_slow(&mut self, layer: layers::Hot) {
        let index = self.bump_by_content(layer.name());
        self.hot[layer as usize] = u16::try_from(index).unwrap_or(UNSEEN);
    }

    #[inline(always)]
    fn bump(&mut self, name: &'static str) {
        let addr = name.as_ptr() as usize;
        // Literals are at least byte-aligned and spread over the data section: mix the
        // address bits so neighbouring names land in different slots.
        let slot = (addr ^ (addr >> 6) ^ (addr >> 12)) & (CACHE_SLOTS - 1);
        let c = self.cache[slot];
        if c.addr == addr && c.len == name.len() {
            if let Some((_, n)) = self.counts.get_mut(c.index) {
                *n += 1;
                return;
            }
        }
        self.bump_slow(name, slot);
    }

    /// By-content lookup (or insertion in first-seen order), then caches the result.
    #[cold]
    #[inline(never)]
    fn bump_slow(&mut self, name: &'static str, slot: usize) {
        let index = self.bump_by_content(name);
        self.cache[slot] = CacheSlot {
            addr: name.as_ptr() as usize,
            len: name.len(),
            index,
        };
    }

    /// Counts `name` by content (adding it, last, if new); returns its entry in `counts`.
    fn bump_by_content(&mut self, name: &'static str) -> usize {
        match self.counts.iter().position(|(n, _)| *n == name) {
            Some(i) => {
                self.counts[i].1 += 1;
                i
            }
            None => {
                self.counts.push((name, 1));
                self.counts.len() - 1
            }
        }
    }

    /// The interval payload's text: byte for byte what serde_json makes of
    /// [`Self::payload`] (a unit test compares the two).
    ///
    /// Why by hand: serde_json escapes every key on every poke, and its string writer, a
    /// byte loop behind its formatter's calls, was the largest function of this chef in
    /// wasm (7.5 % of a mixed-corpus replay with only this chef, more than counting the
    /// layers): names never change, so each is escaped once.
    pub fn payload_json(&mut self) -> String {
        for (name, _) in &self.counts[self.key_texts.len()..] {
            // Serialising a `str` cannot fail.
            let mut key = serde_json::to_string(name).unwrap_or_default();
            key.push(':');
            self.key_texts.push(key);
        }
        let room: usize = self.key_texts.iter().map(|k| k.len() + 21).sum();
        let mut out = String::with_capacity(room + 20);
        out.push_str("{\"packet_counts\":{");
        for (i, ((_, n), key)) in self.counts.iter().zip(&self.key_texts).enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(key);
            out.push_str(itoa::Buffer::new().format(*n));
        }
        out.push_str("}}");
        out
    }

    /// The interval payload: `{"packet_counts": {...}}`.
    pub fn payload(&self) -> PacketCounts<'_> {
        PacketCounts {
            packet_counts: Ordered(&self.counts),
        }
    }
}

impl layers::LayerSink for PacketCountChef {
    #[inline(always)]
    fn hot(&mut self, layer: layers::Hot) {
        self.bump_hot(layer);
    }
    #[inline(always)]
    fn name(&mut self, name: &'static str) {
        self.bump(name);
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

/// The state carried across a hot reload: the counts, as the `packet_counts` object.
impl Serialize for PacketCountChef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Ordered(&self.counts).serialize(s)
    }
}

/// Reads the counts back, in order. Names are matched by content from then on (the name
/// cache and the hot-layer table start empty and fill as layers are seen), so a restored
/// name only needs to live as long as the instance: it is leaked, once per name.
impl<'de> Deserialize<'de> for PacketCountChef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Counts;
        impl<'de> Visitor<'de> for Counts {
            type Value = PacketCountChef;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object of layer counts")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                let mut chef = PacketCountChef::default();
                while let Some((name, n)) = m.next_entry::<String, u64>()? {
                    if chef.counts.len() >= MAX_RESTORED_LAYERS || name.len() > MAX_RESTORED_NAME {
                        return Err(A::Error::custom(
                            "more or longer layer names than any version makes",
                        ));
                    }
                    let name: &'static str = match chef.counts.iter().find(|(k, _)| *k == name) {
                        Some((k, _)) => k,
                        None => Box::leak(name.into_boxed_str()),
                    };
                    match chef.counts.iter_mut().find(|(k, _)| *k == name) {
                        Some((_, c)) => *c = c.saturating_add(n),
                        None => chef.counts.push((name, n)),
                    }
                }
                Ok(chef)
            }
        }
        d.deserialize_map(Counts)
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
        RawJson(self.payload_json())
    }
}

chef_sdk::export_stateful_chef!(PacketCountChef);

#[cfg(test)]
mod tests {
    use super::*;
    use chef_sdk::testing::{frames, poke_raw, sample_capture, Batch};

    #[test]
    fn the_hand_written_payload_is_what_serde_writes() {
        // Names as the layer table makes them, and restored ones that need escapes.
        let state =
            r#"{"Ethernet":3,"IP":2,"q\"uote":1,"back\\slash":4,"tab\t":5,"é ✓":6,"ctl\u0001":7}"#;
        let mut chef: PacketCountChef = serde_json::from_str(state).expect("a state");
        let serde = |c: &PacketCountChef| serde_json::to_string(&c.payload()).expect("json");
        assert_eq!(chef.payload_json(), serde(&chef));
        // New names and growing counts between pokes (key texts filled as names appear).
        let batch = sample_capture().expect("sample capture");
        for _ in 0..3 {
            batch.feed(&mut chef);
            assert_eq!(chef.payload_json(), serde(&chef));
        }
        for n in [0, 1, 9, 10, u64::MAX] {
            chef.counts[0].1 = n;
            assert_eq!(chef.payload_json(), serde(&chef));
        }
        assert_eq!(
            PacketCountChef::default().payload_json(),
            r#"{"packet_counts":{}}"#
        );
    }

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
    fn counts_continue_across_a_reload() {
        let mut chef = PacketCountChef::default();
        let batch = sample_capture().expect("sample capture");
        batch.feed(&mut chef);
        let mut next = chef_sdk::testing::reload(&chef).expect("state carried");
        batch.feed(&mut next);
        let expected = r#"{"packet_counts":{"Ethernet":100,"IP":92,"TCP":72,"Raw":22,"UDP":18,"DNS":16,"ARP":8,"ICMP":2,"IP in ICMP":2,"UDP in ICMP":2}}"#;
        assert_eq!(poke_raw(&mut next, 2), vec![expected.to_owned()]);
        // A state no version makes is refused, not half-read.
        let mut huge = String::from("{");
        for i in 0..2000 {
            huge.push_str(&format!("\"L{i}\":1,"));
        }
        huge.push_str("\"end\":1}");
        assert!(serde_json::from_str::<PacketCountChef>(&huge).is_err());
    }

    fn names(frame: &[u8]) -> String {
        let mut b = Batch::default();
        b.push_ethernet(1, frame);
        let mut v = Vec::new();
        layers::for_each_layer(&b.packet(0), |n| v.push(n));
        v.join("/")
    }

    #[test]
    fn names_checked_against_scapy() {
        // Each expectation below is what scapy 2.4.5 prints for the same bytes.
        let udp = frames::udp4([1; 4], [2; 4], 1000, 2000, b"xx");
        let mut qinq = udp[..12].to_vec();
        qinq.extend_from_slice(&[0x88, 0xa8, 0, 5, 0x81, 0, 0, 6]);
        qinq.extend_from_slice(&udp[12..]);
        assert_eq!(names(&qinq), "Ethernet/802_1AD/802.1Q/IP/UDP/Raw");

        let mut stp = vec![0x42, 0x42, 0x03];
        stp.extend_from_slice(&[0; 35]);
        let mut dot3 = frames::ethernet([1; 6], [2; 6], stp.len() as u16, &stp);
        dot3.extend_from_slice(&[0; 8]); // padding to 60 bytes
        assert_eq!(names(&dot3), "802.3/LLC/Spanning Tree Protocol/Padding");

        // IPv6 Neighbor Solicitation with a source link-layer address option.
        let mut ns = vec![135, 0, 0, 0, 0, 0, 0, 0];
        ns.extend_from_slice(&[0; 16]);
        ns.extend_from_slice(&[1, 1, 2, 0, 0, 0, 0, 1]);
        let mut v6 = vec![0x60, 0, 0, 0, 0, ns.len() as u8, 58, 255];
        v6.extend_from_slice(&[0; 32]);
        v6.extend_from_slice(&ns);
        let nd = frames::ethernet([1; 6], [2; 6], 0x86dd, &v6);
        assert_eq!(
            names(&nd),
            "Ethernet/IPv6/ICMPv6 Neighbor Discovery - Neighbor Solicitation/\
             ICMPv6 Neighbor Discovery Option - Source Link-Layer Address"
        );

        // An ICMP port unreachable quoting a DNS query: the quoted ports pick DNS.
        let query = [0, 7, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, b'a', 0, 0, 1, 0, 1];
        let inner = frames::udp4([1; 4], [2; 4], 40000, 53, &query);
        let mut icmp = vec![3, 3, 0, 0, 0, 0, 0, 0];
        icmp.extend_from_slice(&inner[14..]);
        let err = frames::ethernet(
            [1; 6],
            [2; 6],
            0x0800,
            &frames::ipv4([2; 4], [1; 4], 1, &icmp),
        );
        assert_eq!(names(&err), "Ethernet/IP/ICMP/IP in ICMP/UDP in ICMP/DNS");
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

/// Prints per-capture counts of the team's pcap corpus, to compare with scapy 2.4.5 run on
/// the same files (`cargo test ... -- --ignored --nocapture`, then a scapy script that
/// counts `layer.name` along each packet's payload chain). Last run: 100 of 137 captures
/// identical; the rest differ in protocols the kitchen's parser does not decode (SMB,
/// PPPoE, VXLAN, 802.11, 6in4, ISAKMP payloads, ...).
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
