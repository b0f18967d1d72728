//! DHCPv4 (RFC 2131) messages: the BOOTP header and the options (RFC 2132), read by hand.
//!
//! (The `dhcproto` crate was considered: it pulls in `hickory-proto` and `rand`, which
//! grows every chef and adds a `wasi:random` import, for a format this small.)

use std::net::Ipv4Addr;

use crate::Mac;

/// Length of the fixed BOOTP header, before the magic cookie.
pub const BOOTP_LEN: usize = 236;
/// The DHCP magic cookie that starts the options.
pub const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];

/// DHCP message types (option 53).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    /// 1
    Discover,
    /// 2
    Offer,
    /// 3
    Request,
    /// 4
    Decline,
    /// 5
    Ack,
    /// 6
    Nak,
    /// 7
    Release,
    /// 8
    Inform,
    /// Any other value.
    Other(u8),
}

impl MessageType {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::Discover,
            2 => Self::Offer,
            3 => Self::Request,
            4 => Self::Decline,
            5 => Self::Ack,
            6 => Self::Nak,
            7 => Self::Release,
            8 => Self::Inform,
            n => Self::Other(n),
        }
    }

    /// Lower-case name (`"ack"`), or `"other"`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Discover => "discover",
            Self::Offer => "offer",
            Self::Request => "request",
            Self::Decline => "decline",
            Self::Ack => "ack",
            Self::Nak => "nak",
            Self::Release => "release",
            Self::Inform => "inform",
            Self::Other(_) => "other",
        }
    }
}

/// A DHCP message: the BOOTP header fields plus its options area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    /// 1 = BOOTREQUEST (client), 2 = BOOTREPLY (server).
    pub op: u8,
    /// Transaction id.
    pub xid: u32,
    /// Client's current address (`ciaddr`).
    pub client_ip: Ipv4Addr,
    /// Address offered/assigned to the client (`yiaddr`).
    pub your_ip: Ipv4Addr,
    /// Next server (`siaddr`).
    pub next_server_ip: Ipv4Addr,
    /// Relay agent (`giaddr`).
    pub relay_ip: Ipv4Addr,
    /// Client hardware address when it is Ethernet (`htype` 1, `hlen` 6).
    pub client_mac: Option<Mac>,
    /// The options after the magic cookie (TLV-encoded; see [`Message::options`]).
    options: &'a [u8],
}

fn ip(b: &[u8], at: usize) -> Ipv4Addr {
    match b.get(at..at + 4) {
        Some(x) => Ipv4Addr::new(x[0], x[1], x[2], x[3]),
        None => Ipv4Addr::UNSPECIFIED,
    }
}

/// Parses a DHCP message (a UDP payload); `None` if it is not BOOTP with the DHCP cookie.
pub fn parse(payload: &[u8]) -> Option<Message<'_>> {
    if payload.get(BOOTP_LEN..BOOTP_LEN + 4)? != MAGIC_COOKIE {
        return None;
    }
    let op = payload[0];
    if op != 1 && op != 2 {
        return None;
    }
    let client_mac = if payload[1] == 1 && payload[2] == 6 {
        let m = &payload[28..34];
        Some(Mac::from_octets([m[0], m[1], m[2], m[3], m[4], m[5]]))
    } else {
        None
    };
    Some(Message {
        op,
        xid: u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]),
        client_ip: ip(payload, 12),
        your_ip: ip(payload, 16),
        next_server_ip: ip(payload, 20),
        relay_ip: ip(payload, 24),
        client_mac,
        options: &payload[BOOTP_LEN + 4..],
    })
}

/// Iterator over `(code, value)` options; stops at `end` (255) or at a malformed option.
#[derive(Debug, Clone)]
pub struct Options<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Options<'a> {
    type Item = (u8, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let (&code, rest) = self.rest.split_first()?;
            match code {
                0 => self.rest = rest, // pad
                255 => {
                    self.rest = &[];
                    return None;
                }
                _ => {
                    let (&len, rest) = rest.split_first()?;
                    let Some(value) = rest.get(..usize::from(len)) else {
                        self.rest = &[];
                        return None;
                    };
                    self.rest = &rest[usize::from(len)..];
                    return Some((code, value));
                }
            }
        }
    }
}

