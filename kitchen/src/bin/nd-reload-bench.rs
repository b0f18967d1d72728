//! `nd-reload-bench`: how fast hot reload and a cached start are (issue #3 targets).
//!
//! 1. **File landing → first dumpling**: a kitchen (chef host + [`Reloader`] + dispatcher,
//!    fed one synthetic packet per millisecond as a live capture would be) watches an empty
//!    directory; the bench renames the `ReloadChef` fixture into it and measures until the
//!    first `ReloadChef` dumpling reaches the output. Cold = empty compiled-chef cache;
//!    warm = the component is already cached. Target: < 500 ms. The debounce
//!    ([`kitchen::chefs::reload::DEBOUNCE`]) is part of the figure on purpose: it is what a user
//!    waits for.
//! 2. **Kitchen start with 20 chefs**: `ChefHost::new` + loading a directory of 20
//!    distinct chef files (the fixture with a different custom section each, so each has
//!    its own cache key), cold vs cached. Target: < 1 s cached.
//!
//! Prints medians of the rounds and ratios against the targets and against each other
//! (both measured in this run). `ND_RELOAD_ROUNDS` (default 5) sets the rounds of part 1;
//! part 2 runs 3 rounds. Every wait is bounded (10 s).

#[path = "../fixtures_build.rs"]
mod fixtures_build;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use capture::PacketRecord;

use kitchen::chef_host::{CacheSetting, ChefHost, ChefLimits};
use kitchen::chefs;
use kitchen::chefs::reload::{self, ReloadPolicy, Reloader};
use kitchen::dispatch::{ClockMode, Dispatcher, DumplingSink, SinkError};

/// Longest wait for anything.
const WAIT: Duration = Duration::from_secs(10);
const LATENCY_TARGET: Duration = Duration::from_millis(500);
const START_TARGET: Duration = Duration::from_secs(1);
const START_CHEFS: usize = 20;
const START_ROUNDS: usize = 3;

/// Records when the first dumpling of `ReloadChef` arrives.
#[derive(Clone, Default)]
struct FirstDumpling(Arc<Mutex<Option<Instant>>>);

impl DumplingSink for FirstDumpling {
    fn send(&mut self, chef: &str, _json: String) -> Result<(), SinkError> {
        if chef == "ReloadChef" {
            let mut t = self.0.lock().unwrap_or_else(|e| e.into_inner());
            t.get_or_insert_with(Instant::now);
        }
        Ok(())
    }
}

/// An Ethernet/IPv4/UDP frame with a 4-byte payload.
fn frame() -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00];
    f.extend_from_slice(&[0x45, 0, 0, 32, 0, 1, 0, 0, 64, 17, 0, 0]);
    f.extend_from_slice(&[127, 0, 0, 1, 127, 0, 0, 1]);
    f.extend_from_slice(&[0x9c, 0x40, 0x27, 0x0f, 0, 12, 0, 0, 0, 0, 0, 1]);
    f
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn fresh_dir(p: &Path) -> anyhow::Result<()> {
    let _ = std::fs::remove_dir_all(p);
    std::fs::create_dir_all(p).with_context(|| format!("creating {}", p.display()))
}

