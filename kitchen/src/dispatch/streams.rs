//! The dispatcher's side of TCP streams ([`crate::parse::stream_stage`]): the stage exists only
//! while some chef's interest asks for `stream-bytes`, is fed each batch's segments after
//! the packet calls, ends the streams of flows that ended, and calls each stream chef's
//! `on-stream` with its chunks (ordering in a batch: flow starts, packets, stream chunks,
//! flow ends; see `wit02-design` in the docs of [`crate::parse::stream_stage`]).

use flowtrack::reassembly::ReassemblyLimits;

use flowtrack::table::{FlowEvent, Transport};

use super::lane::LaneContext;
use super::{Batch, ChefLane, Dispatcher, SinkError};
use crate::chef_host::bindings::StreamChunk;
use crate::chef_host::packet_answer::Part;
use crate::outputs::status::traffic::StreamStatus;
use crate::parse::stream_stage::{StreamFilter, StreamStage};

impl Dispatcher {
    /// Memory bounds for reassembly (`--stream-flow-buffer-kib`, `--stream-memory-mib`);
    /// `want` is ignored (the chefs decide it).
    pub fn set_stream_limits(&mut self, limits: ReassemblyLimits) {
        self.stream_limits = limits;
        self.streams = None;
        self.update_stream_stage();
    }

    /// Whether some loaded chef wants stream bytes (the flow stage must then tag packets).
    pub fn wants_streams(&self) -> bool {
        self.streams.is_some()
    }

    /// Reassembly counters and held bytes for the status report, while the stage exists.
    pub fn stream_status(&self) -> Option<StreamStatus> {
        let stage = self.streams.as_ref()?;
        Some(StreamStatus::new(stage.stats(), stage.held_bytes()))
    }

    /// Creates, resizes or drops the stage after the chefs changed: it reassembles the
    /// largest `stream-bytes` any chef asks for, and does not exist when none asks.
    pub(super) fn update_stream_stage(&mut self) {
        let want = self
            .lanes
            .iter()
            .filter_map(|s| StreamFilter::new(&s.chef.description().interest))
            .map(|f| f.want)
            .max()
            .unwrap_or(0);
        match (&mut self.streams, want) {
            (_, 0) => self.streams = None,
            (Some(stage), w) => stage.set_want(w),
            (None, w) => {
                self.streams = Some(StreamStage::new(ReassemblyLimits {
                    want: w,
                    ..self.stream_limits
                }))
            }
        }
    }

    /// After a batch's packet calls: feeds its TCP segments (tagged with their flow by the
    /// flow stage), ends the streams of the flows that ended in it (held bytes flushed,
    /// holes become gaps) and calls every stream chef's `on-stream` with its part of the
    /// chunks, before the batch's `ended` flow events are delivered.
    /// Replay window ([`crate::dispatch::window`]): feed `batch` to the stage as
    /// [`Dispatcher::run_streams`] does, and copy out each lane's chunks for later.
    pub(super) fn window_streams(&mut self, batch: &Batch) -> Option<super::window::BatchStreams> {
        let stage = self.streams.as_mut()?;
        stage.feed(&batch.packets, &batch.arena);
        for e in &batch.flows.ended {
            if let FlowEvent::Ended(s) = e {
                stage.end_flow(s.id, s.last_ns);
            }
        }
        let out = if stage.has_chunks() {
            let mut arena = Vec::new();
            let per_lane = self
                .lanes
                .iter()
                .map(|lane| {
                    let filter = StreamFilter::new(&lane.chef.description().interest)?;
                    let (chunks, a) = stage.chunks_for(&filter);
                    if arena.is_empty() {
                        arena.extend_from_slice(a);
                    }
                    Some(chunks.to_vec())
                })
                .collect();
            Some(super::window::BatchStreams { arena, per_lane })
        } else {
            None
        };
        stage.end_batch();
        out
    }

    pub(super) fn run_streams(&mut self, batch: &Batch) -> Result<(), SinkError> {
        // Taken out for the calls, so the chefs and the output can be borrowed meanwhile.
        let Some(mut stage) = self.streams.take() else {
            return Ok(());
        };
        stage.feed(&batch.packets, &batch.arena);
        for e in &batch.flows.ended {
            // Only TCP flows have streams (`feed` takes TCP segments alone): the others
            // would cost two lookups of absent ids each.
            if let FlowEvent::Ended(s) = e {
                if s.key.transport == Transport::Tcp {
                    stage.end_flow(s.id, s.last_ns);
                }
            }
        }
        let result = self.deliver_chunks(&mut stage);
        stage.end_batch();
        self.streams = Some(stage);
        result
    }

    fn deliver_chunks(&mut self, stage: &mut StreamStage) -> Result<(), SinkError> {
        if !stage.has_chunks() {
            return Ok(());
        }
        // One chef after the other: each chef's chunks are gathered in the stage's scratch.
        self.with_lanes(None, |lanes, ctx, _| {
            for lane in lanes {
                let Some(filter) = StreamFilter::new(&lane.chef.description().interest) else {
                    continue;
                };
                if lane.chef.is_quarantined() {
                    continue;
                }
                let (chunks, arena) = stage.chunks_for(&filter);
                lane.deliver_stream(chunks, arena, ctx);
            }
        });
        self.send_ready()
    }
}

impl ChefLane {
    /// Give this lane its stream chunks of one step, unless there are none or it is
    /// quarantined. One step's delivery, and one operation of a replay window
    /// ([`super::window`]).
    pub(super) fn deliver_stream(
        &mut self,
        chunks: &[StreamChunk],
        arena: &[u8],
        ctx: &LaneContext<'_>,
    ) {
        if !chunks.is_empty() && !self.chef.is_quarantined() {
            self.call_stream(chunks, arena, ctx);
        }
    }

    /// Call `on-stream` with `chunks` (spans into `arena`) and wrap what it made (dumpling
    /// time = its chunk's).
    pub(super) fn call_stream(
        &mut self,
        chunks: &[StreamChunk],
        arena: &[u8],
        ctx: &LaneContext<'_>,
    ) {
        let now_ns = ctx.now_ns;
        let part = Part {
            end: chunks.len(),
            clock_ns: ctx.clock_ns(),
        };
        let times = |t: &mut Vec<u64>| t.extend(chunks.iter().map(|c| c.timestamp_ns));
        self.prepare_intake(&times, &[part], false, ctx);
        let mut intake = self.take_intake();
        let result = self.chef.take_stream(chunks, arena, now_ns, &mut intake);
        self.put_intake(intake);
        if let Err(e) = &result {
            ctx.capsule(|c| c.stream_failed(&self.chef, e, chunks, arena, now_ns));
        }
        if result.is_ok() {
            self.time_call();
        }
        self.set_state(&result);
        if result.is_err() {
            return;
        }
        self.apply_verdicts(
            "stream dumplings from one call",
            |n| format!("the {n} stream chunks"),
            &times,
            |_, _| {},
        );
    }
}
