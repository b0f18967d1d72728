//! Fast lowering of `list<flow-event>` and `list<stream-chunk>` into a chef's memory.
//!
//! Why: as for packets (see `wire`), wasmtime 48 lowers a `list<record>` field by field and
//! looks the guest memory up again for every scalar (`Instance::options_memory_mut`). On
//! the high-cardinality corpus (about one flow end per packet) that generic lowering of
//! flow events and stream chunks was ~9 % of the kitchen's CPU (perf, stop 16). This module
//! writes a whole list with one memory lookup, encoding each record in its canonical-ABI
//! layout by hand.
//!
//! Safety and correctness are argued as in `wire`: [`WireFlowEvent`] and
//! [`WireStreamChunk`] are `#[repr(transparent)]` newtypes over the bindgen-generated
//! records whose type information and single-value lowering delegate to them; only the
//! list store is replaced, and it writes through a bounds-checked slice. The layouts are
//! pinned by [`FLOW_EVENT_SIZE`] / [`STREAM_CHUNK_SIZE`] (asserted against wasmtime's own
//! `SIZE32`) and by a differential test that compares what a guest sees through both paths
//! (`kitchen/tests/chef_host.rs`, `flow_wire_lowering_matches_wasmtime`).
//!
//! Canonical-ABI layouts (alignment 8 for every record below; a `variant` is a u8
//! discriminant followed by its payload at the largest payload alignment; an `enum` or a
//! `flags` of at most 8 members is one byte):
//!
//! | type | fields (offset) | size |
//! |---|---|---|
//! | ip-address | discriminant (v4 0, v6 1) @0, v4 u32 @8 or v6 (u64, u64) @8/@16 | 24 |
//! | flow-key | transport @0, originator @8, responder @32, ports u16 @56/@58 | 64 |
//! | flow-ref | id u64 @0, direction @8 | 16 |
//! | flow-start | id @0, key @8, timestamp-ns @72 | 80 |
//! | flow-summary | id @0, key @8, first-ns @72, last-ns @80, packets @88/@96, bytes @104/@112, tcp-flags-seen @120, end-reason @121 | 128 |
//! | flow-event | discriminant (started 0, ended 1) @0, payload @8 | 136 |
//! | stream-chunk | flow @0, key @16, timestamp-ns @80, offset @88, gap-before @96, data span @104, last @112 | 120 |
//!
//! Padding and the unused part of a variant are written as zeros (wasmtime's generic
//! lowering leaves them as the allocator gave them; no guest reads them).
//!
//! It relies on `Lower::linear_store_list_to_memory`, a `#[doc(hidden)]` hook of wasmtime
//! (pinned at `=48.0.8`); re-check it when upgrading wasmtime.

use wasmtime::component::__internal::LowerContext;

use crate::parse::packet::tcp_flag_bits;

use super::bindings::{
    Direction, FlowEndReason, FlowEvent, FlowKey, IpAddress, StreamChunk, TransportProtocol,
};
use super::wire::W;

/// Canonical-ABI size of the WIT `flow-event` variant (alignment 8).
pub const FLOW_EVENT_SIZE: usize = 136;

/// Canonical-ABI size of the WIT `stream-chunk` record (alignment 8).
pub const STREAM_CHUNK_SIZE: usize = 120;

/// A flow event that lowers in bulk inside `list<flow-event>`. See the module docs.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(transparent)]
pub struct WireFlowEvent(pub FlowEvent);

impl WireFlowEvent {
    /// View a batch of flow events as [`WireFlowEvent`]s, without copying.
    pub fn slice(events: &[FlowEvent]) -> &[WireFlowEvent] {
        // SAFETY: `WireFlowEvent` is `#[repr(transparent)]` over `FlowEvent` (same size,
        // alignment and validity), and the lifetime is carried over.
        #[allow(unsafe_code)]
        unsafe {
            std::slice::from_raw_parts(events.as_ptr().cast::<WireFlowEvent>(), events.len())
        }
    }
}

/// A stream chunk that lowers in bulk inside `list<stream-chunk>`. See the module docs.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(transparent)]
pub struct WireStreamChunk(pub StreamChunk);

