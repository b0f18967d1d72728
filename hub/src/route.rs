//! What a connection's first request is, decided before the WebSocket handshake: a
//! WebSocket upgrade (a kitchen or an eater), a plain HTTP `GET`/`HEAD` on the eater port
//! (the web view, [`crate::web`]), or a request that can never become either, which is
//! answered with an HTTP error naming what is wrong.
//!
//! Why answer instead of leaving it to the WebSocket library: tungstenite drops the
//! connection without a word when an upgrade request is malformed, so `curl`, a proxy or a
//! misconfigured client saw "empty reply from server" and nothing in the hub's log at the
//! default level. The decision here runs tungstenite's own request parser and checks
//! ([`create_response`]) on the same bytes, so it refuses exactly what the handshake would
//! have refused, never more: a request it passes goes to the handshake byte for byte.
//!
//! Plain connections are *peeked* ([`route`]); TLS ones are read and rewound
//! ([`crate::route_tls`]). Everything is bounded: the head must fit in [`MAX_HEAD_BYTES`]
//! and arrive, like the handshake and the hello after it, within `--hello-timeout` of the
//! connection; one request per connection. A head that does not fit, or has more header
//! fields than tungstenite reads ([`MAX_HEADERS`]), is answered `431 Request Header Fields
//! Too Large` naming the limit (it was a bare close, or a reset when the peer's bytes were
//! left unread); every refusal reads on for a moment after its answer so the close does
//! not reset the connection before the answer is read.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError, ProtocolError};
use tokio_tungstenite::tungstenite::handshake::machine::TryParse;
use tokio_tungstenite::tungstenite::handshake::server::{create_response, Request};
use tracing::debug;

use crate::Side;

/// Largest request head (request line plus headers, with the blank line) taken; a longer
/// one is answered 431. 16 KiB, Node's default: a browser's cookies for the hub's host
/// (shared by every port of it) and a token in the query fit.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// Most header fields in a request: tungstenite's own limit (`httparse` reads into an
/// array of this many), past which its parser gives up.
pub const MAX_HEADERS: usize = 124;

/// After a refusal, how long and how much the hub reads on before it closes (a close with
/// unread bytes is a TCP reset, which can destroy the answer before the peer reads it).
const LINGER: Duration = Duration::from_secs(1);
/// See [`LINGER`].
const LINGER_BYTES: usize = 1 << 20;

/// Longest HTTP method the peek waits for (`OPTIONS` is 7 bytes; this leaves room for
/// extension methods and stops at anything that is not a method token at once).
const MAX_METHOD_BYTES: usize = 16;

/// What the first bytes of a connection are.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// A WebSocket upgrade, or bytes that are not a whole HTTP request head (not HTTP at
    /// all, cut short, too long): the WebSocket handshake decides, as it always has.
    WebSocket,
    /// A plain HTTP GET or HEAD for `path` on the eater port: the web view.
    Page {
        /// `true` for HEAD (headers only).
        head_only: bool,
        /// The request target's path (query removed).
        path: String,
        /// Length of the request head including the blank line.
        head_len: usize,
    },
    /// A whole HTTP request that cannot become a connection on this port.
    Refuse {
        /// The answer.
        refusal: Refusal,
        /// Length of the request head including the blank line.
        head_len: usize,
    },
}

/// An HTTP error answer to a request that is not a usable WebSocket upgrade.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    /// Status line text, e.g. `426 Upgrade Required`.
    pub status: &'static str,
    /// Extra response headers (each ending in CRLF) the status calls for.
    pub headers: &'static str,
    /// What was wrong and what to do, for the body and the log.
    pub reason: String,
}

/// Decide from a complete request head (pure; unit-tested).
pub fn classify(head: &[u8], side: Side) -> Route {
    let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Route::WebSocket;
    };
    let head_len = end + 4;
    if side == Side::Eater {
        if let Some(page) = page_route(&head[..end], head_len) {
            return page;
        }
    }
    let request = match Request::try_parse(&head[..head_len]) {
        Ok(Some((_, request))) => request,
        Err(WsError::Capacity(CapacityError::TooManyHeaders)) => {
            return too_large(
                side,
                head_len,
                format!("more than {MAX_HEADERS} header fields; send fewer headers"),
            )
        }
        // Not even an HTTP request head: the handshake reports it as it always has.
        Ok(None)
        | Err(WsError::Protocol(ProtocolError::HttparseError(_)))
        | Err(WsError::HttpFormat(_))
        | Err(WsError::Capacity(_)) => return Route::WebSocket,
        Err(error) => return refuse_for(&error, side, head_len),
    };
    match create_response(&request) {
        Ok(_) => Route::WebSocket,
        Err(error) => refuse_for(&error, side, head_len),
    }
}

