//! The per-call deadline is charged in the CPU time of the thread running the call, under a
//! wall-clock ceiling (`chef_host/call_budget.rs`), checked with the calling thread starved
//! of CPU: it and busy "hog" threads are pinned to one core (`sched_setaffinity`), so it
//! gets a known share of that core whatever else the machine runs.
//!
//! * a chef whose call uses a quarter of its deadline in CPU time is not stopped though
//!   the call takes longer than its deadline in wall time (it was stopped before: the
//!   deadline counted wall time);
//! * a chef that spins is still stopped, by its CPU deadline on a half share of a core;
//! * a call that gets next to no CPU is stopped by the wall-clock ceiling
//!   ([`WALL_CEILING_FACTOR`] x the deadline).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;
use kitchen::chef_host::call_budget::WALL_CEILING_FACTOR;
use kitchen::chef_host::cpu_time::thread_cpu_ns;
use kitchen::chef_host::{CallError, ChefLimits};

/// The tests pin threads to one core and load it: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// The calling thread's CPU affinity.
#[allow(unsafe_code)]
fn affinity() -> libc::cpu_set_t {
    // SAFETY: a zeroed `cpu_set_t` is a valid empty set; the call writes at most its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        let rc = libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set);
        assert_eq!(
            rc,
            0,
            "sched_getaffinity: {}",
            std::io::Error::last_os_error()
        );
        set
    }
}

#[allow(unsafe_code)]
fn set_affinity(set: &libc::cpu_set_t) {
    // SAFETY: `set` is a valid `cpu_set_t` of the size passed; 0 is the calling thread.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set) };
    assert_eq!(
        rc,
        0,
        "sched_setaffinity: {}",
        std::io::Error::last_os_error()
    );
}

/// The last core the calling thread may run on.
#[allow(unsafe_code)]
fn some_core() -> usize {
    let set = affinity();
    (0..libc::CPU_SETSIZE as usize)
        .rev()
        // SAFETY: `i` is below CPU_SETSIZE.
        .find(|&i| unsafe { libc::CPU_ISSET(i, &set) })
        .expect("the thread may run somewhere")
}

/// The set of one core.
#[allow(unsafe_code)]
fn only(core: usize) -> libc::cpu_set_t {
    // SAFETY: as in `affinity`; `core` is below CPU_SETSIZE.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        set
    }
}

/// The calling thread and `hogs` spinning threads pinned to one core until dropped (the
/// calling thread then gets its old affinity back).
struct Starved {
    stop: Arc<AtomicBool>,
    hogs: Vec<JoinHandle<()>>,
    old: libc::cpu_set_t,
}

impl Starved {
    fn new(hogs: usize) -> Starved {
        let old = affinity();
        let core = some_core();
        let stop = Arc::new(AtomicBool::new(false));
        let hogs = (0..hogs)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    set_affinity(&only(core));
                    let mut x = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        x = std::hint::black_box(x.wrapping_add(1));
                    }
                })
            })
            .collect();
        set_affinity(&only(core));
        // Let the hogs start and the scheduler settle on the shares.
        std::thread::sleep(Duration::from_millis(100));
        Starved { stop, hogs, old }
    }
}

impl Drop for Starved {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for h in self.hogs.drain(..) {
            let _ = h.join();
        }
        set_affinity(&self.old);
    }
}

/// Run `f` on this thread: its result, wall time and this thread's CPU time.
fn timed<R>(f: impl FnOnce() -> R) -> (R, Duration, Duration) {
    let cpu0 = thread_cpu_ns().expect("thread CPU clock");
    let t0 = Instant::now();
    let r = f();
    let wall = t0.elapsed();
    let cpu = thread_cpu_ns().expect("clock") - cpu0;
    (r, wall, Duration::from_nanos(cpu))
}

fn limits(deadline_ms: u64) -> ChefLimits {
    ChefLimits {
        deadline: Duration::from_millis(deadline_ms),
        // Every call gets the plain deadline (not 10x on the first).
        first_call_grace: 1,
        restart_backoff: Duration::ZERO,
        ..ChefLimits::default()
    }
}

