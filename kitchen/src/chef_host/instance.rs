//! One running chef: its `Store`, its instance, its health, its counters.
//!
//! On failure (a trap, a timeout, a refused memory growth) the instance is poisoned
//! (wasmtime refuses to re-enter it), so it is dropped, with its state; the failure is
//! counted and logged with the chef's name and reason, and the chef is re-instantiated
//! from the cached `InstancePre` (~20-40 µs for a Rust chef) when
//! [`super::failure_policy`] says so (backoff, quarantine).
//!
//! Deadlines: every call gets `limits.deadline` (epoch ticks, plus a bound on blocking
//! `wasi:io/poll` waits, see [`super::poll`]); the first call into a fresh instance gets
//! `first_call_grace` times that, except after a restart caused by a timeout.
//! Nothing here can stop the kitchen or another chef.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use wasmtime::component::{ComponentType, Func, Lift, ResourceTable};
use wasmtime::{Engine, Store, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::api::{AnyChef, AnyPre, ChefApi};
use super::bindings::{
    self, v0_1, BatchForm, FlowEvent, Interest, LogLevel, Packet, PacketDumpling, StreamChunk,
};
use super::call_budget::{self, CallBudget};
use super::chef_log::ChefLog;
use super::chef_text::ChefText;
use super::clocks::{process_epoch, Environment, KitchenClock, ReplayMonotonic};
use super::engine::deadline_ticks;
use super::error::{CallError, LoadError};
use super::failure_policy::{CallKind, Health};
use super::interval_bytes;
use super::interval_same::{self, IntervalText, Outcome, Slots};
use super::limits::{ChefLimiter, ChefLimits};
use super::packed_json;
use super::packet_answer::{self, Intake, PacketAnswer};
use super::poll::DeadlinePoll;
use super::wire::{WirePacket, WirePacketV01};
use super::wire_flow::{WireFlowEvent, WireStreamChunk};

/// What the store of one chef holds: its WASI context (deny-all), its resource table, its
/// limiter and its log sink. Kept small on purpose (wasmtime's examples' advice).
pub struct ChefState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: ChefLimiter,
    log: ChefLog,
    /// The budget of the call in progress: read by the epoch-deadline callback, charged
    /// and bounding blocking `wasi:io/poll` waits (`call_budget.rs`).
    call: Option<CallBudget>,
}

impl ChefState {
    fn new(limits: &ChefLimits, log: ChefLog, env: &Environment) -> Self {
        // No preopens, no environment, no arguments, stdin closed; stdout/stderr go to the
        // chef's log. Clocks and randomness: see `Environment` (Rust's std needs both to
        // start, so they are linked, not denied).
        let mut builder = WasiCtx::builder();
        builder.stdout(log.stdout()).stderr(log.stderr());
        if let Environment::Replay {
            clock,
            call_start,
            seed,
        } = env
        {
            builder
                .wall_clock(KitchenClock(clock.clone()))
                .monotonic_clock(ReplayMonotonic {
                    clock: clock.clone(),
                    call_start: call_start.clone(),
                })
                .secure_random(wasmtime_wasi::Deterministic::new(seed.to_vec()))
                .insecure_random(wasmtime_wasi::Deterministic::new(seed.to_vec()))
                .insecure_random_seed(u128::from_le_bytes(
                    seed[..16].try_into().unwrap_or([0; 16]),
                ));
        }
        let wasi = builder.build();
        ChefState {
            wasi,
            table: ResourceTable::new(),
            limiter: ChefLimiter::new(limits),
            log,
            call: None,
        }
    }

    /// The view the deadline-bounded `wasi:io/poll` implementation uses.
    pub(crate) fn deadline_poll(&mut self) -> DeadlinePoll<'_> {
        DeadlinePoll {
            table: &mut self.table,
            call: self.call.as_mut(),
        }
    }
}

impl WasiView for ChefState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl bindings::netdumplings::chef::log::Host for ChefState {
    fn log(&mut self, level: LogLevel, message: String) {
        self.log.log(level, &message);
    }
}

impl bindings::netdumplings::chef::types::Host for ChefState {}

/// A 0.1 chef's `log` (same levels as 0.2's).
impl v0_1::netdumplings::chef::log::Host for ChefState {
    fn log(&mut self, level: v0_1::netdumplings::chef::log::Level, message: String) {
        use v0_1::netdumplings::chef::log::Level as Old;
        let level = match level {
            Old::Trace => LogLevel::Trace,
            Old::Debug => LogLevel::Debug,
            Old::Info => LogLevel::Info,
            Old::Warn => LogLevel::Warn,
            Old::Error => LogLevel::Error,
        };
        self.log.log(level, &message);
    }
}

impl v0_1::netdumplings::chef::types::Host for ChefState {}

/// Which handlers a chef wants called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DriverSet {
    /// `on-packets`.
    pub packet: bool,
    /// `on-interval`.
    pub interval: bool,
}

impl std::fmt::Display for DriverSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.packet, self.interval) {
            (true, true) => f.write_str("packet,interval"),
            (true, false) => f.write_str("packet"),
            (false, true) => f.write_str("interval"),
            (false, false) => f.write_str("none"),
        }
    }
}

/// What a chef said about itself in `describe`.
#[derive(Debug, Clone, PartialEq)]
pub struct ChefDescription {
    /// Validated name (`metadata.chef`).
    pub name: String,
    /// One line for `--chef-list`.
    pub description: String,
    /// The chef's own version.
    pub version: String,
    /// Handlers to call.
    pub drivers: DriverSet,
    /// Packets `on-packets` should get (and flow events, stream bytes: 0.2).
    pub interest: Interest,
    /// `on-packets` (records) or `on-packed`.
    pub batch_form: BatchForm,
    /// The chef contract it was built against.
    pub api: ChefApi,
    /// It exports `netdumplings:chef/state@0.2.0` (its state can follow a hot reload).
    pub stateful: bool,
    /// It exports `packed-json` or `packed-json-bytes`: an interpreted SDK's chef (Python,
    /// JavaScript), which reads the packed records' DNS slots and time text. A packed chef
    /// without them (the Rust SDK) gets those slots left open, as `docs/packed-batch.md`
    /// allows: they cost the kitchen ~0.2 µs per packet on the DNS ports and a Rust chef
    /// never reads them.
    pub packed_slots: bool,
    /// It exports `stream-verdicts`: its `on-stream` answer also names the directions it is
    /// done with (see `dispatch::streams`).
    pub stream_verdicts: bool,
}

/// Where a chef was loaded from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChefSource {
    /// Built into the binary (file name of the component).
    Builtin(&'static str),
    /// Loaded from a file.
    File(std::path::PathBuf),
}

impl std::fmt::Display for ChefSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChefSource::Builtin(name) => write!(f, "built-in:{name}"),
            // A file name is outside input: escaped, so it cannot forge a log line.
            ChefSource::File(p) => f.write_str(&dumpling::text::escape_path(p)),
        }
    }
}

/// Counters for one chef, reported in the exit summary.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ChefStats {
    /// Successful `on-packets` calls.
    pub packet_calls: u64,
    /// Successful `on-interval` calls.
    pub interval_calls: u64,
    /// Successful `on-flow-events` calls.
    pub flow_event_calls: u64,
    /// Successful `on-stream` calls.
    pub stream_calls: u64,
    /// Packets handed over in successful calls.
    pub packets: u64,
    /// Dumplings the host dropped while reading a call's result (bytes that are not UTF-8,
    /// a packed result it cannot decode). What the dispatcher refuses afterwards is counted
    /// by the chef's lane ([`crate::dispatch::ChefCounters`]).
    pub undecodable: u64,
    /// Calls that trapped (panics, `unreachable`, out-of-bounds, ...).
    pub traps: u64,
    /// Calls stopped at their deadline.
    pub timeouts: u64,
    /// Calls that failed after a refused memory growth.
    pub memory_limits: u64,
    /// Re-instantiations after a failure.
    pub restarts: u64,
    /// Calls skipped because the chef was restarting or quarantined.
    pub skipped: u64,
    /// Time spent inside the chef's calls, nanoseconds.
    pub busy_ns: u64,
    /// The part of `busy_ns` spent in `on-interval` calls (and state snapshots), so a
    /// chef's cost per packet and per poke can be told apart (`nd-kitchen-bench`).
    pub interval_ns: u64,
    /// The chef thread's CPU time inside those calls, nanoseconds (only with
    /// `ND_BENCH_CHEF_CPU=1`, see [`super::cpu_time`]; else 0).
    pub busy_cpu_ns: u64,
    /// The part of `busy_cpu_ns` spent in `on-interval` calls (and state snapshots).
    pub interval_cpu_ns: u64,
    /// `same` answers (`interval-same`) that referred to no kept payload: dropped (also
    /// counted in `undecodable`).
    pub same_unresolved: u64,
    /// Hot reloads into this version that restored the previous version's state.
    pub state_restored: u64,
    /// Hot reloads into this version that started fresh because the previous version's
    /// state could not be carried (see `chef_host::state`).
    pub state_fresh: u64,
}

