//! The web view on a TLS eater port: `GET /` over HTTPS gets the page, a WebSocket upgrade
//! over TLS stays an eater (`wss://`), exactly as [`crate::web`] does for plain TCP.
//!
//! Plain connections are routed by peeking at the socket; decrypted TLS bytes cannot be
//! peeked, so here the request head is read (bounded to [`web::MAX_HEAD_BYTES`], within
//! the hello timeout) and kept in a [`Rewind`], which hands those bytes out again before
//! the rest of the stream: the page server consumes the head it was given, and the
//! WebSocket handshake of an eater reads the very same request it would have read
//! without this step.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use crate::web;

/// A TLS stream whose first bytes (already read to route it) are read again first.
#[derive(Debug)]
pub struct Rewind {
    prefix: Vec<u8>,
    pos: usize,
    inner: TlsStream<TcpStream>,
}

impl Rewind {
    /// The TLS stream (its session: peer certificates and so on).
    pub fn tls(&self) -> &TlsStream<TcpStream> {
        &self.inner
    }
}

impl AsyncRead for Rewind {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pos < this.prefix.len() {
            let n = (this.prefix.len() - this.pos).min(buf.remaining());
            buf.put_slice(&this.prefix[this.pos..this.pos + n]);
            this.pos += n;
            if this.pos == this.prefix.len() {
                // Done with it: free the memory for the rest of a long eater connection.
                this.prefix = Vec::new();
                this.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Read the start of a TLS eater connection until a whole request head is there (or it
/// cannot be a plain GET/HEAD), within `limit`; returns the route and the stream with
/// everything read put back. [`web::Route::Eater`] when in doubt, so the WebSocket
/// handshake decides as before.
pub async fn route(mut inner: TlsStream<TcpStream>, limit: Duration) -> (web::Route, Rewind) {
    let mut prefix = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + limit;
    let route = loop {
        // A prefix that is not the start of "GET " / "HEAD " is no page request.
        let prefix_ok = [&b"GET "[..], &b"HEAD "[..]]
            .iter()
            .any(|m| prefix.starts_with(m) || m.starts_with(&prefix));
        if !prefix_ok || prefix.len() >= web::MAX_HEAD_BYTES {
            break web::Route::Eater;
        }
        if prefix.windows(4).any(|w| w == b"\r\n\r\n") {
            break web::classify(&prefix);
        }
        let want = buf.len().min(web::MAX_HEAD_BYTES - prefix.len());
        match tokio::time::timeout_at(deadline, inner.read(&mut buf[..want])).await {
            Ok(Ok(n)) if n > 0 => prefix.extend_from_slice(&buf[..n]),
            // End, error or timeout: the eater side reports it as it always has.
            _ => break web::Route::Eater,
        }
    };
    let rewind = Rewind {
        prefix,
        pos: 0,
        inner,
    };
    (route, rewind)
}
