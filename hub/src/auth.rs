//! `nd-hub --auth FILE`: principals, tokens checked on the WebSocket upgrade, and the
//! per-dumpling identity rules.
//!
//! The file is TOML:
//!
//! ```toml
//! [[principal]]
//! name = "sensor-a"            # for logs and status
//! role = "kitchen"             # kitchen | eater | admin
//! token_sha256 = "9f86d0..."   # `nd-hub token` prints a token and this hash
//! kitchens = ["sensor-a"]      # kitchen: the metadata.kitchen names it may use
//!
//! [[principal]]
//! name = "dns-team"
//! role = "eater"
//! token_sha256 = "..."
//! chefs = ["DNSLookupChef"]    # eater, optional: only these chefs' dumplings
//! kitchens = ["sensor-a"]      # eater, optional: only these kitchens' dumplings
//! ```
//!
//! Certificate names (mutual TLS, `--tls-client-ca`): a principal may carry
//! `cert_name = "sensor-b"` instead of (or besides) `token_sha256`. A connection that
//! presents no token but a client certificate, verified against the client CA, whose
//! subjectAltName holds that DNS name (exact, case-insensitive; wildcards never match) is
//! that principal. For a kitchen the certificate name is then its identity: `kitchens`
//! defaults to `[cert_name]`, so it may send only as the name its certificate carries. A
//! token, when presented, takes precedence (an unknown token is refused even with a good
//! certificate), so one rule decides each connection.
//!
//! Tokens are stored as the SHA-256 of the token. That is enough (no slow password hash)
//! because tokens are 256-bit random strings made by `nd-hub token`: a stolen file cannot
//! be brute-forced, and a fast hash lets the check be one map lookup on the upgrade path.
//! The lookup is keyed by the hash, so timing reveals nothing about the token itself.
//!
//! Invariants: a connection is authorised once, on the upgrade, before any hello is read
//! (refusals are HTTP 401, or 403 for a token of the wrong role); a reload that removes or
//! changes a connection's principal closes that connection ([`Session::revoked`]).

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tracing::{info, warn};

use crate::Side;

/// The subprotocol a browser offers next to `bearer.TOKEN`; the hub echoes it.
pub const SUBPROTOCOL: &str = "netdumplings";
/// Prefix of the subprotocol that carries a token (browsers cannot set headers).
pub const SUBPROTOCOL_TOKEN_PREFIX: &str = "bearer.";
/// Longest token looked at (a bound on what an outsider makes the hub hash).
pub const MAX_TOKEN_BYTES: usize = 4096;

/// Close code for a connection whose token was revoked (or whose principal changed).
pub const REVOKED_CODE: u16 = 4401;
/// Reason sent with [`REVOKED_CODE`].
pub const REVOKED_REASON: &str = "token revoked";

/// The upgrade callback of both ports: under `--auth`, authorise the request (the
/// principal goes to `principal`); in every mode, echo the [`SUBPROTOCOL`] if offered.
// The error type is tungstenite's handshake callback's; it is built once per refusal.
#[allow(clippy::result_large_err)]
pub fn check_upgrade(
    auth: Option<&Arc<Auth>>,
    request: &Request,
    mut response: Response,
    side: Side,
    peer: Peer<'_>,
    principal: &mut Option<Arc<Principal>>,
) -> Result<Response, ErrorResponse> {
    if let Some(auth) = auth {
        *principal = Some(auth.authorize_peer(request, side, peer)?);
    }
    if offers_subprotocol(request) {
        response.headers_mut().insert(
            "sec-websocket-protocol",
            tokio_tungstenite::tungstenite::http::HeaderValue::from_static(SUBPROTOCOL),
        );
    }
    Ok(response)
}

