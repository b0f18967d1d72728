//! The client side of a link to `nd-hub`, shared by the kitchen (`nd-sniff -h`), the Rust
//! eater library and the three eater CLIs, so TLS and tokens behave the same everywhere.
//!
//! * `HOST:PORT` means `ws://HOST:PORT` (as the original); `wss://HOST:PORT` uses TLS
//!   (rustls with the ring provider; no OpenSSL), verified against the system roots or
//!   against `--tls-ca FILE` alone when given.
//! * `--tls-client-cert/--tls-client-key` present a client certificate (hubs started with
//!   `--tls-client-ca` require one).
//! * The bearer token is read from `--token-file FILE` or the [`TOKEN_ENV`] variable,
//!   never from a command-line argument (which `ps` shows to every local user), and is
//!   sent as `Authorization: Bearer ...` on the WebSocket upgrade.
//!
//! Errors name the bad thing and what to do ([`LinkError`]); [`LinkError::is_fatal`]
//! tells reconnect loops which ones retrying cannot fix (a bad certificate, a refused
//! token).

pub mod metrics_http;
pub mod stderr;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::handshake::client::{Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

/// The environment variable a token is read from when no `--token-file` is given.
pub const TOKEN_ENV: &str = "ND_HUB_TOKEN";

/// Longest token accepted from a file or the environment (tokens are ~43 characters; a
/// bound keeps a wrong file from being sent as a header).
pub const MAX_TOKEN_BYTES: usize = 4096;

/// A connected hub link (plain or TLS).
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Why a link could not be set up or made.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The hub address does not make a valid `ws://` or `wss://` URI.
    #[error("invalid hub address {0:?}: {1} (use HOST:PORT, ws://HOST:PORT or wss://HOST:PORT)")]
    BadAddress(String, String),
    /// A certificate, key or token file could not be read or parsed.
    // The path as typed may hold control characters (ESC, BEL): shown escaped.
    #[error("cannot use {what} {}: {detail}", dumpling::text::escape_path(path))]
    BadFile {
        /// What the file was meant to hold.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// The token is empty, too long or not a valid header value.
    #[error("bad hub token from {0}: {1}")]
    BadToken(String, &'static str),
    /// The hub's certificate was refused (unknown CA, wrong name, expired...).
    #[error("TLS: the hub at {uri} presented a certificate this client does not trust: {detail} (pass the hub's CA with --tls-ca FILE, and connect by a name the certificate holds)")]
    BadCertificate {
        /// The URI tried.
        uri: String,
        /// rustls's reason.
        detail: String,
    },
    /// Another TLS failure (e.g. the hub wants a client certificate).
    #[error("TLS with {uri} failed: {detail}")]
    Tls {
        /// The URI tried.
        uri: String,
        /// What failed.
        detail: String,
    },
    /// The hub answered the upgrade with 401: no token, or one it does not know.
    #[error("the hub at {uri} refused this client's token (HTTP 401): give a valid token with --token-file FILE or {TOKEN_ENV}")]
    Unauthorized {
        /// The URI tried.
        uri: String,
    },
    /// The hub answered the upgrade with another HTTP error.
    #[error("{uri} is not a dumpling hub: HTTP {status}")]
    NotAHub {
        /// The URI tried.
        uri: String,
        /// The status line's code.
        status: u16,
    },
    /// The connection could not be made or broke during the handshake (worth retrying).
    #[error("cannot connect to {uri}: {detail}")]
    Connect {
        /// The URI tried.
        uri: String,
        /// What failed.
        detail: String,
        /// Nothing answered at all: the connection itself failed (refused, no route, no
        /// such host, cut before any answer). Users are then told where to look (is the
        /// hub running, is the address right), which would mislead for a hub that did
        /// answer (HTTP 503, a TLS port).
        unreachable: bool,
    },
}

impl LinkError {
    /// Whether retrying cannot help (bad address, files, certificate or token).
    pub fn is_fatal(&self) -> bool {
        !matches!(self, LinkError::Connect { .. })
    }

    /// Whether nothing answered at all (see [`LinkError::Connect`]): the one failure where
    /// "is nd-hub running?" is the right hint.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            LinkError::Connect {
                unreachable: true,
                ..
            }
        )
    }
}

