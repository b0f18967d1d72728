//! Helpers for the end-to-end tests in `tests/tests/`: find the workspace's release
//! binaries and data, run processes that are killed when the test ends (by PID, never by
//! name), pick free loopback ports, and wait with a deadline.
//!
//! The binaries are the ones `cargo build --release --workspace` produced; the README's
//! test command builds them before running the tests.

use std::io::{BufRead, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The workspace root (the folder holding the top-level `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Path of a release binary of this workspace, e.g. `bin("nd-sniff")`.
///
/// Panics with the command to run when it has not been built.
pub fn bin(name: &str) -> PathBuf {
    let path = workspace_root().join("target/release").join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --release --workspace` first",
        path.display()
    );
    path
}

/// The shared material folder (`ND_SHARED`, default `../shared` beside the checkout).
///
/// Returns `None` (and says so on stderr) when it is absent outside CI; in CI (`CI` set)
/// its absence is a failure, since CI always has it.
pub fn shared_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("ND_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("../shared"));
    if dir.join("pcaps/MANIFEST.tsv").exists() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "shared material not found at {} (set ND_SHARED)",
        dir.display()
    );
    eprintln!(
        "SKIP: shared material not found at {} (set ND_SHARED to run this test)",
        dir.display()
    );
    None
}

/// A capture from the shared corpus, or `None` when the corpus is absent (see [`shared_dir`]).
pub fn shared_pcap(name: &str) -> Option<PathBuf> {
    shared_dir().map(|d| d.join("pcaps").join(name))
}

/// A file under `tests/data/`.
pub fn test_data(rel: &str) -> PathBuf {
    workspace_root().join("tests/data").join(rel)
}

/// A free TCP port on 127.0.0.1 (bound, then released; good enough for tests that start
/// their server right away).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// A child process that is killed (by its PID) and reaped when dropped.
///
/// Its stdout and stderr are drained by two threads from the start, so a child that
/// writes more than a pipe holds never blocks on a full pipe while the test waits.
pub struct ChildGuard {
    /// The running process (its stdout/stderr are taken by the drain threads).
    pub child: Child,
    /// A name for messages.
    pub name: String,
    stdout: Option<std::thread::JoinHandle<Vec<u8>>>,
    stderr: Option<std::thread::JoinHandle<Vec<u8>>>,
}

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> Option<std::thread::JoinHandle<Vec<u8>>> {
    pipe.map(|mut p| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = p.read_to_end(&mut buf);
            buf
        })
    })
}

impl ChildGuard {
    /// Start `cmd` with stdout and stderr piped.
    pub fn spawn(name: &str, cmd: &mut Command) -> ChildGuard {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let stdout = drain(child.stdout.take());
        let stderr = drain(child.stderr.take());
        ChildGuard {
            child,
            name: name.to_owned(),
            stdout,
            stderr,
        }
    }

    /// Send SIGINT (as Ctrl-C would) to this process only.
    pub fn interrupt(&self) {
        signal(self.child.id(), "INT");
    }

    /// Send SIGTERM to this process only.
    pub fn terminate(&self) {
        signal(self.child.id(), "TERM");
    }

    /// Send SIGSTOP to this process only: it keeps its sockets open but answers nothing,
    /// like a process on a frozen host. Dropping the guard still kills it (SIGKILL works
    /// on a stopped process).
    pub fn freeze(&self) {
        signal(self.child.id(), "STOP");
    }

    /// Interrupt (SIGINT) and wait for the end within `limit`; still running after 3 s, it
    /// gets SIGTERM. For the original Python tools: a Python started with SIGINT ignored
    /// keeps it ignored, and a test run started as a background job of a non-interactive
    /// shell (`./test.sh &`) passes SIG_IGN for SIGINT down to every child, so Ctrl-C can
    /// never reach them there (two CI runs: no word and no exit within 20 s). Give such a
    /// process `PYTHONUNBUFFERED=1` so that what it printed is not lost to the SIGTERM.
    pub fn interrupt_then_terminate(mut self, limit: Duration) -> Output {
        self.interrupt();
        let deadline = Instant::now() + (limit / 2).min(Duration::from_secs(3));
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Ok(None) = self.child.try_wait() {
            self.terminate();
        }
        self.wait_output(limit / 2)
    }