/// One round of "file lands → first dumpling" with the cache in `cache`.
fn landing_round(wasm: &Path, scratch: &Path, cache: &Path) -> anyhow::Result<Duration> {
    let dir = scratch.join("watched");
    fresh_dir(&dir)?;
    let host = ChefHost::new(ChefLimits::default(), CacheSetting::Dir(cache.to_owned()))?;
    let reloader = Reloader::start(host, &dir, &[])?;
    let first = FirstDumpling::default();
    let mut d = Dispatcher::new(
        "bench",
        Vec::new(),
        Duration::from_secs(3600),
        ClockMode::Live,
        Box::new(first.clone()),
    );
    let policy = ReloadPolicy::default();
    let data = frame();
    // Land the file: copy under a temporary name, then rename (the recommended way).
    let tmp = dir.join(".reload_chef.wasm.tmp");
    std::fs::copy(wasm, &tmp)?;
    // Let the temporary file's own events go through the debouncer first: otherwise the
    // debouncer merges the rename with them and fires earlier than a full debounce after
    // the rename, which would flatter the figure.
    std::thread::sleep(reload::DEBOUNCE * 2);
    let landed = Instant::now();
    let mut parked = reload::ParkedVersions::default();
    std::fs::rename(&tmp, dir.join("reload_chef.wasm"))?;
    let mut ts = kitchen::dispatch::wall_ns();
    loop {
        reload::apply_pending(Some(&reloader), &mut d, &policy, &mut parked)?;
        ts += 1_000_000;
        d.push(&PacketRecord {
            timestamp_ns: ts,
            link_type: 1,
            interface_index: 0,
            original_len: data.len() as u32,
            data: &data,
        })?;
        d.flush()?;
        if let Some(t) = *first.0.lock().unwrap_or_else(|e| e.into_inner()) {
            return Ok(t - landed);
        }
        if landed.elapsed() > WAIT {
            bail!("no dumpling from the new chef after {WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// `wasm` plus a custom section naming `tag`: the same chef with another cache key.
fn variant(wasm: &[u8], tag: &str) -> Vec<u8> {
    let name = b"nd-bench";
    let mut content = vec![name.len() as u8];
    content.extend_from_slice(name);
    content.extend_from_slice(tag.as_bytes());
    assert!(content.len() < 128, "one-byte LEB128 length");
    let mut out = wasm.to_vec();
    out.push(0); // custom section id
    out.push(content.len() as u8);
    out.extend_from_slice(&content);
    out
}

/// Start a kitchen on `dir` (host + every chef loaded); returns the time taken.
fn start_round(dir: &Path, cache: &Path) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let host = ChefHost::new(ChefLimits::default(), CacheSetting::Dir(cache.to_owned()))?;
    let found = chefs::discover(&host, false, Some(dir))?;
    let took = started.elapsed();
    let failed: Vec<String> = found
        .iter()
        .filter_map(|f| {
            f.result
                .as_ref()
                .err()
                .map(|e| format!("{}: {e}", f.source))
        })
        .collect();
    if found.len() != START_CHEFS || !failed.is_empty() {
        bail!("{} chefs found, failures: {failed:?}", found.len());
    }
    Ok(took)
}

fn main() -> anyhow::Result<()> {
    let rounds: usize = std::env::var("ND_RELOAD_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(5);
    let root = fixtures_build::workspace_root();
    let fixtures = fixtures_build::build_fixtures().map_err(anyhow::Error::msg)?;
    let wasm: PathBuf = fixtures.join("reload_chef.wasm");
    let scratch = root
        .join("target")
        .join(format!("reload-bench-{}", std::process::id()));
    fresh_dir(&scratch)?;
    println!(
        "nd-reload-bench: {} ({} bytes), {rounds} rounds, debounce {:?}",
        wasm.display(),
        std::fs::metadata(&wasm)?.len(),
        reload::DEBOUNCE
    );

    // 1. Landing → first dumpling, cold then warm.
    let mut cold = Vec::new();
    for r in 0..rounds {
        let cache = scratch.join(format!("cache-cold-{r}"));
        fresh_dir(&cache)?;
        cold.push(landing_round(&wasm, &scratch, &cache)?);
    }
    let warm_cache = scratch.join("cache-warm");
    fresh_dir(&warm_cache)?;
    {
        // Fill the cache once.
        let host = ChefHost::new(ChefLimits::default(), CacheSetting::Dir(warm_cache.clone()))?;
        host.load_file(&wasm)?;
    }
    let mut warm = Vec::new();
    for _ in 0..rounds {
        warm.push(landing_round(&wasm, &scratch, &warm_cache)?);
    }
    let (cold_m, warm_m) = (median(&mut cold), median(&mut warm));
    println!(
        "landing -> first dumpling, cold (compile): median {:7.1} ms  ({:.2} x the 500 ms target)",
        ms(cold_m),
        cold_m.as_secs_f64() / LATENCY_TARGET.as_secs_f64()
    );
    println!(
        "landing -> first dumpling, warm (cached):  median {:7.1} ms  ({:.2} x the 500 ms target)",
        ms(warm_m),
        warm_m.as_secs_f64() / LATENCY_TARGET.as_secs_f64()
    );
    println!(
        "  of which debounce: {:.0} ms; cold/warm = {:.2}",
        ms(reload::DEBOUNCE),
        cold_m.as_secs_f64() / warm_m.as_secs_f64().max(1e-9)
    );

    // 2. Start with 20 chefs, cold vs cached.
    let chef_dir = scratch.join("twenty");
    fresh_dir(&chef_dir)?;
    let bytes = std::fs::read(&wasm)?;
    for i in 0..START_CHEFS {
        std::fs::write(
            chef_dir.join(format!("chef{i:02}.wasm")),
            variant(&bytes, &format!("chef-{i:02}")),
        )?;
    }
    let mut start_cold = Vec::new();
    let mut start_warm = Vec::new();
    for r in 0..START_ROUNDS {
        let cache = scratch.join(format!("cache-start-{r}"));
        fresh_dir(&cache)?;
        start_cold.push(start_round(&chef_dir, &cache)?);
        start_warm.push(start_round(&chef_dir, &cache)?);
    }
    let (sc, sw) = (median(&mut start_cold), median(&mut start_warm));
    println!(
        "start with {START_CHEFS} chefs, cold (compile all): median {:7.1} ms  ({:.2} x the 1 s target)",
        ms(sc),
        sc.as_secs_f64() / START_TARGET.as_secs_f64()
    );
    println!(
        "start with {START_CHEFS} chefs, cached:             median {:7.1} ms  ({:.2} x the 1 s target)",
        ms(sw),
        sw.as_secs_f64() / START_TARGET.as_secs_f64()
    );
    println!(
        "  cold/cached = {:.1}",
        sc.as_secs_f64() / sw.as_secs_f64().max(1e-9)
    );
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
}
