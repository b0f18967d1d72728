//! Test helpers (feature `testing`): make WIT packets from raw frames or a pcap file and
//! drive a [`Chef`] natively, without a kitchen, through the packed batch form the kitchen
//! hands a Rust chef (`on-packed`; [`crate::packed`]).
//!
//! The dissector here is a small stand-in for the kitchen's parser (Ethernet, up to two
//! VLAN tags, Linux SLL, ARP, IPv4, IPv6 with a fragment header, TCP, UDP, ICMP,
//! ICMPv6), good enough to exercise chefs; it is not the kitchen's.
//!
//! ```
//! use chef_sdk::testing::{frames, Batch};
//! let mut batch = Batch::default();
//! batch.push_ethernet(1_000_000_000, &frames::udp4([10, 0, 0, 1], [10, 0, 0, 2], 5000, 53, b"hi"));
//! let p = batch.packet(0);
//! assert_eq!(p.dst_port(), Some(53));
//! assert_eq!(p.payload(), b"hi");
//! ```

use crate::wit::{self, IpHeader, TransportHeader};
use crate::{Chef, Packet};

/// Packets and their arena, as WIT records and packed as the kitchen passes them to
/// `on-packed` (kept in step: the fields are private so they cannot drift apart).
#[derive(Default)]
pub struct Batch {
    /// The WIT records.
    packets: Vec<wit::Packet>,
    /// The same packets packed: one [`crate::packed::RECORD_SIZE`]-byte record each (no
    /// batch header; [`Batch::packed`] adds one).
    records: Vec<crate::packed::Record>,
    /// The bytes their spans point into.
    arena: Vec<u8>,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn mac(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 6)
        .map(|m| m.iter().fold(0u64, |acc, x| (acc << 8) | u64::from(*x)))
        .unwrap_or(0)
}

fn span(offset: usize, len: usize) -> wit::Span {
    wit::Span {
        offset: offset as u32,
        len: len as u32,
    }
}

impl Batch {
    /// Number of packets.
    pub fn len(&self) -> usize {
        self.packets.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.packets.is_empty()
    }

    /// The view of packet `i`, reading its packed record (panics if out of range: tests
    /// only).
    pub fn packet(&self, i: usize) -> Packet<'_> {
        Packet::from_record(&self.records[i], &self.arena)
    }

    /// Every packet's view.
    pub fn iter(&self) -> impl Iterator<Item = Packet<'_>> {
        self.records
            .iter()
            .map(|r| Packet::from_record(r, &self.arena))
    }

    /// The WIT records.
    pub fn packets(&self) -> &[wit::Packet] {
        &self.packets
    }

    /// The bytes the packets' spans point into.
    pub fn arena(&self) -> &[u8] {
        &self.arena
    }

    /// Packets `range` as a packed batch (`on-packed`'s `headers`): the batch header, then
    /// their records.
    pub fn packed(&self, range: std::ops::Range<usize>) -> Vec<u8> {
        let records = &self.records[range];
        let mut out = Vec::with_capacity(crate::packed::HEADER_SIZE + records.len() * 224);
        // A test batch's record count fits a u32; RECORD_SIZE fits a u16.
        out.extend_from_slice(&crate::packed::header_bytes(
            crate::packed::RECORD_SIZE as u16,
            records.len() as u32,
        ));
        for r in records {
            out.extend_from_slice(r);
        }
        out
    }

    /// Adds a WIT record whose spans point into [`Batch::arena`] as it will be (e.g. to
    /// test a record the dissector here cannot make).
    pub fn push_record(&mut self, p: wit::Packet) {
        let mut rec = [0; crate::packed::RECORD_SIZE];
        crate::packed::encode_record(&p, &mut rec);
        self.records.push(rec);
        self.packets.push(p);
    }

    /// Appends bytes to the arena; returns their offset.
    pub fn push_arena(&mut self, bytes: &[u8]) -> u32 {
        let at = self.arena.len();
        self.arena.extend_from_slice(bytes);
        at as u32
    }

    /// Adds a frame of link type 1 (Ethernet).
    pub fn push_ethernet(&mut self, timestamp_ns: u64, frame: &[u8]) {
        self.push(1, timestamp_ns, frame);
    }

    /// Adds a frame of the given pcap link type (1 Ethernet, 113 Linux SLL, 101 raw IP;
    /// anything else is left unparsed).
    pub fn push(&mut self, link_type: u32, timestamp_ns: u64, frame: &[u8]) {
        let base = self.arena.len();
        self.arena.extend_from_slice(frame);
        let mut p = wit::Packet {
            timestamp_ns,
            captured_len: frame.len() as u32,
            original_len: frame.len() as u32,
            link_type,
            interface_index: 0,
            frame: span(base, frame.len()),
            ethernet: None,
            linux_sll: None,
            vlan_outer: None,
            vlan_inner: None,
            arp: None,
            ip: None,
            transport: None,
            payload: span(base + frame.len(), 0),
            padding: span(base + frame.len(), 0),
            stopped: None,
            flow: None,
        };
        let stop = dissect(&mut p, frame, base);
        if let Some((layer, reason, at)) = stop {
            p.stopped = Some(wit::ParseStop { layer, reason });
            p.payload = span(base + at.min(frame.len()), frame.len().saturating_sub(at));
        }
        self.push_record(p);
    }

    /// Reads a classic pcap file (micro- or nanosecond, either byte order) into a batch.
    pub fn from_pcap(file: &[u8]) -> Option<Batch> {
        let magic = be32(file, 0)?;
        let (le, nanos) = match magic {
            0xa1b2_c3d4 => (false, false),
            0xd4c3_b2a1 => (true, false),
            0xa1b2_3c4d => (false, true),
            0x4d3c_b2a1 => (true, true),
            _ => return None,
        };
        let rd = |at: usize| -> Option<u32> {
            let b: [u8; 4] = file.get(at..at + 4)?.try_into().ok()?;
            Some(if le {
                u32::from_le_bytes(b)
            } else {
                u32::from_be_bytes(b)
            })
        };
        let link_type = rd(20)? & 0x0fff_ffff;
        let mut batch = Batch::default();
        let mut at = 24;
        while at + 16 <= file.len() {
            let secs = u64::from(rd(at)?);
            let frac = u64::from(rd(at + 4)?);
            let incl = rd(at + 8)? as usize;
            let frame = file.get(at + 16..at + 16 + incl)?;
            let ns = secs * 1_000_000_000 + if nanos { frac } else { frac * 1000 };
            batch.push(link_type, ns, frame);
            at += 16 + incl;
        }
        Some(batch)
    }

    /// Runs `chef.on_packet` over the batch as the kitchen would (`on-packed`); returns
    /// `(packet index, payload JSON text)` pairs (key order visible).
    pub fn feed_raw<C: Chef>(&self, chef: &mut C) -> Vec<(u32, String)> {
        crate::__private::on_packed(chef, &self.packed(0..self.len()), &self.arena)
            .into_iter()
            .map(|d| (d.packet_index, d.payload))
            .collect()
    }

    /// Runs `chef.on_packet` over the batch as the kitchen would (`on-packed`); returns
    /// `(packet index, payload)` pairs.
    pub fn feed<C: Chef>(&self, chef: &mut C) -> Vec<(u32, serde_json::Value)> {
        crate::__private::on_packed(chef, &self.packed(0..self.len()), &self.arena)
            .into_iter()
            .map(|d| {
                let v = serde_json::from_str(&d.payload).unwrap_or(serde_json::Value::Null);
                (d.packet_index, v)
            })
            .collect()
    }
}

