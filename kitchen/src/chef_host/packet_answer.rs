//! [`PacketAnswer`]: a chef's returned `list<packet-dumpling>` (from `on-packets`,
//! `on-packed`, `on-flow-events`, `on-stream`) taken where it lies in the chef's memory,
//! with the kitchen's caps and output budgets applied before any payload is copied.
//!
//! Why: wasmtime's own lift of `list<packet-dumpling>` copies every payload into its own
//! `String` (malloc, copy, `core::str::from_utf8`) before the kitchen sees the first one.
//! On the high-cardinality corpus TopTalkersChef returns ~1.1 M `flow_ended` dumplings of
//! ~300-440 bytes, and its output budget refuses 631 k of them: each refused one was
//! allocated, copied and checked for nothing. Here the list is read in two passes inside
//! the lift, while the chef's memory is still the answer (wasmtime runs the guest's
//! post-return, which frees it, right after the lift):
//! 1. every record, in order, as wasmtime's `Vec<PacketDumpling>` lift reads it: the
//!    list's bounds, alignment and host-call fuel by wasmtime's own `WasmList` lift, each
//!    string's bounds and fuel by its own `WasmStr` lift; then every payload checked as
//!    UTF-8 where it lies (`simdutf8`; the error is `core::str::from_utf8`'s). The first
//!    failure in list order fails the call with the error wasmtime's lift gave (a string
//!    that is not UTF-8 before a record out of bounds is reported first, as it was), and
//!    nothing is taken from the budget. Refused dumplings are UTF-8-checked too: an
//!    invalid string anywhere in the answer failed the call before, and still does.
//! 2. the kitchen's per-dumpling decisions, in the order and with the state the chef's
//!    lane used to apply them after the call (count cap, `packet-index` range, size cap,
//!    per-call and per-second budget): a refused dumpling costs its length; a kept one is
//!    checked (`dumpling::wrap_checked_with`: the canonical scan) where it lies and copied
//!    once, into its envelope.
//!
//! What the lane needs for pass 2 ([`Intake`]: the caps, the items' times, the budget, the
//! envelope head) is lent to this thread's lift for one call ([`lend`], [`take_back`]), as
//! `chef_text` lends the interval memo. The lane then applies the [`Verdict`]s in order
//! (counters, warnings, the kept envelopes), so what is sent and counted is what the old
//! path sent and counted. Hostile answers stay bounded as before: wasmtime's fuel
//! (128 MiB per call: 32 bytes per record and each string's length, aliases included)
//! still limits what is read, and nothing but kept payloads (per-call budget) is copied.
//!
//! Without a loan, without the items' times (the lane gathers them only for a chef whose
//! last answer was not empty: most calls of most chefs answer nothing), or for a chef whose
//! strings are not UTF-8-encoded, the answer is lifted by wasmtime's `Vec<PacketDumpling>`
//! lift and the same decisions run on it after the call ([`Intake::settle`],
//! [`Intake::take_owned`]): one code path decides, whichever lift read the records.
//!
//! This implements wasmtime's lifting traits by hand, as `chef_text` does (their items are
//! public but hidden from its docs), pinned with wasmtime itself (`=48.0.8`).

use std::cell::RefCell;
use std::time::Instant;

use wasmtime::component::__internal::wasmtime_environ::component::StringEncoding;
use wasmtime::component::__internal::{CanonicalAbiInfo, InstanceType, InterfaceType, LiftContext};
use wasmtime::component::{ComponentType, Lift, WasmList, WasmStr};

use super::bindings::PacketDumpling;
use super::output_budget::{OutputBudget, OverBudget};

/// Bytes of one `packet-dumpling` record in the chef's memory: `packet-index` (u32), then
/// the payload's pointer and length (u32 each).
const RECORD: usize = 12;
const _: () = assert!(<PacketDumpling as ComponentType>::SIZE32 == RECORD);
const _: () = assert!(<PacketDumpling as ComponentType>::ALIGN32 == 4);

