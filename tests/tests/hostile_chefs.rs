//! Hostile chefs against the real `nd-sniff`: every chef in `tests/hostile-chefs/` (a
//! separate wasm32-wasip2 workspace built against `wit/chef.wit` with raw wit-bindgen) and
//! a few broken files, each replayed alone next to the built-in chefs.
//!
//! For every case the kitchen must: exit 0 (it stays up), produce exactly the baseline's
//! dumplings for every good chef (same capture, same flags, no hostile chef; compared
//! line for line, byte for byte, per chef), report the event on stderr naming the chef (or
//! its file) and the reason, and count it in the exit summary
//! (`chef NAME: ... N traps, N timeouts, N memory, ...`).
//!
//! The hostile components are built by `tests/hostile-chefs/build.sh` the first time a
//! test needs them in this process (a no-op when cargo finds them fresh); set
//! `ND_SKIP_HOSTILE_BUILD=1` to use whatever is already in
//! `target/hostile-chefs/wasm32-wasip2/release/`. Broken files (garbage, 0 bytes, core
//! modules) are written at run time under `target/hostile-chefs/run/`.

use e2e_tests::{bin, hostile_release_dir, test_data, workspace_root};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The deadline every run passes (`--chef-deadline-ms`); the slow chefs are built around
/// it (20 ms under, 400 ms over).
const DEADLINE_MS: u64 = 200;
/// Poke interval in seconds of capture time: about 50-65 pokes per capture, so the
/// interval-driven hostile chefs fire often enough to be restarted and quarantined.
const POKE_SECS: &str = "1";
/// Failures after which the kitchen quarantines a chef: in a row of one driver, or within
/// 60 s of kitchen time (its default; there is no flag for it).
const QUARANTINE_AFTER: u64 = 5;
/// A bound on every kitchen run (the slowest case, every hostile chef at once, takes ~15 s).
const RUN_LIMIT: Duration = Duration::from_secs(180);

// ---------------------------------------------------------------------------------------
// Captures.

/// The two captures the suite replays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Capture {
    /// `tests/data/original/loopback_dns_arp_http.pcap`: 50 packets over 65 s.
    Loopback,
    /// `captures/ndpi__anyconnect-vpn.pcap`: 589 packets over 48 s.
    AnyConnect,
}

impl Capture {
    fn path(self) -> PathBuf {
        match self {
            Capture::Loopback => test_data("original/loopback_dns_arp_http.pcap"),
            Capture::AnyConnect => workspace_root().join("captures/ndpi__anyconnect-vpn.pcap"),
        }
    }

    /// Packets in the file (every run passes `-f ""`, so every packet reaches the chefs).
    fn packets(self) -> u64 {
        match self {
            Capture::Loopback => 50,
            Capture::AnyConnect => 589,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Building and staging the hostile chefs.

/// The built component `file` (e.g. `panic_chef.wasm`).
fn hostile_wasm(file: &str) -> Vec<u8> {
    let path = hostile_release_dir().join(file);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{} missing ({e}): run tests/hostile-chefs/build.sh",
            path.display()
        )
    })
}

/// A fresh, empty folder `target/hostile-chefs/run/<name>/`.
fn fresh_dir(name: &str) -> PathBuf {
    let dir = workspace_root().join("target/hostile-chefs/run").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
    dir
}

/// The well-behaved control chef staged in every chef folder (baseline included).
const CONTROL_FILE: &str = "control_chef.wasm";
/// Its name.
const CONTROL: &str = "ControlChef";

/// A chef folder holding `files` (name, bytes) plus the control chef.
fn chef_dir(name: &str, files: &[(&str, Vec<u8>)]) -> PathBuf {
    let dir = fresh_dir(name);
    std::fs::write(dir.join(CONTROL_FILE), hostile_wasm(CONTROL_FILE))
        .unwrap_or_else(|e| panic!("write {CONTROL_FILE}: {e}"));
    for (file, bytes) in files {
        std::fs::write(dir.join(file), bytes).unwrap_or_else(|e| panic!("write {file}: {e}"));
    }
    dir
}

// ---------------------------------------------------------------------------------------
// Running the kitchen.

/// Kitchens this suite runs at once.
///
/// Why: the deadline every run passes is 200 ms of wall time, and the slow chefs spin 20 ms
/// per call. On a loaded machine a chef thread can wait for a core for longer than the
/// 180 ms between, and a call then runs past its deadline, so the run differs from the
/// baseline (measured with this suite's determinism case, `--chef-threads` 1 against 4:
/// 48 of 322 pairs differed, all at load 5.5-10.6, from a slow or flood chef's call stopped
/// at its deadline in one run only). Run all at once, the suite's own kitchens (several
/// threads each, 34 cases on two cores) made most of that load; two at a time keeps both
/// cores busy without oversubscribing them.
const KITCHENS_AT_ONCE: usize = 2;

/// A turn to run a kitchen: at most [`KITCHENS_AT_ONCE`] are held at once; dropping it
/// lets the next case run.
struct KitchenTurn;

/// Kitchens running now (guarded count, and the condition their ends signal).
static TURNS: (std::sync::Mutex<usize>, std::sync::Condvar) =
    (std::sync::Mutex::new(0), std::sync::Condvar::new());

impl KitchenTurn {
    /// Wait for a turn.
    fn take() -> KitchenTurn {
        let (count, freed) = &TURNS;
        // A poisoned lock only means another case panicked while holding it; the count
        // itself is still right.
        let mut running = count.lock().unwrap_or_else(|e| e.into_inner());
        while *running >= KITCHENS_AT_ONCE {
            running = freed.wait(running).unwrap_or_else(|e| e.into_inner());
        }
        *running += 1;
        KitchenTurn
    }
}

impl Drop for KitchenTurn {
    fn drop(&mut self) {
        let (count, freed) = &TURNS;
        let mut running = count.lock().unwrap_or_else(|e| e.into_inner());
        *running -= 1;
        freed.notify_one();
    }
}

/// Run `cmd` to completion within `limit`, reading stdout and stderr *while* it runs (a
/// hostile chef can make the kitchen write megabytes; a child blocked on a full pipe would
/// look like a hang). Kills the child (by PID, via [`ChildGuard`]) and panics on timeout.
/// Also returns the child's peak resident memory (`VmHWM`, KiB) as last read from `/proc`
/// while it ran (Linux; `None` elsewhere or when it ended before the first read).
fn run_bounded(name: &str, cmd: &mut Command, limit: Duration) -> (Output, Option<u64>) {
    let _turn = KitchenTurn::take();
    fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    }
    // Not `ChildGuard::spawn`: it drains the pipes itself, and this function needs them
    // (and the PID for `/proc`) while the child runs.
    let child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
    let mut guard = KillOnDrop { child };
    let stdout = drain(guard.child.stdout.take());
    let stderr = drain(guard.child.stderr.take());
    let deadline = Instant::now() + limit;
    let status_file = format!("/proc/{}/status", guard.child.id());
    let mut peak_rss_kib = None;
    let status = loop {
        // VmHWM is the high-water mark, so the last read is the peak up to that moment.
        if let Some(kib) = std::fs::read_to_string(&status_file).ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        }) {
            peak_rss_kib = Some(kib);
        }
        match guard.child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = guard.child.kill();
                let _ = guard.child.wait();
                let err = stderr.join().unwrap_or_default();
                let err = String::from_utf8_lossy(&err);
                let tail: Vec<&str> = err.lines().rev().take(40).collect();
                panic!(
                    "{name} did not end within {limit:?} (killed); last stderr lines:\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            Err(e) => panic!("waiting for {name}: {e}"),
        }
    };
    let out = Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    };
    (out, peak_rss_kib)
}

