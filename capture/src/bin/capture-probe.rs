//! `capture-probe`: a small helper for the capture crate's live tests and benchmark.
//!
//! It runs inside network namespaces (through `ip netns exec`), where the test process
//! itself cannot be:
//!
//! * `capture-probe send --to IP:PORT --count N [--size B] [--pps R] [--warmup-port P]`
//!   sends `N` UDP datagrams, each carrying the marker `NDSEQ` and a sequence number,
//!   optionally paced at `R` packets per second. With `--warmup-port` it first sends one
//!   datagram to that port and waits 300 ms (so ARP is resolved before the counted burst).
//!   Prints `sent=N elapsed_ms=T`.
//! * `capture-probe send-raw --iface DEV --src-ip A --dst-mac MAC --to IP:PORT --count N
//!   [--size B] [--pps R]` sends the same datagrams as ready-made Ethernet/IPv4/UDP frames
//!   through libpcap's `pcap_inject` on `DEV` (skipping the sender's IP stack, so it can
//!   offer higher rates for the benchmark). Prints `sent=N errors=E elapsed_ms=T`.
//! * `capture-probe capture --iface NAME [--filter BPF] [--expect N] [--timeout-ms T]
//!   [--settle-ms S] [--immediate] [--until-stdin-eof] [--buffer-size B] [--count-only]
//!   [--queue N] [--read-timeout-ms T]`
//!   starts a [`capture::LiveCapture`], prints `READY`, then counts packets until `N` have
//!   arrived and `S` more milliseconds passed, until `T` ms passed, or (with
//!   `--until-stdin-eof`) until its standard input is closed (`--count-only` skips the
//!   sequence-number bookkeeping, for benchmarks). Prints one line:
//!   `captured=.. unique=.. duplicates=.. link_type=.. received=.. queue_dropped=..
//!   kernel_dropped=.. interface_dropped=.. skipped=..`.
//!
//! Only for the addresses of namespaces the caller created, or loopback.

use std::collections::HashSet;
use std::io::{BufRead, Write};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use capture::{CaptureError, LiveCapture, LiveConfig};

const MARKER: &[u8] = b"NDSEQ";

struct Args {
    flags: Vec<(String, Option<String>)>,
}

impl Args {
    fn parse(rest: &[String]) -> Result<Args> {
        let mut flags = Vec::new();
        let mut i = 0;
        while i < rest.len() {
            let key = rest[i]
                .strip_prefix("--")
                .with_context(|| format!("unexpected argument {:?}", rest[i]))?
                .to_owned();
            let value = rest.get(i + 1).filter(|v| !v.starts_with("--")).cloned();
            i += if value.is_some() { 2 } else { 1 };
            flags.push((key, value));
        }
        Ok(Args { flags })
    }
    fn get(&self, key: &str) -> Option<&str> {
        self.flags
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.as_deref())
    }
    fn has(&self, key: &str) -> bool {
        self.flags.iter().any(|(k, _)| k == key)
    }
    fn num<T: std::str::FromStr>(&self, key: &str, default: T) -> Result<T> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| anyhow::anyhow!("--{key}: not a number: {v:?}")),
        }
    }
}

fn main() -> Result<()> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = argv.first() else {
        bail!("usage: capture-probe send|capture [flags] (see the source's doc comment)");
    };
    let args = Args::parse(&argv[1..])?;
    match cmd.as_str() {
        "send" => send(&args),
        "send-raw" => send_raw(&args),
        "capture" => run_capture(&args),
        other => bail!("unknown command {other:?}"),
    }
}

fn send(args: &Args) -> Result<()> {
    let to: SocketAddr = args
        .get("to")
        .context("--to IP:PORT is required")?
        .parse()
        .context("--to")?;
    let count: u64 = args.num("count", 100)?;
    let size: usize = args.num("size", 64)?;
    let pps: f64 = args.num("pps", 0.0)?;
    let bind = if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
    let sock = UdpSocket::bind(bind).context("bind UDP socket")?;
    if let Some(port) = args.get("warmup-port") {
        let port: u16 = port.parse().context("--warmup-port")?;
        sock.send_to(b"warmup", SocketAddr::new(to.ip(), port))
            .context("warm-up datagram")?;
        std::thread::sleep(Duration::from_millis(300));
    }
    let mut payload = vec![0u8; size.max(MARKER.len() + 8)];
    payload[..MARKER.len()].copy_from_slice(MARKER);
    let start = Instant::now();
    let mut sent = 0u64;
    let mut errors = 0u64;
    for seq in 0..count {
        pace(start, seq, pps);
        payload[MARKER.len()..MARKER.len() + 8].copy_from_slice(&seq.to_be_bytes());
        // ENOBUFS/EAGAIN under overload: retry a few times, then count as an error.
        let mut tries = 0;
        loop {
            match sock.send_to(&payload, to) {
                Ok(_) => {
                    sent += 1;
                    break;
                }
                Err(_) if tries < 1000 => {
                    tries += 1;
                    std::thread::yield_now();
                }
                Err(_) => {
                    errors += 1;
                    break;
                }
            }
        }
    }
    let elapsed = start.elapsed();
    println!(
        "sent={sent} errors={errors} elapsed_ms={:.1}",
        elapsed.as_secs_f64() * 1000.0
    );
    Ok(())
}

