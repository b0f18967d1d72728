//! `nd-hub --tls-cert FILE --tls-key FILE [--tls-client-ca FILE]`: TLS (rustls, ring) on
//! both ports, optional client certificates, and certificate hot reload.
//!
//! Hot reload: the certificate and key are served through [`ReloadingCert`], which the
//! reload loop replaces when either file changes (or on SIGHUP). Only new handshakes see
//! the new certificate; established connections keep their session and are not dropped.
//!
//! Validity: a certificate outside its notBefore..notAfter window is refused by every
//! client that checks it, so every `wss://` connection fails while the hub looks healthy.
//! At load and at each reload the leaf's dates are read ([`leaf_validity`]) and a
//! certificate that is expired, not yet valid, or expires within [`EXPIRY_WARNING`] is
//! warned about, naming the file and the date ([`validity_warning`]); it is still served
//! (a renewal can be dropped in while the hub runs). The reload poll also warns once when
//! the served certificate crosses into the warning window or expires.
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

/// A served certificate this close to its notAfter is warned about.
pub const EXPIRY_WARNING: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// A certificate's validity window, in seconds since the Unix epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// notBefore.
    pub not_before: i64,
    /// notAfter.
    pub not_after: i64,
}

/// The validity window of a DER certificate; `None` when it is no X.509 certificate
/// `x509-parser` can read.
pub fn leaf_validity(der: &[u8]) -> Option<Validity> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let validity = cert.validity();
    Some(Validity {
        not_before: validity.not_before.timestamp(),
        not_after: validity.not_after.timestamp(),
    })
}

/// How a certificate's dates stand at some moment, worst last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Standing {
    Valid,
    ExpiresSoon,
    Invalid,
}

fn standing(validity: Validity, now: i64) -> Standing {
    if now < validity.not_before || now > validity.not_after {
        Standing::Invalid
    } else if validity.not_after - now <= EXPIRY_WARNING.as_secs() as i64 {
        Standing::ExpiresSoon
    } else {
        Standing::Valid
    }
}

/// `2026-11-27 13:05:00 UTC` for seconds since the epoch.
fn utc(seconds: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(seconds) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => format!("{seconds} s after 1970 (UTC)"),
    }
}

/// What to say about a certificate file (`shown`: its name, escaped) whose leaf has
/// `validity`, at `now` (seconds since the epoch); `None` when it is valid for more than
/// [`EXPIRY_WARNING`]. Pure, unit-tested.
pub fn validity_warning(shown: &str, validity: Validity, now: i64) -> Option<String> {
    let replace = "put a valid certificate in its place (write it aside, rename it over; the hub reloads it) or send SIGHUP after replacing it";
    if now > validity.not_after {
        Some(format!(
            "TLS certificate {shown} expired on {} (notAfter): clients that check it refuse every wss:// connection; {replace}",
            utc(validity.not_after)
        ))
    } else if now < validity.not_before {
        Some(format!(
            "TLS certificate {shown} is not valid before {} (notBefore): clients that check it refuse every wss:// connection until then; check this machine's clock, or {replace}",
            utc(validity.not_before)
        ))
    } else if standing(validity, now) == Standing::ExpiresSoon {
        let left = validity.not_after - now;
        let left = if left >= 2 * 86_400 {
            format!("{} days", left / 86_400)
        } else {
            format!("{} hours", left / 3600)
        };
        Some(format!(
            "TLS certificate {shown} expires on {} (notAfter), in {left}: renew it; {replace}",
            utc(validity.not_after)
        ))
    } else {
        None
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

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

/// The certificate and key of `files`, and the leaf's validity (`None`: unreadable dates,
/// already warned about).
fn load_certified_key(files: &TlsFiles) -> Result<(Arc<CertifiedKey>, Option<Validity>), TlsError> {
    let chain = hub_link::load_certs(&files.cert, "TLS certificate")?;
    let validity = chain.first().and_then(|leaf| leaf_validity(leaf));
    if validity.is_none() {
        warn!(cert = %dumpling::text::escape_path(&files.cert),
            "cannot read the validity dates of the TLS certificate's first entry (no X.509 certificate x509-parser reads): clients may refuse it");
    }
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
    Ok((Arc::new(certified), validity))
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
    /// The served leaf's validity and how it stood when last warned about (the reload
    /// poll warns again only when it gets worse).
    validity: Mutex<(Option<Validity>, Standing)>,
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
        let (key, validity) = load_certified_key(&files)?;
        let cert = Arc::new(ReloadingCert {
            current: RwLock::new(key),
        });
        let standing = warn_validity(&files.cert, validity);
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
            validity: Mutex::new((validity, standing)),
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        })
    }

    /// Reload the certificate and key if either file changed (or `force`); a bad pair is
    /// logged and the old one kept.
    pub fn reload(&self, force: bool) {
        let stamps = (modified(&self.files.cert), modified(&self.files.key));
        let mut last = self.modified.lock().unwrap_or_else(|p| p.into_inner());
        if !force && *last == stamps {
            drop(last);
            // The same certificate, one poll later: say so once when it comes within
            // EXPIRY_WARNING of its end or passes it, not only when it was loaded.
            let mut served = self.validity.lock().unwrap_or_else(|p| p.into_inner());
            if let (Some(validity), said) = *served {
                if standing(validity, unix_now()) > said {
                    served.1 = warn_validity(&self.files.cert, Some(validity));
                }
            }
            return;
        }
        *last = stamps;
        match load_certified_key(&self.files) {
            Ok((key, validity)) => {
                *self.cert.current.write().unwrap_or_else(|p| p.into_inner()) = key;
                info!(cert = %dumpling::text::escape_path(&self.files.cert), "TLS certificate reloaded (new connections use it)");
                let standing = warn_validity(&self.files.cert, validity);
                *self.validity.lock().unwrap_or_else(|p| p.into_inner()) = (validity, standing);
            }
            Err(error) => warn!(%error, "TLS certificate not reloaded; keeping the previous one"),
        }
    }
}