/// Records kept in an intake's scratch between calls; a larger answer's scratch is freed
/// after it (a hostile chef's 4 M-record answer must not pin 48 MB per chef).
const KEEP_SCRATCH: usize = 1 << 16;

/// One part of a call's items: the items before `end` (after the previous part's) and the
/// kitchen clock of its output budget. An unmerged call has one part; a replay window's
/// merged call (`dispatch::lane::merge`) one per call it stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    /// Items of this part end here (exclusive, counted over the whole call).
    pub end: usize,
    /// Kitchen clock for the output budget (replay; live reads the wall clock).
    pub clock_ns: u64,
}

/// What became of a call's dumplings, in the order the lane applies them.
#[derive(Debug)]
pub enum Verdict {
    /// The next part of a merged call starts (its per-call budget is fresh).
    Part,
    /// `made` dumplings in this part, over the per-call cap `cap`: the rest are dropped.
    OverCap {
        /// Dumplings the part made.
        made: usize,
        /// The per-call cap.
        cap: usize,
    },
    /// A `packet-index` outside the `items` of its part (or of the whole merged call).
    BadIndex {
        /// The index the chef gave (relative to its part).
        index: usize,
        /// How many items there were.
        items: usize,
    },
    /// A payload of this many bytes, over the size cap.
    Oversize(usize),
    /// A payload of this many bytes, over a budget.
    OverBudget(OverBudget, usize),
    /// Checked and wrapped in its envelope, or refused by the check.
    Wrapped(Result<String, dumpling::WrapError>),
}

/// Which handler a call's answer comes from (see [`Intake::answered`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum AnswerKind {
    /// `on-packets` or `on-packed`.
    #[default]
    Packets = 0,
    /// `on-flow-events`.
    FlowEvents = 1,
    /// `on-stream`.
    Stream = 2,
}

/// What the kitchen needs to decide a call's dumplings where they lie (see the module docs),
/// and what it decided. The lane fills the first fields, lends it through the call, and
/// applies [`Intake::verdicts`] afterwards; the buffers are kept for the next call.
#[derive(Debug, Default)]
pub struct Intake {
    /// Per-call cap on the number of dumplings.
    pub cap: usize,
    /// Size cap on one payload, bytes.
    pub max_bytes: usize,
    /// Live: budgets and dumpling times read the wall clock.
    pub live: bool,
    /// A replay window's merged call: each part is decided as its own call, and an index
    /// past the last part is reported after all of them.
    pub merged: bool,
    /// The call's parts (at least one).
    pub parts: Vec<Part>,
    /// Capture time of each item, ns (the dumpling's `creation_time` in a replay), when
    /// `has_times`.
    pub times: Vec<u64>,
    /// `times` is filled. Gathering them costs a pass over the call's items (256 strided
    /// records for a chef taking every packet), so the lane fills them only for a chef
    /// whose recent answers of the same kind held dumplings ([`Intake::answered`]); an answer that has some without them is lifted
    /// by wasmtime (as before) and decided after the call ([`Intake::settle`]).
    pub has_times: bool,
    /// What the call being made is (`on-packets`/`on-packed`, `on-flow-events`,
    /// `on-stream`): a chef's answers differ by kind (TopTalkersChef answers its flow
    /// events, not its packets), so whether to gather times is decided per kind.
    pub kind: AnswerKind,
    /// Per kind: how recently an answer of that kind held a record ([`RECENT`] after one
    /// did, one less after each empty one): a chef may alternate empty and full answers
    /// (TopTalkersChef's started and ended flow events).
    pub answered: [u8; 3],
    /// An answer wasmtime lifted, waiting for [`Intake::settle`].
    pub lifted: Option<Vec<PacketDumpling>>,
    /// Dumplings a `packed-json` answer held past those it could keep
    /// ([`super::packed_json::Split::unkept`]): counted over the cap when it is decided.
    pub unkept: usize,
    /// The chef's output budget, lent for the call.
    pub budget: Option<OutputBudget>,
    /// The chef's envelope head, lent for the call.
    pub head: Option<dumpling::EnvelopeHead>,
    /// What became of the dumplings, in order.
    pub verdicts: Vec<Verdict>,
    /// Wall time spent checking and wrapping kept payloads inside the call, ns (the chef
    /// host leaves it out of the chef's own call time, as when the lane did it after).
    pub wrap_ns: u64,
    /// Pass 1's records: (packet-index, payload pointer, payload length).
    records: Vec<(u32, usize, usize)>,
    /// A merged call's part of each record (`parts.len()`: past the last part).
    part_of: Vec<u32>,
}