impl WireStreamChunk {
    /// View a batch of stream chunks as [`WireStreamChunk`]s, without copying.
    pub fn slice(chunks: &[StreamChunk]) -> &[WireStreamChunk] {
        // SAFETY: as `WireFlowEvent::slice`: `#[repr(transparent)]` over `StreamChunk`.
        #[allow(unsafe_code)]
        unsafe {
            std::slice::from_raw_parts(chunks.as_ptr().cast::<WireStreamChunk>(), chunks.len())
        }
    }
}

super::bulk_lower::bulk_lowered!(WireFlowEvent, FlowEvent, store_flow_events);
super::bulk_lower::bulk_lowered!(WireStreamChunk, StreamChunk, store_stream_chunks);

/// The list store of [`WireFlowEvent`].
fn store_flow_events<T>(
    cx: &mut LowerContext<'_, T>,
    offset: usize,
    items: &[WireFlowEvent],
) -> wasmtime::Result<()> {
    store_records(cx, offset, items, FLOW_EVENT_SIZE, "flow event", |w, e| {
        encode_flow_event(w, &e.0)
    })
}

/// The list store of [`WireStreamChunk`].
fn store_stream_chunks<T>(
    cx: &mut LowerContext<'_, T>,
    offset: usize,
    items: &[WireStreamChunk],
) -> wasmtime::Result<()> {
    store_records(
        cx,
        offset,
        items,
        STREAM_CHUNK_SIZE,
        "stream chunk",
        |w, c| encode_stream_chunk(w, &c.0),
    )
}