/// Runs `chef.on_interval` once; returns the payloads parsed as JSON.
pub fn poke<C: Chef>(chef: &mut C, now_ns: u64) -> Vec<serde_json::Value> {
    crate::__private::on_interval(chef, now_ns, 5_000_000_000)
        .iter()
        .map(|s| serde_json::from_str(s).unwrap_or(serde_json::Value::Null))
        .collect()
}

/// Runs `chef.on_interval` once; returns the payloads as the JSON text the kitchen gets
/// (key order visible).
pub fn poke_raw<C: Chef>(chef: &mut C, now_ns: u64) -> Vec<String> {
    crate::__private::on_interval(chef, now_ns, 5_000_000_000)
}

/// Reads the sample capture shared by the team (`loopback_dns_arp_http.pcap`, the
/// capture the original's reference output was made from), if it is present.
pub fn sample_capture() -> Option<Batch> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/data/original/loopback_dns_arp_http.pcap"
    );
    Batch::from_pcap(&std::fs::read(path).ok()?)
}

/// Every classic-pcap capture of the team's corpus (`$ND_SHARED_PCAPS`, else
/// `shared/pcaps` beside the repository), as `(file name, batch)`; pcapng files are
/// skipped. Empty if the corpus is not there.
pub fn corpus() -> Vec<(String, Batch)> {
    let dir = std::env::var_os("ND_SHARED_PCAPS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/pcaps").into());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(String, Batch)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let batch = Batch::from_pcap(&std::fs::read(e.path()).ok()?)?;
            Some((name, batch))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Feeds every corpus capture to a fresh `C`, then the same packets with scrambled bytes,
/// and pokes it after each capture; returns the number of packets fed (once each). Panics (failing the test) if the chef panics or makes a payload that
/// is not JSON.
pub fn sweep_corpus<C: Chef>() -> usize {
    let mut packets = 0;
    for (name, batch) in corpus() {
        let mut chef = C::default();
        let chunks: Vec<Vec<u8>> = (0..batch.len())
            .step_by(256)
            .map(|at| batch.packed(at..(at + 256).min(batch.len())))
            .collect();
        for chunk in &chunks {
            for d in crate::__private::on_packed(&mut chef, chunk, &batch.arena) {
                assert!(
                    serde_json::from_str::<serde_json::Value>(&d.payload).is_ok(),
                    "{name}: invalid JSON {}",
                    d.payload
                );
            }
        }
        // The same packets again with one byte in 16 of the arena scrambled: the headers
        // still say TCP/UDP/..., but the payloads are now hostile.
        let mut x: u32 = 0x9e37_79b9;
        let mangled: Vec<u8> = batch
            .arena
            .iter()
            .map(|b| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                if x.is_multiple_of(16) {
                    (x >> 8) as u8
                } else {
                    *b
                }
            })
            .collect();
        for chunk in &chunks {
            for d in crate::__private::on_packed(&mut chef, chunk, &mangled) {
                assert!(
                    serde_json::from_str::<serde_json::Value>(&d.payload).is_ok(),
                    "{name} (scrambled): invalid JSON {}",
                    d.payload
                );
            }
        }
        for p in poke_raw(&mut chef, u64::MAX / 2) {
            assert!(
                serde_json::from_str::<serde_json::Value>(&p).is_ok(),
                "{name}: {p}"
            );
        }
        packets += batch.len();
    }
    packets
}

