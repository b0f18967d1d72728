//! Rust bindings for the chef worlds: `netdumplings:chef@0.2.0` (`wit/chef.wit`, the
//! current contract) at the root of this module, and the frozen 0.1 contract
//! (`wit/v0.1/chef.wit`) in [`v0_1`].
//!
//! These are the only `bindgen!`s in the kitchen: every other module uses the 0.2 types (the
//! packet records the parser fills, the `ChefPre`/`Chef` handles the host instantiates); a
//! 0.1 chef is called through [`super::api_v0_1`], which converts at the edges.
//! Read the generated code with `WASMTIME_DEBUG_BINDGEN=1 cargo build --release -p kitchen`
//! or `cargo doc --release -p kitchen --document-private-items`.

// The generated items carry the WIT `///` docs where the WIT has them; the rest (flag
// constants, enum helpers) have none, which is not worth a lint failure.
#![allow(missing_docs)]

wasmtime::component::bindgen!({
    // The WIT lives at the workspace root so the guest SDK and the kitchen generate from
    // the same file; a chef built against another version fails admission, not at call time.
    // (wit-parser reads only the folder's own `*.wit` files and `deps/`: `wit/v0.1/` is
    // not part of this package.)
    path: "../wit",
    world: "chef",
    // Imports (our `log`) keep the defaults: synchronous, not trappable. A chef that floods
    // the log is rate-limited by the host, never killed for it, so the host function has
    // no reason to return a trap. No `tracing` flag: `log` is itself the chef's tracing.
    //
    // Exports keep the defaults too: synchronous calls. The engine runs with
    // `concurrency_support(false)` (component-model async makes every call 2.5-4x slower,
    // see shared/docs/wasm-host-notes.md §0.2), so async exports are not an option.
    //
    // `PartialEq` on the generated records lets the parser's tests compare whole packets.
    additional_derives: [PartialEq],
});

/// The frozen 0.1 contract (`wit/v0.1/chef.wit`), for chefs built before 0.2.
pub mod v0_1 {
    #![allow(missing_docs)]
    wasmtime::component::bindgen!({
        path: "../wit/v0.1",
        world: "chef",
    });

    pub use netdumplings::chef::types::*;

    /// The 0.1 handler export a 0.1 chef has.
    pub const HANDLER_EXPORT: &str = "netdumplings:chef/handler@0.1.0";
}

pub use exports::netdumplings::chef::handler::Guest as Handler;
pub use netdumplings::chef::log::Level as LogLevel;
pub use netdumplings::chef::types::*;

/// The WIT package and version this kitchen implements (the handler export a 0.2 chef has).
pub const HANDLER_EXPORT: &str = "netdumplings:chef/handler@0.2.0";

/// The optional state export of a 0.2 chef (`snapshot`/`restore`, see `state`).
pub const STATE_EXPORT: &str = "netdumplings:chef/state@0.2.0";
