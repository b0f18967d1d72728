//! `capture-bench`: throughput benchmarks of the capture crate, each beside a baseline
//! measured in the same run. Run it with `--release`:
//!
//! ```text
//! cargo run --release -p capture --bin capture-bench -- [--packets 2000000] [--rounds 5]
//!     [--corpus DIR] [--skip-file] [--skip-live] [--live-secs 1]
//!     [--rates 50000,100000,200000,300000,400000,600000,800000] [--udp-sender]
//!     [--buffer-kib K]   # kernel capture buffer for both tools (default: libpcap's 2 MiB)
//! ```
//!
//! (a) File reading: builds `target/capture-bench/big.pcap` by concatenating the Ethernet
//!     legacy pcaps of the corpus (frames of at most 1518 bytes, as `mergecap -a` plus
//!     `tcpdump 'len <= 1518'` would), repeated up to `--packets`. Then, in alternating
//!     order for `--rounds` rounds after one warm-up, reads it with [`capture::FileReader`]
//!     and with the `pcap` crate's `Capture::from_file` (libpcap), and prints the median
//!     time, packets/s and MB/s of each and the ratio.
//! (b) Live capture (root only): two network namespaces of its own joined by a veth pair
//!     (10.123.0.1/30 and 10.123.0.2/30). For each offered rate, `capture-probe send-raw`
//!     paces Ethernet/IPv4/UDP frames (64-byte payload) from the second namespace to
//!     10.123.0.1 for `--live-secs` (`--udp-sender`: through a UDP socket instead, which
//!     tops out lower), while either
//!     `capture-probe capture` (our [`capture::LiveCapture`]) or `tcpdump -w /dev/null`
//!     captures on the first namespace's veth; prints what each captured and dropped, and
//!     the highest rate each took without loss.

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use capture::FileReader;

struct Opts {
    packets: u64,
    rounds: usize,
    corpus: PathBuf,
    skip_file: bool,
    skip_live: bool,
    live_secs: f64,
    rates: Vec<u64>,
    udp_sender: bool,
    buffer_kib: Option<u32>,
}

fn parse_opts() -> Result<Opts> {
    let ws = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut o = Opts {
        packets: 2_000_000,
        rounds: 5,
        corpus: std::env::var_os("ND_SHARED_PCAPS")
            .map(PathBuf::from)
            .unwrap_or_else(|| ws.join("../shared/pcaps")),
        skip_file: false,
        skip_live: false,
        live_secs: 1.0,
        rates: vec![50_000, 100_000, 200_000, 300_000, 400_000, 600_000, 800_000],
        udp_sender: false,
        buffer_kib: None,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let val = |i: usize| {
            args.get(i + 1)
                .cloned()
                .with_context(|| format!("{} needs a value", args[i]))
        };
        match args[i].as_str() {
            "--packets" => o.packets = val(i)?.parse().context("--packets")?,
            "--rounds" => o.rounds = val(i)?.parse().context("--rounds")?,
            "--corpus" => o.corpus = PathBuf::from(val(i)?),
            "--buffer-kib" => o.buffer_kib = Some(val(i)?.parse().context("--buffer-kib")?),
            "--live-secs" => o.live_secs = val(i)?.parse().context("--live-secs")?,
            "--rates" => {
                o.rates = val(i)?
                    .split(',')
                    .map(|r| r.trim().parse().context("--rates"))
                    .collect::<Result<_>>()?
            }
            "--skip-file" => {
                o.skip_file = true;
                i -= 1;
            }
            "--udp-sender" => {
                o.udp_sender = true;
                i -= 1;
            }
            "--skip-live" => {
                o.skip_live = true;
                i -= 1;
            }
            other => bail!("unknown argument {other:?}"),
        }
        i += 2;
    }
    o.rounds = o.rounds.clamp(1, 50);
    o.packets = o.packets.clamp(1_000, 20_000_000);
    o.live_secs = o.live_secs.clamp(0.1, 10.0);
    Ok(o)
}