struct Live {
    store: Store<ChefState>,
    chef: AnyChef,
    /// `on-packets`, called with [`WirePacket`]s (bulk lowering; see `wire`), or with
    /// [`WirePacketV01`]s for a 0.1 chef.
    on_packets: Func,
    /// `on-flow-events` and `on-stream` (0.2 only), called with [`WireFlowEvent`]s and
    /// [`WireStreamChunk`]s (bulk lowering; see `wire_flow`).
    flow_funcs: Option<(Func, Func)>,
    /// `stream-verdicts.on-stream`, when the chef exports it (0.2 only; called instead of
    /// the handler's; see [`STREAM_VERDICTS_EXPORT`]).
    stream_verdicts: Option<Func>,
    /// `state.snapshot` and `state.restore`, when the chef exports them (0.2 only).
    state: Option<(Func, Func)>,
    /// The handler's `on-packed` (0.2 only), type-checked once as [`OnPackedFunc`].
    on_packed: Option<Func>,
    /// `packed-json.on-packed`, when the chef exports it (0.2 only; see `packed_json`).
    packed_json: Option<Func>,
    /// `packed-json-bytes.on-packed`, when the chef exports it (0.2 only; preferred over
    /// `packed_json`; see `packed_json::BYTES_EXPORT`).
    packed_json_bytes: Option<Func>,
    /// `interval-json-bytes.on-interval`, when the chef exports it (0.2 only; preferred over
    /// the handler's; see `interval_bytes`).
    interval_json_bytes: Option<Func>,
    /// The handler's `on-interval`, typed to lift its strings as [`ChefText`] (UTF-8
    /// checked by `simdutf8`); `None` when it does not type-check so (the bindings' call
    /// is used then).
    on_interval: Option<OnIntervalFunc>,
    /// `interval-same.on-interval`, when the chef exports it (0.2 only; preferred over the
    /// handler's and `interval-json-bytes`; see `interval_same`).
    interval_same: Option<OnIntervalSameFunc>,
    /// No handler call has been made into this instance yet.
    fresh: bool,
}

/// How often the kitchen repeats a warning about one kind of bad output from one chef
/// (wall clock): the first occurrence is logged at once, then at most one line per this
/// interval, carrying the count since the previous line. The exit summary has the totals.
pub const OUTPUT_WARN_EVERY: Duration = Duration::from_secs(10);

/// Rate limiter of the kitchen's warnings about a chef's output, per kind.
#[derive(Debug, Default)]
struct OutputWarnings {
    /// (kind, last logged at, occurrences since then that were not logged).
    kinds: Vec<(&'static str, Instant, u64)>,
}

/// A loaded chef, ready to be called.
pub struct LoadedChef {
    description: ChefDescription,
    source: ChefSource,
    pre: AnyPre,
    engine: Engine,
    limits: ChefLimits,
    log: ChefLog,
    env: Environment,
    live: Option<Live>,
    health: Health,
    /// Use wasmtime's generic per-field lowering for `on-packets`, `on-flow-events` and
    /// `on-stream` instead of the bulk lowerings of `wire` and `wire_flow` (a diagnostic
    /// fallback; the differential tests compare the two).
    generic_lowering: bool,
    warnings: OutputWarnings,
    /// Its component's hash and signer (set by `ChefHost::load`).
    provenance: super::Provenance,
    /// What the host observed of this chef's calls (the host is their only writer; the
    /// dispatcher's counters are in the chef's lane, [`crate::dispatch::ChefCounters`]).
    pub stats: ChefStats,
    /// Payload bytes this chef may still emit (the dispatcher takes from it per dumpling;
    /// every call starts a fresh per-call budget).
    pub output_budget: super::output_budget::OutputBudget,
    /// Its last interval payload and what checking it gave (see [`LoadedChef::wrap_payload`]).
    interval_memo: dumpling::PayloadMemo,
    /// The payloads of its previous `interval-same` answer that a `same` may name (this
    /// instance's only: cleared whenever the instance goes).
    slots: Slots,
    /// Call `interval-same` when the chef exports it (else the handler's `on-interval`;
    /// off only to compare the two, [`LoadedChef::set_interval_same`]).
    use_interval_same: bool,
    /// How long its last call took, ns (the lane's batch timings read it instead of timing
    /// the call again: two clock reads less per call).
    last_call_ns: u64,
    /// How many calls the next call stands for (a replay window's merged packet call,
    /// [`LoadedChef::set_merged_calls`]); 0 or 1: one.
    merged_calls: u32,
    /// Its envelope head (chef and kitchen names written once; see
    /// [`dumpling::EnvelopeHead`]), made at its first dumpling.
    envelope_head: Option<dumpling::EnvelopeHead>,
}

impl LoadedChef {
    /// Instantiate, call `describe`, validate the name.
    pub(crate) fn start(
        engine: &Engine,
        pre: AnyPre,
        limits: &ChefLimits,
        source: ChefSource,
        env: Environment,
    ) -> Result<Self, LoadError> {
        let log = ChefLog::new(&source.to_string());
        let (live, info) =
            instantiate(engine, &pre, limits, &log, &env).map_err(LoadError::Start)?;
        validate_name(&info.name)?;
        if dumpling::is_reserved_name(dumpling::RESERVED_CHEF_NAMES, &info.name) {
            return Err(LoadError::ReservedName(info.name));
        }
        log.set_chef(&info.name);
        let version = cut_chef_text(&info.name, "version", info.version, MAX_VERSION_CHARS);
        let about = cut_chef_text(
            &info.name,
            "description",
            info.description,
            MAX_DESCRIPTION_CHARS,
        );
        let description = ChefDescription {
            name: info.name,
            description: about,
            version,
            drivers: DriverSet {
                packet: info.drivers.contains(bindings::Drivers::PACKET),
                interval: info.drivers.contains(bindings::Drivers::INTERVAL),
            },
            interest: distinct_interest(info.interest)?,
            batch_form: info.batch_form,
            api: pre.api(),
            stateful: live.state.is_some(),
            packed_slots: live.packed_json.is_some() || live.packed_json_bytes.is_some(),
            stream_verdicts: live.stream_verdicts.is_some(),
        };
        Ok(LoadedChef {
            description,
            source,
            pre,
            engine: engine.clone(),
            limits: limits.clone(),
            log,
            env,
            live: Some(live),
            health: Health::default(),
            generic_lowering: false,
            warnings: OutputWarnings::default(),
            provenance: super::Provenance::default(),
            stats: ChefStats::default(),
            output_budget: super::output_budget::OutputBudget::new(
                limits.max_output_bytes_per_call,
                limits.max_output_bytes_per_sec,
            ),
            interval_memo: dumpling::PayloadMemo::default(),
            slots: Slots::new(limits.max_output_bytes_per_call, limits.max_dumpling_bytes),
            use_interval_same: true,
            merged_calls: 1,
            last_call_ns: 0,
            envelope_head: None,
        })
    }

    /// [`dumpling::wrap_checked`] for one of this chef's payloads: checked, wrapped in its
    /// envelope, and the message checked against the hub's limits. An interval payload
    /// byte-identical to the chef's previous one (a table that did not change since the
    /// last poke) is wrapped from what checking it gave last time
    /// ([`dumpling::PayloadMemo`]): the same result, without a second check. The chef and
    /// kitchen names in the envelope are written once ([`dumpling::EnvelopeHead`]).
    pub fn wrap_payload(
        &mut self,
        kitchen: Option<&str>,
        creation_time: f64,
        driver: dumpling::Driver,
        payload: ChefText,
    ) -> Result<String, dumpling::WrapError> {
        let name = self.description.name.as_str();
        let head = match &mut self.envelope_head {
            Some(head) if head.is_for(name, kitchen) => head,
            slot => slot.insert(dumpling::EnvelopeHead::new(name, kitchen)),
        };
        match (driver, payload) {
            // Only a loan of this chef's memo is a `Repeat`.
            (_, ChefText::Repeat(lent)) => {
                self.interval_memo
                    .wrap_repeat(head, creation_time, driver, lent)
            }
            (dumpling::Driver::Interval, ChefText::Text(payload)) => {
                self.interval_memo
                    .wrap(head, creation_time, driver, payload)
            }
            (_, ChefText::Text(payload)) => {
                dumpling::wrap_checked_with(head, creation_time, driver, &payload)
            }
        }
    }