/// Who is upgrading: its address and the DNS names of its verified client certificate
/// (empty without mutual TLS).
#[derive(Debug, Clone, Copy)]
pub struct Peer<'a> {
    /// Where it connects from.
    pub addr: SocketAddr,
    /// Lowercase subjectAltName DNS names of its client certificate.
    pub cert_names: &'a [String],
}

/// Resolves when `session`'s token is revoked; never without a session (no `--auth`).
pub async fn revoked(session: Option<Session>) {
    match session {
        Some(session) => session.revoked().await,
        None => std::future::pending().await,
    }
}

/// An outsider's name for a log line: debug-escaped and cut to 64 characters.
pub fn shown(name: Option<&str>) -> String {
    match name {
        None => "(none)".into(),
        Some(name) if name.chars().count() > 64 => {
            format!("{:?}...", name.chars().take(64).collect::<String>())
        }
        Some(name) => format!("{name:?}"),
    }
}

/// Why the auth file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The file could not be read.
    #[error("cannot read the auth file {path}: {error}", path = dumpling::text::escape_path(.0), error = .1)]
    Read(PathBuf, std::io::Error),
    /// Not valid TOML, or wrong fields.
    #[error("bad auth file {path}: {why}", path = dumpling::text::escape_path(.0), why = .1)]
    Parse(PathBuf, String),
    /// A principal is wrong (names it and the problem).
    #[error("bad auth file {path}: principal {name:?}: {why}", path = dumpling::text::escape_path(.0), name = .1, why = .2)]
    Principal(PathBuf, String, String),
    /// The file parses but lists no principal (empty, or only comments): every upgrade
    /// would be refused, so such a hub serves nobody.
    #[error("the auth file {path} lists no principal (it is empty or holds only comments), so nobody could connect: add [[principal]] entries (`nd-hub token` makes a token and its token_sha256; see README \"Deployment\"), or leave out --auth to run without authentication", path = dumpling::text::escape_path(.0))]
    NoPrincipals(PathBuf),
}

/// A principal's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Connects to the kitchen port and sends dumplings under its kitchen names.
    Kitchen,
    /// Connects to the eater port and reads (possibly filtered) dumplings.
    Eater,
    /// Either port, no restriction.
    Admin,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEntry {
    name: String,
    role: Role,
    #[serde(default)]
    token_sha256: Option<String>,
    #[serde(default)]
    cert_name: Option<String>,
    #[serde(default)]
    kitchens: Option<Vec<String>>,
    #[serde(default)]
    chefs: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    principal: Vec<FileEntry>,
}

/// One principal of the auth file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Its name (for logs and status).
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// SHA-256 of its token (none: it connects by certificate name only).
    pub token_sha256: Option<[u8; 32]>,
    /// The DNS name (lowercase) its client certificate carries, under mutual TLS.
    pub cert_name: Option<String>,
    /// Kitchens: the `metadata.kitchen` names it may use. Eaters: if set, only dumplings
    /// from these kitchens.
    pub kitchens: Option<BTreeSet<String>>,
    /// Eaters: if set, only dumplings from these chefs.
    pub chefs: Option<BTreeSet<String>>,
}

impl Principal {
    /// Whether this principal may connect on `side`.
    pub fn may_use(&self, side: Side) -> bool {
        matches!(
            (self.role, side),
            (Role::Admin, _) | (Role::Kitchen, Side::Kitchen) | (Role::Eater, Side::Eater)
        )
    }

    /// Kitchens: may it send a dumpling whose `metadata.kitchen` is `kitchen`?
    pub fn may_send_as(&self, kitchen: Option<&str>) -> bool {
        match (self.role, &self.kitchens, kitchen) {
            (Role::Admin, _, _) => true,
            (_, Some(allowed), Some(kitchen)) => allowed.contains(kitchen),
            _ => false,
        }
    }

    /// Eaters: is this principal limited to some chefs or kitchens?
    pub fn is_restricted(&self) -> bool {
        self.role == Role::Eater && (self.chefs.is_some() || self.kitchens.is_some())
    }

