//! `ARPChef`: one dumpling per ARP packet, noting devices that are new or changed.
//!
//! Drivers: packet. Interest: network `[arp]`.
//!
//! Packet payload (keys in this order):
//!
//! ```json
//! {"operation": "reply", "src_hw": "02:00:00:00:00:02", "src_ip": "127.0.0.2",
//!  "dst_hw": "02:00:00:00:00:01", "dst_ip": "127.0.0.1", "time": 1795739863.680118,
//!  "notes": "source device is new"}
//! ```
//!
//! * `operation`: `"request"` (1), `"reply"` (2), otherwise the operation number.
//! * `src_hw`/`dst_hw`: lower-case colon MACs; `src_ip`/`dst_ip`: dotted IPv4.
//! * `time`: float epoch seconds.
//! * `notes`: `null`, or for a reply only: `"source device is new"` when its IP was not
//!   known, `"source device has new IP address"` when the IP was known with another MAC
//!   (the wording is the original's and is kept because eaters match on it, although it
//!   means "known IP, new MAC"). Only replies update the IP → MAC table.
//!
//! State bound: the IP → MAC table keeps at most [`MAX_DEVICES`] entries, evicting the
//! least recently seen (an evicted device that replies again is "new" again).
//!
//! Hot reload: the table follows the chef to its new version (`export_stateful_chef!`),
//! with its bound and recency order, so a replaced chef does not call every known device
//! "new" again. At most 4096 entries of ~40 bytes: the snapshot stays under 200 KB.
//!
//! Deviations from the original (Python netdumplings 0.5.1):
//! * `time` is the packet's **capture** time, not the moment it was dissected.
//! * The IP → MAC table is bounded (see above); the original's grows without limit.
//! * ARP for other hardware/protocol types (not Ethernet/IPv4) has zero addresses here,
//!   because the kitchen's parser only decodes Ethernet/IPv4 ARP.

use std::net::Ipv4Addr;

use chef_sdk::bounded::BoundedMap;
use chef_sdk::{
    Chef, ChefInfo, Drivers, Dumplings, Interest, Mac, NetworkProtocol, Packet, Timestamp,
};
use serde::{Deserialize, Serialize};

/// How many IP → MAC entries the chef remembers.
pub const MAX_DEVICES: usize = 4096;

/// `operation`: a name for requests and replies, otherwise the number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Operation {
    /// A name (`request`, `reply`).
    Name(&'static str),
    /// Any other ARP operation code.
    Code(u16),
}

/// The packet payload.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArpDumpling {
    /// Request, reply or a number.
    pub operation: Operation,
    /// Sender hardware address.
    pub src_hw: Mac,
    /// Sender protocol address.
    pub src_ip: Ipv4Addr,
    /// Target hardware address.
    pub dst_hw: Mac,
    /// Target protocol address.
    pub dst_ip: Ipv4Addr,
    /// Capture time.
    pub time: Timestamp,
    /// What is new about the sender (replies only).
    pub notes: Option<&'static str>,
}

/// The chef: the IP → MAC table learnt from replies (its state across a reload, too).
#[derive(Serialize, Deserialize)]
pub struct ArpChef {
    devices: BoundedMap<Ipv4Addr, Mac>,
}

impl Default for ArpChef {
    fn default() -> Self {
        ArpChef {
            devices: BoundedMap::new(MAX_DEVICES),
        }
    }
}

impl ArpChef {
    /// The dumpling for one packet (`None` when it has no ARP header).
    pub fn handle(&mut self, packet: &Packet<'_>) -> Option<ArpDumpling> {
        let arp = packet.arp()?;
        let src_hw = Mac(arp.sender_hardware);
        let src_ip = Ipv4Addr::from(arp.sender_protocol);
        let operation = match arp.operation {
            1 => Operation::Name("request"),
            2 => Operation::Name("reply"),
            n => Operation::Code(n),
        };
        let notes = if arp.operation == 2 {
            let notes = match self.devices.get(&src_ip) {
                None => Some("source device is new"),
                Some(known) if *known != src_hw => Some("source device has new IP address"),
                Some(_) => None,
            };
            self.devices.insert(src_ip, src_hw);
            notes
        } else {
            None
        };
        Some(ArpDumpling {
            operation,
            src_hw,
            src_ip,
            dst_hw: Mac(arp.target_hardware),
            dst_ip: Ipv4Addr::from(arp.target_protocol),
            time: packet.timestamp(),
            notes,
        })
    }
}

/// Room for a payload (~190 bytes with both notes' lengths).
const PAYLOAD_CAPACITY: usize = 224;

