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

/// The chef type every crate implements `Guest` for.
struct HostileChef;

export!(HostileChef);