#[test]
fn a_chef_under_its_cpu_deadline_is_not_stopped_on_a_starved_thread() {
    let _serial = serial();
    let deadline = Duration::from_millis(100);
    let host = host_with(limits(100));
    let mut chef = load_fixture(&host, "work_chef");
    // Calibrate, unpinned: the rounds that take a quarter of the deadline in CPU time.
    let probe = 2_000_000u64;
    let mut per_round = f64::MAX;
    for i in 0..3 {
        let (r, _, cpu) = timed(|| chef.on_interval(i + 1, probe));
        r.expect("calibration call");
        per_round = per_round.min(cpu.as_nanos() as f64 / probe as f64);
    }
    let rounds = (deadline.as_nanos() as f64 / 4.0 / per_round) as u64;
    // One core shared with 5 hogs: this thread gets about a sixth of it, so a call of
    // 25 ms CPU takes about 150 ms of wall time, over the deadline, under the ceiling.
    let starved = Starved::new(5);
    let mut walls = Vec::new();
    for i in 0..3 {
        let (r, wall, cpu) = timed(|| chef.on_interval(100 + i, rounds));
        walls.push((wall, cpu));
        if let Err(e) = r {
            drop(starved);
            panic!("call {i} ({wall:?} wall, {cpu:?} CPU, {rounds} rounds) failed: {e:?}");
        }
    }
    drop(starved);
    eprintln!("{rounds} rounds per call; (wall, CPU) per call: {walls:?}");
    assert_eq!(chef.stats.timeouts, 0);
    assert!(
        walls.iter().any(|(wall, _)| *wall > deadline),
        "no call took longer than its deadline in wall time: the thread was not starved, \
         the test shows nothing: {walls:?}"
    );
}

#[test]
fn a_chef_over_its_cpu_deadline_is_still_stopped_on_a_starved_thread() {
    let _serial = serial();
    let deadline = Duration::from_millis(100);
    let ceiling = deadline * WALL_CEILING_FACTOR;
    let host = host_with(limits(100));
    let mut chef = load_fixture(&host, "spin_chef");
    // Half a core: the endless loop reaches 100 ms of CPU time after about 200 ms.
    let starved = Starved::new(1);
    let (r, wall, cpu) = timed(|| chef.on_packets(&[], &[], 1));
    drop(starved);
    eprintln!("stopped after {wall:?} wall, {cpu:?} CPU");
    let err = r.expect_err("an endless loop must be stopped");
    let CallError::Timeout {
        deadline_ms: 100,
        wall_ceiling,
    } = err
    else {
        panic!("{err:?}");
    };
    // Stopped by its CPU time (within the tick and the reuse of a clock reading), or on a
    // machine so loaded that even half a core was not had, by the ceiling; never later.
    if wall_ceiling {
        assert!(wall >= ceiling, "stopped early: {wall:?} wall, {cpu:?} CPU");
    } else {
        assert!(
            cpu >= deadline - Duration::from_millis(10),
            "stopped early: {wall:?} wall, {cpu:?} CPU"
        );
    }
    assert!(
        wall < ceiling + Duration::from_millis(300),
        "stopped late: {wall:?}"
    );
    assert_eq!(chef.stats.timeouts, 1);
}

#[test]
fn the_wall_ceiling_stops_a_call_that_gets_next_to_no_cpu() {
    let _serial = serial();
    let deadline = Duration::from_millis(50);
    let ceiling = deadline * WALL_CEILING_FACTOR;
    let host = host_with(limits(50));
    let mut chef = load_fixture(&host, "spin_chef");
    // A sixteenth of a core: 50 ms of CPU time would take about 800 ms.
    let starved = Starved::new(15);
    let (r, wall, cpu) = timed(|| chef.on_packets(&[], &[], 1));
    drop(starved);
    eprintln!("stopped after {wall:?} wall, {cpu:?} CPU");
    let err = r.expect_err("an endless loop must be stopped");
    assert!(
        matches!(
            err,
            CallError::Timeout {
                deadline_ms: 50,
                wall_ceiling: true
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("stopped by the wall clock at 4x"),
        "{err}"
    );
    assert!(cpu < deadline, "the CPU deadline stopped it ({cpu:?})");
    assert!(wall >= ceiling, "stopped before the ceiling: {wall:?}");
    assert!(
        wall < ceiling + Duration::from_millis(400),
        "the ceiling did not hold: {wall:?}"
    );
}
