//! The dispatcher's side of the flow stage ([`crate::parse::flow_stage`]): switching tracking on
//! when a loaded chef asks for flows or streams, and delivering each batch's flow events to
//! the chefs that asked for them.
//!
//! Order within one batch (the design of chef API 0.2): `started` events, then the packets
//! (`on-packets` / `on-packed`), then stream chunks, then `ended` events. A selective chef's
//! queued packets are handed over before its `ended` events, so it never hears of a flow's
//! end before that flow's last packet.

use std::sync::Arc;

use flowtrack::table::{FlowConfig, FlowConfigError};

use super::lane::LaneContext;
use super::{ChefLane, Dispatcher, SinkError};
use crate::chef_host::bindings::FlowEvent as WitFlowEvent;
use crate::chef_host::packet_answer::{AnswerKind, Part};
use crate::chef_host::LoadedChef;
use crate::parse::batch::Batch;
use crate::parse::flow_stage::{event_time_ns, wit_event, FlowCounters, FlowShared, FlowStage};

/// Flow events per `on-flow-events` call at most (the end of a capture may end a whole
/// table at once; a call's size and its dumplings stay bounded like a packet batch's).
pub const MAX_EVENTS_PER_CALL: usize = crate::parse::batch::MAX_BATCH_PACKETS;

/// The flow table's configuration and the switch its stages share.
pub(super) struct DispatchFlows {
    config: FlowConfig,
    shared: Arc<FlowShared>,
    /// Events converted to WIT records for the current delivery (reused).
    wit: Vec<WitFlowEvent>,
    /// The table's counters as of the last batch run (they travel with the batches).
    latest: Option<FlowCounters>,
    /// `--capsule-evict-ns`: when the replay's table evicts its least recently used flow.
    evictions: Vec<u64>,
}

/// Whether `chef` asked for flow events.
pub(super) fn wants_events(chef: &LoadedChef) -> bool {
    chef.description().interest.flow_events
}

/// Whether `chef` needs flows tracked (events, or stream bytes, which need a flow id).
fn needs_flows(chef: &LoadedChef) -> bool {
    let i = &chef.description().interest;
    i.flow_events || i.stream_bytes > 0
}

impl Dispatcher {
    /// Track flows with `config` whenever a loaded chef asks for flow events or stream
    /// bytes (set once, before running; builders made after this track too). Returns the
    /// switch and counters the stages share.
    pub fn set_flows(&mut self, config: FlowConfig) -> Result<Arc<FlowShared>, FlowConfigError> {
        let shared = Arc::new(FlowShared::default());
        self.builder
            .set_flow_stage(FlowStage::new(config, shared.clone())?);
        self.flows = Some(DispatchFlows {
            config,
            shared: shared.clone(),
            wit: Vec::new(),
            latest: None,
            evictions: Vec::new(),
        });
        self.update_flow_switch();
        Ok(shared)
    }

    /// The flow table's counters as of the last batch run, once a flow was tracked (the
    /// status dumpling, `/metrics` and the exit summary read them here).
    pub fn flow_counters(&self) -> Option<FlowCounters> {
        self.flows.as_ref()?.latest
    }

    /// Replay only (`--capsule-evict-ns`, after [`Dispatcher::set_flows`]): the replay's flow
    /// table evicts its least recently used flow at each of these capture times, as the
    /// crash capsule's failing call saw flows end by eviction.
    pub fn set_capsule_evictions(&mut self, times: &[u64]) {
        if let Some(f) = self.flows.as_mut() {
            f.evictions = times.to_vec();
        }
    }

    /// A stage for a new builder (a replay's reading thread), when flows are configured.
    pub(super) fn flow_stage_for_builder(&self) -> Option<FlowStage> {
        let f = self.flows.as_ref()?;
        // The config was validated by `set_flows`.
        let stage = FlowStage::new(f.config, f.shared.clone()).ok()?;
        Some(stage.with_evictions(&f.evictions))
    }

    /// Turn tracking on exactly while some loaded chef needs it, and `started` events on
    /// while some chef asks for flow events (after the chef set changed).
    pub(super) fn update_flow_switch(&self) {
        if let Some(f) = &self.flows {
            f.shared
                .set_starts_wanted(self.lanes.iter().any(|s| wants_events(&s.chef)));
            f.shared
                .set_wanted(self.lanes.iter().any(|s| needs_flows(&s.chef)));
        }
    }