/// What a hot reload does to a chef exported with [`crate::export_stateful_chef!`]: its
/// state serialised by the old version and read back by the new one (here: the same type).
pub fn reload<C>(chef: &C) -> Result<C, String>
where
    C: Chef + serde::Serialize + serde::de::DeserializeOwned,
{
    use crate::__private::{SerdeState, StateCodec};
    let state = <SerdeState as StateCodec<C>>::snapshot(Some(chef));
    <SerdeState as StateCodec<C>>::restore(&state)?.ok_or_else(|| "no state".to_owned())
}

/// Checks that a hot reload in the middle of `batch` changes nothing a chef later says.
///
/// For each packet index in `splits`, runs `batch` through two chefs: one without a break,
/// and one that is poked, snapshotted and replaced by a copy restored from the snapshot at
/// that packet, as the kitchen does on a reload (the old version's final poke, `snapshot`,
/// the new version's `restore`). The uninterrupted chef is poked at the same time, so both
/// get the same calls. Asserts equal packet dumplings (JSON text, in order), equal pokes at
/// the split and after the last packet, and returns the number of dumplings compared.
pub fn check_reload_at<C>(batch: &Batch, splits: &[usize]) -> usize
where
    C: Chef + serde::Serialize + serde::de::DeserializeOwned,
{
    let run = |chef: &mut C, range: std::ops::Range<usize>| -> Vec<(usize, String)> {
        let start = range.start;
        crate::__private::on_packed(chef, &batch.packed(range), &batch.arena)
            .into_iter()
            .map(|d| (start + d.packet_index as usize, d.payload))
            .collect()
    };
    let time = |i: usize| {
        batch
            .packets
            .get(i.min(batch.len().saturating_sub(1)))
            .map_or(0, |p| p.timestamp_ns)
    };
    let mut compared = 0;
    for &split in splits {
        let split = split.min(batch.len());
        let (mut plain, mut old) = (C::default(), C::default());
        let mut want = run(&mut plain, 0..split);
        let mut got = run(&mut old, 0..split);
        want.extend(
            poke_raw(&mut plain, time(split))
                .into_iter()
                .map(|p| (split, p)),
        );
        got.extend(
            poke_raw(&mut old, time(split))
                .into_iter()
                .map(|p| (split, p)),
        );
        let mut new = match reload(&old) {
            Ok(chef) => chef,
            Err(e) => panic!("reload at packet {split} refused: {e}"),
        };
        want.extend(run(&mut plain, split..batch.len()));
        got.extend(run(&mut new, split..batch.len()));
        let end = batch.len();
        want.extend(
            poke_raw(&mut plain, time(end) + 1)
                .into_iter()
                .map(|p| (end, p)),
        );
        got.extend(
            poke_raw(&mut new, time(end) + 1)
                .into_iter()
                .map(|p| (end, p)),
        );
        assert_eq!(got, want, "reload at packet {split} changed the output");
        compared += want.len();
    }
    compared
}

/// Snapshots `chef` as the kitchen would, asserts the snapshot is under the kitchen's default
/// `--chef-state-max-bytes` ([`crate::state::KITCHEN_DEFAULT_MAX_BYTES`]), and returns the
/// chef restored from it. For a test that fills every table with worst-case entries.
pub fn assert_state_fits_the_default_cap<C>(chef: &C) -> C
where
    C: Chef + serde::Serialize + serde::de::DeserializeOwned,
{
    let state = match crate::state::snapshot(chef) {
        Ok(state) => state,
        Err(e) => panic!("snapshot failed: {e}"),
    };
    let cap = crate::state::KITCHEN_DEFAULT_MAX_BYTES;
    assert!(
        state.len() < cap,
        "snapshot of {} bytes, over {cap}",
        state.len()
    );
    match crate::state::restore(&state) {
        Ok(chef) => chef,
        Err(e) => panic!("restore refused: {e}"),
    }
}