/// A bearer token. Its `Debug` form is redacted so it never reaches a log.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl Token {
    /// Check and wrap a token (surrounding whitespace, e.g. a file's newline, is trimmed).
    pub fn new(text: &str, source: &str) -> Result<Token, LinkError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(LinkError::BadToken(source.into(), "it is empty"));
        }
        if text.len() > MAX_TOKEN_BYTES {
            return Err(LinkError::BadToken(source.into(), "it is over 4096 bytes"));
        }
        if !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(LinkError::BadToken(
                source.into(),
                "it holds spaces or non-ASCII characters",
            ));
        }
        Ok(Token(text.to_owned()))
    }

    /// The token text (to put in a header).
    pub fn secret(&self) -> &str {
        &self.0
    }
}

/// The TLS and token flags every hub client has; flatten into a clap `Cli`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LinkArgs {
    /// For wss:// hubs: trust only this CA (PEM) instead of the system roots.
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// For wss:// hubs that require client certificates: this certificate chain (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_client_key")]
    pub tls_client_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-client-cert.
    #[arg(long, value_name = "FILE", requires = "tls_client_cert")]
    pub tls_client_key: Option<PathBuf>,
    /// Read the hub token from this file (default: the ND_HUB_TOKEN environment
    /// variable; a token is never taken on the command line, where `ps` shows it).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
}

impl LinkArgs {
    /// Load the files and the token into a ready [`Link`].
    pub fn link(&self) -> Result<Link, LinkError> {
        let token = match &self.token_file {
            Some(path) => Some(Token::new(
                &read_file(path, "token file")?,
                &dumpling::text::escape_path(path),
            )?),
            None => match std::env::var(TOKEN_ENV) {
                Ok(text) if !text.trim().is_empty() => Some(Token::new(&text, TOKEN_ENV)?),
                _ => None,
            },
        };
        let client = match (&self.tls_client_cert, &self.tls_client_key) {
            (Some(cert), Some(key)) => Some((cert.as_path(), key.as_path())),
            _ => None,
        };
        Link::new(self.tls_ca.as_deref(), client, token)
    }
}

fn read_file(path: &Path, what: &'static str) -> Result<String, LinkError> {
    let bad = |detail: String| LinkError::BadFile {
        what,
        path: path.to_owned(),
        detail,
    };
    let bytes = read_bounded(path, 1 << 20).map_err(|e| bad(e.to_string()))?;
    String::from_utf8(bytes).map_err(|_| bad("not a text file (not UTF-8)".into()))
}

use bounded_read::read_bounded;

/// Read every certificate of a PEM file (at least one).
pub fn load_certs(
    path: &Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, LinkError> {
    let text = read_file(path, what)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(text.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| LinkError::BadFile {
            what,
            path: path.to_owned(),
            detail: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(LinkError::BadFile {
            what,
            path: path.to_owned(),
            detail: "no PEM certificate in it".into(),
        });
    }
    Ok(certs)
}

/// Read the first private key of a PEM file.
pub fn load_key(path: &Path, what: &'static str) -> Result<PrivateKeyDer<'static>, LinkError> {
    let text = read_file(path, what)?;
    PrivateKeyDer::from_pem_slice(text.as_bytes()).map_err(|e| LinkError::BadFile {
        what,
        path: path.to_owned(),
        detail: format!("no usable PEM private key ({e})"),
    })
}

/// A CA file as a root store.
pub fn load_roots(path: &Path, what: &'static str) -> Result<rustls::RootCertStore, LinkError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in load_certs(path, what)? {
        roots.add(cert).map_err(|e| LinkError::BadFile {
            what,
            path: path.to_owned(),
            detail: e.to_string(),
        })?;
    }
    Ok(roots)
}

/// The ring crypto provider (the only one compiled in).
///
/// rustls 0.23.48 deprecates it for lacking post-quantum key exchange; it is still the
/// project's choice because aws-lc-rs needs a C/cmake build that CI's cold budget cannot
/// afford. Revisit when ring gains ML-KEM.
#[allow(deprecated)]
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Everything a client needs to reach a hub: TLS settings (built once) and the token.
#[derive(Clone, Default)]
pub struct Link {
    tls: Option<Arc<rustls::ClientConfig>>,
    tls_error: Option<String>,
    token: Option<Token>,
}

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link")
            .field("tls", &self.tls.is_some())
            .field("token", &self.token)
            .finish()
    }
}