impl<'a> Message<'a> {
    /// Every option, in order.
    pub fn options(&self) -> Options<'a> {
        Options { rest: self.options }
    }

    /// The first option with this code.
    pub fn option(&self, code: u8) -> Option<&'a [u8]> {
        self.options().find(|(c, _)| *c == code).map(|(_, v)| v)
    }

    fn option_ip(&self, code: u8) -> Option<Ipv4Addr> {
        let v = self.option(code)?;
        (v.len() >= 4).then(|| ip(v, 0))
    }

    /// Option 53, the DHCP message type (absent in plain BOOTP).
    pub fn message_type(&self) -> Option<MessageType> {
        self.option(53)?.first().map(|v| MessageType::from_u8(*v))
    }

    /// Option 12, the client's host name (UTF-8, lossy-checked: `None` if not UTF-8).
    pub fn hostname(&self) -> Option<&'a str> {
        std::str::from_utf8(self.option(12)?)
            .ok()
            .filter(|s| !s.is_empty())
    }

    /// Option 50, the address a client requests.
    pub fn requested_ip(&self) -> Option<Ipv4Addr> {
        self.option_ip(50)
    }

    /// Option 51, the lease time in seconds.
    pub fn lease_seconds(&self) -> Option<u32> {
        let v = self.option(51)?;
        Some(u32::from_be_bytes(v.get(..4)?.try_into().ok()?))
    }

    /// Option 54, the server identifier.
    pub fn server_id(&self) -> Option<Ipv4Addr> {
        self.option_ip(54)
    }

    /// Option 1, the subnet mask.
    pub fn subnet_mask(&self) -> Option<Ipv4Addr> {
        self.option_ip(1)
    }

    /// Option 3, the first router.
    pub fn router(&self) -> Option<Ipv4Addr> {
        self.option_ip(3)
    }

    /// Option 6, the DNS servers (at most 8 are returned).
    pub fn dns_servers(&self) -> Vec<Ipv4Addr> {
        self.option(6)
            .map(|v| v.chunks_exact(4).take(8).map(|c| ip(c, 0)).collect())
            .unwrap_or_default()
    }

    /// Option 60, the vendor class identifier (`None` if not UTF-8).
    pub fn vendor_class(&self) -> Option<&'a str> {
        std::str::from_utf8(self.option(60)?).ok()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A DHCPACK for 192.168.1.50 to 02:00:00:00:00:07, hostname "oven".
    pub fn ack() -> Vec<u8> {
        let mut m = vec![0u8; BOOTP_LEN];
        m[0] = 2;
        m[1] = 1;
        m[2] = 6;
        m[4..8].copy_from_slice(&0xdead_beef_u32.to_be_bytes());
        m[16..20].copy_from_slice(&[192, 168, 1, 50]);
        m[28..34].copy_from_slice(&[2, 0, 0, 0, 0, 7]);
        m.extend_from_slice(&MAGIC_COOKIE);
        m.extend_from_slice(&[53, 1, 5]);
        m.extend_from_slice(&[0, 0]); // pads
        m.extend_from_slice(&[54, 4, 192, 168, 1, 1]);
        m.extend_from_slice(&[51, 4, 0, 0, 0x0e, 0x10]);
        m.extend_from_slice(&[1, 4, 255, 255, 255, 0]);
        m.extend_from_slice(&[3, 4, 192, 168, 1, 1]);
        m.extend_from_slice(&[6, 8, 1, 1, 1, 1, 8, 8, 8, 8]);
        m.extend_from_slice(&[12, 4, b'o', b'v', b'e', b'n']);
        m.push(255);
        m
    }

    #[test]
    fn reads_an_ack() {
        let bytes = ack();
        let m = parse(&bytes).expect("DHCP");
        assert_eq!(m.op, 2);
        assert_eq!(m.xid, 0xdead_beef);
        assert_eq!(m.message_type(), Some(MessageType::Ack));
        assert_eq!(m.your_ip, Ipv4Addr::new(192, 168, 1, 50));
        assert_eq!(
            m.client_mac.map(|x| x.to_string()).as_deref(),
            Some("02:00:00:00:00:07")
        );
        assert_eq!(m.server_id(), Some(Ipv4Addr::new(192, 168, 1, 1)));
        assert_eq!(m.lease_seconds(), Some(3600));
        assert_eq!(m.subnet_mask(), Some(Ipv4Addr::new(255, 255, 255, 0)));
        assert_eq!(m.router(), Some(Ipv4Addr::new(192, 168, 1, 1)));
        assert_eq!(
            m.dns_servers(),
            [Ipv4Addr::new(1, 1, 1, 1), Ipv4Addr::new(8, 8, 8, 8)]
        );
        assert_eq!(m.hostname(), Some("oven"));
        assert_eq!(m.requested_ip(), None);
    }

    #[test]
    fn garbage_never_panics() {
        let bytes = ack();
        for cut in 0..bytes.len() {
            if let Some(m) = parse(&bytes[..cut]) {
                let _ = (
                    m.message_type(),
                    m.hostname(),
                    m.lease_seconds(),
                    m.dns_servers(),
                );
            }
        }
        assert!(parse(&bytes[..BOOTP_LEN + 3]).is_none());
        let mut bad_len = bytes.clone();
        bad_len[BOOTP_LEN + 4 + 1] = 200; // message-type option claims 200 bytes
        let m = parse(&bad_len).expect("header still fine");
        assert_eq!(m.options().count(), 0);
        let mut not_dhcp = bytes;
        not_dhcp[BOOTP_LEN] = 0;
        assert!(parse(&not_dhcp).is_none());
    }
}