fn main() -> Result<()> {
    let o = parse_opts()?;
    if !o.skip_file {
        file_bench(&o)?;
    }
    if !o.skip_live {
        live_bench(&o)?;
    }
    Ok(())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

// ------------------------------------------------------------------------------------
// (a) file reading

/// Builds the benchmark file (or reuses it when it already holds `packets` packets).
fn build_big_file(o: &Opts) -> Result<(PathBuf, u64)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/capture-bench");
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let path = dir.join(format!("big-{}.pcap", o.packets));
    if let Ok(mut r) = FileReader::open(&path) {
        let mut n = 0u64;
        while let Ok(Some(_)) = r.next_packet() {
            n += 1;
        }
        if n == o.packets {
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            return Ok((path, size));
        }
    }
    let manifest = std::fs::read_to_string(o.corpus.join("MANIFEST.tsv"))
        .with_context(|| format!("read {}/MANIFEST.tsv", o.corpus.display()))?;
    // Base: every Ethernet legacy pcap, frames <= 1518 bytes, in manifest order.
    let mut base: Vec<(u64, u32, Vec<u8>)> = Vec::new();
    let mut files = 0;
    for line in manifest.lines().skip(1) {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() < 8 || f[5] != "ether (DLT 1)" || !(f[6] == "pcap" || f[6] == "nsecpcap") {
            continue;
        }
        let Ok(mut r) = FileReader::open(&o.corpus.join(f[0])) else {
            continue;
        };
        files += 1;
        // A damaged file contributes its packets before the damage.
        while let Ok(Some(p)) = r.next_packet() {
            if p.original_len <= 1518 && p.data.len() <= 1518 {
                base.push((p.timestamp_ns, p.original_len, p.data.to_vec()));
            }
        }
    }
    if base.is_empty() {
        bail!("no Ethernet pcap packets found in {}", o.corpus.display());
    }
    let tmp = path.with_extension("tmp");
    let mut w = BufWriter::with_capacity(
        1 << 20,
        std::fs::File::create(&tmp).with_context(|| format!("create {}", tmp.display()))?,
    );
    w.write_all(&0xa1b2_c3d4u32.to_le_bytes())?;
    w.write_all(&2u16.to_le_bytes())?;
    w.write_all(&4u16.to_le_bytes())?;
    w.write_all(&0i32.to_le_bytes())?;
    w.write_all(&0u32.to_le_bytes())?;
    w.write_all(&262_144u32.to_le_bytes())?;
    w.write_all(&1u32.to_le_bytes())?;
    let mut written = 0u64;
    'outer: loop {
        for (ts, orig, data) in &base {
            if written == o.packets {
                break 'outer;
            }
            let sec = (ts / 1_000_000_000) as u32;
            let usec = ((ts % 1_000_000_000) / 1_000) as u32;
            for x in [sec, usec, data.len() as u32, *orig] {
                w.write_all(&x.to_le_bytes())?;
            }
            w.write_all(data)?;
            written += 1;
        }
    }
    w.flush()?;
    drop(w);
    std::fs::rename(&tmp, &path)?;
    let size = std::fs::metadata(&path)?.len();
    println!(
        "built {} from {files} Ethernet pcaps: base {} packets (<= 1518 B), repeated to {written} \
         packets, {:.1} MB",
        path.display(),
        base.len(),
        size as f64 / 1e6
    );
    Ok((path, size))
}

/// CPU time this thread has spent running, in ns (first field of
/// `/proc/thread-self/schedstat`); 0 if unavailable.
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

fn read_ours(path: &Path) -> Result<(u64, u64)> {
    let mut r = FileReader::open(path)?;
    let (mut n, mut bytes) = (0u64, 0u64);
    while let Some(p) = r.next_packet()? {
        n += 1;
        bytes += p.data.len() as u64 + u64::from(p.data.first().copied().unwrap_or(0));
    }
    Ok((n, bytes))
}

fn read_libpcap(path: &Path) -> Result<(u64, u64)> {
    let mut c = pcap::Capture::from_file(path).context("pcap::Capture::from_file")?;
    let (mut n, mut bytes) = (0u64, 0u64);
    loop {
        match c.next_packet() {
            Ok(p) => {
                n += 1;
                bytes += p.data.len() as u64 + u64::from(p.data.first().copied().unwrap_or(0));
            }
            Err(pcap::Error::NoMorePackets) => break,
            Err(e) => bail!("libpcap: {e}"),
        }
    }
    Ok((n, bytes))
}