/// [`check_reload_at`] over every corpus capture with a packet that `relevant` picks,
/// reloading at a third and at two thirds of each; returns the dumplings compared.
pub fn check_reload_over_corpus<C>(relevant: impl Fn(&Packet<'_>) -> bool) -> usize
where
    C: Chef + serde::Serialize + serde::de::DeserializeOwned,
{
    let mut compared = 0;
    for (_, batch) in corpus() {
        if batch.iter().any(|p| relevant(&p)) {
            let n = batch.len();
            compared += check_reload_at::<C>(&batch, &[n / 3, 2 * n / 3]);
        }
    }
    compared
}

/// The chef's `describe` record.
pub fn describe<C: Chef>() -> wit::ChefInfo {
    crate::__private::describe::<C>("0.0.0-test")
}

type Stop = (wit::Layer, wit::StopReason, usize);

/// Fills `p` from `frame`; returns where and why it stopped early, if it did.
fn dissect(p: &mut wit::Packet, f: &[u8], base: usize) -> Option<Stop> {
    use wit::{Layer, StopReason};
    let (mut at, mut ether_type) = match p.link_type {
        1 => {
            let Some(et) = be16(f, 12) else {
                return Some((Layer::Link, StopReason::Truncated, 0));
            };
            p.ethernet = Some(wit::EthernetHeader {
                destination: mac(f, 0),
                source: mac(f, 6),
                ether_type: et,
            });
            (14, et)
        }
        113 => {
            let Some(proto) = be16(f, 14) else {
                return Some((Layer::Link, StopReason::Truncated, 0));
            };
            let src = f
                .get(6..14)
                .map_or(0, |s| u64::from_be_bytes(s.try_into().unwrap_or([0; 8])));
            p.linux_sll = Some(wit::LinuxSllHeader {
                packet_type: be16(f, 0).unwrap_or(0),
                arp_hardware_type: be16(f, 2).unwrap_or(0),
                source: src,
                source_len: be16(f, 4).unwrap_or(0).min(8) as u8,
                protocol_type: proto,
            });
            (16, proto)
        }
        101 | 12 | 14 => match f.first().map(|b| b >> 4) {
            Some(4) => (0, 0x0800),
            Some(6) => (0, 0x86dd),
            _ => return Some((Layer::Network, StopReason::Malformed, 0)),
        },
        _ => return Some((Layer::Link, StopReason::Unsupported, 0)),
    };
    for _ in 0..2 {
        if ether_type != 0x8100 && ether_type != 0x88a8 {
            break;
        }
        let (Some(tci), Some(next)) = (be16(f, at), be16(f, at + 2)) else {
            return Some((Layer::Vlan, StopReason::Truncated, at));
        };
        let tag = wit::VlanTag {
            priority: (tci >> 13) as u8,
            drop_eligible: tci & 0x1000 != 0,
            id: tci & 0x0fff,
            ether_type: next,
        };
        if p.vlan_outer.is_none() {
            p.vlan_outer = Some(tag);
        } else {
            p.vlan_inner = Some(tag);
        }
        at += 4;
        ether_type = next;
    }
    let end = f.len();
    let (net_end, proto, l4) = match ether_type {
        0x0806 => {
            let a = f.get(at..at + 28);
            let Some(a) = a else {
                return Some((Layer::Network, StopReason::Truncated, at));
            };
            let eth_ip = be16(a, 0) == Some(1) && be16(a, 2) == Some(0x0800);
            p.arp = Some(wit::ArpPacket {
                hardware_type: be16(a, 0).unwrap_or(0),
                protocol_type: be16(a, 2).unwrap_or(0),
                operation: be16(a, 6).unwrap_or(0),
                sender_hardware: if eth_ip { mac(a, 8) } else { 0 },
                sender_protocol: if eth_ip { be32(a, 14).unwrap_or(0) } else { 0 },
                target_hardware: if eth_ip { mac(a, 18) } else { 0 },
                target_protocol: if eth_ip { be32(a, 24).unwrap_or(0) } else { 0 },
            });
            p.payload = span(base + at + 28, 0);
            p.padding = span(base + at + 28, end - (at + 28));
            return None;
        }
        0x0800 => {
            let Some(h) = f.get(at..at + 20) else {
                return Some((Layer::Network, StopReason::Truncated, at));
            };
            let ihl = usize::from(h[0] & 0x0f) * 4;
            let total = usize::from(be16(h, 2).unwrap_or(0));
            if h[0] >> 4 != 4 || ihl < 20 || total < ihl {
                return Some((Layer::Network, StopReason::Malformed, at));
            }
            let frag = be16(h, 6).unwrap_or(0);
            p.ip = Some(IpHeader::V4(wit::Ipv4Header {
                source: be32(h, 12).unwrap_or(0),
                destination: be32(h, 16).unwrap_or(0),
                protocol: h[9],
                ttl: h[8],
                tos: h[1],
                header_len: ihl as u8,
                total_len: total as u16,
                identification: be16(h, 4).unwrap_or(0),
                dont_fragment: frag & 0x4000 != 0,
                more_fragments: frag & 0x2000 != 0,
                fragment_offset: (frag & 0x1fff) * 8,
            }));
            let net_end = (at + total).min(end);
            if frag & 0x1fff != 0 {
                p.padding = span(base + net_end, end - net_end);
                return Some((Layer::Network, StopReason::Fragment, at + ihl));
            }
            (net_end, h[9], at + ihl)
        }
        0x86dd => {
            let Some(h) = f.get(at..at + 40) else {
                return Some((Layer::Network, StopReason::Truncated, at));
            };
            let word = |o: usize| be32(h, o).map_or(0, u64::from);
            let plen = usize::from(be16(h, 4).unwrap_or(0));
            let mut next = h[6];
            let mut l4 = at + 40;
            let mut fragment = None;
            // Walk the extension headers the kitchen's parser knows.
            for _ in 0..8 {
                let Some(eh) = f.get(l4..l4 + 8) else { break };
                match next {
                    0 | 43 | 60 => {
                        next = eh[0];
                        l4 += (usize::from(eh[1]) + 1) * 8;
                    }
                    44 => {
                        let off = be16(eh, 2).unwrap_or(0);
                        fragment = Some(wit::Ipv6Fragment {
                            offset: off & 0xfff8,
                            more_fragments: off & 1 != 0,
                            identification: be32(eh, 4).unwrap_or(0),
                        });
                        next = eh[0];
                        l4 += 8;
                    }
                    _ => break,
                }
            }
            p.ip = Some(IpHeader::V6(wit::Ipv6Header {
                source: ((word(8) << 32) | word(12), (word(16) << 32) | word(20)),
                destination: ((word(24) << 32) | word(28), (word(32) << 32) | word(36)),
                next_header: next,
                hop_limit: h[7],
                traffic_class: ((be16(h, 0).unwrap_or(0) >> 4) & 0xff) as u8,
                flow_label: be32(h, 0).unwrap_or(0) & 0x000f_ffff,
                payload_len: plen as u16,
                fragment,
            }));
            let net_end = (at + 40 + plen).min(end);
            if fragment.is_some_and(|fr| fr.offset != 0) {
                p.padding = span(base + net_end, end - net_end);
                return Some((Layer::IpExtension, StopReason::Fragment, l4));
            }
            (net_end, next, l4)
        }
        _ => return Some((Layer::Network, StopReason::Unsupported, at)),
    };
    p.padding = span(base + net_end, end - net_end);
    let seg = f.get(l4..net_end).unwrap_or(&[]);
    let (transport, hdr) = match proto {
        6 => {
            let data_off = seg.get(12).map_or(0, |b| usize::from(b >> 4) * 4);
            if seg.len() < 20 || data_off < 20 || seg.len() < data_off {
                return Some((Layer::Transport, StopReason::Truncated, l4));
            }
            let fl = seg[13];
            let mut flags = wit::TcpFlags::empty();
            for (bit, flag) in [
                (0x01, wit::TcpFlags::FIN),
                (0x02, wit::TcpFlags::SYN),
                (0x04, wit::TcpFlags::RST),
                (0x08, wit::TcpFlags::PSH),
                (0x10, wit::TcpFlags::ACK),
                (0x20, wit::TcpFlags::URG),
                (0x40, wit::TcpFlags::ECE),
                (0x80, wit::TcpFlags::CWR),
            ] {
                if fl & bit != 0 {
                    flags |= flag;
                }
            }
            (
                TransportHeader::Tcp(wit::TcpHeader {
                    source_port: be16(seg, 0).unwrap_or(0),
                    destination_port: be16(seg, 2).unwrap_or(0),
                    sequence: be32(seg, 4).unwrap_or(0),
                    acknowledgment: be32(seg, 8).unwrap_or(0),
                    flags,
                    window: be16(seg, 14).unwrap_or(0),
                    header_len: data_off as u8,
                    urgent_pointer: be16(seg, 18).unwrap_or(0),
                }),
                data_off,
            )
        }
        17 => {
            if seg.len() < 8 {
                return Some((Layer::Transport, StopReason::Truncated, l4));
            }
            (
                TransportHeader::Udp(wit::UdpHeader {
                    source_port: be16(seg, 0).unwrap_or(0),
                    destination_port: be16(seg, 2).unwrap_or(0),
                    length: be16(seg, 4).unwrap_or(0),
                }),
                8,
            )
        }
        1 | 58 => {
            if seg.len() < 8 {
                return Some((Layer::Transport, StopReason::Truncated, l4));
            }
            let h = wit::IcmpHeader {
                icmp_type: seg[0],
                code: seg[1],
                rest: be32(seg, 4).unwrap_or(0),
            };
            let t = if proto == 1 {
                TransportHeader::Icmpv4(h)
            } else {
                TransportHeader::Icmpv6(h)
            };
            (t, 8)
        }
        _ => return Some((Layer::Transport, StopReason::Unsupported, l4)),
    };
    p.transport = Some(transport);
    p.payload = span(base + l4 + hdr, seg.len() - hdr);
    None
}

/// Builders for test frames (Ethernet II, IPv4, zero checksums).
pub mod frames {
    /// Ethernet II header: destination, source, EtherType.
    pub fn ethernet(dst: [u8; 6], src: [u8; 6], ether_type: u16, body: &[u8]) -> Vec<u8> {
        let mut f = Vec::with_capacity(14 + body.len());
        f.extend_from_slice(&dst);
        f.extend_from_slice(&src);
        f.extend_from_slice(&ether_type.to_be_bytes());
        f.extend_from_slice(body);
        f
    }

    /// IPv4 header (20 bytes) followed by `body`.
    pub fn ipv4(src: [u8; 4], dst: [u8; 4], protocol: u8, body: &[u8]) -> Vec<u8> {
        let total = (20 + body.len()) as u16;
        let mut h = vec![0x45, 0, 0, 0, 0, 1, 0, 0, 64, protocol, 0, 0];
        h[2..4].copy_from_slice(&total.to_be_bytes());
        h.extend_from_slice(&src);
        h.extend_from_slice(&dst);
        h.extend_from_slice(body);
        h
    }

    /// Ethernet + IPv4 + UDP.
    pub fn udp4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut u = Vec::with_capacity(8 + payload.len());
        u.extend_from_slice(&sport.to_be_bytes());
        u.extend_from_slice(&dport.to_be_bytes());
        u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        u.extend_from_slice(&[0, 0]);
        u.extend_from_slice(payload);
        ethernet(
            [2, 0, 0, 0, 0, 2],
            [2, 0, 0, 0, 0, 1],
            0x0800,
            &ipv4(src, dst, 17, &u),
        )
    }

    /// Ethernet + IPv4 + TCP (PSH|ACK, 20-byte header).
    pub fn tcp4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut t = Vec::with_capacity(20 + payload.len());
        t.extend_from_slice(&sport.to_be_bytes());
        t.extend_from_slice(&dport.to_be_bytes());
        t.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
        t.extend_from_slice(payload);
        ethernet(
            [2, 0, 0, 0, 0, 2],
            [2, 0, 0, 0, 0, 1],
            0x0800,
            &ipv4(src, dst, 6, &t),
        )
    }

    /// Ethernet + ARP (Ethernet/IPv4), `op` 1 = request, 2 = reply.
    pub fn arp(
        op: u16,
        src_hw: [u8; 6],
        src_ip: [u8; 4],
        dst_hw: [u8; 6],
        dst_ip: [u8; 4],
    ) -> Vec<u8> {
        let mut a = vec![0, 1, 8, 0, 6, 4];
        a.extend_from_slice(&op.to_be_bytes());
        a.extend_from_slice(&src_hw);
        a.extend_from_slice(&src_ip);
        a.extend_from_slice(&dst_hw);
        a.extend_from_slice(&dst_ip);
        a.extend_from_slice(&[0; 18]); // Ethernet padding to 60 bytes
        ethernet([0xff; 6], src_hw, 0x0806, &a)
    }
}