/// Calls of one kind after its last non-empty answer for which the items' times are still
/// gathered before the call (see [`Intake::answered`]).
pub const RECENT: u8 = 8;

impl Intake {
    /// Whether an answer of the current kind was non-empty recently enough that the items'
    /// times are worth gathering before the call.
    pub fn answered_recently(&self) -> bool {
        self.answered[self.kind as usize] > 0
    }

    fn note_answer(&mut self, some: bool) {
        let a = &mut self.answered[self.kind as usize];
        *a = if some { RECENT } else { a.saturating_sub(1) };
    }

    /// After a call that worked: decide an answer wasmtime lifted ([`Intake::lifted`]),
    /// with the item times from `times` when they were not filled before the call.
    pub fn settle(&mut self, times: impl FnOnce(&mut Vec<u64>)) {
        let Some(out) = self.lifted.take() else {
            return;
        };
        if !self.has_times && !out.is_empty() {
            self.times.clear();
            times(&mut self.times);
            self.has_times = true;
        }
        self.take_owned(&out);
    }

    /// Decide an answer already lifted into owned strings (wasmtime's lift, or a
    /// `packed-json` split): the same decisions as in place.
    pub fn take_owned(&mut self, out: &[PacketDumpling]) {
        let unkept = std::mem::take(&mut self.unkept);
        self.note_answer(!out.is_empty() || unkept > 0);
        let started = Instant::now();
        self.decide(
            out.len(),
            |i| (out[i].packet_index, out[i].payload.len()),
            |i| Ok(out[i].payload.as_str()),
        )
        // Owned strings cannot fail to be read.
        .unwrap_or(());
        self.wrap_ns = started.elapsed().as_nanos() as u64;
        if unkept > 0 {
            // The split kept as many as any call may send (an unmerged call: the cap, so
            // the count made is exact; a merged one: the cap for each of its parts).
            self.verdicts.push(Verdict::OverCap {
                made: self.cap.saturating_add(unkept),
                cap: self.cap,
            });
        }
    }

    /// Free scratch a large answer left (see [`KEEP_SCRATCH`]).
    pub fn trim(&mut self) {
        if self.records.capacity() > KEEP_SCRATCH {
            self.records = Vec::new();
            self.part_of = Vec::new();
        }
        if self.verdicts.capacity() > KEEP_SCRATCH {
            self.verdicts = Vec::new();
        }
    }

