//! Which web pages may open a WebSocket to the hub: the check of the upgrade's `Origin`
//! header (both ports, every mode).
//!
//! Why: a browser lets any page open a WebSocket to any address and only says which page
//! did in `Origin`; the server must refuse what it does not trust (cross-site WebSocket
//! hijacking). Without this, any page the operator visited could read every dumpling from a
//! default hub (no `--auth`, on localhost) and send dumplings to it.
//!
//! The rule: a request without `Origin` is no browser page (nd-sniff, nd-print, the Python
//! clients and the original's never send one) and is allowed as before. A request with an
//! `Origin` is allowed when the origin's host and port are the ones the request was sent to
//! (its `Host` header: the hub's own web view, over `http` or `https`), or when the origin
//! is listed with `--allow-origin` (`*`: any). Everything else gets HTTP 403 before any
//! token is looked at or any hello read.
//!
//! DNS rebinding: a page on an attacker's name that is then made to resolve to the hub's
//! address sends an `Origin` matching its `Host` (`http://evil.example:11348` to
//! `evil.example:11348`), so the origin rule alone lets it in. [`check_host`] closes that
//! for the hub on loopback: a browser request (one with an `Origin`) that reached a
//! loopback address must name a loopback host (`localhost`, `*.localhost`, `127.x.x.x`,
//! `[::1]`) or one listed with `--allow-host`; anything else is HTTP 403. Requests without
//! `Origin` (every non-browser client) are not affected, and a hub reached on another
//! address (a LAN name) is left to the origin rule and `--auth`, since which names point
//! at it there is the operator's DNS.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request};
use tokio_tungstenite::tungstenite::http::StatusCode;

/// A web origin or the host of a `Host` header: lowercase host, optional port.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HostPort {
    host: String,
    port: Option<u16>,
}

/// A parsed origin (`scheme://host[:port]`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct WebOrigin {
    scheme: String,
    at: HostPort,
}

impl WebOrigin {
    /// The port a browser used for it: the explicit one, else its scheme's default.
    fn port(&self) -> Option<u16> {
        self.at.port.or_else(|| default_port(&self.scheme))
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    }
}

/// `host[:port]`, `[v6]` or `[v6]:port` (a `Host` header, or an origin after its scheme).
fn parse_host_port(text: &str) -> Option<HostPort> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            after => Some(after.strip_prefix(':')?),
        };
        (format!("[{}]", host.to_ascii_lowercase()), port)
    } else {
        match text.split_once(':') {
            Some((host, port)) => (host.to_ascii_lowercase(), Some(port)),
            None => (text.to_ascii_lowercase(), None),
        }
    };
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._[]:%".contains(&b));
    if !host_ok {
        return None;
    }
    let port = match port {
        None => None,
        Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
            Some(digits.parse::<u16>().ok()?)
        }
        Some(_) => return None,
    };
    Some(HostPort { host, port })
}

/// `scheme://host[:port]` with nothing after it but an optional `/` (browsers send no path;
/// an `--allow-origin` copied from the address bar may end in `/`).
fn parse_origin(text: &str) -> Option<WebOrigin> {
    let (scheme, rest) = text.trim().split_once("://")?;
    let scheme_ok = !scheme.is_empty()
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
    if !scheme_ok || rest.contains('@') {
        return None;
    }
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains(['/', '?', '#']) {
        return None;
    }
    Some(WebOrigin {
        scheme: scheme.to_ascii_lowercase(),
        at: parse_host_port(rest)?,
    })
}

/// `--allow-origin` is neither `*` nor `scheme://host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--allow-origin {0}: not an origin; give scheme://host[:port] (e.g. https://dash.example:8443) or * for any")]
pub struct BadOrigin(String);

/// The origins `--allow-origin` lists besides the hub's own (none by default).
#[derive(Debug, Clone, Default)]
pub struct AllowedOrigins {
    any: bool,
    listed: Vec<WebOrigin>,
}

impl AllowedOrigins {
    /// Parse the `--allow-origin` values (`*` means any origin).
    pub fn parse<S: AsRef<str>>(values: &[S]) -> Result<AllowedOrigins, BadOrigin> {
        let mut allowed = AllowedOrigins::default();
        for value in values {
            let value = value.as_ref();
            if value.trim() == "*" {
                allowed.any = true;
                continue;
            }
            let origin =
                parse_origin(value).ok_or_else(|| BadOrigin(dumpling::text::escape(value, 128)))?;
            allowed.listed.push(origin);
        }
        Ok(allowed)
    }

