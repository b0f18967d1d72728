//! `nd-web-bench`: what the live web page costs `nd-hub` (issue 12, item 5), measured
//! against an ordinary eater in the same run.
//!
//! Each round starts a fresh `nd-hub` (next to this binary) on 127.0.0.1 with one
//! measuring eater, then attaches one of three extras: nothing, one ordinary eater (reads
//! everything, like `nd-print`), or the real web page in headless Debian Chromium (via
//! chromedriver and fantoccini, as `tests/tests/web_view.rs`). One kitchen then sends
//! `--dumplings` dumplings as fast as it can; the measuring eater's receipt rate is the
//! hub's fan-out rate, and the hub's CPU time (from `/proc`) until every client has every
//! dumpling is its cost. On a 2-core machine the browser's own CPU (parsing and drawing)
//! competes with the hub and the load generator, so the rate shows that contention as
//! well; the CPU per dumpling is the hub's cost alone.
//! The three setups are interleaved per round; medians over `--rounds` and ratios to the
//! run without an extra are printed. Target: the page costs the hub no more than one
//! ordinary eater (a page that falls behind is dropped by the hub like any eater, with a
//! lag notice, never waited for).
//!
//! Run: `cargo build --release --workspace && target/release/nd-web-bench [--rounds 5]
//! [--dumplings 100000]`. Needs chromium and chromium-driver (`scripts/setup.sh`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use e2e_tests::{bin, free_port, on_path, spawn_hub, wait_for_port, ChildGuard};
use fantoccini::{Client, ClientBuilder};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The extra client of one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Extra {
    None,
    Eater,
    Page,
}

impl Extra {
    fn label(self) -> &'static str {
        match self {
            Extra::None => "no extra client",
            Extra::Eater => "+1 ordinary eater",
            Extra::Page => "+1 web page (Chromium)",
        }
    }
}

/// One run's figures.
#[derive(Debug, Clone, Copy)]
struct Run {
    /// Dumplings/s the measuring eater received (first send to last receipt).
    rate: f64,
    /// Seconds from the first send until every client had every dumpling.
    all_secs: f64,
    /// Hub CPU ms per 1000 dumplings sent, until every client had every dumpling.
    cpu_ms_per_k: f64,
    /// What the extra received (dumplings, for the page as it counts them) and how many
    /// the hub dropped for it (lag notices).
    extra_received: u64,
    extra_lagged: u64,
}

