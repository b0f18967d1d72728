//! Serializers for field types chefs print in every dumpling, giving exactly serde's text
//! for them at a fraction of the cost in wasm: use with `#[serde(serialize_with = "...")]`.
//!
//! Why: serde writes a `SocketAddr` through `core::fmt` (`Display` of the address, then the
//! port), which in a chef cost several hundred nanoseconds per address; `TopTalkersChef`
//! prints two per ended connection, one connection per packet on high-cardinality traffic.
//! IPv4 is written here from its digits; IPv6 (rarer, and with `Display`'s compression
//! rules) still goes through serde.

use std::net::SocketAddr;

use serde::Serializer;

/// A `SocketAddr` as serde writes it (`"10.0.0.5:443"`, `"[2001:db8::1]:443"`).
pub fn socket_addr<S: Serializer>(addr: &SocketAddr, s: S) -> Result<S::Ok, S::Error> {
    match addr {
        SocketAddr::V4(v4) => {
            let mut buf = [0u8; 21]; // "255.255.255.255:65535"
            let mut len = 0;
            for (i, octet) in v4.ip().octets().into_iter().enumerate() {
                if i > 0 {
                    buf[len] = b'.';
                    len += 1;
                }
                len += write_decimal(&mut buf[len..], u32::from(octet));
            }
            buf[len] = b':';
            len += 1;
            len += write_decimal(&mut buf[len..], u32::from(v4.port()));
            match std::str::from_utf8(&buf[..len]) {
                Ok(text) => s.serialize_str(text),
                Err(_) => serde::Serialize::serialize(addr, s),
            }
        }
        SocketAddr::V6(_) => serde::Serialize::serialize(addr, s),
    }
}

/// An optional `SocketAddr` (`null` when absent), as serde writes it.
pub fn option_socket_addr<S: Serializer>(
    addr: &Option<SocketAddr>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match addr {
        Some(a) => s.serialize_some(&SocketText(*a)),
        None => s.serialize_none(),
    }
}

/// A `SocketAddr` serialised by [`socket_addr`].
struct SocketText(SocketAddr);

impl serde::Serialize for SocketText {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        socket_addr(&self.0, s)
    }
}

/// Length of `value`'s JSON text (0 if it does not serialise), without making the text:
/// e.g. an entry's share of a payload, for [`crate::bounded::BoundedMap::newest_within`].
pub fn json_len<T: serde::Serialize + ?Sized>(value: &T) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut n = Count(0);
    match serde_json::to_writer(&mut n, value) {
        Ok(()) => n.0,
        Err(_) => 0,
    }
}

/// Writes `n` (< 100 000) in decimal at the start of `out`; returns the digits written.
fn write_decimal(out: &mut [u8], mut n: u32) -> usize {
    let mut digits = [0u8; 5];
    let mut count = 0;
    loop {
        digits[count] = b'0' + (n % 10) as u8;
        count += 1;
        n /= 10;
        if n == 0 || count == digits.len() {
            break;
        }
    }
    for i in 0..count {
        out[i] = digits[count - 1 - i];
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    #[derive(serde::Serialize)]
    struct Both {
        #[serde(serialize_with = "socket_addr")]
        fast: SocketAddr,
        slow: SocketAddr,
        #[serde(serialize_with = "option_socket_addr")]
        fast_opt: Option<SocketAddr>,
        slow_opt: Option<SocketAddr>,
    }

    fn check(a: SocketAddr) {
        let v = serde_json::to_value(Both {
            fast: a,
            slow: a,
            fast_opt: Some(a),
            slow_opt: Some(a),
        })
        .expect("serialises");
        assert_eq!(v["fast"], v["slow"], "{a}");
        assert_eq!(v["fast_opt"], v["slow_opt"], "{a}");
    }

    #[test]
    fn same_text_as_serde() {
        let ips: Vec<IpAddr> = vec![
            Ipv4Addr::new(0, 0, 0, 0).into(),
            Ipv4Addr::new(255, 255, 255, 255).into(),
            Ipv4Addr::new(10, 0, 9, 100).into(),
            Ipv4Addr::new(1, 20, 100, 199).into(),
            Ipv6Addr::LOCALHOST.into(),
            "::ffff:10.0.0.1".parse::<Ipv6Addr>().expect("v6").into(),
            "2001:db8::1".parse::<Ipv6Addr>().expect("v6").into(),
        ];
        for ip in ips {
            for port in [0u16, 1, 9, 10, 99, 100, 443, 1000, 9999, 10000, 65535] {
                check(SocketAddr::new(ip, port));
            }
        }
        for x in (0u32..=u32::MAX).step_by(9_999_991) {
            check(SocketAddr::new(
                Ipv4Addr::from(x).into(),
                (x % 65536) as u16,
            ));
        }
        let v = serde_json::to_value(Both {
            fast: SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 1),
            slow: SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 1),
            fast_opt: None,
            slow_opt: None,
        })
        .expect("serialises");
        assert_eq!(v["fast_opt"], v["slow_opt"]);
    }
}
