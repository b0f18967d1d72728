//! `nd-hub-bench`: loopback benchmark of `nd-hub` (issue #4). Bounded in count and time.
//!
//! Starts a fresh `nd-hub` process (next to this binary) per measurement, drives it with
//! in-process kitchens and eaters on 127.0.0.1, and prints medians over `--reps` runs:
//!
//! 1. burst: P kitchens (1-4) send 500-byte dumplings as fast as they can to C eaters
//!    (1, 10, 100, 1000); delivered dumplings/s, hub CPU-seconds, deliveries per hub
//!    CPU-second, p50/p99 latency (queueing included), and losses (must be 0);
//! 2. fixed rate: 1000 eaters x 100 dumplings/s, p50/p99 latency;
//! 3. RSS per idle eater (1000 idle eaters);
//! 4. one slow eater among 100 fast ones, against the run without it;
//! 5. the original Python hub, if installed (`--original PATH` or
//!    `target/ndorig/bin/nd-hub`), in the same run, with the ratio.
//!
//! Run: `cargo build --release -p hub && target/release/nd-hub-bench` (`--quick` for a
//! shorter run).

#[path = "common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use common::{free_port, proc_cpu_secs, wait_port};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

/// nd-hub-bench: loopback benchmark of nd-hub.
#[derive(Debug, Parser)]
#[command(name = "nd-hub-bench", about)]
struct Cli {
    /// Repetitions per measurement (medians are printed).
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Fewer cells and smaller counts.
    #[arg(long)]
    quick: bool,
    /// The original hub's `nd-hub` executable (default: target/ndorig/bin/nd-hub if present).
    #[arg(long)]
    original: Option<PathBuf>,
    /// Deliveries per burst cell (dumplings x eaters).
    #[arg(long, default_value_t = 1_000_000)]
    deliveries: u64,
    /// Pin each hub process to this CPU (with `taskset`); run the bench itself under
    /// `taskset -c OTHER` to keep the load generator off the hub's core.
    #[arg(long, value_name = "CPU")]
    hub_cpu: Option<usize>,
    /// Run only these parts (burst, fixed, slow, idle, original); default all.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// The `nd-hub` to measure (default: the one next to this binary).
    #[arg(long, value_name = "PATH")]
    hub: Option<PathBuf>,
    /// Another `nd-hub` build (e.g. the previous one, copied aside) measured in the same
    /// run for the fixed-rate cell, repetitions interleaved with `--hub`'s.
    #[arg(long, value_name = "PATH")]
    baseline: Option<PathBuf>,
    /// Extra argument for the measured hub (repeatable), e.g. `--hub-arg=--threads=2`.
    #[arg(long, value_name = "ARG", allow_hyphen_values = true)]
    hub_arg: Vec<String>,
    /// Extra argument for the `--baseline` hub (repeatable).
    #[arg(long, value_name = "ARG", allow_hyphen_values = true)]
    baseline_arg: Vec<String>,
    /// Length of the fixed-rate cell (1000 eaters x 100 dumplings/s), in seconds.
    #[arg(long, default_value_t = 3)]
    fixed_secs: u64,
}

impl Cli {
    fn wants(&self, part: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|p| p == part)
    }
}

const SIZE: usize = 500;

/// Nanoseconds since the bench started (all timestamps share this base).
fn now_ns(base: Instant) -> u64 {
    base.elapsed().as_nanos() as u64
}

/// A 500-byte dumpling whose payload starts with a fixed-width send timestamp, so eaters
/// can read it without parsing JSON: `..."payload": {"t":              123, "pad": "xx"}}`
/// (space-padded: JSON forbids leading zeros).
fn make_dumpling(prefix: &str, t: u64) -> String {
    let head = format!("{prefix}{t:>16}, \"pad\": \"");
    let pad = SIZE.saturating_sub(head.len() + 3);
    format!("{head}{}\"}}}}", "x".repeat(pad))
}