/// Asserts that every accessor of `view` (a packed record) gives what the same packet in
/// record form gives: the differential check of the packed layout against the WIT record.
/// The expected values are computed from `record` the way the records-form SDK computed
/// them (kept here as the reference), with `arena` for the spans.
pub fn assert_same_packet(view: &Packet<'_>, record: &wit::Packet, arena: &[u8]) {
    use std::net::IpAddr;
    let r = record;
    let dbg = |x: &dyn std::fmt::Debug| format!("{x:?}");
    let bytes = |s: wit::Span| -> &[u8] {
        let start = s.offset as usize;
        start
            .checked_add(s.len as usize)
            .and_then(|end| arena.get(start..end))
            .unwrap_or(&[])
    };
    let ctx = || format!("record {}", dbg(r));
    assert_eq!(view.timestamp_ns(), r.timestamp_ns, "{}", ctx());
    assert_eq!(view.timestamp().as_nanos(), r.timestamp_ns, "{}", ctx());
    assert_eq!(view.captured_len(), r.captured_len, "{}", ctx());
    assert_eq!(view.original_len(), r.original_len, "{}", ctx());
    assert_eq!(view.link_type(), r.link_type, "{}", ctx());
    assert_eq!(view.interface_index(), r.interface_index, "{}", ctx());
    assert_eq!(view.frame(), bytes(r.frame), "{}", ctx());
    assert_eq!(view.payload(), bytes(r.payload), "{}", ctx());
    assert_eq!(view.padding(), bytes(r.padding), "{}", ctx());
    assert_eq!(dbg(&view.flow()), dbg(&r.flow), "{}", ctx());
    assert_eq!(dbg(&view.stopped()), dbg(&r.stopped), "{}", ctx());
    assert_eq!(dbg(&view.ethernet()), dbg(&r.ethernet), "{}", ctx());
    assert_eq!(dbg(&view.linux_sll()), dbg(&r.linux_sll), "{}", ctx());
    assert_eq!(dbg(&view.vlan_outer()), dbg(&r.vlan_outer), "{}", ctx());
    assert_eq!(dbg(&view.vlan_inner()), dbg(&r.vlan_inner), "{}", ctx());
    assert_eq!(dbg(&view.arp()), dbg(&r.arp), "{}", ctx());
    assert_eq!(dbg(&view.ip()), dbg(&r.ip), "{}", ctx());
    let (v4, v6) = match &r.ip {
        Some(IpHeader::V4(h)) => (Some(*h), None),
        Some(IpHeader::V6(h)) => (None, Some(*h)),
        None => (None, None),
    };
    assert_eq!(dbg(&view.ipv4()), dbg(&v4), "{}", ctx());
    assert_eq!(dbg(&view.ipv6()), dbg(&v6), "{}", ctx());
    assert_eq!(dbg(&view.transport()), dbg(&r.transport), "{}", ctx());
    let (mut tcp, mut udp, mut icmp4, mut icmp6) = (None, None, None, None);
    match r.transport {
        Some(TransportHeader::Tcp(h)) => tcp = Some(h),
        Some(TransportHeader::Udp(h)) => udp = Some(h),
        Some(TransportHeader::Icmpv4(h)) => icmp4 = Some(h),
        Some(TransportHeader::Icmpv6(h)) => icmp6 = Some(h),
        None => {}
    }
    assert_eq!(dbg(&view.tcp()), dbg(&tcp), "{}", ctx());
    assert_eq!(dbg(&view.udp()), dbg(&udp), "{}", ctx());
    assert_eq!(dbg(&view.icmpv4()), dbg(&icmp4), "{}", ctx());
    assert_eq!(dbg(&view.icmpv6()), dbg(&icmp6), "{}", ctx());
    let (src_ip, dst_ip, proto) = match &r.ip {
        Some(IpHeader::V4(h)) => (
            Some(IpAddr::V4(crate::ipv4_addr(h.source))),
            Some(IpAddr::V4(crate::ipv4_addr(h.destination))),
            Some(h.protocol),
        ),
        Some(IpHeader::V6(h)) => (
            Some(IpAddr::V6(crate::ipv6_addr(h.source))),
            Some(IpAddr::V6(crate::ipv6_addr(h.destination))),
            Some(h.next_header),
        ),
        None => (None, None, None),
    };
    assert_eq!(view.src_ip(), src_ip, "{}", ctx());
    assert_eq!(view.dst_ip(), dst_ip, "{}", ctx());
    assert_eq!(view.ip_protocol(), proto, "{}", ctx());
    let ports = match &r.transport {
        Some(TransportHeader::Tcp(h)) => Some((h.source_port, h.destination_port)),
        Some(TransportHeader::Udp(h)) => Some((h.source_port, h.destination_port)),
        _ => None,
    };
    assert_eq!(view.src_port(), ports.map(|p| p.0), "{}", ctx());
    assert_eq!(view.dst_port(), ports.map(|p| p.1), "{}", ctx());
    for port in [0, 53, 67, 443, 5353, 65535] {
        let want = ports.is_some_and(|(s, d)| s == port || d == port);
        assert_eq!(view.has_port(port), want, "port {port}: {}", ctx());
    }
    if let Some((s, d)) = ports {
        assert!(view.has_port(s) && view.has_port(d), "{}", ctx());
    }
    let src_mac = match (&r.ethernet, &r.linux_sll) {
        (Some(e), _) => Some(crate::Mac(e.source)),
        (None, Some(s)) if s.source_len == 6 => Some(crate::Mac(s.source >> 16)),
        _ => None,
    };
    assert_eq!(view.src_mac(), src_mac, "{}", ctx());
    assert_eq!(
        view.dst_mac(),
        r.ethernet.map(|e| crate::Mac(e.destination)),
        "{}",
        ctx()
    );
    assert_eq!(dbg(&view.to_wit()), dbg(r), "to_wit");
}

