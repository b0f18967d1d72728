//! Shared helpers for the kitchen's integration tests: fixture chefs, captures, replays.

#![allow(dead_code)] // each test file uses a different subset

#[path = "../../src/fixtures_build.rs"]
mod fixtures_build;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use capture::FileReader;
use kitchen::chef_host::{CacheSetting, ChefHost, ChefLimits, LoadedChef};
use kitchen::dispatch::{
    ChefSlot, ClockMode, Dispatcher, DumplingSink, InterestMatcher, SinkError,
};
use kitchen::run::replay::{NoHooks, ReplayEnd, ReplayOptions};

pub use fixtures_build::workspace_root;

/// The fixture directory, built once per test binary.
pub fn fixtures() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| fixtures_build::build_fixtures().unwrap_or_else(|e| panic!("{e}")))
}

/// A fixture component's path, e.g. `fixture("port_chef")`.
pub fn fixture(name: &str) -> PathBuf {
    fixtures().join(format!("{name}.wasm"))
}

/// `ND_SHARED_DOCS`, defaulting to `<workspace>/../shared/docs`.
pub fn shared_docs() -> PathBuf {
    std::env::var_os("ND_SHARED_DOCS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("../shared/docs"))
}

/// The original's sample capture (50 packets: DNS, ARP, HTTP on loopback).
pub fn sample_capture() -> PathBuf {
    let p = shared_docs().join("netdumplings-captures/loopback_dns_arp_http.pcap");
    assert!(p.is_file(), "missing {} (set ND_SHARED_DOCS)", p.display());
    p
}

/// A host with default limits (or `limits`) and no on-disk cache.
/// Deterministic (replay) sandboxing, as `nd-sniff -r` uses.
pub fn host_with(limits: ChefLimits) -> ChefHost {
    let mut host = ChefHost::new(limits, CacheSetting::Disabled).expect("chef host");
    host.set_deterministic(true);
    host
}

/// A host with default limits and no cache.
pub fn host() -> ChefHost {
    host_with(ChefLimits::default())
}

/// Load a fixture chef.
pub fn load_fixture(host: &ChefHost, name: &str) -> LoadedChef {
    host.load_file(&fixture(name))
        .unwrap_or_else(|e| panic!("loading {name}: {e}"))
}

/// Collects dumplings into a shared vector.
#[derive(Clone, Default)]
pub struct Collect(pub Arc<Mutex<Vec<String>>>);

impl DumplingSink for Collect {
    fn send(&mut self, _chef: &str, json: String) -> Result<(), SinkError> {
        self.0.lock().unwrap().push(json);
        Ok(())
    }
}

pub fn slot(chef: LoadedChef) -> ChefSlot {
    ChefSlot {
        matcher: InterestMatcher::new(&chef.description().interest),
        qualified_name: kitchen::chefs::qualified_name(&chef),
        chef,
    }
}

/// Replay `path` through `chefs` the way `nd-sniff -r` does; returns the dumplings (JSON
/// lines) and the dispatcher (for chef counters).
pub fn replay(
    path: &Path,
    chefs: Vec<LoadedChef>,
    filter: Option<&str>,
    poke: Duration,
) -> (Vec<String>, Dispatcher) {
    replay_with(path, chefs, filter, poke, false)
}

/// [`replay`] with flows tracked (default table) for the chefs that ask for flow events or
/// stream bytes, as `nd-sniff -r` tracks them.
pub fn replay_tracking_flows(
    path: &Path,
    chefs: Vec<LoadedChef>,
    poke: Duration,
) -> (Vec<String>, Dispatcher) {
    replay_with(path, chefs, None, poke, true)
}

fn replay_with(
    path: &Path,
    chefs: Vec<LoadedChef>,
    filter: Option<&str>,
    poke: Duration,
    flows: bool,
) -> (Vec<String>, Dispatcher) {
    let out = Collect::default();
    let mut d = Dispatcher::new(
        "test_kitchen",
        chefs.into_iter().map(slot).collect(),
        poke,
        ClockMode::Replay,
        Box::new(out.clone()),
    );
    if flows {
        d.set_flows(flowtrack::table::FlowConfig::default())
            .expect("default flow table");
    }
    let reader = FileReader::open(path).expect("open capture");
    let options = ReplayOptions {
        filter: filter.map(str::to_owned),
        filter_check: None,
        stop: Arc::new(AtomicBool::new(false)),
        progress: None,
    };
    let (end, _) =
        kitchen::run::replay::replay(reader, &mut d, &mut NoHooks, options).expect("replay");
    assert!(matches!(end, ReplayEnd::Done), "{end:?}");
    d.finish().expect("finish");
    let lines = out.0.lock().unwrap().clone();
    (lines, d)
}

/// A legacy pcap (µs, Ethernet) of `packets` (µs after the capture's start, frame) in
/// `target/test-tmp/<test>/<name>`.
pub fn write_pcap(test: &str, name: &str, packets: &[(u64, Vec<u8>)]) -> PathBuf {
    let dir = workspace_root().join("target/test-tmp").join(test);
    std::fs::create_dir_all(&dir).expect("test dir");
    let path = dir.join(name);
    let mut b = Vec::new();
    // Magic, version 2.4 (two u16s), zone, sigfigs, snaplen, Ethernet.
    for v in [0xa1b2_c3d4u32, 0x0004_0002, 0, 0, 65535, 1] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    let t0 = 1_700_000_000u64 * 1_000_000;
    for (at_us, frame) in packets {
        let t = t0 + at_us;
        b.extend_from_slice(&((t / 1_000_000) as u32).to_le_bytes());
        b.extend_from_slice(&((t % 1_000_000) as u32).to_le_bytes());
        b.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        b.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        b.extend_from_slice(frame);
    }
    std::fs::write(&path, b).expect("write capture");
    path
}

/// Parse a dumpling line.
pub fn json(line: &str) -> serde_json::Value {
    serde_json::from_str(line).expect("dumpling is JSON")
}