    /// Whether `origin` is listed (same scheme, host and port).
    fn lists(&self, origin: &WebOrigin) -> bool {
        self.any
            || self.listed.iter().any(|allowed| {
                allowed.scheme == origin.scheme
                    && allowed.at.host == origin.at.host
                    && allowed.port() == origin.port()
            })
    }
}

/// Whether `origin` is the address the request was sent to (`host`, the `Host` header).
/// Schemes are not compared (the web view is served over `http` and `https` on the same
/// port); a `Host` without a port stands for the default port of the page's scheme.
fn is_own(origin: &WebOrigin, host: &HostPort) -> bool {
    if origin.at.host != host.host {
        return false;
    }
    match host.port {
        Some(port) => origin.port() == Some(port),
        None => origin.at.port.is_none() || origin.at.port == default_port(&origin.scheme),
    }
}

/// Decide an upgrade request's `Origin` (pure; unit-tested). `Err` holds the origin as the
/// request gave it (for the answer and the log).
pub fn check(request: &Request, allowed: &AllowedOrigins) -> Result<(), String> {
    let mut origins = request.headers().get_all("origin").iter();
    let Some(value) = origins.next() else {
        return Ok(());
    };
    let text = String::from_utf8_lossy(value.as_bytes()).into_owned();
    // Two Origin headers: no browser sends that; refuse rather than pick one.
    if origins.next().is_some() {
        return Err(text);
    }
    let Some(origin) = parse_origin(&text) else {
        // "null" (sandboxed frames, file:// pages) and anything unparsable.
        return match allowed.any {
            true => Ok(()),
            false => Err(text),
        };
    };
    if allowed.lists(&origin) {
        return Ok(());
    }
    let own = request
        .headers()
        .get("host")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| parse_host_port(h.trim()))
        .is_some_and(|host| is_own(&origin, &host));
    if own {
        Ok(())
    } else {
        Err(text)
    }
}

/// The HTTP 403 for a refused origin; its body says what to do.
pub fn refusal(origin: &str) -> ErrorResponse {
    let body = format!(
        "netdumplings hub: WebSocket from the web page at origin {} refused (cross-site \
         request); only the hub's own web view may connect from a browser. To allow that \
         page, start nd-hub with --allow-origin ORIGIN.\n",
        dumpling::text::escape(origin, 128)
    );
    crate::auth::refusal(StatusCode::FORBIDDEN, body.trim_end())
}

/// `--allow-host` is not a host name or address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--allow-host {0}: not a host name; give a name or address without scheme or port (e.g. hub.internal) or * for any")]
pub struct BadHost(String);

/// Host names besides the loopback ones that browser requests on a loopback address may
/// carry (`--allow-host`; none by default).
#[derive(Debug, Clone, Default)]
pub struct AllowedHosts {
    any: bool,
    listed: Vec<String>,
}

impl AllowedHosts {
    /// Parse the `--allow-host` values (`*` means any host: no rebinding check).
    pub fn parse<S: AsRef<str>>(values: &[S]) -> Result<AllowedHosts, BadHost> {
        let mut allowed = AllowedHosts::default();
        for value in values {
            let value = value.as_ref().trim();
            if value == "*" {
                allowed.any = true;
                continue;
            }
            match parse_host_port(value) {
                Some(HostPort { host, port: None }) => allowed.listed.push(host),
                _ => return Err(BadHost(dumpling::text::escape(value, 128))),
            }
        }
        Ok(allowed)
    }
}

