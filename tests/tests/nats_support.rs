//! Helpers for the fleet tests (`fleet_e2e.rs`, and the fleet benchmark): a real
//! `nats-server` cluster with JetStream on disk, started on free 127.0.0.1 ports in a
//! private directory; nodes are killed (-9) and restarted by PID.
//!
//! Included with `#[path = "nats_support.rs"] mod nats;`; compiled alone it has no tests.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use e2e_tests::wait_for_port;

/// The pinned nats-server that `scripts/nats-server.sh` installs (from PyPI, sha256-checked).
pub const PINNED_VERSION: &str = "2.15.1";

/// Where `scripts/nats-server.sh` puts the pinned nats-server.
pub fn pinned_path() -> PathBuf {
    e2e_tests::workspace_root()
        .join("target/nd-tools")
        .join(format!("nats-server-{PINNED_VERSION}"))
        .join("nats-server")
}

/// The `nats-server` binary: `$ND_NATS_SERVER`, else the pinned v2.15.1 in
/// `target/nd-tools/` (`scripts/setup.sh` installs it), else the first on PATH (or
/// /usr/bin, /usr/sbin: Debian's 2.9.10). `None` (after a clear SKIP message) when none is
/// there outside CI; in CI it must exist. The first call prints which one and its version.
pub fn nats_server() -> Option<PathBuf> {
    let candidates = std::env::var_os("ND_NATS_SERVER")
        .map(PathBuf::from)
        .into_iter()
        .chain([pinned_path()])
        .chain(
            std::env::var_os("PATH")
                .map(|p| {
                    std::env::split_paths(&p)
                        .map(|d| d.join("nats-server"))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default(),
        )
        .chain([
            PathBuf::from("/usr/bin/nats-server"),
            PathBuf::from("/usr/sbin/nats-server"),
        ]);
    for c in candidates {
        if c.is_file() {
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                eprintln!("nats-server: {} ({})", c.display(), server_version(&c));
            });
            return Some(c);
        }
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "nats-server is missing in CI: scripts/setup.sh installs it (scripts/nats-server.sh, else apt-get install nats-server)"
    );
    eprintln!("SKIP: nats-server not found (run scripts/nats-server.sh, or apt-get install nats-server, or set ND_NATS_SERVER)");
    None
}

/// What `nats-server --version` prints (`nats-server: v2.15.1`), or why it printed nothing.
pub fn server_version(binary: &Path) -> String {
    match Command::new(binary).arg("--version").output() {
        Ok(out) => String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        Err(e) => format!("--version failed: {e}"),
    }
}

/// `n` distinct free 127.0.0.1 ports: every listener is held until all are picked, since
/// `free_port` called twice can return the same port (seen: a leaf node's client and
/// leafnode ports equal, so the server could not start).
pub fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    held.iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}

/// One node of the cluster.
pub struct Node {
    /// Client port address.
    pub client: SocketAddr,
    /// Route (cluster) port.
    pub route: u16,
    /// Its config file.
    pub config: PathBuf,
    /// The running process, if any.
    pub child: Option<Child>,
}

/// A NATS cluster (or one server) with JetStream on disk under a private directory,
/// removed on drop together with every node process (killed by PID).
pub struct Cluster {
    /// The nodes.
    pub nodes: Vec<Node>,
    /// Scratch directory (configs, JetStream stores, logs).
    pub dir: PathBuf,
    binary: PathBuf,
}

fn scratch_dir(tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!("nd-{tag}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

impl Cluster {
    /// Start `n` nodes (routes between all of them when `n > 1`) and wait until every
    /// client port answers. `None` when nats-server is missing (skip).
    pub fn start(n: usize) -> Option<Cluster> {
        let binary = nats_server()?;
        let dir = scratch_dir("nats");
        let picked = free_ports(2 * n);
        let ports: Vec<(u16, u16)> = picked.chunks(2).map(|p| (p[0], p[1])).collect();
        let routes: Vec<String> = ports
            .iter()
            .map(|(_, r)| format!("nats-route://127.0.0.1:{r}"))
            .collect();
        let mut nodes = Vec::new();
        for (i, (client, route)) in ports.iter().enumerate() {
            let store = dir.join(format!("js{i}"));
            let config = dir.join(format!("n{i}.conf"));
            let cluster = if n > 1 {
                format!(
                    "cluster {{\n  name: ndtest\n  listen: 127.0.0.1:{route}\n  routes: [{}]\n}}\n",
                    routes.join(", ")
                )
            } else {
                String::new()
            };
            let text = format!(
                "server_name: n{i}\nlisten: 127.0.0.1:{client}\nhttp: 0\njetstream {{\n  store_dir: \"{}\"\n  max_memory_store: 64MB\n  max_file_store: 1GB\n}}\n{cluster}",
                store.display()
            );
            std::fs::write(&config, text).expect("write nats config");
            nodes.push(Node {
                client: ([127, 0, 0, 1], *client).into(),
                route: *route,
                config,
                child: None,
            });
        }
        let mut cluster = Cluster { nodes, dir, binary };
        for i in 0..n {
            cluster.spawn(i);
        }
        for node in &cluster.nodes {
            assert!(
                wait_for_port(node.client, Duration::from_secs(10)),
                "nats-server did not listen on {}; see {}",
                node.client,
                cluster.dir.display()
            );
        }
        Some(cluster)
    }

    fn spawn(&mut self, i: usize) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("n{i}.log")))
            .expect("nats log");
        let child = Command::new(&self.binary)
            .arg("-c")
            .arg(&self.nodes[i].config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start nats-server");
        self.nodes[i].child = Some(child);
    }

    /// `nats://` URLs of every node, comma-separated (for `--nats`).
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("nats://{}", n.client))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// kill -9 node `i` (by PID) and reap it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start node `i` again with the same config and JetStream store.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i);
        assert!(
            wait_for_port(self.nodes[i].client, Duration::from_secs(10)),
            "nats-server n{i} did not come back"
        );
    }

    /// kill -9 node `i` and start it again with an empty JetStream store (as a server
    /// whose disk was lost, or a single server run without persistent storage).
    pub fn restart_empty(&mut self, i: usize) {
        self.kill(i);
        let _ = std::fs::remove_dir_all(self.dir.join(format!("js{i}")));
        self.spawn(i);
        assert!(
            wait_for_port(self.nodes[i].client, Duration::from_secs(10)),
            "nats-server n{i} did not come back"
        );
    }

    /// The nodes' logs, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for i in 0..self.nodes.len() {
            let text =
                std::fs::read_to_string(self.dir.join(format!("n{i}.log"))).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            out.push_str(&format!("--- n{i} (last lines)\n"));
            for line in tail.into_iter().rev() {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("nats scratch dir kept: {}", self.dir.display());
        }
    }
}

