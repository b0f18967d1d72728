//! `NewDeviceChef`: a dumpling the first time each MAC address shows up.
//!
//! Its devices survive a hot reload: `export_stateful_chef!` carries the serde-derived
//! state to the new version (bump `Chef::STATE_VERSION` if a field changes meaning).
use chef_sdk::serde_json::json;
use chef_sdk::{bounded::BoundedMap, Chef, ChefInfo, Drivers, Dumplings, Interest, Mac, Packet};
use serde::{Deserialize, Serialize};

/// The chef. Its fields are its state, kept between packets (bounded: 10 000 devices) and
/// across a reload.
#[derive(Default, Serialize, Deserialize)]
pub struct NewDeviceChef {
    seen: BoundedMap<Mac, ()>,
}

impl Chef for NewDeviceChef {
    fn info() -> ChefInfo {
        ChefInfo::new("NewDeviceChef", "Reports each new MAC address")
            .drivers(Drivers::PACKET)
            .interest(Interest::ANY.link_types(&[1])) // Ethernet
    }

    fn on_packet(&mut self, packet: &Packet<'_>) -> impl Dumplings {
        let mac = packet.src_mac()?;
        if self.seen.insert(mac, ()).is_some() {
            return None; // seen before
        }
        let (ip, time) = (packet.src_ip(), packet.timestamp());
        Some(json!({"new_device": {"mac": mac, "ip": ip, "time": time}}))
    }
}

chef_sdk::export_stateful_chef!(NewDeviceChef);

#[cfg(test)]
mod tests {
    use super::*;
    use chef_sdk::testing::{describe, frames, Batch};

    #[test]
    fn each_device_once() {
        let mut b = Batch::default();
        for _ in 0..3 {
            b.push_ethernet(
                1_500_000_000,
                &frames::udp4([10, 0, 0, 1], [10, 0, 0, 2], 1, 2, b""),
            );
        }
        b.push_ethernet(
            2_000_000_000,
            &frames::arp(1, [2, 0, 0, 0, 0, 9], [10, 0, 0, 9], [0; 6], [10, 0, 0, 1]),
        );
        let out = b.feed(&mut NewDeviceChef::default());
        let macs: Vec<_> = out
            .iter()
            .map(|(i, v)| (*i, v["new_device"]["mac"].clone()))
            .collect();
        assert_eq!(
            macs,
            [
                (0, "02:00:00:00:00:01".into()),
                (3, "02:00:00:00:00:09".into())
            ]
        );
        assert_eq!(out[0].1["new_device"]["ip"], "10.0.0.1");
        assert_eq!(out[0].1["new_device"]["time"], 1.5);
        assert!(
            out[1].1["new_device"]["ip"].is_null(),
            "ARP has no IP header"
        );
        assert_eq!(describe::<NewDeviceChef>().name, "NewDeviceChef");
    }

    #[test]
    fn a_reload_forgets_no_device() {
        let mut b = Batch::default();
        for (i, host) in [1u8, 2, 1, 3, 2].into_iter().enumerate() {
            let frame = frames::arp(
                1,
                [2, 0, 0, 0, 0, host],
                [10, 0, 0, host],
                [0; 6],
                [10, 0, 0, 9],
            );
            b.push_ethernet(i as u64, &frame);
        }
        let splits = [0, 1, 2, 3, 4, 5];
        assert_eq!(
            chef_sdk::testing::check_reload_at::<NewDeviceChef>(&b, &splits),
            6 * 3
        );
    }

    #[test]
    fn survives_the_corpus() {
        // Every capture of the team's pcap corpus: no panic, only valid JSON.
        assert!(chef_sdk::testing::sweep_corpus::<NewDeviceChef>() > 10_000);
    }
}
