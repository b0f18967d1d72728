//! The two-thread replay (`kitchen::run::replay`, what `nd-sniff -r` runs) against the same
//! chefs driven on one thread (`Dispatcher::push`): the same dumplings in the same order on
//! real captures, and every way a replay can end (damage, a stop signal, a closed output,
//! a reload barrier) loses nothing that was read; and the chefs called side by side
//! (`--chef-threads`) against one after the other.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use capture::FileReader;
use common::*;
use kitchen::chef_host::{CacheSetting, ChefHost, ChefLimits, ChefSource, LoadedChef};
use kitchen::chefs::builtin::BUILTIN_CHEFS;
use kitchen::dispatch::{ClockMode, Dispatcher, DumplingSink, SinkError};
use kitchen::run::replay::{replay, BetweenSteps, NoHooks, ReplayEnd, ReplayOptions};

/// One host for the whole file, caching compiled chefs under `target/`, so each test
/// instantiates the sample chefs without compiling them again.
fn cached_host() -> &'static ChefHost {
    static HOST: std::sync::OnceLock<ChefHost> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        let dir = workspace_root().join("target/kitchen-test-tmp/replay-chef-cache");
        let mut host = ChefHost::new(ChefLimits::default(), CacheSetting::Dir(dir)).unwrap();
        host.set_deterministic(true);
        host
    })
}

/// Every built-in sample chef.
fn sample_chefs() -> Vec<LoadedChef> {
    assert!(!BUILTIN_CHEFS.is_empty(), "no built-in chefs were built");
    BUILTIN_CHEFS
        .iter()
        .map(|b| {
            cached_host()
                .load(ChefSource::Builtin(b.file), b.bytes)
                .unwrap()
        })
        .collect()
}

fn pcap(name: &str) -> PathBuf {
    let p = shared_docs().join("../pcaps").join(name);
    assert!(p.is_file(), "missing {}", p.display());
    p
}

fn dispatcher(sink: Box<dyn DumplingSink>, poke: Duration) -> Dispatcher {
    Dispatcher::new(
        "test_kitchen",
        sample_chefs().into_iter().map(slot).collect(),
        poke,
        ClockMode::Replay,
        sink,
    )
}

fn options() -> ReplayOptions {
    ReplayOptions {
        filter: None,
        filter_check: None,
        stop: Arc::new(AtomicBool::new(false)),
        progress: None,
    }
}

/// Everything on one thread, packet by packet: the reference.
fn one_thread(path: &Path, poke: Duration) -> (Vec<String>, u64) {
    let out = Collect::default();
    let mut d = dispatcher(Box::new(out.clone()), poke);
    let mut reader = FileReader::open(path).unwrap();
    // Up to the end or the damage.
    while let Ok(Some(rec)) = reader.next_packet() {
        d.push(&rec).unwrap();
    }
    d.finish().unwrap();
    let lines = out.0.lock().unwrap().clone();
    (lines, d.stats().packets)
}

/// `kitchen::run::replay`, as `nd-sniff -r` runs it.
fn two_threads(path: &Path, poke: Duration) -> (Vec<String>, u64, ReplayEnd) {
    let out = Collect::default();
    let mut d = dispatcher(Box::new(out.clone()), poke);
    let reader = FileReader::open(path).unwrap();
    let (end, _) = replay(reader, &mut d, &mut NoHooks, options()).unwrap();
    d.finish().unwrap();
    let lines = out.0.lock().unwrap().clone();
    (lines, d.stats().packets, end)
}

