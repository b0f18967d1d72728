//! The netdumplings kitchen: captures packets, parses them, runs sandboxed WebAssembly
//! chefs on them, and sends the dumplings they make to the hub (`nd-sniff`).
//!
//! # Layout
//!
//! The folders follow a packet from capture to the hub:
//!
//! * [`input`]: capture input as the kitchen adjusts it: the BPF `--filter` for replayed
//!   files, the replay's progress line (reading captures is the `capture` crate's job).
//! * [`parse`]: parse and batch: capture record → WIT `packet` record + arena
//!   ([`parse::packet`], etherparse, never panics); batches with the interval pokes between
//!   them ([`parse::batch`], [`parse::poke_clock`]); connection tracking and TCP stream
//!   reassembly, paid for only when a chef asks ([`parse::flow_stage`],
//!   [`parse::stream_stage`]); the packed form for lean chefs ([`parse::packed_batch`]).
//! * [`dispatch`]: runs batches and pokes on the chefs: interest matching
//!   ([`dispatch::interest`]), per-chef queues ([`dispatch::chef_queue`]), live load
//!   shedding ([`dispatch::duty`]), payload validation and encoding.
//! * [`outputs`]: where dumplings go ([`outputs::DumplingSink`]: stdout, the hub client) and
//!   what the kitchen says of itself: hello, `KitchenStatusChef`, `/metrics`, crash capsules.
//! * [`chef_host`]: the wasmtime host: engine, limits, cache, admission, instances, logs.
//! * [`chefs`]: which chefs run: built-in and `--chef-dir`, selection by name, hot reload.
//! * [`child_worker`]: bounded child processes of `nd-sniff` for work that cannot be
//!   interrupted in-process (chef compiles, `--filter` compile checks).
//! * [`run`]: the runs that wire these together on their threads (`-r FILE`: [`run::replay`];
//!   `-i IFACE`: [`run::live`]), each with one between-batches hook ([`run::BetweenSteps`]).
//!
//! The binary (`src/main.rs`, `src/cli.rs`, `src/app.rs`) parses arguments and wires these
//! together; the benchmarks are `src/bin/nd-*-bench.rs`.
//!
//! Architecture invariant: nothing a chef does (trap, loop, allocate, return garbage) can
//! stop the kitchen or affect another chef; see [`chef_host`].

pub mod chef_host;
pub mod chefs;
pub mod child_worker;
pub mod dispatch;
pub mod input;
pub mod outputs;
pub mod parse;
pub mod run;