impl Link {
    /// A link with no CA file, client certificate or token: `ws://` as today, and `wss://`
    /// against the system roots.
    pub fn plain() -> Link {
        Link::default()
    }

    /// Build the TLS client settings (system roots unless `ca` is given) and keep `token`.
    pub fn new(
        ca: Option<&Path>,
        client: Option<(&Path, &Path)>,
        token: Option<Token>,
    ) -> Result<Link, LinkError> {
        let roots = match ca {
            Some(path) => Some(load_roots(path, "CA file")?),
            None => None,
        };
        let client = match client {
            Some((cert, key)) => Some((
                load_certs(cert, "client certificate")?,
                load_key(key, "client key")?,
            )),
            None => None,
        };
        let mut link = Link {
            tls: None,
            tls_error: None,
            token,
        };
        // System roots are loaded lazily only when no CA is given: a plain ws:// client
        // should not fail because the system store is odd.
        let roots = match roots {
            Some(roots) => roots,
            None => {
                let loaded = rustls_native_certs::load_native_certs();
                let mut roots = rustls::RootCertStore::empty();
                let (added, _) = roots.add_parsable_certificates(loaded.certs);
                if added == 0 {
                    link.tls_error = Some(
                        "no system root certificates found; pass the hub's CA with --tls-ca FILE"
                            .into(),
                    );
                    return Ok(link);
                }
                roots
            }
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| LinkError::Tls {
                uri: String::new(),
                detail: e.to_string(),
            })?
            .with_root_certificates(roots);
        let config = match client {
            Some((chain, key)) => {
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| LinkError::Tls {
                        uri: String::new(),
                        detail: format!("client certificate and key do not fit: {e}"),
                    })?
            }
            None => builder.with_no_client_auth(),
        };
        link.tls = Some(Arc::new(config));
        Ok(link)
    }

    /// Use this token (tests and libraries that read it themselves).
    pub fn with_token(mut self, token: Option<Token>) -> Link {
        self.token = token;
        self
    }

    /// Whether a token will be presented.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// Connect to `uri` (`ws://` or `wss://`), presenting the token on the upgrade.
    pub async fn connect(
        &self,
        uri: &str,
        ws_config: Option<WebSocketConfig>,
    ) -> Result<(Ws, Response), LinkError> {
        self.connect_frames(uri, ws_config, false).await
    }

    /// [`Link::connect`], also asking (`ask_binary`) that dumplings may travel as binary
    /// frames ([`dumpling::BINARY_FRAMES_HEADER`]); [`binary_granted`] on the response
    /// says whether the hub agreed. A hub that does not know the header (the original)
    /// ignores it, and the connection keeps text frames.
    pub async fn connect_frames(
        &self,
        uri: &str,
        ws_config: Option<WebSocketConfig>,
        ask_binary: bool,
    ) -> Result<(Ws, Response), LinkError> {
        self.connect_steps(uri, ws_config, ask_binary, None).await
    }

    /// [`Link::connect_frames`] within `limit` in all, saying which step did not end in
    /// time: no TCP connection (nothing answered: `unreachable`, so "is nd-hub running?"
    /// fits), or a connection whose upgrade was never answered (a peer that is no hub and
    /// waits, a `wss://` hub written as `ws://`), where that hint misled.
    pub async fn connect_frames_within(
        &self,
        uri: &str,
        ws_config: Option<WebSocketConfig>,
        ask_binary: bool,
        limit: std::time::Duration,
    ) -> Result<(Ws, Response), LinkError> {
        self.connect_steps(uri, ws_config, ask_binary, Some(limit))
            .await
    }

    /// TCP, then TLS and the upgrade, each step within what is left of `limit` (none: no
    /// limit, the caller bounds it).
    async fn connect_steps(
        &self,
        uri: &str,
        ws_config: Option<WebSocketConfig>,
        ask_binary: bool,
        limit: Option<std::time::Duration>,
    ) -> Result<(Ws, Response), LinkError> {
        let (request, connector) = self.upgrade_request(uri, ask_binary)?;
        let deadline = limit.map(|l| tokio::time::Instant::now() + l);
        let within = |what: &str| {
            format!(
                "{what} within {:.1} s",
                limit.unwrap_or_default().as_secs_f64()
            )
        };
        // As tokio-tungstenite does it: the host without IPv6 brackets, the scheme's port.
        let host = request
            .uri()
            .host()
            .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_owned())
            .ok_or_else(|| LinkError::BadAddress(uri.to_owned(), "no host".into()))?;
        let port = request
            .uri()
            .port_u16()
            .unwrap_or(if uri.starts_with("wss://") { 443 } else { 80 });
        let tcp = by_deadline(deadline, TcpStream::connect((host.as_str(), port)), || {
            LinkError::Connect {
                uri: uri.to_owned(),
                detail: within("no TCP connection"),
                unreachable: true,
            }
        })
        .await?
        .map_err(|e| classify(uri, WsError::Io(e)))?;
        // Dumplings are small frames sent as they are made.
        let _ = tcp.set_nodelay(true);
        let upgrade = tokio_tungstenite::client_async_tls_with_config(
            request,
            tcp,
            ws_config,
            Some(connector),
        );
        by_deadline(deadline, upgrade, || {
            let tls = if uri.starts_with("ws://") {
                ", or one that uses TLS (then write wss://)"
            } else {
                ""
            };
            LinkError::Connect {
                uri: uri.to_owned(),
                detail: format!(
                    "{}: what listens there is no hub{tls}",
                    within("connected, but no answer to the WebSocket upgrade")
                ),
                unreachable: false,
            }
        })
        .await?
        .map_err(|error| match classify(uri, error) {
            // Something took the connection: "is nd-hub running?" would mislead.
            LinkError::Connect {
                uri,
                detail,
                unreachable: true,
            } => LinkError::Connect {
                uri,
                detail: format!(
                    "connected, then lost the connection before the upgrade was answered: {detail}"
                ),
                unreachable: false,
            },
            other => other,
        })
    }

    /// The upgrade request for `uri` (token, binary frames asked for) and how to wrap the
    /// connection (TLS for `wss://`).
    fn upgrade_request(
        &self,
        uri: &str,
        ask_binary: bool,
    ) -> Result<(Request, Connector), LinkError> {
        let mut request = uri
            .into_client_request()
            .map_err(|e| LinkError::BadAddress(uri.to_owned(), e.to_string()))?;
        if ask_binary {
            request.headers_mut().insert(
                dumpling::BINARY_FRAMES_HEADER,
                HeaderValue::from_static(dumpling::BINARY_FRAMES_VALUE),
            );
        }
        if let Some(token) = &self.token {
            let value = HeaderValue::from_str(&format!("Bearer {}", token.secret()))
                .map_err(|_| LinkError::BadToken("the token".into(), "not a valid header value"))?;
            request.headers_mut().insert("authorization", value);
        }
        let connector = if uri.starts_with("wss://") {
            match (&self.tls, &self.tls_error) {
                (Some(config), _) => Connector::Rustls(config.clone()),
                (None, Some(error)) => {
                    return Err(LinkError::Tls {
                        uri: uri.to_owned(),
                        detail: error.clone(),
                    })
                }
                (None, None) => {
                    return Err(LinkError::Tls {
                        uri: uri.to_owned(),
                        detail: "no TLS settings".into(),
                    })
                }
            }
        } else {
            Connector::Plain
        };
        Ok((request, connector))
    }
}

