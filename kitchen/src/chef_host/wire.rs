//! Fast lowering of `list<packet>` into a chef's memory.
//!
//! Why: wasmtime 48 lowers a `list<record>` field by field, and every scalar store looks
//! the guest memory up again (`Instance::options_memory_mut`). For the WIT `packet` record
//! (16 fields, ~60 scalars with the nested options and variants) that cost ~400 ns per
//! packet per chef on the benchmark, about 85 % of a no-op chef's time (perf: 21 % of all
//! samples in `options_memory_mut` alone). This module writes the whole batch with one
//! memory lookup, encoding each record in its canonical-ABI layout by hand.
//!
//! Safety and correctness: [`WirePacket`] is a newtype over the bindgen-generated
//! `Packet`; its `ComponentType` and single-value lowering delegate to `Packet`'s derived
//! implementations (same type check, same ABI), and only the list store is replaced. That
//! store writes through a bounds-checked slice, so a layout mistake could only give the
//! chef wrong field values, never host memory unsafety; the layout is pinned by
//! [`PACKET_SIZE`] (asserted against wasmtime's own `SIZE32`) and by a differential test
//! that compares every field a guest sees through both paths on the whole capture corpus
//! (`kitchen/tests/chef_host.rs`, `wire_lowering_matches_wasmtime`).
//!
//! Chefs built against 0.1 use [`WirePacketV01`]: the 0.2 record is the 0.1 record plus
//! `flow` at the end, so the 0.1 layout is the first [`PACKET_SIZE_V0_1`] bytes of the 0.2
//! one and the same encoder serves both, without converting any record.
//!
//! It relies on `Lower::linear_store_list_to_memory`, a `#[doc(hidden)]` hook of wasmtime
//! (pinned at `=48.0.8`); re-check it when upgrading wasmtime.

use std::mem::MaybeUninit;

use wasmtime::component::__internal::{
    CanonicalAbiInfo, InstanceType, InterfaceType, LowerContext,
};
use wasmtime::component::{ComponentType, Lower};

use crate::parse::packet::tcp_flag_bits;

use super::bindings::{
    v0_1, ArpPacket, Direction, EthernetHeader, IpHeader, Layer, LinuxSllHeader, Packet, ParseStop,
    Span, StopReason, TransportHeader, VlanTag,
};

/// Canonical-ABI size of the WIT 0.2 `packet` record (alignment 8).
pub const PACKET_SIZE: usize = 304;

/// Canonical-ABI size of the WIT 0.1 `packet` record (alignment 8): a prefix of the 0.2 one.
pub const PACKET_SIZE_V0_1: usize = 280;

/// A packet record that lowers in bulk. See the module docs.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(transparent)]
pub struct WirePacket(pub Packet);

super::bulk_lower::bulk_lowered!(WirePacket, Packet, store_packets);

/// The list store of [`WirePacket`]: every record in the 0.2 layout.
fn store_packets<T>(
    cx: &mut LowerContext<'_, T>,
    offset: usize,
    items: &[WirePacket],
) -> wasmtime::Result<()> {
    store_list::<T, PACKET_SIZE>(cx, offset, items.iter().map(|p| &p.0), items.len())
}

/// Encode `n` packets of `N` bytes each (0.2's or 0.1's layout) at `offset`.
fn store_list<'p, T, const N: usize>(
    cx: &mut LowerContext<'_, T>,
    offset: usize,
    items: impl Iterator<Item = &'p Packet>,
    n: usize,
) -> wasmtime::Result<()> {
    let len = n
        .checked_mul(N)
        .ok_or_else(|| wasmtime::format_err!("packet list too large"))?;
    let memory = cx.as_slice_mut();
    let dst = offset
        .checked_add(len)
        .and_then(|end| memory.get_mut(offset..end))
        .ok_or_else(|| wasmtime::format_err!("packet list outside the chef's memory"))?;
    // Records are written as fixed-size arrays: the zeroing becomes a few inline vector
    // stores instead of a `memset` call per record, and every field store's bounds check
    // folds away (perf: `encode` plus that `memset` were ~8 % of a no-op chef run's
    // samples when each record was a slice of run-time length).
    let (records, _) = dst.as_chunks_mut::<N>();
    for (item, out) in items.zip(records) {
        encode(item, out);
    }
    Ok(())
}

/// A 0.2 packet record lowered as the 0.1 record (its first [`PACKET_SIZE_V0_1`] bytes;
/// `flow` is left out), for chefs built against 0.1. See the module docs.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(transparent)]
pub struct WirePacketV01(pub Packet);

