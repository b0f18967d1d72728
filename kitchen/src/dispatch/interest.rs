//! A chef's `interest` compiled for a cheap per-packet test: which packets a selective chef
//! is offered. Kept apart from the dispatcher so the rule "every non-empty list must match"
//! lives in one place and is tested on its own.

use crate::chef_host::bindings::{Interest, NetworkProtocol, TransportProtocol};
use crate::parse::packet::{NetClass, PacketClass, TransportClass};

/// A chef's `interest`, compiled for a cheap per-packet test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterestMatcher {
    link_types: Vec<u32>,
    /// Bit per [`NetClass`]; 0 = any.
    net_mask: u8,
    /// Bit per [`TransportClass`]; 0 = any.
    transport_mask: u8,
    ports: Vec<u16>,
}

impl InterestMatcher {
    /// Compile an interest.
    pub fn new(interest: &Interest) -> Self {
        let net_mask = interest.network.iter().fold(0u8, |m, n| {
            m | 1
                << match n {
                    NetworkProtocol::Arp => NetClass::Arp as u8,
                    NetworkProtocol::Ipv4 => NetClass::Ipv4 as u8,
                    NetworkProtocol::Ipv6 => NetClass::Ipv6 as u8,
                    NetworkProtocol::Other => NetClass::Other as u8,
                }
        });
        let transport_mask = interest.transport.iter().fold(0u8, |m, t| {
            m | 1
                << match t {
                    TransportProtocol::Tcp => TransportClass::Tcp as u8,
                    TransportProtocol::Udp => TransportClass::Udp as u8,
                    TransportProtocol::Icmpv4 => TransportClass::Icmpv4 as u8,
                    TransportProtocol::Icmpv6 => TransportClass::Icmpv6 as u8,
                }
        });
        let mut ports = interest.ports.clone();
        ports.sort_unstable();
        ports.dedup();
        let mut link_types = interest.link_types.clone();
        link_types.sort_unstable();
        link_types.dedup();
        InterestMatcher {
            link_types,
            net_mask,
            transport_mask,
            ports,
        }
    }

    /// True when the interest is "every packet".
    pub fn is_everything(&self) -> bool {
        self.link_types.is_empty()
            && self.net_mask == 0
            && self.transport_mask == 0
            && self.ports.is_empty()
    }

    /// Does a packet of this class match? (Every non-empty list must match.)
    pub fn matches(&self, c: &PacketClass) -> bool {
        (self.link_types.is_empty() || self.link_types.binary_search(&c.link_type).is_ok())
            && (self.net_mask == 0 || self.net_mask & (1 << c.net as u8) != 0)
            && (self.transport_mask == 0
                || (c.transport != TransportClass::None
                    && self.transport_mask & (1 << c.transport as u8) != 0))
            && (self.ports.is_empty()
                || c.ports.is_some_and(|(s, d)| {
                    self.ports.binary_search(&s).is_ok() || self.ports.binary_search(&d).is_ok()
                }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(net: NetClass, transport: TransportClass, ports: Option<(u16, u16)>) -> PacketClass {
        PacketClass {
            link_type: 1,
            net,
            transport,
            ports,
        }
    }

    #[test]
    fn interest_matching() {
        let dns = InterestMatcher::new(&Interest {
            link_types: vec![],
            network: vec![],
            transport: vec![TransportProtocol::Udp],
            ports: vec![53],
            flow_events: false,
            stream_bytes: 0,
        });
        assert!(dns.matches(&class(
            NetClass::Ipv4,
            TransportClass::Udp,
            Some((40000, 53))
        )));
        assert!(!dns.matches(&class(
            NetClass::Ipv4,
            TransportClass::Tcp,
            Some((40000, 53))
        )));
        assert!(!dns.matches(&class(NetClass::Ipv4, TransportClass::Udp, Some((1, 2)))));
        assert!(!dns.matches(&class(NetClass::Arp, TransportClass::None, None)));

        let arp = InterestMatcher::new(&Interest {
            link_types: vec![],
            network: vec![NetworkProtocol::Arp],
            transport: vec![],
            ports: vec![],
            flow_events: false,
            stream_bytes: 0,
        });
        assert!(arp.matches(&class(NetClass::Arp, TransportClass::None, None)));
        assert!(!arp.matches(&class(NetClass::Ipv6, TransportClass::Udp, Some((1, 2)))));

        let all = InterestMatcher::new(&Interest {
            link_types: vec![],
            network: vec![],
            transport: vec![],
            ports: vec![],
            flow_events: false,
            stream_bytes: 0,
        });
        assert!(all.is_everything());
        assert!(all.matches(&class(NetClass::Other, TransportClass::None, None)));

        let sll_only = InterestMatcher::new(&Interest {
            link_types: vec![113],
            network: vec![],
            transport: vec![],
            ports: vec![],
            flow_events: false,
            stream_bytes: 0,
        });
        assert!(!sll_only.matches(&class(NetClass::Ipv4, TransportClass::None, None)));
    }
}
