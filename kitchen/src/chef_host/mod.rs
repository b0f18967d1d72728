//! The chef host: loads chef components, sandboxes them and calls them.
//!
//! One module per concern, as in wasmtime's examples:
//! * [`bindings`]: the `bindgen!`s of the chef worlds (0.2, and the frozen 0.1);
//! * [`api`]: which contract a chef was built against, and the 0.1 adapter;
//! * [`engine`]: the `Engine` configuration and the epoch ticker (deadlines);
//! * [`call_budget`]: a call's deadline charged in its thread's CPU time (and blocking
//!   waits), under a wall-clock ceiling;
//! * [`limits`]: memory, time and output caps per chef, and the kitchen-wide memory budget;
//! * [`output_budget`]: payload bytes per call and per second, per chef;
//! * [`cache`]: compiled-chef cache on disk;
//! * [`chef_file`]: reading a chef file without blocking, within the size cap;
//! * [`inspect`]: data segment, memory and table sizes checked before compiling;
//! * [`compile_worker`]: compiling in a child process bounded in time and memory;
//! * [`admission`]: what a file must be (a component with only allowed imports);
//! * [`instance`]: a running chef and its counters;
//! * [`origin`]: what a component says about how it was made (language, size);
//! * [`failure_policy`]: when a failed chef is restarted or quarantined;
//! * [`clocks`]: the clocks and randomness a chef sees (live, or replay's capture time);
//! * [`chef_log`]: the chef's `log` import and WASI stdout/stderr, into `tracing`;
//! * [`poll`]: `wasi:io/poll` bounded by the call's budget, its waits charged to it (a
//!   sleeping chef cannot hold the kitchen: epochs do not interrupt host calls);
//! * [`state`]: a chef's state carried across a hot reload (`snapshot`/`restore`);
//! * [`wire`]: bulk lowering of `list<packet>` (wasmtime's generic one is per field);
//! * [`packet_answer`]: a returned `list<packet-dumpling>` decided where it lies in the
//!   chef's memory (caps and budgets before any copy; kept payloads copied once).
//!
//! Architecture invariant: a chef can never stall or crash the kitchen. Every call has an
//! epoch deadline (CPU time, under a wall-clock ceiling) and a memory cap, a failed instance is dropped and re-instantiated, and a
//! crash loop ends in quarantine. Errors are typed ([`LoadError`], [`CallError`]) so the
//! kitchen chooses the policy.

pub mod admission;
pub mod api;
pub mod bindings;
mod bulk_lower;
pub mod cache;
pub mod call_budget;
pub mod chef_file;
pub mod chef_log;
pub mod chef_text;
pub mod clocks;
pub mod compile_worker;
pub mod cpu_time;
pub mod engine;
pub mod error;
pub mod failure_policy;
pub mod inspect;
pub mod instance;
pub mod interval_bytes;
pub mod interval_same;
pub mod limits;
pub mod origin;
pub mod output_budget;
pub mod packed_json;
pub mod packet_answer;
pub mod poll;
pub mod rollback;
pub mod signature;
pub mod state;
pub mod wire;
pub mod wire_flow;

use std::path::{Path, PathBuf};

use wasmtime::component::{HasData, HasSelf, Linker, ResourceTable};
use wasmtime::Engine;
use wasmtime_wasi::cli::{WasiCli, WasiCliView};
use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView};
use wasmtime_wasi::random::WasiRandom;

pub use api::ChefApi;
pub use cache::{ArtifactCache, CacheOutcome};
pub use error::{CallError, LoadError};
pub use instance::{ChefDescription, ChefSource, ChefStats, DriverSet, LoadedChef};
pub use limits::{ChefLimits, MemoryBudget};
pub use signature::{ChefTrust, Provenance};
pub use wire::WirePacket;

use bindings::Chef;
use instance::ChefState;

/// Where compiled chefs are cached.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CacheSetting {
    /// `$XDG_CACHE_HOME/netdumplings` or `~/.cache/netdumplings`.
    #[default]
    Default,
    /// This directory.
    Dir(PathBuf),
    /// Compile every chef at every start.
    Disabled,
}

/// The engine, linker, ticker and cache shared by every chef of a kitchen.
pub struct ChefHost {
    engine: Engine,
    linker: Linker<ChefState>,
    limits: ChefLimits,
    cache: Option<ArtifactCache>,
    /// In-process, or in a bounded child process (`nd-sniff`).
    compiler: compile_worker::Compiler,
    /// Replay sandboxing: chefs see the capture clock and seeded randomness.
    deterministic: bool,
    /// Which chef files may run (`--trusted-chef-keys`), checked first in [`Self::load`].
    trust: ChefTrust,
    /// Bumps the epoch for every store of `engine`; stops when the host is dropped.
    _ticker: engine::EpochTicker,
}

