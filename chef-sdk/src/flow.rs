//! Flows and TCP streams (chef API 0.2): the [`StreamChunk`] view a chef's
//! [`crate::Chef::on_stream`] receives, and the WIT flow records, re-exported.

use crate::time::Timestamp;
use crate::wit;

pub use wit::{
    Direction, FlowEndReason, FlowEvent, FlowKey, FlowRef, FlowStart, FlowSummary, IpAddress,
};

/// In-order bytes of one direction of one TCP connection, as the kitchen reassembled them.
///
/// `data()` continues where the previous chunk of the same flow and direction ended, unless
/// [`StreamChunk::gap_before`] says bytes are missing in between.
#[derive(Debug, Clone, Copy)]
pub struct StreamChunk<'a> {
    raw: &'a wit::StreamChunk,
    arena: &'a [u8],
}

impl<'a> StreamChunk<'a> {
    /// Wraps a WIT chunk and the arena its span points into.
    #[inline]
    pub fn new(raw: &'a wit::StreamChunk, arena: &'a [u8]) -> Self {
        StreamChunk { raw, arena }
    }

    /// The WIT record, as received.
    #[inline]
    pub fn raw(&self) -> &'a wit::StreamChunk {
        self.raw
    }

    /// The bytes (empty if the span does not fit the arena, which the kitchen never sends).
    #[inline]
    pub fn data(&self) -> &'a [u8] {
        let start = self.raw.data.offset as usize;
        let end = start.saturating_add(self.raw.data.len as usize);
        self.arena.get(start..end).unwrap_or(&[])
    }

    /// Which flow and which direction.
    #[inline]
    pub fn flow(&self) -> FlowRef {
        self.raw.flow
    }

    /// The connection's 5-tuple, originator first.
    #[inline]
    pub fn key(&self) -> &'a FlowKey {
        &self.raw.key
    }

    /// Offset of `data()[0]` in this direction's stream.
    #[inline]
    pub fn offset(&self) -> u64 {
        self.raw.offset
    }

    /// Bytes known missing right before this chunk (0 normally).
    #[inline]
    pub fn gap_before(&self) -> u64 {
        self.raw.gap_before
    }

    /// This direction ended: no more chunks for it.
    #[inline]
    pub fn is_last(&self) -> bool {
        self.raw.last
    }

    /// Time of the packet that completed this chunk.
    #[inline]
    pub fn timestamp(&self) -> Timestamp {
        Timestamp::from_nanos(self.raw.timestamp_ns)
    }
}
