//! The chef host and dispatcher against real components and a real capture: built-in chefs,
//! interest filtering, deterministic replay, failure isolation (trap, timeout, memory),
//! admission (refused imports, wrong WIT version, non-components), the compiled cache.

mod common;

use std::time::Duration;

use capture::FileReader;
use common::*;
use kitchen::chef_host::{CacheSetting, CallError, ChefHost, ChefLimits, ChefSource, LoadError};
use kitchen::chefs::builtin::BUILTIN_CHEFS;
use kitchen::parse::packet::{parse_frame, TransportClass};

const POKE: Duration = Duration::from_secs(5);

/// UDP packets to or from port 53 in the sample capture, counted with the parser itself.
fn udp53_packets() -> Vec<(u64, u32)> {
    let mut reader = FileReader::open(&sample_capture()).unwrap();
    let mut out = Vec::new();
    while let Some(rec) = reader.next_packet().unwrap() {
        let p = parse_frame(rec.link_type, rec.data);
        if let Some(kitchen::chef_host::bindings::TransportHeader::Udp(u)) = p.transport {
            if u.source_port == 53 || u.destination_port == 53 {
                out.push((rec.timestamp_ns, p.payload.len));
            }
        }
    }
    out
}

#[test]
fn builtin_chefs_load_and_answer_on_the_sample_capture() {
    assert!(
        !BUILTIN_CHEFS.is_empty(),
        "no built-in chefs were embedded: build the chefs workspace (chefs/Cargo.toml)"
    );
    let host = host();
    let mut chefs = Vec::new();
    for b in BUILTIN_CHEFS {
        let chef = host
            .load(ChefSource::Builtin(b.file), b.bytes)
            .unwrap_or_else(|e| panic!("built-in {} does not load: {e}", b.file));
        chefs.push(chef);
    }
    let names: Vec<String> = chefs.iter().map(|c| c.name().to_owned()).collect();
    for expected in ["ARPChef", "DNSLookupChef", "PacketCountChef"] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }
    // The embedded chefs are built with the current chef SDK, which takes the packed form
    // (a stale build would still say `records`); none of them reads the DNS slots.
    for c in &chefs {
        let d = c.description();
        assert_eq!(
            d.batch_form,
            kitchen::chef_host::bindings::BatchForm::Packed,
            "{}",
            c.name()
        );
        assert!(!d.packed_slots, "{} exports packed-json", c.name());
    }
    let (lines, d) = replay(&sample_capture(), chefs, Some("tcp or udp or arp"), POKE);
    let count = |chef: &str, driver: &str| {
        lines
            .iter()
            .map(|l| json(l))
            .filter(|v| v["metadata"]["chef"] == chef && v["metadata"]["driver"] == driver)
            .count()
    };
    // The original made 4 ARP and 8 DNS packet dumplings from this file (§11); the Rust
    // DNS chef may skip responses (a documented fix of the original), so at most 8.
    assert_eq!(count("ARPChef", "packet"), 4, "{lines:#?}");
    let dns = count("DNSLookupChef", "packet");
    assert!((1..=8).contains(&dns), "{dns} DNS dumplings: {lines:#?}");
    assert!(count("PacketCountChef", "interval") >= 1);
    assert!(count("DNSLookupChef", "interval") >= 1);
    for l in &lines {
        let v = json(l);
        assert_eq!(v["metadata"]["kitchen"], "test_kitchen");
        assert!(v["metadata"]["creation_time"].as_f64().unwrap() > 1.7e9);
    }
    for s in d.chefs() {
        assert_eq!(
            s.chef.stats.traps + s.chef.stats.timeouts,
            0,
            "{}",
            s.chef.name()
        );
    }
}

#[test]
fn interest_filtering_gives_a_chef_only_its_packets() {
    let host = host();
    let chef = load_fixture(&host, "port_chef");
    let expected = udp53_packets();
    assert!(!expected.is_empty(), "the sample capture has DNS over UDP");
    let (lines, d) = replay(&sample_capture(), vec![chef], None, POKE);
    let packet_lines: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| json(l))
        .filter(|v| v["metadata"]["driver"] == "packet")
        .collect();
    assert_eq!(packet_lines.len(), expected.len());
    for (v, (ts, payload_len)) in packet_lines.iter().zip(&expected) {
        let p = &v["payload"];
        assert!(p["sport"] == 53 || p["dport"] == 53, "{v}");
        assert_eq!(p["ts"].as_u64(), Some(*ts));
        assert_eq!(p["payload_len"].as_u64(), Some(u64::from(*payload_len)));
        // The spans were re-pointed into the chef's own arena: the DNS header's first
        // byte (transaction id high byte) is readable there.
        assert!(p["first_byte"].is_u64(), "{v}");
        // creation_time of a packet dumpling is the packet's capture time.
        let ct = v["metadata"]["creation_time"].as_f64().unwrap();
        assert!((ct - *ts as f64 / 1e9).abs() < 1e-6);
    }
    let stats = &d.chefs()[0].chef.stats;
    assert_eq!(stats.packets, expected.len() as u64);
}

#[test]
fn replay_is_byte_for_byte_deterministic() {
    let run = || {
        let host = host();
        let mut chefs = vec![load_fixture(&host, "port_chef")];
        for b in BUILTIN_CHEFS {
            chefs.push(host.load(ChefSource::Builtin(b.file), b.bytes).unwrap());
        }
        replay(
            &sample_capture(),
            chefs,
            Some("tcp or udp or arp"),
            Duration::from_millis(1),
        )
        .0
        .join("\n")
    };
    let a = run();
    let b = run();
    assert!(!a.is_empty());
    assert_eq!(a, b);
}