/// Write `items` at `offset`, `size` bytes each, zeroed and then filled by `encode`,
/// through one bounds-checked slice of the chef's memory.
fn store_records<T, I>(
    cx: &mut LowerContext<'_, T>,
    offset: usize,
    items: &[I],
    size: usize,
    what: &str,
    encode: impl Fn(&mut W<'_>, &I),
) -> wasmtime::Result<()> {
    let len = items
        .len()
        .checked_mul(size)
        .ok_or_else(|| wasmtime::format_err!("{what} list too large"))?;
    let memory = cx.as_slice_mut();
    let dst = offset
        .checked_add(len)
        .and_then(|end| memory.get_mut(offset..end))
        .ok_or_else(|| wasmtime::format_err!("{what} list outside the chef's memory"))?;
    for (item, out) in items.iter().zip(dst.chunks_exact_mut(size)) {
        out.fill(0);
        encode(&mut W(out), item);
    }
    Ok(())
}

/// flow-event: discriminant @0 (started 0, ended 1), payload @8. flow-start: id @0, key @8,
/// timestamp-ns @72. flow-summary: id @0, key @8, first-ns @72, last-ns @80, packets from
/// originator/responder @88/@96, bytes @104/@112, tcp-flags-seen @120, end-reason @121.
fn encode_flow_event(w: &mut W<'_>, e: &FlowEvent) {
    match e {
        FlowEvent::Started(s) => {
            w.u8(0, 0);
            w.u64(8, s.id);
            flow_key(w, 16, &s.key);
            w.u64(80, s.timestamp_ns);
        }
        FlowEvent::Ended(s) => {
            w.u8(0, 1);
            w.u64(8, s.id);
            flow_key(w, 16, &s.key);
            w.u64(80, s.first_ns);
            w.u64(88, s.last_ns);
            w.u64(96, s.packets_from_originator);
            w.u64(104, s.packets_from_responder);
            w.u64(112, s.bytes_from_originator);
            w.u64(120, s.bytes_from_responder);
            w.u8(128, tcp_flag_bits(s.tcp_flags_seen));
            w.u8(
                129,
                match s.end_reason {
                    FlowEndReason::Fin => 0,
                    FlowEndReason::Rst => 1,
                    FlowEndReason::IdleTimeout => 2,
                    FlowEndReason::Evicted => 3,
                    FlowEndReason::EndOfCapture => 4,
                },
            );
        }
    }
}

/// stream-chunk: flow-ref (id @0, direction @8), key @16, timestamp-ns @80, offset @88,
/// gap-before @96, data span @104, last @112.
fn encode_stream_chunk(w: &mut W<'_>, c: &StreamChunk) {
    w.u64(0, c.flow.id);
    w.u8(
        8,
        match c.flow.direction {
            Direction::FromOriginator => 0,
            Direction::FromResponder => 1,
        },
    );
    flow_key(w, 16, &c.key);
    w.u64(80, c.timestamp_ns);
    w.u64(88, c.offset);
    w.u64(96, c.gap_before);
    w.span(104, &c.data);
    w.bool(112, c.last);
}

/// flow-key: transport @0 (tcp 0, udp 1, icmpv4 2, icmpv6 3), originator @8, responder @32,
/// originator-port @56, responder-port @58 (size 64).
fn flow_key(w: &mut W<'_>, at: usize, k: &FlowKey) {
    w.u8(
        at,
        match k.transport {
            TransportProtocol::Tcp => 0,
            TransportProtocol::Udp => 1,
            TransportProtocol::Icmpv4 => 2,
            TransportProtocol::Icmpv6 => 3,
        },
    );
    ip_address(w, at + 8, &k.originator);
    ip_address(w, at + 32, &k.responder);
    w.u16(at + 56, k.originator_port);
    w.u16(at + 58, k.responder_port);
}

/// ip-address: discriminant @0 (v4 0, v6 1), v4 u32 @8 or v6 halves u64 @8/@16 (size 24).
fn ip_address(w: &mut W<'_>, at: usize, a: &IpAddress) {
    match a {
        IpAddress::V4(v) => {
            w.u8(at, 0);
            w.u32(at + 8, *v);
        }
        IpAddress::V6((hi, lo)) => {
            w.u8(at, 1);
            w.u64(at + 8, *hi);
            w.u64(at + 16, *lo);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chef_host::bindings::{FlowRef, FlowStart, FlowSummary, Span};
    use wasmtime::component::ComponentType;

    #[test]
    fn sizes_match_wasmtimes_layout() {
        assert_eq!(<FlowEvent as ComponentType>::SIZE32, FLOW_EVENT_SIZE);
        assert_eq!(<FlowEvent as ComponentType>::ALIGN32, 8);
        assert_eq!(<WireFlowEvent as ComponentType>::SIZE32, FLOW_EVENT_SIZE);
        assert_eq!(<StreamChunk as ComponentType>::SIZE32, STREAM_CHUNK_SIZE);
        assert_eq!(<StreamChunk as ComponentType>::ALIGN32, 8);
        assert_eq!(
            <WireStreamChunk as ComponentType>::SIZE32,
            STREAM_CHUNK_SIZE
        );
        assert_eq!(<FlowKey as ComponentType>::SIZE32, 64);
        assert_eq!(<IpAddress as ComponentType>::SIZE32, 24);
        assert_eq!(<FlowRef as ComponentType>::SIZE32, 16);
        assert_eq!(<FlowStart as ComponentType>::SIZE32, 80);
        assert_eq!(<FlowSummary as ComponentType>::SIZE32, 128);
        assert_eq!(<Span as ComponentType>::SIZE32, 8);
    }

    #[test]
    fn an_ended_v6_flow_lands_where_the_table_says() {
        let key = FlowKey {
            transport: TransportProtocol::Icmpv6,
            originator: IpAddress::V6((0x0102_0304_0506_0708, 0x1112_1314_1516_1718)),
            responder: IpAddress::V4(0x7f00_0001),
            originator_port: 0xabcd,
            responder_port: 0x1234,
        };
        let mut out = [0xffu8; FLOW_EVENT_SIZE];
        out.fill(0);
        encode_flow_event(
            &mut W(&mut out),
            &FlowEvent::Ended(FlowSummary {
                id: 7,
                key,
                first_ns: 1,
                last_ns: 2,
                packets_from_originator: 3,
                packets_from_responder: 4,
                bytes_from_originator: 5,
                bytes_from_responder: 6,
                tcp_flags_seen: crate::chef_host::bindings::TcpFlags::CWR,
                end_reason: FlowEndReason::EndOfCapture,
            }),
        );
        assert_eq!(out[0], 1);
        assert_eq!(out[8], 7);
        assert_eq!(out[16], 3, "icmpv6");
        assert_eq!(out[24], 1, "v6");
        assert_eq!(out[32..40], 0x0102_0304_0506_0708u64.to_le_bytes());
        assert_eq!(out[48], 0, "v4");
        assert_eq!(out[56..60], 0x7f00_0001u32.to_le_bytes());
        assert_eq!(out[72..74], 0xabcdu16.to_le_bytes());
        assert_eq!(out[128], 0x80);
        assert_eq!(out[129], 4);
    }
}
