//! The live web view, served on the eater port: a plain HTTP `GET` gets the page and its
//! assets (all embedded in the binary from `web/`), a WebSocket upgrade stays an eater.
//!
//! Why the eater port and not a `--web-port`: the page *is* an eater (it opens a WebSocket
//! to the same host and port it was loaded from), so serving both on one port means one
//! address to open, one port to allow through a firewall, and the same authentication as
//! every other eater once the hub has it. Original eaters never send a plain `GET` without
//! `Upgrade: websocket`, so they are unaffected.
//!
//! Which connections are page requests is decided in [`crate::route`], before the
//! WebSocket handshake; this module only has the files and answers one request.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::debug;

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

/// Answer one plain HTTP request by `deadline`: consume its head, write the file, close.
pub async fn serve_page(
    mut stream: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    addr: SocketAddr,
    path: &str,
    head_only: bool,
    head_len: usize,
    deadline: tokio::time::Instant,
) {
    let mut head = vec![0u8; head_len];
    let reply = response(path, head_only);
    let result = tokio::time::timeout_at(deadline, async {
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