/// Stream chunks through a chef's `on-stream` as a kitchen honouring `stream-verdicts`
/// hands them over: one call per chunk, and no chunk of a direction the chef gave up
/// ([`crate::StreamChunk::done_with_direction`]) in an earlier call. Returns the payloads
/// and the directions given up (flow id, direction), in order. A chef's verdicts are right when these payloads
/// equal those of every chunk handed over ([`stream_all`]).
pub fn stream_honouring_verdicts<C: Chef>(
    chef: &mut C,
    chunks: &[wit::StreamChunk],
    arena: &[u8],
) -> (Vec<String>, Vec<(u64, wit::Direction)>) {
    let mut out = Vec::new();
    let mut given_up = Vec::new();
    for raw in chunks {
        let dir = (raw.flow.id, raw.flow.direction);
        if given_up.contains(&dir) {
            continue;
        }
        let (made, done) = crate::__private::on_stream(chef, std::slice::from_ref(raw), arena);
        out.extend(made.into_iter().map(|d| d.payload));
        if done == [0] {
            given_up.push(dir);
        }
    }
    (out, given_up)
}

/// Every chunk through a chef's `on-stream`, one call per chunk, verdicts ignored (as a
/// kitchen before `stream-verdicts` does): the payloads.
pub fn stream_all<C: Chef>(chef: &mut C, chunks: &[wit::StreamChunk], arena: &[u8]) -> Vec<String> {
    chunks
        .iter()
        .flat_map(|raw| crate::__private::on_stream(chef, std::slice::from_ref(raw), arena).0)
        .map(|d| d.payload)
        .collect()
}

