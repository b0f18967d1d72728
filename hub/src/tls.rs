//! `nd-hub --tls-cert FILE --tls-key FILE [--tls-client-ca FILE]`: TLS (rustls, ring) on
//! both ports, optional client certificates, and certificate hot reload.
//!
//! Hot reload: the certificate and key are served through [`ReloadingCert`], which the
//! reload loop replaces when either file changes (or on SIGHUP). Only new handshakes see
//! the new certificate; established connections keep their session and are not dropped.
//!
//! [`HubStream`] is what the connection tasks read and write: plain TCP or TLS over TCP.
//! Plain keeps the eater loop's readiness trick (see [`HubStream::poll_incoming_ready`]).

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::SystemTime;

use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tracing::{info, warn};

/// Most client certificate names looked at (a bound on what a peer makes the hub copy).
pub const MAX_CERT_NAMES: usize = 16;

/// Why TLS cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate or key file is unusable (the message names it).
    #[error(transparent)]
    File(#[from] hub_link::LinkError),
    /// rustls refused the key or the settings.
    #[error("TLS setup: {0}")]
    Setup(String),
}

/// The TLS files the hub serves.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Certificate chain (PEM), leaf first.
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
    /// When set, clients must present a certificate issued by this CA (PEM).
    pub client_ca: Option<PathBuf>,
}

fn load_certified_key(files: &TlsFiles) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = hub_link::load_certs(&files.cert, "TLS certificate")?;
    let key = hub_link::load_key(&files.key, "TLS key")?;
    let signing = hub_link::provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| {
            TlsError::Setup(format!("{}: {e}", dumpling::text::escape_path(&files.key)))
        })?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| {
        TlsError::Setup(format!(
            "{} does not belong to {}: {e}",
            dumpling::text::escape_path(&files.key),
            dumpling::text::escape_path(&files.cert)
        ))
    })?;
    Ok(Arc::new(certified))
}

/// The served certificate, replaceable while running.
#[derive(Debug)]
pub struct ReloadingCert {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

/// The hub's TLS state: the acceptor and what is needed to reload its certificate.
pub struct Tls {
    files: TlsFiles,
    cert: Arc<ReloadingCert>,
    modified: Mutex<(Option<SystemTime>, Option<SystemTime>)>,
    /// The acceptor every connection goes through.
    pub acceptor: tokio_rustls::TlsAcceptor,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("files", &self.files).finish()
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl Tls {
    /// Load the files and build the server settings.
    pub fn load(files: TlsFiles) -> Result<Tls, TlsError> {
        let cert = Arc::new(ReloadingCert {
            current: RwLock::new(load_certified_key(&files)?),
        });
        let builder = rustls::ServerConfig::builder_with_provider(hub_link::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Setup(e.to_string()))?;
        let builder = match &files.client_ca {
            Some(ca) => {
                let roots = hub_link::load_roots(ca, "client CA file")?;
                let verifier = WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    hub_link::provider(),
                )
                .build()
                .map_err(|e| {
                    TlsError::Setup(format!("{}: {e}", dumpling::text::escape_path(ca)))
                })?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(cert.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let stamps = (modified(&files.cert), modified(&files.key));
        Ok(Tls {
            files,
            cert,
            modified: Mutex::new(stamps),
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        })
    }

    /// Reload the certificate and key if either file changed (or `force`); a bad pair is
    /// logged and the old one kept.
    pub fn reload(&self, force: bool) {
        let stamps = (modified(&self.files.cert), modified(&self.files.key));
        let mut last = self.modified.lock().unwrap_or_else(|p| p.into_inner());
        if !force && *last == stamps {
            return;
        }
        *last = stamps;
        match load_certified_key(&self.files) {
            Ok(key) => {
                *self.cert.current.write().unwrap_or_else(|p| p.into_inner()) = key;
                info!(cert = %dumpling::text::escape_path(&self.files.cert), "TLS certificate reloaded (new connections use it)");
            }
            Err(error) => warn!(%error, "TLS certificate not reloaded; keeping the previous one"),
        }
    }
}

/// A connection's byte stream: plain TCP or TLS over TCP.
#[derive(Debug)]
pub enum HubStream {
    /// `ws://`.
    Plain(TcpStream),
    /// `wss://`.
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    /// `wss://` on the eater port, its request head already read once to route it
    /// (`route_tls`): those bytes are read again first.
    TlsRewound(Box<crate::route_tls::Rewind>),
}

impl HubStream {
    /// For plain TCP, wait until the socket is readable (tungstenite zero-fills its read
    /// buffer on every read attempt, so the eater loop reads only when there is something
    /// to read). TLS may hold decrypted bytes the socket no longer signals, so it is always
    /// "ready" and the caller's read itself registers the wake-up.
    pub fn poll_incoming_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            HubStream::Plain(tcp) => tcp.poll_read_ready(cx),
            HubStream::Tls(_) | HubStream::TlsRewound(_) => Poll::Ready(Ok(())),
        }
    }

    /// True for TLS connections.
    pub fn is_tls(&self) -> bool {
        matches!(self, HubStream::Tls(_) | HubStream::TlsRewound(_))
    }

    /// The subjectAltName DNS names (lowercase, at most [`MAX_CERT_NAMES`]) of the client
    /// certificate, which rustls has verified against `--tls-client-ca` by now; empty for
    /// plain connections and clients without a certificate. They can name an auth
    /// principal (`cert_name`, see [`crate::auth`]).
    pub fn client_cert_names(&self) -> Vec<String> {
        let tls = match self {
            HubStream::Tls(tls) => tls.as_ref(),
            HubStream::TlsRewound(rewound) => rewound.tls(),
            HubStream::Plain(_) => return Vec::new(),
        };
        let Some(leaf) = tls.get_ref().1.peer_certificates().and_then(|c| c.first()) else {
            return Vec::new();
        };
        match webpki::EndEntityCert::try_from(leaf) {
            Ok(cert) => cert
                .valid_dns_names()
                .filter(|n| !n.starts_with('*'))
                .take(MAX_CERT_NAMES)
                .map(str::to_ascii_lowercase)
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

impl AsyncRead for HubStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            HubStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            HubStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            HubStream::TlsRewound(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for HubStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            HubStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            HubStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            HubStream::TlsRewound(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            HubStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            HubStream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
            HubStream::TlsRewound(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            HubStream::Plain(s) => s.is_write_vectored(),
            HubStream::Tls(s) => s.is_write_vectored(),
            HubStream::TlsRewound(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            HubStream::Plain(s) => Pin::new(s).poll_flush(cx),
            HubStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            HubStream::TlsRewound(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            HubStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            HubStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            HubStream::TlsRewound(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
