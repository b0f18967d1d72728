//! `SocketsChef`: tries to open network connections with `std::net`, so the component
//! imports `wasi:sockets/*`.
//!
//! Fires at: load. The kitchen must refuse it before running anything, naming
//! `wasi:sockets`. Were it ever run, `on-packets` would return a `sockets_chef_connected`
//! dumpling, which the tests assert never appears.

wit_bindgen::generate!({ path: "../../../wit/v0.1", world: "chef" });
include!("../../common.rs");

impl Guest for HostileChef {
    fn describe() -> ChefInfo {
        info(
            "SocketsChef",
            "Hostile: connects to the hub port and binds UDP",
            Drivers::PACKET,
        )
    }

    fn on_packets(_packets: Vec<Packet>, _arena: Vec<u8>) -> Vec<PacketDumpling> {
        let tcp = std::net::TcpStream::connect("127.0.0.1:11347").is_ok();
        let udp = std::net::UdpSocket::bind("0.0.0.0:0")
            .and_then(|s| s.send_to(b"exfiltrated", "127.0.0.1:9"))
            .is_ok();
        let names = std::net::ToSocketAddrs::to_socket_addrs("example.invalid:80").is_ok();
        vec![PacketDumpling {
            packet_index: 0,
            payload: format!(
                "{{\"sockets_chef_connected\":{tcp},\"udp\":{udp},\"resolved\":{names}}}"
            ),
        }]
    }

    fn on_interval(_now_ns: u64, _interval_ns: u64) -> Vec<String> {
        Vec::new()
    }
}