impl ChefHost {
    /// Create the host: engine, ticker thread, linker with the chef imports, cache.
    pub fn new(limits: ChefLimits, cache: CacheSetting) -> Result<Self, LoadError> {
        let engine = engine::build_engine()?;
        let ticker = engine::EpochTicker::start(&engine)
            .map_err(|e| LoadError::Engine(format!("cannot start the epoch ticker: {e}")))?;
        let linker = build_linker(&engine).map_err(|e| LoadError::Engine(format!("{e:#}")))?;
        let dir = match cache {
            CacheSetting::Default => {
                let dir = ArtifactCache::default_dir();
                if dir.is_none() {
                    // The cache was off without a word when neither variable was set.
                    tracing::warn!(
                        "compiled-chef cache disabled: no folder for it (neither \
                         $XDG_CACHE_HOME nor $HOME is set), so chefs are compiled at every \
                         start; {}",
                        cache::FLAGS_HINT
                    );
                }
                dir
            }
            CacheSetting::Dir(d) => Some(d),
            CacheSetting::Disabled => None,
        };
        let cache = dir.and_then(|d| match ArtifactCache::open(d.clone(), &engine) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(dir = %dumpling::text::escape_path(&d), error = %e,
                    "compiled-chef cache disabled (chefs are compiled at every start); {}",
                    cache::FLAGS_HINT);
                None
            }
        });
        Ok(ChefHost {
            engine,
            linker,
            limits,
            cache,
            compiler: compile_worker::Compiler::InProcess,
            deterministic: false,
            trust: ChefTrust::default(),
            _ticker: ticker,
        })
    }

    /// Make chefs loaded from now on deterministic (for replays): their WASI wall clock
    /// reads the kitchen's clock (capture time), their monotonic clock starts every call
    /// there and advances in real time during the call, and their randomness is a
    /// fixed sequence derived from where the chef was loaded from. Live kitchens keep the
    /// host's clocks and randomness.
    pub fn set_deterministic(&mut self, on: bool) {
        self.deterministic = on;
    }

    /// Compile chefs loaded from now on with `compiler` (`nd-sniff` uses a bounded child
    /// process; the default compiles in this process).
    pub fn set_compiler(&mut self, compiler: compile_worker::Compiler) {
        self.compiler = compiler;
    }

    /// Bound the compiled-chef cache to `bytes` (oldest entries evicted first).
    pub fn set_cache_max_bytes(&mut self, bytes: u64) {
        if let Some(c) = self.cache.as_mut() {
            c.set_max_bytes(bytes);
        }
    }

    /// Require chef files to be signed by trusted keys (`--trusted-chef-keys`), from now on.
    /// The rollback memory of signed chefs is kept in the compiled-chef cache folder (only
    /// this user can write it), or for this run only when the cache is off (with a warning).
    pub fn set_trust(&mut self, mut trust: ChefTrust) {
        trust.remember_in(self.cache_dir());
        self.trust = trust;
    }

    /// Which chef files may run.
    pub fn trust(&self) -> &ChefTrust {
        &self.trust
    }

    /// The engine (for benchmarks and tests).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The limits every chef gets.
    pub fn limits(&self) -> &ChefLimits {
        &self.limits
    }

    /// The cache directory, if caching is on.
    pub fn cache_dir(&self) -> Option<&Path> {
        self.cache.as_ref().map(|c| c.dir())
    }

    /// Load a chef file (read with [`chef_file::read_chef_file`]: never blocks, never
    /// reads more than `limits.max_file_bytes`; a symlink must stay in the file's folder).
    pub fn load_file(&self, path: &Path) -> Result<LoadedChef, LoadError> {
        let bytes = self.read_file(None, path)?;
        self.load(ChefSource::File(path.to_owned()), &bytes)
    }

    /// Read a chef file of the folder `dir` (its parent when `None`) with
    /// [`chef_file::read_chef_file`] and this host's size cap. A file the OS cannot open
    /// (missing, no permission) is [`LoadError::Io`]; a refused one is [`LoadError::File`].
    pub fn read_file(&self, dir: Option<&Path>, path: &Path) -> Result<Vec<u8>, LoadError> {
        chef_file::read_chef_file(dir, path, self.limits.max_file_bytes).map_err(|e| match e {
            chef_file::ChefFileError::Io(source) => LoadError::Io {
                path: PathBuf::from(dumpling::text::escape_path(path)),
                source,
            },
            other => LoadError::File(other),
        })
    }

    /// Load a chef from its component bytes: check, compile (or load from the cache),
    /// check imports/exports, pre-instantiate, instantiate, `describe`.
    pub fn load(&self, source: ChefSource, wasm: &[u8]) -> Result<LoadedChef, LoadError> {
        // Before anything parses the bytes: an untrusted file gets no further.
        let (provenance, accepted) = self.trust.check(&source, wasm)?;
        admission::check_binary(wasm)?;
        inspect::check_sizes(wasm, &self.limits)?;
        // The built-in chefs are part of this binary (trusted, known to compile quickly):
        // in-process, without a child process per chef at every start.
        let compiler = match source {
            ChefSource::Builtin(_) => &compile_worker::Compiler::InProcess,
            ChefSource::File(_) => &self.compiler,
        };
        let (component, outcome) = match &self.cache {
            Some(cache) => cache.load_or_compile(&self.engine, compiler, wasm)?,
            None => (
                compile_worker::compile(compiler, &self.engine, wasm)?,
                CacheOutcome::Compiled,
            ),
        };
        tracing::debug!(source = %source, cache = ?outcome, "chef compiled");
        let api = admission::check_component(&self.engine, &component)?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Link(format!("{e:#}")))?;
        let pre = api::AnyPre::new(api, pre).map_err(|e| LoadError::Link(format!("{e:#}")))?;
        let env = if self.deterministic {
            use sha2::{Digest, Sha256};
            let mut seed = [0u8; 32];
            seed.copy_from_slice(&Sha256::digest(source.to_string().as_bytes()));
            clocks::Environment::Replay {
                clock: std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0)),
                call_start: std::sync::Arc::new(std::sync::atomic::AtomicU64::new(
                    clocks::process_epoch().elapsed().as_nanos() as u64,
                )),
                seed,
            }
        } else {
            clocks::Environment::Live
        };
        let mut chef = LoadedChef::start(&self.engine, pre, &self.limits, source, env)?;
        chef.set_provenance(provenance);
        // Only now, with the version loaded: a version merely checked (or refused later in
        // the load) must not raise the rollback mark and lock out the one running.
        if let Some(a) = &accepted {
            self.trust.accepted(a);
        }
        Ok(chef)
    }
}