/// Warn about `validity` of the certificate in `file` if it calls for it; returns how it
/// stands now.
fn warn_validity(file: &Path, validity: Option<Validity>) -> Standing {
    let Some(validity) = validity else {
        return Standing::Valid;
    };
    let now = unix_now();
    let shown = dumpling::text::escape_path(file);
    if let Some(warning) = validity_warning(&shown, validity, now) {
        warn!("{warning}");
    }
    standing(validity, now)
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

    /// The address the peer connected to (this end of the TCP connection).
    pub fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        match self {
            HubStream::Plain(tcp) => tcp.local_addr(),
            HubStream::Tls(tls) => tls.get_ref().0.local_addr(),
            HubStream::TlsRewound(rewound) => rewound.tls().get_ref().0.local_addr(),
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

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;

    #[test]
    fn expired_not_yet_valid_and_soon_expiring_certificates_are_named_with_their_date() {
        // 2026-01-01 00:00:00 UTC .. 2026-12-31 00:00:00 UTC
        let v = Validity {
            not_before: 1_767_225_600,
            not_after: 1_767_225_600 + 364 * DAY,
        };
        assert_eq!(
            validity_warning("hub.pem", v, v.not_before + 30 * DAY),
            None
        );
        let expired = validity_warning("hub.pem", v, v.not_after + 1).unwrap();
        assert!(
            expired.contains("hub.pem expired on 2026-12-31 00:00:00 UTC (notAfter)"),
            "{expired}"
        );
        let early = validity_warning("hub.pem", v, v.not_before - 60).unwrap();
        assert!(
            early.contains("not valid before 2026-01-01 00:00:00 UTC (notBefore)")
                && early.contains("clock"),
            "{early}"
        );
        let soon = validity_warning("hub.pem", v, v.not_after - 3 * DAY).unwrap();
        assert!(
            soon.contains("expires on 2026-12-31 00:00:00 UTC") && soon.contains("in 3 days"),
            "{soon}"
        );
        let hours = validity_warning("hub.pem", v, v.not_after - 5 * 3600).unwrap();
        assert!(hours.contains("in 5 hours"), "{hours}");
        assert_eq!(validity_warning("hub.pem", v, v.not_after - 8 * DAY), None);
        // Worse standings compare greater, so the poll warns only when it gets worse.
        assert!(standing(v, v.not_after + 1) > standing(v, v.not_after - DAY));
        assert!(standing(v, v.not_after - DAY) > standing(v, v.not_before));
    }

    #[test]
    fn no_certificate_has_no_dates() {
        assert_eq!(leaf_validity(b"not DER"), None);
        assert_eq!(leaf_validity(&[]), None);
    }
}
