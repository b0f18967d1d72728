//! Helpers for the hub and eater end-to-end tests (`hub_e2e.rs`, `eater_e2e.rs`): start a
//! real `nd-hub` on free 127.0.0.1 ports, and raw WebSocket kitchens and eaters.
//!
//! Included with `#[path = "hub_support.rs"] mod support;`; compiled alone it has no tests.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use e2e_tests::{bin, free_port, wait_for_port, ChildGuard};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The original `SystemStatusChef` payload keys, in the original's order.
pub const ORIGINAL_STATUS_KEYS: [&str; 7] = [
    "total_dumplings_in",
    "total_dumplings_out",
    "server_uptime",
    "dumpling_kitchen_count",
    "dumpling_eater_count",
    "dumpling_kitchens",
    "dumpling_eaters",
];

/// A client WebSocket.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A running `nd-hub`.
pub struct Hub {
    /// The process (killed by PID on drop).
    pub guard: ChildGuard,
    /// Kitchen port address.
    pub kitchens: SocketAddr,
    /// Eater port address.
    pub eaters: SocketAddr,
    /// Everything the hub wrote to stderr so far (drained by a thread, so a chatty hub
    /// never blocks on a full pipe).
    pub log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Hub {
    /// Start `nd-hub -a 127.0.0.1` on two free ports with extra flags.
    pub fn start(extra: &[&str]) -> Hub {
        Hub::start_logging(extra, "info")
    }

    /// [`Hub::start`] with `RUST_LOG` set to `rust_log`.
    pub fn start_logging(extra: &[&str], rust_log: &str) -> Hub {
        for _ in 0..5 {
            let (i, o) = (free_port(), free_port());
            if i == o {
                continue;
            }
            let mut cmd = Command::new(bin("nd-hub"));
            cmd.args([
                "-a",
                "127.0.0.1",
                "-i",
                &i.to_string(),
                "-o",
                &o.to_string(),
            ])
            .args(extra)
            .env("RUST_LOG", rust_log);
            let mut guard = ChildGuard::spawn("nd-hub", &mut cmd);
            let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
            if let Some(stderr) = guard.child.stderr.take() {
                let log = log.clone();
                std::thread::spawn(move || {
                    use std::io::BufRead;
                    for line in std::io::BufReader::new(stderr).lines() {
                        let Ok(line) = line else { break };
                        if let Ok(mut log) = log.lock() {
                            log.push_str(&line);
                            log.push('\n');
                        }
                    }
                });
            }
            let kitchens: SocketAddr = ([127, 0, 0, 1], i).into();
            let eaters: SocketAddr = ([127, 0, 0, 1], o).into();
            if wait_for_port(kitchens, Duration::from_secs(5))
                && wait_for_port(eaters, Duration::from_secs(5))
            {
                return Hub {
                    guard,
                    kitchens,
                    eaters,
                    log,
                };
            }
        }
        panic!("nd-hub did not start");
    }

    /// `HOST:PORT` of the eater side.
    pub fn eater_hub(&self) -> String {
        self.eaters.to_string()
    }

    /// Stop the hub with SIGTERM and wait for it; returns its full stderr.
    pub fn stop(self) -> (std::process::ExitStatus, String) {
        self.guard.terminate();
        let log = self.log.clone();
        let out = self.guard.wait_output(Duration::from_secs(10));
        // Give the drain thread a moment to read the last lines.
        std::thread::sleep(Duration::from_millis(100));
        // Either our drain thread or ChildGuard's own drain holds the text.
        let mut text = log.lock().map(|l| l.clone()).unwrap_or_default();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        (out.status, text)
    }

    /// Resident memory of the hub process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.guard.child.id())
    }
}

/// VmRSS of a process, in KiB (0 when unreadable).
pub fn rss_kib(pid: u32) -> u64 {
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

/// The folder of the original's recorded frames, or `None` when absent.
pub fn captures_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("ND_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| e2e_tests::workspace_root().join("../shared"))
        .join("docs/netdumplings-captures");
    if dir.exists() {
        Some(dir)
    } else {
        assert!(
            std::env::var_os("CI").is_none(),
            "captures not found at {}",
            dir.display()
        );
        eprintln!("SKIP: captures not found at {}", dir.display());
        None
    }
}

/// Connect a raw WebSocket to `addr` (path `/`).
pub async fn connect(addr: SocketAddr) -> Ws {
    let (ws, _) = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::connect_async(format!("ws://{addr}/")),
    )
    .await
    .expect("connect in time")
    .expect("connect");
    ws
}