/// `HasData` projection for the `wasi:io` host traits, which are implemented on the
/// resource table alone (wasmtime-wasi's own equivalent is private).
struct HasIo;

impl HasData for HasIo {
    type Data<'a> = &'a mut ResourceTable;
}

/// The linker every chef is instantiated with: the chef world's own imports plus only the
/// WASI interfaces listed in [`admission::ALLOWED_WASI`] (no filesystem, no sockets).
fn build_linker(engine: &Engine) -> wasmtime::Result<Linker<ChefState>> {
    use wasmtime_wasi::p2::bindings::sync;
    use wasmtime_wasi::p2::bindings::{cli, clocks, random};
    use wasmtime_wasi::WasiView;

    let mut linker: Linker<ChefState> = Linker::new(engine);
    Chef::add_to_linker::<ChefState, HasSelf<ChefState>>(&mut linker, |s| s)?;
    // 0.1 chefs import `log@0.1.0`; both versions live in one linker (different names).
    bindings::v0_1::Chef::add_to_linker::<ChefState, HasSelf<ChefState>>(&mut linker, |s| s)?;

    let l = &mut linker;
    sync::io::error::add_to_linker::<ChefState, HasIo>(l, |t| t.ctx().table)?;
    // Not wasmtime-wasi's poll: ours gives up (as a timeout) at the call's deadline.
    sync::io::poll::add_to_linker::<ChefState, poll::HasDeadlinePoll>(l, |t| t.deadline_poll())?;
    sync::io::streams::add_to_linker::<ChefState, HasIo>(l, |t| t.ctx().table)?;
    clocks::wall_clock::add_to_linker::<ChefState, WasiClocks>(l, ChefState::clocks)?;
    clocks::monotonic_clock::add_to_linker::<ChefState, WasiClocks>(l, ChefState::clocks)?;
    random::random::add_to_linker::<ChefState, WasiRandom>(l, |t| t.ctx().ctx.random())?;
    random::insecure::add_to_linker::<ChefState, WasiRandom>(l, |t| t.ctx().ctx.random())?;
    random::insecure_seed::add_to_linker::<ChefState, WasiRandom>(l, |t| t.ctx().ctx.random())?;
    cli::exit::add_to_linker::<ChefState, WasiCli>(l, ChefState::cli)?;
    cli::environment::add_to_linker::<ChefState, WasiCli>(l, ChefState::cli)?;
    cli::stdin::add_to_linker::<ChefState, WasiCli>(l, ChefState::cli)?;
    cli::stdout::add_to_linker::<ChefState, WasiCli>(l, ChefState::cli)?;
    cli::stderr::add_to_linker::<ChefState, WasiCli>(l, ChefState::cli)?;
    cli::terminal_input::add_to_linker::<ChefState, WasiCli>(l, ChefState::cli)?;
    cli::terminal_output::add_to_linker::<ChefState, WasiCli>(l, ChefState::cli)?;
    cli::terminal_stdin::add_to_linker::<ChefState, WasiCli>(l, ChefState::cli)?;
    cli::terminal_stdout::add_to_linker::<ChefState, WasiCli>(l, ChefState::cli)?;
    cli::terminal_stderr::add_to_linker::<ChefState, WasiCli>(l, ChefState::cli)?;
    Ok(linker)
}
