//! The live web view, served on the eater port: a plain HTTP `GET` gets the page and its
//! assets (all embedded in the binary from `web/`), a WebSocket upgrade stays an eater.
//!
//! Why the eater port and not a `--web-port`: the page *is* an eater (it opens a WebSocket
//! to the same host and port it was loaded from), so serving both on one port means one
//! address to open, one port to allow through a firewall, and the same authentication as
//! every other eater once the hub has it. Original eaters never send a plain `GET` without
//! `Upgrade: websocket`, so they are unaffected.
//!
//! The request head is *peeked*, not read, so an upgrade request reaches the WebSocket
//! handshake byte for byte. Everything is bounded: the head must fit in
//! [`MAX_HEAD_BYTES`] and arrive within the hello timeout; one request per connection.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::debug;

/// Largest request head (request line plus headers) looked at.
pub const MAX_HEAD_BYTES: usize = 8192;

/// One embedded file.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

/// Every file the page needs; `/` is `index.html`.
const ASSETS: &[Asset] = &[
    Asset {
        path: "/index.html",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../../web/index.html"),
    },
    Asset {
        path: "/app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../web/app.js"),
    },
    Asset {
        path: "/style.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../web/style.css"),
    },
    Asset {
        path: "/vendor/uplot/uPlot.iife.min.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../web/vendor/uplot/uPlot.iife.min.js"),
    },
    Asset {
        path: "/vendor/uplot/uPlot.min.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../web/vendor/uplot/uPlot.min.css"),
    },
    Asset {
        path: "/vendor/uplot/LICENSE",
        content_type: "text/plain; charset=utf-8",
        body: include_bytes!("../../web/vendor/uplot/LICENSE"),
    },
];

/// What the first bytes of an eater-port connection are.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// A WebSocket upgrade (or anything that is not a plain GET/HEAD): the eater path.
    Eater,
    /// A plain HTTP GET or HEAD for `path`; `head_len` bytes of head to consume.
    Page {
        /// `true` for HEAD (headers only).
        head_only: bool,
        /// The request target's path (query removed).
        path: String,
        /// Length of the request head including the blank line.
        head_len: usize,
    },
}

/// Decide from a complete request head (pure; unit-tested).
pub fn classify(head: &[u8]) -> Route {
    let Ok(text) = std::str::from_utf8(head) else {
        return Route::Eater;
    };
    let Some(end) = text.find("\r\n\r\n") else {
        return Route::Eater;
    };
    let mut lines = text[..end].split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Route::Eater,
    };
    let upgrade = lines.any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("upgrade")
                && value.trim().eq_ignore_ascii_case("websocket")
        })
    });
    if upgrade {
        return Route::Eater;
    }
    let path = target.split(['?', '#']).next().unwrap_or("/").to_owned();
    Route::Page {
        head_only,
        path,
        head_len: end + 4,
    }
}

/// Peek at the start of a connection until a whole request head is there (or it cannot
/// be one), within `limit`. Returns [`Route::Eater`] when in doubt, so the WebSocket
/// handshake decides as before.
pub async fn route(stream: &TcpStream, limit: Duration) -> Route {
    let deadline = tokio::time::Instant::now() + limit;
    let mut buf = vec![0u8; MAX_HEAD_BYTES];
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await {
            Ok(Ok(n)) => n,
            _ => return Route::Eater,
        };
        if n == 0 {
            return Route::Eater;
        }
        let seen = &buf[..n];
        // Not an HTTP GET/HEAD at all: no need to wait for more.
        let prefix_ok = [&b"GET "[..], &b"HEAD "[..]]
            .iter()
            .any(|m| seen.starts_with(m) || m.starts_with(seen));
        if !prefix_ok {
            return Route::Eater;
        }
        if seen.windows(4).any(|w| w == b"\r\n\r\n") {
            return classify(seen);
        }
        if n == buf.len() || tokio::time::Instant::now() >= deadline {
            return Route::Eater;
        }
        // A head split over several segments: peek returns at once while data waits, so
        // pause briefly rather than spin.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Headers on every page response: the page may only load its own files and talk to its
/// own hub, so a chef's text can never pull in a script even if it reached the DOM.
const SECURITY_HEADERS: &str = "Content-Security-Policy: default-src 'self'; \
     connect-src 'self' ws: wss:; img-src 'self' data:; style-src 'self' 'unsafe-inline'; \
     frame-ancestors 'none'; base-uri 'none'\r\n\
     X-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n\
     Cache-Control: no-cache\r\n";

/// The response for `path` (status line, headers, body).
pub fn response(path: &str, head_only: bool) -> Vec<u8> {
    let wanted = if path == "/" { "/index.html" } else { path };
    let (status, content_type, body): (&str, &str, &[u8]) =
        match ASSETS.iter().find(|a| a.path == wanted) {
            Some(asset) => ("200 OK", asset.content_type, asset.body),
            None if wanted == "/favicon.ico" => ("204 No Content", "text/plain", b""),
            None => (
                "404 Not Found",
                "text/plain; charset=utf-8",
                b"not found: the netdumplings web view is at /\n",
            ),
        };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         {SECURITY_HEADERS}Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body);
    }
    out
}

/// Answer one plain HTTP request: consume its head, write the file, close.
pub async fn serve_page(
    mut stream: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    addr: SocketAddr,
    path: &str,
    head_only: bool,
    head_len: usize,
    limit: Duration,
) {
    let mut head = vec![0u8; head_len];
    let reply = response(path, head_only);
    let result = tokio::time::timeout(limit, async {
        stream.read_exact(&mut head).await?;
        stream.write_all(&reply).await?;
        stream.shutdown().await
    })
    .await;
    // The path is the client's text: debug-format it so control characters are escaped.
    match result {
        Ok(Ok(())) => debug!(%addr, path = ?path, "served web view file"),
        Ok(Err(error)) => debug!(%addr, %error, "web view request failed"),
        Err(_) => debug!(%addr, "web view request timed out"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_get_is_a_page_and_an_upgrade_is_an_eater() {
        let get = b"GET /app.js?x=1 HTTP/1.1\r\nHost: h\r\n\r\n";
        assert_eq!(
            classify(get),
            Route::Page {
                head_only: false,
                path: "/app.js".into(),
                head_len: get.len()
            }
        );
        let upgrade =
            b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n\r\n";
        assert_eq!(classify(upgrade), Route::Eater);
        assert_eq!(classify(b"POST / HTTP/1.1\r\n\r\n"), Route::Eater);
        assert_eq!(classify(b"GET / HTTP/1.1\r\nHost: h\r\n"), Route::Eater);
        assert!(matches!(
            classify(b"HEAD / HTTP/1.1\r\n\r\n"),
            Route::Page {
                head_only: true,
                ..
            }
        ));
    }

    #[test]
    fn responses_name_their_type_and_unknown_paths_are_404() {
        let page = String::from_utf8(response("/", false)).unwrap();
        assert!(page.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(page.contains("text/html"));
        assert!(page.contains("Content-Security-Policy"));
        assert!(page.contains("<html"));
        let head = String::from_utf8(response("/style.css", true)).unwrap();
        assert!(head.contains("text/css") && head.ends_with("\r\n\r\n"));
        let missing = String::from_utf8(response("/../etc/passwd", false)).unwrap();
        assert!(missing.starts_with("HTTP/1.1 404"));
    }
}