/// Whether `host` (lowercase, IPv6 in brackets) names this machine's loopback whatever
/// DNS says: `localhost` and `*.localhost` (browsers resolve those themselves, RFC 6761)
/// and loopback address literals.
fn is_loopback_host(host: &str) -> bool {
    let name = host.strip_suffix('.').unwrap_or(host);
    if name == "localhost" || name.ends_with(".localhost") {
        return true;
    }
    let literal = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    literal
        .parse::<IpAddr>()
        .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

/// The DNS-rebinding check (pure; unit-tested): a request with an `Origin` (a browser's)
/// that came in on a loopback address (`local`) must carry a `Host` naming loopback or
/// one `allowed` lists. `Err` holds the `Host` as the request gave it.
pub fn check_host(request: &Request, local: IpAddr, allowed: &AllowedHosts) -> Result<(), String> {
    if allowed.any
        || request.headers().get("origin").is_none()
        || !local.to_canonical().is_loopback()
    {
        return Ok(());
    }
    let mut hosts = request.headers().get_all("host").iter();
    let Some(value) = hosts.next() else {
        return Err("(none)".into());
    };
    let text = String::from_utf8_lossy(value.as_bytes()).into_owned();
    if hosts.next().is_some() {
        return Err(text);
    }
    match parse_host_port(text.trim()) {
        Some(at) if is_loopback_host(&at.host) || allowed.listed.contains(&at.host) => Ok(()),
        _ => Err(text),
    }
}

/// The HTTP 403 for a browser request whose `Host` is no loopback name; its body says
/// what to do.
pub fn host_refusal(host: &str) -> ErrorResponse {
    let body = format!(
        "netdumplings hub: WebSocket from a web page refused: it was sent to the host name {} \
         on this machine's loopback address, which is not a loopback name (a page that made its \
         own DNS name point here: DNS rebinding). If you reach the hub by this name on purpose, \
         start nd-hub with --allow-host NAME; or open the page as http://localhost:PORT/.\n",
        dumpling::text::escape(host, 128)
    );
    crate::auth::refusal(StatusCode::FORBIDDEN, body.trim_end())
}

/// How many distinct peer addresses are remembered as already logged before the memory
/// starts over (bounds what a flood of sources costs).
const LOGGED_PEERS_MAX: usize = 4096;

/// Refused origins: counted, and logged once per peer address.
#[derive(Debug, Default)]
pub struct OriginRefusals {
    /// Upgrades refused for their `Origin` (for `/metrics`).
    pub refused: AtomicU64,
    logged: Mutex<HashSet<IpAddr>>,
}

impl OriginRefusals {
    /// Count a refusal; `true` when this peer address has not been logged yet (then the
    /// caller logs it).
    pub fn note(&self, peer: IpAddr) -> bool {
        self.refused.fetch_add(1, Ordering::Relaxed);
        let mut logged = self.logged.lock().unwrap_or_else(|p| p.into_inner());
        if logged.len() >= LOGGED_PEERS_MAX && !logged.contains(&peer) {
            logged.clear();
        }
        logged.insert(peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    fn request(host: &str, origin: Option<&str>) -> Request {
        let mut request = "ws://placeholder/".into_client_request().unwrap();
        request.headers_mut().insert("host", host.parse().unwrap());
        if let Some(origin) = origin {
            request
                .headers_mut()
                .insert("origin", origin.parse().unwrap());
        }
        request
    }

    fn allowed(list: &[&str]) -> AllowedOrigins {
        AllowedOrigins::parse(list).unwrap()
    }

    #[test]
    fn no_origin_is_no_browser_and_is_allowed() {
        assert_eq!(
            check(&request("127.0.0.1:11348", None), &allowed(&[])),
            Ok(())
        );
    }

    #[test]
    fn the_hubs_own_page_is_allowed_over_http_and_https() {
        let none = allowed(&[]);
        for (host, origin) in [
            ("127.0.0.1:11348", "http://127.0.0.1:11348"),
            ("127.0.0.1:11348", "https://127.0.0.1:11348"),
            ("LocalHost:11348", "http://localhost:11348"),
            ("[::1]:11348", "http://[::1]:11348"),
            ("hub.example", "https://hub.example"),
            ("hub.example", "http://hub.example:80"),
            ("hub.example:443", "https://hub.example"),
            ("hub.example:80", "http://hub.example"),
        ] {
            assert_eq!(
                check(&request(host, Some(origin)), &none),
                Ok(()),
                "{host} {origin}"
            );
        }
    }

    #[test]
    fn other_origins_are_refused_unless_listed() {
        let none = allowed(&[]);
        for (host, origin) in [
            ("127.0.0.1:11348", "https://evil.example"),
            ("127.0.0.1:11348", "http://127.0.0.1:8080"),
            ("127.0.0.1:11347", "http://127.0.0.1:11348"),
            ("127.0.0.1:11348", "http://127.0.0.1"),
            ("hub.example", "http://hub.example:8080"),
            ("hub.example:8443", "https://hub.example"),
            ("127.0.0.1:11348", "null"),
            ("127.0.0.1:11348", "http://127.0.0.1:11348/x"),
            ("127.0.0.1:11348", "http://user@127.0.0.1:11348"),
        ] {
            assert_eq!(
                check(&request(host, Some(origin)), &none),
                Err(origin.to_owned()),
                "{host} {origin}"
            );
        }
        let dash = allowed(&["https://Dash.example/"]);
        let req = |o| request("127.0.0.1:11348", Some(o));
        assert_eq!(check(&req("https://dash.example"), &dash), Ok(()));
        assert_eq!(check(&req("https://dash.example:443"), &dash), Ok(()));
        assert!(check(&req("http://dash.example"), &dash).is_err());
        assert!(check(&req("https://dash.example:8443"), &dash).is_err());
        let any = allowed(&["*"]);
        assert_eq!(check(&req("https://evil.example"), &any), Ok(()));
        assert_eq!(check(&req("null"), &any), Ok(()));
    }

    #[test]
    fn two_origin_headers_are_refused() {
        let mut r = request("127.0.0.1:11348", Some("http://127.0.0.1:11348"));
        r.headers_mut()
            .append("origin", "https://evil.example".parse().unwrap());
        assert!(check(&r, &allowed(&["*"])).is_err());
    }

    #[test]
    fn bad_allow_origin_values_are_named() {
        for bad in [
            "evil.example",
            "https://",
            "https://a/b",
            "https://a:x",
            "\u{1b}[31m",
        ] {
            let error = AllowedOrigins::parse(&[bad]).unwrap_err().to_string();
            assert!(error.contains("--allow-origin"), "{error}");
            assert!(!error.contains('\u{1b}'), "{error:?}");
        }
    }

    #[test]
    fn browser_requests_on_loopback_must_name_a_loopback_host() {
        let lo: IpAddr = [127, 0, 0, 1].into();
        let none = AllowedHosts::default();
        let page = |host: &str| request(host, Some(&format!("http://{host}")));
        for host in [
            "127.0.0.1:11348",
            "127.0.1.1:11348",
            "localhost:11348",
            "LOCALHOST",
            "localhost.",
            "hub.localhost:11348",
            "[::1]:11348",
            "[::ffff:127.0.0.1]:11348",
        ] {
            assert_eq!(check_host(&page(host), lo, &none), Ok(()), "{host}");
        }
        for host in [
            "evil.example:11348",
            "localhost.evil.example",
            "127.0.0.1.evil.example",
            "10.0.0.1:11348",
            "[::2]:11348",
        ] {
            assert_eq!(
                check_host(&page(host), lo, &none),
                Err(host.to_owned()),
                "{host}"
            );
        }
        // Not a browser (no Origin), or not reached on loopback: not this check's business.
        assert_eq!(
            check_host(&request("evil.example", None), lo, &none),
            Ok(())
        );
        let lan: IpAddr = [192, 168, 1, 5].into();
        assert_eq!(check_host(&page("evil.example"), lan, &none), Ok(()));
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert!(check_host(&page("evil.example"), mapped, &none).is_err());
        // Listed names, and `*`.
        let listed = AllowedHosts::parse(&["Hub.Internal"]).unwrap();
        assert_eq!(check_host(&page("hub.internal:11348"), lo, &listed), Ok(()));
        assert!(check_host(&page("evil.example"), lo, &listed).is_err());
        let any = AllowedHosts::parse(&["*"]).unwrap();
        assert_eq!(check_host(&page("evil.example"), lo, &any), Ok(()));
        for bad in ["http://hub", "hub:80", "a/b", "\u{1b}[31m", ""] {
            let error = AllowedHosts::parse(&[bad]).unwrap_err().to_string();
            assert!(
                error.contains("--allow-host") && !error.contains('\u{1b}'),
                "{error}"
            );
        }
    }

    #[test]
    fn each_peer_address_is_logged_once() {
        let refusals = OriginRefusals::default();
        let a: IpAddr = [127, 0, 0, 1].into();
        assert!(refusals.note(a));
        assert!(!refusals.note(a));
        assert!(refusals.note([127, 0, 0, 2].into()));
        assert_eq!(refusals.refused.load(Ordering::Relaxed), 3);
    }
}
