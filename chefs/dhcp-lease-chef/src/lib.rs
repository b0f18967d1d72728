//! `DHCPLeaseChef`: which devices got which IPv4 address, from DHCP.
//!
//! Drivers: packet and interval. Interest: UDP ports 67 and 68.
//!
//! Packet payload, one per DHCP ACK (a lease granted or renewed), NAK, RELEASE or
//! DECLINE:
//!
//! ```json
//! {"dhcp": {"event": "ack", "client_hw": "02:00:00:00:00:07", "ip": "192.168.1.50",
//!           "hostname": "oven", "server": "192.168.1.1", "lease_seconds": 3600,
//!           "router": "192.168.1.1", "subnet_mask": "255.255.255.0",
//!           "dns_servers": ["1.1.1.1"], "time": 1795739862.5}}
//! ```
//!
//! `event` is `ack`, `nak`, `release` or `decline`; `ip` is the leased address (ACK),
//! the released one (RELEASE: `ciaddr`), the declined one (DECLINE: requested address)
//! or `null` (NAK). `hostname` comes from the ACK or, since servers often omit it, from
//! the client's earlier DISCOVER/REQUEST. Absent options are `null` (`dns_servers`: `[]`).
//!
//! Interval payload, every poke (`{}` when none), the current leases by client MAC,
//! expired ones dropped (by the kitchen's clock, i.e. capture time when replaying):
//!
//! ```json
//! {"leases": {"02:00:00:00:00:07": {"ip": "192.168.1.50", "hostname": "oven",
//!                                   "expires": 1795743462.5}}}
//! ```
//!
//! (`expires` is `null` for an infinite or unknown lease time.)
//!
//! State bound: at most [`MAX_LEASES`] leases and [`MAX_HOSTNAMES`] remembered client
//! host names (least recently seen evicted), each host name at most 255 bytes. DHCPv6 is
//! not decoded.
//!
//! Payload bound: the interval payload stays under [`chef_sdk::PAYLOAD_BUDGET`] (900 KiB;
//! the kitchen refuses a dumpling over 1,044,480 bytes, at every poke). All 4096 leases
//! fit with ordinary host names (~100 bytes a lease), but not with 255-byte names (~350
//! bytes a lease: 1.4 MB) nor names of control bytes, which escape to 6 JSON bytes each
//! (~1,620 bytes a lease: 700 leases make 1.1 MB). Then only the most recently granted
//! leases that fit are listed (in first-seen order), and a field after the table says how
//! many were left out (present only when non-zero):
//!
//! ```json
//! {"leases": {...}, "leases_unreported": 3520}
//! ```
//!
//! Hot reload: leases and remembered host names follow the chef to its new version
//! (`export_stateful_chef!`), with their bounds, recency order and exact expiry times, so a
//! replaced chef keeps listing current leases and still names a client that asked before
//! the reload. In the snapshot the leases take at most [`LEASES_STATE_BUDGET`] bytes and
//! the host names [`HOSTNAMES_STATE_BUDGET`]: all 4096 of each fit with ordinary names;
//! only names of escaped control bytes (6 JSON bytes each) leave the least recently seen
//! out (as if evicted), keeping the snapshot under the kitchen's default
//! `--chef-state-max-bytes` (4 MiB).

use std::net::Ipv4Addr;

use chef_sdk::bounded::{BoundedMap, Within};
use chef_sdk::parse::dhcp::{self, MessageType};
use chef_sdk::ser::json_len;
use chef_sdk::{
    CachedPayload, Chef, ChefInfo, Drivers, Dumplings, Interest, Mac, Packet, Tick, Timestamp,
    TransportProtocol, PAYLOAD_BUDGET,
};
use serde::{Deserialize, Serialize};

/// Leases remembered.
pub const MAX_LEASES: usize = 4096;
/// Client host names remembered from requests.
pub const MAX_HOSTNAMES: usize = 4096;
/// Longest host name kept (bytes).
const MAX_HOSTNAME_LEN: usize = 255;
/// Most bytes the leases take in a hot-reload snapshot.
pub const LEASES_STATE_BUDGET: usize = 2 << 20;
/// Most bytes the remembered host names take in a hot-reload snapshot.
pub const HOSTNAMES_STATE_BUDGET: usize = 1536 << 10;