/// A child killed (by its PID) and reaped when dropped.
struct KillOnDrop {
    child: std::process::Child,
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One finished `nd-sniff` run.
struct Run {
    /// Exit code (`None`: killed by a signal).
    code: Option<i32>,
    /// Stdout, one dumpling per line (as printed).
    lines: Vec<String>,
    /// The same lines parsed.
    dumplings: Vec<Value>,
    /// Stderr without ANSI colour codes.
    stderr: String,
    /// Whether stdout was valid UTF-8 (it is parsed lossily).
    stdout_utf8: bool,
    /// Stdout lines that are not one JSON dumpling each (line number, error, start).
    bad_lines: Vec<String>,
    /// The kitchen's peak resident memory as seen while it ran, KiB.
    peak_rss_kib: Option<u64>,
}

impl Run {
    /// Stdout lines of one chef, in order, byte for byte.
    fn lines_of(&self, chef: &str) -> Vec<&str> {
        self.lines
            .iter()
            .zip(&self.dumplings)
            .filter(|(_, d)| d["metadata"]["chef"] == chef)
            .map(|(l, _)| l.as_str())
            .collect()
    }

    /// Parsed dumplings of one chef.
    fn of(&self, chef: &str) -> Vec<&Value> {
        self.dumplings
            .iter()
            .filter(|d| d["metadata"]["chef"] == chef)
            .collect()
    }

    /// Stdout grouped by chef.
    fn by_chef(&self) -> BTreeMap<String, Vec<&str>> {
        let mut m: BTreeMap<String, Vec<&str>> = BTreeMap::new();
        for (l, d) in self.lines.iter().zip(&self.dumplings) {
            if d.is_null() {
                continue;
            }
            let chef = d["metadata"]["chef"]
                .as_str()
                .unwrap_or("<no chef>")
                .to_owned();
            m.entry(chef).or_default().push(l);
        }
        m
    }

    /// Stderr lines containing every one of `needles` (case-insensitive).
    fn log_lines(&self, needles: &[&str]) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| {
                let low = l.to_lowercase();
                needles.iter().all(|n| low.contains(&n.to_lowercase()))
            })
            .collect()
    }

    /// The exit-summary counters of `chef`, if the summary lists it. Its one line is
    /// `chef NAME: STATE; N packets offered, N seen, ...; N packet calls, ...; N dumplings
    /// (N bytes)[; refused: N invalid, ...][; failures: N traps, ...]; ...`: counts that are
    /// 0 may be left out.
    fn summary(&self, chef: &str) -> Option<ChefSummary> {
        let marker = format!(": chef {chef}: ");
        let line = self.stderr.lines().find(|l| l.contains(&marker))?;
        let rest = &line[line.find(&marker)? + marker.len()..];
        let mut s = ChefSummary {
            quarantined: false,
            counts: BTreeMap::new(),
            line: line.to_owned(),
        };
        for piece in rest.split("; ").flat_map(|group| group.split(", ")) {
            let piece = piece.trim();
            let piece = piece
                .strip_prefix("refused: ")
                .or_else(|| piece.strip_prefix("failures: "))
                .unwrap_or(piece);
            if piece == "QUARANTINED" {
                s.quarantined = true;
                continue;
            }
            let Some((num, label)) = piece.split_once(' ') else {
                continue;
            };
            let Ok(n) = num.parse::<u64>() else { continue };
            let label = label.split_once(" (").map_or(label, |(l, _)| l).trim();
            s.counts.insert(label.to_owned(), n);
        }
        // The packets handed to calls that worked.
        if let Some(&seen) = s.counts.get("seen") {
            s.counts.insert("packets".to_owned(), seen);
        }
        Some(s)
    }

    /// Everything a failed assertion should show.
    fn context(&self) -> String {
        let tail: Vec<&str> = self.stderr.lines().rev().take(60).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!(
            "exit code {:?}, {} dumplings; last stderr lines:\n{}",
            self.code,
            self.lines.len(),
            tail.join("\n")
        )
    }
}

/// The exit summary's counters for one chef.
#[derive(Debug)]
struct ChefSummary {
    quarantined: bool,
    /// "packet calls", "packets", "interval calls", "dumplings", "invalid", "oversize",
    /// "over cap", "traps", "timeouts", "memory", "restarts".
    counts: BTreeMap<String, u64>,
    line: String,
}

impl ChefSummary {
    /// A count of the line; one the summary leaves out when it is 0 reads as 0.
    fn get(&self, label: &str) -> u64 {
        const MAY_BE_LEFT_OUT: &[&str] = &[
            "invalid",
            "oversize",
            "over cap",
            "over output budget",
            "traps",
            "timeouts",
            "memory",
            "restarts",
        ];
        match self.counts.get(label) {
            Some(&n) => n,
            None if MAY_BE_LEFT_OUT.contains(&label) => 0,
            None => panic!("no {label:?} in the summary line: {}", self.line),
        }
    }

    fn failures(&self) -> u64 {
        self.get("traps") + self.get("timeouts") + self.get("memory")
    }
}

/// Remove ANSI escape sequences (`ESC [ ... letter`).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for d in chars.by_ref() {
                    if d.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// Replay `capture` with the built-in chefs plus every chef file in `dir`.
fn kitchen(capture: Capture, dir: &Path, extra: &[&str]) -> Run {
    kitchen_within(capture, dir, extra, RUN_LIMIT)
}

/// [`kitchen`] with its own bound on the run.
fn kitchen_within(capture: Capture, dir: &Path, extra: &[&str], limit: Duration) -> Run {
    let cache = workspace_root().join("target/hostile-chefs/run/chef-cache");
    let mut cmd = Command::new(bin("nd-sniff"));
    cmd.arg("-r")
        .arg(capture.path())
        .args(["--stdout", "--no-hub", "-p", POKE_SECS, "-f", ""])
        .args(["-n", "hostile_kitchen"])
        .arg("-d")
        .arg(dir)
        .arg("--chef-cache-dir")
        .arg(&cache)
        .args(extra)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
    // A case may pass its own deadline (`extra` is parsed after this, and the flag may
    // appear once).
    if !extra.contains(&"--chef-deadline-ms") {
        cmd.args(["--chef-deadline-ms", &DEADLINE_MS.to_string()]);
    }
    let (out, peak_rss_kib) = run_bounded("nd-sniff", &mut cmd, limit);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = strip_ansi(&String::from_utf8_lossy(&out.stderr));
    let lines: Vec<String> = stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect();
    // Every stdout line must be one whole dumpling, parseable by the same parser the Rust
    // eaters and the hub use (serde_json, default recursion limit). Lines that are not are
    // kept as `Null` and listed in `bad_lines` (`assert_kitchen_unharmed` fails on them).
    let mut bad_lines = Vec::new();
    let dumplings = lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str::<Value>(l).unwrap_or_else(|e| {
                bad_lines.push(format!(
                    "line {}: {e}: {}",
                    i + 1,
                    l.chars().take(200).collect::<String>()
                ));
                Value::Null
            })
        })
        .collect();
    Run {
        code: out.status.code(),
        lines,
        dumplings,
        stderr,
        stdout_utf8: std::str::from_utf8(&out.stdout).is_ok(),
        bad_lines,
        peak_rss_kib,
    }
}

