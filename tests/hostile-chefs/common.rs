// Shared by every hostile chef: `include!`d right after `wit_bindgen::generate!`, so it
// uses that crate's generated bindings (the raw WIT ABI, no SDK).

#[allow(unused_imports)]
use exports::netdumplings::chef::handler::Guest;
#[allow(unused_imports)]
use netdumplings::chef::log::{log, Level};
#[allow(unused_imports)]
use netdumplings::chef::types::{ChefInfo, Drivers, Interest, Packet, PacketDumpling};

/// The chef-info every hostile chef returns: an all-empty interest (every packet).
#[allow(dead_code)]
fn info(name: &str, description: &str, drivers: Drivers) -> ChefInfo {
    ChefInfo {
        name: name.to_owned(),
        description: description.to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        drivers,
        interest: Interest {
            link_types: Vec::new(),
            network: Vec::new(),
            transport: Vec::new(),
            ports: Vec::new(),
        },
    }
}

/// Busy-waits (no sleeping: WASI poll is not a way out of the deadline) for `ms`
/// milliseconds of monotonic-clock time, and returns how long it really spun.
#[allow(dead_code)]
fn spin_ms(ms: u64) -> u64 {
    let start = std::time::Instant::now();
    let limit = std::time::Duration::from_millis(ms);
    let mut spins: u64 = 0;
    while start.elapsed() < limit {
        spins = std::hint::black_box(spins.wrapping_add(1));
    }
    start.elapsed().as_millis() as u64
}

/// Busy-waits until this call has *run* for `ms` milliseconds: the kitchen's deadline
/// counts the CPU time of the calling thread, which a wall-clock spin does not use up on a
/// loaded machine. A chef has no CPU clock, so running time is the sum of the gaps between
/// consecutive monotonic-clock reads that are under 1 ms (a longer gap is the thread
/// waiting for a core; a time slice is longer than that). Returns the wall time it took.
#[allow(dead_code)]
fn spin_cpu_ms(ms: u64) -> u64 {
    let start = std::time::Instant::now();
    let limit = std::time::Duration::from_millis(ms);
    let gap = std::time::Duration::from_millis(1);
    let mut ran = std::time::Duration::ZERO;
    let mut last = start;
    while ran < limit {
        let now = std::time::Instant::now();
        let step = now.saturating_duration_since(last);
        if step < gap {
            ran += step;
        }
        last = now;
    }
    start.elapsed().as_millis() as u64
}

/// The chef type every crate implements `Guest` for.
struct HostileChef;

export!(HostileChef);