fn prefix(kitchen: &str) -> String {
    format!(
        r#"{{"metadata": {{"chef": "BenchChef", "kitchen": "{kitchen}", "creation_time": 1.5, "driver": "packet"}}, "payload": {{"t": "#
    )
}

/// Read the timestamp back, or `None` for a non-bench message (status, notice).
fn timestamp(text: &str) -> Option<u64> {
    let i = text.find("\"payload\": {\"t\": ")? + "\"payload\": {\"t\": ".len();
    text.get(i..i + 16)?.trim_start().parse().ok()
}

struct HubProcess {
    child: Child,
    kitchens: SocketAddr,
    eaters: SocketAddr,
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Which {
    Ours,
    /// Ours, started as the `--baseline` (with `--baseline-arg`s).
    Baseline,
    Original,
}

/// Extra arguments for `--hub` and `--baseline` hubs, set once in `main`.
static HUB_ARGS: std::sync::OnceLock<(Vec<String>, Vec<String>)> = std::sync::OnceLock::new();

/// CPU to pin hubs to (`--hub-cpu`), set once in `main`.
static HUB_CPU: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();

fn start_hub(exe: &Path, which: Which) -> anyhow::Result<HubProcess> {
    let (i, o) = (free_port()?, free_port()?);
    let mut cmd = match HUB_CPU.get().copied().flatten() {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.args(["-c", &cpu.to_string()]).arg(exe);
            c
        }
        None => Command::new(exe),
    };
    cmd.args([
        "-a",
        "127.0.0.1",
        "-i",
        &i.to_string(),
        "-o",
        &o.to_string(),
    ]);
    if which != Which::Original {
        // Lossless bursts: the ring and byte cap hold a whole burst.
        cmd.args([
            "-f",
            "5",
            "--ring-capacity",
            "262144",
            "--eater-queue-bytes",
            "1073741824",
            "--write-timeout",
            "60",
        ])
        .env("RUST_LOG", "warn");
        if let Some((ours, baseline)) = HUB_ARGS.get() {
            cmd.args(if which == Which::Baseline {
                baseline
            } else {
                ours
            });
        }
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {}", exe.display()))?;
    let hub = HubProcess {
        child,
        kitchens: ([127, 0, 0, 1], i).into(),
        eaters: ([127, 0, 0, 1], o).into(),
    };
    if !wait_port(hub.kitchens) || !wait_port(hub.eaters) {
        bail!("{} did not start", exe.display());
    }
    Ok(hub)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(addr: SocketAddr, hello: String) -> anyhow::Result<Ws> {
    // tungstenite zero-fills up to `read_buffer_size` bytes before every read; its 128 KiB
    // default made each 500-byte receipt cost a 128 KiB memset in the eaters, which showed
    // up as latency on the shared cores. 16 KiB still takes ~30 dumplings per read.
    let config = WebSocketConfig::default()
        .write_buffer_size(64 * 1024)
        .read_buffer_size(16 * 1024);
    let (mut ws, _) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async_with_config(format!("ws://{addr}/"), Some(config), true),
    )
    .await
    .context("connect timed out")??;
    ws.send(Message::text(hello)).await?;
    Ok(ws)
}

/// What one eater saw.
struct EaterResult {
    received: u64,
    lagged: u64,
    last: Option<Instant>,
    latencies_us: Vec<u32>,
    /// Send timestamps (ns) of the sampled dumplings, parallel to `latencies_us`.
    sent_ns: Vec<u64>,
}

/// Read until `expected` bench dumplings arrived or `deadline`.
async fn run_eater(
    mut ws: Ws,
    expected: u64,
    base: Instant,
    deadline: tokio::time::Instant,
    sample_every: u64,
) -> EaterResult {
    let mut r = EaterResult {
        received: 0,
        lagged: 0,
        last: None,
        latencies_us: Vec::new(),
        sent_ns: Vec::new(),
    };
    while r.received + r.lagged < expected {
        let message = match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(m))) => m,
            _ => break,
        };
        let Message::Text(text) = message else {
            continue;
        };
        if let Some(t) = timestamp(&text) {
            r.received += 1;
            if r.received.is_multiple_of(sample_every) {
                let lat = now_ns(base).saturating_sub(t) / 1000;
                r.latencies_us.push(lat.min(u32::MAX as u64) as u32);
                r.sent_ns.push(t);
            }
            r.last = Some(Instant::now());
        } else if text.contains("\"HubNoticeChef\"") {
            if let Some(n) = text
                .split("\"lagged\":")
                .nth(1)
                .and_then(|s| s.trim_end_matches('}').trim().parse::<u64>().ok())
            {
                r.lagged += n;
            }
        }
    }
    let _ = ws.close(None).await;
    r
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1000.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// One measurement's figures.
#[derive(Clone, Copy, Default)]
struct Figures {
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    hub_cpu: f64,
    per_cpu_s: f64,
    lost: u64,
    complete: f64,
    /// CPU-seconds used by this bench process (eaters and generator) in the same window.
    bench_cpu: f64,
    /// Per dumpling, the latency of the first eater to get it: median.
    first_p50_ms: f64,
    /// Per dumpling, the latency of the last eater to get it: median and p99.
    last_p50_ms: f64,
    last_p99_ms: f64,
}

