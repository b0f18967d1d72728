//! Hot reload of `--chef-dir`, end to end: `nd-sniff` replays from a FIFO that the test
//! writes packet by packet (so the test controls the pacing, with no root and no live
//! capture), while the test adds, replaces, breaks and deletes a chef file.
//!
//! Packets are Ethernet/IPv4/UDP frames whose 4-byte payload is their sequence number;
//! the `ReloadChef` fixture echoes it, so the test knows exactly which packets each version
//! of the chef saw. The built-in `PacketCountChef` runs throughout and must count every
//! packet written.

mod common;

use std::fs::File;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use e2e_tests::is_root;

/// Longest wait for one step (a chef compile on a busy 2-core machine included).
const STEP_TIMEOUT: Duration = Duration::from_secs(60);
/// Pause between packets while waiting for the kitchen.
const PACE: Duration = Duration::from_millis(5);

fn pcap_header() -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    h.extend_from_slice(&2u16.to_le_bytes());
    h.extend_from_slice(&4u16.to_le_bytes());
    h.extend_from_slice(&0i32.to_le_bytes());
    h.extend_from_slice(&0u32.to_le_bytes());
    h.extend_from_slice(&65535u32.to_le_bytes());
    h.extend_from_slice(&1u32.to_le_bytes()); // Ethernet
    h
}

/// One pcap record: Ethernet + IPv4 + UDP 40000 → 9999 with `seq` as the payload.
fn packet(seq: u32) -> Vec<u8> {
    record(seq, &udp_frame(seq))
}

/// Ethernet + IPv4 + UDP 40000 → 9999 with `seq` as the payload.
fn udp_frame(seq: u32) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00]);
    let total: u16 = 20 + 8 + 4;
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&total.to_be_bytes());
    f.extend_from_slice(&[0, 1, 0, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1]);
    f.extend_from_slice(&40000u16.to_be_bytes());
    f.extend_from_slice(&9999u16.to_be_bytes());
    f.extend_from_slice(&12u16.to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(&seq.to_be_bytes());
    f
}

/// One pcap record of `f`, the test's `seq`-th packet.
fn record(seq: u32, f: &[u8]) -> Vec<u8> {
    // Capture time: 1 ms apart, all within one poke interval of the run (-p 3600), so
    // the only interval dumplings are the final pokes.
    let ts_ms = 1_700_000_000_000u64 + u64::from(seq);
    let mut r = Vec::new();
    r.extend_from_slice(&((ts_ms / 1000) as u32).to_le_bytes());
    r.extend_from_slice(&(((ts_ms % 1000) * 1000) as u32).to_le_bytes());
    r.extend_from_slice(&(f.len() as u32).to_le_bytes());
    r.extend_from_slice(&(f.len() as u32).to_le_bytes());
    r.extend_from_slice(f);
    r
}

/// The test's side of the kitchen: the FIFO writer, stderr as it arrives, the child.
struct Kitchen {
    child: Child,
    fifo: Option<File>,
    written: u32,
    stderr: Arc<Mutex<String>>,
    stdout: std::thread::JoinHandle<String>,
}

impl Kitchen {
    /// Start `nd-sniff` in `cwd` (so `dir` may be relative to it).
    fn start(cwd: &Path, dir: &Path, fifo: &Path, cache: &Path) -> Kitchen {
        let chefs = ["-c", "PacketCountChef", "-c", "ReloadChef"];
        Kitchen::start_with(cwd, dir, fifo, Some(cache), &chefs)
    }

    /// Start `nd-sniff` in `cwd` with more arguments (`-c` chef choices, flags); `cache`
    /// `None` = the kitchen's default compiled-chef cache.
    fn start_with(
        cwd: &Path,
        dir: &Path,
        fifo: &Path,
        cache: Option<&Path>,
        more: &[&str],
    ) -> Kitchen {
        let cache = cache
            .map(|c| vec!["--chef-cache-dir".into(), c.as_os_str().to_owned()])
            .unwrap_or_default();
        let mut child = Command::new(env!("CARGO_BIN_EXE_nd-sniff"))
            .current_dir(cwd)
            .arg("-r")
            .arg(fifo)
            .arg("-d")
            .arg(dir)
            .args(cache)
            .args([
                "--no-hub",
                "--stdout",
                "-p",
                "3600",
                "--kitchen-status",
                "on",
            ])
            .args(more)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start nd-sniff");
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let err = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                let line = strip_ansi(&line);
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let mut out = child.stdout.take().expect("stdout");
        let stdout = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        });
        // Open the FIFO without blocking (ENXIO until nd-sniff opens its end), bounded.
        use std::os::unix::fs::OpenOptionsExt;
        const O_NONBLOCK: i32 = 0o4000;
        let deadline = Instant::now() + STEP_TIMEOUT;
        let file = loop {
            match std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(O_NONBLOCK)
                .open(fifo)
            {
                Ok(f) => break f,
                Err(_) if Instant::now() < deadline => {
                    if let Ok(Some(status)) = child.try_wait() {
                        panic!(
                            "nd-sniff exited early ({status}): {}",
                            stderr.lock().unwrap()
                        );
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("nd-sniff never opened the FIFO: {e}"),
            }
        };
        let mut k = Kitchen {
            child,
            fifo: Some(file),
            written: 0,
            stderr,
            stdout,
        };
        k.write(&pcap_header());
        k
    }

    /// Write all of `bytes` (the FIFO is non-blocking: retry while it is full).
    fn write(&mut self, mut bytes: &[u8]) {
        let f = self.fifo.as_mut().expect("fifo open");
        let deadline = Instant::now() + STEP_TIMEOUT;
        while !bytes.is_empty() {
            match f.write(bytes) {
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(e) => panic!("writing to the FIFO: {e}"),
            }
        }
    }

    /// Write `frame` as the next packet (timed like the others); returns its pcap record.
    fn send_frame(&mut self, frame: &[u8]) -> Vec<u8> {
        let r = record(self.written, frame);
        self.write(&r);
        self.written += 1;
        std::thread::sleep(PACE);
        r
    }

    fn send(&mut self, n: u32) {
        for _ in 0..n {
            let p = packet(self.written);
            self.write(&p);
            self.written += 1;
            std::thread::sleep(PACE);
        }
    }

    /// Keep sending packets until a stderr line contains every needle; returns the number
    /// of packets written when it was seen.
    fn send_until(&mut self, needles: &[&str]) -> u32 {
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            {
                let s = self.stderr.lock().unwrap();
                if s.lines().any(|l| needles.iter().all(|n| l.contains(n))) {
                    return self.written;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no stderr line with {needles:?} after {STEP_TIMEOUT:?}:\n{}",
                self.stderr.lock().unwrap()
            );
            self.send(1);
        }
    }

    /// Close the FIFO (end of the replay), wait for the exit, return (stdout, stderr).
    fn finish(mut self) -> (String, String) {
        self.fifo.take();
        let deadline = Instant::now() + STEP_TIMEOUT;
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("nd-sniff did not exit: {}", self.stderr.lock().unwrap());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let stdout = self.stdout.join().expect("stdout reader");
        // Let the stderr thread drain the last lines.
        std::thread::sleep(Duration::from_millis(100));
        let stderr = self.stderr.lock().unwrap().clone();
        assert!(status.success(), "nd-sniff failed ({status}):\n{stderr}");
        (stdout, stderr)
    }
}

/// The line without terminal colour codes (`ESC [ ... m`), so needles like `key=value` match.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Copy `from` into `dir/name` the recommended way: a temporary name, then a rename.
fn land(from: &Path, dir: &Path, name: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::copy(from, &tmp).expect("copy chef");
    std::fs::rename(&tmp, dir.join(name)).expect("rename chef");
}