/// The chunks of a dialogue on flow 1 with `key` (each event a direction and its bytes, one
/// chunk each, in order) and their arena: offsets counted per direction, the last chunk of
/// each direction marked `last`, the i-th chunk at `first_second + i` seconds.
pub fn dialogue_chunks(
    key: wit::FlowKey,
    first_second: u64,
    events: &[(wit::Direction, &[u8])],
) -> (Vec<wit::StreamChunk>, Vec<u8>) {
    let mut at = [0u64; 2];
    let mut arena = Vec::new();
    let mut chunks = Vec::new();
    for (i, (dir, bytes)) in events.iter().enumerate() {
        let side = usize::from(*dir == wit::Direction::FromResponder);
        chunks.push(wit::StreamChunk {
            flow: wit::FlowRef {
                id: 1,
                direction: *dir,
            },
            key,
            timestamp_ns: (i as u64 + first_second) * 1_000_000_000,
            offset: at[side],
            gap_before: 0,
            data: wit::Span {
                offset: arena.len() as u32,
                len: bytes.len() as u32,
            },
            last: !events[i + 1..].iter().any(|(d, _)| d == dir),
        });
        at[side] += bytes.len() as u64;
        arena.extend_from_slice(bytes);
    }
    (chunks, arena)
}

/// Every way of cutting one of `events` in two (each event a tag, such as a direction, and
/// its bytes), plus the events as they are: the inputs of a "split at every byte" test of a
/// stream parser (a prelude, a hello, a request head arriving in two chunks at any offset).
pub fn every_split<'a, T: Copy>(events: &[(T, &'a [u8])]) -> Vec<Vec<(T, &'a [u8])>> {
    let mut all = vec![events.to_vec()];
    for (i, (tag, bytes)) in events.iter().enumerate() {
        for k in 1..bytes.len() {
            let mut v = events[..i].to_vec();
            v.extend([(*tag, &bytes[..k]), (*tag, &bytes[k..])]);
            v.extend_from_slice(&events[i + 1..]);
            all.push(v);
        }
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dissects_the_sample_capture() {
        let batch = sample_capture().expect("the shared sample capture is readable");
        assert_eq!(batch.len(), 50);
        assert_eq!(batch.iter().filter(|p| p.arp().is_some()).count(), 4);
        assert_eq!(batch.iter().filter(|p| p.tcp().is_some()).count(), 36);
        assert_eq!(batch.iter().filter(|p| p.udp().is_some()).count(), 9);
        assert_eq!(batch.iter().filter(|p| p.icmpv4().is_some()).count(), 1);
        assert!(batch.iter().all(|p| p.stopped().is_none()));
    }

    #[test]
    fn serde_state_survives_a_reload_and_refuses_what_it_cannot_read() {
        use crate::__private::{NoState, SerdeState, StateCodec};
        #[derive(Default, serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct Counter {
            seen: u64,
            names: Vec<String>,
        }
        impl Chef for Counter {
            fn info() -> crate::ChefInfo {
                crate::ChefInfo::new("Counter", "test")
            }
        }
        let chef = Counter {
            seen: 7,
            names: vec!["a".into()],
        };
        assert_eq!(reload(&chef).unwrap(), chef);
        // Never used: nothing to carry.
        assert!(<SerdeState as StateCodec<Counter>>::snapshot(None).is_empty());
        assert!(<SerdeState as StateCodec<Counter>>::restore(&[])
            .unwrap()
            .is_none());
        // Not ours, or not this shape: refused with a reason, never misread.
        assert!(<SerdeState as StateCodec<Counter>>::restore(b"garbage").is_err());
        let other = br#"chef-sdk-state-json-2 Counter 1
{"seen":"seven"}"#;
        let e = <SerdeState as StateCodec<Counter>>::restore(other).unwrap_err();
        assert!(e.contains("does not fit"), "{e}");
        // A chef exported without state refuses someone else's.
        assert!(<NoState as StateCodec<Counter>>::restore(b"x").is_err());
        assert!(<NoState as StateCodec<Counter>>::restore(b"").is_ok());
    }

    #[test]
    fn parsers_survive_the_corpus() {
        use crate::parse::{dhcp, dns, http, tls};
        let corpus = corpus();
        assert!(
            corpus.len() > 100,
            "the team's pcap corpus is beside the repository"
        );
        let (mut names, mut hellos, mut requests, mut leases) = (0, 0, 0, 0);
        for (_, batch) in &corpus {
            for p in batch.iter() {
                let payload = p.payload();
                if p.has_port(53) || p.has_port(5353) {
                    let msg = if p.tcp().is_some() {
                        dns::strip_tcp_length(payload)
                    } else {
                        Some(payload)
                    };
                    if let Some(msg) = msg {
                        names += usize::from(dns::question(msg).is_some());
                        let _ = dns::parse(msg);
                    }
                }
                hellos += usize::from(
                    tls::client_hello(payload)
                        .and_then(|h| h.server_name)
                        .is_some(),
                );
                requests += usize::from(http::request(payload).is_some());
                leases += usize::from(
                    dhcp::parse(payload)
                        .and_then(|m| m.message_type())
                        .is_some(),
                );
            }
        }
        eprintln!(
            "corpus: {names} DNS questions, {hellos} SNIs, {requests} HTTP requests, {leases} DHCP"
        );
        assert!(names > 100 && hellos > 10 && requests > 100 && leases > 2);
    }

    #[test]
    fn arp_padding_and_garbage() {
        let mut b = Batch::default();
        b.push_ethernet(
            1,
            &frames::arp(1, [2, 0, 0, 0, 0, 1], [10, 0, 0, 1], [0; 6], [10, 0, 0, 2]),
        );
        assert_eq!(b.packet(0).padding().len(), 18);
        assert_eq!(b.packet(0).arp().map(|a| a.operation), Some(1));
        let full = frames::udp4([1, 2, 3, 4], [5, 6, 7, 8], 1, 2, b"abcdef");
        for n in 0..=full.len() {
            b.push_ethernet(2, &full[..n]);
        }
        assert_eq!(b.len(), 2 + full.len());
        // Cuts inside the 6-byte payload still have a whole UDP header (a short snaplen).
        assert_eq!(b.iter().filter(|p| p.udp().is_some()).count(), 7);
    }
}