    /// [`Self::wrap_payload`] for the payload at position `k` of its last poke's answer
    /// ([`Self::on_interval_payloads`]): a chef answering through `interval-same` has each
    /// position's payload wrapped through that position's memo (a `same` resolved to the
    /// payload kept there, a text compared with the previous payload there), and what came
    /// of it recorded for its next answer; any other chef's as [`Self::wrap_payload`].
    pub fn wrap_interval(
        &mut self,
        k: usize,
        kitchen: Option<&str>,
        creation_time: f64,
        payload: IntervalText,
    ) -> Result<String, dumpling::WrapError> {
        let driver = dumpling::Driver::Interval;
        if !self.slots.active() {
            return match payload {
                IntervalText::Text(t) => self.wrap_payload(kitchen, creation_time, driver, t),
                // Only an `interval-same` answer has these.
                IntervalText::Kept(_) | IntervalText::Unresolved => Err(no_payload()),
            };
        }
        let name = self.description.name.as_str();
        let head = match &mut self.envelope_head {
            Some(head) if head.is_for(name, kitchen) => head,
            slot => slot.insert(dumpling::EnvelopeHead::new(name, kitchen)),
        };
        let Some(memo) = self.slots.memo(k) else {
            return Err(no_payload());
        };
        let wrapped = match payload {
            IntervalText::Text(t) => memo.wrap(head, creation_time, driver, t.into_string()),
            IntervalText::Kept(_) => memo.wrap_held(head, creation_time, driver),
            IntervalText::Unresolved => Err(no_payload()),
        };
        let outcome = match wrapped {
            Ok(_) => Outcome::Accepted,
            Err(_) => Outcome::Refused,
        };
        self.slots.settle(k, outcome);
        wrapped
    }

    /// The payload at position `k` of its last poke's answer was refused before its check:
    /// for an output budget (`budget`: kept, unchecked, for a `same` in the next answer,
    /// within the bound) or as too large (not kept).
    pub fn refuse_interval(&mut self, k: usize, payload: IntervalText, budget: bool) {
        if !self.slots.active() {
            return;
        }
        if budget {
            if let (IntervalText::Text(t), Some(memo)) = (payload, self.slots.memo(k)) {
                memo.hold(t.into_string());
            }
            self.slots.settle(k, Outcome::Held);
        } else {
            self.slots.settle(k, Outcome::Refused);
        }
    }

    /// Its last poke's answer is decided: what it kept becomes what its next answer's
    /// `same` may name.
    pub fn finish_interval(&mut self) {
        self.slots.finish();
    }

    /// Call `interval-same` when the chef exports it (the default), or ignore it and call
    /// the handler's `on-interval` (to compare the two). What it keeps is left as it is:
    /// the chef's previous `interval-same` answer is still its previous one (a chef that
    /// remembers what it sent, as the Rust SDK does, may name it after a switch back).
    pub fn set_interval_same(&mut self, on: bool) {
        self.use_interval_same = on;
    }

    /// Whether its pokes are answered through `interval-same` (it exports it, not
    /// ignored).
    pub fn answers_same(&self) -> bool {
        self.use_interval_same
            && self
                .live
                .as_ref()
                .is_some_and(|l| l.interval_same.is_some())
    }

    /// Bytes of payload it keeps for its next `interval-same` answer.
    pub fn kept_interval_bytes(&self) -> u64 {
        self.slots.kept_bytes()
    }

    /// Its envelope head for dumplings made in `kitchen`, taken out (made afresh when it
    /// has none for that kitchen); [`Self::return_envelope_head`] gives it back.
    pub fn take_envelope_head(&mut self, kitchen: Option<&str>) -> dumpling::EnvelopeHead {
        let name = self.description.name.as_str();
        match self.envelope_head.take() {
            Some(head) if head.is_for(name, kitchen) => head,
            _ => dumpling::EnvelopeHead::new(name, kitchen),
        }
    }

    /// Give back the head [`Self::take_envelope_head`] took.
    pub fn return_envelope_head(&mut self, head: dumpling::EnvelopeHead) {
        self.envelope_head = Some(head);
    }

    /// Its component's SHA-256 and signing key id.
    pub fn provenance(&self) -> &super::Provenance {
        &self.provenance
    }

    pub(crate) fn set_provenance(&mut self, p: super::Provenance) {
        self.provenance = p;
    }

    /// What the chef said about itself.
    pub fn description(&self) -> &ChefDescription {
        &self.description
    }

    /// The chef's name (`metadata.chef`).
    pub fn name(&self) -> &str {
        &self.description.name
    }

    /// Where the chef came from.
    pub fn source(&self) -> &ChefSource {
        &self.source
    }

    /// The limits this chef runs under.
    pub fn limits(&self) -> &ChefLimits {
        &self.limits
    }

    /// True once the chef failed too often and is no longer called.
    pub fn is_quarantined(&self) -> bool {
        self.health.is_quarantined()
    }

    /// Linear memory its current instance holds, in bytes (0 between a failure and the
    /// re-instantiation).
    pub fn memory_bytes(&self) -> u64 {
        self.live
            .as_ref()
            .map_or(0, |l| l.store.data().limiter.charged())
    }

    /// Lower `on-packets`, `on-flow-events` and `on-stream` arguments with wasmtime's
    /// generic code instead of the bulk encoders (slower; for diagnosis and the
    /// differential tests).
    pub fn set_generic_lowering(&mut self, on: bool) {
        self.generic_lowering = on;
    }

    /// Report `n` occurrences of a problem with this chef's output (`kind`: a short label
    /// such as `"over-cap"`; `message` says what happened). The first report of a kind is
    /// logged at WARN at once; later ones at most every [`OUTPUT_WARN_EVERY`], with the
    /// number of occurrences since the previous line (the others go to DEBUG). `message` is
    /// formatted only when a line is written: a flooding chef's refusals cost a count each.
    pub fn warn_output(&mut self, kind: &'static str, n: u64, message: std::fmt::Arguments<'_>) {
        let chef = self.description.name.as_str();
        let now = Instant::now();
        let kinds = &mut self.warnings.kinds;
        match kinds.iter_mut().find(|(k, _, _)| *k == kind) {
            None => {
                kinds.push((kind, now, 0));
                tracing::warn!(chef, kind, occurrences = n, "{message}");
            }
            Some((_, last, pending)) => {
                *pending += n;
                if now.duration_since(*last) >= OUTPUT_WARN_EVERY {
                    tracing::warn!(
                        chef,
                        kind,
                        since_last_report = *pending,
                        "{message} ({} times since the last report {:.0?} ago)",
                        *pending,
                        now.duration_since(*last)
                    );
                    *last = now;
                    *pending = 0;
                } else {
                    tracing::debug!(chef, kind, occurrences = n, "{message}");
                }
            }
        }
    }

    /// The next call stands for `n` packet calls that a replay window merged into one
    /// (`crate::dispatch::window`): its deadline is `n` times the per-call deadline, the
    /// sum of what the calls it replaces had, so a chef whose every call fit its deadline
    /// does not time out because its calls were merged. Applies to the next call only.
    pub fn set_merged_calls(&mut self, n: u32) {
        self.merged_calls = n;
    }

    /// How long its last call took (wall clock, ns; 0 when it was skipped).
    pub fn last_call_ns(&self) -> u64 {
        self.last_call_ns
    }

    /// The chef contract this chef was built against.
    pub fn api(&self) -> ChefApi {
        self.description.api
    }

    /// Call `on-packets`. `now_ns` is the kitchen's clock (for restart backoff).
    ///
    /// A 0.1 chef gets the same records lowered in its own layout (see `api`): no copy,
    /// no conversion; its generic-lowering diagnostic is not available (bulk lowering).
    pub fn on_packets(
        &mut self,
        packets: &[WirePacket],
        arena: &[u8],
        now_ns: u64,
    ) -> Result<Vec<PacketDumpling>, CallError> {
        self.packets_call(packets, arena, now_ns)
    }

    /// [`Self::on_packets`], its answer decided into `intake` where it lies in the chef's
    /// memory (see [`packet_answer`]).
    pub fn take_packets(
        &mut self,
        packets: &[WirePacket],
        arena: &[u8],
        now_ns: u64,
        intake: &mut Intake,
    ) -> Result<(), CallError> {
        self.with_intake(intake, |chef| {
            chef.packets_call::<PacketAnswer>(packets, arena, now_ns)
        })
    }

    fn packets_call<R: Answer>(
        &mut self,
        packets: &[WirePacket],
        arena: &[u8],
        now_ns: u64,
    ) -> Result<R, CallError> {
        let generic = self.generic_lowering;
        let out = self.call(CallKind::Packets, now_ns, |live| {
            let v0_2 = match live.chef.v0_2() {
                Some(c) => c,
                None => {
                    let packets = WirePacketV01::slice(packets);
                    let (out,) = on_packets_v0_1_typed::<R>(live.on_packets)
                        .call(&mut live.store, (packets, arena))?;
                    return Ok(out);
                }
            };
            if generic {
                let plain: Vec<Packet> = packets.iter().map(|p| p.0).collect();
                return v0_2
                    .netdumplings_chef_handler()
                    .call_on_packets(&mut live.store, &plain, arena)
                    .map(R::from_vec);
            }
            let (out,) =
                on_packets_typed::<R>(live.on_packets).call(&mut live.store, (packets, arena))?;
            Ok(out)
        })?;
        self.stats.packet_calls += 1;
        self.stats.packets += packets.len() as u64;
        Ok(out)
    }

