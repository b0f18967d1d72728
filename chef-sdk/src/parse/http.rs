//! HTTP/1.x requests: the request line and headers, parsed by [`httparse`].
//!
//! Works on the first TCP segment of a request. A request whose headers continue in a
//! later segment still yields the request line and the headers that did arrive.

pub use httparse;

/// Headers examined per request; more than this and the rest are ignored.
pub const MAX_HEADERS: usize = 48;

/// An HTTP/1.x request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    /// Method (`GET`, `POST`, ...).
    pub method: &'a str,
    /// Request target as sent (`/index.html?q=1`, or absolute form through a proxy).
    pub path: &'a str,
    /// Minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    /// `Host` header.
    pub host: Option<&'a str>,
    /// `User-Agent` header.
    pub user_agent: Option<&'a str>,
    /// Whether the head was complete (ended with an empty line) in these bytes.
    pub complete: bool,
}

/// Methods we accept as the start of a request (a cheap pre-check before parsing): those
/// of RFC 9110 and WebDAV (RFC 4918) and its extensions (versioning RFC 3253, ordering
/// RFC 3648, ACL RFC 3744, SEARCH RFC 5323, CalDAV), Microsoft's WebDAV and RPC over HTTP
/// (Outlook Anywhere: `RPC_IN_DATA`, `RPC_OUT_DATA`) and SSTP methods, and UPnP's. Wireshark's
/// HTTP dissector knows these too, so a request tshark shows is not refused for its method.
const METHODS: &[&[u8]] = &[
    b"GET ",
    b"POST ",
    b"PUT ",
    b"HEAD ",
    b"DELETE ",
    b"OPTIONS ",
    b"PATCH ",
    b"CONNECT ",
    b"TRACE ",
    b"PROPFIND ",
    b"PROPPATCH ",
    b"MKCOL ",
    b"COPY ",
    b"MOVE ",
    b"LOCK ",
    b"UNLOCK ",
    b"SEARCH ",
    b"REPORT ",
    b"CHECKIN ",
    b"CHECKOUT ",
    b"UNCHECKOUT ",
    b"MKACTIVITY ",
    b"MKWORKSPACE ",
    b"VERSION-CONTROL ",
    b"BASELINE-CONTROL ",
    b"LABEL ",
    b"MERGE ",
    b"UPDATE ",
    b"ORDERPATCH ",
    b"ACL ",
    b"MKCALENDAR ",
    b"BCOPY ",
    b"BDELETE ",
    b"BMOVE ",
    b"BPROPFIND ",
    b"BPROPPATCH ",
    b"POLL ",
    b"NOTIFY ",
    b"SUBSCRIBE ",
    b"UNSUBSCRIBE ",
    b"X-MS-ENUMATTS ",
    b"RPC_IN_DATA ",
    b"RPC_OUT_DATA ",
    b"RPC_CONNECT ",
    b"CCM_POST ",
    b"SSTP_DUPLEX_POST ",
    b"M-SEARCH ",
];

/// Which bytes start some method in [`METHODS`].
///
/// Why: a stream chef asks for the first bytes of every TCP connection and most are not
/// HTTP; comparing them with all 49 methods (two `memcmp` calls each, a byte loop in wasm)
/// was half of `HTTPRequestChef`'s time on the high-cardinality corpus. One table lookup
/// now turns away nearly all of them, and only the methods sharing the first byte are
/// compared.
const METHOD_FIRST_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut i = 0;
    while i < METHODS.len() {
        table[METHODS[i][0] as usize] = true;
        i += 1;
    }
    table
};

/// The methods that could match bytes starting with `first` (all of them start with a
/// byte [`METHOD_FIRST_BYTES`] allows).
#[inline]
fn methods_starting_with(first: u8) -> impl Iterator<Item = &'static [u8]> {
    let candidates: &'static [&'static [u8]] = if METHOD_FIRST_BYTES[usize::from(first)] {
        METHODS
    } else {
        &[]
    };
    candidates.iter().copied().filter(move |m| m[0] == first)
}

/// Whether `payload` starts with a known HTTP method and a space.
#[inline]
pub fn looks_like_request(payload: &[u8]) -> bool {
    let Some(&first) = payload.first() else {
        return false;
    };
    methods_starting_with(first).any(|m| payload.starts_with(m))
}

/// Whether `bytes` could be the start of a request: it starts with a known method and a
/// space, or it is shorter than that and a prefix of one (the rest of the method may be in
/// the next segment). No bytes yet could start anything.
#[inline]
pub fn may_start_request(bytes: &[u8]) -> bool {
    let Some(&first) = bytes.first() else {
        return true;
    };
    methods_starting_with(first).any(|m| bytes.starts_with(m) || m.starts_with(bytes))
}

fn header_str(value: &[u8]) -> Option<&str> {
    std::str::from_utf8(value).ok().map(str::trim)
}