fn scratch(name: &str) -> PathBuf {
    let d = workspace_root()
        .join("target/kitchen-test-tmp")
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

/// A scratch folder for `label` with an empty chef folder (`chefs/`) and a FIFO the test
/// writes packets into: (root, chef folder, FIFO).
fn chef_folder_and_fifo(label: &str) -> (PathBuf, PathBuf, PathBuf) {
    let root = scratch(label);
    let dir = root.join("chefs");
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = root.join("packets.fifo");
    mkfifo(&fifo);
    (root, dir, fifo)
}

fn mkfifo(path: &Path) {
    let ok = Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("run mkfifo")
        .success();
    assert!(ok, "mkfifo {} failed", path.display());
}

/// (seq, version) of ReloadChef's packet dumplings and (packets, version) of its interval
/// dumplings, with their position in the output.
#[derive(Debug)]
struct Seen {
    pos: usize,
    version: String,
    interval: bool,
    value: u64,
}

#[test]
fn add_replace_break_delete_while_packets_flow() {
    let (root, dir, fifo) = chef_folder_and_fifo("reload");
    let v1 = fixture("reload_chef");
    let v2 = fixture("reload_chef_v2");
    let target = dir.join("reload_chef.wasm");

    let mut k = Kitchen::start(&root, &dir, &fifo, &root.join("cache"));
    k.send(20);

    // 1. A new file: its chef starts receiving packets.
    land(&v1, &dir, "reload_chef.wasm");
    let added_at = k.send_until(&["chef added from the chef directory", "ReloadChef"]);
    k.send(30);

    // 2. Replaced: the old version's final interval dumpling, then the new version.
    land(&v2, &dir, "reload_chef.wasm");
    let replaced_at = k.send_until(&["chef reloaded", "ReloadChef"]);
    k.send(30);

    // 3. A broken replacement: refused with the file and the reason; version 2 keeps going.
    std::fs::write(dir.join(".broken.tmp"), b"this is not wasm at all").unwrap();
    std::fs::rename(dir.join(".broken.tmp"), &target).unwrap();
    let broken_at = k.send_until(&["chef reload failed", "reload_chef.wasm"]);
    k.send(30);

    // 4. Deleted: the chef stops.
    std::fs::remove_file(&target).unwrap();
    let removed_at = k.send_until(&["chef file removed", "ReloadChef"]);
    k.send(30);
    let total = k.written;
    let (stdout, stderr) = k.finish();

    let failure = stderr
        .lines()
        .find(|l| l.contains("chef reload failed"))
        .unwrap();
    assert!(
        failure.contains(&target.display().to_string())
            && failure.contains("not a WebAssembly file"),
        "the failure names the file and the exact reason: {failure}"
    );

    let lines: Vec<serde_json::Value> = stdout.lines().map(json).collect();
    let mut seen = Vec::new();
    for (pos, v) in lines.iter().enumerate() {
        if v["metadata"]["chef"] != "ReloadChef" {
            continue;
        }
        let p = &v["payload"];
        let interval = v["metadata"]["driver"] == "interval";
        seen.push(Seen {
            pos,
            version: p["version"].as_str().unwrap_or("?").to_owned(),
            interval,
            value: if interval {
                p["packets"].as_u64().unwrap()
            } else {
                p["seq"].as_u64().unwrap()
            },
        });
    }
    let of = |version: &str, interval: bool| -> Vec<&Seen> {
        seen.iter()
            .filter(|s| s.version == version && s.interval == interval)
            .collect()
    };
    let (p1, i1, p2, i2) = (of("1", false), of("1", true), of("2", false), of("2", true));
    assert!(
        !p1.is_empty() && !p2.is_empty(),
        "both versions ran: {seen:?}"
    );

    // Version 1 saw a contiguous run of packets, starting after it was added.
    let seqs1: Vec<u64> = p1.iter().map(|s| s.value).collect();
    let seqs2: Vec<u64> = p2.iter().map(|s| s.value).collect();
    assert!(seqs1.windows(2).all(|w| w[1] == w[0] + 1), "{seqs1:?}");
    assert!(seqs2.windows(2).all(|w| w[1] == w[0] + 1), "{seqs2:?}");
    // It starts with a packet written after it landed, and at the latest with the first
    // packet written after the kitchen said it was added (a replay of a FIFO applies a
    // reload as soon as the input pauses, so that can be the very next one).
    assert!(seqs1[0] >= 20 && seqs1[0] <= u64::from(added_at));
    // The swap moved no packet: version 2 starts exactly where version 1 stopped.
    assert_eq!(seqs2[0], seqs1[seqs1.len() - 1] + 1, "gap at the swap");
    assert!(seqs2[0] <= u64::from(replaced_at));
    // Version 1's final interval dumpling was flushed, once, between the two versions.
    assert_eq!(i1.len(), 1, "{seen:?}");
    assert_eq!(i1[0].value, seqs1.len() as u64, "final count of version 1");
    assert!(p1.iter().all(|s| s.pos < i1[0].pos) && p2.iter().all(|s| s.pos > i1[0].pos));
    // The broken file did not stop version 2: it saw packets written after the failure.
    assert!(
        *seqs2.last().unwrap() >= u64::from(broken_at),
        "version 2 stopped at the broken file: last seq {:?}, failure seen at {broken_at}",
        seqs2.last()
    );
    // Deleted: version 2's final interval dumpling, then nothing more from ReloadChef.
    assert_eq!(i2.len(), 1, "{seen:?}");
    assert_eq!(i2[0].value, seqs2.len() as u64, "final count of version 2");
    assert!(*seqs2.last().unwrap() < u64::from(removed_at));
    assert!(seen.iter().all(|s| s.pos <= i2[0].pos));
    assert!(total > removed_at);

    // The always-on chef missed no packet during any of this.
    let counts: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|v| v["metadata"]["chef"] == "PacketCountChef")
        .collect();
    let last = counts
        .last()
        .expect("PacketCountChef made its final dumpling");
    assert_eq!(
        last["payload"]["packet_counts"]["Ethernet"].as_u64(),
        Some(u64::from(total)),
        "{last}"
    );

    // The kitchen status (final poke) agrees, and says what happened to the chef file.
    let status = lines
        .iter()
        .rev()
        .find(|v| v["metadata"]["chef"] == "KitchenStatusChef")
        .expect("a KitchenStatusChef dumpling");
    let pc = &status["payload"]["chefs"]["PacketCountChef"];
    assert_eq!(
        pc["packets_offered"].as_u64(),
        Some(u64::from(total)),
        "{status}"
    );
    assert_eq!(pc["state"], "running");
    assert!(
        pc.get("mean_ns").is_none(),
        "replay status has no wall-clock timings"
    );
    assert!(status["payload"]["chefs"].get("ReloadChef").is_none());
    assert_eq!(
        status["payload"]["capture"]["packets"].as_u64(),
        Some(u64::from(total))
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn a_broken_new_file_is_reported_and_a_fixed_one_then_runs() {
    let (root, dir, fifo) = chef_folder_and_fifo("reload-broken");
    // A chef loaded at start from a directory given as a relative path: replacing it must
    // be recognised as a new version of the same file (not a second chef of that name).
    land(&fixture("reload_chef"), &dir, "early.wasm");
    let mut k = Kitchen::start(&root, Path::new("chefs"), &fifo, &root.join("cache"));
    k.send(5);
    land(&fixture("reload_chef_v2"), &dir, "early.wasm");
    k.send_until(&["chef reloaded", "ReloadChef", "new_version=2"]);
    k.send(5);
    std::fs::remove_file(dir.join("early.wasm")).unwrap();
    let removed = k.send_until(&["chef file removed", "ReloadChef"]);
    // A core module is refused with the typed reason; nothing is added.
    std::fs::write(dir.join(".x.tmp"), b"\0asm\x01\0\0\0").unwrap();
    std::fs::rename(dir.join(".x.tmp"), dir.join("late.wasm")).unwrap();
    k.send_until(&["chef not loaded", "late.wasm", "core WebAssembly module"]);
    // The same file fixed: the chef starts.
    land(&fixture("reload_chef"), &dir, "late.wasm");
    let added = k.send_until(&["chef added from the chef directory", "ReloadChef"]);
    k.send(10);
    let total = k.written;
    let (stdout, _) = k.finish();
    let seqs: Vec<u64> = stdout
        .lines()
        .map(json)
        .filter(|v| v["metadata"]["chef"] == "ReloadChef" && v["metadata"]["driver"] == "packet")
        .map(|v| v["payload"]["seq"].as_u64().unwrap())
        .filter(|&s| s >= u64::from(removed))
        .collect();
    assert!(!seqs.is_empty());
    assert!(seqs[0] <= u64::from(added));
    assert_eq!(*seqs.last().unwrap(), u64::from(total) - 1);
    let _ = std::fs::remove_dir_all(&root);
}

/// The dispatcher side in-process: a chef quarantined for trapping gets a fresh chance when
/// its file gets new content, and the swap happens between batches.
#[test]
fn a_quarantined_chef_gets_a_fresh_chance_when_its_file_changes() {
    use kitchen::chef_host::{ChefLimits, ChefSource};
    use kitchen::chefs::reload::{apply, Applied, ReloadEvent, ReloadPolicy};
    use kitchen::dispatch::{ClockMode, Dispatcher};
    use kitchen::outputs::status::{ChefRunState, StatusDetail};

    let host = host_with(ChefLimits {
        quarantine_after: 2,
        ..ChefLimits::default()
    });
    let path = PathBuf::from("/nonexistent/chefs/flaky.wasm");
    let bytes = std::fs::read(fixture("panic_chef")).unwrap();
    let panicky = host.load(ChefSource::File(path.clone()), &bytes).unwrap();
    let out = Collect::default();
    let mut d = Dispatcher::new(
        "k",
        vec![slot(panicky)],
        Duration::from_secs(3600),
        ClockMode::Replay,
        Box::new(out.clone()),
    );
    let push = |d: &mut Dispatcher, seq: u32| {
        let rec = packet(seq);
        let frame = &rec[16..];
        d.push(&capture::PacketRecord {
            // A minute apart: past every restart backoff, so each batch is a new attempt.
            timestamp_ns: 1_700_000_000_000_000_000 + u64::from(seq) * 60_000_000_000,
            link_type: 1,
            interface_index: 0,
            original_len: frame.len() as u32,
            data: frame,
        })
        .unwrap();
        d.flush().unwrap();
    };
    for seq in 0..6 {
        push(&mut d, seq);
    }
    assert!(d.chefs()[0].chef.is_quarantined());
    let report = d.status_report(StatusDetail::Deterministic);
    assert_eq!(report.chefs["PanicChef"].state, ChefRunState::Quarantined);

    let bytes = std::fs::read(fixture("reload_chef")).unwrap();
    let fixed = host.load(ChefSource::File(path.clone()), &bytes).unwrap();
    let applied = apply(
        &mut d,
        ReloadEvent::Ready {
            path: path.clone(),
            chef: Box::new(fixed),
            load_time: Duration::ZERO,
        },
        &ReloadPolicy::default(),
    )
    .unwrap();
    assert_eq!(
        applied,
        Applied::Replaced("PanicChef".into(), "ReloadChef".into())
    );
    for seq in 6..9 {
        push(&mut d, seq);
    }
    let seqs: Vec<u64> = out
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|l| json(l))
        .filter(|v| v["metadata"]["chef"] == "ReloadChef")
        .map(|v| v["payload"]["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, vec![6, 7, 8]);
    let report = d.status_report(StatusDetail::Full);
    let r = &report.chefs["ReloadChef"];
    assert_eq!(
        (r.state, r.reloads, r.packets_offered),
        (ChefRunState::Running, 1, 3)
    );
    assert!(r.mean_ns.is_some() && r.p99_ns.is_some());
    assert!(!report.chefs.contains_key("PanicChef"));

    // A broken version of the same file leaves the running one alone and is counted.
    let applied = apply(
        &mut d,
        ReloadEvent::Failed {
            path: path.clone(),
            error: "not a WebAssembly file (it does not start with the bytes 00 61 73 6d)".into(),
        },
        &ReloadPolicy::default(),
    )
    .unwrap();
    assert_eq!(applied, Applied::Unchanged);
    push(&mut d, 9);
    let report = d.status_report(StatusDetail::Deterministic);
    assert_eq!(report.chefs["ReloadChef"].load_failures, 1);
    assert_eq!(report.chefs["ReloadChef"].packets_offered, 4);
    assert!(report.load_failures[&path.display().to_string()]
        .error
        .contains("00 61 73 6d"));
}

/// Two files that swap contents (`a.wasm` <-> `b.wasm`, as a branch checkout does) each
/// conflict with the other's old version: each new version was refused and the folder never
/// settled. Now a version refused for a name another file holds waits, and both swap in
/// together once both files changed, without a moment with a name held twice.
#[test]
fn two_chef_files_that_swap_contents_settle_once_both_changed() {
    use kitchen::chef_host::ChefSource;
    use kitchen::chefs::reload::{apply_with, Applied, ParkedVersions, ReloadEvent, ReloadPolicy};
    use kitchen::dispatch::{ClockMode, Dispatcher};
    use kitchen::outputs::status::StatusDetail;

    let host = host();
    let a = PathBuf::from("/nonexistent/chefs/a.wasm");
    let b = PathBuf::from("/nonexistent/chefs/b.wasm");
    let port = std::fs::read(fixture("port_chef")).unwrap();
    let reload = std::fs::read(fixture("reload_chef")).unwrap();
    let load = |path: &PathBuf, bytes: &[u8]| {
        Box::new(host.load(ChefSource::File(path.clone()), bytes).unwrap())
    };
    let first = load(&a, &port);
    let second = load(&b, &reload);
    let (port_name, reload_name) = (first.name().to_owned(), second.name().to_owned());
    let out = Collect::default();
    let mut d = Dispatcher::new(
        "k",
        vec![slot(*first), slot(*second)],
        Duration::from_secs(3600),
        ClockMode::Replay,
        Box::new(out),
    );
    let policy = ReloadPolicy::default();
    let mut parked = ParkedVersions::default();
    let source_of = |d: &Dispatcher, name: &str| -> Vec<String> {
        d.chefs()
            .iter()
            .filter(|s| s.chef.name() == name)
            .map(|s| s.chef.source().to_string())
            .collect()
    };

    // a.wasm now holds what b.wasm held: refused (b's old version holds the name), kept.
    let ready = |path: &PathBuf, bytes: &[u8]| ReloadEvent::Ready {
        path: path.clone(),
        chef: load(path, bytes),
        load_time: Duration::ZERO,
    };
    let applied = apply_with(&mut d, ready(&a, &reload), &policy, &mut parked).unwrap();
    assert_eq!(applied, Applied::Unchanged);
    assert_eq!(parked.len(), 1);
    assert_eq!(source_of(&d, &port_name), vec![a.display().to_string()]);
    let report = d.status_report(StatusDetail::Deterministic);
    assert!(report.load_failures[&a.display().to_string()]
        .error
        .contains("starts if that file changes"));

    // b.wasm now holds what a.wasm held: together they leave each name to one chef.
    let applied = apply_with(&mut d, ready(&b, &port), &policy, &mut parked).unwrap();
    assert_ne!(applied, Applied::Unchanged);
    assert!(parked.is_empty());
    assert_eq!(d.chefs().len(), 2);
    assert_eq!(source_of(&d, &port_name), vec![b.display().to_string()]);
    assert_eq!(source_of(&d, &reload_name), vec![a.display().to_string()]);
    let report = d.status_report(StatusDetail::Deterministic);
    assert!(
        report.load_failures.is_empty(),
        "{:?}",
        report.load_failures
    );

    // A version that waits is dropped when its file changes again or goes away.
    let applied = apply_with(&mut d, ready(&a, &port), &policy, &mut parked).unwrap();
    assert_eq!((applied, parked.len()), (Applied::Unchanged, 1));
    let removed = ReloadEvent::Removed { path: a.clone() };
    let applied = apply_with(&mut d, removed, &policy, &mut parked).unwrap();
    assert_eq!(applied, Applied::Removed(reload_name.clone()));
    assert!(parked.is_empty());
    assert_eq!(d.chefs().len(), 1);
}

/// A chef file that never loaded, then removed: its failures were kept (and sent in every
/// `KitchenStatusChef`, and printed at exit) for good; a probe's folder churn left 1 800
/// entries for files long gone and a 248 KB status dumpling.
#[test]
fn a_removed_file_that_never_loaded_leaves_no_load_failure() {
    use kitchen::chefs::reload::{apply, Applied, ReloadEvent, ReloadPolicy};
    use kitchen::dispatch::{ClockMode, Dispatcher};
    use kitchen::outputs::status::StatusDetail;

    let mut d = Dispatcher::new(
        "k",
        vec![slot(load_fixture(&host(), "port_chef"))],
        Duration::from_secs(3600),
        ClockMode::Replay,
        Box::new(Collect::default()),
    );
    let policy = ReloadPolicy::default();
    for i in 0..50 {
        let path = PathBuf::from(format!("/nonexistent/chefs/broken-{i}.wasm"));
        let failed = ReloadEvent::Failed {
            path: path.clone(),
            error: "not a WebAssembly file".into(),
        };
        assert_eq!(apply(&mut d, failed, &policy).unwrap(), Applied::Unchanged);
        let report = d.status_report(StatusDetail::Deterministic);
        assert_eq!(report.load_failures.len(), 1, "{:?}", report.load_failures);
        let removed = ReloadEvent::Removed { path };
        assert_eq!(apply(&mut d, removed, &policy).unwrap(), Applied::Unchanged);
        let report = d.status_report(StatusDetail::Deterministic);
        assert!(
            report.load_failures.is_empty(),
            "{:?}",
            report.load_failures
        );
    }
    assert_eq!(d.chefs().len(), 1, "the running chef is untouched");
}

/// A file whose chef was quarantined, rewritten again and again with versions that fail at
/// once, bought one failing call per version. A new version now waits 10 s of kitchen time
/// after the last failure (doubling per quarantine) before it is called at all.
#[test]
fn new_versions_of_a_quarantined_chef_wait_longer_each_time() {
    use kitchen::chef_host::{ChefLimits, ChefSource};
    use kitchen::chefs::reload::{apply, Applied, ReloadEvent, ReloadPolicy};
    use kitchen::dispatch::{ClockMode, Dispatcher};

    let host = host_with(ChefLimits {
        quarantine_after: 2,
        ..ChefLimits::default()
    });
    let path = PathBuf::from("/nonexistent/chefs/churned.wasm");
    let bytes = std::fs::read(fixture("panic_chef")).unwrap();
    let load = || Box::new(host.load(ChefSource::File(path.clone()), &bytes).unwrap());
    let mut d = Dispatcher::new(
        "k",
        vec![slot(*load())],
        Duration::from_secs(3600),
        ClockMode::Replay,
        Box::new(Collect::default()),
    );
    const T0: u64 = 1_700_000_000_000_000_000;
    const S: u64 = 1_000_000_000;
    let push = |d: &mut Dispatcher, seq: u32, at_s: u64| {
        let frame = udp_frame(seq);
        d.push(&capture::PacketRecord {
            timestamp_ns: T0 + at_s * S,
            link_type: 1,
            interface_index: 0,
            original_len: frame.len() as u32,
            data: &frame,
        })
        .unwrap();
        d.flush().unwrap();
    };
    let traps = |d: &Dispatcher| d.chefs()[0].chef.stats.traps;
    // Two failures a minute apart: quarantined, the last failure at 60 s.
    push(&mut d, 0, 0);
    push(&mut d, 1, 60);
    assert!(d.chefs()[0].chef.is_quarantined());
    assert_eq!(traps(&d), 2);
    let new_version = |d: &mut Dispatcher| {
        let event = ReloadEvent::Ready {
            path: path.clone(),
            chef: load(),
            load_time: Duration::ZERO,
        };
        let applied = apply(d, event, &ReloadPolicy::default()).unwrap();
        assert_eq!(
            applied,
            Applied::Replaced("PanicChef".into(), "PanicChef".into())
        );
    };
    // A new version 1 s later is not called for 10 s; then once, and it is quarantined.
    new_version(&mut d);
    push(&mut d, 2, 61);
    push(&mut d, 3, 69);
    assert_eq!(traps(&d), 2, "called during its wait");
    push(&mut d, 4, 70);
    assert_eq!(traps(&d), 3);
    assert!(d.chefs()[0].chef.is_quarantined());
    // Versions churned meanwhile: the next waits 20 s from that failure; the one replacing
    // it before its start waits for the same moment.
    new_version(&mut d);
    push(&mut d, 5, 75);
    new_version(&mut d);
    push(&mut d, 6, 89);
    assert_eq!(traps(&d), 3, "called during its wait");
    push(&mut d, 7, 90);
    assert_eq!(traps(&d), 4);
    assert!(d.chefs()[0].chef.is_quarantined());
}

/// A version waiting for another file held its instance (memory charged to
/// `--chefs-memory-mib`) for as long as that file never changed. Now it waits a bounded
/// time, then is dropped like any refused duplicate: the swap no longer completes.
#[test]
fn a_parked_chef_version_is_dropped_after_its_wait() {
    use kitchen::chef_host::ChefSource;
    use kitchen::chefs::reload::{apply_with, Applied, ParkedVersions, ReloadEvent, ReloadPolicy};
    use kitchen::dispatch::{ClockMode, Dispatcher};

    let host = host();
    let a = PathBuf::from("/nonexistent/chefs/a.wasm");
    let b = PathBuf::from("/nonexistent/chefs/b.wasm");
    let port = std::fs::read(fixture("port_chef")).unwrap();
    let reload = std::fs::read(fixture("reload_chef")).unwrap();
    let load = |path: &PathBuf, bytes: &[u8]| {
        Box::new(host.load(ChefSource::File(path.clone()), bytes).unwrap())
    };
    let ready = |path: &PathBuf, bytes: &[u8]| ReloadEvent::Ready {
        path: path.clone(),
        chef: load(path, bytes),
        load_time: Duration::ZERO,
    };
    let first = load(&a, &port);
    let port_name = first.name().to_owned();
    let mut d = Dispatcher::new(
        "k",
        vec![slot(*first), slot(*load(&b, &reload))],
        Duration::from_secs(3600),
        ClockMode::Replay,
        Box::new(Collect::default()),
    );
    let policy = ReloadPolicy::default();
    let mut parked = ParkedVersions::waiting_at_most(Duration::from_millis(50));
    let applied = apply_with(&mut d, ready(&a, &reload), &policy, &mut parked).unwrap();
    assert_eq!((applied, parked.len()), (Applied::Unchanged, 1));
    assert_eq!(parked.expire(std::time::Instant::now()), 0, "dropped early");
    std::thread::sleep(Duration::from_millis(60));
    assert_eq!(parked.expire(std::time::Instant::now()), 1);
    assert!(parked.is_empty());
    // b.wasm's half of the swap now conflicts with a.wasm's running version, and waits.
    let applied = apply_with(&mut d, ready(&b, &port), &policy, &mut parked).unwrap();
    assert_eq!((applied, parked.len()), (Applied::Unchanged, 1));
    let holders: Vec<String> = d
        .chefs()
        .iter()
        .filter(|s| s.chef.name() == port_name)
        .map(|s| s.chef.source().to_string())
        .collect();
    assert_eq!(holders, vec![a.display().to_string()]);
}

/// The default `--chef-threads` depends on the clock: live leaves the capture thread a core
/// (one per core but one), a replay takes every core; both at most one per chef.
#[test]
fn the_default_chef_threads_leave_a_core_live_and_take_every_core_replaying() {
    use kitchen::chefs::builtin::BUILTIN_CHEFS;
    use kitchen::dispatch::{ClockMode, Dispatcher};

    let host = host();
    let threads = |mode: ClockMode, cores: usize, chefs: usize| {
        let slots = BUILTIN_CHEFS
            .iter()
            .take(chefs)
            .map(|b| {
                let source = kitchen::chef_host::ChefSource::Builtin(b.file);
                slot(host.load(source, b.bytes).unwrap())
            })
            .collect();
        let mut d = Dispatcher::new(
            "k",
            slots,
            Duration::from_secs(3600),
            mode,
            Box::new(Collect::default()),
        );
        d.follow_chef_count(cores).unwrap();
        d.chef_threads()
    };
    assert!(BUILTIN_CHEFS.len() >= 4, "the built-in chefs are embedded");
    assert_eq!(threads(ClockMode::Live, 2, 4), 1, "live on 2 cores");
    assert_eq!(threads(ClockMode::Replay, 2, 4), 2, "replay on 2 cores");
    assert_eq!(
        threads(ClockMode::Live, 8, 4),
        4,
        "live: at most one per chef"
    );
    assert_eq!(
        threads(ClockMode::Replay, 8, 3),
        3,
        "replay: at most one per chef"
    );
    assert_eq!(threads(ClockMode::Replay, 1, 4), 1, "one core");
}

/// The default `--chef-threads` follows the chef count: a kitchen started with one chef
/// runs on one thread, gets more as hot reload adds chefs (a replay: one per core, at most one
/// per chef; an 8-core machine here) and fewer as they go, and every chef still gets every
/// packet.
#[test]
fn chef_threads_follow_the_chef_count_across_reloads() {
    use kitchen::chef_host::ChefSource;
    use kitchen::chefs::builtin::BUILTIN_CHEFS;
    use kitchen::chefs::reload::{apply, Applied, ReloadEvent, ReloadPolicy};
    use kitchen::dispatch::{ClockMode, Dispatcher};
    use kitchen::outputs::status::StatusDetail;

    let host = host();
    let first = load_fixture(&host, "reload_chef");
    let mut d = Dispatcher::new(
        "k",
        vec![slot(first)],
        Duration::from_secs(3600),
        ClockMode::Replay,
        Box::new(Collect::default()),
    );
    d.follow_chef_count(8).unwrap();
    assert_eq!(d.chef_threads(), 1, "one chef: one thread");
    let mut seq = 0u32;
    let mut push = |d: &mut Dispatcher| {
        for _ in 0..10 {
            let rec = packet(seq);
            let frame = &rec[16..];
            d.push(&capture::PacketRecord {
                timestamp_ns: 1_700_000_000_000_000_000 + u64::from(seq) * 1_000_000,
                link_type: 1,
                interface_index: 0,
                original_len: frame.len() as u32,
                data: frame,
            })
            .unwrap();
            seq += 1;
        }
        d.flush().unwrap();
    };
    push(&mut d);
    let builtins: Vec<_> = BUILTIN_CHEFS.iter().take(4).collect();
    assert_eq!(builtins.len(), 4, "the built-in chefs are embedded");
    let path = |b: &kitchen::chefs::builtin::BuiltinChef| {
        PathBuf::from(format!("/nonexistent/chefs/{}", b.file))
    };
    for (n, b) in builtins.iter().enumerate() {
        let chef = host.load(ChefSource::File(path(b)), b.bytes).unwrap();
        let applied = apply(
            &mut d,
            ReloadEvent::Ready {
                path: path(b),
                chef: Box::new(chef),
                load_time: Duration::ZERO,
            },
            &ReloadPolicy::default(),
        )
        .unwrap();
        assert!(matches!(applied, Applied::Added(_)), "{applied:?}");
        assert_eq!(d.chefs().len(), n + 2);
        assert_eq!(d.chef_threads(), n + 2, "{} chefs on 8 cores", n + 2);
        push(&mut d);
    }
    for (n, b) in builtins.iter().enumerate().take(3) {
        let applied = apply(
            &mut d,
            ReloadEvent::Removed { path: path(b) },
            &ReloadPolicy::default(),
        )
        .unwrap();
        assert!(matches!(applied, Applied::Removed(_)), "{applied:?}");
        assert_eq!(d.chef_threads(), 4 - n, "{} chefs on 8 cores", 4 - n);
    }
    push(&mut d);
    // The first chef saw every packet, on one thread and on five.
    let report = d.status_report(StatusDetail::Deterministic);
    assert_eq!(report.chefs["ReloadChef"].packets_seen, u64::from(seq));
    // A fixed count is kept whatever the chefs do.
    d.set_chef_threads(3).unwrap();
    let b = builtins[0];
    let chef = host.load(ChefSource::File(path(b)), b.bytes).unwrap();
    let event = ReloadEvent::Ready {
        path: path(b),
        chef: Box::new(chef),
        load_time: Duration::ZERO,
    };
    apply(&mut d, event, &ReloadPolicy::default()).unwrap();
    assert_eq!(d.chef_threads(), 3);
}

/// A replay's `KitchenStatusChef` dumplings are reproducible: on the poke grid plus the
/// end, with no wall-clock fields.
#[test]
fn replay_status_dumplings_are_deterministic() {
    use kitchen::chef_host::ChefSource;
    use kitchen::chefs::builtin::BUILTIN_CHEFS;
    use kitchen::dispatch::{ClockMode, Dispatcher};

    let run = || {
        let host = host();
        let chefs: Vec<_> = BUILTIN_CHEFS
            .iter()
            .map(|b| slot(host.load(ChefSource::Builtin(b.file), b.bytes).unwrap()))
            .collect();
        let out = Collect::default();
        let mut d = Dispatcher::new(
            "k",
            chefs,
            Duration::from_secs(1),
            ClockMode::Replay,
            Box::new(out.clone()),
        );
        d.status_inputs().emit = true;
        let mut reader = capture::FileReader::open(&sample_capture()).unwrap();
        while let Some(rec) = reader.next_packet().unwrap() {
            d.push(&rec).unwrap();
        }
        d.finish().unwrap();
        let pokes = d.stats().pokes;
        let lines = out.0.lock().unwrap().clone();
        (lines, pokes)
    };
    let (a, pokes) = run();
    let (b, _) = run();
    let status: Vec<&String> = a
        .iter()
        .filter(|l| l.contains("KitchenStatusChef"))
        .collect();
    assert_eq!(status.len() as u64, pokes, "one status dumpling per poke");
    assert!(pokes >= 2);
    let last = json(status.last().unwrap());
    let chefs = last["payload"]["chefs"].as_object().unwrap();
    assert_eq!(chefs.len(), BUILTIN_CHEFS.len());
    for (name, c) in chefs {
        assert!(
            c.get("mean_ns").is_none() && c.get("p99_ns").is_none(),
            "{name}"
        );
        assert_eq!(c["state"], "running", "{name}");
    }
    assert_eq!(last["payload"]["capture"]["packets"], 50);
    assert_eq!(
        last["payload"]["chefs"]["PacketCountChef"]["packets_offered"],
        50
    );
    assert_eq!(a, b, "replay output (status included) is reproducible");
}

/// Live capture on `lo` (root only; skipped with a message otherwise): a chef file landing
/// while datagrams flow starts making dumplings, a replacement swaps versions with no gap,
/// and `PacketCountChef` counts exactly the datagrams sent.
#[test]
fn live_reload_on_lo() {
    use std::net::UdpSocket;
    if !is_root() {
        eprintln!("SKIP live_reload_on_lo: needs root (live capture on lo)");
        return;
    }
    let root = scratch("reload-live");
    let dir = root.join("chefs");
    std::fs::create_dir_all(&dir).unwrap();
    let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = receiver.local_addr().unwrap().port();
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_nd-sniff"))
        .arg("-d")
        .arg(&dir)
        .arg("--chef-cache-dir")
        .arg(root.join("cache"))
        .args(["-i", "lo", "-f", &format!("udp port {port}")])
        .args(["--no-hub", "--stdout", "-p", "3600"])
        .args(["-c", "PacketCountChef", "-c", "ReloadChef"])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start nd-sniff");
    let collect = |pipe: Box<dyn Read + Send>| {
        let lines = Arc::new(Mutex::new(Vec::<String>::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(strip_ansi(&line));
            }
        });
        lines
    };
    let out = collect(Box::new(child.stdout.take().unwrap()));
    let err = collect(Box::new(child.stderr.take().unwrap()));
    let mut sent: u32 = 0;
    let mut send = |n: u32| {
        for _ in 0..n {
            sender
                .send_to(&sent.to_be_bytes(), ("127.0.0.1", port))
                .unwrap();
            sent += 1;
            std::thread::sleep(PACE);
        }
        sent
    };
    let wait = |what: &str, f: &mut dyn FnMut() -> bool, send: &mut dyn FnMut(u32) -> u32| {
        let deadline = Instant::now() + STEP_TIMEOUT;
        while !f() {
            assert!(
                Instant::now() < deadline,
                "{what} never happened:\n{}",
                err.lock().unwrap().join("\n")
            );
            send(1);
        }
    };
    let has_err = |needle: &str| err.lock().unwrap().iter().any(|l| l.contains(needle));
    let version_seen = |v: &str| {
        out.lock().unwrap().iter().any(|l| {
            let j = json(l);
            j["metadata"]["chef"] == "ReloadChef" && j["payload"]["version"] == v
        })
    };
    let deadline = Instant::now() + STEP_TIMEOUT;
    while !has_err("Sniffing started") {
        assert!(
            Instant::now() < deadline,
            "{}",
            err.lock().unwrap().join("\n")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    send(10);
    land(&fixture("reload_chef"), &dir, "reload_chef.wasm");
    wait(
        "a dumpling from version 1",
        &mut || version_seen("1"),
        &mut send,
    );
    send(10);
    land(&fixture("reload_chef_v2"), &dir, "reload_chef.wasm");
    wait(
        "a dumpling from version 2",
        &mut || version_seen("2"),
        &mut send,
    );
    send(10);
    // Let the last datagrams reach the kitchen, then stop it as an operator would.
    std::thread::sleep(Duration::from_millis(300));
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + STEP_TIMEOUT;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("nd-sniff did not stop: {}", err.lock().unwrap().join("\n"));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    std::thread::sleep(Duration::from_millis(100));
    assert!(status.success(), "{}", err.lock().unwrap().join("\n"));
    let lines: Vec<serde_json::Value> = out.lock().unwrap().iter().map(|l| json(l)).collect();
    let reload: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|v| v["metadata"]["chef"] == "ReloadChef")
        .collect();
    let seqs = |version: &str| -> Vec<u64> {
        reload
            .iter()
            .filter(|v| v["payload"]["version"] == version && v["metadata"]["driver"] == "packet")
            .map(|v| v["payload"]["seq"].as_u64().unwrap())
            .collect()
    };
    let (s1, s2) = (seqs("1"), seqs("2"));
    assert!(!s1.is_empty() && !s2.is_empty(), "{reload:?}");
    assert_eq!(s2[0], s1[s1.len() - 1] + 1, "no datagram lost at the swap");
    let finals1: Vec<&&serde_json::Value> = reload
        .iter()
        .filter(|v| v["payload"]["version"] == "1" && v["metadata"]["driver"] == "interval")
        .collect();
    assert_eq!(finals1.len(), 1, "version 1's final interval dumpling");
    assert_eq!(
        finals1[0]["payload"]["packets"].as_u64(),
        Some(s1.len() as u64)
    );
    let count = lines
        .iter()
        .rev()
        .find(|v| v["metadata"]["chef"] == "PacketCountChef")
        .expect("PacketCountChef's final dumpling");
    assert_eq!(
        count["payload"]["packet_counts"]["UDP"].as_u64(),
        Some(u64::from(sent)),
        "{count}"
    );
    let _ = std::fs::remove_dir_all(&root);
}

// ---------------------------------------------------------------------------------------
// State across a hot reload (chef API 0.2, `netdumplings:chef/state`).

/// The sample `PacketCountChef` as the kitchen's build made it (chef API 0.2, stateful).
fn packet_count_chef_v0_2() -> PathBuf {
    workspace_root().join("target/chefs/wasm32-wasip2/release/packet_count_chef.wasm")
}

/// `wasm` with a custom section appended: the same chef, different bytes (another SHA-256),
/// as a rebuild with another version string would be.
fn rebuilt(wasm: &Path, out: &Path) {
    let mut bytes = std::fs::read(wasm).expect("read chef");
    let name = b"nd-test-rebuild";
    let payload = b"version 2";
    bytes.push(0); // custom section
    bytes.push((1 + name.len() + payload.len()) as u8);
    bytes.push(name.len() as u8);
    bytes.extend_from_slice(name);
    bytes.extend_from_slice(payload);
    std::fs::write(out, bytes).expect("write rebuilt chef");
}

/// `chef`'s interval payloads, in order.
fn interval_payloads(stdout: &str, chef: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|d| d["metadata"]["chef"] == chef && d["metadata"]["driver"] == "interval")
        .map(|d| d["payload"].clone())
        .collect()
}

/// The `Ethernet` count of every `PacketCountChef` interval dumpling, in order.
fn ethernet_counts(stdout: &str) -> Vec<u64> {
    interval_payloads(stdout, "PacketCountChef")
        .iter()
        .map(|p| p["packet_counts"]["Ethernet"].as_u64().unwrap_or(0))
        .collect()
}

/// `v1` (a `PacketCountChef` file) replaces the built-in mid-replay, then a rebuilt copy
/// replaces it: the copy's counts continue from version 1's.
fn counts_continue_across_a_reload(v1: &Path, label: &str, default_cache: bool) {
    let (root, dir, fifo) = chef_folder_and_fifo(label);
    let v2 = root.join("packet_count_chef_v2.wasm");
    rebuilt(v1, &v2);
    // `default_cache`: the kitchen's default compiled-chef cache (where `nd-chef build` put
    // version 1), else a fresh one for this run.
    let cache = (!default_cache).then(|| root.join("cache"));

    // A generous deadline: a call that overruns the default (50 ms) on a loaded machine
    // (a Python chef's first calls) restarts the chef with fresh state, which is not what
    // this test is about.
    let chefs = ["-c", "PacketCountChef", "--chef-deadline-ms", "2000"];
    let mut k = Kitchen::start_with(&root, &dir, &fifo, cache.as_deref(), &chefs);
    k.send(20);
    // Version 1 from the folder takes over from the built-in (which reports its count).
    land(v1, &dir, "packet_count_chef.wasm");
    k.send_until(&["overrides the built-in", "PacketCountChef"]);
    k.send(30);
    // Version 2 (other bytes) replaces it; the counts must carry over.
    land(&v2, &dir, "packet_count_chef.wasm");
    k.send_until(&["chef state carried across the reload", "PacketCountChef"]);
    k.send(25);
    let written = u64::from(k.written);
    let (stdout, stderr) = k.finish();

    // Final pokes: the built-in's (when overridden), version 1's (when replaced), version 2's.
    let counts = ethernet_counts(&stdout);
    assert_eq!(counts.len(), 3, "{label}: {counts:?}\n{stderr}");
    let (builtin, v1, v2) = (counts[0], counts[1], counts[2]);
    assert!(
        v1 > 0 && v2 > v1,
        "{label}: version 2 restarted from zero: {counts:?}"
    );
    // Every packet counted exactly once: by the built-in, or by version 1 then 2 together.
    assert_eq!(builtin + v2, written, "{label}: {counts:?}\n{stderr}");
    assert!(!stderr.contains("state not carried"), "{label}: {stderr}");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn packet_count_chef_keeps_its_counts_across_a_reload() {
    counts_continue_across_a_reload(&packet_count_chef_v0_2(), "state-carry", false);
}

/// A real capture with ~20 DNS lookups (Ethernet, UDP 53), from the shared corpus.
fn dns_capture() -> PathBuf {
    shared_pcap("arkime__dns-wiresharkrepo.pcap")
}

/// `v1` (a `DNSLookupChef` file) replaces the built-in; the first half of a real DNS
/// capture flows; a rebuilt copy replaces it; the second half flows. The copy's last
/// interval dumpling must list every name version 1 learnt, and equal (names, counts,
/// latest times, order) what one uninterrupted `v1` makes of the same packets.
fn dns_table_survives_a_reload(v1: &Path, label: &str, default_cache: bool) {
    let (root, dir, fifo) = chef_folder_and_fifo(label);
    let v2 = root.join("dns_lookup_chef_v2.wasm");
    rebuilt(v1, &v2);
    // `default_cache`: the kitchen's default compiled-chef cache (where `nd-chef build` put
    // version 1), else a fresh one for this run.
    let cache = (!default_cache).then(|| root.join("cache"));
    let frames = frames_of(&dns_capture());
    assert!(frames.len() > 20);

    // A generous deadline: a call that overruns the default (50 ms) on a loaded machine
    // (a Python chef's first calls) restarts the chef with fresh state, which is not what
    // this test is about.
    let chefs = ["-c", "DNSLookupChef", "--chef-deadline-ms", "2000"];
    let mut k = Kitchen::start_with(&root, &dir, &fifo, cache.as_deref(), &chefs);
    land(v1, &dir, "dns_lookup_chef.wasm");
    k.send_until(&["overrides the built-in", "DNSLookupChef"]);
    let half = frames.len() / 2;
    let mut records = Vec::new();
    for f in &frames[..half] {
        records.push(k.send_frame(f));
    }
    land(&v2, &dir, "dns_lookup_chef.wasm");
    k.send_until(&["chef state carried across the reload", "DNSLookupChef"]);
    for f in &frames[half..] {
        records.push(k.send_frame(f));
    }
    let (stdout, stderr) = k.finish();
    assert!(!stderr.contains("state not carried"), "{label}: {stderr}");
    let finals = interval_payloads(&stdout, "DNSLookupChef");
    assert_eq!(
        finals.len(),
        3,
        "built-in, version 1, version 2: {finals:?}"
    );
    let (v1_seen, v2_seen) = (&finals[1]["lookups_seen"], &finals[2]["lookups_seen"]);
    let names = |v: &serde_json::Value| -> Vec<String> {
        v.as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    };
    assert!(
        !names(v1_seen).is_empty(),
        "{label}: version 1 learnt nothing"
    );
    for name in names(v1_seen) {
        assert!(
            v2_seen.get(&name).is_some(),
            "{label}: {name} forgotten: {v2_seen}"
        );
    }

    let plain = uninterrupted(
        &root,
        v1,
        "dns_lookup_chef",
        &records,
        cache.as_deref(),
        &chefs,
    );
    let want = interval_payloads(&plain, "DNSLookupChef");
    let want = &want.last().expect("a final interval dumpling")["lookups_seen"];
    assert_eq!(
        v2_seen, want,
        "{label}: not what an uninterrupted chef says"
    );
    assert_eq!(names(v2_seen), names(want), "{label}: first-seen order");
    let _ = std::fs::remove_dir_all(&root);
}

/// The frames of a capture.
fn frames_of(capture: &Path) -> Vec<Vec<u8>> {
    let mut reader = capture::FileReader::open(capture).expect("open capture");
    let mut frames = Vec::new();
    while let Some(rec) = reader.next_packet().expect("read capture") {
        frames.push(rec.data.to_vec());
    }
    frames
}

/// What one uninterrupted `v1` (landed as `stem.wasm`) makes of `records` replayed from a
/// file with the chef choices `chefs`: its stdout.
fn uninterrupted(
    root: &Path,
    v1: &Path,
    stem: &str,
    records: &[Vec<u8>],
    cache: Option<&Path>,
    chefs: &[&str],
) -> String {
    let plain = root.join("plain.pcap");
    let mut bytes = pcap_header();
    records.iter().for_each(|r| bytes.extend_from_slice(r));
    std::fs::write(&plain, bytes).unwrap();
    let plain_dir = root.join("plain-chefs");
    std::fs::create_dir_all(&plain_dir).unwrap();
    land(v1, &plain_dir, &format!("{stem}.wasm"));
    let out = Command::new(env!("CARGO_BIN_EXE_nd-sniff"))
        .arg("-r")
        .arg(&plain)
        .arg("-d")
        .arg(&plain_dir)
        .args(
            cache
                .iter()
                .flat_map(|c| [std::ffi::OsStr::new("--chef-cache-dir"), c.as_os_str()]),
        )
        .args(["--no-hub", "--stdout", "-p", "3600"])
        .args(chefs)
        .output()
        .expect("run nd-sniff");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The payloads of `chef`'s dumplings made from packets or streams (not interval), in order,
/// except those about the test's own padding packets (`send_until` sends them while it waits
/// for a log line; their source MAC is `udp_frame`'s), which a chef watching every frame
/// sees in a varying number.
fn packet_payloads(stdout: &str, chef: &str) -> Vec<serde_json::Value> {
    const PADDING_MAC: &str = "02:00:00:00:00:01";
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|d| d["metadata"]["chef"] == chef && d["metadata"]["driver"] != "interval")
        .map(|d| d["payload"].clone())
        .filter(|p| !p.to_string().contains(PADDING_MAC))
        .collect()
}

/// A sample chef of the kitchen's build (`stem.wasm`) takes over from its built-in (or, with
/// `built_in` false, joins from the folder) before the first packet of `capture`; the first
/// half of the capture flows; a rebuilt copy replaces it; the second half flows. Everything
/// the chef says from packets and streams over the whole run, and the copy's final interval
/// dumpling when `cumulative_interval` (an interval payload that describes everything seen,
/// not the last interval only), must equal what one uninterrupted version 1 says of the same
/// packets: state lost in the reload would show as a device, lease, name or request
/// reported again, or forgotten.
fn sample_chef_state_survives_a_reload(
    chef: &str,
    stem: &str,
    capture: &str,
    built_in: bool,
    cumulative_interval: bool,
) {
    let frames = frames_of(&shared_pcap(capture));
    assert!(frames.len() >= 20, "{capture}: {} frames", frames.len());
    let half = frames.len() / 2;
    let run = ReloadRun {
        chef,
        stem,
        label: format!("state-sample-{stem}"),
        built_in,
    };
    run.survives(&frames, half, cumulative_interval);
}

/// One sample chef, version 1 replaced by a rebuilt copy in the middle of some frames.
struct ReloadRun<'a> {
    /// The chef's name.
    chef: &'a str,
    /// The file stem of its build (`target/chefs/.../STEM.wasm`).
    stem: &'a str,
    /// Names the test's scratch folder.
    label: String,
    /// Whether the chef is built in (the file overrides it) or joins from the folder.
    built_in: bool,
}

impl ReloadRun<'_> {
    /// Sends `frames[..half]`, reloads, sends the rest: see
    /// [`sample_chef_state_survives_a_reload`].
    fn survives(&self, frames: &[Vec<u8>], half: usize, cumulative_interval: bool) {
        let ReloadRun {
            chef,
            stem,
            ref label,
            built_in,
        } = *self;
        let (root, dir, fifo) = chef_folder_and_fifo(label);
        let v1 = workspace_root().join(format!("target/chefs/wasm32-wasip2/release/{stem}.wasm"));
        let v2 = root.join(format!("{stem}_v2.wasm"));
        rebuilt(&v1, &v2);
        let cache = root.join("cache");

        // A chef that is not built in joins a kitchen that runs a built-in one too.
        let chefs: Vec<&str> = if built_in {
            vec!["-c", chef]
        } else {
            vec!["-c", "PacketCountChef", "-c", chef]
        };
        let mut k = Kitchen::start_with(&root, &dir, &fifo, Some(&cache), &chefs);
        land(&v1, &dir, &format!("{stem}.wasm"));
        let joined = if built_in {
            "overrides the built-in"
        } else {
            "chef added from the chef directory"
        };
        k.send_until(&[joined, chef]);
        let mut records = Vec::new();
        for f in &frames[..half] {
            records.push(k.send_frame(f));
        }
        land(&v2, &dir, &format!("{stem}.wasm"));
        k.send_until(&["chef state carried across the reload", chef]);
        for f in &frames[half..] {
            records.push(k.send_frame(f));
        }
        let (stdout, stderr) = k.finish();
        assert!(!stderr.contains("state not carried"), "{label}: {stderr}");
        // The plain run gets the capture's records as they were sent (same times, same order).
        let plain = uninterrupted(&root, &v1, stem, &records, Some(&cache), &chefs);

        let (got, want) = (
            packet_payloads(&stdout, chef),
            packet_payloads(&plain, chef),
        );
        assert!(
            !want.is_empty(),
            "{label}: the frames make no {chef} dumpling"
        );
        assert_eq!(
            got, want,
            "{label}: what the chef says changed across the reload; the kitchen's log:\n{stderr}"
        );
        if cumulative_interval {
            let got = interval_payloads(&stdout, chef);
            let want = interval_payloads(&plain, chef);
            assert_eq!(
                got.last(),
                want.last(),
                "{label}: the final interval dumpling differs"
            );
            assert!(want.last().is_some(), "{label}: no interval dumpling");
        }
        let _ = std::fs::remove_dir_all(&root);
    }
}

/// A real capture from the shared corpus.
fn shared_pcap(name: &str) -> PathBuf {
    let dir = std::env::var_os("ND_SHARED_PCAPS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("../shared/pcaps"));
    let p = dir.join(name);
    assert!(p.is_file(), "missing {} (set ND_SHARED_PCAPS)", p.display());
    p
}

#[test]
fn arp_and_dhcp_chefs_keep_their_devices_and_leases_across_a_reload() {
    sample_chef_state_survives_a_reload(
        "ARPChef",
        "arp_chef",
        "tcpdump__dhcp-rfc4388.pcap",
        true,
        false,
    );
    sample_chef_state_survives_a_reload(
        "DHCPLeaseChef",
        "dhcp_lease_chef",
        "tcpdump__dhcp-rfc4388.pcap",
        true,
        true,
    );
}

#[test]
fn stream_chefs_keep_their_state_across_a_reload_mid_connection() {
    sample_chef_state_survives_a_reload(
        "TLSServerNameChef",
        "tls_sni_chef",
        "ndpi__chrome.pcap",
        true,
        true,
    );
    sample_chef_state_survives_a_reload(
        "HTTPRequestChef",
        "http_request_chef",
        "zeek__http__http-body-match.pcap",
        true,
        false,
    );
}

/// Ethernet + IPv4 + TCP from 192.0.2.7:`sport` to 198.51.100.9:80 (`to_server`) or
/// back, with `flags` and `payload` (checksums left zero, as offloading NICs capture them).
fn tcp_frame(
    to_server: bool,
    sport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let (client, server) = ([192, 0, 2, 7], [198, 51, 100, 9]);
    let (src, dst, sp, dp) = if to_server {
        (client, server, sport, 80u16)
    } else {
        (server, client, 80u16, sport)
    };
    let mut f = vec![0x02, 0, 0, 0, 0, 0x0a, 0x02, 0, 0, 0, 0, 0x0b, 0x08, 0x00];
    let total = u16::try_from(20 + 20 + payload.len()).expect("small frame");
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&total.to_be_bytes());
    f.extend_from_slice(&[0, 1, 0x40, 0, 64, 6, 0, 0]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&sp.to_be_bytes());
    f.extend_from_slice(&dp.to_be_bytes());
    f.extend_from_slice(&seq.to_be_bytes());
    f.extend_from_slice(&ack.to_be_bytes());
    f.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    f.extend_from_slice(payload);
    f
}

/// A request head cut in two by the reload: the first part reaches version 1 (which keeps
/// it in its state), the rest version 2, which must get it as the next bytes of the same
/// stream. The reload of the kitchen's only stream chef once dropped the reassembler and
/// the flow table in between (version 2 then met the rest as a new stream at offset 0, or
/// with client and server swapped, and the request was lost).
#[test]
fn a_request_head_cut_by_a_reload_is_reported_whole() {
    const SYN: u8 = 0x02;
    const ACK: u8 = 0x10;
    const PSH_ACK: u8 = 0x18;
    const FIN_ACK: u8 = 0x11;
    let first = b"GET /cut/by/a/reload HTTP/1.1\r\nHost: exam";
    let rest = b"ple.test\r\nUser-Agent: reload-test/1\r\n\r\n";
    let (c0, s0) = (1_000u32, 5_000u32);
    let c1 = c0 + 1;
    let c2 = c1 + first.len() as u32;
    let c3 = c2 + rest.len() as u32;
    let mut frames = Vec::new();
    for sport in [41_001u16, 41_002] {
        frames.push(tcp_frame(true, sport, c0, 0, SYN, b""));
        frames.push(tcp_frame(false, sport, s0, c1, SYN | ACK, b""));
        frames.push(tcp_frame(true, sport, c1, s0 + 1, ACK, b""));
        frames.push(tcp_frame(true, sport, c1, s0 + 1, PSH_ACK, first));
    }
    let half = frames.len();
    for sport in [41_001u16, 41_002] {
        // The server speaks first after the reload: a flow table started afresh would take
        // it for the client.
        frames.push(tcp_frame(false, sport, s0 + 1, c2, ACK, b""));
        frames.push(tcp_frame(true, sport, c2, s0 + 1, PSH_ACK, rest));
        frames.push(tcp_frame(false, sport, s0 + 1, c3, FIN_ACK, b""));
        frames.push(tcp_frame(true, sport, c3, s0 + 2, FIN_ACK, b""));
    }
    let run = ReloadRun {
        chef: "HTTPRequestChef",
        stem: "http_request_chef",
        label: "state-cut-head".to_owned(),
        built_in: true,
    };
    run.survives(&frames, half, false);
}

#[test]
fn the_template_chef_keeps_its_devices_across_a_reload() {
    sample_chef_state_survives_a_reload(
        "NewDeviceChef",
        "template_chef",
        "tcpdump__dhcp-rfc4388.pcap",
        false,
        false,
    );
}

#[test]
fn dns_lookup_chef_keeps_its_table_across_a_reload() {
    let v1 = workspace_root().join("target/chefs/wasm32-wasip2/release/dns_lookup_chef.wasm");
    dns_table_survives_a_reload(&v1, "state-dns", false);
}

/// The Python and JavaScript sample chefs, as `tests/lang-chefs.sh` built them
/// (`$ND_LANG_CHEFS_DIR/{py,js}/NAME.wasm`): the same two checks as the Rust chefs. That
/// script runs this test after building them (building them here would take minutes).
#[test]
fn python_and_js_chefs_keep_their_state_across_a_reload() {
    let Some(built) = std::env::var_os("ND_LANG_CHEFS_DIR").map(PathBuf::from) else {
        eprintln!(
            "SKIP python_and_js_chefs_keep_their_state_across_a_reload: ND_LANG_CHEFS_DIR is \
             not set (tests/lang-chefs.sh builds the chefs, then runs this test)"
        );
        return;
    };
    // The kitchen's default compiled-chef cache: `nd-chef build` compiled version 1 into it.
    for lang in ["py", "js"] {
        let chef = |name: &str| {
            let p = built.join(lang).join(format!("{name}.wasm"));
            assert!(p.is_file(), "missing {}", p.display());
            p
        };
        let label = format!("state-{lang}-count");
        counts_continue_across_a_reload(&chef("packet_count_chef"), &label, true);
        let label = format!("state-{lang}-dns");
        dns_table_survives_a_reload(&chef("dns_lookup_chef"), &label, true);
    }
}

/// The C DNSLookupChef (chef API 0.2, `snapshot`/`restore` in `nd_chef_t`) built by
/// `tests/lang-chefs.sh` keeps its table across a reload, as the Python and JS ones do.
#[test]
fn a_c_chef_keeps_its_table_across_a_reload() {
    let Some(built) = std::env::var_os("ND_LANG_CHEFS_DIR").map(PathBuf::from) else {
        eprintln!(
            "SKIP a_c_chef_keeps_its_table_across_a_reload: ND_LANG_CHEFS_DIR is not set \
             (tests/lang-chefs.sh builds the chefs, then runs this test)"
        );
        return;
    };
    let chef = built.join("c").join("dns_lookup_chef.wasm");
    assert!(chef.is_file(), "missing {}", chef.display());
    dns_table_survives_a_reload(&chef, "state-c-dns", true);
}

#[test]
fn a_new_version_that_refuses_the_state_starts_fresh_and_the_log_says_why() {
    let (root, dir, fifo) = chef_folder_and_fifo("state-refused");
    // A built-in chef too: the kitchen does not start with no chef to run.
    let chefs = ["-c", "PacketCountChef", "-c", "StateChef"];
    let mut k = Kitchen::start_with(&root, &dir, &fifo, Some(&root.join("cache")), &chefs);
    land(&fixture("state_chef"), &dir, "state_chef.wasm");
    k.send_until(&["chef added from the chef directory", "StateChef"]);
    k.send(30);
    // Version 2's state version is 2: it refuses version 1's state, naming both versions.
    land(&fixture("state_chef_v2"), &dir, "state_chef.wasm");
    k.send_until(&[
        "state not carried",
        "StateChef",
        "refused the state",
        "the state is StateChef state version 1; this version of the chef reads version 2",
    ]);
    k.send(25);
    let (stdout, stderr) = k.finish();
    let finals = interval_payloads(&stdout, "StateChef");
    assert_eq!(finals.len(), 2, "{finals:?}\n{stderr}");
    assert_eq!(finals[0]["version"], "1");
    assert_eq!(finals[1]["version"], "2");
    let (v1, v2) = (finals[0]["packets"].as_u64(), finals[1]["packets"].as_u64());
    let (v1, v2) = (v1.unwrap_or(0), v2.unwrap_or(0));
    // Fresh: version 2 counted only what came after the swap.
    assert!(v1 >= 30, "{finals:?}");
    assert!(v2 >= 25 && v2 < v1 + 25, "{finals:?}");
    let status = interval_payloads(&stdout, "KitchenStatusChef");
    let last = status.last().expect("a status dumpling");
    assert_eq!(last["chefs"]["StateChef"]["state_fresh"], 1, "{last}");
    // The chef's counts go on across its versions (they went back to zero at each reload,
    // so `/metrics` counters fell and the exit summary counted the last version only).
    let chef = &last["chefs"]["StateChef"];
    assert_eq!(chef["reloads"], 1, "{last}");
    let offered = chef["packets_offered"].as_u64().unwrap_or(0);
    assert!(
        offered >= v1 + 25,
        "{offered} offered, {v1} before the swap: {last}"
    );
    let _ = std::fs::remove_dir_all(&root);
}

/// Version 1 of `PacketCountChef` from the folder, then `new` replaces it (kitchen started with
/// `more` arguments): the state is not carried, the log names the chef and says `why`, and the
/// new version counts only what it saw itself.
fn packet_count_starts_fresh(label: &str, new: &Path, more: &[&str], why: &str) {
    let (root, dir, fifo) = chef_folder_and_fifo(label);
    let mut args = vec!["-c", "PacketCountChef"];
    args.extend_from_slice(more);
    let mut k = Kitchen::start_with(&root, &dir, &fifo, Some(&root.join("cache")), &args);
    land(&packet_count_chef_v0_2(), &dir, "packet_count_chef.wasm");
    k.send_until(&["overrides the built-in", "PacketCountChef"]);
    k.send(30);
    land(new, &dir, "packet_count_chef.wasm");
    k.send_until(&["state not carried", "PacketCountChef", why]);
    k.send(25);
    let (stdout, stderr) = k.finish();
    let counts = ethernet_counts(&stdout);
    assert_eq!(counts.len(), 3, "{label}: {counts:?}\n{stderr}");
    // Fresh: the new version counted only what it saw itself, far fewer than the total.
    assert!(
        counts[2] >= 25 && counts[2] < counts[1] + 25,
        "{label}: {counts:?}"
    );
    assert!(stderr.contains("the new version starts fresh"), "{stderr}");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn a_snapshot_over_the_cap_is_not_carried_and_the_log_says_why() {
    let v2 = scratch("state-over-cap-v2").join("packet_count_chef_v2.wasm");
    rebuilt(&packet_count_chef_v0_2(), &v2);
    // PacketCountChef's snapshot: a format line and ~60 bytes of counts, over 64.
    let cap = ["--chef-state-max-bytes", "64"];
    packet_count_starts_fresh(
        "state-over-cap",
        &v2,
        &cap,
        "over --chef-state-max-bytes (64)",
    );
}

#[test]
fn a_new_version_without_state_starts_fresh_and_the_log_says_why() {
    // The new version is the same chef built against chef API 0.1: no `state` export.
    let old_api = workspace_root().join("tests/data/chefs-v0.1/packet_count_chef.wasm");
    let why = "does not export netdumplings:chef/state";
    packet_count_starts_fresh("state-fresh", &old_api, &[], why);
}

/// The kitchen's one name rule on hot reload: a second file whose chef takes a name a
/// running file chef holds is refused (the running chef stays and keeps every packet), and
/// a file that takes a built-in's name replaces the built-in.
#[test]
fn a_second_file_with_a_running_chefs_name_is_refused_and_a_built_in_is_overridden() {
    let (root, dir, fifo) = chef_folder_and_fifo("name-rule");
    let chefs = ["-c", "PacketCountChef", "-c", "StateChef"];
    let mut k = Kitchen::start_with(&root, &dir, &fifo, Some(&root.join("cache")), &chefs);
    land(&fixture("state_chef"), &dir, "a.wasm");
    k.send_until(&["chef added from the chef directory", "StateChef"]);
    k.send(10);
    // Another file, the same chef name: refused, naming the holder.
    land(&fixture("state_chef_v2"), &dir, "b.wasm");
    k.send_until(&["is already used by", "StateChef", "a.wasm"]);
    // A file that takes the built-in PacketCountChef's name replaces it.
    land(&packet_count_chef_v0_2(), &dir, "c.wasm");
    k.send_until(&["overrides the built-in", "PacketCountChef"]);
    k.send(10);
    let written = u64::from(k.written);
    let (stdout, stderr) = k.finish();
    let finals = interval_payloads(&stdout, "StateChef");
    // Only version 1 (a.wasm) ran, and saw every packet after it was added.
    assert_eq!(finals.len(), 1, "{finals:?}\n{stderr}");
    assert_eq!(finals[0]["version"], "1", "{stderr}");
    assert!(
        finals[0]["packets"].as_u64().unwrap_or(0) >= 20,
        "{finals:?}"
    );
    // The built-in's final count, then the file's: every packet counted once.
    let counts = ethernet_counts(&stdout);
    assert_eq!(counts.len(), 2, "{counts:?}\n{stderr}");
    assert_eq!(counts[0] + counts[1], written, "{counts:?}");
    let _ = std::fs::remove_dir_all(&root);
}

/// A file refused because another file's chef held its chef's name ran only once its own
/// file changed: after its wait for the holder ran out, removing the holder left the name
/// unused until a restart. Now the refused file is loaded again when the name is free.
#[test]
fn a_file_refused_for_a_name_starts_when_the_holder_goes_away() {
    let (root, dir, fifo) = chef_folder_and_fifo("name-freed");
    // PacketCountChef keeps the kitchen running while no StateChef does.
    let chefs = ["-c", "PacketCountChef", "-c", "StateChef"];
    let mut k = Kitchen::start_with(&root, &dir, &fifo, Some(&root.join("cache")), &chefs);
    land(&fixture("state_chef"), &dir, "a.wasm");
    k.send_until(&["chef added from the chef directory", "StateChef", "a.wasm"]);
    land(&fixture("state_chef_v2"), &dir, "b.wasm");
    k.send_until(&["is already used by", "StateChef", "a.wasm"]);
    // Past its wait for a.wasm to change (PARKED_FOR, 10 s): refused for good, as before.
    k.send_until(&["refused until this file changes"]);
    std::fs::remove_file(dir.join("a.wasm")).unwrap();
    k.send_until(&["chef name this file was refused for is free", "b.wasm"]);
    k.send_until(&["chef added from the chef directory", "StateChef", "b.wasm"]);
    k.send(10);
    let (stdout, stderr) = k.finish();
    let finals = interval_payloads(&stdout, "StateChef");
    assert_eq!(
        finals.last().map(|f| f["version"].clone()),
        Some("2".into()),
        "b.wasm's version runs at the end: {finals:?}\n{stderr}"
    );
    let _ = std::fs::remove_dir_all(&root);
}

/// A chef whose file is removed and that comes back (another file, the same chef) goes on
/// from its counts: the exit summary's totals cover both runs (they were the second run's
/// alone, with nothing to say where the first one's packets went).
#[test]
fn a_chef_removed_and_added_again_keeps_its_counts() {
    let (root, dir, fifo) = chef_folder_and_fifo("removed-readded");
    let chefs = ["-c", "PacketCountChef", "-c", "StateChef"];
    let mut k = Kitchen::start_with(&root, &dir, &fifo, Some(&root.join("cache")), &chefs);
    land(&fixture("state_chef"), &dir, "a.wasm");
    k.send_until(&["chef added from the chef directory", "StateChef", "a.wasm"]);
    k.send(10);
    std::fs::remove_file(dir.join("a.wasm")).unwrap();
    k.send_until(&["chef file removed", "StateChef"]);
    k.send(5);
    land(&fixture("state_chef"), &dir, "b.wasm");
    k.send_until(&["chef added from the chef directory", "StateChef", "b.wasm"]);
    k.send(10);
    let (stdout, stderr) = k.finish();
    // Each run's own count, from its final interval dumpling.
    let runs: Vec<u64> = interval_payloads(&stdout, "StateChef")
        .iter()
        .filter_map(|p| p["packets"].as_u64())
        .collect();
    assert_eq!(runs.len(), 2, "{runs:?}\n{stderr}");
    assert!(runs[0] >= 10 && runs[1] >= 10, "{runs:?}");
    let line = stderr
        .lines()
        .find(|l| l.contains("chef StateChef: running;"))
        .unwrap_or_else(|| panic!("no summary line:\n{stderr}"));
    let offered: u64 = line
        .split("running; ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert_eq!(offered, runs[0] + runs[1], "{line}\n{runs:?}");
    let _ = std::fs::remove_dir_all(&root);
}
