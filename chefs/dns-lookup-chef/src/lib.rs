//! `DNSLookupChef`: which host names are being looked up, and how often.
//!
//! Drivers: packet and interval. Interest: UDP/TCP port 53 (DNS) or 5353 (mDNS).
//!
//! Packet payload, one per DNS **query** with at least one question:
//!
//! ```json
//! {"lookup": {"hostname": "example.test", "when": 1795739862.511441}}
//! ```
//!
//! Interval payload, on **every** poke (`{"lookups_seen": {}}` before any lookup), host
//! names in first-seen order:
//!
//! ```json
//! {"lookups_seen": {"example.test": {"count": 2, "latest": 1795739862.513954},
//!                   "www.dumpling.test": {"count": 1, "latest": 1795739862.513508}}}
//! ```
//!
//! `hostname` is the first question's name with no trailing dot (label bytes that are not
//! UTF-8 become U+FFFD); `when` and `latest` are float epoch seconds.
//!
//! State bound: at most [`MAX_HOSTNAMES`] names are remembered; a new name beyond that
//! evicts the least recently looked-up one. The retransmission check remembers the last
//! [`MAX_RECENT_QUERIES`] queries.
//!
//! Payload bound: the interval payload stays under [`chef_sdk::PAYLOAD_BUDGET`] (900 KiB;
//! the kitchen refuses a dumpling over 1,044,480 bytes, at every poke). Ordinary names
//! always fit (1000 names of 253 letters: ~300 KB), but names of control bytes escape to 6
//! JSON bytes each (1000 of them: ~1.56 MB). Then only the most recently looked-up names
//! that fit are listed (still in first-seen order), and a field follows the table with
//! how many were left out (present only when non-zero):
//!
//! ```json
//! {"lookups_seen": {...}, "lookups_unreported": 412}
//! ```
//!
//! Hot reload: both tables follow the chef to its new version (`export_stateful_chef!`),
//! with their bounds and recency order, so a replaced chef keeps listing and counting the
//! names it saw and still recognises a retransmission of a query sent before the reload.
//! Each table's share of the snapshot is at most [`STATE_BUDGET`] bytes: every entry fits
//! unless names are long runs of escaped control bytes, and then the least recently seen
//! names are left out (as if evicted), so the snapshot stays under the kitchen's default
//! `--chef-state-max-bytes` (4 MiB).
//!
//! Deviations from the original (Python netdumplings 0.5.1):
//! * Only queries (QR bit 0) count and make dumplings. The original also counted the
//!   response, so each lookup counted twice (four times on Linux `lo`).
//! * A retransmitted query (same client address and port, DNS id and name, within
//!   [`RETRANSMIT_WINDOW_NS`]) is the same lookup and is not counted again. Queries for
//!   different record types (A and AAAA) are separate messages and each count.
//! * `when`/`latest` are the packet's **capture** time, not processing time.
//! * `lookups_seen` is bounded (above); the original's grew until the hub dropped the
//!   kitchen for a >1 MiB frame.
//! * Names that are not valid UTF-8 are decoded lossily instead of raising an error.
//! * DNS over TCP is read when a segment holds a whole length-prefixed message.

use chef_sdk::bounded::BoundedMap;
use chef_sdk::parse::dns;
use chef_sdk::tally::{NameTally, TallyEntry};
use chef_sdk::{
    Chef, ChefInfo, Drivers, Dumplings, Interest, Packet, Tick, Timestamp, TransportProtocol,
};
use serde::{Deserialize, Serialize};

/// How many distinct host names the chef remembers.
pub const MAX_HOSTNAMES: usize = 1000;
/// How many recent queries the retransmission check remembers.
pub const MAX_RECENT_QUERIES: usize = 1024;
/// A query repeated within this many nanoseconds is a retransmission.
pub const RETRANSMIT_WINDOW_NS: u64 = 5_000_000_000;
/// Most bytes each table takes in a hot-reload snapshot (two tables: 3.5 MiB in all).
pub const STATE_BUDGET: usize = 1792 << 10;