    /// Make a call whose `list<packet-dumpling>` is decided into `intake` (lent to this
    /// thread's lift for the call; see [`packet_answer`]). A failed call leaves no
    /// verdicts and the budget as it was (a post-return that traps after the lift decided
    /// fails the call, as it did when the lane decided afterwards).
    fn with_intake(
        &mut self,
        intake: &mut Intake,
        call: impl FnOnce(&mut Self) -> Result<PacketAnswer, CallError>,
    ) -> Result<(), CallError> {
        let budget = intake.budget.clone();
        intake.verdicts.clear();
        intake.lifted = None;
        intake.wrap_ns = 0;
        packet_answer::lend(std::mem::take(intake));
        let result = call(self);
        *intake = packet_answer::take_back().unwrap_or_default();
        match result {
            Ok(PacketAnswer::Taken) => {
                // Checking and wrapping kept payloads is the kitchen's work, as when the
                // lane did it after the call: not the chef's call time.
                let wrap = intake.wrap_ns;
                self.last_call_ns = self.last_call_ns.saturating_sub(wrap);
                self.stats.busy_ns = self.stats.busy_ns.saturating_sub(wrap);
                Ok(())
            }
            Ok(PacketAnswer::Lifted(out)) => {
                // Decided by the lane after the call (`Intake::settle`), which has the items'
                // times if they were not gathered before it.
                intake.lifted = Some(out);
                Ok(())
            }
            Ok(PacketAnswer::Split(out, unkept)) => {
                intake.lifted = Some(out);
                intake.unkept = unkept;
                Ok(())
            }
            Err(e) => {
                intake.verdicts.clear();
                intake.budget = budget;
                Err(e)
            }
        }
    }

    /// Call `on-packed` (0.2 chefs whose `batch-form` is `packed`): `headers` are the
    /// packed records of `packets` packet records (for the counters), `arena` their bytes.
    /// A 0.1 chef is never called (it has no `on-packed`): `Ok(vec![])`.
    pub fn on_packed(
        &mut self,
        headers: &[u8],
        arena: &[u8],
        packets: usize,
        now_ns: u64,
    ) -> Result<Vec<PacketDumpling>, CallError> {
        self.packed_call(headers, arena, packets, now_ns)
    }

    /// [`Self::on_packed`], its answer decided into `intake` (see [`Self::take_packets`]).
    pub fn take_packed(
        &mut self,
        headers: &[u8],
        arena: &[u8],
        packets: usize,
        now_ns: u64,
        intake: &mut Intake,
    ) -> Result<(), CallError> {
        self.with_intake(intake, |chef| {
            chef.packed_call::<PacketAnswer>(headers, arena, packets, now_ns)
        })
    }

    fn packed_call<R: Answer>(
        &mut self,
        headers: &[u8],
        arena: &[u8],
        packets: usize,
        now_ns: u64,
    ) -> Result<R, CallError> {
        if self.api() == ChefApi::V0_1 {
            return Ok(R::from_vec(Vec::new()));
        }
        // What a call (or each call a merged one stands for) may send; more pairs are
        // counted, not copied (`packed_json::Split`).
        let keep = self
            .limits
            .max_dumplings_per_call
            .saturating_mul(self.merged_calls.max(1) as usize);
        let (out, fault) = self.call(CallKind::Packets, now_ns, |live| {
            if let Some(f) = live.packed_json_bytes {
                // As below, lifted as an owned `Vec<u8>` (one copy) before post-return.
                let typed = f.typed::<(&[u8], &[u8]), (Vec<u8>,)>(&live.store)?;
                let (bytes,) = typed.call(&mut live.store, (headers, arena))?;
                let split = packed_json::split_bytes(&bytes, keep);
                return Ok((
                    R::from_split(split.dumplings, split.unkept),
                    split.fault.map(|f| (packed_json::BYTES_EXPORT, f)),
                ));
            }
            if let Some(f) = live.packed_json {
                // Typed per call: comparing (list<u8>, list<u8>) -> string is a few
                // compares, unlike the `packet` record of `on-packets`. Lifted as a `String`
                // (copied out during the call): `call` runs the guest's post-return, which
                // frees the text, before a `WasmStr` could be read.
                let typed = f.typed::<(&[u8], &[u8]), (String,)>(&live.store)?;
                let (text,) = typed.call(&mut live.store, (headers, arena))?;
                let split = packed_json::split(&text, keep);
                return Ok((
                    R::from_split(split.dumplings, split.unkept),
                    split.fault.map(|f| (packed_json::EXPORT, f)),
                ));
            }
            match live.on_packed {
                Some(f) => {
                    let (out,) = on_packed_typed::<R>(f).call(&mut live.store, (headers, arena))?;
                    Ok((out, None))
                }
                None => Ok((R::from_vec(Vec::new()), None)),
            }
        })?;
        if let Some((export, fault)) = fault {
            // The pairs before the fault are kept; the rest of the answer is one invalid
            // output (the chef's SDK wrote something that is not the agreed form).
            self.stats.undecodable += 1;
            self.warn_output(
                "invalid",
                1,
                format_args!("dropped the rest of a {export} answer: {fault}"),
            );
        }
        self.stats.packet_calls += 1;
        self.stats.packets += packets as u64;
        Ok(out)
    }

    /// Call `on-flow-events` (0.2 chefs; same deadline, fuel, memory and output budget as
    /// `on-packets`, and the same failure handling). A 0.1 chef is never called: `Ok(vec![])`.
    pub fn on_flow_events(
        &mut self,
        events: &[FlowEvent],
        now_ns: u64,
    ) -> Result<Vec<PacketDumpling>, CallError> {
        self.flow_events_call(events, now_ns)
    }

    /// [`Self::on_flow_events`], its answer decided into `intake` (see
    /// [`Self::take_packets`]).
    pub fn take_flow_events(
        &mut self,
        events: &[FlowEvent],
        now_ns: u64,
        intake: &mut Intake,
    ) -> Result<(), CallError> {
        self.with_intake(intake, |chef| {
            chef.flow_events_call::<PacketAnswer>(events, now_ns)
        })
    }

    fn flow_events_call<R: Answer>(
        &mut self,
        events: &[FlowEvent],
        now_ns: u64,
    ) -> Result<R, CallError> {
        if self.api() == ChefApi::V0_1 {
            return Ok(R::from_vec(Vec::new()));
        }
        let generic = self.generic_lowering;
        let out = self.call(CallKind::FlowEvents, now_ns, |live| {
            match (live.chef.v0_2(), live.flow_funcs) {
                (Some(c), _) if generic => c
                    .netdumplings_chef_handler()
                    .call_on_flow_events(&mut live.store, events)
                    .map(R::from_vec),
                (Some(_), Some((f, _))) => {
                    let (out,) = on_flow_events_typed::<R>(f)
                        .call(&mut live.store, (WireFlowEvent::slice(events),))?;
                    Ok(out)
                }
                _ => Ok(R::from_vec(Vec::new())),
            }
        })?;
        self.stats.flow_event_calls += 1;
        Ok(out)
    }

    /// Call `on-stream` (0.2 chefs; as [`Self::on_flow_events`]): the dumplings, and the
    /// indices into `chunks` of the chunks whose direction the chef is done with (only from
    /// a chef exporting `stream-verdicts`; unchecked here: the lane bounds and checks them).
    /// A 0.1 chef is never called: nothing.
    pub fn on_stream(
        &mut self,
        chunks: &[StreamChunk],
        arena: &[u8],
        now_ns: u64,
    ) -> Result<(Vec<PacketDumpling>, Vec<u32>), CallError> {
        self.stream_call(chunks, arena, now_ns)
    }

    /// [`Self::on_stream`], its answer decided into `intake` (see [`Self::take_packets`]);
    /// the indices of the chunks whose direction the chef gave up (only from a chef
    /// exporting `stream-verdicts`; unchecked here: the lane bounds and checks them).
    pub fn take_stream(
        &mut self,
        chunks: &[StreamChunk],
        arena: &[u8],
        now_ns: u64,
        intake: &mut Intake,
    ) -> Result<Vec<u32>, CallError> {
        let mut done = Vec::new();
        self.with_intake(intake, |chef| {
            let (answer, given_up) = chef.stream_call::<PacketAnswer>(chunks, arena, now_ns)?;
            done = given_up;
            Ok(answer)
        })?;
        Ok(done)
    }

    fn stream_call<R: Answer>(
        &mut self,
        chunks: &[StreamChunk],
        arena: &[u8],
        now_ns: u64,
    ) -> Result<(R, Vec<u32>), CallError> {
        if self.api() == ChefApi::V0_1 {
            return Ok((R::from_vec(Vec::new()), Vec::new()));
        }
        let generic = self.generic_lowering;
        let out = self.call(CallKind::Stream, now_ns, |live| {
            match (live.chef.v0_2(), live.flow_funcs, live.stream_verdicts) {
                (Some(c), _, _) if generic => c
                    .netdumplings_chef_handler()
                    .call_on_stream(&mut live.store, chunks, arena)
                    .map(|out| (R::from_vec(out), Vec::new())),
                (Some(_), _, Some(f)) => {
                    // The index list is lifted whole (bounded by the chef's own memory, as
                    // its dumplings are); the lane reads at most `chunks.len()` of it.
                    let (out,) = on_stream_verdicts_typed::<R>(f)
                        .call(&mut live.store, (WireStreamChunk::slice(chunks), arena))?;
                    Ok(out)
                }
                (Some(_), Some((_, f)), None) => {
                    let (out,) = on_stream_typed::<R>(f)
                        .call(&mut live.store, (WireStreamChunk::slice(chunks), arena))?;
                    Ok((out, Vec::new()))
                }
                _ => Ok((R::from_vec(Vec::new()), Vec::new())),
            }
        })?;
        self.stats.stream_calls += 1;
        Ok(out)
    }