impl WirePacketV01 {
    /// View a batch of [`WirePacket`]s as 0.1 records, without copying.
    pub fn slice(packets: &[WirePacket]) -> &[WirePacketV01] {
        // SAFETY: `WirePacket` and `WirePacketV01` are both `#[repr(transparent)]` over
        // `Packet`, so a slice of one is a valid slice of the other (same size, alignment
        // and validity), and the lifetime is carried over.
        #[allow(unsafe_code)]
        unsafe {
            std::slice::from_raw_parts(packets.as_ptr().cast::<WirePacketV01>(), packets.len())
        }
    }
}

// SAFETY: the type information delegates to the bindgen-generated 0.1 `Packet` (same type
// check, same ABI: the 0.1 record type a 0.1 chef's `on-packets` declares). The value is a
// 0.2 record whose first `PACKET_SIZE_V0_1` canonical-ABI bytes are the 0.1 record.
#[allow(unsafe_code)]
unsafe impl ComponentType for WirePacketV01 {
    type Lower = <v0_1::Packet as ComponentType>::Lower;
    const ABI: CanonicalAbiInfo = <v0_1::Packet as ComponentType>::ABI;
    const MAY_REQUIRE_REALLOC: bool = <v0_1::Packet as ComponentType>::MAY_REQUIRE_REALLOC;

    fn typecheck(ty: &InterfaceType, types: &InstanceType<'_>) -> wasmtime::Result<()> {
        <v0_1::Packet as ComponentType>::typecheck(ty, types)
    }
}

// SAFETY: only the list store writes, with the same bounds-checked encoder as `WirePacket`
// (0.1 size). A single 0.1 packet is never lowered on its own (no 0.1 function takes one
// outside `list<packet>`), so those paths return an error instead of writing anything.
#[allow(unsafe_code)]
unsafe impl Lower for WirePacketV01 {
    fn linear_lower_to_flat<T>(
        &self,
        _cx: &mut LowerContext<'_, T>,
        _ty: InterfaceType,
        _dst: &mut MaybeUninit<Self::Lower>,
    ) -> wasmtime::Result<()> {
        Err(wasmtime::format_err!(
            "a 0.1 packet is only lowered inside list<packet>"
        ))
    }

    fn linear_lower_to_memory<T>(
        &self,
        _cx: &mut LowerContext<'_, T>,
        _ty: InterfaceType,
        _offset: usize,
    ) -> wasmtime::Result<()> {
        Err(wasmtime::format_err!(
            "a 0.1 packet is only lowered inside list<packet>"
        ))
    }

    fn linear_store_list_to_memory<T>(
        cx: &mut LowerContext<'_, T>,
        _ty: InterfaceType,
        offset: usize,
        items: &[Self],
    ) -> wasmtime::Result<()> {
        store_list::<T, PACKET_SIZE_V0_1>(cx, offset, items.iter().map(|p| &p.0), items.len())
    }
}

/// Little-endian writer over one record's bytes.
pub(crate) struct W<'a>(pub(crate) &'a mut [u8]);

