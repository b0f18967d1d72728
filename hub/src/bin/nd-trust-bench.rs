//! `nd-trust-bench`: what TLS and `--auth` cost the hub (issue 10, item 9), measured
//! against plain/no-auth baselines in the same run, repetitions interleaved, medians
//! printed. Bounded in count and time; everything on 127.0.0.1.
//!
//! 1. fan-out: one kitchen sends `--dumplings` 500-byte dumplings to `--eaters` eaters
//!    (default 100) through a plain hub and through a TLS hub (`--tls-cert`, eaters on
//!    `wss://`); delivered dumplings/s, hub CPU-microseconds per delivery, losses; ratio
//!    TLS/plain (target >= 0.7). The eaters run in this process, so on a small machine
//!    their own decryption competes with the hub: the hub-CPU ratio is the steadier figure.
//! 2. handshakes: new eaters per second (connect, upgrade, hello, welcome status, close),
//!    4 at a time, TLS (+ token) vs plain.
//! 3. identity check: (a) in process, on realistic frames: the time of the check `--auth`
//!    adds per dumpling (the principal's kitchen-name lookup and the origin tag) against
//!    the ingest parse every dumpling gets anyway (`hub::kitchen::classify`); (b) end to
//!    end, hub CPU per ingested dumpling with `--auth` (a kitchen principal) vs without.
//!    Target: under 5% of ingest time.
//!
//! Certificates are made with the `openssl` command (parts 1 and 2 are skipped without it).
//! Run: `cargo build --release --workspace --all-targets && target/release/nd-trust-bench`.

#[path = "common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use common::{free_port, proc_cpu_secs, wait_port};
use futures_util::{SinkExt, StreamExt};
use hub_link::{Link, Token, Ws};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

/// nd-trust-bench: the cost of TLS and --auth in nd-hub.
#[derive(Debug, Parser)]
#[command(name = "nd-trust-bench", about)]
struct Cli {
    /// Repetitions per measurement (interleaved; medians are printed).
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// Eaters in the fan-out cell.
    #[arg(long, default_value_t = 100)]
    eaters: usize,
    /// Dumplings the kitchen sends per fan-out run.
    #[arg(long, default_value_t = 2000)]
    dumplings: u64,
    /// New eaters per handshake run.
    #[arg(long, default_value_t = 300)]
    handshakes: usize,
    /// Dumplings per ingest run (identity check, end to end).
    #[arg(long, default_value_t = 50_000)]
    ingest: u64,
    /// The `nd-hub` to measure (default: the one next to this binary).
    #[arg(long, value_name = "PATH")]
    hub: Option<PathBuf>,
}

const SIZE: usize = 500;
const KITCHEN: &str = "bench-kitchen";
const T: Duration = Duration::from_secs(60);

/// A 500-byte dumpling (`seq` in the payload).
fn dumpling(chef: &str, seq: u64) -> String {
    let head = format!(
        "{{\"metadata\": {{\"chef\": \"{chef}\", \"kitchen\": \"{KITCHEN}\", \"creation_time\": 1795739862.5, \"driver\": \"packet\"}}, \"payload\": {{\"seq\": {seq:>10}, \"pad\": \""
    );
    let pad = SIZE.saturating_sub(head.len() + 3);
    format!("{head}{}\"}}}}", "x".repeat(pad))
}

struct HubProcess {
    child: Child,
    kitchens: SocketAddr,
    eaters: SocketAddr,
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        // Only the child this bench started, by its handle.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl HubProcess {
    fn cpu_secs(&self) -> f64 {
        proc_cpu_secs(self.child.id())
    }
}

fn start_hub(exe: &Path, extra: &[String]) -> anyhow::Result<HubProcess> {
    let (i, o) = (free_port()?, free_port()?);
    let child = Command::new(exe)
        .args([
            "-a",
            "127.0.0.1",
            "-i",
            &i.to_string(),
            "-o",
            &o.to_string(),
        ])
        // Lossless bursts: the ring and the per-eater byte cap hold a whole run.
        .args(["-f", "60", "--ring-capacity", "262144"])
        .args(["--eater-queue-bytes", "1073741824", "--write-timeout", "60"])
        .args(extra)
        .env("RUST_LOG", "warn")
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

/// A hub flavour: its extra flags, URI scheme and client link.
struct Mode {
    name: &'static str,
    args: Vec<String>,
    scheme: &'static str,
    eater: Link,
    kitchen: Link,
}

fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .write_buffer_size(64 * 1024)
        .read_buffer_size(16 * 1024)
}

async fn join(link: &Link, uri: &str, hello: String) -> anyhow::Result<Ws> {
    let (mut ws, _) = tokio::time::timeout(T, link.connect(uri, Some(ws_config())))
        .await
        .context("connect timed out")??;
    ws.send(Message::text(hello)).await?;
    Ok(ws)
}