    /// Call `state.snapshot` on the running instance (see `chef_host::state`): `Ok(Err(len))`
    /// when the snapshot is longer than `max_bytes` (it is not copied). A failed call is
    /// handled like any other (the instance is dropped and counted).
    pub(crate) fn call_snapshot(
        &mut self,
        max_bytes: usize,
        now_ns: u64,
    ) -> Result<Result<Vec<u8>, usize>, CallError> {
        let Some((snapshot, _)) = self.live.as_ref().and_then(|l| l.state) else {
            return Err(CallError::BackingOff);
        };
        self.call(CallKind::Snapshot, now_ns, |live| {
            // Lifted as a `Vec` during the call: wasmtime's `call` runs the guest's
            // post-return, which frees the list, before a `WasmList` could be read (a JS
            // chef's allocator reused it at once: its restore then saw garbage). The copy is
            // bounded by the chef's linear memory (`--chef-memory-mib`); the cap is applied
            // to the copy.
            let typed = snapshot.typed::<(), (Vec<u8>,)>(&live.store)?;
            let (bytes,) = typed.call(&mut live.store, ())?;
            if bytes.len() > max_bytes {
                return Ok(Err(bytes.len()));
            }
            Ok(Ok(bytes))
        })
    }

    /// Call `state.restore` on the running instance: `Ok(Err(reason))` when the chef
    /// refused the state.
    pub(crate) fn call_restore(
        &mut self,
        state: &[u8],
        now_ns: u64,
    ) -> Result<Result<(), String>, CallError> {
        let Some((_, restore)) = self.live.as_ref().and_then(|l| l.state) else {
            return Err(CallError::BackingOff);
        };
        self.call(CallKind::Restore, now_ns, |live| {
            let typed = restore.typed::<(&[u8],), (Result<(), String>,)>(&live.store)?;
            let (answer,) = typed.call(&mut live.store, (state,))?;
            Ok(answer)
        })
    }

    /// Take over what the kitchen keeps about `old`, the version this one replaces (hot
    /// reload): its counters (so totals, `/metrics` and the exit summary count the chef,
    /// not the version: they never go back to zero) and its failure history
    /// ([`Health::inherited_from`]). Called before the state is carried, so a failing
    /// restore counts too.
    ///
    /// A new version of a quarantined chef drops the instance it was loaded with: its
    /// first call restarts it after a wait ([`Health::inherited_from`]; see
    /// [`LoadedChef::starts_at_ns`]).
    pub fn inherit_from(&mut self, old: &LoadedChef) {
        self.stats = old.stats.clone();
        self.health = Health::inherited_from(&old.health);
        if self.health.starts_at_ns().is_some() {
            self.live = None;
            self.slots.clear();
        }
    }

    /// For a new version of a quarantined chef: the kitchen time (ns) before which it is
    /// not called.
    pub fn starts_at_ns(&self) -> Option<u64> {
        self.health.starts_at_ns()
    }

    /// Replace the running instance by a fresh one (after a refused or failed restore:
    /// the chef must not run on whatever the restore left half-done). Not a restart: not
    /// counted as one.
    pub(crate) fn fresh_instance(&mut self) -> Result<(), CallError> {
        self.live = None;
        self.slots.clear();
        let (live, info) =
            instantiate(&self.engine, &self.pre, &self.limits, &self.log, &self.env)?;
        if info.name != self.description.name {
            return Err(CallError::InvalidOutput(format!(
                "describe() changed the chef's name to {:?}",
                info.name
            )));
        }
        self.live = Some(live);
        Ok(())
    }

    /// True while an instance is running (not between a failure and its restart).
    pub fn is_live(&self) -> bool {
        self.live.is_some() && !self.health.is_quarantined()
    }

    /// Call `on-interval`. A chef answering through `interval-same` has each `same`
    /// resolved to the text it names (a copy; what it keeps is bounded as in the lane).
    pub fn on_interval(&mut self, now_ns: u64, interval_ns: u64) -> Result<Vec<String>, CallError> {
        let out = self.interval_call(now_ns, interval_ns, false)?;
        if !self.slots.active() {
            return Ok(out
                .into_iter()
                .filter_map(|t| match t {
                    IntervalText::Text(t) => Some(t.into_string()),
                    IntervalText::Kept(_) | IntervalText::Unresolved => None,
                })
                .collect());
        }
        let cap = self.limits.max_dumplings_per_call;
        let mut texts = Vec::with_capacity(out.len());
        for (k, t) in out.into_iter().enumerate().take(cap) {
            let Some(memo) = self.slots.memo(k) else {
                continue;
            };
            let text = match t {
                IntervalText::Text(t) => {
                    let text = t.into_string();
                    memo.hold(text.clone());
                    text
                }
                IntervalText::Kept(_) => memo.held().unwrap_or_default().to_owned(),
                IntervalText::Unresolved => continue,
            };
            self.slots.settle(k, Outcome::Held);
            texts.push(text);
        }
        self.slots.finish();
        Ok(texts)
    }

    /// Call `on-interval` for [`Self::wrap_interval`]: a payload byte-identical to the
    /// chef's last checked one comes back as that payload ([`ChefText::Repeat`]), found
    /// equal in the chef's memory, neither copied nor checked again. A chef exporting
    /// `interval-same` has its `same` resolved to the payloads it kept
    /// ([`IntervalText::Kept`]; see `interval_same`): the lane then decides the answer
    /// position by position ([`Self::wrap_interval`], [`Self::refuse_interval`]) and
    /// ends it with [`Self::finish_interval`].
    pub fn on_interval_payloads(
        &mut self,
        now_ns: u64,
        interval_ns: u64,
    ) -> Result<Vec<IntervalText>, CallError> {
        self.interval_call(now_ns, interval_ns, true)
    }

    fn interval_call(
        &mut self,
        now_ns: u64,
        interval_ns: u64,
        lend: bool,
    ) -> Result<Vec<IntervalText>, CallError> {
        // An answer left undecided (a caller outside the lane) is finished as it stands.
        self.slots.finish();
        let use_same = self.use_interval_same;
        // A chef answering `same` keeps its payloads by position: no loan (its texts are
        // compared with the payload at their position when wrapped).
        let loan = if lend && !self.answers_same() {
            self.interval_memo.lend()
        } else {
            None
        };
        super::chef_text::lend(loan);
        let result = self.call(CallKind::Interval, now_ns, |live| {
            if let (Some(f), true) = (live.interval_same, use_same) {
                let (answer,) = f.call(&mut live.store, (now_ns, interval_ns))?;
                return Ok(IntervalAnswer::Items(answer));
            }
            if let Some(f) = live.interval_json_bytes {
                // Lifted as owned `Vec`s (copied out during the call, before post-return).
                let typed = f.typed::<(u64, u64), (Vec<Vec<u8>>,)>(&live.store)?;
                let (answer,) = typed.call(&mut live.store, (now_ns, interval_ns))?;
                let (texts, not_utf8) = interval_bytes::payloads(answer);
                return Ok(IntervalAnswer::Texts(
                    texts.into_iter().map(ChefText::Text).collect(),
                    not_utf8,
                ));
            }
            if let Some(f) = live.on_interval {
                let (answer,) = f.call(&mut live.store, (now_ns, interval_ns))?;
                return Ok(IntervalAnswer::Texts(answer, 0));
            }
            let out = live
                .chef
                .on_interval(&mut live.store, now_ns, interval_ns)?;
            Ok(IntervalAnswer::Texts(
                out.into_iter().map(ChefText::Text).collect(),
                0,
            ))
        });
        // Whatever the call did: a loan no string took goes back to the memo.
        if let Some(unused) = super::chef_text::take_loan() {
            self.interval_memo.restore(unused);
        }
        let out = match result? {
            IntervalAnswer::Texts(texts, not_utf8) => {
                if not_utf8 > 0 {
                    self.stats.undecodable += not_utf8;
                    self.warn_output(
                        "invalid",
                        not_utf8,
                        format_args!(
                            "dropped {not_utf8} {} payload(s) that are not UTF-8",
                            interval_bytes::EXPORT
                        ),
                    );
                }
                texts.into_iter().map(IntervalText::Text).collect()
            }
            IntervalAnswer::Items(items) => {
                let (out, unresolved) = self.slots.start(items, self.limits.max_dumplings_per_call);
                if unresolved > 0 {
                    self.stats.undecodable += unresolved;
                    self.stats.same_unresolved += unresolved;
                    self.warn_output(
                        "same-unresolved",
                        unresolved,
                        format_args!(
                            "dropped {unresolved} {} `same` payload(s) that name no payload \
                             kept from this instance's previous answer (none is kept across \
                             a restart or reload; an index past it, or a payload refused \
                             as invalid or too large, names nothing)",
                            interval_same::EXPORT
                        ),
                    );
                }
                out
            }
        };
        self.stats.interval_calls += 1;
        Ok(out)
    }