    /// Eaters: may it see a dumpling of `chef` from `kitchen`?
    pub fn may_see(&self, chef: &str, kitchen: Option<&str>) -> bool {
        if self.role != Role::Eater {
            return true;
        }
        let chef_ok = self.chefs.as_ref().is_none_or(|c| c.contains(chef));
        let kitchen_ok = match &self.kitchens {
            None => true,
            Some(allowed) => kitchen.is_some_and(|k| allowed.contains(k)),
        };
        chef_ok && kitchen_ok
    }
}

/// SHA-256 of `token`, as bytes.
pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// A new random token (256 bits, URL-safe characters) and its SHA-256 hex, for
/// `nd-hub token`.
pub fn new_token() -> (String, String) {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut rng = rand::rng();
    // 43 characters of a 64-letter alphabet = 258 bits.
    let token: String = (0..43)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    let hash = hex(&hash_token(&token));
    (token, hash)
}

/// The principals of one version of the file, by token hash and by certificate name.
#[derive(Debug, Default)]
pub struct Table {
    by_hash: HashMap<[u8; 32], Arc<Principal>>,
    by_cert: HashMap<String, Arc<Principal>>,
}

/// A certificate name as written in the file: a DNS name, no wildcard, lowercased.
fn cert_name(text: &str) -> Option<String> {
    let name = text.trim().to_ascii_lowercase();
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    ok.then_some(name)
}

impl Table {
    /// Parse the TOML text of an auth file (`path` only names it in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Table, AuthError> {
        let file: File =
            toml::from_str(text).map_err(|e| AuthError::Parse(path.to_owned(), e.to_string()))?;
        let mut by_hash = HashMap::new();
        let mut by_cert = HashMap::new();
        for mut entry in file.principal {
            let bad =
                |why: &str| AuthError::Principal(path.to_owned(), entry.name.clone(), why.into());
            let hash = match &entry.token_sha256 {
                Some(text) => Some(unhex(text).ok_or_else(|| {
                    bad("token_sha256 must be 64 hex digits (see `nd-hub token`)")
                })?),
                None => None,
            };
            let cert = match &entry.cert_name {
                Some(text) => Some(cert_name(text).ok_or_else(|| {
                    bad("cert_name must be a DNS name of its client certificate (letters, digits, '-', '.'; no wildcard)")
                })?),
                None => None,
            };
            if hash.is_none() && cert.is_none() {
                return Err(bad(
                    "give token_sha256 (see `nd-hub token`) or cert_name (mutual TLS), or both",
                ));
            }
            // A kitchen known by its certificate sends as the certificate's name unless
            // the file says otherwise.
            if let (Role::Kitchen, Some(name), None) = (entry.role, &cert, &entry.kitchens) {
                entry.kitchens = Some(vec![name.clone()]);
            }
            match entry.role {
                Role::Kitchen if entry.kitchens.as_ref().is_none_or(Vec::is_empty) => {
                    return Err(bad(
                        "a kitchen needs `kitchens = [...]`, the names it may send as",
                    ))
                }
                Role::Kitchen if entry.chefs.is_some() => {
                    return Err(bad("`chefs` applies to eaters only"))
                }
                Role::Admin if entry.chefs.is_some() || entry.kitchens.is_some() => {
                    return Err(bad("an admin is not restricted; remove `chefs`/`kitchens`"))
                }
                _ => {}
            }
            let principal = Arc::new(Principal {
                name: entry.name.clone(),
                role: entry.role,
                token_sha256: hash,
                cert_name: cert.clone(),
                kitchens: entry.kitchens.clone().map(|v| v.into_iter().collect()),
                chefs: entry.chefs.clone().map(|v| v.into_iter().collect()),
            });
            if let Some(hash) = hash {
                if by_hash.insert(hash, principal.clone()).is_some() {
                    return Err(bad("two principals share one token"));
                }
            }
            if let Some(cert) = cert {
                if by_cert.insert(cert, principal).is_some() {
                    return Err(bad("two principals share one cert_name"));
                }
            }
        }
        Ok(Table { by_hash, by_cert })
    }

    /// The principal holding `token`, if any.
    pub fn lookup(&self, token: &str) -> Option<&Arc<Principal>> {
        self.by_hash.get(&hash_token(token))
    }

    /// The principal whose `cert_name` is one of `names` (a verified client certificate's
    /// DNS names, lowercase), if any.
    pub fn lookup_cert(&self, names: &[String]) -> Option<&Arc<Principal>> {
        names.iter().find_map(|n| self.by_cert.get(n))
    }

    /// Whether `principal` is still in the table, unchanged (else its connections close).
    pub fn holds(&self, principal: &Principal) -> bool {
        let same = |p: &Arc<Principal>| **p == *principal;
        match (&principal.token_sha256, &principal.cert_name) {
            (Some(hash), _) => self.by_hash.get(hash).is_some_and(same),
            (None, Some(name)) => self.by_cert.get(name).is_some_and(same),
            (None, None) => false,
        }
    }

    /// Whether some principal is known by certificate name (then the hub should ask for
    /// client certificates).
    pub fn uses_cert_names(&self) -> bool {
        !self.by_cert.is_empty()
    }

    /// Number of principals.
    pub fn len(&self) -> usize {
        let cert_only = self
            .by_cert
            .values()
            .filter(|p| p.token_sha256.is_none())
            .count();
        self.by_hash.len() + cert_only
    }

    /// True when no principal is listed (then nobody can connect).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Where a request carried its token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSource {
    /// `Authorization: Bearer ...`.
    Header,
    /// `Sec-WebSocket-Protocol: bearer.TOKEN` (browsers).
    Subprotocol,
    /// `?token=...` in the request target (browsers, page links).
    Query,
}