/// Parses the request head at the start of `payload`; `None` if it is not an HTTP/1.x
/// request (or the request line itself is incomplete).
pub fn request(payload: &[u8]) -> Option<Request<'_>> {
    if !looks_like_request(payload) {
        return None;
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let complete = match req.parse(payload) {
        Ok(httparse::Status::Complete(_)) => true,
        Ok(httparse::Status::Partial) => false,
        // Too many headers: the request line and the first MAX_HEADERS are still good,
        // but httparse does not report them; treat it as not parsed.
        Err(_) => return None,
    };
    let (method, path, version) = (req.method?, req.path?, req.version?);
    let mut host = None;
    let mut user_agent = None;
    // On a partial parse the unfilled slots keep an empty name: stop there.
    for h in req.headers.iter().take_while(|h| !h.name.is_empty()) {
        if host.is_none() && h.name.eq_ignore_ascii_case("host") {
            host = header_str(h.value);
        } else if user_agent.is_none() && h.name.eq_ignore_ascii_case("user-agent") {
            user_agent = header_str(h.value);
        }
    }
    Some(Request {
        method,
        path,
        version,
        host,
        user_agent,
        complete,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GET: &[u8] =
        b"GET /menu?x=1 HTTP/1.1\r\nHost: dumpling.test:8080\r\nUser-Agent: curl/8.5\r\nAccept: */*\r\n\r\n";

    #[test]
    fn reads_request_line_host_and_agent() {
        let r = request(GET).expect("a request");
        assert_eq!((r.method, r.path, r.version), ("GET", "/menu?x=1", 1));
        assert_eq!(r.host, Some("dumpling.test:8080"));
        assert_eq!(r.user_agent, Some("curl/8.5"));
        assert!(r.complete);
    }

    #[test]
    fn partial_heads_keep_what_arrived() {
        let cut = &GET[..GET.len() - 20];
        let r = request(cut).expect("request line complete");
        assert!(!r.complete);
        assert_eq!(r.host, Some("dumpling.test:8080"));
        assert_eq!(request(b"GET /only-the-start"), None, "no version yet");
        for n in 0..GET.len() {
            let _ = request(&GET[..n]);
        }
    }

    #[test]
    fn knows_the_methods_wireshark_knows_and_their_prefixes() {
        let rpc = b"RPC_IN_DATA /rpc/rpcproxy.dll?MAIL:6001 HTTP/1.1\r\nHost: mail\r\n\r\n";
        let r = request(rpc).expect("Outlook Anywhere request");
        assert_eq!((r.method, r.host), ("RPC_IN_DATA", Some("mail")));
        for m in [
            "RPC_OUT_DATA",
            "M-SEARCH",
            "VERSION-CONTROL",
            "MKCALENDAR",
            "BPROPFIND",
        ] {
            let line = format!("{m} / HTTP/1.1\r\n\r\n");
            assert_eq!(request(line.as_bytes()).map(|r| r.method), Some(m), "{m}");
            for n in 0..=m.len() + 1 {
                assert!(may_start_request(&line.as_bytes()[..n]), "{m} cut at {n}");
            }
        }
        assert!(!may_start_request(b"RPC_IN_DATAX / HTTP/1.1"));
        assert!(!may_start_request(b"\x16\x03"));
        assert!(!may_start_request(b"EHLO x"));
        assert!(!may_start_request(b"G E"));
    }

    /// The first-byte table answers exactly as comparing with every method does: for
    /// every prefix of every method with each byte after it, and every two-byte start.
    #[test]
    fn the_first_byte_table_changes_no_answer() {
        let naive_may = |b: &[u8]| METHODS.iter().any(|m| b.starts_with(m) || m.starts_with(b));
        let naive_looks = |b: &[u8]| METHODS.iter().any(|m| b.starts_with(m));
        let mut inputs: Vec<Vec<u8>> = vec![Vec::new()];
        for m in METHODS {
            for n in 0..=m.len() {
                for next in 0..=255u8 {
                    let mut b = m[..n].to_vec();
                    b.push(next);
                    inputs.push(b);
                }
            }
        }
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                inputs.push(vec![a, b]);
            }
        }
        for b in &inputs {
            assert_eq!(may_start_request(b), naive_may(b), "{b:?}");
            assert_eq!(looks_like_request(b), naive_looks(b), "{b:?}");
        }
    }

    #[test]
    fn rejects_non_requests_and_garbage() {
        assert_eq!(request(b"HTTP/1.1 200 OK\r\n\r\n"), None);
        assert_eq!(request(b"\x16\x03\x01\x02\x00"), None);
        assert_eq!(request(b"GET \x00\xff HTTP/1.1\r\n\r\n"), None);
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..100 {
            many.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(request(&many), None, "more than MAX_HEADERS headers");
    }
}