impl W<'_> {
    pub(crate) fn u8(&mut self, at: usize, v: u8) {
        self.0[at] = v;
    }
    pub(crate) fn u16(&mut self, at: usize, v: u16) {
        self.0[at..at + 2].copy_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn u32(&mut self, at: usize, v: u32) {
        self.0[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn u64(&mut self, at: usize, v: u64) {
        self.0[at..at + 8].copy_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn bool(&mut self, at: usize, v: bool) {
        self.0[at] = u8::from(v);
    }
    pub(crate) fn span(&mut self, at: usize, s: &Span) {
        self.u32(at, s.offset);
        self.u32(at + 4, s.len);
    }
}

/// Encode one packet in the canonical ABI layout. Offsets (record fields are aligned to
/// their own alignment; an `option`/`variant` is a u8 discriminant followed by the payload
/// at the payload's alignment):
///
/// | field | offset | size |
/// |---|---|---|
/// | timestamp-ns u64 | 0 | 8 |
/// | captured-len, original-len, link-type, interface-index u32 | 8, 12, 16, 20 | 4 each |
/// | frame span | 24 | 8 |
/// | ethernet option (payload @+8) | 32 | 32 |
/// | linux-sll option (payload @+8) | 64 | 32 |
/// | vlan-outer, vlan-inner options (payload @+2) | 96, 104 | 8 each |
/// | arp option (payload @+8) | 112 | 48 |
/// | ip option (payload @+8; variant payload @+8) | 160 | 72 |
/// | transport option (payload @+4; variant payload @+4) | 232 | 28 |
/// | payload, padding spans | 260, 268 | 8 each |
/// | stopped option (payload @+1) | 276 | 3 |
///
/// Total 279, padded to the record's alignment 8: 280 (the whole 0.1 record). 0.2 adds:
///
/// | flow option (payload @+8: id u64 @0, direction u8 @8) | 280 | 24 |
///
/// Total 304. `N` is either size; the 0.1 size leaves `flow` out.
fn encode<const N: usize>(p: &Packet, out: &mut [u8; N]) {
    *out = [0; N];
    let mut w = W(out);
    w.u64(0, p.timestamp_ns);
    w.u32(8, p.captured_len);
    w.u32(12, p.original_len);
    w.u32(16, p.link_type);
    w.u32(20, p.interface_index);
    w.span(24, &p.frame);
    if let Some(e) = &p.ethernet {
        w.u8(32, 1);
        ethernet(&mut w, 40, e);
    }
    if let Some(s) = &p.linux_sll {
        w.u8(64, 1);
        sll(&mut w, 72, s);
    }
    if let Some(v) = &p.vlan_outer {
        w.u8(96, 1);
        vlan(&mut w, 98, v);
    }
    if let Some(v) = &p.vlan_inner {
        w.u8(104, 1);
        vlan(&mut w, 106, v);
    }
    if let Some(a) = &p.arp {
        w.u8(112, 1);
        arp(&mut w, 120, a);
    }
    if let Some(ip) = &p.ip {
        w.u8(160, 1);
        ip_header(&mut w, 168, ip);
    }
    if let Some(t) = &p.transport {
        w.u8(232, 1);
        transport(&mut w, 236, t);
    }
    w.span(260, &p.payload);
    w.span(268, &p.padding);
    if let Some(s) = &p.stopped {
        w.u8(276, 1);
        stop(&mut w, 277, s);
    }
    if let (Some(f), true) = (&p.flow, N >= PACKET_SIZE) {
        w.u8(280, 1);
        w.u64(288, f.id);
        w.u8(
            296,
            match f.direction {
                Direction::FromOriginator => 0,
                Direction::FromResponder => 1,
            },
        );
    }
}

/// ethernet-header: source u64 @0, destination u64 @8, ether-type u16 @16 (size 24).
fn ethernet(w: &mut W<'_>, at: usize, e: &EthernetHeader) {
    w.u64(at, e.source);
    w.u64(at + 8, e.destination);
    w.u16(at + 16, e.ether_type);
}

/// linux-sll-header: packet-type u16 @0, arp-hardware-type u16 @2, source u64 @8,
/// source-len u8 @16, protocol-type u16 @18 (size 24).
fn sll(w: &mut W<'_>, at: usize, s: &LinuxSllHeader) {
    w.u16(at, s.packet_type);
    w.u16(at + 2, s.arp_hardware_type);
    w.u64(at + 8, s.source);
    w.u8(at + 16, s.source_len);
    w.u16(at + 18, s.protocol_type);
}

/// vlan-tag: priority u8 @0, drop-eligible bool @1, id u16 @2, ether-type u16 @4 (size 6).
fn vlan(w: &mut W<'_>, at: usize, v: &VlanTag) {
    w.u8(at, v.priority);
    w.bool(at + 1, v.drop_eligible);
    w.u16(at + 2, v.id);
    w.u16(at + 4, v.ether_type);
}

/// arp-packet: hardware-type u16 @0, protocol-type u16 @2, operation u16 @4,
/// sender-hardware u64 @8, sender-protocol u32 @16, target-hardware u64 @24,
/// target-protocol u32 @32 (size 40).
fn arp(w: &mut W<'_>, at: usize, a: &ArpPacket) {
    w.u16(at, a.hardware_type);
    w.u16(at + 2, a.protocol_type);
    w.u16(at + 4, a.operation);
    w.u64(at + 8, a.sender_hardware);
    w.u32(at + 16, a.sender_protocol);
    w.u64(at + 24, a.target_hardware);
    w.u32(at + 32, a.target_protocol);
}

/// ip-header variant: discriminant u8 @0 (v4 = 0, v6 = 1), payload @8 (size 64).
fn ip_header(w: &mut W<'_>, at: usize, ip: &IpHeader) {
    let p = at + 8;
    match ip {
        // ipv4-header: source u32 @0, destination u32 @4, protocol @8, ttl @9, tos @10,
        // header-len @11 (u8s), total-len u16 @12, identification u16 @14,
        // dont-fragment @16, more-fragments @17 (bools), fragment-offset u16 @18.
        IpHeader::V4(h) => {
            w.u8(at, 0);
            w.u32(p, h.source);
            w.u32(p + 4, h.destination);
            w.u8(p + 8, h.protocol);
            w.u8(p + 9, h.ttl);
            w.u8(p + 10, h.tos);
            w.u8(p + 11, h.header_len);
            w.u16(p + 12, h.total_len);
            w.u16(p + 14, h.identification);
            w.bool(p + 16, h.dont_fragment);
            w.bool(p + 17, h.more_fragments);
            w.u16(p + 18, h.fragment_offset);
        }
        // ipv6-header: source (u64, u64) @0, destination @16, next-header @32,
        // hop-limit @33, traffic-class @34 (u8s), flow-label u32 @36, payload-len u16 @40,
        // fragment option @44 (payload @+4: offset u16 @0, more-fragments bool @2,
        // identification u32 @4).
        IpHeader::V6(h) => {
            w.u8(at, 1);
            w.u64(p, h.source.0);
            w.u64(p + 8, h.source.1);
            w.u64(p + 16, h.destination.0);
            w.u64(p + 24, h.destination.1);
            w.u8(p + 32, h.next_header);
            w.u8(p + 33, h.hop_limit);
            w.u8(p + 34, h.traffic_class);
            w.u32(p + 36, h.flow_label);
            w.u16(p + 40, h.payload_len);
            if let Some(f) = &h.fragment {
                w.u8(p + 44, 1);
                w.u16(p + 48, f.offset);
                w.bool(p + 50, f.more_fragments);
                w.u32(p + 52, f.identification);
            }
        }
    }
}

/// transport-header variant: discriminant u8 @0 (tcp 0, udp 1, icmpv4 2, icmpv6 3),
/// payload @4 (size 24).
fn transport(w: &mut W<'_>, at: usize, t: &TransportHeader) {
    let p = at + 4;
    match t {
        // tcp-header: ports u16 @0/@2, sequence u32 @4, acknowledgment u32 @8, flags u8 @12,
        // window u16 @14, header-len u8 @16, urgent-pointer u16 @18.
        TransportHeader::Tcp(h) => {
            w.u8(at, 0);
            w.u16(p, h.source_port);
            w.u16(p + 2, h.destination_port);
            w.u32(p + 4, h.sequence);
            w.u32(p + 8, h.acknowledgment);
            w.u8(p + 12, tcp_flag_bits(h.flags));
            w.u16(p + 14, h.window);
            w.u8(p + 16, h.header_len);
            w.u16(p + 18, h.urgent_pointer);
        }
        // udp-header: ports u16 @0/@2, length u16 @4.
        TransportHeader::Udp(h) => {
            w.u8(at, 1);
            w.u16(p, h.source_port);
            w.u16(p + 2, h.destination_port);
            w.u16(p + 4, h.length);
        }
        // icmp-header: icmp-type u8 @0, code u8 @1, rest u32 @4.
        TransportHeader::Icmpv4(h) | TransportHeader::Icmpv6(h) => {
            w.u8(
                at,
                if matches!(t, TransportHeader::Icmpv4(_)) {
                    2
                } else {
                    3
                },
            );
            w.u8(p, h.icmp_type);
            w.u8(p + 1, h.code);
            w.u32(p + 4, h.rest);
        }
    }
}

/// parse-stop: layer u8 @0, reason u8 @1 (enums in declaration order).
fn stop(w: &mut W<'_>, at: usize, s: &ParseStop) {
    let layer = match s.layer {
        Layer::Link => 0,
        Layer::Vlan => 1,
        Layer::Network => 2,
        Layer::IpExtension => 3,
        Layer::Transport => 4,
    };
    let reason = match s.reason {
        StopReason::Truncated => 0,
        StopReason::Malformed => 1,
        StopReason::Unsupported => 2,
        StopReason::Fragment => 3,
    };
    w.u8(at, layer);
    w.u8(at + 1, reason);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chef_host::bindings::TcpFlags;

    #[test]
    fn packet_size_matches_wasmtimes_layout() {
        assert_eq!(<Packet as ComponentType>::SIZE32, PACKET_SIZE);
        assert_eq!(<Packet as ComponentType>::ALIGN32, 8);
        assert_eq!(<WirePacket as ComponentType>::SIZE32, PACKET_SIZE);
        assert_eq!(<v0_1::Packet as ComponentType>::SIZE32, PACKET_SIZE_V0_1);
        assert_eq!(<WirePacketV01 as ComponentType>::SIZE32, PACKET_SIZE_V0_1);
        assert_eq!(<v0_1::Packet as ComponentType>::ALIGN32, 8);
    }

    #[test]
    fn flag_bits_follow_declaration_order() {
        assert_eq!(tcp_flag_bits(TcpFlags::FIN), 1);
        assert_eq!(tcp_flag_bits(TcpFlags::SYN | TcpFlags::ACK), 0x12);
        assert_eq!(tcp_flag_bits(TcpFlags::CWR), 0x80);
    }
}