/// Find the token in an upgrade request: the `Authorization: Bearer` header first, then a
/// `bearer.TOKEN` subprotocol, then a `token=` query parameter. Pure (fuzzed).
pub fn token_from_request(request: &Request) -> Option<(&str, TokenSource)> {
    if let Some(value) = request.headers().get("authorization") {
        let text = value.to_str().ok()?;
        let (scheme, token) = text.trim().split_once(' ')?;
        if scheme.eq_ignore_ascii_case("bearer") {
            return bounded(token.trim()).map(|t| (t, TokenSource::Header));
        }
        return None;
    }
    for value in request.headers().get_all("sec-websocket-protocol") {
        let Ok(text) = value.to_str() else { continue };
        for protocol in text.split(',') {
            if let Some(token) = protocol.trim().strip_prefix(SUBPROTOCOL_TOKEN_PREFIX) {
                return bounded(token).map(|t| (t, TokenSource::Subprotocol));
            }
        }
    }
    let query = request.uri().query()?;
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))
        .and_then(bounded)
        .map(|t| (t, TokenSource::Query))
}

fn bounded(token: &str) -> Option<&str> {
    (!token.is_empty() && token.len() <= MAX_TOKEN_BYTES).then_some(token)
}

/// Whether the request offered the [`SUBPROTOCOL`] (then the response must echo it, or a
/// browser drops the connection).
pub fn offers_subprotocol(request: &Request) -> bool {
    request
        .headers()
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == SUBPROTOCOL)
}

/// Refusals logged per [`LOG_WINDOW`] (then counted, and said in one line), so a scanner
/// cannot flood the log.
const LOG_BURST: u32 = 10;
const LOG_WINDOW: Duration = Duration::from_secs(10);

/// The hub's live auth state: the current table, its file, and the refusal counters.
#[derive(Debug)]
pub struct Auth {
    path: PathBuf,
    table: RwLock<Arc<Table>>,
    modified: Mutex<Option<SystemTime>>,
    generation: watch::Sender<u64>,
    /// Upgrades refused (no token, unknown token, wrong role).
    pub refused_connections: AtomicU64,
    log_limit: crate::log_limit::LogLimit,
}

