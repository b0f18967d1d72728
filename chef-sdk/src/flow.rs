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
    /// Where [`StreamChunk::done_with_direction`] records this chunk's index (`None`: a
    /// chunk made by hand, whose verdict goes nowhere).
    verdicts: Option<(&'a Verdicts, u32)>,
}

/// The indices of a call's chunks whose direction the chef gave up (the `stream-verdicts`
/// answer), filled by [`StreamChunk::done_with_direction`].
#[derive(Debug, Default)]
pub struct Verdicts(core::cell::RefCell<Vec<u32>>);

impl Verdicts {
    /// The indices recorded, in the order they were given (each once).
    pub fn into_indices(self) -> Vec<u32> {
        self.0.into_inner()
    }
}

impl<'a> StreamChunk<'a> {
    /// Wraps a WIT chunk and the arena its span points into (its verdict, if any, is not
    /// recorded: for tests and tools).
    #[inline]
    pub fn new(raw: &'a wit::StreamChunk, arena: &'a [u8]) -> Self {
        StreamChunk {
            raw,
            arena,
            verdicts: None,
        }
    }

    /// Wraps the `index`-th chunk of a call; its verdict goes to `verdicts`.
    #[inline]
    pub fn with_verdicts(
        raw: &'a wit::StreamChunk,
        arena: &'a [u8],
        index: u32,
        verdicts: &'a Verdicts,
    ) -> Self {
        StreamChunk {
            raw,
            arena,
            verdicts: Some((verdicts, index)),
        }
    }

    /// This chunk's place in the kitchen's `on-stream` call (0 for the first chunk of a
    /// call); `None` for a chunk made by hand ([`StreamChunk::new`]). For a chef that bounds
    /// what one connection may report per call: the kitchen caps the dumplings of one call,
    /// so a connection that makes thousands would crowd out every other connection's.
    #[inline]
    pub fn index_in_call(&self) -> Option<u32> {
        self.verdicts.map(|(_, index)| index)
    }

    /// This chef wants no more bytes of this chunk's direction (this flow id, this
    /// direction): the kitchen hands it no later chunk of it, not even the `last` marker,
    /// and stops reassembling it once no other chef wants it either (chef API 0.2,
    /// `stream-verdicts`). Call it wherever the chef stops following a direction: its
    /// first bytes are not the chef's protocol, it read what it wanted, bytes went missing,
    /// or it never reads that side. Other directions and other connections are not
    /// affected; a new connection is wanted again. Calling it twice is harmless.
    pub fn done_with_direction(&self) {
        if let Some((verdicts, index)) = self.verdicts {
            let mut v = verdicts.0.borrow_mut();
            if v.last() != Some(&index) {
                v.push(index);
            }
        }
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