/// Wait until `check` holds, polling every 50 ms, for at most `limit`.
pub fn wait_until(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    check()
}

/// A pcap stream of ARP requests written into a FIFO at `rate` per second until `stop`
/// is set, so an `nd-sniff -r FIFO` kitchen runs (and makes one `ARPChef` dumpling per
/// packet) for as long as a test needs. Returns the packets written.
pub fn feed_arp_fifo(
    fifo: &Path,
    rate: u32,
    seed: u8,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    feed_arp_fifo_counting(fifo, rate, seed, stop, Default::default())
}

/// [`feed_arp_fifo`], publishing in `written` how many packets it has written so far.
/// Packet `n` has the capture time `1_700_000_000 + n / 1000` seconds (the ARPChef
/// dumpling's `time`), so a reader can tell which dumplings were written after a moment.
pub fn feed_arp_fifo_counting(
    fifo: &Path,
    rate: u32,
    seed: u8,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    written: std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> std::thread::JoinHandle<u64> {
    let fifo = fifo.to_owned();
    std::thread::spawn(move || {
        use std::io::Write;
        // Opening blocks until the kitchen opens the FIFO for reading.
        let Ok(mut out) = std::fs::OpenOptions::new().write(true).open(&fifo) else {
            return 0;
        };
        let mut header = Vec::new();
        header.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        header.extend_from_slice(&2u16.to_le_bytes());
        header.extend_from_slice(&4u16.to_le_bytes());
        header.extend_from_slice(&0i32.to_le_bytes());
        header.extend_from_slice(&0u32.to_le_bytes());
        header.extend_from_slice(&65535u32.to_le_bytes());
        header.extend_from_slice(&1u32.to_le_bytes());
        if out.write_all(&header).is_err() {
            return 0;
        }
        let period = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
        let start = Instant::now();
        let mut n: u64 = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let mut frame = vec![0xffu8; 6];
            frame.extend_from_slice(&[0x02, 0, 0, seed, (n >> 8) as u8, n as u8]);
            frame.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
            frame.extend_from_slice(&[0x02, 0, 0, seed, (n >> 8) as u8, n as u8]);
            frame.extend_from_slice(&[10, seed, (n >> 8) as u8, n as u8]);
            frame.extend_from_slice(&[0; 6]);
            frame.extend_from_slice(&[10, seed, 0, 1]);
            let ts = 1_700_000_000u32 + (n / 1000) as u32;
            let mut record = Vec::new();
            record.extend_from_slice(&ts.to_le_bytes());
            record.extend_from_slice(&(((n % 1000) * 1000) as u32).to_le_bytes());
            record.extend_from_slice(&(frame.len() as u32).to_le_bytes());
            record.extend_from_slice(&(frame.len() as u32).to_le_bytes());
            record.extend_from_slice(&frame);
            if out.write_all(&record).and_then(|_| out.flush()).is_err() {
                break;
            }
            n += 1;
            written.store(n, std::sync::atomic::Ordering::Release);
            let due = start + period * (n as u32);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        n
    })
}

/// Make a FIFO at `path` (with `mkfifo`, so the tests need no libc binding).
pub fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("run mkfifo");
    assert!(status.success(), "mkfifo {}", path.display());
}

/// A scratch directory for a test (FIFOs and such); the caller removes it.
pub fn scratch(tag: &str) -> PathBuf {
    scratch_dir(tag)
}

/// Wait until a WebSocket handshake with `addr` completes (a federated hub accepts no
/// connection before its JetStream stream and consumer exist, so this means "ready").
pub async fn handshake_within(addr: SocketAddr, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let url = format!("ws://{addr}/");
    loop {
        if let Ok(Ok((mut ws, _))) = tokio::time::timeout(
            Duration::from_secs(1),
            tokio_tungstenite::connect_async(url.as_str()),
        )
        .await
        {
            let _ = ws.close(None).await;
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