    /// Pass 2 over `n` records: `meta(i)` is record `i`'s (packet-index, payload length),
    /// `text(i)` its payload, read only for a dumpling that passed every cap and budget.
    fn decide<'t>(
        &mut self,
        n: usize,
        meta: impl Fn(usize) -> (u32, usize),
        mut text: impl FnMut(usize) -> wasmtime::Result<&'t str>,
    ) -> wasmtime::Result<()> {
        let (Some(mut budget), Some(head)) = (self.budget.take(), self.head.take()) else {
            wasmtime::bail!("no output budget or envelope head lent to the answer's intake");
        };
        let result = if self.merged {
            self.decide_merged(n, &meta, &mut text, &mut budget, &head)
        } else {
            self.decide_one(n, &meta, &mut text, &mut budget, &head)
        };
        self.budget = Some(budget);
        self.head = Some(head);
        result
    }

    /// An unmerged call: the cap over the whole answer, then each dumpling in order.
    fn decide_one<'t>(
        &mut self,
        n: usize,
        meta: &impl Fn(usize) -> (u32, usize),
        text: &mut impl FnMut(usize) -> wasmtime::Result<&'t str>,
        budget: &mut OutputBudget,
        head: &dumpling::EnvelopeHead,
    ) -> wasmtime::Result<()> {
        let Some(&part) = self.parts.first() else {
            wasmtime::bail!("an intake without parts");
        };
        budget.start_call();
        if n > self.cap {
            self.verdicts.push(Verdict::OverCap {
                made: n,
                cap: self.cap,
            });
        }
        for i in 0..n.min(self.cap) {
            let (index, len) = meta(i);
            let index = index as usize;
            if index >= part.end {
                self.verdicts.push(Verdict::BadIndex {
                    index,
                    items: part.end,
                });
                continue;
            }
            self.one(index, len, part.clock_ns, budget, head, || text(i))?;
        }
        Ok(())
    }

    /// A merged call: its answer split by part (each dumpling's `packet-index`, in the
    /// chef's order within a part), each part decided as its own call, then the indexes
    /// past the last part.
    fn decide_merged<'t>(
        &mut self,
        n: usize,
        meta: &impl Fn(usize) -> (u32, usize),
        text: &mut impl FnMut(usize) -> wasmtime::Result<&'t str>,
        budget: &mut OutputBudget,
        head: &dumpling::EnvelopeHead,
    ) -> wasmtime::Result<()> {
        let parts = std::mem::take(&mut self.parts);
        let mut part_of = std::mem::take(&mut self.part_of);
        part_of.clear();
        part_of.extend((0..n).map(|i| {
            let index = meta(i).0 as usize;
            parts.partition_point(|p| p.end <= index) as u32
        }));
        let mut result = Ok(());
        let mut start = 0;
        'parts: for (p, part) in parts.iter().enumerate() {
            self.verdicts.push(Verdict::Part);
            budget.start_call();
            let made = part_of.iter().filter(|&&q| q as usize == p).count();
            if made > self.cap {
                self.verdicts.push(Verdict::OverCap {
                    made,
                    cap: self.cap,
                });
            }
            let items = part.end - start;
            let mine = (0..n).filter(|&i| part_of[i] as usize == p);
            for i in mine.take(self.cap) {
                let (index, len) = meta(i);
                // In range by construction (the part was found by this index).
                let rel = (index as usize).saturating_sub(start);
                if rel >= items {
                    self.verdicts.push(Verdict::BadIndex { index: rel, items });
                    continue;
                }
                if let Err(e) =
                    self.one(index as usize, len, part.clock_ns, budget, head, || text(i))
                {
                    result = Err(e);
                    break 'parts;
                }
            }
            start = part.end;
        }
        if result.is_ok() {
            for (i, &p) in part_of.iter().enumerate() {
                if p as usize == parts.len() {
                    self.verdicts.push(Verdict::BadIndex {
                        index: meta(i).0 as usize,
                        items: start,
                    });
                }
            }
        }
        self.parts = parts;
        self.part_of = part_of;
        result
    }

    /// One dumpling naming item `index` (of the whole call), `len` payload bytes: size cap,
    /// budget, then checked and wrapped (the payload read only then).
    fn one<'t>(
        &mut self,
        index: usize,
        len: usize,
        clock_ns: u64,
        budget: &mut OutputBudget,
        head: &dumpling::EnvelopeHead,
        text: impl FnOnce() -> wasmtime::Result<&'t str>,
    ) -> wasmtime::Result<()> {
        if len > self.max_bytes {
            self.verdicts.push(Verdict::Oversize(len));
            return Ok(());
        }
        let clock = if self.live {
            crate::dispatch::wall_ns()
        } else {
            clock_ns
        };
        if let Err(which) = budget.take(len as u64, clock) {
            self.verdicts.push(Verdict::OverBudget(which, len));
            return Ok(());
        }
        let at_ns = if self.live {
            crate::dispatch::wall_ns()
        } else {
            self.times.get(index).copied().unwrap_or(0)
        };
        let creation_time = dumpling::epoch_seconds_from_nanos(at_ns);
        let wrapped =
            dumpling::wrap_checked_with(head, creation_time, dumpling::Driver::Packet, text()?);
        self.verdicts.push(Verdict::Wrapped(wrapped));
        Ok(())
    }
}