/// `step`, by `deadline` (none: unbounded, the caller bounds it); `late` is the error when
/// the deadline comes first.
async fn by_deadline<T>(
    deadline: Option<tokio::time::Instant>,
    step: impl std::future::Future<Output = T>,
    late: impl FnOnce() -> LinkError,
) -> Result<T, LinkError> {
    match deadline {
        Some(at) => tokio::time::timeout_at(at, step).await.map_err(|_| late()),
        None => Ok(step.await),
    }
}

/// A note for a log line about a close frame the hub sent. tungstenite answers a close code
/// WebSocket does not allow (999, 1005, 1006, 1015, ...) with 1002 "Protocol violation" and
/// hands that reply on in place of the peer's frame, so the peer's own code is lost: a bare
/// "1002 Protocol violation" read as the hub's words. Empty for any other frame.
pub fn close_note(code: u16, reason: &str) -> &'static str {
    if code == 1002 && reason == "Protocol violation" {
        " (the hub sent 1002, or a close code WebSocket does not allow, which reads as 1002)"
    } else {
        ""
    }
}

/// Whether the hub's upgrade response agreed to binary frames
/// ([`dumpling::BINARY_FRAMES_HEADER`] with [`dumpling::BINARY_FRAMES_VALUE`]).
pub fn binary_granted(response: &Response) -> bool {
    response
        .headers()
        .get(dumpling::BINARY_FRAMES_HEADER)
        .is_some_and(|v| v.as_bytes() == dumpling::BINARY_FRAMES_VALUE.as_bytes())
}

