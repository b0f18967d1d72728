//! The high-cardinality benchmark corpus (`nd-kitchen-bench`; not part of the library).
//!
//! Why: the mixed corpus repeats ~300 small public captures, so the chefs' bounded maps
//! rarely fill and a map whose full-map insert costs O(capacity) looks fine. This corpus
//! keeps every map full and evicting: 1 000 000 distinct IPv4 flows (TCP and UDP, one
//! packet each), 100 000 distinct DNS names (a query and its answer each) and 50 000
//! distinct ARP devices (one reply each), interleaved, 1.25 M packets in all.
//!
//! Deterministic: the same bytes on every run and machine (no randomness, no clock), so
//! figures from different runs are comparable. Legacy pcap, microseconds, DLT 1; packet
//! times advance 8 µs per packet from 2023-11-14 (about 10 s of capture: two pokes).

use std::io::Write;
use std::path::Path;

use anyhow::Context;

/// Distinct flows (one packet each).
pub const FLOWS: u32 = 1_000_000;
/// Distinct DNS names (a query and a response each, one every 10 flows).
pub const DNS_NAMES: u32 = FLOWS / 10;
/// Distinct ARP devices (one reply each, one every 20 flows).
pub const ARP_DEVICES: u32 = FLOWS / 20;

const START_NS: u64 = 1_700_000_000_000_000_000;
const STEP_NS: u64 = 8_000;

/// Writes the corpus to `out` (through a temporary file, so a half-written corpus is never
/// mistaken for a whole one).
pub fn write(out: &Path) -> anyhow::Result<()> {
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let tmp = out.with_extension("pcap.tmp");
    let mut w = std::io::BufWriter::new(
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?,
    );
    pcap_header(&mut w)?;
    let mut n = 0u64;
    let mut frame = Vec::with_capacity(256);
    let mut put = |w: &mut std::io::BufWriter<std::fs::File>, frame: &[u8]| -> anyhow::Result<()> {
        let ts = START_NS + n * STEP_NS;
        w.write_all(&((ts / 1_000_000_000) as u32).to_le_bytes())?;
        w.write_all(&(((ts % 1_000_000_000) / 1000) as u32).to_le_bytes())?;
        w.write_all(&(frame.len() as u32).to_le_bytes())?;
        w.write_all(&(frame.len() as u32).to_le_bytes())?;
        w.write_all(frame)?;
        n += 1;
        Ok(())
    };
    for i in 0..FLOWS {
        flow(&mut frame, i);
        put(&mut w, &frame)?;
        if i.is_multiple_of(10) {
            let name = i / 10;
            dns(&mut frame, name, false);
            put(&mut w, &frame)?;
            dns(&mut frame, name, true);
            put(&mut w, &frame)?;
        }
        if i.is_multiple_of(20) {
            arp(&mut frame, i / 20);
            put(&mut w, &frame)?;
        }
    }
    w.flush()?;
    drop(w);
    std::fs::rename(&tmp, out).with_context(|| format!("renaming to {}", out.display()))?;
    eprintln!(
        "wrote {} ({n} packets: {FLOWS} flows, {DNS_NAMES} DNS names, {ARP_DEVICES} ARP devices)",
        out.display()
    );
    Ok(())
}

/// The legacy-pcap global header of both bench corpora: magic (microseconds,
/// little-endian), v2.4, thiszone, sigfigs, snaplen 65535, DLT 1 (Ethernet).
pub fn pcap_header(w: &mut impl Write) -> std::io::Result<()> {
    w.write_all(&0xa1b2_c3d4u32.to_le_bytes())?;
    w.write_all(&2u16.to_le_bytes())?;
    w.write_all(&4u16.to_le_bytes())?;
    w.write_all(&[0u8; 8])?;
    w.write_all(&65535u32.to_le_bytes())?;
    w.write_all(&1u32.to_le_bytes())
}

/// A locally administered MAC from a number.
fn mac(tag: u8, i: u32) -> [u8; 6] {
    let b = i.to_be_bytes();
    [0x02, tag, b[0], b[1], b[2], b[3]]
}

fn ethernet(frame: &mut Vec<u8>, src: [u8; 6], dst: [u8; 6], ether_type: u16) {
    frame.clear();
    frame.extend_from_slice(&dst);
    frame.extend_from_slice(&src);
    frame.extend_from_slice(&ether_type.to_be_bytes());
}