impl Auth {
    /// Load the file. A file with no principal is an error ([`AuthError::NoPrincipals`]):
    /// a hub that refuses every connection is a mistake, better said at start than found
    /// by the first kitchen that is turned away.
    pub fn load(path: &Path) -> Result<Auth, AuthError> {
        let (table, modified) = read_table(path)?;
        if table.is_empty() {
            return Err(AuthError::NoPrincipals(path.to_owned()));
        }
        Ok(Auth {
            path: path.to_owned(),
            table: RwLock::new(Arc::new(table)),
            modified: Mutex::new(modified),
            generation: watch::Sender::new(0),
            refused_connections: AtomicU64::new(0),
            log_limit: crate::log_limit::LogLimit::new(LOG_BURST, LOG_WINDOW),
        })
    }

    /// The current table.
    pub fn table(&self) -> Arc<Table> {
        self.table.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Re-read the file; on error, or when it lists no principal, keep the old table (and
    /// say so). Connections whose principal disappeared or changed are then closed by
    /// their tasks.
    pub fn reload(&self, why: &str) {
        match read_table(&self.path) {
            Ok((table, modified)) if table.is_empty() => {
                // An empty file is most often one caught half-written (truncated, not yet
                // filled); taking it would close every connection and refuse every new
                // one. To shut everyone out on purpose, stop the hub.
                *self.modified.lock().unwrap_or_else(|p| p.into_inner()) = modified;
                warn!(file = %dumpling::text::escape_path(&self.path),
                    "auth file not reloaded ({why}): it lists no principal (empty, or only \
                     comments); keeping the previous principals. Add [[principal]] entries; \
                     to refuse everyone, stop nd-hub");
            }
            Ok((table, modified)) => {
                let count = table.len();
                *self.table.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(table);
                *self.modified.lock().unwrap_or_else(|p| p.into_inner()) = modified;
                self.generation.send_modify(|g| *g += 1);
                info!(file = %dumpling::text::escape_path(&self.path), principals = count, "auth file reloaded ({why})");
            }
            Err(error) => {
                // Keep the last good table: a half-saved file must not lock everyone out.
                *self.modified.lock().unwrap_or_else(|p| p.into_inner()) =
                    modified_time(&self.path);
                warn!(%error, "auth file not reloaded; keeping the previous principals");
            }
        }
    }

    /// Reload when the file's modification time changed since the last load.
    pub fn reload_if_changed(&self) {
        let now = modified_time(&self.path);
        let changed = *self.modified.lock().unwrap_or_else(|p| p.into_inner()) != now;
        if changed {
            self.reload("file changed");
        }
    }

    /// Check an upgrade request for `side`: the principal, or the HTTP refusal to send.
    #[allow(clippy::result_large_err)] // tungstenite's refusal type, see check_upgrade
    pub fn authorize(
        &self,
        request: &Request,
        side: Side,
        addr: SocketAddr,
    ) -> Result<Arc<Principal>, ErrorResponse> {
        self.authorize_peer(
            request,
            side,
            Peer {
                addr,
                cert_names: &[],
            },
        )
    }

    /// [`Auth::authorize`] for a peer that may have presented a client certificate: with
    /// no token, its certificate names are matched against the `cert_name`s.
    #[allow(clippy::result_large_err)] // tungstenite's refusal type, see check_upgrade
    pub fn authorize_peer(
        &self,
        request: &Request,
        side: Side,
        peer: Peer<'_>,
    ) -> Result<Arc<Principal>, ErrorResponse> {
        let addr = peer.addr;
        let table = self.table();
        let (status, reason) = match token_from_request(request) {
            None => match table.lookup_cert(peer.cert_names) {
                Some(principal) if principal.may_use(side) => return Ok(principal.clone()),
                Some(_) => (StatusCode::FORBIDDEN, "certificate not valid on this port"),
                None if peer.cert_names.is_empty() => (StatusCode::UNAUTHORIZED, "no token"),
                None => (
                    StatusCode::UNAUTHORIZED,
                    "no token, and no principal has this client certificate's name",
                ),
            },
            Some((token, _)) => match table.lookup(token) {
                None => (StatusCode::UNAUTHORIZED, "unknown token"),
                Some(principal) if principal.may_use(side) => return Ok(principal.clone()),
                Some(_) => (StatusCode::FORBIDDEN, "token not valid on this port"),
            },
        };
        self.refused_connections.fetch_add(1, Ordering::Relaxed);
        self.log_refusal(addr, side, reason);
        Err(refusal(status, reason))
    }

    fn log_refusal(&self, addr: SocketAddr, side: Side, reason: &str) {
        self.log_limit.log("refused connections", || {
            warn!(%addr, ?side, reason, "refused connection: {reason} (HTTP 401/403 on the upgrade)");
        });
    }

    /// A session for a connection authorised as `principal`.
    pub fn session(self: &Arc<Self>, principal: Arc<Principal>) -> Session {
        Session {
            auth: self.clone(),
            principal,
            generation: self.generation.subscribe(),
        }
    }
}

/// An HTTP refusal for the upgrade.
pub fn refusal(status: StatusCode, reason: &str) -> ErrorResponse {
    let mut response = ErrorResponse::new(Some(format!("{reason}\n")));
    *response.status_mut() = status;
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            "www-authenticate",
            tokio_tungstenite::tungstenite::http::HeaderValue::from_static("Bearer"),
        );
    }
    response
}