/// What identifies a query message on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
struct QueryKey {
    client: Option<(std::net::IpAddr, u16)>,
    id: u16,
    name: String,
}

/// Packet payload: `{"lookup": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LookupDumpling {
    /// The lookup.
    pub lookup: Lookup,
}

/// One lookup.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Lookup {
    /// The name looked up.
    pub hostname: String,
    /// Capture time of the query.
    pub when: Timestamp,
}

pub use chef_sdk::tally::Seen;

/// Interval payload: `{"lookups_seen": {...}}`.
#[derive(Serialize)]
pub struct LookupsSeen<'a> {
    /// Name → counts, first-seen order.
    pub lookups_seen: &'a BoundedMap<String, TallyEntry>,
}

/// The chef: counts per host name (its state across a reload, too).
#[derive(Serialize, Deserialize)]
pub struct DnsLookupChef {
    /// Counts per name; its interval payload's text kept while no lookup changed it
    /// (most pokes of a real capture: the table is sent whole every poke).
    seen: NameTally,
    recent: BoundedMap<QueryKey, Timestamp>,
}

impl Default for DnsLookupChef {
    fn default() -> Self {
        DnsLookupChef {
            seen: NameTally::new(MAX_HOSTNAMES, STATE_BUDGET),
            recent: BoundedMap::new(MAX_RECENT_QUERIES).with_state_budget(STATE_BUDGET),
        }
    }
}

impl DnsLookupChef {
    /// The dumpling for one packet (`None` unless it is a DNS query with a question).
    pub fn handle(&mut self, packet: &Packet<'_>) -> Option<LookupDumpling> {
        let payload = packet.payload();
        let msg = if packet.tcp().is_some() {
            dns::strip_tcp_length(payload)?
        } else {
            payload
        };
        let question = dns::question(msg)?;
        if question.is_response {
            return None;
        }
        let when = packet.timestamp();
        let key = QueryKey {
            client: packet.src_ip().zip(packet.src_port()),
            id: question.id,
            name: question.name.clone(),
        };
        if let Some(before) = self.recent.insert(key, when) {
            if when.since(before).as_nanos() < u128::from(RETRANSMIT_WINDOW_NS) {
                return None;
            }
        }
        self.seen.count(&question.name, when);
        Some(LookupDumpling {
            lookup: Lookup {
                hostname: question.name,
                when,
            },
        })
    }

    /// The interval payload while the table fits [`chef_sdk::PAYLOAD_BUDGET`] (always, but
    /// for names of escaped control bytes).
    pub fn summary(&self) -> LookupsSeen<'_> {
        LookupsSeen {
            lookups_seen: self.seen.names(),
        }
    }
}

impl Chef for DnsLookupChef {
    fn info() -> ChefInfo {
        ChefInfo::new(
            "DNSLookupChef",
            "One dumpling per DNS query; every poke, the host names looked up so far",
        )
        .drivers(Drivers::PACKET | Drivers::INTERVAL)
        .interest(
            Interest::ANY
                .transport(&[TransportProtocol::Udp, TransportProtocol::Tcp])
                .ports(&[53, 5353]),
        )
    }

    fn on_packet(&mut self, packet: &Packet<'_>) -> impl Dumplings {
        LookupPayload(self.handle(packet).map(|d| d.to_json()))
    }

    fn on_interval(&mut self, _tick: Tick) -> impl Dumplings {
        // Rebuilt only when a lookup changed the table since the last poke, and then from
        // each entry's kept text (the same text as serialising `summary()`, while the
        // table fits the payload budget).
        self.seen.payload("lookups_seen", "lookups_unreported", &[])
    }

