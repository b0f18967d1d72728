//! Compiling a chef in a child process, bounded in time and memory, so a compile bomb (a
//! small component with one huge, branchy function: 0.3 MB took 22 s and 0.5 GB, 4 MB took
//! 40 s and 3.8 GB) costs one child and is refused with a reason, never the kitchen's
//! memory or an unbounded wait.
//!
//! The child is `nd-sniff` itself, run with the hidden first argument [`WORKER_ARG`]: it
//! limits itself (`RLIMIT_AS` = the compile memory cap, `RLIMIT_CPU` = the timeout + 1 s),
//! reads the component from stdin, compiles it with the kitchen's engine configuration
//! ([`super::engine::build_engine`]) and writes `Component::serialize` to stdout. The parent
//! waits at most the timeout, then kills the child (by its PID, it is ours) and refuses
//! the chef. A child that dies (out of memory: allocation failure aborts it; CPU limit:
//! SIGXCPU) is a refusal naming the limit.
//!
//! Trust: the parent deserializes (runs) what the child wrote. The child is this very
//! executable, started by us with a pipe only we hold, so its output is exactly what
//! `Component::new` + `serialize` would have produced in-process; wasmtime still checks
//! the header and engine compatibility on deserialization.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::component::Component;
use wasmtime::Engine;

use super::error::LoadError;
use crate::child_worker::{self, ChildEnd};

/// First argument that makes `nd-sniff` a compile worker (not shown in `--help`).
pub const WORKER_ARG: &str = "--internal-compile-chef-worker";
/// Default compile timeout (`--chef-compile-timeout-secs`): a componentized Python/JS
/// chef compiles in ~10 s on one core; a loaded 2-core box may double that.
pub const DEFAULT_COMPILE_TIMEOUT_SECS: u64 = 60;
/// Default compile memory cap, MiB (`--chef-compile-memory-mib`): address space of the
/// compile child, which includes its own code and thread stacks (~300 MiB).
pub const DEFAULT_COMPILE_MEMORY_MIB: u64 = 2048;
/// Largest compiled artifact accepted from the child, bytes.
const MAX_ARTIFACT_BYTES: u64 = 1 << 30;

/// How chefs are compiled.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Compiler {
    /// In this process, unbounded (libraries, tests and benchmarks that use the host
    /// directly).
    #[default]
    InProcess,
    /// In a child process of `exe` (an `nd-sniff` binary), bounded.
    Child {
        /// The executable to run with [`WORKER_ARG`].
        exe: PathBuf,
        /// Wall-clock limit.
        timeout: Duration,
        /// Address-space limit, bytes.
        memory_bytes: u64,
    },
}

/// Compile `wasm` as configured.
pub fn compile(compiler: &Compiler, engine: &Engine, wasm: &[u8]) -> Result<Component, LoadError> {
    match compiler {
        Compiler::InProcess => {
            Component::new(engine, wasm).map_err(|e| LoadError::Compile(format!("{e:#}")))
        }
        Compiler::Child {
            exe,
            timeout,
            memory_bytes,
        } => {
            let artifact = compile_in_child(exe, *timeout, *memory_bytes, wasm)?;
            // SAFETY: the bytes are `Component::serialize` output of this same executable
            // (see the module docs: the child is `exe`, our own binary, fed through a pipe
            // only we hold), for an engine built by the same `build_engine`. wasmtime checks
            // the header and the engine's compatibility hash before using them and returns an
            // error on any mismatch.
            #[allow(unsafe_code)]
            let c = unsafe { Component::deserialize(engine, &artifact) };
            c.map_err(|e| LoadError::Compile(format!("the compiled chef does not load: {e:#}")))
        }
    }
}