/// A plain `GET`/`HEAD` (no `Upgrade: websocket`) of a path: the web view. `head` is
/// without its blank line.
fn page_route(head: &[u8], head_len: usize) -> Option<Route> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n");
    let mut parts = lines.next()?.split(' ');
    let (method, target) = (parts.next()?, parts.next()?);
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return None,
    };
    let upgrade = lines.any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("upgrade")
                && value.trim().eq_ignore_ascii_case("websocket")
        })
    });
    if upgrade {
        return None;
    }
    let path = target.split(['?', '#']).next().unwrap_or("/").to_owned();
    Some(Route::Page {
        head_only,
        path,
        head_len,
    })
}

fn port_name(side: Side) -> &'static str {
    match side {
        Side::Kitchen => "kitchen",
        Side::Eater => "eater",
    }
}

/// `431 Request Header Fields Too Large` for a head over one of the limits (`what`);
/// `head_len` bytes of it are consumed before the answer.
fn too_large(side: Side, head_len: usize, what: String) -> Route {
    Route::Refuse {
        refusal: Refusal {
            status: "431 Request Header Fields Too Large",
            headers: "",
            reason: format!(
                "netdumplings hub, {} port: request head too large: {what} (limits: \
                 {MAX_HEAD_BYTES} bytes for the request line and headers together, \
                 {MAX_HEADERS} header fields)",
                port_name(side)
            ),
        },
        head_len,
    }
}

/// The 431 for a request that may be HTTP but whose head did not end within
/// [`MAX_HEAD_BYTES`] (`seen` bytes of it were read or peeked).
pub(crate) fn head_over_limit(side: Side, seen: usize) -> Route {
    too_large(
        side,
        seen,
        format!(
            "no end of the head within {MAX_HEAD_BYTES} bytes; send fewer or smaller headers \
             (cookies, a long query)"
        ),
    )
}

/// The refusal for what tungstenite's checks said, in the words a user can act on.
fn refuse_for(error: &WsError, side: Side, head_len: usize) -> Route {
    let port = port_name(side);
    let websocket_only = match side {
        Side::Kitchen => "connect a kitchen with a WebSocket (ws:// or wss://)",
        Side::Eater => {
            "connect an eater with a WebSocket (ws:// or wss://), or GET / for the web view"
        }
    };
    let (status, headers, what) = match error {
        WsError::Protocol(ProtocolError::WrongHttpMethod) => (
            "405 Method Not Allowed",
            "Allow: GET\r\n",
            "only GET is served here".to_owned(),
        ),
        WsError::Protocol(ProtocolError::WrongHttpVersion) => (
            "505 HTTP Version Not Supported",
            "",
            "a WebSocket upgrade needs HTTP/1.1".to_owned(),
        ),
        WsError::Protocol(
            ProtocolError::MissingConnectionUpgradeHeader
            | ProtocolError::MissingUpgradeWebSocketHeader,
        ) => (
            "426 Upgrade Required",
            "Upgrade: websocket\r\n",
            format!("not a WebSocket upgrade ({error})"),
        ),
        WsError::Protocol(ProtocolError::MissingSecWebSocketVersionHeader) => (
            "426 Upgrade Required",
            "Sec-WebSocket-Version: 13\r\n",
            "only WebSocket version 13 is spoken (Sec-WebSocket-Version: 13)".to_owned(),
        ),
        other => (
            "400 Bad Request",
            "",
            format!("bad WebSocket upgrade ({other})"),
        ),
    };
    Route::Refuse {
        refusal: Refusal {
            status,
            headers,
            reason: format!("netdumplings hub, {port} port: {what}; {websocket_only}"),
        },
        head_len,
    }
}

/// Whether `seen` can still be the start of an HTTP request line: a method token of
/// capital letters, then a space.
pub(crate) fn may_be_http(seen: &[u8]) -> bool {
    let method_len = seen.iter().take_while(|b| b.is_ascii_uppercase()).count();
    match seen.get(method_len) {
        None => method_len <= MAX_METHOD_BYTES,
        Some(b' ') => (1..=MAX_METHOD_BYTES).contains(&method_len),
        Some(_) => false,
    }
}