/// Packet payload: `{"dhcp": {...}}`.
#[derive(Debug, Serialize)]
pub struct DhcpDumpling {
    /// The event.
    pub dhcp: Event,
}

/// One DHCP event.
#[derive(Debug, Serialize)]
pub struct Event {
    /// `ack`, `nak`, `release`, `decline`.
    pub event: &'static str,
    /// Client hardware address.
    pub client_hw: Option<Mac>,
    /// Address concerned.
    pub ip: Option<Ipv4Addr>,
    /// Client host name.
    pub hostname: Option<String>,
    /// DHCP server (option 54).
    pub server: Option<Ipv4Addr>,
    /// Lease time in seconds (option 51).
    pub lease_seconds: Option<u32>,
    /// First router (option 3).
    pub router: Option<Ipv4Addr>,
    /// Subnet mask (option 1).
    pub subnet_mask: Option<Ipv4Addr>,
    /// DNS servers (option 6).
    pub dns_servers: Vec<Ipv4Addr>,
    /// Capture time.
    pub time: Timestamp,
}

/// A current lease.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lease {
    /// Leased address.
    pub ip: Ipv4Addr,
    /// Client host name, if known.
    pub hostname: Option<String>,
    /// When it runs out, if finite.
    pub expires: Option<Timestamp>,
}

/// Interval payload.
#[derive(Serialize)]
pub struct Leases<'a> {
    /// Client MAC → lease: the most recently granted leases that fit the payload budget
    /// (all of them, but for very long host names), in first-seen order.
    pub leases: Within<'a, Mac, Lease>,
    /// Current leases left out of `leases` (absent when none).
    #[serde(skip_serializing_if = "is_zero")]
    pub leases_unreported: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl<'a> Leases<'a> {
    /// The payload showing `leases`, as many as fit [`chef_sdk::PAYLOAD_BUDGET`].
    pub fn of(leases: &'a BoundedMap<Mac, Lease>) -> Self {
        let leases = leases.newest_within(PAYLOAD_BUDGET, |mac, lease| {
            json_len(mac) + json_len(lease) + 2
        });
        Leases {
            leases_unreported: leases.left_out,
            leases,
        }
    }
}

/// The chef: current leases and the host names clients asked with (its state across a
/// reload, too).
#[derive(Serialize, Deserialize)]
pub struct DhcpLeaseChef {
    leases: BoundedMap<Mac, Lease>,
    hostnames: BoundedMap<Mac, String>,
    /// The interval payload's text while `leases` has not changed (most pokes: a lease
    /// table changes only on an ACK, a RELEASE/NAK/DECLINE or an expiry, and it is sent
    /// whole on every poke). Made again by serialising the table after any change. Not
    /// saved across a reload.
    #[serde(skip)]
    leases_json: CachedPayload,
}

impl Default for DhcpLeaseChef {
    fn default() -> Self {
        DhcpLeaseChef {
            leases: BoundedMap::new(MAX_LEASES).with_state_budget(LEASES_STATE_BUDGET),
            hostnames: BoundedMap::new(MAX_HOSTNAMES).with_state_budget(HOSTNAMES_STATE_BUDGET),
            leases_json: CachedPayload::default(),
        }
    }
}