/// The baseline of a capture: the built-in chefs and the control chef, same flags.
fn baseline(capture: Capture) -> &'static Run {
    static LOOPBACK: OnceLock<Run> = OnceLock::new();
    static ANYCONNECT: OnceLock<Run> = OnceLock::new();
    let cell = match capture {
        Capture::Loopback => &LOOPBACK,
        Capture::AnyConnect => &ANYCONNECT,
    };
    cell.get_or_init(|| {
        let dir = chef_dir(&format!("baseline-{capture:?}"), &[]);
        let run = kitchen(capture, &dir, &[]);
        assert_eq!(run.code, Some(0), "baseline run failed: {}", run.context());
        // Without good chefs the "unchanged" checks would compare nothing. (Whether the
        // built-in chefs are there is `builtin_chefs_are_in_the_baseline`'s business.)
        let control = run.of(CONTROL);
        assert!(
            control.iter().any(|d| d["metadata"]["driver"] == "packet")
                && control
                    .iter()
                    .any(|d| d["metadata"]["driver"] == "interval"),
            "the baseline has no ControlChef output: {}",
            run.context()
        );
        run
    })
}

/// The checks every case shares: the kitchen exited 0, each good chef's output is the
/// baseline's, line for line, and no chef other than the baseline's and `allowed_extra`
/// made dumplings. Also: each chef's stdout count equals its summary count.
fn assert_kitchen_unharmed(capture: Capture, run: &Run, allowed_extra: &[&str]) {
    assert_eq!(
        run.code,
        Some(0),
        "the kitchen must stay up and exit 0: {}",
        run.context()
    );
    assert!(run.stdout_utf8, "stdout is not valid UTF-8");
    assert!(
        run.bad_lines.is_empty(),
        "stdout must be one JSON dumpling per line, parseable with serde_json (as the hub \
         and the Rust eaters parse it); {} bad lines:\n{}",
        run.bad_lines.len(),
        run.bad_lines
            .iter()
            .take(8)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    let base = baseline(capture).by_chef();
    let got = run.by_chef();
    for (chef, want) in &base {
        if allowed_extra.contains(&chef.as_str()) {
            continue;
        }
        let have = got.get(chef).cloned().unwrap_or_default();
        assert_eq!(
            have.len(),
            want.len(),
            "good chef {chef}: {} dumplings with the hostile chef, {} in the baseline; {}",
            have.len(),
            want.len(),
            run.context()
        );
        for (i, (h, w)) in have.iter().zip(want).enumerate() {
            assert_eq!(
                h, w,
                "good chef {chef}: dumpling {i} differs from the baseline"
            );
        }
    }
    for chef in got.keys() {
        assert!(
            base.contains_key(chef) || allowed_extra.contains(&chef.as_str()),
            "unexpected dumplings from chef {chef:?}: {:?}",
            got[chef].iter().take(3).collect::<Vec<_>>()
        );
    }
    // The control chef ran every call, on every packet, in one instance.
    let control = summary_of(run, CONTROL);
    assert_eq!(control.failures(), 0, "{}", control.line);
    assert_eq!(control.get("restarts"), 0, "{}", control.line);
    assert_eq!(
        control.get("packets"),
        capture.packets(),
        "{}",
        control.line
    );
    for (chef, lines) in &got {
        if let Some(s) = run.summary(chef) {
            assert_eq!(
                s.get("dumplings"),
                lines.len() as u64,
                "{chef}: the summary's dumpling count disagrees with stdout: {}",
                s.line
            );
        }
    }
}

/// Some stderr line names `chef` and contains every one of `reason` (case-insensitive).
fn assert_reported(run: &Run, chef: &str, reason: &[&str]) {
    let mut needles = vec![chef];
    needles.extend_from_slice(reason);
    assert!(
        !run.log_lines(&needles).is_empty(),
        "no stderr line names {chef} with {reason:?}; {}",
        run.context()
    );
}

/// The summary line of a chef that loaded (panics when absent).
fn summary_of(run: &Run, chef: &str) -> ChefSummary {
    run.summary(chef)
        .unwrap_or_else(|| panic!("the exit summary does not list {chef}; {}", run.context()))
}

/// Run one hostile chef file alone (plus the built-ins).
fn run_hostile(case: &str, file: &str, capture: Capture, extra: &[&str]) -> Run {
    let dir = chef_dir(case, &[(file, hostile_wasm(file))]);
    kitchen(capture, &dir, extra)
}

/// A chef that must be refused at load: exit 0, good chefs unchanged, no dumplings from it,
/// an error naming the file and containing every `reason` fragment. Returns the run.
fn assert_refused_at_load(case: &str, file: &str, bytes: Vec<u8>, reason: &[&str]) -> Run {
    let dir = chef_dir(case, &[(file, bytes)]);
    let run = kitchen(Capture::Loopback, &dir, &[]);
    assert_kitchen_unharmed(Capture::Loopback, &run, &[]);
    assert_reported(&run, file, reason);
    // The refusal says it is a refusal, not just a reason.
    assert!(
        !run.log_lines(&[file, "not loaded"]).is_empty(),
        "the error for {file} does not say the chef was not loaded; {}",
        run.context()
    );
    run
}

/// No dumpling from `chef` (or a payload carrying `canary`) reached stdout.
fn assert_no_output(run: &Run, chef: &str, canary: &str) {
    let from_chef = run.of(chef);
    assert!(
        from_chef.is_empty(),
        "{chef} must produce nothing, got {} dumplings, e.g. {}",
        from_chef.len(),
        from_chef[0]
    );
    let leaked: Vec<&String> = run.lines.iter().filter(|l| l.contains(canary)).collect();
    assert!(
        leaked.is_empty(),
        "canary {canary:?} reached stdout: {:?}",
        leaked.iter().take(2).collect::<Vec<_>>()
    );
}

// ---------------------------------------------------------------------------------------
// Sanity of the harness itself.

/// The built-in sample chefs are loaded next to the hostile ones by default, so the
/// baseline (built-ins + control chef) has their dumplings to compare.
#[test]
fn builtin_chefs_are_in_the_baseline() {
    let run = baseline(Capture::Loopback);
    let chefs = run.by_chef();
    let builtins: Vec<&String> = chefs.keys().filter(|c| *c != CONTROL).collect();
    assert!(
        chefs.contains_key("PacketCountChef"),
        "no built-in chef dumplings in the baseline (chefs seen: {:?}); is nd-sniff built \
         with its sample chefs?",
        chefs.keys().collect::<Vec<_>>()
    );
    eprintln!("built-in chefs compared in every case: {builtins:?}");
}

/// The comparisons below rely on replay being deterministic: two baseline runs agree byte
/// for byte, and the summary accounts for every packet of the capture.
#[test]
fn baseline_replay_is_deterministic_and_complete() {
    for capture in [Capture::Loopback, Capture::AnyConnect] {
        let first = baseline(capture);
        let dir = chef_dir(&format!("baseline-again-{capture:?}"), &[]);
        let again = kitchen(capture, &dir, &[]);
        assert_eq!(again.code, Some(0), "{}", again.context());
        assert_eq!(
            first.lines, again.lines,
            "{capture:?}: replay is not deterministic"
        );
        let want = format!("summary: {} packets in", capture.packets());
        assert!(
            first.stderr.contains(&want),
            "{capture:?}: expected {want:?} in the summary; {}",
            first.context()
        );
    }
}

/// The wrong-version chef's WIT must be the real (frozen 0.1) WIT with only the package
/// version changed, or `WrongVersionChef` would test something else than a version mismatch.
#[test]
fn wrong_version_wit_differs_from_the_real_one_only_in_its_version() {
    let root = workspace_root();
    let real = std::fs::read_to_string(root.join("wit/v0.1/chef.wit")).expect("wit/v0.1/chef.wit");
    let copy = std::fs::read_to_string(root.join("tests/hostile-chefs/wit-v0.3.0/chef.wit"))
        .expect("tests/hostile-chefs/wit-v0.3.0/chef.wit");
    assert!(real.contains("package netdumplings:chef@0.1.0;"));
    assert_eq!(
        real.replace(
            "package netdumplings:chef@0.1.0;",
            "package netdumplings:chef@0.3.0;"
        ),
        copy,
        "regenerate it: sed 's/^package netdumplings:chef@0.1.0;/package netdumplings:chef@0.3.0;/' \
         wit/v0.1/chef.wit > tests/hostile-chefs/wit-v0.3.0/chef.wit"
    );
}

// ---------------------------------------------------------------------------------------
// Runtime misbehaviour: the chef loads, then misbehaves in a call.

#[test]
fn infinite_loop_chef_times_out_and_is_quarantined() {
    let capture = Capture::AnyConnect;
    let run = run_hostile("infinite-loop", "infinite_loop_chef.wasm", capture, &[]);
    assert_kitchen_unharmed(capture, &run, &[]);
    assert_no_output(&run, "InfiniteLoopChef", "survived_infinite_loop");
    assert_reported(&run, "InfiniteLoopChef", &["200 ms deadline"]);
    let s = summary_of(&run, "InfiniteLoopChef");
    // Every call loops, so failures are consecutive: quarantined after exactly the
    // threshold, and never called again.
    assert!(s.quarantined, "not quarantined: {}", s.line);
    assert_eq!(s.get("timeouts"), QUARANTINE_AFTER, "{}", s.line);
    assert_eq!(s.get("traps") + s.get("memory"), 0, "{}", s.line);
    assert_eq!(s.get("packet calls"), 0, "no call can succeed: {}", s.line);
    assert!(
        s.get("restarts") >= QUARANTINE_AFTER - 1,
        "re-instantiated before each retry: {}",
        s.line
    );
    assert_reported(&run, "InfiniteLoopChef", &["quarantined"]);
}

#[test]
fn slow_chef_under_the_deadline_is_left_alone() {
    let capture = Capture::Loopback;
    let run = run_hostile("slow-under", "slow_under_deadline_chef.wasm", capture, &[]);
    assert_kitchen_unharmed(capture, &run, &["SlowUnderDeadlineChef"]);
    let s = summary_of(&run, "SlowUnderDeadlineChef");
    assert_eq!(
        s.failures(),
        0,
        "a 20 ms call under a 200 ms deadline failed: {}",
        s.line
    );
    assert_eq!(s.get("restarts"), 0, "{}", s.line);
    assert!(!s.quarantined, "{}", s.line);
    assert!(
        run.log_lines(&["SlowUnderDeadlineChef", "chef failed"])
            .is_empty(),
        "a failure was logged for the slow-but-legal chef; {}",
        run.context()
    );
    // One dumpling per batch, each having really spun ~20 ms, covering every packet.
    let out = run.of("SlowUnderDeadlineChef");
    let batches: Vec<&&Value> = out
        .iter()
        .filter(|d| d["metadata"]["driver"] == "packet")
        .collect();
    assert_eq!(batches.len() as u64, s.get("packet calls"), "{}", s.line);
    let mut total = 0;
    for d in &batches {
        assert!(d["payload"]["spun_ms"].as_u64().unwrap_or(0) >= 20, "{d}");
        total += d["payload"]["batch_packets"]
            .as_u64()
            .expect("batch_packets");
    }
    assert_eq!(
        total,
        capture.packets(),
        "every packet reached the slow chef"
    );
    // The final poke reports the running total: the instance was never replaced.
    let last = out
        .iter()
        .rev()
        .find(|d| d["metadata"]["driver"] == "interval")
        .expect("interval dumplings from SlowUnderDeadlineChef");
    assert_eq!(last["payload"]["packets_seen"], capture.packets(), "{last}");
    assert_eq!(last["payload"]["calls"], batches.len(), "{last}");
}

#[test]
fn slow_chef_over_the_deadline_is_stopped_at_the_deadline() {
    let capture = Capture::Loopback;
    let run = run_hostile("slow-over", "slow_over_deadline_chef.wasm", capture, &[]);
    assert_kitchen_unharmed(capture, &run, &[]);
    // It spins 400 ms per poke: a deadline enforced at anything under 2x would let it
    // finish and print `finished_slow_interval_ms`.
    assert_no_output(&run, "SlowOverDeadlineChef", "finished_slow_interval_ms");
    assert_reported(&run, "SlowOverDeadlineChef", &["200 ms deadline"]);
    let s = summary_of(&run, "SlowOverDeadlineChef");
    assert!(s.get("timeouts") >= 1, "{}", s.line);
    assert_eq!(s.get("traps") + s.get("memory"), 0, "{}", s.line);
    assert_eq!(
        s.get("interval calls"),
        0,
        "no poke can succeed: {}",
        s.line
    );
    // Its fast on-packets path keeps working between restarts.
    assert!(s.get("packet calls") >= 1, "{}", s.line);
    assert!(s.get("restarts") >= 1, "{}", s.line);
    // Its successful packet calls must not reset the count of its failing pokes: 5
    // on-interval timeouts in a row (or 5 within 60 s of capture time) quarantine it, so
    // it stops stalling every poke for the whole deadline.
    assert!(s.quarantined, "{}", s.line);
    assert_eq!(s.get("timeouts"), QUARANTINE_AFTER, "{}", s.line);
    assert_reported(&run, "SlowOverDeadlineChef", &["quarantined"]);
}

#[test]
fn memory_bomb_chef_hits_the_configured_memory_cap() {
    let capture = Capture::Loopback;
    let run = run_hostile(
        "memory-bomb",
        "memory_bomb_chef.wasm",
        capture,
        &["--chef-memory-mib", "64"],
    );
    assert_kitchen_unharmed(capture, &run, &[]);
    assert_no_output(&run, "MemoryBombChef", "survived_memory_bomb_mib");
    assert_reported(&run, "MemoryBombChef", &["memory limit of 64 MiB"]);
    let s = summary_of(&run, "MemoryBombChef");
    assert!(s.get("memory") >= 1, "{}", s.line);
    assert_eq!(s.get("timeouts"), 0, "{}", s.line);
    // The bomb logs "allocated N MiB" before each 8 MiB block: the last N it got to log
    // shows where the cap stopped it (64 MiB, less what the runtime already uses).
    let mut reached = 0u64;
    for line in run.log_lines(&["MemoryBombChef", "allocated "]) {
        if let Some(n) = line
            .split("allocated ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse::<u64>().ok())
        {
            reached = reached.max(n);
        }
    }
    assert!(
        reached >= 16,
        "the bomb's log should show it allocating before being stopped; {}",
        run.context()
    );
    assert!(
        reached < 64,
        "the bomb got {reached} MiB under a 64 MiB cap"
    );
}

#[test]
fn stack_overflow_chef_traps() {
    let capture = Capture::Loopback;
    let run = run_hostile("stack-overflow", "stack_overflow_chef.wasm", capture, &[]);
    assert_kitchen_unharmed(capture, &run, &[]);
    assert_no_output(&run, "StackOverflowChef", "survived_recursion");
    assert_reported(&run, "StackOverflowChef", &["trapped"]);
    let s = summary_of(&run, "StackOverflowChef");
    assert!(s.get("traps") >= 1, "{}", s.line);
    assert_eq!(s.get("packet calls"), 0, "{}", s.line);
}

#[test]
fn panic_chef_traps_and_its_panic_message_reaches_the_log() {
    let capture = Capture::Loopback;
    let run = run_hostile("panic", "panic_chef.wasm", capture, &[]);
    assert_kitchen_unharmed(capture, &run, &[]);
    // Interval-only: on-packets must never be called (it would say so).
    assert_no_output(&run, "PanicChef", "panic_chef_got_packets");
    assert_reported(&run, "PanicChef", &["trapped"]);
    // panic=abort: std prints the message to the chef's stderr, which the kitchen logs.
    assert_reported(&run, "PanicChef", &["deliberately panics in on-interval"]);
    let s = summary_of(&run, "PanicChef");
    assert_eq!(s.get("packet calls"), 0, "{}", s.line);
    assert_eq!(s.get("interval calls"), 0, "{}", s.line);
    // It panics on every poke (~65 of them): consecutive failures, so quarantined.
    assert!(s.quarantined, "{}", s.line);
    assert_eq!(s.get("traps"), QUARANTINE_AFTER, "{}", s.line);
}

#[test]
fn huge_output_chef_dumplings_are_refused() {
    let capture = Capture::Loopback;
    let run = run_hostile("huge-output", "huge_output_chef.wasm", capture, &[]);
    assert_kitchen_unharmed(capture, &run, &[]);
    assert_no_output(&run, "HugeOutputChef", "xxxxxxxxxxxxxxxx");
    assert_reported(&run, "HugeOutputChef", &["byte limit"]);
    let s = summary_of(&run, "HugeOutputChef");
    assert!(s.get("packet calls") >= 1, "{}", s.line);
    // One 4 MiB payload per call, each refused and counted.
    assert_eq!(s.get("oversize"), s.get("packet calls"), "{}", s.line);
    let longest = run.lines.iter().map(String::len).max().unwrap_or(0);
    assert!(
        longest < 1 << 20,
        "a {longest}-byte dumpling reached stdout"
    );
}

#[test]
fn dumpling_flood_is_capped_per_call() {
    let capture = Capture::AnyConnect;
    let run = run_hostile("dumpling-flood", "dumpling_flood_chef.wasm", capture, &[]);
    assert_kitchen_unharmed(capture, &run, &["DumplingFloodChef"]);
    let s = summary_of(&run, "DumplingFloodChef");
    let calls = s.get("packet calls");
    assert!(calls >= 2, "{}", s.line);
    // Group the packet dumplings by the call that made them: each call is capped.
    let mut per_call: BTreeMap<u64, u64> = BTreeMap::new();
    for d in run.of("DumplingFloodChef") {
        if d["metadata"]["driver"] == "packet" {
            *per_call
                .entry(d["payload"]["call"].as_u64().expect("call"))
                .or_default() += 1;
        }
    }
    assert_eq!(
        per_call.len() as u64,
        calls,
        "every call kept some dumplings"
    );
    let cap = *per_call.values().max().unwrap_or(&0);
    assert!(cap < 5000, "a call kept all 5000 dumplings");
    assert!(
        per_call.values().all(|&n| n == cap),
        "every call is capped at the same count: {per_call:?}"
    );
    // Counted: kept + dropped = returned.
    let kept: u64 = per_call.values().sum();
    assert_eq!(kept + s.get("over cap"), 5000 * calls, "{}", s.line);
    // And logged (the first time at once, then rate-limited), not only counted.
    assert_reported(&run, "DumplingFloodChef", &["over the cap", "dropped"]);
    // The chef's own count (from its last poke) agrees: it was never restarted for this.
    let last = run
        .of("DumplingFloodChef")
        .into_iter()
        .rev()
        .find(|d| d["metadata"]["driver"] == "interval")
        .expect("DumplingFloodChef's interval report");
    assert_eq!(last["payload"]["on_packets_calls"], calls, "{last}");
    assert_eq!(s.failures(), 0, "{}", s.line);
    // Reported in the log, not only in the summary.
    assert_reported(&run, "DumplingFloodChef", &["dumplings from one call"]);
}

#[test]
fn invalid_json_payloads_are_dropped_and_counted() {
    let capture = Capture::Loopback;
    let run = run_hostile("invalid-json", "invalid_json_chef.wasm", capture, &[]);
    assert_kitchen_unharmed(capture, &run, &[]);
    assert_no_output(&run, "InvalidJsonChef", "smuggled");
    assert_reported(&run, "InvalidJsonChef", &["not one JSON value"]);
    let s = summary_of(&run, "InvalidJsonChef");
    // One invalid payload per packet and two per poke, every one counted.
    assert_eq!(s.get("packets"), capture.packets(), "{}", s.line);
    assert_eq!(
        s.get("invalid"),
        s.get("packets") + 2 * s.get("interval calls"),
        "{}",
        s.line
    );
    assert!(s.get("interval calls") >= 1, "{}", s.line);
}

#[test]
fn invalid_utf8_strings_are_rejected_by_the_host() {
    let capture = Capture::Loopback;
    let run = run_hostile("invalid-utf8", "invalid_utf8_chef.wasm", capture, &[]);
    assert_kitchen_unharmed(capture, &run, &[]);
    // (`assert_kitchen_unharmed` also checked that stdout is valid UTF-8.)
    assert_no_output(&run, "InvalidUtf8Chef", "InvalidUtf8Chef");
    assert!(
        !run.log_lines(&["InvalidUtf8Chef", "utf-8"]).is_empty()
            || !run.log_lines(&["InvalidUtf8Chef", "utf8"]).is_empty(),
        "no stderr line names InvalidUtf8Chef with a UTF-8 reason; {}",
        run.context()
    );
    let s = summary_of(&run, "InvalidUtf8Chef");
    assert!(s.failures() >= 1, "{}", s.line);
    assert_eq!(s.get("dumplings"), 0, "{}", s.line);
}

#[test]
fn bad_packet_indexes_are_dropped_and_counted() {
    let capture = Capture::Loopback;
    let run = run_hostile("bad-index", "bad_packet_index_chef.wasm", capture, &[]);
    assert_kitchen_unharmed(capture, &run, &[]);
    assert_no_output(&run, "BadPacketIndexChef", "bad_index");
    assert_reported(&run, "BadPacketIndexChef", &["outside the batch"]);
    let s = summary_of(&run, "BadPacketIndexChef");
    assert_eq!(s.get("invalid"), 2 * s.get("packet calls"), "{}", s.line);
}

#[test]
fn weird_but_valid_json_never_breaks_the_output() {
    let capture = Capture::Loopback;
    // A pretty-printed payload copied verbatim splits a dumpling over several stdout lines.
    // A 100 000-deep array, a lone-surrogate escape and `1e400` are valid RFC 8259 JSON that
    // the hub (`check_dumpling` runs serde_json's parser, as a `Value` parse would) and the Rust eaters refuse
    // as "not JSON". The kitchen must re-encode the first and refuse (and count) the others:
    // its payload check must be at least as strict as the hub's.
    let run = run_hostile("weird-json", "weird_json_chef.wasm", capture, &[]);
    let mut problems = Vec::new();
    let fragments = run
        .lines
        .iter()
        .filter(|l| !l.starts_with("{\"metadata\""))
        .count();
    if fragments > 0 {
        problems.push(format!(
            "{fragments} stdout lines are fragments of multi-line dumplings (the \
             pretty-printed payload was copied verbatim)"
        ));
    }
    for flavour in ["nested", "surrogate", "big-number"] {
        let key = format!("\"flavour\":\"{flavour}\"");
        let bad: Vec<&String> = run.bad_lines.iter().filter(|l| l.contains(&key)).collect();
        if let Some(first) = bad.first() {
            problems.push(format!(
                "{} `{flavour}` dumplings emitted that serde_json (the hub's check_dumpling, \
                 the Rust eaters) refuses, e.g. {}",
                bad.len(),
                first.chars().take(100).collect::<String>()
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "WeirdJsonChef's valid-but-awkward payloads broke the output:\n  {}\n{}",
        problems.join("\n  "),
        run.context()
    );
    assert_kitchen_unharmed(capture, &run, &["WeirdJsonChef"]);
    let s = summary_of(&run, "WeirdJsonChef");
    let calls = s.get("packet calls");
    assert!(calls >= 1, "{}", s.line);
    // Every payload is either emitted or dropped and counted.
    assert_eq!(
        s.get("dumplings") + s.get("invalid") + s.get("oversize"),
        4 * calls,
        "{}",
        s.line
    );
    for d in run.of("WeirdJsonChef") {
        if d["payload"]["flavour"] == "pretty" {
            assert_eq!(d["payload"]["lines"], serde_json::json!([1, 2]), "{d}");
        }
    }
}

#[test]
fn log_flood_is_rate_limited_not_fatal() {
    let capture = Capture::Loopback;
    let run = run_hostile("log-flood", "log_flood_chef.wasm", capture, &[]);
    assert_kitchen_unharmed(capture, &run, &["LogFloodChef"]);
    let s = summary_of(&run, "LogFloodChef");
    assert_eq!(s.failures(), 0, "logging must not kill a chef: {}", s.line);
    assert!(s.get("packet calls") >= 1, "{}", s.line);
    assert_eq!(run.of("LogFloodChef").len() as u64, s.get("packet calls"));
    // Each call writes 2000 4 KiB log messages and 2000 stderr lines (~8.4 MB per call);
    // the kitchen's stderr must stay far below that.
    let written = s.get("packet calls") * 2000 * (4200 + 240);
    assert!(
        (run.stderr.len() as u64) < written / 10,
        "stderr is {} bytes for {written} bytes of chef logging",
        run.stderr.len()
    );
    assert_reported(&run, "LogFloodChef", &["suppressed"]);
}

#[test]
fn sleeping_chef_is_stopped_at_the_deadline() {
    // The chef sleeps an hour inside `wasi:io/poll` (a host call, where epoch interruption
    // does not reach). A kitchen that only checks the deadline when the guest runs again
    // hangs for the whole sleep; this run is bounded at 60 s, 300x the deadline.
    let capture = Capture::Loopback;
    let dir = chef_dir(
        "sleep",
        &[("sleep_chef.wasm", hostile_wasm("sleep_chef.wasm"))],
    );
    let run = kitchen_within(capture, &dir, &[], Duration::from_secs(60));
    assert_kitchen_unharmed(capture, &run, &[]);
    assert_no_output(&run, "SleepChef", "survived_sleep_ms");
    assert_reported(&run, "SleepChef", &["200 ms deadline"]);
    let s = summary_of(&run, "SleepChef");
    assert!(s.get("timeouts") >= 1, "{}", s.line);
    assert_eq!(s.get("packet calls"), 0, "{}", s.line);
}

#[test]
fn exit_in_a_chef_ends_the_call_not_the_kitchen() {
    let capture = Capture::Loopback;
    let run = run_hostile("exit", "exit_chef.wasm", capture, &[]);
    // The kitchen ran to the end: every good chef's output is complete (including the
    // final poke's dumplings, which come after every ExitChef call).
    assert_kitchen_unharmed(capture, &run, &[]);
    assert_no_output(&run, "ExitChef", "ExitChef");
    assert_reported(&run, "ExitChef", &["exit(0)"]);
    let s = summary_of(&run, "ExitChef");
    assert!(s.get("traps") >= 1, "{}", s.line);
    assert_eq!(s.get("packet calls"), 0, "{}", s.line);
}

#[test]
fn aliased_output_cannot_amplify_host_memory() {
    // 1024 dumplings all pointing at one 1 MiB guest string: ~1 GiB if the host lifted them
    // all. wasmtime's host-call copy budget stops the lift; the kitchen must survive, report
    // it, and stay far below that in memory.
    let capture = Capture::Loopback;
    let run = run_hostile("aliased-output", "aliased_output_chef.wasm", capture, &[]);
    assert_kitchen_unharmed(capture, &run, &[]);
    assert_no_output(&run, "AliasedOutputChef", "aaaaaaaaaaaaaaaa");
    assert_reported(&run, "AliasedOutputChef", &["trapped"]);
    let s = summary_of(&run, "AliasedOutputChef");
    assert!(s.failures() >= 1, "{}", s.line);
    assert_eq!(s.get("oversize") + s.get("dumplings"), 0, "{}", s.line);
    if let Some(kib) = run.peak_rss_kib {
        assert!(
            kib < 768 << 10,
            "the kitchen peaked at {} MiB: the aliased strings were copied",
            kib >> 10
        );
    }
}

// ---------------------------------------------------------------------------------------
// Load-time refusals: the file never gets to run.

#[test]
fn filesystem_chef_is_refused_at_load() {
    let run = assert_refused_at_load(
        "filesystem",
        "filesystem_chef.wasm",
        hostile_wasm("filesystem_chef.wasm"),
        &["wasi:filesystem"],
    );
    assert_no_output(&run, "FilesystemChef", "filesystem_chef_read");
    assert!(
        run.summary("FilesystemChef").is_none(),
        "a refused chef must not be running"
    );
}

#[test]
fn sockets_chef_is_refused_at_load_naming_sockets() {
    // std::net on wasip2 pulls in wasi:filesystem too (wasi-libc's descriptor table); the
    // refusal must still tell the operator the chef wants network sockets.
    let run = assert_refused_at_load(
        "sockets",
        "sockets_chef.wasm",
        hostile_wasm("sockets_chef.wasm"),
        &["wasi:sockets"],
    );
    // Every forbidden import is named, not just the first one found.
    assert_reported(
        &run,
        "sockets_chef.wasm",
        &["wasi:sockets", "wasi:filesystem"],
    );
    assert_no_output(&run, "SocketsChef", "sockets_chef_connected");
}

#[test]
fn wrong_wit_version_chef_is_refused_at_load() {
    let run = assert_refused_at_load(
        "wrong-version",
        "wrong_version_chef.wasm",
        hostile_wasm("wrong_version_chef.wasm"),
        &["0.3.0", "0.2.0", "0.1.0"],
    );
    assert_no_output(&run, "WrongVersionChef", "wrong_version_loaded");
}

#[test]
fn bad_chef_name_is_refused_at_load() {
    let run = assert_refused_at_load(
        "bad-name",
        "bad_name_chef.wasm",
        hostile_wasm("bad_name_chef.wasm"),
        &["Bad Name Chef!"],
    );
    assert_no_output(&run, "Bad Name Chef!", "bad_name_loaded");
}

#[test]
fn describe_that_never_returns_is_refused_at_load() {
    let run = assert_refused_at_load(
        "describe-loop",
        "describe_loop_chef.wasm",
        hostile_wasm("describe_loop_chef.wasm"),
        &["deadline"],
    );
    assert_no_output(&run, "DescribeLoopChef", "describe_loop_loaded");
}

#[test]
fn malformed_wasm_is_refused_at_load() {
    let mut garbage = b"this is not webassembly at all \x00\x01\x02".to_vec();
    garbage.extend((0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8));
    assert_refused_at_load(
        "malformed",
        "malformed.wasm",
        garbage,
        &["not a webassembly file"],
    );
    // A component header followed by garbage: past the magic check, the compiler refuses.
    let mut truncated = hostile_wasm("panic_chef.wasm");
    truncated.truncate(truncated.len() / 2);
    assert_refused_at_load(
        "truncated",
        "truncated.wasm",
        truncated,
        &["invalid webassembly component"],
    );
}

#[test]
fn empty_file_is_refused_at_load() {
    assert_refused_at_load("empty", "empty.wasm", Vec::new(), &["empty"]);
}

#[test]
fn core_module_is_refused_at_load() {
    // The smallest core module, then a real one (a type, a function and its export).
    assert_refused_at_load(
        "core-empty",
        "core-empty.wasm",
        b"\0asm\x01\0\0\0".to_vec(),
        &["core webassembly module"],
    );
    let real: Vec<u8> = [
        &b"\0asm\x01\0\0\0"[..],
        // type section: one type, () -> i32
        &[0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7f],
        // function section: one function of type 0
        &[0x03, 0x02, 0x01, 0x00],
        // export section: "describe" -> func 0
        &[0x07, 0x0c, 0x01, 0x08],
        b"describe",
        &[0x00, 0x00],
        // code section: one body, i32.const 42, end
        &[0x0a, 0x06, 0x01, 0x04, 0x00, 0x41, 0x2a, 0x0b],
    ]
    .concat();
    assert_refused_at_load(
        "core-real",
        "core-real.wasm",
        real,
        &["core webassembly module"],
    );
}

// ---------------------------------------------------------------------------------------
// Impersonation and everything at once.

#[test]
fn impersonating_a_builtin_chef_is_reported() {
    // The kitchen lets a chef file replace the built-in chef of the same name (a documented
    // override). The replacement must be loud, and every other good chef unchanged.
    let capture = Capture::Loopback;
    let run = run_hostile("impersonator", "impersonator_chef.wasm", capture, &[]);
    assert_kitchen_unharmed(capture, &run, &["PacketCountChef"]);
    assert!(
        !run.log_lines(&["PacketCountChef", "impersonator_chef.wasm", "overrides"])
            .is_empty(),
        "the override of PacketCountChef by a chef file is not reported; {}",
        run.context()
    );
    // Never both: dumplings labelled PacketCountChef come from one chef only.
    let real = baseline(capture).lines_of("PacketCountChef");
    let got = run.lines_of("PacketCountChef");
    let forged = got.iter().filter(|l| l.contains("impersonated")).count();
    assert!(
        forged == got.len() || got == real,
        "PacketCountChef's dumplings mix the built-in's and the impersonator's"
    );
}

#[test]
fn every_hostile_chef_at_once() {
    let capture = Capture::AnyConnect;
    let files = [
        "infinite_loop_chef.wasm",
        "slow_under_deadline_chef.wasm",
        "slow_over_deadline_chef.wasm",
        "memory_bomb_chef.wasm",
        "stack_overflow_chef.wasm",
        "panic_chef.wasm",
        "huge_output_chef.wasm",
        "dumpling_flood_chef.wasm",
        "invalid_json_chef.wasm",
        "invalid_utf8_chef.wasm",
        "bad_packet_index_chef.wasm",
        "log_flood_chef.wasm",
        "exit_chef.wasm",
        "aliased_output_chef.wasm",
        "filesystem_chef.wasm",
        "sockets_chef.wasm",
        "wrong_version_chef.wasm",
        "bad_name_chef.wasm",
        "describe_loop_chef.wasm",
    ];
    let mut staged: Vec<(&str, Vec<u8>)> = files.iter().map(|f| (*f, hostile_wasm(f))).collect();
    staged.push(("empty.wasm", Vec::new()));
    staged.push(("core.wasm", b"\0asm\x01\0\0\0".to_vec()));
    staged.push(("garbage.wasm", b"garbage garbage garbage".to_vec()));
    let dir = chef_dir("all-at-once", &staged);
    let run = kitchen(capture, &dir, &[]);
    // Only the chefs that behave (or are merely capped) may add dumplings.
    assert_kitchen_unharmed(
        capture,
        &run,
        &["SlowUnderDeadlineChef", "DumplingFloodChef", "LogFloodChef"],
    );
    for refused in [
        "filesystem_chef.wasm",
        "sockets_chef.wasm",
        "wrong_version_chef.wasm",
        "bad_name_chef.wasm",
        "describe_loop_chef.wasm",
        "empty.wasm",
        "core.wasm",
        "garbage.wasm",
    ] {
        assert_reported(&run, refused, &["not loaded"]);
    }
    for (chef, reason) in [
        ("InfiniteLoopChef", "deadline"),
        ("SlowOverDeadlineChef", "deadline"),
        ("MemoryBombChef", "memory limit"),
        ("StackOverflowChef", "trapped"),
        ("PanicChef", "trapped"),
        ("HugeOutputChef", "byte limit"),
        ("InvalidJsonChef", "not one JSON value"),
        ("BadPacketIndexChef", "outside the batch"),
        ("ExitChef", "exit(0)"),
        ("AliasedOutputChef", "trapped"),
    ] {
        assert_reported(&run, chef, &[reason]);
        assert!(summary_of(&run, chef).counts.values().any(|&n| n > 0));
    }
    let slow = summary_of(&run, "SlowUnderDeadlineChef");
    assert_eq!(slow.failures(), 0, "{}", slow.line);
    assert_eq!(slow.get("packets"), capture.packets(), "{}", slow.line);
}

// ---------------------------------------------------------------------------------------
// Names, strings and budgets a chef controls (issue 9, items 2 and 6).

#[test]
fn reserved_chef_names_are_refused_at_load() {
    let run = assert_refused_at_load(
        "reserved-name",
        "reserved_name_chef.wasm",
        hostile_wasm("reserved_name_chef.wasm"),
        &["KitchenStatusChef", "reserved"],
    );
    assert_no_output(&run, "KitchenStatusChef", "forged_status");
}

#[test]
fn chef_strings_are_cut_and_escaped_in_the_log_the_list_and_the_status() {
    let capture = Capture::Loopback;
    let file = "forged_strings_chef.wasm";
    let run = run_hostile("forged-strings", file, capture, &["--kitchen-status", "on"]);
    assert_kitchen_unharmed(capture, &run, &["KitchenStatusChef"]);
    // The log message's newline did not start a forged line: the forged text is on the
    // chef's own line, escaped, and no line starts with it.
    assert_reported(&run, "ForgedStringsChef", &["FORGED-LOG-LINE", "\\n"]);
    for line in run.stderr.lines() {
        assert!(
            !line.starts_with("2026-12-05T00:00:00.000000Z") && !line.starts_with("FORGED"),
            "a chef log message forged a kitchen log line: {line}"
        );
    }
    // The terminal escapes arrive as text (`\x1b`), never as ESC (raw ESC sequences are
    // stripped from `run.stderr`, so the text form proves they were escaped).
    assert!(run.stderr.contains("\\x1b[31m"), "{}", run.context());
    // The 2 MB version was cut: the status dumpling (one hub message) carries <= 65 chars.
    let status = run
        .of("KitchenStatusChef")
        .into_iter()
        .last()
        .unwrap_or_else(|| panic!("no KitchenStatusChef dumpling; {}", run.context()));
    let version = status["payload"]["chefs"]["ForgedStringsChef"]["version"]
        .as_str()
        .unwrap_or_else(|| panic!("no ForgedStringsChef in the status: {status}"))
        .to_owned();
    assert!(
        version.chars().count() <= 65,
        "version not cut: {} chars",
        version.len()
    );
    assert!(run
        .lines
        .iter()
        .all(|l| l.len() <= dumpling::MAX_MESSAGE_BYTES));

    // `nd-sniff -l`: one entry per chef, every string escaped and bounded.
    let dir = workspace_root().join("target/hostile-chefs/run/forged-strings");
    let mut cmd = Command::new(bin("nd-sniff"));
    cmd.args(["-l", "--no-builtin-chefs", "-d"]).arg(&dir);
    let (out, _) = run_bounded("nd-sniff -l", &mut cmd, Duration::from_secs(120));
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(list.contains("ForgedStringsChef"), "{list}");
    assert!(!list.contains('\u{1b}'), "a raw ESC reached the -l output");
    for line in list.lines() {
        assert!(
            !line.starts_with("FakeChef")
                && !line.starts_with("  version:  forged-entry")
                && !line.starts_with("FORGED-VERSION-LINE"),
            "a describe() string forged a -l line: {line}"
        );
        assert!(
            line.len() < 2048,
            "an unbounded -l line: {} bytes",
            line.len()
        );
    }
}

#[test]
fn payload_depth_is_checked_with_the_envelope_exactly_as_the_hub_does() {
    // 126 deep + envelope = 127: sent; 127 deep + envelope = 128: the hub's parser would
    // refuse it, so the kitchen refuses and counts it instead of sending it.
    let capture = Capture::Loopback;
    let run = run_hostile("deep-json", "deep_json_chef.wasm", capture, &[]);
    assert_kitchen_unharmed(capture, &run, &["DeepJsonChef"]);
    let sent = run.lines_of("DeepJsonChef");
    let s = summary_of(&run, "DeepJsonChef");
    assert!(!sent.is_empty(), "{}", run.context());
    assert_eq!(s.get("invalid"), sent.len() as u64, "{}", s.line);
    for line in &sent {
        // The hub's own check accepts every dumpling the kitchen sent.
        assert!(dumpling::check_dumpling(line.as_bytes()).is_ok(), "{line}");
        assert!(line.contains(&"[".repeat(126)) && !line.contains(&"[".repeat(127)));
    }
    assert_reported(&run, "DeepJsonChef", &["deeper than 127"]);
}

#[test]
fn output_budget_refusals_are_counted_per_call_and_per_second() {
    let capture = Capture::AnyConnect;
    let run = run_hostile(
        "output-budget-call",
        "dumpling_flood_chef.wasm",
        capture,
        &["--chef-output-bytes-per-call", "2000"],
    );
    // The budgets are every chef's (a tight one caps the good chefs too), so only the
    // kitchen's health is compared here, not the other chefs' output.
    assert_eq!(run.code, Some(0), "{}", run.context());
    assert!(run.bad_lines.is_empty(), "{:?}", run.bad_lines);
    let s = summary_of(&run, "DumplingFloodChef");
    assert!(s.get("over output budget") > 0, "{}", s.line);
    let mut per_call: BTreeMap<u64, u64> = BTreeMap::new();
    for d in run.of("DumplingFloodChef") {
        if d["metadata"]["driver"] == "packet" {
            *per_call
                .entry(d["payload"]["call"].as_u64().expect("call"))
                .or_default() += d["payload"].to_string().len() as u64;
        }
    }
    assert!(!per_call.is_empty());
    assert!(per_call.values().all(|&b| b <= 2000), "{per_call:?}");
    assert_reported(&run, "DumplingFloodChef", &["output budget", "per call"]);

    let run = run_hostile(
        "output-budget-sec",
        "dumpling_flood_chef.wasm",
        capture,
        &["--chef-output-bytes-per-sec", "1000"],
    );
    // The budgets are every chef's (a tight one caps the good chefs too), so only the
    // kitchen's health is compared here, not the other chefs' output.
    assert_eq!(run.code, Some(0), "{}", run.context());
    assert!(run.bad_lines.is_empty(), "{:?}", run.bad_lines);
    let s = summary_of(&run, "DumplingFloodChef");
    assert!(s.get("over output budget") > 0, "{}", s.line);
    let bytes: u64 = run
        .of("DumplingFloodChef")
        .iter()
        .map(|d| d["payload"].to_string().len() as u64)
        .sum();
    // 48 s of capture time: at most one second's burst plus 1000 bytes per second.
    assert!(
        bytes <= 1000 * 50,
        "{bytes} payload bytes in 48 s of capture"
    );
    assert_reported(&run, "DumplingFloodChef", &["output budget", "per second"]);
}

/// `--chef-threads` changes who runs the chefs, never what they say: a replay with the
/// built-in chefs, the control chef and three hostile ones (a chef that panics and is
/// restarted then quarantined, one that floods dumplings over its per-call cap, one that
/// takes 20 ms per call) gives byte-identical stdout on one thread and on four workers
/// (but for the slow chef's own report of the wall time it spun).
#[test]
fn chef_threads_give_byte_identical_replay_output() {
    let capture = Capture::AnyConnect;
    let files = [
        "panic_chef.wasm",
        "dumpling_flood_chef.wasm",
        "slow_under_deadline_chef.wasm",
    ];
    let staged: Vec<(&str, Vec<u8>)> = files.iter().map(|f| (*f, hostile_wasm(f))).collect();
    let dir = chef_dir("chef-threads", &staged);
    // What is compared is the order and content of the output, not deadlines: a deadline
    // 100x the slow chef's 20 ms keeps a loaded machine (a chef thread waiting 180 ms for a
    // core) from stopping a call in one run and not the other.
    let deadline = ["--chef-deadline-ms", "2000"];
    let one = kitchen(
        capture,
        &dir,
        &[&deadline[..], &["--chef-threads", "1"]].concat(),
    );
    let four = kitchen(
        capture,
        &dir,
        &[&deadline[..], &["--chef-threads", "4"]].concat(),
    );
    for run in [&one, &four] {
        assert_eq!(run.code, Some(0), "{}", run.context());
        assert!(run.bad_lines.is_empty(), "{:?}", run.bad_lines);
    }
    // Several chefs spoke (built-ins, the control chef, the flood), so the order of their
    // dumplings within a batch is really compared.
    let chefs = one.by_chef();
    assert!(chefs.contains_key(CONTROL), "{}", one.context());
    assert!(chefs.contains_key("DumplingFloodChef"), "{}", one.context());
    assert!(chefs.len() >= 4, "only {:?} made dumplings", chefs.keys());
    assert_eq!(
        one.lines.len(),
        four.lines.len(),
        "dumpling count differs between 1 and 4 chef threads"
    );
    // Byte for byte, except the wall time the slow chef reports spinning (`spun_ms`,
    // which differs between any two runs); its dumplings must still sit at the same place
    // with the same metadata and batch size.
    let same = |i: usize| {
        let (a, b) = (&one.dumplings[i], &four.dumplings[i]);
        if a["metadata"]["chef"] == "SlowUnderDeadlineChef" {
            a["metadata"] == b["metadata"]
                && a["payload"]["batch_packets"] == b["payload"]["batch_packets"]
        } else {
            one.lines[i] == four.lines[i]
        }
    };
    if let Some(i) = (0..one.lines.len()).find(|&i| !same(i)) {
        panic!(
            "line {} differs between 1 and 4 chef threads:\n  1: {}\n  4: {}",
            i + 1,
            one.lines[i].chars().take(300).collect::<String>(),
            four.lines[i].chars().take(300).collect::<String>()
        );
    }
    // The panicking chef was handled as on one thread: it trapped and was reported.
    assert_eq!(
        summary_of(&one, "PanicChef").failures(),
        summary_of(&four, "PanicChef").failures()
    );
    assert!(
        summary_of(&four, "PanicChef").failures() > 0,
        "{}",
        four.context()
    );
}