fn file_bench(o: &Opts) -> Result<()> {
    println!("== (a) file read throughput ==");
    let (path, size) = build_big_file(o)?;
    // Warm-up (page cache) and cross-check: both readers see the same packets.
    let a = read_ours(&path)?;
    let b = read_libpcap(&path)?;
    if a != b {
        bail!("readers disagree: FileReader {a:?}, libpcap {b:?}");
    }
    let packets = a.0;
    // Wall time and this thread's CPU time (from /proc/thread-self/schedstat, in ns) per
    // run: on a shared, loaded machine the CPU time is the steadier of the two.
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    let (mut ours_cpu, mut theirs_cpu) = (Vec::new(), Vec::new());
    for round in 0..o.rounds {
        let time = |f: fn(&Path) -> Result<(u64, u64)>| -> Result<(f64, f64)> {
            let c0 = thread_cpu_ns();
            let t = Instant::now();
            let r = f(&path)?;
            let s = t.elapsed().as_secs_f64();
            let cpu = thread_cpu_ns().saturating_sub(c0) as f64 / 1e9;
            if r != a {
                bail!("round {round}: result changed");
            }
            Ok((s, cpu))
        };
        let (o1, t1) = if round % 2 == 0 {
            let x = time(read_ours)?;
            (x, time(read_libpcap)?)
        } else {
            let y = time(read_libpcap)?;
            (time(read_ours)?, y)
        };
        ours.push(o1.0);
        ours_cpu.push(o1.1);
        theirs.push(t1.0);
        theirs_cpu.push(t1.1);
    }
    let (mo, ml) = (median(&mut ours), median(&mut theirs));
    let (co, cl) = (median(&mut ours_cpu), median(&mut theirs_cpu));
    let show = |name: &str, s: f64, cpu: f64| {
        println!(
            "  {name:<34} wall {:>7.1} ms  {:>6.2} Mpps  {:>6.0} MB/s | CPU {:>7.1} ms  {:>6.2} Mpps/CPU-s",
            s * 1e3,
            packets as f64 / s / 1e6,
            size as f64 / s / 1e6,
            cpu * 1e3,
            packets as f64 / cpu.max(1e-9) / 1e6,
        )
    };
    println!(
        "  file: {} packets, {:.1} MB, median of {} rounds (after 1 warm-up), alternating order",
        packets,
        size as f64 / 1e6,
        o.rounds
    );
    show("capture::FileReader (pcap-parser)", mo, co);
    show("pcap::Capture::from_file (libpcap)", ml, cl);
    println!(
        "  ratio (libpcap / FileReader): wall {:.2}x, CPU {:.2}x",
        ml / mo,
        cl / co.max(1e-9)
    );
    Ok(())
}