    fn call<R>(
        &mut self,
        kind: CallKind,
        now_ns: u64,
        f: impl FnOnce(&mut Live) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        self.output_budget.start_call();
        let merged = std::mem::replace(&mut self.merged_calls, 1).max(1);
        self.last_call_ns = 0;
        if let Err(e) = self.ensure_live(kind, now_ns) {
            self.stats.skipped += 1;
            return Err(e);
        }
        let Some(live) = self.live.as_mut() else {
            self.stats.skipped += 1;
            return Err(CallError::BackingOff);
        };
        // One clock read starts the call: its timing, its deadline and, in a replay, the
        // chef's monotonic clock (each read is ~35 ns on this VM's clock source; a call
        // that does nothing costs ~900 ns in all, `nd-kitchen-bench --call-cost`).
        let started = Instant::now();
        if let Environment::Replay {
            clock, call_start, ..
        } = &self.env
        {
            clock.store(now_ns, Ordering::Relaxed);
            let since = started.saturating_duration_since(process_epoch());
            call_start.store(since.as_nanos() as u64, Ordering::Relaxed);
        }
        live.store.data_mut().limiter.hit_limit = false;
        live.store.data_mut().limiter.hit_kitchen_budget = false;
        let budget = if live.fresh && self.health.grace_next() {
            self.limits
                .deadline
                .saturating_mul(self.limits.first_call_grace.max(1))
        } else {
            self.limits.deadline
        };
        // A merged call has the deadline of every call it replaces.
        let budget = budget.saturating_mul(merged);
        live.fresh = false;
        // The first check comes when the budget has passed in wall time: the chef cannot
        // have used more CPU time than that (`call_budget.rs`).
        live.store.set_epoch_deadline(deadline_ticks(budget));
        let cpu_started = super::cpu_time::enabled()
            .then(super::cpu_time::thread_cpu_ns)
            .flatten();
        live.store.data_mut().call = Some(CallBudget::start(budget, started));
        let result = f(live);
        let wall_ceiling = live
            .store
            .data_mut()
            .call
            .take()
            .is_some_and(|c| c.ceiling_hit());
        let took = started.elapsed().as_nanos() as u64;
        self.last_call_ns = took;
        self.stats.busy_ns += took;
        if kind.is_interval_like() {
            self.stats.interval_ns += took;
        }
        if let Some(a) = cpu_started {
            let b = super::cpu_time::thread_cpu_ns().unwrap_or(a);
            self.stats.busy_cpu_ns += b.saturating_sub(a);
            if kind.is_interval_like() {
                self.stats.interval_cpu_ns += b.saturating_sub(a);
            }
        }
        match result {
            Ok(r) => {
                self.health.succeeded(kind);
                Ok(r)
            }
            Err(e) => {
                let l = &live.store.data().limiter;
                let hit = (l.hit_limit, l.hit_kitchen_budget);
                // The deadline this call had (a first call gets `first_call_grace` x it).
                let err = classify(&e, hit, &self.limits, budget, wall_ceiling);
                Err(self.fail(err, kind, now_ns))
            }
        }
    }

    fn ensure_live(&mut self, kind: CallKind, now_ns: u64) -> Result<(), CallError> {
        if self.health.is_quarantined() || self.live.is_none() {
            self.health.may_restart(now_ns)?;
        }
        if self.live.is_some() {
            return Ok(());
        }
        match instantiate(&self.engine, &self.pre, &self.limits, &self.log, &self.env) {
            Ok((live, info)) if info.name == self.description.name => {
                self.live = Some(live);
                self.health.restarted();
                self.stats.restarts += 1;
                tracing::info!(chef = %self.description.name, "chef restarted (fresh state)");
                Ok(())
            }
            Ok((_, info)) => Err(self.fail(
                CallError::InvalidOutput(format!(
                    "describe() changed the chef's name to {:?} on restart",
                    info.name
                )),
                kind,
                now_ns,
            )),
            Err(e) => Err(self.fail(e, kind, now_ns)),
        }
    }