impl ArpDumpling {
    /// The payload's JSON text: exactly what serde_json writes for this struct (a test
    /// compares them), written straight into one buffer. Why: with serde, each address went
    /// through `core::fmt` (`Ipv4Addr`'s `Display`) and each string through the escaper,
    /// and ARPChef makes one payload per ARP packet.
    pub fn to_json(&self) -> String {
        let plain = |s: &str| {
            s.bytes()
                .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
        };
        if let Operation::Name(name) = self.operation {
            if !plain(name) {
                // Not one this chef makes: serde's own escaping.
                return serde_json::to_string(self).unwrap_or_default();
            }
        }
        if self.notes.is_some_and(|n| !plain(n)) {
            return serde_json::to_string(self).unwrap_or_default();
        }
        let mut out = String::with_capacity(PAYLOAD_CAPACITY);
        out.push_str("{\"operation\":");
        match self.operation {
            Operation::Name(name) => push_quoted(&mut out, name),
            Operation::Code(code) => push_u16(&mut out, code),
        }
        out.push_str(",\"src_hw\":");
        push_mac(&mut out, self.src_hw);
        out.push_str(",\"src_ip\":");
        push_ip(&mut out, self.src_ip);
        out.push_str(",\"dst_hw\":");
        push_mac(&mut out, self.dst_hw);
        out.push_str(",\"dst_ip\":");
        push_ip(&mut out, self.dst_ip);
        out.push_str(",\"time\":");
        let secs = self.time.as_secs_f64();
        if secs.is_finite() {
            // serde_json's own float writer (`CompactFormatter::write_f64`).
            out.push_str(zmij::Buffer::new().format_finite(secs));
        } else {
            out.push_str("null");
        }
        out.push_str(",\"notes\":");
        match self.notes {
            Some(notes) => push_quoted(&mut out, notes),
            None => out.push_str("null"),
        }
        out.push('}');
        out
    }
}

/// `"text"` for a text with nothing JSON escapes.
fn push_quoted(out: &mut String, text: &str) {
    out.push('"');
    out.push_str(text);
    out.push('"');
}

/// A number in decimal (the digits serde_json writes for an integer).
fn push_u16(out: &mut String, v: u16) {
    let mut digits = [0u8; 5];
    let mut n = v;
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &digits[at..] {
        out.push(char::from(d));
    }
}

/// A MAC as `"aa:bb:cc:dd:ee:ff"` (what `Mac` serialises to).
fn push_mac(out: &mut String, mac: Mac) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    for (i, o) in mac.octets().into_iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        out.push(char::from(HEX[usize::from(o >> 4)]));
        out.push(char::from(HEX[usize::from(o & 0xf)]));
    }
    out.push('"');
}

/// An IPv4 address as `"a.b.c.d"` (what `Ipv4Addr` serialises to).
fn push_ip(out: &mut String, ip: Ipv4Addr) {
    out.push('"');
    for (i, v) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        if v >= 100 {
            out.push(char::from(b'0' + v / 100));
        }
        if v >= 10 {
            out.push(char::from(b'0' + v / 10 % 10));
        }
        out.push(char::from(b'0' + v % 10));
    }
    out.push('"');
}

/// A handler's answer: one payload already written as JSON text, or none.
pub struct ArpPayload(Option<String>);

impl Dumplings for ArpPayload {
    #[inline]
    fn for_each_json(self, mut emit: impl FnMut(String)) {
        if let Some(text) = self.0 {
            emit(text);
        }
    }
}

impl Chef for ArpChef {
    fn info() -> ChefInfo {
        ChefInfo::new(
            "ARPChef",
            "One dumpling per ARP packet; notes new devices and changed MACs",
        )
        .drivers(Drivers::PACKET)
        .interest(Interest::ANY.network(&[NetworkProtocol::Arp]))
    }

    fn on_packet(&mut self, packet: &Packet<'_>) -> impl Dumplings {
        ArpPayload(self.handle(packet).map(|d| d.to_json()))
    }

    fn restored(&mut self) -> Result<(), String> {
        self.devices.set_capacity(MAX_DEVICES);
        Ok(())
    }
}

chef_sdk::export_stateful_chef!(ArpChef);

#[cfg(test)]
mod tests {
    use super::*;
    use chef_sdk::testing::{describe, sample_capture};

    #[test]
    fn sample_capture_matches_the_original_output() {
        let mut chef = ArpChef::default();
        let batch = sample_capture().expect("sample capture");
        let out = batch.feed_raw(&mut chef);
        let payloads: Vec<&str> = out.iter().map(|(_, v)| v.as_str()).collect();
        // Same as the original's output, except `time`, which is now the capture time.
        let expected = [
            r#"{"operation":"request","src_hw":"02:00:00:00:00:01","src_ip":"127.0.0.1","dst_hw":"00:00:00:00:00:00","dst_ip":"127.0.0.2","time":1795739863.656104,"notes":null}"#,
            r#"{"operation":"reply","src_hw":"02:00:00:00:00:02","src_ip":"127.0.0.2","dst_hw":"02:00:00:00:00:01","dst_ip":"127.0.0.1","time":1795739863.680118,"notes":"source device is new"}"#,
            r#"{"operation":"reply","src_hw":"02:00:00:00:00:03","src_ip":"127.0.0.2","dst_hw":"02:00:00:00:00:01","dst_ip":"127.0.0.1","time":1795739863.704236,"notes":"source device has new IP address"}"#,
            r#"{"operation":"reply","src_hw":"02:00:00:00:00:03","src_ip":"127.0.0.2","dst_hw":"02:00:00:00:00:01","dst_ip":"127.0.0.1","time":1795739863.735986,"notes":null}"#,
        ];
        assert_eq!(payloads, expected);
        // Packet indexes point at the ARP frames (46..50 in the capture).
        assert_eq!(
            out.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            [42, 43, 44, 45]
        );
    }