    /// Wait for the process to end within `limit`; returns its output, or panics (after
    /// killing it) when it is still running.
    pub fn wait_output(mut self, limit: Duration) -> Output {
        let deadline = Instant::now() + limit;
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = self.child.kill();
                    let out = self.collect();
                    panic!(
                        "{} did not end within {limit:?}; stderr:\n{}",
                        self.name,
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
            }
        }
        self.collect()
    }

    /// Reap the process and join the drain threads.
    fn collect(&mut self) -> Output {
        let status = self.child.wait().expect("wait for child");
        let join = |h: Option<std::thread::JoinHandle<Vec<u8>>>| {
            h.map(|h| h.join().unwrap_or_default()).unwrap_or_default()
        };
        Output {
            status,
            stdout: join(self.stdout.take()),
            stderr: join(self.stderr.take()),
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

/// Wait until something accepts TCP connections at `addr`, for at most `limit`.
pub fn wait_for_port(addr: SocketAddr, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    false
}

/// Start `nd-hub` on 127.0.0.1 with kitchens on `in_port` and eaters on `out_port` (fixed
/// ports, so a test can restart it on the same ones), plus `extra` arguments; returns once
/// both ports listen (panics after 10 s).
pub fn spawn_hub(in_port: u16, out_port: u16, extra: &[&str]) -> ChildGuard {
    let (in_text, out_text) = (in_port.to_string(), out_port.to_string());
    let mut args = vec!["-a", "127.0.0.1", "-i", &in_text, "-o", &out_text];
    args.extend_from_slice(extra);
    let hub = ChildGuard::spawn("nd-hub", Command::new(bin("nd-hub")).args(&args));
    for port in [in_port, out_port] {
        assert!(
            wait_for_port(([127, 0, 0, 1], port).into(), Duration::from_secs(10)),
            "nd-hub did not listen on 127.0.0.1:{port}"
        );
    }
    hub
}

/// `nd-sniff -r CAPTURE --stdout --no-hub -p POKE_SECS -n KITCHEN`: a replay with no hub
/// whose dumplings go to stdout, for [`sniff_dumplings`]; callers add chefs and flags.
pub fn stdout_replay(capture: &Path, kitchen: &str, poke_secs: &str) -> Command {
    let mut cmd = Command::new(bin("nd-sniff"));
    cmd.arg("-r")
        .arg(capture)
        .args(["--stdout", "--no-hub", "-p", poke_secs, "-n", kitchen]);
    cmd
}

/// Runs a prepared `nd-sniff` replay that writes its dumplings to stdout (`--stdout`),
/// waits up to two minutes, asserts it succeeded (naming `capture` and showing its log),
/// and returns the dumplings and the log.
pub fn sniff_dumplings(cmd: &mut Command, capture: &Path) -> (Vec<serde_json::Value>, String) {
    let out = ChildGuard::spawn("nd-sniff", cmd).wait_output(Duration::from_secs(120));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "nd-sniff failed on {}: {stderr}",
        capture.display()
    );
    (json_lines(&out.stdout), stderr)
}

/// Parse JSON lines (one dumpling per line) into values; panics on a non-JSON line.
pub fn json_lines(text: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(text)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// Read a tab-separated ground-truth file from `tests/data/truth/`; a missing file means
/// "no rows" (the generator deletes empty files).
pub fn truth_rows(file: &str) -> Vec<Vec<String>> {
    let path = test_data(&format!("truth/{file}"));
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Vec::new();
    };
    text.lines()
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect()
}

/// Lines read from a child's pipe as they arrive.
pub type Lines = Arc<Mutex<Vec<String>>>;

fn read_lines(pipe: impl Read + Send + 'static) -> Lines {
    let lines: Lines = Arc::default();
    let out = lines.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            out.lock().unwrap_or_else(|e| e.into_inner()).push(line);
        }
    });
    lines
}

/// A child whose stdout and stderr lines can be read while it runs (for tests that act
/// on what a process has said so far); killed by its PID when dropped.
pub struct LiveProcess {
    /// The running process.
    pub child: Child,
    /// Its stdout lines so far.
    pub stdout: Lines,
    /// Its stderr lines so far.
    pub stderr: Lines,
}

impl LiveProcess {
    /// Start `cmd` (with `NO_COLOR=1`) with both pipes read line by line.
    pub fn spawn(cmd: &mut Command) -> LiveProcess {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("NO_COLOR", "1")
            .spawn()
            .expect("spawn");
        let stdout = read_lines(child.stdout.take().expect("stdout"));
        let stderr = read_lines(child.stderr.take().expect("stderr"));
        LiveProcess {
            child,
            stdout,
            stderr,
        }
    }

    /// Send a signal (`"INT"`, `"TERM"`, ...) to this process only.
    pub fn signal(&self, sig: &str) {
        signal(self.child.id(), sig);
    }

