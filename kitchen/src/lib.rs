//! The netdumplings kitchen: captures packets, parses them, runs sandboxed WebAssembly
//! chefs on them, and sends the dumplings they make to the hub (`nd-sniff`).
//!
//! # Layout
//!
//! * [`packet`]: capture record → WIT `packet` record + arena (etherparse, never panics).
//! * [`chef_host`]: the wasmtime host: engine, limits, cache, admission, instances, logs.
//! * [`chefs`]: finding chefs (built-in and `--chef-dir`), selecting them by name.
//! * [`builtin`]: the sample chefs embedded at build time by `build.rs`.
//! * [`batch`]: parsed packets grouped into batches, with the interval pokes between them;
//!   [`poke_clock`]: when those pokes fall, whatever the capture's times do.
//! * [`dispatch`]: runs batches and pokes on the chefs: interest filtering, payload
//!   validation, encoding.
//! * [`replay`]: `-r FILE` on two threads (read + parse, chefs).
//! * [`duty`]: live, a chef over its share of the kitchen's time sheds its own batches.
//! * [`file_filter`]: the BPF `--filter` applied to replayed files.
//! * [`flow_stage`]: connection tracking (crate `flowtrack`) when a chef asks for flows.
//! * [`stream_stage`]: TCP stream reassembly (`flowtrack::reassembly`) when a chef asks
//!   for stream bytes.
//! * [`output`]: stdout output and a tee; [`hub_client`]: the WebSocket client to the hub.
//! * [`hello`]: the hello's chef list and identities, current across reloads.
//! * [`reload`]: hot reload of `--chef-dir`; [`status`]: the `KitchenStatusChef` report;
//!   [`metrics`]: `/metrics` from snapshots of the same counters.
//! * [`progress`]: the replay's progress line on a terminal.
//! * [`crash_capsule`]: `--chef-crash-dir`, the input of a crashing chef call saved as a
//!   pcap plus a JSON note, written by a background thread.
//!
//! The binary (`src/main.rs`, `src/cli.rs`, `src/app.rs`) parses arguments and wires these
//! together; the benchmark is `src/bin/nd-kitchen-bench.rs`.
//!
//! Architecture invariant: nothing a chef does (trap, loop, allocate, return garbage) can
//! stop the kitchen or affect another chef; see [`chef_host`].

pub mod batch;
pub mod builtin;
pub mod chef_host;
pub mod chef_queue;
pub mod chefs;
pub mod crash_capsule;
pub mod dispatch;
pub mod duty;
pub mod file_filter;
pub mod flow_stage;
pub mod hello;
pub mod hub_client;
pub mod metrics;
pub mod origin;
pub mod output;
pub mod packed_batch;
pub mod packet;
pub mod poke_clock;
pub mod progress;
pub mod reload;
pub mod replay;
pub mod status;
pub mod stream_stage;
