//! `FilesystemChef`: tries to read the kitchen host's files with `std::fs`, so the
//! component imports `wasi:filesystem/types` and `wasi:filesystem/preopens`.
//!
//! Fires at: load. The kitchen must refuse it before running anything, naming
//! `wasi:filesystem`. Were it ever run, `on-packets` would return a `filesystem_chef_read`
//! dumpling with what it managed to read, which the tests assert never appears.

wit_bindgen::generate!({ path: "../../../wit/v0.1", world: "chef" });
include!("../../common.rs");

impl Guest for HostileChef {
    fn describe() -> ChefInfo {
        info(
            "FilesystemChef",
            "Hostile: reads /etc/passwd",
            Drivers::PACKET,
        )
    }

    fn on_packets(_packets: Vec<Packet>, _arena: Vec<u8>) -> Vec<PacketDumpling> {
        let read = std::fs::read_to_string("/etc/passwd").map(|s| s.len());
        let listed = std::fs::read_dir("/").map(|d| d.count());
        let wrote = std::fs::write("/tmp/netdumplings-filesystem-chef", b"pwned").is_ok();
        vec![PacketDumpling {
            packet_index: 0,
            payload: format!(
                "{{\"filesystem_chef_read\":{:?},\"listed\":{:?},\"wrote\":{wrote}}}",
                format!("{read:?}"),
                format!("{listed:?}")
            ),
        }]
    }

    fn on_interval(_now_ns: u64, _interval_ns: u64) -> Vec<String> {
        Vec::new()
    }
}