#[test]
fn two_threads_make_the_same_dumplings_in_the_same_order() {
    // Ethernet with DNS/ARP/HTTP, a big mixed capture, Linux SLL, multi-interface pcapng,
    // a damaged file; a short poke interval so pokes fall between many batches.
    for (file, poke) in [
        (sample_capture(), Duration::from_millis(50)),
        (
            pcap("pcapplusplus__Pcap++Test__PcapExamples__example.pcap"),
            Duration::from_millis(200),
        ),
        (
            pcap("pcapplusplus__Pcap++Test__PcapExamples__sll.pcap"),
            Duration::from_secs(1),
        ),
        (pcap("ndpi__opera-vpn.pcapng"), Duration::from_secs(1)),
        (
            pcap("suricata-verify__bug-1450-05__tls_DER-incomplete-content.pcap"),
            Duration::from_secs(1),
        ),
    ] {
        let (want, want_packets) = one_thread(&file, poke);
        let (got, got_packets, _) = two_threads(&file, poke);
        assert!(want_packets > 0, "{}", file.display());
        assert_eq!(got_packets, want_packets, "{}", file.display());
        assert!(!want.is_empty(), "{}", file.display());
        assert_eq!(got.len(), want.len(), "{}", file.display());
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g, w, "{}: dumpling {i} differs", file.display());
        }
    }
}

/// [`two_threads`] with the chefs called on `chef_threads` threads (`--chef-threads`).
fn chef_workers(path: &Path, poke: Duration, chef_threads: usize) -> (Vec<String>, u64) {
    let out = Collect::default();
    let mut d = dispatcher(Box::new(out.clone()), poke);
    d.set_chef_threads(chef_threads).unwrap();
    let reader = FileReader::open(path).unwrap();
    replay(reader, &mut d, &mut NoHooks, options()).unwrap();
    d.finish().unwrap();
    let lines = out.0.lock().unwrap().clone();
    (lines, d.stats().packets)
}

#[test]
fn chef_workers_make_the_same_dumplings_in_the_same_order() {
    // Every sample chef called side by side (3 threads, more than this machine's cores
    // on CI) must give exactly what the chefs called one after the other give.
    for (file, poke) in [
        (sample_capture(), Duration::from_millis(50)),
        (
            pcap("pcapplusplus__Pcap++Test__PcapExamples__example.pcap"),
            Duration::from_millis(200),
        ),
        (pcap("ndpi__opera-vpn.pcapng"), Duration::from_secs(1)),
    ] {
        let (want, want_packets) = one_thread(&file, poke);
        let (got, got_packets) = chef_workers(&file, poke, 3);
        assert!(want_packets > 0, "{}", file.display());
        assert_eq!(got_packets, want_packets, "{}", file.display());
        assert!(!want.is_empty(), "{}", file.display());
        assert_eq!(got.len(), want.len(), "{}", file.display());
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g, w, "{}: dumpling {i} differs", file.display());
        }
    }
}

#[test]
fn a_damaged_file_ends_as_damaged_after_every_packet_before_the_damage() {
    let file = pcap("suricata-verify__bug-1450-05__tls_DER-incomplete-content.pcap");
    let (_, packets, end) = two_threads(&file, Duration::from_secs(1));
    let (_, want) = one_thread(&file, Duration::from_secs(1));
    match end {
        ReplayEnd::Damaged(e) => {
            assert!(e.to_string().contains("damaged"), "{e}");
            assert!(packets >= 5, "{packets}");
            assert_eq!(packets, want);
        }
        other => panic!("expected Damaged, got {other:?}"),
    }
}

/// Sets the stop flag (as Ctrl-C does) when the first dumpling arrives.
struct StopOnFirst {
    stop: Arc<AtomicBool>,
    got: Arc<Mutex<Vec<String>>>,
}

impl DumplingSink for StopOnFirst {
    fn send(&mut self, _chef: &str, json: String) -> Result<(), SinkError> {
        self.stop.store(true, Ordering::SeqCst);
        self.got.lock().unwrap().push(json);
        Ok(())
    }
}

