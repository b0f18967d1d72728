//! The library's live loop (`kitchen::run::live`, what `nd-sniff -i` runs) on `lo` (needs
//! root or CAP_NET_RAW: skipped with a message otherwise), with a real slow chef next to
//! a good one.
//!
//! The good chef (`PacketCountChef`, built in) runs from the start; the slow one
//! (`SlowUnderDeadlineChef`, 20 ms per batch, from `tests/hostile-chefs/`) is added by the
//! loop's one between-batches hook once packets flow. A burst far faster than the slow
//! chef, then the stop flag at once: the slow chef sheds its own batches while the queue
//! backs up, the good chef sheds nothing, and at the stop the queue is drained (what is
//! left is `shutdown_dropped`). For each chef, every packet the capture received while it
//! ran is seen by it or counted as dropped.

mod common;

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use kitchen::chef_host::{CacheSetting, ChefHost, ChefLimits, ChefSource, LoadedChef};
use kitchen::chefs::builtin::BUILTIN_CHEFS;
use kitchen::dispatch::{ClockMode, Dispatcher, SinkError};
use kitchen::outputs::status::StatusDetail;
use kitchen::run::live::{live, LiveEnd, LiveOptions};
use kitchen::run::BetweenSteps;

use common::{slot, Collect};
use e2e_tests::{hostile_release_dir, is_root};

/// Datagrams in the burst.
const BURST: u32 = 20_000;

/// Adds one chef at the first batch boundary after packets started flowing, and notes how
/// many packets the chefs had been handed before it.
struct AddOnce {
    chef: Option<LoadedChef>,
    packets_before: Option<u64>,
    /// Set by the test once the burst is on its way.
    go: Arc<AtomicBool>,
}

impl BetweenSteps for AddOnce {
    fn waiting(&mut self) -> bool {
        self.chef.is_some() && self.go.load(Ordering::Relaxed)
    }

    fn apply(&mut self, d: &mut Dispatcher) -> Result<(), SinkError> {
        let Some(chef) = self.chef.take() else {
            return Ok(());
        };
        // `add_chef` hands the pending batch to the chefs first, so the new chef's
        // packets are exactly those handed on after this count.
        d.flush()?;
        self.packets_before = Some(d.stats().packets);
        d.add_chef(slot(chef))
    }
}

#[test]
fn a_slow_chef_added_by_the_hook_sheds_and_every_packet_is_counted() {
    if !is_root() {
        eprintln!(
            "SKIP a_slow_chef_added_by_the_hook_sheds_and_every_packet_is_counted: needs root \
             (live capture on lo)"
        );
        return;
    }
    let slow_path = hostile_release_dir().join("slow_under_deadline_chef.wasm");
    let limits = ChefLimits {
        deadline: Duration::from_millis(200),
        ..ChefLimits::default()
    };
    let host = ChefHost::new(limits, CacheSetting::Disabled).expect("chef host");
    let good = BUILTIN_CHEFS
        .iter()
        .find(|b| b.file.starts_with("packet_count"))
        .expect("PacketCountChef is built in");
    let good = host
        .load(ChefSource::Builtin(good.file), good.bytes)
        .expect("load PacketCountChef");
    let slow = host.load_file(&slow_path).expect("load the slow chef");
    assert_eq!(slow.name(), "SlowUnderDeadlineChef");

    let out = Collect::default();
    let mut d = Dispatcher::new(
        "live_run",
        vec![slot(good)],
        Duration::from_secs(1),
        ClockMode::Live,
        Box::new(out.clone()),
    );
    let receiver = UdpSocket::bind("127.0.0.1:0").expect("bind receiver");
    let port = receiver.local_addr().expect("addr").port();
    let stop = Arc::new(AtomicBool::new(false));
    let go = Arc::new(AtomicBool::new(false));
    let (started_tx, started_rx) = mpsc::channel::<()>();
    let options = LiveOptions {
        kitchen: "live_run".into(),
        interfaces: vec!["lo".into()],
        filter: Some(format!("udp port {port}")),
        filter_check: None,
        stop: stop.clone(),
        // The first progress call says the loop runs (the capture is open).
        progress: Some((
            Duration::from_millis(10),
            Box::new(move |_d: &mut Dispatcher| {
                let _ = started_tx.send(());
            }),
        )),
        on_started: None,
    };
    let sender = {
        let (stop, go) = (stop.clone(), go.clone());
        std::thread::spawn(move || {
            if started_rx.recv_timeout(Duration::from_secs(60)).is_err() {
                stop.store(true, Ordering::Relaxed);
                return 0;
            }
            let socket = UdpSocket::bind("127.0.0.1:0").expect("bind sender");
            receiver.set_nonblocking(true).expect("nonblocking");
            let mut buf = [0u8; 64];
            for i in 0..BURST {
                let _ = socket.send_to(&i.to_be_bytes(), ("127.0.0.1", port));
                while receiver.recv(&mut buf).is_ok() {}
                if i == 100 {
                    go.store(true, Ordering::Relaxed);
                }
            }
            // At once: the slow chef has a backlog queued.
            stop.store(true, Ordering::Relaxed);
            BURST
        })
    };
    let mut hook = AddOnce {
        chef: Some(slow),
        packets_before: None,
        go,
    };
    let (end, counters) = live(&mut d, &mut hook, options).expect("live run");
    let sent = sender.join().expect("sender");
    assert_eq!(sent, BURST, "the loop never reported that it started");
    assert_eq!(end, LiveEnd::Done);
    d.finish().expect("finish");
    let before = hook.packets_before.expect("the hook added the slow chef");

    let c = counters.capture;
    let report = d.status_report(StatusDetail::Full);
    let capture = report.capture;
    assert_eq!(
        capture.packets, c.received,
        "status holds the loop's counters"
    );
    assert_eq!(capture.shutdown_dropped, counters.shutdown_dropped);
    // The queue (65 536 packets) holds the whole burst, so nothing is dropped there before
    // the slow chef joins, and `lo` has no outgoing copies to skip: what the capture loses
    // is what was still queued at the stop, after both chefs were running.
    assert_eq!(c.queue_dropped + c.loopback_outgoing_skipped, 0, "{c:?}");
    let lost_at_capture = counters.shutdown_dropped;
    let good = &report.chefs["PacketCountChef"];
    let slow = &report.chefs["SlowUnderDeadlineChef"];
    eprintln!(
        "received {}: queue dropped {}, shutdown dropped {}, loopback skipped {}; \
         PacketCountChef seen {} dropped {} (shed {}); slow chef (from packet {before}) seen {} \
         dropped {} (shed {})",
        c.received,
        c.queue_dropped,
        counters.shutdown_dropped,
        c.loopback_outgoing_skipped,
        good.packets_seen,
        good.packets_dropped,
        good.packets_shed,
        slow.packets_seen,
        slow.packets_dropped,
        slow.packets_shed
    );
    assert!(c.received > 0 && c.received <= u64::from(BURST));
    assert_eq!(
        good.packets_seen + good.packets_dropped + lost_at_capture,
        c.received,
        "the good chef: every packet seen or counted"
    );
    assert_eq!(
        slow.packets_seen + slow.packets_dropped + lost_at_capture + before,
        c.received,
        "the slow chef: every packet after it joined seen or counted"
    );
    assert_eq!(good.packets_shed, 0, "the good chef keeps up");
    assert!(
        slow.packets_shed > 0,
        "the slow chef (20 ms a batch) sheds its own batches while the queue backs up"
    );
    assert!(slow.packets_seen > 0, "the slow chef still gets batches");
}
