//! Typed errors of the chef host, so the kitchen can choose a policy per failure
//! (skip a chef that does not load; restart a chef that traps; quarantine a crash loop).

use std::path::PathBuf;

/// Why a chef could not be loaded. The chef is skipped; the kitchen and the other chefs
/// carry on.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The chef file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The chef file was refused before or while reading (not a regular file, too big,
    /// a symlink out of the folder, ...).
    #[error("{0}")]
    File(#[from] super::chef_file::ChefFileError),
    /// `describe` asked for more distinct link types than exist
    /// ([`super::instance::MAX_INTEREST_LINK_TYPES`]).
    #[error("the chef's interest lists {0} distinct link types (at most {max}); list the ones it reads", max = super::instance::MAX_INTEREST_LINK_TYPES)]
    TooManyLinkTypes(usize),
    /// `describe` returned a name the kitchen or the hub emits itself.
    #[error("the chef calls itself {0:?}, a name reserved for the kitchen's and the hub's own dumplings; rename it")]
    ReservedName(String),
    /// Another chef found earlier at start already has this name (the first in name
    /// order wins; a file overriding a built-in is not a duplicate).
    #[error(
        "duplicate chef name {name}: {kept} has it already (the first file in name order runs)"
    )]
    DuplicateName {
        /// The chef's name.
        name: String,
        /// Where the chef that keeps the name came from.
        kept: String,
    },
    /// A 0-byte file.
    #[error("the file is empty (0 bytes), not a WebAssembly component")]
    Empty,
    /// No `\0asm` magic: not WebAssembly at all.
    #[error("not a WebAssembly file (it does not start with the bytes 00 61 73 6d)")]
    NotWasm,
    /// A core module, not a component.
    #[error(
        "a core WebAssembly module, not a component: build chefs for wasm32-wasip2 \
         (or wrap the module with `wasm-tools component new`)"
    )]
    CoreModule,
    /// A WebAssembly binary of a version/layer this host does not know.
    #[error("unsupported WebAssembly binary version {0:#010x}")]
    UnknownBinaryVersion(u32),
    /// Compiling was stopped by a limit (time, memory) or could not run.
    #[error("compile refused: {0}")]
    CompileLimit(String),
    /// The component breaks a load-time limit (data segments, tables), checked before
    /// compiling.
    #[error("refused before compiling: {0}")]
    TooLarge(String),
    /// The component did not validate or compile.
    #[error("invalid WebAssembly component: {0}")]
    Compile(String),
    /// The component imports interfaces chefs may not use (every one is listed).
    #[error(
        "the chef imports {}; chefs are sandboxed and may not use {}",
        forbidden_list(import, why, also),
        if also.is_empty() { "it" } else { "them" }
    )]
    ForbiddenImport {
        /// The first forbidden import's full name, e.g. `wasi:filesystem/types@0.2.6`.
        import: String,
        /// What that import would give the chef.
        why: &'static str,
        /// Every further forbidden import, in the component's order, with its reason.
        also: Vec<(String, &'static str)>,
    },
    /// The component was built against another version of `wit/chef.wit`.
    #[error(
        "the chef was built for `{found}`, but this kitchen implements `{expected}`; \
         rebuild it against wit/chef.wit (0.2.x)"
    )]
    WrongWitVersion {
        /// What the chef exports or imports.
        found: String,
        /// What the kitchen implements.
        expected: &'static str,
    },
    /// The component is not a chef at all.
    #[error("the component does not export `netdumplings:chef/handler` (it exports: {exports})")]
    NotAChef {
        /// Its exports, comma-separated.
        exports: String,
    },
    /// Import resolution failed (e.g. a function signature differs from the WIT).
    #[error("cannot link the chef: {0}")]
    Link(String),
    /// Instantiation or `describe` failed.
    #[error("the chef failed to start: {0}")]
    Start(#[source] CallError),
    /// `describe` returned an unusable name.
    #[error("invalid chef name {name:?}: {why}")]
    BadName {
        /// The name the chef gave.
        name: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The engine could not be created (a wasmtime configuration problem, not the chef's).
    #[error("cannot create the WebAssembly engine: {0}")]
    Engine(String),
    /// `--trusted-chef-keys` is on and the file has no valid signature by a trusted key.
    #[error("untrusted chef refused: {reason} (key id {key_id})")]
    Untrusted {
        /// Why (unsigned, changed after signing, bad signature, untrusted key, ...).
        reason: String,
        /// The key the signature names, or `none`.
        key_id: String,
    },
}

/// "`a` (why), `b` (why)": every forbidden import of a [`LoadError::ForbiddenImport`].
fn forbidden_list(import: &str, why: &str, also: &[(String, &'static str)]) -> String {
    let mut out = format!("`{import}` ({why})");
    for (name, reason) in also {
        out.push_str(&format!(", `{name}` ({reason})"));
    }
    out
}

/// The end of a [`CallError::Timeout`] message that says the wall-clock ceiling stopped it.
fn ceiling_note(wall_ceiling: bool) -> String {
    if wall_ceiling {
        format!(
            " (stopped by the wall clock at {}x it, before using it in CPU time)",
            super::call_budget::WALL_CEILING_FACTOR
        )
    } else {
        String::new()
    }
}

/// Why a call into a chef failed. Every variant except [`CallError::Quarantined`] and
/// [`CallError::BackingOff`] poisoned the instance: it was dropped (its state is lost) and
/// will be re-instantiated.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The call ran past its deadline (an epoch deadline while guest code ran, or a
    /// blocking `wasi:io/poll` wait that outlived it): it used that much CPU time and
    /// blocking waits, or it reached its wall-clock ceiling first (`call_budget.rs`).
    #[error("ran past its {deadline_ms} ms deadline{}", ceiling_note(*.wall_ceiling))]
    Timeout {
        /// The deadline this call had, in milliseconds: the configured one, or
        /// `ChefLimits::first_call_grace` times it for the first call into a fresh
        /// instance (so the log says how long the chef really ran).
        deadline_ms: u64,
        /// Stopped by the wall-clock ceiling (`WALL_CEILING_FACTOR` x the deadline) before
        /// it had used its deadline in CPU time: its thread got little CPU (a loaded host)
        /// or was stuck outside guest code.
        wall_ceiling: bool,
    },
    /// The chef tried to grow its memory past its limit (and then trapped).
    #[error("hit its memory limit of {limit_mib} MiB")]
    MemoryLimit {
        /// The limit, in MiB.
        limit_mib: u64,
    },
    /// The chef's memory growth was refused because all chefs together hold the kitchen's
    /// budget (`--chefs-memory-mib`), not because of its own cap.
    #[error("was refused memory: all chefs together hold the kitchen's {budget_mib} MiB budget (--chefs-memory-mib)")]
    KitchenMemory {
        /// The kitchen-wide budget, in MiB.
        budget_mib: u64,
    },
    /// Any other trap: a panic, `unreachable`, an out-of-bounds access, a stack overflow.
    #[error("trapped: {0}")]
    Trap(String),
    /// The chef's output broke the contract (e.g. `describe` changed the chef's name).
    #[error("returned invalid output: {0}")]
    InvalidOutput(String),
    /// The chef failed too often (in a row, or within the quarantine window) and is not
    /// called any more; the number is the count that triggered the quarantine.
    #[error("is quarantined after {0} failures")]
    Quarantined(u32),
    /// The chef failed recently and waits for its restart backoff to pass.
    #[error("is waiting to be restarted")]
    BackingOff,
}

impl CallError {
    /// Short label for counters and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            CallError::Timeout { .. } => "timeout",
            CallError::MemoryLimit { .. } => "memory",
            CallError::KitchenMemory { .. } => "kitchen-memory",
            CallError::Trap(_) => "trap",
            CallError::InvalidOutput(_) => "invalid-output",
            CallError::Quarantined(_) => "quarantined",
            CallError::BackingOff => "backing-off",
        }
    }
}