async fn join_eater(link: &Link, uri: &str, i: usize) -> anyhow::Result<Ws> {
    let mut ws = join(link, uri, format!("{{\"eater_name\": \"bench{i}\"}}")).await?;
    // The welcome status: the eater is registered once it arrives.
    match tokio::time::timeout(T, ws.next()).await {
        Ok(Some(Ok(_))) => Ok(ws),
        other => bail!("no welcome status: {other:?}"),
    }
}

/// Read until the END dumpling; (dumplings received, dumplings the hub said were dropped).
async fn eat(mut ws: Ws) -> (u64, u64) {
    let (mut got, mut lagged) = (0u64, 0u64);
    while let Ok(Some(Ok(message))) = tokio::time::timeout(T, ws.next()).await {
        let Ok(text) = message.to_text() else {
            continue;
        };
        if text.contains("HubNoticeChef") {
            let notice: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
            lagged += notice["payload"]["lagged"].as_u64().unwrap_or(0);
        } else if text.contains("\"chef\": \"EndChef\"") {
            break;
        } else if text.contains("\"chef\": \"BenchChef\"") {
            got += 1;
        }
    }
    (got, lagged)
}

struct FanOut {
    rate: f64,
    hub_us_per_delivery: f64,
    lost: u64,
}

async fn fan_out(exe: &Path, mode: &Mode, eaters: usize, n: u64) -> anyhow::Result<FanOut> {
    let hub = start_hub(exe, &mode.args)?;
    let e_uri = format!("{}://127.0.0.1:{}", mode.scheme, hub.eaters.port());
    let k_uri = format!("{}://127.0.0.1:{}", mode.scheme, hub.kitchens.port());
    let mut tasks = Vec::new();
    for i in 0..eaters {
        let ws = join_eater(&mode.eater, &e_uri, i).await?;
        tasks.push(tokio::spawn(eat(ws)));
    }
    let mut kitchen = join(
        &mode.kitchen,
        &k_uri,
        format!("{{\"kitchen_name\": \"{KITCHEN}\"}}"),
    )
    .await?;
    let frames: Vec<String> = (0..n).map(|i| dumpling("BenchChef", i)).collect();
    let cpu0 = hub.cpu_secs();
    let start = Instant::now();
    for f in frames {
        kitchen.feed(Message::text(f)).await?;
    }
    kitchen.send(Message::text(dumpling("EndChef", n))).await?;
    let (mut got, mut lagged) = (0, 0);
    for t in tasks {
        let (g, l) = t.await?;
        got += g;
        lagged += l;
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = hub.cpu_secs() - cpu0;
    let expected = n * eaters as u64;
    Ok(FanOut {
        rate: got as f64 / secs,
        hub_us_per_delivery: cpu * 1e6 / got.max(1) as f64,
        lost: expected.saturating_sub(got).max(lagged),
    })
}

/// New eaters per second (4 at a time) and hub CPU-ms per handshake.
async fn handshakes(exe: &Path, mode: &Mode, count: usize) -> anyhow::Result<(f64, f64)> {
    let hub = start_hub(exe, &mode.args)?;
    let uri = format!("{}://127.0.0.1:{}", mode.scheme, hub.eaters.port());
    let link = Arc::new(mode.eater.clone());
    let cpu0 = hub.cpu_secs();
    let start = Instant::now();
    let mut workers = Vec::new();
    for w in 0..4 {
        let (link, uri) = (link.clone(), uri.clone());
        workers.push(tokio::spawn(async move {
            for i in (w..count).step_by(4) {
                let mut ws = join_eater(&link, &uri, i).await?;
                let _ = ws.close(None).await;
            }
            Ok::<(), anyhow::Error>(())
        }));
    }
    for w in workers {
        w.await??;
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = hub.cpu_secs() - cpu0;
    Ok((count as f64 / secs, cpu * 1e3 / count as f64))
}

/// Hub CPU-microseconds per ingested dumpling (one kitchen, one eater that waits for END).
async fn ingest(exe: &Path, mode: &Mode, n: u64) -> anyhow::Result<f64> {
    let hub = start_hub(exe, &mode.args)?;
    let e_uri = format!("ws://127.0.0.1:{}", hub.eaters.port());
    let k_uri = format!("ws://127.0.0.1:{}", hub.kitchens.port());
    let eater = tokio::spawn(eat(join_eater(&mode.eater, &e_uri, 0).await?));
    let mut kitchen = join(
        &mode.kitchen,
        &k_uri,
        format!("{{\"kitchen_name\": \"{KITCHEN}\"}}"),
    )
    .await?;
    let frames: Vec<String> = (0..n).map(|i| dumpling("BenchChef", i)).collect();
    let cpu0 = hub.cpu_secs();
    for f in frames {
        kitchen.feed(Message::text(f)).await?;
    }
    kitchen.send(Message::text(dumpling("EndChef", n))).await?;
    let (got, _) = eater.await?;
    if got != n {
        bail!("ingest run lost dumplings: {got} of {n}");
    }
    Ok((hub.cpu_secs() - cpu0) * 1e6 / n as f64)
}

/// In process: ns per frame of the ingest parse, and of the check `--auth` adds.
fn check_cost(frames: &[Message]) -> (f64, f64) {
    let (token, hash) = hub::auth::new_token();
    let text = format!(
        "[[principal]]\nname = \"k\"\nrole = \"kitchen\"\ntoken_sha256 = \"{hash}\"\nkitchens = [\"{KITCHEN}\", \"sensor-a\", \"sensor-b\", \"test_kitchen\"]\n"
    );
    let table = hub::auth::Table::parse(&text, Path::new("bench.toml")).expect("bench table");
    let principal = table.lookup(&token).expect("the bench principal");
    let rounds = 200_000 / frames.len().max(1) + 1;
    let mut parsed = Vec::with_capacity(frames.len());
    let start = Instant::now();
    for _ in 0..rounds {
        parsed.clear();
        for f in frames {
            parsed.push(std::hint::black_box(hub::kitchen::classify(f)));
        }
    }
    let parse_ns = start.elapsed().as_nanos() as f64 / (rounds * frames.len()) as f64;
    let start = Instant::now();
    let mut allowed = 0u64;
    for _ in 0..rounds {
        for action in &parsed {
            if let hub::kitchen::Action::Forward { chef, kitchen } = action {
                // What ingest does under --auth: the name check and the origin tag.
                if principal.may_send_as(kitchen.as_deref()) {
                    allowed += 1;
                }
                let origin = Arc::new(hub::state::Origin::Dumpling {
                    chef: chef.as_str().into(),
                    kitchen: kitchen.as_deref().map(Into::into),
                });
                std::hint::black_box(origin);
            }
        }
    }
    std::hint::black_box(allowed);
    let check_ns = start.elapsed().as_nanos() as f64 / (rounds * frames.len()) as f64;
    (parse_ns, check_ns)
}

/// Realistic frames: the replay corpus's dumplings if present, else 500-byte ones.
fn realistic_frames() -> Vec<Message> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let path = root.join("tests/data/original/pcap_replay_output.jsonl");
    let mut frames: Vec<Message> = std::fs::read_to_string(&path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| Message::text(l.to_owned()))
        .collect();
    frames.extend((0..16).map(|i| Message::text(dumpling("BenchChef", i))));
    frames
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    v[v.len() / 2]
}

fn openssl_certs(dir: &Path) -> anyhow::Result<bool> {
    if Command::new("openssl").arg("version").output().is_err() {
        return Ok(false);
    }
    let script = "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
          -subj '/CN=bench CA' -keyout ca.key -out ca.pem
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj '/CN=hub' \
          -keyout hub.key -out hub.csr
        printf 'subjectAltName=IP:127.0.0.1\\n' > san.ext
        openssl x509 -req -in hub.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
          -extfile san.ext -out hub.pem";
    let out = Command::new("sh")
        .args(["-ec", script])
        .current_dir(dir)
        .output()?;
    if !out.status.success() {
        bail!("openssl: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(true)
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let exe = match &cli.hub {
        Some(p) => p.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("no bin dir")?
            .join("nd-hub"),
    };
    let dir = std::env::temp_dir().join(format!("nd-trust-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let (token, hash) = hub::auth::new_token();
    let (ktoken, khash) = hub::auth::new_token();
    std::fs::write(
        dir.join("auth.toml"),
        format!(
            "[[principal]]\nname = \"reader\"\nrole = \"eater\"\ntoken_sha256 = \"{hash}\"\n\n\
             [[principal]]\nname = \"k\"\nrole = \"kitchen\"\ntoken_sha256 = \"{khash}\"\nkitchens = [\"{KITCHEN}\"]\n"
        ),
    )?;
    let eater_token = Some(Token::new(&token, "bench")?);
    let kitchen_token = Some(Token::new(&ktoken, "bench")?);
    let auth = vec!["--auth".to_owned(), s(&dir.join("auth.toml"))];
    println!(
        "nd-trust-bench: hub {} | reps {} (interleaved, medians) | {} cores",
        exe.display(),
        cli.reps,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    let plain = Mode {
        name: "plain",
        args: vec![],
        scheme: "ws",
        eater: Link::plain(),
        kitchen: Link::plain(),
    };
    let tls_modes = if openssl_certs(&dir)? {
        let ca = dir.join("ca.pem");
        let tls_args = vec![
            "--tls-cert".to_owned(),
            s(&dir.join("hub.pem")),
            "--tls-key".to_owned(),
            s(&dir.join("hub.key")),
        ];
        let tls = Mode {
            name: "tls",
            args: tls_args.clone(),
            scheme: "wss",
            eater: Link::new(Some(&ca), None, None)?,
            kitchen: Link::new(Some(&ca), None, None)?,
        };
        let tls_auth = Mode {
            name: "tls+auth",
            args: [tls_args, auth.clone()].concat(),
            scheme: "wss",
            eater: Link::new(Some(&ca), None, eater_token.clone())?,
            kitchen: Link::new(Some(&ca), None, kitchen_token.clone())?,
        };
        Some((tls, tls_auth))
    } else {
        println!("SKIP fan-out and handshakes: the openssl command is missing");
        None
    };

    if let Some((tls, tls_auth)) = &tls_modes {
        println!(
            "\n1. fan-out: 1 kitchen -> {} eaters, {} dumplings of {SIZE} B per run",
            cli.eaters, cli.dumplings
        );
        let mut rows: Vec<(&str, Vec<FanOut>)> = vec![
            (plain.name, vec![]),
            (tls.name, vec![]),
            (tls_auth.name, vec![]),
        ];
        for _ in 0..cli.reps {
            for (i, mode) in [&plain, tls, tls_auth].into_iter().enumerate() {
                rows[i]
                    .1
                    .push(fan_out(&exe, mode, cli.eaters, cli.dumplings).await?);
            }
        }
        println!(
            "   {:<9} {:>16} {:>18} {:>7}",
            "mode", "deliveries/s", "hub us/delivery", "lost"
        );
        let meds: Vec<(f64, f64)> = rows
            .iter()
            .map(|(name, runs)| {
                let rate = median(runs.iter().map(|r| r.rate).collect());
                let cpu = median(runs.iter().map(|r| r.hub_us_per_delivery).collect());
                let lost: u64 = runs.iter().map(|r| r.lost).sum();
                println!("   {name:<9} {rate:>16.0} {cpu:>18.3} {lost:>7}");
                (rate, cpu)
            })
            .collect();
        for (i, name) in [(1, "tls"), (2, "tls+auth")] {
            println!(
                "   {name} / plain: rate x{:.2} (target >= 0.7); hub deliveries per CPU-second x{:.2}",
                meds[i].0 / meds[0].0,
                meds[0].1 / meds[i].1
            );
        }

        println!(
            "\n2. handshakes: {} new eaters per run, 4 at a time (connect, upgrade, hello, welcome, close)",
            cli.handshakes
        );
        let mut hs: Vec<(&str, Vec<(f64, f64)>)> = vec![
            (plain.name, vec![]),
            (tls.name, vec![]),
            (tls_auth.name, vec![]),
        ];
        for _ in 0..cli.reps {
            for (i, mode) in [&plain, tls, tls_auth].into_iter().enumerate() {
                hs[i].1.push(handshakes(&exe, mode, cli.handshakes).await?);
            }
        }
        let base = median(hs[0].1.iter().map(|r| r.0).collect());
        for (name, runs) in &hs {
            let rate = median(runs.iter().map(|r| r.0).collect());
            let cpu = median(runs.iter().map(|r| r.1).collect());
            println!(
                "   {name:<9} {rate:>8.0} eaters/s   hub {cpu:.3} CPU-ms each   x{:.2} of plain",
                rate / base
            );
        }
    }

    println!("\n3. identity check on ingest");
    let frames = realistic_frames();
    let (parse_ns, check_ns) = check_cost(&frames);
    println!(
        "   (a) in process, {} realistic frames: ingest parse {parse_ns:.0} ns/frame, --auth check + origin tag {check_ns:.1} ns/frame = {:.1}% (target < 5%)",
        frames.len(),
        100.0 * check_ns / parse_ns
    );
    let open = Mode {
        name: "no auth",
        args: vec![],
        scheme: "ws",
        eater: Link::plain(),
        kitchen: Link::plain(),
    };
    let authed = Mode {
        name: "auth",
        args: auth,
        scheme: "ws",
        eater: Link::plain().with_token(eater_token),
        kitchen: Link::plain().with_token(kitchen_token),
    };
    let (mut off, mut on) = (Vec::new(), Vec::new());
    for _ in 0..cli.reps {
        off.push(ingest(&exe, &open, cli.ingest).await?);
        on.push(ingest(&exe, &authed, cli.ingest).await?);
    }
    let (off, on) = (median(off), median(on));
    println!(
        "   (b) end to end, {} dumplings, 1 eater: hub {off:.2} CPU-us/dumpling {}, {on:.2} {} ({:+.1}%)",
        cli.ingest,
        open.name,
        authed.name,
        100.0 * (on - off) / off
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