#[test]
fn a_stop_signal_hands_every_packet_read_to_the_chefs() {
    let file = pcap("pcapplusplus__Pcap++Test__PcapExamples__example.pcap");
    let stop = Arc::new(AtomicBool::new(false));
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = StopOnFirst {
        stop: stop.clone(),
        got: got.clone(),
    };
    // Pokes every 1 ms of capture time: the first one comes early in the file.
    let mut d = dispatcher(Box::new(sink), Duration::from_millis(1));
    let reader = FileReader::open(&file).unwrap();
    let opts = ReplayOptions {
        stop: stop.clone(),
        ..options()
    };
    let (end, counters) = replay(reader, &mut d, &mut NoHooks, opts).unwrap();
    let ReplayEnd::Stopped { left_behind } = end else {
        panic!("expected Stopped, got {end:?}");
    };
    assert_eq!(left_behind, 0);
    let passed = counters.passed.load(Ordering::SeqCst);
    let total = FileReader::open(&file).map(|mut r| {
        while r.next_packet().unwrap().is_some() {}
        r.packets_read()
    });
    assert!(passed < total.unwrap(), "the replay stopped early");
    // Every packet the reading thread took went through the chefs.
    assert_eq!(d.stats().packets, passed);
    assert!(!got.lock().unwrap().is_empty());
}

/// Refuses every dumpling: `nd-sniff --stdout | head -1` after `head` has exited.
struct Closed;

impl DumplingSink for Closed {
    fn send(&mut self, _chef: &str, _json: String) -> Result<(), SinkError> {
        Err(SinkError::Closed)
    }
}

#[test]
fn a_closed_output_ends_the_replay() {
    let file = pcap("pcapplusplus__Pcap++Test__PcapExamples__example.pcap");
    let mut d = dispatcher(Box::new(Closed), Duration::from_millis(1));
    let reader = FileReader::open(&file).unwrap();
    let (end, _) = replay(reader, &mut d, &mut NoHooks, options()).unwrap();
    assert!(matches!(end, ReplayEnd::OutputClosed), "{end:?}");
}

/// Asks for a barrier once, some way into the file. There it retires `PacketCountChef`
/// (whose final dumpling counts the packets before) and adds a fresh one (which counts the
/// packets after), as a hot reload of a new version does.
struct AddAtBarrier {
    calls: u32,
    packets_at_barrier: Option<u64>,
}

impl BetweenSteps for AddAtBarrier {
    fn waiting(&mut self) -> bool {
        // Called before each message: the third time, a couple of messages have been run.
        self.calls += 1;
        self.calls == 3
    }

    fn apply(&mut self, d: &mut Dispatcher) -> Result<(), SinkError> {
        self.packets_at_barrier = Some(d.stats().packets);
        let index = d
            .chefs()
            .iter()
            .position(|s| s.chef.name() == "PacketCountChef")
            .expect("PacketCountChef runs");
        d.retire_chef(index)?;
        let fresh = sample_chefs()
            .into_iter()
            .find(|c| c.name() == "PacketCountChef")
            .unwrap();
        d.add_chef(slot(fresh))
    }
}