/// Peek at the start of a plain connection until a whole request head is there (or it
/// cannot be one), by `deadline`. Returns [`Route::WebSocket`] when in doubt, so the
/// WebSocket handshake decides as before.
pub async fn route(stream: &TcpStream, side: Side, deadline: Instant) -> Route {
    let mut buf = vec![0u8; MAX_HEAD_BYTES];
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await {
            Ok(Ok(n)) => n,
            _ => return Route::WebSocket,
        };
        if n == 0 {
            return Route::WebSocket;
        }
        let seen = &buf[..n];
        // Not HTTP at all: no need to wait for more.
        if !may_be_http(seen) {
            return Route::WebSocket;
        }
        if seen.windows(4).any(|w| w == b"\r\n\r\n") {
            return classify(seen, side);
        }
        if n == buf.len() {
            return head_over_limit(side, n);
        }
        if Instant::now() >= deadline {
            return Route::WebSocket;
        }
        // A head split over several segments: peek returns at once while data waits, so
        // pause briefly rather than spin.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Whether a TLS route ([`crate::route_tls`]) should keep reading: `seen` may still be
/// an HTTP request head and is not complete yet.
pub(crate) fn wants_more(seen: &[u8]) -> bool {
    may_be_http(seen) && seen.len() < MAX_HEAD_BYTES && !seen.windows(4).any(|w| w == b"\r\n\r\n")
}

/// Answer a refused request by `deadline`: consume its head, write the error, close.
pub async fn serve_refusal(
    mut stream: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    addr: SocketAddr,
    side: Side,
    refusal: &Refusal,
    head_len: usize,
    deadline: Instant,
) {
    let body = format!("{}\n", refusal.reason);
    let reply = format!(
        "HTTP/1.1 {}\r\n{}Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        refusal.status,
        refusal.headers,
        body.len()
    );
    let mut head = vec![0u8; head_len];
    let result = tokio::time::timeout_at(deadline, async {
        // Read what was peeked, so closing does not reset the connection before the
        // answer is read.
        stream.read_exact(&mut head).await?;
        stream.write_all(reply.as_bytes()).await?;
        stream.shutdown().await
    })
    .await;
    drop(head);
    // The peer may still be sending (the rest of an oversized head, a body): read on for
    // a moment, bounded, so the close is a FIN the peer reads after the answer, not a
    // reset that may destroy it first.
    let linger_until = (Instant::now() + LINGER).min(deadline);
    let _ = tokio::time::timeout_at(linger_until, async {
        let mut sink = [0u8; 4096];
        let mut taken = 0;
        while taken < LINGER_BYTES {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => taken += n,
            }
        }
    })
    .await;
    debug!(%addr, ?side, status = refusal.status, reason = %refusal.reason,
        answered = matches!(result, Ok(Ok(()))), "refused a request that is no WebSocket upgrade");
}

#[cfg(test)]
mod tests {
    use super::*;

    const UPGRADE: &str = "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: WebSocket\r\n\
        Connection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