/// A binary frame's payload as text, after checking it is UTF-8 (for connections where
/// binary frames hold text: [`dumpling::BINARY_FRAMES_HEADER`]). No copy.
///
/// Why not a text frame's own check: tungstenite checks text frames with `std`'s UTF-8
/// validator, which leaves its ASCII fast path at every non-ASCII byte; dumplings with
/// many (DNS names from real captures) made that check a quarter of the hub's CPU.
/// `simdutf8` checks the same thing (it accepts exactly what `std` accepts) several times
/// faster. On invalid bytes the error is tungstenite's own for a text frame
/// (`WsError::Utf8` with `std`'s message), so a peer sees the same outcome either way.
pub fn text_from_binary(
    bytes: bytes::Bytes,
) -> Result<tokio_tungstenite::tungstenite::Utf8Bytes, WsError> {
    if simdutf8::basic::from_utf8(&bytes).is_err() {
        // The rare path: `std` again, only for the message that says where.
        return Err(match std::str::from_utf8(&bytes) {
            Err(error) => WsError::Utf8(error.to_string()),
            Ok(_) => WsError::Utf8("invalid UTF-8".into()),
        });
    }
    // SAFETY: `simdutf8::basic::from_utf8` just accepted these exact bytes as UTF-8, and
    // `Bytes` is immutable, so they stay valid UTF-8 for the `Utf8Bytes`' whole life.
    #[allow(unsafe_code)]
    let text = unsafe { tokio_tungstenite::tungstenite::Utf8Bytes::from_bytes_unchecked(bytes) };
    Ok(text)
}

