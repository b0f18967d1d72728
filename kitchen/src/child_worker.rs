//! Helper child processes of `nd-sniff`, bounded in wall time, CPU, memory and output: work
//! whose cost an outsider controls and that cannot be interrupted in-process (compiling a
//! chef, compiling a `--filter` with libpcap's optimizer) runs in a child of this very
//! executable, started with a hidden first argument, so a bomb costs one child that is
//! killed, never the kitchen's memory or an unbounded wait.
//!
//! The parent side is [`run`]; the child side starts with [`limit_self`].

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Stderr kept from a child, bytes.
const MAX_STDERR: u64 = 4096;

/// How a child run ended.
#[derive(Debug)]
pub enum ChildEnd {
    /// The child exited (or was killed by a signal of its own limits) within the time.
    Exited {
        /// Its exit status.
        status: ExitStatus,
        /// Its standard output, at most `max_stdout + 1` bytes (more means "too large").
        stdout: Vec<u8>,
        /// The start of its standard error.
        stderr: Vec<u8>,
    },
    /// It ran past the timeout and was killed.
    TimedOut,
    /// `should_stop` said so while it ran (the kitchen is stopping); it was killed.
    Stopped,
}

/// Run `exe args...` with `input` on its stdin; wait at most `timeout` (polling
/// `should_stop` every 10 ms), killing the child by its PID (ours) when either ends the
/// wait. Keeps at most `max_stdout + 1` bytes of its output. `Err`: it could not start.
pub fn run(
    exe: &Path,
    args: &[String],
    input: Vec<u8>,
    timeout: Duration,
    max_stdout: u64,
    should_stop: &dyn Fn() -> bool,
) -> std::io::Result<ChildEnd> {
    let mut child = Command::new(exe)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let (Some(mut stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(std::io::Error::other("the child has no pipes"));
    };
    let writer = std::thread::spawn(move || {
        // A child killed early closes its stdin: the write error is expected then.
        let _ = stdin.write_all(&input);
    });
    let out_reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stdout
            .take(max_stdout.saturating_add(1))
            .read_to_end(&mut out);
        out
    });
    let err_reader = std::thread::spawn(move || {
        let mut err = Vec::new();
        let _ = stderr.take(MAX_STDERR).read_to_end(&mut err);
        err
    });
    let started = Instant::now();
    let ended = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if should_stop() => break Err(ChildEnd::Stopped),
            Ok(None) if started.elapsed() >= timeout => break Err(ChildEnd::TimedOut),
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        }
    };
    let status = match ended {
        Ok(status) => status,
        Err(end) => {
            // Killed by its PID (our own child); `wait` reaps it so no zombie stays.
            let _ = child.kill();
            let _ = child.wait();
            let _ = writer.join();
            let _ = out_reader.join();
            let _ = err_reader.join();
            return Ok(end);
        }
    };
    let _ = writer.join();
    Ok(ChildEnd::Exited {
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    })
}

/// The child side, first thing: die with the thread that started it, and cap this
/// process's address space (`memory_bytes`) and CPU time (`cpu_secs`). `Err`: the child
/// must not do the work (the parent is already gone, or a limit could not be set).
pub fn limit_self(memory_bytes: u64, cpu_secs: u64) -> Result<(), String> {
    // A worker left running after the kitchen ended (a signal, the end of the input) ran
    // on under init up to its CPU limit. The parent thread waits for this child, so "the
    // parent thread exited" means nobody wants the result.
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes plain integers and changes only this process.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) };
    // SAFETY: getppid has no arguments and cannot fail.
    #[allow(unsafe_code)]
    let orphaned = unsafe { libc::getppid() } == 1;
    if rc != 0 || orphaned {
        return Err("the kitchen is gone".to_owned());
    }
    set_limit(libc::RLIMIT_AS, memory_bytes)
        .and(set_limit(libc::RLIMIT_CPU, cpu_secs))
        .map_err(|e| format!("cannot limit the worker: {e}"))
}

fn set_limit(resource: libc::__rlimit_resource_t, value: u64) -> std::io::Result<()> {
    let lim = libc::rlimit {
        rlim_cur: value as libc::rlim_t,
        rlim_max: value as libc::rlim_t,
    };
    // SAFETY: `setrlimit` reads one `rlimit` we own; it only lowers this process's limits.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::setrlimit(resource, &lim) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