/// Connect `eaters` eaters (hello sent, welcome status read for ours), with bounded waits.
async fn connect_eaters(addr: SocketAddr, n: usize, tag: &str) -> anyhow::Result<Vec<Ws>> {
    let mut all = Vec::with_capacity(n);
    for chunk in 0..n.div_ceil(100) {
        let mut set = tokio::task::JoinSet::new();
        for i in chunk * 100..((chunk + 1) * 100).min(n) {
            set.spawn(connect(addr, format!(r#"{{"eater_name": "{tag}{i}"}}"#)));
        }
        while let Some(ws) = set.join_next().await {
            all.push(ws??);
        }
    }
    Ok(all)
}

/// Kitchens send `per_kitchen` dumplings each: as fast as possible (`rate` None) or at
/// `rate` dumplings/s per kitchen.
async fn run_kitchens(
    addr: SocketAddr,
    kitchens: usize,
    per_kitchen: u64,
    rate: Option<u64>,
    base: Instant,
) -> anyhow::Result<Vec<Ws>> {
    let mut set = tokio::task::JoinSet::new();
    for k in 0..kitchens {
        let name = format!("bench{k}");
        let mut ws = connect(addr, format!(r#"{{"kitchen_name": "{name}"}}"#)).await?;
        set.spawn(async move {
            let prefix = prefix(&name);
            match rate {
                None => {
                    for i in 0..per_kitchen {
                        ws.feed(Message::text(make_dumpling(&prefix, now_ns(base))))
                            .await?;
                        if i % 64 == 63 {
                            ws.flush().await?;
                        }
                    }
                    ws.flush().await?;
                }
                Some(rate) => {
                    // 10 ms ticks on absolute deadlines (start + k x 10 ms), so a late
                    // wake-up does not shift every later send; rate/100 dumplings per tick
                    // (one at 100/s). Each dumpling carries the time it was written.
                    let per_tick = (rate / 100).max(1);
                    let start = tokio::time::Instant::now();
                    let mut sent = 0;
                    let mut k = 0u32;
                    while sent < per_kitchen {
                        tokio::time::sleep_until(start + Duration::from_millis(10) * k).await;
                        k += 1;
                        for _ in 0..per_tick.min(per_kitchen - sent) {
                            ws.feed(Message::text(make_dumpling(&prefix, now_ns(base))))
                                .await?;
                            sent += 1;
                        }
                        ws.flush().await?;
                    }
                }
            }
            Ok::<Ws, anyhow::Error>(ws)
        });
    }
    let mut out = Vec::new();
    while let Some(ws) = set.join_next().await {
        out.push(ws??);
    }
    Ok(out)
}

/// Fixed-rate kitchens on their own thread and single-threaded runtime, so the
/// generator's pacing does not wait behind the 1000 eater tasks it is measuring. The
/// kitchens stay connected until the returned sender is dropped.
fn spawn_paced_kitchens(
    addr: SocketAddr,
    kitchens: usize,
    per_kitchen: u64,
    rate: u64,
    base: Instant,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::sync::oneshot::Receiver<anyhow::Result<()>>,
) {
    let (hold_tx, hold_rx) = tokio::sync::oneshot::channel::<()>();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let result = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| {
                rt.block_on(async move {
                    let conns = run_kitchens(addr, kitchens, per_kitchen, Some(rate), base).await;
                    let ok = conns
                        .as_ref()
                        .map(|_| ())
                        .map_err(|e| anyhow::anyhow!("{e:#}"));
                    let _ = done_tx.send(ok);
                    // Keep the kitchens connected until the measurement is over (bounded).
                    let _ = tokio::time::timeout(Duration::from_secs(120), hold_rx).await;
                    drop(conns);
                    Ok(())
                })
            });
        if let Err(error) = result {
            eprintln!("paced kitchens: {error:#}");
        }
    });
    (hold_tx, done_rx)
}

fn self_cpu_secs() -> f64 {
    proc_cpu_secs(std::process::id())
}

/// One run: C eaters (plus optional never-reading slow eaters), P kitchens.
#[allow(clippy::too_many_arguments)]
async fn measure(
    exe: &Path,
    which: Which,
    eaters: usize,
    kitchens: usize,
    per_kitchen: u64,
    rate: Option<u64>,
    slow_eaters: usize,
    limit: Duration,
) -> anyhow::Result<Figures> {
    let hub = start_hub(exe, which)?;
    let pid = hub.child.id();
    let base = Instant::now();
    let conns = connect_eaters(hub.eaters, eaters, "e").await?;
    let slow = connect_eaters(hub.eaters, slow_eaters, "slow").await?;
    // Let every eater register (the original sends nothing on connect).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let expected = per_kitchen * kitchens as u64;
    let deadline = tokio::time::Instant::now() + limit;
    // Fixed rate: one latency sample per delivered dumpling. Bursts: at most ~200k samples.
    let sample_every = if rate.is_some() {
        1
    } else {
        (expected * eaters as u64 / 200_000).max(1)
    };
    let cpu0 = proc_cpu_secs(pid);
    let bench_cpu0 = self_cpu_secs();
    let start = Instant::now();
    let readers: Vec<_> = conns
        .into_iter()
        .map(|ws| tokio::spawn(run_eater(ws, expected, base, deadline, sample_every)))
        .collect();
    let mut _kitchen_conns = Vec::new();
    let mut _hold = None;
    match rate {
        None => {
            _kitchen_conns = run_kitchens(hub.kitchens, kitchens, per_kitchen, None, base).await?
        }
        Some(rate) => {
            let (hold, done) =
                spawn_paced_kitchens(hub.kitchens, kitchens, per_kitchen, rate, base);
            _hold = Some(hold);
            match tokio::time::timeout(limit, done).await {
                Ok(Ok(result)) => result?,
                Ok(Err(_)) => bail!("paced kitchen thread failed"),
                Err(_) => bail!("paced kitchens did not finish within {limit:?}"),
            }
        }
    }
    let mut received = 0u64;
    let mut lagged = 0u64;
    let mut last = start;
    let mut lat = Vec::new();
    // Per dumpling: latency of the first and of the last eater to get it.
    let mut spread = std::collections::HashMap::<u64, (u32, u32)>::new();
    for r in readers {
        let r = r.await?;
        received += r.received;
        lagged += r.lagged;
        if let Some(t) = r.last {
            last = last.max(t);
        }
        for (&t, &l) in r.sent_ns.iter().zip(&r.latencies_us) {
            let e = spread.entry(t).or_insert((u32::MAX, 0));
            e.0 = e.0.min(l);
            e.1 = e.1.max(l);
        }
        lat.extend(r.latencies_us);
    }
    let cpu = proc_cpu_secs(pid) - cpu0;
    let bench_cpu = self_cpu_secs() - bench_cpu0;
    drop(slow);
    let secs = last.duration_since(start).as_secs_f64().max(1e-6);
    lat.sort_unstable();
    let total = expected * eaters as u64;
    let (mut first, mut lastest): (Vec<u32>, Vec<u32>) = spread.values().copied().unzip();
    first.sort_unstable();
    lastest.sort_unstable();
    Ok(Figures {
        rate: received as f64 / secs,
        p50_ms: percentile(&lat, 0.5),
        p99_ms: percentile(&lat, 0.99),
        hub_cpu: cpu,
        per_cpu_s: if cpu > 0.0 {
            received as f64 / cpu
        } else {
            f64::NAN
        },
        lost: total.saturating_sub(received).max(lagged),
        complete: received as f64 / total.max(1) as f64,
        bench_cpu,
        first_p50_ms: percentile(&first, 0.5),
        last_p50_ms: percentile(&lastest, 0.5),
        last_p99_ms: percentile(&lastest, 0.99),
    })
}

fn med(runs: &[Figures], f: impl Fn(&Figures) -> f64) -> f64 {
    median(runs.iter().map(f).collect())
}

async fn repeat(
    reps: usize,
    mut f: impl AsyncFnMut() -> anyhow::Result<Figures>,
) -> anyhow::Result<Vec<Figures>> {
    let mut runs = Vec::new();
    for _ in 0..reps {
        runs.push(f().await?);
    }
    Ok(runs)
}

fn print_row(label: &str, runs: &[Figures]) {
    println!(
        "{label:<34} {:>12.0} {:>8.2} {:>8.2} {:>7.2} {:>12.0} {:>7} {:>6.1}% {:>8.2}",
        med(runs, |r| r.rate),
        med(runs, |r| r.p50_ms),
        med(runs, |r| r.p99_ms),
        med(runs, |r| r.hub_cpu),
        med(runs, |r| r.per_cpu_s),
        runs.iter().map(|r| r.lost).max().unwrap_or(0),
        med(runs, |r| r.complete * 100.0),
        med(runs, |r| r.bench_cpu),
    );
}

fn header() {
    println!(
        "{:<34} {:>12} {:>8} {:>8} {:>7} {:>12} {:>7} {:>7} {:>8}",
        "scenario",
        "delivered/s",
        "p50 ms",
        "p99 ms",
        "hubCPU",
        "per hub CPU-s",
        "lost",
        "done",
        "benchCPU"
    );
}

async fn idle_rss(exe: &Path, which: Which, n: usize) -> anyhow::Result<f64> {
    let hub = start_hub(exe, which)?;
    let pid = hub.child.id();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = rss_kib(pid);
    let conns = connect_eaters(hub.eaters, n, "idle").await?;
    // Let the hub see every hello and settle (one status round for the original).
    tokio::time::sleep(Duration::from_millis(if which != Which::Original {
        1000
    } else {
        6000
    }))
    .await;
    let after = rss_kib(pid);
    drop(conns);
    Ok(after.saturating_sub(before) as f64 / n as f64)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let exe = match cli.hub.clone() {
        Some(path) => path,
        None => std::env::current_exe()?
            .parent()
            .context("no exe dir")?
            .join("nd-hub"),
    };
    if !exe.exists() {
        bail!("{} not found: cargo build --release -p hub", exe.display());
    }
    let original = cli.original.clone().or_else(|| {
        let p = exe
            .parent()
            .and_then(|d| d.parent())
            .map(|t| t.join("ndorig/bin/nd-hub"))?;
        p.exists().then_some(p)
    });
    let reps = cli.reps.max(1);
    let _ = HUB_CPU.set(cli.hub_cpu);
    let _ = HUB_ARGS.set((cli.hub_arg.clone(), cli.baseline_arg.clone()));
    println!("nd-hub-bench: 500-byte dumplings on 127.0.0.1, medians of {reps} runs");
    println!("hub: {}", exe.display());
    header();

    // 1. Burst throughput.
    let eater_counts: &[usize] = if cli.quick {
        &[10, 100]
    } else {
        &[1, 10, 100, 1000]
    };
    let kitchen_counts: &[usize] = if cli.quick { &[1] } else { &[1, 2, 4] };
    let mut at100 = None;
    let eater_counts = if cli.wants("burst") {
        eater_counts
    } else {
        &[]
    };
    for &c in eater_counts {
        for &p in kitchen_counts {
            let total = (cli.deliveries / c as u64).clamp(1000, 200_000);
            let per_kitchen = total / p as u64;
            let runs = repeat(reps, async || {
                measure(
                    &exe,
                    Which::Ours,
                    c,
                    p,
                    per_kitchen,
                    None,
                    0,
                    Duration::from_secs(60),
                )
                .await
            })
            .await?;
            print_row(&format!("burst C={c} P={p} ({} each)", per_kitchen), &runs);
            if c == 100 && p == 1 {
                at100 = Some(med(&runs, |r| r.rate));
            }
        }
    }

    // 2. Fixed rate: 1000 eaters x 100 dumplings/s for --fixed-secs (default 3 s); with
    // --baseline, each repetition measures both hubs, alternating which goes first.
    let reps_fixed = if cli.wants("fixed") { reps } else { 0 };
    let fixed_count = 100 * cli.fixed_secs.clamp(1, 60);
    let fixed_limit = Duration::from_secs(cli.fixed_secs.clamp(1, 60) + 30);
    let mut fixed = Vec::new();
    let mut fixed_base = Vec::new();
    for rep in 0..reps_fixed {
        let mut order = vec![(exe.clone(), false)];
        if let Some(b) = cli.baseline.clone() {
            order.push((b, true));
            if rep % 2 == 1 {
                order.reverse();
            }
        }
        for (path, is_base) in order {
            let which = if is_base {
                Which::Baseline
            } else {
                Which::Ours
            };
            let f = measure(
                &path,
                which,
                1000,
                1,
                fixed_count,
                Some(100),
                0,
                fixed_limit,
            )
            .await?;
            if is_base {
                fixed_base.push(f);
            } else {
                fixed.push(f);
            }
        }
    }
    let spread_row = |runs: &[Figures]| {
        println!(
            "{:<34} per dumpling: first eater p50 {:.2} ms; last eater p50 {:.2} ms, p99 {:.2} ms",
            "",
            med(runs, |r| r.first_p50_ms),
            med(runs, |r| r.last_p50_ms),
            med(runs, |r| r.last_p99_ms),
        )
    };
    if !fixed.is_empty() {
        print_row(
            &format!("fixed 100/s x C=1000, {} s", cli.fixed_secs),
            &fixed,
        );
        spread_row(&fixed);
    }
    if !fixed_base.is_empty() {
        print_row("  baseline hub, same run", &fixed_base);
        spread_row(&fixed_base);
    }

    // 3. Slow eater among 100 fast ones: 1000 dumplings/s for 3 s.
    let reps_slow = if cli.wants("slow") { reps } else { 0 };
    let base_runs = repeat(reps_slow, async || {
        measure(
            &exe,
            Which::Ours,
            100,
            1,
            3000,
            Some(1000),
            0,
            Duration::from_secs(30),
        )
        .await
    })
    .await?;
    if !base_runs.is_empty() {
        print_row("fixed 1000/s x C=100", &base_runs);
    }
    let slow_runs = repeat(reps_slow, async || {
        measure(
            &exe,
            Which::Ours,
            100,
            1,
            3000,
            Some(1000),
            1,
            Duration::from_secs(30),
        )
        .await
    })
    .await?;
    if !slow_runs.is_empty() {
        print_row("fixed 1000/s x C=100 + 1 stuck", &slow_runs);
    }

    // 4. Idle eaters.
    let mut per_eater = Vec::new();
    for _ in 0..if cli.wants("idle") { reps } else { 0 } {
        per_eater.push(idle_rss(&exe, Which::Ours, 1000).await?);
    }
    let rss = median(per_eater);

    // 5. The original.
    let mut orig_rows = Vec::new();
    if let Some(orig) = original.as_ref().filter(|_| cli.wants("original")) {
        println!("original hub: {}", orig.display());
        for &c in &[10usize, 100] {
            let per_kitchen = (100_000 / c as u64).max(500);
            let ours = repeat(reps, async || {
                measure(
                    &exe,
                    Which::Ours,
                    c,
                    1,
                    per_kitchen,
                    None,
                    0,
                    Duration::from_secs(60),
                )
                .await
            })
            .await?;
            let theirs = repeat(reps, async || {
                measure(
                    orig,
                    Which::Original,
                    c,
                    1,
                    per_kitchen,
                    None,
                    0,
                    Duration::from_secs(90),
                )
                .await
            })
            .await?;
            print_row(&format!("ours     burst C={c} P=1 ({per_kitchen})"), &ours);
            print_row(
                &format!("original burst C={c} P=1 ({per_kitchen})"),
                &theirs,
            );
            orig_rows.push((c, med(&ours, |r| r.rate), med(&theirs, |r| r.rate)));
        }
        let orig_rss = idle_rss(orig, Which::Original, 200).await?;
        println!("RSS per idle eater, original hub (200 eaters): {orig_rss:.1} KiB");
    } else {
        println!("original hub not installed (python/setup-original.sh); skipping the comparison");
    }

    println!();
    println!("summary");
    if let Some(rate) = at100 {
        println!(
            "  delivered/s at 100 eaters (burst, P=1): {rate:.0}  (target >= 1,000,000: {})",
            if rate >= 1e6 { "met" } else { "NOT met" }
        );
    }
    let p99 = med(&fixed, |r| r.p99_ms);
    if !fixed.is_empty() {
        println!(
            "  p99 at 1000 eaters x 100/s: {p99:.2} ms  (target < 50 ms: {})",
            if p99 < 50.0 { "met" } else { "NOT met" }
        );
    }
    if !fixed_base.is_empty() {
        let (b99, b50) = (
            med(&fixed_base, |r| r.p99_ms),
            med(&fixed_base, |r| r.p50_ms),
        );
        let (bcpu, cpu) = (med(&fixed_base, |r| r.hub_cpu), med(&fixed, |r| r.hub_cpu));
        println!(
            "  baseline hub ({}): p50 {b50:.2} ms, p99 {b99:.2} ms, hub CPU {bcpu:.2} s; this hub: p50 {:.2} ms, p99 {p99:.2} ms, hub CPU {cpu:.2} s ({:.0}% of baseline)",
            cli.baseline.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
            med(&fixed, |r| r.p50_ms),
            100.0 * cpu / bcpu,
        );
    }
    if rss.is_finite() {
        println!(
            "  RSS per idle eater (1000 eaters): {rss:.1} KiB  (target <= 16 KiB: {})",
            if rss <= 16.0 { "met" } else { "NOT met" }
        );
    }
    if !slow_runs.is_empty() {
        let (r0, r1) = (med(&base_runs, |r| r.rate), med(&slow_runs, |r| r.rate));
        let (p0, p1) = (med(&base_runs, |r| r.p99_ms), med(&slow_runs, |r| r.p99_ms));
        println!(
        "  one stuck eater among 100: fast rate {:.1}% of baseline, fast p99 {p1:.2} ms vs {p0:.2} ms (within 10%: {})",
        100.0 * r1 / r0,
        if r1 >= 0.9 * r0 && p1 <= 1.1 * p0.max(1.0) { "yes" } else { "NO" }
    );
    }
    for (c, ours, theirs) in orig_rows {
        println!(
            "  vs original at C={c}: {ours:.0} vs {theirs:.0} delivered/s = {:.1}x",
            ours / theirs
        );
    }
    Ok(())
}