/// Turn a handshake error into a [`LinkError`] that says what to do.
pub fn classify(uri: &str, error: WsError) -> LinkError {
    let uri = uri.to_owned();
    match error {
        WsError::Http(response) if response.status().as_u16() == 401 => {
            LinkError::Unauthorized { uri }
        }
        // Our hub's answer when all its connection slots are taken (`--max-kitchens`,
        // `--max-eaters`): worth retrying, as the closed connection it used to be was.
        WsError::Http(response) if response.status().as_u16() == 503 => LinkError::Connect {
            uri,
            detail: "the hub is at its connection limit (HTTP 503); retrying".into(),
            unreachable: false,
        },
        WsError::Http(response) => LinkError::NotAHub {
            uri,
            status: response.status().as_u16(),
        },
        WsError::Url(e) => LinkError::BadAddress(uri, e.to_string()),
        WsError::Io(e) => match e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            Some(rustls::Error::InvalidCertificate(reason)) => LinkError::BadCertificate {
                uri,
                detail: format!("{reason:?}"),
            },
            Some(other) => LinkError::Tls {
                uri,
                detail: other.to_string(),
            },
            None => LinkError::Connect {
                uri,
                detail: e.to_string(),
                unreachable: true,
            },
        },
        WsError::Tls(e) => LinkError::Tls {
            uri,
            detail: e.to_string(),
        },
        // A TLS hub answers a plain request with a TLS record, which is no HTTP.
        WsError::Protocol(ProtocolError::HttparseError(e)) if uri.starts_with("ws://") => {
            LinkError::Connect {
                detail: format!(
                    "the answer is not HTTP ({e}); if the hub uses TLS, write wss:// and \
                     give --tls-ca"
                ),
                uri,
                unreachable: false,
            }
        }
        // A TLS hub (`nd-hub --tls-cert`) drops a plain request without a word: the
        // connection ends before any answer ("Handshake not finished" was all users saw).
        WsError::Protocol(ProtocolError::HandshakeIncomplete) if uri.starts_with("ws://") => {
            LinkError::Connect {
                detail: "the connection was closed before any answer to the WebSocket \
                         upgrade; if the hub uses TLS, write wss:// and give --tls-ca"
                    .into(),
                uri,
                unreachable: false,
            }
        }
        other => LinkError::Connect {
            uri,
            detail: other.to_string(),
            unreachable: false,
        },
    }
}