thread_local! {
    /// The intake lent to the lift of the call running on this thread.
    static LENT: RefCell<Option<Intake>> = const { RefCell::new(None) };
}

/// Lend `intake` to the lift of the next call on this thread; [`take_back`] after the
/// call, whatever its result.
pub fn lend(intake: Intake) {
    LENT.with(|l| *l.borrow_mut() = Some(intake));
}

/// The lent intake, back (with its verdicts when the lift took the answer in place).
pub fn take_back() -> Option<Intake> {
    LENT.with(|l| l.borrow_mut().take())
}

/// A call's `list<packet-dumpling>` (see the module docs).
#[derive(Debug)]
pub enum PacketAnswer {
    /// Decided in place into the lent [`Intake`]'s verdicts.
    Taken,
    /// Lifted by wasmtime (no intake lent, no item times, or not UTF-8-encoded strings);
    /// decide it with [`Intake::settle`] or [`Intake::take_owned`].
    Lifted(Vec<PacketDumpling>),
    /// A `packed-json` answer split by the kitchen: the dumplings it kept and how many
    /// more pairs it held ([`super::packed_json::Split`]); decided as [`Self::Lifted`], the
    /// rest counted over the cap ([`Intake::unkept`]).
    Split(Vec<PacketDumpling>, usize),
}

#[allow(unsafe_code)]
// SAFETY: the ABI, lowered form and type check are `Vec<PacketDumpling>`'s: this type is
// lifted from exactly what that one is lifted from.
unsafe impl ComponentType for PacketAnswer {
    type Lower = <Vec<PacketDumpling> as ComponentType>::Lower;

    const ABI: CanonicalAbiInfo = <Vec<PacketDumpling> as ComponentType>::ABI;

    fn typecheck(ty: &InterfaceType, types: &InstanceType<'_>) -> wasmtime::Result<()> {
        <Vec<PacketDumpling> as ComponentType>::typecheck(ty, types)
    }
}

#[allow(unsafe_code)]
// SAFETY: each lift reads only what wasmtime's own lift of `Vec<PacketDumpling>` reads,
// after wasmtime's own `WasmList` and `WasmStr` lifts checked it (bounds, alignment, fuel),
// and every slice of the chef's memory is taken with a checked `get`.
unsafe impl Lift for PacketAnswer {
    fn linear_lift_from_flat(
        cx: &mut LiftContext<'_>,
        ty: InterfaceType,
        src: &Self::Lower,
    ) -> wasmtime::Result<Self> {
        if cx.options().string_encoding != StringEncoding::Utf8 || !is_lent() {
            return <Vec<PacketDumpling> as Lift>::linear_lift_from_flat(cx, ty, src)
                .map(PacketAnswer::Lifted);
        }
        let list = <WasmList<PacketDumpling> as Lift>::linear_lift_from_flat(cx, ty, src)?;
        // The flat form is (pointer, length), as wasmtime reads it.
        let ptr = src[0].get_u32() as usize;
        take_in_place(cx, ptr, list.len())
    }

    fn linear_lift_from_memory(
        cx: &mut LiftContext<'_>,
        ty: InterfaceType,
        bytes: &[u8],
    ) -> wasmtime::Result<Self> {
        if cx.options().string_encoding != StringEncoding::Utf8 || !is_lent() {
            return <Vec<PacketDumpling> as Lift>::linear_lift_from_memory(cx, ty, bytes)
                .map(PacketAnswer::Lifted);
        }
        let list = <WasmList<PacketDumpling> as Lift>::linear_lift_from_memory(cx, ty, bytes)?;
        // In memory: a little-endian u32 pointer, then a u32 length.
        let Some(ptr) = bytes
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .map(|b: [u8; 4]| u32::from_le_bytes(b) as usize)
        else {
            wasmtime::bail!("list pointer/length out of bounds of the record");
        };
        take_in_place(cx, ptr, list.len())
    }
}