fn poke_times(poke: Duration) -> (Vec<u64>, u64, u64, kitchen::dispatch::KitchenStats) {
    let host = host();
    let chef = load_fixture(&host, "port_chef");
    let mut reader = FileReader::open(&sample_capture()).unwrap();
    let mut times = Vec::new();
    while let Some(r) = reader.next_packet().unwrap() {
        times.push(r.timestamp_ns);
    }
    let (lines, d) = replay(&sample_capture(), vec![chef], None, poke);
    let pokes = lines
        .iter()
        .map(|l| json(l))
        .filter(|v| v["metadata"]["driver"] == "interval")
        .map(|v| {
            // The interval dumpling's creation_time is the poke time.
            let now = v["payload"]["now"].as_u64().unwrap();
            let ct = v["metadata"]["creation_time"].as_f64().unwrap();
            assert!((ct - now as f64 / 1e9).abs() < 1e-6);
            now
        })
        .collect();
    (pokes, times[0], *times.last().unwrap(), d.stats().clone())
}

#[test]
fn pokes_follow_capture_time_and_end_with_a_final_poke() {
    // 100 ms: the sample capture spans ~65 s with gaps of up to ~33 s (< 1000 pokes).
    let poke = Duration::from_millis(100);
    let (pokes, t0, last, stats) = poke_times(poke);
    let p = poke.as_nanos() as u64;
    // Grid pokes t0+p, t0+2p, ... up to the last packet, then the final poke at `last`.
    let grid: Vec<u64> = (1..)
        .map(|k| t0 + k * p)
        .take_while(|&t| t <= last)
        .collect();
    assert_eq!(stats.pokes_collapsed, 0);
    assert_eq!(pokes.len(), grid.len() + 1);
    assert!(
        pokes[..grid.len()] == grid[..],
        "pokes are not on the t0 + k*p grid"
    );
    assert_eq!(*pokes.last().unwrap(), last);
}

#[test]
fn long_capture_gaps_collapse_into_one_poke() {
    // 1 ms pokes across gaps of many seconds: more than MAX_POKES_PER_GAP per gap.
    let (pokes, _, last, stats) = poke_times(Duration::from_millis(1));
    assert!(stats.pokes_collapsed > 0);
    assert!(pokes.windows(2).all(|w| w[0] < w[1]), "pokes go forward");
    assert_eq!(*pokes.last().unwrap(), last);
}

#[test]
fn the_dispatcher_times_its_lanes_for_the_benchmark() {
    // `nd-kitchen-bench` splits a replay's wall time with these.
    let host = host();
    let (lines, d) = replay(
        &sample_capture(),
        vec![load_fixture(&host, "port_chef")],
        None,
        POKE,
    );
    assert!(!lines.is_empty());
    let stats = d.stats();
    assert!(stats.lanes_ns > 0, "the chef's calls ran in its lane");
    assert_eq!(
        stats.verdict_lanes_ns, 0,
        "no chef here gives stream verdicts"
    );
}