/// A legacy pcap of `copies` copies of `from`'s Ethernet frames, timestamps kept rising.
fn repeated(from: &Path, copies: u32, name: &str) -> PathBuf {
    let dir = workspace_root().join("target/kitchen-test-tmp");
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join(format!("{name}-{}.pcap", std::process::id()));
    let mut bytes = Vec::new();
    for v in [0xa1b2_c3d4u32, 0x0004_0002, 0, 0, 65535, 1] {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    for copy in 0..copies {
        let mut r = FileReader::open(from).unwrap();
        while let Some(rec) = r.next_packet().unwrap() {
            let ts = rec.timestamp_ns / 1000 + u64::from(copy) * 3_600_000_000;
            for v in [
                (ts / 1_000_000) as u32,
                (ts % 1_000_000) as u32,
                rec.data.len() as u32,
                rec.original_len,
            ] {
                bytes.extend_from_slice(&v.to_le_bytes());
            }
            bytes.extend_from_slice(rec.data);
        }
    }
    std::fs::write(&out, bytes).unwrap();
    out
}

#[test]
fn a_chef_added_at_a_barrier_sees_every_later_packet() {
    // Long enough that the reading thread is still reading when the barrier is asked for.
    let file = repeated(
        &pcap("pcapplusplus__Pcap++Test__PcapExamples__example.pcap"),
        10,
        "barrier",
    );
    let out = Collect::default();
    // No poke inside the 10 hours the copies span: only the two final dumplings.
    let mut d = dispatcher(Box::new(out.clone()), Duration::from_secs(86_400));
    let reader = FileReader::open(&file).unwrap();
    let mut hook = AddAtBarrier {
        calls: 0,
        packets_at_barrier: None,
    };
    let (end, _) = replay(reader, &mut d, &mut hook, options()).unwrap();
    assert!(matches!(end, ReplayEnd::Done), "{end:?}");
    d.finish().unwrap();
    let before = hook.packets_at_barrier.expect("the barrier came");
    let total = d.stats().packets;
    assert!(before > 0 && before < total, "{before} of {total}");
    // The retired chef's final dumpling counted the packets before the barrier, the new
    // one's the packets after it: together, every packet once.
    let counts: Vec<u64> = out
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|l| json(l))
        .filter(|v| v["metadata"]["chef"] == "PacketCountChef")
        .map(|v| {
            let c = &v["payload"]["packet_counts"];
            c["Ethernet"].as_u64().unwrap_or(0) + c["802.3"].as_u64().unwrap_or(0)
        })
        .collect();
    assert_eq!(counts.len(), 2, "one final dumpling per chef: {counts:?}");
    assert_eq!(counts[0], before);
    assert_eq!(counts[1], total - before);
    let _ = std::fs::remove_file(&file);
}

/// A new FIFO under `target/kitchen-test-tmp`, named for `label` and this process.
fn new_fifo(label: &str) -> PathBuf {
    let dir = workspace_root().join("target/kitchen-test-tmp");
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join(format!("{label}-{}.fifo", std::process::id()));
    let _ = std::fs::remove_file(&fifo);
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    fifo
}

#[test]
fn a_stop_while_a_fifo_stalls_ends_at_once_and_loses_nothing() {
    // A FIFO that gets a header and three packets, then nothing (its writer stays open):
    // the reading thread waits for data with three packets in its batch.
    let fifo = new_fifo("stall");
    let bytes = std::fs::read(sample_capture()).unwrap();
    let mut end = 24;
    for _ in 0..3 {
        let incl = u32::from_le_bytes(bytes[end + 8..end + 12].try_into().unwrap()) as usize;
        end += 16 + incl;
    }
    let head = bytes[..end].to_vec();
    let writer_path = fifo.clone();
    let (opened_tx, opened_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&writer_path)
            .unwrap();
        f.write_all(&head).unwrap();
        f.flush().unwrap();
        opened_tx.send(()).unwrap();
        // Hold the FIFO open (no end of file) until the test is done.
        let _ = release_rx.recv_timeout(Duration::from_secs(30));
    });
    let reader = FileReader::open(&fifo).unwrap();
    opened_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let out = Collect::default();
    let mut d = dispatcher(Box::new(out.clone()), Duration::from_secs(3600));
    let stop = Arc::new(AtomicBool::new(false));
    let stopper = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            stop.store(true, Ordering::SeqCst);
        })
    };
    let started = std::time::Instant::now();
    let opts = ReplayOptions { stop, ..options() };
    let (end, _) = replay(reader, &mut d, &mut NoHooks, opts).unwrap();
    let took = started.elapsed();
    stopper.join().unwrap();
    let _ = release_tx.send(());
    writer.join().unwrap();
    let _ = std::fs::remove_file(&fifo);
    match end {
        ReplayEnd::Stopped { left_behind } => assert_eq!(left_behind, 0),
        other => panic!("expected Stopped, got {other:?}"),
    }
    // The stall handed the three packets to the chefs before the stop: nothing is lost.
    assert_eq!(d.stats().packets, 3);
    // Seen at the next stall check (every few ms), not after the last-resort grace.
    assert!(
        took < Duration::from_millis(300) + kitchen::run::replay::STOP_GRACE,
        "the stop took {took:?}"
    );
}

