//! Write netdumplings **chefs** in Rust.
//!
//! A chef is a WebAssembly component implementing the `chef` world of `wit/chef.wit`
//! (package `netdumplings:chef@0.2.0`). The kitchen hands it packets in batches (and, when
//! it asks, flow events and reassembled TCP stream bytes); the chef answers with JSON
//! payloads ("dumplings"). This crate hides the WIT plumbing and the batching:
//!
//! * implement [`Chef`] on a `Default` struct (its fields are the chef's state);
//! * call [`export_chef!`] once;
//! * build with `cargo build --release --target wasm32-wasip2`.
//!
//! ```
//! use chef_sdk::{Chef, ChefInfo, Drivers, Interest, Packet, Tick};
//!
//! #[derive(Default)]
//! struct PortCounter { seen: u64 }
//!
//! impl Chef for PortCounter {
//!     fn info() -> ChefInfo {
//!         ChefInfo::new("PortCounter", "Counts packets to or from port 443")
//!             .drivers(Drivers::PACKET | Drivers::INTERVAL)
//!             .interest(Interest::ANY.ports(&[443]))
//!     }
//!     fn on_packet(&mut self, _packet: &Packet<'_>) -> impl chef_sdk::Dumplings {
//!         self.seen += 1;
//!     }
//!     fn on_interval(&mut self, _tick: Tick) -> impl chef_sdk::Dumplings {
//!         Some(serde_json::json!({ "https_packets": self.seen }))
//!     }
//! }
//! chef_sdk::export_chef!(PortCounter);
//! # fn main() {}
//! ```
//!
//! Return values: anything implementing [`Dumplings`]: `()` (no dumpling), `Option<T>`,
//! `Vec<T>`, `[T; N]` or an iterator wrapped in [`Each`], where `T: serde::Serialize`.
//! Each `T` becomes one dumpling whose payload is `T` serialised to JSON.
//!
//! The [`parse`] module has hostile-input-safe parsers for what chefs usually need (DNS,
//! TLS ClientHello SNI, HTTP/1 requests, DHCP), and [`bounded`] has small bounded
//! collections so a chef's state cannot grow without limit.

pub mod bounded;
mod cached;
pub mod flow;
mod info;
pub mod log;
pub mod packed;
mod packet;
pub mod parse;
pub mod ser;
pub mod state;
pub mod tally;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod time;

/// Most bytes a chef should put in one payload that lists a table (an interval payload):
/// under the kitchen's default dumpling limit of 1,044,480 bytes (the hub's 1 MiB frame
/// less room for the envelope), with room for the payload's other fields. A payload over
/// the limit is refused whole, at every poke, so a table that can outgrow it (capture-
/// controlled strings, 6 JSON bytes per escaped control byte) must show only what fits
/// ([`bounded::BoundedMap::newest_within`]) and count the rest.
pub const PAYLOAD_BUDGET: usize = 900 * 1024;

/// The kitchen's limit on one dumpling's payload (bytes; `DEFAULT_MAX_DUMPLING_BYTES` in
/// `kitchen/src/chef_host/limits.rs`): the hub's 1 MiB message cap less 4 KiB of envelope.
pub const KITCHEN_MAX_DUMPLING_BYTES: usize = (1 << 20) - 4096;

pub use cached::{Cached, CachedPayload};
pub use flow::{StreamChunk, Verdicts};
pub use info::{ChefInfo, Interest};
pub use packet::{ipv4_addr, ipv6_addr, Mac, Packet};
pub use time::{Tick, Timestamp};
pub use wit::BatchForm;

/// Serde, re-exported for its traits. To `#[derive(Serialize)]`, a chef adds `serde` with
/// the `derive` feature to its own dependencies (as the sample chefs do).
pub use serde;
/// `serde_json`, re-exported for `json!` and `Value`.
pub use serde_json;

/// The raw bindings generated from `wit/chef.wit` (once, here).
///
/// Chef authors rarely need these: [`Packet`] reads the fields of a packed
/// [`wit::Packet`] (its header accessors return these types by value), and [`ChefInfo`]
/// converts into [`wit::ChefInfo`].
#[allow(unsafe_code, missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        // Every Rust chef exports `state` too: `export_chef!` with an empty state (nothing
        // carried across a reload), `export_stateful_chef!` with the chef serialised; and
        // `stream-verdicts` (`StreamChunk::done_with_direction`), which costs a chef that
        // never calls it nothing but an empty list; and `interval-same` (a `CachedPayload`
        // sent again is answered `same(i)`, see `cached`).
        world: "same-chef",
        pub_export_macro: true,
        default_bindings_module: "chef_sdk::bindings",
    });
}