fn bounded_name(s: &str) -> String {
    let mut end = s.len().min(MAX_HOSTNAME_LEN);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

impl DhcpLeaseChef {
    /// The dumpling for one packet, if it is a DHCP ACK, NAK, RELEASE or DECLINE.
    pub fn handle(&mut self, packet: &Packet<'_>) -> Option<DhcpDumpling> {
        let msg = dhcp::parse(packet.payload())?;
        let kind = msg.message_type()?;
        let time = packet.timestamp();
        let mac = msg.client_mac;
        if let (Some(mac), Some(name)) = (mac, msg.hostname()) {
            if matches!(
                kind,
                MessageType::Discover | MessageType::Request | MessageType::Inform
            ) {
                self.hostnames.insert(mac, bounded_name(name));
            }
        }
        let hostname = msg
            .hostname()
            .map(bounded_name)
            .or_else(|| mac.and_then(|m| self.hostnames.get(&m).cloned()));
        let ip = match kind {
            MessageType::Ack => Some(msg.your_ip).filter(|ip| !ip.is_unspecified()),
            MessageType::Release => Some(msg.client_ip),
            MessageType::Decline => msg.requested_ip(),
            MessageType::Nak => None,
            _ => return None,
        };
        if let Some(mac) = mac {
            match (kind, ip) {
                (MessageType::Ack, Some(ip)) => {
                    let expires = msg.lease_seconds().filter(|s| *s != u32::MAX).map(|s| {
                        Timestamp::from_nanos(
                            time.as_nanos().saturating_add(u64::from(s) * 1_000_000_000),
                        )
                    });
                    self.leases_json.invalidate();
                    self.leases.insert(
                        mac,
                        Lease {
                            ip,
                            hostname: hostname.clone(),
                            expires,
                        },
                    );
                }
                (MessageType::Release | MessageType::Nak | MessageType::Decline, _) => {
                    self.leases_json.invalidate();
                    self.leases.remove(&mac);
                }
                _ => {}
            }
        }
        Some(DhcpDumpling {
            dhcp: Event {
                event: kind.name(),
                client_hw: mac,
                ip,
                hostname,
                server: msg.server_id(),
                lease_seconds: msg.lease_seconds(),
                router: msg.router(),
                subnet_mask: msg.subnet_mask(),
                dns_servers: msg.dns_servers(),
                time,
            },
        })
    }

    /// Drops expired leases and returns the interval payload.
    pub fn current(&mut self, now: Timestamp) -> Leases<'_> {
        self.expire(now);
        Leases::of(&self.leases)
    }

    /// Drops the leases expired at `now`.
    fn expire(&mut self, now: Timestamp) {
        let expired: Vec<Mac> = self
            .leases
            .iter()
            .filter(|(_, l)| l.expires.is_some_and(|e| e <= now))
            .map(|(m, _)| *m)
            .collect();
        if !expired.is_empty() {
            self.leases_json.invalidate();
        }
        for m in expired {
            self.leases.remove(&m);
        }
    }
}

impl Chef for DhcpLeaseChef {
    fn info() -> ChefInfo {
        ChefInfo::new(
            "DHCPLeaseChef",
            "DHCP leases granted, refused and released; every poke, the current leases",
        )
        .drivers(Drivers::PACKET | Drivers::INTERVAL)
        .interest(
            Interest::ANY
                .transport(&[TransportProtocol::Udp])
                .ports(&[67, 68]),
        )
    }

    fn on_packet(&mut self, packet: &Packet<'_>) -> impl Dumplings {
        self.handle(packet)
    }

    fn on_interval(&mut self, tick: Tick) -> impl Dumplings {
        self.expire(tick.now);
        // Serialised again only when the table changed since the last poke: the same text
        // as `current()` serialised.
        let DhcpLeaseChef {
            leases,
            leases_json,
            ..
        } = self;
        leases_json.payload(|| Leases::of(leases))
    }

    fn restored(&mut self) -> Result<(), String> {
        self.leases_json.invalidate();
        self.leases.set_capacity(MAX_LEASES);
        self.leases.set_state_budget(LEASES_STATE_BUDGET);
        self.hostnames.set_capacity(MAX_HOSTNAMES);
        self.hostnames.set_state_budget(HOSTNAMES_STATE_BUDGET);
        Ok(())
    }
}

chef_sdk::export_stateful_chef!(DhcpLeaseChef);

