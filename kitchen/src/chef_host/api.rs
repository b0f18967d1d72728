//! The two chef contracts the kitchen loads side by side: `netdumplings:chef@0.2.0` (current)
//! and `@0.1.0` (frozen), and the adapter that lets a 0.1 chef run unchanged.
//!
//! The parser fills only 0.2 records. A 0.1 chef gets them through:
//! * `on-packets`: no conversion at all. The 0.2 `packet` record is the 0.1 record with one
//!   field (`flow`) appended, so its canonical-ABI layout starts with the whole 0.1 layout;
//!   [`super::wire::WirePacketV01`] writes the first [`super::wire::PACKET_SIZE_V0_1`] bytes
//!   of each record (see `wire`). The answer (`list<packet-dumpling>`) has the same shape in
//!   both versions and is read as the 0.2 type (component type checks are structural).
//! * `describe`: its `chef-info` is converted once, at load (no flows, no streams, `records`).
//! * `on-interval`: same signature, called through the 0.1 bindings.
//! * `on-flow-events`, `on-stream`, `on-packed`, `state`: never called (a 0.1 chef's interest
//!   asks for none of them).

use wasmtime::component::{Instance, InstancePre};
use wasmtime::Store;

use super::bindings::{self, v0_1, Chef, ChefInfo, ChefPre};
use super::instance::ChefState;

/// Which chef contract a component was built against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChefApi {
    /// `netdumplings:chef@0.1.x` (frozen; loaded through the adapter).
    V0_1,
    /// `netdumplings:chef@0.2.x` (current).
    V0_2,
}

impl ChefApi {
    /// The handler export a chef of this version has.
    pub fn handler_export(self) -> &'static str {
        match self {
            ChefApi::V0_1 => v0_1::HANDLER_EXPORT,
            ChefApi::V0_2 => bindings::HANDLER_EXPORT,
        }
    }

    /// `"0.1"` or `"0.2"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ChefApi::V0_1 => "0.1",
            ChefApi::V0_2 => "0.2",
        }
    }

    /// The version of a `netdumplings:chef/...@VERSION` name this kitchen accepts, if any:
    /// 0.x versions are compatible only within the same minor.
    pub fn from_version(version: Option<&str>) -> Option<ChefApi> {
        let v = version?;
        let minor = |m: &str| v == m || v.strip_prefix(m).is_some_and(|r| r.starts_with('.'));
        if minor("0.2") {
            Some(ChefApi::V0_2)
        } else if minor("0.1") {
            Some(ChefApi::V0_1)
        } else {
            None
        }
    }
}

impl std::fmt::Display for ChefApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A pre-instantiated chef of either version.
pub(crate) enum AnyPre {
    V0_2(ChefPre<ChefState>),
    V0_1(v0_1::ChefPre<ChefState>),
}

impl AnyPre {
    /// Wrap a linked component of version `api` (checks its exports' types).
    pub(crate) fn new(api: ChefApi, pre: InstancePre<ChefState>) -> wasmtime::Result<Self> {
        Ok(match api {
            ChefApi::V0_2 => AnyPre::V0_2(ChefPre::new(pre)?),
            ChefApi::V0_1 => AnyPre::V0_1(v0_1::ChefPre::new(pre)?),
        })
    }

    pub(crate) fn api(&self) -> ChefApi {
        match self {
            AnyPre::V0_2(_) => ChefApi::V0_2,
            AnyPre::V0_1(_) => ChefApi::V0_1,
        }
    }

    pub(crate) fn instance_pre(&self) -> &InstancePre<ChefState> {
        match self {
            AnyPre::V0_2(p) => p.instance_pre(),
            AnyPre::V0_1(p) => p.instance_pre(),
        }
    }
}

/// The typed exports of one instance, of either version.
pub(crate) enum AnyChef {
    V0_2(Chef),
    V0_1(v0_1::Chef),
}

impl AnyChef {
    pub(crate) fn new(
        api: ChefApi,
        store: &mut Store<ChefState>,
        instance: &Instance,
    ) -> wasmtime::Result<Self> {
        Ok(match api {
            ChefApi::V0_2 => AnyChef::V0_2(Chef::new(store, instance)?),
            ChefApi::V0_1 => AnyChef::V0_1(v0_1::Chef::new(store, instance)?),
        })
    }

    /// `describe`, as a 0.2 record.
    pub(crate) fn describe(&self, store: &mut Store<ChefState>) -> wasmtime::Result<ChefInfo> {
        match self {
            AnyChef::V0_2(c) => c.netdumplings_chef_handler().call_describe(store),
            AnyChef::V0_1(c) => Ok(info_from_v0_1(
                c.netdumplings_chef_handler().call_describe(store)?,
            )),
        }
    }