/// Whether an intake with the item times is lent to this thread's lift (without them an
/// answer is lifted by wasmtime and decided after the call).
fn is_lent() -> bool {
    LENT.with(|l| l.borrow().as_ref().is_some_and(|i| i.has_times))
}

/// One record's bytes, aligned as wasmtime's lifts expect their source to be.
#[repr(align(4))]
struct Record([u8; RECORD]);

/// Both passes (module docs) over the `n` records at `base`, into the lent intake.
fn take_in_place(
    cx: &mut LiftContext<'_>,
    base: usize,
    n: usize,
) -> wasmtime::Result<PacketAnswer> {
    let Some(mut intake) = take_back() else {
        wasmtime::bail!("no intake lent to the answer's lift");
    };
    let mut records = std::mem::take(&mut intake.records);
    intake.note_answer(n > 0);
    let result = read_records(cx, base, n, &mut records).and_then(|()| {
        // From here on the chef's memory is only read.
        let memory = cx.memory();
        let texts = utf8_texts(memory, &records)?;
        let started = Instant::now();
        let decided = intake.decide(
            records.len(),
            |i| (records[i].0, records[i].2),
            |i| Ok(texts[i]),
        );
        intake.wrap_ns = started.elapsed().as_nanos() as u64;
        decided
    });
    intake.records = records;
    intake.trim();
    lend(intake);
    result.map(|()| PacketAnswer::Taken)
}

/// Pass 1, bounds: every record in order, as wasmtime's `Vec<PacketDumpling>` lift reads
/// it (each string's bounds and fuel by wasmtime's own `WasmStr` lift), into `records`
/// as (packet-index, pointer, length). A record that fails is the call's failure, unless
/// a string before it is not UTF-8: wasmtime's lift checks each string's UTF-8 before
/// reading the next record, so that error comes first, as it did.
fn read_records(
    cx: &mut LiftContext<'_>,
    base: usize,
    n: usize,
    records: &mut Vec<(u32, usize, usize)>,
) -> wasmtime::Result<()> {
    records.clear();
    for i in 0..n {
        if let Err(e) = read_record(cx, base, i, records) {
            utf8_texts(cx.memory(), records)?;
            return Err(e);
        }
    }
    Ok(())
}

/// Record `i` of the list at `base` (see [`read_records`]).
fn read_record(
    cx: &mut LiftContext<'_>,
    base: usize,
    i: usize,
    records: &mut Vec<(u32, usize, usize)>,
) -> wasmtime::Result<()> {
    // `WasmList`'s lift checked base + n * RECORD against the memory; checked again.
    let Some(bytes) = i
        .checked_mul(RECORD)
        .and_then(|o| base.checked_add(o))
        .and_then(|at| cx.memory().get(at..at.checked_add(RECORD)?))
    else {
        wasmtime::bail!("list pointer/length out of bounds of memory");
    };
    let mut record = Record([0; RECORD]);
    record.0.copy_from_slice(bytes);
    let word = |at: usize| {
        let mut w = [0u8; 4];
        w.copy_from_slice(&record.0[at..at + 4]);
        u32::from_le_bytes(w)
    };
    let (index, ptr, len) = (word(0), word(4) as usize, word(8) as usize);
    // Bounds and fuel, exactly as wasmtime's own string lift.
    <WasmStr as Lift>::linear_lift_from_memory(cx, InterfaceType::String, &record.0[4..])?;
    records.push((index, ptr, len));
    Ok(())
}

/// Pass 1, UTF-8: each record's payload as text where it lies, checked in order (by
/// `simdutf8`; the first error is `core::str::from_utf8`'s, as wasmtime's lift gave).
fn utf8_texts<'m>(
    memory: &'m [u8],
    records: &[(u32, usize, usize)],
) -> wasmtime::Result<Vec<&'m str>> {
    records
        .iter()
        .map(|&(_, ptr, len)| {
            let Some(bytes) = ptr.checked_add(len).and_then(|end| memory.get(ptr..end)) else {
                wasmtime::bail!("string pointer/length out of bounds of memory");
            };
            super::chef_text::utf8_str(bytes).map_err(wasmtime::Error::from)
        })
        .collect()
}