    fn restored(&mut self) -> Result<(), String> {
        // This version's bounds, whatever the old version's were.
        self.seen.restored(MAX_HOSTNAMES, STATE_BUDGET);
        self.recent.set_capacity(MAX_RECENT_QUERIES);
        self.recent.set_state_budget(STATE_BUDGET);
        Ok(())
    }
}

impl LookupDumpling {
    /// The payload's JSON text: exactly what serde_json writes for this struct (a test
    /// compares them), written into one buffer. A host name that JSON escapes (a quote, a
    /// backslash or a control byte) goes through serde_json. Why: one payload per query,
    /// and serde's struct machinery cost more than the text.
    pub fn to_json(&self) -> String {
        let name = &self.lookup.hostname;
        if name.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
            return chef_sdk::serde_json::to_string(self).unwrap_or_default();
        }
        let mut out = String::with_capacity(name.len() + 56);
        out.push_str("{\"lookup\":{\"hostname\":\"");
        // serde_json writes every other character as it is (non-ASCII too).
        out.push_str(name);
        out.push_str("\",\"when\":");
        let secs = self.lookup.when.as_secs_f64();
        if secs.is_finite() {
            // serde_json's own float writer (`CompactFormatter::write_f64`).
            out.push_str(zmij::Buffer::new().format_finite(secs));
        } else {
            out.push_str("null");
        }
        out.push_str("}}");
        out
    }
}

/// A handler's answer: one payload already written as JSON text, or none.
pub struct LookupPayload(Option<String>);

impl Dumplings for LookupPayload {
    #[inline]
    fn for_each_json(self, mut emit: impl FnMut(String)) {
        if let Some(text) = self.0 {
            emit(text);
        }
    }
}

chef_sdk::export_stateful_chef!(DnsLookupChef);

#[cfg(test)]
mod tests {
    use super::*;
    use chef_sdk::testing::{frames, poke_raw, sample_capture, Batch};