    /// `on-interval` (the same in both versions).
    pub(crate) fn on_interval(
        &self,
        store: &mut Store<ChefState>,
        now_ns: u64,
        interval_ns: u64,
    ) -> wasmtime::Result<Vec<String>> {
        match self {
            AnyChef::V0_2(c) => {
                c.netdumplings_chef_handler()
                    .call_on_interval(store, now_ns, interval_ns)
            }
            AnyChef::V0_1(c) => {
                c.netdumplings_chef_handler()
                    .call_on_interval(store, now_ns, interval_ns)
            }
        }
    }

    /// The 0.2 handler, or `None` for a 0.1 chef.
    pub(crate) fn v0_2(&self) -> Option<&Chef> {
        match self {
            AnyChef::V0_2(c) => Some(c),
            AnyChef::V0_1(_) => None,
        }
    }
}

/// A 0.1 `chef-info` as the 0.2 record: no flow events, no stream bytes, `records` form.
pub fn info_from_v0_1(i: v0_1::ChefInfo) -> ChefInfo {
    use v0_1::netdumplings::chef::types as old;
    let mut drivers = bindings::Drivers::empty();
    if i.drivers.contains(old::Drivers::PACKET) {
        drivers |= bindings::Drivers::PACKET;
    }
    if i.drivers.contains(old::Drivers::INTERVAL) {
        drivers |= bindings::Drivers::INTERVAL;
    }
    let network = i
        .interest
        .network
        .iter()
        .map(|n| match n {
            old::NetworkProtocol::Arp => bindings::NetworkProtocol::Arp,
            old::NetworkProtocol::Ipv4 => bindings::NetworkProtocol::Ipv4,
            old::NetworkProtocol::Ipv6 => bindings::NetworkProtocol::Ipv6,
            old::NetworkProtocol::Other => bindings::NetworkProtocol::Other,
        })
        .collect();
    let transport = i
        .interest
        .transport
        .iter()
        .map(|t| match t {
            old::TransportProtocol::Tcp => bindings::TransportProtocol::Tcp,
            old::TransportProtocol::Udp => bindings::TransportProtocol::Udp,
            old::TransportProtocol::Icmpv4 => bindings::TransportProtocol::Icmpv4,
            old::TransportProtocol::Icmpv6 => bindings::TransportProtocol::Icmpv6,
        })
        .collect();
    ChefInfo {
        name: i.name,
        description: i.description,
        version: i.version,
        drivers,
        interest: bindings::Interest {
            link_types: i.interest.link_types,
            network,
            transport,
            ports: i.interest.ports,
            flow_events: false,
            stream_bytes: 0,
        },
        batch_form: bindings::BatchForm::Records,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(ChefApi::from_version(Some("0.1.0")), Some(ChefApi::V0_1));
        assert_eq!(ChefApi::from_version(Some("0.1.7")), Some(ChefApi::V0_1));
        assert_eq!(ChefApi::from_version(Some("0.2.0")), Some(ChefApi::V0_2));
        assert_eq!(ChefApi::from_version(Some("0.2")), Some(ChefApi::V0_2));
        assert_eq!(ChefApi::from_version(Some("0.3.0")), None);
        assert_eq!(ChefApi::from_version(Some("0.10.0")), None);
        assert_eq!(ChefApi::from_version(Some("0.20.0")), None);
        assert_eq!(ChefApi::from_version(Some("1.0.0")), None);
        assert_eq!(ChefApi::from_version(None), None);
    }

    #[test]
    fn v0_1_info_converts() {
        use v0_1::netdumplings::chef::types as old;
        let info = info_from_v0_1(v0_1::ChefInfo {
            name: "Old".into(),
            description: "d".into(),
            version: "1".into(),
            drivers: old::Drivers::PACKET,
            interest: old::Interest {
                link_types: vec![1],
                network: vec![old::NetworkProtocol::Ipv6, old::NetworkProtocol::Arp],
                transport: vec![old::TransportProtocol::Icmpv6],
                ports: vec![53],
            },
        });
        assert_eq!(info.drivers, bindings::Drivers::PACKET);
        assert_eq!(
            info.interest.network,
            vec![
                bindings::NetworkProtocol::Ipv6,
                bindings::NetworkProtocol::Arp
            ]
        );
        assert_eq!(
            info.interest.transport,
            vec![bindings::TransportProtocol::Icmpv6]
        );
        assert_eq!(info.interest.ports, vec![53]);
        assert!(!info.interest.flow_events);
        assert_eq!(info.interest.stream_bytes, 0);
        assert_eq!(info.batch_form, bindings::BatchForm::Records);
    }
}
