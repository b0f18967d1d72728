//! The TLS ClientHello: server name (SNI, RFC 6066), ALPN (RFC 7301) and versions, read
//! by hand from the first bytes of a TLS connection.
//!
//! Works on the first TCP segment of a connection (or any buffer starting with a TLS
//! handshake record). A ClientHello split over several segments or records is read as
//! far as the bytes go: the extensions that did not arrive are simply missing.

/// What a ClientHello says.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientHello<'a> {
    /// `legacy_version` of the ClientHello (0x0303 for TLS 1.2 and 1.3).
    pub legacy_version: u16,
    /// The `server_name` extension's host name (ASCII, as sent; not lower-cased).
    pub server_name: Option<&'a str>,
    /// ALPN protocol names in the client's order (at most [`MAX_ALPN`]).
    pub alpn: Vec<&'a str>,
    /// Highest version in `supported_versions` (0x0304 = TLS 1.3), if present.
    pub max_supported_version: Option<u16>,
    /// Whether the record was cut before the end of the ClientHello.
    pub truncated: bool,
}

/// ALPN entries kept.
pub const MAX_ALPN: usize = 16;

/// A cursor over a byte slice that never panics.
struct Cursor<'a> {
    b: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn u8(&mut self) -> Option<u8> {
        let (&x, rest) = self.b.split_first()?;
        self.b = rest;
        Some(x)
    }
    fn u16(&mut self) -> Option<u16> {
        let v = u16::from_be_bytes([*self.b.first()?, *self.b.get(1)?]);
        self.b = &self.b[2..];
        Some(v)
    }
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.b.len() {
            return None;
        }
        let (head, rest) = self.b.split_at(n);
        self.b = rest;
        Some(head)
    }
    /// Takes up to `n` bytes (fewer if the buffer ends) and reports whether all came.
    fn take_upto(&mut self, n: usize) -> (&'a [u8], bool) {
        let k = n.min(self.b.len());
        let (head, rest) = self.b.split_at(k);
        self.b = rest;
        (head, k == n)
    }
}

/// Whether `payload` starts like a TLS handshake record (cheap pre-check).
#[inline]
pub fn looks_like_handshake(payload: &[u8]) -> bool {
    payload.len() >= 6 && payload[0] == 0x16 && payload[1] == 0x03 && payload[5] == 0x01
}

/// Parses the ClientHello at the start of `payload` (a TLS record), or `None` if the
/// bytes are not a TLS ClientHello.
pub fn client_hello(payload: &[u8]) -> Option<ClientHello<'_>> {
    if !looks_like_handshake(payload) {
        return None;
    }
    let mut rec = Cursor { b: payload };
    rec.take(3)?; // content type, record version
    let rec_len = usize::from(rec.u16()?);
    let (fragment, rec_whole) = rec.take_upto(rec_len);
    let mut hs = Cursor { b: fragment };
    if hs.u8()? != 1 {
        return None;
    }
    let len_bytes = hs.take(3)?;
    let hs_len = usize::from(len_bytes[0]) << 16
        | usize::from(len_bytes[1]) << 8
        | usize::from(len_bytes[2]);
    let (body, hs_whole) = hs.take_upto(hs_len);
    let mut hello = ClientHello {
        truncated: !(rec_whole && hs_whole),
        ..ClientHello::default()
    };
    let mut c = Cursor { b: body };
    hello.legacy_version = c.u16()?;
    c.take(32)?; // random
    let sid = usize::from(c.u8()?);
    c.take(sid)?;
    let suites = usize::from(c.u16()?);
    c.take(suites)?;
    let comp = usize::from(c.u8()?);
    c.take(comp)?;
    let Some(ext_len) = c.u16() else {
        return Some(hello); // no extensions (or cut right here)
    };
    let (exts, _) = c.take_upto(usize::from(ext_len));
    let mut e = Cursor { b: exts };
    while let (Some(kind), Some(len)) = (e.u16(), e.u16()) {
        let Some(data) = e.take(usize::from(len)) else {
            hello.truncated = true;
            break;
        };
        match kind {
            0 => hello.server_name = server_name(data),
            16 => hello.alpn = alpn(data),
            43 => {
                let mut v = Cursor { b: data };
                let n = usize::from(v.u8().unwrap_or(0));
                let versions = v.take(n).unwrap_or(&[]);
                hello.max_supported_version = versions
                    .chunks_exact(2)
                    .map(|p| u16::from_be_bytes([p[0], p[1]]))
                    .filter(|v| v & 0x0f0f != 0x0a0a) // GREASE values
                    .max();
            }
            _ => {}
        }
    }
    Some(hello)
}