    #[test]
    fn sample_capture_counts_each_lookup_once() {
        let mut chef = DnsLookupChef::default();
        assert_eq!(
            poke_raw(&mut chef, 1),
            vec![r#"{"lookups_seen":{}}"#.to_owned()]
        );
        let batch = sample_capture().expect("sample capture");
        let out = batch.feed(&mut chef);
        let names: Vec<_> = out
            .iter()
            .map(|(_, v)| v["lookup"]["hostname"].clone())
            .collect();
        assert_eq!(
            names,
            [
                "example.test",
                "www.dumpling.test",
                "example.test",
                "fake.test"
            ]
        );
        assert_eq!(out[0].1["lookup"]["when"], 1795739862.511441);
        let expected = r#"{"lookups_seen":{"example.test":{"count":2,"latest":1795739862.513954},"www.dumpling.test":{"count":1,"latest":1795739862.513508},"fake.test":{"count":1,"latest":1795739894.145663}}}"#;
        assert_eq!(poke_raw(&mut chef, 2), vec![expected.to_owned()]);
    }

    #[test]
    fn cached_summary_is_what_serialising_the_table_gives_after_every_packet() {
        // Poke after every packet of the corpus's DNS captures: the cached text must be
        // exactly the table serialised now, whether a packet changed it or not.
        let mut checked = 0;
        for (_, batch) in chef_sdk::testing::corpus() {
            let mut chef = DnsLookupChef::default();
            for (i, packet) in batch.iter().enumerate() {
                if packet.dst_port() != Some(53) && packet.src_port() != Some(53) {
                    continue;
                }
                let _ = chef.handle(&packet);
                let cached = poke_raw(&mut chef, i as u64);
                let fresh = serde_json::to_string(&chef.summary()).expect("serialises");
                assert_eq!(cached, vec![fresh]);
                checked += 1;
                if checked > 3000 {
                    return;
                }
            }
        }
        assert!(checked > 100, "only {checked} DNS packets in the corpus");
    }

    #[test]
    fn rebuilt_summary_is_exact_across_evictions_and_pruning() {
        // More names than the table holds, revisited out of order, with pokes in between:
        // the text rebuilt from cached entries is the table serialised, every time.
        let mut chef = DnsLookupChef::default();
        let mut b = Batch::default();
        for i in 0..(3 * MAX_HOSTNAMES as u64) {
            let name = format!("n{}.test", (i * 7919) % (2 * MAX_HOSTNAMES as u64 + 13));
            let mut query = vec![(i >> 8) as u8, i as u8, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
            for label in name.split('.') {
                query.push(label.len() as u8);
                query.extend_from_slice(label.as_bytes());
            }
            query.extend_from_slice(&[0, 0, 1, 0, 1]);
            b.push_ethernet(
                1_000_000_000 + i * 6_000_000_000,
                &frames::udp4([1; 4], [2; 4], 40000 + (i % 1000) as u16, 53, &query),
            );
        }
        for (i, packet) in b.iter().enumerate() {
            let _ = chef.handle(&packet);
            if i % 97 == 0 || i % 1000 > 990 {
                let fresh = serde_json::to_string(&chef.summary()).expect("serialises");
                assert_eq!(
                    poke_raw(&mut chef, i as u64),
                    vec![fresh],
                    "after packet {i}"
                );
            }
        }
        // After a poke every entry holds its text, and only the table's entries are kept.
        let _ = poke_raw(&mut chef, 0);
        assert_eq!(chef.seen.names().len(), MAX_HOSTNAMES);
    }

    #[test]
    fn tcp_mdns_and_garbage() {
        let query = [
            0x00, 0x07, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 1, b'a', 2, b'b', b'c', 0, 0, 1, 0, 1,
        ];
        let mut tcp = vec![0, query.len() as u8];
        tcp.extend_from_slice(&query);
        let mut b = Batch::default();
        b.push_ethernet(1, &frames::tcp4([1; 4], [2; 4], 40000, 53, &tcp));
        b.push_ethernet(
            2,
            &frames::udp4([1; 4], [224, 0, 0, 251], 5353, 5353, &query),
        );
        b.push_ethernet(
            3,
            &frames::udp4([1; 4], [2; 4], 40000, 53, b"\xff\xff garbage"),
        );
        let mut chef = DnsLookupChef::default();
        let out = batch_names(&b, &mut chef);
        assert_eq!(out, ["a.bc", "a.bc"]);
        assert_eq!(chef.seen.names().get("a.bc").map(|s| s.seen.count), Some(2));
    }

    fn batch_names(b: &Batch, chef: &mut DnsLookupChef) -> Vec<String> {
        b.feed(chef)
            .into_iter()
            .filter_map(|(_, v)| v["lookup"]["hostname"].as_str().map(str::to_owned))
            .collect()
    }

    #[test]
    fn retransmissions_count_once() {
        let query = [
            0x00, 0x07, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 1, b'a', 0, 0, 1, 0, 1,
        ];
        let mut b = Batch::default();
        let s = 1_000_000_000;
        for t in [0, s, 2 * s, 10 * s] {
            b.push_ethernet(t, &frames::udp4([1; 4], [2; 4], 40000, 53, &query));
        }
        // Another client with the same id is another lookup.
        b.push_ethernet(3 * s, &frames::udp4([3; 4], [2; 4], 40000, 53, &query));
        let mut chef = DnsLookupChef::default();
        let times: Vec<u64> = b
            .feed(&mut chef)
            .iter()
            .map(|(i, _)| u64::from(*i))
            .collect();
        assert_eq!(
            times,
            [0, 3, 4],
            "the resends at 1 s and 2 s are the first lookup"
        );
        assert_eq!(chef.seen.names().get("a").map(|x| x.seen.count), Some(3));
    }

    #[test]
    fn names_are_bounded() {
        let mut chef = DnsLookupChef::default();
        for i in 0..MAX_HOSTNAMES + 5 {
            chef.seen.names_mut().insert(
                format!("h{i}"),
                Seen {
                    count: 1,
                    latest: Timestamp::from_nanos(0),
                }
                .into(),
            );
        }
        assert_eq!(chef.seen.names().len(), MAX_HOSTNAMES);
        assert!(chef.seen.names().get("h0").is_none() && chef.seen.names().get("h1004").is_some());
    }

    #[test]
    fn a_reload_changes_nothing_later() {
        use chef_sdk::testing::{check_reload_at, check_reload_over_corpus};
        let batch = sample_capture().expect("sample capture");
        assert!(check_reload_at::<DnsLookupChef>(&batch, &[0, 1, 10, 25, 49, 50]) > 10);
        // Every corpus capture with DNS, reloaded at a third and two thirds.
        let dumplings =
            check_reload_over_corpus::<DnsLookupChef>(|p| p.has_port(53) || p.has_port(5353));
        assert!(dumplings > 1000, "{dumplings}");
    }

    #[test]
    fn a_retransmission_after_a_reload_is_still_recognised() {
        let query = [
            0x00, 0x07, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 1, b'a', 0, 0, 1, 0, 1,
        ];
        let mut b = Batch::default();
        b.push_ethernet(0, &frames::udp4([1; 4], [2; 4], 40000, 53, &query));
        let mut old = DnsLookupChef::default();
        assert_eq!(b.feed(&mut old).len(), 1);
        let mut new = chef_sdk::testing::reload(&old).expect("restored");
        let mut again = Batch::default();
        again.push_ethernet(
            1_000_000_000,
            &frames::udp4([1; 4], [2; 4], 40000, 53, &query),
        );
        assert!(
            again.feed(&mut new).is_empty(),
            "the resend is the same lookup"
        );
        assert_eq!(new.seen.names().get("a").map(|s| s.seen.count), Some(1));
    }

    #[test]
    fn worst_case_names_fit_one_payload() {
        // 1000 queries for distinct 253-character names of control bytes (labels of 63,
        // 63, 63 and 61 bytes: 255 on the wire), each escaping to 6 JSON bytes.
        let mut b = Batch::default();
        for i in 0..MAX_HOSTNAMES as u64 {
            let mut query = vec![(i >> 8) as u8, i as u8, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
            for (n, len) in [63u8, 63, 63, 61].into_iter().enumerate() {
                query.push(len);
                let mut label = vec![1u8; usize::from(len)];
                if n == 0 {
                    label[0] = 1 + (i % 31) as u8;
                    label[1] = 1 + (i / 31 % 31) as u8;
                    label[2] = 1 + (i / 961 % 31) as u8;
                }
                query.extend_from_slice(&label);
            }
            query.extend_from_slice(&[0, 0, 1, 0, 1]);
            b.push_ethernet(
                1_000_000_000 + i,
                &frames::udp4([1; 4], [2; 4], 40000, 53, &query),
            );
        }
        let mut chef = DnsLookupChef::default();
        assert_eq!(b.feed(&mut chef).len(), MAX_HOSTNAMES);
        assert_eq!(chef.seen.names().len(), MAX_HOSTNAMES);
        let whole = serde_json::to_string(&chef.summary()).expect("serialises");
        assert!(whole.len() > 1_500_000, "the whole table: {}", whole.len());
        let got = poke_raw(&mut chef, 2_000_000_000).remove(0);
        assert!(got.len() <= chef_sdk::PAYLOAD_BUDGET + 64, "{}", got.len());
        let v: serde_json::Value = serde_json::from_str(&got).expect("JSON");
        let shown = v["lookups_seen"].as_object().expect("table").len();
        assert!(shown > 550, "{shown}");
        assert_eq!(
            v["lookups_unreported"].as_u64(),
            Some((MAX_HOSTNAMES - shown) as u64)
        );
    }

    #[test]
    fn worst_case_snapshot_fits_the_default_cap_and_new_bounds_apply() {
        // Names of 254 control bytes: each escapes to 6 JSON bytes.
        let long = |i: usize| format!("{i:06}{}", "\u{1}".repeat(248));
        let mut chef = DnsLookupChef::default();
        for i in 0..MAX_RECENT_QUERIES {
            let when = Timestamp::from_nanos(u64::MAX - i as u64);
            let client = Some((std::net::IpAddr::from([0xffff_u16; 8]), 65535));
            chef.recent.insert(
                QueryKey {
                    client,
                    id: 65535,
                    name: long(i),
                },
                when,
            );
            chef.seen.names_mut().insert(
                long(i),
                Seen {
                    count: u64::MAX,
                    latest: when,
                }
                .into(),
            );
        }
        let restored = chef_sdk::testing::assert_state_fits_the_default_cap(&chef);
        // The newest names are the ones kept.
        assert!(restored
            .seen
            .names()
            .get(long(MAX_RECENT_QUERIES - 1).as_str())
            .is_some());
        assert!(
            restored.seen.names().len() > MAX_HOSTNAMES / 2,
            "{}",
            restored.seen.names().len()
        );
        // Ordinary names all fit.
        let mut chef = DnsLookupChef::default();
        for i in 0..MAX_HOSTNAMES {
            let name = format!("host-{i}.a-rather-long-subdomain.example.test");
            chef.seen.names_mut().insert(
                name,
                Seen {
                    count: 1,
                    latest: Timestamp::from_nanos(1),
                }
                .into(),
            );
        }
        assert_eq!(
            chef_sdk::testing::reload(&chef)
                .expect("restored")
                .seen
                .names()
                .len(),
            MAX_HOSTNAMES
        );
        // A state saved with a larger bound is trimmed to this version's, oldest first.
        chef.seen.names_mut().set_capacity(MAX_HOSTNAMES * 2);
        chef.seen.names_mut().insert(
            "one more".into(),
            Seen {
                count: 1,
                latest: Timestamp::from_nanos(2),
            }
            .into(),
        );
        let r = chef_sdk::testing::reload(&chef).expect("restored");
        assert_eq!(
            (r.seen.names().len(), r.seen.names().capacity()),
            (MAX_HOSTNAMES, MAX_HOSTNAMES)
        );
        assert!(r
            .seen
            .names()
            .get("host-0.a-rather-long-subdomain.example.test")
            .is_none());
        assert!(r.seen.names().get("one more").is_some());
    }

    #[test]
    fn survives_the_corpus() {
        // Every capture of the team's pcap corpus: no panic, only valid JSON.
        assert!(chef_sdk::testing::sweep_corpus::<DnsLookupChef>() > 10_000);
    }

    #[test]
    fn the_hand_written_lookup_is_what_serde_writes() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rand = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let pieces = [
            "example",
            ".",
            "test",
            "a-b",
            "xn--d1acufc",
            "\u{e9}",
            "\u{1f600}",
            "\u{fffd}",
            "\"",
            "\\",
            "\u{1}",
            "\n",
            "\u{7f}",
            "/",
            " ",
            "_tcp",
            "0",
        ];
        let times = [
            0,
            1,
            999,
            1_000_000_000,
            1_795_739_862_511_441_000,
            u64::MAX,
        ];
        for i in 0..20_000usize {
            let mut name = String::new();
            for _ in 0..rand() % 6 {
                name.push_str(pieces[(rand() % pieces.len() as u64) as usize]);
            }
            let d = LookupDumpling {
                lookup: Lookup {
                    hostname: name,
                    when: Timestamp::from_nanos(if i < times.len() {
                        times[i]
                    } else {
                        rand() >> (rand() % 20)
                    }),
                },
            };
            assert_eq!(
                d.to_json(),
                serde_json::to_string(&d).expect("serialises"),
                "{d:?}"
            );
        }
    }
}