// ------------------------------------------------------------------------------------
// (b) live capture on a veth pair in namespaces of our own

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip").args(args).output().context("run ip")?;
    if !out.status.success() {
        bail!(
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The two namespaces; deleted on drop (which removes the veth pair too).
struct Namespaces {
    a: String,
    b: String,
}

impl Namespaces {
    fn create() -> Result<Namespaces> {
        let base = format!("nd-bench-{}", std::process::id());
        let ns = Namespaces {
            a: format!("{base}-a"),
            b: format!("{base}-b"),
        };
        ip(&["netns", "add", &ns.a])?;
        ip(&["netns", "add", &ns.b])?;
        let (a, b) = (ns.a.as_str(), ns.b.as_str());
        ip(&[
            "-n", a, "link", "add", "veth0", "type", "veth", "peer", "name", "veth1", "netns", b,
        ])?;
        ip(&["-n", a, "addr", "add", "10.123.0.1/30", "dev", "veth0"])?;
        ip(&["-n", b, "addr", "add", "10.123.0.2/30", "dev", "veth1"])?;
        for (n, d) in [(a, "veth0"), (a, "lo"), (b, "veth1"), (b, "lo")] {
            ip(&["-n", n, "link", "set", d, "up"])?;
        }
        Ok(ns)
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for n in [&self.a, &self.b] {
            let _ = ip(&["netns", "del", n]);
        }
    }
}

/// A child process killed (by its PID) if still running when dropped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

fn wait_with_deadline(child: &mut Child, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    while matches!(child.try_wait(), Ok(None)) {
        if Instant::now() >= deadline {
            let _ = child.kill();
            bail!("child {} did not end within {limit:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn field(text: &str, key: &str) -> Option<u64> {
    text.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
}

/// Number before `label` in tcpdump's closing statistics ("123 packets captured").
fn tcpdump_stat(text: &str, label: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.contains(label))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// CPU time (user + system) of a process in milliseconds, from `/proc/PID/stat`
/// (USER_HZ = 100 ticks per second on Linux).
fn cpu_ms_of(pid: &str) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (ticks(11) + ticks(12)) * 10
}

struct Round {
    cpu_ms: u64,
    sent: u64,
    achieved_pps: f64,
    captured: u64,
    kernel_dropped: u64,
    queue_dropped: u64,
}

/// Wait after the sender is done before stopping the capture tool.
const SETTLE: Duration = Duration::from_millis(1500);

const FILTER: &str = "udp and dst port 40123 and dst host 10.123.0.1";

fn mac_of(ns: &str, dev: &str) -> Result<String> {
    let out = Command::new("ip")
        .args(["-n", ns, "-o", "link", "show", dev])
        .output()
        .context("ip link show")?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .map(str::to_owned)
        .with_context(|| format!("no MAC address for {dev} in {text:?}"))
}

fn send_burst(ns: &Namespaces, probe: &str, rate: u64, secs: f64, raw: bool) -> Result<(u64, f64)> {
    let count = ((rate as f64) * secs) as u64;
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &ns.b, probe]);
    if raw {
        cmd.args(["send-raw", "--iface", "veth1", "--src-ip", "10.123.0.2"])
            .args(["--dst-mac", &mac_of(&ns.a, "veth0")?]);
    } else {
        cmd.args(["send", "--warmup-port", "40124"]);
    }
    let out = cmd
        .args(["--to", "10.123.0.1:40123", "--size", "64"])
        .args(["--count", &count.to_string(), "--pps", &rate.to_string()])
        .output()
        .context("run sender")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let sent = field(&text, "sent").with_context(|| {
        format!(
            "sender said {text:?} {:?}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    let ms: f64 = text
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("elapsed_ms="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    Ok((sent, sent as f64 / (ms / 1e3).max(1e-9)))
}

fn round_ours(ns: &Namespaces, probe: &str, rate: u64, o: &Opts) -> Result<Round> {
    let mut child = Guard(
        Command::new("ip")
            .args(["netns", "exec", &ns.a, probe, "capture", "--iface", "veth0"])
            .args(["--filter", FILTER, "--until-stdin-eof", "--count-only"])
            .args(["--timeout-ms", "60000"])
            .args(
                o.buffer_kib
                    .map(|k| vec!["--buffer-size".to_owned(), (k * 1024).to_string()])
                    .unwrap_or_default(),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("start capture-probe")?,
    );
    let mut stdout = BufReader::new(child.0.stdout.take().context("stdout")?);
    let mut line = String::new();
    stdout.read_line(&mut line)?;
    if line.trim() != "READY" {
        bail!("capture-probe: {line}");
    }
    let (sent, achieved) = send_burst(ns, probe, rate, o.live_secs, !o.udp_sender)?;
    // Longer than tcpdump's 1 s read timeout, so its last kernel block is delivered.
    std::thread::sleep(SETTLE);
    drop(child.0.stdin.take()); // EOF: stop
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest)?;
    wait_with_deadline(&mut child.0, Duration::from_secs(10))?;
    Ok(Round {
        sent,
        achieved_pps: achieved,
        captured: field(&rest, "captured").with_context(|| format!("probe said {rest:?}"))?,
        kernel_dropped: field(&rest, "kernel_dropped").unwrap_or(0),
        queue_dropped: field(&rest, "queue_dropped").unwrap_or(0),
        cpu_ms: field(&rest, "cpu_ms").unwrap_or(0),
    })
}

fn round_tcpdump(ns: &Namespaces, probe: &str, rate: u64, o: &Opts) -> Result<Round> {
    let mut child = Guard(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns.a,
                "tcpdump",
                "-n",
                "-i",
                "veth0",
                "-w",
                "/dev/null",
            ])
            .arg(FILTER)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("start tcpdump")?,
    );
    let mut stderr = BufReader::new(child.0.stderr.take().context("stderr")?);
    let mut line = String::new();
    stderr.read_line(&mut line)?;
    if !line.contains("listening on") {
        bail!("tcpdump: {line}");
    }
    let (sent, achieved) = send_burst(ns, probe, rate, o.live_secs, !o.udp_sender)?;
    // Longer than tcpdump's 1 s read timeout, so its last kernel block is delivered.
    std::thread::sleep(SETTLE);
    // `ip netns exec` execs tcpdump, so this PID is tcpdump's own.
    let pid = child.0.id().to_string();
    let cpu_ms = cpu_ms_of(&pid);
    Command::new("kill").args(["-INT", &pid]).status()?;
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest)?;
    wait_with_deadline(&mut child.0, Duration::from_secs(10))?;
    Ok(Round {
        sent,
        achieved_pps: achieved,
        captured: tcpdump_stat(&rest, "packets captured")
            .with_context(|| format!("tcpdump said {rest:?}"))?,
        kernel_dropped: tcpdump_stat(&rest, "dropped by kernel").unwrap_or(0),
        queue_dropped: 0,
        cpu_ms,
    })
}

fn live_bench(o: &Opts) -> Result<()> {
    println!("== (b) live capture on a veth pair in namespaces of our own ==");
    if !is_root() {
        println!(
            "  SKIPPED: needs root (creating network namespaces and opening packet sockets); \
             run it with sudo"
        );
        return Ok(());
    }
    if Command::new("tcpdump").arg("--version").output().is_err() {
        println!("  SKIPPED: tcpdump not found (it is the baseline)");
        return Ok(());
    }
    let probe_path = std::env::current_exe()?.with_file_name("capture-probe");
    if !probe_path.is_file() {
        bail!(
            "{} not found: build it with `cargo build --release -p capture`",
            probe_path.display()
        );
    }
    let probe = probe_path.to_string_lossy().into_owned();
    let ns = Namespaces::create()?;
    println!(
        "  64-byte UDP payloads ({} sender), {} s per rate, filter {FILTER:?}; loss = sent - \
         captured",
        if o.udp_sender {
            "UDP socket"
        } else {
            "raw frames via pcap_inject"
        },
        o.live_secs
    );
    println!(
        "  {:>9} {:>10} | {:<34} | {:<34}",
        "offered", "achieved", "capture::LiveCapture", "tcpdump -w /dev/null"
    );
    // Per tool: the highest achieved rate of a loss-free round, and the lowest offered
    // rate with a loss.
    let mut best: [Option<f64>; 2] = [None, None];
    let mut first_loss: [Option<u64>; 2] = [None, None];
    let mut cpu_us_per_pkt: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for &rate in &o.rates {
        let ours = round_ours(&ns, &probe, rate, o)?;
        let theirs = round_tcpdump(&ns, &probe, rate, o)?;
        let cell = |r: &Round| {
            format!(
                "loss {:>6} (k {} q {}) cpu {:>4} ms",
                r.sent.saturating_sub(r.captured),
                r.kernel_dropped,
                r.queue_dropped,
                r.cpu_ms
            )
        };
        println!(
            "  {:>9} {:>10.0} | {:<34} | {:<34}",
            rate,
            (ours.achieved_pps + theirs.achieved_pps) / 2.0,
            cell(&ours),
            cell(&theirs)
        );
        for (i, r) in [&ours, &theirs].into_iter().enumerate() {
            if r.captured >= r.sent && r.sent > 0 {
                let a = r.achieved_pps.min(rate as f64);
                best[i] = Some(best[i].map_or(a, |b: f64| b.max(a)));
            } else if first_loss[i].is_none() {
                first_loss[i] = Some(rate);
            }
            if r.captured > 0 {
                cpu_us_per_pkt[i].push(r.cpu_ms as f64 * 1e3 / r.captured as f64);
            }
        }
    }
    for (i, name) in ["capture::LiveCapture", "tcpdump -w /dev/null"]
        .iter()
        .enumerate()
    {
        let verdict = match (first_loss[i], best[i]) {
            (None, Some(b)) => format!(
                "no loss in any round; highest rate reached {b:.0} pps (the sender's limit, \
                 not the capture's)"
            ),
            (Some(l), Some(b)) => {
                format!("highest loss-free rate {b:.0} pps; first loss at offered {l} pps")
            }
            (Some(l), None) => format!("lost packets already at offered {l} pps"),
            (None, None) => "no rounds".to_owned(),
        };
        let cpu = if cpu_us_per_pkt[i].is_empty() {
            "n/a".to_owned()
        } else {
            format!("{:.2}", median(&mut cpu_us_per_pkt[i]))
        };
        println!("  {name}: {verdict}; median CPU {cpu} us/packet");
    }
    Ok(())
}