#[cfg(test)]
mod tests {
    use super::*;
    use chef_sdk::testing::{frames, poke_raw, Batch};

    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 7];

    fn dhcp(op: u8, kind: u8, yiaddr: [u8; 4], ciaddr: [u8; 4], opts: &[u8]) -> Vec<u8> {
        let mut m = vec![0u8; 236];
        m[0] = op;
        m[1] = 1;
        m[2] = 6;
        m[12..16].copy_from_slice(&ciaddr);
        m[16..20].copy_from_slice(&yiaddr);
        m[28..34].copy_from_slice(&MAC);
        m.extend_from_slice(&[99, 130, 83, 99, 53, 1, kind]);
        m.extend_from_slice(opts);
        m.push(255);
        m
    }

    #[test]
    fn request_ack_release_cycle() {
        let mut b = Batch::default();
        let s = 1_000_000_000u64;
        let request = dhcp(
            1,
            3,
            [0; 4],
            [0; 4],
            &[12, 4, b'o', b'v', b'e', b'n', 50, 4, 192, 168, 1, 50],
        );
        b.push_ethernet(10 * s, &frames::udp4([0; 4], [255; 4], 68, 67, &request));
        let ack = dhcp(
            2,
            5,
            [192, 168, 1, 50],
            [0; 4],
            &[54, 4, 192, 168, 1, 1, 51, 4, 0, 0, 0, 60, 6, 4, 9, 9, 9, 9],
        );
        b.push_ethernet(
            11 * s,
            &frames::udp4([192, 168, 1, 1], [192, 168, 1, 50], 67, 68, &ack),
        );
        let mut chef = DhcpLeaseChef::default();
        let out = b.feed(&mut chef);
        assert_eq!(out.len(), 1, "the request makes no dumpling");
        let d = &out[0].1["dhcp"];
        assert_eq!(d["event"], "ack");
        assert_eq!(d["client_hw"], "02:00:00:00:00:07");
        assert_eq!(d["ip"], "192.168.1.50");
        assert_eq!(d["hostname"], "oven", "remembered from the request");
        assert_eq!(d["lease_seconds"], 60);
        assert_eq!(d["dns_servers"], serde_json::json!(["9.9.9.9"]));
        assert!(d["router"].is_null());
        assert_eq!(
            poke_raw(&mut chef, 12 * s),
            [
                r#"{"leases":{"02:00:00:00:00:07":{"ip":"192.168.1.50","hostname":"oven","expires":71.0}}}"#
            ]
        );
        assert_eq!(poke_raw(&mut chef, 71 * s), [r#"{"leases":{}}"#], "expired");

        let mut b2 = Batch::default();
        b2.push_ethernet(
            80 * s,
            &frames::udp4([192, 168, 1, 1], [192, 168, 1, 50], 67, 68, &ack),
        );
        let release = dhcp(1, 7, [0; 4], [192, 168, 1, 50], &[]);
        b2.push_ethernet(
            90 * s,
            &frames::udp4([192, 168, 1, 50], [192, 168, 1, 1], 68, 67, &release),
        );
        let out = b2.feed(&mut chef);
        assert_eq!(out[1].1["dhcp"]["event"], "release");
        assert_eq!(out[1].1["dhcp"]["ip"], "192.168.1.50");
        assert_eq!(poke_raw(&mut chef, 91 * s), [r#"{"leases":{}}"#]);
    }

    #[test]
    fn a_reload_keeps_leases_and_names() {
        let s = 1_000_000_000u64;
        let request = dhcp(1, 3, [0; 4], [0; 4], &[12, 4, b'o', b'v', b'e', b'n']);
        let ack = dhcp(2, 5, [192, 168, 1, 50], [0; 4], &[51, 4, 0, 0, 0, 60]);
        let mut b = Batch::default();
        b.push_ethernet(10 * s, &frames::udp4([0; 4], [255; 4], 68, 67, &request));
        b.push_ethernet(
            11 * s,
            &frames::udp4([192, 168, 1, 1], [192, 168, 1, 50], 67, 68, &ack),
        );
        b.push_ethernet(
            12 * s,
            &frames::udp4([192, 168, 1, 1], [192, 168, 1, 50], 67, 68, &ack),
        );
        // After the request (its host name is remembered), and between the two ACKs (the
        // lease is current and expires on time).
        assert_eq!(
            chef_sdk::testing::check_reload_at::<DhcpLeaseChef>(&b, &[0, 1, 2, 3]),
            16
        );
        let mut chef = DhcpLeaseChef::default();
        b.feed(&mut chef);
        let mut r = chef_sdk::testing::reload(&chef).expect("restored");
        assert_eq!(
            poke_raw(&mut r, 13 * s),
            [
                r#"{"leases":{"02:00:00:00:00:07":{"ip":"192.168.1.50","hostname":"oven","expires":72.0}}}"#
            ]
        );
        assert_eq!(
            poke_raw(&mut r, 72 * s),
            [r#"{"leases":{}}"#],
            "expired on time"
        );
        assert!(
            chef_sdk::testing::check_reload_over_corpus::<DhcpLeaseChef>(|p| p.has_port(67)) > 10
        );
    }

    #[test]
    fn worst_case_snapshot_fits_the_default_cap() {
        let name = "\u{1}".repeat(MAX_HOSTNAME_LEN);
        let mut chef = DhcpLeaseChef::default();
        for i in 0..MAX_LEASES as u64 {
            let lease = Lease {
                ip: std::net::Ipv4Addr::BROADCAST,
                hostname: Some(name.clone()),
                expires: Some(Timestamp::from_nanos(u64::MAX - i)),
            };
            chef.leases.insert(Mac(i), lease);
            chef.hostnames.insert(Mac(i), name.clone());
        }
        let r = chef_sdk::testing::assert_state_fits_the_default_cap(&chef);
        // The newest are kept; ordinary host names would all fit (~100 bytes a lease).
        assert!(r.leases.get(&Mac(MAX_LEASES as u64 - 1)).is_some());
        assert!(
            r.leases.len() > 1000 && r.hostnames.len() > 900,
            "{} {}",
            r.leases.len(),
            r.hostnames.len()
        );
    }

    /// ACKs for `n` clients whose host names are `len` bytes of `fill` (control bytes escape
    /// to 6 JSON bytes each), then a poke: its payload.
    fn acks_with_long_names(n: u64, fill: u8, len: u8) -> (DhcpLeaseChef, String) {
        let s = 1_000_000_000u64;
        let mut b = Batch::default();
        for i in 0..n {
            let mut opts = vec![51, 4, 0, 1, 0, 0, 12, len];
            opts.extend(std::iter::repeat_n(fill, usize::from(len)));
            let mut ack = dhcp(2, 5, [10, 0, (i >> 8) as u8, i as u8], [0; 4], &opts);
            // chaddr 02:00:00:00:hi:lo
            ack[32] = (i >> 8) as u8;
            ack[33] = i as u8;
            b.push_ethernet(
                10 * s + i,
                &frames::udp4([10, 0, 0, 1], [255; 4], 67, 68, &ack),
            );
        }
        let mut chef = DhcpLeaseChef::default();
        assert_eq!(b.feed(&mut chef).len(), n as usize);
        let got = poke_raw(&mut chef, 20 * s).remove(0);
        (chef, got)
    }

    #[test]
    fn the_lease_table_always_fits_one_payload() {
        // 4096 leases with 255-byte names of control bytes (6.6 MB as a whole table), then
        // of letters (1.4 MB): the newest that fit are shown, the rest counted.
        for (fill, min_shown) in [(1u8, 500), (b'x', 2400)] {
            let (chef, got) = acks_with_long_names(MAX_LEASES as u64, fill, 255);
            assert_eq!(chef.leases.len(), MAX_LEASES);
            let whole = serde_json::to_string(&chef.leases).expect("serialises");
            assert!(whole.len() > 1_300_000, "the whole table: {}", whole.len());
            assert!(got.len() <= PAYLOAD_BUDGET + 64, "{}", got.len());
            let v: serde_json::Value = serde_json::from_str(&got).expect("JSON");
            let shown = v["leases"].as_object().expect("table").len();
            assert!(shown >= min_shown, "{shown}");
            assert_eq!(
                v["leases_unreported"].as_u64(),
                Some((MAX_LEASES - shown) as u64)
            );
            // The newest lease is shown, the oldest not.
            assert!(v["leases"].get("02:00:00:00:0f:ff").is_some(), "{fill}");
            assert!(v["leases"].get("02:00:00:00:00:00").is_none(), "{fill}");
        }
        // The probe's case: 700 leases of control-byte names (1.1 MB whole).
        let (_, got) = acks_with_long_names(700, 2, 255);
        assert!(got.len() <= PAYLOAD_BUDGET + 64, "{}", got.len());
        assert!(got.contains(r#""leases_unreported":"#));
        // Ordinary names: every lease, no count.
        let (_, got) = acks_with_long_names(MAX_LEASES as u64, b'o', 12);
        let v: serde_json::Value = serde_json::from_str(&got).expect("JSON");
        assert_eq!(v["leases"].as_object().map(|m| m.len()), Some(MAX_LEASES));
        assert!(v.get("leases_unreported").is_none());
    }

    #[test]
    fn real_dhcp_capture() {
        let dir = std::env::var("ND_SHARED_PCAPS").unwrap_or_else(|_| {
            concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/pcaps").to_owned()
        });
        let path = format!("{dir}/arkime__wireshark-dhcp.pcap");
        let bytes = std::fs::read(path).expect("the team's pcap corpus ($ND_SHARED_PCAPS)");
        let batch = Batch::from_pcap(&bytes).expect("pcap");
        let mut chef = DhcpLeaseChef::default();
        let out = batch.feed(&mut chef);
        assert!(!out.is_empty(), "the capture holds a DHCP ACK");
        assert!(out
            .iter()
            .any(|(_, v)| v["dhcp"]["event"] == "ack" && v["dhcp"]["ip"].is_string()));
    }

    #[test]
    fn survives_the_corpus() {
        // Every capture of the team's pcap corpus: no panic, only valid JSON.
        assert!(chef_sdk::testing::sweep_corpus::<DhcpLeaseChef>() > 10_000);
    }

    #[test]
    fn a_cached_poke_is_what_serialising_the_table_gives() {
        // Random ACKs, RELEASEs, NAKs and DECLINEs for a few clients with short leases,
        // poked between batches: every poke's text is the table serialised afresh.
        let s = 1_000_000_000u64;
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rand = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let mut chef = DhcpLeaseChef::default();
        let mut t = 10 * s;
        let mut cached = 0;
        let mut shown = 0;
        for _ in 0..400 {
            let mut b = Batch::default();
            for _ in 0..rand(3) {
                t += rand(5) * s;
                let host = rand(6) as u8;
                let mac_opt = [61, 7, 1, 2, 0, 0, 0, 0, host];
                let ip = [192, 168, 1, 10 + host];
                let lease = [51, 4, 0, 0, 0, rand(40) as u8 + 1];
                let msg = match rand(5) {
                    0 | 1 => dhcp(2, 5, ip, [0; 4], &[&mac_opt[..], &lease[..]].concat()),
                    2 => dhcp(1, 7, [0; 4], ip, &mac_opt),
                    3 => dhcp(2, 6, [0; 4], [0; 4], &mac_opt),
                    _ => dhcp(
                        1,
                        4,
                        [0; 4],
                        [0; 4],
                        &[&mac_opt[..], &[50, 4][..], &ip[..]].concat(),
                    ),
                };
                let (src, dst) = if msg[0] == 2 { (67, 68) } else { (68, 67) };
                b.push_ethernet(t, &frames::udp4(ip, [192, 168, 1, 1], src, dst, &msg));
            }
            b.feed_raw(&mut chef);
            t += rand(8) * s;
            if chef.leases_json.is_fresh() {
                cached += 1;
            }
            let got = poke_raw(&mut chef, t);
            let want = serde_json::to_string(&Leases::of(&chef.leases)).expect("serialises");
            assert_eq!(
                want,
                format!(
                    "{{\"leases\":{}}}",
                    serde_json::to_string(&chef.leases).expect("serialises")
                ),
                "a small table is shown whole"
            );
            assert_eq!(got, [want]);
            shown += usize::from(!chef.leases.is_empty());
        }
        assert!(cached > 50, "only {cached} pokes reused the text");
        assert!(shown > 50, "only {shown} pokes showed a lease");
    }
}