    /// Wait for the exit within `limit` (panics after killing it otherwise).
    pub fn wait(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                // Let the reader threads reach the end of the pipes.
                std::thread::sleep(Duration::from_millis(200));
                return s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "process did not end within {limit:?}:\n{}",
                    self.stderr_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Wait until a live `nd-sniff` says its capture started ("Sniffing started"), then
    /// half a second more (libpcap may take a moment after activation before the ring
    /// sees packets). Panics, with its stderr, if it ends first or takes over a minute.
    pub fn wait_until_sniffing(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.stderr_text().contains("Sniffing started") {
            if let Ok(Some(s)) = self.child.try_wait() {
                panic!(
                    "nd-sniff ended ({s:?}) before sniffing:\n{}",
                    self.stderr_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "capture did not start:\n{}",
                self.stderr_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(500));
    }

    /// Stop a live `nd-sniff` with SIGINT, wait (a minute at most) for it to exit 0, and
    /// return its stderr and the "capture statistics" line of its exit summary.
    pub fn interrupt_for_capture_statistics(&mut self) -> (String, String) {
        self.signal("INT");
        let status = self.wait(Duration::from_secs(60));
        let stderr = self.stderr_text();
        assert_eq!(status.code(), Some(0), "{stderr}");
        let capture = stderr
            .lines()
            .find(|l| l.contains("capture statistics"))
            .unwrap_or_else(|| panic!("no capture statistics:\n{stderr}"))
            .to_owned();
        (stderr, capture)
    }

    /// How many stdout lines so far.
    pub fn stdout_count(&self) -> usize {
        self.stdout.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Everything on stderr so far.
    pub fn stderr_text(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .join("\n")
    }
}

impl Drop for LiveProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Whether this process runs as root (effective uid 0), read from `/proc/self/status`.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// The number after `key=` in a `tracing` log line (`... key=123 ...`); panics naming the
/// key and the line when it is missing.
pub fn log_field(line: &str, key: &str) -> u64 {
    let at = line
        .find(&format!("{key}="))
        .unwrap_or_else(|| panic!("no {key}= in {line}"));
    line[at + key.len() + 1..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap_or_else(|_| panic!("bad {key}= in {line}"))
}

/// An executable found on `PATH` (for optional system tools such as chromium or promtool).
pub fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// The value of the Prometheus sample line starting with `series ` (name plus labels).
pub fn metric_sample(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// `promtool check metrics` on `body` (skipped with a message where promtool is missing,
/// but never in CI or as root: setup.sh installs it there).
pub fn promtool_check(body: &str) {
    use std::io::Write;
    let Some(promtool) = on_path("promtool") else {
        assert!(
            std::env::var_os("CI").is_none() && !is_root(),
            "promtool missing: scripts/setup.sh installs it (apt-get install prometheus)"
        );
        eprintln!("SKIP promtool check: promtool not found (sudo apt-get install -y prometheus)");
        return;
    };
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(body.as_bytes())
        .expect("feed promtool");
    let out = child.wait_with_output().expect("promtool result");
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}{}\n{body}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// SHA-256 of a file, hex, computed with `sha256sum` (as an operator would check it).
pub fn sha256_hex(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("a hash")
        .to_owned()
}

/// `target/hostile-chefs/wasm32-wasip2/release/`, after building the hostile chefs
/// (`tests/hostile-chefs/build.sh`, a no-op when fresh) once per test process;
/// `ND_SKIP_HOSTILE_BUILD=1` uses what is there.
pub fn hostile_release_dir() -> &'static Path {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let root = workspace_root();
        let dir = root.join("target/hostile-chefs/wasm32-wasip2/release");
        if std::env::var_os("ND_SKIP_HOSTILE_BUILD").is_some_and(|v| !v.is_empty() && v != "0") {
            return dir;
        }
        let script = root.join("tests/hostile-chefs/build.sh");
        // `--locked`, like every cargo command of ./test.sh: the workspace has its own lock.
        // A cold build compiles wit-bindgen's proc macro and 19 small crates; bounded.
        let out = ChildGuard::spawn(
            "hostile-chefs/build.sh",
            Command::new("bash")
                .arg(&script)
                .arg("--locked")
                .current_dir(&root),
        )
        .wait_output(Duration::from_secs(900));
        assert!(
            out.status.success(),
            "building the hostile chefs failed ({}); run `{}` to see why:\n{}",
            out.status,
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
}

/// The synthesized stream captures of `tests/data/streams/synth.py` (a real ClientHello
/// split, reordered, duplicated, overlapping, missing a segment; long HTTP requests split),
/// written once per test process into a temporary folder.
pub fn synth_streams_dir() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("nd-stream-synth-{}", std::process::id()));
        let out = Command::new("python3")
            .arg(test_data("streams/synth.py"))
            .arg(&dir)
            .output()
            .expect("python3 runs tests/data/streams/synth.py (apt-get install -y python3)");
        assert!(
            out.status.success(),
            "synth.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
    .clone()
}

/// A FIFO `capture.pcap` in `dir`, opened read-write by the test (so opening never waits
/// for the reader, and a kitchen replaying it sees no end of file until the returned
/// handle is dropped).
pub fn open_fifo(dir: &Path) -> (PathBuf, std::fs::File) {
    let path = dir.join("capture.pcap");
    let made = Command::new("mkfifo")
        .arg(&path)
        .status()
        .expect("run mkfifo");
    assert!(made.success(), "mkfifo {}", path.display());
    let writer = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .expect("open fifo");
    (path, writer)
}

/// `GET path` from a loopback HTTP server (e.g. `/metrics`); the whole response, head
/// included.
pub fn http_get(addr: SocketAddr, path: &str) -> String {
    use std::io::Write;
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").expect("request");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("response");
    out
}