/// Collects the time each ARPChef dumpling arrives.
#[derive(Clone, Default)]
struct Arrivals(Arc<Mutex<Vec<std::time::Instant>>>);

impl DumplingSink for Arrivals {
    fn send(&mut self, chef: &str, _json: String) -> Result<(), SinkError> {
        if chef.contains("ARPChef") {
            self.0.lock().unwrap().push(std::time::Instant::now());
        }
        Ok(())
    }
}

/// An Ethernet ARP request from 10.9.(n>>8).(n&255): one ARPChef dumpling each.
fn arp_record(n: u32) -> Vec<u8> {
    let (hi, lo) = ((n >> 8) as u8, n as u8);
    let mut frame = vec![0xffu8; 6];
    frame.extend_from_slice(&[0x02, 0, 0, 9, hi, lo, 0x08, 0x06]);
    frame.extend_from_slice(&[0, 1, 0x08, 0, 6, 4, 0, 1, 0x02, 0, 0, 9, hi, lo]);
    frame.extend_from_slice(&[10, 9, hi, lo, 0, 0, 0, 0, 0, 0, 10, 9, 0, 1]);
    let mut record = Vec::new();
    record.extend_from_slice(&(1_700_000_000 + n / 1000).to_le_bytes());
    record.extend_from_slice(&((n % 1000) * 1000).to_le_bytes());
    record.extend_from_slice(&(frame.len() as u32).to_le_bytes());
    record.extend_from_slice(&(frame.len() as u32).to_le_bytes());
    record.extend_from_slice(&frame);
    record
}

#[test]
fn a_steady_trickle_from_a_fifo_reaches_the_chefs_within_the_batch_age() {
    // `tcpdump -w - | nd-sniff -r -` on a steady network: a packet every millisecond never
    // leaves the pipe idle for the stall wait (5 ms), 400 packets never fill a 512-packet
    // message, and ARPChef (a selective chef) is called when 256 of its packets are queued.
    // Its dumplings must still come while the packets do: within about 50 ms.
    let fifo = new_fifo("trickle");
    let writer_path = fifo.clone();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&writer_path)
            .unwrap();
        let mut header = Vec::new();
        for word in [0xa1b2_c3d4u32, 0x0004_0002, 0, 0, 65535, 1] {
            header.extend_from_slice(&word.to_le_bytes());
        }
        f.write_all(&header).unwrap();
        let start = std::time::Instant::now();
        let mut halfway = start;
        for n in 0..400u32 {
            if n == 200 {
                halfway = std::time::Instant::now();
            }
            f.write_all(&arp_record(n)).unwrap();
            f.flush().unwrap();
            let due = start + Duration::from_millis(u64::from(n) + 1);
            if let Some(wait) = due.checked_duration_since(std::time::Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        halfway
    });
    let reader = FileReader::open(&fifo).unwrap();
    let out = Arrivals::default();
    let mut d = dispatcher(Box::new(out.clone()), Duration::from_secs(3600));
    let (end, _) = replay(reader, &mut d, &mut NoHooks, options()).unwrap();
    let halfway = writer.join().unwrap();
    let _ = std::fs::remove_file(&fifo);
    assert!(matches!(end, ReplayEnd::Done), "{end:?}");
    assert_eq!(d.stats().packets, 400);
    let arrivals = out.0.lock().unwrap().clone();
    assert!(!arrivals.is_empty(), "ARPChef made no dumpling");
    // With the batch age (50 ms), the first dumplings come about 50 ms after the first
    // packets; without it, or with ARPChef's queue waiting for 256 packets, not before
    // packet 256 is written.
    assert!(
        arrivals[0] < halfway,
        "the first dumpling came {:?} after packet 200 was written",
        arrivals[0].duration_since(halfway)
    );
}
