//! [`crate::route`] for TLS connections: `GET /` over HTTPS on the eater port gets the
//! web view, a broken upgrade its HTTP error, a WebSocket upgrade over TLS (`wss://`) the
//! handshake, exactly as for plain TCP.
//!
//! Plain connections are routed by peeking at the socket; decrypted TLS bytes cannot be
//! peeked, so here the request head is read (bounded to [`route::MAX_HEAD_BYTES`], within
//! the hello timeout) and kept in a [`Rewind`], which hands those bytes out again before
//! the rest of the stream: the page server and the refusal consume the head they were
//! given, and the WebSocket handshake reads the very same request it would have read
//! without this step.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use crate::route::{self, Route};
use crate::Side;

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

/// Read the start of a TLS connection until a whole request head is there (or it cannot
/// be one), by `deadline`; returns the route and the stream with everything read put
/// back. [`Route::WebSocket`] when in doubt, so the WebSocket handshake decides as before.
pub async fn route(
    mut inner: TlsStream<TcpStream>,
    side: Side,
    deadline: tokio::time::Instant,
) -> (Route, Rewind) {
    let mut prefix = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    let route = loop {
        if prefix.windows(4).any(|w| w == b"\r\n\r\n") {
            break route::classify(&prefix, side);
        }
        if !route::wants_more(&prefix) {
            // A head that may be HTTP but did not end within the limit gets its 431.
            if prefix.len() >= route::MAX_HEAD_BYTES && route::may_be_http(&prefix) {
                break route::head_over_limit(side, prefix.len());
            }
            break Route::WebSocket;
        }
        let want = buf.len().min(route::MAX_HEAD_BYTES - prefix.len());
        match tokio::time::timeout_at(deadline, inner.read(&mut buf[..want])).await {
            Ok(Ok(n)) if n > 0 => prefix.extend_from_slice(&buf[..n]),
            // End, error or timeout: the handshake reports it as it always has.
            _ => break Route::WebSocket,
        }
    };
    let rewind = Rewind {
        prefix,
        pos: 0,
        inner,
    };
    (route, rewind)
}