fn parse_mac(s: &str) -> Result<[u8; 6]> {
    let parts: Vec<u8> = s
        .split(':')
        .map(|h| u8::from_str_radix(h, 16))
        .collect::<std::result::Result<_, _>>()
        .with_context(|| format!("bad MAC address {s:?}"))?;
    parts
        .try_into()
        .map_err(|_| anyhow::anyhow!("bad MAC address {s:?}"))
}

fn ipv4_checksum(header: &[u8]) -> u16 {
    let mut sum = 0u32;
    for pair in header.chunks(2) {
        sum += u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Paces a loop: waits until packet `seq` is due at `pps` packets per second.
fn pace(start: Instant, seq: u64, pps: f64) {
    if pps <= 0.0 {
        return;
    }
    let due = start + Duration::from_secs_f64(seq as f64 / pps);
    loop {
        let now = Instant::now();
        if now >= due {
            return;
        }
        let left = due - now;
        if left > Duration::from_micros(200) {
            std::thread::sleep(left - Duration::from_micros(100));
        } else {
            std::hint::spin_loop();
        }
    }
}

fn send_raw(args: &Args) -> Result<()> {
    let iface = args.get("iface").context("--iface is required")?;
    let to: std::net::SocketAddrV4 = args
        .get("to")
        .context("--to IP:PORT is required")?
        .parse()
        .context("--to (IPv4)")?;
    let src_ip: std::net::Ipv4Addr = args
        .get("src-ip")
        .context("--src-ip is required")?
        .parse()
        .context("--src-ip")?;
    let dst_mac = parse_mac(args.get("dst-mac").context("--dst-mac is required")?)?;
    let src_mac = std::fs::read_to_string(format!("/sys/class/net/{iface}/address"))
        .context("read the interface's MAC address")
        .and_then(|m| parse_mac(m.trim()))?;
    let count: u64 = args.num("count", 100)?;
    let size: usize = args.num("size", 64)?.max(MARKER.len() + 8);
    let pps: f64 = args.num("pps", 0.0)?;

    let mut cap = pcap::Capture::from_device(iface)
        .context("pcap device")?
        .snaplen(64)
        .buffer_size(1 << 16)
        .open()
        .context("open the interface for sending")?;
    // Receive nothing on this handle (the kernel filter drops everything).
    cap.filter("less 1", true).context("filter")?;

    let udp_len = 8 + size;
    let ip_len = 20 + udp_len;
    let mut frame = Vec::with_capacity(14 + ip_len);
    frame.extend_from_slice(&dst_mac);
    frame.extend_from_slice(&src_mac);
    frame.extend_from_slice(&0x0800u16.to_be_bytes());
    let ip_at = frame.len();
    frame.extend_from_slice(&[0x45, 0]);
    frame.extend_from_slice(&(ip_len as u16).to_be_bytes());
    frame.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
    frame.extend_from_slice(&src_ip.octets());
    frame.extend_from_slice(&to.ip().octets());
    let csum = ipv4_checksum(&frame[ip_at..ip_at + 20]);
    frame[ip_at + 10..ip_at + 12].copy_from_slice(&csum.to_be_bytes());
    frame.extend_from_slice(&40125u16.to_be_bytes());
    frame.extend_from_slice(&to.port().to_be_bytes());
    frame.extend_from_slice(&(udp_len as u16).to_be_bytes());
    frame.extend_from_slice(&[0, 0]); // no UDP checksum
    let payload_at = frame.len();
    frame.extend_from_slice(MARKER);
    frame.resize(payload_at + size, 0);

    let start = Instant::now();
    let (mut sent, mut errors) = (0u64, 0u64);
    let seq_at = payload_at + MARKER.len();
    for seq in 0..count {
        pace(start, seq, pps);
        frame[seq_at..seq_at + 8].copy_from_slice(&seq.to_be_bytes());
        let mut tries = 0;
        loop {
            match cap.sendpacket(&frame[..]) {
                Ok(()) => {
                    sent += 1;
                    break;
                }
                Err(_) if tries < 1000 => {
                    tries += 1;
                    std::thread::yield_now();
                }
                Err(_) => {
                    errors += 1;
                    break;
                }
            }
        }
    }
    println!(
        "sent={sent} errors={errors} elapsed_ms={:.1}",
        start.elapsed().as_secs_f64() * 1000.0
    );
    Ok(())
}

/// CPU time (user + system) of process `pid` ("self" for this one) in milliseconds, from
/// `/proc/PID/stat` (clock ticks of USER_HZ = 100 on Linux).
fn cpu_ms(pid: &str) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (ticks(11) + ticks(12)) * 10
}

fn sequence_of(data: &[u8]) -> Option<u64> {
    let at = data.windows(MARKER.len()).rposition(|w| w == MARKER)?;
    let b = data.get(at + MARKER.len()..at + MARKER.len() + 8)?;
    Some(u64::from_be_bytes(b.try_into().ok()?))
}

fn run_capture(args: &Args) -> Result<()> {
    let ifaces: Vec<String> = args
        .get("iface")
        .context("--iface is required")?
        .split(',')
        .map(str::to_owned)
        .collect();
    let mut config = LiveConfig::new(ifaces);
    config.filter = args.get("filter").map(str::to_owned);
    config.immediate_mode = args.has("immediate");
    if let Some(b) = args.get("buffer-size") {
        config.buffer_size = Some(b.parse().context("--buffer-size")?);
    }
    config.queue_capacity = args.num("queue", config.queue_capacity)?;
    config.read_timeout_ms = args.num("read-timeout-ms", config.read_timeout_ms)?;
    let expect: u64 = args.num("expect", u64::MAX)?;
    let timeout = Duration::from_millis(args.num("timeout-ms", 10_000)?);
    let settle = Duration::from_millis(args.num("settle-ms", 300)?);
    let count_only = args.has("count-only");

    let cap = match LiveCapture::start(config) {
        Ok(c) => c,
        Err(e) => {
            println!("ERROR {e}");
            std::process::exit(match e {
                CaptureError::PermissionDenied { .. } => 77,
                _ => 2,
            });
        }
    };
    let stdin_closed = Arc::new(AtomicBool::new(false));
    if args.has("until-stdin-eof") {
        let flag = Arc::clone(&stdin_closed);
        std::thread::spawn(move || {
            let stdin = std::io::stdin();
            let mut lines = stdin.lock().lines();
            while let Some(Ok(_)) = lines.next() {}
            flag.store(true, Ordering::SeqCst);
        });
    }
    println!("READY");
    std::io::stdout().flush().context("flush stdout")?;

    let start = Instant::now();
    let mut captured = 0u64;
    let mut seqs = HashSet::new();
    let mut duplicates = 0u64;
    let mut link_type = None;
    let mut reached: Option<Instant> = None;
    loop {
        if stdin_closed.load(Ordering::SeqCst) || start.elapsed() >= timeout {
            break;
        }
        if let Some(t) = reached {
            if t.elapsed() >= settle {
                break;
            }
        }
        match cap.recv_timeout(Duration::from_millis(20)) {
            Ok(Some(p)) => {
                captured += 1;
                link_type.get_or_insert(p.link_type);
                if captured >= expect && reached.is_none() {
                    reached = Some(Instant::now());
                }
                if !count_only {
                    if let Some(seq) = sequence_of(&p.data) {
                        if !seqs.insert(seq) {
                            duplicates += 1;
                        }
                    }
                }
            }
            Ok(None) => {}
            Err(e) => {
                println!("ERROR {e}");
                break;
            }
        }
    }
    // Let the capture threads publish their final libpcap counters.
    cap.stop();
    let s = cap.stats();
    println!(
        "captured={captured} unique={} duplicates={duplicates} link_type={} received={} \
         queue_dropped={} kernel_dropped={} interface_dropped={} skipped={} elapsed_ms={} cpu_ms={}",
        seqs.len(),
        link_type.map_or(-1, i64::from),
        s.received,
        s.queue_dropped,
        s.kernel_dropped,
        s.interface_dropped,
        s.loopback_outgoing_skipped,
        start.elapsed().as_millis(),
        cpu_ms("self")
    );
    Ok(())
}
