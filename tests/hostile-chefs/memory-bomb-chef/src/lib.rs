//! `MemoryBombChef`: `on-packets` allocates 8 MiB blocks, touching every page, until an
//! allocation fails.
//!
//! Fires on: the first `on-packets` call (packet driver only). Before each block it logs
//! `allocated <N> MiB` through the `log` import, so the tests can read how far it got and
//! check the kitchen's cap (`--chef-memory-mib`) really held. A failed `memory.grow` makes
//! Rust's allocator abort (an `unreachable` trap), which the kitchen must report as a memory
//! limit. If it ever reaches 1 GiB without being stopped it returns a
//! `survived_memory_bomb_mib` canary dumpling instead.

wit_bindgen::generate!({ path: "../../../wit/v0.1", world: "chef" });
include!("../../common.rs");

/// Size of one allocation.
const BLOCK: usize = 8 << 20;
/// Where the bomb gives up (far above any sane cap, below wasm32's 4 GiB).
const GIVE_UP_MIB: usize = 1024;

impl Guest for HostileChef {
    fn describe() -> ChefInfo {
        info(
            "MemoryBombChef",
            "Hostile: allocates until the memory cap stops it",
            Drivers::PACKET,
        )
    }

    fn on_packets(_packets: Vec<Packet>, _arena: Vec<u8>) -> Vec<PacketDumpling> {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        let mut total_mib = 0usize;
        while total_mib < GIVE_UP_MIB {
            log(Level::Info, &format!("allocated {total_mib} MiB"));
            let mut block: Vec<u8> = vec![0; BLOCK];
            // Touch one byte per 64 KiB wasm page so the memory is really used.
            for page in block.chunks_mut(64 << 10) {
                page[0] = 0xAB;
            }
            hoard.push(std::hint::black_box(block));
            total_mib += BLOCK >> 20;
        }
        vec![PacketDumpling {
            packet_index: 0,
            payload: format!("{{\"survived_memory_bomb_mib\":{total_mib}}}"),
        }]
    }

    fn on_interval(_now_ns: u64, _interval_ns: u64) -> Vec<String> {
        Vec::new()
    }
}