    /// Deliver `batch`'s `started` events (before its packets); take its counters.
    pub(super) fn flows_started(&mut self, batch: &Batch) -> Result<(), SinkError> {
        if let (Some(f), Some(c)) = (self.flows.as_mut(), batch.flows.counters) {
            f.latest = Some(c);
        }
        self.deliver_flow_events(&batch.flows.started, false)
    }

    /// Deliver `batch`'s `ended` events (after its packets and stream chunks).
    /// Keep the flow counters `batch` carries (the replay window delivers its events
    /// later, [`crate::dispatch::window`]).
    pub(super) fn note_flow_counters(&mut self, batch: &Batch) {
        if let (Some(f), Some(c)) = (self.flows.as_mut(), batch.flows.counters) {
            f.latest = Some(c);
        }
    }

    pub(super) fn flows_ended(&mut self, batch: &Batch) -> Result<(), SinkError> {
        self.deliver_flow_events(&batch.flows.ended, true)
    }

    fn deliver_flow_events(
        &mut self,
        events: &[flowtrack::table::FlowEvent],
        ended: bool,
    ) -> Result<(), SinkError> {
        if events.is_empty() || !self.lanes.iter().any(|s| wants_events(&s.chef)) {
            return Ok(());
        }
        let Some(mut flows) = self.flows.take() else {
            return Ok(());
        };
        let mut result = Ok(());
        for chunk in events.chunks(MAX_EVENTS_PER_CALL) {
            flows.wit.clear();
            flows.wit.extend(chunk.iter().map(wit_event));
            result = self.call_flow_chefs(&flows.wit, chunk, ended);
            if result.is_err() {
                break;
            }
        }
        self.flows = Some(flows);
        result
    }

    fn call_flow_chefs(
        &mut self,
        wit: &[WitFlowEvent],
        events: &[flowtrack::table::FlowEvent],
        ended: bool,
    ) -> Result<(), SinkError> {
        self.run_lanes(None, |_, lane, ctx| {
            lane.deliver_flow_events(wit, events, ended, ctx)
        })
    }
}

impl ChefLane {
    /// Give this lane one call's worth of flow events, if it asks for them and is not
    /// quarantined; before `ended` events, its queued packets first (a chef hears of a
    /// flow's end only after that flow's last packet). One step's delivery, and one
    /// operation of a replay window ([`super::window`]).
    pub(super) fn deliver_flow_events(
        &mut self,
        wit: &[WitFlowEvent],
        events: &[flowtrack::table::FlowEvent],
        ended: bool,
        ctx: &LaneContext<'_>,
    ) {
        if !wants_events(&self.chef) {
            return;
        }
        if self.chef.is_quarantined() {
            self.flow_events_missed(events.len());
            return;
        }
        if ended && self.has_queued() {
            self.call_queued(ctx);
        }
        self.call_flow_events(wit, events, ctx);
    }

    /// Call `on-flow-events` and wrap what it made (dumpling time = the event's).
    pub(super) fn call_flow_events(
        &mut self,
        wit: &[WitFlowEvent],
        events: &[flowtrack::table::FlowEvent],
        ctx: &LaneContext<'_>,
    ) {
        let now_ns = ctx.now_ns;
        let started = Self::call_clock(ctx);
        // Live and behind, a chef over its share sheds flow events as it sheds batches.
        if self.over_share(started, ctx) {
            self.flow_events_missed(events.len());
            return;
        }
        let part = Part {
            end: events.len(),
            clock_ns: ctx.clock_ns(),
        };
        let times = |t: &mut Vec<u64>| t.extend(events.iter().map(event_time_ns));
        self.prepare_intake(AnswerKind::FlowEvents, &times, &[part], false, ctx);
        let mut intake = self.take_intake();
        let result = self.chef.take_flow_events(wit, now_ns, &mut intake);
        self.put_intake(intake);
        if let Err(e) = &result {
            ctx.capsule(|c| c.flow_events_failed(&self.chef, e, events, now_ns));
        }
        self.record_call(&result, started, ctx);
        if result.is_err() {
            self.flow_events_missed(events.len());
            return;
        }
        self.apply_verdicts(
            "flow-event dumplings from one call",
            |n| format!("the {n} flow events of the call"),
            &times,
            |_, _| {},
        );
        self.finish_call(started, ctx);
    }
}