fn compile_in_child(
    exe: &std::path::Path,
    timeout: Duration,
    memory_bytes: u64,
    wasm: &[u8],
) -> Result<Vec<u8>, LoadError> {
    let fail = |what: String| LoadError::CompileLimit(what);
    if STOPPING.load(Ordering::Relaxed) {
        return Err(fail("the kitchen is stopping; not compiled".to_owned()));
    }
    let cpu_secs = timeout.as_secs().saturating_add(1);
    let args = [
        WORKER_ARG.to_owned(),
        memory_bytes.to_string(),
        cpu_secs.to_string(),
    ];
    let stopping = || STOPPING.load(Ordering::Relaxed);
    let end = child_worker::run(
        exe,
        &args,
        wasm.to_vec(),
        timeout,
        MAX_ARTIFACT_BYTES,
        &stopping,
    )
    .map_err(|e| {
        fail(format!(
            "cannot start the compile worker {}: {e}",
            exe.display()
        ))
    })?;
    let (status, out, err) = match end {
        ChildEnd::Exited {
            status,
            stdout,
            stderr,
        } => (status, stdout, stderr),
        ChildEnd::Stopped => {
            return Err(fail(
                "the kitchen is stopping; the compile was killed".to_owned(),
            ))
        }
        ChildEnd::TimedOut => {
            return Err(fail(format!(
                "compiling took longer than {} s (--chef-compile-timeout-secs); the compile \
                 was killed",
                timeout.as_secs_f64()
            )))
        }
    };
    if status.success() && (out.len() as u64) <= MAX_ARTIFACT_BYTES {
        return Ok(out);
    }
    use std::os::unix::process::ExitStatusExt;
    let why = match status.signal() {
        Some(libc::SIGXCPU) | Some(libc::SIGKILL) => format!(
            "compiling used more than {cpu_secs} s of CPU (--chef-compile-timeout-secs); stopped"
        ),
        Some(libc::SIGABRT) | Some(libc::SIGSEGV) | Some(libc::SIGBUS) => format!(
            "compiling needed more than {} MiB of memory (--chef-compile-memory-mib); stopped",
            memory_bytes >> 20
        ),
        _ if status.success() => "the compiled chef is larger than 1 GiB".to_owned(),
        _ => {
            let text = String::from_utf8_lossy(&err);
            let text = text.trim();
            if text.contains("memory allocation") || text.contains("out of memory") {
                format!(
                    "compiling needed more than {} MiB of memory (--chef-compile-memory-mib); \
                     stopped",
                    memory_bytes >> 20
                )
            } else {
                // wasmtime's own refusal (invalid component): the same error as in-process.
                return Err(LoadError::Compile(dumpling::text::escape(text, 1024)));
            }
        }
    };
    Err(fail(why))
}

/// Set once the kitchen is stopping: compiles in progress are killed and new ones refused,
/// so a signal during a slow start (a folder of large chefs) ends the run at once instead of
/// after every pending compile (one per file, each up to `--chef-compile-timeout-secs`).
static STOPPING: AtomicBool = AtomicBool::new(false);

/// The kitchen is stopping: kill the compile workers running now and start no more.
pub fn stop_all() {
    STOPPING.store(true, Ordering::Relaxed);
}

/// The worker side: `nd-sniff --internal-compile-chef-worker MEMORY_BYTES CPU_SECS`.
/// Limits itself, compiles stdin, writes the artifact to stdout. Exit 0 or 1 (message on
/// stderr).
pub fn worker_main(args: &[String]) -> ExitCode {
    let parse = |i: usize| args.get(i).and_then(|a| a.parse::<u64>().ok());
    let (Some(memory), Some(cpu)) = (parse(0), parse(1)) else {
        eprintln!("usage: nd-sniff {WORKER_ARG} MEMORY_BYTES CPU_SECS (internal)");
        return ExitCode::from(2);
    };
    if let Err(e) = child_worker::limit_self(memory, cpu) {
        eprintln!("{e}");
        return ExitCode::from(1);
    }
    let mut wasm = Vec::new();
    if let Err(e) = std::io::stdin().lock().read_to_end(&mut wasm) {
        eprintln!("cannot read the component: {e}");
        return ExitCode::from(1);
    }
    let result = super::engine::build_engine()
        .map_err(|e| e.to_string())
        .and_then(|engine| Component::new(&engine, &wasm).map_err(|e| format!("{e:#}")))
        .and_then(|c| c.serialize().map_err(|e| format!("{e:#}")));
    match result {
        Ok(bytes) => {
            let mut out = std::io::stdout().lock();
            if out.write_all(&bytes).and_then(|()| out.flush()).is_err() {
                return ExitCode::from(1);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}