fn modified_time(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn read_table(path: &Path) -> Result<(Table, Option<SystemTime>), AuthError> {
    let modified = modified_time(path);
    let bytes = bounded_read::read_bounded(path, 16 << 20)
        .map_err(|e| AuthError::Read(path.to_owned(), e))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| AuthError::Parse(path.to_owned(), "not a text file (not UTF-8)".into()))?;
    Ok((Table::parse(&text, path)?, modified))
}

/// One authorised connection's view of the auth state.
#[derive(Debug)]
pub struct Session {
    auth: Arc<Auth>,
    /// Who connected.
    pub principal: Arc<Principal>,
    generation: watch::Receiver<u64>,
}

impl Session {
    /// Resolves once a reload removed or changed this connection's principal (then the
    /// connection must be closed). Create once per connection and keep it pinned.
    pub async fn revoked(mut self) {
        loop {
            if self.generation.changed().await.is_err() {
                return std::future::pending().await;
            }
            if !self.auth.table().holds(&self.principal) {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    fn request(uri: &str, headers: &[(&'static str, &str)]) -> Request {
        let mut request = uri.into_client_request().unwrap();
        for (k, v) in headers {
            request.headers_mut().append(*k, v.parse().unwrap());
        }
        request
    }

    #[test]
    fn tokens_come_from_header_subprotocol_or_query() {
        let r = request("ws://h/", &[("authorization", "Bearer abc")]);
        assert_eq!(token_from_request(&r), Some(("abc", TokenSource::Header)));
        let r = request(
            "ws://h/",
            &[("sec-websocket-protocol", "netdumplings, bearer.xyz")],
        );
        assert_eq!(
            token_from_request(&r),
            Some(("xyz", TokenSource::Subprotocol))
        );
        assert!(offers_subprotocol(&r));
        let r = request("ws://h/?a=1&token=q", &[]);
        assert_eq!(token_from_request(&r), Some(("q", TokenSource::Query)));
        let r = request("ws://h/", &[("authorization", "Basic abc")]);
        assert_eq!(token_from_request(&r), None);
        assert_eq!(token_from_request(&request("ws://h/", &[])), None);
    }

    #[test]
    fn table_checks_roles_and_names() {
        let (token, hash) = new_token();
        assert_eq!(token.len(), 43);
        let text = format!(
            "[[principal]]\nname = \"k\"\nrole = \"kitchen\"\ntoken_sha256 = \"{hash}\"\nkitchens = [\"a\"]\n"
        );
        let table = Table::parse(&text, Path::new("f")).unwrap();
        let p = table.lookup(&token).unwrap();
        assert!(p.may_use(Side::Kitchen) && !p.may_use(Side::Eater));
        assert!(p.may_send_as(Some("a")) && !p.may_send_as(Some("b")) && !p.may_send_as(None));
        assert!(table.lookup("other").is_none());
        let bad = text.replace("kitchens = [\"a\"]\n", "");
        let error = Table::parse(&bad, Path::new("f")).unwrap_err().to_string();
        assert!(
            error.contains("\"k\"") && error.contains("kitchens"),
            "{error}"
        );
        let error = Table::parse(
            "[[principal]]\nname=\"x\"\nrole=\"eater\"\ntoken_sha256=\"zz\"\n",
            Path::new("f"),
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("64 hex"), "{error}");
    }

    #[test]
    fn a_file_with_no_principal_is_refused_at_load_and_ignored_on_reload() {
        let dir = std::env::temp_dir().join(format!("nd-hub-auth-empty-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("auth.toml");
        for text in ["", "# nobody yet\n\n# [[principal]]\n"] {
            std::fs::write(&path, text).unwrap();
            let error = Auth::load(&path).unwrap_err();
            assert!(matches!(error, AuthError::NoPrincipals(_)), "{error}");
            let said = error.to_string();
            assert!(
                said.contains(&path.display().to_string()) && said.contains("[[principal]]"),
                "{said}"
            );
        }
        let (token, hash) = new_token();
        std::fs::write(
            &path,
            format!("[[principal]]\nname = \"e\"\nrole = \"eater\"\ntoken_sha256 = \"{hash}\"\n"),
        )
        .unwrap();
        let auth = Auth::load(&path).unwrap();
        std::fs::write(&path, "").unwrap();
        auth.reload("test");
        assert!(
            auth.table().lookup(&token).is_some(),
            "the old principals are kept"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn certificate_names_identify_principals() {
        let text = "[[principal]]\nname = \"b\"\nrole = \"kitchen\"\ncert_name = \"Sensor-B\"\n";
        let table = Table::parse(text, Path::new("f")).unwrap();
        assert_eq!(table.len(), 1);
        let p = table.lookup_cert(&["x".into(), "sensor-b".into()]).unwrap();
        assert!(p.may_send_as(Some("sensor-b")) && !p.may_send_as(Some("sensor-a")));
        assert!(p.token_sha256.is_none() && table.holds(p));
        assert!(table.lookup_cert(&["sensor-a".into()]).is_none());
        for bad in ["*.example", "a b", ""] {
            let text =
                format!("[[principal]]\nname = \"b\"\nrole = \"eater\"\ncert_name = \"{bad}\"\n");
            let error = Table::parse(&text, Path::new("f")).unwrap_err().to_string();
            assert!(error.contains("cert_name"), "{error}");
        }
        let error = Table::parse(
            "[[principal]]\nname = \"n\"\nrole = \"eater\"\n",
            Path::new("f"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("token_sha256") && error.contains("cert_name"),
            "{error}"
        );
    }

    #[test]
    fn eater_filters() {
        let p = Principal {
            name: "e".into(),
            role: Role::Eater,
            token_sha256: Some([0; 32]),
            cert_name: None,
            kitchens: None,
            chefs: Some(["A".to_owned()].into()),
        };
        assert!(p.is_restricted());
        assert!(p.may_see("A", None) && !p.may_see("B", Some("k")));
    }
}