    #[test]
    fn key_order_is_the_originals() {
        let d = ArpDumpling {
            operation: Operation::Code(3),
            src_hw: Mac(1),
            src_ip: Ipv4Addr::LOCALHOST,
            dst_hw: Mac(2),
            dst_ip: Ipv4Addr::LOCALHOST,
            time: Timestamp::from_nanos(0),
            notes: None,
        };
        assert_eq!(
            serde_json::to_string(&d).ok().as_deref(),
            Some(
                r#"{"operation":3,"src_hw":"00:00:00:00:00:01","src_ip":"127.0.0.1","dst_hw":"00:00:00:00:00:02","dst_ip":"127.0.0.1","time":0.0,"notes":null}"#
            )
        );
        let info = describe::<ArpChef>();
        assert_eq!(info.name, "ARPChef");
        assert_eq!(info.interest.network, [NetworkProtocol::Arp]);
        assert_eq!(info.drivers, Drivers::PACKET);
    }

    #[test]
    fn device_table_is_bounded() {
        let mut chef = ArpChef::default();
        for i in 0..(MAX_DEVICES as u32 + 10) {
            chef.devices.insert(Ipv4Addr::from(i), Mac(u64::from(i)));
        }
        assert_eq!(chef.devices.len(), MAX_DEVICES);
    }

    #[test]
    fn a_reload_changes_nothing_later() {
        use chef_sdk::testing::{check_reload_at, check_reload_over_corpus};
        let batch = sample_capture().expect("sample capture");
        // Between the first reply and the changed MAC: the new version still knows it.
        assert_eq!(
            check_reload_at::<ArpChef>(&batch, &[0, 43, 44, 45, 50]),
            5 * 4
        );
        assert!(check_reload_over_corpus::<ArpChef>(|p| p.arp().is_some()) > 100);
    }

    #[test]
    fn worst_case_snapshot_fits_the_default_cap() {
        let mut chef = ArpChef::default();
        for i in 0..MAX_DEVICES as u32 {
            chef.devices
                .insert(Ipv4Addr::from(u32::MAX - i), Mac(0xffff_ffff_ffff));
        }
        let state = chef_sdk::state::snapshot(&chef).expect("snapshot");
        assert!(state.len() < 200_000, "{} bytes", state.len());
        let r = chef_sdk::testing::reload(&chef).expect("restored");
        assert_eq!(r.devices.len(), MAX_DEVICES);
        assert_eq!(r.devices.iter().next(), chef.devices.iter().next());
    }

    #[test]
    fn survives_the_corpus() {
        // Every capture of the team's pcap corpus: no panic, only valid JSON.
        assert!(chef_sdk::testing::sweep_corpus::<ArpChef>() > 10_000);
    }

    #[test]
    fn the_hand_written_payload_is_what_serde_writes() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut rand = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let ops = [
            Operation::Name("request"),
            Operation::Name("reply"),
            Operation::Name("odd \"name\" \\ \u{1}"),
            Operation::Code(0),
            Operation::Code(3),
            Operation::Code(10),
            Operation::Code(99),
            Operation::Code(100),
            Operation::Code(65535),
        ];
        let notes = [
            None,
            Some("source device is new"),
            Some("source device has new IP address"),
            Some("tab\there"),
        ];
        let times = [
            0,
            1,
            999,
            1_000_000_000,
            1_795_739_863_680_118_000,
            u64::MAX,
        ];
        for i in 0..20_000u64 {
            let r = rand();
            let d = ArpDumpling {
                operation: ops[(r % ops.len() as u64) as usize],
                src_hw: Mac(rand() & 0xffff_ffff_ffff),
                src_ip: Ipv4Addr::from(if i % 7 == 0 { 0 } else { rand() as u32 }),
                dst_hw: Mac(if i % 5 == 0 {
                    0
                } else {
                    rand() & 0xffff_ffff_ffff
                }),
                dst_ip: Ipv4Addr::from(if i % 11 == 0 { u32::MAX } else { rand() as u32 }),
                time: Timestamp::from_nanos(if i < times.len() as u64 {
                    times[i as usize]
                } else {
                    rand() >> (r % 20)
                }),
                notes: notes[((r >> 8) % notes.len() as u64) as usize],
            };
            assert_eq!(
                d.to_json(),
                serde_json::to_string(&d).expect("serialises"),
                "{d:?}"
            );
        }
    }
}