/// An Ethernet + IPv4 + TCP frame 10.0.0.1:`sport` -> 10.0.0.2:80.
fn tcp_to_80(sport: u16, seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 8, 0, 0x45, 0];
    f.extend_from_slice(&(40 + payload.len() as u16).to_be_bytes());
    f.extend_from_slice(&[0, 1, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&80u16.to_be_bytes());
    f.extend_from_slice(&seq.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    f.extend_from_slice(payload);
    f
}

#[test]
fn streams_ending_together_reach_a_chef_in_calls_of_bounded_size() {
    // 2 000 connections whose data waits behind a one-byte hole until their flows end, all
    // at once when the capture does (as a port scan's flows time out together): one
    // delivery of 2 000 chunks. It came in one call, which ran past the chef's deadline
    // on a busy machine, lost the chef's state and made the replay's output depend on it.
    const CONNS: u16 = 2000;
    let mut packets = Vec::new();
    for c in 0..CONNS {
        packets.push((u64::from(c), tcp_to_80(10_000 + c, 1000, 0x02, b"")));
    }
    for c in 0..CONNS {
        let at = 10_000 + u64::from(c);
        packets.push((
            at,
            tcp_to_80(10_000 + c, 1003, 0x18, b"ET / HTTP/1.0\r\n\r\n"),
        ));
    }
    let path = write_pcap("chef_host", "streams-ending-together.pcap", &packets);
    let host = host();
    let chef = load_fixture(&host, "verdict_chef");
    let (lines, d) = replay_tracking_flows(&path, vec![chef], POKE);
    // `VerdictChef` reports each chunk as "<call> <flow id> <direction> ...".
    let mut per_call = std::collections::BTreeMap::<u64, usize>::new();
    let mut flows = std::collections::BTreeSet::new();
    for line in &lines {
        let v = json(line);
        let text = v["payload"].as_str().expect("a report");
        let mut words = text.split(' ');
        let call: u64 = words.next().and_then(|w| w.parse().ok()).expect("call");
        let flow: u64 = words.next().and_then(|w| w.parse().ok()).expect("flow");
        *per_call.entry(call).or_default() += 1;
        flows.insert(flow);
    }
    let stats = &d.chefs()[0].chef.stats;
    assert_eq!(stats.traps + stats.timeouts, 0, "{stats:?}");
    // Every connection's held bytes arrived, ...
    assert_eq!(flows.len(), usize::from(CONNS), "{per_call:?}");
    // ... in calls of at most the bound, as flow events are.
    let largest = per_call.values().copied().max().unwrap_or(0);
    assert!(
        largest <= kitchen::dispatch::MAX_CHUNKS_PER_CALL,
        "a call had {largest} chunks: {per_call:?}"
    );
    assert!(per_call.len() >= usize::from(CONNS).div_ceil(kitchen::dispatch::MAX_CHUNKS_PER_CALL));
}

#[test]
fn a_trapping_chef_does_not_affect_another() {
    let host = host();
    let alone = replay(
        &sample_capture(),
        vec![load_fixture(&host, "port_chef")],
        None,
        POKE,
    )
    .0;
    let (with_panic, d) = replay(
        &sample_capture(),
        vec![
            load_fixture(&host, "panic_chef"),
            load_fixture(&host, "port_chef"),
        ],
        None,
        POKE,
    );
    let port_only: Vec<&String> = with_panic
        .iter()
        .filter(|l| json(l)["metadata"]["chef"] == "PortChef")
        .collect();
    assert_eq!(port_only.len(), alone.len());
    for (a, b) in port_only.iter().zip(&alone) {
        assert_eq!(*a, b);
    }
    let panic = d
        .chefs()
        .iter()
        .find(|s| s.chef.name() == "PanicChef")
        .unwrap();
    assert!(panic.chef.stats.traps >= 1, "{:?}", panic.chef.stats);
    // It was restarted (fresh state) and still answers pokes.
    assert!(with_panic
        .iter()
        .any(|l| json(l)["metadata"]["chef"] == "PanicChef" && json(l)["payload"] == "still here"));
}

#[test]
fn repeated_failures_quarantine_the_chef() {
    let limits = ChefLimits {
        quarantine_after: 3,
        restart_backoff: Duration::ZERO,
        ..ChefLimits::default()
    };
    let host = host_with(limits);
    let mut chef = load_fixture(&host, "panic_chef");
    for i in 0..3 {
        let err = chef.on_packets(&[], &[], i).unwrap_err();
        assert!(matches!(err, CallError::Trap(_)), "{err:?}");
    }
    assert!(chef.is_quarantined());
    assert!(matches!(
        chef.on_packets(&[], &[], 10),
        Err(CallError::Quarantined(3))
    ));
    assert_eq!(chef.stats.traps, 3);
    assert_eq!(chef.stats.restarts, 2);
}

#[test]
fn restart_waits_for_the_backoff_on_the_kitchen_clock() {
    let host = host(); // backoff 100 ms
    let mut chef = load_fixture(&host, "panic_chef");
    let t = 1_000_000_000u64;
    assert!(matches!(
        chef.on_packets(&[], &[], t),
        Err(CallError::Trap(_))
    ));
    assert!(matches!(
        chef.on_packets(&[], &[], t + 50_000_000),
        Err(CallError::BackingOff)
    ));
    assert!(matches!(
        chef.on_packets(&[], &[], t + 150_000_000),
        Err(CallError::Trap(_))
    ));
    assert_eq!(chef.stats.restarts, 1);
}

#[test]
fn an_endless_loop_hits_the_deadline() {
    let limits = ChefLimits {
        deadline: Duration::from_millis(20),
        ..ChefLimits::default()
    };
    let host = host_with(limits);
    let mut chef = load_fixture(&host, "spin_chef");
    let started = std::time::Instant::now();
    let err = chef.on_packets(&[], &[], 0).unwrap_err();
    // The first call into a fresh instance has 10 x the deadline, and says so.
    assert!(
        matches!(
            err,
            CallError::Timeout {
                deadline_ms: 200,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(chef.stats.timeouts, 1);
}

#[test]
fn failures_of_one_driver_quarantine_even_when_the_other_succeeds() {
    // on-packets always times out, on-interval always succeeds, alternately: never two
    // failures in a row overall. The failure-rate rule (5 within 60 s of kitchen time)
    // quarantines it.
    let limits = ChefLimits {
        deadline: Duration::from_millis(20),
        restart_backoff: Duration::ZERO,
        ..ChefLimits::default()
    };
    let host = host_with(limits);
    let mut chef = load_fixture(&host, "spin_chef");
    let sec = 1_000_000_000u64;
    let mut t = 100 * sec;
    for i in 0..5 {
        assert!(!chef.is_quarantined(), "quarantined after {i} failures");
        let err = chef.on_packets(&[], &[], t).unwrap_err();
        assert!(matches!(err, CallError::Timeout { .. }), "{err:?}");
        t += sec;
        if i < 4 {
            chef.on_interval(t, sec).expect("on-interval succeeds");
        }
        t += sec;
    }
    assert!(chef.is_quarantined(), "{:?}", chef.stats);
    assert_eq!(chef.stats.timeouts, 5);
    assert_eq!(chef.stats.interval_calls, 4);
    assert!(matches!(
        chef.on_interval(t, sec),
        Err(CallError::Quarantined(5))
    ));
}

#[test]
fn consecutive_failures_of_one_driver_quarantine_outside_the_window() {
    // Failures 30 s apart (only 2-3 fall in any 60 s window), interleaved with successful
    // pokes: the per-driver count in a row still reaches 5.
    let limits = ChefLimits {
        deadline: Duration::from_millis(20),
        restart_backoff: Duration::ZERO,
        ..ChefLimits::default()
    };
    let host = host_with(limits);
    let mut chef = load_fixture(&host, "spin_chef");
    let step = 30_000_000_000u64;
    let mut t = step;
    for _ in 0..4 {
        assert!(chef.on_packets(&[], &[], t).is_err());
        chef.on_interval(t + 1, 1).expect("on-interval succeeds");
        t += step;
        assert!(!chef.is_quarantined());
    }
    assert!(chef.on_packets(&[], &[], t).is_err());
    assert!(chef.is_quarantined(), "{:?}", chef.stats);
}

#[test]
fn the_first_call_into_a_fresh_instance_gets_a_larger_budget() {
    // Deadline 50 ms, first-call allowance 10x: the first (endless) call is stopped after
    // about 500 ms, not 50. After a timeout the restarted instance gets no allowance.
    let limits = ChefLimits {
        deadline: Duration::from_millis(50),
        restart_backoff: Duration::ZERO,
        ..ChefLimits::default()
    };
    assert_eq!(limits.first_call_grace, 10);
    let host = host_with(limits);
    let mut chef = load_fixture(&host, "spin_chef");
    let started = std::time::Instant::now();
    let err = chef.on_packets(&[], &[], 1).unwrap_err();
    let first = started.elapsed();
    assert!(
        matches!(
            err,
            CallError::Timeout {
                deadline_ms: 500,
                ..
            }
        ),
        "the error names the deadline the call had: {err:?}"
    );
    assert!(
        first >= Duration::from_millis(250),
        "the first call was stopped after {first:?}"
    );
    let started = std::time::Instant::now();
    let err = chef.on_packets(&[], &[], 2).unwrap_err();
    assert!(
        matches!(
            err,
            CallError::Timeout {
                deadline_ms: 50,
                ..
            }
        ),
        "{err:?}"
    );
    let second = started.elapsed();
    assert!(
        second < Duration::from_millis(500),
        "a restart after a timeout must not get the allowance again ({second:?})"
    );
    assert_eq!(chef.stats.restarts, 1);
}

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct LogBuf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuf {
    type Writer = LogBuf;
    fn make_writer(&'a self) -> LogBuf {
        self.clone()
    }
}

#[test]
fn output_warnings_are_logged_first_then_rate_limited_per_kind() {
    let host = host();
    let mut chef = load_fixture(&host, "port_chef");
    let buf = LogBuf::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(buf.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        for _ in 0..100 {
            chef.warn_output("over-cap", 3, format_args!("too many dumplings"));
        }
        chef.warn_output("invalid", 1, format_args!("not JSON"));
        chef.warn_output("invalid", 1, format_args!("not JSON"));
    });
    let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    // The first of each kind at once (a power-of-two rule would log 7 of the 100), then
    // nothing more within OUTPUT_WARN_EVERY.
    assert_eq!(text.matches("too many dumplings").count(), 1, "{text}");
    assert_eq!(text.matches("not JSON").count(), 1, "{text}");
    assert!(text.contains("PortChef"), "{text}");
    assert_eq!(
        kitchen::chef_host::instance::OUTPUT_WARN_EVERY,
        Duration::from_secs(10)
    );
}

#[test]
fn a_memory_hog_hits_the_memory_limit() {
    let limits = ChefLimits {
        memory_bytes: 16 << 20,
        ..ChefLimits::default()
    };
    let host = host_with(limits);
    let mut chef = load_fixture(&host, "hog_chef");
    let err = chef.on_packets(&[], &[], 0).unwrap_err();
    assert!(
        matches!(err, CallError::MemoryLimit { limit_mib: 16 }),
        "{err:?}"
    );
}

#[test]
fn filesystem_import_is_refused_at_load() {
    let err = host()
        .load_file(&fixture("fs_chef"))
        .err()
        .expect("refused");
    match &err {
        LoadError::ForbiddenImport { import, also, .. } => {
            assert!(import.starts_with("wasi:filesystem/"), "{import}");
            // Every forbidden import is listed, not just the first.
            for (name, _) in also {
                assert!(err.to_string().contains(name.as_str()), "{name} not named");
            }
        }
        other => panic!("expected ForbiddenImport, got {other:?}"),
    }
    assert!(err.to_string().contains("wasi:filesystem/"));
}

#[test]
fn another_wit_version_is_refused_with_a_clear_error() {
    let err = host()
        .load_file(&fixture("v2_chef"))
        .err()
        .expect("refused");
    match &err {
        LoadError::WrongWitVersion { found, .. } => assert!(found.contains("@0.3.0"), "{found}"),
        other => panic!("expected WrongWitVersion, got {other:?}"),
    }
}

#[test]
fn non_components_are_refused_with_typed_errors() {
    let host = host();
    let src = || ChefSource::File("x.wasm".into());
    assert!(matches!(host.load(src(), b""), Err(LoadError::Empty)));
    assert!(matches!(
        host.load(src(), b"this is not wasm"),
        Err(LoadError::NotWasm)
    ));
    // The smallest valid core module: magic + version 1, no sections.
    assert!(matches!(
        host.load(src(), b"\0asm\x01\0\0\0"),
        Err(LoadError::CoreModule)
    ));
    let mut garbage = b"\0asm\x0d\0\x01\0".to_vec();
    garbage.extend_from_slice(&[0xff; 64]);
    assert!(matches!(
        host.load(src(), &garbage),
        Err(LoadError::Compile(_))
    ));
    let dir = workspace_root().join("target/kitchen-test-tmp");
    std::fs::create_dir_all(&dir).unwrap();
    let empty = dir.join("empty.wasm");
    std::fs::write(&empty, b"").unwrap();
    assert!(matches!(host.load_file(&empty), Err(LoadError::Empty)));
    assert!(matches!(
        host.load_file(&dir.join("does-not-exist.wasm")),
        Err(LoadError::Io { .. })
    ));
}

#[test]
fn compiled_chefs_are_cached_on_disk() {
    let dir = workspace_root().join(format!(
        "target/kitchen-test-tmp/cache-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let host = ChefHost::new(ChefLimits::default(), CacheSetting::Dir(dir.clone())).unwrap();
    host.load_file(&fixture("noop_chef")).unwrap();
    let entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
        .collect();
    assert_eq!(entries.len(), 1);
    // Loading again uses the cached artifact and still works.
    let mut chef = host.load_file(&fixture("noop_chef")).unwrap();
    assert!(chef.on_packets(&[], &[], 0).unwrap().is_empty());
    // A damaged entry (bytes changed in its middle, as a bad block or a stray edit would:
    // this made the kitchen run them as native code and die of SIGTRAP; or cut short) is
    // never run: it is discarded, the chef compiled again and the entry written anew.
    let entry = entries[0].path();
    let good = std::fs::read(&entry).unwrap();
    fn damage(kind: usize, b: &mut Vec<u8>) {
        match kind {
            0 => {
                let mid = b.len() / 2;
                b[mid..mid + 4096].fill(0xcc);
            }
            1 => b.truncate(b.len() - 1),
            _ => b.truncate(b.len() / 3),
        }
    }
    for kind in 0..3 {
        let mut bytes = good.clone();
        damage(kind, &mut bytes);
        std::fs::write(&entry, &bytes).unwrap();
        let mut chef = host.load_file(&fixture("noop_chef")).unwrap();
        assert!(chef.on_packets(&[], &[], 0).unwrap().is_empty());
        assert!(
            std::fs::read(&entry).unwrap() == good,
            "the damaged entry was replaced by a fresh compile"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Probe F1: a compiled-chef cache entry is native code the kitchen runs, so one that
/// another user could have written (swapped in for a signed chef's entry) must never be
/// deserialized: a group/other-writable entry, a symbolic link (even to a good entry of
/// ours), an entry owned by another user, and every entry of a cache folder owned by another
/// user are refused, and the chef compiled from its own (signature-checked) wasm instead.
/// Before the fix each case ran the planted code (the swapped-in chef answered).
#[test]
fn cache_entries_another_user_could_write_are_never_run() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = workspace_root().join(format!(
        "target/kitchen-test-tmp/cache-foreign-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let cache = dir.join("cache");
    let host = ChefHost::new(ChefLimits::default(), CacheSetting::Dir(cache.clone())).unwrap();
    let entries = || -> Vec<std::path::PathBuf> {
        let mut v: Vec<_> = std::fs::read_dir(&cache)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
            .collect();
        v.sort();
        v
    };
    let victim_name = host
        .load_file(&fixture("noop_chef"))
        .unwrap()
        .name()
        .to_owned();
    let victim = entries().pop().unwrap();
    let good = std::fs::read(&victim).unwrap();
    let evil_name = host
        .load_file(&fixture("echo_chef"))
        .unwrap()
        .name()
        .to_owned();
    assert_ne!(victim_name, evil_name);
    let evil = entries().into_iter().find(|p| *p != victim).unwrap();
    let evil_bytes = std::fs::read(&evil).unwrap();
    let plant = |how: &dyn Fn(&std::path::Path)| {
        let _ = std::fs::remove_file(&victim);
        how(&victim);
        let chef = host.load_file(&fixture("noop_chef")).unwrap();
        assert_eq!(chef.name(), victim_name, "the planted entry was run");
        let meta = std::fs::symlink_metadata(&victim).unwrap();
        assert!(meta.is_file(), "the refused entry is replaced by our own");
        assert_eq!(meta.mode() & 0o022, 0);
        assert!(
            std::fs::read(&victim).unwrap() == good,
            "rewritten by a fresh compile"
        );
    };
    // Group/other-writable: anyone could have put those bytes there.
    plant(&|p| {
        std::fs::write(p, &evil_bytes).unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o666)).unwrap();
    });
    // A symbolic link, even to a valid entry of ours: not followed.
    plant(&|p| std::os::unix::fs::symlink(&evil, p).unwrap());
    let root = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().nth(1).map(|e| e == "0"))
        .unwrap_or(false);
    if !root {
        eprintln!(
            "SKIP cache_entries_another_user_could_write_are_never_run (foreign owners): \
             needs root to chown to nobody"
        );
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    let chown_nobody = |p: &std::path::Path| {
        let ok = std::process::Command::new("chown")
            .arg("nobody")
            .arg(p)
            .status()
            .unwrap()
            .success();
        assert!(ok, "chown nobody {}", p.display());
    };
    // Owned by another user, mode 0644 (the mode check alone passed it).
    plant(&|p| {
        std::fs::write(p, &evil_bytes).unwrap();
        chown_nobody(p);
    });
    // A whole cache folder owned by another user (0755): not used at all, so its planted
    // entry is never read, and nothing is written there.
    let foreign = dir.join("foreign");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::set_permissions(&foreign, std::fs::Permissions::from_mode(0o755)).unwrap();
    let planted = foreign.join(victim.file_name().unwrap());
    std::fs::write(&planted, &evil_bytes).unwrap();
    chown_nobody(&planted);
    chown_nobody(&foreign);
    let host = ChefHost::new(ChefLimits::default(), CacheSetting::Dir(foreign.clone())).unwrap();
    let chef = host.load_file(&fixture("noop_chef")).unwrap();
    assert_eq!(chef.name(), victim_name, "the planted entry was run");
    assert!(std::fs::read(&planted).unwrap() == evil_bytes, "left alone");
    assert_eq!(
        std::fs::read_dir(&foreign).unwrap().count(),
        1,
        "nothing written there"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn parser_handles_every_shared_capture_without_panicking() {
    let dir = shared_docs().join("../pcaps");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        panic!("missing {}", dir.display());
    };
    let mut packets = 0u64;
    let mut transports = 0u64;
    for e in entries.filter_map(|e| e.ok()) {
        let p = e.path();
        let Some(ext) = p.extension().and_then(|x| x.to_str()) else {
            continue;
        };
        if !matches!(ext, "pcap" | "pcapng" | "cap") {
            continue;
        }
        let Ok(mut reader) = FileReader::open(&p) else {
            continue;
        };
        while let Ok(Some(rec)) = reader.next_packet() {
            let mut arena = Vec::new();
            let (pkt, class) = kitchen::parse::packet::parse_into(&rec, &mut arena);
            for s in [&pkt.frame, &pkt.payload, &pkt.padding] {
                assert!(
                    (s.offset + s.len) as usize <= arena.len(),
                    "{}",
                    p.display()
                );
            }
            packets += 1;
            transports += u64::from(class.transport != TransportClass::None);
        }
    }
    assert!(packets > 10_000, "only {packets} packets found");
    assert!(transports > packets / 2);
}

/// The text a 0.1 chef's echo of a record should be: the 0.2 echo without its last field,
/// `flow` (`"Packet { ..., stopped: None, flow: Some(..) }"` -> `"Packet { ..., stopped: None }"`).
fn without_flow(payload: &str) -> String {
    match payload.rfind(", flow: ") {
        Some(i) if payload.ends_with(" }\"") => format!("{} }}\"", &payload[..i]),
        _ => payload.to_owned(),
    }
}

/// The bulk lowering (`chef_host::wire`) must give a chef exactly what wasmtime's generic
/// lowering gives it, for every packet of every shared capture; and a 0.1 chef (lowered
/// through the 0.1 prefix of the same records, `WirePacketV01`) must see the same fields
/// minus `flow`, even when the records carry flows.
#[test]
fn wire_lowering_matches_wasmtime() {
    use kitchen::chef_host::bindings::{Direction, FlowRef};
    use kitchen::chef_host::{ChefApi, WirePacket};
    // A correctness test, not a timing one: a loaded 2-core CI machine must not turn a
    // 64-record echo into a deadline failure.
    let host = host_with(ChefLimits {
        deadline: Duration::from_secs(5),
        ..ChefLimits::default()
    });
    let mut fast = load_fixture(&host, "echo_chef");
    let mut slow = load_fixture(&host, "echo_chef");
    let mut old = load_fixture(&host, "echo_chef_v01");
    assert_eq!(fast.api(), ChefApi::V0_2);
    assert_eq!(old.api(), ChefApi::V0_1);
    slow.set_generic_lowering(true);
    let mut flows = 0u64;
    let dir = shared_docs().join("../pcaps");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pcap" || x == "pcapng"))
        .collect();
    files.sort();
    let mut compared = 0usize;
    let mut kinds = std::collections::BTreeSet::new();
    for f in files {
        let Ok(mut reader) = FileReader::open(&f) else {
            continue;
        };
        let mut batch = Vec::new();
        let mut arena = Vec::new();
        loop {
            let rec = reader.next_packet().ok().flatten();
            if let Some(rec) = &rec {
                let (mut p, _) = kitchen::parse::packet::parse_into(rec, &mut arena);
                // Every other packet carries a flow (both directions, large ids), so the
                // 0.2 `flow` field is checked and the 0.1 lowering must leave it out.
                flows += 1;
                if flows.is_multiple_of(2) {
                    p.flow = Some(FlowRef {
                        id: flows.wrapping_mul(0x9e37_79b9_7f4a_7c15),
                        direction: if flows.is_multiple_of(4) {
                            Direction::FromResponder
                        } else {
                            Direction::FromOriginator
                        },
                    });
                }
                kinds.insert(format!(
                    "{}{}{}{}{}",
                    p.ethernet.is_some() as u8,
                    p.linux_sll.is_some() as u8,
                    p.vlan_inner.is_some() as u8,
                    p.arp.is_some() as u8,
                    p.stopped.is_some() as u8
                ));
                batch.push(WirePacket(p));
            }
            if batch.len() == 64 || (rec.is_none() && !batch.is_empty()) {
                let a = fast
                    .on_packets(&batch, &arena, 0)
                    .unwrap_or_else(|e| panic!("fast: {e} ({})", f.display()));
                let b = slow
                    .on_packets(&batch, &arena, 0)
                    .unwrap_or_else(|e| panic!("slow: {e} ({})", f.display()));
                assert_eq!(a, b, "{}", f.display());
                let c = old
                    .on_packets(&batch, &arena, 0)
                    .unwrap_or_else(|e| panic!("old: {e} ({})", f.display()));
                assert_eq!(c.len(), b.len(), "{}", f.display());
                for (c, b) in c.iter().zip(&b) {
                    assert_eq!(c.packet_index, b.packet_index, "{}", f.display());
                    assert_eq!(c.payload, without_flow(&b.payload), "{}", f.display());
                }
                compared += batch.len();
                batch.clear();
                arena.clear();
            }
            if rec.is_none() {
                break;
            }
        }
    }
    assert!(compared > 10_000, "only {compared} packets compared");
    assert!(kinds.len() >= 5, "too few packet shapes covered: {kinds:?}");
}

/// A small deterministic generator for the flow lowering test (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Mostly random values, with the edges (0, 1, the maximum) one time in four.
    fn edge(&mut self) -> u64 {
        match self.next() % 8 {
            0 => 0,
            1 => u64::MAX,
            _ => self.next(),
        }
    }
}

/// A random flow key: every transport, IPv4 and IPv6 on either side, edge ports.
fn random_key(r: &mut Rng) -> kitchen::chef_host::bindings::FlowKey {
    use kitchen::chef_host::bindings::{FlowKey, IpAddress, TransportProtocol};
    let addr = |r: &mut Rng| {
        if r.next().is_multiple_of(2) {
            IpAddress::V4(r.edge() as u32)
        } else {
            IpAddress::V6((r.edge(), r.edge()))
        }
    };
    FlowKey {
        transport: [
            TransportProtocol::Tcp,
            TransportProtocol::Udp,
            TransportProtocol::Icmpv4,
            TransportProtocol::Icmpv6,
        ][(r.next() % 4) as usize],
        originator: addr(r),
        responder: addr(r),
        originator_port: r.edge() as u16,
        responder_port: r.edge() as u16,
    }
}

/// Random TCP flags (each of the 8 bits on or off).
fn random_flags(r: &mut Rng) -> kitchen::chef_host::bindings::TcpFlags {
    use kitchen::chef_host::bindings::TcpFlags;
    let all = [
        TcpFlags::FIN,
        TcpFlags::SYN,
        TcpFlags::RST,
        TcpFlags::PSH,
        TcpFlags::ACK,
        TcpFlags::URG,
        TcpFlags::ECE,
        TcpFlags::CWR,
    ];
    let bits = r.next();
    all.iter()
        .enumerate()
        .filter(|(i, _)| bits >> i & 1 == 1)
        .fold(TcpFlags::empty(), |f, (_, b)| f | *b)
}

/// The bulk lowerings of `list<flow-event>` and `list<stream-chunk>`
/// (`chef_host::wire_flow`) must give a chef exactly what wasmtime's generic lowering gives
/// it: random events of both kinds and every end reason, flags, transport and address
/// family, edge values, and empty, single and large lists.
#[test]
fn flow_wire_lowering_matches_wasmtime() {
    use kitchen::chef_host::bindings::{
        Direction, FlowEndReason, FlowEvent, FlowRef, FlowStart, FlowSummary, Span, StreamChunk,
    };
    let host = host_with(ChefLimits {
        deadline: Duration::from_secs(5),
        ..ChefLimits::default()
    });
    let mut fast = load_fixture(&host, "echo_chef");
    let mut slow = load_fixture(&host, "echo_chef");
    slow.set_generic_lowering(true);
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    let reasons = [
        FlowEndReason::Fin,
        FlowEndReason::Rst,
        FlowEndReason::IdleTimeout,
        FlowEndReason::Evicted,
        FlowEndReason::EndOfCapture,
    ];
    let mut seen = std::collections::BTreeSet::new();
    let (mut events_compared, mut chunks_compared) = (0usize, 0usize);
    for len in [0usize, 1, 2, 7, 64, 500, 3000] {
        let events: Vec<FlowEvent> = (0..len)
            .map(|_| {
                if r.next().is_multiple_of(3) {
                    FlowEvent::Started(FlowStart {
                        id: r.edge(),
                        key: random_key(&mut r),
                        timestamp_ns: r.edge(),
                    })
                } else {
                    FlowEvent::Ended(FlowSummary {
                        id: r.edge(),
                        key: random_key(&mut r),
                        first_ns: r.edge(),
                        last_ns: r.edge(),
                        packets_from_originator: r.edge(),
                        packets_from_responder: r.edge(),
                        bytes_from_originator: r.edge(),
                        bytes_from_responder: r.edge(),
                        tcp_flags_seen: random_flags(&mut r),
                        end_reason: reasons[(r.next() % 5) as usize],
                    })
                }
            })
            .collect();
        for e in &events {
            let (kind, key) = match e {
                FlowEvent::Started(s) => ("started".to_owned(), s.key),
                FlowEvent::Ended(s) => (format!("{:?}", s.end_reason), s.key),
            };
            seen.insert(format!(
                "{kind} {:?} {}",
                key.transport,
                matches!(
                    key.originator,
                    kitchen::chef_host::bindings::IpAddress::V6(_)
                )
            ));
        }
        let a = fast.on_flow_events(&events, 0).expect("fast flow events");
        let b = slow
            .on_flow_events(&events, 0)
            .expect("generic flow events");
        assert_eq!(a.len(), len + 1, "one echo per event plus the arena sum");
        assert_eq!(a, b, "flow events, {len} of them");
        events_compared += len;

        let arena: Vec<u8> = (0..(len * 3) as u64).map(|i| (i * 7) as u8).collect();
        let chunks: Vec<StreamChunk> = (0..len)
            .map(|_| StreamChunk {
                flow: FlowRef {
                    id: r.edge(),
                    direction: if r.next().is_multiple_of(2) {
                        Direction::FromOriginator
                    } else {
                        Direction::FromResponder
                    },
                },
                key: random_key(&mut r),
                timestamp_ns: r.edge(),
                offset: r.edge(),
                gap_before: r.edge(),
                data: Span {
                    offset: r.edge() as u32,
                    len: r.edge() as u32,
                },
                last: r.next().is_multiple_of(2),
            })
            .collect();
        let a = fast.on_stream(&chunks, &arena, 0).expect("fast stream").0;
        let b = slow
            .on_stream(&chunks, &arena, 0)
            .expect("generic stream")
            .0;
        assert_eq!(a.len(), len + 1, "one echo per chunk plus the arena sum");
        assert_eq!(a, b, "stream chunks, {len} of them");
        chunks_compared += len;
    }
    assert_eq!(events_compared, 3574);
    assert_eq!(chunks_compared, 3574);
    // 6 kinds (started, 5 end reasons) x 4 transports x 2 address families.
    assert_eq!(seen.len(), 48, "{seen:?}");
}

/// In a replay a chef's WASI clock reads the capture clock and its randomness is seeded,
/// so even a chef that calls `SystemTime::now()` or uses std's `HashMap` is reproducible.
#[test]
fn replay_sandbox_clock_and_randomness_are_deterministic() {
    let run = || {
        let host = host();
        replay(
            &sample_capture(),
            vec![load_fixture(&host, "clock_chef")],
            None,
            POKE,
        )
        .0
    };
    let a = run();
    assert!(!a.is_empty());
    for l in &a {
        let v = json(l);
        assert_eq!(v["payload"]["wall"], v["payload"]["now"], "{l}");
    }
    assert_eq!(a, run());
    // A live host keeps real time.
    let live = ChefHost::new(ChefLimits::default(), CacheSetting::Disabled).unwrap();
    let mut chef = live.load_file(&fixture("clock_chef")).unwrap();
    let out = chef.on_interval(1, 1).unwrap();
    let v = json(&out[0]);
    assert!(v["wall"].as_u64().unwrap() > 1_700_000_000_000_000_000);
}

#[test]
fn an_interval_payload_sent_again_comes_back_as_the_lent_one_and_wraps_the_same() {
    use kitchen::chef_host::chef_text::ChefText;
    use kitchen::chef_host::interval_same::IntervalText;
    // DNSLookupChef sends its whole table on every poke; with no packet between two pokes
    // it sends the same bytes again: as `same(0)` through `interval-same` (the Rust SDK
    // exports it), else as the text, found equal to the lent payload.
    let b = BUILTIN_CHEFS
        .iter()
        .find(|b| b.file.contains("dns"))
        .expect("DNSLookupChef is built in");
    let sec = 1_000_000_000u64;
    let driver = dumpling::Driver::Interval;
    for same in [true, false] {
        let mut chef = host().load(ChefSource::Builtin(b.file), b.bytes).unwrap();
        chef.set_interval_same(same);
        assert_eq!(chef.answers_same(), same);
        let mut kinds = Vec::new();
        for i in 1..=4u64 {
            let out = chef.on_interval_payloads(i * sec, sec).unwrap();
            assert_eq!(out.len(), 1);
            let payload = out.into_iter().next().unwrap();
            kinds.push(match &payload {
                IntervalText::Text(ChefText::Text(_)) => "text",
                IntervalText::Text(ChefText::Repeat(_)) => "repeat",
                IntervalText::Kept(_) => "kept",
                IntervalText::Unresolved => "unresolved",
            });
            let t = i as f64;
            let text = r#"{"lookups_seen":{}}"#;
            let want = dumpling::wrap_checked(chef.name(), Some("k"), t, driver, text).unwrap();
            let got = chef.wrap_interval(0, Some("k"), t, payload).unwrap();
            assert_eq!(got, want);
            chef.finish_interval();
        }
        // The first poke had nothing to compare with; every later one was the same.
        let later = if same { "kept" } else { "repeat" };
        assert_eq!(kinds, ["text", later, later, later]);
        // The plain call gives the text (a `same` resolved), and keeps it.
        assert_eq!(
            chef.on_interval(5 * sec, sec).unwrap(),
            [r#"{"lookups_seen":{}}"#]
        );
        let again = chef.on_interval_payloads(6 * sec, sec).unwrap();
        if same {
            assert!(matches!(again[..], [IntervalText::Kept(19)]), "{again:?}");
            assert_eq!(chef.stats.same_unresolved, 0);
        } else {
            assert!(matches!(
                again[..],
                [IntervalText::Text(ChefText::Repeat(_))]
            ));
        }
    }
}

/// A `packed-json` answer far over the per-call cap (a million tiny pairs per batch) sends
/// exactly what the cap allows and counts the rest, which the kitchen no longer copies
/// into a dumpling each before dropping them (`packed_json::Split`; its unit tests check
/// that nothing past the kept pairs is allocated).
#[test]
fn a_packed_json_answer_over_the_cap_is_kept_to_the_cap_and_the_rest_counted() {
    let host = host();
    let chef = load_fixture(&host, "pairs_chef");
    let (lines, d) = replay(&sample_capture(), vec![chef], None, POKE);
    let lane = &d.chefs()[0];
    let stats = &lane.chef.stats;
    let calls = stats.packet_calls as usize;
    assert!(calls >= 1, "{stats:?}");
    assert_eq!(
        stats.traps + stats.timeouts + stats.undecodable,
        0,
        "{stats:?}"
    );
    let cap = kitchen::chef_host::ChefLimits::default().max_dumplings_per_call;
    let kept = lines
        .iter()
        .filter(|l| json(l)["metadata"]["chef"] == "PairsChef")
        .count();
    assert_eq!(kept, calls * cap);
    assert_eq!(
        lane.counters().over_cap as usize,
        calls * ((1 << 20) - cap),
        "{:?}",
        lane.counters()
    );
}

/// A chef whose `state.snapshot` traps on every hot reload: the failure happens on the
/// version being retired, and was lost with it (no trap counted, no failure history, never
/// quarantined, though each reload logged an error). Each one now counts for the chef, and
/// failing at every reload quarantines it as any repeated failure does: its next version
/// then waits before it starts.
#[test]
fn snapshot_failures_on_reload_count_for_the_chef() {
    use kitchen::chef_host::state::{carry, Carried, StateError};
    let host = host();
    let mut running = load_fixture(&host, "snapshot_trap_chef");
    let limits = ChefLimits::default();
    let mut reloads = 0;
    let quarantined = loop {
        assert!(reloads < 20, "never quarantined: {:?}", running.stats);
        let now_ns = 1_000_000_000 * (reloads + 1);
        // The chef exists once called (the SDK makes it on its first call).
        running.on_interval(now_ns, 1_000_000_000).expect("a poke");
        let mut next = load_fixture(&host, "snapshot_trap_chef");
        // As hot reload does: the new version takes over the chef's counters and history,
        // then the state is carried.
        next.inherit_from(&running);
        let carried = carry(&mut running, &mut next, limits.max_state_bytes, now_ns);
        assert!(
            matches!(carried, Carried::Fresh(StateError::Snapshot(_))),
            "{carried:?}"
        );
        reloads += 1;
        assert_eq!(next.stats.traps, reloads, "{:?}", next.stats);
        if next.starts_at_ns().is_some() {
            break reloads;
        }
        running = next;
    };
    assert_eq!(quarantined, u64::from(limits.quarantine_after));
}

/// The packed batch's DNS slots and time text are filled for a chef that exports
/// `packed-json` (the interpreted SDKs read them) and left open for one that does not (a
/// Rust SDK chef reads neither; `packed_batch::Slots`); a batch shared by both is written
/// once, filled.
#[test]
fn packed_dns_slots_are_filled_only_for_chefs_that_read_them() {
    let host = host();
    // Per record on the DNS ports: its DNS bits and time-text length, as the chef saw them.
    let seen = |chefs: Vec<kitchen::chef_host::LoadedChef>, name: &str| -> Vec<(u64, u64)> {
        let (lines, _) = replay(&sample_capture(), chefs, None, POKE);
        lines
            .iter()
            .map(|l| json(l))
            .filter(|v| v["metadata"]["chef"] == name && v["metadata"]["driver"] == "packet")
            .map(|v| {
                let p = &v["payload"];
                (
                    p["dns_bits"].as_u64().unwrap_or(0),
                    p["time_len"].as_u64().unwrap_or(0),
                )
            })
            .collect()
    };
    let reader = || load_fixture(&host, "slots_chef");
    let plain = || load_fixture(&host, "slots_chef_plain");
    assert!(reader().description().packed_slots);
    assert!(!plain().description().packed_slots);
    // Alone, the chef with `packed-json` sees the slots filled on every DNS packet of the
    // sample capture (8 DNS packets; `checked` on, a time text)...
    let filled = seen(vec![reader()], "SlotsChef");
    assert_eq!(filled.len(), 8, "{filled:?}");
    assert!(filled.iter().all(|&(bits, time)| bits & 1 == 1 && time > 0));
    // ...the one without sees them open (no record has `checked` on)...
    assert!(seen(vec![plain()], "SlotsPlainChef").is_empty());
    // ...and together, both get the one batch written for them, filled.
    let (lines, _) = replay(&sample_capture(), vec![reader(), plain()], None, POKE);
    let count = |name: &str| {
        lines
            .iter()
            .filter(|l| json(l)["metadata"]["chef"] == name)
            .count()
    };
    assert_eq!((count("SlotsChef"), count("SlotsPlainChef")), (8, 8));
}
