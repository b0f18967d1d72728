//! Checking a `--filter` expression in a bounded child before libpcap compiles it in the
//! kitchen. libpcap's optimizer is superlinear and cannot be interrupted: 400 `host` terms
//! took 3 s, 600 took 10 s, 3 000 more than 9 minutes, all deaf to Ctrl-C. So each
//! compile the kitchen is about to do (per live interface, per link type of a replayed
//! file) is first done by a child of this executable (see [`crate::child_worker`]), killed
//! after [`CHECK_TIMEOUT`]; a filter that does not compile in time is refused with a reason.
//! The compile that follows in-process is the same deterministic work, so it is bounded by
//! what the child just did.

use std::collections::HashSet;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::file_filter::FilterError;
use crate::child_worker::{self, ChildEnd};

/// First argument that makes `nd-sniff` a filter-check worker (not shown in `--help`).
pub const WORKER_ARG: &str = "--internal-check-filter-worker";
/// The longest libpcap may take to compile a filter for one link type, by default
/// (`--filter-compile-timeout-secs`). tcpdump's users write filters that compile in
/// milliseconds; 200 `host` terms take ~0.4 s here.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(10);
/// Address-space cap of the worker: `nd-sniff`'s own mappings plus libpcap's optimizer
/// (600 `host` terms peaked at 56 MB).
const CHECK_MEMORY_BYTES: u64 = 1 << 30;
/// Largest expression sent to a worker, bytes (a command line holds at most ~2 MiB).
const MAX_EXPRESSION_BYTES: u64 = 4 << 20;
/// Exit status of a worker whose libpcap refused the expression (message on stderr).
const EXIT_REFUSED: u8 = 3;

/// Runs the check in a child of `exe` (an `nd-sniff` binary). Clones share what passed,
/// so the same expression and link type is checked once.
#[derive(Debug, Clone)]
pub struct FilterCheck {
    exe: PathBuf,
    timeout: Duration,
    stop: Arc<AtomicBool>,
    passed: Arc<Mutex<HashSet<(u64, u32)>>>,
}

impl FilterCheck {
    /// Check with workers of `exe`; a set `stop` (the kitchen is stopping) kills a worker.
    pub fn new(exe: PathBuf, stop: Arc<AtomicBool>) -> Self {
        FilterCheck {
            exe,
            timeout: CHECK_TIMEOUT,
            stop,
            passed: Arc::default(),
        }
    }

    /// The same, with another time limit.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Does `expression` compile for `link_type` within the time limit? `Err` names why
    /// not: libpcap's own message, the time limit, or the worker's failure.
    pub fn check(&self, expression: &str, link_type: u32) -> Result<(), FilterError> {
        let key = (expression_hash(expression), link_type);
        if self.passed().contains(&key) {
            return Ok(());
        }
        self.check_in_child(expression, link_type)?;
        self.passed().insert(key);
        Ok(())
    }

    fn passed(&self) -> std::sync::MutexGuard<'_, HashSet<(u64, u32)>> {
        self.passed.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn check_in_child(&self, expression: &str, link_type: u32) -> Result<(), FilterError> {
        let refuse = |message: String| FilterError {
            expression: expression.to_owned(),
            message,
            for_every_link_type: true,
        };
        if expression.len() as u64 > MAX_EXPRESSION_BYTES {
            return Err(refuse(format!(
                "longer than {} MiB",
                MAX_EXPRESSION_BYTES >> 20
            )));
        }
        let cpu_secs = self.timeout.as_secs().saturating_add(1);
        let args = [
            WORKER_ARG.to_owned(),
            link_type.to_string(),
            CHECK_MEMORY_BYTES.to_string(),
            cpu_secs.to_string(),
        ];
        let stop = || self.stop.load(Ordering::Relaxed);
        let end = child_worker::run(
            &self.exe,
            &args,
            expression.as_bytes().to_vec(),
            self.timeout,
            64,
            &stop,
        )
        .map_err(|e| {
            refuse(format!(
                "cannot start the filter check {}: {e}",
                self.exe.display()
            ))
        })?;
        let too_complex = || {
            refuse(format!(
                "too complex: libpcap did not compile it for link type {link_type} within {} s \
                 (--filter-compile-timeout-secs; write fewer terms, e.g. `net 10.0.0.0/24` \
                 instead of many `host` terms)",
                self.timeout.as_secs_f64()
            ))
        };
        match end {
            ChildEnd::Exited { status, .. } if status.success() => Ok(()),
            ChildEnd::Exited { status, stderr, .. } => {
                use std::os::unix::process::ExitStatusExt;
                let text = String::from_utf8_lossy(&stderr);
                if status.code() == Some(i32::from(EXIT_REFUSED)) {
                    Err(FilterError {
                        for_every_link_type: false,
                        ..refuse(text.trim().to_owned())
                    })
                } else if matches!(status.signal(), Some(libc::SIGXCPU | libc::SIGKILL)) {
                    Err(too_complex())
                } else {
                    Err(refuse(format!(
                        "libpcap failed compiling it (more than {} MiB of memory?): {}",
                        CHECK_MEMORY_BYTES >> 20,
                        text.trim()
                    )))
                }
            }
            ChildEnd::TimedOut => Err(too_complex()),
            ChildEnd::Stopped => Err(refuse(
                "the kitchen is stopping; the filter check was killed".to_owned(),
            )),
        }
    }
}

fn expression_hash(expression: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    expression.hash(&mut h);
    h.finish()
}

/// The worker side: `nd-sniff --internal-check-filter-worker LINK_TYPE MEMORY_BYTES
/// CPU_SECS`, the expression on stdin. Exit 0 when it compiles, [`EXIT_REFUSED`] with
/// libpcap's message on stderr when it does not, 1 or 2 on other failures.
pub fn worker_main(args: &[String]) -> ExitCode {
    let parse = |i: usize| args.get(i).and_then(|a| a.parse::<u64>().ok());
    let link_type = args.first().and_then(|a| a.parse::<u32>().ok());
    let (Some(link_type), Some(memory), Some(cpu)) = (link_type, parse(1), parse(2)) else {
        eprintln!("usage: nd-sniff {WORKER_ARG} LINK_TYPE MEMORY_BYTES CPU_SECS (internal)");
        return ExitCode::from(2);
    };
    if let Err(e) = child_worker::limit_self(memory, cpu) {
        eprintln!("{e}");
        return ExitCode::from(1);
    }
    let mut expression = String::new();
    if let Err(e) = std::io::stdin()
        .lock()
        .take(MAX_EXPRESSION_BYTES)
        .read_to_string(&mut expression)
    {
        eprintln!("cannot read the expression: {e}");
        return ExitCode::from(1);
    }
    match super::file_filter::compile(&expression, link_type) {
        Ok(_) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{message}");
            ExitCode::from(EXIT_REFUSED)
        }
    }
}