/// A raw kitchen that has sent `hello`.
pub async fn kitchen(addr: SocketAddr, hello: &str) -> Ws {
    let mut ws = connect(addr).await;
    ws.send(Message::text(hello)).await.expect("send hello");
    ws
}

/// A raw eater that has sent its hello and read its welcome status.
pub async fn eater(addr: SocketAddr, name: &str) -> (Ws, serde_json::Value) {
    let mut ws = connect(addr).await;
    let hello = serde_json::json!({ "eater_name": name }).to_string();
    ws.send(Message::text(hello)).await.expect("send hello");
    let welcome = next_data(&mut ws, Duration::from_secs(5))
        .await
        .expect("welcome status");
    let value: serde_json::Value =
        serde_json::from_str(welcome.to_text().expect("text")).expect("json");
    assert_eq!(value["metadata"]["chef"], "SystemStatusChef");
    (ws, value)
}

/// The next text or binary message within `limit` (pings skipped); `None` on timeout,
/// close or error.
pub async fn next_data(ws: &mut Ws, limit: Duration) -> Option<Message> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(m @ (Message::Text(_) | Message::Binary(_))))) => return Some(m),
            Ok(Some(Ok(Message::Close(_)))) | Ok(Some(Err(_))) | Ok(None) | Err(_) => return None,
            Ok(Some(Ok(_))) => continue,
        }
    }
}

/// The next message that is not a hub status dumpling.
pub async fn next_dumpling(ws: &mut Ws, limit: Duration) -> Option<Message> {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let message = next_data(ws, left).await?;
        if !is_chef(&message, "SystemStatusChef") {
            return Some(message);
        }
    }
}

/// Is this message a dumpling from `chef`?
pub fn is_chef(message: &Message, chef: &str) -> bool {
    let bytes: &[u8] = match message {
        Message::Text(t) => t.as_bytes(),
        Message::Binary(b) => b,
        _ => return false,
    };
    serde_json::from_slice::<serde_json::Value>(bytes)
        .map(|v| v["metadata"]["chef"] == chef)
        .unwrap_or(false)
}

/// The close frame the peer sends next (code, reason), within `limit`.
pub async fn close_frame(ws: &mut Ws, limit: Duration) -> Option<(u16, String)> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(Message::Close(Some(frame))))) => {
                return Some((u16::from(frame.code), frame.reason.to_string()))
            }
            Ok(Some(Ok(Message::Close(None)))) => return Some((1005, String::new())),
            Ok(Some(Ok(_))) => continue,
            _ => return None,
        }
    }
}

/// The current status payload, read by a short-lived eater.
pub async fn status(addr: SocketAddr) -> serde_json::Value {
    let (mut ws, welcome) = eater(addr, "status-probe").await;
    let _ = ws.close(None).await;
    welcome["payload"].clone()
}

/// Poll the status until `check` passes, for at most `limit`; returns the last status.
pub async fn status_until(
    addr: SocketAddr,
    limit: Duration,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + limit;
    loop {
        let s = status(addr).await;
        if check(&s) || Instant::now() > deadline {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A dumpling of about `size` bytes with a sequence number.
pub fn dumpling_text(kitchen: &str, seq: u64, size: usize) -> String {
    let head = format!(
        r#"{{"metadata": {{"chef": "BenchChef", "kitchen": "{kitchen}", "creation_time": 1.5, "driver": "packet"}}, "payload": {{"seq": {seq}, "pad": ""#
    );
    let pad = size.saturating_sub(head.len() + 3);
    format!("{head}{}\"}}}}", "x".repeat(pad))
}

/// A token and its hash, made by `nd-hub token`.
pub fn nd_hub_token() -> (String, String) {
    let out = Command::new(bin("nd-hub"))
        .arg("token")
        .output()
        .expect("nd-hub token");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.trim().trim_matches('"').to_owned())
            .unwrap_or_else(|| panic!("no {key} in {text}"))
    };
    (field("token = "), field("token_sha256 = "))
}