fn server_name(data: &[u8]) -> Option<&str> {
    let mut c = Cursor { b: data };
    let list_len = usize::from(c.u16()?);
    let mut list = Cursor {
        b: c.take(list_len)?,
    };
    while let Some(kind) = list.u8() {
        let len = usize::from(list.u16()?);
        let name = list.take(len)?;
        if kind == 0 {
            // host_name: ASCII per RFC 6066; reject anything with controls or non-ASCII.
            if name.is_empty() || !name.iter().all(|b| b.is_ascii_graphic()) {
                return None;
            }
            return std::str::from_utf8(name).ok();
        }
    }
    None
}

fn alpn(data: &[u8]) -> Vec<&str> {
    let mut out = Vec::new();
    let mut c = Cursor { b: data };
    let Some(list_len) = c.u16() else { return out };
    let Some(list) = c.take(usize::from(list_len)) else {
        return out;
    };
    let mut l = Cursor { b: list };
    while let Some(n) = l.u8() {
        let Some(p) = l.take(usize::from(n)) else {
            break;
        };
        if out.len() == MAX_ALPN {
            break;
        }
        if let Ok(s) = std::str::from_utf8(p) {
            out.push(s);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ClientHello with SNI `example.com`, ALPN h2/http/1.1, TLS 1.3.
    pub(crate) fn hello() -> Vec<u8> {
        let mut ext = Vec::new();
        let name = b"example.com";
        ext.extend_from_slice(&[0, 0]);
        ext.extend_from_slice(&((name.len() + 5) as u16).to_be_bytes());
        ext.extend_from_slice(&((name.len() + 3) as u16).to_be_bytes());
        ext.push(0);
        ext.extend_from_slice(&(name.len() as u16).to_be_bytes());
        ext.extend_from_slice(name);
        let protos: &[&[u8]] = &[b"h2", b"http/1.1"];
        let list: Vec<u8> = protos
            .iter()
            .flat_map(|p| std::iter::once(p.len() as u8).chain(p.iter().copied()))
            .collect();
        ext.extend_from_slice(&[0, 16]);
        ext.extend_from_slice(&((list.len() + 2) as u16).to_be_bytes());
        ext.extend_from_slice(&(list.len() as u16).to_be_bytes());
        ext.extend_from_slice(&list);
        ext.extend_from_slice(&[0, 43, 0, 5, 4, 0x3a, 0x3a, 0x03, 0x04]);
        let mut body = vec![0x03, 0x03];
        body.extend_from_slice(&[7; 32]);
        body.push(0);
        body.extend_from_slice(&[0, 2, 0x13, 0x01, 1, 0]);
        body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        body.extend_from_slice(&ext);
        let mut hs = vec![1, 0];
        hs.extend_from_slice(&(body.len() as u16).to_be_bytes());
        hs.extend_from_slice(&body);
        let mut rec = vec![0x16, 0x03, 0x01];
        rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
        rec.extend_from_slice(&hs);
        rec
    }

    #[test]
    fn reads_sni_alpn_versions() {
        let bytes = hello();
        let h = client_hello(&bytes).expect("a ClientHello");
        assert_eq!(h.server_name, Some("example.com"));
        assert_eq!(h.alpn, ["h2", "http/1.1"]);
        assert_eq!(h.max_supported_version, Some(0x0304));
        assert_eq!(h.legacy_version, 0x0303);
        assert!(!h.truncated);
    }

    #[test]
    fn truncation_and_garbage_never_panic() {
        let bytes = hello();
        for cut in 0..bytes.len() {
            if let Some(h) = client_hello(&bytes[..cut]) {
                assert!(h.truncated, "cut at {cut} must be reported");
            }
        }
        let mut x: u32 = 7;
        for _ in 0..5000 {
            let mut buf = bytes.clone();
            for _ in 0..4 {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                let i = (x >> 8) as usize % buf.len();
                buf[i] = (x >> 24) as u8;
            }
            let _ = client_hello(&buf);
        }
        assert!(client_hello(b"GET / HTTP/1.1\r\n").is_none());
        assert!(
            client_hello(&[0x16, 3, 1, 0, 0, 1]).is_none(),
            "record shorter than its header"
        );
    }
}