    /// Record a failure: drop the instance, count, log, schedule the restart or quarantine.
    fn fail(&mut self, err: CallError, kind: CallKind, now_ns: u64) -> CallError {
        self.live = None;
        // The instance's kept payloads go with it: a `same` from its successor names nothing.
        self.slots.clear();
        match &err {
            CallError::Timeout { .. } => self.stats.timeouts += 1,
            CallError::MemoryLimit { .. } | CallError::KitchenMemory { .. } => {
                self.stats.memory_limits += 1
            }
            _ => self.stats.traps += 1,
        }
        self.health
            .failed(&err, kind, now_ns, &self.limits, &self.description.name);
        err
    }
}

/// Most distinct link types an interest may list (libpcap defines about 300).
pub const MAX_INTEREST_LINK_TYPES: usize = 1024;

/// A chef's interest with each list sorted and its repeats removed: what it means is the
/// same (every list is a set), and what the kitchen keeps is bounded by the values a list
/// can hold (65 536 ports, four protocols, [`MAX_INTEREST_LINK_TYPES`] link types), not by
/// what `describe` returned (a million repeated ports were kept, and `nd-sniff -l` printed
/// them on a 23 MB line).
fn distinct_interest(mut interest: bindings::Interest) -> Result<bindings::Interest, LoadError> {
    fn distinct<T: Ord>(list: &mut Vec<T>) {
        list.sort_unstable();
        list.dedup();
        list.shrink_to_fit();
    }
    distinct(&mut interest.link_types);
    distinct(&mut interest.ports);
    interest.network.sort_unstable_by_key(|n| *n as u8);
    interest.network.dedup_by_key(|n| *n as u8);
    interest.network.shrink_to_fit();
    interest.transport.sort_unstable_by_key(|t| *t as u8);
    interest.transport.dedup_by_key(|t| *t as u8);
    interest.transport.shrink_to_fit();
    if interest.link_types.len() > MAX_INTEREST_LINK_TYPES {
        return Err(LoadError::TooManyLinkTypes(interest.link_types.len()));
    }
    Ok(interest)
}

/// Instantiate with the init deadline and call `describe`.
fn instantiate(
    engine: &Engine,
    pre: &AnyPre,
    limits: &ChefLimits,
    log: &ChefLog,
    env: &Environment,
) -> Result<(Live, bindings::ChefInfo), CallError> {
    let mut store = Store::new(engine, ChefState::new(limits, log.clone(), env));
    store.limiter(|s| &mut s.limiter);
    // Every deadline of this store is charged in CPU time under a wall-clock ceiling.
    store.epoch_deadline_callback(|mut s| {
        Ok(call_budget::on_epoch_deadline(s.data_mut().call.as_mut()))
    });
    store.set_epoch_deadline(deadline_ticks(limits.init_deadline));
    store.data_mut().call = Some(CallBudget::start(limits.init_deadline, Instant::now()));
    let classify_init = |e: wasmtime::Error, store: &Store<ChefState>| {
        classify(
            &e,
            (
                store.data().limiter.hit_limit,
                store.data().limiter.hit_kitchen_budget,
            ),
            limits,
            limits.init_deadline,
            store.data().call.is_some_and(|c| c.ceiling_hit()),
        )
    };
    let instance = match pre.instance_pre().instantiate(&mut store) {
        Ok(i) => i,
        Err(e) => return Err(classify_init(e, &store)),
    };
    let api = pre.api();
    let chef = match AnyChef::new(api, &mut store, &instance) {
        Ok(c) => c,
        Err(e) => return Err(classify_init(e, &store)),
    };
    let export = api.handler_export();
    let on_packets = instance
        .get_export_index(&mut store, None, export)
        .and_then(|iface| instance.get_export_index(&mut store, Some(&iface), "on-packets"))
        .and_then(|idx| instance.get_func(&mut store, idx))
        .ok_or_else(|| CallError::Trap(format!("{export}#on-packets not found")))?;
    // Type-check once here; every call then uses `on_packets_typed` without re-checking
    // (a `typed()` per call compares the whole `packet` record type, ~10 µs per batch).
    let typed = match api {
        ChefApi::V0_2 => on_packets
            .typed::<(&[WirePacket], &[u8]), (Vec<PacketDumpling>,)>(&store)
            .map(drop),
        ChefApi::V0_1 => on_packets
            .typed::<(&[WirePacketV01], &[u8]), (Vec<PacketDumpling>,)>(&store)
            .map(drop),
    };
    if let Err(e) = typed {
        return Err(CallError::Trap(format!(
            "on-packets has an unexpected type: {e:#}"
        )));
    }
    // `on-flow-events` and `on-stream` (0.2 chefs), type-checked once with the bulk-lowered
    // argument types as `on-packets` is (the handler export has them, or admission failed).
    let flow_funcs = match api {
        ChefApi::V0_1 => None,
        ChefApi::V0_2 => {
            let mut f = |name| {
                instance
                    .get_export_index(&mut store, None, export)
                    .and_then(|iface| instance.get_export_index(&mut store, Some(&iface), name))
                    .and_then(|idx| instance.get_func(&mut store, idx))
                    .ok_or_else(|| CallError::Trap(format!("{export}#{name} not found")))
            };
            let (events, stream) = (f("on-flow-events")?, f("on-stream")?);
            let typed = events
                .typed::<(&[WireFlowEvent],), (Vec<PacketDumpling>,)>(&store)
                .map(drop)
                .and_then(|()| {
                    stream
                        .typed::<(&[WireStreamChunk], &[u8]), (Vec<PacketDumpling>,)>(&store)
                        .map(drop)
                });
            if let Err(e) = typed {
                return Err(CallError::Trap(format!(
                    "on-flow-events or on-stream has an unexpected type: {e:#}"
                )));
            }
            Some((events, stream))
        }
    };
    // The handler's `on-packed` (0.2 chefs), type-checked once as `on-packets` is.
    let on_packed = match api {
        ChefApi::V0_1 => None,
        ChefApi::V0_2 => {
            let f = instance
                .get_export_index(&mut store, None, export)
                .and_then(|iface| instance.get_export_index(&mut store, Some(&iface), "on-packed"))
                .and_then(|idx| instance.get_func(&mut store, idx))
                .ok_or_else(|| CallError::Trap(format!("{export}#on-packed not found")))?;
            if let Err(e) = f.typed::<(&[u8], &[u8]), (Vec<PacketDumpling>,)>(&store) {
                return Err(CallError::Trap(format!(
                    "on-packed has an unexpected type: {e:#}"
                )));
            }
            Some(f)
        }
    };
    // The optional `stream-verdicts.on-stream` (0.2 chefs), type-checked once like the
    // handler's: a chef exporting it with another type is broken, and refused.
    let stream_verdicts = match api {
        ChefApi::V0_1 => None,
        ChefApi::V0_2 => instance
            .get_export_index(&mut store, None, STREAM_VERDICTS_EXPORT)
            .and_then(|iface| instance.get_export_index(&mut store, Some(&iface), "on-stream"))
            .and_then(|idx| instance.get_func(&mut store, idx)),
    };
    if let Some(f) = stream_verdicts {
        if let Err(e) = f.typed::<(&[WireStreamChunk], &[u8]), (StreamAnswer,)>(&store) {
            return Err(CallError::Trap(format!(
                "{STREAM_VERDICTS_EXPORT}#on-stream has an unexpected type: {e:#}"
            )));
        }
    }
    // The optional state export (0.2 chefs): looked up once, typed at the (rare) call.
    let state = match api {
        ChefApi::V0_1 => None,
        ChefApi::V0_2 => instance
            .get_export_index(&mut store, None, bindings::STATE_EXPORT)
            .and_then(|iface| {
                let mut f = |name| {
                    instance
                        .get_export_index(&mut store, Some(&iface), name)
                        .and_then(|idx| instance.get_func(&mut store, idx))
                };
                Some((f("snapshot")?, f("restore")?))
            }),
    };
    // The optional lean answer to `on-packed` (0.2 chefs; typed at each call).
    let mut packed_answer = |export| match api {
        ChefApi::V0_1 => None,
        ChefApi::V0_2 => instance
            .get_export_index(&mut store, None, export)
            .and_then(|iface| instance.get_export_index(&mut store, Some(&iface), "on-packed"))
            .and_then(|idx| instance.get_func(&mut store, idx)),
    };
    let packed_json = packed_answer(packed_json::EXPORT);
    let packed_json_bytes = packed_answer(packed_json::BYTES_EXPORT);
    let interval_json_bytes = match api {
        ChefApi::V0_1 => None,
        ChefApi::V0_2 => instance
            .get_export_index(&mut store, None, interval_bytes::EXPORT)
            .and_then(|iface| instance.get_export_index(&mut store, Some(&iface), "on-interval"))
            .and_then(|idx| instance.get_func(&mut store, idx)),
    };
    // The optional `interval-same.on-interval` (0.2 chefs), type-checked once: a chef
    // exporting it with another type is broken, and refused.
    let interval_same = match api {
        ChefApi::V0_1 => None,
        ChefApi::V0_2 => instance
            .get_export_index(&mut store, None, interval_same::EXPORT)
            .and_then(|iface| instance.get_export_index(&mut store, Some(&iface), "on-interval"))
            .and_then(|idx| instance.get_func(&mut store, idx)),
    };
    let interval_same =
        match interval_same.map(|f| f.typed::<(u64, u64), (Vec<interval_same::Item>,)>(&store)) {
            None => None,
            Some(Ok(f)) => Some(f),
            Some(Err(e)) => {
                return Err(CallError::Trap(format!(
                    "{}#on-interval has an unexpected type: {e:#}",
                    interval_same::EXPORT
                )))
            }
        };
    // Typed once: the handler's `on-interval` (same in 0.1 and 0.2).
    let on_interval = instance
        .get_export_index(&mut store, None, export)
        .and_then(|iface| instance.get_export_index(&mut store, Some(&iface), "on-interval"))
        .and_then(|idx| instance.get_func(&mut store, idx))
        .and_then(|f| f.typed::<(u64, u64), (Vec<ChefText>,)>(&store).ok());
    let info = match chef.describe(&mut store) {
        Ok(i) => i,
        Err(e) => return Err(classify_init(e, &store)),
    };
    store.data_mut().call = None;
    Ok((
        Live {
            store,
            chef,
            on_packets,
            flow_funcs,
            on_packed,
            stream_verdicts,
            state,
            packed_json,
            packed_json_bytes,
            interval_json_bytes,
            on_interval,
            interval_same,
            fresh: true,
        },
        info,
    ))
}

/// The handler's typed `on-interval` export, lifting [`ChefText`]s.
type OnIntervalFunc = wasmtime::component::TypedFunc<(u64, u64), (Vec<ChefText>,)>;

/// The typed `interval-same.on-interval` export, lifting its items (texts as [`ChefText`]).
type OnIntervalSameFunc = wasmtime::component::TypedFunc<(u64, u64), (Vec<interval_same::Item>,)>;

/// An `on-interval` answer as lifted: texts (and how many were dropped as not UTF-8), or
/// `interval-same` items.
enum IntervalAnswer {
    Texts(Vec<ChefText>, u64),
    Items(Vec<interval_same::Item>),
}

/// The error of wrapping a position that holds no payload (never made by the lane, which
/// wraps only what the host resolved).
fn no_payload() -> dumpling::WrapError {
    dumpling::WrapError::Invalid(<serde_json::Error as serde::de::Error>::custom(
        "no interval payload at this position",
    ))
}

/// What a `list<packet-dumpling>` answer is lifted as: wasmtime's own
/// `Vec<PacketDumpling>` (the public `on_*` methods), or [`PacketAnswer`] (decided where it
/// lies; the lanes' `take_*` methods). Both type-check as `list<packet-dumpling>`, so a
/// `Func` checked with one may be called typed with the other.
pub trait Answer: ComponentType + Lift + Send + Sync + 'static {
    /// The answer from dumplings already lifted (the generic-lowering diagnostic, a
    /// `packed-json` split, a chef that is not called).
    fn from_vec(out: Vec<PacketDumpling>) -> Self;

    /// A `packed-json` split: the dumplings kept and how many pairs it held past them.
    fn from_split(out: Vec<PacketDumpling>, unkept: usize) -> Self;
}

impl Answer for Vec<PacketDumpling> {
    fn from_vec(out: Vec<PacketDumpling>) -> Self {
        out
    }

    /// The public `on_*` methods return what was kept (no lane counts the rest).
    fn from_split(out: Vec<PacketDumpling>, _unkept: usize) -> Self {
        out
    }
}

impl Answer for PacketAnswer {
    fn from_vec(out: Vec<PacketDumpling>) -> Self {
        PacketAnswer::Lifted(out)
    }

    fn from_split(out: Vec<PacketDumpling>, unkept: usize) -> Self {
        PacketAnswer::Split(out, unkept)
    }
}

/// The typed `on-packets` export, taking [`WirePacket`]s.
type OnPacketsFunc<'a, R> = wasmtime::component::TypedFunc<(&'a [WirePacket], &'a [u8]), (R,)>;

/// `on-packets` as a typed function taking [`WirePacket`]s.
///
/// A `TypedFunc` cannot be stored with the borrowed parameter types (their lifetimes
/// differ per call), so it is rebuilt per call without re-checking, exactly as the
/// `bindgen!`-generated `call_*` methods do.
fn on_packets_typed<'a, R: Answer>(func: Func) -> OnPacketsFunc<'a, R> {
    // SAFETY: `instantiate` type-checked this very `Func` with
    // `func.typed::<(&[WirePacket], &[u8]), (Vec<PacketDumpling>,)>()` (lifetimes play no
    // part in component type checking; every `Answer` type-checks as
    // `Vec<PacketDumpling>`) and refused the chef if it failed; `Live` keeps the `Func`
    // and the store that owns it together.
    #[allow(unsafe_code)]
    unsafe {
        wasmtime::component::TypedFunc::new_unchecked(func)
    }
}

