//! The tiny HTTP side of `--metrics-address`, shared by `nd-hub` and `nd-sniff` (both
//! depend on this crate; the kitchen must not depend on the hub): the address rule (off by
//! default, a bare port or the flag alone binds loopback) and a `GET /metrics` server that
//! answers each request with whatever text the caller's `render` makes at that moment.
//!
//! One request per connection; the request head is bounded to [`MAX_HEAD_BYTES`] and must
//! arrive within [`REQUEST_TIMEOUT`], so a slow or hostile client costs one short task.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, warn};

/// Largest request head read (request line plus headers).
pub const MAX_HEAD_BYTES: usize = 8192;

/// Time a client has to send its request and read the answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// `--metrics-address` is neither `IP:PORT` nor a port number.
#[derive(Debug, thiserror::Error)]
#[error("--metrics-address {0:?} is not IP:PORT or a port number (e.g. 127.0.0.1:{1} or {1})")]
pub struct BadMetricsAddress(pub String, pub u16);

/// `--metrics-address`: a bare port binds 127.0.0.1; otherwise an `IP:PORT`.
/// `default_port` only shapes the error's example.
pub fn parse_address(text: &str, default_port: u16) -> Result<SocketAddr, BadMetricsAddress> {
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    text.parse()
        .map_err(|_| BadMetricsAddress(text.to_owned(), default_port))
}

/// Makes the body of one `/metrics` answer (called once per request, on the server task).
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// Serve `GET /metrics` on `listener` until the task is dropped: each answer is
/// `render()` with `content_type`; any other path gets a 404 naming `who`.
pub async fn serve(
    listener: TcpListener,
    render: Render,
    content_type: &'static str,
    who: &'static str,
) {
    loop {
        match listener.accept().await {
            Ok((stream, addr)) => {
                tokio::spawn(answer(stream, addr, render.clone(), content_type, who));
            }
            Err(error) => {
                warn!(%error, "metrics accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The path of a `GET` request head (query removed), or `None` for anything else.
fn get_path(head: &[u8]) -> Option<&str> {
    let line = head.split(|&b| b == b'\r').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split(' ');
    if parts.next()? != "GET" {
        return None;
    }
    parts.next()?.split(['?', '#']).next()
}

async fn answer(
    mut stream: TcpStream,
    addr: SocketAddr,
    render: Render,
    content_type: &'static str,
    who: &'static str,
) {
    let result = tokio::time::timeout(REQUEST_TIMEOUT, async {
        let mut head = Vec::with_capacity(1024);
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD_BYTES {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Ok(());
            }
            head.extend_from_slice(&buf[..n]);
        }
        let (status, content_type, body) = match get_path(&head) {
            Some("/metrics") => ("200 OK", content_type, render()),
            _ => (
                "404 Not Found",
                "text/plain; charset=utf-8",
                format!("{who} serves metrics at GET /metrics\n"),
            ),
        };
        let reply = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(reply.as_bytes()).await?;
        stream.shutdown().await
    })
    .await;
    match result {
        Ok(Ok(())) => debug!(%addr, "served metrics"),
        Ok(Err(error)) => debug!(%addr, %error, "metrics request failed"),
        Err(_) => debug!(%addr, "metrics request timed out"),
    }
}

/// Resident memory of this process, from `/proc/self/status` (Linux); `None` elsewhere.
pub fn resident_bytes() -> Option<i64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: i64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_loopback_when_bare() {
        assert_eq!(
            parse_address("9100", 1).unwrap(),
            SocketAddr::from(([127, 0, 0, 1], 9100))
        );
        assert_eq!(
            parse_address("0.0.0.0:9100", 1).unwrap(),
            SocketAddr::from(([0, 0, 0, 0], 9100))
        );
        let e = parse_address("nowhere", 11350).unwrap_err().to_string();
        assert!(e.contains("nowhere") && e.contains("11350"), "{e}");
    }

    #[test]
    fn only_get_paths_are_read() {
        assert_eq!(
            get_path(b"GET /metrics?x=1 HTTP/1.1\r\n\r\n"),
            Some("/metrics")
        );
        assert_eq!(get_path(b"POST /metrics HTTP/1.1\r\n\r\n"), None);
        assert_eq!(get_path(b"\xff\xfe\r\n\r\n"), None);
    }
}