/// Build a hub URI from `HOST:PORT` (the original prefixes `ws://`) or a `ws://`/`wss://`
/// URI.
pub fn hub_uri(hub: &str) -> Result<String, LinkError> {
    let bad = |why: &str| LinkError::BadAddress(hub.to_owned(), why.to_owned());
    if hub.starts_with("http://") || hub.starts_with("https://") {
        return Err(bad(
            "a hub speaks WebSocket: write ws:// or wss://, or just HOST:PORT",
        ));
    }
    let uri = if hub.starts_with("ws://") || hub.starts_with("wss://") {
        hub.to_owned()
    } else {
        format!("ws://{hub}")
    };
    let request = uri
        .as_str()
        .into_client_request()
        .map_err(|e| bad(&e.to_string()))?;
    // An explicit host and port: `localhost` alone went to port 80, `:11347` and
    // `host:abc` were accepted and retried forever.
    let target = request.uri();
    if target.host().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    match target.port_u16() {
        Some(0) => Err(bad("port 0")),
        Some(_) => Ok(uri),
        // A port that is there but no 16-bit number (65536, -1) is not missing.
        None => {
            let authority = target.authority().map_or("", |a| a.as_str());
            let after_host = authority.rsplit(']').next().unwrap_or("");
            match after_host.rsplit_once(':').map(|(_, port)| port) {
                Some(port) if !port.is_empty() => Err(bad(&format!(
                    "port {} is not a port number (1-65535)",
                    dumpling::text::escape(port, 32)
                ))),
                _ => Err(bad("no port")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The error of a plain `ws://` upgrade to a peer on 127.0.0.1 that reads the request,
    /// writes `answer` and closes.
    fn plain_upgrade_answered_with(answer: &'static [u8]) -> LinkError {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            use std::io::{Read, Write};
            let (mut tcp, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let _ = tcp.read(&mut buf);
            let _ = tcp.write_all(answer);
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let error = rt
            .block_on(Link::plain().connect(&format!("ws://{addr}"), None))
            .map(|_| ())
            .expect_err("no hub there");
        let _ = server.join();
        error
    }

    #[test]
    fn a_plain_client_at_a_tls_port_is_told_to_use_wss() {
        // A TLS server answers an HTTP upgrade with a TLS alert record: no HTTP at all.
        let error = plain_upgrade_answered_with(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x46]);
        assert!(error.to_string().contains("wss://"), "{error}");
    }

    #[test]
    fn a_plain_client_whose_connection_is_dropped_unanswered_is_told_of_wss() {
        // What a TLS hub does with a plain upgrade request: reads it and closes.
        let error = plain_upgrade_answered_with(&[]);
        assert!(
            matches!(
                error,
                LinkError::Connect {
                    unreachable: false,
                    ..
                }
            ),
            "{error:?}"
        );
        assert!(error.to_string().contains("wss://"), "{error}");
    }

    #[test]
    fn a_connect_within_a_limit_says_which_step_ran_out_of_time() {
        // Accepts, reads the request, never answers (another service on the port).
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = silent.local_addr().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let fail_within = |uri: &str, ms: u64| {
            rt.block_on(Link::plain().connect_frames_within(
                uri,
                None,
                false,
                std::time::Duration::from_millis(ms),
            ))
            .map(|_| ())
            .expect_err("no hub there")
        };
        for uri in [
            format!("ws://{addr}"),
            format!("ws://[::ffff:127.0.0.1]:{}", addr.port()),
        ] {
            let error = fail_within(&uri, 300);
            match &error {
                LinkError::Connect {
                    detail,
                    unreachable: false,
                    ..
                } => assert!(
                    detail.contains("no answer to the WebSocket upgrade within 0.3 s")
                        && detail.contains("wss://"),
                    "{uri}: {detail}"
                ),
                other => panic!("{uri}: {other:?}"),
            }
        }
        // Takes the connection and resets it: no hint that the hub is not running.
        let resetting = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let resetting_addr = resetting.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (tcp, _) = resetting.accept().unwrap();
            // Closed with the request unread: the kernel resets the connection.
            std::thread::sleep(std::time::Duration::from_millis(300));
            drop(tcp);
        });
        let error = fail_within(&format!("ws://{resetting_addr}"), 5000);
        let _ = server.join();
        assert!(
            matches!(
                &error,
                LinkError::Connect {
                    unreachable: false,
                    detail,
                    ..
                } if detail.starts_with("connected, then lost the connection")
            ),
            "{error:?}"
        );
        // Nothing listens: unreachable, at once.
        drop(silent);
        let error = fail_within(&format!("ws://{addr}"), 5000);
        assert!(error.is_unreachable(), "{error:?}");
    }

    #[test]
    fn a_close_code_websocket_does_not_allow_gets_a_note() {
        use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
        use tokio_tungstenite::tungstenite::protocol::CloseFrame;
        use tokio_tungstenite::tungstenite::{self, Message};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (tcp, _) = listener.accept().unwrap();
            tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)))
                .unwrap();
            let mut ws = tungstenite::accept(tcp).unwrap();
            let _ = ws.close(Some(CloseFrame {
                code: CloseCode::from(999),
                reason: "bye".into(),
            }));
            while ws.read().is_ok() {}
        });
        let tcp = std::net::TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let (mut ws, _) = tungstenite::client(format!("ws://{addr}/"), tcp).unwrap();
        let frame = loop {
            match ws.read() {
                Ok(Message::Close(frame)) => break frame.expect("a close frame"),
                Ok(_) => continue,
                Err(e) => panic!("no close frame: {e}"),
            }
        };
        drop(ws);
        let _ = server.join();
        let (code, reason) = (u16::from(frame.code), frame.reason.to_string());
        // What tungstenite hands on for the hub's 999: its own reply.
        assert_eq!((code, reason.as_str()), (1002, "Protocol violation"));
        assert!(close_note(code, &reason).contains("does not allow"));
        assert_eq!(close_note(1000, "bye"), "");
        assert_eq!(close_note(1002, "bad frame"), "");
    }

    #[test]
    fn hub_addresses_need_a_host_and_a_port() {
        for good in [
            "localhost:11347",
            "127.0.0.1:1",
            "[::1]:11348",
            "ws://h:1/x",
            "wss://hub.example:443",
        ] {
            assert!(hub_uri(good).is_ok(), "{good}");
        }
        for bad in [
            "localhost",
            ":11347",
            "127.0.0.1:",
            "127.0.0.1:0",
            "127.0.0.1:abc",
            "127.0.0.1:99999",
            "http://127.0.0.1:11347",
            "ws://",
            "",
        ] {
            let e = hub_uri(bad).expect_err(bad).to_string();
            assert!(e.contains("HOST:PORT"), "{bad}: {e}");
        }
        // A port out of range is named as such, not as missing.
        for (bad, said) in [("127.0.0.1:65536", "65536"), ("127.0.0.1:240613", "240613")] {
            let e = hub_uri(bad).expect_err(bad).to_string();
            assert!(
                e.contains(&format!("port {said} is not a port number")),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn certificate_and_token_files_are_read_bounded() {
        // (The reading itself is `bounded_read`'s, tested there.)
        let error = read_file(Path::new("/dev/zero"), "token file")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("token file") && error.contains("not a regular file"),
            "{error}"
        );
    }

    #[test]
    fn text_from_binary_accepts_exactly_what_std_accepts_with_std_words() {
        let mut cases: Vec<Vec<u8>> = [
            &b""[..],
            b"plain ascii {\"a\": 1}",
            "\u{fffd}\u{fffd} b\u{fc}cher \u{540d}\u{524d} \u{1f600}".as_bytes(),
            b"\xff",
            b"ok then \xc3",     // truncated two-byte sequence
            b"\xc0\xaf",         // overlong '/'
            b"\xed\xa0\x80",     // a surrogate
            b"\xf4\x90\x80\x80", // past U+10FFFF
            b"\xe2\x82",         // truncated three-byte sequence
        ]
        .iter()
        .map(|c| c.to_vec())
        .collect();
        // Long inputs, so the SIMD paths see every byte value at every offset of a block.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for len in [63usize, 64, 65, 200, 4097] {
            for _ in 0..200 {
                let mut v = "\u{fffd}".repeat(len / 3).into_bytes();
                v.truncate(len);
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let at = (x as usize) % len.max(1);
                if let Some(b) = v.get_mut(at) {
                    *b = (x >> 32) as u8;
                }
                cases.push(v);
            }
        }
        for case in cases {
            let got = text_from_binary(bytes::Bytes::from(case.clone()));
            match std::str::from_utf8(&case) {
                Ok(text) => assert_eq!(got.expect("valid").as_str(), text),
                Err(error) => assert_eq!(
                    got.expect_err("invalid").to_string(),
                    WsError::from(error).to_string()
                ),
            }
        }
    }

    #[test]
    fn uris_and_tokens() {
        assert_eq!(hub_uri("h:1").unwrap(), "ws://h:1");
        assert_eq!(hub_uri("wss://h:1").unwrap(), "wss://h:1");
        assert!(hub_uri("h:1:2:3 x").is_err());
        assert!(Token::new("  \n", "x").is_err());
        assert!(Token::new("a b", "x").is_err());
        let token = Token::new("abc\n", "x").unwrap();
        assert_eq!(token.secret(), "abc");
        assert_eq!(format!("{token:?}"), "Token(<redacted>)");
    }

    #[test]
    fn missing_ca_file_is_named() {
        let error = Link::new(Some(Path::new("/nonexistent/ca.pem")), None, None).unwrap_err();
        assert!(error.to_string().contains("/nonexistent/ca.pem"), "{error}");
        assert!(error.is_fatal());
    }
}