/// The typed `on-packets` export of a 0.1 chef, taking [`WirePacketV01`]s.
type OnPacketsV01Func<'a, R> =
    wasmtime::component::TypedFunc<(&'a [WirePacketV01], &'a [u8]), (R,)>;

/// `on-packets` of a 0.1 chef as a typed function (see [`on_packets_typed`]).
fn on_packets_v0_1_typed<'a, R: Answer>(func: Func) -> OnPacketsV01Func<'a, R> {
    // SAFETY: `instantiate` type-checked this very `Func` of a 0.1 chef with
    // `func.typed::<(&[WirePacketV01], &[u8]), (Vec<PacketDumpling>,)>()` (every `Answer`
    // type-checks as `Vec<PacketDumpling>`) and refused the chef if it failed; only 0.1
    // chefs (`AnyChef::V0_1`) take this path.
    #[allow(unsafe_code)]
    unsafe {
        wasmtime::component::TypedFunc::new_unchecked(func)
    }
}

/// The typed `on-packed` export, taking the packed records and the arena.
type OnPackedFunc<'a, R> = wasmtime::component::TypedFunc<(&'a [u8], &'a [u8]), (R,)>;

/// `on-packed` as a typed function (see [`on_packets_typed`]).
fn on_packed_typed<'a, R: Answer>(func: Func) -> OnPackedFunc<'a, R> {
    // SAFETY: `instantiate` type-checked this very `Func` of a 0.2 chef with
    // `func.typed::<(&[u8], &[u8]), (Vec<PacketDumpling>,)>()` (every `Answer` type-checks
    // as `Vec<PacketDumpling>`) and refused the chef if it failed; `Live` keeps the `Func`
    // and the store that owns it together.
    #[allow(unsafe_code)]
    unsafe {
        wasmtime::component::TypedFunc::new_unchecked(func)
    }
}

/// The typed `on-flow-events` export, taking [`WireFlowEvent`]s.
type OnFlowEventsFunc<'a, R> = wasmtime::component::TypedFunc<(&'a [WireFlowEvent],), (R,)>;

/// `on-flow-events` as a typed function taking [`WireFlowEvent`]s (see [`on_packets_typed`]).
fn on_flow_events_typed<'a, R: Answer>(func: Func) -> OnFlowEventsFunc<'a, R> {
    // SAFETY: `instantiate` type-checked this very `Func` of a 0.2 chef with
    // `func.typed::<(&[WireFlowEvent],), (Vec<PacketDumpling>,)>()` (every `Answer`
    // type-checks as `Vec<PacketDumpling>`) and refused the chef if it failed; `Live`
    // keeps the `Func` and the store that owns it together.
    #[allow(unsafe_code)]
    unsafe {
        wasmtime::component::TypedFunc::new_unchecked(func)
    }
}

/// The typed `on-stream` export, taking [`WireStreamChunk`]s.
type OnStreamFunc<'a, R> = wasmtime::component::TypedFunc<(&'a [WireStreamChunk], &'a [u8]), (R,)>;

/// `on-stream` as a typed function taking [`WireStreamChunk`]s (see [`on_packets_typed`]).
fn on_stream_typed<'a, R: Answer>(func: Func) -> OnStreamFunc<'a, R> {
    // SAFETY: `instantiate` type-checked this very `Func` of a 0.2 chef with
    // `func.typed::<(&[WireStreamChunk], &[u8]), (Vec<PacketDumpling>,)>()` (every
    // `Answer` type-checks as `Vec<PacketDumpling>`) and refused the chef if it failed;
    // `Live` keeps the `Func` and the store that owns it together.
    #[allow(unsafe_code)]
    unsafe {
        wasmtime::component::TypedFunc::new_unchecked(func)
    }
}

/// The optional export whose `on-stream` also answers the directions a chef is done with
/// (interface `stream-verdicts` of the `stream-chef` world, added within 0.2).
pub const STREAM_VERDICTS_EXPORT: &str = "netdumplings:chef/stream-verdicts@0.2.0";

/// `stream-verdicts.on-stream`'s answer: the dumplings, and indices into the call's chunks.
type StreamAnswer = (Vec<PacketDumpling>, Vec<u32>);

/// The typed `stream-verdicts.on-stream` export, taking [`WireStreamChunk`]s.
type OnStreamVerdictsFunc<'a, R> =
    wasmtime::component::TypedFunc<(&'a [WireStreamChunk], &'a [u8]), ((R, Vec<u32>),)>;

/// `stream-verdicts.on-stream` as a typed function (see [`on_packets_typed`]).
fn on_stream_verdicts_typed<'a, R: Answer>(func: Func) -> OnStreamVerdictsFunc<'a, R> {
    // SAFETY: `instantiate` type-checked this very `Func` with
    // `func.typed::<(&[WireStreamChunk], &[u8]), (StreamAnswer,)>()` (every `Answer`
    // type-checks as `Vec<PacketDumpling>`) and refused the chef if it failed; `Live` keeps
    // the `Func` and the store that owns it together.
    #[allow(unsafe_code)]
    unsafe {
        wasmtime::component::TypedFunc::new_unchecked(func)
    }
}

/// Turn a wasmtime error from a call into a typed failure.
fn classify(
    err: &wasmtime::Error,
    (hit_limit, hit_kitchen_budget): (bool, bool),
    limits: &ChefLimits,
    deadline: Duration,
    wall_ceiling: bool,
) -> CallError {
    if let Some(Trap::Interrupt) = err.downcast_ref::<Trap>() {
        return CallError::Timeout {
            deadline_ms: deadline.as_millis() as u64,
            wall_ceiling,
        };
    }
    if hit_limit && hit_kitchen_budget {
        return CallError::KitchenMemory {
            budget_mib: limits.kitchen_memory.total() >> 20,
        };
    }
    if hit_limit {
        return CallError::MemoryLimit {
            limit_mib: limits.memory_mib(),
        };
    }
    if let Some(exit) = err.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return CallError::Trap(format!("the chef called exit({})", exit.0));
    }
    // `{:#}` carries the whole chain plus a wasm backtrace over many lines; the first
    // line of the trap itself is what an operator needs in a log line.
    let text = match err.downcast_ref::<Trap>() {
        Some(trap) => trap.to_string(),
        None => format!("{err:#}"),
    };
    let first = text.lines().next().unwrap_or("unknown error");
    CallError::Trap(first.chars().take(300).collect())
}

/// Longest `describe().version` kept, in characters (longer ones are cut, with a warning):
/// it travels in every `KitchenStatusChef` dumpling and the hello.
pub const MAX_VERSION_CHARS: usize = 64;
/// Longest `describe().description` kept, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 256;

/// `text` cut to `max` characters (marked with `…`), with one warning naming the chef
/// when it was cut. Control characters are kept here (JSON escapes them in status); every
/// terminal or log print goes through `dumpling::text::escape`.
fn cut_chef_text(chef: &str, field: &'static str, text: String, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text,
        Some((end, _)) => {
            tracing::warn!(
                chef,
                field,
                bytes = text.len(),
                max_chars = max,
                "chef describe() field too long; cut"
            );
            let mut cut = text[..end].to_owned();
            cut.push('…');
            cut
        }
    }
}

/// Chef names: 1-64 of `A-Z a-z 0-9 _ -` (they become `metadata.chef` and `-c` arguments).
pub fn validate_name(name: &str) -> Result<(), LoadError> {
    let bad = |why| {
        Err(LoadError::BadName {
            name: name.chars().take(80).collect(),
            why,
        })
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > 64 {
        return bad("it is longer than 64 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return bad("only letters, digits, '_' and '-' are allowed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chef_names() {
        assert!(validate_name("ARPChef").is_ok());
        assert!(validate_name("dns_lookup-2").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name("has space").is_err());
        assert!(validate_name("ünïcode").is_err());
        assert!(validate_name(&"a".repeat(65)).is_err());
        assert!(validate_name(&"a".repeat(64)).is_ok());
    }

    #[test]
    fn an_interest_keeps_each_value_once_and_lists_a_bounded_number_of_link_types() {
        use bindings::{NetworkProtocol as N, TransportProtocol as T};
        let interest = |link_types: Vec<u32>| bindings::Interest {
            link_types,
            network: vec![N::Ipv4, N::Arp, N::Ipv4, N::Arp],
            transport: vec![T::Udp; 1000],
            ports: (0..1_000_000u32).map(|i| (i % 3) as u16 + 53).collect(),
            flow_events: false,
            stream_bytes: 0,
        };
        let kept = distinct_interest(interest(vec![1, 113, 1, 1])).unwrap();
        assert_eq!(kept.link_types, [1, 113]);
        assert_eq!(kept.ports, [53, 54, 55]);
        assert_eq!(kept.transport.len(), 1);
        assert_eq!(kept.network.len(), 2);
        let too_many = distinct_interest(interest((0..1_000_000).collect()));
        assert!(matches!(
            too_many,
            Err(LoadError::TooManyLinkTypes(1_000_000))
        ));
    }
}