/// The WIT record and enum types (`packet`, `ipv4-header`, `tcp-flags`, ...), as generated.
pub mod wit {
    pub use crate::bindings::exports::netdumplings::chef::handler::PacketDumpling;
    pub use crate::bindings::netdumplings::chef::types::*;
}

pub use flow::FlowEvent;

pub use wit::{Drivers, NetworkProtocol, TransportProtocol};

/// A chef: state in `self`, handlers called by the kitchen.
///
/// The state is created with `Default::default()` when the chef is loaded (and again if the
/// kitchen restarts it after a trap). Keep it **bounded**: a chef lives as long as the
/// kitchen, and runs under a memory limit.
pub trait Chef: Default + 'static {
    /// Who the chef is and what it wants; asked once, at load.
    fn info() -> ChefInfo;

    /// Called for each packet that matches the chef's [`Interest`], in capture order (only
    /// when `info().drivers` contains [`Drivers::PACKET`]). Return the dumplings the
    /// packet makes, usually `None` / `()`.
    #[allow(unused_variables)]
    fn on_packet(&mut self, packet: &Packet<'_>) -> impl Dumplings {}

    /// Called on every poke of the kitchen's timer (only when `info().drivers` contains
    /// [`Drivers::INTERVAL`]). Return the interval dumplings (often exactly one).
    #[allow(unused_variables)]
    fn on_interval(&mut self, tick: Tick) -> impl Dumplings {}

    /// Called for each flow start and end, in time order (only when `info().interest`
    /// has [`Interest::flow_events`]). Dumplings made here have driver `packet` and the
    /// event's time.
    #[allow(unused_variables)]
    fn on_flow_event(&mut self, event: &FlowEvent) -> impl Dumplings {}

    /// Called for each chunk of reassembled TCP stream bytes, in time order (only when
    /// `info().interest` has [`Interest::stream_bytes`] > 0). Dumplings made here have
    /// driver `packet` and the chunk's time. Call [`StreamChunk::done_with_direction`] where
    /// the chef stops following a direction: the kitchen then stops handing it over (and,
    /// once no chef wants it, stops copying it).
    #[allow(unused_variables)]
    fn on_stream(&mut self, chunk: &StreamChunk<'_>) -> impl Dumplings {}

    /// The version of this chef's state layout, for [`export_stateful_chef!`]: a snapshot
    /// carries it, and a new version of the chef reads only a state of its own
    /// `STATE_VERSION` (anything else is refused with a reason, and the new version starts
    /// fresh). Bump it when a field keeps its name and type but changes its meaning; a
    /// field added with `#[serde(default)]` needs no bump. Default 1.
    const STATE_VERSION: u32 = 1;

    /// Called on a chef just restored from an older version's snapshot (with
    /// [`export_stateful_chef!`]), before it sees any traffic. Re-apply this version's
    /// bounds here (a restored [`bounded::BoundedMap`] has the capacity it was saved with;
    /// `set_capacity` trims it), or return `Err(reason)` to refuse the state (the new
    /// version then starts fresh and the kitchen logs the reason). Default: accept.
    fn restored(&mut self) -> Result<(), String> {
        Ok(())
    }
}

/// Zero, one or several dumpling payloads: what the [`Chef`] handlers return.
///
/// Implemented for `()` (none), `Option<T>`, `Vec<T>`, `[T; N]` and [`Each`], where each
/// `T: Serialize` is one payload. A payload that fails to serialise (e.g. a map with
/// non-string keys) is dropped and logged, never sent half-made.
pub trait Dumplings {
    /// Calls `emit` with each payload, serialised to JSON.
    fn for_each_json(self, emit: impl FnMut(String));

    /// Calls `emit` with each payload as the `interval-same` glue takes it: a text made
    /// for this answer, or a text that a stamp names ([`CachedPayload`]'s), which is
    /// answered `same(i)` when the previous answer sent it. The default: every payload
    /// [`Self::for_each_json`] makes, unstamped.
    fn for_each_payload(self, mut emit: impl FnMut(Payload<'_>))
    where
        Self: Sized,
    {
        self.for_each_json(|text| emit(Payload::Json(text)));
    }
}

/// One payload as [`Dumplings::for_each_payload`] gives it.
pub enum Payload<'a> {
    /// A text made for this answer.
    Json(String),
    /// A text kept between answers, named by `stamp` (no other text ever has it), so the
    /// glue can tell it was sent in the previous answer without comparing the bytes.
    Stamped {
        /// The text (copied only when it must be sent).
        text: &'a str,
        /// Its stamp (never 0).
        stamp: u64,
    },
}

fn to_json<T: serde::Serialize>(value: &T) -> Option<String> {
    match serde_json::to_string(value) {
        Ok(s) => Some(s),
        Err(e) => {
            log::error(&format!("dropping a dumpling that does not serialise: {e}"));
            None
        }
    }
}

impl Dumplings for () {
    #[inline]
    fn for_each_json(self, _emit: impl FnMut(String)) {}
}

impl<T: serde::Serialize> Dumplings for Option<T> {
    #[inline]
    fn for_each_json(self, mut emit: impl FnMut(String)) {
        if let Some(s) = self.as_ref().and_then(to_json) {
            emit(s);
        }
    }
}

impl<T: serde::Serialize> Dumplings for Vec<T> {
    fn for_each_json(self, mut emit: impl FnMut(String)) {
        self.iter().filter_map(to_json).for_each(&mut emit);
    }
}

impl<T: serde::Serialize, const N: usize> Dumplings for [T; N] {
    fn for_each_json(self, mut emit: impl FnMut(String)) {
        self.iter().filter_map(to_json).for_each(&mut emit);
    }
}

/// Wraps an iterator of payloads so it can be returned from a handler without collecting:
/// `Each(names.iter().map(|n| json!({"name": n})))`.
pub struct Each<I>(pub I);

impl<I> Dumplings for Each<I>
where
    I: IntoIterator,
    I::Item: serde::Serialize,
{
    fn for_each_json(self, mut emit: impl FnMut(String)) {
        for item in self.0 {
            if let Some(s) = to_json(&item) {
                emit(s);
            }
        }
    }
}

/// A JSON text that is already serialised, sent as the payload verbatim.
///
/// Use it when a chef builds its JSON by hand for speed. The kitchen validates every
/// payload, so an invalid text is rejected there (and the chef reported).
pub struct RawJson(pub String);

impl Dumplings for RawJson {
    #[inline]
    fn for_each_json(self, mut emit: impl FnMut(String)) {
        emit(self.0);
    }
}

/// The glue behind [`export_chef!`]. Not part of the stable API.
#[doc(hidden)]
pub mod __private {
    use super::{Chef, Dumplings, FlowEvent, Packet, StreamChunk, Tick, Timestamp};
    use crate::wit;
    use std::time::Duration;

    /// Appends the dumplings a handler made for the `index`-th item of its call, each
    /// naming that item (`packet-index`).
    #[inline]
    fn push_indexed(out: &mut Vec<wit::PacketDumpling>, index: usize, dumplings: impl Dumplings) {
        let packet_index = u32::try_from(index).unwrap_or(u32::MAX);
        dumplings.for_each_json(|payload| {
            out.push(wit::PacketDumpling {
                packet_index,
                payload,
            })
        });
    }

    /// `describe`: the chef's info, converted to the WIT record.
    pub fn describe<C: Chef>(default_version: &str) -> wit::ChefInfo {
        C::info().to_wit(default_version)
    }

    /// `on-packed`: run `on_packet` over a packed batch (`docs/packed-batch.md`), each
    /// [`Packet`] reading its record where it lies in `headers`. Allocates only for
    /// dumplings made. A batch of a layout this SDK does not know is refused: logged, then
    /// the call traps (the kitchen counts a failure), rather than misread.
    #[inline]
    pub fn on_packed<C: Chef>(
        chef: &mut C,
        headers: &[u8],
        arena: &[u8],
    ) -> Vec<wit::PacketDumpling> {
        let batch = match crate::packed::Batch::parse(headers) {
            Ok(batch) => batch,
            Err(e) => {
                // Natively (unit tests) the log import does not exist; the panic says it.
                #[cfg(target_family = "wasm")]
                crate::log::error(&format!("refusing a packed batch: {e}"));
                panic!("refusing a packed batch: {e}");
            }
        };
        let mut out = Vec::new();
        for (index, rec) in batch.records().enumerate() {
            let packet = Packet::from_record(rec, arena);
            push_indexed(&mut out, index, chef.on_packet(&packet));
        }
        out
    }

    /// `on-packets`: the records form, for a chef whose info asks for
    /// [`crate::BatchForm::Records`]. Each record is packed into a stack buffer first, so
    /// handlers see the same [`Packet`] as in [`on_packed`] (one code path to test); this
    /// costs the guest wit-bindgen's lift of every field plus the packing, so it is slower.
    pub fn on_packets<C: Chef>(
        chef: &mut C,
        packets: &[wit::Packet],
        arena: &[u8],
    ) -> Vec<wit::PacketDumpling> {
        let mut out = Vec::new();
        let mut rec = [0u8; crate::packed::RECORD_SIZE];
        for (index, raw) in packets.iter().enumerate() {
            crate::packed::encode_record(raw, &mut rec);
            let packet = Packet::from_record(&rec, arena);
            push_indexed(&mut out, index, chef.on_packet(&packet));
        }
        out
    }

    /// `on-flow-events`: run `on_flow_event` over the events.
    pub fn on_flow_events<C: Chef>(chef: &mut C, events: &[FlowEvent]) -> Vec<wit::PacketDumpling> {
        let mut out = Vec::new();
        for (index, event) in events.iter().enumerate() {
            push_indexed(&mut out, index, chef.on_flow_event(event));
        }
        out
    }

    /// `on-stream`: run `on_stream` over the chunks; the dumplings, and the indices of the
    /// chunks whose direction the handler gave up ([`StreamChunk::done_with_direction`]).
    pub fn on_stream<C: Chef>(
        chef: &mut C,
        chunks: &[wit::StreamChunk],
        arena: &[u8],
    ) -> (Vec<wit::PacketDumpling>, Vec<u32>) {
        let mut out = Vec::new();
        let verdicts = crate::Verdicts::default();
        for (index, raw) in chunks.iter().enumerate() {
            let i = u32::try_from(index).unwrap_or(u32::MAX);
            let chunk = StreamChunk::with_verdicts(raw, arena, i, &verdicts);
            push_indexed(&mut out, index, chef.on_stream(&chunk));
        }
        (out, verdicts.into_indices())
    }

    /// How `export_chef!` / `export_stateful_chef!` carry state across a hot reload.
    pub trait StateCodec<C> {
        /// The chef's state as bytes; empty = nothing to carry.
        fn snapshot(chef: Option<&C>) -> Vec<u8>;
        /// A chef made from an older version's snapshot, or why not.
        fn restore(state: &[u8]) -> Result<Option<C>, String>;
    }

    /// `export_chef!`: no state is carried (an empty snapshot; a non-empty one is refused).
    pub struct NoState;

    impl<C> StateCodec<C> for NoState {
        fn snapshot(_chef: Option<&C>) -> Vec<u8> {
            Vec::new()
        }
        fn restore(state: &[u8]) -> Result<Option<C>, String> {
            if state.is_empty() {
                Ok(None)
            } else {
                Err("this version of the chef keeps no state across a reload".to_owned())
            }
        }
    }

    /// `export_stateful_chef!`: the chef serialised with serde, as JSON after a format line
    /// naming the chef and its state version (see [`crate::state`]), so a new version with
    /// `#[serde(default)]` fields still reads an older version's state, and a state it cannot
    /// read is refused, never misread.
    pub struct SerdeState;

    impl<C: Chef + serde::Serialize + serde::de::DeserializeOwned> StateCodec<C> for SerdeState {
        fn snapshot(chef: Option<&C>) -> Vec<u8> {
            let Some(chef) = chef else {
                return Vec::new(); // never used: nothing to carry
            };
            crate::state::snapshot(chef).unwrap_or_else(|e| {
                crate::log::error(&e);
                Vec::new()
            })
        }
        fn restore(state: &[u8]) -> Result<Option<C>, String> {
            if state.is_empty() {
                return Ok(None);
            }
            crate::state::restore(state).map(Some)
        }
    }

    /// `on-interval`: run `on_interval` once.
    pub fn on_interval<C: Chef>(chef: &mut C, now_ns: u64, interval_ns: u64) -> Vec<String> {
        // A kitchen calling this keeps nothing for `same`: the next `interval-same` answer
        // sends every text.
        PREVIOUS_STAMPS.with_borrow_mut(Vec::clear);
        let mut out = Vec::new();
        let tick = Tick {
            now: Timestamp::from_nanos(now_ns),
            interval: Duration::from_nanos(interval_ns),
        };
        chef.on_interval(tick)
            .for_each_json(|payload| out.push(payload));
        out
    }

    std::thread_local! {
        /// The stamps of the previous `interval-same` answer's payloads, by position (0:
        /// a payload without one). One instance is one thread.
        static PREVIOUS_STAMPS: std::cell::RefCell<Vec<u64>> =
            const { std::cell::RefCell::new(Vec::new()) };
    }

    /// `interval-same.on-interval`: run `on_interval` once; a stamped payload
    /// ([`crate::CachedPayload`]'s text) that the previous answer sent at position `i` is
    /// answered `same(i)`, any other as its text.
    pub fn on_interval_same<C: Chef>(
        chef: &mut C,
        now_ns: u64,
        interval_ns: u64,
    ) -> Vec<IntervalPayload> {
        let tick = Tick {
            now: Timestamp::from_nanos(now_ns),
            interval: Duration::from_nanos(interval_ns),
        };
        let previous = PREVIOUS_STAMPS.take();
        let mut stamps = Vec::new();
        let mut out = Vec::new();
        chef.on_interval(tick).for_each_payload(|p| match p {
            crate::Payload::Json(text) => {
                stamps.push(0);
                out.push(IntervalPayload::Json(text));
            }
            crate::Payload::Stamped { text, stamp } => {
                stamps.push(stamp);
                out.push(
                    match previous.iter().position(|s| *s == stamp && stamp != 0) {
                        Some(i) => IntervalPayload::Same(u32::try_from(i).unwrap_or(u32::MAX)),
                        None => IntervalPayload::Json(text.to_owned()),
                    },
                );
            }
        });
        PREVIOUS_STAMPS.set(stamps);
        out
    }

    pub use crate::bindings::exports::netdumplings::chef::handler::Guest;
    pub use crate::bindings::exports::netdumplings::chef::interval_same::{
        Guest as IntervalSameGuest, IntervalPayload,
    };
    pub use crate::bindings::exports::netdumplings::chef::state::Guest as StateGuest;
    pub use crate::bindings::exports::netdumplings::chef::stream_verdicts::Guest as StreamVerdictsGuest;
}

/// Exports a [`Chef`] as the component's `handler`.
///
/// Use it once per chef crate, at the crate root: `chef_sdk::export_chef!(MyChef);`.
/// The chef's state is one `MyChef::default()`, created on first use and kept for the
/// life of the component instance (wasm is single-threaded, so a thread-local is the
/// whole instance). A hot reload starts the new version fresh; use
/// [`export_stateful_chef!`] to carry the state over.
#[macro_export]
macro_rules! export_chef {
    ($chef:ty) => {
        $crate::__export_chef!($chef, $crate::__private::NoState);
    };
}

/// Exports a [`Chef`] whose state follows it across a hot reload.
///
/// Like [`export_chef!`], for a chef that is also `serde::Serialize` and
/// `serde::Deserialize` (usually `#[derive(Serialize, Deserialize)]` on the struct). When
/// the chef's file is replaced in a running kitchen, the old version's state is serialised
/// (JSON) and the new version starts from it instead of `Default::default()`. If the new
/// version cannot deserialise it (a field renamed, a type changed), it starts fresh and the
/// kitchen logs why; mark new fields `#[serde(default)]` to keep old state readable.
/// A restart after a crash never restores state.
#[macro_export]
macro_rules! export_stateful_chef {
    ($chef:ty) => {
        $crate::__export_chef!($chef, $crate::__private::SerdeState);
    };
}

/// The body of [`export_chef!`] with a state codec. Not part of the stable API.
#[doc(hidden)]
#[macro_export]
macro_rules! __export_chef {
    ($chef:ty, $codec:ty) => {
        #[doc(hidden)]
        #[allow(unsafe_code, missing_docs)]
        mod __netdumplings_chef_export {
            #[allow(unused_imports)]
            use super::*;

            ::std::thread_local! {
                static STATE: ::core::cell::RefCell<::core::option::Option<$chef>> =
                    const { ::core::cell::RefCell::new(::core::option::Option::None) };
            }

            fn with_chef<R>(f: impl FnOnce(&mut $chef) -> R) -> R {
                STATE.with_borrow_mut(|state| {
                    f(state.get_or_insert_with(<$chef as ::core::default::Default>::default))
                })
            }

            pub struct NetdumplingsChefGuest;

            impl $crate::__private::Guest for NetdumplingsChefGuest {
                fn describe() -> $crate::wit::ChefInfo {
                    $crate::__private::describe::<$chef>(::core::env!("CARGO_PKG_VERSION"))
                }

                fn on_packets(
                    packets: ::std::vec::Vec<$crate::wit::Packet>,
                    arena: ::std::vec::Vec<u8>,
                ) -> ::std::vec::Vec<$crate::wit::PacketDumpling> {
                    with_chef(|chef| $crate::__private::on_packets(chef, &packets, &arena))
                }

                fn on_packed(
                    headers: ::std::vec::Vec<u8>,
                    arena: ::std::vec::Vec<u8>,
                ) -> ::std::vec::Vec<$crate::wit::PacketDumpling> {
                    with_chef(|chef| $crate::__private::on_packed(chef, &headers, &arena))
                }

                fn on_interval(now_ns: u64, interval_ns: u64) -> ::std::vec::Vec<::std::string::String> {
                    with_chef(|chef| $crate::__private::on_interval(chef, now_ns, interval_ns))
                }

                fn on_flow_events(
                    events: ::std::vec::Vec<$crate::wit::FlowEvent>,
                ) -> ::std::vec::Vec<$crate::wit::PacketDumpling> {
                    with_chef(|chef| $crate::__private::on_flow_events(chef, &events))
                }

                fn on_stream(
                    chunks: ::std::vec::Vec<$crate::wit::StreamChunk>,
                    arena: ::std::vec::Vec<u8>,
                ) -> ::std::vec::Vec<$crate::wit::PacketDumpling> {
                    // A kitchen that predates `stream-verdicts`: the verdicts go nowhere.
                    with_chef(|chef| $crate::__private::on_stream(chef, &chunks, &arena).0)
                }
            }

            impl $crate::__private::StreamVerdictsGuest for NetdumplingsChefGuest {
                fn on_stream(
                    chunks: ::std::vec::Vec<$crate::wit::StreamChunk>,
                    arena: ::std::vec::Vec<u8>,
                ) -> (
                    ::std::vec::Vec<$crate::wit::PacketDumpling>,
                    ::std::vec::Vec<u32>,
                ) {
                    with_chef(|chef| $crate::__private::on_stream(chef, &chunks, &arena))
                }
            }

            impl $crate::__private::IntervalSameGuest for NetdumplingsChefGuest {
                fn on_interval(
                    now_ns: u64,
                    interval_ns: u64,
                ) -> ::std::vec::Vec<$crate::__private::IntervalPayload> {
                    with_chef(|chef| {
                        $crate::__private::on_interval_same(chef, now_ns, interval_ns)
                    })
                }
            }

            impl $crate::__private::StateGuest for NetdumplingsChefGuest {
                fn snapshot() -> ::std::vec::Vec<u8> {
                    STATE.with_borrow(|state| {
                        <$codec as $crate::__private::StateCodec<$chef>>::snapshot(state.as_ref())
                    })
                }

                fn restore(
                    state: ::std::vec::Vec<u8>,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    let restored =
                        <$codec as $crate::__private::StateCodec<$chef>>::restore(&state)?;
                    if let ::core::option::Option::Some(chef) = restored {
                        STATE.with_borrow_mut(|s| *s = ::core::option::Option::Some(chef));
                    }
                    ::core::result::Result::Ok(())
                }
            }

            // Only wasm gets the exported symbols: their names (`netdumplings:chef/...`) do
            // not link into a native cdylib, and natively the chef is only unit-tested.
            #[cfg(target_family = "wasm")]
            $crate::bindings::export!(NetdumplingsChefGuest with_types_in $crate::bindings);
        }
    };
}
