//! What a chef says about itself: [`ChefInfo`] and its [`Interest`].

use crate::wit;
use crate::{BatchForm, Drivers, NetworkProtocol, TransportProtocol};

/// Which packets a chef wants (the WIT `interest`), as `const`-friendly static slices.
///
/// A packet matches when it matches *every non-empty* list; an empty list means "any".
/// Start from [`Interest::ANY`] and narrow it:
/// `Interest::ANY.transport(&[TransportProtocol::Udp]).ports(&[53, 5353])`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interest {
    /// pcap link types (DLT numbers); empty = any.
    pub link_types: &'static [u32],
    /// Network protocols; empty = any.
    pub network: &'static [NetworkProtocol],
    /// Transport protocols; empty = any.
    pub transport: &'static [TransportProtocol],
    /// TCP/UDP ports, source or destination; empty = any (non-empty excludes packets
    /// without a TCP/UDP header).
    pub ports: &'static [u16],
    /// Receive flow starts and ends in [`crate::Chef::on_flow_event`] (not filtered by the
    /// lists above). Default false.
    pub flow_events: bool,
    /// Bytes of each direction of each TCP connection wanted in order, from stream offset
    /// 0, in [`crate::Chef::on_stream`]; 0 = none (the default).
    pub stream_bytes: u32,
}

impl Interest {
    /// Every packet.
    pub const ANY: Interest = Interest {
        link_types: &[],
        network: &[],
        transport: &[],
        ports: &[],
        flow_events: false,
        stream_bytes: 0,
    };

    /// Only these link types.
    pub const fn link_types(self, link_types: &'static [u32]) -> Self {
        Interest { link_types, ..self }
    }

    /// Only these network protocols.
    pub const fn network(self, network: &'static [NetworkProtocol]) -> Self {
        Interest { network, ..self }
    }

    /// Only these transport protocols.
    pub const fn transport(self, transport: &'static [TransportProtocol]) -> Self {
        Interest { transport, ..self }
    }

    /// Only packets with one of these TCP/UDP ports as source or destination.
    pub const fn ports(self, ports: &'static [u16]) -> Self {
        Interest { ports, ..self }
    }

    /// Also receive flow events ([`crate::Chef::on_flow_event`]).
    pub const fn flow_events(self, flow_events: bool) -> Self {
        Interest {
            flow_events,
            ..self
        }
    }

    /// Also receive the first `bytes` of each direction of each TCP connection as in-order
    /// stream chunks ([`crate::Chef::on_stream`]).
    pub const fn stream_bytes(self, stream_bytes: u32) -> Self {
        Interest {
            stream_bytes,
            ..self
        }
    }
}

impl Default for Interest {
    fn default() -> Self {
        Interest::ANY
    }
}

impl From<Interest> for wit::Interest {
    fn from(i: Interest) -> Self {
        wit::Interest {
            link_types: i.link_types.to_vec(),
            network: i.network.to_vec(),
            transport: i.transport.to_vec(),
            ports: i.ports.to_vec(),
            flow_events: i.flow_events,
            stream_bytes: i.stream_bytes,
        }
    }
}

/// A chef's name, description, version, drivers and interest (the WIT `chef-info`).
///
/// ```
/// use chef_sdk::{ChefInfo, Drivers, Interest, NetworkProtocol};
/// let info = ChefInfo::new("ARPChef", "One dumpling per ARP packet")
///     .drivers(Drivers::PACKET)
///     .interest(Interest::ANY.network(&[NetworkProtocol::Arp]));
/// assert_eq!(info.name, "ARPChef");
/// ```
#[derive(Debug, Clone, Copy)]
pub struct ChefInfo {
    /// Bare class-style name (`PacketCountChef`): letters, digits, `_`, `-`; at most 64.
    /// It becomes `metadata.chef` of every dumpling.
    pub name: &'static str,
    /// One line for `nd-sniff --chef-list`.
    pub description: &'static str,
    /// The chef's version; empty means "the chef crate's `CARGO_PKG_VERSION`".
    pub version: &'static str,
    /// Which handlers the kitchen calls. Default: both.
    pub drivers: Drivers,
    /// Which packets `on_packet` receives. Default: every packet.
    pub interest: Interest,
    /// How the kitchen hands packets over. Default [`BatchForm::Packed`]: the records as
    /// bytes, which [`crate::Packet`] reads in place (no per-field lift in the guest, and
    /// one encode per batch in the kitchen for all chefs that take every packet).
    /// [`BatchForm::Records`] (`on-packets`) works too but costs the guest wit-bindgen's
    /// lift of every field of every packet (~53 ns per packet measured); handlers see the
    /// same [`crate::Packet`] either way.
    pub batch_form: BatchForm,
}

impl ChefInfo {
    /// A chef with both drivers, interest in every packet and the crate's version.
    pub const fn new(name: &'static str, description: &'static str) -> Self {
        ChefInfo {
            name,
            description,
            version: "",
            drivers: Drivers::PACKET.union(Drivers::INTERVAL),
            interest: Interest::ANY,
            batch_form: BatchForm::Packed,
        }
    }

    /// Sets how packets are handed over (default [`BatchForm::Packed`]).
    pub const fn batch_form(self, batch_form: BatchForm) -> Self {
        ChefInfo { batch_form, ..self }
    }

    /// Sets the drivers (`Drivers::PACKET`, `Drivers::INTERVAL`, or both with `|`).
    pub const fn drivers(self, drivers: Drivers) -> Self {
        ChefInfo { drivers, ..self }
    }

    /// Sets the interest.
    pub const fn interest(self, interest: Interest) -> Self {
        ChefInfo { interest, ..self }
    }

    /// Sets the version (default: the chef crate's `CARGO_PKG_VERSION`).
    pub const fn version(self, version: &'static str) -> Self {
        ChefInfo { version, ..self }
    }

    /// Converts to the WIT record; an empty `version` becomes `default_version`.
    pub fn to_wit(&self, default_version: &str) -> wit::ChefInfo {
        let version = if self.version.is_empty() {
            default_version
        } else {
            self.version
        };
        wit::ChefInfo {
            name: self.name.to_owned(),
            description: self.description.to_owned(),
            version: version.to_owned(),
            drivers: self.drivers,
            interest: self.interest.into(),
            batch_form: self.batch_form,
        }
    }
}