    fn refusal(route: Route) -> Refusal {
        match route {
            Route::Refuse { refusal, .. } => refusal,
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn plain_get_is_a_page_on_the_eater_port_only() {
        let get = b"GET /app.js?x=1 HTTP/1.1\r\nHost: h\r\n\r\n";
        assert_eq!(
            classify(get, Side::Eater),
            Route::Page {
                head_only: false,
                path: "/app.js".into(),
                head_len: get.len()
            }
        );
        assert!(matches!(
            classify(b"HEAD / HTTP/1.1\r\n\r\n", Side::Eater),
            Route::Page {
                head_only: true,
                ..
            }
        ));
        let kitchen = refusal(classify(get, Side::Kitchen));
        assert_eq!(kitchen.status, "426 Upgrade Required");
        assert!(
            kitchen.reason.contains("kitchen port"),
            "{}",
            kitchen.reason
        );
    }

    #[test]
    fn a_whole_upgrade_goes_to_the_handshake_on_both_ports() {
        for side in [Side::Kitchen, Side::Eater] {
            assert_eq!(classify(UPGRADE.as_bytes(), side), Route::WebSocket);
        }
    }

    #[test]
    fn each_broken_upgrade_is_named() {
        let without = |header: &str| {
            let mut lines: Vec<&str> = UPGRADE.split("\r\n").collect();
            lines.retain(|l| !l.starts_with(header));
            lines.join("\r\n")
        };
        let key = refusal(classify(
            without("Sec-WebSocket-Key").as_bytes(),
            Side::Eater,
        ));
        assert_eq!(key.status, "400 Bad Request");
        assert!(key.reason.contains("Sec-WebSocket-Key"), "{}", key.reason);
        let version = refusal(classify(
            without("Sec-WebSocket-Version").as_bytes(),
            Side::Kitchen,
        ));
        assert_eq!(version.status, "426 Upgrade Required");
        assert_eq!(version.headers, "Sec-WebSocket-Version: 13\r\n");
        let connection = refusal(classify(without("Connection").as_bytes(), Side::Eater));
        assert_eq!(connection.status, "426 Upgrade Required");
        let bad_key = UPGRADE.replace("dGhlIHNhbXBsZSBub25jZQ==", "short");
        assert_eq!(
            refusal(classify(bad_key.as_bytes(), Side::Kitchen)).status,
            "400 Bad Request"
        );
        let post = UPGRADE.replacen("GET", "POST", 1);
        let post = refusal(classify(post.as_bytes(), Side::Eater));
        assert_eq!(post.status, "405 Method Not Allowed");
        assert_eq!(post.headers, "Allow: GET\r\n");
        let old = UPGRADE.replacen("HTTP/1.1", "HTTP/1.0", 1);
        assert_eq!(
            refusal(classify(old.as_bytes(), Side::Kitchen)).status,
            "505 HTTP Version Not Supported"
        );
    }

    #[test]
    fn what_is_not_a_whole_http_head_goes_to_the_handshake() {
        for side in [Side::Kitchen, Side::Eater] {
            assert_eq!(
                classify(b"GET / HTTP/1.1\r\nHost: h\r\n", side),
                Route::WebSocket
            );
            assert_eq!(
                classify(b"\x16\x03\x01\x02\x00\r\n\r\n", side),
                Route::WebSocket
            );
        }
        // A header line without a colon is no HTTP (a plain GET on the eater port is still
        // served the page: it reads no header).
        assert_eq!(
            classify(b"GET / HTTP/1.1\r\nno colon\r\n\r\n", Side::Kitchen),
            Route::WebSocket
        );
    }

    #[test]
    fn too_many_header_fields_are_431_naming_the_limit() {
        let mut many = String::from("GET / HTTP/1.1\r\nHost: h\r\n");
        for i in 0..MAX_HEADERS {
            many.push_str(&format!("X-{i}: v\r\n"));
        }
        many.push_str("\r\n");
        for side in [Side::Kitchen, Side::Eater] {
            let upgrade = UPGRADE.replacen("Host: h\r\n", &many[16..many.len() - 2], 1);
            let refused = refusal(classify(upgrade.as_bytes(), side));
            assert_eq!(refused.status, "431 Request Header Fields Too Large");
            assert!(
                refused
                    .reason
                    .contains(&format!("more than {MAX_HEADERS} header fields")),
                "{}",
                refused.reason
            );
        }
        // Exactly at the limit is an ordinary upgrade.
        let mut at = String::new();
        for i in 0..MAX_HEADERS - 5 {
            at.push_str(&format!("X-{i}: v\r\n"));
        }
        let upgrade = UPGRADE.replacen("Host: h\r\n", &format!("Host: h\r\n{at}"), 1);
        assert_eq!(
            classify(upgrade.as_bytes(), Side::Kitchen),
            Route::WebSocket
        );
        let over = refusal(head_over_limit(Side::Eater, MAX_HEAD_BYTES));
        assert_eq!(over.status, "431 Request Header Fields Too Large");
        assert!(
            over.reason.contains(&MAX_HEAD_BYTES.to_string()) && over.reason.contains("eater port"),
            "{}",
            over.reason
        );
    }

    #[test]
    fn the_peek_waits_only_for_what_may_be_an_http_head() {
        assert!(may_be_http(b""));
        assert!(may_be_http(b"GE"));
        assert!(may_be_http(b"OPTIONS * HTTP/1.1"));
        assert!(!may_be_http(b"\x16\x03\x01"));
        assert!(!may_be_http(b"get /"));
        assert!(!may_be_http(b" GET"));
        assert!(!may_be_http(&[b'A'; MAX_METHOD_BYTES + 1]));
        assert!(wants_more(b"GET / HTTP/1.1\r\n"));
        assert!(!wants_more(b"GET / HTTP/1.1\r\n\r\n"));
    }
}