struct Args {
    rounds: usize,
    dumplings: u64,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        rounds: 5,
        dumplings: 100_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| -> anyhow::Result<u64> {
            it.next()
                .with_context(|| format!("{name} needs a number"))?
                .parse()
                .with_context(|| format!("{name} needs a number"))
        };
        match flag.as_str() {
            "--rounds" => a.rounds = value("--rounds")?.clamp(1, 50) as usize,
            "--dumplings" => a.dumplings = value("--dumplings")?.clamp(1000, 10_000_000),
            "--help" | "-h" => {
                println!(
                    "nd-web-bench [--rounds N (5)] [--dumplings N (100000)]: the hub's fan-out \
                     rate and CPU with no extra client, one ordinary eater, one web page"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    Ok(a)
}

/// utime + stime of `pid`, seconds.
fn cpu_secs(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

async fn connect(addr: SocketAddr, hello: &str) -> anyhow::Result<Ws> {
    let (mut ws, _) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(format!("ws://{addr}/")),
    )
    .await
    .context("connect timed out")??;
    ws.send(Message::text(hello.to_owned())).await?;
    Ok(ws)
}

/// A bench dumpling (~300 bytes, as a small chef's).
fn dumpling(i: u64) -> String {
    format!(
        r#"{{"metadata":{{"chef":"BenchChef","kitchen":"bench","creation_time":{i},"driver":"packet"}},"payload":{{"seq":{i},"proto":"udp","src":"192.0.2.1:53","dst":"198.51.100.7:40000","name":"host{}.example.net","pad":"{}"}}}}"#,
        i % 1000,
        "x".repeat(120)
    )
}

/// Read bench dumplings until `n` were received or dropped for lag, or `limit`; returns
/// (received, lagged, time of the last one).
async fn read_all(ws: &mut Ws, n: u64, limit: Duration) -> (u64, u64, Instant) {
    let deadline = tokio::time::Instant::now() + limit;
    let (mut got, mut lagged, mut last) = (0u64, 0u64, Instant::now());
    while got + lagged < n {
        let Ok(Some(Ok(Message::Text(text)))) = tokio::time::timeout_at(deadline, ws.next()).await
        else {
            break;
        };
        if text.contains("\"BenchChef\"") {
            got += 1;
            last = Instant::now();
        } else if text.contains("\"HubNoticeChef\"") {
            if let Some(k) = text
                .split("\"lagged\":")
                .nth(1)
                .and_then(|s| s.trim_start().split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|s| s.parse::<u64>().ok())
            {
                lagged += k;
            }
        }
    }
    (got, lagged, last)
}

async fn page_stats(client: &Client) -> anyhow::Result<serde_json::Value> {
    Ok(client
        .execute("return window.ndView ? ndView.stats() : null", vec![])
        .await?)
}

async fn one_run(extra: Extra, n: u64, browser: Option<&Client>) -> anyhow::Result<Run> {
    let (in_port, out_port) = (free_port(), free_port());
    // Lossless for ordinary eaters: the ring and queue hold a whole burst.
    let hub = spawn_hub(
        in_port,
        out_port,
        &[
            "-f",
            "5",
            "--ring-capacity",
            "262144",
            "--eater-queue-bytes",
            "1073741824",
            "--write-timeout",
            "60",
        ],
    );
    let eaters: SocketAddr = ([127, 0, 0, 1], out_port).into();
    let mut measuring = connect(eaters, r#"{"eater_name":"bench-measure"}"#).await?;
    let mut extra_task = None;
    match extra {
        Extra::None => {}
        Extra::Eater => {
            let mut ws = connect(eaters, r#"{"eater_name":"bench-extra"}"#).await?;
            extra_task = Some(tokio::spawn(async move {
                read_all(&mut ws, n, Duration::from_secs(120)).await
            }));
        }
        Extra::Page => {
            let client = browser.context("no browser")?;
            client.goto(&format!("http://{eaters}/")).await?;
            let deadline = Instant::now() + Duration::from_secs(15);
            while page_stats(client).await?["connected"] != serde_json::json!(true) {
                if Instant::now() > deadline {
                    bail!("the page did not connect to the hub");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    let mut kitchen = connect(
        ([127, 0, 0, 1], in_port).into(),
        r#"{"kitchen_name":"bench"}"#,
    )
    .await?;
    // Let the welcome statuses pass before the window opens.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let pid = hub.child.id();
    let cpu0 = cpu_secs(pid);
    let t0 = Instant::now();
    let sender = tokio::spawn(async move {
        for i in 0..n {
            kitchen.feed(Message::text(dumpling(i))).await?;
            if i % 64 == 63 {
                kitchen.flush().await?;
            }
        }
        kitchen.flush().await?;
        Ok::<Ws, anyhow::Error>(kitchen)
    });
    let (got, lagged, last) = read_all(&mut measuring, n, Duration::from_secs(120)).await;
    let _kitchen = sender.await??;
    if got != n {
        bail!("the measuring eater got {got} of {n} dumplings ({lagged} dropped for lag)");
    }
    // The hub's CPU window closes when the extra client has everything too (the hub keeps
    // sending to a page that is behind), so its whole delivery to the extra is counted.
    let (extra_received, extra_lagged) = match extra {
        Extra::None => (0, 0),
        Extra::Eater => match extra_task {
            Some(task) => {
                let (g, l, _) = task.await?;
                (g, l)
            }
            None => (0, 0),
        },
        Extra::Page => {
            let client = browser.context("no browser")?;
            // Until the page has counted every dumpling (received or dropped for lag), or
            // makes no progress for 3 s, or 60 s.
            let (start, mut progress) = (Instant::now(), (Instant::now(), 0u64));
            let (received, lagged) = loop {
                let s = page_stats(client).await?;
                let received = s["received"].as_u64().unwrap_or(0);
                let lagged = s["lagged"].as_u64().unwrap_or(0);
                if received + lagged > progress.1 {
                    progress = (Instant::now(), received + lagged);
                }
                if received + lagged >= n
                    || progress.0.elapsed() > Duration::from_secs(3)
                    || start.elapsed() > Duration::from_secs(60)
                {
                    break (received, lagged);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            client.goto("about:blank").await?;
            (received, lagged)
        }
    };
    let all_done = Instant::now();
    let cpu1 = cpu_secs(pid);
    drop(hub);
    Ok(Run {
        rate: n as f64 / (last - t0).as_secs_f64(),
        all_secs: (all_done - t0).as_secs_f64(),
        cpu_ms_per_k: (cpu1 - cpu0) * 1000.0 / (n as f64 / 1000.0),
        extra_received,
        extra_lagged,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Headless Chromium behind chromedriver on loopback (kept for the whole run).
struct Browser {
    client: Client,
    _driver: ChildGuard,
    profile: PathBuf,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

async fn start_browser() -> anyhow::Result<Browser> {
    let (Some(chromium), Some(driver)) = (on_path("chromium"), on_path("chromedriver")) else {
        bail!("chromium or chromedriver not found (scripts/setup.sh installs them: apt-get install chromium chromium-driver)");
    };
    let port = free_port();
    let driver = ChildGuard::spawn(
        "chromedriver",
        Command::new(driver).args([format!("--port={port}"), "--allowed-ips=127.0.0.1".into()]),
    );
    if !wait_for_port(([127, 0, 0, 1], port).into(), Duration::from_secs(15)) {
        bail!("chromedriver did not listen on 127.0.0.1:{port}");
    }
    let profile = std::env::temp_dir().join(format!("nd-web-bench-{}", std::process::id()));
    std::fs::create_dir_all(&profile)?;
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": chromium,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run",
                "--disable-dev-shm-usage", format!("--user-data-dir={}", profile.display()),
                "--window-size=1280,900",
            ],
        }),
    );
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .context("WebDriver session with headless chromium")?;
    Ok(Browser {
        client,
        _driver: driver,
        profile,
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let a = args()?;
    if !bin("nd-hub").exists() {
        bail!(
            "{} not found: cargo build --release --workspace",
            bin("nd-hub").display()
        );
    }
    let browser = start_browser().await?;
    let setups = [Extra::None, Extra::Eater, Extra::Page];
    let mut runs: Vec<Vec<Run>> = vec![Vec::new(); setups.len()];
    println!(
        "nd-web-bench: {} rounds x {} dumplings (~330 bytes), one kitchen as fast as it can, \
         fresh nd-hub per run",
        a.rounds, a.dumplings
    );
    for round in 0..a.rounds {
        for (i, &extra) in setups.iter().enumerate() {
            let run = one_run(extra, a.dumplings, Some(&browser.client))
                .await
                .with_context(|| format!("round {round}, {}", extra.label()))?;
            println!(
                "  round {round} {:<24} {:>9.0} dumplings/s  all delivered in {:>5.2} s  hub {:>6.1} ms CPU/1k  extra got {} (+{} dropped for lag)",
                extra.label(),
                run.rate,
                run.all_secs,
                run.cpu_ms_per_k,
                run.extra_received,
                run.extra_lagged
            );
            runs[i].push(run);
        }
    }
    let rate: Vec<f64> = runs
        .iter()
        .map(|r| median(r.iter().map(|x| x.rate).collect()))
        .collect();
    let cpu: Vec<f64> = runs
        .iter()
        .map(|r| median(r.iter().map(|x| x.cpu_ms_per_k).collect()))
        .collect();
    println!("\nmedians over {} rounds:", a.rounds);
    println!(
        "  {:<24} {:>12} {:>8} {:>16} {:>8}",
        "setup", "dumplings/s", "vs none", "hub ms CPU/1k", "vs none"
    );
    for (i, extra) in setups.iter().enumerate() {
        println!(
            "  {:<24} {:>12.0} {:>8.2} {:>16.1} {:>8.2}",
            extra.label(),
            rate[i],
            rate[i] / rate[0],
            cpu[i],
            cpu[i] / cpu[0]
        );
    }
    let (eater_cost, page_cost) = (cpu[1] - cpu[0], cpu[2] - cpu[0]);
    println!(
        "\npage vs ordinary eater: fan-out rate {:.2}x, extra hub CPU {:.1} vs {:.1} ms/1k ({:.2}x); \
         target: the page costs no more than one eater",
        rate[2] / rate[1],
        page_cost,
        eater_cost,
        page_cost / eater_cost
    );
    Ok(())
}