/// IPv4 header (with its checksum) for `payload_len` bytes of `protocol`.
fn ipv4(frame: &mut Vec<u8>, src: [u8; 4], dst: [u8; 4], protocol: u8, payload_len: usize) {
    let total = (20 + payload_len) as u16;
    let mut h = [0u8; 20];
    h[0] = 0x45;
    h[2..4].copy_from_slice(&total.to_be_bytes());
    h[6] = 0x40; // don't fragment
    h[8] = 64;
    h[9] = protocol;
    h[12..16].copy_from_slice(&src);
    h[16..20].copy_from_slice(&dst);
    let mut sum: u32 = h
        .chunks_exact(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    h[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    frame.extend_from_slice(&h);
}

/// UDP header (checksum 0: "none", legal over IPv4) and payload.
fn udp(frame: &mut Vec<u8>, sport: u16, dport: u16, payload: &[u8]) {
    frame.extend_from_slice(&sport.to_be_bytes());
    frame.extend_from_slice(&dport.to_be_bytes());
    frame.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    frame.extend_from_slice(&[0, 0]);
    frame.extend_from_slice(payload);
}

/// Flow `i`: a distinct source address per flow (10.0.0.0/8), to one of 256 servers.
fn flow(frame: &mut Vec<u8>, i: u32) {
    let src = (0x0a00_0000 | (i & 0x00ff_ffff)).to_be_bytes();
    let dst = [192, 0, 2, i as u8];
    let sport = 1024 + (i % 60_000) as u16;
    ethernet(frame, mac(1, i % 4096), mac(2, 0), 0x0800);
    if i.is_multiple_of(2) {
        // TCP, ACK|PSH, 32 bytes of payload.
        ipv4(frame, src, dst, 6, 20 + 32);
        frame.extend_from_slice(&sport.to_be_bytes());
        frame.extend_from_slice(&443u16.to_be_bytes());
        frame.extend_from_slice(&i.to_be_bytes()); // sequence
        frame.extend_from_slice(&1u32.to_be_bytes()); // acknowledgment
        frame.extend_from_slice(&[0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
        frame.extend_from_slice(&[0x17; 32]);
    } else {
        ipv4(frame, src, dst, 17, 8 + 48);
        udp(frame, sport, 4433, &[0x42; 48]);
    }
}

/// DNS query (or its A-record response) for the distinct name `host<n>.zone<n % 97>.test`.
fn dns(frame: &mut Vec<u8>, n: u32, response: bool) {
    let mut msg = Vec::with_capacity(96);
    msg.extend_from_slice(&(n as u16).to_be_bytes()); // id
    msg.extend_from_slice(if response {
        &[0x81, 0x80]
    } else {
        &[0x01, 0x00]
    });
    msg.extend_from_slice(&[0, 1, 0, u8::from(response), 0, 0, 0, 0]);
    for label in [
        format!("host{n}"),
        format!("zone{}", n % 97),
        "test".to_owned(),
    ] {
        msg.push(label.len() as u8);
        msg.extend_from_slice(label.as_bytes());
    }
    msg.extend_from_slice(&[0, 0, 1, 0, 1]); // root, type A, class IN
    if response {
        // Name pointer to the question, A, IN, TTL 60, 4 bytes of address.
        msg.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        msg.extend_from_slice(&(0xc633_6400 | (n & 0xff)).to_be_bytes());
    }
    let client = (0x0ac8_0000 | (n & 0xffff)).to_be_bytes();
    let server = [192, 0, 2, 53];
    let port = 1024 + (n % 50_000) as u16;
    let (src, dst, sport, dport) = if response {
        (server, client, 53, port)
    } else {
        (client, server, port, 53)
    };
    ethernet(frame, mac(3, n % 4096), mac(2, 0), 0x0800);
    ipv4(frame, src, dst, 17, 8 + msg.len());
    udp(frame, sport, dport, &msg);
}

/// An ARP reply from device `d` (its own MAC and address in 172.16.0.0/12), padded to 60.
fn arp(frame: &mut Vec<u8>, d: u32) {
    let hw = mac(4, d);
    ethernet(frame, hw, mac(2, 0), 0x0806);
    frame.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 2]);
    frame.extend_from_slice(&hw);
    frame.extend_from_slice(&(0xac10_0000 | (d & 0x000f_ffff)).to_be_bytes());
    frame.extend_from_slice(&mac(2, 0));
    frame.extend_from_slice(&[172, 16, 0, 1]);
    frame.resize(60, 0);
}
